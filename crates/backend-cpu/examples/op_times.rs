//! Fastest-call time of each op at SmolLM2-135M shapes (one decode token
//! and a 128-token prompt): `op_times [THREADS]`. The fastest of many calls
//! approximates an unloaded machine.

use std::time::Instant;

use backend_core::{AttnSpec, Backend, GgmlType, GluKind, RopeMode, RopeSpec};
use backend_cpu::testsuite::{f32_weight, Rng, TestWeight};
use backend_cpu::CpuBackend;

fn fastest(iters: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e6
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let b = CpuBackend::new(threads).unwrap();
    let mut rng = Rng::new(5);
    let norm = f32_weight(&b, &rng.vec(576, 1.0));
    let wq = TestWeight::random(&mut rng, GgmlType::Q4_1, 576, 576, 0.05).load(&b);
    let rope = RopeSpec {
        mode: RopeMode::Normal,
        n_dims: 64,
        freq_base: 10000.0,
        freq_scale: 1.0,
        yarn: None,
    };
    let spec = AttnSpec {
        n_head: 9,
        n_head_kv: 3,
        head_dim: 64,
        scale: 0.125,
        sliding_window: None,
        softcap: None,
    };
    let mut cache = b.kv_cache(1, 1024, 3, 64).unwrap();
    let kv = b.upload(&rng.vec(1024 * 192, 1.0), 1024, 192).unwrap();
    b.kv_store(&mut cache, 0, &kv, &kv, 0..1024, 0).unwrap();
    println!("{}", b.name());
    for t in [1usize, 128] {
        let x = b.upload(&rng.vec(t * 576, 1.0), t, 576).unwrap();
        let mut out = b.zeros(t, 576).unwrap();
        let g = b.upload(&rng.vec(t * 1536, 1.0), t, 1536).unwrap();
        let mut go = b.zeros(t, 1536).unwrap();
        let pos: Vec<u32> = (0..t as u32).map(|p| p + 300).collect();
        let iters = if t == 1 { 2000 } else { 50 };
        let r = [
            (
                "rms_norm 576",
                fastest(iters, || {
                    b.rms_norm(&x, Some(&norm), 576, 1e-5, &mut out).unwrap()
                }),
            ),
            (
                "matmul q4_1 576x576",
                fastest(iters, || b.matmul(&wq, &x, &mut out).unwrap()),
            ),
            (
                "rope 9x64",
                fastest(iters, || b.rope(&mut out, 9, &pos, &rope).unwrap()),
            ),
            (
                "attention @300",
                fastest(iters, || {
                    b.attention(&out.clone(), &cache, 0, 0..t, 300, &spec, &mut out)
                        .unwrap()
                }),
            ),
            (
                "glu silu 1536",
                fastest(iters, || b.glu(&g, &g, GluKind::Silu, &mut go).unwrap()),
            ),
            ("add 576", fastest(iters, || b.add(&mut out, &x).unwrap())),
        ];
        for (name, us) in r {
            println!("t={t:<4} {name:<22} {us:>9.1} us");
        }
    }
}
