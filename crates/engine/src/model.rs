//! The decoder forward pass, shared by every architecture and every backend.

use crate::arch::{ArchSpec, EmbedScale, NormKind};
use crate::error::{EngineError, Result};
use crate::hparams::ModelConfig;
use crate::moe;
use crate::source::ModelFile;
use crate::weights::{self, Ffn, NormWeights, Weights};
use backend_core::{AttnSpec, Backend, TokenSelect};
use std::path::Path;
use std::sync::Arc;

/// A loaded model on backend `B`: hyperparameters and resident weights.
///
/// The weights may borrow the memory-mapped file, which the model keeps open
/// for as long as it lives.
pub struct Model<B: Backend> {
    // Field order matters: the weights are dropped before the file they may point into.
    weights: Weights<B::Weight>,
    backend: Arc<B>,
    config: ModelConfig,
    file: Arc<ModelFile>,
}

/// One sequence's state: its KV cache, how many positions it holds, and
/// what the backend keeps of its one-token decode steps.
pub struct Sequence<B: Backend> {
    cache: B::KvCache,
    len: usize,
    n_ctx: usize,
    graph: B::DecodeGraph,
}

impl<B: Backend> Sequence<B> {
    /// Positions already evaluated (the next token goes at this position).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no position has been evaluated yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Capacity in positions.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    /// Forget positions `n..` (the cache entries are overwritten later).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }
}

/// Which logits a chunk wants back from [`Model::forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsWanted {
    /// None (prefill of a chunk that is not the prompt's last).
    None,
    /// Those after the chunk's last token.
    Last,
    /// Those after every token of the chunk.
    All,
}

/// One sequence's part of a batch: tokens appended at the sequence's end.
pub struct SeqChunk<'a, B: Backend> {
    /// The sequence (its KV cache; the tokens start at position `seq.len()`).
    pub seq: &'a mut Sequence<B>,
    /// The tokens to evaluate.
    pub tokens: &'a [u32],
    /// Which logits to return.
    pub logits: LogitsWanted,
}

impl<B: Backend> Model<B> {
    /// Open a GGUF file and load its weights onto `backend`.
    pub fn load(path: impl AsRef<Path>, backend: Arc<B>) -> Result<Model<B>> {
        let file = Arc::new(ModelFile::open(path.as_ref())?);
        Model::from_file(file, backend)
    }

