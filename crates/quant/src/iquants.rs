//! I-quants: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS.
//!
//! Dequantizers follow ggml's `dequantize_row_iq*` (ggml-quants.c) operation
//! for operation, so every `f32` they produce is bit-identical with ggml's:
//! the scale products are formed in the same order and with the same types.
//! Only IQ4_NL has a reference quantizer here (`quantize_row_iq4_nl_ref`);
//! the other i-quants need an importance matrix and grid searches that ggml
//! does not expose as a reference path.

use crate::grids::{
    IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS, KVALUES_IQ4NL,
};
use crate::kernels::FormatKernels;
use crate::{Format, GgmlType};
use bytemuck::{Pod, Zeroable};
use half::f16;
use std::mem::size_of;

const QK_K: usize = 256;

/// IQ2_XXS: 2.0625 bits per weight. Per 32 elements: four 8-bit grid indices
/// and one `u32` holding four 7-bit sign indices and a 4-bit scale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2Xxs {
    /// Super-block scale.
    pub d: f16,
    /// Grid indices, signs and scales, as 32 little-endian `u16`.
    pub qs: [u16; QK_K / 8],
}
const _: () = assert!(size_of::<BlockIq2Xxs>() == 66);

/// IQ2_XS: 2.3125 bits per weight. Each `u16` is a 9-bit grid index and a
/// 7-bit sign index; 4-bit scales per 16 elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2Xs {
    /// Super-block scale.
    pub d: f16,
    /// 9-bit grid index | 7-bit sign index << 9.
    pub qs: [u16; QK_K / 8],
    /// Two 4-bit scales per 32 elements.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(size_of::<BlockIq2Xs>() == 74);

/// IQ2_S: 2.5625 bits per weight. 10-bit grid indices, explicit sign bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2S {
    /// Super-block scale.
    pub d: f16,
    /// 32 low bytes of the grid indices, then 32 sign bytes.
    pub qs: [u8; QK_K / 4],
    /// Bits 8..9 of the grid indices, 2 bits per group of 8.
    pub qh: [u8; QK_K / 32],
    /// Two 4-bit scales per 32 elements.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(size_of::<BlockIq2S>() == 82);

/// IQ3_XXS: 3.0625 bits per weight. 8-bit indices into a grid of 4-element
/// points, then per 32 elements a `u32` of four 7-bit sign indices and a 4-bit scale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq3Xxs {
    /// Super-block scale.
    pub d: f16,
    /// 64 grid indices, then 8 little-endian `u32` of signs and scales.
    pub qs: [u8; 3 * QK_K / 8],
}
const _: () = assert!(size_of::<BlockIq3Xxs>() == 98);

/// IQ3_S: 3.4375 bits per weight. 9-bit grid indices, explicit sign bits,
/// 4-bit odd scales per 32 elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq3S {
    /// Super-block scale.
    pub d: f16,
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 4],
    /// Bit 8 of the grid indices.
    pub qh: [u8; QK_K / 32],
    /// One sign bit per element.
    pub signs: [u8; QK_K / 8],
    /// Two 4-bit scales per 64 elements.
    pub scales: [u8; QK_K / 64],
}
const _: () = assert!(size_of::<BlockIq3S>() == 110);

/// IQ1_S: 1.5625 bits per weight. 11-bit indices into a grid of ternary
/// points, a 3-bit scale and a delta sign per 32 elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq1S {
    /// Super-block scale.
    pub d: f16,
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// Per 32 elements: 4 × 3 high index bits, 3-bit scale (bits 12..14), delta sign (bit 15).
    pub qh: [u16; QK_K / 32],
}
const _: () = assert!(size_of::<BlockIq1S>() == 50);

/// IQ1_M: 1.75 bits per weight. Like IQ1_S with per-8 delta signs, 3-bit
/// scales per 16 elements, and the f16 super-block scale spread over the top
/// nibbles of the four scale words.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq1M {
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// Per group of 8: 3 high index bits and the delta sign (bit 3), two groups per byte.
    pub qh: [u8; QK_K / 16],
    /// Four little-endian `u16`: 3-bit scales in bits 0..11, f16 scale nibbles in bits 12..15.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(size_of::<BlockIq1M>() == 56);

/// IQ4_NL: 32 elements, an f16 scale and 4-bit indices into [`KVALUES_IQ4NL`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq4Nl {
    /// Block scale.
    pub d: f16,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high nibble.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockIq4Nl>() == 18);

