//! Bulk standard-normal draws for the noise models that need many of them
//! per read (the crossbars' read noise and output noise, DESIGN.md §2).
//!
//! [`fill_standard_normal`] uses the Box–Muller transform (Box & Muller,
//! *Ann. Math. Statist.* 29, 1958; the kernel is
//! [`crate::kernels::normal`]): for U uniform on (0, 1] and Θ uniform on
//! the circle, `√(−2 ln U)·(cos Θ, sin Θ)` are two independent N(0, 1). It
//! needs one 64-bit random word per pair and no rejection, so a block of
//! pairs is one straight-line loop that the compiler vectorises — about
//! four times faster than drawing one ziggurat sample at a time, which was
//! an eighth of a DP⊤ training step on a noisy crossbar.
//!
//! The logarithm, sine and cosine are the Cephes polynomials of
//! [`crate::kernels::fastmath`].

use crate::kernels::normal::BLOCK;
use rand::RngCore;

pub use crate::kernels::normal::fill_standard_normal;

/// Largest magnitude a draw can have: U ≥ 2⁻²⁴ gives `√(48 ln 2)` ≈ 5.77
/// (a Gaussian exceeds it with probability 8·10⁻⁹).
pub const MAX_ABS: f32 = 5.768;

/// Normals drawn [`POOL`] at a time from a random stream and handed out one
/// by one, for a caller that needs single draws in a scalar loop (the
/// cycle-to-cycle noise of each device pulse).
///
/// [`NormalPool::discard`] drops the draws not yet handed out. A caller
/// that discards at the end of every unit of work (a crossbar update) can
/// save and restore the stream alone, [`NormalPool::rng`], and continue it
/// exactly.
#[derive(Clone, Debug)]
pub struct NormalPool<R> {
    rng: R,
    pool: [f32; POOL],
    next: usize,
}

/// Draws per refill of a [`NormalPool`].
pub const POOL: usize = 2 * BLOCK;

impl<R: RngCore> NormalPool<R> {
    /// An empty pool over `rng`.
    pub fn new(rng: R) -> Self {
        Self {
            rng,
            pool: [0.0; POOL],
            next: POOL,
        }
    }

    /// The next standard normal.
    #[inline(always)]
    pub fn normal(&mut self) -> f32 {
        self.refill_if_empty();
        let v = self.pool[self.next];
        self.next += 1;
        v
    }

    /// The draws not handed out yet, in the order [`NormalPool::normal`]
    /// would hand them out (empty when the next call refills).
    #[inline(always)]
    pub fn pending(&self) -> &[f32] {
        &self.pool[self.next..]
    }

    /// Hands out the next `k` pending draws at once (a caller that read
    /// them from [`NormalPool::pending`]).
    #[inline(always)]
    pub fn take(&mut self, k: usize) {
        assert!(
            k <= POOL - self.next,
            "took {k} of {} pending draws",
            POOL - self.next
        );
        self.next += k;
    }

    /// Refills an empty pool now, as the next [`NormalPool::normal`] would:
    /// the same draws in the same order.
    #[inline(always)]
    pub fn refill_if_empty(&mut self) {
        if self.next == POOL {
            fill_standard_normal(&mut self.rng, &mut self.pool);
            self.next = 0;
        }
    }

    /// Drops the draws not handed out yet: the next draw comes from a fresh
    /// refill at the stream's current position.
    pub fn discard(&mut self) {
        self.next = POOL;
    }

    /// The stream, positioned after the last refill.
    pub fn rng(&self) -> &R {
        &self.rng
    }

