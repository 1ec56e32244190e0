//! Feasibility cost model against hand-computed cases: one crossbar layer,
//! known conductances and counts, a test technology with round numbers.

use dyadsim::experiment::result::EpochRecord;
use dyadsim::experiment::{Config, RunResult};
use dyadsim::report::feasibility::{
    estimate, schedule_steps, Provenance, Requirements, RunCounts, Verdict,
};
use dyadsim::report::technology::Technology;
use dyadsim::rules::Schedule;
use serde_json::json;

/// A run's counts from JSON fragments of its stored configuration and its
/// result, as `report` reads them from result files (the result's other
/// fields take a finished run's values).
fn counts(config: serde_json::Value, result: serde_json::Value) -> RunCounts {
    let config: Config = serde_json::from_value(config).expect("configuration");
    let mut full = json!({
        "status": "ok", "diverged_at": null, "test_accuracy": null,
        "validation_accuracy": null, "train_loss": null, "train_accuracy": null,
        "lipschitz": null, "max_state": 0.0, "samples_per_second": 0.0,
        "wall_seconds": 0.0, "samples_seen": 0, "epochs": [], "hardware": null
    });
    for (k, v) in result.as_object().expect("result object") {
        full[k] = v.clone();
    }
    let epoch = serde_json::to_value(EpochRecord::default()).expect("epoch record");
    for e in full["epochs"].as_array_mut().expect("epochs") {
        let mut record = epoch.clone();
        for (k, v) in e.as_object().expect("epoch object") {
            record[k] = v.clone();
        }
        *e = record;
    }
    let result: RunResult = serde_json::from_value(full).expect("result");
    RunCounts::from_run(&config, &result).expect("counts")
}

/// Round-number technology: V_r = 0.5 V, t_r = 10 ns, 5-bit ADC at
/// 2 fJ/step (64 fJ/conversion), DAC 0.1 pJ, write 1 V × 10 µS × 50 ns
/// (0.5 pJ/pulse), τ = 100 ns at 1 pJ per τ, 4×4 tiles of 4 F² at F = 10 nm.
const TECH: &str = r#"
feature_size = { value = 10, unit = "nm", source = "test value" }
cell_area = { value = 4, unit = "F^2", source = "test value" }
devices_per_weight = { value = 2, unit = "1", source = "test value" }
array_rows = { value = 4, unit = "1", source = "test value" }
array_cols = { value = 4, unit = "1", source = "test value" }
g_min = { value = 1, unit = "uS", source = "test value" }
g_max = { value = 10, unit = "uS", source = "test value" }
read_voltage = { value = 0.5, unit = "V", source = "test value" }
read_pulse_width = { value = 10, unit = "ns", source = "test value" }
write_voltage = { value = 1, unit = "V", source = "test value" }
write_pulse_width = { value = 50, unit = "ns", source = "test value" }
write_slots_per_update = { value = 20, unit = "1", source = "test value" }
endurance = { value = 1e6, unit = "pulses", source = "test value" }
adc_bits = { value = 5, unit = "bit", source = "test value" }
adc_walden_fom = { value = 2, unit = "fJ/step", source = "test value" }
adc_conversion_time = { value = 6, unit = "ns", source = "test value" }
columns_per_adc = { value = 8, unit = "1", source = "test value" }
adc_area = { value = 1, unit = "um^2", source = "test value" }
dac_bits = { value = 1, unit = "bit", source = "test value" }
dac_energy_per_conversion = { value = 0.1, unit = "pJ", source = "test value" }
tau = { value = 100, unit = "ns", source = "test value" }
neuron_energy_per_tau = { value = 1, unit = "pJ", source = "test value" }
neuron_area = { value = 1, unit = "um^2", source = "test value" }
digital_energy_per_mac = { value = 4.6, unit = "pJ", source = "test value" }
"#;

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("value present");
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-30), "{a:e} != {b:e}");
}

