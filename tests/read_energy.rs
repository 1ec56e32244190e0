//! The crossbar's read-energy counter: Σ over reads of Σ_lines G_line·u²
//! (E = V²·G·t summed over the actual conductances, DESIGN.md §5), checked
//! against the device physics (a constant-step pair at w = 0 sits at mid-range,
//! G⁺ ≈ G⁻ ≈ (G_min + G_max)/2) and against its own linearity.

use dyadsim::crossbar::{Crossbar, CrossbarConfig};
use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::WeightArray;

const N_OUT: usize = 8;
const N_IN: usize = 5;

fn crossbar() -> Crossbar {
    let cfg = CrossbarConfig {
        device: "constant_step".into(),
        w_scale: 1.0,
        ..CrossbarConfig::default()
    };
    let mut xb = Crossbar::new(&cfg, &toml::Table::new(), N_OUT, N_IN, 5).unwrap();
    xb.set_parameters(&Mat::zeros(N_OUT, N_IN), &Vector::zeros(N_OUT));
    xb
}

fn counter(xb: &Crossbar) -> (f64, u64) {
    let h = xb.hardware_stats().unwrap();
    (
        h.reads.read_drive_conductance_s.unwrap(),
        h.reads.dac_conversions.unwrap(),
    )
}

fn forward_count(xb: &mut Crossbar, x: &[f32]) -> f64 {
    let before = counter(xb).0;
    let mut out = Mat::zeros(0, 0);
    xb.forward(&Mat::from_column_slice(N_IN, 1, x), &mut out);
    counter(xb).0 - before
}

#[test]
fn read_energy_counts_the_conductance_each_driven_line_sees() {
    let mut xb = crossbar();
    // constant_step: G in [0, 25] µS, w = 0 at mid-range: a pair is ≈ 25 µS.
    let pair = 25e-6;
    let e0 = forward_count(&mut xb, &[1.0, 0.0, 0.0, 0.0, 0.0]);
    // Line 0 and the bias line, N_OUT pairs each (device-to-device spread of the bounds: ±15 %).
    let expected = 2.0 * N_OUT as f64 * pair;
    assert!((e0 - expected).abs() < 0.2 * expected, "{e0} vs {expected}");
    // Linear in the lines driven, and invariant to the input's scale (abs-max DAC).
    let e1 = forward_count(&mut xb, &[0.0, 1.0, 0.0, 0.0, 0.0]);
    let zero = forward_count(&mut xb, &[0.0; N_IN]);
    let both = forward_count(&mut xb, &[1.0, 1.0, 0.0, 0.0, 0.0]);
    assert!(
        (both - (e0 + e1 - zero)).abs() < 1e-12,
        "{both} vs {}",
        e0 + e1 - zero
    );
    let scaled = forward_count(&mut xb, &[3.0, 0.0, 0.0, 0.0, 0.0]);
    assert!((scaled - e0).abs() < 1e-12);
    // Half drive costs a quarter (E ∝ V²).
    let half = forward_count(&mut xb, &[1.0, 0.5, 0.0, 0.0, 0.0]);
    assert!((half - (e0 + 0.25 * (e1 - zero))).abs() < 1e-12);
    // Transposed read of one output line: N_IN pairs, no bias line.
    let before = counter(&xb);
    let mut d = Mat::zeros(N_OUT, 1);
    d[(0, 0)] = 1.0;
    let mut out = Mat::zeros(0, 0);
    xb.transposed(&d, &mut out);
    let after = counter(&xb);
    let t = after.0 - before.0;
    let expected_t = N_IN as f64 * pair;
    assert!(
        (t - expected_t).abs() < 0.2 * expected_t,
        "{t} vs {expected_t}"
    );
    assert_eq!(
        after.1 - before.1,
        N_OUT as u64,
        "one DAC conversion per driven column"
    );
}

