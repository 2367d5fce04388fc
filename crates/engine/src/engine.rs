//! The embedding API: [`Engine`] (model + tokenizer), [`Session`] (one
//! sequence with its KV cache, logits access) and generation.

use crate::error::{EngineError, Result};
use crate::generate::Generation;
use crate::model::{LogitsWanted, Model, SeqChunk, Sequence};
use crate::sampler::SamplingOptions;
use crate::source::ModelFile;
use crate::tok::{self, Tokenizer};
use backend_core::{Backend, TokenSelect};
use backend_cpu::CpuBackend;
use std::path::Path;
use std::sync::Arc;

/// Default context size cap when [`EngineOptions::n_ctx`] is not set.
pub const DEFAULT_MAX_CTX: usize = 4096;

/// Largest number of tokens evaluated in one forward pass when a prompt is
/// fed (longer prompts go in several passes, bounding activation memory).
pub const PREFILL_CHUNK: usize = 512;

/// How to load a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Context size of each sequence (default: the model's training context,
    /// at most [`DEFAULT_MAX_CTX`]).
    pub n_ctx: Option<usize>,
    /// CPU threads (default: the backend's choice, physical cores).
    pub threads: Option<usize>,
}

/// A loaded model with its tokenizer, ready to tokenize and generate.
///
/// ```no_run
/// use engine::{Engine, EngineOptions, SamplingOptions};
///
/// let engine = Engine::load("model.gguf", EngineOptions::default())?;
/// let prompt = engine.tokenize("The capital of France is", true, false)?;
/// let mut text = String::new();
/// for token in engine.generate(&prompt, SamplingOptions::greedy(16))? {
///     text.push_str(&token?.text_piece);
/// }
/// println!("{text}");
/// # Ok::<(), engine::EngineError>(())
/// ```
pub struct Engine<B: Backend = CpuBackend> {
    model: Arc<Model<B>>,
    tokenizer: Arc<Tokenizer>,
    n_ctx: usize,
}

impl Engine<CpuBackend> {
    /// Load a GGUF model to run on the CPU.
    pub fn load(path: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine<CpuBackend>> {
        let backend = Arc::new(tok::cpu_backend(opts.threads)?);
        Engine::load_with_backend(path, backend, opts)
    }
}

impl<B: Backend> Engine<B> {
    /// Load a GGUF model onto `backend`.
    pub fn load_with_backend(
        path: impl AsRef<Path>,
        backend: Arc<B>,
        opts: EngineOptions,
    ) -> Result<Engine<B>> {
        let file = Arc::new(ModelFile::open(path.as_ref())?);
        let model = Model::from_file(Arc::clone(&file), backend)?;
        let tokenizer = tok::load(&file)?;
        let n_ctx = match opts.n_ctx {
            Some(0) => {
                return Err(EngineError::InvalidArgument(
                    "context size must be positive".into(),
                ))
            }
            Some(n) => n,
            None => model.config().n_ctx_train.clamp(1, DEFAULT_MAX_CTX),
        };
        Ok(Engine {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            n_ctx,
        })
    }

    /// The model (for batched use: [`Model::forward`]).
    pub fn model(&self) -> &Arc<Model<B>> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Context size of each sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Text to token ids. `add_special` adds BOS/EOS as the model's metadata
    /// says; `parse_special` turns special-token text (`<|im_start|>`) into
    /// its id instead of tokenizing it as text.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        tok::encode(&self.tokenizer, text, add_special, parse_special)
    }

    /// Token ids to text (special tokens rendered).
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        tok::decode(&self.tokenizer, ids)
    }

    /// Whether `id` ends a generation (EOS, EOT, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        tok::is_eog(&self.tokenizer, id)
    }

    /// `user` wrapped in the model's chat template as a single user message,
    /// ready for the assistant's answer.
    pub fn chat_prompt(&self, user: &str) -> Result<String> {
        tok::chat_prompt(self.model.file(), &self.tokenizer, user)
    }

    /// A new, empty session (its own KV cache of [`n_ctx`](Self::n_ctx) positions).
    pub fn session(&self) -> Result<Session<'_, B>> {
        self.session_with_ctx(self.n_ctx)
    }

    /// A new, empty session whose KV cache holds `n_ctx` positions.
    pub fn session_with_ctx(&self, n_ctx: usize) -> Result<Session<'_, B>> {
        Ok(Session {
            engine: self,
            seq: self.model.new_sequence(n_ctx)?,
            logits: Vec::new(),
        })
    }

    /// The BOS id when the model's metadata says to add BOS, else `None`.
    pub fn bos_if_added(&self) -> Option<u32> {
        tok::bos_if_added(&self.tokenizer)
    }

    /// Generate from `prompt_ids` in a fresh session: an iterator of tokens
    /// with their text pieces, stopping at end-of-generation (unless
    /// `opts.ignore_eos`) or after `opts.max_tokens` tokens.
    pub fn generate(&self, prompt_ids: &[u32], opts: SamplingOptions) -> Result<Generation<'_, B>> {
        self.session()?.generate(prompt_ids, opts)
    }
}

