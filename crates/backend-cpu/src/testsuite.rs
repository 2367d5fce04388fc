//! One test body per op, generic over any [`Backend`], each comparing the
//! backend against a naive, obviously-correct reference written here (f64
//! where it matters). Enabled by the `testsuite` cargo feature.
//!
//! Instantiate the whole suite for a backend in an integration test with
//! [`backend_tests!`](crate::backend_tests):
//!
//! ```text
//! // crates/backend-xyz/tests/ops.rs
//! backend_cpu::backend_tests!(backend_xyz::XyzBackend::new(0).unwrap());
//! ```
//!
//! Shapes are those of real models (576 embedding, 9 query / 3 KV heads of
//! 64, 1536 FFN, 2048-position attention). Every tolerance is stated next
//! to its check.

use std::ops::Range;

use backend_core::{
    AttnSpec, Backend, BackendError, GluKind, RopeMode, RopeSpec, WeightView, YarnSpec,
};

pub use backend_core::GgmlType;

/// Deterministic pseudo-random numbers (SplitMix64), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Roughly standard normal (sum of four uniforms, rescaled).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866
    }

    /// `n` roughly normal values times `scale`.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

/// A weight made for a test: its bytes and the exact values they decode to.
pub struct TestWeight {
    /// Stored type.
    pub ty: GgmlType,
    /// ggml dims.
    pub dims: [usize; 4],
    /// Stored bytes.
    pub bytes: Vec<u8>,
    /// The dequantized values (row-major, `rows × cols`).
    pub values: Vec<f32>,
}

impl TestWeight {
    /// Random `rows × cols` values quantized to `ty`.
    pub fn random(rng: &mut Rng, ty: GgmlType, cols: usize, rows: usize, scale: f32) -> TestWeight {
        let src = rng.vec(cols * rows, scale);
        let n_bytes = quant::bytes_for(ty, src.len()).expect("whole blocks");
        let mut bytes = vec![0u8; n_bytes];
        quant::quantize(ty, &src, &mut bytes).expect("quantize test weight");
        let mut values = vec![0.0; src.len()];
        quant::dequantize(ty, &bytes, &mut values).expect("dequantize test weight");
        TestWeight {
            ty,
            dims: [cols, rows, 1, 1],
            bytes,
            values,
        }
    }

    /// The view to pass to [`Backend::load_weight`].
    pub fn view(&self) -> WeightView<'_> {
        WeightView {
            name: "test.weight",
            ggml_type: self.ty,
            dims: self.dims,
            data: &self.bytes,
        }
    }

    /// Load into `b`.
    pub fn load<B: Backend>(&self, b: &B) -> B::Weight {
        b.load_weight(&self.view()).expect("load_weight")
    }
}

/// A one-row `f32` weight (norm weights, biases).
pub fn f32_weight<B: Backend>(b: &B, values: &[f32]) -> B::Weight {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    b.load_weight(&WeightView {
        name: "test.vector",
        ggml_type: GgmlType::F32,
        dims: [values.len(), 1, 1, 1],
        data: &bytes,
    })
    .expect("load_weight f32 vector")
}

fn upload<B: Backend>(b: &B, data: &[f32], rows: usize, cols: usize) -> B::Tensor {
    b.upload(data, rows, cols).expect("upload")
}

fn download<B: Backend>(b: &B, t: &B::Tensor) -> Vec<f32> {
    b.download(t).expect("download")
}

