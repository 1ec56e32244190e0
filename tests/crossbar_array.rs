//! Crossbar reads, periphery and controller (issue 3, "What must hold").

use dyadsim::controller::{UpdateGranularity, WriteScheme};
use dyadsim::crossbar::{Crossbar, CrossbarConfig, Mapping};
use dyadsim::digital::optimizer::{OptimizerConfig, OptimizerKind};
use dyadsim::digital::DigitalWeights;
use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::{OuterProductGradient, WeightArray};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn overrides(pairs: &[(&str, toml::Value)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Default settings with a fixed weight scale of 1.
fn base() -> CrossbarConfig {
    CrossbarConfig {
        w_scale: 1.0,
        ..CrossbarConfig::default()
    }
}

/// Periphery switched off (no DAC/ADC quantisation or saturation, no output noise).
fn ideal_periphery(device: &str) -> CrossbarConfig {
    CrossbarConfig {
        device: device.into(),
        dac_bits: 0,
        adc_bits: 0,
        adc_range: 0.0,
        output_noise: 0.0,
        ..base()
    }
}

fn random_mat(rng: &mut ChaCha8Rng, r: usize, c: usize, scale: f32) -> Mat {
    Mat::from_fn(r, c, |_, _| scale * (rng.gen::<f32>() * 2.0 - 1.0))
}

#[test]
fn ideal_device_with_exact_writes_is_digital_sgd_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n_out, n_in, batch) = (13, 29, 7);
    let w0 = random_mat(&mut rng, n_out, n_in, 0.3);
    let b0 = Vector::from_fn(n_out, |_, _| rng.gen::<f32>() - 0.5);
    let lr = 0.05;
    let sgd = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr,
        ..OptimizerConfig::default()
    };
    let mut digital = DigitalWeights::new(w0.clone(), b0.clone(), &sgd);
    for update in [UpdateGranularity::PerBatch, UpdateGranularity::PerSample] {
        let cfg = CrossbarConfig {
            write: WriteScheme::Exact,
            lr,
            update,
            ..ideal_periphery("ideal")
        };
        let mut xbar = Crossbar::new(&cfg, &toml::Table::new(), n_out, n_in, 3).unwrap();
        xbar.set_parameters(&w0, &b0);
        if update == UpdateGranularity::PerSample {
            // Per-sample writes sum the rank-1 steps: equal to float tolerance only.
            digital = DigitalWeights::new(w0.clone(), b0.clone(), &sgd);
        }
        assert_eq!(xbar.weights(), w0);
        assert_eq!(xbar.bias(), b0);
        let (mut yd, mut yx) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
        for _ in 0..50 {
            let x = random_mat(&mut rng, n_in, batch, 1.0);
            digital.forward(&x, &mut yd);
            xbar.forward(&x, &mut yx);
            let d = random_mat(&mut rng, n_out, batch, 0.5);
            let (mut td, mut tx) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
            digital.transposed(&d, &mut td);
            xbar.transposed(&d, &mut tx);
            let grad = OuterProductGradient {
                left: d,
                right: x,
                scale: -1.0 / batch as f32,
            };
            digital.apply_gradient(&grad);
            xbar.apply_gradient(&grad);
            if update == UpdateGranularity::PerBatch {
                assert_eq!(yd, yx, "forward reads differ");
                assert_eq!(td, tx, "transposed reads differ");
                assert_eq!(digital.weights(), xbar.weights(), "weights differ");
                assert_eq!(digital.bias(), xbar.bias(), "biases differ");
            } else {
                let err = (digital.weights() - xbar.weights()).amax();
                assert!(err < 1e-5, "per-sample exact writes: max |Δw| {err}");
            }
        }
    }
}

#[test]
fn read_noise_variance_matches_the_squared_conductance_sum() {
    check_read_noise(0.0);
}

/// Read noise and additive output noise are independent: the variances add.
#[test]
fn output_noise_adds_its_variance_to_the_read_noise() {
    check_read_noise(0.1);
}

