//! One-token (decode) matmul for Q4_0, Q4_1, Q5_0 and Q8_0 weights with
//! AVX-512 (F, BW, VL, VBMI, VNNI) and GFNI, reading the weights in place.
//!
//! The weight rows are walked four blocks (a *group*) at a time. A group of
//! one row is loaded with two (Q8_0: four) unaligned 64-byte loads, masked
//! at a row's last, partial group so that nothing past the row's bytes is
//! touched. One `vpermt2b` gathers the group's 4 × 16 quant bytes into a
//! zmm; the low nibbles (an `and`) and the high ones (one `gf2p8affineqb`)
//! (Q8_0: the first and second 16 values of each block, as `w + 128`) then
//! meet the activation in two `vpdpbusd`, so that i32 lanes `4i..4i+4` hold
//! block `i`'s partial sums. The four f16 block scales are gathered from the
//! same registers (Q4_0, Q4_1: from the first load alone, by the one-source
//! `vpermw`; else `vpermt2w`; each repeated in four lanes, Q4_1's minima in
//! the upper half) and converted by one `vcvtph2ps`.
//!
//! Rows whose last group is half a group (`nb % 4 == 2`: every 576-wide
//! SmolLM2 matrix) run their tails two rows at a time: the last two blocks
//! of rows `2i` and `2i + 1` form one *pair step* against a pair group of
//! the activation (its last two blocks twice), without masked loads.
//!
//! The activation row is quantized as for the other kernels (Q8_0, Q8_1 for
//! Q4_1, bit-exact with ggml) and then laid out once per call in the
//! matching order ([`Group`]): per group the 64 values that meet the low
//! nibbles, the 64 that meet the high nibbles, the activation scale per
//! lane, the integer start value per lane (the offset correction
//! `−off·Σa`: 8 for Q4_0, 16 for Q5_0, 128 for Q8_0) and, for Q4_1, the
//! Q8_1 block sum `s_a` in lane `4i`. A row's result is
//!
//! `Σ_groups Σ_lanes f32(isum_lane)·(d_w·d_a) + m_w·s_a`
//!
//! i.e. the integer block sums are ggml's (split over four lanes); only the
//! f32 summation order differs from [`super::x86::rows_vnni`] and ggml.
//! The scalar reference is [`reference`].

use std::cell::RefCell;

use rayon::prelude::*;

use super::Kind;
use crate::sync_ptr::SyncPtr;

/// Blocks per group.
const GROUP: usize = 4;

/// Rows per kernel call (they share the activation registers); the 4-bit
/// kinds take twice as many where a task has them. Every call starts at a
/// multiple of four rows of the task, so a row's result does not depend on
/// how the rows were grouped.
const ROWS: usize = 4;

/// One group of four activation blocks, laid out for the kernel.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Group {
    /// Byte `16i + j`: value `j` of block `i` (meets the low nibbles; Q8_0:
    /// the first half of each block).
    lo: [i8; 64],
    /// Byte `16i + j`: value `16 + j` of block `i`.
    hi: [i8; 64],
    /// Lane `4i + q`: the activation scale of block `i`.
    da: [f32; 16],
    /// Lane `4i`: `−off · Σa` of block `i` (the weight offset), else 0.
    init: [i32; 16],
    /// Lane `4i`: the Q8_1 sum `s_a` of block `i` (Q4_1 only), else 0.
    sa: [f32; 16],
}

impl Group {
    const ZERO: Group = Group {
        lo: [0; 64],
        hi: [0; 64],
        da: [0.0; 16],
        init: [0; 16],
        sa: [0.0; 16],
    };
}

thread_local! {
    /// Per-thread activation groups, reused across calls.
    static GROUPS: RefCell<Vec<Group>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU runs the kernel (AVX-512 F/BW/VL/VBMI/VNNI, GFNI, FMA,
/// F16C).
#[cfg(target_arch = "x86_64")]
pub(super) fn available() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512vbmi")
            && has!("avx512vnni")
            && has!("gfni")
            && has!("fma")
            && has!("f16c")
    })
}

/// Whether this CPU runs the kernel (never off x86_64).
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn available() -> bool {
    false
}

/// The weight offset that the integer start value corrects for.
fn offset(kind: Kind) -> i32 {
    match kind {
        Kind::Q4_0 => 8,
        Kind::Q5_0 => 16,
        Kind::Q8_0 => 128,
        Kind::Q4_1 => 0,
    }
}

#[inline]
fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Groups that [`prepare`] lays out for `nb` blocks: `nb.div_ceil(4)`, plus
/// the *pair group* when a row ends in a half group (`nb % 4 == 2`).
pub(super) fn groups_for(nb: usize) -> usize {
    nb.div_ceil(GROUP) + usize::from(nb % GROUP == 2)
}

/// Lay out one activation block `b` as block `i` of group `g`.
fn put_block(kind: Kind, act: &[u8], b: usize, g: &mut Group, i: usize) {
    let (a_bs, a_q) = kind.a_block();
    let blk = &act[b * a_bs..(b + 1) * a_bs];
    let q = &blk[a_q..a_q + 32];
    let mut s = 0i32;
    for j in 0..16 {
        g.lo[16 * i + j] = q[j] as i8;
        g.hi[16 * i + j] = q[16 + j] as i8;
    }
    for &v in q {
        s += v as i8 as i32;
    }
    let d = f16_at(blk, 0);
    g.da[4 * i..4 * i + 4].fill(d);
    g.init[4 * i] = -offset(kind) * s;
    if kind == Kind::Q4_1 {
        g.sa[4 * i] = f16_at(blk, 2);
    }
}

