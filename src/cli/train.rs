//! `dyadsim train`: one run from a configuration.

use super::common::{check_layer_count, read_json, write_atomic, RunArgs};
use super::progress::TerminalProgress;
use super::settle::{load_parameters, PARAMETERS_FILE};
use crate::experiment::train::{build_network, make_settler, run, run_continued, Observer};
use crate::network::Network;
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `dyadsim train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Network, rule, data and hardware settings.
    #[command(flatten)]
    pub run: RunArgs,
    /// Directory for result.json and the effective config.toml (written atomically).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the result object as JSON on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Continue from a run directory written by `train --out`: its
    /// `config.toml` is the base configuration (flags still override), its
    /// `parameters.json` the starting weights and, on crossbars, its
    /// `device_state.json` the starting device state (conductances, pulse
    /// counters, wear), and its `run_state.json` where every random stream
    /// and the optimiser's moments stood. Trains `--epochs` more epochs,
    /// exactly as the uninterrupted run would have continued.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
}

/// File name of the crossbar device state inside a run directory.
pub const DEVICE_STATE_FILE: &str = "device_state.json";

/// File name of the continuation state (epochs done, random streams,
/// optimiser moments) inside a run directory.
pub const RUN_STATE_FILE: &str = "run_state.json";

/// Restores the state of `dir` (see [`TrainArgs::resume`]) into `net`;
/// returns the epochs the saved run had trained (0 for a run directory
/// without `run_state.json`, written before it existed: such a run resumes
/// with fresh random streams and optimiser moments).
pub fn restore_run(dir: &Path, net: &mut Network) -> Result<usize> {
    load_parameters(&dir.join(PARAMETERS_FILE), net)?;
    let path = dir.join(DEVICE_STATE_FILE);
    if path.exists() {
        let saved: serde_json::Value = read_json(&path, "device state")?;
        let layers = saved
            .get("layers")
            .and_then(|l| l.as_array())
            .with_context(|| format!("{}: no `layers` array", path.display()))?;
        check_layer_count(&path, layers.len(), net.depth())?;
        for (k, (layer, state)) in net.layers.iter_mut().zip(layers).enumerate() {
            layer
                .restore_device_state(state)
                .with_context(|| format!("{}: layer {}", path.display(), k + 1))?;
        }
    }
    let path = dir.join(RUN_STATE_FILE);
    if !path.exists() {
        return Ok(0);
    }
    let saved: RunState = read_json(&path, "run state")?;
    check_layer_count(&path, saved.layers.len(), net.depth())?;
    for (k, (layer, state)) in net.layers.iter_mut().zip(&saved.layers).enumerate() {
        if let Some(state) = state {
            layer
                .restore_continuation_state(state)
                .with_context(|| format!("{}: layer {}", path.display(), k + 1))?;
        }
    }
    Ok(saved.epochs_done)
}

/// `run_state.json`: what `--resume` needs besides parameters and devices.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunState {
    /// Epochs trained so far, over this run and the ones it resumed.
    epochs_done: usize,
    /// Each layer's continuation state (random streams, optimiser moments).
    layers: Vec<Option<serde_json::Value>>,
}

/// Runs `dyadsim train`.
pub fn run_train(args: &TrainArgs) -> Result<()> {
    let mut run_args = args.run.clone();
    if let Some(dir) = &args.resume {
        if run_args.config.is_none() {
            run_args.config = Some(dir.join("config.toml"));
        }
    }
    let cfg = run_args.resolve()?;
    let data = crate::data::load(&cfg.raw.data)?;
    let mut progress = TerminalProgress::new(args.quiet);
    if !args.quiet {
        eprintln!(
            "dyadsim train: {} {} on {:?} ({} train / {} test images), α = {}, β = {}, schedule {}, {} substrate, {} epochs",
            cfg.raw.learning.rule_name(),
            cfg.arch,
            cfg.raw.data.dataset,
            data.train.len(),
            data.test.len(),
            cfg.raw.learning.alpha,
            cfg.raw.learning.beta,
            cfg.learning.schedule(),
            format!("{:?}", cfg.raw.training.substrate).to_lowercase(),
            cfg.raw.training.epochs
        );
    }
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress];
    let (output, epochs_before) = match &args.resume {
        None => (run(&cfg, &data, &mut observers)?, 0),
        Some(dir) => {
            let mut network = build_network(&cfg)?;
            let epochs_done = restore_run(dir, &mut network)?;
            let settler = make_settler(&cfg)?;
            (
                run_continued(&cfg, &data, network, settler, &mut observers, epochs_done)?,
                epochs_done,
            )
        }
    };
    let result = &output.result;
    if let Some(dir) = &args.out {
        let json = serde_json::to_string_pretty(result).context("serialising result")?;
        write_atomic(&dir.join("result.json"), json.as_bytes())?;
        let toml = toml::to_string_pretty(&cfg.raw).context("serialising config")?;
        write_atomic(&dir.join("config.toml"), toml.as_bytes())?;
        // Crossbar layers also leave their device state (conductances, pulse
        // counters) so the run can be inspected or resumed.
        let states: Vec<serde_json::Value> = output
            .network
            .layers
            .iter()
            .filter_map(|l| l.device_state())
            .collect();
        if !states.is_empty() {
            let json = serde_json::to_string(&serde_json::json!({ "layers": states }))
                .context("serialising device state")?;
            write_atomic(&dir.join(DEVICE_STATE_FILE), json.as_bytes())?;
        }
        // The trained weights, so `dyadsim settle --from DIR` can load them.
        super::settle::save_parameters(dir, &output.network)?;
        // Where the random streams and optimiser stood, so `--resume`
        // continues exactly.
        let state = RunState {
            epochs_done: epochs_before + result.epochs.len(),
            layers: output
                .network
                .layers
                .iter()
                .map(|l| l.continuation_state())
                .collect(),
        };
        let json = serde_json::to_string(&state).context("serialising run state")?;
        write_atomic(&dir.join(RUN_STATE_FILE), json.as_bytes())?;
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
            "status: {:?}, test accuracy {acc}, Lipschitz {}, {:.0} training samples/s",
            result.status,
            result
                .lipschitz
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            result.samples_per_second
        );
        if let Some(d) = &result.diverged_at {
            println!(
                "diverged at epoch {}, batch {}, layer {}: {} ({:.3e})",
                d.epoch, d.batch, d.layer, d.reason, d.value
            );
        }
    }
    Ok(())
}
