//! Every SIMD dot kernel this machine can run equals the scalar reference
//! within float tolerance, on random and adversarial rows of several lengths;
//! the SIMD activation quantizer equals the reference bytes exactly; SIMD row
//! dequantization is bit-identical with `quant::dequantize`.

mod common;

use common::XorShift as Rng;

use quant::dot::{self, Isa};
use quant::{Format, GgmlType};

/// Activation values of one flavour.
fn activations(rng: &mut Rng, n: usize, flavour: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match flavour {
            0 => rng.unit() * 3.0,
            // Large dynamic range, with exact zeros.
            1 => {
                if i % 7 == 0 {
                    0.0
                } else {
                    rng.unit() * 10f32.powi((i % 9) as i32 - 4)
                }
            }
            // Values landing on rounding ties after scaling, and one big outlier per block.
            2 => {
                if i % 32 == 5 {
                    127.0
                } else {
                    (i % 255) as f32 - 127.0 + 0.5
                }
            }
            _ => 0.0,
        })
        .collect()
}

/// A valid f16 scale of moderate size (no NaN/Inf: the kernels' float order
/// differs from the reference, so only finite rows are compared).
fn scale_f16(rng: &mut Rng) -> [u8; 2] {
    let v = (rng.unit() * 0.05).max(-0.05);
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// A random weight row of `t` with sane scales and random (adversarial) codes.
fn weight_row(rng: &mut Rng, t: GgmlType, n: usize, flavour: usize) -> Vec<u8> {
    let nb = n / t.block_size();
    let ts = t.type_size();
    let mut row = rng.bytes(nb * ts);
    for b in row.chunks_exact_mut(ts) {
        if flavour == 3 {
            // Saturated codes: every bit set (largest magnitudes).
            b.fill(0xFF);
        }
        let s = scale_f16(rng);
        match t {
            GgmlType::Q4_0
            | GgmlType::Q5_0
            | GgmlType::Q8_0
            | GgmlType::IQ4_NL
            | GgmlType::Q1_0 => b[0..2].copy_from_slice(&s),
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
                b[0..2].copy_from_slice(&s);
                b[2..4].copy_from_slice(&scale_f16(rng));
            }
            // E8M0 exponents 0..200 (0 and 1 are special) in flavour 2; larger ones overflow.
            GgmlType::MXFP4 if flavour == 2 => b[0] = (rng.next() % 200) as u8,
            GgmlType::MXFP4 => b[0] = 110 + (rng.next() % 30) as u8,
            GgmlType::Q2_K => {
                b[80..82].copy_from_slice(&s);
                b[82..84].copy_from_slice(&scale_f16(rng));
            }
            GgmlType::Q3_K => b[108..110].copy_from_slice(&s),
            GgmlType::Q6_K => b[208..210].copy_from_slice(&s),
            GgmlType::IQ4_XS => b[0..2].copy_from_slice(&s),
            GgmlType::F16 => {
                b.copy_from_slice(&half::f16::from_f32(rng.unit()).to_bits().to_le_bytes())
            }
            GgmlType::BF16 => {
                b.copy_from_slice(&half::bf16::from_f32(rng.unit()).to_bits().to_le_bytes())
            }
            GgmlType::F32 => b.copy_from_slice(&rng.unit().to_le_bytes()),
            _ => {}
        }
    }
    row
}

/// The largest possible |Σ| for tolerance: Σ |w_i|·|a_i| from dequantized rows.
fn magnitude(t: GgmlType, w: &[u8], act: GgmlType, a: &[u8], n: usize) -> f64 {
    let mut wf = vec![0f32; n];
    let mut af = vec![0f32; n];
    quant::dequantize(t, w, &mut wf).unwrap();
    quant::dequantize(act, a, &mut af).unwrap();
    wf.iter()
        .zip(&af)
        .map(|(x, y)| (*x as f64 * *y as f64).abs())
        .sum()
}

/// Whether the codecs a test needs for `t` exist.
fn codecs_ready(t: GgmlType) -> bool {
    let act = dot::activation_type(t).unwrap_or(t);
    quant::can_dequantize(t) && quant::can_dequantize(act) && quant::can_quantize(act)
}

const TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::MXFP4,
    GgmlType::Q1_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_XS,
];

