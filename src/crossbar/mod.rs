//! The crossbar substrate: a layer's weights stored in resistive devices,
//! read through DACs and ADCs, written by the on-chip controller
//! (DESIGN.md §2, §4).
//!
//! **Array.** Layer `W_k` (`n_out × n_in`) and its bias live in one array of
//! `n_out × (n_in + 1)` cross-points; column `n_in` is the bias column,
//! driven at the constant input `bias_input` in every forward read (it
//! takes no part in the transposed read). Device state is stored
//! column-major in a [`DeviceArray`]: one 32-byte record per device, the
//! two devices of a differential pair in one 64-byte cache line, so a pulse
//! event touches one line of device state (the pulse path is what training
//! on crossbars spends most of its time on).
//!
//! **Mappings** (normalised conductances `g = (G − G_min)/(G_max − G_min)`):
//! - `differential`: `w = w_scale (g⁺ − g⁻)`, i.e. `w_scale (G⁺ − G⁻)/(G_max − G_min)`.
//!   A pulse event moves `G⁺` and `G⁻` in opposite directions, so
//!   `Δw = 2 w_scale Δg_min`; for a `one_sided` model (PCM) only `G⁺`
//!   (positive updates) or `G⁻` (negative) is potentiated, `Δw = w_scale Δg_min`.
//! - `reference`: one device per weight against a shared reference line
//!   (one fixed device per input at the model's symmetry point `g_c`):
//!   `w = 2 w_scale (g − g_ref)`, `Δw = 2 w_scale Δg_min`.
//!
//! Both mappings span `w ∈ [−w_scale, w_scale]` for nominal bounds.
//!
//! **Reads** (forward `y = W x + b`, transposed `z = Wᵀ d`):
//! 1. DAC: per sample, inputs are scaled by `α_b = max_j |x_jb|` (`abs_max`,
//!    aihwkit's noise management; the bias drive included) or by the fixed
//!    full-scale `dac_range`, clipped to `[−1, 1]` and rounded to
//!    `2^{bits−1} − 1` levels per polarity.
//! 2. The analog MVM with the read-visible conductances (drift, write noise).
//! 3. Read noise, exact in distribution: with `G → G(1 + σ ξ)` per device
//!    per read, output `i` gets Gaussian noise of variance
//!    `σ² Σ_j ((G⁺_ij)² + (G⁻_ij)²) x_j²` (weight units: `w_scale²` and
//!    the mapping factor applied) — one extra SGEMM with the cached squared
//!    conductance matrix instead of a random number per device (DESIGN.md §2).
//! 4. Additive output noise `σ_out ξ` (units of `w_scale` at full-scale input);
//!    read and output noise are independent Gaussians, drawn as one with the
//!    summed variance.
//! 5. ADC: clip to `±adc_range` (saturation, counted) and round to
//!    `2^{bits−1} − 1` levels per polarity; rescale by `α_b`.
//!
//! With all periphery switched off and no read noise the read is a plain
//! SGEMM, so an `ideal` device with `exact` writes reproduces digital SGD
//!
//! **Parts.** [`config`] holds the settings and their checks; `mapping`
//! weight ↔ conductance; `periphery` the DAC and ADC of each read
//! direction; `read_model` the analog product with read and output noise;
//! `counters` the read and converter counters (read energy) and the
//! layer's typed hardware statistics ([`WeightArray::hardware_stats`]);
//! `cache` the read caches a write keeps up to date; `write` the
//! controller's writes; `inference` programming with error, write and
//! verify, accumulated read noise and the compensation readout of
//! `dyadsim infer`; [`transfer`] the Tiki-Taka family (`crossbar.algorithm`:
//! a fast array, the hidden matrix and the transfers into the weights); `state` the serialisable device and continuation
//! state. The vector kernels of the direct product are in
//! `kernels::gather`.

mod cache;
pub mod config;
mod counters;
pub mod ir_drop;
mod inference;
mod mapping;
mod periphery;
mod read_model;
mod state;
pub mod transfer;
mod write;

