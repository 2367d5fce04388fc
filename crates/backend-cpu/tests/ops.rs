//! The shared backend test suite on the CPU backend (2 threads, default f16
//! KV cache), plus CPU-only checks.

use backend_core::{Backend, GgmlType};
use backend_cpu::testsuite::{self, Rng, TestWeight};
use backend_cpu::{CpuBackend, KvType};

backend_cpu::backend_tests!(CpuBackend::new(2).expect("cpu backend"));

/// With an f32 cache the attention must match the f64 reference tightly.
#[test]
fn attention_f32_cache_tight() {
    let b = CpuBackend::new(2).unwrap().with_kv_type(KvType::F32);
    testsuite::attention_with_tolerance(&b, 2e-5);
}

/// One thread gives the same matmul/attention results as several.
#[test]
fn thread_count_does_not_change_results() {
    let mut rng = Rng::new(42);
    let w = TestWeight::random(&mut rng, GgmlType::Q4_1, 576, 1536, 0.05);
    let x = rng.vec(5 * 576, 1.0);
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let b = CpuBackend::new(threads).unwrap();
        let wb = w.load(&b);
        let xt = b.upload(&x, 5, 576).unwrap();
        let mut out = b.zeros(5, 1536).unwrap();
        b.matmul(&wb, &xt, &mut out).unwrap();
        results.push(b.download(&out).unwrap());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

/// GELU on the CPU equals ggml's f16-table evaluation bit for bit.
#[test]
fn gelu_matches_ggml_table_rule() {
    for bits in (0u16..=u16::MAX).step_by(7) {
        let x = half::f16::from_bits(bits).to_f32();
        if !x.is_finite() {
            continue;
        }
        let want = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            half::f16::from_f32(backend_cpu::gelu_formula(x)).to_f32()
        };
        assert_eq!(
            backend_cpu::gelu_ggml(x).to_bits(),
            want.to_bits(),
            "x = {x}"
        );
    }
}

/// Weights inside a registered mapping are used in place; others are copied.
#[test]
fn registered_mapping_is_zero_copy() {
    let b = CpuBackend::new(1).unwrap();
    let mut rng = Rng::new(3);
    let w = TestWeight::random(&mut rng, GgmlType::Q8_0, 64, 4, 1.0);
    let copied = w.load(&b);
    assert!(!copied.is_mapped());
    let map: std::sync::Arc<Vec<u8>> = std::sync::Arc::new(w.bytes.clone());
    b.register_mapping(map.clone());
    let view = backend_core::WeightView {
        name: "mapped",
        ggml_type: GgmlType::Q8_0,
        dims: [64, 4, 1, 1],
        data: &map[..],
    };
    let mapped = b.load_weight(&view).unwrap();
    assert!(mapped.is_mapped());
    assert_eq!(mapped.bytes().as_ptr(), map.as_ptr());
}

/// Bad weight views are errors, not panics.
#[test]
fn bad_weight_views_are_errors() {
    let b = CpuBackend::new(1).unwrap();
    let data = vec![0u8; 100];
    for (dims, ty) in [
        ([33usize, 1, 1, 1], GgmlType::Q4_0),
        ([32, 2, 1, 1], GgmlType::Q8_0),
    ] {
        let v = backend_core::WeightView {
            name: "bad",
            ggml_type: ty,
            dims,
            data: &data,
        };
        assert!(b.load_weight(&v).is_err());
    }
    assert!(b.name().starts_with("cpu ("));
}

/// The multi-token kernels (row lanes for Q4_0/Q4_1/Q5_0/Q8_0/Q4_K/Q5_K/Q6_K,
/// token tiles) and the one-token (4-row) kernels agree with `quant::dot` row by
/// row (same integer block sums; only the f32 summation order differs:
/// tolerance 1e-5 of Σ|w·x| + 1e-6).
#[test]
fn multi_token_kernels_agree_with_vec_dot() {
    let b = CpuBackend::new(2).unwrap();
    let mut rng = Rng::new(77);
    // Both SIMD levels (the AVX2 one forced; on an AVX2-only CPU both runs
    // take it). The switch is process-wide, but either level is correct for
    // the tests running at the same time.
    for (force_avx2, ty) in [false, true].into_iter().flat_map(|f| {
        [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ]
        .map(|t| (f, t))
    }) {
        CpuBackend::force_avx2_kernels(force_avx2);
        let k = if ty.block_size() == 256 { 512 } else { 576 };
        // 11 and 37 tokens: the row-lane kernels (with a partial tile and a
        // partial group of rows); 3: the token-tile kernels; 1: decode.
        for (k, n, t) in [(k, 97, 11), (k, 13, 37), (k, 97, 3), (k, 97, 1)] {
            let w = TestWeight::random(&mut rng, ty, k, n, 0.05);
            let x = rng.vec(t * k, 1.0);
            let wb = w.load(&b);
            let mut out = b.zeros(t, n).unwrap();
            b.matmul(&wb, &b.upload(&x, t, k).unwrap(), &mut out)
                .unwrap();
            let got = b.download(&out).unwrap();
            let kern = quant::dot::kernel_for(ty).unwrap();
            let act_ty = kern.activation_type();
            let row_bytes = w.bytes.len() / n;
            for tok in 0..t {
                let xr = &x[tok * k..(tok + 1) * k];
                let mut act = vec![0u8; quant::bytes_for(act_ty, k).unwrap()];
                quant::dot::quantize_activations(act_ty, xr, &mut act).unwrap();
                for r in 0..n {
                    let want = kern
                        .dot(&w.bytes[r * row_bytes..(r + 1) * row_bytes], &act)
                        .unwrap();
                    let scale: f32 = w.values[r * k..(r + 1) * k]
                        .iter()
                        .zip(xr)
                        .map(|(a, c)| (a * c).abs())
                        .sum();
                    let g = got[tok * n + r];
                    assert!(
                        (g - want).abs() <= 1e-5 * scale + 1e-6,
                        "{} (avx2 forced: {force_avx2}) token {tok} row {r}: {g} vs vec_dot {want}",
                        ty.name()
                    );
                }
            }
        }
    }
    CpuBackend::force_avx2_kernels(false);
}
