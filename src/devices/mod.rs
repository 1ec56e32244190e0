//! Resistive device models: the physics of one cross-point, as data.
//!
//! A device model is a TOML file in `device_models/` (one per model, every
//! parameter documented there with its unit and source). The shipped models
//! are embedded in the binary with `include_str!`, so `--device reram_es`
//! works from any working directory; any other path to a `.toml` file is
//! loaded from disk, so users add their own devices without recompiling.
//!
//! **Units.** A device's state is its *normalised conductance*
//! `g = (G − G_min) / (G_max − G_min)`, nominally in `[0, 1]`; every step
//! size and spread in a model file is a fraction of that nominal range.
//! The physical `G_min`, `G_max` (µS) enter only where absolute
//! conductance matters: read noise is proportional to `G`, not to `g`
//! (DESIGN.md §2), and drift scales `G`.
//! The aihwkit presets are published in weight units over a range
//! `w ∈ [w_min, w_max]`; the model files convert them with
//! `g = (w − w_min)/(w_max − w_min)` and say so next to each value.
//!
//! **Pulse response** (one pulse, direction up or down):
//! `Δg = ±Δg_i^{up/down} · f^{up/down} + σ_c2c(…) ξ` followed by clipping to
//! `[g_lo,i, g_hi,i]` and (optionally) rounding to one of `levels`
//! equidistant states. The response factor `f` is evaluated where the
//! model's [`Anchor`] says: at the normalised position
//! `x = (g − g_lo,i)/(g_hi,i − g_lo,i)` within the device's own bounds
//! (`own_bounds`), or at the state relative to the symmetry point `x_c`
//! that every device shares, as aihwkit 1.1 does (`absolute`; see
//! [`Response::factor_at`]). With `x` the position:
//! - `constant`:    `f = 1` (Gokmen & Vlasov 2016 RPU spec);
//! - `linear`:      `f_up = 1 − s_up (x − x_c)`, `f_down = 1 + s_down (x − x_c)` (aihwkit LinearStep);
//! - `soft_bounds`: `linear` with `s_up = 1/(1 − x_c)`, `s_down = 1/x_c`, so the step vanishes at the bounds;
//! - `exponential`: `z = a_z x + b_z`, `f_up = max(0, 1 − A_up e^{γ_up z})`,
//!   `f_down = max(0, 1 − A_down e^{−γ_down z})` (aihwkit ExpStep, fitted to Gong et al. 2018);
//! - `piecewise`:   `f_up`, `f_down` tabulated at `N` equidistant points of `x ∈ [0, 1]`,
//!   linearly interpolated (aihwkit PiecewiseStepDevice; a measured device's response,
//!   `dyadsim devices fit --response piecewise`);
//! - `ideal`:       no bounds, no noise; `exact` writes apply the exact real-valued change.
//!
//! The nominal steps `Δg_i^{up/down}` carry the device-to-device spread
//! of `Δg_min` (`dw_min_dtod`, normal or log-normal) and the up/down bias
//! `u = up_down` with its device-to-device part `u_i ~ N(0, up_down_dtod²)`,
//! split as the model's [`StepConvention`] says: aihwkit 1.1's code
//! (`Δg_min (γ_i + u⁻ + u_i)` up, `Δg_min (γ_i − u⁺ − u_i)` down, only the
//! weaker direction lowered by `|u|`) or symmetrically,
//! `Δg_min γ_i (1 ± (u + u_i))`. The cycle-to-cycle noise has standard
//! deviation `σ_c2c (b + c2c_add + c2c_slope |g − x_c|)` with
//! `b = |Δg|` (multiplicative) or `Δg_i` (additive); aihwkit's ExpStep
//! "complex noise", `dw_min_std (|Δw| + std_add + std_slope |w|)`.
//!
//! The bounds `g_lo,i`, `g_hi,i` are drawn per device, each with its own
//! spread (`bound_dtod_lo`, `bound_dtod_hi`), absolute (a standard
//! deviation in units of the range around the nominal bound) or relative
//! to the bound's distance from `x_c`, as aihwkit draws
//! `b_min,i = w_min (1 + w_min_dtod ξ)` ([`Bounds`]).
//!
//! **Structure.** [`DeviceModel`] holds the [`Response`] (a sum type whose
//! variants carry only their own parameters) and the parameters every
//! response shares, grouped by concern ([`Bounds`], [`Step`], [`Noise`],
//! [`Faults`], [`Endurance`], [`Drift`], [`Pairing`], [`PulseCost`]); the
//! model files keep their flat keys, read by [`file::RawDeviceModel`].

pub mod array;
pub mod file;
pub mod fit;

pub use array::{DeviceArray, Histogram, PulseEvent, PulseOutcome};

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The state-dependent pulse response: which formula `f^{up/down}(x)`
/// scales a pulse's nominal step, with that formula's own parameters
/// (the model file's `response` key and the keys of that response only).
///
/// Each formula is written once, in [`Response::factor`]; a new parameter
/// of one response is a new field of its variant (and its key in
/// [`mod@file`]). The parameters shared by every response live in the other
/// fields of [`DeviceModel`].
// The table variant is ½ kB: kept inline (not boxed) so that the response
// stays `Copy` and the pulse loop's closure holds it without indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Response {
    /// No bounds, no noise, continuous (exact writes apply real-valued
    /// changes); pulsed, `f = 1`.
    Ideal,
    /// Constant step `f = 1`: the resistive processing unit specification
    /// of Gokmen & Vlasov, Front. Neurosci. 2016 (aihwkit
    /// ConstantStepDevice; `device_models/constant_step.toml`).
    Constant,
    /// Linearly state-dependent step, pivoting on `g_center`:
    /// `f_up = max(0, 1 − s_up (x − x_c))`, `f_down = max(0, 1 + s_down (x − x_c))`
    /// (aihwkit LinearStepDevice with `mult_noise`, its `γ_up/down` scaled by
    /// the range width 2; `device_models/ecram*.toml`, `capacitor.toml`;
    /// `../shared/reference/device-and-circuit-parameters.md`, the
    /// LinearStep presets).
    Linear {
        /// `s_up` (file key `slope_up`), per unit `x`.
        slope_up: f32,
        /// `s_down` (file key `slope_down`), per unit `x`.
        slope_down: f32,
    },
    /// Soft bounds: `f_up = max(0, (1 − x)/(1 − x_c))`, `f_down = max(0, x/x_c)`,
    /// the linear step with `s_up = 1/(1 − x_c)`, `s_down = 1/x_c`, so that
    /// each step vanishes at its bound and both are 1 at `x_c` (aihwkit
    /// SoftBoundsDevice; `device_models/reram_sb.toml`, `reram_array_om.toml`).
    SoftBounds,
    /// Exponential step: `z = a_z x + b_z`,
    /// `f_up = max(0, 1 − A_up e^{γ_up z})`, `f_down = max(0, 1 − A_down e^{−γ_down z})`
    /// (aihwkit ExpStepDevice, fitted to Gong et al., Nat. Commun. 2018 for
    /// ReRAM and to Nandakumar et al. 2020 for PCM; its `z = 2a·w/(w_max −
    /// w_min) + b` rewritten in `x`, see `device_models/reram_es.toml`,
    /// `pcm.toml`).
    Exponential {
        /// `A_up` (file key `exp_a_up`).
        a_up: f32,
        /// `A_down` (file key `exp_a_down`).
        a_down: f32,
        /// `γ_up` (file key `exp_gamma_up`).
        gamma_up: f32,
        /// `γ_down` (file key `exp_gamma_down`).
        gamma_down: f32,
        /// `a_z` in `z = a_z x + b_z` (file key `exp_z_slope`).
        z_slope: f32,
        /// `b_z` in `z = a_z x + b_z` (file key `exp_z_offset`).
        z_offset: f32,
    },
    /// Lookup table: `f_up`, `f_down` given at `N` equidistant positions
    /// `x_k = k/(N − 1)` of the range and linearly interpolated between
    /// them, held at the end values outside `[0, 1]` (aihwkit
    /// PiecewiseStepDevice, `rpu_piecewisestep_device.cpp`, which reads the
    /// position within each device's own bounds: `anchor = "own_bounds"`;
    /// with `absolute` the table spans the nominal range). File keys
    /// `piecewise_up`, `piecewise_down`: arrays of `N` factors, `2 ≤ N ≤`
    /// [`PIECEWISE_MAX_POINTS`]. What `dyadsim devices fit --response
    /// piecewise` writes for a measured trace.
    Piecewise(PiecewiseTable),
}

