//! Pre-tokenizers of byte-level BPE: they cut text into words before merges
//! are applied. Each `tokenizer.ggml.pre` name selects a list of steps; every
//! step refines the segments produced by the previous one, as llama.cpp does
//! (a later step never joins across an earlier cut, and a segment boundary
//! looks like the end of the text to the step's lookahead).
//!
//! The regular expressions are those of the reference implementation; they
//! are implemented as hand-written scanners over codepoints classified with
//! llama.cpp's Unicode tables.

use crate::unicode::{cat, flags_of, Flags};
use std::ops::Range;

/// One splitting step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// The LLaMA 3 / Qwen 2 family:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?WORD+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Modern {
        /// Longest run of digits in one word (3 for LLaMA 3, 1 for Qwen 2).
        max_digits: usize,
        /// Whether combining marks belong to words (`[\p{L}\p{M}]`, Qwen 3.5).
        marks_in_words: bool,
    },
    /// Every codepoint matching `\p{N}` becomes its own segment.
    IsolateEachNumber,
    /// Maximal runs of `\p{N}` become segments.
    IsolateNumberRuns,
    /// Maximal runs of `[\p{P}\$\+<=>\^~\|]` become segments.
    IsolatePunctuationRuns,
    /// Each group of three ASCII digits (`[0-9][0-9][0-9]`, leftmost first) becomes a segment.
    AsciiDigitTriples,
}

/// A pre-tokenizer: the ordered steps named by `tokenizer.ggml.pre`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

/// Per-name settings llama.cpp derives from `tokenizer.ggml.pre`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreConfig {
    /// The splitter.
    pub pre: PreTokenizer,
    /// A word that is itself a token is emitted whole, without merges.
    pub ignore_merges: bool,
    /// Default for add_bos when the metadata does not say.
    pub add_bos: bool,
    /// llama.cpp's detokenizer clean-up of spaces before punctuation.
    pub clean_spaces: bool,
}

impl PreConfig {
    /// Settings for a pre-tokenizer name, or `None` if it is not supported.
    pub fn from_name(name: &str) -> Option<PreConfig> {
        use Step::*;
        let gpt2 = vec![Gpt2];
        let llama3 = vec![Modern {
            max_digits: 3,
            marks_in_words: false,
        }];
        let qwen2 = vec![Modern {
            max_digits: 1,
            marks_in_words: false,
        }];
        let qwen35 = vec![Modern {
            max_digits: 1,
            marks_in_words: true,
        }];
        let smollm = vec![IsolateEachNumber, Gpt2];
        let falcon = vec![IsolatePunctuationRuns, Gpt2, AsciiDigitTriples];
        let default = vec![
            IsolatePunctuationRuns,
            Gpt2,
            IsolateNumberRuns,
            AsciiDigitTriples,
        ];
        // (steps, ignore_merges, add_bos, clean_spaces)
        let (steps, ignore_merges, add_bos, clean_spaces) = match name {
            "" | "default" => (default, false, false, true),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => (llama3, true, true, true),
            "dbrx" | "smaug-bpe" => (llama3, false, false, true),
            "falcon" => (falcon, false, false, true),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (smollm, false, false, true)
            }
            "smollm" | "command-r" => (smollm, false, false, false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "exaone4" | "mpt" | "olmo" | "jais" => {
                (gpt2, false, false, true)
            }
            "trillion" | "granite-docling" => (gpt2, false, false, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
                (qwen2, false, false, false)
            }
            "stablelm2" | "megrez" => (qwen2, false, false, true),
            "qwen35" => (qwen35, false, false, false),
            _ => return None,
        };
        Some(PreConfig {
            pre: PreTokenizer { steps },
            ignore_merges,
            add_bos,
            clean_spaces,
        })
    }
}

impl PreTokenizer {
    /// Split `text` into words (as codepoint ranges of `cps`).
    pub fn split(&self, cps: &[char]) -> Vec<Range<usize>> {
        let mut segments = if cps.is_empty() {
            Vec::new()
        } else {
            std::iter::once(0..cps.len()).collect()
        };
        for step in &self.steps {
            let mut next = Vec::with_capacity(segments.len());
            for seg in segments {
                apply(*step, cps, seg, &mut next);
            }
            segments = next;
        }
        segments
    }
}

fn apply(step: Step, cps: &[char], seg: Range<usize>, out: &mut Vec<Range<usize>>) {
    match step {
        Step::Gpt2 => gpt2(&Cursor::new(cps, seg), out),
        Step::Modern {
            max_digits,
            marks_in_words,
        } => modern(&Cursor::new(cps, seg), max_digits, marks_in_words, out),
        Step::IsolateEachNumber => isolate(cps, seg, collapsed_number, false, out),
        Step::IsolateNumberRuns => isolate(cps, seg, collapsed_number, true, out),
        Step::IsolatePunctuationRuns => isolate(cps, seg, collapsed_punct_class, true, out),
        Step::AsciiDigitTriples => digit_triples(cps, seg, out),
    }
}

