//! Multi-token matmul micro-kernels for the 32-element legacy formats
//! (Q4_0, Q4_1, Q5_0, Q8_0 weights against Q8_0/Q8_1 activations).
//!
//! A weight block is unpacked once and multiplied with the activation blocks
//! of up to [`TILE`] tokens, so a batch pays the unpacking once per weight
//! row and token tile instead of once per token. The integer block sums are
//! exactly ggml's; only the order of the `f32` accumulation differs:
//!
//! - Q4_0: `Σ_b d_w·d_a·(Σ nib·a − 8·Σa)`, computed as `Σ_b d_w·d_a·Σ nib·a`
//!   plus the correction `Σ_b d_w·(−8·d_a·Σa)`.
//! - Q4_1: `Σ_b d_w·d_a·Σ nib·a + m_w·s_a` (`s_a` the Q8_1 block's stored sum).
//! - Q5_0: as Q4_0 with 5-bit values: `Σ_b d_w·d_a·(Σ u·a − 16·Σa)`.
//! - Q8_0: `Σ_b d_w·d_a·Σ w·a` (via `|w| · sign(a, w)`).
//!
//! The scalar reference is [`quant::dot`]; the tests compare the two.

pub(crate) mod lanes;
mod zmm_rows;

use std::ops::Range;

use backend_core::{BackendError, GgmlType, Result};
use rayon::prelude::*;

use crate::matmul::rows_per_task;
use crate::sync_ptr::SyncPtr;
use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;

/// Tokens per micro-kernel call.
pub(crate) const TILE: usize = 4;

/// The weight formats these kernels handle.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
}

impl Kind {
    fn of(t: GgmlType) -> Option<Kind> {
        match t {
            GgmlType::Q4_0 => Some(Kind::Q4_0),
            GgmlType::Q4_1 => Some(Kind::Q4_1),
            GgmlType::Q8_0 => Some(Kind::Q8_0),
            GgmlType::Q5_0 => Some(Kind::Q5_0),
            _ => None,
        }
    }
    /// The kind numbered `k` (0, 1, 2 as declared), for const generics.
    const fn from_u8(k: u8) -> Kind {
        match k {
            0 => Kind::Q4_0,
            1 => Kind::Q4_1,
            2 => Kind::Q8_0,
            _ => Kind::Q5_0,
        }
    }
    /// Bytes of one weight block.
    const fn w_block(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
        }
    }
    /// The activation format.
    fn act_type(self) -> GgmlType {
        match self {
            Kind::Q4_1 => GgmlType::Q8_1,
            _ => GgmlType::Q8_0,
        }
    }
    /// Bytes of one activation block, and the offset of its 32 values.
    fn a_block(self) -> (usize, usize) {
        match self {
            Kind::Q4_1 => (36, 4),
            _ => (34, 2),
        }
    }
}

/// Which SIMD level runs the kernels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Vnni,
    Avx2,
}

/// Set by [`crate::CpuBackend::force_avx2_kernels`] (tests of the AVX2 path).
pub(crate) static FORCE_AVX2: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[cfg(target_arch = "x86_64")]
fn level() -> Option<Level> {
    use std::arch::is_x86_feature_detected as has;
    if !(has!("avx2") && has!("fma") && has!("f16c")) {
        return None;
    }
    let force_avx2 = FORCE_AVX2.load(std::sync::atomic::Ordering::Relaxed);
    if !force_avx2 && has!("avx512vnni") && has!("avx512vl") && has!("avx512bw") {
        Some(Level::Vnni)
    } else {
        Some(Level::Avx2)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn level() -> Option<Level> {
    None
}

/// Whether one token runs [`zmm_rows`]: the CPU has its features and
/// `ROCMFORGE_CPU_ZMM=0` does not ask for the ymm row kernels (comparisons).
fn use_zmm() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        zmm_rows::available() && std::env::var("ROCMFORGE_CPU_ZMM").map_or(true, |v| v != "0")
    })
}

/// Whether these kernels handle `t` on this CPU.
pub(crate) fn supports(t: GgmlType) -> bool {
    Kind::of(t).is_some() && level().is_some()
}

