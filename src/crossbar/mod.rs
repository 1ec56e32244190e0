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
//! bit for bit (tested).

use crate::check::check_positive;
use crate::controller::{
    Controller, ControllerStats, PulseEvent, PulseTrains, UpdateGranularity, WritePlan, WriteScheme,
};
use crate::devices::array::{
    prefetch, round_ties_away_from, DeviceArrayState, EventTargets, NoiseRng, WriteSink,
};
use crate::devices::{DeviceArray, DeviceModel, Histogram};
use crate::kernels::simd_builds;
use crate::linalg::{ensure_shape, gemm, max_abs_slice, Mat, Op, Vector};
use crate::random::fill_standard_normal;
use crate::substrate::{OuterProductGradient, WeightArray};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How weights map onto devices.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// Differential pair `w = w_scale (G⁺ − G⁻)/(G_max − G_min)`.
    #[default]
    Differential,
    /// One device against a shared reference device per input line.
    Reference,
}

/// How the DAC full scale is chosen per read.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputScaling {
    /// Scale each sample by its largest |input| (aihwkit noise management ABS_MAX).
    #[default]
    AbsMax,
    /// Fixed full scale `dac_range`; larger inputs clip.
    Fixed,
}

/// Crossbar, periphery and controller settings (TOML `[crossbar]`).
///
/// Periphery defaults are aihwkit's `PresetIOParameters` (7-bit DAC,
/// 9-bit ADC, output bound 20, output noise 0.1, ABS_MAX input scaling) and
/// `PresetUpdateParameters` (stochastic pulse trains, BL 31, update
/// management and BL management on). Set `dac_bits = adc_bits = 0`, `adc_range = 0` and
/// `output_noise = 0` for ideal periphery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrossbarConfig {
    /// Device model: a shipped name (`reram_es`, see `dyadsim devices`) or a path to a TOML file.
    pub device: String,
    /// `stochastic`, `mixed_precision` or `exact`.
    pub write: WriteScheme,
    /// Stochastic pulse-train length BL.
    pub bl: u32,
    /// Balance row and column probabilities (aihwkit update management).
    pub update_management: bool,
    /// Stochastic writes: shorten each sample's trains to the slots its
    /// largest update needs, `min(⌈η·max|δ|·max|x|/Δw⌉, bl)` (aihwkit's
    /// `update_bl_management`, on in its presets): same expected counts,
    /// shorter write phases, less count noise on small updates.
    pub bl_management: bool,
    /// Stochastic writes: `shared` (each row and column line fires one
    /// pulse train per phase, shared by its devices, as on the chip) or
    /// `independent` (a Binomial count per device, no correlation).
    pub pulse_trains: PulseTrains,
    /// Learning rate η in weight units per mini-batch (the gradient carries
    /// 1/B; on chip it is SGD through pulses, the digital optimiser is
    /// ignored). The default 0.1 is aihwkit's usual analog-SGD rate and the
    /// best or near-best of 0.01/0.1/0.2 for every shipped model but `pcm`
    /// (one-sided, which wants ≈ 0.01).
    pub lr: f32,
    /// `per_sample` or `per_batch` pulse phases.
    pub update: UpdateGranularity,
    /// `differential` or `reference`.
    pub mapping: Mapping,
    /// Weight at full conductance difference (`|w| ≤ w_scale`); 0 = automatic
    /// per layer: `w_scale_headroom × max |W_init|` rounded to the nearest power
    /// of two, so the initial weights use a fixed share of the conductance
    /// range (cf. aihwkit's weight scaling ω).
    pub w_scale: f32,
    /// Automatic `w_scale` as a multiple of the largest initial weight.
    pub w_scale_headroom: f32,
    /// `abs_max` or `fixed` DAC scaling.
    pub input_scaling: InputScaling,
    /// DAC resolution in bits (0 = no quantisation).
    pub dac_bits: u32,
    /// DAC full scale for `input_scaling = "fixed"` (input units).
    pub dac_range: f32,
    /// ADC resolution in bits (0 = no quantisation).
    pub adc_bits: u32,
    /// ADC full scale in units of `w_scale` × full-scale input (0 = no saturation).
    pub adc_range: f32,
    /// Additive output noise σ_out (same units as `adc_range`).
    pub output_noise: f32,
    /// Constant drive of the bias column.
    pub bias_input: f32,
    /// Device time elapsed per training batch (s), for drift (0 = none).
    pub time_per_batch: f64,
    /// Bins of the conductance and weight histograms in `hardware_summary`.
    pub histogram_bins: usize,
    /// Count the conductance every read drives
    /// (`reads.read_drive_conductance_s`, the measured read energy of the
    /// feasibility report). Off skips that bookkeeping — the line
    /// conductances every write has to keep up to date and a weighted sum
    /// per read, about 10 % of a crossbar training step (aihwkit-parity
    /// `constant_step` run) — and the report estimates read energy at
    /// full-scale drive instead (an upper bound). Results are otherwise
    /// unchanged.
    pub read_energy: bool,
}

impl Default for CrossbarConfig {
    fn default() -> Self {
        Self {
            device: "constant_step".into(),
            write: WriteScheme::Stochastic,
            bl: 31,
            update_management: true,
            bl_management: true,
            pulse_trains: PulseTrains::Shared,
            lr: 0.1,
            update: UpdateGranularity::PerSample,
            mapping: Mapping::Differential,
            w_scale: 0.0,
            w_scale_headroom: 1.5,
            input_scaling: InputScaling::AbsMax,
            dac_bits: 7,
            dac_range: 1.0,
            adc_bits: 9,
            adc_range: 20.0,
            output_noise: 0.1,
            bias_input: 1.0,
            time_per_batch: 0.0,
            histogram_bins: 20,
            read_energy: true,
        }
    }
}

impl CrossbarConfig {
    /// Checks the settings and that the device model (with the per-run
    /// `device` overrides) loads and suits the write scheme. Errors name
    /// the field and the allowed range.
    pub fn check(&self, device_overrides: &toml::Table) -> Result<()> {
        let model = self.load_model(device_overrides)?;
        if self.bl == 0 || self.bl > 10_000 {
            bail!("crossbar.bl = {} is out of range: 1..=10000", self.bl);
        }
        check_positive("crossbar.lr", self.lr)?;
        if !(self.w_scale.is_finite() && self.w_scale >= 0.0) {
            bail!(
                "crossbar.w_scale = {} is out of range: must be > 0 (or 0 = automatic)",
                self.w_scale
            );
        }
        check_positive("crossbar.w_scale_headroom", self.w_scale_headroom)?;
        for (field, bits) in [
            ("crossbar.dac_bits", self.dac_bits),
            ("crossbar.adc_bits", self.adc_bits),
        ] {
            if bits == 1 || bits > 24 {
                bail!("{field} = {bits} is out of range: 0 (off) or 2..=24");
            }
        }
        check_positive("crossbar.dac_range", self.dac_range)?;
        if !(self.adc_range.is_finite() && self.adc_range >= 0.0) {
            bail!(
                "crossbar.adc_range = {} is out of range: must be ≥ 0 (0 = no saturation)",
                self.adc_range
            );
        }
        if self.adc_bits > 0 && self.adc_range == 0.0 {
            bail!(
                "crossbar.adc_bits = {} needs crossbar.adc_range > 0",
                self.adc_bits
            );
        }
        if !(self.output_noise.is_finite() && self.output_noise >= 0.0) {
            bail!(
                "crossbar.output_noise = {} is out of range: must be ≥ 0",
                self.output_noise
            );
        }
        if !(self.bias_input.is_finite() && self.bias_input != 0.0) {
            bail!(
                "crossbar.bias_input = {} is out of range: must be finite and ≠ 0",
                self.bias_input
            );
        }
        if !(self.time_per_batch.is_finite() && self.time_per_batch >= 0.0) {
            bail!(
                "crossbar.time_per_batch = {} is out of range: must be ≥ 0 s",
                self.time_per_batch
            );
        }
        if self.histogram_bins == 0 {
            bail!("crossbar.histogram_bins must be ≥ 1");
        }
        if model.nominal_step() <= 0.0 && self.write != WriteScheme::Exact {
            bail!(
                "crossbar.write = {:?} needs pulses of finite size, but device model '{}' is continuous (dw_min = 0); use write = \"exact\" or set device.dw_min",
                self.write,
                model.name
            );
        }
        if model.pairing.one_sided && self.mapping == Mapping::Reference {
            bail!(
                "crossbar.mapping = \"reference\" is not available for the one-sided model '{}' (it needs a pair)",
                model.name
            );
        }
        Ok(())
    }

    /// This configuration with `w_scale` resolved for a layer whose initial
    /// parameters are `weights`, `bias` (automatic scaling when `w_scale = 0`).
    pub fn resolved_for(&self, weights: &Mat, bias: &Vector) -> Self {
        let mut c = self.clone();
        if c.w_scale == 0.0 {
            let m = weights.amax().max(bias.amax());
            // Rounded to the nearest power of two (in log scale, so the
            // headroom stays within a factor √2 of the setting): w ↔ g
            // conversions are then exact in binary floating point, which
            // keeps `ideal` + `exact` runs bit-identical to digital SGD.
            c.w_scale = if m.is_finite() && m > 0.0 {
                2f32.powi((self.w_scale_headroom * m).log2().round() as i32)
            } else {
                1.0
            };
        }
        c
    }

    /// Loads the configured device model with the overrides.
    pub fn load_model(&self, device_overrides: &toml::Table) -> Result<DeviceModel> {
        DeviceModel::load(&self.device, device_overrides)
            .with_context(|| format!("crossbar.device = \"{}\"", self.device))
    }
}

/// Counters of the array's reads and periphery events.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReadStats {
    /// Forward MVM calls.
    pub forward_reads: u64,
    /// Samples read forward (one MVM per sample on a chip).
    pub forward_samples: u64,
    /// Transposed MVM calls.
    pub transposed_reads: u64,
    /// Samples read transposed.
    pub transposed_samples: u64,
    /// ADC conversions.
    pub adc_conversions: u64,
    /// ADC conversions that saturated.
    pub adc_saturated: u64,
    /// DAC inputs clipped (fixed scaling only).
    pub dac_clipped: u64,
    /// DAC conversions (one per driven line per sample read).
    pub dac_conversions: u64,
    /// Σ over sample reads of Σ_lines G_line·u², in siemens: the conductance
    /// each driven line sees (both devices of every pair on it, bias column
    /// included on forward reads) weighted by its squared normalised drive u
    /// (drive / full scale). Read energy is V_read²·t_read times this
    /// (E = V²·G·t per device, summed over the actual conductances).
    /// Stays 0 with `crossbar.read_energy = false` (not counted).
    pub read_drive_conductance_s: f64,
}

