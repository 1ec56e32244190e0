//! The Tiki-Taka family of on-chip learning algorithms (`crossbar.algorithm`):
//! a fast array `A` takes the pulsed gradient updates, a digital hidden
//! matrix `H` integrates what one-hot column reads of `A` show, and the
//! slow array `C` — the layer's weights, the only array the network reads —
//! receives a pulse where `|H|` crosses its threshold.
//!
//! - `ttv2`: Tiki-Taka v2 (T. Gokmen, "Enabling training of neural networks
//!   on noisy hardware", Front. Artif. Intell. 4, 2021): `A` zeroed at the
//!   devices' symmetry points, buffered transfer through `H`.
//! - `cttv2`: chopped TTv2 (M. J. Rasch et al., "Fast and robust analog
//!   in-memory deep neural network training", Nat. Commun. 15, 7133, 2024):
//!   the gradient written into `A` is sign-modulated per column by a
//!   chopper that flips at random after the column's read, and demodulated
//!   on the read, so a drift of `A` away from its zero (a bias of the
//!   device) averages out of `H`.
//! - `agad`: AGAD (same paper): periodic choppers, and `A`'s reference
//!   computed on the fly — `H` integrates the read minus the running mean
//!   of the column's reads at the last chopper switch — so `A` needs no
//!   accurate zero.
//!
//! One update (DESIGN.md §4 for the pulse path): the gradient, chopped, goes
//! into `A` through `A`'s own controller with the fast rate
//! `η_A = fast_lr · BL · Δw_A / (m_x m_d)` (auto-scaling: `m_x`, `m_d` the
//! running means of each sample's largest |input| and |error|, momentum
//! `auto_momentum`; Rasch et al. 2024, Methods); then, for every
//! `transfer_every` samples, `columns_per_transfer` columns of `A` are read
//! through the forward periphery with a one-hot input, and for column `j`
//!
//! ```text
//! H_ij += s_ij · η_T · (a_ij − r_ij),   η_T = transfer_lr · η / g_H,
//! g_H  = threshold · Δw_A · auto_granularity / (n_cols · transfer_every)
//! n_ij = trunc(H_ij) clipped to ±max_pulses → n_ij pulses on C_ij;
//! H_ij ← momentum · H_ij (forget_buffer) or H_ij − (1 − momentum) n_ij
//! ```
//!
//! with `s_ij` the chopper sign, `a_ij` the read and `r_ij` the reference
//! (`A`'s calibrated zero; AGAD: the running mean). `η` is `crossbar.lr`:
//! in this family it scales only the transfer, as aihwkit's optimiser rate
//! does. The formulas and defaults are aihwkit's `ChoppedTransferCompound`
//! and `DynamicTransferCompound` (`src/rpucuda/rpu_chopped_transfer_device.cpp`,
//! `rpu_dynamic_transfer_device.cpp`) with the values of its
//! `TTv2ReRamSBPreset`, `ChoppedTTv2ReRamSBPreset` and `AGADReRamSBPreset`
//! (`src/aihwkit/simulator/presets/configs.py`, aihwkit 1.1): `fast_lr` 0.5,
//! `auto_scale` on, `auto_granularity` 1000, one column per mat-vec
//! (`transfer_every` 1, `units_in_mbatch` off), one pulse per transfer
//! (transfer `desired_bl` 1), `forget_buffer` on, `momentum` 0, chopper
//! probability 0 / 0.01 (random) / 0.02 (periodic, period 50 reads), AGAD
//! `tail_weightening` 5.
//!
//! **Exact writes.** With `crossbar.write = "exact"` there are no pulses:
//! `A` takes `η_A ∇W` exactly (no auto-scaling; `η_A = fast_lr`), `H`
//! integrates `η · transfer_lr · (a − r)` in weight units and is written
//! into `C` whole at every transfer. With `reset_fast` (Tiki-Taka v1's
//! reset after read) and every column read at every sample, this is SGD on
//! `C` with rate `fast_lr` (tested).
//!
//! **Calibration.** Before training every device of `A` is driven to its
//! symmetry point by alternating up and down pulses
//! ([`crate::devices::DeviceArray::find_symmetry_point`], the zero-shifting technique of
//! H. Kim et al., arXiv 1907.10228), programmed there, and `A`'s zero
//! `r_ij` is read off; the pulses count in `A`'s wear and energy and in
//! [`TransferStats::calibration_pulses`].
//!
//! The bias column's chopper stays at `+1`: its drive is the constant bias
//! input, which a chopper would need a sign-switching driver for.

