//! Every GPU op against the CPU backend on random inputs at SmolLM2 shapes
//! (hidden 576, 9 heads of 64 over 3 KV heads, FFN 1536, vocabulary 49152).
//!
//! Without a usable GPU each test prints why it is skipped (on the real
//! stderr, so that `cargo test` shows it) and returns.

use std::io::Write as _;
use std::sync::OnceLock;

use backend_core::{
    AttnSpec, Backend, GgmlType, GluKind, RopeMode, RopeSpec, WeightView, YarnSpec,
};
use backend_cpu::{CpuBackend, KvType};
use backend_hip::HipBackend;

const HIDDEN: usize = 576;
const FFN: usize = 1536;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const VOCAB: usize = 49152;

fn gpu() -> Option<&'static HipBackend> {
    static GPU: OnceLock<Result<HipBackend, String>> = OnceLock::new();
    // No device is a skip; a device whose backend fails to start is a failure.
    match GPU.get_or_init(|| match backend_hip::probe(0) {
        Ok(_) => Ok(HipBackend::try_new(0).expect("a GPU is present but the backend failed")),
        Err(e) => Err(e.to_string()),
    }) {
        Ok(b) => Some(b),
        Err(why) => {
            // Written to the process's stderr directly: the test harness does
            // not capture it, so the skip is always visible.
            let _ = writeln!(std::io::stderr(), "SKIPPED (no usable GPU): {why}");
            None
        }
    }
}

/// The GPU backend where its device has the matrix-unit kernels (the
/// prompt GEMM tests), else None (a skip).
fn gpu_with_mma() -> Option<&'static HipBackend> {
    gpu().filter(|g| g.kernels().has_mma())
}

fn cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(|| {
        CpuBackend::new(0)
            .expect("cpu backend")
            .with_kv_type(KvType::F32)
    })
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Max |a-b| relative to max |b|; panics above `tol`, prints the numbers.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut max_diff = 0f32;
    let mut max_ref = 0f32;
    for (g, w) in got.iter().zip(want) {
        assert!(g.is_finite(), "{what}: non-finite output {g}");
        max_diff = max_diff.max((g - w).abs());
        max_ref = max_ref.max(w.abs());
    }
    let rel = max_diff / max_ref.max(1e-6);
    let _ = writeln!(
        std::io::stderr(),
        "{what}: max |gpu-cpu| = {max_diff:.3e}, relative {rel:.3e} (max |cpu| {max_ref:.3})"
    );
    assert!(rel <= tol, "{what}: relative error {rel:e} > {tol:e}");
}

fn quantized(ty: GgmlType, vals: &[f32]) -> Option<Vec<u8>> {
    if !quant::can_quantize(ty) {
        let _ = writeln!(
            std::io::stderr(),
            "  ({} skipped: no quantizer in `quant`)",
            ty.name()
        );
        return None;
    }
    let mut bytes = vec![0u8; quant::bytes_for(ty, vals.len()).ok()?];
    quant::quantize(ty, vals, &mut bytes).ok()?;
    Some(bytes)
}

fn view<'a>(
    name: &'a str,
    ty: GgmlType,
    cols: usize,
    rows: usize,
    data: &'a [u8],
) -> WeightView<'a> {
    WeightView {
        name,
        ggml_type: ty,
        dims: [cols, rows, 1, 1],
        data,
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run_matmul<B: Backend>(b: &B, w: &WeightView<'_>, x: &[f32], t: usize) -> Vec<f32> {
    let wt = b.load_weight(w).unwrap();
    let xt = b.upload(x, t, w.cols()).unwrap();
    let mut out = b.zeros(t, w.rows()).unwrap();
    b.matmul(&wt, &xt, &mut out).unwrap();
    b.download(&out).unwrap()
}

/// The formats of the 8-bit-activation decode mat-vecs.
const MATVEC_Q8_TYPES: [GgmlType; 4] = [
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

const TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
    // Not read by GPU kernels: converted to f16 at upload.
    GgmlType::Q8_1,
    GgmlType::IQ2_XXS,
];

/// One token through the 8-bit mat-vecs with long rows: K = 6144 (three
/// 2048-value tiles of the staged Q6_K kernel, several waves per row) and
/// K = 2048 (one tile, one wave per row), against the exact product; and
/// many short rows (Q4_K with two and four rows per wave, row counts that
/// leave the last wave part empty; one partial Q4_0/Q8_0 tile per row).
#[test]
fn matvec_long_rows() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x5eed);
    for (k, n) in [(6144usize, 70usize), (2048, 300), (512, 8195), (256, 16387)] {
        let w = rng.vec(n * k, 1.0);
        let x = rng.vec(k, 1.0);
        for ty in MATVEC_Q8_TYPES {
            let Some(bytes) = quantized(ty, &w) else {
                continue;
            };
            let v = view("w", ty, k, n, &bytes);
            let got = run_matmul(g, &v, &x, 1);
            let mut wd = vec![0f32; n * k];
            quant::dequantize(ty, &bytes, &mut wd).unwrap();
            let exact: Vec<f32> = (0..n)
                .map(|r| {
                    (0..k)
                        .map(|j| wd[r * k + j] as f64 * x[j] as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            let name = format!("matvec {} {n}x{k}", ty.name());
            assert_close(&format!("{name} vs exact"), &got, &exact, 2e-2);
            let want = run_matmul(cpu(), &v, &x, 1);
            assert_close(&format!("{name} vs cpu"), &got, &want, 2e-2);
        }
    }
}

#[test]
fn matmul_every_type_decode_and_prefill() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x1234_5678);
    // K = 1536 is a whole number of 256-element super-blocks (k-quants).
    let (k, n) = (FFN, HIDDEN);
    let w = rng.vec(n * k, 1.0);
    for &ty in TYPES {
        if !quant::can_dequantize(ty) {
            let _ = writeln!(
                std::io::stderr(),
                "  ({} skipped: `quant` cannot dequantize it)",
                ty.name()
            );
            continue;
        }
        let Some(bytes) = quantized(ty, &w) else {
            continue;
        };
        let v = view("w", ty, k, n, &bytes);
        // 37 and 100 tokens take the matrix-unit kernel where the device has
        // one (f16 operands): 100 spans two token tiles, 576 rows five row
        // tiles; 130 tokens the f16 GEMM (weight dequantized once, 2 x 5 tiles).
        for t in [1usize, 37, 100, 130] {
            let x = rng.vec(t * k, 1.0);
            let got = run_matmul(g, &v, &x, t);
            let exact = exact_product(ty, &bytes, &x, t, n, k);
            let name = format!("matmul {} {n}x{k} T={t}", ty.name());
            // Converted types are f16-rounded at upload; the one-token
            // mat-vec of Q4_0/Q8_0 rounds activations to 8-bit blocks as the
            // CPU does (so it is compared with the CPU's tolerance).
            let format = hip_kernels::GpuFormat::from_ggml(ty);
            let q8 = t == 1 && format.is_some_and(|f| hip_kernels::matvec_q8_supports(f, k));
            let mma = t >= 16 && g.kernels().has_mma();
            let tol = if q8 {
                2e-2
            } else if mma {
                3e-3
            } else if format.is_some() {
                1e-5
            } else {
                2e-3
            };
            assert_close(&format!("{name} vs exact"), &got, &exact, tol);
            // The CPU rounds activations as ggml does (f16, bf16 or 8-bit
            // blocks, by weight type), so it is within that rounding.
            let want = run_matmul(cpu(), &v, &x, t);
            assert_close(&format!("{name} vs cpu"), &got, &want, 2e-2);
        }
    }
}

