//! The on-disk form of a device model: one flat TOML table per file
//! (`device_models/README.md` documents every key), mapped into the typed
//! [`DeviceModel`] by [`TryFrom`].
//!
//! Every shared key is required; the keys of a response (`slope_*` for
//! `linear`, `exp_*` for `exponential`) are required for that response and
//! an error for any other, so that a parameter that would be silently
//! ignored cannot be written (the error names the file, the key and the
//! response). Per-run overrides (`--set device.KEY=VALUE`) are merged into
//! the table first, with the same checks.

use super::{
    Anchor, Bounds, Conductance, DeviceModel, Drift, Endurance, Faults, InferenceNoise, Noise,
    Pairing, PiecewiseTable, ProgramNoise, PulseCost, ReadNoiseGrowth, Response, Step,
    StepConvention,
};
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

/// The `response` key of a model file: the name of a [`Response`] variant.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResponseKind {
    /// [`Response::Ideal`].
    Ideal,
    /// [`Response::Constant`].
    Constant,
    /// [`Response::Linear`].
    Linear,
    /// [`Response::SoftBounds`].
    SoftBounds,
    /// [`Response::Exponential`].
    Exponential,
    /// [`Response::Piecewise`].
    Piecewise,
}

impl ResponseKind {
    /// The name used in model files.
    pub const fn name(self) -> &'static str {
        match self {
            ResponseKind::Ideal => "ideal",
            ResponseKind::Constant => "constant",
            ResponseKind::Linear => "linear",
            ResponseKind::SoftBounds => "soft_bounds",
            ResponseKind::Exponential => "exponential",
            ResponseKind::Piecewise => "piecewise",
        }
    }
}

/// The keys that belong to one response only, with that response.
pub const RESPONSE_KEYS: &[(&str, ResponseKind)] = &[
    ("slope_up", ResponseKind::Linear),
    ("slope_down", ResponseKind::Linear),
    ("exp_a_up", ResponseKind::Exponential),
    ("exp_a_down", ResponseKind::Exponential),
    ("exp_gamma_up", ResponseKind::Exponential),
    ("exp_gamma_down", ResponseKind::Exponential),
    ("exp_z_slope", ResponseKind::Exponential),
    ("exp_z_offset", ResponseKind::Exponential),
];

/// The optional keys of the inference noise model (absent = none): the
/// programming-error polynomial (an array) and the 1/f read-noise growth
/// (numbers), which `--set device.KEY=…` may add to a file that lacks them.
pub const INFERENCE_KEYS: &[&str] = &[
    "program_noise_us",
    "read_noise_1f_q",
    "read_noise_1f_exponent",
    "read_noise_1f_max",
    "read_noise_1f_t_read",
];

/// The inference noise of a file's optional keys: the four `read_noise_1f_*`
/// keys go together (a missing one is named).
fn inference_noise(r: &RawDeviceModel) -> Result<InferenceNoise> {
    let program = r.program_noise_us.as_ref().map(|c| ProgramNoise {
        coefficients_us: c.clone(),
    });
    let parts = [
        ("read_noise_1f_q", r.read_noise_1f_q.map(f64::from)),
        (
            "read_noise_1f_exponent",
            r.read_noise_1f_exponent.map(f64::from),
        ),
        ("read_noise_1f_max", r.read_noise_1f_max.map(f64::from)),
        ("read_noise_1f_t_read", r.read_noise_1f_t_read),
    ];
    let given: Vec<&str> = parts
        .iter()
        .filter(|p| p.1.is_some())
        .map(|p| p.0)
        .collect();
    let read_growth = match (
        r.read_noise_1f_q,
        r.read_noise_1f_exponent,
        r.read_noise_1f_max,
        r.read_noise_1f_t_read,
    ) {
        (Some(q), Some(exponent), Some(max), Some(t_read_s)) => Some(ReadNoiseGrowth {
            q,
            exponent,
            max,
            t_read_s,
        }),
        (None, None, None, None) => None,
        _ => {
            let missing: Vec<&str> = parts
                .iter()
                .filter(|p| p.1.is_none())
                .map(|p| p.0)
                .collect();
            bail!(
                "{} given without {}: the 1/f read-noise growth needs all four keys read_noise_1f_q, read_noise_1f_exponent, read_noise_1f_max, read_noise_1f_t_read (or none of them)",
                given.join(", "),
                missing.join(", ")
            )
        }
    };
    Ok(InferenceNoise {
        program,
        read_growth,
    })
}

