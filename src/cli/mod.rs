//! The command-line interface: one file per subcommand; shared flags here.

pub mod angle;
pub mod common;
pub mod devices;
pub mod infer;
pub mod progress;
pub mod report;
pub mod reproduce;
pub mod settle;
pub mod sweep;
pub mod train;
