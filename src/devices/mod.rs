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
//! **Pulse response** (one pulse, direction up or down, at normalised
//! position `x = (g − g_lo,i)/(g_hi,i − g_lo,i)` within the device's own bounds):
//! `Δg = ±Δg_i^{up/down} · f^{up/down}(x) · (1 + σ_c2c ξ)` followed by
//! clipping to `[g_lo,i, g_hi,i]` and (optionally) rounding to one of
//! `levels` equidistant states, where
//! - `constant`:    `f = 1` (Gokmen & Vlasov 2016 RPU spec);
//! - `linear`:      `f_up = 1 − s_up (x − x_c)`, `f_down = 1 + s_down (x − x_c)` (aihwkit LinearStep);
//! - `soft_bounds`: `linear` with `s_up = 1/(1 − x_c)`, `s_down = 1/x_c`, so the step vanishes at the bounds;
//! - `exponential`: `z = a_z x + b_z`, `f_up = max(0, 1 − A_up e^{γ_up z})`,
//!   `f_down = max(0, 1 − A_down e^{−γ_down z})` (aihwkit ExpStep, fitted to Gong et al. 2018);
//! - `ideal`:       no bounds, no noise; `exact` writes apply the exact real-valued change.
//!
//! `Δg_i^{up} = Δg_min,i (1 + u + u_i)`, `Δg_i^{down} = Δg_min,i (1 − u − u_i)`
//! with the up/down bias `u = up_down` and its device-to-device part
//! `u_i ~ N(0, up_down_dtod²)`; `Δg_min,i` carries the device-to-device
//! spread `dw_min_dtod` (normal or mean-preserving log-normal).

pub mod array;

pub use array::{DeviceArray, Histogram, PulseEvent, PulseOutcome};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shape of the state-dependent pulse response (see the module docs).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepResponse {
    /// No bounds, no noise, continuous (exact writes apply real-valued changes).
    Ideal,
    /// Constant step `f = 1`.
    Constant,
    /// Linearly state-dependent step with slopes `slope_up`, `slope_down`.
    Linear,
    /// Linear step whose up (down) step vanishes at the upper (lower) bound.
    SoftBounds,
    /// Exponential step (aihwkit ExpStep form).
    Exponential,
}

impl StepResponse {
    /// The name used in model files.
    pub fn name(self) -> &'static str {
        match self {
            StepResponse::Ideal => "ideal",
            StepResponse::Constant => "constant",
            StepResponse::Linear => "linear",
            StepResponse::SoftBounds => "soft_bounds",
            StepResponse::Exponential => "exponential",
        }
    }
}

