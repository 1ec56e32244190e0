//! The dyadic neuron circuit in continuous time (DESIGN.md §3).
//!
//! On a chip nothing sweeps layers: every compartment of every layer
//! integrates its currents at once. Per hidden neuron of layer `k`,
//!
//! ```text
//!     τ dv⁺_k/dt = −v⁺_k + I_ff,k + u⁺_k(I_fb,k),    s⁺_k = f(v⁺_k),
//!     τ dv⁻_k/dt = −v⁻_k + I_ff,k − u⁻_k(I_fb,k),    s⁻_k = f(v⁻_k),
//!     I_ff,k = W_k s̄_{k−1} + b_k,   I_fb,k = W_{k+1}ᵀ δ_{k+1},
//! ```
//!
//! where `u±` are the nudging amplifiers ([`amplifier`], ideally `g± I_fb`).
//! The module provides the numerical machinery:
//! - [`integrator`]: Euler, RK4, adaptive Dormand–Prince 5(4) and
//!   Euler–Maruyama, on flat `f32` batch states, allocation-free per step;
//! - [`amplifier`]: the nudging amplifiers (gains from α, mismatch, offset,
//!   noise, rails);
//! - [`mod@settle`]: the settle criterion `‖dv/dt‖∞·τ < tol` and divergence
//!   detection, reported as a [`settle::SettleReport`];
//! - [`dyad`]: the dyadic network itself as an ODE system over a
//!   [`crate::network::Network`]'s weight arrays;
//! - [`settler`]: [`CircuitSettler`], the hook the training loop calls for
//!   `training.dynamics = "ode"`.
//!
//! Time is measured in units of τ throughout; [`CircuitConfig::tau_ns`]
//! converts to seconds for latency estimates.
//!
//! **Noisy reads.** On a crossbar with read noise, output noise or ADC/DAC
//! quantisation, every evaluation re-reads the arrays and gets fresh noise,
//! so the right-hand side is not a smooth function of the state: the
//! adaptive `rk45` takes the noise for truncation error and shrinks its
//! step, and `‖dv/dt‖` never falls below the noise floor. For such runs use
//! a fixed-step integrator (`euler`/`rk4`, where `dt` plays the role of the
//! read time `t_read/τ`: noise fresh every `dt` τ), set `tol` above the
//! floor, or treat `t_max` as the time at which the controller samples the
//! dyads (the settle is then reported `not_settled`).

pub mod amplifier;
pub mod dyad;
pub mod integrator;
pub mod settle;
pub mod settler;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

pub use amplifier::{nominal_gains, AmplifierConfig, NudgingAmplifier};
pub use dyad::{CircuitSystem, DyadCircuit, StateLayout};
pub use integrator::{
    ErrorNorm, Integrator, IntegratorKind, IntegratorSettings, IntegratorStats, OdeSystem,
    StepControl,
};
pub use settle::{
    settle, Divergence, DivergenceReason, SettleCriteria, SettleReport, SettleStatus, Settling,
};
pub use settler::CircuitSettler;

/// Circuit settings (TOML `[circuit]`): integrator, settle criterion,
/// divergence policy and amplifier non-idealities. Every field has a default.
///
/// ```
/// use dyadsim::circuit::CircuitConfig;
/// let c: CircuitConfig = toml::from_str("integrator = \"rk4\"\ndt = 0.25\n[amplifier]\ngain_mismatch = 0.2").unwrap();
/// c.validate().unwrap();
/// assert_eq!(c.integrator_settings().dt, 0.25);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// `euler`, `rk4`, `rk45` (default) or `euler_maruyama` (required with
    /// amplifier noise). Prefer a fixed-step method on a noisy crossbar (module docs).
    pub integrator: IntegratorKind,
    /// Fixed step of euler/rk4/euler_maruyama, in τ (0 < dt ≤ 2.5; Euler is
    /// unstable above 2 on the leak alone).
    pub dt: f64,
    /// rk45 absolute error tolerance (> 0); default `tol / 10`. Near the
    /// fixed point the adaptive step rides its stability boundary and the
    /// residual ‖dv/dt‖ hovers at the level of the local error, so the error
    /// tolerance must sit below the settle tolerance.
    pub atol: Option<f64>,
    /// rk45 relative error tolerance (≥ 0); default `tol`.
    pub rtol: Option<f64>,
    /// rk45 smallest step before the run is declared a step-size collapse (τ).
    pub h_min: f64,
    /// rk45 largest step (τ).
    pub h_max: f64,
    /// rk45 first step (τ); 0 = automatic (HNW I §II.4).
    pub h0: f64,
    /// rk45 step-size controller: `pi` (default) or `standard`.
    pub step_control: StepControl,
    /// rk45 error norm: `max` (default, every compartment) or `rms`.
    pub error_norm: ErrorNorm,
    /// Settle tolerance on `‖dv/dt‖∞ · τ` (> 0). With noise currents or noisy
    /// reads the residual fluctuates at the noise level; below that the run
    /// stops at `t_max` as `not_settled`.
    pub tol: f32,
    /// Give up at this time (τ units, > 0).
    pub t_max: f64,
    /// Give up after this many accepted steps.
    pub max_steps: u64,
    /// `|v|` above this is a runaway (> 0).
    pub runaway_bound: f32,
    /// Fraction (0, 1] of a layer's amplifier outputs on a rail that marks a
    /// rail-bound runaway.
    pub rail_runaway_fraction: f32,
    /// Seed of the amplifier output-noise stream (Euler–Maruyama).
    pub noise_seed: u64,
    /// Membrane time constant τ in nanoseconds, for latency estimates only
    /// (the simulation is in τ units). The default 100 ns is an assumption
    /// on the scale of a crossbar read (ISAAC: 100 ns), not a measured figure.
    pub tau_ns: f64,
    /// Read the first array once per settle instead of at every evaluation:
    /// its input x is constant, so on a noise-free substrate this is exact
    /// and saves that read (≈ 40 % of the multiply-accumulates on
    /// 784-512-512-10); on a noisy crossbar it freezes that one read's noise
    /// for the whole settle. Off by default (every current is re-read).
    pub hold_input_drive: bool,
    /// Nudging amplifier non-idealities.
    pub amplifier: AmplifierConfig,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        let i = IntegratorSettings::default();
        let s = SettleCriteria::default();
        Self {
            integrator: i.kind,
            dt: i.dt,
            atol: None,
            rtol: None,
            h_min: i.h_min,
            h_max: i.h_max,
            h0: i.h0,
            step_control: i.step_control,
            error_norm: i.error_norm,
            tol: s.tol,
            t_max: s.t_max,
            max_steps: s.max_steps,
            runaway_bound: s.runaway_bound,
            rail_runaway_fraction: s.rail_runaway_fraction,
            noise_seed: i.noise_seed,
            tau_ns: 100.0,
            hold_input_drive: false,
            amplifier: AmplifierConfig::default(),
        }
    }
}

