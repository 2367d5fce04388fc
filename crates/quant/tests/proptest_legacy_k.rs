//! Property tests for the float, legacy and k-quant codecs:
//! quantize → dequantize stays within each format's error bound, arbitrary
//! bytes never panic, and lengths that are not whole blocks are errors.

use proptest::prelude::*;
use quant::{bytes_for, dequantize, quantize, GgmlType, QuantError};

const LEGACY: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
];
const KQUANTS: [GgmlType; 6] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];
const FLOATS: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

fn round_trip(t: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; bytes_for(t, x.len()).unwrap()];
    quantize(t, x, &mut q).unwrap();
    let mut y = vec![0f32; x.len()];
    dequantize(t, &q, &mut y).unwrap();
    y
}

/// Relative error slack for the f16 block scales: an f16 scale is within
/// 2^-11 of the f32 one (subnormal scales add an absolute 2^-25 per unit of
/// the code, covered by `ABS`).
const F16_REL: f32 = 1.0 / 1024.0;
const ABS: f32 = 1e-5;

/// The largest error a legacy block may have, from the block's values.
///
/// - Q4_0/Q5_0 (`d = max / -2^(b-1)`, codes clipped at `2^b - 1`): one step,
///   `amax / 8` and `amax / 16`, since the element opposite `max` can clip by one step.
/// - Q4_1/Q5_1 (`d = (max - min) / (2^b - 1)`): half a step, `range / 30` and `range / 62`.
/// - Q8_0/Q8_1 (`d = amax / 127`): half a step, `amax / 254`.
///
/// plus the f16 rounding of `d` (times the largest code) and of `m`.
fn legacy_bound(t: GgmlType, b: &[f32]) -> f32 {
    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let min = b.iter().fold(f32::MAX, |m, &v| m.min(v));
    let max = b.iter().fold(f32::MIN, |m, &v| m.max(v));
    let range = max - min;
    let step = match t {
        GgmlType::Q4_0 => amax / 8.0,
        GgmlType::Q5_0 => amax / 16.0,
        GgmlType::Q4_1 => range / 30.0,
        GgmlType::Q5_1 => range / 62.0,
        _ => amax / 254.0,
    };
    step * 1.001 + (amax + range + min.abs()) * F16_REL + ABS
}