use super::{Crossbar, CrossbarConfig};
use crate::check::check_positive;
use crate::controller::{PulseEvent, WriteScheme};
use crate::linalg::Mat;
use crate::random::fill_standard_normal;
use crate::substrate::{OuterProductGradient, TransferStats, WeightArray};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// The on-chip learning algorithm of a crossbar layer (`crossbar.algorithm`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Plain pulsed SGD: the gradient goes straight into the weight devices.
    #[default]
    Sgd,
    /// Tiki-Taka v2: fast array, digital buffer `H`, slow array.
    Ttv2,
    /// Chopped TTv2: TTv2 with random per-column choppers.
    Cttv2,
    /// AGAD: periodic choppers and an on-the-fly reference of `A`.
    Agad,
}

impl std::fmt::Display for Algorithm {
    /// The name used in configuration files (`crossbar.algorithm`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Sgd => "sgd",
            Algorithm::Ttv2 => "ttv2",
            Algorithm::Cttv2 => "cttv2",
            Algorithm::Agad => "agad",
        })
    }
}

impl Algorithm {
    /// Whether the algorithm uses a fast array and transfers.
    pub fn transfers(self) -> bool {
        self != Algorithm::Sgd
    }

    /// The published chopper switching probability per column read
    /// (aihwkit 1.1 presets: `in_chop_prob`).
    fn preset_chopper_probability(self) -> f32 {
        match self {
            Algorithm::Sgd | Algorithm::Ttv2 => 0.0,
            Algorithm::Cttv2 => 0.01,
            Algorithm::Agad => 0.02,
        }
    }
}

/// Settings of the Tiki-Taka family (TOML `[crossbar.transfer]`); used when
/// `crossbar.algorithm` is not `sgd`. Defaults: aihwkit 1.1's TTv2, c-TTv2
/// and AGAD presets (see the module documentation).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Rate of the gradient updates into the fast array `A`: with
    /// `auto_scale`, the expected pulses of a sample's largest update as a
    /// fraction of BL; without, the learning rate in weight units.
    pub fast_lr: f32,
    /// Scale `A`'s rate by the running means of the largest |input| and
    /// |error| per sample (aihwkit `auto_scale`).
    pub auto_scale: bool,
    /// Momentum of those running means (aihwkit `auto_momentum`).
    pub auto_momentum: f32,
    /// Samples (mat-vec updates) between transfers.
    pub transfer_every: u32,
    /// Columns of `A` read and transferred per transfer (aihwkit `n_reads_per_transfer`).
    pub columns_per_transfer: u32,
    /// Transfer rate, multiplied by `crossbar.lr`.
    pub transfer_lr: f32,
    /// Reads of a column expected to fill the buffer from one pulse's worth of `A`
    /// (aihwkit `auto_granularity`; 0 = off, the buffer granularity is one pulse of `A`).
    pub auto_granularity: f32,
    /// Threshold of `H` in units of its granularity (aihwkit `thres_scale` × `buffer_granularity`).
    pub threshold: f32,
    /// Fraction of `H` kept after a transfer.
    pub momentum: f32,
    /// After a transfer keep `momentum · H` (on) or `H − (1 − momentum)·n` (off).
    pub forget_buffer: bool,
    /// Largest pulse count written into a device of `C` per transfer.
    pub max_pulses: u32,
    /// Chopper switching probability per column read; empty = the
    /// algorithm's preset (ttv2 0, cttv2 0.01, agad 0.02).
    pub chopper_probability: Option<f32>,
    /// Switch choppers at random (cttv2) or every `⌈1/p⌉` reads (agad);
    /// empty = the algorithm's preset.
    pub chopper_random: Option<bool>,
    /// Row (output) chopper switching probability after each full sweep of
    /// the columns (aihwkit `out_chop_prob`).
    pub output_chopper_probability: f32,
    /// AGAD: weight of the recent reads in the running mean, per chopper
    /// period (aihwkit `tail_weightening`).
    pub tail_weighting: f32,
    /// Reset a column of `A` to its zero after its transfer (Tiki-Taka v1 reset).
    pub reset_fast: bool,
    /// Calibration: alternating up/down pulse pairs per device of `A` before
    /// its symmetry point is averaged (0 = automatic: enough pairs to cross
    /// the device's range twice, `⌈2/Δg_min⌉`, at most 100: `A` starts programmed at the model's symmetry point, so each device only has its own offset to cover).
    pub calibration_pairs: u32,
    /// Calibration: pulse pairs over which the symmetry point is averaged.
    pub calibration_average: u32,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            fast_lr: 0.5,
            auto_scale: true,
            auto_momentum: 0.99,
            transfer_every: 1,
            columns_per_transfer: 1,
            transfer_lr: 1.0,
            auto_granularity: 1000.0,
            threshold: 1.0,
            momentum: 0.0,
            forget_buffer: true,
            max_pulses: 1,
            chopper_probability: None,
            chopper_random: None,
            output_chopper_probability: 0.0,
            tail_weighting: 5.0,
            reset_fast: false,
            calibration_pairs: 0,
            calibration_average: 10,
        }
    }
}

