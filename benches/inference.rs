//! Inference after training (`dyadsim infer`): one evaluation of a saved
//! 784-256-128-10 run on `pcm` (TTv2, as `dyadsim train --device pcm`
//! trains it) at 4 times after programming (1 s, 1 h, 1 d, 1 y) on the
//! 10,000 MNIST test images, one seed — loading the run directory and the
//! data included, as the command does. The target is under 10 s.
//!
//! Run with `cargo bench --bench inference -- infer`.

use criterion::{criterion_group, criterion_main, Criterion};
use dyadsim::crossbar::WriteVerify;
use dyadsim::experiment::config::Config;
use dyadsim::experiment::infer::{infer, Compensation, InferSettings, Programming};
use dyadsim::experiment::run_dir::save_run;
use dyadsim::experiment::train::run;
use std::time::Duration;

/// Trains the run (one epoch on 500 images: the weights' values do not
/// change the cost of inference) and saves it into a temporary directory.
fn saved_run() -> std::path::PathBuf {
    let mut cfg = Config::default();
    for s in [
        "network.arch=\"784-256-128-10\"",
        "training.substrate=\"crossbar\"",
        "crossbar.device=\"pcm\"",
        "crossbar.algorithm=\"ttv2\"",
        "data.train_size=500",
        "training.epochs=1",
    ] {
        cfg.set(s).expect(s);
    }
    let cfg = cfg.check().expect("configuration");
    let data = dyadsim::data::load(&cfg.raw().data).expect("data");
    let output = run(&cfg, &data, &mut []).expect("training");
    let dir = std::env::temp_dir().join(format!("dyadsim-bench-infer-{}", std::process::id()));
    save_run(&dir, &cfg, &output, 0).expect("saving the run");
    dir
}

fn bench_infer(c: &mut Criterion) {
    let dir = saved_run();
    let mut group = c.benchmark_group("infer_784-256-128-10_pcm_4_times_10000_images");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for (name, program, compensation) in [
        ("keep_none", Programming::Keep, Compensation::None),
        ("fresh_global", Programming::Fresh, Compensation::Global),
        (
            "write_verify_global",
            Programming::WriteVerify,
            Compensation::Global,
        ),
    ] {
        let settings = InferSettings {
            times_s: vec![1.0, 3600.0, 86400.0, 31_536_000.0],
            programming: vec![program],
            compensation: vec![compensation],
            seeds: 1,
            seed: 1,
            write_verify: WriteVerify {
                tolerance: 0.02,
                max_iterations: 20,
            },
            test_size: None,
        };
        group.bench_function(name, |b| b.iter(|| infer(&dir, &settings).expect("infer")));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_infer);
criterion_main!(benches);
