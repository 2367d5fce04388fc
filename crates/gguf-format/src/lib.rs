//! `gguf-format`: read, validate and write GGUF files, the container format of
//! ggml and llama.cpp models.
//!
//! - [`Gguf`] parses a file held in any byte storage ([`Gguf::open`] memory-maps
//!   it); metadata values ([`Value`]) and tensor data are borrowed zero-copy.
//! - Every count, length and offset is checked against the file size before
//!   anything is allocated; malformed input is an error ([`GgufError`]), never
//!   a panic.
//! - [`GgufWriter`] builds files; reading a file written by gguf-py or
//!   llama.cpp and writing it back reproduces it byte for byte.
//!
//! ```no_run
//! let model = gguf_format::Gguf::open("model.gguf")?;
//! let layers = model.arch_u32("block_count")?;
//! let tokens = model.get_array("tokenizer.ggml.tokens")?;
//! for t in model.tensors() {
//!     let bytes: &[u8] = model.tensor_data(t);
//!     println!("{} {} {:?} {} bytes", t.name, t.ggml_type, t.shape, bytes.len());
//! }
//! # let _ = (layers, tokens);
//! # Ok::<(), gguf_format::GgufError>(())
//! ```
#![warn(missing_docs)]

mod accessors;
mod cursor;
mod error;
mod gguf;
mod owned;
mod parse;
mod tensor;
pub mod types;
mod value;
mod writer;

pub use accessors::ARCHITECTURE_KEY;
pub use error::GgufError;
pub use gguf::{Gguf, MappedGguf};
pub use owned::MetadataValue;
pub use tensor::TensorInfo;
pub use types::GgmlType;
pub use value::{ArrayView, Value, ValueType};
pub use writer::GgufWriter;

/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Key that overrides the alignment of tensor data.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest array nesting accepted (bounds recursion on hostile input).
pub const MAX_ARRAY_NESTING: usize = 64;
