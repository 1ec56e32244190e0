//! The paper's tables (Høier & Zach 2024): Table 1 (accuracy and Lipschitz
//! estimate of DP, DP⊤ and BP for α ∈ {1, ½, 0} with strong feedback β = ½)
//! and Table 2 (784-1000×4-10: DP diverges with asymmetric nudging and
//! repeated inference, DP⊤ does not).
//!
//! Each table is a list of rows, each row a set of configuration
//! assignments on top of the table's base; [`run_table`] trains them one
//! after the other and collects the results. A full-size table takes
//! hours, so every finished row is handed to the caller to record, and a
//! rerun reuses the recorded rows whose complete configuration (by hash)
//! is unchanged.

use super::config::{Config, DatasetName};
use super::provenance::Provenance;
use super::result::{RunResult, RunStatus};
use super::sweep::config_hash;
use super::train::run;
use crate::data::load;
use crate::numbers::{duration_words, significant};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One row of a reproduction table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableRow {
    /// Dataset.
    pub dataset: String,
    /// Method label as in the paper (e.g. `DP⊤ α=½`).
    pub method: String,
    /// Configuration assignments that define the row.
    pub settings: Vec<String>,
    /// What the run measured.
    pub result: RunResult,
    /// SHA-256 of the row's complete configuration: a recorded row is
    /// reused only for the identical configuration.
    #[serde(default)]
    pub config_hash: String,
    /// Wall time of the row's training and evaluation, seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Where and when the row was run.
    #[serde(default)]
    pub provenance: Provenance,
}

/// A finished table.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    /// `table1` or `table2`.
    pub name: String,
    /// What the paper reports for this table, in words.
    pub paper_expectation: String,
    /// The rows.
    pub rows: Vec<TableRow>,
    /// Wall time of all rows together, seconds (recorded rows count with
    /// the time they took when they ran).
    pub seconds_total: f64,
    /// Assignments applied to every row on top of the paper's settings
    /// (e.g. `training.epochs=1` for a shortened table; the data directory
    /// is not listed, it does not change the run).
    #[serde(default)]
    pub common_settings: Vec<String>,
}

/// A row specification: label and assignments.
pub type RowSpec = (String, Vec<String>);

/// Rows of Table 1 (per dataset): DP (α ≠ ½ with damped updates, as the
/// paper does), DP⊤, BP, FGSM adversarial BP and input-robust DP.
pub fn table1_rows() -> Vec<RowSpec> {
    let mut rows = Vec::new();
    for (label, alpha) in [("1", "1"), ("½", "0.5"), ("0", "0")] {
        let rule = if alpha == "0.5" { "dp" } else { "dp-damped" };
        rows.push((
            format!("DP α={label}"),
            vec![
                format!("learning.rule=\"{rule}\""),
                format!("learning.alpha={alpha}"),
            ],
        ));
    }
    for (label, alpha) in [("1", "1"), ("½", "0.5"), ("0", "0")] {
        rows.push((
            format!("DP⊤ α={label}"),
            vec![
                "learning.rule=\"dpt\"".into(),
                format!("learning.alpha={alpha}"),
            ],
        ));
    }
    rows.push(("BP".into(), vec!["learning.rule=\"bp\"".into()]));
    rows.push((
        "BP + FGSM".into(),
        vec![
            "learning.rule=\"bp-adv\"".into(),
            "learning.adv=\"fgsm\"".into(),
            "learning.adv_epsilon=0.05".into(),
        ],
    ));
    rows.push((
        "DP α=0 + input robustness".into(),
        vec![
            "learning.rule=\"dp-damped\"".into(),
            "learning.alpha=0".into(),
            "learning.robust_input=true".into(),
        ],
    ));
    rows
}

/// Rows of Table 2: DP vs DP⊤, α ∈ {0, 1}, 1 vs 30 inference iterations.
pub fn table2_rows() -> Vec<RowSpec> {
    let mut rows = Vec::new();
    for alpha in ["0", "1"] {
        for rule in ["dp", "dpt"] {
            for k in [1, 30] {
                let name = if rule == "dp" { "DP" } else { "DP⊤" };
                rows.push((
                    format!(
                        "{name} α={alpha}, {k} iteration{}",
                        if k == 1 { "" } else { "s" }
                    ),
                    vec![
                        format!("learning.rule=\"{rule}\""),
                        format!("learning.alpha={alpha}"),
                        format!("learning.schedule=\"fwbw:{k}\""),
                    ],
                ));
            }
        }
    }
    rows
}

/// The base configuration of Table 1: 784-512-512-10 ReLU, least squares,
/// Adam 1e-3, batch 50, β = ½, 20 epochs.
pub fn table1_base() -> Config {
    let mut c = Config::default();
    c.network.arch = "784-512-512-10".into();
    c.learning.beta = 0.5;
    c.training.epochs = 20;
    c.training.batch = 50;
    c
}