/// Exact reference of a matmul: the dequantized `n`×`k` weight `bytes` of
/// `ty` times the `t` rows of `x`, summed in f64.
fn exact_product(ty: GgmlType, bytes: &[u8], x: &[f32], t: usize, n: usize, k: usize) -> Vec<f32> {
    let mut wd = vec![0f32; n * k];
    quant::dequantize(ty, bytes, &mut wd).unwrap();
    (0..t * n)
        .map(|i| {
            let (tt, r) = (i / n, i % n);
            (0..k)
                .map(|j| wd[r * k + j] as f64 * x[tt * k + j] as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

/// The prompt GEMM on a grid large enough for its 128-token tiles (300
/// tokens = three token tiles, the last partial; 4,224 rows = 33 row
/// tiles), with K = 512 (16 k-steps: every pipeline stage reused several
/// times), against the exact product of the dequantized weight.
#[test]
fn prompt_gemm_large_grid() {
    let Some(g) = gpu_with_mma() else { return };
    let mut rng = Rng(0x6e33);
    let (k, n, t) = (512usize, 4224usize, 300usize);
    let w = rng.vec(n * k, 1.0);
    let x = rng.vec(t * k, 1.0);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_K] {
        prompt_gemm_case(g, ty, &w, &x, (t, n, k));
    }
}

/// The prompt GEMM's Q4_K and Q6_K weights dequantized with whole-word
/// loads (a thread per 64 values, `dequant_f16_q4_k_pairs`; per 128,
/// `dequant_f16_q6_k_halves`) give the same f16 values as a thread per
/// 32-value chunk: the products are equal to the bit. Row counts whose
/// thread count is not a whole number of blocks (the last group's stores
/// cut short), Q6_K rows of an odd number of super-blocks (every other
/// row's blocks start 2 bytes past a word), and the exact product.
#[test]
fn prompt_gemm_word_dequant_equals_chunk_dequant() {
    let Some(g) = gpu_with_mma() else { return };
    let mut rng = Rng(0x4c0d);
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        for (t, n, k) in [
            (300usize, 301usize, 512usize),
            (130, 4224, 256),
            (200, 7, 1024),
            (140, 33, 768),
        ] {
            let w = rng.vec(n * k, 1.0);
            let x = rng.vec(t * k, 1.0);
            let bytes = quantized(ty, &w).expect("quant quantizes Q4_K and Q6_K");
            let v = view("w", ty, k, n, &bytes);
            g.kernels().set_dequant_words(false);
            let chunks = run_matmul(g, &v, &x, t);
            g.kernels().set_dequant_words(true);
            let words = run_matmul(g, &v, &x, t);
            assert_eq!(
                words,
                chunks,
                "{} {t}x{n}x{k}: word vs chunk dequant",
                ty.name()
            );
            prompt_gemm_case(g, ty, &w, &x, (t, n, k));
        }
    }
}

/// `t` tokens `x` times the weight `w` (`n` rows of `k`) quantized to `ty`
/// through the GPU's prompt matmul, against the exact product (skipped
/// where `quant` cannot quantize `ty`).
fn prompt_gemm_case(
    g: &HipBackend,
    ty: GgmlType,
    w: &[f32],
    x: &[f32],
    (t, n, k): (usize, usize, usize),
) {
    let Some(bytes) = quantized(ty, w) else {
        return;
    };
    let v = view("w", ty, k, n, &bytes);
    let got = run_matmul(g, &v, x, t);
    let exact = exact_product(ty, &bytes, x, t, n, k);
    assert_close(
        &format!("prompt GEMM {} {t}x{n}x{k}", ty.name()),
        &got,
        &exact,
        3e-3,
    );
}

/// The prompt GEMM at shapes for the 128 × 256 tiles of
/// `gemm_f16_tn_n256_s3` (`ROCMFORGE_GPU_GEMM_N256=1|2`; without it the
/// usual kernels), against the exact product; row counts not multiples of
/// 256 (partial last tiles), token counts not multiples of 128. On an H200
/// (132 multiprocessors): 300 × 1000 × 4096 (128 k-steps) is a grid the
/// launcher gives 64-token tiles, so only `=2` takes the wide tiles there,
/// split over k (4 × 3 blocks); 1100 × 3940 and 1100 × 3939 (odd: the
/// scalar stores) × 256 take them with `=1` on 16 × 9 blocks, unsplit
/// (`prompt_gemm_large_grid` is the split case of `=1`).
///
/// With `ROCMFORGE_GPU_GEMM_K64=1` (k-steps of 64) on an H200: the first
/// shape takes `gemm_f16_tn_m64_k64_s3` split (8 × 5 blocks), the next two
/// `gemm_f16_tn_k64_s3` unsplit (`prompt_gemm_large_grid` its split case,
/// `matmul_every_type_decode_and_prefill` at 130 tokens another split
/// m64 one); 1100 × 1240 × 320 the m64 one unsplit (10 × 18 blocks of 64
/// tokens, 5 k-steps); 130 × 1000 × 288 (K not a multiple of 64) the
/// k-step-of-32 `gemm_f16_tn_m64_s3` it falls back to. With
/// `ROCMFORGE_GPU_GEMM_PF=1` the same launches take the `_pf` twins of the
/// k64 kernels (fragments double-buffered in registers).
#[test]
fn prompt_gemm_wide_tiles() {
    let Some(g) = gpu_with_mma() else { return };
    let mut rng = Rng(0x2560);
    for (t, n, k) in [
        (300usize, 1000usize, 4096usize),
        (1100, 3940, 256),
        (1100, 3939, 256),
        (1100, 1240, 320),
        (130, 1000, 288),
    ] {
        let w = rng.vec(n * k, 1.0);
        let x = rng.vec(t * k, 1.0);
        prompt_gemm_case(g, GgmlType::Q4_0, &w, &x, (t, n, k));
    }
}

#[test]
fn get_rows_every_type() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(99);
    let (k, n) = (1024, 300);
    let table = rng.vec(n * k, 1.0);
    let ids = [0u32, 5, 299, 17, 17, 123];
    for &ty in TYPES {
        if !quant::can_dequantize(ty) {
            continue;
        }
        let Some(bytes) = quantized(ty, &table) else {
            continue;
        };
        let v = view("emb", ty, k, n, &bytes);
        let c = cpu();
        let cw = c.load_weight(&v).unwrap();
        let mut co = c.zeros(ids.len(), k).unwrap();
        c.get_rows(&cw, &ids, &mut co).unwrap();
        let want = c.download(&co).unwrap();
        let wt = g.load_weight(&v).unwrap();
        let mut o = g.zeros(ids.len(), k).unwrap();
        g.get_rows(&wt, &ids, &mut o).unwrap();
        let got = g.download(&o).unwrap();
        // Native formats dequantize exactly as the CPU; converted ones are f16-rounded.
        let tol = if hip_kernels::GpuFormat::from_ggml(ty).is_some() {
            1e-6
        } else {
            1e-3
        };
        assert_close(&format!("get_rows {}", ty.name()), &got, &want, tol);
    }
    // Out-of-range ids are an error, not a read out of bounds.
    let v = view("emb", GgmlType::F32, k, n, &[]);
    let bytes = f32_bytes(&table);
    let v = WeightView { data: &bytes, ..v };
    let wt = g.load_weight(&v).unwrap();
    let mut o = g.zeros(1, k).unwrap();
    assert!(g.get_rows(&wt, &[n as u32], &mut o).is_err());
}

fn norm_case<B: Backend>(
    b: &B,
    x: &[f32],
    rows: usize,
    w: &[f32],
    group: usize,
    layer: bool,
) -> Vec<f32> {
    let wb = f32_bytes(w);
    let wt = b
        .load_weight(&view("norm", GgmlType::F32, w.len(), 1, &wb))
        .unwrap();
    let xt = b.upload(x, rows, x.len() / rows).unwrap();
    let mut out = b.zeros(rows, x.len() / rows).unwrap();
    if layer {
        b.layer_norm(&xt, Some(&wt), Some(&wt), 1e-5, &mut out)
            .unwrap();
    } else {
        b.rms_norm(&xt, Some(&wt), group, 1e-5, &mut out).unwrap();
    }
    b.download(&out).unwrap()
}

#[test]
fn norms() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(7);
    let rows = 13;
    let x = rng.vec(rows * HIDDEN, 3.0);
    let w = rng.vec(HIDDEN, 1.0);
    assert_close(
        "rms_norm row",
        &norm_case(g, &x, rows, &w, HIDDEN, false),
        &norm_case(cpu(), &x, rows, &w, HIDDEN, false),
        1e-5,
    );
    let wh = rng.vec(HEAD_DIM, 1.0);
    assert_close(
        "rms_norm per head",
        &norm_case(g, &x, rows, &wh, HEAD_DIM, false),
        &norm_case(cpu(), &x, rows, &wh, HEAD_DIM, false),
        1e-5,
    );
    assert_close(
        "layer_norm",
        &norm_case(g, &x, rows, &w, HIDDEN, true),
        &norm_case(cpu(), &x, rows, &w, HIDDEN, true),
        1e-5,
    );
}

/// NeoX RoPE over whole heads, base 10000, no scaling.
fn neox_rope() -> RopeSpec {
    RopeSpec {
        mode: RopeMode::Neox,
        n_dims: HEAD_DIM,
        freq_base: 10000.0,
        freq_scale: 1.0,
        yarn: None,
    }
}

