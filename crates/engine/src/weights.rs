//! The tensor-name map and the loading of every weight onto a backend, with
//! shapes checked against the hyperparameters.

use crate::arch::Presence;
use crate::error::{EngineError, Result};
use crate::hparams::ModelConfig;
use crate::source::ModelFile;
use backend_core::{Backend, WeightView};

/// GGUF tensor names, as llama.cpp's converters write them.
pub(crate) mod names {
    /// Token embeddings `[n_embd, n_vocab]`.
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    /// Final norm.
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    /// Final norm bias (layer-norm models).
    pub const OUTPUT_NORM_BIAS: &str = "output_norm.bias";
    /// Output projection `[n_embd, n_vocab]` (absent when tied).
    pub const OUTPUT: &str = "output.weight";

    /// The name of a per-block tensor: `blk.{il}.{suffix}`.
    pub fn blk(il: usize, suffix: &str) -> String {
        format!("blk.{il}.{suffix}")
    }
}

/// A normalisation's weight and optional bias.
pub(crate) struct NormWeights<W> {
    pub weight: W,
    pub bias: Option<W>,
}

/// One expert of a mixture-of-experts FFN.
pub(crate) struct Expert<W> {
    pub gate: W,
    pub up: W,
    pub down: W,
}

/// A block's feed-forward network.
pub(crate) enum Ffn<W> {
    /// `down(act(gate x) * up x)`.
    Dense { gate: W, up: W, down: W },
    /// Top-k routed experts (`router` is `ffn_gate_inp`).
    Moe { router: W, experts: Vec<Expert<W>> },
}

/// One decoder block.
pub(crate) struct LayerWeights<W> {
    pub attn_norm: NormWeights<W>,
    pub wq: W,
    pub wk: W,
    pub wv: W,
    pub wo: W,
    pub bq: Option<W>,
    pub bk: Option<W>,
    pub bv: Option<W>,
    pub q_norm: Option<W>,
    pub k_norm: Option<W>,
    pub post_attn_norm: Option<NormWeights<W>>,
    pub ffn_norm: NormWeights<W>,
    pub ffn: Ffn<W>,
    pub post_ffn_norm: Option<NormWeights<W>>,
}

/// Every weight of a model.
pub(crate) struct Weights<W> {
    pub token_embd: W,
    pub output_norm: NormWeights<W>,
    /// `None`: tied to `token_embd`.
    pub output: Option<W>,
    pub layers: Vec<LayerWeights<W>>,
}

/// Loads weights from a file onto a backend, checking each shape.
struct Loader<'a, B: Backend> {
    file: &'a ModelFile,
    backend: &'a B,
}

impl<B: Backend> Loader<'_, B> {
    /// The view of `name`, checked against `expected` (ggml order, trailing
    /// ones may be omitted); `None` when absent.
    fn view(&self, name: &str, expected: &[usize]) -> Result<Option<WeightView<'_>>> {
        let Some(view) = self.file.weight_view(name)? else {
            return Ok(None);
        };
        let mut want = [1usize; 4];
        want[..expected.len()].copy_from_slice(expected);
        if view.dims != want {
            return Err(EngineError::TensorShape {
                name: name.to_string(),
                actual: view.dims.iter().map(|&d| d as u64).collect(),
                expected: want.iter().map(|&d| d as u64).collect(),
            });
        }
        Ok(Some(view))
    }

    fn optional(&self, name: &str, expected: &[usize]) -> Result<Option<B::Weight>> {
        match self.view(name, expected)? {
            Some(v) => Ok(Some(self.backend.load_weight(&v)?)),
            None => Ok(None),
        }
    }

    fn required(&self, name: &str, expected: &[usize]) -> Result<B::Weight> {
        self.optional(name, expected)?
            .ok_or_else(|| EngineError::MissingTensor(name.to_string()))
    }

    fn with_presence(
        &self,
        p: Presence,
        name: &str,
        expected: &[usize],
    ) -> Result<Option<B::Weight>> {
        match p {
            Presence::Absent => Ok(None),
            Presence::Optional => self.optional(name, expected),
            Presence::Required => self.required(name, expected).map(Some),
        }
    }

    fn norm(&self, name: &str, n: usize) -> Result<NormWeights<B::Weight>> {
        let bias_name = name.replace(".weight", ".bias");
        Ok(NormWeights {
            weight: self.required(name, &[n])?,
            bias: self.optional(&bias_name, &[n])?,
        })
    }

    /// Expert `e` of a 3-D `[ne0, ne1, n_expert]` tensor, as its own 2-D weight.
    fn expert(
        &self,
        name: &str,
        ne0: usize,
        ne1: usize,
        n_expert: usize,
        e: usize,
    ) -> Result<B::Weight> {
        let view = self
            .view(name, &[ne0, ne1, n_expert])?
            .ok_or_else(|| EngineError::MissingTensor(name.to_string()))?;
        let per = view.data.len() / n_expert;
        let slice = WeightView {
            name: view.name,
            ggml_type: view.ggml_type,
            dims: [ne0, ne1, 1, 1],
            data: &view.data[e * per..(e + 1) * per],
        };
        Ok(self.backend.load_weight(&slice)?)
    }
}

