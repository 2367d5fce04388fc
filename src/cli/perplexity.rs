//! `rocmforge perplexity`: llama.cpp's perplexity over a text file.

use anyhow::Context;
use clap::Args;
use engine::{Engine, EngineOptions};
use std::io::Write;

/// Options of `rocmforge perplexity`.
#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    model: std::path::PathBuf,
    /// Text file to score.
    #[arg(short = 'f', long = "file")]
    file: std::path::PathBuf,
    /// Chunk (context) size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
}

/// Run `rocmforge perplexity`: prints `[i]ppl,` after each chunk (stderr)
/// and the final estimate (stdout).
pub fn run(args: PerplexityArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let engine = Engine::load(
        &args.model,
        EngineOptions {
            n_ctx: Some(args.ctx_size),
            threads: args.threads,
        },
    )
    .with_context(|| format!("loading {}", args.model.display()))?;
    let tokens = engine.tokenize(&text, true, false)?;
    eprintln!(
        "{} tokens, {} chunks of {}",
        tokens.len(),
        tokens.len() / args.ctx_size,
        args.ctx_size
    );
    let start = std::time::Instant::now();
    let result = engine::perplexity::perplexity(&engine, &tokens, args.ctx_size, |i, ppl| {
        eprint!("[{i}]{ppl:.4},");
        let _ = std::io::stderr().flush();
    })?;
    eprintln!();
    eprintln!(
        "{} tokens scored in {:.2} s",
        result.scored,
        start.elapsed().as_secs_f64()
    );
    println!("Final estimate: PPL = {:.4}", result.ppl);
    Ok(())
}
