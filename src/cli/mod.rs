//! Command-line parsing and dispatch. Every subcommand lives in its own file
//! and returns `anyhow::Result`; errors are printed here as one line.

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
    /// Print the token ids of a text as a JSON array (like `llama-tokenize --ids`).
    Tokenize(tokenize::TokenizeArgs),
}

/// Parse the command line, run the subcommand, and turn errors into one line
/// on stderr with exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Tokenize(args) => tokenize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
