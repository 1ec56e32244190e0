//! A population of devices of one model.
//!
//! The hot per-device state — programmed conductance, bounds, steps,
//! write-noise offset, pulse count, endurance and fault state — is one
//! 32-byte record per device (`Device`), stored two to a 64-byte cache
//! line. The crossbar interleaves the devices of a differential pair at
//! `2p` and `2p + 1`, so a pulse event on a pair touches exactly one cache
//! line. Drift data (ν and the time of the last write), used only by
//! drifting models, is kept in separate arrays. Device-to-device variation
//! is drawn once at construction; cycle-to-cycle and write noise at every
//! pulse.

use super::{Anchor, DeviceModel, Position, Response, StepConvention};
use crate::kernels::pulse::{
    constant_block, BlockReads, C2c, DeviceRecord as Device, DrawPool, PulseTotals, BLOCK_EVENTS,
    STUCK_HIGH, STUCK_LOW,
};
pub use crate::kernels::pulse::{prefetch, PulseEvent};
use crate::random::NormalPool;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// The random stream of device noise: cycle-to-cycle and write noise here,
/// read and output noise in the crossbar.
pub type NoiseRng = Xoshiro256PlusPlus;

/// `v.round()` (half away from zero) without the out-of-line libm call
/// (baseline x86-64 has no rounding instruction). Exact for every `f32`.
#[inline(always)]
pub(crate) fn round_ties_away(v: f32) -> f32 {
    // Below 2^23 in magnitude a float can have a fraction; above it (and
    // for ±∞ and NaN) `round` is the identity.
    if v.abs() < 8_388_608.0 {
        round_ties_away_small(v)
    } else {
        v
    }
}

/// [`round_ties_away`] for `|v| < 2^23`: no branch (a select; the
/// fractions of device states on a grid are unpredictable).
#[inline(always)]
pub(crate) fn round_ties_away_small(v: f32) -> f32 {
    round_ties_away_from(v, v as i32 as f32)
}

/// `v` rounded half away from zero, given its truncation toward zero `t`
/// (integer truncation in the baseline-built pulse path, `f32::trunc`, one
/// instruction, in the converters' AVX builds).
#[inline(always)]
pub(crate) fn round_ties_away_from(v: f32, t: f32) -> f32 {
    // Truncation toward zero is exact, and so is the fraction `v − t`.
    let frac = v - t;
    // Step away from zero when the fraction is at least a half; a select
    // rather than branches (the fractions on a grid are unpredictable).
    let step = if frac.abs() >= 0.5 { 1.0f32 } else { 0.0 };
    // `round` keeps the sign of a zero result (round(−0.3) = −0).
    (t + step.copysign(v)).copysign(v)
}

/// What a call to [`DeviceArray::pulse`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PulseOutcome {
    /// Pulses delivered to the device (all count for energy and wear).
    pub delivered: u32,
    /// Pulses that could switch it (not stuck, not worn out).
    pub effective: u32,
}

/// Read-visible conductances of a device (or pair) just before and just
/// after a write ([`DeviceArray::pulse_pair`], [`DeviceArray::pulse_read`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteReads<T> {
    /// Before the write.
    pub before: T,
    /// After the write.
    pub after: T,
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

/// Two device records in one 64-byte cache line (the devices `2p`, `2p + 1`
/// of a differential pair `p`).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Line([Device; 2]);

const _: () = assert!(std::mem::size_of::<Line>() == 64);
const _: () = assert!(std::mem::align_of::<Line>() == 64);

/// The device records of `lines` as one slice of `n` devices.
#[inline(always)]
fn records(lines: &[Line], n: usize) -> &[Device] {
    assert!(n <= 2 * lines.len());
    // SAFETY: `Line` is `repr(C)` around `[Device; 2]` with the same size
    // (64 bytes, asserted above) and no padding, so `lines` is
    // `2 · lines.len()` consecutive, initialised `Device`s; `n` does not
    // exceed that count.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<Device>(), n) }
}

/// Mutable [`records`].
#[inline(always)]
fn records_mut(lines: &mut [Line], n: usize) -> &mut [Device] {
    assert!(n <= 2 * lines.len());
    // SAFETY: as in `records`; the borrow of `lines` is exclusive.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<Device>(), n) }
}

/// The model constants of the pulse path, resolved once per array.
#[derive(Clone, Debug)]
struct Kernel {
    /// Steps do not depend on the state (`constant`, `ideal`).
    constant: bool,
    /// The response and anchor, for the position map of each write.
    response: Response,
    anchor: Anchor,
    /// `levels − 1` of a quantised model (0 = analog).
    level_steps: f32,
    /// Cycle-to-cycle noise.
    c2c: C2c,
    /// Write noise on, and its σ `write_noise · Δg_min`.
    write_noise: bool,
    write_sigma: f32,
    /// Reads depend on the clock (`nu`, `t_programmed` are in use).
    drift: bool,
}

impl Kernel {
    fn of(m: &DeviceModel) -> Self {
        Self {
            constant: m.response.is_constant(),
            response: m.response,
            anchor: m.bounds.anchor,
            level_steps: if m.step.levels >= 2 {
                (m.step.levels - 1) as f32
            } else {
                0.0
            },
            c2c: C2c {
                sigma: m.noise.c2c,
                multiplicative: m.noise.c2c_multiplicative,
                add: m.noise.c2c_add,
                slope: m.noise.c2c_slope,
                center: m.bounds.g_center,
            },
            write_noise: m.noise.write > 0.0,
            write_sigma: m.noise.write * m.step.dw_min,
            drift: m.drift.nu > 0.0 || m.drift.nu_dtod > 0.0,
        }
    }

    /// Rounds `g` to the nearest of the `levels` states of `[lo, hi]`
    /// (identity for an analog model).
    #[inline(always)]
    fn quantize(&self, g: f32, lo: f32, hi: f32) -> f32 {
        if self.level_steps > 0.0 {
            let spacing = (hi - lo) / self.level_steps;
            (lo + round_ties_away((g - lo) / spacing) * spacing).clamp(lo, hi)
        } else {
            g
        }
    }

    /// Read-visible conductance of a non-drifting device.
    #[inline(always)]
    fn visible(&self, d: &Device) -> f32 {
        if self.write_noise {
            d.g + d.write_offset
        } else {
            d.g
        }
    }
}

