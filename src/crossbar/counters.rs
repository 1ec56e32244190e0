//! Counters of a crossbar's reads and converter events, and the
//! conductance every read drives (the measured read energy of the
//! feasibility report, `E = V²·t·Σ G u²`).

use super::mapping::EntryTerms;
use super::{Crossbar, InputScaling, ReadDirection};
use crate::controller::WriteScheme;
use crate::kernels::simd_builds;
use crate::linalg::{max_abs_slice, Mat};
use crate::substrate::stats::{ConductanceRange, LayerHardwareStats, ReadCounts, WriteCounts};
use serde::{Deserialize, Serialize};

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

simd_builds!(
    /// [`drive_conductance_portable`], built for AVX-512/AVX2 where the CPU
    /// has them (the same eight partial sums in the same order: the same
    /// bits).
    fn drive_conductance, drive_conductance_avx512, drive_conductance_avx2 =
        drive_conductance_portable(lines: &[f64], x: &[f32], scale: f32) -> f64
);

/// The name serde gives a unit variant (`differential`, `stochastic`…).
pub(super) fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

impl Crossbar {
    /// The layer's hardware statistics ([`WeightArray::hardware_stats`]).
    ///
    /// [`WeightArray::hardware_stats`]: crate::substrate::WeightArray::hardware_stats
    pub(super) fn layer_stats(&self) -> LayerHardwareStats {
        let d = &self.devices;
        let (up, down) = d.pulse_totals();
        let (low, high, worn) = d.fault_counts();
        let (gmin, gmax) = d.conductance_range();
        let devices = d.len();
        let span_us = self.model.conductance.g_max_us - self.model.conductance.g_min_us;
        let to_us = |g: f32| self.model.conductance.g_min_us + g as f64 * span_us;
        let finite = |v: f64| v.is_finite().then_some(v);
        let bins = self.config.histogram_bins;
        let n_cross = self.n_out * (self.n_in + 1);
        let weights_now = (0..n_cross).map(|i| self.weight_at(i));
        let w_min = weights_now.clone().fold(f32::INFINITY, f32::min);
        let w_max = weights_now.fold(f32::NEG_INFINITY, f32::max);
        let cs = self.controller.stats();
        let st = &self.stats;
        LayerHardwareStats {
            substrate: "crossbar".into(),
            device_model: self.model.name.clone(),
            mapping: serde_name(&self.config.mapping),
            write: serde_name(&self.config.write),
            update: serde_name(&self.config.update),
            shape: [self.n_out, self.n_in + 1],
            devices,
            pulse_weight: self.controller.pulse_weight() as f64,
            pulses_applied: up + down,
            pulses_up: up,
            pulses_down: down,
            pulses_per_device_mean: d.total_pulse_count() as f64 / devices.max(1) as f64,
            pulses_per_device_max: d.max_pulse_count(),
            pulse_energy_j: (self.model.cost.pulse_energy_pj > 0.0)
                .then(|| (up + down) as f64 * self.model.cost.pulse_energy_pj * 1e-12),
            devices_stuck: low + high + worn,
            devices_stuck_at_min: low,
            devices_stuck_at_max: high,
            devices_worn_out: worn,
            conductance_range_used: ConductanceRange {
                min_normalised: finite(gmin as f64),
                max_normalised: finite(gmax as f64),
                fraction_of_range: finite((gmax - gmin) as f64),
                min_us: finite(to_us(gmin)),
                max_us: finite(to_us(gmax)),
            },
            weight_range: [finite(w_min as f64), finite(w_max as f64)],
            reads: ReadCounts {
                forward_reads: st.forward_reads,
                forward_samples: st.forward_samples,
                transposed_reads: st.transposed_reads,
                transposed_samples: st.transposed_samples,
                adc_conversions: st.adc_conversions,
                adc_saturated: st.adc_saturated,
                dac_clipped: st.dac_clipped,
                dac_conversions: Some(st.dac_conversions),
                // Not counted (`crossbar.read_energy = false`): no figure
                // rather than a zero the feasibility report would take for
                // a measurement.
                read_drive_conductance_s: self
                    .config
                    .read_energy
                    .then_some(st.read_drive_conductance_s),
            },
            adc_saturation_fraction: (st.adc_conversions > 0)
                .then(|| st.adc_saturated as f64 / st.adc_conversions as f64),
            controller: WriteCounts {
                updates: cs.updates,
                pulse_phases: cs.pulse_phases,
                clipped_probabilities: cs.clipped_probabilities,
                requested_pulse_events: cs.requested_pulse_events,
                pulse_slots: cs.pulse_slots,
            },
            update_pulse_slots: (self.config.write == WriteScheme::Stochastic)
                .then_some(cs.pulse_slots),
            mean_bit_length: (cs.pulse_slots > 0 && cs.pulse_phases > 0)
                .then(|| cs.pulse_slots as f64 / cs.pulse_phases as f64),
            one_sided_refreshes: self.refreshes,
            device_time_s: d.time(),
            conductance_histogram: self.conductance_histogram(bins),
            weight_histogram: self.weight_histogram(bins),
            pulse_histogram: None,
            transfer: self.transfer.as_ref().map(|t| t.stats()),
            ir_drop: self.ir_drop_stats(),
        }
    }

    pub(super) fn ensure_line_conductances(&mut self) {
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
    pub(super) fn count_read(&mut self, x: &Mat, direction: ReadDirection) {
        let forward = direction == ReadDirection::Forward;
        let io = *self.periphery.of_direction(direction);
        self.stats.dac_conversions += (x.len() + if forward { x.ncols() } else { 0 }) as u64;
        let fixed = io.input_scaling == InputScaling::Fixed;
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
        let range = io.dac_range;
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
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected just above.
                let avx2 = unsafe { drive_conductance_avx2(&lines, &x, 1.1) };
                assert_eq!(base.to_bits(), avx2.to_bits(), "AVX2, n {n}");
            }
        }
    }
}