fn check_read_noise(output_noise: f32) {
    // Empirical output variance over many reads vs σ² Σ_j ((G⁺_ij)² + (G⁻_ij)²) x_j²
    // computed here from the device conductances (weight units), plus the
    // output noise (σ_out · w_scale, times the input scale of the read).
    let sigma = 0.05f32;
    let ov = overrides(&[("read_noise", (sigma as f64).into())]);
    let cfg = CrossbarConfig {
        output_noise,
        ..ideal_periphery("reram_es")
    };
    let (n_out, n_in) = (6, 40);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut xbar = Crossbar::new(&cfg, &ov, n_out, n_in, 9).unwrap();
    xbar.set_parameters(
        &random_mat(&mut rng, n_out, n_in, 0.5),
        &Vector::from_element(n_out, 0.1),
    );
    let m = xbar.model().clone();
    let o = m.conductance_offset();
    let ws = cfg.w_scale;
    let devices = xbar.devices().clone();
    let (pi, mi): (Vec<usize>, Vec<usize>) = (0..n_out * (n_in + 1))
        .map(|idx| (xbar.plus_index(idx), xbar.minus_index(idx).unwrap()))
        .unzip();
    let s = |idx: usize| {
        let gp = devices.visible(pi[idx]) + o;
        let gm = devices.visible(mi[idx]) + o;
        (ws * ws * (gp * gp + gm * gm)) as f64
    };
    let reps = 8000;
    let x: Vec<f32> = (0..n_in).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect();
    let xs = Mat::from_fn(n_in, reps, |j, _| x[j]);
    let mut y = Mat::zeros(0, 0);
    xbar.forward(&xs, &mut y);
    let w = xbar.weights();
    let b = xbar.bias();
    for i in 0..n_out {
        let mut expected_var = (0..n_in)
            .map(|j| s(i + j * n_out) * (x[j] as f64).powi(2))
            .sum::<f64>();
        expected_var += s(i + n_in * n_out); // bias column driven at 1
        expected_var *= (sigma as f64).powi(2);
        // Inputs in [−1, 1] and the bias drive 1: the read's input scale is 1.
        expected_var += (output_noise as f64 * ws as f64).powi(2);
        let mean_true = (0..n_in).map(|j| (w[(i, j)] * x[j]) as f64).sum::<f64>() + b[i] as f64;
        let row: Vec<f64> = y.row(i).iter().map(|v| *v as f64).collect();
        let mean = row.iter().sum::<f64>() / reps as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
        assert!(
            (var / expected_var - 1.0).abs() < 0.06,
            "forward out {i}: {var} vs {expected_var}"
        );
        assert!((mean - mean_true).abs() < 4.0 * (expected_var / reps as f64).sqrt());
    }
    // Transposed: variance σ² Σ_i S_ij d_i².
    let d: Vec<f32> = (0..n_out).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect();
    let ds = Mat::from_fn(n_out, reps, |i, _| d[i]);
    let mut z = Mat::zeros(0, 0);
    xbar.transposed(&ds, &mut z);
    for j in 0..n_in {
        let d_max = d.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let expected_var = (sigma as f64).powi(2)
            * (0..n_out)
                .map(|i| s(i + j * n_out) * (d[i] as f64).powi(2))
                .sum::<f64>()
            + (output_noise as f64 * ws as f64 * d_max).powi(2);
        let row: Vec<f64> = z.row(j).iter().map(|v| *v as f64).collect();
        let mean = row.iter().sum::<f64>() / reps as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
        assert!(
            (var / expected_var - 1.0).abs() < 0.06,
            "transposed out {j}: {var} vs {expected_var}"
        );
    }
}

