//! The crossbar's direct matrix–vector product for single samples and
//! sparse batches: the non-zero inputs of a sample are gathered (sixteen
//! at a time with AVX-512 compresses) and only their columns are summed;
//! the transposed product takes four dot products at a time with AVX2.
//!
//! Each hand-written vector build sits beside its portable twin and gives
//! its bits (the tests below check it). With the cargo feature `portable`
//! only the portable code is compiled: no intrinsics, no run-time CPU
//! dispatch. The kernels work on column-major slices (this layer sits
//! below `linalg`); the crossbar chooses between them and SGEMM.

use super::simd_builds;

/// Which product a kernel computes with a column-major `W`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// `W x` (a forward read).
    Forward,
    /// `Wᵀ d` (a transposed read).
    Transposed,
}

/// `out ← op(W) x` by the direct product, sample by sample: `ws` is `W`
/// column-major with `n_rows` rows, `x` holds the samples as columns of
/// `n_x` inputs and `out` their columns of `n_o` outputs. Zero inputs of a
/// forward product are skipped (most MNIST pixels are zero); the result
/// equals SGEMM's up to the order of the additions.
pub fn direct_product(
    ws: &[f32],
    n_rows: usize,
    op: Product,
    x: &[f32],
    n_x: usize,
    out: &mut [f32],
    n_o: usize,
) {
    let columns = x
        .chunks_exact(n_x.max(1))
        .zip(out.chunks_exact_mut(n_o.max(1)));
    let mut nonzero = Vec::with_capacity(if op == Product::Forward { n_x } else { 0 });
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            for (xs, o) in columns {
                // SAFETY: the CPU has AVX-512F (checked just above).
                unsafe { mvm_single_avx512(ws, n_rows, op, xs, o, &mut nonzero) };
            }
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            for (xs, o) in columns {
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe { mvm_single_avx2(ws, n_rows, op, xs, o, &mut nonzero) };
            }
            return;
        }
    }
    for (xs, o) in columns {
        mvm_single(ws, n_rows, op, xs, o, &mut nonzero, false);
    }
}

/// Largest fraction of non-zero inputs at which a batch's forward read takes
/// the per-sample direct product instead of SGEMM: the direct product costs
/// about twice as much per non-zero input as SGEMM per input (it streams the
/// array's columns once per sample instead of reusing them across the
/// batch), so it wins below about half; measured with the
/// `forward_read_*` benches on MNIST inputs (≈ 19 % non-zero).
const SPARSE_READ_DENSITY: f32 = 0.4;

/// Whether few enough of `x` are non-zero for the direct product.
pub fn is_sparse(x: &[f32]) -> bool {
    (count_nonzero(x) as f32) < SPARSE_READ_DENSITY * x.len() as f32
}

/// How many of `x` are non-zero (NaN included): counted in `u32` lanes,
/// which the compiler vectorises (`filter().count()` stayed scalar), a
/// block of 2²⁰ at a time so that no lane overflows.
#[inline(always)]
fn count_nonzero_portable(x: &[f32]) -> usize {
    x.chunks(1 << 20)
        .map(|block| block.iter().map(|&v| (v != 0.0) as u32).sum::<u32>() as usize)
        .sum()
}

simd_builds!(
    /// [`count_nonzero_portable`] on 16 (AVX-512) or 8 (AVX2) lanes where the
    /// CPU has them (the same count).
    fn count_nonzero, count_nonzero_avx512, count_nonzero_avx2 =
        count_nonzero_portable(x: &[f32]) -> usize
);

// `mvm_single` compiled for AVX-512 (the forward product's row blocks are
// four registers) and AVX2 (eight registers; the transposed product takes
// four outputs at a time with `dot4_avx2`). The bits are those of the
// baseline build: the forward sums run in the same order whatever the
// vector width, and the dot products keep their own eight partial sums.
simd_builds!(mvm_single_avx512, mvm_single_avx2 = mvm_single(
    ws: &[f32],
    n_rows: usize,
    op: Product,
    xs: &[f32],
    o: &mut [f32],
    nonzero: &mut Vec<NonzeroInput>,
); true);

/// Rows per block of the forward product: 64 sums are four AVX-512 or
/// eight AVX2 registers, so a block's sums stay in registers while the
/// sample's non-zero inputs stream past, instead of being loaded and stored
/// once per input.
const ROW_BLOCK: usize = 64;

