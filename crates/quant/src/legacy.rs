//! The first ggml block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1
//! (32 elements per block).
//!
//! Dequantizers compute each `f32` with the same operations, in the same
//! order and types, as ggml's `dequantize_row_*`, so results are bit-identical.
//! Quantizers follow ggml's `quantize_row_*_ref` the same way, including the
//! C conversions of out-of-range floats as x86-64 performs them.
//!
//! ggml has no dequantizer for Q8_1 (it is an activation format only); ours
//! returns `d * q` and ignores the stored sum.

use crate::half_util::{c_trunc_i32, fp16};
use crate::kernels::FormatKernels;
use crate::{Format, GgmlType};
use bytemuck::{Pod, Zeroable};
use half::f16;
use std::mem::size_of;

/// Elements per block of every format in this module.
pub const QK: usize = 32;

/// Q4_0: `x = d * (q - 8)` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Block scale.
    pub d: f16,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high nibble.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// Q4_1: `x = d * q + m` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Block scale.
    pub d: f16,
    /// Block minimum.
    pub m: f16,
    /// Nibbles, laid out as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// Q5_0: `x = d * (q - 16)` with 5-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Block scale.
    pub d: f16,
    /// Bit 4 of element `j` is bit `j` of this little-endian `u32`.
    pub qh: [u8; 4],
    /// Low 4 bits, laid out as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// Q5_1: `x = d * q + m` with 5-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Block scale.
    pub d: f16,
    /// Block minimum.
    pub m: f16,
    /// Bit 4 of element `j` is bit `j` of this little-endian `u32`.
    pub qh: [u8; 4],
    /// Low 4 bits, laid out as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// Q8_0: `x = d * q` with signed 8-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Block scale.
    pub d: f16,
    /// Quants, in element order.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Q8_1: Q8_0 plus `s = d * Σq`, the activation format paired with Q4_1 and Q5_1.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_1 {
    /// Block scale.
    pub d: f16,
    /// `d * sum(qs)`, rounded to f16.
    pub s: f16,
    /// Quants, in element order.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

/// The index and value of the element with the largest magnitude (the first
/// one on ties), or `(0.0, 0.0)`-like zeros when all are zero: ggml's
/// `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` scan.
#[inline]
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// ggml's `min`/`max` scan starting from `±FLT_MAX`.
#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `d ? 1.0f/d : 0.0f`.
#[inline]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// ggml's `MAX(amax, fabsf(v))` over the block (NaN handling included).
#[inline]
fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |amax, v| {
        let a = v.abs();
        if amax > a {
            amax
        } else {
            a
        }
    })
}

/// `(int8_t)f` as x86-64 C code computes it.
#[inline]
fn c_i8(v: f32) -> i8 {
    c_trunc_i32(v) as i8
}

impl BlockQ4_0 {
    /// Dequantize this block into 32 values.
    pub fn to_f32(&self, y: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = (i32::from(q & 0x0f) - 8) as f32 * d;
            y[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }

    /// ggml's `quantize_row_q4_0_ref` for one block.
    pub fn from_f32(x: &[f32; QK]) -> Self {
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let q0 = c_i8(x[j] * id + 8.5).min(15) as u8;
            let q1 = c_i8(x[j + 16] * id + 8.5).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
        Self { d: fp16(d), qs }
    }
}

impl BlockQ4_1 {
    /// Dequantize this block into 32 values.
    pub fn to_f32(&self, y: &mut [f32; QK]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = f32::from(q & 0x0f) * d + m;
            y[j + 16] = f32::from(q >> 4) * d + m;
        }
    }

    /// ggml's `quantize_row_q4_1_ref` for one block.
    pub fn from_f32(x: &[f32; QK]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let q0 = c_i8((x[j] - min) * id + 0.5).min(15) as u8;
            let q1 = c_i8((x[j + 16] - min) * id + 0.5).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
        Self {
            d: fp16(d),
            m: fp16(min),
            qs,
        }
    }
}

