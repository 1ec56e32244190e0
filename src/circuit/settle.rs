//! Settling and divergence detection for a circuit integrated in time.
//!
//! A circuit has **settled** when every compartment has stopped moving:
//! `‖dv/dt‖∞ · τ < tol` (the integrator's current derivative, in τ units, so
//! the check costs no extra evaluation). It has **diverged** when
//! - a state or derivative becomes non-finite,
//! - a state leaves `±runaway_bound` (runaway),
//! - it is held only by the amplifier rails (rail-bound runaway: at the end,
//!   some layer has at least `rail_runaway_fraction` of its amplifier outputs
//!   on a rail), or
//! - it has not settled by `t_max` and its state norm is growing (the largest
//!   `‖v‖∞` over the second half of `[0, t_max]` exceeds the first half's by
//!   more than [`GROWTH_FACTOR`]).
//!
//! Otherwise it is **not settled** (still creeping, or a bounded oscillation).
//! Every outcome is a [`SettleReport`]; nothing panics on divergence, so a
//! training run can record it and carry on or stop by policy.

use super::integrator::{IntegrationError, Integrator, IntegratorStats, OdeSystem};
use serde::{Deserialize, Serialize};

/// Growth of the peak state norm between the two halves of `[0, t_max]`
/// above which a run that did not settle is called diverged.
pub const GROWTH_FACTOR: f32 = 1.05;

/// What the settle loop needs to know beyond the ODE: where each state entry
/// lives (for reports) and how saturated the amplifiers are.
///
/// ```
/// use dyadsim::circuit::{settle, Integrator, IntegratorSettings, OdeSystem, SettleCriteria, SettleStatus, Settling};
/// /// τ dv/dt = −v + 1: one leaky compartment driven towards 1.
/// struct Leak;
/// impl OdeSystem for Leak {
///     fn dim(&self) -> usize { 1 }
///     fn rhs(&mut self, _t: f64, v: &[f32], dv: &mut [f32]) { dv[0] = 1.0 - v[0]; }
/// }
/// impl Settling for Leak {}
/// let mut v = [0.0f32];
/// let mut integ = Integrator::new(IntegratorSettings::default(), 1);
/// let r = settle(&mut Leak, &mut v, &mut integ, &SettleCriteria::default(), 0.0, |_, _, _| {});
/// assert_eq!(r.status, SettleStatus::Settled);
/// // |1 − v(t)| = e^{−t} < 1e-4 from t = ln 10⁴ ≈ 9.2 τ on.
/// assert!(r.settle_time > 9.0 && (1.0 - v[0]).abs() < 2e-4);
/// ```
pub trait Settling: OdeSystem {
    /// Layer (1-based, as in `W_k`) of state entry `index`.
    fn layer_of(&self, _index: usize) -> usize {
        1
    }
    /// The layer with the largest fraction of amplifier outputs on a rail,
    /// as of the most recent `rhs` evaluation: `(layer, fraction)`. `None`
    /// when there are no rails (the default).
    fn rail_saturation(&self) -> Option<(usize, f32)> {
        None
    }
}

/// Validated stopping rules (built by [`crate::circuit::CircuitConfig::validate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SettleCriteria {
    /// Settled when `‖dv/dt‖∞ · τ < tol`.
    pub tol: f32,
    /// Give up at this time (τ units).
    pub t_max: f64,
    /// Give up after this many accepted steps.
    pub max_steps: u64,
    /// `|v|` above this is a runaway.
    pub runaway_bound: f32,
    /// Fraction of a layer's amplifier outputs on a rail that marks a
    /// rail-bound runaway.
    pub rail_runaway_fraction: f32,
}

impl Default for SettleCriteria {
    fn default() -> Self {
        Self {
            tol: 1e-4,
            t_max: 50.0,
            max_steps: 100_000,
            runaway_bound: 1e3,
            rail_runaway_fraction: 0.1,
        }
    }
}

/// Outcome class of a settle.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SettleStatus {
    /// `‖dv/dt‖∞ · τ < tol` was reached.
    Settled,
    /// Non-finite, runaway, rail-bound or growing (see [`DivergenceReason`]).
    Diverged,
    /// Stopped at `t_max` (or `max_steps`) without settling or growing.
    NotSettled,
}

