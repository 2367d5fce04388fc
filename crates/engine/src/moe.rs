//! Mixture-of-experts FFN, routed as Mixtral: softmax over all experts'
//! router logits, the top `n_expert_used` kept and renormalised to sum to 1.
//!
//! Routing and the gather/scatter of rows go through host memory (the backend
//! trait has no gather/scatter op yet); the expert matmuls run on the backend.

use crate::error::Result;
use crate::hparams::ModelConfig;
use crate::weights::Expert;
use backend_core::Backend;

/// The top-`k` experts of one token and their normalised weights.
pub(crate) fn route(router_logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = router_logits
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let probs: Vec<f32> = router_logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = probs.iter().sum();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // Stable sort: equal probabilities keep the lower expert first.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let chosen: Vec<(usize, f32)> = order[..k].iter().map(|&e| (e, probs[e] / sum)).collect();
    let total: f32 = chosen.iter().map(|(_, w)| w).sum();
    chosen.into_iter().map(|(e, w)| (e, w / total)).collect()
}

/// `Σ_e w_e · expert_e(h)` for every row of `h`.
pub(crate) fn forward<B: Backend>(
    be: &B,
    c: &ModelConfig,
    router: &B::Weight,
    experts: &[Expert<B::Weight>],
    h: &B::Tensor,
) -> Result<B::Tensor> {
    let (n_rows, n_embd) = be.shape(h);
    let mut logits = be.zeros(n_rows, experts.len())?;
    be.matmul(router, h, &mut logits)?;
    let logits = be.download(&logits)?;
    let routes: Vec<Vec<(usize, f32)>> = logits
        .chunks_exact(experts.len())
        .map(|row| route(row, c.n_expert_used))
        .collect();
    let h_host = be.download(h)?;
    let mut acc = vec![0.0f32; n_rows * n_embd];
    for (e, expert) in experts.iter().enumerate() {
        let picked: Vec<(usize, f32)> = routes
            .iter()
            .enumerate()
            .filter_map(|(t, r)| r.iter().find(|(ex, _)| *ex == e).map(|(_, w)| (t, *w)))
            .collect();
        if picked.is_empty() {
            continue;
        }
        let mut xe = Vec::with_capacity(picked.len() * n_embd);
        for (t, _) in &picked {
            xe.extend_from_slice(&h_host[t * n_embd..(t + 1) * n_embd]);
        }
        let xe = be.upload(&xe, picked.len(), n_embd)?;
        let mut g = be.zeros(picked.len(), c.n_ff)?;
        let mut u = be.zeros(picked.len(), c.n_ff)?;
        be.matmul(&expert.gate, &xe, &mut g)?;
        be.matmul(&expert.up, &xe, &mut u)?;
        let mut a = be.zeros(picked.len(), c.n_ff)?;
        be.glu(&g, &u, c.arch.activation, &mut a)?;
        let mut y = be.zeros(picked.len(), n_embd)?;
        be.matmul(&expert.down, &a, &mut y)?;
        let y = be.download(&y)?;
        for (i, (t, w)) in picked.iter().enumerate() {
            let dst = &mut acc[t * n_embd..(t + 1) * n_embd];
            for (d, s) in dst.iter_mut().zip(&y[i * n_embd..(i + 1) * n_embd]) {
                *d += w * s;
            }
        }
    }
    Ok(be.upload(&acc, n_rows, n_embd)?)
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn route_keeps_top_k_and_renormalises() {
        let r = route(&[0.0, 2.0, 1.0, 2.0], 2);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!((r[0].1 - 0.5).abs() < 1e-6 && (r[1].1 - 0.5).abs() < 1e-6);
        let r = route(&[(3.0f32).ln(), 0.0, -50.0], 2);
        assert!((r[0].1 - 0.75).abs() < 1e-5, "{r:?}");
    }
}
