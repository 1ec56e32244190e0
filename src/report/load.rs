//! Reading report inputs: a sweep's JSON-lines file, a sweep directory or a
//! single `dyadsim train --out DIR` run directory, all into [`Dataset`].
//! Configurations and results are read into their types ([`Config`],
//! [`RunResult`]); both deserialise with defaults for fields that older
//! files lack, so a report still renders for results written before the
//! schema grew. A record that does not parse is left out with a warning.

use crate::experiment::result::EpochRecord;
use crate::experiment::sweep::{JobStatus, ResultStore};
use crate::experiment::{Config, RunResult};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub use crate::experiment::sweep::{StoredSettings, REPORT_SETTINGS_FILE};

/// One run to report on.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Grid index (0 for a single run).
    pub job: usize,
    /// Axis values (path, value) in axis order.
    pub axes: Vec<(String, Value)>,
    /// `ok`, `diverged` or `failed`.
    pub status: JobStatus,
    /// Error message of a failed job.
    pub error: Option<String>,
    /// Complete configuration.
    pub config: Config,
    /// The run's result (absent for failed jobs).
    pub result: Option<RunResult>,
}

/// A number of a run's result (`|r| r.lipschitz`…).
pub type ResultMetric = fn(&RunResult) -> Option<f64>;

/// A number of one epoch's record (`|e| e.test_accuracy`…).
pub type EpochMetric = fn(&EpochRecord) -> Option<f64>;

