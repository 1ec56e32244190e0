//! A device model's recommended crossbar settings (`[recommended]` in its
//! file; issue 23, item 4): applied unless the run sets the field, and
//! recorded with where every value came from.

mod common;

use common::dyadsim;
use dyadsim::devices::{builtin_names, DeviceModel};
use dyadsim::experiment::config::Config;
use std::path::Path;

const SMALL: &[&str] = &[
    "--quiet",
    "--arch",
    "784-8-10",
    "--epochs",
    "1",
    "--train-size",
    "40",
    "--test-size",
    "20",
    "--set",
    "data.validation_size=0",
];

fn train(out: &Path, extra: &[&str]) -> (String, Config) {
    let mut args = vec!["train", "--out", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    let (code, _, stderr) = dyadsim(&args);
    assert_eq!(code, 0, "dyadsim {args:?}: {stderr}");
    let cfg = Config::from_file(&out.join("config.toml")).expect("the run's config.toml");
    (stderr, cfg)
}

#[test]
fn a_recommended_setting_applies_unless_the_run_sets_it_and_its_source_is_recorded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recommended = "device model device_models/pcm.toml (built in), recommended";
    // nothing given: pcm's ttv2 applies, and the run says so
    let (_, cfg) = train(&tmp.path().join("a"), &["--device", "pcm"]);
    assert_eq!(cfg.crossbar.algorithm.to_string(), "ttv2");
    assert_eq!(cfg.sources["crossbar.algorithm"], recommended);
    let mut args = vec!["train", "--device", "pcm"];
    args.extend_from_slice(&SMALL[1..]); // without --quiet
    let (code, _, stderr) = dyadsim(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("crossbar.algorithm = \"ttv2\", recommended by the device model"),
        "{stderr}"
    );
    // a flag wins and is named
    let (stderr, cfg) = train(
        &tmp.path().join("b"),
        &["--device", "pcm", "--algorithm", "sgd", "--rule", "bp"],
    );
    assert_eq!(cfg.crossbar.algorithm.to_string(), "sgd");
    assert_eq!(cfg.sources["crossbar.algorithm"], "--algorithm sgd");
    assert!(!stderr.contains("recommended"), "{stderr}");
    // so does --set
    let (_, cfg) = train(
        &tmp.path().join("c"),
        &["--device", "pcm", "--set", "crossbar.algorithm=\"cttv2\""],
    );
    assert_eq!(cfg.crossbar.algorithm.to_string(), "cttv2");
    assert_eq!(
        cfg.sources["crossbar.algorithm"],
        "--set 'crossbar.algorithm=\"cttv2\"'"
    );
    // and a configuration file
    let file = tmp.path().join("run.toml");
    std::fs::write(
        &file,
        "[training]\nsubstrate = \"crossbar\"\n[crossbar]\ndevice = \"pcm\"\nalgorithm = \"agad\"\n",
    )
    .unwrap();
    let (_, cfg) = train(&tmp.path().join("d"), &["--config", file.to_str().unwrap()]);
    assert_eq!(cfg.crossbar.algorithm.to_string(), "agad");
    assert_eq!(
        cfg.sources["crossbar.algorithm"],
        format!("config file {}", file.display())
    );
    // a resumed run keeps the recorded source of its configuration
    let a = tmp.path().join("a");
    let (_, cfg) = train(&tmp.path().join("e"), &["--resume", a.to_str().unwrap()]);
    assert_eq!(cfg.crossbar.algorithm.to_string(), "ttv2");
    assert_eq!(cfg.sources["crossbar.algorithm"], recommended);
    // a model without recommendations records nothing
    let (_, cfg) = train(&tmp.path().join("f"), &["--device", "reram_es"]);
    assert!(cfg.sources.is_empty(), "{:?}", cfg.sources);
}

/// Every shipped model's recommended settings are crossbar fields the
/// configuration check accepts, and they change the configuration (a
/// recommendation that equals the default would record a source for
/// nothing).
#[test]
fn every_shipped_recommendation_is_a_valid_crossbar_setting() {
    let mut with = Vec::new();
    for name in builtin_names() {
        let model = DeviceModel::load(name, &toml::Table::new()).expect("shipped model");
        let mut cfg = Config::default();
        cfg.set("training.substrate=\"crossbar\"").unwrap();
        cfg.set(&format!("crossbar.device=\"{name}\"")).unwrap();
        let before = cfg.clone();
        cfg.apply_recommended(&|_| None)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let Some(rec) = &model.recommended else {
            assert_eq!(cfg, before, "{name}");
            continue;
        };
        assert!(
            !rec.source.is_empty(),
            "{name}: say how the settings were found"
        );
        let mut plain = cfg.clone();
        plain.sources.clear();
        assert_ne!(plain, before, "{name}: the recommendation changes nothing");
        assert_eq!(cfg.sources.len(), rec.settings().len(), "{name}");
        cfg.check().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        with.push(name);
    }
    assert_eq!(with, ["ideal", "pcm", "reram_array_om"]);
}

/// A model file whose recommendation is not a crossbar setting is refused,
/// naming the file and the key.
#[test]
fn a_bad_recommendation_names_the_file_and_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = DeviceModel::source_text("reram_es").unwrap().1;
    for (bad, named) in [
        ("crossbar = { algoritm = \"ttv2\" }", "crossbar.algoritm"),
        ("crossbar = { algorithm = \"tt\" }", "crossbar.algorithm"),
        ("crossbar = { lr = -1 }", "crossbar.lr"),
    ] {
        let path = tmp.path().join("mine.toml");
        std::fs::write(
            &path,
            format!("{text}\n[recommended]\nsource = \"test\"\n{bad}\n"),
        )
        .unwrap();
        let mut args = vec!["train", "--device", path.to_str().unwrap()];
        args.extend_from_slice(SMALL);
        let (code, _, stderr) = dyadsim(&args);
        assert_ne!(code, 0);
        assert!(
            stderr.contains("mine.toml") && stderr.contains(named) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // and [recommended] without a source is refused by the model file check
    let path = tmp.path().join("nosource.toml");
    std::fs::write(
        &path,
        format!("{text}\n[recommended]\ncrossbar = {{ lr = 0.05 }}\n"),
    )
    .unwrap();
    let (code, _, stderr) = dyadsim(&["devices", "show", path.to_str().unwrap(), "--no-plot"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("source"), "{stderr}");
}
