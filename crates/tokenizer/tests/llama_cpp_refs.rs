//! Our encoder against llama.cpp's `llama-tokenize` on both fixtures
//! (tests/data/tokenizer/*.json, made by tools/make_tokenizer_refs.py).

mod common;

use common::{ids, load, reference, GEMMA3, SMOLLM2};

fn check(model: &str, data: &str) {
    let tok = load(model);
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
