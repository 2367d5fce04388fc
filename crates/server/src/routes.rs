//! HTTP routes and the request pipeline.

use crate::api::{Fields, GenParams};
use crate::generation::{self, Generation, Piece};
use crate::logprobs::{chat_json, completion_json, TokenLogprobs};
use crate::metrics::{Metrics, RouteKind};
use crate::service::ModelService;
use crate::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_stream::wrappers::ReceiverStream;

/// Shared state of all routes.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    service: Arc<dyn ModelService>,
    api_key: Option<String>,
    max_body: usize,
    metrics: Metrics,
    next_id: AtomicU64,
}

impl AppState {
    /// State for a service; `api_key` enables Bearer authentication.
    pub fn new(service: Arc<dyn ModelService>, api_key: Option<String>, max_body: usize) -> Self {
        AppState(Arc::new(Inner {
            service,
            api_key,
            max_body,
            metrics: Metrics::new(),
            next_id: AtomicU64::new(1),
        }))
    }

    fn new_id(&self, prefix: &str) -> String {
        let n = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let t = unix_time();
        format!("{prefix}-{t:x}{n:06x}")
    }
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The router with every route, authentication and the body limit.
pub fn router(state: AppState) -> Router {
    let limit = state.0.max_body;
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Authentication for `/v1/*`, and error counting.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.0.api_key {
        if req.uri().path().starts_with("/v1/") {
            let ok = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), key.as_bytes()));
            if !ok {
                st.0.metrics.error();
                return ApiError::unauthorized().into_response();
            }
        }
    }
    // Refuse an announced oversized body at once, before reading any of it.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > st.0.max_body as u64) {
        st.0.metrics.error();
        return ApiError::too_large(st.0.max_body).into_response();
    }
    let resp = next.run(req).await;
    if resp.status().is_client_error() || resp.status().is_server_error() {
        st.0.metrics.error();
    }
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(req.uri().path())
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn models(State(st): State<AppState>) -> Json<Value> {
    st.0.metrics.request(RouteKind::Other);
    Json(json!({"object": "list", "data": [{
        "id": st.0.service.model_id(),
        "object": "model",
        "created": unix_time(),
        "owned_by": "rocmforge",
    }]}))
}

async fn metrics(State(st): State<AppState>) -> Response {
    let text = st.0.metrics.render(&st.0.service.scheduler().stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn parse_body(st: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(st.0.max_body)
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"), None)
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}"), None))
}

/// Which response shapes to produce.
#[derive(Clone, Copy)]
enum Flavor {
    Chat,
    Completion,
}

async fn chat(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.0.metrics.request(RouteKind::Chat);
    let value = parse_body(&st, body)?;
    let f = Fields::new(&value)?;
    f.str("model")?;
    let messages = f.messages()?;
    let params = f.gen_params(true)?;
    let service = Arc::clone(&st.0.service);
    let prompt = service.render_chat(&messages)?;
    let ids = service.tokenize(&prompt, true)?;
    let gen = generation::start(&service, ids, &params)?;
    respond(st, gen, params, Flavor::Chat).await
}

async fn completions(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.0.metrics.request(RouteKind::Completions);
    let value = parse_body(&st, body)?;
    let f = Fields::new(&value)?;
    f.str("model")?;
    let prompt = f.prompt()?;
    let params = f.gen_params(false)?;
    let service = Arc::clone(&st.0.service);
    let ids = service.tokenize(&prompt, false)?;
    let gen = generation::start(&service, ids, &params)?;
    respond(st, gen, params, Flavor::Completion).await
}

async fn respond(
    st: AppState,
    gen: Generation,
    params: GenParams,
    flavor: Flavor,
) -> Result<Response, ApiError> {
    let (prefix, object) = match flavor {
        Flavor::Chat => ("chatcmpl", "chat.completion"),
        Flavor::Completion => ("cmpl", "text_completion"),
    };
    let ctx = ResponseCtx {
        id: st.new_id(prefix),
        created: unix_time(),
        model: st.0.service.model_id().to_string(),
        flavor,
        object,
        logprobs: params.top_logprobs.is_some(),
    };
    if params.stream {
        Ok(stream(gen, ctx, params.include_usage))
    } else {
        collect(gen, ctx).await.map(IntoResponse::into_response)
    }
}

struct ResponseCtx {
    id: String,
    created: u64,
    model: String,
    flavor: Flavor,
    object: &'static str,
    logprobs: bool,
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

async fn collect(mut gen: Generation, ctx: ResponseCtx) -> Result<Json<Value>, ApiError> {
    let mut text = String::new();
    let mut lps: Vec<TokenLogprobs> = Vec::new();
    while let Some(piece) = gen.next().await {
        match piece? {
            Piece::Text { text: t, logprobs } => {
                text.push_str(&t);
                lps.extend(logprobs);
            }
            Piece::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let choice = match ctx.flavor {
                    Flavor::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": if ctx.logprobs { chat_json(&lps) } else { Value::Null },
                        "finish_reason": reason,
                    }),
                    Flavor::Completion => json!({
                        "index": 0,
                        "text": text,
                        "logprobs": if ctx.logprobs { completion_json(&lps, 0) } else { Value::Null },
                        "finish_reason": reason,
                    }),
                };
                return Ok(Json(json!({
                    "id": ctx.id,
                    "object": ctx.object,
                    "created": ctx.created,
                    "model": ctx.model,
                    "choices": [choice],
                    "usage": usage(prompt_tokens, completion_tokens),
                })));
            }
        }
    }
    Err(ApiError::internal("the generation ended without finishing"))
}

