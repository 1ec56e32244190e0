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
    assert_eq!(hw["layers"].as_array().unwrap().len(), 2);
    assert!(hw["total"]["pulses_applied"].as_u64().unwrap() > 100_000);
    // A seeded run is reproducible.
    assert_eq!(without_timing(r), without_timing(on_chip(1)));
}
