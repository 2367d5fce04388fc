//! Borrowed metadata values: [`Value`], [`ArrayView`] and the value type ids.
//!
//! The parser records where each value lives in the file ([`Node`]); a
//! [`Value`] is built on demand from that record and borrows from the storage.

use crate::error::GgufError;
use crate::owned::MetadataValue;

/// The on-disk type id of a metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `u8`.
    U8 = 0,
    /// `i8`.
    I8 = 1,
    /// `u16`.
    U16 = 2,
    /// `i16`.
    I16 = 3,
    /// `u32`.
    U32 = 4,
    /// `i32`.
    I32 = 5,
    /// `f32`.
    F32 = 6,
    /// bool, one byte (0 or 1).
    Bool = 7,
    /// UTF-8 string with a `u64` length prefix.
    String = 8,
    /// Array: element type id, `u64` length, elements.
    Array = 9,
    /// `u64`.
    U64 = 10,
    /// `i64`.
    I64 = 11,
    /// `f64`.
    F64 = 12,
}

impl ValueType {
    /// Every value type, in id order.
    pub const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type for an on-disk id, or `None` for ids outside 0..=12.
    pub fn from_id(id: u32) -> Option<ValueType> {
        ValueType::ALL.get(id as usize).copied()
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Bytes taken by one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        Some(match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            ValueType::String | ValueType::Array => return None,
        })
    }

    /// Lower-case name used in messages and in gguf-py (`"u32"`, `"string"`, …).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a parsed value lives in the storage (absolute offsets).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A fixed-size scalar at `off`.
    Scalar { ty: ValueType, off: usize },
    /// String bytes at `off..off + len` (already checked to be UTF-8).
    Str { off: usize, len: usize },
    /// An array.
    Array(ArrayNode),
}

/// Where a parsed array lives, with an index for variable-size elements.
#[derive(Debug, Clone)]
pub(crate) struct ArrayNode {
    pub elem: ValueType,
    pub len: usize,
    /// Absolute offset of the first element.
    pub off: usize,
    pub items: Items,
}

/// Per-element index of an array (only for variable-size elements).
#[derive(Debug, Clone)]
pub(crate) enum Items {
    /// Fixed-size elements: element `i` is at `off + i * size`.
    Fixed,
    /// `(offset, length)` of each string's bytes.
    Strings(Vec<(usize, usize)>),
    /// Each nested array.
    Arrays(Vec<ArrayNode>),
}

/// Reads a fixed-size scalar; `None` when out of range (never for parsed nodes).
pub(crate) fn read_scalar<'a>(data: &'a [u8], ty: ValueType, off: usize) -> Option<Value<'a>> {
    let size = ty.fixed_size()?;
    let b = data.get(off..off.checked_add(size)?)?;
    let mut a8 = [0u8; 8];
    a8[..size].copy_from_slice(b);
    Some(match ty {
        ValueType::U8 => Value::U8(b[0]),
        ValueType::I8 => Value::I8(b[0] as i8),
        ValueType::Bool => Value::Bool(b[0] != 0),
        ValueType::U16 => Value::U16(u16::from_le_bytes([a8[0], a8[1]])),
        ValueType::I16 => Value::I16(i16::from_le_bytes([a8[0], a8[1]])),
        ValueType::U32 => Value::U32(u32::from_le_bytes([a8[0], a8[1], a8[2], a8[3]])),
        ValueType::I32 => Value::I32(i32::from_le_bytes([a8[0], a8[1], a8[2], a8[3]])),
        ValueType::F32 => Value::F32(f32::from_le_bytes([a8[0], a8[1], a8[2], a8[3]])),
        ValueType::U64 => Value::U64(u64::from_le_bytes(a8)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(a8)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(a8)),
        ValueType::String | ValueType::Array => return None,
    })
}

/// Borrows string bytes checked at parse time. The storage cannot change
/// between parse and access for slices and vectors; should a mapped file be
/// modified underneath us, invalid bytes read as U+FFFD instead of panicking.
pub(crate) fn read_str(data: &[u8], off: usize, len: usize) -> &str {
    off.checked_add(len)
        .and_then(|end| data.get(off..end))
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("\u{FFFD}")
}

pub(crate) fn node_value<'a>(data: &'a [u8], node: &'a Node, key: &'a str) -> Value<'a> {
    match node {
        Node::Scalar { ty, off } => read_scalar(data, *ty, *off).unwrap_or(Value::U8(0)),
        Node::Str { off, len } => Value::String(read_str(data, *off, *len)),
        Node::Array(a) => Value::Array(ArrayView { data, node: a, key }),
    }
}