impl Run {
    /// `ok`, `diverged` or `failed`, as the report prints it.
    pub fn status_label(&self) -> &'static str {
        match self.status {
            JobStatus::Ok => "ok",
            JobStatus::Diverged => "diverged",
            JobStatus::Failed => "failed",
        }
    }

    /// A finite number of the result (`None` without a result).
    pub fn metric(&self, metric: ResultMetric) -> Option<f64> {
        metric(self.result.as_ref()?).filter(|x| x.is_finite())
    }

    /// Per-epoch finite values of an epoch field, `(epoch, value)`.
    pub fn epoch_series(&self, metric: EpochMetric) -> Vec<(f64, f64)> {
        let Some(result) = &self.result else {
            return Vec::new();
        };
        result
            .epochs
            .iter()
            .filter_map(|e| {
                let y = metric(e).filter(|y| y.is_finite())?;
                Some((e.epoch as f64, y))
            })
            .collect()
    }

    /// Mean of an epoch field over the epochs that have it.
    pub fn epoch_mean(&self, metric: EpochMetric) -> Option<f64> {
        let s = self.epoch_series(metric);
        (!s.is_empty()).then(|| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64)
    }

    /// The value of an axis.
    pub fn axis(&self, path: &str) -> Option<&Value> {
        self.axes.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    /// `learning.alpha = 0.5, seed = 1` (or `run` for a single run).
    pub fn label(&self) -> String {
        if self.axes.is_empty() {
            return "run".into();
        }
        self.axes
            .iter()
            .map(|(p, v)| format!("{p}={}", fmt_value(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A value as a short string (strings unquoted).
pub fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Everything a report is made from.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// What was read.
    pub source: String,
    /// The runs (one per config hash).
    pub runs: Vec<Run>,
    /// Axis paths in grid order.
    pub axis_order: Vec<String>,
    /// Settings stored beside the results, if any.
    pub settings: Option<StoredSettings>,
    /// Lines that could not be read.
    pub warnings: Vec<String>,
    /// The run directory's `infer.json` (`dyadsim infer`), if it has one.
    pub inference: Option<crate::experiment::infer::InferResult>,
}

fn load_run_dir(dir: &Path) -> Result<Dataset> {
    let result_path = dir.join("result.json");
    let text = std::fs::read_to_string(&result_path)
        .with_context(|| format!("cannot read {}", result_path.display()))?;
    let result: RunResult = serde_json::from_str(&text)
        .with_context(|| format!("invalid result in {}", result_path.display()))?;
    let config_path = dir.join("config.toml");
    let config = if config_path.exists() {
        Config::from_file(&config_path)?
    } else {
        Config::default()
    };
    let mut warnings = Vec::new();
    let infer_path = dir.join(crate::experiment::infer::INFER_FILE);
    let inference = if infer_path.is_file() {
        match crate::experiment::infer::read_result(&infer_path) {
            Ok(r) => Some(r),
            Err(e) => {
                warnings.push(format!("{e:#} (left out of the report)"));
                None
            }
        }
    } else {
        None
    };
    let status = match result.status {
        crate::experiment::result::RunStatus::Ok => JobStatus::Ok,
        crate::experiment::result::RunStatus::Diverged => JobStatus::Diverged,
    };
    Ok(Dataset {
        source: dir.display().to_string(),
        runs: vec![Run {
            job: 0,
            axes: Vec::new(),
            status,
            error: None,
            config,
            result: Some(result),
        }],
        warnings,
        inference,
        ..Default::default()
    })
}

fn load_jsonl(paths: &[PathBuf], source: String) -> Result<Dataset> {
    // The store's dedupe rule applies across files (finished beats failed,
    // else the last record read).
    let mut store = ResultStore::default();
    let mut warnings = Vec::new();
    for p in paths {
        let file = ResultStore::open_read_only(p)?;
        warnings.extend(file.warnings.iter().cloned());
        for r in file.records {
            store.insert(r);
        }
    }
    let mut axis_order: Vec<String> = Vec::new();
    let runs = store
        .unique()
        .into_iter()
        .filter_map(|r| {
            let config: Config = match serde_json::from_value(r.config.clone()) {
                Ok(c) => c,
                Err(e) => {
                    warnings.push(format!(
                        "job {}: configuration not readable ({e}); left out",
                        r.job
                    ));
                    return None;
                }
            };
            let result: Option<RunResult> =
                match r.result.clone().map(serde_json::from_value).transpose() {
                    Ok(res) => res,
                    Err(e) => {
                        warnings.push(format!(
                            "job {}: result not readable ({e}); left out",
                            r.job
                        ));
                        return None;
                    }
                };
            let order: Vec<String> = if r.axis_order.is_empty() {
                r.axes.keys().cloned().collect()
            } else {
                r.axis_order.clone()
            };
            for p in &order {
                if !axis_order.contains(p) {
                    axis_order.push(p.clone());
                }
            }
            Some(Run {
                job: r.job,
                axes: order
                    .iter()
                    .filter_map(|p| Some((p.clone(), r.axes.get(p)?.clone())))
                    .collect(),
                status: r.status,
                error: r.error.clone(),
                config,
                result,
            })
        })
        .collect();
    Ok(Dataset {
        source,
        runs,
        axis_order,
        settings: None,
        warnings,
        inference: None,
    })
}

/// Reads `RESULTS.jsonl`, a sweep directory (its `results*.jsonl`) or a
/// run directory (`result.json` + `config.toml`).
pub fn load(path: &Path) -> Result<Dataset> {
    let mut data = if path.is_dir() {
        if path.join("result.json").exists() {
            load_run_dir(path)?
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!(
                    "{} holds neither result.json (a run directory) nor *.jsonl files (a sweep directory)",
                    path.display()
                );
            }
            load_jsonl(&files, path.display().to_string())?
        }
    } else {
        load_jsonl(&[path.to_path_buf()], path.display().to_string())?
    };
    let dir = if path.is_dir() {
        Some(path.to_path_buf())
    } else {
        path.parent().map(Path::to_path_buf)
    };
    if let Some(dir) = dir {
        let settings_path = dir.join(REPORT_SETTINGS_FILE);
        if settings_path.exists() {
            let text = std::fs::read_to_string(&settings_path)
                .with_context(|| format!("cannot read {}", settings_path.display()))?;
            let mut settings: crate::experiment::sweep::StoredSettings = toml::from_str(&text)
                .with_context(|| format!("invalid {}", settings_path.display()))?;
            // A technology stored beside the results (`technology.toml`)
            // is named relative to them, so the directory can move.
            if let Some(t) = &mut settings.report.technology {
                if t.is_relative() && dir.join(&*t).exists() {
                    *t = dir.join(&*t);
                }
            }
            data.settings = Some(settings);
        }
    }
    if data.runs.is_empty() {
        bail!("{}: no finished runs to report on", path.display());
    }
    Ok(data)
}
