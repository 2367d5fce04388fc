//! Log-probabilities of sampled tokens, from raw logits.

/// A token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Log-probability of the chosen token.
    pub logprob: f32,
    /// The `n` most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of `logits` at `chosen`, with the `n` best alternatives
/// (ties broken by the lower id).
pub fn top_logprobs(logits: &[f32], chosen: u32, n: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_z = max as f64 + sum.ln();
    let lp = |id: usize| (f64::from(logits[id]) - log_z) as f32;
    let mut best: Vec<u32> = Vec::with_capacity(n + 1);
    for id in 0..logits.len() as u32 {
        let v = logits[id as usize];
        let pos = best.partition_point(|&b| logits[b as usize] >= v);
        if pos < n {
            best.insert(pos, id);
            best.truncate(n);
        }
    }
    TokenLogprob {
        logprob: logits
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |_| lp(chosen as usize)),
        top: best.into_iter().map(|id| (id, lp(id as usize))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let r = top_logprobs(&logits, 2, 3);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let expect = |i: usize| ((logits[i] as f64).exp() / z).ln() as f32;
        assert!((r.logprob - expect(2)).abs() < 1e-6);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        assert!((r.top[0].1 - expect(1)).abs() < 1e-6);
    }
}