/// IQ4_XS: 256 elements, 4.25 bits per weight: IQ4_NL codes with 6-bit
/// sub-block scales per 32 elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq4Xs {
    /// Super-block scale.
    pub d: f16,
    /// High 2 bits of the eight 6-bit scales.
    pub scales_h: u16,
    /// Low 4 bits of the eight 6-bit scales.
    pub scales_l: [u8; QK_K / 64],
    /// Codes, 32 elements per 16 bytes as in IQ4_NL.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockIq4Xs>() == 136);

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    let Format::Ggml(t) = format else {
        return None;
    };
    let (dequantize, quantize): (
        crate::kernels::DequantizeFn,
        Option<crate::kernels::QuantizeFn>,
    ) = match t {
        GgmlType::IQ2_XXS => (dequantize_iq2_xxs, None),
        GgmlType::IQ2_XS => (dequantize_iq2_xs, None),
        GgmlType::IQ2_S => (dequantize_iq2_s, None),
        GgmlType::IQ3_XXS => (dequantize_iq3_xxs, None),
        GgmlType::IQ3_S => (dequantize_iq3_s, None),
        GgmlType::IQ1_S => (dequantize_iq1_s, None),
        GgmlType::IQ1_M => (dequantize_iq1_m, None),
        GgmlType::IQ4_NL => (dequantize_iq4_nl, Some(quantize_iq4_nl)),
        GgmlType::IQ4_XS => (dequantize_iq4_xs, None),
        _ => return None,
    };
    Some(FormatKernels {
        dequantize,
        quantize,
    })
}

/// Little-endian field readers over a block's bytes.
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16_at(b, at)).to_f32()
}
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Runs `f` on each (block bytes, block output) pair.
pub(crate) fn per_block<const BYTES: usize, const ELEMS: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn(&[u8], &mut [f32]),
) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(ELEMS)) {
        f(b, y);
    }
}

/// `±1.0` as ggml writes it: `signs & kmask_iq2xs[j] ? -1.f : 1.f`.
#[inline]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// Byte `j` of a grid point.
#[inline]
fn gbyte64(g: u64, j: usize) -> f32 {
    f32::from((g >> (8 * j)) as u8)
}
#[inline]
fn gbyte32(g: u32, j: usize) -> f32 {
    f32::from((g >> (8 * j)) as u8)
}

fn dequantize_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    per_block::<66, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for ib32 in 0..8 {
            let at = 2 + 8 * ib32;
            let aux1 = u32_at(b, at + 4);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for l in 0..4 {
                let grid = IQ2XXS_GRID[b[at + l] as usize];
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                for j in 0..8 {
                    y[32 * ib32 + 8 * l + j] = db * gbyte64(grid, j) * sign(signs, j);
                }
            }
        }
    });
}

fn dequantize_iq2_xs(src: &[u8], dst: &mut [f32]) {
    per_block::<74, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for ib32 in 0..8 {
            let sc = b[66 + ib32];
            let db = [
                d * (0.5 + f32::from(sc & 0xf)) * 0.25,
                d * (0.5 + f32::from(sc >> 4)) * 0.25,
            ];
            for l in 0..4 {
                let q = u16_at(b, 2 + 2 * (4 * ib32 + l));
                let grid = IQ2XS_GRID[(q & 511) as usize];
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                for j in 0..8 {
                    y[32 * ib32 + 8 * l + j] = db[l / 2] * gbyte64(grid, j) * sign(signs, j);
                }
            }
        }
    });
}

fn dequantize_iq2_s(src: &[u8], dst: &mut [f32]) {
    per_block::<82, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
        for ib32 in 0..8 {
            let sc = scales[ib32];
            let db = [
                d * (0.5 + f32::from(sc & 0xf)) * 0.25,
                d * (0.5 + f32::from(sc >> 4)) * 0.25,
            ];
            for l in 0..4 {
                let idx = usize::from(qs[4 * ib32 + l])
                    | ((usize::from(qh[ib32]) << (8 - 2 * l)) & 0x300);
                let grid = IQ2S_GRID[idx];
                let s = signs[4 * ib32 + l];
                for j in 0..8 {
                    y[32 * ib32 + 8 * l + j] = db[l / 2] * gbyte64(grid, j) * sign(s, j);
                }
            }
        }
    });
}

fn dequantize_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    per_block::<98, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qs = &b[2..66];
        for ib32 in 0..8 {
            let aux = u32_at(b, 66 + 4 * ib32);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let g1 = IQ3XXS_GRID[qs[8 * ib32 + 2 * l] as usize];
                let g2 = IQ3XXS_GRID[qs[8 * ib32 + 2 * l + 1] as usize];
                let o = 32 * ib32 + 8 * l;
                for j in 0..4 {
                    y[o + j] = db * gbyte32(g1, j) * sign(signs, j);
                    y[o + j + 4] = db * gbyte32(g2, j) * sign(signs, j + 4);
                }
            }
        }
    });
}

