//! Ternary formats: TQ1_0 (base-3 packed, 1.6875 bits per weight) and TQ2_0
//! (2 bits per weight). Each weight is `d * {-1, 0, 1}`.
//!
//! Dequantizers follow ggml's `dequantize_row_tq1_0` / `dequantize_row_tq2_0`
//! and quantizers `quantize_row_tq1_0_ref` / `quantize_row_tq2_0_ref`
//! (ggml-quants.c); gguf-py implements the same and the oracle tests compare bytes.

use crate::iquants::{f16_at, per_block};
use crate::kernels::FormatKernels;
use crate::{Format, GgmlType};
use bytemuck::{Pod, Zeroable};
use half::f16;
use std::mem::size_of;

/// TQ1_0: 256 ternary weights. `qs` holds 5 trits per byte (as a fixed-point
/// fraction `ceil(v * 256 / 243)`), `qh` 4 trits per byte, then the f16 scale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockTq1_0 {
    /// Elements 0..240: bytes 0..32 hold 5 trits each of elements `m + 32n`,
    /// bytes 32..48 hold elements `160 + m + 16n`.
    pub qs: [u8; 48],
    /// Elements 240..256: byte `j` holds elements `240 + j + 4n`, n = 0..4.
    pub qh: [u8; 4],
    /// Scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockTq1_0>() == 54);

/// TQ2_0: 256 ternary weights at 2 bits each (code `q` means `q - 1`), then the f16 scale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockTq2_0 {
    /// Byte `32c + m` holds elements `128c + 32l + m` at bits `2l..2l+2`.
    pub qs: [u8; 64],
    /// Scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockTq2_0>() == 66);

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    match format {
        Format::Ggml(GgmlType::TQ1_0) => Some(FormatKernels {
            dequantize: dequantize_tq1_0,
            quantize: Some(quantize_tq1_0),
        }),
        Format::Ggml(GgmlType::TQ2_0) => Some(FormatKernels {
            dequantize: dequantize_tq2_0,
            quantize: Some(quantize_tq2_0),
        }),
        _ => None,
    }
}

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// The trit at position `n` of a TQ1_0 byte: multiply (mod 256) to bring it
/// to the top, then take the integer part of `q * 3 / 256`.
#[inline]
fn trit(q: u8, n: usize) -> f32 {
    let q = q.wrapping_mul(POW3[n]);
    let xi = ((u16::from(q) * 3) >> 8) as i16;
    (xi - 1) as f32
}

fn dequantize_tq1_0(src: &[u8], dst: &mut [f32]) {
    per_block::<54, 256>(src, dst, |b, y| {
        let d = f16_at(b, 52);
        // trit n of every byte of a group, group by group: 32 bytes × 5, 16 × 5, 4 × 4
        let mut out = y.iter_mut();
        for (bytes, trits) in [(&b[0..32], 5), (&b[32..48], 5), (&b[48..52], 4)] {
            for n in 0..trits {
                for (&q, v) in bytes.iter().zip(out.by_ref()) {
                    *v = trit(q, n) * d;
                }
            }
        }
    });
}

fn dequantize_tq2_0(src: &[u8], dst: &mut [f32]) {
    per_block::<66, 256>(src, dst, |b, y| {
        let d = f16_at(b, 64);
        let mut o = 0;
        for c in 0..2 {
            for l in 0..4 {
                for m in 0..32 {
                    let q = (b[32 * c + m] >> (2 * l)) & 3;
                    y[o] = (i16::from(q) - 1) as f32 * d;
                    o += 1;
                }
            }
        }
    });
}

/// Scale `amax`, inverse scale, and the scale bytes, as ggml's ternary quantizers.
fn ternary_scale(x: &[f32]) -> (f32, [u8; 2]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = if amax != 0.0 { 1.0 / amax } else { 0.0 };
    (id, f16::from_f32(amax).to_bits().to_le_bytes())
}

/// `lroundf(v * id) + 1`: the code 0, 1 or 2 of one weight.
#[inline]
fn code(v: f32, id: f32) -> u8 {
    ((v * id).round() as i32 + 1) as u8
}

/// Packs up to 5 trits (most significant first) as ggml does: `ceil(v * 256 / 243)`.
#[inline]
fn pack5(q: u8) -> u8 {
    (u16::from(q) * 256).div_ceil(243) as u8
}

fn quantize_tq1_0(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(256).zip(dst.chunks_exact_mut(54)) {
        let (id, d) = ternary_scale(x);
        for m in 0..32 {
            let q = (0..5).fold(0u8, |q, n| {
                q.wrapping_mul(3).wrapping_add(code(x[m + 32 * n], id))
            });
            out[m] = pack5(q);
        }
        let x1 = &x[160..];
        for m in 0..16 {
            let q = (0..5).fold(0u8, |q, n| {
                q.wrapping_mul(3).wrapping_add(code(x1[m + 16 * n], id))
            });
            out[32 + m] = pack5(q);
        }
        let x2 = &x[240..];
        for j in 0..4 {
            let q = (0..4).fold(0u8, |q, n| {
                q.wrapping_mul(3).wrapping_add(code(x2[j + 4 * n], id))
            });
            out[48 + j] = pack5(q.wrapping_mul(3));
        }
        out[52..54].copy_from_slice(&d);
    }
}

fn quantize_tq2_0(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(256).zip(dst.chunks_exact_mut(66)) {
        let (id, d) = ternary_scale(x);
        for c in 0..2 {
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    q |= (code(x[128 * c + m + 32 * n], id) & 3) << (2 * n);
                }
                out[32 * c + m] = q;
            }
        }
        out[64..66].copy_from_slice(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternary_round_trip_is_exact() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 7 % 3) as f32 - 1.0) * 0.75)
            .collect();
        for (q, dq, n) in [
            (
                quantize_tq1_0 as fn(&[f32], &mut [u8]),
                dequantize_tq1_0 as fn(&[u8], &mut [f32]),
                54,
            ),
            (quantize_tq2_0, dequantize_tq2_0, 66),
        ] {
            let mut b = vec![0u8; n];
            q(&x, &mut b);
            let mut y = vec![0f32; 256];
            dq(&b, &mut y);
            assert_eq!(x, y);
        }
    }
}
