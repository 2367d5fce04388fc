//! Codepoint classification used by the pre-tokenizers, with llama.cpp's
//! tables (see `unicode_table.rs`) so that `\p{L}`, `\p{N}` and `\s` mean
//! exactly what they mean in the reference implementation.

use crate::unicode_table::{CATEGORY_RANGES, WHITESPACE};

/// Category bits (one per codepoint) as stored in the table.
pub(crate) mod cat {
    /// Unassigned codepoint.
    pub const UNDEFINED: u8 = 0x01;
    /// `\p{N}`.
    pub const NUMBER: u8 = 0x02;
    /// `\p{L}`.
    pub const LETTER: u8 = 0x04;
    /// `\p{Z}`.
    #[allow(dead_code)]
    pub const SEPARATOR: u8 = 0x08;
    /// `\p{M}`.
    pub const MARK: u8 = 0x10;
    /// `\p{P}`.
    pub const PUNCTUATION: u8 = 0x20;
    /// `\p{S}`.
    #[allow(dead_code)]
    pub const SYMBOL: u8 = 0x40;
    /// `\p{C}`.
    #[allow(dead_code)]
    pub const CONTROL: u8 = 0x80;
}

/// Classification of one position of a text: its category and whether it is
/// whitespace. The default value (all false, category 0) stands for "outside
/// the text", which the splitters rely on at segment boundaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// One of the [`cat`] bits, or 0 outside the text.
    pub category: u8,
    /// `\s` as llama.cpp defines it.
    pub whitespace: bool,
}

impl Flags {
    /// `\p{L}`.
    pub fn letter(self) -> bool {
        self.category & cat::LETTER != 0
    }
    /// `\p{N}`.
    pub fn number(self) -> bool {
        self.category & cat::NUMBER != 0
    }
    /// `\p{M}`.
    pub fn mark(self) -> bool {
        self.category & cat::MARK != 0
    }
    /// True for every position inside the text (any codepoint has some flag).
    pub fn present(self) -> bool {
        self.category != 0 || self.whitespace
    }
}

/// Flags of a codepoint. Codepoints past U+10FFFF are "undefined".
pub(crate) fn flags_of(cp: u32) -> Flags {
    if cp >= 0x11_0000 {
        return Flags {
            category: cat::UNDEFINED,
            whitespace: false,
        };
    }
    // Index of the last range starting at or before `cp`.
    let idx = CATEGORY_RANGES.partition_point(|&(start, _)| start <= cp);
    let category = match idx.checked_sub(1).and_then(|i| CATEGORY_RANGES.get(i)) {
        Some(&(_, c)) => c,
        None => cat::UNDEFINED,
    };
    Flags {
        category,
        whitespace: WHITESPACE.binary_search(&cp).is_ok(),
    }
}

/// The byte-level alphabet of GPT-2 style BPE: every byte maps to one
/// printable codepoint. Printable Latin-1 bytes map to themselves; the
/// others, in increasing order, to U+0100, U+0101, ...
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            b as u32
        } else {
            let cp = next;
            next += 1;
            cp
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes() {
        assert!(flags_of('a' as u32).letter());
        assert!(flags_of('Z' as u32).letter());
        assert!(flags_of('7' as u32).number());
        assert!(flags_of(' ' as u32).whitespace);
        assert!(flags_of('\n' as u32).whitespace);
        assert!(!flags_of('.' as u32).letter());
        assert_eq!(flags_of('.' as u32).category, cat::PUNCTUATION);
    }

    #[test]
    fn non_ascii_classes() {
        assert!(flags_of('é' as u32).letter());
        assert!(flags_of('中' as u32).letter());
        assert!(flags_of('\u{0301}' as u32).mark());
        assert!(flags_of('\u{00A0}' as u32).whitespace);
        assert!(flags_of('\u{3000}' as u32).whitespace);
        assert!(flags_of('٣' as u32).number());
        assert!(flags_of(0x10FFFF).present());
    }

    #[test]
    fn byte_alphabet() {
        let t = byte_to_char_table();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0xAD], '\u{0143}');
        let mut all: Vec<char> = t.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }
}
