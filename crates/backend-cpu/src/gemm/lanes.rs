//! Multi-token kernels (prefill and batched decode, from [`MIN_TOKENS`]
//! tokens) with eight weight rows in the lanes of a vector (AVX-512 VNNI on
//! ymm registers), for Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K weights
//! against the activation format of `quant::dot` for each.
//!
//! Each task unpacks a group of eight weight rows once into a scratch buffer
//! of bytes (one byte per weight, in the order of the elements), interleaved
//! four bytes at a time: 32 bytes hold elements `4c..4c+4` of the eight rows
//! (the legacy formats in registers straight from the weight, the K-quants
//! through a row-major buffer).
//! One `vpdpbusd` of that vector with four activation bytes broadcast adds
//! the partial dot products of all eight rows for one token; `TOK` tokens
//! share each weight vector. Per scale unit (32 elements, 16 for Q6_K) the
//! eight integer sums are scaled once: `acc += f32(isum) · (s_w · d_a)`,
//! plus `m_w · s_a` for the formats with a minimum.
//!
//! Weights are unsigned (the `u8` operand), activations signed:
//!
//! - Q4_0 / Q5_0: the unsigned 4/5-bit code `q`; the offset (8, 16) is
//!   taken off as `−off · Σa` per unit and token (integer, exact).
//! - Q8_0: `w + 128`, corrected by `−128 · Σa`.
//! - Q4_1: `q`; the minimum term `m_w · s_a` uses the Q8_1 block sum.
//! - Q4_K / Q5_K: `q` per 32-element sub-block with scale `d · sc_j` and
//!   minimum term `−dmin · m_j · d_a · Σa` (Σa from the Q8_K block sums).
//! - Q6_K: `q` (0..63) per 16-element sub-block, `−32 · Σa` from the Q8_K
//!   block sums, scale `d · sc_g`.
//!
//! The integer sums equal ggml's per (sub-)block sums; only the `f32`
//! rounding differs from [`quant::dot`], which the tests compare against.
//!
//! Where the CPU also has GFNI (and BITALG for Q5_0), the legacy formats take
//! the zmm kernels of `lanes_zmm.rs` instead: sixteen rows per vector, up to
//! eight tokens per weight vector, the weights unpacked in registers.

use std::cell::RefCell;

#[path = "lanes_zmm.rs"]
mod zmm;

use backend_core::{BackendError, GgmlType, Result};
use rayon::prelude::*;

use super::{f16_at, level, Level};
use crate::matmul::rows_per_task;
use crate::sync_ptr::SyncPtr;
use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;

/// Weight rows per group (the lanes of one vector).
const ROWS: usize = 8;
/// Tokens per kernel call (eight rows).
const TOK: usize = 4;
/// Tokens per kernel call (sixteen rows).
const TOK2: usize = 3;

/// The weight formats of these kernels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fmt {
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl Fmt {
    fn of(t: GgmlType) -> Option<Fmt> {
        Some(match t {
            GgmlType::Q4_0 => Fmt::Q4_0,
            GgmlType::Q4_1 => Fmt::Q4_1,
            GgmlType::Q5_0 => Fmt::Q5_0,
            GgmlType::Q8_0 => Fmt::Q8_0,
            GgmlType::Q4_K => Fmt::Q4K,
            GgmlType::Q5_K => Fmt::Q5K,
            GgmlType::Q6_K => Fmt::Q6K,
            _ => return None,
        })
    }
    /// (elements, bytes) of one weight block.
    fn block(self) -> (usize, usize) {
        match self {
            Fmt::Q4_0 => (32, 18),
            Fmt::Q4_1 => (32, 20),
            Fmt::Q5_0 => (32, 22),
            Fmt::Q8_0 => (32, 34),
            Fmt::Q4K => (256, 144),
            Fmt::Q5K => (256, 176),
            Fmt::Q6K => (256, 210),
        }
    }
    /// Elements per scale unit.
    fn unit(self) -> usize {
        if self == Fmt::Q6K {
            16
        } else {
            32
        }
    }
    /// The activation format (that of `quant::dot`).
    fn act_type(self) -> GgmlType {
        match self {
            Fmt::Q4_1 => GgmlType::Q8_1,
            Fmt::Q4_0 | Fmt::Q5_0 | Fmt::Q8_0 => GgmlType::Q8_0,
            Fmt::Q4K | Fmt::Q5K | Fmt::Q6K => GgmlType::Q8_K,
        }
    }
    /// The offset of the unpacked codes (`value = code − offset`).
    fn offset(self) -> i32 {
        match self {
            Fmt::Q4_0 => 8,
            Fmt::Q5_0 => 16,
            Fmt::Q8_0 => 128,
            Fmt::Q6K => 32,
            Fmt::Q4_1 | Fmt::Q4K | Fmt::Q5K => 0,
        }
    }
    /// Whether the format has a minimum term (`m_w · s_a`).
    fn has_min(self) -> bool {
        matches!(self, Fmt::Q4_1 | Fmt::Q4K | Fmt::Q5K)
    }
}

