//! The learning rules of DESIGN.md §1: back-propagation, dual propagation
//! (DP), its adjoint variant DP⊤, damped DP (Appendix F of the paper) and
//! adversarially trained BP, with the inference schedules that settle the
//! dyadic states.
//!
//! A rule only computes states and a gradient (an [`OuterProductGradient`]
//! per layer); it knows nothing of progress bars, files or divergence
//! policy — the training executor (a layer above) runs it.
//!
//! [`OuterProductGradient`]: crate::substrate::OuterProductGradient

pub mod backprop;
pub mod config;
pub mod dual;
pub mod learner;
pub mod schedule;

pub use schedule::Schedule;

use serde::{Deserialize, Serialize};

/// Which learning rule (TOML `learning.rule`, CLI `--rule`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    /// Exact back-propagation of the loss.
    Bp,
    /// Original dual propagation (Høier et al. 2023): plain fixed point of
    /// the paper's Eq. 2, α in the hidden rule as well as at the output.
    Dp,
    /// Adjoint dual propagation DP⊤ (Høier & Zach 2024, Eq. 19/22): stable for every α.
    Dpt,
    /// DP with the stabilised (dampened) fixed-point updates of Appendix F.
    DpDamped,
    /// Back-propagation on adversarially perturbed inputs (FGSM or gradient step).
    BpAdv,
}

impl std::fmt::Display for RuleKind {
    /// The rule's name in configurations and on the command line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleKind::Bp => "bp",
            RuleKind::Dp => "dp",
            RuleKind::Dpt => "dpt",
            RuleKind::DpDamped => "dp-damped",
            RuleKind::BpAdv => "bp-adv",
        })
    }
}

impl RuleKind {
    /// Whether the rule settles dyadic states (DP family) rather than back-propagating.
    pub fn is_dual(self) -> bool {
        matches!(self, RuleKind::Dp | RuleKind::Dpt | RuleKind::DpDamped)
    }

    /// The authors' reference schedule for this rule: `fwbw:6` for DP/DP⊤,
    /// `fwbw:16` for damped DP (DESIGN.md §1).
    pub fn default_schedule(self) -> Schedule {
        match self {
            RuleKind::DpDamped => Schedule::FwBw { rounds: 16 },
            _ => Schedule::FwBw { rounds: 6 },
        }
    }
}

/// The input perturbation of adversarial training (`--adv`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum AdversaryKind {
    /// x' = x + ε·sign(∇ₓℓ) (fast gradient sign method, Goodfellow et al. 2015).
    Fgsm,
    /// x' = x + ε·∇ₓℓ (a plain gradient-ascent step on the input).
    Grad,
}
