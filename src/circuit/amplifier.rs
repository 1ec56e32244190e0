//! Nudging amplifiers: the analog gains that inject the feedback current into
//! the two compartments of every dyadic neuron (DESIGN.md §3).
//!
//! Per neuron `i` of a layer there are two amplifiers, one per compartment.
//! Both see the same input current `x_i` (the transposed read `I_fb = Wᵀ_{k+1} δ_{k+1}`
//! for a hidden neuron, the output error signal for an output neuron) and drive
//!
//! ```text
//!     u⁺_i = clip( g⁺_i (x_i + o⁺_i) ),    u⁻_i = clip( g⁻_i (x_i + o⁻_i) ),
//!     τ dv⁺_i/dt = … + u⁺_i,               τ dv⁻_i/dt = … − u⁻_i,
//! ```
//!
//! with
//! - nominal gains from the nudging asymmetry α (DESIGN.md §1):
//!   DP⊤ `(g⁺, g⁻) = (1 − α, α)`, DP `(g⁺, g⁻) = (α, 1 − α)`;
//! - per-amplifier **gain mismatch** `g_i = g_nom (1 + σ_g ξ_i)`, `ξ_i ~ N(0, 1)`
//!   drawn once per chip (a static fabrication spread, clipped at 0 so an
//!   amplifier never inverts);
//! - per-amplifier static **input offset** `o_i ~ N(0, σ_o²)`;
//! - **output noise current**: white noise of amplitude `σ_n` per √τ added to
//!   `τ dv±/dt`, which makes the circuit an SDE (integrate with Euler–Maruyama);
//! - **output rails**: `clip(u) = min(max(u, −r), r)`.
//!
//! All default to ideal (σ_g = σ_o = σ_n = 0, no rails), in which case the
//! circuit's fixed point is exactly the discrete rule's.
//!
//! Per-amplifier parameters are stored as flat arrays (one `Vec<f32>` per
//! property), not as a vector of amplifier objects.

use anyhow::{ensure, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::rules::dual::DualVariant;

/// Nominal amplifier gains `(g⁺, g⁻)` for a DP-family variant and nudging
/// asymmetry `α` (DESIGN.md §1, §3): the rule's nudging gains
/// ([`DualVariant::nudging_gains`]), DP⊤ `(1 − α, α)`, DP `(α, 1 − α)`.
///
/// ```
/// use dyadsim::circuit::amplifier::nominal_gains;
/// use dyadsim::rules::dual::DualVariant;
/// assert_eq!(nominal_gains(DualVariant::Dpt, 0.25), (0.75, 0.25));
/// assert_eq!(nominal_gains(DualVariant::Dp, 0.25), (0.25, 0.75));
/// ```
pub fn nominal_gains(variant: DualVariant, alpha: f32) -> (f32, f32) {
    variant.nudging_gains(alpha)
}

/// Non-idealities of the nudging amplifiers (TOML `[circuit.amplifier]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmplifierConfig {
    /// Relative gain mismatch σ_g (std of `g_i / g_nom − 1`), ≥ 0.
    pub gain_mismatch: f32,
    /// Std σ_o of the static input-referred offset, in units of the input
    /// current (activity units), ≥ 0.
    pub offset: f32,
    /// Output noise current σ_n per √τ, ≥ 0. Non-zero requires
    /// `integrator = "euler_maruyama"`.
    pub noise: f32,
    /// Output rail `r > 0` (`|u| ≤ r`); absent = no saturation.
    pub rail: Option<f32>,
    /// Seed of the per-chip mismatch and offset draws.
    pub seed: u64,
}

impl Default for AmplifierConfig {
    fn default() -> Self {
        Self {
            gain_mismatch: 0.0,
            offset: 0.0,
            noise: 0.0,
            rail: None,
            seed: 0,
        }
    }
}

