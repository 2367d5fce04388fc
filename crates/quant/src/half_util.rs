//! Scalar conversions shared by the float, legacy and k-quant codecs, each
//! reproducing the exact result of the ggml C expression it stands for.

use half::f16;

/// `f32` to IEEE half bits as ggml's `GGML_FP32_TO_FP16` does: round to
/// nearest even, overflow to infinity, and every NaN to the quiet NaN
/// `0x7E00` with the input's sign.
#[inline]
pub(crate) fn f32_to_f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7e00;
    }
    f16::from_f32(x).to_bits()
}

/// `f32` to `f16` with ggml's rounding and NaN rule (see [`f32_to_f16_bits`]).
#[inline]
pub(crate) fn fp16(x: f32) -> f16 {
    f16::from_bits(f32_to_f16_bits(x))
}

/// IEEE half bits to `f32` (exact). NaNs come out quiet with their payload,
/// as the F16C instruction (used by ggml's CPU backend and by the SIMD paths
/// of this crate) and the `half` crate produce them.
#[inline]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let em = u32::from(h & 0x7fff);
    if em >= 0x7c00 {
        // infinity or NaN (made quiet): all-ones exponent, mantissa moved up
        let quiet = if em > 0x7c00 { 0x0040_0000 } else { 0 };
        f32::from_bits(sign | 0x7f80_0000 | quiet | ((em & 0x03ff) << 13))
    } else if em >= 0x0400 {
        // normal: rebias the exponent from 15 to 127
        f32::from_bits(sign | ((em << 13) + ((127 - 15) << 23)))
    } else {
        // zero or subnormal: mantissa · 2^-24, exact in f32
        f32::from_bits(sign | (em as f32 * (1.0 / 16_777_216.0)).to_bits())
    }
}

/// `f32` to bfloat16 bits as `ggml_compute_fp32_to_bf16`: NaNs keep their top
/// 16 bits with the quiet bit forced on; everything else rounds to nearest even.
#[inline]
pub(crate) fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bfloat16 bits to `f32` (exact).
#[inline]
pub(crate) fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// ggml's `nearest_int`: add 1.5·2²³ so the float adder rounds to nearest
/// even, then read the integer from the mantissa bits. Reproduced bit for
/// bit, so out-of-range inputs (which ggml only asserts against in debug
/// builds) give the same value ggml's release build gives.
#[inline]
pub(crate) fn nearest_int(v: f32) -> i32 {
    let t = v + 12_582_912.0;
    (t.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// A C float-to-integer conversion as x86-64 executes it (`cvttss2si`):
/// truncation toward zero, and `i32::MIN` for NaN and out-of-range values.
/// Narrowing casts in ggml (`(int8_t)f`, `(uint8_t)f`) keep the low byte of this.
#[inline]
pub(crate) fn c_trunc_i32(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-3.7), -4);
        assert_eq!(nearest_int(127.49), 127);
    }

    #[test]
    fn fp16_nan_is_ggml_canonical() {
        assert_eq!(f32_to_f16_bits(f32::NAN), 0x7e00);
        assert_eq!(f32_to_f16_bits(-f32::NAN), 0xfe00);
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
        assert_eq!(f32_to_f16_bits(65519.0), 0x7bff);
        // smallest subnormal half is 2^-24; half of it ties to even (zero)
        assert_eq!(f32_to_f16_bits(2f32.powi(-25)), 0);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25) * 1.0001), 1);
    }

    #[test]
    fn f16_decode_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let ours = f16_bits_to_f32(h);
            let reference = f16::from_bits(h).to_f32();
            assert_eq!(ours.to_bits(), reference.to_bits(), "{h:#06x}");
        }
    }

    #[test]
    fn bf16_rounding_and_nan() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie to even
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f7f_ffff)), 0x7f80);
    }

    #[test]
    fn c_trunc_matches_x86() {
        assert_eq!(c_trunc_i32(8.99), 8);
        assert_eq!(c_trunc_i32(-0.99), 0);
        assert_eq!(c_trunc_i32(f32::NAN), i32::MIN);
        assert_eq!(c_trunc_i32(f32::INFINITY), i32::MIN);
        assert_eq!(c_trunc_i32(3e9), i32::MIN);
    }
}