impl TransferConfig {
    /// Range checks; errors name the field.
    pub fn check(&self, algorithm: Algorithm, write: WriteScheme) -> Result<()> {
        check_positive("crossbar.transfer.fast_lr", self.fast_lr)?;
        check_positive("crossbar.transfer.transfer_lr", self.transfer_lr)?;
        check_positive("crossbar.transfer.threshold", self.threshold)?;
        let unit = |field: &str, v: f32| -> Result<()> {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                bail!("crossbar.transfer.{field} = {v} is out of range: 0..=1");
            }
            Ok(())
        };
        unit("auto_momentum", self.auto_momentum)?;
        unit("momentum", self.momentum)?;
        unit(
            "output_chopper_probability",
            self.output_chopper_probability,
        )?;
        if let Some(p) = self.chopper_probability {
            unit("chopper_probability", p)?;
        }
        if !(self.auto_granularity.is_finite() && self.auto_granularity >= 0.0) {
            bail!(
                "crossbar.transfer.auto_granularity = {} is out of range: ≥ 0 (0 = off)",
                self.auto_granularity
            );
        }
        check_positive("crossbar.transfer.tail_weighting", self.tail_weighting)?;
        for (field, v) in [
            ("transfer_every", self.transfer_every),
            ("columns_per_transfer", self.columns_per_transfer),
            ("max_pulses", self.max_pulses),
        ] {
            if v == 0 || v > 1_000_000 {
                bail!("crossbar.transfer.{field} = {v} is out of range: 1..=1000000");
            }
        }
        if algorithm == Algorithm::Agad && self.columns_per_transfer != 1 {
            bail!(
                "crossbar.transfer.columns_per_transfer = {} is not available for algorithm \"agad\": its reference is per column read (1)",
                self.columns_per_transfer
            );
        }
        if algorithm.transfers() && write == WriteScheme::Exact && self.auto_scale {
            bail!(
                "crossbar.transfer.auto_scale = true needs pulses (it scales A's rate to a pulse count); with crossbar.write = \"exact\" set crossbar.transfer.auto_scale = false"
            );
        }
        Ok(())
    }

    fn chopper_probability_for(&self, algorithm: Algorithm) -> f32 {
        self.chopper_probability
            .unwrap_or_else(|| algorithm.preset_chopper_probability())
    }

    fn chopper_random_for(&self, algorithm: Algorithm) -> bool {
        self.chopper_random.unwrap_or(algorithm != Algorithm::Agad)
    }
}

