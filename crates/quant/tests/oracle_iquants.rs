//! The i-quant dequantizers against gguf-py (`gguf.quants.dequantize`): random
//! and adversarial blocks must decode bit-identically. Each type is sent to
//! gguf-py in one batch, since every call costs a Python start-up.

mod common;

use common::{assert_bits_eq, Oracle, XorShift as Rng};
use quant::{GgmlType, QuantError};
use std::process::Command;

/// f16 scale bit patterns worth trying: NaN, ±Inf, ±0, the smallest
/// subnormal, the largest finite.
const SPECIAL_F16: [u16; 8] = [
    0x7E00, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001, 0x7BFF, 0xFBFF,
];

/// Writes the f16 super-block scale of a block of `t`.
fn set_scale(t: GgmlType, block: &mut [u8], bits: u16) {
    if t == GgmlType::IQ1_M {
        // the scale's nibbles are the top 4 bits of the four little-endian u16 at 48..56
        for k in 0..4 {
            let at = 48 + 2 * k;
            let w = u16::from_le_bytes([block[at], block[at + 1]]);
            let w = (w & 0x0FFF) | (((bits >> (4 * k)) & 0xF) << 12);
            block[at..at + 2].copy_from_slice(&w.to_le_bytes());
        }
    } else {
        block[..2].copy_from_slice(&bits.to_le_bytes());
    }
}

/// Random blocks with sane scales, random blocks with random scale bits,
/// special scales, all-zero and all-0xFF blocks.
fn test_blocks(t: GgmlType, seed: u64) -> Vec<u8> {
    let size = t.type_size();
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for i in 0..96 {
        let mut b = rng.bytes(size);
        if i < 64 {
            let s = rng.scale();
            set_scale(t, &mut b, s);
        }
        out.extend(b);
    }
    for s in SPECIAL_F16 {
        let mut b = rng.bytes(size);
        set_scale(t, &mut b, s);
        out.extend(b);
    }
    out.extend(vec![0u8; size]);
    out.extend(vec![0xFFu8; size]);
    let mut b = vec![0xFFu8; size];
    set_scale(t, &mut b, 0x3C00);
    out.extend(b);
    out
}

fn check(t: GgmlType, seed: u64) {
    let blocks = test_blocks(t, seed);
    let n = blocks.len() / t.type_size() * t.block_size();
    let mut ours = vec![0f32; n];
    quant::dequantize(t, &blocks, &mut ours).unwrap();
    match common::dequantize(t.name(), &blocks) {
        Oracle::Value(reference) => assert_bits_eq(t.name(), &ours, &reference),
        Oracle::NotImplemented => panic!("gguf-py 0.19 dequantizes {}; it should answer", t.name()),
    }
}

#[test]
fn iq2_xxs_matches_gguf_py() {
    check(GgmlType::IQ2_XXS, 1);
}
#[test]
fn iq2_xs_matches_gguf_py() {
    check(GgmlType::IQ2_XS, 2);
}
#[test]
fn iq2_s_matches_gguf_py() {
    check(GgmlType::IQ2_S, 3);
}
#[test]
fn iq3_xxs_matches_gguf_py() {
    check(GgmlType::IQ3_XXS, 4);
}
#[test]
fn iq3_s_matches_gguf_py() {
    check(GgmlType::IQ3_S, 5);
}
#[test]
fn iq1_s_matches_gguf_py() {
    check(GgmlType::IQ1_S, 6);
}
#[test]
fn iq1_m_matches_gguf_py() {
    check(GgmlType::IQ1_M, 7);
}
#[test]
fn iq4_nl_matches_gguf_py() {
    check(GgmlType::IQ4_NL, 8);
}
#[test]
fn iq4_xs_matches_gguf_py() {
    check(GgmlType::IQ4_XS, 9);
}

