//! On-chip training through the core's training loop (issue 3).

mod common;

use common::{config, mnist_subset, train_on_mnist, without_timing};
use dyadsim::experiment::train::run;
use dyadsim::experiment::RunResult;

#[test]
fn ideal_devices_with_exact_writes_reproduce_digital_sgd_runs() {
    let common_sets = [
        "network.arch=\"784-32-10\"",
        "learning.rule=\"dpt\"",
        "training.epochs=1",
        "training.batch=20",
        "seed=4",
    ];
    let mut digital: Vec<&str> = common_sets.to_vec();
    digital.extend(["optimizer.kind=\"sgd\"", "optimizer.lr=0.05"]);
    let mut xbar: Vec<&str> = common_sets.to_vec();
    xbar.extend([
        "training.substrate=\"crossbar\"",
        "crossbar.device=\"ideal\"",
        "crossbar.write=\"exact\"",
        "crossbar.update=\"per_batch\"",
        "crossbar.lr=0.05",
        "crossbar.dac_bits=0",
        "crossbar.adc_bits=0",
        "crossbar.adc_range=0",
        "crossbar.output_noise=0",
    ]);
    let data = mnist_subset(2000, 1000);
    let d = run(&config(&digital).check().unwrap(), &data, &mut []).unwrap();
    let x = run(&config(&xbar).check().unwrap(), &data, &mut []).unwrap();
    for (a, b) in d.network.layers.iter().zip(&x.network.layers) {
        assert_eq!(a.weights(), b.weights(), "weights differ");
        assert_eq!(a.bias(), b.bias(), "biases differ");
    }
    let mut dr = without_timing(d.result);
    let mut xr = without_timing(x.result);
    assert!(xr.hardware.is_some());
    dr.hardware = None;
    xr.hardware = None;
    assert_eq!(dr, xr);
    assert!(dr.test_accuracy.unwrap() > 0.7, "the reference run learns");
}

fn on_chip(seed: u64) -> RunResult {
    train_on_mnist(
        &[
            "network.arch=\"784-128-10\"",
            "learning.rule=\"dpt\"",
            "learning.alpha=0.5",
            "training.epochs=1",
            "training.substrate=\"crossbar\"",
            "crossbar.device=\"constant_step\"",
            "crossbar.write=\"stochastic\"",
            "crossbar.lr=0.2",
            &format!("seed={seed}"),
        ],
        10_000,
        10_000,
    )
}

#[test]
fn dpt_trains_on_constant_step_crossbars_with_stochastic_pulses() {
    let r = on_chip(1);
    let acc = r.test_accuracy.unwrap();
    assert!(acc >= 0.85, "on-chip DP⊤ test accuracy {acc}");
    let hw = r.hardware.as_ref().unwrap();
    assert_eq!(hw.layers.len(), 2);
    assert!(hw.total.pulses_applied > 100_000);
    // A seeded run is reproducible.
    assert_eq!(without_timing(r), without_timing(on_chip(1)));
}

/// A cloned network and learner continue exactly as the originals: the
/// benchmarks time the same training work again and again from one cloned
/// state, which is only the same work if the clone carries every device,
/// random stream and cache along.
#[test]
fn a_cloned_crossbar_network_continues_exactly_as_the_original() {
    use dyadsim::experiment::train::build_network;
    use dyadsim::rules::learner::Learner;
    let cfg = config(&[
        "network.arch=\"784-32-10\"",
        "training.substrate=\"crossbar\"",
        "crossbar.device=\"reram_es\"",
        "crossbar.lr=0.1",
        "training.batch=16",
    ])
    .check()
    .expect("valid configuration");
    let (x, y) = common::mnist_batch(64);
    let batches: Vec<(dyadsim::linalg::Mat, dyadsim::linalg::Mat)> = (0..4)
        .map(|k| {
            let cols = k * 16..(k + 1) * 16;
            (
                x.columns(cols.start, 16).into_owned(),
                y.columns(cols.start, 16).into_owned(),
            )
        })
        .collect();
    let train = |net: &mut dyadsim::network::Network, learner: &mut Learner| {
        for (xb, yb) in &batches {
            let out = learner.step(net, xb, yb, None);
            for (layer, g) in net.layers.iter_mut().zip(&out.gradients) {
                layer.apply_gradient(g);
            }
        }
    };
    let mut net = build_network(&cfg).expect("network");
    let mut learner = Learner::new(cfg.learning());
    train(&mut net, &mut learner);
    let (mut twin, mut twin_learner) = (net.clone(), learner.clone());
    train(&mut net, &mut learner);
    train(&mut twin, &mut twin_learner);
    for (a, b) in net.layers.iter().zip(&twin.layers) {
        assert_eq!(a.weights(), b.weights());
        assert_eq!(a.device_state(), b.device_state());
        assert_eq!(a.continuation_state(), b.continuation_state());
        assert_eq!(a.hardware_stats(), b.hardware_stats());
    }
    // And the work was not trivial: training moved the weights.
    let fresh = build_network(&cfg).expect("network");
    assert_ne!(fresh.layers[0].weights(), net.layers[0].weights());
}
