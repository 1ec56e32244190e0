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