/// The table keys of `response = "piecewise"` (arrays of factors).
pub const PIECEWISE_KEYS: [&str; 2] = ["piecewise_up", "piecewise_down"];

/// The `[recommended]` table of a model file: crossbar settings that the
/// model needs to learn at `dyadsim train --device NAME` (say a Tiki-Taka
/// algorithm for a device whose plain pulsed SGD diverges), with how they
/// were found. A run applies each setting unless its configuration file, a
/// flag or `--set` gives that field, and records where every one came from
/// (`sources` in the run's configuration).
///
/// ```toml
/// [recommended]
/// source = "measured: DP⊤ and BP, 784-512-512-10, 10,000 MNIST images"
/// crossbar = { algorithm = "ttv2" }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recommended {
    /// How the settings were found (a measurement, a paper's preset).
    pub source: String,
    /// Fields of the `[crossbar]` section (nested tables for its
    /// subsections, e.g. `transfer = { fast_lr = 0.1 }`).
    pub crossbar: toml::Table,
}

impl Recommended {
    /// The settings as `(crossbar.PATH, value)`, nested tables flattened
    /// (`crossbar.transfer.fast_lr`), sorted by path.
    pub fn settings(&self) -> Vec<(String, toml::Value)> {
        fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
            for (key, value) in table {
                let path = format!("{prefix}.{key}");
                match value {
                    toml::Value::Table(t) => walk(&path, t, out),
                    v => out.push((path, v.clone())),
                }
            }
        }
        let mut out = Vec::new();
        walk("crossbar", &self.crossbar, &mut out);
        out
    }
}

/// A model file as written: the flat keys (see `device_models/README.md`
/// for units and meaning; [`DeviceModel`]'s fields document each key too).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawDeviceModel {
    pub name: String,
    pub description: String,
    pub source: String,
    pub response: ResponseKind,
    pub one_sided: bool,
    pub g_min_us: f64,
    pub g_max_us: f64,
    pub bounded: bool,
    pub g_center: f32,
    pub anchor: Anchor,
    pub bound_dtod_lo: f32,
    pub bound_dtod_hi: f32,
    pub bound_dtod_relative: bool,
    pub dw_min: f32,
    pub dw_min_dtod: f32,
    pub dtod_lognormal: bool,
    pub step_convention: StepConvention,
    pub up_down: f32,
    pub up_down_dtod: f32,
    pub dw_min_std: f32,
    pub c2c_multiplicative: bool,
    pub c2c_add: f32,
    pub c2c_slope: f32,
    pub write_noise: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope_up: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope_down: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_a_up: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_a_down: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_gamma_up: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_gamma_down: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_z_slope: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_z_offset: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piecewise_up: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piecewise_down: Option<Vec<f32>>,
    pub levels: u32,
    pub read_noise: f32,
    pub stuck_at_min: f32,
    pub stuck_at_max: f32,
    pub endurance: f64,
    pub endurance_dtod: f32,
    pub drift_nu: f32,
    pub drift_nu_dtod: f32,
    pub drift_t0: f64,
    pub refresh_threshold: f32,
    pub pulse_width_ns: f64,
    pub pulse_energy_pj: f64,
    /// Programming-error polynomial (µS) of the target conductance;
    /// optional, absent = no programming error ([`super::ProgramNoise`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_noise_us: Option<Vec<f64>>,
    /// Accumulated 1/f read noise after programming ([`super::ReadNoiseGrowth`]);
    /// the four keys are optional and go together (absent = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_noise_1f_q: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_noise_1f_exponent: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_noise_1f_max: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_noise_1f_t_read: Option<f64>,
    /// `[recommended]`: crossbar settings (`crossbar.KEY`) the model needs
    /// to learn, applied unless the run sets them; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<Recommended>,
    /// `[fit]`: how `dyadsim devices fit` made the model (its trace, the
    /// residual and every parameter's standard error); a record, not a
    /// setting (the physics reads the keys above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitRecord>,
}

