//! Request parsing: the JSON body is read as a `serde_json::Value` and each
//! field is extracted with a type check, so a wrong type is a 400 that names
//! the field. Unknown fields are ignored, as OpenAI clients send extras.

use crate::service::SamplingParams;
use crate::ApiError;
use serde_json::{Map, Value};

/// One chat message (text content only; array content parts are joined).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The text.
    pub content: String,
}

/// What the two completion routes share.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Requested `max_tokens` / `max_completion_tokens`.
    pub max_tokens: Option<usize>,
    /// Sampling fields.
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Stream as server-sent events.
    pub stream: bool,
    /// Send a usage chunk before `[DONE]`.
    pub include_usage: bool,
    /// How many alternatives to report per token (`None`: no logprobs).
    pub top_logprobs: Option<usize>,
    /// `cache_prompt` (llama-server's field; default false here): the prompt
    /// may start from a finished sequence's cached positions with the same
    /// first tokens. Off by default because the re-evaluated rest goes
    /// through the model in a different batch, so greedy output may differ
    /// in rare cases from a fresh evaluation (as in llama-server).
    pub cache_prompt: bool,
}

/// The JSON object of a request, with typed field access.
pub struct Fields<'a>(&'a Map<String, Value>);

const MAX_TOP_LOGPROBS: u64 = 20;
const MAX_STOP_STRINGS: usize = 16;

impl<'a> Fields<'a> {
    /// Require the body to be a JSON object.
    pub fn new(body: &'a Value) -> Result<Self, ApiError> {
        body.as_object()
            .map(Fields)
            .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object", None))
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn wrong(name: &str, what: &str) -> ApiError {
        ApiError::bad_request(format!("`{name}` must be {what}"), Some(name))
    }

    /// An optional number.
    pub fn f32(&self, name: &str) -> Result<Option<f32>, ApiError> {
        self.present(name)
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| Self::wrong(name, "a number"))
            })
            .transpose()
    }

    /// An optional non-negative integer.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.present(name)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| Self::wrong(name, "a non-negative integer"))
            })
            .transpose()
    }

    /// An optional boolean.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.present(name)
            .map(|v| v.as_bool().ok_or_else(|| Self::wrong(name, "a boolean")))
            .transpose()
    }

    /// An optional string.
    pub fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        self.present(name)
            .map(|v| v.as_str().ok_or_else(|| Self::wrong(name, "a string")))
            .transpose()
    }

    /// A required field.
    pub fn required(&self, name: &str) -> Result<&'a Value, ApiError> {
        self.present(name)
            .ok_or_else(|| ApiError::bad_request(format!("`{name}` is required"), Some(name)))
    }

    /// The fields both routes share; `chat` selects the chat flavour of `logprobs`.
    pub fn gen_params(&self, chat: bool) -> Result<GenParams, ApiError> {
        if let Some(n) = self.u64("n")? {
            if n != 1 {
                return Err(ApiError::bad_request(
                    "only `n` = 1 is supported",
                    Some("n"),
                ));
            }
        }
        let max_tokens = match self.u64("max_completion_tokens")? {
            Some(m) => Some(m),
            None => self.u64("max_tokens")?,
        };
        let seed = match self.present("seed") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_i64().map(|i| i as u64))
                    .ok_or_else(|| Self::wrong("seed", "an integer"))?,
            ),
        };
        let top_k = match self.present("top_k") {
            None => None,
            Some(v) => {
                let k = v
                    .as_i64()
                    .ok_or_else(|| Self::wrong("top_k", "an integer"))?;
                Some(u32::try_from(k.max(0)).unwrap_or(u32::MAX))
            }
        };
        let sampling = SamplingParams {
            temperature: self.f32("temperature")?,
            top_p: self.f32("top_p")?,
            top_k,
            min_p: self.f32("min_p")?,
            seed,
            presence_penalty: self.f32("presence_penalty")?,
            frequency_penalty: self.f32("frequency_penalty")?,
            repetition_penalty: match self.f32("repetition_penalty")? {
                Some(r) => Some(r),
                None => self.f32("repeat_penalty")?,
            },
            ignore_eos: self.bool("ignore_eos")?.unwrap_or(false),
        };
        check_range("temperature", sampling.temperature, 0.0, 100.0)?;
        check_range("top_p", sampling.top_p, 0.0, 1.0)?;
        check_range("min_p", sampling.min_p, 0.0, 1.0)?;
        check_range("presence_penalty", sampling.presence_penalty, -2.0, 2.0)?;
        check_range("frequency_penalty", sampling.frequency_penalty, -2.0, 2.0)?;
        check_range(
            "repetition_penalty",
            sampling.repetition_penalty,
            0.0,
            100.0,
        )?;
        let stop = match self.present("stop") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Self::wrong("stop", "a string or a list of strings"))?,
            Some(_) => return Err(Self::wrong("stop", "a string or a list of strings")),
        };
        if stop.len() > MAX_STOP_STRINGS {
            return Err(ApiError::bad_request(
                format!("at most {MAX_STOP_STRINGS} stop strings are supported"),
                Some("stop"),
            ));
        }
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let stream = self.bool("stream")?.unwrap_or(false);
        let include_usage = match self.present("stream_options") {
            None => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(Self::wrong("stream_options.include_usage", "a boolean")),
            },
            Some(_) => return Err(Self::wrong("stream_options", "an object")),
        };
        let top_logprobs = if chat {
            match self.bool("logprobs")? {
                Some(true) => Some(self.u64("top_logprobs")?.unwrap_or(0)),
                _ => None,
            }
        } else {
            self.u64("logprobs")?
        };
        if let Some(n) = top_logprobs {
            if n > MAX_TOP_LOGPROBS {
                return Err(ApiError::bad_request(
                    format!("at most {MAX_TOP_LOGPROBS} top logprobs are supported"),
                    Some(if chat { "top_logprobs" } else { "logprobs" }),
                ));
            }
        }
        Ok(GenParams {
            max_tokens: max_tokens.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            sampling,
            stop,
            stream,
            include_usage,
            top_logprobs: top_logprobs.map(|n| n as usize),
            cache_prompt: self.bool("cache_prompt")?.unwrap_or(false),
        })
    }

    /// `messages` of a chat request.
    pub fn messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        let bad = || Self::wrong("messages", "a non-empty list of {role, content} objects");
        let list = self.required("messages")?.as_array().ok_or_else(bad)?;
        if list.is_empty() {
            return Err(bad());
        }
        list.iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).ok_or_else(bad)?;
                let content = match m.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .map(
                            |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                                (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                                _ => Err(ApiError::bad_request(
                                    "only text content parts are supported",
                                    Some("messages"),
                                )),
                            },
                        )
                        .collect::<Result<Vec<_>, _>>()?
                        .concat(),
                    Some(_) => return Err(bad()),
                };
                Ok(ChatMessage {
                    role: role.to_string(),
                    content,
                })
            })
            .collect()
    }

    /// `prompt` of a completion request (a string, or a list holding one string).
    pub fn prompt(&self) -> Result<String, ApiError> {
        match self.required("prompt")? {
            Value::String(s) => Ok(s.clone()),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => Ok(a[0].as_str().unwrap_or_default().to_string()),
            Value::Array(_) => Err(ApiError::bad_request(
                "`prompt` must be a string (a list is accepted only with one string: n = 1 batches)",
                Some("prompt"),
            )),
            _ => Err(Self::wrong("prompt", "a string")),
        }
    }
}

fn check_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::bad_request(
            format!("`{name}` must be between {lo} and {hi}, got {x}"),
            Some(name),
        )),
        _ => Ok(()),
    }
}
