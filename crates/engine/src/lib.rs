//! `engine`: load GGUF models and run them on any rocmforge backend.
//!
//! - [`Engine`]: a model plus its tokenizer; [`Engine::generate`] streams
//!   [`GeneratedToken`]s (id + UTF-8-safe text piece) with per-call
//!   [`SamplingOptions`].
//! - [`Session`]: one sequence with its KV cache; [`Session::eval`] gives the
//!   logits after a token list, [`Session::eval_all`] after every token.
//! - [`Model::forward`]: one pass over a batch of several sequences' chunks
//!   ([`SeqChunk`]), for schedulers that batch requests.
//! - Architectures are data ([`ArchSpec`]): `llama` (with Mixtral-style MoE),
//!   `qwen2`, `qwen3`, `gemma3`; the forward pass is one function.
//! - [`Sampler`]: llama.cpp's default chain (penalties, top-k, top-p, min-p,
//!   temperature, draw) with a seeded PRNG.
//! - [`perplexity()`](perplexity::perplexity): llama.cpp's perplexity method.
//!
//! ```no_run
//! use engine::{Engine, EngineOptions, SamplingOptions};
//!
//! let engine = Engine::load("SmolLM2-135M-Instruct.Q4_1.gguf", EngineOptions {
//!     n_ctx: Some(512),
//!     ..Default::default()
//! })?;
//! let prompt = engine.tokenize("def fibonacci(n):", true, false)?;
//! let opts = SamplingOptions { temperature: 0.7, seed: 42, max_tokens: 32, ..Default::default() };
//! for token in engine.generate(&prompt, opts)? {
//!     print!("{}", token?.text_piece);
//! }
//! # Ok::<(), engine::EngineError>(())
//! ```

#![warn(missing_docs)]

pub mod arch;
mod engine;
mod error;
mod generate;
mod hparams;
mod model;
mod moe;
pub mod perplexity;
mod rng;
mod sampler;
mod source;
mod tok;
mod weights;

pub use arch::{ArchSpec, EmbedScale, NormKind, Presence, SlidingWindowPattern};
pub use backend_core::{Backend, SelectMode, TokenSelect};
pub use backend_cpu::CpuBackend;
pub use engine::{Engine, EngineOptions, Session, DEFAULT_MAX_CTX, PREFILL_CHUNK};
pub use error::{EngineError, Result};
pub use generate::{FinishReason, GeneratedToken, Generation, Timings};
pub use hparams::ModelConfig;
pub use model::{LogitsWanted, Model, SeqChunk, Sequence};
pub use rng::Rng;
pub use sampler::{Sampler, SamplingOptions};
pub use tok::Tokenizer;
