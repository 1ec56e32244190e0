//! Device statistics match their parameters (issue 3, "What must hold").

use dyadsim::devices::{builtin_names, DeviceArray, DeviceModel, Position, BUILTIN_MODELS};
use dyadsim::report::mean_std;
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
fn up_down_bias_sets_the_step_ratio_in_either_convention() {
    // aihwkit 1.1's code keeps the up step at dw_min and lowers the down
    // step to dw_min (1 − u); the symmetric split is dw_min (1 ± u).
    for (convention, expected) in [
        ("aihwkit", 1.0 / (1.0 - 0.259359f32)),
        ("symmetric", (1.0 + 0.259359) / (1.0 - 0.259359)),
    ] {
        let m = model(
            "reram_es",
            &[
                ("dw_min_std", 0.0.into()),
                ("write_noise", 0.0.into()),
                ("up_down_dtod", 0.0.into()),
                ("dw_min_dtod", 0.0.into()),
                ("step_convention", convention.into()),
            ],
        );
        let mut a = DeviceArray::new(&m, 1, 3);
        let (lo, hi) = a.bounds(0);
        let g0 = a.conductance(0);
        a.pulse(0, 1);
        let g1 = a.conductance(0);
        a.pulse(0, -1);
        let g2 = a.conductance(0);
        let fu = m.response_factor_at(Position::new(g0, lo, hi), true);
        let fd = m.response_factor_at(Position::new(g1, lo, hi), false);
        let ratio = ((g1 - g0) / fu) / ((g1 - g2) / fd);
        assert!(
            (ratio / expected - 1.0).abs() < 1e-3,
            "{convention}: {ratio} vs {expected}"
        );
    }
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

// ---------------------------------------------------------------------
// The conventions of aihwkit 1.1's presets (issue 22): each statistic
// against a closed form of aihwkit's own formulas in weight units.
// ---------------------------------------------------------------------

fn noise_free(name: &str, extra: &[(&str, toml::Value)]) -> DeviceModel {
    let mut pairs: Vec<(&str, toml::Value)> =
        vec![("dw_min_std", 0.0.into()), ("write_noise", 0.0.into())];
    pairs.extend(extra.iter().cloned());
    model(name, &pairs)
}

#[test]
fn linear_step_slopes_are_gamma_over_the_mean_bound() {
    // aihwkit LinearStep (mean_bound_reference): f_up = 1 − γ_up w/w_max,
    // f_down = 1 + γ_down w/|w_min|, with the EcRam/EcRamMO presets' values.
    for (name, w_min, w_max, g_up, g_down) in [
        ("ecram", -0.8276f32, 1.1724f32, 0.1153f32, 0.5085f32),
        ("ecram_mo", -0.8286, 1.1714, 0.4152, 0.7342),
    ] {
        let m = model(name, &[]);
        for x in [0.1f32, 0.5, 0.9] {
            let w = w_min + x * (w_max - w_min);
            let p = Position::new(x, 0.0, 1.0);
            let (fu, fd) = (
                m.response_factor_at(p, true),
                m.response_factor_at(p, false),
            );
            let (eu, ed) = (1.0 - g_up * w / w_max, 1.0 + g_down * w / -w_min);
            assert!(
                (fu - eu).abs() < 2e-4 && (fd - ed).abs() < 2e-4,
                "{name} x {x}: {fu}/{fd} vs {eu}/{ed}"
            );
        }
    }
}

#[test]
fn bound_spreads_are_aihwkit_relative_spreads_per_bound() {
    // b_min,i = w_min (1 + σ_min ξ), b_max,i = w_max (1 + σ_max ξ): in units
    // of the range, std |w_min| σ_min / R and w_max σ_max / R.
    for (name, w_min, w_max, s_min, s_max) in [
        ("reram_sb", -0.75f64, 1.25f64, 0.4f64, 0.24f64),
        ("pcm", 0.0, 2.0, 0.0, 0.1),
        ("ecram", -0.8276, 1.1724, 0.05, 0.05),
        ("reram_array_om", -1.0, 1.0, 0.5695, 0.3499),
    ] {
        let m = model(name, &[]);
        let a = DeviceArray::new(&m, 20_000, 11);
        let r = w_max - w_min;
        let (lo, hi): (Vec<f64>, Vec<f64>) = (0..a.len())
            .map(|i| {
                let (l, h) = a.bounds(i);
                (l as f64, h as f64)
            })
            .unzip();
        let (lo_mean, lo_std) = mean_std(&lo);
        let (hi_mean, hi_std) = mean_std(&hi);
        let (want_lo, want_hi) = (-w_min * s_min / r, w_max * s_max / r);
        // Means at the nominal bounds, spreads as published (the fold of
        // aihwkit's consistency rule matters only beyond ≈ 1.75 σ of
        // reram_array_om's lower bound, which the bounds below allow).
        let tol = |want: f64| 0.03 * want + 1e-6;
        if name != "reram_array_om" {
            assert!(
                (lo_std - want_lo).abs() <= tol(want_lo),
                "{name} lower std {lo_std} vs {want_lo}"
            );
            assert!(
                (hi_std - want_hi).abs() <= tol(want_hi),
                "{name} upper std {hi_std} vs {want_hi}"
            );
            assert!(
                lo_mean.abs() < 0.005 && (hi_mean - 1.0).abs() < 0.005,
                "{name} {lo_mean} {hi_mean}"
            );
        }
        // Every device's bounds contain the symmetry point.
        let c = m.bounds.g_center as f64;
        assert!(
            lo.iter().zip(&hi).all(|(l, h)| *l <= c && c <= *h),
            "{name}"
        );
    }
    // reram_sb: both bounds spread by 0.3 in weight units, 0.15 of the range.
    let m = model("reram_sb", &[]);
    let (l, h) = m.bounds.absolute_spreads();
    assert!(
        (l - 0.15).abs() < 1e-6 && (h - 0.15).abs() < 1e-6,
        "{l} {h}"
    );
}

/// The symmetry point of each device, noise-free, by alternating up and
/// down pulses from its fresh state.
fn symmetry_points(m: &DeviceModel, n: usize, seed: u64, cycles: usize) -> Vec<f64> {
    let mut a = DeviceArray::new(m, n, seed);
    (0..n)
        .map(|i| {
            for _ in 0..cycles {
                a.pulse(i, 1);
                a.pulse(i, -1);
            }
            let g_down = a.conductance(i) as f64;
            a.pulse(i, 1);
            0.5 * (g_down + a.conductance(i) as f64)
        })
        .collect()
}

#[test]
fn soft_bounds_symmetry_point_follows_the_closed_form_of_the_anchor() {
    // aihwkit's soft bounds, at the absolute weight: the steps balance where
    // α⁺ (1 − w/b_max) = α⁻ (1 − w/b_min), w* = (α⁺ − α⁻)/(α⁺/b_max − α⁻/b_min);
    // with the up/down spread of 0.01 the symmetry points hardly spread.
    // Anchored to its own bounds instead, each device's symmetry point
    // moves with its bounds (spread ≈ the bound spread).
    let n = 2000;
    for (anchor, lo_sd, hi_sd) in [("absolute", 0.0, 0.02), ("own_bounds", 0.08, 0.2)] {
        let m = noise_free("reram_sb", &[("anchor", anchor.into())]);
        let a = DeviceArray::new(&m, n, 5);
        let sym = symmetry_points(&m, n, 5, 10_000);
        let c = m.bounds.g_center as f64;
        for (i, s) in sym.iter().enumerate().take(200) {
            let (lo, hi) = a.bounds(i);
            let (lo, hi) = (lo as f64, hi as f64);
            // Probe steps of this device at its fresh state to get α± (the
            // array's own steps), then the closed form.
            let mut probe = DeviceArray::new(&m, n, 5);
            let g = probe.conductance(i) as f64;
            probe.pulse(i, 1);
            let up = probe.conductance(i) as f64 - g;
            // The up factor at the fresh state, the down factor after it.
            let fu = if anchor == "absolute" {
                (hi - g) / (hi - c)
            } else {
                (1.0 - (g - lo) / (hi - lo)) / (1.0 - c)
            };
            let g1 = probe.conductance(i) as f64;
            probe.pulse(i, -1);
            let down = g1 - probe.conductance(i) as f64;
            let fd1 = if anchor == "absolute" {
                (g1 - lo) / (c - lo)
            } else {
                ((g1 - lo) / (hi - lo)) / c
            };
            let (a_up, a_down) = (up / fu, down / fd1);
            if a_up.min(a_down) < 0.3 * m.step.dw_min as f64 {
                continue; // too slow to have converged in 10,000 cycles
            }
            let want = if anchor == "absolute" {
                // a_up (hi − g)/(hi − c) = a_down (g − lo)/(c − lo)
                let (p, q) = (a_up / (hi - c), a_down / (c - lo));
                (p * hi + q * lo) / (p + q)
            } else {
                let (p, q) = (a_up / (1.0 - c), a_down / c);
                lo + (hi - lo) * p / (p + q)
            };
            // Alternating discrete pulses settle within a few steps of the
            // continuous balance point.
            assert!(
                (s - want).abs() < 3.0 * up.max(down),
                "{anchor} device {i}: {s} vs {want}"
            );
        }
        let (_, sd) = mean_std(&sym);
        assert!(
            sd >= lo_sd && sd <= hi_sd,
            "{anchor}: symmetry-point spread {sd}"
        );
    }
}

#[test]
fn a_fresh_device_sits_at_the_zero_point_of_its_anchor() {
    let m = model("reram_sb", &[]);
    let a = DeviceArray::new(&m, 500, 3);
    assert!((0..a.len()).all(|i| a.conductance(i) == m.bounds.g_center));
    let m = model("reram_sb", &[("anchor", "own_bounds".into())]);
    let a = DeviceArray::new(&m, 500, 3);
    for i in 0..a.len() {
        let (lo, hi) = a.bounds(i);
        assert!((a.conductance(i) - (lo + m.bounds.g_center * (hi - lo))).abs() < 1e-6);
    }
}

#[test]
fn exp_step_means_at_zero_weight_match_the_preset_formula() {
    // ReRamESPreset, noise-free: at w = 0, z = b = −0.5, so f_up = 1 − A_up e^{−γ/2}
    // and f_down = 1 − A_down e^{γ/2}; aihwkit's split: up dw_min, down dw_min (1 − u).
    let m = noise_free("reram_es", &[]);
    let n = 20_000;
    let mut a = DeviceArray::new(&m, n, 9);
    let dw = m.step.dw_min as f64;
    let (f_up, f_down) = (
        1.0 + 1.18445 * (-2.5f64).exp(),
        1.0 + 0.081404 * 2.5f64.exp(),
    );
    let mut up = Vec::new();
    let mut down = Vec::new();
    for i in 0..n {
        let g = a.conductance(i) as f64;
        a.pulse(i, 1);
        up.push((a.conductance(i) as f64 - g) / dw);
        a.program(i, g as f32);
        a.pulse(i, -1);
        down.push((g - a.conductance(i) as f64) / dw);
    }
    let (mu, su) = mean_std(&up);
    let (md, sd) = mean_std(&down);
    let want_up = f_up;
    let want_down = (1.0 - 0.259359) * f_down;
    assert!((mu / want_up - 1.0).abs() < 0.01, "up {mu} vs {want_up}");
    assert!(
        (md / want_down - 1.0).abs() < 0.01,
        "down {md} vs {want_down}"
    );
    // The spread of the down step at w = 0: gain 0.2 and up/down 0.05 added
    // to (1 − u), std √(0.2² + 0.05²), relative to 1 − u (per-device bounds
    // add a little through z's bound difference).
    let cv_down = sd / md;
    let want_cv = (0.2f64.powi(2) + 0.05f64.powi(2)).sqrt() / (1.0 - 0.259359);
    assert!(
        (cv_down / want_cv - 1.0).abs() < 0.08,
        "down CV {cv_down} vs {want_cv}"
    );
    assert!(
        (su / mu - (0.2f64.powi(2) + 0.05f64.powi(2)).sqrt()).abs() < 0.02,
        "up CV {}",
        su / mu
    );
}

#[test]
fn pcm_cycle_to_cycle_noise_has_the_presets_additive_and_state_terms() {
    // PCMPreset: each pulse's noise σ (|Δw| + std_add + std_slope |w|), in
    // units of the range σ (|Δg| + 0.021 + 0.108 g), with σ = 0.6. Same seed,
    // same devices: the noisy minus the noise-free step is that noise.
    let n = 20_000;
    let clean = model("pcm", &[("dw_min_std", 0.0.into())]);
    let noisy = model("pcm", &[]);
    for g in [0.25f32, 0.5] {
        let mut a = DeviceArray::new(&clean, n, 4);
        let mut b = DeviceArray::new(&noisy, n, 4);
        let mut z = Vec::new();
        for i in 0..n {
            assert_eq!(a.bounds(i), b.bounds(i));
            let (_, hi) = a.bounds(i);
            if g + 0.2 > hi {
                continue; // keep clipping out of the statistic
            }
            a.program(i, g);
            b.program(i, g);
            a.pulse(i, 1);
            b.pulse(i, 1);
            let dg = (a.conductance(i) - g) as f64;
            let dn = (b.conductance(i) - g) as f64;
            let sigma = 0.6 * (dg.abs() + 0.021 + 0.108 * g as f64);
            if b.conductance(i) > 0.0 {
                z.push((dn - dg) / sigma);
            }
        }
        let (m, s) = mean_std(&z);
        assert!(
            m.abs() < 0.03 && (s - 1.0).abs() < 0.03,
            "g {g}: standardised noise mean {m} std {s}"
        );
    }
}

#[test]
fn anchor_and_bound_spread_conventions_are_checked() {
    let msg = format!(
        "{:#}",
        DeviceModel::load(
            "reram_sb",
            &overrides(&[("bound_dtod_relative", false.into())])
        )
        .unwrap_err()
    );
    for part in ["reram_sb", "anchor", "bound_dtod_relative", "own_bounds"] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let msg = format!(
        "{:#}",
        DeviceModel::load("reram_es", &overrides(&[("anchor", "weight".into())])).unwrap_err()
    );
    for part in ["reram_es", "anchor", "weight", "absolute", "own_bounds"] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    // A model file of the earlier layout: its single bound spread and the
    // keys it lacks get errors that say what to write.
    let old = BUILTIN_MODELS[2]
        .1
        .replace("bound_dtod_lo = 0.3", "bound_dtod = 0.15")
        .replace("bound_dtod_hi", "# bound_dtod_hi");
    let msg = format!(
        "{:#}",
        DeviceModel::from_toml_str(&old, "old.toml", &toml::Table::new()).unwrap_err()
    );
    for part in [
        "old.toml",
        "bound_dtod = 0.15",
        "bound_dtod_lo = 0.15",
        "bound_dtod_relative = false",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let old = BUILTIN_MODELS[2].1.replace("anchor =", "# anchor =");
    let msg = format!(
        "{:#}",
        DeviceModel::from_toml_str(&old, "old.toml", &toml::Table::new()).unwrap_err()
    );
    for part in [
        "old.toml",
        "missing field `anchor`",
        "own_bounds",
        "earlier behaviour",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let msg = format!(
        "{:#}",
        DeviceModel::load("pcm", &overrides(&[("step_convention", "code".into())])).unwrap_err()
    );
    for part in [
        "pcm",
        "step_convention = \"code\"",
        "\"aihwkit\"",
        "\"symmetric\"",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let msg = format!(
        "{:#}",
        DeviceModel::load("pcm", &overrides(&[("c2c_add", (-0.1).into())])).unwrap_err()
    );
    assert!(msg.contains("c2c_add") && msg.contains("≥ 0"), "{msg}");
}

// ---------------------------------------------------------------------
// The symmetry point (zero-shifting, Kim et al. 2019): where an up and a
// down pulse change the conductance equally.
// ---------------------------------------------------------------------

/// A soft-bounds device with nominal bounds [0, 1], symmetry point
/// c = 0.375 and up/down bias u = 0.2 (aihwkit convention: up step Δ, down
/// step (1 − u)Δ) balances where Δ(1 − g)/(1 − c) = (1 − u)Δ g/c, i.e.
/// g* = (1/(1 − c)) / (1/(1 − c) + (1 − u)/c). The analytic point is that
/// closed form, and alternating pulses (noise-free) find it within a step.
#[test]
fn soft_bounds_symmetry_point_has_its_closed_form_and_pulses_find_it() {
    let m = noise_free(
        "reram_sb",
        &[
            ("up_down", 0.2.into()),
            ("up_down_dtod", 0.0.into()),
            ("dw_min_dtod", 0.0.into()),
            ("bound_dtod_lo", 0.0.into()),
            ("bound_dtod_hi", 0.0.into()),
        ],
    );
    let c = m.bounds.g_center as f64;
    let expected = (1.0 / (1.0 - c)) / (1.0 / (1.0 - c) + 0.8 / c);
    let mut a = DeviceArray::new(&m, 3, 7);
    for i in 0..3 {
        assert_eq!(a.bounds(i), (0.0, 1.0));
        let analytic = a.symmetry_point(i).expect("a soft-bounds device balances") as f64;
        assert!(
            (analytic - expected).abs() < 1e-5,
            "{analytic} vs {expected}"
        );
        // From the lower bound, 2000 pairs of steps of 0.001 reach it.
        a.program(i, 0.0);
        let before = a.pulse_count(i);
        let found = a.find_symmetry_point(i, 2000, 100) as f64;
        assert!(
            (found - expected).abs() < 2.0 * m.step.dw_min as f64,
            "found {found}, closed form {expected}"
        );
        // Every calibration pulse counts as a write.
        assert_eq!(a.pulse_count(i) - before, 2 * (2000 + 100));
    }
}

/// An exponential-step device (`reram_es`, its aihwkit ExpStep preset) with
/// its device-to-device spreads: the bisection's point balances the two
/// steps (checked against a dense scan of the same steps), and alternating
/// pulses with the model's full cycle-to-cycle noise find it on average.
#[test]
fn exponential_symmetry_point_balances_the_steps_and_pulses_find_it() {
    let noisy = model("reram_es", &[("write_noise", 0.0.into())]);
    let quiet = noise_free("reram_es", &[]);
    let n = 40;
    let mut with_noise = DeviceArray::new(&noisy, n, 3);
    let without = DeviceArray::new(&quiet, n, 3);
    let mut errors = Vec::new();
    for i in 0..n {
        let (lo, hi) = without.bounds(i);
        let Some(analytic) = without.symmetry_point(i) else {
            continue;
        };
        assert!(lo <= analytic && analytic <= hi);
        // The same device's steps on a fine grid change sign there: one
        // noise-free up–down pair moves the state by less than a step's
        // thousandth at the point, and up below, down above it.
        let pair_drift = |g: f32| {
            let mut probe = DeviceArray::new(&quiet, n, 3);
            probe.program(i, g);
            probe.pulse(i, 1);
            probe.pulse(i, -1);
            probe.conductance(i) - g
        };
        let step = quiet.step.dw_min;
        assert!(
            pair_drift(analytic).abs() < 0.02 * step,
            "{}",
            pair_drift(analytic)
        );
        if analytic - 0.05 > lo {
            assert!(pair_drift(analytic - 0.05) > 0.0);
        }
        if analytic + 0.05 < hi {
            assert!(pair_drift(analytic + 0.05) < 0.0);
        }
        // With cycle-to-cycle noise (5 steps' σ per pulse) the found point
        // scatters around the analytic one.
        with_noise.program(i, lo);
        let found = with_noise.find_symmetry_point(i, 4000, 2000);
        errors.push((found - analytic) as f64);
    }
    assert!(errors.len() > n / 2, "most devices balance somewhere");
    let (mean, sd) = mean_std(&errors);
    assert!(mean.abs() < 0.02, "found − analytic: mean {mean}, sd {sd}");
    assert!(sd < 0.05, "found − analytic: mean {mean}, sd {sd}");
}

/// A constant-step device with unequal steps never balances: no point.
#[test]
fn an_unbalanced_constant_step_device_has_no_symmetry_point() {
    let m = noise_free(
        "constant_step",
        &[("up_down", 0.3.into()), ("up_down_dtod", 0.0.into())],
    );
    let a = DeviceArray::new(&m, 2, 1);
    assert_eq!(a.symmetry_point(0), None);
    let balanced = noise_free("constant_step", &[("up_down_dtod", 0.0.into())]);
    // Equal steps balance everywhere: the bisection returns a point inside.
    let b = DeviceArray::new(&balanced, 1, 1);
    let (lo, hi) = b.bounds(0);
    if let Some(p) = b.symmetry_point(0) {
        assert!(lo <= p && p <= hi);
    }
}
