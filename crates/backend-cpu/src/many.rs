//! One token against several weights ([`crate::CpuBackend`]'s
//! `matmul_many`: a layer's q/k/v or gate/up projections) as one parallel
//! region.
//!
//! The activation row is quantized once per activation format (and laid out
//! once per weight format for the zmm row kernel); the weights' rows, taken
//! one after the other, are cut into tasks of about equal bytes (cuts at
//! multiples of four rows inside a weight), and a task that spans two
//! weights runs each one's kernel over its part. Every row's result is the
//! one [`crate::matmul::matmul`] gives for that weight alone: the kernels
//! compute rows independently of how they are split.

use std::ops::Range;

use backend_core::{GgmlType, Result};
use rayon::prelude::*;

use crate::gemm::{self, ZmmAct};
use crate::matmul::{check_shapes, dot_rows_into, one_token_dot_kernel, quantize_activation_rows};
use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;

/// How one weight's rows are computed.
enum Path {
    /// The zmm row kernel with the prepared activation `zmm[i]`.
    Zmm(usize),
    /// A `quant::dot` kernel with the quantized activation `acts[i]`.
    Dot(&'static quant::dot::VecDotKernel, usize),
}

/// Tasks per thread of a merged region (balance against hand-off cost).
const TASKS_PER_THREAD: usize = 4;

/// Least weight bytes worth a task of their own.
const MIN_TASK_BYTES: usize = 16 * 1024;

/// `outs[i] = x · ws[i]ᵀ` for one token (`x` one row) as one parallel region
/// of the current rayon pool, when every weight takes the zmm row kernel or
/// a `quant::dot` kernel; `Ok(false)` (nothing written) when some weight
/// takes another path or `x` has more rows, for the caller to run the
/// matmuls one by one. Shapes are checked as [`crate::matmul::matmul`]
/// checks them.
pub(crate) fn matmul_many(
    ws: &[&CpuWeight],
    x: &CpuTensor,
    outs: &mut [&mut CpuTensor],
    threads: usize,
) -> Result<bool> {
    if x.rows() != 1 || ws.len() != outs.len() || ws.is_empty() {
        return Ok(false);
    }
    for (w, out) in ws.iter().zip(outs.iter()) {
        check_shapes(w, x, out)?;
    }
    let k = x.cols();
    // Quantized activation rows, one per activation format.
    let mut acts: Vec<(GgmlType, Vec<u8>)> = Vec::new();
    let mut act_index = |ty: GgmlType| -> Result<usize> {
        if let Some(i) = acts.iter().position(|(t, _)| *t == ty) {
            return Ok(i);
        }
        let row = quant::bytes_for(ty, k)
            .map_err(|e| backend_core::BackendError::Device(e.to_string()))?;
        let mut buf = Vec::new();
        quantize_activation_rows(ty, x.as_slice(), k, 1, row, &mut buf)?;
        acts.push((ty, buf));
        Ok(acts.len() - 1)
    };
    // Per weight: its path; zmm layouts per weight format.
    let mut paths = Vec::with_capacity(ws.len());
    let mut zmm_of: Vec<(GgmlType, usize)> = Vec::new();
    let mut zmm_pending: Vec<(GgmlType, usize)> = Vec::new();
    for w in ws {
        let ty = w.ggml_type();
        if let Some(at) = gemm::zmm_act_type(ty) {
            let i = match zmm_of.iter().find(|(t, _)| *t == ty) {
                Some(&(_, i)) => i,
                None => {
                    let i = zmm_of.len();
                    zmm_of.push((ty, i));
                    zmm_pending.push((ty, act_index(at)?));
                    i
                }
            };
            paths.push(Path::Zmm(i));
        } else if let Some(kernel) = one_token_dot_kernel(w) {
            paths.push(Path::Dot(kernel, act_index(kernel.activation_type())?));
        } else {
            return Ok(false);
        }
    }
    let zmm: Vec<ZmmAct> = zmm_pending
        .iter()
        .map(|&(ty, a)| gemm::zmm_prepare(ty, &acts[a].1, k / 32))
        .collect();

    let cuts = cuts(ws, threads);
    let outs_ptr: Vec<OutPtr> = outs
        .iter_mut()
        .map(|o| OutPtr(o.as_mut_slice().as_mut_ptr()))
        .collect();
    let (acts, zmm, paths, outs_ptr) = (&acts, &zmm, &paths, &outs_ptr);
    let task = |c: usize| {
        for (i, rows) in segments(ws, cuts[c], cuts[c + 1]) {
            // SAFETY: `rows` lies inside weight `i`'s rows, so inside its
            // `1 × rows` output (shapes checked above); the tasks' row
            // ranges are disjoint, so only this task touches these values,
            // and the outputs outlive the parallel loop.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(outs_ptr[i].0.add(rows.start), rows.len())
            };
            match paths[i] {
                Path::Zmm(z) => gemm::zmm_rows_into(&zmm[z], ws[i], rows, dst),
                Path::Dot(kernel, a) => dot_rows_into(kernel, ws[i], &acts[a].1, rows, dst),
            }
        }
    };
    let tasks = cuts.len() - 1;
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
    Ok(true)
}

