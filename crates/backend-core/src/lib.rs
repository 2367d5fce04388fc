//! `backend-core`: the contract between the model code (`engine`) and the
//! compute backends (`backend-cpu`, `backend-hip`).
//!
//! The engine describes a forward pass as calls on [`Backend`]; each backend
//! implements them with its own tensors and kernels. Activations are dense,
//! row-major `f32` matrices (`rows` = tokens, `cols` = features); weights stay
//! in their stored (usually quantized) format.

#![warn(missing_docs)]

mod error;
mod select;
mod spec;

pub use error::BackendError;
pub use gguf_format::GgmlType;
pub use select::{
    apply_penalties, pick_from_sorted, select_reference, SampleSpec, SelectMode, TokenSelect,
    MAX_DEVICE_TOP_K,
};
pub use spec::{yarn_corr_dims, AttnSpec, GluKind, RopeMode, RopeSpec, WeightView, YarnSpec};

use std::ops::Range;
use std::sync::Arc;

/// Shorthand for backend results.
pub type Result<T> = std::result::Result<T, BackendError>;

/// One compute backend. All methods take `&self`: a backend is shared by the
/// threads of a process; how it serialises device work is its own business.
///
/// Row ranges (`rows`) select the tokens of one sequence inside a batch that
/// holds several sequences; positions are absolute positions in that
/// sequence's KV cache.
pub trait Backend: Send + Sync {
    /// A dense row-major `f32` matrix living on this backend.
    type Tensor: Send;
    /// A weight tensor in its stored format, resident on this backend.
    type Weight: Send + Sync;
    /// Key/value storage for one sequence, all layers.
    type KvCache: Send;
    /// What a backend keeps of one sequence's one-token decode steps to run
    /// the next ones faster (see [`Backend::decode_select`]); the engine
    /// keeps one per sequence. `()` for backends that keep nothing.
    type DecodeGraph: Send + Default;

    /// A short human name ("cpu (avx512vnni, 2 threads)", "cuda:0 NVIDIA H200 sm_90").
    fn name(&self) -> String;

    /// Offer a host memory region (typically the memory-mapped model file)
    /// that later [`Backend::load_weight`] views may point into. A backend
    /// that uses weights in place (CPU) keeps the `Arc` and references the
    /// region instead of copying; others ignore it (the default).
    fn register_mapping(&self, mapping: Arc<dyn AsRef<[u8]> + Send + Sync>) {
        let _ = mapping;
    }

