//! MXFP4, NVFP4, TQ1_0, TQ2_0 (and Q1_0) against gguf-py: dequantization
//! bit-identical on random and adversarial blocks, quantizers byte-identical
//! where gguf-py quantizes (MXFP4, TQ1_0, TQ2_0).

mod common;

use common::{assert_bits_eq, Oracle, XorShift as Rng};
use quant::GgmlType;
use std::process::Command;

fn dequant_check(t: GgmlType, blocks: &[u8]) {
    let n = blocks.len() / t.type_size() * t.block_size();
    let mut ours = vec![0f32; n];
    quant::dequantize(t, blocks, &mut ours).unwrap();
    match common::dequantize(t.name(), blocks) {
        Oracle::Value(reference) => assert_bits_eq(t.name(), &ours, &reference),
        Oracle::NotImplemented => panic!("gguf-py 0.19 dequantizes {}", t.name()),
    }
}

fn quant_check(t: GgmlType, values: &[f32]) {
    let mut ours = vec![0u8; quant::bytes_for(t, values.len()).unwrap()];
    quant::quantize(t, values, &mut ours).unwrap();
    match common::quantize(t.name(), values) {
        Oracle::Value(reference) => {
            assert_eq!(ours.len(), reference.len());
            let bs = t.type_size();
            for (i, (a, b)) in ours.chunks(bs).zip(reference.chunks(bs)).enumerate() {
                assert_eq!(a, b, "{}: block {i} differs", t.name());
            }
        }
        Oracle::NotImplemented => panic!("gguf-py 0.19 quantizes {}", t.name()),
    }
}

#[test]
fn mxfp4_dequantize_matches_gguf_py() {
    let mut rng = Rng(11);
    let mut blocks = Vec::new();
    // every scale byte, including 0x00/0x01 (subnormal halves) and 0xFF
    for e in 0..=255u8 {
        blocks.push(e);
        blocks.extend(rng.bytes(16));
    }
    blocks.extend([0u8; 17]);
    blocks.extend([0xFFu8; 17]);
    dequant_check(GgmlType::MXFP4, &blocks);
}

#[test]
fn nvfp4_dequantize_matches_gguf_py() {
    let mut rng = Rng(12);
    let mut blocks = Vec::new();
    // every scale byte appears in each sub-block position
    for e in 0..=255u8 {
        blocks.extend([e, e.wrapping_add(1), 0x7F, e ^ 0x80]);
        blocks.extend(rng.bytes(32));
    }
    for _ in 0..32 {
        blocks.extend(rng.bytes(36));
    }
    blocks.extend([0u8; 36]);
    blocks.extend([0xFFu8; 36]);
    dequant_check(GgmlType::NVFP4, &blocks);
}

/// Random payloads (including invalid trit bytes > 242 for TQ1_0 and code 3
/// for TQ2_0) with sane and special f16 scales.
fn ternary_blocks(t: GgmlType, seed: u64) -> Vec<u8> {
    let size = t.type_size();
    let mut rng = Rng(seed);
    let mut blocks = Vec::new();
    let specials = [
        0x7E00u16, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001, 0x7BFF, 0x3C00,
    ];
    for i in 0..64 {
        let mut b = rng.bytes(size);
        let d = if i < specials.len() {
            specials[i]
        } else {
            (0x2000 + (rng.next() % 0x3000)) as u16 | (((rng.next() & 1) as u16) << 15)
        };
        b[size - 2..].copy_from_slice(&d.to_le_bytes());
        blocks.extend(b);
    }
    blocks.extend(vec![0u8; size]);
    blocks.extend(vec![0xFFu8; size]);
    blocks
}

#[test]
fn tq1_0_dequantize_matches_gguf_py() {
    dequant_check(GgmlType::TQ1_0, &ternary_blocks(GgmlType::TQ1_0, 13));
}

#[test]
fn tq2_0_dequantize_matches_gguf_py() {
    dequant_check(GgmlType::TQ2_0, &ternary_blocks(GgmlType::TQ2_0, 14));
}

/// Rows of varied magnitude plus edge cases: an all-zero block, exact
/// powers of two, values on the midpoints between FP4 levels, tiny values.
fn quant_inputs(block: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut v = Vec::new();
    for k in 0..48 {
        let mag = 2f32.powi(k % 24 - 12);
        v.extend((0..block).map(|_| rng.unit() * mag));
    }
    v.extend(vec![0.0; block]);
    v.extend((0..block).map(|i| 2f32.powi(i as i32 % 8 - 4) * if i % 2 == 0 { 1.0 } else { -1.0 }));
    // FP4 midpoints for scale 1 (amax 6 → e = 129, d = 2, doubled levels halve it back)
    let mids = [
        0.25f32, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -1.25, -5.0, 6.0,
    ];
    v.extend((0..block).map(|i| mids[i % mids.len()]));
    v.extend((0..block).map(|i| (i as f32 - 7.0) * 1e-30));
    // just below powers of two, where floor(log2) is delicate
    v.extend((0..block).map(|i| f32::from_bits(0x407F_FFFF) * if i == 3 { 1.0 } else { 0.1 }));
    // one ulp below 2^20 and 2^-20: log2f rounds up to the integer there
    for bits in [0x497F_FFFFu32, 0x357F_FFFF, 0x7F7F_FFFF] {
        v.extend((0..block).map(|i| f32::from_bits(bits) * if i == 5 { -1.0 } else { 0.3 }));
    }
    v
}

