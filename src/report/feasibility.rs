//! Hardware-feasibility cost model: energy, latency, area and lifetime of
//! a chip that trains the way an emulated run did (DESIGN.md §5).
//!
//! # Model (per training sample; counts cover the whole run and are divided
//! by `samples_seen`)
//!
//! * **Crossbar reads** — a device of conductance G driven at voltage V for
//!   time t dissipates V²·G·t. With DAC-normalised drives u_j = V_j/V_r:
//!   `E_read = V_r²·t_r·Σ_reads Σ_ij G_ij u_j²` (measured when the crossbar
//!   reports `read_drive_conductance_s`). Otherwise every read is charged at
//!   full-scale drive on all rows (u = 1, an upper bound):
//!   `E_read = V_r²·t_r·reads·ΣG`, with ΣG the array's summed conductance
//!   (measured `conductance_sum_s`, else devices·(G_min+G_max)/2).
//!   Circuit (`ode`) runs keep the arrays driven for the whole settle time:
//!   `E_read = V_r²·ΣG·T_settle` per array and direction.
//! * **Line losses** — with line resistance (`crossbar.line_resistance_ohm`,
//!   driver or sense resistance) the run's end-of-run full-scale read
//!   reports the share f of the read power dissipated in the wires and
//!   periphery at the layer's tile size; the reads cost `E_read·f/(1 − f)`
//!   more (estimated: the share at full-scale drive stands for every read).
//! * **Converters** — `E_ADC = N_ADC·FOM_W·2^bits` (Walden), `E_DAC =
//!   N_DAC·E_dac`. A forward read of an n_in → n_out layer converts n_in
//!   inputs and n_out outputs; a transposed read the other way round.
//! * **Writes** — `E_write = pulses·E_pulse`, E_pulse = V_w²·G_max·t_w
//!   unless given (NeuroSim convention, reference §3.3).
//! * **Neurons** — two compartments per neuron integrate for the settle
//!   time: `E_neuron = 2·N_neurons·(T_settle/τ)·E_τ`.
//! * **Latency** — `T_settle + reads_serial·(t_r + lines_per_ADC·t_conv) +
//!   slots·t_w / B` (one array-parallel write of `slots` pulse slots per
//!   mini-batch of B samples).
//! * **Area** — tiles of `rows × cols` cells (the run's `crossbar.tile_rows ×
//!   tile_cols` when it sets them, else the technology's; cell area in F²·F²), ADCs on
//!   both edges of each tile (DP reads both ways) shared by `columns_per_adc`
//!   lines, one neuron per hidden/output unit.
//! * **Lifetime** — per-device pulses per epoch r; the median device wears
//!   out after `endurance / r_median` epochs, the first 1 % after
//!   `endurance / r_p99`. The crossbar records no per-device distribution,
//!   so uniform wear (the layer's mean pulses per device) stands for the
//!   median and the most-worn device for the 1 %, flagged *estimated*.
//! * **Digital baseline** — a BP step costs 3 MACs per weight (forward,
//!   backward, gradient): `E_digital = 3·Σ n_in·n_out·E_MAC`.
//!
//! A Tiki-Taka layer (`crossbar.algorithm` ttv2, cttv2, agad) is costed
//! with its fast array `A` as a second array of the same shape: A's reads,
//! conversions, pulses (calibration included) and wear add to the layer's,
//! its tiles and ADCs to the area, and the layer's write time is A's pulse
//! slots plus one slot per column moved into the weights. A's one-hot column
//! reads drive one input line; unmeasured, each is charged `ΣG / rows`.
//!
//! For crossbar runs the emulated device model (`crossbar.device` with the
//! run's `device.*` overrides) supplies endurance, pulse energy, pulse width
//! and the G range wherever it states them; the technology fills the rest.
//!
//! For discrete schedules (no settle time), `T_settle` is estimated as one τ
//! per sequential layer update of the schedule (flagged as estimated).
//!
//! # Inputs
//!
//! The run's stored configuration ([`Config`]: architecture, batch, rule and
//! schedule — the rule's default schedule when none is stored —, dynamics,
//! substrate and device model) and its result ([`RunResult`]), whose
//! `hardware` ([`crate::substrate::HardwareSummary`]) supplies per layer:
//! devices, forward/transposed sample reads, the read drive conductance,
//! ADC/DAC conversions, pulses applied, the device model's write energy,
//! mean and maximum pulses per device, stochastic pulse slots and updates,
//! and Σ G from the end-of-run conductance histogram. Whatever is absent is
//! estimated.

