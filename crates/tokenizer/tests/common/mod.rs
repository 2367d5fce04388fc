//! Shared helpers: fixture and reference-data paths.
#![allow(dead_code)]

use std::path::PathBuf;
use tokenizer::Tokenizer;

/// SmolLM2 fixture (byte-level BPE, `smollm` pre-tokenizer).
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Gemma 3 270M fixture (SentencePiece).
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
}

/// Path of a fixture; panics with the fix when it is absent.
pub fn fixture(name: &str) -> PathBuf {
    let dir = match std::env::var_os("ROCMFORGE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target").join("fixtures"),
    };
    let p = dir.join(name);
    assert!(
        p.exists(),
        "fixture {} is missing: run `cargo xtask fixtures`",
        p.display()
    );
    p
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