/// The serialisable device state of a crossbar (`--out`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CrossbarState {
    /// Device model name.
    pub device_model: String,
    /// `n_out`, `n_in` (bias column not counted).
    pub shape: (usize, usize),
    /// All devices (pairs interleaved `G⁺, G⁻` for the differential mapping).
    pub devices: DeviceArrayState,
    /// Whether devices come in pairs.
    pub paired: bool,
    /// Mixed-precision accumulator (empty otherwise).
    pub accumulator: Vec<f32>,
}

/// The positions of a crossbar's random streams (its continuation state):
/// cycle-to-cycle and write noise, the controller's pulse trains, read and
/// output noise.
#[derive(Serialize, Deserialize)]
struct CrossbarContinuation {
    device_noise: NoiseRng,
    controller: rand_xoshiro::Xoshiro256PlusPlus,
    read_noise: NoiseRng,
}

/// The constants that turn the read-visible conductances of a cross-point's
/// two devices (`G⁺, G⁻`, or the device and its reference) into its read
/// weight, read-noise term and physical conductance — the arithmetic of
/// [`Crossbar::weight_at`], [`Crossbar::squared_at`] and
/// [`Crossbar::crosspoint_conductance_s`] — and what a write updates.
#[derive(Clone, Copy, Debug)]
struct EntryTerms {
    /// `w = weight · (g₀ − g₁)`: `w_scale`, or `2 w_scale` for the reference mapping.
    weight: f32,
    /// `c² w_scale²` of the read-noise term `c² w_scale² ((g₀+o)² + (g₁+o)²)`.
    squared: f32,
    /// `o = G_min/(G_max − G_min)`.
    offset: f32,
    /// Read noise on (the squared terms are cached).
    noisy: bool,
    /// `G_min` and `G_max − G_min` (µS).
    g_min_us: f64,
    span_us: f64,
    /// Update the read caches after a write.
    refresh: bool,
    /// Update the line conductances after a write.
    track_lines: bool,
}

impl EntryTerms {
    fn of(xb: &Crossbar) -> Self {
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
    fn crosspoint_s(&self, g: [f32; 2]) -> f64 {
        let to_s = |g: f32| (self.g_min_us + g as f64 * self.span_us) * 1e-6;
        to_s(g[0]) + to_s(g[1])
    }

    /// `crosspoint_s(after) − crosspoint_s(before)`: the `G_min` terms
    /// cancel, so only the normalised changes are scaled (the differences of
    /// two `f32` are exact in `f64`), which is what a write costs per event.
    #[inline(always)]
    fn crosspoint_change_s(&self, before: [f32; 2], after: [f32; 2]) -> f64 {
        let change = |k: usize| after[k] as f64 - before[k] as f64;
        (change(0) + change(1)) * self.span_us * 1e-6
    }
}

/// The read caches and line conductances a write updates, borrowed apart
/// from the devices ([`Crossbar::write_parts`]).
struct Caches<'a> {
    split: CrossPointSplit,
    n_in: usize,
    /// `n_out · n_in`: indices from here on are the bias row's.
    weights: usize,
    w_read: &'a mut [f32],
    b_read: &'a mut [f32],
    sq_read: &'a mut [f32],
    sq_bias: &'a mut [f32],
    line_in: &'a mut [f64],
    line_out: &'a mut [f64],
}

impl Caches<'_> {
    /// Writes the read weight `w` and (with read noise) squared term `s` of
    /// cross-point `idx` into the read caches.
    #[inline(always)]
    fn store(&mut self, idx: usize, w: f32, s: Option<f32>) {
        if idx < self.weights {
            self.w_read[idx] = w;
            if let Some(s) = s {
                self.sq_read[idx] = s;
            }
        } else {
            self.b_read[idx - self.weights] = w;
            if let Some(s) = s {
                self.sq_bias[idx - self.weights] = s;
            }
        }
    }

    /// Adds `delta` (S) to the line conductances of cross-point `idx`.
    #[inline(always)]
    fn add_line_conductance(&mut self, idx: usize, delta: f64) {
        let (i, j) = self.split.split(idx);
        self.line_in[j] += delta;
        if j < self.n_in {
            self.line_out[i] += delta;
        }
    }
}

/// What a pulse write updates besides the devices: as `terms` asks, the
/// read caches and the line conductances, from the device reads the write
/// returns (the same values as [`Crossbar::weight_at`],
/// [`Crossbar::squared_at`] and [`Crossbar::crosspoint_conductance_s`],
/// without reading the devices again).
struct CacheUpdate<'a> {
    terms: EntryTerms,
    /// The input lines' reference devices, with one device per cross-point
    /// (`None`: differential pairs).
    reference: Option<&'a [f32]>,
    caches: Caches<'a>,
}

impl WriteSink for CacheUpdate<'_> {
    #[inline(always)]
    fn ahead(&self, idx: usize) {
        if self.terms.refresh {
            prefetch(self.caches.w_read, idx);
            prefetch(self.caches.sq_read, idx);
        }
    }

    #[inline(always)]
    fn written(&mut self, idx: usize, mut before: [f32; 2], mut after: [f32; 2]) {
        let terms = self.terms;
        if let Some(reference) = self.reference {
            let g_ref = reference[self.caches.split.split(idx).1];
            (before[1], after[1]) = (g_ref, g_ref);
        }
        if terms.refresh {
            let w = terms.weight * (after[0] - after[1]);
            let s = terms.noisy.then(|| {
                let (gp, gm) = (after[0] + terms.offset, after[1] + terms.offset);
                terms.squared * (gp * gp + gm * gm)
            });
            self.caches.store(idx, w, s);
        }
        if terms.track_lines {
            let delta = terms.crosspoint_change_s(before, after);
            self.caches.add_line_conductance(idx, delta);
        }
    }
}

/// Splits a cross-point index `idx = j·n_out + i` into `(i, j)` by a
/// multiplication instead of a hardware division (a few cycles instead of
/// ten or more, and a pulse event needs the split once or twice):
/// `j = ⌊M·idx / 2⁶⁴⌋` with `M = ⌈2⁶⁴ / n_out⌉`, exact for every 32-bit
/// index and divisor (Lemire, Kaser & Kurz 2019, "Faster remainder by
/// direct computation", with F = 64 fraction bits for N = 32-bit operands).
#[derive(Clone, Copy, Debug)]
struct CrossPointSplit {
    n_out: u64,
    /// `⌈2⁶⁴ / n_out⌉`, or 0 for `n_out = 1` (where it is 2⁶⁴).
    multiplier: u64,
}

impl CrossPointSplit {
    fn new(n_out: usize) -> Self {
        let n_out = n_out.max(1) as u64;
        Self {
            n_out,
            multiplier: if n_out == 1 { 0 } else { u64::MAX / n_out + 1 },
        }
    }

    /// `(idx mod n_out, idx div n_out)` for `idx < 2³²` (pulse events carry
    /// 32-bit indices).
    #[inline(always)]
    fn split(&self, idx: usize) -> (usize, usize) {
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

/// Σ_j G_j u_j² with u_j = clamp(x_j / scale, −1, 1): the conductance a
/// read drives, in units of full-scale drive (the read-energy count of
/// [`Crossbar::read_stats`]). Eight partial sums rather than one running
/// sum, so that the loop is not one long chain of dependent f64 adds.
#[inline(always)]
fn drive_conductance_portable(lines: &[f64], x: &[f32], scale: f32) -> f64 {
    const LANES: usize = 8;
    let mut partial = [0.0f64; LANES];
    let mut lines_chunks = lines.chunks_exact(LANES);
    let mut x_chunks = x.chunks_exact(LANES);
    for (g, v) in (&mut lines_chunks).zip(&mut x_chunks) {
        for k in 0..LANES {
            let u = (v[k] / scale).clamp(-1.0, 1.0) as f64;
            partial[k] += g[k] * u * u;
        }
    }
    let mut total: f64 = partial.iter().sum();
    for (g, &v) in lines_chunks.remainder().iter().zip(x_chunks.remainder()) {
        let u = (v / scale).clamp(-1.0, 1.0) as f64;
        total += g * u * u;
    }
    total
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
    refreshes: u64,
}

/// The last forward read of a crossbar: its inputs, noise-free output and
/// read-noise variance. A read of identical inputs while the devices are
/// unchanged has the same noise-free output and variance, so only the noise
/// is drawn again — DP/DP⊤ inference re-reads the first layer with the same
/// input `x` in every sweep. Exact: the repeated read has the same
/// distribution as a fresh one.
#[derive(Clone, Debug, Default)]
struct RepeatRead {
    input: Mat,
    clean: Mat,
    variance: Mat,
    scales: Vec<f32>,
    /// Device generation of the stored read (`None` = nothing stored).
    generation: Option<u64>,
    /// Device generation of the last forward read.
    last_forward: Option<u64>,
}

impl RepeatRead {
    fn matches(&self, x: &Mat, generation: u64) -> bool {
        self.generation == Some(generation)
            && self.input.shape() == x.shape()
            && self.input.as_slice() == x.as_slice()
    }

    /// Whether this is the second (or later) forward read with the devices
    /// unchanged (`generation`), and so worth keeping for the reads after
    /// it: one read per write (back-propagation, every layer but DP's
    /// first) then never pays for the copy, and a run of repeats pays one
    /// full read more. Results do not change: the kept read is a cache, and
    /// a fresh read draws the same noise as a repeated one.
    fn read_again(&mut self, generation: u64) -> bool {
        let again = self.last_forward == Some(generation);
        self.last_forward = Some(generation);
        again
    }

    fn store(&mut self, x: &Mat, clean: &Mat, variance: &Mat, scales: &[f32], generation: u64) {
        self.input.clone_from(x);
        self.clean.clone_from(clean);
        self.variance.clone_from(variance);
        self.scales.clear();
        self.scales.extend_from_slice(scales);
        self.generation = Some(generation);
    }
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
        if config.w_scale <= 0.0 {
            bail!("crossbar.w_scale must be resolved (> 0) before building an array; see CrossbarConfig::resolved_for");
        }
        let model = config.load_model(device_overrides)?;
        let n = n_out * (n_in + 1);
        let mix = |k: u64| seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k);
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
            refreshes: 0,
        };
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