/// One 2→2 layer (2 inputs + bias row × 2 outputs × 2 devices = 12 devices)
/// whose conductances sum to 10 µS, read 100 times forward over 100 samples.
fn one_crossbar(dynamics: &str, settle: Option<[f64; 2]>) -> RunCounts {
    let config = json!({
        "network": {"arch": "2-2"},
        "learning": {"schedule": "jacobi:4"},
        "training": {"batch": 10, "dynamics": dynamics}
    });
    let epochs: Vec<_> = (0..2)
        .map(|e| json!({"epoch": e + 1, "settle_time_mean": settle.map(|s| s[e])}))
        .collect();
    let result = json!({
        "samples_seen": 100,
        "epochs": epochs,
        "hardware": {"layers": [{
            "devices": 12,
            "reads": {"forward_samples": 100, "transposed_samples": 0,
                      "adc_conversions": 200, "dac_conversions": 200},
            "pulses_applied": 1000,
            "update_pulse_slots": 310, "controller": {"updates": 10}
        }]}
    });
    let mut c = counts(config, result);
    // What the crossbar does not record, given to the cost model directly:
    // Σ G, the wear quantiles and a per-layer endurance.
    let l = &mut c.layers[0];
    l.conductance_sum_s = Some(10e-6);
    (l.pulses_median, l.pulses_p99) = (Some(10.0), Some(40.0));
    l.endurance_pulses = Some(1e6);
    c
}

#[test]
fn discrete_run_matches_hand_computation() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let p = &tech.params;
    assert!((p.write_energy_per_pulse_j - 0.5e-12).abs() < 1e-24); // 1² V² · 10 µS · 50 ns
    assert!((p.adc_energy_per_conversion_j - 64e-15).abs() < 1e-27); // 2 fJ · 2⁵
    let c = one_crossbar("discrete", None);
    assert_eq!(c.schedule_steps, 4.0); // jacobi:4
    let e = estimate(&c, p);
    // reads: V² t ΣG · reads = 0.25 · 10 ns · 10 µS · 100 = 2.5 pJ → /100 samples
    close(e.read_energy_j.value, 2.5e-14);
    close(e.adc_energy_j.value, 200.0 * 64e-15 / 100.0);
    close(e.dac_energy_j.value, 200.0 * 0.1e-12 / 100.0);
    close(e.write_energy_j.value, 1000.0 * 0.5e-12 / 100.0);
    // neurons: 2 compartments · 2 output neurons · 4 τ (one per Jacobi step) · 1 pJ
    close(e.neuron_energy_j.value, 16e-12);
    close(
        e.total_energy_j.value,
        2.5e-14 + 1.28e-13 + 2e-13 + 5e-12 + 16e-12,
    );
    assert_eq!(e.read_energy_j.provenance, Provenance::Estimated); // full-scale drive
    assert_eq!(e.adc_energy_j.provenance, Provenance::Measured);
    assert_eq!(e.write_energy_j.provenance, Provenance::Measured);
    assert_eq!(e.neuron_energy_j.provenance, Provenance::Estimated); // no settle time
                                                                     // latency: 4 steps · (10 ns + 8 · 6 ns) + 31 slots · 50 ns / batch 10
    close(e.latency_s.value, 4.0 * 58e-9 + 31.0 * 50e-9 / 10.0);
    // lifetime: 1e6 pulses / (10 resp. 40 pulses per 2 epochs)
    close(e.lifetime_median_epochs.value, 2e5);
    close(e.lifetime_1pct_epochs.value, 5e4);
    // area: one 4×4 tile of 4 F² at 10 nm, one ADC (8 edge lines / 8), two neurons
    close(e.area_m2.value, 16.0 * 4.0 * 1e-16 + 1e-12 + 2e-12);
    // digital BP: 3 MACs · 4 weights · 4.6 pJ
    close(e.digital_energy_j.value, 3.0 * 4.0 * 4.6e-12);
}

