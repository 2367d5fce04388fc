//! Row lookups and element-wise ops: get_rows, add_bias, glu, add, mul,
//! scale, softmax, argmax.

use backend_core::{BackendError, GluKind, Result};
use half::f16;
use rayon::prelude::*;

use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;
use crate::PAR_MIN;

fn shape_err(op: &'static str, detail: String) -> BackendError {
    BackendError::Shape { op, detail }
}

/// `out[i] = table[ids[i]]`, dequantized.
pub(crate) fn get_rows(table: &CpuWeight, ids: &[u32], out: &mut CpuTensor) -> Result<()> {
    let (cols, rows) = (table.cols(), table.rows());
    if out.rows() != ids.len() || out.cols() != cols {
        return Err(shape_err(
            "get_rows",
            format!(
                "{} ids of {cols} values into a {} x {} tensor",
                ids.len(),
                out.rows(),
                out.cols()
            ),
        ));
    }
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= rows) {
        return Err(shape_err(
            "get_rows",
            format!(
                "id {bad} out of range for {} with {rows} rows",
                table.name()
            ),
        ));
    }
    if !quant::can_dequantize(table.ggml_type()) {
        return Err(BackendError::UnsupportedType {
            op: "get_rows",
            ggml_type: table.ggml_type(),
            tensor: table.name().to_string(),
        });
    }
    if cols == 0 {
        return Ok(());
    }
    let rb = table.row_bytes();
    let bytes = table.bytes();
    let ty = table.ggml_type();
    let body = |(dst, &id): (&mut [f32], &u32)| {
        let id = id as usize;
        quant::dot::dequantize_row(ty, &bytes[id * rb..(id + 1) * rb], dst)
            .map_err(|e| BackendError::Device(format!("get_rows on {}: {e}", table.name())))
    };
    if ids.len() * cols < PAR_MIN {
        out.as_mut_slice()
            .chunks_mut(cols)
            .zip(ids)
            .try_for_each(body)
    } else {
        out.as_mut_slice()
            .par_chunks_mut(cols)
            .zip(ids.par_iter())
            .try_for_each(body)
    }
}

/// `x[t][c] += bias[c]`.
pub(crate) fn add_bias(x: &mut CpuTensor, bias: &[f32]) -> Result<()> {
    let cols = x.cols();
    if bias.len() != cols {
        return Err(shape_err(
            "add_bias",
            format!("bias of {} values, rows of {cols}", bias.len()),
        ));
    }
    if cols == 0 {
        return Ok(());
    }
    for row in x.as_mut_slice().chunks_exact_mut(cols) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
    Ok(())
}

/// ggml's `silu`: `x / (1 + e^-x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// ggml's f32 GELU formula (tanh approximation).
#[inline]
pub fn gelu_formula(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// GELU exactly as ggml's CPU backend evaluates it on `f32` data: outside
/// `(-10, 10)` it is `0` or `x`; inside, the input is rounded to f16 and the
/// formula's result is rounded to f16 (ggml's 64 Ki-entry f16 table).
#[inline]
pub fn gelu_ggml(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let xr = f16::from_f32(x).to_f32();
        f16::from_f32(gelu_formula(xr)).to_f32()
    }
}

/// `out = act(gate) * up`.
pub(crate) fn glu(
    gate: &CpuTensor,
    up: &CpuTensor,
    kind: GluKind,
    out: &mut CpuTensor,
) -> Result<()> {
    if gate.rows() != up.rows() || gate.cols() != up.cols() {
        return Err(shape_err(
            "glu",
            format!(
                "gate {} x {}, up {} x {}",
                gate.rows(),
                gate.cols(),
                up.rows(),
                up.cols()
            ),
        ));
    }
    crate::norm::same_shape("glu", gate, out)?;
    let f = |o: &mut [f32], g: &[f32], u: &[f32]| match kind {
        GluKind::Silu => crate::simd::swiglu(o, g, u),
        GluKind::GeluTanh => o
            .iter_mut()
            .zip(g)
            .zip(u)
            .for_each(|((o, &g), &u)| *o = gelu_ggml(g) * u),
    };
    let (o, g, u) = (out.as_mut_slice(), gate.as_slice(), up.as_slice());
    if o.len() >= PAR_MIN {
        o.par_chunks_mut(4096)
            .zip(g.par_chunks(4096))
            .zip(u.par_chunks(4096))
            .for_each(|((o, g), u)| f(o, g, u));
    } else {
        f(o, g, u);
    }
    Ok(())
}

/// `a += b`.
pub(crate) fn add(a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
    if a.rows() != b.rows() || a.cols() != b.cols() {
        return Err(shape_err(
            "add",
            format!("{} x {} += {} x {}", a.rows(), a.cols(), b.rows(), b.cols()),
        ));
    }
    a.as_mut_slice()
        .iter_mut()
        .zip(b.as_slice())
        .for_each(|(x, y)| *x += y);
    Ok(())
}

/// `a *= b`, with `b` either `a`'s shape or one row.
pub(crate) fn mul(a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
    let cols = a.cols();
    if b.cols() != cols || (b.rows() != a.rows() && b.rows() != 1) {
        return Err(shape_err(
            "mul",
            format!("{} x {} *= {} x {}", a.rows(), a.cols(), b.rows(), b.cols()),
        ));
    }
    if cols == 0 {
        return Ok(());
    }
    if b.rows() == a.rows() {
        a.as_mut_slice()
            .iter_mut()
            .zip(b.as_slice())
            .for_each(|(x, y)| *x *= y);
    } else {
        for row in a.as_mut_slice().chunks_exact_mut(cols) {
            row.iter_mut().zip(b.as_slice()).for_each(|(x, y)| *x *= y);
        }
    }
    Ok(())
}

/// Row-wise softmax: `e^(x - max)` summed in `f64`, then scaled by `1/sum`.
pub(crate) fn softmax(a: &mut CpuTensor) -> Result<()> {
    let cols = a.cols();
    if cols == 0 {
        return Ok(());
    }
    let run = |row: &mut [f32]| {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f64;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
        let inv = (1.0 / sum) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    };
    if a.as_slice().len() >= PAR_MIN {
        a.as_mut_slice().par_chunks_mut(cols).for_each(run);
    } else {
        a.as_mut_slice().chunks_mut(cols).for_each(run);
    }
    Ok(())
}

/// Index of each row's largest value (ties to the lowest index; NaNs lose).
pub(crate) fn argmax(a: &CpuTensor) -> Vec<u32> {
    let cols = a.cols();
    if cols == 0 {
        return vec![0; a.rows()];
    }
    a.as_slice()
        .chunks_exact(cols)
        .map(|row| {
            let mut best = 0usize;
            let mut best_v = f32::NEG_INFINITY;
            for (i, &v) in row.iter().enumerate() {
                if v > best_v {
                    best = i;
                    best_v = v;
                }
            }
            best as u32
        })
        .collect()
}
