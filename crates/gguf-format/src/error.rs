//! The error type of this crate: every variant names what is wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong while reading, querying or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, mapped or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Writing to a stream failed.
    #[error("write failed: {0}")]
    Write(std::io::Error),
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The four bytes found at offset 0.
        found: [u8; 4],
    },
    /// The version field reads as a small number only when byte-swapped.
    #[error(
        "big-endian GGUF files are not supported (version field reads {swapped} byte-swapped)"
    )]
    BigEndian {
        /// The version the file claims once byte-swapped.
        swapped: u32,
    },
    /// GGUF version 1 (32-bit counts) is obsolete and refused.
    #[error("GGUF version 1 is not supported (only versions 2 and 3 are)")]
    Version1,
    /// A version other than 1, 2 or 3.
    #[error("unsupported GGUF version {version} (only versions 2 and 3 are)")]
    UnsupportedVersion {
        /// The version found in the header.
        version: u32,
    },
    /// The file ends before something it announces.
    #[error("file truncated: {what} at offset {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// What was being read.
        what: String,
        /// Absolute offset of the read.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },
    /// A count (tensors, keys, array elements) that the rest of the file cannot hold.
    #[error("{what} at offset {offset} claims {count} entries, more than the {available} remaining bytes can hold")]
    CountTooLarge {
        /// What was being counted.
        what: String,
        /// Absolute offset of the count.
        offset: u64,
        /// The count found.
        count: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A string that is not valid UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string (a key, or the value of a key).
        what: String,
        /// Absolute offset of the string bytes.
        offset: u64,
    },
    /// A metadata value type id outside 0..=12.
    #[error("metadata key {key:?}: unknown value type id {id} at offset {offset}")]
    UnknownValueType {
        /// The key whose value it is.
        key: String,
        /// The type id found.
        id: u32,
        /// Absolute offset of the type id.
        offset: u64,
    },
    /// A bool stored as a byte other than 0 or 1.
    #[error("metadata key {key:?}: bool value byte is {byte}, expected 0 or 1")]
    InvalidBool {
        /// The key whose value it is.
        key: String,
        /// The byte found.
        byte: u8,
    },
    /// Arrays nested deeper than [`crate::MAX_ARRAY_NESTING`].
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep {
        /// The key whose value it is.
        key: String,
        /// The limit.
        max: usize,
    },
    /// The same key appears twice.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// The same tensor name appears twice.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
    },
    /// A tensor type id that ggml does not define.
    #[error("tensor {tensor:?}: unknown ggml type id {id}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The type id found.
        id: u32,
    },
    /// More dimensions than ggml supports.
    #[error("tensor {tensor:?}: {n_dims} dimensions, ggml supports at most {max}")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// Dimensions claimed.
        n_dims: u32,
        /// The limit ([`crate::MAX_DIMS`]).
        max: u32,
    },
    /// A shape that is too large or does not fit the type's block size.
    #[error("tensor {tensor:?}: bad shape {shape:?} for type {ggml_type}: {reason}")]
    BadShape {
        /// The tensor.
        tensor: String,
        /// The shape, ne0 first.
        shape: Vec<u64>,
        /// The tensor type.
        ggml_type: crate::GgmlType,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A tensor whose data offset is not a multiple of the alignment.
    #[error(
        "tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor whose data does not lie inside the data section.
    #[error("tensor {tensor:?}: data [{offset}, +{size}) lies outside the data section ({data_size} bytes)")]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// Its byte size.
        size: u64,
        /// Size of the data section.
        data_size: u64,
    },
    /// Two tensors whose data overlap.
    #[error("tensors {first:?} and {second:?} overlap in the data section")]
    TensorOverlap {
        /// The tensor with the lower offset.
        first: String,
        /// The tensor starting inside it.
        second: String,
    },
    /// `general.alignment` is zero, not a power of two, or mistyped.
    #[error("general.alignment: {reason}")]
    BadAlignment {
        /// Why it is rejected.
        reason: String,
    },
    /// A required metadata key is absent.
    #[error("metadata key {key:?} is missing")]
    MissingKey {
        /// The full key.
        key: String,
    },
    /// A metadata value of the wrong type (or out of range for the requested type).
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The full key (with `[i]` for array elements).
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// The writer was given something it cannot encode.
    #[error("cannot write: {0}")]
    InvalidWrite(String),
}

impl GgufError {
    pub(crate) fn wrong_type(key: &str, expected: &'static str, found: String) -> Self {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found,
        }
    }
}
