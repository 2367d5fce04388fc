//! Errors of this crate.

/// Everything that can go wrong building a tokenizer, encoding text or
/// rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required metadata key is absent.
    #[error("tokenizer metadata key `{0}` is missing")]
    MissingKey(String),
    /// A metadata key has the wrong type or a value that makes no sense.
    #[error("tokenizer metadata key `{key}` is invalid: {reason}")]
    InvalidKey {
        /// The GGUF key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `tokenizer.ggml.model` names a tokenizer we do not implement.
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, llama)")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer we do not implement.
    #[error("unsupported pre-tokenizer `{0}`")]
    UnsupportedPreTokenizer(String),
    /// The vocabulary has no tokens.
    #[error("the vocabulary is empty")]
    EmptyVocab,
    /// A special token is needed (e.g. BOS when add_bos is set) but the model has none.
    #[error("the model has no {0} token but the tokenizer settings require one")]
    MissingSpecialToken(&'static str),
    /// SentencePiece byte fallback needs a `<0xXX>` token that the vocabulary lacks.
    #[error("the vocabulary has no byte token for 0x{0:02X} (needed by byte fallback)")]
    MissingByteToken(u8),
    /// The model has no chat template.
    #[error("the model has no chat template (tokenizer.chat_template is absent)")]
    NoChatTemplate,
    /// The chat template failed to compile or render.
    #[error("chat template error: {0}")]
    Template(String),
    /// Reading the GGUF metadata failed.
    #[error("reading GGUF metadata: {0}")]
    Gguf(String),
}
