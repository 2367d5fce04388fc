//! Row-lane kernels on zmm registers for the legacy formats (Q4_0, Q4_1,
//! Q5_0, Q8_0): sixteen weight rows per vector, up to [`TOK`] tokens per
//! weight vector, the weights unpacked in registers (no scratch buffer).
//!
//! Per 32-element block and group of sixteen rows, each row's quantized
//! bytes are loaded (four rows per vector, one per 128-bit lane) and
//! transposed four bytes at a time, so that vector `c` holds elements
//! `4c..4c + 4` of the sixteen rows (32-bit lane `j` = row `j`). The nibble
//! formats give two such vectors per 32-bit word of the block (low and high
//! nibbles: elements `4c..` and `16 + 4c..`; the high ones by one GFNI
//! affine step), Q8_0 one per word (as `w + 128`). The block scales (and
//! Q4_1 minimums, Q5_0 fifth bits) of the sixteen rows come from one gather
//! each. One `vpdpbusd` with four activation bytes broadcast then adds four
//! products of all sixteen rows for one token; per block and token the
//! integer sum (started from the offset correction `−off · Σa` of
//! [`super::Prep`]) is scaled once: `acc += f32(isum) · d_a · d_w`, plus
//! `m_w · s_a` for Q4_1.
//!
//! The activations of a tile of tokens are laid out block by block (the
//! tile's tokens' 32 bytes, scales and sums side by side), so that every
//! operand is a constant offset from one pointer per block.
//!
//! The integer sums are ggml's per-block sums; only the `f32` order differs
//! from `quant::dot`, which the tests compare against.

use std::cell::RefCell;

use rayon::prelude::*;

use super::{Fmt, Prep};
use crate::matmul::rows_per_task;
use crate::sync_ptr::SyncPtr;

/// Weight rows per group (the 32-bit lanes of a zmm vector).
pub(super) const ROWS: usize = 16;
/// Most tokens per weight vector (per kernel call).
pub(super) const TOK: usize = 8;

/// Whether the zmm kernels handle `f` on this CPU (AVX-512 F/BW/VL, VNNI,
/// GFNI; BITALG for Q5_0's fifth bits).
pub(super) fn supports(f: Fmt) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let base = has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512vnni")
            && has!("gfni")
            && has!("f16c")
            && has!("fma");
        match f {
            Fmt::Q4_0 | Fmt::Q4_1 | Fmt::Q8_0 => base,
            Fmt::Q5_0 => base && has!("avx512bitalg"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = f;
        false
    }
}

/// The number of `f` in the kernels' const generic (see `x86::tile`).
#[cfg(target_arch = "x86_64")]
fn code(f: Fmt) -> u8 {
    match f {
        Fmt::Q4_0 => 0,
        Fmt::Q4_1 => 1,
        Fmt::Q5_0 => 2,
        _ => 3,
    }
}

/// The activations of [`Prep`] regrouped per tile of [`TOK`] tokens (the
/// last tile may be narrower) and block: for the tile of tokens `t0..t0 +
/// tn`, block `b` and token `t0 + i`, the 32 values at `q[t0·k + (b·tn +
/// i)·32..]` and the per-block values at `[t0·nb + b·tn + i]`.
#[derive(Default)]
struct Packed {
    /// Signed activation bytes.
    q: Vec<u8>,
    /// Scales.
    da: Vec<f32>,
    /// `−offset · Σa`.
    corr: Vec<i32>,
    /// Minimum-term factors (Q8_1 sums).
    s: Vec<f32>,
    /// `Prep::generation` of the activations held.
    generation: Option<u64>,
}

impl Packed {
    /// Regroup `t` tokens of `k` values of `p` (nothing to do when they are
    /// those of the last call).
    fn fill(&mut self, p: &Prep, t: usize, k: usize) {
        if self.generation == Some(p.generation) {
            return;
        }
        self.generation = Some(p.generation);
        let nb = k / 32;
        self.q.resize(t * k, 0);
        self.da.resize(t * nb, 0.0);
        self.corr.resize(t * nb, 0);
        self.s.resize(t * nb, 0.0);
        for t0 in (0..t).step_by(TOK) {
            let tn = (t - t0).min(TOK);
            for i in 0..tn {
                let tok = t0 + i;
                for b in 0..nb {
                    let o = t0 * k + (b * tn + i) * 32;
                    self.q[o..o + 32]
                        .copy_from_slice(&p.q[tok * k + b * 32..tok * k + b * 32 + 32]);
                    let u = t0 * nb + b * tn + i;
                    self.da[u] = p.da[tok * nb + b];
                    self.corr[u] = p.corr[tok * nb + b];
                    self.s[u] = p.s[tok * nb + b];
                }
            }
        }
    }
}

