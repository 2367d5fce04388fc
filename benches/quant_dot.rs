//! Single-thread `vec_dot` throughput of `quant::dot` on 4096-element rows,
//! the counterpart of llama.cpp's `test-quantize-perf --op vec_dot_q --size 4096`.
//!
//! Throughput is weight bytes read per second (the quantized row size divided
//! by the time of one dot product), the definition test-quantize-perf uses for
//! its "quantized throughput". `cargo xtask bench --quant` runs this benchmark
//! and llama.cpp's side by side and prints the ratio table.
//!
//! Groups: `quant_vec_dot/<TYPE>` uses the kernel `kernel_for` selects;
//! `quant_vec_dot_isa/<TYPE>/<isa>` runs every other ISA level this CPU has.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use quant::dot::{self, Isa};
use quant::GgmlType;

/// Row length used by test-quantize-perf's default (L1) size.
const N: usize = 4096;

/// The benchmark set.
const TYPES: &[GgmlType] = &[
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
];

/// The same synthetic data as test-quantize-perf: `0.1 + 2·cos(i + offset)`.
fn synthetic(offset: f32) -> Vec<f32> {
    (0..N)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// A weight row of `t`: quantized from synthetic data where the crate has a
/// quantizer, otherwise pseudo-random codes with a valid scale per block.
fn weight_row(t: GgmlType) -> Vec<u8> {
    let mut row = vec![0u8; quant::bytes_for(t, N).expect("4096 is whole blocks")];
    if quant::quantize(t, &synthetic(0.0), &mut row).is_err() {
        let mut s = 0x9E37_79B9u32;
        for b in row.iter_mut() {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (s >> 24) as u8;
        }
        for block in row.chunks_exact_mut(t.type_size()) {
            block[0..2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
        }
    }
    row
}

fn bench(c: &mut Criterion) {
    let mut best = c.benchmark_group("quant_vec_dot");
    best.warm_up_time(std::time::Duration::from_millis(500));
    best.measurement_time(std::time::Duration::from_secs(2));
    let mut rows = Vec::new();
    for &t in TYPES {
        let Some(k) = dot::kernel_for(t) else {
            eprintln!("quant_vec_dot: no kernel for {t:?}, skipped");
            continue;
        };
        let w = weight_row(t);
        let mut a = vec![0u8; quant::bytes_for(k.activation_type(), N).expect("whole blocks")];
        dot::quantize_activations(k.activation_type(), &synthetic(1.0), &mut a)
            .expect("activation quantizer");
        best.throughput(Throughput::Bytes(w.len() as u64));
        best.bench_function(t.name(), |b| {
            b.iter(|| k.dot(black_box(&w), black_box(&a)).expect("valid rows"))
        });
        rows.push((t, w, a));
    }
    best.finish();

    let mut per_isa = c.benchmark_group("quant_vec_dot_isa");
    per_isa.warm_up_time(std::time::Duration::from_millis(300));
    per_isa.measurement_time(std::time::Duration::from_secs(1));
    for (t, w, a) in &rows {
        for isa in Isa::ALL {
            let Some(k) = dot::kernel_for_isa(*t, isa) else {
                continue;
            };
            if Some(isa) == dot::kernel_for(*t).map(|k| k.isa_level()) {
                continue;
            }
            per_isa.throughput(Throughput::Bytes(w.len() as u64));
            per_isa.bench_function(format!("{}/{}", t.name(), isa.name()), |b| {
                b.iter(|| k.dot(black_box(w), black_box(a)).expect("valid rows"))
            });
        }
    }
    per_isa.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
