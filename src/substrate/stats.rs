//! Typed hardware statistics of a run: what a physical weight array counted
//! (pulses, wear, faults, reads, converter events, conductance range),
//! per layer and summed over the layers. The crossbar produces them
//! ([`super::WeightArray::hardware_stats`]); the training loop stores them in
//! `RunResult.hardware` (`result.json`); the feasibility cost model and the
//! report read them back. JSON appears only at those file boundaries.
//!
//! The field names are those of the result files (`hardware.layers[k]`,
//! `hardware.total`). Every struct deserialises with defaults, so result
//! files written before a field existed still load; an `Option` that is
//! `None` is written as `null` (a figure that was not counted, never a 0
//! that would pass for a measurement).

use crate::devices::Histogram;
use serde::{Deserialize, Serialize};

/// Range of the read-visible normalised conductances
/// `g = (G − G_min)/(G_max − G_min)` over a layer's devices at the end of
/// the run, and the same in µS (`null` for an empty array).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConductanceRange {
    /// Smallest normalised conductance.
    pub min_normalised: Option<f64>,
    /// Largest normalised conductance.
    pub max_normalised: Option<f64>,
    /// `max_normalised − min_normalised`: the share of the range used.
    pub fraction_of_range: Option<f64>,
    /// Smallest conductance (µS).
    pub min_us: Option<f64>,
    /// Largest conductance (µS).
    pub max_us: Option<f64>,
}

/// Read and converter counters of one layer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReadCounts {
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
    /// DAC conversions (one per driven line per sample read); `None` in
    /// result files written before the crossbar counted them.
    pub dac_conversions: Option<u64>,
    /// Σ over sample reads of Σ_lines G_line·u² (S): the measured read
    /// energy is `V_read²·t_read` times this (DESIGN.md §5). `None` when the
    /// array did not count it (`crossbar.read_energy = false`).
    pub read_drive_conductance_s: Option<f64>,
}

/// Counters of the write controller of one layer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WriteCounts {
    /// Update calls (batches).
    pub updates: u64,
    /// Pulse phases (samples or batches).
    pub pulse_phases: u64,
    /// Row/column probabilities clipped at 1 (stochastic writes).
    pub clipped_probabilities: u64,
    /// Sum of requested |ΔW|/Δw over all devices (ideal pulse budget).
    pub requested_pulse_events: f64,
    /// Pulse time slots of all stochastic pulse phases.
    pub pulse_slots: u64,
}

/// Hardware statistics of one weight layer (`hardware.layers[k]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LayerHardwareStats {
    /// `crossbar`.
    pub substrate: String,
    /// Device model name.
    pub device_model: String,
    /// Weight ↔ conductance mapping (`differential`, `reference`).
    pub mapping: String,
    /// Write scheme (`stochastic`, `mixed_precision`, `exact`).
    pub write: String,
    /// Pulse-phase granularity (`per_sample`, `per_batch`).
    pub update: String,
    /// Cross-points: `[n_out, n_in + 1]` (bias column included).
    pub shape: [usize; 2],
    /// Devices of the layer.
    pub devices: usize,
    /// Nominal weight change of one pulse event.
    pub pulse_weight: f64,
    /// Pulses applied in this run (up + down).
    pub pulses_applied: u64,
    /// Potentiating pulses in this run.
    pub pulses_up: u64,
    /// Depressing pulses in this run.
    pub pulses_down: u64,
    /// Lifetime pulses per device, mean over the devices (wear; carried
    /// over by `--resume`, unlike `pulses_applied`).
    pub pulses_per_device_mean: f64,
    /// Lifetime pulses of the most-worn device.
    pub pulses_per_device_max: u32,
    /// Write energy from the device model's pulse energy (J), if it states one.
    pub pulse_energy_j: Option<f64>,
    /// Stuck devices (at min, at max, worn out).
    pub devices_stuck: usize,
    /// Devices stuck at the low bound.
    pub devices_stuck_at_min: usize,
    /// Devices stuck at the high bound.
    pub devices_stuck_at_max: usize,
    /// Devices past their endurance.
    pub devices_worn_out: usize,
    /// Conductance range in use at the end of the run.
    pub conductance_range_used: ConductanceRange,
    /// Smallest and largest read-visible weight (bias included).
    pub weight_range: [Option<f64>; 2],
    /// Read and converter counters.
    pub reads: ReadCounts,
    /// `adc_saturated / adc_conversions` (`None` without conversions).
    pub adc_saturation_fraction: Option<f64>,
    /// Write-controller counters.
    pub controller: WriteCounts,
    /// Pulse slots of all updates, for the write time of the feasibility
    /// report (stochastic writes only: the dense schemes' slots depend on
    /// the write circuit).
    pub update_pulse_slots: Option<u64>,
    /// Mean pulse-train length per phase (`None` without pulse phases).
    pub mean_bit_length: Option<f64>,
    /// One-sided (PCM) pair refreshes.
    pub one_sided_refreshes: u64,
    /// Device clock at the end of the run (s).
    pub device_time_s: f64,
    /// Histogram of the normalised conductances of all devices.
    pub conductance_histogram: Histogram,
    /// Histogram of the read-visible weights.
    pub weight_histogram: Histogram,
    /// Histogram of lifetime write pulses per device, for a substrate that
    /// records one (the crossbar does not; not written when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulse_histogram: Option<Histogram>,
    /// The transfers and the fast array of a Tiki-Taka-family layer
    /// (`crossbar.algorithm` other than `sgd`; not written otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferStats>,
    /// Line resistance of the layer's tiles and what it costs
    /// (`crossbar.line_resistance_ohm` or a periphery resistance > 0; not
    /// written otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ir_drop: Option<IrDropStats>,
}

