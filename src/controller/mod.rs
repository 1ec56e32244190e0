//! The on-chip learning controller: turns the local signals of a layer into
//! device pulses (DESIGN.md §4).
//!
//! The learning rule hands over a factored gradient `∇W = c · L Rᵀ`
//! (for DP/DP⊤ `L = δ_k`, `R = s̄_{k−1}`, `c = −1/(Bβ)`); the controller
//! realises the SGD step `ΔW = −η ∇W` in weight units, where one pulse
//! event moves a weight by the nominal `Δw` of the crossbar's mapping
//! (see the `crossbar` module). The bias is column `n_in` of the
//! array, driven at the constant input `bias_input`.
//!
//! Write schemes, from most hardware-realistic to least:
//! - [`WriteScheme::Stochastic`]: Gokmen & Vlasov (2016) coincident
//!   stochastic pulse trains. Row `i` fires each of `BL` slots with
//!   probability `p_i = k_L |L_i|`, column `j` with `q_j = k_R |R_j|`,
//!   `k_L k_R BL = η|c|/Δw`, so the expected number of coincidences
//!   `BL p_i q_j = |ΔW_ij|/Δw` (unbiased), with the sign of `−c L_i R_j`.
//!   *Update management* (aihwkit's default) balances
//!   `k_L/k_R = √(max|R|/max|L|)`; probabilities above 1 are clipped (and
//!   counted). Two samplers ([`PulseTrains`]), both `Binomial(BL, p_i q_j)`
//!   per device:
//!   - `shared` (default, the chip): every line draws one bit-packed train
//!     per pulse phase and a device counts the slots where both its lines
//!     fire, so devices on a line are correlated as in hardware (and in
//!     aihwkit); see [`trains`]. Cost O(lines · log BL + coincidences).
//!   - `independent`: each device's count is drawn on its own (no
//!     correlation). Rows and columns are bucketed by probability and each
//!     bucket pair is sampled by geometric skipping with thinning, so the
//!     cost is O(rows + columns + pulses), not O(devices), per sample.
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

pub mod trains;

pub use trains::PulseTrains;
use trains::{LineTrains, SlotIndex};

use crate::kernels::trains::line_sign;
use crate::linalg::{max_abs_slice, Mat};
use crate::substrate::OuterProductGradient;
use rand::{Rng, SeedableRng};
use rand_distr::Exp1;
use rand_xoshiro::Xoshiro256PlusPlus;
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

impl WriteScheme {
    /// The name used in configuration files (`crossbar.write`).
    pub const fn name(self) -> &'static str {
        match self {
            WriteScheme::Stochastic => "stochastic",
            WriteScheme::MixedPrecision => "mixed_precision",
            WriteScheme::Exact => "exact",
        }
    }
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

/// The controller's unit of work (defined with the devices it drives).
pub use crate::devices::PulseEvent;

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
    /// Pulse time slots of all stochastic pulse phases: BL per phase, or the
    /// managed bit length with BL management (the write time of the updates
    /// is this times the pulse width).
    #[serde(default)]
    pub pulse_slots: u64,
}

