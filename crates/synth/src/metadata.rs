//! The metadata of a synthetic model: hyperparameters under `{arch}.*` and
//! the tokenizer copied from a real model.

use crate::error::SynthError;
use crate::plan::Hparams;
use crate::spec::{SynthSpec, VOCAB};
use gguf_format::{Gguf, MetadataValue};
use std::path::Path;

/// Metadata keys copied verbatim from a tokenizer source (`tokenizer.*`:
/// vocabulary, merges, token types, special ids, pre-tokenizer, chat template).
pub type TokenizerMetadata = Vec<(String, MetadataValue)>;

/// Reads every `tokenizer.*` key of `source` (the SmolLM2 fixture), checking
/// that its vocabulary has [`VOCAB`] tokens.
pub fn tokenizer_metadata<S: AsRef<[u8]>>(
    source: &Gguf<S>,
) -> Result<TokenizerMetadata, SynthError> {
    let tokens = source
        .get_array_opt("tokenizer.ggml.tokens")?
        .ok_or_else(|| SynthError::Tokenizer("no tokenizer.ggml.tokens".into()))?;
    if tokens.len() != VOCAB {
        return Err(SynthError::Tokenizer(format!(
            "tokenizer.ggml.tokens has {} tokens, the presets need {VOCAB} (SmolLM2's vocabulary)",
            tokens.len()
        )));
    }
    Ok(source
        .metadata()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.to_string(), v.to_owned_value()))
        .collect())
}

/// [`tokenizer_metadata`] of the GGUF file at `path`.
pub fn tokenizer_metadata_from_file(path: &Path) -> Result<TokenizerMetadata, SynthError> {
    let file = Gguf::open(path)?;
    tokenizer_metadata(&file)
}

/// Every metadata entry of the model, in file order.
pub fn model_metadata(
    spec: &SynthSpec,
    tokenizer: &TokenizerMetadata,
) -> Vec<(String, MetadataValue)> {
    let h = Hparams::of(spec);
    let arch = spec.arch.gguf_name();
    let mut md: Vec<(String, MetadataValue)> = Vec::new();
    let mut put = |k: &str, v: MetadataValue| md.push((k.to_string(), v));
    let u = |x: usize| MetadataValue::U32(x as u32);
    put("general.architecture", arch.into());
    put("general.type", "model".into());
    put(
        "general.name",
        format!(
            "rocmforge synthetic {} {} {} seed {}",
            spec.preset, spec.arch, spec.weights, spec.seed
        )
        .into(),
    );
    put("general.file_type", spec.weights.file_type().into());
    put("general.quantization_version", 2u32.into());
    let a = |s: &str| format!("{arch}.{s}");
    put(&a("vocab_size"), u(h.n_vocab));
    put(&a("context_length"), u(h.n_ctx));
    put(&a("embedding_length"), u(h.n_embd));
    put(&a("block_count"), u(h.n_layer));
    put(&a("feed_forward_length"), u(h.n_ff));
    put(&a("attention.head_count"), u(h.n_head));
    put(&a("attention.head_count_kv"), u(h.n_head_kv));
    put(&a("attention.key_length"), u(h.head_dim));
    put(&a("attention.value_length"), u(h.head_dim));
    put(&a("rope.dimension_count"), u(h.head_dim));
    put(&a("rope.freq_base"), h.rope_base.into());
    put(&a("attention.layer_norm_rms_epsilon"), h.norm_eps.into());
    if let Some(w) = h.sliding_window {
        put(&a("attention.sliding_window"), u(w));
    }
    if h.n_expert > 0 {
        put(&a("expert_count"), u(h.n_expert));
        put(&a("expert_used_count"), u(h.n_expert_used));
    }
    md.extend(tokenizer.iter().cloned());
    md
}