thread_local! {
    static PACKED: RefCell<Packed> = RefCell::new(Packed::default());
}

/// `out = x · Wᵀ` with the activations already in `prep` (`t` tokens of `k`
/// values); `bytes` holds `n` rows of `row_bytes` (see [`supports`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
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
    PACKED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut pk) => run_packed(f, bytes, row_bytes, n, k, t, prep, &mut pk, out, threads),
        Err(_) => run_packed(
            f,
            bytes,
            row_bytes,
            n,
            k,
            t,
            prep,
            &mut Packed::default(),
            out,
            threads,
        ),
    })
}

/// [`run`] with a buffer for the regrouped activations.
#[allow(clippy::too_many_arguments)]
fn run_packed(
    f: Fmt,
    bytes: &[u8],
    row_bytes: usize,
    n: usize,
    k: usize,
    t: usize,
    prep: &Prep,
    pk: &mut Packed,
    out: &mut [f32],
    threads: usize,
) {
    assert!(
        supports(f),
        "zmm row-lane kernels selected without the CPU features"
    );
    let nb = k / 32;
    assert!(bytes.len() >= n * row_bytes && out.len() >= t * n && row_bytes * ROWS < 1 << 31);
    assert!(prep.q.len() >= t * k && prep.da.len() >= t * nb);
    pk.fill(prep, t, k);
    let pk: &Packed = pk;
    let chunk = rows_per_task(n, threads, row_bytes).next_multiple_of(ROWS);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        // (The whole `SyncPtr`, not its field, is captured.)
        let dst = out_ptr;
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(n));
        // A partial group is copied here, its last row repeated.
        let mut pad = Vec::new();
        let mut r = r0;
        while r < r1 {
            // Two vectors of rows where there are 32, else one.
            // (One vector of sixteen rows per call: two (`G` = 2), sharing
            // each activation broadcast, measured ~15% slower per row, from
            // register spills.)
            let rows = (r1 - r).min(ROWS);
            let w = if rows == ROWS {
                &bytes[r * row_bytes..(r + rows) * row_bytes]
            } else {
                pad.clear();
                for j in 0..ROWS {
                    let j = r + j.min(rows - 1);
                    pad.extend_from_slice(&bytes[j * row_bytes..(j + 1) * row_bytes]);
                }
                &pad[..]
            };
            let mut t0 = 0;
            while t0 < t {
                let tn = (t - t0).min(TOK);
                // SAFETY: `w` holds sixteen rows of `nb` blocks; the tile's
                // regrouped activations (`tn · k` values and `tn · nb`
                // per-block values from `t0`) lie inside `pk`; the output
                // block (`tn` rows of `rows` floats, `n` apart, from `t0 · n
                // + r`) lies inside `out` and only this task writes columns
                // `r..r + rows`; `supports(f)` holds (asserted).
                unsafe {
                    tile(
                        f,
                        tn,
                        w.as_ptr(),
                        row_bytes,
                        rows,
                        nb,
                        pk,
                        t0,
                        k,
                        dst.0.add(t0 * n + r),
                        n,
                    )
                };
                t0 += tn;
            }
            r += rows;
        }
    });
}

