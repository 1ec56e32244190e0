//! Explicit integrators for the circuit equations, on whole batches in place.
//!
//! Every circuit in dyadsim is written as an autonomous-in-form system
//!
//! ```text
//!     dy/dt' = F(t', y) + G ξ(t'),     t' = t / τ,
//! ```
//!
//! where `y` is the flat `f32` state of all compartments of all samples of a
//! batch, `F` is `τ dv/dt` (the right-hand side in units of τ, DESIGN.md §3)
//! and `G ξ` is an optional additive white-noise current (amplifier output
//! noise). Time is always measured in units of the membrane time constant τ.
//!
//! The integrators keep the derivative at the current point, `F(t, y)`, as
//! their first stage (first-same-as-last for Dormand–Prince, reused as `k₁` of
//! the next step for the others). So a caller gets `‖dv/dt‖∞` — the settle
//! criterion — without an extra right-hand-side evaluation, and every buffer
//! is allocated once in [`Integrator::new`]: a step allocates nothing.
//!
//! Methods (Hairer, Nørsett & Wanner, *Solving ODEs I*, 2nd ed., 1993):
//! - [`IntegratorKind::Euler`]: `y ← y + h F(t, y)` (order 1).
//! - [`IntegratorKind::Rk4`]: the classic four-stage Runge–Kutta method (order 4, HNW I Table 1.2).
//! - [`IntegratorKind::Rk45`]: Dormand & Prince (1980) embedded 5(4) pair with
//!   local extrapolation and FSAL (HNW I Table 5.2), error control on
//!   `err = ‖(y₅ − y₄) / (atol + rtol·max(|y|, |y_new|))‖`, initial step by
//!   HNW I §II.4 ("Starting step size"), standard or PI step-size control
//!   (Gustafsson 1991; HNW II §IV.2, as in Hairer's `DOPRI5`).
//! - [`IntegratorKind::EulerMaruyama`]: `y ← y + h F(t, y) + √h G ξ`, `ξ ~ N(0, I)`
//!   (Kloeden & Platen 1992, §9.1); with additive noise it has strong order 1.

use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// A system of ODEs (or additive-noise SDEs) on a flat `f32` state.
///
/// `rhs` takes `&mut self` because evaluating the circuit reads crossbars,
/// which may draw read noise and count reads.
///
/// ```
/// use dyadsim::circuit::integrator::OdeSystem;
/// /// dy/dt = −λ y (one decaying compartment per entry).
/// struct Decay { lambda: f32, n: usize }
/// impl OdeSystem for Decay {
///     fn dim(&self) -> usize { self.n }
///     fn rhs(&mut self, _t: f64, y: &[f32], dy: &mut [f32]) {
///         for (d, v) in dy.iter_mut().zip(y) { *d = -self.lambda * v; }
///     }
/// }
/// let mut s = Decay { lambda: 1.0, n: 2 };
/// let mut dy = [0.0; 2];
/// s.rhs(0.0, &[1.0, -2.0], &mut dy);
/// assert_eq!(dy, [-1.0, 2.0]);
/// ```
pub trait OdeSystem {
    /// Length of the state vector.
    fn dim(&self) -> usize;
    /// Writes `F(t, y)` (= τ dy/dt) into `dy`; `y.len() == dy.len() == dim()`.
    fn rhs(&mut self, t: f64, y: &[f32], dy: &mut [f32]);
    /// Writes the additive noise amplitudes `G` (per √τ, one per state
    /// entry) into `g` and returns `true`, or returns `false` if the system
    /// is deterministic (the default).
    fn diffusion(&mut self, _t: f64, _g: &mut [f32]) -> bool {
        false
    }
}

/// Which explicit method integrates the circuit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IntegratorKind {
    /// Forward Euler, fixed step `dt`.
    Euler,
    /// Classic Runge–Kutta 4, fixed step `dt`.
    Rk4,
    /// Dormand–Prince 5(4), adaptive step with error control.
    #[default]
    Rk45,
    /// Euler–Maruyama, fixed step `dt`; required when noise currents are on.
    #[serde(alias = "em")]
    EulerMaruyama,
}

