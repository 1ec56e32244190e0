//! `dyadsim angle`: the angle between a rule's gradient and exact BP's on one fixed batch.

use super::common::RunArgs;
use anyhow::{Context, Result};
use clap::Args;
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::Mat;
use dyadsim::metrics::gradient_angle;
use dyadsim::rules::learner::Learner;

/// Arguments of `dyadsim angle`.
#[derive(Args, Debug, Clone)]
pub struct AngleArgs {
    /// Network and rule settings (the network is taken at initialisation).
    #[command(flatten)]
    pub run: RunArgs,
    /// Print `{"angle_deg": …, "per_layer_deg": […]}` as the last line.
    #[arg(long)]
    pub json: bool,
}

/// What `dyadsim angle` does not use of the training flags: it compares
/// one batch's gradients at initialisation, with the discrete schedule.
const UNUSED: &[(&str, &str)] = &[
    (
        "training.epochs",
        "the angle is taken on one batch, without training",
    ),
    (
        "optimizer",
        "the angle compares gradients; no optimiser step is taken",
    ),
    ("data.test_size", "the batch comes from the training split"),
    (
        "training.dynamics",
        "the angle uses the discrete inference schedule",
    ),
    (
        "circuit",
        "the angle uses the discrete inference schedule, not the circuit",
    ),
];

/// Runs `dyadsim angle` on the first `training.batch` training images.
pub fn run_angle(args: &AngleArgs) -> Result<()> {
    let cfg = args.run.resolve_raw_for("angle", UNUSED)?.check()?;
    let data = dyadsim::data::load(&cfg.raw().data)?;
    let mut net = build_network(&cfg)?;
    let mut learner = Learner::new(cfg.learning());
    let indices: Vec<usize> = (0..cfg.raw().training.batch.min(data.train.len())).collect();
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    data.train
        .batch(&indices, cfg.arch().outputs(), &mut x, &mut y);
    let angle = gradient_angle(&mut net, &mut learner, &x, &y);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&angle).context("serialising angle")?
        );
    } else {
        println!(
            "angle to BP: {:.4}° (per layer: {})",
            angle.angle_deg,
            angle
                .per_layer_deg
                .iter()
                .map(|a| format!("{a:.4}°"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