/// One device model, as read from `device_models/NAME.toml`.
///
/// Every field is required in a model file, so that a file is a complete,
/// reviewable record of the device; `--set device.FIELD=VALUE` overrides
/// single fields per run (see [`DeviceModel::load`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceModel {
    /// Short name (`reram_es`).
    pub name: String,
    /// One line for `dyadsim devices`.
    pub description: String,
    /// Where the numbers come from.
    pub source: String,
    /// Pulse-response shape.
    pub response: StepResponse,
    /// Only potentiating (up) pulses are used; a weight is a pair of such
    /// devices and negative updates potentiate `G⁻` (PCM SET-only operation).
    pub one_sided: bool,
    /// Physical low conductance `G_min` (µS).
    pub g_min_us: f64,
    /// Physical high conductance `G_max` (µS).
    pub g_max_us: f64,
    /// Whether the conductance is bounded (false only for `ideal`).
    pub bounded: bool,
    /// Normalised symmetry point `x_c` (where a differential pair or a
    /// device and its reference encode w = 0, and where linear slopes pivot).
    pub g_center: f32,
    /// Device-to-device standard deviation of each bound (fraction of range).
    pub bound_dtod: f32,
    /// Mean step per pulse `Δg_min` (fraction of range).
    pub dw_min: f32,
    /// Device-to-device relative spread of `Δg_min`.
    pub dw_min_dtod: f32,
    /// Draw the step spread log-normally (mean preserving) instead of normally.
    pub dtod_lognormal: bool,
    /// Systematic up/down bias `u` (up step ×(1+u), down step ×(1−u)).
    pub up_down: f32,
    /// Device-to-device standard deviation of the up/down bias.
    pub up_down_dtod: f32,
    /// Cycle-to-cycle relative standard deviation of a step.
    pub dw_min_std: f32,
    /// Cycle-to-cycle noise multiplies the state-dependent step (true) or
    /// is added in units of `Δg_min` (false).
    pub c2c_multiplicative: bool,
    /// Write noise: the read-visible conductance of a device after a write
    /// deviates from its programmed state by `N(0, (write_noise·Δg_min)²)`,
    /// redrawn at every write (does not accumulate).
    pub write_noise: f32,
    /// `linear`: slope of the up step in `x`.
    pub slope_up: f32,
    /// `linear`: slope of the down step in `x`.
    pub slope_down: f32,
    /// `exponential`: `A_up`.
    pub exp_a_up: f32,
    /// `exponential`: `A_down`.
    pub exp_a_down: f32,
    /// `exponential`: `γ_up`.
    pub exp_gamma_up: f32,
    /// `exponential`: `γ_down`.
    pub exp_gamma_down: f32,
    /// `exponential`: `a_z` in `z = a_z x + b_z`.
    pub exp_z_slope: f32,
    /// `exponential`: `b_z` in `z = a_z x + b_z`.
    pub exp_z_offset: f32,
    /// Number of programmable conductance levels (0 = analog). With N ≥ 2
    /// a nominal pulse moves one level, `(g_hi − g_lo)/(N − 1)`, and the
    /// state is rounded to the nearest level after every pulse.
    pub levels: u32,
    /// Relative read noise σ: `G → G (1 + σ ξ)` at every read.
    pub read_noise: f32,
    /// Fraction of devices stuck at `G_min`.
    pub stuck_at_min: f32,
    /// Fraction of devices stuck at `G_max`.
    pub stuck_at_max: f32,
    /// Rated pulses before a device stops switching (0 = unlimited).
    pub endurance: f64,
    /// Device-to-device log-normal spread of the endurance.
    pub endurance_dtod: f32,
    /// Mean drift exponent ν in `G(t) = G(t_p)·((t − t_p)/t₀)^−ν`.
    pub drift_nu: f32,
    /// Device-to-device standard deviation of ν.
    pub drift_nu_dtod: f32,
    /// Drift reference time t₀ (s).
    pub drift_t0: f64,
    /// One-sided pairs: when either device passes this normalised
    /// conductance, both are reset and the weight is re-programmed (0 = off).
    pub refresh_threshold: f32,
    /// Write pulse width (ns; 0 = not known), for the cost model.
    pub pulse_width_ns: f64,
    /// Energy per write pulse (pJ; 0 = not known), for the cost model.
    pub pulse_energy_pj: f64,
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