/// The controller of one crossbar.
#[derive(Clone, Debug)]
pub struct Controller {
    scheme: WriteScheme,
    granularity: UpdateGranularity,
    bl: u32,
    update_management: bool,
    /// Shorten each sample's trains to the bits its largest update needs
    /// (aihwkit's `update_bl_management`); `bl` is then the maximum.
    bl_management: bool,
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
    /// Row and column probability buckets of the current sample (scratch).
    row_buckets: ProbabilityBuckets,
    column_buckets: ProbabilityBuckets,
    /// Whether devices share their lines' trains (stochastic).
    trains: PulseTrains,
    /// Row and column pulse trains of the current sample (shared trains).
    row_trains: LineTrains,
    column_trains: LineTrains,
    slot_index: SlotIndex,
    event_buffer: Vec<PulseEvent>,
    rng: Xoshiro256PlusPlus,
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
            bl_management: false,
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
            row_buckets: ProbabilityBuckets::default(),
            column_buckets: ProbabilityBuckets::default(),
            trains: PulseTrains::default(),
            row_trains: LineTrains::default(),
            column_trains: LineTrains::default(),
            slot_index: SlotIndex::default(),
            event_buffer: Vec::new(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            stats: ControllerStats::default(),
        }
    }

    /// An empty controller of no array, to stand in while the real one is
    /// borrowed elsewhere (see the crossbar's write pipeline).
    pub fn placeholder() -> Self {
        Self::new(
            WriteScheme::Exact,
            UpdateGranularity::PerBatch,
            1,
            false,
            0.0,
            0.0,
            0.0,
            0,
            0,
            0,
        )
    }

    /// The same controller with stochastic pulse trains shared along lines
    /// (the default) or independent per device.
    pub fn with_pulse_trains(mut self, trains: PulseTrains) -> Self {
        self.trains = trains;
        self
    }

    /// The same controller with (or without) bit-length management: each
    /// stochastic pulse phase uses `BL_s = min(⌈c · max|L| · max|R|⌉, BL)`
    /// slots, the fewest for which the largest requested update `c |L_i||R_j|`
    /// needs no firing probability above 1 (aihwkit's
    /// `update_bl_management`, in `PulsedUpdateMetaParameter::
    /// performUpdateManagement`; Gokmen & Vlasov 2016 choose BL per update
    /// likewise). The expected counts are unchanged; small updates take
    /// fewer slots (shorter write phases) and have a smaller count variance.
    pub fn with_bl_management(mut self, on: bool) -> Self {
        self.bl_management = on;
        self
    }

    /// The pulse-train stream (for `--resume`).
    pub fn rng(&self) -> &Xoshiro256PlusPlus {
        &self.rng
    }

    /// Continues the pulse-train stream from a saved position.
    pub fn set_rng(&mut self, rng: Xoshiro256PlusPlus) {
        self.rng = rng;
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

    /// Whether updates are per-sample stochastic pulse phases, whose events
    /// can be planned sample by sample ([`Controller::plan_samples`]) while
    /// earlier samples' events are being applied: open-loop pulse trains do
    /// not depend on the devices' state, so planning ahead changes nothing.
    pub fn plans_per_sample(&self) -> bool {
        self.dw > 0.0
            && self.scheme == WriteScheme::Stochastic
            && self.granularity == UpdateGranularity::PerSample
    }

    /// Starts an update whose events are planned in parts with
    /// [`Controller::plan_samples`] (counts the update).
    pub fn begin_update(&mut self, grad: &OuterProductGradient) {
        self.check_shapes(grad);
        self.stats.updates += 1;
    }

    /// Appends the pulse events of samples `samples` of `grad` to `events`,
    /// one pulse phase per sample, exactly as [`Controller::plan`] would
    /// (the same random stream, in the same order). Only for
    /// [`Controller::plans_per_sample`] controllers.
    pub fn plan_samples(
        &mut self,
        grad: &OuterProductGradient,
        samples: std::ops::Range<usize>,
        events: &mut Vec<PulseEvent>,
    ) {
        debug_assert!(self.plans_per_sample());
        for b in samples {
            self.stochastic_sample(grad, b, events);
            self.stats.pulse_phases += 1;
        }
    }

    fn check_shapes(&self, grad: &OuterProductGradient) {
        assert_eq!(grad.left.nrows(), self.n_out, "controller: gradient rows");
        assert_eq!(
            grad.right.nrows(),
            self.n_in,
            "controller: gradient columns"
        );
        assert_eq!(grad.left.ncols(), grad.right.ncols(), "controller: batch");
    }

    /// Plans the writes for the SGD step `ΔW = −η ∇W` of `grad`.
    pub fn plan(&mut self, grad: &OuterProductGradient) -> WritePlan {
        self.check_shapes(grad);
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
            (WriteScheme::MixedPrecision, UpdateGranularity::PerSample) => {
                for b in 0..grad.left.ncols() {
                    self.mixed_precision_sample(grad, b, &mut events);
                    self.stats.pulse_phases += 1;
                }
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
        // Same operation order as the digital SGD step (g = c·L Rᵀ, then η·g),
        // so that exact writes on ideal devices match it bit for bit.
        grad.weight_gradient_into(&mut self.delta);
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

    /// Mixed-precision pulse counts of sample `b` (Nandakumar et al.,
    /// Front. Neurosci. 2018: the digital accumulator χ += ΔW, and each
    /// device receives the whole pulses `n = trunc(χ/Δw)` it owes, χ −= nΔw),
    /// appended to `events` in index order.
    ///
    /// The same arithmetic, element by element, as the dense route
    /// (`dense_delta`, `delta_with_bias`, `dense_events`: ΔW_ij =
    /// −η·(c·(L_i R_j)), the bias column from `0 + L_i`), so the same bits,
    /// without materialising ΔW: a cross-point whose left or right signal
    /// is zero gets ΔW = ±0, which leaves χ (never −0) and the counts as
    /// they are, so only the nonzero rows of each nonzero column are
    /// visited — on MNIST most input pixels and many ReLU outputs are zero.
    /// A non-finite signal falls back to visiting everything (0·∞ is NaN).
    fn mixed_precision_sample(
        &mut self,
        grad: &OuterProductGradient,
        b: usize,
        events: &mut Vec<PulseEvent>,
    ) {
        let (n_out, n_in) = (self.n_out, self.n_in);
        let left = &grad.left.as_slice()[b * n_out..(b + 1) * n_out];
        let right = &grad.right.as_slice()[b * n_in..(b + 1) * n_in];
        let (c, lr, dw) = (grad.scale, self.lr, self.dw);
        let all_finite = left.iter().chain(right).all(|v| v.is_finite());
        let rows: Vec<usize> = (0..n_out)
            .filter(|&i| !all_finite || left[i] != 0.0)
            .collect();
        // Σ |ΔW|/Δw over the sample in index order, as the dense route sums it.
        let mut requested = 0.0f64;
        let mut owe = |chi: &mut f32, d: f32, index: usize, events: &mut Vec<PulseEvent>| {
            requested += (d.abs() / dw) as f64;
            *chi += d;
            let n = trunc(*chi / dw);
            *chi -= n * dw;
            if n != 0.0 {
                events.push(PulseEvent {
                    index: index as u32,
                    pulses: n as i32,
                });
            }
        };
        for (j, &r) in right.iter().enumerate() {
            if all_finite && r == 0.0 {
                continue;
            }
            let column = &mut self.accumulator[j * n_out..(j + 1) * n_out];
            for &i in &rows {
                let d = -(lr * (c * (left[i] * r)));
                owe(&mut column[i], d, i + j * n_out, events);
            }
        }
        // The bias column: ΔW_i = −η·(c·(0 + L_i))·bias_input.
        let column = &mut self.accumulator[n_in * n_out..(n_in + 1) * n_out];
        for &i in &rows {
            let g = (0.0 + left[i]) * c;
            let g = if self.bias_input == 1.0 {
                g
            } else {
                g * self.bias_input
            };
            owe(&mut column[i], -(lr * g), i + n_in * n_out, events);
        }
        self.stats.requested_pulse_events += requested;
    }

    /// Stochastic coincidence counts of sample `b`, appended to `events`.
    ///
    /// Rows and columns are grouped into buckets of firing probability
    /// within a factor 2 of each other (`p ∈ (p_max 2^{−k−1}, p_max 2^{−k}]`,
    /// likewise `q`). In each block (row bucket × column bucket) the devices
    /// with ≥ 1 coincidence are found by geometric skipping at the block's
    /// top rate followed by thinning (acceptance ≥ ~¼), or by one uniform
    /// per device where the top rate is high. The cost per sample is
    /// O(rows + columns + blocks + pulse events), not O(devices).
    fn stochastic_sample(
        &mut self,
        grad: &OuterProductGradient,
        b: usize,
        events: &mut Vec<PulseEvent>,
    ) {
        // Contiguous column slices (nalgebra's strided view iterators are
        // several times slower in these per-line loops).
        let left = &grad.left.as_slice()[b * self.n_out..(b + 1) * self.n_out];
        let right = &grad.right.as_slice()[b * self.n_in..(b + 1) * self.n_in];
        let n_out = self.n_out as u32;
        let l_max = max_abs_slice(left);
        let r_max = max_abs_slice(right).max(self.bias_input.abs());
        if l_max == 0.0 || r_max == 0.0 || !l_max.is_finite() || !r_max.is_finite() {
            return;
        }
        // Expected coincidences BL·p_i·q_j must equal |ΔW_ij|/Δw = c·|L_i||R_j|.
        let c = (self.lr * grad.scale.abs() / self.dw) as f64;
        let bl = if self.bl_management {
            // The largest update's expected count; `as` saturates.
            let largest = c * l_max as f64 * r_max as f64;
            (largest.ceil() as u32).clamp(1, self.bl)
        } else {
            self.bl
        };
        self.stats.pulse_slots += bl as u64;
        let base = (c / bl as f64).sqrt();
        let (k_l, k_r) = if self.update_management {
            let m = ((r_max / l_max) as f64).sqrt();
            (base * m, base / m)
        } else {
            (base, base)
        };
        // Sign of ΔW_ij = −c·L_i·R_j, folded into the line signs.
        let flip = if grad.scale > 0.0 { -1i32 } else { 1 };
        if self.trains == PulseTrains::Shared {
            let bias = std::iter::once(self.bias_input);
            let mut clipped = self
                .row_trains
                .draw(left.iter().copied(), k_l, bl, &mut self.rng);
            clipped +=
                self.column_trains
                    .draw(right.iter().copied().chain(bias), k_r, bl, &mut self.rng);
            trains::coincidences(
                &self.row_trains,
                &self.column_trains,
                bl,
                n_out,
                flip,
                &mut self.slot_index,
                events,
            );
            self.stats.clipped_probabilities += clipped;
            // c Σ|L| Σ|R| = (k_L Σ|L|)(k_R Σ|R|) BL, as k_L k_R = c/BL.
            self.stats.requested_pulse_events +=
                self.row_trains.magnitude_sum * self.column_trains.magnitude_sum * bl as f64;
            return;
        }
        let mut clipped = 0u64;
        let mut rows = std::mem::take(&mut self.row_buckets);
        let mut cols = std::mem::take(&mut self.column_buckets);
        rows.build(left.iter().copied(), k_l, &mut clipped);
        cols.build(
            right
                .iter()
                .copied()
                .chain(std::iter::once(self.bias_input)),
            k_r,
            &mut clipped,
        );
        let sum_left: f64 = left.iter().map(|v| v.abs() as f64).sum();
        let sum_right: f64 = cols.magnitude_sum / k_r;
        let rng = &mut self.rng;
        for (a, row_members) in rows.nonempty() {
            for (bk, col_members) in cols.nonempty() {
                let bound = (rows.top[a] * cols.top[bk]).min(1.0);
                let r_top = 1.0 - pow_u32(1.0 - bound, bl);
                if r_top <= 0.0 {
                    continue;
                }
                let n_rows = row_members.len();
                let n_cols = col_members.len();
                // One device of the block with `n` coincidences, as an event.
                let event = |ci: usize, ri: usize, n: u32| {
                    let (i, j) = (row_members[ri], col_members[ci]);
                    PulseEvent {
                        index: j * n_out + i,
                        pulses: n as i32 * rows.sign[i as usize] * cols.sign[j as usize] * flip,
                    }
                };
                let prob = |ci: usize, ri: usize| {
                    rows.prob[row_members[ri] as usize] * cols.prob[col_members[ci] as usize]
                };
                if r_top > DENSE_RATE {
                    for ci in 0..n_cols {
                        for ri in 0..n_rows {
                            let n = dense_count(rng.gen::<f64>(), prob(ci, ri), bl);
                            if n > 0 {
                                events.push(event(ci, ri, n));
                            }
                        }
                    }
                    continue;
                }
                // Geometric skip lengths ⌊E/λ⌋ with E ~ Exp(1) (ziggurat,
                // cheaper than a logarithm) and λ = −ln(1 − r_top); single
                // precision suffices, only the integer part matters.
                let inv_rate = (-1.0 / (1.0 - r_top).ln()) as f32;
                // Position (column ci, row ri) in the block, column-major;
                // `left` candidates remain from there on.
                let (mut ci, mut ri) = (0usize, 0usize);
                let mut left = n_rows * n_cols;
                loop {
                    let e: f32 = rng.sample(Exp1);
                    let skip = e * inv_rate;
                    // Past the end: no more candidates.
                    // `skip ≥ 0`, so truncation is the floor.
                    if skip >= left as f32 {
                        break;
                    }
                    let skip = skip as usize;
                    if skip >= left {
                        break;
                    }
                    left -= skip + 1;
                    ri += skip;
                    if ri >= n_rows {
                        // Integer division only when the skip leaves the column.
                        ci += ri / n_rows;
                        ri %= n_rows;
                    }
                    let accept = rng.gen::<f64>() * r_top;
                    let n = thinned_count(accept, prob(ci, ri), bl);
                    if n > 0 {
                        events.push(event(ci, ri, n));
                    }
                    ri += 1;
                    if ri == n_rows {
                        ri = 0;
                        ci += 1;
                    }
                }
            }
        }
        self.row_buckets = rows;
        self.column_buckets = cols;
        self.stats.clipped_probabilities += clipped;
        self.stats.requested_pulse_events += c * sum_left * sum_right;
    }
}

/// A firing probability counts as clipped above this: the rounding of
/// `k·|v|` can put an exact 1 (BL management at an integral largest count)
/// a few ulps above it, which is not a clipped update.
pub(crate) const CLIP_LIMIT: f64 = 1.0 + 1e-12;

/// The firing probability `k |v|` of a line with signal `v` (`None` if it
/// never fires), added to `totals` = (Σ of the probabilities, how many
/// exceed 1 and will be clipped); for both samplers.
#[inline(always)]
fn firing_probability(k: f64, v: f32, totals: &mut (f64, u64)) -> Option<f64> {
    let p = k * v.abs() as f64;
    if p <= 0.0 {
        return None;
    }
    totals.0 += p;
    totals.1 += (p > CLIP_LIMIT) as u64;
    Some(p)
}

/// Block top rates above this are sampled with one uniform per device
/// instead of geometric skipping (where most candidates would be accepted
/// anyway, and one uniform is cheaper than a logarithm and two uniforms).
const DENSE_RATE: f64 = 0.3;

/// The lines (rows or columns) of one sample grouped by firing probability,
/// a factor 2 apart, for the stochastic sampler.
#[derive(Clone, Debug, Default)]
struct ProbabilityBuckets {
    /// Firing probability per line, clipped at 1.
    prob: Vec<f64>,
    /// Sign of the line's signal (±1).
    sign: Vec<i32>,
    /// Bucket of each line (`u16::MAX` = never fires).
    bucket: Vec<u16>,
    /// Line indices grouped by bucket, ascending within a bucket.
    members: Vec<u32>,
    /// Bucket `k` is `members[start[k]..start[k + 1]]`.
    start: [usize; BUCKETS + 1],
    /// Upper bound of the probabilities in bucket `k`: `p_max 2^{−k}`.
    top: [f64; BUCKETS],
    /// Σ of the unclipped probabilities (`k Σ|v|`).
    magnitude_sum: f64,
}

impl ProbabilityBuckets {
    /// Sorts the lines with signals `values` into buckets of firing
    /// probability `min(k |v|, 1)`, counting clipped probabilities.
    fn build(&mut self, values: impl Iterator<Item = f32>, k: f64, clipped: &mut u64) {
        self.prob.clear();
        self.sign.clear();
        self.bucket.clear();
        let mut totals = (0.0, 0u64);
        let mut p_max = 0.0f64;
        for v in values {
            // Lines that never fire keep probability 0 (they get no bucket).
            let p = firing_probability(k, v, &mut totals)
                .unwrap_or(0.0)
                .min(1.0);
            p_max = p_max.max(p);
            self.prob.push(p);
            self.sign.push(line_sign(v));
        }
        *clipped += totals.1;
        self.magnitude_sum = totals.0;
        // Bucket b holds p ∈ (p_max 2^{−b−1}, p_max 2^{−b}]: b = ⌊log2(p_max/p)⌋
        // from the exponent bits of the ratio (≥ 1, normal).
        let mut counts = [0usize; BUCKETS];
        self.bucket.extend(self.prob.iter().map(|&p| {
            if p > 0.0 {
                let ratio = p_max / p;
                let b = (((ratio.to_bits() >> 52) & 0x7ff) as u16)
                    .saturating_sub(1023)
                    .min(BUCKETS as u16 - 1);
                counts[b as usize] += 1;
                b
            } else {
                u16::MAX
            }
        }));
        self.start[0] = 0;
        for (b, count) in counts.iter().enumerate() {
            self.start[b + 1] = self.start[b] + count;
            self.top[b] = p_max * 0.5f64.powi(b as i32);
        }
        self.members.clear();
        self.members.resize(self.start[BUCKETS], 0);
        let mut next = self.start;
        for (line, &b) in self.bucket.iter().enumerate() {
            if b != u16::MAX {
                self.members[next[b as usize]] = line as u32;
                next[b as usize] += 1;
            }
        }
    }

    /// The non-empty buckets with their lines.
    fn nonempty(&self) -> impl Iterator<Item = (usize, &[u32])> + '_ {
        (0..BUCKETS)
            .map(|k| (k, &self.members[self.start[k]..self.start[k + 1]]))
            .filter(|(_, m)| !m.is_empty())
    }
}

/// Number of probability buckets (factor 2 apart) of the stochastic sampler;
/// lines below `2^{−(BUCKETS−1)}` of the largest share the last bucket.
const BUCKETS: usize = 24;
/// Coincidences of a device firing each of `bl` slots with probability
/// `pij`, from its own uniform `u`: the inverse Binomial CDF, with the
/// common `n = 0` case decided without the power (`(1 − p)^BL ≥ 1 − BL p`).
#[inline(always)]
fn dense_count(u: f64, pij: f64, bl: u32) -> u32 {
    if u < 1.0 - bl as f64 * pij {
        return 0;
    }
    binomial_inverse(u, bl, pij)
}

/// Coincidences of a thinned candidate: `accept` is uniform on `[0, r_top)`
/// with `r_top ≥ r = 1 − (1 − pij)^BL`; the device fires iff `accept < r`,
/// and then `(1 − r) + accept` is uniform over the `n ≥ 1` part of the
/// Binomial CDF, so one draw serves both decisions. Most candidates are
/// decided by bounds without the power: `r ≤ BL p` (union bound) and
/// `P(n = 1) = BL p (1 − p)^{BL−1} ≥ BL p (1 − (BL−1) p)` (Bernoulli's
/// inequality); the outcome is the same as the exact test's.
#[inline(always)]
fn thinned_count(accept: f64, pij: f64, bl: u32) -> u32 {
    let mean = bl as f64 * pij;
    if accept < mean * (1.0 - (bl - 1) as f64 * pij) {
        return 1;
    }
    if accept >= mean {
        return 0;
    }
    let p_zero = pow_u32(1.0 - pij, bl);
    if accept < 1.0 - p_zero {
        binomial_inverse_from(p_zero + accept, bl, pij, p_zero).max(1)
    } else {
        0
    }
}

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
/// `x` rounded toward zero, as `f32::trunc` (which the baseline x86-64
/// target calls in libm, a function call per device): below 2²³ the
/// conversion through `i32` is exact, above every `f32` is an integer
/// already; NaN stays NaN. (A −0 where `trunc` gives −0 only for
/// `x ∈ (−1, 0)`, whose count is 0 either way.)
#[inline(always)]
fn trunc(x: f32) -> f32 {
    if x.abs() < 8_388_608.0 {
        (x as i32) as f32
    } else {
        x
    }
}

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
    use rand_chacha::ChaCha8Rng;

    /// The dense per-sample mixed-precision route (ΔW materialised, every
    /// device visited), kept here as the reference the sparse route must
    /// match bit for bit.
    fn dense_mixed_reference(
        ctl: &mut Controller,
        grad: &OuterProductGradient,
        events: &mut Vec<PulseEvent>,
    ) {
        for b in 0..grad.left.ncols() {
            let single = OuterProductGradient {
                left: grad.left.columns(b, 1).into_owned(),
                right: grad.right.columns(b, 1).into_owned(),
                scale: grad.scale,
            };
            ctl.dense_delta(&single);
            let delta = ctl.delta_with_bias(&single);
            ctl.dense_events(WriteScheme::MixedPrecision, &delta, events);
        }
    }

    #[test]
    fn sparse_mixed_precision_matches_the_dense_route_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (n_out, n_in, bias_input, lr) in [(7, 13, 1.0f32, 0.1f32), (33, 20, 0.5, 0.37)] {
            let dw = 0.003;
            let make = || {
                Controller::new(
                    WriteScheme::MixedPrecision,
                    UpdateGranularity::PerSample,
                    31,
                    false,
                    lr,
                    dw,
                    bias_input,
                    n_out,
                    n_in,
                    5,
                )
            };
            let (mut sparse, mut dense) = (make(), make());
            for batch in 0..40 {
                let cols = 1 + batch % 5;
                // Signals with exact zeros (ReLU outputs, blank pixels),
                // negative zeros and a wide range of magnitudes.
                let mut signal = |n: usize| {
                    Mat::from_fn(n, cols, |_, _| {
                        let u: f32 = rng.gen();
                        if u < 0.3 {
                            0.0
                        } else if u < 0.35 {
                            -0.0
                        } else {
                            let v: f32 = rng.gen::<f32>() * 2.0 - 1.0;
                            v * 10f32.powi(rng.gen_range(-3..2))
                        }
                    })
                };
                let grad = OuterProductGradient {
                    left: signal(n_out),
                    right: signal(n_in),
                    scale: if batch % 2 == 0 {
                        1.0 / cols as f32
                    } else {
                        -0.7
                    },
                };
                let mut want = Vec::new();
                sparse.stats.updates += 0;
                dense_mixed_reference(&mut dense, &grad, &mut want);
                let got = match sparse.plan(&grad) {
                    WritePlan::Pulses(events) => events,
                    WritePlan::Analog(_) => panic!("pulsed controller"),
                };
                assert_eq!(got, want, "batch {batch}");
                let bits = |c: &Controller| {
                    c.accumulator
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    bits(&sparse),
                    bits(&dense),
                    "accumulator after batch {batch}"
                );
                assert_eq!(
                    sparse.stats.requested_pulse_events.to_bits(),
                    dense.stats.requested_pulse_events.to_bits()
                );
            }
            assert!(sparse.stats.pulse_phases > 0);
        }
    }

    /// A per-sample stochastic controller with update management and bias
    /// input 1 (the crossbar's defaults), for the sampler-law tests.
    fn managed_stochastic(
        bl: u32,
        lr: f32,
        dw: f32,
        n_out: usize,
        n_in: usize,
        seed: u64,
        trains: PulseTrains,
    ) -> Controller {
        Controller::new(
            WriteScheme::Stochastic,
            UpdateGranularity::PerSample,
            bl,
            true,
            lr,
            dw,
            1.0,
            n_out,
            n_in,
            seed,
        )
        .with_pulse_trains(trains)
    }

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

    /// Per device, the coincidence count must follow Binomial(BL, p_i q_j)
    /// with the update-managed line probabilities (Gokmen & Vlasov 2016):
    /// the probability of ≥ 1 coincidence and the variance, not just the
    /// mean, over lines spread across many probability buckets and both
    /// sampling regimes (geometric skipping and one uniform per device).
    #[test]
    fn stochastic_counts_follow_the_binomial_law_per_device() {
        let left_values = [1.0f32, -0.6, 0.3, -0.11, 0.04, 0.013, -0.002, 0.5];
        let right_values = [0.9f32, -0.45, 0.2, 0.07, -0.02, 0.006, 0.0];
        let (n_out, n_in, bl) = (left_values.len(), right_values.len(), 31u32);
        for (&lr, trains) in [0.02f32, 2.0]
            .iter()
            .flat_map(|lr| [(lr, PulseTrains::Independent), (lr, PulseTrains::Shared)])
        {
            let grad = OuterProductGradient {
                left: Mat::from_column_slice(n_out, 1, &left_values),
                right: Mat::from_column_slice(n_in, 1, &right_values),
                scale: -1.0,
            };
            let dw = 0.01;
            let mut ctl = managed_stochastic(bl, lr, dw, n_out, n_in, 5, trains);
            let n = n_out * (n_in + 1);
            let (mut hits, mut sum, mut sum_sq) = (vec![0f64; n], vec![0f64; n], vec![0f64; n]);
            let mut sum_4 = vec![0f64; n];
            let reps = 40_000;
            for _ in 0..reps {
                if let WritePlan::Pulses(events) = ctl.plan(&grad) {
                    for e in &events {
                        let k = e.index as usize;
                        hits[k] += 1.0;
                        sum[k] += e.pulses as f64;
                        sum_sq[k] += (e.pulses as f64).powi(2);
                        sum_4[k] += (e.pulses as f64).powi(4);
                    }
                    ctl.recycle(events);
                }
            }
            // Independent computation of the line probabilities.
            let c = lr as f64 / dw as f64;
            let (l_max, r_max) = (1.0f64, 1.0f64); // bias input 1 is the largest column signal
            let k_l = (c / bl as f64).sqrt() * (r_max / l_max).sqrt();
            let k_r = (c / bl as f64).sqrt() / (r_max / l_max).sqrt();
            let column_signals = right_values.iter().map(|&r| r as f64).chain([1.0]);
            for (j, r) in column_signals.enumerate() {
                let q = (k_r * r.abs()).min(1.0);
                for (i, &l) in left_values.iter().enumerate() {
                    let p = (k_l * (l as f64).abs()).min(1.0);
                    let pq = p * q;
                    let k = i + j * n_out;
                    let fired = 1.0 - (1.0 - pq).powi(bl as i32);
                    let got_fired = hits[k] / reps as f64;
                    let se = (fired * (1.0 - fired) / reps as f64).sqrt();
                    assert!(
                        (got_fired - fired).abs() < 5.0 * se + 1e-4,
                        "{trains:?} lr {lr} ({i},{j}): P(n ≥ 1) {got_fired} vs {fired}"
                    );
                    let mean = sum[k] / reps as f64;
                    let sign = (l as f64 * r).signum();
                    let expected_mean = sign * bl as f64 * pq;
                    let var = sum_sq[k] / reps as f64 - mean * mean;
                    let expected_var = bl as f64 * pq * (1.0 - pq);
                    assert!(
                        (mean - expected_mean).abs()
                            < 5.0 * (expected_var / reps as f64).sqrt() + 1e-4,
                        "{trains:?} lr {lr} ({i},{j}): mean {mean} vs {expected_mean}"
                    );
                    // Standard error of a sample variance ≤ √(E[X⁴]/reps).
                    let var_se = (sum_4[k] / reps as f64 / reps as f64).sqrt();
                    assert!(
                        (var - expected_var).abs() < 5.0 * var_se + 1e-4,
                        "{trains:?} lr {lr} ({i},{j}): variance {var} vs {expected_var}"
                    );
                }
            }
        }
    }

    /// Devices on one row share the row's pulse train: with shared trains
    /// their counts covary as `Cov(n_ij, n_ik) = BL p_i (1 − p_i) q_j q_k`
    /// (slots independent; within a slot `E[R C_j R C_k] = p q_j q_k`), and
    /// devices on different rows and columns do not covary; with
    /// independent draws no two devices covary. The requested pulse budget
    /// is the same either way.
    #[test]
    fn shared_trains_correlate_devices_on_a_line_as_the_chip_does() {
        let (left, right) = ([0.8f32, -0.5], [0.6f32, 0.9]);
        let grad = OuterProductGradient {
            left: Mat::from_column_slice(2, 1, &left),
            right: Mat::from_column_slice(2, 1, &right),
            scale: -1.0,
        };
        let (bl, lr, dw) = (31u32, 0.3f32, 0.01f32);
        // Update management off: p_i = k|L_i|, q_j = k|R_j|, k = √(c/BL).
        let k = ((lr / dw) as f64 / bl as f64).sqrt();
        let p0 = k * left[0] as f64;
        let q = [k * right[0] as f64, k * right[1] as f64];
        let expected_row_cov = bl as f64 * p0 * (1.0 - p0) * q[0] * q[1];
        let reps = 200_000;
        // Standard error of a covariance ≈ σ_a σ_b / √reps (σ² ≤ the mean BL p q).
        let se = (bl as f64 * p0 * q[0] * bl as f64 * p0 * q[1]).sqrt() / (reps as f64).sqrt();
        // The two hypotheses are far apart at this precision.
        assert!(expected_row_cov > 20.0 * se);
        let mut budgets = Vec::new();
        for trains in [PulseTrains::Shared, PulseTrains::Independent] {
            let mut ctl = Controller::new(
                WriteScheme::Stochastic,
                UpdateGranularity::PerSample,
                bl,
                false,
                lr,
                dw,
                0.0,
                2,
                2,
                21,
            )
            .with_pulse_trains(trains);
            // Devices (0,0), (0,1) share row 0; (0,0), (1,1) share nothing.
            let (a, b, c) = (0usize, 2usize, 3usize);
            let mut sums = [0f64; 3];
            let (mut ab, mut ac) = (0f64, 0f64);
            for _ in 0..reps {
                let mut n = [0f64; 4];
                if let WritePlan::Pulses(events) = ctl.plan(&grad) {
                    for e in &events {
                        n[e.index as usize] = e.pulses.abs() as f64;
                    }
                    ctl.recycle(events);
                }
                for (s, v) in sums.iter_mut().zip([n[a], n[b], n[c]]) {
                    *s += v;
                }
                ab += n[a] * n[b];
                ac += n[a] * n[c];
            }
            let m = sums.map(|s| s / reps as f64);
            let cov_ab = ab / reps as f64 - m[0] * m[1];
            let cov_ac = ac / reps as f64 - m[0] * m[2];
            let want_ab = if trains == PulseTrains::Shared {
                expected_row_cov
            } else {
                0.0
            };
            assert!(
                (cov_ab - want_ab).abs() < 5.0 * se,
                "{trains:?}: same-row covariance {cov_ab} vs {want_ab} (se {se})"
            );
            assert!(
                cov_ac.abs() < 5.0 * se,
                "{trains:?}: unrelated covariance {cov_ac}"
            );
            budgets.push(ctl.stats().requested_pulse_events);
        }
        assert!(
            (budgets[0] / budgets[1] - 1.0).abs() < 1e-9,
            "budgets {budgets:?}"
        );
    }

    /// The sparse (thinning) and dense column samplers must realise the
    /// same expected counts: E[n_ij] = BL p_i q_j = |ΔW_ij|/Δw.
    #[test]
    fn stochastic_counts_are_unbiased_in_both_sampling_regimes() {
        // Largest expected count c·max|L|·max|R| = 0.1 and 10: BL management
        // shortens the trains to 1 and 10 slots.
        let cases = [0.0005f32, 0.05].into_iter().flat_map(|lr| {
            [PulseTrains::Independent, PulseTrains::Shared]
                .into_iter()
                .flat_map(move |t| [(lr, t, false), (lr, t, true)])
        });
        for (lr, trains, bl_management) in cases {
            let (n_out, n_in) = (6, 5);
            let left = Mat::from_column_slice(n_out, 1, &[0.5, -1.0, 0.25, 0.0, 2.0, -0.125]);
            let right = Mat::from_column_slice(n_in, 1, &[1.0, 0.0, -0.5, 0.3, 0.9]);
            let grad = OuterProductGradient {
                left,
                right,
                scale: -1.0,
            };
            let dw = 0.01;
            let mut ctl = managed_stochastic(31, lr, dw, n_out, n_in, 11, trains)
                .with_bl_management(bl_management);
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
                        "{trains:?}, BL management {bl_management}, lr {lr} ({i},{j}): \
                         mean {got} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn bl_management_uses_the_fewest_slots_that_need_no_clipping() {
        let (n_out, n_in) = (4, 3);
        let left = Mat::from_column_slice(n_out, 1, &[0.5, -2.0, 0.25, 1.0]);
        let right = Mat::from_column_slice(n_in, 1, &[0.4, -0.8, 0.1]);
        let grad = OuterProductGradient {
            left,
            right,
            scale: -1.0,
        };
        let dw = 0.01;
        // Largest product: max|L| = 2, max|R| = 1 (the bias drive), so the
        // largest expected count is c·2 with c = lr/Δw.
        for (lr, slots) in [(0.0005f32, 1u64), (0.0215, 5), (0.05, 10), (1.0, 31)] {
            for trains in [PulseTrains::Shared, PulseTrains::Independent] {
                let mut ctl =
                    managed_stochastic(31, lr, dw, n_out, n_in, 5, trains).with_bl_management(true);
                let reps = 2_000u64;
                for _ in 0..reps {
                    if let WritePlan::Pulses(ev) = ctl.plan(&grad) {
                        for e in &ev {
                            assert!(
                                e.pulses.unsigned_abs() as u64 <= slots,
                                "{trains:?} lr {lr}: {} pulses in {slots} slots",
                                e.pulses
                            );
                        }
                        ctl.recycle(ev);
                    }
                }
                let stats = ctl.stats();
                assert_eq!(stats.pulse_slots, slots * reps, "{trains:?} lr {lr}");
                // Below the BL cap no probability needs clipping; at lr 1 the
                // largest count (200) exceeds BL 31 and clipping is expected.
                if slots < 31 {
                    assert_eq!(stats.clipped_probabilities, 0, "{trains:?} lr {lr}");
                } else {
                    assert!(stats.clipped_probabilities > 0, "{trains:?} lr {lr}");
                }
            }
        }
        // Without BL management every phase has BL slots.
        let mut ctl = managed_stochastic(31, 0.0005, dw, n_out, n_in, 5, PulseTrains::Shared);
        ctl.plan(&grad);
        assert_eq!(ctl.stats().pulse_slots, 31);
    }
}
