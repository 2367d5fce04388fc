//! Rotary position embedding, computed as ggml's `rope` (f32): per-position
//! cos/sin tables built by repeated multiplication with `base^(-2/n_dims)`,
//! YaRN ramp and magnitude scaling as in ggml's `rope_yarn`.

use backend_core::{BackendError, Result, RopeMode, RopeSpec};
use rayon::prelude::*;

use crate::tensor::CpuTensor;
use crate::PAR_MIN;

/// ggml's `rope_yarn_ramp` (note the integer `i0 / 2`).
fn ramp(low: f32, high: f32, i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

/// The `(cos, sin)` pairs of one position for dims `0, 2, 4, … < head_dim`.
pub fn rope_cache(pos: f32, spec: &RopeSpec, head_dim: usize, cache: &mut Vec<(f32, f32)>) {
    let theta_scale = spec.freq_base.powf(-2.0 / spec.n_dims as f32);
    let (ext_factor, attn_factor, corr) = spec.yarn_params();
    cache.clear();
    let mut theta_extrap = pos;
    for i0 in (0..head_dim).step_by(2) {
        let theta_interp = spec.freq_scale * theta_extrap;
        let mut theta = theta_interp;
        let mut mscale = attn_factor;
        if ext_factor != 0.0 {
            let mix = ramp(corr[0], corr[1], i0) * ext_factor;
            theta = theta_interp * (1.0 - mix) + theta_extrap * mix;
            mscale *= 1.0 + 0.1 * (1.0 / spec.freq_scale).ln();
        }
        cache.push((theta.cos() * mscale, theta.sin() * mscale));
        theta_extrap *= theta_scale;
    }
}

/// Rotate one head in place with a cache from [`rope_cache`].
pub fn rope_head(head: &mut [f32], mode: RopeMode, n_dims: usize, cache: &[(f32, f32)]) {
    match mode {
        RopeMode::Normal => {
            for i0 in (0..n_dims).step_by(2) {
                let (c, s) = cache[i0 / 2];
                let (x0, x1) = (head[i0], head[i0 + 1]);
                head[i0] = x0 * c - x1 * s;
                head[i0 + 1] = x0 * s + x1 * c;
            }
        }
        RopeMode::Neox => {
            let half = n_dims / 2;
            for i0 in (0..n_dims).step_by(2) {
                let ic = i0 / 2;
                let (c, s) = cache[ic];
                let (x0, x1) = (head[ic], head[ic + half]);
                head[ic] = x0 * c - x1 * s;
                head[ic + half] = x0 * s + x1 * c;
            }
        }
    }
}

/// RoPE over every head of every row.
pub(crate) fn rope(
    x: &mut CpuTensor,
    n_heads: usize,
    positions: &[u32],
    spec: &RopeSpec,
) -> Result<()> {
    let cols = x.cols();
    let err = |detail: String| BackendError::Shape { op: "rope", detail };
    if positions.len() != x.rows() {
        return Err(err(format!(
            "{} positions for {} rows",
            positions.len(),
            x.rows()
        )));
    }
    if n_heads == 0 || !cols.is_multiple_of(n_heads) {
        return Err(err(format!("{n_heads} heads do not divide {cols} columns")));
    }
    let head_dim = cols / n_heads;
    if spec.n_dims == 0 || !spec.n_dims.is_multiple_of(2) || spec.n_dims > head_dim {
        return Err(err(format!(
            "n_dims {} invalid for head size {head_dim}",
            spec.n_dims
        )));
    }
    if cols == 0 {
        return Ok(());
    }
    let body = |cache: &mut Vec<(f32, f32)>, (row, &p): (&mut [f32], &u32)| {
        rope_cache(p as f32, spec, head_dim, cache);
        for head in row.chunks_exact_mut(head_dim) {
            rope_head(head, spec.mode, spec.n_dims, cache);
        }
    };
    if x.as_slice().len() < PAR_MIN {
        let mut cache = Vec::new();
        x.as_mut_slice()
            .chunks_mut(cols)
            .zip(positions)
            .for_each(|item| body(&mut cache, item));
    } else {
        x.as_mut_slice()
            .par_chunks_mut(cols)
            .zip(positions.par_iter())
            .for_each_init(Vec::new, body);
    }
    Ok(())
}