/// Lay out one quantized activation row (`nb` blocks of `kind.act_type()`)
/// as [`groups_for`]`(nb)` groups into `groups`: `nb.div_ceil(4)` groups of
/// four blocks (the last one zero-padded), and, when `nb % 4 == 2`, the
/// pair group holding the last two blocks twice (blocks `nb − 2, nb − 1,
/// nb − 2, nb − 1`: the tails of two rows in one step).
pub(super) fn prepare(kind: Kind, act: &[u8], nb: usize, groups: &mut Vec<Group>) {
    groups.clear();
    groups.resize(groups_for(nb), Group::ZERO);
    for b in 0..nb {
        put_block(kind, act, b, &mut groups[b / GROUP], b % GROUP);
    }
    if nb % GROUP == 2 {
        let g = &mut groups[nb.div_ceil(GROUP)];
        for i in 0..GROUP {
            put_block(kind, act, nb - 2 + i % 2, g, i);
        }
    }
}

/// `out[r] = row r of the weight · the activation row` for the `n` rows of
/// `bytes` (`row_bytes` each, `nb` blocks of `kind`), `act` one quantized
/// activation row; rows split over the current rayon pool in tasks of
/// about `chunk` rows.
///
/// # Panics
/// If the CPU lacks the features ([`available`]) or the sizes disagree.
pub(super) fn matmul(
    kind: Kind,
    bytes: &[u8],
    n: usize,
    nb: usize,
    act: &[u8],
    out: &mut [f32],
    chunk: usize,
) {
    assert!(available(), "zmm_rows needs AVX-512 F/BW/VL/VBMI/VNNI");
    let row_bytes = nb * kind.w_block();
    assert!(bytes.len() >= n * row_bytes && out.len() >= n);
    assert!(act.len() >= nb * kind.a_block().0);
    if n == 0 || nb == 0 {
        out[..n].fill(0.0);
        return;
    }
    GROUPS.with(|cell| {
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let groups: &mut Vec<Group> = match guard.as_mut() {
            Ok(g) => g,
            Err(_) => &mut fresh,
        };
        prepare(kind, act, nb, groups);
        let groups: &[Group] = groups;
        // Whole kernel calls per task; one thread: one task (no hand-off
        // through the pool, one unbroken prefetch stream).
        let chunk = if rayon::current_num_threads() <= 1 {
            n
        } else {
            chunk.max(1).next_multiple_of(ROWS)
        };
        let out_ptr = SyncPtr(out.as_mut_ptr());
        let task = |c: usize| {
            // The whole `SyncPtr` (Sync), not its raw pointer field.
            let dst = out_ptr;
            let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(n));
            // SAFETY: rows `r0..r1` of `row_bytes` each lie inside `bytes`
            // (asserted above); `groups` holds `groups_for(nb)` groups; the
            // CPU has the features (asserted); output indices `r0..r1` are
            // inside `out` and only this task writes them.
            unsafe {
                x86_task(
                    kind,
                    bytes.as_ptr().add(r0 * row_bytes),
                    r1 - r0,
                    nb,
                    groups,
                    dst.0.add(r0),
                )
            };
        };
        let tasks = n.div_ceil(chunk);
        if tasks == 1 {
            task(0);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
    });
}

/// `out[r]` for the `n` rows of `bytes` (`nb` blocks of `kind` each) against
/// `groups` ([`prepare`]d for `kind`), on the calling thread as one task.
///
/// # Panics
/// If the CPU lacks the features ([`available`]) or the sizes disagree.
pub(super) fn rows_here(
    kind: Kind,
    bytes: &[u8],
    n: usize,
    nb: usize,
    groups: &[Group],
    out: &mut [f32],
) {
    assert!(available(), "zmm_rows needs AVX-512 F/BW/VL/VBMI/VNNI");
    let row_bytes = nb * kind.w_block();
    assert!(bytes.len() >= n * row_bytes && out.len() >= n);
    assert!(groups.len() >= groups_for(nb));
    if n == 0 {
        return;
    }
    // SAFETY: `bytes` holds `n` rows of `row_bytes`, `groups` enough groups,
    // `out` room for `n` values (all asserted above); the CPU has the
    // features (asserted).
    unsafe { x86_task(kind, bytes.as_ptr(), n, nb, groups, out.as_mut_ptr()) };
}

/// Run the kernel over `rows` consecutive rows starting at `w`.
///
/// # Safety
/// `w` holds `rows` rows of `nb` blocks of `kind`; `groups` holds
/// `groups_for(nb)` groups prepared for `kind`; `out` has room for `rows`
/// values; the CPU has the features of [`available`].
#[cfg(target_arch = "x86_64")]
unsafe fn x86_task(
    kind: Kind,
    w: *const u8,
    rows: usize,
    nb: usize,
    groups: &[Group],
    out: *mut f32,
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match kind {
            Kind::Q4_0 => x86::task::<0>(w, rows, nb, groups, out),
            Kind::Q4_1 => x86::task::<1>(w, rows, nb, groups, out),
            Kind::Q8_0 => x86::task::<2>(w, rows, nb, groups, out),
            Kind::Q5_0 => x86::task::<3>(w, rows, nb, groups, out),
        }
    }
}

