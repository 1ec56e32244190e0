//! The training loop's hook for `training.dynamics = "ode"`: settles the
//! dyads of a batch with the continuous-time circuit instead of a discrete
//! schedule, then leaves them in the rule's [`DualState`] so the local
//! weight rule applies unchanged.

use anyhow::Result;

use super::dyad::{DyadCircuit, StateLayout};
use super::integrator::Integrator;
use super::settle::{settle, SettleCriteria, SettleReport, SettleStatus};
use super::{CircuitConfig, CircuitParams};
use crate::linalg::Mat;
use crate::rules::dual::{DualInference, DualState};
use crate::rules::learner::{EpochSettler, SettleSummary, Settler};

/// Settles batches with the continuous-time circuit, keeping its integrator,
/// state vector and amplifier arrays between batches (no per-step allocation;
/// the amplifier mismatch is drawn once, like a chip's).
///
/// ```no_run
/// # use dyadsim::circuit::{CircuitConfig, settler::CircuitSettler};
/// let settler = CircuitSettler::new(&CircuitConfig::default().check().unwrap());
/// // experiment::train::run_with(cfg, data, network, Some(Box::new(settler)), observers)
/// ```
pub struct CircuitSettler {
    config: CircuitConfig,
    criteria: SettleCriteria,
    circuit: Option<DyadCircuit>,
    integrator: Option<Integrator>,
    v: Vec<f32>,
    last: Option<SettleReport>,
    pending_divergence: Option<SettleReport>,
    epoch: EpochAccumulator,
}

#[derive(Clone, Copy, Debug, Default)]
struct EpochAccumulator {
    count: u64,
    time_sum: f64,
    time_max: f64,
    steps_sum: f64,
    steps_max: f64,
}

impl CircuitSettler {
    /// Prepares an empty settler for the checked `config` (buffers are
    /// sized at the first batch).
    pub fn new(config: &CircuitParams) -> Result<Self> {
        let config: &CircuitConfig = config;
        Ok(Self {
            criteria: config.settle_criteria(),
            config: config.clone(),
            circuit: None,
            integrator: None,
            v: Vec::new(),
            last: None,
            pending_divergence: None,
            epoch: EpochAccumulator::default(),
        })
    }

    /// The circuit settings.
    pub fn config(&self) -> &CircuitConfig {
        &self.config
    }

    /// The report of the last settle.
    pub fn last_report(&self) -> Option<&SettleReport> {
        self.last.as_ref()
    }

    /// The state layout of the last settle (for reading trajectories).
    pub fn layout(&self) -> Option<&StateLayout> {
        self.circuit.as_ref().map(|c| c.layout())
    }

    /// The circuit (amplifier arrays) once built.
    pub fn circuit(&self) -> Option<&DyadCircuit> {
        self.circuit.as_ref()
    }

    /// Settles the dyads of `inference` (after `forward_init`) for targets
    /// `y`, calling `observe(t, v, dv/dt)` at the start and after every
    /// step, and writes the final dyads into `inference.state`. Returns the
    /// report and max |s±| per layer.
    pub fn settle_observed(
        &mut self,
        inference: &mut DualInference<'_>,
        y: &Mat,
        observe: impl FnMut(f64, &[f32], &[f32]),
    ) -> (SettleReport, Vec<f32>) {
        let net = &mut *inference.net;
        let params = inference.params;
        let batch = inference.state.input.ncols();
        let rebuild = !matches!(&self.circuit, Some(c) if c.fits(net, params));
        if rebuild {
            self.circuit = Some(DyadCircuit::new(net, params, &self.config.amplifier, batch));
        }
        let Some(circuit) = self.circuit.as_mut() else {
            unreachable!("circuit built above")
        };
        circuit.set_batch(batch);
        circuit.set_hold_input_drive(self.config.hold_input_drive);
        let dim = circuit.layout().dim();
        if self.v.len() != dim {
            self.v.resize(dim, 0.0);
        }
        if !matches!(&self.integrator, Some(i) if i.dim() == dim) {
            self.integrator = Some(Integrator::new(self.config.integrator_settings(), dim));
        }
        let Some(integrator) = self.integrator.as_mut() else {
            unreachable!("integrator built above")
        };
        circuit.initial_state(inference.state, &mut self.v);
        let state: &DualState = inference.state;
        let report = {
            let mut system = circuit.system(net, &state.input, y);
            settle(
                &mut system,
                &mut self.v,
                integrator,
                &self.criteria,
                0.0,
                observe,
            )
        };
        let layer_max = circuit.write_back(&self.v, inference.state, params.alpha);
        self.record(&report);
        (report, layer_max)
    }

    fn record(&mut self, report: &SettleReport) {
        let e = &mut self.epoch;
        e.count += 1;
        e.time_sum += report.settle_time;
        e.time_max = e.time_max.max(report.settle_time);
        e.steps_sum += report.steps as f64;
        e.steps_max = e.steps_max.max(report.steps as f64);
        if report.status == SettleStatus::Diverged && self.pending_divergence.is_none() {
            self.pending_divergence = Some(*report);
        }
        self.last = Some(*report);
    }
}

impl Settler for CircuitSettler {
    fn settle(&mut self, inference: &mut DualInference<'_>, y: &Mat) -> Vec<f32> {
        self.settle_observed(inference, y, |_, _, _| {}).1
    }
}

impl EpochSettler for CircuitSettler {
    fn take_summary(&mut self) -> Option<SettleSummary> {
        let e = std::mem::take(&mut self.epoch);
        (e.count > 0).then(|| SettleSummary {
            time_mean: e.time_sum / e.count as f64,
            time_max: e.time_max,
            steps_mean: e.steps_sum / e.count as f64,
            steps_max: e.steps_max,
        })
    }

    fn take_divergence(&mut self) -> Option<(usize, String, f64)> {
        self.pending_divergence.take().and_then(|r| {
            r.divergence.map(|d| {
                let reason = serde_json::to_value(d.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", d.reason));
                (
                    d.layer,
                    format!("circuit_{reason}"),
                    f64::from(r.state_norm),
                )
            })
        })
    }
}
