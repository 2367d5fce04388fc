//! The opened model file: metadata lookups with engine errors, and tensor
//! views for the backends. Every use of `gguf-format` goes through here.

use crate::error::{EngineError, Result};
use backend_core::{Backend, WeightView};
use gguf_format::{GgufError, MappedGguf};
use std::path::Path;
use std::sync::Arc;

/// A memory-mapped GGUF model file.
pub struct ModelFile {
    gguf: Arc<MappedGguf>,
}

/// The file's bytes as a host mapping a backend can keep alive.
struct FileBytes(Arc<MappedGguf>);

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

fn meta(e: GgufError) -> EngineError {
    EngineError::Metadata(e.to_string())
}

impl ModelFile {
    /// Open and parse `path`.
    pub fn open(path: &Path) -> Result<ModelFile> {
        let gguf = MappedGguf::open(path).map_err(|e| EngineError::Gguf(e.to_string()))?;
        Ok(ModelFile {
            gguf: Arc::new(gguf),
        })
    }

    /// The parsed file.
    pub fn gguf(&self) -> &MappedGguf {
        &self.gguf
    }

    /// Let `backend` reference the file's bytes instead of copying weights.
    pub fn register_with<B: Backend>(&self, backend: &B) {
        backend.register_mapping(Arc::new(FileBytes(Arc::clone(&self.gguf))));
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<String> {
        self.gguf.architecture().map(str::to_string).map_err(meta)
    }

    /// `{arch}.{suffix}` as an integer.
    pub fn arch_usize(&self, suffix: &str) -> Result<usize> {
        self.gguf.arch_u32(suffix).map(|v| v as usize).map_err(meta)
    }

    /// `{arch}.{suffix}` as an integer, `None` when absent.
    pub fn arch_usize_opt(&self, suffix: &str) -> Result<Option<usize>> {
        self.gguf
            .arch_u32_opt(suffix)
            .map(|v| v.map(|v| v as usize))
            .map_err(meta)
    }

    /// `{arch}.{suffix}` as a float.
    pub fn arch_f32(&self, suffix: &str) -> Result<f32> {
        self.gguf.arch_f32(suffix).map_err(meta)
    }

    /// `{arch}.{suffix}` as a float, `None` when absent.
    pub fn arch_f32_opt(&self, suffix: &str) -> Result<Option<f32>> {
        self.gguf.arch_f32_opt(suffix).map_err(meta)
    }

    /// `{arch}.{suffix}` as a string, `None` when absent.
    pub fn arch_str_opt(&self, suffix: &str) -> Result<Option<String>> {
        self.gguf
            .arch_str_opt(suffix)
            .map(|v| v.map(str::to_string))
            .map_err(meta)
    }

    /// Whether the file has a tensor named `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.gguf.tensor(name).is_some()
    }

    /// The dims of tensor `name` in ggml order, padded with ones to 4.
    pub fn tensor_dims(&self, name: &str) -> Result<[usize; 4]> {
        let info = self
            .gguf
            .tensor(name)
            .ok_or_else(|| EngineError::MissingTensor(name.to_string()))?;
        dims4(name, &info.shape)
    }

    /// A view of tensor `name`, `None` when absent.
    pub fn weight_view(&self, name: &str) -> Result<Option<WeightView<'_>>> {
        let Some(info) = self.gguf.tensor(name) else {
            return Ok(None);
        };
        let data = self.gguf.tensor_data(info);
        if data.is_empty() {
            return Err(EngineError::Gguf(format!(
                "tensor `{name}` has no data in the file"
            )));
        }
        Ok(Some(WeightView {
            name: &info.name,
            ggml_type: info.ggml_type,
            dims: dims4(name, &info.shape)?,
            data,
        }))
    }
}

fn dims4(name: &str, shape: &[u64]) -> Result<[usize; 4]> {
    if shape.len() > 4 {
        return Err(EngineError::Gguf(format!(
            "tensor `{name}` has {} dims",
            shape.len()
        )));
    }
    let mut dims = [1usize; 4];
    for (d, &s) in dims.iter_mut().zip(shape) {
        *d = usize::try_from(s)
            .map_err(|_| EngineError::Gguf(format!("tensor `{name}` is too large")))?;
    }
    Ok(dims)
}