/// Why a settle was called diverged.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceReason {
    /// A state or derivative became NaN or infinite.
    NonFinite,
    /// A state left `±runaway_bound`.
    Runaway,
    /// The state is held only by the amplifier rails.
    RailBound,
    /// Not settled by `t_max` and the state norm kept growing.
    Growing,
    /// The adaptive step size collapsed below `h_min`.
    StepSizeCollapse,
}

impl std::fmt::Display for DivergenceReason {
    /// The name the configuration and result files use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DivergenceReason::NonFinite => "non_finite",
            DivergenceReason::Runaway => "runaway",
            DivergenceReason::RailBound => "rail_bound",
            DivergenceReason::Growing => "growing",
            DivergenceReason::StepSizeCollapse => "step_size_collapse",
        })
    }
}

/// Where and when a divergence was detected.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    /// What was detected.
    pub reason: DivergenceReason,
    /// Time of detection (τ units).
    pub time: f64,
    /// Layer (1-based) of the offending compartment: the non-finite or
    /// largest state, or the most saturated amplifiers.
    pub layer: usize,
}

/// The result of settling one batch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SettleReport {
    /// Settled, diverged or not settled.
    pub status: SettleStatus,
    /// Time at which the run stopped (τ units): the settle time when settled.
    pub settle_time: f64,
    /// Accepted integration steps.
    pub steps: u64,
    /// Rejected steps (adaptive integrator).
    pub rejected_steps: u64,
    /// Right-hand-side evaluations (each one forward and one transposed read
    /// per crossbar).
    pub rhs_evals: u64,
    /// `‖dv/dt‖∞ · τ` at the end.
    pub residual: f32,
    /// `‖v‖∞` at the end.
    pub state_norm: f32,
    /// Present iff `status == Diverged`.
    pub divergence: Option<Divergence>,
}

impl SettleReport {
    fn new(stats: IntegratorStats, t: f64, residual: f32, state_norm: f32) -> Self {
        Self {
            status: SettleStatus::NotSettled,
            settle_time: t,
            steps: stats.steps,
            rejected_steps: stats.rejected_steps,
            rhs_evals: stats.rhs_evals,
            residual,
            state_norm,
            divergence: None,
        }
    }

    fn diverged(mut self, reason: DivergenceReason, time: f64, layer: usize) -> Self {
        self.status = SettleStatus::Diverged;
        self.divergence = Some(Divergence {
            reason,
            time,
            layer,
        });
        self
    }
}

/// `(max |x_i|, argmax)`, with a non-finite entry winning as `(∞, its index)`.
pub fn max_abs_index(x: &[f32]) -> (f32, usize) {
    let mut best = (0.0f32, 0usize);
    for (i, &v) in x.iter().enumerate() {
        if !v.is_finite() {
            return (f32::INFINITY, i);
        }
        if v.abs() > best.0 {
            best = (v.abs(), i);
        }
    }
    best
}