/// The fast array, the hidden matrix and the transfer schedule of a layer.
#[derive(Clone)]
pub(super) struct Transfer {
    algorithm: Algorithm,
    config: TransferConfig,
    /// Chopper switching probability in force.
    chopper_probability: f32,
    chopper_random: bool,
    /// `A`: same devices and periphery as `C`, its own controller (rate 1;
    /// the fast rate goes into the gradient's scale).
    fast: Box<Crossbar>,
    /// `A`'s zero, `H`, the choppers, the running means and the schedule:
    /// what the saved state holds besides `A`'s devices.
    state: TransferState,
    rng: Xoshiro256PlusPlus,
    /// Scratch: one column read and the pulse events of its transfer.
    column: Vec<f32>,
    events: Vec<PulseEvent>,
}

/// The state of a layer's transfer part besides `A`'s devices (inside the
/// crossbar's device state).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransferState {
    /// `A`'s zero `r_ij` per cross-point (weight units, column-major, bias last).
    zero: Vec<f32>,
    /// `A`'s devices at calibration (for `reset_fast`).
    zero_state: Vec<f32>,
    /// `H` (column-major, bias column last).
    hidden: Vec<f32>,
    /// Column (input) choppers, `true` = negative; the bias column's stays `false`.
    in_chopper: Vec<bool>,
    /// Row (output) choppers.
    out_chopper: Vec<bool>,
    /// AGAD: running mean of each element's reads, the mean at the last
    /// switch, and whether the column's chopper switched after its last read.
    mean: Vec<f32>,
    past_mean: Vec<f32>,
    switched: Vec<bool>,
    /// Next column to transfer.
    next_column: usize,
    /// Samples since the last transfer.
    pending: u64,
    /// Full sweeps over the columns (aihwkit `transfer_counter`).
    sweeps: u64,
    /// Running means of the largest |input| and |error| per sample.
    m_x: f32,
    m_d: f32,
    /// Transfer counters.
    stats: TransferStats,
}

/// The serialisable state of a layer's transfer part (inside the crossbar's device state).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransferSnapshot {
    /// `A`'s device state.
    fast: serde_json::Value,
    /// Everything else.
    state: TransferState,
}

/// The random streams of a layer's transfer part (inside the crossbar's continuation state).
#[derive(Serialize, Deserialize)]
pub struct TransferStreams {
    fast: serde_json::Value,
    chopper: Xoshiro256PlusPlus,
}

impl Transfer {
    /// The transfer part of an `n_out × n_in` layer whose slow array is
    /// built from `config`; `seed` is the layer's seed (streams 5 and 6).
    pub(super) fn new(
        config: &CrossbarConfig,
        device_overrides: &toml::Table,
        n_out: usize,
        n_in: usize,
        seed: u64,
    ) -> Result<Self> {
        let mix = |k: u64| super::stream_seed(seed, k);
        let mut fast_config = config.clone();
        fast_config.algorithm = Algorithm::Sgd;
        fast_config.lr = 1.0;
        // The layer's clock drives A's (Crossbar::advance_clock).
        fast_config.time_per_batch = 0.0;
        let mut fast = Crossbar::new_checked(&fast_config, device_overrides, n_out, n_in, mix(5))
            .context("building the fast array A")?;
        fast.set_parameters(
            &Mat::zeros(n_out, n_in),
            &crate::linalg::Vector::zeros(n_out),
        );
        let n = n_out * (n_in + 1);
        let t = &config.transfer;
        let mut transfer = Self {
            algorithm: config.algorithm,
            chopper_probability: t.chopper_probability_for(config.algorithm),
            chopper_random: t.chopper_random_for(config.algorithm),
            config: t.clone(),
            fast: Box::new(fast),
            state: TransferState {
                zero: vec![0.0; n],
                zero_state: Vec::new(),
                hidden: vec![0.0; n],
                in_chopper: vec![false; n_in + 1],
                out_chopper: vec![false; n_out],
                mean: if config.algorithm == Algorithm::Agad {
                    vec![0.0; n]
                } else {
                    Vec::new()
                },
                past_mean: if config.algorithm == Algorithm::Agad {
                    vec![0.0; n]
                } else {
                    Vec::new()
                },
                switched: vec![false; n_in + 1],
                next_column: 0,
                pending: 0,
                sweeps: 0,
                m_x: 0.0,
                m_d: 0.0,
                stats: TransferStats {
                    algorithm: super::counters::serde_name(&config.algorithm),
                    ..TransferStats::default()
                },
            },
            rng: Xoshiro256PlusPlus::seed_from_u64(mix(6)),
            column: Vec::new(),
            events: Vec::new(),
        };
        transfer.calibrate();
        Ok(transfer)
    }

