//! Running one request: submit it to the scheduler and turn its token events
//! into text pieces (UTF-8 safe, stop strings held back).

use crate::api::GenParams;
use crate::logprobs::TokenLogprobs;
use crate::service::{Detokenizer, ModelService};
use crate::stop::{StopMatcher, StopOutcome};
use crate::ApiError;
use scheduler::{Event, FinishReason, Request, SubmitError};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A step of a generation, as the routes consume it.
pub enum Piece {
    /// New text (possibly empty) and the logprobs of the tokens that produced it.
    Text {
        /// Text safe to send.
        text: String,
        /// Per-token logprobs, when requested.
        logprobs: Vec<TokenLogprobs>,
    },
    /// The end; nothing follows.
    Finished {
        /// `stop` or `length`.
        reason: &'static str,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
    },
}

/// A running generation. Dropping it cancels the request at the scheduler's
/// next step (its event channel closes).
pub struct Generation {
    events: mpsc::UnboundedReceiver<Event>,
    service: Arc<dyn ModelService>,
    detok: Box<dyn Detokenizer>,
    stop: StopMatcher,
    prompt_tokens: usize,
    completion_tokens: usize,
    ready: VecDeque<Piece>,
    ended: bool,
}

/// Submit `prompt` with `params` to the service's scheduler.
pub fn start(
    service: &Arc<dyn ModelService>,
    prompt: Vec<u32>,
    params: &GenParams,
) -> Result<Generation, ApiError> {
    let n_ctx = service.n_ctx();
    if prompt.len() >= n_ctx {
        return Err(ApiError::bad_request(
            format!(
                "the prompt has {} tokens but the context size is {n_ctx}",
                prompt.len()
            ),
            None,
        )
        .with_code("context_length_exceeded"));
    }
    let max_tokens = params
        .max_tokens
        .unwrap_or(usize::MAX)
        .min(n_ctx - prompt.len());
    let (tx, rx) = mpsc::unbounded_channel();
    let prompt_tokens = prompt.len();
    let sampler = service.sampler(&params.sampling, &prompt)?;
    let request = Request {
        prompt,
        max_tokens,
        sampler,
        is_eog: if params.sampling.ignore_eos {
            Box::new(|_| false)
        } else {
            service.eog()
        },
        top_logprobs: params.top_logprobs,
        reuse_prefix: params.cache_prompt,
        sink: Box::new(move |e| tx.send(e).is_ok()),
    };
    let mut ready = VecDeque::new();
    if max_tokens == 0 {
        ready.push_back(Piece::Finished {
            reason: "length",
            prompt_tokens,
            completion_tokens: 0,
        });
    } else {
        service.scheduler().submit(request).map_err(|e| match e {
            SubmitError::QueueFull(_) | SubmitError::ShuttingDown => {
                ApiError::unavailable(e.to_string())
            }
            SubmitError::EmptyPrompt | SubmitError::PromptTooLong { .. } => {
                ApiError::bad_request(e.to_string(), None)
            }
        })?;
    }
    Ok(Generation {
        events: rx,
        service: Arc::clone(service),
        detok: service.detokenizer(),
        stop: StopMatcher::new(params.stop.clone()),
        prompt_tokens,
        completion_tokens: 0,
        ready,
        ended: false,
    })
}

impl Generation {
    /// The next piece; `None` once [`Piece::Finished`] has been returned.
    pub async fn next(&mut self) -> Option<Result<Piece, ApiError>> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                if matches!(p, Piece::Finished { .. }) {
                    self.ended = true;
                }
                return Some(Ok(p));
            }
            if self.ended {
                return None;
            }
            match self.events.recv().await {
                Some(Event::Token { id, logprob }) => {
                    self.completion_tokens += 1;
                    let text = self.detok.push(id);
                    let logprobs = logprob
                        .map(|lp| vec![TokenLogprobs::new(id, &lp, |t| self.service.token_text(t))])
                        .unwrap_or_default();
                    match self.stop.push(&text) {
                        StopOutcome::Emit(text) => {
                            self.ready.push_back(Piece::Text { text, logprobs })
                        }
                        StopOutcome::Stopped(text) => {
                            // Closing the channel cancels the request in the scheduler.
                            self.events.close();
                            self.ready.push_back(Piece::Text { text, logprobs });
                            self.finish("stop");
                        }
                    }
                }
                Some(Event::Done { reason, .. }) => {
                    let tail = self.detok.flush();
                    let reason = match reason {
                        FinishReason::Stop => "stop",
                        FinishReason::Length => "length",
                    };
                    match self.stop.push(&tail) {
                        StopOutcome::Emit(t) => {
                            let text = t + &self.stop.finish();
                            self.ready.push_back(Piece::Text {
                                text,
                                logprobs: Vec::new(),
                            });
                            self.finish(reason);
                        }
                        StopOutcome::Stopped(text) => {
                            self.ready.push_back(Piece::Text {
                                text,
                                logprobs: Vec::new(),
                            });
                            self.finish("stop");
                        }
                    }
                }
                Some(Event::Error(e)) => {
                    self.ended = true;
                    return Some(Err(ApiError::internal(e)));
                }
                None => {
                    self.ended = true;
                    return Some(Err(ApiError::internal("the generation ended unexpectedly")));
                }
            }
        }
    }

    fn finish(&mut self, reason: &'static str) {
        self.ready.push_back(Piece::Finished {
            reason,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
        });
    }
}
