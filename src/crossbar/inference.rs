//! A crossbar used for inference after training (`dyadsim infer`,
//! DESIGN.md §5.1): programming trained weights into fresh devices with
//! the model's programming error, iterative write-and-verify programming
//! with counted pulses, the 1/f read noise accumulated since programming,
//! and the reference read that drift compensation scales the outputs by.

use super::Crossbar;
use crate::devices::array::{normal, pair_pulses, NoiseRng};
use crate::devices::Position;
use crate::linalg::{Mat, Vector};
use crate::substrate::WeightArray;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

/// Write-and-verify programming: per cross-point, read the weight and
/// pulse towards the target until it is within `tolerance` or
/// `max_iterations` writes have been made.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteVerify {
    /// Accepted |w_read − w_target|, as a fraction of the layer's `w_scale`.
    pub tolerance: f32,
    /// Most write steps per cross-point (each followed by a verify read).
    pub max_iterations: u32,
}

/// What [`Crossbar::write_verify`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteVerifyStats {
    /// Cross-points programmed (weights and biases).
    pub cross_points: u64,
    /// Cross-points whose last verify read was within tolerance.
    pub converged: u64,
    /// Pulses delivered to devices (each device pulse counted once).
    pub pulses: u64,
    /// Write steps made, over all cross-points.
    pub writes: u64,
    /// Verify reads made, over all cross-points.
    pub reads: u64,
}

impl WriteVerifyStats {
    /// Adds another layer's counts.
    pub fn add(&mut self, other: &WriteVerifyStats) {
        self.cross_points += other.cross_points;
        self.converged += other.converged;
        self.pulses += other.pulses;
        self.writes += other.writes;
        self.reads += other.reads;
    }
}

/// Calibration inputs of a drift reference read ([`Crossbar::reference_read`]).
pub const CALIBRATION_VECTORS: usize = 64;

/// Seed of the calibration inputs (fixed: the reads at programming and at
/// the time of the reads must see the same inputs).
const CALIBRATION_SEED: u64 = 0xD81F_7A2C_3B49_E605;

impl Crossbar {
    /// Number of devices (both of each differential pair).
    fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Programs `weights` and `bias` as [`WeightArray::set_parameters`]
    /// does, then gives every device the model's programming error
    /// (`program_noise_us`; [`crate::devices::ProgramNoise`]): a device
    /// aimed at `g_T` ends at `g_T + σ_prog(g_T) ξ` (clipped to its
    /// bounds, rounded to its levels), its drift clock restarted. Without
    /// programming error this is `set_parameters`.
    pub fn program_with_error(&mut self, weights: &Mat, bias: &Vector, rng: &mut NoiseRng) {
        self.program(weights, bias);
        if self.model.inference.program.is_none() {
            return;
        }
        for i in 0..self.device_count() {
            if self.devices.is_stuck(i) {
                continue;
            }
            let target = self.devices.conductance(i);
            let sigma = self.model.program_sigma(target);
            self.devices.program(i, target + sigma * normal(rng));
        }
        self.refresh_cache();
    }

