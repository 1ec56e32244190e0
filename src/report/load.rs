//! Reading report inputs: a sweep's JSON-lines file, a sweep directory or a
//! single `dyadsim train --out DIR` run directory, all into [`Dataset`].
//! Results are kept as JSON values and read field by field, so a report
//! still renders when the result schema has grown or lost a field.

use crate::experiment::sweep::ResultStore;
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
    pub status: String,
    /// Error message of a failed job.
    pub error: Option<String>,
    /// Complete configuration as JSON.
    pub config: Value,
    /// `RunResult` as JSON (absent for failed jobs).
    pub result: Option<Value>,
}

impl Run {
    /// A top-level number of the result (`test_accuracy`, `lipschitz`…).
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.result
            .as_ref()?
            .get(key)?
            .as_f64()
            .filter(|x| x.is_finite())
    }

    /// Per-epoch values of an epoch field, `(epoch, value)`.
    pub fn epoch_series(&self, key: &str) -> Vec<(f64, f64)> {
        let Some(epochs) = self
            .result
            .as_ref()
            .and_then(|r| r.get("epochs"))
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        epochs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let x = e
                    .get("epoch")
                    .and_then(Value::as_f64)
                    .unwrap_or(i as f64 + 1.0);
                let y = e.get(key)?.as_f64().filter(|y| y.is_finite())?;
                Some((x, y))
            })
            .collect()
    }

    /// Mean of an epoch field over the epochs that have it.
    pub fn epoch_mean(&self, key: &str) -> Option<f64> {
        let s = self.epoch_series(key);
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
}

fn toml_file_as_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid TOML in {}", path.display()))?;
    serde_json::to_value(table).context("configuration to JSON")
}

fn load_run_dir(dir: &Path) -> Result<Dataset> {
    let result_path = dir.join("result.json");
    let text = std::fs::read_to_string(&result_path)
        .with_context(|| format!("cannot read {}", result_path.display()))?;
    let result: Value = serde_json::from_str(&text)
        .with_context(|| format!("invalid JSON in {}", result_path.display()))?;
    let config_path = dir.join("config.toml");
    let config = if config_path.exists() {
        toml_file_as_json(&config_path)?
    } else {
        Value::Object(Default::default())
    };
    let status = result
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("ok")
        .to_string();
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
        .map(|r| {
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
            Run {
                job: r.job,
                axes: order
                    .iter()
                    .filter_map(|p| Some((p.clone(), r.axes.get(p)?.clone())))
                    .collect(),
                status: serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                error: r.error.clone(),
                config: r.config.clone(),
                result: r.result.clone(),
            }
        })
        .collect();
    Ok(Dataset {
        source,
        runs,
        axis_order,
        settings: None,
        warnings,
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
            data.settings = Some(
                toml::from_str(&text)
                    .with_context(|| format!("invalid {}", settings_path.display()))?,
            );
        }
    }
    if data.runs.is_empty() {
        bail!("{}: no finished runs to report on", path.display());
    }
    Ok(data)
}
