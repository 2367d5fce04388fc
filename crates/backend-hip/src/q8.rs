//! The 8-bit activation rows shared by the decode mat-vecs, and which tensor
//! each was made from.
//!
//! A one-token mat-vec reads its input as 8-bit blocks (`quantize_q8`).
//! The ops that produce a mat-vec's input in decode (RMS norm, the residual
//! add with the next norm, GLU) write that form themselves into this
//! scratch and record the tensor; the mat-vec then skips its quantize
//! launch. Any other op that writes device memory forgets the records
//! first, so a stale row is never used.
//!
//! There are two slots: the main one, and a spare that the fused gate/up/GLU
//! launch writes its output's form into while it still reads its input's
//! from the main one (both live at once inside that launch).

use backend_core::Result;
use gpu_runtime::{Device, DeviceBuffer};
use hip_kernels::{ActScale, Q8Out};

use crate::dev_err;

/// Buffers (values, scales) grown to the longest row seen, and the
/// `(device address, length)` of the row they hold, if known.
#[derive(Default)]
struct Slot {
    bufs: Option<(DeviceBuffer<u32>, DeviceBuffer<f32>)>,
    holder: Option<(u64, usize)>,
}

impl Slot {
    fn holds(&self, x: &DeviceBuffer<f32>, k: usize) -> bool {
        self.bufs.is_some() && self.holder == Some((x.device_ptr(), k))
    }

    /// Grow to a row of `k` values (forgetting the holder when replaced);
    /// true when the buffers were replaced.
    fn grow(&mut self, device: &std::sync::Arc<Device>, k: usize) -> Result<bool> {
        if self.bufs.as_ref().is_some_and(|(q, _)| q.len() >= k / 4) {
            return Ok(false);
        }
        self.holder = None;
        let replaced = self.bufs.take().is_some();
        let q = DeviceBuffer::alloc(device, k / 4).map_err(dev_err)?;
        let ds = DeviceBuffer::alloc(device, k / 16).map_err(dev_err)?;
        self.bufs = Some((q, ds));
        Ok(replaced)
    }

    fn buffers(&mut self) -> Result<(&mut DeviceBuffer<u32>, &mut DeviceBuffer<f32>)> {
        match self.bufs.as_mut() {
            Some((q, ds)) => Ok((q, ds)),
            None => Err(backend_core::BackendError::Device(
                "8-bit activation scratch missing".into(),
            )),
        }
    }
}

/// The main and spare slots (see the module's documentation).
#[derive(Default)]
pub(crate) struct Q8Scratch {
    main: Slot,
    spare: Slot,
    /// `(row length, eps)` when the spare slot's row lacks its RMS norm's
    /// factor (written by the mat-vec with the residual add and norm in its
    /// store), whose partial sums of x² are in `partials`.
    spare_deferred: Option<(usize, f32)>,
    /// Those partial sums, one per 32 values, grown to the longest row.
    partials: Option<DeviceBuffer<f32>>,
    /// How many times buffers were replaced by larger ones (recorded
    /// launches pointing into old ones are stale).
    generation: u64,
}

impl Q8Scratch {
    /// Whether the main buffers hold the 8-bit form of the `k` values of `x`.
    pub(crate) fn holds(&self, x: &DeviceBuffer<f32>, k: usize) -> bool {
        self.main.holds(x, k)
    }

    /// Whether the spare buffers hold the 8-bit form of the `k` values of `x`.
    pub(crate) fn spare_holds(&self, x: &DeviceBuffer<f32>, k: usize) -> bool {
        self.spare.holds(x, k)
    }

    /// Record that the main buffers now hold the form of the `k` values of `x`.
    pub(crate) fn set_holder(&mut self, x: &DeviceBuffer<f32>, k: usize) {
        self.set_holder_at(x.device_ptr(), k);
    }

    /// As [`Q8Scratch::set_holder`] for the buffer at device address `ptr`.
    pub(crate) fn set_holder_at(&mut self, ptr: u64, k: usize) {
        self.main.holder = Some((ptr, k));
    }

    /// Record that the spare buffers now hold the form of the `k` values of
    /// `x`.
    pub(crate) fn set_spare_holder(&mut self, x: &DeviceBuffer<f32>, k: usize) {
        self.spare.holder = Some((x.device_ptr(), k));
        self.spare_deferred = None;
    }

    /// As [`Q8Scratch::set_spare_holder`] for a row written without its
    /// RMS norm's factor (`eps`), whose partial sums of x² are in the
    /// scratch's partials.
    pub(crate) fn set_spare_deferred(&mut self, x: &DeviceBuffer<f32>, k: usize, eps: f32) {
        self.spare.holder = Some((x.device_ptr(), k));
        self.spare_deferred = Some((k, eps));
    }

    /// Forget whose row either slot holds if it is `written` (an op's output).
    pub(crate) fn forget_if_written(&mut self, written: &DeviceBuffer<f32>) {
        for slot in [&mut self.main, &mut self.spare] {
            if slot.holder.is_some_and(|(p, _)| p == written.device_ptr()) {
                slot.holder = None;
            }
        }
        if self.spare.holder.is_none() {
            self.spare_deferred = None;
        }
    }

