//! Prometheus text metrics.

use scheduler::SchedulerStats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Counters kept by the HTTP layer.
pub struct Metrics {
    /// Requests per route kind: chat, completions, other.
    requests: [AtomicU64; 3],
    /// Requests answered with an error status.
    errors: AtomicU64,
    /// (time, generated tokens) at the previous scrape, for the rate.
    last: Mutex<(Instant, u64)>,
}

/// The route kinds counted separately.
#[derive(Clone, Copy)]
pub enum RouteKind {
    /// `/v1/chat/completions`.
    Chat = 0,
    /// `/v1/completions`.
    Completions = 1,
    /// Everything else.
    Other = 2,
}

impl Metrics {
    /// Zeroed counters.
    pub fn new() -> Self {
        Metrics {
            requests: Default::default(),
            errors: AtomicU64::new(0),
            last: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Count a request.
    pub fn request(&self, kind: RouteKind) {
        self.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count an error response.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Render everything in Prometheus' text format.
    pub fn render(&self, s: &SchedulerStats) -> String {
        let rate = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let dt = now.duration_since(last.0).as_secs_f64();
            let r = if dt > 0.0 {
                s.generated_tokens_total.saturating_sub(last.1) as f64 / dt
            } else {
                0.0
            };
            *last = (now, s.generated_tokens_total);
            r
        };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let req = |k: RouteKind| self.requests[k as usize].load(Ordering::Relaxed) as f64;
        metric(
            "rocmforge_requests_total",
            "counter",
            "HTTP requests received.",
            &[
                ("{route=\"chat\"}", req(RouteKind::Chat)),
                ("{route=\"completions\"}", req(RouteKind::Completions)),
                ("{route=\"other\"}", req(RouteKind::Other)),
            ],
        );
        metric(
            "rocmforge_request_errors_total",
            "counter",
            "Requests answered with an error status.",
            &[("", self.errors.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "rocmforge_generation_requests_total",
            "counter",
            "Generation requests accepted by the scheduler.",
            &[("", s.requests_total as f64)],
        );
        metric(
            "rocmforge_prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated.",
            &[("", s.prompt_tokens_total as f64)],
        );
        metric(
            "rocmforge_generated_tokens_total",
            "counter",
            "Tokens generated.",
            &[("", s.generated_tokens_total as f64)],
        );
        metric(
            "rocmforge_queue_depth",
            "gauge",
            "Requests waiting for a slot.",
            &[("", s.queued as f64)],
        );
        metric(
            "rocmforge_running_sequences",
            "gauge",
            "Sequences in the running batch.",
            &[("", s.running as f64)],
        );
        metric(
            "rocmforge_generated_tokens_per_second",
            "gauge",
            "Generation rate since the previous scrape.",
            &[("", rate)],
        );
        out
    }
}
