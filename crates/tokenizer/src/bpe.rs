//! Byte-level BPE merging (`tokenizer.ggml.model = "gpt2"`): within one
//! pre-tokenized word, repeatedly join the adjacent pair with the lowest merge
//! rank.

use crate::merge::{Chain, Symbol};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// Merge ranks keyed by `left ++ 0xFF ++ right` (0xFF never occurs in UTF-8,
/// so the key is unambiguous and can be built without allocating per lookup).
#[derive(Clone, Debug, Default)]
pub(crate) struct Ranks {
    map: HashMap<Vec<u8>, u32>,
}

impl Ranks {
    /// Parse merges `"left right"` (split at the first space after the first
    /// byte); the first occurrence of a pair keeps its rank.
    pub fn from_merges(merges: &[String]) -> Ranks {
        let mut map = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let space = m.as_bytes().iter().skip(1).position(|&b| b == b' ');
            let (left, right) = match space {
                Some(p) => (&m[..p + 1], &m[p + 2..]),
                None => ("", ""),
            };
            map.entry(Self::key(left, right)).or_insert(rank as u32);
        }
        Ranks { map }
    }

    fn key(left: &str, right: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(left.len() + right.len() + 1);
        k.extend_from_slice(left.as_bytes());
        k.push(0xFF);
        k.extend_from_slice(right.as_bytes());
        k
    }

    fn rank(&self, key: &mut Vec<u8>, left: &str, right: &str) -> Option<u32> {
        key.clear();
        key.extend_from_slice(left.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(right.as_bytes());
        self.map.get(key.as_slice()).copied()
    }

    /// Number of distinct merge pairs.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

struct Candidate {
    rank: u32,
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
    /// Max-heap order: lowest rank first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Merge one (byte-encoded) word; returns the texts of the final symbols.
pub(crate) fn merge<'w>(word: &'w str, ranks: &Ranks) -> impl Iterator<Item = &'w str> {
    let mut chain = Chain::from_chars(word);
    let mut heap = BinaryHeap::new();
    let mut key = Vec::new();
    let mut push = |chain: &Chain,
                    heap: &mut BinaryHeap<Candidate>,
                    left: Option<usize>,
                    right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (lt, rt) = (chain.text(word, left), chain.text(word, right));
        if let Some(rank) = ranks.rank(&mut key, lt, rt) {
            heap.push(Candidate {
                rank,
                left,
                right,
                len: lt.len() + rt.len(),
            });
        }
    };
    for i in 1..chain.len() {
        push(&chain, &mut heap, Some(i - 1), Some(i));
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (chain.sym(c.left), chain.sym(c.right));
        if l.len == 0 || r.len == 0 || l.len + r.len != c.len {
            continue; // stale
        }
        chain.join(c.left, c.right);
        let Symbol { prev, next, .. } = chain.sym(c.left);
        push(&chain, &mut heap, prev, Some(c.left));
        push(&chain, &mut heap, Some(c.left), next);
    }
    chain.into_texts(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_rank() {
        let ranks = Ranks::from_merges(&["a b".into(), "b c".into(), "ab c".into()]);
        let out: Vec<&str> = merge("abc", &ranks).collect();
        assert_eq!(out, ["abc"]);
        let ranks = Ranks::from_merges(&["b c".into(), "a b".into()]);
        let out: Vec<&str> = merge("abc", &ranks).collect();
        assert_eq!(out, ["a", "bc"]);
    }

    #[test]
    fn odd_merge_lines() {
        let ranks = Ranks::from_merges(&[" x y".into(), "nospace".into(), "Ġ t".into()]);
        assert_eq!(ranks.len(), 3);
        let mut key = Vec::new();
        assert_eq!(ranks.rank(&mut key, " x", "y"), Some(0));
        assert_eq!(ranks.rank(&mut key, "", ""), Some(1));
        assert_eq!(ranks.rank(&mut key, "Ġ", "t"), Some(2));
    }
}
