//! `backend-hip`: the GPU implementation of [`backend_core::Backend`], on
//! AMD GPUs through HIP or NVIDIA GPUs through the CUDA driver API, both
//! loaded at run time (see `gpu-runtime`), with the kernels of `hip-kernels`.
//!
//! - Weights are uploaded once and stay in their stored format in VRAM when
//!   a kernel reads it ([`hip_kernels::GpuFormat`]); other types are
//!   converted to f16 at upload; 1-D weights (norms, biases) are kept as f32.
//! - Activations ([`HipTensor`]) and the KV cache ([`HipKvCache`], f32) live
//!   in VRAM; only inputs (ids, positions) and requested outputs cross the bus.
//! - All work goes to one stream of the backend, in call order. The backend
//!   is `Send + Sync`; see `gpu_runtime::device` for the context rule that
//!   makes use from several threads safe.
//!
//! [`HipBackend::try_new`] either gives a working backend or says why not,
//! so callers can fall back to the CPU with that reason.

#![warn(missing_docs)]

mod convert;
mod fused;
mod pool;
mod q8;
mod replay;
mod select;
mod tensor;

use std::ops::Range;
use std::sync::Arc;

use backend_core::{
    AttnSpec, Backend, BackendError, GluKind, Result, RopeMode, RopeSpec, TokenSelect, WeightView,
};
use gpu_runtime::{Device, DeviceBuffer, RuntimeError, Stream};
use hip_kernels::MatvecPart;
use hip_kernels::{AttnParams, Kernels, RopeParams};

pub use gpu_runtime::DeviceProps;
pub use replay::HipDecodeGraph;
pub use tensor::{HipKvCache, HipTensor, HipWeight};

/// Why the GPU backend is not available (no runtime library, no device,
/// kernels that do not compile, …), in one human-readable line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GpuUnavailable(pub String);

/// What [`probe`] found: a usable device, before any kernel is loaded.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    /// "hip" or "cuda".
    pub vendor: &'static str,
    /// Device ordinal.
    pub ordinal: usize,
    /// The device's properties.
    pub props: DeviceProps,
    /// Free device memory in bytes.
    pub free_memory: usize,
}

/// Look for a usable GPU (loads the runtime library, opens the device,
/// reads its free memory). Cheap compared to [`HipBackend::try_new`].
pub fn probe(ordinal: usize) -> std::result::Result<GpuInfo, GpuUnavailable> {
    let dev = gpu_runtime::probe(ordinal).map_err(|e| GpuUnavailable(e.to_string()))?;
    let (free, _) = dev.mem_info().map_err(|e| GpuUnavailable(e.to_string()))?;
    Ok(GpuInfo {
        vendor: dev.runtime().vendor().name(),
        ordinal,
        props: dev.props().clone(),
        free_memory: free,
    })
}

pub(crate) fn dev_err(e: RuntimeError) -> BackendError {
    if e.is_out_of_memory() {
        BackendError::OutOfMemory {
            bytes: 0,
            detail: e.to_string(),
        }
    } else {
        BackendError::Device(e.to_string())
    }
}

fn shape(op: &'static str, detail: String) -> BackendError {
    BackendError::Shape { op, detail }
}

/// `HipBackend::fused_attention`: RoPE, cache write and attention always
/// as two launches.
const FUSED_OFF: u8 = 0;
/// One launch wherever a fused kernel takes the row.
const FUSED_ALL: u8 = 1;
/// One launch where the key-group kernel takes the row (the default).
const FUSED_KEY_GROUPS: u8 = 2;

/// `HipBackend::norm_fuse`: the residual add + norm never in a mat-vec's
/// store.
const NORM_FUSE_OFF: u8 = 0;
/// Always where a kernel and the readers allow it.
const NORM_FUSE_ON: u8 = 1;
/// Where its blocks fill the device (the default).
const NORM_FUSE_AUTO: u8 = 2;

/// Group counters of the grouped GLU launches (`HipBackend::set_glu_group`):
/// feed-forwards of up to 32 × this many values.
const GLU_COUNTERS: usize = 8192;

/// The GPU backend: one device, one stream, the loaded kernels.
pub struct HipBackend {
    device: Arc<Device>,
    stream: Stream,
    kernels: Kernels,
    /// Activation buffers for reuse (see `pool`).
    pool: Arc<pool::BufferPool>,
    /// The positions last uploaded for RoPE: every layer of a forward pass
    /// rotates the same positions, so they cross the bus once per pass.
    positions: std::sync::Mutex<Option<(Vec<u32>, DeviceBuffer<u32>)>>,
    /// The 8-bit activation row of the decode mat-vec and whose it is.
    q8_scratch: std::sync::Mutex<q8::Q8Scratch>,
    /// `ROCMFORGE_GPU_F32_MATVEC=1`: decode through the f32 matmul kernel
    /// instead of the 8-bit-activation mat-vec (for comparisons).
    f32_matvec: bool,
    /// `ROCMFORGE_GPU_NO_Q8_FUSE=1`: norms and GLU do not write the 8-bit
    /// row of the decode mat-vec (each mat-vec quantizes; for comparisons).
    no_q8_fuse: bool,
    /// Whether a decode step's output projections and the residual add +
    /// norm after them run as one launch (`matmul_add_rms_norm`; off unless
    /// `ROCMFORGE_GPU_NORM_TAIL=1`: see docs/gpu.md).
    norm_tail: std::sync::atomic::AtomicBool,
    /// Whether a decode step's gate, up and GLU run as one launch
    /// (`matmul_glu`; off unless `ROCMFORGE_GPU_GLU_FUSE=1`: see
    /// `set_glu_fuse`).
    glu_fuse: std::sync::atomic::AtomicBool,
    /// When a decode step's output projections carry the residual add and
    /// the next norm in their store (`matmul_add_rms_norm` through
    /// `Kernels::matvec_q8_add_norm`): `NORM_FUSE_AUTO` (the default), `_ON`
    /// or `_OFF` (`ROCMFORGE_GPU_NORM_FUSE=1|0`; see `set_norm_fuse`).
    norm_fuse: std::sync::atomic::AtomicU8,
    /// The finished-block counter of the mat-vec norm tail (0 between
    /// launches; see `kernels/matvec.hip`).
    tail_counter: DeviceBuffer<u32>,
    /// When a decode row's RoPE, cache write and attention run as one
    /// launch (`fused`): [`FUSED_KEY_GROUPS`] by default (with the
    /// key-group kernel, 8b Q4_K_M tg128 576 against 550 t/s on an H200;
    /// the wave-per-key one measured slower than two launches, see
    /// docs/gpu.md), [`FUSED_ALL`] with `ROCMFORGE_GPU_FUSED_ATTENTION=1`,
    /// [`FUSED_OFF`] with `=0`.
    fused_attention: std::sync::atomic::AtomicU8,
    /// Whether one-token decode steps are recorded and replayed as graphs
    /// (see `replay`; off with `ROCMFORGE_GPU_NO_GRAPH=1`).
    decode_graphs: std::sync::atomic::AtomicBool,
    /// The decode step being captured, if any.
    capture: std::sync::Mutex<Option<replay::Capture>>,
    /// `[position, token]` of the step a recorded pass replays.
    step: std::sync::Mutex<DeviceBuffer<u32>>,
    /// The host side of the last copy into `step` (kept until it has run).
    step_host: std::sync::Mutex<Box<[u32; 2]>>,
    /// Device buffers for the picked ids of `select_tokens`: sampled rows,
    /// greedy rows (grown to the most rows seen).
    id_scratch: std::sync::Mutex<Option<select::IdBuffers>>,
    /// Whether one token's Q4_K q/k and Q6_K v mat-vecs share a launch
    /// (`Kernels::matvec_q8_q4k_q6k`); off unless `ROCMFORGE_GPU_MV_MIXED=1`.
    mixed_matvec: std::sync::atomic::AtomicBool,
    /// Whether `matmul_glu` runs as one launch of independent four-wave
    /// blocks whose last one per 32 outputs writes the 8-bit block
    /// (`matvec_*_gluc`, counting in `glu_counters`); off unless
    /// `ROCMFORGE_GPU_GLU_GROUP=1`.
    glu_group: std::sync::atomic::AtomicBool,
    /// Finished blocks per group of 32 outputs of those launches (all 0
    /// between launches): enough for rows of `GLU_COUNTERS * 32` outputs.
    glu_counters: DeviceBuffer<u32>,
    /// Whether a replayed decode step launches the sequence's next step
    /// right after its token selection, with the picked id taken on the
    /// device, before that id is read back (see `replay`; off unless
    /// `ROCMFORGE_GPU_DECODE_AHEAD=1`: not yet measured where the caller
    /// feeds the picked ids back).
    decode_ahead: std::sync::atomic::AtomicBool,
    /// A second stream, for reading a picked id back while the step
    /// launched ahead runs on `stream`.
    copy_stream: Stream,
    /// Decode steps recorded and replayed so far (for tests and logs).
    graph_counts: replay::GraphCounts,
}

