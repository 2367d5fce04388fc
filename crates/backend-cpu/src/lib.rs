//! `backend-cpu`: the CPU implementation of [`backend_core::Backend`].
//!
//! - Weights stay in their stored (quantized) format and are used in place
//!   from the memory-mapped model file: see [`CpuWeight`] for the lifetime
//!   rule ([`Backend::register_mapping`] the map once, then load weights).
//! - Activations are [`CpuTensor`]s, dense row-major `f32`.
//! - Every op runs on the backend's own rayon thread pool
//!   ([`CpuBackend::new`]); arithmetic follows ggml's CPU backend.
//! - Matmul: Q4_0/Q4_1/Q5_0/Q8_0 weights use this crate's SIMD kernels
//!   (4 tokens per unpacked weight block in a batch, 4 weight rows per
//!   activation block for one token); types with a SIMD `quant::dot` kernel
//!   (K-quants, IQ4, MXFP4) use it; the rest (F32, F16, Q5_1, Q2_K, Q3_K, ...)
//!   dequantize each weight row once and take f32 dots.
//!   `ROCMFORGE_CPU_KERNELS=vec_dot` forces `quant::dot` for every type (for
//!   comparisons).

#![warn(missing_docs)]

mod attention;
mod elementwise;
mod gemm;
mod kv;
mod many;
mod matmul;
mod norm;
mod rope;
mod simd;
mod sync_ptr;
mod tensor;
mod threads;
mod weight;

#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::ops::Range;
use std::sync::{Arc, RwLock};

use backend_core::{AttnSpec, Backend, BackendError, GluKind, Result, RopeSpec, WeightView};

pub use backend_core::yarn_corr_dims;
pub use elementwise::{gelu_formula, gelu_ggml, silu};
pub use kv::{CpuKvCache, KvType};
pub use rope::{rope_cache, rope_head};
pub use tensor::CpuTensor;
pub use threads::physical_cores;
pub use weight::{CpuWeight, HostMapping};

/// Element count below which ops run on the calling thread (the pool's
/// hand-off costs more than the work).
pub(crate) const PAR_MIN: usize = 1 << 15;

/// The CPU backend: a rayon thread pool plus the registered host mappings
/// that weights point into.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    kv_type: KvType,
    mappings: RwLock<Vec<HostMapping>>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("threads", &self.threads)
            .field("kv_type", &self.kv_type)
            .finish()
    }
}

impl CpuBackend {
    /// A backend with its own pool of `threads` workers (0 means
    /// [`CpuBackend::default_threads`]) and an f16 KV cache.
    pub fn new(threads: usize) -> Result<CpuBackend> {
        let threads = if threads == 0 {
            Self::default_threads()
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rocmforge-cpu-{i}"))
            .build()
            .map_err(|e| {
                BackendError::Device(format!("cannot start {threads} CPU threads: {e}"))
            })?;
        Ok(CpuBackend {
            pool,
            threads,
            kv_type: KvType::default(),
            mappings: RwLock::new(Vec::new()),
        })
    }

    /// The same backend with KV caches of element type `ty`.
    pub fn with_kv_type(mut self, ty: KvType) -> CpuBackend {
        self.kv_type = ty;
        self
    }

    /// Make the multi-token Q4_0/Q4_1/Q5_0/Q8_0 kernels use their AVX2 variant
    /// even where AVX-512 VNNI exists, process-wide (to test that path).
    #[doc(hidden)]
    pub fn force_avx2_kernels(on: bool) {
        gemm::FORCE_AVX2.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Physical cores of this machine (the default thread count).
    pub fn default_threads() -> usize {
        threads::physical_cores()
    }

    /// Worker threads of this backend.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The ISA level the hot kernels use ("avx512vnni", "avx2", "neon", "scalar").
    pub fn isa() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return "avx512vnni";
            }
            if simd::has_avx2_fma() {
                return "avx2";
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return "neon";
        }
        #[allow(unreachable_code)]
        "scalar"
    }
}

impl CpuBackend {
    /// Run `f` on the pool when `elems` is worth it, else right here (`f`
    /// then must not use rayon: ops check [`PAR_MIN`] the same way).
    fn run<R: Send>(&self, elems: usize, f: impl FnOnce() -> R + Send) -> R {
        if elems < PAR_MIN {
            f()
        } else {
            self.pool.install(f)
        }
    }
}

