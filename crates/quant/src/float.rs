//! Plain element types: F32, F16, BF16, F64 and the integer types I8, I16,
//! I32, I64. All dequantize to `f32` (values that `f32` cannot hold exactly
//! round to nearest even, as a C cast does); F32, F16 and BF16 also quantize.

use crate::half_util::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
use crate::kernels::{DequantizeFn, FormatKernels, QuantizeFn};
use crate::{Format, GgmlType};

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    let Format::Ggml(t) = format else {
        return None;
    };
    let (dequantize, quantize): (DequantizeFn, Option<QuantizeFn>) = match t {
        GgmlType::F32 => (dequantize_f32, Some(quantize_f32)),
        GgmlType::F16 => (dequantize_f16, Some(quantize_f16)),
        GgmlType::BF16 => (dequantize_bf16, Some(quantize_bf16)),
        GgmlType::F64 => (dequantize_f64, None),
        GgmlType::I8 => (dequantize_i8, None),
        GgmlType::I16 => (dequantize_i16, None),
        GgmlType::I32 => (dequantize_i32, None),
        GgmlType::I64 => (dequantize_i64, None),
        _ => return None,
    };
    Some(FormatKernels {
        dequantize,
        quantize,
    })
}

/// Applies `f` to each little-endian `N`-byte element of `src`.
#[inline]
fn each<const N: usize>(src: &[u8], dst: &mut [f32], f: impl Fn([u8; N]) -> f32) {
    for (c, y) in src.chunks_exact(N).zip(dst.iter_mut()) {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        *y = f(b);
    }
}

fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    each(src, dst, f32::from_le_bytes);
}

fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b| f16_bits_to_f32(u16::from_le_bytes(b)));
}

fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b| bf16_bits_to_f32(u16::from_le_bytes(b)));
}

fn dequantize_f64(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b| f64::from_le_bytes(b) as f32);
}

fn dequantize_i8(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b: [u8; 1]| f32::from(b[0] as i8));
}

fn dequantize_i16(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b| f32::from(i16::from_le_bytes(b)));
}

fn dequantize_i32(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b| i32::from_le_bytes(b) as f32);
}

fn dequantize_i64(src: &[u8], dst: &mut [f32]) {
    each(src, dst, |b| i64::from_le_bytes(b) as f32);
}

fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.iter().zip(dst.chunks_exact_mut(4)) {
        out.copy_from_slice(&x.to_le_bytes());
    }
}

fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (&x, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&f32_to_f16_bits(x).to_le_bytes());
    }
}

fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (&x, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&f32_to_bf16_bits(x).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use crate::{dequantize, GgmlType};

    #[test]
    fn integers_and_f64_by_hand() {
        let mut y = [0f32; 3];
        dequantize(GgmlType::I8, &[0x80, 0x7f, 0xff], &mut y).unwrap();
        assert_eq!(y, [-128.0, 127.0, -1.0]);
        let src: Vec<u8> = [-32768i16, 5, -1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize(GgmlType::I16, &src, &mut y).unwrap();
        assert_eq!(y, [-32768.0, 5.0, -1.0]);
        let src: Vec<u8> = [i32::MIN, 16_777_217, -7]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize(GgmlType::I32, &src, &mut y).unwrap();
        assert_eq!(y, [-2_147_483_648.0, 16_777_216.0, -7.0]);
        let src: Vec<u8> = [i64::MAX, 3, -9]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize(GgmlType::I64, &src, &mut y).unwrap();
        assert_eq!(y, [9.223_372e18, 3.0, -9.0]);
        let src: Vec<u8> = [0.1f64, 1e300, -2.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize(GgmlType::F64, &src, &mut y).unwrap();
        assert_eq!(y, [0.1f32, f32::INFINITY, -2.5]);
    }
}
