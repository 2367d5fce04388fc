//! The engine's side of `Backend::decode_select`: the pass it hands over may
//! run more than once (a backend that records a step and then has to run it
//! op by op), and the sequence ends one position longer whatever the
//! backend did. A CPU backend that selects tokens itself and runs every pass
//! twice must generate exactly what the plain CPU engine generates with host
//! sampling, and a failing selection must leave the session where it was.

use backend_core::{
    select_reference, AttnSpec, Backend, BackendError, GluKind, Result, RopeSpec, TokenSelect,
    WeightView,
};
use engine::{CpuBackend, Engine, EngineOptions, SamplingOptions};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The CPU backend, selecting tokens "on the backend" (from its own logits
/// by the reference rule) and running each decode pass twice; optionally
/// failing every selection.
struct PassTwice {
    cpu: CpuBackend,
    passes: AtomicUsize,
    fail_selection: AtomicBool,
}

impl Backend for PassTwice {
    type Tensor = <CpuBackend as Backend>::Tensor;
    type Weight = <CpuBackend as Backend>::Weight;
    type KvCache = <CpuBackend as Backend>::KvCache;
    type DecodeGraph = ();

    fn name(&self) -> String {
        format!("pass-twice {}", self.cpu.name())
    }
    fn register_mapping(&self, m: Arc<dyn AsRef<[u8]> + Send + Sync>) {
        self.cpu.register_mapping(m)
    }
    fn load_weight(&self, v: &WeightView<'_>) -> Result<Self::Weight> {
        self.cpu.load_weight(v)
    }
    fn zeros(&self, r: usize, c: usize) -> Result<Self::Tensor> {
        self.cpu.zeros(r, c)
    }
    fn upload(&self, d: &[f32], r: usize, c: usize) -> Result<Self::Tensor> {
        self.cpu.upload(d, r, c)
    }
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>> {
        self.cpu.download(t)
    }
    fn shape(&self, t: &Self::Tensor) -> (usize, usize) {
        self.cpu.shape(t)
    }
    fn get_rows(&self, w: &Self::Weight, ids: &[u32], o: &mut Self::Tensor) -> Result<()> {
        self.cpu.get_rows(w, ids, o)
    }
    fn matmul(&self, w: &Self::Weight, x: &Self::Tensor, o: &mut Self::Tensor) -> Result<()> {
        self.cpu.matmul(w, x, o)
    }
    fn matmul_many(
        &self,
        x: &Self::Tensor,
        ws: &[&Self::Weight],
        outs: &mut [&mut Self::Tensor],
    ) -> Result<()> {
        self.cpu.matmul_many(x, ws, outs)
    }
    fn add_bias(&self, x: &mut Self::Tensor, b: &Self::Weight) -> Result<()> {
        self.cpu.add_bias(x, b)
    }
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        w: Option<&Self::Weight>,
        g: usize,
        eps: f32,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        self.cpu.rms_norm(x, w, g, eps, o)
    }
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        w: Option<&Self::Weight>,
        b: Option<&Self::Weight>,
        eps: f32,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        self.cpu.layer_norm(x, w, b, eps, o)
    }
    fn rope(&self, x: &mut Self::Tensor, h: usize, p: &[u32], s: &RopeSpec) -> Result<()> {
        self.cpu.rope(x, h, p, s)
    }
    fn kv_cache(&self, l: usize, n: usize, h: usize, d: usize) -> Result<Self::KvCache> {
        self.cpu.kv_cache(l, n, h, d)
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
        self.cpu.kv_store(c, l, k, v, r, s)
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
        self.cpu.attention(q, c, l, r, s, spec, o)
    }
    fn glu(
        &self,
        g: &Self::Tensor,
        u: &Self::Tensor,
        k: GluKind,
        o: &mut Self::Tensor,
    ) -> Result<()> {
        self.cpu.glu(g, u, k, o)
    }
    fn add(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()> {
        self.cpu.add(a, b)
    }
    fn mul(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()> {
        self.cpu.mul(a, b)
    }
    fn scale(&self, a: &mut Self::Tensor, s: f32) -> Result<()> {
        self.cpu.scale(a, s)
    }
    fn softmax(&self, a: &mut Self::Tensor) -> Result<()> {
        self.cpu.softmax(a)
    }
    fn argmax(&self, a: &Self::Tensor) -> Result<Vec<u32>> {
        self.cpu.argmax(a)
    }
    fn selects_tokens(&self) -> bool {
        true
    }
    fn select_tokens(&self, logits: &mut Self::Tensor, select: &[TokenSelect]) -> Result<Vec<u32>> {
        if self.fail_selection.load(Ordering::Relaxed) {
            return Err(BackendError::Device("selection failed on purpose".into()));
        }
        let (rows, cols) = self.shape(logits);
        let l = self.download(logits)?;
        Ok((0..rows)
            .map(|r| select_reference(&l[r * cols..(r + 1) * cols], &select[r]))
            .collect())
    }
    fn decode_select<E: From<BackendError>>(
        &self,
        _graph: &mut (),
        _token: u32,
        _pos: usize,
        select: &TokenSelect,
        mut pass: impl FnMut() -> std::result::Result<Self::Tensor, E>,
    ) -> std::result::Result<u32, E> {
        // A recording that ran the pass and then could not be used.
        drop(pass()?);
        let mut logits = pass()?;
        self.passes.fetch_add(2, Ordering::Relaxed);
        let ids = self.select_tokens(&mut logits, std::slice::from_ref(select))?;
        Ok(ids[0])
    }
}

#[test]
fn a_pass_run_twice_per_step_generates_what_the_cpu_generates() {
    let path = test_fixtures::fixture(test_fixtures::SMOLLM2);
    let opts = EngineOptions {
        n_ctx: Some(128),
        threads: Some(1),
    };
    let plain = Engine::load(&path, opts.clone()).unwrap();
    let backend = Arc::new(PassTwice {
        cpu: CpuBackend::new(1).unwrap(),
        passes: AtomicUsize::new(0),
        fail_selection: AtomicBool::new(false),
    });
    let twice = Engine::load_with_backend(&path, backend.clone(), opts).unwrap();
    let prompt = plain
        .tokenize("The capital of France is", true, false)
        .unwrap();
    let steps = 12;
    for sampling in [
        SamplingOptions {
            ignore_eos: true,
            ..SamplingOptions::greedy(steps)
        },
        SamplingOptions {
            seed: 5,
            temperature: 0.9,
            top_k: 40,
            max_tokens: steps,
            ignore_eos: true,
            ..Default::default()
        },
    ] {
        let want: Vec<u32> = plain
            .generate(&prompt, sampling.clone())
            .unwrap()
            .map(|t| t.unwrap().id)
            .collect();
        let got: Vec<u32> = twice
            .generate(&prompt, sampling.clone())
            .unwrap()
            .map(|t| t.unwrap().id)
            .collect();
        assert_eq!(got, want, "{sampling:?}");
    }
    // Every step after the prompt went through decode_select, twice each.
    assert!(backend.passes.load(Ordering::Relaxed) >= 2 * 2 * (steps - 1));

    // A failing selection leaves the session at its length.
    let mut s = twice.session().unwrap();
    s.eval(&prompt).unwrap();
    let before = s.len();
    backend.fail_selection.store(true, Ordering::Relaxed);
    assert!(s
        .eval_select(&[prompt[0]], &TokenSelect::default())
        .is_err());
    assert_eq!(s.len(), before);
    backend.fail_selection.store(false, Ordering::Relaxed);
    let id = s
        .eval_select(&[prompt[0]], &TokenSelect::default())
        .unwrap();
    assert_eq!(s.len(), before + 1);
    assert!((id as usize) < twice.model().config().n_vocab);
}