impl IntegratorKind {
    /// Parses the CLI spelling (`euler`, `rk4`, `rk45`, `euler_maruyama`/`em`).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "euler" => Self::Euler,
            "rk4" => Self::Rk4,
            "rk45" | "dopri5" => Self::Rk45,
            "euler_maruyama" | "em" => Self::EulerMaruyama,
            other => {
                bail!("unknown integrator `{other}` (allowed: euler, rk4, rk45, euler_maruyama)")
            }
        })
    }

    /// Whether the method adapts its step size.
    pub fn is_adaptive(self) -> bool {
        matches!(self, Self::Rk45)
    }

    /// Right-hand-side evaluations per accepted step (the first stage is
    /// carried over from the previous step; for RK45 rejected steps cost 6 more).
    pub fn evals_per_step(self) -> u64 {
        match self {
            Self::Euler | Self::EulerMaruyama => 1,
            Self::Rk4 => 4,
            Self::Rk45 => 6,
        }
    }
}

/// How the adaptive method picks the next step from the error estimate.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepControl {
    /// `h ← h · clamp(safety · err^(−1/5), 0.2, 10)` (HNW I eq. II.4.13).
    Standard,
    /// PI control `h ← h · safety · err^(−(1/5 − 0.75 β)) · err_prev^β`, β = 0.04
    /// (Gustafsson 1991; Hairer's `DOPRI5`): smoother steps on the stability
    /// boundary, which is where a settling circuit spends most of its time.
    #[default]
    Pi,
}

/// Norm of the scaled error vector `e_i / (atol + rtol·max(|y_i|, |y_new_i|))`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorNorm {
    /// Largest component: every compartment of every sample meets the tolerance.
    #[default]
    Max,
    /// Root mean square (HNW I eq. II.4.11): the tolerance holds on average.
    Rms,
}

/// Validated integrator settings (built by [`crate::circuit::CircuitConfig::validate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct IntegratorSettings {
    /// The method.
    pub kind: IntegratorKind,
    /// Fixed step (τ units) for Euler, RK4 and Euler–Maruyama.
    pub dt: f64,
    /// Absolute error tolerance (RK45).
    pub atol: f64,
    /// Relative error tolerance (RK45).
    pub rtol: f64,
    /// Smallest step the adaptive method may take before giving up (τ units).
    pub h_min: f64,
    /// Largest step of the adaptive method (τ units).
    pub h_max: f64,
    /// First step of the adaptive method; `0` picks it automatically.
    pub h0: f64,
    /// Step-size controller of the adaptive method.
    pub step_control: StepControl,
    /// Norm of the error estimate.
    pub error_norm: ErrorNorm,
    /// Seed of the Euler–Maruyama noise stream.
    pub noise_seed: u64,
}

impl Default for IntegratorSettings {
    fn default() -> Self {
        Self {
            kind: IntegratorKind::Rk45,
            dt: 0.1,
            atol: 1e-5,
            rtol: 1e-4,
            h_min: 1e-6,
            h_max: 2.0,
            h0: 0.0,
            step_control: StepControl::Pi,
            error_norm: ErrorNorm::Max,
            noise_seed: 0,
        }
    }
}

/// Work counters of an integration.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IntegratorStats {
    /// Accepted steps.
    pub steps: u64,
    /// Rejected steps (adaptive method only).
    pub rejected_steps: u64,
    /// Right-hand-side evaluations, including the one at the initial point,
    /// rejected steps and the initial-step heuristic.
    pub rhs_evals: u64,
}

/// Why a step could not be taken.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum IntegrationError {
    /// The state or its derivative became NaN/∞.
    #[error("non-finite state or derivative at t = {t} τ")]
    NonFinite {
        /// Time (τ units) of the last finite point.
        t: f64,
    },
    /// The error controller asked for a step below `h_min` (a stiff or
    /// exploding system).
    #[error("step size {h:e} τ fell below h_min at t = {t} τ")]
    StepTooSmall {
        /// Time (τ units) where it happened.
        t: f64,
        /// The step size that was requested.
        h: f64,
    },
    /// A noisy system was given to a deterministic method.
    #[error("the system has noise currents; use the euler_maruyama integrator")]
    NoiseNeedsEulerMaruyama,
}

