//! Technology descriptions (`device_models/technology/*.toml`): the circuit
//! and device constants of the feasibility cost model, each written as
//! `name = { value = 0.51, unit = "V", source = "…" }` so that every number
//! in a feasibility report can be traced to a paper, a manual or an
//! explicit assumption.
//!
//! Units are checked per field (a read voltage in `ns` is an error naming
//! the field) and converted to SI once, into [`TechnologyParams`].

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One constant with its unit and where it comes from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    /// The number, in `unit`.
    pub value: f64,
    /// Unit (one of the `UNITS` table in this module).
    pub unit: String,
    /// Paper, manual or `ASSUMPTION: …`.
    pub source: String,
}

/// Physical dimension of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    Voltage,
    Time,
    Conductance,
    Energy,
    Length,
    Area,
    /// Area in units of F² (feature size squared).
    AreaF2,
    /// Count or ratio.
    Number,
    /// Energy per conversion step (Walden figure of merit).
    EnergyPerStep,
}

/// Accepted units: (name, dimension, factor to SI).
const UNITS: &[(&str, Dim, f64)] = &[
    ("V", Dim::Voltage, 1.0),
    ("mV", Dim::Voltage, 1e-3),
    ("s", Dim::Time, 1.0),
    ("ms", Dim::Time, 1e-3),
    ("us", Dim::Time, 1e-6),
    ("µs", Dim::Time, 1e-6),
    ("ns", Dim::Time, 1e-9),
    ("ps", Dim::Time, 1e-12),
    ("S", Dim::Conductance, 1.0),
    ("mS", Dim::Conductance, 1e-3),
    ("uS", Dim::Conductance, 1e-6),
    ("µS", Dim::Conductance, 1e-6),
    ("nS", Dim::Conductance, 1e-9),
    ("J", Dim::Energy, 1.0),
    ("nJ", Dim::Energy, 1e-9),
    ("pJ", Dim::Energy, 1e-12),
    ("fJ", Dim::Energy, 1e-15),
    ("m", Dim::Length, 1.0),
    ("um", Dim::Length, 1e-6),
    ("µm", Dim::Length, 1e-6),
    ("nm", Dim::Length, 1e-9),
    ("m^2", Dim::Area, 1.0),
    ("mm^2", Dim::Area, 1e-6),
    ("um^2", Dim::Area, 1e-12),
    ("µm^2", Dim::Area, 1e-12),
    ("F^2", Dim::AreaF2, 1.0),
    ("1", Dim::Number, 1.0),
    ("bit", Dim::Number, 1.0),
    ("pulses", Dim::Number, 1.0),
    ("fJ/step", Dim::EnergyPerStep, 1e-15),
    ("J/step", Dim::EnergyPerStep, 1.0),
];