    /// Programs `weights` and `bias` by write and verify: first as
    /// [`Crossbar::program_with_error`], then per cross-point a verify read
    /// (each device read as `G(1 + σ ξ)` with the model's `read_noise`) and,
    /// while `|e| = |w_target − w_read| > tolerance · w_scale`, a write of
    /// `n` pulses towards the target. A controller that knows the device
    /// model expects one pulse to move the weight by `μ` (the pulse weight
    /// times the step response at the devices' states) with cycle-to-cycle
    /// variance `s²`, so `n` pulses leave an expected squared error
    /// `(|e| − nμ)² + n s²`; it sends the `n` that minimises it,
    /// `round((|e| − s²/(2μ))/μ)` (at most a full range), and stops when
    /// that is 0: no whole number of pulses is expected to bring the weight
    /// closer (a device whose single pulse is coarser than twice the error,
    /// or noisier than it). A one-sided pair raises `G⁺` or `G⁻` only. Every
    /// pulse goes through the device's pulse response with its
    /// cycle-to-cycle noise and is counted in the device's wear. Errors for
    /// a device without a finite pulse (`ideal`).
    pub fn write_verify(
        &mut self,
        weights: &Mat,
        bias: &Vector,
        settings: &WriteVerify,
        rng: &mut NoiseRng,
    ) -> Result<WriteVerifyStats> {
        let dw = self.pulse_weight();
        if !(dw > 0.0 && dw.is_finite()) {
            bail!(
                "write_verify needs a device with a finite pulse (device model '{}' has Δw = {dw}); use --program fresh",
                self.model.name
            );
        }
        self.program_with_error(weights, bias, rng);
        let tolerance = settings.tolerance * self.config.w_scale;
        let max_pulses = (1.0 / self.model.nominal_step()).ceil().max(1.0) as i32;
        let mut stats = WriteVerifyStats::default();
        let n_out = self.n_out;
        for idx in 0..n_out * (self.n_in + 1) {
            let (i, j) = (idx % n_out, idx / n_out);
            let target = if j < self.n_in {
                weights[(i, j)]
            } else {
                bias[i]
            };
            stats.cross_points += 1;
            for step in 0..=settings.max_iterations {
                stats.reads += 1;
                let error = target - self.verify_read(idx, rng);
                if error.abs() <= tolerance {
                    stats.converged += 1;
                    break;
                }
                if step == settings.max_iterations {
                    break;
                }
                let up = error > 0.0;
                let (mean, variance) = self.pulse_moments(idx, up);
                if mean.is_nan() || mean <= 0.0 {
                    break;
                }
                let best = ((error.abs() - variance / (2.0 * mean)) / mean).round();
                if best.is_nan() || best < 1.0 {
                    break;
                }
                let count = best.min(max_pulses as f32) as i32;
                let n = if up { count } else { -count };
                stats.writes += 1;
                stats.pulses += self.pulse_crosspoint(idx, n);
            }
        }
        self.refresh_cache();
        Ok(stats)
    }

    /// One verify read of cross-point `idx`: its two devices (or device
    /// and reference) each read as `G(1 + σ ξ)`, σ the model's `read_noise`.
    fn verify_read(&self, idx: usize, rng: &mut NoiseRng) -> f32 {
        let [g0, g1] = self.crosspoint_reads(idx);
        let sigma = self.model.noise.read;
        if sigma == 0.0 {
            return self.map_factor() * self.config.w_scale * (g0 - g1);
        }
        let o = self.model.conductance_offset();
        let read = |g: f32, rng: &mut NoiseRng| (g + o) * (1.0 + sigma * normal(rng));
        let (a, b) = (read(g0, rng), read(g1, rng));
        self.map_factor() * self.config.w_scale * (a - b)
    }

    /// The expected weight change `μ` (magnitude) of one pulse event of
    /// sign `up` on cross-point `idx`, and its cycle-to-cycle variance
    /// `s²`, from the model's nominal step, its step response at each moved
    /// device's state and its cycle-to-cycle noise
    /// `σ (b + c2c_add + c2c_slope |g − g_c|)`, `b` the step (multiplicative)
    /// or the nominal step (additive); weight units.
    fn pulse_moments(&self, idx: usize, up: bool) -> (f32, f32) {
        let unit = self.map_factor() * self.config.w_scale;
        let step = self.model.nominal_step();
        let noise = &self.model.noise;
        let center = self.model.bounds.g_center;
        let device = |i: usize, device_up: bool| {
            let (lo, hi) = self.devices.bounds(i);
            let g = self.devices.conductance(i);
            let f = self
                .model
                .response_factor_at(Position::new(g, lo, hi), device_up);
            let base = if noise.c2c_multiplicative {
                step * f
            } else {
                step
            };
            let sigma = noise.c2c * (base + noise.c2c_add + noise.c2c_slope * (g - center).abs());
            (unit * step * f, (unit * sigma).powi(2))
        };
        let moved: &[(usize, bool)] = if !self.paired {
            &[(idx, up)]
        } else {
            match (self.model.pairing.one_sided, up) {
                (true, true) => &[(2 * idx, true)],
                (true, false) => &[(2 * idx + 1, true)],
                (false, _) => &[(2 * idx, up), (2 * idx + 1, !up)],
            }
        };
        moved.iter().fold((0.0, 0.0), |(m, v), &(i, u)| {
            let (dm, dv) = device(i, u);
            (m + dm, v + dv)
        })
    }