/// Integrates `system` from `(t0, y)` until it settles, diverges or reaches
/// `t_max`, leaving the final state in `y`. `observe(t, y, dy)` is called at
/// the start and after every accepted step (trajectory recording).
pub fn settle<S: Settling + ?Sized>(
    system: &mut S,
    y: &mut [f32],
    integrator: &mut Integrator,
    criteria: &SettleCriteria,
    t0: f64,
    mut observe: impl FnMut(f64, &[f32], &[f32]),
) -> SettleReport {
    if let Err(e) = integrator.reset(system, t0, y) {
        let (_, iy) = max_abs_index(y);
        let report = SettleReport::new(integrator.stats(), t0, f32::INFINITY, f32::INFINITY);
        return match e {
            IntegrationError::NoiseNeedsEulerMaruyama => {
                // A configuration error that validation should have caught;
                // reported as not settled with no steps rather than a panic.
                report
            }
            _ => report.diverged(DivergenceReason::NonFinite, t0, system.layer_of(iy)),
        };
    }
    let t_end = t0 + criteria.t_max;
    let t_half = t0 + 0.5 * criteria.t_max;
    let (mut peak_first, mut peak_second) = (0.0f32, 0.0f32);
    loop {
        let t = integrator.time();
        let (residual, i_res) = max_abs_index(integrator.derivative());
        let (norm, i_norm) = max_abs_index(y);
        observe(t, y, integrator.derivative());
        let report = SettleReport::new(integrator.stats(), t, residual, norm);
        if !residual.is_finite() {
            return report.diverged(DivergenceReason::NonFinite, t, system.layer_of(i_res));
        }
        if !norm.is_finite() {
            return report.diverged(DivergenceReason::NonFinite, t, system.layer_of(i_norm));
        }
        if norm > criteria.runaway_bound {
            return report.diverged(DivergenceReason::Runaway, t, system.layer_of(i_norm));
        }
        if t < t_half {
            peak_first = peak_first.max(norm);
        } else {
            peak_second = peak_second.max(norm);
        }
        if residual < criteria.tol {
            return rail_check(
                system,
                criteria,
                SettleReport {
                    status: SettleStatus::Settled,
                    ..report
                },
            );
        }
        if t >= t_end || integrator.stats().steps >= criteria.max_steps {
            if t >= t_end && peak_second > GROWTH_FACTOR * peak_first {
                return report.diverged(DivergenceReason::Growing, t, system.layer_of(i_norm));
            }
            return rail_check(system, criteria, report);
        }
        if let Err(e) = integrator.step(system, y, t_end) {
            let report = SettleReport::new(integrator.stats(), integrator.time(), residual, norm);
            let reason = match e {
                IntegrationError::StepTooSmall { .. } => DivergenceReason::StepSizeCollapse,
                _ => DivergenceReason::NonFinite,
            };
            let (_, i) = max_abs_index(y);
            return report.diverged(reason, integrator.time(), system.layer_of(i));
        }
    }
}

