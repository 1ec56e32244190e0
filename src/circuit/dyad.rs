//! The continuous-time dyadic network: every compartment of every layer
//! integrating its currents at once (DESIGN.md §3).
//!
//! For hidden layers `k = 1..L−1` (activation `f`, mean asymmetry `α_h`):
//!
//! ```text
//!     τ dv⁺_k/dt = −v⁺_k + I_ff,k + u⁺_k(I_fb,k),     s±_k = f(v±_k),
//!     τ dv⁻_k/dt = −v⁻_k + I_ff,k − u⁻_k(I_fb,k),     s̄_k = α_h s⁺_k + (1−α_h) s⁻_k,
//!     I_ff,k = W_k s̄_{k−1} + b_k  (forward read of array k),
//!     I_fb,k = W_{k+1}ᵀ δ_{k+1}   (transposed read of array k+1),  δ = s⁺ − s⁻,
//! ```
//!
//! with the nudging amplifiers `u±` ([`NudgingAmplifier`]; ideally `g± I_fb`,
//! `(g⁺, g⁻)` = DP⊤ `(1−α, α)`, DP `(α, 1−α)`). The linear output layer
//! (`s±_L = v±_L`, drive `a_L = I_ff,L`) integrates towards its nudged
//! targets (DESIGN.md §1):
//!
//! - DP⊤ (any loss) and DP with cross-entropy (linearised): amplifier input
//!   `e = −β ∇ℓ(a_L)`, so `τ dv±_L/dt = −v±_L + a_L ± u±(e)`; ideal fixed
//!   point DP⊤ `s⁺ = a − (1−α)β∇ℓ`, `s⁻ = a + αβ∇ℓ`.
//! - DP with least squares: each compartment follows the gradient flow of
//!   `½‖s − a‖² ± c β ½‖s − y‖²`, amplifier inputs `e± = −β(v±_L − y)`;
//!   ideal fixed points `(a + αβy)/(1 + αβ)` and `(a − (1−α)βy)/(1 − (1−α)β)`
//!   (paper Eq. 3), stable iff `(1 − α)β < 1`.
//! - Input-robust DP: the input dyad has no membrane; `s̄_0 = x + (α c⁺ −
//!   (1−α) c⁻) W_1ᵀ δ_1` follows δ_1 instantaneously.
//!
//! The crossbars are re-read at every right-hand-side evaluation, so a
//! crossbar substrate's read noise enters the dynamics. With ideal
//! amplifiers the fixed point is exactly the discrete rule's, so a settled
//! run agrees with the `jacobi` schedule run to convergence.
//!
//! The flat state holds, per layer `k`, `v⁺_k` then `v⁻_k`, each `n_k × B`
//! column-major ([`StateLayout`]).

use std::ops::Range;

use super::amplifier::{nominal_gains, AmplifierConfig, NudgingAmplifier};
use super::integrator::OdeSystem;
use super::settle::Settling;
use crate::linalg::{ensure_shape, Mat};
use crate::network::{Activation, Loss, Network};
use crate::rules::dual::{DualParams, DualState, DualVariant};

/// Where each compartment lives in the flat circuit state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLayout {
    sizes: Vec<usize>,
    batch: usize,
    offsets: Vec<usize>,
}

impl StateLayout {
    /// Layout for layers of widths `sizes = [n_1, …, n_L]` (no input) and batch `B`.
    pub fn new(sizes: &[usize], batch: usize) -> Self {
        let mut offsets = Vec::with_capacity(sizes.len() + 1);
        let mut at = 0;
        for &n in sizes {
            offsets.push(at);
            at += 2 * n * batch;
        }
        offsets.push(at);
        Self {
            sizes: sizes.to_vec(),
            batch,
            offsets,
        }
    }

    /// Length of the state vector: `2 B Σ_k n_k`.
    pub fn dim(&self) -> usize {
        self.offsets[self.sizes.len()]
    }

    /// Number of layers L.
    pub fn depth(&self) -> usize {
        self.sizes.len()
    }

    /// Batch size B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Width `n_k` of layer index `k` (0-based: layer k+1).
    pub fn width(&self, k: usize) -> usize {
        self.sizes[k]
    }

    /// Range of `v⁺` of layer index `k`.
    pub fn plus(&self, k: usize) -> Range<usize> {
        let n = self.sizes[k] * self.batch;
        self.offsets[k]..self.offsets[k] + n
    }

    /// Range of `v⁻` of layer index `k`.
    pub fn minus(&self, k: usize) -> Range<usize> {
        let n = self.sizes[k] * self.batch;
        self.offsets[k] + n..self.offsets[k + 1]
    }

