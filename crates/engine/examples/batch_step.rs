//! Time batched decode steps as the server runs them: `batch_step MODEL.gguf
//! [THREADS] [STEPS] [TEMP] [COUNTS]`. For 1, 4 and 8 sequences (a short prompt each), prints
//! the fastest and median wall time of one decode step (forward pass of all
//! sequences + sampling), split into forward and sampling, and the implied
//! aggregate tokens/s. Fastest-of-many approximates an unloaded machine.

use engine::{CpuBackend, LogitsWanted, Model, Sampler, SamplingOptions, SeqChunk};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: batch_step MODEL.gguf [THREADS] [STEPS]")?;
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(48);
    let temp: f32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let model = Model::load(path, Arc::new(CpuBackend::new(threads)?))?;
    // What the server pays when 8 requests arrive (`--ctx-size 4096`).
    let t = Instant::now();
    let fresh = (0..8)
        .map(|_| model.new_sequence(4096))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "8 new 4096-position sequences: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(fresh);
    let prompt: Vec<u32> = vec![
        1, 9066, 253, 1930, 1345, 563, 253, 7558, 665, 2880, 288, 4063, 30,
    ];
    let counts: Vec<usize> = args
        .get(5)
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 8]);
    for n in counts {
        let mut seqs = (0..n)
            .map(|_| model.new_sequence(512))
            .collect::<Result<Vec<_>, _>>()?;
        let mut samplers: Vec<Sampler> = (0..n)
            .map(|i| {
                Sampler::new(SamplingOptions {
                    temperature: temp,
                    seed: i as u64,
                    ..Default::default()
                })
            })
            .collect::<Result<_, _>>()?;
        let mut chunks: Vec<SeqChunk<'_, CpuBackend>> = seqs
            .iter_mut()
            .map(|s| SeqChunk {
                seq: s,
                tokens: &prompt,
                logits: LogitsWanted::Last,
            })
            .collect();
        let mut logits = model.forward(&mut chunks)?;
        drop(chunks);
        let (mut fwd, mut smp, mut tot) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..steps {
            let t0 = Instant::now();
            let next: Vec<[u32; 1]> = samplers
                .iter_mut()
                .zip(&logits)
                .map(|(s, l)| {
                    let id = s.sample(l);
                    s.accept(id);
                    [id]
                })
                .collect();
            let t1 = Instant::now();
            let mut chunks: Vec<SeqChunk<'_, CpuBackend>> = seqs
                .iter_mut()
                .zip(&next)
                .map(|(s, t)| SeqChunk {
                    seq: s,
                    tokens: t,
                    logits: LogitsWanted::Last,
                })
                .collect();
            logits = model.forward(&mut chunks)?;
            let t2 = Instant::now();
            smp.push((t1 - t0).as_secs_f64() * 1e3);
            fwd.push((t2 - t1).as_secs_f64() * 1e3);
            tot.push((t2 - t0).as_secs_f64() * 1e3);
        }
        let stat = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let (fmin, fmed) = stat(&mut fwd);
        let (smin, smed) = stat(&mut smp);
        let (tmin, tmed) = stat(&mut tot);
        println!(
            "{n} seqs: step {tmin:.2} ms min / {tmed:.2} med (forward {fmin:.2} / {fmed:.2}, sampling {smin:.3} / {smed:.3}) -> {:.1} t/s best, {:.1} t/s median",
            n as f64 * 1e3 / tmin,
            n as f64 * 1e3 / tmed
        );
    }
    Ok(())
}