/// `base` with positions scaled by 1/4 and YaRN (ramp 1..32, original
/// context 4096).
fn yarn_quarter(base: RopeSpec) -> RopeSpec {
    RopeSpec {
        freq_scale: 0.25,
        yarn: Some(YarnSpec {
            ext_factor: 1.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 4096,
        }),
        ..base
    }
}

fn rope_case<B: Backend>(b: &B, x: &[f32], rows: usize, pos: &[u32], spec: &RopeSpec) -> Vec<f32> {
    let mut t = b.upload(x, rows, x.len() / rows).unwrap();
    b.rope(&mut t, HEADS, pos, spec).unwrap();
    b.download(&t).unwrap()
}

#[test]
fn rope_normal_neox_yarn() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(11);
    let rows = 20;
    let x = rng.vec(rows * HEADS * HEAD_DIM, 2.0);
    let pos: Vec<u32> = (0..rows as u32).map(|i| i * 37 + 3).collect();
    let base = RopeSpec {
        mode: RopeMode::Normal,
        n_dims: HEAD_DIM,
        freq_base: 10000.0,
        freq_scale: 1.0,
        yarn: None,
    };
    let specs = [
        ("rope normal", base),
        (
            "rope neox",
            RopeSpec {
                mode: RopeMode::Neox,
                ..base
            },
        ),
        ("rope partial", RopeSpec { n_dims: 32, ..base }),
        (
            "rope yarn",
            yarn_quarter(RopeSpec {
                mode: RopeMode::Neox,
                freq_base: 1_000_000.0,
                ..base
            }),
        ),
    ];
    for (name, spec) in specs {
        assert_close(
            name,
            &rope_case(g, &x, rows, &pos, &spec),
            &rope_case(cpu(), &x, rows, &pos, &spec),
            1e-5,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn attention_case<B: Backend>(
    b: &B,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_ctx: usize,
    cached: usize,
    rows: usize,
    spec: &AttnSpec,
) -> Vec<f32> {
    let hd = spec.head_dim;
    let kvw = KV_HEADS * hd;
    let mut cache = b.kv_cache(2, n_ctx, KV_HEADS, hd).unwrap();
    // Earlier positions first, then the new rows, as a model does.
    let total = cached + rows;
    let kt = b.upload(k, total, kvw).unwrap();
    let vt = b.upload(v, total, kvw).unwrap();
    b.kv_store(&mut cache, 1, &kt, &vt, 0..cached, 0).unwrap();
    b.kv_store(&mut cache, 1, &kt, &vt, cached..total, cached)
        .unwrap();
    let qt = b.upload(q, rows + 2, HEADS * hd).unwrap();
    let mut out = b.zeros(rows + 2, HEADS * hd).unwrap();
    // Query rows 1..=rows of the tensor (row 0 and the last are another sequence's).
    b.attention(&qt, &cache, 1, 1..rows + 1, cached, spec, &mut out)
        .unwrap();
    let all = b.download(&out).unwrap();
    all[HEADS * hd..(rows + 1) * HEADS * hd].to_vec()
}

#[test]
fn attention_decode_and_prefill() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(5);
    let n_ctx = 1024;
    let spec = AttnSpec {
        n_head: HEADS,
        n_head_kv: KV_HEADS,
        head_dim: HEAD_DIM,
        scale: 1.0 / (HEAD_DIM as f32).sqrt(),
        sliding_window: None,
        softcap: None,
    };
    let cases = [
        ("attention decode pos 700", 700, 1, spec),
        ("attention prefill 64 from 0", 0, 64, spec),
        ("attention prefill 100 after 300", 300, 100, spec),
        // 16 and more rows take the tiled prompt kernel; 37 rows end in a
        // partial tile, the window cuts keys inside a tile.
        (
            "attention prefill 37 after 150, window 70, softcap 40",
            150,
            37,
            AttnSpec {
                sliding_window: Some(70),
                softcap: Some(40.0),
                ..spec
            },
        ),
        (
            "attention window 128",
            500,
            9,
            AttnSpec {
                sliding_window: Some(128),
                ..spec
            },
        ),
        // Few rows take the wave-per-key kernel; 402 keys are two of its tiles.
        ("attention 2 rows at 400 (two tiles)", 400, 2, spec),
        (
            "attention softcap 50",
            200,
            3,
            AttnSpec {
                softcap: Some(50.0),
                ..spec
            },
        ),
        // Long key ranges with few query rows take the split-key path.
        (
            "attention decode window 600 (split)",
            900,
            1,
            AttnSpec {
                sliding_window: Some(600),
                ..spec
            },
        ),
        (
            "attention 3 rows at 800 softcap (split)",
            800,
            3,
            AttnSpec {
                softcap: Some(30.0),
                ..spec
            },
        ),
    ];
    // Heads of 128 and 96 dims (four and three float4s per lane of the
    // key-group decode kernel), decode rows from a short and a long context.
    let wide = |head_dim: usize| AttnSpec {
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
        ..spec
    };
    let more = [
        ("attention decode head 128 at 5", 5, 1, wide(128)),
        ("attention decode head 128 at 300", 300, 1, wide(128)),
        ("attention 2 rows head 96 at 130", 130, 2, wide(96)),
        (
            "attention decode head 128 at 90, window 40, softcap 20",
            90,
            1,
            AttnSpec {
                sliding_window: Some(40),
                softcap: Some(20.0),
                ..wide(128)
            },
        ),
        ("attention decode at 0", 0, 1, spec),
        // Prompts on the matrix units (where the device has them): heads of
        // 128, a window cutting inside key tiles, rows ending mid-tile.
        ("attention prefill 80 after 20, head 128", 20, 80, wide(128)),
        (
            "attention prefill 150 after 90, head 128, window 100, softcap 30",
            90,
            150,
            AttnSpec {
                sliding_window: Some(100),
                softcap: Some(30.0),
                ..wide(128)
            },
        ),
    ];
    for (name, cached, rows, spec) in cases.into_iter().chain(more) {
        let hd = spec.head_dim;
        let total = cached + rows;
        let q = rng.vec((rows + 2) * HEADS * hd, 1.0);
        let k = rng.vec(total * KV_HEADS * hd, 1.0);
        let v = rng.vec(total * KV_HEADS * hd, 1.0);
        let got = attention_case(g, &q, &k, &v, n_ctx, cached, rows, &spec);
        let want = attention_case(cpu(), &q, &k, &v, n_ctx, cached, rows, &spec);
        // Prompt rows on the matrix units have f16 operands.
        let mma = rows >= 16 && g.kernels().has_mma() && (hd == 64 || hd == 128);
        assert_close(name, &got, &want, if mma { 3e-3 } else { 1e-4 });
    }
    // Past the end of the cache is an error.
    let mut cache = g.kv_cache(1, 4, KV_HEADS, HEAD_DIM).unwrap();
    let kt = g.zeros(5, KV_HEADS * HEAD_DIM).unwrap();
    assert!(g.kv_store(&mut cache, 0, &kt, &kt, 0..5, 0).is_err());
}

#[test]
fn elementwise_ops() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let mut rng = Rng(3);
    let rows = 7;
    let a = rng.vec(rows * FFN, 6.0);
    let b = rng.vec(rows * FFN, 2.0);
    for (name, kind, tol) in [
        ("glu silu", GluKind::Silu, 1e-5),
        ("glu gelu", GluKind::GeluTanh, 2e-3),
    ] {
        let run = |be: &dyn Fn() -> Vec<f32>| be();
        let got = run(&|| {
            let (x, y) = (
                g.upload(&a, rows, FFN).unwrap(),
                g.upload(&b, rows, FFN).unwrap(),
            );
            let mut o = g.zeros(rows, FFN).unwrap();
            g.glu(&x, &y, kind, &mut o).unwrap();
            g.download(&o).unwrap()
        });
        let want = run(&|| {
            let (x, y) = (
                c.upload(&a, rows, FFN).unwrap(),
                c.upload(&b, rows, FFN).unwrap(),
            );
            let mut o = c.zeros(rows, FFN).unwrap();
            c.glu(&x, &y, kind, &mut o).unwrap();
            c.download(&o).unwrap()
        });
        assert_close(name, &got, &want, tol);
    }
    fn binop<B: Backend>(be: &B, a: &[f32], b: &[f32], brows: usize, op: u8) -> Vec<f32> {
        let cols = FFN;
        let mut x = be.upload(a, a.len() / cols, cols).unwrap();
        let y = be.upload(&b[..brows * cols], brows, cols).unwrap();
        match op {
            0 => be.add(&mut x, &y).unwrap(),
            1 => be.mul(&mut x, &y).unwrap(),
            2 => be.scale(&mut x, 0.37).unwrap(),
            _ => be.softmax(&mut x).unwrap(),
        }
        be.download(&x).unwrap()
    }
    assert_close(
        "add",
        &binop(g, &a, &b, rows, 0),
        &binop(c, &a, &b, rows, 0),
        0.0,
    );
    assert_close(
        "mul",
        &binop(g, &a, &b, rows, 1),
        &binop(c, &a, &b, rows, 1),
        0.0,
    );
    assert_close(
        "mul broadcast row",
        &binop(g, &a, &b, 1, 1),
        &binop(c, &a, &b, 1, 1),
        0.0,
    );
    assert_close(
        "scale",
        &binop(g, &a, &b, rows, 2),
        &binop(c, &a, &b, rows, 2),
        0.0,
    );
    assert_close(
        "softmax",
        &binop(g, &a, &b, rows, 3),
        &binop(c, &a, &b, rows, 3),
        1e-5,
    );

    // Bias: a 1-D weight broadcast over rows.
    let bias = rng.vec(FFN, 1.0);
    let bb = f32_bytes(&bias);
    let bv = view("bias", GgmlType::F32, FFN, 1, &bb);
    let with_bias = |be_gpu: bool| {
        if be_gpu {
            let w = g.load_weight(&bv).unwrap();
            let mut x = g.upload(&a, rows, FFN).unwrap();
            g.add_bias(&mut x, &w).unwrap();
            g.download(&x).unwrap()
        } else {
            let w = c.load_weight(&bv).unwrap();
            let mut x = c.upload(&a, rows, FFN).unwrap();
            c.add_bias(&mut x, &w).unwrap();
            c.download(&x).unwrap()
        }
    };
    assert_close("add_bias", &with_bias(true), &with_bias(false), 0.0);

    // Argmax over the vocabulary, with a planted tie (lowest index wins).
    let mut logits = rng.vec(3 * VOCAB, 10.0);
    logits[VOCAB + 100] = 50.0;
    logits[VOCAB + 40000] = 50.0;
    let gt = g.upload(&logits, 3, VOCAB).unwrap();
    let ct = c.upload(&logits, 3, VOCAB).unwrap();
    let got = g.argmax(&gt).unwrap();
    assert_eq!(got, c.argmax(&ct).unwrap());
    assert_eq!(got[1], 100);
}

