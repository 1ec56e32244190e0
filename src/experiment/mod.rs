//! Experiments: configuration, the training loop and result files.

pub mod config;
pub mod infer;
pub mod npz;
pub mod provenance;
pub mod result;
pub mod run_dir;
pub mod sweep;

pub use config::{Config, ValidConfig};
pub use result::RunResult;
pub mod reproduce;
pub mod train;