// Dormand–Prince 5(4) tableau (Dormand & Prince 1980; HNW I Table II.5.2).
const DP_C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const DP_A: [&[f64]; 7] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    // Last row = the 5th-order weights b (FSAL: stage 7 is F at the new point).
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// `b − b̂` (5th- minus 4th-order weights), over the seven stages.
const DP_E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];
const SAFETY: f64 = 0.9;
const FAC_MIN: f64 = 0.2;
const FAC_MAX: f64 = 10.0;
const PI_BETA: f64 = 0.04;

/// A stepping integrator with preallocated workspaces for one state size.
///
/// Usage: [`Integrator::reset`] at the initial point (one RHS evaluation),
/// then [`Integrator::step`] until done; [`Integrator::derivative`] is
/// `F(t, y)` at the current point after every step.
///
/// ```
/// use dyadsim::circuit::integrator::{Integrator, IntegratorSettings, OdeSystem};
/// struct Decay;
/// impl OdeSystem for Decay {
///     fn dim(&self) -> usize { 1 }
///     fn rhs(&mut self, _t: f64, y: &[f32], dy: &mut [f32]) { dy[0] = -y[0]; }
/// }
/// let mut y = [1.0f32];
/// let mut integ = Integrator::new(IntegratorSettings::default(), 1);
/// integ.integrate(&mut Decay, &mut y, 0.0, 1.0).unwrap();
/// assert!((y[0] - (-1.0f32).exp()).abs() < 1e-4);
/// ```
#[derive(Clone, Debug)]
pub struct Integrator {
    settings: IntegratorSettings,
    dim: usize,
    t: f64,
    /// Proposed next step (adaptive) or the fixed step.
    h: f64,
    /// Stage derivatives `k₁…k₇`, each `dim` long; `k₁` is always `F(t, y)`.
    stages: Vec<f32>,
    /// Stage argument / candidate new state.
    trial: Vec<f32>,
    /// Noise amplitudes `G` (Euler–Maruyama).
    noise: Vec<f32>,
    rng: ChaCha8Rng,
    /// Error of the last accepted step (PI control memory).
    err_prev: f64,
    last_rejected: bool,
    stats: IntegratorStats,
}

impl Integrator {
    /// Allocates the workspaces for a state of length `dim`.
    pub fn new(settings: IntegratorSettings, dim: usize) -> Self {
        let n_stages = match settings.kind {
            IntegratorKind::Euler | IntegratorKind::EulerMaruyama => 1,
            IntegratorKind::Rk4 => 4,
            IntegratorKind::Rk45 => 7,
        };
        Self {
            rng: ChaCha8Rng::seed_from_u64(settings.noise_seed),
            h: settings.dt,
            settings,
            dim,
            t: 0.0,
            stages: vec![0.0; n_stages * dim],
            trial: vec![0.0; dim],
            noise: vec![0.0; dim],
            err_prev: 1e-4,
            last_rejected: false,
            stats: IntegratorStats::default(),
        }
    }

    /// The settings this integrator runs with.
    pub fn settings(&self) -> &IntegratorSettings {
        &self.settings
    }

    /// Length of the state this integrator was built for.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Current time (τ units).
    pub fn time(&self) -> f64 {
        self.t
    }

    /// The step size the next step will try (τ units).
    pub fn step_size(&self) -> f64 {
        self.h
    }

    /// `F(t, y)` = τ dy/dt at the current point (valid after `reset`/`step`).
    pub fn derivative(&self) -> &[f32] {
        &self.stages[..self.dim]
    }

    /// Work done since the last `reset`.
    pub fn stats(&self) -> IntegratorStats {
        self.stats
    }