/// The `[fit]` table of a fitted model file: where the parameters came
/// from and how well they are known.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FitRecord {
    /// The trace file fitted.
    pub trace: String,
    /// The response form fitted.
    pub response: String,
    /// Devices fitted (moving).
    pub devices: usize,
    /// Devices that never moved (counted as stuck).
    pub stuck_devices: usize,
    /// Steps in the fit (clipped steps left out).
    pub steps: usize,
    /// Bootstrap replicates behind the standard errors.
    pub bootstrap: usize,
    /// Root-mean-square residual of the steps (fraction of the range).
    pub residual_rms: f64,
    /// The fitted noise model's root-mean-square step noise (fraction of
    /// the range); close to `residual_rms` when the mean response fits.
    pub noise_rms: f64,
    /// Standard error of each fitted key (same units as the key).
    pub std_errors: std::collections::BTreeMap<String, f64>,
}

impl RawDeviceModel {
    /// Parses model text (`origin` names the file in errors) and merges the
    /// per-run `overrides` into it, each checked for its key and type.
    pub fn parse(text: &str, origin: &str, overrides: &toml::Table) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow!("invalid device model file {origin}: {e}"))?;
        for (field, value) in overrides {
            apply_override(&mut table, field, value, origin)?;
        }
        check_layout(&table, origin)?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let message = e.message().trim();
                let hint = NEW_KEYS
                    .iter()
                    .find(|(key, _)| message == format!("missing field `{key}`"))
                    .map(|(_, hint)| format!(" ({hint})"))
                    .unwrap_or_default();
                anyhow!("device model file {origin}: {message}{hint}")
            })
    }

    /// The value of a response key (`None` when the file lacks it).
    fn response_key(&self, key: &str) -> Option<f32> {
        match key {
            "slope_up" => self.slope_up,
            "slope_down" => self.slope_down,
            "exp_a_up" => self.exp_a_up,
            "exp_a_down" => self.exp_a_down,
            "exp_gamma_up" => self.exp_gamma_up,
            "exp_gamma_down" => self.exp_gamma_down,
            "exp_z_slope" => self.exp_z_slope,
            "exp_z_offset" => self.exp_z_offset,
            _ => None,
        }
    }
}

impl TryFrom<RawDeviceModel> for DeviceModel {
    type Error = anyhow::Error;

