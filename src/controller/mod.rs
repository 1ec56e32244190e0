//! The on-chip learning controller: turns the local signals of a layer into
//! device pulses (DESIGN.md §4).
//!
//! The learning rule hands over a factored gradient `∇W = c · L Rᵀ`
//! (for DP/DP⊤ `L = δ_k`, `R = s̄_{k−1}`, `c = −1/(Bβ)`); the controller
//! realises the SGD step `ΔW = −η ∇W` in weight units, where one pulse
//! event moves a weight by the nominal `Δw` of the crossbar's mapping
//! (see [`crate::substrate::crossbar`]). The bias is column `n_in` of the
//! array, driven at the constant input `bias_input`.
//!
//! Write schemes, from most hardware-realistic to least:
//! - [`WriteScheme::Stochastic`]: Gokmen & Vlasov (2016) coincident
//!   stochastic pulse trains. Row `i` fires each of `BL` slots with
//!   probability `p_i = k_L |L_i|`, column `j` with `q_j = k_R |R_j|`,
//!   `k_L k_R BL = η|c|/Δw`, so the expected number of coincidences
//!   `BL p_i q_j = |ΔW_ij|/Δw` (unbiased). The count per device is drawn
//!   directly as `Binomial(BL, p_i q_j)` (no bit simulation; the row-sharing
//!   correlation between devices of one row is not modelled), with the
//!   sign of `−c L_i R_j`. *Update management* (aihwkit's default) balances
//!   `k_L/k_R = √(max|R|/max|L|)`; probabilities above 1 are clipped (and
//!   counted). Zero-probability rows/columns are skipped and low-probability
//!   columns are sampled by geometric skipping with thinning, so the cost
//!   is O(rows + pulses), not O(devices), per sample.
//! - [`WriteScheme::MixedPrecision`]: Nandakumar et al. (2018): a digital
//!   accumulator `χ_ij += ΔW_ij` per weight; whole pulses
//!   `n = trunc(χ/Δw)` fire and `χ −= n Δw` (the device's actual,
//!   noisy response is not verified).
//! - [`WriteScheme::Exact`]: the ideal pulse count `n = round(ΔW/Δw)`;
//!   on a continuous (`ideal`, `Δw = 0`) device the exact real-valued
//!   change.
//!
//! With [`UpdateGranularity::PerSample`] every sample's rank-1 update is a
//! separate pulse phase (the device sees the intermediate states); with
//! [`UpdateGranularity::PerBatch`] the batch's update is applied once.

use crate::linalg::{gemm, Mat, Op};
use crate::substrate::OuterProductGradient;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How weight updates become pulses.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum WriteScheme {
    /// Coincident stochastic pulse trains of length BL (Gokmen & Vlasov 2016).
    #[default]
    Stochastic,
    /// Digital accumulator per weight firing whole pulses (Nandakumar et al. 2018).
    #[serde(alias = "mixed-precision")]
    MixedPrecision,
    /// Ideal pulse counts, rounded.
    Exact,
}

/// Whether each sample or each batch is a pulse phase.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdateGranularity {
    /// One pulse phase per sample (rank-1 updates in sequence).
    #[default]
    #[serde(alias = "per-sample")]
    PerSample,
    /// One pulse phase per batch (counts summed over the batch).
    #[serde(alias = "per-batch")]
    PerBatch,
}

/// `|n|` pulses on the device pair at `index` (column-major, bias column last),
/// up (weight increases) for `n > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PulseEvent {
    /// Device index `i + j·n_out`.
    pub index: u32,
    /// Signed number of pulse events.
    pub pulses: i32,
}

/// What the controller asks the array to do for one update.
#[derive(Clone, Debug, PartialEq)]
pub enum WritePlan {
    /// Pulse events, in the order they are to be applied.
    Pulses(Vec<PulseEvent>),
    /// Exact weight changes per device (continuous devices only), dense
    /// column-major `n_out × (n_in + 1)`.
    Analog(Vec<f32>),
}

/// Counters of the controller's work (for `hardware_summary`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ControllerStats {
    /// Update calls (batches).
    pub updates: u64,
    /// Pulse phases (samples or batches).
    pub pulse_phases: u64,
    /// Row/column probabilities clipped at 1 (stochastic).
    pub clipped_probabilities: u64,
    /// Sum of requested |ΔW|/Δw over all devices (ideal pulse budget).
    pub requested_pulse_events: f64,
}

