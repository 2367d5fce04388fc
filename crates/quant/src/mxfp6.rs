//! MXFP6 (OCP Microscaling Formats v1.0): 32 six-bit floats sharing one E8M0
//! scale, with E2M3 or E3M2 elements. ggml has no id for it, so it is an
//! [`ExtFormat`](crate::ExtFormat) extension and can never collide with a ggml type.
//!
//! Block layout (25 bytes, [`BlockMxfp6`]): byte 0 is the E8M0 scale
//! (`2^(e - 127)`, 0xFF = NaN), bytes 1..25 are the 32 codes packed
//! little-endian: code `i` occupies bits `6i..6i+6` of the 192-bit
//! little-endian integer formed by those 24 bytes (so every 3 bytes hold 4
//! codes). OCP defines the element and scale encodings but not a byte layout;
//! this one is the densest and matches the order of ggml's other scale-first blocks.
//!
//! Quantization follows the spec's conversion: the shared exponent is
//! `floor(log2(amax)) - emax_elem` clamped to the E8M0 range (an all-zero block
//! uses the smallest scale, byte 0), and each `x / 2^exp` is rounded to the
//! nearest element value, ties to even, saturating at the largest magnitude.
//! A block containing NaN or ±Inf gets the NaN scale 0xFF (all codes 0) and
//! decodes to NaN; OCP leaves Inf handling for element types without Inf to
//! the implementation.

use crate::kernels::FormatKernels;
use crate::{ExtFormat, Format};
use bytemuck::{Pod, Zeroable};
use std::mem::size_of;

/// One MXFP6 block (either element type): the E8M0 scale and 32 packed 6-bit codes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockMxfp6 {
    /// E8M0 shared scale `2^(e - 127)`; 0xFF means NaN.
    pub e: u8,
    /// 32 six-bit codes, little-endian bit packed.
    pub qs: [u8; 24],
}
const _: () = assert!(size_of::<BlockMxfp6>() == 25);

/// An OCP 6-bit element encoding: sign, `EBITS` exponent bits, `MBITS` mantissa bits.
#[derive(Debug, Clone, Copy)]
struct Elem {
    ebits: u32,
    mbits: u32,
    bias: i32,
    /// Exponent of the largest normal value (`emax_elem` in the spec).
    emax: i32,
}

const E2M3: Elem = Elem {
    ebits: 2,
    mbits: 3,
    bias: 1,
    emax: 2,
};
const E3M2: Elem = Elem {
    ebits: 3,
    mbits: 2,
    bias: 3,
    emax: 4,
};

impl Elem {
    /// Magnitude of the 5-bit code `c` (no sign). Exact in `f32`.
    fn magnitude(self, c: u8) -> f32 {
        let e = i32::from(c >> self.mbits);
        let m = f32::from(c & ((1 << self.mbits) - 1));
        let scale = (1u32 << self.mbits) as f32;
        if e == 0 {
            m / scale * 2f32.powi(1 - self.bias)
        } else {
            (1.0 + m / scale) * 2f32.powi(e - self.bias)
        }
    }

    /// Value of the 6-bit code `c`.
    fn value(self, c: u8) -> f32 {
        let v = self.magnitude(c & 0x1F);
        if c & 0x20 != 0 {
            -v
        } else {
            v
        }
    }

    /// The code nearest to `v` (ties to the even code), saturating.
    fn encode(self, v: f64) -> u8 {
        let sign = if v.is_sign_negative() { 0x20 } else { 0 };
        let a = v.abs();
        let top = (1u8 << (self.ebits + self.mbits)) - 1;
        // Magnitudes increase with the code, so scan for the bracketing pair.
        let mut c = 0u8;
        while c < top && f64::from(self.magnitude(c + 1)) <= a {
            c += 1;
        }
        if c < top {
            let lo = f64::from(self.magnitude(c));
            let hi = f64::from(self.magnitude(c + 1));
            if a - lo > hi - a || (a - lo == hi - a && c % 2 == 1) {
                c += 1;
            }
        }
        sign | c
    }
}

/// The kernels of the formats this module owns.
pub(crate) fn kernels(format: Format) -> Option<FormatKernels> {
    match format {
        Format::Ext(ExtFormat::Mxfp6E2M3) => Some(FormatKernels {
            dequantize: |s, d| dequantize(E2M3, s, d),
            quantize: Some(|s, d| quantize(E2M3, s, d)),
        }),
        Format::Ext(ExtFormat::Mxfp6E3M2) => Some(FormatKernels {
            dequantize: |s, d| dequantize(E3M2, s, d),
            quantize: Some(|s, d| quantize(E3M2, s, d)),
        }),
        _ => None,
    }
}

/// Code `i` of the packed 24 bytes.
fn get_code(qs: &[u8], i: usize) -> u8 {
    let bit = 6 * i;
    let lo = u16::from(qs[bit / 8]);
    let hi = qs.get(bit / 8 + 1).map_or(0, |&b| u16::from(b));
    (((lo | (hi << 8)) >> (bit % 8)) & 0x3F) as u8
}