/// Rows `from..from + sums.len()` of the forward product `W x` into `sums`,
/// from the non-zero inputs `(j, x_j)`: four at a time,
/// `((a x₀ + b x₁) + c x₂) + d x₃`, then one at a time — four independent
/// products per addition to a running sum instead of one long chain of
/// additions. A function, not a closure, so that it is compiled with the
/// caller's target features.
#[inline(always)]
fn forward_rows(
    ws: &[f32],
    n_rows: usize,
    nonzero: &[NonzeroInput],
    from: usize,
    sums: &mut [f32],
) {
    let len = sums.len();
    let column = |j: u32| {
        let start = j as usize * n_rows + from;
        &ws[start..start + len]
    };
    sums.iter_mut().for_each(|v| *v = 0.0);
    let mut fours = nonzero.chunks_exact(4);
    for four in fours.by_ref() {
        let [(j0, x0), (j1, x1), (j2, x2), (j3, x3)] = [0, 1, 2, 3].map(|k| (four[k].j, four[k].x));
        let columns = sums
            .iter_mut()
            .zip(column(j0))
            .zip(column(j1))
            .zip(column(j2))
            .zip(column(j3));
        for ((((s, a), b), c), d) in columns {
            *s += a * x0 + b * x1 + c * x2 + d * x3;
        }
    }
    for &NonzeroInput { j, x: xj } in fours.remainder() {
        for (s, w) in sums.iter_mut().zip(column(j)) {
            *s += w * xj;
        }
    }
}

/// `o ← op(W) x` for one sample, `W` column-major with `n_rows` rows in `ws`;
/// `nonzero` is scratch for the forward product's non-zero inputs. With
/// `avx2` (only from the AVX builds above) the transposed product takes
/// four outputs at a time with [`dot4_avx2`]; the bits are the same.
#[inline(always)]
fn mvm_single(
    ws: &[f32],
    n_rows: usize,
    op: Product,
    xs: &[f32],
    o: &mut [f32],
    nonzero: &mut Vec<NonzeroInput>,
    avx2: bool,
) {
    match op {
        Product::Forward => {
            // Zero inputs add nothing: only the non-zero ones are read
            // (gathered without a branch per input: most MNIST pixels are
            // zero, but which ones is unpredictable).
            let count = gather_nonzero(xs, nonzero);
            let nonzero = &nonzero[..count];
            let full = n_rows - n_rows % ROW_BLOCK;
            for (out, from) in o[..full]
                .chunks_exact_mut(ROW_BLOCK)
                .zip((0..full).step_by(ROW_BLOCK))
            {
                // A fixed-size block, so that its sums live in registers.
                let mut sums = [0.0f32; ROW_BLOCK];
                forward_rows(ws, n_rows, nonzero, from, &mut sums);
                out.copy_from_slice(&sums);
            }
            forward_rows(ws, n_rows, nonzero, full, &mut o[full..]);
        }
        Product::Transposed => {
            #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
            let (done, _) = (0, avx2);
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            let mut done = 0;
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            if avx2 && n_rows > 0 {
                // Four outputs at a time (see `dot4_avx2`), the rest below.
                done = o.len() - o.len() % 4;
                for (four, j) in o[..done].chunks_exact_mut(4).zip((0..done).step_by(4)) {
                    let col = |c: usize| &ws[(j + c) * n_rows..(j + c + 1) * n_rows];
                    // SAFETY: the caller checked AVX2; columns are `n_rows`
                    // = `xs.len()` long.
                    let sums = unsafe { dot4_avx2([col(0), col(1), col(2), col(3)], xs) };
                    four.copy_from_slice(&sums);
                }
            }
            let columns = ws.chunks_exact(n_rows.max(1));
            for (oj, col) in o[done..].iter_mut().zip(columns.skip(done)) {
                *oj = dot(col, xs);
            }
        }
    }
}

/// A non-zero input `x_j` of a sample and its line `j` (laid out as two
/// 32-bit words, which the AVX-512 gather stores whole).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct NonzeroInput {
    j: u32,
    x: f32,
}

