//! The integrators against closed-form solutions of linear systems.
//!
//! Independent facts used: the solution of `y' = A y` for block-diagonal `A`
//! (decays `e^{−λt}` and damped rotations `e^{−ζt}(cos ωt, sin ωt)`), and the
//! textbook global orders of forward Euler (1) and classic RK4 (4).

use dyadsim::circuit::integrator::{
    Integrator, IntegratorKind, IntegratorSettings, IntegratorStats, OdeSystem,
};

/// Decoupled linear modes: three decays `e^{−λ_i t}` and a damped rotation
/// `e^{−ζt}(cos ωt, sin ωt)` (the shape of a settling circuit: membrane
/// leaks plus the damped oscillation DP's feedback loop produces).
#[derive(Clone, Copy)]
struct Modes {
    decays: [f64; 3],
    zeta: f64,
    omega: f64,
}

/// A mixed set: fast (λ = 4), leak (λ = 1) and slow (λ = 0.2) decays, and a
/// lightly damped oscillation (ζ = 0.3, ω = 2).
const MIXED: Modes = Modes {
    decays: [4.0, 1.0, 0.2],
    zeta: 0.3,
    omega: 2.0,
};

/// Settling-like: a fast, well-damped ringing transient (ζ = 1.5, ω = 5) on
/// top of slow leaks — the case step-size adaptation exists for.
const TRANSIENT: Modes = Modes {
    decays: [6.0, 0.5, 0.2],
    zeta: 1.5,
    omega: 5.0,
};

const Y0: [f32; 5] = [1.0, -0.5, 2.0, 1.0, 0.0];

impl OdeSystem for Modes {
    fn dim(&self) -> usize {
        5
    }
    fn rhs(&mut self, _t: f64, y: &[f32], dy: &mut [f32]) {
        for i in 0..3 {
            dy[i] = -(self.decays[i] as f32) * y[i];
        }
        let (z, w) = (self.zeta as f32, self.omega as f32);
        dy[3] = -z * y[3] - w * y[4];
        dy[4] = w * y[3] - z * y[4];
    }
}

impl Modes {
    fn exact(&self, t: f64) -> [f64; 5] {
        let mut out = [0.0; 5];
        for i in 0..3 {
            out[i] = f64::from(Y0[i]) * (-self.decays[i] * t).exp();
        }
        let (a, b) = (f64::from(Y0[3]), f64::from(Y0[4]));
        let r = (-self.zeta * t).exp();
        let (c, s) = ((self.omega * t).cos(), (self.omega * t).sin());
        out[3] = r * (a * c - b * s);
        out[4] = r * (a * s + b * c);
        out
    }
}

/// Integrates to every observation time in turn; returns the largest
/// absolute error seen at any of them, and the work counters.
fn run(settings: IntegratorSettings, times: &[f64]) -> (f64, IntegratorStats) {
    run_on(MIXED, settings, times)
}

fn run_on(mut modes: Modes, settings: IntegratorSettings, times: &[f64]) -> (f64, IntegratorStats) {
    let mut integ = Integrator::new(settings, 5);
    let mut y = Y0;
    integ.reset(&mut modes, 0.0, &y).expect("finite start");
    let mut worst = 0.0f64;
    for &t in times {
        while integ.time() < t {
            if integ.step(&mut modes, &mut y, t).is_err() {
                // Unstable step size: the state overflowed.
                return (f64::INFINITY, integ.stats());
            }
        }
        let e = modes.exact(t);
        for (yi, ei) in y.iter().zip(e) {
            worst = worst.max((f64::from(*yi) - ei).abs());
        }
    }
    (worst, integ.stats())
}

fn fixed(kind: IntegratorKind, dt: f64) -> IntegratorSettings {
    IntegratorSettings {
        kind,
        dt,
        ..IntegratorSettings::default()
    }
}

