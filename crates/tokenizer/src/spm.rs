//! SentencePiece-style merging (`tokenizer.ggml.model = "llama"`): start from
//! single characters and repeatedly join the adjacent pair whose joined text
//! is the vocabulary token with the highest score; leftover characters that
//! are not tokens fall back to byte tokens.

use crate::merge::{Chain, Symbol};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate join of two adjacent symbols.
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Merge `text` (already whitespace-escaped) and return its symbols, each
/// either a vocabulary token or text that must fall back to bytes.
/// `lookup` gives a token's id and score.
pub(crate) fn merge(
    text: &str,
    lookup: impl Fn(&str) -> Option<f32>,
) -> impl Iterator<Item = &str> {
    let mut chain = Chain::from_chars(text);
    let mut heap = BinaryHeap::new();
    let push = |chain: &Chain,
                heap: &mut BinaryHeap<Candidate>,
                left: Option<usize>,
                right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let joined = chain.joined(text, left, right);
        if let Some(score) = lookup(joined) {
            heap.push(Candidate {
                score,
                left,
                right,
                len: joined.len(),
            });
        }
    };
    for i in 1..chain.len() {
        push(&chain, &mut heap, Some(i - 1), Some(i));
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (chain.sym(c.left), chain.sym(c.right));
        if l.len == 0 || r.len == 0 || l.len + r.len != c.len {
            continue; // stale: one side changed since this candidate was queued
        }
        chain.join(c.left, c.right);
        let Symbol { prev, next, .. } = chain.sym(c.left);
        push(&chain, &mut heap, prev, Some(c.left));
        push(&chain, &mut heap, Some(c.left), next);
    }
    chain.into_texts(text)
}
