//! Parameters of the ops: weights as views, RoPE, attention and GLU settings.

use gguf_format::GgmlType;

/// A weight as found in the model file: its type, dims (ggml order, ne0 =
/// contiguous row length, unused dims are 1) and bytes.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    /// Tensor name (for error messages).
    pub name: &'a str,
    /// Stored element type.
    pub ggml_type: GgmlType,
    /// Dims in ggml order: `[ne0, ne1, ne2, ne3]`.
    pub dims: [usize; 4],
    /// The stored bytes (exactly `ggml_type.bytes_for(Π dims)`).
    pub data: &'a [u8],
}

impl WeightView<'_> {
    /// Row length (ne0).
    pub fn cols(&self) -> usize {
        self.dims[0]
    }
    /// Number of rows when viewed as 2-D (ne1 × ne2 × ne3).
    pub fn rows(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }
}

/// How RoPE pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(2i, 2i+1)` (llama).
    Normal,
    /// Halves `(i, i + n_dims/2)` (NeoX; qwen2, qwen3, gemma3).
    Neox,
}

/// YaRN context extension parameters (ggml's `rope_yarn`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnSpec {
    /// Extrapolation mix factor (`ext_factor`).
    pub ext_factor: f32,
    /// Magnitude scaling (`attn_factor`).
    pub attn_factor: f32,
    /// Low correction dim boundary (`beta_fast`).
    pub beta_fast: f32,
    /// High correction dim boundary (`beta_slow`).
    pub beta_slow: f32,
    /// Context length the model was trained with.
    pub n_ctx_orig: usize,
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    /// Pairing scheme.
    pub mode: RopeMode,
    /// Number of rotated dimensions per head (≤ head size).
    pub n_dims: usize,
    /// θ base.
    pub freq_base: f32,
    /// Linear scaling: positions are multiplied by this (1 / factor).
    pub freq_scale: f32,
    /// YaRN parameters, when the model uses YaRN scaling.
    pub yarn: Option<YarnSpec>,
}

impl RopeSpec {
    /// YaRN's `(ext_factor, attn_factor, [low, high])` for this rotation:
    /// `(0, 1, [0, 0])` without YaRN.
    pub fn yarn_params(&self) -> (f32, f32, [f32; 2]) {
        match self.yarn {
            Some(y) => (
                y.ext_factor,
                y.attn_factor,
                yarn_corr_dims(
                    self.n_dims,
                    y.n_ctx_orig,
                    self.freq_base,
                    y.beta_fast,
                    y.beta_slow,
                ),
            ),
            None => (0.0, 1.0, [0.0, 0.0]),
        }
    }
}

/// ggml's `ggml_rope_yarn_corr_dim`: the dimension at which `n_rot`
/// rotations happen over the original context.
fn corr_dim(n_dims: usize, n_ctx_orig: usize, n_rot: f32, base: f32) -> f32 {
    n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
        / (2.0 * base.ln())
}

/// ggml's `ggml_rope_yarn_corr_dims`: the `[low, high]` ramp boundaries.
pub fn yarn_corr_dims(
    n_dims: usize,
    n_ctx_orig: usize,
    freq_base: f32,
    beta_fast: f32,
    beta_slow: f32,
) -> [f32; 2] {
    let start = corr_dim(n_dims, n_ctx_orig, beta_fast, freq_base).floor();
    let end = corr_dim(n_dims, n_ctx_orig, beta_slow, freq_base).ceil();
    [start.max(0.0), end.min(n_dims as f32 - 1.0)]
}

/// Attention settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnSpec {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (divides `n_head`; GQA when smaller).
    pub n_head_kv: usize,
    /// Size of each head.
    pub head_dim: usize,
    /// Multiplier applied to `q·k` (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Only the last `w` positions are visible (including the current one).
    pub sliding_window: Option<usize>,
    /// `softcap * tanh(score / softcap)` before softmax, where set.
    pub softcap: Option<f32>,
}

/// The activation of a gated linear unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GluKind {
    /// SiLU (SwiGLU): `x * sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation (GeGLU), as ggml's `gelu`.
    GeluTanh,
}
