//! Flags shared by every subcommand that builds a run configuration, and
//! atomic result writing.

use anyhow::Result;
use clap::Args;
use dyadsim::experiment::config::{table_has, Config, Given};
use dyadsim::experiment::ValidConfig;
use std::path::PathBuf;

/// Network, rule, data and hardware flags. Resolution order: defaults →
/// `--config FILE` → these flags → `--set` assignments.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// TOML configuration file (every field has a default; see README).
    #[arg(help_heading = "Configuration", long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override any configuration field, e.g. `--set learning.beta=0.1`
    /// or `--set device.read_noise=0.05` (repeatable).
    #[arg(
        help_heading = "Configuration",
        long = "set",
        value_name = "PATH=VALUE"
    )]
    pub set: Vec<String>,
    /// Layer widths, e.g. 784-512-512-10 or 784-1000x4-10 [default: 784-512-512-10].
    #[arg(help_heading = "Network", long)]
    pub arch: Option<String>,
    /// Hidden activation: relu, leaky_relu, hard_sigmoid, tanh, sigmoid [default: relu].
    #[arg(help_heading = "Network", long)]
    pub activation: Option<String>,
    /// Loss: mse (½‖s_L − y‖²) or ce (softmax cross-entropy) [default: mse].
    #[arg(help_heading = "Network", long)]
    pub loss: Option<String>,
    /// Learning rule: bp, dp, dpt, dp-damped, bp-adv [default: dpt].
    #[arg(help_heading = "Learning rule", long)]
    pub rule: Option<String>,
    /// Nudging asymmetry α in [0, 1] (dp, dpt, dp-damped) [default: 0.5].
    #[arg(help_heading = "Learning rule", long, allow_negative_numbers = true)]
    pub alpha: Option<f32>,
    /// dp only: α of the hidden layers (½ = the 2023 paper's form) [default: α].
    #[arg(help_heading = "Learning rule", long, allow_negative_numbers = true)]
    pub hidden_alpha: Option<f32>,
    /// Nudging strength β > 0 (dp, dpt, dp-damped) [default: 0.5].
    #[arg(help_heading = "Learning rule", long, allow_negative_numbers = true)]
    pub beta: Option<f32>,
    /// Inference schedule: fwbw:K, forward:K or jacobi:K, K ≤ 10000 [default: fwbw:6; dp-damped fwbw:16].
    #[arg(help_heading = "Learning rule", long)]
    pub schedule: Option<String>,
    /// Input-robust variant: the input is a dyad too.
    #[arg(help_heading = "Learning rule", long)]
    pub robust_input: bool,
    /// bp-adv only: the adversary, fgsm or grad [default: fgsm].
    #[arg(help_heading = "Learning rule", long)]
    pub adv: Option<String>,
    /// bp-adv only: adversarial step size ε [default: 0.05].
    #[arg(help_heading = "Learning rule", long = "adv-eps", alias = "epsilon")]
    pub adv_eps: Option<f32>,
    /// Epochs (≥ 1) [default: 10].
    #[arg(help_heading = "Training", long)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: 50].
    #[arg(help_heading = "Training", long)]
    pub batch: Option<usize>,
    /// Learning rate of the digital optimiser (crossbars: --set crossbar.lr=…) [default: 1e-3].
    #[arg(help_heading = "Training", long)]
    pub lr: Option<f32>,
    /// Digital optimiser: adam or sgd [default: adam].
    #[arg(help_heading = "Training", long)]
    pub optimizer: Option<String>,
    /// SGD momentum [default: 0].
    #[arg(help_heading = "Training", long)]
    pub momentum: Option<f32>,
    /// Random seed of initialisation, shuffling and every hardware stream [default: 1].
    #[arg(help_heading = "Training", long)]
    pub seed: Option<u64>,
    /// Dataset: mnist or fashion_mnist [default: mnist].
    #[arg(help_heading = "Data", long)]
    pub dataset: Option<String>,
    /// Directory holding the dataset's four IDX files (raw or .gz) [default: embedded MNIST; Fashion-MNIST from /usr/share/datasets/fashion-mnist].
    #[arg(help_heading = "Data", long)]
    pub data_dir: Option<PathBuf>,
    /// Training images: the first N [default: 50000].
    #[arg(help_heading = "Data", long)]
    pub train_size: Option<usize>,
    /// Test images: the first N [default: 10000].
    #[arg(help_heading = "Data", long)]
    pub test_size: Option<usize>,
    /// Where the weights live: digital or crossbar [default: digital].
    #[arg(help_heading = "Hardware", long)]
    pub substrate: Option<String>,
    /// Device model of a crossbar run (shipped name or path to a TOML file); implies --substrate crossbar.
    #[arg(help_heading = "Hardware", long)]
    pub device: Option<String>,
    /// Controller write scheme: stochastic, mixed_precision, exact; implies --substrate crossbar [default: stochastic; exact on the continuous ideal model, its recommendation].
    #[arg(help_heading = "Hardware", long)]
    pub write: Option<String>,
    /// On-chip learning algorithm: sgd, ttv2, cttv2, agad (Tiki-Taka family, settings in [crossbar.transfer]); implies --substrate crossbar [default: sgd, or the device model's recommendation].
    #[arg(help_heading = "Hardware", long)]
    pub algorithm: Option<String>,
    /// Inference dynamics: discrete or ode [default: discrete].
    #[arg(help_heading = "Circuit (--dynamics ode)", long)]
    pub dynamics: Option<String>,
    /// ODE integrator: euler, rk4, rk45, euler_maruyama [default: rk45].
    #[arg(help_heading = "Circuit (--dynamics ode)", long)]
    pub integrator: Option<String>,
    /// ODE settle tolerance on ‖dv/dt‖∞·τ [default: 1e-4].
    #[arg(help_heading = "Circuit (--dynamics ode)", long)]
    pub tol: Option<f64>,
    /// ODE time limit in units of τ [default: 50].
    #[arg(help_heading = "Circuit (--dynamics ode)", long)]
    pub t_max: Option<f64>,
}

