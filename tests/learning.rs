//! End-to-end learning on MNIST: DP⊤ and BP reach ≥ 90 % after one epoch
//! on 10,000 images with a 784-128-10 net; seeded runs are reproducible.

mod common;

use common::{train_on_mnist, without_timing};
use dyadsim::experiment::RunResult;

fn train(rule: &str, seed: u64) -> RunResult {
    train_on_mnist(
        &[
            "network.arch=\"784-128-10\"",
            &format!("learning.rule=\"{rule}\""),
            "learning.alpha=0.5",
            "training.epochs=1",
            &format!("seed={seed}"),
        ],
        10_000,
        10_000,
    )
}

#[test]
fn dpt_and_bp_learn_mnist_in_one_epoch() {
    for rule in ["dpt", "bp"] {
        let r = train(rule, 1);
        let acc = r.test_accuracy.unwrap();
        assert!(acc >= 0.90, "{rule}: test accuracy {acc}");
        assert!(r.lipschitz.unwrap() > 0.0);
        assert_eq!(r.epochs.len(), 1);
    }
}

#[test]
fn seeded_runs_are_reproducible_and_seeds_matter() {
    let a = without_timing(train("dpt", 7));
    let b = without_timing(train("dpt", 7));
    assert_eq!(a, b);
    let c = without_timing(train("dpt", 8));
    assert_ne!(a.train_loss, c.train_loss);
}