pub use config::{CrossbarConfig, InputScaling, IrDropSolver, Mapping};
pub use counters::ReadStats;
pub use inference::{DriftReference, WriteVerify, WriteVerifyStats, CALIBRATION_VECTORS};
pub use periphery::{Converters, Periphery, ReadDirection};
pub use state::CrossbarState;
pub use transfer::{Algorithm, TransferConfig};

use crate::controller::{Controller, ControllerStats, PulseEvent};
use crate::devices::array::NoiseRng;
use crate::devices::{DeviceArray, DeviceModel, Histogram};
use crate::linalg::{ensure_shape, gemm, Mat, Op, Vector};
use crate::substrate::{LayerHardwareStats, OuterProductGradient, WeightArray};
use anyhow::{bail, Result};
use mapping::CrossPointSplit;
use rand::SeedableRng;
use read_model::{mvm, RepeatRead};

/// The seed of random stream `k` of a layer seeded with `seed` (1 devices,
/// 3 controller, 4 read noise, 5 and 6 the Tiki-Taka fast array and choppers).
pub(crate) fn stream_seed(seed: u64, k: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k)
}

/// A crossbar layer: devices, periphery and controller.
#[derive(Clone)]
pub struct Crossbar {
    config: CrossbarConfig,
    model: DeviceModel,
    n_out: usize,
    n_in: usize,
    /// `idx ↦ (i, j)` for the pulse path.
    split: CrossPointSplit,
    /// All devices. Differential pairs are interleaved — `G⁺` of pair `p`
    /// at `2p`, `G⁻` at `2p + 1` — so the two records of a pair share one
    /// 64-byte cache line and a pulse event touches only that line; the
    /// reference mapping has one device per cross-point at `p`.
    devices: DeviceArray,
    /// Whether devices come in pairs (differential mapping).
    paired: bool,
    /// Reference device per input line (reference mapping), normalised.
    reference: Vec<f32>,
    controller: Controller,
    /// Read-visible weights `n_out × n_in` and bias (cache, refreshed after writes).
    w_read: Mat,
    b_read: Vector,
    /// Squared conductance terms for the read-noise variance (weight units²).
    sq_read: Mat,
    sq_bias: Vector,
    cache_valid: bool,
    /// Physical conductance (S) on each input line (bias line last) and each
    /// output line, for the read-energy count: rebuilt lazily after a cache
    /// rebuild, kept up to date incrementally by writes in between.
    line_conductance_in: Vec<f64>,
    line_conductance_out: Vec<f64>,
    line_conductance_valid: bool,
    /// Read- and output-noise stream.
    read_rng: NoiseRng,
    x_scaled: Mat,
    /// The last forward read, for repeats of the same inputs while the
    /// devices are unchanged (see [`RepeatRead`]).
    repeat: RepeatRead,
    /// Bumped whenever the read caches change (writes, refreshes).
    generation: u64,
    /// Event list of per-sample stochastic writes (reused between updates).
    event_buffer: Vec<PulseEvent>,
    x_squared: Mat,
    variance: Mat,
    /// Standard normal draws of one read's noise (scratch).
    normals: Vec<f32>,
    scales: Vec<f32>,
    /// Max |x| of each sample of the read in progress (abs-max input
    /// scaling), measured once by `count_read` for itself and the DAC.
    input_peaks: Vec<f32>,
    bias_drive: Vec<f32>,
    stats: ReadStats,
    /// The DAC and ADC of each read direction.
    periphery: Periphery,
    refreshes: u64,
    /// Fast array, hidden matrix and transfer schedule (`crossbar.algorithm`
    /// other than `sgd`); the devices above are then the slow array `C`.
    transfer: Option<Box<transfer::Transfer>>,
    /// Read weights through resistive lines (`crossbar.line_resistance_ohm`
    /// or a periphery resistance > 0; `None`: ideal lines).
    lines: Option<Box<ir_drop::LineReads>>,
}

