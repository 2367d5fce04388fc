//! Runtime errors: every failure names the API call and carries the vendor's
//! own error name and description.

/// What a runtime call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// No usable GPU runtime library could be loaded.
    #[error("GPU runtime unavailable: {0}")]
    LibraryNotFound(String),
    /// A symbol the runtime needs is missing from the library.
    #[error("{library} lacks the symbol {symbol}")]
    MissingSymbol {
        /// The library file.
        library: String,
        /// The missing function.
        symbol: String,
    },
    /// An API call returned an error code.
    #[error("{call} failed: {name} ({code}): {description}")]
    Api {
        /// The API function that failed.
        call: &'static str,
        /// The numeric code.
        code: i32,
        /// The vendor's error name (`CUDA_ERROR_OUT_OF_MEMORY`, `hipErrorOutOfMemory`).
        name: String,
        /// The vendor's error description.
        description: String,
    },
    /// The runtime loaded but reports no device with this ordinal.
    #[error("no GPU device {ordinal} (the runtime reports {count})")]
    NoDevice {
        /// The requested ordinal.
        ordinal: usize,
        /// How many devices exist.
        count: usize,
    },
    /// Runtime compilation of a kernel source failed.
    #[error("compiling {source_name} for {arch} failed:\n{log}")]
    Compile {
        /// Name of the source.
        source_name: String,
        /// Target architecture.
        arch: String,
        /// The compiler's log.
        log: String,
    },
    /// A caller-side misuse (wrong sizes, lengths, names).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A file-system error in the kernel cache.
    #[error("kernel cache {path}: {message}")]
    Cache {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl RuntimeError {
    /// Whether this is an out-of-memory error from the device.
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            RuntimeError::Api { name, .. } => {
                name.contains("OUT_OF_MEMORY") || name.contains("OutOfMemory")
            }
            _ => false,
        }
    }
}

/// Shorthand for runtime results.
pub type Result<T> = std::result::Result<T, RuntimeError>;
