//! Per-token decode latency on the CPU, robust against a busy machine:
//! `decode_latency MODEL.gguf [THREADS] [TOKENS] [REPS]` decodes the same
//! `TOKENS` random ids (as `rocmforge bench -p 0` does) `REPS` times and
//! prints the mean tokens/s (what `bench` prints), that of the fastest
//! repetition (comparable with the best of `llama-bench`'s `samples_ts`), the
//! tokens/s of the sum of
//! each position's fastest step over the repetitions ("best") and of each
//! position's median step ("median").

use engine::{Engine, EngineOptions, Rng};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: decode_latency MODEL.gguf [THREADS] [TOKENS] [REPS]")?;
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let engine = Engine::load(
        path,
        EngineOptions {
            n_ctx: Some(n),
            threads: Some(threads),
        },
    )?;
    let n_vocab = engine.model().config().n_vocab as u64;
    let mut rng = Rng::new(1234);
    let ids: Vec<u32> = (0..n).map(|_| (rng.next_u64() % n_vocab) as u32).collect();
    engine.session()?.eval(&ids[..1])?; // warm-up
    let mut times = vec![Vec::with_capacity(reps); n];
    let mut total = 0.0;
    let mut best_rep = f64::MAX;
    for _ in 0..reps {
        let mut s = engine.session()?;
        let mut rep = 0.0;
        for (i, id) in ids.iter().enumerate() {
            let t = Instant::now();
            s.eval(std::slice::from_ref(id))?;
            let dt = t.elapsed().as_secs_f64();
            times[i].push(dt);
            rep += dt;
        }
        total += rep;
        best_rep = best_rep.min(rep);
    }
    let mut best = 0.0;
    let mut median = 0.0;
    for t in &mut times {
        t.sort_by(f64::total_cmp);
        best += t[0];
        median += t[t.len() / 2];
    }
    println!(
        "mean {:.1} best-rep {:.1} best {:.1} median {:.1} tokens/s",
        (n * reps) as f64 / total,
        n as f64 / best_rep,
        n as f64 / best,
        n as f64 / median
    );
    Ok(())
}
