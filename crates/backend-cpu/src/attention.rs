//! Causal attention over the KV cache, tiled with an online softmax: memory
//! stays O(tile) whatever the context length.
//!
//! One task handles the query heads of one KV head (all of them, or a part
//! when there are fewer tasks than threads) for a block of consecutive query
//! rows, so each K/V tile is read (and converted from f16) once per task.

use std::ops::Range;

use backend_core::{AttnSpec, BackendError, Result};
use half::f16;
use rayon::prelude::*;

use crate::kv::{CpuKvCache, KvType};
use crate::simd::{accumulate_rows, dot_many, exp_sub_sum};
use crate::sync_ptr::SyncPtr;
use crate::tensor::CpuTensor;

/// Key positions per tile.
const TILE_K: usize = 64;
/// Query rows per task.
const BLOCK_Q: usize = 16;

/// Running state of one query row.
struct RowState {
    m: f32,
    l: f32,
    acc: Vec<f32>,
}

/// Attention for `rows` of `q` at positions `start_pos..` of `layer`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    q: &CpuTensor,
    cache: &CpuKvCache,
    layer: usize,
    rows: Range<usize>,
    start_pos: usize,
    spec: &AttnSpec,
    out: &mut CpuTensor,
) -> Result<()> {
    let err = |detail: String| BackendError::Shape {
        op: "attention",
        detail,
    };
    let (nh, nkv, hd) = (spec.n_head, spec.n_head_kv, spec.head_dim);
    if nkv == 0 || nh % nkv != 0 || nkv != cache.n_head_kv || hd != cache.head_dim {
        return Err(err(format!(
            "{nh} heads / {nkv} kv heads of {hd}, cache has {} kv heads of {}",
            cache.n_head_kv, cache.head_dim
        )));
    }
    if q.cols() != nh * hd || out.rows() != q.rows() || out.cols() != q.cols() {
        return Err(err(format!(
            "q is {} x {}, out {} x {}, {nh} heads of {hd}",
            q.rows(),
            q.cols(),
            out.rows(),
            out.cols()
        )));
    }
    if rows.start > rows.end || rows.end > q.rows() {
        return Err(err(format!("rows {rows:?} of {}", q.rows())));
    }
    if layer >= cache.layers.len() {
        return Err(err(format!("layer {layer} of {}", cache.layers.len())));
    }
    let n = rows.len();
    if n == 0 {
        return Ok(());
    }
    if start_pos + n > cache.n_ctx {
        return Err(BackendError::ContextOverflow {
            pos: start_pos + n - 1,
            n_ctx: cache.n_ctx,
        });
    }
    let lkv = &cache.layers[layer];
    let group = nh / nkv;
    let n_blocks = n.div_ceil(BLOCK_Q);
    // Units share the K/V tile conversion across the query heads of one KV
    // head; when that leaves fewer units than threads, split the group.
    let split = if nkv * n_blocks >= rayon::current_num_threads() {
        1
    } else {
        group
    };
    let per_unit = group / split;
    let cols = q.cols();
    let out_ptr = SyncPtr(out.as_mut_slice().as_mut_ptr());
    let round_q = cache.ty == KvType::F16;
    (0..nkv * split * n_blocks)
        .into_par_iter()
        .for_each(|unit| {
            let (hs, b) = (unit % (nkv * split), unit / (nkv * split));
            let (hkv, sub) = (hs / split, hs % split);
            let heads = hkv * group + sub * per_unit..hkv * group + (sub + 1) * per_unit;
            let r0 = rows.start + b * BLOCK_Q;
            let r1 = (r0 + BLOCK_Q).min(rows.end);
            let pos_of = |r: usize| start_pos + (r - rows.start);
            let first_visible = |p: usize| match spec.sliding_window {
                Some(w) => (p + 1).saturating_sub(w.max(1)),
                None => 0,
            };
            // Queries of this unit, `[row][head][dim]`, rounded to f16 like
            // ggml when K is f16.
            let nq = (r1 - r0) * per_unit;
            let mut qs: Vec<f32> = Vec::with_capacity(nq * hd);
            for r in r0..r1 {
                for h in heads.clone() {
                    let src = &q.row(r)[h * hd..(h + 1) * hd];
                    if round_q {
                        qs.extend(src.iter().map(|&v| f16::from_f32(v).to_f32()));
                    } else {
                        qs.extend_from_slice(src);
                    }
                }
            }
            let mut st: Vec<RowState> = (0..nq)
                .map(|_| RowState {
                    m: f32::NEG_INFINITY,
                    l: 0.0,
                    acc: vec![0.0; hd],
                })
                .collect();
            let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
            let mut scores = [0.0f32; TILE_K];
            let k_lo = first_visible(pos_of(r0));
            let k_hi = pos_of(r1 - 1) + 1;
            let base = hkv * cache.n_ctx;
            let mut t0 = k_lo;
            while t0 < k_hi {
                let t1 = (t0 + TILE_K).min(k_hi);
                let kt = lkv.k.read((base + t0) * hd..(base + t1) * hd, &mut kbuf);
                let vt = lkv.v.read((base + t0) * hd..(base + t1) * hd, &mut vbuf);
                for (iq, s) in st.iter_mut().enumerate() {
                    let p = pos_of(r0 + iq / per_unit);
                    let lo = first_visible(p).max(t0);
                    let hi = (p + 1).min(t1);
                    if lo >= hi {
                        continue;
                    }
                    let sc = &mut scores[..hi - lo];
                    dot_many(
                        &qs[iq * hd..(iq + 1) * hd],
                        &kt[(lo - t0) * hd..(hi - t0) * hd],
                        sc,
                    );
                    let mut tile_max = f32::NEG_INFINITY;
                    for x in sc.iter_mut() {
                        *x *= spec.scale;
                        if let Some(c) = spec.softcap {
                            *x = c * (*x / c).tanh();
                        }
                        tile_max = tile_max.max(*x);
                    }
                    if tile_max > s.m {
                        let f = (s.m - tile_max).exp();
                        s.l *= f;
                        s.acc.iter_mut().for_each(|a| *a *= f);
                        s.m = tile_max;
                    }
                    s.l += exp_sub_sum(sc, s.m);
                    accumulate_rows(&mut s.acc, sc, &vt[(lo - t0) * hd..(hi - t0) * hd]);
                }
                t0 = t1;
            }
            for (iq, s) in st.iter().enumerate() {
                let inv = if s.l > 0.0 { 1.0 / s.l } else { 0.0 };
                let h = heads.start + iq % per_unit;
                let at = (r0 + iq / per_unit) * cols + h * hd;
                for (d, &a) in s.acc.iter().enumerate() {
                    // SAFETY: row `r0 + iq / per_unit` < `out.rows()`; the columns
                    // of head `h` in that row are written only by this unit
                    // (units own distinct (heads, row block) pairs).
                    unsafe { out_ptr.write(at + d, a * inv) };
                }
            }
        });
    Ok(())
}