/// `n` devices of one model: state, per-device parameters and counters.
#[derive(Clone, Debug)]
pub struct DeviceArray {
    model: DeviceModel,
    kernel: Kernel,
    /// The device records, two per cache line (device `i` is
    /// `lines[i / 2].0[i % 2]`; the second half of the last line is unused
    /// when `n` is odd).
    lines: Vec<Line>,
    /// Number of devices.
    n: usize,
    /// Drift exponent per device (empty when the model has no drift).
    nu: Vec<f32>,
    /// Time of the last write (s; empty without drift).
    t_programmed: Vec<f64>,
    /// Cycle-to-cycle and write-noise draws.
    noise: NormalPool<NoiseRng>,
    /// Elapsed time (s) since the array was made.
    time: f64,
    /// Total up and down pulses delivered.
    totals: PulseTotals,
    /// Whether [`DeviceArray::apply_events`] may take the vector path
    /// (`kernels::pulse::constant_block`); off only to compare the two
    /// paths ([`DeviceArray::with_vector_blocks`]).
    vector_blocks: bool,
}

/// How [`DeviceArray::apply_events`] maps an event's index and pulses onto
/// devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTargets {
    /// The index is a device; the pulses go to it.
    Devices,
    /// The index is a pair `p` (devices `2p` = `G⁺`, `2p + 1` = `G⁻`); an
    /// event of `n` pulses is `n` to `G⁺` and `−n` to `G⁻` (opposite
    /// changes), or, with `one_sided` devices (SET pulses only), `n` up
    /// pulses to `G⁺` for `n > 0` and `|n|` up pulses to `G⁻` for `n < 0`.
    Pairs {
        /// Only the device whose conductance should rise is pulsed.
        one_sided: bool,
    },
}

/// The pulses of a pair event `n` for its `G⁺` and `G⁻` devices (see
/// [`EventTargets::Pairs`]).
#[inline(always)]
pub fn pair_pulses(n: i32, one_sided: bool) -> (i32, i32) {
    match (one_sided, n > 0) {
        (false, _) => (n, -n),
        (true, true) => (n, 0),
        (true, false) => (0, -n),
    }
}

/// What the caller of [`DeviceArray::apply_events`] does with each event.
pub trait WriteSink {
    /// The event `index` was applied: its devices read `before` and `after`
    /// (the read-visible conductances of the pair `G⁺`, `G⁻`, or of the
    /// device and 0).
    fn written(&mut self, index: usize, before: [f32; 2], after: [f32; 2]);

    /// The event `index` comes [`PREFETCH_AHEAD`] events later (for the
    /// caller's own prefetches; by default nothing).
    #[inline(always)]
    fn ahead(&self, index: usize) {
        let _ = index;
    }
}

/// How many events ahead [`DeviceArray::apply_events`] prefetches the
/// device records (and calls [`WriteSink::ahead`]): the records are
/// scattered over megabytes, and without prefetching the pulse path waits
/// on memory (≈ 190 vs ≈ 50 ns per reram_es pair event, measured). 16
/// rather than 8: the pulse path's share of a constant-step parity run
/// through the CLI was ≈ 21 % against ≈ 22.4 % (three alternating
/// profiled runs each).
pub const PREFETCH_AHEAD: usize = 16;

/// One standard normal straight from the stream (device-to-device draws
/// at construction, and inference's programming and verify draws; the
/// per-pulse draws come from a [`NormalPool`]).
#[inline(always)]
pub(crate) fn normal(rng: &mut NoiseRng) -> f32 {
    rng.sample::<f32, _>(StandardNormal)
}

/// Delivers `count` pulses (up if `up`) to device `d` and returns how many
/// could switch it (see [`DeviceArray::pulse`]); drift must have been
/// materialised into `d.g` already.
///
/// `factor(x, up)` is the model's response factor at the position `x`
/// ([`Response::factor`]), which the loop takes through the model's
/// position map ([`Response::position_map`], once per call); a caller that knows the response passes it
/// fixed ([`DeviceArray::apply_events`]), and this loop is then compiled
/// without the dispatch.
#[inline(always)]
fn pulse_device(
    d: &mut Device,
    up: bool,
    count: u32,
    k: &Kernel,
    factor: impl Fn(f32, bool) -> f32,
    noise: &mut NormalPool<NoiseRng>,
) -> u32 {
    let before = d.pulses;
    d.pulses = before.saturating_add(count);
    if d.is_stuck() || before >= d.rated {
        return 0;
    }
    let effective = count.min(d.rated - before);
    let (lo, hi) = (d.lo, d.hi);
    let mut g = d.g;
    let step = if up { d.step_up } else { d.step_down };
    // `c2c.center` is the model's symmetry point g_center.
    let (origin, scale) = k.response.position_map(k.anchor, k.c2c.center, lo, hi, up);
    let complex = k.c2c.is_complex();
    for _ in 0..effective {
        let mut dg = if k.constant {
            step
        } else {
            step * factor((g - origin) * scale, up)
        };
        if k.c2c.sigma > 0.0 {
            let xi = noise.normal();
            dg = if complex {
                k.c2c.apply_at(dg, step, g, xi)
            } else {
                k.c2c.apply(dg, step, xi)
            };
        }
        g = if up { g + dg } else { g - dg }.clamp(lo, hi);
        g = k.quantize(g, lo, hi);
    }
    d.g = g;
    if k.write_noise {
        d.write_offset = k.write_sigma * noise.normal();
    }
    effective
}

/// Delivers `n` pulses (signed as in [`DeviceArray::pulse`]; 0 leaves the
/// device alone) to a non-drifting device `d`, counted in `totals`, and
/// returns its read-visible conductance before and after.
#[inline(always)]
fn write_device(
    d: &mut Device,
    n: i32,
    k: &Kernel,
    factor: impl Fn(f32, bool) -> f32,
    noise: &mut NormalPool<NoiseRng>,
    totals: &mut PulseTotals,
) -> WriteReads<f32> {
    let before = k.visible(d);
    if n != 0 {
        let (count, up) = totals.count(n);
        pulse_device(d, up, count, k, factor, noise);
    }
    WriteReads {
        before,
        after: k.visible(d),
    }
}

/// [`write_device`] of a pair's two devices: `n_plus` pulses to `G⁺`, then
/// `n_minus` to `G⁻`.
#[inline(always)]
fn write_pair(
    line: &mut Line,
    n_plus: i32,
    n_minus: i32,
    k: &Kernel,
    factor: impl Fn(f32, bool) -> f32 + Copy,
    noise: &mut NormalPool<NoiseRng>,
    totals: &mut PulseTotals,
) -> WriteReads<[f32; 2]> {
    let [dp, dm] = &mut line.0;
    let plus = write_device(dp, n_plus, k, factor, noise, totals);
    let minus = write_device(dm, n_minus, k, factor, noise, totals);
    WriteReads {
        before: [plus.before, minus.before],
        after: [plus.after, minus.after],
    }
}

