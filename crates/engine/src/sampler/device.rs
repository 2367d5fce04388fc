//! The sampler's choice expressed for the backend (see
//! [`backend_core::TokenSelect`]), so that a backend holding the logits in
//! device memory picks the token itself and only the id crosses to the host.

use super::Sampler;
use backend_core::{SampleSpec, SelectMode, TokenSelect, MAX_DEVICE_TOP_K};
use std::collections::BTreeMap;

impl Sampler {
    /// Whether [`token_select`](Self::token_select) gives a pick for these
    /// options (greedy, or `1 ≤ top_k ≤` [`MAX_DEVICE_TOP_K`]).
    pub fn selects_on_device(&self) -> bool {
        self.opts.temperature <= 0.0 || (1..=MAX_DEVICE_TOP_K).contains(&self.opts.top_k)
    }

    /// The next pick as a [`TokenSelect`], or `None` when these options can
    /// only be sampled on the host (`top_k` of 0 or above
    /// [`MAX_DEVICE_TOP_K`] with a positive temperature). A sampled pick
    /// consumes one random draw, exactly as [`Sampler::sample`] does, so a
    /// seeded run picks the same tokens on either side (given the same
    /// logits). Does not [`accept`](Sampler::accept) the token.
    pub fn token_select(&mut self) -> Option<TokenSelect> {
        let o = &self.opts;
        let mode = if o.temperature <= 0.0 {
            SelectMode::Greedy
        } else if (1..=MAX_DEVICE_TOP_K).contains(&o.top_k) {
            SelectMode::Sample(SampleSpec {
                top_k: o.top_k,
                top_p: o.top_p,
                min_p: o.min_p,
                temperature: o.temperature,
                // One draw per sampled pick, as the host sampler takes.
                uniform: self.rng.next_f64(),
            })
        } else {
            return None;
        };
        let penalised =
            o.repeat_penalty != 1.0 || o.presence_penalty != 0.0 || o.frequency_penalty != 0.0;
        let mut penalties = Vec::new();
        if penalised {
            let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
            for &id in &self.window {
                *counts.entry(id).or_default() += 1;
            }
            penalties.extend(counts);
        }
        let spec = TokenSelect {
            softcap: None,
            penalties,
            repeat_penalty: o.repeat_penalty,
            presence_penalty: o.presence_penalty,
            frequency_penalty: o.frequency_penalty,
            mode,
        };
        Some(spec)
    }
}

#[cfg(test)]
mod tests {
    use crate::sampler::{Sampler, SamplingOptions};
    use backend_core::select_reference;

    /// The host sampler and the backend rule agree on every draw of a seeded
    /// run (same logits, same seed, penalties on).
    #[test]
    fn token_select_matches_the_host_sampler() {
        let logits: Vec<f32> = (0..500u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 97.0)
            .collect();
        for opts in [
            SamplingOptions::default(),
            SamplingOptions {
                top_k: 1000,
                top_p: 0.5,
                min_p: 0.0,
                temperature: 1.3,
                repeat_penalty: 1.3,
                frequency_penalty: 0.2,
                presence_penalty: 0.1,
                seed: 7,
                ..Default::default()
            },
            SamplingOptions::greedy(10),
        ] {
            let mut host = Sampler::new(opts.clone()).unwrap();
            let mut dev = Sampler::new(opts).unwrap();
            for step in 0..200 {
                let a = host.sample(&logits);
                let spec = dev.token_select().unwrap();
                let b = select_reference(&logits, &spec);
                assert_eq!(a, b, "step {step}");
                host.accept(a);
                dev.accept(b);
            }
        }
    }

    #[test]
    fn unbounded_top_k_stays_on_the_host() {
        let mut s = Sampler::new(SamplingOptions {
            top_k: 0,
            ..Default::default()
        })
        .unwrap();
        assert!(s.token_select().is_none());
    }
}
