//! `gguf-format`: read, validate and write GGUF files, the container format of
//! ggml and llama.cpp models.

pub mod types;

pub use types::GgmlType;
