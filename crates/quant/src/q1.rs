//! Q1_0 (ggml id 41): one sign bit per weight with an f16 scale per 128 elements.
//!
//! Source: ggml-org/llama.cpp `ggml/src/ggml-common.h` (`block_q1_0`, `QK1_0 = 128`)
//! and `ggml/src/ggml-quants.c` (`dequantize_row_q1_0`: bit set → `d`, clear →
//! `-d`; `quantize_row_q1_0_ref`: `d` = mean of `|x|`, bit set when `x >= 0`).
//! gguf-py 0.19 knows the type id but has no codec for it.

use crate::iquants::{f16_at, per_block};
use crate::kernels::FormatKernels;
use crate::{Format, GgmlType};
use bytemuck::{Pod, Zeroable};
use half::f16;
use std::mem::size_of;

/// Q1_0: 128 elements, an f16 scale and 128 sign bits (element `j` is bit
/// `j % 8` of byte `j / 8`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ1_0 {
    /// Scale.
    pub d: f16,
    /// Sign bits: 1 → `+d`, 0 → `-d`.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ1_0>() == 18);

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    match format {
        Format::Ggml(GgmlType::Q1_0) => Some(FormatKernels {
            dequantize: dequantize_q1_0,
            quantize: Some(quantize_q1_0),
        }),
        _ => None,
    }
}

fn dequantize_q1_0(src: &[u8], dst: &mut [f32]) {
    per_block::<18, 128>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = if (b[2 + j / 8] >> (j % 8)) & 1 != 0 {
                d
            } else {
                -d
            };
        }
    });
}

fn quantize_q1_0(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(128).zip(dst.chunks_exact_mut(18)) {
        let sum_abs = x.iter().fold(0.0f32, |s, v| s + v.abs());
        let d = sum_abs / 128.0;
        out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out[2..].fill(0);
        for (j, &v) in x.iter().enumerate() {
            if v >= 0.0 {
                out[2 + j / 8] |= 1 << (j % 8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_mean_scale() {
        let x: Vec<f32> = (0..128)
            .map(|i| if i % 3 == 0 { -2.0 } else { 2.0 })
            .collect();
        let mut b = [0u8; 18];
        quantize_q1_0(&x, &mut b);
        assert_eq!(f16_at(&b, 0), 2.0);
        let mut y = [0f32; 128];
        dequantize_q1_0(&b, &mut y);
        assert_eq!(x, y);
    }
}