    /// The typed model of a file's keys: a key of another response is an
    /// error naming the key and both responses, a missing key of the
    /// chosen response names the key (range checks are
    /// [`DeviceModel::validate`]'s).
    fn try_from(r: RawDeviceModel) -> Result<Self> {
        let kind = r.response;
        for &(key, owner) in RESPONSE_KEYS {
            if owner != kind && r.response_key(key).is_some() {
                bail!(
                    "{key} is a parameter of response = \"{}\", not of response = \"{}\": remove the line (model files that list every response's keys, with 0 for the unused ones, load once those lines are deleted)",
                    owner.name(),
                    kind.name()
                );
            }
        }
        for (key, table) in [
            ("piecewise_up", &r.piecewise_up),
            ("piecewise_down", &r.piecewise_down),
        ] {
            if kind != ResponseKind::Piecewise && table.is_some() {
                bail!(
                    "{key} is a parameter of response = \"piecewise\", not of response = \"{}\": remove the line",
                    kind.name()
                );
            }
        }
        let need = |key: &str| {
            r.response_key(key).ok_or_else(|| {
                anyhow!(
                    "missing field `{key}` (required by response = \"{}\")",
                    kind.name()
                )
            })
        };
        let response = match kind {
            ResponseKind::Ideal => Response::Ideal,
            ResponseKind::Constant => Response::Constant,
            ResponseKind::Linear => Response::Linear {
                slope_up: need("slope_up")?,
                slope_down: need("slope_down")?,
            },
            ResponseKind::SoftBounds => Response::SoftBounds,
            ResponseKind::Exponential => Response::Exponential {
                a_up: need("exp_a_up")?,
                a_down: need("exp_a_down")?,
                gamma_up: need("exp_gamma_up")?,
                gamma_down: need("exp_gamma_down")?,
                z_slope: need("exp_z_slope")?,
                z_offset: need("exp_z_offset")?,
            },
            ResponseKind::Piecewise => {
                let table = |key: &str, v: &Option<Vec<f32>>| {
                    v.clone().ok_or_else(|| {
                        anyhow!("missing field `{key}` (required by response = \"piecewise\": an array of step factors at equidistant points of the range)")
                    })
                };
                let up = table("piecewise_up", &r.piecewise_up)?;
                let down = table("piecewise_down", &r.piecewise_down)?;
                Response::Piecewise(PiecewiseTable::new(&up, &down)?)
            }
        };
        let inference = inference_noise(&r)?;
        Ok(DeviceModel {
            name: r.name,
            description: r.description,
            source: r.source,
            response,
            conductance: Conductance {
                g_min_us: r.g_min_us,
                g_max_us: r.g_max_us,
            },
            bounds: Bounds {
                bounded: r.bounded,
                g_center: r.g_center,
                anchor: r.anchor,
                dtod_lo: r.bound_dtod_lo,
                dtod_hi: r.bound_dtod_hi,
                dtod_relative: r.bound_dtod_relative,
            },
            step: Step {
                dw_min: r.dw_min,
                dw_min_dtod: r.dw_min_dtod,
                dtod_lognormal: r.dtod_lognormal,
                convention: r.step_convention,
                up_down: r.up_down,
                up_down_dtod: r.up_down_dtod,
                levels: r.levels,
            },
            noise: Noise {
                c2c: r.dw_min_std,
                c2c_multiplicative: r.c2c_multiplicative,
                c2c_add: r.c2c_add,
                c2c_slope: r.c2c_slope,
                write: r.write_noise,
                read: r.read_noise,
            },
            faults: Faults {
                stuck_at_min: r.stuck_at_min,
                stuck_at_max: r.stuck_at_max,
            },
            endurance: Endurance {
                pulses: r.endurance,
                dtod: r.endurance_dtod,
            },
            drift: Drift {
                nu: r.drift_nu,
                nu_dtod: r.drift_nu_dtod,
                t0: r.drift_t0,
            },
            pairing: Pairing {
                one_sided: r.one_sided,
                refresh_threshold: r.refresh_threshold,
            },
            cost: PulseCost {
                pulse_width_ns: r.pulse_width_ns,
                pulse_energy_pj: r.pulse_energy_pj,
            },
            inference,
            recommended: r.recommended,
            fit: r.fit,
        })
    }
}