use super::technology::TechnologyParams;
use crate::experiment::config::{DynamicsKind, SubstrateKind};
use crate::experiment::{Config, RunResult};
use crate::network::Architecture;
use crate::rules::Schedule;
use crate::substrate::LayerHardwareStats;
use anyhow::{Context, Result};
use serde::Serialize;

pub use crate::experiment::sweep::Requirements;

/// Where a number came from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Counted by the emulator during the run.
    Measured,
    /// Computed from the architecture/schedule/technology (stated assumption).
    Estimated,
    /// No data: the term is left out of the totals.
    Missing,
}

impl Provenance {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Provenance::Measured => "measured",
            Provenance::Estimated => "estimated",
            Provenance::Missing => "missing",
        }
    }

    /// The weaker of two provenances (missing < estimated < measured).
    pub fn worst(self, other: Provenance) -> Provenance {
        use Provenance::*;
        match (self, other) {
            (Missing, _) | (_, Missing) => Missing,
            (Estimated, _) | (_, Estimated) => Estimated,
            _ => Measured,
        }
    }
}

/// Per-layer counts of a run (whole run, all samples).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerCounts {
    /// Inputs n_{k−1}.
    pub n_in: usize,
    /// Outputs n_k.
    pub n_out: usize,
    /// Devices of the layer.
    pub devices: Option<f64>,
    /// Forward sample-vector reads.
    pub forward_reads: Option<f64>,
    /// Transposed sample-vector reads.
    pub transposed_reads: Option<f64>,
    /// Σ_reads Σ_ij G_ij u_j² (S).
    pub read_drive_conductance_s: Option<f64>,
    /// Σ_ij G_ij (S).
    pub conductance_sum_s: Option<f64>,
    /// ADC conversions.
    pub adc_conversions: Option<f64>,
    /// DAC conversions.
    pub dac_conversions: Option<f64>,
    /// Write pulses.
    pub pulses_total: Option<f64>,
    /// Median pulses per device.
    pub pulses_median: Option<f64>,
    /// 99th-percentile pulses per device.
    pub pulses_p99: Option<f64>,
    /// Mean pulses per device.
    pub pulses_mean: Option<f64>,
    /// Most pulses any device took.
    pub pulses_max: Option<f64>,
    /// Write energy computed by the device model (J, whole run).
    pub write_energy_j: Option<f64>,
    /// Pulse slots over all updates.
    pub update_pulse_slots: Option<f64>,
    /// Number of updates.
    pub updates: Option<f64>,
    /// Endurance rating of the device model (pulses).
    pub endurance_pulses: Option<f64>,
    /// Every read of this array drives one input line (the one-hot column
    /// reads of a Tiki-Taka fast array), so an unmeasured read is charged
    /// one line's share of the array's conductance.
    pub one_hot_reads: bool,
    /// The layer's Tiki-Taka fast array `A` (`crossbar.algorithm` ≠ sgd),
    /// costed as a second array of the same shape.
    pub fast_array: Option<Box<LayerCounts>>,
    /// Share of a full-scale read's power lost in the lines and periphery
    /// resistances at the layer's tile size (from the run's end-of-run
    /// full-scale read; `None` with ideal lines).
    pub line_power_fraction: Option<f64>,
    /// The run's own tile geometry (`crossbar.tile_rows`, `tile_cols`:
    /// input lines × device columns), which replaces the technology's
    /// `array_rows × array_cols` for this layer's area.
    pub tile: Option<(f64, f64)>,
}