    /// Mapping factor `c` in `w = c · w_scale · (g − g')`.
    fn map_factor(&self) -> f32 {
        match self.config.mapping {
            Mapping::Differential => 1.0,
            Mapping::Reference => 2.0,
        }
    }

    /// Read-visible weight of device (pair) `idx` (column-major, bias column last).
    #[inline]
    fn weight_at(&self, idx: usize) -> f32 {
        let ws = self.config.w_scale;
        if self.paired {
            ws * (self.devices.visible(2 * idx) - self.devices.visible(2 * idx + 1))
        } else {
            2.0 * ws * (self.devices.visible(idx) - self.reference[idx / self.n_out])
        }
    }

    /// Read-noise weight of device (pair) `idx`: `c² w_scale² ((g⁺+o)² + (g⁻+o)²)`.
    #[inline]
    fn squared_at(&self, idx: usize) -> f32 {
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

    /// Rebuilds the read caches from the device arrays (whole-array pass,
    /// split over input lines with rayon).
    fn refresh_cache(&mut self) {
        let n_out = self.n_out;
        let n_in = self.n_in;
        let noisy = self.model.noise.read > 0.0;
        let mut w = std::mem::replace(&mut self.w_read, Mat::zeros(0, 0));
        ensure_shape(&mut w, n_out, n_in);
        let this = &*self;
        if n_out > 0 {
            w.as_mut_slice()
                .par_chunks_mut(n_out)
                .enumerate()
                .for_each(|(j, col)| {
                    for (i, v) in col.iter_mut().enumerate() {
                        *v = this.weight_at(i + j * n_out);
                    }
                });
        }
        let b = Vector::from_fn(n_out, |i, _| this.weight_at(i + n_in * n_out));
        let (sq, sqb) = if noisy {
            let mut sq = Mat::zeros(n_out, n_in);
            if n_out > 0 {
                sq.as_mut_slice()
                    .par_chunks_mut(n_out)
                    .enumerate()
                    .for_each(|(j, col)| {
                        for (i, v) in col.iter_mut().enumerate() {
                            *v = this.squared_at(i + j * n_out);
                        }
                    });
            }
            let sqb = Vector::from_fn(n_out, |i, _| this.squared_at(i + n_in * n_out));
            (sq, sqb)
        } else {
            (Mat::zeros(0, 0), Vector::zeros(0))
        };
        self.w_read = w;
        self.b_read = b;
        self.sq_read = sq;
        self.sq_bias = sqb;
        self.cache_valid = true;
        self.generation += 1;
        self.line_conductance_valid = false;
    }

    /// Physical conductance (S) of the cross-point `idx`: G⁺ + G⁻ of a pair,
    /// or the device plus its line's reference device.
    fn crosspoint_conductance_s(&self, idx: usize) -> f64 {
        EntryTerms::of(self).crosspoint_s(self.crosspoint_reads(idx))
    }

    /// Read-visible normalised conductances of the two devices of
    /// cross-point `idx` (`G⁺, G⁻`, or the device and its reference).
    #[inline]
    fn crosspoint_reads(&self, idx: usize) -> [f32; 2] {
        if self.paired {
            [
                self.devices.visible(2 * idx),
                self.devices.visible(2 * idx + 1),
            ]
        } else {
            [self.devices.visible(idx), self.reference[idx / self.n_out]]
        }
    }

    fn ensure_line_conductances(&mut self) {
        if self.line_conductance_valid {
            return;
        }
        let (n_out, n_in) = (self.n_out, self.n_in);
        let terms = EntryTerms::of(self);
        let mut line_in = vec![0.0f64; n_in + 1];
        let mut line_out = vec![0.0f64; n_out];
        for (j, line) in line_in.iter_mut().enumerate() {
            for (i, out) in line_out.iter_mut().enumerate() {
                let g = terms.crosspoint_s(self.crosspoint_reads(i + j * n_out));
                *line += g;
                if j < n_in {
                    *out += g;
                }
            }
        }
        self.line_conductance_in = line_in;
        self.line_conductance_out = line_out;
        self.line_conductance_valid = true;
    }

    /// Counts the DAC conversions and the drive-weighted line conductance
    /// of one read of `x` (lines × batch); `forward` reads also drive the bias line.
    /// Every read starts here: with abs-max input scaling it also measures
    /// each sample's max |x| into `input_peaks`, which the DAC then uses.
    fn count_read(&mut self, x: &Mat, forward: bool) {
        self.stats.dac_conversions += (x.len() + if forward { x.ncols() } else { 0 }) as u64;
        let fixed = self.config.input_scaling == InputScaling::Fixed;
        self.input_peaks.clear();
        if !fixed {
            self.input_peaks.extend(
                x.as_slice()
                    .chunks_exact(x.nrows().max(1))
                    .map(max_abs_slice),
            );
        }
        if !self.config.read_energy {
            return;
        }
        self.ensure_line_conductances();
        let lines = if forward {
            &self.line_conductance_in
        } else {
            &self.line_conductance_out
        };
        let range = self.config.dac_range;
        let mut total = 0.0f64;
        for (b, col) in x.as_slice().chunks_exact(x.nrows().max(1)).enumerate() {
            let scale = if fixed { range } else { self.input_peaks[b] };
            if scale > 0.0 {
                total += drive_conductance(&lines[..col.len()], col, scale);
            }
            if forward {
                // The bias line is driven at full scale.
                total += lines[x.nrows()];
            }
        }
        self.stats.read_drive_conductance_s += total;
    }

    /// Updates the cache entry of one device (pair) after a write (the
    /// caller keeps the line conductances up to date).
    #[inline]
    fn refresh_entry(&mut self, idx: usize) {
        let w = self.weight_at(idx);
        let noisy = self.model.noise.read > 0.0;
        let s = if noisy { self.squared_at(idx) } else { 0.0 };
        self.store_entry(idx, w, noisy.then_some(s));
    }

    /// Writes the read weight `w` and (with read noise) squared term `s` of
    /// cross-point `idx` into the read caches.
    fn store_entry(&mut self, idx: usize, w: f32, s: Option<f32>) {
        self.write_parts().2.store(idx, w, s);
    }

    /// Adds `delta` (S) to the line conductances of cross-point `idx`.
    fn add_line_conductance(&mut self, idx: usize, delta: f64) {
        self.write_parts().2.add_line_conductance(idx, delta);
    }

    /// The devices, the reference devices (one device per cross-point) and
    /// the caches a write updates, borrowed apart so that the devices can
    /// report into the caches.
    fn write_parts(&mut self) -> (&mut DeviceArray, Option<&[f32]>, Caches<'_>) {
        let Self {
            devices,
            paired,
            reference,
            w_read,
            b_read,
            sq_read,
            sq_bias,
            line_conductance_in,
            line_conductance_out,
            split,
            n_in,
            n_out,
            ..
        } = self;
        let caches = Caches {
            split: *split,
            n_in: *n_in,
            weights: *n_out * *n_in,
            w_read: w_read.as_mut_slice(),
            b_read: b_read.as_mut_slice(),
            sq_read: sq_read.as_mut_slice(),
            sq_bias: sq_bias.as_mut_slice(),
            line_in: line_conductance_in,
            line_out: line_conductance_out,
        };
        let reference = (!*paired).then_some(reference.as_slice());
        (devices, reference, caches)
    }

    fn ensure_cache(&mut self) {
        if !self.cache_valid {
            self.refresh_cache();
        }
    }

    /// What a pulse write updates besides the devices (read caches and line
    /// conductances, unless drift makes reads depend on the clock).
    fn write_terms(&self) -> EntryTerms {
        let drifting = self.devices.drifts();
        EntryTerms {
            refresh: !drifting,
            track_lines: !drifting && self.line_conductance_valid,
            ..EntryTerms::of(self)
        }
    }

    /// Applies pulse events in order ([`DeviceArray::apply_events`]), with
    /// the caches updated as `terms` asks ([`CacheUpdate`]).
    fn apply_events(&mut self, events: &[PulseEvent], terms: &EntryTerms) {
        let targets = if self.paired {
            EventTargets::Pairs {
                one_sided: self.model.pairing.one_sided,
            }
        } else {
            EventTargets::Devices
        };
        let (devices, reference, caches) = self.write_parts();
        let mut update = CacheUpdate {
            terms: *terms,
            reference,
            caches,
        };
        devices.apply_events(events, targets, &mut update);
    }

    /// Per-sample stochastic writes. With more than one rayon thread and more
    /// than one group of samples, a two-stage pipeline: the controller
    /// samples the coincidences group by group and hands each group's events
    /// over a channel to the devices, which take them while the next group
    /// is sampled. Pulse trains are open-loop, so the events and their order
    /// — and hence the result, bit for bit — are those of planning the whole
    /// batch first (tested for 1 and 2 threads).
    fn apply_pipelined(&mut self, grad: &OuterProductGradient) {
        const GROUP: usize = 4;
        let batch = grad.left.ncols();
        let mut controller = std::mem::replace(&mut self.controller, Controller::placeholder());
        controller.begin_update(grad);
        let terms = self.write_terms();
        if batch <= GROUP || rayon::current_num_threads() < 2 {
            // Nothing to overlap (or no core to overlap on): no hand-over cost.
            let mut events = std::mem::take(&mut self.event_buffer);
            events.clear();
            controller.plan_samples(grad, 0..batch, &mut events);
            self.apply_events(&events, &terms);
            self.event_buffer = events;
        } else {
            let (sender, receiver) = std::sync::mpsc::channel::<Vec<PulseEvent>>();
            let controller = &mut controller;
            rayon::join(
                move || {
                    for start in (0..batch).step_by(GROUP) {
                        let mut events = Vec::new();
                        controller.plan_samples(
                            grad,
                            start..(start + GROUP).min(batch),
                            &mut events,
                        );
                        if sender.send(events).is_err() {
                            break;
                        }
                    }
                    // Dropping the sender ends the applying loop.
                },
                || {
                    // Unbounded channel: if no other thread takes this half,
                    // it runs after the sampling half and drains the queue.
                    for events in receiver {
                        self.apply_events(&events, &terms);
                    }
                },
            );
        }
        self.controller = controller;
    }

    /// Bookkeeping after a write: drift invalidation, PCM refresh, clock.
    fn after_write(&mut self) {
        if self.devices.drifts() {
            // Reads depend on the clock: rebuild everything on the next read.
            self.cache_valid = false;
            self.line_conductance_valid = false;
        }
        if self.model.pairing.one_sided && self.model.pairing.refresh_threshold > 0.0 {
            self.refresh_one_sided();
            self.cache_valid = false;
        }
        self.advance_clock(self.config.time_per_batch);
        // The update is over: its unused pooled noise draws go, so that the
        // saved stream position is the whole noise state (`--resume`).
        self.devices.end_write();
    }

    /// One-sided pairs: RESET both devices of a pair whose device passed the
    /// refresh threshold and re-program the weight with SET pulses
    /// (iterative program-and-verify on the programmed state).
    fn refresh_one_sided(&mut self) {
        let thr = self.model.pairing.refresh_threshold;
        if !self.model.pairing.one_sided || thr <= 0.0 || !self.paired {
            return;
        }
        let step = self.model.nominal_step();
        let budget = (4.0 / step).ceil() as usize;
        let d = &mut self.devices;
        let position = |a: &DeviceArray, i: usize| {
            let (lo, hi) = a.bounds(i);
            (a.visible(i) - lo) / (hi - lo)
        };
        for pair in 0..d.len() / 2 {
            let (ip, im) = (2 * pair, 2 * pair + 1);
            if position(d, ip) <= thr && position(d, im) <= thr {
                continue;
            }
            if d.is_stuck(ip) || d.is_stuck(im) {
                continue;
            }
            let target = d.visible(ip) - d.visible(im);
            let (lp, _) = d.bounds(ip);
            let (lm, _) = d.bounds(im);
            d.program(ip, lp);
            d.program(im, lm);
            let (dev, goal) = if target >= 0.0 {
                (ip, lp + target)
            } else {
                (im, lm - target)
            };
            for _ in 0..budget {
                if d.conductance(dev) >= goal - 0.5 * step {
                    break;
                }
                d.pulse(dev, 1);
                if d.is_worn_out(dev) {
                    break;
                }
            }
            self.refreshes += 1;
        }
    }

    /// Scales, clips and quantises the inputs of a read (DAC), filling
    /// `x_scaled` and the per-sample scales `α_b`. For forward reads the bias
    /// drive (`bias_input / α_b`, quantised) goes to `bias_drive`. Runs
    /// after [`Crossbar::count_read`] of the same `x` (its `input_peaks`).
    fn dac(&mut self, x: &Mat, with_bias: bool) {
        let (n, batch) = x.shape();
        ensure_shape(&mut self.x_scaled, n, batch);
        self.scales.clear();
        self.bias_drive.clear();
        let levels = if self.config.dac_bits >= 2 {
            ((1u32 << (self.config.dac_bits - 1)) - 1) as f32
        } else {
            0.0
        };
        let inv_levels = if levels > 0.0 { 1.0 / levels } else { 0.0 };
        let bias = self.config.bias_input;
        let mut clipped = 0u64;
        let rows = n.max(1);
        for (b, (col, scaled)) in x
            .as_slice()
            .chunks_exact(rows)
            .zip(self.x_scaled.as_mut_slice().chunks_exact_mut(rows))
            .enumerate()
        {
            let alpha = match self.config.input_scaling {
                InputScaling::AbsMax => {
                    // Measured by `count_read` for this same read.
                    let m = self.input_peaks[b];
                    let m = if with_bias { m.max(bias.abs()) } else { m };
                    if m > 0.0 && m.is_finite() {
                        m
                    } else {
                        1.0
                    }
                }
                InputScaling::Fixed => self.config.dac_range,
            };
            self.scales.push(alpha);
            let scale = DacScale {
                inv_alpha: 1.0 / alpha,
                levels,
                inv_levels,
            };
            let mut column_clipped = dac_column(col, scaled, scale);
            if with_bias {
                // The bias line goes through the same conversion.
                let mut drive = 0.0;
                column_clipped +=
                    dac_column_portable(&[bias], std::slice::from_mut(&mut drive), scale);
                self.bias_drive.push(drive);
            }
            clipped += column_clipped as u64;
        }
        self.stats.dac_clipped += clipped;
    }

    /// Read noise, output noise, ADC and rescaling of `y` (`n_out' × B`, in
    /// weight units at scaled input), for the read whose scaled inputs are in
    /// `x_scaled`.
    fn analog_output(&mut self, y: &mut Mat, transposed: bool) {
        self.read_noise_variance(y.nrows(), y.ncols(), transposed);
        self.noise_and_adc(y);
    }

    /// `variance ← Σ_j S_ij x̃_jb²` (forward: plus the bias line's term) for
    /// the scaled inputs in `x_scaled`: one SGEMM with the squared-conductance
    /// terms (DESIGN.md §2). Nothing without read noise.
    fn read_noise_variance(&mut self, rows: usize, batch: usize, transposed: bool) {
        if self.model.noise.read > 0.0 {
            // Var(y_ib) = σ² Σ_j S_ij x̃_jb² : one SGEMM with the squared terms.
            ensure_shape(&mut self.x_squared, self.x_scaled.nrows(), batch);
            for (d, s) in self
                .x_squared
                .as_mut_slice()
                .iter_mut()
                .zip(self.x_scaled.as_slice())
            {
                *d = s * s;
            }
            ensure_shape(&mut self.variance, rows, batch);
            let op = if transposed { Op::T } else { Op::N };
            mvm(&self.sq_read, op, &self.x_squared, &mut self.variance);
            if !transposed {
                for (column, &drive) in self
                    .variance
                    .as_mut_slice()
                    .chunks_exact_mut(rows.max(1))
                    .zip(&self.bias_drive)
                {
                    let d2 = drive * drive;
                    for (v, s) in column.iter_mut().zip(self.sq_bias.as_slice()) {
                        *v += s * d2;
                    }
                }
            }
        }
    }

    /// Adds read noise (variance `σ² · variance`) and output noise to `y`,
    /// then converts it with the ADC and rescales by the input scales.
    fn noise_and_adc(&mut self, y: &mut Mat) {
        let (rows, batch) = y.shape();
        let sigma = self.model.noise.read;
        let ws = self.config.w_scale;
        let out_noise = self.config.output_noise * ws;
        if sigma > 0.0 {
            // Read noise and output noise are independent Gaussians: one draw
            // with the summed variance σ² Var + σ_out² has the same law.
            // The draws come first, so the arithmetic loop vectorises.
            let (sigma2, out2) = (sigma * sigma, out_noise * out_noise);
            self.normals.resize(rows * batch, 0.0);
            fill_standard_normal(&mut self.read_rng, &mut self.normals);
            for ((yv, var), xi) in y
                .as_mut_slice()
                .iter_mut()
                .zip(self.variance.as_slice())
                .zip(&self.normals)
            {
                *yv += (sigma2 * var.max(0.0) + out2).sqrt() * xi;
            }
        } else if out_noise > 0.0 {
            self.normals.resize(rows * batch, 0.0);
            fill_standard_normal(&mut self.read_rng, &mut self.normals);
            for (yv, xi) in y.as_mut_slice().iter_mut().zip(&self.normals) {
                *yv += out_noise * xi;
            }
        }
        let range = self.config.adc_range;
        let levels = if self.config.adc_bits >= 2 {
            ((1u32 << (self.config.adc_bits - 1)) - 1) as f32
        } else {
            0.0
        };
        let mut saturated = 0u64;
        let inv_ws = 1.0 / ws;
        // ADC grid: `levels` steps of `range/levels` per polarity.
        let (to_grid, from_grid) = if levels > 0.0 {
            (levels / range, range / levels)
        } else {
            (0.0, 0.0)
        };
        for (column, &scale) in y
            .as_mut_slice()
            .chunks_exact_mut(rows.max(1))
            .zip(&self.scales)
        {
            let conversion = AdcScale {
                inv_ws,
                range,
                to_grid,
                from_grid,
                gain: ws * scale,
            };
            saturated += adc_column(column, conversion) as u64;
        }
        self.stats.adc_conversions += (rows * batch) as u64;
        self.stats.adc_saturated += saturated;
    }

    /// Whether the periphery and devices read exactly (plain SGEMM path).
    fn ideal_read(&self) -> bool {
        self.config.dac_bits == 0
            && self.config.adc_bits == 0
            && self.config.adc_range == 0.0
            && self.config.output_noise == 0.0
            && self.model.noise.read == 0.0
            && self.config.input_scaling == InputScaling::AbsMax
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

    /// Sets the device clock forward (drift acts on the next read).
    pub fn advance_clock(&mut self, seconds: f64) {
        if seconds <= 0.0 {
            return;
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
        let batch = x.ncols();
        ensure_shape(out, self.n_out, batch);
        self.stats.forward_reads += 1;
        self.stats.forward_samples += batch as u64;
        self.count_read(x, true);
        if self.ideal_read() {
            gemm(1.0, &self.w_read, Op::N, x, Op::N, 0.0, out);
            let bias = self.config.bias_input;
            for mut col in out.column_iter_mut() {
                for (o, b) in col.iter_mut().zip(self.b_read.iter()) {
                    *o += if bias == 1.0 { *b } else { b * bias };
                }
            }
            return;
        }
        if self.repeat.matches(x, self.generation) {
            // Same inputs, same devices: the noise-free output and the
            // read-noise variance are those of the last read; only the
            // noise (and the ADC after it) is drawn afresh.
            out.copy_from(&self.repeat.clean);
            self.variance.clone_from(&self.repeat.variance);
            self.scales.clone_from(&self.repeat.scales);
            self.noise_and_adc(out);
            return;
        }
        self.dac(x, true);
        mvm(&self.w_read, Op::N, &self.x_scaled, out);
        // Contiguous column slices: nalgebra's column views iterate
        // element by element, which kept this loop scalar.
        let bias = self.b_read.as_slice();
        for (column, &d) in out
            .as_mut_slice()
            .chunks_exact_mut(self.n_out.max(1))
            .zip(&self.bias_drive)
        {
            for (o, w) in column.iter_mut().zip(bias) {
                *o += w * d;
            }
        }
        self.read_noise_variance(self.n_out, batch, false);
        if self.repeat.read_again(self.generation) {
            self.repeat
                .store(x, out, &self.variance, &self.scales, self.generation);
        }
        self.noise_and_adc(out);
    }

    fn transposed(&mut self, d: &Mat, out: &mut Mat) {
        self.ensure_cache();
        let batch = d.ncols();
        ensure_shape(out, self.n_in, batch);
        self.stats.transposed_reads += 1;
        self.stats.transposed_samples += batch as u64;
        self.count_read(d, false);
        if self.ideal_read() {
            gemm(1.0, &self.w_read, Op::T, d, Op::N, 0.0, out);
            return;
        }
        self.dac(d, false);
        mvm(&self.w_read, Op::T, &self.x_scaled, out);
        self.analog_output(out, true);
    }

    fn apply_gradient(&mut self, grad: &OuterProductGradient) {
        self.generation += 1;
        self.ensure_cache();
        if self.controller.plans_per_sample() {
            self.apply_pipelined(grad);
            self.after_write();
            return;
        }
        match self.controller.plan(grad) {
            WritePlan::Analog(delta) => {
                let half = 0.5 / self.config.w_scale;
                let drifting = self.devices.drifts();
                if drifting {
                    // Drift invalidates the caches below; rebuilt on the next read.
                    self.line_conductance_valid = false;
                }
                let track_lines = self.line_conductance_valid;
                for (idx, &dw) in delta.iter().enumerate() {
                    if dw == 0.0 {
                        continue;
                    }
                    let old = if track_lines {
                        self.crosspoint_conductance_s(idx)
                    } else {
                        0.0
                    };
                    let dg = dw * half;
                    if self.paired {
                        self.devices.nudge(2 * idx, dg);
                        self.devices.nudge(2 * idx + 1, -dg);
                    } else {
                        self.devices.nudge(idx, dg);
                    }
                    self.refresh_entry(idx);
                    if track_lines {
                        let new = self.crosspoint_conductance_s(idx);
                        self.add_line_conductance(idx, new - old);
                    }
                }
            }
            WritePlan::Pulses(events) => {
                let terms = self.write_terms();
                self.apply_events(&events, &terms);
                self.controller.recycle(events);
            }
        }
        self.after_write();
    }

    fn weights(&self) -> Mat {
        Mat::from_fn(self.n_out, self.n_in, |i, j| {
            self.weight_at(i + j * self.n_out)
        })
    }

    fn bias(&self) -> Vector {
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
    fn set_parameters(&mut self, weights: &Mat, bias: &Vector) {
        assert_eq!(
            weights.shape(),
            (self.n_out, self.n_in),
            "set_parameters: shape"
        );
        assert_eq!(bias.len(), self.n_out, "set_parameters: bias length");
        let ws = self.config.w_scale;
        let n_out = self.n_out;
        let center = |a: &DeviceArray, i: usize, gc: f32, bounded: bool| {
            if bounded {
                let (lo, hi) = a.bounds(i);
                lo + gc * (hi - lo)
            } else {
                gc
            }
        };
        let (gc, bounded, one_sided) = (
            self.model.bounds.g_center,
            self.model.bounds.bounded,
            self.model.pairing.one_sided,
        );
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
                let c = 0.5 * (center(d, ip, gc, bounded) + center(d, im, gc, bounded));
                let half = w * (0.5 / ws);
                d.program(ip, c + half);
                d.program(im, c - half);
            }
        }
        self.refresh_cache();
    }

    fn hardware_summary(&self) -> Option<serde_json::Value> {
        let n_cross = self.n_out * (self.n_in + 1);
        let arrays: [&DeviceArray; 1] = [&self.devices];
        let (mut up, mut down) = (0u64, 0u64);
        let (mut low, mut high, mut worn) = (0usize, 0usize, 0usize);
        let (mut gmin, mut gmax) = (f32::INFINITY, f32::NEG_INFINITY);
        let mut max_pulses = 0u32;
        for a in &arrays {
            let (u, d) = a.pulse_totals();
            up += u;
            down += d;
            let (l, h, w) = a.fault_counts();
            low += l;
            high += h;
            worn += w;
            let (mn, mx) = a.conductance_range();
            gmin = gmin.min(mn);
            gmax = gmax.max(mx);
            max_pulses = max_pulses.max(a.max_pulse_count());
        }
        let devices = self.devices.len();
        let span_us = self.model.conductance.g_max_us - self.model.conductance.g_min_us;
        let to_us = |g: f32| self.model.conductance.g_min_us + g as f64 * span_us;
        let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
        let bins = self.config.histogram_bins;
        let weights_now = (0..n_cross).map(|i| self.weight_at(i));
        let w_min = weights_now.clone().fold(f32::INFINITY, f32::min);
        let w_max = weights_now.fold(f32::NEG_INFINITY, f32::max);
        let cs = self.controller.stats();
        let mut reads = serde_json::json!(self.stats);
        if !self.config.read_energy {
            // Not counted (`crossbar.read_energy = false`): no figure rather
            // than a zero the feasibility report would take for a measurement.
            reads["read_drive_conductance_s"] = serde_json::Value::Null;
        }
        Some(serde_json::json!({
            "substrate": "crossbar",
            "device_model": self.model.name,
            "mapping": self.config.mapping,
            "write": self.config.write,
            "update": self.config.update,
            "shape": [self.n_out, self.n_in + 1],
            "devices": devices,
            "pulse_weight": self.controller.pulse_weight(),
            "pulses_applied": up + down,
            "pulses_up": up,
            "pulses_down": down,
            // Wear: lifetime per-device counters (carried over by `--resume`),
            // while `pulses_applied`/`_up`/`_down` count this run's pulses.
            "pulses_per_device_mean": self.devices.total_pulse_count() as f64 / devices.max(1) as f64,
            "pulses_per_device_max": max_pulses,
            "pulse_energy_j": if self.model.cost.pulse_energy_pj > 0.0 { Some((up + down) as f64 * self.model.cost.pulse_energy_pj * 1e-12) } else { None },
            "devices_stuck": low + high + worn,
            "devices_stuck_at_min": low,
            "devices_stuck_at_max": high,
            "devices_worn_out": worn,
            "conductance_range_used": {
                "min_normalised": finite(gmin as f64),
                "max_normalised": finite(gmax as f64),
                "fraction_of_range": finite((gmax - gmin) as f64),
                "min_us": finite(to_us(gmin)),
                "max_us": finite(to_us(gmax)),
            },
            "weight_range": [finite(w_min as f64), finite(w_max as f64)],
            "reads": reads,
            "adc_saturation_fraction": if self.stats.adc_conversions > 0 { Some(self.stats.adc_saturated as f64 / self.stats.adc_conversions as f64) } else { None },
            "controller": cs,
            // Write time for the feasibility report (stochastic phases only;
            // the dense schemes' slots depend on the write circuit).
            "update_pulse_slots": (self.config.write == WriteScheme::Stochastic).then_some(cs.pulse_slots),
            "mean_bit_length": (cs.pulse_slots > 0 && cs.pulse_phases > 0).then(|| cs.pulse_slots as f64 / cs.pulse_phases as f64),
            "one_sided_refreshes": self.refreshes,
            "device_time_s": self.devices.time(),
            "conductance_histogram": self.conductance_histogram(bins),
            "weight_histogram": self.weight_histogram(bins),
        }))
    }

    fn advance_time(&mut self, seconds: f64) {
        self.advance_clock(seconds);
    }

    fn device_state(&self) -> Option<serde_json::Value> {
        let state = CrossbarState {
            device_model: self.model.name.clone(),
            shape: (self.n_out, self.n_in),
            devices: self.devices.state(),
            paired: self.paired,
            accumulator: self.controller.accumulator().to_vec(),
        };
        serde_json::to_value(state).ok()
    }

    fn continuation_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(CrossbarContinuation {
            device_noise: self.devices.noise_rng().clone(),
            controller: self.controller.rng().clone(),
            read_noise: self.read_rng.clone(),
        })
        .ok()
    }

    fn restore_continuation_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: CrossbarContinuation = serde_json::from_value(state.clone())
            .context("crossbar continuation state: wrong format")?;
        self.devices.set_noise_rng(s.device_noise);
        self.controller.set_rng(s.controller);
        self.read_rng = s.read_noise;
        Ok(())
    }

