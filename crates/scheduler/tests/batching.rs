//! The scheduler against a toy model whose next token is `(last + 1) % VOCAB`.

use scheduler::{
    BatchModel, Event, FinishReason, Request, Scheduler, SchedulerConfig, SeqInput, SubmitError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const VOCAB: usize = 50;

/// Counts steps and the largest batch seen.
#[derive(Default)]
struct Probe {
    steps: AtomicUsize,
    max_batch: AtomicUsize,
    max_tokens_in_step: AtomicUsize,
    live_seqs: AtomicUsize,
}

struct Toy {
    n_ctx: usize,
    probe: Arc<Probe>,
    step_delay: Duration,
    /// Whether finished sequences can be truncated and reused.
    truncates: bool,
}

struct ToySeq {
    tokens: Vec<u32>,
    probe: Arc<Probe>,
}

impl Drop for ToySeq {
    fn drop(&mut self) {
        self.probe.live_seqs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BatchModel for Toy {
    type Seq = ToySeq;
    type Error = String;
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn new_seq(&mut self) -> Result<ToySeq, String> {
        self.probe.live_seqs.fetch_add(1, Ordering::SeqCst);
        Ok(ToySeq {
            tokens: Vec::new(),
            probe: Arc::clone(&self.probe),
        })
    }
    fn truncate(&mut self, seq: &mut ToySeq, len: usize) -> bool {
        seq.tokens.truncate(len);
        self.truncates
    }
    fn step(&mut self, inputs: &mut [SeqInput<'_, ToySeq>]) -> Result<Vec<Vec<f32>>, String> {
        std::thread::sleep(self.step_delay);
        self.probe.steps.fetch_add(1, Ordering::SeqCst);
        self.probe
            .max_batch
            .fetch_max(inputs.len(), Ordering::SeqCst);
        let n: usize = inputs.iter().map(|i| i.tokens.len()).sum();
        self.probe.max_tokens_in_step.fetch_max(n, Ordering::SeqCst);
        Ok(inputs
            .iter_mut()
            .map(|inp| {
                inp.seq.tokens.extend_from_slice(inp.tokens);
                assert!(
                    inp.seq.tokens.len() <= self.n_ctx,
                    "context overflow reached the model"
                );
                let last = *inp.seq.tokens.last().unwrap() as usize;
                let mut logits = vec![0.0; VOCAB];
                logits[(last + 1) % VOCAB] = 10.0;
                logits
            })
            .collect())
    }
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

fn request(prompt: Vec<u32>, max_tokens: usize, eog: u32) -> (Request, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let req = Request {
        prompt,
        max_tokens,
        sampler: Box::new(|l: &[f32]| argmax(l)),
        is_eog: Box::new(move |id| id == eog),
        top_logprobs: Some(2),
        reuse_prefix: true,
        sink: Box::new(move |e| tx.send(e).is_ok()),
    };
    (req, rx)
}

fn collect(rx: &mpsc::Receiver<Event>) -> (Vec<u32>, Event) {
    let mut ids = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)).expect("event") {
            Event::Token { id, logprob } => {
                let lp = logprob.expect("logprobs were requested");
                assert_eq!(lp.top[0].0, id);
                ids.push(id);
            }
            other => return (ids, other),
        }
    }
}

fn toy(n_ctx: usize, delay_ms: u64) -> (Toy, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    (
        Toy {
            n_ctx,
            probe: Arc::clone(&probe),
            step_delay: Duration::from_millis(delay_ms),
            truncates: false,
        },
        probe,
    )
}

#[test]
fn concurrent_requests_share_steps_and_get_their_own_tokens() {
    let (model, probe) = toy(256, 2);
    let cfg = SchedulerConfig {
        max_running: 8,
        max_queue: 16,
        prefill_chunk: 64,
    };
    let sched = Scheduler::start(model, cfg);
    let mut rxs = Vec::new();
    for k in 0..8u32 {
        let (req, rx) = request(vec![k, k + 1, k + 2], 20, 999);
        sched.submit(req).unwrap();
        rxs.push((k, rx));
    }
    for (k, rx) in rxs {
        let (ids, done) = collect(&rx);
        let expect: Vec<u32> = (0..20).map(|i| (k + 3 + i) % VOCAB as u32).collect();
        assert_eq!(ids, expect, "request {k}");
        match done {
            Event::Done {
                reason,
                prompt_tokens,
                completion_tokens,
            } => {
                assert_eq!(reason, FinishReason::Length);
                assert_eq!(prompt_tokens, 3);
                assert_eq!(completion_tokens, 20);
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        probe.max_batch.load(Ordering::SeqCst) > 1,
        "requests were never batched"
    );
    assert!(
        probe.steps.load(Ordering::SeqCst) < 8 * 20,
        "one step per token per request: no batching"
    );
    let stats = sched.stats();
    assert_eq!(stats.generated_tokens_total, 160);
    assert_eq!(stats.prompt_tokens_total, 24);
}

#[test]
fn end_of_generation_stops_without_reporting_the_token() {
    let (model, _) = toy(256, 0);
    let sched = Scheduler::start(model, SchedulerConfig::default());
    let (req, rx) = request(vec![5], 100, 9);
    sched.submit(req).unwrap();
    let (ids, done) = collect(&rx);
    assert_eq!(ids, vec![6, 7, 8]);
    assert!(matches!(
        done,
        Event::Done {
            reason: FinishReason::Stop,
            completion_tokens: 3,
            ..
        }
    ));
}

#[test]
fn long_prompts_are_fed_in_chunks() {
    let (model, probe) = toy(1024, 0);
    let cfg = SchedulerConfig {
        max_running: 2,
        max_queue: 4,
        prefill_chunk: 32,
    };
    let sched = Scheduler::start(model, cfg);
    let (req, rx) = request((0..300).map(|i| i % 40).collect(), 2, 999);
    sched.submit(req).unwrap();
    let (ids, _) = collect(&rx);
    assert_eq!(ids, vec![(299 % 40 + 1) as u32, (299 % 40 + 2) as u32]);
    assert!(probe.max_tokens_in_step.load(Ordering::SeqCst) <= 32 + 2);
}

#[test]
fn context_limit_ends_with_length() {
    let (model, _) = toy(10, 0);
    let sched = Scheduler::start(model, SchedulerConfig::default());
    let (req, rx) = request(vec![1, 2, 3, 4], 100, 999);
    sched.submit(req).unwrap();
    let (ids, done) = collect(&rx);
    assert_eq!(
        ids.len(),
        7,
        "4 prompt + 6 fed tokens fill the 10-token context, the 7th is sampled last"
    );
    assert!(matches!(
        done,
        Event::Done {
            reason: FinishReason::Length,
            ..
        }
    ));
}

#[test]
fn refusals() {
    let (model, _) = toy(8, 50);
    let cfg = SchedulerConfig {
        max_running: 1,
        max_queue: 1,
        prefill_chunk: 8,
    };
    let sched = Scheduler::start(model, cfg);
    assert_eq!(
        sched.submit(request(vec![], 1, 0).0),
        Err(SubmitError::EmptyPrompt)
    );
    assert_eq!(
        sched.submit(request(vec![1; 8], 1, 0).0),
        Err(SubmitError::PromptTooLong {
            tokens: 8,
            n_ctx: 8
        })
    );
    let (a, _ra) = request(vec![1], 5, 999);
    sched.submit(a).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (b, _rb) = request(vec![1], 5, 999);
    sched.submit(b).unwrap();
    let (c, _rc) = request(vec![1], 5, 999);
    assert!(matches!(sched.submit(c), Err(SubmitError::QueueFull(1))));
}

#[test]
fn a_cancelled_request_frees_its_slot() {
    let (model, probe) = toy(256, 1);
    let cfg = SchedulerConfig {
        max_running: 1,
        max_queue: 4,
        prefill_chunk: 8,
    };
    let sched = Scheduler::start(model, cfg);
    let (a, ra) = request(vec![1], 10_000, 999);
    sched.submit(a).unwrap();
    let (b, rb) = request(vec![2], 3, 999);
    sched.submit(b).unwrap();
    let _ = ra.recv_timeout(Duration::from_secs(5)).unwrap();
    drop(ra); // the client goes away: its sink now fails
    let (ids, done) = collect(&rb);
    assert_eq!(ids, vec![3, 4, 5]);
    assert!(matches!(done, Event::Done { .. }));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        probe.live_seqs.load(Ordering::SeqCst),
        0,
        "sequence state leaked"
    );
}

#[test]
fn shutdown_finishes_or_cancels_within_the_grace_period() {
    let (model, _) = toy(100_000, 1);
    let sched = Scheduler::start(model, SchedulerConfig::default());
    let (a, ra) = request(vec![1], 1_000_000, 999);
    sched.submit(a).unwrap();
    let t = std::time::Instant::now();
    sched.shutdown(Duration::from_millis(100));
    assert!(t.elapsed() < Duration::from_secs(2));
    let last = ra.try_iter().last().expect("events");
    assert!(matches!(last, Event::Error(_)));
    assert_eq!(
        sched.submit(request(vec![1], 1, 0).0),
        Err(SubmitError::ShuttingDown)
    );
}

/// A finished sequence serves the next request that starts with the same
/// tokens: only the rest of its prompt is fed (at least its last token),
/// the output is what a fresh sequence gives, `reuse_prefix: false` feeds
/// the whole prompt, and running plus kept sequences stay within the limit.
#[test]
fn finished_sequences_serve_requests_with_the_same_prefix() {
    let (mut model, probe) = toy(256, 0);
    model.truncates = true;
    let cfg = SchedulerConfig {
        max_running: 2,
        max_queue: 16,
        prefill_chunk: 64,
    };
    let sched = Scheduler::start(model, cfg);
    let run = |prompt: Vec<u32>, reuse: bool| -> Vec<u32> {
        let (mut req, rx) = request(prompt, 3, 999);
        req.reuse_prefix = reuse;
        sched.submit(req).unwrap();
        let (ids, done) = collect(&rx);
        assert!(matches!(done, Event::Done { .. }), "{done:?}");
        ids
    };
    let fed = || sched.stats().prompt_tokens_total;
    assert_eq!(run(vec![1, 2, 3, 4, 5], true), vec![6, 7, 8]);
    assert_eq!(fed(), 5);
    // Shares [1, 2, 3, 4]: two prompt tokens fed.
    assert_eq!(run(vec![1, 2, 3, 4, 9, 9], true), vec![10, 11, 12]);
    assert_eq!(fed(), 7);
    // The same prompt again: only its last token.
    assert_eq!(run(vec![1, 2, 3, 4, 9, 9], true), vec![10, 11, 12]);
    assert_eq!(fed(), 8);
    // Without reuse: all of it.
    assert_eq!(run(vec![1, 2, 3, 4, 9, 9], false), vec![10, 11, 12]);
    assert_eq!(fed(), 14);
    // A prompt sharing nothing: all of it, on a recycled sequence.
    assert_eq!(run(vec![30, 31], true), vec![32, 33, 34]);
    assert_eq!(fed(), 16);
    assert!(
        probe.live_seqs.load(Ordering::SeqCst) <= 2,
        "more sequences alive than --parallel"
    );
}
