//! Losses ℓ(s_L, y) on the linear output layer (DESIGN.md §1).

use crate::linalg::Mat;
use serde::{Deserialize, Serialize};

/// The training loss.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Least squares ½‖s_L − y‖² with one-hot y (the paper's MLP experiments).
    #[default]
    Mse,
    /// Softmax cross-entropy −Σ y log softmax(s_L).
    Ce,
}

impl Loss {
    /// Summed loss over the batch (columns of `output` and `target`).
    pub fn total(self, output: &Mat, target: &Mat) -> f64 {
        let n = output.nrows();
        let mut total = 0.0f64;
        for (o, y) in output
            .as_slice()
            .chunks_exact(n)
            .zip(target.as_slice().chunks_exact(n))
        {
            match self {
                Loss::Mse => {
                    for (a, b) in o.iter().zip(y) {
                        let d = (*a - *b) as f64;
                        total += 0.5 * d * d;
                    }
                }
                Loss::Ce => {
                    let m = o.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let lse = m + o.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                    for (a, b) in o.iter().zip(y) {
                        total -= *b as f64 * (*a as f64 - lse);
                    }
                }
            }
        }
        total
    }

    /// ∇ℓ with respect to the output pre-activation, per sample:
    /// `s_L − y` (mse) or `softmax(s_L) − y` (ce). Written into `out`.
    pub fn gradient(self, output: &Mat, target: &Mat, out: &mut Mat) {
        crate::linalg::ensure_shape(out, output.nrows(), output.ncols());
        let n = output.nrows();
        for ((o, y), g) in output
            .as_slice()
            .chunks_exact(n)
            .zip(target.as_slice().chunks_exact(n))
            .zip(out.as_mut_slice().chunks_exact_mut(n))
        {
            match self {
                Loss::Mse => {
                    for ((gi, a), b) in g.iter_mut().zip(o).zip(y) {
                        *gi = a - b;
                    }
                }
                Loss::Ce => {
                    let m = o.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let mut z = 0.0f32;
                    for (gi, a) in g.iter_mut().zip(o) {
                        *gi = (a - m).exp();
                        z += *gi;
                    }
                    for (gi, b) in g.iter_mut().zip(y) {
                        *gi = *gi / z - b;
                    }
                }
            }
        }
    }
}