/// Values in `[-1, 1)` times `2^e`: exercises tiny and large block scales
/// while keeping every f16 scale finite.
fn scaled(len: usize) -> impl Strategy<Value = Vec<f32>> {
    (-24i32..12, prop::collection::vec(-1.0f32..1.0, len))
        .prop_map(|(e, v)| v.into_iter().map(|x| x * 2f32.powi(e)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn legacy_round_trip_within_bound(x in scaled(32 * 4)) {
        for t in LEGACY {
            let y = round_trip(t, &x);
            for (bx, by) in x.chunks(32).zip(y.chunks(32)) {
                let bound = legacy_bound(t, bx);
                for (a, b) in bx.iter().zip(by) {
                    prop_assert!((a - b).abs() <= bound, "{}: {a} -> {b}, bound {bound}", t.name());
                }
            }
        }
    }

    /// Q8_K has an f32 scale: error at most half a step, `amax / 254`.
    #[test]
    fn q8_k_round_trip_within_half_step(x in scaled(256 * 2)) {
        let y = round_trip(GgmlType::Q8_K, &x);
        for (bx, by) in x.chunks(256).zip(y.chunks(256)) {
            let amax = bx.iter().fold(0f32, |m, v| m.max(v.abs()));
            let bound = amax / 254.0 * 1.0001 + 1e-30;
            for (a, b) in bx.iter().zip(by) {
                prop_assert!((a - b).abs() <= bound, "Q8_K: {a} -> {b}, bound {bound}");
            }
        }
    }

    /// K-quants (Q2_K..Q6_K) choose scales by least-squares search and store
    /// them with 4..8 bits relative to the super-block's largest, so a single
    /// element has no tight analytic bound. These bounds are empirical with
    /// about 1.35x margin over the worst seen on 4000 super-blocks of four
    /// distributions (uniform, cubed, sparse outliers, mixed sub-block
    /// magnitudes): per element, a fraction of the super-block's largest
    /// magnitude (Q2_K 0.6, Q3_K 0.4, Q4_K 0.17, Q5_K 0.1, Q6_K 0.04), and
    /// the RMS error as a fraction of the RMS value (Q2_K 0.6, Q3_K 0.3,
    /// Q4_K 0.15, Q5_K 0.08, Q6_K 0.06). Both get an absolute slack for the
    /// f16 super-block scales' granularity at tiny magnitudes: 2^-24 times
    /// the largest `|scale code · quant code|` sum (Q2_K 60, Q3_K 128,
    /// Q4_K 1008, Q5_K 2016, Q6_K 4096).
    #[test]
    fn kquant_round_trip_within_bound(x in scaled(256 * 2)) {
        for (t, max_frac, rms_frac, codes) in [
            (GgmlType::Q2_K, 0.6f32, 0.6f32, 60.0f32),
            (GgmlType::Q3_K, 0.4, 0.3, 128.0),
            (GgmlType::Q4_K, 0.17, 0.15, 1008.0),
            (GgmlType::Q5_K, 0.1, 0.08, 2016.0),
            (GgmlType::Q6_K, 0.04, 0.06, 4096.0),
        ] {
            let abs = codes * 2f32.powi(-24);
            let y = round_trip(t, &x);
            for (bx, by) in x.chunks(256).zip(y.chunks(256)) {
                let amax = bx.iter().fold(0f32, |m, v| m.max(v.abs()));
                let bound = amax * max_frac + abs;
                let (mut se, mut sx) = (0f64, 0f64);
                for (a, b) in bx.iter().zip(by) {
                    prop_assert!((a - b).abs() <= bound, "{}: {a} -> {b}, bound {bound}", t.name());
                    se += f64::from(a - b).powi(2);
                    sx += f64::from(*a).powi(2);
                }
                prop_assert!(
                    se.sqrt() <= f64::from(rms_frac) * sx.sqrt() + 16.0 * f64::from(abs),
                    "{}: rms error {} vs rms {}", t.name(), se.sqrt(), sx.sqrt()
                );
            }
        }
    }

    /// F32 round-trips exactly; F16 and BF16 round to nearest (relative
    /// error at most 2^-11 and 2^-8 for normal values).
    #[test]
    fn float_round_trip(x in prop::collection::vec(-60000.0f32..60000.0, 64)) {
        prop_assert_eq!(round_trip(GgmlType::F32, &x), x.clone());
        for (t, rel) in [(GgmlType::F16, 1.0f32 / 2048.0), (GgmlType::BF16, 1.0 / 256.0)] {
            for (a, b) in x.iter().zip(round_trip(t, &x)) {
                prop_assert!((a - b).abs() <= a.abs() * rel + 6e-8, "{}: {a} -> {b}", t.name());
            }
        }
    }

    /// Any bytes dequantize without panicking, and any `f32` bit patterns
    /// (NaN, infinities, subnormals) quantize without panicking.
    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 292 * 3), bits in prop::collection::vec(any::<u32>(), 512)) {
        let x: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        for t in LEGACY.into_iter().chain(KQUANTS).chain(FLOATS) {
            let n = bytes.len() / t.type_size();
            let mut y = vec![0f32; n * t.block_size()];
            dequantize(t, &bytes[..n * t.type_size()], &mut y).unwrap();
            let mut q = vec![0u8; bytes_for(t, x.len()).unwrap()];
            quantize(t, &x, &mut q).unwrap();
        }
        for t in [GgmlType::F64, GgmlType::I8, GgmlType::I16, GgmlType::I32, GgmlType::I64] {
            let n = bytes.len() / t.type_size();
            let mut y = vec![0f32; n];
            dequantize(t, &bytes[..n * t.type_size()], &mut y).unwrap();
        }
    }

    /// Element counts that are not whole blocks, and byte buffers of the
    /// wrong size, are errors naming the problem.
    #[test]
    fn partial_blocks_are_errors(extra in 1usize..32, blocks in 0usize..3) {
        for t in LEGACY.into_iter().chain(KQUANTS) {
            let bs = t.block_size();
            let n = blocks * bs + extra % bs.max(2);
            if n % bs == 0 {
                continue;
            }
            let mut y = vec![0f32; n];
            let bytes = vec![0u8; (blocks + 1) * t.type_size()];
            let err = dequantize(t, &bytes, &mut y).unwrap_err();
            prop_assert!(matches!(err, QuantError::NotWholeBlocks { .. }), "{err}");
            let mut q = vec![0u8; (blocks + 1) * t.type_size()];
            let err = quantize(t, &y, &mut q).unwrap_err();
            prop_assert!(matches!(err, QuantError::NotWholeBlocks { .. }), "{err}");
            // whole blocks but the wrong byte count
            let mut y = vec![0f32; (blocks + 1) * bs];
            let short = &bytes[..bytes.len() - 1];
            let err = dequantize(t, short, &mut y).unwrap_err();
            prop_assert!(matches!(err, QuantError::ByteLength { .. }), "{err}");
        }
    }
}

/// Q8_1's sum field is `d · Σq` rounded to f16, and its quants equal Q8_0's.
#[test]
fn q8_1_matches_q8_0_plus_sum() {
    let x: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.37)
        .collect();
    let mut a = vec![0u8; 68];
    let mut b = vec![0u8; 72];
    quantize(GgmlType::Q8_0, &x, &mut a).unwrap();
    quantize(GgmlType::Q8_1, &x, &mut b).unwrap();
    for (qa, qb) in a.chunks(34).zip(b.chunks(36)) {
        assert_eq!(qa[..2], qb[..2]);
        assert_eq!(qa[2..], qb[4..]);
        let d = half::f16::from_le_bytes([qb[0], qb[1]]).to_f32();
        let sum: i32 = qb[4..].iter().map(|&q| i32::from(q as i8)).sum();
        let s = half::f16::from_le_bytes([qb[2], qb[3]]);
        // d itself is rounded to f16 in the block; ggml uses the f32 d for s
        assert!((s.to_f32() - sum as f32 * d).abs() <= (sum as f32 * d).abs() * 2e-3 + 1e-6);
    }
}
