//! The run configuration: one TOML file (every field defaulted), overridden
//! by CLI flags and `--set path.to.field=value`, checked once into a
//! [`ValidConfig`] (the linfa `ParamGuard` pattern) so that nothing deeper
//! re-validates α or β.

use crate::check::{check_positive, check_range};
use crate::circuit::{CircuitConfig, CircuitParams};
use crate::crossbar::CrossbarConfig;
pub use crate::data::{DataConfig, DatasetName};
use crate::digital::optimizer::{OptimizerConfig, OptimizerKind};
use crate::network::{Activation, Architecture, Loss};
pub use crate::rules::config::LearningConfig;
use crate::rules::config::LearningParams;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything a run needs. Serialises to the `config.toml` written beside results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seed for initialisation, shuffling and every hardware random stream.
    pub seed: u64,
    /// Dataset selection.
    pub data: DataConfig,
    /// Topology, activation, loss.
    pub network: NetworkConfig,
    /// Learning rule and its hyper-parameters.
    pub learning: LearningConfig,
    /// Optimiser of the digital substrate.
    pub optimizer: OptimizerConfig,
    /// Epochs, batch size, substrate and dynamics.
    pub training: TrainingConfig,
    /// When a run counts as diverged.
    pub divergence: DivergenceConfig,
    /// Crossbar, periphery and controller (used when `training.substrate = "crossbar"`).
    pub crossbar: CrossbarConfig,
    /// Per-run overrides of device-model parameters (`device.read_noise = 0.05`).
    pub device: toml::Table,
    /// Continuous-time circuit (used when `training.dynamics = "ode"`).
    pub circuit: CircuitConfig,
    /// Where the fields a device model recommends (`[recommended]` in its
    /// file) got their values: `crossbar.algorithm = "device model
    /// device_models/pcm.toml (built in), recommended"`, or the flag, `--set`
    /// or configuration that set them instead. Written by
    /// [`Config::apply_recommended`]; a record, it does not affect the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 1,
            data: DataConfig::default(),
            network: NetworkConfig::default(),
            learning: LearningConfig::default(),
            optimizer: OptimizerConfig::default(),
            training: TrainingConfig::default(),
            divergence: DivergenceConfig::default(),
            crossbar: CrossbarConfig::default(),
            device: toml::Table::new(),
            circuit: CircuitConfig::default(),
            sources: BTreeMap::new(),
        }
    }
}

/// The end of a [`Config::sources`] entry whose value a device model recommended.
const RECOMMENDED: &str = ", recommended";

/// How a run's own settings gave a field, for [`Config::apply_recommended`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Given {
    /// The field is in the configuration the run was built from (a file,
    /// a table, a sweep's job); `0` names it (`config file run.toml`). A
    /// source that configuration already records for the field is kept (a
    /// resumed run's `config.toml` keeps "recommended").
    InConfiguration(String),
    /// A flag or `--set` gave it; what the user wrote (`--algorithm sgd`).
    Option(String),
}

/// Topology (TOML `[network]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Layer widths, e.g. `784-512-512-10` or `784-1000x4-10`.
    pub arch: String,
    /// Hidden activation.
    pub activation: Activation,
    /// Loss on the linear output.
    pub loss: Loss,
    /// Initialisation gain: W ~ N(0, gain²/fan_in) (1 = the paper's).
    pub init_gain: f32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            arch: "784-512-512-10".into(),
            activation: Activation::Relu,
            loss: Loss::Mse,
            init_gain: 1.0,
        }
    }
}

/// Where the weights live.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubstrateKind {
    /// Exact floating-point weights (the reference).
    #[default]
    Digital,
    /// Resistive crossbars written by the controller.
    Crossbar,
}

impl std::fmt::Display for SubstrateKind {
    /// The name the configuration and result files use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubstrateKind::Digital => "digital",
            SubstrateKind::Crossbar => "crossbar",
        })
    }
}

/// How the dyadic states settle.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum DynamicsKind {
    /// Discrete fixed-point schedules (`learning.schedule`).
    #[default]
    Discrete,
    /// The continuous-time neuron circuit (`[circuit]`).
    Ode,
}

