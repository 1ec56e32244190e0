//! The settled state of the continuous-time circuit is the fixed point of the
//! discrete rule (DESIGN.md §3): it must equal the `jacobi` schedule run to
//! convergence, for every integrator, on a small hand-made network.

use dyadsim::circuit::{CircuitConfig, CircuitSettler, IntegratorKind, SettleStatus};
use dyadsim::digital::optimizer::OptimizerConfig;
use dyadsim::digital::DigitalWeights;
use dyadsim::linalg::{Mat, Vector};
use dyadsim::network::{Activation, Loss, Network};
use dyadsim::rules::dual::{DualInference, DualParams, DualState, DualVariant};
use dyadsim::rules::Schedule;
use dyadsim::substrate::WeightArray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const SIZES: [usize; 4] = [12, 10, 8, 4];
const BATCH: usize = 6;

/// 12-10-8-4 with W ~ N(0, 1/fan_in), small random biases.
fn network(loss: Loss) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let layers: Vec<Box<dyn WeightArray>> = SIZES
        .windows(2)
        .map(|w| {
            let normal = Normal::new(0.0f32, 1.0 / (w[0] as f32).sqrt()).unwrap();
            let weights = Mat::from_fn(w[1], w[0], |_, _| normal.sample(&mut rng));
            let bias = Vector::from_fn(w[1], |_, _| rng.gen_range(-0.1..0.1));
            Box::new(DigitalWeights::new(
                weights,
                bias,
                &OptimizerConfig::default(),
            )) as Box<dyn WeightArray>
        })
        .collect();
    Network {
        layers,
        activation: Activation::Relu,
        loss,
    }
}

fn batch() -> (Mat, Mat) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = Mat::from_fn(SIZES[0], BATCH, |_, _| rng.gen_range(0.0..1.0));
    let y = Mat::from_fn(4, BATCH, |i, j| if i == j % 4 { 1.0 } else { 0.0 });
    (x, y)
}

fn params(variant: DualVariant, alpha: f32) -> DualParams {
    DualParams {
        variant,
        alpha,
        hidden_alpha: alpha,
        beta: 0.5,
        robust_input: false,
        power_iterations: 5,
    }
}

/// Largest |difference| of s⁺, s⁻ over all layers between the circuit's
/// settled state and `jacobi` run until it stops moving.
fn circuit_vs_jacobi(
    variant: DualVariant,
    alpha: f32,
    loss: Loss,
    integrator: IntegratorKind,
    tol: f32,
) -> f32 {
    circuit_vs_jacobi_with(params(variant, alpha), loss, integrator, tol)
}

fn circuit_vs_jacobi_with(p: DualParams, loss: Loss, integrator: IntegratorKind, tol: f32) -> f32 {
    let (x, y) = batch();

    let mut net = network(loss);
    let mut jac = DualState::default();
    let mut inf = DualInference {
        params: &p,
        net: &mut net,
        state: &mut jac,
    };
    inf.forward_init(&x, &y);
    let last_change = inf.run_schedule(Schedule::Jacobi { iterations: 2000 }, &y);
    assert!(last_change < 1e-6, "jacobi did not converge: {last_change}");

    let mut net = network(loss);
    let mut ode = DualState::default();
    let mut inf = DualInference {
        params: &p,
        net: &mut net,
        state: &mut ode,
    };
    inf.forward_init(&x, &y);
    let circuit = CircuitConfig {
        integrator,
        dt: 0.1,
        tol,
        t_max: 200.0,
        ..CircuitConfig::default()
    };
    let mut settler = CircuitSettler::new(&circuit.check().unwrap()).unwrap();
    let (report, _) = settler.settle_observed(&mut inf, &y, |_, _, _| {});
    assert_eq!(report.status, SettleStatus::Settled, "{report:?}");

    if p.robust_input {
        let shift = (&ode.input_mean - &x).amax();
        assert!(shift > 1e-4, "the input dyad must move: {shift:e}");
    }
    let mut worst = (&ode.input_mean - &jac.input_mean).amax();
    for k in 0..SIZES.len() - 1 {
        worst = worst
            .max((&ode.plus[k] - &jac.plus[k]).amax())
            .max((&ode.minus[k] - &jac.minus[k]).amax());
    }
    worst
}

