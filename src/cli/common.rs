//! Flags shared by every subcommand that builds a run configuration, and
//! atomic result writing.

use anyhow::Result;
use clap::Args;
use dyadsim::experiment::config::Config;
use dyadsim::experiment::ValidConfig;
use std::path::PathBuf;

/// Network, rule, data and hardware flags. Resolution order: defaults →
/// `--config FILE` → these flags → `--set` assignments.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// TOML configuration file (every field has a default; see README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override any configuration field, e.g. `--set learning.beta=0.1`
    /// or `--set device.read_noise=0.05` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Layer widths, e.g. 784-512-512-10 or 784-1000x4-10.
    #[arg(long)]
    pub arch: Option<String>,
    /// Hidden activation: relu, leaky_relu, hard_sigmoid, tanh, sigmoid.
    #[arg(long)]
    pub activation: Option<String>,
    /// Loss: mse (½‖s_L − y‖²) or ce (softmax cross-entropy).
    #[arg(long)]
    pub loss: Option<String>,
    /// Learning rule: bp, dp, dpt, dp-damped, bp-adv.
    #[arg(long)]
    pub rule: Option<String>,
    /// Nudging asymmetry α in [0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f32>,
    /// DP only: α of the hidden layers (½ = the 2023 paper's form).
    #[arg(long, allow_negative_numbers = true)]
    pub hidden_alpha: Option<f32>,
    /// Nudging strength β > 0.
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f32>,
    /// Inference schedule: fwbw:K, forward:K, jacobi:K.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Input-robust variant: the input is a dyad too.
    #[arg(long)]
    pub robust_input: bool,
    /// Adversary of bp-adv: fgsm or grad.
    #[arg(long)]
    pub adv: Option<String>,
    /// Adversarial step size ε.
    #[arg(long = "adv-eps", alias = "epsilon")]
    pub adv_eps: Option<f32>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Optimiser: adam or sgd.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dataset: mnist or fashion_mnist.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory holding the dataset's IDX files (raw or .gz).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Training images (the first N).
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Test images (the first N).
    #[arg(long)]
    pub test_size: Option<usize>,
    /// Where the weights live: digital or crossbar.
    #[arg(long)]
    pub substrate: Option<String>,
    /// Device model of a crossbar run (name or path to a TOML file).
    #[arg(long)]
    pub device: Option<String>,
    /// Controller write scheme: stochastic, mixed_precision, exact.
    #[arg(long)]
    pub write: Option<String>,
    /// Inference dynamics: discrete or ode.
    #[arg(long)]
    pub dynamics: Option<String>,
    /// ODE integrator (euler, rk4, rk45, euler_maruyama).
    #[arg(long)]
    pub integrator: Option<String>,
    /// ODE settle tolerance.
    #[arg(long)]
    pub tol: Option<f64>,
    /// ODE time limit (units of τ).
    #[arg(long)]
    pub t_max: Option<f64>,
}

impl RunArgs {
    /// Builds and checks the configuration.
    pub fn resolve(&self) -> Result<ValidConfig> {
        self.resolve_raw()?.check()
    }

    /// Builds the configuration without the final check.
    pub fn resolve_raw(&self) -> Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let mut assignments: Vec<String> = Vec::new();
        let mut push = |path: &str, value: Option<String>| {
            if let Some(v) = value {
                assignments.push(format!("{path}={v}"));
            }
        };
        let quoted = |s: &Option<String>| s.as_ref().map(|v| format!("{v:?}"));
        push("network.arch", quoted(&self.arch));
        push("network.activation", quoted(&self.activation));
        push("network.loss", quoted(&self.loss));
        push("learning.rule", quoted(&self.rule));
        push("learning.alpha", self.alpha.map(toml_float));
        push("learning.hidden_alpha", self.hidden_alpha.map(toml_float));
        push("learning.beta", self.beta.map(toml_float));
        push("learning.schedule", quoted(&self.schedule));
        push(
            "learning.robust_input",
            self.robust_input.then(|| "true".to_string()),
        );
        push("learning.adv", quoted(&self.adv));
        push("learning.adv_epsilon", self.adv_eps.map(toml_float));
        push("training.epochs", self.epochs.map(|v| v.to_string()));
        push("training.batch", self.batch.map(|v| v.to_string()));
        push("optimizer.lr", self.lr.map(toml_float));
        push("optimizer.kind", quoted(&self.optimizer));
        push("optimizer.momentum", self.momentum.map(toml_float));
        push("seed", self.seed.map(|v| v.to_string()));
        push(
            "data.dataset",
            quoted(&self.dataset.as_ref().map(|d| d.replace('-', "_"))),
        );
        push(
            "data.data_dir",
            self.data_dir
                .as_ref()
                .map(|d| format!("{:?}", d.display().to_string())),
        );
        push("data.train_size", self.train_size.map(|v| v.to_string()));
        push("data.test_size", self.test_size.map(|v| v.to_string()));
        push("training.substrate", quoted(&self.substrate));
        push("crossbar.device", quoted(&self.device));
        push("crossbar.write", quoted(&self.write));
        push("training.dynamics", quoted(&self.dynamics));
        push("circuit.integrator", quoted(&self.integrator));
        push("circuit.tol", self.tol.map(toml_float));
        push("circuit.t_max", self.t_max.map(toml_float));
        if self.device.is_some() || self.write.is_some() {
            // Naming a device or write scheme implies the crossbar substrate.
            if self.substrate.is_none() {
                assignments.insert(0, "training.substrate=\"crossbar\"".into());
            }
        }
        if self.train_size.is_some() {
            // A reduced training set keeps the standard validation split only if it fits.
            let n = self.train_size.unwrap_or(0);
            if n + cfg.data.validation_size > 60_000 {
                cfg.data.validation_size = 60_000 - n.min(60_000);
            }
        }
        for a in assignments.iter().chain(self.set.iter()) {
            cfg.set(a)?;
        }
        Ok(cfg)
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