    /// The fast array `A`.
    pub(super) fn fast(&self) -> &Crossbar {
        &self.fast
    }

    /// `H` (column-major, bias column last).
    pub(super) fn hidden(&self) -> &[f32] {
        &self.state.hidden
    }

    /// The column choppers (`true` = negative sign).
    pub(super) fn in_chopper(&self) -> &[bool] {
        &self.state.in_chopper
    }

    /// Drives every device of `A` to its symmetry point by alternating
    /// pulses, programs it there and reads `A`'s zero (module documentation).
    /// A one-sided pair (PCM) or a continuous device needs no calibration:
    /// its zero is the programmed zero weight.
    fn calibrate(&mut self) {
        let fast = &mut self.fast;
        let step = fast.model.nominal_step();
        let pulsed = step > 0.0 && fast.config.write != WriteScheme::Exact;
        if pulsed && !fast.model.pairing.one_sided {
            let pairs = match self.config.calibration_pairs {
                0 => ((2.0 / step).ceil() as usize).min(100),
                p => p as usize,
            };
            let average = self.config.calibration_average as usize;
            let before = fast.devices.total_pulse_count();
            for i in 0..fast.devices.len() {
                if fast.devices.is_stuck(i) {
                    continue;
                }
                let point = fast.devices.find_symmetry_point(i, pairs, average);
                fast.devices.program(i, point);
            }
            self.state.stats.calibration_pulses = fast.devices.total_pulse_count() - before;
            fast.devices.end_write();
            fast.refresh_cache();
        }
        let n = self.state.zero.len();
        for idx in 0..n {
            self.state.zero[idx] = fast.weight_at(idx);
        }
        self.state.zero_state = (0..fast.devices.len())
            .map(|i| fast.devices.conductance(i))
            .collect();
    }

    /// One update: the chopped gradient into `A`, then the transfers owed
    /// for its samples, written into the slow array `slow`.
    pub(super) fn update(&mut self, slow: &mut Crossbar, grad: &OuterProductGradient) {
        let batch = grad.left.ncols();
        let exact = slow.config.write == WriteScheme::Exact;
        let rate = if self.config.auto_scale {
            self.auto_scaled_rate(grad)
        } else {
            self.config.fast_lr
        };
        let chopped = self.chopped(grad, rate);
        self.fast.write(&chopped);
        self.state.pending += batch as u64;
        let every = self.config.transfer_every as u64;
        while self.state.pending >= every {
            self.state.pending -= every;
            self.transfer(slow, exact);
        }
    }

