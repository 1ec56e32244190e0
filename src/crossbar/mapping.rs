//! Weight ↔ conductance: the differential pair `w = w_scale (g⁺ − g⁻)`
//! and the reference column `w = 2 w_scale (g − g_ref)` (see the module
//! docs of [`super`]), the read-noise weight of a cross-point, its physical
//! conductance, and programming target weights into devices.

use super::{Crossbar, Mapping};
use crate::devices::DeviceArray;
use crate::linalg::{Mat, Vector};

/// The constants that turn the read-visible conductances of a cross-point's
/// two devices (`G⁺, G⁻`, or the device and its reference) into its read
/// weight, read-noise term and physical conductance — the arithmetic of
/// [`Crossbar::weight_at`], [`Crossbar::squared_at`] and
/// [`Crossbar::crosspoint_conductance_s`] — and what a write updates.
#[derive(Clone, Copy, Debug)]
pub(super) struct EntryTerms {
    /// `w = weight · (g₀ − g₁)`: `w_scale`, or `2 w_scale` for the reference mapping.
    pub(super) weight: f32,
    /// `c² w_scale²` of the read-noise term `c² w_scale² ((g₀+o)² + (g₁+o)²)`.
    pub(super) squared: f32,
    /// `o = G_min/(G_max − G_min)`.
    pub(super) offset: f32,
    /// Read noise on (the squared terms are cached).
    pub(super) noisy: bool,
    /// `G_min` and `G_max − G_min` (µS).
    pub(super) g_min_us: f64,
    pub(super) span_us: f64,
    /// Update the read caches after a write.
    pub(super) refresh: bool,
    /// Update the line conductances after a write.
    pub(super) track_lines: bool,
}

impl EntryTerms {
    pub(super) fn of(xb: &Crossbar) -> Self {
        let ws = xb.config.w_scale;
        let c = xb.map_factor() * ws;
        Self {
            weight: if xb.paired { ws } else { 2.0 * ws },
            squared: c * c,
            offset: xb.model.conductance_offset(),
            noisy: xb.model.noise.read > 0.0,
            g_min_us: xb.model.conductance.g_min_us,
            span_us: xb.model.conductance.g_max_us - xb.model.conductance.g_min_us,
            refresh: true,
            track_lines: xb.line_conductance_valid,
        }
    }

    /// Physical conductance (S) of a cross-point whose two devices read `g`.
    #[inline(always)]
    pub(super) fn crosspoint_s(&self, g: [f32; 2]) -> f64 {
        let to_s = |g: f32| (self.g_min_us + g as f64 * self.span_us) * 1e-6;
        to_s(g[0]) + to_s(g[1])
    }

    /// `crosspoint_s(after) − crosspoint_s(before)`: the `G_min` terms
    /// cancel, so only the normalised changes are scaled (the differences of
    /// two `f32` are exact in `f64`), which is what a write costs per event.
    #[inline(always)]
    pub(super) fn crosspoint_change_s(&self, before: [f32; 2], after: [f32; 2]) -> f64 {
        let change = |k: usize| after[k] as f64 - before[k] as f64;
        (change(0) + change(1)) * self.span_us * 1e-6
    }
}

/// Splits a cross-point index `idx = j·n_out + i` into `(i, j)` by a
/// multiplication instead of a hardware division (a few cycles instead of
/// ten or more, and a pulse event needs the split once or twice):
/// `j = ⌊M·idx / 2⁶⁴⌋` with `M = ⌈2⁶⁴ / n_out⌉`, exact for every 32-bit
/// index and divisor (Lemire, Kaser & Kurz 2019, "Faster remainder by
/// direct computation", with F = 64 fraction bits for N = 32-bit operands).
#[derive(Clone, Copy, Debug)]
pub(super) struct CrossPointSplit {
    n_out: u64,
    /// `⌈2⁶⁴ / n_out⌉`, or 0 for `n_out = 1` (where it is 2⁶⁴).
    multiplier: u64,
}

impl CrossPointSplit {
    pub(super) fn new(n_out: usize) -> Self {
        let n_out = n_out.max(1) as u64;
        Self {
            n_out,
            multiplier: if n_out == 1 { 0 } else { u64::MAX / n_out + 1 },
        }
    }

    /// `(idx mod n_out, idx div n_out)` for `idx < 2³²` (pulse events carry
    /// 32-bit indices).
    #[inline(always)]
    pub(super) fn split(&self, idx: usize) -> (usize, usize) {
        debug_assert!(idx <= u32::MAX as usize);
        let n = idx as u64;
        let j = if self.n_out == 1 {
            n
        } else {
            ((self.multiplier as u128 * n as u128) >> 64) as u64
        };
        ((n - j * self.n_out) as usize, j as usize)
    }
}

impl Crossbar {
    /// Mapping factor `c` in `w = c · w_scale · (g − g')`.
    pub(super) fn map_factor(&self) -> f32 {
        match self.config.mapping {
            Mapping::Differential => 1.0,
            Mapping::Reference => 2.0,
        }
    }

