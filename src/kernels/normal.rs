//! Box–Muller standard normals in blocks (Box & Muller, *Ann. Math.
//! Statist.* 29, 1958): for U uniform on (0, 1] and Θ uniform on the
//! circle, `√(−2 ln U)·(cos Θ, sin Θ)` are two independent N(0, 1). One
//! 64-bit random word per pair and no rejection, so a block of pairs is one
//! straight-line loop that the compiler vectorises (the random module builds
//! its bulk draws and pools on it; DESIGN.md §2).
//!
//! The logarithm, sine and cosine are the Cephes polynomials of
//! [`super::fastmath`]: plain IEEE single precision (no fused multiply-adds),
//! so the portable loop and its AVX-512/AVX2 builds give the same bits.

use super::fastmath::{ln_unit, sin_cos_octant};
use rand::RngCore;

/// Pairs per block: enough for the vectorised loop, small enough for the stack.
pub const BLOCK: usize = 32;

/// Fills `out` with independent standard-normal draws from `rng`, using
/// `⌈out.len() / 2⌉` words of it (the second draw of an odd tail is
/// discarded, so the stream's position depends only on `out.len()`).
///
/// Runs on eight or sixteen lanes per vector where the CPU has AVX2 or
/// AVX-512 ([`fill_standard_normal_portable`] compiled for them; with the
/// cargo feature `portable`, that function alone). The arithmetic is the
/// same IEEE single precision on every path, so the draws are the same bits
/// on every x86-64 machine.
pub fn fill_standard_normal<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe { fill_avx512(rng, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { fill_avx2(rng, out) };
            return;
        }
    }
    fill_standard_normal_portable(rng, out);
}

/// [`fill_standard_normal_portable`] compiled for AVX-512F (generic, so
/// written out rather than by `simd_builds!`).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
unsafe fn fill_avx512<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    fill_standard_normal_portable(rng, out);
}

/// [`fill_standard_normal_portable`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    fill_standard_normal_portable(rng, out);
}

/// The portable kernel of [`fill_standard_normal`]: blocks of [`BLOCK`]
/// words, one pair of normals per word (`box_muller_halves`).
#[inline(always)]
pub fn fill_standard_normal_portable<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    let mut words = [0u64; BLOCK];
    let mut pairs = [[0.0f32; 2]; BLOCK];
    let mut chunks = out.chunks_exact_mut(2 * BLOCK);
    for chunk in &mut chunks {
        for w in words.iter_mut() {
            *w = rng.next_u64();
        }
        box_muller_block(&words, &mut pairs);
        chunk.copy_from_slice(pairs.as_flattened());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let used = rest.len().div_ceil(2);
        for w in words[..used].iter_mut() {
            *w = rng.next_u64();
        }
        box_muller_block(&words, &mut pairs);
        rest.copy_from_slice(&pairs.as_flattened()[..rest.len()]);
    }
}

/// One pair of normals per word (see [`box_muller_halves`]).
#[inline(always)]
fn box_muller_block(words: &[u64; BLOCK], pairs: &mut [[f32; 2]; BLOCK]) {
    // The words split into 32-bit halves first, so that the transform runs
    // on a full vector of lanes rather than two.
    let mut lo = [0u32; BLOCK];
    let mut hi = [0u32; BLOCK];
    for ((l, h), &w) in lo.iter_mut().zip(hi.iter_mut()).zip(words) {
        *l = w as u32;
        *h = (w >> 32) as u32;
    }
    let mut first = [0.0f32; BLOCK];
    let mut second = [0.0f32; BLOCK];
    for k in 0..BLOCK {
        [first[k], second[k]] = box_muller_halves(lo[k], hi[k]);
    }
    for ((pair, &a), &b) in pairs.iter_mut().zip(&first).zip(&second) {
        *pair = [a, b];
    }
}

/// The pair of normals of the 32-bit halves `lo`, `hi` of a random word.
/// Bits 0–22 of `lo` give U = (a + ½)/2²³ (exact in `f32`, never 0 or 1);
/// bits 0–23 of `hi` give an angle φ uniform on [0, π/4), and bits 23–25
/// of `lo` a swap of (cos φ, sin φ) and the two signs, which together make
/// Θ uniform on the whole circle (each octant is φ or its mirror image, and
/// a mirror image of a uniform angle is uniform).
#[inline(always)]
fn box_muller_halves(lo: u32, hi: u32) -> [f32; 2] {
    let u = ((lo & 0x7F_FFFF) as f32 + 0.5) * (1.0 / 8_388_608.0);
    let radius = (-2.0 * ln_unit(u)).sqrt();
    let phi = (hi & 0xFF_FFFF) as f32 * (std::f32::consts::FRAC_PI_4 / 16_777_216.0);
    let (sin, cos) = sin_cos_octant(phi);
    let swap = (lo >> 23) & 1 == 1;
    let (a, b) = if swap { (sin, cos) } else { (cos, sin) };
    let sign_a = ((lo >> 24) & 1) << 31;
    let sign_b = ((lo >> 25) & 1) << 31;
    [
        f32::from_bits((radius * a).to_bits() ^ sign_a),
        f32::from_bits((radius * b).to_bits() ^ sign_b),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// One pair against the formula in `f64` with libm's `ln`, `cos`,
    /// `sin`: the polynomials are accurate to a few ulp.
    #[test]
    fn a_pair_is_the_box_muller_transform_of_its_word() {
        for (lo, hi) in [
            (0u32, 0u32),
            (0x7F_FFFF, 0xFF_FFFF),
            (0x0123_4567, 0x89AB_CDEF),
            (0x0380_0000 | 12_345, 0x00AB_CDEF),
        ] {
            let u = ((lo & 0x7F_FFFF) as f64 + 0.5) / 8_388_608.0;
            let r = (-2.0 * u.ln()).sqrt();
            let phi = (hi & 0xFF_FFFF) as f64 * std::f64::consts::FRAC_PI_4 / 16_777_216.0;
            let (mut a, mut b) = (r * phi.cos(), r * phi.sin());
            if (lo >> 23) & 1 == 1 {
                std::mem::swap(&mut a, &mut b);
            }
            if (lo >> 24) & 1 == 1 {
                a = -a;
            }
            if (lo >> 25) & 1 == 1 {
                b = -b;
            }
            let [x, y] = box_muller_halves(lo, hi);
            assert!(
                (x as f64 - a).abs() <= 2e-6 * a.abs().max(1.0),
                "{lo:#x}: {x} vs {a}"
            );
            assert!(
                (y as f64 - b).abs() <= 2e-6 * b.abs().max(1.0),
                "{lo:#x}: {y} vs {b}"
            );
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let draw = |fill: &dyn Fn(&mut Xoshiro256PlusPlus, &mut [f32])| {
            let mut out = vec![0.0f32; 999];
            fill(&mut Xoshiro256PlusPlus::seed_from_u64(13), &mut out);
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let portable = draw(&|r, o| fill_standard_normal_portable(r, o));
        assert_eq!(draw(&|r, o| fill_standard_normal(r, o)), portable);
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present.
                assert_eq!(draw(&|r, o| unsafe { fill_avx2(r, o) }), portable);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present.
                assert_eq!(draw(&|r, o| unsafe { fill_avx512(r, o) }), portable);
            }
        }
    }
}
