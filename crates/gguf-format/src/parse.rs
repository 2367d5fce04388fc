//! The parser: walks header, metadata and tensor infos once, validating every
//! count, length and offset against the file size before allocating, and
//! records where each value lives.

use std::collections::HashMap;

use crate::cursor::Cursor;
use crate::error::GgufError;
use crate::tensor::TensorInfo;
use crate::value::{ArrayNode, Items, Node, ValueType};
use crate::{GgmlType, DEFAULT_ALIGNMENT, MAX_ARRAY_NESTING, MAX_DIMS};

/// The magic bytes at offset 0.
pub(crate) const MAGIC: [u8; 4] = *b"GGUF";

/// One metadata entry.
#[derive(Debug)]
pub(crate) struct Kv {
    pub key: Box<str>,
    pub node: Node,
}

/// Everything parsed from a file, as offsets into it and small owned data.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub kvs: Vec<Kv>,
    pub key_index: HashMap<Box<str>, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// Smallest encoded metadata entry: empty key, type id, one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoded tensor info: empty name, n_dims = 0, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Smallest encoded string: its length.
const MIN_STRING_BYTES: u64 = 8;
/// Smallest encoded nested array: element type and length.
const MIN_ARRAY_BYTES: u64 = 4 + 8;

pub(crate) fn parse(data: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor::new(data);
    let magic = c.take(4, || "magic".into())?;
    if magic != MAGIC {
        let mut found = [0u8; 4];
        found.copy_from_slice(magic);
        return Err(GgufError::BadMagic { found });
    }
    let version = c.u32(|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err(GgufError::Version1),
        v if (1..=3).contains(&v.swap_bytes()) => {
            return Err(GgufError::BigEndian {
                swapped: v.swap_bytes(),
            })
        }
        v => return Err(GgufError::UnsupportedVersion { version: v }),
    }
    let n_tensors = c.u64(|| "tensor count".into())?;
    let n_kv = c.u64(|| "metadata key count".into())?;

    let at = c.pos;
    let n_kv = c.check_count(n_kv, MIN_KV_BYTES, at, || "metadata key count".into())?;
    let mut kvs = Vec::with_capacity(n_kv);
    let mut key_index = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = read_string(&mut c, || format!("key of metadata entry {i}"))?;
        let key: Box<str> = key.into();
        let at = c.pos;
        let ty_id = c.u32(|| format!("value type of key {key:?}"))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.to_string(),
            id: ty_id,
            offset: at as u64,
        })?;
        let node = parse_value(&mut c, ty, &key, 0)?;
        if key_index.insert(key.clone(), kvs.len()).is_some() {
            return Err(GgufError::DuplicateKey {
                key: key.to_string(),
            });
        }
        kvs.push(Kv { key, node });
    }

    let at = c.pos;
    let n_tensors = c.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, at, || {
        "tensor count".into()
    })?;
    let mut tensors = Vec::with_capacity(n_tensors);
    let mut tensor_index = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let info = parse_tensor_info(&mut c, i)?;
        if tensor_index
            .insert(info.name.clone(), tensors.len())
            .is_some()
        {
            return Err(GgufError::DuplicateTensor { name: info.name });
        }
        tensors.push(info);
    }

    let alignment = alignment(data, &kvs, &key_index)?;
    let header_end = c.pos as u64;
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| GgufError::BadAlignment {
            reason: format!("data section start overflows with alignment {alignment}"),
        })?;
    let data_size = (data.len() as u64).saturating_sub(data_offset);
    check_tensor_placement(&tensors, alignment, data_size)?;

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        kvs,
        key_index,
        tensors,
        tensor_index,
    })
}

fn read_string<'a>(c: &mut Cursor<'a>, what: impl Fn() -> String) -> Result<&'a str, GgufError> {
    let len = c.u64(|| format!("length of {}", what()))?;
    let at = c.pos;
    let bytes = c.take(len, &what)?;
    std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
        what: what(),
        offset: at as u64,
    })
}

