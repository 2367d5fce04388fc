//! gguf-py oracle tests for the plain float types and the legacy block
//! formats: dequantization bit-identical, quantization byte-identical.

mod common;

use common::{assert_bits_eq, Oracle, SplitMix as Rng};
use quant::{dequantize, quantize, GgmlType};

fn oracle_dequantize(t: GgmlType, bytes: &[u8]) -> Vec<f32> {
    match common::dequantize(t.name(), bytes) {
        Oracle::Value(v) => v,
        Oracle::NotImplemented => panic!("gguf-py cannot dequantize {}", t.name()),
    }
}

fn oracle_quantize(t: GgmlType, values: &[f32]) -> Vec<u8> {
    match common::quantize(t.name(), values) {
        Oracle::Value(v) => v,
        Oracle::NotImplemented => panic!("gguf-py cannot quantize {}", t.name()),
    }
}

fn check_dequantize(t: GgmlType, bytes: &[u8]) {
    let n = bytes.len() / t.type_size() * t.block_size();
    let mut ours = vec![0f32; n];
    dequantize(t, bytes, &mut ours).unwrap();
    assert_bits_eq(t.name(), &ours, &oracle_dequantize(t, bytes));
}

fn check_quantize(t: GgmlType, values: &[f32]) {
    let mut ours = vec![0u8; quant::bytes_for(t, values.len()).unwrap()];
    quantize(t, values, &mut ours).unwrap();
    let theirs = oracle_quantize(t, values);
    assert_eq!(ours.len(), theirs.len(), "{}: length", t.name());
    let bs = t.type_size();
    for (i, (a, b)) in ours.chunks(bs).zip(theirs.chunks(bs)).enumerate() {
        let k = t.block_size();
        assert_eq!(
            a,
            b,
            "{}: block {i} differs for input {:?}",
            t.name(),
            &values[i * k..(i + 1) * k]
        );
    }
}

/// f16 scale bit patterns that stress the dequantizers.
const ADVERSARIAL_F16: [u16; 12] = [
    0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00,
];

/// Random blocks, then for each adversarial scale a block of random quants,
/// an all-zero and an all-ones block. `scale_at` are the byte offsets of the
/// f16 fields in a block.
fn dequant_cases(t: GgmlType, scale_at: &[usize], seed: u64) -> Vec<u8> {
    let bs = t.type_size();
    let mut rng = Rng(seed);
    let mut out = rng.bytes(bs * 512);
    for &h in &ADVERSARIAL_F16 {
        for fill in [None, Some(0u8), Some(0xff)] {
            let mut b = match fill {
                None => rng.bytes(bs),
                Some(v) => vec![v; bs],
            };
            for &at in scale_at {
                b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
            out.extend_from_slice(&b);
        }
        // different values in the second f16 field (the min), if any
        if scale_at.len() == 2 {
            let mut b = rng.bytes(bs);
            b[scale_at[1]..scale_at[1] + 2].copy_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&b);
        }
    }
    out.extend(vec![0u8; bs]);
    out
}

#[test]
fn dequantize_q4_0() {
    check_dequantize(GgmlType::Q4_0, &dequant_cases(GgmlType::Q4_0, &[0], 1));
}

#[test]
fn dequantize_q4_1() {
    check_dequantize(GgmlType::Q4_1, &dequant_cases(GgmlType::Q4_1, &[0, 2], 2));
}

#[test]
fn dequantize_q5_0() {
    check_dequantize(GgmlType::Q5_0, &dequant_cases(GgmlType::Q5_0, &[0], 3));
}

#[test]
fn dequantize_q5_1() {
    check_dequantize(GgmlType::Q5_1, &dequant_cases(GgmlType::Q5_1, &[0, 2], 4));
}

#[test]
fn dequantize_q8_0() {
    check_dequantize(GgmlType::Q8_0, &dequant_cases(GgmlType::Q8_0, &[0], 5));
}

