//! FP4 formats: MXFP4 (E2M1 with E8M0 scale) and NVFP4 (E2M1 with UE4M3 scales).
//!
//! Both store E2M1 codes as nibbles looked up in [`KVALUES_MXFP4`] (the E2M1
//! values doubled); their scale decoders return half the scale to compensate,
//! exactly like ggml's `ggml_e8m0_to_fp32_half` and `ggml_ue4m3_to_fp32`
//! (ggml-impl.h). Dequantizers follow `dequantize_row_mxfp4` /
//! `dequantize_row_nvfp4`, quantizers `quantize_row_mxfp4_ref` /
//! `quantize_row_nvfp4_ref` (ggml-quants.c).

use crate::grids::KVALUES_MXFP4;
use crate::iquants::per_block;
use crate::kernels::FormatKernels;
use crate::{Format, GgmlType};
use bytemuck::{Pod, Zeroable};
use std::mem::size_of;

/// MXFP4 (ggml id 39): 32 elements, one E8M0 scale byte, 16 bytes of E2M1 nibbles.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockMxfp4 {
    /// E8M0 shared exponent: scale `2^(e - 127)`. ggml gives 0xFF no NaN meaning.
    pub e: u8,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high nibble.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockMxfp4>() == 17);

/// NVFP4 (ggml id 40): 64 elements in four 16-element sub-blocks, each with a
/// UE4M3 scale byte; 8 code bytes per sub-block.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockNvfp4 {
    /// UE4M3 scales (unsigned, 4 exponent bits with bias 7, 3 mantissa bits), one per 16 elements.
    pub d: [u8; 4],
    /// Sub-block `s` uses bytes `8s..8s+8`: element `j` low nibble, `j + 8` high nibble.
    pub qs: [u8; 32],
}
const _: () = assert!(size_of::<BlockNvfp4>() == 36);

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    match format {
        Format::Ggml(GgmlType::MXFP4) => Some(FormatKernels {
            dequantize: dequantize_mxfp4,
            quantize: Some(quantize_mxfp4),
        }),
        Format::Ggml(GgmlType::NVFP4) => Some(FormatKernels {
            dequantize: dequantize_nvfp4,
            quantize: Some(quantize_nvfp4),
        }),
        _ => None,
    }
}

/// Half of the E8M0 scale `2^(x - 127)`, as ggml computes it (0xFF gives
/// `2^127`, not NaN; 0 and 1 give the subnormals `2^-128` and `2^-127`).
pub fn e8m0_to_f32_half(x: u8) -> f32 {
    let bits = if x < 2 {
        0x0020_0000u32 << x
    } else {
        u32::from(x - 1) << 23
    };
    f32::from_bits(bits)
}

/// Half of a UE4M3 scale, as ggml's `ggml_ue4m3_to_fp32` (bit 7 is ignored,
/// 0x00 and 0x7F decode to zero).
pub fn ue4m3_to_f32_half(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0xF);
    let man = f32::from(x & 0x7);
    let raw = if exp == 0 {
        man * 2f32.powi(-9)
    } else {
        (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    };
    raw * 0.5
}

/// ggml's `ggml_fp32_to_ue4m3`: positive values to UE4M3 with round-half-up
/// on the fourth mantissa bit, saturating at 0x7E (448); non-positive and NaN give 0.
pub fn f32_to_ue4m3(x: f32) -> u8 {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(x > 0.0) {
        return 0;
    }
    let x = x.min(448.0);
    let bits = x.to_bits();
    let fp32_exp = ((bits >> 23) & 0xFF) as i32 - 127;
    let fp32_man = ((bits >> 20) & 0x7) as i32;
    let mut exp = fp32_exp + 7;
    if exp <= 0 {
        let man = ((x * 512.0 + 0.5) as i32).min(7);
        return if man < 1 { 0 } else { man as u8 };
    }
    if exp >= 15 {
        return 0x7E;
    }
    let mut man = fp32_man + ((bits >> 19) & 1) as i32;
    if man > 7 {
        man = 0;
        exp += 1;
        if exp >= 15 {
            return 0x7E;
        }
    }
    ((exp << 3) | man) as u8
}

