//! The read caches (read-visible weights and read-noise terms per
//! cross-point) that reads use instead of the devices, and how a write
//! keeps them — and the line conductances of the read-energy count — up to
//! date without reading the devices again.

use super::mapping::{CrossPointSplit, EntryTerms};
use super::Crossbar;
use crate::devices::array::{prefetch, WriteSink};
use crate::devices::DeviceArray;
use crate::linalg::{ensure_shape, Mat, Vector};
use rayon::prelude::*;

/// The read caches and line conductances a write updates, borrowed apart
/// from the devices ([`Crossbar::write_parts`]).
pub(super) struct Caches<'a> {
    split: CrossPointSplit,
    n_in: usize,
    /// `n_out · n_in`: indices from here on are the bias row's.
    weights: usize,
    w_read: &'a mut [f32],
    b_read: &'a mut [f32],
    sq_read: &'a mut [f32],
    sq_bias: &'a mut [f32],
    line_in: &'a mut [f64],
    line_out: &'a mut [f64],
}

impl Caches<'_> {
    /// Writes the read weight `w` and (with read noise) squared term `s` of
    /// cross-point `idx` into the read caches.
    #[inline(always)]
    fn store(&mut self, idx: usize, w: f32, s: Option<f32>) {
        if idx < self.weights {
            self.w_read[idx] = w;
            if let Some(s) = s {
                self.sq_read[idx] = s;
            }
        } else {
            self.b_read[idx - self.weights] = w;
            if let Some(s) = s {
                self.sq_bias[idx - self.weights] = s;
            }
        }
    }

    /// Adds `delta` (S) to the line conductances of cross-point `idx`.
    #[inline(always)]
    fn add_line_conductance(&mut self, idx: usize, delta: f64) {
        let (i, j) = self.split.split(idx);
        self.line_in[j] += delta;
        if j < self.n_in {
            self.line_out[i] += delta;
        }
    }
}

/// What a pulse write updates besides the devices: as `terms` asks, the
/// read caches and the line conductances, from the device reads the write
/// returns (the same values as [`Crossbar::weight_at`],
/// [`Crossbar::squared_at`] and [`Crossbar::crosspoint_conductance_s`],
/// without reading the devices again).
pub(super) struct CacheUpdate<'a> {
    pub(super) terms: EntryTerms,
    /// The input lines' reference devices, with one device per cross-point
    /// (`None`: differential pairs).
    pub(super) reference: Option<&'a [f32]>,
    pub(super) caches: Caches<'a>,
}

impl WriteSink for CacheUpdate<'_> {
    #[inline(always)]
    fn ahead(&self, idx: usize) {
        if self.terms.refresh {
            prefetch(self.caches.w_read, idx);
            prefetch(self.caches.sq_read, idx);
        }
    }

    #[inline(always)]
    fn written(&mut self, idx: usize, mut before: [f32; 2], mut after: [f32; 2]) {
        let terms = self.terms;
        if let Some(reference) = self.reference {
            let g_ref = reference[self.caches.split.split(idx).1];
            (before[1], after[1]) = (g_ref, g_ref);
        }
        if terms.refresh {
            let w = terms.weight * (after[0] - after[1]);
            let s = terms.noisy.then(|| {
                let (gp, gm) = (after[0] + terms.offset, after[1] + terms.offset);
                terms.squared * (gp * gp + gm * gm)
            });
            self.caches.store(idx, w, s);
        }
        if terms.track_lines {
            let delta = terms.crosspoint_change_s(before, after);
            self.caches.add_line_conductance(idx, delta);
        }
    }
}

impl Crossbar {
    /// Rebuilds the read caches from the device arrays (whole-array pass,
    /// split over input lines with rayon).
    pub(super) fn refresh_cache(&mut self) {
        let n_out = self.n_out;
        let n_in = self.n_in;
        let noisy = self.model.noise.read > 0.0;
        let mut w = std::mem::replace(&mut self.w_read, Mat::zeros(0, 0));
        ensure_shape(&mut w, n_out, n_in);
        let this = &*self;
        if n_out > 0 {
            w.as_mut_slice()
                .par_chunks_mut(n_out)
                .enumerate()
                .for_each(|(j, col)| {
                    for (i, v) in col.iter_mut().enumerate() {
                        *v = this.weight_at(i + j * n_out);
                    }
                });
        }
        let b = Vector::from_fn(n_out, |i, _| this.weight_at(i + n_in * n_out));
        let (sq, sqb) = if noisy {
            let mut sq = Mat::zeros(n_out, n_in);
            if n_out > 0 {
                sq.as_mut_slice()
                    .par_chunks_mut(n_out)
                    .enumerate()
                    .for_each(|(j, col)| {
                        for (i, v) in col.iter_mut().enumerate() {
                            *v = this.squared_at(i + j * n_out);
                        }
                    });
            }
            let sqb = Vector::from_fn(n_out, |i, _| this.squared_at(i + n_in * n_out));
            (sq, sqb)
        } else {
            (Mat::zeros(0, 0), Vector::zeros(0))
        };
        self.w_read = w;
        self.b_read = b;
        self.sq_read = sq;
        self.sq_bias = sqb;
        self.cache_valid = true;
        self.generation += 1;
        self.line_conductance_valid = false;
    }

    /// Updates the cache entry of one device (pair) after a write (the
    /// caller keeps the line conductances up to date).
    #[inline]
    pub(super) fn refresh_entry(&mut self, idx: usize) {
        let w = self.weight_at(idx);
        let noisy = self.model.noise.read > 0.0;
        let s = if noisy { self.squared_at(idx) } else { 0.0 };
        self.store_entry(idx, w, noisy.then_some(s));
    }

    /// Writes the read weight `w` and (with read noise) squared term `s` of
    /// cross-point `idx` into the read caches.
    pub(super) fn store_entry(&mut self, idx: usize, w: f32, s: Option<f32>) {
        self.write_parts().2.store(idx, w, s);
    }

    /// Adds `delta` (S) to the line conductances of cross-point `idx`.
    pub(super) fn add_line_conductance(&mut self, idx: usize, delta: f64) {
        self.write_parts().2.add_line_conductance(idx, delta);
    }

    /// The devices, the reference devices (one device per cross-point) and
    /// the caches a write updates, borrowed apart so that the devices can
    /// report into the caches.
    pub(super) fn write_parts(&mut self) -> (&mut DeviceArray, Option<&[f32]>, Caches<'_>) {
        let Self {
            devices,
            paired,
            reference,
            w_read,
            b_read,
            sq_read,
            sq_bias,
            line_conductance_in,
            line_conductance_out,
            split,
            n_in,
            n_out,
            ..
        } = self;
        let caches = Caches {
            split: *split,
            n_in: *n_in,
            weights: *n_out * *n_in,
            w_read: w_read.as_mut_slice(),
            b_read: b_read.as_mut_slice(),
            sq_read: sq_read.as_mut_slice(),
            sq_bias: sq_bias.as_mut_slice(),
            line_in: line_conductance_in,
            line_out: line_conductance_out,
        };
        let reference = (!*paired).then_some(reference.as_slice());
        (devices, reference, caches)
    }

    pub(super) fn ensure_cache(&mut self) {
        if !self.cache_valid {
            self.refresh_cache();
        }
    }
}
