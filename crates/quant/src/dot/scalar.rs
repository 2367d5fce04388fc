//! Scalar reference dot products. They follow ggml's per-block arithmetic:
//! integer products summed per block (or sub-block), then scaled in `f32`,
//! so results stay close to ggml's and serve as the reference for SIMD.
//!
//! Types without a hand-written kernel here (the grid i-quants, ternary and
//! NVFP4) use [`dequantized`]: dequantize both rows with this crate's
//! bit-exact codecs and sum in `f64`. That is slow but exact up to rounding.

use super::DotFn;
use crate::{Format, GgmlType};

/// Read an IEEE half at `off`.
#[inline]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Read a little-endian f32 at `off`.
#[inline]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Read a little-endian i16 at `off`.
#[inline]
fn i16_at(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}

/// The value of an E8M0 scale, halved (MXFP4 code values are stored doubled).
#[inline]
pub(crate) fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// The 6-bit scales and mins of a Q4_K/Q5_K super-block (`s` = its 12 scale bytes).
#[inline]
pub(crate) fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, m)
}

/// The 16 signed 6-bit scales of a Q3_K super-block (`s` = its 12 scale bytes).
#[inline]
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((low | (high << 4)) as i8) - 32;
    }
    out
}

/// The IQ4_XS scale (already minus 32) of sub-block `ib` of block `b`.
#[inline]
pub(crate) fn iq4xs_scale(b: &[u8], ib: usize) -> i32 {
    let h = u16::from_le_bytes([b[2], b[3]]);
    let l = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF;
    (l as i32 | (((h >> (2 * ib)) & 3) as i32) << 4) - 32
}

/// The reference kernel for `weight`, if this crate can compute its dot product.
pub(crate) fn kernel(weight: GgmlType) -> Option<DotFn> {
    use GgmlType as T;
    Some(match weight {
        T::F32 => dot_f32,
        T::F16 => dot_f16,
        T::BF16 => dot_bf16,
        T::Q4_0 => q4_0,
        T::Q4_1 => q4_1,
        T::Q5_0 => q5_0,
        T::Q5_1 => q5_1,
        T::Q8_0 => q8_0,
        T::IQ4_NL => iq4_nl,
        T::MXFP4 => mxfp4,
        T::Q1_0 => q1_0,
        T::Q2_K => q2_k,
        T::Q3_K => q3_k,
        T::Q4_K => q4_k,
        T::Q5_K => q5_k,
        T::Q6_K => q6_k,
        T::IQ4_XS => iq4_xs,
        T::NVFP4
        | T::IQ2_XXS
        | T::IQ2_XS
        | T::IQ2_S
        | T::IQ3_XXS
        | T::IQ3_S
        | T::IQ1_S
        | T::IQ1_M
        | T::TQ1_0
        | T::TQ2_0
            if crate::can_dequantize(weight) =>
        {
            dequantized_kernel(weight)
        }
        _ => return None,
    })
}

fn dequantized_kernel(weight: GgmlType) -> DotFn {
    use GgmlType as T;
    match weight {
        T::NVFP4 => |w, a| dequantized(T::NVFP4, w, a),
        T::IQ2_XXS => |w, a| dequantized(T::IQ2_XXS, w, a),
        T::IQ2_XS => |w, a| dequantized(T::IQ2_XS, w, a),
        T::IQ2_S => |w, a| dequantized(T::IQ2_S, w, a),
        T::IQ3_XXS => |w, a| dequantized(T::IQ3_XXS, w, a),
        T::IQ3_S => |w, a| dequantized(T::IQ3_S, w, a),
        T::IQ1_S => |w, a| dequantized(T::IQ1_S, w, a),
        T::IQ1_M => |w, a| dequantized(T::IQ1_M, w, a),
        T::TQ1_0 => |w, a| dequantized(T::TQ1_0, w, a),
        _ => |w, a| dequantized(T::TQ2_0, w, a),
    }
}

/// Dequantize both rows with the bit-exact codecs and sum the products in f64.
fn dequantized(weight: GgmlType, w: &[u8], a: &[u8]) -> f32 {
    let n = w.len() / weight.type_size() * weight.block_size();
    let act = super::activation_type(weight).unwrap_or(GgmlType::Q8_K);
    let mut wf = vec![0f32; n];
    let mut af = vec![0f32; n];
    if crate::dequantize(Format::Ggml(weight), w, &mut wf).is_err()
        || crate::dequantize(Format::Ggml(act), a, &mut af).is_err()
    {
        return f32::NAN;
    }
    wf.iter()
        .zip(&af)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum::<f64>() as f32
}

fn dot_f32(w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0f64;
    for (x, y) in w.chunks_exact(4).zip(a.chunks_exact(4)) {
        s += (f32_at(x, 0) * f32_at(y, 0)) as f64;
    }
    s as f32
}