#[inline]
fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// One token's activation row laid out for [`zmm_rows`] against weights of
/// one format (built by [`zmm_prepare`], used by [`zmm_rows_into`]).
pub(crate) struct ZmmAct {
    kind: Kind,
    nb: usize,
    groups: Vec<zmm_rows::Group>,
}

/// The activation format that one token against a `ty` weight is quantized
/// to when [`matmul`] runs it through [`zmm_rows`] on this CPU (`None`: it
/// takes another path).
pub(crate) fn zmm_act_type(ty: GgmlType) -> Option<GgmlType> {
    let kind = Kind::of(ty)?;
    (level() == Some(Level::Vnni) && use_zmm()).then(|| kind.act_type())
}

/// Lay out `act` (one row of `nb` blocks of [`zmm_act_type`]`(ty)`) for
/// [`zmm_rows_into`] against `ty` weights.
///
/// # Panics
/// If `ty` has no [`zmm_act_type`].
pub(crate) fn zmm_prepare(ty: GgmlType, act: &[u8], nb: usize) -> ZmmAct {
    let kind = Kind::of(ty).filter(|_| zmm_act_type(ty).is_some());
    let kind = kind.expect("zmm_prepare: type without the zmm row kernel");
    let mut groups = Vec::new();
    zmm_rows::prepare(kind, act, nb, &mut groups);
    ZmmAct { kind, nb, groups }
}

/// Rows `rows` of `w` against the prepared activation, into `out[0..len]`
/// on the calling thread; per row exactly what [`matmul`] computes for one
/// token.
///
/// # Panics
/// If `w` is not of the type `a` was prepared for, its rows have another
/// block count, or `rows` or `out` are out of range.
pub(crate) fn zmm_rows_into(a: &ZmmAct, w: &CpuWeight, rows: Range<usize>, out: &mut [f32]) {
    assert_eq!(Kind::of(w.ggml_type()), Some(a.kind));
    assert_eq!(w.cols(), a.nb * 32);
    assert!(rows.start <= rows.end && rows.end <= w.rows() && out.len() >= rows.len());
    let row_bytes = w.row_bytes();
    let bytes = &w.bytes()[rows.start * row_bytes..rows.end * row_bytes];
    zmm_rows::rows_here(a.kind, bytes, rows.len(), a.nb, &a.groups, out);
}

/// `out = x · Wᵀ` for a Q4_0/Q4_1/Q5_0/Q8_0 weight (see [`supports`]); shapes
/// already checked by the caller.
pub(crate) fn matmul(
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
    act: &mut Vec<u8>,
) -> Result<()> {
    matmul_with(w, x, out, threads, act, use_zmm())
}