/// Argmax on rows whose width is a multiple of 4 (16-byte loads) and not
/// (rows after the first start misaligned: 4-byte loads): ties inside one
/// 16-byte load, across threads and across loads go to the lowest index, a
/// NaN never wins, equal to the CPU backend.
#[test]
fn argmax_ties_nan_and_widths() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let mut rng = Rng(0xa4a4);
    for cols in [49152usize, 4100, 1003, 1000, 6] {
        let rows = 4;
        let mut v = rng.vec(rows * cols, 10.0);
        let at = |r: usize, i: usize| r * cols + i.min(cols - 1);
        // Row 0: a tie inside one 16-byte load (and later ones).
        for i in [cols / 2 + 1, cols / 2 + 2, cols - 1] {
            v[at(0, i)] = 60.0;
        }
        // Row 1: a NaN first, then the largest value.
        v[at(1, 0)] = f32::NAN;
        v[at(1, cols / 3)] = 55.0;
        // Row 2: ties a thread and a load apart.
        for i in [cols / 4, cols / 4 + 1024, cols / 4 + 4096] {
            v[at(2, i)] = 70.0;
        }
        let gt = g.upload(&v, rows, cols).unwrap();
        let ct = c.upload(&v, rows, cols).unwrap();
        let got = g.argmax(&gt).unwrap();
        assert_eq!(got, c.argmax(&ct).unwrap(), "argmax of rows of {cols}");
        assert_eq!(
            got[0] as usize,
            (cols / 2 + 1).min(cols - 1),
            "row 0 of {cols}"
        );
        assert_eq!(got[1] as usize, cols / 3, "row 1 of {cols}");
        assert_eq!(got[2] as usize, cols / 4, "row 2 of {cols}");
    }
}

#[test]
fn shape_errors_are_errors() {
    let Some(g) = gpu() else { return };
    let a = g.zeros(2, 3).unwrap();
    let mut b = g.zeros(3, 2).unwrap();
    assert!(g.add(&mut b, &a).is_err());
    let wb = f32_bytes(&[0.0; 6]);
    let w = g.load_weight(&view("w", GgmlType::F32, 3, 2, &wb)).unwrap();
    let mut out = g.zeros(2, 5).unwrap();
    assert!(g.matmul(&w, &a, &mut out).is_err());
    // Truncated weight data is rejected at load.
    assert!(g
        .load_weight(&view("w", GgmlType::Q4_0, 32, 2, &[0u8; 20]))
        .is_err());
}

#[test]
fn several_threads_share_one_backend() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(77);
    let (k, n) = (HIDDEN, FFN);
    let w = rng.vec(n * k, 1.0);
    let bytes = quantized(GgmlType::Q8_0, &w).unwrap();
    let v = view("w", GgmlType::Q8_0, k, n, &bytes);
    let wt = g.load_weight(&v).unwrap();
    let xs: Vec<Vec<f32>> = (0..8).map(|_| rng.vec(3 * k, 1.0)).collect();
    let wants: Vec<Vec<f32>> = xs.iter().map(|x| run_matmul(g, &v, x, 3)).collect();
    std::thread::scope(|s| {
        for (x, want) in xs.iter().zip(&wants) {
            let wt = &wt;
            s.spawn(move || {
                for _ in 0..25 {
                    let xt = g.upload(x, 3, k).unwrap();
                    let mut out = g.zeros(3, n).unwrap();
                    g.matmul(wt, &xt, &mut out).unwrap();
                    assert_eq!(&g.download(&out).unwrap(), want);
                }
            });
        }
    });
}

/// Token selection on the device picks exactly what the host reference
/// picks: greedy and sampled, with penalties, soft-capping, top-k up to the
/// device limit, top-p, min-p, and many tied logits.
#[test]
fn select_tokens_equals_the_host_reference() {
    use backend_core::{select_reference, SampleSpec, SelectMode, TokenSelect, MAX_DEVICE_TOP_K};
    let Some(g) = gpu() else { return };
    assert!(g.selects_tokens());
    let mut rng = Rng(0x5e1ec7);
    let rows = 3;
    let smooth = rng.vec(rows * VOCAB, 8.0);
    // Quarter steps: thousands of equal logits, so tie-breaking is exercised.
    let tied: Vec<f32> = smooth.iter().map(|v| (v * 4.0).round() / 4.0).collect();
    let mut checked = 0;
    for (li, logits) in [smooth, tied].iter().enumerate() {
        for case in 0..24 {
            let specs: Vec<TokenSelect> = (0..rows)
                .map(|r| {
                    let u = (rng.next() as f64 + 1.0) / 2.0;
                    let top_k = [1, 2, 40, 333, MAX_DEVICE_TOP_K][(case + r) % 5];
                    TokenSelect {
                        softcap: (case % 4 == 3).then_some(6.0),
                        penalties: if case % 3 == 0 {
                            vec![(5, 1), (17, 3), (VOCAB as u32 - 1, 2)]
                        } else {
                            Vec::new()
                        },
                        repeat_penalty: 1.3,
                        presence_penalty: 0.2,
                        frequency_penalty: 0.1,
                        mode: if (case + r) % 6 == 5 {
                            SelectMode::Greedy
                        } else {
                            SelectMode::Sample(SampleSpec {
                                top_k,
                                top_p: [1.0, 0.95, 0.5][case % 3],
                                min_p: [0.0, 0.05, 0.3][(case / 3) % 3],
                                temperature: [0.8, 1.0, 2.5][(case / 2) % 3],
                                uniform: u.clamp(0.0, 0.999_999),
                            })
                        },
                    }
                })
                .collect();
            let mut t = g.upload(logits, rows, VOCAB).unwrap();
            let got = g.select_tokens(&mut t, &specs).unwrap();
            for r in 0..rows {
                let row = &logits[r * VOCAB..(r + 1) * VOCAB];
                let want = select_reference(row, &specs[r]);
                assert_eq!(
                    got[r], want,
                    "logits set {li}, case {case}, row {r}: {:?}",
                    specs[r]
                );
                checked += 1;
            }
        }
    }
    // A top_k beyond the device's limit is an error, not a wrong answer.
    let mut t = g.upload(&vec![0.0; VOCAB], 1, VOCAB).unwrap();
    let too_big = TokenSelect {
        mode: SelectMode::Sample(SampleSpec {
            top_k: MAX_DEVICE_TOP_K + 1,
            top_p: 1.0,
            min_p: 0.0,
            temperature: 1.0,
            uniform: 0.5,
        }),
        ..Default::default()
    };
    assert!(g.select_tokens(&mut t, &[too_big]).is_err());
    eprintln!("select_tokens: {checked} picks equal to the host reference");
}

