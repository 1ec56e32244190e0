//! Where and when a result was made: dyadsim's version and git commit
//! (when built from a checkout), the date (UTC) and the machine. Every
//! sweep record and every run directory's manifest carries one.

use serde::{Deserialize, Serialize};

/// The provenance of one result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Provenance {
    /// `CARGO_PKG_VERSION` of the build.
    pub dyadsim_version: String,
    /// Short git commit of the build, when it was built from a checkout.
    pub git_commit: Option<String>,
    /// When the result was written, UTC, ISO 8601 (`2026-12-02T06:21:08Z`).
    pub date_utc: String,
    /// Host name (`/proc/sys/kernel/hostname`), when readable.
    pub host: Option<String>,
    /// CPU model (`/proc/cpuinfo`), when readable.
    pub cpu: Option<String>,
    /// Cores available to the process.
    pub cores: usize,
}

impl Provenance {
    /// The provenance of a result written now, by this process.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            dyadsim_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: option_env!("DYADSIM_GIT_COMMIT").map(str::to_string),
            date_utc: iso_utc(secs),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            cpu: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            }),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` of seconds since the Unix epoch (the proleptic
/// Gregorian calendar; days to civil date after H. Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms").
pub fn iso_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::iso_utc;

    #[test]
    fn dates_match_known_instants() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400`: the leap day of 2000.
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(iso_utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
