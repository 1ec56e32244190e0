//! Inputs that used to abort, run forever or train the wrong thing are
//! refused before anything is allocated, with the field and the bound.

mod common;

use common::dyadsim;

fn refused(args: &[&str], needle: &str) {
    let mut all = vec!["train", "--quiet"];
    all.extend_from_slice(args);
    let (code, _, err) = dyadsim(&all);
    assert_eq!(code, 2, "{args:?} was not refused: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{err}"
    );
}

#[test]
fn networks_too_large_or_too_deep_are_refused_before_allocation() {
    refused(&["--arch", "784-100000000-10"], "GiB available");
    refused(
        &["--arch", "784-100000000-10", "--device", "reram_es"],
        "crossbar substrate",
    );
    refused(
        &["--arch", "784-32x99999999999-10"],
        "more than 1000 weight layers",
    );
    refused(
        &["--arch", "784-1x1000000-10"],
        "more than 1000 weight layers",
    );
}

#[test]
fn schedules_that_would_never_end_are_refused() {
    refused(&["--schedule", "fwbw:99999999999"], "exceeds 10000");
    refused(&["--schedule", "jacobi:10001"], "exceeds 10000");
}

#[test]
fn an_output_layer_of_the_wrong_width_is_refused() {
    refused(&["--arch", "784-32-5"], "the last width must be 10");
    refused(&["--arch", "784-32-1", "--loss", "ce"], "has 1 outputs");
}

#[test]
fn zero_epochs_are_refused() {
    refused(&["--epochs", "0"], "training.epochs must be ≥ 1");
}

#[test]
fn a_data_dir_without_the_dataset_is_refused_not_replaced_by_the_embedded_mnist() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    refused(
        &["--data-dir", empty.to_str().unwrap()],
        "train-images-idx3-ubyte(.gz) not found in data.data_dir",
    );
    refused(
        &["--data-dir", tmp.path().join("missing").to_str().unwrap()],
        "does not exist",
    );
}

#[test]
fn options_the_run_cannot_use_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "device.read_noise=0.05"], "--set 'device.read_noise=0.05' cannot affect this run: the run is on the digital substrate"),
        (&["--set", "crossbar.device=reram_es"], "the run is on the digital substrate"),
        (&["--integrator", "rk4"], "--integrator rk4 cannot affect this run: inference is discrete"),
        (&["--hidden-alpha", "0.5"], "only the rule dp uses it"),
        (&["--adv", "fgsm"], "only the rule bp-adv uses it"),
        (&["--momentum", "0.9"], "Adam has no momentum"),
        (&["--rule", "bp", "--schedule", "fwbw:3"], "back-propagation (bp) has no nudged inference"),
        (&["--lr", "0.01", "--device", "reram_es"], "--lr 0.01 cannot affect this run: crossbar runs learn"),
    ];
    for (args, needle) in cases {
        refused(args, needle);
    }
}

#[test]
fn errors_name_the_flag_the_user_wrote() {
    refused(
        &["--rule", "dtp"],
        "--rule dtp: invalid configuration: unknown variant `dtp`",
    );
    let (_, _, err) = dyadsim(&["train", "--quiet", "--rule", "dtp"]);
    assert!(!err.contains("--set"), "{err}");
    refused(
        &["--seed", "9223372036854775808"],
        "--seed 9223372036854775808: must be ≤",
    );
    let (code, _, err) = dyadsim(&[
        "sweep",
        "no_such_spec.toml",
        "--out",
        "/tmp/x",
        "--jobs",
        "0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--jobs 0: must be ≥ 1"), "{err}");
}

#[test]
fn the_adaptive_integrator_on_a_noisy_crossbar_is_refused_with_the_reason() {
    refused(
        &["--dynamics", "ode", "--device", "reram_es"],
        "the adaptive step collapses",
    );
    // A fixed step, or no noise, is fine (checked only up to the start of
    // training: --epochs would take long).
    let (code, _, err) = dyadsim(&[
        "train",
        "--quiet",
        "--dynamics",
        "ode",
        "--device",
        "reram_es",
        "--integrator",
        "rk4",
        "--set",
        "data.train_size=0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("data.train_size must be ≥ 1"), "{err}");
}