    /// `fast_lr · BL · Δw_A / (m_x m_d)` after updating the running means with
    /// this update's samples (aihwkit `updateAutoScale`: momentum per
    /// mini-batch, `τ = (1 − auto_momentum)/B` per sample).
    fn auto_scaled_rate(&mut self, grad: &OuterProductGradient) -> f32 {
        let batch = grad.left.ncols().max(1);
        let tau = (1.0 - self.config.auto_momentum) / batch as f32;
        let bias = self.fast.config.bias_input.abs();
        let scale = grad.scale.abs();
        let ema = |m: &mut f32, v: f32| {
            if !(v > 0.0 && v.is_finite()) {
                return;
            }
            *m = if *m <= 0.0 {
                v
            } else {
                (1.0 - tau) * *m + tau * v
            };
        };
        for b in 0..grad.left.ncols() {
            let x = crate::linalg::max_abs_slice(grad.right.column(b).as_slice()).max(bias);
            let d = scale * crate::linalg::max_abs_slice(grad.left.column(b).as_slice());
            ema(&mut self.state.m_x, x);
            ema(&mut self.state.m_d, d);
        }
        let g = self.fast.config.bl as f32 * self.fast.pulse_weight();
        if self.state.m_x > 0.0 && self.state.m_d > 0.0 {
            self.config.fast_lr * g / (self.state.m_x * self.state.m_d)
        } else {
            self.config.fast_lr * g
        }
    }

    /// The gradient `A` takes: scaled by the fast rate (its controller has
    /// rate 1) and sign-modulated by the choppers.
    fn chopped(&self, grad: &OuterProductGradient, rate: f32) -> OuterProductGradient {
        let mut left = grad.left.clone();
        let mut right = grad.right.clone();
        if self.state.out_chopper.iter().any(|&c| c) {
            for mut col in left.column_iter_mut() {
                for (v, &c) in col.iter_mut().zip(&self.state.out_chopper) {
                    if c {
                        *v = -*v;
                    }
                }
            }
        }
        if self.state.in_chopper.iter().any(|&c| c) {
            for mut col in right.column_iter_mut() {
                for (v, &c) in col.iter_mut().zip(&self.state.in_chopper) {
                    if c {
                        *v = -*v;
                    }
                }
            }
        }
        OuterProductGradient {
            left,
            right,
            scale: grad.scale * rate,
        }
    }

    /// One transfer: `columns_per_transfer` columns, in turn.
    fn transfer(&mut self, slow: &mut Crossbar, exact: bool) {
        self.state.stats.transfers += 1;
        let n_cols = self.state.in_chopper.len();
        for _ in 0..self.config.columns_per_transfer.min(n_cols as u32) {
            let j = self.state.next_column;
            self.transfer_column(slow, j, exact);
            self.state.next_column = (j + 1) % n_cols;
            if self.state.next_column == 0 {
                self.end_sweep();
            }
        }
    }

    /// After the last column: the row choppers may flip; the sweep count advances.
    fn end_sweep(&mut self) {
        let p = self.config.output_chopper_probability;
        if p > 0.0 {
            for c in self.state.out_chopper.iter_mut() {
                if self.rng.gen::<f32>() < p {
                    *c = !*c;
                    self.state.stats.chopper_flips += 1;
                }
            }
        }
        self.state.sweeps += 1;
    }

