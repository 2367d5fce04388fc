//! Recorded decode steps ([`backend_core::Backend::decode_select`]): the launches of one
//! sequence's one-token pass are captured once as a graph and replayed for
//! the following tokens, so that the host submits one graph instead of a
//! few hundred kernels and the GPU runs them without gaps.
//!
//! What changes from one step to the next (the token, its position) is
//! read by the kernels from a small device buffer, `[position, token]`,
//! written before each replay: while a pass is being captured the ops that
//! take those values (`get_rows`, RoPE with the cache write, attention)
//! point their kernels at that buffer instead of host values. Every other
//! launch argument is the same at every step, with two exceptions that the
//! recording checks before each replay: the attention plan (how many parts
//! the keys are split into grows with the context) and scratch buffers
//! replaced by larger ones. Activations of the captured pass come from a
//! pool of the recording's own, so their addresses stay valid.
//!
//! Ops that cannot be replayed (host copies, the two-pass cache write of
//! partly rotated keys, anything with host values other than the step's)
//! refuse while capturing; the sequence then runs its steps op by op.
//!
//! Launched ahead: once a replayed step's token selection is on the stream,
//! the sequence's next step (the same recording at the next position, if
//! it is still valid there) is launched right away, its `[position,
//! token]` written on the device by one small kernel (`step_next_u32`: the
//! token from the selection's id buffer), and only then is the
//! picked id read back (after an event that follows the selection, on a
//! second stream). So the GPU does not wait for the host between steps.
//! When the engine then asks for that position with that token, the step
//! has already run; with anything else (another token, another position)
//! the step runs again as usual: it writes the same cache row and logits,
//! so the extra run only cost time, and the recording launches nothing
//! ahead any more (a caller that does not feed the picked ids back, such
//! as a benchmark of random ids, would otherwise run every step twice).
//! Off unless `ROCMFORGE_GPU_DECODE_AHEAD=1` (or
//! `HipBackend::set_decode_ahead(true)`).
//!
//! Capturing records whatever is submitted to the backend's stream, so no
//! other thread may use the same backend while a step is recorded (one
//! step in a sequence's life, and again when its attention plan changes).
//! The engine runs a model's passes one at a time, and the server's
//! scheduler drives its model from one worker thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use backend_core::{BackendError, Result, TokenSelect};
use gpu_runtime::{DeviceBuffer, Event, Graph, RuntimeError};
use hip_kernels::AttnParams;

use crate::pool::BufferPool;
use crate::{dev_err, HipBackend, HipTensor};

/// How many steps were recorded and replayed.
#[derive(Debug, Default)]
pub(crate) struct GraphCounts {
    recorded: AtomicU64,
    replayed: AtomicU64,
}

impl GraphCounts {
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.recorded.load(Ordering::Relaxed),
            self.replayed.load(Ordering::Relaxed),
        )
    }
}

/// The state of a pass being captured.
#[derive(Debug)]
pub(crate) struct Capture {
    /// Where the pass's activations come from.
    pub(crate) arena: Arc<BufferPool>,
    /// The step's position and token (the host values the ops must see).
    pub(crate) pos: usize,
    pub(crate) token: u32,
    /// The smallest context of the caches the pass writes or reads: the
    /// recording is valid for positions below it.
    pub(crate) pos_limit: usize,
    /// Each distinct attention launch and its split count.
    pub(crate) plans: Vec<(AttnParams, usize)>,
    /// The first op that refused to be captured.
    pub(crate) refused: Option<&'static str>,
}

/// A sequence's recorded decode step (the GPU's
/// [`backend_core::Backend::DecodeGraph`]).
#[derive(Default)]
pub struct HipDecodeGraph {
    state: State,
}

impl std::fmt::Debug for HipDecodeGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match &self.state {
            State::Fresh => "fresh",
            State::Warm => "warm",
            State::Ready(_) => "recorded",
            State::Off => "off",
        };
        f.debug_struct("HipDecodeGraph").field("state", &s).finish()
    }
}

#[derive(Default)]
enum State {
    /// No step yet: the first one runs op by op (growing every scratch
    /// buffer to its size, so that the capture does not replace one).
    #[default]
    Fresh,
    /// A step ran; the next one is captured.
    Warm,
    Ready(Box<Recorded>),
    /// Capturing failed or was refused: op by op from now on.
    Off,
}

/// An instantiated graph and what it points into.
struct Recorded {
    /// The step launched ahead (position, token), if any: it has run or is
    /// running on the stream.
    ahead: Option<(usize, u32)>,
    /// A step launched ahead was not the one asked for next: launch none
    /// ahead any more.
    ahead_missed: bool,
    /// Recorded after a replay's token selection (the picked id is ready).
    picked: Event,
    /// Recorded after a step launched ahead (waited for before the
    /// recording is dropped).
    launched: Event,
    graph: Graph,
    /// The logits row the graph writes (its buffer is the arena's).
    logits: HipTensor,
    /// Keeps every activation buffer of the recording alive.
    _arena: Arc<BufferPool>,
    pos_limit: usize,
    plans: Vec<(AttnParams, usize)>,
    /// The kernels' and the 8-bit row's scratch generations at capture.
    generation: (u64, u64),
}