/// The training loop (TOML `[training]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Mini-batch size B.
    pub batch: usize,
    /// `digital` or `crossbar`.
    pub substrate: SubstrateKind,
    /// `discrete` or `ode`.
    pub dynamics: DynamicsKind,
    /// Measure the angle to the BP gradient on a fixed batch every epoch.
    pub track_angle: bool,
    /// Batch size used for evaluation passes.
    pub eval_batch: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch: 50,
            substrate: SubstrateKind::Digital,
            dynamics: DynamicsKind::Discrete,
            track_angle: false,
            eval_batch: 1000,
        }
    }
}

/// Divergence policy (TOML `[divergence]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DivergenceConfig {
    /// A state with |s±| above this counts as runaway.
    pub state_limit: f32,
    /// A weight with |w| above this counts as runaway.
    pub weight_limit: f32,
    /// Stop training at the first runaway (non-finite values always stop).
    pub stop_on_runaway: bool,
}

impl Default for DivergenceConfig {
    fn default() -> Self {
        Self {
            state_limit: 1.0e3,
            weight_limit: 1.0e4,
            stop_on_runaway: true,
        }
    }
}

/// A configuration that passed [`Config::check`]: the parsed pieces that
/// the rest of the crate consumes.
#[derive(Clone, Debug)]
pub struct ValidConfig {
    raw: Config,
    arch: Architecture,
    learning: LearningParams,
    circuit: CircuitParams,
}

impl ValidConfig {
    /// The checked raw configuration (as written to `config.toml`).
    pub fn raw(&self) -> &Config {
        &self.raw
    }
    /// Parsed topology.
    pub fn arch(&self) -> &Architecture {
        &self.arch
    }
    /// The checked learning rule (effective schedule and hidden α).
    pub fn learning(&self) -> &LearningParams {
        &self.learning
    }
    /// The checked continuous-time circuit.
    pub fn circuit(&self) -> &CircuitParams {
        &self.circuit
    }
    /// The raw configuration, giving up the checked form.
    pub fn into_raw(self) -> Config {
        self.raw
    }
}

