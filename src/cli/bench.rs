//! `rocmforge bench`: prompt processing (pp) and token generation (tg) speed,
//! measured like llama-bench: random token ids, `-p` tokens evaluated as one
//! prompt, `-n` tokens generated one at a time, each test repeated `-r` times
//! after a warm-up, the mean reported. With `--tg-feed picked` each
//! generated step is given the id the step before picked (greedy), as
//! generation does.

use crate::cli::device::{self, DeviceChoice, EngineTask};
use anyhow::Result;
use clap::Args;
use engine::{Backend, Engine, EngineOptions, Rng};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `rocmforge bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// Prompt tokens per pp test (0: skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens per tg test (0: skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    reps: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Where to run: `auto`, `cpu` or `gpu` (as `rocmforge generate`).
    #[arg(long = "device", value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// What each tg step is given: `random` ids (as llama-bench) or the id
    /// the step before picked (greedy, as generation does; where the
    /// backend picks tokens itself).
    #[arg(long = "tg-feed", value_enum, default_value = "random")]
    tg_feed: TgFeed,
}

/// The ids a tg test feeds its steps.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TgFeed {
    /// Random ids, fixed in advance (llama-bench's way).
    Random,
    /// Each step's greedy pick, fed to the next step (generation's way).
    Picked,
}

/// Run `rocmforge bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let opts = EngineOptions {
        n_ctx: Some((args.n_prompt + args.n_gen).max(1)),
        threads: args.threads,
    };
    device::run_on_engine(args.device, &args.model.clone(), opts, args)
}

impl EngineTask for BenchArgs {
    fn run<B: Backend + 'static>(self, engine: Engine<B>) -> Result<()> {
        bench(&engine, &self)
    }
}

fn bench<B: Backend>(engine: &Engine<B>, args: &BenchArgs) -> Result<()> {
    let n_ctx = engine.n_ctx();
    let cfg = engine.model().config().clone();
    let mut rng = Rng::new(1234);
    let mut random_ids = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| (rng.next_u64() % cfg.n_vocab as u64) as u32)
            .collect()
    };
    let reps = args.reps.max(1);

    let pp = if args.n_prompt > 0 {
        let ids = random_ids(args.n_prompt);
        engine.session()?.eval(&ids)?; // warm-up
        let mut total = 0.0;
        for _ in 0..reps {
            let mut s = engine.session()?;
            let t = Instant::now();
            s.eval(&ids)?;
            total += t.elapsed().as_secs_f64();
        }
        Some(args.n_prompt as f64 * reps as f64 / total)
    } else {
        None
    };
    let tg = if args.n_gen > 0 {
        let ids = random_ids(args.n_gen);
        // As generation does: where the backend picks tokens itself, the
        // logits stay on the device and only the (greedy) id comes back.
        let on_device = engine.model().backend().selects_tokens();
        let greedy = engine::TokenSelect::default();
        {
            let mut s = engine.session()?; // warm-up
            s.eval(&ids[..1])?;
        }
        let mut total = 0.0;
        for _ in 0..reps {
            let mut s = engine.session()?;
            let t = Instant::now();
            let mut picked = ids[0];
            for id in &ids {
                if on_device {
                    let feed = match args.tg_feed {
                        TgFeed::Random => *id,
                        TgFeed::Picked => picked,
                    };
                    picked = s.eval_select(std::slice::from_ref(&feed), &greedy)?;
                } else {
                    s.eval(std::slice::from_ref(id))?;
                }
            }
            total += t.elapsed().as_secs_f64();
        }
        Some(args.n_gen as f64 * reps as f64 / total)
    } else {
        None
    };
    let model_bytes = std::fs::metadata(&args.model).map_or(0, |m| m.len());
    let kv_bytes =
        2 * cfg.n_layer * n_ctx * cfg.n_head_kv * cfg.head_dim * std::mem::size_of::<f32>();
    let rss = peak_rss_bytes();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model.display().to_string(),
                "backend": engine.model().backend().name(),
                "n_prompt": args.n_prompt,
                "n_gen": args.n_gen,
                "repetitions": reps,
                "pp_tokens_per_s": pp,
                "tg_tokens_per_s": tg,
                "model_bytes": model_bytes,
                "kv_cache_bytes": kv_bytes,
                "peak_rss_bytes": rss,
            })
        );
    } else {
        println!("backend: {}", engine.model().backend().name());
        if let Some(pp) = pp {
            println!("pp{}: {pp:.1} tokens/s", args.n_prompt);
        }
        if let Some(tg) = tg {
            println!("tg{}: {tg:.1} tokens/s", args.n_gen);
        }
        println!(
            "peak RSS {:.1} MB (model file {:.1} MB, KV cache {:.1} MB)",
            rss as f64 / 1e6,
            model_bytes as f64 / 1e6,
            kv_bytes as f64 / 1e6
        );
    }
    Ok(())
}

/// Peak resident set size of this process (Linux: VmHWM), 0 where unknown.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
