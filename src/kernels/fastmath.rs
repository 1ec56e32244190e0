//! Single-precision `ln` and `sin`/`cos` as straight-line polynomials that
//! inline into hot loops and vectorise, where the libm calls cannot (an
//! out-of-line call per element). (An inlined Cephes `exp` was tried for
//! the devices' exponential step and the sigmoid: in those scalar loops
//! glibc's `expf` was as fast or faster, so they keep it.) And the logistic
//! function over a slice with sixteen `expf`s at a time ([`sigmoid_slice`]),
//! bit for bit glibc's `expf`.
//!
//! All are the minimax polynomials of the Cephes library (Moshier, *Methods
//! and Programs for Mathematical Functions*, 1989), accurate to about 1 ulp
//! on their ranges; the tests compare them with `f64` references. They are
//! the same plain IEEE single-precision operations on every CPU (no fused
//! multiply-adds), so results do not depend on the machine.

/// ln u for a normal `u` in (0, 1] (Cephes `logf`): u = m·2^e with m in
/// [√½, √2), ln u = e ln 2 + ln m, ln m by a degree-9 polynomial in m − 1.
#[inline(always)]
pub fn ln_unit(u: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = u.to_bits();
    // u = m·2^e with m in [½, 1).
    let e = ((bits >> 23) as i32 - 126) as f32;
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
    let low = m < SQRT_HALF;
    let e = if low { e - 1.0 } else { e };
    let x = if low { m + m - 1.0 } else { m - 1.0 };
    let z = x * x;
    let mut y = 7.037_683_6e-2;
    y = y * x - 1.151_461e-1;
    y = y * x + 1.167_699_9e-1;
    y = y * x - 1.242_014_1e-1;
    y = y * x + 1.424_932_3e-1;
    y = y * x - 1.666_805_8e-1;
    y = y * x + 2.000_071_4e-1;
    y = y * x - 2.499_999_4e-1;
    y = y * x + 3.333_333e-1;
    y = y * x * z;
    // ln 2 split in two parts (−2.12194440e−4 + 0.693359375) for accuracy.
    y += -2.121_944_4e-4 * e;
    y += -0.5 * z;
    x + y + 0.693_359_4 * e
}

/// (sin φ, cos φ) for φ in [0, π/4] (Cephes `sinf`/`cosf` polynomials).
#[inline(always)]
pub fn sin_cos_octant(phi: f32) -> (f32, f32) {
    let z = phi * phi;
    let sin = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * phi + phi;
    let cos = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    (sin, cos)
}

/// The sigmoid 1/(1 + e^−v) with libm's `expf` (what
/// `network::Activation::apply` computes, and what
/// [`sigmoid_slice`] reproduces sixteen at a time).
#[inline]
pub fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// `out[i] = sigmoid(v[i])` ([`sigmoid`]), the same bits: sixteen at a time
/// with AVX-512 (a vector `expf` with glibc's bits, step for step), else
/// (and always with the cargo feature `portable`) element by element.
pub fn sigmoid_slice(v: &[f32], out: &mut [f32]) {
    let n = v.len().min(out.len());
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    let done = if std::arch::is_x86_feature_detected!("avx512f") {
        let body = n - n % 16;
        // SAFETY: the CPU has AVX-512F (checked just above); both slices
        // hold at least `body` elements.
        unsafe { sigmoid_avx512(&v[..body], &mut out[..body]) };
        body
    } else {
        0
    };
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    let done = 0;
    for (o, &x) in out[done..n].iter_mut().zip(&v[done..n]) {
        *o = sigmoid(x);
    }
}