/// Load every weight of `file` onto `backend`.
pub(crate) fn load<B: Backend>(
    file: &ModelFile,
    backend: &B,
    cfg: &ModelConfig,
) -> Result<Weights<B::Weight>> {
    use names::blk;
    let l = Loader { file, backend };
    let spec = &cfg.arch;
    let (n_embd, n_vocab, hd) = (cfg.n_embd, cfg.n_vocab, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.n_head * hd, cfg.n_head_kv * hd);
    if spec.norm_weight_offset != 0.0 {
        return Err(EngineError::Unsupported(
            "norm weight offsets (GGUF files store them folded in)".into(),
        ));
    }
    let token_embd = l.required(names::TOKEN_EMBD, &[n_embd, n_vocab])?;
    let output_norm = NormWeights {
        weight: l.required(names::OUTPUT_NORM, &[n_embd])?,
        bias: l.optional(names::OUTPUT_NORM_BIAS, &[n_embd])?,
    };
    let output = l.optional(names::OUTPUT, &[n_embd, n_vocab])?;
    if output.is_none() && !spec.tied_output {
        return Err(EngineError::MissingTensor(names::OUTPUT.into()));
    }
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for il in 0..cfg.n_layer {
        let has_router = file.has_tensor(&blk(il, "ffn_gate_inp.weight"));
        let ffn = if has_router {
            if !spec.moe {
                return Err(EngineError::Unsupported(format!(
                    "mixture-of-experts layers in architecture {}",
                    spec.name
                )));
            }
            if cfg.n_expert == 0 {
                return Err(EngineError::Metadata(format!(
                    "{} is present but {}.expert_count is not set",
                    blk(il, "ffn_gate_inp.weight"),
                    spec.name
                )));
            }
            let router = l.required(&blk(il, "ffn_gate_inp.weight"), &[n_embd, cfg.n_expert])?;
            let mut experts = Vec::with_capacity(cfg.n_expert);
            for e in 0..cfg.n_expert {
                experts.push(Expert {
                    gate: l.expert(
                        &blk(il, "ffn_gate_exps.weight"),
                        n_embd,
                        cfg.n_ff,
                        cfg.n_expert,
                        e,
                    )?,
                    up: l.expert(
                        &blk(il, "ffn_up_exps.weight"),
                        n_embd,
                        cfg.n_ff,
                        cfg.n_expert,
                        e,
                    )?,
                    down: l.expert(
                        &blk(il, "ffn_down_exps.weight"),
                        cfg.n_ff,
                        n_embd,
                        cfg.n_expert,
                        e,
                    )?,
                });
            }
            Ffn::Moe { router, experts }
        } else {
            if cfg.n_expert > 0 {
                return Err(EngineError::MissingTensor(blk(il, "ffn_gate_inp.weight")));
            }
            Ffn::Dense {
                gate: l.required(&blk(il, "ffn_gate.weight"), &[n_embd, cfg.n_ff])?,
                up: l.required(&blk(il, "ffn_up.weight"), &[n_embd, cfg.n_ff])?,
                down: l.required(&blk(il, "ffn_down.weight"), &[cfg.n_ff, n_embd])?,
            }
        };
        let post = |suffix: &str| -> Result<Option<NormWeights<B::Weight>>> {
            match spec.post_norms {
                Presence::Absent => Ok(None),
                Presence::Optional if !file.has_tensor(&blk(il, suffix)) => Ok(None),
                _ => l.norm(&blk(il, suffix), n_embd).map(Some),
            }
        };
        layers.push(LayerWeights {
            attn_norm: l.norm(&blk(il, "attn_norm.weight"), n_embd)?,
            wq: l.required(&blk(il, "attn_q.weight"), &[n_embd, q_dim])?,
            wk: l.required(&blk(il, "attn_k.weight"), &[n_embd, kv_dim])?,
            wv: l.required(&blk(il, "attn_v.weight"), &[n_embd, kv_dim])?,
            wo: l.required(&blk(il, "attn_output.weight"), &[q_dim, n_embd])?,
            bq: l.with_presence(spec.qkv_bias, &blk(il, "attn_q.bias"), &[q_dim])?,
            bk: l.with_presence(spec.qkv_bias, &blk(il, "attn_k.bias"), &[kv_dim])?,
            bv: l.with_presence(spec.qkv_bias, &blk(il, "attn_v.bias"), &[kv_dim])?,
            q_norm: l.with_presence(spec.qk_norm, &blk(il, "attn_q_norm.weight"), &[hd])?,
            k_norm: l.with_presence(spec.qk_norm, &blk(il, "attn_k_norm.weight"), &[hd])?,
            post_attn_norm: post("post_attention_norm.weight")?,
            ffn_norm: l.norm(&blk(il, "ffn_norm.weight"), n_embd)?,
            ffn,
            post_ffn_norm: post("post_ffw_norm.weight")?,
        });
    }
    Ok(Weights {
        token_embd,
        output_norm,
        output,
        layers,
    })
}
