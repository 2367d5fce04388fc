//! The tensors of a synthetic model: names, shapes, types and how their
//! random values are drawn.
//!
//! Types follow llama.cpp's `llama-quantize` for the same file type:
//! - 1-D tensors (norms, biases) and the MoE router `ffn_gate_inp` stay F32.
//! - The output matrix (`output.weight`, or `token_embd.weight` when the
//!   output is tied) is Q6_K for the Q4_0, Q4_1, Q4_K_M and Q6_K file types
//!   and Q8_0 for Q8_0; F16/F32 files keep it F16/F32.
//! - Q4_K_M: Q4_K everywhere except `attn_v` and `ffn_down`/`ffn_down_exps`
//!   of the layers llama.cpp's `use_more_bits` picks (the first and last
//!   eighth of the layers and every third layer between), which are Q6_K.
//!   This is llama.cpp's rule for these tensors; its special cases for 70B
//!   models, 8-expert models and the IQ/Q2/Q3 types do not apply here.
//! - A K-quant on a row whose length is not a multiple of 256 falls back as
//!   llama.cpp does: Q4_K to Q5_0, Q6_K to Q8_0.
//!
//! Scales: weights are ~N(0, 1/√fan_in) (Q and K a bit larger, so that
//! attention is not uniform), norm weights ~N(1, 0.1), biases ~N(0, 0.2),
//! Gemma 3's post-norms ~N(8, 0.8) (see [`POST_NORM`]),
//! the router ~N(0, 2/√n_embd) and the output ~N(0, 4/√n_embd), which gives
//! logits with a standard deviation of about 4: greedy decoding has clear
//! winners instead of near-ties.

use crate::spec::{Arch, SynthSpec, WeightType, VOCAB};
use gguf_format::GgmlType;

/// Experts of the `llama-moe` architecture.
pub const N_EXPERT: usize = 4;
/// Experts used per token by the `llama-moe` architecture.
pub const N_EXPERT_USED: usize = 2;
/// Head size of the `gemma3` architecture (every Gemma 3 size uses 256).
pub const GEMMA3_HEAD_DIM: usize = 256;

/// Hyperparameters of a synthetic model, after architecture adjustments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hparams {
    /// Embedding width.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// FFN width (per expert).
    pub n_ff: usize,
    /// Training context.
    pub n_ctx: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Experts (0 for a dense FFN).
    pub n_expert: usize,
    /// Experts used per token.
    pub n_expert_used: usize,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Sliding window (Gemma 3 only).
    pub sliding_window: Option<usize>,
    /// Whether the output matrix is the token embedding.
    pub tied_output: bool,
}

impl Hparams {
    /// The hyperparameters of `spec`.
    pub fn of(spec: &SynthSpec) -> Hparams {
        let d = spec.preset.dims();
        let mut h = Hparams {
            n_embd: d.n_embd,
            n_layer: d.n_layer,
            n_head: d.n_head,
            n_head_kv: d.n_head_kv,
            head_dim: d.n_embd / d.n_head,
            n_ff: d.n_ff,
            n_ctx: d.n_ctx,
            n_vocab: VOCAB,
            n_expert: 0,
            n_expert_used: 0,
            rope_base: 100_000.0,
            norm_eps: 1e-5,
            sliding_window: None,
            tied_output: false,
        };
        match spec.arch {
            Arch::Llama => {}
            Arch::LlamaMoe => {
                h.n_expert = N_EXPERT;
                h.n_expert_used = N_EXPERT_USED;
            }
            Arch::Qwen2 | Arch::Qwen3 => {
                h.rope_base = 1_000_000.0;
                h.norm_eps = 1e-6;
            }
            Arch::Gemma3 => {
                h.head_dim = GEMMA3_HEAD_DIM;
                h.rope_base = 1_000_000.0;
                h.norm_eps = 1e-6;
                // Small enough that the tiny preset's short tests cross it.
                h.sliding_window = Some(if d.n_embd <= 256 { 16 } else { 512 });
                h.tied_output = true;
            }
        }
        h
    }
}

/// How a tensor's values are drawn: `mean + std * z`, z ~ approx. N(0, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Init {
    /// Mean.
    pub mean: f32,
    /// Standard deviation.
    pub std: f32,
}

/// One tensor of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlan {
    /// GGUF tensor name.
    pub name: String,
    /// Shape in ggml order (row length first).
    pub shape: Vec<u64>,
    /// Stored type.
    pub ggml_type: GgmlType,
    /// Distribution of the values.
    pub init: Init,
}

impl TensorPlan {
    /// Elements in the tensor.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Bytes of the tensor's data.
    pub fn n_bytes(&self) -> u64 {
        self.n_elements() / self.ggml_type.block_size() as u64 * self.ggml_type.type_size() as u64
    }
}