    /// Index of compartment (`plus`?) of `neuron` in `sample`, layer index `k`.
    pub fn index(&self, k: usize, plus: bool, neuron: usize, sample: usize) -> usize {
        let base = if plus {
            self.plus(k).start
        } else {
            self.minus(k).start
        };
        base + sample * self.sizes[k] + neuron
    }

    /// Layer (1-based, as `W_k`) of state entry `index`.
    pub fn layer_of(&self, index: usize) -> usize {
        self.offsets[1..]
            .iter()
            .position(|&end| index < end)
            .unwrap_or(self.sizes.len() - 1)
            + 1
    }
}

/// The circuit of one network: its amplifier arrays (fixed per chip) and the
/// read buffers reused by every evaluation.
#[derive(Clone, Debug)]
pub struct DyadCircuit {
    layout: StateLayout,
    variant: DualVariant,
    /// α of the hidden means s̄_k.
    alpha_hidden: f32,
    beta: f32,
    /// `Some(α c⁺ − (1−α) c⁻)` for the input-robust variant.
    input_coef: Option<f32>,
    activation: Activation,
    loss: Loss,
    /// One amplifier array per layer (index L−1: the output nudge).
    amplifiers: Vec<NudgingAmplifier>,
    mean: Vec<Mat>,
    diff: Vec<Mat>,
    drive: Vec<Mat>,
    feedback: Vec<Mat>,
    input_mean: Mat,
    input_feedback: Mat,
    loss_grad: Mat,
    saturated: Vec<usize>,
}

impl DyadCircuit {
    /// Builds the circuit of `net` for the rule `params`, drawing the
    /// amplifier non-idealities of `amplifier` (seeded by `amplifier.seed`).
    /// Buffers are sized for batch `batch` and resized on demand.
    pub fn new(
        net: &Network,
        params: &DualParams,
        amplifier: &AmplifierConfig,
        batch: usize,
    ) -> Self {
        let sizes: Vec<usize> = net.layers.iter().map(|l| l.n_out()).collect();
        let depth = sizes.len();
        let mut gains = vec![params.hidden_gains(); depth];
        gains[depth - 1] = nominal_gains(params.variant, params.alpha);
        let amplifiers = NudgingAmplifier::bank(&sizes, &gains, amplifier);
        let (cp, cm) = params.hidden_gains();
        let a = params.mean_alpha();
        Self {
            layout: StateLayout::new(&sizes, batch),
            variant: params.variant,
            alpha_hidden: a,
            beta: params.beta,
            input_coef: params.robust_input.then_some(a * cp - (1.0 - a) * cm),
            activation: net.activation,
            loss: net.loss,
            amplifiers,
            mean: vec![Mat::zeros(0, 0); depth],
            diff: vec![Mat::zeros(0, 0); depth],
            drive: vec![Mat::zeros(0, 0); depth],
            feedback: vec![Mat::zeros(0, 0); depth.saturating_sub(1)],
            input_mean: Mat::zeros(0, 0),
            input_feedback: Mat::zeros(0, 0),
            loss_grad: Mat::zeros(0, 0),
            saturated: vec![0; depth],
        }
    }

    /// The state layout for the current batch size.
    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// The amplifier arrays, one per layer (last = output nudge).
    pub fn amplifiers(&self) -> &[NudgingAmplifier] {
        &self.amplifiers
    }

    /// Whether this circuit was built for a network of these widths.
    pub fn fits(&self, net: &Network) -> bool {
        net.layers.len() == self.layout.depth()
            && net
                .layers
                .iter()
                .enumerate()
                .all(|(k, l)| l.n_out() == self.layout.width(k))
    }

    /// Sizes the buffers for batch `batch` (no allocation if unchanged).
    pub fn set_batch(&mut self, batch: usize) {
        if self.layout.batch() != batch {
            self.layout = StateLayout::new(&self.layout.sizes, batch);
        }
        for k in 0..self.layout.depth() {
            let n = self.layout.width(k);
            ensure_shape(&mut self.mean[k], n, batch);
            ensure_shape(&mut self.diff[k], n, batch);
        }
    }

    /// Initial condition: the free equilibrium `v±_k = a_k` of the forward
    /// pass (the drives in `state` after `forward_init`); the nudge switches
    /// on at t = 0.
    pub fn initial_state(&self, state: &DualState, v: &mut [f32]) {
        for k in 0..self.layout.depth() {
            let a = state.drive[k].as_slice();
            v[self.layout.plus(k)].copy_from_slice(a);
            v[self.layout.minus(k)].copy_from_slice(a);
        }
    }

