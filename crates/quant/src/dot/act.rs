//! Activation quantization (`f32` row → Q8_0 / Q8_1 / Q8_K) with SIMD,
//! byte-for-byte equal to this crate's reference quantizers.
//!
//! The SIMD paths reproduce the reference arithmetic exactly: the same
//! `f32` divisions for the scale, multiplication by its inverse, rounding
//! half away from zero (Q8_0/Q8_1) or to nearest even through the
//! `+ 12582912` trick (Q8_K), and C's truncating conversion to `int8_t`.
//! Blocks that contain a NaN go through the scalar reference, whose NaN
//! handling depends on element order.

use crate::{Format, GgmlType, QuantError};

/// Quantize one activation row `src` into `dst` in `act_type` (the format a
/// [`super::VecDotKernel`] asks for). `dst.len()` must be exactly the bytes
/// `src.len()` elements take. F32/F16/BF16 and every other format the crate
/// quantizes are accepted; Q8_0, Q8_1 and Q8_K use SIMD where available.
pub fn quantize_activations(
    act_type: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), QuantError> {
    let format = Format::Ggml(act_type);
    let expected = crate::bytes_for(format, src.len())?;
    if dst.len() != expected {
        return Err(QuantError::ByteLength {
            format,
            elements: src.len(),
            expected,
            actual: dst.len(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    if super::x86::has_avx2() {
        match act_type {
            GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8_K => {
                // SAFETY: AVX2+FMA+F16C were detected; lengths were checked above.
                unsafe { simd::quantize(act_type, src, dst) };
                return Ok(());
            }
            _ => {}
        }
    }
    if act_type == GgmlType::F32 {
        for (o, v) in dst.chunks_exact_mut(4).zip(src) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        return Ok(());
    }
    crate::quantize(format, src, dst)
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use crate::{Format, GgmlType};
    use std::arch::x86_64::*;

    /// Quantize with the reference quantizer (the fallback for blocks with NaNs).
    fn reference(act_type: GgmlType, src: &[f32], dst: &mut [u8]) {
        // Lengths were validated by the caller; the reference cannot fail then.
        let _ = crate::quantize(Format::Ggml(act_type), src, dst);
    }

    /// # Safety
    /// AVX2+FMA+F16C must be available; `dst` must have exactly the bytes
    /// `src.len()` elements take in `t`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize(t: GgmlType, src: &[f32], dst: &mut [u8]) {
        match t {
            GgmlType::Q8_K => {
                for (x, y) in src.chunks_exact(256).zip(dst.chunks_exact_mut(292)) {
                    q8_k_block(x, y);
                }
            }
            _ => {
                let (bs, q0) = if t == GgmlType::Q8_1 {
                    (36, 4)
                } else {
                    (34, 2)
                };
                for (x, y) in src.chunks_exact(32).zip(dst.chunks_exact_mut(bs)) {
                    q8_block(t, x, y, q0);
                }
            }
        }
    }

    /// Whether any lane of the 8-float vectors at `x` is NaN; and the max |x|.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn absmax_nan(x: &[f32]) -> (f32, bool) {
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        let mut nan = _mm256_setzero_ps();
        for c in x.chunks_exact(8) {
            let v = _mm256_loadu_ps(c.as_ptr());
            m = _mm256_max_ps(_mm256_andnot_ps(sign, v), m);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        let s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        (_mm_cvtss_f32(s), _mm256_movemask_ps(nan) != 0)
    }

    /// The low bytes of four i32x8 vectors, in element order (C's `(int8_t)` truncation).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn low_bytes(v: [__m256i; 4]) -> __m256i {
        let m = _mm256_set1_epi32(0xFF);
        let a = _mm256_packus_epi32(_mm256_and_si256(v[0], m), _mm256_and_si256(v[1], m));
        let b = _mm256_packus_epi32(_mm256_and_si256(v[2], m), _mm256_and_si256(v[3], m));
        let p = _mm256_packus_epi16(a, b);
        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_block(t: GgmlType, x: &[f32], y: &mut [u8], q0: usize) {
        let (amax, nan) = absmax_nan(x);
        if nan {
            reference(t, x, y);
            return;
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let idv = _mm256_set1_ps(id);
        let sign = _mm256_set1_ps(-0.0);
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        let mut q = [_mm256_setzero_si256(); 4];
        for (k, qk) in q.iter_mut().enumerate() {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(8 * k)), idv);
            // round half away from zero: trunc, then step by ±1 when |frac| ≥ 0.5.
            let tr = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, tr));
            let step = _mm256_or_ps(one, _mm256_and_ps(sign, v));
            let r = _mm256_add_ps(
                tr,
                _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), step),
            );
            *qk = _mm256_cvttps_epi32(r);
        }
        let bytes = low_bytes(q);
        _mm256_storeu_si256(y.as_mut_ptr().add(q0) as *mut __m256i, bytes);
        y[0..2].copy_from_slice(&crate::half_util::f32_to_f16_bits(d).to_le_bytes());
        if t == GgmlType::Q8_1 {
            // Σ of the stored int8 codes (sign-extended), as the reference sums them.
            let codes = _mm256_loadu_si256(y.as_ptr().add(q0) as *const __m256i);
            let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(codes));
            let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(codes, 1));
            let ones = _mm256_set1_epi16(1);
            let s = _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
            let sum = hsum_i32(s);
            y[2..4]
                .copy_from_slice(&crate::half_util::f32_to_f16_bits(sum as f32 * d).to_le_bytes());
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_k_block(x: &[f32], y: &mut [u8]) {
        let (amax, nan) = absmax_nan(x);
        if nan {
            reference(GgmlType::Q8_K, x, y);
            return;
        }
        if amax == 0.0 {
            y.fill(0);
            return;
        }
        // The first element with the largest magnitude, with its sign.
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0f32 / max;
        let isv = _mm256_set1_ps(iscale);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007f_ffff);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let cap = _mm256_set1_epi32(127);
        let ones = _mm256_set1_epi16(1);
        let mut bsums = [0i16; 16];
        for c in 0..8 {
            let mut q = [_mm256_setzero_si256(); 4];
            for (k, qk) in q.iter_mut().enumerate() {
                let v = _mm256_mul_ps(isv, _mm256_loadu_ps(x.as_ptr().add(32 * c + 8 * k)));
                let b = _mm256_castps_si256(_mm256_add_ps(v, magic));
                let n = _mm256_sub_epi32(_mm256_and_si256(b, mant), bias);
                *qk = _mm256_min_epi32(n, cap);
            }
            let bytes = low_bytes(q);
            _mm256_storeu_si256(y.as_mut_ptr().add(4 + 32 * c) as *mut __m256i, bytes);
            let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(bytes));
            let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bytes, 1));
            bsums[2 * c] = hsum_i32(_mm256_madd_epi16(lo, ones)) as i16;
            bsums[2 * c + 1] = hsum_i32(_mm256_madd_epi16(hi, ones)) as i16;
        }
        y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for (o, s) in y[260..292].chunks_exact_mut(2).zip(bsums) {
            o.copy_from_slice(&s.to_le_bytes());
        }
    }
}