/// Most points of a [`Response::Piecewise`] table (a fixed capacity keeps
/// the response `Copy`, so that the pulse loop holds it in registers and
/// stack like the parametric ones).
pub const PIECEWISE_MAX_POINTS: usize = 64;

/// The factors of a [`Response::Piecewise`] response at `points`
/// equidistant positions (entries past `points` are 0 and unused).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PiecewiseTable {
    points: usize,
    up: [f32; PIECEWISE_MAX_POINTS],
    down: [f32; PIECEWISE_MAX_POINTS],
}

impl PiecewiseTable {
    /// The table of the factors `up[k]`, `down[k]` at `x_k = k/(N − 1)`;
    /// an error names the file key whose values are out of range (both of
    /// the same length `N`, `2 ≤ N ≤ 64`, finite and ≥ 0, each with a
    /// positive entry).
    pub fn new(up: &[f32], down: &[f32]) -> Result<Self> {
        for (key, v) in [("piecewise_up", up), ("piecewise_down", down)] {
            if v.len() < 2 || v.len() > PIECEWISE_MAX_POINTS {
                bail!(
                    "{key} has {} values; a table needs 2 to {PIECEWISE_MAX_POINTS}",
                    v.len()
                );
            }
            if let Some((k, x)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| !(x.is_finite() && **x >= 0.0))
            {
                bail!("{key}[{k}] = {x}: factors must be finite and ≥ 0");
            }
            if v.iter().all(|&x| x == 0.0) {
                bail!("{key} is all 0: the device could never move that way");
            }
        }
        if up.len() != down.len() {
            bail!(
                "piecewise_up has {} values and piecewise_down {}: both tables need the same points",
                up.len(),
                down.len()
            );
        }
        let mut t = Self {
            points: up.len(),
            up: [0.0; PIECEWISE_MAX_POINTS],
            down: [0.0; PIECEWISE_MAX_POINTS],
        };
        t.up[..up.len()].copy_from_slice(up);
        t.down[..down.len()].copy_from_slice(down);
        Ok(t)
    }

    /// The up factors `f_up(x_k)`.
    pub fn up(&self) -> &[f32] {
        &self.up[..self.points]
    }

    /// The down factors `f_down(x_k)`.
    pub fn down(&self) -> &[f32] {
        &self.down[..self.points]
    }

    /// The interpolated factor at `x` (clamped to `[0, 1]`).
    #[inline(always)]
    pub fn factor(&self, x: f32, up: bool) -> f32 {
        let values = if up { &self.up } else { &self.down };
        let sections = (self.points - 1) as f32;
        let s = x.clamp(0.0, 1.0) * sections;
        let k = (s as usize).min(self.points - 2);
        let t = s - k as f32;
        (1.0 - t) * values[k] + t * values[k + 1]
    }
}

