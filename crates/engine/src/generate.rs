//! Streaming generation: an iterator of tokens with UTF-8-safe text pieces.

use crate::engine::Session;
use crate::error::Result;
use crate::sampler::{Sampler, SamplingOptions};
use crate::tok::StreamDecoder;
use backend_core::Backend;
use std::time::{Duration, Instant};

/// One generated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedToken {
    /// Token id.
    pub id: u32,
    /// Text completed by this token (may be empty while a multi-byte
    /// character is still incomplete; never half a character).
    pub text_piece: String,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token was sampled (it is not yielded).
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// An error was yielded (e.g. the context is full).
    Error,
}

/// Time spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens evaluated.
    pub prompt_tokens: usize,
    /// Time spent evaluating the prompt.
    pub prompt_time: Duration,
    /// Tokens evaluated one at a time after the prompt.
    pub decode_tokens: usize,
    /// Time spent in those single-token steps, sampling included.
    pub decode_time: Duration,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prompt_tokens_per_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_time)
    }
    /// Generated tokens per second (single-token steps).
    pub fn gen_tokens_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_time)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    if n == 0 || t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

/// A running generation; see [`Engine::generate`](crate::Engine::generate).
pub struct Generation<'e, B: Backend> {
    session: Session<'e, B>,
    sampler: Sampler,
    decoder: StreamDecoder<'e>,
    prompt: Vec<u32>,
    last: Option<u32>,
    produced: usize,
    finish: Option<FinishReason>,
    timings: Timings,
}

impl<'e, B: Backend> Generation<'e, B> {
    pub(crate) fn new(
        session: Session<'e, B>,
        prompt: &[u32],
        opts: SamplingOptions,
    ) -> Result<Self> {
        let sampler = Sampler::new(opts)?;
        let decoder = StreamDecoder::new(session.engine().tokenizer());
        Ok(Generation {
            session,
            sampler,
            decoder,
            prompt: prompt.to_vec(),
            last: None,
            produced: 0,
            finish: None,
            timings: Timings::default(),
        })
    }

    /// Why it ended (`None` while running).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Prompt and decode timings so far.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// The session (its KV cache holds prompt and generated tokens).
    pub fn session(&self) -> &Session<'e, B> {
        &self.session
    }

    fn step(&mut self) -> Result<Option<GeneratedToken>> {
        if self.produced >= self.sampler.options().max_tokens {
            self.finish = Some(FinishReason::MaxTokens);
            return Ok(None);
        }
        let start = Instant::now();
        let pending = match self.last {
            None => {
                let prompt = std::mem::take(&mut self.prompt);
                if prompt.is_empty() && self.session.logits().is_empty() {
                    return Err(crate::EngineError::InvalidArgument(
                        "an empty prompt needs a session that has evaluated tokens".into(),
                    ));
                }
                for &id in &prompt {
                    self.sampler.accept(id);
                }
                self.timings.prompt_tokens += prompt.len();
                prompt
            }
            Some(id) => vec![id],
        };
        // Where the backend can pick the token itself, the logits stay on
        // the device and only the id crosses to the host.
        let on_device = !pending.is_empty()
            && self.session.engine().model().backend().selects_tokens()
            && self.sampler.selects_on_device();
        // (`token_select` draws the random number: only call it when used.)
        let select = if on_device {
            self.sampler.token_select()
        } else {
            None
        };
        let id = match select {
            Some(select) => self.session.eval_select(&pending, &select)?,
            None => {
                if !pending.is_empty() {
                    self.session.eval(&pending)?;
                }
                self.sampler.sample(self.session.logits())
            }
        };
        self.sampler.accept(id);
        let elapsed = start.elapsed();
        if self.last.is_none() {
            self.timings.prompt_time += elapsed;
        } else {
            self.timings.decode_tokens += 1;
            self.timings.decode_time += elapsed;
        }
        let engine = self.session.engine();
        if engine.is_eog(id) && !self.sampler.options().ignore_eos {
            self.finish = Some(FinishReason::EndOfGeneration);
            return Ok(None);
        }
        self.last = Some(id);
        self.produced += 1;
        let text_piece = self.decoder.push(id);
        Ok(Some(GeneratedToken { id, text_piece }))
    }
}

impl<B: Backend> Iterator for Generation<'_, B> {
    type Item = Result<GeneratedToken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finish.is_some() {
            return None;
        }
        match self.step() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                self.finish = Some(FinishReason::Error);
                Some(Err(e))
            }
        }
    }
}