/// Every grid entry equals gguf-py's decoded grid (which gguf-py builds from
/// its own packed copy of ggml's tables).
#[test]
fn grids_match_gguf_py() {
    let script = r#"
import sys, numpy as np
from gguf import quants as q
for name in ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S"]:
    c = getattr(q, name)
    c.init_grid()
    g = np.asarray(c.grid).reshape(c.grid_shape).astype(np.int64)
    sys.stdout.write(name + " " + bytes((g & 0xFF).astype(np.uint8).ravel()).hex() + "\n")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 must be installed to run the gguf-py oracle tests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let to_bytes64 = |g: &[u64]| g.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let to_bytes32 = |g: &[u32]| g.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let mut seen = 0;
    for line in text.lines() {
        let (name, hex) = line.split_once(' ').unwrap();
        let theirs: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let ours = match name {
            "IQ2_XXS" => to_bytes64(&quant::grids::IQ2XXS_GRID),
            "IQ2_XS" => to_bytes64(&quant::grids::IQ2XS_GRID),
            "IQ2_S" => to_bytes64(&quant::grids::IQ2S_GRID),
            "IQ3_XXS" => to_bytes32(&quant::grids::IQ3XXS_GRID),
            "IQ3_S" => to_bytes32(&quant::grids::IQ3S_GRID),
            "IQ1_S" => to_bytes64(&quant::grids::IQ1S_GRID),
            _ => unreachable!(),
        };
        assert_eq!(ours, theirs, "{name} grid differs from gguf-py");
        seen += 1;
    }
    assert_eq!(seen, 6);
}

/// The sign table has even parity and matches gguf-py's copy.
#[test]
fn ksigns_have_even_parity() {
    for (i, &s) in quant::grids::KSIGNS_IQ2XS.iter().enumerate() {
        assert_eq!(usize::from(s & 0x7F), i);
        assert_eq!(s.count_ones() % 2, 0);
    }
}

/// gguf-py has no IQ4_NL quantizer; ours is checked against values worked
/// out by hand from ggml's algorithm (scale = least-squares refit of the codes
/// chosen at `max / -127`, weights `x²`).
#[test]
fn iq4_nl_quantizer_worked_example() {
    // x = levels * 0.25 with one large negative value: max = -127 * 0.25, so the
    // first-pass scale d = max / -127 = 0.25 reproduces every level exactly and
    // the refit keeps 0.25.
    let levels = quant::grids::KVALUES_IQ4NL;
    let x: Vec<f32> = (0..32)
        .map(|i| f32::from(levels[(i * 5) % 16]) * 0.25)
        .collect();
    let mut q = vec![0u8; 18];
    quant::quantize(GgmlType::IQ4_NL, &x, &mut q).unwrap();
    assert_eq!(
        u16::from_le_bytes([q[0], q[1]]),
        half::f16::from_f32(0.25).to_bits()
    );
    for j in 0..16 {
        assert_eq!(q[2 + j] & 0xF, ((j * 5) % 16) as u8);
        assert_eq!(q[2 + j] >> 4, (((j + 16) * 5) % 16) as u8);
    }
    let mut y = vec![0f32; 32];
    quant::dequantize(GgmlType::IQ4_NL, &q, &mut y).unwrap();
    assert_eq!(x, y);
    // all zeros → zero scale, code 0
    let mut q0 = vec![0xAAu8; 18];
    quant::quantize(GgmlType::IQ4_NL, &[0.0; 32], &mut q0).unwrap();
    assert_eq!(q0, vec![0u8; 18]);
}

#[test]
fn only_iq4_nl_quantizes() {
    for t in [
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ4_XS,
    ] {
        assert!(quant::can_dequantize(t));
        let n = t.block_size();
        let mut out = vec![0u8; t.type_size()];
        assert_eq!(
            quant::quantize(t, &vec![0.0; n], &mut out),
            Err(QuantError::Unsupported {
                format: t.into(),
                op: "quantize"
            })
        );
    }
    assert!(quant::can_quantize(GgmlType::IQ4_NL));
}
