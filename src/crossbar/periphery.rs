//! The periphery of the array: DACs that scale, clip and quantise the
//! driven lines' inputs, and ADCs that saturate, quantise and rescale the
//! summed currents (steps 1 and 5 of the read in [`super`]).
//!
//! Each read direction has its own converters ([`Periphery`]): a forward
//! read drives the input lines and converts on the output lines, a
//! transposed read the other way round, so the two can differ on a chip.
//! Today both are built from the same `[crossbar]` settings.

use super::{Crossbar, CrossbarConfig, InputScaling};
use crate::devices::array::round_ties_away_from;
use crate::kernels::simd_builds;
use crate::linalg::{ensure_shape, Mat};

/// Which way a read drives the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadDirection {
    /// `W x + b`: inputs on the input lines (and the bias line), outputs summed on the output lines.
    Forward,
    /// `Wᵀ d`: inputs on the output lines, outputs summed on the input lines.
    Transposed,
}

/// The converters of one read direction: the DAC on the driven lines and
/// the ADC on the summing lines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Converters {
    /// `abs_max` or `fixed` DAC scaling.
    pub input_scaling: InputScaling,
    /// DAC resolution in bits (0 = no quantisation).
    pub dac_bits: u32,
    /// DAC full scale for fixed scaling (input units).
    pub dac_range: f32,
    /// ADC resolution in bits (0 = no quantisation).
    pub adc_bits: u32,
    /// ADC full scale in units of `w_scale` × full-scale input (0 = no saturation).
    pub adc_range: f32,
}

impl Converters {
    /// The converters the `[crossbar]` settings describe.
    pub fn of(config: &CrossbarConfig) -> Self {
        Self {
            input_scaling: config.input_scaling,
            dac_bits: config.dac_bits,
            dac_range: config.dac_range,
            adc_bits: config.adc_bits,
            adc_range: config.adc_range,
        }
    }

    /// Whether these converters pass values through unchanged (no
    /// quantisation, no saturation, abs-max scaling undone exactly).
    pub fn is_ideal(&self) -> bool {
        self.dac_bits == 0
            && self.adc_bits == 0
            && self.adc_range == 0.0
            && self.input_scaling == InputScaling::AbsMax
    }

    /// Levels per polarity of a `bits`-bit converter, `2^{bits−1} − 1`
    /// (0 = no quantisation).
    fn levels(bits: u32) -> f32 {
        if bits >= 2 {
            ((1u32 << (bits - 1)) - 1) as f32
        } else {
            0.0
        }
    }
}

/// The converters of both read directions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Periphery {
    /// Forward reads.
    pub forward: Converters,
    /// Transposed reads.
    pub transposed: Converters,
}

impl Periphery {
    /// Both directions with the converters of the `[crossbar]` settings.
    pub fn of(config: &CrossbarConfig) -> Self {
        let c = Converters::of(config);
        Self {
            forward: c,
            transposed: c,
        }
    }

    /// The converters of a read direction.
    pub fn of_direction(&self, direction: ReadDirection) -> &Converters {
        match direction {
            ReadDirection::Forward => &self.forward,
            ReadDirection::Transposed => &self.transposed,
        }
    }
}

