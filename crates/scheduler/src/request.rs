//! What a client submits and what it receives.

use crate::TokenLogprob;

/// Picks the next token from logits; one per request, so it can keep state
/// (a seeded RNG, penalty history).
pub trait TokenSampler: Send {
    /// Choose a token given the raw logits of the last position.
    fn sample(&mut self, logits: &[f32]) -> u32;
}

impl<F: FnMut(&[f32]) -> u32 + Send> TokenSampler for F {
    fn sample(&mut self, logits: &[f32]) -> u32 {
        self(logits)
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token was produced, or the caller asked to stop.
    Stop,
    /// `max_tokens` was reached, or the context is full.
    Length,
}

/// What the scheduler reports about one request.
#[derive(Debug, Clone)]
pub enum Event {
    /// A generated token (end-of-generation tokens are not reported).
    Token {
        /// The token id.
        id: u32,
        /// Its log-probability and the top alternatives, when requested.
        logprob: Option<TokenLogprob>,
    },
    /// The request finished.
    Done {
        /// Why it ended.
        reason: FinishReason,
        /// Prompt tokens evaluated.
        prompt_tokens: usize,
        /// Tokens generated (end-of-generation tokens excluded).
        completion_tokens: usize,
    },
    /// The request failed; nothing more follows.
    Error(String),
}

/// Receives a request's events. Returning `false` cancels the request: its
/// sequence leaves the batch at the next step and its KV space is freed.
pub type EventSink = Box<dyn FnMut(Event) -> bool + Send>;

/// A generation request.
pub struct Request {
    /// Prompt token ids (not empty).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Picks each next token.
    pub sampler: Box<dyn TokenSampler>,
    /// True for tokens that end the generation (not reported as tokens).
    pub is_eog: Box<dyn Fn(u32) -> bool + Send>,
    /// Number of top alternatives to report with each token (`None`: no logprobs).
    pub top_logprobs: Option<usize>,
    /// Whether the prompt may start from the cached positions of a finished
    /// sequence with the same first tokens (llama-server's `cache_prompt`).
    /// Results can then differ in the last bits from a fresh evaluation, as
    /// the remaining tokens go through the model in a different batch.
    pub reuse_prefix: bool,
    /// Where events go.
    pub sink: EventSink,
}