fn adaptive(tol: f64) -> IntegratorSettings {
    IntegratorSettings {
        kind: IntegratorKind::Rk45,
        atol: tol,
        rtol: tol,
        ..IntegratorSettings::default()
    }
}

const OBSERVE: [f64; 4] = [1.0, 2.5, 5.0, 10.0];

#[test]
fn adaptive_integrator_meets_its_tolerance() {
    for tol in [1e-3, 1e-4, 1e-5] {
        let (err, stats) = run(adaptive(tol), &OBSERVE);
        println!("tol {tol:e}: global error {err:.2e}, {stats:?}");
        // Local error control bounds the global error to a small multiple of
        // the tolerance on a contractive system (HNW I §II.3).
        assert!(err <= 3.0 * tol, "tol {tol:e}: global error {err:e}");
        assert!(stats.steps > 0);
        // Tightening the tolerance must buy accuracy, not just work.
        if tol < 1e-3 {
            let (looser, _) = run(adaptive(tol * 10.0), &OBSERVE);
            assert!(err < looser, "tol {tol:e}: {err:e} !< {looser:e}");
        }
    }
}

#[test]
fn adaptive_takes_fewer_steps_than_rk4_at_equal_accuracy() {
    // Accuracy judged over the whole trajectory (observations every τ).
    let times: Vec<f64> = (1..=30).map(f64::from).collect();
    for (name, modes) in [("mixed", MIXED), ("transient", TRANSIENT)] {
        let (err45, stats45) = run_on(modes, adaptive(1e-4), &times);
        // The coarsest fixed RK4 grid (whole steps per τ) that is at least as accurate.
        let mut per_tau = 1u64;
        let (steps4, evals4) = loop {
            let (err4, stats4) = run_on(
                modes,
                fixed(IntegratorKind::Rk4, 1.0 / per_tau as f64),
                &times,
            );
            if err4 <= err45 {
                break (stats4.steps, stats4.rhs_evals);
            }
            per_tau += 1;
            assert!(per_tau < 1000, "{name}: RK4 never reached {err45:e}");
        };
        println!(
            "{name}: rk45 error {err45:.2e} in {} steps / {} evals; rk4 needs {steps4} steps / {evals4} evals",
            stats45.steps, stats45.rhs_evals
        );
        assert!(
            stats45.steps < steps4,
            "{name}: rk45 {} steps vs rk4 {steps4} (error {err45:e})",
            stats45.steps
        );
        // RK45 spends 6 evaluations per step to RK4's 4: it must still win on work.
        assert!(
            stats45.rhs_evals < evals4,
            "{name}: rk45 {} evals vs rk4 {evals4}",
            stats45.rhs_evals
        );
    }
}

/// Observed order `log₂(e(h) / e(h/2))` for a fixed-step method at `T = 5`.
fn observed_orders(kind: IntegratorKind, steps: &[f64]) -> Vec<f64> {
    let errors: Vec<f64> = steps
        .iter()
        .map(|&h| run(fixed(kind, h), &[5.0]).0)
        .collect();
    errors.windows(2).map(|e| (e[0] / e[1]).log2()).collect()
}

#[test]
fn euler_converges_with_order_one() {
    for p in observed_orders(IntegratorKind::Euler, &[0.02, 0.01, 0.005, 0.0025]) {
        assert!((p - 1.0).abs() < 0.15, "order {p}");
    }
}

#[test]
fn rk4_converges_with_order_four() {
    // Steps chosen so the error stays well above f32 rounding (~1e-6 here).
    for p in observed_orders(IntegratorKind::Rk4, &[0.4, 0.2, 0.1]) {
        assert!((p - 4.0).abs() < 0.4, "order {p}");
    }
}

#[test]
fn euler_maruyama_without_noise_is_euler() {
    let (a, sa) = run(fixed(IntegratorKind::Euler, 0.05), &OBSERVE);
    let (b, sb) = run(fixed(IntegratorKind::EulerMaruyama, 0.05), &OBSERVE);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
}