/// gguf-py has no Q8_1; a Q8_1 block without its sum field is a Q8_0 block,
/// so gguf-py's Q8_0 dequantizer is the reference.
#[test]
fn dequantize_q8_1_against_q8_0_oracle() {
    let q81 = dequant_cases(GgmlType::Q8_1, &[0, 2], 6);
    let q80: Vec<u8> = q81
        .chunks(36)
        .flat_map(|b| b[..2].iter().chain(&b[4..]).copied().collect::<Vec<_>>())
        .collect();
    let mut ours = vec![0f32; q81.len() / 36 * 32];
    dequantize(GgmlType::Q8_1, &q81, &mut ours).unwrap();
    assert_bits_eq("Q8_1", &ours, &oracle_dequantize(GgmlType::Q8_0, &q80));
}

/// Float rows with every kind of value: random bit patterns (all classes),
/// values near the f16 and bf16 rounding boundaries, extremes.
fn float_cases(seed: u64, with_nan: bool) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut v: Vec<f32> = (0..4096)
        .map(|_| f32::from_bits(rng.u64() as u32))
        .filter(|x| with_nan || !x.is_nan())
        .collect();
    // exponents across the f16 range, mantissas near the rounding points
    for e in -30..17 {
        for m in [
            0x0000u32, 0x0fff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001,
        ] {
            let base = 2f32.powi(e).to_bits();
            v.push(f32::from_bits(base | m));
            v.push(-f32::from_bits(base | (m << 3)));
        }
    }
    v.extend([
        0.0,
        -0.0,
        65504.0,
        65519.0,
        65520.0,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    v
}

#[test]
fn floats_dequantize() {
    let mut rng = Rng(7);
    let mut bytes = rng.bytes(4 * 4096);
    bytes.extend([0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0xff, 1, 0, 0, 0]);
    check_dequantize(GgmlType::F32, &bytes);
    check_dequantize(GgmlType::F16, &bytes);
    check_dequantize(GgmlType::BF16, &bytes);
}

/// F16 quantization is numpy's `astype(float16)`; ggml maps every NaN to
/// `±0x7E00` and numpy keeps payloads, so NaNs are left out here and covered
/// by the crate's unit tests.
#[test]
fn f16_quantize() {
    let mut v = float_cases(8, false);
    // every rounding decision: for each pair of adjacent finite halves, the
    // exact midpoint (a tie) and the f32 values just below and above it
    for h in 0u16..0x7bff {
        let lo = half::f16::from_bits(h).to_f32();
        let hi = half::f16::from_bits(h + 1).to_f32();
        let mid = (f64::from(lo) + f64::from(hi)) / 2.0;
        let mid = mid as f32; // exact: 12 significant bits
        for m in [
            mid,
            f32::from_bits(mid.to_bits() - 1),
            f32::from_bits(mid.to_bits() + 1),
        ] {
            v.push(m);
            v.push(-m);
        }
    }
    check_quantize(GgmlType::F16, &v);
}

#[test]
fn bf16_and_f32_quantize() {
    let v = float_cases(9, true);
    check_quantize(GgmlType::BF16, &v);
    let v = float_cases(10, false);
    check_quantize(GgmlType::F32, &v);
}

/// Quantizer inputs: random data at many magnitudes, constant blocks, zeros,
/// exact rounding ties, blocks dominated by one value, tiny values whose
/// inverse scale overflows.
fn quant_cases(seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut v = Vec::new();
    for scale in [1.0f32, 1e-3, 1e3, 3e4, 1e-7, 1e-20, 1e10, 1e30] {
        for _ in 0..32 {
            v.extend((0..32).map(|_| rng.normal() * scale));
        }
        v.extend((0..32).map(|_| rng.unit().abs() * scale)); // all positive
        v.extend((0..32).map(|_| -rng.unit().abs() * scale)); // all negative
    }
    for c in [0.0f32, 1.0, -1.0, 1.5, -2.0, 7.0, 1e-30, 65504.0, 1e5] {
        v.extend([c; 32]);
    }
    // ties: integer and half-integer grids that land exactly on .5 after scaling
    for k in [8.0f32, 16.0, 15.0, 31.0, 127.0, 254.0] {
        v.extend((0..32).map(|i| ((i as f32) - 16.0) / 2.0 * (k / 16.0)));
        v.extend((0..32).map(|i| ((i % 17) as f32 - 8.0) * 0.5));
        let mut b: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * k / 31.0).collect();
        b[3] = -k;
        v.extend(b);
    }
    // one large outlier, rest small; and min/max of equal magnitude
    let mut b: Vec<f32> = (0..32).map(|_| rng.normal() * 0.01).collect();
    b[17] = 100.0;
    v.extend(&b);
    let mut b: Vec<f32> = (0..32).map(|_| rng.normal()).collect();
    b[5] = 4.0;
    b[9] = -4.0;
    v.extend(&b);
    b[5] = -4.0;
    b[9] = 4.0;
    v.extend(&b);
    // tiny magnitudes: d is subnormal and 1/d overflows to infinity
    v.extend((0..32).map(|i| (i as f32 - 16.0) * 1e-40));
    v.extend((0..32).map(|i| (i as f32) * 1e-44));
    v
}

