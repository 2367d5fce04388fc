//! MXFP6 (OCP MX v1.0, E2M3 and E3M2) through the public API: the spec's
//! element values, scale handling, NaN blocks, exact round trips and rounding.

use quant::{ExtFormat, Format};

const E2M3: Format = Format::Ext(ExtFormat::Mxfp6E2M3);
const E3M2: Format = Format::Ext(ExtFormat::Mxfp6E3M2);

/// A block with scale byte `e` and the 32 codes `codes`, packed 6 bits each, little-endian.
fn block(e: u8, codes: &[u8; 32]) -> Vec<u8> {
    let mut b = vec![0u8; 25];
    b[0] = e;
    for (i, &c) in codes.iter().enumerate() {
        let bit = 6 * i;
        let v = u16::from(c) << (bit % 8);
        b[1 + bit / 8] |= v as u8;
        if bit / 8 + 1 < 24 {
            b[2 + bit / 8] |= (v >> 8) as u8;
        }
    }
    b
}

fn dq(f: Format, b: &[u8]) -> Vec<f32> {
    let mut y = vec![0f32; b.len() / 25 * 32];
    quant::dequantize(f, b, &mut y).unwrap();
    y
}

fn q(f: Format, x: &[f32]) -> Vec<u8> {
    let mut b = vec![0u8; x.len() / 32 * 25];
    quant::quantize(f, x, &mut b).unwrap();
    b
}

#[test]
fn layout_is_25_bytes_per_32_elements() {
    assert_eq!(quant::bytes_for(E2M3, 64).unwrap(), 50);
    assert_eq!(E3M2.block_size(), 32);
    assert_eq!(std::mem::size_of::<quant::blocks::BlockMxfp6>(), 25);
    assert_eq!(E2M3.name(), "MXFP6_E2M3");
}

#[test]
fn ocp_element_values_with_unit_scale() {
    // OCP MX v1.0 table 2 (FP6 E2M3 / E3M2): max normal, min normal,
    // max subnormal, min subnormal, zero, and their negatives.
    let mut codes = [0u8; 32];
    codes[..5].copy_from_slice(&[0b011111, 0b001000, 0b000111, 0b000001, 0b000000]);
    codes[5..10].copy_from_slice(&[0b111111, 0b101000, 0b100111, 0b100001, 0b100000]);
    let y = dq(E2M3, &block(127, &codes));
    assert_eq!(
        &y[..10],
        &[7.5, 1.0, 0.875, 0.125, 0.0, -7.5, -1.0, -0.875, -0.125, -0.0]
    );

    let mut codes = [0u8; 32];
    codes[..5].copy_from_slice(&[0b011111, 0b000100, 0b000011, 0b000001, 0b000000]);
    codes[5..8].copy_from_slice(&[0b111111, 0b100100, 0b100001]);
    let y = dq(E3M2, &block(127, &codes));
    assert_eq!(
        &y[..8],
        &[28.0, 0.25, 0.1875, 0.0625, 0.0, -28.0, -0.25, -0.0625]
    );
}

#[test]
fn scale_byte_is_a_power_of_two_and_ff_is_nan() {
    let mut codes = [0u8; 32];
    codes[0] = 0b001000; // 1.0 in E2M3
    assert_eq!(dq(E2M3, &block(130, &codes))[0], 8.0);
    assert_eq!(dq(E2M3, &block(0, &codes))[0], 2f32.powi(-127));
    assert_eq!(dq(E2M3, &block(254, &codes))[0], 2f32.powi(127));
    assert!(dq(E2M3, &block(0xFF, &codes)).iter().all(|v| v.is_nan()));
    assert!(dq(E3M2, &block(0xFF, &[0; 32])).iter().all(|v| v.is_nan()));
}