/// The norms and GLU write the 8-bit form of a one-token result for the
/// decode mat-vec that reads it next; the mat-vec's output must be the same
/// to the bit as when it quantizes the row itself (another op in between
/// makes the backend forget the fused form).
#[test]
fn fused_8bit_rows_equal_the_separate_quantize() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0xf00d);
    for (k, n) in [(4096usize, 96usize), (HIDDEN, 64)] {
        let x = rng.vec(k, 3.0);
        let y = rng.vec(k, 1.0);
        let nw = rng.vec(k, 1.0);
        let nw_bytes = f32_bytes(&nw);
        let norm_w = g
            .load_weight(&view("norm", GgmlType::F32, k, 1, &nw_bytes))
            .unwrap();
        for ty in MATVEC_Q8_TYPES {
            if !k.is_multiple_of(ty.block_size()) {
                continue;
            }
            let Some(bytes) = quantized(ty, &rng.vec(n * k, 1.0)) else {
                continue;
            };
            let w = g.load_weight(&view("w", ty, k, n, &bytes)).unwrap();
            // `between`: an unrelated op after the producer, so the mat-vec
            // quantizes the row itself.
            let run = |op: u8, between: bool| -> Vec<f32> {
                let mut xt = g.upload(&x, 1, k).unwrap();
                let yt = g.upload(&y, 1, k).unwrap();
                let mut h = g.output(1, k).unwrap();
                match op {
                    0 => g.rms_norm(&xt, Some(&norm_w), k, 1e-5, &mut h).unwrap(),
                    1 => g
                        .add_rms_norm(&mut xt, &yt, Some(&norm_w), k, 1e-5, &mut h)
                        .unwrap(),
                    _ => g.glu(&xt, &yt, GluKind::Silu, &mut h).unwrap(),
                }
                if between {
                    let mut other = g.upload(&[1.0; 32], 1, 32).unwrap();
                    g.scale(&mut other, 2.0).unwrap();
                }
                let mut out = g.output(1, n).unwrap();
                g.matmul(&w, &h, &mut out).unwrap();
                g.download(&out).unwrap()
            };
            for (op, name) in [(0u8, "rms_norm"), (1, "add_rms_norm"), (2, "glu")] {
                let fused = run(op, false);
                let separate = run(op, true);
                assert_eq!(
                    fused.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    separate.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{name} then {} {n}x{k}: fused 8-bit row differs",
                    ty.name()
                );
            }
        }
    }
}

/// A feed-forward's gate, up and GLU for one token (`matmul_glu`: one
/// launch for Q4_0, Q8_0 and Q4_K; Q6_K keeps the separate ops) equals, to
/// the bit, the mat-vecs and GLU run apart, and so does the down projection
/// that reads the fused launch's 8-bit output (also after an unrelated op,
/// when it quantizes the row itself); both against the CPU's result.
#[test]
fn matmul_glu_equals_the_separate_ops() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x91u64);
    // (k, n): one pass per row (short rows; row counts of 3 blocks of 32),
    // and a layer-sized one.
    for (k, n) in [(256usize, 96usize), (2048, 4096)] {
        let x = rng.vec(k, 1.0);
        for ty in MATVEC_Q8_TYPES {
            let (Some(gb), Some(ub), Some(db)) = (
                quantized(ty, &rng.vec(n * k, 1.0)),
                quantized(ty, &rng.vec(n * k, 1.0)),
                quantized(ty, &rng.vec(k * n, 1.0)),
            ) else {
                continue;
            };
            for kind in [GluKind::Silu, GluKind::GeluTanh] {
                let run = |b: &dyn Fn(&HipTensorOf, &WeightOf, &WeightOf, &mut HipTensorOf),
                           between: bool| {
                    let gw = g.load_weight(&view("gate", ty, k, n, &gb)).unwrap();
                    let uw = g.load_weight(&view("up", ty, k, n, &ub)).unwrap();
                    let dw = g.load_weight(&view("down", ty, n, k, &db)).unwrap();
                    let xt = g.upload(&x, 1, k).unwrap();
                    let mut a = g.output(1, n).unwrap();
                    b(&xt, &gw, &uw, &mut a);
                    if between {
                        let mut other = g.upload(&[1.0; 32], 1, 32).unwrap();
                        g.scale(&mut other, 2.0).unwrap();
                    }
                    let mut o = g.output(1, k).unwrap();
                    g.matmul(&dw, &a, &mut o).unwrap();
                    (g.download(&a).unwrap(), g.download(&o).unwrap())
                };
                // The 16-wave blocks (`set_glu_fuse`), or the four-wave ones
                // with group counters (`set_glu_group`).
                let fused_as = |group: bool| {
                    move |x: &HipTensorOf, gw: &WeightOf, uw: &WeightOf, a: &mut HipTensorOf| {
                        g.set_glu_fuse(!group);
                        g.set_glu_group(group);
                        let r = g.matmul_glu(x, gw, uw, kind, a);
                        g.set_glu_fuse(
                            std::env::var_os("ROCMFORGE_GPU_GLU_FUSE").is_some_and(|v| v == "1"),
                        );
                        g.set_glu_group(
                            std::env::var_os("ROCMFORGE_GPU_GLU_GROUP").is_some_and(|v| v == "1"),
                        );
                        r.unwrap()
                    }
                };
                let apart = |x: &HipTensorOf, gw: &WeightOf, uw: &WeightOf, a: &mut HipTensorOf| {
                    backend_core::matmul_glu_separate(g, x, gw, uw, kind, a).unwrap()
                };
                let what = format!("{} {kind:?} {n}x{k}", ty.name());
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let (a_sep, o_sep) = run(&apart, false);
                for group in [false, true] {
                    let fused = fused_as(group);
                    // Twice in a row with counters: they must be back at 0.
                    for between in [false, true, false] {
                        let (a_f, o_f) = run(&fused, between);
                        let how = if group {
                            "group counters"
                        } else {
                            "16-wave blocks"
                        };
                        assert_eq!(
                            bits(&a_f),
                            bits(&a_sep),
                            "{what} ({how}): GLU output differs"
                        );
                        assert_eq!(
                            bits(&o_f),
                            bits(&o_sep),
                            "{what} ({how}): down projection differs"
                        );
                    }
                }
                // The CPU: the same ops (its own 8-bit activations).
                let c = cpu();
                let gw = c.load_weight(&view("gate", ty, k, n, &gb)).unwrap();
                let uw = c.load_weight(&view("up", ty, k, n, &ub)).unwrap();
                let xt = c.upload(&x, 1, k).unwrap();
                let mut a = c.output(1, n).unwrap();
                c.matmul_glu(&xt, &gw, &uw, kind, &mut a).unwrap();
                assert_close(&what, &a_sep, &c.download(&a).unwrap(), 2e-2);
            }
        }
    }
}

type HipTensorOf = <HipBackend as Backend>::Tensor;
type WeightOf = <HipBackend as Backend>::Weight;

/// RoPE of queries and keys in one launch equals two separate ropes (and
/// the CPU's).
#[test]
fn rope_qk_equals_two_ropes() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(21);
    let rows = 5;
    let q = rng.vec(rows * HEADS * HEAD_DIM, 2.0);
    let k = rng.vec(rows * KV_HEADS * HEAD_DIM, 2.0);
    let pos: Vec<u32> = (0..rows as u32).map(|i| i * 11 + 7).collect();
    let spec = neox_rope();
    fn both<B: Backend>(
        b: &B,
        q: &[f32],
        k: &[f32],
        rows: usize,
        pos: &[u32],
        spec: &RopeSpec,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut qt = b.upload(q, rows, HEADS * HEAD_DIM).unwrap();
        let mut kt = b.upload(k, rows, KV_HEADS * HEAD_DIM).unwrap();
        b.rope_qk(&mut qt, HEADS, &mut kt, KV_HEADS, pos, spec)
            .unwrap();
        (b.download(&qt).unwrap(), b.download(&kt).unwrap())
    }
    let (gq, gk) = both(g, &q, &k, rows, &pos, &spec);
    let (cq, ck) = both(cpu(), &q, &k, rows, &pos, &spec);
    assert_close("rope_qk q", &gq, &cq, 1e-5);
    assert_close("rope_qk k", &gk, &ck, 1e-5);
    let mut qt = g.upload(&q, rows, HEADS * HEAD_DIM).unwrap();
    g.rope(&mut qt, HEADS, &pos, &spec).unwrap();
    assert_eq!(g.download(&qt).unwrap(), gq, "rope_qk q vs rope");
}