/// The base configuration of Table 2: 784-1000×4-10, β = ½; a run whose
/// states run away is stopped and reported as diverged.
pub fn table2_base() -> Config {
    let mut c = table1_base();
    c.network.arch = "784-1000x4-10".into();
    c.training.epochs = 3;
    c.divergence.stop_on_runaway = true;
    c
}

/// Trains every row on every dataset; `extra` assignments (e.g. `--epochs`)
/// apply to all rows. A row whose configuration hash matches one of
/// `recorded` is taken from there instead of trained; every newly trained
/// row is passed to `record` as soon as it is finished. `progress` is told
/// each row's label before it runs and its result after.
#[allow(clippy::too_many_arguments)]
pub fn run_table(
    name: &str,
    expectation: &str,
    base: &Config,
    datasets: &[DatasetName],
    rows: &[RowSpec],
    extra: &[String],
    recorded: &[TableRow],
    record: &mut dyn FnMut(&TableRow) -> Result<()>,
    progress: &mut dyn FnMut(&str, Option<&RunResult>),
) -> Result<Table> {
    let mut out = Vec::new();
    for &dataset in datasets {
        let mut data_cfg = base.data.clone();
        data_cfg.dataset = dataset;
        let mut probe = base.clone();
        probe.data = data_cfg;
        for e in extra {
            probe.set(e)?;
        }
        // Loaded on the first row that has to be trained: a rerun of a
        // finished table needs no dataset.
        let mut data = None;
        for (label, settings) in rows {
            let mut cfg = probe.clone();
            for s in settings.iter().chain(extra) {
                cfg.set(s).with_context(|| format!("row '{label}'"))?;
            }
            let valid = cfg.check().with_context(|| format!("row '{label}'"))?;
            let hash = config_hash(valid.raw())?;
            let ds = dataset.to_string();
            let tag = format!("{ds}: {label}");
            if let Some(done) = recorded.iter().find(|r| r.config_hash == hash) {
                progress(&format!("{tag} (recorded)"), Some(&done.result));
                out.push(TableRow {
                    method: label.clone(),
                    settings: settings.clone(),
                    ..done.clone()
                });
                continue;
            }
            let data = match &mut data {
                Some(d) => d,
                None => data.insert(load(&probe.data)?),
            };
            progress(&tag, None);
            let started = Instant::now();
            let result = run(&valid, data, &mut [])?.result;
            let row = TableRow {
                dataset: ds,
                method: label.clone(),
                settings: settings.clone(),
                result,
                config_hash: hash,
                seconds: started.elapsed().as_secs_f64(),
                provenance: Provenance::now(),
            };
            progress(&tag, Some(&row.result));
            record(&row)?;
            out.push(row);
        }
    }
    Ok(Table {
        name: name.into(),
        paper_expectation: expectation.into(),
        seconds_total: out.iter().map(|r| r.seconds).sum(),
        rows: out,
        common_settings: extra
            .iter()
            .filter(|a| !a.starts_with("data.data_dir"))
            .cloned()
            .collect(),
    })
}

/// The accuracy cell: percentage, or `diverged (epoch e, batch b, layer l)`.
pub fn accuracy_cell(r: &RunResult) -> String {
    match (&r.status, &r.diverged_at, r.test_accuracy) {
        (RunStatus::Diverged, Some(d), _) => format!(
            "diverged (epoch {}, batch {}, layer {})",
            d.epoch, d.batch, d.layer
        ),
        (_, _, Some(a)) => format!("{:.2}", 100.0 * a),
        _ => "n/a".into(),
    }
}

impl Table {
    /// The table as Markdown (one line per row).
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Reproduction of {}\n\n{}\n\n",
            self.name, self.paper_expectation
        );
        if !self.common_settings.is_empty() {
            let list: Vec<String> = self
                .common_settings
                .iter()
                .map(|a| format!("`{a}`"))
                .collect();
            s.push_str(&format!(
                "**A shortened table:** every row ran with {} on top of the paper's settings.\n\n",
                list.join(", ")
            ));
        }
        s.push_str("| dataset | method | test accuracy (%) | Lipschitz estimate | max \\|s\\| | epochs | time |\n|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.dataset,
                r.method,
                accuracy_cell(&r.result),
                r.result
                    .lipschitz
                    .map(|l| format!("{l:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
                significant(r.result.max_state, 3),
                r.result.epochs.len(),
                duration_words(r.seconds)
            ));
        }
        let machine = self.rows.iter().rev().find_map(|r| {
            let p = &r.provenance;
            p.cpu
                .as_ref()
                .map(|cpu| format!("{cpu}, {} cores, dyadsim {}", p.cores, p.dyadsim_version))
        });
        let last_date = self
            .rows
            .iter()
            .map(|r| r.provenance.date_utc.as_str())
            .max()
            .unwrap_or("");
        s.push_str(&format!(
            "\nAll rows together took {} (rows one after the other){}{}.\n",
            duration_words(self.seconds_total),
            machine.map(|m| format!(" on {m}")).unwrap_or_default(),
            if last_date.is_empty() {
                String::new()
            } else {
                format!("; last row finished {last_date}")
            }
        ));
        s
    }
}