    /// Writes the dyads at circuit state `v` into `state` (s±, s̄, δ per
    /// layer; drives of the last evaluation; the input mean), so the local
    /// rule [`crate::rules::dual::DualInference::local_gradients`] applies.
    /// Returns max |s±| per layer (∞ if non-finite).
    pub fn write_back(&self, v: &[f32], state: &mut DualState, output_alpha: f32) -> Vec<f32> {
        let depth = self.layout.depth();
        let batch = self.layout.batch();
        let mut layer_max = Vec::with_capacity(depth);
        for k in 0..depth {
            let n = self.layout.width(k);
            let hidden = k + 1 < depth;
            let alpha = if hidden {
                self.alpha_hidden
            } else {
                output_alpha
            };
            for m in [
                &mut state.plus[k],
                &mut state.minus[k],
                &mut state.mean[k],
                &mut state.diff[k],
            ] {
                ensure_shape(m, n, batch);
            }
            let f = self.activation;
            let vp = &v[self.layout.plus(k)];
            let vm = &v[self.layout.minus(k)];
            let mut max = 0.0f32;
            for i in 0..n * batch {
                let (sp, sm) = if hidden {
                    (f.apply(vp[i]), f.apply(vm[i]))
                } else {
                    (vp[i], vm[i])
                };
                state.plus[k][i] = sp;
                state.minus[k][i] = sm;
                state.mean[k][i] = alpha * sp + (1.0 - alpha) * sm;
                state.diff[k][i] = sp - sm;
                max = if sp.is_finite() && sm.is_finite() {
                    max.max(sp.abs()).max(sm.abs())
                } else {
                    f32::INFINITY
                };
            }
            layer_max.push(max);
            if self.drive[k].shape() == (n, batch) {
                state.drive[k].copy_from(&self.drive[k]);
            }
        }
        if self.input_coef.is_some() && self.input_mean.shape() == state.input_mean.shape() {
            state.input_mean.copy_from(&self.input_mean);
        }
        layer_max
    }

    /// Binds the circuit to a network and a batch `(x, y)` as an ODE system.
    pub fn system<'a>(
        &'a mut self,
        net: &'a mut Network,
        x: &'a Mat,
        y: &'a Mat,
    ) -> CircuitSystem<'a> {
        self.set_batch(x.ncols());
        CircuitSystem {
            circuit: self,
            net,
            x,
            y,
        }
    }
}

/// A [`DyadCircuit`] bound to its network and one batch: the [`OdeSystem`]
/// the integrators run.
pub struct CircuitSystem<'a> {
    circuit: &'a mut DyadCircuit,
    net: &'a mut Network,
    x: &'a Mat,
    y: &'a Mat,
}

