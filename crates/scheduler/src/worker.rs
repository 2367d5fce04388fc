//! The scheduling loop: admission, chunked prefill, batched decode.

use crate::batch::{BatchModel, SeqInput};
use crate::logprobs::top_logprobs;
use crate::request::{Event, FinishReason, Request};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Limits of a [`Scheduler`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Most sequences in the running batch (`--parallel`).
    pub max_running: usize,
    /// Most requests waiting for a slot; more are refused.
    pub max_queue: usize,
    /// Most prompt tokens fed per step, over all sequences.
    pub prefill_chunk: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_running: 4,
            max_queue: 64,
            prefill_chunk: 256,
        }
    }
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The wait queue is full.
    #[error("the request queue is full ({0} waiting)")]
    QueueFull(usize),
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt does not fit in the context.
    #[error("the prompt has {tokens} tokens but the context holds {n_ctx}")]
    PromptTooLong {
        /// Prompt length.
        tokens: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// The scheduler is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerStats {
    /// Requests waiting for a slot.
    pub queued: usize,
    /// Sequences in the running batch.
    pub running: usize,
    /// Requests accepted since start.
    pub requests_total: u64,
    /// Prompt tokens evaluated since start.
    pub prompt_tokens_total: u64,
    /// Tokens generated since start.
    pub generated_tokens_total: u64,
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    generated: AtomicU64,
}

struct Shared {
    queue: Mutex<VecDeque<Request>>,
    wake: Condvar,
    shutting_down: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    counters: Counters,
}