impl DeviceModel {
    /// Loads a model by shipped name or by path to a TOML file, applies the
    /// per-run overrides (`device.FIELD = VALUE`) and validates every field.
    ///
    /// Errors name the model file, the field and the expected type or range;
    /// an unknown name lists the shipped models.
    pub fn load(name_or_path: &str, overrides: &toml::Table) -> Result<Self> {
        let (origin, text) = Self::source_text(name_or_path)?;
        Self::from_toml_str(&text, &origin, overrides)
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

    /// Parses model text (`origin` names the file in errors) with overrides.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &toml::Table) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).with_context(|| format!("invalid device model file {origin}"))?;
        for (field, value) in overrides {
            apply_override(&mut table, field, value, origin)?;
        }
        let model: DeviceModel =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("device model file {origin}: {}", e.message().trim())
                })?;
        model.validate(origin)?;
        Ok(model)
    }

    /// Range checks no type expresses; errors name file, field and range.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |field: &str, value: f64, range: &str| -> Result<()> {
            bail!("device model {origin}: {field} = {value} is out of range: {range}")
        };
        let nonneg: [(&str, f64); 13] = [
            ("g_min_us", self.g_min_us),
            ("bound_dtod", self.bound_dtod as f64),
            ("dw_min", self.dw_min as f64),
            ("dw_min_dtod", self.dw_min_dtod as f64),
            ("up_down_dtod", self.up_down_dtod as f64),
            ("dw_min_std", self.dw_min_std as f64),
            ("write_noise", self.write_noise as f64),
            ("read_noise", self.read_noise as f64),
            ("endurance", self.endurance),
            ("endurance_dtod", self.endurance_dtod as f64),
            ("drift_nu", self.drift_nu as f64),
            ("drift_nu_dtod", self.drift_nu_dtod as f64),
            ("pulse_energy_pj", self.pulse_energy_pj),
        ];
        for (field, v) in nonneg {
            if !(v.is_finite() && v >= 0.0) {
                err(field, v, "must be finite and ≥ 0")?;
            }
        }
        if !(self.pulse_width_ns.is_finite() && self.pulse_width_ns >= 0.0) {
            err("pulse_width_ns", self.pulse_width_ns, "must be ≥ 0")?;
        }
        if !(self.g_max_us.is_finite() && self.g_max_us > self.g_min_us) {
            err("g_max_us", self.g_max_us, "must be finite and > g_min_us")?;
        }
        if self.bounded && !(0.0..=1.0).contains(&self.g_center) {
            err(
                "g_center",
                self.g_center as f64,
                "[0, 1] for a bounded device",
            )?;
        }
        if !self.g_center.is_finite() {
            err("g_center", self.g_center as f64, "must be finite")?;
        }
        if self.bound_dtod >= 0.5 {
            err("bound_dtod", self.bound_dtod as f64, "[0, 0.5)")?;
        }
        if self.dw_min >= 1.0 {
            err(
                "dw_min",
                self.dw_min as f64,
                "[0, 1) of the conductance range",
            )?;
        }
        if self.response != StepResponse::Ideal && self.dw_min <= 0.0 && self.levels < 2 {
            err(
                "dw_min",
                self.dw_min as f64,
                "must be > 0 for a non-ideal response (or set levels ≥ 2)",
            )?;
        }
        if !(self.up_down > -1.0 && self.up_down < 1.0) {
            err("up_down", self.up_down as f64, "(−1, 1)")?;
        }
        if self.response == StepResponse::SoftBounds
            && !(self.g_center > 0.0 && self.g_center < 1.0)
        {
            err("g_center", self.g_center as f64, "(0, 1) for soft_bounds")?;
        }
        for (field, v) in [
            ("slope_up", self.slope_up),
            ("slope_down", self.slope_down),
            ("exp_a_up", self.exp_a_up),
            ("exp_a_down", self.exp_a_down),
            ("exp_gamma_up", self.exp_gamma_up),
            ("exp_gamma_down", self.exp_gamma_down),
            ("exp_z_slope", self.exp_z_slope),
            ("exp_z_offset", self.exp_z_offset),
        ] {
            if !v.is_finite() {
                err(field, v as f64, "must be finite")?;
            }
        }
        if self.levels == 1 {
            err("levels", 1.0, "0 (analog) or ≥ 2")?;
        }
        if self.levels >= 2 && !self.bounded {
            bail!(
                "device model {origin}: levels = {} needs bounded = true",
                self.levels
            );
        }
        for (field, v) in [
            ("stuck_at_min", self.stuck_at_min),
            ("stuck_at_max", self.stuck_at_max),
            ("refresh_threshold", self.refresh_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(field, v as f64, "[0, 1]")?;
            }
        }
        if self.stuck_at_min + self.stuck_at_max > 1.0 {
            err(
                "stuck_at_min + stuck_at_max",
                (self.stuck_at_min + self.stuck_at_max) as f64,
                "≤ 1",
            )?;
        }
        if !(self.drift_t0.is_finite() && self.drift_t0 > 0.0) {
            err("drift_t0", self.drift_t0, "must be > 0 s")?;
        }
        if self.one_sided && !self.bounded {
            bail!("device model {origin}: one_sided = true needs bounded = true");
        }
        Ok(())
    }

    /// Nominal step per pulse `Δg_min` actually used: the level spacing when
    /// the device is quantised to `levels ≥ 2`, else `dw_min`.
    pub fn nominal_step(&self) -> f32 {
        if self.levels >= 2 {
            1.0 / (self.levels - 1) as f32
        } else {
            self.dw_min
        }
    }

    /// `G_min / (G_max − G_min)`: the offset that turns a normalised
    /// conductance into absolute conductance over the range, `G/ΔG = g + o`.
    pub fn conductance_offset(&self) -> f32 {
        (self.g_min_us / (self.g_max_us - self.g_min_us)) as f32
    }

    /// Nominal number of states: `levels` for a quantised device, else
    /// `1/Δg_min` (the preset convention), ∞ for a continuous device.
    pub fn states(&self) -> f64 {
        if self.levels >= 2 {
            return self.levels as f64;
        }
        let s = self.nominal_step();
        if s > 0.0 {
            1.0 / s as f64
        } else {
            f64::INFINITY
        }
    }

    /// The per-pulse response factors `(f_up(x), f_down(x))` at normalised
    /// position `x` (see the module docs for the formulas).
    #[inline]
    pub fn response_factors(&self, x: f32) -> (f32, f32) {
        match self.response {
            StepResponse::Ideal | StepResponse::Constant => (1.0, 1.0),
            StepResponse::Linear => (
                (1.0 - self.slope_up * (x - self.g_center)).max(0.0),
                (1.0 + self.slope_down * (x - self.g_center)).max(0.0),
            ),
            StepResponse::SoftBounds => (
                ((1.0 - x) / (1.0 - self.g_center)).max(0.0),
                (x / self.g_center).max(0.0),
            ),
            StepResponse::Exponential => {
                let z = self.exp_z_slope * x + self.exp_z_offset;
                (
                    (1.0 - self.exp_a_up * (self.exp_gamma_up * z).exp()).max(0.0),
                    (1.0 - self.exp_a_down * (-self.exp_gamma_down * z).exp()).max(0.0),
                )
            }
        }
    }

    /// The response factor of one direction (`f_up(x)` if `up`, else
    /// `f_down(x)`), without evaluating the other.
    #[inline]
    pub fn response_factor(&self, x: f32, up: bool) -> f32 {
        self.response_factor_as(self.response, x, up)
    }

    /// [`DeviceModel::response_factor`] of the step response `response`
    /// with this model's coefficients: with a constant `response` the
    /// compiler drops the dispatch, which the pulse loop uses to compile
    /// itself once per response.
    #[inline(always)]
    pub fn response_factor_as(&self, response: StepResponse, x: f32, up: bool) -> f32 {
        match response {
            StepResponse::Ideal | StepResponse::Constant => 1.0,
            StepResponse::Linear => if up {
                1.0 - self.slope_up * (x - self.g_center)
            } else {
                1.0 + self.slope_down * (x - self.g_center)
            }
            .max(0.0),
            StepResponse::SoftBounds => if up {
                (1.0 - x) / (1.0 - self.g_center)
            } else {
                x / self.g_center
            }
            .max(0.0),
            StepResponse::Exponential => {
                let z = self.exp_z_slope * x + self.exp_z_offset;
                if up {
                    1.0 - self.exp_a_up * (self.exp_gamma_up * z).exp()
                } else {
                    1.0 - self.exp_a_down * (-self.exp_gamma_down * z).exp()
                }
                .max(0.0)
            }
        }
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

/// Sets `field = value` in a model table, checking that the field exists
/// and the value has the field's TOML type (an integer is accepted for a
/// float field).
fn apply_override(
    table: &mut toml::Table,
    field: &str,
    value: &toml::Value,
    origin: &str,
) -> Result<()> {
    let Some(current) = table.get(field) else {
        let mut known: Vec<&String> = table.keys().collect();
        known.sort();
        bail!(
            "device.{field}: unknown device parameter for model file {origin}; known parameters: {}",
            known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    };
    if matches!(field, "name" | "description" | "source") {
        bail!("device.{field}: metadata of model file {origin} cannot be overridden");
    }
    let converted = match (current, value) {
        (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(*i as f64),
        (toml::Value::Float(_), toml::Value::Float(_))
        | (toml::Value::Integer(_), toml::Value::Integer(_))
        | (toml::Value::Boolean(_), toml::Value::Boolean(_))
        | (toml::Value::String(_), toml::Value::String(_)) => value.clone(),
        _ => bail!(
            "device.{field} = {value}: expected a {} (as in model file {origin}, where {field} = {current})",
            current.type_str()
        ),
    };
    table.insert(field.to_string(), converted);
    Ok(())
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
        assert_eq!(DeviceModel::load("reram_es", &o).unwrap().read_noise, 0.0);

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
    fn exp_step_asymmetry_matches_the_published_figure() {
        // aihwkit's ReRamESPreset docs quote a maximal ± step asymmetry of
        // −670 %; evaluate (up − down)/up at the top of the range.
        let m = DeviceModel::load("reram_es", &toml::Table::new()).unwrap();
        let (fu, fd) = m.response_factors(1.0);
        let up = fu * (1.0 + m.up_down);
        let down = fd * (1.0 - m.up_down);
        let asym = (up - down) / up;
        assert!((asym + 6.7).abs() < 0.15, "asymmetry {asym}");
    }
}
