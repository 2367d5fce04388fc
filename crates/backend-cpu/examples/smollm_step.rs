//! Time a SmolLM2-135M-shaped forward pass (random Q4_1 weights, Q8_0
//! output) on the CPU backend: `cargo run --release -p backend-cpu
//! --example smollm_step -- [THREADS] [TYPE]`. Prints pp128 and tg64
//! tokens/s, comparable with `llama-bench -p 128 -n 64`.

use std::time::Instant;

use backend_core::{AttnSpec, Backend, GgmlType, GluKind, RopeMode, RopeSpec};
use backend_cpu::testsuite::{Rng, TestWeight};
use backend_cpu::CpuBackend;

struct Layer<B: Backend> {
    attn_norm: B::Weight,
    wq: B::Weight,
    wk: B::Weight,
    wv: B::Weight,
    wo: B::Weight,
    ffn_norm: B::Weight,
    gate: B::Weight,
    up: B::Weight,
    down: B::Weight,
}

const EMBD: usize = 576;
const FFN: usize = 1536;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HD: usize = 64;
const LAYERS: usize = 30;
const VOCAB: usize = 49152;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let ty = args
        .get(2)
        .and_then(|s| GgmlType::from_name(s))
        .unwrap_or(GgmlType::Q4_1);
    let b = CpuBackend::new(threads).unwrap();
    let mut rng = Rng::new(1);
    // One random tensor per shape, copied per layer (distinct memory, cheap setup).
    let mut made: Vec<TestWeight> = Vec::new();
    let mut w = |cols: usize, rows: usize, t: GgmlType| {
        if let Some(tw) = made
            .iter()
            .find(|m| m.ty == t && m.dims[0] == cols && m.dims[1] == rows)
        {
            return tw.load(&b);
        }
        let tw = TestWeight::random(&mut rng, t, cols, rows, 0.05);
        let loaded = tw.load(&b);
        made.push(tw);
        loaded
    };
    let ones = backend_cpu::testsuite::f32_weight(&b, &[1.0; EMBD]);
    let layers: Vec<Layer<CpuBackend>> = (0..LAYERS)
        .map(|_| Layer {
            attn_norm: backend_cpu::testsuite::f32_weight(&b, &[1.0; EMBD]),
            wq: w(EMBD, EMBD, ty),
            wk: w(EMBD, KV_HEADS * HD, ty),
            wv: w(EMBD, KV_HEADS * HD, ty),
            wo: w(EMBD, EMBD, ty),
            ffn_norm: backend_cpu::testsuite::f32_weight(&b, &[1.0; EMBD]),
            gate: w(EMBD, FFN, ty),
            up: w(EMBD, FFN, ty),
            down: w(FFN, EMBD, ty),
        })
        .collect();
    let tok_embd = w(EMBD, VOCAB, GgmlType::Q8_0);
    let rope = RopeSpec {
        mode: RopeMode::Normal,
        n_dims: HD,
        freq_base: 10000.0,
        freq_scale: 1.0,
        yarn: None,
    };
    let attn = AttnSpec {
        n_head: HEADS,
        n_head_kv: KV_HEADS,
        head_dim: HD,
        scale: 0.125,
        sliding_window: None,
        softcap: None,
    };
    let mut cache = b.kv_cache(LAYERS, 512, KV_HEADS, HD).unwrap();
    let forward = |cache: &mut backend_cpu::CpuKvCache, ids: &[u32], start: usize| -> u32 {
        let t = ids.len();
        let positions: Vec<u32> = (start..start + t).map(|p| p as u32).collect();
        let mut x = b.zeros(t, EMBD).unwrap();
        b.get_rows(&tok_embd, ids, &mut x).unwrap();
        let mut h = b.zeros(t, EMBD).unwrap();
        let mut q = b.zeros(t, EMBD).unwrap();
        let mut k = b.zeros(t, KV_HEADS * HD).unwrap();
        let mut v = b.zeros(t, KV_HEADS * HD).unwrap();
        let mut a = b.zeros(t, EMBD).unwrap();
        let mut o = b.zeros(t, EMBD).unwrap();
        let mut g = b.zeros(t, FFN).unwrap();
        let mut u = b.zeros(t, FFN).unwrap();
        let mut gu = b.zeros(t, FFN).unwrap();
        for (l, ly) in layers.iter().enumerate() {
            b.rms_norm(&x, Some(&ly.attn_norm), EMBD, 1e-5, &mut h)
                .unwrap();
            b.matmul(&ly.wq, &h, &mut q).unwrap();
            b.matmul(&ly.wk, &h, &mut k).unwrap();
            b.matmul(&ly.wv, &h, &mut v).unwrap();
            b.rope(&mut q, HEADS, &positions, &rope).unwrap();
            b.rope(&mut k, KV_HEADS, &positions, &rope).unwrap();
            b.kv_store(cache, l, &k, &v, 0..t, start).unwrap();
            b.attention(&q, cache, l, 0..t, start, &attn, &mut a)
                .unwrap();
            b.matmul(&ly.wo, &a, &mut o).unwrap();
            b.add(&mut x, &o).unwrap();
            b.rms_norm(&x, Some(&ly.ffn_norm), EMBD, 1e-5, &mut h)
                .unwrap();
            b.matmul(&ly.gate, &h, &mut g).unwrap();
            b.matmul(&ly.up, &h, &mut u).unwrap();
            b.glu(&g, &u, GluKind::Silu, &mut gu).unwrap();
            b.matmul(&ly.down, &gu, &mut o).unwrap();
            b.add(&mut x, &o).unwrap();
        }
        let last = b
            .upload(&b.download(&x).unwrap()[(t - 1) * EMBD..], 1, EMBD)
            .unwrap();
        let mut hn = b.zeros(1, EMBD).unwrap();
        b.rms_norm(&last, Some(&ones), EMBD, 1e-5, &mut hn).unwrap();
        let mut logits = b.zeros(1, VOCAB).unwrap();
        b.matmul(&tok_embd, &hn, &mut logits).unwrap();
        b.argmax(&logits).unwrap()[0]
    };
    println!("{} {}", b.name(), ty.name());
    let prompt: Vec<u32> = (0..128).map(|i| (i * 37 % VOCAB) as u32).collect();
    let mode = args.get(3).map_or("both", |s| s.as_str());
    for rep in 0..3 {
        if mode == "tg" {
            let t1 = Instant::now();
            let mut tok = 1;
            for i in 0..64 {
                tok = forward(&mut cache, &[tok], i);
            }
            println!(
                "rep {rep}: tg64 {:.1} t/s",
                64.0 / t1.elapsed().as_secs_f64()
            );
            continue;
        }
        let t0 = Instant::now();
        let mut tok = forward(&mut cache, &prompt, 0);
        let pp = 128.0 / t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for i in 0..64 {
            tok = forward(&mut cache, &[tok], 128 + i);
        }
        let tg = 64.0 / t1.elapsed().as_secs_f64();
        println!("rep {rep}: pp128 {pp:.1} t/s, tg64 {tg:.1} t/s");
    }
}
