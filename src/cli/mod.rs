//! Command-line parsing and dispatch. Every subcommand lives in its own file
//! and returns `anyhow::Result`; errors are printed here as one line.

mod bench;
mod device;
mod generate;
mod inspect;
mod load_progress;
mod perplexity;
mod serve;
mod service;
mod tokenize;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// rocmforge: run GGUF models on AMD GPUs, NVIDIA GPUs or the CPU.
#[derive(Parser)]
#[command(name = "rocmforge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it to stdout.
    Generate(generate::GenerateArgs),
    /// Perplexity of a text file, as llama.cpp's llama-perplexity.
    Perplexity(perplexity::PerplexityArgs),
    /// Summarize a GGUF file, print it as JSON, or dump one tensor as f32.
    Inspect(inspect::InspectArgs),
    /// Print the token ids of a text as a JSON array (like `llama-tokenize --ids`).
    Tokenize(tokenize::TokenizeArgs),
    /// Serve the model over an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Measure prompt processing and generation speed (like llama-bench).
    Bench(bench::BenchArgs),
}

/// Parse the command line, run the subcommand, and turn errors into one line
/// on stderr with exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
