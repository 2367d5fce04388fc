//! Errors returned by this crate.

use crate::Format;

/// What went wrong in a quantization call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// The element count is not a whole number of blocks.
    #[error("{format}: {elements} elements is not a whole number of {block_size}-element blocks")]
    NotWholeBlocks {
        /// The format.
        format: Format,
        /// Requested element count.
        elements: usize,
        /// The format's block size.
        block_size: usize,
    },
    /// The byte buffer does not have the size the element count requires.
    #[error("{format}: {elements} elements need {expected} bytes, got {actual}")]
    ByteLength {
        /// The format.
        format: Format,
        /// Element count.
        elements: usize,
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// This operation is not implemented for this format.
    #[error("{op} is not supported for {format}")]
    Unsupported {
        /// The format.
        format: Format,
        /// The operation ("dequantize", "quantize", "vec_dot").
        op: &'static str,
    },
}
