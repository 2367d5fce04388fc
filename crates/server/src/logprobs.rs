//! Logprobs in OpenAI's two response shapes.

use scheduler::TokenLogprob;
use serde_json::{json, Map, Value};

/// One generated token's logprob with its alternatives, as text.
pub struct TokenLogprobs {
    token: String,
    logprob: f32,
    top: Vec<(String, f32)>,
}

impl TokenLogprobs {
    /// Resolve ids to token texts.
    pub fn new(id: u32, lp: &TokenLogprob, token_text: impl Fn(u32) -> String) -> Self {
        TokenLogprobs {
            token: token_text(id),
            logprob: lp.logprob,
            top: lp.top.iter().map(|&(t, l)| (token_text(t), l)).collect(),
        }
    }
}

/// Chat shape: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}`.
pub fn chat_json(items: &[TokenLogprobs]) -> Value {
    let entry = |t: &str, l: f32| json!({"token": t, "logprob": l, "bytes": t.as_bytes()});
    json!({"content": items.iter().map(|i| {
        let mut e = entry(&i.token, i.logprob);
        e["top_logprobs"] = Value::Array(i.top.iter().map(|(t, l)| entry(t, *l)).collect());
        e
    }).collect::<Vec<_>>()})
}

/// Completions shape: `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`;
/// `offset` is where this chunk's text starts in the whole completion.
pub fn completion_json(items: &[TokenLogprobs], offset: usize) -> Value {
    let mut at = offset;
    let mut offsets = Vec::with_capacity(items.len());
    for i in items {
        offsets.push(at);
        at += i.token.len();
    }
    json!({
        "tokens": items.iter().map(|i| i.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": items.iter().map(|i| i.logprob).collect::<Vec<_>>(),
        "top_logprobs": items.iter().map(|i| {
            let mut m = Map::new();
            for (t, l) in &i.top {
                m.entry(t.clone()).or_insert(json!(l));
            }
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}
