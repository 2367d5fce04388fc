//! [`Tokenizer`]: built from a [`Vocab`], it encodes text to token ids and
//! renders ids back to bytes exactly as llama.cpp does.

use crate::bpe::{self, Ranks};
use crate::error::TokenizerError;
use crate::pretokenize::PreConfig;
use crate::unicode::byte_to_char_table;
use crate::vocab::{attr, SpecialTokenIds, TokenType, Vocab};
use crate::{special, spm};
use std::collections::{BTreeSet, HashMap};

/// Which algorithm turns text into tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece (`tokenizer.ggml.model = "llama"`): score-driven merges, byte fallback.
    SentencePiece,
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) with the named pre-tokenizer.
    BytePairEncoding {
        /// `tokenizer.ggml.pre` (`"default"` when absent).
        pre: String,
    },
}

/// A tokenizer built from GGUF metadata. Cheap to share (`&Tokenizer` is all
/// the methods need); build it once per model.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    pub(crate) kind: TokenizerKind,
    pub(crate) texts: Vec<String>,
    pub(crate) ids: HashMap<String, u32>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u16>,
    pub(crate) ranks: Ranks,
    pub(crate) pre: Option<PreConfig>,
    /// Resolved special token ids (llama.cpp's defaults applied).
    pub(crate) specials: SpecialTokenIds,
    pub(crate) eog: BTreeSet<u32>,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) clean_spaces: bool,
    /// Control, user-defined and unknown tokens, longest text first: the
    /// order in which input text is searched for them.
    pub(crate) special_order: Vec<u32>,
    /// `token_to_piece(id, special = true)` for every id.
    pub(crate) pieces: Vec<Vec<u8>>,
    pub(crate) byte_chars: [char; 256],
}

/// Texts llama.cpp recognises as end-of-turn tokens when no id is given.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts that always end generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