/// (field, dimension, required, meaning) of every technology constant.
const FIELDS: &[(&str, Dim, bool, &str)] = &[
    ("feature_size", Dim::Length, true, "technology node F"),
    ("cell_area", Dim::AreaF2, true, "area of one device cell"),
    (
        "devices_per_weight",
        Dim::Number,
        true,
        "2 for a differential pair G⁺ − G⁻",
    ),
    (
        "array_rows",
        Dim::Number,
        true,
        "rows of one physical crossbar tile",
    ),
    (
        "array_cols",
        Dim::Number,
        true,
        "columns of one physical crossbar tile",
    ),
    (
        "g_min",
        Dim::Conductance,
        true,
        "lowest programmable conductance",
    ),
    (
        "g_max",
        Dim::Conductance,
        true,
        "highest programmable conductance",
    ),
    ("read_voltage", Dim::Voltage, true, "full-scale read drive"),
    (
        "read_pulse_width",
        Dim::Time,
        true,
        "duration of one crossbar read",
    ),
    ("write_voltage", Dim::Voltage, true, "write pulse amplitude"),
    ("write_pulse_width", Dim::Time, true, "write pulse duration"),
    (
        "write_energy_per_pulse",
        Dim::Energy,
        false,
        "overrides V_w²·G_max·t_w",
    ),
    (
        "write_slots_per_update",
        Dim::Number,
        true,
        "pulse time slots of one array-parallel update",
    ),
    (
        "endurance",
        Dim::Number,
        true,
        "pulses a device takes before it stops switching",
    ),
    ("adc_bits", Dim::Number, true, "ADC resolution N"),
    (
        "adc_walden_fom",
        Dim::EnergyPerStep,
        true,
        "E_conv = FOM·2^N",
    ),
    (
        "adc_conversion_time",
        Dim::Time,
        true,
        "time of one conversion",
    ),
    (
        "columns_per_adc",
        Dim::Number,
        true,
        "lines sharing one ADC (periphery sharing)",
    ),
    ("adc_area", Dim::Area, true, "area of one ADC"),
    ("dac_bits", Dim::Number, true, "DAC resolution"),
    (
        "dac_energy_per_conversion",
        Dim::Energy,
        true,
        "energy of one DAC conversion (row activation)",
    ),
    ("tau", Dim::Time, true, "neuron integration time constant τ"),
    (
        "neuron_energy_per_tau",
        Dim::Energy,
        true,
        "energy of one neuron compartment per τ of integration",
    ),
    (
        "neuron_area",
        Dim::Area,
        true,
        "area of one dyadic neuron (two compartments)",
    ),
    (
        "digital_energy_per_mac",
        Dim::Energy,
        true,
        "digital baseline energy per multiply-accumulate",
    ),
];

/// A technology description as read from TOML.
#[derive(Clone, Debug, PartialEq)]
pub struct Technology {
    /// Short name (file stem unless given).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Every constant with unit and source, by field name.
    pub quantities: BTreeMap<String, Quantity>,
    /// The constants in SI units.
    pub params: TechnologyParams,
}

/// The constants of a [`Technology`] in SI units (V, s, S, J, m, m²).
#[derive(Clone, Debug, PartialEq)]
pub struct TechnologyParams {
    /// Feature size F (m).
    pub feature_size_m: f64,
    /// Cell area in F².
    pub cell_area_f2: f64,
    /// Devices per weight (2 = differential pair).
    pub devices_per_weight: f64,
    /// Rows of a tile.
    pub array_rows: f64,
    /// Columns of a tile.
    pub array_cols: f64,
    /// G_min (S).
    pub g_min_s: f64,
    /// G_max (S).
    pub g_max_s: f64,
    /// Read voltage V_r (V).
    pub read_voltage_v: f64,
    /// Read pulse width t_r (s).
    pub read_pulse_s: f64,
    /// Write voltage V_w (V).
    pub write_voltage_v: f64,
    /// Write pulse width t_w (s).
    pub write_pulse_s: f64,
    /// Energy of one write pulse (J): given, else V_w²·G_max·t_w.
    pub write_energy_per_pulse_j: f64,
    /// Pulse slots per array update.
    pub write_slots_per_update: f64,
    /// Endurance (pulses).
    pub endurance_pulses: f64,
    /// ADC bits N.
    pub adc_bits: f64,
    /// ADC energy per conversion, FOM_W·2^N (J).
    pub adc_energy_per_conversion_j: f64,
    /// ADC conversion time (s).
    pub adc_conversion_s: f64,
    /// Lines per ADC.
    pub columns_per_adc: f64,
    /// ADC area (m²).
    pub adc_area_m2: f64,
    /// DAC bits.
    pub dac_bits: f64,
    /// DAC energy per conversion (J).
    pub dac_energy_per_conversion_j: f64,
    /// τ (s).
    pub tau_s: f64,
    /// Neuron compartment energy per τ (J).
    pub neuron_energy_per_tau_j: f64,
    /// Neuron area (m²).
    pub neuron_area_m2: f64,
    /// Digital baseline energy per MAC (J).
    pub digital_energy_per_mac_j: f64,
}