/// An output pointer that the tasks share (they write disjoint ranges).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: only dereferenced for disjoint ranges by the tasks of one parallel
// loop that joins before the outputs are used again (see `matmul_many`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Task boundaries as positions in the weights' concatenated rows: about
/// equal bytes per task, [`TASKS_PER_THREAD`] tasks per thread (one when
/// `threads` is 1) and at least [`MIN_TASK_BYTES`] each, every cut inside a
/// weight at a multiple of four rows. Starts at 0, ends at the total rows,
/// never decreases.
fn cuts(ws: &[&CpuWeight], threads: usize) -> Vec<usize> {
    let total_rows: usize = ws.iter().map(|w| w.rows()).sum();
    let total_bytes: usize = ws.iter().map(|w| w.rows() * w.row_bytes()).sum();
    let tasks = if threads <= 1 {
        1
    } else {
        (threads * TASKS_PER_THREAD)
            .min(total_bytes / MIN_TASK_BYTES)
            .max(1)
    };
    let mut cuts = Vec::with_capacity(tasks + 1);
    cuts.push(0);
    for c in 1..tasks {
        let target = total_bytes * c / tasks;
        // The weight holding byte `target`, and the row there.
        let (mut base_rows, mut base_bytes) = (0, 0);
        let mut at = total_rows;
        for w in ws {
            let bytes = w.rows() * w.row_bytes();
            if target < base_bytes + bytes {
                let r = (target - base_bytes).div_ceil(w.row_bytes().max(1));
                at = base_rows + r.next_multiple_of(4).min(w.rows());
                break;
            }
            base_rows += w.rows();
            base_bytes += bytes;
        }
        let last = *cuts.last().unwrap_or(&0);
        cuts.push(at.max(last));
    }
    cuts.push(total_rows);
    cuts
}

/// The parts of concatenated rows `a..b` as (weight index, its rows).
fn segments<'a>(
    ws: &'a [&CpuWeight],
    a: usize,
    b: usize,
) -> impl Iterator<Item = (usize, Range<usize>)> + 'a {
    let mut base = 0;
    ws.iter().enumerate().filter_map(move |(i, w)| {
        let (lo, hi) = (base, base + w.rows());
        base = hi;
        let (s, e) = (a.max(lo), b.min(hi));
        (s < e).then(|| (i, s - lo..e - lo))
    })
}

#[cfg(test)]
mod tests {
    use crate::testsuite::{Rng, TestWeight};
    use crate::{CpuBackend, CpuTensor};
    use backend_core::{Backend, GgmlType};

