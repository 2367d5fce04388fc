//! Small `f32` vector kernels (dot, axpy) with an AVX2+FMA path chosen at
//! run time and a portable reference that the tests compare it with.

/// Ask the cache for every 64-byte line of `bytes` (a hint: no effect on
/// results; nothing on targets without a prefetch instruction here).
#[inline]
pub fn prefetch_lines(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..bytes.len()).step_by(64) {
        // SAFETY: `off < bytes.len()`, so the address is inside the slice;
        // SSE (and so `prefetcht0`) is part of every x86_64 CPU.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                bytes.as_ptr().add(off) as *const i8,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// `Σ a[i]·b[i]` (the shorter length wins).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above); both slices
        // hold at least `n` elements.
        return unsafe { x86::dot(&a[..n], &b[..n]) };
    }
    dot_f32_scalar(&a[..n], &b[..n])
}

/// `out[j] = q · keys[j·hd .. (j+1)·hd]` for `j < out.len()`.
#[inline]
pub fn dot_many(q: &[f32], keys: &[f32], out: &mut [f32]) {
    let hd = q.len();
    assert!(keys.len() >= out.len() * hd, "dot_many: keys too short");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && hd.is_multiple_of(8) && hd <= 256 {
        // SAFETY: AVX2+FMA available; `keys` holds `out.len()` rows of `hd`
        // (asserted above); `hd` is a multiple of 8 no larger than 256.
        unsafe { x86::dot_many(q, keys, out) };
        return;
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_f32_scalar(q, &keys[j * hd..(j + 1) * hd]);
    }
}

/// `acc += Σ_j w[j] · vals[j·hd .. (j+1)·hd]` with `hd = acc.len()`.
#[inline]
pub fn accumulate_rows(acc: &mut [f32], w: &[f32], vals: &[f32]) {
    let hd = acc.len();
    assert!(
        vals.len() >= w.len() * hd,
        "accumulate_rows: vals too short"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && hd.is_multiple_of(8) {
        // SAFETY: AVX2+FMA available; `vals` holds `w.len()` rows of `hd`
        // (asserted above); `hd` is a multiple of 8.
        unsafe { x86::accumulate_rows(acc, w, vals) };
        return;
    }
    for (j, &wj) in w.iter().enumerate() {
        axpy_f32_scalar(acc, wj, &vals[j * hd..(j + 1) * hd]);
    }
}

/// `xs[i] = e^(xs[i] - m)`, returning `Σ xs[i]` (used by the online
/// softmax). The SIMD `exp` is a degree-6 polynomial after range reduction,
/// within 2 ulp of `f32::exp` over the normal range.
#[inline]
pub fn exp_sub_sum(xs: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2+FMA available (checked).
        return unsafe { x86::exp_sub_sum(xs, m) };
    }
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    sum
}

/// `out[i] = silu(g[i]) · u[i]` with `silu(x) = x / (1 + e^-x)`.
#[inline]
pub fn swiglu(out: &mut [f32], g: &[f32], u: &[f32]) {
    let n = out.len().min(g.len()).min(u.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2+FMA available; all three slices hold `n` elements.
        unsafe { x86::swiglu(&mut out[..n], &g[..n], &u[..n]) };
        return;
    }
    for i in 0..n {
        out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
    }
}

/// Portable dot product with 8 independent partial sums.
pub fn dot_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

/// Portable `y += s·x`.
pub fn axpy_f32_scalar(y: &mut [f32], s: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += s * xi;
    }
}