/// One sequence being evaluated: a KV cache plus the last logits.
///
/// ```no_run
/// use engine::{Engine, EngineOptions};
///
/// let engine = Engine::load("model.gguf", EngineOptions::default())?;
/// let mut session = engine.session()?;
/// let ids = engine.tokenize("Hello", true, false)?;
/// let logits = session.eval(&ids)?;
/// assert_eq!(logits.len(), engine.model().config().n_vocab);
/// # Ok::<(), engine::EngineError>(())
/// ```
pub struct Session<'e, B: Backend = CpuBackend> {
    engine: &'e Engine<B>,
    seq: Sequence<B>,
    logits: Vec<f32>,
}

impl<'e, B: Backend> Session<'e, B> {
    /// The engine this session runs on.
    pub fn engine(&self) -> &'e Engine<B> {
        self.engine
    }

    /// Positions evaluated so far.
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    /// Whether nothing has been evaluated yet.
    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// Forget everything after the first `n` positions (`0`: start over).
    pub fn truncate(&mut self, n: usize) {
        self.seq.truncate(n);
        self.logits.clear();
    }

    /// Append `ids` and return the logits after the last of them
    /// (`n_vocab` values). Long inputs are fed in chunks of [`PREFILL_CHUNK`].
    pub fn eval(&mut self, ids: &[u32]) -> Result<&[f32]> {
        self.check_room(ids.len())?;
        let n_chunks = ids.len().div_ceil(PREFILL_CHUNK);
        for (i, chunk) in ids.chunks(PREFILL_CHUNK).enumerate() {
            let wanted = if i + 1 == n_chunks {
                LogitsWanted::Last
            } else {
                LogitsWanted::None
            };
            let mut out = self.forward(chunk, wanted)?;
            if i + 1 == n_chunks {
                self.logits = out.swap_remove(0);
            }
        }
        Ok(&self.logits)
    }

    /// Append `ids` and return the logits after every one of them
    /// (row-major, `ids.len() × n_vocab`), as perplexity needs.
    pub fn eval_all(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_room(ids.len())?;
        let mut all = Vec::new();
        for chunk in ids.chunks(PREFILL_CHUNK) {
            let mut out = self.forward(chunk, LogitsWanted::All)?;
            all.append(&mut out[0]);
        }
        let n_vocab = self.engine.model.config().n_vocab;
        if all.len() >= n_vocab {
            self.logits = all[all.len() - n_vocab..].to_vec();
        }
        Ok(all)
    }

    /// Append `ids` and pick the next token on the backend by `select`
    /// (only the id crosses to the host; see
    /// [`Backend::selects_tokens`](backend_core::Backend::selects_tokens)).
    /// Afterwards [`logits`](Self::logits) is empty: they stayed on the device.
    pub fn eval_select(&mut self, ids: &[u32], select: &TokenSelect) -> Result<u32> {
        self.check_room(ids.len())?;
        self.logits.clear();
        let chunks: Vec<&[u32]> = ids.chunks(PREFILL_CHUNK).collect();
        let (last, head) = chunks
            .split_last()
            .ok_or_else(|| EngineError::InvalidArgument("nothing to evaluate".into()))?;
        for chunk in head {
            self.forward(chunk, LogitsWanted::None)?;
        }
        let mut batch = [SeqChunk {
            seq: &mut self.seq,
            tokens: last,
            logits: LogitsWanted::Last,
        }];
        let ids = self
            .engine
            .model
            .forward_select(&mut batch, std::slice::from_ref(select))?;
        ids.first()
            .copied()
            .ok_or_else(|| EngineError::InvalidArgument("the backend picked no token".into()))
    }

    /// The logits after the last evaluated token (empty before any, and
    /// after [`eval_select`](Self::eval_select)).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Continue this session with `prompt_ids` and generate from there.
    pub fn generate(self, prompt_ids: &[u32], opts: SamplingOptions) -> Result<Generation<'e, B>> {
        Generation::new(self, prompt_ids, opts)
    }

    fn check_room(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(EngineError::InvalidArgument("nothing to evaluate".into()));
        }
        let needed = self.seq.len() + n;
        if needed > self.seq.n_ctx() {
            return Err(EngineError::ContextOverflow {
                needed,
                n_ctx: self.seq.n_ctx(),
            });
        }
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32], logits: LogitsWanted) -> Result<Vec<Vec<f32>>> {
        let mut batch = [SeqChunk {
            seq: &mut self.seq,
            tokens,
            logits,
        }];
        self.engine.model.forward(&mut batch)
    }
}