impl Config {
    /// Reads a TOML file (unknown fields are errors that name the field).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses a TOML table (as built by sweeps).
    pub fn from_table(table: toml::Table) -> Result<Self> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid configuration: {e}"))
    }

    /// This configuration as a TOML table, every `f32` field as its
    /// shortest round-trip decimal (`lr = 0.001`, not the widened
    /// `0.0010000000474974513`); reading it back gives the same bits.
    pub fn to_table(&self) -> Result<toml::Table> {
        // TOML's serialiser widens `f32` to `f64` digit by digit; JSON's
        // writes `f32` in its own shortest form (ryu), which parses back
        // to the identical `f32`. `None` fields are left out, as TOML has
        // no null.
        let value = self.to_json()?;
        match toml::Value::try_from(drop_nulls(value)).context("serialising configuration")? {
            toml::Value::Table(t) => Ok(t),
            _ => bail!("configuration did not serialise to a table"),
        }
    }

    /// This configuration as TOML text (as written to `config.toml`).
    pub fn to_toml_string(&self) -> Result<String> {
        // From the JSON value, whose members keep the fields' order (a
        // `toml::Table` would sort them).
        toml::to_string_pretty(&drop_nulls(self.to_json()?)).context("serialising configuration")
    }

    /// This configuration as a JSON value, every `f32` field as its
    /// shortest round-trip decimal (as stored in sweep records).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let text = serde_json::to_string(self).context("serialising configuration")?;
        serde_json::from_str(&text).context("serialising configuration")
    }

    /// Why setting the field `path` (e.g. `device.read_noise`) cannot
    /// affect a training run of this configuration, or `None` if it can.
    /// The CLI refuses such flags and `--set` assignments (an option that
    /// is silently ignored would mislead).
    pub fn unused_reason(&self, path: &str) -> Option<String> {
        use crate::rules::RuleKind;
        let section = path.split('.').next().unwrap_or(path);
        let rule = self.learning.rule;
        let is_bp = matches!(rule, RuleKind::Bp | RuleKind::BpAdv);
        let digital = self.training.substrate == SubstrateKind::Digital;
        match (section, path) {
            ("device" | "crossbar", _) if digital => Some(
                "the run is on the digital substrate (add --substrate crossbar or --device NAME)"
                    .into(),
            ),
            ("optimizer", _) if !digital => Some(
                "crossbar runs learn through their devices with crossbar.lr, not the digital optimiser (use --set crossbar.lr=…)".into(),
            ),
            ("optimizer", "optimizer.momentum") if self.optimizer.kind == OptimizerKind::Adam => {
                Some("Adam has no momentum term (it applies to optimizer.kind = \"sgd\")".into())
            }
            ("optimizer", "optimizer.beta1" | "optimizer.beta2" | "optimizer.eps")
                if self.optimizer.kind == OptimizerKind::Sgd =>
            {
                Some("it is a setting of Adam, and optimizer.kind = \"sgd\"".into())
            }
            ("circuit", _) if self.training.dynamics == DynamicsKind::Discrete => Some(
                "inference is discrete; the circuit settings apply with --dynamics ode".into(),
            ),
            ("learning", "learning.hidden_alpha") if rule != RuleKind::Dp => {
                Some(format!("only the rule dp uses it, the run's rule is {rule}"))
            }
            ("learning", "learning.adv" | "learning.adv_epsilon") if rule != RuleKind::BpAdv => {
                Some(format!("only the rule bp-adv uses it, the run's rule is {rule}"))
            }
            ("learning", "learning.schedule" | "learning.alpha" | "learning.beta") if is_bp => Some(
                format!("back-propagation ({rule}) has no nudged inference; it applies to dp, dpt and dp-damped"),
            ),
            _ => None,
        }
    }

    /// Applies the crossbar settings the run's device model recommends
    /// (`[recommended]` in its model file, DESIGN.md §4.1) to every field
    /// `given` does not name, and records in [`Config::sources`] where each
    /// recommended field's value came from. Digital runs are left alone; a
    /// device model that does not load is left to [`Config::check`] to
    /// report.
    pub fn apply_recommended(&mut self, given: &dyn Fn(&str) -> Option<Given>) -> Result<()> {
        if self.training.substrate != SubstrateKind::Crossbar {
            return Ok(());
        }
        let name = self.crossbar.device.clone();
        let Ok(model) = crate::devices::DeviceModel::load(&name, &self.device) else {
            return Ok(());
        };
        let Some(recommended) = &model.recommended else {
            return Ok(());
        };
        let origin = crate::devices::DeviceModel::source_text(&name)
            .map_or_else(|_| name.clone(), |(origin, _)| origin);
        let mut table = self.to_table()?;
        let mut sources = self.sources.clone();
        let mut applied = false;
        for (path, value) in recommended.settings() {
            match given(&path) {
                Some(Given::Option(by)) => {
                    sources.insert(path, by);
                }
                Some(Given::InConfiguration(from)) => {
                    sources.entry(path).or_insert(from);
                }
                None => {
                    set_path(&mut table, &path, value.clone())
                        .and_then(|()| Config::from_table(table.clone()).map(drop))
                        .with_context(|| {
                            format!("device model file {origin}: [recommended] {path} = {value}")
                        })?;
                    sources.insert(path, format!("device model {origin}{RECOMMENDED}"));
                    applied = true;
                }
            }
        }
        if applied {
            *self = Config::from_table(table)?;
        }
        self.sources = sources;
        Ok(())
    }

    /// The fields whose values a device model recommended, with the model
    /// (`device model device_models/pcm.toml (built in)`), from
    /// [`Config::sources`].
    pub fn recommended_fields(&self) -> Vec<(&str, &str)> {
        self.sources
            .iter()
            .filter_map(|(path, source)| Some((path.as_str(), source.strip_suffix(RECOMMENDED)?)))
            .collect()
    }

    /// [`Config::from_file`], then the device model's recommendations
    /// ([`Config::apply_recommended`]) for every field the file does not
    /// hold.
    pub fn from_file_recommended(path: &Path) -> Result<Self> {
        let mut cfg = Config::from_file(path)?;
        let table = Config::file_table(path)?;
        let origin = format!("config file {}", path.display());
        cfg.apply_recommended(&|field| {
            table_has(&table, field).then(|| Given::InConfiguration(origin.clone()))
        })?;
        Ok(cfg)
    }

    /// The TOML table of a configuration file, as written (the fields it
    /// gives, without defaults).
    pub fn file_table(path: &Path) -> Result<toml::Table> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// [`Config::from_table`], then the device model's recommendations
    /// ([`Config::apply_recommended`]) for every field the table does not
    /// hold (`origin` names the table in [`Config::sources`]).
    pub fn from_table_recommended(table: toml::Table, origin: &str) -> Result<Self> {
        let mut cfg = Config::from_table(table.clone())?;
        cfg.apply_recommended(&|path| {
            table_has(&table, path).then(|| Given::InConfiguration(origin.to_string()))
        })?;
        Ok(cfg)
    }

    /// Applies `path.to.field=value` (value parsed as TOML, else taken as a string).
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        self.set_as(assignment, &format!("--set '{assignment}'"))
    }

    /// [`Config::set`] whose errors name `origin`, what the user wrote
    /// (`--rule dtp` for a flag the CLI turned into `learning.rule="dtp"`).
    pub fn set_as(&mut self, assignment: &str, origin: &str) -> Result<()> {
        let (path, value) = assignment
            .split_once('=')
            .with_context(|| format!("{origin}: expected path.to.field=value"))?;
        let mut table = self.to_table()?;
        set_path(&mut table, path.trim(), parse_toml_value(value.trim()))
            .with_context(|| origin.to_string())?;
        *self = Config::from_table(table).with_context(|| origin.to_string())?;
        Ok(())
    }

    /// The checks no type can express; returns the validated configuration.
    pub fn check(self) -> Result<ValidConfig> {
        let arch: Architecture = self
            .network
            .arch
            .parse()
            .map_err(|e: String| anyhow::anyhow!("network.arch: {e}"))?;
        let learning = self.learning.check(self.network.loss)?;
        let o = &self.optimizer;
        check_positive("optimizer.lr", o.lr)?;
        check_range(
            "optimizer.momentum",
            o.momentum as f64,
            0.0,
            0.999_999,
            "allowed range is [0, 1)",
        )?;
        if o.kind == OptimizerKind::Adam {
            check_range(
                "optimizer.beta1",
                o.beta1 as f64,
                0.0,
                0.999_999,
                "allowed range is [0, 1)",
            )?;
            check_range(
                "optimizer.beta2",
                o.beta2 as f64,
                0.0,
                0.999_999_9,
                "allowed range is [0, 1)",
            )?;
            check_range(
                "optimizer.eps",
                o.eps as f64,
                1e-30,
                1.0,
                "allowed range is (0, 1]",
            )?;
        }
        let t = &self.training;
        if t.epochs == 0 {
            bail!("training.epochs must be ≥ 1 (0 would train nothing and report no accuracy)");
        }
        if t.batch == 0 {
            bail!("training.batch must be ≥ 1");
        }
        check_memory(&arch, t.substrate, t.batch.max(t.eval_batch))?;
        if t.eval_batch == 0 {
            bail!("training.eval_batch must be ≥ 1");
        }
        let d = &self.data;
        if d.train_size == 0 {
            bail!("data.train_size must be ≥ 1");
        }
        if d.train_size + d.validation_size > 60_000 {
            bail!(
                "data.train_size + data.validation_size = {} exceeds the 60,000 training images",
                d.train_size + d.validation_size
            );
        }
        check_range(
            "data.test_size",
            d.test_size as f64,
            1.0,
            10_000.0,
            "allowed range is 1..=10000",
        )?;
        if !(self.network.init_gain.is_finite() && self.network.init_gain > 0.0) {
            bail!("network.init_gain = {} must be > 0", self.network.init_gain);
        }
        let dv = &self.divergence;
        if !(dv.state_limit > 0.0 && dv.weight_limit > 0.0) {
            bail!("divergence.state_limit and divergence.weight_limit must be > 0");
        }
        self.crossbar.check(&self.device).map_err(|e| {
            // A value the device model recommended is the model file's error.
            let recommended: Vec<String> = self
                .recommended_fields()
                .into_iter()
                .map(|(p, model)| format!("{p} from the [recommended] table of {model}"))
                .collect();
            if recommended.is_empty() {
                e
            } else {
                e.context(format!("with {}", recommended.join(", ")))
            }
        })?;
        let circuit = self.circuit.check()?;
        if t.dynamics == DynamicsKind::Ode
            && t.substrate == SubstrateKind::Crossbar
            && self.circuit.integrator == crate::circuit::IntegratorKind::Rk45
        {
            let model = self.crossbar.load_model(&self.device)?;
            if model.noise.read > 0.0 || self.crossbar.output_noise > 0.0 {
                bail!(
                    "circuit.integrator = \"rk45\" (the default) with training.dynamics = \"ode\" on a crossbar with read noise (device read_noise = {}, crossbar.output_noise = {}): every read redraws the noise, so ‖dv/dt‖ never falls below the noise floor and the adaptive step collapses, minutes per batch; use a fixed-step integrator (--integrator rk4 or euler; circuit.dt is then the read time in τ), or set both noises to 0",
                    model.noise.read,
                    self.crossbar.output_noise
                );
            }
        }
        if t.dynamics == DynamicsKind::Ode && !learning.rule().is_dual() {
            bail!(
                "training.dynamics = \"ode\" needs a dual-propagation rule (learning.rule = dp, dpt or dp-damped), not {:?}",
                learning.rule()
            );
        }
        Ok(ValidConfig {
            arch,
            learning,
            circuit,
            raw: self,
        })
    }
}