fn rail_check<S: Settling + ?Sized>(
    system: &S,
    criteria: &SettleCriteria,
    report: SettleReport,
) -> SettleReport {
    match system.rail_saturation() {
        Some((layer, fraction)) if fraction >= criteria.rail_runaway_fraction => {
            let t = report.settle_time;
            report.diverged(DivergenceReason::RailBound, t, layer)
        }
        _ => report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::integrator::{IntegratorKind, IntegratorSettings};

    /// dv/dt = (λ − 1) v + c, in two "layers" of one entry each.
    struct Scalar {
        growth: [f32; 2],
        drive: f32,
        rail: Option<f32>,
        saturated: f32,
    }
    impl OdeSystem for Scalar {
        fn dim(&self) -> usize {
            2
        }
        fn rhs(&mut self, _t: f64, y: &[f32], dy: &mut [f32]) {
            let mut sat = 0;
            for i in 0..2 {
                let mut fb = self.growth[i] * y[i];
                if let Some(r) = self.rail {
                    if fb.abs() >= r {
                        fb = fb.clamp(-r, r);
                        sat += 1;
                    }
                }
                dy[i] = -y[i] + fb + self.drive;
            }
            self.saturated = sat as f32 / 2.0;
        }
    }
    impl Settling for Scalar {
        fn layer_of(&self, index: usize) -> usize {
            index + 1
        }
        fn rail_saturation(&self) -> Option<(usize, f32)> {
            self.rail.map(|_| (2, self.saturated))
        }
    }

    fn run(system: &mut Scalar, criteria: &SettleCriteria) -> SettleReport {
        let mut integ = Integrator::new(IntegratorSettings::default(), 2);
        let mut y = [0.1f32, 0.1];
        settle(system, &mut y, &mut integ, criteria, 0.0, |_, _, _| {})
    }

    #[test]
    fn a_stable_linear_circuit_settles_when_the_residual_says_so() {
        // v(t) = c + (v0 − c) e^{−t}; residual |v0 − c| e^{−t} < tol at t = ln(|v0 − c|/tol).
        let mut s = Scalar {
            growth: [0.0, 0.0],
            drive: 1.0,
            rail: None,
            saturated: 0.0,
        };
        let criteria = SettleCriteria::default();
        let r = run(&mut s, &criteria);
        assert_eq!(r.status, SettleStatus::Settled);
        let expected = (0.9f64 / 1e-4).ln();
        assert!(
            r.settle_time >= expected - 0.05 && r.settle_time < expected + 2.5,
            "{} vs {expected}",
            r.settle_time
        );
        assert!(r.residual < 1e-4);
    }

    #[test]
    fn exponential_growth_is_a_runaway_in_the_right_layer() {
        let mut s = Scalar {
            growth: [0.5, 2.0],
            drive: 0.0,
            rail: None,
            saturated: 0.0,
        };
        let r = run(&mut s, &SettleCriteria::default());
        assert_eq!(r.status, SettleStatus::Diverged);
        let d = r.divergence.unwrap();
        assert_eq!(d.reason, DivergenceReason::Runaway);
        assert_eq!(d.layer, 2);
        // |v| = 0.1 e^{t} crosses 1e3 at t = ln(1e4) ≈ 9.2 τ.
        assert!((d.time - 1e4f64.ln()).abs() < 1.0, "{}", d.time);
    }

    #[test]
    fn slow_growth_before_t_max_is_reported_as_growing() {
        let mut s = Scalar {
            growth: [1.05, 0.0],
            drive: 0.0,
            rail: None,
            saturated: 0.0,
        };
        let r = run(&mut s, &SettleCriteria::default());
        assert_eq!(r.status, SettleStatus::Diverged);
        assert_eq!(r.divergence.unwrap().reason, DivergenceReason::Growing);
        assert_eq!(r.divergence.unwrap().layer, 1);
    }

    #[test]
    fn marginal_circuit_is_not_settled() {
        // Entry 0 is neutral (stays at 0.1), entry 1 decays at rate 1e-4/τ: the residual
        // 1e-5 stays above tol = 1e-7 until t_max while the norm does not grow.
        let mut s = Scalar {
            growth: [1.0, 0.9999],
            drive: 0.0,
            rail: None,
            saturated: 0.0,
        };
        let criteria = SettleCriteria {
            tol: 1e-7,
            ..SettleCriteria::default()
        };
        let r = run(&mut s, &criteria);
        assert_eq!(r.status, SettleStatus::NotSettled, "{r:?}");
        assert!((r.settle_time - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_state_held_by_the_rails_is_a_rail_bound_runaway() {
        let mut s = Scalar {
            growth: [2.0, 2.0],
            drive: 0.0,
            rail: Some(3.0),
            saturated: 0.0,
        };
        let r = run(&mut s, &SettleCriteria::default());
        assert_eq!(r.status, SettleStatus::Diverged, "{r:?}");
        let d = r.divergence.unwrap();
        assert_eq!(d.reason, DivergenceReason::RailBound);
        assert_eq!(d.layer, 2);
    }

    #[test]
    fn nan_is_caught_with_every_integrator() {
        struct Bad;
        impl OdeSystem for Bad {
            fn dim(&self) -> usize {
                1
            }
            fn rhs(&mut self, t: f64, y: &[f32], dy: &mut [f32]) {
                dy[0] = if t > 1.0 { f32::NAN } else { -y[0] };
            }
        }
        impl Settling for Bad {}
        for kind in [
            IntegratorKind::Euler,
            IntegratorKind::Rk4,
            IntegratorKind::Rk45,
        ] {
            let mut integ = Integrator::new(
                IntegratorSettings {
                    kind,
                    ..IntegratorSettings::default()
                },
                1,
            );
            let mut y = [1.0f32];
            let r = settle(
                &mut Bad,
                &mut y,
                &mut integ,
                &SettleCriteria::default(),
                0.0,
                |_, _, _| {},
            );
            assert_eq!(r.status, SettleStatus::Diverged, "{kind:?}");
            assert_eq!(r.divergence.unwrap().reason, DivergenceReason::NonFinite);
            assert!(r.settle_time <= 1.5, "{kind:?} {}", r.settle_time);
        }
    }
}
