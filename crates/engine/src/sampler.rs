//! Token sampling with llama.cpp's default chain and semantics.
//!
//! Order, as llama.cpp's default sampler chain: **penalties → top-k → top-p →
//! min-p → temperature → draw**. With `temperature <= 0` the draw is replaced
//! by argmax (ties to the lowest id) after the penalties, i.e. greedy.
//!
//! - Repetition penalty: for every token seen in the last `penalty_last_n`
//!   tokens (prompt included), a positive logit is divided by `repeat_penalty`
//!   and a negative one multiplied by it; then `count · frequency_penalty +
//!   presence_penalty` is subtracted.
//! - top-k keeps the `k` largest logits (`0`: off).
//! - top-p keeps the smallest prefix (by probability) whose cumulative
//!   probability reaches `p` (`1.0`: off).
//! - min-p keeps tokens whose probability is at least `min_p` times the top
//!   one's (`0.0`: off).

use crate::error::{EngineError, Result};
use crate::rng::Rng;
use std::collections::{HashMap, VecDeque};

/// Per-call sampling and stopping options.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// Softmax temperature; `<= 0` is greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (`0`: off).
    pub top_k: usize,
    /// Nucleus sampling threshold (`1.0`: off).
    pub top_p: f32,
    /// Minimum probability relative to the most likely token (`0.0`: off).
    pub min_p: f32,
    /// Repetition penalty (`1.0`: off).
    pub repeat_penalty: f32,
    /// Subtracted once from every token seen in the window (`0.0`: off).
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the window (`0.0`: off).
    pub frequency_penalty: f32,
    /// How many of the last tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Seed of the random draw.
    pub seed: u64,
    /// Maximum number of tokens to generate.
    pub max_tokens: usize,
    /// Keep generating after an end-of-generation token.
    pub ignore_eos: bool,
}

impl Default for SamplingOptions {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p
    /// 0.05, no penalties over a window of 64, seed 0, 128 tokens.
    fn default() -> Self {
        SamplingOptions {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
            max_tokens: 128,
            ignore_eos: false,
        }
    }
}

impl SamplingOptions {
    /// Greedy decoding (temperature 0) for `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        SamplingOptions {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        }
    }

    /// Check the values are usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| {
            Err(EngineError::InvalidArgument(format!(
                "invalid sampling option: {what}"
            )))
        };
        if !self.temperature.is_finite() {
            return bad("temperature must be finite");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("top_p must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat_penalty must be positive");
        }
        if !self.presence_penalty.is_finite() || !self.frequency_penalty.is_finite() {
            return bad("presence/frequency penalties must be finite");
        }
        Ok(())
    }
}

