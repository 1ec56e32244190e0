//! `dyadsim devices fit`: fitting pulse traces of shipped models recovers
//! their parameters (linear, soft bounds) and their mean pulse response
//! (piecewise tables); bad traces get errors naming the row and column.

use dyadsim::devices::fit::{fit_trace, Fit, FitOptions, FitResponse, Trace};
use dyadsim::devices::{DeviceArray, DeviceModel};

fn fit(model: &DeviceModel, response: FitResponse, pulses: usize) -> Fit {
    // Through the CSV text, as `devices trace` writes it.
    let text = Trace::simulate(model, 200, pulses, 11).to_csv();
    let trace = Trace::from_reader(text.as_bytes(), "trace.csv").unwrap();
    fit_trace(
        &trace,
        &FitOptions {
            response,
            name: "fitted".into(),
            origin: "trace.csv".into(),
            bootstrap: 100,
            seed: 3,
        },
    )
    .unwrap()
}

/// `|fitted − true| ≤ 3 SE + 1.5 % of |true|` for each key (the 1.5 % is
/// the estimator's own small bias, e.g. from steps near the bounds).
fn assert_recovers(fit: &Fit, truth: &[(&str, f64)]) {
    for (key, want) in truth {
        let v = fit.get(key).unwrap_or_else(|| panic!("{key} not fitted"));
        let tol = 3.0 * v.std_error + 0.015 * want.abs();
        assert!(
            (v.value - want).abs() <= tol,
            "{key}: fitted {} ± {} against {want}",
            v.value,
            v.std_error
        );
        assert!(
            v.std_error.is_finite(),
            "{key}: standard error {}",
            v.std_error
        );
    }
}

#[test]
fn a_linear_fit_of_ecram_recovers_its_parameters() {
    let m = DeviceModel::load("ecram", &toml::Table::new()).unwrap();
    let f = fit(&m, FitResponse::Linear, 3000);
    let (slope_up, slope_down) = match m.response {
        dyadsim::devices::Response::Linear {
            slope_up,
            slope_down,
        } => (slope_up as f64, slope_down as f64),
        _ => unreachable!(),
    };
    assert_recovers(
        &f,
        &[
            ("g_max_us", m.conductance.g_max_us),
            ("g_center", m.bounds.g_center as f64),
            ("dw_min", m.step.dw_min as f64),
            ("slope_up", slope_up),
            ("slope_down", slope_down),
            ("dw_min_dtod", m.step.dw_min_dtod as f64),
            ("up_down_dtod", m.step.up_down_dtod as f64),
            ("bound_dtod_lo", m.bounds.dtod_lo as f64),
            ("bound_dtod_hi", m.bounds.dtod_hi as f64),
            ("dw_min_std", m.noise.c2c as f64),
            ("write_noise", 0.0),
        ],
    );
    assert!(
        f.model.noise.c2c_multiplicative,
        "ecram's noise is multiplicative"
    );
    // The fit's noise model explains the residual.
    assert!((f.residual_rms / f.noise_rms - 1.0).abs() < 0.05);
}

#[test]
fn a_soft_bounds_fit_of_reram_sb_recovers_its_parameters() {
    // reram_sb without its write noise (56 steps per read, which leaves a
    // 3,000-pulse trace mostly noise).
    let mut o = toml::Table::new();
    o.insert("write_noise".into(), toml::Value::Float(0.0));
    let m = DeviceModel::load("reram_sb", &o).unwrap();
    let f = fit(&m, FitResponse::SoftBounds, 3000);
    assert_recovers(
        &f,
        &[
            ("g_center", m.bounds.g_center as f64),
            ("dw_min", m.step.dw_min as f64),
            ("up_down", 0.0),
            ("dw_min_dtod", m.step.dw_min_dtod as f64),
            ("bound_dtod_lo", m.bounds.dtod_lo as f64),
            ("bound_dtod_hi", m.bounds.dtod_hi as f64),
        ],
    );
}

/// Mean conductance over `devices` devices after each of `pulses` up, then
/// `pulses` down pulses, from the lower bound.
fn mean_response(model: &DeviceModel, pulses: usize) -> Vec<f64> {
    let devices = 300;
    let mut array = DeviceArray::new(model, devices, 5);
    let mut mean = vec![0.0; 2 * pulses];
    let (g0, g1) = (model.conductance.g_min_us, model.conductance.g_max_us);
    for i in 0..devices {
        let (lo, _) = array.bounds(i);
        array.program(i, lo);
        for (k, m) in mean.iter_mut().enumerate() {
            array.pulse(i, if k < pulses { 1 } else { -1 });
            *m += (g0 + array.conductance(i) as f64 * (g1 - g0)) / devices as f64;
        }
    }
    mean
}

/// The largest difference between the mean pulse responses of `model`
/// and `fitted` over `pulses` up and down pulses, as a share of
/// `model`'s conductance range.
fn worst_mean_deviation(model: &DeviceModel, fitted: &DeviceModel, pulses: usize) -> f64 {
    let (a, b) = (mean_response(model, pulses), mean_response(fitted, pulses));
    let range = model.conductance.g_max_us - model.conductance.g_min_us;
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    worst / range
}

