//! `rocmforge`: command-line entry point (inspect, generate, serve, …).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
