//! Engine errors.

use backend_core::BackendError;

/// Shorthand for engine results.
pub type Result<T> = std::result::Result<T, EngineError>;

/// What loading or running a model can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be read or parsed.
    #[error("reading the model file: {0}")]
    Gguf(String),
    /// `general.architecture` names an architecture this engine does not run.
    #[error("unsupported model architecture `{0}` (supported: {supported})", supported = crate::arch::SUPPORTED.join(", "))]
    UnsupportedArchitecture(String),
    /// A metadata key is missing or has a value that cannot be used.
    #[error("model metadata: {0}")]
    Metadata(String),
    /// A tensor the architecture needs is missing.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor has a shape that does not match the hyperparameters.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Shape found (ggml order).
        actual: Vec<u64>,
        /// Shape expected (ggml order).
        expected: Vec<u64>,
    },
    /// A feature of the model this engine does not implement.
    #[error("unsupported model feature: {0}")]
    Unsupported(String),
    /// A sequence would grow past its KV cache.
    #[error("context overflow: {needed} positions needed, the context holds {n_ctx}")]
    ContextOverflow {
        /// Positions the sequence would need.
        needed: usize,
        /// Context size of the sequence.
        n_ctx: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary ({n_vocab} tokens)")]
    InvalidToken {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// Invalid argument (empty batch, bad sampling option, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The compute backend failed.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
}
