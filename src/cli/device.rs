//! `--device auto|cpu|gpu`: where a subcommand runs, with transparent
//! fallback to the CPU (one log line saying why) under `auto`.

use anyhow::{bail, Result};
use backend_hip::HipBackend;
use std::path::Path;

/// Where to run.
pub enum Placement {
    /// The CPU backend.
    Cpu,
    /// The GPU backend, opened and with its kernels loaded.
    Gpu(Box<HipBackend>),
}

/// The `--device` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The GPU when the runtime loads, a device exists and the model fits; else the CPU.
    Auto,
    /// The CPU; no GPU library is touched.
    Cpu,
    /// The GPU, or an error saying why not.
    Gpu,
}

/// Room the model needs on the device beyond its file size (activations,
/// KV cache, scratch), as a fraction of the file size plus a fixed amount.
fn needed_bytes(model_bytes: u64) -> u64 {
    model_bytes + model_bytes / 10 + (256 << 20)
}

/// Decide where to run a model file.
pub fn choose(choice: DeviceChoice, model: &Path) -> Result<Placement> {
    if choice == DeviceChoice::Cpu {
        return Ok(Placement::Cpu);
    }
    let need = needed_bytes(std::fs::metadata(model).map_or(0, |m| m.len()));
    let why_not = match backend_hip::probe(0) {
        Err(why) => format!("no usable GPU ({why})"),
        Ok(info) if (info.free_memory as u64) < need => format!(
            "the model needs about {} MB but {} has {} MB free",
            need >> 20,
            info.props.name,
            info.free_memory >> 20
        ),
        Ok(_) => match HipBackend::try_new(0) {
            Ok(gpu) => return Ok(Placement::Gpu(Box::new(gpu))),
            Err(why) => format!("the GPU backend could not start ({why})"),
        },
    };
    if choice == DeviceChoice::Gpu {
        bail!("--device gpu: {why_not}");
    }
    fallback_notice(&why_not);
    Ok(Placement::Cpu)
}

/// The one line printed when `auto` falls back to the CPU.
pub fn fallback_notice(why: &str) {
    eprintln!("rocmforge: running on the CPU: {why}");
}

/// Whether a load error under `auto` should fall back to the CPU (the GPU ran
/// out of memory or failed while loading).
pub fn should_fall_back(choice: DeviceChoice, err: &engine::EngineError) -> bool {
    choice == DeviceChoice::Auto && matches!(err, engine::EngineError::Backend(_))
}

/// Work that runs on a loaded engine, whatever its backend.
pub trait EngineTask {
    /// Run with the engine.
    fn run<B: engine::Backend + 'static>(self, engine: engine::Engine<B>) -> Result<()>;
}

/// Load `model` where `choice` says (falling back to the CPU under `auto` if
/// the GPU cannot take it, with one log line) and run `task` on it.
pub fn run_on_engine(
    choice: DeviceChoice,
    model: &Path,
    opts: engine::EngineOptions,
    task: impl EngineTask,
) -> Result<()> {
    use anyhow::Context;
    use std::sync::Arc;
    let loading = || format!("loading {}", model.display());
    if let Placement::Gpu(gpu) = choose(choice, model)? {
        match engine::Engine::load_with_backend(model, Arc::new(*gpu), opts.clone()) {
            Ok(engine) => return task.run(engine),
            Err(e) if should_fall_back(choice, &e) => {
                fallback_notice(&format!("loading on the GPU failed ({e})"))
            }
            Err(e) => return Err(e).with_context(loading),
        }
    }
    let engine = engine::Engine::load(model, opts).with_context(loading)?;
    task.run(engine)
}