/// Lists the non-zero inputs `(j, x_j)` of one sample at the front of
/// `nonzero` (in order) and returns how many there are: 16 inputs at a time
/// with AVX-512 (a compare and two compresses; the branch-free loop below
/// took a fifth of the forward product), else one at a time without a
/// branch per input (which inputs are zero is unpredictable).
#[inline(always)]
fn gather_nonzero(xs: &[f32], nonzero: &mut Vec<NonzeroInput>) -> usize {
    // Room for one whole vector of pairs past the last input.
    if nonzero.len() < xs.len() + 16 {
        nonzero.resize(xs.len() + 16, NonzeroInput::default());
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if std::arch::is_x86_feature_detected!("avx512f") && xs.len() <= u32::MAX as usize {
        // SAFETY: the CPU has AVX-512F (checked just above); `nonzero` has
        // room for `xs.len() + 16` pairs.
        return unsafe { gather_nonzero_avx512(xs, nonzero) };
    }
    let mut count = 0;
    for (j, &v) in (0u32..).zip(xs) {
        nonzero[count] = NonzeroInput { j, x: v };
        count += (v != 0.0) as usize;
    }
    count
}

/// [`gather_nonzero`] sixteen inputs at a time: the non-zero lanes
/// (`v != 0.0`, so NaN counts as non-zero, as in the scalar loop) and their
/// indices are compressed to the front of two registers, interleaved into
/// `(j, x_j)` pairs and stored whole at the list's end; only the count
/// advances by the number of non-zero lanes (the stores past it are
/// overwritten by the next ones).
///
/// # Safety
/// The CPU must support AVX-512F; `nonzero` must hold at least
/// `xs.len() + 16` pairs, and `xs.len()` fit in a `u32`.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
unsafe fn gather_nonzero_avx512(xs: &[f32], nonzero: &mut [NonzeroInput]) -> usize {
    use std::arch::x86_64::{
        _mm512_add_epi32, _mm512_castps_si512, _mm512_cmp_ps_mask, _mm512_maskz_compress_epi32,
        _mm512_maskz_compress_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_epi32,
        _mm512_set1_epi32, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_si512, _CMP_NEQ_UQ,
    };
    debug_assert!(nonzero.len() >= xs.len() + 16);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // Index j of pair k at 2k and its value at 2k + 1 (second operand: + 16).
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let out = nonzero.as_mut_ptr().cast::<u32>();
    let mut count = 0usize;
    let mut from = 0usize;
    while from < xs.len() {
        let take = (xs.len() - from).min(16);
        let load: u16 = if take == 16 {
            u16::MAX
        } else {
            (1u16 << take) - 1
        };
        // SAFETY: the masked load reads `take` floats from `from`, inside
        // `xs`; the two stores write 16 pairs from `count` ≤ `from`, inside
        // `nonzero` (which holds `xs.len() + 16`).
        unsafe {
            let v = _mm512_maskz_loadu_ps(load, xs.as_ptr().add(from));
            let keep = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps()) & load;
            let j = _mm512_add_epi32(lanes, _mm512_set1_epi32(from as i32));
            let values = _mm512_castps_si512(_mm512_maskz_compress_ps(keep, v));
            let indices = _mm512_maskz_compress_epi32(keep, j);
            let first = _mm512_permutex2var_epi32(indices, low, values);
            let second = _mm512_permutex2var_epi32(indices, high, values);
            _mm512_storeu_si512(out.add(2 * count).cast(), first);
            _mm512_storeu_si512(out.add(2 * count + 16).cast(), second);
            count += keep.count_ones() as usize;
        }
        from += take;
    }
    count
}

/// Partial sums per dot product in [`dot`] and `dot4_avx2`.
const DOT_LANES: usize = 8;

/// `Σ a_i b_i` with eight independent partial sums, so that the compiler
/// can keep them in one SIMD register (a single running sum is a serial
/// chain of additions that cannot be vectorised).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; DOT_LANES];
    let body = a.len() - a.len() % DOT_LANES;
    for (ca, cb) in a[..body]
        .chunks_exact(DOT_LANES)
        .zip(b[..body].chunks_exact(DOT_LANES))
    {
        for k in 0..DOT_LANES {
            acc[k] += ca[k] * cb[k];
        }
    }
    finish_dot(acc, &a[body..], &b[body..a.len()])
}

/// Four [`dot`]s with the same `b` in one pass, for AVX2: four independent
/// chains of additions instead of one (a single chain waits on the adder's
/// latency), and `b` loaded once for all four. Each result is [`dot`]'s,
/// bit for bit: the same eight partial sums (one register lane each, a
/// product then a sum, no fused multiply-add), the same order. Written
/// with intrinsics because LLVM vectorises the portable form across the
/// four columns, with shuffles, instead of along the lanes.
///
/// # Safety
/// The CPU must support AVX2; every `a[c]` must be as long as `b`.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(a: [&[f32]; 4], b: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let n = b.len();
    debug_assert!(a.iter().all(|c| c.len() == n));
    let body = n - n % DOT_LANES;
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k < body {
        // SAFETY: k + 8 ≤ body ≤ n, the length of `b` and of every `a[c]`.
        unsafe {
            let vb = _mm256_loadu_ps(b.as_ptr().add(k));
            for (acc, col) in acc.iter_mut().zip(a) {
                let va = _mm256_loadu_ps(col.as_ptr().add(k));
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(va, vb));
            }
        }
        k += DOT_LANES;
    }
    let tail = &b[body..];
    let mut out = [0.0f32; 4];
    for c in 0..4 {
        let mut lanes = [0.0f32; DOT_LANES];
        // SAFETY: `lanes` holds eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[c]) };
        out[c] = finish_dot(lanes, &a[c][body..n], tail);
    }
    out
}