#[test]
fn quantize_q4_0() {
    check_quantize(GgmlType::Q4_0, &quant_cases(11));
}

#[test]
fn quantize_q4_1() {
    check_quantize(GgmlType::Q4_1, &quant_cases(12));
}

#[test]
fn quantize_q5_0() {
    check_quantize(GgmlType::Q5_0, &quant_cases(13));
}

#[test]
fn quantize_q5_1() {
    check_quantize(GgmlType::Q5_1, &quant_cases(14));
}

#[test]
fn quantize_q8_0() {
    check_quantize(GgmlType::Q8_0, &quant_cases(15));
}

/// The one difference found between gguf-py and ggml's C reference: for a
/// block of all `-0.0`, ggml's scan never updates `max` from its initial
/// `+0.0`, so `d = +0.0 / -8 = -0.0` (f16 `0x8000`), while gguf-py's
/// `argmax` picks the first `-0.0` and stores `+0.0`. We follow ggml; the
/// quants and everything else agree. `llama-quantize` confirms ggml's
/// bytes (row 41 of `tests/data/llamacpp-k-input.f32`).
#[test]
fn all_negative_zero_block_follows_ggml_not_gguf_py() {
    let x = [-0.0f32; 32];
    for t in [GgmlType::Q4_0, GgmlType::Q5_0] {
        let mut ours = vec![0u8; t.type_size()];
        quantize(t, &x, &mut ours).unwrap();
        let theirs = oracle_quantize(t, &x);
        assert_eq!(
            &ours[..2],
            &[0x00, 0x80],
            "{}: ggml stores d = -0.0",
            t.name()
        );
        assert_eq!(
            &theirs[..2],
            &[0x00, 0x00],
            "{}: gguf-py stores d = +0.0",
            t.name()
        );
        assert_eq!(&ours[2..], &theirs[2..], "{}: quants agree", t.name());
    }
}

/// ggml itself as the reference: bytes `llama-quantize` wrote for the input
/// in `tests/data` (see its README), including an all `-0.0` row.
fn check_against_llamacpp(t: GgmlType) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let input = std::fs::read(dir.join("llamacpp-k-input.f32")).unwrap();
    let x: Vec<f32> = input
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let name = t.name().to_lowercase();
    let reference = std::fs::read(dir.join(format!("llamacpp-k-{name}.bin"))).unwrap();
    let mut ours = vec![0u8; quant::bytes_for(t, x.len()).unwrap()];
    quantize(t, &x, &mut ours).unwrap();
    assert_eq!(ours.len(), reference.len());
    let bs = t.type_size();
    for (i, (a, b)) in ours.chunks(bs).zip(reference.chunks(bs)).enumerate() {
        assert_eq!(a, b, "{}: block {i} differs from llama-quantize", t.name());
    }
}

#[test]
fn legacy_quantizers_match_llama_quantize() {
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ] {
        check_against_llamacpp(t);
    }
}
