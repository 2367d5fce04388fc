//! Launchers of the token-selection kernels (`kernels/sample.hip`).

use super::{invalid, need, to_i32, Kernels, Result};
use gpu_runtime::{DeviceBuffer, KernelArgs, LaunchConfig, Stream};

/// Threads per block of `sample_topk_f32` (`RF_SAMPLE_THREADS` in the source).
const SAMPLE_THREADS: u32 = 256;
/// The largest `top_k` `sample_topk_f32` takes (`RF_SAMPLE_MAX_K`).
pub const SAMPLE_MAX_K: usize = 1024;

/// Parameters of [`Kernels::sample_topk`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    /// Keep this many of the largest logits (`1 ..= SAMPLE_MAX_K`).
    pub top_k: usize,
    /// Nucleus threshold (`1.0`: off).
    pub top_p: f32,
    /// Minimum probability relative to the top one (`0.0`: off).
    pub min_p: f32,
    /// Temperature (`> 0`).
    pub temperature: f32,
    /// The draw, uniform in `[0, 1)`.
    pub uniform: f64,
}

impl Kernels {
    /// `a = cap · tanh(a / cap)` element-wise.
    pub fn softcap(&self, stream: &Stream, a: &mut DeviceBuffer<f32>, cap: f32) -> Result<()> {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(invalid(format!("softcap: cap {cap} is not positive")));
        }
        let n = a.len();
        let args = KernelArgs::new()
            .ptr(a.device_ptr())
            .i32(to_i32("n", n)?)
            .f32(cap);
        self.launch_1d(stream, "softcap_f32", n, args)
    }

    /// Apply repetition/frequency/presence penalties to row `row` of `cols`
    /// logits: `ids[j]` (distinct) seen `counts[j]` times.
    #[allow(clippy::too_many_arguments)]
    pub fn penalize(
        &self,
        stream: &Stream,
        logits: &mut DeviceBuffer<f32>,
        row: usize,
        cols: usize,
        ids: &DeviceBuffer<u32>,
        counts: &DeviceBuffer<u32>,
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<()> {
        need("penalize logits", logits.len(), (row + 1) * cols)?;
        need("penalize counts", counts.len(), ids.len())?;
        let n = ids.len();
        if n == 0 {
            return Ok(());
        }
        let row_ptr = logits.device_ptr() + (row * cols * 4) as u64;
        let args = KernelArgs::new()
            .ptr(row_ptr)
            .i32(to_i32("cols", cols)?)
            .ptr(ids.device_ptr())
            .ptr(counts.device_ptr())
            .i32(to_i32("penalties", n)?)
            .f32(repeat)
            .f32(frequency)
            .f32(presence);
        self.launch_1d(stream, "penalize_f32", n, args)
    }

    /// Sample one id from row `row` of `cols` logits into `out[row]`
    /// (top-k → top-p → min-p → temperature → draw; see
    /// `backend_core::select_reference`).
    pub fn sample_topk(
        &self,
        stream: &Stream,
        logits: &DeviceBuffer<f32>,
        row: usize,
        cols: usize,
        p: &SampleParams,
        out: &mut DeviceBuffer<u32>,
    ) -> Result<()> {
        need("sample logits", logits.len(), (row + 1) * cols)?;
        need("sample output", out.len(), row + 1)?;
        if cols == 0 || !(1..=SAMPLE_MAX_K).contains(&p.top_k) {
            return Err(invalid(format!(
                "sample: top_k {} over {cols} logits (1..={SAMPLE_MAX_K} supported)",
                p.top_k
            )));
        }
        if !(p.temperature.is_finite() && p.temperature > 0.0) {
            return Err(invalid(format!(
                "sample: temperature {} is not positive",
                p.temperature
            )));
        }
        let cfg = LaunchConfig {
            grid: (1, 1, 1),
            block: (SAMPLE_THREADS, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(logits.device_ptr() + (row * cols * 4) as u64)
            .i32(to_i32("cols", cols)?)
            .i32(p.top_k as i32)
            .f32(p.top_p)
            .f32(p.min_p)
            .f32(p.temperature)
            .f64(p.uniform)
            .ptr(out.device_ptr() + (row * 4) as u64);
        // SAFETY: matches `sample_topk_f32`; the row and the output slot are
        // inside the buffers (checked above), k is within the kernel's
        // shared-memory capacity.
        unsafe { self.f("sample_topk_f32")?.launch(stream, cfg, &args) }
    }
}