    fn restore_device_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: CrossbarState =
            serde_json::from_value(state.clone()).context("crossbar device state: wrong format")?;
        if s.shape != (self.n_out, self.n_in) || s.device_model != self.model.name {
            bail!(
                "crossbar device state is for a {}×{} '{}' array, this layer is {}×{} '{}'",
                s.shape.0,
                s.shape.1,
                s.device_model,
                self.n_out,
                self.n_in,
                self.model.name
            );
        }
        if s.paired != self.paired {
            bail!("crossbar device state: mapping differs (pair vs single device)");
        }
        self.devices.restore(&s.devices)?;
        self.controller.set_accumulator(&s.accumulator)?;
        self.refresh_cache();
        Ok(())
    }
}

/// Partial sums per dot product in [`dot`] and [`dot4`].
const DOT_LANES: usize = 8;

/// `Σ a_i b_i` with eight independent partial sums, so that the compiler
/// can keep them in one SIMD register (a single running sum is a serial
/// chain of additions that cannot be vectorised).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; DOT_LANES];
    let body = a.len() - a.len() % DOT_LANES;
    for (ca, cb) in a[..body]
        .chunks_exact(DOT_LANES)
        .zip(b[..body].chunks_exact(DOT_LANES))
    {
        for k in 0..DOT_LANES {
            acc[k] += ca[k] * cb[k];
        }
    }
    finish_dot(acc, &a[body..], &b[body..a.len()])
}

