//! A doubly linked chain of symbols over one string, shared by the BPE and
//! SentencePiece merge loops. Joining two neighbours grows the left one and
//! empties the right one, so indices stay valid.

/// One symbol: a byte range of the text plus its neighbours.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol {
    /// Byte offset of the symbol in the text.
    pub start: usize,
    /// Byte length (0 once joined into its left neighbour).
    pub len: usize,
    /// Index of the previous live symbol.
    pub prev: Option<usize>,
    /// Index of the next live symbol.
    pub next: Option<usize>,
}

/// The symbols of one string, initially one per character.
pub(crate) struct Chain {
    syms: Vec<Symbol>,
}

impl Chain {
    /// One symbol per character of `text`.
    pub fn from_chars(text: &str) -> Chain {
        let n = text.chars().count();
        let syms = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: if i + 1 < n { Some(i + 1) } else { None },
            })
            .collect();
        Chain { syms }
    }

    /// Number of symbols (live or not).
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// Symbol `i`.
    pub fn sym(&self, i: usize) -> Symbol {
        self.syms[i]
    }

    /// The text of `left` followed by `right` (adjacent in the text).
    pub fn joined<'t>(&self, text: &'t str, left: usize, right: usize) -> &'t str {
        let (l, r) = (self.syms[left], self.syms[right]);
        text.get(l.start..l.start + l.len + r.len).unwrap_or("")
    }

    /// Text of symbol `i`.
    pub fn text<'t>(&self, text: &'t str, i: usize) -> &'t str {
        let s = self.syms[i];
        text.get(s.start..s.start + s.len).unwrap_or("")
    }

    /// Join `right` into its left neighbour `left`.
    pub fn join(&mut self, left: usize, right: usize) {
        let r = self.syms[right];
        self.syms[left].len += r.len;
        self.syms[left].next = r.next;
        self.syms[right].len = 0;
        if let Some(n) = r.next {
            self.syms[n].prev = Some(left);
        }
    }

    /// The texts of the live symbols, in order.
    pub fn into_texts(self, text: &str) -> impl Iterator<Item = &str> {
        let mut out = Vec::new();
        let mut cur = if self.syms.is_empty() { None } else { Some(0) };
        while let Some(i) = cur {
            if self.syms[i].len > 0 {
                out.push(self.text(text, i));
            }
            cur = self.syms[i].next;
        }
        out.into_iter()
    }
}