#[test]
fn input_robust_dp_has_the_same_fixed_point_with_an_instantaneous_input_dyad() {
    // DP with α = 0.6: s̄_0 = x + (α² − (1−α)²) W_1ᵀ δ_1 = x + 0.2 W_1ᵀ δ_1 moves with δ_1.
    let p = DualParams {
        robust_input: true,
        ..params(DualVariant::Dp, 0.6)
    };
    let d = circuit_vs_jacobi_with(p, Loss::Mse, IntegratorKind::Rk45, 1e-6);
    assert!(d < 1e-5, "max |Δs| = {d:e}");
}

#[test]
fn dpt_circuit_settles_on_the_jacobi_fixed_point_for_every_alpha() {
    let tol = 1e-6;
    for alpha in [0.0, 0.5, 1.0] {
        for loss in [Loss::Mse, Loss::Ce] {
            let d = circuit_vs_jacobi(DualVariant::Dpt, alpha, loss, IntegratorKind::Rk45, tol);
            // ‖v − v*‖ ≤ ‖F(v)‖ / (1 − Lip) with Lip < 1 here; 10·tol leaves room for that factor.
            assert!(d < 10.0 * tol, "α = {alpha}, {loss:?}: max |Δs| = {d:e}");
        }
    }
}

#[test]
fn every_integrator_reaches_the_same_fixed_point() {
    for integrator in [
        IntegratorKind::Euler,
        IntegratorKind::Rk4,
        IntegratorKind::EulerMaruyama,
    ] {
        let d = circuit_vs_jacobi(DualVariant::Dpt, 0.5, Loss::Mse, integrator, 1e-6);
        assert!(d < 1e-5, "{integrator:?}: max |Δs| = {d:e}");
    }
}

#[test]
fn dp_output_gradient_flow_reaches_the_closed_form_targets() {
    // DP with least squares: the output compartments follow a gradient flow
    // whose fixed points are (a + αβy)/(1 + αβ) and (a − (1−α)βy)/(1 − (1−α)β).
    for loss in [Loss::Mse, Loss::Ce] {
        let d = circuit_vs_jacobi(DualVariant::Dp, 0.5, loss, IntegratorKind::Rk45, 1e-6);
        assert!(d < 1e-5, "{loss:?}: max |Δs| = {d:e}");
    }
}

/// Settles the small DP⊤ network with `circuit`; returns the settler (for its
/// amplifiers), the settled dyads and the network.
fn settle_small(circuit: &CircuitConfig, alpha: f32) -> (CircuitSettler, DualState, Network) {
    let (x, y) = batch();
    let p = params(DualVariant::Dpt, alpha);
    let mut net = network(Loss::Mse);
    let mut state = DualState::default();
    let mut inf = DualInference {
        params: &p,
        net: &mut net,
        state: &mut state,
    };
    inf.forward_init(&x, &y);
    let mut settler = CircuitSettler::new(&circuit.check().unwrap()).unwrap();
    settler.settle_observed(&mut inf, &y, |_, _, _| {});
    (settler, state, net)
}