#[test]
fn stochastic_update_is_unbiased_on_a_constant_step_device() {
    // Mean realised ΔW over many stochastic updates ≈ −η c L Rᵀ.
    let ov = overrides(&[
        ("dw_min_std", 0.0.into()),
        ("dw_min_dtod", 0.0.into()),
        ("up_down_dtod", 0.0.into()),
        ("bound_dtod_lo", 0.0.into()),
        ("bound_dtod_hi", 0.0.into()),
    ]);
    let lr = 0.05;
    let cfg = CrossbarConfig {
        write: WriteScheme::Stochastic,
        lr,
        ..ideal_periphery("constant_step")
    };
    let (n_out, n_in) = (5, 8);
    let mut xbar = Crossbar::new(&cfg, &ov, n_out, n_in, 4).unwrap();
    xbar.set_parameters(&Mat::zeros(n_out, n_in), &Vector::zeros(n_out));
    let left = Mat::from_column_slice(n_out, 1, &[0.3, -0.1, 0.05, 0.0, -0.25]);
    let right = Mat::from_column_slice(n_in, 1, &[1.0, 0.5, 0.0, -0.7, 0.2, 0.9, -0.05, 0.3]);
    let grad = OuterProductGradient {
        left: left.clone(),
        right: right.clone(),
        scale: -1.0,
    };
    let neg = OuterProductGradient {
        left: -left.clone(),
        right: right.clone(),
        scale: -1.0,
    };
    let target = &left * right.transpose() * lr; // −η·c·L Rᵀ with c = −1
    let mut sum = Mat::zeros(n_out, n_in);
    let reps = 6000;
    for _ in 0..reps {
        let w0 = xbar.weights();
        xbar.apply_gradient(&grad);
        sum += xbar.weights() - w0;
        // Undo on average so the devices stay far from their bounds.
        xbar.apply_gradient(&neg);
    }
    let mean = sum / reps as f32;
    let dw = xbar.pulse_weight();
    for i in 0..n_out {
        for j in 0..n_in {
            let t = target[(i, j)];
            // Std of the mean of a Binomial-count step: ≤ √(|t|·dw / reps).
            let tol = 4.0 * ((t.abs() * dw) / reps as f32).sqrt() + 1e-6;
            assert!(
                (mean[(i, j)] - t).abs() < tol,
                "({i},{j}) {} vs {t}",
                mean[(i, j)]
            );
        }
    }
    assert!(
        target.amax() > 5.0 * dw,
        "test exercises multi-pulse updates"
    );
}

