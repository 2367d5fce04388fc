//! The glue between the engine and the server: the engine's model as a
//! scheduler [`BatchModel`], and the engine's tokenizer, chat template and
//! sampler as a server [`ModelService`].

use anyhow::{Context, Result};
use engine::{Backend, Engine, LogitsWanted, Model, Sampler, SamplingOptions, SeqChunk, Sequence};
use scheduler::{BatchModel, Scheduler, SchedulerConfig, SeqInput, TokenSampler};
use server::{ApiError, ChatMessage, Detokenizer, ModelService, SamplingParams};
use std::path::Path;
use std::sync::Arc;
use tokenizer::{ChatTemplate, Tokenizer};

/// The engine's model, evaluated in batches by the scheduler.
struct EngineBatch<B: Backend> {
    model: Arc<Model<B>>,
    n_ctx: usize,
}

impl<B: Backend + 'static> BatchModel for EngineBatch<B> {
    type Seq = Sequence<B>;
    type Error = engine::EngineError;

    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn new_seq(&mut self) -> Result<Self::Seq, Self::Error> {
        self.model.new_sequence(self.n_ctx)
    }

    fn truncate(&mut self, seq: &mut Self::Seq, len: usize) -> bool {
        seq.truncate(len);
        true
    }

    fn step(
        &mut self,
        inputs: &mut [SeqInput<'_, Self::Seq>],
    ) -> Result<Vec<Vec<f32>>, Self::Error> {
        let mut chunks: Vec<SeqChunk<'_, B>> = inputs
            .iter_mut()
            .map(|i| SeqChunk {
                seq: &mut *i.seq,
                tokens: i.tokens,
                logits: if i.wants_logits {
                    LogitsWanted::Last
                } else {
                    LogitsWanted::None
                },
            })
            .collect();
        self.model.forward(&mut chunks)
    }
}

/// A loaded model served over HTTP.
pub struct EngineService<B: Backend> {
    engine: Engine<B>,
    template: Option<ChatTemplate>,
    template_error: Option<String>,
    model_id: String,
    scheduler: Scheduler,
}

impl<B: Backend + 'static> EngineService<B> {
    /// Serve `engine` (loaded from `path`) and start its scheduler.
    /// `template` replaces the model's chat template when given.
    pub fn new(
        engine: Engine<B>,
        path: &Path,
        template: Option<String>,
        model_id: String,
        config: SchedulerConfig,
    ) -> Result<EngineService<B>> {
        let tok = engine.tokenizer();
        let (template, template_error) = match template {
            Some(src) => {
                let bos = tok
                    .bos_id()
                    .and_then(|id| tok.token_text(id))
                    .unwrap_or("")
                    .to_string();
                let eos = tok
                    .eos_id()
                    .and_then(|id| tok.token_text(id))
                    .unwrap_or("")
                    .to_string();
                (
                    Some(ChatTemplate::new(&src, bos, eos).context("compiling --chat-template")?),
                    None,
                )
            }
            None => {
                let gguf = gguf_format::Gguf::open(path)?;
                match ChatTemplate::from_gguf(&gguf, tok) {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
        };
        let batch = EngineBatch {
            model: Arc::clone(engine.model()),
            n_ctx: engine.n_ctx(),
        };
        Ok(EngineService {
            engine,
            template,
            template_error,
            model_id,
            scheduler: Scheduler::start(batch, config),
        })
    }
}

/// UTF-8-safe streaming detokenizer owning its tokenizer handle.
struct StreamText {
    tok: Arc<Tokenizer>,
    pending: Vec<u8>,
}

impl Detokenizer for StreamText {
    fn push(&mut self, id: u32) -> String {
        self.pending
            .extend_from_slice(self.tok.token_to_piece(id, false));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: keep it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them, as a lossy decode would.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }

    fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// The engine's sampler as the scheduler's.
struct EngineSampler(Sampler);

impl TokenSampler for EngineSampler {
    fn sample(&mut self, logits: &[f32]) -> u32 {
        let id = self.0.sample(logits);
        self.0.accept(id);
        id
    }
}

impl<B: Backend + 'static> ModelService for EngineService<B> {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn n_ctx(&self) -> usize {
        self.engine.n_ctx()
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ApiError> {
        let template = self.template.as_ref().ok_or_else(|| {
            ApiError::bad_request(
                format!(
                    "this model has no usable chat template ({}); start the server with --chat-template",
                    self.template_error.as_deref().unwrap_or("none in the file")
                ),
                Some("messages"),
            )
        })?;
        let msgs: Vec<tokenizer::ChatMessage> = messages
            .iter()
            .map(|m| tokenizer::ChatMessage::new(m.role.clone(), m.content.clone()))
            .collect();
        template.render(&msgs, true).map_err(|e| {
            ApiError::bad_request(format!("chat template failed: {e}"), Some("messages"))
        })
    }

    fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, ApiError> {
        self.engine
            .tokenize(text, true, parse_special)
            .map_err(|e| ApiError::bad_request(e.to_string(), None))
    }

    fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.engine.tokenizer().token_to_piece(id, true)).into_owned()
    }

    fn detokenizer(&self) -> Box<dyn Detokenizer> {
        Box::new(StreamText {
            tok: Arc::clone(self.engine.tokenizer()),
            pending: Vec::new(),
        })
    }

    fn sampler(
        &self,
        p: &SamplingParams,
        prompt: &[u32],
    ) -> Result<Box<dyn TokenSampler>, ApiError> {
        let d = SamplingOptions::default();
        let opts = SamplingOptions {
            temperature: p.temperature.unwrap_or(d.temperature),
            top_k: p.top_k.map_or(d.top_k, |k| k as usize),
            top_p: p.top_p.unwrap_or(d.top_p),
            min_p: p.min_p.unwrap_or(d.min_p),
            repeat_penalty: p.repetition_penalty.unwrap_or(d.repeat_penalty),
            presence_penalty: p.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: p.frequency_penalty.unwrap_or(d.frequency_penalty),
            seed: p.seed.unwrap_or_else(random_seed),
            ..d
        };
        let mut sampler =
            Sampler::new(opts).map_err(|e| ApiError::bad_request(e.to_string(), None))?;
        for &id in prompt {
            sampler.accept(id);
        }
        Ok(Box::new(EngineSampler(sampler)))
    }

    fn eog(&self) -> Box<dyn Fn(u32) -> bool + Send> {
        let tok = Arc::clone(self.engine.tokenizer());
        Box::new(move |id| tok.is_eog(id))
    }

    fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