#[test]
fn mxfp4_quantize_matches_gguf_py() {
    quant_check(GgmlType::MXFP4, &quant_inputs(32, 21));
}

#[test]
fn tq1_0_quantize_matches_gguf_py() {
    quant_check(GgmlType::TQ1_0, &quant_inputs(256, 22));
}

#[test]
fn tq2_0_quantize_matches_gguf_py() {
    quant_check(GgmlType::TQ2_0, &quant_inputs(256, 23));
}

/// gguf-py 0.19 cannot quantize NVFP4 (nor handle Q1_0 at all); our
/// quantizers follow ggml's `quantize_row_nvfp4_ref` / `quantize_row_q1_0_ref`
/// and are checked for exact round trips of representable values.
#[test]
fn nvfp4_and_q1_0_quantizers_round_trip_representable_values() {
    // NVFP4: sub-block amax 6 * 2^k with levels of E2M1 → exact.
    let e2m1 = [0.0f32, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let x: Vec<f32> = (0..64)
        .map(|i| {
            let s = 2f32.powi((i / 16) as i32 - 1);
            let v = e2m1[i % 8] * s;
            if i % 16 == 15 {
                6.0 * s
            } else if i % 3 == 0 {
                -v
            } else {
                v
            }
        })
        .collect();
    let mut q = vec![0u8; 36];
    quant::quantize(GgmlType::NVFP4, &x, &mut q).unwrap();
    let mut y = vec![0f32; 64];
    quant::dequantize(GgmlType::NVFP4, &q, &mut y).unwrap();
    for (a, b) in x.iter().zip(&y) {
        assert_eq!(a.abs(), b.abs()); // -0.0 may come back as +0.0
    }

    let x: Vec<f32> = (0..128)
        .map(|i| if i % 5 == 0 { -0.5 } else { 0.5 })
        .collect();
    let mut q = vec![0u8; 18];
    quant::quantize(GgmlType::Q1_0, &x, &mut q).unwrap();
    let mut y = vec![0f32; 128];
    quant::dequantize(GgmlType::Q1_0, &q, &mut y).unwrap();
    assert_eq!(x, y);
}

/// Q1_0 against ggml's definition (gguf-py has no codec): bit set → +d, clear → -d.
#[test]
fn q1_0_dequantize_follows_ggml_definition() {
    let mut rng = Rng(31);
    let mut blocks = Vec::new();
    for d in [0x3C00u16, 0xC000, 0x7E00, 0x7C00, 0x0001, 0x0000] {
        blocks.extend(d.to_le_bytes());
        blocks.extend(rng.bytes(16));
    }
    let mut y = vec![0f32; blocks.len() / 18 * 128];
    quant::dequantize(GgmlType::Q1_0, &blocks, &mut y).unwrap();
    for (b, out) in blocks.chunks(18).zip(y.chunks(128)) {
        let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        for (j, &v) in out.iter().enumerate() {
            let expect = if b[2 + j / 8] >> (j % 8) & 1 == 1 {
                d
            } else {
                -d
            };
            assert!(v.to_bits() == expect.to_bits() || (v.is_nan() && expect.is_nan()));
        }
    }
    assert!(matches!(
        common::dequantize("Q1_0", &blocks),
        Oracle::NotImplemented
    ));
}

/// NVFP4's scale bytes equal gguf-py's port of ggml's `ggml_fp32_to_ue4m3`
/// applied to `amax / 6` (gguf-py cannot quantize NVFP4 as a whole; the code
/// selection is the same as MXFP4's, compared with gguf-py above).
#[test]
fn nvfp4_scale_bytes_match_gguf_py_ue4m3_encoder() {
    let mut rng = Rng(41);
    let mut x = Vec::new();
    // sub-blocks from far below the UE4M3 subnormal range to above its saturation
    for k in 0..256 {
        let mag = 2f32.powi(k % 40 - 24);
        x.extend((0..16).map(|_| rng.unit() * mag));
    }
    // two zero sub-blocks (also keeps whole 64-element blocks)
    x.extend([0.0f32; 32]);
    // amax / 6 exactly on UE4M3 rounding midpoints and code boundaries
    for bits in [
        0x3F88_0000u32,
        0x3F98_0000,
        0x43E0_0000,
        0x43E8_0000,
        0x3C00_0000,
        0x3B80_0000,
    ] {
        let v = f32::from_bits(bits) * 6.0;
        x.extend((0..16).map(|i| if i == 9 { -v } else { v / 3.0 }));
    }
    let mut q = vec![0u8; quant::bytes_for(GgmlType::NVFP4, x.len()).unwrap()];
    quant::quantize(GgmlType::NVFP4, &x, &mut q).unwrap();
    let ours: Vec<u8> = q.chunks(36).flat_map(|b| b[..4].to_vec()).collect();

    let input = std::env::temp_dir().join(format!("rocmforge-nvfp4-scales-{}", std::process::id()));
    std::fs::write(
        &input,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let script = r#"
import sys, numpy as np
from gguf import quants as q
x = np.fromfile(sys.argv[1], dtype="<f4").reshape(-1, 16)
amax = np.abs(x).max(axis=-1)
sys.stdout.write(bytes(q.NVFP4.fp32_to_ue4m3(amax / np.float32(6.0)).astype(np.uint8)).hex())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&input)
        .output()
        .expect("python3 must be installed to run the gguf-py oracle tests");
    let _ = std::fs::remove_file(&input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = String::from_utf8(out.stdout).unwrap();
    let theirs: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(ours, theirs);
}