    /// Starts an integration at `(t0, y)`: evaluates `F(t0, y)` and, for the
    /// adaptive method with `h0 = 0`, picks the first step (one more
    /// evaluation). Also rejects a noisy system on a deterministic method.
    pub fn reset<S: OdeSystem + ?Sized>(
        &mut self,
        system: &mut S,
        t0: f64,
        y: &[f32],
    ) -> Result<(), IntegrationError> {
        assert_eq!(y.len(), self.dim, "integrator: state length");
        assert_eq!(system.dim(), self.dim, "integrator: system dimension");
        self.t = t0;
        self.stats = IntegratorStats::default();
        self.err_prev = 1e-4;
        self.last_rejected = false;
        // The noise stream is *not* reseeded: successive settles (batches)
        // see fresh noise, and the whole run is reproducible from the seed.
        let dim = self.dim;
        self.noise.fill(0.0);
        let has_noise =
            system.diffusion(t0, &mut self.noise) && self.noise.iter().any(|&g| g != 0.0);
        if has_noise && self.settings.kind != IntegratorKind::EulerMaruyama {
            return Err(IntegrationError::NoiseNeedsEulerMaruyama);
        }
        system.rhs(t0, y, &mut self.stages[..dim]);
        self.stats.rhs_evals += 1;
        if !all_finite(&self.stages[..dim]) || !all_finite(y) {
            return Err(IntegrationError::NonFinite { t: t0 });
        }
        self.h = if self.settings.kind.is_adaptive() {
            if self.settings.h0 > 0.0 {
                self.settings.h0
            } else {
                self.initial_step(system, y)
            }
        } else {
            self.settings.dt
        };
        Ok(())
    }

    /// Takes one accepted step, never past `t_limit`, updating `y` in place
    /// and `derivative()` to `F` at the new point. Returns the step taken.
    pub fn step<S: OdeSystem + ?Sized>(
        &mut self,
        system: &mut S,
        y: &mut [f32],
        t_limit: f64,
    ) -> Result<f64, IntegrationError> {
        debug_assert_eq!(y.len(), self.dim);
        let remaining = t_limit - self.t;
        if remaining <= 0.0 {
            return Ok(0.0);
        }
        match self.settings.kind {
            IntegratorKind::Euler => {
                let h = self.settings.dt.min(remaining);
                let (k1, _) = self.stages.split_at_mut(self.dim);
                for (yi, ki) in y.iter_mut().zip(k1.iter()) {
                    *yi += h as f32 * ki;
                }
                self.finish_fixed_step(system, y, h)
            }
            IntegratorKind::EulerMaruyama => {
                let h = self.settings.dt.min(remaining);
                let noisy = system.diffusion(self.t, &mut self.noise);
                let sqrt_h = h.sqrt() as f32;
                let k1 = &self.stages[..self.dim];
                if noisy {
                    for ((yi, ki), gi) in y.iter_mut().zip(k1).zip(&self.noise) {
                        let xi: f32 = StandardNormal.sample(&mut self.rng);
                        *yi += h as f32 * ki + sqrt_h * gi * xi;
                    }
                } else {
                    for (yi, ki) in y.iter_mut().zip(k1) {
                        *yi += h as f32 * ki;
                    }
                }
                self.finish_fixed_step(system, y, h)
            }
            IntegratorKind::Rk4 => {
                let h = self.settings.dt.min(remaining);
                self.rk4_step(system, y, h);
                self.finish_fixed_step(system, y, h)
            }
            IntegratorKind::Rk45 => self.dopri_step(system, y, remaining),
        }
    }

    /// Integrates from `t0` to `t1`, leaving the result in `y`.
    pub fn integrate<S: OdeSystem + ?Sized>(
        &mut self,
        system: &mut S,
        y: &mut [f32],
        t0: f64,
        t1: f64,
    ) -> Result<IntegratorStats, IntegrationError> {
        self.reset(system, t0, y)?;
        while self.t < t1 {
            self.step(system, y, t1)?;
        }
        Ok(self.stats)
    }