fn dequantize_mxfp4(src: &[u8], dst: &mut [f32]) {
    per_block::<17, 32>(src, dst, |b, y| {
        let d = e8m0_to_f32_half(b[0]);
        for j in 0..16 {
            let q = b[1 + j];
            y[j] = f32::from(KVALUES_MXFP4[usize::from(q & 0xF)]) * d;
            y[j + 16] = f32::from(KVALUES_MXFP4[usize::from(q >> 4)]) * d;
        }
    });
}

fn dequantize_nvfp4(src: &[u8], dst: &mut [f32]) {
    per_block::<36, 64>(src, dst, |b, y| {
        for s in 0..4 {
            let d = ue4m3_to_f32_half(b[s]);
            for j in 0..8 {
                let q = b[4 + 8 * s + j];
                y[16 * s + j] = f32::from(KVALUES_MXFP4[usize::from(q & 0xF)]) * d;
                y[16 * s + j + 8] = f32::from(KVALUES_MXFP4[usize::from(q >> 4)]) * d;
            }
        }
    });
}

/// ggml's `best_index_mxfp4`: the first code whose value `kv * e` is nearest to `x`.
fn best_index_mxfp4(x: f32, e: f32) -> u8 {
    let mut best = 0;
    let mut best_err = (f32::from(KVALUES_MXFP4[0]) * e - x).abs();
    for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
        let err = (f32::from(k) * e - x).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    best
}

/// Largest `|v|` in the manner of ggml (`if (amax < fabsf(v)) amax = fabsf(v)`: NaNs are skipped).
fn amax(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, v| if m < v.abs() { v.abs() } else { m })
}

fn quantize_mxfp4(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(32).zip(dst.chunks_exact_mut(17)) {
        let amax = amax(x);
        // ggml converts the float straight to uint8_t; on x86 that truncates
        // through int32, which `as i32 as u8` reproduces for in-range and
        // negative (tiny amax) values alike.
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as i32 as u8
        } else {
            0
        };
        let d = e8m0_to_f32_half(e);
        out[0] = e;
        for j in 0..16 {
            out[1 + j] = best_index_mxfp4(x[j], d) | (best_index_mxfp4(x[j + 16], d) << 4);
        }
    }
}

fn quantize_nvfp4(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(64).zip(dst.chunks_exact_mut(36)) {
        for s in 0..4 {
            let xb = &x[16 * s..16 * s + 16];
            let ue = f32_to_ue4m3(amax(xb) / 6.0);
            out[s] = ue;
            let d = ue4m3_to_f32_half(ue);
            for j in 0..8 {
                out[4 + 8 * s + j] =
                    best_index_mxfp4(xb[j], d) | (best_index_mxfp4(xb[j + 8], d) << 4);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e8m0_half_scale_values() {
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(128), 1.0);
        assert_eq!(e8m0_to_f32_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_to_f32_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32_half(255), 2f32.powi(126) * 2.0);
    }

    #[test]
    fn ue4m3_round_trips_every_code() {
        // ggml's encoder never emits exponent 15 (codes 0x78..0x7E): it saturates to 0x7E.
        for code in 1u8..0x78 {
            let v = ue4m3_to_f32_half(code) * 2.0;
            assert_eq!(f32_to_ue4m3(v), code, "code {code:#x} value {v}");
        }
        assert_eq!(f32_to_ue4m3(1e9), 0x7E);
        assert_eq!(f32_to_ue4m3(256.0), 0x7E);
        assert_eq!(f32_to_ue4m3(-1.0), 0);
        assert_eq!(f32_to_ue4m3(f32::NAN), 0);
    }
}
