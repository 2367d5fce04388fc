//! Hyperparameters read from the `{arch}.*` metadata keys.

use crate::arch::{ArchSpec, NormKind};
use crate::error::{EngineError, Result};
use crate::source::ModelFile;
use backend_core::{RopeSpec, YarnSpec};

/// The numbers that shape a model, read from its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The architecture's spec.
    pub arch: ArchSpec,
    /// Vocabulary size (rows of `token_embd.weight`).
    pub n_vocab: usize,
    /// Context length the model was trained with (`{arch}.context_length`).
    pub n_ctx_train: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// FFN hidden width (per expert for MoE models).
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Size of each attention head.
    pub head_dim: usize,
    /// Epsilon of the norms.
    pub norm_eps: f32,
    /// RoPE of the global (or all) layers.
    pub rope: RopeSpec,
    /// RoPE of the sliding-window layers, where the architecture has them.
    pub rope_local: Option<RopeSpec>,
    /// Sliding-window size, where the architecture has sliding-window layers.
    pub sliding_window: Option<usize>,
    /// Multiplier of `q·k` in attention.
    pub attn_scale: f32,
    /// `cap * tanh(logit / cap)` on the final logits, where set.
    pub final_logit_softcap: Option<f32>,
    /// Number of experts (0: dense FFN).
    pub n_expert: usize,
    /// Experts used per token.
    pub n_expert_used: usize,
}

impl ModelConfig {
    /// Read the hyperparameters of `file`, whose architecture is `arch`.
    pub(crate) fn from_file(file: &ModelFile, arch: ArchSpec) -> Result<ModelConfig> {
        let n_embd = file.arch_usize("embedding_length")?;
        let n_layer = file.arch_usize("block_count")?;
        let n_head = file.arch_usize("attention.head_count")?;
        let n_head_kv = file
            .arch_usize_opt("attention.head_count_kv")?
            .unwrap_or(n_head);
        let n_ff = file.arch_usize("feed_forward_length")?;
        let n_ctx_train = file.arch_usize("context_length")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::Metadata(format!(
                "attention.head_count {n_head} is not a multiple of attention.head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = match file.arch_usize_opt("attention.key_length")? {
            Some(k) => k,
            None => {
                if n_embd % n_head != 0 {
                    return Err(EngineError::Metadata(format!(
                        "embedding_length {n_embd} is not a multiple of attention.head_count {n_head}"
                    )));
                }
                n_embd / n_head
            }
        };
        if let Some(v) = file.arch_usize_opt("attention.value_length")? {
            if v != head_dim {
                return Err(EngineError::Unsupported(format!(
                    "attention.value_length {v} differs from attention.key_length {head_dim}"
                )));
            }
        }
        if head_dim == 0 || n_layer == 0 || n_embd == 0 {
            return Err(EngineError::Metadata(
                "embedding_length, block_count and head size must be positive".into(),
            ));
        }
        let norm_eps = match arch.norm {
            NormKind::Rms => file.arch_f32("attention.layer_norm_rms_epsilon")?,
            NormKind::Layer => file.arch_f32("attention.layer_norm_epsilon")?,
        };
        let n_rot = file
            .arch_usize_opt("rope.dimension_count")?
            .unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::Metadata(format!(
                "rope.dimension_count {n_rot} does not fit head size {head_dim}"
            )));
        }
        let freq_base = file.arch_f32_opt("rope.freq_base")?.unwrap_or(10_000.0);
        let rope = RopeSpec {
            mode: arch.rope_mode,
            n_dims: n_rot,
            freq_base,
            freq_scale: 1.0,
            yarn: None,
        };
        let rope = apply_rope_scaling(file, rope, n_ctx_train)?;
        let (rope_local, sliding_window) = match arch.sliding_window {
            Some(pattern) => {
                let base = file
                    .arch_f32_opt("rope.freq_base_swa")?
                    .unwrap_or(pattern.local_rope_base);
                let window = file.arch_usize("attention.sliding_window")?;
                let local = RopeSpec {
                    freq_base: base,
                    freq_scale: 1.0,
                    yarn: None,
                    ..rope
                };
                (Some(local), Some(window))
            }
            None => (None, None),
        };
        // Gemma 3 27B scales queries by 1/sqrt(n_embd / n_head) instead of
        // 1/sqrt(head size) (Google's reference config; llama.cpp does the same).
        let attn_scale = if arch.name == "gemma3" && n_layer == 62 {
            1.0 / ((n_embd / n_head) as f32).sqrt()
        } else {
            1.0 / (head_dim as f32).sqrt()
        };
        let final_logit_softcap = if arch.final_logit_softcap {
            file.arch_f32_opt("final_logit_softcapping")?
                .filter(|c| *c > 0.0)
        } else {
            None
        };
        if file
            .arch_f32_opt("attn_logit_softcapping")?
            .is_some_and(|c| c > 0.0)
        {
            return Err(EngineError::Unsupported(
                "attention logit soft-capping".into(),
            ));
        }
        let n_expert = file.arch_usize_opt("expert_count")?.unwrap_or(0);
        let n_expert_used = file.arch_usize_opt("expert_used_count")?.unwrap_or(0);
        if n_expert > 0 && (n_expert_used == 0 || n_expert_used > n_expert) {
            return Err(EngineError::Metadata(format!(
                "expert_used_count {n_expert_used} does not fit expert_count {n_expert}"
            )));
        }
        let n_vocab = file.tensor_dims("token_embd.weight")?[1];
        Ok(ModelConfig {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            norm_eps,
            rope,
            rope_local,
            sliding_window,
            attn_scale,
            final_logit_softcap,
            n_expert,
            n_expert_used,
        })
    }

    /// RoPE settings of layer `il`.
    pub fn rope_for_layer(&self, il: usize) -> RopeSpec {
        match (self.arch.sliding_window, self.rope_local) {
            (Some(p), Some(local)) if p.is_local(il) => local,
            _ => self.rope,
        }
    }

    /// Sliding window of layer `il` (`None`: attends to the whole context).
    pub fn window_for_layer(&self, il: usize) -> Option<usize> {
        match self.arch.sliding_window {
            Some(p) if p.is_local(il) => self.sliding_window,
            _ => None,
        }
    }
}

