//! The KV cache: per layer, K and V as `[head][position][dim]`, in `f32` or
//! `f16` (ggml's default cache type).

use std::ops::Range;

use backend_core::{BackendError, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;
use half::vec::HalfBitsVecExt;

use crate::tensor::CpuTensor;

/// Element type of the cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// IEEE half, as llama.cpp's default cache (values are rounded when stored,
    /// queries are rounded to f16 as ggml does before `K·q`).
    #[default]
    F16,
    /// Full precision.
    F32,
}

/// Storage of one of K or V for one layer.
pub(crate) enum KvData {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvData {
    fn new(ty: KvType, n: usize) -> KvData {
        match ty {
            KvType::F32 => KvData::F32(vec![0.0; n]),
            // Zeroed through the allocator (`calloc`: untouched pages cost
            // nothing) rather than written element by element: a
            // 4096-position cache of a small model is ~100 MB per sequence.
            KvType::F16 => KvData::F16(vec![0u16; n].reinterpret_into()),
        }
    }

    fn store(&mut self, at: usize, src: &[f32]) {
        match self {
            KvData::F32(d) => d[at..at + src.len()].copy_from_slice(src),
            KvData::F16(d) => f32_to_f16(src, &mut d[at..at + src.len()]),
        }
    }

    /// Ask the cache for the values `range` (a hint; no effect on results).
    pub(crate) fn prefetch(&self, range: Range<usize>) {
        let (ptr, len) = match self {
            KvData::F32(d) => {
                let v = &d[range];
                (v.as_ptr() as *const u8, std::mem::size_of_val(v))
            }
            KvData::F16(d) => {
                let v = &d[range];
                (v.as_ptr() as *const u8, std::mem::size_of_val(v))
            }
        };
        // SAFETY: the `len` bytes at `ptr` are those of the elements
        // `range` (bounds checked by the indexing above), plain numbers
        // without padding, borrowed from `self` for this call.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        crate::simd::prefetch_lines(bytes);
    }

    /// Values `range` as `f32`, borrowed when stored as `f32`, else
    /// converted into `scratch`.
    pub(crate) fn read<'a>(&'a self, range: Range<usize>, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        match self {
            KvData::F32(d) => &d[range],
            KvData::F16(d) => {
                scratch.resize(range.len(), 0.0);
                f16_to_f32(&d[range], scratch);
                scratch
            }
        }
    }
}

/// `dst[i] = f32(src[i])` (exact): sixteen at a time with AVX-512 F where
/// the CPU has it (`half`'s slice conversion goes eight at a time through
/// a call per chunk), else through `half`.
fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: equal lengths (asserted); the CPU has AVX-512 F.
        unsafe { f16_to_f32_avx512(src, dst) };
        return;
    }
    src.convert_to_f32_slice(dst);
}

/// `dst[i] = f16(src[i])`, rounded to nearest even as `half` (which uses
/// the same F16C instruction): sixteen at a time with AVX-512 F where the
/// CPU has it, else through `half`.
fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: equal lengths (asserted); the CPU has AVX-512 F.
        unsafe { f32_to_f16_avx512(src, dst) };
        return;
    }
    dst.convert_from_f32_slice(src);
}

/// [`f32_to_f16`] with `vcvtps2ph` on zmm registers; the tail through
/// `half`.
///
/// # Safety
/// `src.len() == dst.len()`; the CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f32_to_f16_avx512(src: &[f32], dst: &mut [f16]) {
    use std::arch::x86_64::*;
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: `i + 16 ≤ n ≤ len` of both slices.
        unsafe {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
        }
    }
    dst[n..].convert_from_f32_slice(&src[n..]);
}

/// [`f16_to_f32`] with `vcvtph2ps` on zmm registers; the tail through
/// `half`.
///
/// # Safety
/// `src.len() == dst.len()`; the CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f16_to_f32_avx512(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: `i + 16 ≤ n ≤ len` of both slices.
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
        }
    }
    src[n..].convert_to_f32_slice(&mut dst[n..]);
}

/// K and V of one layer.
pub(crate) struct LayerKv {
    pub k: KvData,
    pub v: KvData,
}

/// Keys and values of one sequence, every layer.
pub struct CpuKvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) n_ctx: usize,
    pub(crate) n_head_kv: usize,
    pub(crate) head_dim: usize,
    pub(crate) ty: KvType,
}

impl std::fmt::Debug for CpuKvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuKvCache")
            .field("layers", &self.layers.len())
            .field("n_ctx", &self.n_ctx)
            .field("n_head_kv", &self.n_head_kv)
            .field("head_dim", &self.head_dim)
            .field("ty", &self.ty)
            .finish()
    }
}

