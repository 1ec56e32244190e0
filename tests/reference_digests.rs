//! Refactors keep the bits: small reference runs through the `dyadsim`
//! binary, each pinned by the SHA-256 of what it writes (result with its
//! wall-clock fields removed, trained parameters, device state, continuation
//! state). A change that alters any number of any of these runs fails here;
//! a deliberate change of results updates the digests in the same commit and
//! says why.
//!
//! The JSON is canonicalised before hashing (parsed, keys sorted, written
//! again), so the digests pin values, not the order in which a struct
//! declares its fields. serde_json's `float_roundtrip` parsing (a crate
//! feature) makes that canonical form exact: each number keeps the bits
//! the run wrote.

mod common;

use common::dyadsim;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Settings every reference run shares: a small network on the first 400
/// MNIST images, 200 test images, no validation split.
const SMALL: &[&str] = &[
    "--quiet",
    "--arch",
    "784-24-10",
    "--batch",
    "20",
    "--set",
    "data.train_size=400",
    "--set",
    "data.validation_size=0",
    "--set",
    "data.test_size=200",
];

/// Wall-clock fields, the only ones allowed to differ between two runs.
const TIMING_KEYS: &[&str] = &["samples_per_second", "wall_seconds"];

fn strip_timing(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in TIMING_KEYS {
                map.remove(*key);
            }
            map.values_mut().for_each(strip_timing);
            // serde_json keeps the written order (`preserve_order`).
            map.sort_keys();
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_timing),
        _ => {}
    }
}

/// `file: sha256` for each JSON file the run directory holds (config.toml
/// is left out: it records the configuration, not a result).
fn digests(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for name in [
        "result.json",
        "parameters.json",
        "device_state.json",
        "run_state.json",
    ] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read run file");
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("run file is JSON");
        strip_timing(&mut value);
        let canonical = serde_json::to_string(&value).expect("serialise");
        let hash = Sha256::digest(canonical.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        out.push(format!("{name}: {}", &hex[..16]));
    }
    out
}

fn train(out: &Path, extra: &[&str]) -> Vec<String> {
    let out_str = out.to_str().expect("utf-8 temp path");
    let mut args = vec!["train", "--out", out_str];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    let (code, _, stderr) = dyadsim(&args);
    assert_eq!(code, 0, "dyadsim {args:?} failed: {stderr}");
    digests(out)
}

fn check(name: &str, got: Vec<String>, pinned: &[&str]) {
    assert_eq!(
        got, pinned,
        "reference run `{name}` no longer gives the pinned bits (got left, pinned right)"
    );
}

#[test]
fn digital_adam_dpt_and_bp_keep_their_bits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dpt = train(
        &tmp.path().join("dpt"),
        &["--rule", "dpt", "--optimizer", "adam", "--epochs", "2"],
    );
    check(
        "digital adam dpt",
        dpt,
        &[
            "result.json: a29935cfa7f7bfb4",
            "parameters.json: e8611523b9320701",
            "run_state.json: 77bd560178f9039a",
        ],
    );
    let bp = train(
        &tmp.path().join("bp"),
        &["--rule", "bp", "--optimizer", "adam", "--epochs", "2"],
    );
    check(
        "digital adam bp",
        bp,
        &[
            "result.json: adf9017bcc204bf9",
            "parameters.json: 20a86a16ad69d644",
            "run_state.json: 25176b036e68ccd5",
        ],
    );
}

#[test]
fn reram_es_crossbar_dpt_and_bp_keep_their_bits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for rule in ["dpt", "bp"] {
        let got = train(
            &tmp.path().join(rule),
            &[
                "--rule",
                rule,
                "--substrate",
                "crossbar",
                "--device",
                "reram_es",
                "--set",
                "device.read_noise=0.02",
            ],
        );
        let pinned: &[&str] = match rule {
            "dpt" => &[
                "result.json: 9af2bcc6261f42bd",
                "parameters.json: d3ed4568b602acba",
                "device_state.json: 214159d535e29d87",
                "run_state.json: ae9979bdae012ab5",
            ],
            _ => &[
                "result.json: ce90b85dfdf09a03",
                "parameters.json: 47cdef4ea42cfa27",
                "device_state.json: ca038f008caaf1ce",
                "run_state.json: 8c575be0c448b49d",
            ],
        };
        check(&format!("reram_es {rule}"), got, pinned);
    }
}

#[test]
fn mixed_precision_pcm_with_drift_keeps_its_bits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let got = train(
        &tmp.path().join("pcm"),
        &[
            "--substrate",
            "crossbar",
            "--device",
            "pcm",
            // plain pulsed SGD, not the model's recommended ttv2
            "--algorithm",
            "sgd",
            "--write",
            "mixed_precision",
            "--set",
            "crossbar.lr=0.01",
            "--set",
            "crossbar.time_per_batch=1.0",
        ],
    );
    check(
        "mixed-precision pcm with drift",
        got,
        &[
            "result.json: ff7a65fb7ff1412f",
            "parameters.json: ee41f0d75042cc12",
            "device_state.json: 1521bd66fdfa6b19",
            "run_state.json: 257abc1433a88bf0",
        ],
    );
}

#[test]
fn ode_dynamics_keeps_its_bits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let digital = train(
        &tmp.path().join("ode"),
        &["--dynamics", "ode", "--set", "data.train_size=100"],
    );
    check(
        "ode digital",
        digital,
        &[
            "result.json: b4f8e6c969e0c240",
            "parameters.json: bb7c62cb9935c2e7",
            "run_state.json: 5dd80a4c62fae8f0",
        ],
    );
}

#[test]
fn a_resumed_run_keeps_its_bits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = tmp.path().join("first");
    let crossbar: &[&str] = &[
        "--substrate",
        "crossbar",
        "--device",
        "reram_es",
        "--epochs",
        "1",
    ];
    train(&first, crossbar);
    let first_str = first.to_str().expect("utf-8 temp path");
    let resumed = train(
        &tmp.path().join("resumed"),
        &["--resume", first_str, "--epochs", "1"],
    );
    check(
        "resumed reram_es",
        resumed,
        &[
            "result.json: 95e1440ef6595d77",
            "parameters.json: bb225fd6ff2b90c9",
            "device_state.json: 3b2d3b068d173930",
            "run_state.json: 8ecb1f3a48dab50a",
        ],
    );
}
