//! `quant`: every ggml block format, bit-exact with ggml.
//!
//! - [`dequantize`] turns blocks into `f32`, exactly as ggml does.
//! - [`quantize`] turns `f32` into blocks (reference quantizers, no importance matrix).
//! - [`dot`] holds the dot products used by the CPU matmul, scalar and SIMD.
//!
//! Each format family lives in its own module and registers its kernels in
//! [`kernels::lookup`]; this file only validates lengths and dispatches.

pub mod dot;
mod error;
mod format;
#[macro_use]
mod kernels;

mod float;
mod fp4;
pub mod grids;
mod half_util;
mod iquants;
mod kquants;
mod legacy;
mod mxfp6;
mod q1;
mod ternary;

/// The `#[repr(C)]` block structs of every format, with their exact ggml layouts.
pub mod blocks {
    pub use crate::fp4::{BlockMxfp4, BlockNvfp4};
    pub use crate::iquants::{
        BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs,
        BlockIq4Nl, BlockIq4Xs,
    };
    pub use crate::kquants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
    pub use crate::legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
    pub use crate::mxfp6::BlockMxfp6;
    pub use crate::q1::BlockQ1_0;
    pub use crate::ternary::{BlockTq1_0, BlockTq2_0};
}

/// Row-level reference quantizers for the activation formats the dot
/// products pair with weights (ggml's `quantize_row_q8_*_ref`).
pub mod reference {
    pub use crate::kquants::quantize_row_q8_k;
    pub use crate::legacy::{quantize_row_q8_0, quantize_row_q8_1};
}

pub use error::QuantError;
pub use format::{ExtFormat, Format};
pub use gguf_format::GgmlType;

/// Bytes needed to store `elements` elements of `format`, or an error when
/// `elements` is not a whole number of blocks.
pub fn bytes_for(format: impl Into<Format>, elements: usize) -> Result<usize, QuantError> {
    let format = format.into();
    let bs = format.block_size();
    if !elements.is_multiple_of(bs) {
        return Err(QuantError::NotWholeBlocks {
            format,
            elements,
            block_size: bs,
        });
    }
    Ok(elements / bs * format.type_size())
}

fn check_lengths(format: Format, bytes: usize, elements: usize) -> Result<(), QuantError> {
    let expected = bytes_for(format, elements)?;
    if bytes != expected {
        return Err(QuantError::ByteLength {
            format,
            elements,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

/// Dequantize `src` (whole blocks of `format`) into `dst`; `dst.len()` is the
/// element count and `src.len()` must be exactly the bytes those elements take.
pub fn dequantize(
    format: impl Into<Format>,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), QuantError> {
    let format = format.into();
    check_lengths(format, src.len(), dst.len())?;
    let k = kernels::lookup(format).ok_or(QuantError::Unsupported {
        format,
        op: "dequantize",
    })?;
    (k.dequantize)(src, dst);
    Ok(())
}

/// Quantize `src` into `dst` (whole blocks of `format`) with the reference
/// quantizer; `dst.len()` must be exactly the bytes `src.len()` elements take.
pub fn quantize(format: impl Into<Format>, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let format = format.into();
    check_lengths(format, dst.len(), src.len())?;
    let q = kernels::lookup(format)
        .and_then(|k| k.quantize)
        .ok_or(QuantError::Unsupported {
            format,
            op: "quantize",
        })?;
    q(src, dst);
    Ok(())
}

/// Whether [`quantize`] supports `format`.
pub fn can_quantize(format: impl Into<Format>) -> bool {
    kernels::lookup(format.into()).is_some_and(|k| k.quantize.is_some())
}

/// Whether [`dequantize`] supports `format`.
pub fn can_dequantize(format: impl Into<Format>) -> bool {
    kernels::lookup(format.into()).is_some()
}
