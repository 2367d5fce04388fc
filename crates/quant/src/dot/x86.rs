//! x86_64 dot-product kernels: one body per weight type, instantiated twice by
//! `kernels!`: with AVX2+FMA+F16C (`vpmaddubsw`/`vpmaddwd` for the u8×i8
//! sums) and with AVX-512 VL + VNNI on top (`vpdpbusd` for the u8×i8 sums).
//!
//! Layouts are read by byte offset (the block structs of this crate fix them;
//! the offsets are repeated next to each kernel). The loops are written to keep
//! the instruction count per block low, since they are bound by the number of
//! vector operations, not by latency:
//!
//! - 32-element formats with 16 nibble bytes per block (Q4_0, Q4_1, Q5_1,
//!   IQ4_NL, MXFP4) handle two blocks per 256-bit integer vector
//!   (`pairs32`), so one conversion and one FMA serve two blocks;
//!   the f16 scales of four blocks are gathered with `vpinsrw` from memory and
//!   converted with one `vcvtph2ps`.
//! - Q4_0 and Q8_0 have a third variant, [`gfni`], for CPUs with GFNI besides
//!   AVX-512 VNNI (Ice Lake and later): one block per vector, Q4_0 nibbles
//!   split by one `vgf2p8affineqb`, Q8_0 weights offset by 128 instead of the
//!   sign trick, scales gathered in general-purpose registers.
//! - Q4_K/Q5_K broadcast each sub-block scale with one load from a small
//!   scratch array (no shuffle port), take the mins · bsums term in one
//!   multiply-add, and on VNNI fold the scale multiply and the accumulation
//!   into `vpdpwssd`.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::DotFn;
use crate::GgmlType;

/// AVX2 + FMA + F16C, detected once.
pub(crate) fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// [`has_avx2`] plus AVX-512 F/BW/VL and VNNI, detected once.
pub(crate) fn has_avx512vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// [`has_avx512vnni`] plus GFNI (`vgf2p8affineqb`), detected once.
pub(crate) fn has_gfni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| has_avx512vnni() && is_x86_feature_detected!("gfni"))
}

/// `acc + Σ pairs-of-4 a[i]·b[i]` per i32 lane, `a` unsigned, `b` signed (AVX2).
/// `a·b` pair sums must fit i16 (true for every caller: |a| ≤ 127 or a ≤ 63).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn udot_avx2(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(a, b);
    _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
}