fn dot_f16(w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0f64;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)) {
        s += (f16_at(x, 0) * f16_at(y, 0)) as f64;
    }
    s as f32
}

fn bf16_at(b: &[u8]) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
}

fn dot_bf16(w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0f64;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)) {
        s += (bf16_at(x) * bf16_at(y)) as f64;
    }
    s as f32
}

/// Q8_0 block: f16 scale, 32 × i8.
const Q8_0: usize = 34;
/// Q8_1 block: f16 scale, f16 scale·Σq, 32 × i8.
const Q8_1: usize = 36;
/// Q8_K block: f32 scale, 256 × i8, 16 × i16 sums of 16.
const Q8_K: usize = 292;

/// Shared body of the 32-element formats with 4-bit codes paired with Q8_0:
/// `code(b, j)` returns element j (0..32) of block `b` as an integer.
#[inline]
fn blocks32_q8_0(
    w: &[u8],
    a: &[u8],
    bs: usize,
    scale: impl Fn(&[u8]) -> f32,
    code: impl Fn(&[u8], usize) -> i32,
) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(bs).zip(a.chunks_exact(Q8_0)) {
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += code(x, j) * (y[2 + j] as i8) as i32;
        }
        sumf += sumi as f32 * (scale(x) * f16_at(y, 0));
    }
    sumf
}

#[inline]
fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < 16 {
        qs[j] & 0xF
    } else {
        qs[j - 16] >> 4
    }
}

#[inline]
fn q5_high(qh: &[u8], j: usize) -> u8 {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    (((h >> j) & 1) << 4) as u8
}

fn q4_0(w: &[u8], a: &[u8]) -> f32 {
    blocks32_q8_0(
        w,
        a,
        18,
        |x| f16_at(x, 0),
        |x, j| nibble(&x[2..], j) as i32 - 8,
    )
}

fn q5_0(w: &[u8], a: &[u8]) -> f32 {
    blocks32_q8_0(
        w,
        a,
        22,
        |x| f16_at(x, 0),
        |x, j| (nibble(&x[6..], j) | q5_high(&x[2..], j)) as i32 - 16,
    )
}

fn q8_0(w: &[u8], a: &[u8]) -> f32 {
    blocks32_q8_0(w, a, Q8_0, |x| f16_at(x, 0), |x, j| (x[2 + j] as i8) as i32)
}

fn iq4_nl(w: &[u8], a: &[u8]) -> f32 {
    let t = &crate::grids::KVALUES_IQ4NL;
    blocks32_q8_0(
        w,
        a,
        18,
        |x| f16_at(x, 0),
        |x, j| t[nibble(&x[2..], j) as usize] as i32,
    )
}

fn mxfp4(w: &[u8], a: &[u8]) -> f32 {
    let t = &crate::grids::KVALUES_MXFP4;
    blocks32_q8_0(
        w,
        a,
        17,
        |x| e8m0_half(x[0]),
        |x, j| t[nibble(&x[1..], j) as usize] as i32,
    )
}

/// Q4_1/Q5_1 against Q8_1: `d·dy·Σq·y + m·sy`.
#[inline]
fn blocks32_q8_1(w: &[u8], a: &[u8], bs: usize, code: impl Fn(&[u8], usize) -> i32) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(bs).zip(a.chunks_exact(Q8_1)) {
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += code(x, j) * (y[4 + j] as i8) as i32;
        }
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

fn q4_1(w: &[u8], a: &[u8]) -> f32 {
    blocks32_q8_1(w, a, 20, |x, j| nibble(&x[4..], j) as i32)
}

fn q5_1(w: &[u8], a: &[u8]) -> f32 {
    blocks32_q8_1(w, a, 24, |x, j| {
        (nibble(&x[8..], j) | q5_high(&x[4..], j)) as i32
    })
}

/// Q1_0: 128 sign bits (1 → +1, 0 → −1) with one f16 scale, against four Q8_0 blocks.
fn q1_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (x, y4) in w.chunks_exact(18).zip(a.chunks_exact(4 * Q8_0)) {
        let mut sumi = 0f32;
        for (k, y) in y4.chunks_exact(Q8_0).enumerate() {
            let mut s = 0i32;
            for j in 0..32 {
                let bit = (x[2 + k * 4 + j / 8] >> (j % 8)) & 1;
                let q = (y[2 + j] as i8) as i32;
                s += if bit == 1 { q } else { -q };
            }
            sumi += f16_at(y, 0) * s as f32;
        }
        sumf += f16_at(x, 0) * sumi;
    }
    sumf
}

#[inline]
fn q8k(y: &[u8], j: usize) -> i32 {
    (y[4 + j] as i8) as i32
}

#[inline]
fn bsum(y: &[u8], g: usize) -> i32 {
    i16_at(y, 260 + 2 * g) as i32
}

