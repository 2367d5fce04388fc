//! Rough GPU timings of the decode-critical ops (not a test; for reports):
//! mat-vec per weight type at LLaMA-8B shapes, and decode attention over
//! growing KV lengths. `cargo run --release -p backend-hip --example gpu_bench`

use std::time::Instant;

use backend_core::{AttnSpec, Backend, GgmlType, WeightView};
use backend_hip::HipBackend;

fn main() {
    let g = match HipBackend::try_new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no usable GPU: {e}");
            return;
        }
    };
    println!("backend: {}", g.name());
    let mut seed = 0x9e37_79b9u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let time = |f: &mut dyn FnMut(), iters: usize| {
        f();
        g.synchronize().unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        g.synchronize().unwrap();
        t.elapsed().as_secs_f64() / iters as f64
    };
    for (n, k) in [(4096usize, 4096usize), (14336, 4096), (4096, 14336)] {
        let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
        let x: Vec<f32> = (0..k).map(|_| rnd()).collect();
        for ty in [
            GgmlType::F16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            if !quant::can_quantize(ty) {
                continue;
            }
            let mut bytes = vec![0u8; quant::bytes_for(ty, n * k).unwrap()];
            quant::quantize(ty, &w, &mut bytes).unwrap();
            let v = WeightView {
                name: "w",
                ggml_type: ty,
                dims: [k, n, 1, 1],
                data: &bytes,
            };
            let wt = g.load_weight(&v).unwrap();
            let xt = g.upload(&x, 1, k).unwrap();
            let mut out = g.zeros(1, n).unwrap();
            let s = time(&mut || g.matmul(&wt, &xt, &mut out).unwrap(), 200);
            let x512 = g.upload(&vec![0.5f32; 512 * k], 512, k).unwrap();
            let mut o512 = g.zeros(512, n).unwrap();
            let sp = time(&mut || g.matmul(&wt, &x512, &mut o512).unwrap(), 5);
            println!(
                "matmul {:>5} {n}x{k}: decode {:8.1} us ({:6.0} GB/s of weights), prefill 512 tokens {:8.2} ms ({:6.1} TFLOP/s)",
                ty.name(),
                s * 1e6,
                bytes.len() as f64 / s / 1e9,
                sp * 1e3,
                2.0 * 512.0 * (n * k) as f64 / sp / 1e12
            );
        }
    }
    let (heads, kv, hd) = (32usize, 8usize, 128usize);
    let spec = AttnSpec {
        n_head: heads,
        n_head_kv: kv,
        head_dim: hd,
        scale: 1.0 / (hd as f32).sqrt(),
        sliding_window: None,
        softcap: None,
    };
    for len in [512usize, 4096, 16384] {
        let cache = g.kv_cache(1, len, kv, hd).unwrap();
        let q = g.upload(&vec![0.1f32; heads * hd], 1, heads * hd).unwrap();
        let mut out = g.zeros(1, heads * hd).unwrap();
        let s = time(
            &mut || {
                g.attention(&q, &cache, 0, 0..1, len - 1, &spec, &mut out)
                    .unwrap()
            },
            50,
        );
        println!(
            "attention decode 32 heads / 8 KV heads of 128 at KV length {len}: {:8.1} us",
            s * 1e6
        );
    }
}