/// The body of [`sigmoid_slice`]: whole vectors of sixteen; a vector with
/// an argument [`exp16_avx512`] does not take (|v| ≥ 88 or NaN) goes to
/// libm element by element.
///
/// # Safety
/// The CPU must support AVX-512F; `v.len()` must be a multiple of 16 and
/// `out` at least as long.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_avx512(v: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_div_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps, _mm512_sub_ps,
    };
    debug_assert!(v.len().is_multiple_of(16) && out.len() >= v.len());
    let one = _mm512_set1_ps(1.0);
    for (o, x) in out.chunks_exact_mut(16).zip(v.chunks_exact(16)) {
        // SAFETY: both chunks hold sixteen floats.
        let minus = unsafe { _mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(x.as_ptr())) };
        // SAFETY: the caller checked AVX-512F.
        match unsafe { exp16_avx512(minus) } {
            // SAFETY: `o` holds sixteen floats.
            Some(e) => unsafe {
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_div_ps(one, _mm512_add_ps(one, e)))
            },
            None => {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = sigmoid(x);
                }
            }
        }
    }
}

/// `e^x` in sixteen lanes, bit for bit the `expf` of glibc ≥ 2.27 as its
/// FMA build computes it (the algorithm of Arm's optimized-routines,
/// Szabolcs Nagy 2017, which glibc, musl and LLVM's libc share): with
/// `N = 32`, `z = x·N/ln 2 = k + r` (`k` by the round-to-nearest shift
/// `0x1.8p52`, `r = fma(N/ln 2, x, −k)`), `2^(k/N)` from a 32-entry table
/// with `k` added to its exponent, and `2^(r/N)` by a cubic in `r`, all in
/// `f64`, rounded once to `f32`. Checked against libm for every `f32` with
/// |x| < 88 (2.2·10⁹ values, none differ; the test samples them). Lanes
/// outside that range (overflow, underflow, NaN) are libm's special cases:
/// `None` then, for the caller to use libm.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp16_avx512(
    x: std::arch::x86_64::__m512,
) -> Option<std::arch::x86_64::__m512> {
    use std::arch::x86_64::{
        __m512d, _mm512_abs_ps, _mm512_add_epi64, _mm512_add_pd, _mm512_castpd_si512,
        _mm512_castps256_ps512, _mm512_castps512_ps256, _mm512_castsi512_pd, _mm512_cmp_ps_mask,
        _mm512_cvtpd_ps, _mm512_cvtps_pd, _mm512_extractf32x8_ps, _mm512_fmadd_pd, _mm512_fmsub_pd,
        _mm512_insertf32x8, _mm512_loadu_si512, _mm512_mask_blend_epi64, _mm512_mul_pd,
        _mm512_permutex2var_epi64, _mm512_set1_epi64, _mm512_set1_pd, _mm512_set1_ps,
        _mm512_slli_epi64, _mm512_sub_pd, _mm512_test_epi64_mask, _CMP_LT_OQ,
    };
    // Every lane in |x| < 88 (false for NaN): glibc's main path.
    if _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(88.0)) != u16::MAX {
        return None;
    }
    // SAFETY: `EXP2F_TABLE` holds 32 words, read as four vectors of eight.
    let table =
        unsafe { [0, 8, 16, 24].map(|k| _mm512_loadu_si512(EXP2F_TABLE.as_ptr().add(k).cast())) };
    let n = EXP2F_N as f64;
    let inv_ln2_n = _mm512_set1_pd(f64::from_bits(0x3FF7_1547_652B_82FE) * n);
    let shift = _mm512_set1_pd(f64::from_bits(0x4338_0000_0000_0000));
    let c0 = _mm512_set1_pd(f64::from_bits(0x3FAC_6AF8_4B91_2394) / n / n / n);
    let c1 = _mm512_set1_pd(f64::from_bits(0x3FCE_BFCE_50FA_C4F3) / n / n);
    let c2 = _mm512_set1_pd(f64::from_bits(0x3FE6_2E42_FF0C_52D6) / n);
    let one = _mm512_set1_pd(1.0);
    let half = |xd: __m512d| {
        let z = _mm512_mul_pd(inv_ln2_n, xd);
        let shifted = _mm512_add_pd(z, shift);
        let ki = _mm512_castpd_si512(shifted);
        let kd = _mm512_sub_pd(shifted, shift);
        let r = _mm512_fmsub_pd(inv_ln2_n, xd, kd);
        // T[k mod 32]: the low four bits pick within a pair of vectors,
        // bit 4 picks the pair.
        let low = _mm512_permutex2var_epi64(table[0], ki, table[1]);
        let high = _mm512_permutex2var_epi64(table[2], ki, table[3]);
        let upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
        let t = _mm512_mask_blend_epi64(upper, low, high);
        let scale = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
        let poly = _mm512_fmadd_pd(c0, r, c1);
        let y = _mm512_fmadd_pd(c2, r, one);
        let y = _mm512_fmadd_pd(poly, _mm512_mul_pd(r, r), y);
        _mm512_cvtpd_ps(_mm512_mul_pd(y, scale))
    };
    let lo = half(_mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    let hi = half(_mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(x)));
    Some(_mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi))
}