/// `\p{N}` as llama.cpp's fallback regex engine sees it: ASCII digits, or a
/// non-ASCII, non-whitespace codepoint whose category is "number".
fn collapsed_number(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let f = flags_of(c as u32);
    !f.whitespace && f.category == cat::NUMBER
}

/// `[\p{P}\$\+<=>\^~\|]` as the fallback engine sees it: ASCII punctuation
/// and symbols except the backtick, or non-ASCII punctuation.
fn collapsed_punct_class(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation() && c != '`';
    }
    let f = flags_of(c as u32);
    !f.whitespace && f.category == cat::PUNCTUATION
}

/// Cut `seg` so that matches of `pred` (single codepoints, or maximal runs
/// when `runs`) become segments of their own; the text between matches stays
/// as separate segments.
fn isolate(
    cps: &[char],
    seg: Range<usize>,
    pred: fn(char) -> bool,
    runs: bool,
    out: &mut Vec<Range<usize>>,
) {
    let mut gap_start = seg.start;
    let mut i = seg.start;
    while i < seg.end {
        if pred(cps[i]) {
            let mut j = i + 1;
            if runs {
                while j < seg.end && pred(cps[j]) {
                    j += 1;
                }
            }
            if i > gap_start {
                out.push(gap_start..i);
            }
            out.push(i..j);
            gap_start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    if gap_start < seg.end {
        out.push(gap_start..seg.end);
    }
}

fn digit_triples(cps: &[char], seg: Range<usize>, out: &mut Vec<Range<usize>>) {
    let mut gap_start = seg.start;
    let mut i = seg.start;
    while i < seg.end {
        if i + 3 <= seg.end && cps[i..i + 3].iter().all(|c| c.is_ascii_digit()) {
            if i > gap_start {
                out.push(gap_start..i);
            }
            out.push(i..i + 3);
            gap_start = i + 3;
            i += 3;
        } else {
            i += 1;
        }
    }
    if gap_start < seg.end {
        out.push(gap_start..seg.end);
    }
}

/// Read access to one segment; positions outside it read as "no codepoint".
struct Cursor<'a> {
    cps: &'a [char],
    seg: Range<usize>,
}

/// Codepoint value used for positions outside the segment.
const OUTSIDE: u32 = u32::MAX;

impl<'a> Cursor<'a> {
    fn new(cps: &'a [char], seg: Range<usize>) -> Self {
        Cursor { cps, seg }
    }
    fn cp(&self, pos: usize) -> u32 {
        if self.seg.contains(&pos) {
            self.cps[pos] as u32
        } else {
            OUTSIDE
        }
    }
    fn flags(&self, pos: usize) -> Flags {
        if self.seg.contains(&pos) {
            flags_of(self.cps[pos] as u32)
        } else {
            Flags::default()
        }
    }
    /// Length of a contraction (`'s`, `'re`, ...) starting at `pos`, if any.
    fn contraction(&self, pos: usize, fold_case: bool) -> Option<usize> {
        if self.cp(pos) != '\'' as u32 || pos + 1 >= self.seg.end {
            return None;
        }
        let lower = |c: u32| {
            if fold_case && (b'A' as u32..=b'Z' as u32).contains(&c) {
                c + 32
            } else {
                c
            }
        };
        let a = lower(self.cp(pos + 1));
        if [b's', b't', b'm', b'd'].iter().any(|&x| x as u32 == a) {
            return Some(2);
        }
        if pos + 2 < self.seg.end {
            let b = lower(self.cp(pos + 2));
            let pair = |x: u8, y: u8| a == x as u32 && b == y as u32;
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return Some(3);
            }
        }
        None
    }
    /// Number of whitespace codepoints starting at `pos`, and the position just
    /// after the last `\r` or `\n` among them (0 if none).
    fn whitespace_run(&self, pos: usize) -> (usize, usize) {
        let mut n = 0;
        let mut after_newline = 0;
        while self.flags(pos + n).whitespace {
            let c = self.cp(pos + n);
            if c == '\r' as u32 || c == '\n' as u32 {
                after_newline = pos + n + 1;
            }
            n += 1;
        }
        (n, after_newline)
    }
}

/// Appends each word as a range; `end` positions only grow.
struct Words<'o> {
    out: &'o mut Vec<Range<usize>>,
    last: usize,
}

impl Words<'_> {
    fn cut(&mut self, end: usize) {
        if end > self.last {
            self.out.push(self.last..end);
        }
        self.last = end;
    }
}

fn is_space(c: u32) -> bool {
    c == ' ' as u32
}

fn is_newline(c: u32) -> bool {
    c == '\r' as u32 || c == '\n' as u32
}

