//! Opening and parsing the SmolLM2 fixture (49,152-token vocabulary, 48,900
//! merges, 272 tensors): memory map + full validation, and the parse alone
//! from bytes already in memory. Goal: well under 10 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use gguf_format::Gguf;
use test_fixtures::{fixture, SMOLLM2};

fn bench(c: &mut Criterion) {
    let path = fixture(SMOLLM2);
    c.bench_function("gguf open+parse SmolLM2-135M (mmap)", |b| {
        b.iter(|| Gguf::open(&path).unwrap())
    });
    let bytes = std::fs::read(&path).unwrap();
    c.bench_function("gguf parse SmolLM2-135M (from bytes)", |b| {
        b.iter(|| Gguf::from_bytes(bytes.as_slice()).unwrap())
    });
    let file = Gguf::from_bytes(bytes.as_slice()).unwrap();
    c.bench_function("gguf read all 49,152 token strings", |b| {
        b.iter(|| {
            file.get_array("tokenizer.ggml.tokens")
                .unwrap()
                .strings()
                .map(str::len)
                .sum::<usize>()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