/// IR drop of one layer (`hardware.layers[k].ir_drop`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IrDropStats {
    /// Wire resistance per segment (Ω).
    pub line_resistance_ohm: f64,
    /// Driver output resistance (Ω).
    pub driver_resistance_ohm: f64,
    /// Sense-amplifier input resistance (Ω).
    pub sense_resistance_ohm: f64,
    /// `exact` or `first_order`.
    pub solver: String,
    /// Input lines of one tile (bias line included) as used.
    pub tile_rows: usize,
    /// Device columns of one tile as used.
    pub tile_cols: usize,
    /// Tiles of the layer.
    pub tiles: usize,
    /// Transfer matrices computed during the run (per tile and direction).
    pub refreshes: u64,
    /// Block Gauss–Seidel sweeps of the exact solves.
    pub sweeps_total: u64,
    /// Most sweeps one exact solve took.
    pub sweeps_max: u32,
    /// Exact solves that stopped unconverged at `ir_drop_max_iterations`.
    pub unconverged: u64,
    /// A full-scale read of the devices at the end of the run (every input
    /// line, bias included, at the DAC's full scale), solved exactly, for
    /// the layer's tile size (first) and square tiles of other sizes.
    pub full_scale_reads: Vec<FullScaleRead>,
}

/// A full-scale forward read of a layer cut into tiles of one size
/// (`hardware.layers[k].ir_drop.full_scale_reads[n]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FullScaleRead {
    /// Input lines per tile.
    pub tile_rows: usize,
    /// Device columns per tile.
    pub tile_cols: usize,
    /// Tiles of the layer.
    pub tiles: usize,
    /// Mean over cells of `1 − (u − v)/V`: the share of the drive a cell
    /// loses to the lines.
    pub mean_voltage_loss: f64,
    /// The largest such loss (the cell farthest from both peripheries).
    pub max_voltage_loss: f64,
    /// Power in the wires and periphery resistances over all the read's power.
    pub line_power_fraction: f64,
    /// RMS over outputs of the read's error (weight units: the IR-drop
    /// output minus the ideal-line output) over the RMS ideal output.
    pub output_error: f64,
    /// Whether every tile's solve converged.
    pub converged: bool,
}

/// Counters of the transfers of one layer (`hardware.layers[k].transfer`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TransferStats {
    /// `ttv2`, `cttv2` or `agad`.
    pub algorithm: String,
    /// Transfers (each reads `columns_per_transfer` columns).
    pub transfers: u64,
    /// One-hot column reads of `A` (each one forward read of one sample).
    pub column_reads: u64,
    /// Pulses the transfers wrote into `C` (also in the layer's pulse counts).
    pub slow_pulses: u64,
    /// Column resets of `A` (`reset_fast`).
    pub fast_resets: u64,
    /// Pulses of the symmetry-point calibration of `A` (also in `A`'s counts).
    pub calibration_pulses: u64,
    /// Largest |H| at the end of the run (pulses of `C`; weight units with exact writes).
    pub hidden_abs_max: f64,
    /// Chopper sign flips.
    pub chopper_flips: u64,
    /// The fast array's own statistics (devices, pulses, reads, wear).
    pub fast_array: Box<LayerHardwareStats>,
}