/// Dispatch on the format and the tile width `tn` (1..=[`TOK`]), sixteen
/// rows.
///
/// # Safety
/// See `x86::tile`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    f: Fmt,
    tn: usize,
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    nb: usize,
    pk: &Packed,
    t0: usize,
    k: usize,
    dst: *mut f32,
    ld: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let args = x86::Args {
            w,
            row_bytes,
            rows,
            nb,
            a: pk.q[t0 * k..].as_ptr(),
            da: pk.da[t0 * nb..].as_ptr(),
            corr: pk.corr[t0 * nb..].as_ptr(),
            s: pk.s[t0 * nb..].as_ptr(),
        };
        macro_rules! go {
            ($g:expr, $k:expr) => {
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    match tn {
                        1 => x86::tile::<1, { $g }, { $k }>(&args, dst, ld),
                        2 => x86::tile::<2, { $g }, { $k }>(&args, dst, ld),
                        3 => x86::tile::<3, { $g }, { $k }>(&args, dst, ld),
                        4 => x86::tile::<4, { $g }, { $k }>(&args, dst, ld),
                        5 => x86::tile::<5, { $g }, { $k }>(&args, dst, ld),
                        6 => x86::tile::<6, { $g }, { $k }>(&args, dst, ld),
                        7 => x86::tile::<7, { $g }, { $k }>(&args, dst, ld),
                        _ => x86::tile::<8, { $g }, { $k }>(&args, dst, ld),
                    }
                }
            };
        }
        match code(f) {
            0 => go!(1, 0),
            1 => go!(1, 1),
            2 => go!(1, 2),
            _ => go!(1, 3),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (f, tn, w, row_bytes, rows, nb, pk, t0, k, dst, ld);
        unreachable!("zmm row-lane kernels are only selected on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::ROWS;
    use std::arch::x86_64::*;

    /// Pointers and sizes of one kernel call (see [`tile`]).
    pub(super) struct Args {
        /// The group's sixteen rows (`row_bytes` apart).
        pub w: *const u8,
        /// Bytes per row.
        pub row_bytes: usize,
        /// Rows of the group that are stored (1..=16).
        pub rows: usize,
        /// Blocks per row.
        pub nb: usize,
        /// The tile's regrouped activation bytes (`T · 32` per block).
        pub a: *const u8,
        /// The tile's scales (`T` per block).
        pub da: *const f32,
        /// The tile's corrections `−offset · Σa` (`T` per block).
        pub corr: *const i32,
        /// The tile's minimum-term factors (`T` per block).
        pub s: *const f32,
    }

    /// Bytes of one block of the format numbered `K` (see `super::code`).
    const fn block_bytes(k: u8) -> usize {
        match k {
            0 => 18,
            1 => 20,
            2 => 22,
            _ => 34,
        }
    }

    /// Offset of the quantized bytes in a block of format `K`.
    const fn qs_offset(k: u8) -> usize {
        match k {
            0 => 2,
            1 => 4,
            2 => 6,
            _ => 2,
        }
    }

    /// How far ahead (in rows) the weights are prefetched.
    const PREFETCH_ROWS: usize = 2 * ROWS;

    /// The 16 bytes at `w` and at `w + j · rb` (`j` = 1..16), transposed:
    /// vector `c` holds 32-bit word `c` of the sixteen in lanes 0..16.
    ///
    /// # Safety
    /// The sixteen 16-byte ranges are readable; AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn words(w: *const u8, rb: usize) -> [__m512i; 4] {
        // (Macros, not closures: a closure is compiled without this
        // function's target features and may be called out of line.)
        macro_rules! ld {
            ($j:expr) => {
                // SAFETY: the caller's 16 readable bytes per row.
                unsafe { _mm_loadu_si128(w.add($j * rb) as *const __m128i) }
            };
        }
        // Vector `q` holds rows `q, 4 + q, 8 + q, 12 + q` in its four lanes.
        macro_rules! rows4 {
            ($q:expr) => {{
                let lo = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(ld!($q)), ld!(4 + $q));
                let hi =
                    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(ld!(8 + $q)), ld!(12 + $q));
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
            }};
        }
        let (a0, a1, a2, a3) = (rows4!(0), rows4!(1), rows4!(2), rows4!(3));
        let t0 = _mm512_unpacklo_epi32(a0, a1);
        let t1 = _mm512_unpackhi_epi32(a0, a1);
        let t2 = _mm512_unpacklo_epi32(a2, a3);
        let t3 = _mm512_unpackhi_epi32(a2, a3);
        [
            _mm512_unpacklo_epi64(t0, t2),
            _mm512_unpackhi_epi64(t0, t2),
            _mm512_unpacklo_epi64(t1, t3),
            _mm512_unpackhi_epi64(t1, t3),
        ]
    }

    /// The selector bytes of `vpshufbitqmb` that put bit `first + e` of each
    /// row's 32-bit word in byte `e` (0..4) of the row's lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn bit_select(first: u8) -> __m512i {
        let lo = u32::from_le_bytes([first, first + 1, first + 2, first + 3]) as u64;
        _mm512_set1_epi64((lo | ((lo + 0x2020_2020) << 32)) as i64)
    }

    /// The GF(2) affine matrix that maps each byte `x` to `x >> 4`.
    const HIGH_NIBBLE: i64 = 0x1020_4080_0000_0000;

    /// `x`, opaque to the optimizer (no instruction): keeps loop-invariant
    /// strides from being strength-reduced into one induction variable per
    /// row (which spills).
    #[inline(always)]
    fn opaque(mut x: usize) -> usize {
        // SAFETY: an empty assembly block that only claims to modify `x`.
        unsafe {
            std::arch::asm!("/* {0} */", inout(reg) x, options(nomem, nostack, preserves_flags))
        };
        x
    }

    /// `dst[i · ld + j]` = row `j` of the group times token `i`, for `T`
    /// tokens and `j < rows`, `16 · G` rows, weights of the format numbered
    /// `K` (Q4_0, Q4_1, Q5_0, Q8_0). Each activation broadcast serves the
    /// `G` weight vectors of a chunk.
    ///
    /// # Safety
    /// `w` holds `16 · G` rows of `nb` blocks, `row_bytes` apart (`16 ·
    /// row_bytes < 2³¹`); `a` holds `nb · T · 32` bytes and `da`, `corr`, `s`
    /// `nb · T` values; `dst` has `T` rows of `rows` floats `ld` apart; the
    /// CPU has AVX-512 F/BW/VL/VNNI, GFNI, F16C, FMA (and BITALG for Q5_0).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512bitalg,gfni,f16c,fma")]
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn tile<const T: usize, const G: usize, const K: u8>(
        p: &Args,
        dst: *mut f32,
        ld: usize,
    ) {
        let bb = block_bytes(K);
        let qo = qs_offset(K);
        // Byte offsets of sixteen rows from the first.
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(p.row_bytes as i32),
        );
        let m4 = _mm512_set1_epi8(0x0F);
        let high = _mm512_set1_epi64(HIGH_NIBBLE);
        let flip = _mm512_set1_epi8(-128);
        let five = _mm512_set1_epi8(0x10);
        let mut facc = [[_mm512_setzero_ps(); G]; T];
        // Cache lines per block of the rows `PREFETCH_ROWS` on (contiguous).
        let lines = (G * ROWS * bb).div_ceil(64);
        let ahead = p.w.wrapping_add(G * PREFETCH_ROWS * p.row_bytes);
        let mut wb = p.w;
        let mut ab = p.a;
        let (mut dab, mut cb, mut sb) = (p.da, p.corr, p.s);
        for b in 0..p.nb {
            let rb = opaque(p.row_bytes);
            // SAFETY (all pointer reads): `b < nb`, `i < T` and `j < 16 · G`
            // keep every access inside the caller's buffers; blocks are at
            // least 18 bytes, so the four bytes at `+0` and `+2` and the 16
            // (Q8_0: 32) at `+qo` are inside the block. Prefetches do not
            // access memory (wrapping arithmetic, hints only).
            unsafe {
                for l in 0..lines {
                    _mm_prefetch::<_MM_HINT_T0>(
                        ahead.wrapping_add((b * lines + l) * 64) as *const i8
                    );
                }
                // (Macros and loops, not closures: see `words`.)
                macro_rules! a {
                    ($i:expr, $e:expr) => {
                        _mm512_set1_epi32((ab.add($i * 32 + $e) as *const i32).read_unaligned())
                    };
                }
                let zero = _mm512_setzero_si512();
                let mut iacc = [[zero; G]; T];
                if K != 1 {
                    for i in 0..T {
                        iacc[i] = [_mm512_set1_epi32(*cb.add(i)); G];
                    }
                }
                // The first four bytes of each row's block: the f16 scale,
                // then the f16 minimum (Q4_1) or the first half of qh
                // (Q5_0); gathered first, used last.
                let mut heads = [zero; G];
                for h in 0..G {
                    heads[h] = _mm512_i32gather_epi32::<1>(idx, wb.add(h * ROWS * rb).cast());
                }
                if K == 3 {
                    for half in 0..2 {
                        let mut v = [[zero; 4]; G];
                        for h in 0..G {
                            v[h] = words(wb.add(h * ROWS * rb + qo + 16 * half), rb);
                        }
                        for c in 0..4 {
                            let mut wv = [zero; G];
                            for h in 0..G {
                                wv[h] = _mm512_xor_si512(v[h][c], flip);
                            }
                            for i in 0..T {
                                let av = a!(i, 16 * half + 4 * c);
                                for h in 0..G {
                                    iacc[i][h] = _mm512_dpbusd_epi32(iacc[i][h], wv[h], av);
                                }
                            }
                        }
                    }
                } else {
                    let mut v = [[zero; 4]; G];
                    let mut qh = [zero; G];
                    for h in 0..G {
                        v[h] = words(wb.add(h * ROWS * rb + qo), rb);
                        if K == 2 {
                            qh[h] =
                                _mm512_i32gather_epi32::<1>(idx, wb.add(h * ROWS * rb + 2).cast());
                        }
                    }
                    for c in 0..4 {
                        for nib in 0..2 {
                            let mut wv = [zero; G];
                            for h in 0..G {
                                let x = if nib == 0 {
                                    _mm512_and_si512(v[h][c], m4)
                                } else {
                                    _mm512_gf2p8affine_epi64_epi8::<0>(v[h][c], high)
                                };
                                wv[h] = if K == 2 {
                                    let sel = bit_select(16 * nib as u8 + 4 * c as u8);
                                    let fifth = _mm512_bitshuffle_epi64_mask(qh[h], sel);
                                    _mm512_mask_add_epi8(x, fifth, x, five)
                                } else {
                                    x
                                };
                            }
                            for i in 0..T {
                                let av = a!(i, 16 * nib + 4 * c);
                                for h in 0..G {
                                    iacc[i][h] = _mm512_dpbusd_epi32(iacc[i][h], wv[h], av);
                                }
                            }
                        }
                    }
                }
                for h in 0..G {
                    let head = heads[h];
                    let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
                    let mw = if K == 1 {
                        _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(head)))
                    } else {
                        _mm512_setzero_ps()
                    };
                    for i in 0..T {
                        let x = _mm512_mul_ps(
                            _mm512_cvtepi32_ps(iacc[i][h]),
                            _mm512_set1_ps(*dab.add(i)),
                        );
                        facc[i][h] = _mm512_fmadd_ps(x, dw, facc[i][h]);
                        if K == 1 {
                            facc[i][h] =
                                _mm512_fmadd_ps(mw, _mm512_set1_ps(*sb.add(i)), facc[i][h]);
                        }
                    }
                }
                wb = wb.add(bb);
                ab = ab.add(T * 32);
                dab = dab.add(T);
                cb = cb.add(T);
                sb = sb.add(T);
            }
        }
        for h in 0..G {
            let stored = p.rows.saturating_sub(h * ROWS).min(ROWS);
            let keep: __mmask16 = if stored >= ROWS {
                0xFFFF
            } else {
                (1u16 << stored) - 1
            };
            for i in 0..T {
                // SAFETY: the caller's `T` rows of `rows` floats at `dst`
                // (lanes past `rows` masked off).
                unsafe { _mm512_mask_storeu_ps(dst.add(i * ld + h * ROWS), keep, facc[i][h]) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{run_groups, Fmt, Prep};
    use super::{run, supports};
    use crate::testsuite::{Rng, TestWeight};
    use backend_core::GgmlType;
    use std::time::Instant;

    /// These kernels and the ymm group kernels against the scalar
    /// `quant::dot` of every (row, token), for the four legacy formats: row
    /// counts around multiples of 16 and 32 (partial groups), token counts
    /// around multiples of [`TOK`] (partial tiles), one and two threads
    /// (task boundaries). Same integer block sums; only the `f32` order
    /// differs: tolerance 1e-5 of Σ|w·x| + 1e-6. Skipped (passes) on CPUs
    /// without the features.
    #[test]
    fn agree_with_scalar_dot() {
        let mut rng = Rng::new(41);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            let f = Fmt::of(ty).unwrap();
            if !supports(f) {
                eprintln!(
                    "{}: zmm row-lane kernels not supported here, skipped",
                    ty.name()
                );
                continue;
            }
            let kern = quant::dot::kernel_for_isa(ty, quant::dot::Isa::Scalar).unwrap();
            let act_ty = kern.activation_type();
            for (k, n, t, threads) in [
                (64, 1, 2, 1),
                (64, 15, 3, 1),
                (96, 16, 8, 2),
                (64, 17, 9, 1),
                (128, 31, 7, 2),
                (64, 32, 16, 1),
                (96, 33, 17, 2),
                (64, 48, 1, 1),
                (576, 97, 11, 2),
                (160, 200, 5, 2),
            ] {
                let w = TestWeight::random(&mut rng, ty, k, n, 0.05);
                let row_bytes = w.bytes.len() / n;
                let x = rng.vec(t * k, 1.0);
                let mut p = Prep::default();
                p.fill(f, &x, t, k).unwrap();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut zmm = vec![f32::NAN; t * n];
                let mut ymm = vec![f32::NAN; t * n];
                pool.install(|| {
                    run(f, &w.bytes, row_bytes, n, k, t, &p, &mut zmm, threads);
                    run_groups(f, &w.bytes, row_bytes, n, k, t, &p, &mut ymm, threads);
                });
                for tok in 0..t {
                    let xr = &x[tok * k..(tok + 1) * k];
                    let mut act = vec![0u8; quant::bytes_for(act_ty, k).unwrap()];
                    quant::dot::quantize_activations(act_ty, xr, &mut act).unwrap();
                    for r in 0..n {
                        let want = kern
                            .dot(&w.bytes[r * row_bytes..(r + 1) * row_bytes], &act)
                            .unwrap();
                        let scale: f32 = w.values[r * k..(r + 1) * k]
                            .iter()
                            .zip(xr)
                            .map(|(a, c)| (a * c).abs())
                            .sum();
                        for (what, got) in [("zmm", zmm[tok * n + r]), ("ymm", ymm[tok * n + r])] {
                            assert!(
                                (got - want).abs() <= 1e-5 * scale + 1e-6,
                                "{} {what} k={k} n={n} t={t}: token {tok} row {r}: {got} vs scalar {want}",
                                ty.name()
                            );
                        }
                    }
                }
            }
        }
    }

    /// A fill with the same format, shape and input bits reuses the last
    /// quantization; any difference (one value, the format, the shape)
    /// quantizes again, and the result equals a fresh fill's.
    #[test]
    fn prep_reuses_only_identical_inputs() {
        let mut rng = Rng::new(3);
        let (t, k) = (3, 64);
        let x = rng.vec(t * k, 1.0);
        let mut p = Prep::default();
        p.fill(Fmt::Q4_1, &x, t, k).unwrap();
        let g = p.generation;
        p.fill(Fmt::Q4_1, &x, t, k).unwrap();
        assert_eq!(p.generation, g, "same input reused");
        let mut y = x.clone();
        y[100] += 0.5;
        for (f, xs, tt, kk) in [
            (Fmt::Q4_1, &y, t, k),
            (Fmt::Q4_0, &y, t, k),
            (Fmt::Q4_0, &y, 6, 32),
            (Fmt::Q4_1, &x, t, k),
        ] {
            let before = p.generation;
            p.fill(f, xs, tt, kk).unwrap();
            assert_ne!(p.generation, before, "{f:?} {tt}x{kk} quantized again");
            let mut fresh = Prep::default();
            fresh.fill(f, xs, tt, kk).unwrap();
            assert_eq!(p.q[..tt * kk], fresh.q[..tt * kk]);
            let u = tt * kk / 32;
            assert_eq!(p.da[..u], fresh.da[..u]);
            assert_eq!(p.corr[..u], fresh.corr[..u]);
            assert_eq!(p.s[..u], fresh.s[..u]);
        }
    }

    /// Best time (µs) of these kernels and of the ymm group kernels at
    /// SmolLM2-135M shapes, interleaved (`THREADS`, default 2; `TYPES`,
    /// default `Q4_1,Q8_0`; `TOKENS`, default `8`): `cargo test --release -p
    /// backend-cpu --lib zmm_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn zmm_timing() {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
        let threads: usize = env("THREADS", "2").parse().unwrap();
        let tokens: Vec<usize> = env("TOKENS", "8")
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut rng = Rng::new(5);
        for ty in env("TYPES", "Q4_1,Q8_0")
            .split(',')
            .filter_map(GgmlType::from_name)
        {
            let f = Fmt::of(ty).unwrap();
            if !supports(f) {
                continue;
            }
            for (k, n) in [(576, 576), (576, 1536), (1536, 576), (576, 49152)] {
                let w = TestWeight::random(&mut rng, ty, k, n, 0.05);
                let row_bytes = w.bytes.len() / n;
                for &t in &tokens {
                    let x = rng.vec(t * k, 1.0);
                    let mut p = Prep::default();
                    p.fill(f, &x, t, k).unwrap();
                    let mut out = vec![0.0f32; t * n];
                    let reps = (20_000_000 / (k * n * t)).clamp(10, 2000);
                    let (mut zb, mut yb) = (f64::MAX, f64::MAX);
                    for _ in 0..5 {
                        let mut time = |zmm: bool| {
                            let mut best = f64::MAX;
                            for _ in 0..reps {
                                let s = Instant::now();
                                pool.install(|| {
                                    if zmm {
                                        run(f, &w.bytes, row_bytes, n, k, t, &p, &mut out, threads)
                                    } else {
                                        run_groups(
                                            f, &w.bytes, row_bytes, n, k, t, &p, &mut out, threads,
                                        )
                                    }
                                });
                                best = best.min(s.elapsed().as_secs_f64() * 1e6);
                            }
                            best
                        };
                        zb = zb.min(time(true));
                        yb = yb.min(time(false));
                    }
                    println!(
                        "{} {k}x{n} t={t:>2} threads={threads}: zmm {zb:>8.1} us  ymm {yb:>8.1} us  ({:.2}x)",
                        ty.name(),
                        yb / zb
                    );
                }
            }
        }
    }

    /// Time per 16-row block and token of the kernel on cache-resident
    /// data (k = 576, one thread) at tile widths 8 ([`TOK`]), 10, 12 and 4,
    /// rounds interleaved, best of 400: `cargo test --release -p
    /// backend-cpu --lib zmm_kernel_timing -- --ignored --nocapture`. (On
    /// the development VM 8 was best: wider tiles spill accumulators.)
    #[test]
    #[ignore = "timing, not a check"]
    #[cfg(target_arch = "x86_64")]
    fn zmm_kernel_timing() {
        use super::x86;
        let mut rng = Rng::new(9);
        let (k, n, t) = (576usize, 32usize, 12usize);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            let f = Fmt::of(ty).unwrap();
            if !supports(f) {
                continue;
            }
            let w = TestWeight::random(&mut rng, ty, k, n, 0.05);
            let row_bytes = w.bytes.len() / n;
            let x = rng.vec(t * k, 1.0);
            let mut p = Prep::default();
            p.fill(f, &x, t, k).unwrap();
            let mut pk = super::Packed::default();
            pk.fill(&p, t, k);
            let args = x86::Args {
                w: w.bytes.as_ptr(),
                row_bytes,
                rows: n,
                nb: k / 32,
                a: pk.q.as_ptr(),
                da: pk.da.as_ptr(),
                corr: pk.corr.as_ptr(),
                s: pk.s.as_ptr(),
            };
            let mut out = vec![0.0f32; t * n];
            let reps = 100;
            // One round of `reps` calls (seconds per call), for each
            // configuration in turn, rounds interleaved: best of 400.
            macro_rules! once {
                ($t:expr, $g:expr, $k:expr) => {{
                    let s = Instant::now();
                    for _ in 0..reps {
                        // SAFETY: 32 rows of `k / 32` blocks (`16 · $g`
                        // read), `t` = 12 tokens of activations (`nb · $t ·
                        // 32` bytes read, `$t ≤ 12`), a `t × 32` output;
                        // features checked by `supports`.
                        unsafe { x86::tile::<{ $t }, { $g }, { $k }>(&args, out.as_mut_ptr(), n) };
                        std::hint::black_box(&mut out);
                    }
                    // Per 16-row block and token.
                    s.elapsed().as_secs_f64() / reps as f64 * 1e9 / ((k / 32) * $g * $t) as f64
                }};
            }
            macro_rules! all {
                ($k:expr) => {
                    [
                        once!(8, 2, $k),
                        once!(8, 1, $k),
                        once!(4, 2, $k),
                        once!(6, 2, $k),
                    ]
                };
            }
            let mut best = [f64::MAX; 4];
            for _ in 0..400 {
                let r = match f {
                    Fmt::Q4_0 => all!(0),
                    Fmt::Q4_1 => all!(1),
                    Fmt::Q5_0 => all!(2),
                    _ => all!(3),
                };
                for (b, r) in best.iter_mut().zip(r) {
                    *b = b.min(r);
                }
            }
            let [a, b, c, d] = best;
            println!(
                "{}: ns per 16-row block and token: T8 {a:.2}, T10 {b:.2}, T12 {c:.2}, T4 {d:.2}",
                ty.name()
            );
        }
    }
}
