//! Decode mat-vec timings at the shapes of the synthetic 1b and 8b LLaMA
//! models (not a test; for tuning reports). Weights are random bytes (the
//! time does not depend on the values), several copies per shape so that
//! the round robin over them streams from device memory, not from L2.
//! `cargo run --release -p backend-hip --example matvec_shapes [ITERS [TYPES]]`
//! (TYPES: comma-separated format names such as `q4_0,q8_0`; all by default);
//! under `ncu -k regex:matvec` the per-kernel times are the exact ones.

use std::time::Instant;

use backend_core::{Backend, GgmlType, WeightView};
use backend_hip::HipBackend;

/// (rows, values per row, format, what it is).
const SHAPES: &[(usize, usize, GgmlType, &str)] = &[
    (28672, 4096, GgmlType::Q4_K, "8b gate+up"),
    (6144, 4096, GgmlType::Q4_K, "8b q+k+v"),
    (4096, 4096, GgmlType::Q4_K, "8b o"),
    (4096, 14336, GgmlType::Q4_K, "8b down"),
    (4096, 14336, GgmlType::Q6_K, "8b down (Q6_K)"),
    (1024, 4096, GgmlType::Q6_K, "8b v (Q6_K)"),
    (49152, 4096, GgmlType::Q6_K, "8b output"),
    (16384, 2048, GgmlType::Q4_K, "1b gate+up"),
    (3072, 2048, GgmlType::Q4_K, "1b q+k+v"),
    (2048, 2048, GgmlType::Q4_K, "1b o"),
    (2048, 8192, GgmlType::Q4_K, "1b down"),
    (28672, 4096, GgmlType::Q4_0, "8b gate+up"),
    (6144, 4096, GgmlType::Q4_0, "8b q+k+v"),
    (4096, 4096, GgmlType::Q4_0, "8b o"),
    (4096, 14336, GgmlType::Q4_0, "8b down"),
    (28672, 4096, GgmlType::Q8_0, "8b gate+up"),
    (6144, 4096, GgmlType::Q8_0, "8b q+k+v"),
    (4096, 4096, GgmlType::Q8_0, "8b o"),
    (4096, 14336, GgmlType::Q8_0, "8b down"),
];

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let types: Vec<String> = std::env::args()
        .nth(2)
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let g = match HipBackend::try_new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no usable GPU: {e}");
            return;
        }
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for &(n, k, ty, what) in SHAPES {
        if !types.is_empty() && !types.iter().any(|t| t == &ty.name().to_ascii_lowercase()) {
            continue;
        }
        let bytes_per = quant::bytes_for(ty, n * k).expect("whole blocks");
        // At least 256 MB over all copies: far past the L2 cache.
        let copies = (256usize << 20).div_ceil(bytes_per).clamp(2, 64);
        let weights: Vec<_> = (0..copies)
            .map(|_| {
                let data: Vec<u8> = (0..bytes_per)
                    .map(|_| (next() >> 32) as u8 & 0x3B)
                    .collect();
                let v = WeightView {
                    name: "w",
                    ggml_type: ty,
                    dims: [k, n, 1, 1],
                    data: &data,
                };
                g.load_weight(&v).expect("weight upload")
            })
            .collect();
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
            .collect();
        let xt = g.upload(&x, 1, k).expect("upload");
        let mut out = g.zeros(1, n).expect("alloc");
        for w in &weights {
            g.matmul(w, &xt, &mut out).expect("matmul");
        }
        g.synchronize().expect("sync");
        let t = Instant::now();
        for i in 0..iters {
            g.matmul(&weights[i % copies], &xt, &mut out)
                .expect("matmul");
        }
        g.synchronize().expect("sync");
        let s = t.elapsed().as_secs_f64() / iters as f64;
        println!(
            "{what:<16} {n:>6}x{k:<6} {:<5} {:8.2} us {:7.0} GB/s (with the activation quantization)",
            ty.name(),
            s * 1e6,
            bytes_per as f64 / s / 1e9
        );
    }
}
