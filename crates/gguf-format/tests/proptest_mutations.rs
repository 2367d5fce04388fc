//! Mutated valid files (truncations, bit flips, overwritten counts and
//! lengths) are either parsed or rejected with an error: never a panic and
//! never an allocation the file size does not justify.

use gguf_format::{GgmlType, Gguf, GgufWriter, MetadataValue, Value, ValueType};
use proptest::prelude::*;

/// A small valid file with every kind of value and a few tensors.
fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama");
    w.add_metadata("llama.block_count", 2u32);
    w.add_metadata("llama.rope.freq_base", 10000.0f32);
    w.add_metadata("flag", true);
    w.add_metadata("i64", MetadataValue::I64(-5));
    w.add_metadata("f64", MetadataValue::F64(0.25));
    w.add_metadata("u8", MetadataValue::U8(7));
    w.add_metadata("tokens", MetadataValue::string_array(["a", "bc", "<s>"]));
    w.add_metadata("scores", MetadataValue::f32_array([0.5, -1.0]));
    w.add_metadata(
        "nested",
        MetadataValue::Array(
            ValueType::Array,
            vec![
                MetadataValue::i32_array([1, 2, 3]),
                MetadataValue::Array(ValueType::I32, vec![]),
            ],
        ),
    );
    w.add_tensor("a", GgmlType::F32, vec![4, 2], vec![1u8; 32])
        .unwrap();
    w.add_tensor("b", GgmlType::Q4_1, vec![32], vec![2u8; 20])
        .unwrap();
    w.add_tensor("c", GgmlType::Q8_0, vec![64, 1], vec![3u8; 68])
        .unwrap();
    w.to_bytes().unwrap()
}

/// Touches everything a parsed file exposes.
fn exercise(bytes: &[u8]) {
    let Ok(f) = Gguf::from_bytes(bytes) else {
        return;
    };
    fn walk(v: Value<'_>) {
        let _ = v.describe();
        if let Value::Array(a) = v {
            let _ = (
                a.to_f32_vec(),
                a.to_i32_vec(),
                a.to_u32_vec(),
                a.strings().count(),
            );
            a.iter().for_each(walk);
        }
    }
    for (k, v) in f.metadata() {
        let _ = (f.get_u32(k), f.get_f32(k), f.get_str(k), f.get_bool(k));
        walk(v);
    }
    let _ = f.arch_u32("block_count");
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes());
    }
}

#[test]
fn sample_is_valid() {
    let bytes = sample();
    let f = Gguf::from_bytes(bytes.as_slice()).unwrap();
    assert_eq!(f.tensors().len(), 3);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    let f = Gguf::from_bytes(bytes.as_slice()).unwrap();
    let end_of_data = f.data_offset()
        + f.tensors()
            .iter()
            .map(|t| t.offset + t.n_bytes())
            .max()
            .unwrap();
    for len in 0..bytes.len() {
        let r = Gguf::from_bytes(&bytes[..len]);
        if (len as u64) < end_of_data {
            assert!(r.is_err(), "truncated to {len} bytes but parsed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bit_flips(flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6)) {
        let mut bytes = sample();
        for (i, bit) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        exercise(&bytes);
    }

    #[test]
    fn overwritten_words(at in any::<prop::sample::Index>(), word in prop_oneof![
        Just(u64::MAX), Just(1u64 << 60), Just(1u64 << 32), Just(u32::MAX as u64),
        Just(0u64), Just(13u64), any::<u64>(),
    ], width in prop_oneof![Just(4usize), Just(8usize)]) {
        let mut bytes = sample();
        let i = at.index(bytes.len() - width);
        bytes[i..i + width].copy_from_slice(&word.to_le_bytes()[..width]);
        exercise(&bytes);
    }

    #[test]
    fn truncate_and_extend(cut in any::<prop::sample::Index>(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = sample();
        bytes.truncate(cut.index(bytes.len()));
        bytes.extend(tail);
        exercise(&bytes);
    }
}