/// Per-line conductances (S) as the read counter sees them: input lines
/// (bias line last) from one-hot forward reads, output lines from one-hot
/// transposed reads.
fn line_conductances(xb: &mut Crossbar) -> (Vec<f64>, Vec<f64>) {
    let (n_out, n_in) = (xb.n_out(), xb.n_in());
    let read = |xb: &mut Crossbar, x: Mat, forward: bool| {
        let before = counter(xb).0;
        let mut out = Mat::zeros(0, 0);
        if forward {
            xb.forward(&x, &mut out);
        } else {
            xb.transposed(&x, &mut out);
        }
        counter(xb).0 - before
    };
    let bias = read(xb, Mat::zeros(n_in, 1), true);
    let mut line_in: Vec<f64> = (0..n_in)
        .map(|j| {
            let mut x = Mat::zeros(n_in, 1);
            x[(j, 0)] = 1.0;
            read(xb, x, true) - bias
        })
        .collect();
    line_in.push(bias);
    let line_out = (0..n_out)
        .map(|i| {
            let mut d = Mat::zeros(n_out, 1);
            d[(i, 0)] = 1.0;
            read(xb, d, false)
        })
        .collect();
    (line_in, line_out)
}

/// The same sums computed here from the devices' read-visible conductances.
fn line_conductances_from_devices(xb: &Crossbar) -> (Vec<f64>, Vec<f64>) {
    let (n_out, n_in) = (xb.n_out(), xb.n_in());
    let m = xb.model();
    let to_s = |g: f32| {
        (m.conductance.g_min_us + g as f64 * (m.conductance.g_max_us - m.conductance.g_min_us))
            * 1e-6
    };
    let d = xb.devices();
    let mut line_in = vec![0.0; n_in + 1];
    let mut line_out = vec![0.0; n_out];
    for (j, line) in line_in.iter_mut().enumerate() {
        for (i, out) in line_out.iter_mut().enumerate() {
            let idx = i + j * n_out;
            let g = to_s(d.visible(xb.plus_index(idx)))
                + match xb.minus_index(idx) {
                    Some(k) => to_s(d.visible(k)),
                    None => to_s(m.bounds.g_center), // the reference device
                };
            *line += g;
            if j < n_in {
                *out += g;
            }
        }
    }
    (line_in, line_out)
}

fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-9 * y.abs(),
            "{what}, line {k}: {x} vs {y} (relative {:e})",
            (x - y).abs() / y.abs()
        );
    }
}

#[test]
fn incremental_line_conductances_equal_a_full_rebuild() {
    use dyadsim::controller::WriteScheme;
    use dyadsim::crossbar::Mapping;
    use dyadsim::substrate::OuterProductGradient;
    use rand::{Rng, SeedableRng};

    let (n_out, n_in) = (12, 20);
    let cases = [
        (
            "reram_es",
            Mapping::Differential,
            WriteScheme::Stochastic,
            0.0,
        ),
        ("reram_es", Mapping::Reference, WriteScheme::Stochastic, 0.0),
        (
            "ecram",
            Mapping::Differential,
            WriteScheme::MixedPrecision,
            0.0,
        ),
        ("pcm", Mapping::Differential, WriteScheme::Stochastic, 1.0),
        ("ideal", Mapping::Differential, WriteScheme::Exact, 0.0),
    ];
    for (device, mapping, write, time_per_batch) in cases {
        let cfg = CrossbarConfig {
            device: device.into(),
            mapping,
            write,
            lr: 0.01,
            w_scale: 1.0,
            time_per_batch,
            ..CrossbarConfig::default()
        };
        let ov = toml::Table::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut random =
            |r: usize, c: usize| Mat::from_fn(r, c, |_, _| rng.gen::<f32>() * 2.0 - 1.0);
        let mut xb = Crossbar::new(&cfg, &ov, n_out, n_in, 3).unwrap();
        xb.set_parameters(&(random(n_out, n_in) * 0.3), &Vector::zeros(n_out));
        for step in 0..1000 {
            if step % 50 == 0 {
                // A read between writes: the sums are built once, then updated.
                let mut y = Mat::zeros(0, 0);
                xb.forward(&random(n_in, 2), &mut y);
            }
            let g = OuterProductGradient {
                left: random(n_out, 4),
                right: random(n_in, 4),
                scale: 0.5,
            };
            xb.apply_gradient(&g);
        }
        let pulses = xb.hardware_stats().unwrap().pulses_applied;
        assert!(
            write == WriteScheme::Exact || pulses > 10_000,
            "{device}: {pulses} pulses"
        );
        let expected = line_conductances_from_devices(&xb);
        // The same devices in a fresh array: restoring rebuilds the sums.
        let mut rebuilt = Crossbar::new(&cfg, &ov, n_out, n_in, 3).unwrap();
        rebuilt
            .restore_device_state(&xb.device_state().unwrap())
            .unwrap();
        let full = line_conductances(&mut rebuilt);
        let incremental = line_conductances(&mut xb);
        let what = format!("{device} {mapping:?}");
        assert_close(&format!("{what} input lines"), &incremental.0, &full.0);
        assert_close(&format!("{what} output lines"), &incremental.1, &full.1);
        assert_close(&format!("{what} vs devices"), &incremental.0, &expected.0);
        assert_close(&format!("{what} vs devices"), &incremental.1, &expected.1);
    }
}