/// Everything the cost model needs from one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunCounts {
    /// Layers, W_1 first.
    pub layers: Vec<LayerCounts>,
    /// Training samples processed.
    pub samples_seen: f64,
    /// Completed epochs.
    pub epochs: f64,
    /// Mini-batch size B.
    pub batch: f64,
    /// Continuous-time circuit run.
    pub ode: bool,
    /// Mean settle time in units of τ (circuit runs).
    pub settle_time_tau: Option<f64>,
    /// Sequential layer updates of a discrete schedule per sample.
    pub schedule_steps: f64,
    /// Whether the run reported hardware statistics at all.
    pub has_hardware: bool,
    /// The emulated device model of a crossbar run, whose own constants
    /// (endurance, pulse energy and width, G range) replace the
    /// technology's where it states them.
    pub device: Option<DeviceConstants>,
}

/// Cost-model constants of the emulated device model (`device_models/*.toml`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceConstants {
    /// Model name.
    pub name: String,
    /// Rated pulses before a device stops switching (`None` = not stated / unlimited).
    pub endurance_pulses: Option<f64>,
    /// Energy per write pulse (J), if stated.
    pub pulse_energy_j: Option<f64>,
    /// Write pulse width (s), if stated.
    pub pulse_width_s: Option<f64>,
    /// G_min, G_max (S).
    pub g_range_s: (f64, f64),
}

impl DeviceConstants {
    /// Loads the device model a crossbar configuration names, with its
    /// per-run `device.*` overrides (`None` for digital runs or when the
    /// model cannot be loaded).
    pub fn of_config(config: &Config) -> Option<Self> {
        if config.training.substrate != SubstrateKind::Crossbar {
            return None;
        }
        let (name, overrides) = (&config.crossbar.device, &config.device);
        let m = crate::devices::DeviceModel::load(name, overrides).ok()?;
        let positive = |x: f64| (x.is_finite() && x > 0.0).then_some(x);
        Some(Self {
            name: m.name.clone(),
            endurance_pulses: positive(m.endurance.pulses),
            pulse_energy_j: positive(m.cost.pulse_energy_pj).map(|e| e * 1e-12),
            pulse_width_s: positive(m.cost.pulse_width_ns).map(|t| t * 1e-9),
            g_range_s: (m.conductance.g_min_us * 1e-6, m.conductance.g_max_us * 1e-6),
        })
    }
}

/// Σ G (S) of a layer from its end-of-run conductance histogram (over the
/// normalised conductance g ∈ [0, 1]), mapped to µS by the affine map that
/// `conductance_range_used` gives (`min_normalised`/`max_normalised` ↔
/// `min_us`/`max_us`). Bin centres stand for their devices (error ≤ half a
/// bin).
fn conductance_sum_from_histogram(h: &LayerHardwareStats) -> Option<f64> {
    let hist = &h.conductance_histogram;
    let (edges, counts) = (&hist.edges, &hist.counts);
    if counts.is_empty() || edges.len() != counts.len() + 1 {
        return None;
    }
    let r = &h.conductance_range_used;
    let (n0, n1) = (r.min_normalised?, r.max_normalised?);
    let (u0, u1) = (r.min_us?, r.max_us?);
    if (n1 - n0).abs() < 1e-12 {
        return None;
    }
    let slope = (u1 - u0) / (n1 - n0);
    let to_us = |g: f64| u0 + (g - n0) * slope;
    let sum_us: f64 = counts
        .iter()
        .enumerate()
        .map(|(b, &c)| c as f64 * to_us(0.5 * (edges[b] + edges[b + 1])).max(0.0))
        .sum();
    Some(sum_us * 1e-6)
}

/// Sequential layer updates per sample of a discrete schedule on `depth`
/// weight layers (DESIGN.md §1): `fwbw:K` = forward init (L) + (K−1)·(2H+1)
/// + final backward sweep (H), H = L−1; `forward:K` = K·L; `jacobi:K` = K.
pub fn schedule_steps(schedule: Schedule, depth: usize) -> f64 {
    let l = depth as f64;
    let h = (depth.saturating_sub(1)) as f64;
    match schedule {
        Schedule::FwBw { rounds } => l + (rounds as f64 - 1.0) * (2.0 * h + 1.0) + h,
        Schedule::Forward { sweeps } => sweeps as f64 * l,
        Schedule::Jacobi { iterations } => iterations as f64,
    }
}