    /// Read-visible weight of device (pair) `idx` (column-major, bias column last).
    #[inline]
    pub(super) fn weight_at(&self, idx: usize) -> f32 {
        let ws = self.config.w_scale;
        if self.paired {
            ws * (self.devices.visible(2 * idx) - self.devices.visible(2 * idx + 1))
        } else {
            2.0 * ws * (self.devices.visible(idx) - self.reference[idx / self.n_out])
        }
    }

    /// Read-noise weight of device (pair) `idx`: `c² w_scale² ((g⁺+o)² + (g⁻+o)²)`.
    #[inline]
    pub(super) fn squared_at(&self, idx: usize) -> f32 {
        let o = self.model.conductance_offset();
        let c = self.map_factor() * self.config.w_scale;
        let (gp, gm) = if self.paired {
            (
                self.devices.visible(2 * idx) + o,
                self.devices.visible(2 * idx + 1) + o,
            )
        } else {
            (
                self.devices.visible(idx) + o,
                self.reference[idx / self.n_out] + o,
            )
        };
        c * c * (gp * gp + gm * gm)
    }

    /// Physical conductance (S) of the cross-point `idx`: G⁺ + G⁻ of a pair,
    /// or the device plus its line's reference device.
    pub(super) fn crosspoint_conductance_s(&self, idx: usize) -> f64 {
        EntryTerms::of(self).crosspoint_s(self.crosspoint_reads(idx))
    }

    /// Read-visible normalised conductances of the two devices of
    /// cross-point `idx` (`G⁺, G⁻`, or the device and its reference).
    #[inline]
    pub(super) fn crosspoint_reads(&self, idx: usize) -> [f32; 2] {
        if self.paired {
            [
                self.devices.visible(2 * idx),
                self.devices.visible(2 * idx + 1),
            ]
        } else {
            [self.devices.visible(idx), self.reference[idx / self.n_out]]
        }
    }

    /// The effective weights the conductances encode (`n_out × n_in`).
    pub(super) fn read_weights(&self) -> Mat {
        Mat::from_fn(self.n_out, self.n_in, |i, j| {
            self.weight_at(i + j * self.n_out)
        })
    }

    /// The effective bias (the bias column's cross-points).
    pub(super) fn read_bias(&self) -> Vector {
        Vector::from_fn(self.n_out, |i, _| {
            self.weight_at(i + self.n_in * self.n_out)
        })
    }

    /// Programs every pair to its target weight (idealised program-and-verify
    /// without pulses): a differential pair is centred on the mean of its two
    /// devices' symmetry points, `g± = c ± w/(2 w_scale)`; a one-sided pair
    /// starts from its lower bounds, `g± = g_lo± + max(±w, 0)/w_scale`; a
    /// single device sits at `g_ref + w/(2 w_scale)`. Bounds, levels and
    /// stuck devices apply, so the programmed weight can differ from the target.
    pub(super) fn program(&mut self, weights: &Mat, bias: &Vector) {
        assert_eq!(
            weights.shape(),
            (self.n_out, self.n_in),
            "set_parameters: shape"
        );
        assert_eq!(bias.len(), self.n_out, "set_parameters: bias length");
        let ws = self.config.w_scale;
        let n_out = self.n_out;
        let model = &self.model;
        let center = |a: &DeviceArray, i: usize| {
            let (lo, hi) = a.bounds(i);
            model.zero_point(lo, hi)
        };
        let one_sided = self.model.pairing.one_sided;
        let d = &mut self.devices;
        for idx in 0..self.n_out * (self.n_in + 1) {
            let (i, j) = (idx % n_out, idx / n_out);
            let w = if j < self.n_in {
                weights[(i, j)]
            } else {
                bias[i]
            };
            if !self.paired {
                d.program(idx, self.reference[j] + w * (0.5 / ws));
                continue;
            }
            let (ip, im) = (2 * idx, 2 * idx + 1);
            if one_sided {
                let (lp, _) = d.bounds(ip);
                let (lm, _) = d.bounds(im);
                d.program(ip, lp + w.max(0.0) / ws);
                d.program(im, lm + (-w).max(0.0) / ws);
            } else {
                let c = 0.5 * (center(d, ip) + center(d, im));
                let half = w * (0.5 / ws);
                d.program(ip, c + half);
                d.program(im, c - half);
            }
        }
        self.refresh_cache();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multiply-shift split equals `%` and `/` for every divisor shape
    /// (1, powers of two, their neighbours, layer sizes, the 32-bit
    /// extremes) and numerators at both ends of the range and in between.
    #[test]
    fn cross_point_split_equals_division() {
        let mut divisors: Vec<usize> = (1..=300).collect();
        for k in 1..32 {
            let p = 1usize << k;
            divisors.extend([p - 1, p, p + 1]);
        }
        divisors.extend([784, 1000, 10_007, u32::MAX as usize]);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for &d in &divisors {
            let split = CrossPointSplit::new(d);
            let mut numerators = vec![0usize, 1, d - 1, d, d + 1, u32::MAX as usize];
            numerators.extend((0..200).map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 32) as usize
            }));
            for n in numerators.into_iter().filter(|&n| n <= u32::MAX as usize) {
                assert_eq!(split.split(n), (n % d, n / d), "{n} / {d}");
            }
        }
    }
}
