//! The `[learning]` section: the raw, serialisable settings of the rule and
//! their checked form [`LearningParams`], which is all the rules receive.

use super::dual::{DualParams, DualVariant};
use super::{AdversaryKind, RuleKind, Schedule};
use crate::check::{check_positive, check_range};
use crate::network::Loss;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The learning rule (TOML `[learning]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// `bp`, `dp`, `dpt`, `dp-damped` or `bp-adv`.
    pub rule: RuleKind,
    /// Nudging asymmetry α ∈ [0, 1] (½ = symmetric).
    pub alpha: f32,
    /// DP only: α of the hidden-layer rule if it differs from the output's
    /// (½ gives the 2023 paper's form).
    pub hidden_alpha: Option<f32>,
    /// Nudging strength β > 0.
    pub beta: f32,
    /// Inference schedule; default `fwbw:6` (`fwbw:16` for dp-damped).
    pub schedule: Option<Schedule>,
    /// Treat the input as a dyad too (input-robust DP, paper §6.1).
    pub robust_input: bool,
    /// Adversary of `bp-adv`.
    pub adv: AdversaryKind,
    /// Adversarial step size ε ≥ 0.
    pub adv_epsilon: f32,
    /// Power-iteration steps for damped DP's ‖W‖₂ estimates.
    pub power_iterations: usize,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            rule: RuleKind::Dpt,
            alpha: 0.5,
            hidden_alpha: None,
            beta: 0.5,
            schedule: None,
            robust_input: false,
            adv: AdversaryKind::Fgsm,
            adv_epsilon: 0.05,
            power_iterations: 5,
        }
    }
}

/// A checked `[learning]` section: the rule with its effective schedule and
/// DP-family parameters. Built only by [`LearningConfig::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct LearningParams {
    rule: RuleKind,
    dual: Option<DualParams>,
    schedule: Schedule,
    adversary: AdversaryKind,
    adv_epsilon: f32,
}

impl LearningParams {
    /// The rule.
    pub fn rule(&self) -> RuleKind {
        self.rule
    }
    /// The DP-family parameters (`None` for BP and adversarial BP).
    pub fn dual(&self) -> Option<&DualParams> {
        self.dual.as_ref()
    }
    /// The effective inference schedule (`learning.schedule`, else the rule's default).
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }
    /// The adversary of `bp-adv`.
    pub fn adversary(&self) -> AdversaryKind {
        self.adversary
    }
    /// The adversarial step size ε.
    pub fn adv_epsilon(&self) -> f32 {
        self.adv_epsilon
    }
}

impl LearningConfig {
    /// The checks no type can express (ranges, DP's output maximiser,
    /// flags without effect); `loss` is the network's output loss.
    pub fn check(&self, loss: Loss) -> Result<LearningParams> {
        let l = self;
        check_range(
            "learning.alpha",
            l.alpha as f64,
            0.0,
            1.0,
            "allowed range is [0, 1]",
        )?;
        if let Some(h) = l.hidden_alpha {
            check_range(
                "learning.hidden_alpha",
                h as f64,
                0.0,
                1.0,
                "allowed range is [0, 1]",
            )?;
        }
        check_positive("learning.beta", l.beta)?;
        check_range(
            "learning.adv_epsilon",
            l.adv_epsilon as f64,
            0.0,
            f64::MAX,
            "must be ≥ 0",
        )?;
        if l.rule == RuleKind::Dp && loss == Loss::Mse && (1.0 - l.alpha) * l.beta >= 1.0 {
            bail!(
                "learning.beta = {} with learning.alpha = {}: DP's least-squares output maximiser needs (1−α)·β < 1",
                l.beta,
                l.alpha
            );
        }
        if l.robust_input {
            // The input's mean moves by (α c⁺ − (1−α) c⁻) W_1ᵀ δ_1: zero for
            // DP⊤ (gains (1−α, α)) and for DP at hidden α = ½, so the flag
            // would only add reads.
            let hidden_alpha = l.hidden_alpha.unwrap_or(l.alpha);
            match l.rule {
                RuleKind::Dpt => bail!(
                    "learning.robust_input = true has no effect with learning.rule = \"dpt\": DP⊤'s nudging gains keep the input's mean at x (paper §6.1); use rule dp or dp-damped with α ≠ 0.5"
                ),
                RuleKind::Dp | RuleKind::DpDamped if hidden_alpha == 0.5 => bail!(
                    "learning.robust_input = true has no effect at hidden α = 0.5 (the input's mean moves by (2α − 1)·W_1ᵀδ_1); choose learning.alpha (or learning.hidden_alpha) ≠ 0.5"
                ),
                RuleKind::Bp | RuleKind::BpAdv => bail!(
                    "learning.robust_input = true needs a dual-propagation rule (dp or dp-damped), not {:?}",
                    l.rule
                ),
                _ => {}
            }
        }
        if l.power_iterations == 0 {
            bail!("learning.power_iterations must be ≥ 1");
        }
        let schedule = self
            .schedule
            .unwrap_or_else(|| self.rule.default_schedule());
        let hidden_alpha = self.hidden_alpha.unwrap_or(self.alpha);
        let variant = match self.rule {
            RuleKind::Dp => Some(DualVariant::Dp),
            RuleKind::Dpt => Some(DualVariant::Dpt),
            RuleKind::DpDamped => Some(DualVariant::DpDamped),
            RuleKind::Bp | RuleKind::BpAdv => None,
        };
        let dual = variant.map(|variant| DualParams {
            variant,
            alpha: self.alpha,
            hidden_alpha: if variant == DualVariant::Dpt {
                self.alpha
            } else {
                hidden_alpha
            },
            beta: self.beta,
            robust_input: self.robust_input,
            power_iterations: self.power_iterations,
        });
        Ok(LearningParams {
            rule: self.rule,
            dual,
            schedule,
            adversary: self.adv,
            adv_epsilon: self.adv_epsilon,
        })
    }

    /// The rule's CLI name (`dpt`, `dp-damped`, …).
    pub fn rule_name(&self) -> String {
        match toml::Value::try_from(self.rule) {
            Ok(toml::Value::String(s)) => s,
            _ => format!("{:?}", self.rule),
        }
    }
}