/// Decode attention writes the 8-bit form of its one output row for the
/// output projection (short contexts through `attention_f32`, long ones
/// through the split kernels and their combine); the projection must equal
/// the one that quantizes the row itself, to the bit.
#[test]
fn fused_8bit_attention_row_equals_the_separate_quantize() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0xa77);
    let qw = HEADS * HEAD_DIM;
    let kvw = KV_HEADS * HEAD_DIM;
    let n = 48;
    let Some(bytes) = quantized(GgmlType::Q8_0, &rng.vec(n * qw, 1.0)) else {
        return;
    };
    let w = g
        .load_weight(&view("wo", GgmlType::Q8_0, qw, n, &bytes))
        .unwrap();
    let spec = AttnSpec {
        n_head: HEADS,
        n_head_kv: KV_HEADS,
        head_dim: HEAD_DIM,
        scale: 0.125,
        sliding_window: None,
        softcap: None,
    };
    for cached in [40usize, 1500] {
        let total = cached + 1;
        let k = rng.vec(total * kvw, 1.0);
        let v = rng.vec(total * kvw, 1.0);
        let q = rng.vec(qw, 1.0);
        let mut cache = g.kv_cache(1, total, KV_HEADS, HEAD_DIM).unwrap();
        let kt = g.upload(&k, total, kvw).unwrap();
        let vt = g.upload(&v, total, kvw).unwrap();
        g.kv_store(&mut cache, 0, &kt, &vt, 0..total, 0).unwrap();
        let qt = g.upload(&q, 1, qw).unwrap();
        let run = |between: bool| -> Vec<u32> {
            let mut attn = g.output(1, qw).unwrap();
            g.attention(&qt, &cache, 0, 0..1, cached, &spec, &mut attn)
                .unwrap();
            if between {
                let mut other = g.upload(&[1.0; 32], 1, 32).unwrap();
                g.scale(&mut other, 2.0).unwrap();
            }
            let mut out = g.output(1, n).unwrap();
            g.matmul(&w, &attn, &mut out).unwrap();
            g.download(&out)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(run(false), run(true), "attention over {total} positions");
    }
}

/// RoPE with the cache write in the same launch (`rope_qk_store`) leaves
/// the same queries and the same cache as `rope_qk` + `kv_store` (seen
/// through attention over it, to the bit), and matches the CPU.
#[test]
fn rope_qk_store_equals_rope_then_store() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(77);
    let (rows, start, n_ctx) = (3usize, 5usize, 12usize);
    let (qw, kvw) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let q = rng.vec(rows * qw, 1.0);
    let k = rng.vec(rows * kvw, 1.0);
    let v = rng.vec(rows * kvw, 1.0);
    let pos: Vec<u32> = (start as u32..(start + rows) as u32).collect();
    let spec = neox_rope();
    let attn = AttnSpec {
        n_head: HEADS,
        n_head_kv: KV_HEADS,
        head_dim: HEAD_DIM,
        scale: 0.125,
        sliding_window: None,
        softcap: None,
    };
    #[allow(clippy::too_many_arguments)]
    fn run<B: Backend>(
        b: &B,
        fused: bool,
        (q, k, v): (&[f32], &[f32], &[f32]),
        rows: usize,
        start: usize,
        n_ctx: usize,
        pos: &[u32],
        spec: &RopeSpec,
        attn: &AttnSpec,
    ) -> (Vec<f32>, Vec<f32>) {
        let (qw, kvw) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
        let mut qt = b.upload(q, rows, qw).unwrap();
        let mut kt = b.upload(k, rows, kvw).unwrap();
        let vt = b.upload(v, rows, kvw).unwrap();
        let mut cache = b.kv_cache(2, n_ctx, KV_HEADS, HEAD_DIM).unwrap();
        if fused {
            b.rope_qk_store(
                &mut qt, HEADS, &mut kt, KV_HEADS, &vt, pos, spec, &mut cache, 1, start,
            )
            .unwrap();
        } else {
            b.rope_qk(&mut qt, HEADS, &mut kt, KV_HEADS, pos, spec)
                .unwrap();
            b.kv_store(&mut cache, 1, &kt, &vt, 0..rows, start).unwrap();
        }
        let mut out = b.zeros(rows, qw).unwrap();
        b.attention(&qt, &cache, 1, 0..rows, start, attn, &mut out)
            .unwrap();
        (b.download(&qt).unwrap(), b.download(&out).unwrap())
    }
    let args = (&q[..], &k[..], &v[..]);
    let fused = run(g, true, args, rows, start, n_ctx, &pos, &spec, &attn);
    let apart = run(g, false, args, rows, start, n_ctx, &pos, &spec, &attn);
    assert_eq!(fused, apart, "rope_qk_store vs rope_qk + kv_store");
    let cpu_ref = run(cpu(), true, args, rows, start, n_ctx, &pos, &spec, &attn);
    assert_close("rope_qk_store q", &fused.0, &cpu_ref.0, 1e-5);
    assert_close("rope_qk_store attention", &fused.1, &cpu_ref.1, 1e-4);
}

/// One decode row through `rope_store_attention` (on the GPU one launch:
/// rotation, cache write and attention) gives the attention of RoPE +
/// cache write + attention as separate ops, and writes the same cache row
/// (seen by the next position's attention), for adjacent and NeoX pairs,
/// YaRN, a sliding window and soft-capping; and matches the CPU.
#[test]
fn rope_store_attention_one_row_equals_the_separate_ops() {
    let Some(g) = gpu() else { return };
    g.set_fused_attention(true);
    let mut rng = Rng(0x5eed);
    let (qw, kvw) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let normal = RopeSpec {
        mode: RopeMode::Normal,
        ..neox_rope()
    };
    let yarn = yarn_quarter(neox_rope());
    let plain = AttnSpec {
        n_head: HEADS,
        n_head_kv: KV_HEADS,
        head_dim: HEAD_DIM,
        scale: 0.125,
        sliding_window: None,
        softcap: None,
    };
    let windowed = AttnSpec {
        sliding_window: Some(16),
        softcap: Some(30.0),
        ..plain
    };
    let cases = [
        (normal, plain, 40usize),
        (neox_rope(), plain, 300),
        (yarn, plain, 7),
        (neox_rope(), windowed, 60),
    ];
    for (rope, attn, start) in cases {
        let n_ctx = start + 2;
        let old_k = rng.vec(start * kvw, 1.0);
        let old_v = rng.vec(start * kvw, 1.0);
        let steps: Vec<[Vec<f32>; 3]> = (0..2)
            .map(|_| [rng.vec(qw, 1.0), rng.vec(kvw, 1.0), rng.vec(kvw, 1.0)])
            .collect();
        // Attention outputs of positions start and start + 1, and whether
        // the queries were left unrotated.
        let gpu_run = |fused: bool| -> (Vec<Vec<f32>>, bool) {
            steps_through(g, fused, start, n_ctx, &old_k, &old_v, &steps, &rope, &attn)
        };
        let (fused, unrotated) = gpu_run(true);
        let (apart, _) = gpu_run(false);
        assert!(unrotated, "the one-launch path did not run ({rope:?})");
        let (cpu_ref, _) = steps_through(
            cpu(),
            true,
            start,
            n_ctx,
            &old_k,
            &old_v,
            &steps,
            &rope,
            &attn,
        );
        for (i, ((f, a), c)) in fused.iter().zip(&apart).zip(&cpu_ref).enumerate() {
            assert_close(&format!("fused vs apart, step {i}, {rope:?}"), f, a, 1e-5);
            assert_close(&format!("fused vs CPU, step {i}, {rope:?}"), f, c, 1e-4);
        }
    }
    g.set_fused_attention(false);
}