impl std::fmt::Debug for HipBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HipBackend")
            .field("device", &self.device)
            .finish()
    }
}

impl HipBackend {
    /// Open GPU `ordinal` and load the kernels (compiling them at run time
    /// when no prebuilt code object fits; cached on disk), or say why not.
    pub fn try_new(ordinal: usize) -> std::result::Result<HipBackend, GpuUnavailable> {
        let device = gpu_runtime::probe(ordinal).map_err(|e| GpuUnavailable(e.to_string()))?;
        let stream = Stream::new(&device).map_err(|e| GpuUnavailable(e.to_string()))?;
        let copy_stream = Stream::new(&device).map_err(|e| GpuUnavailable(e.to_string()))?;
        let kernels =
            Kernels::load(&device).map_err(|e| GpuUnavailable(format!("GPU kernels: {e}")))?;
        tracing::info!(
            "GPU backend on {} ({}, wave {}, {} CUs, kernels {:?})",
            device.props().name,
            device.props().arch,
            device.props().wave_size,
            device.props().compute_units,
            kernels.origins()
        );
        let total = device.mem_info().map(|(_, t)| t).unwrap_or(0);
        let step = DeviceBuffer::alloc(&device, 2).map_err(|e| GpuUnavailable(e.to_string()))?;
        let tail_counter =
            DeviceBuffer::from_host(&stream, &[0u32]).map_err(|e| GpuUnavailable(e.to_string()))?;
        let glu_counters = DeviceBuffer::from_host(&stream, &vec![0u32; GLU_COUNTERS])
            .map_err(|e| GpuUnavailable(e.to_string()))?;
        Ok(HipBackend {
            device,
            stream,
            kernels,
            // Free activation buffers kept: 1/16 of the device's memory.
            pool: Arc::new(pool::BufferPool::new(total / 16)),
            positions: std::sync::Mutex::new(None),
            q8_scratch: std::sync::Mutex::new(q8::Q8Scratch::default()),
            f32_matvec: std::env::var_os("ROCMFORGE_GPU_F32_MATVEC").is_some_and(|v| v == "1"),
            no_q8_fuse: std::env::var_os("ROCMFORGE_GPU_NO_Q8_FUSE").is_some_and(|v| v == "1"),
            norm_tail: std::sync::atomic::AtomicBool::new(
                std::env::var_os("ROCMFORGE_GPU_NORM_TAIL").is_some_and(|v| v == "1"),
            ),
            glu_fuse: std::sync::atomic::AtomicBool::new(
                std::env::var_os("ROCMFORGE_GPU_GLU_FUSE").is_some_and(|v| v == "1"),
            ),
            norm_fuse: std::sync::atomic::AtomicU8::new(
                match std::env::var("ROCMFORGE_GPU_NORM_FUSE").as_deref() {
                    Ok("1") => NORM_FUSE_ON,
                    Ok("0") => NORM_FUSE_OFF,
                    _ => NORM_FUSE_AUTO,
                },
            ),
            tail_counter,
            fused_attention: std::sync::atomic::AtomicU8::new(
                match std::env::var("ROCMFORGE_GPU_FUSED_ATTENTION").as_deref() {
                    Ok("0") => FUSED_OFF,
                    Ok("1") => FUSED_ALL,
                    _ => FUSED_KEY_GROUPS,
                },
            ),
            decode_graphs: std::sync::atomic::AtomicBool::new(
                std::env::var_os("ROCMFORGE_GPU_NO_GRAPH").is_none_or(|v| v != "1"),
            ),
            capture: std::sync::Mutex::new(None),
            step: std::sync::Mutex::new(step),
            step_host: std::sync::Mutex::new(Box::new([0; 2])),
            id_scratch: std::sync::Mutex::new(None),
            mixed_matvec: std::sync::atomic::AtomicBool::new(
                std::env::var_os("ROCMFORGE_GPU_MV_MIXED").is_some_and(|v| v == "1"),
            ),
            glu_group: std::sync::atomic::AtomicBool::new(
                std::env::var_os("ROCMFORGE_GPU_GLU_GROUP").is_some_and(|v| v == "1"),
            ),
            glu_counters,
            decode_ahead: std::sync::atomic::AtomicBool::new(
                std::env::var_os("ROCMFORGE_GPU_DECODE_AHEAD").is_some_and(|v| v == "1"),
            ),
            copy_stream,
            graph_counts: replay::GraphCounts::default(),
        })
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The backend's stream (all its work goes there).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The loaded kernels.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// `(free, total)` device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.device.mem_info().map_err(dev_err)
    }