#[test]
fn measured_drive_conductance_is_used_for_reads() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let mut c = one_crossbar("discrete", None);
    c.layers[0].read_drive_conductance_s = Some(3e-3);
    let e = estimate(&c, &tech.params);
    // V² t Σ G u² = 0.25 · 10 ns · 3 mS = 7.5 pJ over 100 samples
    close(e.read_energy_j.value, 7.5e-14);
    assert_eq!(e.read_energy_j.provenance, Provenance::Measured);
}

#[test]
fn circuit_run_charges_reads_and_neurons_for_the_settle_time() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let c = one_crossbar("ode", Some([10.0, 20.0]));
    let e = estimate(&c, &tech.params);
    close(e.settle_time_tau.value, 15.0);
    assert_eq!(e.settle_time_tau.provenance, Provenance::Measured);
    // first layer driven forward only: 0.25 V² · 10 µS · 15 · 100 ns
    close(e.read_energy_j.value, 0.25 * 10e-6 * 1.5e-6);
    close(e.neuron_energy_j.value, 2.0 * 2.0 * 15.0 * 1e-12);
    assert_eq!(e.neuron_energy_j.provenance, Provenance::Measured);
    close(
        e.latency_s.value,
        1.5e-6 + 2.0 * 58e-9 + 31.0 * 50e-9 / 10.0,
    );
}

#[test]
fn without_hardware_counts_terms_are_estimated_or_missing() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let c = counts(
        json!({"network": {"arch": "2-2"}, "learning": {"schedule": "jacobi:4"}}),
        json!({"samples_seen": 100, "epochs": [{}], "hardware": null}),
    );
    assert!(!c.has_hardware);
    let e = estimate(&c, &tech.params);
    // 12 devices at (1+10)/2 µS, one forward read per step per sample
    close(e.read_energy_j.value, 0.25 * 10e-9 * 12.0 * 5.5e-6 * 4.0);
    assert_eq!(e.read_energy_j.provenance, Provenance::Estimated);
    assert_eq!(e.write_energy_j.provenance, Provenance::Missing);
    assert_eq!(e.total_energy_j.provenance, Provenance::Missing);
    assert!(e.lifetime_1pct_epochs.value.is_none());
}

#[test]
fn verdict_against_requirements() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let e = estimate(&one_crossbar("discrete", None), &tech.params);
    let total = e.total_energy_j.value.unwrap();
    let req = Requirements {
        accuracy_min: Some(0.9),
        energy_per_sample_max_j: Some(total * 1.01),
        lifetime_min_epochs: Some(6e4),
    };
    let v = Verdict::of(&req, Some(0.95), &e);
    assert_eq!(
        (v.accuracy, v.energy, v.lifetime),
        (Some(true), Some(true), Some(false))
    );
    assert!(!v.passes(&req));
    let req = Requirements {
        lifetime_min_epochs: Some(4e4),
        ..req
    };
    assert!(Verdict::of(&req, Some(0.95), &e).passes(&req));
    assert!(!Verdict::of(&req, None, &e).passes(&req)); // no accuracy = not met
}

#[test]
fn schedule_step_counts() {
    // fwbw:K on L layers: L + (K−1)(2H+1) + H
    assert_eq!(
        schedule_steps(Schedule::FwBw { rounds: 6 }, 3),
        3.0 + 5.0 * 5.0 + 2.0
    );
    assert_eq!(schedule_steps(Schedule::FwBw { rounds: 1 }, 3), 5.0);
    assert_eq!(schedule_steps(Schedule::Forward { sweeps: 17 }, 3), 51.0);
    assert_eq!(schedule_steps(Schedule::Jacobi { iterations: 30 }, 3), 30.0);
}

