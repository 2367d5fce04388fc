//! Properties of the i-quant, FP4, ternary, 1-bit and MXFP6 codecs:
//! arbitrary bytes never panic, lengths that are not whole blocks are errors,
//! and quantize → dequantize stays within each format's error bound.

use proptest::prelude::*;
use quant::{ExtFormat, Format, GgmlType, QuantError};

const DEQUANT_ONLY: [GgmlType; 8] = [
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ4_XS,
];

fn all_formats() -> Vec<Format> {
    let mut v: Vec<Format> = DEQUANT_ONLY.iter().map(|&t| t.into()).collect();
    for t in [
        GgmlType::IQ4_NL,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ] {
        v.push(t.into());
    }
    v.push(ExtFormat::Mxfp6E2M3.into());
    v.push(ExtFormat::Mxfp6E3M2.into());
    v
}

fn format_strategy() -> impl Strategy<Value = Format> {
    let all = all_formats();
    (0..all.len()).prop_map(move |i| all[i])
}

/// Round trip of `x` through `format`; returns the dequantized values.
fn round_trip(format: Format, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; quant::bytes_for(format, x.len()).unwrap()];
    quant::quantize(format, x, &mut q).unwrap();
    let mut y = vec![0f32; x.len()];
    quant::dequantize(format, &q, &mut y).unwrap();
    y
}

/// Checks `|x - y| <= rel * amax(group) + abs` group by group.
fn within(x: &[f32], y: &[f32], group: usize, rel: f32, abs: f32) -> Result<(), TestCaseError> {
    for (gx, gy) in x.chunks(group).zip(y.chunks(group)) {
        let amax = gx.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in gx.iter().zip(gy) {
            prop_assert!(
                (a - b).abs() <= rel * amax + abs,
                "x {a} → {b}, group amax {amax}, bound {}",
                rel * amax + abs
            );
        }
    }
    Ok(())
}

/// Blocks of values whose magnitudes span a range where every format's scale is representable.
fn values(block: usize, max_blocks: usize) -> impl Strategy<Value = Vec<f32>> {
    (1..=max_blocks).prop_flat_map(move |n| {
        (-6i32..6).prop_flat_map(move |e| {
            prop::collection::vec(-1.0f32..1.0, n * block)
                .prop_map(move |v| v.into_iter().map(|x| x * 2f32.powi(e)).collect())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic(format in format_strategy(), blocks in 1usize..4, seed in any::<u64>()) {
        let bytes = quant::bytes_for(format, blocks * format.block_size()).unwrap();
        let mut s = seed | 1;
        let src: Vec<u8> = (0..bytes).map(|_| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s as u8 }).collect();
        let mut dst = vec![0f32; blocks * format.block_size()];
        prop_assert!(quant::dequantize(format, &src, &mut dst).is_ok());
    }

    #[test]
    fn partial_blocks_are_errors(format in format_strategy(), blocks in 0usize..3, extra in 1usize..32) {
        let bs = format.block_size();
        let extra = extra % bs;
        prop_assume!(extra != 0);
        let n = blocks * bs + extra;
        let mut dst = vec![0f32; n];
        let err = quant::dequantize(format, &vec![0u8; blocks * format.type_size()], &mut dst).unwrap_err();
        let is_not_whole_blocks = matches!(err, QuantError::NotWholeBlocks { .. });
        prop_assert!(is_not_whole_blocks);
        prop_assert!(quant::bytes_for(format, n).is_err());
        if quant::can_quantize(format) {
            let mut q = vec![0u8; blocks * format.type_size()];
            let err = quant::quantize(format, &vec![0.0; n], &mut q).unwrap_err();
            let is_not_whole_blocks = matches!(err, QuantError::NotWholeBlocks { .. });
            prop_assert!(is_not_whole_blocks);
        }
        // whole blocks but a wrong byte count
        let n = (blocks + 1) * bs;
        let mut dst = vec![0f32; n];
        let err = quant::dequantize(format, &vec![0u8; (blocks + 1) * format.type_size() + 1], &mut dst).unwrap_err();
        let is_byte_length = matches!(err, QuantError::ByteLength { .. });
        prop_assert!(is_byte_length);
    }

    /// IQ4_NL: codes picked at d = max / -127 (half level spacing ≤ 12/127 of amax),
    /// then a least-squares refit of d and f16 rounding.
    #[test]
    fn iq4_nl_error_bound(x in values(32, 4)) {
        within(&x, &round_trip(GgmlType::IQ4_NL.into(), &x), 32, 0.2, 1e-6)?;
    }

    /// MXFP4: scale 2^(floor(log2 amax) - 2), largest level 6 × scale, so
    /// saturation and rounding errors stay below amax / 2.
    #[test]
    fn mxfp4_error_bound(x in values(32, 4)) {
        within(&x, &round_trip(GgmlType::MXFP4.into(), &x), 32, 0.5, 0.0)?;
    }

    /// NVFP4: per 16 elements, scale ≈ amax / 6 rounded to UE4M3 (4 significant bits).
    #[test]
    fn nvfp4_error_bound(x in values(64, 2)) {
        within(&x, &round_trip(GgmlType::NVFP4.into(), &x), 16, 0.25, 1e-6)?;
    }

    /// Ternary: levels {-amax, 0, amax} (amax rounded to f16).
    #[test]
    fn ternary_error_bound(x in values(256, 2)) {
        for t in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
            within(&x, &round_trip(t.into(), &x), 256, 0.501, 1e-6)?;
        }
    }

    /// Q1_0 keeps every sign (x >= 0 ↔ y >= 0) with magnitude mean(|x|).
    #[test]
    fn q1_0_keeps_signs(x in values(128, 2)) {
        let y = round_trip(GgmlType::Q1_0.into(), &x);
        for (a, b) in x.iter().zip(&y) {
            prop_assert_eq!(*a >= 0.0, b.is_sign_positive());
        }
        within(&x, &y, 128, 2.01, 1e-6)?;
    }

    /// MXFP6: E2M3 spans [0, 7.5] × 2^(floor(log2 amax) - 2): error ≤ amax / 8;
    /// E3M2 spans [0, 28] × 2^(floor(log2 amax) - 4): error ≤ amax / 4.
    #[test]
    fn mxfp6_error_bound(x in values(32, 4)) {
        within(&x, &round_trip(ExtFormat::Mxfp6E2M3.into(), &x), 32, 0.125, 0.0)?;
        within(&x, &round_trip(ExtFormat::Mxfp6E3M2.into(), &x), 32, 0.25, 0.0)?;
    }
}
