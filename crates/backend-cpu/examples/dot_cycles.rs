//! Cycles per weight of the matmul on one thread (run under `perf stat -e
//! cycles:u`): `dot_cycles TYPE TOKENS ITERS`.

use backend_core::{Backend, GgmlType};
use backend_cpu::testsuite::{Rng, TestWeight};
use backend_cpu::CpuBackend;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ty = args
        .get(1)
        .and_then(|s| GgmlType::from_name(s))
        .unwrap_or(GgmlType::Q4_1);
    let t: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let b = CpuBackend::new(threads).unwrap();
    let mut rng = Rng::new(1);
    let (k, n) = if ty.block_size() == 256 {
        (1536, 576)
    } else {
        (576, 1536)
    };
    let w = TestWeight::random(&mut rng, ty, k, n, 0.05).load(&b);
    let x = b.upload(&rng.vec(k * t, 1.0), t, k).unwrap();
    let mut out = b.zeros(t, n).unwrap();
    // The fastest call approximates an unloaded machine.
    let mut el = f64::MAX;
    for _ in 0..iters {
        let start = std::time::Instant::now();
        b.matmul(&w, &x, &mut out).unwrap();
        el = el.min(start.elapsed().as_secs_f64());
    }
    let (el, iters) = (el, 1usize);
    let weights = (576 * 1536 * t) as f64;
    println!(
        "{} t={t}: {:.3} ns per weight·token, {:.1} us per call (fastest)",
        ty.name(),
        el * 1e9 / weights,
        el * 1e6 / iters as f64
    );
}