/// `crossbar.read_energy = false` skips the count: the summary says "not
/// counted" (null, per layer and in the run's total, so the feasibility
/// report falls back to its estimate), while reads, writes and the other
/// counters are those of a crossbar that counts.
#[test]
fn read_energy_off_reports_no_figure_and_changes_nothing_else() {
    use dyadsim::substrate::HardwareTotals;
    use dyadsim::substrate::OuterProductGradient;
    let build = |read_energy: bool| {
        let cfg = CrossbarConfig {
            device: "constant_step".into(),
            w_scale: 1.0,
            read_energy,
            ..CrossbarConfig::default()
        };
        let mut xb = Crossbar::new(&cfg, &toml::Table::new(), N_OUT, N_IN, 5).unwrap();
        let w = Mat::from_fn(N_OUT, N_IN, |i, j| ((i * 3 + j) as f32 * 0.7).sin() * 0.4);
        xb.set_parameters(&w, &Vector::zeros(N_OUT));
        xb
    };
    let (mut on, mut off) = (build(true), build(false));
    let x = Mat::from_fn(N_IN, 4, |j, b| ((j + 2 * b) as f32 * 0.9).cos());
    let d = Mat::from_fn(N_OUT, 4, |i, b| ((i + b) as f32 * 0.3).sin());
    let grad = OuterProductGradient {
        left: d.clone(),
        right: x.clone(),
        scale: -0.5,
    };
    for _ in 0..3 {
        let mut outs = Vec::new();
        for xb in [&mut on, &mut off] {
            let (mut y, mut z) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
            xb.forward(&x, &mut y);
            xb.transposed(&d, &mut z);
            xb.apply_gradient(&grad);
            outs.push((y, z));
        }
        assert_eq!(outs[0], outs[1], "reads must not depend on the count");
    }
    let (h_on, h_off) = (on.hardware_stats().unwrap(), off.hardware_stats().unwrap());
    assert!(h_on.reads.read_drive_conductance_s.unwrap() > 0.0);
    assert!(h_off.reads.read_drive_conductance_s.is_none());
    // … and `null` in the result file, not a skipped key or a 0.
    let json = serde_json::to_value(&h_off).unwrap();
    assert!(json["reads"]["read_drive_conductance_s"].is_null());
    assert!(json["reads"]
        .as_object()
        .unwrap()
        .contains_key("read_drive_conductance_s"));
    assert_eq!(h_on.reads.dac_conversions, h_off.reads.dac_conversions);
    assert_eq!(h_on.reads.adc_conversions, h_off.reads.adc_conversions);
    assert_eq!(h_on.reads.forward_samples, h_off.reads.forward_samples);
    assert_eq!(h_on.pulses_applied, h_off.pulses_applied);
    assert_eq!(on.weights(), off.weights());
    let total = |layers: &[dyadsim::substrate::LayerHardwareStats]| {
        HardwareTotals::of(layers).reads.read_drive_conductance_s
    };
    assert!(total(&[h_on.clone(), h_on.clone()]).unwrap() > 0.0);
    assert!(
        total(&[h_on, h_off]).is_none(),
        "a total needs every layer's count"
    );
}