/// [`matmul`], with one token through [`zmm_rows`] when `zmm` (the caller
/// checked [`zmm_rows::available`]) and else through the ymm row kernels.
fn matmul_with(
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
    act: &mut Vec<u8>,
    zmm: bool,
) -> Result<()> {
    let (Some(kind), Some(lvl)) = (Kind::of(w.ggml_type()), level()) else {
        return Err(BackendError::UnsupportedType {
            op: "matmul (legacy kernels)",
            ggml_type: w.ggml_type(),
            tensor: w.name().to_string(),
        });
    };
    let (k, n, t) = (w.cols(), w.rows(), x.rows());
    if n == 0 || t == 0 {
        return Ok(());
    }
    let nb = k / 32;
    let (a_bs, a_qoff) = kind.a_block();
    let act_row = nb * a_bs;
    crate::matmul::quantize_activation_rows(kind.act_type(), x.as_slice(), k, t, act_row, act)?;
    // One token with AVX-512 VBMI: four blocks of a row per step.
    if t == 1 && lvl == Level::Vnni && zmm {
        let chunk = rows_per_task(n, threads, w.row_bytes());
        zmm_rows::matmul(kind, w.bytes(), n, nb, act, out.as_mut_slice(), chunk);
        return Ok(());
    }
    // Per token and block: the activation scale and the correction term.
    let mut da = vec![0.0f32; t * nb];
    let mut corr = vec![0.0f32; t * nb];
    for tok in 0..t {
        let row = &act[tok * act_row..(tok + 1) * act_row];
        for b in 0..nb {
            let blk = &row[b * a_bs..(b + 1) * a_bs];
            let d = f16_at(blk, 0);
            da[tok * nb + b] = d;
            corr[tok * nb + b] = match kind {
                Kind::Q4_0 | Kind::Q5_0 => {
                    let s: i32 = blk[a_qoff..a_qoff + 32]
                        .iter()
                        .map(|&v| v as i8 as i32)
                        .sum();
                    d * s as f32
                }
                Kind::Q4_1 => f16_at(blk, 2),
                Kind::Q8_0 => 0.0,
            };
        }
    }
    // One token (VNNI): per block, the integer correction `−off · Σa` (Q8_0
    // weights enter as `w + 128`) in lane 0 of the accumulator's start value.
    let init: Vec<[i32; 8]> = if t == 1 && lvl == Level::Vnni {
        (0..nb)
            .map(|b| {
                let blk = &act[b * a_bs..(b + 1) * a_bs];
                let s: i32 = blk[a_qoff..a_qoff + 32]
                    .iter()
                    .map(|&v| v as i8 as i32)
                    .sum();
                let off = match kind {
                    Kind::Q4_0 => 8,
                    Kind::Q5_0 => 16,
                    Kind::Q8_0 => 128,
                    Kind::Q4_1 => 0,
                };
                [-off * s, 0, 0, 0, 0, 0, 0, 0]
            })
            .collect()
    } else {
        Vec::new()
    };
    let act: &[u8] = act;
    let (da, corr, init) = (&da[..], &corr[..], &init[..]);
    let row_bytes = w.row_bytes();
    let bytes = w.bytes();
    let chunk = rows_per_task(n, threads, row_bytes);
    let out_ptr = SyncPtr(out.as_mut_slice().as_mut_ptr());
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(n));
        if t == 1 {
            let mut r = r0;
            while r < r1 {
                let rn = (r1 - r).min(4);
                let mut res = [0.0f32; 4];
                let wrows = &bytes[r * row_bytes..(r + rn) * row_bytes];
                // SAFETY: `wrows` holds `rn` whole rows of `nb` blocks of
                // `kind`; `act` holds one row of `nb` activation blocks; `da`
                // and `corr` hold `nb` values; the CPU supports `lvl`.
                unsafe {
                    rows_kernel(
                        lvl,
                        kind,
                        rn,
                        nb,
                        wrows.as_ptr(),
                        row_bytes,
                        act.as_ptr(),
                        da,
                        corr,
                        init,
                        &mut res,
                    );
                }
                for (i, &v) in res.iter().enumerate().take(rn) {
                    // SAFETY: `r + i < n`: inside the `1 × n` output; only
                    // this task writes these columns.
                    unsafe { out_ptr.write(r + i, v) };
                }
                r += rn;
            }
            return;
        }
        for r in r0..r1 {
            let wrow = &bytes[r * row_bytes..(r + 1) * row_bytes];
            let mut t0 = 0;
            while t0 < t {
                let tn = (t - t0).min(TILE);
                let mut res = [0.0f32; TILE];
                let acts: [usize; TILE] = std::array::from_fn(|i| (t0 + i.min(tn - 1)) * act_row);
                // SAFETY: `wrow` holds `nb` weight blocks of `kind`; each
                // activation offset starts a row of `nb` blocks of
                // `kind.act_type()` inside `act`; `da` and `corr` hold `nb`
                // values per token from `t0`; the CPU supports `lvl`.
                unsafe {
                    kernel(
                        lvl,
                        kind,
                        tn,
                        nb,
                        wrow.as_ptr(),
                        act.as_ptr(),
                        &acts,
                        &da[t0 * nb..],
                        &corr[t0 * nb..],
                        &mut res,
                    );
                }
                for (i, &v) in res.iter().enumerate().take(tn) {
                    // SAFETY: `t0 + i < t`, `r < n`: inside the `t × n`
                    // output; only this task writes column `r`.
                    unsafe { out_ptr.write((t0 + i) * n + r, v) };
                }
                t0 += tn;
            }
        }
    });
    Ok(())
}