/// How many events ahead of a block its successors' records are
/// prefetched: the block after the next (one and four blocks ahead timed
/// the same; the records of a block are then on their way while the block
/// before it runs).
const BLOCK_PREFETCH_AHEAD: usize = 2 * BLOCK_EVENTS;

/// The device noise pool as the vector block reads it.
impl DrawPool for NormalPool<NoiseRng> {
    #[inline(always)]
    fn refill_if_empty(&mut self) {
        NormalPool::refill_if_empty(self)
    }

    #[inline(always)]
    fn pending(&self) -> &[f32] {
        NormalPool::pending(self)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) {
        NormalPool::take(self, n)
    }
}

/// The bounds of one device from two standard normal draws (`xi_lo` for
/// the lower, `xi_hi` for the upper bound), as [`super::Bounds`] documents:
/// relative spreads as aihwkit 1.1 draws them (`PulsedRPUDevice::populate`
/// with `enforce_consistency`: `b_max = w_max (1 + σ ξ)`, `b_min = w_min
/// (1 + σ ξ)`, swapped if inverted, then `|b_max|`, `−|b_min|`), absolute
/// ones around the nominal bounds, with a window of at least a tenth of
/// the range.
fn draw_bounds(b: &super::Bounds, xi_lo: f32, xi_hi: f32) -> (f32, f32) {
    if b.dtod_relative {
        let c = b.g_center;
        // In weight units relative to the symmetry point.
        let mut max = (1.0 - c) * (1.0 + b.dtod_hi * xi_hi);
        let mut min = -c * (1.0 + b.dtod_lo * xi_lo);
        if min > max {
            std::mem::swap(&mut min, &mut max);
        }
        (c - min.abs(), c + max.abs())
    } else {
        let l = b.dtod_lo * xi_lo;
        let h = 1.0 + b.dtod_hi * xi_hi;
        // A device needs a usable window; very unlucky draws are narrowed
        // to a tenth of the nominal range rather than inverted.
        (l, h.max(l + 0.1))
    }
}

/// The nominal up and down steps of one device with bounds `[lo, hi]`,
/// from the model's step spread and up/down bias in its
/// [`StepConvention`] (draws: the gain, then the bias).
fn draw_steps(m: &DeviceModel, lo: f32, hi: f32, rng: &mut NoiseRng) -> (f32, f32) {
    let s = &m.step;
    let xi = if s.dw_min_dtod > 0.0 {
        normal(rng)
    } else {
        0.0
    };
    let sigma = s.dw_min_dtod;
    let quantised = s.levels >= 2;
    let level = if quantised {
        (hi - lo) / (s.levels - 1) as f32
    } else {
        0.0
    };
    let r = s.up_down_dtod * normal(rng);
    // `+ 0.0` turns a −0 step into +0, so that the sign bit only ever
    // marks a stuck device.
    match s.convention {
        StepConvention::Symmetric => {
            let spread = if sigma == 0.0 {
                1.0
            } else if s.dtod_lognormal {
                (sigma * xi - 0.5 * sigma * sigma).exp()
            } else {
                (1.0 + sigma * xi).max(0.0)
            };
            let base = if quantised { level } else { s.dw_min * spread };
            let bias = s.up_down + r;
            (
                (base * (1.0 + bias)).max(0.0) + 0.0,
                (base * (1.0 - bias)).max(0.0) + 0.0,
            )
        }
        StepConvention::Aihwkit => {
            // A quantised device steps by exactly one level (as in the
            // symmetric convention): no gain spread.
            let gain = if sigma == 0.0 || quantised {
                1.0
            } else if s.dtod_lognormal {
                (sigma * xi).exp()
            } else {
                1.0 + sigma * xi
            };
            let (up_bias, down_bias) = if s.up_down > 0.0 {
                (0.0, -s.up_down)
            } else {
                (s.up_down, 0.0)
            };
            let unit = if quantised { level } else { s.dw_min };
            (
                (unit * (gain + up_bias + r)).abs() + 0.0,
                (unit * (gain + down_bias - r)).abs() + 0.0,
            )
        }
    }
}

impl DeviceArray {
    /// Draws `n` devices of `model` (device-to-device variation, stuck
    /// faults, endurance, drift exponents) from `seed`, all at `g_center`.
    pub fn new(model: &DeviceModel, n: usize, seed: u64) -> Self {
        let mut rng = NoiseRng::seed_from_u64(seed);
        let m = model;
        let kernel = Kernel::of(m);
        let drift = kernel.drift;
        let mut lines = vec![Line::default(); n.div_ceil(2)];
        let mut nu = if drift { vec![0.0f32; n] } else { Vec::new() };
        let devices = records_mut(&mut lines, n);
        for (i, d) in devices.iter_mut().enumerate() {
            let (mut lo, mut hi) = (f32::NEG_INFINITY, f32::INFINITY);
            if m.bounds.bounded {
                (lo, hi) = draw_bounds(&m.bounds, normal(&mut rng), normal(&mut rng));
            }
            let (step_up, step_down) = draw_steps(m, lo, hi, &mut rng);
            let u: f32 = rng.gen();
            let mark = if u < m.faults.stuck_at_min {
                Some(STUCK_LOW)
            } else if u < m.faults.stuck_at_min + m.faults.stuck_at_max {
                Some(STUCK_HIGH)
            } else {
                None
            };
            let mut rated = u32::MAX;
            if m.endurance.pulses > 0.0 {
                let e = if m.endurance.dtod > 0.0 {
                    m.endurance.pulses
                        * ((m.endurance.dtod * normal(&mut rng)) as f64
                            - 0.5 * (m.endurance.dtod as f64).powi(2))
                        .exp()
                } else {
                    m.endurance.pulses
                };
                rated = e.round().clamp(1.0, (u32::MAX - 1) as f64) as u32;
            }
            if drift {
                nu[i] = (m.drift.nu + m.drift.nu_dtod * normal(&mut rng)).max(0.0);
            }
            let g = match mark {
                Some(STUCK_LOW) => lo,
                Some(_) => hi,
                None => m.zero_point(lo, hi),
            };
            *d = Device {
                g: kernel.quantize(g, lo, hi),
                lo,
                hi,
                step_up: mark.unwrap_or(step_up),
                step_down: mark.unwrap_or(step_down),
                write_offset: 0.0,
                pulses: 0,
                rated,
            };
        }
        Self {
            model: model.clone(),
            kernel,
            lines,
            n,
            t_programmed: if drift { vec![0.0; n] } else { Vec::new() },
            nu,
            noise: NormalPool::new(rng),
            time: 0.0,
            totals: PulseTotals::default(),
            vector_blocks: true,
        }
    }

