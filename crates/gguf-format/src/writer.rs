//! [`GgufWriter`]: builds GGUF v3 files.
//!
//! Layout, the same as gguf-py's `GGUFWriter` and llama.cpp's `gguf_write`:
//! header, metadata, tensor infos, zero padding up to the alignment, then each
//! tensor's data followed by zero padding up to the alignment (the last one
//! included). Tensor offsets are assigned in insertion order, so reading a
//! file written this way and writing it back reproduces it byte for byte.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use crate::error::GgufError;
use crate::owned::MetadataValue;
use crate::parse::MAGIC;
use crate::tensor::TensorInfo;
use crate::{GgmlType, Gguf, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_NESTING, MAX_DIMS};

/// Builds a GGUF file from metadata and tensors.
#[derive(Debug, Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<(TensorInfo, Cow<'a, [u8]>)>,
}

impl<'a> GgufWriter<'a> {
    /// An empty file (alignment 32 unless `general.alignment` is set).
    pub fn new() -> Self {
        GgufWriter::default()
    }

    /// A writer holding all metadata and tensors of `file`, tensor data
    /// borrowed; writing it reproduces a file laid out like gguf-py does.
    pub fn from_gguf<S: AsRef<[u8]>>(file: &'a Gguf<S>) -> Result<Self, GgufError> {
        let mut w = GgufWriter::new();
        for (k, v) in file.metadata() {
            w.add_metadata(k, v.to_owned_value());
        }
        for t in file.tensors() {
            w.add_tensor(&t.name, t.ggml_type, t.shape.clone(), file.tensor_data(t))?;
        }
        Ok(w)
    }

    /// Sets `general.alignment` (a power of two; checked when writing).
    pub fn set_alignment(&mut self, alignment: u32) {
        self.add_metadata(ALIGNMENT_KEY, MetadataValue::U32(alignment));
    }

    /// Adds a metadata entry, or replaces the value of an existing key in place.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<MetadataValue>) {
        let key = key.into();
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Adds a tensor; `shape` is in ggml order (ne0 first) and `data` must be
    /// exactly the bytes that type and shape take.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        shape: impl Into<Vec<u64>>,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<(), GgufError> {
        let info = TensorInfo {
            name: name.into(),
            ggml_type,
            shape: shape.into(),
            offset: 0,
        };
        let data = data.into();
        if self.tensors.iter().any(|(t, _)| t.name == info.name) {
            return Err(GgufError::DuplicateTensor { name: info.name });
        }
        if info.shape.len() > MAX_DIMS as usize {
            return Err(GgufError::TooManyDims {
                tensor: info.name,
                n_dims: u32::try_from(info.shape.len()).unwrap_or(u32::MAX),
                max: MAX_DIMS,
            });
        }
        let size = info.checked_n_bytes()?;
        if size != data.len() as u64 {
            return Err(GgufError::InvalidWrite(format!(
                "tensor {:?}: {} {:?} takes {size} bytes, {} given",
                info.name,
                info.ggml_type,
                info.shape,
                data.len()
            )));
        }
        self.tensors.push((info, data));
        Ok(())
    }

    fn alignment(&self) -> Result<u64, GgufError> {
        let Some((_, v)) = self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
            return Ok(DEFAULT_ALIGNMENT);
        };
        let a = match *v {
            MetadataValue::U8(a) => u64::from(a),
            MetadataValue::U16(a) => u64::from(a),
            MetadataValue::U32(a) => u64::from(a),
            MetadataValue::U64(a) => a,
            MetadataValue::I8(a) => u64::try_from(a).unwrap_or(0),
            MetadataValue::I16(a) => u64::try_from(a).unwrap_or(0),
            MetadataValue::I32(a) => u64::try_from(a).unwrap_or(0),
            MetadataValue::I64(a) => u64::try_from(a).unwrap_or(0),
            _ => 0,
        };
        if a.is_power_of_two() && a <= u64::from(u32::MAX) {
            Ok(a)
        } else {
            Err(GgufError::BadAlignment {
                reason: format!("the writer needs a power of two that fits u32, got {v:?}"),
            })
        }
    }

    /// Header, metadata and tensor infos (without the padding that follows).
    fn header(&self, alignment: u64) -> Result<Vec<u8>, GgufError> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut out, k, v, 0)?;
        }
        let mut offset = 0u64;
        for (t, data) in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in &t.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = padded(offset + data.len() as u64, alignment);
        }
        Ok(out)
    }

    /// Writes the file to `w`; returns the number of bytes written.
    pub fn write_to(&self, mut w: impl Write) -> Result<u64, GgufError> {
        let alignment = self.alignment()?;
        let header = self.header(alignment)?;
        w.write_all(&header).map_err(GgufError::Write)?;
        let mut total = header.len() as u64;
        total += write_padding(&mut w, total, alignment)?;
        for (_, data) in &self.tensors {
            w.write_all(data).map_err(GgufError::Write)?;
            total += data.len() as u64;
            total += write_padding(&mut w, data.len() as u64, alignment)?;
        }
        w.flush().map_err(GgufError::Write)?;
        Ok(total)
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the file to `path` (created or truncated).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<u64, GgufError> {
        let path = path.as_ref();
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let f = std::fs::File::create(path).map_err(io)?;
        let n = self.write_to(std::io::BufWriter::new(f))?;
        Ok(n)
    }
}

/// Writes the zeros that take `len` up to a multiple of `alignment`.
fn write_padding(w: &mut impl Write, len: u64, alignment: u64) -> Result<u64, GgufError> {
    const ZEROS: [u8; 4096] = [0; 4096];
    let pad = padded(len, alignment) - len;
    let mut left = pad;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..n]).map_err(GgufError::Write)?;
        left -= n as u64;
    }
    Ok(pad)
}

fn padded(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(
    out: &mut Vec<u8>,
    key: &str,
    v: &MetadataValue,
    depth: usize,
) -> Result<(), GgufError> {
    match v {
        MetadataValue::U8(x) => out.push(*x),
        MetadataValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Bool(x) => out.push(u8::from(*x)),
        MetadataValue::String(s) => put_str(out, s),
        MetadataValue::Array(elem, items) => {
            if depth + 1 > MAX_ARRAY_NESTING {
                return Err(GgufError::NestingTooDeep {
                    key: key.to_string(),
                    max: MAX_ARRAY_NESTING,
                });
            }
            out.extend_from_slice(&elem.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *elem {
                    return Err(GgufError::InvalidWrite(format!(
                        "metadata key {key:?}: array of {elem} holds a {} element",
                        item.value_type()
                    )));
                }
                // A nested array is written as its element type, length and
                // elements: exactly what put_value writes for an array.
                put_value(out, key, item, depth + 1)?;
            }
        }
    }
    Ok(())
}
