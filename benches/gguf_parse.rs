//! Opening and parsing the SmolLM2 fixture (49,152-token vocabulary, 48,900
//! merges, 272 tensors): memory map + full validation, and the parse alone
//! from bytes already in memory. Goal: well under 10 ms.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use gguf_format::Gguf;

fn fixture() -> PathBuf {
    let dir = std::env::var_os("ROCMFORGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "fixture {} not found: run `cargo xtask fixtures`",
        path.display()
    );
    path
}

fn bench(c: &mut Criterion) {
    let path = fixture();
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