fn put_code(qs: &mut [u8], i: usize, c: u8) {
    let bit = 6 * i;
    let v = u16::from(c & 0x3F) << (bit % 8);
    qs[bit / 8] |= v as u8;
    if let Some(b) = qs.get_mut(bit / 8 + 1) {
        *b |= (v >> 8) as u8;
    }
}

/// `2^(e - 127)` as `f32` (exact, `2^-127` is a subnormal); NaN for 0xFF.
fn e8m0(e: u8) -> f32 {
    if e == 0xFF {
        f32::NAN
    } else if e == 0 {
        f32::from_bits(0x0040_0000)
    } else {
        f32::from_bits(u32::from(e) << 23)
    }
}

fn dequantize(elem: Elem, src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(25).zip(dst.chunks_exact_mut(32)) {
        let s = e8m0(b[0]);
        for (i, v) in y.iter_mut().enumerate() {
            *v = elem.value(get_code(&b[1..], i)) * s;
        }
    }
}

/// `floor(log2(a))` of a positive finite `f32`, exactly (subnormals included).
fn floor_log2(a: f32) -> i32 {
    let bits = a.to_bits();
    let exp = ((bits >> 23) & 0xFF) as i32;
    if exp == 0 {
        // subnormal: value = mantissa * 2^-149
        let m = bits & 0x007F_FFFF;
        31 - m.leading_zeros() as i32 - 149
    } else {
        exp - 127
    }
}

fn quantize(elem: Elem, src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(32).zip(dst.chunks_exact_mut(25)) {
        out.fill(0);
        if x.iter().any(|v| !v.is_finite()) {
            out[0] = 0xFF;
            continue;
        }
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let exp = if amax == 0.0 {
            -127
        } else {
            (floor_log2(amax) - elem.emax).clamp(-127, 127)
        };
        out[0] = (exp + 127) as u8;
        // x / 2^exp in f64 is exact for every finite f32 and every exp in range.
        let inv = 2f64.powi(-exp);
        for (i, &v) in x.iter().enumerate() {
            put_code(&mut out[1..], i, elem.encode(f64::from(v) * inv));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unusual_byte_groupings)] // grouped as sign_exponent_mantissa
    fn ocp_table_values() {
        // OCP MX v1.0, table of FP6 encodings.
        assert_eq!(E2M3.value(0b0_11_111), 7.5); // max normal
        assert_eq!(E2M3.value(0b0_01_000), 1.0); // min normal
        assert_eq!(E2M3.value(0b0_00_111), 0.875); // max subnormal
        assert_eq!(E2M3.value(0b0_00_001), 0.125); // min subnormal
        assert_eq!(E2M3.value(0b1_11_111), -7.5);
        assert_eq!(E3M2.value(0b0_111_11), 28.0);
        assert_eq!(E3M2.value(0b0_001_00), 0.25);
        assert_eq!(E3M2.value(0b0_000_11), 0.1875);
        assert_eq!(E3M2.value(0b0_000_01), 0.0625);
        assert_eq!(E3M2.value(0b1_111_11), -28.0);
    }

    #[test]
    fn encode_rounds_to_nearest_even_and_saturates() {
        // E2M3 around 1.0: step 0.125; 1.0625 is a tie between codes 8 and 9 → 8 (even)
        assert_eq!(E2M3.encode(1.0625), 8);
        assert_eq!(E2M3.encode(1.1875), 10); // tie 9/10 → 10
        assert_eq!(E2M3.encode(100.0), 31);
        assert_eq!(E2M3.encode(-100.0), 0x3F);
        assert_eq!(E3M2.encode(30.0), 31);
        for c in 0..64u8 {
            assert_eq!(E2M3.encode(f64::from(E2M3.value(c))) & 0x1F, c & 0x1F);
            assert_eq!(E3M2.encode(f64::from(E3M2.value(c))) & 0x1F, c & 0x1F);
        }
    }

    #[test]
    fn packing_round_trips() {
        let mut qs = [0u8; 24];
        for i in 0..32 {
            put_code(&mut qs, i, (i as u8 * 7 + 3) & 0x3F);
        }
        for i in 0..32 {
            assert_eq!(get_code(&qs, i), (i as u8 * 7 + 3) & 0x3F);
        }
    }

    #[test]
    fn floor_log2_is_exact() {
        assert_eq!(floor_log2(1.0), 0);
        assert_eq!(floor_log2(f32::from_bits(0x3FFF_FFFF)), 0);
        assert_eq!(floor_log2(f32::MAX), 127);
        assert_eq!(floor_log2(f32::from_bits(1)), -149);
        assert_eq!(floor_log2(f32::MIN_POSITIVE), -126);
    }
}