    /// After a fixed step: advance time, evaluate `F` at the new point into `k₁`.
    fn finish_fixed_step<S: OdeSystem + ?Sized>(
        &mut self,
        system: &mut S,
        y: &[f32],
        h: f64,
    ) -> Result<f64, IntegrationError> {
        let t_new = self.t + h;
        system.rhs(t_new, y, &mut self.stages[..self.dim]);
        self.stats.rhs_evals += 1;
        self.stats.steps += 1;
        if !all_finite(&self.stages[..self.dim]) || !all_finite(y) {
            return Err(IntegrationError::NonFinite { t: self.t });
        }
        self.t = t_new;
        Ok(h)
    }

    /// Classic RK4 (HNW I Table 1.2, right): `k₂ = F(t + h/2, y + h/2 k₁)`,
    /// `k₃ = F(t + h/2, y + h/2 k₂)`, `k₄ = F(t + h, y + h k₃)`,
    /// `y ← y + h/6 (k₁ + 2k₂ + 2k₃ + k₄)`.
    fn rk4_step<S: OdeSystem + ?Sized>(&mut self, system: &mut S, y: &mut [f32], h: f64) {
        let n = self.dim;
        let half = (0.5 * h) as f32;
        for (stage, (shift, dt)) in [(half, 0.5 * h), (half, 0.5 * h), (h as f32, h)]
            .into_iter()
            .enumerate()
        {
            let (done, rest) = self.stages.split_at_mut((stage + 1) * n);
            let prev = &done[stage * n..];
            for ((tr, yi), ki) in self.trial.iter_mut().zip(y.iter()).zip(prev) {
                *tr = yi + shift * ki;
            }
            system.rhs(self.t + dt, &self.trial, &mut rest[..n]);
            self.stats.rhs_evals += 1;
        }
        let h6 = (h / 6.0) as f32;
        let (k1, rest) = self.stages.split_at(n);
        let (k2, rest) = rest.split_at(n);
        let (k3, k4) = rest.split_at(n);
        for i in 0..n {
            y[i] += h6 * (k1[i] + 2.0 * (k2[i] + k3[i]) + k4[i]);
        }
    }

    /// One accepted Dormand–Prince step (retrying rejected ones).
    fn dopri_step<S: OdeSystem + ?Sized>(
        &mut self,
        system: &mut S,
        y: &mut [f32],
        remaining: f64,
    ) -> Result<f64, IntegrationError> {
        let n = self.dim;
        let s = &self.settings;
        let (atol, rtol) = (s.atol as f32, s.rtol as f32);
        loop {
            let h_limited = remaining < self.h;
            let h = if h_limited { remaining } else { self.h };
            // Stages 2..7; stage 7's argument is the 5th-order solution.
            for stage in 1..7 {
                let (done, rest) = self.stages.split_at_mut(stage * n);
                let a = DP_A[stage];
                combine(&mut self.trial, y, h as f32, a, done, n);
                system.rhs(self.t + DP_C[stage] * h, &self.trial, &mut rest[..n]);
                self.stats.rhs_evals += 1;
            }
            let err = scaled_error(
                &self.stages,
                y,
                &self.trial,
                h as f32,
                atol,
                rtol,
                n,
                self.settings.error_norm,
            );
            if !err.is_finite() {
                return Err(IntegrationError::NonFinite { t: self.t });
            }
            if err <= 1.0 {
                y.copy_from_slice(&self.trial);
                self.stages.copy_within(6 * n..7 * n, 0);
                self.t += h;
                self.stats.steps += 1;
                let factor = match self.settings.step_control {
                    StepControl::Standard => SAFETY * err.max(1e-10).powf(-0.2),
                    StepControl::Pi => {
                        SAFETY
                            * err.max(1e-10).powf(-(0.2 - 0.75 * PI_BETA))
                            * self.err_prev.powf(PI_BETA)
                    }
                };
                let fac_max = if self.last_rejected { 1.0 } else { FAC_MAX };
                let proposed = h * factor.clamp(FAC_MIN, fac_max);
                // A step shortened to hit `t_limit` says nothing about the
                // controller's step: keep the larger of the two.
                let proposed = if h_limited {
                    proposed.max(self.h)
                } else {
                    proposed
                };
                self.h = proposed.clamp(self.settings.h_min, self.settings.h_max);
                self.err_prev = err.max(1e-4);
                self.last_rejected = false;
                return Ok(h);
            }
            self.stats.rejected_steps += 1;
            self.last_rejected = true;
            if h <= self.settings.h_min {
                return Err(IntegrationError::StepTooSmall { t: self.t, h });
            }
            let factor = (SAFETY * err.powf(-0.2)).clamp(FAC_MIN, 1.0);
            self.h = (h * factor).max(self.settings.h_min);
        }
    }

