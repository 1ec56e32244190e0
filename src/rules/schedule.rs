//! Inference schedules: the order in which layers are updated while the
//! dyadic states settle (DESIGN.md §1, "Inference schedules").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An inference schedule, written `fwbw:K`, `forward:K` or `jacobi:K`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Schedule {
    /// The authors' reference schedule: forward init and output nudge; then
    /// K−1 rounds of [backward sweep H..1 with stored drives; forward sweep
    /// k = 2..H recomputing drives; recompute and re-nudge the output]; then
    /// a final backward sweep. `fwbw:1` is the single BP-like pass.
    FwBw {
        /// K ≥ 1.
        rounds: usize,
    },
    /// K forward-only sweeps k = 1..L, each layer using the feedback of the
    /// layer above from the previous sweep (the paper's VGG runs, K = 17).
    Forward {
        /// K ≥ 1.
        sweeps: usize,
    },
    /// K synchronous updates of every layer from the previous states: the
    /// discrete picture of the continuous-time circuit (DESIGN.md §3).
    Jacobi {
        /// K ≥ 1.
        iterations: usize,
    },
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::FwBw { rounds } => write!(f, "fwbw:{rounds}"),
            Schedule::Forward { sweeps } => write!(f, "forward:{sweeps}"),
            Schedule::Jacobi { iterations } => write!(f, "jacobi:{iterations}"),
        }
    }
}

/// The largest K of a schedule: far beyond any useful inference (the
/// paper's schedules use K ≤ 30), small enough that a typo cannot make a
/// run that never ends.
pub const MAX_ROUNDS: usize = 10_000;

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            format!("invalid schedule '{s}': expected fwbw:K, forward:K or jacobi:K with K an integer ≥ 1")
        };
        let (name, count) = s.trim().split_once(':').ok_or_else(err)?;
        let k: usize = count.trim().parse().map_err(|_| err())?;
        if k == 0 {
            return Err(err());
        }
        if k > MAX_ROUNDS {
            return Err(format!(
                "invalid schedule '{s}': K = {k} exceeds {MAX_ROUNDS} (each round is a pass over every layer of every batch; the paper's schedules use K ≤ 30)"
            ));
        }
        match name.trim() {
            "fwbw" => Ok(Schedule::FwBw { rounds: k }),
            "forward" => Ok(Schedule::Forward { sweeps: k }),
            "jacobi" => Ok(Schedule::Jacobi { iterations: k }),
            _ => Err(err()),
        }
    }
}

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["fwbw:6", "forward:17", "jacobi:100"] {
            assert_eq!(s.parse::<Schedule>().unwrap().to_string(), s);
        }
        assert!("fwbw:0".parse::<Schedule>().is_err());
        assert!("fwbw".parse::<Schedule>().is_err());
        assert!("sideways:3".parse::<Schedule>().is_err());
    }
}