    /// Continues from `rng`, with an empty pool.
    pub fn set_rng(&mut self, rng: R) {
        self.rng = rng;
        self.next = POOL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn draws_have_the_moments_and_distribution_of_a_standard_normal() {
        let n = 1_000_000;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut z = vec![0.0f32; n];
        fill_standard_normal(&mut rng, &mut z);
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let moment = |k: i32| z.iter().map(|&v| (v as f64).powi(k)).sum::<f64>() / n as f64;
        // Standard errors: mean 1e-3, variance 1.4e-3, third 3.9e-3, fourth 9.8e-3.
        assert!(mean.abs() < 5e-3, "mean {mean}");
        assert!((moment(2) - 1.0).abs() < 7e-3, "variance {}", moment(2));
        assert!(moment(3).abs() < 2e-2, "skewness {}", moment(3));
        assert!((moment(4) - 3.0).abs() < 5e-2, "kurtosis {}", moment(4));
        assert!(z.iter().all(|v| v.abs() <= MAX_ABS));
        // Kolmogorov–Smirnov distance to Φ (1 % critical value 1.63/√n).
        let mut sorted = z.clone();
        sorted.sort_by(f32::total_cmp);
        let ks = sorted
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let cdf = normal_cdf(v as f64);
                (cdf - i as f64 / n as f64)
                    .abs()
                    .max((cdf - (i + 1) as f64 / n as f64).abs())
            })
            .fold(0.0f64, f64::max);
        assert!(ks < 1.63 / (n as f64).sqrt(), "KS distance {ks}");
        // Tails: P(|Z| > 3) = 2.70e-3 (±1.6 % relative standard error).
        let tail = z.iter().filter(|v| v.abs() > 3.0).count() as f64 / n as f64;
        assert!((tail / 2.6998e-3 - 1.0).abs() < 0.08, "P(|Z|>3) = {tail}");
    }

    #[test]
    fn the_two_draws_of_a_pair_are_independent() {
        let n = 400_000;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let mut z = vec![0.0f32; 2 * n];
        fill_standard_normal(&mut rng, &mut z);
        let pairs = z.chunks_exact(2);
        // Box–Muller pairs share the radius: a flawed angle would show up
        // in the correlation of the squares, not only of the values.
        let (mut xy, mut x2y2, mut xx, mut yy, mut x_larger) = (0.0f64, 0.0f64, 0.0, 0.0, 0usize);
        for p in pairs {
            let (x, y) = (p[0] as f64, p[1] as f64);
            xy += x * y;
            x2y2 += (x * x - 1.0) * (y * y - 1.0);
            xx += x * x;
            yy += y * y;
            x_larger += (x.abs() > y.abs()) as usize;
        }
        let n_f = n as f64;
        // Standard errors 1/√n, 2/√n, √2/√n and ½/√n.
        assert!((xy / n_f).abs() < 5.0 / n_f.sqrt(), "E[xy] {xy}");
        assert!(
            (x2y2 / n_f).abs() < 10.0 / n_f.sqrt(),
            "E[(x²−1)(y²−1)] {x2y2}"
        );
        // Each position on its own is N(0, 1), and neither dominates the
        // other (a missing swap keeps |x| ≥ |y| with the pooled law intact).
        assert!(
            (xx / n_f - 1.0).abs() < 7.0 / n_f.sqrt(),
            "E[x²] {}",
            xx / n_f
        );
        assert!(
            (yy / n_f - 1.0).abs() < 7.0 / n_f.sqrt(),
            "E[y²] {}",
            yy / n_f
        );
        let share = x_larger as f64 / n_f;
        assert!(
            (share - 0.5).abs() < 2.5 / n_f.sqrt(),
            "P(|x| > |y|) {share}"
        );
    }

    #[test]
    fn the_stream_position_depends_only_on_the_length() {
        for len in [0usize, 1, 2, 63, 64, 65, 200] {
            let mut a = Xoshiro256PlusPlus::seed_from_u64(3);
            let mut b = a.clone();
            let mut out = vec![0.0f32; len];
            fill_standard_normal(&mut a, &mut out);
            for _ in 0..len.div_ceil(2) {
                b.next_u64();
            }
            assert_eq!(a.next_u64(), b.next_u64(), "length {len}");
        }
    }

    #[test]
    fn a_pool_hands_out_the_bulk_draws_in_order_and_discards_cleanly() {
        let mut bulk = vec![0.0f32; 3 * POOL];
        fill_standard_normal(&mut Xoshiro256PlusPlus::seed_from_u64(5), &mut bulk);
        let mut pool = NormalPool::new(Xoshiro256PlusPlus::seed_from_u64(5));
        let drawn: Vec<f32> = (0..3 * POOL).map(|_| pool.normal()).collect();
        assert_eq!(drawn, bulk);
        // After a discard the pool continues from the saved stream alone.
        let mut a = NormalPool::new(Xoshiro256PlusPlus::seed_from_u64(9));
        a.normal();
        a.discard();
        let mut b = NormalPool::new(a.rng().clone());
        assert_eq!(a.normal(), b.normal());
    }

    /// Φ by the complementary error function (Abramowitz & Stegun 7.1.26
    /// is too coarse for a 10⁻³ KS test, so erfc by its continued fraction
    /// and series in f64).
    fn normal_cdf(x: f64) -> f64 {
        0.5 * erfc(-x / std::f64::consts::SQRT_2)
    }

    fn erfc(x: f64) -> f64 {
        if x < 0.0 {
            return 2.0 - erfc(-x);
        }
        if x < 2.0 {
            // erf by its Taylor series, 1 − erf.
            let mut term = x;
            let mut sum = x;
            for k in 1..60 {
                term *= -x * x / k as f64;
                sum += term / (2 * k + 1) as f64;
            }
            1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            // Lentz's continued fraction for erfc.
            let mut f = 0.0;
            for k in (1..80).rev() {
                f = (k as f64 / 2.0) / (x + f);
            }
            (-x * x).exp() / std::f64::consts::PI.sqrt() / (x + f)
        }
    }
}
