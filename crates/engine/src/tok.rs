//! Adapter over the tokenizer and the default CPU backend (temporary stub
//! until the tokenizer crate lands).

use crate::error::{EngineError, Result};
use crate::source::ModelFile;
use backend_cpu::CpuBackend;

/// The model's tokenizer.
pub struct Tokenizer {
    eog: Vec<u32>,
}

/// Turns generated ids into text pieces.
pub struct StreamDecoder;

impl StreamDecoder {
    /// A decoder for `tokenizer`'s vocabulary.
    pub fn new(_tokenizer: &Tokenizer) -> StreamDecoder {
        StreamDecoder
    }
    /// The text completed by `id`.
    pub fn push(&mut self, _tokenizer: &Tokenizer, _id: u32) -> String {
        String::new()
    }
}

pub(crate) fn cpu_backend(threads: Option<usize>) -> Result<CpuBackend> {
    Ok(CpuBackend::new(threads.unwrap_or(0))?)
}

pub(crate) fn load(file: &ModelFile) -> Result<Tokenizer> {
    let eos = file
        .gguf()
        .get_u32_opt("tokenizer.ggml.eos_token_id")
        .ok()
        .flatten();
    Ok(Tokenizer {
        eog: eos.into_iter().collect(),
    })
}

pub(crate) fn encode(
    _t: &Tokenizer,
    _text: &str,
    _add_special: bool,
    _parse_special: bool,
) -> Result<Vec<u32>> {
    Err(EngineError::Tokenizer("not available yet".into()))
}

pub(crate) fn decode(_t: &Tokenizer, _ids: &[u32]) -> Result<String> {
    Err(EngineError::Tokenizer("not available yet".into()))
}

pub(crate) fn is_eog(t: &Tokenizer, id: u32) -> bool {
    t.eog.contains(&id)
}

pub(crate) fn bos_if_added(_t: &Tokenizer) -> Option<u32> {
    None
}

pub(crate) fn chat_prompt(_file: &ModelFile, _user: &str) -> Result<String> {
    Err(EngineError::Tokenizer("not available yet".into()))
}