/// The crossbar's statistics as a result file holds them: reads under
/// `reads`, `pulses_applied`, the device model's `pulse_energy_j`, and Σ G
/// from the normalised conductance histogram mapped to µS by
/// `conductance_range_used`; a file without `dac_conversions` (written
/// before the crossbar counted them) has the DAC estimated.
#[test]
fn crossbar_summary_keys_are_understood() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let config = json!({"network": {"arch": "2-2"}, "learning": {"schedule": "jacobi:4"},
                        "training": {"batch": 10, "substrate": "crossbar"}});
    let result = json!({
        "samples_seen": 100, "epochs": [{}, {}],
        "hardware": {"layers": [{
            "devices": 4,
            "reads": {"forward_samples": 100, "transposed_samples": 0, "adc_conversions": 200},
            "pulses_applied": 40, "pulse_energy_j": 1e-9,
            "pulses_per_device_mean": 10.0, "pulses_per_device_max": 20,
            "controller": {"updates": 10},
            // g 0.25 → 3.5 µS and 0.75 → 8.5 µS on the map 0 ↦ 1 µS, 1 ↦ 11 µS
            "conductance_histogram": {"edges": [0.0, 0.5, 1.0], "counts": [2, 2]},
            "conductance_range_used": {"min_normalised": 0.0, "max_normalised": 1.0, "min_us": 1.0, "max_us": 11.0}
        }]}
    });
    let c = counts(config.clone(), result.clone());
    let l = &c.layers[0];
    close(l.conductance_sum_s, 24e-6);
    close(l.forward_reads, 100.0);
    close(l.adc_conversions, 200.0);
    close(l.pulses_total, 40.0);
    close(l.updates, 10.0);
    let e = estimate(&c, &tech.params);
    close(e.read_energy_j.value, 0.25 * 10e-9 * 100.0 * 24e-6 / 100.0);
    close(e.write_energy_j.value, 1e-9 / 100.0); // the device model's energy, not 40 × 0.5 pJ
                                                 // DAC not counted by the crossbar: estimated from the reads (2 inputs per read)
    close(e.dac_energy_j.value, 100.0 * 2.0 * 0.1e-12 / 100.0);
    assert_eq!(e.dac_energy_j.provenance, Provenance::Estimated);
    // mean stands for the median, the most-worn device for the 1 %: 1e6 · 2 epochs / (10, 20)
    close(e.lifetime_median_epochs.value, 2e5);
    close(e.lifetime_1pct_epochs.value, 1e5);
    assert_eq!(e.lifetime_1pct_epochs.provenance, Provenance::Estimated);
}

/// A crossbar run's own device model (with its `device.*` overrides)
/// supplies pulse energy and endurance: reram_es states 1.3 pJ per pulse;
/// the run overrides its endurance to 10⁷ pulses.
#[test]
fn device_model_constants_replace_the_technology() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let config = json!({
        "network": {"arch": "2-2"}, "learning": {"schedule": "jacobi:4"},
        "training": {"batch": 10, "substrate": "crossbar"},
        "crossbar": {"device": "reram_es"},
        "device": {"endurance": 1e7}
    });
    let result = json!({"samples_seen": 100, "epochs": [{}, {}],
        "hardware": {"layers": [{"devices": 4, "pulses_applied": 40, "pulses_per_device_mean": 10.0}]}});
    let c = counts(config.clone(), result.clone());
    let d = c.device.as_ref().expect("device model loaded");
    assert_eq!(d.name, "reram_es");
    close(d.pulse_energy_j, 1.3e-12);
    close(d.endurance_pulses, 1e7);
    let e = estimate(&c, &tech.params);
    close(e.write_energy_j.value, 40.0 * 1.3e-12 / 100.0);
    close(e.lifetime_median_epochs.value, 1e7 * 2.0 / 10.0);
    // a digital run has no device model: the technology's 0.5 pJ applies
    let mut digital = config.clone();
    digital["training"]["substrate"] = json!("digital");
    let c = counts(digital, result.clone());
    assert!(c.device.is_none());
    close(
        estimate(&c, &tech.params).write_energy_j.value,
        40.0 * 0.5e-12 / 100.0,
    );
}