/// A stateful sampler: options, random state and the penalty window.
#[derive(Debug, Clone)]
pub struct Sampler {
    opts: SamplingOptions,
    rng: Rng,
    window: VecDeque<u32>,
    /// Buffers reused across calls: the penalised logits and the candidates.
    penalised: Vec<f32>,
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler for `opts` (validated).
    pub fn new(opts: SamplingOptions) -> Result<Sampler> {
        opts.validate()?;
        Ok(Sampler {
            rng: Rng::new(opts.seed),
            window: VecDeque::with_capacity(opts.penalty_last_n),
            opts,
            penalised: Vec::new(),
            cand: Vec::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &SamplingOptions {
        &self.opts
    }

    /// Record a token (prompt or generated) in the penalty window.
    pub fn accept(&mut self, id: u32) {
        if self.opts.penalty_last_n == 0 {
            return;
        }
        if self.window.len() == self.opts.penalty_last_n {
            self.window.pop_front();
        }
        self.window.push_back(id);
    }

    /// Pick the next token from `logits` (one per vocabulary entry). Does not
    /// [`accept`](Self::accept) it.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let o = &self.opts;
        let logits = if self.window.is_empty()
            || (o.repeat_penalty == 1.0 && o.presence_penalty == 0.0 && o.frequency_penalty == 0.0)
        {
            logits
        } else {
            self.penalised.clear();
            self.penalised.extend_from_slice(logits);
            apply_penalties(o, &self.window, &mut self.penalised);
            &self.penalised
        };
        if o.temperature <= 0.0 {
            return argmax(logits);
        }
        // Sorted by logit, descending; equal logits keep the lower id first.
        let cand = &mut self.cand;
        cand.clear();
        if o.top_k > 0 && o.top_k < logits.len() {
            top_k(logits, o.top_k, cand);
        } else {
            cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
            // Ids are unique, so the order is total and an unstable sort
            // gives the same result as a stable one.
            cand.sort_unstable_by(sort_order);
        }
        if o.top_p < 1.0 {
            let probs = softmax(cand);
            let mut cum = 0.0f64;
            let mut keep = cand.len();
            for (i, p) in probs.iter().enumerate() {
                cum += *p as f64;
                if cum >= o.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if o.min_p > 0.0 {
            let threshold = cand[0].1 + o.min_p.ln();
            let keep = cand.iter().take_while(|c| c.1 >= threshold).count();
            cand.truncate(keep.max(1));
        }
        for c in cand.iter_mut() {
            c.1 /= o.temperature;
        }
        let probs = softmax(cand);
        let r = self.rng.next_f64();
        let mut cum = 0.0f64;
        for (c, p) in cand.iter().zip(&probs) {
            cum += *p as f64;
            if r < cum {
                return c.0;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// Repetition, frequency and presence penalties of the tokens in `window`,
/// applied to `logits` in place.
fn apply_penalties(o: &SamplingOptions, window: &VecDeque<u32>, logits: &mut [f32]) {
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for &id in window {
        *counts.entry(id).or_default() += 1;
    }
    for (id, count) in counts {
        let Some(l) = logits.get_mut(id as usize) else {
            continue;
        };
        if *l <= 0.0 {
            *l *= o.repeat_penalty;
        } else {
            *l /= o.repeat_penalty;
        }
        *l -= count as f32 * o.frequency_penalty + o.presence_penalty;
    }
}

/// The candidates' order: by logit, descending (`total_cmp`), equal logits by
/// id, ascending.
fn sort_order(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// `f32::total_cmp` as an integer key.
fn total_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

/// The first `k` (`0 < k < logits.len()`) candidates of the full sort (by
/// [`sort_order`]) into `out`, in that order, in one pass over the logits:
/// a heap of the best `k` so far, its root the worst of them.
fn top_k(logits: &[f32], k: usize, out: &mut Vec<(u32, f32)>) {
    /// Heap entry ordered so that the greatest is the latest in sort order.
    #[derive(Clone, Copy)]
    struct Worst(u32, f32);
    impl PartialEq for Worst {
        fn eq(&self, o: &Self) -> bool {
            self.cmp(o).is_eq()
        }
    }
    impl Eq for Worst {}
    impl PartialOrd for Worst {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Worst {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            sort_order(&(self.0, self.1), &(o.0, o.1))
        }
    }
    let mut heap: std::collections::BinaryHeap<Worst> = logits[..k]
        .iter()
        .enumerate()
        .map(|(i, &l)| Worst(i as u32, l))
        .collect();
    let mut root = heap.peek().map_or(i32::MIN, |w| total_key(w.1));
    for (i, &l) in logits.iter().enumerate().skip(k) {
        // Ids grow along the scan, so a logit equal to the root's sorts
        // after it: only a strictly greater one displaces it.
        if total_key(l) > root {
            if let Some(mut w) = heap.peek_mut() {
                *w = Worst(i as u32, l);
            }
            root = heap.peek().map_or(i32::MIN, |w| total_key(w.1));
        }
    }
    out.extend(heap.into_sorted_vec().into_iter().map(|w| (w.0, w.1)));
}

/// Index of the largest logit, ties to the lowest id.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0, logits[0]);
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > best.1 {
            best = (i, l);
        }
    }
    best.0 as u32
}

/// Probabilities of the candidates' logits.
fn softmax(cand: &[(u32, f32)]) -> Vec<f32> {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(f: impl FnOnce(&mut SamplingOptions)) -> SamplingOptions {
        let mut o = SamplingOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        f(&mut o);
        o
    }

    #[test]
    fn greedy_ties_go_to_lowest_id() {
        let mut s = Sampler::new(SamplingOptions::greedy(1)).unwrap();
        assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0]), 1);
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative() {
        let mut s = Sampler::new(opts(|o| {
            o.temperature = 0.0;
            o.repeat_penalty = 2.0;
        }))
        .unwrap();
        s.accept(0);
        // 0: 3.0 -> 1.5 < 2.0, so 1 wins.
        assert_eq!(s.sample(&[3.0, 2.0, -1.0]), 1);
        let mut cand = vec![(0, 3.0), (1, -1.0)];
        s.accept(1);
        penalise(&s, &mut cand);
        assert_eq!(cand, vec![(0, 1.5), (1, -2.0)]);
    }

    #[test]
    fn frequency_and_presence_penalties_subtract() {
        let mut s = Sampler::new(opts(|o| {
            o.frequency_penalty = 0.5;
            o.presence_penalty = 0.25;
        }))
        .unwrap();
        s.accept(1);
        s.accept(1);
        let mut cand = vec![(0, 1.0), (1, 1.0)];
        penalise(&s, &mut cand);
        assert_eq!(cand, vec![(0, 1.0), (1, -0.25)]);
    }

    #[test]
    fn penalty_window_forgets_old_tokens() {
        let mut s = Sampler::new(opts(|o| {
            o.repeat_penalty = 2.0;
            o.penalty_last_n = 1;
        }))
        .unwrap();
        s.accept(0);
        s.accept(1);
        let mut cand = vec![(0, 4.0), (1, 4.0)];
        penalise(&s, &mut cand);
        assert_eq!(cand, vec![(0, 4.0), (1, 2.0)]);
    }

    #[test]
    fn top_k_one_is_argmax() {
        let mut s = Sampler::new(opts(|o| o.top_k = 1)).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&[1.0, 5.0, 4.9, 0.0]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // probs ≈ [0.665, 0.245, 0.090]: top-p 0.6 keeps only the first.
        let logits = [2.0, 1.0, 0.0];
        let mut s = Sampler::new(opts(|o| o.top_p = 0.6)).unwrap();
        assert!((0..100).all(|_| s.sample(&logits) == 0));
        // min-p 0.2: 0.090/0.665 < 0.2 is dropped, 0.245/0.665 kept.
        let mut s = Sampler::new(opts(|o| o.min_p = 0.2)).unwrap();
        let picks: Vec<u32> = (0..500).map(|_| s.sample(&logits)).collect();
        assert!(!picks.contains(&2) && picks.contains(&1) && picks.contains(&0));
    }

    #[test]
    fn draws_follow_the_distribution_and_the_seed() {
        let logits = [0.0, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut s = Sampler::new(opts(|o| o.seed = 5)).unwrap();
        let ones = (0..20_000).filter(|_| s.sample(&logits) == 1).count();
        assert!((ones as f64 / 20_000.0 - 0.75).abs() < 0.02, "{ones}");
        let run = |seed| {
            let mut s = Sampler::new(opts(|o| o.seed = seed)).unwrap();
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    /// The penalties applied to `(id, logit)` candidates indexed by id.
    fn penalise(s: &Sampler, cand: &mut [(u32, f32)]) {
        let mut l: Vec<f32> = cand.iter().map(|c| c.1).collect();
        apply_penalties(&s.opts, &s.window, &mut l);
        for (c, l) in cand.iter_mut().zip(l) {
            c.1 = l;
        }
    }

    /// The full-sort rule of `backend_core::select_reference` (what the GPU
    /// backends implement), fed with this sampler's window and draws: the
    /// faster host sampler must pick exactly the same tokens.
    fn reference_sample(s: &mut Sampler, logits: &[f32]) -> u32 {
        use backend_core::{select_reference, SampleSpec, SelectMode, TokenSelect};
        let o = s.opts.clone();
        let mut counts: std::collections::BTreeMap<u32, u32> = Default::default();
        for &id in &s.window {
            *counts.entry(id).or_default() += 1;
        }
        let mode = if o.temperature <= 0.0 {
            SelectMode::Greedy
        } else {
            SelectMode::Sample(SampleSpec {
                top_k: if o.top_k == 0 { logits.len() } else { o.top_k },
                top_p: o.top_p,
                min_p: o.min_p,
                temperature: o.temperature,
                uniform: s.rng.next_f64(),
            })
        };
        let spec = TokenSelect {
            softcap: None,
            penalties: counts.into_iter().collect(),
            repeat_penalty: o.repeat_penalty,
            presence_penalty: o.presence_penalty,
            frequency_penalty: o.frequency_penalty,
            mode,
        };
        select_reference(logits, &spec)
    }

    /// Same picks as the full-sort sampler for every option combination,
    /// with many equal logits (ties), penalties, negative and infinite
    /// logits, over a seeded run.
    #[test]
    fn same_picks_as_full_sort() {
        let mut gen = Rng::new(7);
        for case in 0..48 {
            let n = [1, 2, 5, 40, 41, 300, 5000][case % 7];
            let o = SamplingOptions {
                temperature: [0.0, 0.8, 1.5][case % 3],
                top_k: [0, 1, 3, 40, 5000][case % 5],
                top_p: [1.0, 0.95, 0.5][(case / 3) % 3],
                min_p: [0.0, 0.05][(case / 2) % 2],
                repeat_penalty: [1.0, 1.3][(case / 4) % 2],
                presence_penalty: [0.0, 0.5][(case / 5) % 2],
                frequency_penalty: [0.0, 0.25][(case / 6) % 2],
                penalty_last_n: 16,
                seed: case as u64,
                ..Default::default()
            };
            let mut fast = Sampler::new(o.clone()).unwrap();
            let mut slow = Sampler::new(o).unwrap();
            for step in 0..40 {
                let logits: Vec<f32> = (0..n)
                    .map(|i| match (i + step) % 11 {
                        // Coarse values: many exact ties.
                        0..=5 => (gen.next_f64() * 8.0).floor() as f32 - 4.0,
                        10 if i % 97 == 3 => f32::NEG_INFINITY,
                        _ => (gen.next_f64() * 10.0 - 5.0) as f32,
                    })
                    .collect();
                let a = fast.sample(&logits);
                let b = reference_sample(&mut slow, &logits);
                assert_eq!(a, b, "case {case}, step {step}");
                fast.accept(a);
                slow.accept(b);
            }
        }
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(Sampler::new(opts(|o| o.top_p = 1.5)).is_err());
        assert!(Sampler::new(opts(|o| o.repeat_penalty = 0.0)).is_err());
        assert!(Sampler::new(opts(|o| o.temperature = f32::NAN)).is_err());
    }
}

mod device;