/// The shipped technologies (`device_models/technology/*.toml`), by name.
pub const BUILTIN_TECHNOLOGIES: [(&str, &str); 2] = [
    (
        "reram_taox_32nm",
        include_str!("../../device_models/technology/reram_taox_32nm.toml"),
    ),
    (
        "pcm_gst_32nm",
        include_str!("../../device_models/technology/pcm_gst_32nm.toml"),
    ),
];

impl Technology {
    /// A shipped technology by name (`reram_taox_32nm`) or a technology
    /// file by path, as `--technology` and the sweep's `[report]
    /// technology` take it.
    pub fn load(name_or_path: &Path) -> Result<Self> {
        if name_or_path.exists() {
            return Self::from_file(name_or_path);
        }
        let name = name_or_path.to_string_lossy();
        let name = name.strip_suffix(".toml").unwrap_or(&name);
        match BUILTIN_TECHNOLOGIES.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => {
                Self::from_toml_str(text, n).with_context(|| format!("shipped technology {n}"))
            }
            None => anyhow::bail!(
                "technology {}: neither a file nor a shipped technology ({})",
                name_or_path.display(),
                BUILTIN_TECHNOLOGIES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Reads a technology file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read technology file {}", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_toml_str(&text, &stem)
            .with_context(|| format!("invalid technology file {}", path.display()))
    }

    /// Parses technology TOML; `default_name` is used when `name` is absent.
    pub fn from_toml_str(text: &str, default_name: &str) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut text_field = |key: &str| -> Result<Option<String>> {
            match table.remove(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(v) => bail!("{key} must be a string, found {}", v.type_str()),
            }
        };
        let name = text_field("name")?;
        let description = text_field("description")?;
        let mut quantities = BTreeMap::new();
        for (key, value) in table {
            if !FIELDS.iter().any(|(f, ..)| *f == key) {
                let known: Vec<&str> = FIELDS.iter().map(|(f, ..)| *f).collect();
                bail!("unknown field '{key}'; known fields: {}", known.join(", "));
            }
            let q: Quantity = value.try_into().map_err(|e| {
                anyhow::anyhow!(
                    "{key}: expected {{ value = …, unit = \"…\", source = \"…\" }}: {e}"
                )
            })?;
            quantities.insert(key, q);
        }
        let raw = (name, description, quantities);
        let si = |field: &str| -> Result<Option<f64>> {
            let (_, dim, required, meaning) = FIELDS
                .iter()
                .find(|(f, ..)| *f == field)
                .with_context(|| format!("internal: no field {field}"))?;
            let Some(q) = raw.2.get(field) else {
                if *required {
                    bail!("missing field '{field}' ({meaning})");
                }
                return Ok(None);
            };
            let Some((_, _, factor)) = UNITS.iter().find(|(u, d, _)| *u == q.unit && d == dim)
            else {
                let allowed: Vec<&str> = UNITS
                    .iter()
                    .filter(|(_, d, _)| d == dim)
                    .map(|(u, ..)| *u)
                    .collect();
                bail!(
                    "{field}: unit '{}' is not allowed; use one of {}",
                    q.unit,
                    allowed.join(", ")
                );
            };
            if !q.value.is_finite() || q.value < 0.0 {
                bail!("{field} = {} {}: must be finite and ≥ 0", q.value, q.unit);
            }
            if q.source.trim().is_empty() {
                bail!(
                    "{field}: the source is empty; cite a paper/manual or write 'ASSUMPTION: why'"
                );
            }
            Ok(Some(q.value * factor))
        };
        let req = |field: &str| -> Result<f64> {
            si(field)?.with_context(|| format!("missing field '{field}'"))
        };
        let positive = |field: &str| -> Result<f64> {
            let v = req(field)?;
            if v <= 0.0 {
                bail!("{field} must be > 0");
            }
            Ok(v)
        };
        let write_voltage_v = req("write_voltage")?;
        let write_pulse_s = req("write_pulse_width")?;
        let g_max_s = positive("g_max")?;
        let g_min_s = req("g_min")?;
        if g_min_s > g_max_s {
            bail!("g_min ({g_min_s} S) exceeds g_max ({g_max_s} S)");
        }
        let adc_bits = req("adc_bits")?;
        let params = TechnologyParams {
            feature_size_m: positive("feature_size")?,
            cell_area_f2: positive("cell_area")?,
            devices_per_weight: positive("devices_per_weight")?,
            array_rows: positive("array_rows")?,
            array_cols: positive("array_cols")?,
            g_min_s,
            g_max_s,
            read_voltage_v: req("read_voltage")?,
            read_pulse_s: req("read_pulse_width")?,
            write_voltage_v,
            write_pulse_s,
            // E = V²·G·t at the highest conductance: the convention of the
            // NeuroSim-derived per-pulse energies in the reference table.
            write_energy_per_pulse_j: si("write_energy_per_pulse")?
                .unwrap_or(write_voltage_v * write_voltage_v * g_max_s * write_pulse_s),
            write_slots_per_update: req("write_slots_per_update")?,
            endurance_pulses: positive("endurance")?,
            adc_bits,
            // Walden: FOM_W = P/(2^ENOB·f_s) ⇒ E_conv = FOM_W·2^N.
            adc_energy_per_conversion_j: req("adc_walden_fom")? * adc_bits.exp2(),
            adc_conversion_s: req("adc_conversion_time")?,
            columns_per_adc: positive("columns_per_adc")?,
            adc_area_m2: req("adc_area")?,
            dac_bits: req("dac_bits")?,
            dac_energy_per_conversion_j: req("dac_energy_per_conversion")?,
            tau_s: positive("tau")?,
            neuron_energy_per_tau_j: req("neuron_energy_per_tau")?,
            neuron_area_m2: req("neuron_area")?,
            digital_energy_per_mac_j: req("digital_energy_per_mac")?,
        };
        Ok(Self {
            name: raw.0.unwrap_or_else(|| default_name.to_string()),
            description: raw.1.unwrap_or_default(),
            quantities: raw.2,
            params,
        })
    }