    /// Make a weight resident (CPU: borrow/keep the bytes; GPU: one upload).
    /// `view.dims` is in ggml order (ne0 = the contiguous row length).
    fn load_weight(&self, view: &WeightView<'_>) -> Result<Self::Weight>;

    /// A zero-filled `rows × cols` tensor.
    fn zeros(&self, rows: usize, cols: usize) -> Result<Self::Tensor>;
    /// A `rows × cols` tensor with unspecified contents, for the output of
    /// an op that writes all of it (saves the fill where a backend's fresh
    /// buffers are not already zero). The default is [`Backend::zeros`].
    fn output(&self, rows: usize, cols: usize) -> Result<Self::Tensor> {
        self.zeros(rows, cols)
    }
    /// A tensor holding `data` (`rows × cols`, row-major).
    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;
    /// Copy a tensor back to the host (row-major).
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>>;
    /// `(rows, cols)` of a tensor.
    fn shape(&self, t: &Self::Tensor) -> (usize, usize);

    /// `out[i] = table[ids[i]]` (one dequantized row of a 2-D weight per id).
    fn get_rows(&self, table: &Self::Weight, ids: &[u32], out: &mut Self::Tensor) -> Result<()>;
    /// `out[t][r] = Σ_k w[r][k] · x[t][k]` for a 2-D weight with ne0 = k.
    fn matmul(&self, w: &Self::Weight, x: &Self::Tensor, out: &mut Self::Tensor) -> Result<()>;
    /// `outs[i] = x · ws[i]ᵀ`: several weights applied to the same input (a
    /// layer's q/k/v or gate/up projections), so that a backend can share
    /// the work on the input between them (the GPU quantizes one token's
    /// activations once instead of once per weight). `ws` and `outs` have
    /// the same length. The default runs [`Backend::matmul`] for each.
    fn matmul_many(
        &self,
        x: &Self::Tensor,
        ws: &[&Self::Weight],
        outs: &mut [&mut Self::Tensor],
    ) -> Result<()> {
        matmul_each(self, x, ws, outs)
    }
    /// `out = act(x · gateᵀ) * (x · upᵀ)` ([`Backend::glu`] of the two
    /// projections): a feed-forward's gate and up projections and its GLU,
    /// which a backend may run as one launch. `out` is `x.rows × gate rows`.
    /// The default runs [`Backend::matmul_many`] and [`Backend::glu`]
    /// ([`matmul_glu_separate`]).
    fn matmul_glu(
        &self,
        x: &Self::Tensor,
        gate: &Self::Weight,
        up: &Self::Weight,
        kind: GluKind,
        out: &mut Self::Tensor,
    ) -> Result<()> {
        matmul_glu_separate(self, x, gate, up, kind, out)
    }
    /// `x[t][c] += bias[c]` for a 1-D weight.
    fn add_bias(&self, x: &mut Self::Tensor, bias: &Self::Weight) -> Result<()>;
    /// `x += y`, then `out` = [`Backend::rms_norm`] of the new `x` in groups of
    /// `group` (a residual add and the next norm, which a backend may do in
    /// one pass). The default runs [`Backend::add`] and [`Backend::rms_norm`].
    fn add_rms_norm(
        &self,
        x: &mut Self::Tensor,
        y: &Self::Tensor,
        weight: Option<&Self::Weight>,
        group: usize,
        eps: f32,
        out: &mut Self::Tensor,
    ) -> Result<()> {
        self.add(x, y)?;
        self.rms_norm(x, weight, group, eps, out)
    }
    /// `y = a · wᵀ` ([`Backend::matmul`] into `y`), then
    /// [`Backend::add_rms_norm`]`(x, y, weight, x.cols, eps, out)`: a layer's
    /// output projection, its residual add and the next norm, which a
    /// backend may run as one launch. `y` receives the projection (the
    /// default needs it; a fused backend may leave it unspecified).
    ///
    /// `readers`: the weights whose [`Backend::matmul`]s (or
    /// `matmul_many` / `matmul_glu`) are the only reads of `out` before it
    /// is next written, or empty when the caller does not know them. Given
    /// them, a backend may hand those matmuls an equivalent form of `out`
    /// (for instance without the norm's factor applied) and leave its
    /// values unwritten; with an empty list `out` is always written.
    #[allow(clippy::too_many_arguments)]
    fn matmul_add_rms_norm(
        &self,
        w: &Self::Weight,
        a: &Self::Tensor,
        y: &mut Self::Tensor,
        x: &mut Self::Tensor,
        weight: Option<&Self::Weight>,
        eps: f32,
        out: &mut Self::Tensor,
        readers: &[&Self::Weight],
    ) -> Result<()> {
        let _ = readers;
        self.matmul(w, a, y)?;
        let (_, cols) = self.shape(x);
        self.add_rms_norm(x, y, weight, cols, eps, out)
    }
    /// RMS-normalise groups of `group` consecutive columns of each row (`group
    /// == cols` for a whole-row norm, `head_dim` for per-head Q/K norms), then
    /// multiply by `weight` (length `group`) if given.
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        weight: Option<&Self::Weight>,
        group: usize,
        eps: f32,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// Layer-normalise each row, then `* weight + bias` where given.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        weight: Option<&Self::Weight>,
        bias: Option<&Self::Weight>,
        eps: f32,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// Rotary embedding in place; row `t` is at position `positions[t]`, its
    /// columns are `n_heads` heads of `cols / n_heads` values.
    fn rope(
        &self,
        x: &mut Self::Tensor,
        n_heads: usize,
        positions: &[u32],
        spec: &RopeSpec,
    ) -> Result<()>;

    /// [`Backend::rope`] of a layer's queries `q` (`n_head` heads) and keys
    /// `k` (`n_head_kv` heads) at the same positions; backends may do both
    /// in one pass.
    fn rope_qk(
        &self,
        q: &mut Self::Tensor,
        n_head: usize,
        k: &mut Self::Tensor,
        n_head_kv: usize,
        positions: &[u32],
        spec: &RopeSpec,
    ) -> Result<()> {
        self.rope(q, n_head, positions, spec)?;
        self.rope(k, n_head_kv, positions, spec)
    }

    /// [`Backend::rope_qk`], then [`Backend::kv_store`] of every row of the
    /// rotated `k` and of `v` at positions `start_pos..` of `layer` (one
    /// sequence's rows); backends may do both in one pass.
    #[allow(clippy::too_many_arguments)]
    fn rope_qk_store(
        &self,
        q: &mut Self::Tensor,
        n_head: usize,
        k: &mut Self::Tensor,
        n_head_kv: usize,
        v: &Self::Tensor,
        positions: &[u32],
        spec: &RopeSpec,
        cache: &mut Self::KvCache,
        layer: usize,
        start_pos: usize,
    ) -> Result<()> {
        self.rope_qk(q, n_head, k, n_head_kv, positions, spec)?;
        let rows = self.shape(k).0;
        self.kv_store(cache, layer, k, v, 0..rows, start_pos)
    }

    /// [`Backend::rope_qk_store`] of one sequence's rows, then
    /// [`Backend::attention`] of all of them (rows `0..`, at `start_pos..`)
    /// into `out`: a layer's attention for a batch holding one sequence.
    /// Backends may do it in fewer passes (the GPU: one launch for a single
    /// row); `q` and `k` are then left unrotated. The default runs the two.
    #[allow(clippy::too_many_arguments)]
    fn rope_store_attention(
        &self,
        q: &mut Self::Tensor,
        k: &mut Self::Tensor,
        v: &Self::Tensor,
        positions: &[u32],
        rope: &RopeSpec,
        cache: &mut Self::KvCache,
        layer: usize,
        start_pos: usize,
        spec: &AttnSpec,
        out: &mut Self::Tensor,
    ) -> Result<()> {
        rope_store_attention_apart(
            self, q, k, v, positions, rope, cache, layer, start_pos, spec, out,
        )
    }

    /// Allocate a KV cache for `n_ctx` positions.
    fn kv_cache(
        &self,
        n_layers: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<Self::KvCache>;
    /// Store rows `rows` of `k` and `v` at positions `start_pos..` of `layer`.
    fn kv_store(
        &self,
        cache: &mut Self::KvCache,
        layer: usize,
        k: &Self::Tensor,
        v: &Self::Tensor,
        rows: Range<usize>,
        start_pos: usize,
    ) -> Result<()>;
    /// Causal attention for rows `rows` of `q` (the query of position
    /// `start_pos + i` for row `rows.start + i`) over positions `0..=pos` of
    /// `layer` in `cache` (limited by `spec.sliding_window`), written to the
    /// same rows of `out`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Tensor,
        cache: &Self::KvCache,
        layer: usize,
        rows: Range<usize>,
        start_pos: usize,
        spec: &AttnSpec,
        out: &mut Self::Tensor,
    ) -> Result<()>;

    /// [`Backend::attention`] for several sequences of one batch: for each
    /// `(cache, rows, start_pos)` of `seqs`, rows `rows` of `q` attend over
    /// `cache`. The row ranges must not overlap. Backends may run the
    /// sequences together (the CPU backend: one parallel loop); the default
    /// calls [`Backend::attention`] per sequence.
    fn attention_batch(
        &self,
        q: &Self::Tensor,
        seqs: &[(&Self::KvCache, Range<usize>, usize)],
        layer: usize,
        spec: &AttnSpec,
        out: &mut Self::Tensor,
    ) -> Result<()> {
        for (cache, rows, start_pos) in seqs {
            self.attention(q, cache, layer, rows.clone(), *start_pos, spec, out)?;
        }
        Ok(())
    }

    /// `out = act(gate) * up`, element-wise.
    fn glu(
        &self,
        gate: &Self::Tensor,
        up: &Self::Tensor,
        kind: GluKind,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// `a += b`, element-wise.
    fn add(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `a *= b`, element-wise (b may be a single row broadcast over `a`'s rows).
    fn mul(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `a *= s`.
    fn scale(&self, a: &mut Self::Tensor, s: f32) -> Result<()>;
    /// Row-wise softmax in place.
    fn softmax(&self, a: &mut Self::Tensor) -> Result<()>;
    /// Index of the largest value of each row (ties to the lowest index).
    fn argmax(&self, a: &Self::Tensor) -> Result<Vec<u32>>;

    /// Run `f`, a whole pass of calls on this backend (one forward pass), in
    /// the backend's execution context and return its result. The CPU backend
    /// runs it on a thread of its worker pool, so that each op inside hands
    /// work to the other workers directly instead of waking the pool from the
    /// calling thread and sleeping until the op is done. The default just
    /// calls `f`.
    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// Whether [`Backend::select_tokens`] is implemented, i.e. tokens can be
    /// picked where the logits are, so that only ids cross to the host.
    /// Backends whose tensors live in host memory leave it `false` (the
    /// engine's host sampler reads their logits directly).
    fn selects_tokens(&self) -> bool {
        false
    }

    /// One decode step of one sequence: `pass` evaluates `token` at position
    /// `pos` (the sequence's next) and returns the logits row after it; then
    /// one token is picked by `select` as [`Backend::select_tokens`] does.
    ///
    /// A backend may record the work `pass` submits (the GPU: a graph of
    /// its launches, with the token and position read from device memory)
    /// and replay it for the following steps of the same sequence without
    /// calling `pass`, where that gives the same results; `graph` is where
    /// it keeps the recording. `pass` may therefore run zero, one or two
    /// times and must leave the same state each time it runs (the engine
    /// sets the sequence's length itself). The caller has checked `token`
    /// and `pos` against the model and the sequence's context. The default
    /// runs `pass` once and [`Backend::select_tokens`].
    fn decode_select<E: From<BackendError>>(
        &self,
        graph: &mut Self::DecodeGraph,
        token: u32,
        pos: usize,
        select: &TokenSelect,
        mut pass: impl FnMut() -> std::result::Result<Self::Tensor, E>,
    ) -> std::result::Result<u32, E> {
        let _ = (graph, token, pos);
        let mut logits = pass()?;
        let ids = self.select_tokens(&mut logits, std::slice::from_ref(select))?;
        ids.first().copied().ok_or_else(|| {
            E::from(BackendError::Device(
                "token selection returned no id".into(),
            ))
        })
    }

    /// Pick one token per row of `logits` by `select[row]` (semantics:
    /// [`select_reference`]). `logits` may be overwritten (penalties and
    /// soft-capping are applied in place).
    fn select_tokens(&self, logits: &mut Self::Tensor, select: &[TokenSelect]) -> Result<Vec<u32>> {
        let _ = (logits, select);
        Err(BackendError::Unsupported(format!(
            "token selection on {}",
            self.name()
        )))
    }
}

/// [`Backend::rope_store_attention`] as its two ops, [`Backend::rope_qk_store`]
/// and [`Backend::attention`] (its default, and the fallback of backends that
/// do it in one pass only in some cases).
#[allow(clippy::too_many_arguments)]
pub fn rope_store_attention_apart<B: Backend + ?Sized>(
    be: &B,
    q: &mut B::Tensor,
    k: &mut B::Tensor,
    v: &B::Tensor,
    positions: &[u32],
    rope: &RopeSpec,
    cache: &mut B::KvCache,
    layer: usize,
    start_pos: usize,
    spec: &AttnSpec,
    out: &mut B::Tensor,
) -> Result<()> {
    be.rope_qk_store(
        q,
        spec.n_head,
        k,
        spec.n_head_kv,
        v,
        positions,
        rope,
        cache,
        layer,
        start_pos,
    )?;
    let rows = be.shape(q).0;
    be.attention(q, cache, layer, 0..rows, start_pos, spec, out)
}

/// [`Backend::matmul_glu`] as two steps: [`Backend::matmul_many`] of the gate
/// and up weights into fresh tensors, then [`Backend::glu`] (its default, and
/// the fallback of backends that fuse them only in some cases).
pub fn matmul_glu_separate<B: Backend + ?Sized>(
    be: &B,
    x: &B::Tensor,
    gate: &B::Weight,
    up: &B::Weight,
    kind: GluKind,
    out: &mut B::Tensor,
) -> Result<()> {
    let (rows, cols) = be.shape(out);
    let mut g = be.output(rows, cols)?;
    let mut u = be.output(rows, cols)?;
    be.matmul_many(x, &[gate, up], &mut [&mut g, &mut u])?;
    be.glu(&g, &u, kind, out)
}

/// [`Backend::matmul`] for each weight of a [`Backend::matmul_many`] call (its
/// default, and the fallback of backends that share work only in some
/// cases); `ws` and `outs` must have the same length.
pub fn matmul_each<B: Backend + ?Sized>(
    be: &B,
    x: &B::Tensor,
    ws: &[&B::Weight],
    outs: &mut [&mut B::Tensor],
) -> Result<()> {
    if ws.len() != outs.len() {
        return Err(BackendError::Shape {
            op: "matmul_many",
            detail: format!("{} weights for {} outputs", ws.len(), outs.len()),
        });
    }
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        be.matmul(w, x, out)?;
    }
    Ok(())
}