/// True when `bytes` is UTF-8. (This check is about half of the parse time
/// of a 49k-token vocabulary; an ASCII fast path did not help, since most
/// byte-level BPE tokens contain non-ASCII characters such as `Ġ`.)
fn is_utf8(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

fn parse_value(
    c: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
    depth: usize,
) -> Result<Node, GgufError> {
    match ty {
        ValueType::String => {
            let len = c.u64(|| format!("string length of key {key:?}"))?;
            let off = c.pos;
            let bytes = c.take(len, || format!("string value of key {key:?}"))?;
            if !is_utf8(bytes) {
                return Err(GgufError::InvalidUtf8 {
                    what: format!("string value of key {key:?}"),
                    offset: off as u64,
                });
            }
            Ok(Node::Str {
                off,
                len: bytes.len(),
            })
        }
        ValueType::Array => Ok(Node::Array(parse_array(c, key, depth + 1)?)),
        _ => {
            let size = ty.fixed_size().unwrap_or(1) as u64;
            let off = c.pos;
            let bytes = c.take(size, || format!("{ty} value of key {key:?}"))?;
            if ty == ValueType::Bool {
                check_bools(bytes, key)?;
            }
            Ok(Node::Scalar { ty, off })
        }
    }
}

fn check_bools(bytes: &[u8], key: &str) -> Result<(), GgufError> {
    match bytes.iter().find(|&&b| b > 1) {
        Some(&byte) => Err(GgufError::InvalidBool {
            key: key.to_string(),
            byte,
        }),
        None => Ok(()),
    }
}

fn parse_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<ArrayNode, GgufError> {
    if depth > MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_ARRAY_NESTING,
        });
    }
    let at = c.pos;
    let elem_id = c.u32(|| format!("array element type of key {key:?}"))?;
    let elem = ValueType::from_id(elem_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_string(),
        id: elem_id,
        offset: at as u64,
    })?;
    let len_at = c.pos;
    let len = c.u64(|| format!("array length of key {key:?}"))?;
    let what = || format!("array of key {key:?}");
    match elem {
        ValueType::String => {
            let n = c.check_count(len, MIN_STRING_BYTES, len_at, what)?;
            let off = c.pos;
            let mut idx = Vec::with_capacity(n);
            for i in 0..n {
                let what = || format!("element {i} of key {key:?}");
                let len = c.u64(|| format!("length of {}", what()))?;
                let at = c.pos;
                let bytes = c.take(len, what)?;
                if !is_utf8(bytes) {
                    return Err(GgufError::InvalidUtf8 {
                        what: what(),
                        offset: at as u64,
                    });
                }
                idx.push((at, bytes.len()));
            }
            Ok(ArrayNode {
                elem,
                len: n,
                off,
                items: Items::Strings(idx),
            })
        }
        ValueType::Array => {
            let n = c.check_count(len, MIN_ARRAY_BYTES, len_at, what)?;
            let off = c.pos;
            let mut arrs = Vec::with_capacity(n);
            for _ in 0..n {
                arrs.push(parse_array(c, key, depth + 1)?);
            }
            Ok(ArrayNode {
                elem,
                len: n,
                off,
                items: Items::Arrays(arrs),
            })
        }
        _ => {
            let size = elem.fixed_size().unwrap_or(1) as u64;
            let n = c.check_count(len, size, len_at, what)?;
            let off = c.pos;
            // check_count guarantees n * size fits in the remaining bytes.
            let bytes = c.take(n as u64 * size, what)?;
            if elem == ValueType::Bool {
                check_bools(bytes, key)?;
            }
            Ok(ArrayNode {
                elem,
                len: n,
                off,
                items: Items::Fixed,
            })
        }
    }
}

fn parse_tensor_info(c: &mut Cursor<'_>, i: usize) -> Result<TensorInfo, GgufError> {
    let name = read_string(c, || format!("name of tensor {i}"))?.to_string();
    let n_dims = c.u32(|| format!("dimension count of tensor {name:?}"))?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut shape = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        shape.push(c.u64(|| format!("dimension {d} of tensor {name:?}"))?);
    }
    let type_id = c.u32(|| format!("type of tensor {name:?}"))?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.clone(),
        id: type_id,
    })?;
    let offset = c.u64(|| format!("data offset of tensor {name:?}"))?;
    let info = TensorInfo {
        name,
        ggml_type,
        shape,
        offset,
    };
    info.checked_n_bytes()?;
    Ok(info)
}

fn alignment(
    data: &[u8],
    kvs: &[Kv],
    key_index: &HashMap<Box<str>, usize>,
) -> Result<u64, GgufError> {
    let Some(&i) = key_index.get(crate::ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let v = crate::value::node_value(data, &kvs[i].node, crate::ALIGNMENT_KEY);
    match v.as_u32() {
        Some(a) if a.is_power_of_two() => Ok(a.into()),
        Some(a) => Err(GgufError::BadAlignment {
            reason: format!("{a} is not a power of two"),
        }),
        None => Err(GgufError::BadAlignment {
            reason: format!("expected u32, found {}", v.describe()),
        }),
    }
}

fn check_tensor_placement(
    tensors: &[TensorInfo],
    alignment: u64,
    data_size: u64,
) -> Result<(), GgufError> {
    let mut spans = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let size = t.checked_n_bytes()?;
        match t.offset.checked_add(size) {
            Some(end) if end <= data_size => spans.push((t.offset, end, i)),
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    size,
                    data_size,
                })
            }
        }
    }
    spans.sort_unstable();
    let mut furthest: Option<(u64, usize)> = None;
    for &(start, end, i) in &spans {
        if let Some((prev_end, prev)) = furthest {
            if start < prev_end && start < end {
                return Err(GgufError::TensorOverlap {
                    first: tensors[prev].name.clone(),
                    second: tensors[i].name.clone(),
                });
            }
        }
        match furthest {
            Some((prev_end, _)) if prev_end >= end => {}
            _ => furthest = Some((end, i)),
        }
    }
    Ok(())
}
