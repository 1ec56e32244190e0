//! `dyadsim devices` and `dyadsim devices show` from the command line.

use std::process::Command;

fn dyadsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dyadsim"))
        .args(args)
        .output()
        .expect("dyadsim runs")
}

#[test]
fn devices_lists_every_shipped_model_once() {
    let out = dyadsim(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in dyadsim::devices::builtin_names() {
        let lines = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .count();
        assert_eq!(lines, 1, "{name} in:\n{text}");
    }
}

#[test]
fn show_prints_parameters_and_writes_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = dyadsim(&[
        "devices",
        "show",
        "ecram",
        "--pulses",
        "50",
        "--out",
        out_dir,
        "--set",
        "device.levels=16",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("levels = 16")
            && text.contains("response = \"linear\"")
            && text.contains("(16 nominal states"),
        "{text}"
    );
    let png = dir.path().join("pulse_response_ecram.png");
    let svg = dir.path().join("pulse_response_ecram.svg");
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[1..4], b"PNG");
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("pulse number"));
}

#[test]
fn unknown_model_fails_with_the_list_of_models() {
    let out = dyadsim(&["devices", "show", "unobtainium"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unobtainium") && err.contains("reram_array_om"),
        "{err}"
    );
}

#[test]
fn a_user_model_file_works_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/device_models/capacitor.toml"
    ))
    .unwrap()
    .replace("name = \"capacitor\"", "name = \"my_cap\"")
    .replace("dw_min = 0.0025", "dw_min = 0.01");
    let path = dir.path().join("my_cap.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dyadsim"))
        .current_dir(dir.path())
        .args(["devices", "show", path.to_str().unwrap(), "--no-plot"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(100 nominal states"));
}

/// Reads a trace CSV: (device, pulse, direction, conductance_us) rows.
fn read_trace(path: &std::path::Path) -> Vec<(usize, usize, String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("device,pulse,direction,conductance_us"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

/// A noise-free constant-step device steps by exactly Δg·(G_max − G_min)
/// per pulse: 0.0008 × 25 µS = 0.02 µS up, then the same down, one row per
/// pulse with `pulse` counted within each direction.
#[test]
fn trace_writes_one_row_per_pulse_with_the_closed_form_steps() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("trace.csv");
    let out = dyadsim(&[
        "devices",
        "trace",
        "constant_step",
        "--set",
        "dw_min_dtod=0",
        "--set",
        "dw_min_std=0",
        "--set",
        "up_down_dtod=0",
        "--set",
        "bound_dtod_lo=0",
        "--set",
        "bound_dtod_hi=0",
        "--pulses",
        "50",
        "--devices",
        "3",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_trace(&csv);
    assert_eq!(rows.len(), 3 * 2 * 50);
    for device in 0..3 {
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == device).collect();
        let up: Vec<_> = mine.iter().filter(|r| r.2 == "up").collect();
        let down: Vec<_> = mine.iter().filter(|r| r.2 == "down").collect();
        assert_eq!(up.len(), 50);
        assert_eq!(down.len(), 50);
        assert!(up.iter().enumerate().all(|(k, r)| r.1 == k));
        assert!(down.iter().enumerate().all(|(k, r)| r.1 == k));
        // From the lower bound (G_min = 0 µS): G after up pulse k is (k+1)·0.02 µS.
        for (k, r) in up.iter().enumerate() {
            assert!((r.3 - 0.02 * (k as f64 + 1.0)).abs() < 1e-4, "{r:?}");
        }
        // Down pulses retrace the steps: after down pulse k, 50 − (k+1) steps remain.
        for (k, r) in down.iter().enumerate() {
            assert!((r.3 - 0.02 * (49.0 - k as f64)).abs() < 1e-4, "{r:?}");
        }
    }
}

#[test]
fn trace_of_a_one_sided_device_has_up_rows_only_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pcm.csv");
    let out = dyadsim(&[
        "devices",
        "trace",
        "pcm",
        "--pulses",
        "20",
        "--devices",
        "2",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_trace(&csv);
    assert_eq!(rows.len(), 2 * 20);
    assert!(rows.iter().all(|r| r.2 == "up"));
    for (args, needle) in [
        (vec!["--pulses", "0"], "--pulses 0"),
        (vec!["--devices", "0"], "--devices 0"),
        (vec!["--set", "dw_min=-1"], "dw_min"),
    ] {
        let mut all = vec!["devices", "trace", "pcm", "--out", csv.to_str().unwrap()];
        all.extend(args);
        let out = dyadsim(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {err}");
        assert!(
            err.contains(needle),
            "{all:?}: expected '{needle}' in {err}"
        );
    }
}

/// `devices show` states where the model's devices balance up and down
/// pulses, from the steps and found by alternating pulses; for the
/// soft-bounds ReRAM preset both sit at its g_center 0.375 (where the
/// preset puts w = 0), and a one-sided device has none.
#[test]
fn show_states_the_symmetry_point() {
    let out = dyadsim(&["devices", "show", "reram_sb", "--no-plot"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("# symmetry point ("))
        .unwrap_or_else(|| panic!("no symmetry point line in:\n{text}"));
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    // "… over 200 devices drawn with seed 1): A ± a from the steps (200 of 200 …); F ± f found …"
    let analytic = numbers[2];
    let found = numbers[6];
    assert!((analytic - 0.375).abs() < 0.01, "{line}");
    assert!((found - 0.375).abs() < 0.02, "{line}");
    let pcm = dyadsim(&["devices", "show", "pcm", "--no-plot"]);
    assert!(
        String::from_utf8_lossy(&pcm.stdout).contains("# symmetry point: none (a one-sided device")
    );
}
