//! `dyadsim train`: one run from a configuration.

use super::common::RunArgs;
use super::progress::TerminalProgress;
use anyhow::{Context, Result};
use clap::Args;
use dyadsim::experiment::result::RunResult;
use dyadsim::experiment::run_dir::{check_out_dir, restore_run, save_run, save_run_state};
use dyadsim::experiment::train::{
    build_network, build_network_from, make_settler, run_continued, Observer,
};
use dyadsim::experiment::ValidConfig;
use dyadsim::network::Network;
use std::path::PathBuf;

/// Arguments of `dyadsim train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Network, rule, data and hardware settings.
    #[command(flatten)]
    pub run: RunArgs,
    /// Run directory: result.json, config.toml, parameters (.json, .npz),
    /// run and device state, manifest.json. Written after every epoch and
    /// at the end, each time as one unit (a crash leaves the last finished
    /// epoch); an interrupted run continues with `--resume DIR`.
    #[arg(help_heading = "Run directory and output", long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace the run already in `--out DIR` (never a directory that
    /// holds something else).
    #[arg(help_heading = "Run directory and output", long, requires = "out")]
    pub force: bool,
    /// Print the result object as JSON on the last line of stdout.
    #[arg(help_heading = "Run directory and output", long)]
    pub json: bool,
    /// No progress bar or epoch lines.
    #[arg(help_heading = "Run directory and output", long)]
    pub quiet: bool,
    /// Continue from a run directory written by `train --out`: its
    /// `config.toml` is the base configuration (flags still override), its
    /// `parameters.json` the starting weights and, on crossbars, its
    /// `device_state.json` the starting device state (conductances, pulse
    /// counters, wear), and its `run_state.json` where every random stream
    /// and the optimiser's moments stood. Trains `--epochs` more epochs,
    /// exactly as the uninterrupted run would have continued.
    #[arg(
        help_heading = "Run directory and output",
        long,
        value_name = "DIR",
        conflicts_with = "init_from"
    )]
    pub resume: Option<PathBuf>,
    /// Start from the weights and biases of a NumPy `.npz` file instead of
    /// the seeded random initialisation: arrays `W1, b1, W2, b2, …`, `W{k}`
    /// shaped (outputs, inputs) as a PyTorch `nn.Linear` weight (the
    /// `parameters.npz` that `--out` writes has this layout).
    #[arg(
        help_heading = "Run directory and output",
        long,
        value_name = "FILE.npz"
    )]
    pub init_from: Option<PathBuf>,
}

/// Runs `dyadsim train`.
pub fn run_train(args: &TrainArgs) -> Result<()> {
    let mut run_args = args.run.clone();
    if let Some(dir) = &args.resume {
        if run_args.config.is_none() {
            run_args.config = Some(dir.join("config.toml"));
        }
    }
    let cfg = run_args.resolve_for_training()?;
    if let Some(dir) = &args.out {
        // Resuming into the directory resumed from replaces it by design.
        let same = args.resume.as_ref().is_some_and(|r| same_path(r, dir));
        check_out_dir(dir, args.force || same, "--out")?;
    }
    let data = dyadsim::data::load(&cfg.raw().data)?;
    let mut progress = TerminalProgress::new(args.quiet, cfg.raw().training.batch);
    if !args.quiet {
        eprintln!(
            "dyadsim train: {} {} on {} ({} train / {} test images), α = {}, β = {}, schedule {}, {} substrate, {} epoch{}",
            cfg.raw().learning.rule_name(),
            cfg.arch(),
            cfg.raw().data.dataset,
            data.train.len(),
            data.test.len(),
            cfg.raw().learning.alpha,
            cfg.raw().learning.beta,
            cfg.learning().schedule(),
            cfg.raw().training.substrate,
            cfg.raw().training.epochs,
            if cfg.raw().training.epochs == 1 { "" } else { "s" }
        );
        for line in recommended_lines(cfg.raw())? {
            eprintln!("{line}");
        }
    }
    let (network, epochs_before) = match (&args.resume, &args.init_from) {
        (None, None) => (build_network(&cfg)?, 0),
        (None, Some(path)) => {
            let params = dyadsim::experiment::npz::read_parameters(path)?;
            let network = build_network_from(&cfg, params)
                .with_context(|| format!("--init-from {}", path.display()))?;
            (network, 0)
        }
        (Some(dir), _) => {
            let mut network = build_network(&cfg)?;
            let epochs_done = restore_run(dir, &mut network)?;
            (network, epochs_done)
        }
    };
    let mut checkpoints = args.out.as_ref().map(|dir| Checkpoints {
        dir: dir.clone(),
        cfg: &cfg,
        epochs_before,
    });
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress];
    if let Some(c) = checkpoints.as_mut() {
        observers.push(c);
    }
    let settler = make_settler(&cfg)?;
    let output = run_continued(&cfg, &data, network, settler, &mut observers, epochs_before)?;
    let result = &output.result;
    if let Some(dir) = &args.out {
        save_run(dir, &cfg, &output, epochs_before)?;
    }
    let acc = result
        .test_accuracy
        .map(|a| format!("{:.2}%", 100.0 * a))
        .unwrap_or_else(|| "n/a".into());
    if args.json {
        println!(
            "{}",
            serde_json::to_string(result).context("serialising result")?
        );
    } else {
        println!(
            "status: {}, test accuracy {acc}, Lipschitz {}, {:.0} training samples/s",
            result.status,
            result
                .lipschitz
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            result.samples_per_second
        );
        if let Some(d) = &result.diverged_at {
            println!("diverged: {}", d.describe());
        }
    }
    Ok(())
}

/// Writes `--out DIR` after every epoch (as one unit, marked incomplete),
/// so that Ctrl-C or a wall-time limit loses at most the epoch in progress.
struct Checkpoints<'a> {
    dir: PathBuf,
    cfg: &'a ValidConfig,
    epochs_before: usize,
}

impl Observer for Checkpoints<'_> {
    fn wants_checkpoints(&self) -> bool {
        true
    }
    fn on_checkpoint(&mut self, result: &RunResult, network: &Network) -> Result<()> {
        save_run_state(
            &self.dir,
            self.cfg,
            result,
            network,
            self.epochs_before,
            false,
        )
        .with_context(|| format!("writing the checkpoint into --out {}", self.dir.display()))
    }
}

/// One line per setting the device model recommended and the run took,
/// saying how to override it.
fn recommended_lines(cfg: &dyadsim::experiment::config::Config) -> Result<Vec<String>> {
    let table = cfg.to_table()?;
    Ok(cfg
        .recommended_fields()
        .into_iter()
        .map(|(path, model)| {
            let value = dyadsim::experiment::config::table_get(&table, path)
                .map_or_else(|| "?".to_string(), |v| v.to_string());
            format!("  {path} = {value}, recommended by the {model} (--set {path}=… overrides it)")
        })
        .collect())
}

/// Whether two paths name the same directory.
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