fn dequantize_iq3_s(src: &[u8], dst: &mut [f32]) {
    per_block::<110, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
        for ib32 in 0..8 {
            let sc = scales[ib32 / 2];
            let ls = if ib32 % 2 == 0 { sc & 0xf } else { sc >> 4 };
            let db = d * (1 + 2 * i32::from(ls)) as f32;
            let h = u32::from(qh[ib32]);
            for l in 0..4 {
                let q1 = u32::from(qs[8 * ib32 + 2 * l]) | ((h << (8 - 2 * l)) & 256);
                let q2 = u32::from(qs[8 * ib32 + 2 * l + 1]) | ((h << (7 - 2 * l)) & 256);
                let (g1, g2) = (IQ3S_GRID[q1 as usize], IQ3S_GRID[q2 as usize]);
                let s = signs[4 * ib32 + l];
                let o = 32 * ib32 + 8 * l;
                for j in 0..4 {
                    y[o + j] = db * gbyte32(g1, j) * sign(s, j);
                    y[o + j + 4] = db * gbyte32(g2, j) * sign(s, j + 4);
                }
            }
        }
    });
}

/// Signed byte `j` of an IQ1S grid point.
#[inline]
fn gsigned(g: u64, j: usize) -> f32 {
    f32::from((g >> (8 * j)) as u8 as i8)
}

fn dequantize_iq1_s(src: &[u8], dst: &mut [f32]) {
    per_block::<50, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qs = &b[2..34];
        for ib in 0..8 {
            let qh = u16_at(b, 34 + 2 * ib);
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for l in 0..4 {
                let idx = usize::from(qs[4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
                let grid = IQ1S_GRID[idx];
                for j in 0..8 {
                    y[32 * ib + 8 * l + j] = dl * (gsigned(grid, j) + delta);
                }
            }
        }
    });
}

fn dequantize_iq1_m(src: &[u8], dst: &mut [f32]) {
    per_block::<56, QK_K>(src, dst, |b, y| {
        let (qs, qh) = (&b[0..32], &b[32..48]);
        let sc = [u16_at(b, 48), u16_at(b, 50), u16_at(b, 52), u16_at(b, 54)];
        let d_bits =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let d = f16::from_bits(d_bits).to_f32();
        for ib in 0..8 {
            let s = sc[ib / 2];
            let sh = 6 * (ib % 2);
            let dl1 = d * (2 * ((s >> sh) & 7) + 1) as f32;
            let dl2 = d * (2 * ((s >> (sh + 3)) & 7) + 1) as f32;
            let (h0, h1) = (usize::from(qh[2 * ib]), usize::from(qh[2 * ib + 1]));
            let idx = [
                usize::from(qs[4 * ib]) | ((h0 << 8) & 0x700),
                usize::from(qs[4 * ib + 1]) | ((h0 << 4) & 0x700),
                usize::from(qs[4 * ib + 2]) | ((h1 << 8) & 0x700),
                usize::from(qs[4 * ib + 3]) | ((h1 << 4) & 0x700),
            ];
            let delta = |h: usize, bit: usize| {
                if h & bit != 0 {
                    -IQ1S_DELTA
                } else {
                    IQ1S_DELTA
                }
            };
            let deltas = [
                delta(h0, 0x08),
                delta(h0, 0x80),
                delta(h1, 0x08),
                delta(h1, 0x80),
            ];
            for l in 0..4 {
                let dl = if l < 2 { dl1 } else { dl2 };
                let grid = IQ1S_GRID[idx[l]];
                for j in 0..8 {
                    y[32 * ib + 8 * l + j] = dl * (gsigned(grid, j) + deltas[l]);
                }
            }
        }
    });
}

fn dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) {
    per_block::<18, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0xf)]);
            y[j + 16] = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
        }
    });
}

fn dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) {
    per_block::<136, QK_K>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let scales_h = u16_at(b, 2);
        for ib in 0..8 {
            let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf;
            let hi = ((scales_h >> (2 * ib)) & 3) as u8;
            let ls = i32::from(lo | (hi << 4));
            let dl = d * (ls - 32) as f32;
            let qs = &b[8 + 16 * ib..8 + 16 * ib + 16];
            for j in 0..16 {
                y[32 * ib + j] = dl * f32::from(KVALUES_IQ4NL[usize::from(qs[j] & 0xf)]);
                y[32 * ib + j + 16] = dl * f32::from(KVALUES_IQ4NL[usize::from(qs[j] >> 4)]);
            }
        }
    });
}

