//! The read model (DESIGN.md §2): the analog product with the
//! read-visible conductances, read noise — exact in distribution: with
//! `G → G(1 + σ ξ)` per device per read, output `i` gets Gaussian noise of
//! variance `σ² Σ_j ((G⁺_ij)² + (G⁻_ij)²) x_j²`, one extra SGEMM with the
//! cached squared terms instead of a random number per device — and the
//! additive output noise `σ_out ξ`, drawn with it as one Gaussian of the
//! summed variance. Repeated reads of the same inputs reuse the noise-free
//! part ([`RepeatRead`]).

use super::periphery::ReadDirection;
use super::Crossbar;
use crate::kernels::gather::{direct_product, is_sparse, Product};
use crate::linalg::{ensure_shape, gemm, Mat, Op};
use crate::random::fill_standard_normal;

/// The last forward read of a crossbar: its inputs, noise-free output and
/// read-noise variance. A read of identical inputs while the devices are
/// unchanged has the same noise-free output and variance, so only the noise
/// is drawn again — DP/DP⊤ inference re-reads the first layer with the same
/// input `x` in every sweep. Exact: the repeated read has the same
/// distribution as a fresh one.
#[derive(Clone, Debug, Default)]
pub(super) struct RepeatRead {
    input: Mat,
    clean: Mat,
    variance: Mat,
    scales: Vec<f32>,
    /// Device generation of the stored read (`None` = nothing stored).
    generation: Option<u64>,
    /// Device generation of the last forward read.
    last_forward: Option<u64>,
}

impl RepeatRead {
    fn matches(&self, x: &Mat, generation: u64) -> bool {
        self.generation == Some(generation)
            && self.input.shape() == x.shape()
            && self.input.as_slice() == x.as_slice()
    }

    /// Whether this is the second (or later) forward read with the devices
    /// unchanged (`generation`), and so worth keeping for the reads after
    /// it: one read per write (back-propagation, every layer but DP's
    /// first) then never pays for the copy, and a run of repeats pays one
    /// full read more. Results do not change: the kept read is a cache, and
    /// a fresh read draws the same noise as a repeated one.
    fn read_again(&mut self, generation: u64) -> bool {
        let again = self.last_forward == Some(generation);
        self.last_forward = Some(generation);
        again
    }

    fn store(&mut self, x: &Mat, clean: &Mat, variance: &Mat, scales: &[f32], generation: u64) {
        self.input.clone_from(x);
        self.clean.clone_from(clean);
        self.variance.clone_from(variance);
        self.scales.clear();
        self.scales.extend_from_slice(scales);
        self.generation = Some(generation);
    }
}

impl Crossbar {
    /// A forward read of the same inputs `x` as the last one, with the
    /// devices unchanged: the noise-free output and the read-noise variance
    /// are those of the last read; only the noise (and the ADC after it)
    /// is drawn afresh. `false` (and `out` untouched) if `x` is no repeat.
    pub(super) fn read_repeat(&mut self, x: &Mat, out: &mut Mat) -> bool {
        if !self.repeat.matches(x, self.generation) {
            return false;
        }
        out.copy_from(&self.repeat.clean);
        self.variance.clone_from(&self.repeat.variance);
        self.scales.clone_from(&self.repeat.scales);
        self.noise_and_adc(out, ReadDirection::Forward);
        true
    }

    /// Keeps the noise-free output `clean` of a forward read of `x` (and
    /// its variance and scales) for repeats, when worth it (see
    /// [`RepeatRead::read_again`]).
    pub(super) fn keep_for_repeat(&mut self, x: &Mat, clean: &Mat) {
        if self.repeat.read_again(self.generation) {
            self.repeat
                .store(x, clean, &self.variance, &self.scales, self.generation);
        }
    }

    /// Read noise, output noise, ADC and rescaling of `y` (`n_out' × B`, in
    /// weight units at scaled input), for the read whose scaled inputs are in
    /// `x_scaled`.
    pub(super) fn analog_output(&mut self, y: &mut Mat, direction: ReadDirection) {
        self.read_noise_variance(y.nrows(), y.ncols(), direction);
        self.noise_and_adc(y, direction);
    }

    /// The noise of the read (variance in `variance`), then the ADC.
    pub(super) fn noise_and_adc(&mut self, y: &mut Mat, direction: ReadDirection) {
        self.add_noise(y);
        self.adc(y, direction);
    }