/// Dispatch the one-token kernel over `rn` (1..=4) rows.
///
/// # Safety
/// See `x86::rows_vnni`: `w` covers `rn` rows, `a` one activation row.
#[allow(clippy::too_many_arguments)]
unsafe fn rows_kernel(
    lvl: Level,
    kind: Kind,
    rn: usize,
    nb: usize,
    w: *const u8,
    row_bytes: usize,
    a: *const u8,
    da: &[f32],
    corr: &[f32],
    init: &[[i32; 8]],
    res: &mut [f32; 4],
) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($f:ident, $k:expr) => {
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    match rn {
                        1 => x86::$f::<1, { $k }>(nb, w, row_bytes, a, da, corr, init, res),
                        2 => x86::$f::<2, { $k }>(nb, w, row_bytes, a, da, corr, init, res),
                        3 => x86::$f::<3, { $k }>(nb, w, row_bytes, a, da, corr, init, res),
                        _ => x86::$f::<4, { $k }>(nb, w, row_bytes, a, da, corr, init, res),
                    }
                }
            };
        }
        match (lvl, kind) {
            (Level::Vnni, Kind::Q4_0) => go!(rows_vnni, 0),
            (Level::Vnni, Kind::Q4_1) => go!(rows_vnni, 1),
            (Level::Vnni, Kind::Q8_0) => go!(rows_vnni, 2),
            (Level::Vnni, Kind::Q5_0) => go!(rows_vnni, 3),
            (Level::Avx2, Kind::Q4_0) => go!(rows_avx2, 0),
            (Level::Avx2, Kind::Q4_1) => go!(rows_avx2, 1),
            (Level::Avx2, Kind::Q8_0) => go!(rows_avx2, 2),
            (Level::Avx2, Kind::Q5_0) => go!(rows_avx2, 3),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (lvl, kind, rn, nb, w, row_bytes, a, da, corr, init, res);
        unreachable!("legacy kernels are only selected on x86_64");
    }
}

