//! Training through the continuous-time circuit (`training.dynamics = "ode"`):
//! with ideal amplifiers it learns as well as the discrete schedule; gain
//! mismatch changes the outcome, reproducibly for a given seed.

mod common;

use common::{config, mnist_subset};
use dyadsim::experiment::result::RunStatus;
use dyadsim::experiment::train::run;
use dyadsim::experiment::RunResult;

const TRAIN: usize = 3000;
const TEST: usize = 2000;

fn train(extra: &[&str]) -> RunResult {
    let mut sets = vec![
        "network.arch=\"784-128-10\"",
        "learning.rule=\"dpt\"",
        "learning.alpha=0.5",
        "learning.beta=0.5",
        "training.epochs=1",
        "training.batch=50",
        "seed=3",
    ];
    sets.extend_from_slice(extra);
    let cfg = config(&sets).check().unwrap();
    let data = mnist_subset(TRAIN, TEST);
    let result = run(&cfg, &data, &mut []).unwrap().result;
    println!(
        "{extra:?}: acc {:?}, loss {:?}, settle mean {:?} max {:?} steps {:?}, {:.0} samples/s",
        result.test_accuracy,
        result.train_loss,
        result.epochs[0].settle_time_mean,
        result.epochs[0].settle_time_max,
        result.epochs[0].settle_steps_mean,
        result.samples_per_second
    );
    result
}

#[test]
fn ideal_circuit_learns_like_the_discrete_schedule_and_mismatch_is_reproducible() {
    let discrete = train(&["learning.schedule=\"fwbw:6\""]);
    let ode = train(&["training.dynamics=\"ode\""]);
    assert_eq!(ode.status, RunStatus::Ok, "{:?}", ode.diverged_at);
    let (a_disc, a_ode) = (discrete.test_accuracy.unwrap(), ode.test_accuracy.unwrap());
    assert!(a_disc > 0.8, "the discrete run must learn: {a_disc}");
    assert!(
        (a_disc - a_ode).abs() <= 0.005,
        "ideal circuit {a_ode} vs discrete {a_disc}: more than 0.5 points apart"
    );
    let epoch = &ode.epochs[0];
    let (mean, max) = (
        epoch.settle_time_mean.unwrap(),
        epoch.settle_time_max.unwrap(),
    );
    assert!(mean > 0.0 && mean <= max && max < 50.0, "{mean} {max}");
    assert!(epoch.settle_steps_mean.unwrap() >= 1.0);
    assert!(discrete.epochs[0].settle_time_mean.is_none());

    // Gain mismatch σ = 0.2: a different chip, a different run — the same one for the same seed.
    let mismatched = [
        "training.dynamics=\"ode\"",
        "circuit.amplifier.gain_mismatch=0.2",
    ];
    let m1 = train(&mismatched);
    let m2 = train(&mismatched);
    assert_eq!(m1.status, RunStatus::Ok);
    assert_eq!(m1.train_loss, m2.train_loss);
    assert_eq!(m1.test_accuracy, m2.test_accuracy);
    assert_eq!(m1.epochs[0].settle_time_mean, m2.epochs[0].settle_time_mean);
    assert_ne!(m1.train_loss, ode.train_loss, "σ = 0.2 must change the run");
    assert_ne!(
        m1.epochs[0].settle_time_mean,
        ode.epochs[0].settle_time_mean
    );
    let other_chip = train(&[
        "training.dynamics=\"ode\"",
        "circuit.amplifier.gain_mismatch=0.2",
        "circuit.amplifier.seed=9",
    ]);
    assert_ne!(
        other_chip.train_loss, m1.train_loss,
        "the seed picks the chip"
    );
}
