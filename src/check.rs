//! The checks configuration sections share: each error names the field, its
//! value and the allowed range (a section's own `check` calls these, and
//! `Config::check` calls every section's, once, before any work starts).

use anyhow::{bail, Result};

/// Error naming `field` unless `value` is finite and within `[lo, hi]`;
/// `what` states the allowed range.
pub fn check_range(field: &str, value: f64, lo: f64, hi: f64, what: &str) -> Result<()> {
    if !(value.is_finite() && value >= lo && value <= hi) {
        bail!("{field} = {value} is out of range: {what}");
    }
    Ok(())
}

/// Error naming `field` unless `value` is finite and strictly positive.
pub fn check_positive(field: &str, value: f32) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{field} = {value} is out of range: must be a finite number > 0");
    }
    Ok(())
}