impl Crossbar {
    /// Scales, clips and quantises the inputs of a read (DAC), filling
    /// `x_scaled` and the per-sample scales `α_b`. For forward reads the bias
    /// drive (`bias_input / α_b`, quantised) goes to `bias_drive`. Runs
    /// after [`Crossbar::count_read`] of the same `x` (its `input_peaks`).
    pub(super) fn dac(&mut self, x: &Mat, direction: ReadDirection) {
        let io = *self.periphery.of_direction(direction);
        let with_bias = direction == ReadDirection::Forward;
        let (n, batch) = x.shape();
        ensure_shape(&mut self.x_scaled, n, batch);
        self.scales.clear();
        self.bias_drive.clear();
        let levels = Converters::levels(io.dac_bits);
        let inv_levels = if levels > 0.0 { 1.0 / levels } else { 0.0 };
        let bias = self.config.bias_input;
        let mut clipped = 0u64;
        let rows = n.max(1);
        for (b, (col, scaled)) in x
            .as_slice()
            .chunks_exact(rows)
            .zip(self.x_scaled.as_mut_slice().chunks_exact_mut(rows))
            .enumerate()
        {
            let alpha = match io.input_scaling {
                InputScaling::AbsMax => {
                    // Measured by `count_read` for this same read.
                    let m = self.input_peaks[b];
                    let m = if with_bias { m.max(bias.abs()) } else { m };
                    if m > 0.0 && m.is_finite() {
                        m
                    } else {
                        1.0
                    }
                }
                InputScaling::Fixed => io.dac_range,
            };
            self.scales.push(alpha);
            let scale = DacScale {
                inv_alpha: 1.0 / alpha,
                levels,
                inv_levels,
            };
            let mut column_clipped = dac_column(col, scaled, scale);
            if with_bias {
                // The bias line goes through the same conversion.
                let mut drive = 0.0;
                column_clipped +=
                    dac_column_portable(&[bias], std::slice::from_mut(&mut drive), scale);
                self.bias_drive.push(drive);
            }
            clipped += column_clipped as u64;
        }
        self.stats.dac_clipped += clipped;
    }

    /// The ADC of `y` (`rows × B`, in weight units at scaled input, noise
    /// added): saturation at ±`adc_range`, rounding to the grid, rescaling by
    /// `w_scale · α_b` (the per-sample input scales of the read).
    pub(super) fn adc(&mut self, y: &mut Mat, direction: ReadDirection) {
        let io = *self.periphery.of_direction(direction);
        let (rows, batch) = y.shape();
        let ws = self.config.w_scale;
        let range = io.adc_range;
        let levels = Converters::levels(io.adc_bits);
        let mut saturated = 0u64;
        let inv_ws = 1.0 / ws;
        // ADC grid: `levels` steps of `range/levels` per polarity.
        let (to_grid, from_grid) = if levels > 0.0 {
            (levels / range, range / levels)
        } else {
            (0.0, 0.0)
        };
        for (column, &scale) in y
            .as_mut_slice()
            .chunks_exact_mut(rows.max(1))
            .zip(&self.scales)
        {
            let conversion = AdcScale {
                inv_ws,
                range,
                to_grid,
                from_grid,
                gain: ws * scale,
            };
            saturated += adc_column(column, conversion) as u64;
        }
        self.stats.adc_conversions += (rows * batch) as u64;
        self.stats.adc_saturated += saturated;
    }

    /// Whether a read in `direction` is exact (plain SGEMM path): ideal
    /// converters and no noise.
    pub(super) fn ideal_read(&self, direction: ReadDirection) -> bool {
        self.periphery.of_direction(direction).is_ideal()
            && self.config.output_noise == 0.0
            && self.model.noise.read == 0.0
    }
}

/// The DAC's conversion of one sample: inputs × `inv_alpha`, clipped to
/// [−1, 1], then, for `levels > 0`, rounded to `levels` steps per unit.
#[derive(Clone, Copy, Debug)]
struct DacScale {
    inv_alpha: f32,
    levels: f32,
    inv_levels: f32,
}

simd_builds!(
    /// The DAC of one sample's inputs `col` into `scaled` (see [`DacScale`]
    /// and [`Crossbar::dac`]); returns how many were clipped. Elementwise
    /// IEEE single precision and truncating conversions only, so the AVX2
    /// and AVX-512 builds give the same bits as the baseline one, on 8 or
    /// 16 lanes instead of 4.
    fn dac_column, dac_column_avx512, dac_column_avx2 = dac_column_portable(
        col: &[f32],
        scaled: &mut [f32],
        scale: DacScale,
    ) -> u32
);

