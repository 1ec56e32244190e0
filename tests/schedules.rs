//! Pins the inference schedules to their definitions (DESIGN.md §1) on a
//! tiny chain network 1-1-1-1 computed by hand, independently of the
//! library's matrix code.

mod common;

use common::config;
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::{Mat, Vector};
use dyadsim::rules::learner::Learner;

const W: [f32; 3] = [0.8, 1.2, 0.7];
// b₂ puts layer 2 near the ReLU kink so the minus compartment clips: in the
// linear regime DP⊤'s mean s̄ = a would not depend on the feedback at all.
const B: [f32; 3] = [0.1, -1.03, 0.2];
const X: f32 = 1.0;
const Y: f32 = 2.0;

fn relu(v: f32) -> f32 {
    v.max(0.0)
}

/// Hand-written DP⊤ on the scalar chain with the fwbw:K schedule; returns
/// the three weight gradients −δ_k s̄_{k−1}/β.
fn reference_fwbw(rounds: usize, alpha: f32, beta: f32) -> [f32; 3] {
    let (cp, cm) = (1.0 - alpha, alpha);
    let mean = |p: f32, m: f32| alpha * p + (1.0 - alpha) * m;
    // forward init
    let mut a1 = W[0] * X + B[0];
    let (mut p1, mut m1) = (relu(a1), relu(a1));
    let mut a2 = W[1] * mean(p1, m1) + B[1];
    let (mut p2, mut m2) = (relu(a2), relu(a2));
    let nudge = |a3: f32| {
        let g = a3 - Y;
        (a3 - (1.0 - alpha) * beta * g, a3 + alpha * beta * g)
    };
    let (mut p3, mut m3) = nudge(W[2] * mean(p2, m2) + B[2]);
    let backward = |p1: &mut f32,
                    m1: &mut f32,
                    p2: &mut f32,
                    m2: &mut f32,
                    a1: f32,
                    a2: f32,
                    p3: f32,
                    m3: f32| {
        let fb2 = W[2] * (p3 - m3);
        *p2 = relu(a2 + cp * fb2);
        *m2 = relu(a2 - cm * fb2);
        let fb1 = W[1] * (*p2 - *m2);
        *p1 = relu(a1 + cp * fb1);
        *m1 = relu(a1 - cm * fb1);
    };
    for _ in 1..rounds {
        backward(&mut p1, &mut m1, &mut p2, &mut m2, a1, a2, p3, m3);
        // forward sweep k = 2..H (H = 2): recompute a2, update layer 2
        a2 = W[1] * mean(p1, m1) + B[1];
        let fb2 = W[2] * (p3 - m3);
        p2 = relu(a2 + cp * fb2);
        m2 = relu(a2 - cm * fb2);
        // recompute and re-nudge the output
        (p3, m3) = nudge(W[2] * mean(p2, m2) + B[2]);
        a1 = W[0] * X + B[0];
    }
    backward(&mut p1, &mut m1, &mut p2, &mut m2, a1, a2, p3, m3);
    [
        -(p1 - m1) * X / beta,
        -(p2 - m2) * mean(p1, m1) / beta,
        -(p3 - m3) * mean(p2, m2) / beta,
    ]
}

fn library_gradients(schedule: &str, alpha: f32, beta: f32) -> [f32; 3] {
    let cfg = config(&[
        "network.arch=\"1-1-1-1\"",
        &format!("learning.schedule=\"{schedule}\""),
        &format!("learning.alpha={alpha}"),
        &format!("learning.beta={beta}"),
    ])
    .check()
    .unwrap();
    let mut net = build_network(&cfg).unwrap();
    for (k, layer) in net.layers.iter_mut().enumerate() {
        layer.set_parameters(
            &Mat::from_element(1, 1, W[k]),
            &Vector::from_element(1, B[k]),
        );
    }
    let mut learner = Learner::new(cfg.learning());
    let out = learner.step(
        &mut net,
        &Mat::from_element(1, 1, X),
        &Mat::from_element(1, 1, Y),
        None,
    );
    let g: Vec<f32> = out
        .gradients
        .iter()
        .map(|g| g.weight_gradient()[(0, 0)])
        .collect();
    [g[0], g[1], g[2]]
}

#[test]
fn fwbw_schedule_matches_hand_computation() {
    for rounds in [1, 2, 3, 6] {
        for alpha in [0.0, 0.3, 1.0] {
            let expected = reference_fwbw(rounds, alpha, 0.5);
            let got = library_gradients(&format!("fwbw:{rounds}"), alpha, 0.5);
            for k in 0..3 {
                assert!(
                    (expected[k] - got[k]).abs() < 1e-5,
                    "fwbw:{rounds} α={alpha} layer {}: hand {} vs library {}",
                    k + 1,
                    expected[k],
                    got[k]
                );
            }
        }
    }
}

#[test]
fn fwbw_one_round_differs_from_more_rounds_under_strong_feedback() {
    // A sanity check that the hand reference is not trivially constant.
    let one = reference_fwbw(1, 0.3, 0.5);
    let two = reference_fwbw(2, 0.3, 0.5);
    assert!((one[0] - two[0]).abs() > 1e-6 || (one[1] - two[1]).abs() > 1e-6);
}

#[test]
fn all_schedules_reach_the_same_fixed_point_for_dpt() {
    // Converged schedules must agree: they only order the same fixed-point equations.
    let a = library_gradients("fwbw:60", 0.3, 0.5);
    let b = library_gradients("jacobi:200", 0.3, 0.5);
    let c = library_gradients("forward:100", 0.3, 0.5);
    for k in 0..3 {
        assert!(
            (a[k] - b[k]).abs() < 1e-5 && (a[k] - c[k]).abs() < 1e-5,
            "layer {}: {a:?} {b:?} {c:?}",
            k + 1
        );
    }
}
