//! Asymmetric nudging and loop gain in continuous time (issue "Dyadic neuron
//! circuit", DESIGN.md §3), on 784-256×4-10 at initialisation
//! (W ~ N(0, 1/fan_in), b = 0), β = ½, the first 50 MNIST training images.
//!
//! Reference facts (from an independent reference simulation, quoted in the
//! issue): DP⊤ settles for α ∈ {0, ½, 1} in about 16 τ; DP with α = 0 in
//! every layer runs away; DP with α = ½ settles. With every weight doubled
//! (per-layer gain like a trained net's) DP⊤ with α = ½ runs away, in
//! continuous time and in `jacobi`, while α ∈ {0, 1} still settles: for
//! those the mean path s̄ ignores the feedback, so the circuit is a cascade.

mod common;

use common::{config, mnist_batch};
use dyadsim::circuit::{
    AmplifierConfig, CircuitConfig, CircuitSettler, DivergenceReason, SettleReport, SettleStatus,
};
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::Mat;
use dyadsim::network::Network;
use dyadsim::rules::dual::{DualInference, DualParams, DualState};
use dyadsim::rules::Schedule;

/// The 784-256×4-10 network at initialisation (seed 1) with every weight × `scale`.
fn network(rule: &str, alpha: f32, scale: f32) -> (Network, DualParams) {
    let cfg = config(&[
        "network.arch=\"784-256x4-10\"",
        &format!("learning.rule=\"{rule}\""),
        &format!("learning.alpha={alpha}"),
        "learning.beta=0.5",
        "seed=1",
    ])
    .check()
    .unwrap();
    let mut net = build_network(&cfg).unwrap();
    if scale != 1.0 {
        for layer in net.layers.iter_mut() {
            let (w, b) = (layer.weights() * scale, layer.bias());
            layer.set_parameters(&w, &b);
        }
    }
    (net, cfg.learning().dual().cloned().unwrap())
}

/// Runs `f` on the dual inference of that network, started from the
/// forward pass of `x` with the output nudged towards `y`.
fn with_initial_state<R>(
    rule: &str,
    alpha: f32,
    scale: f32,
    x: &Mat,
    y: &Mat,
    f: impl FnOnce(&mut DualInference) -> R,
) -> R {
    let (mut net, params) = network(rule, alpha, scale);
    let mut state = DualState::default();
    let mut inf = DualInference {
        params: &params,
        net: &mut net,
        state: &mut state,
    };
    inf.forward_init(x, y);
    f(&mut inf)
}

fn settle(rule: &str, alpha: f32, scale: f32, x: &Mat, y: &Mat) -> SettleReport {
    settle_with(&CircuitConfig::default(), rule, alpha, scale, x, y)
}

fn settle_with(
    circuit: &CircuitConfig,
    rule: &str,
    alpha: f32,
    scale: f32,
    x: &Mat,
    y: &Mat,
) -> SettleReport {
    let report = with_initial_state(rule, alpha, scale, x, y, |inf| {
        let mut settler = CircuitSettler::new(&circuit.check().unwrap()).unwrap();
        settler.settle_observed(inf, y, |_, _, _| {}).0
    });
    println!("{rule} α={alpha} ×{scale}: {report:?}");
    report
}

/// max |s±| after `iterations` synchronous (Jacobi) sweeps.
fn jacobi_max_state(
    rule: &str,
    alpha: f32,
    scale: f32,
    x: &Mat,
    y: &Mat,
    iterations: usize,
) -> f32 {
    let (m, change) = with_initial_state(rule, alpha, scale, x, y, |inf| {
        let change = inf.run_schedule(Schedule::Jacobi { iterations }, y);
        (inf.report(change).max_state(), change)
    });
    println!("jacobi:{iterations} {rule} α={alpha} ×{scale}: max|s| {m}, last change {change}");
    m
}

#[test]
fn dpt_settles_for_every_alpha_and_dp_runs_away_unless_symmetric() {
    let (x, y) = mnist_batch(50);
    for alpha in [0.0, 0.5, 1.0] {
        let r = settle("dpt", alpha, 1.0, &x, &y);
        assert_eq!(r.status, SettleStatus::Settled, "DP⊤ α = {alpha}: {r:?}");
        assert!(
            r.settle_time > 5.0 && r.settle_time < 30.0,
            "DP⊤ α = {alpha}: settle time {} τ (reference ≈ 16 τ)",
            r.settle_time
        );
    }
    let r = settle("dp", 0.0, 1.0, &x, &y);
    assert_eq!(r.status, SettleStatus::Diverged, "DP α = 0: {r:?}");
    let r = settle("dp", 0.5, 1.0, &x, &y);
    assert_eq!(r.status, SettleStatus::Settled, "DP α = ½: {r:?}");
}

#[test]
fn doubled_weights_make_the_symmetric_dpt_loop_run_away_but_not_the_cascades() {
    let (x, y) = mnist_batch(50);
    let r = settle("dpt", 0.5, 2.0, &x, &y);
    assert_eq!(r.status, SettleStatus::Diverged, "DP⊤ α = ½, W×2: {r:?}");
    let runaway = jacobi_max_state("dpt", 0.5, 2.0, &x, &y, 200);
    let reference = jacobi_max_state("dpt", 0.5, 1.0, &x, &y, 200);
    assert!(
        !runaway.is_finite() || runaway > 100.0 * reference,
        "jacobi must run away too: {runaway} vs {reference} at W×1"
    );
    // With amplifier rails the runaway is caught by the rails instead: the
    // circuit comes to rest only because its feedback amplifiers saturate.
    let railed = CircuitConfig {
        amplifier: AmplifierConfig {
            rail: Some(1.0),
            ..AmplifierConfig::default()
        },
        ..CircuitConfig::default()
    };
    let r = settle_with(&railed, "dpt", 0.5, 2.0, &x, &y);
    assert_eq!(r.status, SettleStatus::Diverged, "{r:?}");
    assert_eq!(r.divergence.unwrap().reason, DivergenceReason::RailBound);
    for alpha in [0.0, 1.0] {
        let r = settle("dpt", alpha, 2.0, &x, &y);
        assert_eq!(
            r.status,
            SettleStatus::Settled,
            "DP⊤ α = {alpha}, W×2: {r:?}"
        );
    }
}