/// Linear and YaRN scaling from `rope.scaling.*` (or the older
/// `rope.scale_linear`), with ggml's defaults for the YaRN knobs.
fn apply_rope_scaling(
    file: &ModelFile,
    mut rope: RopeSpec,
    n_ctx_train: usize,
) -> Result<RopeSpec> {
    let kind = file.arch_str_opt("rope.scaling.type")?;
    let factor = match file.arch_f32_opt("rope.scaling.factor")? {
        Some(f) => Some(f),
        None => file.arch_f32_opt("rope.scale_linear")?,
    };
    let factor = factor.filter(|f| *f > 0.0 && *f != 1.0);
    // llama.cpp applies the factor whatever the scaling type says.
    if let Some(f) = factor {
        rope.freq_scale = 1.0 / f;
    }
    match kind.as_deref() {
        None | Some("none") | Some("linear") => {}
        Some("yarn") => {
            let n_ctx_orig = file
                .arch_usize_opt("rope.scaling.original_context_length")?
                .unwrap_or(n_ctx_train);
            rope.yarn = Some(YarnSpec {
                ext_factor: file
                    .arch_f32_opt("rope.scaling.yarn_ext_factor")?
                    .unwrap_or(1.0),
                attn_factor: file
                    .arch_f32_opt("rope.scaling.yarn_attn_factor")?
                    .unwrap_or(1.0),
                beta_fast: file
                    .arch_f32_opt("rope.scaling.yarn_beta_fast")?
                    .unwrap_or(32.0),
                beta_slow: file
                    .arch_f32_opt("rope.scaling.yarn_beta_slow")?
                    .unwrap_or(1.0),
                n_ctx_orig,
            });
        }
        Some(other) => {
            return Err(EngineError::Unsupported(format!(
                "rope.scaling.type `{other}`"
            )))
        }
    }
    Ok(rope)
}
