//! The `dyadsim` command line: a thin layer over the library.

use clap::{Parser, Subcommand};

mod cli;

/// dyadsim — analog-crossbar hardware model and on-chip training emulator
/// for dual propagation (DP) and DP⊤.
#[derive(Parser, Debug)]
#[command(
    name = "dyadsim",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 when the command did its work (a diverged training run is a result: its status says so), 2 on an error (the message names the flag, field or file)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a network (digital or crossbar substrate; discrete or ODE inference).
    Train(cli::train::TrainArgs),
    /// Evaluate a trained crossbar run at times after programming (drift, programming error, compensation).
    Infer(cli::infer::InferArgs),
    /// Angle between a rule's weight gradient and exact back-propagation's on one batch.
    Angle(cli::angle::AngleArgs),
    /// Reproduce the paper's Table 1 or Table 2 (Markdown and JSON output).
    Reproduce(cli::reproduce::ReproduceArgs),
    /// List the device models, or show one's parameters and pulse-response plot.
    Devices(cli::devices::DevicesArgs),
    /// Settle one batch with the continuous-time neuron circuit; write trajectories (CSV, plot).
    Settle(cli::settle::SettleArgs),
    /// Run a grid of training jobs from a sweep spec (parallel, resumable, shardable).
    Sweep(cli::sweep::SweepArgs),
    /// Combine sweep shard result files (one line per configuration hash).
    Merge(cli::sweep::MergeArgs),
    /// Figures, Markdown/HTML report and hardware feasibility from sweep or run results.
    Report(cli::report::ReportArgs),
    /// Runs sweep jobs sent on stdin (started by `dyadsim sweep`, one per parallel job).
    #[command(hide = true)]
    SweepWorker,
}

fn main() {
    let parsed = Cli::parse();
    let outcome = match &parsed.command {
        Command::Train(a) => cli::train::run_train(a),
        Command::Infer(a) => cli::infer::run(a),
        Command::Angle(a) => cli::angle::run_angle(a),
        Command::Reproduce(a) => cli::reproduce::run_reproduce(a),
        Command::Devices(a) => cli::devices::run(a),
        Command::Settle(a) => cli::settle::run(a),
        Command::Sweep(a) => cli::sweep::run(a),
        Command::Merge(a) => cli::sweep::merge(a),
        Command::Report(a) => cli::report::run(a),
        Command::SweepWorker => dyadsim::experiment::sweep::worker::serve(
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        ),
    };
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
