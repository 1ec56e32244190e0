//! Training throughput of the digital core: samples/second of one training
//! step (inference + local gradient + Adam update) for DP⊤ and BP on
//! 784-512-512-10, batch 50, `fwbw:1` — the speed target is one
//! MNIST epoch (50,000 images) of DP⊤ in ≤ 6 s, and DP⊤ ≤ 1.3× BP.
//!
//! Run with `cargo bench --bench training`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dyadsim::data::load_raw;
use dyadsim::experiment::config::{Config, DatasetName};
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::Mat;
use dyadsim::rules::learner::Learner;

fn bench_training_step(c: &mut Criterion) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let batch = 50;
    let idx: Vec<usize> = (0..batch).collect();
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    train.batch(&idx, 10, &mut x, &mut y);
    let mut group = c.benchmark_group("train_step_784-512-512-10_b50");
    group.throughput(Throughput::Elements(batch as u64));
    for rule in ["dpt", "bp"] {
        let mut cfg = Config::default();
        cfg.set(&format!("learning.rule=\"{rule}\"")).unwrap();
        cfg.set("learning.schedule=\"fwbw:1\"").unwrap();
        let cfg = cfg.check().unwrap();
        let mut net = build_network(&cfg).unwrap();
        let mut learner = Learner::new(cfg.learning());
        group.bench_function(rule, |b| {
            b.iter(|| {
                let out = learner.step(&mut net, &x, &y, None);
                for (layer, g) in net.layers.iter_mut().zip(&out.gradients) {
                    layer.apply_gradient(g);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_training_step);
criterion_main!(benches);
