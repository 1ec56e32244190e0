//! The command line: bad input gives a clear error and a non-zero exit,
//! never a panic; results are written and printed as documented.

mod common;

use common::dyadsim;

use std::io::Write;

fn assert_clean_error(args: &[&str], needle: &str) {
    let (code, _out, err) = dyadsim(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: error should mention '{needle}', got: {err}"
    );
}

#[test]
fn bad_hyper_parameters_are_rejected_with_the_field_and_range() {
    assert_clean_error(&["train", "--alpha", "1.5"], "learning.alpha");
    assert_clean_error(&["train", "--alpha", "1.5"], "[0, 1]");
    assert_clean_error(&["train", "--beta", "0"], "learning.beta");
    assert_clean_error(&["train", "--beta", "-1"], "must be a finite number > 0");
    // Non-finite numbers reach the range check (TOML spells them `nan`,
    // `inf`), instead of failing to parse as a string.
    assert_clean_error(
        &["train", "--lr", "NaN"],
        "optimizer.lr = NaN is out of range",
    );
    assert_clean_error(
        &["train", "--lr", "inf"],
        "optimizer.lr = inf is out of range",
    );
    assert_clean_error(&["train", "--arch", "784-abc-10"], "network.arch");
    assert_clean_error(&["train", "--arch", "784"], "network.arch");
    assert_clean_error(&["train", "--schedule", "fwbw:0"], "schedule");
    assert_clean_error(&["train", "--rule", "magic"], "unknown variant");
    assert_clean_error(
        &["train", "--rule", "dpt", "--robust-input"],
        "learning.robust_input",
    );
    assert_clean_error(
        &["train", "--rule", "dp", "--alpha", "0.5", "--robust-input"],
        "α = 0.5",
    );
    assert_clean_error(
        &["train", "--set", "learning.gamma=3"],
        "unknown field `gamma`",
    );
}

/// A flag's number keeps its exponent on the way into the configuration: a
/// learning rate of 1e30 (Display would write 31 digits, past TOML's
/// integers) is accepted and the run ends as diverged, not as a type error.
#[test]
fn huge_flag_values_reach_the_run() {
    let (code, out, err) = dyadsim(&[
        "train",
        "--arch",
        "784-16-10",
        "--train-size",
        "200",
        "--test-size",
        "50",
        "--epochs",
        "1",
        "--quiet",
        "--json",
        "--lr",
        "1e30",
    ]);
    assert_eq!(code, 0, "{err}");
    let last = out.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(last).expect("JSON result");
    assert_eq!(result["status"], "diverged", "{last}");
}

#[test]
fn unknown_config_file_field_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[learning]\nalpah = 0.3\n").unwrap();
    assert_clean_error(&["train", "--config", path.to_str().unwrap()], "alpah");
    assert_clean_error(
        &["train", "--config", "/nonexistent/x.toml"],
        "/nonexistent/x.toml",
    );
}

#[test]
fn truncated_or_missing_idx_files_are_clear_errors() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
    // Truncated gzip.
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(format!("{src}/{f}"), dir.path().join(f)).unwrap();
    }
    let bytes = std::fs::read(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    assert_clean_error(
        &["train", "--data-dir", dir.path().to_str().unwrap()],
        "t10k-labels-idx1-ubyte.gz",
    );
    // Truncated raw IDX: decompress, cut, store uncompressed.
    let dir2 = tempfile::tempdir().unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ] {
        std::fs::copy(format!("{src}/{f}"), dir2.path().join(f)).unwrap();
    }
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw).unwrap();
    let mut f = std::fs::File::create(dir2.path().join("t10k-labels-idx1-ubyte")).unwrap();
    f.write_all(&raw[..raw.len() - 100]).unwrap();
    assert_clean_error(
        &["train", "--data-dir", dir2.path().to_str().unwrap()],
        "t10k-labels-idx1-ubyte",
    );
    // Fashion-MNIST in an empty directory and no system copy: says how to get it
    // (or, when the Debian package is installed, loads from it).
    let empty = tempfile::tempdir().unwrap();
    if !std::path::Path::new("/usr/share/datasets/fashion-mnist").exists() {
        assert_clean_error(
            &[
                "train",
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                empty.path().to_str().unwrap(),
            ],
            "dataset-fashion-mnist",
        );
    }
}