impl ResponseCtx {
    fn chunk(&self, choices: Value, usage: Option<Value>, include_usage: bool) -> SseEvent {
        let object = match self.flavor {
            Flavor::Chat => "chat.completion.chunk",
            Flavor::Completion => "text_completion",
        };
        let mut v = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        SseEvent::default().data(v.to_string())
    }

    fn choice(
        &self,
        text: Option<&str>,
        lps: &[TokenLogprobs],
        offset: usize,
        finish: Option<&str>,
    ) -> Value {
        let logprobs = if self.logprobs && !lps.is_empty() {
            match self.flavor {
                Flavor::Chat => chat_json(lps),
                Flavor::Completion => completion_json(lps, offset),
            }
        } else {
            Value::Null
        };
        match self.flavor {
            Flavor::Chat => {
                let delta = match text {
                    Some(t) => json!({"content": t}),
                    None => json!({}),
                };
                json!([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])
            }
            Flavor::Completion => {
                json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}])
            }
        }
    }
}

fn stream(mut gen: Generation, ctx: ResponseCtx, include_usage: bool) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        if let Flavor::Chat = ctx.flavor {
            let first = json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
            if tx
                .send(Ok(ctx.chunk(first, None, include_usage)))
                .await
                .is_err()
            {
                return;
            }
        }
        let mut offset = 0;
        while let Some(piece) = gen.next().await {
            let event = match piece {
                Ok(Piece::Text { text, logprobs }) => {
                    if text.is_empty() && logprobs.is_empty() {
                        continue;
                    }
                    let e = ctx.chunk(
                        ctx.choice(Some(&text), &logprobs, offset, None),
                        None,
                        include_usage,
                    );
                    offset += text.len();
                    e
                }
                Ok(Piece::Finished {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    let last = ctx.chunk(
                        ctx.choice(None, &[], offset, Some(reason)),
                        None,
                        include_usage,
                    );
                    if tx.send(Ok(last)).await.is_err() {
                        return;
                    }
                    if include_usage {
                        let u = ctx.chunk(
                            json!([]),
                            Some(usage(prompt_tokens, completion_tokens)),
                            true,
                        );
                        if tx.send(Ok(u)).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
                Err(e) => SseEvent::default().data(e.body().to_string()),
            };
            // A failed send means the client went away: dropping `gen` cancels it.
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