/// Whether these kernels handle `t` on this CPU (AVX-512 VNNI).
pub(crate) fn supports(t: GgmlType) -> bool {
    Fmt::of(t).is_some() && level() == Some(Level::Vnni)
}

/// The fewest tokens for which these kernels beat the others, for every
/// format (measured at SmolLM2-135M shapes with 1 and 2 threads by
/// `gemm::sweep::tokens_sweep`); one token stays with the row kernels of
/// `gemm` and `quant::dot`.
pub(crate) const MIN_TOKENS: usize = 2;

/// The 6-bit scales and mins of a Q4_K/Q5_K super-block (`s`: its 12 scale bytes).
fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, m)
}

/// One weight block as unsigned codes in element order (`vals`), with the
/// scale (`sc`) and minimum factor (`mn`) of each of its units.
fn unpack_block(f: Fmt, b: &[u8], vals: &mut [u8], sc: &mut [f32; 16], mn: &mut [f32; 16]) {
    let vals = &mut vals[..f.block().0];
    match f {
        Fmt::Q4_0 | Fmt::Q4_1 => {
            let off = if f == Fmt::Q4_0 { 2 } else { 4 };
            let qs = &b[off..off + 16];
            for i in 0..16 {
                vals[i] = qs[i] & 15;
                vals[i + 16] = qs[i] >> 4;
            }
            sc[0] = f16_at(b, 0);
            if f == Fmt::Q4_1 {
                mn[0] = f16_at(b, 2);
            }
        }
        Fmt::Q5_0 => {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let qs = &b[6..22];
            for i in 0..16 {
                vals[i] = (qs[i] & 15) | ((((qh >> i) & 1) as u8) << 4);
                vals[i + 16] = (qs[i] >> 4) | ((((qh >> (i + 16)) & 1) as u8) << 4);
            }
            sc[0] = f16_at(b, 0);
        }
        Fmt::Q8_0 => {
            for i in 0..32 {
                vals[i] = b[2 + i] ^ 0x80;
            }
            sc[0] = f16_at(b, 0);
        }
        Fmt::Q4K | Fmt::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (s, m) = k4_scales_mins(&b[4..16]);
            let qs = if f == Fmt::Q4K {
                &b[16..144]
            } else {
                &b[48..176]
            };
            for c in 0..4 {
                for l in 0..32 {
                    let q = qs[32 * c + l];
                    vals[64 * c + l] = q & 15;
                    vals[64 * c + 32 + l] = q >> 4;
                }
            }
            if f == Fmt::Q5K {
                let qh = &b[16..48];
                for c in 0..4 {
                    for l in 0..32 {
                        vals[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
                        vals[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                }
            }
            for j in 0..8 {
                sc[j] = d * s[j] as f32;
                mn[j] = -dmin * m[j] as f32;
            }
        }
        Fmt::Q6K => {
            let (ql, qh) = (&b[0..128], &b[128..192]);
            for h in 0..2 {
                for l in 0..32 {
                    let (q1, q2) = (ql[64 * h + l], ql[64 * h + 32 + l]);
                    let hb = qh[32 * h + l];
                    let base = 128 * h + l;
                    vals[base] = (q1 & 15) | ((hb & 3) << 4);
                    vals[base + 32] = (q2 & 15) | (((hb >> 2) & 3) << 4);
                    vals[base + 64] = (q1 >> 4) | (((hb >> 4) & 3) << 4);
                    vals[base + 96] = (q2 >> 4) | (((hb >> 6) & 3) << 4);
                }
            }
            let d = f16_at(b, 208);
            for g in 0..16 {
                sc[g] = d * (b[192 + g] as i8) as f32;
            }
        }
    }
}

/// One group of eight rows, unpacked (see the module docs).
#[derive(Default)]
struct Group {
    /// The eight rows' codes in element order (`8 × k` bytes; K-quants
    /// only, the legacy formats are interleaved straight from the weight).
    rows: Vec<u8>,
    /// `k / 4` vectors of 32 bytes.
    wq: Vec<u8>,
    /// Per unit, the eight rows' scales.
    ws: Vec<f32>,
    /// Per unit, the eight rows' minimum factors (formats with a minimum).
    wm: Vec<f32>,
}

impl Group {
    /// Unpack rows `r0..r0 + rows` (`rows ≤ 8`; the lanes of missing rows
    /// hold stale values and zero scales, and are never stored).
    fn fill(&mut self, f: Fmt, bytes: &[u8], row_bytes: usize, k: usize, r0: usize, rows: usize) {
        let (be, bb) = f.block();
        let upb = be / f.unit();
        let units = k / f.unit();
        self.wq.resize(k / 4 * 32, 0);
        self.ws.resize(units * ROWS, 0.0);
        self.wm.resize(units * ROWS, 0.0);
        #[cfg(target_arch = "x86_64")]
        if let Some(kind) = legacy_kind(f) {
            let rows_bytes = &bytes[r0 * row_bytes..(r0 + rows) * row_bytes];
            // SAFETY: `rows_bytes` holds `rows` (1..=8) whole rows of `k / 32`
            // blocks of `kind`, `row_bytes` apart; `wq` holds `k / 4 · 32`
            // bytes and `ws`, `wm` `k / 32 · 8` values; the CPU has AVX2 and
            // F16C (the VNNI level).
            unsafe {
                x86::fill_legacy(
                    kind,
                    rows_bytes.as_ptr(),
                    bytes.as_ptr_range().end,
                    row_bytes,
                    rows,
                    k / 32,
                    self.wq.as_mut_ptr(),
                    self.ws.as_mut_ptr(),
                    self.wm.as_mut_ptr(),
                )
            };
            return;
        }
        self.rows.resize(ROWS * k, 0);
        if rows < ROWS {
            self.ws.fill(0.0);
            self.wm.fill(0.0);
        }
        let mut sc = [0.0f32; 16];
        let mut mn = [0.0f32; 16];
        for j in 0..rows {
            let row = &bytes[(r0 + j) * row_bytes..(r0 + j + 1) * row_bytes];
            let dst = &mut self.rows[j * k..(j + 1) * k];
            for (b, (blk, d)) in row
                .chunks_exact(bb)
                .zip(dst.chunks_exact_mut(be))
                .enumerate()
            {
                unpack_block(f, blk, d, &mut sc, &mut mn);
                for x in 0..upb {
                    self.ws[(b * upb + x) * ROWS + j] = sc[x];
                    self.wm[(b * upb + x) * ROWS + j] = mn[x];
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `rows` holds eight rows of `k` bytes, `wq` `k / 4 · 32`
        // bytes, `k` is a multiple of 32; the CPU has AVX2.
        unsafe {
            x86::transpose(self.rows.as_ptr(), k, self.wq.as_mut_ptr())
        };
    }
}

/// The legacy kind of `f` (for the SIMD unpacking of `super::x86`).
#[cfg(target_arch = "x86_64")]
fn legacy_kind(f: Fmt) -> Option<super::Kind> {
    Some(match f {
        Fmt::Q4_0 => super::Kind::Q4_0,
        Fmt::Q4_1 => super::Kind::Q4_1,
        Fmt::Q5_0 => super::Kind::Q5_0,
        Fmt::Q8_0 => super::Kind::Q8_0,
        _ => return None,
    })
}

thread_local! {
    static GROUP: RefCell<[Group; 2]> = RefCell::new(Default::default());
    static PREP: RefCell<Prep> = RefCell::new(Prep::default());
}

/// The activations in the kernels' form.
#[derive(Default)]
struct Prep {
    /// Quantized rows in `f.act_type()`.
    raw: Vec<u8>,
    /// `t × k` signed values.
    q: Vec<u8>,
    /// Per token and unit: the scale.
    da: Vec<f32>,
    /// Per token and unit: `−offset · Σa`.
    corr: Vec<i32>,
    /// Per token and unit: the minimum term's activation factor.
    s: Vec<f32>,
    /// The input of the last fill (its bytes) and its format: a matmul of
    /// the same input (Q, K and V; gate and up) reuses the quantization.
    key: (Option<Fmt>, usize, Vec<u8>),
    /// A number unique to the last fill that quantized (the regrouped
    /// activations of `lanes_zmm` follow it); 0 before any.
    generation: u64,
}

/// The bytes of `x` (to compare inputs exactly, bit for bit).
fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: `f32` has no padding and every byte pattern is a valid `u8`;
    // the length covers exactly the `x.len() · 4` bytes of `x`.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}

impl Prep {
    /// Quantize `t` rows of `k` values of `x` into the kernels' form for
    /// `f`, unless the last fill had the same format, shape and input bits.
    fn fill(&mut self, f: Fmt, x: &[f32], t: usize, k: usize) -> Result<()> {
        let xb = f32_bytes(&x[..t * k]);
        if self.key.0 == Some(f) && self.key.1 == k && self.key.2 == xb {
            return Ok(());
        }
        self.key.0 = None;
        self.fill_new(f, x, t, k)?;
        self.key.2.clear();
        self.key.2.extend_from_slice(xb);
        self.key.0 = Some(f);
        self.key.1 = k;
        // Unique across threads and `Prep`s (a fresh one is used when the
        // thread's own is borrowed).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.generation = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// [`Prep::fill`] without the reuse.
    fn fill_new(&mut self, f: Fmt, x: &[f32], t: usize, k: usize) -> Result<()> {
        let at = f.act_type();
        let act_row = quant::bytes_for(at, k).map_err(|e| BackendError::Device(e.to_string()))?;
        crate::matmul::quantize_activation_rows(at, x, k, t, act_row, &mut self.raw)?;
        let unit = f.unit();
        let units = k / unit;
        self.q.resize(t * k, 0);
        self.da.resize(t * units, 0.0);
        self.corr.resize(t * units, 0);
        self.s.resize(t * units, 0.0);
        let off = f.offset();
        for tok in 0..t {
            let raw = &self.raw[tok * act_row..(tok + 1) * act_row];
            let q = &mut self.q[tok * k..(tok + 1) * k];
            let da = &mut self.da[tok * units..(tok + 1) * units];
            let corr = &mut self.corr[tok * units..(tok + 1) * units];
            let s = &mut self.s[tok * units..(tok + 1) * units];
            match at {
                GgmlType::Q8_K => {
                    for (sb, blk) in raw.chunks_exact(292).enumerate() {
                        let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
                        q[sb * 256..(sb + 1) * 256].copy_from_slice(&blk[4..260]);
                        let bsum = |g: usize| {
                            i16::from_le_bytes([blk[260 + 2 * g], blk[261 + 2 * g]]) as i32
                        };
                        let upb = 256 / unit;
                        for x in 0..upb {
                            let u = sb * upb + x;
                            da[u] = d;
                            let sum = if unit == 16 {
                                bsum(x)
                            } else {
                                bsum(2 * x) + bsum(2 * x + 1)
                            };
                            corr[u] = -off * sum;
                            s[u] = d * sum as f32;
                        }
                    }
                }
                _ => {
                    let (bs, qo) = if at == GgmlType::Q8_1 {
                        (36, 4)
                    } else {
                        (34, 2)
                    };
                    for (u, blk) in raw.chunks_exact(bs).enumerate() {
                        let vals = &blk[qo..qo + 32];
                        q[u * 32..(u + 1) * 32].copy_from_slice(vals);
                        da[u] = f16_at(blk, 0);
                        let sum: i32 = vals.iter().map(|&v| v as i8 as i32).sum();
                        corr[u] = -off * sum;
                        s[u] = if at == GgmlType::Q8_1 {
                            f16_at(blk, 2)
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// `out = x · Wᵀ` (see [`supports`]); shapes already checked by the caller.
pub(crate) fn matmul(
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
) -> Result<()> {
    let Some(f) = Fmt::of(w.ggml_type()).filter(|_| level() == Some(Level::Vnni)) else {
        return Err(BackendError::UnsupportedType {
            op: "matmul (row-lane kernels)",
            ggml_type: w.ggml_type(),
            tensor: w.name().to_string(),
        });
    };
    PREP.with(|cell| match cell.try_borrow_mut() {
        Ok(mut p) => run(f, w, x, out, threads, &mut p),
        Err(_) => run(f, w, x, out, threads, &mut Prep::default()),
    })
}

fn run(
    f: Fmt,
    w: &CpuWeight,
    x: &CpuTensor,
    out: &mut CpuTensor,
    threads: usize,
    prep: &mut Prep,
) -> Result<()> {
    let (k, n, t) = (w.cols(), w.rows(), x.rows());
    if n == 0 || t == 0 {
        return Ok(());
    }
    prep.fill(f, x.as_slice(), t, k)?;
    let prep: &Prep = prep;
    let (bytes, row_bytes) = (w.bytes(), w.row_bytes());
    let out = out.as_mut_slice();
    if zmm::supports(f) && !no_zmm() {
        zmm::run(f, bytes, row_bytes, n, k, t, prep, out, threads);
    } else {
        run_groups(f, bytes, row_bytes, n, k, t, prep, out, threads);
    }
    Ok(())
}

/// `ROCMFORGE_NO_ZMM_LANES=1` (read once): the legacy formats take the ymm
/// kernels of eight-row groups even where the zmm ones run (to compare).
fn no_zmm() -> bool {
    static NO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO.get_or_init(|| std::env::var_os("ROCMFORGE_NO_ZMM_LANES").is_some_and(|v| v == "1"))
}

/// The ymm kernels over groups of eight rows unpacked into [`Group`]s (as
/// [`zmm::run`]).
#[allow(clippy::too_many_arguments)]
fn run_groups(
    f: Fmt,
    bytes: &[u8],
    row_bytes: usize,
    n: usize,
    k: usize,
    t: usize,
    prep: &Prep,
    out: &mut [f32],
    threads: usize,
) {
    assert!(bytes.len() >= n * row_bytes && out.len() >= t * n);
    let units = k / f.unit();
    let chunk = rows_per_task(n, threads, row_bytes).next_multiple_of(2 * ROWS);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(n));
        let body = |gs: &mut [Group; 2]| {
            let mut r = r0;
            while r < r1 {
                if r1 - r >= 2 * ROWS {
                    // Sixteen rows: each activation broadcast serves two
                    // weight vectors.
                    let [g, g2] = gs;
                    g.fill(f, bytes, row_bytes, k, r, ROWS);
                    g2.fill(f, bytes, row_bytes, k, r + ROWS, ROWS);
                    let mut t0 = 0;
                    while t0 < t {
                        let tn = (t - t0).min(TOK2);
                        // SAFETY: as below, for two whole groups: `dst` has
                        // `tn` rows of 16 floats `n` apart inside the output,
                        // of which only this task writes columns `r..r + 16`.
                        unsafe {
                            let dst = out_ptr.0.add(t0 * n + r);
                            kernel2(f, tn, units, g, g2, prep, t0 * k, t0 * units, k, dst, n)
                        };
                        t0 += tn;
                    }
                    r += 2 * ROWS;
                    continue;
                }
                let g = &mut gs[0];
                let rows = (r1 - r).min(ROWS);
                g.fill(f, bytes, row_bytes, k, r, rows);
                let mut t0 = 0;
                while t0 < t {
                    let tn = (t - t0).min(TOK);
                    let mut res = [[0.0f32; ROWS]; TOK];
                    // Whole groups store straight into the output.
                    let (dst, ld) = if rows == ROWS {
                        // SAFETY: `(t0 + i) · n + r + j` for `i < tn`, `j <
                        // 8` lies inside the `t × n` output.
                        (unsafe { out_ptr.0.add(t0 * n + r) }, n)
                    } else {
                        (res.as_mut_ptr() as *mut f32, ROWS)
                    };
                    // SAFETY: `g` holds `k / 4` vectors and `units × 8`
                    // scales; `prep` holds `t × k` values and `t × units`
                    // per-unit values, of which tokens `t0..t0 + tn` are
                    // read; `dst` has `tn` rows of 8 floats `ld` apart, of
                    // which only this task writes columns `r..r + 8`; the
                    // CPU has AVX-512 VNNI (checked by `matmul`).
                    unsafe { kernel(f, tn, units, g, prep, t0 * k, t0 * units, k, dst, ld) };
                    if rows < ROWS {
                        for (i, row) in res.iter().enumerate().take(tn) {
                            for (j, &v) in row.iter().enumerate().take(rows) {
                                // SAFETY: `t0 + i < t`, `r + j < n`: inside the
                                // `t × n` output; only this task writes column `r + j`.
                                unsafe { out_ptr.write((t0 + i) * n + r + j, v) };
                            }
                        }
                    }
                    t0 += tn;
                }
                r += rows;
            }
        };
        GROUP.with(|cell| match cell.try_borrow_mut() {
            Ok(mut g) => body(&mut g),
            Err(_) => body(&mut Default::default()),
        });
    });
}

/// Dispatch on the format's unit and the tile width `tn` (1..=TOK).
///
/// # Safety
/// See `x86::tile`.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    f: Fmt,
    tn: usize,
    units: usize,
    g: &Group,
    p: &Prep,
    q0: usize,
    u0: usize,
    k: usize,
    dst: *mut f32,
    ld: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let args = x86::Args {
            units,
            wq: g.wq.as_ptr(),
            ws: g.ws.as_ptr(),
            wm: g.wm.as_ptr(),
            a: p.q[q0..].as_ptr(),
            k,
            da: p.da[u0..].as_ptr(),
            corr: p.corr[u0..].as_ptr(),
            s: p.s[u0..].as_ptr(),
        };
        macro_rules! go {
            ($ch:expr, $min:expr) => {
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    match tn {
                        1 => x86::tile::<1, { $ch }, { $min }>(&args, dst, ld),
                        2 => x86::tile::<2, { $ch }, { $min }>(&args, dst, ld),
                        3 => x86::tile::<3, { $ch }, { $min }>(&args, dst, ld),
                        _ => x86::tile::<4, { $ch }, { $min }>(&args, dst, ld),
                    }
                }
            };
        }
        match (f.unit(), f.has_min()) {
            (16, _) => go!(4, false),
            (_, true) => go!(8, true),
            _ => go!(8, false),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (f, tn, units, g, p, q0, u0, k, dst, ld);
        unreachable!("row-lane kernels are only selected on x86_64");
    }
}

/// As [`kernel`] for two whole groups (sixteen rows), `tn` in 1..=TOK2.
///
/// # Safety
/// See `x86::tile2`.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel2(
    f: Fmt,
    tn: usize,
    units: usize,
    g: &Group,
    g2: &Group,
    p: &Prep,
    q0: usize,
    u0: usize,
    k: usize,
    dst: *mut f32,
    ld: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let args = x86::Args {
            units,
            wq: g.wq.as_ptr(),
            ws: g.ws.as_ptr(),
            wm: g.wm.as_ptr(),
            a: p.q[q0..].as_ptr(),
            k,
            da: p.da[u0..].as_ptr(),
            corr: p.corr[u0..].as_ptr(),
            s: p.s[u0..].as_ptr(),
        };
        let w2 = (g2.wq.as_ptr(), g2.ws.as_ptr(), g2.wm.as_ptr());
        macro_rules! go {
            ($ch:expr, $min:expr) => {
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    match tn {
                        1 => x86::tile2::<1, { $ch }, { $min }>(&args, w2, dst, ld),
                        2 => x86::tile2::<2, { $ch }, { $min }>(&args, w2, dst, ld),
                        _ => x86::tile2::<3, { $ch }, { $min }>(&args, w2, dst, ld),
                    }
                }
            };
        }
        match (f.unit(), f.has_min()) {
            (16, _) => go!(4, false),
            (_, true) => go!(8, true),
            _ => go!(8, false),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (f, tn, units, g, g2, p, q0, u0, k, dst, ld);
        unreachable!("row-lane kernels are only selected on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::{x86 as gx86, Kind};
    use super::ROWS;
    use std::arch::x86_64::*;

    /// Pointers of one kernel call (see `tile`).
    pub(super) struct Args {
        pub units: usize,
        pub wq: *const u8,
        pub ws: *const f32,
        pub wm: *const f32,
        pub a: *const u8,
        pub k: usize,
        pub da: *const f32,
        pub corr: *const i32,
        pub s: *const f32,
    }

    /// `dst[i · ld + j]` = row `j` of the group times token `i`, for `T` tokens.
    ///
    /// # Safety
    /// `wq` holds `units · CH` vectors of 32 bytes, `ws` and `wm` `units · 8`
    /// values; token `i < T` has `units · CH · 4` values at `a + i·k` and
    /// `units` values at `da`, `corr` and `s` `+ i·units`; the CPU has
    /// AVX-512 VL and VNNI; `dst` has `T` rows of 8 floats `ld` apart.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn tile<const T: usize, const CH: usize, const MIN: bool>(
        p: &Args,
        dst: *mut f32,
        ld: usize,
    ) {
        let units = p.units;
        let mut facc = [_mm256_setzero_ps(); T];
        for u in 0..units {
            // SAFETY (all pointer reads): `u < units`, `c < CH` and `i < T`
            // keep every access inside the buffers the caller vouched for.
            let mut iacc: [__m256i; T] =
                std::array::from_fn(|i| _mm256_set1_epi32(*p.corr.add(i * units + u)));
            for c in 0..CH {
                let e = (u * CH + c) * 4;
                let wv = _mm256_loadu_si256(p.wq.add(e * 8) as *const __m256i);
                for i in 0..T {
                    let av =
                        _mm256_set1_epi32((p.a.add(i * p.k + e) as *const i32).read_unaligned());
                    iacc[i] = gx86::dpbusd_from(iacc[i], wv, av);
                }
            }
            let sv = _mm256_loadu_ps(p.ws.add(u * ROWS));
            for i in 0..T {
                let sc = _mm256_mul_ps(sv, _mm256_set1_ps(*p.da.add(i * units + u)));
                facc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i]), sc, facc[i]);
            }
            if MIN {
                let mv = _mm256_loadu_ps(p.wm.add(u * ROWS));
                for i in 0..T {
                    let sa = _mm256_set1_ps(*p.s.add(i * units + u));
                    facc[i] = _mm256_fmadd_ps(mv, sa, facc[i]);
                }
            }
        }
        for i in 0..T {
            _mm256_storeu_ps(dst.add(i * ld), facc[i]);
        }
    }

    /// As [`tile`] for sixteen rows: the first eight from `p`, the others
    /// from `w2` (`wq`, `ws`, `wm` of a second group); `dst` has `T` rows of
    /// 16 floats `ld` apart.
    ///
    /// # Safety
    /// As for [`tile`], for both groups.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn tile2<const T: usize, const CH: usize, const MIN: bool>(
        p: &Args,
        w2: (*const u8, *const f32, *const f32),
        dst: *mut f32,
        ld: usize,
    ) {
        let units = p.units;
        let (wq2, ws2, wm2) = w2;
        let mut facc = [[_mm256_setzero_ps(); T]; 2];
        for u in 0..units {
            // SAFETY (all pointer reads): `u < units`, `c < CH` and `i < T`
            // keep every access inside the buffers the caller vouched for.
            let init: [__m256i; T] =
                std::array::from_fn(|i| _mm256_set1_epi32(*p.corr.add(i * units + u)));
            let mut iacc = [init, init];
            for c in 0..CH {
                let e = (u * CH + c) * 4;
                let w0 = _mm256_loadu_si256(p.wq.add(e * 8) as *const __m256i);
                let w1 = _mm256_loadu_si256(wq2.add(e * 8) as *const __m256i);
                for i in 0..T {
                    let av =
                        _mm256_set1_epi32((p.a.add(i * p.k + e) as *const i32).read_unaligned());
                    iacc[0][i] = gx86::dpbusd_from(iacc[0][i], w0, av);
                    iacc[1][i] = gx86::dpbusd_from(iacc[1][i], w1, av);
                }
            }
            for h in 0..2 {
                let ws = if h == 0 { p.ws } else { ws2 };
                let sv = _mm256_loadu_ps(ws.add(u * ROWS));
                for i in 0..T {
                    let sc = _mm256_mul_ps(sv, _mm256_set1_ps(*p.da.add(i * units + u)));
                    facc[h][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[h][i]), sc, facc[h][i]);
                }
                if MIN {
                    let wm = if h == 0 { p.wm } else { wm2 };
                    let mv = _mm256_loadu_ps(wm.add(u * ROWS));
                    for i in 0..T {
                        let sa = _mm256_set1_ps(*p.s.add(i * units + u));
                        facc[h][i] = _mm256_fmadd_ps(mv, sa, facc[h][i]);
                    }
                }
            }
        }
        for i in 0..T {
            _mm256_storeu_ps(dst.add(i * ld), facc[0][i]);
            _mm256_storeu_ps(dst.add(i * ld + ROWS), facc[1][i]);
        }
    }

    /// Unpack rows `0..rows` (1..=8) of `nb` blocks of `kind` at `w`
    /// (`row_bytes` apart) straight into the interleaved form of a group:
    /// per block, eight vectors at `wq + 256·b` (see [`transpose`]; Q8_0 as
    /// `w + 128`), the eight scales at `ws + 8·b` and the eight minimums
    /// (Q4_1; zero otherwise) at `wm + 8·b`. Lanes of missing rows get row
    /// `rows − 1`'s codes and zero scales. Asks for the rows
    /// [`PREFETCH_ROWS`] further on (those before `end`, the end of the
    /// weight) to be brought into cache meanwhile.
    ///
    /// # Safety
    /// `w` holds `rows` rows of `nb` blocks; `wq` holds `256 · nb` bytes,
    /// `ws` and `wm` `8 · nb` values; `rows ≥ 1`; AVX2 and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn fill_legacy(
        kind: Kind,
        w: *const u8,
        end: *const u8,
        row_bytes: usize,
        rows: usize,
        nb: usize,
        wq: *mut u8,
        ws: *mut f32,
        wm: *mut f32,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match kind {
                Kind::Q4_0 => fill_legacy_k::<0>(w, end, row_bytes, rows, nb, wq, ws, wm),
                Kind::Q4_1 => fill_legacy_k::<1>(w, end, row_bytes, rows, nb, wq, ws, wm),
                Kind::Q8_0 => fill_legacy_k::<2>(w, end, row_bytes, rows, nb, wq, ws, wm),
                Kind::Q5_0 => fill_legacy_k::<3>(w, end, row_bytes, rows, nb, wq, ws, wm),
            }
        }
    }

    /// [`fill_legacy`] for the kind numbered `K` (see `Kind::from_u8`).
    ///
    /// # Safety
    /// As for [`fill_legacy`].
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn fill_legacy_k<const K: u8>(
        w: *const u8,
        end: *const u8,
        row_bytes: usize,
        rows: usize,
        nb: usize,
        wq: *mut u8,
        ws: *mut f32,
        wm: *mut f32,
    ) {
        let kind = Kind::from_u8(K);
        let bb = kind.w_block();
        let flip = _mm256_set1_epi8(-128);
        let base: [*const u8; ROWS] = std::array::from_fn(|j| {
            // SAFETY: `j.min(rows - 1) < rows`: a row the caller vouched for.
            unsafe { w.add(j.min(rows - 1) * row_bytes) }
        });
        let keep = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rows as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let sep = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3,
            6, 7, 10, 11, 14, 15,
        );
        // Cache lines of the rows ahead per block: `8 · bb / 64`, rounded up.
        let lines = bb.div_ceil(8);
        let ahead = w.wrapping_add(PREFETCH_ROWS * row_bytes);
        for b in 0..nb {
            // SAFETY (all pointer accesses): `b < nb` and the rows in `base`
            // keep the reads inside the caller's blocks (each at least four
            // bytes), the writes inside `wq`, `ws` and `wm`.
            unsafe {
                let v: [__m256i; ROWS] = std::array::from_fn(|j| {
                    let x = gx86::unpack(kind, base[j].add(b * bb));
                    if K == 2 {
                        _mm256_xor_si256(x, flip)
                    } else {
                        x
                    }
                });
                interleave(&v, wq.add(b * 256));
                // A share of the eight rows two groups on (contiguous), so
                // that they arrive while this group is multiplied.
                for i in 0..lines {
                    let p = ahead.wrapping_add((b * lines + i) * 64);
                    if p < end {
                        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
                    }
                }
                // The first four bytes of each row's block: the f16 scale,
                // then (Q4_1) the f16 minimum; lanes of missing rows zeroed.
                let head = |j: usize| (base[j].add(b * bb) as *const i32).read_unaligned();
                let dm = _mm256_and_si256(
                    _mm256_setr_epi32(
                        head(0),
                        head(1),
                        head(2),
                        head(3),
                        head(4),
                        head(5),
                        head(6),
                        head(7),
                    ),
                    keep,
                );
                // Per 128-bit lane: the four scales, then the four minimums;
                // then the scales of both lanes, then the minimums.
                let split = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(dm, sep));
                let dv = _mm256_cvtph_ps(_mm256_castsi256_si128(split));
                _mm256_storeu_ps(ws.add(b * ROWS), dv);
                let mv = if K == 1 {
                    _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(split))
                } else {
                    _mm256_setzero_ps()
                };
                _mm256_storeu_ps(wm.add(b * ROWS), mv);
            }
        }
    }

    /// How far ahead (in rows) [`fill_legacy`] asks for the weights.
    const PREFETCH_ROWS: usize = 16;

    /// Interleave eight rows of `k` bytes at `rows` (`k` apart) four bytes
    /// at a time: vector `c` of `wq` holds bytes `4c..4c + 4` of each row.
    ///
    /// # Safety
    /// `rows` holds `8 · k` bytes, `wq` `k / 4 · 32`; `k % 32 == 0`; AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose(rows: *const u8, k: usize, wq: *mut u8) {
        for e in (0..k).step_by(32) {
            // SAFETY: `e + 32 ≤ k` keeps the reads inside each row and the
            // writes (`(e / 4 + c) · 32 + 32 ≤ k · 8`) inside `wq`.
            unsafe {
                let r: [__m256i; 8] = std::array::from_fn(|j| {
                    _mm256_loadu_si256(rows.add(j * k + e) as *const __m256i)
                });
                interleave(&r, wq.add(e * 8));
            }
        }
    }

    /// Interleave 32 bytes of each of eight rows four bytes at a time: the
    /// eight vectors at `o` hold bytes `4c..4c + 4` of rows 0..8, `c` = 0..8.
    ///
    /// # Safety
    /// `o` has room for 256 bytes; AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn interleave(r: &[__m256i; 8], o: *mut u8) {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        let o = o as *mut __m256i;
        // SAFETY: the caller's 256 bytes at `o`.
        unsafe {
            _mm256_storeu_si256(o, _mm256_permute2x128_si256(u0, u4, 0x20));
            _mm256_storeu_si256(o.add(1), _mm256_permute2x128_si256(u1, u5, 0x20));
            _mm256_storeu_si256(o.add(2), _mm256_permute2x128_si256(u2, u6, 0x20));
            _mm256_storeu_si256(o.add(3), _mm256_permute2x128_si256(u3, u7, 0x20));
            _mm256_storeu_si256(o.add(4), _mm256_permute2x128_si256(u0, u4, 0x31));
            _mm256_storeu_si256(o.add(5), _mm256_permute2x128_si256(u1, u5, 0x31));
            _mm256_storeu_si256(o.add(6), _mm256_permute2x128_si256(u2, u6, 0x31));
            _mm256_storeu_si256(o.add(7), _mm256_permute2x128_si256(u3, u7, 0x31));
        }
    }
}