/// The controller of one crossbar.
#[derive(Clone, Debug)]
pub struct Controller {
    scheme: WriteScheme,
    granularity: UpdateGranularity,
    bl: u32,
    update_management: bool,
    lr: f32,
    /// Weight change per pulse event (0 = continuous device).
    dw: f32,
    bias_input: f32,
    n_out: usize,
    n_in: usize,
    /// Mixed-precision accumulator χ (weight units, dense, bias column last).
    accumulator: Vec<f32>,
    /// Dense ΔW buffer (exact, mixed, per-batch stochastic counts).
    delta: Mat,
    counts: Vec<i32>,
    /// Row probabilities and probability buckets of the current sample (scratch).
    row_probability: Vec<f64>,
    buckets: Vec<Vec<u32>>,
    event_buffer: Vec<PulseEvent>,
    rng: ChaCha8Rng,
    stats: ControllerStats,
}

impl Controller {
    /// A controller for an `n_out × n_in` array (plus bias column).
    ///
    /// `dw` is the nominal weight change of one pulse event, `lr` the
    /// learning rate η in weight units.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scheme: WriteScheme,
        granularity: UpdateGranularity,
        bl: u32,
        update_management: bool,
        lr: f32,
        dw: f32,
        bias_input: f32,
        n_out: usize,
        n_in: usize,
        seed: u64,
    ) -> Self {
        let n = n_out * (n_in + 1);
        Self {
            scheme,
            granularity,
            bl: bl.max(1),
            update_management,
            lr,
            dw,
            bias_input,
            n_out,
            n_in,
            accumulator: if scheme == WriteScheme::MixedPrecision {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            delta: Mat::zeros(0, 0),
            counts: Vec::new(),
            row_probability: Vec::new(),
            buckets: Vec::new(),
            event_buffer: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats: ControllerStats::default(),
        }
    }

    /// The write scheme.
    pub fn scheme(&self) -> WriteScheme {
        self.scheme
    }

    /// Weight change per pulse event.
    pub fn pulse_weight(&self) -> f32 {
        self.dw
    }

    /// Work counters.
    pub fn stats(&self) -> &ControllerStats {
        &self.stats
    }

    /// Mixed-precision accumulator (empty for other schemes).
    pub fn accumulator(&self) -> &[f32] {
        &self.accumulator
    }

    /// Restores the mixed-precision accumulator.
    pub fn set_accumulator(&mut self, acc: &[f32]) -> anyhow::Result<()> {
        if acc.len() != self.accumulator.len() {
            anyhow::bail!(
                "accumulator has {} entries, this controller {}",
                acc.len(),
                self.accumulator.len()
            );
        }
        self.accumulator.copy_from_slice(acc);
        Ok(())
    }

    /// Hands back the event list of a [`WritePlan::Pulses`] for reuse (large
    /// fresh allocations would page-fault on every update).
    pub fn recycle(&mut self, events: Vec<PulseEvent>) {
        self.event_buffer = events;
    }

    /// Plans the writes for the SGD step `ΔW = −η ∇W` of `grad`.
    pub fn plan(&mut self, grad: &OuterProductGradient) -> WritePlan {
        assert_eq!(grad.left.nrows(), self.n_out, "controller: gradient rows");
        assert_eq!(
            grad.right.nrows(),
            self.n_in,
            "controller: gradient columns"
        );
        assert_eq!(grad.left.ncols(), grad.right.ncols(), "controller: batch");
        self.stats.updates += 1;
        if self.dw <= 0.0 {
            // Continuous device: only exact writes are meaningful (checked in config).
            self.dense_delta(grad);
            self.stats.pulse_phases += 1;
            return WritePlan::Analog(self.delta_with_bias(grad));
        }
        let mut events = std::mem::take(&mut self.event_buffer);
        events.clear();
        match (self.scheme, self.granularity) {
            (WriteScheme::Stochastic, UpdateGranularity::PerSample) => {
                for b in 0..grad.left.ncols() {
                    self.stochastic_sample(grad, b, &mut events);
                    self.stats.pulse_phases += 1;
                }
            }
            (WriteScheme::Stochastic, UpdateGranularity::PerBatch) => {
                let mut sample_events = Vec::new();
                self.counts.clear();
                self.counts.resize(self.n_out * (self.n_in + 1), 0);
                for b in 0..grad.left.ncols() {
                    sample_events.clear();
                    self.stochastic_sample(grad, b, &mut sample_events);
                    for e in &sample_events {
                        self.counts[e.index as usize] += e.pulses;
                    }
                }
                self.stats.pulse_phases += 1;
                collect_events(&self.counts, &mut events);
            }
            (scheme, UpdateGranularity::PerSample) => {
                for b in 0..grad.left.ncols() {
                    let single = OuterProductGradient {
                        left: grad.left.columns(b, 1).into_owned(),
                        right: grad.right.columns(b, 1).into_owned(),
                        scale: grad.scale,
                    };
                    self.dense_delta(&single);
                    let delta = self.delta_with_bias(&single);
                    self.dense_events(scheme, &delta, &mut events);
                    self.stats.pulse_phases += 1;
                }
            }
            (scheme, UpdateGranularity::PerBatch) => {
                self.dense_delta(grad);
                let delta = self.delta_with_bias(grad);
                self.dense_events(scheme, &delta, &mut events);
                self.stats.pulse_phases += 1;
            }
        }
        WritePlan::Pulses(events)
    }

    /// `delta ← −η · c · L Rᵀ` (`n_out × n_in`), one SGEMM.
    fn dense_delta(&mut self, grad: &OuterProductGradient) {
        crate::linalg::ensure_shape(&mut self.delta, self.n_out, self.n_in);
        // Same operation order as the digital SGD step (g = c·L Rᵀ, then η·g),
        // so that exact writes on ideal devices match it bit for bit.
        gemm(
            grad.scale,
            &grad.left,
            Op::N,
            &grad.right,
            Op::T,
            0.0,
            &mut self.delta,
        );
        for v in self.delta.iter_mut() {
            *v = -(self.lr * *v);
        }
    }

    /// The dense ΔW with the bias column appended (bias ΔW_i = −η c Σ_b L_ib · bias_input).
    fn delta_with_bias(&self, grad: &OuterProductGradient) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n_out * (self.n_in + 1));
        out.extend_from_slice(self.delta.as_slice());
        let gb = grad.bias_gradient();
        for g in gb.iter() {
            let g = if self.bias_input == 1.0 {
                *g
            } else {
                *g * self.bias_input
            };
            out.push(-(self.lr * g));
        }
        out
    }

    /// Pulse counts from a dense ΔW (exact or mixed precision), whole-array
    /// pass split over input lines with rayon.
    fn dense_events(&mut self, scheme: WriteScheme, delta: &[f32], events: &mut Vec<PulseEvent>) {
        let dw = self.dw;
        let n_out = self.n_out.max(1);
        self.counts.clear();
        self.counts.resize(delta.len(), 0);
        self.stats.requested_pulse_events +=
            delta.iter().map(|d| (d.abs() / dw) as f64).sum::<f64>();
        match scheme {
            WriteScheme::Exact | WriteScheme::Stochastic => {
                self.counts
                    .par_chunks_mut(n_out * 64)
                    .zip(delta.par_chunks(n_out * 64))
                    .for_each(|(c, d)| {
                        for (ci, di) in c.iter_mut().zip(d) {
                            *ci = (di / dw).round() as i32;
                        }
                    });
            }
            WriteScheme::MixedPrecision => {
                self.counts
                    .par_chunks_mut(n_out * 64)
                    .zip(self.accumulator.par_chunks_mut(n_out * 64))
                    .zip(delta.par_chunks(n_out * 64))
                    .for_each(|((c, acc), d)| {
                        for ((ci, chi), di) in c.iter_mut().zip(acc.iter_mut()).zip(d) {
                            *chi += di;
                            let n = (*chi / dw).trunc();
                            *chi -= n * dw;
                            *ci = n as i32;
                        }
                    });
            }
        }
        collect_events(&self.counts, events);
    }

    /// Stochastic coincidence counts of sample `b`, appended to `events`.
    ///
    /// Rows are grouped into buckets of row probability within a factor 2
    /// (`p ∈ (p_max 2^{−k−1}, p_max 2^{−k}]`); in each column and bucket the
    /// devices with ≥ 1 coincidence are found by geometric skipping at the
    /// bucket's top rate and thinning, so every candidate is accepted with
    /// probability ≥ ~½ and the cost is O(buckets + pulses) per column.
    fn stochastic_sample(
        &mut self,
        grad: &OuterProductGradient,
        b: usize,
        events: &mut Vec<PulseEvent>,
    ) {
        let left = grad.left.column(b);
        let right = grad.right.column(b);
        let n_out = self.n_out;
        let bl = self.bl;
        let l_max = left.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let r_max = right
            .iter()
            .fold(self.bias_input.abs(), |m, v| m.max(v.abs()));
        if l_max == 0.0 || r_max == 0.0 || !l_max.is_finite() || !r_max.is_finite() {
            return;
        }
        // Expected coincidences BL·p_i·q_j must equal |ΔW_ij|/Δw = c·|L_i||R_j|.
        let c = (self.lr * grad.scale.abs() / self.dw) as f64;
        let base = (c / bl as f64).sqrt();
        let (k_l, k_r) = if self.update_management {
            let m = ((r_max / l_max) as f64).sqrt();
            (base * m, base / m)
        } else {
            (base, base)
        };
        // Sign of ΔW_ij = −c·L_i·R_j.
        let sign_scale = if grad.scale > 0.0 { -1i32 } else { 1 };
        let mut clipped = 0u64;
        let mut p = std::mem::take(&mut self.row_probability);
        p.clear();
        for v in left.iter() {
            let pi = k_l * v.abs() as f64;
            if pi > 1.0 {
                clipped += 1;
            }
            p.push(pi.min(1.0));
        }
        let p_max = p.iter().fold(0.0f64, |m, &v| m.max(v));
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.resize_with(BUCKETS, Vec::new);
        for bucket in buckets.iter_mut() {
            bucket.clear();
        }
        for (i, &pi) in p.iter().enumerate() {
            if pi > 0.0 {
                let k = ((p_max / pi).log2().floor().max(0.0) as usize).min(BUCKETS - 1);
                buckets[k].push(i as u32);
            }
        }
        let sum_left: f64 = left.iter().map(|v| v.abs() as f64).sum();
        // Upper bound of the row probabilities in each bucket.
        let bucket_top: [f64; BUCKETS] = std::array::from_fn(|k| p_max * 0.5f64.powi(k as i32));
        let mut requested = 0.0f64;
        for j in 0..=self.n_in {
            let rj = if j < self.n_in {
                right[j]
            } else {
                self.bias_input
            };
            if rj == 0.0 {
                continue;
            }
            let mut qj = k_r * rj.abs() as f64;
            if qj > 1.0 {
                clipped += 1;
                qj = 1.0;
            }
            requested += c * rj.abs() as f64 * sum_left;
            let col_sign = if rj > 0.0 { sign_scale } else { -sign_scale };
            let offset = (j * n_out) as u32;
            for (k, rows) in buckets.iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                let bound = (bucket_top[k] * qj).min(1.0);
                let r_top = 1.0 - pow_u32(1.0 - bound, bl);
                if r_top <= 0.0 {
                    continue;
                }
                if r_top > 0.5 {
                    // Dense: one uniform per device.
                    for &i in rows {
                        let u: f64 = self.rng.gen();
                        let n = binomial_inverse(u, bl, p[i as usize] * qj);
                        if n > 0 {
                            let s = if left[i as usize] > 0.0 {
                                col_sign
                            } else {
                                -col_sign
                            };
                            events.push(PulseEvent {
                                index: offset + i,
                                pulses: s * n as i32,
                            });
                        }
                    }
                    continue;
                }
                // Geometric skip lengths in single precision: only their
                // integer part matters and f32 `ln` is several times cheaper.
                let inv_log_miss = (1.0 / (1.0 - r_top).ln()) as f32;
                let mut pos = 0usize;
                loop {
                    let u: f32 = self.rng.gen();
                    let skip = ((1.0 - u).ln() * inv_log_miss).floor();
                    // NaN (u = 0 edge) or past the end: no more candidates.
                    if skip.is_nan() || skip >= (rows.len() - pos) as f32 {
                        break;
                    }
                    pos += skip as usize;
                    let i = rows[pos];
                    let pij = p[i as usize] * qj;
                    let p_zero = pow_u32(1.0 - pij, bl);
                    let r_i = 1.0 - p_zero;
                    let accept = self.rng.gen::<f64>() * r_top;
                    if accept < r_i {
                        // Given acceptance, accept/r_i is uniform on [0, 1), so
                        // (1 − r_i) + accept lands uniformly in the n ≥ 1 part
                        // of the CDF: one draw serves both decisions.
                        let n = binomial_inverse_from(p_zero + accept, bl, pij, p_zero).max(1);
                        let s = if left[i as usize] > 0.0 {
                            col_sign
                        } else {
                            -col_sign
                        };
                        events.push(PulseEvent {
                            index: offset + i,
                            pulses: s * n as i32,
                        });
                    }
                    pos += 1;
                    if pos >= rows.len() {
                        break;
                    }
                }
            }
        }
        self.row_probability = p;
        self.buckets = buckets;
        self.stats.clipped_probabilities += clipped;
        self.stats.requested_pulse_events += requested;
    }
}

