//! `scheduler`: continuous batching of generation requests.
//!
//! A [`Scheduler`] owns a model implementing [`BatchModel`] on a thread of its
//! own. Requests join the running batch at any step and leave it when they
//! finish or are cancelled; every step runs one forward pass over all running
//! sequences (so each weight is read once per step), with long prompts fed in
//! chunks so that they do not stall the sequences that are already decoding.
//!
//! The scheduler knows nothing about tokenizers or samplers: requests bring a
//! [`TokenSampler`] and a sink for [`Event`]s, and the model only maps token
//! ids to logits.
//!
//! With `ROCMFORGE_SCHED_TRACE` set in the environment, every step prints a
//! line to stderr: sequences, tokens fed, and its wall time in ms.

#![warn(missing_docs)]

mod batch;
mod logprobs;
mod request;
mod worker;

pub use batch::{BatchModel, SeqInput};
pub use logprobs::{top_logprobs, TokenLogprob};
pub use request::{Event, EventSink, FinishReason, Request, TokenSampler};
pub use worker::{Scheduler, SchedulerConfig, SchedulerStats, SubmitError};