impl From<&DeviceModel> for RawDeviceModel {
    /// The flat keys of a typed model (the inverse of the [`TryFrom`]), for
    /// writing a model back as a file.
    fn from(m: &DeviceModel) -> Self {
        let (mut slope_up, mut slope_down) = (None, None);
        let (mut exp_a_up, mut exp_a_down, mut exp_gamma_up) = (None, None, None);
        let (mut exp_gamma_down, mut exp_z_slope, mut exp_z_offset) = (None, None, None);
        let (mut piecewise_up, mut piecewise_down) = (None, None);
        let response = match m.response {
            Response::Ideal => ResponseKind::Ideal,
            Response::Constant => ResponseKind::Constant,
            Response::Linear {
                slope_up: u,
                slope_down: d,
            } => {
                (slope_up, slope_down) = (Some(u), Some(d));
                ResponseKind::Linear
            }
            Response::SoftBounds => ResponseKind::SoftBounds,
            Response::Exponential {
                a_up,
                a_down,
                gamma_up,
                gamma_down,
                z_slope,
                z_offset,
            } => {
                (exp_a_up, exp_a_down, exp_gamma_up) = (Some(a_up), Some(a_down), Some(gamma_up));
                (exp_gamma_down, exp_z_slope, exp_z_offset) =
                    (Some(gamma_down), Some(z_slope), Some(z_offset));
                ResponseKind::Exponential
            }
            Response::Piecewise(table) => {
                piecewise_up = Some(table.up().to_vec());
                piecewise_down = Some(table.down().to_vec());
                ResponseKind::Piecewise
            }
        };
        RawDeviceModel {
            name: m.name.clone(),
            description: m.description.clone(),
            source: m.source.clone(),
            response,
            one_sided: m.pairing.one_sided,
            g_min_us: m.conductance.g_min_us,
            g_max_us: m.conductance.g_max_us,
            bounded: m.bounds.bounded,
            g_center: m.bounds.g_center,
            anchor: m.bounds.anchor,
            bound_dtod_lo: m.bounds.dtod_lo,
            bound_dtod_hi: m.bounds.dtod_hi,
            bound_dtod_relative: m.bounds.dtod_relative,
            dw_min: m.step.dw_min,
            dw_min_dtod: m.step.dw_min_dtod,
            dtod_lognormal: m.step.dtod_lognormal,
            step_convention: m.step.convention,
            up_down: m.step.up_down,
            up_down_dtod: m.step.up_down_dtod,
            dw_min_std: m.noise.c2c,
            c2c_multiplicative: m.noise.c2c_multiplicative,
            c2c_add: m.noise.c2c_add,
            c2c_slope: m.noise.c2c_slope,
            write_noise: m.noise.write,
            slope_up,
            slope_down,
            exp_a_up,
            exp_a_down,
            exp_gamma_up,
            exp_gamma_down,
            exp_z_slope,
            exp_z_offset,
            piecewise_up,
            piecewise_down,
            levels: m.step.levels,
            read_noise: m.noise.read,
            stuck_at_min: m.faults.stuck_at_min,
            stuck_at_max: m.faults.stuck_at_max,
            endurance: m.endurance.pulses,
            endurance_dtod: m.endurance.dtod,
            drift_nu: m.drift.nu,
            drift_nu_dtod: m.drift.nu_dtod,
            drift_t0: m.drift.t0,
            refresh_threshold: m.pairing.refresh_threshold,
            pulse_width_ns: m.cost.pulse_width_ns,
            pulse_energy_pj: m.cost.pulse_energy_pj,
            program_noise_us: m
                .inference
                .program
                .as_ref()
                .map(|p| p.coefficients_us.clone()),
            read_noise_1f_q: m.inference.read_growth.map(|g| g.q),
            read_noise_1f_exponent: m.inference.read_growth.map(|g| g.exponent),
            read_noise_1f_max: m.inference.read_growth.map(|g| g.max),
            read_noise_1f_t_read: m.inference.read_growth.map(|g| g.t_read_s),
            recommended: m.recommended.clone(),
            fit: m.fit.clone(),
        }
    }
}

/// The keys whose value is one of a few names, with those names (each
/// type's `name`, which is also its serde name).
const CHOICES: &[(&str, &[&str])] = &[
    (
        "response",
        &[
            ResponseKind::Ideal.name(),
            ResponseKind::Constant.name(),
            ResponseKind::Linear.name(),
            ResponseKind::SoftBounds.name(),
            ResponseKind::Exponential.name(),
            ResponseKind::Piecewise.name(),
        ],
    ),
    (
        "anchor",
        &[Anchor::Absolute.name(), Anchor::OwnBounds.name()],
    ),
    (
        "step_convention",
        &[
            StepConvention::Aihwkit.name(),
            StepConvention::Symmetric.name(),
        ],
    ),
];

/// What to write for a key that model files of the earlier layout lack.
const NEW_KEYS: &[(&str, &str)] = &[
    (
        "anchor",
        "\"absolute\" evaluates the state-dependent step at the state relative to g_center, as aihwkit 1.1 does; \"own_bounds\" at the position within each device's own bounds, the earlier behaviour; see device_models/README.md",
    ),
    (
        "step_convention",
        "\"aihwkit\" makes the up and down steps as aihwkit 1.1's code does; \"symmetric\" as dw_min·(1 ± up_down), the earlier behaviour; see device_models/README.md",
    ),
    (
        "bound_dtod_lo",
        "the device-to-device spread of the lower bound; with bound_dtod_relative = false the former bound_dtod",
    ),
    (
        "bound_dtod_hi",
        "the device-to-device spread of the upper bound; with bound_dtod_relative = false the former bound_dtod",
    ),
    (
        "bound_dtod_relative",
        "false: the spreads are standard deviations in units of the range; true: relative to each bound's distance from g_center, aihwkit's w_min_dtod/w_max_dtod",
    ),
    (
        "c2c_add",
        "additive term of the cycle-to-cycle standard deviation; 0 for none",
    ),
    (
        "c2c_slope",
        "state-dependent term of the cycle-to-cycle standard deviation; 0 for none",
    ),
];

