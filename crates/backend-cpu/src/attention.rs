//! Causal attention over the KV cache, tiled with an online softmax: memory
//! stays O(tile) whatever the context length.
//!
//! One task handles the query heads of one KV head (all of them, or a part
//! when there are fewer tasks than threads) for a block of consecutive query
//! rows, so each K/V tile is read (and converted from f16) once per task.
//! The tasks of all sequences of a batch run in one parallel loop
//! ([`attention_batch`]).

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
    attention_batch(q, &[(cache, rows, start_pos)], layer, spec, out)
}

/// Attention for several sequences of one batch in one parallel pass: for
/// each `(cache, rows, start_pos)`, rows `rows` of `q` at positions
/// `start_pos..` of `layer` in `cache`. Row ranges must not overlap.
pub(crate) fn attention_batch(
    q: &CpuTensor,
    seqs: &[(&CpuKvCache, Range<usize>, usize)],
    layer: usize,
    spec: &AttnSpec,
    out: &mut CpuTensor,
) -> Result<()> {
    let err = |detail: String| BackendError::Shape {
        op: "attention",
        detail,
    };
    let (nh, nkv, hd) = (spec.n_head, spec.n_head_kv, spec.head_dim);
    if nkv == 0 || nh % nkv != 0 {
        return Err(err(format!("{nh} heads / {nkv} kv heads")));
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
    for (cache, rows, start_pos) in seqs {
        if nkv != cache.n_head_kv || hd != cache.head_dim {
            return Err(err(format!(
                "{nh} heads / {nkv} kv heads of {hd}, cache has {} kv heads of {}",
                cache.n_head_kv, cache.head_dim
            )));
        }
        if rows.start > rows.end || rows.end > q.rows() {
            return Err(err(format!("rows {rows:?} of {}", q.rows())));
        }
        if layer >= cache.layers.len() {
            return Err(err(format!("layer {layer} of {}", cache.layers.len())));
        }
        if rows.is_empty() {
            continue;
        }
        if start_pos + rows.len() > cache.n_ctx {
            return Err(BackendError::ContextOverflow {
                pos: start_pos + rows.len() - 1,
                n_ctx: cache.n_ctx,
            });
        }
    }
    // The tasks of different sequences write their own rows of `out`.
    let mut sorted: Vec<&Range<usize>> = seqs
        .iter()
        .map(|(_, rows, _)| rows)
        .filter(|r| !r.is_empty())
        .collect();
    sorted.sort_by_key(|r| r.start);
    if let Some(w) = sorted.windows(2).find(|w| w[0].end > w[1].start) {
        return Err(err(format!("row ranges {:?} and {:?} overlap", w[0], w[1])));
    }
    let group = nh / nkv;
    let blocks = |rows: &Range<usize>| rows.len().div_ceil(BLOCK_Q);
    let total: usize = seqs.iter().map(|(_, rows, _)| nkv * blocks(rows)).sum();
    if total == 0 {
        return Ok(());
    }
    // Units share the K/V tile conversion across the query heads of one KV
    // head; when that leaves fewer units than threads, split the group.
    let split = if total >= rayon::current_num_threads() {
        1
    } else {
        group
    };
    // (sequence, KV head and group part, row block) of every unit.
    let units: Vec<(usize, usize, usize)> = seqs
        .iter()
        .enumerate()
        .flat_map(|(s, (_, rows, _))| {
            (0..blocks(rows)).flat_map(move |b| (0..nkv * split).map(move |hs| (s, hs, b)))
        })
        .collect();
    let per_unit = group / split;
    let cols = q.cols();
    let out_ptr = SyncPtr(out.as_mut_slice().as_mut_ptr());
    let run = |&(s, hs, b): &(usize, usize, usize)| {
        let (cache, ref rows, start_pos) = seqs[s];
        let lkv = &cache.layers[layer];
        let round_q = cache.ty == KvType::F16;
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
            // Both tiles requested at once (their cache misses overlap;
            // V's arrives while K's is converted and multiplied).
            lkv.k.prefetch((base + t0) * hd..(base + t1) * hd);
            lkv.v.prefetch((base + t0) * hd..(base + t1) * hd);
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
                // SAFETY: row `r0 + iq / per_unit` is in this sequence's
                // `rows` (checked < `out.rows()`, disjoint from the other
                // sequences' rows); the columns of head `h` in that row are
                // written only by this unit (a sequence's units own distinct
                // (heads, row block) pairs).
                unsafe { out_ptr.write(at + d, a * inv) };
            }
        }
    };
    if units.len() == 1 {
        run(&units[0]);
    } else {
        units.par_iter().for_each(run);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Several sequences (prefill chunks and single decode rows, one
    /// sliding window case) in one batch give exactly the per-sequence
    /// results, on one thread and on three.
    #[test]
    fn batch_equals_per_sequence() {
        let (nh, nkv, hd, n_ctx) = (6, 2, 8, 64);
        // (rows in the batch, positions already cached)
        let shapes = [(1, 20), (5, 0), (1, 3), (17, 30), (1, 0)];
        let n_rows: usize = shapes.iter().map(|s| s.0).sum();
        let q = CpuTensor::from_vec(values(n_rows * nh * hd, 1), n_rows, nh * hd).unwrap();
        let k = CpuTensor::from_vec(values(n_rows * nkv * hd, 2), n_rows, nkv * hd).unwrap();
        let v = CpuTensor::from_vec(values(n_rows * nkv * hd, 3), n_rows, nkv * hd).unwrap();
        let mut caches = Vec::new();
        let mut ranges = Vec::new();
        let mut row0 = 0;
        for (i, &(n, cached)) in shapes.iter().enumerate() {
            let mut c = CpuKvCache::new(KvType::F16, 1, n_ctx, nkv, hd).unwrap();
            let past = values(cached.max(1) * nkv * hd, 10 + i as u32);
            let past = CpuTensor::from_vec(past, cached.max(1), nkv * hd).unwrap();
            c.store(0, &past, &past, 0..cached, 0).unwrap();
            c.store(0, &k, &v, row0..row0 + n, cached).unwrap();
            caches.push(c);
            ranges.push((row0..row0 + n, cached));
            row0 += n;
        }
        for window in [None, Some(7)] {
            let spec = AttnSpec {
                n_head: nh,
                n_head_kv: nkv,
                head_dim: hd,
                scale: 0.35,
                sliding_window: window,
                softcap: None,
            };
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut one = CpuTensor::zeros(n_rows, nh * hd).unwrap();
                let mut all = CpuTensor::zeros(n_rows, nh * hd).unwrap();
                pool.install(|| {
                    for (c, (rows, start)) in caches.iter().zip(&ranges) {
                        attention(&q, c, 0, rows.clone(), *start, &spec, &mut one).unwrap();
                    }
                    let seqs: Vec<_> = caches
                        .iter()
                        .zip(&ranges)
                        .map(|(c, (rows, start))| (c, rows.clone(), *start))
                        .collect();
                    attention_batch(&q, &seqs, 0, &spec, &mut all).unwrap();
                });
                assert_eq!(
                    one.as_slice(),
                    all.as_slice(),
                    "{window:?}, {threads} threads"
                );
                assert!(all.as_slice().iter().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn overlapping_rows_are_refused() {
        let (nh, nkv, hd) = (2, 1, 4);
        let c = CpuKvCache::new(KvType::F32, 1, 8, nkv, hd).unwrap();
        let q = CpuTensor::zeros(3, nh * hd).unwrap();
        let mut out = CpuTensor::zeros(3, nh * hd).unwrap();
        let spec = AttnSpec {
            n_head: nh,
            n_head_kv: nkv,
            head_dim: hd,
            scale: 0.5,
            sliding_window: None,
            softcap: None,
        };
        let seqs = [(&c, 0..2, 0), (&c, 1..3, 0)];
        assert!(attention_batch(&q, &seqs, 0, &spec, &mut out).is_err());
        let seqs = [(&c, 0..1, 0), (&c, 1..3, 0)];
        assert!(attention_batch(&q, &seqs, 0, &spec, &mut out).is_ok());
    }
}