impl RunCounts {
    /// The counts of a run from its stored configuration and result.
    /// Layers without hardware statistics (digital runs) get `None`
    /// counts, which the cost model estimates.
    pub fn from_run(config: &Config, result: &RunResult) -> Result<Self> {
        let arch: Architecture = config
            .network
            .arch
            .parse()
            .map_err(|e: String| anyhow::anyhow!("network.arch: {e}"))
            .context("the run's stored configuration")?;
        let widths = &arch.0;
        let hw = result.hardware.as_ref();
        let hw_layers: &[LayerHardwareStats] = hw.map_or(&[], |h| h.layers.as_slice());
        // A run that sets its tile size, or reads through resistive lines
        // (whose tiles it then reports, the whole layer for 0), is costed
        // with it; otherwise the technology's tile size stands in.
        let xb = &config.crossbar;
        let tile_of = |h: &LayerHardwareStats, n_in: usize, n_out: usize| {
            if let Some(d) = h
                .ir_drop
                .as_ref()
                .filter(|d| d.tile_rows > 0 && d.tile_cols > 0)
            {
                return Some((d.tile_rows as f64, d.tile_cols as f64));
            }
            let or = |set: usize, whole: usize| (if set > 0 { set } else { whole }) as f64;
            (xb.tile_rows > 0 || xb.tile_cols > 0)
                .then(|| (or(xb.tile_rows, n_in + 1), or(xb.tile_cols, 2 * n_out)))
        };
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                let Some(h) = hw_layers.get(k) else {
                    return LayerCounts {
                        n_in: w[0],
                        n_out: w[1],
                        ..Default::default()
                    };
                };
                let mut counts = array_counts(h, w[0], w[1]);
                counts.tile = tile_of(h, w[0], w[1]);
                if let Some(t) = &h.transfer {
                    // A Tiki-Taka layer's fast array is on the chip too
                    // (its own tiles, reads, conversions, pulses and wear,
                    // calibration included). The layer's slow array is
                    // written by the transfers only: one pulse slot
                    // (`max_pulses` = 1) per column moved, once per update
                    // of the fast array.
                    let mut fast = array_counts(&t.fast_array, w[0], w[1]);
                    fast.one_hot_reads = true;
                    fast.tile = tile_of(&t.fast_array, w[0], w[1]);
                    counts.update_pulse_slots = Some(t.column_reads as f64);
                    counts.updates = fast.updates;
                    counts.fast_array = Some(Box::new(fast));
                }
                counts
            })
            .collect();
        let settle: Vec<f64> = result
            .epochs
            .iter()
            .filter_map(|e| e.settle_time_mean.filter(|x| x.is_finite()))
            .collect();
        let settle_time_tau =
            (!settle.is_empty()).then(|| settle.iter().sum::<f64>() / settle.len() as f64);
        // A defaulted schedule is not stored (`None`): the run used its
        // rule's default (`fwbw:16` for dp-damped, `fwbw:6` otherwise).
        let schedule: Schedule = config
            .learning
            .schedule
            .unwrap_or_else(|| config.learning.rule.default_schedule());
        Ok(Self {
            layers,
            samples_seen: result.samples_seen as f64,
            epochs: result.epochs.len() as f64,
            batch: config.training.batch as f64,
            ode: config.training.dynamics == DynamicsKind::Ode,
            settle_time_tau,
            schedule_steps: schedule_steps(schedule, widths.len().saturating_sub(1)),
            has_hardware: hw.is_some(),
            device: DeviceConstants::of_config(config),
        })
    }
}

/// One term of the estimate with its provenance.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Term {
    /// Value in SI units (`None` when missing).
    pub value: Option<f64>,
    /// Measured, estimated or missing.
    pub provenance: Provenance,
}

impl Term {
    fn new(value: f64, provenance: Provenance) -> Self {
        Self {
            value: Some(value),
            provenance,
        }
    }
    fn missing() -> Self {
        Self {
            value: None,
            provenance: Provenance::Missing,
        }
    }
}