fn small_f32<'a>(op: &'static str, w: &'a CpuWeight) -> Result<&'a [f32]> {
    w.small_f32().ok_or_else(|| BackendError::Shape {
        op,
        detail: format!("{} must be a single row (dims {:?})", w.name(), w.dims()),
    })
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Weight = CpuWeight;
    type KvCache = CpuKvCache;
    type DecodeGraph = ();

    fn name(&self) -> String {
        format!("cpu ({}, {} threads)", Self::isa(), self.threads)
    }

    fn register_mapping(&self, mapping: Arc<dyn AsRef<[u8]> + Send + Sync>) {
        // A poisoned lock only means another registration panicked; the list
        // itself is still valid.
        let mut m = self.mappings.write().unwrap_or_else(|e| e.into_inner());
        m.push(mapping);
    }

    fn load_weight(&self, view: &WeightView<'_>) -> Result<CpuWeight> {
        let m = self.mappings.read().unwrap_or_else(|e| e.into_inner());
        CpuWeight::load(view, &m)
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<CpuTensor> {
        CpuTensor::zeros(rows, cols)
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<CpuTensor> {
        CpuTensor::from_vec(data.to_vec(), rows, cols)
    }

    fn download(&self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(t.as_slice().to_vec())
    }

    fn shape(&self, t: &CpuTensor) -> (usize, usize) {
        (t.rows(), t.cols())
    }

    fn get_rows(&self, table: &CpuWeight, ids: &[u32], out: &mut CpuTensor) -> Result<()> {
        self.run(ids.len() * table.cols(), || {
            elementwise::get_rows(table, ids, out)
        })
    }

    fn matmul(&self, w: &CpuWeight, x: &CpuTensor, out: &mut CpuTensor) -> Result<()> {
        self.pool
            .install(|| matmul::matmul(w, x, out, self.threads))
    }

    fn matmul_many(
        &self,
        x: &CpuTensor,
        ws: &[&CpuWeight],
        outs: &mut [&mut CpuTensor],
    ) -> Result<()> {
        // One token: all weights' rows in one parallel region (one wake-up
        // of the workers instead of one per weight).
        if self
            .pool
            .install(|| many::matmul_many(ws, x, outs, self.threads))?
        {
            return Ok(());
        }
        backend_core::matmul_each(self, x, ws, outs)
    }

    fn add_bias(&self, x: &mut CpuTensor, bias: &CpuWeight) -> Result<()> {
        elementwise::add_bias(x, small_f32("add_bias", bias)?)
    }

    fn rms_norm(
        &self,
        x: &CpuTensor,
        weight: Option<&CpuWeight>,
        group: usize,
        eps: f32,
        out: &mut CpuTensor,
    ) -> Result<()> {
        let w = weight.map(|w| small_f32("rms_norm", w)).transpose()?;
        self.run(x.as_slice().len(), || norm::rms_norm(x, w, group, eps, out))
    }

    fn layer_norm(
        &self,
        x: &CpuTensor,
        weight: Option<&CpuWeight>,
        bias: Option<&CpuWeight>,
        eps: f32,
        out: &mut CpuTensor,
    ) -> Result<()> {
        let w = weight.map(|w| small_f32("layer_norm", w)).transpose()?;
        let b = bias.map(|b| small_f32("layer_norm", b)).transpose()?;
        self.run(x.as_slice().len(), || norm::layer_norm(x, w, b, eps, out))
    }

    fn rope(
        &self,
        x: &mut CpuTensor,
        n_heads: usize,
        positions: &[u32],
        spec: &RopeSpec,
    ) -> Result<()> {
        self.run(x.as_slice().len(), || {
            rope::rope(x, n_heads, positions, spec)
        })
    }

    fn kv_cache(
        &self,
        n_layers: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<CpuKvCache> {
        CpuKvCache::new(self.kv_type, n_layers, n_ctx, n_head_kv, head_dim)
    }

    fn kv_store(
        &self,
        cache: &mut CpuKvCache,
        layer: usize,
        k: &CpuTensor,
        v: &CpuTensor,
        rows: Range<usize>,
        start_pos: usize,
    ) -> Result<()> {
        cache.store(layer, k, v, rows, start_pos)
    }

    fn attention(
        &self,
        q: &CpuTensor,
        cache: &CpuKvCache,
        layer: usize,
        rows: Range<usize>,
        start_pos: usize,
        spec: &AttnSpec,
        out: &mut CpuTensor,
    ) -> Result<()> {
        self.pool
            .install(|| attention::attention(q, cache, layer, rows, start_pos, spec, out))
    }

    fn attention_batch(
        &self,
        q: &CpuTensor,
        seqs: &[(&CpuKvCache, Range<usize>, usize)],
        layer: usize,
        spec: &AttnSpec,
        out: &mut CpuTensor,
    ) -> Result<()> {
        self.pool
            .install(|| attention::attention_batch(q, seqs, layer, spec, out))
    }

    fn glu(
        &self,
        gate: &CpuTensor,
        up: &CpuTensor,
        kind: GluKind,
        out: &mut CpuTensor,
    ) -> Result<()> {
        self.run(out.as_slice().len(), || {
            elementwise::glu(gate, up, kind, out)
        })
    }

    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        // Inside the pool, `install` and the small-op path run on the current
        // worker and parallel ops split over the workers without a wake-up
        // round trip through an outside thread for each of them.
        self.pool.install(f)
    }

    fn add(&self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        elementwise::add(a, b)
    }

    fn mul(&self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        elementwise::mul(a, b)
    }

    fn scale(&self, a: &mut CpuTensor, s: f32) -> Result<()> {
        a.as_mut_slice().iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    fn softmax(&self, a: &mut CpuTensor) -> Result<()> {
        self.run(a.as_slice().len(), || elementwise::softmax(a))
    }

    fn argmax(&self, a: &CpuTensor) -> Result<Vec<u32>> {
        Ok(elementwise::argmax(a))
    }
}
