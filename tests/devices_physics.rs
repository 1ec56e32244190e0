//! Device statistics match their parameters (issue 3, "What must hold").

use dyadsim::devices::{builtin_names, DeviceArray, DeviceModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn overrides(pairs: &[(&str, toml::Value)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn model(name: &str, pairs: &[(&str, toml::Value)]) -> DeviceModel {
    DeviceModel::load(name, &overrides(pairs)).expect("model loads")
}

#[test]
fn mean_step_matches_dw_min() {
    // Constant step with its published 30 % d2d and c2c spreads: the
    // population mean of single up and down steps is dw_min.
    let m = model("constant_step", &[]);
    let n = 4000;
    let mut a = DeviceArray::new(&m, n, 7);
    let before: Vec<f32> = (0..a.len()).map(|i| a.conductance(i)).collect();
    for i in 0..n {
        a.pulse(i, 1);
    }
    let up: f64 = (0..n)
        .map(|i| (a.conductance(i) - before[i]) as f64)
        .sum::<f64>()
        / n as f64;
    let mid: Vec<f32> = (0..a.len()).map(|i| a.conductance(i)).collect();
    for i in 0..n {
        a.pulse(i, -1);
    }
    let down: f64 = (0..n)
        .map(|i| (mid[i] - a.conductance(i)) as f64)
        .sum::<f64>()
        / n as f64;
    let dw = m.step.dw_min as f64;
    assert!(
        (up / dw - 1.0).abs() < 0.03,
        "mean up step {up} vs dw_min {dw}"
    );
    assert!(
        (down / dw - 1.0).abs() < 0.03,
        "mean down step {down} vs dw_min {dw}"
    );
}

#[test]
fn up_down_bias_sets_the_step_ratio() {
    let m = model(
        "reram_es",
        &[
            ("dw_min_std", 0.0.into()),
            ("write_noise", 0.0.into()),
            ("up_down_dtod", 0.0.into()),
        ],
    );
    // At x where the exponential factors are equal the ratio is (1+u)/(1−u).
    let mut a = DeviceArray::new(&m, 1, 3);
    let g0 = a.conductance(0);
    a.pulse(0, 1);
    let g1 = a.conductance(0);
    a.pulse(0, -1);
    let g2 = a.conductance(0);
    let (lo, hi) = a.bounds(0);
    let (fu, _) = m.response_factors((g0 - lo) / (hi - lo));
    let (_, fd) = m.response_factors((g1 - lo) / (hi - lo));
    let ratio = ((g1 - g0) / fu) / ((g1 - g2) / fd);
    let expected = (1.0 + m.step.up_down) / (1.0 - m.step.up_down);
    assert!(
        (ratio / expected - 1.0).abs() < 1e-3,
        "{ratio} vs {expected}"
    );
}

#[test]
fn cycle_to_cycle_spread_matches_dw_min_std() {
    // Per device: relative std of its up steps over many cycles ≈ dw_min_std
    // (steps taken mid-range, alternating up/down so the bounds never act).
    let m = model("constant_step", &[("dw_min_std", 0.2.into())]);
    let devices = 40;
    let cycles = 1500;
    let mut a = DeviceArray::new(&m, devices, 11);
    let mut ratios = Vec::new();
    for i in 0..devices {
        let mut steps = Vec::with_capacity(cycles);
        for _ in 0..cycles {
            let g0 = a.conductance(i);
            a.pulse(i, 1);
            steps.push((a.conductance(i) - g0) as f64);
            a.pulse(i, -1);
        }
        let mean = steps.iter().sum::<f64>() / cycles as f64;
        let var = steps.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (cycles - 1) as f64;
        ratios.push(var.sqrt() / mean);
    }
    let avg = ratios.iter().sum::<f64>() / ratios.len() as f64;
    assert!((avg - 0.2).abs() < 0.01, "relative c2c spread {avg} vs 0.2");
}

#[test]
fn conductance_stays_within_bounds_for_every_model() {
    for name in builtin_names() {
        let m = model(name, &[]);
        if !m.bounds.bounded {
            continue;
        }
        let n = 64;
        let mut a = DeviceArray::new(&m, n, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..100_000 {
            let i = rng.gen_range(0..n);
            let k: i32 = rng.gen_range(1..4);
            let dir = if m.pairing.one_sided || rng.gen_bool(0.5) {
                1
            } else {
                -1
            };
            a.pulse(i, dir * k);
            let (lo, hi) = a.bounds(i);
            let g = a.conductance(i);
            assert!(
                g >= lo && g <= hi,
                "{name}: device {i} at {g} outside [{lo}, {hi}]"
            );
        }
        // Sanity: the random pulses did move devices.
        assert!(a.pulse_totals().0 > 0);
    }
}

#[test]
fn quantised_device_has_exactly_n_levels() {
    for levels in [2u32, 5, 16] {
        let m = model(
            "constant_step",
            &[
                ("levels", (levels as i64).into()),
                ("dw_min_std", 0.0.into()),
                ("up_down_dtod", 0.0.into()),
            ],
        );
        let mut a = DeviceArray::new(&m, 3, 1);
        for i in 0..3 {
            let (lo, _) = a.bounds(i);
            a.program(i, lo);
            let mut seen = vec![a.conductance(i)];
            for _ in 0..3 * levels {
                a.pulse(i, 1);
                seen.push(a.conductance(i));
            }
            for _ in 0..3 * levels {
                a.pulse(i, -1);
                seen.push(a.conductance(i));
            }
            seen.sort_by(|x, y| x.partial_cmp(y).unwrap());
            seen.dedup();
            assert_eq!(seen.len(), levels as usize, "device {i}: levels {seen:?}");
        }
    }
    // With cycle-to-cycle noise the states stay on the same N levels.
    let m = model("constant_step", &[("levels", 8.into())]);
    let mut a = DeviceArray::new(&m, 1, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut seen = Vec::new();
    for _ in 0..5000 {
        a.pulse(0, if rng.gen_bool(0.5) { 1 } else { -1 });
        seen.push(a.conductance(0));
    }
    seen.sort_by(|x, y| x.partial_cmp(y).unwrap());
    seen.dedup();
    assert!(seen.len() <= 8, "{} distinct states", seen.len());
}

#[test]
fn stuck_devices_never_change_and_have_the_set_fractions() {
    let m = model(
        "constant_step",
        &[("stuck_at_min", 0.2.into()), ("stuck_at_max", 0.1.into())],
    );
    let n = 20_000;
    let mut a = DeviceArray::new(&m, n, 4);
    let stuck: Vec<usize> = (0..n).filter(|&i| a.is_stuck(i)).collect();
    let frac = stuck.len() as f64 / n as f64;
    assert!((frac - 0.3).abs() < 0.015, "stuck fraction {frac}");
    let (low, high, _) = a.fault_counts();
    assert!((low as f64 / n as f64 - 0.2).abs() < 0.015);
    assert!((high as f64 / n as f64 - 0.1).abs() < 0.015);
    for &i in &stuck {
        let (lo, hi) = a.bounds(i);
        let g = a.conductance(i);
        assert!(g == lo || g == hi, "stuck device not at a bound");
    }
    let before: Vec<f32> = (0..a.len()).map(|i| a.conductance(i)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..50_000 {
        let i = rng.gen_range(0..n);
        a.pulse(i, if rng.gen_bool(0.5) { 5 } else { -5 });
    }
    for &i in stuck.iter().take(500) {
        a.program(i, 0.5);
    }
    for &i in &stuck {
        assert_eq!(a.conductance(i), before[i], "stuck device {i} changed");
    }
    let moved = (0..n).filter(|&i| a.conductance(i) != before[i]).count();
    assert!(moved > n / 3, "free devices should move ({moved})");
}

#[test]
fn endurance_stops_a_device_at_its_count() {
    let rated = 137;
    let m = model(
        "constant_step",
        &[
            ("endurance", (rated as f64).into()),
            ("dw_min_std", 0.0.into()),
        ],
    );
    let mut a = DeviceArray::new(&m, 4, 8);
    for i in 0..4 {
        let mut switching = 0;
        for k in 0..400 {
            let g0 = a.conductance(i);
            // Alternate direction so the bounds never stop the device.
            let out = a.pulse(i, if k % 2 == 0 { 1 } else { -1 });
            if a.conductance(i) != g0 {
                switching += 1;
            }
            assert_eq!(out.effective as usize, usize::from(k < rated));
        }
        assert_eq!(switching, rated, "device {i}");
        assert!(a.is_worn_out(i));
        assert_eq!(
            a.pulse_count(i),
            400,
            "all pulses are counted for wear and energy"
        );
    }
}

#[test]
fn fitted_drift_exponent_matches_nu() {
    // PCM drift G(t) = G(t_p)(t/t₀)^−ν: regress ln G on ln t per device.
    let m = model("pcm", &[]);
    let n = 2000;
    let mut a = DeviceArray::new(&m, n, 12);
    for i in 0..n {
        a.program(i, 0.6);
    }
    let o = m.conductance_offset() as f64;
    let times: Vec<f64> = (1..=10).map(|k| m.drift.t0 * 2f64.powi(k)).collect();
    let mut series = vec![Vec::new(); n];
    let mut t_now = 0.0;
    for &t in &times {
        a.advance_time(t - t_now);
        t_now = t;
        for (i, s) in series.iter_mut().enumerate() {
            s.push((a.visible(i) as f64 + o).ln());
        }
    }
    let xs: Vec<f64> = times.iter().map(|t| t.ln()).collect();
    let xm = xs.iter().sum::<f64>() / xs.len() as f64;
    let sxx: f64 = xs.iter().map(|x| (x - xm).powi(2)).sum();
    let mut fitted = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let ym = s.iter().sum::<f64>() / s.len() as f64;
        let sxy: f64 = xs.iter().zip(s).map(|(x, y)| (x - xm) * (y - ym)).sum();
        let nu = -sxy / sxx;
        assert!(
            (nu - a.drift_exponent(i) as f64).abs() < 1e-3,
            "device {i}: {nu}"
        );
        fitted.push(nu);
    }
    let mean = fitted.iter().sum::<f64>() / n as f64;
    let sd = (fitted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    assert!((mean - m.drift.nu as f64).abs() < 0.003, "mean ν {mean}");
    assert!((sd - m.drift.nu_dtod as f64).abs() < 0.003, "σ_ν {sd}");
    // A write restarts the drift clock.
    let g_before = a.visible(0);
    a.pulse(0, 1);
    assert!(a.visible(0) > g_before);
}

#[test]
fn soft_bounds_step_vanishes_at_the_bounds() {
    let m = model(
        "reram_sb",
        &[("dw_min_std", 0.0.into()), ("write_noise", 0.0.into())],
    );
    let mut a = DeviceArray::new(&m, 1, 2);
    let (lo, hi) = a.bounds(0);
    // Many up pulses saturate close to the upper bound, never beyond.
    a.pulse(0, 20_000);
    let g = a.conductance(0);
    assert!(g <= hi && hi - g < 0.01 * (hi - lo), "g {g} hi {hi}");
    let g0 = a.conductance(0);
    a.pulse(0, 1);
    assert!(
        (a.conductance(0) - g0).abs() < 0.05 * m.step.dw_min,
        "step at the top is small"
    );
}