/// Table size of glibc's `expf` (`EXP2F_TABLE_BITS = 5`).
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
const EXP2F_N: u32 = 32;

/// `T[i] = bits(2^(i/32)) − (i << 47)`: `2^(k/32)` is then the `f64` with
/// bits `T[k mod 32] + (k << 47)` (the table of Arm's optimized-routines
/// `exp2f_data.c`, which glibc's `expf` uses).
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
static EXP2F_TABLE: [u64; EXP2F_N as usize] = [
    0x3FF0_0000_0000_0000,
    0x3FEF_D9B0_D315_8574,
    0x3FEF_B558_6CF9_890F,
    0x3FEF_9301_D012_5B51,
    0x3FEF_72B8_3C7D_517B,
    0x3FEF_5487_3168_B9AA,
    0x3FEF_387A_6E75_6238,
    0x3FEF_1E9D_F51F_DEE1,
    0x3FEF_06FE_0A31_B715,
    0x3FEE_F1A7_373A_A9CB,
    0x3FEE_DEA6_4C12_3422,
    0x3FEE_CE08_6061_892D,
    0x3FEE_BFDA_D536_2A27,
    0x3FEE_B42B_569D_4F82,
    0x3FEE_AB07_DD48_5429,
    0x3FEE_A47E_B03A_5585,
    0x3FEE_A09E_667F_3BCD,
    0x3FEE_9F75_E8EC_5F74,
    0x3FEE_A114_73EB_0187,
    0x3FEE_A589_994C_CE13,
    0x3FEE_ACE5_422A_A0DB,
    0x3FEE_B737_B0CD_C5E5,
    0x3FEE_C491_82A3_F090,
    0x3FEE_D503_B23E_255D,
    0x3FEE_E89F_995A_D3AD,
    0x3FEE_FF76_F2FB_5E47,
    0x3FEF_199B_DD85_529C,
    0x3FEF_3720_DCEF_9069,
    0x3FEF_5818_DCFB_A487,
    0x3FEF_7C97_337B_9B5F,
    0x3FEF_A4AF_A2A4_90DA,
    0x3FEF_D076_5B6E_4540,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_sin_and_cos_match_f64_references() {
        // Every 997th representable U of the grid, and a sweep of angles.
        for a in (0u32..1 << 23).step_by(997).chain([0, (1 << 23) - 1]) {
            let u = (a as f32 + 0.5) / 8_388_608.0;
            let exact = (u as f64).ln();
            let got = ln_unit(u) as f64;
            assert!(
                (got - exact).abs() <= 2.0 * f32::EPSILON as f64 * exact.abs().max(1e-7),
                "ln({u}) = {got}, expected {exact}"
            );
        }
        for k in 0..=10_000 {
            let phi = k as f32 / 10_000.0 * std::f32::consts::FRAC_PI_4;
            let (s, c) = sin_cos_octant(phi);
            assert!((s as f64 - (phi as f64).sin()).abs() < 1.5e-7, "sin {phi}");
            assert!((c as f64 - (phi as f64).cos()).abs() < 1.5e-7, "cos {phi}");
        }
    }

    /// `f32`s by bit pattern from `start`, every `step`-th, sixteen at a
    /// time: the number of lanes whose [`exp16_avx512`] differs from libm's
    /// `expf`, and of vectors it declined (a lane with |x| ≥ 88 or NaN).
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    fn exp16_mismatches(start: u64, end: u64, step: u64) -> (u64, u64) {
        use std::arch::x86_64::{_mm512_loadu_ps, _mm512_storeu_ps};
        let (mut differ, mut declined) = (0, 0);
        let mut bits = start;
        while bits < end {
            let x: [f32; 16] =
                std::array::from_fn(|k| f32::from_bits((bits + k as u64 * step) as u32));
            let mut got = [0.0f32; 16];
            // SAFETY: the callers checked AVX-512F; both arrays hold sixteen floats.
            match unsafe { exp16_avx512(_mm512_loadu_ps(x.as_ptr())) } {
                Some(e) => unsafe { _mm512_storeu_ps(got.as_mut_ptr(), e) },
                None => {
                    declined += 1;
                    bits += 16 * step;
                    continue;
                }
            }
            for (g, x) in got.iter().zip(x) {
                differ += (g.to_bits() != x.exp().to_bits()) as u64;
            }
            bits += 16 * step;
        }
        (differ, declined)
    }

    /// The vector `expf` gives libm's bits on a sample of every binade of
    /// |x| < 88 (every 251st `f32` by bit pattern, both signs), declines
    /// vectors with a lane past its range, and the vector sigmoid equals
    /// the scalar one there too (its fallback included).
    #[test]
    fn vector_expf_and_sigmoid_have_libm_bits() {
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // |x| < 88: bit patterns below 88.0's, positive and negative.
            let limit = 88.0f32.to_bits() as u64;
            for sign in [0u64, 1 << 31] {
                let (differ, declined) = exp16_mismatches(sign, sign + limit - 16 * 251, 251);
                assert_eq!((differ, declined), (0, 0), "sign bit {sign:#x}");
            }
            // Vectors reaching 88, infinity or NaN are declined.
            for edge in [88.0f32, -88.0, f32::INFINITY, f32::NAN, -103.99] {
                let (_, declined) =
                    exp16_mismatches(edge.to_bits() as u64 - 15, edge.to_bits() as u64 + 1, 1);
                assert_eq!(declined, 1, "{edge}");
            }
        }
        let v: Vec<f32> = (0..4_001)
            .map(|k| (k as f32 - 2_000.0) * 0.047)
            .chain([
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -0.0,
                0.0,
                1e-30,
                -1e-30,
            ])
            .chain([100.0, -100.0, 88.0, -88.0, 87.99, -87.99])
            .collect();
        let mut out = vec![0.0f32; v.len()];
        sigmoid_slice(&v, &mut out);
        for (&x, &o) in v.iter().zip(&out) {
            let expected = 1.0 / (1.0 + (-x).exp());
            assert_eq!(o.to_bits(), expected.to_bits(), "sigmoid({x})");
        }
    }

    /// Every `f32` with |x| < 88 (2.2·10⁹ values, ≈ 12 s in a release build):
    /// the claim in [`exp16_avx512`]'s documentation. Run with `--ignored`.
    #[test]
    #[ignore]
    fn vector_expf_has_libm_bits_for_every_float() {
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let limit = 88.0f32.to_bits() as u64;
            for sign in [0u64, 1 << 31] {
                let whole = limit - limit % 16;
                assert_eq!(exp16_mismatches(sign, sign + whole, 1), (0, 0));
                assert_eq!(exp16_mismatches(sign + limit - 16, sign + limit, 1), (0, 0));
            }
        }
    }
}