    /// Starting step size for an order-5 method (HNW I §II.4, algorithm on p. 169).
    fn initial_step<S: OdeSystem + ?Sized>(&mut self, system: &mut S, y: &[f32]) -> f64 {
        let n = self.dim;
        let (atol, rtol) = (self.settings.atol as f32, self.settings.rtol as f32);
        let norm = self.settings.error_norm;
        let scale = |v: f32| atol + rtol * v.abs();
        let (k1, rest) = self.stages.split_at_mut(n);
        let d0 = vector_norm(y.iter().map(|&v| v / scale(v)), n, norm);
        let d1 = vector_norm(k1.iter().zip(y).map(|(&f, &v)| f / scale(v)), n, norm);
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        };
        for ((tr, yi), fi) in self.trial.iter_mut().zip(y).zip(k1.iter()) {
            *tr = yi + h0 as f32 * fi;
        }
        let f1 = &mut rest[..n];
        system.rhs(self.t + h0, &self.trial, f1);
        self.stats.rhs_evals += 1;
        let d2 = vector_norm(
            f1.iter()
                .zip(k1.iter())
                .zip(y)
                .map(|((&a, &b), &v)| (a - b) / scale(v)),
            n,
            norm,
        ) / h0;
        let dmax = d1.max(d2);
        let h1 = if dmax <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / dmax).powf(0.2)
        };
        (100.0 * h0)
            .min(h1)
            .clamp(self.settings.h_min, self.settings.h_max)
    }
}

/// `out ← y + h Σ_j a_j k_j` over the first `a.len()` stages in `ks`.
fn combine(out: &mut [f32], y: &[f32], h: f32, a: &[f64], ks: &[f32], n: usize) {
    let mut coeffs = [0.0f32; 7];
    for (c, &aj) in coeffs.iter_mut().zip(a) {
        *c = h * aj as f32;
    }
    let m = a.len();
    for i in 0..n {
        let mut acc = 0.0f32;
        for (j, c) in coeffs[..m].iter().enumerate() {
            acc += c * ks[j * n + i];
        }
        out[i] = y[i] + acc;
    }
}

/// `‖h Σ_j e_j k_j / (atol + rtol·max(|y|, |y_new|))‖`.
#[allow(clippy::too_many_arguments)]
fn scaled_error(
    ks: &[f32],
    y: &[f32],
    y_new: &[f32],
    h: f32,
    atol: f32,
    rtol: f32,
    n: usize,
    norm: ErrorNorm,
) -> f64 {
    let mut e = [0.0f32; 7];
    for (c, &ej) in e.iter_mut().zip(&DP_E) {
        *c = h * ej as f32;
    }
    let scaled = (0..n).map(|i| {
        let mut acc = 0.0f32;
        for (j, c) in e.iter().enumerate() {
            acc += c * ks[j * n + i];
        }
        acc / (atol + rtol * y[i].abs().max(y_new[i].abs()))
    });
    vector_norm(scaled, n, norm)
}

/// Max or RMS norm of an iterator of `n` values, in `f64`; NaN propagates.
fn vector_norm(values: impl Iterator<Item = f32>, n: usize, norm: ErrorNorm) -> f64 {
    match norm {
        ErrorNorm::Max => values.fold(0.0f64, |m, v| {
            let a = f64::from(v.abs());
            if a.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(a)
            }
        }),
        ErrorNorm::Rms => {
            let sum: f64 = values.map(|v| f64::from(v) * f64::from(v)).sum();
            (sum / n.max(1) as f64).sqrt()
        }
    }
}

