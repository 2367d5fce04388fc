//! Reading a [`Vocab`] from GGUF metadata (`tokenizer.*` keys).

use crate::chat::ChatTemplate;
use crate::error::TokenizerError;
use crate::tokenizer::Tokenizer;
use crate::vocab::{SpecialTokenIds, Vocab};
use gguf_format::{Gguf, GgufError, ValueType};

/// Key of the chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

fn gguf_err(e: GgufError) -> TokenizerError {
    TokenizerError::Gguf(e.to_string())
}

impl Vocab {
    /// Read the tokenizer metadata of a GGUF file.
    pub fn from_gguf<S: AsRef<[u8]>>(g: &Gguf<S>) -> Result<Vocab, TokenizerError> {
        let model = g
            .get_str_opt("tokenizer.ggml.model")
            .map_err(gguf_err)?
            .ok_or_else(|| TokenizerError::MissingKey("tokenizer.ggml.model".into()))?
            .to_string();
        let pre = g
            .get_str_opt("tokenizer.ggml.pre")
            .map_err(gguf_err)?
            .map(str::to_string);
        let tokens_view = g
            .get_array_opt("tokenizer.ggml.tokens")
            .map_err(gguf_err)?
            .ok_or_else(|| TokenizerError::MissingKey("tokenizer.ggml.tokens".into()))?;
        let tokens: Vec<String> = tokens_view
            .try_strings()
            .map_err(gguf_err)?
            .map(str::to_string)
            .collect();
        let scores = match g.get_array_opt("tokenizer.ggml.scores").map_err(gguf_err)? {
            None => None,
            Some(a) if a.elem_type() == ValueType::I32 => Some(
                a.to_i32_vec()
                    .map_err(gguf_err)?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
            ),
            Some(a) => Some(a.to_f32_vec().map_err(gguf_err)?),
        };
        let token_types = match g
            .get_array_opt("tokenizer.ggml.token_type")
            .map_err(gguf_err)?
        {
            None => None,
            Some(a) => Some(a.to_i32_vec().map_err(gguf_err)?),
        };
        let merges = match g.get_array_opt("tokenizer.ggml.merges").map_err(gguf_err)? {
            None if model == "gpt2" => {
                return Err(TokenizerError::MissingKey("tokenizer.ggml.merges".into()))
            }
            None => Vec::new(),
            Some(a) => a
                .try_strings()
                .map_err(gguf_err)?
                .map(str::to_string)
                .collect(),
        };
        let id = |key: &str| {
            g.get_u32_opt(&format!("tokenizer.ggml.{key}"))
                .map_err(gguf_err)
        };
        let flag = |key: &str| {
            g.get_bool_opt(&format!("tokenizer.ggml.{key}"))
                .map_err(gguf_err)
        };
        let special = SpecialTokenIds {
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            eot: id("eot_token_id")?,
            eom: id("eom_token_id")?,
            unk: id("unknown_token_id")?,
            sep: id("seperator_token_id")?,
            pad: id("padding_token_id")?,
            mask: id("mask_token_id")?,
            fim_pre: id("fim_pre_token_id")?.or(id("prefix_token_id")?),
            fim_suf: id("fim_suf_token_id")?.or(id("suffix_token_id")?),
            fim_mid: id("fim_mid_token_id")?.or(id("middle_token_id")?),
            fim_pad: id("fim_pad_token_id")?,
            fim_rep: id("fim_rep_token_id")?,
            fim_sep: id("fim_sep_token_id")?,
        };
        Ok(Vocab {
            model,
            pre,
            tokens,
            scores,
            token_types,
            merges,
            special,
            add_bos: flag("add_bos_token")?,
            add_eos: flag("add_eos_token")?,
            add_space_prefix: flag("add_space_prefix")?,
            model_name: g
                .get_str_opt("general.name")
                .map_err(gguf_err)?
                .map(str::to_string),
        })
    }
}

impl Tokenizer {
    /// Build the tokenizer of a GGUF model from its metadata.
    pub fn from_gguf<S: AsRef<[u8]>>(g: &Gguf<S>) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::new(Vocab::from_gguf(g)?)
    }
}

impl ChatTemplate {
    /// The model's chat template (`tokenizer.chat_template`), with the BOS and
    /// EOS token texts of `tok` as `bos_token`/`eos_token`. An error
    /// ([`TokenizerError::NoChatTemplate`]) when the model has none.
    pub fn from_gguf<S: AsRef<[u8]>>(
        g: &Gguf<S>,
        tok: &Tokenizer,
    ) -> Result<ChatTemplate, TokenizerError> {
        let source = g
            .get_str_opt(CHAT_TEMPLATE_KEY)
            .map_err(gguf_err)?
            .ok_or(TokenizerError::NoChatTemplate)?;
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        ChatTemplate::new(source, text(tok.bos_id()), text(tok.eos_id()))
    }
}
