//! The rules' gradients against independent references: finite differences
//! for BP, and BP for DP/DP⊤ as β → 0 (DESIGN.md §1: "the first test of any
//! implementation").

mod common;

use common::{config, mnist_batch};
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::Mat;
use dyadsim::metrics::gradient_angle;
use dyadsim::rules::backprop::backprop;
use dyadsim::rules::learner::Learner;

fn angle_for(sets: &[&str]) -> f64 {
    let cfg = config(sets).check().unwrap();
    let mut net = build_network(&cfg).unwrap();
    let mut learner = Learner::new(cfg.learning());
    let (x, y) = mnist_batch(50);
    gradient_angle(&mut net, &mut learner, &x, &y).angle_deg
}

#[test]
fn dual_gradients_approach_backprop_as_beta_vanishes() {
    let cases: [(&str, &str); 4] = [("dpt", "0"), ("dpt", "0.5"), ("dpt", "1"), ("dp", "0.5")];
    for (rule, alpha) in cases {
        let mut angles = Vec::new();
        for beta in ["0.001", "0.1", "1.0"] {
            let rule_set = format!("learning.rule=\"{rule}\"");
            let alpha_set = format!("learning.alpha={alpha}");
            let beta_set = format!("learning.beta={beta}");
            let a = angle_for(&[
                "network.arch=\"784-64-64-10\"",
                &rule_set,
                &alpha_set,
                &beta_set,
                "learning.schedule=\"fwbw:6\"",
                "seed=3",
            ]);
            angles.push(a);
        }
        assert!(
            angles[0] < 1.0,
            "{rule} α={alpha}: angle {:.4}° at β=1e-3 should be < 1°",
            angles[0]
        );
        assert!(
            angles[0] < angles[1] && angles[1] < angles[2],
            "{rule} α={alpha}: angle should grow with β, got {angles:?}"
        );
    }
}

#[test]
fn backprop_gradient_matches_central_finite_differences() {
    let cases = [("mse", "tanh"), ("ce", "tanh"), ("ce", "sigmoid")];
    for (loss, activation) in cases {
        let loss_set = format!("network.loss=\"{loss}\"");
        let activation_set = format!("network.activation=\"{activation}\"");
        let cfg = config(&[
            "network.arch=\"784-12-9-10\"",
            &activation_set,
            &loss_set,
            "seed=5",
        ])
        .check()
        .unwrap();
        let mut net = build_network(&cfg).unwrap();
        let (x, y) = mnist_batch(8);
        let analytic = backprop(&mut net, &x, &y).gradients;
        let batch = x.ncols() as f64;
        let h = 1e-2f32;
        // Probe a few weights and biases of every layer.
        for (k, layer_gradient) in analytic.iter().enumerate() {
            let w0 = net.layers[k].weights();
            let b0 = net.layers[k].bias();
            let gw = layer_gradient.weight_gradient();
            let gb = layer_gradient.bias_gradient();
            let probes = [(0usize, 0usize), (1, 3), (w0.nrows() - 1, w0.ncols() / 2)];
            for &(i, j) in &probes {
                let mut numeric = 0.0f64;
                for sign in [1.0f32, -1.0] {
                    let mut w = w0.clone();
                    w[(i, j)] += sign * h;
                    net.layers[k].set_parameters(&w, &b0);
                    let out = net.predict(&x);
                    numeric += sign as f64 * net.loss.total(&out, &y) / batch;
                }
                net.layers[k].set_parameters(&w0, &b0);
                numeric /= 2.0 * h as f64;
                let a = gw[(i, j)] as f64;
                assert!(
                    (a - numeric).abs() <= 2e-3 * numeric.abs().max(1e-2),
                    "{loss}/{activation} layer {} w[{i},{j}]: analytic {a} vs numeric {numeric}",
                    k + 1
                );
            }
            let i = b0.len() / 2;
            let mut numeric = 0.0f64;
            for sign in [1.0f32, -1.0] {
                let mut b = b0.clone();
                b[i] += sign * h;
                net.layers[k].set_parameters(&w0, &b);
                let out = net.predict(&x);
                numeric += sign as f64 * net.loss.total(&out, &y) / batch;
            }
            net.layers[k].set_parameters(&w0, &b0);
            numeric /= 2.0 * h as f64;
            assert!(
                (gb[i] as f64 - numeric).abs() <= 2e-3 * numeric.abs().max(1e-2),
                "{loss}/{activation} layer {} b[{i}]: analytic {} vs numeric {numeric}",
                k + 1,
                gb[i]
            );
        }
    }
}

#[test]
fn dpt_output_gradient_is_exactly_bp_for_alpha_zero_or_one_at_any_beta() {
    // For α ∈ {0, 1} the DP⊤ mean s̄ = f(a) does not depend on the feedback
    // (the mean path is a cascade), and δ_L = −βg exactly, so the output
    // layer's local gradient equals BP's at every β — while the hidden
    // layers' gradients differ at large β.
    for alpha in ["0", "1"] {
        let alpha_set = format!("learning.alpha={alpha}");
        let cfg = config(&[
            "network.arch=\"784-32-32-10\"",
            "learning.beta=0.7",
            &alpha_set,
        ])
        .check()
        .unwrap();
        let mut net = build_network(&cfg).unwrap();
        let mut learner = Learner::new(cfg.learning());
        let (x, y) = mnist_batch(20);
        let rule = learner.step(&mut net, &x, &y, None).gradients;
        let reference = backprop(&mut net, &x, &y).gradients;
        let out: Mat = rule[2].weight_gradient() - reference[2].weight_gradient();
        assert!(
            out.amax() < 1e-5,
            "α={alpha}: output layer differs by {}",
            out.amax()
        );
        let hidden: Mat = rule[0].weight_gradient() - reference[0].weight_gradient();
        assert!(
            hidden.amax() > 1e-4,
            "α={alpha}: strong feedback should change the hidden gradient"
        );
    }
}
