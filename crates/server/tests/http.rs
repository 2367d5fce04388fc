//! The HTTP layer against a toy model: bytes are tokens, and the model spells
//! a fixed text over and over.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use scheduler::{BatchModel, Scheduler, SchedulerConfig, SeqInput, TokenSampler};
use serde_json::{json, Value};
use server::{router, ApiError, AppState, ChatMessage, Detokenizer, ModelService, SamplingParams};
use std::sync::Arc;
use tower::ServiceExt;

const SCRIPT: &[u8] = b"Hello, world! STOP here. ";
const EOG: u32 = 256;

/// Next token: the byte of SCRIPT at the sequence's length.
struct Spell {
    n_ctx: usize,
}

impl BatchModel for Spell {
    type Seq = Vec<u32>;
    type Error = String;
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn new_seq(&mut self) -> Result<Vec<u32>, String> {
        Ok(Vec::new())
    }
    fn step(&mut self, inputs: &mut [SeqInput<'_, Vec<u32>>]) -> Result<Vec<Vec<f32>>, String> {
        std::thread::sleep(std::time::Duration::from_millis(1));
        Ok(inputs
            .iter_mut()
            .map(|i| {
                i.seq.extend_from_slice(i.tokens);
                let pos = i.seq.len() % SCRIPT.len();
                let mut l = vec![0.0f32; 257];
                l[SCRIPT[pos] as usize] = 5.0;
                l[b'x' as usize] = 1.0;
                l
            })
            .collect())
    }
}

struct Bytes;
impl Detokenizer for Bytes {
    fn push(&mut self, id: u32) -> String {
        char::from(id as u8).to_string()
    }
    fn flush(&mut self) -> String {
        String::new()
    }
}

struct Toy {
    sched: Scheduler,
}

impl ModelService for Toy {
    fn model_id(&self) -> &str {
        "toy"
    }
    fn n_ctx(&self) -> usize {
        self.sched.n_ctx()
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ApiError> {
        Ok(messages.iter().map(|m| m.content.as_str()).collect())
    }
    fn tokenize(&self, text: &str, _parse_special: bool) -> Result<Vec<u32>, ApiError> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn token_text(&self, id: u32) -> String {
        char::from(id as u8).to_string()
    }
    fn detokenizer(&self) -> Box<dyn Detokenizer> {
        Box::new(Bytes)
    }
    fn sampler(
        &self,
        _p: &SamplingParams,
        _prompt: &[u32],
    ) -> Result<Box<dyn TokenSampler>, ApiError> {
        Ok(Box::new(|l: &[f32]| {
            let mut best = 0;
            for (i, &v) in l.iter().enumerate() {
                if v > l[best] {
                    best = i;
                }
            }
            best as u32
        }))
    }
    fn eog(&self) -> Box<dyn Fn(u32) -> bool + Send> {
        Box::new(|id| id == EOG)
    }
    fn scheduler(&self) -> &Scheduler {
        &self.sched
    }
}

fn app_with(api_key: Option<&str>, n_ctx: usize, cfg: SchedulerConfig) -> axum::Router {
    let svc = Toy {
        sched: Scheduler::start(Spell { n_ctx }, cfg),
    };
    router(AppState::new(
        Arc::new(svc),
        api_key.map(str::to_string),
        4096,
    ))
}

fn app() -> axum::Router {
    app_with(None, 512, SchedulerConfig::default())
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
    auth: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn error_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap();
    let e = v["error"].clone();
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error field {k} missing in {body}");
    }
    e
}

#[tokio::test]
async fn chat_completion_non_streamed() {
    let app = app();
    let body = json!({"model": "toy", "messages": [{"role": "user", "content": "H"}], "max_tokens": 5, "temperature": 0});
    let (status, text) = call(
        &app,
        "POST",
        "/v1/chat/completions",
        &body.to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "ello,");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6})
    );
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
}

#[tokio::test]
async fn completion_streamed_with_stop_and_usage() {
    let app = app();
    let body = json!({"prompt": "H", "max_tokens": 100, "stream": true, "stop": ["STOP"], "stream_options": {"include_usage": true}});
    let (status, text) = call(&app, "POST", "/v1/completions", &body.to_string(), None).await;
    assert_eq!(status, StatusCode::OK);
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).and_then(|ch| ch["text"].as_str()))
        .collect();
    assert_eq!(joined, "ello, world! ");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 1);
    assert!(chunks.last().unwrap()["choices"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn chat_stream_starts_with_role_and_has_logprobs() {
    let app = app();
    let body = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "H"}]}], "max_tokens": 3, "stream": true, "logprobs": true, "top_logprobs": 5});
    let (status, text) = call(
        &app,
        "POST",
        "/v1/chat/completions",
        &body.to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let lp = &chunks[1]["choices"][0]["logprobs"]["content"][0];
    assert_eq!(lp["token"], "e");
    assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), 5);
    assert!(lp["logprob"].as_f64().unwrap() < 0.0);
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let app = app();
    let (s, b) = call(&app, "POST", "/v1/chat/completions", "{not json", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&b);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&b)["param"], "temperature");
    let (s, b) = call(
        &app,
        "POST",
        "/v1/completions",
        r#"{"prompt":"x","n":2}"#,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&b)["param"], "n");
    let (s, b) = call(&app, "POST", "/v1/completions", r#"{"max_tokens":3}"#, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&b)["param"], "prompt");
    let long = "a".repeat(600);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/completions",
        &json!({"prompt": long}).to_string(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&b)["code"], "context_length_exceeded");
    let (s, b) = call(&app, "GET", "/v1/nothing", "", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&b);
    let big = json!({"prompt": "x".repeat(5000)}).to_string();
    let (s, b) = call(&app, "POST", "/v1/completions", &big, None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    error_of(&b);
    // The server still works after all that.
    let (s, _) = call(
        &app,
        "POST",
        "/v1/completions",
        r#"{"prompt":"H","max_tokens":2}"#,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn api_key_is_enforced_on_v1_routes() {
    let app = app_with(Some("sekret"), 512, SchedulerConfig::default());
    let (s, b) = call(&app, "GET", "/v1/models", "", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&b)["code"], "invalid_api_key");
    let (s, _) = call(&app, "GET", "/v1/models", "", Some("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = call(&app, "GET", "/v1/models", "", Some("sekret")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["data"][0]["id"],
        "toy"
    );
    let (s, _) = call(&app, "GET", "/health", "", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn full_queue_answers_503_and_metrics_report() {
    let cfg = SchedulerConfig {
        max_running: 1,
        max_queue: 1,
        prefill_chunk: 16,
    };
    let app = app_with(None, 100_000, cfg);
    let long = json!({"prompt": "H", "max_tokens": 5000}).to_string();
    let a = tokio::spawn({
        let app = app.clone();
        let long = long.clone();
        async move { call(&app, "POST", "/v1/completions", &long, None).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let b = tokio::spawn({
        let app = app.clone();
        let long = long.clone();
        async move { call(&app, "POST", "/v1/completions", &long, None).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (s, body) = call(&app, "POST", "/v1/completions", &long, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    error_of(&body);
    let (s, m) = call(&app, "GET", "/metrics", "", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(m.contains("rocmforge_queue_depth 1"), "{m}");
    assert!(m.contains("rocmforge_running_sequences 1"), "{m}");
    a.abort();
    b.abort();
}
