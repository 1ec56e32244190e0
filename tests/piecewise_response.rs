//! `response = "piecewise"`: a lookup-table pulse response (aihwkit
//! PiecewiseStepDevice) behaves as the response it tabulates, and bad
//! tables get errors naming the key.

use dyadsim::devices::{DeviceArray, DeviceModel, PiecewiseTable, Response, BUILTIN_MODELS};

/// The text of a shipped model file.
fn shipped(name: &str) -> String {
    BUILTIN_MODELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.to_string())
        .unwrap()
}

/// `text` with the lines of `keys` removed and `extra` appended.
fn edited(text: &str, keys: &[&str], extra: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            !keys.contains(&key)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // Keys go before the first table header (`[recommended]`), if any.
    match out.find("\n[") {
        Some(at) => out.insert_str(at + 1, &format!("{extra}\n")),
        None => out.push_str(extra),
    }
    out
}

#[test]
fn the_table_interpolates_linearly_between_its_points() {
    let t = PiecewiseTable::new(&[1.0, 0.5, 0.0], &[0.0, 0.5, 2.0]).unwrap();
    assert_eq!(t.factor(0.0, true), 1.0);
    assert_eq!(t.factor(0.5, true), 0.5);
    assert_eq!(t.factor(1.0, true), 0.0);
    assert_eq!(t.factor(0.25, true), 0.75);
    assert_eq!(t.factor(0.75, false), 1.25);
    // Held at the end values outside the range.
    assert_eq!(t.factor(-0.3, true), 1.0);
    assert_eq!(t.factor(1.7, false), 2.0);
}

#[test]
fn a_two_point_table_of_a_linear_model_pulses_as_that_model() {
    // ecram: linear response, pivot g_center, absolute anchor. Its factors
    // are affine in x, so a two-point table at x = 0 and 1 is the same
    // response; with the same seed the devices follow the same trajectory.
    let linear = DeviceModel::load("ecram", &toml::Table::new()).unwrap();
    let (u0, d0) = linear.response_factors(0.0);
    let (u1, d1) = linear.response_factors(1.0);
    let text = edited(
        &shipped("ecram"),
        &["response", "slope_up", "slope_down"],
        &format!(
            "response = \"piecewise\"\npiecewise_up = [{u0}, {u1}]\npiecewise_down = [{d0}, {d1}]"
        ),
    );
    let table = DeviceModel::from_toml_str(&text, "ecram-as-table", &toml::Table::new()).unwrap();
    assert!(matches!(table.response, Response::Piecewise(_)));
    for x in [0.0, 0.2, 0.4138, 0.7, 1.0] {
        let (a, b) = (linear.response_factors(x), table.response_factors(x));
        assert!(
            (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6,
            "x {x}: {a:?} {b:?}"
        );
    }
    let n = 20;
    let mut a = DeviceArray::new(&linear, n, 7);
    let mut b = DeviceArray::new(&table, n, 7);
    for i in 0..n {
        for k in 0..600 {
            let pulses = if (k / 150) % 2 == 0 { 1 } else { -1 };
            a.pulse(i, pulses);
            b.pulse(i, pulses);
        }
        let (ga, gb) = (a.conductance(i), b.conductance(i));
        assert!((ga - gb).abs() < 1e-4, "device {i}: {ga} against {gb}");
    }
    // The physics' symmetry point agrees too.
    for i in 0..n {
        match (a.symmetry_point(i), b.symmetry_point(i)) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-4, "device {i}: {x} {y}"),
            (x, y) => assert_eq!(x.is_some(), y.is_some(), "device {i}"),
        }
    }
}

#[test]
fn a_table_model_round_trips_through_its_file_keys() {
    let text = edited(
        &shipped("reram_sb"),
        &["response"],
        "response = \"piecewise\"\npiecewise_up = [1.6, 1.2, 0.8, 0.4, 0.0]\npiecewise_down = [0, 0.4, 0.8, 1.2, 1.6]",
    );
    let m = DeviceModel::from_toml_str(&text, "t.toml", &toml::Table::new()).unwrap();
    let raw = dyadsim::devices::file::RawDeviceModel::from(&m);
    let written = toml::to_string(&raw).unwrap();
    let again = DeviceModel::from_toml_str(&written, "again", &toml::Table::new()).unwrap();
    assert_eq!(again, m);
}

#[test]
fn bad_tables_name_the_key() {
    let base = shipped("reram_sb");
    let cases: &[(&str, &str)] = &[
        (
            "response = \"piecewise\"\npiecewise_up = [1.0, 0.5]\npiecewise_down = [0.5, 1.0, 1.5]",
            "piecewise_up has 2 values and piecewise_down 3",
        ),
        (
            "response = \"piecewise\"\npiecewise_up = [1.0, -0.5]\npiecewise_down = [0.5, 1.0]",
            "piecewise_up[1] = -0.5",
        ),
        (
            "response = \"piecewise\"\npiecewise_up = [1.0]\npiecewise_down = [0.5]",
            "piecewise_up has 1 values; a table needs 2 to 64",
        ),
        (
            "response = \"piecewise\"\npiecewise_up = [0.0, 0.0]\npiecewise_down = [0.5, 1.0]",
            "piecewise_up is all 0",
        ),
        (
            "response = \"piecewise\"\npiecewise_up = [1.0, 0.5]",
            "missing field `piecewise_down`",
        ),
        (
            "response = \"soft_bounds\"\npiecewise_up = [1.0, 0.5]",
            "piecewise_up is a parameter of response = \"piecewise\", not of response = \"soft_bounds\"",
        ),
    ];
    for (extra, expected) in cases {
        let text = edited(&base, &["response"], extra);
        let err = DeviceModel::from_toml_str(&text, "mine.toml", &toml::Table::new())
            .err()
            .unwrap_or_else(|| panic!("{extra}: accepted"));
        let msg = format!("{err:#}");
        assert!(msg.contains(expected), "{extra}: {msg}");
        assert!(msg.contains("mine.toml"), "names the file: {msg}");
    }
}

#[test]
fn a_table_is_overridden_with_set() {
    let text = edited(
        &shipped("reram_sb"),
        &["response"],
        "response = \"piecewise\"\npiecewise_up = [1.0, 1.0]\npiecewise_down = [1.0, 1.0]",
    );
    let mut o = toml::Table::new();
    o.insert(
        "piecewise_up".into(),
        dyadsim::experiment::config::parse_toml_value("[2, 1, 0]"),
    );
    o.insert(
        "piecewise_down".into(),
        dyadsim::experiment::config::parse_toml_value("[0, 1, 2]"),
    );
    let m = DeviceModel::from_toml_str(&text, "t.toml", &o).unwrap();
    assert_eq!(m.response_factors(0.5), (1.0, 1.0));
    assert_eq!(m.response_factors(0.0), (2.0, 0.0));
    o.insert("piecewise_up".into(), toml::Value::Float(1.0));
    let err = DeviceModel::from_toml_str(&text, "t.toml", &o).unwrap_err();
    assert!(
        format!("{err:#}").contains("device.piecewise_up = 1.0: expected an array of numbers"),
        "{err:#}"
    );
}