#[inline(always)]
fn dac_column_portable(col: &[f32], scaled: &mut [f32], scale: DacScale) -> u32 {
    let DacScale {
        inv_alpha,
        levels,
        inv_levels,
    } = scale;
    // Branch-free (clip counted by a compare, codes |u·levels| < 2^23 by
    // the bit-width check), so the loops vectorise; a 32-bit count (64-bit
    // lanes next to 32-bit floats kept the loop from vectorising).
    let mut clipped = 0u32;
    for (dst, &v) in scaled.iter_mut().zip(col) {
        let u = v * inv_alpha;
        clipped += (u.abs() > 1.0) as u32;
        *dst = u.clamp(-1.0, 1.0);
    }
    if levels > 0.0 {
        for u in scaled.iter_mut() {
            *u = round_to_grid(*u * levels) * inv_levels;
        }
    }
    clipped
}

/// The ADC's conversion of one sample's outputs: `y / w_scale`, saturated
/// at ±`range` (if `range > 0`), rounded to the grid of `to_grid` steps per
/// unit (if `to_grid > 0`; `from_grid` is its inverse step), then × `gain`.
#[derive(Clone, Copy, Debug)]
struct AdcScale {
    inv_ws: f32,
    range: f32,
    to_grid: f32,
    from_grid: f32,
    gain: f32,
}

simd_builds!(
    /// The ADC of one sample's outputs in place (see [`AdcScale`] and
    /// [`Crossbar::adc`]); returns how many saturated. Built for
    /// AVX-512/AVX2 where the CPU has them, with the same bits as the
    /// baseline build (elementwise single precision, truncating
    /// conversions).
    fn adc_column, adc_column_avx512, adc_column_avx2 = adc_column_portable(
        column: &mut [f32],
        scale: AdcScale,
    ) -> u32
);

/// Rounds a DAC or ADC code `v` (|v| < 2²³ by the converters' bit-width
/// check) half away from zero, as `f32::round` does, and keeps NaN.
///
/// Truncation by `f32::trunc` rather than an integer conversion: Rust's
/// saturating `as i32` costs per-lane fix-ups that kept these loops scalar
/// (the AVX-512 DAC converted one lane at a time), while `trunc` is one
/// `vrndscaleps`/`vroundps` in the AVX builds (a libm call in the baseline
/// build, which runs only on CPUs without AVX2). For every finite code the
/// result is that of `round_ties_away_small`, bit for bit; a NaN stays NaN
/// instead of becoming 0, so a NaN drive is not hidden.
#[inline(always)]
fn round_to_grid(v: f32) -> f32 {
    round_ties_away_from(v, v.trunc())
}

