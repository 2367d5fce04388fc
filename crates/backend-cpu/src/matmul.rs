//! `out = x · Wᵀ` for a weight in its stored format.
//!
//! Work is split over the weight's rows (output features) so that every
//! thread streams its own part of the weight once; each weight row is used
//! for every token of the batch while it is hot in cache.

use std::cell::RefCell;
use std::ops::Range;

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

/// `out = x · Wᵀ`: with `quant`'s dot-product kernel for the weight type
/// when it has one (activations quantized once into the kernel's format),
/// else by dequantizing each weight row to `f32`.
pub(crate) fn matmul(
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
) -> Result<()> {
    check_shapes(w, x, out)?;
    // Q4_0/Q4_1/Q5_0/Q8_0: this crate's kernels (several tokens per unpacked
    // weight block in a batch, four rows per activation block for one token).
    let ty = w.ggml_type();
    // Two tokens or more (batched decode, prefill): eight weight rows per
    // vector, the weights unpacked once per call (legacy formats and the
    // K-quants, with AVX-512 VNNI).
    if x.rows() >= crate::gemm::lanes::MIN_TOKENS
        && crate::gemm::lanes::supports(ty)
        && !force_vec_dot()
    {
        return crate::gemm::lanes::matmul(w, x, out, threads);
    }
    if crate::gemm::supports(ty) && !force_vec_dot() {
        return ACT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => crate::gemm::matmul(w, x, out, threads, &mut buf),
            Err(_) => crate::gemm::matmul(w, x, out, threads, &mut Vec::new()),
        });
    }
    match quant::dot::kernel_for(w.ggml_type()) {
        Some(kernel)
            if quant::bytes_for(kernel.activation_type(), w.cols()).is_ok()
                && (kernel.isa_level() != quant::dot::Isa::Scalar || force_vec_dot()) =>
        {
            matmul_dot(kernel, w, x, out, threads)
        }
        _ => matmul_dequant(w, x, out, threads),
    }
}

/// Whether `ROCMFORGE_CPU_KERNELS=vec_dot` asks to skip the multi-token
/// kernels (for comparisons).
pub(crate) fn force_vec_dot() -> bool {
    static FORCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCE.get_or_init(|| std::env::var("ROCMFORGE_CPU_KERNELS").is_ok_and(|v| v == "vec_dot"))
}

thread_local! {
    /// Per-thread quantized activations, reused across calls.
    static ACT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Tokens whose activations one weight row meets while it is in cache.
const TOKEN_TILE: usize = 8;

/// How far ahead (bytes) the one-token paths ask the cache for weight bytes
/// (the legacy-format row kernels of `gemm` and the dot-product path here).
/// The rows of a one-token mat-vec are one sequential stream and the
/// hardware prefetcher alone left it at about 5 GB/s on one core: SmolLM2
/// Q4_1 tg64 at one thread went from 42–58 to 61–100 t/s (Emerald Rapids VM,
/// 2026-11-29, busy machine; 4–8 KiB ahead measured alike, 1 KiB less).
pub(crate) const ROW_PREFETCH_BYTES: usize = 6144;

fn matmul_dot(
    kernel: &'static quant::dot::VecDotKernel,
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
) -> Result<()> {
    let (k, n, t) = (w.cols(), w.rows(), x.rows());
    if n == 0 || t == 0 {
        return Ok(());
    }
    let act_type = kernel.activation_type();
    let act_row = quant::bytes_for(act_type, k).map_err(|e| BackendError::Device(e.to_string()))?;
    // The buffer is thread-local; a nested call on the same thread (a task
    // stolen while waiting) falls back to a fresh allocation.
    ACT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => matmul_dot_with(kernel, w, x, out, threads, act_row, &mut buf),
        Err(_) => matmul_dot_with(kernel, w, x, out, threads, act_row, &mut Vec::new()),
    })
}

#[allow(clippy::too_many_arguments)]
fn matmul_dot_with(
    kernel: &'static quant::dot::VecDotKernel,
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
    act_row: usize,
    act: &mut Vec<u8>,
) -> Result<()> {
    let (k, n, t) = (w.cols(), w.rows(), x.rows());
    let act_type = kernel.activation_type();
    quantize_activation_rows(act_type, x.as_slice(), k, t, act_row, act)?;
    let act: &[u8] = act;
    let row_bytes = w.row_bytes();
    let bytes = w.bytes();
    let chunk = rows_per_task(n, threads, row_bytes);
    let out_ptr = SyncPtr(out.as_mut_slice().as_mut_ptr());
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(n));
        if t == 1 {
            // SAFETY: `r0..r1` lies inside the `1 × n` output and only this
            // task touches it during the loop.
            let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(r0), r1 - r0) };
            dot_rows_into(kernel, w, act, r0..r1, dst);
            return;
        }
        for t0 in (0..t).step_by(TOKEN_TILE) {
            let t1 = (t0 + TOKEN_TILE).min(t);
            for r in r0..r1 {
                let wrow = &bytes[r * row_bytes..(r + 1) * row_bytes];
                for tok in t0..t1 {
                    let arow = &act[tok * act_row..(tok + 1) * act_row];
                    // SAFETY: `wrow` is one whole row of the weight (`k`
                    // elements, validated by `check_shapes` and at load) and
                    // `arow` holds exactly `k` elements in the kernel's
                    // activation type (`act_row = bytes_for(act_type, k)`).
                    let v = unsafe { kernel.dot_unchecked(wrow, arow) };
                    // SAFETY: `tok < t`, `r < n`: inside the `t × n` output;
                    // only this task writes column `r`.
                    unsafe { out_ptr.write(tok * n + r, v) };
                }
            }
        }
    });
    Ok(())
}