#[test]
fn mixed_precision_realises_the_accumulated_update_up_to_one_step() {
    let ov = overrides(&[
        ("dw_min_std", 0.0.into()),
        ("dw_min_dtod", 0.0.into()),
        ("up_down_dtod", 0.0.into()),
    ]);
    let cfg = CrossbarConfig {
        write: WriteScheme::MixedPrecision,
        update: UpdateGranularity::PerBatch,
        lr: 0.05,
        ..ideal_periphery("constant_step")
    };
    let (n_out, n_in) = (4, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut xbar = Crossbar::new(&cfg, &ov, n_out, n_in, 6).unwrap();
    xbar.set_parameters(&Mat::zeros(n_out, n_in), &Vector::zeros(n_out));
    let mut target = Mat::zeros(n_out, n_in);
    for _ in 0..300 {
        let left = random_mat(&mut rng, n_out, 3, 0.2);
        let right = random_mat(&mut rng, n_in, 3, 1.0);
        let grad = OuterProductGradient {
            left,
            right,
            scale: -1.0 / 3.0,
        };
        target -= grad.weight_gradient() * cfg.lr;
        xbar.apply_gradient(&grad);
    }
    let dw = xbar.pulse_weight();
    let err = (xbar.weights() - &target).amax();
    assert!(err <= dw * 1.001, "residual {err} exceeds one pulse {dw}");
    assert!(target.amax() > 5.0 * dw, "updates span many pulses");
}

#[test]
fn exact_writes_round_to_whole_pulses() {
    let ov = overrides(&[
        ("dw_min_std", 0.0.into()),
        ("dw_min_dtod", 0.0.into()),
        ("up_down_dtod", 0.0.into()),
    ]);
    let cfg = CrossbarConfig {
        write: WriteScheme::Exact,
        update: UpdateGranularity::PerBatch,
        lr: 1.0,
        ..ideal_periphery("constant_step")
    };
    let mut xbar = Crossbar::new(&cfg, &ov, 2, 2, 1).unwrap();
    xbar.set_parameters(&Mat::zeros(2, 2), &Vector::zeros(2));
    let dw = xbar.pulse_weight();
    let left = Mat::from_column_slice(2, 1, &[3.4 * dw, -1.6 * dw]);
    let right = Mat::from_column_slice(2, 1, &[1.0, 0.1]);
    xbar.apply_gradient(&OuterProductGradient {
        left,
        right,
        scale: -1.0,
    });
    let w = xbar.weights();
    let expect = [[3.0, 0.0], [-2.0, 0.0]];
    for i in 0..2 {
        for j in 0..2 {
            assert!(
                (w[(i, j)] - expect[i][j] * dw).abs() < 1e-6,
                "({i},{j}) {}",
                w[(i, j)] / dw
            );
        }
    }
}

#[test]
fn dac_and_adc_quantise_clip_and_saturate() {
    let cfg = CrossbarConfig {
        dac_bits: 2, // levels {−1, 0, 1} × α
        adc_bits: 0,
        adc_range: 0.0,
        output_noise: 0.0,
        ..base()
    };
    let ov = overrides(&[("bound_dtod_lo", 0.0.into()), ("bound_dtod_hi", 0.0.into())]);
    let mut xbar = Crossbar::new(&cfg, &ov, 1, 3, 1).unwrap();
    xbar.set_parameters(
        &Mat::from_row_slice(1, 3, &[0.5, 0.5, 0.5]),
        &Vector::zeros(1),
    );
    let w = xbar.weights();
    let b = xbar.bias()[0];
    let x = Mat::from_column_slice(3, 1, &[2.0, 0.9, 0.4]);
    let mut y = Mat::zeros(0, 0);
    xbar.forward(&x, &mut y);
    // α = 2: x/α = (1, 0.45, 0.2) → (1, 0, 0); bias drive 1/2 → 1 (round half away).
    let expected = 2.0 * (w[(0, 0)] * 1.0 + b * 1.0);
    assert!(
        (y[(0, 0)] - expected).abs() < 1e-5,
        "{} vs {expected}",
        y[(0, 0)]
    );

    let cfg = CrossbarConfig {
        dac_bits: 0,
        adc_bits: 4,
        adc_range: 0.3,
        output_noise: 0.0,
        ..base()
    };
    let mut xbar = Crossbar::new(&cfg, &ov, 1, 3, 1).unwrap();
    xbar.set_parameters(
        &Mat::from_row_slice(1, 3, &[0.5, 0.5, 0.5]),
        &Vector::zeros(1),
    );
    let x = Mat::from_column_slice(3, 1, &[1.0, 1.0, 1.0]);
    xbar.forward(&x, &mut y);
    // True output ≈ 1.5 saturates at the ADC full scale 0.3 (× w_scale × α = 1).
    assert!((y[(0, 0)] - 0.3).abs() < 1e-6, "{}", y[(0, 0)]);
    assert_eq!(xbar.read_stats().adc_saturated, 1);
    let x = Mat::from_column_slice(3, 1, &[0.1, 0.0, 0.0]);
    xbar.forward(&x, &mut y);
    // Output ≈ 0.05 + 0.1·bias… on a grid of 0.3/7.
    let lsb = 0.3 / 7.0;
    let k = y[(0, 0)] / lsb;
    assert!(
        (k - k.round()).abs() < 1e-4,
        "ADC output {} is not on the grid",
        y[(0, 0)]
    );
}

#[test]
fn one_sided_pcm_pairs_potentiate_only_and_refresh() {
    let cfg = CrossbarConfig {
        write: WriteScheme::Exact,
        update: UpdateGranularity::PerBatch,
        lr: 1.0,
        ..ideal_periphery("pcm")
    };
    let ov = overrides(&[
        ("dw_min_std", 0.0.into()),
        ("drift_nu", 0.0.into()),
        ("drift_nu_dtod", 0.0.into()),
        ("read_noise", 0.0.into()),
    ]);
    let mut xbar = Crossbar::new(&cfg, &ov, 1, 1, 2).unwrap();
    xbar.set_parameters(&Mat::zeros(1, 1), &Vector::zeros(1));
    let dw = xbar.pulse_weight();
    let mut last = xbar.weights()[(0, 0)];
    // Repeated negative updates potentiate G⁻ until it passes the refresh
    // threshold; the weight keeps decreasing (or is restored by the refresh).
    for _ in 0..60 {
        let g = OuterProductGradient {
            left: Mat::from_element(1, 1, 3.0 * dw),
            right: Mat::from_element(1, 1, 1.0),
            scale: 1.0,
        };
        xbar.apply_gradient(&g);
        let w = xbar.weights()[(0, 0)];
        assert!(
            w <= last + 0.05,
            "weight rose from {last} to {w} on a negative update"
        );
        last = w;
    }
    let (_, down) = xbar.devices().pulse_totals();
    assert_eq!(down, 0, "one-sided devices only get SET pulses");
    let devices = xbar.devices();
    let (up_p, up_m) = (
        devices.pulse_count(xbar.plus_index(0)),
        devices.pulse_count(xbar.minus_index(0).unwrap()),
    );
    assert!(
        up_m > 0 && up_m >= up_p,
        "G⁻ takes the negative updates ({up_m} vs {up_p})"
    );
    let summary = xbar.hardware_stats().unwrap();
    assert!(summary.one_sided_refreshes > 0, "{summary:?}");
    assert!(last < -0.3, "weight went negative: {last}");
}

#[test]
fn device_state_round_trips_through_json() {
    let cfg = CrossbarConfig {
        write: WriteScheme::MixedPrecision,
        ..base()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let ov = toml::Table::new();
    let mut a = Crossbar::new(&cfg, &ov, 4, 5, 1).unwrap();
    a.set_parameters(&random_mat(&mut rng, 4, 5, 0.3), &Vector::zeros(4));
    for _ in 0..5 {
        let g = OuterProductGradient {
            left: random_mat(&mut rng, 4, 2, 1.0),
            right: random_mat(&mut rng, 5, 2, 1.0),
            scale: -0.5,
        };
        a.apply_gradient(&g);
    }
    let state = a.device_state().unwrap();
    let text = serde_json::to_string(&state).unwrap();
    let mut b = Crossbar::new(&cfg, &ov, 4, 5, 1).unwrap();
    b.restore_device_state(&serde_json::from_str(&text).unwrap())
        .unwrap();
    assert_eq!(a.weights(), b.weights());
    assert_eq!(a.bias(), b.bias());
    assert_eq!(a.devices().state(), b.devices().state());
    let mut c = Crossbar::new(&cfg, &ov, 5, 4, 1).unwrap();
    assert!(
        c.restore_device_state(&state).is_err(),
        "shape mismatch is an error"
    );
}

#[test]
fn reference_mapping_encodes_weights_against_the_reference_line() {
    let cfg = CrossbarConfig {
        mapping: Mapping::Reference,
        ..ideal_periphery("constant_step")
    };
    let ov = overrides(&[("bound_dtod_lo", 0.0.into()), ("bound_dtod_hi", 0.0.into())]);
    let mut xbar = Crossbar::new(&cfg, &ov, 3, 2, 1).unwrap();
    let w = Mat::from_row_slice(3, 2, &[0.5, -0.25, 0.0, 0.9, -0.9, 0.1]);
    xbar.set_parameters(&w, &Vector::zeros(3));
    assert!((xbar.weights() - &w).amax() < 1e-6);
    assert!(xbar.minus_index(0).is_none());
    assert_eq!(xbar.devices().len(), 3 * 3);
    // Out-of-range weights clip at ±w_scale.
    xbar.set_parameters(&(w * 3.0), &Vector::zeros(3));
    assert!(xbar.weights().amax() <= cfg.w_scale + 1e-6);
}

#[test]
fn hardware_summary_counts_pulses_and_reads() {
    let cfg = base();
    let ov = overrides(&[("stuck_at_max", 0.1.into())]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut xbar = Crossbar::new(&cfg, &ov, 20, 30, 2).unwrap();
    xbar.set_parameters(&random_mat(&mut rng, 20, 30, 0.1), &Vector::zeros(20));
    let x = random_mat(&mut rng, 30, 4, 1.0);
    let mut y = Mat::zeros(0, 0);
    xbar.forward(&x, &mut y);
    xbar.transposed(&random_mat(&mut rng, 20, 4, 1.0), &mut Mat::zeros(0, 0));
    let g = OuterProductGradient {
        left: random_mat(&mut rng, 20, 4, 1.0),
        right: x,
        scale: -0.25,
    };
    xbar.apply_gradient(&g);
    let s = xbar.hardware_stats().unwrap();
    let devices = xbar.devices();
    let pulses: u32 = (0..devices.len()).map(|i| devices.pulse_count(i)).sum();
    assert!(pulses > 0);
    assert_eq!(s.pulses_applied, pulses as u64);
    assert_eq!(s.reads.forward_samples, 4);
    assert_eq!(s.reads.transposed_samples, 4);
    let stuck = s.devices_stuck_at_max as f64;
    assert!((stuck / (2.0 * 20.0 * 31.0) - 0.1).abs() < 0.03);
    let hist: u64 = s.weight_histogram.counts.iter().sum();
    assert_eq!(hist, 20 * 31);
}

#[test]
fn config_errors_name_the_field() {
    let table = toml::Table::new();
    let bad = CrossbarConfig {
        write: WriteScheme::Stochastic,
        ..ideal_periphery("ideal")
    };
    let msg = format!("{:#}", bad.check(&table).unwrap_err());
    assert!(
        msg.contains("crossbar.write") && msg.contains("ideal"),
        "{msg}"
    );
    let bad = CrossbarConfig {
        adc_bits: 1,
        ..base()
    };
    assert!(format!("{:#}", bad.check(&table).unwrap_err()).contains("crossbar.adc_bits"));
    let bad = CrossbarConfig {
        device: "nope".into(),
        ..base()
    };
    let msg = format!("{:#}", bad.check(&table).unwrap_err());
    assert!(
        msg.contains("crossbar.device") && msg.contains("constant_step"),
        "{msg}"
    );
    let ov = overrides(&[("levles", 4.into())]);
    let msg = format!("{:#}", base().check(&ov).unwrap_err());
    assert!(
        msg.contains("device.levles") && msg.contains("constant_step.toml"),
        "{msg}"
    );
}

#[test]
fn drift_scales_one_sided_pcm_weights_by_the_power_law() {
    // A positive weight sits on G⁺ with G⁻ at G_min; both drift by the same
    // factor f = (t/t₀)^−ν, so w(t) = w(0)·f exactly (G_min included).
    let nu = 0.06f64;
    let ov = overrides(&[
        ("drift_nu", nu.into()),
        ("drift_nu_dtod", 0.0.into()),
        ("read_noise", 0.0.into()),
        ("dw_min_std", 0.0.into()),
    ]);
    let cfg = CrossbarConfig {
        time_per_batch: 0.0,
        ..ideal_periphery("pcm")
    };
    let mut xbar = Crossbar::new(&cfg, &ov, 2, 3, 5).unwrap();
    let w0 = Mat::from_row_slice(2, 3, &[0.5, 0.25, 0.1, 0.8, 0.3, 0.05]);
    xbar.set_parameters(&w0, &Vector::zeros(2));
    let t0 = xbar.model().drift.t0;
    for t in [10.0 * t0, 1000.0 * t0] {
        let before = xbar.devices().time();
        xbar.advance_time(t - before);
        let f = (t / t0).powf(-nu) as f32;
        let w = xbar.weights();
        for (a, b) in w.iter().zip(w0.iter()) {
            assert!((a - b * f).abs() < 1e-5, "{a} vs {}", b * f);
        }
        // Forward reads see the drifted weights too.
        let x = Mat::from_column_slice(3, 1, &[1.0, 1.0, 1.0]);
        let mut y = Mat::zeros(0, 0);
        xbar.forward(&x, &mut y);
        assert!((y[(0, 0)] - 0.85 * f).abs() < 1e-4);
    }
}

#[test]
fn single_sample_reads_match_batched_reads() {
    // Batch 1 takes a matrix–vector path, batches take SGEMM; with
    // deterministic periphery (DAC/ADC on, no noise) they must agree.
    let cfg = CrossbarConfig {
        output_noise: 0.0,
        adc_bits: 0, // a coarse ADC grid could hide small differences
        adc_range: 0.0,
        ..base()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut xbar = Crossbar::new(&cfg, &toml::Table::new(), 7, 11, 2).unwrap();
    xbar.set_parameters(
        &random_mat(&mut rng, 7, 11, 0.4),
        &Vector::from_element(7, 0.05),
    );
    let mut x = random_mat(&mut rng, 11, 3, 1.0);
    x[(2, 1)] = 0.0;
    let d = random_mat(&mut rng, 7, 3, 1.0);
    let (mut yb, mut zb) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    xbar.forward(&x, &mut yb);
    xbar.transposed(&d, &mut zb);
    for b in 0..3 {
        let (mut y, mut z) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
        xbar.forward(&x.columns(b, 1).into_owned(), &mut y);
        xbar.transposed(&d.columns(b, 1).into_owned(), &mut z);
        assert!((y - yb.column(b)).amax() < 1e-5);
        assert!((z - zb.column(b)).amax() < 1e-5);
    }
}

/// An `n_out × n_in` `reram_es` crossbar with ideal periphery, the given
/// relative read noise, random weights (±0.5, from `rng`) and no bias;
/// `seed` seeds its devices and noise.
fn reram_read_with_noise(
    read_noise: f64,
    (n_out, n_in): (usize, usize),
    rng: &mut ChaCha8Rng,
    seed: u64,
) -> Crossbar {
    let ov = overrides(&[("read_noise", read_noise.into())]);
    let mut xbar = Crossbar::new(&ideal_periphery("reram_es"), &ov, n_out, n_in, seed).unwrap();
    xbar.set_parameters(&random_mat(rng, n_out, n_in, 0.5), &Vector::zeros(n_out));
    xbar
}

/// Repeated forward reads of the same inputs (DP/DP⊤ re-read the first
/// layer with the same `x` in every sweep) draw fresh read noise with the
/// same law as a first read, and see every write in between.
#[test]
fn repeated_reads_redraw_the_noise_and_see_writes() {
    let sigma = 0.05f32;
    let (n_out, n_in, batch) = (4, 30, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut xbar = reram_read_with_noise(sigma as f64, (n_out, n_in), &mut rng, 3);
    let x = random_mat(&mut rng, n_in, batch, 1.0);
    // Reference: the variance of one batched read of many copies of column 0.
    let reps = 6000;
    let copies = Mat::from_fn(n_in, reps, |j, _| x[(j, 0)]);
    let mut y = Mat::zeros(0, 0);
    xbar.forward(&copies, &mut y);
    let first_read_var = |i: usize| {
        let row: Vec<f64> = y.row(i).iter().map(|v| *v as f64).collect();
        let m = row.iter().sum::<f64>() / reps as f64;
        row.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (reps - 1) as f64
    };
    let reference: Vec<f64> = (0..n_out).map(first_read_var).collect();
    // The same small batch read `reps` times in a row.
    let mut samples = vec![Vec::with_capacity(reps); n_out];
    let mut out = Mat::zeros(0, 0);
    let mut previous = Mat::zeros(0, 0);
    for r in 0..reps {
        xbar.forward(&x, &mut out);
        if r > 0 {
            assert_ne!(out, previous, "read noise must be redrawn on a repeat");
        }
        previous.clone_from(&out);
        for (i, s) in samples.iter_mut().enumerate() {
            s.push(out[(i, 0)] as f64);
        }
    }
    for (i, s) in samples.iter().enumerate() {
        let m = s.iter().sum::<f64>() / reps as f64;
        let var = s.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (reps - 1) as f64;
        assert!(
            (var / reference[i] - 1.0).abs() < 0.1,
            "out {i}: repeated-read variance {var} vs first-read {}",
            reference[i]
        );
    }
    // A write between two reads of the same inputs shows in the second.
    let before = {
        let mut acc = Mat::zeros(n_out, batch);
        for _ in 0..400 {
            xbar.forward(&x, &mut out);
            acc += &out;
        }
        acc / 400.0
    };
    let grad = OuterProductGradient {
        left: Mat::from_element(n_out, 1, 1.0),
        right: Mat::from_element(n_in, 1, 1.0),
        scale: 1.0,
    };
    xbar.apply_gradient(&grad);
    let w = xbar.weights();
    let b = xbar.bias();
    let expected = &w * &x + Mat::from_fn(n_out, batch, |i, _| b[i]);
    let mut after = Mat::zeros(n_out, batch);
    for _ in 0..400 {
        xbar.forward(&x, &mut out);
        after += &out;
    }
    after /= 400.0;
    let noise_se = (reference.iter().cloned().fold(0.0f64, f64::max) / 400.0).sqrt() as f32;
    assert!(
        (&after - &before).abs().max() > 10.0 * noise_se,
        "the write must change the read"
    );
    assert!(
        (&after - &expected).abs().max() < 5.0 * noise_se,
        "repeated reads after a write must use the written weights"
    );
}

/// A repeated read is only a cache: the k-th read of the same inputs gives
/// the bits a fresh read of them gives at that point of the noise stream
/// (a twin crossbar reads other inputs before, so none of its reads
/// repeats), with read noise and without.
#[test]
fn repeated_reads_have_the_bits_of_fresh_reads() {
    for sigma in [0.0f64, 0.05] {
        let (n_out, n_in, batch) = (70, 30, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut xbar = reram_read_with_noise(sigma, (n_out, n_in), &mut rng, 4);
        let twin = xbar.clone();
        // Sparse inputs too, which take the direct product.
        let mut x = random_mat(&mut rng, n_in, batch, 1.0);
        x.as_mut_slice()
            .iter_mut()
            .step_by(4)
            .for_each(|v| *v = 0.0);
        let (mut out, mut fresh) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
        for k in 0..5 {
            xbar.forward(&x, &mut out);
            // The twin reads other inputs k times, then x once.
            let mut twin_twin = twin.clone();
            for j in 0..k {
                let other = Mat::from_fn(n_in, batch, |r, c| x[(r, c)] + 1.0 + j as f32);
                twin_twin.forward(&other, &mut fresh);
            }
            twin_twin.forward(&x, &mut fresh);
            assert_eq!(out, fresh, "read {k}, read noise {sigma}");
        }
    }
}

/// Per-sample stochastic writes plan the next samples' pulses while the
/// devices take the current ones (on a second core when there is one): the
/// result must not depend on the number of threads, bit for bit.
#[test]
fn pipelined_stochastic_writes_do_not_depend_on_threads() {
    let cfg = CrossbarConfig { lr: 0.5, ..base() };
    let (n_out, n_in, batch) = (24, 60, 13);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let w0 = random_mat(&mut rng, n_out, n_in, 0.3);
    let grad = OuterProductGradient {
        left: random_mat(&mut rng, n_out, batch, 0.2),
        right: random_mat(&mut rng, n_in, batch, 1.0),
        scale: -1.0 / batch as f32,
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut xbar = Crossbar::new(&cfg, &overrides(&[]), n_out, n_in, 21).unwrap();
            xbar.set_parameters(&w0, &Vector::zeros(n_out));
            for _ in 0..5 {
                xbar.apply_gradient(&grad);
            }
            let pulses = xbar.hardware_stats().unwrap().pulses_applied;
            (xbar.weights(), xbar.bias(), pulses)
        })
    };
    let (w1, b1, p1) = run(1);
    let (w2, b2, p2) = run(2);
    assert!(p1 > 0, "the update must pulse");
    assert_eq!(p1, p2);
    assert_eq!(w1, w2);
    assert_eq!(b1, b2);
    assert_ne!(w1, w0, "the update must change the weights");
}