#[test]
fn shared_exponent_is_floor_log2_amax_minus_emax() {
    let mut x = [0.5f32; 32];
    x[7] = 7.5; // floor(log2 7.5) = 2, emax(E2M3) = 2 → exponent 0 → byte 127
    assert_eq!(q(E2M3, &x)[0], 127);
    x[7] = 8.0; // 3 - 2 = 1 → 128
    assert_eq!(q(E2M3, &x)[0], 128);
    x[7] = 28.0; // 4 - 4 = 0 for E3M2
    assert_eq!(q(E3M2, &x)[0], 127);
    // clamped at both ends of E8M0
    let tiny = [f32::from_bits(1); 32]; // 2^-149 → -151, clamped to -127
    assert_eq!(q(E2M3, &tiny)[0], 0);
    let huge = [f32::MAX; 32]; // 127 - 2 = 125
    assert_eq!(q(E2M3, &huge)[0], 252);
    assert_eq!(q(E3M2, &huge)[0], 250);
    // all zero: smallest scale, zero codes, decodes to zeros
    let z = q(E2M3, &[0.0; 32]);
    assert_eq!(z, vec![0u8; 25]);
    assert_eq!(dq(E2M3, &z), vec![0.0; 32]);
}

#[test]
fn nan_or_inf_makes_a_nan_block() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = [1.0f32; 64];
        x[40] = bad;
        let b = q(E3M2, &x);
        // first block: amax 1 → exponent 0 - 4 → byte 123; second block is NaN
        assert_eq!(b[0], 123);
        assert_eq!(b[25], 0xFF);
        let y = dq(E3M2, &b);
        assert!(y[..32].iter().all(|&v| v == 1.0));
        assert!(y[32..].iter().all(|v| v.is_nan()));
    }
}

#[test]
fn representable_values_round_trip_exactly() {
    for (f, top) in [(E2M3, 31u8), (E3M2, 31u8)] {
        // every code at several scales (all values share one block exponent)
        for e in [100u8, 127, 140, 200] {
            let mut codes = [0u8; 32];
            for (i, c) in codes.iter_mut().enumerate() {
                *c = if i == 0 { top } else { (i as u8 * 5) & 0x3F };
            }
            let b = block(e, &codes);
            let y = dq(f, &b);
            let b2 = q(f, &y);
            assert_eq!(dq(f, &b2), y, "{f} scale byte {e}");
            assert_eq!(b2[0], e);
        }
    }
}

#[test]
fn rounding_is_to_nearest_even_with_saturation() {
    // E2M3 with unit scale (amax 7.5 pins the exponent): steps of 0.125 below 2,
    // 0.25 in [2, 4), 0.5 in [4, 8).
    let mut x = [0.0f32; 32];
    x[0] = 7.5;
    x[1] = 1.0625; // tie between 1.0 (even code) and 1.125 → 1.0
    x[2] = 1.1875; // tie between 1.125 and 1.25 (even) → 1.25
    x[3] = 4.25; // tie between 4.0 (even) and 4.5 → 4.0
    x[4] = 4.74; // nearest 4.5
    x[5] = -0.0625; // tie between -0 (even) and -0.125 → -0
    x[6] = 0.0624; // → 0
    x[7] = 7.4; // → 7.5
    x[8] = -3.875; // tie between -3.75 (odd code) and -4.0 (even) → -4.0
    let y = dq(E2M3, &q(E2M3, &x));
    assert_eq!(&y[..9], &[7.5, 1.0, 1.25, 4.0, 4.5, -0.0, 0.0, 7.5, -4.0]);

    // saturation: 7.9 is above the largest E2M3 value at this exponent (amax 7.9
    // keeps exponent 0) and clamps to 7.5 instead of rounding up.
    let mut x = [0.0f32; 32];
    x[0] = 7.9;
    let y = dq(E2M3, &q(E2M3, &x));
    assert_eq!(y[0], 7.5);
    // E3M2: 31 → 28 at exponent 0
    x[0] = 31.0;
    let y = dq(E3M2, &q(E3M2, &x));
    assert_eq!(y[0], 28.0);
}

#[test]
fn reachable_through_the_generic_api() {
    assert!(quant::can_quantize(E2M3) && quant::can_dequantize(E3M2));
    let x: Vec<f32> = (0..96).map(|i| (i as f32 - 48.0) / 8.0).collect();
    for f in [E2M3, E3M2] {
        let y = dq(f, &q(f, &x));
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 0.25 * 6.0, "{f}: {a} → {b}");
        }
    }
}