fn all_finite(x: &[f32]) -> bool {
    x.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y' = A y for a 2×2 rotation-decay matrix, exact solution known.
    struct Spiral;
    impl OdeSystem for Spiral {
        fn dim(&self) -> usize {
            2
        }
        fn rhs(&mut self, _t: f64, y: &[f32], dy: &mut [f32]) {
            dy[0] = -0.1 * y[0] - y[1];
            dy[1] = y[0] - 0.1 * y[1];
        }
    }

    #[test]
    fn derivative_is_kept_at_the_current_point() {
        for kind in [
            IntegratorKind::Euler,
            IntegratorKind::Rk4,
            IntegratorKind::Rk45,
            IntegratorKind::EulerMaruyama,
        ] {
            let settings = IntegratorSettings {
                kind,
                ..IntegratorSettings::default()
            };
            let mut integ = Integrator::new(settings, 2);
            let mut y = [1.0f32, 0.5];
            integ.reset(&mut Spiral, 0.0, &y).unwrap();
            for _ in 0..5 {
                integ.step(&mut Spiral, &mut y, 10.0).unwrap();
            }
            let mut dy = [0.0f32; 2];
            Spiral.rhs(integ.time(), &y, &mut dy);
            assert_eq!(integ.derivative(), &dy[..], "{kind:?}");
            let stats = integ.stats();
            let expected_evals = match kind {
                IntegratorKind::Rk45 => 2 + 6 * (stats.steps + stats.rejected_steps),
                k => 1 + k.evals_per_step() * stats.steps,
            };
            assert_eq!(stats.rhs_evals, expected_evals, "{kind:?}");
        }
    }

    #[test]
    fn steps_stop_exactly_at_the_limit() {
        let mut integ = Integrator::new(IntegratorSettings::default(), 2);
        let mut y = [1.0f32, 0.0];
        integ.integrate(&mut Spiral, &mut y, 0.0, 3.3).unwrap();
        assert!((integ.time() - 3.3).abs() < 1e-12);
    }

    struct Noisy;
    impl OdeSystem for Noisy {
        fn dim(&self) -> usize {
            1
        }
        fn rhs(&mut self, _t: f64, y: &[f32], dy: &mut [f32]) {
            dy[0] = -y[0];
        }
        fn diffusion(&mut self, _t: f64, g: &mut [f32]) -> bool {
            g[0] = 0.5;
            true
        }
    }

    #[test]
    fn noisy_system_needs_euler_maruyama() {
        let mut integ = Integrator::new(IntegratorSettings::default(), 1);
        assert_eq!(
            integ.reset(&mut Noisy, 0.0, &[0.0]),
            Err(IntegrationError::NoiseNeedsEulerMaruyama)
        );
    }

    /// Ornstein–Uhlenbeck dy = −y dt + σ dW has stationary variance σ²/2.
    #[test]
    fn euler_maruyama_reaches_the_stationary_variance() {
        let settings = IntegratorSettings {
            kind: IntegratorKind::EulerMaruyama,
            dt: 0.01,
            noise_seed: 7,
            ..IntegratorSettings::default()
        };
        let mut integ = Integrator::new(settings, 1);
        let mut y = [0.0f32];
        integ.reset(&mut Noisy, 0.0, &y).unwrap();
        let (mut sum2, mut count) = (0.0f64, 0u32);
        while integ.time() < 2000.0 {
            integ.step(&mut Noisy, &mut y, 2000.0).unwrap();
            if integ.time() > 10.0 {
                sum2 += f64::from(y[0]) * f64::from(y[0]);
                count += 1;
            }
        }
        let var = sum2 / f64::from(count);
        // Exact for EM with step h: σ² h / (1 − (1 − h)²) ≈ 0.1256 (h = 0.01).
        assert!((var - 0.1256).abs() < 0.012, "variance {var}");
    }
}
