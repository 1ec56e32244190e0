//! Where the weights live: the weight-array trait and its implementations.
//!
//! A layer's weights `W_k` (`n_k × n_{k−1}`) and bias `b_k` are a physical
//! array that the learning rules can do exactly three things with
//! (DESIGN.md §2, §6):
//!
//! 1. **forward read** `W s̄ + b` (drive the rows with the mean activities,
//!    sum the column currents),
//! 2. **transposed read** `Wᵀ δ` (drive the columns with the differences, sum
//!    the row currents) — the reason dual propagation suits crossbars,
//! 3. **outer-product update** with a gradient of the form
//!    `∇W = c · L Rᵀ`, `∇b = c · L 1` built from locally available signals.
//!
//! Every learning rule is written against [`WeightArray`] only, so it runs
//! unchanged on the digital substrate (`digital::DigitalWeights`: exact floats, SGD/Adam) and on
//! the crossbar model (`crossbar::Crossbar`), the two layers above this one.

pub mod stats;

use crate::linalg::{Mat, Vector};
pub use stats::{
    FullScaleRead, HardwareSummary, HardwareTotals, IrDropStats, LayerHardwareStats, TransferStats,
};

/// A rank-B gradient in factored form: `∇W = scale · left · rightᵀ`,
/// `∇b = scale · left · 1`.
///
/// For DP/DP⊤ (DESIGN.md §1, local weight rule) `left = δ_k` (`n_k × B`),
/// `right = s̄_{k−1}` (`n_{k−1} × B`) and `scale = −1/(Bβ)`; for
/// back-propagation `left` is the back-propagated error and `scale = 1/B`.
/// Keeping the factors (instead of the dense matrix) is what lets a crossbar
/// controller drive rows and columns with pulse trains.
#[derive(Clone, Debug)]
pub struct OuterProductGradient {
    /// Left factor (`n_out × B`): one column per sample.
    pub left: Mat,
    /// Right factor (`n_in × B`): one column per sample.
    pub right: Mat,
    /// Scalar applied to the product.
    pub scale: f32,
}

impl OuterProductGradient {
    /// The dense weight gradient `scale · left · rightᵀ` (`n_out × n_in`).
    pub fn weight_gradient(&self) -> Mat {
        let mut g = Mat::zeros(0, 0);
        self.weight_gradient_into(&mut g);
        g
    }

    /// [`OuterProductGradient::weight_gradient`] into `out` (reshaped if
    /// needed), one SGEMM. The digital step and the crossbar controller's
    /// exact writes both form it here, in the same operation order, which
    /// is what lets ideal devices reproduce digital SGD bit for bit.
    pub fn weight_gradient_into(&self, out: &mut Mat) {
        crate::linalg::ensure_shape(out, self.left.nrows(), self.right.nrows());
        crate::linalg::gemm(
            self.scale,
            &self.left,
            crate::linalg::Op::N,
            &self.right,
            crate::linalg::Op::T,
            0.0,
            out,
        );
    }

    /// The bias gradient `scale · left · 1`.
    pub fn bias_gradient(&self) -> Vector {
        crate::linalg::row_sums(&self.left) * self.scale
    }
}

/// A layer's weight array: the only interface learning rules see.
///
/// Reads take `&mut self` because a physical array may change state when
/// read (read-noise random stream, read counters for the energy model).
///
/// ```
/// use dyadsim::linalg::Mat;
/// use dyadsim::digital::DigitalWeights;
/// use dyadsim::substrate::WeightArray;
/// use dyadsim::digital::optimizer::OptimizerConfig;
/// let w = Mat::from_row_slice(2, 3, &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5]);
/// let mut layer = DigitalWeights::new(w, dyadsim::linalg::Vector::zeros(2), &OptimizerConfig::default());
/// let x = Mat::from_column_slice(3, 1, &[1.0, 2.0, 3.0]);
/// let mut out = Mat::zeros(2, 1);
/// layer.forward(&x, &mut out);
/// assert_eq!(out[(0, 0)], -2.0);
/// assert_eq!(out[(1, 0)], 3.0);
/// ```
pub trait WeightArray: Send {
    /// Number of outputs `n_k` (rows of `W_k`).
    fn n_out(&self) -> usize;
    /// Number of inputs `n_{k−1}` (columns of `W_k`).
    fn n_in(&self) -> usize;
    /// Forward read: `out ← W x + b·1ᵀ` with `x: n_in × B`, `out: n_out × B`
    /// (`out` is resized if needed).
    fn forward(&mut self, x: &Mat, out: &mut Mat);
    /// Transposed read: `out ← Wᵀ d` with `d: n_out × B`, `out: n_in × B`
    /// (`out` is resized if needed). The bias plays no part.
    fn transposed(&mut self, d: &Mat, out: &mut Mat);
    /// Applies one learning step for the gradient `grad` (descent direction
    /// `−grad`). A digital array feeds it to its optimiser; a crossbar's
    /// controller turns it into device pulses.
    fn apply_gradient(&mut self, grad: &OuterProductGradient);
    /// The effective weights as a dense matrix (for metrics and reports; a
    /// crossbar returns the weights its conductances currently encode).
    fn weights(&self) -> Mat;
    /// The effective bias vector.
    fn bias(&self) -> Vector;
    /// Overwrites weights and bias (initialisation, loading a checkpoint).
    /// A crossbar programs its devices towards these values.
    fn set_parameters(&mut self, weights: &Mat, bias: &Vector);
    /// The array's hardware statistics (pulses, wear, stuck devices, reads,
    /// converter events, conductance range); digital arrays have none.
    fn hardware_stats(&self) -> Option<LayerHardwareStats> {
        None
    }
    /// Lets physical time pass (seconds) without writing, e.g. to evaluate
    /// a trained crossbar after retention/drift; digital arrays ignore it.
    /// (A crossbar also advances its clock by `crossbar.time_per_batch`
    /// at every `apply_gradient`.)
    fn advance_time(&mut self, _seconds: f64) {}
    /// The array's physical state (device conductances, pulse counters…) as
    /// JSON for `--out`, so a run can be inspected or resumed; `None` for
    /// arrays whose state is fully given by `weights()`/`bias()`.
    fn device_state(&self) -> Option<serde_json::Value> {
        None
    }
    /// Restores a state produced by [`WeightArray::device_state`].
    fn restore_device_state(&mut self, _state: &serde_json::Value) -> anyhow::Result<()> {
        anyhow::bail!("this weight array has no device state to restore")
    }
    /// What else a run needs to continue exactly where it stopped (the
    /// positions of the array's random streams, the optimiser's moments),
    /// as JSON for `--out`; `None` if there is nothing.
    fn continuation_state(&self) -> Option<serde_json::Value> {
        None
    }
    /// Restores a state produced by [`WeightArray::continuation_state`].
    fn restore_continuation_state(&mut self, _state: &serde_json::Value) -> anyhow::Result<()> {
        anyhow::bail!("this weight array has no continuation state to restore")
    }
    /// A copy of the array in its current state — devices, random streams
    /// and caches — that continues exactly as the original would (for
    /// benchmarks that repeat the same work from one trained state).
    fn clone_box(&self) -> Box<dyn WeightArray>;
}
