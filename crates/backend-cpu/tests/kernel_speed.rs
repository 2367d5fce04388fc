//! Matmul kernel timings on SmolLM2-135M shapes (ignored by default; run
//! `cargo test --release -p backend-cpu --test kernel_speed -- --ignored
//! --nocapture`). The best of many runs, so that a busy machine disturbs
//! the figures less.

use backend_core::{Backend, GgmlType};
use backend_cpu::testsuite::{Rng, TestWeight};
use backend_cpu::CpuBackend;
use std::time::Instant;

#[test]
#[ignore = "timing, not a check"]
fn matmul_speed() {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let b = CpuBackend::new(threads).unwrap();
    let mut rng = Rng::new(5);
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    for ty in types {
        // ffn_down (1536 → 576) and ffn_up (576 → 1536).
        for (k, n) in [(1536, 576), (576, 1536)] {
            if k % ty.block_size() != 0 {
                continue;
            }
            let w = TestWeight::random(&mut rng, ty, k, n, 0.05);
            let wb = w.load(&b);
            for t in [128usize, 1] {
                let x = b.upload(&rng.vec(t * k, 1.0), t, k).unwrap();
                let mut out = b.zeros(t, n).unwrap();
                let reps = if t == 1 { 400 } else { 20 };
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let s = Instant::now();
                    b.matmul(&wb, &x, &mut out).unwrap();
                    best = best.min(s.elapsed().as_secs_f64());
                }
                let gmacs = (k * n * t) as f64 / best / 1e9;
                println!(
                    "{:>5} k={k:>5} n={n:>5} t={t:>3} threads={threads}: {:>8.1} us  {gmacs:>6.2} GMAC/s",
                    ty.name(),
                    best * 1e6
                );
            }
        }
    }
}
