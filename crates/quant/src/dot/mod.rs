//! Dot products between a quantized weight row and an activation row in the
//! format ggml pairs with it (Q8_0, Q8_1 or Q8_K), plus f32/f16/bf16 rows.
//!
//! This is the CPU hot path of the matmul:
//!
//! - [`kernel_for`] picks, once per weight type, the fastest [`VecDotKernel`]
//!   this CPU can run (runtime feature detection, cached in a `OnceLock`).
//! - [`quantize_activations`] turns an `f32` activation row into the kernel's
//!   [`VecDotKernel::activation_type`], byte-for-byte equal to the reference
//!   quantizers of this crate, with SIMD where available.
//! - [`dequantize_row`] dequantizes whole rows with SIMD where available,
//!   bit-identical to [`crate::dequantize`].
//!
//! Every SIMD kernel has a scalar reference ([`Isa::Scalar`]) that follows
//! ggml's per-block arithmetic (integer sums per block, then scaled), and the
//! tests check that every ISA this machine supports agrees with it.

mod act;
mod dequant;
mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use crate::{Format, GgmlType, QuantError};

pub use act::quantize_activations;
pub use dequant::dequantize_row;

/// A safe dot-product entry point. Callers guarantee (and [`VecDotKernel`]
/// checks) that both rows hold the same whole number of elements.
pub(crate) type DotFn = fn(weight: &[u8], act: &[u8]) -> f32;

/// An instruction-set level a kernel is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, the reference every other level is tested against.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C (256-bit).
    Avx2,
    /// x86_64 AVX2 + FMA + F16C kernels that additionally use AVX-512
    /// (F, BW, VL) and VNNI instructions (`vpdpbusd`) on 256-bit registers.
    Avx512Vnni,
    /// aarch64 Advanced SIMD (NEON).
    Neon,
}

impl Isa {
    /// Every level, from the most portable to the most specific.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni, Isa::Neon];

    /// The name reported by [`VecDotKernel::isa`]: "scalar", "avx2", "avx512vnni" or "neon".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU can run kernels of this level (checked at run time).
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::has_avx512vnni(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// The activation format ggml pairs with a weight type in `vec_dot`
/// (`vec_dot_type` in ggml's CPU type traits), or `None` for types that
/// have no dot product (Q8_1, Q8_K and the integer types).
pub fn activation_type(weight: GgmlType) -> Option<GgmlType> {
    use GgmlType as T;
    Some(match weight {
        T::F32 => T::F32,
        T::F16 => T::F16,
        T::BF16 => T::BF16,
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::MXFP4 | T::NVFP4 | T::Q1_0 => T::Q8_0,
        T::Q4_1 | T::Q5_1 => T::Q8_1,
        T::Q2_K
        | T::Q3_K
        | T::Q4_K
        | T::Q5_K
        | T::Q6_K
        | T::IQ2_XXS
        | T::IQ2_XS
        | T::IQ2_S
        | T::IQ3_XXS
        | T::IQ3_S
        | T::IQ1_S
        | T::IQ1_M
        | T::IQ4_XS
        | T::TQ1_0
        | T::TQ2_0 => T::Q8_K,
        _ => return None,
    })
}

/// A dot product for one weight type at one ISA level.
#[derive(Clone, Copy)]
pub struct VecDotKernel {
    weight: GgmlType,
    act: GgmlType,
    isa: Isa,
    f: DotFn,
    /// Bytes per weight block.
    weight_block_bytes: usize,
    /// `1 / weight_block_bytes`, for the division-free length check in [`Self::dot`].
    inv_weight_block_bytes: f64,
    /// Activation bytes per weight block, or 0 when a weight block is not a
    /// whole number of activation blocks (then [`Self::dot`] takes the slow check).
    act_bytes_per_weight_block: usize,
}

impl std::fmt::Debug for VecDotKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecDotKernel")
            .field("weight", &self.weight)
            .field("act", &self.act)
            .field("isa", &self.isa)
            .finish()
    }
}

impl VecDotKernel {
    /// The weight type this kernel reads.
    pub fn weight_type(&self) -> GgmlType {
        self.weight
    }

    /// The activation format the second row must be in (see [`activation_type`]).
    pub fn activation_type(&self) -> GgmlType {
        self.act
    }