/// Refuses, before anything is allocated, a network whose arrays would
/// not fit in the memory the machine has available (`MemAvailable` of
/// `/proc/meminfo`; no check where that cannot be read). The estimate
/// counts per weight the parameter and the optimiser's or the devices'
/// state, and per batch the states of every layer; it is a lower bound.
fn check_memory(arch: &Architecture, substrate: SubstrateKind, batch: usize) -> Result<()> {
    let weights: f64 = arch
        .0
        .windows(2)
        .map(|w| (w[0] as f64 + 1.0) * w[1] as f64)
        .sum();
    // Digital: W, its gradient and Adam's two moments (f32 each). Crossbar:
    // two device records of 32 bytes per weight and the read caches.
    let per_weight = match substrate {
        SubstrateKind::Digital => 16.0,
        SubstrateKind::Crossbar => 80.0,
    };
    // About a dozen n × B state matrices per layer (s⁺, s⁻, s̄, δ, drives…).
    let states: f64 = arch.0.iter().map(|&n| n as f64).sum::<f64>() * batch as f64 * 12.0 * 4.0;
    let needed = weights * per_weight + states;
    let Some(available) = available_memory_bytes() else {
        return Ok(());
    };
    if needed > available as f64 {
        bail!(
            "network.arch '{arch}' needs at least {} GiB on the {} substrate ({} weights{}), the machine has {:.1} GiB available: choose smaller widths",
            crate::numbers::significant(needed / GIB, 3),
            match substrate {
                SubstrateKind::Digital => "digital",
                SubstrateKind::Crossbar => "crossbar",
            },
            crate::numbers::scientific(weights),
            if states > weights * per_weight {
                format!(", batch {batch}")
            } else {
                String::new()
            },
            available as f64 / GIB
        );
    }
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux), else `None`. Read
/// at most once a second: a sweep checks a million configurations in a
/// few seconds, and the kernel's figure does not change meaningfully
/// between them.
fn available_memory_bytes() -> Option<u64> {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static LAST: Mutex<Option<(Instant, Option<u64>)>> = Mutex::new(None);
    let read = || {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    let Ok(mut last) = LAST.lock() else {
        return read();
    };
    match *last {
        Some((at, value)) if at.elapsed() < Duration::from_secs(1) => value,
        _ => {
            let value = read();
            *last = Some((Instant::now(), value));
            value
        }
    }
}

/// Parses a command-line value as TOML (`0.5`, `true`, `[1, 2]`, `"x"`),
/// falling back to a bare string (`reram_es`).
pub fn parse_toml_value(text: &str) -> toml::Value {
    let probe = format!("v = {text}");
    match toml::from_str::<toml::Table>(&probe) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(text.to_string())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

/// Whether `table` holds the field `a.b.c`.
pub fn table_has(table: &toml::Table, path: &str) -> bool {
    table_get(table, path).is_some()
}

/// The value of the field `a.b.c` in `table`, if it holds one.
pub fn table_get<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let (sections, field) = path.rsplit_once('.').unwrap_or(("", path));
    let mut current = table;
    for part in sections.split('.').filter(|p| !p.is_empty()) {
        match current.get(part)? {
            toml::Value::Table(t) => current = t,
            _ => return None,
        }
    }
    current.get(field)
}

/// Sets `a.b.c = value` inside `table`, creating intermediate tables only
/// where the schema allows (unknown fields are rejected later by serde).
pub fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("invalid field path '{path}'");
    }
    let mut current = table;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            current.insert(part.to_string(), value);
            return Ok(());
        }
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => bail!(
                "'{}' in '{path}' is a value, not a section",
                parts[..=i].join(".")
            ),
        };
    }
    Ok(())
}

