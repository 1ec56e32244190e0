//! `results.csv`: one row per job of a sweep (or the one run of a run
//! directory) for pandas or a spreadsheet — the axes, the status, the
//! accuracies and speed, and the feasibility estimate's energy terms,
//! latency, area and lifetimes (SI units; empty where a value is missing).

use super::feasibility::{estimate, RunCounts};
use super::load::{fmt_value, Dataset};
use super::technology::Technology;
use anyhow::{Context, Result};
use std::path::Path;

/// The columns after the axes.
const COLUMNS: [&str; 19] = [
    "job",
    "status",
    "error",
    "test_accuracy",
    "validation_accuracy",
    "train_accuracy",
    "epochs",
    "samples_per_second",
    "energy_read_j",
    "energy_lines_j",
    "energy_adc_j",
    "energy_dac_j",
    "energy_write_j",
    "energy_neuron_j",
    "energy_total_j",
    "energy_digital_baseline_j",
    "latency_s",
    "lifetime_1pct_epochs",
    "lifetime_median_epochs",
];

/// Writes `results.csv` for `data` (energies with `tech`) to `path`,
/// atomically.
pub fn write_results_csv(data: &Dataset, tech: &Technology, path: &Path) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = data.axis_order.clone();
    header.extend(COLUMNS.iter().map(|c| c.to_string()));
    w.write_record(&header).context("results.csv header")?;
    let num = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    for r in &data.runs {
        let mut row: Vec<String> = data
            .axis_order
            .iter()
            .map(|a| r.axis(a).map_or_else(String::new, fmt_value))
            .collect();
        let est = r
            .result
            .as_ref()
            .and_then(|res| RunCounts::from_run(&r.config, res).ok())
            .map(|c| estimate(&c, &tech.params));
        let term =
            |f: fn(&super::feasibility::Estimate) -> Option<f64>| num(est.as_ref().and_then(f));
        let res = r.result.as_ref();
        row.extend([
            r.job.to_string(),
            r.status.to_string(),
            r.error.clone().unwrap_or_default(),
            num(res.and_then(|x| x.test_accuracy)),
            num(res.and_then(|x| x.validation_accuracy)),
            num(res.and_then(|x| x.train_accuracy)),
            res.map_or_else(String::new, |x| x.epochs.len().to_string()),
            num(res.map(|x| x.samples_per_second)),
            term(|e| e.read_energy_j.value),
            term(|e| e.line_energy_j.value),
            term(|e| e.adc_energy_j.value),
            term(|e| e.dac_energy_j.value),
            term(|e| e.write_energy_j.value),
            term(|e| e.neuron_energy_j.value),
            term(|e| e.total_energy_j.value),
            term(|e| e.digital_energy_j.value),
            term(|e| e.latency_s.value),
            term(|e| e.lifetime_1pct_epochs.value),
            term(|e| e.lifetime_median_epochs.value),
        ]);
        w.write_record(&row).context("results.csv row")?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("results.csv: {e}"))?;
    crate::experiment::run_dir::write_atomic(path, &bytes)
}

/// The technology a report of `data` uses: `technology` if given, else the
/// one stored with the sweep, else the default.
pub fn technology_for(data: &Dataset, technology: Option<&Path>) -> Result<Technology> {
    let stored = data
        .settings
        .as_ref()
        .and_then(|s| s.report.technology.clone());
    match technology.map(Path::to_path_buf).or(stored) {
        Some(p) => Technology::load(&p),
        None => Technology::from_toml_str(super::DEFAULT_TECHNOLOGY, "reram_taox_32nm")
            .context("built-in technology"),
    }
}
