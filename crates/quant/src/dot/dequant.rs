//! Bulk row dequantization with SIMD (get_rows, GPU upload), bit-identical
//! with [`crate::dequantize`]: every element is computed with the same `f32`
//! operations in the same order (no fused multiply-add).

use crate::{Format, QuantError};

/// Dequantize `src` (whole blocks of `format`) into `dst`, like
/// [`crate::dequantize`] and with identical results, using SIMD for Q4_0,
/// Q4_1, Q8_0, Q4_K, Q6_K, F16 and BF16 when the CPU has AVX2+F16C; every
/// other format (and every other CPU) goes through [`crate::dequantize`].
pub fn dequantize_row(
    format: impl Into<Format>,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), QuantError> {
    let format = format.into();
    #[cfg(target_arch = "x86_64")]
    if let Format::Ggml(t) = format {
        if super::x86::has_avx2() && simd::supports(t) {
            let expected = crate::bytes_for(format, dst.len())?;
            if src.len() != expected {
                return Err(QuantError::ByteLength {
                    format,
                    elements: dst.len(),
                    expected,
                    actual: src.len(),
                });
            }
            // SAFETY: AVX2+FMA+F16C were detected and the lengths checked above.
            unsafe { simd::dequantize(t, src, dst) };
            return Ok(());
        }
    }
    crate::dequantize(format, src, dst)
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use crate::GgmlType;
    use std::arch::x86_64::*;

    pub(super) fn supports(t: GgmlType) -> bool {
        use GgmlType as T;
        matches!(
            t,
            T::Q4_0 | T::Q4_1 | T::Q8_0 | T::Q4_K | T::Q6_K | T::F16 | T::BF16
        )
    }

    #[inline]
    fn h2f(b: &[u8], off: usize) -> f32 {
        crate::half_util::f16_bits_to_f32(u16::from_le_bytes([b[off], b[off + 1]]))
    }

    /// 8 bytes → 8 i32 → 8 f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn u8x8_to_f32(p: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(p))
    }

    /// Store `(codes[i] as f32) * d [+ m]` for 32 unsigned codes held in `v` (bytes).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store32(v: __m256i, d: f32, m: Option<f32>, bias: f32, out: *mut f32) {
        let dv = _mm256_set1_ps(d);
        let bv = _mm256_set1_ps(bias);
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256(v, 1);
        let parts = [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)];
        for (k, p) in parts.iter().enumerate() {
            let f = _mm256_sub_ps(u8x8_to_f32(*p), bv);
            let mut r = _mm256_mul_ps(f, dv);
            if let Some(m) = m {
                r = _mm256_add_ps(r, _mm256_set1_ps(m));
            }
            _mm256_storeu_ps(out.add(8 * k), r);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let q = _mm_loadu_si128(p as *const __m128i);
        _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(q, 4), q),
            _mm256_set1_epi8(0x0F),
        )
    }

    /// # Safety
    /// AVX2+FMA+F16C available; `src`/`dst` lengths match `t`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dequantize(t: GgmlType, src: &[u8], dst: &mut [f32]) {
        use GgmlType as T;
        match t {
            T::F16 => {
                let mut i = 0;
                while i + 8 <= dst.len() {
                    let v = _mm_loadu_si128(src.as_ptr().add(2 * i) as *const __m128i);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(v));
                    i += 8;
                }
                for (j, o) in dst.iter_mut().enumerate().skip(i) {
                    *o = h2f(src, 2 * j);
                }
            }
            T::BF16 => {
                let mut i = 0;
                while i + 8 <= dst.len() {
                    let v = _mm_loadu_si128(src.as_ptr().add(2 * i) as *const __m128i);
                    let w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
                    i += 8;
                }
                for (j, o) in dst.iter_mut().enumerate().skip(i) {
                    *o = f32::from_bits(
                        (u16::from_le_bytes([src[2 * j], src[2 * j + 1]]) as u32) << 16,
                    );
                }
            }
            T::Q4_0 => {
                for (x, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
                    store32(
                        nibbles(x.as_ptr().add(2)),
                        h2f(x, 0),
                        None,
                        8.0,
                        y.as_mut_ptr(),
                    );
                }
            }
            T::Q4_1 => {
                for (x, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(32)) {
                    store32(
                        nibbles(x.as_ptr().add(4)),
                        h2f(x, 0),
                        Some(h2f(x, 2)),
                        0.0,
                        y.as_mut_ptr(),
                    );
                }
            }
            T::Q8_0 => {
                for (x, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(32)) {
                    let dv = _mm256_set1_ps(h2f(x, 0));
                    for k in 0..4 {
                        let q = _mm_loadl_epi64(x.as_ptr().add(2 + 8 * k) as *const __m128i);
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                        _mm256_storeu_ps(y.as_mut_ptr().add(8 * k), _mm256_mul_ps(f, dv));
                    }
                }
            }
            T::Q4_K => {
                for (x, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(256)) {
                    let d = h2f(x, 0);
                    let dmin = h2f(x, 2);
                    let (sc, m) = super::super::scalar::k4_scales_mins(&x[4..16]);
                    for c in 0..4 {
                        let q = _mm256_loadu_si256(x.as_ptr().add(16 + 32 * c) as *const __m256i);
                        let m4 = _mm256_set1_epi8(0x0F);
                        let lo = _mm256_and_si256(q, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        for (half, v) in [(0, lo), (1, hi)] {
                            let s = 2 * c + half;
                            let d1 = d * sc[s] as f32;
                            let m1 = dmin * m[s] as f32;
                            let out = y.as_mut_ptr().add(64 * c + 32 * half);
                            let d1v = _mm256_set1_ps(d1);
                            let m1v = _mm256_set1_ps(m1);
                            let l = _mm256_castsi256_si128(v);
                            let h = _mm256_extracti128_si256(v, 1);
                            for (k, p) in [l, _mm_srli_si128(l, 8), h, _mm_srli_si128(h, 8)]
                                .iter()
                                .enumerate()
                            {
                                let r = _mm256_sub_ps(_mm256_mul_ps(d1v, u8x8_to_f32(*p)), m1v);
                                _mm256_storeu_ps(out.add(8 * k), r);
                            }
                        }
                    }
                }
            }
            T::Q6_K => {
                for (x, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(256)) {
                    let d = h2f(x, 208);
                    for e0 in (0..256).step_by(8) {
                        // 8 codes of one 16-element group, gathered with scalar bit ops.
                        let mut codes = [0i32; 8];
                        for (k, c) in codes.iter_mut().enumerate() {
                            let e = e0 + k;
                            let (h, r) = (e / 128, e % 128);
                            let (quarter, l) = (r / 32, r % 32);
                            let lo = x[64 * h + l + 32 * (quarter % 2)];
                            let lo = if quarter < 2 { lo & 0xF } else { lo >> 4 };
                            let hi = (x[128 + 32 * h + l] >> (2 * quarter)) & 3;
                            *c = (lo | (hi << 4)) as i32 - 32;
                        }
                        let s = d * (x[192 + e0 / 16] as i8) as f32;
                        let f = _mm256_cvtepi32_ps(_mm256_loadu_si256(
                            codes.as_ptr() as *const __m256i
                        ));
                        _mm256_storeu_ps(
                            y.as_mut_ptr().add(e0),
                            _mm256_mul_ps(_mm256_set1_ps(s), f),
                        );
                    }
                }
            }
            _ => unreachable!("supports() guards the types"),
        }
    }
}