/// The feasibility estimate of one run (per training sample unless noted).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Estimate {
    /// Crossbar read energy (J/sample).
    pub read_energy_j: Term,
    /// Read energy lost in the lines and periphery resistances (J/sample;
    /// 0 with ideal lines).
    pub line_energy_j: Term,
    /// ADC energy (J/sample).
    pub adc_energy_j: Term,
    /// DAC energy (J/sample).
    pub dac_energy_j: Term,
    /// Write-pulse energy (J/sample).
    pub write_energy_j: Term,
    /// Neuron integration energy (J/sample).
    pub neuron_energy_j: Term,
    /// Sum of the available terms (J/sample); provenance is the worst term's.
    pub total_energy_j: Term,
    /// Latency per training sample (s).
    pub latency_s: Term,
    /// Chip area (m²).
    pub area_m2: Term,
    /// Epochs until the median device reaches its endurance.
    pub lifetime_median_epochs: Term,
    /// Epochs until 1 % of devices reach their endurance.
    pub lifetime_1pct_epochs: Term,
    /// Digital baseline energy of a BP step (J/sample).
    pub digital_energy_j: Term,
    /// Settle time used (units of τ).
    pub settle_time_tau: Term,
}

/// Applies the cost model of the module docs to one run.
pub fn estimate(c: &RunCounts, t: &TechnologyParams) -> Estimate {
    use Provenance::*;
    let samples = c.samples_seen.max(1.0);
    let settle = match c.settle_time_tau {
        Some(s) => Term::new(s, Measured),
        None => Term::new(c.schedule_steps, Estimated),
    };
    let settle_tau = settle.value.unwrap_or(0.0);
    let t_settle = settle_tau * t.tau_s;
    let v2 = t.read_voltage_v * t.read_voltage_v;
    let dev = c.device.clone().unwrap_or_default();
    let g_mean = match &c.device {
        Some(d) => 0.5 * (d.g_range_s.0 + d.g_range_s.1),
        None => 0.5 * (t.g_min_s + t.g_max_s),
    };
    let pulse_energy = dev.pulse_energy_j.unwrap_or(t.write_energy_per_pulse_j);
    let pulse_width = dev.pulse_width_s.unwrap_or(t.write_pulse_s);

    let mut read = (0.0, Measured);
    let mut lines = (0.0, Measured);
    let mut adc = (0.0, Measured);
    let mut dac = (0.0, Measured);
    let mut write = (0.0, Measured);
    let mut neurons = 0.0;
    let mut area_cells = 0.0;
    let mut adcs = 0.0;
    let mut macs = 0.0;
    let mut slots = (0.0, Measured);
    let mut life_med: Option<f64> = None;
    let mut life_p1: Option<f64> = None;
    let mut life_prov = Measured;
    let depth = c.layers.len();
    for (k, layer) in c.layers.iter().enumerate() {
        macs += layer.n_in as f64 * layer.n_out as f64;
        // one dyadic neuron per hidden and output unit
        neurons += layer.n_out as f64;
        // The layer's write phases: its array's, then its fast array's
        // (a Tiki-Taka layer updates A, then moves columns into C).
        let mut layer_slots = 0.0;
        // The weight array, then its fast array if it has one.
        for l in std::iter::once(layer).chain(layer.fast_array.as_deref()) {
            let rows = (l.n_in + 1) as f64; // inputs + bias row
            let cols = l.n_out as f64;
            let analytic_devices = rows * cols * t.devices_per_weight;
            let devices = l.devices.unwrap_or(analytic_devices);
            // Analytic per-sample reads: every layer is read forward once per
            // sequential step it takes part in; feedback (transposed) reads
            // exist for layers k ≥ 2 only.
            let per_sample_steps = (c.schedule_steps / depth.max(1) as f64).max(1.0);
            let fwd_est = samples * per_sample_steps;
            let trn_est = if k == 0 {
                0.0
            } else {
                samples * per_sample_steps
            };
            let (fwd, fwd_p) = l
                .forward_reads
                .map_or((fwd_est, Estimated), |r| (r, Measured));
            let (trn, trn_p) = l
                .transposed_reads
                .map_or((trn_est, Estimated), |r| (r, Measured));
            let (g_sum, g_p) = l
                .conductance_sum_s
                .map_or((devices * g_mean, Estimated), |g| (g, Measured));
            // --- read energy
            // Discrete reads are pulses of t_read; the continuous-time circuit
            // reads for the whole settle time, so its estimate uses t_settle.
            let (e_read, p_read) = if let (Some(x), false) = (l.read_drive_conductance_s, c.ode) {
                (v2 * t.read_pulse_s * x, Measured)
            } else if l.one_hot_reads {
                // one input line at full scale: that line's devices, ΣG / rows
                let x = l.read_drive_conductance_s;
                x.map_or((v2 * t.read_pulse_s * fwd * g_sum / rows, Estimated), |x| {
                    (v2 * t.read_pulse_s * x, Measured)
                })
            } else if c.ode {
                let directions = if k == 0 { 1.0 } else { 2.0 };
                (
                    v2 * g_sum * t_settle * directions * samples,
                    g_p.worst(settle.provenance).worst(Estimated),
                )
            } else {
                (v2 * t.read_pulse_s * (fwd + trn) * g_sum, Estimated)
            };
            read = (read.0 + e_read, read.1.worst(p_read));
            // --- line losses: a full-scale read loses the share f of its
            // power in the wires and periphery, so the cells' E_read comes
            // with E_read·f/(1 − f) more.
            if let Some(f) = l.line_power_fraction {
                lines.0 += e_read * f / (1.0 - f);
                lines.1 = lines.1.worst(p_read).worst(Estimated);
            }
            // --- converters
            let (fwd_c, trn_c) = if c.ode && !l.one_hot_reads {
                // the controller samples s̄ and δ once per sample for the update
                (samples, if k == 0 { 0.0 } else { samples })
            } else {
                (fwd, trn)
            };
            let conv_p = if c.ode { Estimated } else { fwd_p.worst(trn_p) };
            let adc_est = fwd_c * l.n_out as f64 + trn_c * l.n_in as f64;
            let dac_est = fwd_c * l.n_in as f64 + trn_c * l.n_out as f64;
            let (n_adc, p_adc) = l
                .adc_conversions
                .map_or((adc_est, conv_p.worst(Estimated)), |n| (n, Measured));
            let (n_dac, p_dac) = l
                .dac_conversions
                .map_or((dac_est, conv_p.worst(Estimated)), |n| (n, Measured));
            adc = (
                adc.0 + n_adc * t.adc_energy_per_conversion_j,
                adc.1.worst(p_adc),
            );
            dac = (
                dac.0 + n_dac * t.dac_energy_per_conversion_j,
                dac.1.worst(p_dac),
            );
            // --- writes
            match (l.write_energy_j, l.pulses_total) {
                // the device model's own per-pulse energy wins over the technology's
                (Some(e), _) => write.0 += e,
                (None, Some(p)) => write.0 += p * pulse_energy,
                (None, None) => write.1 = Missing,
            }
            match (l.update_pulse_slots, l.updates) {
                (Some(s), Some(u)) if u > 0.0 => layer_slots += s / u,
                _ => {
                    layer_slots += t.write_slots_per_update;
                    slots.1 = Estimated;
                }
            }
            // --- lifetime
            let endurance = l
                .endurance_pulses
                .or(dev.endurance_pulses)
                .unwrap_or(t.endurance_pulses);
            if let Some(p) = l.pulses_total {
                let mean = l.pulses_mean.unwrap_or(p / devices.max(1.0));
                // Without quantiles: the mean stands for the median (uniform
                // wear), the most-worn device for the 1 % (conservative).
                let (med, p99, prov) = match (l.pulses_median, l.pulses_p99) {
                    (Some(m), Some(q)) => (m, q, Measured),
                    (Some(m), None) => (m, l.pulses_max.unwrap_or(m), Estimated),
                    _ => (mean, l.pulses_max.unwrap_or(mean), Estimated),
                };
                life_prov = life_prov.worst(prov);
                let epochs = c.epochs.max(1.0);
                let lm = if med > 0.0 {
                    endurance * epochs / med
                } else {
                    f64::INFINITY
                };
                let lp = if p99 > 0.0 {
                    endurance * epochs / p99
                } else {
                    f64::INFINITY
                };
                life_med = Some(life_med.map_or(lm, |x: f64| x.min(lm)));
                life_p1 = Some(life_p1.map_or(lp, |x: f64| x.min(lp)));
            } else {
                life_prov = Missing;
            }
            // --- area: tiles holding rows × (cols·devices_per_weight) devices
            let (array_rows, array_cols) = l.tile.unwrap_or((t.array_rows, t.array_cols));
            let weights_per_tile_col = (array_cols / t.devices_per_weight).floor().max(1.0);
            let tiles = (rows / array_rows).ceil() * (cols / weights_per_tile_col).ceil();
            area_cells += tiles * array_rows * array_cols;
            adcs += tiles * ((array_rows + array_cols) / t.columns_per_adc).ceil();
        }
        slots.0 = f64::max(slots.0, layer_slots);
    }
    let per = |x: f64| x / samples;
    let read_t = Term::new(per(read.0), read.1);
    let lines_t = Term::new(per(lines.0), lines.1);
    let adc_t = Term::new(per(adc.0), adc.1);
    let dac_t = Term::new(per(dac.0), dac.1);
    let write_t = if write.1 == Missing {
        Term::missing()
    } else {
        Term::new(per(write.0), write.1)
    };
    let neuron_t = Term::new(
        2.0 * neurons * settle_tau * t.neuron_energy_per_tau_j,
        // as good as the settle time it is computed from
        settle.provenance,
    );
    let terms = [read_t, lines_t, adc_t, dac_t, write_t, neuron_t];
    let total = terms.iter().filter_map(|x| x.value).sum::<f64>();
    let prov = terms.iter().fold(Measured, |p, x| p.worst(x.provenance));
    // Latency: settle (or the serial read steps of a discrete schedule),
    // each step also waiting for the shared ADCs; writes amortised over B.
    let step_time = t.read_pulse_s + t.columns_per_adc * t.adc_conversion_s;
    let latency = if c.ode {
        t_settle + 2.0 * step_time
    } else {
        c.schedule_steps * step_time
    } + slots.0 * pulse_width / c.batch.max(1.0);
    let f2 = t.feature_size_m * t.feature_size_m;
    let area = area_cells * t.cell_area_f2 * f2 + adcs * t.adc_area_m2 + neurons * t.neuron_area_m2;
    let life = |v: Option<f64>| match v {
        Some(x) if life_prov != Missing => Term::new(x, life_prov),
        _ => Term::missing(),
    };
    Estimate {
        read_energy_j: read_t,
        line_energy_j: lines_t,
        adc_energy_j: adc_t,
        dac_energy_j: dac_t,
        write_energy_j: write_t,
        neuron_energy_j: neuron_t,
        total_energy_j: Term::new(total, prov),
        latency_s: Term::new(latency, settle.provenance.worst(slots.1)),
        area_m2: Term::new(area, Estimated),
        lifetime_median_epochs: life(life_med),
        lifetime_1pct_epochs: life(life_p1),
        digital_energy_j: Term::new(3.0 * macs * t.digital_energy_per_mac_j, Estimated),
        settle_time_tau: settle,
    }
}

