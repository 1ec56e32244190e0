//! Optimisers that turn a gradient into a parameter step on the digital
//! substrate: SGD with momentum and Adam (Kingma & Ba 2015).
//!
//! On a crossbar there is no optimiser state per weight: the controller
//! writes plain SGD steps as pulses (DESIGN.md §4).

use crate::linalg::Mat;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Tensors at least this large are updated in parallel.
const PARALLEL_THRESHOLD: usize = 1 << 16;
/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

/// Which optimiser, with its hyper-parameters (TOML `[optimizer]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// `adam` (default) or `sgd`.
    pub kind: OptimizerKind,
    /// Learning rate η (Adam default 1e-3, as in the paper's MLP runs).
    pub lr: f32,
    /// SGD momentum μ in [0, 1).
    pub momentum: f32,
    /// Adam β₁.
    pub beta1: f32,
    /// Adam β₂.
    pub beta2: f32,
    /// Adam ε.
    pub eps: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The optimiser family.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with (optional) heavy-ball momentum.
    Sgd,
    /// Adam with bias correction.
    Adam,
}

/// Per-parameter optimiser state for one tensor (weights or bias).
#[derive(Clone, Debug)]
pub struct OptimizerState {
    config: OptimizerConfig,
    first_moment: Mat,
    second_moment: Mat,
    steps: u32,
}

/// The moments and step count of an [`OptimizerState`] (for `--resume`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct OptimizerSnapshot {
    /// First moment (SGD momentum buffer or Adam's m), column-major.
    pub first_moment: Vec<f32>,
    /// Adam's second moment (empty for SGD), column-major.
    pub second_moment: Vec<f32>,
    /// Steps taken (Adam's bias correction depends on it).
    pub steps: u32,
}

impl OptimizerState {
    /// The moments and step count, to continue exactly later.
    pub fn snapshot(&self) -> OptimizerSnapshot {
        OptimizerSnapshot {
            first_moment: self.first_moment.as_slice().to_vec(),
            second_moment: self.second_moment.as_slice().to_vec(),
            steps: self.steps,
        }
    }

    /// Restores a [`OptimizerState::snapshot`] of a state of the same shape.
    pub fn restore(&mut self, snapshot: &OptimizerSnapshot) -> anyhow::Result<()> {
        let (m, v) = (self.first_moment.len(), self.second_moment.len());
        if snapshot.first_moment.len() != m || snapshot.second_moment.len() != v {
            anyhow::bail!(
                "optimiser state has moments of {} and {} entries, this tensor needs {m} and {v}",
                snapshot.first_moment.len(),
                snapshot.second_moment.len()
            );
        }
        self.first_moment
            .as_mut_slice()
            .copy_from_slice(&snapshot.first_moment);
        self.second_moment
            .as_mut_slice()
            .copy_from_slice(&snapshot.second_moment);
        self.steps = snapshot.steps;
        Ok(())
    }

    /// Fresh state for a `rows × cols` tensor.
    pub fn new(config: &OptimizerConfig, rows: usize, cols: usize) -> Self {
        let needs_second = config.kind == OptimizerKind::Adam;
        Self {
            config: config.clone(),
            first_moment: Mat::zeros(rows, cols),
            second_moment: if needs_second {
                Mat::zeros(rows, cols)
            } else {
                Mat::zeros(0, 0)
            },
            steps: 0,
        }
    }

    /// One step on `param` for gradient `grad` (same shape):
    /// - SGD: `m ← μ m + g`, `θ ← θ − η m`;
    /// - Adam: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    ///   `θ ← θ − η m̂ / (√v̂ + ε)` with bias-corrected `m̂, v̂`.
    pub fn step(&mut self, param: &mut [f32], grad: &[f32]) {
        debug_assert_eq!(param.len(), grad.len());
        self.steps += 1;
        let c = &self.config;
        let lr = c.lr;
        match c.kind {
            OptimizerKind::Sgd => {
                let mu = c.momentum;
                if mu == 0.0 {
                    for (p, g) in param.iter_mut().zip(grad) {
                        *p -= lr * g;
                    }
                } else {
                    for ((p, g), m) in param
                        .iter_mut()
                        .zip(grad)
                        .zip(self.first_moment.as_mut_slice())
                    {
                        *m = mu * *m + g;
                        *p -= lr * *m;
                    }
                }
            }
            OptimizerKind::Adam => {
                let (b1, b2, eps) = (c.beta1, c.beta2, c.eps);
                let t = self.steps as i32;
                let correction1 = 1.0 - b1.powi(t);
                let correction2 = 1.0 - b2.powi(t);
                // Fold the bias corrections into the step size (Kingma & Ba, Alg. 1, last lines).
                let step = lr * correction2.sqrt() / correction1;
                let eps_hat = eps * correction2.sqrt();
                let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
                    for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *p -= step * *m / (v.sqrt() + eps_hat);
                    }
                };
                let (m, v) = (
                    self.first_moment.as_mut_slice(),
                    self.second_moment.as_mut_slice(),
                );
                if param.len() >= PARALLEL_THRESHOLD {
                    // Element-wise and independent: split over cores in cache-sized chunks.
                    param
                        .par_chunks_mut(CHUNK)
                        .zip(grad.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .for_each(|(((p, g), m), v)| update(p, g, m, v));
                } else {
                    update(param, grad, m, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_minimises_a_quadratic() {
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.5,
            ..Default::default()
        };
        let mut state = OptimizerState::new(&cfg, 1, 1);
        let mut x = [3.0f32];
        for _ in 0..200 {
            let g = [2.0 * x[0]];
            state.step(&mut x, &g);
        }
        assert!(x[0].abs() < 1e-4);
    }

    #[test]
    fn adam_first_step_has_size_lr() {
        // With bias correction the first Adam step is lr·sign(g) (up to ε).
        let cfg = OptimizerConfig::default();
        let mut state = OptimizerState::new(&cfg, 1, 2);
        let mut x = [0.0f32, 0.0];
        state.step(&mut x, &[5.0, -0.01]);
        assert!((x[0] + 1e-3).abs() < 1e-7);
        assert!((x[1] - 1e-3).abs() < 1e-6);
    }
}
