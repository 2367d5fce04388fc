//! `rocmforge serve`: the OpenAI-compatible server on a loaded model.

use crate::cli::device::{self, DeviceChoice, EngineTask};
use crate::cli::load_progress::LoadProgress;
use crate::cli::service::EngineService;
use anyhow::{Context, Result};
use clap::Args;
use engine::{Backend, Engine, EngineOptions};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `rocmforge serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where to run: `auto` (GPU when usable and the model fits, else the CPU
    /// with one log line saying why), `cpu`, or `gpu` (error if unusable).
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// Context size of each sequence (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// Most sequences generated at once; further requests queue.
    #[arg(long = "parallel", short = 'n', default_value_t = 4)]
    parallel: usize,
    /// Most requests waiting in the queue; more get HTTP 503.
    #[arg(long = "queue", default_value_t = 64)]
    queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1 routes.
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// A Jinja chat template (inline text, or a path to a file) replacing the model's.
    #[arg(long = "chat-template")]
    chat_template: Option<String>,
    /// Name reported as the model id (default: the file name).
    #[arg(long = "alias")]
    alias: Option<String>,
    /// Largest request body in bytes.
    #[arg(long = "max-body-bytes", default_value_t = 8 << 20)]
    max_body_bytes: usize,
    /// Prompt tokens evaluated per step across all sequences (chunked prefill).
    #[arg(long = "prefill-chunk", default_value_t = 256)]
    prefill_chunk: usize,
}

/// Run `rocmforge serve`.
pub fn run(args: ServeArgs) -> Result<()> {
    let progress = LoadProgress::start(&args.model);
    let opts = EngineOptions {
        n_ctx: args.ctx_size,
        threads: args.threads,
    };
    device::run_on_engine(
        args.device,
        &args.model.clone(),
        opts,
        Serve { args, progress },
    )
}

struct Serve {
    args: ServeArgs,
    progress: LoadProgress,
}

impl EngineTask for Serve {
    fn run<B: Backend + 'static>(self, engine: Engine<B>) -> Result<()> {
        let Serve { args, progress } = self;
        let template = match &args.chat_template {
            Some(t) if std::path::Path::new(t).is_file() => Some(
                std::fs::read_to_string(t).with_context(|| format!("reading chat template {t}"))?,
            ),
            other => other.clone(),
        };
        let model_id = args.alias.clone().unwrap_or_else(|| {
            args.model
                .file_name()
                .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
        });
        let config = scheduler::SchedulerConfig {
            max_running: args.parallel.max(1),
            max_queue: args.queue,
            prefill_chunk: args.prefill_chunk.max(1),
        };
        let service = EngineService::new(engine, &args.model, template, model_id, config)?;
        progress.finish();
        let server_config = server::ServerConfig {
            addr: SocketAddr::new(args.host, args.port),
            api_key: args.api_key,
            max_body_bytes: args.max_body_bytes,
            shutdown_grace: Duration::from_secs(10),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime
            .block_on(server::serve(server_config, Arc::new(service)))
            .context("serving")?;
        Ok(())
    }
}