/// Four [`dot`]s with the same `b` in one pass, for AVX2: four independent
/// chains of additions instead of one (a single chain waits on the adder's
/// latency), and `b` loaded once for all four. Each result is [`dot`]'s,
/// bit for bit: the same eight partial sums (one register lane each, a
/// product then a sum, no fused multiply-add), the same order. Written
/// with intrinsics because LLVM vectorises the portable form across the
/// four columns, with shuffles, instead of along the lanes.
///
/// # Safety
/// The CPU must support AVX2; every `a[c]` must be as long as `b`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(a: [&[f32]; 4], b: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let n = b.len();
    debug_assert!(a.iter().all(|c| c.len() == n));
    let body = n - n % DOT_LANES;
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k < body {
        // SAFETY: k + 8 ≤ body ≤ n, the length of `b` and of every `a[c]`.
        unsafe {
            let vb = _mm256_loadu_ps(b.as_ptr().add(k));
            for (acc, col) in acc.iter_mut().zip(a) {
                let va = _mm256_loadu_ps(col.as_ptr().add(k));
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(va, vb));
            }
        }
        k += DOT_LANES;
    }
    let tail = &b[body..];
    let mut out = [0.0f32; 4];
    for c in 0..4 {
        let mut lanes = [0.0f32; DOT_LANES];
        // SAFETY: `lanes` holds eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[c]) };
        out[c] = finish_dot(lanes, &a[c][body..n], tail);
    }
    out
}