/// Assert `|got - want| <= atol + rtol·|want|` element-wise.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = atol + rtol * w.abs();
        assert!(
            (g as f64 - w).abs() <= tol && g.is_finite(),
            "{what}: element {i}: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// get_rows on every tested type returns exactly the dequantized rows.
pub fn get_rows<B: Backend>(b: &B) {
    let mut rng = Rng::new(1);
    for (ty, cols) in [
        (GgmlType::F32, 576),
        (GgmlType::F16, 576),
        (GgmlType::Q4_0, 576),
        (GgmlType::Q4_1, 576),
        (GgmlType::Q8_0, 576),
        (GgmlType::Q4_K, 1536),
        (GgmlType::Q6_K, 1536),
    ] {
        let rows = 50;
        let w = TestWeight::random(&mut rng, ty, cols, rows, 1.0);
        let wb = w.load(b);
        // Few ids run on the calling thread of a CPU backend, many on its pool.
        let many: Vec<u32> = (0..80).map(|i| (i * 7 % 50) as u32).collect();
        for ids in [&[0u32, 49, 7, 7, 23][..], &many[..]] {
            let mut out = b.zeros(ids.len(), cols).unwrap();
            b.get_rows(&wb, ids, &mut out).unwrap();
            let want: Vec<f64> = ids
                .iter()
                .flat_map(|&i| {
                    w.values[i as usize * cols..(i as usize + 1) * cols]
                        .iter()
                        .map(|&v| v as f64)
                })
                .collect();
            // Dequantization is exact: no tolerance.
            assert_close(
                &format!("get_rows {} x{}", ty.name(), ids.len()),
                &download(b, &out),
                &want,
                0.0,
                0.0,
            );
        }
        let mut bad = b.zeros(1, cols).unwrap();
        assert!(
            b.get_rows(&wb, &[50], &mut bad).is_err(),
            "id out of range must fail"
        );
    }
}

/// `out[t][r] = Σ_k w[r][k]·x[t][k]` against the dequantized weight and an
/// f64 dot, for one token and batches.
///
/// Tolerance: the worst case of 8-bit activation quantization
/// (`Σ|w|·max|x|/254` over the row, ggml's Q8 formats round to 1/254 of the
/// block's range) plus 0.3% of `Σ|w·x|` (f16 scales, f16 activations for
/// f16 weights, f32 accumulation) plus 1e-4.
pub fn matmul_type<B: Backend>(b: &B, ty: GgmlType) {
    let mut rng = Rng::new(2 + ty.id() as u64);
    let (k, n) = if ty.block_size() == 256 {
        (1536, 576)
    } else {
        (576, 1536)
    };
    let w = TestWeight::random(&mut rng, ty, k, n, 0.05);
    let wb = w.load(b);
    for t in [1usize, 3, 8, 13] {
        let x = rng.vec(t * k, 1.0);
        let xt = upload(b, &x, t, k);
        let mut out = b.zeros(t, n).unwrap();
        b.matmul(&wb, &xt, &mut out).unwrap();
        let got = download(b, &out);
        for tok in 0..t {
            let xr = &x[tok * k..(tok + 1) * k];
            let amax = xr.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
            for r in 0..n {
                let wr = &w.values[r * k..(r + 1) * k];
                let exact: f64 = wr.iter().zip(xr).map(|(&a, &c)| a as f64 * c as f64).sum();
                let abs_sum: f64 = wr
                    .iter()
                    .zip(xr)
                    .map(|(&a, &c)| (a as f64 * c as f64).abs())
                    .sum();
                let w_abs: f64 = wr.iter().map(|&a| (a as f64).abs()).sum();
                let tol = w_abs * amax / 254.0 + 3e-3 * abs_sum + 1e-4;
                let g = got[tok * n + r] as f64;
                assert!(
                    (g - exact).abs() <= tol,
                    "matmul {} t={t} token {tok} row {r}: got {g}, want {exact} (tolerance {tol})",
                    ty.name()
                );
            }
        }
    }
    let mut bad = b.zeros(1, n + 1).unwrap();
    let x = upload(b, &rng.vec(k, 1.0), 1, k);
    assert!(
        b.matmul(&wb, &x, &mut bad).is_err(),
        "wrong output shape must fail"
    );
}

/// add_bias adds the bias to every row.
pub fn add_bias<B: Backend>(b: &B) {
    let mut rng = Rng::new(3);
    let (t, c) = (5, 576);
    let x = rng.vec(t * c, 1.0);
    let bias = rng.vec(c, 1.0);
    let mut xt = upload(b, &x, t, c);
    b.add_bias(&mut xt, &f32_weight(b, &bias)).unwrap();
    let want: Vec<f64> = (0..t * c).map(|i| (x[i] + bias[i % c]) as f64).collect();
    assert_close("add_bias", &download(b, &xt), &want, 0.0, 1e-7);
}

fn rms_ref(x: &[f32], w: Option<&[f32]>, group: usize, eps: f32) -> Vec<f64> {
    x.chunks(group)
        .flat_map(|g| {
            let ms: f64 = g.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / group as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            g.iter()
                .enumerate()
                .map(move |(i, &v)| v as f64 * s * w.map_or(1.0, |w| w[i] as f64))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RMSNorm over whole rows and per head, with and without weight.
/// Tolerance: 2e-6 relative + 1e-6 absolute.
/// 7 rows run on the calling thread of a CPU backend, 64 on its pool.
pub fn rms_norm<B: Backend>(b: &B) {
    rms_norm_rows(b, 7);
    rms_norm_rows(b, 64);
}

fn rms_norm_rows<B: Backend>(b: &B, t: usize) {
    let mut rng = Rng::new(4);
    let (c, eps) = (576, 1e-5f32);
    let x: Vec<f32> = rng.vec(t * c, 2.0);
    for group in [576usize, 64] {
        let wv = rng.vec(group, 1.0);
        let w = f32_weight(b, &wv);
        for with_weight in [true, false] {
            let xt = upload(b, &x, t, c);
            let mut out = b.zeros(t, c).unwrap();
            b.rms_norm(&xt, with_weight.then_some(&w), group, eps, &mut out)
                .unwrap();
            let want = rms_ref(&x, with_weight.then_some(&wv[..]), group, eps);
            assert_close(
                &format!("rms_norm group {group}"),
                &download(b, &out),
                &want,
                1e-6,
                2e-6,
            );
        }
    }
}

/// LayerNorm with weight and bias. Tolerance: 1e-5 relative + 1e-5 absolute.
/// 4 rows and 64 rows.
pub fn layer_norm<B: Backend>(b: &B) {
    layer_norm_rows(b, 4);
    layer_norm_rows(b, 64);
}

fn layer_norm_rows<B: Backend>(b: &B, t: usize) {
    let mut rng = Rng::new(5);
    let (c, eps) = (576, 1e-5f32);
    let x: Vec<f32> = rng.vec(t * c, 3.0).iter().map(|v| v + 0.5).collect();
    let (wv, bv) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
    let xt = upload(b, &x, t, c);
    let mut out = b.zeros(t, c).unwrap();
    b.layer_norm(
        &xt,
        Some(&f32_weight(b, &wv)),
        Some(&f32_weight(b, &bv)),
        eps,
        &mut out,
    )
    .unwrap();
    let want: Vec<f64> = x
        .chunks(c)
        .flat_map(|r| {
            let mean = r.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
            let s = 1.0 / (var + eps as f64).sqrt();
            r.iter()
                .enumerate()
                .map(|(i, &v)| (v as f64 - mean) * s * wv[i] as f64 + bv[i] as f64)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_close("layer_norm", &download(b, &out), &want, 1e-5, 1e-5);
}

/// The RoPE angle and magnitude for pair `i` at `pos`, straight from the
/// definitions (f64): `θ = pos·base^(-2i/n_dims)`, linear or YaRN scaled.
fn rope_angle(spec: &RopeSpec, pos: f64, i: usize) -> (f64, f64) {
    let extrap = pos * (spec.freq_base as f64).powf(-2.0 * i as f64 / spec.n_dims as f64);
    let interp = spec.freq_scale as f64 * extrap;
    match spec.yarn {
        None => (interp, 1.0),
        Some(y) => {
            let corr = |rot: f64| {
                spec.n_dims as f64 * (y.n_ctx_orig as f64 / (rot * 2.0 * std::f64::consts::PI)).ln()
                    / (2.0 * (spec.freq_base as f64).ln())
            };
            let low = corr(y.beta_fast as f64).floor().max(0.0);
            let high = corr(y.beta_slow as f64)
                .ceil()
                .min(spec.n_dims as f64 - 1.0);
            let ramp = 1.0 - ((i as f64 - low) / (high - low).max(0.001)).clamp(0.0, 1.0);
            let mix = ramp * y.ext_factor as f64;
            let theta = interp * (1.0 - mix) + extrap * mix;
            let mut m = y.attn_factor as f64;
            if y.ext_factor != 0.0 {
                m *= 1.0 + 0.1 * (1.0 / spec.freq_scale as f64).ln();
            }
            (theta, m)
        }
    }
}

/// RoPE (normal, NeoX with partial rotation, linear scaling, YaRN) against
/// the direct formula. Tolerance: ggml builds `θ` by repeated `f32`
/// multiplication, so the angle may be off by about `pos·(i+2)·2⁻²²`; the
/// bound is that angle error times the pair's norm, plus 1e-5.
/// 8 positions (calling thread) and 72 positions (pool).
pub fn rope<B: Backend>(b: &B) {
    let few: Vec<u32> = vec![0, 1, 2, 17, 100, 511, 1000, 4095];
    let many: Vec<u32> = few
        .iter()
        .copied()
        .chain((0..64).map(|i| i * 61 % 3000))
        .collect();
    rope_at(b, &few);
    rope_at(b, &many);
}

fn rope_at<B: Backend>(b: &B, positions: &[u32]) {
    let mut rng = Rng::new(6);
    let (n_heads, hd) = (9usize, 64usize);
    let yarn = YarnSpec {
        ext_factor: 1.0,
        attn_factor: 1.0,
        beta_fast: 32.0,
        beta_slow: 1.0,
        n_ctx_orig: 2048,
    };
    let specs = [
        RopeSpec {
            mode: RopeMode::Normal,
            n_dims: 64,
            freq_base: 10000.0,
            freq_scale: 1.0,
            yarn: None,
        },
        RopeSpec {
            mode: RopeMode::Neox,
            n_dims: 64,
            freq_base: 1_000_000.0,
            freq_scale: 1.0,
            yarn: None,
        },
        RopeSpec {
            mode: RopeMode::Neox,
            n_dims: 32,
            freq_base: 10000.0,
            freq_scale: 0.25,
            yarn: None,
        },
        RopeSpec {
            mode: RopeMode::Normal,
            n_dims: 64,
            freq_base: 10000.0,
            freq_scale: 0.25,
            yarn: Some(yarn),
        },
        RopeSpec {
            mode: RopeMode::Neox,
            n_dims: 64,
            freq_base: 500000.0,
            freq_scale: 0.125,
            yarn: Some(YarnSpec {
                attn_factor: 0.9,
                ..yarn
            }),
        },
    ];
    let t = positions.len();
    for spec in specs {
        let x = rng.vec(t * n_heads * hd, 1.0);
        let mut xt = upload(b, &x, t, n_heads * hd);
        b.rope(&mut xt, n_heads, positions, &spec).unwrap();
        let got = download(b, &xt);
        for (r, &p) in positions.iter().enumerate() {
            for h in 0..n_heads {
                let base = r * n_heads * hd + h * hd;
                let xs = &x[base..base + hd];
                let gs = &got[base..base + hd];
                let mut want: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
                let half = spec.n_dims / 2;
                for i in 0..half {
                    let (a, bi) = match spec.mode {
                        RopeMode::Normal => (2 * i, 2 * i + 1),
                        RopeMode::Neox => (i, i + half),
                    };
                    let (theta, m) = rope_angle(&spec, p as f64, i);
                    let (x0, x1) = (xs[a] as f64, xs[bi] as f64);
                    want[a] = (x0 * theta.cos() - x1 * theta.sin()) * m;
                    want[bi] = (x0 * theta.sin() + x1 * theta.cos()) * m;
                    let norm = (x0 * x0 + x1 * x1).sqrt() * m.max(1.0);
                    let tol = (p as f64 * (i as f64 + 2.0) * 2.4e-7 + 2e-6) * norm + 1e-5;
                    for idx in [a, bi] {
                        assert!(
                            (gs[idx] as f64 - want[idx]).abs() <= tol,
                            "rope {spec:?} pos {p} head {h} dim {idx}: got {}, want {} (tol {tol})",
                            gs[idx],
                            want[idx]
                        );
                    }
                }
                for idx in spec.n_dims..hd {
                    assert_eq!(
                        gs[idx], xs[idx],
                        "rope must leave dims past n_dims unchanged"
                    );
                }
            }
        }
    }
}

/// Naive causal attention for one query row (f64 softmax).
#[allow(clippy::too_many_arguments)]
fn attn_ref(
    q: &[f32],
    keys: &[Vec<f32>],
    vals: &[Vec<f32>],
    pos: usize,
    spec: &AttnSpec,
    out: &mut [f64],
) {
    let (hd, group) = (spec.head_dim, spec.n_head / spec.n_head_kv);
    let lo = spec
        .sliding_window
        .map_or(0, |w| (pos + 1).saturating_sub(w));
    for h in 0..spec.n_head {
        let hk = h / group;
        let qh = &q[h * hd..(h + 1) * hd];
        let scores: Vec<f64> = (lo..=pos)
            .map(|j| {
                let kj = &keys[j][hk * hd..(hk + 1) * hd];
                let mut s = qh
                    .iter()
                    .zip(kj)
                    .map(|(&a, &c)| a as f64 * c as f64)
                    .sum::<f64>()
                    * spec.scale as f64;
                if let Some(c) = spec.softcap {
                    s = c as f64 * (s / c as f64).tanh();
                }
                s
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        for d in 0..hd {
            out[h * hd + d] = (lo..=pos)
                .zip(&e)
                .map(|(j, &w)| w * vals[j][hk * hd + d] as f64)
                .sum::<f64>()
                / sum;
        }
    }
}

/// Attention with GQA (9 query / 3 KV heads of 64) over a 2048-position
/// cache (many tiles): a prefill of the first 300 positions in one call,
/// a batch of 8 late queries, and a single decode query, each plain, with a
/// sliding window and with soft-capping.
///
/// Tolerance: 4e-3 absolute + 4e-3 relative, enough for a backend that keeps
/// K/V in f16 (ggml's default): f16 rounds keys/values/queries to 2⁻¹¹.
pub fn attention<B: Backend>(b: &B) {
    attention_with_tolerance(b, 4e-3)
}

/// [`attention`] with a chosen tolerance (absolute and relative).
pub fn attention_with_tolerance<B: Backend>(b: &B, tol: f64) {
    let mut rng = Rng::new(7);
    let (nh, nkv, hd, n_ctx) = (9usize, 3usize, 64usize, 2048usize);
    let kv_dim = nkv * hd;
    let keys: Vec<Vec<f32>> = (0..n_ctx).map(|_| rng.vec(kv_dim, 1.0)).collect();
    let vals: Vec<Vec<f32>> = (0..n_ctx).map(|_| rng.vec(kv_dim, 1.0)).collect();
    let mut cache = b.kv_cache(2, n_ctx, nkv, hd).unwrap();
    // Store in two uneven chunks into layer 1 (layer 0 stays empty).
    for r in [0..777usize, 777..n_ctx] {
        let kt = upload(b, &keys[r.clone()].concat(), r.len(), kv_dim);
        let vt = upload(b, &vals[r.clone()].concat(), r.len(), kv_dim);
        b.kv_store(&mut cache, 1, &kt, &vt, 0..r.len(), r.start)
            .unwrap();
    }
    let base = AttnSpec {
        n_head: nh,
        n_head_kv: nkv,
        head_dim: hd,
        scale: 1.0 / (hd as f32).sqrt(),
        sliding_window: None,
        softcap: None,
    };
    let specs = [
        base,
        AttnSpec {
            sliding_window: Some(100),
            ..base
        },
        AttnSpec {
            softcap: Some(5.0),
            scale: 0.5,
            ..base
        },
    ];
    // (number of rows in q, rows to attend, start position)
    let cases: [(usize, Range<usize>, usize); 3] =
        [(300, 0..300, 0), (10, 1..9, 2040), (1, 0..1, 2047)];
    for spec in specs {
        for (t, rows, start) in cases.clone() {
            let q = rng.vec(t * nh * hd, 1.0);
            let qt = upload(b, &q, t, nh * hd);
            let mut out = b.zeros(t, nh * hd).unwrap();
            b.attention(&qt, &cache, 1, rows.clone(), start, &spec, &mut out)
                .unwrap();
            let got = download(b, &out);
            let mut want = vec![0.0f64; t * nh * hd];
            for (i, r) in rows.clone().enumerate() {
                let o = &mut want[r * nh * hd..(r + 1) * nh * hd];
                attn_ref(
                    &q[r * nh * hd..(r + 1) * nh * hd],
                    &keys,
                    &vals,
                    start + i,
                    &spec,
                    o,
                );
            }
            // Rows outside `rows` must be left untouched (zero).
            assert_close(
                &format!("attention {spec:?} rows {rows:?} at {start}"),
                &got,
                &want,
                tol,
                tol,
            );
        }
    }
}

/// Storing or attending past the cache's end is a `ContextOverflow` error.
pub fn context_overflow<B: Backend>(b: &B) {
    let (nkv, hd) = (3, 64);
    let mut cache = b.kv_cache(1, 16, nkv, hd).unwrap();
    let k = b.zeros(10, nkv * hd).unwrap();
    b.kv_store(&mut cache, 0, &k, &k, 0..10, 0).unwrap();
    match b.kv_store(&mut cache, 0, &k, &k, 0..10, 10) {
        Err(BackendError::ContextOverflow { pos: 19, n_ctx: 16 }) => {}
        other => panic!("expected ContextOverflow at 19 of 16, got {other:?}"),
    }
    let spec = AttnSpec {
        n_head: 9,
        n_head_kv: nkv,
        head_dim: hd,
        scale: 0.125,
        sliding_window: None,
        softcap: None,
    };
    let q = b.zeros(2, 9 * hd).unwrap();
    let mut out = b.zeros(2, 9 * hd).unwrap();
    assert!(matches!(
        b.attention(&q, &cache, 0, 0..2, 15, &spec, &mut out),
        Err(BackendError::ContextOverflow { .. })
    ));
}

/// SwiGLU and GeGLU. Tolerances: SiLU 1e-5 relative; GELU 2⁻¹⁰ of `|x|+|gelu|`
/// (ggml rounds the GELU input and output to f16 on the CPU).
/// 3 rows and 32 rows.
pub fn glu<B: Backend>(b: &B) {
    glu_rows(b, 3);
    glu_rows(b, 32);
}

fn glu_rows<B: Backend>(b: &B, t: usize) {
    let mut rng = Rng::new(8);
    let c = 1536;
    let mut g = rng.vec(t * c, 3.0);
    g[0] = -12.0;
    g[1] = 11.0;
    let u = rng.vec(t * c, 1.0);
    for kind in [GluKind::Silu, GluKind::GeluTanh] {
        let (gt, ut) = (upload(b, &g, t, c), upload(b, &u, t, c));
        let mut out = b.zeros(t, c).unwrap();
        b.glu(&gt, &ut, kind, &mut out).unwrap();
        let got = download(b, &out);
        for i in 0..t * c {
            let x = g[i] as f64;
            let (act, tol) = match kind {
                GluKind::Silu => (
                    x / (1.0 + (-x).exp()),
                    1e-5 * (x / (1.0 + (-x).exp())).abs(),
                ),
                GluKind::GeluTanh => {
                    let a = 0.5
                        * x
                        * (1.0
                            + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x))
                                .tanh());
                    (a, (x.abs() + a.abs()) * 2f64.powi(-10))
                }
            };
            let want = act * u[i] as f64;
            let tol = tol * (u[i] as f64).abs() + 1e-6;
            assert!(
                (got[i] as f64 - want).abs() <= tol,
                "glu {kind:?} element {i} (x={x}): got {}, want {want} (tol {tol})",
                got[i]
            );
        }
    }
}

/// add, mul (full and single-row broadcast) and scale.
pub fn elementwise<B: Backend>(b: &B) {
    let mut rng = Rng::new(9);
    let (t, c) = (4, 576);
    let (x, y, row) = (rng.vec(t * c, 1.0), rng.vec(t * c, 1.0), rng.vec(c, 1.0));
    let mut a = upload(b, &x, t, c);
    b.add(&mut a, &upload(b, &y, t, c)).unwrap();
    let want: Vec<f64> = x.iter().zip(&y).map(|(p, q)| (p + q) as f64).collect();
    assert_close("add", &download(b, &a), &want, 0.0, 0.0);
    let mut a = upload(b, &x, t, c);
    b.mul(&mut a, &upload(b, &y, t, c)).unwrap();
    let want: Vec<f64> = x.iter().zip(&y).map(|(p, q)| (p * q) as f64).collect();
    assert_close("mul", &download(b, &a), &want, 0.0, 0.0);
    let mut a = upload(b, &x, t, c);
    b.mul(&mut a, &upload(b, &row, 1, c)).unwrap();
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, p)| (p * row[i % c]) as f64)
        .collect();
    assert_close("mul broadcast", &download(b, &a), &want, 0.0, 0.0);
    let mut a = upload(b, &x, t, c);
    b.scale(&mut a, 0.37).unwrap();
    let want: Vec<f64> = x.iter().map(|p| (p * 0.37) as f64).collect();
    assert_close("scale", &download(b, &a), &want, 0.0, 0.0);
    let mut a = upload(b, &x, t, c);
    assert!(
        b.add(&mut a, &upload(b, &row, 1, c)).is_err(),
        "add with a wrong shape must fail"
    );
}

/// Softmax over vocabulary-sized rows. Tolerance: 1e-5 relative + 1e-9.
pub fn softmax<B: Backend>(b: &B) {
    let mut rng = Rng::new(10);
    let (t, c) = (3, 49152);
    let x = rng.vec(t * c, 4.0);
    let mut a = upload(b, &x, t, c);
    b.softmax(&mut a).unwrap();
    let want: Vec<f64> = x
        .chunks(c)
        .flat_map(|r| {
            let m = r.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let s: f64 = r.iter().map(|&v| (v as f64 - m).exp()).sum();
            r.iter()
                .map(move |&v| (v as f64 - m).exp() / s)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_close("softmax", &download(b, &a), &want, 1e-9, 1e-5);
}

/// argmax picks the largest value, ties to the lowest index.
pub fn argmax<B: Backend>(b: &B) {
    let mut rng = Rng::new(11);
    let c = 49152;
    let mut x = rng.vec(3 * c, 1.0);
    x[c + 100] = 50.0;
    x[c + 200] = 50.0;
    x[2 * c + c - 1] = 60.0;
    let a = upload(b, &x, 3, c);
    let got = b.argmax(&a).unwrap();
    let first = x[..c]
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0 as u32;
    assert_eq!(got, vec![first, 100, c as u32 - 1]);
}

/// Instantiate every test body of [`crate::testsuite`] as `#[test]`s for a
/// backend; `$make` is an expression building it (evaluated per test).
#[macro_export]
macro_rules! backend_tests {
    ($make:expr) => {
        $crate::backend_tests!(@bodies $make;
            get_rows, add_bias, rms_norm, layer_norm, rope, attention, context_overflow,
            glu, elementwise, softmax, argmax);
        $crate::backend_tests!(@matmul $make;
            matmul_f32 F32, matmul_f16 F16, matmul_q4_0 Q4_0, matmul_q4_1 Q4_1,
            matmul_q8_0 Q8_0, matmul_q4_k Q4_K, matmul_q6_k Q6_K, matmul_q5_0 Q5_0,
            matmul_q5_k Q5_K);
    };
    (@bodies $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let backend = $make;
                $crate::testsuite::$name(&backend);
            }
        )*
    };
    (@matmul $make:expr; $($name:ident $ty:ident),*) => {
        $(
            #[test]
            fn $name() {
                let backend = $make;
                $crate::testsuite::matmul_type(&backend, $crate::testsuite::GgmlType::$ty);
            }
        )*
    };
}
