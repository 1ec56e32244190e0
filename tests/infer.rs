//! Inference after training (`dyadsim infer`, issue 19 item 3, "What must
//! hold"): drift compensation against the drift law, programming error
//! against its σ, write and verify against its tolerance and the devices'
//! own pulse counters, `keep` against the run's saved accuracy, seeds, and
//! bad input.

mod common;

use common::dyadsim;
use dyadsim::crossbar::{Crossbar, CrossbarConfig, WriteVerify};
use dyadsim::devices::array::NoiseRng;
use dyadsim::experiment::infer::{
    infer, predict_compensated, Compensation, InferResult, InferSettings, Programming,
};
use dyadsim::linalg::{Mat, Vector};
use dyadsim::network::Activation;
use dyadsim::substrate::WeightArray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use toml::Value::{Array, Float};

fn overrides(pairs: &[(&str, toml::Value)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `constant_step` with every noise and spread off and drift `ν ± spread`.
fn drift_only(nu: f64, spread: f64) -> toml::Table {
    overrides(&[
        ("dw_min_dtod", Float(0.0)),
        ("up_down_dtod", Float(0.0)),
        ("bound_dtod_lo", Float(0.0)),
        ("bound_dtod_hi", Float(0.0)),
        ("dw_min_std", Float(0.0)),
        ("write_noise", Float(0.0)),
        ("read_noise", Float(0.0)),
        ("drift_nu", Float(nu)),
        ("drift_nu_dtod", Float(spread)),
        ("drift_t0", Float(20.0)),
    ])
}

/// Periphery switched off, fixed `w_scale = 1`.
fn ideal_periphery() -> CrossbarConfig {
    CrossbarConfig {
        device: "constant_step".into(),
        w_scale: 1.0,
        dac_bits: 0,
        adc_bits: 0,
        adc_range: 0.0,
        output_noise: 0.0,
        ..CrossbarConfig::default()
    }
}

fn random_mat(rng: &mut ChaCha8Rng, r: usize, c: usize, scale: f32) -> Mat {
    Mat::from_fn(r, c, |_, _| scale * (rng.gen::<f32>() * 2.0 - 1.0))
}

fn mean_abs(m: &Mat) -> f64 {
    m.iter().map(|v| v.abs() as f64).sum::<f64>() / m.len() as f64
}

/// A 128 × 256 layer programmed to uniform weights in ±0.4 w_scale, and a
/// batch of 200 inputs uniform in ±1 (zero-mean, so that the least-squares
/// output scale weighs every device by its own w²x², not by signed cross terms).
fn programmed_layer(cfg: &CrossbarConfig, device: &toml::Table) -> (Crossbar, Mat) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let w = random_mat(&mut rng, 128, 256, 0.4);
    let b = Vector::from_fn(128, |_, _| 0.2 * (rng.gen::<f32>() * 2.0 - 1.0));
    let x = Mat::from_fn(256, 200, |_, _| rng.gen::<f32>() * 2.0 - 1.0);
    (
        Crossbar::with_parameters(cfg, device, &w, &b, 3).unwrap(),
        x,
    )
}

/// `pcm` with drift `ν ± spread` and nothing else: no programming, read,
/// 1/f or cycle-to-cycle noise, no spreads, `G_min = 0` (so a pair encodes
/// `w = w_scale·G⁺/G_max` with `G⁻ = 0` for `w > 0`: drift scales the weight).
fn pcm_drift_only(nu: f64, spread: f64) -> toml::Table {
    overrides(&[
        ("g_min_us", Float(0.0)),
        ("dw_min_dtod", Float(0.0)),
        ("up_down_dtod", Float(0.0)),
        ("bound_dtod_hi", Float(0.0)),
        ("dw_min_std", Float(0.0)),
        ("c2c_add", Float(0.0)),
        ("c2c_slope", Float(0.0)),
        ("read_noise", Float(0.0)),
        ("program_noise_us", Array(vec![Float(0.0)])),
        ("read_noise_1f_q", Float(0.0)),
        ("drift_nu", Float(nu)),
        ("drift_nu_dtod", Float(spread)),
    ])
}

/// The scale of `y` against `y0`: the least-squares slope `⟨y, y0⟩/⟨y0, y0⟩`
/// (a device's own drift factor scatters the outputs around it, but does
/// not change it).
fn output_scale(y: &Mat, y0: &Mat) -> f64 {
    let dot = |a: &Mat, b: &Mat| {
        a.iter()
            .zip(b.iter())
            .map(|(p, q)| *p as f64 * *q as f64)
            .sum::<f64>()
    };
    dot(y, y0) / dot(y0, y0)
}

#[test]
fn global_compensation_restores_the_mean_output_scale_on_a_drift_only_device() {
    let t = 1.0e6;
    let nu = 0.05;
    let cases = [
        ("constant_step", drift_only(nu, 0.0), 0.0),
        ("pcm", pcm_drift_only(nu, 0.0), 0.0),
        ("pcm", pcm_drift_only(nu, 0.02), 0.02),
    ];
    for (device, overrides, spread) in cases {
        let cfg = CrossbarConfig {
            device: device.into(),
            ..ideal_periphery()
        };
        let (mut xb, x) = programmed_layer(&cfg, &overrides);
        let mut noise = NoiseRng::seed_from_u64(1);
        xb.freeze_accumulated_read_noise(&mut noise);
        let reference = xb.drift_reference();
        let mut y0 = Mat::zeros(0, 0);
        xb.forward(&x, &mut y0);
        xb.advance_clock(t);
        xb.freeze_accumulated_read_noise(&mut noise);
        let mut y_drifted = Mat::zeros(0, 0);
        xb.forward(&x, &mut y_drifted);
        // The drift law: each conductance scales by (t/t₀)^−ν, ν ~ N(ν̄, s²),
        // whose mean is exp(−ν̄ L + s² L²/2), L = ln(t/t₀).
        let l = (t / 20.0f64).ln();
        let law = (-nu * l + 0.5 * spread * spread * l * l).exp();
        let drifted = output_scale(&y_drifted, &y0);
        assert!(
            (drifted / law - 1.0).abs() < 0.01,
            "{device}, spread {spread}: drifted scale {drifted}, law {law}"
        );
        let gain = reference.gains(&xb.reference_read(), false);
        assert_eq!(gain.len(), 1);
        let y = predict_compensated(
            std::slice::from_mut(&mut xb),
            &[Some(gain)],
            Activation::Relu,
            &x,
        );
        let restored = output_scale(&y, &y0);
        assert!(
            (restored - 1.0).abs() < 0.01,
            "{device}, spread {spread}: compensated scale {restored} (uncompensated {drifted})"
        );
        let restored_abs = mean_abs(&y) / mean_abs(&y0);
        if spread == 0.0 {
            assert!(
                (restored_abs - 1.0).abs() < 1e-4,
                "{device}: mean |y| {restored_abs}"
            );
        }
    }
}

#[test]
fn column_compensation_restores_every_output_line_on_a_drift_only_device() {
    let (mut xb, x) = programmed_layer(&ideal_periphery(), &drift_only(0.06, 0.0));
    let mut noise = NoiseRng::seed_from_u64(1);
    let reference = xb.drift_reference();
    let mut y0 = Mat::zeros(0, 0);
    xb.forward(&x, &mut y0);
    xb.advance_clock(3.0e7);
    xb.freeze_accumulated_read_noise(&mut noise);
    let gains = reference.gains(&xb.reference_read(), true);
    assert_eq!(gains.len(), 128);
    let y = predict_compensated(
        std::slice::from_mut(&mut xb),
        &[Some(gains)],
        Activation::Relu,
        &x,
    );
    // One ν: each line's outputs come back to their programmed values.
    let worst = y
        .iter()
        .zip(y0.iter())
        .map(|(a, b)| ((a - b) / y0.amax()).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest error {worst} of the output range");
}

/// Programs `w, b` into two copies of the same devices (same seed), one
/// ideally and one with the model's programming error; returns each
/// device's (target, programmed) normalised conductance.
fn programming_pairs(cfg: &CrossbarConfig, device: &toml::Table) -> Vec<(f32, f32, f32, f32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let w = random_mat(&mut rng, 200, 200, 0.5);
    let b = Vector::zeros(200);
    let ideal = Crossbar::with_parameters(cfg, device, &w, &b, 9).unwrap();
    let mut noisy = Crossbar::with_parameters(cfg, device, &w, &b, 9).unwrap();
    noisy.program_with_error(&w, &b, &mut NoiseRng::seed_from_u64(2));
    (0..ideal.devices().len())
        .map(|i| {
            let (lo, hi) = ideal.devices().bounds(i);
            (
                ideal.devices().conductance(i),
                noisy.devices().conductance(i),
                lo,
                hi,
            )
        })
        .collect()
}

#[test]
fn programming_error_has_the_model_sigma() {
    // A constant σ_prog of 0.5 µS on constant_step (window 0.0–…): the
    // error of every device is N(0, (0.5 µS / (G_max − G_min))²).
    let mut device = drift_only(0.0, 0.0);
    device.insert("program_noise_us".into(), Array(vec![Float(0.5)]));
    let model = dyadsim::devices::DeviceModel::load("constant_step", &device).unwrap();
    let span = model.conductance.g_max_us - model.conductance.g_min_us;
    let sigma = 0.5 / span;
    let pairs = programming_pairs(&ideal_periphery(), &device);
    let errors: Vec<f64> = pairs
        .iter()
        .filter(|(t, _, lo, hi)| t - lo > 5.0 * sigma as f32 && hi - t > 5.0 * sigma as f32)
        .map(|(t, g, _, _)| (g - t) as f64)
        .collect();
    assert!(errors.len() > 70_000, "{} devices", errors.len());
    let n = errors.len() as f64;
    let mean = errors.iter().sum::<f64>() / n;
    let std = (errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(
        mean.abs() < 4.0 * sigma / n.sqrt(),
        "mean {mean}, σ {sigma}"
    );
    // The sample std of n normals is within 3 % of σ far beyond 5 SE
    // (SE ≈ σ/√(2n) ≈ 0.25 %).
    assert!((std / sigma - 1.0).abs() < 0.03, "std {std}, σ {sigma}");
}

#[test]
fn pcm_programming_error_follows_the_aihwkit_polynomial() {
    // σ_prog(G_T) = 0.26348 + 1.9650 ĝ − 1.1731 ĝ² µS, ĝ = G_T/25 µS
    // (aihwkit PCMLikeNoiseModel), here on devices away from their bounds.
    let mut device = toml::Table::new();
    device.insert("read_noise".into(), Float(0.0));
    let cfg = CrossbarConfig {
        device: "pcm".into(),
        ..ideal_periphery()
    };
    let model = dyadsim::devices::DeviceModel::load("pcm", &device).unwrap();
    let (g_min, g_max) = (model.conductance.g_min_us, model.conductance.g_max_us);
    let aihwkit = |g: f32| {
        let g_us = g_min + g as f64 * (g_max - g_min);
        let x = g_us / 25.0;
        (0.26348 + 1.9650 * x - 1.1731 * x * x) / (g_max - g_min)
    };
    let z: Vec<f64> = programming_pairs(&cfg, &device)
        .iter()
        .filter(|(t, _, lo, hi)| {
            let s = aihwkit(*t) as f32;
            t - lo > 5.0 * s && hi - t > 5.0 * s
        })
        .map(|(t, g, _, _)| (g - t) as f64 / aihwkit(*t))
        .collect();
    assert!(z.len() > 20_000, "{} devices", z.len());
    let n = z.len() as f64;
    let mean = z.iter().sum::<f64>() / n;
    let var = z.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean of z {mean}");
    assert!((var.sqrt() - 1.0).abs() < 0.03, "std of z {}", var.sqrt());
}

#[test]
fn write_verify_reaches_the_tolerance_and_counts_every_pulse() {
    // constant_step with a large programming error (1 µS) and its own
    // cycle-to-cycle noise; verify reads without read noise, so every
    // converged weight is within tolerance of its target as read back.
    let mut device = overrides(&[("read_noise", Float(0.0))]);
    device.insert("program_noise_us".into(), Array(vec![Float(1.0)]));
    let cfg = ideal_periphery();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let w = random_mat(&mut rng, 64, 100, 0.5);
    let b = Vector::from_fn(64, |_, _| 0.1 * (rng.gen::<f32>() * 2.0 - 1.0));
    let settings = WriteVerify {
        tolerance: 0.01,
        max_iterations: 30,
    };
    let mut xb = Crossbar::with_parameters(&cfg, &device, &Mat::zeros(64, 100), &b, 4).unwrap();
    let before = xb.devices().total_pulse_count();
    let stats = xb
        .write_verify(&w, &b, &settings, &mut NoiseRng::seed_from_u64(3))
        .unwrap();
    assert_eq!(stats.cross_points, 64 * 101);
    // The count is the devices' own counters' difference.
    assert_eq!(
        stats.pulses,
        xb.devices().total_pulse_count() - before,
        "pulses counted"
    );
    assert!(stats.pulses > 0);
    assert!(
        stats.converged as f64 > 0.99 * stats.cross_points as f64,
        "{stats:?}"
    );
    let (wr, br) = (xb.weights(), xb.bias());
    let within = wr
        .iter()
        .zip(w.iter())
        .chain(br.iter().zip(b.iter()))
        .filter(|(a, b)| (*a - *b).abs() <= settings.tolerance * 1.0001)
        .count() as u64;
    assert!(within >= stats.converged, "{within} within, {stats:?}");
    // Without verification the same programming error leaves most weights
    // outside the tolerance.
    let mut fresh = Crossbar::with_parameters(&cfg, &device, &w, &b, 4).unwrap();
    fresh.program_with_error(&w, &b, &mut NoiseRng::seed_from_u64(3));
    let fresh_within = fresh
        .weights()
        .iter()
        .zip(w.iter())
        .filter(|(a, b)| (*a - *b).abs() <= settings.tolerance)
        .count();
    assert!(
        (fresh_within as f64) < 0.8 * (64.0 * 100.0),
        "{fresh_within} within without verify"
    );
}

#[test]
fn write_verify_refuses_a_device_without_a_pulse() {
    let cfg = CrossbarConfig {
        device: "ideal".into(),
        write: dyadsim::controller::WriteScheme::Exact,
        ..ideal_periphery()
    };
    let w = Mat::zeros(3, 4);
    let b = Vector::zeros(3);
    let mut xb = Crossbar::with_parameters(&cfg, &toml::Table::new(), &w, &b, 1).unwrap();
    let settings = WriteVerify {
        tolerance: 0.01,
        max_iterations: 5,
    };
    let e = xb
        .write_verify(&w, &b, &settings, &mut NoiseRng::seed_from_u64(1))
        .unwrap_err();
    assert!(format!("{e:#}").contains("fresh"), "{e:#}");
}

/// A small trained run directory (trained once per test binary and key;
/// tests running in parallel wait for the one that trains it).
fn run_dir(key: &str, args: &[&str]) -> PathBuf {
    static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("infer-{}-{key}", std::process::id()));
    if !dir.join("manifest.json").exists() {
        let mut all = vec![
            "train",
            "--arch",
            "784-32-10",
            "--train-size",
            "1000",
            "--test-size",
            "300",
            "--epochs",
            "1",
            "--quiet",
            "--force",
            "--out",
        ];
        let d = dir.to_string_lossy().into_owned();
        all.push(&d);
        all.extend_from_slice(args);
        let (code, out, err) = dyadsim(&all);
        assert_eq!(code, 0, "{out}{err}");
    }
    dir
}

fn settings(times: &[f64], program: &[Programming], seeds: usize) -> InferSettings {
    InferSettings {
        times_s: times.to_vec(),
        programming: program.to_vec(),
        compensation: vec![Compensation::None, Compensation::Global],
        seeds,
        seed: 1,
        write_verify: WriteVerify {
            tolerance: 0.02,
            max_iterations: 20,
        },
        test_size: None,
    }
}

fn saved_accuracy(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("result.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["test_accuracy"].as_f64().unwrap()
}

#[test]
fn keep_at_time_zero_reproduces_the_saved_test_accuracy() {
    // Deterministic reads (no read or output noise): the devices as saved
    // give the accuracy the run recorded, to the image.
    let dir = run_dir(
        "deterministic",
        &[
            "--device",
            "constant_step",
            "--set",
            "crossbar.output_noise=0",
        ],
    );
    let r = infer(&dir, &settings(&[0.0, 10.0], &[Programming::Keep], 2)).unwrap();
    let saved = saved_accuracy(&dir);
    assert_eq!(r.trained_test_accuracy, Some(saved));
    for p in &r.points {
        assert_eq!(p.test_accuracy, Some(saved), "{p:?}");
        assert_eq!(p.test_accuracy_std, Some(0.0));
    }
    assert_eq!(r.test_images, 300);
}

fn points_without_timing(mut r: InferResult) -> String {
    r.wall_seconds = 0.0;
    r.provenance = Default::default();
    serde_json::to_string(&r.points).unwrap()
}

#[test]
fn seeded_evaluations_are_reproducible_and_seeds_differ() {
    let dir = run_dir("pcm", &["--device", "pcm"]);
    let s = settings(
        &[1.0, 86400.0],
        &[
            Programming::Keep,
            Programming::Fresh,
            Programming::WriteVerify,
        ],
        2,
    );
    let a = infer(&dir, &s).unwrap();
    let b = infer(&dir, &s).unwrap();
    assert_eq!(points_without_timing(a.clone()), points_without_timing(b));
    // 3 modes × 2 compensations × 2 times.
    assert_eq!(a.points.len(), 12);
    let fresh = a
        .points
        .iter()
        .find(|p| p.program == Programming::Fresh && p.time_s == 1.0)
        .unwrap();
    assert_ne!(fresh.seed_accuracies[0], fresh.seed_accuracies[1]);
    let wv = a
        .points
        .iter()
        .find(|p| p.program == Programming::WriteVerify)
        .unwrap();
    let pulses = wv.program_pulses.as_ref().unwrap();
    assert_eq!(pulses.per_seed.len(), 2);
    assert!(pulses.per_seed.iter().all(|&n| n > 0), "{pulses:?}");
    assert!(a
        .points
        .iter()
        .filter(|p| p.program != Programming::WriteVerify)
        .all(|p| p.program_pulses.is_none()));
    // A point depends on its own seed, time and modes only, not on what
    // else is evaluated with it.
    let mut alone = s.clone();
    alone.times_s = vec![86400.0];
    alone.programming = vec![Programming::Fresh];
    alone.compensation = vec![Compensation::Global];
    let single = infer(&dir, &alone).unwrap();
    let same = a
        .points
        .iter()
        .find(|p| {
            p.program == Programming::Fresh
                && p.compensation == Compensation::Global
                && p.time_s == 86400.0
        })
        .unwrap();
    assert_eq!(single.points.len(), 1);
    assert_eq!(&single.points[0], same);
    let mut other = s.clone();
    other.seed = 5;
    let c = infer(&dir, &other).unwrap();
    assert_ne!(points_without_timing(a), points_without_timing(c));
}

/// `dyadsim infer ARGS` fails with exit code 2 and a message that
/// contains every one of `needles`, without a panic.
fn refused(args: &[&str], needles: &[&str]) {
    let mut all = vec!["infer"];
    all.extend_from_slice(args);
    let (code, out, err) = dyadsim(&all);
    assert_eq!(code, 2, "{args:?}: {out}{err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: '{n}' not in {err}");
    }
}

#[test]
fn bad_input_is_refused_with_the_flag_and_its_range() {
    let dir = run_dir(
        "deterministic",
        &[
            "--device",
            "constant_step",
            "--set",
            "crossbar.output_noise=0",
        ],
    );
    let d = dir.to_string_lossy().into_owned();
    let d = d.as_str();
    refused(&[d, "--times", ""], &["--times", "not a number"]);
    refused(&[d, "--times", "1,x"], &["--times", "'x'"]);
    refused(&[d, "--times=-1"], &["--times", "≥ 0"]);
    refused(&[d, "--times", "1,inf"], &["--times", "finite"]);
    refused(&[d, "--times", "NaN"], &["--times", "finite"]);
    refused(&[d, "--times", "5,1,5"], &["--times", "twice"]);
    refused(&[d, "--seeds", "0"], &["--seeds 0", "1 to 10000"]);
    refused(&[d, "--tolerance", "0"], &["--tolerance", "(0, 1]"]);
    refused(
        &[d, "--max-iterations", "0"],
        &["--max-iterations", "1 to 10000"],
    );
    refused(
        &[d, "--program", "fresh,bogus"],
        &["--program", "bogus", "write_verify"],
    );
    refused(
        &[d, "--compensation", "global,global"],
        &["--compensation", "twice"],
    );
    refused(
        &[d, "--compensation", "row"],
        &["--compensation", "none, global, column"],
    );
    refused(&[d, "--test-size", "0"], &["--test-size"]);
    refused(&[d, "--test-size", "301"], &["--test-size 301", "300"]);
    refused(&[d, "--out", d], &["--out", "directory"]);
    let empty =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("infer-{}-empty", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        &[&empty.to_string_lossy()],
        &["RUN_DIR", "not a run directory"],
    );
    refused(
        &["/nonexistent/dyadsim-run"],
        &["RUN_DIR", "not a directory"],
    );
    let digital = run_dir("digital", &["--substrate", "digital"]);
    for program in ["keep", "fresh", "write_verify"] {
        refused(
            &[&digital.to_string_lossy(), "--program", program],
            &["digital substrate", "--substrate crossbar"],
        );
    }
}

#[test]
fn the_cli_prints_a_table_or_json_and_writes_the_result() {
    let dir = run_dir(
        "deterministic",
        &[
            "--device",
            "constant_step",
            "--set",
            "crossbar.output_noise=0",
        ],
    );
    let d = dir.to_string_lossy().into_owned();
    let out_file = dir.join("elsewhere.json");
    let (code, out, err) = dyadsim(&[
        "infer",
        &d,
        "--times",
        "3600,1",
        "--compensation",
        "none,column",
        "--out",
        &out_file.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("program") && out.contains("1 h") && out.contains("column"),
        "{out}"
    );
    let written: InferResult =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(written.points.len(), 4);
    // Times come out in increasing order.
    assert_eq!(written.points[0].time_s, 1.0);
    let (code, out, err) = dyadsim(&["infer", &d, "--times", "1", "--json", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let line: InferResult = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line.points.len(), 1);
    assert!(dir.join("infer.json").exists());
}

#[test]
fn accumulated_read_noise_grows_as_the_aihwkit_1_over_f_law() {
    // pcm without drift or other noise, G_min = 0, with its 1/f constants:
    // a weight w > 0 is G⁺ alone, so after t seconds it reads
    // w (1 + σ(t) ξ) with σ(t) = min(0.2, 0.0088/ĝ^0.65)·√ln((t + t_r)/(2 t_r)),
    // ĝ = w/w_scale, t_r = 250 ns (aihwkit PCMLikeNoiseModel).
    let mut device = pcm_drift_only(0.0, 0.0);
    device.insert("read_noise_1f_q".into(), Float(0.0088));
    let cfg = CrossbarConfig {
        device: "pcm".into(),
        ..ideal_periphery()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let w = Mat::from_fn(100, 300, |_, _| 0.05 + 0.9 * rng.gen::<f32>());
    let b = Vector::zeros(100);
    let mut xb = Crossbar::with_parameters(&cfg, &device, &w, &b, 1).unwrap();
    let read_weights = |xb: &mut Crossbar| {
        let x = Mat::identity(300, 300);
        let mut y = Mat::zeros(0, 0);
        xb.forward(&x, &mut y);
        y
    };
    let mut noise = NoiseRng::seed_from_u64(8);
    xb.freeze_accumulated_read_noise(&mut noise);
    let fresh = read_weights(&mut xb);
    let programmed_error = fresh
        .iter()
        .zip(w.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        programmed_error < 1e-6,
        "no noise right after programming: {programmed_error}"
    );
    for t in [1.0, 86_400.0] {
        xb.advance_clock(t - xb.devices().time());
        xb.freeze_accumulated_read_noise(&mut noise);
        let read = read_weights(&mut xb);
        let growth = ((t + 2.5e-7) / 5e-7f64).ln().sqrt();
        let z: Vec<f64> = read
            .iter()
            .zip(w.iter())
            .map(|(r, w)| {
                let q = (0.0088 / (*w as f64).powf(0.65)).min(0.2);
                (*r as f64 - *w as f64) / (*w as f64 * q * growth)
            })
            .collect();
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let std = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!(mean.abs() < 4.0 / n.sqrt(), "t = {t}: mean of z {mean}");
        assert!((std - 1.0).abs() < 0.03, "t = {t}: std of z {std}");
    }
}

#[test]
fn the_report_draws_accuracy_against_time_from_infer_json() {
    let dir = run_dir(
        "report",
        &[
            "--device",
            "constant_step",
            "--set",
            "crossbar.output_noise=0",
        ],
    );
    let d = dir.to_string_lossy().into_owned();
    let (code, _, err) = dyadsim(&[
        "infer",
        &d,
        "--times",
        "1,3600",
        "--program",
        "keep,fresh",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let out = dir.join("report");
    let (code, _, err) = dyadsim(&["report", &d, "--out", &out.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    for mode in ["keep", "fresh"] {
        for ext in ["png", "svg"] {
            let f = out.join(format!("figures/inference_accuracy_{mode}.{ext}"));
            assert!(f.is_file(), "{}", f.display());
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Inference after programming"), "{md}");
    assert!(md.contains("| fresh | none | 1 h |"), "{md}");
}
