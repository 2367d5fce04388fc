//! Shared helpers: fixture and reference-data paths.
#![allow(dead_code)]

use std::path::PathBuf;
use tokenizer::Tokenizer;

/// The fixtures: SmolLM2 (byte-level BPE, `smollm` pre-tokenizer) and Gemma 3 270M (SentencePiece).
pub use test_fixtures::{fixture, GEMMA3, SMOLLM2};

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
}

/// The tokenizer of a fixture, read through gguf-format.
pub fn load(name: &str) -> Tokenizer {
    let g = gguf_format::Gguf::open(fixture(name)).expect("fixture parses");
    Tokenizer::from_gguf(&g).expect("tokenizer builds")
}

/// A reference JSON under tests/data/.
pub fn reference(rel: &str) -> serde_json::Value {
    let p = workspace_root().join("tests").join("data").join(rel);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).expect("reference JSON parses")
}

/// A JSON array of ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}