    /// Delivers the pulse event `n` to cross-point `idx` (a pair's split as
    /// in training); returns the device pulses delivered.
    fn pulse_crosspoint(&mut self, idx: usize, n: i32) -> u64 {
        if !self.paired {
            self.devices.pulse(idx, n);
            return n.unsigned_abs() as u64;
        }
        let (n_plus, n_minus) = pair_pulses(n, self.model.pairing.one_sided);
        self.devices.pulse_pair(idx, n_plus, n_minus);
        (n_plus.unsigned_abs() + n_minus.unsigned_abs()) as u64
    }

    /// Starts the read- and output-noise stream anew from `seed` (one
    /// stream per inference seed).
    pub fn reseed_read_noise(&mut self, seed: u64) {
        self.read_rng = NoiseRng::seed_from_u64(seed);
    }

    /// Freezes the 1/f read noise accumulated since programming into the
    /// read caches, as aihwkit's PCMLikeNoiseModel does at each inference
    /// time: every device reads `G(t)(1 + σ(t) ξ)`, one ξ per device, with
    /// σ(t) of [`crate::devices::ReadNoiseGrowth`] at its time since write
    /// and programmed conductance. The reads until the next clock advance
    /// or write see it (the per-read `read_noise` still comes on top).
    /// Rebuilds the caches from the devices first, so an earlier frozen
    /// draw is gone; without `read_noise_1f_*` only that.
    pub fn freeze_accumulated_read_noise(&mut self, rng: &mut NoiseRng) {
        self.refresh_cache();
        if self.model.inference.read_growth.is_none() {
            return;
        }
        let o = self.model.conductance_offset();
        let weight = self.map_factor() * self.config.w_scale;
        let squared = weight * weight;
        let noisy = self.model.noise.read > 0.0;
        let perturbed = |xb: &Crossbar, i: usize, rng: &mut NoiseRng| {
            let sigma = xb
                .model
                .accumulated_read_sigma(xb.devices.conductance(i), xb.devices.time_since_write(i));
            let g = xb.devices.visible(i);
            if sigma > 0.0 {
                (g + o) * (1.0 + sigma * normal(rng)) - o
            } else {
                g
            }
        };
        for idx in 0..self.n_out * (self.n_in + 1) {
            let (g0, g1) = if self.paired {
                (
                    perturbed(self, 2 * idx, rng),
                    perturbed(self, 2 * idx + 1, rng),
                )
            } else {
                (perturbed(self, idx, rng), self.reference[idx / self.n_out])
            };
            let s = noisy.then(|| squared * ((g0 + o).powi(2) + (g1 + o).powi(2)));
            self.store_entry(idx, weight * (g0 - g1), s);
        }
        self.line_conductance_valid = false;
        // The kept repeat read holds the unperturbed product.
        self.generation += 1;
    }

