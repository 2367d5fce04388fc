//! `out = x · Wᵀ` for a weight in its stored format.
//!
//! Work is split over the weight's rows (output features) so that every
//! thread streams its own part of the weight once; each weight row is used
//! for every token of the batch while it is hot in cache.

use std::cell::RefCell;

use backend_core::{BackendError, Result};
use rayon::prelude::*;

use crate::simd::dot_f32;
use crate::sync_ptr::SyncPtr;
use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;

thread_local! {
    /// Per-thread dequantized weight row, reused across calls.
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Check the shapes of a matmul.
pub(crate) fn check_shapes(w: &CpuWeight, x: &CpuTensor, out: &CpuTensor) -> Result<()> {
    if x.cols() != w.cols() || out.rows() != x.rows() || out.cols() != w.rows() {
        return Err(BackendError::Shape {
            op: "matmul",
            detail: format!(
                "weight {} is {} x {} ({}), x is {} x {}, out is {} x {}",
                w.name(),
                w.rows(),
                w.cols(),
                w.ggml_type().name(),
                x.rows(),
                x.cols(),
                out.rows(),
                out.cols()
            ),
        });
    }
    if !quant::can_dequantize(w.ggml_type()) {
        return Err(BackendError::UnsupportedType {
            op: "matmul",
            ggml_type: w.ggml_type(),
            tensor: w.name().to_string(),
        });
    }
    Ok(())
}

/// Rows of the weight one task handles: enough tasks to balance `threads`,
/// few enough that each amortises the scheduling cost.
pub(crate) fn rows_per_task(n_rows: usize, threads: usize, row_bytes: usize) -> usize {
    let tasks = (threads * 4).max(1);
    let by_balance = n_rows.div_ceil(tasks);
    // At least ~16 KiB of weight per task.
    let by_cost = (16 * 1024 / row_bytes.max(1)).max(1);
    by_balance.max(by_cost).min(n_rows.max(1))
}

/// The portable path: dequantize each weight row once, then `f32` dots
/// with every token.
pub(crate) fn matmul(
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
) -> Result<()> {
    check_shapes(w, x, out)?;
    let (k, n, t) = (w.cols(), w.rows(), x.rows());
    if n == 0 || t == 0 {
        return Ok(());
    }
    let row_bytes = w.row_bytes();
    let bytes = w.bytes();
    let ty = w.ggml_type();
    let chunk = rows_per_task(n, threads, row_bytes);
    let out_ptr = SyncPtr(out.as_mut_slice().as_mut_ptr());
    let xs = x.as_slice();
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        ROW.with(|cell| {
            let mut row = cell.borrow_mut();
            row.resize(k, 0.0);
            for r in c * chunk..((c + 1) * chunk).min(n) {
                let src = &bytes[r * row_bytes..(r + 1) * row_bytes];
                // Shapes and type were validated above, so this cannot fail.
                let _ = quant::dequantize(ty, src, &mut row);
                for tok in 0..t {
                    let v = dot_f32(&row, &xs[tok * k..(tok + 1) * k]);
                    // SAFETY: `tok < t` and `r < n`, so the index is inside the
                    // `t × n` output; only this task writes column `r`.
                    unsafe { out_ptr.write(tok * n + r, v) };
                }
            }
        });
    });
    Ok(())
}
