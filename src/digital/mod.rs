//! The ideal digital substrate: exact `f32` weights updated by an optimiser.
//! This is the reference every hardware model is compared against.

use crate::linalg::{add_to_columns, ensure_shape, gemm, Mat, Op, Vector};
use crate::substrate::{OuterProductGradient, WeightArray};
pub mod optimizer;

use optimizer::{OptimizerConfig, OptimizerSnapshot, OptimizerState};

/// Floating-point weights and bias with their optimiser state.
#[derive(Clone, Debug)]
pub struct DigitalWeights {
    weights: Mat,
    bias: Vector,
    weight_optimizer: OptimizerState,
    bias_optimizer: OptimizerState,
    gradient_buffer: Mat,
}

impl DigitalWeights {
    /// Wraps the given weights (`n_out × n_in`) and bias (`n_out`).
    pub fn new(weights: Mat, bias: Vector, optimizer: &OptimizerConfig) -> Self {
        let (r, c) = weights.shape();
        Self {
            weight_optimizer: OptimizerState::new(optimizer, r, c),
            bias_optimizer: OptimizerState::new(optimizer, r, 1),
            gradient_buffer: Mat::zeros(r, c),
            weights,
            bias,
        }
    }
}

impl WeightArray for DigitalWeights {
    fn clone_box(&self) -> Box<dyn WeightArray> {
        Box::new(self.clone())
    }

    fn n_out(&self) -> usize {
        self.weights.nrows()
    }
    fn n_in(&self) -> usize {
        self.weights.ncols()
    }
    fn forward(&mut self, x: &Mat, out: &mut Mat) {
        ensure_shape(out, self.weights.nrows(), x.ncols());
        gemm(1.0, &self.weights, Op::N, x, Op::N, 0.0, out);
        add_to_columns(out, &self.bias);
    }
    fn transposed(&mut self, d: &Mat, out: &mut Mat) {
        ensure_shape(out, self.weights.ncols(), d.ncols());
        gemm(1.0, &self.weights, Op::T, d, Op::N, 0.0, out);
    }
    fn apply_gradient(&mut self, grad: &OuterProductGradient) {
        grad.weight_gradient_into(&mut self.gradient_buffer);
        self.weight_optimizer
            .step(self.weights.as_mut_slice(), self.gradient_buffer.as_slice());
        let gb = grad.bias_gradient();
        self.bias_optimizer
            .step(self.bias.as_mut_slice(), gb.as_slice());
    }
    fn weights(&self) -> Mat {
        self.weights.clone()
    }
    fn bias(&self) -> Vector {
        self.bias.clone()
    }
    fn set_parameters(&mut self, weights: &Mat, bias: &Vector) {
        self.weights.copy_from(weights);
        self.bias.copy_from(bias);
    }
    fn continuation_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(DigitalContinuation {
            weight_optimizer: self.weight_optimizer.snapshot(),
            bias_optimizer: self.bias_optimizer.snapshot(),
        })
        .ok()
    }
    fn restore_continuation_state(&mut self, state: &serde_json::Value) -> anyhow::Result<()> {
        use anyhow::Context;
        let s: DigitalContinuation = serde_json::from_value(state.clone())
            .context("digital layer continuation state: wrong format")?;
        self.weight_optimizer
            .restore(&s.weight_optimizer)
            .context("weights")?;
        self.bias_optimizer
            .restore(&s.bias_optimizer)
            .context("bias")
    }
}

/// The optimiser moments of a digital layer (its continuation state).
#[derive(serde::Serialize, serde::Deserialize)]
struct DigitalContinuation {
    weight_optimizer: OptimizerSnapshot,
    bias_optimizer: OptimizerSnapshot,
}