/// What role a matrix plays, for choosing its type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Embedding,
    Output,
    AttnV,
    FfnDown,
    Other,
}

/// llama.cpp's `use_more_bits`: the layers that get more bits in *_M mixes.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64) % 3 == 2
}

/// The type of a matrix with rows of `ne0` elements.
fn matrix_type(w: WeightType, role: Role, layer: usize, n_layer: usize, ne0: u64) -> GgmlType {
    let t = match (w, role) {
        (WeightType::F32, _) => GgmlType::F32,
        (WeightType::F16, _) => GgmlType::F16,
        (WeightType::Q8_0, _) => GgmlType::Q8_0,
        (_, Role::Output) => GgmlType::Q6_K,
        (WeightType::Q4_0, _) => GgmlType::Q4_0,
        (WeightType::Q4_1, _) => GgmlType::Q4_1,
        (WeightType::Q6K, _) => GgmlType::Q6_K,
        (WeightType::Q4KM, Role::AttnV | Role::FfnDown) if use_more_bits(layer, n_layer) => {
            GgmlType::Q6_K
        }
        (WeightType::Q4KM, _) => GgmlType::Q4_K,
    };
    if !ne0.is_multiple_of(256) {
        match t {
            GgmlType::Q4_K => return GgmlType::Q5_0,
            GgmlType::Q6_K => return GgmlType::Q8_0,
            _ => {}
        }
    }
    t
}

/// Builds the plan for one spec.
struct Planner {
    w: WeightType,
    h: Hparams,
    out: Vec<TensorPlan>,
}

impl Planner {
    fn vector(&mut self, name: String, len: usize, init: Init) {
        self.out.push(TensorPlan {
            name,
            shape: vec![len as u64],
            ggml_type: GgmlType::F32,
            init,
        });
    }

    fn matrix(&mut self, name: String, shape: &[usize], role: Role, layer: usize) {
        let fan_in = shape[0] as f32;
        let std = match role {
            Role::Embedding if self.h.tied_output => 4.0 / fan_in.sqrt(),
            Role::Embedding => 1.0,
            Role::Output => 4.0 / fan_in.sqrt(),
            _ => 1.0 / fan_in.sqrt(),
        };
        self.matrix_with(name, shape, role, layer, std);
    }

    fn matrix_with(&mut self, name: String, shape: &[usize], role: Role, layer: usize, std: f32) {
        let role = if role == Role::Embedding && self.h.tied_output {
            Role::Output
        } else {
            role
        };
        let ne0 = shape[0] as u64;
        self.out.push(TensorPlan {
            name,
            shape: shape.iter().map(|&d| d as u64).collect(),
            ggml_type: matrix_type(self.w, role, layer, self.h.n_layer, ne0),
            init: Init { mean: 0.0, std },
        });
    }
}

const NORM: Init = Init {
    mean: 1.0,
    std: 0.1,
};
/// Gemma 3's post-attention and post-FFN norms: large enough that the
/// blocks' outputs outweigh the (tied) embedding of the current token in the
/// residual stream; with unit weights the model just repeats its input token.
const POST_NORM: Init = Init {
    mean: 8.0,
    std: 0.8,
};
const BIAS: Init = Init {
    mean: 0.0,
    std: 0.2,
};