impl Drop for Recorded {
    fn drop(&mut self) {
        // A step launched ahead may still run on the recording's buffers.
        if self.ahead.is_some() {
            let _ = self.launched.synchronize();
        }
    }
}

impl HipBackend {
    /// The position and token of the pass being captured, if any.
    pub(crate) fn capture_step(&self) -> Option<(usize, u32)> {
        self.capture_lock().as_ref().map(|c| (c.pos, c.token))
    }

    /// Where new activation buffers come from: the recording's arena while
    /// capturing, else the backend's pool.
    pub(crate) fn current_pool(&self) -> Arc<BufferPool> {
        match self.capture_lock().as_ref() {
            Some(c) => c.arena.clone(),
            None => self.pool.clone(),
        }
    }

    /// Err (and the recording refused) when a pass is being captured: for
    /// ops whose work cannot be replayed.
    pub(crate) fn refuse_capture(&self, op: &'static str) -> Result<()> {
        match self.capture_lock().as_mut() {
            Some(c) => {
                c.refused.get_or_insert(op);
                Err(BackendError::Unsupported(format!(
                    "{op} in a recorded decode step"
                )))
            }
            None => Ok(()),
        }
    }

    /// Note that the captured pass uses a cache of `n_ctx` positions and,
    /// when given, an attention launch with its split count.
    pub(crate) fn capture_note(&self, n_ctx: usize, attention: Option<(AttnParams, usize)>) {
        if let Some(c) = self.capture_lock().as_mut() {
            c.pos_limit = c.pos_limit.min(n_ctx);
            if let Some(plan) = attention {
                if !c.plans.contains(&plan) {
                    c.plans.push(plan);
                }
            }
        }
    }

    fn capture_lock(&self) -> std::sync::MutexGuard<'_, Option<Capture>> {
        self.capture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `[position, token]` buffer the captured kernels read.
    pub(crate) fn step_buffer(&self) -> std::sync::MutexGuard<'_, DeviceBuffer<u32>> {
        self.step.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_step(&self, pos: usize, token: u32) -> Result<()> {
        let pos = u32::try_from(pos)
            .map_err(|_| BackendError::Device(format!("position {pos} does not fit 32 bits")))?;
        let mut step = self.step_buffer();
        let mut host = self.step_host.lock().unwrap_or_else(|p| p.into_inner());
        **host = [pos, token];
        // SAFETY: the source is the backend's own `step_host`, changed only
        // here and at the next step, after the token of this one was read
        // back (after a synchronisation of the stream or of an event
        // recorded after the token selection, which follows this copy).
        unsafe { step.copy_from_host_async(&self.stream, 0, &host[..]) }.map_err(dev_err)
    }

    fn generations(&self) -> (u64, u64) {
        (self.kernels.scratch_generation(), self.q8().generation())
    }

    /// Whether `rec` gives the pass's work at `pos`.
    fn replays_at(&self, rec: &Recorded, pos: usize) -> bool {
        pos < rec.pos_limit
            && rec.generation == self.generations()
            && rec.plans.iter().all(|(p, splits)| {
                let at = AttnParams {
                    start_pos: pos,
                    ..*p
                };
                self.kernels.attention_splits(&at) == *splits
            })
    }

    fn pick(&self, logits: &mut HipTensor, select: &TokenSelect) -> Result<u32> {
        let ids = self.select_on_device(logits, std::slice::from_ref(select))?;
        ids.first()
            .copied()
            .ok_or_else(|| BackendError::Device("token selection returned no id".into()))
    }

    /// [`backend_core::Backend::decode_select`] of the GPU backend.
    pub(crate) fn decode_step<E: From<BackendError>>(
        &self,
        graph: &mut HipDecodeGraph,
        token: u32,
        pos: usize,
        select: &TokenSelect,
        mut pass: impl FnMut() -> std::result::Result<HipTensor, E>,
    ) -> std::result::Result<u32, E> {
        if !self.decode_graphs.load(Ordering::Relaxed) {
            graph.state = State::Off;
        }
        if let State::Ready(rec) = &mut graph.state {
            if self.replays_at(rec, pos) {
                let id = self.launch_recorded(rec, pos, token, select)?;
                self.graph_counts.replayed.fetch_add(1, Ordering::Relaxed);
                return Ok(id);
            }
        }
        match graph.state {
            State::Fresh | State::Off => {
                if matches!(graph.state, State::Fresh) {
                    graph.state = State::Warm;
                }
                let mut logits = pass()?;
                return Ok(self.pick(&mut logits, select)?);
            }
            State::Warm | State::Ready(_) => {}
        }
        // The old recording (if any) goes before its replacement is made.
        graph.state = State::Warm;
        match self.record(token, pos, &mut pass) {
            Recording::Made(mut rec) => {
                let id = self.launch_recorded(&mut rec, pos, token, select)?;
                self.graph_counts.recorded.fetch_add(1, Ordering::Relaxed);
                graph.state = State::Ready(rec);
                Ok(id)
            }
            other => {
                if let Recording::Off = other {
                    graph.state = State::Off;
                }
                let mut logits = pass()?;
                Ok(self.pick(&mut logits, select)?)
            }
        }
    }

