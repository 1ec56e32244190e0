//! Hidden-layer activation functions f and their derivatives.

use serde::{Deserialize, Serialize};

/// The hidden activation f (the output layer is linear).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// f(v) = max(0, v).
    #[default]
    Relu,
    /// f(v) = v for v > 0, 0.01·v otherwise.
    LeakyRelu,
    /// f(v) = clamp(v, 0, 1) (the projection onto [0, 1]).
    HardSigmoid,
    /// f(v) = tanh(v).
    Tanh,
    /// f(v) = 1/(1 + e^−v) (the logistic function; the hidden activation of
    /// aihwkit's MNIST example network).
    Sigmoid,
}

/// Slope of leaky ReLU for negative inputs.
pub const LEAKY_SLOPE: f32 = 0.01;

impl Activation {
    /// f(v).
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Relu => v.max(0.0),
            Activation::LeakyRelu => {
                if v > 0.0 {
                    v
                } else {
                    LEAKY_SLOPE * v
                }
            }
            Activation::HardSigmoid => v.clamp(0.0, 1.0),
            Activation::Tanh => v.tanh(),
            Activation::Sigmoid => crate::kernels::fastmath::sigmoid(v),
        }
    }

    /// f′(v) (the right derivative at kinks, as autodiff frameworks use).
    #[inline]
    pub fn derivative(self, v: f32) -> f32 {
        match self {
            Activation::Relu => {
                if v > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu => {
                if v > 0.0 {
                    1.0
                } else {
                    LEAKY_SLOPE
                }
            }
            Activation::HardSigmoid => {
                if v > 0.0 && v < 1.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => {
                let t = v.tanh();
                1.0 - t * t
            }
            Activation::Sigmoid => {
                let s = Activation::Sigmoid.apply(v);
                s * (1.0 - s)
            }
        }
    }

    /// f′(v) given the output `s = f(v)` as well: tanh′ = 1 − s² and
    /// σ′ = s(1 − s) without evaluating f again (the same value as
    /// [`Activation::derivative`]).
    #[inline]
    pub fn derivative_at(self, v: f32, s: f32) -> f32 {
        match self {
            Activation::Tanh => 1.0 - s * s,
            Activation::Sigmoid => s * (1.0 - s),
            _ => self.derivative(v),
        }
    }

    /// Runs `job` with f as a concrete function, so that a loop over f
    /// inside it inlines f and vectorises where f allows: one dispatch on
    /// the activation per call instead of one per element.
    #[inline]
    pub fn dispatch<J: WithActivation>(self, job: J) -> J::Output {
        use Activation::*;
        match self {
            Relu => job.run(|v| Relu.apply(v)),
            LeakyRelu => job.run(|v| LeakyRelu.apply(v)),
            HardSigmoid => job.run(|v| HardSigmoid.apply(v)),
            Tanh => job.run(|v| Tanh.apply(v)),
            Sigmoid => job.run(|v| Sigmoid.apply(v)),
        }
    }

    /// Applies f element-wise: `out[i] = f(v[i])` (one dispatch on f per call).
    #[inline]
    pub fn apply_slice(self, v: &[f32], out: &mut [f32]) {
        if self == Activation::Sigmoid {
            // Sixteen libm-exact `expf`s at a time where the CPU allows.
            crate::kernels::fastmath::sigmoid_slice(v, out);
            return;
        }
        struct Apply<'a>(&'a [f32], &'a mut [f32]);
        impl WithActivation for Apply<'_> {
            type Output = ();
            fn run(self, f: impl Fn(f32) -> f32 + Copy) {
                for (o, &x) in self.1.iter_mut().zip(self.0) {
                    *o = f(x);
                }
            }
        }
        self.dispatch(Apply(v, out));
    }

    /// Back-propagation through f: `g[i] *= f′(v[i])`, given the outputs
    /// `s[i] = f(v[i])` too ([`Activation::derivative_at`]), with one
    /// dispatch on f per call.
    #[inline]
    pub fn scale_by_derivative(self, g: &mut [f32], v: &[f32], s: &[f32]) {
        fn each(g: &mut [f32], v: &[f32], s: &[f32], d: impl Fn(f32, f32) -> f32) {
            for ((g, &v), &s) in g.iter_mut().zip(v).zip(s) {
                *g *= d(v, s);
            }
        }
        use Activation::*;
        match self {
            Relu => each(g, v, s, |v, s| Relu.derivative_at(v, s)),
            LeakyRelu => each(g, v, s, |v, s| LeakyRelu.derivative_at(v, s)),
            HardSigmoid => each(g, v, s, |v, s| HardSigmoid.derivative_at(v, s)),
            Tanh => each(g, v, s, |v, s| Tanh.derivative_at(v, s)),
            Sigmoid => each(g, v, s, |v, s| Sigmoid.derivative_at(v, s)),
        }
    }
}

/// A computation over slices that needs the activation f (see
/// [`Activation::dispatch`]).
pub trait WithActivation {
    /// What the computation returns.
    type Output;
    /// Runs the computation with f.
    fn run(self, f: impl Fn(f32) -> f32 + Copy) -> Self::Output;
}
