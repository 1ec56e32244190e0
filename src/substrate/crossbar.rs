//! The crossbar substrate (placeholder until the crossbar model lands).
use serde::{Deserialize, Serialize};

/// Crossbar, periphery and controller settings (TOML `[crossbar]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrossbarConfig {}