    /// Run `rec` for `token` at `pos` (unless that step was launched ahead)
    /// and pick the next token; launch the step after it ahead where it may.
    fn launch_recorded(
        &self,
        rec: &mut Recorded,
        pos: usize,
        token: u32,
        select: &TokenSelect,
    ) -> Result<u32> {
        let launched_ahead = rec.ahead.take();
        if launched_ahead != Some((pos, token)) {
            // Nothing ahead, or a step for another position or token: its
            // cache row and logits are written again here.
            rec.ahead_missed |= launched_ahead.is_some();
            self.write_step(pos, token)?;
            rec.graph.launch(&self.stream).map_err(dev_err)?;
        }
        // The replay wrote the 8-bit scratch behind the host's records.
        self.forget_q8();
        if !self.decode_ahead.load(Ordering::Relaxed) {
            return self.pick(&mut rec.logits, select);
        }
        let mut ids = self.id_buffers(1)?;
        let Some((out, arg)) = ids.as_mut() else {
            return Err(BackendError::Device("id scratch missing".into()));
        };
        let greedy = self.launch_select(&mut rec.logits, std::slice::from_ref(select), out, arg)?;
        let picked: &DeviceBuffer<u32> = if greedy.is_empty() { out } else { arg };
        rec.picked.record(&self.stream).map_err(dev_err)?;
        let next = pos + 1;
        let ahead = !rec.ahead_missed && self.replays_at(rec, next) && u32::try_from(next).is_ok();
        if ahead {
            let mut step = self.step_buffer();
            self.kernels
                .step_next(&self.stream, picked, &mut step, next as u32)
                .map_err(dev_err)?;
            drop(step);
            rec.graph.launch(&self.stream).map_err(dev_err)?;
            rec.launched.record(&self.stream).map_err(dev_err)?;
            self.forget_q8();
        }
        rec.picked.synchronize().map_err(dev_err)?;
        // On the second stream: the main one runs the step launched ahead.
        let mut id = [0u32];
        picked
            .copy_prefix_to_host(&self.copy_stream, &mut id)
            .map_err(dev_err)?;
        if ahead {
            rec.ahead = Some((next, id[0]));
        }
        Ok(id[0])
    }

    /// Capture `pass` at `pos` with `token` (nothing runs on the device).
    fn record<E>(
        &self,
        token: u32,
        pos: usize,
        pass: &mut impl FnMut() -> std::result::Result<HipTensor, E>,
    ) -> Recording {
        let before = self.generations();
        // The captured pass must not rely on an 8-bit row made before it.
        self.forget_q8();
        *self.capture_lock() = Some(Capture {
            arena: Arc::new(BufferPool::new(usize::MAX)),
            pos,
            token,
            pos_limit: usize::MAX,
            plans: Vec::new(),
            refused: None,
        });
        let mut out = None;
        let mut failed = false;
        let made = Graph::capture(&self.stream, |_| match pass() {
            Ok(t) => {
                out = Some(t);
                Ok(())
            }
            Err(_) => {
                failed = true;
                Err(RuntimeError::Invalid(
                    "the pass failed while being recorded".into(),
                ))
            }
        });
        let cap = self.capture_lock().take();
        self.forget_q8();
        let Some(cap) = cap else {
            return Recording::Off;
        };
        if let Some(op) = cap.refused {
            tracing::debug!("decode steps run op by op: {op} cannot be recorded");
            return Recording::Off;
        }
        if failed {
            // Running it op by op reports the pass's own error.
            return Recording::Retry;
        }
        let graph = match made {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!("decode steps run op by op: recording failed: {e}");
                return Recording::Off;
            }
        };
        match out {
            // A scratch buffer replaced while capturing: launches before it
            // point into freed memory.
            Some(_) if self.generations() != before => Recording::Retry,
            Some(logits) if pos < cap.pos_limit => Recording::Made(Box::new(Recorded {
                ahead: None,
                ahead_missed: false,
                picked: match Event::new(&self.device) {
                    Ok(e) => e,
                    Err(_) => return Recording::Off,
                },
                launched: match Event::new(&self.device) {
                    Ok(e) => e,
                    Err(_) => return Recording::Off,
                },
                graph,
                logits,
                _arena: cap.arena,
                pos_limit: cap.pos_limit,
                plans: cap.plans,
                generation: before,
            })),
            _ => Recording::Off,
        }
    }
}

/// What [`HipBackend::record`] gave.
enum Recording {
    Made(Box<Recorded>),
    /// Not this time (run the step op by op, try again next step).
    Retry,
    /// Not for this sequence.
    Off,
}
