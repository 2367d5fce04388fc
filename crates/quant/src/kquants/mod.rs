//! K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, on 256-element
//! super-blocks.
//!
//! Dequantizers compute each `f32` with the same operations, in the same
//! order and types, as ggml's `dequantize_row_q*_K`, so results are
//! bit-identical. Quantizers follow `quantize_row_q*_K_ref` (no importance
//! matrix) the same way; their scale searches live in [`search`].

// Index loops mirror ggml's block layouts element for element.
#![allow(clippy::needless_range_loop)]

mod search;

use crate::half_util::{fp16, nearest_int};
use crate::kernels::FormatKernels;
use crate::legacy::quantize_row;
use crate::{Format, GgmlType};
use bytemuck::{Pod, Zeroable};
use half::f16;
use search::{make_q3_quants, make_qkx2_quants, make_qx_quants, Sweep, GROUP_MAX_EPS};
use std::mem::size_of;

/// Elements per super-block.
pub const QK_K: usize = 256;

/// Q2_K: 16 sub-blocks of 16 with 4-bit scale and min each;
/// `x = d·sc·q - dmin·m` with 2-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Per sub-block: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants: byte `32h + l` holds elements `128h + l + 32s` at bits `2s`.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);

/// Q3_K: 16 sub-blocks of 16 with signed 6-bit scales; `x = d·(sc-32)·(q-4)`
/// with 3-bit `q` (2 low bits in `qs`, the high bit in `hmask`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bit of element `e` at byte `e % 32`, bit `e / 32`.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits, laid out as Q2_K's `qs`.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales: low nibbles in bytes 0..8, high 2-bit pairs in bytes 8..12.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);

/// Q4_K: 8 sub-blocks of 32 with 6-bit scale and min each;
/// `x = d·sc·q - dmin·m` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Eight 6-bit scales and mins, packed as ggml's `get_scale_min_k4` reads them.
    pub scales: [u8; 12],
    /// Nibbles: byte `32c + l` holds element `64c + l` (low) and `64c + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// Q5_K: Q4_K with a fifth bit per element in `qh`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Scales and mins, packed as in [`BlockQ4K`].
    pub scales: [u8; 12],
    /// Bit 4 of element `64c + l` at byte `l`, bit `2c`; of `64c + 32 + l` at bit `2c + 1`.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as in [`BlockQ4K`].
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; `x = d·sc·(q-32)`
/// with 6-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits: byte `64h + l` holds elements `128h + l` (low nibble) and
    /// `128h + 64 + l` (high); byte `64h + 32 + l` holds `+32` and `+96`.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits: byte `32h + l`, bits `2s`, for element `128h + 32s + l`.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

/// Q8_K: the activation format of k-quant dot products. `x = d·q`, with an
/// `f32` scale and the sums of each 16 quants.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ8K {
    /// Scale (negative when the largest-magnitude element is positive, as in ggml).
    pub d: f32,
    /// Quants, in element order.
    pub qs: [i8; QK_K],
    /// `bsums[j]` is the sum of `qs[16j..16j + 16]`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// Scale and min of sub-block `j` of a Q4_K/Q5_K scale array (ggml's `get_scale_min_k4`).
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Pack eight 6-bit scales and mins the way [`scale_min_k4`] reads them.
fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
    q
}