    /// Reads column `j` of `A`, integrates it into `H` and writes the pulses
    /// owed into column `j` of `C` (module documentation).
    fn transfer_column(&mut self, slow: &mut Crossbar, j: usize, exact: bool) {
        let n_out = self.state.out_chopper.len();
        let n_cols = self.state.in_chopper.len() as f32;
        let mut column = std::mem::take(&mut self.column);
        self.fast.read_column(j, &mut column);
        self.state.stats.column_reads += 1;
        let lr = slow.config.lr * self.config.transfer_lr;
        let scale = if exact {
            lr
        } else {
            let dw = self.fast.pulse_weight();
            let granularity = if self.config.auto_granularity > 0.0 {
                self.config.threshold * dw * self.config.auto_granularity
                    / (n_cols * self.config.transfer_every as f32)
            } else {
                self.config.threshold * dw
            };
            lr / granularity
        };
        let agad = self.algorithm == Algorithm::Agad;
        let period = chopper_period(self.chopper_probability);
        // AGAD (aihwkit DynamicTransfer): the sample of the chopper period
        // this read is, and the running mean's momentum.
        let sample = (self.state.sweeps % period) + 1;
        let sample_momentum = (self.config.tail_weighting / period as f32).min(1.0);
        let switched = std::mem::replace(&mut self.state.switched[j], false);
        let in_chop = self.state.in_chopper[j];
        let max_steps = self.config.max_pulses as f32;
        let keep = self.config.momentum;
        self.events.clear();
        for (i, &read) in column.iter().enumerate().take(n_out) {
            let idx = i + j * n_out;
            let signal = if agad {
                if switched {
                    self.state.past_mean[idx] = self.state.mean[idx];
                }
                let signal = read - self.state.past_mean[idx];
                self.state.mean[idx] =
                    self.state.mean[idx] * (1.0 - sample_momentum) + read * sample_momentum;
                signal
            } else {
                read - self.state.zero[idx]
            };
            let signed = if in_chop != self.state.out_chopper[i] {
                -signal
            } else {
                signal
            };
            let mut h = self.state.hidden[idx] + signed * scale;
            if exact {
                if h != 0.0 {
                    let track = slow.line_conductance_valid && !slow.devices.drifts();
                    slow.nudge_weight(idx, h, track);
                }
                h = 0.0;
            } else if h.abs() >= 1.0 {
                let n = h.trunc().clamp(-max_steps, max_steps);
                h = if self.config.forget_buffer {
                    h * keep
                } else {
                    h - (1.0 - keep) * n
                };
                self.events.push(PulseEvent {
                    index: idx as u32,
                    pulses: n as i32,
                });
            }
            self.state.hidden[idx] = h;
        }
        self.column = column;
        // AGAD writes only once the running mean has seen a chopper period.
        let ready = !agad || self.state.sweeps > period;
        if !self.events.is_empty() && ready {
            self.state.stats.slow_pulses += self
                .events
                .iter()
                .map(|e| e.pulses.unsigned_abs() as u64)
                .sum::<u64>();
            let terms = slow.write_terms();
            let events = std::mem::take(&mut self.events);
            slow.apply_events(&events, &terms);
            self.events = events;
        }
        if self.config.reset_fast {
            self.fast.reset_column(j, &self.state.zero_state);
            self.state.stats.fast_resets += 1;
        }
        self.switch_chopper(j, sample == period);
    }

    /// The column chopper after its read: random (cttv2) or at the end of
    /// each period (agad).
    fn switch_chopper(&mut self, j: usize, period_end: bool) {
        let p = self.chopper_probability;
        if p <= 0.0 || j + 1 == self.state.in_chopper.len() {
            // No choppers, or the bias column (constant drive, unchopped).
            return;
        }
        let flip = if self.chopper_random {
            self.rng.gen::<f32>() < p
        } else {
            period_end
        };
        if flip {
            self.state.in_chopper[j] = !self.state.in_chopper[j];
            self.state.switched[j] = true;
            self.state.stats.chopper_flips += 1;
        }
    }

    /// The statistics for the layer's hardware report.
    pub(super) fn stats(&self) -> TransferStats {
        TransferStats {
            hidden_abs_max: self.state.hidden.iter().fold(0.0f32, |m, h| m.max(h.abs())) as f64,
            fast_array: Box::new(self.fast.layer_stats()),
            ..self.state.stats.clone()
        }
    }

    /// The serialisable state.
    pub(super) fn snapshot(&self) -> Option<TransferSnapshot> {
        Some(TransferSnapshot {
            fast: self.fast.device_state_json()?,
            state: self.state.clone(),
        })
    }

    /// Restores [`Transfer::snapshot`].
    pub(super) fn restore(&mut self, s: &TransferSnapshot) -> Result<()> {
        let (new, old) = (&s.state, &self.state);
        let sizes_match = new.zero.len() == old.zero.len()
            && new.hidden.len() == old.hidden.len()
            && new.in_chopper.len() == old.in_chopper.len()
            && new.out_chopper.len() == old.out_chopper.len()
            && new.mean.len() == old.mean.len()
            && new.past_mean.len() == old.past_mean.len()
            && new.switched.len() == old.switched.len()
            && new.next_column < old.in_chopper.len();
        if !sizes_match {
            bail!("crossbar device state: the transfer state (A, H, choppers) does not fit this layer or algorithm");
        }
        self.fast
            .restore_devices(&s.fast)
            .context("the fast array A")?;
        self.state.clone_from(&s.state);
        Ok(())
    }