impl Response {
    /// The name used in model files (`response = "…"`).
    pub fn name(&self) -> &'static str {
        match self {
            Response::Ideal => "ideal",
            Response::Constant => "constant",
            Response::Linear { .. } => "linear",
            Response::SoftBounds => "soft_bounds",
            Response::Exponential { .. } => "exponential",
            Response::Piecewise(_) => "piecewise",
        }
    }

    /// Whether the step does not depend on the state (`f = 1`).
    pub fn is_constant(&self) -> bool {
        matches!(self, Response::Ideal | Response::Constant)
    }

    /// The response factor `f_up(x)` (if `up`) or `f_down(x)` at the
    /// position `x` (normalised conductance), for the symmetry point
    /// `g_center` (`x_c`): the one place each formula is written (the
    /// variants' docs give each formula and its source).
    /// [`Response::factor_at`] chooses the position by the model's anchor.
    ///
    /// With a `self` whose variant the compiler knows (a constant), the
    /// dispatch folds away; the pulse loop uses this to compile itself once
    /// per response ([`DeviceArray::apply_events`]).
    #[inline(always)]
    pub fn factor(&self, g_center: f32, x: f32, up: bool) -> f32 {
        match *self {
            Response::Ideal | Response::Constant => 1.0,
            Response::Linear {
                slope_up,
                slope_down,
            } => if up {
                1.0 - slope_up * (x - g_center)
            } else {
                1.0 + slope_down * (x - g_center)
            }
            .max(0.0),
            Response::SoftBounds => if up {
                (1.0 - x) / (1.0 - g_center)
            } else {
                x / g_center
            }
            .max(0.0),
            Response::Exponential {
                a_up,
                a_down,
                gamma_up,
                gamma_down,
                z_slope,
                z_offset,
            } => {
                let z = z_slope * x + z_offset;
                if up {
                    1.0 - a_up * (gamma_up * z).exp()
                } else {
                    1.0 - a_down * (-gamma_down * z).exp()
                }
                .max(0.0)
            }
            Response::Piecewise(table) => table.factor(x, up),
        }
    }

    /// The response factor of a device at `p`, evaluated where `anchor`
    /// says ([`Anchor`]), for the symmetry point `g_center` (`x_c`).
    ///
    /// - [`Anchor::OwnBounds`]: [`Response::factor`] at the position within
    ///   the device's own bounds, `x = (g − g_lo,i)/(g_hi,i − g_lo,i)`.
    /// - [`Anchor::Absolute`] (aihwkit 1.1, `rpu_linearstep_device.cpp`,
    ///   `rpu_expstep_device.cpp`), with the weight `w ∝ g − x_c` every
    ///   device shares:
    ///   - `linear` pivots at `x_c` with the model's fixed slopes
    ///     (LinearStep with `mean_bound_reference`): `x = g`;
    ///   - `soft_bounds` is `1 − w/b_max,i` up and `1 − w/b_min,i` down
    ///     (SoftBounds): `f_up = (g_hi,i − g)/(g_hi,i − x_c)`,
    ///     `f_down = (g − g_lo,i)/(x_c − g_lo,i)`, 1 at `x_c` for every
    ///     device, 0 at its own bounds;
    ///   - `exponential` has `z = 2a·w/(b_max,i − b_min,i) + b` (ExpStep,
    ///     with the device's own bound difference): `x = x_c + (g −
    ///     x_c)/(g_hi,i − g_lo,i)`, which is `g` for a device with the
    ///     nominal bounds.
    #[inline(always)]
    pub fn factor_at(&self, anchor: Anchor, g_center: f32, p: Position, up: bool) -> f32 {
        let (origin, scale) = self.position_map(anchor, g_center, p.lo, p.hi, up);
        self.factor(g_center, (p.g - origin) * scale, up)
    }

    /// The affine map `x = (g − origin)·scale` that takes a device with
    /// bounds `[lo, hi]` from its state `g` to the position at which
    /// [`Response::factor`] gives its step in one direction, as
    /// [`Response::factor_at`] documents; `(origin, scale)`.
    ///
    /// The pulse loop computes it once per device and direction, so that a
    /// pulse costs one subtraction and one multiplication more than the
    /// formula itself (the `own_bounds` map is the `(g − lo)/(hi − lo)`
    /// the loop has always computed, with the same rounding). Unbounded
    /// devices read `g` itself.
    #[inline(always)]
    pub fn position_map(
        &self,
        anchor: Anchor,
        g_center: f32,
        lo: f32,
        hi: f32,
        up: bool,
    ) -> (f32, f32) {
        if !(lo.is_finite() && hi.is_finite()) {
            return (0.0, 1.0);
        }
        let c = g_center;
        match (anchor, self) {
            (Anchor::OwnBounds, _) | (_, Response::Ideal | Response::Constant) => {
                (lo, 1.0 / (hi - lo))
            }
            (Anchor::Absolute, Response::Linear { .. } | Response::Piecewise(_)) => (0.0, 1.0),
            // x = c + (g − c)/(hi − lo)
            (Anchor::Absolute, Response::Exponential { .. }) => {
                let width = hi - lo;
                (c - c * width, 1.0 / width)
            }
            // (1 − x)/(1 − c) = (hi − g)/(hi − c) up, x/c = (g − lo)/(c − lo)
            // down; a bound at c (a measure-zero draw) is kept off c.
            (Anchor::Absolute, Response::SoftBounds) => {
                if up {
                    let scale = (1.0 - c) / (hi - c).max(1e-6);
                    (hi - 1.0 / scale, scale)
                } else {
                    (lo, c / (c - lo).max(1e-6))
                }
            }
        }
    }
}

/// Where a device's state sits, as [`Response::factor_at`] reads it: its
/// normalised conductance and its own bounds (infinite for an unbounded
/// device, which is then read at `g` itself).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// Normalised conductance `g`.
    pub g: f32,
    /// The device's lower bound `g_lo,i`.
    pub lo: f32,
    /// The device's upper bound `g_hi,i`.
    pub hi: f32,
}

impl Position {
    /// The state `g` of a device with bounds `[lo, hi]`.
    #[inline(always)]
    pub fn new(g: f32, lo: f32, hi: f32) -> Self {
        Self { g, lo, hi }
    }
}

/// Where the state-dependent step is evaluated (model file key `anchor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// At the device's position within its own bounds: each device's
    /// response is the nominal one stretched onto its bounds, so bound
    /// spread moves each device's symmetry point with its bounds.
    OwnBounds,
    /// At the state relative to the symmetry point `g_center`, which every
    /// device shares (aihwkit 1.1's SoftBounds, LinearStep and ExpStep
    /// evaluate the step at the absolute weight); bound spread then
    /// changes where a device saturates, not where it is symmetric. A
    /// fresh device starts at `g_center`.
    Absolute,
}

impl Anchor {
    /// The name used in model files.
    pub const fn name(self) -> &'static str {
        match self {
            Anchor::OwnBounds => "own_bounds",
            Anchor::Absolute => "absolute",
        }
    }
}

/// How the nominal up and down steps of a device are made from `dw_min`,
/// its spread and the up/down bias (model file key `step_convention`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepConvention {
    /// aihwkit 1.1's code (`PulsedRPUDevice::populate`,
    /// `rpu_pulsed_device.cpp`): gain `γ_i = 1 + σ ξ` (or `e^{σξ}`,
    /// median 1, when log-normal), `Δg^{up} = Δg_min |γ_i + u⁻ + u_i|`,
    /// `Δg^{down} = Δg_min |γ_i − u⁺ − u_i|` with `u⁻ = min(u, 0)`,
    /// `u⁺ = max(u, 0)`: only the weaker direction is lowered, by `|u|`.
    /// (aihwkit's documentation gives `dw_min (1 ± u)` instead.)
    Aihwkit,
    /// Symmetric split: `Δg^{up/down} = Δg_min γ_i (1 ± (u + u_i))` with
    /// `γ_i = max(0, 1 + σ ξ)` or the mean-preserving `e^{σξ − σ²/2}`
    /// (Gokmen & Vlasov 2016's up/down ratio; aihwkit's documented split).
    Symmetric,
}

impl StepConvention {
    /// The name used in model files.
    pub const fn name(self) -> &'static str {
        match self {
            StepConvention::Aihwkit => "aihwkit",
            StepConvention::Symmetric => "symmetric",
        }
    }
}

/// The physical conductance window (µS): absolute conductance matters for
/// read noise and drift (DESIGN.md §2), and for the cost model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conductance {
    /// Physical low conductance `G_min` (µS; key `g_min_us`).
    pub g_min_us: f64,
    /// Physical high conductance `G_max` (µS; key `g_max_us`).
    pub g_max_us: f64,
}

