//! The dyadic neuron circuit in continuous time (placeholder until it lands).
use serde::{Deserialize, Serialize};

/// Circuit settings (TOML `[circuit]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {}
