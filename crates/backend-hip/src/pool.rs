//! Reuse of the backend's activation buffers.
//!
//! A forward pass allocates the same handful of activation sizes at every
//! layer and every step. `cuMemFree`/`hipFree` wait for the device to finish
//! the work using the memory, so freeing each temporary would stall the host
//! after every op and the GPU would idle between launches. Instead a dropped
//! [`HipTensor`](crate::HipTensor) gives its buffer back to its backend's
//! pool, and the next tensor of the same length takes it.
//!
//! Safe because a backend puts all its work on one stream: whatever a reused
//! buffer was last used for is ordered before its next use. Host reads and
//! writes of tensor memory are synchronous copies on that stream.

use std::collections::HashMap;
use std::sync::Mutex;

use gpu_runtime::{Device, DeviceBuffer, Result};

/// Free buffers by element count, with a cap on the bytes kept.
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: Mutex<PoolState>,
    cap_bytes: usize,
}

#[derive(Debug, Default)]
struct PoolState {
    by_len: HashMap<usize, Vec<DeviceBuffer<f32>>>,
    bytes: usize,
}

impl BufferPool {
    /// A pool keeping at most `cap_bytes` of free buffers.
    pub(crate) fn new(cap_bytes: usize) -> BufferPool {
        BufferPool {
            free: Mutex::new(PoolState::default()),
            cap_bytes,
        }
    }

    /// A buffer of `len` elements: a pooled one (uninitialised contents) or
    /// a new allocation.
    pub(crate) fn take(
        &self,
        device: &std::sync::Arc<Device>,
        len: usize,
    ) -> Result<DeviceBuffer<f32>> {
        if len > 0 {
            let mut st = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(buf) = st.by_len.get_mut(&len).and_then(Vec::pop) {
                st.bytes -= buf.bytes();
                return Ok(buf);
            }
        }
        DeviceBuffer::alloc(device, len)
    }

    /// Keep `buf` for reuse (or free it when the pool is full).
    pub(crate) fn give(&self, buf: DeviceBuffer<f32>) {
        if buf.is_empty() {
            return;
        }
        let mut st = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if st.bytes + buf.bytes() <= self.cap_bytes {
            st.bytes += buf.bytes();
            st.by_len.entry(buf.len()).or_default().push(buf);
        }
    }
}
