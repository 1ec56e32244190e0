//! Run directories are safe: written as one unit after every epoch, an
//! interrupted run (`kill -9`) resumes to the bits of the uninterrupted
//! one, `--out` refuses what it must not replace before training starts,
//! `--resume` refuses files that do not belong together, and files get the
//! usual umask-respecting mode.

mod common;

use common::dyadsim;
use std::path::Path;
use std::time::{Duration, Instant};

/// A small digital run, `epochs` epochs of 3,000 images each.
fn small(epochs: &str) -> Vec<String> {
    [
        "train",
        "--quiet",
        "--arch",
        "784-32-10",
        "--epochs",
        epochs,
        "--set",
        "data.train_size=3000",
        "--set",
        "data.validation_size=0",
        "--set",
        "data.test_size=200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> (i32, String, String) {
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    dyadsim(&refs)
}

fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    base.extend(extra.iter().map(|s| s.to_string()));
    base
}

fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

#[test]
fn a_killed_run_resumes_to_the_bits_of_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let whole = tmp.path().join("whole");
    let (code, _, err) = run(&with(small("8"), &["--out", whole.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(manifest(&whole)["complete"], true);

    // The same run, killed as soon as its first checkpoint is on disk.
    let cut = tmp.path().join("cut");
    let args = with(small("8"), &["--out", cut.to_str().unwrap()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dyadsim"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dyadsim");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cut.join("manifest.json").exists() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let m = manifest(&cut);
    assert_eq!(
        m["complete"], false,
        "the run finished before it was killed: make it longer"
    );
    let done = m["epochs_done"].as_u64().expect("epochs_done") as usize;
    assert!((1..8).contains(&done));
    assert_eq!(m["epochs_planned"], 8);
    // No temporary directory or file is left beside or inside it.
    for entry in std::fs::read_dir(tmp.path()).expect("list") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        assert!(
            name == "whole" || name == "cut" || name.contains(".tmp-"),
            "{name}"
        );
    }

    let rest = (8 - done).to_string();
    let (code, _, err) = run(&[
        "train",
        "--quiet",
        "--resume",
        cut.to_str().unwrap(),
        "--epochs",
        &rest,
        "--out",
        cut.to_str().unwrap(),
    ]
    .map(String::from));
    assert_eq!(code, 0, "{err}");
    let m = manifest(&cut);
    assert_eq!(m["complete"], true);
    assert_eq!(m["epochs_done"], 8);
    for file in ["parameters.json", "parameters.npz", "run_state.json"] {
        let a = std::fs::read(whole.join(file)).expect("whole");
        let b = std::fs::read(cut.join(file)).expect("cut");
        assert!(a == b, "{file} differs after kill -9 and resume");
    }
}

#[test]
fn out_refuses_what_it_must_not_replace_before_training() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let out = dir.to_str().unwrap();
    let (code, _, err) = run(&with(small("1"), &["--out", out]));
    assert_eq!(code, 0, "{err}");
    // An existing run: refused without --force, replaced with it.
    let (code, _, err) = run(&with(small("1"), &["--out", out, "--seed", "2"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("already holds a run") && err.contains("--force"),
        "{err}"
    );
    let (code, _, err) = run(&with(small("1"), &["--out", out, "--seed", "2", "--force"]));
    assert_eq!(code, 0, "{err}");
    let config = std::fs::read_to_string(dir.join("config.toml")).expect("config");
    assert!(config.contains("seed = 2"), "{config}");
    // A directory that holds something else: never, not even with --force.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "mine").expect("write");
    let (code, _, err) = run(&with(
        small("1"),
        &["--out", other.to_str().unwrap(), "--force"],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("holds no run"), "{err}");
    assert!(other.join("notes.txt").exists());
    // A file, and a place that cannot be written: refused before training
    // (no epoch line, no result).
    let file = tmp.path().join("a_file");
    std::fs::write(&file, "x").expect("write");
    let (code, _, err) = run(&with(small("1"), &["--out", file.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(err.contains("is not a directory"), "{err}");
    let under_file = file.join("run");
    let (code, _, err) = run(&with(small("1"), &["--out", under_file.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--out"), "{err}");
}

#[test]
fn resume_refuses_files_that_do_not_belong_together() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    for (dir, seed) in [(&a, "1"), (&b, "2")] {
        let (code, _, err) = run(&with(
            small("1"),
            &["--out", dir.to_str().unwrap(), "--seed", seed],
        ));
        assert_eq!(code, 0, "{err}");
    }
    // Seed 2's parameters beside seed 1's result, config and run state.
    std::fs::copy(b.join("parameters.json"), a.join("parameters.json")).expect("copy");
    let (code, _, err) = run(&[
        "train",
        "--quiet",
        "--resume",
        a.to_str().unwrap(),
        "--epochs",
        "1",
    ]
    .map(String::from));
    assert_eq!(code, 2);
    assert!(
        err.contains("do not belong together") && err.contains("parameters.json"),
        "{err}"
    );
}

#[test]
fn a_crossbar_run_without_its_device_state_is_not_resumed_from_fresh_devices() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("xbar");
    let (code, _, err) = run(&with(
        small("1"),
        &["--device", "reram_es", "--out", dir.to_str().unwrap()],
    ));
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(dir.join("device_state.json")).expect("rm");
    std::fs::remove_file(dir.join("manifest.json")).expect("rm");
    let (code, _, err) = run(&[
        "train",
        "--quiet",
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "1",
    ]
    .map(String::from));
    assert_eq!(code, 2);
    assert!(err.contains("device_state.json"), "{err}");
}

#[cfg(unix)]
#[test]
fn files_get_the_usual_mode() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let (code, _, err) = run(&with(small("1"), &["--out", dir.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    // What any new file of this process's umask gets.
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, "x").expect("write");
    let usual = std::fs::metadata(&probe)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    let usual_dir = {
        let d = tmp.path().join("probe_dir");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777
    };
    for entry in std::fs::read_dir(&dir).expect("list") {
        let entry = entry.expect("entry");
        let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, usual, "{:?} has mode {mode:o}", entry.file_name());
    }
    let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, usual_dir, "the run directory has mode {mode:o}");
}

/// `reproduce` records each finished row; a rerun after an interruption
/// (here: the rows file cut in the middle of a line, as a kill leaves it)
/// trains only the missing rows, and the table equals the uninterrupted one.
#[test]
fn interrupted_reproduce_trains_only_the_missing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    let args = [
        "reproduce",
        "table1",
        "--datasets",
        "mnist",
        "--epochs",
        "1",
        "--train-size",
        "300",
        "--set",
        "data.validation_size=0",
        "--set",
        "data.test_size=200",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let (code, first, err) = dyadsim(&args);
    assert_eq!(code, 0, "{err}");
    let rows_path = out.join("table1.rows.jsonl");
    let text = std::fs::read_to_string(&rows_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "one recorded line per row");
    // Keep four rows and half of the fifth.
    let cut = format!(
        "{}\n{}",
        lines[..4].join("\n"),
        &lines[4][..lines[4].len() / 2]
    );
    std::fs::write(&rows_path, cut).unwrap();
    let (code, second, err) = dyadsim(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("4 finished rows recorded"), "{err}");
    assert!(err.contains("line 5: not a table row"), "{err}");
    assert_eq!(err.matches("running MNIST").count(), 5, "{err}");
    let rows = |stdout: &str| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let m = &r["result"];
                // Everything measured except the timings.
                serde_json::json!([
                    r["method"],
                    r["config_hash"],
                    m["test_accuracy"],
                    m["train_loss"],
                    m["lipschitz"],
                    m["max_state"],
                    m["status"]
                ])
            })
            .collect()
    };
    assert_eq!(rows(&first), rows(&second));
    // A third run trains nothing.
    let (code, _, err) = dyadsim(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("running MNIST").count(), 0, "{err}");
    // The table says it is shortened, and by what.
    let md = std::fs::read_to_string(out.join("table1.md")).unwrap();
    assert!(
        md.contains("**A shortened table:** every row ran with `training.epochs=1`, `data.train_size=300`, `data.validation_size=0`, `data.test_size=200`"),
        "{md}"
    );
}
