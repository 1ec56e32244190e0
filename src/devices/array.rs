//! A population of devices of one model, in structure-of-arrays form.
//!
//! Each per-device property is a flat `Vec` indexed by the device's
//! position (the crossbar uses column-major order, so one input line's
//! devices are contiguous). Device-to-device variation is drawn once at
//! construction; cycle-to-cycle and write noise at every pulse.

use super::{DeviceModel, StepResponse};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Fault state of a device (`stuck` array).
const FREE: u8 = 0;
const STUCK_LOW: u8 = 1;
const STUCK_HIGH: u8 = 2;

/// Prefetch hint for `data[i]` (no-op when out of bounds or off x86-64).
#[inline]
pub fn prefetch<T>(data: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if i < data.len() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` is only a hint and never faults; the
        // address is in bounds of `data` anyway.
        unsafe { _mm_prefetch(data.as_ptr().add(i) as *const i8, _MM_HINT_T0) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, i);
}

/// What a call to [`DeviceArray::pulse`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PulseOutcome {
    /// Pulses delivered to the device (all count for energy and wear).
    pub delivered: u32,
    /// Pulses that could switch it (not stuck, not worn out).
    pub effective: u32,
}

/// Counts over equal-width bins `[edges[k], edges[k+1])` (the last bin is closed).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    /// `bins + 1` bin edges.
    pub edges: Vec<f64>,
    /// Count per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Histogram of the finite `values` over `[lo, hi]` with `bins` bins
    /// (range taken from the data when `lo ≥ hi`).
    pub fn of(values: impl Iterator<Item = f32> + Clone, bins: usize, lo: f64, hi: f64) -> Self {
        let bins = bins.max(1);
        let (mut lo, mut hi) = (lo, hi);
        if lo >= hi {
            let (mn, mx) = values
                .clone()
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v as f64), b.max(v as f64))
                });
            if !mn.is_finite() {
                return Self::default();
            }
            lo = mn;
            hi = if mx > mn { mx } else { mn + 1.0 };
        }
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        for v in values.filter(|v| v.is_finite()) {
            let k = (((v as f64) - lo) / width).floor();
            let k = (k.max(0.0) as usize).min(bins - 1);
            counts[k] += 1;
        }
        Self {
            edges: (0..=bins).map(|k| lo + k as f64 * width).collect(),
            counts,
        }
    }
}

/// Serialisable snapshot of a [`DeviceArray`]'s mutable state (for `--out`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceArrayState {
    /// Programmed normalised conductances.
    pub g: Vec<f32>,
    /// Pulses delivered per device.
    pub pulses: Vec<u32>,
    /// Write-noise offsets (empty without write noise).
    pub write_offset: Vec<f32>,
    /// Time of the last write per device (s; empty without drift).
    pub t_programmed: Vec<f64>,
    /// The array's clock (s).
    pub time: f64,
}

/// `n` devices of one model: state, per-device parameters and counters.
#[derive(Clone, Debug)]
pub struct DeviceArray {
    model: DeviceModel,
    /// Programmed normalised conductance `g` per device (before drift and write noise).
    g: Vec<f32>,
    /// Lower bound per device.
    lo: Vec<f32>,
    /// Upper bound per device.
    hi: Vec<f32>,
    /// Nominal up step per device (incl. d2d spread and up/down bias).
    step_up: Vec<f32>,
    /// Nominal down step per device.
    step_down: Vec<f32>,
    /// FREE, STUCK_LOW or STUCK_HIGH.
    stuck: Vec<u8>,
    /// Pulses delivered so far.
    pulses: Vec<u32>,
    /// Pulses after which the device stops switching (empty = unlimited).
    endurance: Vec<u32>,
    /// Drift exponent per device (empty when the model has no drift).
    nu: Vec<f32>,
    /// Time of the last write (s; empty without drift).
    t_programmed: Vec<f64>,
    /// Read-visible deviation from the programmed state (empty without write noise).
    write_offset: Vec<f32>,
    /// Cycle-to-cycle and write-noise stream.
    rng: ChaCha8Rng,
    /// Elapsed time (s) since the array was made.
    time: f64,
    /// Total up and down pulses delivered.
    pulses_up: u64,
    pulses_down: u64,
}

#[inline]
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    rng.sample::<f32, _>(StandardNormal)
}

impl DeviceArray {
    /// Draws `n` devices of `model` (device-to-device variation, stuck
    /// faults, endurance, drift exponents) from `seed`, all at `g_center`.
    pub fn new(model: &DeviceModel, n: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = model;
        let mut lo = vec![f32::NEG_INFINITY; n];
        let mut hi = vec![f32::INFINITY; n];
        let mut step_up = vec![0.0f32; n];
        let mut step_down = vec![0.0f32; n];
        let mut stuck = vec![FREE; n];
        let mut endurance = vec![u32::MAX; n];
        let drift = m.drift_nu > 0.0 || m.drift_nu_dtod > 0.0;
        let mut nu = if drift { vec![0.0f32; n] } else { Vec::new() };
        for i in 0..n {
            if m.bounded {
                let l = m.bound_dtod * normal(&mut rng);
                let h = 1.0 + m.bound_dtod * normal(&mut rng);
                // A device needs a usable window; very unlucky draws are
                // narrowed to a tenth of the nominal range rather than inverted.
                lo[i] = l;
                hi[i] = h.max(l + 0.1);
            }
            let spread = if m.dw_min_dtod > 0.0 {
                let xi = normal(&mut rng);
                if m.dtod_lognormal {
                    (m.dw_min_dtod * xi - 0.5 * m.dw_min_dtod * m.dw_min_dtod).exp()
                } else {
                    (1.0 + m.dw_min_dtod * xi).max(0.0)
                }
            } else {
                1.0
            };
            let base = if m.levels >= 2 {
                (hi[i] - lo[i]) / (m.levels - 1) as f32
            } else {
                m.dw_min * spread
            };
            let bias = m.up_down + m.up_down_dtod * normal(&mut rng);
            step_up[i] = (base * (1.0 + bias)).max(0.0);
            step_down[i] = (base * (1.0 - bias)).max(0.0);
            let u: f32 = rng.gen();
            if u < m.stuck_at_min {
                stuck[i] = STUCK_LOW;
            } else if u < m.stuck_at_min + m.stuck_at_max {
                stuck[i] = STUCK_HIGH;
            }
            if m.endurance > 0.0 {
                let e = if m.endurance_dtod > 0.0 {
                    m.endurance
                        * ((m.endurance_dtod * normal(&mut rng)) as f64
                            - 0.5 * (m.endurance_dtod as f64).powi(2))
                        .exp()
                } else {
                    m.endurance
                };
                endurance[i] = e.round().clamp(1.0, (u32::MAX - 1) as f64) as u32;
            }
            if drift {
                nu[i] = (m.drift_nu + m.drift_nu_dtod * normal(&mut rng)).max(0.0);
            }
        }
        let g = (0..n)
            .map(|i| match stuck[i] {
                STUCK_LOW => lo[i],
                STUCK_HIGH => hi[i],
                _ => {
                    if m.bounded {
                        (lo[i] + m.g_center * (hi[i] - lo[i])).clamp(lo[i], hi[i])
                    } else {
                        m.g_center
                    }
                }
            })
            .collect();
        let mut array = Self {
            model: model.clone(),
            g,
            lo,
            hi,
            step_up,
            step_down,
            stuck,
            pulses: vec![0; n],
            endurance: if m.endurance > 0.0 {
                endurance
            } else {
                Vec::new()
            },
            t_programmed: if drift { vec![0.0; n] } else { Vec::new() },
            nu,
            write_offset: if m.write_noise > 0.0 {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            rng,
            time: 0.0,
            pulses_up: 0,
            pulses_down: 0,
        };
        for i in 0..n {
            let gi = array.g[i];
            array.g[i] = array.quantize(i, gi);
        }
        array
    }

    /// The model these devices follow.
    pub fn model(&self) -> &DeviceModel {
        &self.model
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.g.len()
    }

    /// Whether the array has no devices.
    pub fn is_empty(&self) -> bool {
        self.g.is_empty()
    }

    /// Programmed normalised conductances (before drift and write noise).
    pub fn conductances(&self) -> &[f32] {
        &self.g
    }

    /// Pulses delivered per device.
    pub fn pulse_counts(&self) -> &[u32] {
        &self.pulses
    }

    /// Lower and upper bound of device `i`.
    pub fn bounds(&self, i: usize) -> (f32, f32) {
        (self.lo[i], self.hi[i])
    }

    /// Whether device `i` is stuck (at `G_min` or `G_max`).
    pub fn is_stuck(&self, i: usize) -> bool {
        self.stuck[i] != FREE
    }

    /// Rated pulses of device `i` (u32::MAX = unlimited).
    #[inline]
    fn rated(&self, i: usize) -> u32 {
        if self.endurance.is_empty() {
            u32::MAX
        } else {
            self.endurance[i]
        }
    }

    /// Whether device `i` has taken its rated number of pulses.
    pub fn is_worn_out(&self, i: usize) -> bool {
        self.pulses[i] >= self.rated(i)
    }

    /// Drift exponent of device `i` (0 without drift).
    pub fn drift_exponent(&self, i: usize) -> f32 {
        self.nu.get(i).copied().unwrap_or(0.0)
    }

    /// Elapsed time of the array's clock (s).
    pub fn time(&self) -> f64 {
        self.time
    }

    /// Advances the clock by `dt` seconds (drift acts on the next read).
    pub fn advance_time(&mut self, dt: f64) {
        self.time += dt.max(0.0);
    }

    /// Whether reads depend on the clock.
    pub fn drifts(&self) -> bool {
        !self.nu.is_empty()
    }

    /// Total up and down pulses delivered.
    pub fn pulse_totals(&self) -> (u64, u64) {
        (self.pulses_up, self.pulses_down)
    }

    /// Numbers of devices stuck low, stuck high, and worn out.
    pub fn fault_counts(&self) -> (usize, usize, usize) {
        let low = self.stuck.iter().filter(|&&s| s == STUCK_LOW).count();
        let high = self.stuck.iter().filter(|&&s| s == STUCK_HIGH).count();
        let worn = self
            .pulses
            .iter()
            .enumerate()
            .filter(|(i, &p)| p >= self.rated(*i))
            .count();
        (low, high, worn)
    }

    /// Rounds `g` to device `i`'s nearest level when the model is quantised.
    #[inline]
    fn quantize(&self, i: usize, g: f32) -> f32 {
        let levels = self.model.levels;
        if levels >= 2 {
            let (lo, hi) = (self.lo[i], self.hi[i]);
            let spacing = (hi - lo) / (levels - 1) as f32;
            (lo + ((g - lo) / spacing).round() * spacing).clamp(lo, hi)
        } else {
            g
        }
    }

    /// The read-visible normalised conductance of device `i` now:
    /// programmed state plus write-noise offset, drifted as
    /// `G(t) = G(t_p)·((t − t_p)/t₀)^−ν` for `t − t_p > t₀`
    /// (DESIGN.md §2; aihwkit PCMLikeNoiseModel drift law). Drift acts on
    /// the absolute conductance `G/ΔG = g + o`.
    #[inline]
    pub fn visible(&self, i: usize) -> f32 {
        let mut g = self.g[i];
        if !self.write_offset.is_empty() {
            g += self.write_offset[i];
        }
        if !self.nu.is_empty() {
            let dt = self.time - self.t_programmed[i];
            let t0 = self.model.drift_t0;
            if dt > t0 {
                let o = self.model.conductance_offset();
                let factor = (dt / t0).powf(-(self.nu[i] as f64)) as f32;
                g = (g + o) * factor - o;
            }
        }
        g
    }

    /// Programs device `i` to `target` directly (idealised program-and-verify,
    /// used for initialisation; no pulses counted). Stuck devices ignore it.
    pub fn program(&mut self, i: usize, target: f32) {
        if self.stuck[i] != FREE {
            return;
        }
        let g = target.clamp(self.lo[i], self.hi[i]);
        self.g[i] = self.quantize(i, g);
        if !self.t_programmed.is_empty() {
            self.t_programmed[i] = self.time;
        }
        if !self.write_offset.is_empty() {
            self.write_offset[i] = 0.0;
        }
    }

    /// Changes device `i` by exactly `delta` (the `ideal` model's analog
    /// write; bounds still apply).
    pub fn nudge(&mut self, i: usize, delta: f32) {
        if self.stuck[i] != FREE {
            return;
        }
        self.g[i] = (self.g[i] + delta).clamp(self.lo[i], self.hi[i]);
    }

    /// Hints the CPU to fetch device `i`'s per-device data (the pulse path
    /// is bound by cache misses on the large per-device arrays, and the
    /// controller knows the next devices in advance). No effect on results.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        prefetch(&self.g, i);
        prefetch(&self.pulses, i);
        prefetch(&self.stuck, i);
        prefetch(&self.lo, i);
        prefetch(&self.hi, i);
        prefetch(&self.step_up, i);
        prefetch(&self.step_down, i);
        prefetch(&self.write_offset, i);
    }

    /// Delivers `|n|` pulses to device `i`, up for `n > 0`, down for `n < 0`.
    ///
    /// Each effective pulse changes `g` by
    /// `±Δg_i^{dir} f^{dir}(x) (1 + σ ξ)` (or `+ σ Δg_i^{dir} ξ` for additive
    /// cycle-to-cycle noise), then clips to the device bounds and rounds to
    /// its levels. Stuck devices and devices past their endurance count the
    /// pulses but do not change. A write restarts drift from the drifted
    /// state and redraws the write-noise offset.
    pub fn pulse(&mut self, i: usize, n: i32) -> PulseOutcome {
        if n == 0 {
            return PulseOutcome::default();
        }
        let count = n.unsigned_abs();
        let up = n > 0;
        if up {
            self.pulses_up += count as u64;
        } else {
            self.pulses_down += count as u64;
        }
        let before = self.pulses[i];
        self.pulses[i] = before.saturating_add(count);
        let rated = self.rated(i);
        if self.stuck[i] != FREE || before >= rated {
            return PulseOutcome {
                delivered: count,
                effective: 0,
            };
        }
        let effective = count.min(rated - before);
        let (lo, hi) = (self.lo[i], self.hi[i]);
        let mut g = if self.nu.is_empty() {
            self.g[i]
        } else {
            // Materialise the drift accumulated since the last write.
            let saved = std::mem::take(&mut self.write_offset);
            let v = self.visible(i);
            self.write_offset = saved;
            self.t_programmed[i] = self.time;
            v
        };
        let m = &self.model;
        let sigma = m.dw_min_std;
        let step = if up {
            self.step_up[i]
        } else {
            self.step_down[i]
        };
        let inv_width = 1.0 / (hi - lo);
        let constant = matches!(m.response, StepResponse::Constant | StepResponse::Ideal);
        for _ in 0..effective {
            let mut dg = if constant {
                step
            } else {
                let x = if m.bounded { (g - lo) * inv_width } else { g };
                step * m.response_factor(x, up)
            };
            if sigma > 0.0 {
                let xi = self.rng.sample::<f32, _>(StandardNormal);
                if m.c2c_multiplicative {
                    dg *= 1.0 + sigma * xi;
                } else {
                    dg += sigma * step * xi;
                }
            }
            g = if up { g + dg } else { g - dg }.clamp(lo, hi);
            if m.levels >= 2 {
                g = self.quantize(i, g);
            }
        }
        self.g[i] = g;
        if !self.write_offset.is_empty() {
            let w = self.model.write_noise * self.model.dw_min;
            self.write_offset[i] = w * normal(&mut self.rng);
        }
        PulseOutcome {
            delivered: count,
            effective,
        }
    }

    /// Smallest and largest read-visible conductance (normalised).
    pub fn conductance_range(&self) -> (f32, f32) {
        (0..self.len()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), i| {
            let v = self.visible(i);
            (a.min(v), b.max(v))
        })
    }

    /// Histogram of the read-visible normalised conductances.
    pub fn conductance_histogram(&self, bins: usize) -> Histogram {
        let (lo, hi) = if self.model.bounded {
            let b = 3.0 * self.model.bound_dtod as f64;
            (-b, 1.0 + b)
        } else {
            (0.0, 0.0)
        };
        Histogram::of((0..self.len()).map(|i| self.visible(i)), bins, lo, hi)
    }

    /// Snapshot of the mutable state.
    pub fn state(&self) -> DeviceArrayState {
        DeviceArrayState {
            g: self.g.clone(),
            pulses: self.pulses.clone(),
            write_offset: self.write_offset.clone(),
            t_programmed: self.t_programmed.clone(),
            time: self.time,
        }
    }

    /// Restores a snapshot taken from an array of the same size and model.
    pub fn restore(&mut self, state: &DeviceArrayState) -> anyhow::Result<()> {
        let n = self.len();
        if state.g.len() != n
            || state.pulses.len() != n
            || state.write_offset.len() != self.write_offset.len()
            || state.t_programmed.len() != self.t_programmed.len()
        {
            anyhow::bail!(
                "device state has {} devices (or mismatched optional arrays); this array has {n}",
                state.g.len()
            );
        }
        self.g.clone_from(&state.g);
        self.pulses.clone_from(&state.pulses);
        self.write_offset.clone_from(&state.write_offset);
        self.t_programmed.clone_from(&state.t_programmed);
        self.time = state.time;
        Ok(())
    }
}