/// Pack 32 five-bit codes into (`qh`, `qs`).
#[inline]
fn pack5(codes: &[u8; QK]) -> ([u8; 4], [u8; QK / 2]) {
    let mut qh = 0u32;
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        let (a, b) = (codes[j], codes[j + 16]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        qh |= u32::from((a & 0x10) >> 4) << j;
        qh |= u32::from((b & 0x10) >> 4) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

/// The 32 five-bit codes of a Q5 block.
#[inline]
fn unpack5(qh: [u8; 4], qs: &[u8; QK / 2]) -> [u8; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut codes = [0u8; QK];
    for (j, &q) in qs.iter().enumerate() {
        codes[j] = (q & 0x0f) | ((((qh >> j) << 4) & 0x10) as u8);
        codes[j + 16] = (q >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
    }
    codes
}

impl BlockQ5_0 {
    /// Dequantize this block into 32 values.
    pub fn to_f32(&self, y: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (y, &c) in y.iter_mut().zip(unpack5(self.qh, &self.qs).iter()) {
            *y = (i32::from(c) - 16) as f32 * d;
        }
    }

    /// ggml's `quantize_row_q5_0_ref` for one block.
    pub fn from_f32(x: &[f32; QK]) -> Self {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        let mut codes = [0u8; QK];
        for (c, &v) in codes.iter_mut().zip(x.iter()) {
            *c = c_i8(v * id + 16.5).min(31) as u8;
        }
        let (qh, qs) = pack5(&codes);
        Self { d: fp16(d), qh, qs }
    }
}

impl BlockQ5_1 {
    /// Dequantize this block into 32 values.
    pub fn to_f32(&self, y: &mut [f32; QK]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (y, &c) in y.iter_mut().zip(unpack5(self.qh, &self.qs).iter()) {
            *y = f32::from(c) * d + m;
        }
    }

    /// ggml's `quantize_row_q5_1_ref` for one block.
    pub fn from_f32(x: &[f32; QK]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let mut codes = [0u8; QK];
        for (c, &v) in codes.iter_mut().zip(x.iter()) {
            // ggml converts straight to uint8_t here, without clamping.
            *c = c_trunc_i32((v - min) * id + 0.5) as u8;
        }
        let (qh, qs) = pack5(&codes);
        Self {
            d: fp16(d),
            m: fp16(min),
            qh,
            qs,
        }
    }
}

/// Scale and codes shared by Q8_0 and Q8_1: `d = amax / 127`, `q = roundf(x / d)`.
#[inline]
fn q8_codes(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let d = abs_max(x) / 127.0;
    let id = inverse(d);
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x.iter()) {
        *q = c_i8((v * id).round());
    }
    (d, qs)
}

impl BlockQ8_0 {
    /// Dequantize this block into 32 values.
    pub fn to_f32(&self, y: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (y, &q) in y.iter_mut().zip(self.qs.iter()) {
            *y = f32::from(q) * d;
        }
    }

    /// ggml's `quantize_row_q8_0_ref` for one block.
    pub fn from_f32(x: &[f32; QK]) -> Self {
        let (d, qs) = q8_codes(x);
        Self { d: fp16(d), qs }
    }
}

impl BlockQ8_1 {
    /// Dequantize this block into 32 values (`d * q`; ggml defines no Q8_1 dequantizer).
    pub fn to_f32(&self, y: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (y, &q) in y.iter_mut().zip(self.qs.iter()) {
            *y = f32::from(q) * d;
        }
    }

    /// ggml's `quantize_row_q8_1_ref` for one block.
    pub fn from_f32(x: &[f32; QK]) -> Self {
        let (d, qs) = q8_codes(x);
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        Self {
            d: fp16(d),
            s: fp16(sum as f32 * d),
            qs,
        }
    }
}

/// Quantize `src` to Q8_0 blocks (ggml's `quantize_row_q8_0_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    quantize_row(src, dst, BlockQ8_0::from_f32);
}

/// Quantize `src` to Q8_1 blocks (ggml's `quantize_row_q8_1_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    quantize_row(src, dst, BlockQ8_1::from_f32);
}

/// Applies a per-block quantizer over a row of typed blocks.
pub(crate) fn quantize_row<B, const N: usize>(
    src: &[f32],
    dst: &mut [B],
    f: impl Fn(&[f32; N]) -> B,
) {
    assert_eq!(
        src.len(),
        N * dst.len(),
        "quantize_row: {} values do not fill {} blocks of {N}",
        src.len(),
        dst.len()
    );
    for (x, b) in src.chunks_exact(N).zip(dst.iter_mut()) {
        *b = f(x.try_into().expect("chunk of N"));
    }
}

/// Dequantizes whole blocks of `B` (read unaligned from `src`) with `f`.
pub(crate) fn dequantize_blocks<B: Pod, const N: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn(&B, &mut [f32; N]),
) {
    for (b, y) in src
        .chunks_exact(size_of::<B>())
        .zip(dst.chunks_exact_mut(N))
    {
        let block: B = bytemuck::pod_read_unaligned(b);
        f(&block, y.try_into().expect("chunk of N"));
    }
}

/// Quantizes whole blocks of `N` values into `B` bytes with `f`.
pub(crate) fn quantize_blocks<B: Pod, const N: usize>(
    src: &[f32],
    dst: &mut [u8],
    f: impl Fn(&[f32; N]) -> B,
) {
    for (x, out) in src
        .chunks_exact(N)
        .zip(dst.chunks_exact_mut(size_of::<B>()))
    {
        let block = f(x.try_into().expect("chunk of N"));
        out.copy_from_slice(bytemuck::bytes_of(&block));
    }
}

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    let Format::Ggml(t) = format else {
        return None;
    };
    let (dequantize, quantize) = match t {
        GgmlType::Q4_0 => codecs!(BlockQ4_0),
        GgmlType::Q4_1 => codecs!(BlockQ4_1),
        GgmlType::Q5_0 => codecs!(BlockQ5_0),
        GgmlType::Q5_1 => codecs!(BlockQ5_1),
        GgmlType::Q8_0 => codecs!(BlockQ8_0),
        GgmlType::Q8_1 => codecs!(BlockQ8_1),
        _ => return None,
    };
    Some(FormatKernels {
        dequantize,
        quantize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_1_sum_and_scale() {
        let x: [f32; QK] = std::array::from_fn(|i| i as f32 - 10.0);
        let b = BlockQ8_1::from_f32(&x);
        let d = 21.0f32 / 127.0;
        assert_eq!(b.d, fp16(d));
        let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
        assert_eq!(b.s, fp16(sum as f32 * d));
        assert_eq!(b.qs[31], 127);
        assert_eq!(b.qs[0], -60); // roundf(-10 * 127 / 21) = roundf(-60.476)
    }

    #[test]
    fn q4_0_all_zero_block() {
        let b = BlockQ4_0::from_f32(&[0.0; QK]);
        assert_eq!(b.d.to_bits(), 0x8000); // 0 / -8 is -0
        assert_eq!(b.qs, [0x88; 16]);
    }
}
