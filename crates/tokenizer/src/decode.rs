//! Token ids back to text: per-token pieces, whole-sequence detokenization,
//! and a streaming decoder that only ever emits complete UTF-8 characters.

use crate::tokenizer::{Tokenizer, TokenizerKind};
use crate::vocab::attr;

impl Tokenizer {
    /// The piece of `id` with special tokens rendered (computed once at build).
    pub(crate) fn render_piece(&self, i: usize) -> Vec<u8> {
        let a = self.attrs[i];
        let text = &self.texts[i];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match self.kind {
                TokenizerKind::SentencePiece => text.replace('\u{2581}', " ").into_bytes(),
                TokenizerKind::BytePairEncoding { .. } => self.byte_level_decode(text),
            };
        }
        if a & attr::BYTE != 0 {
            return vec![byte_token_value(text)];
        }
        Vec::new()
    }

    /// Undo the byte-level alphabet; a character outside it is written as
    /// `[UNK_BYTE_0x..<token text>]` as llama.cpp does.
    fn byte_level_decode(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.byte_chars.iter().position(|&bc| bc == c) {
                Some(b) => out.push(b as u8),
                None => {
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out.extend_from_slice(text.as_bytes());
                    out.push(b']');
                }
            }
        }
        out
    }

    /// The bytes token `id` stands for, as llama.cpp's `llama_token_to_piece`
    /// (no leading-space stripping). Control and unknown tokens give their
    /// text only when `special` is true; unused and undefined tokens give
    /// nothing; an id outside the vocabulary gives nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        let a = self.attr(id);
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The text of `ids`: their pieces (control tokens not rendered)
    /// concatenated, invalid UTF-8 replaced by U+FFFD. This is what printing
    /// each generated token's piece produces, and what [`StreamDecoder`]
    /// emits in total.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, false)
    }

    /// Like [`decode`](Self::decode), choosing whether control tokens are rendered.
    pub fn decode_with(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_to_piece(id, special));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// llama.cpp's `llama_detokenize`: optionally drops a leading BOS and a
    /// trailing EOS (`remove_special`, when the model adds them), removes the
    /// space SentencePiece prefixed, renders control tokens when
    /// `unparse_special`, and applies the model's space clean-up.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let mut ids = ids;
        let mut strip_space = self.add_space_prefix;
        if remove_special && self.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), self.specials.bos) {
                if first == bos {
                    strip_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if remove_special && self.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), self.specials.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut text = Vec::new();
        for &id in ids {
            let mut piece = self.token_to_piece(id, unparse_special);
            if strip_space {
                if let Some(rest) = piece.strip_prefix(b" ") {
                    piece = rest;
                }
            }
            strip_space = false;
            text.extend_from_slice(piece);
        }
        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        text
    }
}

/// The value of a byte token `<0xXX>`: the hex digits at offsets 3..5, read
/// as far as they are hex (like `strtol`), truncated to a byte.
fn byte_token_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..text.len().min(5)).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// The three clean-up passes of llama.cpp's detokenizer for models with
/// `clean_up_tokenization_spaces`: drop the space before `?!.,`, collapse
/// ` ' ` to `'`, and join ` 's`, ` 'm`, ` 're`, ` 've` to the word before.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // pass 1: " ?" " !" " ." " ," -> drop the space
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // pass 2: " ' " -> "'": drop both spaces around a lone apostrophe (the
    // dropped right space no longer counts as a space for the next check)
    let mut src = std::mem::take(&mut out);
    let mut i = 0;
    while i < src.len() {
        let x = src[i];
        if i > 0 && x == b'\'' && i + 1 < src.len() && src[i - 1] == b' ' && src[i + 1] == b' ' {
            out.pop();
            out.push(x);
            src[i + 1] = 0;
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // pass 3: " 's" " 'm" " 're" " 've" -> drop the space
    let src = std::mem::take(&mut out);
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && x == b'\'' && i + 1 < src.len() {
            let x1 = src[i + 1];
            let x2 = src.get(i + 2).copied();
            let join = matches!(x1, b's' | b'm')
                || (i + 2 < src.len()
                    && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if join {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

/// Turns a stream of token ids into text pieces without ever splitting a
/// UTF-8 character: bytes of an incomplete character wait for the next token.
/// Bytes that can never form a character are emitted as U+FFFD.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    pending: Vec<u8>,
    special: bool,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder that does not render control tokens (as [`Tokenizer::decode`]).
    pub fn new(tok: &'t Tokenizer) -> Self {
        StreamDecoder {
            tok,
            pending: Vec::new(),
            special: false,
        }
    }

    /// Choose whether control tokens are rendered as their text.
    pub fn with_special(mut self, special: bool) -> Self {
        self.special = special;
        self
    }

    /// Add one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tok.token_to_piece(id, self.special);
        self.push_bytes(piece)
    }

    /// Add raw bytes; returns the text that is now complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix is valid UTF-8 per `valid_up_to`.
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            rest = &rest[valid + bad..];
                        }
                        None => {
                            rest = &rest[valid..];
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Emit whatever is still buffered (an incomplete character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes waiting for the rest of their character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up() {
        let mut t = b"Hello , world ! it 's a ' b ' we 're".to_vec();
        clean_up_spaces(&mut t);
        assert_eq!(
            String::from_utf8(t).unwrap(),
            "Hello, world! it's a'b'we're"
        );
    }

    #[test]
    fn byte_values() {
        assert_eq!(byte_token_value("<0x0A>"), 10);
        assert_eq!(byte_token_value("<0xFF>"), 255);
        assert_eq!(byte_token_value("<0x"), 0);
    }
}