/// `acc + Σ pairs-of-4 a[i]·b[i]` per i32 lane, `a` unsigned, `b` signed (VNNI).
///
/// Written as inline assembly (EVEX `vpdpbusd` on ymm registers) because the
/// AVX-512 intrinsics and target features need a newer compiler than this
/// crate's minimum supported Rust version.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn udot_vnni(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: only reached from kernels handed out after `has_avx512vnni()`
    // confirmed AVX-512 VL + VNNI; the instruction touches registers only.
    std::arch::asm!(
        "vpdpbusd {acc}, {a}, {b}",
        acc = inout(ymm_reg) acc,
        a = in(ymm_reg) a,
        b = in(ymm_reg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// `acc + Σ pairs a[2k]·b[2k] + a[2k+1]·b[2k+1]` per i32 lane, i16 inputs (AVX2).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn wdot_avx2(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
}

/// `acc + Σ pairs a[2k]·b[2k] + a[2k+1]·b[2k+1]` per i32 lane, i16 inputs (VNNI
/// `vpdpwssd`; inline assembly for the same reason as [`udot_vnni`]).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn wdot_vnni(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: only reached from kernels handed out after `has_avx512vnni()`
    // confirmed AVX-512 VL + VNNI; the instruction touches registers only.
    std::arch::asm!(
        "vpdpwssd {acc}, {a}, {b}",
        acc = inout(ymm_reg) acc,
        a = in(ymm_reg) a,
        b = in(ymm_reg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// The 32-bit value at `p` in all eight lanes, as one load (`vpbroadcastd` from
/// memory needs no shuffle port, unlike a broadcast from a register, which is
/// what the compiler makes of `_mm256_set1_epi32(*p)` once it has seen the store).
///
/// # Safety
/// AVX2 must be available and `p` readable for 4 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bcast_d(p: *const u32) -> __m256i {
    let out: __m256i;
    // SAFETY: the caller guarantees AVX2 and 4 readable bytes at `p`.
    std::arch::asm!(
        "vpbroadcastd {out}, dword ptr [{p}]",
        out = out(ymm_reg) out,
        p = in(reg) p,
        options(pure, readonly, nostack, preserves_flags)
    );
    out
}

/// The f32 at `p` in all eight lanes, as one load (see [`bcast_d`]).
///
/// # Safety
/// AVX must be available and `p` readable for 4 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bcast_s(p: *const f32) -> __m256 {
    let out: __m256;
    // SAFETY: the caller guarantees AVX and 4 readable bytes at `p`.
    std::arch::asm!(
        "vbroadcastss {out}, dword ptr [{p}]",
        out = out(ymm_reg) out,
        p = in(reg) p,
        options(pure, readonly, nostack, preserves_flags)
    );
    out
}

/// `vpermps`: lane `i` of the result is lane `idx[i]` of `a`. Inline assembly so
/// that the compiler keeps one cross-lane permute instead of rewriting constant
/// indices into two shuffles.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn permps(a: __m256, idx: __m256i) -> __m256 {
    let out: __m256;
    // SAFETY: AVX2 is enabled for this function (callers run only after
    // detection); the instruction touches registers only.
    std::arch::asm!(
        "vpermps {out}, {idx}, {a}",
        out = lateout(ymm_reg) out,
        idx = in(ymm_reg) idx,
        a = in(ymm_reg) a,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// 32-byte aligned scratch for scale vectors that are read back with broadcasts.
#[repr(align(32))]
struct Align32<T>(T);

macro_rules! kernels {
    ($modname:ident, $features:literal, $udot:path, $wdot:path) => {
        /// Kernels compiled for one feature set; only called after detection.
        pub(crate) mod $modname {
            use std::arch::x86_64::*;

            /// f16 bits → f32 with F16C.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn h2f(p: *const u8) -> f32 {
                let bits = (p as *const u16).read_unaligned();
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
            }

            /// Four f16 values at `p + i·stride` (i = 0..4) → f32; reads 4 bytes at `p`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn h2f4(p: *const u8, stride: usize) -> __m128 {
                // One load and three `vpinsrw` from memory: fewer ALU operations
                // than assembling the 64 bits in a general-purpose register.
                // (The first load takes 4 bytes; the 2 after the scale, part of
                // the same block, are overwritten.)
                let w = |i: usize| (p.add(i * stride) as *const u16).read_unaligned() as i32;
                let v = _mm_cvtsi32_si128((p as *const i32).read_unaligned());
                let v = _mm_insert_epi16::<1>(v, w(1));
                let v = _mm_insert_epi16::<2>(v, w(2));
                let v = _mm_insert_epi16::<3>(v, w(3));
                _mm_cvtph_ps(v)
            }

            /// Eight f16 values at `p + i·stride` (i = 0..8) → f32; reads 4 bytes at `p`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn h2f8(p: *const u8, stride: usize) -> __m256 {
                // As [`h2f4`], with seven `vpinsrw` and one 8-lane conversion.
                let w = |i: usize| (p.add(i * stride) as *const u16).read_unaligned() as i32;
                let v = _mm_cvtsi32_si128((p as *const i32).read_unaligned());
                let v = _mm_insert_epi16::<1>(v, w(1));
                let v = _mm_insert_epi16::<2>(v, w(2));
                let v = _mm_insert_epi16::<3>(v, w(3));
                let v = _mm_insert_epi16::<4>(v, w(4));
                let v = _mm_insert_epi16::<5>(v, w(5));
                let v = _mm_insert_epi16::<6>(v, w(6));
                let v = _mm_insert_epi16::<7>(v, w(7));
                _mm256_cvtph_ps(v)
            }

            /// Eight E8M0 scales at `p + i·stride`, halved (see `scalar::e8m0_half`);
            /// reads 4 bytes at `p`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn e8m0_half8(p: *const u8, stride: usize) -> __m256 {
                // One 4-byte load (the 3 bytes after the first scale are
                // overwritten) and seven `vpinsrb` from memory.
                let b = |i: usize| *p.add(i * stride) as i32;
                let v = _mm_cvtsi32_si128((p as *const i32).read_unaligned());
                let v = _mm_insert_epi8::<1>(v, b(1));
                let v = _mm_insert_epi8::<2>(v, b(2));
                let v = _mm_insert_epi8::<3>(v, b(3));
                let v = _mm_insert_epi8::<4>(v, b(4));
                let v = _mm_insert_epi8::<5>(v, b(5));
                let v = _mm_insert_epi8::<6>(v, b(6));
                let v = _mm_insert_epi8::<7>(v, b(7));
                let e = _mm256_cvtepu8_epi32(v);
                // e ≥ 2: the bits (e − 1) << 23 (≥ 0x0080_0000); e < 2: the
                // subnormals 0x0020_0000 << e, here 0x0020_0000 + (e & 1) << 21,
                // which is at most 0x0040_0000 for every e. The signed maximum
                // picks it only where (e − 1) << 23 is 0 or negative: e < 2.
                let normal =
                    _mm256_sub_epi32(_mm256_slli_epi32(e, 23), _mm256_set1_epi32(0x0080_0000));
                let sub = _mm256_add_epi32(
                    _mm256_slli_epi32(_mm256_and_si256(e, _mm256_set1_epi32(1)), 21),
                    _mm256_set1_epi32(0x0020_0000),
                );
                _mm256_castsi256_ps(_mm256_max_epi32(normal, sub))
            }

            /// Test access to [`e8m0_half8`].
            #[cfg(test)]
            pub(crate) unsafe fn e8m0_half8_for_test(p: *const u8, stride: usize) -> __m256 {
                e8m0_half8(p, stride)
            }

            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn hsum(v: __m256) -> f32 {
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_movehdup_ps(s));
                _mm_cvtss_f32(s)
            }

            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn udot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
                $udot(acc, a, b)
            }

            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn wdot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
                $wdot(acc, a, b)
            }

            /// Signed × signed dot via the sign trick (|a|, sign(b, a)).
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn sdot(a: __m256i, b: __m256i) -> __m256i {
                udot(
                    _mm256_setzero_si256(),
                    _mm256_sign_epi8(a, a),
                    _mm256_sign_epi8(b, a),
                )
            }

            /// 16 packed nibbles at `p` → 32 bytes: low nibbles then high nibbles.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn nibbles32(p: *const u8) -> __m256i {
                let q = _mm_loadu_si128(p as *const __m128i);
                let v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
                _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
            }

            /// The shared loop of 32-element blocks against Q8_0/Q8_1 blocks:
            /// `int_dot(x_block, y_quants)` gives the per-lane integer sums;
            /// `scales4(x, y)` the four `f32` block scales of the next four blocks.
            #[inline]
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn blocks32(
                nb: usize,
                x: *const u8,
                xs: usize,
                y: *const u8,
                ys: usize,
                yq: usize,
                int_dot: impl Fn(*const u8, __m256i) -> __m256i,
                scales4: impl Fn(*const u8, *const u8) -> __m128,
            ) -> __m256 {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                let mut sc = [0f32; 4];
                while i < nb {
                    let xb = x.add(i * xs);
                    let yb = y.add(i * ys);
                    if i + 4 <= nb {
                        _mm_storeu_ps(sc.as_mut_ptr(), scales4(xb, yb));
                        for k in 0..4 {
                            let yv = _mm256_loadu_si256(yb.add(k * ys + yq) as *const __m256i);
                            let t = int_dot(xb.add(k * xs), yv);
                            acc[k] = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(t),
                                _mm256_broadcast_ss(&sc[k]),
                                acc[k],
                            );
                        }
                        i += 4;
                    } else {
                        // Tail: compute four scales from a padded copy.
                        let mut xt = [0u8; 4 * 40];
                        let mut ytt = [0u8; 4 * 40];
                        std::ptr::copy_nonoverlapping(xb, xt.as_mut_ptr(), xs);
                        std::ptr::copy_nonoverlapping(yb, ytt.as_mut_ptr(), ys);
                        _mm_storeu_ps(sc.as_mut_ptr(), scales4(xt.as_ptr(), ytt.as_ptr()));
                        let yv = _mm256_loadu_si256(yb.add(yq) as *const __m256i);
                        let t = int_dot(xb, yv);
                        acc[0] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(t),
                            _mm256_broadcast_ss(&sc[0]),
                            acc[0],
                        );
                        i += 1;
                    }
                }
                _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))
            }

            /// The nibbles of two blocks (16 packed bytes at `pa` and at `pb`) as
            /// (low nibbles of a | low nibbles of b, high nibbles of a | of b):
            /// elements 0..16 of both blocks, then elements 16..32.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn nibble_pair(pa: *const u8, pb: *const u8) -> (__m256i, __m256i) {
                let q = _mm256_inserti128_si256::<1>(
                    _mm256_castsi128_si256(_mm_loadu_si128(pa as *const __m128i)),
                    _mm_loadu_si128(pb as *const __m128i),
                );
                let m = _mm256_set1_epi8(0x0F);
                (
                    _mm256_and_si256(q, m),
                    _mm256_and_si256(_mm256_srli_epi16(q, 4), m),
                )
            }

            /// The 32 quants of two Q8 blocks (at `pa` and `pb`) in the layout of
            /// [`nibble_pair`]: (a[0..16] | b[0..16], a[16..32] | b[16..32]).
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn q8_pair(pa: *const u8, pb: *const u8) -> (__m256i, __m256i) {
                let half = |p: *const u8, q: *const u8| {
                    _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(_mm_loadu_si128(p as *const __m128i)),
                        _mm_loadu_si128(q as *const __m128i),
                    )
                };
                (half(pa, pb), half(pa.add(16), pb.add(16)))
            }

            /// Signed × signed dot accumulated into `acc` (sign trick, as [`sdot`]).
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn sdot_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
                udot(acc, _mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
            }

            /// 32-element blocks two at a time: lanes 0..4 of an integer vector
            /// belong to the first block, lanes 4..8 to the second, so one
            /// conversion and one FMA serve two blocks. `int_dot2(xa, xb, ylo, yhi)`
            /// gives the lane sums of blocks `xa`, `xb` against the activation
            /// halves from [`q8_pair`]; `scales8(x, y)` the eight `f32` block
            /// scales of the next eight blocks. Eight blocks per iteration; the
            /// last 1..7 blocks are copied into a zeroed buffer of eight (zero
            /// scales contribute nothing) and take the same path.
            #[inline]
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn pairs32(
                nb: usize,
                x: *const u8,
                xs: usize,
                y: *const u8,
                ys: usize,
                yq: usize,
                int_dot2: impl Fn(*const u8, *const u8, __m256i, __m256i) -> __m256i,
                scales8: impl Fn(*const u8, *const u8) -> __m256,
            ) -> f32 {
                let idx = [
                    _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                    _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
                    _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5),
                    _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7),
                ];
                let mut acc = [_mm256_setzero_ps(); 2];
                // Eight blocks at `$xb`, `$yb` (a macro, not a closure, so that
                // both uses are inlined).
                macro_rules! step8 {
                    ($xb:expr, $yb:expr) => {{
                        let (xb, yb): (*const u8, *const u8) = ($xb, $yb);
                        let sc = scales8(xb, yb);
                        for (p, ix) in idx.iter().enumerate() {
                            let (l, h) =
                                q8_pair(yb.add(2 * p * ys + yq), yb.add((2 * p + 1) * ys + yq));
                            let t = int_dot2(xb.add(2 * p * xs), xb.add((2 * p + 1) * xs), l, h);
                            acc[p & 1] = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(t),
                                super::permps(sc, *ix),
                                acc[p & 1],
                            );
                        }
                    }};
                }
                // Pointers stepped by eight blocks and a down-counter keep the
                // loop overhead small.
                let (mut xb, mut yb) = (x, y);
                for _ in 0..nb / 8 {
                    step8!(xb, yb);
                    xb = xb.add(8 * xs);
                    yb = yb.add(8 * ys);
                }
                let rest = nb % 8;
                if rest > 0 {
                    let mut xt = [0u8; 8 * 40];
                    let mut yt = [0u8; 8 * 40];
                    std::ptr::copy_nonoverlapping(xb, xt.as_mut_ptr(), rest * xs);
                    std::ptr::copy_nonoverlapping(yb, yt.as_mut_ptr(), rest * ys);
                    step8!(xt.as_ptr(), yt.as_ptr());
                }
                hsum(_mm256_add_ps(acc[0], acc[1]))
            }

            /// Q4_0 (d: f16, 16 × nibble pairs) · Q8_0 (d: f16, 32 × i8).
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q4_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let eights = _mm256_set1_epi8(8);
                let zero = _mm256_setzero_si256();
                pairs32(
                    nb,
                    x,
                    18,
                    y,
                    34,
                    2,
                    |xa, xb, yl, yh| {
                        let (lo, hi) = nibble_pair(xa.add(2), xb.add(2));
                        let t = udot(udot(zero, lo, yl), hi, yh);
                        // Codes are stored +8: remove 8·Σy.
                        _mm256_sub_epi32(t, udot(udot(zero, eights, yl), eights, yh))
                    },
                    |xb, yb| _mm256_mul_ps(h2f8(xb, 18), h2f8(yb, 34)),
                )
            }

            /// Q8_0 · Q8_0.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q8_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let acc = blocks32(
                    nb,
                    x,
                    34,
                    y,
                    34,
                    2,
                    |xb, yv| sdot(_mm256_loadu_si256(xb.add(2) as *const __m256i), yv),
                    |xb, yb| _mm_mul_ps(h2f4(xb, 34), h2f4(yb, 34)),
                );
                hsum(acc)
            }

            /// IQ4_NL (d: f16, 16 × nibble pairs into a 16-entry code book) · Q8_0.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn iq4_nl(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    crate::grids::KVALUES_IQ4NL.as_ptr() as *const __m128i,
                ));
                pairs32(
                    nb,
                    x,
                    18,
                    y,
                    34,
                    2,
                    |xa, xb, yl, yh| codebook_pair(table, xa.add(2), xb.add(2), yl, yh),
                    |xb, yb| _mm256_mul_ps(h2f8(xb, 18), h2f8(yb, 34)),
                )
            }

            /// MXFP4 (e: E8M0, 16 × nibble pairs of E2M1 codes) · Q8_0.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn mxfp4(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let mut mag = [0u8; 16];
                for (m, v) in mag.iter_mut().zip(crate::grids::KVALUES_MXFP4) {
                    *m = v.unsigned_abs();
                }
                let magnitudes =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(mag.as_ptr() as *const __m128i));
                let m4 = _mm256_set1_epi8(0x0F);
                pairs32(
                    nb,
                    x,
                    17,
                    y,
                    34,
                    2,
                    |xa, xb, yl, yh| {
                        // E2M1: bit 3 of a code is its sign, so the code book's
                        // magnitudes go in the unsigned operand and the sign is
                        // applied to y with the code's own bit 3 moved to bit 7:
                        // `q << 4` for the low nibbles, `q` as is for the high.
                        let q = _mm256_inserti128_si256::<1>(
                            _mm256_castsi128_si256(_mm_loadu_si128(xa.add(1) as *const __m128i)),
                            _mm_loadu_si128(xb.add(1) as *const __m128i),
                        );
                        let lo = _mm256_and_si256(q, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        let al = _mm256_shuffle_epi8(magnitudes, lo);
                        let ah = _mm256_shuffle_epi8(magnitudes, hi);
                        // (A sign byte is zero only where the magnitude is zero.)
                        let yl = _mm256_sign_epi8(yl, _mm256_slli_epi16(q, 4));
                        let yh = _mm256_sign_epi8(yh, q);
                        udot(udot(_mm256_setzero_si256(), al, yl), ah, yh)
                    },
                    |xb, yb| _mm256_mul_ps(e8m0_half8(xb, 17), h2f8(yb, 34)),
                )
            }

            /// Two blocks of nibble indices into a 16-entry i8 code book (`table`
            /// in both lanes) against the activation halves from [`q8_pair`].
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn codebook_pair(
                table: __m256i,
                pa: *const u8,
                pb: *const u8,
                yl: __m256i,
                yh: __m256i,
            ) -> __m256i {
                let (lo, hi) = nibble_pair(pa, pb);
                let vl = _mm256_shuffle_epi8(table, lo);
                let vh = _mm256_shuffle_epi8(table, hi);
                sdot_acc(sdot_acc(_mm256_setzero_si256(), vl, yl), vh, yh)
            }

            /// Q4_1 (d, m: f16, 16 × nibble pairs) · Q8_1 (d, s: f16, 32 × i8).
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q4_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
                pairs32_q8_1(nb, x, y, 20, |xa, xb| nibble_pair(xa.add(4), xb.add(4)))
            }

            /// Q5_0 (d: f16, qh: 32 high bits, 16 × nibble pairs) · Q8_0.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q5_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let sixteen = _mm256_set1_epi8(16);
                let acc = blocks32(
                    nb,
                    x,
                    22,
                    y,
                    34,
                    2,
                    |xb, yv| {
                        let v = five_bit_codes(xb.add(2), xb.add(6));
                        let t = udot(_mm256_setzero_si256(), v, yv);
                        _mm256_sub_epi32(t, udot(_mm256_setzero_si256(), sixteen, yv))
                    },
                    |xb, yb| _mm_mul_ps(h2f4(xb, 22), h2f4(yb, 34)),
                );
                hsum(acc)
            }

            /// Q5_1 (d, m: f16, qh: 32 high bits, 16 × nibble pairs) · Q8_1.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q5_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
                pairs32_q8_1(nb, x, y, 24, |xa, xb| {
                    let a = five_bit_codes(xa.add(4), xa.add(8));
                    let b = five_bit_codes(xb.add(4), xb.add(8));
                    (
                        _mm256_permute2x128_si256::<0x20>(a, b),
                        _mm256_permute2x128_si256::<0x31>(a, b),
                    )
                })
            }

            /// 32 five-bit codes: nibbles at `qs` plus bit 4 from the 32 bits at `qh`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn five_bit_codes(qh: *const u8, qs: *const u8) -> __m256i {
                let h = (qh as *const u32).read_unaligned();
                let spread = _mm256_shuffle_epi8(
                    _mm256_set1_epi32(h as i32),
                    _mm256_setr_epi8(
                        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                        3, 3, 3, 3, 3, 3, 3,
                    ),
                );
                let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
                _mm256_or_si256(nibbles32(qs), _mm256_and_si256(set, _mm256_set1_epi8(16)))
            }

            /// Q4_1/Q5_1 (d, m: f16 first, `xs` bytes per block) · Q8_1, two blocks
            /// at a time as in [`pairs32`]: `codes2(xa, xb)` gives the unsigned
            /// codes of two blocks in the layout of [`nibble_pair`].
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn pairs32_q8_1(
                nb: usize,
                x: *const u8,
                y: *const u8,
                xs: usize,
                codes2: impl Fn(*const u8, *const u8) -> (__m256i, __m256i),
            ) -> f32 {
                // Per four blocks, one conversion gives [d0 m0 d1 m1 …] and
                // [dy0 s0 dy1 s1 …]: even lanes of the product are the block
                // scales, odd lanes the m·s terms (summed in `ms`).
                let pairs8 = |p: *const u8, stride: usize| {
                    let w = |k: usize| (p.add(k * stride) as *const i32).read_unaligned();
                    let v = _mm_cvtsi32_si128(w(0));
                    let v = _mm_insert_epi32::<1>(v, w(1));
                    let v = _mm_insert_epi32::<2>(v, w(2));
                    let v = _mm_insert_epi32::<3>(v, w(3));
                    _mm256_cvtph_ps(v)
                };
                let first = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
                let second = _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6);
                let zero = _mm256_setzero_si256();
                let mut acc0 = _mm256_setzero_ps();
                let mut acc1 = _mm256_setzero_ps();
                let mut ms = _mm256_setzero_ps();
                let (mut xb, mut yb) = (x, y);
                for _ in 0..nb / 4 {
                    let prod = _mm256_mul_ps(pairs8(xb, xs), pairs8(yb, 36));
                    ms = _mm256_add_ps(ms, prod);
                    let (l0, h0) = q8_pair(yb.add(4), yb.add(40));
                    let (c0, c1) = codes2(xb, xb.add(xs));
                    let t0 = udot(udot(zero, c0, l0), c1, h0);
                    acc0 =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(t0), super::permps(prod, first), acc0);
                    let (l1, h1) = q8_pair(yb.add(76), yb.add(112));
                    let (c2, c3) = codes2(xb.add(2 * xs), xb.add(3 * xs));
                    let t1 = udot(udot(zero, c2, l1), c3, h1);
                    acc1 =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(t1), super::permps(prod, second), acc1);
                    xb = xb.add(4 * xs);
                    yb = yb.add(4 * 36);
                }
                let odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
                let mut tail = 0f32;
                for i in nb / 4 * 4..nb {
                    // One block as a pair with itself, the second half scaled by zero.
                    let xb = x.add(i * xs);
                    let yb = y.add(i * 36);
                    let (l, h) = q8_pair(yb.add(4), yb.add(4));
                    let (c0, c1) = codes2(xb, xb);
                    let t = udot(udot(zero, c0, l), c1, h);
                    let d = h2f(xb) * h2f(yb);
                    let sv = _mm256_setr_ps(d, d, d, d, 0.0, 0.0, 0.0, 0.0);
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), sv, acc0);
                    tail += h2f(xb.add(2)) * h2f(yb.add(2));
                }
                hsum(_mm256_add_ps(acc0, acc1)) + hsum(_mm256_and_ps(ms, odd)) + tail
            }

            /// Q4_K (d, dmin: f16, 12 scale bytes, 128 × nibble pairs) · Q8_K.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q4_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                k4_like::<false>(nb, x, y)
            }

            /// Q5_K (d, dmin, 12 scale bytes, 32 high-bit bytes, 128 nibble pairs) · Q8_K.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q5_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                k4_like::<true>(nb, x, y)
            }

            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn k4_like<const FIVE: bool>(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let bs = if FIVE { 176 } else { 144 };
                let qoff = if FIVE { 48 } else { 16 };
                let m4 = _mm256_set1_epi8(0x0F);
                // Words [m_k, m_k] (k = 0..8) from bytes 8..16 of the unpacked scales.
                let dup_mins = _mm256_setr_epi8(
                    8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12, -1, 13,
                    -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1,
                );
                // Byte shuffles and masks of the scale/min unpacking below.
                let k_low_idx = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
                let k_high_idx =
                    _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
                let k_low_mask =
                    _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
                let k_nib_mask = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15);
                let mut acc = _mm256_setzero_ps();
                let mut accm = _mm256_setzero_ps();
                // Per super-block: the eight scales as i16 pairs [s, s] (one
                // broadcast load each) and [d, dmin] times the activation scale.
                let mut scw = super::Align32([0u32; 8]);
                let mut dd = super::Align32([0f32; 4]);
                for i in 0..nb {
                    let xb = x.add(i * bs);
                    let yb = y.add(i * 292);
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((xb as *const i32).read_unaligned()));
                    _mm_store_ps(
                        dd.0.as_mut_ptr(),
                        _mm_mul_ps(dm, _mm_set1_ps(*(yb as *const f32))),
                    );
                    // Unpack the 6-bit scales and mins (see `scalar::k4_scales_mins`)
                    // into bytes 0..8 scales, 8..16 mins, from the 12 bytes b
                    // (a 16-byte load; the last 4 bytes are codes, unused):
                    // sc[j] = b[j] & 63, sc[4+j] = (b[8+j] & 15) | (b[j] >> 6) << 4,
                    // m[j] = b[4+j] & 63, m[4+j] = (b[8+j] >> 4) | (b[4+j] >> 6) << 4.
                    let b = _mm_loadu_si128(xb.add(4) as *const __m128i);
                    let p1 = _mm_shuffle_epi8(b, k_low_idx);
                    let p2 = _mm_shuffle_epi8(b, k_high_idx);
                    let sm = _mm_or_si128(
                        _mm_or_si128(
                            _mm_and_si128(p1, k_low_mask),
                            _mm_and_si128(_mm_srli_epi16(p1, 4), k_nib_mask),
                        ),
                        // (b >> 6) << 4 is (b >> 2) & 0x30; a 16-bit shift
                        // only brings neighbouring bits into bits 6..7.
                        _mm_and_si128(_mm_srli_epi16(p2, 2), _mm_set1_epi8(0x30)),
                    );
                    let sc32 = _mm256_cvtepu8_epi32(sm);
                    _mm256_store_si256(
                        scw.0.as_mut_ptr() as *mut __m256i,
                        _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16)),
                    );
                    // Mins: Σ m_k · (bsum_2k + bsum_2k+1) in one multiply-add.
                    let bsums = _mm256_loadu_si256(yb.add(260) as *const __m256i);
                    let mins = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sm), dup_mins);
                    let pm = _mm256_madd_epi16(mins, bsums);
                    accm = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(pm),
                        super::bcast_s(dd.0.as_ptr().add(1)),
                        accm,
                    );
                    let qh = if FIVE {
                        _mm256_loadu_si256(xb.add(16) as *const __m256i)
                    } else {
                        _mm256_setzero_si256()
                    };
                    // Four chains of two multiply-adds each (latency), summed below.
                    let mut sums = [_mm256_setzero_si256(); 4];
                    for c in 0..4 {
                        let q = _mm256_loadu_si256(xb.add(qoff + 32 * c) as *const __m256i);
                        let mut lo = _mm256_and_si256(q, m4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        if FIVE {
                            let bl = _mm256_set1_epi8((1u8 << (2 * c)) as i8);
                            let bh = _mm256_set1_epi8((2u8 << (2 * c)) as i8);
                            let s16 = _mm256_set1_epi8(16);
                            let hl = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bl), bl);
                            let hh = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bh), bh);
                            lo = _mm256_or_si256(lo, _mm256_and_si256(hl, s16));
                            hi = _mm256_or_si256(hi, _mm256_and_si256(hh, s16));
                        }
                        let ylo = _mm256_loadu_si256(yb.add(4 + 64 * c) as *const __m256i);
                        let yhi = _mm256_loadu_si256(yb.add(36 + 64 * c) as *const __m256i);
                        let pl = _mm256_maddubs_epi16(lo, ylo);
                        let ph = _mm256_maddubs_epi16(hi, yhi);
                        let k = 2 * (c & 1);
                        sums[k] = wdot(sums[k], pl, super::bcast_d(scw.0.as_ptr().add(2 * c)));
                        sums[k + 1] = wdot(
                            sums[k + 1],
                            ph,
                            super::bcast_d(scw.0.as_ptr().add(2 * c + 1)),
                        );
                    }
                    let sumi = _mm256_add_epi32(
                        _mm256_add_epi32(sums[0], sums[1]),
                        _mm256_add_epi32(sums[2], sums[3]),
                    );
                    acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(sumi),
                        super::bcast_s(dd.0.as_ptr()),
                        acc,
                    );
                }
                hsum(acc) - hsum(accm)
            }

            /// Q2_K (16 scale/min bytes, 64 bytes of 2-bit codes, d, dmin: f16) · Q8_K.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q2_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let m3 = _mm256_set1_epi8(3);
                let m4 = _mm_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); 2];
                let mut accm = _mm256_setzero_ps();
                for i in 0..nb {
                    let xb = x.add(i * 84);
                    let yb = y.add(i * 292);
                    let yd = *(yb as *const f32);
                    let d = yd * h2f(xb.add(80));
                    let dmin = yd * h2f(xb.add(82));
                    let sm = _mm_loadu_si128(xb as *const __m128i);
                    // Mins (high nibbles) against the 16-element sums.
                    let mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
                    let bsums = _mm256_loadu_si256(yb.add(260) as *const __m256i);
                    let pm = _mm256_madd_epi16(mins16, bsums);
                    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(dmin), accm);
                    let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
                    let mut sumi = _mm256_setzero_si256();
                    for h in 0..2 {
                        let s = if h == 0 {
                            _mm256_permute2x128_si256(sc16, sc16, 0x00)
                        } else {
                            _mm256_permute2x128_si256(sc16, sc16, 0x11)
                        };
                        let q = _mm256_loadu_si256(xb.add(16 + 32 * h) as *const __m256i);
                        for j in 0..4 {
                            let codes = _mm256_and_si256(
                                _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)),
                                m3,
                            );
                            let yv =
                                _mm256_loadu_si256(yb.add(4 + 128 * h + 32 * j) as *const __m256i);
                            let wl = (4 * j) as i16 | (((4 * j + 1) as i16) << 8);
                            let wh = (4 * j + 2) as i16 | (((4 * j + 3) as i16) << 8);
                            let mask = _mm256_set_m128i(_mm_set1_epi16(wh), _mm_set1_epi16(wl));
                            let sk = _mm256_shuffle_epi8(s, mask);
                            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, yv), sk);
                            sumi = _mm256_add_epi32(sumi, p);
                        }
                    }
                    acc[i & 1] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc[i & 1]);
                }
                hsum(_mm256_add_ps(acc[0], acc[1])) - hsum(accm)
            }

            /// Q3_K (32 high-bit bytes, 64 bytes of 2-bit codes, 12 scale bytes, d: f16) · Q8_K.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q3_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let m3 = _mm256_set1_epi8(3);
                let four = _mm256_set1_epi8(4);
                let mut acc = [_mm256_setzero_ps(); 2];
                for i in 0..nb {
                    let xb = x.add(i * 110);
                    let yb = y.add(i * 292);
                    let d = *(yb as *const f32) * h2f(xb.add(108));
                    let scales = super::super::scalar::q3k_scales(std::slice::from_raw_parts(
                        xb.add(96),
                        12,
                    ));
                    let sc16 =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(scales.as_ptr() as *const __m128i));
                    // Codes are stored +4 (the high bit set means "no −4"): remove 4·Σ sc·bsum.
                    let bsums = _mm256_loadu_si256(yb.add(260) as *const __m256i);
                    let corr = _mm256_madd_epi16(bsums, sc16);
                    let hm = _mm256_loadu_si256(xb as *const __m256i);
                    let mut sumi = _mm256_setzero_si256();
                    for h in 0..2 {
                        let s = if h == 0 {
                            _mm256_permute2x128_si256(sc16, sc16, 0x00)
                        } else {
                            _mm256_permute2x128_si256(sc16, sc16, 0x11)
                        };
                        let q = _mm256_loadu_si256(xb.add(32 + 32 * h) as *const __m256i);
                        for j in 0..4 {
                            let low = _mm256_and_si256(
                                _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)),
                                m3,
                            );
                            let bit = _mm256_set1_epi8((1u8 << (4 * h + j)) as i8);
                            let set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                            let codes = _mm256_or_si256(low, _mm256_and_si256(set, four));
                            let yv =
                                _mm256_loadu_si256(yb.add(4 + 128 * h + 32 * j) as *const __m256i);
                            let wl = (4 * j) as i16 | (((4 * j + 1) as i16) << 8);
                            let wh = (4 * j + 2) as i16 | (((4 * j + 3) as i16) << 8);
                            let mask = _mm256_set_m128i(_mm_set1_epi16(wh), _mm_set1_epi16(wl));
                            let sk = _mm256_shuffle_epi8(s, mask);
                            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, yv), sk);
                            sumi = _mm256_add_epi32(sumi, p);
                        }
                    }
                    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 2));
                    acc[i & 1] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc[i & 1]);
                }
                hsum(_mm256_add_ps(acc[0], acc[1]))
            }

            /// Q6_K (128 low-nibble bytes, 64 high-bit bytes, 16 × i8 scales, d: f16) · Q8_K.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn q6_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let m4 = _mm256_set1_epi8(0x0F);
                let m3 = _mm256_set1_epi8(0x03);
                let mc = _mm256_set1_epi8(0x0C);
                let m30 = _mm256_set1_epi8(0x30);
                let mut acc = [_mm256_setzero_ps(); 2];
                for i in 0..nb {
                    let xb = x.add(i * 210);
                    let yb = y.add(i * 292);
                    let d = *(yb as *const f32) * h2f(xb.add(208));
                    let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(xb.add(192) as *const __m128i));
                    // The −32 offset of every code, through the 16-element sums.
                    let bsums = _mm256_loadu_si256(yb.add(260) as *const __m256i);
                    let corr = _mm256_madd_epi16(bsums, sc16);
                    let mut sumi = _mm256_setzero_si256();
                    for h in 0..2 {
                        let s = if h == 0 {
                            _mm256_permute2x128_si256(sc16, sc16, 0x00)
                        } else {
                            _mm256_permute2x128_si256(sc16, sc16, 0x11)
                        };
                        let ql0 = _mm256_loadu_si256(xb.add(64 * h) as *const __m256i);
                        let ql1 = _mm256_loadu_si256(xb.add(64 * h + 32) as *const __m256i);
                        let qh = _mm256_loadu_si256(xb.add(128 + 32 * h) as *const __m256i);
                        let q = [
                            _mm256_or_si256(
                                _mm256_and_si256(ql0, m4),
                                _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(qh, mc), 2),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_and_si256(qh, m30),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                            ),
                        ];
                        for (k, qk) in q.iter().enumerate() {
                            let yv =
                                _mm256_loadu_si256(yb.add(4 + 128 * h + 32 * k) as *const __m256i);
                            let wl = (4 * k) as i16 | (((4 * k + 1) as i16) << 8);
                            let wh = (4 * k + 2) as i16 | (((4 * k + 3) as i16) << 8);
                            let mask = _mm256_set_m128i(_mm_set1_epi16(wh), _mm_set1_epi16(wl));
                            let sk = _mm256_shuffle_epi8(s, mask);
                            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*qk, yv), sk);
                            sumi = _mm256_add_epi32(sumi, p);
                        }
                    }
                    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
                    acc[i & 1] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc[i & 1]);
                }
                hsum(_mm256_add_ps(acc[0], acc[1]))
            }

            /// IQ4_XS (d: f16, scales_h: u16, 4 scales_l bytes, 128 nibble pairs) · Q8_K.
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn iq4_xs(nb: usize, x: *const u8, y: *const u8) -> f32 {
                let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    crate::grids::KVALUES_IQ4NL.as_ptr() as *const __m128i,
                ));
                let m4 = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); 2];
                for i in 0..nb {
                    let xb = x.add(i * 136);
                    let yb = y.add(i * 292);
                    let d = *(yb as *const f32) * h2f(xb);
                    let sh = (xb.add(2) as *const u16).read_unaligned() as u32;
                    let sl = (xb.add(4) as *const u32).read_unaligned();
                    let mut sumi = _mm256_setzero_si256();
                    for p in 0..4 {
                        let q = _mm256_loadu_si256(xb.add(8 + 32 * p) as *const __m256i);
                        let lo = _mm256_and_si256(q, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        let v1 =
                            _mm256_shuffle_epi8(table, _mm256_permute2x128_si256(lo, hi, 0x20));
                        let v2 =
                            _mm256_shuffle_epi8(table, _mm256_permute2x128_si256(lo, hi, 0x31));
                        let y1 = _mm256_loadu_si256(yb.add(4 + 64 * p) as *const __m256i);
                        let y2 = _mm256_loadu_si256(yb.add(36 + 64 * p) as *const __m256i);
                        let ib = 2 * p;
                        let ls1 =
                            (((sl >> (4 * ib)) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) as i16 - 32;
                        let ls2 = (((sl >> (4 * ib + 4)) & 0xF) | (((sh >> (2 * ib + 2)) & 3) << 4))
                            as i16
                            - 32;
                        let p1 = _mm256_maddubs_epi16(
                            _mm256_sign_epi8(v1, v1),
                            _mm256_sign_epi8(y1, v1),
                        );
                        let p2 = _mm256_maddubs_epi16(
                            _mm256_sign_epi8(v2, v2),
                            _mm256_sign_epi8(y2, v2),
                        );
                        let p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(ls1));
                        let p2 = _mm256_madd_epi16(p2, _mm256_set1_epi16(ls2));
                        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
                    }
                    acc[i & 1] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc[i & 1]);
                }
                hsum(_mm256_add_ps(acc[0], acc[1]))
            }
        }
    };
}

