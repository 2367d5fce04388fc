//! What the server needs from a model.

use crate::api::ChatMessage;
use crate::ApiError;
use scheduler::{Scheduler, TokenSampler};

/// Sampling fields of a request, as given (defaults are the service's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature (0: greedy).
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    pub top_p: Option<f32>,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<u32>,
    /// Drop tokens below `min_p ×` the best token's probability.
    pub min_p: Option<f32>,
    /// RNG seed.
    pub seed: Option<u64>,
    /// OpenAI presence penalty.
    pub presence_penalty: Option<f32>,
    /// OpenAI frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// llama.cpp-style repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Keep generating after end-of-generation tokens (llama.cpp's
    /// `ignore_eos` extension, used by benchmarks).
    pub ignore_eos: bool,
}

/// Turns generated token ids into text, never splitting a UTF-8 character.
pub trait Detokenizer: Send {
    /// Text completed by this token (may be empty).
    fn push(&mut self, id: u32) -> String;
    /// Whatever is still buffered at the end.
    fn flush(&mut self) -> String;
}

/// A loaded model as the server sees it.
pub trait ModelService: Send + Sync + 'static {
    /// The id reported by `/v1/models` and in responses.
    fn model_id(&self) -> &str;
    /// Context size of one sequence.
    fn n_ctx(&self) -> usize;
    /// Render chat messages with the model's chat template, ready to tokenize.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ApiError>;
    /// Tokenize a prompt (with the model's BOS rule; special tokens parsed when `parse_special`).
    fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, ApiError>;
    /// The text of one token (for logprobs).
    fn token_text(&self, id: u32) -> String;
    /// A fresh streaming detokenizer.
    fn detokenizer(&self) -> Box<dyn Detokenizer>;
    /// A sampler for one request; `prompt` seeds its repetition-penalty window.
    fn sampler(
        &self,
        params: &SamplingParams,
        prompt: &[u32],
    ) -> Result<Box<dyn TokenSampler>, ApiError>;
    /// The end-of-generation test.
    fn eog(&self) -> Box<dyn Fn(u32) -> bool + Send>;
    /// The scheduler that runs this model.
    fn scheduler(&self) -> &Scheduler;
}