#[test]
fn train_writes_result_and_config_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, err) = dyadsim(&[
        "train",
        "--arch",
        "784-32-10",
        "--train-size",
        "500",
        "--test-size",
        "500",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let last = stdout.lines().last().unwrap();
    let printed: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in [
        "status",
        "test_accuracy",
        "train_loss",
        "lipschitz",
        "samples_per_second",
        "epochs",
    ] {
        assert!(printed.get(key).is_some(), "missing {key}");
    }
    let acc = printed["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(saved["test_accuracy"], printed["test_accuracy"]);
    // The saved config reproduces the run's settings and parses back.
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(cfg.contains("784-32-10"));
    let (code, stdout2, err) = dyadsim(&[
        "train",
        "--config",
        out.join("config.toml").to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let again: serde_json::Value = serde_json::from_str(stdout2.lines().last().unwrap()).unwrap();
    assert_eq!(again["test_accuracy"], printed["test_accuracy"]);
}

#[test]
fn angle_command_reports_total_and_per_layer() {
    let (code, stdout, err) = dyadsim(&[
        "angle",
        "--arch",
        "784-32-32-10",
        "--beta",
        "0.001",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(v["angle_deg"].as_f64().unwrap() < 1.0);
    assert_eq!(v["per_layer_deg"].as_array().unwrap().len(), 3);
}

/// Trains `epochs` epochs of a small run with `extra` flags into `out`,
/// resuming from `resume` if given.
fn small_run(
    extra: &[&str],
    epochs: &str,
    out: &std::path::Path,
    resume: Option<&std::path::Path>,
) {
    let mut args = vec![
        "train",
        "--arch",
        "784-24-10",
        "--train-size",
        "600",
        "--test-size",
        "100",
        "--epochs",
        epochs,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    if let Some(dir) = resume {
        args.extend(["--resume", dir.to_str().unwrap()]);
    }
    args.extend(extra);
    let (code, _, err) = dyadsim(&args);
    assert_eq!(code, 0, "{args:?}: {err}");
}

#[test]
fn a_resumed_run_ends_exactly_where_the_uninterrupted_run_does() {
    // Digital weights with Adam (moments and step count), and a reram_es
    // crossbar with stochastic pulse trains, cycle-to-cycle, write and read
    // noise (three random streams), each with the shuffling stream.
    let cases: [&[&str]; 2] = [
        &["--rule", "dpt"],
        &[
            "--rule",
            "dpt",
            "--substrate",
            "crossbar",
            "--device",
            "reram_es",
            "--write",
            "stochastic",
        ],
    ];
    for extra in cases {
        let dir = tempfile::tempdir().unwrap();
        let (whole, part) = (dir.path().join("whole"), dir.path().join("part"));
        small_run(extra, "2", &whole, None);
        small_run(extra, "1", &part, None);
        let stale = dir.path().join("stale");
        copy_dir(&part, &stale);
        small_run(extra, "1", &part, Some(&part));
        let read = |d: &std::path::Path, f: &str| std::fs::read(d.join(f)).unwrap_or_default();
        assert_eq!(
            read(&whole, "parameters.json"),
            read(&part, "parameters.json"),
            "{extra:?}: resumed parameters differ from the uninterrupted run's"
        );
        assert_eq!(
            read(&whole, "device_state.json"),
            read(&part, "device_state.json"),
            "{extra:?}: resumed device state differs"
        );
        // Without the continuation state (a run directory from before it
        // existed, and so before manifests) the run still resumes, but with
        // fresh random streams and optimiser moments: not the same run.
        std::fs::remove_file(stale.join("run_state.json")).unwrap();
        std::fs::remove_file(stale.join("manifest.json")).unwrap();
        small_run(extra, "1", &stale, Some(&stale));
        assert_ne!(
            read(&whole, "parameters.json"),
            read(&stale, "parameters.json"),
            "{extra:?}: the continuation state should matter"
        );
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn resume_continues_from_the_saved_weights_and_device_state() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let (code, stdout, err) = dyadsim(&[
        "train",
        "--arch",
        "784-32-10",
        "--device",
        "constant_step",
        "--write",
        "stochastic",
        "--set",
        "crossbar.lr=0.2",
        "--train-size",
        "1000",
        "--test-size",
        "500",
        "--epochs",
        "1",
        "--out",
        first.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let a: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(first.join("device_state.json").exists() && first.join("parameters.json").exists());
    let (code, stdout, err) = dyadsim(&[
        "train",
        "--resume",
        first.to_str().unwrap(),
        "--epochs",
        "1",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // The resumed epoch starts from trained weights: its training loss is lower
    // than the first epoch's, which started from initialisation.
    let (la, lb) = (
        a["train_loss"].as_f64().unwrap(),
        b["train_loss"].as_f64().unwrap(),
    );
    assert!(
        lb < la,
        "resumed train loss {lb} should be below the first run's {la}"
    );
    // Per-device wear carries over: the most-pulsed device has at least as many pulses as before.
    let max_pulses = |v: &serde_json::Value| {
        v["hardware"]["layers"][0]["pulses_per_device_max"]
            .as_u64()
            .unwrap()
    };
    assert!(max_pulses(&b) > max_pulses(&a));
    // The mean wear is lifetime too (it equals the first run's pulses plus
    // this run's), while `pulses_applied` counts this run only.
    let layer =
        |v: &serde_json::Value, key: &str| v["hardware"]["layers"][0][key].as_f64().unwrap();
    let devices = layer(&a, "devices");
    let lifetime = layer(&a, "pulses_applied") + layer(&b, "pulses_applied");
    assert!(
        (layer(&b, "pulses_per_device_mean") * devices - lifetime).abs() < 0.5,
        "mean wear × devices {} vs pulses of both runs {lifetime}",
        layer(&b, "pulses_per_device_mean") * devices
    );
    // A directory without saved parameters is a clear error.
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(first.join("config.toml"), empty.path().join("config.toml")).unwrap();
    let (code, _, err) = dyadsim(&[
        "train",
        "--resume",
        empty.path().to_str().unwrap(),
        "--quiet",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("parameters.json"), "{err}");
}