/// Two one-row steps at `start` and `start + 1` over a cache holding
/// `old_k`/`old_v` before them, through `rope_store_attention` (`fused`)
/// or `rope_qk_store` + `attention`; the attention rows, and whether the
/// first step's query was left as given.
#[allow(clippy::too_many_arguments)]
fn steps_through<B: Backend>(
    b: &B,
    fused: bool,
    start: usize,
    n_ctx: usize,
    old_k: &[f32],
    old_v: &[f32],
    steps: &[[Vec<f32>; 3]],
    rope: &RopeSpec,
    attn: &AttnSpec,
) -> (Vec<Vec<f32>>, bool) {
    let (qw, kvw) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let mut cache = b.kv_cache(2, n_ctx, KV_HEADS, HEAD_DIM).unwrap();
    let kt = b.upload(old_k, start, kvw).unwrap();
    let vt = b.upload(old_v, start, kvw).unwrap();
    b.kv_store(&mut cache, 1, &kt, &vt, 0..start, 0).unwrap();
    let mut outs = Vec::new();
    let mut unrotated = false;
    for (i, [q, k, v]) in steps.iter().enumerate() {
        let p = start + i;
        let mut qt = b.upload(q, 1, qw).unwrap();
        let mut kt = b.upload(k, 1, kvw).unwrap();
        let vt = b.upload(v, 1, kvw).unwrap();
        let mut out = b.zeros(1, qw).unwrap();
        let pos = [p as u32];
        if fused {
            b.rope_store_attention(
                &mut qt, &mut kt, &vt, &pos, rope, &mut cache, 1, p, attn, &mut out,
            )
            .unwrap();
        } else {
            b.rope_qk_store(
                &mut qt, HEADS, &mut kt, KV_HEADS, &vt, &pos, rope, &mut cache, 1, p,
            )
            .unwrap();
            b.attention(&qt, &cache, 1, 0..1, p, attn, &mut out)
                .unwrap();
        }
        if i == 0 {
            unrotated = b.download(&qt).unwrap() == *q;
        }
        outs.push(b.download(&out).unwrap());
    }
    (outs, unrotated)
}

/// `x += W·a` and the next RMS norm with its 8-bit row (`h`) as one
/// decode step does them: `ops(fused)` runs the mat-vec with its
/// residual-add + norm tail (`matmul_add_rms_norm`, one launch) or the two
/// ops apart, then a mat-vec of `h` (which reads the 8-bit row the tail
/// left). Returns (x, h, W2·h); h only when `fused` is not
/// `Fused::ReadersKnown` (then the backend may leave it unwritten).
/// `weights`: W, W2 and the norm's weights.
fn project_norm_case<B: Backend>(
    b: &B,
    weights: &[WeightView<'_>; 3],
    a: &[f32],
    x0: &[f32],
    fused: Fused,
) -> [Vec<f32>; 3] {
    let [w, w2, nw] = weights.each_ref().map(|v| b.load_weight(v).unwrap());
    let (w, w2, nw) = (&w, &w2, &nw);
    let n = x0.len();
    let at = b.upload(a, 1, a.len()).unwrap();
    let mut x = b.upload(x0, 1, n).unwrap();
    let mut y = b.output(1, n).unwrap();
    let mut h = b.output(1, n).unwrap();
    match fused {
        Fused::Apart => {
            b.matmul(w, &at, &mut y).unwrap();
            b.add_rms_norm(&mut x, &y, Some(nw), n, 1e-5, &mut h)
                .unwrap();
        }
        Fused::ReadersUnknown => b
            .matmul_add_rms_norm(w, &at, &mut y, &mut x, Some(nw), 1e-5, &mut h, &[])
            .unwrap(),
        Fused::ReadersKnown => b
            .matmul_add_rms_norm(w, &at, &mut y, &mut x, Some(nw), 1e-5, &mut h, &[w2])
            .unwrap(),
    }
    let mut z = b.output(1, 64).unwrap();
    b.matmul(w2, &h, &mut z).unwrap();
    let h = match fused {
        Fused::ReadersKnown => Vec::new(),
        _ => b.download(&h).unwrap(),
    };
    [b.download(&x).unwrap(), h, b.download(&z).unwrap()]
}

/// Random inputs of [`project_norm_case`] for W of `n` rows of `k`: the
/// projection's input a, the residual row x0, W2's values (64 rows of `n`)
/// and the norm's weights as bytes.
fn project_norm_inputs(
    rng: &mut Rng,
    k: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u8>) {
    let a = rng.vec(k, 1.0);
    let x0 = rng.vec(n, 2.0);
    let norm_w = rng.vec(n, 1.0);
    let w2v = rng.vec(64 * n, 1.0);
    (a, x0, w2v, f32_bytes(&norm_w))
}

/// How [`project_norm_case`] runs the projection, residual add and norm.
#[derive(Clone, Copy)]
enum Fused {
    /// `matmul`, then `add_rms_norm`.
    Apart,
    /// `matmul_add_rms_norm` without its readers (`h` must be written).
    ReadersUnknown,
    /// `matmul_add_rms_norm` told that W2's matmul is `h`'s only reader.
    ReadersKnown,
}

/// The output projection with the residual add and the next norm in its
/// store, the norm's factor deferred to the mat-vec that reads the row
/// (`HipBackend::set_norm_fuse`), against the separate ops: the residual
/// row equal to the bit, the next mat-vec within rounding, for the formats
/// with such a store (Q4_0, Q8_0, Q4_K; Q6_K where the two-row staged
/// kernel serves it, K = 4096 here, and falling back at K = 512) and
/// readers in every 8-bit format whose kernels apply the factor; one and
/// two waves per row (K 512 / 4096); run repeatedly.
#[test]
fn deferred_norm_equals_the_separate_ops() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0xdef0);
    for (k, n) in [(512usize, 96usize), (4096, 4096)] {
        let (a, x0, w2v, nb) = project_norm_inputs(&mut rng, k, n);
        for ty in MATVEC_Q8_TYPES {
            let Some(bytes) = quantized(ty, &rng.vec(n * k, 1.0)) else {
                continue;
            };
            for ty2 in MATVEC_Q8_TYPES {
                if !n.is_multiple_of(ty2.block_size()) {
                    continue;
                }
                let Some(b2) = quantized(ty2, &w2v) else {
                    continue;
                };
                let name = format!("deferred norm {} {n}x{k}, then {}", ty.name(), ty2.name());
                let weights = [
                    view("w", ty, k, n, &bytes),
                    view("w2", ty2, n, 64, &b2),
                    view("n", GgmlType::F32, n, 1, &nb),
                ];
                let apart = project_norm_case(g, &weights, &a, &x0, Fused::Apart);
                g.set_norm_fuse(Some(true));
                for rep in 0..3 {
                    let got = project_norm_case(g, &weights, &a, &x0, Fused::ReadersKnown);
                    assert_eq!(got[0], apart[0], "{name}: residual row, run {rep}");
                    assert_close(&format!("{name} W2·h vs apart"), &got[2], &apart[2], 1e-2);
                }
                g.set_norm_fuse(None);
            }
        }
    }
}

/// The next layer's normed row `h` of `x0 + W·a` (`proj` = W and the norm's
/// weights), by `matmul_add_rms_norm` with the norm's factor deferred to
/// `readers` or, unless `deferred`, written out.
fn norm_row(
    g: &HipBackend,
    proj: (&WeightOf, &WeightOf),
    a: &[f32],
    x0: &[f32],
    deferred: bool,
    readers: &[&WeightOf],
) -> HipTensorOf {
    let n = x0.len();
    let at = g.upload(a, 1, a.len()).unwrap();
    let mut x = g.upload(x0, 1, n).unwrap();
    let mut y = g.output(1, n).unwrap();
    let mut h = g.output(1, n).unwrap();
    g.set_norm_fuse(Some(deferred));
    g.matmul_add_rms_norm(
        proj.0,
        &at,
        &mut y,
        &mut x,
        Some(proj.1),
        1e-5,
        &mut h,
        readers,
    )
    .unwrap();
    g.set_norm_fuse(None);
    h
}

