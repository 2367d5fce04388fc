//! The formats this crate encodes: every ggml type plus documented extensions
//! that have no ggml id (and therefore can never collide with one).

use gguf_format::GgmlType;

/// Block formats that ggml does not define. They live outside the ggml id
/// space on purpose: they can be used in memory and in tests, but a GGUF file
/// cannot name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtFormat {
    /// OCP MX v1.0 MXFP6 with E2M3 elements: 32 elements, one E8M0 scale byte
    /// followed by 24 bytes of packed 6-bit codes.
    Mxfp6E2M3,
    /// OCP MX v1.0 MXFP6 with E3M2 elements, same block layout as [`ExtFormat::Mxfp6E2M3`].
    Mxfp6E3M2,
}

/// A block format: either a ggml type or one of our extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// A format ggml defines, identified by its ggml type.
    Ggml(GgmlType),
    /// An extension format without a ggml id.
    Ext(ExtFormat),
}

impl From<GgmlType> for Format {
    fn from(t: GgmlType) -> Self {
        Format::Ggml(t)
    }
}

impl From<ExtFormat> for Format {
    fn from(t: ExtFormat) -> Self {
        Format::Ext(t)
    }
}

impl Format {
    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            Format::Ggml(t) => t.block_size(),
            Format::Ext(ExtFormat::Mxfp6E2M3 | ExtFormat::Mxfp6E3M2) => 32,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Format::Ggml(t) => t.type_size(),
            Format::Ext(ExtFormat::Mxfp6E2M3 | ExtFormat::Mxfp6E3M2) => 25,
        }
    }

    /// A printable name (ggml's spelling for ggml types).
    pub fn name(self) -> &'static str {
        match self {
            Format::Ggml(t) => t.name(),
            Format::Ext(ExtFormat::Mxfp6E2M3) => "MXFP6_E2M3",
            Format::Ext(ExtFormat::Mxfp6E3M2) => "MXFP6_E3M2",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