/// One metadata value, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
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
    /// A UTF-8 string (validated when the file was parsed).
    String(&'a str),
    /// An array of any element type, possibly nested.
    Array(ArrayView<'a>),
}

impl<'a> Value<'a> {
    /// The on-disk type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
        }
    }

    /// The value as `i128` when it is an integer of any width.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any integer whose value fits in `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_integer().and_then(|v| u32::try_from(v).ok())
    }

    /// Any integer whose value fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_integer().and_then(|v| u64::try_from(v).ok())
    }

    /// Any integer whose value fits in `i32`.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_integer().and_then(|v| i32::try_from(v).ok())
    }

    /// Any integer whose value fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_integer().and_then(|v| i64::try_from(v).ok())
    }

    /// An `f32`, or an `f64` that converts to `f32` exactly (NaN stays NaN).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) if v.is_nan() || (v as f32) as f64 == v => Some(v as f32),
            _ => None,
        }
    }

    /// An `f64` or an `f32` (widened exactly).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string, borrowed from the file.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(v) => Some(v),
            _ => None,
        }
    }

    /// An array.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// Short description for error messages: `u64 5000000000`, `string`,
    /// `array of 3 f32`.
    pub fn describe(&self) -> String {
        match self {
            Value::String(_) => "string".to_string(),
            Value::Array(a) => format!("array of {} {}", a.len(), a.elem_type()),
            Value::Bool(b) => format!("bool {b}"),
            Value::F32(v) => format!("f32 {v}"),
            Value::F64(v) => format!("f64 {v}"),
            other => match other.as_integer() {
                Some(i) => format!("{} {i}", other.value_type()),
                None => other.value_type().to_string(),
            },
        }
    }

    /// An owned copy (arrays copied in full), for writing or keeping.
    pub fn to_owned_value(&self) -> MetadataValue {
        match *self {
            Value::U8(v) => MetadataValue::U8(v),
            Value::I8(v) => MetadataValue::I8(v),
            Value::U16(v) => MetadataValue::U16(v),
            Value::I16(v) => MetadataValue::I16(v),
            Value::U32(v) => MetadataValue::U32(v),
            Value::I32(v) => MetadataValue::I32(v),
            Value::U64(v) => MetadataValue::U64(v),
            Value::I64(v) => MetadataValue::I64(v),
            Value::F32(v) => MetadataValue::F32(v),
            Value::F64(v) => MetadataValue::F64(v),
            Value::Bool(v) => MetadataValue::Bool(v),
            Value::String(v) => MetadataValue::String(v.to_string()),
            Value::Array(a) => MetadataValue::Array(
                a.elem_type(),
                a.iter().map(|v| v.to_owned_value()).collect(),
            ),
        }
    }
}

/// A metadata array, borrowed from the file. Element access is O(1) for
/// every element type (variable-size elements are indexed at parse time).
#[derive(Clone, Copy)]
pub struct ArrayView<'a> {
    data: &'a [u8],
    node: &'a ArrayNode,
    key: &'a str,
}

impl std::fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArrayView({} x {})", self.len(), self.elem_type())
    }
}

impl<'a> ArrayView<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.node.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.node.len == 0
    }

    /// The element type (all elements share it).
    pub fn elem_type(&self) -> ValueType {
        self.node.elem
    }

    /// The metadata key this array belongs to (used in error messages).
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// Element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        if i >= self.node.len {
            return None;
        }
        match &self.node.items {
            Items::Fixed => {
                let size = self.node.elem.fixed_size()?;
                let off = self.node.off.checked_add(i.checked_mul(size)?)?;
                read_scalar(self.data, self.node.elem, off)
            }
            Items::Strings(idx) => {
                let &(off, len) = idx.get(i)?;
                Some(Value::String(read_str(self.data, off, len)))
            }
            Items::Arrays(arrs) => Some(Value::Array(ArrayView {
                data: self.data,
                node: arrs.get(i)?,
                key: self.key,
            })),
        }
    }

    /// All elements in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let this = *self;
        (0..this.len()).filter_map(move |i| this.get(i))
    }

    /// The elements of a string array, borrowed; empty for any other element
    /// type (check [`ArrayView::elem_type`] or use [`ArrayView::try_strings`]).
    pub fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let data = self.data;
        let idx: &'a [(usize, usize)] = match &self.node.items {
            Items::Strings(idx) => idx,
            _ => &[],
        };
        idx.iter().map(move |&(off, len)| read_str(data, off, len))
    }

    /// Like [`ArrayView::strings`], but an error when the elements are not strings.
    pub fn try_strings(&self) -> Result<impl Iterator<Item = &'a str> + 'a, GgufError> {
        if self.elem_type() != ValueType::String {
            return Err(self.elem_error("array of string"));
        }
        Ok(self.strings())
    }

    fn elem_error(&self, expected: &'static str) -> GgufError {
        GgufError::wrong_type(
            self.key,
            expected,
            format!("array of {} {}", self.len(), self.elem_type()),
        )
    }

    fn collect_with<T>(
        &self,
        expected: &'static str,
        conv: impl Fn(&Value<'a>) -> Option<T>,
    ) -> Result<Vec<T>, GgufError> {
        let mut out = Vec::with_capacity(self.len());
        for (i, v) in self.iter().enumerate() {
            match conv(&v) {
                Some(x) => out.push(x),
                None => {
                    return Err(GgufError::wrong_type(
                        &format!("{}[{i}]", self.key),
                        expected,
                        v.describe(),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The elements as `f32` (f32 arrays, or f64 arrays whose values are exact in f32).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, GgufError> {
        match self.elem_type() {
            ValueType::F32 | ValueType::F64 => self.collect_with("f32", Value::as_f32),
            _ => Err(self.elem_error("array of f32")),
        }
    }

    /// The elements as `i32` (any integer element type whose values fit).
    pub fn to_i32_vec(&self) -> Result<Vec<i32>, GgufError> {
        self.integer_check("array of i32")?;
        self.collect_with("i32", Value::as_i32)
    }

    /// The elements as `u32` (any integer element type whose values fit).
    pub fn to_u32_vec(&self) -> Result<Vec<u32>, GgufError> {
        self.integer_check("array of u32")?;
        self.collect_with("u32", Value::as_u32)
    }

    /// The elements as `i64` (any integer element type whose values fit).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, GgufError> {
        self.integer_check("array of i64")?;
        self.collect_with("i64", Value::as_i64)
    }

    fn integer_check(&self, expected: &'static str) -> Result<(), GgufError> {
        match self.elem_type() {
            ValueType::F32
            | ValueType::F64
            | ValueType::Bool
            | ValueType::String
            | ValueType::Array => Err(self.elem_error(expected)),
            _ => Ok(()),
        }
    }
}
