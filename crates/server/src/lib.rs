//! `server`: an OpenAI-compatible HTTP API over the rocmforge scheduler.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `GET /v1/models`, `GET /health`, `GET /metrics`. Errors use OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` shape. The model side is
//! abstracted by [`ModelService`], so this crate depends on no model code.

#![warn(missing_docs)]

mod api;
mod error;
mod generation;
mod logprobs;
mod metrics;
mod routes;
mod service;
mod stop;

pub use api::ChatMessage;
pub use error::ApiError;
pub use routes::{router, AppState};
pub use service::{Detokenizer, ModelService, SamplingParams};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub addr: SocketAddr,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest accepted request body in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// How long in-flight generations may run on after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
}

/// Bind, print the URL, and serve until SIGINT/SIGTERM; then stop accepting,
/// let in-flight work finish within the grace period, and return.
pub async fn serve(config: ServerConfig, service: Arc<dyn ModelService>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let state = AppState::new(
        Arc::clone(&service),
        config.api_key.clone(),
        config.max_body_bytes,
    );
    let app = router(state);
    println!(
        "rocmforge server listening on http://{addr}/v1 (model: {})",
        service.model_id()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let grace = config.shutdown_grace;
    tokio::task::spawn_blocking(move || service.scheduler().shutdown(grace))
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received: no longer accepting requests");
}