/// The bounds of the normalised conductance and their spread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Whether the conductance is bounded (false only for `ideal`; key `bounded`).
    pub bounded: bool,
    /// Normalised symmetry point `x_c` (where a differential pair or a
    /// device and its reference encode w = 0, and where linear slopes
    /// pivot; key `g_center`).
    pub g_center: f32,
    /// Where the state-dependent step is evaluated (key `anchor`).
    pub anchor: Anchor,
    /// Device-to-device spread of the lower bound (key `bound_dtod_lo`):
    /// the standard deviation in units of the range, or, if
    /// `dtod_relative`, relative to the bound's distance `x_c` from the
    /// symmetry point (aihwkit's `w_min_dtod`).
    pub dtod_lo: f32,
    /// The same for the upper bound (key `bound_dtod_hi`; relative to
    /// `1 − x_c`, aihwkit's `w_max_dtod`).
    pub dtod_hi: f32,
    /// Whether the spreads are relative (key `bound_dtod_relative`):
    /// `g_lo,i = x_c − |x_c (1 + σ_lo ξ)|`, `g_hi,i = x_c + |(1 − x_c)(1 + σ_hi ξ)|`
    /// (aihwkit's draw with its `enforce_consistency`, so every device's
    /// bounds contain `x_c`); else `g_lo,i = σ_lo ξ`, `g_hi,i = 1 + σ_hi ξ`
    /// (a window of at least a tenth of the range).
    pub dtod_relative: bool,
}

impl Bounds {
    /// The absolute standard deviations (units of the range) of the lower
    /// and upper bound.
    pub fn absolute_spreads(&self) -> (f32, f32) {
        if self.dtod_relative {
            (
                self.dtod_lo * self.g_center,
                self.dtod_hi * (1.0 - self.g_center),
            )
        } else {
            (self.dtod_lo, self.dtod_hi)
        }
    }
}

/// The nominal step of a pulse and its device-to-device spreads:
/// `Δg_i^{up/down} = Δg_min,i (1 ± (u + u_i))` (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Mean step per pulse `Δg_min` (fraction of range; key `dw_min`).
    pub dw_min: f32,
    /// Device-to-device relative spread of `Δg_min` (key `dw_min_dtod`).
    pub dw_min_dtod: f32,
    /// Draw the step spread log-normally instead of normally (key
    /// `dtod_lognormal`; median 1 in the aihwkit convention, mean 1 in the
    /// symmetric one).
    pub dtod_lognormal: bool,
    /// How the up and down steps are made (key `step_convention`).
    pub convention: StepConvention,
    /// Systematic up/down bias `u` (up step ×(1+u), down step ×(1−u); key `up_down`).
    pub up_down: f32,
    /// Device-to-device standard deviation of the up/down bias (key `up_down_dtod`).
    pub up_down_dtod: f32,
    /// Number of programmable conductance levels (0 = analog; key
    /// `levels`). With N ≥ 2 a nominal pulse moves one level,
    /// `(g_hi − g_lo)/(N − 1)`, and the state is rounded to the nearest
    /// level after every pulse.
    pub levels: u32,
}

/// Cycle-to-cycle, write and read noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// Cycle-to-cycle relative standard deviation of a step (key `dw_min_std`).
    pub c2c: f32,
    /// Cycle-to-cycle noise multiplies the state-dependent step (true) or
    /// is added in units of `Δg_min` (false; key `c2c_multiplicative`;
    /// Gokmen & Vlasov 2016).
    pub c2c_multiplicative: bool,
    /// Additive part of the cycle-to-cycle standard deviation, in units of
    /// the range, times `c2c` (key `c2c_add`; aihwkit ExpStep
    /// `dw_min_std_add` over the range width).
    pub c2c_add: f32,
    /// State-dependent part of the cycle-to-cycle standard deviation, per
    /// unit `|g − x_c|`, times `c2c` (key `c2c_slope`; aihwkit ExpStep
    /// `dw_min_std_slope`).
    pub c2c_slope: f32,
    /// Write noise: the read-visible conductance of a device after a write
    /// deviates from its programmed state by `N(0, (write_noise·Δg_min)²)`,
    /// redrawn at every write (does not accumulate; key `write_noise`).
    pub write: f32,
    /// Relative read noise σ: `G → G (1 + σ ξ)` at every read (key `read_noise`).
    pub read: f32,
}

/// Devices stuck at a bound from the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Fraction of devices stuck at `G_min` (key `stuck_at_min`).
    pub stuck_at_min: f32,
    /// Fraction of devices stuck at `G_max` (key `stuck_at_max`).
    pub stuck_at_max: f32,
}

/// Rated pulses before a device stops switching.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Endurance {
    /// Rated pulses (0 = unlimited; key `endurance`).
    pub pulses: f64,
    /// Device-to-device log-normal spread (key `endurance_dtod`).
    pub dtod: f32,
}

/// Conductance drift `G(t) = G(t_p)·((t − t_p)/t₀)^−ν` (aihwkit
/// PCMLikeNoiseModel drift law; DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    /// Mean drift exponent ν (key `drift_nu`).
    pub nu: f32,
    /// Device-to-device standard deviation of ν (key `drift_nu_dtod`).
    pub nu_dtod: f32,
    /// Drift reference time t₀ (s; key `drift_t0`).
    pub t0: f64,
}

/// The noise of a device programmed once and read for inference long
/// after (aihwkit's PCMLikeNoiseModel, Nandakumar et al., ICECS 2019; its
/// published constants are in `device_models/pcm.toml`): the programming
/// error of a fresh write and the 1/f read noise accumulated since. Both
/// are optional in a model file; absent, a model has neither.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferenceNoise {
    /// Programming error (key `program_noise_us`).
    pub program: Option<ProgramNoise>,
    /// Read noise that grows with the time since programming (keys
    /// `read_noise_1f_*`).
    pub read_growth: Option<ReadNoiseGrowth>,
}

/// Programming error of a device written to a target conductance `G_T`
/// without verification: `G = G_T + σ_prog(G_T) ξ`, ξ ~ N(0, 1), with
/// `σ_prog(G_T) = max(0, Σ_k c_k ĝ^k)` µS and `ĝ = G_T/G_max`
/// (aihwkit PCMLikeNoiseModel `apply_programming_noise_to_conductance`,
/// coefficients `prog_coeff`; key `program_noise_us = [c_0, c_1, …]`). The
/// coefficients are for this model's `G_max` (aihwkit fitted its PCM
/// coefficients at 25 µS and scales σ by `G_max/25 µS` for other windows).
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramNoise {
    /// `c_0, c_1, …` (µS).
    pub coefficients_us: Vec<f64>,
}

