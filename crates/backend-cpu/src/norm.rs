//! RMSNorm and LayerNorm, with ggml's arithmetic (sums in `f64`, the scale
//! applied first and the weight multiplied after, as two separate ops).

use backend_core::{BackendError, Result};
use rayon::prelude::*;

use crate::tensor::CpuTensor;
use crate::PAR_MIN;

/// Check that `out` has `x`'s shape.
pub(crate) fn same_shape(op: &'static str, x: &CpuTensor, out: &CpuTensor) -> Result<()> {
    if x.rows() != out.rows() || x.cols() != out.cols() {
        return Err(BackendError::Shape {
            op,
            detail: format!(
                "{} x {} input, {} x {} output",
                x.rows(),
                x.cols(),
                out.rows(),
                out.cols()
            ),
        });
    }
    Ok(())
}

/// RMS-normalise each `group` of columns, times `weight` (length `group`).
pub(crate) fn rms_norm(
    x: &CpuTensor,
    weight: Option<&[f32]>,
    group: usize,
    eps: f32,
    out: &mut CpuTensor,
) -> Result<()> {
    same_shape("rms_norm", x, out)?;
    if group == 0 || !x.cols().is_multiple_of(group) {
        return Err(BackendError::Shape {
            op: "rms_norm",
            detail: format!("group {group} does not divide {} columns", x.cols()),
        });
    }
    if let Some(w) = weight {
        if w.len() != group {
            return Err(BackendError::Shape {
                op: "rms_norm",
                detail: format!("weight has {} values, group is {group}", w.len()),
            });
        }
    }
    let src = x.as_slice();
    let per_task = (16384 / group).max(1) * group;
    let body = |(o, s): (&mut [f32], &[f32])| {
        for (og, sg) in o.chunks_exact_mut(group).zip(s.chunks_exact(group)) {
            rms_norm_group(sg, weight, eps, og);
        }
    };
    if src.len() < PAR_MIN {
        out.as_mut_slice()
            .chunks_mut(per_task)
            .zip(src.chunks(per_task))
            .for_each(body);
    } else {
        out.as_mut_slice()
            .par_chunks_mut(per_task)
            .zip(src.par_chunks(per_task))
            .for_each(body);
    }
    Ok(())
}

/// One group: `y = x * (1/sqrt(mean(x²) + eps))`, then `* w`.
pub(crate) fn rms_norm_group(x: &[f32], weight: Option<&[f32]>, eps: f32, y: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    match weight {
        Some(w) => {
            for ((yi, &xi), &wi) in y.iter_mut().zip(x).zip(w) {
                *yi = (xi * scale) * wi;
            }
        }
        None => {
            for (yi, &xi) in y.iter_mut().zip(x) {
                *yi = xi * scale;
            }
        }
    }
}

/// Layer-normalise each row, then `* weight + bias`.
pub(crate) fn layer_norm(
    x: &CpuTensor,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
    out: &mut CpuTensor,
) -> Result<()> {
    same_shape("layer_norm", x, out)?;
    let cols = x.cols();
    for (what, v) in [("weight", weight), ("bias", bias)] {
        if let Some(v) = v {
            if v.len() != cols {
                return Err(BackendError::Shape {
                    op: "layer_norm",
                    detail: format!("{what} has {} values, rows have {cols}", v.len()),
                });
            }
        }
    }
    if cols == 0 {
        return Ok(());
    }
    let src = x.as_slice();
    let body = |(y, x): (&mut [f32], &[f32])| {
        let sum: f64 = x.iter().map(|&v| v as f64).sum();
        let mean = (sum / cols as f64) as f32;
        let mut sum2 = 0.0f64;
        for (yi, &xi) in y.iter_mut().zip(x) {
            let d = xi - mean;
            *yi = d;
            sum2 += (d * d) as f64;
        }
        let var = (sum2 / cols as f64) as f32;
        let scale = 1.0 / (var + eps).sqrt();
        for yi in y.iter_mut() {
            *yi *= scale;
        }
        if let Some(w) = weight {
            for (yi, wi) in y.iter_mut().zip(w) {
                *yi *= wi;
            }
        }
        if let Some(b) = bias {
            for (yi, bi) in y.iter_mut().zip(b) {
                *yi += bi;
            }
        }
    };
    if src.len() < PAR_MIN {
        out.as_mut_slice()
            .chunks_mut(cols)
            .zip(src.chunks(cols))
            .for_each(body);
    } else {
        out.as_mut_slice()
            .par_chunks_mut(cols)
            .zip(src.par_chunks(cols))
            .for_each(body);
    }
    Ok(())
}