    /// Lets [`DeviceArray::apply_events`] take its vector path where it
    /// can (the default), or keeps it event by event: the same results,
    /// for tests and side-by-side timings of the two paths.
    pub fn set_vector_blocks(&mut self, on: bool) {
        self.vector_blocks = on;
    }

    /// [`DeviceArray::set_vector_blocks`] as a builder option:
    /// `DeviceArray::new(&model, n, seed).with_vector_blocks(false)` is an
    /// array whose events always go event by event.
    pub fn with_vector_blocks(mut self, on: bool) -> Self {
        self.vector_blocks = on;
        self
    }

    /// All device records.
    #[inline(always)]
    fn devices(&self) -> &[Device] {
        records(&self.lines, self.n)
    }

    /// All device records, mutable.
    #[inline(always)]
    fn devices_mut(&mut self) -> &mut [Device] {
        records_mut(&mut self.lines, self.n)
    }

    /// The model these devices follow.
    pub fn model(&self) -> &DeviceModel {
        &self.model
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the array has no devices.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Programmed normalised conductance of device `i` (before drift and write noise).
    #[inline]
    pub fn conductance(&self, i: usize) -> f32 {
        self.devices()[i].g
    }

    /// Pulses delivered to device `i`.
    #[inline]
    pub fn pulse_count(&self, i: usize) -> u32 {
        self.devices()[i].pulses
    }

    /// Largest number of pulses delivered to one device (0 for an empty array).
    pub fn max_pulse_count(&self) -> u32 {
        self.devices().iter().map(|d| d.pulses).max().unwrap_or(0)
    }

    /// Pulses delivered to all devices over their lifetime (the per-device
    /// wear counters, which a restored state carries over).
    pub fn total_pulse_count(&self) -> u64 {
        self.devices().iter().map(|d| d.pulses as u64).sum()
    }

    /// Lower and upper bound of device `i`.
    pub fn bounds(&self, i: usize) -> (f32, f32) {
        let d = &self.devices()[i];
        (d.lo, d.hi)
    }

    /// The symmetry point of device `i` from its physics: the state where
    /// an up pulse and a down pulse change the conductance by the same
    /// amount, `Δg_i^up f^up(g) = Δg_i^down f^down(g)` (zero mean drift
    /// under alternating pulses; H. Kim, M. Rasch, T. Gokmen et al.,
    /// "Zero-shifting technique for deep neural network training on
    /// resistive cross-point arrays", arXiv 1907.10228, 2019). Found by bisection on `[g_lo,i, g_hi,i]`;
    /// `None` for an unbounded or stuck device, or one whose steps do not
    /// balance anywhere in its range (a constant-step device with unequal
    /// steps drifts to a bound).
    pub fn symmetry_point(&self, i: usize) -> Option<f32> {
        let d = &self.devices()[i];
        if d.is_stuck() || !(d.lo.is_finite() && d.hi.is_finite()) {
            return None;
        }
        let m = &self.model;
        // Mean change of an up–down pair at g: positive below the point.
        let imbalance = |g: f32| {
            let p = Position {
                g,
                lo: d.lo,
                hi: d.hi,
            };
            d.step_up * m.response_factor_at(p, true) - d.step_down * m.response_factor_at(p, false)
        };
        let (mut a, mut b) = (d.lo, d.hi);
        let (fa, fb) = (imbalance(a), imbalance(b));
        if fa == 0.0 {
            return Some(a);
        }
        if fb == 0.0 {
            return Some(b);
        }
        if fa.signum() == fb.signum() {
            return None;
        }
        for _ in 0..60 {
            let mid = 0.5 * (a + b);
            if imbalance(mid).signum() == fa.signum() {
                a = mid;
            } else {
                b = mid;
            }
        }
        Some(0.5 * (a + b))
    }

    /// The symmetry point of device `i` as a chip finds it: `pairs`
    /// alternating up and down pulses from the device's present state (the
    /// state drifts to where the two steps balance), then the mean state
    /// over `average` more pairs, read after each down pulse and each up
    /// pulse. Every pulse is counted as a write (pulse counters, wear,
    /// endurance), as on the chip; the device is left where the sequence
    /// ends.
    pub fn find_symmetry_point(&mut self, i: usize, pairs: usize, average: usize) -> f32 {
        for _ in 0..pairs {
            self.pulse(i, 1);
            self.pulse(i, -1);
        }
        if average == 0 {
            return self.visible(i);
        }
        let mut sum = 0.0f64;
        for _ in 0..average {
            self.pulse(i, 1);
            sum += self.visible(i) as f64;
            self.pulse(i, -1);
            sum += self.visible(i) as f64;
        }
        (sum / (2 * average) as f64) as f32
    }

    /// Whether device `i` is stuck (at `G_min` or `G_max`).
    pub fn is_stuck(&self, i: usize) -> bool {
        self.devices()[i].is_stuck()
    }

    /// Whether device `i` has taken its rated number of pulses.
    pub fn is_worn_out(&self, i: usize) -> bool {
        let d = &self.devices()[i];
        d.pulses >= d.rated
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

    /// Seconds since device `i` was last written: exact for a drifting
    /// array (which keeps each device's write time), the array's clock for
    /// one that does not drift (its write times are not kept).
    pub fn time_since_write(&self, i: usize) -> f64 {
        if self.kernel.drift {
            self.time - self.t_programmed[i]
        } else {
            self.time
        }
    }

    /// Whether reads depend on the clock.
    pub fn drifts(&self) -> bool {
        self.kernel.drift
    }

    /// Total up and down pulses delivered.
    pub fn pulse_totals(&self) -> (u64, u64) {
        (self.totals.up, self.totals.down)
    }

    /// Numbers of devices stuck low, stuck high, and worn out.
    pub fn fault_counts(&self) -> (usize, usize, usize) {
        self.devices()
            .iter()
            .fold((0, 0, 0), |(low, high, worn), d| {
                (
                    low + usize::from(d.step_up == STUCK_LOW),
                    high + usize::from(d.step_up == STUCK_HIGH),
                    worn + usize::from(d.pulses >= d.rated),
                )
            })
    }

    /// `g` (a normalised conductance of device `i`) drifted to the array's
    /// clock: `G(t) = G(t_p)·((t − t_p)/t₀)^−ν` for `t − t_p > t₀`, acting
    /// on the absolute conductance `G/ΔG = g + o`. Drifting arrays only.
    #[inline]
    fn drifted(&self, i: usize, g: f32) -> f32 {
        let dt = self.time - self.t_programmed[i];
        let t0 = self.model.drift.t0;
        if dt > t0 {
            let o = self.model.conductance_offset();
            let factor = (dt / t0).powf(-(self.nu[i] as f64)) as f32;
            (g + o) * factor - o
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
        let g = self.kernel.visible(&self.devices()[i]);
        if self.kernel.drift {
            self.drifted(i, g)
        } else {
            g
        }
    }

    /// Programs device `i` to `target` directly (idealised program-and-verify,
    /// used for initialisation; no pulses counted). Stuck devices ignore it.
    pub fn program(&mut self, i: usize, target: f32) {
        let time = self.time;
        let Self {
            lines,
            n,
            kernel,
            t_programmed,
            ..
        } = self;
        let d = &mut records_mut(lines, *n)[i];
        if d.is_stuck() {
            return;
        }
        let g = target.clamp(d.lo, d.hi);
        d.g = kernel.quantize(g, d.lo, d.hi);
        d.write_offset = 0.0;
        if kernel.drift {
            t_programmed[i] = time;
        }
    }

    /// Changes device `i` by exactly `delta` (the `ideal` model's analog
    /// write; bounds still apply).
    pub fn nudge(&mut self, i: usize, delta: f32) {
        let d = &mut self.devices_mut()[i];
        if d.is_stuck() {
            return;
        }
        d.g = (d.g + delta).clamp(d.lo, d.hi);
    }

    /// Drifting arrays: before a write to device `i`, turns the drift
    /// accumulated since its last write into programmed state and restarts
    /// its drift clock (nothing happens to a stuck or worn-out device).
    fn materialise_drift(&mut self, i: usize) {
        let d = self.devices()[i];
        if d.is_stuck() || d.pulses >= d.rated {
            return;
        }
        let g = self.drifted(i, d.g);
        self.devices_mut()[i].g = g;
        self.t_programmed[i] = self.time;
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
        let (count, up) = self.totals.count(n);
        if self.kernel.drift {
            self.materialise_drift(i);
        }
        let Self {
            lines,
            n: len,
            kernel,
            model,
            noise,
            ..
        } = self;
        let d = &mut records_mut(lines, *len)[i];
        let factor = |x, up| model.response_factor(x, up);
        let effective = pulse_device(d, up, count, kernel, factor, noise);
        PulseOutcome {
            delivered: count,
            effective,
        }
    }

    /// [`DeviceArray::pulse`] of device `i`, returning its read-visible
    /// conductance before and after the write.
    #[inline]
    pub fn pulse_read(&mut self, i: usize, n: i32) -> WriteReads<f32> {
        if self.kernel.drift {
            let before = self.visible(i);
            self.pulse(i, n);
            return WriteReads {
                before,
                after: self.visible(i),
            };
        }
        let Self {
            lines,
            n: len,
            kernel,
            model,
            noise,
            totals,
            ..
        } = self;
        let factor = |x, up| model.response_factor(x, up);
        let d = &mut records_mut(lines, *len)[i];
        write_device(d, n, kernel, factor, noise, totals)
    }

    /// Pulses the pair `p` — `n_plus` pulses to device `2p`, then `n_minus`
    /// to `2p + 1` (signed as in [`DeviceArray::pulse`]; 0 leaves a device
    /// alone) — and returns both read-visible conductances before and after.
    /// Equivalent to two calls of [`DeviceArray::pulse`], on one cache line.
    #[inline]
    pub fn pulse_pair(&mut self, p: usize, n_plus: i32, n_minus: i32) -> WriteReads<[f32; 2]> {
        let (ip, im) = (2 * p, 2 * p + 1);
        assert!(im < self.n, "pair {p} out of range of {} devices", self.n);
        if self.kernel.drift {
            let before = [self.visible(ip), self.visible(im)];
            self.pulse(ip, n_plus);
            self.pulse(im, n_minus);
            return WriteReads {
                before,
                after: [self.visible(ip), self.visible(im)],
            };
        }
        let Self {
            lines,
            kernel,
            model,
            noise,
            totals,
            ..
        } = self;
        let factor = |x, up| model.response_factor(x, up);
        write_pair(
            &mut lines[p],
            n_plus,
            n_minus,
            kernel,
            factor,
            noise,
            totals,
        )
    }

    /// Applies pulse events in order, each to the device or pair its index
    /// names (`targets`), and reports every event to `sink`
    /// ([`WriteSink::written`]).
    ///
    /// The same results as [`DeviceArray::pulse_read`] or
    /// [`DeviceArray::pulse_pair`] event by event; but without drift the
    /// loop is compiled once per step response, with the model constants
    /// and pulse totals in locals, so that a pulse neither dispatches on the
    /// response nor reloads the array's settings after every store; each
    /// event prefetches the record 16 events ahead (the distance that
    /// measured best in the constant-step aihwkit-parity profile,
    /// docs/benchmarks.md).
    pub fn apply_events(
        &mut self,
        events: &[PulseEvent],
        targets: EventTargets,
        sink: &mut impl WriteSink,
    ) {
        if self.kernel.drift {
            // Reads depend on the clock: the general path materialises
            // drift before each write.
            for e in events {
                let idx = e.index as usize;
                let (before, after) = match targets {
                    EventTargets::Devices => {
                        let r = self.pulse_read(idx, e.pulses);
                        ([r.before, 0.0], [r.after, 0.0])
                    }
                    EventTargets::Pairs { one_sided } => {
                        let (n_plus, n_minus) = pair_pulses(e.pulses, one_sided);
                        let r = self.pulse_pair(idx, n_plus, n_minus);
                        (r.before, r.after)
                    }
                };
                sink.written(idx, before, after);
            }
            return;
        }
        // One compiled loop per response: each closure is a distinct type
        // whose `Response` variant is a constant, so that
        // `Response::factor` folds to that variant's formula.
        let c = self.model.bounds.g_center;
        match self.model.response {
            Response::Ideal => self.apply_steady(events, targets, sink, |x, up| {
                Response::Ideal.factor(c, x, up)
            }),
            Response::Constant => self.apply_steady(events, targets, sink, |x, up| {
                Response::Constant.factor(c, x, up)
            }),
            Response::Linear {
                slope_up,
                slope_down,
            } => self.apply_steady(events, targets, sink, move |x, up| {
                Response::Linear {
                    slope_up,
                    slope_down,
                }
                .factor(c, x, up)
            }),
            Response::SoftBounds => self.apply_steady(events, targets, sink, |x, up| {
                Response::SoftBounds.factor(c, x, up)
            }),
            Response::Exponential {
                a_up,
                a_down,
                gamma_up,
                gamma_down,
                z_slope,
                z_offset,
            } => self.apply_steady(events, targets, sink, move |x, up| {
                Response::Exponential {
                    a_up,
                    a_down,
                    gamma_up,
                    gamma_down,
                    z_slope,
                    z_offset,
                }
                .factor(c, x, up)
            }),
            Response::Piecewise(table) => {
                self.apply_steady(events, targets, sink, move |x, up| table.factor(x, up))
            }
        }
    }

    /// [`DeviceArray::apply_events`] without drift, for the response
    /// `factor`.
    ///
    /// Single-device events of a constant-step model without quantisation
    /// or write noise (aihwkit's layout, one device per weight) go
    /// [`BLOCK_EVENTS`] at a time through the vector kernel
    /// (`kernels::pulse::constant_block`) where the CPU has AVX-512F and
    /// AVX-512CD; a block it does not take (a device twice, say) and the
    /// last events go event by event. Both give the same bits.
    #[inline(always)]
    fn apply_steady(
        &mut self,
        events: &[PulseEvent],
        targets: EventTargets,
        sink: &mut impl WriteSink,
        factor: impl Fn(f32, bool) -> f32 + Copy,
    ) {
        let blocks = matches!(targets, EventTargets::Devices) && self.constant_blocks();
        let Self {
            lines,
            n,
            kernel,
            noise,
            totals: array_totals,
            ..
        } = self;
        let kernel = kernel.clone();
        let mut totals = *array_totals;
        // The cache line of device `idx` (two to a line) or pair `idx`.
        let line_of = |idx: usize| match targets {
            EventTargets::Devices => idx / 2,
            EventTargets::Pairs { .. } => idx,
        };
        let mut k = 0;
        while k < events.len() {
            if blocks && k + BLOCK_EVENTS <= events.len() {
                for next in events
                    .iter()
                    .skip(k + BLOCK_PREFETCH_AHEAD)
                    .take(BLOCK_EVENTS)
                {
                    let idx = next.index as usize;
                    prefetch(lines, line_of(idx));
                    sink.ahead(idx);
                }
                let block = &events[k..k + BLOCK_EVENTS];
                let mut reads = BlockReads::default();
                let devices = records_mut(lines, *n);
                // `blocks` holds only for a model the vector kernel takes
                // (`DeviceArray::constant_blocks`); a block it refuses goes
                // event by event with the scalar write.
                constant_block(
                    devices,
                    block,
                    &kernel.c2c,
                    noise,
                    &mut totals,
                    &mut reads,
                    |d, pulses, noise, totals| {
                        let r = write_device(d, pulses, &kernel, factor, noise, totals);
                        (r.before, r.after)
                    },
                );
                for (l, e) in block.iter().enumerate() {
                    let (before, after) = (reads.before[l], reads.after[l]);
                    sink.written(e.index as usize, [before, 0.0], [after, 0.0]);
                }
                k += BLOCK_EVENTS;
                continue;
            }
            if let Some(next) = events.get(k + PREFETCH_AHEAD) {
                let idx = next.index as usize;
                prefetch(lines, line_of(idx));
                sink.ahead(idx);
            }
            let e = events[k];
            let idx = e.index as usize;
            let (before, after) = match targets {
                EventTargets::Devices => {
                    let d = &mut records_mut(lines, *n)[idx];
                    let r = write_device(d, e.pulses, &kernel, factor, noise, &mut totals);
                    ([r.before, 0.0], [r.after, 0.0])
                }
                EventTargets::Pairs { one_sided } => {
                    let (n_plus, n_minus) = pair_pulses(e.pulses, one_sided);
                    assert!(2 * idx + 1 < *n, "pair {idx} out of range of {n} devices");
                    let line = &mut lines[idx];
                    let r = write_pair(line, n_plus, n_minus, &kernel, factor, noise, &mut totals);
                    (r.before, r.after)
                }
            };
            sink.written(idx, before, after);
            k += 1;
        }
        *array_totals = totals;
    }

    /// Whether single-device events go [`BLOCK_EVENTS`] at a time through
    /// the vector kernel (`kernels::pulse::constant_block`): a constant
    /// step (or ideal) response, no quantisation, no write noise, no drift,
    /// indices that fit its 32-bit lanes, a CPU (and build) with the
    /// AVX-512 kernel, and the array's option on
    /// ([`DeviceArray::with_vector_blocks`]).
    fn constant_blocks(&self) -> bool {
        let k = &self.kernel;
        self.vector_blocks
            && k.constant
            && k.level_steps == 0.0
            && !k.write_noise
            && !k.drift
            && !k.c2c.is_complex()
            && self.n <= i32::MAX as usize
            && crate::kernels::pulse::avx512_blocks()
    }

    /// Ends a write (a crossbar update): drops the pooled noise draws not
    /// used, so that [`DeviceArray::noise_rng`] alone is the noise state.
    pub fn end_write(&mut self) {
        self.noise.discard();
    }

    /// The cycle-to-cycle and write-noise stream (for `--resume`); the whole
    /// noise state after [`DeviceArray::end_write`].
    pub fn noise_rng(&self) -> &NoiseRng {
        self.noise.rng()
    }

    /// Continues the noise stream from a saved position.
    pub fn set_noise_rng(&mut self, rng: NoiseRng) {
        self.noise.set_rng(rng);
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
        let (lo, hi) = if self.model.bounds.bounded {
            let (lo, hi) = self.model.bounds.absolute_spreads();
            let b = 3.0 * lo.max(hi) as f64;
            (-b, 1.0 + b)
        } else {
            (0.0, 0.0)
        };
        Histogram::of((0..self.len()).map(|i| self.visible(i)), bins, lo, hi)
    }

    /// Snapshot of the mutable state.
    pub fn state(&self) -> DeviceArrayState {
        let d = self.devices();
        DeviceArrayState {
            g: d.iter().map(|d| d.g).collect(),
            pulses: d.iter().map(|d| d.pulses).collect(),
            write_offset: if self.kernel.write_noise {
                d.iter().map(|d| d.write_offset).collect()
            } else {
                Vec::new()
            },
            t_programmed: self.t_programmed.clone(),
            time: self.time,
        }
    }

    /// Restores a snapshot taken from an array of the same size and model.
    pub fn restore(&mut self, state: &DeviceArrayState) -> anyhow::Result<()> {
        let n = self.len();
        let offsets = if self.kernel.write_noise { n } else { 0 };
        if state.g.len() != n
            || state.pulses.len() != n
            || state.write_offset.len() != offsets
            || state.t_programmed.len() != self.t_programmed.len()
        {
            anyhow::bail!(
                "device state has {} devices (or mismatched optional arrays); this array has {n}",
                state.g.len()
            );
        }
        let write_noise = self.kernel.write_noise;
        for (i, d) in self.devices_mut().iter_mut().enumerate() {
            d.g = state.g[i];
            d.pulses = state.pulses[i];
            d.write_offset = if write_noise {
                state.write_offset[i]
            } else {
                0.0
            };
        }
        self.t_programmed.clone_from(&state.t_programmed);
        self.time = state.time;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ties_away_matches_f32_round() {
        let check = |v: f32| {
            let (a, b) = (round_ties_away(v), v.round());
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{v:e} ({:#x}): {a:e} vs {b:e}",
                v.to_bits()
            );
        };
        for v in [
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            0.49999997,
            -0.49999997,
            1.5,
            2.5,
            -2.5,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            16_777_217.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            2_147_483_648.0,
            -2_147_483_648.0,
        ] {
            check(v);
        }
        // Every float near the half-integers and integers up to 2^12, and
        // a stride through all bit patterns.
        for k in -4096i32..=4096 {
            for base in [k as f32, k as f32 + 0.5] {
                let mut v = base;
                let mut w = base;
                for _ in 0..4 {
                    check(v);
                    check(w);
                    v = f32::from_bits(v.to_bits() + 1);
                    w = f32::from_bits(w.to_bits().wrapping_sub(1));
                }
            }
        }
        for bits in (0..=u32::MAX).step_by(997) {
            check(f32::from_bits(bits));
        }
    }

    #[test]
    fn pairs_share_one_cache_line() {
        let m = DeviceModel::load("reram_es", &toml::Table::new()).unwrap();
        for n in [1, 2, 7, 64] {
            let a = DeviceArray::new(&m, n, 1);
            assert_eq!(a.lines.as_ptr() as usize % 64, 0);
            assert_eq!(a.devices().len(), n);
            for p in 0..n / 2 {
                let base = &a.devices()[2 * p] as *const Device as usize;
                let next = &a.devices()[2 * p + 1] as *const Device as usize;
                assert_eq!(base % 64, 0);
                assert_eq!(next, base + 32);
            }
        }
    }

    #[test]
    fn pulse_pair_and_pulse_read_equal_single_pulses() {
        for name in ["reram_es", "pcm", "constant_step"] {
            let m = DeviceModel::load(name, &toml::Table::new()).unwrap();
            let mut a = DeviceArray::new(&m, 64, 3);
            let mut b = a.clone();
            let mut c = a.clone();
            for step in 0..2000i32 {
                let p = (step as usize * 7) % 32;
                let n = (step % 5) - 2;
                a.advance_time(0.5);
                b.advance_time(0.5);
                c.advance_time(0.5);
                let before = [a.visible(2 * p), a.visible(2 * p + 1)];
                a.pulse(2 * p, n);
                a.pulse(2 * p + 1, -n);
                let r = b.pulse_pair(p, n, -n);
                assert_eq!(r.before, before, "{name}");
                assert_eq!(r.after, [a.visible(2 * p), a.visible(2 * p + 1)]);
                let rp = c.pulse_read(2 * p, n);
                let rm = c.pulse_read(2 * p + 1, -n);
                assert_eq!([rp.before, rm.before], before, "{name}");
                assert_eq!([rp.after, rm.after], r.after, "{name}");
            }
            assert_eq!(a.state(), b.state());
            assert_eq!(a.state(), c.state());
            assert_eq!(a.pulse_totals(), b.pulse_totals());
            assert_eq!(a.pulse_totals(), c.pulse_totals());
        }
    }

    /// A sink that records what [`DeviceArray::apply_events`] reports.
    #[derive(Default)]
    struct Recorder(Vec<(usize, [f32; 2], [f32; 2])>);

    impl WriteSink for Recorder {
        fn written(&mut self, index: usize, before: [f32; 2], after: [f32; 2]) {
            self.0.push((index, before, after));
        }
    }

    /// The vector path (`kernels::pulse::constant_block_avx512`) gives the bits of the
    /// event-by-event path: the same reads in the same order, device
    /// states, pulse totals and position in the noise stream, on blocks of
    /// distinct devices with 0, ±1 and up to ±40 pulses (the draws of one
    /// block then cross a pool refill, and the largest blocks need more
    /// draws than a block takes), on constant-step models with
    /// multiplicative and additive cycle-to-cycle noise, with stuck and
    /// worn-out devices, on the ideal model, and with blocks that repeat a
    /// device or leave a ragged tail (both go event by event). Writes end
    /// (dropping the pool) at irregular points, as crossbar updates do.
    #[test]
    fn vector_blocks_equal_event_by_event_writes() {
        use rand::RngCore;
        use toml::Value::{Boolean, Float};
        let cases: [(&str, Vec<(&str, toml::Value)>); 5] = [
            ("constant_step", vec![]),
            (
                "constant_step",
                vec![("c2c_multiplicative", Boolean(false))],
            ),
            (
                "constant_step",
                vec![
                    ("endurance", Float(4.0)),
                    ("stuck_at_min", Float(0.05)),
                    ("stuck_at_max", Float(0.05)),
                ],
            ),
            ("constant_step", vec![("dw_min_std", Float(0.0))]),
            ("ideal", vec![]),
        ];
        let n = 1000;
        for (name, fields) in &cases {
            let overrides: toml::Table = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let m = DeviceModel::load(name, &overrides).unwrap();
            let mut vector = DeviceArray::new(&m, n, 3);
            let mut scalar = vector.clone().with_vector_blocks(false);
            if crate::kernels::pulse::avx512_blocks() {
                assert!(vector.constant_blocks(), "{name} {overrides:?}");
            }
            assert!(!scalar.constant_blocks());
            let mut rng = NoiseRng::seed_from_u64(9);
            for batch in 0..80 {
                let mut events = Vec::new();
                for block in 0..rng.gen_range(1..10) {
                    let mut picked = rand::seq::index::sample(&mut rng, n, BLOCK_EVENTS).into_vec();
                    if (batch + block) % 7 == 0 {
                        picked[9] = picked[2];
                    }
                    for idx in picked {
                        let pulses = match rng.gen_range(0..40) {
                            0 => 0,
                            1..=6 => rng.gen_range(-6..=6),
                            7 if batch % 10 == 0 => rng.gen_range(-40..=40),
                            k if k % 2 == 0 => 1,
                            _ => -1,
                        };
                        events.push(PulseEvent {
                            index: idx as u32,
                            pulses,
                        });
                    }
                }
                let ragged = rng.gen_range(0..5);
                events.truncate(events.len() - ragged);
                let (mut got, mut want) = (Recorder::default(), Recorder::default());
                vector.apply_events(&events, EventTargets::Devices, &mut got);
                scalar.apply_events(&events, EventTargets::Devices, &mut want);
                assert_eq!(got.0, want.0, "{name} {overrides:?} batch {batch}");
                assert_eq!(
                    vector.noise.pending(),
                    scalar.noise.pending(),
                    "{name} {overrides:?} batch {batch}: pool position"
                );
                if rng.gen_range(0..3) == 0 {
                    vector.end_write();
                    scalar.end_write();
                }
            }
            assert_eq!(vector.state(), scalar.state(), "{name} {overrides:?}");
            assert_eq!(vector.pulse_totals(), scalar.pulse_totals(), "{name}");
            vector.end_write();
            scalar.end_write();
            assert_eq!(
                vector.noise_rng().clone().next_u64(),
                scalar.noise_rng().clone().next_u64(),
                "{name} {overrides:?}: noise stream"
            );
        }
    }

    /// The vector path takes blocks of distinct devices (so the test above
    /// compares it, not the fallback, with the event-by-event path), and
    /// falls back, changing nothing, on a device twice.
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    #[test]
    fn vector_blocks_take_distinct_devices_and_refuse_repeats() {
        use crate::kernels::pulse::constant_block_avx512;
        if !crate::kernels::pulse::avx512_blocks() {
            return;
        }
        let m = DeviceModel::load("constant_step", &toml::Table::new()).unwrap();
        let mut array = DeviceArray::new(&m, 64, 1);
        let before = array.state();
        let mut block: Vec<PulseEvent> = (0..BLOCK_EVENTS as u32)
            .map(|l| PulseEvent {
                index: 3 * l,
                pulses: if l % 3 == 0 { -2 } else { 1 },
            })
            .collect();
        let kernel = array.kernel.clone();
        let apply = |array: &mut DeviceArray, block: &[PulseEvent]| {
            let mut totals = PulseTotals::default();
            let mut reads = BlockReads::default();
            let devices = records_mut(&mut array.lines, array.n);
            // SAFETY: the CPU has AVX-512F and AVX-512CD (checked above).
            let done = unsafe {
                constant_block_avx512(
                    devices,
                    block,
                    &kernel.c2c,
                    &mut array.noise,
                    &mut totals,
                    &mut reads,
                )
            };
            (done, totals.up, totals.down)
        };
        block[11].index = block[4].index;
        assert_eq!(apply(&mut array, &block), (false, 0, 0));
        assert_eq!(array.state(), before, "a refused block changes nothing");
        block[11].index = 60;
        // Device 18 (−2 pulses) one pulse short of the counter's end: the
        // count saturates, and one pulse still switches it.
        let mut worn = before.clone();
        worn.pulses[18] = u32::MAX - 1;
        array.restore(&worn).unwrap();
        let mut scalar = array.clone();
        scalar.set_vector_blocks(false);
        assert_eq!(apply(&mut array, &block), (true, 10, 12));
        let after = array.state();
        assert_eq!(after.pulses[18], u32::MAX);
        assert_ne!(after.g[18], before.g[18]);
        scalar.apply_events(&block, EventTargets::Devices, &mut Recorder::default());
        assert_eq!(after, scalar.state());
    }

    /// The compiled-per-response event loop gives, event by event, what
    /// `pulse_read` and `pulse_pair` give (the same device states, reads,
    /// pulse totals and noise stream), for every shipped model and for
    /// variants that switch on what the models leave off: quantisation,
    /// endurance, stuck devices, write noise, additive cycle-to-cycle noise.
    /// PCM drifts, so its events take the general path.
    #[test]
    fn apply_events_equals_event_by_event_writes() {
        let mut cases: Vec<(String, toml::Table)> = crate::devices::builtin_names()
            .into_iter()
            .map(|n| (n.to_string(), toml::Table::new()))
            .collect();
        let variant = |name: &str, fields: &[(&str, toml::Value)]| {
            let table: toml::Table = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            (name.to_string(), table)
        };
        use toml::Value::{Boolean, Float, Integer};
        cases.push(variant("constant_step", &[("levels", Integer(16))]));
        cases.push(variant("constant_step", &[("endurance", Float(40.0))]));
        cases.push(variant(
            "constant_step",
            &[("stuck_at_min", Float(0.1)), ("stuck_at_max", Float(0.1))],
        ));
        cases.push(variant("constant_step", &[("write_noise", Float(2.0))]));
        cases.push(variant(
            "reram_sb",
            &[("c2c_multiplicative", Boolean(false))],
        ));
        cases.push(variant("ecram", &[("levels", Integer(64))]));
        for (name, overrides) in &cases {
            let m = DeviceModel::load(name, overrides).unwrap();
            for paired in [false, true] {
                let targets = if paired {
                    EventTargets::Pairs {
                        one_sided: m.pairing.one_sided,
                    }
                } else {
                    EventTargets::Devices
                };
                let mut fast = DeviceArray::new(&m, 96, 11);
                let mut slow = fast.clone();
                let mut rng = NoiseRng::seed_from_u64(5);
                let targets_len = if paired { 48 } else { 96 };
                for _batch in 0..40 {
                    fast.advance_time(2.0);
                    slow.advance_time(2.0);
                    let events: Vec<PulseEvent> = (0..60)
                        .map(|_| PulseEvent {
                            index: rng.gen_range(0..targets_len),
                            pulses: rng.gen_range(-3..=3),
                        })
                        .collect();
                    let mut got = Recorder::default();
                    fast.apply_events(&events, targets, &mut got);
                    let mut want = Vec::new();
                    for e in &events {
                        let idx = e.index as usize;
                        if paired {
                            let (np, nm) = pair_pulses(e.pulses, m.pairing.one_sided);
                            let r = slow.pulse_pair(idx, np, nm);
                            want.push((idx, r.before, r.after));
                        } else {
                            let r = slow.pulse_read(idx, e.pulses);
                            want.push((idx, [r.before, 0.0], [r.after, 0.0]));
                        }
                    }
                    assert_eq!(got.0, want, "{name} {overrides:?} paired {paired}");
                    fast.end_write();
                    slow.end_write();
                }
                assert_eq!(fast.state(), slow.state(), "{name} {overrides:?}");
                assert_eq!(fast.pulse_totals(), slow.pulse_totals(), "{name}");
                // Both directions were exercised (one-sided pairs only SET).
                let (up, down) = fast.pulse_totals();
                assert!(
                    up > 0 && (down > 0 || (paired && m.pairing.one_sided)),
                    "{name}"
                );
            }
        }
    }
}