impl AmplifierConfig {
    /// Checks ranges; errors name the TOML field.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.gain_mismatch.is_finite() && self.gain_mismatch >= 0.0,
            "circuit.amplifier.gain_mismatch = {} must be finite and ≥ 0",
            self.gain_mismatch
        );
        ensure!(
            self.offset.is_finite() && self.offset >= 0.0,
            "circuit.amplifier.offset = {} must be finite and ≥ 0",
            self.offset
        );
        ensure!(
            self.noise.is_finite() && self.noise >= 0.0,
            "circuit.amplifier.noise = {} must be finite and ≥ 0",
            self.noise
        );
        if let Some(r) = self.rail {
            ensure!(
                r > 0.0 && r.is_finite(),
                "circuit.amplifier.rail = {r} must be > 0 (omit it for no rails)"
            );
        }
        Ok(())
    }

    /// Whether every amplifier is ideal (the circuit's fixed point is then the discrete rule's).
    pub fn is_ideal(&self) -> bool {
        self.gain_mismatch == 0.0 && self.offset == 0.0 && self.noise == 0.0 && self.rail.is_none()
    }
}

/// The pair of nudging amplifiers of every neuron of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct NudgingAmplifier {
    gain_plus: Vec<f32>,
    gain_minus: Vec<f32>,
    offset_plus: Vec<f32>,
    offset_minus: Vec<f32>,
    noise: f32,
    rail: Option<f32>,
}

impl NudgingAmplifier {
    /// Ideal amplifiers for `n` neurons with nominal gains `(g⁺, g⁻)`: no
    /// mismatch, offset, noise or rails.
    pub fn ideal(n: usize, (gain_plus, gain_minus): (f32, f32)) -> Self {
        Self {
            gain_plus: vec![gain_plus; n],
            gain_minus: vec![gain_minus; n],
            offset_plus: vec![0.0; n],
            offset_minus: vec![0.0; n],
            noise: 0.0,
            rail: None,
        }
    }

    /// Amplifiers for `n` neurons with nominal gains `gains` and the
    /// non-idealities of `config`, drawing mismatch and offsets from `rng`
    /// (gains ⁺ then ⁻, then offsets ⁺ then ⁻, so a seed fixes the chip).
    pub fn new(
        n: usize,
        gains: (f32, f32),
        config: &AmplifierConfig,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut amp = Self::ideal(n, gains);
        if config.gain_mismatch > 0.0 {
            for g in amp.gain_plus.iter_mut().chain(amp.gain_minus.iter_mut()) {
                let xi: f32 = StandardNormal.sample(rng);
                *g = (*g * (1.0 + config.gain_mismatch * xi)).max(0.0);
            }
        }
        if config.offset > 0.0 {
            for o in amp
                .offset_plus
                .iter_mut()
                .chain(amp.offset_minus.iter_mut())
            {
                let xi: f32 = StandardNormal.sample(rng);
                *o = config.offset * xi;
            }
        }
        amp.noise = config.noise;
        amp.rail = config.rail;
        amp
    }