    /// Load the weights of an opened file onto `backend`.
    pub(crate) fn from_file(file: Arc<ModelFile>, backend: Arc<B>) -> Result<Model<B>> {
        let name = file.architecture()?;
        let arch = ArchSpec::for_name(&name).ok_or(EngineError::UnsupportedArchitecture(name))?;
        let config = ModelConfig::from_file(&file, arch)?;
        file.register_with(backend.as_ref());
        let weights = weights::load(&file, backend.as_ref(), &config)?;
        tracing::info!(
            arch = config.arch.name,
            n_layer = config.n_layer,
            n_embd = config.n_embd,
            n_vocab = config.n_vocab,
            backend = %backend.name(),
            "model loaded"
        );
        Ok(Model {
            weights,
            backend,
            config,
            file,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The opened model file.
    pub(crate) fn file(&self) -> &Arc<ModelFile> {
        &self.file
    }

    /// A new, empty sequence with room for `n_ctx` positions.
    pub fn new_sequence(&self, n_ctx: usize) -> Result<Sequence<B>> {
        if n_ctx == 0 {
            return Err(EngineError::InvalidArgument(
                "context size must be positive".into(),
            ));
        }
        let c = &self.config;
        let cache = self
            .backend
            .kv_cache(c.n_layer, n_ctx, c.n_head_kv, c.head_dim)?;
        Ok(Sequence {
            cache,
            len: 0,
            n_ctx,
            graph: B::DecodeGraph::default(),
        })
    }

    /// Evaluate a batch: every chunk's tokens are appended to its sequence,
    /// all rows go through the matmuls together, attention runs for all
    /// sequences in one backend call.
    /// Returns, for each chunk, the logits it asked for (row-major,
    /// `n_vocab` per row; empty for [`LogitsWanted::None`]).
    ///
    /// On error (context overflow, invalid token) no sequence is changed.
    pub fn forward(&self, batch: &mut [SeqChunk<'_, B>]) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let be = self.backend.as_ref();
        let Some(logits) = be.run_pass(|| self.forward_logits(batch))? else {
            return Ok(batch.iter().map(|_| Vec::new()).collect());
        };
        let mut logits = be.download(&logits)?;
        if let Some(cap) = c.final_logit_softcap {
            for l in &mut logits {
                *l = cap * (*l / cap).tanh();
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for chunk in batch.iter() {
            let n = match chunk.logits {
                LogitsWanted::None => 0,
                LogitsWanted::Last => 1,
                LogitsWanted::All => chunk.tokens.len(),
            };
            out.push(logits[offset * c.n_vocab..(offset + n) * c.n_vocab].to_vec());
            offset += n;
        }
        Ok(out)
    }

    /// Evaluate a batch like [`Model::forward`] and pick one token per chunk
    /// on the backend from the logits after the chunk's last token, which
    /// never leave the backend: only the ids come back. `select[i]` says how
    /// chunk `i` picks (the final logit soft-capping is added here). Each
    /// chunk's `logits` field is ignored (treated as [`LogitsWanted::Last`]).
    ///
    /// Errors with [`EngineError::InvalidArgument`] when the backend cannot
    /// select tokens ([`Backend::selects_tokens`]) or the lengths differ.
    pub fn forward_select(
        &self,
        batch: &mut [SeqChunk<'_, B>],
        select: &[TokenSelect],
    ) -> Result<Vec<u32>> {
        let be = self.backend.as_ref();
        if !be.selects_tokens() || select.len() != batch.len() {
            return Err(EngineError::InvalidArgument(format!(
                "token selection on the backend: {} for {} chunks on {}",
                select.len(),
                batch.len(),
                be.name()
            )));
        }
        for chunk in batch.iter_mut() {
            chunk.logits = LogitsWanted::Last;
        }
        let select: Vec<TokenSelect> = select
            .iter()
            .map(|s| TokenSelect {
                softcap: self.config.final_logit_softcap,
                ..s.clone()
            })
            .collect();
        if let ([chunk], [select]) = (&mut *batch, select.as_slice()) {
            if chunk.tokens.len() == 1 {
                return self.decode_step(chunk, select).map(|id| vec![id]);
            }
        }
        let mut logits = be
            .run_pass(|| self.forward_logits(batch))?
            .ok_or_else(|| EngineError::InvalidArgument("empty batch".into()))?;
        Ok(be.select_tokens(&mut logits, &select)?)
    }

    /// One token of one sequence through [`Backend::decode_select`], which
    /// may replay a recording of an earlier step instead of running the
    /// pass again.
    fn decode_step(&self, chunk: &mut SeqChunk<'_, B>, select: &TokenSelect) -> Result<u32> {
        let be = self.backend.as_ref();
        let pos = chunk.seq.len;
        let token = chunk.tokens[0];
        self.check_chunk(chunk)?;
        let mut graph = std::mem::take(&mut chunk.seq.graph);
        let picked = be.run_pass(|| {
            be.decode_select(&mut graph, token, pos, select, || {
                chunk.seq.len = pos;
                self.forward_logits(std::slice::from_mut(chunk))?
                    .ok_or_else(|| EngineError::InvalidArgument("empty batch".into()))
            })
        });
        chunk.seq.graph = graph;
        // Whether the pass ran or a recording was replayed, the token is in
        // the cache now (on error, the sequence is unchanged).
        chunk.seq.len = if picked.is_ok() { pos + 1 } else { pos };
        picked
    }

    /// The checks of one chunk before its tokens are evaluated: they fit
    /// the sequence's context and are in the vocabulary.
    fn check_chunk(&self, chunk: &SeqChunk<'_, B>) -> Result<()> {
        let c = &self.config;
        if chunk.tokens.is_empty() {
            return Err(EngineError::InvalidArgument(
                "a batch chunk has no tokens".into(),
            ));
        }
        let needed = chunk.seq.len + chunk.tokens.len();
        if needed > chunk.seq.n_ctx {
            return Err(EngineError::ContextOverflow {
                needed,
                n_ctx: chunk.seq.n_ctx,
            });
        }
        if let Some(&bad) = chunk.tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
            return Err(EngineError::InvalidToken {
                id: bad,
                n_vocab: c.n_vocab,
            });
        }
        Ok(())
    }

    /// The forward pass up to the output layer: the logits tensor (on the
    /// backend) of the rows the chunks ask for, in chunk order, or `None`
    /// when no chunk wants logits.
    fn forward_logits(&self, batch: &mut [SeqChunk<'_, B>]) -> Result<Option<B::Tensor>> {
        let c = &self.config;
        let be = self.backend.as_ref();
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut ranges = Vec::with_capacity(batch.len());
        for chunk in batch.iter() {
            self.check_chunk(chunk)?;
            let start = chunk.seq.len;
            let needed = start + chunk.tokens.len();
            let row0 = ids.len();
            ids.extend_from_slice(chunk.tokens);
            positions.extend((start..needed).map(|p| p as u32));
            ranges.push((row0..ids.len(), start));
        }
        let n_rows = ids.len();
        if n_rows == 0 {
            return Err(EngineError::InvalidArgument("empty batch".into()));
        }
        let (q_dim, kv_dim) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);

        let mut x = be.output(n_rows, c.n_embd)?;
        be.get_rows(&self.weights.token_embd, &ids, &mut x)?;
        if c.arch.embed_scale == EmbedScale::SqrtEmbd {
            be.scale(&mut x, (c.n_embd as f32).sqrt())?;
        }
        let mut h = be.output(n_rows, c.n_embd)?;
        let mut q = be.output(n_rows, q_dim)?;
        let mut k = be.output(n_rows, kv_dim)?;
        let mut v = be.output(n_rows, kv_dim)?;
        let mut attn = be.output(n_rows, q_dim)?;
        let mut o = be.output(n_rows, c.n_embd)?;
        // Whether `h` already holds this layer's attention-norm input (the
        // previous layer's residual add and this norm ran as one op).
        let mut h_ready = false;
        for (il, layer) in self.weights.layers.iter().enumerate() {
            // Attention.
            if !h_ready {
                self.norm(&x, &layer.attn_norm, &mut h)?;
            }
            be.matmul_many(
                &h,
                &[&layer.wq, &layer.wk, &layer.wv],
                &mut [&mut q, &mut k, &mut v],
            )?;
            if let Some(b) = &layer.bq {
                be.add_bias(&mut q, b)?;
            }
            if let Some(b) = &layer.bk {
                be.add_bias(&mut k, b)?;
            }
            if let Some(b) = &layer.bv {
                be.add_bias(&mut v, b)?;
            }
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                let mut qt = be.output(n_rows, q_dim)?;
                be.rms_norm(&q, Some(qn), c.head_dim, c.norm_eps, &mut qt)?;
                q = qt;
                let mut kt = be.output(n_rows, kv_dim)?;
                be.rms_norm(&k, Some(kn), c.head_dim, c.norm_eps, &mut kt)?;
                k = kt;
            }
            let rope = c.rope_for_layer(il);
            let spec = AttnSpec {
                n_head: c.n_head,
                n_head_kv: c.n_head_kv,
                head_dim: c.head_dim,
                scale: c.attn_scale,
                sliding_window: c.window_for_layer(il),
                softcap: None,
            };
            match (&mut *batch, ranges.as_slice()) {
                // One sequence owning every row: rotation, cache write and
                // attention together.
                ([chunk], [(rows, start)]) if *rows == (0..n_rows) => {
                    be.rope_store_attention(
                        &mut q,
                        &mut k,
                        &v,
                        &positions,
                        &rope,
                        &mut chunk.seq.cache,
                        il,
                        *start,
                        &spec,
                        &mut attn,
                    )?;
                }
                _ => {
                    be.rope_qk(&mut q, c.n_head, &mut k, c.n_head_kv, &positions, &rope)?;
                    for (chunk, (rows, start)) in batch.iter_mut().zip(&ranges) {
                        be.kv_store(&mut chunk.seq.cache, il, &k, &v, rows.clone(), *start)?;
                    }
                    let seqs: Vec<_> = batch
                        .iter()
                        .zip(&ranges)
                        .map(|(chunk, (rows, start))| (&chunk.seq.cache, rows.clone(), *start))
                        .collect();
                    be.attention_batch(&q, &seqs, il, &spec, &mut attn)?;
                }
            }
            if let Some(n) = &layer.post_attn_norm {
                be.matmul(&layer.wo, &attn, &mut o)?;
                self.norm(&o, n, &mut h)?;
                be.add(&mut x, &h)?;
                self.norm(&x, &layer.ffn_norm, &mut h)?;
            } else {
                // The feed-forward's gate and up read `h` (a dense one).
                let readers = match &layer.ffn {
                    Ffn::Dense { gate, up, .. } => vec![gate, up],
                    Ffn::Moe { .. } => Vec::new(),
                };
                self.project_residual_norm(
                    &layer.wo,
                    &attn,
                    &mut o,
                    &mut x,
                    &layer.ffn_norm,
                    &mut h,
                    &readers,
                )?;
            }

            // Feed-forward (its norm is already in `h`). Without a norm of
            // its own output, the down projection, the residual add and the
            // next layer's norm go together.
            let next = match (&layer.post_ffn_norm, self.weights.layers.get(il + 1)) {
                (None, Some(next)) => Some(next),
                _ => None,
            };
            h_ready = false;
            match &layer.ffn {
                Ffn::Dense { gate, up, down } => {
                    let mut a = be.output(n_rows, c.n_ff)?;
                    be.matmul_glu(&h, gate, up, c.arch.activation, &mut a)?;
                    match next {
                        Some(next) => {
                            // The next layer's q, k and v read `h`.
                            let readers = [&next.wq, &next.wk, &next.wv];
                            self.project_residual_norm(
                                down,
                                &a,
                                &mut o,
                                &mut x,
                                &next.attn_norm,
                                &mut h,
                                &readers,
                            )?;
                            h_ready = true;
                            continue; // the layer is complete
                        }
                        None => be.matmul(down, &a, &mut o)?,
                    }
                }
                Ffn::Moe { router, experts } => {
                    o = moe::forward(be, c, router, experts, &h)?;
                }
            }
            if let Some(n) = &layer.post_ffn_norm {
                self.norm(&o, n, &mut h)?;
                be.add(&mut x, &h)?;
            } else if let Some(next) = self.weights.layers.get(il + 1) {
                self.residual_norm(&mut x, &o, &next.attn_norm, &mut h)?;
                h_ready = true;
            } else {
                be.add(&mut x, &o)?;
            }
        }
        for (chunk, (rows, _)) in batch.iter_mut().zip(&ranges) {
            chunk.seq.len += rows.len();
        }

        // Only the rows whose logits are wanted go through the output layer.
        let mut wanted_rows = Vec::new();
        for (chunk, (rows, _)) in batch.iter().zip(&ranges) {
            match chunk.logits {
                LogitsWanted::None => {}
                LogitsWanted::Last => wanted_rows.push(rows.end - 1),
                LogitsWanted::All => wanted_rows.extend(rows.clone()),
            }
        }
        if wanted_rows.is_empty() {
            return Ok(None);
        }
        let x = if wanted_rows.len() == n_rows {
            x
        } else {
            self.select_rows(&x, &wanted_rows)?
        };
        let mut hn = be.output(wanted_rows.len(), c.n_embd)?;
        self.norm(&x, &self.weights.output_norm, &mut hn)?;
        let mut logits = be.output(wanted_rows.len(), c.n_vocab)?;
        let output = self
            .weights
            .output
            .as_ref()
            .unwrap_or(&self.weights.token_embd);
        be.matmul(output, &hn, &mut logits)?;
        Ok(Some(logits))
    }

    /// Whether the norm `n` is an RMS norm without bias (the backend's fused
    /// residual + norm ops take those).
    fn plain_rms(&self, n: &NormWeights<B::Weight>) -> bool {
        self.config.arch.norm == NormKind::Rms && n.bias.is_none()
    }

    /// `y = a · wᵀ; x += y; out = norm(x) * n`: one backend op
    /// ([`Backend::matmul_add_rms_norm`]) for an RMS norm without bias, else
    /// the matmul and [`Model::residual_norm`]. `readers`: the weights
    /// whose matmuls are the only reads of `out` (empty if not known).
    #[allow(clippy::too_many_arguments)]
    fn project_residual_norm(
        &self,
        w: &B::Weight,
        a: &B::Tensor,
        y: &mut B::Tensor,
        x: &mut B::Tensor,
        n: &NormWeights<B::Weight>,
        out: &mut B::Tensor,
        readers: &[&B::Weight],
    ) -> Result<()> {
        let be = self.backend.as_ref();
        let c = &self.config;
        if self.plain_rms(n) {
            be.matmul_add_rms_norm(w, a, y, x, Some(&n.weight), c.norm_eps, out, readers)?;
        } else {
            be.matmul(w, a, y)?;
            self.residual_norm(x, y, n, out)?;
        }
        Ok(())
    }

    /// `x += y; out = norm(x) * w (+ b)`: one backend op for an RMS norm
    /// without bias, else an add and [`Model::norm`].
    fn residual_norm(
        &self,
        x: &mut B::Tensor,
        y: &B::Tensor,
        n: &NormWeights<B::Weight>,
        out: &mut B::Tensor,
    ) -> Result<()> {
        let be = self.backend.as_ref();
        let c = &self.config;
        if self.plain_rms(n) {
            be.add_rms_norm(x, y, Some(&n.weight), c.n_embd, c.norm_eps, out)?;
        } else {
            be.add(x, y)?;
            self.norm(x, n, out)?;
        }
        Ok(())
    }

    /// `out = norm(x) * w (+ b)` with the architecture's norm kind.
    fn norm(&self, x: &B::Tensor, n: &NormWeights<B::Weight>, out: &mut B::Tensor) -> Result<()> {
        let be = self.backend.as_ref();
        let c = &self.config;
        match c.arch.norm {
            NormKind::Rms => {
                be.rms_norm(x, Some(&n.weight), c.n_embd, c.norm_eps, out)?;
                if let Some(b) = &n.bias {
                    be.add_bias(out, b)?;
                }
            }
            NormKind::Layer => {
                be.layer_norm(x, Some(&n.weight), n.bias.as_ref(), c.norm_eps, out)?
            }
        }
        Ok(())
    }

    /// A new tensor holding rows `rows` of `x` (through host memory: the
    /// backend trait has no gather op yet).
    fn select_rows(&self, x: &B::Tensor, rows: &[usize]) -> Result<B::Tensor> {
        let be = self.backend.as_ref();
        let (_, cols) = be.shape(x);
        let data = be.download(x)?;
        let mut sel = Vec::with_capacity(rows.len() * cols);
        for &r in rows {
            sel.extend_from_slice(&data[r * cols..(r + 1) * cols]);
        }
        Ok(be.upload(&sel, rows.len(), cols)?)
    }
}
