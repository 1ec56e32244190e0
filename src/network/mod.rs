//! The network: an MLP whose layers are weight arrays (digital or crossbar),
//! with its topology, activation, loss and initialisation.

pub mod activation;
pub mod loss;

pub use activation::{Activation, WithActivation};
pub use loss::Loss;

use crate::linalg::{Mat, Vector};
use crate::substrate::WeightArray;
use anyhow::{bail, Result};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use std::fmt;
use std::str::FromStr;

/// Layer widths, input first: `784-512-512-10` is `[784, 512, 512, 10]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Architecture(pub Vec<usize>);

impl Architecture {
    /// Number of weight layers L.
    pub fn depth(&self) -> usize {
        self.0.len() - 1
    }
    /// Input width n_0.
    pub fn inputs(&self) -> usize {
        self.0[0]
    }
    /// Output width n_L.
    pub fn outputs(&self) -> usize {
        self.0[self.0.len() - 1]
    }
}

/// The most weight layers an architecture may have.
pub const MAX_LAYERS: usize = 1_000;

impl FromStr for Architecture {
    type Err = String;
    /// Parses `784-512-512-10`; a repeated block may be written `1000x4`
    /// (`784-1000x4-10` = four hidden layers of 1000).
    fn from_str(s: &str) -> Result<Self, String> {
        let err = |why: &str| {
            format!("invalid architecture '{s}': {why} (expected widths joined by '-', e.g. 784-512-512-10; 'NxR' repeats a width, e.g. 784-1000x4-10)")
        };
        let mut widths = Vec::new();
        for part in s.trim().split('-') {
            let part = part.trim();
            let (w, r) = match part.split_once(['x', '×']) {
                Some((w, r)) => (w, r.parse::<usize>().map_err(|_| err("bad repeat count"))?),
                None => (part, 1),
            };
            let w: usize = w
                .parse()
                .map_err(|_| err(&format!("'{part}' is not a width")))?;
            if w == 0 || r == 0 {
                return Err(err("widths and repeat counts must be ≥ 1"));
            }
            if widths.len() + r > MAX_LAYERS + 1 {
                return Err(err(&format!(
                    "more than {MAX_LAYERS} weight layers (a network this deep cannot train)"
                )));
            }
            widths.extend(std::iter::repeat_n(w, r));
        }
        if widths.len() < 2 {
            return Err(err("need at least an input and an output width"));
        }
        Ok(Architecture(widths))
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|w| w.to_string()).collect();
        write!(f, "{}", parts.join("-"))
    }
}

/// Draws initial parameters: W_k ~ N(0, gain²/n_{k−1}), b_k = 0 (DESIGN.md
/// §1; `gain` = 1 is the paper's scaled-normal initialisation).
pub fn initial_parameters<R: Rng>(
    arch: &Architecture,
    gain: f32,
    rng: &mut R,
) -> Vec<(Mat, Vector)> {
    arch.0
        .windows(2)
        .map(|w| {
            let (n_in, n_out) = (w[0], w[1]);
            let std = gain / (n_in as f32).sqrt();
            let normal = Normal::new(0.0f32, std).expect("finite positive std");
            (
                Mat::from_fn(n_out, n_in, |_, _| normal.sample(rng)),
                Vector::zeros(n_out),
            )
        })
        .collect()
}

/// A feed-forward network of weight arrays with a shared hidden activation
/// and a linear output layer.
pub struct Network {
    /// Weight layers W_1..W_L (index 0 is W_1).
    pub layers: Vec<Box<dyn WeightArray>>,
    /// Hidden activation f.
    pub activation: Activation,
    /// Training loss.
    pub loss: Loss,
}

impl Clone for Network {
    fn clone(&self) -> Self {
        Self {
            layers: self.layers.iter().map(|l| l.clone_box()).collect(),
            activation: self.activation,
            loss: self.loss,
        }
    }
}

impl Network {
    /// Number of weight layers L.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Layer widths, input first.
    pub fn architecture(&self) -> Architecture {
        let mut w = vec![self.layers[0].n_in()];
        w.extend(self.layers.iter().map(|l| l.n_out()));
        Architecture(w)
    }

    /// Checks that consecutive layers fit together.
    pub fn validate(&self) -> Result<()> {
        if self.layers.is_empty() {
            bail!("a network needs at least one weight layer");
        }
        for (k, pair) in self.layers.windows(2).enumerate() {
            if pair[0].n_out() != pair[1].n_in() {
                bail!(
                    "layer {} has {} outputs but layer {} expects {} inputs",
                    k + 1,
                    pair[0].n_out(),
                    k + 2,
                    pair[1].n_in()
                );
            }
        }
        Ok(())
    }

    /// Plain forward pass (the free, un-nudged prediction):
    /// s_k = f(W_k s_{k−1} + b_k), s_L = W_L s_{L−1} + b_L. Returns s_L.
    pub fn predict(&mut self, x: &Mat) -> Mat {
        let depth = self.depth();
        let mut current = x.clone();
        let mut next = Mat::zeros(0, 0);
        for k in 0..depth {
            self.layers[k].forward(&current, &mut next);
            if k + 1 < depth {
                let f = self.activation;
                next.as_mut_slice()
                    .iter_mut()
                    .for_each(|v| *v = f.apply(*v));
            }
            std::mem::swap(&mut current, &mut next);
        }
        current
    }

    /// Snapshot of all weights and biases.
    pub fn parameters(&self) -> Vec<(Mat, Vector)> {
        self.layers
            .iter()
            .map(|l| (l.weights(), l.bias()))
            .collect()
    }
}

/// Index of the largest entry of each column (the predicted class).
pub fn argmax_columns(x: &Mat) -> Vec<usize> {
    x.column_iter()
        .map(|c| {
            let mut best = 0;
            for i in 1..c.len() {
                if c[i] > c[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_architectures() {
        assert_eq!(
            "784-512-512-10".parse::<Architecture>().unwrap().0,
            vec![784, 512, 512, 10]
        );
        assert_eq!(
            "784-1000x4-10".parse::<Architecture>().unwrap().0,
            vec![784, 1000, 1000, 1000, 1000, 10]
        );
        for bad in ["", "784", "784-0-10", "784-abc-10", "784--10", "784-3x0-10"] {
            assert!(bad.parse::<Architecture>().is_err(), "{bad}");
        }
    }
}