kernels!(avx2, "avx2,fma,f16c", super::udot_avx2, super::wdot_avx2);
kernels!(vnni, "avx2,fma,f16c", super::udot_vnni, super::wdot_vnni);

/// Kernels for CPUs where [`has_gfni`] holds: AVX-512 VL + VNNI and GFNI,
/// used on 256-bit registers (inline assembly, as in [`udot_vnni`]).
pub(crate) mod gfni {
    use std::arch::x86_64::*;

    /// Bit matrices for `vgf2p8affineqb`, one per qword: qwords 0-1 keep
    /// bits 0..4 of each byte (the low nibble), qwords 2-3 move bits 4..8 to
    /// bits 0..4 (the high nibble); both clear bits 4..8. Row i of a matrix
    /// is byte 7 - i of its qword and selects the input bits that are summed
    /// into output bit i.
    const NIBBLE_MATRICES: [u64; 4] = [
        0x0102_0408_0000_0000,
        0x0102_0408_0000_0000,
        0x1020_4080_0000_0000,
        0x1020_4080_0000_0000,
    ];

    /// `vgf2p8affineqb`: each byte of `q` times the bit matrix of its qword in `m`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn affine(q: __m256i, m: __m256i) -> __m256i {
        let out: __m256i;
        // SAFETY: only reached from kernels handed out after `has_gfni()`;
        // the instruction touches registers only.
        std::arch::asm!(
            "vgf2p8affineqb {out}, {q}, {m}, 0",
            out = lateout(ymm_reg) out,
            q = in(ymm_reg) q,
            m = in(ymm_reg) m,
            options(pure, nomem, nostack, preserves_flags)
        );
        out
    }

    /// `acc + t · *p` with the f32 at `p` broadcast by the FMA itself
    /// (`{1to8}`: a load, no shuffle).
    ///
    /// # Safety
    /// AVX-512 VL and FMA must be available and `p` readable for 4 bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_bcast(acc: __m256, t: __m256, p: *const f32) -> __m256 {
        let mut acc = acc;
        // SAFETY: the caller guarantees the features and 4 readable bytes.
        std::arch::asm!(
            "vfmadd231ps {acc}, {t}, dword ptr [{p}]{{1to8}}",
            acc = inout(ymm_reg) acc,
            t = in(ymm_reg) t,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags)
        );
        acc
    }

    /// Assembly for eight f16 values into the vector register named `$v`
    /// from the pointer register named `$p`: the pairs (0, 1), (2, 3),
    /// (4, 5), (6, 7) each from a 4-byte load at `$dk` (ending with the odd
    /// value) and a 2-byte load at `$wk` (the even value) into its low half.
    macro_rules! gather8 {
        ($p:literal, $v:literal, $d1:literal, $w0:literal, $d3:literal, $w2:literal,
         $d5:literal, $w4:literal, $d7:literal, $w6:literal) => {
            concat!(
                "mov {a:e}, dword ptr [{",
                $p,
                "} + ",
                $d1,
                "]\n",
                "mov {a:x}, word ptr [{",
                $p,
                "} + ",
                $w0,
                "]\n",
                "mov {b:e}, dword ptr [{",
                $p,
                "} + ",
                $d3,
                "]\n",
                "mov {b:x}, word ptr [{",
                $p,
                "} + ",
                $w2,
                "]\n",
                "shl {b}, 32\n",
                "or {a}, {b}\n",
                "mov {c:e}, dword ptr [{",
                $p,
                "} + ",
                $d5,
                "]\n",
                "mov {c:x}, word ptr [{",
                $p,
                "} + ",
                $w4,
                "]\n",
                "mov {d:e}, dword ptr [{",
                $p,
                "} + ",
                $d7,
                "]\n",
                "mov {d:x}, word ptr [{",
                $p,
                "} + ",
                $w6,
                "]\n",
                "shl {d}, 32\n",
                "or {c}, {d}\n",
                "vmovq {",
                $v,
                "}, {a}\n",
                "vpinsrq {",
                $v,
                "}, {",
                $v,
                "}, {c}, 1\n",
            )
        };
    }

    /// The f16 scales (byte 0 of each block) of eight Q4_0 blocks at `x`
    /// (stride 18) and of eight Q8_0 blocks at `y` (stride 34), as two
    /// vectors of eight f16 values in block order.
    ///
    /// Assembled in general-purpose registers, which keeps the vector ports
    /// free: per pair of scales one 4-byte load that ends with the second
    /// and one 2-byte load of the first into the low half of the same
    /// register; per four a shift and an or; per eight one move to and one
    /// insertion into the vector register (instead of seven `vpinsrw`, each
    /// taking a vector port).
    ///
    /// # Safety
    /// AVX must be available; `x` readable for 128 bytes, `y` for 240.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn scales8(x: *const u8, y: *const u8) -> (__m128i, __m128i) {
        let (vx, vy): (__m128i, __m128i);
        // SAFETY: the caller guarantees the readable ranges; the last bytes
        // read are x + 124..128 and y + 236..240. Registers only otherwise.
        std::arch::asm!(
            gather8!("x", "vx", 16, 0, 52, 36, 88, 72, 124, 108),
            gather8!("y", "vy", 32, 0, 100, 68, 168, 136, 236, 204),
            x = in(reg) x,
            y = in(reg) y,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            vx = out(xmm_reg) vx,
            vy = out(xmm_reg) vy,
            options(pure, readonly, nostack)
        );
        (vx, vy)
    }

    /// As [`scales8`] for two rows of 34-byte blocks (Q8_0 · Q8_0).
    ///
    /// # Safety
    /// AVX must be available; `x` and `y` readable for 240 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn scales8_34(x: *const u8, y: *const u8) -> (__m128i, __m128i) {
        let (vx, vy): (__m128i, __m128i);
        // SAFETY: the caller guarantees the readable ranges; the last bytes
        // read are x + 236..240 and y + 236..240. Registers only otherwise.
        std::arch::asm!(
            gather8!("x", "vx", 32, 0, 100, 68, 168, 136, 236, 204),
            gather8!("y", "vy", 32, 0, 100, 68, 168, 136, 236, 204),
            x = in(reg) x,
            y = in(reg) y,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            vx = out(xmm_reg) vx,
            vy = out(xmm_reg) vy,
            options(pure, readonly, nostack)
        );
        (vx, vy)
    }

    /// Q4_0 (d: f16, 16 × nibble pairs) · Q8_0 (d: f16, 32 × i8), one block
    /// per vector instead of two (`pairs32`).
    ///
    /// The 16 nibble bytes are loaded into both 128-bit halves, and one affine
    /// transformation with a different bit matrix per half gives the low
    /// nibbles (elements 0..16) in the low half and the high nibbles
    /// (elements 16..32) in the high half: the order of the Q8_0 quants in
    /// memory, so they are one plain load, and no insertions or shifts are
    /// needed. The eight block scales of a step (x · y, converted together)
    /// are stored once and broadcast by the FMAs. Per block: two loads, one
    /// `vgf2p8affineqb`, two `vpdpbusd` (codes · y and the 8 · Σy of the +8
    /// offset), a subtraction, a conversion and an FMA.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
        let m = _mm256_loadu_si256(NIBBLE_MATRICES.as_ptr() as *const __m256i);
        let eights = _mm256_set1_epi8(8);
        let zero = _mm256_setzero_si256();
        let mut prod = super::Align32([0f32; 8]);
        let pp = prod.0.as_mut_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        // Eight blocks at `$xb`, `$yb` (a macro, not a closure, so that both
        // uses are inlined).
        macro_rules! step8 {
            ($xb:expr, $yb:expr) => {{
                let (xb, yb): (*const u8, *const u8) = ($xb, $yb);
                let (sx, sy) = scales8(xb, yb);
                _mm256_store_ps(pp, _mm256_mul_ps(_mm256_cvtph_ps(sx), _mm256_cvtph_ps(sy)));
                for k in 0..8 {
                    let q = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                        xb.add(18 * k + 2) as *const __m128i
                    ));
                    let codes = affine(q, m);
                    let yv = _mm256_loadu_si256(yb.add(34 * k + 2) as *const __m256i);
                    // Codes are stored +8: remove 8·Σy.
                    let t = _mm256_sub_epi32(
                        super::udot_vnni(zero, codes, yv),
                        super::udot_vnni(zero, eights, yv),
                    );
                    acc[k & 3] = fma_bcast(acc[k & 3], _mm256_cvtepi32_ps(t), pp.add(k));
                }
            }};
        }
        let (mut xb, mut yb) = (x, y);
        for _ in 0..nb / 8 {
            step8!(xb, yb);
            xb = xb.add(8 * 18);
            yb = yb.add(8 * 34);
        }
        let rest = nb % 8;
        if rest > 0 {
            // The last 1..7 blocks from a zeroed copy of eight (zero scales
            // contribute nothing).
            let mut xt = [0u8; 8 * 18];
            let mut yt = [0u8; 8 * 34];
            std::ptr::copy_nonoverlapping(xb, xt.as_mut_ptr(), rest * 18);
            std::ptr::copy_nonoverlapping(yb, yt.as_mut_ptr(), rest * 34);
            step8!(xt.as_ptr(), yt.as_ptr());
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
    }

    /// Q8_0 · Q8_0, one block per vector as [`q4_0`].
    ///
    /// The weight quants go into the unsigned operand of `vpdpbusd` as
    /// x + 128 (one xor with 0x80), which needs no sign trick; the extra
    /// 128 · Σy is a second `vpdpbusd` of the constant 0x80 against y. Per
    /// block that is two multiply-adds instead of the sign trick's two
    /// `vpsignb` and one multiply-add, on the ports that also convert and
    /// accumulate.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q8_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
        let flip = _mm256_set1_epi8(-128);
        let zero = _mm256_setzero_si256();
        let mut prod = super::Align32([0f32; 8]);
        let pp = prod.0.as_mut_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        macro_rules! step8 {
            ($xb:expr, $yb:expr) => {{
                let (xb, yb): (*const u8, *const u8) = ($xb, $yb);
                let (sx, sy) = scales8_34(xb, yb);
                _mm256_store_ps(pp, _mm256_mul_ps(_mm256_cvtph_ps(sx), _mm256_cvtph_ps(sy)));
                for k in 0..8 {
                    let xv = _mm256_loadu_si256(xb.add(34 * k + 2) as *const __m256i);
                    let yv = _mm256_loadu_si256(yb.add(34 * k + 2) as *const __m256i);
                    // (x + 128) · y − 128 · y.
                    let t = _mm256_sub_epi32(
                        super::udot_vnni(zero, _mm256_xor_si256(xv, flip), yv),
                        super::udot_vnni(zero, flip, yv),
                    );
                    acc[k & 3] = fma_bcast(acc[k & 3], _mm256_cvtepi32_ps(t), pp.add(k));
                }
            }};
        }
        let (mut xb, mut yb) = (x, y);
        for _ in 0..nb / 8 {
            step8!(xb, yb);
            xb = xb.add(8 * 34);
            yb = yb.add(8 * 34);
        }
        let rest = nb % 8;
        if rest > 0 {
            let mut xt = [0u8; 8 * 34];
            let mut yt = [0u8; 8 * 34];
            std::ptr::copy_nonoverlapping(xb, xt.as_mut_ptr(), rest * 34);
            std::ptr::copy_nonoverlapping(yb, yt.as_mut_ptr(), rest * 34);
            step8!(xt.as_ptr(), yt.as_ptr());
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
    }
}

