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

/// One-token mat-vec bandwidth (GB/s of weight bytes) for the legacy
/// formats, on a weight that stays in L2 (compute bound) and on 64 MB of
/// weights (about a SmolLM2-135M decode step's worth), best of many runs.
#[test]
#[ignore = "timing, not a check"]
fn decode_stream_speed() {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let b = CpuBackend::new(threads).unwrap();
    let mut rng = Rng::new(7);
    let k: usize = std::env::var("K")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(576);
    let x = b.upload(&rng.vec(k, 1.0), 1, k).unwrap();
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let row_bytes = k / 32 * ty.type_size();
        for total in [512usize << 10, 64 << 20] {
            let n = (total / row_bytes).next_multiple_of(4);
            // Several weights of at most 8 MB (random generation is slow
            // for one huge one: reuse one and vary nothing else).
            let per = n.min((8 << 20) / row_bytes).next_multiple_of(4);
            let copies = n.div_ceil(per);
            let tws: Vec<_> = (0..copies)
                .map(|_| TestWeight::random(&mut rng, ty, k, per, 0.05))
                .collect();
            let ws: Vec<_> = tws.iter().map(|t| t.load(&b)).collect();
            let mut out = b.zeros(1, per).unwrap();
            let reps = if total < (1 << 20) { 2000 } else { 30 };
            let mut best = f64::MAX;
            for _ in 0..reps {
                let s = Instant::now();
                for w in &ws {
                    b.matmul(w, &x, &mut out).unwrap();
                }
                best = best.min(s.elapsed().as_secs_f64());
            }
            let bytes = (copies * per * row_bytes) as f64;
            println!(
                "{:>5} k={k} {:>6} KiB threads={threads}: {:>9.1} us  {:>6.2} GB/s",
                ty.name(),
                (copies * per * row_bytes) >> 10,
                best * 1e6,
                bytes / best / 1e9
            );
        }
    }
}

/// Cost of one small parallel region (rayon, from inside the pool) at two
/// threads: the fork/join of a decode step's ~150 regions.
#[test]
#[ignore = "timing, not a check"]
fn region_overhead() {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let data: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    for work in [0usize, 256, 4096] {
        let per = pool.install(|| {
            let n = 20000;
            let s = Instant::now();
            let mut acc = 0.0f32;
            for _ in 0..n {
                // Some serial work between regions (as norms etc. are).
                acc += data[..work].iter().sum::<f32>();
                let v: f32 = (0..8usize)
                    .into_par_iter()
                    .map(|i| data[i * 8..i * 8 + 8].iter().sum::<f32>())
                    .sum();
                acc += v;
            }
            std::hint::black_box(acc);
            s.elapsed().as_secs_f64() / n as f64
        });
        println!(
            "rayon region, {work} serial adds between: {:.2} us",
            per * 1e6
        );
    }
}

/// A SmolLM2-135M decode step's matmuls alone (30 layers of q/k/v, o,
/// gate/up and down through `matmul_many` / `matmul`, one token, fresh
/// weights per layer): the sum over the 120 calls of each one's fastest of
/// `STEPS` (60) steps, to compare with the whole step.
#[test]
#[ignore = "timing, not a check"]
fn decode_step_matmuls() {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let ty = match std::env::var("TYPE").as_deref() {
        Ok("q4_1") => GgmlType::Q4_1,
        Ok("q8_0") => GgmlType::Q8_0,
        _ => GgmlType::Q4_0,
    };
    let b = CpuBackend::new(threads).unwrap();
    let mut rng = Rng::new(9);
    let (e, kv, ff) = (576, 192, 1536);
    let shapes = [(e, e), (e, kv), (e, kv), (e, e), (e, ff), (e, ff), (ff, e)];
    let layers: Vec<Vec<TestWeight>> = (0..30)
        .map(|_| {
            shapes
                .iter()
                .map(|&(k, n)| {
                    let mut t = TestWeight::random(&mut rng, ty, k, n, 0.05);
                    t.values = Vec::new();
                    t
                })
                .collect()
        })
        .collect();
    let ws: Vec<Vec<_>> = layers
        .iter()
        .map(|l| l.iter().map(|t| t.load(&b)).collect())
        .collect();
    let x = b.upload(&rng.vec(e, 1.0), 1, e).unwrap();
    let xf = b.upload(&rng.vec(ff, 1.0), 1, ff).unwrap();
    let mut q = b.zeros(1, e).unwrap();
    let mut kk = b.zeros(1, kv).unwrap();
    let mut v = b.zeros(1, kv).unwrap();
    let mut o = b.zeros(1, e).unwrap();
    let mut g = b.zeros(1, ff).unwrap();
    let mut u = b.zeros(1, ff).unwrap();
    let bytes: usize = layers.iter().flatten().map(|t| t.bytes.len()).sum();
    // Per call, the fastest of the steps (robust against a busy machine).
    let steps: usize = std::env::var("STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut calls = vec![f64::MAX; 4 * ws.len()];
    b.run_pass(|| {
        for _ in 0..steps {
            let mut t = Instant::now();
            let mut lap = |i: usize| {
                let now = Instant::now();
                calls[i] = calls[i].min((now - t).as_secs_f64());
                t = now;
            };
            for (il, l) in ws.iter().enumerate() {
                b.matmul_many(&x, &[&l[0], &l[1], &l[2]], &mut [&mut q, &mut kk, &mut v])
                    .unwrap();
                lap(4 * il);
                b.matmul(&l[3], &x, &mut o).unwrap();
                lap(4 * il + 1);
                b.matmul_many(&x, &[&l[4], &l[5]], &mut [&mut g, &mut u])
                    .unwrap();
                lap(4 * il + 2);
                b.matmul(&l[6], &xf, &mut o).unwrap();
                lap(4 * il + 3);
            }
        }
    });
    let best: f64 = calls.iter().sum();
    println!(
        "{} threads={threads}: 120 calls {:.1} us ({:.1} MB, {:.2} GB/s)",
        ty.name(),
        best * 1e6,
        bytes as f64 / 1e6,
        bytes as f64 / best / 1e9
    );
}