impl Crossbar {
    /// Builds an `n_out × n_in` crossbar (plus bias column) from the
    /// configuration and device overrides; `seed` seeds device variation,
    /// write noise, read noise and the controller's pulse trains.
    pub fn new(
        config: &CrossbarConfig,
        device_overrides: &toml::Table,
        n_out: usize,
        n_in: usize,
        seed: u64,
    ) -> Result<Self> {
        config.check(device_overrides)?;
        Self::new_checked(config, device_overrides, n_out, n_in, seed)
    }

    /// An `n_out × n_in` crossbar (sizes from `weights`) programmed to
    /// `weights` and `bias`, with automatic weight scaling (`w_scale = 0`)
    /// resolved from them — how a training run builds each crossbar layer,
    /// and what a caller driving one array (the Python `Crossbar`) uses.
    pub fn with_parameters(
        config: &CrossbarConfig,
        device_overrides: &toml::Table,
        weights: &Mat,
        bias: &Vector,
        seed: u64,
    ) -> Result<Self> {
        config.check(device_overrides)?;
        Self::with_parameters_checked(config, device_overrides, weights, bias, seed)
    }

    /// [`Crossbar::with_parameters`] for a configuration that already
    /// passed [`CrossbarConfig::check`].
    pub(crate) fn with_parameters_checked(
        config: &CrossbarConfig,
        device_overrides: &toml::Table,
        weights: &Mat,
        bias: &Vector,
        seed: u64,
    ) -> Result<Self> {
        let resolved = config.resolved_for(weights, bias);
        let mut array = Self::new_checked(
            &resolved,
            device_overrides,
            weights.nrows(),
            weights.ncols(),
            seed,
        )?;
        array.set_parameters(weights, bias);
        Ok(array)
    }

    /// [`Crossbar::new`] for a configuration that already passed
    /// [`CrossbarConfig::check`] (the run configuration's `Config::check`
    /// checks every section once, before any layer is built).
    pub(crate) fn new_checked(
        config: &CrossbarConfig,
        device_overrides: &toml::Table,
        n_out: usize,
        n_in: usize,
        seed: u64,
    ) -> Result<Self> {
        if config.w_scale <= 0.0 {
            bail!("crossbar.w_scale must be resolved (> 0) before building an array; see CrossbarConfig::resolved_for");
        }
        let model = config.load_model(device_overrides)?;
        let n = n_out * (n_in + 1);
        let mix = |k: u64| stream_seed(seed, k);
        let paired = config.mapping == Mapping::Differential;
        let devices = DeviceArray::new(&model, if paired { 2 * n } else { n }, mix(1));
        let factor = match (config.mapping, model.pairing.one_sided) {
            (_, true) => 1.0,
            _ => 2.0,
        };
        let dw = factor * config.w_scale * model.nominal_step();
        let controller = Controller::new(
            config.write,
            config.update,
            config.bl,
            config.update_management,
            config.lr,
            dw,
            config.bias_input,
            n_out,
            n_in,
            mix(3),
        )
        .with_pulse_trains(config.pulse_trains)
        .with_bl_management(config.bl_management);
        let reference = match config.mapping {
            Mapping::Reference => vec![model.bounds.g_center; n_in + 1],
            Mapping::Differential => Vec::new(),
        };
        let mut xb = Self {
            config: config.clone(),
            model,
            n_out,
            n_in,
            split: CrossPointSplit::new(n_out),
            devices,
            paired,
            reference,
            controller,
            w_read: Mat::zeros(n_out, n_in),
            b_read: Vector::zeros(n_out),
            sq_read: Mat::zeros(0, 0),
            sq_bias: Vector::zeros(0),
            cache_valid: false,
            line_conductance_in: Vec::new(),
            line_conductance_out: Vec::new(),
            line_conductance_valid: false,
            read_rng: NoiseRng::seed_from_u64(mix(4)),
            x_scaled: Mat::zeros(0, 0),
            repeat: RepeatRead::default(),
            generation: 0,
            event_buffer: Vec::new(),
            x_squared: Mat::zeros(0, 0),
            variance: Mat::zeros(0, 0),
            normals: Vec::new(),
            scales: Vec::new(),
            input_peaks: Vec::new(),
            bias_drive: Vec::new(),
            stats: ReadStats::default(),
            periphery: Periphery::of(config),
            refreshes: 0,
            transfer: None,
            lines: config.has_line_resistance().then(Default::default),
        };
        if config.algorithm.transfers() {
            xb.transfer = Some(Box::new(transfer::Transfer::new(
                config,
                device_overrides,
                n_out,
                n_in,
                seed,
            )?));
        }
        xb.refresh_cache();
        Ok(xb)
    }

