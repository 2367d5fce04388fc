//! `rocmforge tokenize` against llama-tokenize's ids (tests/data/tokenizer/,
//! mode "default": BOS per metadata, special tokens parsed).

use std::path::PathBuf;
use std::process::Command;
use test_fixtures::fixture;

fn check(model: &str, data: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tokenizer")
        .join(data);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = fixture(model);
    // NUL cannot travel in a command-line argument.
    let cases = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["text"].as_str().unwrap().contains('\0'));
    for case in cases.take(10) {
        let text = case["text"].as_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rocmforge"))
            .args(["tokenize", "-m"])
            .arg(&model)
            .arg(text)
            .output()
            .expect("rocmforge runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<u32> = serde_json::from_slice(&out.stdout).expect("JSON array");
        let want: Vec<u32> = serde_json::from_value(case["default"].clone()).unwrap();
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn tokenize_smollm2_like_llama_tokenize() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2.json");
}

#[test]
fn tokenize_gemma3_like_llama_tokenize() {
    check("gemma-3-270m-q4_k_m.gguf", "gemma3.json");
}

#[test]
fn tokenize_reports_a_missing_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_rocmforge"))
        .args(["tokenize", "-m", "/nonexistent/model.gguf", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model.gguf"));
}
