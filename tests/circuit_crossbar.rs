//! The circuit runs unchanged on the crossbar substrate: with ideal devices
//! and periphery it settles where the digital network does; with read noise
//! the noise enters the dynamics through the re-reads (DESIGN.md §2, §3).

mod common;

use common::{config, mnist_batch};
use dyadsim::circuit::{CircuitConfig, CircuitSettler, IntegratorKind, SettleReport, SettleStatus};
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::Mat;
use dyadsim::rules::dual::{DualInference, DualState};

const IDEAL_PERIPHERY: [&str; 5] = [
    "crossbar.write=\"exact\"",
    "crossbar.dac_bits=0",
    "crossbar.adc_bits=0",
    "crossbar.adc_range=0",
    "crossbar.output_noise=0",
];

/// Settles 784-64-10 at initialisation on the first 20 MNIST images.
fn settle(extra: &[&str], circuit: &CircuitConfig) -> (SettleReport, DualState) {
    let mut sets = vec!["network.arch=\"784-64-10\"", "seed=4"];
    sets.extend_from_slice(extra);
    let cfg = config(&sets).check().unwrap();
    let mut net = build_network(&cfg).unwrap();
    let params = cfg.learning().dual().cloned().unwrap();
    let (x, y): (Mat, Mat) = mnist_batch(20);
    let mut state = DualState::default();
    let mut inf = DualInference {
        params: &params,
        net: &mut net,
        state: &mut state,
    };
    inf.forward_init(&x, &y);
    let mut settler = CircuitSettler::new(&circuit.check().unwrap()).unwrap();
    let (report, _) = settler.settle_observed(&mut inf, &y, |_, _, _| {});
    (report, state)
}

fn max_difference(a: &DualState, b: &DualState) -> f32 {
    (0..a.plus.len())
        .map(|k| {
            (&a.plus[k] - &b.plus[k])
                .amax()
                .max((&a.minus[k] - &b.minus[k]).amax())
        })
        .fold(0.0, f32::max)
}

#[test]
fn ideal_crossbar_settles_where_the_digital_network_does() {
    let circuit = CircuitConfig::default();
    let (digital, d) = settle(&[], &circuit);
    let mut sets = vec![
        "training.substrate=\"crossbar\"",
        "crossbar.device=\"ideal\"",
    ];
    sets.extend_from_slice(&IDEAL_PERIPHERY);
    let (crossbar, c) = settle(&sets, &circuit);
    assert_eq!(digital.status, SettleStatus::Settled);
    assert_eq!(crossbar.status, SettleStatus::Settled);
    let diff = max_difference(&d, &c);
    assert!(diff < 1e-3, "ideal crossbar vs digital: {diff:e}");
}

#[test]
fn read_noise_enters_the_dynamics_through_the_rereads() {
    // Fixed-step Euler: fresh read noise at every evaluation (dt plays t_read/τ).
    let circuit = CircuitConfig {
        integrator: IntegratorKind::Euler,
        dt: 0.1,
        t_max: 20.0,
        ..CircuitConfig::default()
    };
    let (_, clean) = settle(&[], &circuit);
    let mut sets = vec![
        "training.substrate=\"crossbar\"",
        "crossbar.device=\"ideal\"",
        "device.read_noise=0.05",
    ];
    sets.extend_from_slice(&IDEAL_PERIPHERY);
    let (noisy, n) = settle(&sets, &circuit);
    // ‖dv/dt‖ cannot fall below the read-noise floor: the circuit is sampled at t_max.
    assert_eq!(noisy.status, SettleStatus::NotSettled, "{noisy:?}");
    assert!(noisy.residual > 1e-3, "{noisy:?}");
    let diff = max_difference(&clean, &n);
    println!(
        "read noise 5 %: residual {:.3e}, max |Δs| {diff:.3e}",
        noisy.residual
    );
    assert!(
        diff > 1e-4 && diff < 0.5,
        "noisy vs clean settled state: {diff:e}"
    );
}
