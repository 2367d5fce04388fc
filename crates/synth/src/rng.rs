//! Counter-based random numbers that are bit-identical on every platform.
//!
//! Element `i` of a tensor is drawn from `splitmix64(key + (i + 1) * GAMMA)`,
//! so any slice of a tensor can be generated independently (and in parallel)
//! and the result never depends on how the work was split.
//!
//! Normals are approximated by the Irwin–Hall sum of four 16-bit uniforms,
//! standardised. This needs only integer arithmetic and one multiplication,
//! unlike Box–Muller, whose `ln`/`cos` come from the platform's libm and may
//! differ in the last bit between systems: the files must be byte-identical
//! everywhere. The distribution is bell-shaped and bounded (±√12 ≈ ±3.46),
//! which is all random weights need.

/// Increment of splitmix64 (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output function.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th 64-bit value of the stream `key`.
pub fn stream_u64(key: u64, i: u64) -> u64 {
    mix64(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// A key for the stream of one named tensor under a model seed
/// (FNV-1a of the name, mixed with the seed).
pub fn tensor_key(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(seed ^ mix64(h))
}

/// Mean of the sum of four uniform integers in `0..=65535`.
const SUM_MEAN: f64 = 4.0 * 65535.0 / 2.0;

/// `1 / standard deviation` of that sum: each term has variance `(65536² - 1) / 12`.
fn inv_sum_std() -> f64 {
    1.0 / (4.0 * (65536.0f64 * 65536.0 - 1.0) / 12.0).sqrt()
}

/// Fills `out` with elements `first..first + out.len()` of stream `key`,
/// approximately normal with the given mean and standard deviation.
pub fn fill_normal(key: u64, first: u64, mean: f32, std: f32, out: &mut [f32]) {
    let k = inv_sum_std();
    for (j, x) in out.iter_mut().enumerate() {
        let r = stream_u64(key, first + j as u64);
        let s = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        let z = (s as f64 - SUM_MEAN) * k;
        *x = (f64::from(mean) + z * f64::from(std)) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_published_values() {
        // First outputs of splitmix64 seeded with 0 (Vigna's reference code).
        assert_eq!(stream_u64(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(stream_u64(0, 1), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut v = vec![0f32; 200_000];
        fill_normal(7, 0, 0.0, 1.0, &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!(v.iter().all(|x| x.abs() <= 3.47));
    }

    #[test]
    fn slices_do_not_depend_on_the_split() {
        let mut whole = vec![0f32; 1000];
        fill_normal(3, 0, 1.0, 0.5, &mut whole);
        let mut part = vec![0f32; 300];
        fill_normal(3, 500, 1.0, 0.5, &mut part);
        assert_eq!(&whole[500..800], &part[..]);
    }
}
