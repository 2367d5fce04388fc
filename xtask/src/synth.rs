//! `cargo xtask synth-model`: write a synthetic model (random weights, the
//! SmolLM2 tokenizer) with the `synth` crate.

use crate::fixtures::fixture_dir;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use synth::{Arch, Preset, SynthSpec, WeightType};

const USAGE: &str = "usage: cargo xtask synth-model --preset tiny|smollm2|1b|8b \
--type f32|f16|q4_0|q4_1|q8_0|q4_k_m|q6_k [--arch llama|qwen2|qwen3|gemma3|llama-moe] \
[--seed N] [--tokenizer GGUF] (--out PATH | --size-only)";

/// The fixture whose tokenizer the synthetic models carry.
const TOKENIZER_FIXTURE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Runs the command with its arguments.
pub fn run(args: &[String]) -> Result<()> {
    let mut preset = None;
    let mut weights = None;
    let mut arch = Arch::Llama;
    let mut seed = 0u64;
    let mut out: Option<PathBuf> = None;
    let mut tokenizer: Option<PathBuf> = None;
    let mut size_only = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--preset" => preset = Some(value()?.parse::<Preset>()?),
            "--type" => weights = Some(value()?.parse::<WeightType>()?),
            "--arch" => arch = value()?.parse::<Arch>()?,
            "--seed" => seed = value()?.parse().context("--seed takes an integer")?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--tokenizer" => tokenizer = Some(PathBuf::from(value()?)),
            "--size-only" => size_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let (Some(preset), Some(weights)) = (preset, weights) else {
        bail!("--preset and --type are required\n{USAGE}");
    };
    let spec = SynthSpec {
        preset,
        arch,
        weights,
        seed,
    };
    let tokenizer = tokenizer.unwrap_or_else(|| fixture_dir().join(TOKENIZER_FIXTURE));
    if !tokenizer.exists() {
        bail!(
            "tokenizer source {} not found: run `cargo xtask fixtures` (or pass --tokenizer)",
            tokenizer.display()
        );
    }
    let tok = synth::tokenizer_metadata_from_file(&tokenizer)
        .with_context(|| format!("reading the tokenizer of {}", tokenizer.display()))?;
    if size_only {
        let size = synth::planned_file_size(&spec, &tok)?;
        println!("{size}");
        eprintln!(
            "{} {} {}: {size} bytes ({:.1} MB)",
            preset,
            arch,
            weights,
            size as f64 / 1e6
        );
        return Ok(());
    }
    let Some(out) = out else {
        bail!("--out is required (or --size-only)\n{USAGE}");
    };
    let start = std::time::Instant::now();
    let size = synth::write_model(&spec, &tok, &out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} ({preset} {arch} {weights} seed {seed}): {size} bytes ({:.1} MB) in {:.1} s",
        out.display(),
        size as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