/// ggml's `best_index_int8`: the level of the sorted code book `val` nearest
/// to `x`, ties going up, decided exactly on doubled values by binary search.
pub(crate) fn best_index_int8(val: &[i8; 16], x: f32) -> usize {
    let x2 = x + x;
    let mut idx = 0;
    let mut step = 8;
    while step > 0 {
        let j = idx + step;
        if x2 >= (i32::from(val[j - 1]) + i32::from(val[j])) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx
}

/// IQ4_NL reference quantizer: ggml's `quantize_row_iq4_nl_ref`, i.e.
/// `quantize_row_iq4_nl_impl` with no importance weights and `ntry = -1`.
fn quantize_iq4_nl(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(32).zip(dst.chunks_exact_mut(18)) {
        iq4_nl_block(x, out, -1);
    }
}

/// One IQ4_NL block by ggml's `quantize_row_iq4_nl_impl` (32-element super
/// block, weights `x²`). `ntry = -1` is the reference path: codes picked at
/// `d = max / -127`, `d` refitted by least squares, codes kept. `ntry > 0`
/// (what `llama-quantize` runs without an importance matrix, `ntry = 7`) also
/// tries the scales `(itry - 127) / max` for `itry` in `-ntry..=ntry` and then
/// re-picks every code for the chosen scale.
fn iq4_nl_block(x: &[f32], out: &mut [u8], ntry: i32) {
    const GROUP_MAX_EPS: f32 = 1e-15;
    let values = &KVALUES_IQ4NL;
    let v0 = f32::from(values[0]);
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    // Σ w·q·x and Σ w·q² for the codes nearest to `id * x`, in ggml's order.
    let fit = |id: f32, codes: &mut [u8; 32]| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for (j, &v) in x.iter().enumerate() {
            let l = best_index_int8(values, id * v);
            codes[j] = l as u8;
            let q = f32::from(values[l]);
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let mut codes = [0u8; 32];
    let scale = if amax < GROUP_MAX_EPS {
        0.0
    } else {
        let d = if ntry > 0 { -max / v0 } else { max / v0 };
        let (sumqx, sumq2) = fit(1.0 / d, &mut codes);
        let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        let mut scratch = [0u8; 32];
        for itry in -ntry..=ntry {
            let id = (itry + i32::from(values[0])) as f32 / max;
            let (sumqx, sumq2) = fit(id, &mut scratch);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        d
    };
    if ntry > 0 {
        let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = best_index_int8(values, id * v) as u8;
        }
    }
    out[..2].copy_from_slice(&f16::from_f32(scale).to_bits().to_le_bytes());
    for j in 0..16 {
        out[2 + j] = codes[j] | (codes[j + 16] << 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_index_picks_nearest_and_ties_up() {
        let v = &KVALUES_IQ4NL;
        assert_eq!(best_index_int8(v, -1000.0), 0);
        assert_eq!(best_index_int8(v, 1000.0), 15);
        assert_eq!(best_index_int8(v, 1.0), 8);
        // midpoint of -10 and 1 is -4.5: ties go to the upper level
        assert_eq!(best_index_int8(v, -4.5), 8);
        assert_eq!(best_index_int8(v, -4.6), 7);
    }

    /// The shared IQ4_NL machinery against bytes written by llama.cpp's
    /// `llama-quantize --pure … IQ4_NL` (its no-imatrix path is `ntry = 7`);
    /// see `tests/data/README.md`.
    #[test]
    fn iq4_nl_search_path_matches_llama_quantize() {
        let input = include_bytes!("../tests/data/llamacpp-input.f32");
        let reference = include_bytes!("../tests/data/llamacpp-iq4_nl.bin");
        let x: Vec<f32> = input
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(x.len() / 32 * 18, reference.len());
        for (i, (xb, rb)) in x.chunks(32).zip(reference.chunks(18)).enumerate() {
            let mut out = [0u8; 18];
            iq4_nl_block(xb, &mut out, 7);
            assert_eq!(&out[..], rb, "block {i}");
        }
    }

    #[test]
    fn iq4_nl_round_trip_of_exact_levels() {
        // values that are exactly d * level quantize back to themselves
        let x: Vec<f32> = (0..32)
            .map(|i| f32::from(KVALUES_IQ4NL[i % 16]) * 0.5)
            .collect();
        let mut q = [0u8; 18];
        quantize_iq4_nl(&x, &mut q);
        let mut y = [0f32; 32];
        dequantize_iq4_nl(&q, &mut y);
        assert_eq!(x, y);
    }
}