#[inline(always)]
fn adc_column_portable(column: &mut [f32], scale: AdcScale) -> u32 {
    let AdcScale {
        inv_ws,
        range,
        to_grid,
        from_grid,
        gain,
    } = scale;
    if range <= 0.0 {
        for yv in column.iter_mut() {
            *yv = *yv * inv_ws * gain;
        }
        return 0;
    }
    // Branch-free per element (saturation counted by a compare, in 32 bits
    // so that the loop vectorises; codes |u·levels/range| ≤ levels < 2^23).
    let mut saturated = 0u32;
    for yv in column.iter_mut() {
        let u = *yv * inv_ws;
        saturated += (u.abs() >= range) as u32;
        *yv = u.clamp(-range, range);
    }
    if to_grid > 0.0 {
        for yv in column.iter_mut() {
            *yv = round_to_grid(*yv * to_grid) * from_grid;
        }
    }
    for yv in column.iter_mut() {
        *yv *= gain;
    }
    saturated
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The converters' rounding is `f32::round` (half away from zero, the
    /// sign of zero kept) for every code below 2²³, bit for bit, and keeps
    /// NaN; the AVX builds (one rounding instruction per vector) agree.
    #[test]
    fn round_to_grid_is_f32_round_and_keeps_nan() {
        let mut codes: Vec<f32> = vec![0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 8_388_607.5, -8_388_607.0];
        codes.extend([0.49999997f32, -0.49999997, 126.5, -127.49999]);
        // Every grid position and the points between them on a 9-bit grid,
        // and a sweep of fractions.
        codes.extend((-1022..=1022).map(|k| k as f32 * 0.5));
        codes.extend((0..20_000).map(|i| (i as f32 * 0.6173).sin() * 300.0));
        for &v in &codes {
            let (got, want) = (round_to_grid(v), v.round());
            assert_eq!(got.to_bits(), want.to_bits(), "{v:e}: {got:e} vs {want:e}");
        }
        assert!(round_to_grid(f32::NAN).is_nan());
        // A NaN input reaches the DAC's output instead of becoming 0.
        let mut out = [0.0f32; 3];
        let scale = DacScale {
            inv_alpha: 1.0,
            levels: 127.0,
            inv_levels: 1.0 / 127.0,
        };
        dac_column(&[0.2, f32::NAN, -0.7], &mut out, scale);
        assert!(out[1].is_nan() && out[0].is_finite() && out[2].is_finite());
    }

    /// The dispatched DAC (AVX-512 or AVX2 where the CPU has them) gives
    /// the baseline build's bits and clip count, with and without a grid,
    /// over lengths that leave every remainder of the vector widths.
    #[test]
    fn dac_column_is_bit_identical_on_every_path() {
        for n in [0usize, 1, 7, 15, 16, 17, 33, 785] {
            let col: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1.3).collect();
            for levels in [0.0f32, 63.0, 127.0] {
                let inv_levels = if levels > 0.0 { 1.0 / levels } else { 0.0 };
                let (mut base, mut fast) = (vec![0.0; n], vec![0.0; n]);
                let scale = DacScale {
                    inv_alpha: 1.0 / 1.1,
                    levels,
                    inv_levels,
                };
                let c0 = dac_column_portable(&col, &mut base, scale);
                let c1 = dac_column(&col, &mut fast, scale);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&base), bits(&fast), "n {n}, levels {levels}");
                assert_eq!(c0, c1);
                // The AVX2 build too, where the dispatch above took AVX-512.
                #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = vec![0.0; n];
                    // SAFETY: AVX2 was detected just above.
                    let c2 = unsafe { dac_column_avx2(&col, &mut avx2, scale) };
                    assert_eq!(bits(&base), bits(&avx2), "AVX2, n {n}, levels {levels}");
                    assert_eq!(c0, c2);
                }
                let expected = col.iter().filter(|v| (*v / 1.1).abs() > 1.0).count();
                assert!(
                    (c0 as i64 - expected as i64).abs() <= 1,
                    "{c0} vs {expected}"
                );
            }
        }
    }

    /// The dispatched ADC gives the baseline build's bits and saturation
    /// count, with and without a grid and a range.
    #[test]
    fn adc_column_is_bit_identical_on_every_path() {
        for n in [0usize, 1, 7, 15, 16, 17, 33, 257] {
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin() * 14.0).collect();
            for (range, levels) in [(0.0f32, 0.0f32), (12.0, 0.0), (12.0, 255.0), (10.0, 511.0)] {
                let (to_grid, from_grid) = if levels > 0.0 {
                    (levels / range, range / levels)
                } else {
                    (0.0, 0.0)
                };
                let scale = AdcScale {
                    inv_ws: 1.0 / 0.6,
                    range,
                    to_grid,
                    from_grid,
                    gain: 0.6 * 1.7,
                };
                let (mut base, mut fast) = (y.clone(), y.clone());
                let s0 = adc_column_portable(&mut base, scale);
                let s1 = adc_column(&mut fast, scale);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&base),
                    bits(&fast),
                    "n {n}, range {range}, levels {levels}"
                );
                assert_eq!(s0, s1);
                // The AVX2 build too, where the dispatch above took AVX-512.
                #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = y.clone();
                    // SAFETY: AVX2 was detected just above.
                    let s2 = unsafe { adc_column_avx2(&mut avx2, scale) };
                    assert_eq!(bits(&base), bits(&avx2), "AVX2, n {n}, range {range}");
                    assert_eq!(s0, s2);
                }
                if range > 0.0 {
                    assert!(s0 > 0 || n < 3, "n {n}: some outputs exceed the range");
                }
            }
        }
    }
}