/// Read noise accumulated since programming, 1/f noise integrated over
/// the time `t` since the device's write (aihwkit PCMLikeNoiseModel
/// `apply_drift_noise_to_conductance`): a device read at time `t` shows
/// `G(t)(1 + σ(t) ξ)`, one ξ per device and evaluation time, with
/// `σ(t) = min(Q_max, Q/max(ĝ_p^e, 10⁻³)) · √ln((t + t_r)/(2 t_r))` for
/// `t > t_r` (0 before), `ĝ_p = G_p/G_max` the programmed conductance.
/// aihwkit measures `t` from `t₀` before the inference time (its `t =
/// t_inference + t₀`); here `t` is the time since the write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadNoiseGrowth {
    /// `Q` (key `read_noise_1f_q`; aihwkit 0.0088).
    pub q: f32,
    /// `e` (key `read_noise_1f_exponent`; aihwkit 0.65).
    pub exponent: f32,
    /// `Q_max` (key `read_noise_1f_max`; aihwkit 0.2).
    pub max: f32,
    /// `t_r` (s; key `read_noise_1f_t_read`; aihwkit 250 ns).
    pub t_read_s: f64,
}

impl ProgramNoise {
    /// `σ_prog` (µS) at the target conductance `g_target_us`, for a model
    /// whose window ends at `g_max_us`.
    pub fn sigma_us(&self, g_target_us: f64, g_max_us: f64) -> f64 {
        let x = g_target_us / g_max_us;
        let mut power = 1.0;
        let mut sigma = 0.0;
        for c in &self.coefficients_us {
            sigma += c * power;
            power *= x;
        }
        sigma.max(0.0)
    }
}

impl ReadNoiseGrowth {
    /// The relative σ of a device programmed to `g_programmed_us` and read
    /// `age_s` seconds after its write, for a window ending at `g_max_us`.
    pub fn sigma(&self, g_programmed_us: f64, g_max_us: f64, age_s: f64) -> f32 {
        let ratio = (age_s + self.t_read_s) / (2.0 * self.t_read_s);
        // Below t_r (and for a NaN age) nothing has accumulated yet.
        if ratio.is_nan() || ratio <= 1.0 {
            return 0.0;
        }
        let relative = (g_programmed_us.abs() / g_max_us).powf(self.exponent as f64);
        let q = (self.q as f64 / relative.max(1e-3)).min(self.max as f64);
        (q * ratio.ln().sqrt()) as f32
    }
}

/// How the devices of a weight's pair are operated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pairing {
    /// Only potentiating (up) pulses are used; a weight is a pair of such
    /// devices and negative updates potentiate `G⁻` (PCM SET-only
    /// operation; key `one_sided`).
    pub one_sided: bool,
    /// One-sided pairs: when either device passes this normalised
    /// conductance, both are reset and the weight is re-programmed (0 =
    /// off; key `refresh_threshold`).
    pub refresh_threshold: f32,
}

/// Write-pulse constants for the cost model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PulseCost {
    /// Write pulse width (ns; 0 = not known; key `pulse_width_ns`).
    pub pulse_width_ns: f64,
    /// Energy per write pulse (pJ; 0 = not known; key `pulse_energy_pj`).
    pub pulse_energy_pj: f64,
}

/// One device model, as read from `device_models/NAME.toml` (the flat
/// keys of the file, [`file::RawDeviceModel`], grouped by concern).
///
/// Every key is required in a model file, so that a file is a complete,
/// reviewable record of the device, and a key of another response is an
/// error; `--set device.KEY=VALUE` overrides single keys per run (see
/// [`DeviceModel::load`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceModel {
    /// Short name (`reram_es`).
    pub name: String,
    /// One line for `dyadsim devices`.
    pub description: String,
    /// Where the numbers come from.
    pub source: String,
    /// Pulse-response shape with its own parameters.
    pub response: Response,
    /// Physical conductance window.
    pub conductance: Conductance,
    /// Bounds of the normalised conductance.
    pub bounds: Bounds,
    /// Nominal step and its spreads.
    pub step: Step,
    /// Cycle-to-cycle, write and read noise.
    pub noise: Noise,
    /// Stuck devices.
    pub faults: Faults,
    /// Endurance.
    pub endurance: Endurance,
    /// Drift.
    pub drift: Drift,
    /// Pair operation.
    pub pairing: Pairing,
    /// Cost-model constants of a write pulse.
    pub cost: PulseCost,
    /// Programming error and accumulated read noise of inference.
    pub inference: InferenceNoise,
    /// Crossbar settings the model recommends (`[recommended]`), if any.
    pub recommended: Option<file::Recommended>,
    /// How `dyadsim devices fit` made the model, if it did (`[fit]`: the
    /// trace, the residual, each parameter's standard error).
    pub fit: Option<file::FitRecord>,
}

/// The shipped models: name and embedded file text.
pub const BUILTIN_MODELS: &[(&str, &str)] = &[
    ("ideal", include_str!("../../device_models/ideal.toml")),
    (
        "constant_step",
        include_str!("../../device_models/constant_step.toml"),
    ),
    (
        "reram_es",
        include_str!("../../device_models/reram_es.toml"),
    ),
    (
        "reram_sb",
        include_str!("../../device_models/reram_sb.toml"),
    ),
    ("ecram", include_str!("../../device_models/ecram.toml")),
    (
        "ecram_mo",
        include_str!("../../device_models/ecram_mo.toml"),
    ),
    (
        "capacitor",
        include_str!("../../device_models/capacitor.toml"),
    ),
    ("pcm", include_str!("../../device_models/pcm.toml")),
    (
        "reram_array_om",
        include_str!("../../device_models/reram_array_om.toml"),
    ),
];

/// Names of the shipped models.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN_MODELS.iter().map(|(n, _)| *n).collect()
}

/// Parsed shipped models by name and overrides, bounded so that a sweep
/// over a device parameter does not grow it without end.
mod builtin_cache {
    use super::DeviceModel;
    use std::collections::HashMap;
    use std::sync::Mutex;

    const CAPACITY: usize = 64;
    static CACHE: Mutex<Option<HashMap<String, DeviceModel>>> = Mutex::new(None);

    pub(super) fn get(key: &str) -> Option<DeviceModel> {
        CACHE.lock().ok()?.as_ref()?.get(key).cloned()
    }

    pub(super) fn put(key: String, model: &DeviceModel) {
        if let Ok(mut cache) = CACHE.lock() {
            let map = cache.get_or_insert_with(HashMap::new);
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, model.clone());
        }
    }
}