impl RunArgs {
    /// [`RunArgs::resolve`] for `train`: also refuses every flag and
    /// `--set` the run cannot use (an ignored option would mislead).
    pub fn resolve_for_training(&self) -> Result<ValidConfig> {
        let (cfg, given) = self.resolve_with_origins()?;
        for (path, origin) in &given {
            if let Some(reason) = cfg.unused_reason(path) {
                anyhow::bail!("{origin} cannot affect this run: {reason}");
            }
        }
        cfg.check()
    }

    /// Builds the configuration for `dyadsim COMMAND`, refusing every flag
    /// or `--set` whose path starts with one of `unused`'s prefixes: the
    /// flags the command shares with `train` but cannot use (the pair's
    /// second part says why).
    pub fn resolve_raw_for(&self, command: &str, unused: &[(&str, &str)]) -> Result<Config> {
        let (cfg, given) = self.resolve_with_origins()?;
        for (path, origin) in &given {
            let hit = unused
                .iter()
                .find(|(prefix, _)| path == prefix || path.starts_with(&format!("{prefix}.")));
            if let Some((_, why)) = hit {
                anyhow::bail!("{origin} cannot affect `dyadsim {command}`: {why}");
            }
        }
        Ok(cfg)
    }

    /// The configuration, and for every field a flag or `--set` gave, its
    /// path and what the user wrote.
    fn resolve_with_origins(&self) -> Result<(Config, Vec<(String, String)>)> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        // (assignment, path, what the user wrote) for every flag given.
        let mut assignments: Vec<(String, String, String)> = Vec::new();
        let mut push = |path: &str, flag: &str, value: Option<(String, String)>| {
            if let Some((toml_text, shown)) = value {
                let origin = if shown.is_empty() {
                    format!("--{flag}")
                } else {
                    format!("--{flag} {shown}")
                };
                assignments.push((format!("{path}={toml_text}"), path.to_string(), origin));
            }
        };
        let text = |s: &Option<String>| s.as_ref().map(|v| (format!("{v:?}"), v.clone()));
        let float = |v: Option<f32>| v.map(|v| (toml_float(v), v.to_string()));
        let float64 = |v: Option<f64>| v.map(|v| (toml_float(v), v.to_string()));
        let count = |v: Option<usize>| v.map(|v| (v.to_string(), v.to_string()));
        push("network.arch", "arch", text(&self.arch));
        push("network.activation", "activation", text(&self.activation));
        push("network.loss", "loss", text(&self.loss));
        push("learning.rule", "rule", text(&self.rule));
        push("learning.alpha", "alpha", float(self.alpha));
        push(
            "learning.hidden_alpha",
            "hidden-alpha",
            float(self.hidden_alpha),
        );
        push("learning.beta", "beta", float(self.beta));
        push("learning.schedule", "schedule", text(&self.schedule));
        push(
            "learning.robust_input",
            "robust-input",
            self.robust_input
                .then(|| ("true".to_string(), String::new())),
        );
        push("learning.adv", "adv", text(&self.adv));
        push("learning.adv_epsilon", "adv-eps", float(self.adv_eps));
        push("training.epochs", "epochs", count(self.epochs));
        push("training.batch", "batch", count(self.batch));
        push("optimizer.lr", "lr", float(self.lr));
        push("optimizer.kind", "optimizer", text(&self.optimizer));
        push("optimizer.momentum", "momentum", float(self.momentum));
        if let Some(seed) = self.seed {
            // TOML integers are 64-bit signed: a larger seed would reach
            // the configuration as a string.
            if seed > i64::MAX as u64 {
                anyhow::bail!("--seed {seed}: must be ≤ {} (seeds are 63-bit)", i64::MAX);
            }
        }
        push(
            "seed",
            "seed",
            self.seed.map(|v| (v.to_string(), v.to_string())),
        );
        push(
            "data.dataset",
            "dataset",
            self.dataset
                .as_ref()
                .map(|d| (format!("{:?}", d.replace('-', "_")), d.clone())),
        );
        push(
            "data.data_dir",
            "data-dir",
            self.data_dir.as_ref().map(|d| {
                (
                    format!("{:?}", d.display().to_string()),
                    d.display().to_string(),
                )
            }),
        );
        push("data.train_size", "train-size", count(self.train_size));
        push("data.test_size", "test-size", count(self.test_size));
        push("training.substrate", "substrate", text(&self.substrate));
        push("crossbar.device", "device", text(&self.device));
        push("crossbar.write", "write", text(&self.write));
        push("crossbar.algorithm", "algorithm", text(&self.algorithm));
        push("training.dynamics", "dynamics", text(&self.dynamics));
        push("circuit.integrator", "integrator", text(&self.integrator));
        push("circuit.tol", "tol", float64(self.tol));
        push("circuit.t_max", "t-max", float64(self.t_max));
        if self.device.is_some() || self.write.is_some() || self.algorithm.is_some() {
            // Naming a device, write scheme or algorithm implies the crossbar substrate.
            if self.substrate.is_none() {
                let origin = if self.device.is_some() {
                    "--device"
                } else if self.write.is_some() {
                    "--write"
                } else {
                    "--algorithm"
                };
                assignments.insert(
                    0,
                    (
                        "training.substrate=\"crossbar\"".into(),
                        "training.substrate".into(),
                        origin.into(),
                    ),
                );
            }
        }
        if self.train_size.is_some() {
            // A reduced training set keeps the standard validation split only if it fits.
            let n = self.train_size.unwrap_or(0);
            if n + cfg.data.validation_size > 60_000 {
                cfg.data.validation_size = 60_000 - n.min(60_000);
            }
        }
        for a in &self.set {
            let path = a.split_once('=').map_or(a.as_str(), |(p, _)| p.trim());
            assignments.push((a.clone(), path.to_string(), format!("--set '{a}'")));
        }
        let mut given = Vec::with_capacity(assignments.len());
        for (assignment, path, origin) in assignments {
            cfg.set_as(&assignment, &origin)?;
            given.push((path, origin));
        }
        // The device model's recommended crossbar settings fill the fields
        // that neither the configuration file nor an option gave.
        let file = match &self.config {
            Some(path) => Some((
                Config::file_table(path)?,
                format!("config file {}", path.display()),
            )),
            None => None,
        };
        cfg.apply_recommended(&|path| {
            let by_option = given
                .iter()
                .rev()
                .find(|(p, _)| path == p || path.starts_with(&format!("{p}.")));
            if let Some((_, origin)) = by_option {
                return Some(Given::Option(origin.clone()));
            }
            let (table, origin) = file.as_ref()?;
            table_has(table, path).then(|| Given::InConfiguration(origin.clone()))
        })?;
        Ok((cfg, given))
    }
}

/// A TOML float literal of `v` for a `--set`-style assignment. `Display`
/// would write 1e30 as a 31-digit integer, which TOML cannot hold, and NaN
/// as `NaN`, which TOML reads as neither; `Debug` keeps the exponent
/// (`1e30`) and TOML spells the non-finite values `nan` and `inf`, so the
/// configuration check sees the number and names its allowed range.
fn toml_float<T: Into<f64> + std::fmt::Debug + Copy>(v: T) -> String {
    let wide: f64 = v.into();
    if wide.is_nan() {
        "nan".into()
    } else if wide.is_infinite() {
        if wide > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}