/// Wrap a `(blocks, x, y)` kernel as a safe [`DotFn`] for `$t` (bytes per weight block).
macro_rules! wrap {
    ($m:ident :: $f:ident, $ts:expr) => {{
        fn w(x: &[u8], y: &[u8]) -> f32 {
            // SAFETY: this wrapper is only handed out by `kernel_avx2`/`kernel_vnni`
            // after the matching feature detection succeeded, and `VecDotKernel`
            // checked that `x` is whole blocks and `y` the matching activation bytes,
            // which is all the kernel reads.
            unsafe { $m::$f(x.len() / $ts, x.as_ptr(), y.as_ptr()) }
        }
        w as DotFn
    }};
}

macro_rules! table {
    ($m:ident, $weight:expr) => {{
        use GgmlType as T;
        Some(match $weight {
            T::Q4_0 => wrap!($m::q4_0, 18),
            T::Q4_1 => wrap!($m::q4_1, 20),
            T::Q5_0 => wrap!($m::q5_0, 22),
            T::Q5_1 => wrap!($m::q5_1, 24),
            T::Q8_0 => wrap!($m::q8_0, 34),
            T::IQ4_NL => wrap!($m::iq4_nl, 18),
            T::MXFP4 => wrap!($m::mxfp4, 17),
            T::Q2_K => wrap!($m::q2_k, 84),
            T::Q3_K => wrap!($m::q3_k, 110),
            T::Q4_K => wrap!($m::q4_k, 144),
            T::Q5_K => wrap!($m::q5_k, 176),
            T::Q6_K => wrap!($m::q6_k, 210),
            T::IQ4_XS => wrap!($m::iq4_xs, 136),
            _ => return None,
        })
    }};
}

