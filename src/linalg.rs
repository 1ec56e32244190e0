//! Dense linear algebra on the batch layout used everywhere in dyadsim.
//!
//! **Layout.** A batch of activity vectors is an `n × B` column-major matrix
//! ([`Mat`]): column `j` is sample `j`, so one sample's neurons are contiguous.
//! A weight matrix `W_k` is `n_k × n_{k−1}`. Products go through
//! `matrixmultiply`'s blocked, multi-threaded SGEMM with strides, so the
//! transposed read `Wᵀ δ` and the outer product `δ s̄ᵀ` cost no copies.

use crate::kernels::reduce::max_magnitude;
use nalgebra::{DMatrix, DVector};

/// A dense `f32` matrix (column-major). Batches are `neurons × batch`.
pub type Mat = DMatrix<f32>;
/// A dense `f32` column vector (biases, per-neuron parameters).
pub type Vector = DVector<f32>;

/// Whether an operand of [`gemm`] is used as is or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Use the matrix as stored.
    N,
    /// Use its transpose.
    T,
}

/// `C ← α · op(A) · op(B) + β · C` (BLAS SGEMM semantics).
///
/// # Panics
/// If the shapes do not agree (a programming error, never user input).
pub fn gemm(alpha: f32, a: &Mat, op_a: Op, b: &Mat, op_b: Op, beta: f32, c: &mut Mat) {
    let (m, k) = match op_a {
        Op::N => (a.nrows(), a.ncols()),
        Op::T => (a.ncols(), a.nrows()),
    };
    let (k2, n) = match op_b {
        Op::N => (b.nrows(), b.ncols()),
        Op::T => (b.ncols(), b.nrows()),
    };
    assert_eq!(k, k2, "gemm: inner dimensions differ");
    assert_eq!((c.nrows(), c.ncols()), (m, n), "gemm: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        *c *= beta;
        return;
    }
    // Column-major: element (i, j) sits at i + j·nrows → row stride 1, column stride nrows.
    let (rsa, csa) = strides(a, op_a);
    let (rsb, csb) = strides(b, op_b);
    let rsc = 1isize;
    let csc = c.nrows() as isize;
    // SAFETY: the pointers come from live matrices whose shapes were checked
    // above; matrixmultiply reads exactly m×k, k×n and writes m×n elements
    // at the given strides, all inside the allocations. `c` does not alias
    // `a` or `b` (it is borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}

fn strides(x: &Mat, op: Op) -> (isize, isize) {
    let ld = x.nrows() as isize;
    match op {
        Op::N => (1, ld),
        Op::T => (ld, 1),
    }
}

/// Adds `b` to every column of `x` (`x ← x + b·1ᵀ`).
pub fn add_to_columns(x: &mut Mat, b: &Vector) {
    let n = x.nrows();
    assert_eq!(n, b.len(), "add_to_columns: bias length");
    let bias = b.as_slice();
    for col in x.as_mut_slice().chunks_exact_mut(n) {
        for (v, bi) in col.iter_mut().zip(bias) {
            *v += bi;
        }
    }
}

/// Row sums of `x` (`x · 1`), as needed for bias gradients.
pub fn row_sums(x: &Mat) -> Vector {
    let n = x.nrows();
    let mut out = Vector::zeros(n);
    if n == 0 {
        return out;
    }
    for col in x.as_slice().chunks_exact(n) {
        for (o, v) in out.iter_mut().zip(col) {
            *o += v;
        }
    }
    out
}

/// Largest absolute entry (0 for an empty matrix; NaN propagates as infinity).
pub fn max_abs(x: &Mat) -> f32 {
    let (top, nan) = max_magnitude(x.as_slice());
    if nan {
        f32::INFINITY
    } else {
        top
    }
}

/// Largest |x_i| of `x`, skipping NaNs as `f32::max` does (0 if empty):
/// the same value as `x.iter().fold(0.0, |m, v| m.max(v.abs()))`.
pub fn max_abs_slice(x: &[f32]) -> f32 {
    max_magnitude(x).0
}

/// Resizes `x` to `rows × cols` if needed (reusing the allocation when the shape matches).
pub fn ensure_shape(x: &mut Mat, rows: usize, cols: usize) {
    if x.nrows() != rows || x.ncols() != cols {
        *x = Mat::zeros(rows, cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_abs_is_the_largest_magnitude_and_nan_becomes_infinity() {
        // 27 entries: three full lanes of eight and a remainder of three.
        let base = Mat::from_fn(3, 9, |i, j| ((i * 9 + j) as f32 - 13.0) * 0.5);
        assert_eq!(max_abs(&base), 6.5);
        assert_eq!(max_abs(&Mat::zeros(0, 0)), 0.0);
        for at in [0, 7, 8, 23, 24, 26] {
            let mut x = base.clone();
            x.as_mut_slice()[at] = f32::NAN;
            assert_eq!(max_abs(&x), f32::INFINITY, "NaN at {at}");
            assert_eq!(max_abs_slice(x.as_slice()), 6.5, "NaN skipped at {at}");
            x.as_mut_slice()[at] = -100.0;
            assert_eq!(max_abs(&x), 100.0, "-100 at {at}");
        }
    }

    #[test]
    fn gemm_matches_nalgebra_for_all_transpose_combinations() {
        let a = Mat::from_fn(3, 4, |i, j| (i * 4 + j) as f32 * 0.5 - 2.0);
        let b = Mat::from_fn(4, 5, |i, j| (i as f32 - j as f32) * 0.25);
        let reference = &a * &b;
        let mut c = Mat::zeros(3, 5);
        gemm(1.0, &a, Op::N, &b, Op::N, 0.0, &mut c);
        assert!((&c - &reference).amax() < 1e-5);
        let at = a.transpose();
        let bt = b.transpose();
        let mut c2 = Mat::from_element(3, 5, 1.0);
        gemm(2.0, &at, Op::T, &bt, Op::T, 1.0, &mut c2);
        let expected = reference * 2.0 + Mat::from_element(3, 5, 1.0);
        assert!((&c2 - &expected).amax() < 1e-5);
    }
}
