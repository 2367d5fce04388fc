//! [`MetadataValue`]: an owned metadata value, for building files and for
//! keeping values after the file is gone.

use crate::value::ValueType;

/// An owned metadata value, the mirror of [`crate::Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// bool.
    Bool(bool),
    /// A string.
    String(String),
    /// An array: the element type (needed for empty arrays) and the elements,
    /// which must all be of that type.
    Array(ValueType, Vec<MetadataValue>),
}

impl MetadataValue {
    /// The on-disk type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetadataValue::U8(_) => ValueType::U8,
            MetadataValue::I8(_) => ValueType::I8,
            MetadataValue::U16(_) => ValueType::U16,
            MetadataValue::I16(_) => ValueType::I16,
            MetadataValue::U32(_) => ValueType::U32,
            MetadataValue::I32(_) => ValueType::I32,
            MetadataValue::U64(_) => ValueType::U64,
            MetadataValue::I64(_) => ValueType::I64,
            MetadataValue::F32(_) => ValueType::F32,
            MetadataValue::F64(_) => ValueType::F64,
            MetadataValue::Bool(_) => ValueType::Bool,
            MetadataValue::String(_) => ValueType::String,
            MetadataValue::Array(..) => ValueType::Array,
        }
    }

    /// An array of strings.
    pub fn string_array<I, T>(items: I) -> MetadataValue
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        MetadataValue::Array(
            ValueType::String,
            items
                .into_iter()
                .map(|s| MetadataValue::String(s.into()))
                .collect(),
        )
    }

    /// An array of `f32`.
    pub fn f32_array(items: impl IntoIterator<Item = f32>) -> MetadataValue {
        MetadataValue::Array(
            ValueType::F32,
            items.into_iter().map(MetadataValue::F32).collect(),
        )
    }

    /// An array of `i32`.
    pub fn i32_array(items: impl IntoIterator<Item = i32>) -> MetadataValue {
        MetadataValue::Array(
            ValueType::I32,
            items.into_iter().map(MetadataValue::I32).collect(),
        )
    }
}

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        MetadataValue::String(v.to_string())
    }
}

impl From<String> for MetadataValue {
    fn from(v: String) -> Self {
        MetadataValue::String(v)
    }
}

impl From<u32> for MetadataValue {
    fn from(v: u32) -> Self {
        MetadataValue::U32(v)
    }
}

impl From<f32> for MetadataValue {
    fn from(v: f32) -> Self {
        MetadataValue::F32(v)
    }
}

impl From<bool> for MetadataValue {
    fn from(v: bool) -> Self {
        MetadataValue::Bool(v)
    }
}