    /// One amplifier array per layer (`sizes[k]` neurons, nominal gains
    /// `gains[k]`), all drawn from one stream seeded with `config.seed`.
    pub fn bank(sizes: &[usize], gains: &[(f32, f32)], config: &AmplifierConfig) -> Vec<Self> {
        assert_eq!(
            sizes.len(),
            gains.len(),
            "one gain pair per amplified layer"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        sizes
            .iter()
            .zip(gains)
            .map(|(&n, &g)| Self::new(n, g, config, &mut rng))
            .collect()
    }

    /// Number of neurons.
    pub fn len(&self) -> usize {
        self.gain_plus.len()
    }

    /// Whether the layer has no neurons.
    pub fn is_empty(&self) -> bool {
        self.gain_plus.is_empty()
    }

    /// Per-neuron gains `g⁺_i`.
    pub fn gain_plus(&self) -> &[f32] {
        &self.gain_plus
    }

    /// Per-neuron gains `g⁻_i`.
    pub fn gain_minus(&self) -> &[f32] {
        &self.gain_minus
    }

    /// Per-neuron input offsets `o⁺_i`.
    pub fn offset_plus(&self) -> &[f32] {
        &self.offset_plus
    }

    /// Per-neuron input offsets `o⁻_i`.
    pub fn offset_minus(&self) -> &[f32] {
        &self.offset_minus
    }

    /// Output noise amplitude σ_n (per √τ).
    pub fn noise(&self) -> f32 {
        self.noise
    }

    /// Output rail, if any.
    pub fn rail(&self) -> Option<f32> {
        self.rail
    }

    #[inline]
    fn clip(&self, u: f32) -> (f32, bool) {
        match self.rail {
            Some(r) if u.abs() >= r => (u.clamp(-r, r), true),
            _ => (u, false),
        }
    }

    /// `u⁺_i = clip(g⁺_i (x + o⁺_i))` and whether it sits on a rail.
    #[inline]
    pub fn plus(&self, i: usize, x: f32) -> (f32, bool) {
        self.clip(self.gain_plus[i] * (x + self.offset_plus[i]))
    }

    /// `u⁻_i = clip(g⁻_i (x + o⁻_i))` and whether it sits on a rail.
    #[inline]
    pub fn minus(&self, i: usize, x: f32) -> (f32, bool) {
        self.clip(self.gain_minus[i] * (x + self.offset_minus[i]))
    }

    /// Drives a batch: `input` is `n × B` column-major; writes `u⁺` and `u⁻`
    /// (same layout) and returns how many of the `2nB` outputs sit on a rail.
    pub fn drive(&self, input: &[f32], plus: &mut [f32], minus: &mut [f32]) -> usize {
        let n = self.len();
        debug_assert_eq!(plus.len(), input.len());
        debug_assert_eq!(minus.len(), input.len());
        if n == 0 {
            return 0;
        }
        let mut saturated = 0;
        for ((x, up), um) in input
            .chunks_exact(n)
            .zip(plus.chunks_exact_mut(n))
            .zip(minus.chunks_exact_mut(n))
        {
            for i in 0..n {
                let (p, sp) = self.plus(i, x[i]);
                let (m, sm) = self.minus(i, x[i]);
                up[i] = p;
                um[i] = m;
                saturated += usize::from(sp) + usize::from(sm);
            }
        }
        saturated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ideal_amplifiers_apply_the_nominal_gains() {
        let amp = NudgingAmplifier::ideal(2, nominal_gains(DualVariant::Dpt, 0.3));
        let input = [1.0, -2.0, 0.5, 4.0];
        let (mut p, mut m) = ([0.0; 4], [0.0; 4]);
        assert_eq!(amp.drive(&input, &mut p, &mut m), 0);
        for i in 0..4 {
            assert!((p[i] - 0.7 * input[i]).abs() < 1e-6);
            assert!((m[i] - 0.3 * input[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn mismatch_has_the_requested_spread_and_is_seeded() {
        let config = AmplifierConfig {
            gain_mismatch: 0.2,
            seed: 11,
            ..AmplifierConfig::default()
        };
        let a = NudgingAmplifier::bank(&[4000], &[(0.5, 0.5)], &config);
        let b = NudgingAmplifier::bank(&[4000], &[(0.5, 0.5)], &config);
        assert_eq!(a, b);
        let rel: Vec<f32> = a[0].gain_plus().iter().map(|g| g / 0.5 - 1.0).collect();
        let mean = rel.iter().sum::<f32>() / rel.len() as f32;
        let var = rel.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / rel.len() as f32;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 0.2).abs() < 0.01, "std {}", var.sqrt());
        let other = AmplifierConfig { seed: 12, ..config };
        assert_ne!(a, NudgingAmplifier::bank(&[4000], &[(0.5, 0.5)], &other));
    }

    #[test]
    fn rails_clip_and_are_counted() {
        let config = AmplifierConfig {
            rail: Some(1.0),
            offset: 0.0,
            ..AmplifierConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let amp = NudgingAmplifier::new(1, (0.5, 0.5), &config, &mut rng);
        let (mut p, mut m) = ([0.0; 3], [0.0; 3]);
        let sat = amp.drive(&[1.0, 3.0, -5.0], &mut p, &mut m);
        assert_eq!(p, [0.5, 1.0, -1.0]);
        assert_eq!(m, [0.5, 1.0, -1.0]);
        assert_eq!(sat, 4);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = AmplifierConfig {
            gain_mismatch: -0.1,
            ..AmplifierConfig::default()
        };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("circuit.amplifier.gain_mismatch"), "{msg}");
    }
}