    /// One token against mixed-format weights (row counts off multiples of
    /// four, sizes from one task to several) gives exactly, bit for bit,
    /// the separate matmuls' results, on one thread and on two; a set with
    /// a weight outside the merged path (F16) too.
    #[test]
    fn equals_separate_matmuls() {
        use GgmlType::*;
        let sets: &[(usize, &[(GgmlType, usize)])] = &[
            (576, &[(Q4_0, 576), (Q4_0, 192), (Q4_0, 192)]),
            (576, &[(Q4_1, 1536), (Q4_1, 1536)]),
            (
                96,
                &[(Q8_0, 37), (Q4_1, 5), (Q5_0, 130), (Q4_0, 1), (Q8_0, 301)],
            ),
            (
                512,
                &[(Q4_K, 333), (Q6_K, 64), (Q8_0, 515), (Q4_0, 3), (Q5_K, 90)],
            ),
            (512, &[(Q6_K, 1500), (Q4_K, 1500)]),
            (256, &[(Q4_0, 40), (F16, 17)]),
        ];
        let mut rng = Rng::new(21);
        for threads in [1, 2] {
            let b = CpuBackend::new(threads).unwrap();
            for &(k, set) in sets {
                let ws: Vec<_> = set
                    .iter()
                    .map(|&(ty, n)| TestWeight::random(&mut rng, ty, k, n, 0.05).load(&b))
                    .collect();
                let x = CpuTensor::from_vec(rng.vec(k, 1.0), 1, k).unwrap();
                let want: Vec<Vec<f32>> = ws
                    .iter()
                    .map(|w| {
                        let mut o = CpuTensor::zeros(1, w.rows()).unwrap();
                        b.matmul(w, &x, &mut o).unwrap();
                        o.as_slice().to_vec()
                    })
                    .collect();
                let mut outs: Vec<CpuTensor> = ws
                    .iter()
                    .map(|w| CpuTensor::from_vec(vec![f32::NAN; w.rows()], 1, w.rows()).unwrap())
                    .collect();
                let refs: Vec<_> = ws.iter().collect();
                let mut out_refs: Vec<_> = outs.iter_mut().collect();
                b.matmul_many(&x, &refs, &mut out_refs).unwrap();
                // The merged path ran wherever the kernels exist (here they
                // do for every set but the one with F16).
                let merged = b
                    .pool
                    .install(|| super::matmul_many(&refs, &x, &mut out_refs, threads))
                    .unwrap();
                if crate::gemm::zmm_act_type(Q4_0).is_some() {
                    assert_eq!(merged, !set.iter().any(|s| s.0 == F16), "{set:?}");
                }
                for (i, (o, w)) in outs.iter().zip(&want).enumerate() {
                    let same = o
                        .as_slice()
                        .iter()
                        .zip(w)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "threads={threads} k={k} set {set:?} weight {i}");
                }
            }
        }
    }

    /// The task cuts start at 0, end at the total, never decrease, and fall
    /// inside a weight only at multiples of four rows.
    #[test]
    fn cuts_are_ordered_and_aligned() {
        let b = CpuBackend::new(1).unwrap();
        let mut rng = Rng::new(4);
        let ws: Vec<_> = [
            (GgmlType::Q4_0, 577),
            (GgmlType::Q8_0, 3),
            (GgmlType::Q4_1, 1601),
        ]
        .iter()
        .map(|&(ty, n)| TestWeight::random(&mut rng, ty, 576, n, 0.05).load(&b))
        .collect();
        let refs: Vec<_> = ws.iter().collect();
        for threads in 1..=8 {
            let c = super::cuts(&refs, threads);
            assert_eq!(c[0], 0);
            assert_eq!(*c.last().unwrap(), 577 + 3 + 1601);
            assert!(c.windows(2).all(|p| p[0] <= p[1]));
            for &x in &c {
                let inside = [0usize, 577, 580]
                    .iter()
                    .zip([577usize, 3, 1601])
                    .find(|&(&s, n)| x > s && x < s + n);
                if let Some((&s, _)) = inside {
                    assert_eq!((x - s) % 4, 0, "threads={threads} cuts {c:?}");
                }
            }
        }
    }
}
