//! K-quant oracle tests: dequantization bit-identical with gguf-py (Q2_K ..
//! Q6_K) or with a hand-written reference (Q8_K); quantization byte-identical
//! with bytes `llama-quantize` wrote (`tests/data/README.md`) and, for Q8_K,
//! with a hand-written reference.

mod common;

use common::{assert_bits_eq, Oracle, SplitMix as Rng};
use quant::blocks::BlockQ8K;
use quant::{dequantize, quantize, GgmlType};

/// f16 bit patterns that stress the dequantizers.
const ADVERSARIAL_F16: [u16; 12] = [
    0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00,
];

/// Random super-blocks, then per adversarial f16 value: random, all-zero and
/// all-ones bodies with every f16 field set to it, and random bodies with
/// only one of the f16 fields set to it.
fn dequant_cases(t: GgmlType, f16_at: &[usize], seed: u64) -> Vec<u8> {
    let bs = t.type_size();
    let mut rng = Rng(seed);
    let mut out = rng.bytes(bs * 256);
    for &h in &ADVERSARIAL_F16 {
        for fill in [None, Some(0u8), Some(0xff), Some(0x55)] {
            let mut b = match fill {
                None => rng.bytes(bs),
                Some(v) => vec![v; bs],
            };
            for &at in f16_at {
                b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
            out.extend_from_slice(&b);
        }
        for &at in f16_at {
            let mut b = rng.bytes(bs);
            b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&b);
        }
    }
    out.extend(vec![0u8; bs]);
    out
}

fn check_dequantize(t: GgmlType, f16_at: &[usize], seed: u64) {
    let bytes = dequant_cases(t, f16_at, seed);
    let mut ours = vec![0f32; bytes.len() / t.type_size() * 256];
    dequantize(t, &bytes, &mut ours).unwrap();
    let theirs = match common::dequantize(t.name(), &bytes) {
        Oracle::Value(v) => v,
        Oracle::NotImplemented => panic!("gguf-py cannot dequantize {}", t.name()),
    };
    assert_bits_eq(t.name(), &ours, &theirs);
}

#[test]
fn dequantize_q2_k() {
    check_dequantize(GgmlType::Q2_K, &[80, 82], 21);
}

#[test]
fn dequantize_q3_k() {
    check_dequantize(GgmlType::Q3_K, &[108], 22);
}

#[test]
fn dequantize_q4_k() {
    check_dequantize(GgmlType::Q4_K, &[0, 2], 23);
}

#[test]
fn dequantize_q5_k() {
    check_dequantize(GgmlType::Q5_K, &[0, 2], 24);
}

#[test]
fn dequantize_q6_k() {
    check_dequantize(GgmlType::Q6_K, &[208], 25);
}

/// gguf-py has no Q8_K: the reference is ggml's definition `y = d * q` with
/// an `f32` `d`, written out here.
#[test]
fn dequantize_q8_k_by_hand() {
    let mut rng = Rng(26);
    let mut bytes = rng.bytes(292 * 64);
    for (i, d) in [0.0f32, -0.0, 1e-45, f32::MAX, f32::INFINITY, f32::NAN, -3.5]
        .iter()
        .enumerate()
    {
        bytes[292 * i..292 * i + 4].copy_from_slice(&d.to_le_bytes());
    }
    let mut ours = vec![0f32; 64 * 256];
    dequantize(GgmlType::Q8_K, &bytes, &mut ours).unwrap();
    let mut reference = Vec::new();
    for b in bytes.chunks(292) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        reference.extend(b[4..260].iter().map(|&q| d * f32::from(q as i8)));
    }
    assert_bits_eq("Q8_K", &ours, &reference);
}

/// ggml's Q8_K rule written out independently: `d = max / -127` for the
/// largest-magnitude element `max`, `q = min(127, round_half_even(x·(-127/max)))`,
/// 16-element sums.
fn q8_k_reference(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks(256) {
        let max = b
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        if max == 0.0 {
            out.extend([0u8; 292]);
            continue;
        }
        let iscale = -127.0 / max;
        let qs: Vec<i8> = b
            .iter()
            .map(|&v| ((iscale * v).round_ties_even() as i32).min(127) as i8)
            .collect();
        out.extend((1.0 / iscale).to_le_bytes());
        out.extend(qs.iter().map(|&q| q as u8));
        for g in qs.chunks(16) {
            out.extend((g.iter().map(|&q| i16::from(q)).sum::<i16>()).to_le_bytes());
        }
    }
    out
}

#[test]
fn quantize_q8_k_by_hand() {
    let mut rng = Rng(27);
    let mut x: Vec<f32> = (0..256 * 16).map(|_| rng.normal()).collect();
    x.extend((0..256).map(|i| i as f32 - 100.0)); // positive max: negative d
    x.extend((0..256).map(|i| 100.0 - i as f32)); // negative max: positive d
    x.extend([0.0f32; 256]);
    x.extend((0..256).map(|i| ((i % 9) as f32 - 4.0) * 0.5 * (127.0 / 254.0) * 2.0)); // ties
    x.extend((0..256).map(|i| (i as f32 - 128.0) * 1e-30));
    let mut ours = vec![0u8; quant::bytes_for(GgmlType::Q8_K, x.len()).unwrap()];
    quantize(GgmlType::Q8_K, &x, &mut ours).unwrap();
    assert_eq!(ours, q8_k_reference(&x));

    // the typed row function agrees with the byte API
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); x.len() / 256];
    quant::reference::quantize_row_q8_k(&x, &mut blocks);
    let typed: &[BlockQ8K] = &blocks;
    assert_eq!(bytemuck::cast_slice::<BlockQ8K, u8>(typed), &ours[..]);
    assert!(blocks[16].d < 0.0 && blocks[17].d > 0.0);
    assert_eq!(blocks[16].qs[255], -127);
}

/// The input `llama-quantize` quantized, and its output for `t`.
fn llamacpp_reference(t: &str) -> (Vec<f32>, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let input = std::fs::read(dir.join("llamacpp-k-input.f32")).unwrap();
    let x = input
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (
        x,
        std::fs::read(dir.join(format!("llamacpp-k-{t}.bin"))).unwrap(),
    )
}

fn check_against_llamacpp(t: GgmlType) {
    let (x, reference) = llamacpp_reference(&t.name().to_lowercase());
    let mut ours = vec![0u8; quant::bytes_for(t, x.len()).unwrap()];
    quantize(t, &x, &mut ours).unwrap();
    let bs = t.type_size();
    for (row, (a, b)) in ours.chunks(bs).zip(reference.chunks(bs)).enumerate() {
        assert_eq!(
            a,
            b,
            "{}: super-block {row} differs from llama-quantize",
            t.name()
        );
    }
    assert_eq!(ours.len(), reference.len());
}

#[test]
fn quantize_q2_k_matches_llama_quantize() {
    check_against_llamacpp(GgmlType::Q2_K);
}

#[test]
fn quantize_q3_k_matches_llama_quantize() {
    check_against_llamacpp(GgmlType::Q3_K);
}

#[test]
fn quantize_q4_k_matches_llama_quantize() {
    check_against_llamacpp(GgmlType::Q4_K);
}

#[test]
fn quantize_q5_k_matches_llama_quantize() {
    check_against_llamacpp(GgmlType::Q5_K);
}

#[test]
fn quantize_q6_k_matches_llama_quantize() {
    check_against_llamacpp(GgmlType::Q6_K);
}
