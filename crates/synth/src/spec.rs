//! What to build: size preset, architecture, weight type and seed.

use crate::error::SynthError;
use std::fmt;
use std::str::FromStr;

/// Vocabulary size of every preset (SmolLM2's tokenizer).
pub const VOCAB: usize = 49_152;

/// Model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// 256 embd, 6 layers, 4/2 heads, ffn 512: fast enough for debug builds
    /// and CI (6 layers so that Gemma 3's every-sixth global layer exists).
    Tiny,
    /// SmolLM2-135M's body: 576 embd, 30 layers, 9/3 heads, ffn 1536, 8192 ctx.
    Smollm2,
    /// A 1B LLaMA body: 2048 embd, 16 layers, 32/8 heads, ffn 8192.
    B1,
    /// An 8B LLaMA body: 4096 embd, 32 layers, 32/8 heads, ffn 14336.
    B8,
}

/// The dimensions of a preset (before architecture-specific adjustments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Embedding width.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// FFN hidden width (per expert for MoE).
    pub n_ff: usize,
    /// Training context written to `{arch}.context_length`.
    pub n_ctx: usize,
}

impl Preset {
    /// Every preset, smallest first.
    pub const ALL: [Preset; 4] = [Preset::Tiny, Preset::Smollm2, Preset::B1, Preset::B8];

    /// The preset's dimensions.
    pub fn dims(self) -> Dims {
        let (n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx) = match self {
            Preset::Tiny => (256, 6, 4, 2, 512, 2048),
            Preset::Smollm2 => (576, 30, 9, 3, 1536, 8192),
            Preset::B1 => (2048, 16, 32, 8, 8192, 8192),
            Preset::B8 => (4096, 32, 32, 8, 14336, 8192),
        };
        Dims {
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            n_ctx,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Smollm2 => "smollm2",
            Preset::B1 => "1b",
            Preset::B8 => "8b",
        }
    }
}

/// Architectures a synthetic model can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `llama`: RMSNorm, SwiGLU, normal RoPE, separate `output.weight`.
    Llama,
    /// `qwen2`: llama plus biases on Q, K and V, NeoX RoPE.
    Qwen2,
    /// `qwen3`: llama plus per-head RMS norms on Q and K, NeoX RoPE.
    Qwen3,
    /// `gemma3`: Q/K norms, post-attention and post-FFN norms, GELU gate,
    /// embeddings scaled by √n_embd and tied to the output, head size 256,
    /// every sixth layer global and the others sliding-window.
    Gemma3,
    /// `llama` with a Mixtral-style mixture of experts: 4 experts, 2 used.
    LlamaMoe,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 5] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Gemma3,
        Arch::LlamaMoe,
    ];

    /// The command-line name (`llama-moe` for the MoE variant).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::LlamaMoe => "llama-moe",
        }
    }

    /// The `general.architecture` value.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama | Arch::LlamaMoe => "llama",
            other => other.name(),
        }
    }
}

/// Weight types, named as llama.cpp's file types (`llama-quantize`'s names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightType {
    /// All matrices F32.
    F32,
    /// All matrices F16.
    F16,
    /// Q4_0, output Q6_K (as llama-quantize does).
    Q4_0,
    /// Q4_1, output Q6_K.
    Q4_1,
    /// Q8_0 throughout.
    Q8_0,
    /// llama.cpp's Q4_K_M mix (see [`crate::plan`]).
    Q4KM,
    /// Q6_K throughout.
    Q6K,
}

impl WeightType {
    /// Every weight type.
    pub const ALL: [WeightType; 7] = [
        WeightType::F32,
        WeightType::F16,
        WeightType::Q4_0,
        WeightType::Q4_1,
        WeightType::Q8_0,
        WeightType::Q4KM,
        WeightType::Q6K,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Q4_0 => "q4_0",
            WeightType::Q4_1 => "q4_1",
            WeightType::Q8_0 => "q8_0",
            WeightType::Q4KM => "q4_k_m",
            WeightType::Q6K => "q6_k",
        }
    }

    /// llama.cpp's `llama_ftype` number, written to `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            WeightType::F32 => 0,
            WeightType::F16 => 1,
            WeightType::Q4_0 => 2,
            WeightType::Q4_1 => 3,
            WeightType::Q8_0 => 7,
            WeightType::Q4KM => 15,
            WeightType::Q6K => 18,
        }
    }
}

macro_rules! name_parsing {
    ($ty:ident, $what:literal) => {
        impl FromStr for $ty {
            type Err = SynthError;
            fn from_str(s: &str) -> Result<Self, SynthError> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.name().eq_ignore_ascii_case(s))
                    .ok_or_else(|| SynthError::UnknownName {
                        what: $what,
                        name: s.to_string(),
                        known: $ty::ALL
                            .iter()
                            .map(|v| v.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

name_parsing!(Preset, "preset");
name_parsing!(Arch, "architecture");
name_parsing!(WeightType, "weight type");

/// A complete description of one synthetic model: the same spec always
/// gives the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SynthSpec {
    /// Size.
    pub preset: Preset,
    /// Architecture.
    pub arch: Arch,
    /// Weight type.
    pub weights: WeightType,
    /// Seed of the random weights.
    pub seed: u64,
}

impl SynthSpec {
    /// A spec with the default seed (0).
    pub fn new(preset: Preset, arch: Arch, weights: WeightType) -> SynthSpec {
        SynthSpec {
            preset,
            arch,
            weights,
            seed: 0,
        }
    }

    /// A file name describing the spec, e.g. `synth-tiny-qwen3-q8_0-s0.gguf`.
    pub fn file_name(&self) -> String {
        format!(
            "synth-{}-{}-{}-s{}.gguf",
            self.preset, self.arch, self.weights, self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
        }
        for w in WeightType::ALL {
            assert_eq!(w.name().parse::<WeightType>().unwrap(), w);
        }
        let err = "q3_k".parse::<WeightType>().unwrap_err().to_string();
        assert!(err.contains("q3_k") && err.contains("q4_k_m"), "{err}");
    }
}
