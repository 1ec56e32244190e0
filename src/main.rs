//! The `dyadsim` command line.
use clap::{Parser, Subcommand};
use dyadsim::cli;

/// Analog-crossbar hardware model and on-chip training emulator for dual propagation.
#[derive(Parser, Debug)]
#[command(name = "dyadsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a grid of training jobs from a sweep spec (parallel, resumable, shardable).
    Sweep(cli::sweep::SweepArgs),
    /// Combine sweep shard result files.
    Merge(cli::sweep::MergeArgs),
    /// Figures, Markdown/HTML report and hardware feasibility from results.
    Report(cli::report::ReportArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Sweep(a) => cli::sweep::run(a),
        Command::Merge(a) => cli::sweep::merge(a),
        Command::Report(a) => cli::report::run(a),
    }
}
