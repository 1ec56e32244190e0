//! Shared helpers of the integration tests.
#![allow(dead_code)]

use dyadsim::data::{load_raw, Dataset, Split};
use dyadsim::experiment::config::{Config, DatasetName};
use dyadsim::experiment::train::run;
use dyadsim::experiment::RunResult;
use dyadsim::linalg::Mat;
use std::sync::OnceLock;

/// MNIST (train, test), loaded once per test binary.
pub fn mnist() -> &'static (Split, Split) {
    static DATA: OnceLock<(Split, Split)> = OnceLock::new();
    DATA.get_or_init(|| load_raw(DatasetName::Mnist, None).expect("embedded MNIST loads"))
}

/// A dataset with the first `train` training and `test` test images and no validation split.
pub fn mnist_subset(train: usize, test: usize) -> Dataset {
    let (tr, te) = mnist();
    Dataset {
        name: DatasetName::Mnist,
        train: tr.truncated(train),
        validation: tr.truncated(0),
        test: te.truncated(test),
    }
}

/// The first `n` MNIST training images as a batch (x: 784 × n, y: 10 × n one-hot).
pub fn mnist_batch(n: usize) -> (Mat, Mat) {
    let (tr, _) = mnist();
    let idx: Vec<usize> = (0..n).collect();
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    tr.batch(&idx, 10, &mut x, &mut y);
    (x, y)
}

/// A default configuration with the given tweaks applied through `--set` paths.
pub fn config(sets: &[&str]) -> Config {
    let mut c = Config::default();
    for s in sets {
        c.set(s).unwrap_or_else(|e| panic!("{s}: {e:#}"));
    }
    c
}

/// Trains a fresh network configured by `sets` on the first `train` MNIST
/// training images and evaluates it on the first `test` test images.
pub fn train_on_mnist(sets: &[&str], train: usize, test: usize) -> RunResult {
    let cfg = config(sets)
        .check()
        .unwrap_or_else(|e| panic!("{sets:?}: {e:#}"));
    run(&cfg, &mnist_subset(train, test), &mut [])
        .expect("training runs")
        .result
}

/// Runs the `dyadsim` binary: (exit code, stdout, stderr).
pub fn dyadsim(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dyadsim"))
        .args(args)
        .output()
        .expect("run dyadsim");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The result with its wall-clock fields zeroed, for reproducibility comparisons.
pub fn without_timing(mut r: RunResult) -> RunResult {
    r.samples_per_second = 0.0;
    r.wall_seconds = 0.0;
    for e in &mut r.epochs {
        e.samples_per_second = 0.0;
    }
    r
}