/// A run whose schedule was defaulted has none stored (`learning.schedule`
/// is left out of the configuration); its estimate uses the rule's own
/// default — `fwbw:16` for dp-damped, not the `fwbw:6` of the other rules —
/// for the settle-time and latency estimates.
#[test]
fn defaulted_schedule_is_the_rules_default() {
    use dyadsim::rules::RuleKind;
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let stored = |rule: RuleKind| {
        let mut config = Config::default();
        config.network.arch = "4-3-2".into();
        config.learning.rule = rule;
        config.learning.schedule = None;
        config.training.batch = 10;
        // As a sweep or `train --out` stores it.
        let json = serde_json::to_value(&config).unwrap();
        assert!(json["learning"].get("schedule").is_none_or(|s| s.is_null()));
        json
    };
    let result = json!({"samples_seen": 100, "epochs": [{}]});
    // fwbw:K on L = 2 layers (H = 1): L + (K−1)(2H+1) + H
    let damped = counts(stored(RuleKind::DpDamped), result.clone());
    assert_eq!(damped.schedule_steps, 2.0 + 15.0 * 3.0 + 1.0);
    assert_eq!(
        damped.schedule_steps,
        schedule_steps(Schedule::FwBw { rounds: 16 }, 2)
    );
    let dpt = counts(stored(RuleKind::Dpt), result);
    assert_eq!(dpt.schedule_steps, 2.0 + 5.0 * 3.0 + 1.0);
    let e = estimate(&damped, &tech.params);
    close(e.settle_time_tau.value, 48.0);
    assert_eq!(e.settle_time_tau.provenance, Provenance::Estimated);
    // 48 steps · (10 ns + 8 · 6 ns) + 20 estimated slots · 50 ns / batch 10
    close(e.latency_s.value, 48.0 * 58e-9 + 20.0 * 50e-9 / 10.0);
}

/// A Tiki-Taka layer (`crossbar.algorithm` ≠ sgd) is costed with its fast
/// array `A`: A's reads, conversions, pulses and wear add to the layer's,
/// its tiles to the area, and its update plus one pulse slot per column
/// transfer to the write time. A's one-hot column reads drive one input
/// line, so unmeasured they are charged one row's share of its Σ G.
#[test]
fn a_fast_array_counts_with_its_layer() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let config = json!({"network": {"arch": "2-2"}, "learning": {"schedule": "jacobi:4"},
                        "training": {"batch": 10, "substrate": "crossbar"}});
    // g 0.25 → 3.5 µS and 0.75 → 8.5 µS: Σ G = 24 µS for either array
    let array =
        |pulses: u64, mean: f64, max: u64, forward: u64, adc: u64, updates: u64, slots: u64| {
            json!({
                "devices": 4,
                "reads": {"forward_samples": forward, "transposed_samples": 0,
                          "adc_conversions": adc, "dac_conversions": adc},
                "pulses_applied": pulses,
                "pulses_per_device_mean": mean, "pulses_per_device_max": max,
                "controller": {"updates": updates}, "update_pulse_slots": slots,
                "conductance_histogram": {"edges": [0.0, 0.5, 1.0], "counts": [2, 2]},
                "conductance_range_used": {"min_normalised": 0.0, "max_normalised": 1.0,
                                           "min_us": 1.0, "max_us": 11.0}
            })
        };
    let sgd_layer = array(40, 10.0, 20, 100, 200, 10, 310);
    let mut layer = array(40, 10.0, 20, 100, 200, 0, 0);
    layer["transfer"] = json!({
        "algorithm": "ttv2", "transfers": 30, "column_reads": 30, "slow_pulses": 40,
        // A: 400 pulses, 100 per device, 250 on the most-worn; 30 column reads
        "fast_array": array(400, 100.0, 250, 30, 60, 10, 310)
    });
    let result = |layer: serde_json::Value| json!({"samples_seen": 100, "epochs": [{}, {}], "hardware": {"layers": [layer]}});
    let plain = estimate(&counts(config.clone(), result(sgd_layer)), &tech.params);
    let c = counts(config, result(layer));
    let l = &c.layers[0];
    let a = l.fast_array.as_deref().expect("the fast array is costed");
    assert!(a.one_hot_reads && !l.one_hot_reads);
    close(l.update_pulse_slots, 30.0); // one slot per column moved into C
    close(l.updates, 10.0); // A's updates
    let e = estimate(&c, &tech.params);
    // reads: C as before; A: 30 one-hot reads of one line (24 µS / 3 rows)
    close(
        e.read_energy_j.value,
        0.25 * 10e-9 * (100.0 * 24e-6 + 30.0 * 8e-6) / 100.0,
    );
    close(e.adc_energy_j.value, (200.0 + 60.0) * 64e-15 / 100.0);
    close(e.write_energy_j.value, (40.0 + 400.0) * 0.5e-12 / 100.0);
    // writes: (31 slots of A + 3 transfer slots) per update, 50 ns, batch 10
    let latency = |e: &dyadsim::report::feasibility::Estimate| e.latency_s.value.unwrap();
    close(
        Some(latency(&e) - latency(&plain)),
        (31.0 + 3.0 - 31.0) * 50e-9 / 10.0,
    );
    // wear: A's most-worn device (250 pulses in 2 epochs) limits the life
    close(e.lifetime_median_epochs.value, 1e6 * 2.0 / 100.0);
    close(e.lifetime_1pct_epochs.value, 1e6 * 2.0 / 250.0);
    // area: A takes another 4×4 tile with its own ADC (8 edge lines / 8)
    close(
        Some(e.area_m2.value.unwrap() - plain.area_m2.value.unwrap()),
        16.0 * 4.0 * 1e-16 + 1e-12,
    );
}

