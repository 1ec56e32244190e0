//! The crossbar's settings (TOML `[crossbar]`): mapping, periphery,
//! controller and bookkeeping switches, with their range checks.

use super::transfer::{Algorithm, TransferConfig};
use crate::check::check_positive;
use crate::controller::{PulseTrains, UpdateGranularity, WriteScheme};
use crate::devices::DeviceModel;
use crate::linalg::{Mat, Vector};
use anyhow::{bail, Context, Result};
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

/// How a read with line resistance finds the cross-points' voltages.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum IrDropSolver {
    /// The tile's resistive network solved to `ir_drop_tolerance`
    /// (block Gauss–Seidel over lines; one solve per driven line whenever
    /// the devices change).
    #[default]
    Exact,
    /// The transfer matrix to first order in the resistances, from the
    /// ideal-line currents: `O(rows·cols)` per refresh, for training;
    /// accurate while the drops stay at a few percent (see
    /// [`crate::crossbar::ir_drop`]).
    FirstOrder,
}

impl IrDropSolver {
    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            IrDropSolver::Exact => "exact",
            IrDropSolver::FirstOrder => "first_order",
        }
    }
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_default_tolerance(v: &f64) -> bool {
    *v == DEFAULT_IR_DROP_TOLERANCE
}

fn is_default_iterations(v: &u32) -> bool {
    *v == DEFAULT_IR_DROP_MAX_ITERATIONS
}

/// Default `crossbar.ir_drop_tolerance`.
pub const DEFAULT_IR_DROP_TOLERANCE: f64 = 1e-7;
/// Default `crossbar.ir_drop_max_iterations`.
pub const DEFAULT_IR_DROP_MAX_ITERATIONS: u32 = 10_000;

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
    /// Bins of the conductance and weight histograms of the hardware statistics.
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
    /// On-chip learning algorithm: `sgd` (pulsed SGD into the weight
    /// devices), `ttv2`, `cttv2` or `agad` (the Tiki-Taka family: a fast
    /// array and transfers, see [`crate::crossbar::transfer`]).
    pub algorithm: Algorithm,
    /// Settings of the Tiki-Taka family (`[crossbar.transfer]`).
    pub transfer: TransferConfig,
    /// Wire resistance (Ω) of one segment of a word or bit line, between
    /// neighbouring cells and between the periphery and the first cell
    /// (0 = ideal lines, the default). Reads then solve the tile's
    /// resistive network ([`crate::crossbar::ir_drop`]).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub line_resistance_ohm: f64,
    /// Output resistance of a line driver (Ω), in series with the line.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub driver_resistance_ohm: f64,
    /// Input resistance of a sense amplifier (Ω), in series with the line.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub sense_resistance_ohm: f64,
    /// `exact` or `first_order` solution of the lines (with resistance).
    #[serde(skip_serializing_if = "is_default")]
    pub ir_drop: IrDropSolver,
    /// Exact solve: stop when no sensed current changes by more than this
    /// fraction of the largest between two sweeps.
    #[serde(skip_serializing_if = "is_default_tolerance")]
    pub ir_drop_tolerance: f64,
    /// Exact solve: sweeps before giving up (counted as unconverged).
    #[serde(skip_serializing_if = "is_default_iterations")]
    pub ir_drop_max_iterations: u32,
    /// Input lines (rows, bias line included) of one physical tile; a layer
    /// with more is split over several tiles, each with its own lines and
    /// periphery (0 = the whole layer in one tile).
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub tile_rows: usize,
    /// Device columns of one physical tile (a differential pair takes two
    /// neighbouring columns, so even; 0 = the whole layer in one tile).
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub tile_cols: usize,
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
            algorithm: Algorithm::Sgd,
            transfer: TransferConfig::default(),
            line_resistance_ohm: 0.0,
            driver_resistance_ohm: 0.0,
            sense_resistance_ohm: 0.0,
            ir_drop: IrDropSolver::Exact,
            ir_drop_tolerance: DEFAULT_IR_DROP_TOLERANCE,
            ir_drop_max_iterations: DEFAULT_IR_DROP_MAX_ITERATIONS,
            tile_rows: 0,
            tile_cols: 0,
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
                "crossbar.write = \"{}\" needs pulses of finite size, but device model '{}' is continuous (dw_min = 0); use write = \"exact\" or set device.dw_min",
                self.write.name(),
                model.name
            );
        }
        if self.algorithm.transfers() {
            self.transfer.check(self.algorithm, self.write)?;
        } else if self.transfer != TransferConfig::default() {
            bail!(
                "crossbar.transfer settings only act with a Tiki-Taka algorithm; set crossbar.algorithm = \"ttv2\", \"cttv2\" or \"agad\" (it is \"sgd\")"
            );
        }
        self.check_lines()?;
        if model.pairing.one_sided && self.mapping == Mapping::Reference {
            bail!(
                "crossbar.mapping = \"reference\" is not available for the one-sided model '{}' (it needs a pair)",
                model.name
            );
        }
        Ok(())
    }

    /// Whether reads see line resistance (any of the three resistances > 0).
    pub fn has_line_resistance(&self) -> bool {
        self.line_resistances().iter().any(|r| *r > 0.0)
    }

    fn line_resistances(&self) -> [f64; 3] {
        [
            self.line_resistance_ohm,
            self.driver_resistance_ohm,
            self.sense_resistance_ohm,
        ]
    }

    /// The range checks of the line-resistance and tile settings.
    fn check_lines(&self) -> Result<()> {
        for (field, r) in [
            ("line_resistance_ohm", self.line_resistance_ohm),
            ("driver_resistance_ohm", self.driver_resistance_ohm),
            ("sense_resistance_ohm", self.sense_resistance_ohm),
        ] {
            if !(r.is_finite() && (0.0..=1e9).contains(&r)) {
                bail!("crossbar.{field} = {r} is out of range: 0..=1e9 Ω (0 = none)");
            }
        }
        if !(self.ir_drop_tolerance.is_finite()
            && self.ir_drop_tolerance > 0.0
            && self.ir_drop_tolerance < 1.0)
        {
            bail!(
                "crossbar.ir_drop_tolerance = {} is out of range: 0 < tolerance < 1",
                self.ir_drop_tolerance
            );
        }
        if self.ir_drop_max_iterations == 0 {
            bail!("crossbar.ir_drop_max_iterations must be ≥ 1");
        }
        if !self.has_line_resistance() {
            let solver_set = self.ir_drop != IrDropSolver::default()
                || self.ir_drop_tolerance != DEFAULT_IR_DROP_TOLERANCE
                || self.ir_drop_max_iterations != DEFAULT_IR_DROP_MAX_ITERATIONS;
            if solver_set {
                bail!(
                    "crossbar.ir_drop, ir_drop_tolerance and ir_drop_max_iterations only act with line resistance; set crossbar.line_resistance_ohm (or driver_/sense_resistance_ohm) > 0"
                );
            }
        } else if self.mapping == Mapping::Reference {
            bail!(
                "crossbar.line_resistance_ohm (IR drop) is modelled for the differential mapping only; set crossbar.mapping = \"differential\" or the resistances to 0"
            );
        }
        if self.tile_rows == 1 {
            bail!("crossbar.tile_rows = 1 is out of range: 0 (the whole layer) or ≥ 2");
        }
        if self.tile_cols != 0 && (self.tile_cols < 2 || self.tile_cols % 2 == 1) {
            bail!(
                "crossbar.tile_cols = {} is out of range: 0 (the whole layer) or an even number ≥ 2 (a differential pair takes two columns)",
                self.tile_cols
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