    /// The device model.
    pub fn model(&self) -> &DeviceModel {
        &self.model
    }

    /// The configuration.
    pub fn config(&self) -> &CrossbarConfig {
        &self.config
    }

    /// The device array (see [`Crossbar::plus_index`], [`Crossbar::minus_index`]).
    pub fn devices(&self) -> &DeviceArray {
        &self.devices
    }

    /// Index in [`Crossbar::devices`] of the `G⁺` (or single) device of
    /// cross-point `idx` (column-major, bias column last).
    #[inline]
    pub fn plus_index(&self, idx: usize) -> usize {
        if self.paired {
            2 * idx
        } else {
            idx
        }
    }

    /// Index of the `G⁻` device of cross-point `idx` (differential mapping).
    #[inline]
    pub fn minus_index(&self, idx: usize) -> Option<usize> {
        self.paired.then_some(2 * idx + 1)
    }

    /// Read counters.
    pub fn read_stats(&self) -> &ReadStats {
        &self.stats
    }

    /// Controller counters.
    pub fn controller_stats(&self) -> &ControllerStats {
        self.controller.stats()
    }

    /// Nominal weight change of one pulse event.
    pub fn pulse_weight(&self) -> f32 {
        self.controller.pulse_weight()
    }

    /// Histogram of the read-visible weights (bias column included).
    pub fn weight_histogram(&self, bins: usize) -> Histogram {
        let ws = self.config.w_scale as f64;
        let n = self.n_out * (self.n_in + 1);
        Histogram::of((0..n).map(|i| self.weight_at(i)), bins, -ws * 1.2, ws * 1.2)
    }

    /// Histogram of the read-visible normalised conductances of all devices.
    pub fn conductance_histogram(&self, bins: usize) -> Histogram {
        self.devices.conductance_histogram(bins)
    }

    /// The fast array `A` of a Tiki-Taka-family layer (`None` for `sgd`).
    pub fn fast_array(&self) -> Option<&Crossbar> {
        self.transfer.as_deref().map(|t| t.fast())
    }

    /// The hidden matrix `H` of a TTv2-family layer (column-major, bias
    /// column last; pulses of the weight devices, weight units with exact writes).
    pub fn hidden_matrix(&self) -> Option<&[f32]> {
        self.transfer.as_deref().map(|t| t.hidden())
    }

    /// The column choppers of a TTv2-family layer (`true` = negative sign).
    pub fn column_choppers(&self) -> Option<&[bool]> {
        self.transfer.as_deref().map(|t| t.in_chopper())
    }

    /// Sets the device clock forward (drift acts on the next read); a
    /// Tiki-Taka layer's fast array shares the clock.
    pub fn advance_clock(&mut self, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        if let Some(t) = self.transfer.as_mut() {
            t.advance_clock(seconds);
        }
        self.devices.advance_time(seconds);
        if self.devices.drifts() {
            self.cache_valid = false;
        }
    }
}

impl WeightArray for Crossbar {
    fn clone_box(&self) -> Box<dyn WeightArray> {
        Box::new(self.clone())
    }

    fn n_out(&self) -> usize {
        self.n_out
    }

    fn n_in(&self) -> usize {
        self.n_in
    }

