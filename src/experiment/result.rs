//! The result of a run, as written to `result.json`, printed by `--json`
//! and appended to a sweep's JSON-lines file.
//!
//! Every number that can fail to exist (a diverged run has no meaningful
//! accuracy) is an `Option`, serialised as `null` — never NaN.

pub use crate::metrics::DivergenceCause;
use serde::{Deserialize, Serialize};

/// Whether a run finished normally.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Trained for every epoch with bounded states and weights.
    #[default]
    Ok,
    /// States or weights became non-finite or ran away (see `diverged_at`).
    Diverged,
}

impl std::fmt::Display for RunStatus {
    /// The name the configuration and result files use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Ok => "ok",
            RunStatus::Diverged => "diverged",
        })
    }
}

/// Where and why a run was flagged as diverged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DivergenceEvent {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Batch within the epoch (1-based).
    pub batch: usize,
    /// Weight layer or state layer (1-based, layer k = output of `W_k`).
    pub layer: usize,
    /// What was detected: `non_finite_state`, `runaway_state`,
    /// `non_finite_weight`, `runaway_weight`, or a circuit-specific reason.
    pub reason: String,
    /// The offending magnitude (max |s| or max |w|; infinity if non-finite).
    pub value: f64,
    /// Why the run diverged ([`crate::metrics::diagnose_divergence`]);
    /// absent in results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<DivergenceCause>,
    /// ‖W_k‖₂ of every layer when the run diverged (power iteration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_norms: Vec<f64>,
    /// ‖W_k‖₂ of every layer at the start of the epoch it diverged in (the
    /// run's initial weights in epoch 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_norms_before: Vec<f64>,
    /// The network's Lipschitz estimate ‖W_L⋯W_1‖₂ when it diverged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lipschitz: Option<f64>,
}

impl DivergenceEvent {
    /// One line for people: what diverged where, why and what to change.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} in layer {} ({:.3e}) at epoch {}, batch {}",
            self.reason.replace('_', " "),
            self.layer,
            self.value,
            self.epoch,
            self.batch
        );
        let norms = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.cause {
            Some(DivergenceCause::Writes) => text.push_str(&format!(
                "; cause: the writes drove the weights away (‖W_k‖₂ {} at the epoch's start, {} now): lower the learning rate (crossbar.lr) or use --algorithm ttv2 or --write mixed_precision",
                norms(&self.weight_norms_before),
                norms(&self.weight_norms)
            )),
            Some(DivergenceCause::LoopGain) => text.push_str(&format!(
                "; cause: the inference's loop gain (‖W_k‖₂ {} now, {} at the epoch's start; Lipschitz {}) is too large for the schedule: lower learning.beta or learning.alpha or the weight scale, or use dp-damped",
                norms(&self.weight_norms),
                norms(&self.weight_norms_before),
                self.lipschitz.map_or("n/a".to_string(), |l| format!("{l:.3e}"))
            )),
            None => {}
        }
        text
    }
}

/// Measurements after one epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (free-phase prediction).
    pub train_loss: Option<f64>,
    /// Training accuracy of the free-phase prediction, 0..1.
    pub train_accuracy: Option<f64>,
    /// Accuracy on the validation split (training images not used), 0..1.
    pub validation_accuracy: Option<f64>,
    /// Test accuracy, 0..1.
    pub test_accuracy: Option<f64>,
    /// Lipschitz estimate ‖W_L⋯W_1‖₂.
    pub lipschitz: Option<f64>,
    /// Largest |s±| seen in any layer during the epoch's inference.
    pub max_state: f64,
    /// Angle (degrees) between the rule's gradient and BP's on a fixed batch,
    /// when `training.track_angle` is on.
    pub gradient_angle_deg: Option<f64>,
    /// Mean settle time (units of τ) of the continuous-time circuit.
    pub settle_time_mean: Option<f64>,
    /// Largest settle time (units of τ) in the epoch.
    pub settle_time_max: Option<f64>,
    /// Mean integrator steps per settle.
    pub settle_steps_mean: Option<f64>,
    /// Largest number of integrator steps for one settle.
    pub settle_steps_max: Option<f64>,
    /// Training samples per second of wall time in this epoch.
    pub samples_per_second: f64,
    /// `ok` or `diverged`.
    pub status: RunStatus,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// `ok` or `diverged`.
    pub status: RunStatus,
    /// Where the run diverged, if it did.
    pub diverged_at: Option<DivergenceEvent>,
    /// Final test accuracy, 0..1 (`null` when the weights are not finite).
    pub test_accuracy: Option<f64>,
    /// Final validation accuracy, 0..1 (`null` without a validation split).
    pub validation_accuracy: Option<f64>,
    /// Mean training loss of the last epoch.
    pub train_loss: Option<f64>,
    /// Training accuracy of the last epoch.
    pub train_accuracy: Option<f64>,
    /// Final Lipschitz estimate ‖W_L⋯W_1‖₂.
    pub lipschitz: Option<f64>,
    /// Largest |s±| seen during training.
    pub max_state: f64,
    /// Training throughput over the whole run.
    pub samples_per_second: f64,
    /// Wall time of the run in seconds.
    pub wall_seconds: f64,
    /// Training samples processed.
    pub samples_seen: u64,
    /// One record per completed epoch.
    pub epochs: Vec<EpochRecord>,
    /// Hardware statistics of a crossbar run (per layer and totals):
    /// pulses, stuck devices, conductance range used, read counts.
    #[serde(default)]
    pub hardware: Option<crate::substrate::HardwareSummary>,
}
