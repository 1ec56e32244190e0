//! Reductions over `f32` slices: the largest magnitude of a slice (the
//! crossbars' and the controller's input ranges, DESIGN.md §2).

use super::simd_builds;

simd_builds!(
    /// Largest |x_i| skipping NaNs, and whether there was a NaN
    /// ([`max_magnitude_portable`] built for AVX-512/AVX2 where the CPU has
    /// them; the maximum and the NaN flag do not depend on the order).
    pub fn max_magnitude, max_magnitude_avx512, max_magnitude_avx2 =
        max_magnitude_portable(x: &[f32]) -> (f32, bool)
);

/// Largest |x_i| skipping NaNs, and whether there was a NaN, on the bit
/// patterns: without the sign bit, a non-NaN float's magnitude orders as
/// its bits do as an unsigned integer, and NaNs are exactly the patterns
/// above infinity's. Integer maxima are associative, so the compiler
/// vectorises the two running maxima by itself (float maxima with a NaN
/// test per element stayed scalar).
#[inline(always)]
pub fn max_magnitude_portable(x: &[f32]) -> (f32, bool) {
    const INFINITY_BITS: u32 = 0x7f80_0000;
    let (mut top, mut raw) = (0u32, 0u32);
    for &v in x {
        let a = v.to_bits() & 0x7fff_ffff;
        raw = raw.max(a);
        top = top.max(if a <= INFINITY_BITS { a } else { 0 });
    }
    (f32::from_bits(top), raw > INFINITY_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan's value against an independent fold with `f32::max`
    /// (which skips NaNs), and the NaN flag against `is_nan`.
    #[test]
    fn max_magnitude_is_the_fold_of_abs_and_flags_nans() {
        let mut x: Vec<f32> = (0..41).map(|i| (i as f32 * 0.83).cos() * 7.0).collect();
        x[17] = f32::NEG_INFINITY;
        x[30] = f32::NAN;
        for n in 0..x.len() {
            let expected = x[..n].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let nan = x[..n].iter().any(|v| v.is_nan());
            assert_eq!(max_magnitude(&x[..n]), (expected, nan), "n {n}");
        }
    }

    /// The vector builds of the max-magnitude scan agree with the portable
    /// one, NaN flag included, over every remainder of the lane counts.
    #[test]
    fn max_magnitude_builds_agree() {
        for n in [0usize, 1, 7, 8, 9, 16, 17, 33, 257] {
            let mut x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin() * 3.0).collect();
            for nan_at in [None, Some(0), Some(n / 2)] {
                if let Some(k) = nan_at.filter(|&k| k < n) {
                    x[k] = f32::NAN;
                }
                let base = max_magnitude_portable(&x);
                assert_eq!(max_magnitude(&x), base, "n {n}");
                #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
                {
                    if std::arch::is_x86_feature_detected!("avx2") {
                        // SAFETY: AVX2 was detected just above.
                        assert_eq!(unsafe { max_magnitude_avx2(&x) }, base, "AVX2, n {n}");
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: AVX-512F was detected just above.
                        assert_eq!(unsafe { max_magnitude_avx512(&x) }, base, "AVX-512, n {n}");
                    }
                }
            }
        }
    }
}
