//! `cargo xtask`: project automation (fixtures, kernels, synthetic models, benchmarks).

mod bench;
mod bench_quant;
mod fixtures;
mod kernels;
mod synth;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(c, r)| (c.as_str(), r));
    match cmd {
        "fixtures" => fixtures::run(rest),
        "synth-model" => synth::run(rest),
        "bench" if rest.iter().any(|a| a == "--quant") => bench_quant::run(rest),
        "bench" => bench::run(rest),
        "kernels" => kernels::run(rest),
        "help" | "--help" | "-h" => {
            println!("usage: cargo xtask <command>\n\ncommands:\n  fixtures   fetch the test models into $ROCMFORGE_FIXTURES (default target/fixtures)\n  synth-model  write a synthetic model (random weights, SmolLM2 tokenizer): --preset --type [--arch] [--seed] --out\n  bench      side-by-side benchmarks against llama.cpp: [--cpu] (default), --server; --quick\n  kernels    build GPU code objects: --platform amd|nvidia --arch gfx90a,…|sm_90,… [--out DIR]");
            Ok(())
        }
        other => bail!("unknown xtask command `{other}` (try `cargo xtask help`)"),
    }
}
