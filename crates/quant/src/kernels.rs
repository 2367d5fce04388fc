//! The registry of per-format kernels. Each family module answers for the
//! formats it owns; the first module that knows a format wins.

use crate::Format;

/// Dequantize whole blocks: `src.len()` and `dst.len()` were validated by the caller.
pub(crate) type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);
/// Quantize whole blocks: `src.len()` and `dst.len()` were validated by the caller.
pub(crate) type QuantizeFn = fn(src: &[f32], dst: &mut [u8]);

/// The scalar codecs of one format.
#[derive(Clone, Copy)]
pub(crate) struct FormatKernels {
    /// Bit-exact dequantizer.
    pub dequantize: DequantizeFn,
    /// Reference quantizer, where the format has one.
    pub quantize: Option<QuantizeFn>,
}

/// The codecs for `format`, if any family implements it.
pub(crate) fn lookup(format: Format) -> Option<FormatKernels> {
    crate::float::kernels(format)
        .or_else(|| crate::legacy::kernels(format))
        .or_else(|| crate::kquants::kernels(format))
        .or_else(|| crate::iquants::kernels(format))
        .or_else(|| crate::fp4::kernels(format))
        .or_else(|| crate::ternary::kernels(format))
        .or_else(|| crate::q1::kernels(format))
        .or_else(|| crate::mxfp6::kernels(format))
}

/// `(dequantize, Some(quantize))` for a block type with `to_f32`/`from_f32`
/// methods, through the shared whole-block loops of `legacy`.
macro_rules! codecs {
    ($block:ty) => {
        (
            (|s: &[u8], d: &mut [f32]| $crate::legacy::dequantize_blocks(s, d, <$block>::to_f32))
                as $crate::kernels::DequantizeFn,
            Some(
                (|s: &[f32], d: &mut [u8]| {
                    $crate::legacy::quantize_blocks(s, d, <$block>::from_f32)
                }) as $crate::kernels::QuantizeFn,
            ),
        )
    };
}