#[test]
fn every_simd_kernel_matches_the_scalar_reference() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut checked = 0;
    for &t in TYPES
        .iter()
        .inspect(|t| assert!(codecs_ready(**t), "{t:?}: codecs missing"))
    {
        let reference = dot::kernel_for_isa(t, Isa::Scalar)
            .unwrap_or_else(|| panic!("{t:?}: no scalar kernel"));
        let act = reference.activation_type();
        for &blocks_of_256 in &[1usize, 2, 3, 16] {
            // 256·k elements: whole blocks of every format (NVFP4/Q1_0 included).
            let n = 256 * blocks_of_256 + if t.block_size() <= 32 { 96 } else { 0 };
            let n = n - n % t.block_size().max(act.block_size());
            for flavour in 0..4 {
                let w = weight_row(&mut rng, t, n, flavour);
                let xf = activations(&mut rng, n, flavour % 3);
                let mut a = vec![0u8; quant::bytes_for(act, n).unwrap()];
                dot::quantize_activations(act, &xf, &mut a).unwrap();
                let want = reference.dot(&w, &a).unwrap();
                let tol = magnitude(t, &w, act, &a, n) * 2e-6 + 1e-30;
                for isa in Isa::ALL {
                    if isa == Isa::Scalar {
                        continue;
                    }
                    let Some(k) = dot::kernel_for_isa(t, isa) else {
                        continue;
                    };
                    let got = k.dot(&w, &a).unwrap();
                    assert!(
                        got == want || ((got - want) as f64).abs() <= tol,
                        "{t:?} {} n={n} flavour={flavour}: got {got}, scalar {want}, tol {tol}",
                        k.isa()
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} SIMD results compared");
}

#[test]
fn scalar_reference_matches_dequantized_f64_dot() {
    let mut rng = Rng(77);
    for &t in TYPES
        .iter()
        .inspect(|t| assert!(codecs_ready(**t), "{t:?}: codecs missing"))
    {
        let k = dot::kernel_for_isa(t, Isa::Scalar).unwrap();
        let act = k.activation_type();
        let n = 512;
        let w = weight_row(&mut rng, t, n, 0);
        let xf = activations(&mut rng, n, 0);
        let mut a = vec![0u8; quant::bytes_for(act, n).unwrap()];
        dot::quantize_activations(act, &xf, &mut a).unwrap();
        let mut wf = vec![0f32; n];
        let mut af = vec![0f32; n];
        quant::dequantize(t, &w, &mut wf).unwrap();
        quant::dequantize(act, &a, &mut af).unwrap();
        let exact: f64 = wf.iter().zip(&af).map(|(x, y)| *x as f64 * *y as f64).sum();
        // Q4_1/Q5_1 use the f16-rounded block sum `s` of Q8_1, as ggml does.
        let slack = if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1) {
            2e-3
        } else {
            2e-6
        };
        let tol = magnitude(t, &w, act, &a, n) * slack;
        let got = k.dot(&w, &a).unwrap() as f64;
        assert!(
            (got - exact).abs() <= tol,
            "{t:?}: scalar {got}, dequantized {exact}"
        );
    }
}

#[test]
fn kernel_for_picks_the_best_available_isa_and_validates_lengths() {
    let k = dot::kernel_for(GgmlType::Q4_0).expect("Q4_0 has a kernel");
    assert_eq!(k.activation_type(), GgmlType::Q8_0);
    let best = Isa::ALL.iter().rev().find(|i| i.available()).unwrap();
    if dot::kernel_for_isa(GgmlType::Q4_0, *best).is_some() {
        assert_eq!(k.isa(), best.name());
    }
    assert!(k.dot(&[0u8; 17], &[0u8; 34]).is_err());
    assert!(k.dot(&[0u8; 18], &[0u8; 33]).is_err());
    assert!(k.dot(&[0u8; 36], &[0u8; 34]).is_err());
    assert_eq!(k.dot(&[0u8; 18], &[0u8; 34]).unwrap(), 0.0);
    assert_eq!(dot::activation_type(GgmlType::Q4_1), Some(GgmlType::Q8_1));
    assert_eq!(dot::activation_type(GgmlType::Q6_K), Some(GgmlType::Q8_K));
    assert_eq!(dot::activation_type(GgmlType::NVFP4), Some(GgmlType::Q8_0));
    assert_eq!(dot::activation_type(GgmlType::Q1_0), Some(GgmlType::Q8_0));
    assert_eq!(dot::activation_type(GgmlType::BF16), Some(GgmlType::BF16));
    assert_eq!(dot::activation_type(GgmlType::I32), None);
    for t in GgmlType::ALL {
        if let Some(k) = dot::kernel_for(t) {
            assert_eq!(k.weight_type(), t);
        }
    }
}

#[test]
fn simd_activation_quantization_equals_the_reference_bytes() {
    let mut rng = Rng(99);
    for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K]
        .into_iter()
        .inspect(|t| assert!(codecs_ready(*t), "{t:?}: codecs missing"))
    {
        for flavour in 0..4 {
            for n in [256usize, 512, 4096] {
                let mut x = activations(&mut rng, n, flavour);
                if flavour == 3 {
                    // Specials: NaN, ±Inf, subnormals, a block of ties.
                    x[3] = f32::NAN;
                    x[200] = f32::INFINITY;
                    x[201] = f32::NEG_INFINITY;
                    x[40] = 1e-42;
                    for (i, v) in x[64..96].iter_mut().enumerate() {
                        *v = i as f32 - 15.5;
                    }
                }
                let len = quant::bytes_for(act, n).unwrap();
                let (mut simd, mut reference) = (vec![0u8; len], vec![0u8; len]);
                dot::quantize_activations(act, &x, &mut simd).unwrap();
                quant::quantize(act, &x, &mut reference).unwrap();
                assert_eq!(simd, reference, "{act:?} flavour {flavour} n {n}");
            }
        }
    }
    let mut short = vec![0u8; 33];
    assert!(dot::quantize_activations(GgmlType::Q8_0, &[0.0; 32], &mut short).is_err());
}

#[test]
fn simd_row_dequantization_is_bit_identical() {
    let mut rng = Rng(5);
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q5_K,
        GgmlType::IQ4_XS,
    ];
    for t in types
        .into_iter()
        .inspect(|t| assert!(codecs_ready(*t), "{t:?}: codecs missing"))
    {
        for n in [256usize, 1024, 4096 + 256] {
            // Raw random bytes: NaN/Inf scales and codes included.
            let src = rng.bytes(quant::bytes_for(t, n).unwrap());
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            dot::dequantize_row(Format::Ggml(t), &src, &mut a).unwrap();
            quant::dequantize(t, &src, &mut b).unwrap();
            for i in 0..n {
                assert_eq!(a[i].to_bits(), b[i].to_bits(), "{t:?} n={n} element {i}");
            }
        }
    }
    assert!(dot::dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut [0f32; 32]).is_err());
}

