//! Single-precision `ln` and `sin`/`cos` as straight-line polynomials that
//! inline into hot loops and vectorise, where the libm calls cannot (an
//! out-of-line call per element). (An inlined Cephes `exp` was tried for
//! the devices' exponential step and the sigmoid: in those scalar loops
//! glibc's `expf` was as fast or faster, so they keep it.)
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
}
