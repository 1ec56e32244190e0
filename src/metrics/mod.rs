//! Measurements the paper reports: the Lipschitz estimate, the angle
//! between a rule's gradient and back-propagation's, and divergence checks.

use crate::linalg::{Mat, Vector};
use crate::network::Network;
use crate::rules::backprop::backprop;
use crate::rules::learner::Learner;
use crate::substrate::OuterProductGradient;
use serde::Serialize;

/// Lipschitz estimate of the network, ‖W_L ⋯ W_1‖₂ (ReLU being 1-Lipschitz,
/// paper §6.1), by power iteration on the product applied as an operator
/// (never formed): v ← Pᵀ P v / ‖·‖ until the estimate changes by < 1e-7
/// relative, at most `max_iterations` steps.
pub fn lipschitz_estimate(weights: &[Mat], max_iterations: usize) -> f64 {
    if weights.is_empty() {
        return 0.0;
    }
    let n = weights[0].ncols();
    let to64 = |m: &Mat| m.map(|v| v as f64);
    let ws: Vec<nalgebra::DMatrix<f64>> = weights.iter().map(to64).collect();
    let mut v = nalgebra::DVector::<f64>::from_fn(n, |i, _| 1.0 + ((i * 7919) % 17) as f64 / 17.0);
    v /= v.norm();
    let mut estimate = 0.0f64;
    for _ in 0..max_iterations.max(1) {
        let mut u = v.clone();
        for w in &ws {
            u = w * u;
        }
        let sigma = u.norm();
        for w in ws.iter().rev() {
            u = w.transpose() * u;
        }
        let norm = u.norm();
        if !norm.is_finite() || norm == 0.0 {
            return sigma;
        }
        v = u / norm;
        if (sigma - estimate).abs() <= 1e-7 * sigma {
            return sigma;
        }
        estimate = sigma;
    }
    estimate
}

/// Angle in degrees between two vectors given as slices of parts.
pub fn angle_degrees(a: &[&[f32]], b: &[&[f32]]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (pa, pb) in a.iter().zip(b) {
        for (&x, &y) in pa.iter().zip(pb.iter()) {
            dot += x as f64 * y as f64;
            na += x as f64 * x as f64;
            nb += y as f64 * y as f64;
        }
    }
    if na == 0.0 || nb == 0.0 {
        return 90.0;
    }
    (dot / (na.sqrt() * nb.sqrt()))
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

/// Gradient angle of a rule against BP, total and per layer (weights and biases together).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GradientAngle {
    /// Angle of the concatenated gradient, degrees.
    pub angle_deg: f64,
    /// Angle per layer (layer 1 first), degrees.
    pub per_layer_deg: Vec<f64>,
}

fn dense(grads: &[OuterProductGradient]) -> Vec<(Mat, Vector)> {
    grads
        .iter()
        .map(|g| (g.weight_gradient(), g.bias_gradient()))
        .collect()
}

/// Measures the angle between `learner`'s gradient and the exact BP gradient
/// of the same loss on batch (x, y), without changing the weights.
pub fn gradient_angle(net: &mut Network, learner: &mut Learner, x: &Mat, y: &Mat) -> GradientAngle {
    let rule = dense(&learner.step(net, x, y, None).gradients);
    let reference = dense(&backprop(net, x, y).gradients);
    let per_layer_deg = rule
        .iter()
        .zip(&reference)
        .map(|((rw, rb), (bw, bb))| {
            angle_degrees(
                &[rw.as_slice(), rb.as_slice()],
                &[bw.as_slice(), bb.as_slice()],
            )
        })
        .collect();
    let flat = |g: &[(Mat, Vector)]| -> Vec<Vec<f32>> {
        g.iter()
            .flat_map(|(w, b)| [w.as_slice().to_vec(), b.as_slice().to_vec()])
            .collect()
    };
    let (fa, fb) = (flat(&rule), flat(&reference));
    let ra: Vec<&[f32]> = fa.iter().map(|v| v.as_slice()).collect();
    let rb: Vec<&[f32]> = fb.iter().map(|v| v.as_slice()).collect();
    GradientAngle {
        angle_deg: angle_degrees(&ra, &rb),
        per_layer_deg,
    }
}

