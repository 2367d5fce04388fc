//! Architectures as data: one decoder forward pass, switched by an [`ArchSpec`].
//!
//! Adding an architecture means adding a spec here (and, if its tensors are
//! named differently, a name map), not a new forward pass.

use backend_core::{GluKind, RopeMode};

/// Names of the architectures this engine runs (`general.architecture`).
pub const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

/// Which normalisation the blocks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// Root-mean-square norm (`x / rms(x) * w`).
    Rms,
    /// Layer norm (mean and variance, `* w + b`).
    Layer,
}

/// Whether a family of tensors must, may or must not be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Never used by this architecture (present tensors are ignored).
    Absent,
    /// Used when present.
    Optional,
    /// Must be present; loading fails naming the tensor otherwise.
    Required,
}

/// How the token embeddings are scaled before the first block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EmbedScale {
    /// Used as stored.
    None,
    /// Multiplied by `sqrt(n_embd)` (Gemma).
    SqrtEmbd,
}

/// Which layers attend over a sliding window instead of the whole context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindowPattern {
    /// Every `period`-th layer (`il % period == period - 1`) is global; the
    /// others use the window `{arch}.attention.sliding_window`.
    pub period: usize,
    /// RoPE base of the windowed (local) layers, unless the file has
    /// `{arch}.rope.freq_base_swa`.
    pub local_rope_base: f32,
}

impl SlidingWindowPattern {
    /// Whether layer `il` is a sliding-window layer.
    pub fn is_local(&self, il: usize) -> bool {
        self.period > 0 && il % self.period < self.period - 1
    }
}

/// Everything the forward pass needs to know about an architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture` value.
    pub name: &'static str,
    /// Normalisation of the blocks and of the output.
    pub norm: NormKind,
    /// Added to every norm weight before use. Gemma multiplies by `1 + w`,
    /// but GGUF converters already store `1 + w`, so it is `0.0` for every
    /// GGUF architecture here; kept as data for formats that do not.
    pub norm_weight_offset: f32,
    /// Activation of the gated FFN.
    pub activation: GluKind,
    /// RoPE pairing.
    pub rope_mode: RopeMode,
    /// Biases on the Q, K and V projections.
    pub qkv_bias: Presence,
    /// Per-head RMS norms on Q and K before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: Presence,
    /// Norms on the attention and FFN outputs before the residual add
    /// (`post_attention_norm`, `post_ffw_norm`; Gemma 2/3).
    pub post_norms: Presence,
    /// Sliding-window layers, if any.
    pub sliding_window: Option<SlidingWindowPattern>,
    /// Scale of the token embeddings.
    pub embed_scale: EmbedScale,
    /// Read `{arch}.final_logit_softcapping` and apply it when present.
    pub final_logit_softcap: bool,
    /// Whether a missing `output.weight` means the embeddings are reused.
    pub tied_output: bool,
    /// Mixture-of-experts FFNs are allowed (`ffn_gate_inp` present).
    pub moe: bool,
}

impl ArchSpec {
    /// The spec for a `general.architecture` value, or `None` when unsupported.
    pub fn for_name(name: &str) -> Option<ArchSpec> {
        let llama = ArchSpec {
            name: "llama",
            norm: NormKind::Rms,
            norm_weight_offset: 0.0,
            activation: GluKind::Silu,
            rope_mode: RopeMode::Normal,
            qkv_bias: Presence::Optional,
            qk_norm: Presence::Absent,
            post_norms: Presence::Absent,
            sliding_window: None,
            embed_scale: EmbedScale::None,
            final_logit_softcap: false,
            tied_output: true,
            moe: true,
        };
        match name {
            "llama" => Some(llama),
            "qwen2" => Some(ArchSpec {
                name: "qwen2",
                rope_mode: RopeMode::Neox,
                qkv_bias: Presence::Required,
                moe: false,
                ..llama
            }),
            "qwen3" => Some(ArchSpec {
                name: "qwen3",
                rope_mode: RopeMode::Neox,
                qkv_bias: Presence::Absent,
                qk_norm: Presence::Required,
                moe: false,
                ..llama
            }),
            "gemma3" => Some(ArchSpec {
                name: "gemma3",
                activation: GluKind::GeluTanh,
                rope_mode: RopeMode::Neox,
                qkv_bias: Presence::Absent,
                qk_norm: Presence::Required,
                post_norms: Presence::Required,
                sliding_window: Some(SlidingWindowPattern {
                    period: 6,
                    local_rope_base: 10_000.0,
                }),
                embed_scale: EmbedScale::SqrtEmbd,
                final_logit_softcap: true,
                moe: false,
                ..llama
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_name_has_a_spec() {
        for name in SUPPORTED {
            assert_eq!(ArchSpec::for_name(name).unwrap().name, *name);
        }
        assert!(ArchSpec::for_name("gpt2").is_none());
    }

    #[test]
    fn gemma3_pattern_has_every_sixth_layer_global() {
        let p = ArchSpec::for_name("gemma3")
            .unwrap()
            .sliding_window
            .unwrap();
        let global: Vec<usize> = (0..18).filter(|&il| !p.is_local(il)).collect();
        assert_eq!(global, vec![5, 11, 17]);
    }
}
