//! `--device` handling shared by the subcommands.

use anyhow::{bail, Result};

/// Check a `--device` value. The GPU path is selected by the GPU backend when
/// present; until a subcommand supports it, `gpu` is an error and `auto`
/// runs on the CPU.
pub fn require_cpu_or_fallback(device: &str) -> Result<()> {
    match device {
        "cpu" => Ok(()),
        "auto" => {
            eprintln!("rocmforge: running on the CPU (this subcommand has no GPU path yet)");
            Ok(())
        }
        "gpu" => {
            bail!("--device gpu: this subcommand has no GPU path yet; use --device cpu or auto")
        }
        other => bail!("--device must be auto, cpu or gpu, not `{other}`"),
    }
}