    /// The implementation: "avx512vnni", "avx2", "neon" or "scalar".
    pub fn isa(&self) -> &'static str {
        self.isa.name()
    }

    /// The ISA level of the implementation.
    pub fn isa_level(&self) -> Isa {
        self.isa
    }

    /// Elements in `weight_row`, or an error when it is not whole blocks.
    fn elements(&self, weight_row: &[u8]) -> Result<usize, QuantError> {
        let ts = self.weight.type_size();
        let format = Format::Ggml(self.weight);
        if !weight_row.len().is_multiple_of(ts) {
            return Err(QuantError::ByteLength {
                format,
                elements: weight_row.len() / ts * self.weight.block_size(),
                expected: weight_row.len() / ts * ts,
                actual: weight_row.len(),
            });
        }
        let n = weight_row.len() / ts * self.weight.block_size();
        // The activation format's block must tile the row too.
        crate::bytes_for(self.act, n)?;
        Ok(n)
    }

    /// `Σ w[i]·a[i]` over one row. `weight_row` holds whole blocks of
    /// [`Self::weight_type`]; `act_row` must hold the same number of elements
    /// in [`Self::activation_type`]. Length mismatches are errors.
    pub fn dot(&self, weight_row: &[u8], act_row: &[u8]) -> Result<f32, QuantError> {
        // Fast check without integer divisions (which cost tens of cycles on a
        // call of a few hundred): the block count is rounded from a multiply by
        // the reciprocal and then verified exactly. Whenever it does not verify
        // (wrong lengths, or rows too long for the f64 estimate) the exact check
        // below decides.
        let len = weight_row.len();
        let nb = (len as f64 * self.inv_weight_block_bytes + 0.5) as usize;
        if nb.wrapping_mul(self.weight_block_bytes) == len
            && self.act_bytes_per_weight_block != 0
            && nb.wrapping_mul(self.act_bytes_per_weight_block) == act_row.len()
        {
            return Ok((self.f)(weight_row, act_row));
        }
        self.dot_checked(weight_row, act_row)
    }

    /// [`Self::dot`] with exact integer length checks and detailed errors.
    #[cold]
    fn dot_checked(&self, weight_row: &[u8], act_row: &[u8]) -> Result<f32, QuantError> {
        let n = self.elements(weight_row)?;
        let expected = crate::bytes_for(self.act, n)?;
        if act_row.len() != expected {
            return Err(QuantError::ByteLength {
                format: Format::Ggml(self.act),
                elements: n,
                expected,
                actual: act_row.len(),
            });
        }
        Ok((self.f)(weight_row, act_row))
    }

    /// [`Self::dot`] without the length checks, for a matmul that validated
    /// its shapes once.
    ///
    /// # Safety
    /// `weight_row.len()` must be a whole number of weight blocks and
    /// `act_row.len()` exactly the bytes the same element count takes in
    /// [`Self::activation_type`]; otherwise SIMD kernels read out of bounds.
    pub unsafe fn dot_unchecked(&self, weight_row: &[u8], act_row: &[u8]) -> f32 {
        debug_assert!(self.dot(weight_row, act_row).is_ok());
        (self.f)(weight_row, act_row)
    }
}

/// The kernel for `weight` at exactly `isa`, or `None` when this CPU cannot
/// run that level or no kernel of that level exists for the type. Useful to
/// test and benchmark each path; the engine should use [`kernel_for`].
pub fn kernel_for_isa(weight: GgmlType, isa: Isa) -> Option<VecDotKernel> {
    let act = activation_type(weight)?;
    if !isa.available() {
        return None;
    }
    let f: DotFn = match isa {
        Isa::Scalar => scalar::kernel(weight)?,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::kernel_avx2(weight)?,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => x86::kernel_vnni(weight)?,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::kernel(weight)?,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let (bs, ts) = (weight.block_size(), weight.type_size());
    let act_bytes_per_weight_block = if bs % act.block_size() == 0 {
        bs / act.block_size() * act.type_size()
    } else {
        0
    };
    Some(VecDotKernel {
        weight,
        act,
        isa,
        f,
        weight_block_bytes: ts,
        inv_weight_block_bytes: 1.0 / ts as f64,
        act_bytes_per_weight_block,
    })
}

/// The fastest kernel this CPU runs for `weight`, chosen once per process;
/// `None` for types without a dot product (or whose codec is missing).
pub fn kernel_for(weight: GgmlType) -> Option<&'static VecDotKernel> {
    static TABLE: OnceLock<Vec<(GgmlType, VecDotKernel)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        GgmlType::ALL
            .iter()
            .filter_map(|&t| {
                Isa::ALL
                    .iter()
                    .rev()
                    .find_map(|&isa| kernel_for_isa(t, isa))
                    .map(|k| (t, k))
            })
            .collect()
    });
    table.iter().find(|(t, _)| *t == weight).map(|(_, k)| k)
}