    /// Field meanings, for the report's constants table.
    pub fn meaning(field: &str) -> &'static str {
        FIELDS
            .iter()
            .find(|(f, ..)| *f == field)
            .map_or("", |(.., m)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/device_models/technology");

    #[test]
    fn shipped_technologies_parse_and_every_constant_has_a_source() {
        let mut n = 0;
        for entry in std::fs::read_dir(DIR).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let t = Technology::from_file(&path).unwrap();
                for (k, q) in &t.quantities {
                    assert!(
                        q.source.len() > 10,
                        "{}: {k} has no real source",
                        path.display()
                    );
                }
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn write_energy_defaults_to_v2_g_t() {
        // TaOx/HfOx (Wu, VLSI 2018): 1.6 V, 50 ns, R_on 100 kΩ → 1.28 pJ,
        // the reference table's "1.3 pJ".
        let t = Technology::from_file(&Path::new(DIR).join("reram_taox_32nm.toml")).unwrap();
        assert!((t.params.write_energy_per_pulse_j - 1.28e-12).abs() < 1e-15);
    }

    #[test]
    fn wrong_unit_and_unknown_field_are_named() {
        let path = Path::new(DIR).join("reram_taox_32nm.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let bad = text.replacen("unit = \"V\"", "unit = \"ns\"", 1);
        let e = format!("{:#}", Technology::from_toml_str(&bad, "x").unwrap_err());
        assert!(e.contains("unit 'ns' is not allowed"), "{e}");
        let bad =
            format!("{text}\nread_votage = {{ value = 1.0, unit = \"V\", source = \"x\" }}\n");
        let e = format!("{:#}", Technology::from_toml_str(&bad, "x").unwrap_err());
        assert!(e.contains("read_votage"), "{e}");
    }
}