    /// `variance ← Σ_j S_ij x̃_jb²` (forward: plus the bias line's term) for
    /// the scaled inputs in `x_scaled`: one SGEMM with the squared-conductance
    /// terms (DESIGN.md §2). Nothing without read noise.
    pub(super) fn read_noise_variance(
        &mut self,
        rows: usize,
        batch: usize,
        direction: ReadDirection,
    ) {
        let transposed = direction == ReadDirection::Transposed;
        if self.model.noise.read > 0.0 {
            // Var(y_ib) = σ² Σ_j S_ij x̃_jb² : one SGEMM with the squared terms.
            ensure_shape(&mut self.x_squared, self.x_scaled.nrows(), batch);
            for (d, s) in self
                .x_squared
                .as_mut_slice()
                .iter_mut()
                .zip(self.x_scaled.as_slice())
            {
                *d = s * s;
            }
            ensure_shape(&mut self.variance, rows, batch);
            let op = if transposed { Op::T } else { Op::N };
            mvm(&self.sq_read, op, &self.x_squared, &mut self.variance);
            if !transposed {
                for (column, &drive) in self
                    .variance
                    .as_mut_slice()
                    .chunks_exact_mut(rows.max(1))
                    .zip(&self.bias_drive)
                {
                    let d2 = drive * drive;
                    for (v, s) in column.iter_mut().zip(self.sq_bias.as_slice()) {
                        *v += s * d2;
                    }
                }
            }
        }
    }

    /// Adds read noise (variance `σ² · variance`) and output noise
    /// (`σ_out · w_scale`) to `y`.
    pub(super) fn add_noise(&mut self, y: &mut Mat) {
        let (rows, batch) = y.shape();
        let sigma = self.model.noise.read;
        let ws = self.config.w_scale;
        let out_noise = self.config.output_noise * ws;
        if sigma > 0.0 {
            // Read noise and output noise are independent Gaussians: one draw
            // with the summed variance σ² Var + σ_out² has the same law.
            // The draws come first, so the arithmetic loop vectorises.
            let (sigma2, out2) = (sigma * sigma, out_noise * out_noise);
            self.normals.resize(rows * batch, 0.0);
            fill_standard_normal(&mut self.read_rng, &mut self.normals);
            for ((yv, var), xi) in y
                .as_mut_slice()
                .iter_mut()
                .zip(self.variance.as_slice())
                .zip(&self.normals)
            {
                *yv += (sigma2 * var.max(0.0) + out2).sqrt() * xi;
            }
        } else if out_noise > 0.0 {
            self.normals.resize(rows * batch, 0.0);
            fill_standard_normal(&mut self.read_rng, &mut self.normals);
            for (yv, xi) in y.as_mut_slice().iter_mut().zip(&self.normals) {
                *yv += out_noise * xi;
            }
        }
    }
}

/// `out ← op(W) x` through the periphery path: SGEMM for a dense batch, a
/// direct matrix–vector product per sample for one sample or a sparse batch
/// of forward inputs (SGEMM's packing of the whole array dominates at batch
/// 1, and SGEMM multiplies every zero; zero inputs — most MNIST pixels — are
/// skipped by the direct product).
pub(super) fn mvm(w: &Mat, op: Op, x: &Mat, out: &mut Mat) {
    if x.ncols() != 1 && !(op == Op::N && is_sparse(x.as_slice())) {
        gemm(1.0, w, op, x, Op::N, 0.0, out);
        return;
    }
    let op = match op {
        Op::N => Product::Forward,
        Op::T => Product::Transposed,
    };
    let n_out = out.nrows();
    direct_product(
        w.as_slice(),
        w.nrows(),
        op,
        x.as_slice(),
        x.nrows(),
        out.as_mut_slice(),
        n_out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct product (one sample, or a batch of sparse forward inputs)
    /// agrees with SGEMM, for output counts below, at and past a row block
    /// and batches on both sides of the sparsity threshold.
    #[test]
    fn direct_mvm_matches_sgemm_with_zero_inputs() {
        for (rows, cols) in [(7, 23), (64, 40), (150, 97)] {
            let w = Mat::from_fn(rows, cols, |i, j| ((i * 31 + j * 7) as f32 * 0.13).sin());
            for batch in [1usize, 5] {
                // Every `n`-th input non-zero (sparse: the direct product
                // takes batches) or every `n`-th zero (dense: SGEMM does).
                for (n, sparse) in [(3usize, true), (100, true), (2, false), (5, false)] {
                    let x = Mat::from_fn(cols, batch, |j, b| {
                        if ((j + b) % n == 0) != sparse {
                            0.0
                        } else {
                            ((j + 3 * b) as f32 * 0.7).cos()
                        }
                    });
                    assert_eq!(is_sparse(x.as_slice()), sparse);
                    let mut direct = Mat::zeros(rows, batch);
                    let mut reference = Mat::zeros(rows, batch);
                    mvm(&w, Op::N, &x, &mut direct);
                    gemm(1.0, &w, Op::N, &x, Op::N, 0.0, &mut reference);
                    assert!(
                        (&direct - &reference).abs().max() < 1e-5,
                        "{rows}×{cols}, batch {batch}, every {n}-th, sparse {sparse}"
                    );
                    let d = Mat::from_fn(rows, batch, |i, b| i as f32 - 3.0 + b as f32);
                    let mut direct_t = Mat::zeros(cols, batch);
                    let mut reference_t = Mat::zeros(cols, batch);
                    mvm(&w, Op::T, &d, &mut direct_t);
                    gemm(1.0, &w, Op::T, &d, Op::N, 0.0, &mut reference_t);
                    let scale = reference_t.abs().max().max(1.0);
                    assert!((&direct_t - &reference_t).abs().max() < 1e-5 * scale);
                }
            }
        }
    }
}