/// Number of row-probability buckets (factor 2 apart) of the stochastic sampler.
const BUCKETS: usize = 24;

/// `x^n` by repeated squaring (inlined; `powi` is an out-of-line call).
#[inline]
fn pow_u32(mut x: f64, mut n: u32) -> f64 {
    let mut acc = 1.0;
    while n > 0 {
        if n & 1 == 1 {
            acc *= x;
        }
        x *= x;
        n >>= 1;
    }
    acc
}

/// Non-zero counts as events, in index order.
fn collect_events(counts: &[i32], events: &mut Vec<PulseEvent>) {
    events.extend(
        counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n != 0)
            .map(|(i, &n)| PulseEvent {
                index: i as u32,
                pulses: n,
            }),
    );
}

/// Inverse CDF of `Binomial(n, p)` at `u ∈ [0, 1)`: the smallest `k` with
/// `P(X ≤ k) > u`, by the pmf recurrence `P(k+1) = P(k)·(n−k)/(k+1)·p/(1−p)`.
pub fn binomial_inverse(u: f64, n: u32, p: f64) -> u32 {
    binomial_inverse_from(u, n, p, pow_u32(1.0 - p, n))
}

/// [`binomial_inverse`] with `P(X = 0) = (1 − p)^n` already known.
fn binomial_inverse_from(u: f64, n: u32, p: f64, p_zero: f64) -> u32 {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let q = 1.0 - p;
    let ratio = p / q;
    let mut pmf = p_zero;
    let mut cdf = pmf;
    let mut k = 0u32;
    while u >= cdf && k < n {
        pmf *= (n - k) as f64 / (k + 1) as f64 * ratio;
        k += 1;
        cdf += pmf;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_inverse_has_the_binomial_mean_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, p) = (31u32, 0.07f64);
        let draws: Vec<f64> = (0..200_000)
            .map(|_| binomial_inverse(rng.gen(), n, p) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(
            (mean - n as f64 * p).abs() < 0.01 * n as f64 * p + 0.01,
            "mean {mean}"
        );
        let v_true = n as f64 * p * (1.0 - p);
        assert!(
            (var - v_true).abs() < 0.03 * v_true,
            "var {var} vs {v_true}"
        );
    }

    /// The sparse (thinning) and dense column samplers must realise the
    /// same expected counts: E[n_ij] = BL p_i q_j = |ΔW_ij|/Δw.
    #[test]
    fn stochastic_counts_are_unbiased_in_both_sampling_regimes() {
        for &lr in &[0.0005f32, 0.05] {
            let (n_out, n_in) = (6, 5);
            let left = Mat::from_column_slice(n_out, 1, &[0.5, -1.0, 0.25, 0.0, 2.0, -0.125]);
            let right = Mat::from_column_slice(n_in, 1, &[1.0, 0.0, -0.5, 0.3, 0.9]);
            let grad = OuterProductGradient {
                left,
                right,
                scale: -1.0,
            };
            let dw = 0.01;
            let mut ctl = Controller::new(
                WriteScheme::Stochastic,
                UpdateGranularity::PerSample,
                31,
                true,
                lr,
                dw,
                1.0,
                n_out,
                n_in,
                11,
            );
            let mut sums = vec![0f64; n_out * (n_in + 1)];
            let reps = 40_000;
            for _ in 0..reps {
                if let WritePlan::Pulses(ev) = ctl.plan(&grad) {
                    for e in ev {
                        sums[e.index as usize] += e.pulses as f64;
                    }
                }
            }
            for j in 0..=n_in {
                for i in 0..n_out {
                    let r = if j < n_in { grad.right[(j, 0)] } else { 1.0 };
                    let expected = lr * grad.left[(i, 0)] * r / dw; // −η·c·L·R/Δw with c = −1
                    let got = sums[i + j * n_out] / reps as f64;
                    let tol = 0.03 * expected.abs() as f64 + 0.002;
                    assert!(
                        (got - expected as f64).abs() < tol,
                        "lr {lr} ({i},{j}): mean {got} vs {expected}"
                    );
                }
            }
        }
    }
}