impl DeviceModel {
    /// Loads a model by shipped name or by path to a TOML file, applies the
    /// per-run overrides (`device.KEY = VALUE`) and validates every field.
    ///
    /// Errors name the model file, the key and the expected type or range;
    /// an unknown name lists the shipped models.
    pub fn load(name_or_path: &str, overrides: &toml::Table) -> Result<Self> {
        // A shipped model's text never changes: the parsed model is kept
        // (a sweep checks every job's configuration, and parsing is most of
        // that). Files are read each time, since they may be edited.
        let builtin = BUILTIN_MODELS.iter().any(|(n, _)| *n == name_or_path);
        let key = builtin.then(|| format!("{name_or_path}\n{overrides}"));
        if let Some(model) = key.as_ref().and_then(|k| builtin_cache::get(k)) {
            return Ok(model);
        }
        let (origin, text) = Self::source_text(name_or_path)?;
        let model = Self::from_toml_str(&text, &origin, overrides)?;
        if let Some(k) = key {
            builtin_cache::put(k, &model);
        }
        Ok(model)
    }

    /// Where a name resolves to: `(description of the origin, TOML text)`.
    pub fn source_text(name_or_path: &str) -> Result<(String, String)> {
        if let Some((name, text)) = BUILTIN_MODELS.iter().find(|(n, _)| *n == name_or_path) {
            return Ok((
                format!("device_models/{name}.toml (built in)"),
                text.to_string(),
            ));
        }
        let path = Path::new(name_or_path);
        let looks_like_path = name_or_path.ends_with(".toml") || name_or_path.contains('/');
        if looks_like_path || path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read device model file {}", path.display()))?;
            return Ok((path.display().to_string(), text));
        }
        bail!(
            "unknown device model '{name_or_path}': known models are {} (or give a path to a .toml file)",
            builtin_names().join(", ")
        )
    }

    /// Parses model text (`origin` names the file in errors) with overrides:
    /// the flat keys ([`file::RawDeviceModel`]) into the typed model.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &toml::Table) -> Result<Self> {
        let raw = file::RawDeviceModel::parse(text, origin, overrides)?;
        let model = DeviceModel::try_from(raw)
            .map_err(|e| anyhow::anyhow!("device model file {origin}: {e:#}"))?;
        model.validate(origin)?;
        Ok(model)
    }

    /// Range checks no type expresses; errors name file, key and range.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |field: &str, value: f64, range: &str| -> Result<()> {
            bail!("device model {origin}: {field} = {value} is out of range: {range}")
        };
        let (c, b, s, n) = (&self.conductance, &self.bounds, &self.step, &self.noise);
        let nonneg: [(&str, f64); 16] = [
            ("g_min_us", c.g_min_us),
            ("bound_dtod_lo", b.dtod_lo as f64),
            ("bound_dtod_hi", b.dtod_hi as f64),
            ("c2c_add", n.c2c_add as f64),
            ("c2c_slope", n.c2c_slope as f64),
            ("dw_min", s.dw_min as f64),
            ("dw_min_dtod", s.dw_min_dtod as f64),
            ("up_down_dtod", s.up_down_dtod as f64),
            ("dw_min_std", n.c2c as f64),
            ("write_noise", n.write as f64),
            ("read_noise", n.read as f64),
            ("endurance", self.endurance.pulses),
            ("endurance_dtod", self.endurance.dtod as f64),
            ("drift_nu", self.drift.nu as f64),
            ("drift_nu_dtod", self.drift.nu_dtod as f64),
            ("pulse_energy_pj", self.cost.pulse_energy_pj),
        ];
        for (field, v) in nonneg {
            if !(v.is_finite() && v >= 0.0) {
                err(field, v, "must be finite and ≥ 0")?;
            }
        }
        let width = self.cost.pulse_width_ns;
        if !(width.is_finite() && width >= 0.0) {
            err("pulse_width_ns", width, "must be ≥ 0")?;
        }
        if !(c.g_max_us.is_finite() && c.g_max_us > c.g_min_us) {
            err("g_max_us", c.g_max_us, "must be finite and > g_min_us")?;
        }
        if b.bounded && !(0.0..=1.0).contains(&b.g_center) {
            err("g_center", b.g_center as f64, "[0, 1] for a bounded device")?;
        }
        if !b.g_center.is_finite() {
            err("g_center", b.g_center as f64, "must be finite")?;
        }
        if !b.dtod_relative {
            for (field, v) in [("bound_dtod_lo", b.dtod_lo), ("bound_dtod_hi", b.dtod_hi)] {
                if v >= 0.5 {
                    err(field, v as f64, "[0, 0.5) of the range (absolute spreads)")?;
                }
            }
        }
        let spread = b.dtod_lo > 0.0 || b.dtod_hi > 0.0;
        if b.anchor == Anchor::Absolute
            && self.response == Response::SoftBounds
            && spread
            && !b.dtod_relative
        {
            bail!(
                "device model {origin}: anchor = \"absolute\" with response = \"soft_bounds\" needs bound_dtod_relative = true (absolute spreads can move a bound past g_center, where the soft-bounds step of aihwkit's convention is undefined); or set anchor = \"own_bounds\""
            );
        }
        if s.dw_min >= 1.0 {
            err("dw_min", s.dw_min as f64, "[0, 1) of the conductance range")?;
        }
        if self.response != Response::Ideal && s.dw_min <= 0.0 && s.levels < 2 {
            err(
                "dw_min",
                s.dw_min as f64,
                "must be > 0 for a non-ideal response (or set levels ≥ 2)",
            )?;
        }
        if !(s.up_down > -1.0 && s.up_down < 1.0) {
            err("up_down", s.up_down as f64, "(−1, 1)")?;
        }
        match self.response {
            Response::SoftBounds if !(b.g_center > 0.0 && b.g_center < 1.0) => {
                err("g_center", b.g_center as f64, "(0, 1) for soft_bounds")?;
            }
            Response::Linear {
                slope_up,
                slope_down,
            } => {
                for (field, v) in [("slope_up", slope_up), ("slope_down", slope_down)] {
                    if !v.is_finite() {
                        err(field, v as f64, "must be finite")?;
                    }
                }
            }
            Response::Exponential {
                a_up,
                a_down,
                gamma_up,
                gamma_down,
                z_slope,
                z_offset,
            } => {
                for (field, v) in [
                    ("exp_a_up", a_up),
                    ("exp_a_down", a_down),
                    ("exp_gamma_up", gamma_up),
                    ("exp_gamma_down", gamma_down),
                    ("exp_z_slope", z_slope),
                    ("exp_z_offset", z_offset),
                ] {
                    if !v.is_finite() {
                        err(field, v as f64, "must be finite")?;
                    }
                }
            }
            _ => {}
        }
        if s.levels == 1 {
            err("levels", 1.0, "0 (analog) or ≥ 2")?;
        }
        if s.levels >= 2 && !b.bounded {
            bail!(
                "device model {origin}: levels = {} needs bounded = true",
                s.levels
            );
        }
        for (field, v) in [
            ("stuck_at_min", self.faults.stuck_at_min),
            ("stuck_at_max", self.faults.stuck_at_max),
            ("refresh_threshold", self.pairing.refresh_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(field, v as f64, "[0, 1]")?;
            }
        }
        let stuck = self.faults.stuck_at_min + self.faults.stuck_at_max;
        if stuck > 1.0 {
            err("stuck_at_min + stuck_at_max", stuck as f64, "≤ 1")?;
        }
        if !(self.drift.t0.is_finite() && self.drift.t0 > 0.0) {
            err("drift_t0", self.drift.t0, "must be > 0 s")?;
        }
        if self.pairing.one_sided && !b.bounded {
            bail!("device model {origin}: one_sided = true needs bounded = true");
        }
        self.validate_inference(origin)
    }

    /// Range checks of the inference noise keys (errors name the key).
    fn validate_inference(&self, origin: &str) -> Result<()> {
        let c = &self.conductance;
        if let Some(p) = &self.inference.program {
            let k = &p.coefficients_us;
            if k.is_empty() || k.len() > 8 {
                bail!(
                    "device model {origin}: program_noise_us has {} coefficients: give 1 to 8 (µS, c_0 + c_1 ĝ + …), or leave the key out for no programming error",
                    k.len()
                );
            }
            if let Some((i, v)) = k.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                bail!("device model {origin}: program_noise_us[{i}] = {v} must be finite");
            }
            // σ_prog must not be negative inside the window (aihwkit's
            // quadratic is positive on it; a negative one is a typo).
            for step in 0..=100 {
                let g = c.g_min_us + (c.g_max_us - c.g_min_us) * step as f64 / 100.0;
                let x = g / c.g_max_us;
                let raw: f64 = k
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v * x.powi(i as i32))
                    .sum();
                if raw < 0.0 {
                    bail!(
                        "device model {origin}: program_noise_us gives σ_prog = {raw:.4} µS < 0 at G = {g:.3} µS (G/G_max = {x:.3}): the polynomial must be ≥ 0 over [g_min_us, g_max_us]"
                    );
                }
            }
        }
        if let Some(r) = &self.inference.read_growth {
            for (key, v) in [
                ("read_noise_1f_q", r.q as f64),
                ("read_noise_1f_exponent", r.exponent as f64),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("device model {origin}: {key} = {v} is out of range: must be finite and ≥ 0");
                }
            }
            if !(r.max.is_finite() && r.max > 0.0 && r.max <= 10.0) {
                bail!(
                    "device model {origin}: read_noise_1f_max = {} is out of range: (0, 10] (a relative σ)",
                    r.max
                );
            }
            if !(r.t_read_s.is_finite() && r.t_read_s > 0.0) {
                bail!(
                    "device model {origin}: read_noise_1f_t_read = {} is out of range: must be > 0 s",
                    r.t_read_s
                );
            }
        }
        Ok(())
    }

    /// σ of the programming error in normalised conductance at the target
    /// `g` (0 without `program_noise_us`; [`ProgramNoise`]).
    pub fn program_sigma(&self, g: f32) -> f32 {
        let Some(p) = &self.inference.program else {
            return 0.0;
        };
        let c = &self.conductance;
        let span = c.g_max_us - c.g_min_us;
        let g_us = c.g_min_us + g as f64 * span;
        (p.sigma_us(g_us, c.g_max_us) / span) as f32
    }

    /// Relative σ of the read noise accumulated `age_s` seconds after a
    /// device was programmed to `g` (normalised; 0 without
    /// `read_noise_1f_*`; [`ReadNoiseGrowth`]).
    pub fn accumulated_read_sigma(&self, g: f32, age_s: f64) -> f32 {
        let Some(r) = &self.inference.read_growth else {
            return 0.0;
        };
        let c = &self.conductance;
        let g_us = c.g_min_us + g as f64 * (c.g_max_us - c.g_min_us);
        r.sigma(g_us, c.g_max_us, age_s)
    }

    /// Nominal step per pulse `Δg_min` actually used: the level spacing when
    /// the device is quantised to `levels ≥ 2`, else `dw_min`.
    pub fn nominal_step(&self) -> f32 {
        if self.step.levels >= 2 {
            1.0 / (self.step.levels - 1) as f32
        } else {
            self.step.dw_min
        }
    }

    /// The normalised conductance at which a device with bounds
    /// `[lo, hi]` encodes w = 0: `g_center` itself with the
    /// [`Anchor::Absolute`] anchor (clipped to the bounds), its place
    /// within the device's own bounds, `lo + g_center (hi − lo)`, with
    /// [`Anchor::OwnBounds`]; `g_center` for an unbounded device.
    pub fn zero_point(&self, lo: f32, hi: f32) -> f32 {
        let c = self.bounds.g_center;
        if !self.bounds.bounded {
            return c;
        }
        match self.bounds.anchor {
            Anchor::Absolute => c.clamp(lo, hi),
            Anchor::OwnBounds => (lo + c * (hi - lo)).clamp(lo, hi),
        }
    }

    /// `G_min / (G_max − G_min)`: the offset that turns a normalised
    /// conductance into absolute conductance over the range, `G/ΔG = g + o`.
    pub fn conductance_offset(&self) -> f32 {
        let c = &self.conductance;
        (c.g_min_us / (c.g_max_us - c.g_min_us)) as f32
    }

    /// Nominal number of states: `levels` for a quantised device, else
    /// `1/Δg_min` (the preset convention), ∞ for a continuous device.
    pub fn states(&self) -> f64 {
        if self.step.levels >= 2 {
            return self.step.levels as f64;
        }
        let s = self.nominal_step();
        if s > 0.0 {
            1.0 / s as f64
        } else {
            f64::INFINITY
        }
    }

    /// The per-pulse response factors `(f_up(x), f_down(x))` at normalised
    /// position `x` ([`Response::factor`]).
    #[inline]
    pub fn response_factors(&self, x: f32) -> (f32, f32) {
        (
            self.response_factor(x, true),
            self.response_factor(x, false),
        )
    }

    /// The response factor of one direction (`f_up(x)` if `up`, else
    /// `f_down(x)`; [`Response::factor`] at this model's `g_center`).
    #[inline]
    pub fn response_factor(&self, x: f32, up: bool) -> f32 {
        self.response.factor(self.bounds.g_center, x, up)
    }

    /// The response factor of one direction for a device at `p`, evaluated
    /// where this model's anchor says ([`Response::factor_at`]).
    #[inline]
    pub fn response_factor_at(&self, p: Position, up: bool) -> f32 {
        self.response
            .factor_at(self.bounds.anchor, self.bounds.g_center, p, up)
    }

    /// One line for `dyadsim devices`.
    pub fn summary_line(&self) -> String {
        let states = if self.states().is_finite() {
            format!("{:.0} states", self.states())
        } else {
            "continuous".to_string()
        };
        format!(
            "{:<15} {:<12} {:>13}  {}",
            self.name,
            self.response.name(),
            states,
            self.description
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_model_parses_and_validates() {
        for name in builtin_names() {
            let m = DeviceModel::load(name, &toml::Table::new())
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(m.name, name, "file name and `name` field agree");
        }
    }

    #[test]
    fn unknown_model_lists_the_known_ones() {
        let e = DeviceModel::load("memristor9000", &toml::Table::new()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("memristor9000") && msg.contains("reram_es") && msg.contains("pcm"));
    }

    #[test]
    fn overrides_are_type_and_range_checked() {
        let mut o = toml::Table::new();
        o.insert("read_noise".into(), toml::Value::Integer(0));
        assert_eq!(DeviceModel::load("reram_es", &o).unwrap().noise.read, 0.0);

        let mut o = toml::Table::new();
        o.insert("levels".into(), toml::Value::String("many".into()));
        let msg = format!("{:#}", DeviceModel::load("reram_es", &o).unwrap_err());
        assert!(
            msg.contains("device.levels")
                && msg.contains("integer")
                && msg.contains("reram_es.toml"),
            "{msg}"
        );

        let mut o = toml::Table::new();
        o.insert("read_nosie".into(), toml::Value::Float(0.1));
        let msg = format!("{:#}", DeviceModel::load("reram_es", &o).unwrap_err());
        assert!(
            msg.contains("read_nosie") && msg.contains("read_noise"),
            "{msg}"
        );

        let mut o = toml::Table::new();
        o.insert("read_noise".into(), toml::Value::Float(-0.1));
        let msg = format!("{:#}", DeviceModel::load("reram_es", &o).unwrap_err());
        assert!(msg.contains("read_noise") && msg.contains("≥ 0"), "{msg}");
    }

    #[test]
    fn missing_field_in_a_user_file_names_file_and_field() {
        let text = BUILTIN_MODELS[1].1.replace("dw_min_std", "# dw_min_std");
        let e =
            DeviceModel::from_toml_str(&text, "my_device.toml", &toml::Table::new()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("my_device.toml") && msg.contains("dw_min_std"),
            "{msg}"
        );
    }

    #[test]
    fn a_key_of_another_response_names_file_key_and_response() {
        // constant_step.toml with the `linear` slope key a flat file of the
        // old layout carried (with 0, ignored); now it is an error.
        let text = format!("{}\nslope_up = 0.3\n", BUILTIN_MODELS[1].1);
        let msg = format!(
            "{:#}",
            DeviceModel::from_toml_str(&text, "my_device.toml", &toml::Table::new()).unwrap_err()
        );
        for part in ["my_device.toml", "slope_up", "\"linear\"", "\"constant\""] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
        // The same through an override.
        let mut o = toml::Table::new();
        o.insert("exp_a_up".into(), toml::Value::Float(-1.0));
        let msg = format!("{:#}", DeviceModel::load("ecram", &o).unwrap_err());
        for part in ["ecram.toml", "exp_a_up", "\"exponential\"", "\"linear\""] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
    }

    #[test]
    fn a_changed_response_needs_its_own_keys() {
        let mut o = toml::Table::new();
        o.insert("response".into(), toml::Value::String("linear".into()));
        let msg = format!("{:#}", DeviceModel::load("constant_step", &o).unwrap_err());
        assert!(
            msg.contains("slope_up")
                && msg.contains("linear")
                && msg.contains("constant_step.toml"),
            "{msg}"
        );
        o.insert("slope_up".into(), toml::Value::Float(0.5));
        o.insert("slope_down".into(), toml::Value::Integer(1));
        let m = DeviceModel::load("constant_step", &o).unwrap();
        assert_eq!(
            m.response,
            Response::Linear {
                slope_up: 0.5,
                slope_down: 1.0
            }
        );
        // f_up = 1 − s_up (x − x_c) at x = 1, x_c = 0.5: 0.75; f_down = 1.5.
        assert_eq!(m.response_factors(1.0), (0.75, 1.5));
    }

    #[test]
    fn flat_keys_round_trip_through_the_typed_model() {
        for (name, text) in BUILTIN_MODELS {
            let m = DeviceModel::load(name, &toml::Table::new()).unwrap();
            let raw = file::RawDeviceModel::from(&m);
            let written = toml::to_string(&raw).unwrap();
            let again = DeviceModel::from_toml_str(&written, name, &toml::Table::new()).unwrap();
            assert_eq!(again, m, "{name}");
            // Exactly the file's keys come back.
            let keys = |t: &str| {
                let mut k: Vec<String> = toml::from_str::<toml::Table>(t)
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                k.sort();
                k
            };
            assert_eq!(keys(&written), keys(text), "{name}");
        }
    }

    #[test]
    fn response_formulas_at_their_anchor_points() {
        // Soft bounds: both factors 1 at x_c, the up (down) factor 0 at the
        // upper (lower) bound (aihwkit SoftBoundsDevice).
        let c = 0.3;
        let sb = Response::SoftBounds;
        assert_eq!((sb.factor(c, c, true), sb.factor(c, c, false)), (1.0, 1.0));
        assert_eq!(
            (sb.factor(c, 1.0, true), sb.factor(c, 0.0, false)),
            (0.0, 0.0)
        );
        // ExpStep with A = 0 is a constant step; with z = 0 the factors are 1 − A.
        let e = Response::Exponential {
            a_up: -0.5,
            a_down: 0.25,
            gamma_up: 3.0,
            gamma_down: 2.0,
            z_slope: 0.0,
            z_offset: 0.0,
        };
        assert_eq!(
            (e.factor(c, 0.7, true), e.factor(c, 0.7, false)),
            (1.5, 0.75)
        );
        assert_eq!(Response::Constant.factor(c, 0.9, true), 1.0);
    }

    #[test]
    fn exp_step_asymmetry_matches_the_published_figure() {
        // aihwkit's ReRamESPreset docs quote a maximal ± step asymmetry of
        // −670 %, which is its documented split dw_min (1 ± u)
        // (`step_convention = "symmetric"`); evaluate (up − down)/up at the
        // top of the range.
        let m = DeviceModel::load("reram_es", &toml::Table::new()).unwrap();
        let (fu, fd) = m.response_factors(1.0);
        let up = fu * (1.0 + m.step.up_down);
        let down = fd * (1.0 - m.step.up_down);
        let asym = (up - down) / up;
        assert!((asym + 6.7).abs() < 0.15, "asymmetry {asym}");
    }
}