    fn forward(&mut self, x: &Mat, out: &mut Mat) {
        self.ensure_cache();
        self.ensure_line_reads(ReadDirection::Forward);
        let batch = x.ncols();
        ensure_shape(out, self.n_out, batch);
        self.stats.forward_reads += 1;
        self.stats.forward_samples += batch as u64;
        self.count_read(x, ReadDirection::Forward);
        if self.ideal_read(ReadDirection::Forward) {
            let (w, b) = self.read_matrices(ReadDirection::Forward);
            gemm(1.0, w, Op::N, x, Op::N, 0.0, out);
            let bias = self.config.bias_input;
            for mut col in out.column_iter_mut() {
                for (o, b) in col.iter_mut().zip(b.iter()) {
                    *o += if bias == 1.0 { *b } else { b * bias };
                }
            }
            return;
        }
        if self.read_repeat(x, out) {
            return;
        }
        self.dac(x, ReadDirection::Forward);
        let (w, b) = self.read_matrices(ReadDirection::Forward);
        mvm(w, Op::N, &self.x_scaled, out);
        // Contiguous column slices: nalgebra's column views iterate
        // element by element, which kept this loop scalar.
        let bias = b.as_slice();
        for (column, &d) in out
            .as_mut_slice()
            .chunks_exact_mut(self.n_out.max(1))
            .zip(&self.bias_drive)
        {
            for (o, w) in column.iter_mut().zip(bias) {
                *o += w * d;
            }
        }
        self.read_noise_variance(self.n_out, batch, ReadDirection::Forward);
        self.keep_for_repeat(x, out);
        self.noise_and_adc(out, ReadDirection::Forward);
    }

    fn transposed(&mut self, d: &Mat, out: &mut Mat) {
        self.ensure_cache();
        self.ensure_line_reads(ReadDirection::Transposed);
        let batch = d.ncols();
        ensure_shape(out, self.n_in, batch);
        self.stats.transposed_reads += 1;
        self.stats.transposed_samples += batch as u64;
        self.count_read(d, ReadDirection::Transposed);
        if self.ideal_read(ReadDirection::Transposed) {
            let (w, _) = self.read_matrices(ReadDirection::Transposed);
            gemm(1.0, w, Op::T, d, Op::N, 0.0, out);
            return;
        }
        self.dac(d, ReadDirection::Transposed);
        let (w, _) = self.read_matrices(ReadDirection::Transposed);
        mvm(w, Op::T, &self.x_scaled, out);
        self.analog_output(out, ReadDirection::Transposed);
    }

    fn apply_gradient(&mut self, grad: &OuterProductGradient) {
        self.write(grad);
    }

    fn weights(&self) -> Mat {
        self.read_weights()
    }

    fn bias(&self) -> Vector {
        self.read_bias()
    }

    /// Programs every pair to its target weight (idealised program-and-verify
    /// without pulses): a differential pair is centred on the mean of its two
    /// devices' symmetry points, `g± = c ± w/(2 w_scale)`; a one-sided pair
    /// starts from its lower bounds, `g± = g_lo± + max(±w, 0)/w_scale`; a
    /// single device sits at `g_ref + w/(2 w_scale)`. Bounds, levels and
    /// stuck devices apply, so the programmed weight can differ from the target.
    fn set_parameters(&mut self, weights: &Mat, bias: &Vector) {
        self.program(weights, bias);
    }

    fn hardware_stats(&self) -> Option<LayerHardwareStats> {
        Some(self.layer_stats())
    }

    fn advance_time(&mut self, seconds: f64) {
        self.advance_clock(seconds);
    }

    fn device_state(&self) -> Option<serde_json::Value> {
        self.device_state_json()
    }

    fn continuation_state(&self) -> Option<serde_json::Value> {
        self.continuation_state_json()
    }

    fn restore_continuation_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.restore_continuation(state)
    }

    fn restore_device_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.restore_devices(state)
    }
}