/// Whether one token against a `w` weight takes [`matmul`]'s dot-product
/// path, and with which kernel.
pub(crate) fn one_token_dot_kernel(w: &CpuWeight) -> Option<&'static quant::dot::VecDotKernel> {
    let ty = w.ggml_type();
    if crate::gemm::supports(ty) && !force_vec_dot() {
        return None;
    }
    quant::dot::kernel_for(ty).filter(|k| {
        quant::bytes_for(k.activation_type(), w.cols()).is_ok()
            && (k.isa_level() != quant::dot::Isa::Scalar || force_vec_dot())
    })
}

/// Rows `rows` of `w` against one activation row `arow` (quantized to the
/// activation type of `kernel`, the kernel of `w`'s type), into
/// `out[0..len]` on the calling thread. The rows are one sequential stream:
/// each row fetches the one about [`ROW_PREFETCH_BYTES`] ahead (as the
/// legacy-format row kernels do).
///
/// # Panics
/// If the kernel, the activation row or the ranges do not fit `w`.
pub(crate) fn dot_rows_into(
    kernel: &'static quant::dot::VecDotKernel,
    w: &CpuWeight,
    arow: &[u8],
    rows: Range<usize>,
    out: &mut [f32],
) {
    assert_eq!(kernel.weight_type(), w.ggml_type());
    assert_eq!(
        quant::bytes_for(kernel.activation_type(), w.cols()).ok(),
        Some(arow.len())
    );
    assert!(rows.end <= w.rows() && out.len() >= rows.len());
    let row_bytes = w.row_bytes();
    let bytes = w.bytes();
    let ahead = (ROW_PREFETCH_BYTES / row_bytes.max(1)).max(1);
    for (r, o) in rows.clone().zip(out.iter_mut()) {
        if r + ahead < rows.end {
            let next = r + ahead;
            crate::simd::prefetch_lines(&bytes[next * row_bytes..(next + 1) * row_bytes]);
        }
        // SAFETY: `bytes[r * row_bytes..]` is one whole row of the weight
        // (`k` elements of its type, validated at load) and `arow` holds
        // exactly `k` elements of the kernel's activation type (asserted).
        *o = unsafe { kernel.dot_unchecked(&bytes[r * row_bytes..(r + 1) * row_bytes], arow) };
    }
}

/// The portable path: dequantize each weight row once, then `f32` dots
/// with every token.
pub(crate) fn matmul_dequant(
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
            let mut fresh = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let row: &mut Vec<f32> = match guard.as_mut() {
                Ok(r) => r,
                Err(_) => &mut fresh,
            };
            row.resize(k, 0.0);
            for r in c * chunk..((c + 1) * chunk).min(n) {
                let src = &bytes[r * row_bytes..(r + 1) * row_bytes];
                // Shapes and type were validated above, so this cannot fail.
                let _ = quant::dot::dequantize_row(ty, src, row);
                for tok in 0..t {
                    let v = dot_f32(row, &xs[tok * k..(tok + 1) * k]);
                    // SAFETY: `tok < t` and `r < n`, so the index is inside the
                    // `t × n` output; only this task writes column `r`.
                    unsafe { out_ptr.write(tok * n + r, v) };
                }
            }
        });
    });
    Ok(())
}

/// Quantize each of the `t` rows of `x` (`k` values each) to `act_type` into
/// `act` (resized to `t` rows of `act_row` bytes); rows in parallel from
/// [`crate::PAR_MIN`] values on (a batched decode step's few rows cost less
/// than the pool's fork and join).
pub(crate) fn quantize_activation_rows(
    act_type: quant::GgmlType,
    x: &[f32],
    k: usize,
    t: usize,
    act_row: usize,
    act: &mut Vec<u8>,
) -> Result<()> {
    act.resize(act_row * t, 0);
    let quantize = |(dst, src): (&mut [u8], &[f32])| {
        quant::dot::quantize_activations(act_type, src, dst)
            .map_err(|e| BackendError::Device(e.to_string()))
    };
    if t * k >= crate::PAR_MIN {
        act.par_chunks_mut(act_row)
            .zip(x.par_chunks(k))
            .try_for_each(quantize)
    } else {
        act.chunks_mut(act_row)
            .zip(x.chunks(k))
            .try_for_each(quantize)
    }
}