fn gpt2(t: &Cursor, out: &mut Vec<Range<usize>>) {
    let mut w = Words {
        out,
        last: t.seg.start,
    };
    let mut pos = t.seg.start;
    while pos < t.seg.end {
        if let Some(n) = t.contraction(pos, false) {
            pos += n;
            w.cut(pos);
            continue;
        }
        let c = t.cp(pos);
        // The class is decided by the codepoint after an optional leading space.
        let head = if is_space(c) {
            t.flags(pos + 1)
        } else {
            t.flags(pos)
        };
        let class: Option<fn(Flags) -> bool> = if head.letter() {
            Some(Flags::letter)
        } else if head.number() {
            Some(Flags::number)
        } else if !(head.whitespace || head.letter() || head.number()) && head.present() {
            Some(|f: Flags| !(f.whitespace || f.letter() || f.number()) && f.present())
        } else {
            None
        };
        if let Some(class) = class {
            if is_space(c) {
                pos += 1;
            }
            while class(t.flags(pos)) {
                pos += 1;
            }
            w.cut(pos);
            continue;
        }
        let (n, _) = t.whitespace_run(pos);
        if n > 1 && t.cp(pos + n) != OUTSIDE {
            // \s+(?!\S): leave the last whitespace to the following word
            pos += n - 1;
        } else if n > 0 {
            pos += n;
        } else {
            pos += 1;
        }
        w.cut(pos);
    }
}

fn modern(t: &Cursor, max_digits: usize, marks_in_words: bool, out: &mut Vec<Range<usize>>) {
    let word = |f: Flags| f.letter() || (marks_in_words && f.mark());
    let mut w = Words {
        out,
        last: t.seg.start,
    };
    let mut pos = t.seg.start;
    while pos < t.seg.end {
        if let Some(n) = t.contraction(pos, true) {
            pos += n;
            w.cut(pos);
            continue;
        }
        let c = t.cp(pos);
        let f = t.flags(pos);
        // [^\r\n\p{L}\p{N}]?WORD+
        if !(is_newline(c) || f.number()) && (word(f) || word(t.flags(pos + 1))) {
            pos += 1;
            while word(t.flags(pos)) {
                pos += 1;
            }
            w.cut(pos);
            continue;
        }
        // \p{N}{1,max_digits}
        if f.number() {
            let mut run_start = pos;
            while t.flags(pos).number() {
                pos += 1;
                if pos - run_start >= max_digits {
                    w.cut(pos);
                    run_start = pos;
                }
            }
            w.cut(pos);
            continue;
        }
        // ' '?[^\s\p{L}\p{N}]+[\r\n]*  (the "present" test is on the first codepoint)
        let other = |g: Flags| !(g.whitespace || word(g) || g.number());
        let head = if is_space(c) { t.flags(pos + 1) } else { f };
        if other(head) && f.present() {
            if is_space(c) {
                pos += 1;
            }
            while other(t.flags(pos)) && t.flags(pos).present() {
                pos += 1;
            }
            while is_newline(t.cp(pos)) {
                pos += 1;
            }
            w.cut(pos);
            continue;
        }
        let (n, after_newline) = t.whitespace_run(pos);
        if after_newline > 0 {
            // \s*[\r\n]+
            pos = after_newline;
        } else if n > 1 && t.cp(pos + n) != OUTSIDE {
            // \s+(?!\S)
            pos += n - 1;
        } else if n > 0 {
            pos += n;
        } else {
            pos += 1;
        }
        w.cut(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: &str, text: &str) -> Vec<String> {
        let cfg = PreConfig::from_name(pre).unwrap();
        let cps: Vec<char> = text.chars().collect();
        cfg.pre
            .split(&cps)
            .into_iter()
            .map(|r| cps[r].iter().collect())
            .collect()
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            words("gpt-2", "Hello world's  end"),
            ["Hello", " world", "'s", " ", " end"]
        );
        assert_eq!(words("gpt-2", "a  "), ["a", "  "]);
        assert_eq!(words("gpt-2", "x 123!?"), ["x", " 123", "!?"]);
    }

    #[test]
    fn smollm_isolates_digits() {
        assert_eq!(
            words("smollm", "abc 1234"),
            ["abc", " ", "1", "2", "3", "4"]
        );
    }

    #[test]
    fn llama3_words() {
        assert_eq!(
            words("llama-bpe", "Hello  world\n\n 12345 I'M"),
            ["Hello", " ", " world", "\n\n", " ", "123", "45", " I", "'M"]
        );
    }

    #[test]
    fn qwen2_single_digits() {
        assert_eq!(words("qwen2", "ab 12"), ["ab", " ", "1", "2"]);
    }

    #[test]
    fn default_steps() {
        assert_eq!(
            words("default", "a+b 12345"),
            ["a", "+", "b", " ", "123", "45"]
        );
    }

    #[test]
    fn segments_cover_text() {
        for pre in [
            "gpt-2", "smollm", "llama3", "qwen2", "qwen35", "default", "falcon",
        ] {
            let text = "  ab\r\n\t12 345 ✓ ...é\u{0301}  x  ";
            assert_eq!(words(pre, text).concat(), text, "{pre}");
        }
    }
}