fn q2_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(84).zip(a.chunks_exact(Q8_K)) {
        let sc = &x[0..16];
        let qs = &x[16..80];
        let mut summs = 0i32;
        for (g, &s) in sc.iter().enumerate() {
            summs += (s >> 4) as i32 * bsum(y, g);
        }
        let mut isum = 0i32;
        for e in 0..256 {
            let (h, r) = (e / 128, e % 128);
            let (shift, l) = (r / 32, r % 32);
            let q = (qs[32 * h + l] >> (2 * shift)) & 3;
            isum += (sc[e / 16] & 0xF) as i32 * q as i32 * q8k(y, e);
        }
        let yd = f32_at(y, 0);
        sumf += yd * f16_at(x, 80) * isum as f32 - yd * f16_at(x, 82) * summs as f32;
    }
    sumf
}

fn q3_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(110).zip(a.chunks_exact(Q8_K)) {
        let hmask = &x[0..32];
        let qs = &x[32..96];
        let sc = q3k_scales(&x[96..108]);
        let mut isum = 0i32;
        for e in 0..256 {
            let (h, r) = (e / 128, e % 128);
            let (shift, l) = (r / 32, r % 32);
            let low = ((qs[32 * h + l] >> (2 * shift)) & 3) as i32;
            let high = if hmask[l] & (1 << (4 * h + shift)) != 0 {
                0
            } else {
                4
            };
            isum += sc[e / 16] as i32 * (low - high) * q8k(y, e);
        }
        sumf += f16_at(x, 108) * f32_at(y, 0) * isum as f32;
    }
    sumf
}

/// Q4_K/Q5_K share the scale layout; `code(x, e)` is element e's unsigned code.
#[inline]
fn k4_like(w: &[u8], a: &[u8], bs: usize, code: impl Fn(&[u8], usize) -> i32) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(bs).zip(a.chunks_exact(Q8_K)) {
        let (sc, m) = k4_scales_mins(&x[4..16]);
        let mut sumi = 0i32;
        let mut mins = 0i32;
        for s in 0..8 {
            let mut p = 0i32;
            for e in 32 * s..32 * s + 32 {
                p += code(x, e) * q8k(y, e);
            }
            sumi += sc[s] as i32 * p;
            mins += m[s] as i32 * (bsum(y, 2 * s) + bsum(y, 2 * s + 1));
        }
        let yd = f32_at(y, 0);
        sumf += yd * f16_at(x, 0) * sumi as f32 - yd * f16_at(x, 2) * mins as f32;
    }
    sumf
}

fn q4_k(w: &[u8], a: &[u8]) -> f32 {
    k4_like(w, a, 144, |x, e| {
        let (c, r) = (e / 64, e % 64);
        let q = x[16 + 32 * c + r % 32];
        (if r < 32 { q & 0xF } else { q >> 4 }) as i32
    })
}

fn q5_k(w: &[u8], a: &[u8]) -> f32 {
    k4_like(w, a, 176, |x, e| {
        let (c, r) = (e / 64, e % 64);
        let l = r % 32;
        let q = x[48 + 32 * c + l];
        let bit = 2 * c + r / 32;
        let low = if r < 32 { q & 0xF } else { q >> 4 };
        (low | (((x[16 + l] >> bit) & 1) << 4)) as i32
    })
}

fn q6_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(Q8_K)) {
        let ql = &x[0..128];
        let qh = &x[128..192];
        let mut sumi = 0i32;
        for g in 0..16 {
            let mut p = 0i32;
            for e in 16 * g..16 * g + 16 {
                let (h, r) = (e / 128, e % 128);
                let (quarter, l) = (r / 32, r % 32);
                let lo = ql[64 * h + l + 32 * (quarter % 2)];
                let lo = if quarter < 2 { lo & 0xF } else { lo >> 4 };
                let hi = (qh[32 * h + l] >> (2 * quarter)) & 3;
                p += ((lo | (hi << 4)) as i32 - 32) * q8k(y, e);
            }
            sumi += (x[192 + g] as i8) as i32 * p;
        }
        sumf += f16_at(x, 208) * f32_at(y, 0) * sumi as f32;
    }
    sumf
}

fn iq4_xs(w: &[u8], a: &[u8]) -> f32 {
    let t = &crate::grids::KVALUES_IQ4NL;
    let mut sumf = 0f32;
    for (x, y) in w.chunks_exact(136).zip(a.chunks_exact(Q8_K)) {
        let mut sumi = 0i32;
        for ib in 0..8 {
            let qs = &x[8 + 16 * ib..8 + 16 * ib + 16];
            let mut p = 0i32;
            for j in 0..32 {
                p += t[nibble(qs, j) as usize] as i32 * q8k(y, 32 * ib + j);
            }
            sumi += iq4xs_scale(x, ib) * p;
        }
        sumf += f16_at(x, 0) * f32_at(y, 0) * sumi as f32;
    }
    sumf
}
