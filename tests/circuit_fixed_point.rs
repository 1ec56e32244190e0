//! The settled state of the continuous-time circuit is the fixed point of the
//! discrete rule (DESIGN.md §3): it must equal the `jacobi` schedule run to
//! convergence, for every integrator, on a small hand-made network.

use dyadsim::circuit::{CircuitConfig, CircuitSettler, IntegratorKind, SettleStatus};
use dyadsim::linalg::{Mat, Vector};
use dyadsim::network::{Activation, Loss, Network};
use dyadsim::rules::dual::{DualInference, DualParams, DualState, DualVariant};
use dyadsim::rules::optimizer::OptimizerConfig;
use dyadsim::rules::Schedule;
use dyadsim::substrate::digital::DigitalWeights;
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
    let (x, y) = batch();
    let p = params(variant, alpha);

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
    let mut settler = CircuitSettler::new(&circuit).unwrap();
    let (report, _) = settler.settle_observed(&mut inf, &y, |_, _, _| {});
    assert_eq!(report.status, SettleStatus::Settled, "{report:?}");

    let mut worst = 0.0f32;
    for k in 0..SIZES.len() - 1 {
        worst = worst
            .max((&ode.plus[k] - &jac.plus[k]).amax())
            .max((&ode.minus[k] - &jac.minus[k]).amax());
    }
    worst
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