impl Tokenizer {
    /// Build a tokenizer from plain vocabulary data, applying llama.cpp's
    /// defaults for whatever the metadata leaves out.
    pub fn new(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        let n = vocab.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        let (kind, pre, mut sp, mut add_bos, mut add_space_prefix, clean_spaces) =
            match vocab.model.as_str() {
                "llama" => {
                    let sp = SpecialTokenIds {
                        bos: Some(1),
                        eos: Some(2),
                        unk: Some(0),
                        ..Default::default()
                    };
                    (TokenizerKind::SentencePiece, None, sp, true, true, false)
                }
                "gpt2" => {
                    let name = vocab.pre.clone().unwrap_or_else(|| "default".to_string());
                    let cfg = PreConfig::from_name(&name)
                        .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(name.clone()))?;
                    let sp = SpecialTokenIds {
                        bos: Some(11),
                        eos: Some(11),
                        ..Default::default()
                    };
                    let (add_bos, clean) = (cfg.add_bos, cfg.clean_spaces);
                    (
                        TokenizerKind::BytePairEncoding { pre: name },
                        Some(cfg),
                        sp,
                        add_bos,
                        false,
                        clean,
                    )
                }
                other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
            };
        if let Some(v) = vocab.add_space_prefix {
            add_space_prefix = v;
        }
        let scores = match &vocab.scores {
            Some(s) if s.len() < n => {
                return Err(invalid(
                    "tokenizer.ggml.scores",
                    format!("{} scores for {n} tokens", s.len()),
                ))
            }
            Some(s) => s[..n].to_vec(),
            None => vec![0.0; n],
        };
        let mut attrs = match &vocab.token_types {
            Some(t) if t.len() < n => {
                return Err(invalid(
                    "tokenizer.ggml.token_type",
                    format!("{} types for {n} tokens", t.len()),
                ))
            }
            Some(t) => t[..n]
                .iter()
                .map(|&v| attr::of_type(TokenType::from_raw(v)))
                .collect(),
            None => vec![attr::NORMAL; n],
        };
        let texts: Vec<String> = vocab
            .tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t
                }
            })
            .collect();
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in texts.iter().enumerate() {
            ids.insert(t.clone(), i as u32);
        }

        // Special ids: defaults outside the vocabulary are dropped; metadata
        // ids outside it are ignored (the default stays).
        let m = &vocab.special;
        let n32 = n as u32;
        let slots: [(&mut Option<u32>, Option<u32>); 14] = [
            (&mut sp.bos, m.bos),
            (&mut sp.eos, m.eos),
            (&mut sp.eot, m.eot),
            (&mut sp.eom, m.eom),
            (&mut sp.unk, m.unk),
            (&mut sp.sep, m.sep),
            (&mut sp.pad, m.pad),
            (&mut sp.mask, m.mask),
            (&mut sp.fim_pre, m.fim_pre),
            (&mut sp.fim_suf, m.fim_suf),
            (&mut sp.fim_mid, m.fim_mid),
            (&mut sp.fim_pad, m.fim_pad),
            (&mut sp.fim_rep, m.fim_rep),
            (&mut sp.fim_sep, m.fim_sep),
        ];
        for (slot, given) in slots {
            if slot.is_some_and(|id| id >= n32) {
                *slot = None;
            }
            if let Some(id) = given.filter(|&id| id < n32) {
                *slot = Some(id);
            }
        }
        let mut add_eos = false;
        if let Some(v) = vocab.add_bos {
            add_bos = v;
        }
        if let Some(v) = vocab.add_eos {
            add_eos = v;
        }

        // Tokens visited in id order, skipping ids whose text is shadowed by a
        // later duplicate (llama.cpp iterates its text -> id map).
        let live = |i: usize| ids.get(&texts[i]) == Some(&(i as u32));
        let mark_control = |attrs: &mut Vec<u16>, i: usize| attrs[i] |= attr::CONTROL;
        let detect: [(&mut Option<u32>, &[&str]); 8] = [
            (&mut sp.eot, EOT_TEXTS),
            (&mut sp.eom, EOM_TEXTS),
            (&mut sp.fim_pre, FIM_PRE_TEXTS),
            (&mut sp.fim_suf, FIM_SUF_TEXTS),
            (&mut sp.fim_mid, FIM_MID_TEXTS),
            (&mut sp.fim_pad, FIM_PAD_TEXTS),
            (&mut sp.fim_rep, FIM_REP_TEXTS),
            (&mut sp.fim_sep, FIM_SEP_TEXTS),
        ];
        for (slot, names) in detect {
            if slot.is_some() {
                continue;
            }
            if let Some(i) = (0..n).find(|&i| live(i) && names.contains(&texts[i].as_str())) {
                *slot = Some(i as u32);
                mark_control(&mut attrs, i);
            }
        }
        for (i, a) in attrs.iter_mut().enumerate() {
            if *a & attr::CONTROL != 0 && texts[i].contains("unused") && live(i) {
                *a |= attr::UNUSED;
            }
        }
        let mut eog = BTreeSet::new();
        eog.extend(sp.fim_pad);
        eog.extend(sp.fim_rep);
        eog.extend(sp.fim_sep);
        for (i, text) in texts.iter().enumerate() {
            if live(i) && EOG_TEXTS.contains(&text.as_str()) {
                eog.insert(i as u32);
                mark_control(&mut attrs, i);
            }
        }
        const ALWAYS_RENDERED: [&str; 4] =
            ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];
        for (i, text) in texts.iter().enumerate() {
            if live(i) && ALWAYS_RENDERED.contains(&text.as_str()) {
                attrs[i] = attr::USER_DEFINED;
            }
        }
        eog.extend(sp.eos);
        eog.extend(sp.eot);
        eog.extend(sp.eom);
        let eog_with = |eog: &BTreeSet<u32>, names: &[&str]| {
            eog.iter()
                .copied()
                .find(|&id| names.contains(&texts[id as usize].as_str()))
        };
        // When both <|return|> and <|call|> (or <|calls|> and <|flush|>) exist, <|end|> is not EOG.
        let has_call = eog_with(&eog, &["<|call|>", "<|calls|>"]).is_some();
        let has_return = eog_with(&eog, &["<|return|>"]).is_some();
        let has_flush = eog_with(&eog, &["<|flush|>"]).is_some();
        if let Some(end) = eog_with(&eog, &["<|end|>"]) {
            if has_call && (has_return || has_flush) {
                eog.remove(&end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        // Where </s> is an ordinary token (Gemma 4, PLaMo), it is not EOG.
        if eog_with(&eog, &["<|tool_response>", "<|plamo:eos|>"]).is_some() {
            if let Some(s) = eog_with(&eog, &["</s>"]) {
                eog.remove(&s);
                attrs[s as usize] = attr::NORMAL;
            }
        }

        let mut special_order: Vec<u32> = (0..n32)
            .filter(|&i| {
                attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_order.sort_by(|&a, &b| texts[b as usize].len().cmp(&texts[a as usize].len()));

        let ranks = Ranks::from_merges(&vocab.merges);
        let mut tok = Tokenizer {
            kind,
            texts,
            ids,
            scores,
            attrs,
            ranks,
            pre,
            specials: sp,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            special_order,
            pieces: Vec::new(),
            byte_chars: byte_to_char_table(),
        };
        tok.pieces = (0..n).map(|i| tok.render_piece(i)).collect();

        // Per-model attribute tweaks llama.cpp applies by name.
        let name = vocab.model_name.unwrap_or_default().to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &tok.special_order {
                tok.attrs[id as usize] |= attr::RSTRIP;
            }
            if let Some(&id) = tok.ids.get("</s>") {
                tok.attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = tok.ids.get(t) {
                    tok.attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }
        Ok(tok)
    }

    /// Encode `text` to token ids.
    ///
    /// `add_special` adds BOS/EOS as the model's metadata asks
    /// ([`add_bos`](Self::add_bos)); `parse_special` lets control tokens
    /// written in the text (such as `<|im_start|>`) be recognised as single
    /// tokens (user-defined tokens are always recognised), exactly as
    /// llama.cpp's `llama_tokenize`.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let fragments = special::partition(self, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.push(
                self.specials
                    .bos
                    .ok_or(TokenizerError::MissingSpecialToken("BOS"))?,
            );
        }
        match &self.kind {
            TokenizerKind::SentencePiece => {
                let mut after_special = true;
                for frag in fragments {
                    match frag {
                        special::Fragment::Text(r) => {
                            let mut s = String::with_capacity(r.len() + 4);
                            if self.add_space_prefix && after_special {
                                s.push(' ');
                            }
                            s.push_str(&text[r]);
                            let escaped = s.replace(' ', "\u{2581}");
                            self.encode_spm(&escaped, &mut out)?;
                            after_special = false;
                        }
                        special::Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
            TokenizerKind::BytePairEncoding { .. } => {
                for frag in fragments {
                    match frag {
                        special::Fragment::Text(r) => self.encode_bpe(&text[r], &mut out),
                        special::Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(
                self.specials
                    .eos
                    .ok_or(TokenizerError::MissingSpecialToken("EOS"))?,
            );
        }
        Ok(out)
    }

    fn encode_spm(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let lookup = |s: &str| self.ids.get(s).map(|&id| self.scores[id as usize]);
        for piece in spm::merge(text, lookup) {
            if let Some(&id) = self.ids.get(piece) {
                out.push(id);
                continue;
            }
            for &b in piece.as_bytes() {
                out.push(self.spm_byte_token(b)?);
            }
        }
        Ok(())
    }

    /// The token for one byte in SentencePiece byte fallback: `<0xXX>`, or
    /// else a token whose text is that single byte.
    fn spm_byte_token(&self, b: u8) -> Result<u32, TokenizerError> {
        if let Some(&id) = self.ids.get(&format!("<0x{b:02X}>")) {
            return Ok(id);
        }
        if b.is_ascii() {
            if let Some(&id) = self.ids.get(&(b as char).to_string()) {
                return Ok(id);
            }
        }
        Err(TokenizerError::MissingByteToken(b))
    }

    fn encode_bpe(&self, text: &str, out: &mut Vec<u32>) {
        let Some(cfg) = &self.pre else { return };
        let cps: Vec<char> = text.chars().collect();
        let mut word = String::new();
        let mut utf8 = [0u8; 4];
        for range in cfg.pre.split(&cps) {
            word.clear();
            for c in &cps[range] {
                for &b in c.encode_utf8(&mut utf8).as_bytes() {
                    word.push(self.byte_chars[b as usize]);
                }
            }
            if cfg.ignore_merges {
                if let Some(&id) = self.ids.get(word.as_str()) {
                    out.push(id);
                    continue;
                }
            }
            for piece in bpe::merge(&word, &self.ranks) {
                if let Some(&id) = self.ids.get(piece) {
                    out.push(id);
                    continue;
                }
                // Unknown piece: llama.cpp tries each raw byte as a token and
                // silently drops the ones that are not.
                for &b in piece.as_bytes() {
                    if b.is_ascii() {
                        let mut buf = [0u8; 4];
                        if let Some(&id) = self.ids.get(&*(b as char).encode_utf8(&mut buf)) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    /// Which algorithm this tokenizer uses.
    pub fn kind(&self) -> &TokenizerKind {
        &self.kind
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// Beginning-of-sequence token, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.specials.bos
    }

    /// End-of-sequence token, if the model has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.specials.eos
    }

    /// End-of-turn token (given or detected by its text), if any.
    pub fn eot_id(&self) -> Option<u32> {
        self.specials.eot
    }

    /// Padding token, if any.
    pub fn pad_id(&self) -> Option<u32> {
        self.specials.pad
    }

    /// Unknown token, if any.
    pub fn unk_id(&self) -> Option<u32> {
        self.specials.unk
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether SentencePiece encoding prefixes text with a space.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether `id` ends generation (EOS, EOT, EOM and the tokens llama.cpp
    /// recognises by their text, such as `<|im_end|>` or `<end_of_turn>`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    /// Whether `id` is a control token (not rendered as text by default).
    pub fn is_control(&self, id: u32) -> bool {
        self.attr(id) & attr::CONTROL != 0
    }

    /// The raw text of token `id` as stored in the vocabulary (with `▁` or
    /// byte-level characters), or `None` when out of range.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The id of the token whose raw text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }
}

fn invalid(key: &str, reason: String) -> TokenizerError {
    TokenizerError::InvalidKey {
        key: key.to_string(),
        reason,
    }
}