/// The end of [`dot`]: the partial sums in order, then the tail's products.
#[inline(always)]
fn finish_dot(acc: [f32; DOT_LANES], a_tail: &[f32], b_tail: &[f32]) -> f32 {
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The DAC's conversion of one sample: inputs × `inv_alpha`, clipped to
/// [−1, 1], then, for `levels > 0`, rounded to `levels` steps per unit.
#[derive(Clone, Copy, Debug)]
struct DacScale {
    inv_alpha: f32,
    levels: f32,
    inv_levels: f32,
}

simd_builds!(
    /// [`drive_conductance_portable`], built for AVX-512/AVX2 where the CPU
    /// has them (the same eight partial sums in the same order: the same
    /// bits).
    fn drive_conductance, drive_conductance_avx512, drive_conductance_avx2 =
        drive_conductance_portable(lines: &[f64], x: &[f32], scale: f32) -> f64
);

simd_builds!(
    /// The DAC of one sample's inputs `col` into `scaled` (see [`DacScale`]
    /// and [`Crossbar::dac`]); returns how many were clipped. Elementwise
    /// IEEE single precision and truncating conversions only, so the AVX2
    /// and AVX-512 builds give the same bits as the baseline one, on 8 or
    /// 16 lanes instead of 4.
    fn dac_column, dac_column_avx512, dac_column_avx2 = dac_column_portable(
        col: &[f32],
        scaled: &mut [f32],
        scale: DacScale,
    ) -> u32
);

#[inline(always)]
fn dac_column_portable(col: &[f32], scaled: &mut [f32], scale: DacScale) -> u32 {
    let DacScale {
        inv_alpha,
        levels,
        inv_levels,
    } = scale;
    // Branch-free (clip counted by a compare, codes |u·levels| < 2^23 by
    // the bit-width check), so the loops vectorise; a 32-bit count (64-bit
    // lanes next to 32-bit floats kept the loop from vectorising).
    let mut clipped = 0u32;
    for (dst, &v) in scaled.iter_mut().zip(col) {
        let u = v * inv_alpha;
        clipped += (u.abs() > 1.0) as u32;
        *dst = u.clamp(-1.0, 1.0);
    }
    if levels > 0.0 {
        for u in scaled.iter_mut() {
            *u = round_to_grid(*u * levels) * inv_levels;
        }
    }
    clipped
}

/// The ADC's conversion of one sample's outputs: `y / w_scale`, saturated
/// at ±`range` (if `range > 0`), rounded to the grid of `to_grid` steps per
/// unit (if `to_grid > 0`; `from_grid` is its inverse step), then × `gain`.
#[derive(Clone, Copy, Debug)]
struct AdcScale {
    inv_ws: f32,
    range: f32,
    to_grid: f32,
    from_grid: f32,
    gain: f32,
}

simd_builds!(
    /// The ADC of one sample's outputs in place (see [`AdcScale`] and
    /// [`Crossbar::noise_and_adc`]); returns how many saturated. Built for
    /// AVX-512/AVX2 where the CPU has them, with the same bits as the
    /// baseline build (elementwise single precision, truncating
    /// conversions).
    fn adc_column, adc_column_avx512, adc_column_avx2 = adc_column_portable(
        column: &mut [f32],
        scale: AdcScale,
    ) -> u32
);

/// Rounds a DAC or ADC code `v` (|v| < 2²³ by the converters' bit-width
/// check) half away from zero, as `f32::round` does, and keeps NaN.
///
/// Truncation by `f32::trunc` rather than an integer conversion: Rust's
/// saturating `as i32` costs per-lane fix-ups that kept these loops scalar
/// (the AVX-512 DAC converted one lane at a time), while `trunc` is one
/// `vrndscaleps`/`vroundps` in the AVX builds (a libm call in the baseline
/// build, which runs only on CPUs without AVX2). For every finite code the
/// result is that of `round_ties_away_small`, bit for bit; a NaN stays NaN
/// instead of becoming 0, so a NaN drive is not hidden.
#[inline(always)]
fn round_to_grid(v: f32) -> f32 {
    round_ties_away_from(v, v.trunc())
}

#[inline(always)]
fn adc_column_portable(column: &mut [f32], scale: AdcScale) -> u32 {
    let AdcScale {
        inv_ws,
        range,
        to_grid,
        from_grid,
        gain,
    } = scale;
    if range <= 0.0 {
        for yv in column.iter_mut() {
            *yv = *yv * inv_ws * gain;
        }
        return 0;
    }
    // Branch-free per element (saturation counted by a compare, in 32 bits
    // so that the loop vectorises; codes |u·levels/range| ≤ levels < 2^23).
    let mut saturated = 0u32;
    for yv in column.iter_mut() {
        let u = *yv * inv_ws;
        saturated += (u.abs() >= range) as u32;
        *yv = u.clamp(-range, range);
    }
    if to_grid > 0.0 {
        for yv in column.iter_mut() {
            *yv = round_to_grid(*yv * to_grid) * from_grid;
        }
    }
    for yv in column.iter_mut() {
        *yv *= gain;
    }
    saturated
}

/// `out ← op(W) x` through the periphery path: SGEMM for a dense batch, a
/// direct matrix–vector product per sample for one sample or a sparse batch
/// of forward inputs (SGEMM's packing of the whole array dominates at batch
/// 1, and SGEMM multiplies every zero; zero inputs — most MNIST pixels — are
/// skipped by the direct product).
fn mvm(w: &Mat, op: Op, x: &Mat, out: &mut Mat) {
    if x.ncols() != 1 && !(op == Op::N && is_sparse(x.as_slice())) {
        gemm(1.0, w, op, x, Op::N, 0.0, out);
        return;
    }
    let (n_rows, ws) = (w.nrows(), w.as_slice());
    let (n_in, n_out) = (x.nrows(), out.nrows());
    let columns = x
        .as_slice()
        .chunks_exact(n_in.max(1))
        .zip(out.as_mut_slice().chunks_exact_mut(n_out.max(1)));
    let mut nonzero = Vec::with_capacity(if op == Op::N { n_in } else { 0 });
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            for (xs, o) in columns {
                // SAFETY: the CPU has AVX-512F (checked just above).
                unsafe { mvm_single_avx512(ws, n_rows, op, xs, o, &mut nonzero) };
            }
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            for (xs, o) in columns {
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe { mvm_single_avx2(ws, n_rows, op, xs, o, &mut nonzero) };
            }
            return;
        }
    }
    for (xs, o) in columns {
        mvm_single(ws, n_rows, op, xs, o, &mut nonzero, false);
    }
}

/// Largest fraction of non-zero inputs at which a batch's forward read takes
/// the per-sample direct product instead of SGEMM: the direct product costs
/// about twice as much per non-zero input as SGEMM per input (it streams the
/// array's columns once per sample instead of reusing them across the
/// batch), so it wins below about half; measured with the
/// `forward_read_*` benches on MNIST inputs (≈ 19 % non-zero).
const SPARSE_READ_DENSITY: f32 = 0.4;

/// Whether few enough of `x` are non-zero for the direct product.
fn is_sparse(x: &[f32]) -> bool {
    (count_nonzero(x) as f32) < SPARSE_READ_DENSITY * x.len() as f32
}

/// How many of `x` are non-zero (NaN included): counted in `u32` lanes,
/// which the compiler vectorises (`filter().count()` stayed scalar), a
/// block of 2²⁰ at a time so that no lane overflows.
#[inline(always)]
fn count_nonzero_portable(x: &[f32]) -> usize {
    x.chunks(1 << 20)
        .map(|block| block.iter().map(|&v| (v != 0.0) as u32).sum::<u32>() as usize)
        .sum()
}

simd_builds!(
    /// [`count_nonzero_portable`] on 16 (AVX-512) or 8 (AVX2) lanes.
    fn count_nonzero, count_nonzero_avx512, count_nonzero_avx2 =
        count_nonzero_portable(x: &[f32]) -> usize
);

// `mvm_single` compiled for AVX-512 (the forward product's row blocks are
// four registers) and AVX2 (eight registers; the transposed product takes
// four outputs at a time with `dot4_avx2`). The bits are those of the
// baseline build: the forward sums run in the same order whatever the
// vector width, and the dot products keep their own eight partial sums.
simd_builds!(mvm_single_avx512, mvm_single_avx2 = mvm_single(
    ws: &[f32],
    n_rows: usize,
    op: Op,
    xs: &[f32],
    o: &mut [f32],
    nonzero: &mut Vec<NonzeroInput>,
); true);

/// Rows per block of the forward product: 64 sums are four AVX-512 or
/// eight AVX2 registers, so a block's sums stay in registers while the
/// sample's non-zero inputs stream past, instead of being loaded and stored
/// once per input.
const ROW_BLOCK: usize = 64;