/// Read counters summed over the layers (`hardware.total.reads`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReadTotals {
    /// Samples read forward.
    pub forward_samples: u64,
    /// Samples read transposed.
    pub transposed_samples: u64,
    /// ADC conversions.
    pub adc_conversions: u64,
    /// ADC conversions that saturated.
    pub adc_saturated: u64,
    /// DAC conversions.
    pub dac_conversions: u64,
    /// Σ of the layers' drive conductances (S), only when every layer
    /// counted it.
    pub read_drive_conductance_s: Option<f64>,
}

/// The conductance range over all layers (`hardware.total.conductance_range_used`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConductanceSpan {
    /// Smallest normalised conductance of any layer.
    pub min_normalised: Option<f64>,
    /// Largest normalised conductance of any layer.
    pub max_normalised: Option<f64>,
}

/// Run totals over the layers (`hardware.total`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HardwareTotals {
    /// Devices.
    pub devices: u64,
    /// Pulses applied in this run.
    pub pulses_applied: u64,
    /// Potentiating pulses.
    pub pulses_up: u64,
    /// Depressing pulses.
    pub pulses_down: u64,
    /// Stuck devices.
    pub devices_stuck: u64,
    /// Worn-out devices.
    pub devices_worn_out: u64,
    /// Write energy (J), when some layer's device model states it.
    pub pulse_energy_j: Option<f64>,
    /// Conductance range over all layers.
    pub conductance_range_used: ConductanceSpan,
    /// Read counters.
    pub reads: ReadTotals,
}

impl HardwareTotals {
    /// Sums the layers' statistics: counts add up, the conductance range
    /// is the union of the layers' ranges, energies and drive conductances
    /// add up where they were counted.
    pub fn of(layers: &[LayerHardwareStats]) -> Self {
        // A Tiki-Taka layer's fast array is hardware too: its devices,
        // pulses and reads count with the layer's.
        let arrays: Vec<LayerHardwareStats> = layers
            .iter()
            .flat_map(|l| {
                std::iter::once(l.clone()).chain(l.transfer.iter().map(|t| (*t.fast_array).clone()))
            })
            .collect();
        let layers = arrays.as_slice();
        let sum = |f: fn(&LayerHardwareStats) -> u64| layers.iter().map(f).sum::<u64>();
        let fold =
            |f: fn(&LayerHardwareStats) -> Option<f64>, init: f64, g: fn(f64, f64) -> f64| {
                let v = layers.iter().filter_map(f).fold(init, g);
                v.is_finite().then_some(v)
            };
        let energy: f64 = layers.iter().filter_map(|l| l.pulse_energy_j).sum();
        Self {
            devices: sum(|l| l.devices as u64),
            pulses_applied: sum(|l| l.pulses_applied),
            pulses_up: sum(|l| l.pulses_up),
            pulses_down: sum(|l| l.pulses_down),
            devices_stuck: sum(|l| l.devices_stuck as u64),
            devices_worn_out: sum(|l| l.devices_worn_out as u64),
            pulse_energy_j: (energy > 0.0).then_some(energy),
            conductance_range_used: ConductanceSpan {
                min_normalised: fold(
                    |l| l.conductance_range_used.min_normalised,
                    f64::INFINITY,
                    f64::min,
                ),
                max_normalised: fold(
                    |l| l.conductance_range_used.max_normalised,
                    f64::NEG_INFINITY,
                    f64::max,
                ),
            },
            reads: ReadTotals {
                forward_samples: sum(|l| l.reads.forward_samples),
                transposed_samples: sum(|l| l.reads.transposed_samples),
                adc_conversions: sum(|l| l.reads.adc_conversions),
                adc_saturated: sum(|l| l.reads.adc_saturated),
                dac_conversions: sum(|l| l.reads.dac_conversions.unwrap_or(0)),
                read_drive_conductance_s: layers
                    .iter()
                    .map(|l| l.reads.read_drive_conductance_s)
                    .sum(),
            },
        }
    }
}

/// The hardware statistics of a run (`RunResult.hardware`): per layer, W_1
/// first, and their totals.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HardwareSummary {
    /// Run totals.
    pub total: HardwareTotals,
    /// One entry per weight layer that reported statistics.
    pub layers: Vec<LayerHardwareStats>,
}

impl HardwareSummary {
    /// The summary of these layers (`None` if no layer reported any, as on
    /// the digital substrate).
    pub fn of(layers: Vec<LayerHardwareStats>) -> Option<Self> {
        (!layers.is_empty()).then(|| Self {
            total: HardwareTotals::of(&layers),
            layers,
        })
    }
}