impl Estimate {
    /// Combines the estimates of repeated runs of one configuration (seeds):
    /// every term is the mean of the runs that have it, except the
    /// lifetimes, which take the shortest (the first device to wear out
    /// on any seed). Provenance is the weakest of the runs'.
    pub fn pooled(runs: &[Estimate]) -> Option<Estimate> {
        runs.first()?;
        // One term over the runs, reduced by `combine` (missing if any run
        // lacks it), with the weakest provenance.
        let pool = |f: &dyn Fn(&Estimate) -> Term, combine: fn(&[f64]) -> f64| -> Term {
            let prov = runs
                .iter()
                .fold(Provenance::Measured, |p, e| p.worst(f(e).provenance));
            let xs: Vec<f64> = runs.iter().filter_map(|e| f(e).value).collect();
            if xs.len() < runs.len() {
                return Term::missing();
            }
            Term::new(combine(&xs), prov)
        };
        let mean =
            |f: &dyn Fn(&Estimate) -> Term| pool(f, |xs| xs.iter().sum::<f64>() / xs.len() as f64);
        let min = |f: &dyn Fn(&Estimate) -> Term| {
            pool(f, |xs| xs.iter().cloned().fold(f64::INFINITY, f64::min))
        };
        Some(Estimate {
            read_energy_j: mean(&|e| e.read_energy_j),
            line_energy_j: mean(&|e| e.line_energy_j),
            adc_energy_j: mean(&|e| e.adc_energy_j),
            dac_energy_j: mean(&|e| e.dac_energy_j),
            write_energy_j: mean(&|e| e.write_energy_j),
            neuron_energy_j: mean(&|e| e.neuron_energy_j),
            total_energy_j: mean(&|e| e.total_energy_j),
            latency_s: mean(&|e| e.latency_s),
            area_m2: mean(&|e| e.area_m2),
            lifetime_median_epochs: min(&|e| e.lifetime_median_epochs),
            lifetime_1pct_epochs: min(&|e| e.lifetime_1pct_epochs),
            digital_energy_j: mean(&|e| e.digital_energy_j),
            settle_time_tau: mean(&|e| e.settle_time_tau),
        })
    }
}