    /// The random streams.
    pub(super) fn streams(&self) -> Option<TransferStreams> {
        Some(TransferStreams {
            fast: self.fast.continuation_state_json()?,
            chopper: self.rng.clone(),
        })
    }

    /// Restores [`Transfer::streams`].
    pub(super) fn restore_streams(&mut self, s: TransferStreams) -> Result<()> {
        self.fast.restore_continuation(&s.fast)?;
        self.rng = s.chopper;
        Ok(())
    }

    /// Sets `A`'s clock forward with the layer's.
    pub(super) fn advance_clock(&mut self, seconds: f64) {
        self.fast.advance_clock(seconds);
    }
}

/// Reads per chopper period, `max(⌈1/p⌉, 2)` (aihwkit `getNumInChopSamples`;
/// 1 without choppers).
fn chopper_period(p: f32) -> u64 {
    if p > 0.0 {
        ((1.0 / p).ceil() as u64).max(2)
    } else {
        1
    }
}

impl Crossbar {
    /// One-hot read of column `j` (bias column `n_in`) through the forward
    /// periphery: the DAC drives line `j` at full scale and no other (the
    /// bias line included), the column's read noise and the output noise
    /// are added, the ADC converts; `out` gets the `n_out` outputs in
    /// weight units. Counted as one forward read of one sample.
    pub(super) fn read_column(&mut self, j: usize, out: &mut Vec<f32>) {
        self.ensure_cache();
        let n_out = self.n_out;
        out.clear();
        if self.lines.is_some() {
            self.line_column(j, out);
        } else if j < self.n_in {
            out.extend_from_slice(&self.w_read.as_slice()[j * n_out..(j + 1) * n_out]);
        } else {
            out.extend_from_slice(self.b_read.as_slice());
        }
        self.stats.forward_reads += 1;
        self.stats.forward_samples += 1;
        self.stats.dac_conversions += (self.n_in + 1) as u64;
        if self.config.read_energy {
            self.ensure_line_conductances();
            self.stats.read_drive_conductance_s += self.line_conductance_in[j];
        }
        if self.ideal_read(super::ReadDirection::Forward) {
            return;
        }
        let sigma = self.model.noise.read;
        let out_noise = self.config.output_noise * self.config.w_scale;
        if sigma > 0.0 || out_noise > 0.0 {
            self.normals.resize(n_out, 0.0);
            fill_standard_normal(&mut self.read_rng, &mut self.normals);
            let squared: &[f32] = if sigma > 0.0 {
                if j < self.n_in {
                    &self.sq_read.as_slice()[j * n_out..(j + 1) * n_out]
                } else {
                    self.sq_bias.as_slice()
                }
            } else {
                &[]
            };
            let (s2, o2) = (sigma * sigma, out_noise * out_noise);
            for (i, (v, xi)) in out.iter_mut().zip(&self.normals).enumerate() {
                let var = squared.get(i).map_or(0.0, |s| s.max(0.0));
                *v += (s2 * var + o2).sqrt() * xi;
            }
        }
        let mut y = Mat::from_column_slice(n_out, 1, out);
        self.scales.clear();
        self.scales.push(1.0);
        self.adc(&mut y, super::ReadDirection::Forward);
        out.copy_from_slice(y.as_slice());
    }

    /// Programs the devices of column `j` back to `states` (idealised
    /// program-and-verify, as [`WeightArray::set_parameters`]).
    pub(super) fn reset_column(&mut self, j: usize, states: &[f32]) {
        let n_out = self.n_out;
        for idx in j * n_out..(j + 1) * n_out {
            let ip = self.plus_index(idx);
            self.devices.program(ip, states[ip]);
            if let Some(im) = self.minus_index(idx) {
                self.devices.program(im, states[im]);
            }
        }
        self.cache_valid = false;
        self.generation += 1;
    }
}
