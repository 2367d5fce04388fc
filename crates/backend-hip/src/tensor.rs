//! The backend's data: activations, weights and the KV cache, all in VRAM.

use std::ops::Range;
use std::sync::Arc;

use backend_core::{BackendError, GgmlType, Result};
use gpu_runtime::{DeviceBuffer, Stream};
use hip_kernels::GpuFormat;

use crate::dev_err;
use crate::pool::BufferPool;

/// A dense row-major `rows × cols` f32 matrix in device memory. Its buffer
/// goes back to the backend's pool when it is dropped.
#[derive(Debug)]
pub struct HipTensor {
    pub(crate) buf: DeviceBuffer<f32>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) pool: Option<Arc<BufferPool>>,
}

impl Drop for HipTensor {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let device = self.buf.device().clone();
            // A zero-length buffer allocates nothing; it stands in for the
            // one handed back.
            if let Ok(empty) = DeviceBuffer::alloc(&device, 0) {
                pool.give(std::mem::replace(&mut self.buf, empty));
            }
        }
    }
}

impl HipTensor {
    /// The device buffer.
    pub fn buffer(&self) -> &DeviceBuffer<f32> {
        &self.buf
    }
}

/// A weight in VRAM: stored bytes in a GPU-readable format, plus an f32
/// copy for single-row weights (norm weights, biases).
#[derive(Debug)]
pub struct HipWeight {
    pub(crate) name: String,
    pub(crate) dims: [usize; 4],
    /// The type in the model file.
    pub(crate) file_type: GgmlType,
    pub(crate) format: GpuFormat,
    pub(crate) data: DeviceBuffer<u8>,
    pub(crate) vector: Option<DeviceBuffer<f32>>,
}

impl HipWeight {
    /// Row length (ne0).
    pub fn cols(&self) -> usize {
        self.dims[0]
    }
    /// Rows when viewed as 2-D.
    pub fn rows(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }
    /// The format kept in VRAM.
    pub fn format(&self) -> GpuFormat {
        self.format
    }
    /// The type in the model file.
    pub fn file_type(&self) -> GgmlType {
        self.file_type
    }
    /// Bytes of VRAM the weight takes.
    pub fn device_bytes(&self) -> usize {
        self.data.bytes() + self.vector.as_ref().map_or(0, |v| v.bytes())
    }
}

/// Keys and values of one sequence for every layer, f32, each layer
/// `[n_ctx][n_head_kv × head_dim]`.
#[derive(Debug)]
pub struct HipKvCache {
    pub(crate) k: Vec<DeviceBuffer<f32>>,
    pub(crate) v: Vec<DeviceBuffer<f32>>,
    pub(crate) n_ctx: usize,
    pub(crate) n_head_kv: usize,
    pub(crate) head_dim: usize,
}

impl HipKvCache {
    pub(crate) fn new(
        stream: &Stream,
        n_layers: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let per_layer = n_ctx
            .checked_mul(n_head_kv)
            .and_then(|x| x.checked_mul(head_dim))
            .ok_or_else(|| {
                BackendError::Device(format!("KV cache of {n_ctx} positions overflows"))
            })?;
        let mut k = Vec::with_capacity(n_layers);
        let mut v = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            k.push(DeviceBuffer::zeroed(stream, per_layer).map_err(|e| oom(e, per_layer * 4))?);
            v.push(DeviceBuffer::zeroed(stream, per_layer).map_err(|e| oom(e, per_layer * 4))?);
        }
        Ok(HipKvCache {
            k,
            v,
            n_ctx,
            n_head_kv,
            head_dim,
        })
    }

    /// Positions the cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub(crate) fn layer(&self, layer: usize) -> Result<(&DeviceBuffer<f32>, &DeviceBuffer<f32>)> {
        match (self.k.get(layer), self.v.get(layer)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(BackendError::Shape {
                op: "kv cache",
                detail: format!("layer {layer} of {}", self.k.len()),
            }),
        }
    }

    /// Rows `rows` of `k` and `v` into positions `start_pos..` of `layer`
    /// (one launch for both).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &mut self,
        stream: &Stream,
        kernels: &hip_kernels::Kernels,
        layer: usize,
        k: &crate::HipTensor,
        v: &crate::HipTensor,
        rows: Range<usize>,
        start_pos: usize,
    ) -> Result<()> {
        let w = self.n_head_kv * self.head_dim;
        if k.cols != w
            || v.cols != w
            || k.rows != v.rows
            || rows.end > k.rows
            || rows.start > rows.end
        {
            return Err(BackendError::Shape {
                op: "kv_store",
                detail: format!(
                    "k {}x{}, v {}x{}, rows {rows:?} into a cache of {w} per position",
                    k.rows, k.cols, v.rows, v.cols
                ),
            });
        }
        let n = rows.end - rows.start;
        let (kc, vc, dst_off) = self.rows_at(layer, n, start_pos)?;
        kernels
            .copy2(
                stream,
                kc,
                vc,
                dst_off,
                &k.buf,
                &v.buf,
                rows.start * w,
                n * w,
            )
            .map_err(dev_err)
    }

    /// The key and value buffers of `layer` and the first value of position
    /// `start_pos`, after checking that `n` rows from there fit the context.
    pub(crate) fn rows_at(
        &mut self,
        layer: usize,
        n: usize,
        start_pos: usize,
    ) -> Result<(&mut DeviceBuffer<f32>, &mut DeviceBuffer<f32>, usize)> {
        if start_pos + n > self.n_ctx {
            return Err(BackendError::ContextOverflow {
                pos: start_pos + n.max(1) - 1,
                n_ctx: self.n_ctx,
            });
        }
        let w = self.n_head_kv * self.head_dim;
        let layers = self.k.len();
        match (self.k.get_mut(layer), self.v.get_mut(layer)) {
            (Some(k), Some(v)) => Ok((k, v, start_pos * w)),
            _ => Err(BackendError::Shape {
                op: "kv_store",
                detail: format!("layer {layer} of {layers}"),
            }),
        }
    }
}

pub(crate) fn oom(e: gpu_runtime::RuntimeError, bytes: usize) -> BackendError {
    if e.is_out_of_memory() {
        BackendError::OutOfMemory {
            bytes,
            detail: e.to_string(),
        }
    } else {
        BackendError::Device(e.to_string())
    }
}