impl OdeSystem for CircuitSystem<'_> {
    fn dim(&self) -> usize {
        self.circuit.layout.dim()
    }

    /// Evaluates `τ dv/dt` for every compartment (module docs): means and
    /// differences from `v`, one forward read per array, one transposed read
    /// per hidden layer, then the leak, drive and amplified feedback.
    fn rhs(&mut self, _t: f64, v: &[f32], dv: &mut [f32]) {
        let c = &mut *self.circuit;
        let lay = &c.layout;
        let depth = lay.depth();
        let f = c.activation;
        // Means (hidden) and differences (all layers) of the current state.
        for k in 0..depth {
            let vp = &v[lay.plus(k)];
            let vm = &v[lay.minus(k)];
            let (mean, diff) = (c.mean[k].as_mut_slice(), c.diff[k].as_mut_slice());
            if k + 1 < depth {
                let a = c.alpha_hidden;
                for i in 0..vp.len() {
                    let (sp, sm) = (f.apply(vp[i]), f.apply(vm[i]));
                    mean[i] = a * sp + (1.0 - a) * sm;
                    diff[i] = sp - sm;
                }
            } else {
                for i in 0..vp.len() {
                    diff[i] = vp[i] - vm[i];
                }
            }
        }
        // Input (a dyad only for the input-robust variant).
        let input: &Mat = match c.input_coef {
            Some(coef) => {
                self.net.layers[0].transposed(&c.diff[0], &mut c.input_feedback);
                ensure_shape(&mut c.input_mean, self.x.nrows(), self.x.ncols());
                for ((m, &x), &g) in c
                    .input_mean
                    .iter_mut()
                    .zip(self.x.iter())
                    .zip(c.input_feedback.iter())
                {
                    *m = x + coef * g;
                }
                &c.input_mean
            }
            None => self.x,
        };
        // Crossbar reads: I_ff,k for every layer, I_fb,k for every hidden layer.
        for k in 0..depth {
            let below = if k == 0 { input } else { &c.mean[k - 1] };
            self.net.layers[k].forward(below, &mut c.drive[k]);
        }
        for k in 0..depth.saturating_sub(1) {
            self.net.layers[k + 1].transposed(&c.diff[k + 1], &mut c.feedback[k]);
        }
        // Hidden compartments.
        for k in 0..depth - 1 {
            let n = lay.width(k);
            let amp = &c.amplifiers[k];
            let (vp, vm) = (&v[lay.plus(k)], &v[lay.minus(k)]);
            let (a, fb) = (c.drive[k].as_slice(), c.feedback[k].as_slice());
            let (dp, dm) = dv[lay.plus(k).start..lay.minus(k).end].split_at_mut(n * lay.batch());
            let mut saturated = 0;
            for i in 0..vp.len() {
                let j = i % n;
                let (up, sp) = amp.plus(j, fb[i]);
                let (um, sm) = amp.minus(j, fb[i]);
                dp[i] = -vp[i] + a[i] + up;
                dm[i] = -vm[i] + a[i] - um;
                saturated += usize::from(sp) + usize::from(sm);
            }
            c.saturated[k] = saturated;
        }
        // Output compartments.
        let l = depth - 1;
        let n = lay.width(l);
        let amp = &c.amplifiers[l];
        let (vp, vm) = (&v[lay.plus(l)], &v[lay.minus(l)]);
        let (dp, dm) = dv[lay.plus(l).start..lay.minus(l).end].split_at_mut(n * lay.batch());
        let a = c.drive[l].as_slice();
        let beta = c.beta;
        let mut saturated = 0;
        let gradient_flow = c.variant != DualVariant::Dpt && c.loss == Loss::Mse;
        if gradient_flow {
            let y = self.y.as_slice();
            for i in 0..vp.len() {
                let j = i % n;
                let (up, sp) = amp.plus(j, -beta * (vp[i] - y[i]));
                let (um, sm) = amp.minus(j, -beta * (vm[i] - y[i]));
                dp[i] = -vp[i] + a[i] + up;
                dm[i] = -vm[i] + a[i] - um;
                saturated += usize::from(sp) + usize::from(sm);
            }
        } else {
            c.loss.gradient(&c.drive[l], self.y, &mut c.loss_grad);
            let g = c.loss_grad.as_slice();
            for i in 0..vp.len() {
                let j = i % n;
                let e = -beta * g[i];
                let (up, sp) = amp.plus(j, e);
                let (um, sm) = amp.minus(j, e);
                dp[i] = -vp[i] + a[i] + up;
                dm[i] = -vm[i] + a[i] - um;
                saturated += usize::from(sp) + usize::from(sm);
            }
        }
        c.saturated[l] = saturated;
    }

    /// Amplifier output noise σ_n on every compartment of every layer.
    fn diffusion(&mut self, _t: f64, g: &mut [f32]) -> bool {
        let c = &*self.circuit;
        if c.amplifiers.iter().all(|a| a.noise() == 0.0) {
            return false;
        }
        for (k, amp) in c.amplifiers.iter().enumerate() {
            g[c.layout.plus(k).start..c.layout.minus(k).end].fill(amp.noise());
        }
        true
    }
}

impl Settling for CircuitSystem<'_> {
    fn layer_of(&self, index: usize) -> usize {
        self.circuit.layout.layer_of(index)
    }

    fn rail_saturation(&self) -> Option<(usize, f32)> {
        let c = &*self.circuit;
        if c.amplifiers.iter().all(|a| a.rail().is_none()) {
            return None;
        }
        (0..c.layout.depth())
            .map(|k| {
                let outputs = 2 * c.layout.width(k) * c.layout.batch();
                (k + 1, c.saturated[k] as f32 / outputs.max(1) as f32)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_ranges_tile_the_state() {
        let lay = StateLayout::new(&[3, 2], 4);
        assert_eq!(lay.dim(), 2 * (3 + 2) * 4);
        assert_eq!(lay.plus(0), 0..12);
        assert_eq!(lay.minus(0), 12..24);
        assert_eq!(lay.plus(1), 24..32);
        assert_eq!(lay.minus(1), 32..40);
        assert_eq!(lay.index(1, false, 1, 2), 32 + 2 * 2 + 1);
        assert_eq!(lay.layer_of(0), 1);
        assert_eq!(lay.layer_of(23), 1);
        assert_eq!(lay.layer_of(24), 2);
        assert_eq!(lay.layer_of(39), 2);
    }
}