/// The sixteen signed scales of a Q3_K block (`stored - 32`).
#[inline]
pub fn q3k_scales(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// Pack 2-bit codes `l[0..256]` as Q2_K/Q3_K `qs`.
fn pack2(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for h in 0..2 {
        for i in 0..32 {
            let e = 128 * h + i;
            qs[32 * h + i] = l[e] | (l[e + 32] << 2) | (l[e + 64] << 4) | (l[e + 96] << 6);
        }
    }
    qs
}

impl BlockQ2K {
    /// Dequantize this super-block into 256 values.
    pub fn to_f32(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        // sub-block `sb` = 8h + 2s + k: bits 2s of qs[32h + 16k ..][..16]
        for (sb, ys) in y.chunks_exact_mut(16).enumerate() {
            let sc = self.scales[sb];
            let dl = d * f32::from(sc & 0x0f);
            let ml = min * f32::from(sc >> 4);
            let (h, s, k) = (sb / 8, (sb / 2) % 4, sb % 2);
            let q = &self.qs[32 * h + 16 * k..32 * h + 16 * k + 16];
            for (v, &b) in ys.iter_mut().zip(q) {
                *v = dl * f32::from((b >> (2 * s)) & 3) - ml;
            }
        }
    }

    /// ggml's `quantize_row_q2_K_ref` for one super-block.
    pub fn from_f32(x: &[f32; QK_K]) -> Self {
        const Q4SCALE: f32 = 15.0;
        let sweep = Sweep {
            rmin: -0.5,
            rdelta: 0.1,
            nstep: 15,
            use_mad: true,
        };
        let mut codes = [0u8; QK_K];
        let mut aux = [0u8; 16];
        let mut scales = [0f32; 16];
        let mut mins = [0f32; 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            let weights: [f32; 16] = std::array::from_fn(|l| xs[l].abs());
            let (s, m) = make_qkx2_quants(
                3,
                xs,
                &weights,
                &mut codes[16 * j..16 * j + 16],
                &mut aux,
                &sweep,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let mut b = Self::zeroed();
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..16 {
                b.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            b.d = fp16(max_scale / Q4SCALE);
        } else {
            b.d = fp16(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..16 {
                b.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            b.dmin = fp16(max_min / Q4SCALE);
        } else {
            b.dmin = fp16(0.0);
        }
        let (df, mf) = (b.d.to_f32(), b.dmin.to_f32());
        for j in 0..16 {
            let d = df * f32::from(b.scales[j] & 0x0f);
            if d == 0.0 {
                continue;
            }
            let dm = mf * f32::from(b.scales[j] >> 4);
            for i in 16 * j..16 * j + 16 {
                codes[i] = nearest_int((x[i] + dm) / d).clamp(0, 3) as u8;
            }
        }
        b.qs = pack2(&codes);
        b
    }
}

impl BlockQ3K {
    /// Dequantize this super-block into 256 values.
    pub fn to_f32(&self, y: &mut [f32; QK_K]) {
        let d_all = self.d.to_f32();
        let scales = q3k_scales(&self.scales);
        for (sb, ys) in y.chunks_exact_mut(16).enumerate() {
            let dl = d_all * f32::from(scales[sb]);
            let (h, s, k) = (sb / 8, (sb / 2) % 4, sb % 2);
            let q = &self.qs[32 * h + 16 * k..32 * h + 16 * k + 16];
            let hm = &self.hmask[16 * k..16 * k + 16];
            let bit = 1u8 << (4 * h + s);
            for ((v, &b), &m) in ys.iter_mut().zip(q).zip(hm) {
                let low = i32::from((b >> (2 * s)) & 3);
                let q = low - if m & bit != 0 { 0 } else { 4 };
                *v = dl * q as f32;
            }
        }
    }

    /// ggml's `quantize_row_q3_K_ref` for one super-block.
    pub fn from_f32(x: &[f32; QK_K]) -> Self {
        let mut codes = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut codes[16 * j..16 * j + 16]);
            let a = scales[j].abs();
            if a > amax {
                amax = a;
                max_scale = scales[j];
            }
        }
        let mut b = Self::zeroed();
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                let l = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
                if j < 8 {
                    b.scales[j] = (l & 0x0f) as u8;
                } else {
                    b.scales[j - 8] |= ((l & 0x0f) << 4) as u8;
                }
                b.scales[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
            }
            b.d = fp16(1.0 / iscale);
        } else {
            b.d = fp16(0.0);
        }
        let df = b.d.to_f32();
        let sc = q3k_scales(&b.scales);
        for j in 0..16 {
            let d = df * f32::from(sc[j]);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                codes[i] = (nearest_int(x[i] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        let mut low = [0u8; QK_K];
        for (e, (&c, l)) in codes.iter().zip(low.iter_mut()).enumerate() {
            let mut c = c as u8;
            if c > 3 {
                b.hmask[e % 32] |= 1 << (e / 32);
                c -= 4;
            }
            *l = c;
        }
        b.qs = pack2(&low);
        b
    }
}

/// Shared by Q4_K and Q5_K: per 32-element sub-block asymmetric searches,
/// 6-bit quantized scales and mins, then the requantized codes.
fn quantize_k4_k5(x: &[f32; QK_K], nmax: i32, sweep: &Sweep) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut codes = [0u8; QK_K];
    let mut aux = [0u8; 32];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|l| av_x + xs[l].abs());
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut codes[32 * j..32 * j + 32],
            &mut aux,
            sweep,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = fp16(max_scale / 63.0);
    let dmin = fp16(max_min / 63.0);
    let (df, mf) = (d.to_f32(), dmin.to_f32());
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = df * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = mf * f32::from(m);
        for i in 32 * j..32 * j + 32 {
            codes[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, codes)
}

impl BlockQ4K {
    /// Dequantize this super-block into 256 values.
    pub fn to_f32(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let q = &self.qs[32 * c..32 * c + 32];
            for (l, &b) in q.iter().enumerate() {
                y[64 * c + l] = d1 * f32::from(b & 0x0f) - m1;
                y[64 * c + 32 + l] = d2 * f32::from(b >> 4) - m2;
            }
        }
    }

    /// ggml's `quantize_row_q4_K_ref` for one super-block.
    pub fn from_f32(x: &[f32; QK_K]) -> Self {
        let sweep = Sweep {
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
            use_mad: false,
        };
        let (d, dmin, scales, codes) = quantize_k4_k5(x, 15, &sweep);
        let mut qs = [0u8; QK_K / 2];
        for c in 0..4 {
            for l in 0..32 {
                qs[32 * c + l] = codes[64 * c + l] | (codes[64 * c + 32 + l] << 4);
            }
        }
        Self {
            d,
            dmin,
            scales,
            qs,
        }
    }
}

impl BlockQ5K {
    /// Dequantize this super-block into 256 values.
    pub fn to_f32(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let q = &self.qs[32 * c..32 * c + 32];
            for (l, &b) in q.iter().enumerate() {
                let h = self.qh[l];
                let lo = (b & 0x0f) + if h & u1 != 0 { 16 } else { 0 };
                let hi = (b >> 4) + if h & u2 != 0 { 16 } else { 0 };
                y[64 * c + l] = d1 * f32::from(lo) - m1;
                y[64 * c + 32 + l] = d2 * f32::from(hi) - m2;
            }
        }
    }

    /// ggml's `quantize_row_q5_K_ref` for one super-block.
    pub fn from_f32(x: &[f32; QK_K]) -> Self {
        let sweep = Sweep {
            rmin: -0.5,
            rdelta: 0.1,
            nstep: 15,
            use_mad: false,
        };
        let (d, dmin, scales, codes) = quantize_k4_k5(x, 31, &sweep);
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for c in 0..4 {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for l in 0..32 {
                let mut l1 = codes[64 * c + l];
                if l1 > 15 {
                    l1 -= 16;
                    qh[l] |= m1;
                }
                let mut l2 = codes[64 * c + 32 + l];
                if l2 > 15 {
                    l2 -= 16;
                    qh[l] |= m2;
                }
                qs[32 * c + l] = l1 | (l2 << 4);
            }
        }
        Self {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }
}

impl BlockQ6K {
    /// Dequantize this super-block into 256 values.
    pub fn to_f32(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        for h in 0..2 {
            let ql = &self.ql[64 * h..64 * h + 64];
            let qh = &self.qh[32 * h..32 * h + 32];
            let sc = &self.scales[8 * h..8 * h + 8];
            let y = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                y[l] = d * f32::from(sc[is]) * f32::from(q1);
                y[l + 32] = d * f32::from(sc[is + 2]) * f32::from(q2);
                y[l + 64] = d * f32::from(sc[is + 4]) * f32::from(q3);
                y[l + 96] = d * f32::from(sc[is + 6]) * f32::from(q4);
            }
        }
    }

    /// ggml's `quantize_row_q6_K_ref` for one super-block.
    pub fn from_f32(x: &[f32; QK_K]) -> Self {
        let mut codes = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            let s = make_qx_quants(
                32,
                &x[16 * ib..16 * ib + 16],
                &mut codes[16 * ib..16 * ib + 16],
            );
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        let mut b = Self::zeroed();
        if max_abs_scale < GROUP_MAX_EPS {
            b.d = fp16(0.0);
            return b;
        }
        let iscale = -128.0 / max_scale;
        b.d = fp16(1.0 / iscale);
        for ib in 0..16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        let df = b.d.to_f32();
        for j in 0..16 {
            let d = df * f32::from(b.scales[j]);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                codes[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        for h in 0..2 {
            for l in 0..32 {
                let e = 128 * h + l;
                let c = [codes[e], codes[e + 32], codes[e + 64], codes[e + 96]].map(|c| c as u8);
                b.ql[64 * h + l] = (c[0] & 0x0f) | ((c[2] & 0x0f) << 4);
                b.ql[64 * h + l + 32] = (c[1] & 0x0f) | ((c[3] & 0x0f) << 4);
                b.qh[32 * h + l] =
                    (c[0] >> 4) | ((c[1] >> 4) << 2) | ((c[2] >> 4) << 4) | ((c[3] >> 4) << 6);
            }
        }
        b
    }
}

impl BlockQ8K {
    /// Dequantize this super-block into 256 values.
    pub fn to_f32(&self, y: &mut [f32; QK_K]) {
        for (v, &q) in y.iter_mut().zip(self.qs.iter()) {
            *v = self.d * f32::from(q);
        }
    }

    /// ggml's `quantize_row_q8_K_ref` for one super-block: `d = max / -127`
    /// where `max` is the element of largest magnitude, `q = nearest(x / d)`
    /// capped at 127, plus the 16-element sums. An all-zero block gets
    /// `d = 0`, zero quants and zero sums (ggml leaves the sums unwritten).
    pub fn from_f32(x: &[f32; QK_K]) -> Self {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let mut b = Self::zeroed();
        if amax == 0.0 {
            return b;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x.iter()) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| i32::from(v)).sum::<i32>() as i16;
        }
        b.d = 1.0 / iscale;
        b
    }
}

/// Quantize `src` to Q8_K blocks (ggml's `quantize_row_q8_K_ref`).
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    quantize_row(src, dst, BlockQ8K::from_f32);
}

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    let Format::Ggml(t) = format else {
        return None;
    };
    let (dequantize, quantize) = match t {
        GgmlType::Q2_K => codecs!(BlockQ2K),
        GgmlType::Q3_K => codecs!(BlockQ3K),
        GgmlType::Q4_K => codecs!(BlockQ4K),
        GgmlType::Q5_K => codecs!(BlockQ5K),
        GgmlType::Q6_K => codecs!(BlockQ6K),
        GgmlType::Q8_K => codecs!(BlockQ8K),
        _ => return None,
    };
    Some(FormatKernels {
        dequantize,
        quantize,
    })
}