#[test]
fn non_ideal_amplifiers_move_the_fixed_point_to_their_own_equation() {
    // Mismatch, offsets and rails low enough that some outputs clip: the
    // settled hidden dyads must satisfy s±_i = f(a_i ± clip(g±_i (I_fb,i + o±_i))),
    // with every neuron's own gains and offsets.
    let circuit = CircuitConfig {
        tol: 1e-6,
        t_max: 200.0,
        rail_runaway_fraction: 1.0,
        amplifier: dyadsim::circuit::AmplifierConfig {
            gain_mismatch: 0.3,
            offset: 0.05,
            rail: Some(0.08),
            seed: 5,
            ..Default::default()
        },
        ..CircuitConfig::default()
    };
    let (settler, state, mut net) = settle_small(&circuit, 0.5);
    let report = settler.last_report().unwrap();
    assert_eq!(report.status, SettleStatus::Settled, "{report:?}");
    let amps = settler.circuit().unwrap().amplifiers();
    let (mut worst, mut clipped, mut moved) = (0.0f32, 0usize, 0.0f32);
    for k in 0..SIZES.len() - 2 {
        let (mut a, mut fb) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
        let below = if k == 0 {
            &state.input
        } else {
            &state.mean[k - 1]
        };
        net.layers[k].forward(below, &mut a);
        net.layers[k + 1].transposed(&state.diff[k + 1], &mut fb);
        let n = SIZES[k + 1];
        for idx in 0..n * BATCH {
            let i = idx % n;
            let (up, sp) = amps[k].plus(i, fb[idx]);
            let (um, sm) = amps[k].minus(i, fb[idx]);
            clipped += usize::from(sp) + usize::from(sm);
            let plus = Activation::Relu.apply(a[idx] + up);
            let minus = Activation::Relu.apply(a[idx] - um);
            worst = worst
                .max((plus - state.plus[k][idx]).abs())
                .max((minus - state.minus[k][idx]).abs());
            // How far the non-idealities moved the state from the ideal rule.
            let ideal = Activation::Relu.apply(a[idx] + 0.5 * fb[idx]);
            moved = moved.max((ideal - state.plus[k][idx]).abs());
        }
    }
    println!("equation residual {worst:e}, {clipped} clipped outputs, moved {moved:e}");
    assert!(worst < 1e-5, "fixed-point equation violated by {worst:e}");
    assert!(clipped > 0, "the rail must be reached somewhere");
    assert!(moved > 1e-3, "non-idealities must matter: {moved:e}");
}

#[test]
fn amplifier_noise_is_reproducible_and_fluctuates_around_the_fixed_point() {
    let ideal = CircuitConfig {
        tol: 1e-6,
        t_max: 200.0,
        ..CircuitConfig::default()
    };
    let (_, clean, _) = settle_small(&ideal, 0.5);
    let noisy = |noise_seed: u64| CircuitConfig {
        integrator: IntegratorKind::EulerMaruyama,
        dt: 0.05,
        t_max: 30.0,
        noise_seed,
        amplifier: dyadsim::circuit::AmplifierConfig {
            noise: 1e-3,
            ..Default::default()
        },
        ..CircuitConfig::default()
    };
    let (s1, a, _) = settle_small(&noisy(1), 0.5);
    let (_, b, _) = settle_small(&noisy(1), 0.5);
    let (_, c, _) = settle_small(&noisy(2), 0.5);
    // The noise keeps ‖dv/dt‖ above tol: the circuit is sampled at t_max.
    assert_eq!(s1.last_report().unwrap().status, SettleStatus::NotSettled);
    let mut dev = 0.0f32;
    for k in 0..SIZES.len() - 1 {
        assert_eq!(a.plus[k], b.plus[k], "same noise seed, same trajectory");
        assert_ne!(a.plus[k], c.plus[k], "another seed, another trajectory");
        dev = dev.max((&a.plus[k] - &clean.plus[k]).amax());
    }
    println!("noisy deviation from the fixed point {dev:e}");
    // Stationary std of an OU compartment with unit leak: σ/√2 ≈ 7e-4 (feedback adds a little).
    assert!(
        dev > 1e-5 && dev < 1e-2,
        "deviation from the fixed point {dev:e}"
    );
}

#[test]
fn holding_the_input_drive_is_exact_on_digital_weights() {
    let base = CircuitConfig {
        tol: 1e-6,
        t_max: 200.0,
        ..CircuitConfig::default()
    };
    let held = CircuitConfig {
        hold_input_drive: true,
        ..base.clone()
    };
    let (s1, a, _) = settle_small(&base, 0.5);
    let (s2, b, _) = settle_small(&held, 0.5);
    assert_eq!(s1.last_report(), s2.last_report());
    for k in 0..SIZES.len() - 1 {
        assert_eq!(a.plus[k], b.plus[k]);
        assert_eq!(a.minus[k], b.minus[k]);
        assert_eq!(a.drive[k], b.drive[k]);
    }
}