/// The AVX2 kernel for `weight`; the caller checked [`has_avx2`].
pub(crate) fn kernel_avx2(weight: GgmlType) -> Option<DotFn> {
    if !has_avx2() {
        return None;
    }
    table!(avx2, weight)
}

/// The AVX-512 VNNI kernel for `weight`; the caller checked [`has_avx512vnni`].
/// Q4_0 and Q8_0 get the [`gfni`] variants where [`has_gfni`] also holds.
pub(crate) fn kernel_vnni(weight: GgmlType) -> Option<DotFn> {
    if !has_avx512vnni() {
        return None;
    }
    if has_gfni() {
        match weight {
            GgmlType::Q4_0 => return Some(wrap!(gfni::q4_0, 18)),
            GgmlType::Q8_0 => return Some(wrap!(gfni::q8_0, 34)),
            _ => {}
        }
    }
    table!(vnni, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random Q4_0 and Q8_0 rows of `nb` blocks (scales in ±[2^-10, 2)).
    fn q4_0_rows(nb: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as u8
        };
        let scale = |next: &mut dyn FnMut() -> u8| {
            let e = 5 + u16::from(next() % 11);
            let bits = ((u16::from(next()) & 0x80) << 8) | (e << 10) | u16::from(next());
            bits.to_le_bytes()
        };
        let mut x = vec![0u8; nb * 18];
        let mut y = vec![0u8; nb * 34];
        for b in 0..nb {
            x[b * 18..b * 18 + 2].copy_from_slice(&scale(&mut next));
            y[b * 34..b * 34 + 2].copy_from_slice(&scale(&mut next));
            for v in &mut x[b * 18 + 2..b * 18 + 18] {
                *v = next();
            }
            for v in &mut y[b * 34 + 2..b * 34 + 34] {
                // Q8_0 quants are in -127..=127.
                *v = (next() % 255).wrapping_sub(127);
            }
        }
        (x, y)
    }

    /// A kernel over `nb` blocks of a weight row and an activation row.
    type RawDot = unsafe fn(usize, *const u8, *const u8) -> f32;

    /// For 1..=40 blocks of the rows `rows(nb)` (weight blocks of `xs` bytes,
    /// activation blocks of `ys`), the `gfni` kernel `new` equals the VNNI
    /// kernel `old` up to summation order: within 1e-6 of the largest value
    /// the block products can reach (`per_block` times the two scales).
    fn gfni_agrees_with_vnni(
        rows: impl Fn(usize) -> (Vec<u8>, Vec<u8>),
        (xs, ys): (usize, usize),
        per_block: f32,
        new: RawDot,
        old: RawDot,
    ) {
        if !has_gfni() {
            return;
        }
        let d = |r: &[u8], o: usize| half::f16::from_le_bytes([r[o], r[o + 1]]).to_f32().abs();
        for nb in 1..=40 {
            let (x, y) = rows(nb);
            // SAFETY: GFNI and AVX-512 VNNI were detected; the rows hold `nb`
            // whole blocks each.
            let (got, want) = unsafe {
                (
                    new(nb, x.as_ptr(), y.as_ptr()),
                    old(nb, x.as_ptr(), y.as_ptr()),
                )
            };
            let bound: f32 = (0..nb)
                .map(|b| d(&x, b * xs) * d(&y, b * ys) * per_block)
                .sum();
            assert!(
                (got - want).abs() <= bound * 1e-6,
                "nb = {nb}: gfni {got}, vnni {want}"
            );
        }
    }

    #[test]
    fn gfni_q8_0_equals_the_sign_trick_vnni_kernel() {
        // Two Q8_0 rows: the Q8_0 halves of two Q4_0/Q8_0 pairs.
        let rows = |nb: usize| {
            let (_, x) = q4_0_rows(nb, 0xface + nb as u32);
            let (_, y) = q4_0_rows(nb, 0xbeef + nb as u32);
            (x, y)
        };
        gfni_agrees_with_vnni(rows, (34, 34), 32.0 * 127.0 * 127.0, gfni::q8_0, vnni::q8_0);
    }

    #[test]
    fn gfni_q4_0_equals_the_pairwise_vnni_kernel() {
        let rows = |nb: usize| q4_0_rows(nb, 0x5eed + nb as u32);
        gfni_agrees_with_vnni(rows, (18, 34), 32.0 * 8.0 * 127.0, gfni::q4_0, vnni::q4_0);
    }

    #[test]
    fn vector_e8m0_scales_equal_the_scalar_ones_for_every_exponent() {
        if !has_avx2() {
            return;
        }
        for base in (0..256).step_by(8) {
            let bytes: Vec<u8> = (0..8).map(|i| (base + i) as u8).collect();
            let mut out = [0f32; 8];
            // SAFETY: AVX2 was detected; `bytes` holds the eight bytes read.
            unsafe {
                _mm256_storeu_ps(
                    out.as_mut_ptr(),
                    avx2::e8m0_half8_for_test(bytes.as_ptr(), 1),
                )
            };
            if has_avx512vnni() {
                let mut v = [0f32; 8];
                // SAFETY: the VNNI feature set was detected; same eight bytes.
                unsafe {
                    _mm256_storeu_ps(v.as_mut_ptr(), vnni::e8m0_half8_for_test(bytes.as_ptr(), 1))
                };
                assert_eq!(v.map(f32::to_bits), out.map(f32::to_bits));
            }
            for (i, o) in out.iter().enumerate() {
                let want = crate::dot::scalar::e8m0_half(bytes[i]);
                assert_eq!(o.to_bits(), want.to_bits(), "e = {}", bytes[i]);
            }
        }
    }
}
