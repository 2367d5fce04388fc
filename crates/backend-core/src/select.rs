//! Token selection on the backend: how one token is picked from a row of
//! logits without the logits leaving the device, and the host reference that
//! defines the result bit for bit (up to `exp` rounding).
//!
//! The semantics are the engine sampler's (llama.cpp's default chain):
//! soft-capping (if the model has it) → penalties → greedy argmax, or
//! top-k → top-p → min-p → temperature → one draw with a uniform number
//! supplied by the caller (so a seeded host RNG drives device sampling and a
//! run is reproducible). Sampling on the backend requires `1 ≤ k ≤`
//! [`MAX_DEVICE_TOP_K`]; callers sample on the host otherwise.

/// The largest `top_k` a backend must support in [`SelectMode::Sample`].
pub const MAX_DEVICE_TOP_K: usize = 1024;

/// How to pick the token of one row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenSelect {
    /// `l = cap · tanh(l / cap)` first (the model's final logit soft-capping).
    pub softcap: Option<f32>,
    /// `(token id, occurrences in the penalty window)`, each id once.
    pub penalties: Vec<(u32, u32)>,
    /// Repetition penalty (`1.0`: off): positive logits are divided by it,
    /// others multiplied.
    pub repeat_penalty: f32,
    /// Subtracted once from every penalised id.
    pub presence_penalty: f32,
    /// Subtracted per occurrence.
    pub frequency_penalty: f32,
    /// Greedy or sampled.
    pub mode: SelectMode,
}

/// Greedy or sampled selection.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SelectMode {
    /// The largest logit, ties to the lowest id.
    #[default]
    Greedy,
    /// top-k → top-p → min-p → temperature → draw.
    Sample(SampleSpec),
}

/// The parameters of a sampled pick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    /// Keep the `top_k` largest logits (`1 ..= MAX_DEVICE_TOP_K` on a
    /// device; equal logits keep the lower ids first).
    pub top_k: usize,
    /// Keep the shortest prefix whose probability reaches `top_p`.
    pub top_p: f32,
    /// Keep logits at least `ln(min_p)` above the largest (`0`: off).
    pub min_p: f32,
    /// Divide the kept logits by this (`> 0`).
    pub temperature: f32,
    /// The draw, uniform in `[0, 1)`.
    pub uniform: f64,
}

/// The selection rule on the host: what every backend's
/// [`crate::Backend::select_tokens`] must return for `logits` (one row).
pub fn select_reference(logits: &[f32], spec: &TokenSelect) -> u32 {
    let mut l: Vec<f32> = logits.to_vec();
    if let Some(cap) = spec.softcap {
        for v in &mut l {
            *v = cap * (*v / cap).tanh();
        }
    }
    apply_penalties(&mut l, spec);
    match spec.mode {
        SelectMode::Greedy => {
            let mut best = 0;
            for (i, &v) in l.iter().enumerate() {
                if v > l[best] {
                    best = i;
                }
            }
            best as u32
        }
        SelectMode::Sample(p) => {
            let mut cand: Vec<(u32, f32)> =
                l.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
            cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cand.truncate(p.top_k.clamp(1, cand.len().max(1)));
            pick_from_sorted(&cand, &p)
        }
    }
}

/// Apply the spec's penalties to a full row of logits.
pub fn apply_penalties(l: &mut [f32], spec: &TokenSelect) {
    for &(id, count) in &spec.penalties {
        let Some(v) = l.get_mut(id as usize) else {
            continue;
        };
        if *v <= 0.0 {
            *v *= spec.repeat_penalty;
        } else {
            *v /= spec.repeat_penalty;
        }
        *v -= count as f32 * spec.frequency_penalty + spec.presence_penalty;
    }
}

/// top-p → min-p → temperature → draw over candidates sorted by logit
/// (descending, lower id first among equals); `p.top_k` is not applied here.
pub fn pick_from_sorted(cand: &[(u32, f32)], p: &SampleSpec) -> u32 {
    let SampleSpec {
        top_p,
        min_p,
        temperature,
        uniform,
        ..
    } = *p;
    let mut n = cand.len();
    if n == 0 {
        return 0;
    }
    if top_p < 1.0 {
        let probs = softmax(&cand[..n], 1.0);
        let mut cum = 0.0f64;
        for (i, p) in probs.iter().enumerate() {
            cum += *p as f64;
            if cum >= top_p as f64 {
                n = i + 1;
                break;
            }
        }
    }
    if min_p > 0.0 {
        let threshold = cand[0].1 + min_p.ln();
        n = cand[..n]
            .iter()
            .take_while(|c| c.1 >= threshold)
            .count()
            .max(1);
    }
    let probs = softmax(&cand[..n], temperature);
    let mut cum = 0.0f64;
    for (c, p) in cand[..n].iter().zip(&probs) {
        cum += *p as f64;
        if uniform < cum {
            return c.0;
        }
    }
    cand[n - 1].0
}

/// Probabilities of `l / temperature` (f32, summed in order).
fn softmax(cand: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let scaled: Vec<f32> = cand.iter().map(|c| c.1 / temperature).collect();
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scaled.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_ties_go_to_the_lowest_id_after_penalties() {
        let spec = TokenSelect {
            penalties: vec![(1, 1)],
            repeat_penalty: 2.0,
            ..Default::default()
        };
        // 1: 4.0 -> 2.0, so 0 and 2 tie at 3.0 and 0 wins.
        assert_eq!(select_reference(&[3.0, 4.0, 3.0], &spec), 0);
    }

    #[test]
    fn sampling_walks_the_cumulative_distribution() {
        let sample = |u| TokenSelect {
            mode: SelectMode::Sample(SampleSpec {
                top_k: 3,
                top_p: 1.0,
                min_p: 0.0,
                temperature: 1.0,
                uniform: u,
            }),
            ..Default::default()
        };
        let logits = [0.0, (3.0f32).ln(), -100.0, 0.0];
        // Sorted: 1 (p 0.6), 0 (0.2), 3 (0.2); 2 is cut by top-k.
        assert_eq!(select_reference(&logits, &sample(0.0)), 1);
        assert_eq!(select_reference(&logits, &sample(0.59)), 1);
        assert_eq!(select_reference(&logits, &sample(0.61)), 0);
        assert_eq!(select_reference(&logits, &sample(0.99)), 3);
    }

    #[test]
    fn softcap_is_applied_before_everything() {
        let spec = TokenSelect {
            softcap: Some(1.0),
            ..Default::default()
        };
        assert_eq!(select_reference(&[5.0, 4.0], &spec), 0);
    }
}
