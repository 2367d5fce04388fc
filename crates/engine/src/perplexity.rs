//! Perplexity as llama.cpp's `llama-perplexity` computes it.
//!
//! The text's tokens are cut into non-overlapping chunks of `n_ctx` tokens
//! (a trailing partial chunk is dropped); each chunk is evaluated from an
//! empty KV cache, with its first token replaced by BOS when the model adds
//! BOS; only the second half of each chunk is scored (tokens `n_ctx/2 + 1 ..
//! n_ctx`, predicted from the logits one position earlier), so every scored
//! token has at least `n_ctx/2` tokens of context. PPL = exp(mean NLL).

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use backend_core::Backend;

/// Result of a perplexity run.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// The final perplexity.
    pub ppl: f64,
    /// Running perplexity after each chunk (what llama.cpp prints as `[i]x`).
    pub per_chunk: Vec<f64>,
    /// Tokens scored.
    pub scored: usize,
}

/// `-log softmax(logits)[target]`, accumulated in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    sum.ln() + max - logits[target as usize] as f64
}

/// Perplexity of `tokens` (the whole text, tokenized with `add_special`)
/// with chunks of `n_ctx` tokens; `progress(i, ppl)` is called after chunk `i`
/// (1-based) with the running perplexity.
pub fn perplexity<B: Backend>(
    engine: &Engine<B>,
    tokens: &[u32],
    n_ctx: usize,
    mut progress: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    if n_ctx < 4 {
        return Err(EngineError::InvalidArgument(format!(
            "context size {n_ctx} is too small for perplexity"
        )));
    }
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        return Err(EngineError::InvalidArgument(format!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let bos = engine.bos_if_added();
    let n_vocab = engine.model().config().n_vocab;
    let first = n_ctx / 2;
    let mut session = engine.session_with_ctx(n_ctx)?;
    let mut total = 0.0f64;
    let mut scored = 0usize;
    let mut per_chunk = Vec::with_capacity(n_chunks);
    for i in 0..n_chunks {
        let chunk = &tokens[i * n_ctx..(i + 1) * n_ctx];
        let mut input = chunk.to_vec();
        if let Some(bos) = bos {
            input[0] = bos;
        }
        session.truncate(0);
        let logits = session.eval_all(&input)?;
        for j in first..n_ctx - 1 {
            total += nll(&logits[j * n_vocab..(j + 1) * n_vocab], chunk[j + 1]);
            scored += 1;
        }
        let ppl = (total / scored as f64).exp();
        per_chunk.push(ppl);
        progress(i + 1, ppl);
    }
    Ok(Perplexity {
        ppl: *per_chunk.last().unwrap_or(&f64::NAN),
        per_chunk,
        scored,
    })
}

#[cfg(test)]
mod tests {
    use super::nll;

    #[test]
    fn nll_of_uniform_is_log_n() {
        let l = [0.5f32; 8];
        assert!((nll(&l, 3) - (8f64).ln()).abs() < 1e-9);
        let l = [0.0f32, 100.0];
        assert!(nll(&l, 1) < 1e-9);
    }
}
