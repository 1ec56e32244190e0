//! One learning step of any rule: settle (or back-propagate), measure, and
//! return the per-layer gradients — the piece the training loop, the angle
//! measurement and the circuit share.

use super::backprop::{adversarial_input, backprop, backprop_with_input_gradient};
use super::config::LearningParams;
use super::dual::{DualInference, DualParams, DualState};
use super::{AdversaryKind, RuleKind, Schedule};
use crate::linalg::Mat;
use crate::network::{argmax_columns, Network};
use crate::substrate::OuterProductGradient;

/// What one step produced.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    /// Gradient per layer (not yet applied).
    pub gradients: Vec<OuterProductGradient>,
    /// Summed loss of the free prediction over the batch.
    pub loss_sum: f64,
    /// Correct free predictions in the batch.
    pub correct: usize,
    /// max |s±| per layer after inference (index 0 = layer 1).
    pub layer_max_state: Vec<f32>,
}

/// A hook that replaces the discrete schedule (the continuous-time circuit
/// implements it). It receives the state after the forward initialisation
/// and output nudge and must leave it settled.
pub trait Settler {
    /// Settles `state`; returns max |s±| per layer.
    fn settle(&mut self, inference: &mut DualInference<'_>, y: &Mat) -> Vec<f32>;
}

/// A configured learning rule with its reusable buffers.
#[derive(Clone)]
pub struct Learner {
    /// Which rule.
    pub rule: RuleKind,
    /// DP-family parameters (`None` for BP and adversarial BP).
    pub dual: Option<DualParams>,
    /// The discrete inference schedule.
    pub schedule: Schedule,
    adversary: AdversaryKind,
    adv_epsilon: f32,
    /// The dyadic state of the last step (inspected by tests and the circuit).
    pub state: DualState,
}

impl Learner {
    /// Builds the rule from its checked `[learning]` section.
    pub fn new(params: &LearningParams) -> Self {
        Self {
            rule: params.rule(),
            dual: params.dual().cloned(),
            schedule: params.schedule(),
            adversary: params.adversary(),
            adv_epsilon: params.adv_epsilon(),
            state: DualState::default(),
        }
    }

    /// One step on batch (x, y) with the discrete schedule, or with `settler`
    /// in its place when given.
    pub fn step(
        &mut self,
        net: &mut Network,
        x: &Mat,
        y: &Mat,
        settler: Option<&mut dyn Settler>,
    ) -> StepOutcome {
        match &self.dual {
            Some(params) => {
                let mut inf = DualInference {
                    params,
                    net,
                    state: &mut self.state,
                };
                inf.forward_init(x, y);
                let layer_max_state = match settler {
                    Some(s) => s.settle(&mut inf, y),
                    None => {
                        let change = inf.run_schedule(self.schedule, y);
                        inf.report(change).layer_max_state
                    }
                };
                let gradients = inf.local_gradients();
                let free = &inf.state.free_output;
                StepOutcome {
                    loss_sum: inf.net.loss.total(free, y),
                    correct: count_correct(free, y),
                    gradients,
                    layer_max_state,
                }
            }
            None => {
                let pass = if self.rule == RuleKind::BpAdv {
                    backprop_with_input_gradient(net, x, y)
                } else {
                    backprop(net, x, y)
                };
                let loss_sum = net.loss.total(&pass.output, y);
                let correct = count_correct(&pass.output, y);
                if self.rule == RuleKind::BpAdv {
                    let x_adv = adversarial_input(
                        self.adversary,
                        self.adv_epsilon,
                        x,
                        &pass.input_gradient,
                    );
                    let adv = backprop(net, &x_adv, y);
                    StepOutcome {
                        gradients: adv.gradients,
                        loss_sum,
                        correct,
                        layer_max_state: pass.layer_max_state,
                    }
                } else {
                    StepOutcome {
                        gradients: pass.gradients,
                        loss_sum,
                        correct,
                        layer_max_state: pass.layer_max_state,
                    }
                }
            }
        }
    }
}

/// Number of columns whose argmax matches the one-hot target's.
pub fn count_correct(output: &Mat, y: &Mat) -> usize {
    argmax_columns(output)
        .into_iter()
        .zip(argmax_columns(y))
        .filter(|(a, b)| a == b)
        .count()
}

/// Per-epoch statistics of a continuous-time settler.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SettleSummary {
    /// Mean settle time (τ).
    pub time_mean: f64,
    /// Largest settle time (τ).
    pub time_max: f64,
    /// Mean integrator steps.
    pub steps_mean: f64,
    /// Largest number of steps.
    pub steps_max: f64,
}

/// A settler whose statistics the loop can collect per epoch.
pub trait EpochSettler: Settler {
    /// Statistics since the last call (then reset).
    fn take_summary(&mut self) -> Option<SettleSummary>;
    /// A divergence the settler detected itself since the last call (then
    /// reset): `(layer, reason, value)`, e.g. a circuit that kept growing
    /// or is held only by its amplifier rails.
    fn take_divergence(&mut self) -> Option<(usize, String, f64)> {
        None
    }
}