/// Whether the AVX2+FMA kernels can run here.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA must be available; `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): `i + 32 <= n` or `i + 8 <= n` bounds every access.
        while i + 32 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            acc2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                acc2,
            );
            acc3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                acc3,
            );
            i += 32;
        }
        while i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
        let mut sum = hsum(acc);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }

    /// # Safety
    /// AVX2 and FMA available; `hd = q.len()` is a multiple of 8, at most
    /// 256; `keys` holds `out.len()` rows of `hd`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_many(q: &[f32], keys: &[f32], out: &mut [f32]) {
        let hd = q.len();
        let nv = hd / 8;
        let mut qv = [_mm256_setzero_ps(); 32];
        // SAFETY (all loads): `v < nv` keeps `v * 8 + 8 <= hd` inside `q`
        // and row `j < out.len()` of `keys`.
        for (v, r) in qv.iter_mut().enumerate().take(nv) {
            *r = _mm256_loadu_ps(q.as_ptr().add(v * 8));
        }
        for (j, o) in out.iter_mut().enumerate() {
            let k = keys.as_ptr().add(j * hd);
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut v = 0;
            while v + 2 <= nv {
                a0 = _mm256_fmadd_ps(qv[v], _mm256_loadu_ps(k.add(v * 8)), a0);
                a1 = _mm256_fmadd_ps(qv[v + 1], _mm256_loadu_ps(k.add(v * 8 + 8)), a1);
                v += 2;
            }
            if v < nv {
                a0 = _mm256_fmadd_ps(qv[v], _mm256_loadu_ps(k.add(v * 8)), a0);
            }
            *o = hsum(_mm256_add_ps(a0, a1));
        }
    }

    /// # Safety
    /// AVX2 and FMA available; `hd = acc.len()` is a multiple of 8; `vals`
    /// holds `w.len()` rows of `hd`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accumulate_rows(acc: &mut [f32], w: &[f32], vals: &[f32]) {
        let hd = acc.len();
        let pa = acc.as_mut_ptr();
        // 64 dims (eight registers) at a time stay in registers over all rows.
        let mut d0 = 0;
        while d0 < hd {
            let nv = ((hd - d0) / 8).min(8);
            let mut r = [_mm256_setzero_ps(); 8];
            // SAFETY (all accesses): `d0 + v * 8 + 8 <= hd` for `v < nv`,
            // and row `j < w.len()` of `vals` exists.
            for (v, reg) in r.iter_mut().enumerate().take(nv) {
                *reg = _mm256_loadu_ps(pa.add(d0 + v * 8));
            }
            for (j, &wj) in w.iter().enumerate() {
                let s = _mm256_set1_ps(wj);
                let p = vals.as_ptr().add(j * hd + d0);
                for (v, reg) in r.iter_mut().enumerate().take(nv) {
                    *reg = _mm256_fmadd_ps(s, _mm256_loadu_ps(p.add(v * 8)), *reg);
                }
            }
            for (v, reg) in r.iter().enumerate().take(nv) {
                _mm256_storeu_ps(pa.add(d0 + v * 8), *reg);
            }
            d0 += nv * 8;
        }
    }

    /// `e^x` for eight lanes: `x = n·ln2 + r`, `e^r` by a degree-6
    /// polynomial, `2^n` through the exponent bits. Inputs are clamped to
    /// `[-87.3, 88.7]` (results stay finite and normal).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.7),
        );
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        // ln 2 = 355/512 (9 bits, so n·hi is exact) + a small correction.
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 120.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 24.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 6.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        let bits = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }

    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_sub_sum(xs: &mut [f32], m: f32) -> f32 {
        let n = xs.len();
        let p = xs.as_mut_ptr();
        let vm = _mm256_set1_ps(m);
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all accesses): `i + 8 <= n` / `i < n`.
        while i + 8 <= n {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm));
            _mm256_storeu_ps(p.add(i), e);
            acc = _mm256_add_ps(acc, e);
            i += 8;
        }
        let mut sum = hsum(acc);
        while i < n {
            let e = (*p.add(i) - m).exp();
            *p.add(i) = e;
            sum += e;
            i += 1;
        }
        sum
    }

    /// # Safety
    /// AVX2 and FMA available; the slices have equal lengths.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn swiglu(out: &mut [f32], g: &[f32], u: &[f32]) {
        let n = out.len();
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        // SAFETY (all accesses): `i + 8 <= n` / `i < n` for all three slices.
        while i + 8 <= n {
            let gv = _mm256_loadu_ps(g.as_ptr().add(i));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
            let s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            _mm256_storeu_ps(
                out.as_mut_ptr().add(i),
                _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i))),
            );
            i += 8;
        }
        while i < n {
            out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
            i += 1;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_kernels_agree_with_scalar() {
        for hd in [8usize, 64, 80, 128, 256] {
            let n = 37;
            let q: Vec<f32> = (0..hd)
                .map(|i| ((i * 31) % 17) as f32 / 9.0 - 1.0)
                .collect();
            let k: Vec<f32> = (0..n * hd)
                .map(|i| ((i * 13) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let mut out = vec![0.0; n];
            dot_many(&q, &k, &mut out);
            for j in 0..n {
                let want = dot_f32_scalar(&q, &k[j * hd..(j + 1) * hd]);
                assert!(
                    (out[j] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "hd {hd} j {j}"
                );
            }
            let w: Vec<f32> = (0..n).map(|j| j as f32 / n as f32).collect();
            let mut acc: Vec<f32> = q.clone();
            let mut want = q.clone();
            accumulate_rows(&mut acc, &w, &k);
            for j in 0..n {
                axpy_f32_scalar(&mut want, w[j], &k[j * hd..(j + 1) * hd]);
            }
            for (a, b) in acc.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "hd {hd}");
            }
        }
    }

    #[test]
    fn simd_exp_is_accurate() {
        let mut xs: Vec<f32> = (0..20000)
            .map(|i| -87.0 + i as f32 * (175.0 / 20000.0))
            .collect();
        xs.extend([0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 88.0]);
        let want: Vec<f64> = xs.iter().map(|&x| ((x - 0.25) as f64).exp()).collect();
        let mut got = xs.clone();
        let sum = exp_sub_sum(&mut got, 0.25);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                ((g as f64) - w).abs() <= 3e-7 * w,
                "x = {}: {g} vs {w}",
                xs[i]
            );
        }
        let _ = sum;
        let mut ys: Vec<f32> = (0..1001).map(|i| -30.0 + i as f32 * 0.06).collect();
        let total: f64 = ys.iter().map(|&y| ((y - 1.5) as f64).exp()).sum();
        let sum = exp_sub_sum(&mut ys, 1.5);
        assert!(
            (sum as f64 - total).abs() <= 1e-5 * total,
            "{sum} vs {total}"
        );
        let g: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 25.0).collect();
        let u: Vec<f32> = (0..1000).map(|i| 1.0 + i as f32 / 1000.0).collect();
        let mut out = vec![0.0; 1000];
        swiglu(&mut out, &g, &u);
        for i in 0..1000 {
            let x = g[i] as f64;
            let want = x / (1.0 + (-x).exp()) * u[i] as f64;
            assert!(
                (out[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "silu({x})"
            );
        }
    }

    #[test]
    fn simd_agrees_with_scalar() {
        for n in [0usize, 1, 7, 8, 31, 32, 33, 64, 100, 576] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 97) as f32 / 50.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 104729) % 89) as f32 / 40.0 - 1.0)
                .collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let tol = 1e-5 * (n as f64 + 1.0);
            assert!((dot_f32(&a, &b) as f64 - exact).abs() < tol, "n={n}");
            assert!((dot_f32_scalar(&a, &b) as f64 - exact).abs() < tol, "n={n}");
        }
    }
}
