//! Crossbar training throughput (issue 3, "Speed").
//!
//! Training samples per second for a 784-256-128-10 network on `reram_es`
//! crossbars with stochastic pulse trains (BL 31, update management, aihwkit
//! preset periphery), batch 1 and batch 50, for BP (the rule aihwkit's
//! anchor figure trains with) and DP⊤ (fwbw:6, ≈6× the reads). The anchor:
//! IBM aihwkit 1.1's CPU simulator, ≈4,100–4,400 samples per CPU-second on
//! this machine (one thread, batch 64). Also: the pulsed update alone, and
//! the cost of read noise (one extra SGEMM).
//!
//! Run with `RAYON_NUM_THREADS=1 cargo bench --bench crossbar` for the
//! per-core figure.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dyadsim::data::{load_raw, Dataset};
use dyadsim::experiment::config::{Config, DatasetName};
use dyadsim::experiment::train::run;
use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::crossbar::{Crossbar, CrossbarConfig};
use dyadsim::substrate::{OuterProductGradient, WeightArray};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn dataset(train: usize) -> Dataset {
    let (tr, te) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    Dataset {
        name: DatasetName::Mnist,
        train: tr.truncated(train),
        validation: tr.truncated(0),
        test: te.truncated(1),
    }
}

/// `crossbar.lr` is per batch (the gradient carries 1/B); 0.1 at batch 50
/// and 0.002 at batch 1 give the same step per sample, i.e. the same
/// pulse load per sample.
fn config(rule: &str, batch: usize) -> dyadsim::experiment::ValidConfig {
    let mut c = Config::default();
    for s in [
        "network.arch=\"784-256-128-10\"".to_string(),
        format!("learning.rule=\"{rule}\""),
        "training.epochs=1".into(),
        format!("training.batch={batch}"),
        "training.substrate=\"crossbar\"".into(),
        "crossbar.device=\"reram_es\"".into(),
        "crossbar.write=\"stochastic\"".into(),
        format!("crossbar.lr={}", 0.1 * batch as f64 / 50.0),
        "data.validation_size=0".into(),
    ] {
        c.set(&s).expect("valid setting");
    }
    c.check().expect("valid configuration")
}

fn training(c: &mut Criterion) {
    let mut group = c.benchmark_group("crossbar_train_784-256-128-10_reram_es_stochastic");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    for rule in ["bp", "dpt"] {
        for batch in [1usize, 50] {
            let samples = if batch == 1 { 300 } else { 1000 };
            let data = dataset(samples);
            let cfg = config(rule, batch);
            group.throughput(Throughput::Elements(samples as u64));
            group.bench_with_input(
                BenchmarkId::new(rule, format!("batch{batch}")),
                &batch,
                |b, _| b.iter(|| run(&cfg, &data, &mut []).expect("training runs")),
            );
        }
    }
    group.finish();
}

fn update_and_reads(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n_out, n_in, batch) = (256, 784, 50);
    let data = dataset(batch);
    let mut x = Mat::zeros(0, 0);
    let mut y = Mat::zeros(0, 0);
    let idx: Vec<usize> = (0..batch).collect();
    data.train.batch(&idx, 10, &mut x, &mut y);
    let cfg = CrossbarConfig {
        device: "reram_es".into(),
        lr: 0.1,
        ..CrossbarConfig::default()
    };
    let w0 = Mat::from_fn(n_out, n_in, |_, _| (rng.gen::<f32>() - 0.5) * 0.1);
    let cfg = cfg.resolved_for(&w0, &Vector::zeros(n_out));
    let mut xbar = Crossbar::new(&cfg, &toml::Table::new(), n_out, n_in, 1).expect("crossbar");
    xbar.set_parameters(&w0, &Vector::zeros(n_out));
    // Error signals sized so that a sample asks for ~10³ pulse events on this
    // layer, as the first layer sees in the training runs above.
    let delta = Mat::from_fn(n_out, batch, |_, _| (rng.gen::<f32>() - 0.5) * 0.01);
    let grad = OuterProductGradient {
        left: delta,
        right: x.clone(),
        scale: -1.0 / batch as f32,
    };
    let mut group = c.benchmark_group("crossbar_784x256_batch50");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("stochastic_update", |b| {
        b.iter(|| xbar.apply_gradient(&grad))
    });
    let mut out = Mat::zeros(0, 0);
    group.bench_function("forward_read_no_read_noise", |b| {
        b.iter(|| xbar.forward(&x, &mut out))
    });
    let mut ov = toml::Table::new();
    ov.insert("read_noise".into(), toml::Value::Float(0.05));
    let mut noisy = Crossbar::new(&cfg, &ov, n_out, n_in, 1).expect("crossbar");
    noisy.set_parameters(&w0, &Vector::zeros(n_out));
    group.bench_function("forward_read_with_read_noise", |b| {
        b.iter(|| noisy.forward(&x, &mut out))
    });
    group.finish();
}

criterion_group!(benches, training, update_and_reads);
criterion_main!(benches);
