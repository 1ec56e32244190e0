//! The `dyadsim` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use dyadsim::cli;

/// dyadsim — analog-crossbar hardware model and on-chip training emulator
/// for dual propagation (DP) and DP⊤.
#[derive(Parser, Debug)]
#[command(name = "dyadsim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a network (digital or crossbar substrate; discrete or ODE inference).
    Train(cli::train::TrainArgs),
    /// Angle between a rule's weight gradient and exact back-propagation's on one batch.
    Angle(cli::angle::AngleArgs),
    /// Run a grid of training jobs from a sweep spec (parallel, resumable, shardable).
    Sweep(cli::sweep::SweepArgs),
    /// Combine sweep shard result files (one line per configuration hash).
    Merge(cli::sweep::MergeArgs),
    /// Figures, Markdown/HTML report and hardware feasibility from sweep or run results.
    Report(cli::report::ReportArgs),
}

fn main() {
    let parsed = Cli::parse();
    let outcome = match &parsed.command {
        Command::Train(a) => cli::train::run_train(a),
        Command::Angle(a) => cli::angle::run_angle(a),
        Command::Sweep(a) => cli::sweep::run(a),
        Command::Merge(a) => cli::sweep::merge(a),
        Command::Report(a) => cli::report::run(a),
    };
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