/// Rows `from..from + sums.len()` of the forward product `W x` into `sums`,
/// from the non-zero inputs `(j, x_j)`: four at a time,
/// `((a x₀ + b x₁) + c x₂) + d x₃`, then one at a time — four independent
/// products per addition to a running sum instead of one long chain of
/// additions. A function, not a closure, so that it is compiled with the
/// caller's target features.
#[inline(always)]
fn forward_rows(
    ws: &[f32],
    n_rows: usize,
    nonzero: &[NonzeroInput],
    from: usize,
    sums: &mut [f32],
) {
    let len = sums.len();
    let column = |j: u32| {
        let start = j as usize * n_rows + from;
        &ws[start..start + len]
    };
    sums.iter_mut().for_each(|v| *v = 0.0);
    let mut fours = nonzero.chunks_exact(4);
    for four in fours.by_ref() {
        let [(j0, x0), (j1, x1), (j2, x2), (j3, x3)] = [0, 1, 2, 3].map(|k| (four[k].j, four[k].x));
        let columns = sums
            .iter_mut()
            .zip(column(j0))
            .zip(column(j1))
            .zip(column(j2))
            .zip(column(j3));
        for ((((s, a), b), c), d) in columns {
            *s += a * x0 + b * x1 + c * x2 + d * x3;
        }
    }
    for &NonzeroInput { j, x: xj } in fours.remainder() {
        for (s, w) in sums.iter_mut().zip(column(j)) {
            *s += w * xj;
        }
    }
}

/// `o ← op(W) x` for one sample, `W` column-major with `n_rows` rows in `ws`;
/// `nonzero` is scratch for the forward product's non-zero inputs. With
/// `avx2` (only from the AVX builds above) the transposed product takes
/// four outputs at a time with [`dot4_avx2`]; the bits are the same.
#[inline(always)]
fn mvm_single(
    ws: &[f32],
    n_rows: usize,
    op: Op,
    xs: &[f32],
    o: &mut [f32],
    nonzero: &mut Vec<NonzeroInput>,
    avx2: bool,
) {
    match op {
        Op::N => {
            // Zero inputs add nothing: only the non-zero ones are read
            // (gathered without a branch per input: most MNIST pixels are
            // zero, but which ones is unpredictable).
            let count = gather_nonzero(xs, nonzero);
            let nonzero = &nonzero[..count];
            let full = n_rows - n_rows % ROW_BLOCK;
            for (out, from) in o[..full]
                .chunks_exact_mut(ROW_BLOCK)
                .zip((0..full).step_by(ROW_BLOCK))
            {
                // A fixed-size block, so that its sums live in registers.
                let mut sums = [0.0f32; ROW_BLOCK];
                forward_rows(ws, n_rows, nonzero, from, &mut sums);
                out.copy_from_slice(&sums);
            }
            forward_rows(ws, n_rows, nonzero, full, &mut o[full..]);
        }
        Op::T => {
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if avx2 && n_rows > 0 {
                // Four outputs at a time (see `dot4_avx2`), the rest below.
                done = o.len() - o.len() % 4;
                for (four, j) in o[..done].chunks_exact_mut(4).zip((0..done).step_by(4)) {
                    let col = |c: usize| &ws[(j + c) * n_rows..(j + c + 1) * n_rows];
                    // SAFETY: the caller checked AVX2; columns are `n_rows`
                    // = `xs.len()` long.
                    let sums = unsafe { dot4_avx2([col(0), col(1), col(2), col(3)], xs) };
                    four.copy_from_slice(&sums);
                }
            }
            let columns = ws.chunks_exact(n_rows.max(1));
            for (oj, col) in o[done..].iter_mut().zip(columns.skip(done)) {
                *oj = dot(col, xs);
            }
        }
    }
}

/// A non-zero input `x_j` of a sample and its line `j` (laid out as two
/// 32-bit words, which the AVX-512 gather stores whole).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct NonzeroInput {
    j: u32,
    x: f32,
}

/// Lists the non-zero inputs `(j, x_j)` of one sample at the front of
/// `nonzero` (in order) and returns how many there are: 16 inputs at a time
/// with AVX-512 (a compare and two compresses; the branch-free loop below
/// took a fifth of the forward product), else one at a time without a
/// branch per input (which inputs are zero is unpredictable).
#[inline(always)]
fn gather_nonzero(xs: &[f32], nonzero: &mut Vec<NonzeroInput>) -> usize {
    // Room for one whole vector of pairs past the last input.
    if nonzero.len() < xs.len() + 16 {
        nonzero.resize(xs.len() + 16, NonzeroInput::default());
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && xs.len() <= u32::MAX as usize {
        // SAFETY: the CPU has AVX-512F (checked just above); `nonzero` has
        // room for `xs.len() + 16` pairs.
        return unsafe { gather_nonzero_avx512(xs, nonzero) };
    }
    let mut count = 0;
    for (j, &v) in (0u32..).zip(xs) {
        nonzero[count] = NonzeroInput { j, x: v };
        count += (v != 0.0) as usize;
    }
    count
}

/// [`gather_nonzero`] sixteen inputs at a time: the non-zero lanes
/// (`v != 0.0`, so NaN counts as non-zero, as in the scalar loop) and their
/// indices are compressed to the front of two registers, interleaved into
/// `(j, x_j)` pairs and stored whole at the list's end; only the count
/// advances by the number of non-zero lanes (the stores past it are
/// overwritten by the next ones).
///
/// # Safety
/// The CPU must support AVX-512F; `nonzero` must hold at least
/// `xs.len() + 16` pairs, and `xs.len()` fit in a `u32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_nonzero_avx512(xs: &[f32], nonzero: &mut [NonzeroInput]) -> usize {
    use std::arch::x86_64::{
        _mm512_add_epi32, _mm512_castps_si512, _mm512_cmp_ps_mask, _mm512_maskz_compress_epi32,
        _mm512_maskz_compress_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_epi32,
        _mm512_set1_epi32, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_si512, _CMP_NEQ_UQ,
    };
    debug_assert!(nonzero.len() >= xs.len() + 16);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // Index j of pair k at 2k and its value at 2k + 1 (second operand: + 16).
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let out = nonzero.as_mut_ptr().cast::<u32>();
    let mut count = 0usize;
    let mut from = 0usize;
    while from < xs.len() {
        let take = (xs.len() - from).min(16);
        let load: u16 = if take == 16 {
            u16::MAX
        } else {
            (1u16 << take) - 1
        };
        // SAFETY: the masked load reads `take` floats from `from`, inside
        // `xs`; the two stores write 16 pairs from `count` ≤ `from`, inside
        // `nonzero` (which holds `xs.len() + 16`).
        unsafe {
            let v = _mm512_maskz_loadu_ps(load, xs.as_ptr().add(from));
            let keep = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps()) & load;
            let j = _mm512_add_epi32(lanes, _mm512_set1_epi32(from as i32));
            let values = _mm512_castps_si512(_mm512_maskz_compress_ps(keep, v));
            let indices = _mm512_maskz_compress_epi32(keep, j);
            let first = _mm512_permutex2var_epi32(indices, low, values);
            let second = _mm512_permutex2var_epi32(indices, high, values);
            _mm512_storeu_si512(out.add(2 * count).cast(), first);
            _mm512_storeu_si512(out.add(2 * count + 16).cast(), second);
            count += keep.count_ones() as usize;
        }
        from += take;
    }
    count
}

