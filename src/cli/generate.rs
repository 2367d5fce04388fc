//! `rocmforge generate`: stream a completion of a prompt.

use crate::cli::device::{self, DeviceChoice, EngineTask};
use clap::Args;
use engine::{Backend, Engine, EngineOptions, SamplingOptions};
use std::io::Write;

/// Options of `rocmforge generate` (flags follow llama.cpp's).
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    model: std::path::PathBuf,
    /// Prompt text (special tokens such as `<|im_start|>` are parsed, as
    /// llama.cpp's llama-completion does; BOS is added per the model's metadata).
    #[arg(short = 'p', long = "prompt")]
    prompt: String,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Temperature (0: greedy, argmax with ties to the lowest id).
    #[arg(long = "temp", default_value_t = 0.8)]
    temp: f32,
    /// Top-k (0: off).
    #[arg(long = "top-k", default_value_t = 40)]
    top_k: usize,
    /// Top-p (1.0: off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0.0: off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty (1.0: off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    repeat_penalty: f32,
    /// How many last tokens the penalties look at.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    repeat_last_n: usize,
    /// Presence penalty (0.0: off).
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    presence_penalty: f32,
    /// Frequency penalty (0.0: off).
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long = "seed")]
    seed: Option<u64>,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Context size (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    ignore_eos: bool,
    /// Wrap the prompt in the model's chat template (one user message).
    #[arg(long = "chat")]
    chat: bool,
    /// Print only one JSON object at the end (ids, text, timings).
    #[arg(long = "json")]
    json: bool,
    /// Where to run: `auto` (GPU when usable and the model fits, else the
    /// CPU with one log line saying why), `cpu`, or `gpu` (error if unusable).
    #[arg(long = "device", value_enum, default_value = "auto")]
    device: DeviceChoice,
}

/// Run `rocmforge generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let opts = EngineOptions {
        n_ctx: args.ctx_size,
        threads: args.threads,
    };
    device::run_on_engine(args.device, &args.model.clone(), opts, args)
}

impl EngineTask for GenerateArgs {
    fn run<B: Backend + 'static>(self, engine: Engine<B>) -> anyhow::Result<()> {
        generate(&engine, &self)
    }
}

fn generate<B: Backend>(engine: &Engine<B>, args: &GenerateArgs) -> anyhow::Result<()> {
    let prompt_ids = if args.chat {
        let text = engine.chat_prompt(&args.prompt)?;
        let mut ids = engine.tokenize(&text, false, true)?;
        if let Some(bos) = engine.bos_if_added() {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        ids
    } else {
        engine.tokenize(&args.prompt, true, true)?
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let opts = SamplingOptions {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
        penalty_last_n: args.repeat_last_n,
        seed,
        max_tokens: args.n_predict,
        ignore_eos: args.ignore_eos,
    };
    let mut generation = engine.generate(&prompt_ids, opts)?;
    let mut ids = Vec::new();
    let mut text = String::new();
    let stdout = std::io::stdout();
    for token in generation.by_ref() {
        let token = token?;
        ids.push(token.id);
        text.push_str(&token.text_piece);
        if !args.json {
            let mut out = stdout.lock();
            out.write_all(token.text_piece.as_bytes())?;
            out.flush()?;
        }
    }
    let t = generation.timings();
    if args.json {
        let obj = serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": ids,
            "text": text,
            "timings": {
                "prompt_tokens_per_s": t.prompt_tokens_per_s(),
                "gen_tokens_per_s": t.gen_tokens_per_s(),
            },
        });
        println!("{obj}");
    } else {
        println!();
    }
    eprintln!(
        "prompt: {} tokens, {:.2} tokens/s | generation: {} tokens, {:.2} tokens/s",
        t.prompt_tokens,
        t.prompt_tokens_per_s(),
        ids.len(),
        t.gen_tokens_per_s()
    );
    Ok(())
}