    /// The reference read of drift compensation: forward reads of a fixed
    /// calibration set, [`CALIBRATION_VECTORS`] random ±1 inputs `s_k`
    /// (the same set at every read, drawn from a fixed seed) and their
    /// negatives, through the same DAC, read and output noise and ADC as
    /// any read; `d_k = (y(s_k) − y(−s_k))/2 = W s_k + noise`, the bias
    /// column (which every forward read drives) cancelling. An
    /// `n_out × K` reading of the weights as the periphery sees them. Each
    /// `d_ik` sums all `n_in` weights of line `i`, so the reading is well
    /// above the output noise (a one-hot input, aihwkit's readout, reads
    /// one weight per read and is lost in it for small weights; an all-ones
    /// input reads a line's sum, which may be near 0).
    pub fn reference_read(&mut self) -> Mat {
        let (n_in, k) = (self.n_in, CALIBRATION_VECTORS);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(CALIBRATION_SEED);
        let signs = Mat::from_fn(n_in, k, |_, _| if rng.gen::<bool>() { 1.0 } else { -1.0 });
        let x = Mat::from_fn(n_in, 2 * k, |r, c| {
            if c < k {
                signs[(r, c)]
            } else {
                -signs[(r, c - k)]
            }
        });
        let mut y = Mat::zeros(self.n_out, 2 * k);
        self.forward(&x, &mut y);
        Mat::from_fn(self.n_out, k, |i, c| 0.5 * (y[(i, c)] - y[(i, c + k)]))
    }

    /// The reference of drift compensation, taken right after programming:
    /// two independent [`Crossbar::reference_read`]s.
    pub fn drift_reference(&mut self) -> DriftReference {
        DriftReference {
            first: self.reference_read(),
            second: self.reference_read(),
        }
    }

    /// A copy of this crossbar's settings for inference: the same resolved
    /// `w_scale` and periphery, with plain `sgd` (inference reads only the
    /// weight devices; a Tiki-Taka fast array would only be calibrated
    /// for nothing).
    pub fn inference_config(&self) -> super::CrossbarConfig {
        let mut c = self.config.clone();
        c.algorithm = super::Algorithm::Sgd;
        c
    }
}

/// Drift compensation's reading of a layer at programming time: two
/// independent reference reads `A`, `A'` ([`Crossbar::drift_reference`]).
#[derive(Clone, Debug)]
pub struct DriftReference {
    first: Mat,
    second: Mat,
}

impl DriftReference {
    /// The output scales that undo the drift seen in the reference read
    /// `now` (`B`, taken at the time of the reads): one for the layer
    /// (`per_line = false`) or one per output line, each `1/f̂` with
    /// `f̂ = Σ A_ik B_ik / Σ A_ik A'_ik` over the layer or over line `i`.
    /// If the weights drift by a factor `f`, `B = f W s + noise`, and both
    /// sums are unbiased (each pairs independent reads), so `f̂ → f`
    /// however large the noise of one read; a ratio of mean |y|, which
    /// aihwkit's GlobalDriftCompensation takes, is pulled towards 1 when
    /// that noise is comparable to the reading. A line whose reference is
    /// lost in the noise (`Σ A A' ≤ 0`) or an `f̂` that is not positive
    /// keeps the scale 1.
    pub fn gains(&self, now: &Mat, per_line: bool) -> Vec<f32> {
        let (a, a2) = (&self.first, &self.second);
        assert_eq!(a.shape(), now.shape(), "reference reads of one layer");
        let n_out = a.nrows();
        let mut cross = vec![0.0f64; n_out];
        let mut own = vec![0.0f64; n_out];
        for j in 0..a.ncols() {
            for i in 0..n_out {
                let (x, y, z) = (a[(i, j)] as f64, now[(i, j)] as f64, a2[(i, j)] as f64);
                cross[i] += x * y;
                own[i] += x * z;
            }
        }
        let gain = |cross: f64, own: f64| {
            let f = cross / own;
            if own > 0.0 && f > 0.0 && f.is_finite() {
                (1.0 / f) as f32
            } else {
                1.0
            }
        };
        if per_line {
            cross.iter().zip(&own).map(|(c, o)| gain(*c, *o)).collect()
        } else {
            vec![gain(cross.iter().sum(), own.iter().sum())]
        }
    }
}
