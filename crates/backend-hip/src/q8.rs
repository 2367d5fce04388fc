//! The 8-bit activation row shared by the decode mat-vecs, and which tensor
//! it was made from.
//!
//! A one-token mat-vec reads its input as 8-bit blocks (`quantize_q8`).
//! The ops that produce a mat-vec's input in decode (RMS norm, the residual
//! add with the next norm, GLU) write that form themselves into this
//! scratch and record the tensor; the mat-vec then skips its quantize
//! launch. Any other op that writes device memory forgets the record first,
//! so a stale row is never used.

use backend_core::Result;
use gpu_runtime::{Device, DeviceBuffer};
use hip_kernels::Q8Out;

use crate::dev_err;

/// The scratch buffers (values, scales), grown to the longest row seen,
/// and the `(device address, length)` of the row they hold, if known.
#[derive(Default)]
pub(crate) struct Q8Scratch {
    bufs: Option<(DeviceBuffer<u32>, DeviceBuffer<f32>)>,
    holder: Option<(u64, usize)>,
    /// How many times the buffers were replaced by larger ones (recorded
    /// launches pointing into old ones are stale).
    generation: u64,
}

impl Q8Scratch {
    /// Whether the buffers hold the 8-bit form of the `k` values of `x`.
    pub(crate) fn holds(&self, x: &DeviceBuffer<f32>, k: usize) -> bool {
        self.bufs.is_some() && self.holder == Some((x.device_ptr(), k))
    }

    /// Record that the buffers now hold the form of the `k` values of `x`.
    pub(crate) fn set_holder(&mut self, x: &DeviceBuffer<f32>, k: usize) {
        self.set_holder_at(x.device_ptr(), k);
    }

    /// As [`Q8Scratch::set_holder`] for the buffer at device address `ptr`.
    pub(crate) fn set_holder_at(&mut self, ptr: u64, k: usize) {
        self.holder = Some((ptr, k));
    }

    /// Forget whose row the buffers hold if it is `written` (an op's output).
    pub(crate) fn forget_if_written(&mut self, written: &DeviceBuffer<f32>) {
        if self.holder.is_some_and(|(p, _)| p == written.device_ptr()) {
            self.holder = None;
        }
    }

    /// See the field `generation`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Forget whose row the buffers hold.
    pub(crate) fn forget(&mut self) {
        self.holder = None;
    }

    /// The buffers, grown to hold a row of `k` values (which forgets the
    /// holder when they are replaced).
    pub(crate) fn buffers(
        &mut self,
        device: &std::sync::Arc<Device>,
        k: usize,
    ) -> Result<(&mut DeviceBuffer<u32>, &mut DeviceBuffer<f32>)> {
        if self.bufs.as_ref().is_none_or(|(q, _)| q.len() < k / 4) {
            self.holder = None;
            if self.bufs.take().is_some() {
                self.generation += 1;
            }
            let q = DeviceBuffer::alloc(device, k / 4).map_err(dev_err)?;
            let ds = DeviceBuffer::alloc(device, k / 16).map_err(dev_err)?;
            self.bufs = Some((q, ds));
        }
        match self.bufs.as_mut() {
            Some((q, ds)) => Ok((q, ds)),
            None => Err(backend_core::BackendError::Device(
                "8-bit activation scratch missing".into(),
            )),
        }
    }

    /// The buffers as a kernel's 8-bit output for a row of `k` values.
    pub(crate) fn out(&mut self, device: &std::sync::Arc<Device>, k: usize) -> Result<Q8Out<'_>> {
        let (q, ds) = self.buffers(device, k)?;
        Ok(Q8Out { q, ds })
    }
}