/// Never reached off x86_64 ([`available`] is false there).
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn x86_task(
    _kind: Kind,
    _w: *const u8,
    _rows: usize,
    _nb: usize,
    _groups: &[Group],
    _out: *mut f32,
) {
    unreachable!("zmm_rows is only selected on x86_64");
}

/// The scalar reference: row `r`'s result in f64, from the exact integer
/// block sums (`Σ_b d_w·d_a·(Σ w·a − off·Σa) + m_w·s_a`).
#[cfg(test)]
pub(super) fn reference(kind: Kind, wrow: &[u8], act: &[u8], nb: usize) -> f64 {
    let (a_bs, a_q) = kind.a_block();
    let w_bs = kind.w_block();
    let mut total = 0.0f64;
    for b in 0..nb {
        let wb = &wrow[b * w_bs..(b + 1) * w_bs];
        let ab = &act[b * a_bs..(b + 1) * a_bs];
        let a = |j: usize| ab[a_q + j] as i8 as i32;
        let wv = |j: usize| -> i32 {
            match kind {
                Kind::Q4_0 | Kind::Q4_1 => {
                    let q = wb[if kind == Kind::Q4_0 { 2 } else { 4 } + j % 16];
                    (if j < 16 { q & 15 } else { q >> 4 }) as i32
                }
                Kind::Q5_0 => {
                    let q = wb[6 + j % 16];
                    let qh = u32::from_le_bytes([wb[2], wb[3], wb[4], wb[5]]);
                    let nib = if j < 16 { q & 15 } else { q >> 4 } as i32;
                    nib | ((((qh >> j) & 1) as i32) << 4)
                }
                Kind::Q8_0 => wb[2 + j] as i8 as i32 + 128,
            }
        };
        let isum: i32 =
            (0..32).map(|j| wv(j) * a(j)).sum::<i32>() - offset(kind) * (0..32).map(a).sum::<i32>();
        total += f16_at(wb, 0) as f64 * f16_at(ab, 0) as f64 * isum as f64;
        if kind == Kind::Q4_1 {
            total += f16_at(wb, 2) as f64 * f16_at(ab, 2) as f64;
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Group, Kind, GROUP, ROWS};
    use std::arch::x86_64::*;

    /// Bytes of one group of four weight blocks of kind `K`.
    const fn grp_bytes(k: u8) -> usize {
        4 * Kind::from_u8(k).w_block()
    }

    /// Bytes of one row's last two blocks (a row's tail when `nb % 4 == 2`).
    const fn pair_len(k: u8) -> usize {
        2 * Kind::from_u8(k).w_block()
    }

    /// Where the second row's tail starts in the second load of a *pair
    /// step* (two rows' last two blocks): Q8_0 loads it from its start
    /// (its 68 bytes are exactly two loads 4 bytes apart), the 4-bit kinds
    /// load the 64 bytes that end where that row ends, so that no load
    /// reaches past the weights.
    const fn pair_skew(k: u8) -> usize {
        if k == 2 {
            0
        } else {
            64 - pair_len(k)
        }
    }

    /// Start of block `i` in the bytes that the loads see: a group's four
    /// blocks one after the other, or (`pair`) the first row's two tail
    /// blocks at 0 and the second row's two at `64 + pair_skew` (its load
    /// counts from 64).
    const fn block_base(k: u8, pair: bool, i: usize) -> usize {
        let bs = Kind::from_u8(k).w_block();
        if !pair || i < 2 {
            i * bs
        } else {
            64 + pair_skew(k) + (i - 2) * bs
        }
    }

    /// The offsets of the two 64-byte loads whose `vpermt2b` gives the
    /// low-nibble (Q8_0: first-half) quant bytes of a group (`pair`: of a
    /// pair step, counted as in [`block_base`]).
    const fn srcs_lo(k: u8, pair: bool) -> (usize, usize) {
        if pair {
            return (0, 64);
        }
        match k {
            0 => (0, 8),
            1 => (0, 16),
            2 => (0, 64),
            _ => (0, 24),
        }
    }

    /// Q8_0's second pair of loads (the second halves of the blocks).
    const fn srcs_hi_q8(pair: bool) -> (usize, usize) {
        if pair {
            (4, 68)
        } else {
            (18, 72)
        }
    }

    /// Offset of block `i`'s quant byte `j` (Q8_0: value `j`).
    const fn quant_offset(k: u8, pair: bool, i: usize, j: usize) -> usize {
        block_base(k, pair, i)
            + match k {
                0 => 2,
                1 => 4,
                2 => 2,
                _ => 6,
            }
            + j
    }

    /// The `vpermt2b` index gathering byte `o(16i + j)` from the loads at
    /// offsets `s0` (indices 0..64) and `s1` (64..128).
    const fn byte_index(k: u8, pair: bool, hi: bool, (s0, s1): (usize, usize)) -> [u8; 64] {
        let mut idx = [0u8; 64];
        let mut p = 0;
        while p < 64 {
            let (i, j) = (p / 16, p % 16);
            let o = quant_offset(k, pair, i, if hi { 16 + j } else { j });
            idx[p] = if o >= s0 && o - s0 < 64 {
                (o - s0) as u8
            } else {
                assert!(o >= s1 && o - s1 < 64);
                (64 + o - s1) as u8
            };
            p += 1;
        }
        idx
    }

    /// The `vpermt2w` index putting the f16 at byte offset `off(i)` into
    /// words `4i..4i+4` (and `16 + 4i..` for `off2`), from the loads at `s0`
    /// and `s1`.
    const fn word_index((s0, s1): (usize, usize), off: [usize; 4], off2: [usize; 4]) -> [u16; 32] {
        let mut idx = [0u16; 32];
        let mut p = 0;
        while p < 32 {
            let o = if p < 16 {
                off[p / 4]
            } else {
                off2[(p - 16) / 4]
            };
            idx[p] = if o >= s0 && o + 2 - s0 <= 64 {
                assert!((o - s0) % 2 == 0);
                ((o - s0) / 2) as u16
            } else {
                assert!(o >= s1 && o + 2 - s1 <= 64 && (o - s1) % 2 == 0);
                (32 + (o - s1) / 2) as u16
            };
            p += 1;
        }
        idx
    }

    /// Block `i`'s f16 scale `d` (and Q4_1's `m`) offsets.
    const fn scale_offsets(k: u8, pair: bool) -> ([usize; 4], [usize; 4]) {
        let mut d = [0; 4];
        let mut m = [0; 4];
        let mut i = 0;
        while i < 4 {
            d[i] = block_base(k, pair, i);
            m[i] = d[i] + 2;
            i += 1;
        }
        (d, m)
    }

    /// Q5_0: the `vpermt2w` index putting block `i`'s `qh` (the words at
    /// its offsets 2 and 4) into the low half of qwords `2i` and `2i + 1`.
    const fn qh_index(pair: bool) -> [u16; 32] {
        let s = srcs_lo(3, pair);
        let mut idx = [0u16; 32];
        let mut p = 0;
        while p < 32 {
            // Word p is word p % 4 of qword p / 4, which belongs to block p / 8.
            let blk = p / 8;
            let o = block_base(3, pair, blk) + 2 + 2 * (p % 2);
            idx[p] = if o >= s.0 && o + 2 - s.0 <= 64 {
                assert!((o - s.0).is_multiple_of(2));
                ((o - s.0) / 2) as u16
            } else {
                assert!(o >= s.1 && o + 2 - s.1 <= 64 && (o - s.1).is_multiple_of(2));
                (32 + (o - s.1) / 2) as u16
            };
            p += 1;
        }
        idx
    }

    /// `vpmultishiftqb` controls moving bit `j` (`lo`) or `16 + j` (`hi`) of
    /// the qword's low `qh` to bit 4 of byte `j` (`j` = 0..16 within a block's
    /// two qwords).
    const fn qh_shift(hi: bool) -> [u8; 64] {
        let mut c = [0u8; 64];
        let mut p = 0;
        while p < 64 {
            let j = p % 16;
            let bit = if hi { 16 + j } else { j };
            c[p] = ((bit + 64 - 4) % 64) as u8;
            p += 1;
        }
        c
    }

    /// Index vectors of kind `K`, kept in registers through a task.
    struct Consts {
        idx_lo: __m512i,
        idx_hi: __m512i,
        idx_d: __m512i,
        idx_qh: __m512i,
        sh_lo: __m512i,
        sh_hi: __m512i,
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_const<T>(v: &T) -> __m512i {
        debug_assert!(std::mem::size_of::<T>() >= 64);
        // SAFETY: `v` has at least 64 readable bytes.
        unsafe { _mm512_loadu_si512(v as *const T as *const _) }
    }

    /// The index vectors of kind `K` for a group (`PAIR`: for a pair step),
    /// evaluated at compile time.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn consts<const K: u8, const PAIR: bool>() -> Consts {
        // Q8_0's scales come from the loads at 0 and 64 like its first halves.
        let idx_lo: [u8; 64] = const { byte_index(K, PAIR, false, srcs_lo(K, PAIR)) };
        let idx_hi: [u8; 64] = const {
            if K == 2 {
                byte_index(K, PAIR, true, srcs_hi_q8(PAIR))
            } else {
                [0; 64]
            }
        };
        // `d` in words 0..16, Q4_1's `m` in words 16..32.
        let idx_d: [u16; 32] = const {
            let (d, m) = scale_offsets(K, PAIR);
            word_index(srcs_lo(K, PAIR), d, m)
        };
        let idx_qh: [u16; 32] = const {
            if K == 3 {
                qh_index(PAIR)
            } else {
                [0; 32]
            }
        };
        let sh_lo: [u8; 64] = const { qh_shift(false) };
        let sh_hi: [u8; 64] = const { qh_shift(true) };
        Consts {
            idx_lo: load_const(&idx_lo),
            idx_hi: load_const(&idx_hi),
            idx_d: load_const(&idx_d),
            idx_qh: load_const(&idx_qh),
            sh_lo: load_const(&sh_lo),
            sh_hi: load_const(&sh_hi),
        }
    }

    /// One row's group: the unsigned weight bytes meeting `lo` and `hi`,
    /// the scales `d` per lane and (Q4_1) the minima `m` per lane.
    struct Loaded {
        lo: __m512i,
        hi: __m512i,
        d: __m512,
        m: __m512,
    }

    /// Mask of the first `n` bytes (saturating at 0 and 64).
    #[inline]
    fn first_bytes(n: isize) -> __mmask64 {
        if n >= 64 {
            !0
        } else if n <= 0 {
            0
        } else {
            (1u64 << n) - 1
        }
    }

    /// 64 bytes at `p + s`, or with `TAIL` only those below `p + len`
    /// (zero elsewhere; masked-out bytes are never read).
    ///
    /// # Safety
    /// Without `TAIL`: `p + s .. p + s + 64` is readable. With `TAIL`:
    /// `p .. p + len` is readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn ld<const TAIL: bool>(p: *const u8, s: usize, len: usize) -> __m512i {
        // SAFETY: the caller's contract; a masked load touches only the
        // bytes its mask selects, so the address may lie past the data.
        unsafe {
            if TAIL {
                let m = first_bytes(len as isize - s as isize);
                _mm512_maskz_loadu_epi8(m, p.wrapping_add(s) as *const i8)
            } else {
                _mm512_loadu_si512(p.add(s) as *const _)
            }
        }
    }

    /// Unpack one group (or pair step) from its loads: `a`, `b` the two
    /// whose `vpermt2b` gives the low-nibble (Q8_0: first-half) bytes and
    /// hold the scales, `x`, `y` Q8_0's two for the second halves.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,gfni,f16c")]
    fn unpack<const K: u8, const PAIR: bool>(
        a: __m512i,
        b: __m512i,
        x: __m512i,
        y: __m512i,
        c: &Consts,
    ) -> Loaded {
        let m4 = _mm512_set1_epi8(0x0F);
        let q = _mm512_permutex2var_epi8(a, c.idx_lo, b);
        let (lo, hi) = if K == 2 {
            let q2 = _mm512_permutex2var_epi8(x, c.idx_hi, y);
            let flip = _mm512_set1_epi8(-128);
            (_mm512_xor_si512(q, flip), _mm512_xor_si512(q2, flip))
        } else {
            let lo = _mm512_and_si512(q, m4);
            // The high nibble of every byte, by one GF(2) affine map
            // (result bit i = bit i + 4; matrix row of bit i in byte 7 − i).
            let hi =
                _mm512_gf2p8affine_epi64_epi8::<0>(q, _mm512_set1_epi64(0x1020_4080_0000_0000));
            if K == 3 {
                let qh = _mm512_permutex2var_epi16(a, c.idx_qh, b);
                let blo = _mm512_multishift_epi64_epi8(c.sh_lo, qh);
                let bhi = _mm512_multishift_epi64_epi8(c.sh_hi, qh);
                let b4 = _mm512_set1_epi8(0x10);
                // a | (b & c)
                (
                    _mm512_ternarylogic_epi32::<0xF8>(lo, blo, b4),
                    _mm512_ternarylogic_epi32::<0xF8>(hi, bhi, b4),
                )
            } else {
                (lo, hi)
            }
        };
        // One gather for `d` (low half) and Q4_1's `m` (high half); from
        // the first load alone (the cheaper one-source `vpermw`) where a
        // group's scales all lie in it (Q4_0, Q4_1).
        let dw = if K <= 1 && !PAIR {
            _mm512_permutexvar_epi16(c.idx_d, a)
        } else {
            _mm512_permutex2var_epi16(a, c.idx_d, b)
        };
        let d = _mm512_cvtph_ps(_mm512_castsi512_si256(dw));
        let m = if K == 1 {
            _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(dw))
        } else {
            _mm512_setzero_ps()
        };
        Loaded { lo, hi, d, m }
    }

    /// Load and unpack one group of one row at `p` (`len` valid bytes when
    /// `TAIL`).
    ///
    /// # Safety
    /// Without `TAIL`, the group's `grp_bytes(K)` bytes at `p` are readable;
    /// with `TAIL`, `len` bytes are.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,gfni,f16c")]
    unsafe fn load_group<const K: u8, const TAIL: bool>(
        p: *const u8,
        len: usize,
        c: &Consts,
    ) -> Loaded {
        let (s0, s1) = srcs_lo(K, false);
        // SAFETY: every load stays inside the group (its offsets plus 64 are
        // at most `grp_bytes(K)`), or is masked to `len` bytes (`TAIL`).
        let (a, b) = unsafe { (ld::<TAIL>(p, s0, len), ld::<TAIL>(p, s1, len)) };
        let (x, y) = if K == 2 {
            let (x0, x1) = srcs_hi_q8(false);
            // SAFETY: as above (72 + 64 = 136 = a Q8_0 group).
            unsafe { (ld::<TAIL>(p, x0, len), ld::<TAIL>(p, x1, len)) }
        } else {
            (a, b)
        };
        unpack::<K, false>(a, b, x, y, c)
    }

    /// Load and unpack the last two blocks of two consecutive rows (`p` the
    /// first row's, `p + row_bytes` the second's) as one group (a pair
    /// step: blocks 0, 1 from the first row, 2, 3 from the second).
    ///
    /// # Safety
    /// The `pair_len(K)` bytes at `p` are followed by the second row, whose
    /// last `pair_len(K)` bytes start at `p + row_bytes`, and the 64 bytes
    /// before its end are readable (part of the two rows); `c` was built by
    /// `consts::<K, true>`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,gfni,f16c")]
    unsafe fn load_pair<const K: u8>(p: *const u8, row_bytes: usize, c: &Consts) -> Loaded {
        let q = p.wrapping_add(row_bytes);
        // SAFETY: the first load lies in the first row's tail and the start
        // of the second row (64 − pair_len ≤ row_bytes); Q8_0's four loads
        // cover exactly the two tails (68 bytes each, loads at 0 and 4);
        // the 4-bit kinds' second load is the 64 bytes ending at the second
        // row's end (`pair_skew`), inside the two rows.
        unsafe {
            let a = _mm512_loadu_si512(p as *const _);
            if K == 2 {
                let b = _mm512_loadu_si512(q as *const _);
                let x = _mm512_loadu_si512(p.add(4) as *const _);
                let y = _mm512_loadu_si512(q.add(4) as *const _);
                unpack::<K, true>(a, b, x, y, c)
            } else {
                let b = _mm512_loadu_si512(q.sub(pair_skew(K)) as *const _);
                unpack::<K, true>(a, b, a, b, c)
            }
        }
    }

    /// Prefetch `n` lines from `*pf` on (64 bytes apart) and move `*pf` by
    /// `step` bytes (see [`task`]).
    #[inline]
    #[target_feature(enable = "sse")]
    fn prefetch_run(pf: &mut *const u8, n: usize, step: usize) {
        for l in 0..n {
            // Prefetches never fault (the address may be past the weights).
            // Into L2 (T1): with T0 the prefetches waited for L1 fill buffers
            // (a third of the kernel's samples sat on them) and decode was
            // slower in every interleaved comparison.
            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(64 * l) as *const i8);
        }
        *pf = pf.wrapping_add(step);
    }

    /// The sums of the 16 lanes of each of `R ≤ 4` accumulators, reduced
    /// together (three shuffle-and-add stages for all four instead of one
    /// reduction each).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce<const R: usize>(acc: &[__m512; R]) -> [f32; R] {
        let z = _mm512_setzero_ps();
        let a = |i: usize| if i < R { acc[i] } else { z };
        // Per 128-bit lane: [a0 (l0+l2), a0 (l1+l3), a1 (l0+l2), a1 (l1+l3)].
        let x = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a(0), a(1)),
            _mm512_shuffle_f32x4::<0xEE>(a(0), a(1)),
        );
        let y = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a(2), a(3)),
            _mm512_shuffle_f32x4::<0xEE>(a(2), a(3)),
        );
        // 128-bit lane r: four partial sums of accumulator r.
        let v = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xDD>(x, y),
        );
        let v = _mm512_add_ps(v, _mm512_shuffle_ps::<0x4E>(v, v));
        let v = _mm512_add_ps(v, _mm512_shuffle_ps::<0xB1>(v, v));
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        let v = _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, v));
        let mut all = [0.0f32; 4];
        // SAFETY: `all` has room for four f32.
        unsafe { _mm_storeu_ps(all.as_mut_ptr(), v) };
        std::array::from_fn(|i| all[i])
    }

    /// `R` consecutive rows at `w` (`row_bytes` apart) against the
    /// activation `groups`: `res[r]` = row `r`'s dot product. When rows end
    /// in half a group (`nb % 4 == 2`), rows `2i` and `2i + 1` run their
    /// last two blocks together as one pair step (`cp`: the pair step's
    /// index vectors); a last odd row takes the masked single-row tail.
    ///
    /// # Safety
    /// `w` holds `R` rows of `nb` blocks of kind `K`; `groups` holds
    /// `groups_for(nb)` prepared groups; the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,gfni,fma,f16c")]
    unsafe fn rows<const R: usize, const K: u8>(
        w: *const u8,
        row_bytes: usize,
        nb: usize,
        groups: &[Group],
        c: &Consts,
        cp: &Consts,
        pf: &mut *const u8,
    ) -> [f32; R] {
        let gb = grp_bytes(K);
        let full = nb / GROUP;
        let tail = nb % GROUP;
        let mut acc = [_mm512_setzero_ps(); R];
        // The activation registers of group `gi`.
        macro_rules! act {
            ($gi:expr) => {{
                let g: &Group = &groups[$gi];
                // SAFETY: `Group` is 64-byte aligned and its fields are 64
                // bytes each.
                unsafe {
                    (
                        _mm512_load_si512(g.lo.as_ptr() as *const _),
                        _mm512_load_si512(g.hi.as_ptr() as *const _),
                        _mm512_load_ps(g.da.as_ptr()),
                        _mm512_load_si512(g.init.as_ptr() as *const _),
                        _mm512_load_ps(g.sa.as_ptr()),
                    )
                }
            }};
        }
        macro_rules! step {
            ($gi:expr, $tail:expr, $len:expr, $rows:expr) => {{
                let gi: usize = $gi;
                let (alo, ahi, da, init, sa) = act!(gi);
                for r in $rows {
                    // SAFETY: row `r < R`, group inside the row (or masked
                    // to the row's last `len` bytes).
                    let l =
                        unsafe { load_group::<K, $tail>(w.add(r * row_bytes + gi * gb), $len, c) };
                    let s = _mm512_dpbusd_epi32(init, l.lo, alo);
                    let s = _mm512_dpbusd_epi32(s, l.hi, ahi);
                    let scale = _mm512_mul_ps(l.d, da);
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r]);
                    if K == 1 {
                        acc[r] = _mm512_fmadd_ps(l.m, sa, acc[r]);
                    }
                }
            }};
        }
        let mut gi = 0;
        while gi < full {
            prefetch_run(pf, (R * gb).div_ceil(64), R * gb);
            step!(gi, false, 0, 0..R);
            gi += 1;
        }
        if tail > 0 {
            let len = tail * (gb / GROUP);
            prefetch_run(pf, (R * len).div_ceil(64), R * len);
            if tail == 2 {
                let (alo, ahi, da, init, sa) = act!(full + 1);
                let mut r = 0;
                while r + 2 <= R {
                    // SAFETY: rows `r` and `r + 1 < R` end in two blocks
                    // (`len` bytes) each, one right after the other.
                    let l =
                        unsafe { load_pair::<K>(w.add(r * row_bytes + gi * gb), row_bytes, cp) };
                    let s = _mm512_dpbusd_epi32(init, l.lo, alo);
                    let s = _mm512_dpbusd_epi32(s, l.hi, ahi);
                    let scale = _mm512_mul_ps(l.d, da);
                    let mut t = _mm512_mul_ps(_mm512_cvtepi32_ps(s), scale);
                    if K == 1 {
                        t = _mm512_fmadd_ps(l.m, sa, t);
                    }
                    // Lanes 0..8 are row `r`'s, 8..16 row `r + 1`'s.
                    acc[r] = _mm512_mask_add_ps(acc[r], 0x00FF, acc[r], t);
                    acc[r + 1] = _mm512_mask_add_ps(acc[r + 1], 0xFF00, acc[r + 1], t);
                    r += 2;
                }
                step!(gi, true, len, r..R);
            } else {
                step!(gi, true, len, 0..R);
            }
        }
        if R <= 4 {
            let v = reduce::<4>(&std::array::from_fn(|i| {
                if i < R {
                    acc[i]
                } else {
                    _mm512_setzero_ps()
                }
            }));
            std::array::from_fn(|i| v[i])
        } else {
            let lo = reduce::<4>(&std::array::from_fn(|i| acc[i]));
            let hi = reduce::<4>(&std::array::from_fn(|i| {
                if 4 + i < R {
                    acc[4 + i]
                } else {
                    _mm512_setzero_ps()
                }
            }));
            std::array::from_fn(|i| if i < 4 { lo[i] } else { hi[i - 4] })
        }
    }

    /// All `n` rows starting at `w` into `out[0..n]`, `2 × ROWS` (Q4_0,
    /// Q4_1, Q5_0) or [`ROWS`] at a time.
    /// A prefetch pointer walks the task's bytes about
    /// [`crate::matmul::ROW_PREFETCH_BYTES`] ahead of the rows being read,
    /// one line per 64 bytes consumed (into L2), after the task's first
    /// `ROW_PREFETCH_BYTES` were requested at its start.
    ///
    /// # Safety
    /// `w` holds `n` rows of `nb` blocks of kind `K`; `groups` holds
    /// `groups_for(nb)` groups prepared for `K`; `out` has room for `n`
    /// values; the CPU has the features of [`super::available`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,gfni,fma,f16c")]
    pub(super) unsafe fn task<const K: u8>(
        w: *const u8,
        n: usize,
        nb: usize,
        groups: &[Group],
        out: *mut f32,
    ) {
        let row_bytes = nb * Kind::from_u8(K).w_block();
        let c = consts::<K, false>();
        let cp = consts::<K, true>();
        let ahead = crate::matmul::ROW_PREFETCH_BYTES;
        // The task's first bytes: the running prefetch starts `ahead` past them.
        let mut warm = w;
        prefetch_run(&mut warm, ahead.min(n * row_bytes).div_ceil(64), 0);
        let mut pf = w.wrapping_add(ahead);
        let mut r = 0;
        // SAFETY (all calls and writes): rows `r..r + R` are below `n`.
        unsafe {
            // The 4-bit kinds: eight rows per call where there are (they
            // share each group's activation registers; Q8_0's four loads
            // per row leave no registers for that).
            // Calls of `$k` rows while `$go` holds and `$k` rows are left.
            macro_rules! rows_while {
                ($go:expr, $k:expr) => {
                    while $go && r + $k <= n {
                        let v = rows::<{ $k }, K>(
                            w.add(r * row_bytes),
                            row_bytes,
                            nb,
                            groups,
                            &c,
                            &cp,
                            &mut pf,
                        );
                        std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(r), $k);
                        r += $k;
                    }
                };
            }
            rows_while!(K != 2, 2 * ROWS);
            rows_while!(true, ROWS);
            let wr = w.add(r * row_bytes);
            match n - r {
                1 => {
                    let v = rows::<1, K>(wr, row_bytes, nb, groups, &c, &cp, &mut pf);
                    std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(r), 1);
                }
                2 => {
                    let v = rows::<2, K>(wr, row_bytes, nb, groups, &c, &cp, &mut pf);
                    std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(r), 2);
                }
                3 => {
                    let v = rows::<3, K>(wr, row_bytes, nb, groups, &c, &cp, &mut pf);
                    std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(r), 3);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::Rng;
    use backend_core::GgmlType;

    const KINDS: [Kind; 4] = [Kind::Q4_0, Kind::Q4_1, Kind::Q8_0, Kind::Q5_0];

    fn ggml(kind: Kind) -> GgmlType {
        match kind {
            Kind::Q4_0 => GgmlType::Q4_0,
            Kind::Q4_1 => GgmlType::Q4_1,
            Kind::Q8_0 => GgmlType::Q8_0,
            Kind::Q5_0 => GgmlType::Q5_0,
        }
    }

    /// `rows` random rows of `nb` blocks and one quantized activation row.
    fn data(rng: &mut Rng, kind: Kind, nb: usize, rows: usize) -> (Vec<u8>, Vec<u8>) {
        let k = nb * 32;
        let mut w = vec![0u8; rows * nb * kind.w_block()];
        quant::quantize(ggml(kind), &rng.vec(k * rows, 0.1), &mut w).unwrap();
        let mut a = vec![0u8; nb * kind.a_block().0];
        quant::dot::quantize_activations(kind.act_type(), &rng.vec(k, 1.0), &mut a).unwrap();
        (w, a)
    }

    /// `Σ_b |d_w·d_a|·(Σ|w·a| + off·Σ|a|) + |m_w·s_a|`: the scale of the
    /// rounding error of any f32 summation order.
    fn magnitude(kind: Kind, wrow: &[u8], act: &[u8], nb: usize) -> f64 {
        let (a_bs, a_q) = kind.a_block();
        let w_bs = kind.w_block();
        let mut m = 0.0;
        for b in 0..nb {
            let wb = &wrow[b * w_bs..(b + 1) * w_bs];
            let ab = &act[b * a_bs..(b + 1) * a_bs];
            let sa: f64 = ab[a_q..a_q + 32]
                .iter()
                .map(|&v| (v as i8 as f64).abs())
                .sum();
            let d = (f16_at(wb, 0) as f64 * f16_at(ab, 0) as f64).abs();
            m += d * (sa * (32.0 + offset(kind) as f64));
            if kind == Kind::Q4_1 {
                m += (f16_at(wb, 2) as f64 * f16_at(ab, 2) as f64).abs();
            }
        }
        m
    }

    fn check(kind: Kind, w: &[u8], a: &[u8], nb: usize, rows: usize, got: &[f32]) {
        let rb = nb * kind.w_block();
        let vec_dot = quant::dot::kernel_for(ggml(kind)).unwrap();
        for r in 0..rows {
            let wrow = &w[r * rb..(r + 1) * rb];
            let want = reference(kind, wrow, a, nb);
            let tol = 1e-6 * magnitude(kind, wrow, a, nb) + 1e-30;
            let err = (got[r] as f64 - want).abs();
            assert!(
                err <= tol,
                "{kind:?} nb={nb} rows={rows} row {r}: {} vs {want} (tol {tol})",
                got[r]
            );
            // And ggml's own dot product (through `quant::dot`).
            let ggml = vec_dot.dot(wrow, a).unwrap() as f64;
            assert!(
                (got[r] as f64 - ggml).abs() <= 2.0 * tol,
                "{kind:?} nb={nb} row {r}: {} vs vec_dot {ggml}",
                got[r]
            );
        }
    }

    /// Every kind, 1..=40 blocks (all group tails), 1..=9 rows (all row
    /// remainders), one task and several, against the f64 reference from the
    /// exact integer sums and against `quant::dot`: equal within 1e-6 of the
    /// terms' magnitude (the f32 summation order differs, the integers not).
    #[test]
    fn agrees_with_reference() {
        if !available() {
            eprintln!("skipped: no AVX-512 VBMI/VNNI");
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut rng = Rng::new(11);
        for kind in KINDS {
            for nb in 1..=40 {
                for rows in 1..=9 {
                    let (w, a) = data(&mut rng, kind, nb, rows);
                    for chunk in [rows, 4] {
                        let mut out = vec![f32::NAN; rows];
                        pool.install(|| matmul(kind, &w, rows, nb, &a, &mut out, chunk));
                        check(kind, &w, &a, nb, rows, &out);
                    }
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        fn mprotect(addr: *mut u8, len: usize, prot: i32) -> i32;
        fn munmap(addr: *mut u8, len: usize) -> i32;
    }

    /// The weights end exactly at a page followed by an inaccessible
    /// (`PROT_NONE`) page, as the last row of a model file's last tensor may
    /// end at the end of its mapping: the masked tail loads must not touch
    /// it (a read there would crash the test).
    #[cfg(target_os = "linux")]
    #[test]
    fn tails_stop_at_the_end_of_the_weights() {
        if !available() {
            eprintln!("skipped: no AVX-512 VBMI/VNNI");
            return;
        }
        const PAGE: usize = 4096;
        const LEN: usize = 4 * PAGE;
        const PROT_READ_WRITE: i32 = 3;
        const MAP_PRIVATE_ANON: i32 = 0x02 | 0x20;
        // SAFETY: a fresh anonymous private mapping of LEN bytes; the last
        // page is then made inaccessible; only this test uses it and it is
        // unmapped at the end.
        let base = unsafe {
            mmap(
                std::ptr::null_mut(),
                LEN,
                PROT_READ_WRITE,
                MAP_PRIVATE_ANON,
                -1,
                0,
            )
        };
        assert!(!base.is_null() && base as isize != -1, "mmap failed");
        // SAFETY: the last page of the mapping above.
        assert_eq!(unsafe { mprotect(base.add(LEN - PAGE), PAGE, 0) }, 0);
        let mut rng = Rng::new(5);
        for kind in KINDS {
            for nb in [1, 2, 3, 5, 6, 7, 18] {
                for rows in 1..=6 {
                    let (w, a) = data(&mut rng, kind, nb, rows);
                    assert!(w.len() <= LEN - PAGE);
                    // SAFETY: the readable pages hold `LEN - PAGE` bytes;
                    // `w` is copied to their very end.
                    let end = unsafe {
                        let dst = base.add(LEN - PAGE - w.len());
                        std::ptr::copy_nonoverlapping(w.as_ptr(), dst, w.len());
                        std::slice::from_raw_parts(dst, w.len())
                    };
                    let mut out = vec![f32::NAN; rows];
                    matmul(kind, end, rows, nb, &a, &mut out, rows);
                    check(kind, &w, &a, nb, rows, &out);
                }
            }
        }
        // SAFETY: the mapping made above, no longer used.
        assert_eq!(unsafe { munmap(base, LEN) }, 0);
    }
}