/// One token's Q4_K q and k with a Q6_K v in one launch
/// (`set_mixed_matvec`: the two formats' kernel bodies in one grid) equals,
/// to the bit, the two launches; with and without a deferred norm factor on
/// the input (the output projection's residual add + norm store); and the
/// CPU within the 8-bit rounding.
#[test]
fn mixed_q4k_q6k_launch_equals_two_launches() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x3a7);
    for (k, nq, nkv) in [(2048usize, 512usize, 128usize), (4096, 4096, 1024)] {
        let (Some(qb), Some(kb), Some(vb)) = (
            quantized(GgmlType::Q4_K, &rng.vec(nq * k, 1.0)),
            quantized(GgmlType::Q4_K, &rng.vec(nkv * k, 1.0)),
            quantized(GgmlType::Q6_K, &rng.vec(nkv * k, 1.0)),
        ) else {
            continue;
        };
        let (a, x0, _, nb) = project_norm_inputs(&mut rng, k, k);
        let ob = quantized(GgmlType::Q4_K, &rng.vec(k * k, 1.0)).unwrap();
        let views = [
            view("q", GgmlType::Q4_K, k, nq, &qb),
            view("k", GgmlType::Q4_K, k, nkv, &kb),
            view("v", GgmlType::Q6_K, k, nkv, &vb),
        ];
        let run = |mixed: bool, deferred: bool| -> Vec<Vec<f32>> {
            let [wq, wk, wv] = views.each_ref().map(|v| g.load_weight(v).unwrap());
            let wo = g
                .load_weight(&view("o", GgmlType::Q4_K, k, k, &ob))
                .unwrap();
            let nw = g.load_weight(&view("n", GgmlType::F32, k, 1, &nb)).unwrap();
            let h = norm_row(g, (&wo, &nw), &a, &x0, deferred, &[&wq, &wk, &wv]);
            let mut outs = [
                g.output(1, nq).unwrap(),
                g.output(1, nkv).unwrap(),
                g.output(1, nkv).unwrap(),
            ];
            g.set_mixed_matvec(mixed);
            {
                let [o0, o1, o2] = &mut outs;
                g.matmul_many(&h, &[&wq, &wk, &wv], &mut [o0, o1, o2])
                    .unwrap();
            }
            g.set_mixed_matvec(false);
            outs.iter().map(|o| g.download(o).unwrap()).collect()
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for deferred in [false, true] {
            let apart = run(false, deferred);
            for rep in 0..2 {
                let mixed = run(true, deferred);
                for (i, name) in ["q", "k", "v"].iter().enumerate() {
                    assert_eq!(
                        bits(&mixed[i]),
                        bits(&apart[i]),
                        "{name} {k} (deferred {deferred}, run {rep}): one launch differs from two"
                    );
                }
            }
        }
        // Against the CPU: the same ops with the norm written out.
        let want = {
            let c = cpu();
            let [wq, wk, wv] = views.each_ref().map(|v| c.load_weight(v).unwrap());
            let wo = c
                .load_weight(&view("o", GgmlType::Q4_K, k, k, &ob))
                .unwrap();
            let nw = c.load_weight(&view("n", GgmlType::F32, k, 1, &nb)).unwrap();
            let at = c.upload(&a, 1, k).unwrap();
            let mut x = c.upload(&x0, 1, k).unwrap();
            let mut y = c.output(1, k).unwrap();
            let mut h = c.output(1, k).unwrap();
            c.matmul(&wo, &at, &mut y).unwrap();
            c.add_rms_norm(&mut x, &y, Some(&nw), k, 1e-5, &mut h)
                .unwrap();
            [&wq, &wk, &wv]
                .iter()
                .map(|w| {
                    let mut o = c.output(1, w.rows()).unwrap();
                    c.matmul(w, &h, &mut o).unwrap();
                    c.download(&o).unwrap()
                })
                .collect::<Vec<_>>()
        };
        let got = run(true, true);
        for (i, name) in ["q", "k", "v"].iter().enumerate() {
            assert_close(
                &format!("{name} {k} one launch vs cpu"),
                &got[i],
                &want[i],
                3e-2,
            );
        }
    }
}

/// The grouped gate/up/GLU launch (`set_glu_group`) reading a row whose
/// norm factor was deferred (the output projection's residual add + norm
/// store, `set_norm_fuse`), against the same ops with the norm written out
/// and the GLU run apart: the GLU output within the rounding of the factor
/// applied after the dot products instead of before, and so the down
/// projection that reads the launch's 8-bit output; every 8-bit format,
/// run repeatedly.
#[test]
fn grouped_glu_takes_a_deferred_row() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x61c);
    let (k, n, ff) = (1024usize, 1024usize, 2048usize);
    let (a, x0, _, nb) = project_norm_inputs(&mut rng, k, n);
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K] {
        let Some([wb, gb, ub, db]) = [n * k, ff * n, ff * n, n * ff]
            .map(|len| quantized(ty, &rng.vec(len, 1.0)))
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .and_then(|v| <[Vec<u8>; 4]>::try_from(v).ok())
        else {
            continue;
        };
        let run = |deferred: bool| -> (Vec<f32>, Vec<f32>) {
            let w = g.load_weight(&view("w", ty, k, n, &wb)).unwrap();
            let gw = g.load_weight(&view("gate", ty, n, ff, &gb)).unwrap();
            let uw = g.load_weight(&view("up", ty, n, ff, &ub)).unwrap();
            let dw = g.load_weight(&view("down", ty, ff, n, &db)).unwrap();
            let nw = g.load_weight(&view("n", GgmlType::F32, n, 1, &nb)).unwrap();
            let h = norm_row(g, (&w, &nw), &a, &x0, deferred, &[&gw, &uw]);
            let mut glu = g.output(1, ff).unwrap();
            if deferred {
                g.set_glu_group(true);
                g.matmul_glu(&h, &gw, &uw, GluKind::Silu, &mut glu).unwrap();
                g.set_glu_group(false);
            } else {
                backend_core::matmul_glu_separate(g, &h, &gw, &uw, GluKind::Silu, &mut glu)
                    .unwrap();
            }
            let mut o = g.output(1, n).unwrap();
            g.matmul(&dw, &glu, &mut o).unwrap();
            (g.download(&glu).unwrap(), g.download(&o).unwrap())
        };
        let (glu_apart, o_apart) = run(false);
        for rep in 0..3 {
            let (glu, o) = run(true);
            let what = format!("{} grouped GLU of a deferred row, run {rep}", ty.name());
            assert_close(&format!("{what}: GLU"), &glu, &glu_apart, 2e-2);
            assert_close(&format!("{what}: down"), &o, &o_apart, 2e-2);
        }
    }
}

/// The output projection with the residual add and the next norm in one
/// launch (the mat-vec's last block does the norm) equals the separate
/// ops on the GPU and the CPU: every 8-bit mat-vec format, a short row
/// count (one block) and a long one (hundreds of blocks), run repeatedly
/// (the block counter must be back at 0 after each launch).
#[test]
fn matmul_add_rms_norm_equals_the_separate_ops() {
    let Some(g) = gpu() else { return };
    g.set_norm_tail(true);
    let mut rng = Rng(0x7a11);
    for (k, n) in [(512usize, 96usize), (1024, 4096)] {
        let (a, x0, w2v, nb) = project_norm_inputs(&mut rng, k, n);
        for ty in MATVEC_Q8_TYPES {
            let (Some(bytes), Some(b2)) = (
                quantized(ty, &rng.vec(n * k, 1.0)),
                quantized(GgmlType::Q8_0, &w2v),
            ) else {
                continue;
            };
            let name = format!("matmul_add_rms_norm {} {n}x{k}", ty.name());
            let weights = [
                view("w", ty, k, n, &bytes),
                view("w2", GgmlType::Q8_0, n, 64, &b2),
                view("n", GgmlType::F32, n, 1, &nb),
            ];
            let on_gpu = |fused| project_norm_case(g, &weights, &a, &x0, fused);
            let want = project_norm_case(cpu(), &weights, &a, &x0, Fused::ReadersUnknown);
            let apart = on_gpu(Fused::Apart);
            for rep in 0..3 {
                let got = on_gpu(Fused::ReadersUnknown);
                // The residual add is the same mat-vec result added the same
                // way: equal to the bit.
                assert_eq!(got[0], apart[0], "{name}: residual row, run {rep}");
                assert_close(&format!("{name} h vs apart"), &got[1], &apart[1], 1e-5);
                assert_close(&format!("{name} W2·h vs apart"), &got[2], &apart[2], 1e-2);
                assert_close(&format!("{name} x vs cpu"), &got[0], &want[0], 2e-2);
                assert_close(&format!("{name} h vs cpu"), &got[1], &want[1], 2e-2);
                assert_close(&format!("{name} W2·h vs cpu"), &got[2], &want[2], 3e-2);
            }
        }
    }
    g.set_norm_tail(false);
}
