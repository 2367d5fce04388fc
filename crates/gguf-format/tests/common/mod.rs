//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The SmolLM2 Q4_1 fixture, found in `$ROCMFORGE_FIXTURES` or
/// `<workspace>/target/fixtures`; panics with the command that fetches it.
pub fn fixture() -> PathBuf {
    let dir = std::env::var_os("ROCMFORGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "fixture {} not found: run `cargo xtask fixtures`",
        path.display()
    );
    path
}
