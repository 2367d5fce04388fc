//! The tokenizer's input as plain data ([`Vocab`]), independent of GGUF, and
//! the token attributes derived from it.

/// Token type as stored in `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// 0, or any value outside the known range.
    Undefined,
    /// 1: an ordinary piece of text.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: a control token (BOS, EOS, chat markers): not rendered as text by default.
    Control,
    /// 4: a user-defined token, always matched as a whole in input text.
    UserDefined,
    /// 5: an unused slot.
    Unused,
    /// 6: a byte-fallback token `<0xXX>`.
    Byte,
}

impl TokenType {
    /// The type for a raw `token_type` value.
    pub fn from_raw(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Attribute bits (llama.cpp's `llama_token_attr`): a type plus modifiers.
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;

    /// Attribute of a token type.
    pub fn of_type(t: super::TokenType) -> u16 {
        use super::TokenType::*;
        match t {
            Undefined => 0,
            Normal => NORMAL,
            Unknown => UNKNOWN,
            Control => CONTROL,
            UserDefined => USER_DEFINED,
            Unused => UNUSED,
            Byte => BYTE,
        }
    }
}

/// Special token ids as given by the `tokenizer.ggml.*_token_id` keys
/// (`None` when the key is absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokenIds {
    /// `bos_token_id`.
    pub bos: Option<u32>,
    /// `eos_token_id`.
    pub eos: Option<u32>,
    /// `eot_token_id` (end of turn).
    pub eot: Option<u32>,
    /// `eom_token_id` (end of message).
    pub eom: Option<u32>,
    /// `unknown_token_id`.
    pub unk: Option<u32>,
    /// `seperator_token_id` (sic, the GGUF key's spelling).
    pub sep: Option<u32>,
    /// `padding_token_id`.
    pub pad: Option<u32>,
    /// `mask_token_id`.
    pub mask: Option<u32>,
    /// `fim_pre_token_id` (or the deprecated `prefix_token_id`).
    pub fim_pre: Option<u32>,
    /// `fim_suf_token_id` (or the deprecated `suffix_token_id`).
    pub fim_suf: Option<u32>,
    /// `fim_mid_token_id` (or the deprecated `middle_token_id`).
    pub fim_mid: Option<u32>,
    /// `fim_pad_token_id`.
    pub fim_pad: Option<u32>,
    /// `fim_rep_token_id`.
    pub fim_rep: Option<u32>,
    /// `fim_sep_token_id`.
    pub fim_sep: Option<u32>,
}

/// Everything a tokenizer is built from, as plain data: what the
/// `tokenizer.*` GGUF keys hold. Options are `None` when the key is absent,
/// and llama.cpp's defaults then apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer name.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the text of every token, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: SentencePiece merge scores (at least one per token).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: raw token types (at least one per token).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: BPE merges, `"left right"`, by rank.
    pub merges: Vec<String>,
    /// Special token ids from the metadata.
    pub special: SpecialTokenIds,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
    /// `general.name` (llama.cpp adjusts a few token attributes by model name).
    pub model_name: Option<String>,
}