impl CpuKvCache {
    /// A zeroed cache.
    pub(crate) fn new(
        ty: KvType,
        n_layers: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<CpuKvCache> {
        let per = n_ctx
            .checked_mul(n_head_kv)
            .and_then(|v| v.checked_mul(head_dim))
            .filter(|&v| v.checked_mul(4 * 2 * n_layers.max(1)).is_some())
            .ok_or_else(|| BackendError::OutOfMemory {
                bytes: usize::MAX,
                detail: format!(
                    "KV cache of {n_layers} layers x {n_ctx} positions x {n_head_kv} x {head_dim}"
                ),
            })?;
        let layers = (0..n_layers)
            .map(|_| LayerKv {
                k: KvData::new(ty, per),
                v: KvData::new(ty, per),
            })
            .collect();
        Ok(CpuKvCache {
            layers,
            n_ctx,
            n_head_kv,
            head_dim,
            ty,
        })
    }

    /// Positions the cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The cached element type.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Store rows `rows` of `k`/`v` at positions `start_pos..` of `layer`.
    pub(crate) fn store(
        &mut self,
        layer: usize,
        k: &CpuTensor,
        v: &CpuTensor,
        rows: Range<usize>,
        start_pos: usize,
    ) -> Result<()> {
        let kv_dim = self.n_head_kv * self.head_dim;
        let err = |detail: String| BackendError::Shape {
            op: "kv_store",
            detail,
        };
        if layer >= self.layers.len() {
            return Err(err(format!("layer {layer} of {}", self.layers.len())));
        }
        for (what, t) in [("k", k), ("v", v)] {
            if t.cols() != kv_dim || rows.end > t.rows() || rows.start > rows.end {
                return Err(err(format!(
                    "{what} is {} x {}, rows {rows:?}, cache rows have {kv_dim} values",
                    t.rows(),
                    t.cols()
                )));
            }
        }
        let n = rows.len();
        if n == 0 {
            return Ok(());
        }
        if start_pos + n > self.n_ctx {
            return Err(BackendError::ContextOverflow {
                pos: start_pos + n - 1,
                n_ctx: self.n_ctx,
            });
        }
        let (hd, n_ctx) = (self.head_dim, self.n_ctx);
        let l = &mut self.layers[layer];
        for (i, r) in rows.enumerate() {
            let pos = start_pos + i;
            for h in 0..self.n_head_kv {
                let at = (h * n_ctx + pos) * hd;
                l.k.store(at, &k.row(r)[h * hd..(h + 1) * hd]);
                l.v.store(at, &v.row(r)[h * hd..(h + 1) * hd]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 conversion equals `half`'s for every f16 bit pattern
    /// (NaNs as NaN), at lengths with and without a tail.
    #[test]
    fn f16_conversion_is_exact() {
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        for len in [all.len(), 16, 15, 33, 1, 0] {
            let src = &all[all.len() - len..];
            let mut got = vec![0.0f32; len];
            f16_to_f32(src, &mut got);
            for (h, g) in src.iter().zip(&got) {
                let want = h.to_f32();
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{:#06x}: {g} vs {want}",
                    h.to_bits()
                );
            }
        }
    }

    /// The AVX-512 rounding equals `half`'s, bit for bit, on values around
    /// every f16 (halfway points, overflow, subnormals, signs, NaN, ±∞), at
    /// lengths with and without a tail.
    #[test]
    fn f32_to_f16_rounds_like_half() {
        let mut src = Vec::new();
        for bits in (0..=u16::MAX).step_by(3) {
            let v = f16::from_bits(bits).to_f32();
            let b = v.to_bits();
            src.extend([
                v,
                f32::from_bits(b.wrapping_add(1)),
                f32::from_bits(b | 0x1000),
            ]);
        }
        src.extend([
            65520.0,
            65519.99,
            -65520.0,
            1e-8,
            -1e-8,
            f32::NAN,
            f32::INFINITY,
        ]);
        for len in [src.len(), 16, 15, 33, 1, 0] {
            let s = &src[src.len() - len..];
            let mut got = vec![f16::ZERO; len];
            f32_to_f16(s, &mut got);
            for (x, g) in s.iter().zip(&got) {
                let want = f16::from_f32(*x);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{x:e}: {:#06x} vs {:#06x}",
                    g.to_bits(),
                    want.to_bits()
                );
            }
        }
    }

    #[test]
    fn new_caches_read_as_zero() {
        for ty in [KvType::F16, KvType::F32] {
            let c = CpuKvCache::new(ty, 2, 16, 2, 8).unwrap();
            let mut scratch = Vec::new();
            for l in &c.layers {
                assert!(l.k.read(0..256, &mut scratch).iter().all(|&x| x == 0.0));
                assert!(l.v.read(0..256, &mut scratch).iter().all(|&x| x == 0.0));
            }
        }
    }
}