/// Errors that name the key for what serde would report without it: a
/// value outside a key's choices, and the single bound spread of the
/// earlier layout.
fn check_layout(table: &toml::Table, origin: &str) -> Result<()> {
    if let Some(v) = table.get("bound_dtod") {
        bail!(
            "device model file {origin}: bound_dtod = {v} is no longer a key: write bound_dtod_lo = {v}, bound_dtod_hi = {v} and bound_dtod_relative = false for the same devices (each bound now has its own spread, absolute or relative; see device_models/README.md)"
        );
    }
    for (key, choices) in CHOICES {
        if let Some(value) = table.get(*key) {
            let ok = value.as_str().is_some_and(|v| choices.contains(&v));
            if !ok {
                let list: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                bail!(
                    "device model file {origin}: {key} = {value} is not allowed: expected one of {}",
                    list.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Sets `field = value` in a model table, checking that the field exists
/// (in the file, or as a key of some response, which the typed model then
/// accepts only for its own response) and the value has the field's TOML
/// type (an integer is accepted for a float field).
fn apply_override(
    table: &mut toml::Table,
    field: &str,
    value: &toml::Value,
    origin: &str,
) -> Result<()> {
    if matches!(
        field,
        "name" | "description" | "source" | "recommended" | "fit"
    ) {
        bail!("device.{field}: metadata of model file {origin} cannot be overridden (crossbar settings are set as crossbar.KEY)");
    }
    let Some(current) = table.get(field) else {
        if RESPONSE_KEYS.iter().any(|(k, _)| *k == field) {
            // A response key the file lacks (a change of `response`, say):
            // a number, checked against the response when typed.
            let number = match value {
                toml::Value::Integer(i) => toml::Value::Float(*i as f64),
                toml::Value::Float(_) => value.clone(),
                _ => bail!(
                    "device.{field} = {value}: expected a float (a response parameter, for model file {origin})"
                ),
            };
            table.insert(field.to_string(), number);
            return Ok(());
        }
        if PIECEWISE_KEYS.contains(&field) || field == "program_noise_us" {
            table.insert(field.to_string(), float_array(field, value, origin)?);
            return Ok(());
        }
        if INFERENCE_KEYS.contains(&field) {
            let number = match value {
                toml::Value::Integer(i) => toml::Value::Float(*i as f64),
                toml::Value::Float(_) => value.clone(),
                _ => bail!(
                    "device.{field} = {value}: expected a number (an inference noise parameter, for model file {origin})"
                ),
            };
            table.insert(field.to_string(), number);
            return Ok(());
        }
        let mut known: Vec<&String> = table.keys().collect();
        known.sort();
        bail!(
            "device.{field}: unknown device parameter for model file {origin}; known parameters: {}",
            known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    };
    if let toml::Value::Array(_) = current {
        table.insert(field.to_string(), float_array(field, value, origin)?);
        return Ok(());
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

/// An override of a table key (`piecewise_up`, say) as an array of floats,
/// integers converted; anything else is an error naming the key.
fn float_array(field: &str, value: &toml::Value, origin: &str) -> Result<toml::Value> {
    let toml::Value::Array(items) = value else {
        bail!("device.{field} = {value}: expected an array of numbers, e.g. [1.0, 0.8, 0.5] (for model file {origin})");
    };
    let floats = items
        .iter()
        .enumerate()
        .map(|(k, v)| match v {
            toml::Value::Integer(i) => Ok(toml::Value::Float(*i as f64)),
            toml::Value::Float(_) => Ok(v.clone()),
            _ => Err(anyhow!(
                "device.{field}[{k}] = {v}: expected a number (for model file {origin})"
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(toml::Value::Array(floats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_is_the_serde_name_of_its_key() {
        for (key, choices) in CHOICES {
            for choice in *choices {
                let v = toml::Value::String(choice.to_string());
                let ok = match *key {
                    "response" => v.try_into::<ResponseKind>().is_ok(),
                    "anchor" => v.try_into::<Anchor>().is_ok(),
                    "step_convention" => v.try_into::<StepConvention>().is_ok(),
                    _ => false,
                };
                assert!(ok, "{key} = {choice}");
            }
        }
    }
}