/// `value` without its `null` members (recursively): a `None` field is
/// absent in TOML.
fn drop_nulls(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_path_and_only_fields() {
        let table: toml::Table =
            toml::from_str("seed = 3\n[crossbar]\nlr = 0.5\n[crossbar.transfer]\nfast_lr = 0.2\n")
                .unwrap();
        assert_eq!(table_get(&table, "seed"), Some(&toml::Value::Integer(3)));
        assert_eq!(
            table_get(&table, "crossbar.lr"),
            Some(&toml::Value::Float(0.5))
        );
        assert!(table_has(&table, "crossbar.transfer.fast_lr"));
        assert!(table_has(&table, "crossbar.transfer")); // a section given as a whole
        assert!(!table_has(&table, "crossbar.algorithm"));
        assert!(!table_has(&table, "seed.x")); // a value is no section
        assert!(!table_has(&table, "learning.alpha"));
    }

    /// Every `f32` field is written as its shortest decimal, and the text
    /// reads back to the identical configuration (bit for bit), through
    /// TOML and through JSON; `Config::set` keeps the other fields' bits.
    #[test]
    fn f32_fields_are_written_shortest_and_read_back_exactly() {
        let mut c = Config::default();
        c.set("crossbar.lr=0.1").unwrap();
        c.set("device.read_noise=0.037").unwrap();
        let toml_text = c.to_toml_string().unwrap();
        assert!(toml_text.contains("lr = 0.001\n"), "{toml_text}");
        assert!(toml_text.contains("lr = 0.1\n"), "{toml_text}");
        // No widened f32 (`0.0010000000474974513`, `0.8999999761581421`):
        // every number of the defaults is a short decimal.
        for line in toml_text.lines() {
            let Some((_, v)) = line.split_once(" = ") else {
                continue;
            };
            if let Ok(x) = v.parse::<f64>() {
                assert!(x.to_string().len() <= 12, "widened: {line}");
            }
        }
        let back: Config = toml::from_str(&toml_text).unwrap();
        assert_eq!(back, c);
        let json = c.to_json().unwrap();
        assert_eq!(json["optimizer"]["lr"], serde_json::json!(0.001));
        let back: Config = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        assert_eq!(Config::from_table(c.to_table().unwrap()).unwrap(), c);
        // The fields keep their declared order in config.toml.
        let seed = toml_text.find("seed =").unwrap();
        let data = toml_text.find("[data]").unwrap();
        assert!(seed < data, "{toml_text}");
    }
}