/// Sums the per-layer `hardware_summary` values into run totals (pulses,
/// devices, stuck devices, reads, conductance range).
pub fn total_hardware_summary(layers: &[serde_json::Value]) -> serde_json::Value {
    let sum = |key: &str| -> u64 { layers.iter().filter_map(|l| l.get(key)?.as_u64()).sum() };
    let reads = |key: &str| -> u64 {
        layers
            .iter()
            .filter_map(|l| l.get("reads")?.get(key)?.as_u64())
            .sum()
    };
    let fold = |key: &str, init: f64, f: fn(f64, f64) -> f64| {
        layers
            .iter()
            .filter_map(|l| l.get("conductance_range_used")?.get(key)?.as_f64())
            .fold(init, f)
    };
    let energy: f64 = layers
        .iter()
        .filter_map(|l| l.get("pulse_energy_j")?.as_f64())
        .sum();
    serde_json::json!({
        "devices": sum("devices"),
        "pulses_applied": sum("pulses_applied"),
        "pulses_up": sum("pulses_up"),
        "pulses_down": sum("pulses_down"),
        "devices_stuck": sum("devices_stuck"),
        "devices_worn_out": sum("devices_worn_out"),
        "pulse_energy_j": if energy > 0.0 { Some(energy) } else { None },
        "conductance_range_used": {
            "min_normalised": fold("min_normalised", f64::INFINITY, f64::min),
            "max_normalised": fold("max_normalised", f64::NEG_INFINITY, f64::max),
        },
        "reads": {
            "forward_samples": reads("forward_samples"),
            "transposed_samples": reads("transposed_samples"),
            "adc_conversions": reads("adc_conversions"),
            "adc_saturated": reads("adc_saturated"),
            "dac_conversions": reads("dac_conversions"),
            // Only when every layer counted it.
            "read_drive_conductance_s": layers
                .iter()
                .filter_map(|l| l.get("reads"))
                .map(|reads| reads.get("read_drive_conductance_s")?.as_f64())
                .sum::<Option<f64>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read-energy count's drive conductance gives the baseline
    /// build's bits in the AVX-512 and AVX2 builds.
    #[test]
    fn drive_conductance_is_bit_identical_on_every_path() {
        for n in [0usize, 1, 7, 8, 9, 17, 785] {
            let lines: Vec<f64> = (0..n)
                .map(|i| 1e-5 * (1.0 + (i as f64 * 0.3).cos()))
                .collect();
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1.3).collect();
            let base = drive_conductance_portable(&lines, &x, 1.1);
            assert_eq!(
                base.to_bits(),
                drive_conductance(&lines, &x, 1.1).to_bits(),
                "n {n}"
            );
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected just above.
                let avx2 = unsafe { drive_conductance_avx2(&lines, &x, 1.1) };
                assert_eq!(base.to_bits(), avx2.to_bits(), "AVX2, n {n}");
            }
        }
    }

    /// The converters' rounding is `f32::round` (half away from zero, the
    /// sign of zero kept) for every code below 2²³, bit for bit, and keeps
    /// NaN; the AVX builds (one rounding instruction per vector) agree.
    #[test]
    fn round_to_grid_is_f32_round_and_keeps_nan() {
        let mut codes: Vec<f32> = vec![0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 8_388_607.5, -8_388_607.0];
        codes.extend([0.49999997f32, -0.49999997, 126.5, -127.49999]);
        // Every grid position and the points between them on a 9-bit grid,
        // and a sweep of fractions.
        codes.extend((-1022..=1022).map(|k| k as f32 * 0.5));
        codes.extend((0..20_000).map(|i| (i as f32 * 0.6173).sin() * 300.0));
        for &v in &codes {
            let (got, want) = (round_to_grid(v), v.round());
            assert_eq!(got.to_bits(), want.to_bits(), "{v:e}: {got:e} vs {want:e}");
        }
        assert!(round_to_grid(f32::NAN).is_nan());
        // A NaN input reaches the DAC's output instead of becoming 0.
        let mut out = [0.0f32; 3];
        let scale = DacScale {
            inv_alpha: 1.0,
            levels: 127.0,
            inv_levels: 1.0 / 127.0,
        };
        dac_column(&[0.2, f32::NAN, -0.7], &mut out, scale);
        assert!(out[1].is_nan() && out[0].is_finite() && out[2].is_finite());
    }

    /// The dispatched DAC (AVX-512 or AVX2 where the CPU has them) gives
    /// the baseline build's bits and clip count, with and without a grid,
    /// over lengths that leave every remainder of the vector widths.
    #[test]
    fn dac_column_is_bit_identical_on_every_path() {
        for n in [0usize, 1, 7, 15, 16, 17, 33, 785] {
            let col: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1.3).collect();
            for levels in [0.0f32, 63.0, 127.0] {
                let inv_levels = if levels > 0.0 { 1.0 / levels } else { 0.0 };
                let (mut base, mut fast) = (vec![0.0; n], vec![0.0; n]);
                let scale = DacScale {
                    inv_alpha: 1.0 / 1.1,
                    levels,
                    inv_levels,
                };
                let c0 = dac_column_portable(&col, &mut base, scale);
                let c1 = dac_column(&col, &mut fast, scale);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&base), bits(&fast), "n {n}, levels {levels}");
                assert_eq!(c0, c1);
                // The AVX2 build too, where the dispatch above took AVX-512.
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = vec![0.0; n];
                    // SAFETY: AVX2 was detected just above.
                    let c2 = unsafe { dac_column_avx2(&col, &mut avx2, scale) };
                    assert_eq!(bits(&base), bits(&avx2), "AVX2, n {n}, levels {levels}");
                    assert_eq!(c0, c2);
                }
                let expected = col.iter().filter(|v| (*v / 1.1).abs() > 1.0).count();
                assert!(
                    (c0 as i64 - expected as i64).abs() <= 1,
                    "{c0} vs {expected}"
                );
            }
        }
    }

    /// The dispatched ADC gives the baseline build's bits and saturation
    /// count, with and without a grid and a range.
    #[test]
    fn adc_column_is_bit_identical_on_every_path() {
        for n in [0usize, 1, 7, 15, 16, 17, 33, 257] {
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin() * 14.0).collect();
            for (range, levels) in [(0.0f32, 0.0f32), (12.0, 0.0), (12.0, 255.0), (10.0, 511.0)] {
                let (to_grid, from_grid) = if levels > 0.0 {
                    (levels / range, range / levels)
                } else {
                    (0.0, 0.0)
                };
                let scale = AdcScale {
                    inv_ws: 1.0 / 0.6,
                    range,
                    to_grid,
                    from_grid,
                    gain: 0.6 * 1.7,
                };
                let (mut base, mut fast) = (y.clone(), y.clone());
                let s0 = adc_column_portable(&mut base, scale);
                let s1 = adc_column(&mut fast, scale);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&base),
                    bits(&fast),
                    "n {n}, range {range}, levels {levels}"
                );
                assert_eq!(s0, s1);
                // The AVX2 build too, where the dispatch above took AVX-512.
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = y.clone();
                    // SAFETY: AVX2 was detected just above.
                    let s2 = unsafe { adc_column_avx2(&mut avx2, scale) };
                    assert_eq!(bits(&base), bits(&avx2), "AVX2, n {n}, range {range}");
                    assert_eq!(s0, s2);
                }
                if range > 0.0 {
                    assert!(s0 > 0 || n < 3, "n {n}: some outputs exceed the range");
                }
            }
        }
    }

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

    /// The direct product (one sample, or a batch of sparse forward inputs)
    /// agrees with SGEMM, for output counts below, at and past a row block
    /// and batches on both sides of the sparsity threshold.
    #[test]
    fn direct_mvm_matches_sgemm_with_zero_inputs() {
        for (rows, cols) in [(7, 23), (64, 40), (150, 97)] {
            let w = Mat::from_fn(rows, cols, |i, j| ((i * 31 + j * 7) as f32 * 0.13).sin());
            for batch in [1usize, 5] {
                // Every `n`-th input non-zero (sparse: the direct product
                // takes batches) or every `n`-th zero (dense: SGEMM does).
                for (n, sparse) in [(3usize, true), (100, true), (2, false), (5, false)] {
                    let x = Mat::from_fn(cols, batch, |j, b| {
                        if ((j + b) % n == 0) != sparse {
                            0.0
                        } else {
                            ((j + 3 * b) as f32 * 0.7).cos()
                        }
                    });
                    assert_eq!(is_sparse(x.as_slice()), sparse);
                    let mut direct = Mat::zeros(rows, batch);
                    let mut reference = Mat::zeros(rows, batch);
                    mvm(&w, Op::N, &x, &mut direct);
                    gemm(1.0, &w, Op::N, &x, Op::N, 0.0, &mut reference);
                    assert!(
                        (&direct - &reference).abs().max() < 1e-5,
                        "{rows}×{cols}, batch {batch}, every {n}-th, sparse {sparse}"
                    );
                    let d = Mat::from_fn(rows, batch, |i, b| i as f32 - 3.0 + b as f32);
                    let mut direct_t = Mat::zeros(cols, batch);
                    let mut reference_t = Mat::zeros(cols, batch);
                    mvm(&w, Op::T, &d, &mut direct_t);
                    gemm(1.0, &w, Op::T, &d, Op::N, 0.0, &mut reference_t);
                    let scale = reference_t.abs().max().max(1.0);
                    assert!((&direct_t - &reference_t).abs().max() < 1e-5 * scale);
                }
            }
        }
    }

    /// The non-zero inputs are listed in order, with NaN counted as non-zero
    /// and both zeros skipped, by the AVX-512 gather as by the scalar loop,
    /// for lengths around the vector width.
    #[test]
    fn nonzero_inputs_are_listed_in_order() {
        for len in [0usize, 1, 15, 16, 17, 31, 33, 100, 784] {
            let xs: Vec<f32> = (0..len)
                .map(|j| match j % 7 {
                    0 | 3 => 0.0,
                    5 => -0.0,
                    6 if j % 5 == 0 => f32::NAN,
                    _ => (j as f32 * 0.37).sin() + 1.5,
                })
                .collect();
            let expected: Vec<(u32, u32)> = (0u32..)
                .zip(&xs)
                .filter(|(_, v)| **v != 0.0)
                .map(|(j, v)| (j, v.to_bits()))
                .collect();
            // A list with stale entries in it, as between two samples.
            let mut nonzero = vec![NonzeroInput { j: 9, x: 9.0 }; 3];
            let count = gather_nonzero(&xs, &mut nonzero);
            let got: Vec<(u32, u32)> = nonzero[..count]
                .iter()
                .map(|n| (n.j, n.x.to_bits()))
                .collect();
            assert_eq!(got, expected, "length {len}");
        }
    }

    #[test]
    fn only_sparse_batches_take_the_direct_product() {
        let mut x = vec![0.0f32; 100];
        x[..39].iter_mut().for_each(|v| *v = 1.0);
        assert!(is_sparse(&x));
        x[39] = -2.0;
        assert!(!is_sparse(&x));
    }

    /// The AVX2 and AVX-512 builds of the single-sample product give the
    /// same bits as the baseline build (where the CPU has them to compare),
    /// including the forward product's row blocks and their remainder and
    /// the transposed product's four-at-a-time dot products (`dot4_avx2`),
    /// for column lengths below, at and past the eight lanes and output
    /// counts that leave a remainder after the groups of four.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn single_sample_mvm_is_bit_identical_with_avx() {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        let shapes = [(1, 5), (8, 8), (10, 129), (37, 301), (128, 257), (150, 64)];
        for (rows, cols) in shapes {
            let w: Vec<f32> = (0..rows * cols).map(|k| (k as f32 * 0.013).sin()).collect();
            let x: Vec<f32> = (0..cols)
                .map(|j| {
                    if j % 3 == 0 {
                        0.0
                    } else {
                        (j as f32 * 0.7).cos()
                    }
                })
                .collect();
            let d: Vec<f32> = (0..rows).map(|i| (i as f32 * 0.3).sin()).collect();
            for (op, input, out_len) in [(Op::N, &x, rows), (Op::T, &d, cols)] {
                let mut scratch = Vec::new();
                let mut baseline = vec![0.0; out_len];
                mvm_single(&w, rows, op, input, &mut baseline, &mut scratch, false);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                if avx2 {
                    let mut wide = vec![0.0; out_len];
                    // SAFETY: AVX2 was detected above.
                    unsafe { mvm_single_avx2(&w, rows, op, input, &mut wide, &mut scratch) };
                    assert_eq!(bits(&baseline), bits(&wide), "AVX2 {rows}×{cols} {op:?}");
                }
                if avx512 {
                    let mut wide = vec![0.0; out_len];
                    // SAFETY: AVX-512F was detected above.
                    unsafe { mvm_single_avx512(&w, rows, op, input, &mut wide, &mut scratch) };
                    assert_eq!(bits(&baseline), bits(&wide), "AVX-512 {rows}×{cols} {op:?}");
                }
            }
        }
    }

    #[test]
    fn dot_matches_the_serial_sum_for_every_length() {
        for n in 0..40usize {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let serial: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
            assert!((dot(&a, &b) as f64 - serial).abs() < 1e-5, "length {n}");
        }
    }
}