    /// See the field `generation`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Forget whose rows the buffers hold.
    pub(crate) fn forget(&mut self) {
        self.main.holder = None;
        self.spare.holder = None;
        self.spare_deferred = None;
    }

    /// The main buffers, grown to hold a row of `k` values (which forgets
    /// their holder when they are replaced).
    pub(crate) fn buffers(
        &mut self,
        device: &std::sync::Arc<Device>,
        k: usize,
    ) -> Result<(&mut DeviceBuffer<u32>, &mut DeviceBuffer<f32>)> {
        if self.main.grow(device, k)? {
            self.generation += 1;
        }
        self.main.buffers()
    }

    /// The spare buffers, which must hold a row (see
    /// [`Q8Scratch::spare_holds`]), and the row's deferred norm factor if it
    /// has one.
    #[allow(clippy::type_complexity)]
    pub(crate) fn spare_input(
        &mut self,
    ) -> Result<(
        &mut DeviceBuffer<u32>,
        &mut DeviceBuffer<f32>,
        Option<ActScale<'_>>,
    )> {
        let scale = deferred_scale(self.spare_deferred, self.partials.as_ref());
        let (q, ds) = self.spare.buffers()?;
        Ok((q, ds, scale))
    }

    /// The spare buffers as a kernel's input (they must hold a row, with its
    /// deferred norm factor if it has one) and the main ones, grown first,
    /// as its 8-bit output for a row of `n` values.
    #[allow(clippy::type_complexity)]
    pub(crate) fn spare_in_main_out(
        &mut self,
        device: &std::sync::Arc<Device>,
        n: usize,
    ) -> Result<(
        (
            &mut DeviceBuffer<u32>,
            &mut DeviceBuffer<f32>,
            Option<ActScale<'_>>,
        ),
        Q8Out<'_>,
    )> {
        if self.main.grow(device, n)? {
            self.generation += 1;
        }
        let scale = deferred_scale(self.spare_deferred, self.partials.as_ref());
        let (q, ds) = self.spare.buffers()?;
        let (oq, ods) = self.main.buffers()?;
        Ok(((q, ds, scale), Q8Out { q: oq, ds: ods }))
    }

    /// Whether the spare slot's row lacks its norm's factor.
    pub(crate) fn spare_is_deferred(&self) -> bool {
        self.spare_deferred.is_some()
    }

    /// The main buffers (a row of `k` values) and the spare ones as a
    /// kernel's 8-bit output for a row of `n` values, both grown first.
    #[allow(clippy::type_complexity)]
    pub(crate) fn main_and_spare(
        &mut self,
        device: &std::sync::Arc<Device>,
        k: usize,
        n: usize,
    ) -> Result<((&mut DeviceBuffer<u32>, &mut DeviceBuffer<f32>), Q8Out<'_>)> {
        let grown_main = self.main.grow(device, k)?;
        let grown_spare = self.spare.grow(device, n)?;
        self.generation += u64::from(grown_main) + u64::from(grown_spare);
        let main = self.main.buffers()?;
        let (q, ds) = self.spare.buffers()?;
        Ok((main, Q8Out { q, ds }))
    }

    /// As [`Q8Scratch::main_and_spare`], and the partial sums' buffer grown
    /// to a row of `n` values (the residual add + norm mat-vec's outputs).
    #[allow(clippy::type_complexity)]
    pub(crate) fn main_spare_partials(
        &mut self,
        device: &std::sync::Arc<Device>,
        k: usize,
        n: usize,
    ) -> Result<(
        (&mut DeviceBuffer<u32>, &mut DeviceBuffer<f32>),
        Q8Out<'_>,
        &mut DeviceBuffer<f32>,
    )> {
        if self.partials.as_ref().is_none_or(|p| p.len() < n / 32) {
            if self.partials.take().is_some() {
                self.generation += 1;
            }
            self.partials = Some(DeviceBuffer::alloc(device, n / 32).map_err(dev_err)?);
        }
        let grown_main = self.main.grow(device, k)?;
        let grown_spare = self.spare.grow(device, n)?;
        self.generation += u64::from(grown_main) + u64::from(grown_spare);
        let main = self.main.buffers()?;
        let (q, ds) = self.spare.buffers()?;
        let partials = self
            .partials
            .as_mut()
            .ok_or_else(|| backend_core::BackendError::Device("norm partials missing".into()))?;
        Ok((main, Q8Out { q, ds }, partials))
    }

    /// The main buffers as a kernel's 8-bit output for a row of `k` values.
    pub(crate) fn out(&mut self, device: &std::sync::Arc<Device>, k: usize) -> Result<Q8Out<'_>> {
        let (q, ds) = self.buffers(device, k)?;
        Ok(Q8Out { q, ds })
    }
}

/// The deferred norm factor of the spare slot's row (`deferred`: its length
/// and eps), over the partial sums of x², if it has one.
fn deferred_scale(
    deferred: Option<(usize, f32)>,
    partials: Option<&DeviceBuffer<f32>>,
) -> Option<ActScale<'_>> {
    match (deferred, partials) {
        (Some((n, eps)), Some(partials)) => Some(ActScale { partials, n, eps }),
        _ => None,
    }
}