/// An exponential fit of `reram_es` without its write and cycle-to-cycle
/// noise reproduces the model's mean pulse response within 6 % of the
/// range (measured 4.9 %). Its rates are not recovered: the pooled fit
/// over devices whose bounds spread by 30 % comes out at |γ| ≈ 3.2–3.8
/// against the model's 5 (device_models/README.md).
#[test]
fn an_exponential_fit_reproduces_reram_es_mean_pulse_response() {
    let mut o = toml::Table::new();
    o.insert("write_noise".into(), toml::Value::Float(0.0));
    o.insert("dw_min_std".into(), toml::Value::Float(0.0));
    let m = DeviceModel::load("reram_es", &o).unwrap();
    let f = fit(&m, FitResponse::Exponential, 3000);
    let worst = worst_mean_deviation(&m, &f.model, 3000);
    assert!(worst < 0.06, "{worst:.4} of the range");
    // Both rates carry the model's signs in the fitted file's z = x
    // convention: up 1 − A e^{γ_up x}, down 1 − A e^{−γ_down x}, with the
    // model's z = −x: γ_up < 0 and γ_down < 0.
    for key in ["exp_gamma_up", "exp_gamma_down"] {
        let v = f.get(key).unwrap().value;
        assert!(v < 0.0, "{key} = {v}");
    }
}

/// The models whose traces are not dominated by write noise (reram_sb,
/// reram_es and reram_array_om write 56, 75 and 1.4 steps of read-visible
/// noise per pulse; their piecewise fits from 3,000-pulse traces are not
/// within a few percent, see device_models/README.md).
#[test]
fn piecewise_fits_reproduce_shipped_models_mean_pulse_responses() {
    for (name, pulses) in [
        ("constant_step", 3000),
        ("ecram", 3000),
        ("capacitor", 1200),
    ] {
        let m = DeviceModel::load(name, &toml::Table::new()).unwrap();
        let f = fit(&m, FitResponse::Piecewise(16), pulses);
        let worst = worst_mean_deviation(&m, &f.model, pulses);
        eprintln!("{name}: worst mean deviation {worst:.4} of the range");
        assert!(worst < 0.04, "{name}: {worst:.4} of the range");
    }
}

#[test]
fn the_fitted_file_loads_as_a_device_model_with_its_record() {
    let m = DeviceModel::load("ecram", &toml::Table::new()).unwrap();
    let f = fit(&m, FitResponse::Linear, 1000);
    let text = f.model_toml().unwrap();
    let again = DeviceModel::from_toml_str(&text, "fitted.toml", &toml::Table::new()).unwrap();
    assert_eq!(again, f.model);
    let record = again.fit.as_ref().unwrap();
    assert_eq!(record.devices, 200);
    assert!(record.std_errors["dw_min"] > 0.0);
}

#[test]
fn bad_traces_get_errors_naming_the_row_and_column() {
    let ok_rows = |d: usize| {
        let mut s = String::new();
        for k in 0..10 {
            s.push_str(&format!("{d},{k},up,{}\n", 1.0 + k as f64 * 0.1));
        }
        for k in 0..10 {
            s.push_str(&format!("{d},{k},down,{}\n", 2.0 - k as f64 * 0.1));
        }
        s
    };
    let header = "device,pulse,direction,conductance_us\n";
    let cases: Vec<(String, &str)> = vec![
        (
            "device,pulse,conductance_us\n0,0,1.0\n".to_string(),
            "row 1: missing column `direction`",
        ),
        (
            "device,pulse,dir,conductance_us\n".to_string(),
            "row 1: unknown column `dir`",
        ),
        (format!("{header}{}", ok_rows(0)), "one device (0)"),
        (
            format!("{header}{}{}0,10,up,NaN\n", ok_rows(0), ok_rows(1)),
            "row 42, column conductance_us: NaN is not a finite conductance",
        ),
        (
            format!("{header}{}{}1,3,sideways,1.0\n", ok_rows(0), ok_rows(1)),
            "row 42, column direction: `sideways`",
        ),
        (
            format!("{header}{}{}1,x,up,1.0\n", ok_rows(0), ok_rows(1)),
            "row 42, column pulse: `x` is not a pulse number",
        ),
        (
            format!("{header}{}{}1,3,up,1.0\n", ok_rows(0), ok_rows(1)),
            "row 42: device 1 has up pulse 3 twice",
        ),
        (
            format!("{header}0,0,up,1\n0,1,up,2\n1,0,up,1\n1,1,up,2\n"),
            "no down pulses",
        ),
        (
            format!(
                "{header}{}0,20,up,1.0\n",
                ok_rows(0).replace("0,9,up", "0,21,up")
            ),
            "device 0 lacks up pulse 9",
        ),
    ];
    for (text, expected) in cases {
        let err = Trace::from_reader(text.as_bytes(), "lab.csv").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(expected), "expected `{expected}`: {msg}");
        assert!(msg.contains("lab.csv"), "names the file: {msg}");
    }
}
