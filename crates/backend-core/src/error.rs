//! Backend errors.

/// What a backend call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Operand shapes do not fit together.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What did not fit.
        detail: String,
    },
    /// The backend cannot handle this weight type for this operation.
    #[error("{op} does not support weight type {ggml_type} (tensor {tensor})")]
    UnsupportedType {
        /// The operation.
        op: &'static str,
        /// The weight's type.
        ggml_type: gguf_format::GgmlType,
        /// The tensor's name.
        tensor: String,
    },
    /// The KV cache is full.
    #[error("context overflow: position {pos} is beyond the context size {n_ctx}")]
    ContextOverflow {
        /// The position asked for.
        pos: usize,
        /// The cache's capacity.
        n_ctx: usize,
    },
    /// Device memory ran out.
    #[error("out of device memory allocating {bytes} bytes: {detail}")]
    OutOfMemory {
        /// Size of the failed allocation.
        bytes: usize,
        /// The runtime's message.
        detail: String,
    },
    /// The backend does not implement this operation.
    #[error("not supported by this backend: {0}")]
    Unsupported(String),
    /// Any other device/runtime failure, with the runtime's own message.
    #[error("{0}")]
    Device(String),
}
