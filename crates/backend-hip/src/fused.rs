//! A decode step's RoPE, cache write and attention in one launch
//! ([`Backend::rope_store_attention`](backend_core::Backend::rope_store_attention)
//! for a single row): `attention_decode_rope_f32` rotates the query and the
//! new key in registers, writes the key and value rows into the cache and
//! attends, instead of `rope_f32` (which writes the rotated rows back and
//! into the cache) followed by `attention_decode_f32`.
//!
//! Where the heads fit the key-group layout, `attention_keygroups_rope_f32`
//! does the same on the key-group attention. That one is on by default
//! (the wave-per-key one only with `ROCMFORGE_GPU_FUSED_ATTENTION=1` or
//! [`HipBackend::set_fused_attention`]): on an H200
//! (one call, two rounds) 8b Q4_K_M tg128 575.7 / 576.1 t/s against 546.8 /
//! 553.0 with the two launches, 1b 1,952.8 / 1,899.6 against 1,855.9 /
//! 1,850.0 (docs/gpu.md); `ROCMFORGE_GPU_FUSED_ATTENTION=0` turns it off.

use backend_core::{AttnSpec, Result, RopeSpec};
use hip_kernels::AttnParams;

use crate::{dev_err, rope_params, HipBackend, HipKvCache, HipTensor, FUSED_KEY_GROUPS, FUSED_OFF};

impl HipBackend {
    /// The fused op where it applies (one row of one sequence at its next
    /// position, every dim rotated, keys not split at this length, rows on
    /// 16-byte boundaries): `Ok(true)` once launched; `Ok(false)` with
    /// nothing done otherwise. `q` and `k` stay unrotated.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fused_rope_attention(
        &self,
        q: &HipTensor,
        k: &HipTensor,
        v: &HipTensor,
        positions: &[u32],
        rope: &RopeSpec,
        cache: &mut HipKvCache,
        layer: usize,
        start_pos: usize,
        spec: &AttnSpec,
        out: &mut HipTensor,
    ) -> Result<bool> {
        let hd = spec.head_dim;
        let (q_cols, kv_cols) = (spec.n_head * hd, spec.n_head_kv * hd);
        let one_row = [q.rows, k.rows, v.rows, out.rows] == [1; 4]
            && positions.len() == 1
            && positions[0] as usize == start_pos;
        let mode = self
            .fused_attention
            .load(std::sync::atomic::Ordering::Relaxed);
        if !one_row
            || mode == FUSED_OFF
            || q.cols != q_cols
            || out.cols != q_cols
            || k.cols != kv_cols
            || v.cols != kv_cols
            || cache.n_head_kv != spec.n_head_kv
            || cache.head_dim != hd
            || rope.n_dims != hd
            || start_pos >= cache.n_ctx
        {
            return Ok(false);
        }
        let p = AttnParams {
            rows: 1,
            start_pos,
            n_head: spec.n_head,
            n_kv: spec.n_head_kv,
            head_dim: hd,
            scale: spec.scale,
            window: spec.sliding_window,
            softcap: spec.softcap,
        };
        let rp = rope_params(1, spec.n_head, hd, rope);
        if mode == FUSED_KEY_GROUPS && !self.kernels.attention_rope_key_groups(&p, &rp) {
            return Ok(false);
        }
        let n_ctx = cache.n_ctx;
        let (kc, vc, _) = cache.rows_at(layer, 1, start_pos)?;
        if !self
            .kernels
            .attention_rope_fits(&p, &rp, [&q.buf, &k.buf, &v.buf, kc, vc, &out.buf])
        {
            return Ok(false);
        }
        self.capture_note(n_ctx, Some((p, 1)));
        let emit = hd.is_multiple_of(32) && self.emits_q8(out, out.cols);
        let holder = out.buf.device_ptr();
        self.with_positions(positions, |pos| {
            self.emitting_q8(emit, holder, out.cols, |q8| {
                self.kernels
                    .attention_rope(
                        &self.stream,
                        &q.buf,
                        &k.buf,
                        &v.buf,
                        kc,
                        vc,
                        pos,
                        &p,
                        &rp,
                        &mut out.buf,
                        q8,
                    )
                    .map_err(dev_err)
            })
        })?;
        Ok(true)
    }
}