/// Pass/fail of one run against the requirements (`None` = not set or not
/// computable).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    /// Accuracy requirement met.
    pub accuracy: Option<bool>,
    /// Energy requirement met.
    pub energy: Option<bool>,
    /// Lifetime requirement met.
    pub lifetime: Option<bool>,
}

impl Verdict {
    /// Compares one run with the requirements.
    pub fn of(req: &Requirements, accuracy: Option<f64>, e: &Estimate) -> Self {
        let cmp = |limit: Option<f64>, value: Option<f64>, ge: bool| {
            limit.and_then(|l| value.map(|v| if ge { v >= l } else { v <= l }))
        };
        Self {
            accuracy: cmp(req.accuracy_min, accuracy, true),
            energy: cmp(req.energy_per_sample_max_j, e.total_energy_j.value, false),
            lifetime: cmp(req.lifetime_min_epochs, e.lifetime_1pct_epochs.value, true),
        }
    }

    /// All set requirements met (and every one computable).
    pub fn passes(&self, req: &Requirements) -> bool {
        let ok = |set: bool, v: Option<bool>| !set || v == Some(true);
        ok(req.accuracy_min.is_some(), self.accuracy)
            && ok(req.energy_per_sample_max_j.is_some(), self.energy)
            && ok(req.lifetime_min_epochs.is_some(), self.lifetime)
    }
}

