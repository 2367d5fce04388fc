//! Adapter over the `tokenizer` crate and the default CPU backend, so that
//! the rest of the engine depends on them in one place.

use crate::error::{EngineError, Result};
use crate::source::ModelFile;
use backend_cpu::CpuBackend;
use tokenizer::{ChatMessage, ChatTemplate, TokenizerError};
pub use tokenizer::{StreamDecoder, Tokenizer};

fn err(e: TokenizerError) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

pub(crate) fn cpu_backend(threads: Option<usize>) -> Result<CpuBackend> {
    Ok(CpuBackend::new(threads.unwrap_or(0))?)
}

pub(crate) fn load(file: &ModelFile) -> Result<Tokenizer> {
    Tokenizer::from_gguf(file.gguf()).map_err(err)
}

pub(crate) fn encode(
    t: &Tokenizer,
    text: &str,
    add_special: bool,
    parse_special: bool,
) -> Result<Vec<u32>> {
    t.encode(text, add_special, parse_special).map_err(err)
}

pub(crate) fn decode(t: &Tokenizer, ids: &[u32]) -> Result<String> {
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= t.vocab_size()) {
        return Err(EngineError::InvalidToken {
            id: bad,
            n_vocab: t.vocab_size(),
        });
    }
    Ok(t.decode(ids))
}

pub(crate) fn is_eog(t: &Tokenizer, id: u32) -> bool {
    t.is_eog(id)
}

pub(crate) fn bos_if_added(t: &Tokenizer) -> Option<u32> {
    if t.add_bos() {
        t.bos_id()
    } else {
        None
    }
}

pub(crate) fn chat_prompt(file: &ModelFile, t: &Tokenizer, user: &str) -> Result<String> {
    let template = ChatTemplate::from_gguf(file.gguf(), t).map_err(err)?;
    template
        .render(&[ChatMessage::new("user", user)], true)
        .map_err(err)
}