/// A checked `[circuit]` section, built only by [`CircuitConfig::check`]:
/// what the settler receives, so nothing deeper re-validates it.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitParams(CircuitConfig);

impl std::ops::Deref for CircuitParams {
    type Target = CircuitConfig;
    fn deref(&self) -> &CircuitConfig {
        &self.0
    }
}

impl CircuitConfig {
    /// Checks the section; the checked form is what the settler takes.
    pub fn check(&self) -> Result<CircuitParams> {
        self.validate()?;
        Ok(CircuitParams(self.clone()))
    }

    /// Checks every field once; errors name the TOML field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.dt > 0.0 && self.dt <= 2.5,
            "circuit.dt = {} must be in (0, 2.5] (τ units)",
            self.dt
        );
        if let Some(atol) = self.atol {
            ensure!(atol > 0.0, "circuit.atol = {atol} must be > 0");
        }
        if let Some(rtol) = self.rtol {
            ensure!(rtol >= 0.0, "circuit.rtol = {rtol} must be ≥ 0");
        }
        ensure!(
            self.h_min > 0.0 && self.h_min <= self.h_max,
            "circuit.h_min = {} must be > 0 and ≤ circuit.h_max = {}",
            self.h_min,
            self.h_max
        );
        ensure!(
            self.h0 >= 0.0 && self.h0 <= self.h_max,
            "circuit.h0 = {} must be in [0, h_max = {}] (0 = automatic)",
            self.h0,
            self.h_max
        );
        ensure!(
            self.tol > 0.0 && self.tol.is_finite(),
            "circuit.tol = {} must be > 0",
            self.tol
        );
        ensure!(
            self.t_max > 0.0 && self.t_max.is_finite(),
            "circuit.t_max = {} must be > 0 (τ units)",
            self.t_max
        );
        ensure!(self.max_steps > 0, "circuit.max_steps must be > 0");
        ensure!(
            self.runaway_bound > 0.0,
            "circuit.runaway_bound = {} must be > 0",
            self.runaway_bound
        );
        ensure!(
            self.rail_runaway_fraction > 0.0 && self.rail_runaway_fraction <= 1.0,
            "circuit.rail_runaway_fraction = {} must be in (0, 1]",
            self.rail_runaway_fraction
        );
        ensure!(
            self.tau_ns > 0.0,
            "circuit.tau_ns = {} must be > 0",
            self.tau_ns
        );
        self.amplifier.validate()?;
        ensure!(
            self.amplifier.noise == 0.0 || self.integrator == IntegratorKind::EulerMaruyama,
            "circuit.amplifier.noise = {} needs circuit.integrator = \"euler_maruyama\" (got {:?})",
            self.amplifier.noise,
            self.integrator
        );
        Ok(())
    }

    /// The integrator part.
    pub fn integrator_settings(&self) -> IntegratorSettings {
        IntegratorSettings {
            kind: self.integrator,
            dt: self.dt,
            atol: self.atol.unwrap_or(f64::from(self.tol) / 10.0),
            rtol: self.rtol.unwrap_or(f64::from(self.tol)),
            h_min: self.h_min,
            h_max: self.h_max,
            h0: self.h0,
            step_control: self.step_control,
            error_norm: self.error_norm,
            noise_seed: self.noise_seed,
        }
    }

    /// The stopping rules.
    pub fn settle_criteria(&self) -> SettleCriteria {
        SettleCriteria {
            tol: self.tol,
            t_max: self.t_max,
            max_steps: self.max_steps,
            runaway_bound: self.runaway_bound,
            rail_runaway_fraction: self.rail_runaway_fraction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_round_trips_through_toml() {
        let c = CircuitConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back: CircuitConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_fields_and_bad_ranges_are_rejected_by_name() {
        assert!(toml::from_str::<CircuitConfig>("tolerance = 1e-3").is_err());
        let c = CircuitConfig {
            amplifier: AmplifierConfig {
                noise: 0.01,
                ..AmplifierConfig::default()
            },
            ..CircuitConfig::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("euler_maruyama"), "{msg}");
        let c = CircuitConfig {
            t_max: -1.0,
            ..CircuitConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("circuit.t_max"));
    }
}
