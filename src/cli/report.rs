//! `dyadsim report`.

use anyhow::Result;
use dyadsim::report::feasibility::Requirements;
use dyadsim::report::{generate, ReportOptions};
use std::path::PathBuf;

/// Write figures (PNG, SVG), report.md and a self-contained report.html
/// from a sweep (results .jsonl file or sweep directory) or a run directory
/// (`dyadsim train --out DIR`), including a hardware-feasibility section.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// RESULTS.jsonl, a sweep output directory, or a run directory.
    pub input: PathBuf,
    /// Output directory of the report.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Technology: a shipped name (reram_taox_32nm, pcm_gst_32nm) or a
    /// technology file (default: the sweep's `report.technology`, else
    /// reram_taox_32nm).
    #[arg(long)]
    pub technology: Option<PathBuf>,
    /// Requirement: test accuracy ≥ this fraction (e.g. 0.9).
    #[arg(long)]
    pub require_accuracy: Option<f64>,
    /// Requirement: energy per training sample ≤ this many joules (e.g. 1e-6).
    #[arg(long)]
    pub require_energy: Option<f64>,
    /// Requirement: epochs until 1 % of devices reach endurance ≥ this.
    #[arg(long)]
    pub require_lifetime: Option<f64>,
    /// Report title.
    #[arg(long)]
    pub title: Option<String>,
}

/// `dyadsim report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let requirements = Requirements {
        accuracy_min: args.require_accuracy,
        energy_per_sample_max_j: args.require_energy,
        lifetime_min_epochs: args.require_lifetime,
    };
    requirements.validate()?;
    let summary = generate(
        &args.input,
        &ReportOptions {
            out: args.out.clone(),
            technology: args.technology.clone(),
            requirements,
            title: args.title.clone(),
        },
    )?;
    eprintln!(
        "report: {}, {} → {} and {}",
        dyadsim::report::count(summary.runs, "run"),
        dyadsim::report::count(summary.figures.len(), "figure file"),
        summary.markdown.display(),
        summary.html.display()
    );
    Ok(())
}
