//! Our encoder against llama.cpp's `llama-tokenize` on both fixtures
//! (tests/data/tokenizer/*.json, made by tools/make_tokenizer_refs.py).

mod common;

use common::{fixture, ids, load, reference, GEMMA3, SMOLLM2};
use tokenizer::{Tokenizer, Vocab};

fn check(model: &str, data: &str) {
    check_tokenizer(&load(model), data);
}

fn check_tokenizer(tok: &Tokenizer, data: &str) {
    let doc = reference(data);
    let mut failures = Vec::new();
    let cases = doc["cases"].as_array().expect("cases");
    for case in cases {
        let text = case["text"].as_str().expect("text");
        for (mode, add_special, parse_special) in [("default", true, true), ("plain", false, false)]
        {
            let want = ids(&case[mode]);
            let got = tok
                .encode(text, add_special, parse_special)
                .expect("encode");
            if got != want {
                failures.push(format!(
                    "{mode} {text:?}\n  llama.cpp {want:?}\n  ours      {got:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} encodings differ:\n{}",
        failures.len(),
        2 * cases.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check(SMOLLM2, "tokenizer/smollm2.json");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check(GEMMA3, "tokenizer/gemma3.json");
}

/// The SmolLM2 vocabulary with another `tokenizer.ggml.pre`, against
/// llama.cpp on the same vocabulary (a vocab-only copy made with gguf-py).
fn check_pre(pre: &str) {
    let g = gguf_format::Gguf::open(fixture(SMOLLM2)).expect("fixture parses");
    let mut vocab = Vocab::from_gguf(&g).expect("vocab");
    vocab.pre = Some(pre.to_string());
    let tok = Tokenizer::new(vocab).expect("tokenizer builds");
    check_tokenizer(&tok, &format!("tokenizer/smollm2-pre-{pre}.json"));
}

#[test]
fn llama_bpe_pre_tokenizer_matches_llama_cpp() {
    check_pre("llama-bpe");
}

#[test]
fn qwen2_pre_tokenizer_matches_llama_cpp() {
    check_pre("qwen2");
}

#[test]
fn qwen35_pre_tokenizer_matches_llama_cpp() {
    check_pre("qwen35");
}

#[test]
fn gpt2_pre_tokenizer_matches_llama_cpp() {
    check_pre("gpt-2");
}

#[test]
fn default_pre_tokenizer_matches_llama_cpp() {
    check_pre("default");
}

#[test]
fn smollm2_prompt_ids_of_generation_reference() {
    let tok = load(SMOLLM2);
    let doc = reference("smollm2-q4_1.json");
    for case in doc["cases"].as_array().expect("cases") {
        let prompt = case["prompt"].as_str().expect("prompt");
        // add_special = true, parse_special = false, as the reference was made
        assert_eq!(
            tok.encode(prompt, true, false).unwrap(),
            ids(&case["prompt_ids"]),
            "{prompt:?}"
        );
    }
}

#[test]
fn smollm2_generated_text_decodes() {
    let tok = load(SMOLLM2);
    let doc = reference("smollm2-q4_1.json");
    for case in doc["cases"].as_array().expect("cases") {
        let gen = ids(&case["gen_ids"]);
        assert_eq!(tok.decode(&gen), case["gen_text"].as_str().unwrap());
    }
}
