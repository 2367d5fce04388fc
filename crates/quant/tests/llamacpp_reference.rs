//! Quantizers against bytes written once by llama.cpp's `llama-quantize`
//! (see `tests/data/README.md`). Q1_0 has no gguf-py codec, so this is its
//! only external check; TQ1_0 / TQ2_0 are also compared with gguf-py elsewhere.

use quant::GgmlType;

fn input() -> Vec<f32> {
    include_bytes!("data/llamacpp-input.f32")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn check(t: GgmlType, reference: &[u8]) {
    let x = input();
    let mut q = vec![0u8; quant::bytes_for(t, x.len()).unwrap()];
    quant::quantize(t, &x, &mut q).unwrap();
    assert_eq!(q.len(), reference.len());
    let bs = t.type_size();
    for (i, (a, b)) in q.chunks(bs).zip(reference.chunks(bs)).enumerate() {
        assert_eq!(a, b, "{}: block {i} differs from llama-quantize", t.name());
    }
}

#[test]
fn q1_0_matches_llama_quantize() {
    check(GgmlType::Q1_0, include_bytes!("data/llamacpp-q1_0.bin"));
}

#[test]
fn tq1_0_matches_llama_quantize() {
    check(GgmlType::TQ1_0, include_bytes!("data/llamacpp-tq1_0.bin"));
}

#[test]
fn tq2_0_matches_llama_quantize() {
    check(GgmlType::TQ2_0, include_bytes!("data/llamacpp-tq2_0.bin"));
}