/// The end of [`dot`]: the partial sums in order, then the tail's products.
#[inline(always)]
fn finish_dot(acc: [f32; DOT_LANES], a_tail: &[f32], b_tail: &[f32]) -> f32 {
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The non-zero inputs are listed in order, with NaN counted as non-zero
    /// and both zeros skipped, by the AVX-512 gather as by the scalar loop,
    /// for lengths around the vector width.
    #[test]
    fn nonzero_inputs_are_listed_in_order() {
        for len in [0usize, 1, 15, 16, 17, 31, 33, 100, 784] {
            let xs: Vec<f32> = (0..len)
                .map(|j| match j % 7 {
                    0 | 3 => 0.0,
                    5 => -0.0,
                    6 if j % 5 == 0 => f32::NAN,
                    _ => (j as f32 * 0.37).sin() + 1.5,
                })
                .collect();
            let expected: Vec<(u32, u32)> = (0u32..)
                .zip(&xs)
                .filter(|(_, v)| **v != 0.0)
                .map(|(j, v)| (j, v.to_bits()))
                .collect();
            // A list with stale entries in it, as between two samples.
            let mut nonzero = vec![NonzeroInput { j: 9, x: 9.0 }; 3];
            let count = gather_nonzero(&xs, &mut nonzero);
            let got: Vec<(u32, u32)> = nonzero[..count]
                .iter()
                .map(|n| (n.j, n.x.to_bits()))
                .collect();
            assert_eq!(got, expected, "length {len}");
        }
    }

    #[test]
    fn only_sparse_batches_take_the_direct_product() {
        let mut x = vec![0.0f32; 100];
        x[..39].iter_mut().for_each(|v| *v = 1.0);
        assert!(is_sparse(&x));
        x[39] = -2.0;
        assert!(!is_sparse(&x));
    }

    /// The AVX2 and AVX-512 builds of the single-sample product give the
    /// same bits as the baseline build (where the CPU has them to compare),
    /// including the forward product's row blocks and their remainder and
    /// the transposed product's four-at-a-time dot products (`dot4_avx2`),
    /// for column lengths below, at and past the eight lanes and output
    /// counts that leave a remainder after the groups of four.
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    #[test]
    fn single_sample_mvm_is_bit_identical_with_avx() {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        let shapes = [(1, 5), (8, 8), (10, 129), (37, 301), (128, 257), (150, 64)];
        for (rows, cols) in shapes {
            let w: Vec<f32> = (0..rows * cols).map(|k| (k as f32 * 0.013).sin()).collect();
            let x: Vec<f32> = (0..cols)
                .map(|j| {
                    if j % 3 == 0 {
                        0.0
                    } else {
                        (j as f32 * 0.7).cos()
                    }
                })
                .collect();
            let d: Vec<f32> = (0..rows).map(|i| (i as f32 * 0.3).sin()).collect();
            for (op, input, out_len) in [
                (Product::Forward, &x, rows),
                (Product::Transposed, &d, cols),
            ] {
                let mut scratch = Vec::new();
                let mut baseline = vec![0.0; out_len];
                mvm_single(&w, rows, op, input, &mut baseline, &mut scratch, false);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                if avx2 {
                    let mut wide = vec![0.0; out_len];
                    // SAFETY: AVX2 was detected above.
                    unsafe { mvm_single_avx2(&w, rows, op, input, &mut wide, &mut scratch) };
                    assert_eq!(bits(&baseline), bits(&wide), "AVX2 {rows}×{cols} {op:?}");
                }
                if avx512 {
                    let mut wide = vec![0.0; out_len];
                    // SAFETY: AVX-512F was detected above.
                    unsafe { mvm_single_avx512(&w, rows, op, input, &mut wide, &mut scratch) };
                    assert_eq!(bits(&baseline), bits(&wide), "AVX-512 {rows}×{cols} {op:?}");
                }
            }
        }
    }

    #[test]
    fn dot_matches_the_serial_sum_for_every_length() {
        for n in 0..40usize {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let serial: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
            assert!((dot(&a, &b) as f64 - serial).abs() < 1e-5, "length {n}");
        }
    }
}