    /// Turn the recording and replay of one-token decode steps on or off
    /// (on unless `ROCMFORGE_GPU_NO_GRAPH=1`); sequences with a recording
    /// stop using it at their next step.
    pub fn set_decode_graphs(&self, on: bool) {
        self.decode_graphs
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run one token's Q4_K q/k and Q6_K v mat-vecs as one launch where the
    /// kernels allow (off unless `ROCMFORGE_GPU_MV_MIXED=1`).
    pub fn set_mixed_matvec(&self, on: bool) {
        self.mixed_matvec
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run `matmul_glu` as one launch of four-wave blocks, the last of each
    /// 32 outputs writing their 8-bit block (off unless
    /// `ROCMFORGE_GPU_GLU_GROUP=1`); also where the input's norm factor is
    /// deferred, which the 16-wave form (`set_glu_fuse`) does not take.
    pub fn set_glu_group(&self, on: bool) {
        self.glu_group
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Turn on or off launching a sequence's next recorded decode step
    /// before the current step's id is read back (off unless
    /// `ROCMFORGE_GPU_DECODE_AHEAD=1`; see `replay`).
    pub fn set_decode_ahead(&self, on: bool) {
        self.decode_ahead
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run a decode row's RoPE, cache write and attention as one launch
    /// wherever a fused kernel takes it (`on`: `attention_keygroups_rope_f32`,
    /// or `attention_decode_rope_f32` for heads the key-group layout does
    /// not fit) or always as two launches. The default, one launch where
    /// the key-group kernel takes it, comes back only with a new backend.
    pub fn set_fused_attention(&self, on: bool) {
        self.fused_attention.store(
            if on { FUSED_ALL } else { FUSED_OFF },
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Run a decode step's output projection, residual add and next RMS
    /// norm as one launch (`matmul_add_rms_norm`: the mat-vec's last block
    /// does the norm) or as two (the default; also
    /// `ROCMFORGE_GPU_NORM_TAIL=1` turns it on).
    pub fn set_norm_tail(&self, on: bool) {
        self.norm_tail
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run a decode step's gate and up projections and GLU as one launch
    /// where a fused kernel serves the weights (`matmul_glu`) or as two (the
    /// default; also `ROCMFORGE_GPU_GLU_FUSE=1` turns it on). Measured on an
    /// H200 against the two: 1b Q4_K_M tg128 equal, 8b Q4_0 524 against
    /// 581 t/s, Q8_0 400 against 419 (a block of 16 waves, the only one its
    /// compute unit holds, retires as a whole; docs/gpu.md).
    pub fn set_glu_fuse(&self, on: bool) {
        self.glu_fuse
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run a decode step's output projection with the residual add and the
    /// next RMS norm in the mat-vec's store, no launch of their own
    /// (`matmul_add_rms_norm` given its readers, all of which take the
    /// 8-bit mat-vec): always with `Some(true)`
    /// (`ROCMFORGE_GPU_NORM_FUSE=1`), never with `Some(false)` (`=0`), and
    /// with `None` (the default) where its blocks of 32 rows fill at least
    /// three quarters of the compute units. The norm's factor is then
    /// applied by the mat-vecs that read the normalized row, whose f32
    /// values are not written (a plain matmul of that row is an error).
    /// Measured on an H200 (tg128): 8b Q4_0 595 against 573 t/s, Q8_0 432
    /// against 419, Q4_K_M 572 against 564; 1b Q4_K_M 1,903 against 1,931
    /// (64 blocks, not taken by default).
    pub fn set_norm_fuse(&self, on: Option<bool>) {
        let mode = match on {
            Some(true) => NORM_FUSE_ON,
            Some(false) => NORM_FUSE_OFF,
            None => NORM_FUSE_AUTO,
        };
        self.norm_fuse
            .store(mode, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `matmul_add_rms_norm` of `n` rows may defer its norm (see
    /// `set_norm_fuse`).
    fn norm_fuse_for(&self, n: usize) -> bool {
        match self.norm_fuse.load(std::sync::atomic::Ordering::Relaxed) {
            NORM_FUSE_ON => true,
            NORM_FUSE_AUTO => {
                let units = self.device.props().compute_units as usize;
                units > 0 && 4 * (n / 32) >= 3 * units
            }
            _ => false,
        }
    }

    /// `(recorded, replayed)`: how many one-token decode steps were
    /// captured as graphs and how many ran as replays of one, so far.
    pub fn decode_graph_counts(&self) -> (u64, u64) {
        self.graph_counts.get()
    }

    /// Wait until all submitted work has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(dev_err)
    }

    /// Quantize the `k` values of `x` into the 8-bit row `q`/`ds` unless
    /// they already hold it (`ready`).
    fn quantize_unless(
        &self,
        ready: bool,
        x: &DeviceBuffer<f32>,
        k: usize,
        q: &mut DeviceBuffer<u32>,
        ds: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        if ready {
            return Ok(());
        }
        self.kernels
            .quantize_q8(&self.stream, x, k, q, ds)
            .map_err(dev_err)
    }

    /// One token through the 8-bit-activation mat-vec (shapes checked by
    /// the caller).
    fn matvec_q8(&self, w: &HipWeight, x: &HipTensor, out: &mut HipTensor) -> Result<()> {
        self.matvecs_q8(x, &[w], &mut [out])
    }

    /// One token through the 8-bit-activation mat-vecs of several weights
    /// with the same input width: the activations are quantized once.
    /// Shapes checked by the caller.
    fn matvecs_q8(
        &self,
        x: &HipTensor,
        ws: &[&HipWeight],
        outs: &mut [&mut HipTensor],
    ) -> Result<()> {
        let k = x.cols;
        let mut scratch = self.q8();
        // The row's 8-bit form may already be there: written by the norm or
        // GLU that produced `x` (into the spare slot by the fused gate/up/GLU
        // launch), or by the previous mat-vec of the same `x`.
        let in_spare = scratch.spare_holds(&x.buf, k);
        let ready = in_spare || scratch.holds(&x.buf, k);
        let (q, ds, scale) = if in_spare {
            scratch.spare_input()?
        } else {
            let (q, ds) = scratch.buffers(&self.device, k)?;
            (q, ds, None)
        };
        self.quantize_unless(ready, &x.buf, k, q, ds)?;
        // Weights of one format share a launch (up to MATVEC_MAX_PARTS).
        let mut pending: Vec<(hip_kernels::GpuFormat, Vec<MatvecPart<'_>>)> = Vec::new();
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            let part = MatvecPart {
                w: &w.data,
                n: w.rows(),
                y: &mut out.buf,
            };
            match pending
                .iter_mut()
                .find(|(f, p)| *f == w.format && p.len() < hip_kernels::MATVEC_MAX_PARTS)
            {
                Some((_, parts)) => parts.push(part),
                None => pending.push((w.format, vec![part])),
            }
        }
        // Q4_K q/k with a Q6_K v (Q4_K_M files): one launch where it may.
        if self.mixed_matvec.load(std::sync::atomic::Ordering::Relaxed)
            && self.matvec_q4k_q6k(&mut pending, k, q, ds, scale)?
        {
            pending.clear();
        }
        for (format, mut parts) in pending {
            self.kernels
                .matvec_q8_multi(&self.stream, format, &mut parts, k, q, ds, None, scale)
                .map_err(dev_err)?;
        }
        if !in_spare {
            scratch.set_holder(&x.buf, k);
        }
        Ok(())
    }

    /// One launch for `pending` where it is exactly one or two Q4_K weights
    /// and one Q6_K weight (`Kernels::matvec_q8_q4k_q6k`); Ok(false),
    /// launching nothing, otherwise.
    fn matvec_q4k_q6k(
        &self,
        pending: &mut [(hip_kernels::GpuFormat, Vec<MatvecPart<'_>>)],
        k: usize,
        q: &DeviceBuffer<u32>,
        ds: &DeviceBuffer<f32>,
        scale: Option<hip_kernels::ActScale<'_>>,
    ) -> Result<bool> {
        use hip_kernels::GpuFormat::{Q4K, Q6K};
        let [(fa, a), (fb, b)] = pending else {
            return Ok(false);
        };
        let (a, b) = match (*fa, *fb) {
            (Q4K, Q6K) => (a, b),
            (Q6K, Q4K) => (b, a),
            _ => return Ok(false),
        };
        let [b] = b.as_mut_slice() else {
            return Ok(false);
        };
        self.kernels
            .matvec_q8_q4k_q6k(&self.stream, a, b, k, q, ds, scale)
            .map_err(dev_err)
    }

    /// One token through a feed-forward's gate and up projections and its
    /// GLU in one launch where a fused kernel serves the weights
    /// (`Kernels::matvec_q8_glu`), its 8-bit output into the spare slot for
    /// the down projection. Ok(false), having launched nothing but perhaps
    /// the input's quantization, where none does.
    fn matvec_glu_q8(
        &self,
        x: &HipTensor,
        gate: &HipWeight,
        up: &HipWeight,
        kind: GluKind,
        out: &mut HipTensor,
    ) -> Result<bool> {
        let (k, n) = (x.cols, out.cols);
        let counters = self
            .glu_group
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(&self.glu_counters);
        let mut scratch = self.q8();
        scratch.forget_if_written(&out.buf);
        let gelu = kind == GluKind::GeluTanh;
        let stream = &self.stream;
        let mut launch = |q: &DeviceBuffer<u32>,
                          ds: &DeviceBuffer<f32>,
                          q8: hip_kernels::Q8Out<'_>,
                          scale: Option<hip_kernels::ActScale<'_>>,
                          counters: Option<&DeviceBuffer<u32>>| {
            self.kernels
                .matvec_q8_glu(
                    stream,
                    gate.format,
                    &gate.data,
                    &up.data,
                    n,
                    k,
                    q,
                    ds,
                    gelu,
                    &mut out.buf,
                    q8,
                    scale,
                    counters,
                )
                .map_err(dev_err)
        };
        if scratch.spare_holds(&x.buf, k) {
            // The input is in the spare slot (with its deferred norm factor,
            // if any): the output goes to the main one. Only the grouped
            // kernels take it so.
            let Some(counters) = counters else {
                return Ok(false);
            };
            let ((q, ds, scale), main) = scratch.spare_in_main_out(&self.device, n)?;
            let fused = launch(q, ds, main, scale, Some(counters))?;
            if fused {
                scratch.set_holder(&out.buf, n);
            }
            return Ok(fused);
        }
        let ready = scratch.holds(&x.buf, k);
        let ((q, ds), spare) = scratch.main_and_spare(&self.device, k, n)?;
        self.quantize_unless(ready, &x.buf, k, q, ds)?;
        let fused = launch(q, ds, spare, None, counters)?;
        scratch.set_holder(&x.buf, k);
        if fused {
            scratch.set_spare_holder(&out.buf, n);
        }
        Ok(fused)
    }

    /// `matmul_add_rms_norm` as one launch whose store does the residual
    /// add and the norm without its factor (`Kernels::matvec_q8_add_norm`):
    /// `out`'s 8-bit row into the spare slot, marked deferred, for the
    /// mat-vecs that read it next; `out`'s f32 values are not written.
    /// Ok(false), having launched nothing but perhaps `a`'s quantization,
    /// where no such kernel serves `w`.
    #[allow(clippy::too_many_arguments)]
    fn matvec_add_norm_q8(
        &self,
        w: &HipWeight,
        a: &HipTensor,
        y: &mut HipTensor,
        x: &mut HipTensor,
        weight: Option<&HipWeight>,
        eps: f32,
        out: &mut HipTensor,
    ) -> Result<bool> {
        let (k, n) = (a.cols, w.rows());
        let Some(norm_w) = self.norm_args("matmul_add_rms_norm", x, weight, n, out)? else {
            return Ok(false);
        };
        let mut scratch = self.q8();
        if scratch.spare_holds(&a.buf, k) {
            // The input is in the spare slot, where the output would go.
            return Ok(false);
        }
        for written in [&y.buf, &x.buf, &out.buf] {
            scratch.forget_if_written(written);
        }
        let ready = scratch.holds(&a.buf, k);
        let ((q, ds), spare, partials) = scratch.main_spare_partials(&self.device, k, n)?;
        self.quantize_unless(ready, &a.buf, k, q, ds)?;
        let fused = self
            .kernels
            .matvec_q8_add_norm(
                &self.stream,
                w.format,
                &w.data,
                n,
                k,
                q,
                ds,
                None,
                &mut y.buf,
                &mut x.buf,
                norm_w,
                spare,
                partials,
            )
            .map_err(dev_err)?;
        scratch.set_holder(&a.buf, k);
        if fused {
            scratch.set_spare_deferred(&out.buf, n, eps);
        }
        Ok(fused)
    }

    /// The checks of an RMS norm of `x` into `out` in groups of `group`, and
    /// its weight vector on the device.
    fn norm_args<'w>(
        &self,
        op: &'static str,
        x: &HipTensor,
        weight: Option<&'w HipWeight>,
        group: usize,
        out: &HipTensor,
    ) -> Result<Option<&'w DeviceBuffer<f32>>> {
        check_same(op, x, out)?;
        if group == 0 || !x.cols.is_multiple_of(group) {
            return Err(shape(
                op,
                format!("rows of {} in groups of {group}", x.cols),
            ));
        }
        weight.map(|w| self.vector(op, w, group)).transpose()
    }

    /// RoPE of `x` (`n_heads` heads) and, when given, of a second tensor
    /// with its own head count at the same positions, in one launch.
    fn rope_pair(
        &self,
        x: &mut HipTensor,
        n_heads: usize,
        mut second: Option<(&mut HipTensor, usize)>,
        positions: &[u32],
        spec: &RopeSpec,
        store: Option<hip_kernels::RopeStore<'_>>,
    ) -> Result<()> {
        self.forget_q8();
        if n_heads == 0 || !x.cols.is_multiple_of(n_heads) || positions.len() != x.rows {
            return Err(shape(
                "rope",
                format!(
                    "{}x{} in {n_heads} heads with {} positions",
                    x.rows,
                    x.cols,
                    positions.len()
                ),
            ));
        }
        let head_dim = x.cols / n_heads;
        if spec.n_dims > head_dim || !spec.n_dims.is_multiple_of(2) {
            return Err(shape(
                "rope",
                format!("{} rotated dims of heads of {head_dim}", spec.n_dims),
            ));
        }
        if let Some((y, ny)) = &second {
            if *ny == 0 || y.rows != x.rows || y.cols != ny * head_dim {
                return Err(shape(
                    "rope",
                    format!(
                        "second input {}x{} in {ny} heads of {head_dim} for {} rows",
                        y.rows, y.cols, x.rows
                    ),
                ));
            }
        }
        if x.rows == 0 || spec.n_dims == 0 {
            return Ok(());
        }
        let p = rope_params(x.rows, n_heads, head_dim, spec);
        let x2 = second.as_mut().map(|(y, ny)| (&mut y.buf, *ny));
        self.with_positions(positions, |pos| {
            self.kernels
                .rope_pair(&self.stream, &mut x.buf, x2, pos, &p, store)
                .map_err(dev_err)
        })
    }

    /// Run `f` with `positions` on the device: the step buffer while a
    /// decode step is recorded (whose position they must be), else an
    /// upload kept for the next op at the same positions (every layer of a
    /// pass rotates the same ones, so they cross the bus once per pass).
    fn with_positions<R>(
        &self,
        positions: &[u32],
        f: impl FnOnce(&DeviceBuffer<u32>) -> Result<R>,
    ) -> Result<R> {
        if let Some((pos, _)) = self.capture_step() {
            if positions != [pos as u32] {
                self.refuse_capture("rope at other positions")?;
            }
            return f(&self.step_buffer());
        }
        let mut cached = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_none_or(|(host, _)| host != positions) {
            *cached = Some((positions.to_vec(), self.upload_u32(positions)?));
        }
        let Some((_, pos)) = cached.as_ref() else {
            return Err(shape("rope", "positions were not uploaded".into()));
        };
        f(pos)
    }

    /// The 8-bit activation scratch, locked for the caller's launches.
    fn q8(&self) -> std::sync::MutexGuard<'_, q8::Q8Scratch> {
        self.q8_scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every op that writes device memory first forgets whose 8-bit row the
    /// scratch holds (the row it was made from may change, or its buffer be
    /// handed out again and rewritten); the matmuls, which only write their
    /// outputs, forget it when an output is that buffer.
    fn forget_q8(&self) {
        self.q8().forget();
    }

    /// Run `launch` with the 8-bit scratch as its second output when `emit`
    /// (then recording that the scratch holds the row of `k` values at
    /// device address `holder`); without `emit` the scratch is only
    /// forgotten, as by any op that writes memory.
    fn emitting_q8(
        &self,
        emit: bool,
        holder: u64,
        k: usize,
        launch: impl FnOnce(Option<hip_kernels::Q8Out<'_>>) -> Result<()>,
    ) -> Result<()> {
        let mut scratch = self.q8();
        scratch.forget();
        let q8 = if emit {
            Some(scratch.out(&self.device, k)?)
        } else {
            None
        };
        launch(q8)?;
        if emit {
            scratch.set_holder_at(holder, k);
        }
        Ok(())
    }

    /// Whether an op producing `out` (one row of `k` values) should also
    /// write its 8-bit form for the decode mat-vec that reads it next.
    fn emits_q8(&self, out: &HipTensor, k: usize) -> bool {
        out.rows == 1
            && out.cols == k
            && k.is_multiple_of(32)
            && !self.f32_matvec
            && !self.no_q8_fuse
    }

    /// Whether one token times `w` goes through the 8-bit mat-vec.
    fn takes_matvec_q8(&self, w: &HipWeight, x: &HipTensor) -> bool {
        x.rows == 1 && !self.f32_matvec && hip_kernels::matvec_q8_supports(w.format, w.cols())
    }

    /// A `rows × cols` tensor with unspecified contents, from the pool of
    /// the moment (see `replay`).
    fn new_tensor(&self, rows: usize, cols: usize) -> Result<HipTensor> {
        let pool = self.current_pool();
        let buf = pool.take(&self.device, rows * cols).map_err(dev_err)?;
        Ok(HipTensor {
            buf,
            rows,
            cols,
            pool: Some(pool),
        })
    }

    fn upload_u32(&self, v: &[u32]) -> Result<DeviceBuffer<u32>> {
        DeviceBuffer::from_host(&self.stream, v).map_err(dev_err)
    }

    fn vector<'a>(
        &self,
        op: &'static str,
        w: &'a HipWeight,
        len: usize,
    ) -> Result<&'a DeviceBuffer<f32>> {
        match &w.vector {
            Some(v) if v.len() == len => Ok(v),
            _ => Err(shape(
                op,
                format!(
                    "{} must be a single row of {len} (dims {:?})",
                    w.name, w.dims
                ),
            )),
        }
    }
}

/// The kernels' RoPE parameters for `rows` rows of `n_heads` heads of
/// `head_dim` values.
fn rope_params(rows: usize, n_heads: usize, head_dim: usize, spec: &RopeSpec) -> RopeParams {
    let (ext_factor, attn_factor, corr_dims) = spec.yarn_params();
    RopeParams {
        rows,
        n_heads,
        head_dim,
        n_dims: spec.n_dims,
        neox: spec.mode == RopeMode::Neox,
        theta_scale: spec.freq_base.powf(-2.0 / spec.n_dims as f32),
        freq_scale: spec.freq_scale,
        ext_factor,
        attn_factor,
        corr_dims,
    }
}

fn check_same(op: &'static str, a: &HipTensor, b: &HipTensor) -> Result<()> {
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(shape(
            op,
            format!("{}x{} vs {}x{}", a.rows, a.cols, b.rows, b.cols),
        ));
    }
    Ok(())
}

impl Backend for HipBackend {
    type Tensor = HipTensor;
    type Weight = HipWeight;
    type KvCache = HipKvCache;
    type DecodeGraph = HipDecodeGraph;

    fn name(&self) -> String {
        let p = self.device.props();
        format!(
            "{}:{} {} {}",
            self.device.runtime().vendor().name(),
            self.device.ordinal(),
            p.name,
            p.arch
        )
    }

    fn load_weight(&self, view: &WeightView<'_>) -> Result<HipWeight> {
        convert::load_weight(&self.stream, view)
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<HipTensor> {
        self.forget_q8();
        let t = self.new_tensor(rows, cols)?;
        t.buf.fill_zero(&self.stream).map_err(dev_err)?;
        Ok(t)
    }

    fn output(&self, rows: usize, cols: usize) -> Result<HipTensor> {
        self.new_tensor(rows, cols)
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<HipTensor> {
        self.refuse_capture("upload")?;
        self.forget_q8();
        if data.len() != rows * cols {
            return Err(shape(
                "upload",
                format!("{} values for {rows}x{cols}", data.len()),
            ));
        }
        let mut t = self.new_tensor(rows, cols)?;
        t.buf.copy_from_host(&self.stream, data).map_err(dev_err)?;
        Ok(t)
    }

    fn download(&self, t: &HipTensor) -> Result<Vec<f32>> {
        self.refuse_capture("download")?;
        t.buf.to_host(&self.stream).map_err(dev_err)
    }

    fn shape(&self, t: &HipTensor) -> (usize, usize) {
        (t.rows, t.cols)
    }

    fn get_rows(&self, table: &HipWeight, ids: &[u32], out: &mut HipTensor) -> Result<()> {
        self.forget_q8();
        let (n_rows, k) = (table.rows(), table.cols());
        if out.rows != ids.len() || out.cols != k {
            return Err(shape(
                "get_rows",
                format!(
                    "{} ids of rows of {k} into {}x{}",
                    ids.len(),
                    out.rows,
                    out.cols
                ),
            ));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= n_rows) {
            return Err(shape(
                "get_rows",
                format!(
                    "id {bad} is out of range for {} ({n_rows} rows)",
                    table.name
                ),
            ));
        }
        if ids.is_empty() {
            return Ok(());
        }
        // A recorded step reads its token from the step buffer.
        if let Some((_, token)) = self.capture_step() {
            if ids != [token] {
                return self.refuse_capture("get_rows of other ids");
            }
            return self
                .kernels
                .get_rows(
                    &self.stream,
                    table.format,
                    &table.data,
                    n_rows,
                    k,
                    &self.step_buffer(),
                    1..2,
                    &mut out.buf,
                )
                .map_err(dev_err);
        }
        let ids_dev = self.upload_u32(ids)?;
        self.kernels
            .get_rows(
                &self.stream,
                table.format,
                &table.data,
                n_rows,
                k,
                &ids_dev,
                0..ids.len(),
                &mut out.buf,
            )
            .map_err(dev_err)
    }

    fn matmul(&self, w: &HipWeight, x: &HipTensor, out: &mut HipTensor) -> Result<()> {
        let (n, k) = (w.rows(), w.cols());
        if x.cols != k || out.rows != x.rows || out.cols != n {
            return Err(shape(
                "matmul",
                format!(
                    "{} is {n}x{k}, input {}x{}, output {}x{}",
                    w.name, x.rows, x.cols, out.rows, out.cols
                ),
            ));
        }
        self.q8().forget_if_written(&out.buf);
        if self.takes_matvec_q8(w, x) {
            return self.matvec_q8(w, x, out);
        }
        {
            let scratch = self.q8();
            if scratch.spare_is_deferred() && scratch.spare_holds(&x.buf, x.cols) {
                return Err(BackendError::Device(format!(
                    "matmul: {}'s input is a normalized row that was never written \
                     (ROCMFORGE_GPU_NORM_FUSE: its readers must take the 8-bit mat-vec)",
                    w.name
                )));
            }
        }
        self.kernels
            .matmul(
                &self.stream,
                w.format,
                &w.data,
                n,
                k,
                &x.buf,
                x.rows,
                &mut out.buf,
            )
            .map_err(dev_err)
    }

    fn matmul_many(
        &self,
        x: &HipTensor,
        ws: &[&HipWeight],
        outs: &mut [&mut HipTensor],
    ) -> Result<()> {
        {
            let mut scratch = self.q8();
            for o in outs.iter() {
                scratch.forget_if_written(&o.buf);
            }
        }
        let shared = ws.len() == outs.len()
            && ws.iter().zip(outs.iter()).all(|(w, o)| {
                self.takes_matvec_q8(w, x)
                    && w.cols() == x.cols
                    && o.rows == 1
                    && o.cols == w.rows()
            });
        if shared {
            return self.matvecs_q8(x, ws, outs);
        }
        // Many tokens: one f16 conversion of the input for every weight.
        let prompt = x.rows > 1
            && ws.len() == outs.len()
            && ws
                .iter()
                .zip(outs.iter())
                .all(|(w, o)| w.cols() == x.cols && o.rows == x.rows && o.cols == w.rows());
        if !prompt {
            return backend_core::matmul_each(self, x, ws, outs);
        }
        let mut parts: Vec<_> = ws
            .iter()
            .zip(outs.iter_mut())
            .map(|(w, o)| hip_kernels::MatmulPart {
                format: w.format,
                w: &w.data,
                n: w.rows(),
                y: &mut o.buf,
            })
            .collect();
        self.kernels
            .matmul_many(&self.stream, &mut parts, x.cols, &x.buf, x.rows)
            .map_err(dev_err)
    }

    fn matmul_glu(
        &self,
        x: &HipTensor,
        gate: &HipWeight,
        up: &HipWeight,
        kind: GluKind,
        out: &mut HipTensor,
    ) -> Result<()> {
        let fusable = (self.glu_fuse.load(std::sync::atomic::Ordering::Relaxed)
            || self.glu_group.load(std::sync::atomic::Ordering::Relaxed))
            && gate.format == up.format
            && gate.dims == up.dims
            && self.takes_matvec_q8(gate, x)
            && gate.cols() == x.cols
            && (out.rows, out.cols) == (1, gate.rows())
            && self.emits_q8(out, out.cols);
        if fusable && self.matvec_glu_q8(x, gate, up, kind, out)? {
            return Ok(());
        }
        backend_core::matmul_glu_separate(self, x, gate, up, kind, out)
    }

    fn add_bias(&self, x: &mut HipTensor, bias: &HipWeight) -> Result<()> {
        self.forget_q8();
        let b = self.vector("add_bias", bias, x.cols)?;
        self.kernels
            .add(&self.stream, &mut x.buf, b, x.cols)
            .map_err(dev_err)
    }

    fn rms_norm(
        &self,
        x: &HipTensor,
        weight: Option<&HipWeight>,
        group: usize,
        eps: f32,
        out: &mut HipTensor,
    ) -> Result<()> {
        let w = self.norm_args("rms_norm", x, weight, group, out)?;
        let emit = self.emits_q8(out, group);
        let holder = out.buf.device_ptr();
        self.emitting_q8(emit, holder, group, |q8| {
            self.kernels
                .rms_norm(&self.stream, &x.buf, w, group, eps, &mut out.buf, q8)
                .map_err(dev_err)
        })
    }

    fn add_rms_norm(
        &self,
        x: &mut HipTensor,
        y: &HipTensor,
        weight: Option<&HipWeight>,
        group: usize,
        eps: f32,
        out: &mut HipTensor,
    ) -> Result<()> {
        check_same("add_rms_norm", x, y)?;
        let w = self.norm_args("add_rms_norm", x, weight, group, out)?;
        let emit = self.emits_q8(out, group);
        let holder = out.buf.device_ptr();
        self.emitting_q8(emit, holder, group, |q8| {
            self.kernels
                .add_rms_norm(
                    &self.stream,
                    &mut x.buf,
                    &y.buf,
                    w,
                    group,
                    eps,
                    &mut out.buf,
                    q8,
                )
                .map_err(dev_err)
        })
    }

    fn matmul_add_rms_norm(
        &self,
        w: &HipWeight,
        a: &HipTensor,
        y: &mut HipTensor,
        x: &mut HipTensor,
        weight: Option<&HipWeight>,
        eps: f32,
        out: &mut HipTensor,
        readers: &[&HipWeight],
    ) -> Result<()> {
        let n = w.rows();
        let fusable = !readers.is_empty()
            && readers
                .iter()
                .all(|r| r.cols() == n && self.takes_matvec_q8(r, out))
            && self.norm_fuse_for(n)
            && weight.is_some()
            && self.takes_matvec_q8(w, a)
            && w.cols() == a.cols
            && (y.rows, y.cols) == (1, n)
            && (x.rows, x.cols) == (1, n)
            && self.emits_q8(out, n);
        if fusable && self.matvec_add_norm_q8(w, a, y, x, weight, eps, out)? {
            return Ok(());
        }
        let one_launch = self.norm_tail.load(std::sync::atomic::Ordering::Relaxed)
            && weight.is_some()
            && self.takes_matvec_q8(w, a)
            && w.cols() == a.cols
            && (y.rows, y.cols) == (1, n)
            && (x.rows, x.cols) == (1, n)
            && self.emits_q8(out, n);
        if !one_launch {
            self.matmul(w, a, y)?;
            return self.add_rms_norm(x, y, weight, n, eps, out);
        }
        let norm_w = self
            .norm_args("matmul_add_rms_norm", x, weight, n, out)?
            .ok_or_else(|| shape("matmul_add_rms_norm", "no norm weight".into()))?;
        let k = a.cols;
        let mut scratch = self.q8();
        // Room for the input's row and for the output's (the tail writes
        // the latter over the former); growing forgets the input's.
        scratch.buffers(&self.device, k.max(n))?;
        let ready = scratch.holds(&a.buf, k);
        let (q, ds) = scratch.buffers(&self.device, k.max(n))?;
        self.quantize_unless(ready, &a.buf, k, q, ds)?;
        let tail = hip_kernels::NormTail {
            x: &mut x.buf,
            weight: norm_w,
            eps,
            out: &mut out.buf,
            counter: &self.tail_counter,
        };
        let part = MatvecPart {
            w: &w.data,
            n,
            y: &mut y.buf,
        };
        self.kernels
            .matvec_q8_multi(
                &self.stream,
                w.format,
                &mut [part],
                k,
                q,
                ds,
                Some(tail),
                None,
            )
            .map_err(dev_err)?;
        scratch.set_holder(&out.buf, n);
        Ok(())
    }

    fn layer_norm(
        &self,
        x: &HipTensor,
        weight: Option<&HipWeight>,
        bias: Option<&HipWeight>,
        eps: f32,
        out: &mut HipTensor,
    ) -> Result<()> {
        self.forget_q8();
        check_same("layer_norm", x, out)?;
        let w = weight
            .map(|w| self.vector("layer_norm", w, x.cols))
            .transpose()?;
        let b = bias
            .map(|b| self.vector("layer_norm", b, x.cols))
            .transpose()?;
        self.kernels
            .layer_norm(&self.stream, &x.buf, w, b, x.cols, eps, &mut out.buf)
            .map_err(dev_err)
    }

    fn rope(
        &self,
        x: &mut HipTensor,
        n_heads: usize,
        positions: &[u32],
        spec: &RopeSpec,
    ) -> Result<()> {
        self.rope_pair(x, n_heads, None, positions, spec, None)
    }

    fn rope_qk(
        &self,
        q: &mut HipTensor,
        n_head: usize,
        k: &mut HipTensor,
        n_head_kv: usize,
        positions: &[u32],
        spec: &RopeSpec,
    ) -> Result<()> {
        self.rope_pair(q, n_head, Some((k, n_head_kv)), positions, spec, None)
    }

    fn rope_qk_store(
        &self,
        q: &mut HipTensor,
        n_head: usize,
        k: &mut HipTensor,
        n_head_kv: usize,
        v: &HipTensor,
        positions: &[u32],
        spec: &RopeSpec,
        cache: &mut HipKvCache,
        layer: usize,
        start_pos: usize,
    ) -> Result<()> {
        let w = cache.n_head_kv * cache.head_dim;
        if spec.n_dims != cache.head_dim || k.cols != w || v.cols != w || v.rows != k.rows {
            // Partly rotated keys (the rest must be copied too) or shapes
            // for kv_store to reject: two passes.
            self.rope_qk(q, n_head, k, n_head_kv, positions, spec)?;
            return self.kv_store(cache, layer, k, v, 0..k.rows, start_pos);
        }
        // A recorded step writes at the position in the step buffer.
        let at_pos = match self.capture_step() {
            Some((pos, _)) if pos != start_pos || k.rows != 1 => {
                return self.refuse_capture("a cache write at another position");
            }
            Some(_) => {
                self.capture_note(cache.n_ctx, None);
                true
            }
            None => false,
        };
        let (k_dst, v_dst, dst_off) = cache.rows_at(layer, k.rows, start_pos)?;
        let store = hip_kernels::RopeStore {
            k_dst,
            v_dst,
            dst_off: if at_pos { 0 } else { dst_off },
            at_pos,
            v_src: &v.buf,
        };
        self.rope_pair(
            q,
            n_head,
            Some((k, n_head_kv)),
            positions,
            spec,
            Some(store),
        )
    }

    fn rope_store_attention(
        &self,
        q: &mut HipTensor,
        k: &mut HipTensor,
        v: &HipTensor,
        positions: &[u32],
        rope: &RopeSpec,
        cache: &mut HipKvCache,
        layer: usize,
        start_pos: usize,
        spec: &AttnSpec,
        out: &mut HipTensor,
    ) -> Result<()> {
        if self
            .fused_rope_attention(q, k, v, positions, rope, cache, layer, start_pos, spec, out)?
        {
            return Ok(());
        }
        backend_core::rope_store_attention_apart(
            self, q, k, v, positions, rope, cache, layer, start_pos, spec, out,
        )
    }

    fn kv_cache(
        &self,
        n_layers: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<HipKvCache> {
        HipKvCache::new(&self.stream, n_layers, n_ctx, n_head_kv, head_dim)
    }

    fn kv_store(
        &self,
        cache: &mut HipKvCache,
        layer: usize,
        k: &HipTensor,
        v: &HipTensor,
        rows: Range<usize>,
        start_pos: usize,
    ) -> Result<()> {
        self.refuse_capture("kv_store")?;
        self.forget_q8();
        cache.store(&self.stream, &self.kernels, layer, k, v, rows, start_pos)
    }

    fn attention(
        &self,
        q: &HipTensor,
        cache: &HipKvCache,
        layer: usize,
        rows: Range<usize>,
        start_pos: usize,
        spec: &AttnSpec,
        out: &mut HipTensor,
    ) -> Result<()> {
        check_same("attention", q, out)?;
        if q.cols != spec.n_head * spec.head_dim
            || spec.n_head_kv != cache.n_head_kv
            || spec.head_dim != cache.head_dim
            || rows.end > q.rows
            || rows.start > rows.end
        {
            return Err(shape(
                "attention",
                format!(
                    "query {}x{} rows {rows:?} for {} heads of {} over a cache of {} KV heads of {}",
                    q.rows, q.cols, spec.n_head, spec.head_dim, cache.n_head_kv, cache.head_dim
                ),
            ));
        }
        let n = rows.end - rows.start;
        if n == 0 {
            return Ok(());
        }
        if start_pos + n > cache.n_ctx {
            return Err(BackendError::ContextOverflow {
                pos: start_pos + n - 1,
                n_ctx: cache.n_ctx,
            });
        }
        // A recorded step reads its position from the step buffer.
        let dyn_pos = match self.capture_step() {
            Some((pos, _)) if pos != start_pos || rows != (0..1) => {
                return self.refuse_capture("attention of other rows");
            }
            Some(_) => true,
            None => false,
        };
        let (kb, vb) = cache.layer(layer)?;
        let p = AttnParams {
            rows: n,
            start_pos,
            n_head: spec.n_head,
            n_kv: spec.n_head_kv,
            head_dim: spec.head_dim,
            scale: spec.scale,
            window: spec.sliding_window,
            softcap: spec.softcap,
        };
        // One query row making the whole output row: also its 8-bit form
        // for the output projection.
        let emit = rows == (0..1)
            && out.rows == 1
            && spec.head_dim.is_multiple_of(32)
            && self.emits_q8(out, out.cols);
        let holder = out.buf.device_ptr();
        let step = if dyn_pos {
            self.capture_note(cache.n_ctx, Some((p, self.kernels.attention_splits(&p))));
            Some(self.step_buffer())
        } else {
            None
        };
        let dyn_buf = step.as_deref();
        self.emitting_q8(emit, holder, out.cols, |q8| {
            self.kernels
                .attention(
                    &self.stream,
                    &q.buf,
                    rows.start * q.cols,
                    kb,
                    vb,
                    0,
                    &p,
                    &mut out.buf,
                    q8,
                    dyn_buf,
                )
                .map_err(dev_err)
        })
    }

    fn glu(
        &self,
        gate: &HipTensor,
        up: &HipTensor,
        kind: GluKind,
        out: &mut HipTensor,
    ) -> Result<()> {
        check_same("glu", gate, up)?;
        check_same("glu", gate, out)?;
        let emit = self.emits_q8(out, out.cols);
        let holder = out.buf.device_ptr();
        self.emitting_q8(emit, holder, out.cols, |q8| {
            self.kernels
                .glu(
                    &self.stream,
                    &gate.buf,
                    &up.buf,
                    kind == GluKind::GeluTanh,
                    &mut out.buf,
                    q8,
                )
                .map_err(dev_err)
        })
    }

    fn add(&self, a: &mut HipTensor, b: &HipTensor) -> Result<()> {
        self.forget_q8();
        check_same("add", a, b)?;
        let n = a.buf.len();
        if n == 0 {
            return Ok(());
        }
        self.kernels
            .add(&self.stream, &mut a.buf, &b.buf, n)
            .map_err(dev_err)
    }

    fn mul(&self, a: &mut HipTensor, b: &HipTensor) -> Result<()> {
        self.forget_q8();
        let nb = if (a.rows, a.cols) == (b.rows, b.cols) {
            a.buf.len()
        } else if b.rows == 1 && b.cols == a.cols {
            a.cols
        } else {
            return Err(shape(
                "mul",
                format!("{}x{} by {}x{}", a.rows, a.cols, b.rows, b.cols),
            ));
        };
        if a.buf.is_empty() {
            return Ok(());
        }
        self.kernels
            .mul(&self.stream, &mut a.buf, &b.buf, nb)
            .map_err(dev_err)
    }

    fn scale(&self, a: &mut HipTensor, s: f32) -> Result<()> {
        self.forget_q8();
        self.kernels
            .scale(&self.stream, &mut a.buf, s)
            .map_err(dev_err)
    }

    fn softmax(&self, a: &mut HipTensor) -> Result<()> {
        self.forget_q8();
        if a.buf.is_empty() {
            return Ok(());
        }
        let cols = a.cols;
        self.kernels
            .softmax(&self.stream, &mut a.buf, cols)
            .map_err(dev_err)
    }

    fn argmax(&self, a: &HipTensor) -> Result<Vec<u32>> {
        self.refuse_capture("argmax")?;
        if a.rows == 0 {
            return Ok(Vec::new());
        }
        if a.cols == 0 {
            return Err(shape("argmax", "rows of 0 columns".into()));
        }
        let mut out = DeviceBuffer::<u32>::alloc(&self.device, a.rows).map_err(dev_err)?;
        self.kernels
            .argmax(&self.stream, &a.buf, a.cols, &mut out)
            .map_err(dev_err)?;
        out.to_host(&self.stream).map_err(dev_err)
    }

    fn selects_tokens(&self) -> bool {
        true
    }

    fn select_tokens(&self, logits: &mut HipTensor, select: &[TokenSelect]) -> Result<Vec<u32>> {
        self.refuse_capture("select_tokens")?;
        self.forget_q8();
        self.select_on_device(logits, select)
    }

    fn decode_select<E: From<BackendError>>(
        &self,
        graph: &mut HipDecodeGraph,
        token: u32,
        pos: usize,
        select: &TokenSelect,
        pass: impl FnMut() -> std::result::Result<HipTensor, E>,
    ) -> std::result::Result<u32, E> {
        self.decode_step(graph, token, pos, select, pass)
    }
}
