//! `dyadsim train`: one run from a configuration.

use super::common::{write_atomic, RunArgs};
use super::progress::TerminalProgress;
use crate::experiment::train::{run, Observer};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

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
}

/// Runs `dyadsim train`.
pub fn run_train(args: &TrainArgs) -> Result<()> {
    let cfg = args.run.resolve()?;
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
            cfg.schedule,
            format!("{:?}", cfg.raw.training.substrate).to_lowercase(),
            cfg.raw.training.epochs
        );
    }
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress];
    let output = run(&cfg, &data, &mut observers)?;
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
            write_atomic(&dir.join("device_state.json"), json.as_bytes())?;
        }
        // The trained weights, so `dyadsim settle --from DIR` can load them.
        super::settle::save_parameters(dir, &output.network)?;
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