/// Line losses: a layer whose full-scale read loses the share f of its
/// power in the lines costs E_read·f/(1 − f) more, in the total too; its
/// own tile size (run configuration) replaces the technology's for the area;
/// both come from the stored run (`hardware.layers[k].ir_drop`, `[crossbar]`).
#[test]
fn line_losses_and_the_runs_tile_size_are_costed() {
    let tech = Technology::from_toml_str(TECH, "test").unwrap();
    let plain = estimate(&one_crossbar("discrete", None), &tech.params);
    close(plain.line_energy_j.value, 0.0);
    let config = json!({
        "network": {"arch": "2-2"},
        "learning": {"schedule": "jacobi:4"},
        "training": {"batch": 10, "dynamics": "discrete"},
        "crossbar": {"line_resistance_ohm": 2.0, "tile_rows": 2, "tile_cols": 2}
    });
    let result = json!({
        "samples_seen": 100,
        "hardware": {"layers": [{
            "devices": 12,
            "reads": {"forward_samples": 100, "transposed_samples": 0,
                      "adc_conversions": 200, "dac_conversions": 200},
            "pulses_applied": 1000,
            "update_pulse_slots": 310, "controller": {"updates": 10},
            "ir_drop": {"tile_rows": 2, "tile_cols": 2,
                        "full_scale_reads": [{"tile_rows": 2, "tile_cols": 2,
                         "line_power_fraction": 0.2}]}
        }]}
    });
    let mut c = counts(config, result);
    c.layers[0].conductance_sum_s = Some(10e-6);
    let e = estimate(&c, &tech.params);
    let read = e.read_energy_j.value.unwrap();
    close(Some(read), plain.read_energy_j.value.unwrap());
    close(e.line_energy_j.value, read * 0.2 / 0.8);
    assert_eq!(e.line_energy_j.provenance, Provenance::Estimated);
    assert!(e.total_energy_j.value.unwrap() > plain.total_energy_j.value.unwrap());
    // 3 rows × 2 outputs in 2 × 2 tiles (one weight per tile row):
    // ⌈3/2⌉·⌈2/1⌉ = 4 tiles of 4 cells, against one 4 × 4 tile; each tile
    // has ⌈(2 + 2)/8⌉ = 1 ADC of 1 µm², three more than the one tile.
    let cells = |e: &dyadsim::report::feasibility::Estimate| e.area_m2.value.unwrap();
    let cell_area = 4.0 * 1e-16;
    close(
        Some(cells(&e) - cells(&plain)),
        (4.0 * 4.0 - 16.0) * cell_area + 3.0 * 1e-12,
    );
}
