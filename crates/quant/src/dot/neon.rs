//! aarch64 NEON dot-product kernels (Q4_0 and Q8_0 against Q8_0), with
//! widening multiplies (`smull`) and pairwise adds, which every aarch64 CPU has.

use std::arch::aarch64::*;

use super::DotFn;
use crate::GgmlType;

/// The NEON kernel for `weight`; the caller checked that NEON is available.
pub(crate) fn kernel(weight: GgmlType) -> Option<DotFn> {
    match weight {
        GgmlType::Q4_0 => Some(|x, y| {
            // SAFETY: handed out only after NEON detection; `VecDotKernel`
            // validated that `x` holds whole Q4_0 blocks and `y` the Q8_0 bytes.
            unsafe { q4_0(x.len() / 18, x.as_ptr(), y.as_ptr()) }
        }),
        GgmlType::Q8_0 => Some(|x, y| {
            // SAFETY: as above, for Q8_0 weight blocks.
            unsafe { q8_0(x.len() / 34, x.as_ptr(), y.as_ptr()) }
        }),
        _ => None,
    }
}

#[inline]
fn h2f(p: *const u8) -> f32 {
    // SAFETY: callers pass a pointer to two readable bytes inside a block.
    let bits = unsafe { (p as *const u16).read_unaligned() };
    half::f16::from_bits(bits).to_f32()
}

/// Σ a[i]·b[i] over 16 signed bytes, as four i32 partial sums.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot16(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi))
}

/// Q4_0 · Q8_0 over `nb` blocks.
#[target_feature(enable = "neon")]
unsafe fn q4_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let m4 = vdupq_n_u8(0x0F);
    let s8 = vdupq_n_s8(8);
    let mut acc = [vdupq_n_f32(0.0); 2];
    for i in 0..nb {
        let xb = x.add(18 * i);
        let yb = y.add(34 * i);
        let q = vld1q_u8(xb.add(2));
        let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), s8);
        let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), s8);
        let y0 = vld1q_s8(yb.add(2) as *const i8);
        let y1 = vld1q_s8(yb.add(18) as *const i8);
        let s = vaddq_s32(dot16(lo, y0), dot16(hi, y1));
        let d = h2f(xb) * h2f(yb);
        acc[i & 1] = vmlaq_n_f32(acc[i & 1], vcvtq_f32_s32(s), d);
    }
    vaddvq_f32(vaddq_f32(acc[0], acc[1]))
}

/// Q8_0 · Q8_0 over `nb` blocks.
#[target_feature(enable = "neon")]
unsafe fn q8_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 2];
    for i in 0..nb {
        let xb = x.add(34 * i);
        let yb = y.add(34 * i);
        let x0 = vld1q_s8(xb.add(2) as *const i8);
        let x1 = vld1q_s8(xb.add(18) as *const i8);
        let y0 = vld1q_s8(yb.add(2) as *const i8);
        let y1 = vld1q_s8(yb.add(18) as *const i8);
        let s = vaddq_s32(dot16(x0, y0), dot16(x1, y1));
        let d = h2f(xb) * h2f(yb);
        acc[i & 1] = vmlaq_n_f32(acc[i & 1], vcvtq_f32_s32(s), d);
    }
    vaddvq_f32(vaddq_f32(acc[0], acc[1]))
}
