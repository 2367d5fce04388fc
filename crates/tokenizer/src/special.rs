//! Finding special tokens written in input text. Each special token, longest
//! first, cuts every remaining text fragment at its occurrences; what is
//! left between them is tokenized normally.

use crate::tokenizer::Tokenizer;
use crate::vocab::attr;
use std::ops::Range;

/// A piece of the input: raw text (a byte range of it) or a recognised token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Text still to be tokenized.
    Text(Range<usize>),
    /// A special token found in the text.
    Token(u32),
}

/// `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Split `text` into fragments. Control and unknown tokens are only
/// recognised with `parse_special`; user-defined tokens always are.
pub(crate) fn partition(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(0..text.len())];
    let bytes = text.as_bytes();
    for &id in &tok.special_order {
        let a = tok.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = tok.texts[id as usize].as_str();
        if !text.contains(needle) {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for frag in frags {
            let Fragment::Text(mut r) = frag else {
                next.push(frag);
                continue;
            };
            loop {
                let Some(found) = text[r.clone()].find(needle) else {
                    if !r.is_empty() {
                        next.push(Fragment::Text(r));
                    }
                    break;
                };
                let at = r.start + found;
                let mut left_end = at;
                if a & attr::LSTRIP != 0 {
                    while left_end > r.start && c_space(bytes[left_end - 1]) {
                        left_end -= 1;
                    }
                }
                if left_end > r.start {
                    next.push(Fragment::Text(r.start..left_end));
                }
                next.push(Fragment::Token(id));
                let mut right_start = at + needle.len();
                if a & attr::RSTRIP != 0 {
                    while right_start < r.end && c_space(bytes[right_start]) {
                        right_start += 1;
                    }
                }
                r = right_start..r.end;
            }
        }
        frags = next;
    }
    frags
}
