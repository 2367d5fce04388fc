//! Decoding, streaming, end-of-generation, chat templates and robustness on
//! the two fixtures.

mod common;

use common::{load, reference, GEMMA3, SMOLLM2};
use proptest::prelude::*;
use std::sync::OnceLock;
use tokenizer::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer, TokenizerError};

fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load(SMOLLM2))
}

fn gemma3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load(GEMMA3))
}

/// Whether llama.cpp's decoding gives `s` back: SentencePiece renders a
/// literal `▁` in the input as a space, like the escaped spaces.
fn round_trips(tok: &Tokenizer, s: &str) -> bool {
    !(matches!(tok.kind(), tokenizer::TokenizerKind::SentencePiece) && s.contains('\u{2581}'))
}

fn strings() -> Vec<String> {
    let doc = reference("tokenizer/strings.json");
    doc["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn decode_inverts_encode_on_every_reference_string() {
    for tok in [smollm2(), gemma3()] {
        for s in strings() {
            let ids = tok.encode(&s, true, false).unwrap();
            let want = if round_trips(tok, &s) {
                s.clone()
            } else {
                s.replace('\u{2581}', " ")
            };
            assert_eq!(tok.decode(&ids), want, "{:?}", tok.kind());
        }
    }
}

#[test]
fn stream_decoder_never_splits_characters_and_adds_up() {
    for tok in [smollm2(), gemma3()] {
        for s in strings() {
            let ids = tok.encode(&s, false, false).unwrap();
            let mut dec = StreamDecoder::new(tok);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&dec.push(id));
                assert!(dec.pending().len() < 4);
            }
            out.push_str(&dec.flush());
            assert_eq!(out, tok.decode(&ids));
        }
    }
}

#[test]
fn byte_fallback_pieces_wait_for_the_whole_character() {
    let tok = gemma3();
    // A rare CJK extension character is not a token: it falls back to bytes.
    let ids = tok.encode("\u{2A6D6}", false, false).unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let mut dec = StreamDecoder::new(tok);
    let parts: Vec<String> = ids.iter().map(|&id| dec.push(id)).collect();
    assert_eq!(parts, ["", "", "", "\u{2A6D6}"]);
    assert_eq!(tok.token_to_piece(ids[0], false), &[0xF0]);
}

#[test]
fn special_ids_and_end_of_generation() {
    let s = smollm2();
    assert_eq!(
        (s.bos_id(), s.eos_id(), s.add_bos()),
        (Some(1), Some(2), false)
    );
    let im_end = s.token_id("<|im_end|>").unwrap();
    let eot = s.token_id("<|endoftext|>").unwrap();
    assert!(s.is_eog(im_end) && s.is_eog(eot));
    assert!(!s.is_eog(s.token_id("<|im_start|>").unwrap()));
    assert!(!s.is_eog(504));
    assert_eq!(s.vocab_size(), 49152);
    assert_eq!(s.token_to_piece(im_end, false), b"");
    assert_eq!(s.token_to_piece(im_end, true), b"<|im_end|>");
    assert_eq!(s.token_to_piece(u32::MAX, true), b"");

    let g = gemma3();
    assert_eq!(
        (g.bos_id(), g.eos_id(), g.add_bos()),
        (Some(2), Some(1), true)
    );
    let end_of_turn = g.token_id("<end_of_turn>").unwrap();
    assert!(g.is_eog(1) && g.is_eog(end_of_turn));
    assert!(!g.is_eog(2) && !g.is_eog(g.token_id("<start_of_turn>").unwrap()));
    assert_eq!(g.vocab_size(), 262144);
    assert_eq!(g.encode("", true, true).unwrap(), [2]);
}

#[test]
fn detokenize_like_llama_cpp() {
    let g = gemma3();
    let ids = g.encode("Hello world", true, false).unwrap();
    assert_eq!(g.detokenize(&ids, true, false), b"Hello world");
    assert_eq!(g.detokenize(&ids, false, true), b"<bos>Hello world");
}

#[test]
fn smollm2_chat_template() {
    let g = gguf_format::Gguf::open(common::fixture(SMOLLM2)).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    let out = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
    // rendered by Python jinja2 (trim_blocks, lstrip_blocks) from the same template
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = tok.encode(&out, true, true).unwrap();
    assert_eq!(ids[0], tok.token_id("<|im_start|>").unwrap());
}

#[test]
fn gemma3_has_no_chat_template() {
    let g = gguf_format::Gguf::open(common::fixture(GEMMA3)).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let err = ChatTemplate::from_gguf(&g, &tok).unwrap_err();
    assert!(matches!(err, TokenizerError::NoChatTemplate), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_text_never_panics_and_round_trips(s in any::<String>(), special in any::<bool>()) {
        for tok in [smollm2(), gemma3()] {
            let ids = tok.encode(&s, special, special).unwrap();
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
            if !special && round_trips(tok, &s) {
                prop_assert_eq!(tok.decode(&ids), s.clone());
            }
        }
    }

    #[test]
    fn arbitrary_ids_decode_without_panic(ids in proptest::collection::vec(any::<u32>(), 0..64)) {
        for tok in [smollm2(), gemma3()] {
            let _ = tok.decode(&ids);
            let _ = tok.detokenize(&ids, true, true);
            let mut dec = StreamDecoder::new(tok).with_special(true);
            for &id in &ids {
                let _ = dec.push(id % (tok.vocab_size() as u32 + 10));
            }
            let _ = dec.flush();
        }
    }
}
