//! Test helpers: run gguf-py (the independent reference) through
//! `tools/gguf_py_oracle.py` and read back its results.
#![allow(dead_code)]

mod rng;

#[allow(unused_imports)] // each test binary uses one of the two
pub use rng::{SplitMix, XorShift};
use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/gguf_py_oracle.py")
}

fn scratch(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("rocmforge-oracle-{}-{n}-{tag}", std::process::id()))
}

/// What gguf-py answered.
pub enum Oracle<T> {
    /// The result.
    Value(T),
    /// gguf-py does not implement this operation for the type.
    NotImplemented,
}

fn run(op: &str, type_name: &str, input: &[u8]) -> Oracle<Vec<u8>> {
    let inp = scratch("in");
    let out = scratch("out");
    std::fs::write(&inp, input).expect("writing oracle input");
    let res = Command::new("python3")
        .arg(script())
        .args([op, type_name])
        .arg(&inp)
        .arg(&out)
        .output()
        .expect("python3 must be installed to run the gguf-py oracle tests");
    let _ = std::fs::remove_file(&inp);
    match res.status.code() {
        Some(0) => {
            let bytes = std::fs::read(&out).expect("reading oracle output");
            let _ = std::fs::remove_file(&out);
            Oracle::Value(bytes)
        }
        Some(3) => Oracle::NotImplemented,
        _ => panic!(
            "gguf-py oracle failed ({op} {type_name}): {}",
            String::from_utf8_lossy(&res.stderr)
        ),
    }
}

/// Dequantize `blocks` of ggml type `type_name` with gguf-py.
pub fn dequantize(type_name: &str, blocks: &[u8]) -> Oracle<Vec<f32>> {
    match run("dequantize", type_name, blocks) {
        Oracle::Value(b) => Oracle::Value(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Oracle::NotImplemented => Oracle::NotImplemented,
    }
}

/// Quantize `values` to ggml type `type_name` with gguf-py.
pub fn quantize(type_name: &str, values: &[f32]) -> Oracle<Vec<u8>> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    run("quantize", type_name, &bytes)
}

/// Assert two f32 slices are identical bit for bit (NaNs must match as NaNs;
/// any NaN payload is accepted, as numpy and Rust may canonicalise them).
pub fn assert_bits_eq(what: &str, ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "{what}: length differs");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        assert!(
            same,
            "{what}: element {i} differs: ours {a:e} ({:#010x}), gguf-py {b:e} ({:#010x})",
            a.to_bits(),
            b.to_bits()
        );
    }
}