/// First layer (1-based) whose value exceeds `limit` or is non-finite, with
/// the reason and magnitude.
/// Why a run diverged: what to change.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceCause {
    /// The updates (on a crossbar: the writes) drove a layer's weights far
    /// from where the epoch began — ‖W_k‖₂ grew by at least
    /// [`WRITE_GROWTH`], or a weight ran away or became
    /// non-finite. Lower the learning rate (`crossbar.lr`), or write
    /// through a Tiki-Taka algorithm or mixed-precision writes.
    Writes,
    /// The weights are near where the epoch began, but their gain is too
    /// large for the inference's schedule: the nudged fixed-point iteration
    /// amplifies instead of settling. Lower β or α, the weight scale, or
    /// use a damped rule or schedule.
    LoopGain,
}

impl std::fmt::Display for DivergenceCause {
    /// The name the result files use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DivergenceCause::Writes => "writes",
            DivergenceCause::LoopGain => "loop_gain",
        })
    }
}

/// Growth of a layer's ‖W_k‖₂ within an epoch from which a divergence is
/// blamed on the writes rather than on the inference's loop gain. Learning
/// moves the norms slowly (a few percent per epoch at the defaults); the
/// runaways of plain pulsed SGD on few-state devices come with norms grown
/// many times within a few batches.
pub const WRITE_GROWTH: f64 = 2.0;

/// ‖W_k‖₂ of each layer (50 power iterations; non-finite weights give +∞).
pub fn weight_norms(weights: &[Mat]) -> Vec<f64> {
    weights
        .iter()
        .map(|w| {
            if w.iter().all(|v| v.is_finite()) {
                crate::rules::dual::spectral_norm_estimate(w, 50) as f64
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// Why a run diverged, from the layers' norms at the start of the epoch
/// (`before`) and the weights now: [`DivergenceCause::Writes`] when a
/// layer's ‖W_k‖₂ grew by [`WRITE_GROWTH`] or more (or is not finite),
/// else [`DivergenceCause::LoopGain`]. Returns the cause, the norms now and
/// the Lipschitz estimate (when finite).
pub fn diagnose_divergence(
    before: &[f64],
    weights: &[Mat],
) -> (DivergenceCause, Vec<f64>, Option<f64>) {
    let now = weight_norms(weights);
    let grown = now.iter().zip(before).any(|(&n, &b)| {
        !n.is_finite() || (b > 0.0 && n >= WRITE_GROWTH * b) || (b == 0.0 && n > 0.0)
    });
    let lipschitz = now
        .iter()
        .all(|n| n.is_finite())
        .then(|| lipschitz_estimate(weights, 500))
        .filter(|l| l.is_finite());
    let cause = if grown {
        DivergenceCause::Writes
    } else {
        DivergenceCause::LoopGain
    };
    (cause, now, lipschitz)
}

pub fn first_runaway(layer_max: &[f32], limit: f32, what: &str) -> Option<(usize, String, f64)> {
    for (k, &m) in layer_max.iter().enumerate() {
        if !m.is_finite() {
            return Some((k + 1, format!("non_finite_{what}"), f64::INFINITY));
        }
        if m > limit {
            return Some((k + 1, format!("runaway_{what}"), m as f64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lipschitz_of_a_product_matches_svd() {
        let w1 = Mat::from_fn(5, 7, |i, j| ((i * 3 + j * 5) % 7) as f32 - 3.0);
        let w2 = Mat::from_fn(3, 5, |i, j| ((i * 2 + j) % 5) as f32 * 0.3 - 0.5);
        let product = (&w2 * &w1).map(|v| v as f64);
        let exact = product.singular_values().max();
        let est = lipschitz_estimate(&[w1, w2], 1000);
        assert!((est - exact).abs() < 1e-4 * exact, "{est} vs {exact}");
    }

    #[test]
    fn angles() {
        assert!(angle_degrees(&[&[1.0, 0.0]], &[&[0.0, 2.0]]) - 90.0 < 1e-9);
        assert!(angle_degrees(&[&[1.0, 1.0]], &[&[2.0, 2.0]]) < 1e-3);
    }
}