/// Runs a [`BatchModel`] on its own thread and serves requests with
/// continuous batching, first come first served.
pub struct Scheduler {
    shared: Arc<Shared>,
    config: SchedulerConfig,
    n_ctx: usize,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    /// Start the worker thread that owns `model`.
    pub fn start<M: BatchModel>(model: M, config: SchedulerConfig) -> Scheduler {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            shutting_down: AtomicBool::new(false),
            deadline: Mutex::new(None),
            counters: Counters::default(),
        });
        let n_ctx = model.n_ctx();
        let worker_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("rocmforge-scheduler".into())
            .spawn(move || Worker::new(model, config, worker_shared).run())
            .expect("spawning the scheduler thread");
        Scheduler {
            shared,
            config,
            n_ctx,
            worker: Mutex::new(Some(handle)),
        }
    }

    /// Queue a request. Its events go to `request.sink`.
    pub fn submit(&self, request: Request) -> Result<(), SubmitError> {
        if self.shared.shutting_down.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        if request.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if request.prompt.len() >= self.n_ctx {
            return Err(SubmitError::PromptTooLong {
                tokens: request.prompt.len(),
                n_ctx: self.n_ctx,
            });
        }
        let mut q = lock(&self.shared.queue);
        if q.len() >= self.config.max_queue {
            return Err(SubmitError::QueueFull(q.len()));
        }
        q.push_back(request);
        self.shared
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Context size of each sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Current counters.
    pub fn stats(&self) -> SchedulerStats {
        let c = &self.shared.counters;
        SchedulerStats {
            queued: lock(&self.shared.queue).len(),
            running: c.running.load(Ordering::Relaxed),
            requests_total: c.requests.load(Ordering::Relaxed),
            prompt_tokens_total: c.prompt_tokens.load(Ordering::Relaxed),
            generated_tokens_total: c.generated.load(Ordering::Relaxed),
        }
    }

    /// Stop accepting requests; let running and queued ones finish for at most
    /// `grace`, cancel the rest, and wait for the worker to exit.
    pub fn shutdown(&self, grace: Duration) {
        *lock(&self.shared.deadline) = Some(Instant::now() + grace);
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(h) = lock(&self.worker).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// Whether `ROCMFORGE_SCHED_TRACE` is set: then every step prints its
/// sequence and token counts and its wall time (model and sampling) to stderr.
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("ROCMFORGE_SCHED_TRACE").is_some())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One sequence in the running batch.
struct Running<S> {
    req: Request,
    seq: S,
    /// Prompt tokens already fed.
    fed: usize,
    /// Tokens in the sequence's cache.
    len: usize,
    /// Those tokens (for reuse by a later request with the same prefix).
    cached: Vec<u32>,
    /// The token to feed next while decoding.
    next: Option<u32>,
    generated: usize,
    /// Admission order (first come, first served).
    order: u64,
}

/// A finished sequence kept for a later request that starts with the same
/// tokens (at most `max_running` of them, so that running and idle
/// sequences together never exceed the batch limit).
struct Idle<S> {
    seq: S,
    tokens: Vec<u32>,
}

struct Worker<M: BatchModel> {
    model: M,
    config: SchedulerConfig,
    shared: Arc<Shared>,
    running: Vec<Running<M::Seq>>,
    idle: Vec<Idle<M::Seq>>,
    admitted: u64,
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<M: BatchModel> Worker<M> {
    fn new(model: M, config: SchedulerConfig, shared: Arc<Shared>) -> Self {
        Worker {
            model,
            config,
            shared,
            running: Vec::new(),
            idle: Vec::new(),
            admitted: 0,
        }
    }

    fn run(mut self) {
        loop {
            self.admit();
            if self.past_deadline() {
                self.cancel_all("the server shut down before this request finished");
                return;
            }
            if self.running.is_empty() {
                let q = lock(&self.shared.queue);
                if self.shared.shutting_down.load(Ordering::SeqCst) && q.is_empty() {
                    return;
                }
                if q.is_empty() {
                    let _ = self.shared.wake.wait_timeout(q, Duration::from_millis(100));
                }
                continue;
            }
            self.step();
            self.shared
                .counters
                .running
                .store(self.running.len(), Ordering::Relaxed);
        }
    }

    fn past_deadline(&self) -> bool {
        lock(&self.shared.deadline).is_some_and(|d| Instant::now() >= d)
    }

    fn admit(&mut self) {
        while self.running.len() < self.config.max_running.max(1) {
            let Some(mut req) = lock(&self.shared.queue).pop_front() else {
                break;
            };
            match self.take_seq(&req.prompt, req.reuse_prefix) {
                Ok((seq, kept)) => {
                    self.admitted += 1;
                    let cached = req.prompt[..kept].to_vec();
                    self.running.push(Running {
                        req,
                        seq,
                        fed: kept,
                        len: kept,
                        cached,
                        next: None,
                        generated: 0,
                        order: self.admitted,
                    });
                }
                Err(e) => {
                    (req.sink)(Event::Error(format!("could not start the sequence: {e}")));
                }
            }
        }
        self.shared
            .counters
            .running
            .store(self.running.len(), Ordering::Relaxed);
    }

    /// A sequence for `prompt` and how many of its first tokens it already
    /// holds: the idle sequence sharing the longest prefix with it (with
    /// `reuse`; at least the last prompt token is evaluated again, for its
    /// logits), else any idle one emptied, else a new one.
    fn take_seq(&mut self, prompt: &[u32], reuse: bool) -> Result<(M::Seq, usize), M::Error> {
        let cap = prompt.len().saturating_sub(1);
        let best = self
            .idle
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let kept = if reuse {
                    common_prefix(&s.tokens, prompt).min(cap)
                } else {
                    0
                };
                (kept, i)
            })
            .max();
        if let Some((kept, i)) = best {
            let mut idle = self.idle.remove(i);
            if self.model.truncate(&mut idle.seq, kept) {
                return Ok((idle.seq, kept));
            }
            self.idle.clear();
        }
        Ok((self.model.new_seq()?, 0))
    }

    /// Keep a finished sequence for reuse when the model can truncate it
    /// (else it is dropped, freeing its KV space).
    fn park(&mut self, mut seq: M::Seq, tokens: Vec<u32>) {
        if !self.model.truncate(&mut seq, tokens.len()) {
            return;
        }
        self.idle.push(Idle { seq, tokens });
        let keep = self.config.max_running.max(1);
        if self.idle.len() > keep {
            let extra = self.idle.len() - keep;
            self.idle.drain(..extra);
        }
    }

    fn cancel_all(&mut self, why: &str) {
        self.idle.clear();
        for r in &mut self.running {
            (r.req.sink)(Event::Error(why.to_string()));
        }
        self.running.clear();
        for mut req in lock(&self.shared.queue).drain(..) {
            (req.sink)(Event::Error(why.to_string()));
        }
    }

    /// Decide which tokens each running sequence feeds this step: one token
    /// for decoding sequences, prompt chunks (first come, first served) from a
    /// shared budget for the others.
    fn plan(&self) -> Vec<(usize, usize, usize)> {
        let mut budget = self.config.prefill_chunk.max(1);
        let mut plan = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            if r.next.is_some() {
                plan.push((i, 0, 1));
            } else if budget > 0 {
                let take = (r.req.prompt.len() - r.fed).min(budget);
                budget -= take;
                plan.push((i, r.fed, take));
            }
        }
        plan
    }

    fn step(&mut self) {
        let plan = self.plan();
        let t_start = Instant::now();
        let decode_tokens: Vec<[u32; 1]> = plan
            .iter()
            .map(|&(i, _, _)| [self.running[i].next.unwrap_or(0)])
            .collect();
        let result = {
            let mut inputs = Vec::with_capacity(plan.len());
            let mut slots: Vec<Option<&mut Running<M::Seq>>> =
                self.running.iter_mut().map(Some).collect();
            for (k, &(i, from, n)) in plan.iter().enumerate() {
                let r = slots[i].take().expect("each sequence is planned once");
                let (tokens, wants_logits): (&[u32], bool) = if r.next.is_some() {
                    (&decode_tokens[k], true)
                } else {
                    (
                        &r.req.prompt[from..from + n],
                        from + n == r.req.prompt.len(),
                    )
                };
                inputs.push(SeqInput {
                    seq: &mut r.seq,
                    tokens,
                    wants_logits,
                });
            }
            self.model.step(&mut inputs)
        };
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                self.cancel_all(&format!("model evaluation failed: {e}"));
                return;
            }
        };
        let mut finished = Vec::new();
        for (&(i, _, n), logits) in plan.iter().zip(logits) {
            let n_ctx = self.model.n_ctx();
            let r = &mut self.running[i];
            r.len += n;
            match r.next {
                Some(id) => r.cached.push(id),
                None => r.cached.extend_from_slice(&r.req.prompt[r.fed..r.fed + n]),
            }
            if r.next.is_none() {
                r.fed += n;
                self.shared
                    .counters
                    .prompt_tokens
                    .fetch_add(n as u64, Ordering::Relaxed);
                if r.fed < r.req.prompt.len() {
                    continue;
                }
            }
            if let Some(reason) = Self::advance(r, &logits, n_ctx, &self.shared.counters) {
                if let Some(reason) = reason {
                    (r.req.sink)(Event::Done {
                        reason,
                        prompt_tokens: r.req.prompt.len(),
                        completion_tokens: r.generated,
                    });
                }
                finished.push(i);
            }
        }
        if trace() {
            let fed: usize = plan.iter().map(|p| p.2).sum();
            eprintln!(
                "sched step: {} seqs, {} tokens, {:.2} ms",
                plan.len(),
                fed,
                t_start.elapsed().as_secs_f64() * 1e3
            );
        }
        for i in finished.into_iter().rev() {
            let r = self.running.swap_remove(i);
            self.park(r.seq, r.cached);
        }
        // swap_remove changed the order; restore first-come-first-served.
        self.running.sort_by_key(|r| r.order);
    }

    /// Sample the next token. `Some(Some(reason))`: finished; `Some(None)`:
    /// cancelled by the client; `None`: keeps running.
    fn advance(
        r: &mut Running<M::Seq>,
        logits: &[f32],
        n_ctx: usize,
        counters: &Counters,
    ) -> Option<Option<FinishReason>> {
        let id = r.req.sampler.sample(logits);
        if (r.req.is_eog)(id) {
            return Some(Some(FinishReason::Stop));
        }
        let logprob = r.req.top_logprobs.map(|n| top_logprobs(logits, id, n));
        r.generated += 1;
        counters.generated.fetch_add(1, Ordering::Relaxed);
        if !(r.req.sink)(Event::Token { id, logprob }) {
            return Some(None);
        }
        if r.generated >= r.req.max_tokens || r.len + 1 > n_ctx {
            return Some(Some(FinishReason::Length));
        }
        r.next = Some(id);
        None
    }
}
