//! `tokenizer`: the tokenizers of GGUF models, built from the file's
//! `tokenizer.*` metadata alone and matching llama.cpp token for token.
//!
//! - byte-level BPE (`tokenizer.ggml.model = "gpt2"`) with the pre-tokenizer
//!   named by `tokenizer.ggml.pre` (smollm, llama-bpe/llama3, qwen2, gpt-2,
//!   default and their aliases);
//! - SentencePiece (`"llama"`): score-driven merges, byte fallback, space prefix;
//! - special and control tokens found in input text, BOS/EOS from metadata,
//!   end-of-generation detection;
//! - decoding to bytes per token, whole sequences, and a streaming decoder
//!   that never emits half a UTF-8 character;
//! - chat templates rendered with minijinja ([`chat`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = gguf_format::Gguf::open("model.gguf")?;
//! let tok = tokenizer::Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("Hello world", true, true)?;
//! assert_eq!(tok.decode(&ids), "Hello world");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod bpe;
pub mod chat;
mod decode;
mod error;
mod gguf;
mod merge;
mod pretokenize;
mod special;
mod spm;
mod tokenizer;
mod unicode;
mod unicode_table;
mod vocab;

pub use chat::{ChatMessage, ChatTemplate};
pub use decode::StreamDecoder;
pub use error::TokenizerError;
pub use tokenizer::{Tokenizer, TokenizerKind};
pub use vocab::{SpecialTokenIds, TokenType, Vocab};
