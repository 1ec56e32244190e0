//! Exact back-propagation (the baseline, and the reference of every
//! gradient-angle measurement) and adversarial training.
//!
//! Forward: a_k = W_k s_{k−1} + b_k, s_k = f(a_k), s_L = a_L. Backward:
//! e_L = ∇ℓ(a_L), e_k = f′(a_k) ⊙ W_{k+1}ᵀ e_{k+1}; gradient of the
//! batch-mean loss: ∇W_k = e_k s_{k−1}ᵀ / B, ∇b_k = e_k 1 / B.

use crate::linalg::Mat;
use crate::network::Network;
use crate::rules::AdversaryKind;
use crate::substrate::OuterProductGradient;

/// Result of a forward/backward pass.
#[derive(Clone, Debug)]
pub struct BackpropPass {
    /// Gradients of the batch-mean loss, one per layer.
    pub gradients: Vec<OuterProductGradient>,
    /// Output a_L (the prediction).
    pub output: Mat,
    /// ∇ₓ of the batch-summed loss (W_1ᵀ e_1), per sample (empty unless requested).
    pub input_gradient: Mat,
    /// max |s_k| per layer (index 0 = layer 1).
    pub layer_max_state: Vec<f32>,
}

/// Forward and backward pass of `net` on batch `x` with targets `y`
/// (the input gradient is left empty; see [`backprop_with_input_gradient`]).
pub fn backprop(net: &mut Network, x: &Mat, y: &Mat) -> BackpropPass {
    backprop_impl(net, x, y, false)
}

/// Like [`backprop`], and also computes ∇ₓℓ = W_1ᵀ e_1 (one more transposed read).
pub fn backprop_with_input_gradient(net: &mut Network, x: &Mat, y: &Mat) -> BackpropPass {
    backprop_impl(net, x, y, true)
}

fn backprop_impl(net: &mut Network, x: &Mat, y: &Mat, input_gradient: bool) -> BackpropPass {
    let depth = net.depth();
    let f = net.activation;
    let mut drives: Vec<Mat> = Vec::with_capacity(depth);
    let mut states: Vec<Mat> = Vec::with_capacity(depth);
    for k in 0..depth {
        let input = if k == 0 { x } else { &states[k - 1] };
        let mut a = Mat::zeros(0, 0);
        net.layers[k].forward(input, &mut a);
        let s = if k + 1 < depth {
            let mut s = Mat::zeros(a.nrows(), a.ncols());
            f.apply_slice(a.as_slice(), s.as_mut_slice());
            s
        } else {
            a.clone()
        };
        drives.push(a);
        states.push(s);
    }
    let layer_max_state = states.iter().map(crate::linalg::max_abs).collect();
    let output = states[depth - 1].clone();
    let mut error = Mat::zeros(0, 0);
    net.loss.gradient(&output, y, &mut error);
    let scale = 1.0 / x.ncols() as f32;
    let mut gradients = Vec::with_capacity(depth);
    let mut back = Mat::zeros(0, 0);
    for k in (0..depth).rev() {
        if k > 0 || input_gradient {
            net.layers[k].transposed(&error, &mut back);
        }
        // Each layer's error and input state are used once more, by its
        // gradient: moved into it rather than copied.
        let (left, right) = if k == 0 {
            (std::mem::take(&mut error), x.clone())
        } else {
            let mut below = std::mem::take(&mut back);
            f.scale_by_derivative(
                below.as_mut_slice(),
                drives[k - 1].as_slice(),
                states[k - 1].as_slice(),
            );
            (
                std::mem::replace(&mut error, below),
                std::mem::take(&mut states[k - 1]),
            )
        };
        gradients.push(OuterProductGradient { left, right, scale });
    }
    gradients.reverse();
    BackpropPass {
        gradients,
        output,
        input_gradient: back,
        layer_max_state,
    }
}

/// The adversarially perturbed input: x' = x + ε·sign(∇ₓℓ) (FGSM) or
/// x' = x + ε·∇ₓℓ, from a BP pass at x.
pub fn adversarial_input(kind: AdversaryKind, epsilon: f32, x: &Mat, input_gradient: &Mat) -> Mat {
    match kind {
        AdversaryKind::Fgsm => x.zip_map(input_gradient, |xi, g| {
            xi + epsilon * g.signum() * (g != 0.0) as i32 as f32
        }),
        AdversaryKind::Grad => x.zip_map(input_gradient, |xi, g| xi + epsilon * g),
    }
}
