//! Where the test models fetched by `cargo xtask fixtures` live, for every
//! crate's tests: `$ROCMFORGE_FIXTURES`, or `<workspace>/target/fixtures`.

#![warn(missing_docs)]

use std::path::PathBuf;

/// File name of the SmolLM2-135M-Instruct Q4_1 fixture.
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// File name of the Gemma 3 270M Q4_K_M fixture.
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// The fixture directory.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("ROCMFORGE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"),
    }
}

/// The path of fixture `name`; panics with the command that fetches it when
/// it is missing, so a test never passes without its model.
pub fn fixture(name: &str) -> PathBuf {
    let path = fixture_dir().join(name);
    assert!(
        path.is_file(),
        "fixture {} not found: run `cargo xtask fixtures`",
        path.display()
    );
    path
}
