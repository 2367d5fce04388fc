//! Reads the SmolLM2-135M Q4_1 fixture: known values, zero-copy access, and a
//! byte-for-byte round trip through the writer.

mod common;

use gguf_format::{GgmlType, Gguf, GgufError, GgufWriter, Value, ValueType};

#[test]
fn header_and_hyperparameters() {
    let f = Gguf::open(common::fixture()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset(), 1_785_664);
    assert_eq!(f.file_size(), 98_362_432);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.arch_u32("block_count").unwrap(), 30);
    assert_eq!(f.arch_u32("embedding_length").unwrap(), 576);
    assert_eq!(f.arch_u32("attention.head_count").unwrap(), 9);
    assert_eq!(f.arch_u32("attention.head_count_kv").unwrap(), 3);
    assert_eq!(f.arch_u32("context_length").unwrap(), 8192);
    assert_eq!(f.arch_f32("rope.freq_base").unwrap(), 100_000.0);
    assert_eq!(f.arch_f32_opt("rope.scaling.factor").unwrap(), None);
    assert_eq!(f.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert!(f.get_bool("tokenizer.ggml.add_bos_token").is_ok());
    assert_eq!(f.metadata().count(), f.metadata_len());
    assert_eq!(f.metadata().next().unwrap().0, "general.architecture");
}

#[test]
fn errors_name_the_key() {
    let f = Gguf::open(common::fixture()).unwrap();
    let e = f.arch_u32("no_such_key").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey { ref key } if key == "llama.no_such_key"));
    let e = f.get_u32("general.architecture").unwrap_err().to_string();
    assert!(
        e.contains("general.architecture") && e.contains("expected u32") && e.contains("string"),
        "{e}"
    );
    let e = f
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .to_f32_vec()
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");
    assert!(f.get_u32_opt("general.architecture").is_err());
    assert_eq!(f.get_u32_opt("missing").unwrap(), None);
}

#[test]
fn tokenizer_arrays() {
    let f = Gguf::open(common::fixture()).unwrap();
    let tokens = f.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49_152);
    assert_eq!(tokens.elem_type(), ValueType::String);
    assert_eq!(tokens.strings().count(), 49_152);
    assert_eq!(tokens.get(0).unwrap().as_str(), Some("<|endoftext|>"));
    let merges = f.get_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len(), 48_900);
    let types = f.get_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types.to_i32_vec().unwrap().len(), 49_152);
    assert!(matches!(types.get(49_151), Some(Value::I32(_))));
    assert!(types.get(49_152).is_none());
}

#[test]
fn tensors_are_borrowed_from_the_file() {
    let f = Gguf::open(common::fixture()).unwrap();
    assert_eq!(f.tensors().len(), 272);
    let t = f.tensor("token_embd.weight").unwrap();
    assert_eq!(t.ggml_type, GgmlType::Q8_0);
    assert_eq!(t.shape, vec![576, 49_152]);
    assert_eq!(t.offset, 0);
    let data = f.tensor_data(t);
    assert_eq!(data.len() as u64, t.n_bytes());
    let base = f.bytes().as_ptr() as usize;
    assert_eq!(data.as_ptr() as usize - base, f.data_offset() as usize);
    let norm = f.tensor("output_norm.weight").unwrap();
    assert_eq!(norm.ggml_type, GgmlType::F32);
    assert_eq!(norm.n_elements(), 576);
}

#[test]
fn rewrite_is_byte_for_byte() {
    let path = common::fixture();
    let original = std::fs::read(&path).unwrap();
    let f = Gguf::from_bytes(original.as_slice()).unwrap();
    let rewritten = GgufWriter::from_gguf(&f).unwrap().to_bytes().unwrap();
    assert_eq!(rewritten.len(), original.len());
    let first_diff = rewritten.iter().zip(&original).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "rewrite differs from the fixture");
}