/// Every tensor of `spec`, in file order: `token_embd`, the blocks, then
/// `output_norm` and `output`.
pub fn tensor_plan(spec: &SynthSpec) -> Vec<TensorPlan> {
    let h = Hparams::of(spec);
    let mut p = Planner {
        w: spec.weights,
        h,
        out: Vec::new(),
    };
    let (e, hd, ff) = (h.n_embd, h.head_dim, h.n_ff);
    let q_dim = h.n_head * hd;
    let kv_dim = h.n_head_kv * hd;
    p.matrix(
        "token_embd.weight".into(),
        &[e, h.n_vocab],
        Role::Embedding,
        0,
    );
    for il in 0..h.n_layer {
        let n = |t: &str| format!("blk.{il}.{t}");
        p.vector(n("attn_norm.weight"), e, NORM);
        let qk_std = 1.5 / (e as f32).sqrt();
        p.matrix_with(n("attn_q.weight"), &[e, q_dim], Role::Other, il, qk_std);
        p.matrix_with(n("attn_k.weight"), &[e, kv_dim], Role::Other, il, qk_std);
        p.matrix(n("attn_v.weight"), &[e, kv_dim], Role::AttnV, il);
        if spec.arch == Arch::Qwen2 {
            p.vector(n("attn_q.bias"), q_dim, BIAS);
            p.vector(n("attn_k.bias"), kv_dim, BIAS);
            p.vector(n("attn_v.bias"), kv_dim, BIAS);
        }
        if matches!(spec.arch, Arch::Qwen3 | Arch::Gemma3) {
            p.vector(n("attn_q_norm.weight"), hd, NORM);
            p.vector(n("attn_k_norm.weight"), hd, NORM);
        }
        p.matrix(n("attn_output.weight"), &[q_dim, e], Role::Other, il);
        if spec.arch == Arch::Gemma3 {
            p.vector(n("post_attention_norm.weight"), e, POST_NORM);
        }
        p.vector(n("ffn_norm.weight"), e, NORM);
        if h.n_expert > 0 {
            let x = h.n_expert;
            // The router stays F32, as llama-quantize leaves it.
            p.out.push(TensorPlan {
                name: n("ffn_gate_inp.weight"),
                shape: vec![e as u64, x as u64],
                ggml_type: GgmlType::F32,
                init: Init {
                    mean: 0.0,
                    std: 2.0 / (e as f32).sqrt(),
                },
            });
            p.matrix(n("ffn_gate_exps.weight"), &[e, ff, x], Role::Other, il);
            p.matrix(n("ffn_up_exps.weight"), &[e, ff, x], Role::Other, il);
            p.matrix(n("ffn_down_exps.weight"), &[ff, e, x], Role::FfnDown, il);
        } else {
            p.matrix(n("ffn_gate.weight"), &[e, ff], Role::Other, il);
            p.matrix(n("ffn_up.weight"), &[e, ff], Role::Other, il);
            p.matrix(n("ffn_down.weight"), &[ff, e], Role::FfnDown, il);
        }
        if spec.arch == Arch::Gemma3 {
            p.vector(n("post_ffw_norm.weight"), e, POST_NORM);
        }
    }
    p.vector("output_norm.weight".into(), e, NORM);
    if !h.tied_output {
        p.matrix("output.weight".into(), &[e, h.n_vocab], Role::Output, 0);
    }
    p.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Preset;

    fn types(spec: &SynthSpec, suffix: &str) -> Vec<GgmlType> {
        tensor_plan(spec)
            .into_iter()
            .filter(|t| t.name == suffix || t.name.ends_with(&format!(".{suffix}")))
            .map(|t| t.ggml_type)
            .collect()
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_32_layers() {
        // n/8 = 4: layers 0-3, 28-31, and 4 + 3k + 2 in between.
        let picked: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn q4_k_m_mix_on_the_8b_preset() {
        let spec = SynthSpec::new(Preset::B8, Arch::Llama, WeightType::Q4KM);
        assert_eq!(types(&spec, "output.weight"), vec![GgmlType::Q6_K]);
        assert_eq!(types(&spec, "token_embd.weight"), vec![GgmlType::Q4_K]);
        let v = types(&spec, "attn_v.weight");
        assert_eq!(v.iter().filter(|t| **t == GgmlType::Q6_K).count(), 16);
        assert!(types(&spec, "attn_q.weight")
            .iter()
            .all(|t| *t == GgmlType::Q4_K));
    }

    #[test]
    fn k_quants_fall_back_on_rows_not_multiple_of_256() {
        let spec = SynthSpec::new(Preset::Smollm2, Arch::Llama, WeightType::Q4KM);
        assert!(types(&spec, "attn_q.weight")
            .iter()
            .all(|t| *t == GgmlType::Q5_0));
        assert_eq!(types(&spec, "output.weight"), vec![GgmlType::Q8_0]);
        // ffn_down rows are 1536 = 6 * 256 long: real K-quants.
        assert!(types(&spec, "ffn_down.weight")
            .iter()
            .all(|t| matches!(t, GgmlType::Q4_K | GgmlType::Q6_K)));
    }

    #[test]
    fn architectures_have_their_tensors() {
        let names = |arch| {
            tensor_plan(&SynthSpec::new(Preset::Tiny, arch, WeightType::Q8_0))
                .into_iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
        };
        assert!(names(Arch::Qwen2).contains(&"blk.0.attn_k.bias".to_string()));
        assert!(names(Arch::Qwen3).contains(&"blk.5.attn_q_norm.weight".to_string()));
        let g = names(Arch::Gemma3);
        assert!(g.contains(&"blk.0.post_ffw_norm.weight".to_string()));
        assert!(!g.contains(&"output.weight".to_string()));
        let m = names(Arch::LlamaMoe);
        assert!(m.contains(&"blk.1.ffn_down_exps.weight".to_string()));
        assert!(!m.contains(&"blk.1.ffn_down.weight".to_string()));
    }
}
