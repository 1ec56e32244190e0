//! The result of a run, as written to `result.json`, printed by `--json`
//! and appended to a sweep's JSON-lines file.
//!
//! Every number that can fail to exist (a diverged run has no meaningful
//! accuracy) is an `Option`, serialised as `null` — never NaN.

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
