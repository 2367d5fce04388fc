//! [`SynthError`].

use std::path::PathBuf;

/// Why a synthetic model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A preset, architecture or weight type name that does not exist.
    #[error("unknown {what} `{name}` (known: {known})")]
    UnknownName {
        /// What was being named.
        what: &'static str,
        /// The name given.
        name: String,
        /// The accepted names.
        known: String,
    },
    /// The tokenizer source file lacks something the model needs.
    #[error("tokenizer source: {0}")]
    Tokenizer(String),
    /// Building the GGUF header failed.
    #[error(transparent)]
    Gguf(#[from] gguf_format::GgufError),
    /// Quantizing a tensor failed.
    #[error("quantizing {tensor}: {source}")]
    Quant {
        /// The tensor.
        tensor: String,
        /// The quantizer's error.
        source: quant::QuantError,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