/// The counts of one array's hardware statistics (`n_in`, `n_out` from the
/// architecture).
fn array_counts(h: &LayerHardwareStats, n_in: usize, n_out: usize) -> LayerCounts {
    let reads = &h.reads;
    let finite = |x: f64| x.is_finite().then_some(x);
    LayerCounts {
        n_in,
        n_out,
        devices: Some(h.devices as f64),
        forward_reads: Some(reads.forward_samples as f64),
        transposed_reads: Some(reads.transposed_samples as f64),
        read_drive_conductance_s: reads.read_drive_conductance_s.and_then(finite),
        conductance_sum_s: conductance_sum_from_histogram(h),
        adc_conversions: Some(reads.adc_conversions as f64),
        dac_conversions: reads.dac_conversions.map(|n| n as f64),
        pulses_total: Some(h.pulses_applied as f64),
        // The crossbar records no per-device distribution.
        pulses_median: None,
        pulses_p99: None,
        pulses_mean: finite(h.pulses_per_device_mean),
        pulses_max: Some(h.pulses_per_device_max as f64),
        write_energy_j: h.pulse_energy_j.and_then(finite),
        update_pulse_slots: h.update_pulse_slots.map(|s| s as f64),
        updates: Some(h.controller.updates as f64),
        // The device model's endurance comes from the stored
        // configuration (`DeviceConstants`).
        endurance_pulses: None,
        one_hot_reads: false,
        fast_array: None,
        line_power_fraction: h
            .ir_drop
            .as_ref()
            .and_then(|d| d.full_scale_reads.first())
            .map(|r| r.line_power_fraction)
            .filter(|f| f.is_finite() && (0.0..1.0).contains(f)),
        tile: None,
    }
}