/// Dispatch to the kernel for `lvl` and the tile width `tn`.
///
/// # Safety
/// See the caller: pointers cover `nb` blocks per row, `lvl` is supported.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    lvl: Level,
    kind: Kind,
    tn: usize,
    nb: usize,
    w: *const u8,
    act: *const u8,
    acts: &[usize; TILE],
    da: &[f32],
    corr: &[f32],
    res: &mut [f32; TILE],
) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($f:ident, $k:expr) => {
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    match tn {
                        1 => x86::$f::<1, { $k }>(nb, w, act, acts, da, corr, res),
                        2 => x86::$f::<2, { $k }>(nb, w, act, acts, da, corr, res),
                        3 => x86::$f::<3, { $k }>(nb, w, act, acts, da, corr, res),
                        _ => x86::$f::<4, { $k }>(nb, w, act, acts, da, corr, res),
                    }
                }
            };
        }
        match (lvl, kind) {
            (Level::Vnni, Kind::Q4_0) => go!(tile_vnni, 0),
            (Level::Vnni, Kind::Q4_1) => go!(tile_vnni, 1),
            (Level::Vnni, Kind::Q8_0) => go!(tile_vnni, 2),
            (Level::Vnni, Kind::Q5_0) => go!(tile_vnni, 3),
            (Level::Avx2, Kind::Q4_0) => go!(tile_avx2, 0),
            (Level::Avx2, Kind::Q4_1) => go!(tile_avx2, 1),
            (Level::Avx2, Kind::Q8_0) => go!(tile_avx2, 2),
            (Level::Avx2, Kind::Q5_0) => go!(tile_avx2, 3),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (lvl, kind, tn, nb, w, act, acts, da, corr, res);
        unreachable!("legacy kernels are only selected on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kind, TILE};
    use std::arch::x86_64::*;

    macro_rules! tile_fn {
        ($name:ident, $features:literal, $dot:ident) => {
            /// `res[i] = Σ_b d_w·da[i][b]·(integer block dot) + c_w·corr[i][b]` for `T` tokens.
            ///
            /// # Safety
            /// `w` holds `nb` blocks of `kind`; `act + acts[i]` holds `nb`
            /// activation blocks for each `i < T`; `da` holds `T·nb` scales;
            /// the CPU has the target features.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name<const T: usize, const K: u8>(
                nb: usize,
                w: *const u8,
                act: *const u8,
                acts: &[usize; TILE],
                da: &[f32],
                corr: &[f32],
                res: &mut [f32; TILE],
            ) {
                let kind = Kind::from_u8(K);
                let (a_bs, a_q) = kind.a_block();
                let w_bs = kind.w_block();
                let m4 = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); T];
                let mut cacc = [0.0f32; T];
                for b in 0..nb {
                    // SAFETY (all pointer reads): `b < nb` keeps every block
                    // access inside the rows the caller vouched for.
                    let wb = w.add(b * w_bs);
                    let (wv, signed) = match kind {
                        Kind::Q4_0 | Kind::Q4_1 => {
                            let off = if kind == Kind::Q4_0 { 2 } else { 4 };
                            let q = _mm_loadu_si128(wb.add(off) as *const __m128i);
                            let lo = _mm_and_si128(q, _mm256_castsi256_si128(m4));
                            let hi =
                                _mm_and_si128(_mm_srli_epi16(q, 4), _mm256_castsi256_si128(m4));
                            (_mm256_set_m128i(hi, lo), false)
                        }
                        Kind::Q8_0 => (_mm256_loadu_si256(wb.add(2) as *const __m256i), true),
                        Kind::Q5_0 => {
                            let q = _mm_loadu_si128(wb.add(6) as *const __m128i);
                            let lo = _mm_and_si128(q, _mm256_castsi256_si128(m4));
                            let hi =
                                _mm_and_si128(_mm_srli_epi16(q, 4), _mm256_castsi256_si128(m4));
                            let qh = (wb.add(2) as *const u32).read_unaligned();
                            (
                                _mm256_or_si256(_mm256_set_m128i(hi, lo), fifth_bits(qh)),
                                false,
                            )
                        }
                    };
                    let wabs = if signed { _mm256_sign_epi8(wv, wv) } else { wv };
                    let dwb = h2f(wb);
                    // The weight factor of the correction: m for Q4_1, d for Q4_0.
                    let cwb = match kind {
                        Kind::Q4_1 => h2f(wb.add(2)),
                        Kind::Q4_0 => -8.0 * dwb,
                        Kind::Q5_0 => -16.0 * dwb,
                        Kind::Q8_0 => 0.0,
                    };
                    for i in 0..T {
                        let ab = act.add(acts[i] + b * a_bs + a_q);
                        let mut av = _mm256_loadu_si256(ab as *const __m256i);
                        if signed {
                            av = _mm256_sign_epi8(av, wv);
                        }
                        let p = $dot(wabs, av);
                        let s = _mm256_set1_ps(dwb * *da.get_unchecked(i * nb + b));
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[i]);
                        if K != 2 {
                            cacc[i] += cwb * *corr.get_unchecked(i * nb + b);
                        }
                    }
                }
                for i in 0..T {
                    res[i] = hsum(acc[i]) + cacc[i];
                }
            }
        };
    }

    // The VNNI instruction is emitted by inline assembly (see `dot_vnni`),
    // so no AVX-512 target feature is needed (nor allowed at the MSRV).
    tile_fn!(tile_vnni, "avx2,fma,f16c", dot_vnni);
    tile_fn!(tile_avx2, "avx2,fma,f16c", dot_avx2);

    /// Prefetch the cache line `crate::matmul::ROW_PREFETCH_BYTES` after `p`
    /// into L1.
    /// Past the end of the weights it is a hint to an address nobody reads
    /// (prefetches never fault), hence the wrapping address arithmetic.
    #[inline]
    #[target_feature(enable = "sse")]
    pub(super) unsafe fn prefetch_ahead(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(crate::matmul::ROW_PREFETCH_BYTES) as *const i8);
    }

    /// The 32 weights of a block as bytes: unsigned 4/5-bit values, or the
    /// signed Q8_0 values (the caller applies `|w| · sign(a, w)`).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn unpack(kind: Kind, wb: *const u8) -> __m256i {
        let m4 = _mm_set1_epi8(0x0F);
        // SAFETY: `wb` starts a whole block of `kind` (caller's contract).
        unsafe {
            match kind {
                Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 => {
                    let off = match kind {
                        Kind::Q4_0 => 2,
                        Kind::Q4_1 => 4,
                        _ => 6,
                    };
                    let q = _mm_loadu_si128(wb.add(off) as *const __m128i);
                    let lo = _mm_and_si128(q, m4);
                    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
                    let v = _mm256_set_m128i(hi, lo);
                    if kind == Kind::Q5_0 {
                        let qh = (wb.add(2) as *const u32).read_unaligned();
                        _mm256_or_si256(v, fifth_bits(qh))
                    } else {
                        v
                    }
                }
                Kind::Q8_0 => _mm256_loadu_si256(wb.add(2) as *const __m256i),
            }
        }
    }

    macro_rules! rows_fn {
        ($name:ident, $features:literal, $dot:ident) => {
            /// One token against `R` consecutive weight rows (decode): `res[r]
            /// = Σ_b d_w[r]·da[b]·(integer block dot) + c_w[r]·corr[b]`.
            ///
            /// # Safety
            /// `w` holds `R` rows of `nb` blocks of `kind`, `row_bytes`
            /// apart; `a` holds one row of `nb` activation blocks; `da` and
            /// `corr` hold `nb` values; the CPU has the target features.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name<const R: usize, const K: u8>(
                nb: usize,
                w: *const u8,
                row_bytes: usize,
                a: *const u8,
                da: &[f32],
                corr: &[f32],
                init: &[[i32; 8]],
                res: &mut [f32; 4],
            ) {
                let _ = init;
                let kind = Kind::from_u8(K);
                let (a_bs, a_q) = kind.a_block();
                let w_bs = kind.w_block();
                let mut acc = [_mm256_setzero_ps(); R];
                let mut cacc = [0.0f32; R];
                for b in 0..nb {
                    // SAFETY (all pointer reads): `b < nb` and `r < R` keep
                    // every access inside the blocks the caller vouched for.
                    let av = _mm256_loadu_si256(a.add(b * a_bs + a_q) as *const __m256i);
                    let dab = *da.get_unchecked(b);
                    let cb = *corr.get_unchecked(b);
                    for r in 0..R {
                        let wb = w.add(r * row_bytes + b * w_bs);
                        prefetch_ahead(wb);
                        let wv = unpack(kind, wb);
                        let p = if K == 2 {
                            $dot(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv))
                        } else {
                            $dot(wv, av)
                        };
                        let dwb = h2f(wb);
                        let s = _mm256_set1_ps(dwb * dab);
                        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[r]);
                        if K != 2 {
                            let cwb = match kind {
                                Kind::Q4_1 => h2f(wb.add(2)),
                                Kind::Q4_0 => -8.0 * dwb,
                                _ => -16.0 * dwb,
                            };
                            cacc[r] += cwb * cb;
                        }
                    }
                }
                for r in 0..R {
                    res[r] = hsum(acc[r]) + cacc[r];
                }
            }
        };
    }

    rows_fn!(rows_avx2, "avx2,fma,f16c", dot_avx2);

    /// One token against `R` consecutive weight rows (decode, VNNI): per
    /// block, the integer sum starts from `init[b]` (the offset correction),
    /// Q8_0 weights enter as `w + 128`, and the `R` rows' scales are
    /// converted together: `res[r] = Σ_b d_w[r]·da[b]·isum + m_w[r]·corr[b]`
    /// (the last term for Q4_1 only).
    ///
    /// # Safety
    /// `w` holds `R` rows of `nb` blocks of `kind`, `row_bytes` apart; `a`
    /// holds one row of `nb` activation blocks; `da`, `corr` and `init` hold
    /// `nb` values; the CPU has AVX-512 VL and VNNI.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub(super) unsafe fn rows_vnni<const R: usize, const K: u8>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
        da: &[f32],
        corr: &[f32],
        init: &[[i32; 8]],
        res: &mut [f32; 4],
    ) {
        let kind = Kind::from_u8(K);
        let (a_bs, a_q) = kind.a_block();
        let w_bs = kind.w_block();
        let mut acc = [_mm256_setzero_ps(); R];
        let mut macc = _mm_setzero_ps();
        let flip = _mm256_set1_epi8(-128);
        for b in 0..nb {
            // SAFETY (all pointer reads): `b < nb` and `r < R` keep every
            // access inside the blocks the caller vouched for.
            let av = _mm256_loadu_si256(a.add(b * a_bs + a_q) as *const __m256i);
            let start = if K == 1 {
                _mm256_setzero_si256()
            } else {
                _mm256_loadu_si256(init.as_ptr().add(b) as *const __m256i)
            };
            let mut dh = _mm_setzero_si128();
            let mut mh = _mm_setzero_si128();
            let mut p = [_mm256_setzero_si256(); R];
            for r in 0..R {
                let wb = w.add(r * row_bytes + b * w_bs);
                prefetch_ahead(wb);
                let mut wv = unpack(kind, wb);
                if K == 2 {
                    wv = _mm256_xor_si256(wv, flip);
                }
                p[r] = dpbusd_from(start, wv, av);
                dh = insert_u16(dh, r, (wb as *const u16).read_unaligned());
                if K == 1 {
                    mh = insert_u16(mh, r, (wb.add(2) as *const u16).read_unaligned());
                }
            }
            let s4 = _mm_mul_ps(_mm_cvtph_ps(dh), _mm_set1_ps(*da.get_unchecked(b)));
            let mut sv = [0.0f32; 4];
            _mm_storeu_ps(sv.as_mut_ptr(), s4);
            for r in 0..R {
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[r]), _mm256_set1_ps(sv[r]), acc[r]);
            }
            if K == 1 {
                macc = _mm_fmadd_ps(_mm_cvtph_ps(mh), _mm_set1_ps(*corr.get_unchecked(b)), macc);
            }
        }
        let mut mv = [0.0f32; 4];
        _mm_storeu_ps(mv.as_mut_ptr(), macc);
        for r in 0..R {
            res[r] = hsum(acc[r]) + mv[r];
        }
    }

    /// `v` with 16-bit lane `i` (0..4) set to `x`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn insert_u16(v: __m128i, i: usize, x: u16) -> __m128i {
        match i {
            0 => _mm_insert_epi16(v, x as i32, 0),
            1 => _mm_insert_epi16(v, x as i32, 1),
            2 => _mm_insert_epi16(v, x as i32, 2),
            _ => _mm_insert_epi16(v, x as i32, 3),
        }
    }

    /// `acc + Σ` of u8·i8 products in groups of four (VNNI, inline assembly:
    /// the AVX-512 intrinsics need a newer compiler than the workspace's
    /// minimum Rust version). The one `vpdpbusd` wrapper of the gemm kernels.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dpbusd_from(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let mut acc = acc;
        // SAFETY: only reached when `level()` found AVX-512 VL + VNNI; the
        // instruction reads and writes registers only.
        unsafe {
            std::arch::asm!(
                "vpdpbusd {acc}, {a}, {b}",
                acc = inout(ymm_reg) acc,
                a = in(ymm_reg) u,
                b = in(ymm_reg) s,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// Bit `i` of `qh` as `0x10` in byte `i` (Q5_0's fifth bits).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn fifth_bits(qh: u32) -> __m256i {
        // Byte i takes byte i/8 of qh, then keeps bit i%8 of it.
        let spread = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), spread);
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// The f16 at `p` as f32 (F16C).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn h2f(p: *const u8) -> f32 {
        // SAFETY: the caller's block holds two bytes at `p`.
        let bits = unsafe { (p as *const u16).read_unaligned() };
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// Σ of u8·i8 products in groups of four, as eight i32 (VNNI).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot_vnni(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: same contract as `dpbusd_from` (VNNI detected by the caller).
        unsafe { dpbusd_from(_mm256_setzero_si256(), u, s) }
    }

    /// Σ of u8·i8 products in groups of four, as eight i32 (AVX2; the u8
    /// side is at most 128, so the i16 pair sums cannot saturate).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod sweep {
    use super::*;
    use crate::testsuite::{Rng, TestWeight};
    use crate::CpuBackend;
    use std::time::Instant;

    /// Best time (µs) of the tile path and the row-lane path for 1..=16
    /// tokens at SmolLM2-135M shapes (`THREADS`, default 2; `TYPES`, e.g.
    /// `Q4_1,Q8_0`): `cargo test --release -p backend-cpu --lib sweep --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn tokens_sweep() {
        let threads: usize = std::env::var("THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2);
        let types: Vec<GgmlType> = std::env::var("TYPES")
            .unwrap_or_else(|_| "Q4_1".into())
            .split(',')
            .filter_map(GgmlType::from_name)
            .collect();
        let b = CpuBackend::new(threads).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut rng = Rng::new(3);
        for ty in types {
            for (k, n) in [(576, 576), (576, 1536), (1536, 576), (576, 49152)] {
                let w = TestWeight::random(&mut rng, ty, k, n, 0.05).load(&b);
                for t in 1..=16usize {
                    let x = CpuTensor::from_vec(rng.vec(t * k, 1.0), t, k).unwrap();
                    let mut out = CpuTensor::zeros(t, n).unwrap();
                    let reps = (4_000_000 / (k * n)).clamp(20, 400);
                    let mut time = |f: &mut dyn FnMut(&mut CpuTensor)| {
                        let mut best = f64::MAX;
                        for _ in 0..reps {
                            let s = Instant::now();
                            f(&mut out);
                            best = best.min(s.elapsed().as_secs_f64());
                        }
                        best * 1e6
                    };
                    let mut act = Vec::new();
                    let tile = time(&mut |o| {
                        pool.install(|| matmul(&w, &x, o, threads, &mut act).unwrap())
                    });
                    let lanes =
                        time(&mut |o| pool.install(|| lanes::matmul(&w, &x, o, threads).unwrap()));
                    println!(
                        "{} {k}x{n} t={t:>2} threads={threads}: tile {tile:>8.1} us  lanes {lanes:>8.1} us  {}",
                        ty.name(),
                        if tile < lanes { "tile" } else { "lanes" }
                    );
                }
            }
        }
    }

    /// One token through SmolLM2-135M-sized matrices, zmm rows vs ymm rows,
    /// one thread, the weights (`MB`, default 96 MB of copies) cycled so that
    /// they come from L3/DRAM as in a decode step: `cargo test --release -p
    /// backend-cpu --lib decode_rows -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn decode_rows() {
        if !zmm_rows::available() {
            return;
        }
        let threads: usize = std::env::var("THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let mb: usize = std::env::var("MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(96);
        let b = CpuBackend::new(threads).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut rng = Rng::new(3);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q5_0,
        ] {
            for (k, n) in [(576, 1536), (1536, 576), (576, 49152)] {
                let one = TestWeight::random(&mut rng, ty, k, n, 0.05);
                let copies = (mb << 20).div_ceil(one.bytes.len()).max(1);
                let ws: Vec<_> = (0..copies).map(|_| one.load(&b)).collect();
                let x = CpuTensor::from_vec(rng.vec(k, 1.0), 1, k).unwrap();
                let mut out = CpuTensor::zeros(1, n).unwrap();
                let mut act = Vec::new();
                let mut time = |zmm: bool| {
                    let mut best = f64::MAX;
                    for _ in 0..5 {
                        let s = Instant::now();
                        for w in &ws {
                            pool.install(|| {
                                matmul_with(w, &x, &mut out, threads, &mut act, zmm).unwrap()
                            });
                        }
                        best = best.min(s.elapsed().as_secs_f64());
                    }
                    (copies * one.bytes.len()) as f64 / best / 1e9
                };
                let (y0, z0, y1, z1) = (time(false), time(true), time(false), time(true));
                println!(
                    "{} {k}x{n} x{copies} threads={threads}: ymm {:.1} GB/s  zmm {:.1} GB/s",
                    ty.name(),
                    y0.max(y1),
                    z0.max(z1)
                );
            }
        }
    }
}
