//! Command-line subcommands: one file per subcommand, each a
//! `#[derive(clap::Args)]` struct and a `run` function.

pub mod report;
pub mod sweep;
