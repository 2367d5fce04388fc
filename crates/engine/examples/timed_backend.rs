//! Wall time per backend op of batched decode steps (a timing wrapper around
//! the CPU backend): `timed_backend MODEL.gguf [THREADS] [STEPS] [SEQS]`.

use backend_core::{AttnSpec, Backend, GluKind, Result, RopeSpec, WeightView};
use engine::{CpuBackend, LogitsWanted, Model, SeqChunk};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const OPS: [&str; 12] = [
    "zeros",
    "download",
    "get_rows",
    "matmul",
    "rms_norm",
    "rope",
    "kv_store",
    "attention",
    "glu",
    "add",
    "other",
    "output_matmul",
];
static NS: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];
static CALLS: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];

fn timed<R>(op: usize, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    NS[op].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[op].fetch_add(1, Ordering::Relaxed);
    r
}

struct Timed(CpuBackend);

impl Backend for Timed {
    type Tensor = <CpuBackend as Backend>::Tensor;
    type Weight = <CpuBackend as Backend>::Weight;
    type KvCache = <CpuBackend as Backend>::KvCache;
    type DecodeGraph = ();
    fn name(&self) -> String {
        self.0.name()
    }
    fn register_mapping(&self, m: Arc<dyn AsRef<[u8]> + Send + Sync>) {
        self.0.register_mapping(m)
    }
    fn load_weight(&self, v: &WeightView<'_>) -> Result<Self::Weight> {
        self.0.load_weight(v)
    }
    fn zeros(&self, r: usize, c: usize) -> Result<Self::Tensor> {
        timed(0, || self.0.zeros(r, c))
    }
    fn upload(&self, d: &[f32], r: usize, c: usize) -> Result<Self::Tensor> {
        timed(10, || self.0.upload(d, r, c))
    }
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>> {
        timed(1, || self.0.download(t))
    }
    fn shape(&self, t: &Self::Tensor) -> (usize, usize) {
        self.0.shape(t)
    }
    fn get_rows(&self, w: &Self::Weight, ids: &[u32], o: &mut Self::Tensor) -> Result<()> {
        timed(2, || self.0.get_rows(w, ids, o))
    }
    fn matmul(&self, w: &Self::Weight, x: &Self::Tensor, o: &mut Self::Tensor) -> Result<()> {
        let op = if self.0.shape(o).1 > 10000 { 11 } else { 3 };
        timed(op, || self.0.matmul(w, x, o))
    }
    fn matmul_many(
        &self,
        x: &Self::Tensor,
        ws: &[&Self::Weight],
        outs: &mut [&mut Self::Tensor],
    ) -> Result<()> {
        timed(3, || self.0.matmul_many(x, ws, outs))
    }
    fn matmul_glu(
        &self,
        x: &Self::Tensor,
        gate: &Self::Weight,
        up: &Self::Weight,
        kind: GluKind,
        out: &mut Self::Tensor,
    ) -> Result<()> {
        timed(3, || self.0.matmul_glu(x, gate, up, kind, out))
    }
    fn add_bias(&self, x: &mut Self::Tensor, b: &Self::Weight) -> Result<()> {
        timed(10, || self.0.add_bias(x, b))
    }
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        w: Option<&Self::Weight>,
        g: usize,
        e: f32,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        timed(4, || self.0.rms_norm(x, w, g, e, o))
    }
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        w: Option<&Self::Weight>,
        b: Option<&Self::Weight>,
        e: f32,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        timed(4, || self.0.layer_norm(x, w, b, e, o))
    }
    fn rope(&self, x: &mut Self::Tensor, n: usize, p: &[u32], s: &RopeSpec) -> Result<()> {
        timed(5, || self.0.rope(x, n, p, s))
    }
    fn kv_cache(&self, l: usize, n: usize, h: usize, d: usize) -> Result<Self::KvCache> {
        self.0.kv_cache(l, n, h, d)
    }
    fn kv_store(
        &self,
        c: &mut Self::KvCache,
        l: usize,
        k: &Self::Tensor,
        v: &Self::Tensor,
        r: Range<usize>,
        s: usize,
    ) -> Result<()> {
        timed(6, || self.0.kv_store(c, l, k, v, r, s))
    }
    fn attention(
        &self,
        q: &Self::Tensor,
        c: &Self::KvCache,
        l: usize,
        r: Range<usize>,
        s: usize,
        spec: &AttnSpec,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        timed(7, || self.0.attention(q, c, l, r, s, spec, o))
    }
    fn attention_batch(
        &self,
        q: &Self::Tensor,
        seqs: &[(&Self::KvCache, Range<usize>, usize)],
        l: usize,
        spec: &AttnSpec,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        timed(7, || self.0.attention_batch(q, seqs, l, spec, o))
    }
    fn glu(
        &self,
        g: &Self::Tensor,
        u: &Self::Tensor,
        k: GluKind,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        timed(8, || self.0.glu(g, u, k, o))
    }
    fn add(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()> {
        timed(9, || self.0.add(a, b))
    }
    fn mul(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()> {
        timed(10, || self.0.mul(a, b))
    }
    fn scale(&self, a: &mut Self::Tensor, s: f32) -> Result<()> {
        timed(10, || self.0.scale(a, s))
    }
    fn softmax(&self, a: &mut Self::Tensor) -> Result<()> {
        timed(10, || self.0.softmax(a))
    }
    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.0.run_pass(f)
    }
    fn argmax(&self, a: &Self::Tensor) -> Result<Vec<u32>> {
        timed(10, || self.0.argmax(a))
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: timed_backend MODEL.gguf [THREADS] [STEPS] [SEQS]")?;
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let n: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(8);
    let model = Model::load(path, Arc::new(Timed(CpuBackend::new(threads)?)))?;
    let prompt: Vec<u32> = vec![
        1, 9066, 253, 1930, 1345, 563, 253, 7558, 665, 2880, 288, 4063, 30,
    ];
    let mut seqs = (0..n)
        .map(|_| model.new_sequence(512))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut chunks: Vec<SeqChunk<'_, Timed>> = seqs
        .iter_mut()
        .map(|s| SeqChunk {
            seq: s,
            tokens: &prompt,
            logits: LogitsWanted::Last,
        })
        .collect();
    model.forward(&mut chunks)?;
    drop(chunks);
    for c in NS.iter().chain(&CALLS) {
        c.store(0, Ordering::Relaxed);
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        let tok = [[42u32]; 64];
        let mut chunks: Vec<SeqChunk<'_, Timed>> = seqs
            .iter_mut()
            .zip(&tok)
            .map(|(s, t)| SeqChunk {
                seq: s,
                tokens: t,
                logits: LogitsWanted::Last,
            })
            .collect();
        model.forward(&mut chunks)?;
    }
    let total = t0.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let mut sum = 0.0;
    println!("{n} seqs, {threads} threads: {total:.2} ms per step");
    for (i, name) in OPS.iter().enumerate() {
        let ms = NS[i].load(Ordering::Relaxed) as f64 / 1e6 / steps as f64;
        sum += ms;
        let calls = CALLS[i].load(Ordering::Relaxed) / steps as u64;
        println!(
            "  {name:14} {ms:7.3} ms  {:5.1}%  {calls} calls",
            100.0 * ms / total
        );
    }
    println!(
        "  {:14} {:7.3} ms  {:5.1}%",
        "untimed",
        total - sum,
        100.0 * (total - sum) / total
    );
    Ok(())
}