#[test]
fn dot_accepts_exactly_the_matching_row_lengths() {
    // `dot` checks lengths without integer division; it must agree with the
    // exact rule (whole weight blocks, activation bytes for the same elements).
    for t in GgmlType::ALL {
        let Some(k) = dot::kernel_for(t) else {
            continue;
        };
        let act = k.activation_type();
        let (ts, bs) = (t.type_size(), t.block_size());
        for blocks in [0usize, 1, 2, 3, 7, 64] {
            for dw in [-1isize, 0, 1] {
                let wlen = (blocks * ts) as isize + dw;
                if wlen < 0 {
                    continue;
                }
                let w = vec![0u8; wlen as usize];
                let want_act = quant::bytes_for(act, blocks * bs).ok();
                for da in [-1isize, 0, 1] {
                    let Some(base) = want_act else { continue };
                    let alen = base as isize + da;
                    if alen < 0 {
                        continue;
                    }
                    let a = vec![0u8; alen as usize];
                    let ok = dw == 0 && da == 0;
                    assert_eq!(
                        k.dot(&w, &a).is_ok(),
                        ok,
                        "{t:?}: weight {wlen} bytes, activation {alen} bytes"
                    );
                }
            }
        }
    }
}

#[test]
fn simd_kernels_handle_every_leftover_block_count() {
    // The 32-element kernels run eight blocks per iteration and finish the row
    // through a padded copy: check every block count up to 2·8 + 7.
    let mut rng = Rng(0x5eed);
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::IQ4_NL,
        GgmlType::MXFP4,
    ] {
        let reference = dot::kernel_for_isa(t, Isa::Scalar).unwrap();
        let act = reference.activation_type();
        for nb in 1..=23usize {
            let n = nb * 32;
            let w = weight_row(&mut rng, t, n, nb % 4);
            let xf = activations(&mut rng, n, nb % 3);
            let mut a = vec![0u8; quant::bytes_for(act, n).unwrap()];
            dot::quantize_activations(act, &xf, &mut a).unwrap();
            let want = reference.dot(&w, &a).unwrap();
            let tol = magnitude(t, &w, act, &a, n) * 2e-6 + 1e-30;
            for isa in Isa::ALL {
                let Some(k) = dot::kernel_for_isa(t, isa) else {
                    continue;
                };
                let got = k.dot(&w, &a).unwrap();
                assert!(
                    got == want || ((got - want) as f64).abs() <= tol,
                    "{t:?} {} blocks={nb}: got {got}, scalar {want}",
                    k.isa()
                );
            }
        }
    }
}
