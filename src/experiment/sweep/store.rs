//! The JSON-lines result file of a sweep: one line per finished job,
//! appended atomically, read back tolerantly.
//!
//! A line is written with a single `write` of the complete line (newline
//! included) on a file opened in append mode, under a mutex, followed by
//! `fsync`; a crash can therefore only leave a *truncated last line*, which
//! [`ResultStore::open`] drops (and cuts off the file, so the next append
//! starts on a clean line) — that job is simply run again. A job may have
//! several lines (a failed job retried with `--retry-failed`); the last one
//! counts.

use super::{describe_assignment, Job};
use crate::experiment::result::RunResult;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Outcome of one sweep job.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// The run finished with bounded states and weights.
    Ok,
    /// The run diverged (see `result.diverged_at`).
    Diverged,
    /// The job returned an error or panicked (see `error`).
    Failed,
}

impl std::fmt::Display for JobStatus {
    /// The name the configuration and result files use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobStatus::Ok => "ok",
            JobStatus::Diverged => "diverged",
            JobStatus::Failed => "failed",
        })
    }
}

/// One line of the results file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// Grid index of the job.
    pub job: usize,
    /// Config hash (SHA-256 hex of the canonical configuration).
    pub hash: String,
    /// The job's axis values, `{"learning.alpha": 0.5, …}`.
    pub axes: serde_json::Map<String, serde_json::Value>,
    /// Axis paths in grid order (the key order of `axes` is alphabetical).
    #[serde(default)]
    pub axis_order: Vec<String>,
    /// `ok`, `diverged` or `failed`.
    pub status: JobStatus,
    /// Error message of a failed job.
    #[serde(default)]
    pub error: Option<String>,
    /// The job's complete configuration.
    pub config: serde_json::Value,
    /// The run's result (`RunResult` as JSON; kept as a value so that the
    /// file stays readable when the result schema grows).
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Wall time of the job in seconds.
    pub wall_seconds: f64,
    /// `i/n` when written by a shard.
    #[serde(default)]
    pub shard: Option<String>,
    /// dyadsim version and commit, date and machine of the job (absent in
    /// records written before provenance was recorded).
    #[serde(default)]
    pub provenance: Option<crate::experiment::provenance::Provenance>,
}

impl JobRecord {
    /// Builds the record of a finished job.
    pub fn from_outcome(
        job: &Job,
        outcome: Result<RunResult>,
        wall_seconds: f64,
        shard: Option<String>,
    ) -> Result<Self> {
        let axes = job
            .axes
            .iter()
            .map(|(p, v)| Ok((p.clone(), serde_json::to_value(v)?)))
            .collect::<Result<serde_json::Map<_, _>>>()
            .context("axis values to JSON")?;
        let config = job.config.raw().to_json()?;
        let (status, error, result) = match outcome {
            Ok(r) => (
                r.status.into(),
                None,
                Some(serde_json::to_value(&r).context("result to JSON")?),
            ),
            Err(e) => (JobStatus::Failed, Some(format!("{e:#}")), None),
        };
        Ok(Self {
            job: job.index,
            hash: job.hash.clone(),
            axes,
            axis_order: job.axes.iter().map(|(p, _)| p.clone()).collect(),
            status,
            error,
            config,
            result,
            wall_seconds,
            shard,
            provenance: Some(crate::experiment::provenance::Provenance::now()),
        })
    }

    /// `learning.alpha = 0.5, seed = 2` (for messages).
    pub fn describe(&self) -> String {
        let axes: Vec<(String, toml::Value)> = self
            .axis_order
            .iter()
            .filter_map(|p| {
                let v = self.axes.get(p)?;
                Some((p.clone(), toml::Value::try_from(v).ok()?))
            })
            .collect();
        describe_assignment(&axes)
    }
}

/// The records of a results file, by config hash.
#[derive(Debug, Default)]
pub struct ResultStore {
    /// Every readable record in file order.
    pub records: Vec<JobRecord>,
    latest: HashMap<String, usize>,
    /// Lines that could not be read (line number, reason); those jobs rerun.
    pub warnings: Vec<String>,
}

impl ResultStore {
    /// Reads `path` (a missing file is an empty store). A final line without
    /// a newline is a write cut short by a crash: it is ignored and cut off
    /// the file. Unreadable complete lines are reported in `warnings` and
    /// ignored.
    pub fn open(path: &Path) -> Result<Self> {
        let mut store = Self::default();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if complete < bytes.len() {
            store.warnings.push(format!(
                "{}: dropped a truncated last line ({} bytes); that job will run again",
                path.display(),
                bytes.len() - complete
            ));
            let file = OpenOptions::new().write(true).open(path).with_context(|| {
                format!("cannot open {} to cut a truncated line", path.display())
            })?;
            file.set_len(complete as u64)
                .with_context(|| format!("cannot truncate {}", path.display()))?;
        }
        let text = String::from_utf8_lossy(&bytes[..complete]);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            store.insert_line(line, path, i + 1);
        }
        Ok(store)
    }

    /// Reads the complete lines appended to `path` after its first `from`
    /// bytes (what another process recorded meanwhile) into the store;
    /// returns how far the file is now read.
    pub fn read_appended(&mut self, path: &Path, from: u64) -> Result<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(from),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        file.seek(SeekFrom::Start(from))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        for line in bytes[..complete].split(|&b| b == b'\n') {
            if let Ok(text) = std::str::from_utf8(line) {
                if !text.trim().is_empty() {
                    if let Ok(r) = serde_json::from_str::<JobRecord>(text) {
                        self.insert(r);
                    }
                }
            }
        }
        Ok(from + complete as u64)
    }

    /// Parses one JSON line of `path` (1-based `line_number`) and adds it,
    /// or records a warning naming the file and line if it is unreadable.
    fn insert_line(&mut self, line: &str, path: &Path, line_number: usize) {
        match serde_json::from_str::<JobRecord>(line) {
            Ok(r) => self.insert(r),
            Err(e) => self.warnings.push(format!(
                "{}:{line_number}: unreadable record ({e})",
                path.display()
            )),
        }
    }

    /// Adds a record; it becomes the one that counts for its hash unless
    /// it is `failed` and a finished record exists.
    pub fn insert(&mut self, r: JobRecord) {
        let i = self.records.len();
        // A failed record never overrides a finished one (merge of a shard
        // that failed with one that later succeeded).
        let keep_old = self.latest.get(&r.hash).is_some_and(|&j| {
            self.records[j].status != JobStatus::Failed && r.status == JobStatus::Failed
        });
        if !keep_old {
            self.latest.insert(r.hash.clone(), i);
        }
        self.records.push(r);
    }

    /// The record that counts for a config hash.
    pub fn latest(&self, hash: &str) -> Option<&JobRecord> {
        self.latest.get(hash).map(|&i| &self.records[i])
    }

    /// Whether the job of `hash` still has to run: it has no record, or
    /// its record is `failed` and failed jobs are retried.
    pub fn needs_run(&self, hash: &str, retry_failed: bool) -> bool {
        match self.latest(hash) {
            None => true,
            Some(r) => retry_failed && r.status == JobStatus::Failed,
        }
    }

    /// One record per config hash, ordered by job index.
    pub fn unique(&self) -> Vec<&JobRecord> {
        let mut out: Vec<&JobRecord> = self.latest.values().map(|&i| &self.records[i]).collect();
        out.sort_by(|a, b| a.job.cmp(&b.job).then(a.hash.cmp(&b.hash)));
        out
    }
}

/// Appends records to a results file, one complete line per `write`.
#[derive(Debug)]
pub struct ResultWriter {
    file: Mutex<File>,
}

impl ResultWriter {
    /// Opens (creating) `path` in append mode.
    pub fn append(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Writes one record as one line and syncs it to disk.
    pub fn write(&self, record: &JobRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).context("record to JSON")?;
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("results file lock poisoned"))?;
        file.write_all(line.as_bytes())
            .context("appending to the results file")?;
        file.flush().context("flushing the results file")?;
        file.sync_data().context("syncing the results file")?;
        Ok(())
    }
}

/// Combines shard files into `out`: one line per config hash (a finished
/// record wins over a failed one, otherwise the last one read), ordered by
/// job index. Returns the number of records written.
pub fn merge_files(inputs: &[&Path], out: &Path) -> Result<usize> {
    let mut merged = ResultStore::default();
    // The axes of the first input: every shard of one sweep has the same.
    let mut axes: Option<(Vec<String>, &Path)> = None;
    for input in inputs {
        let store = ResultStore::open_read_only(input)?;
        for w in &store.warnings {
            eprintln!("warning: {w}");
        }
        if store.records.is_empty() && !store.warnings.is_empty() {
            bail!(
                "{}: not a results file (no line is a job record); merge takes the .jsonl files `sweep` writes",
                input.display()
            );
        }
        for r in store.records {
            let order = if r.axis_order.is_empty() {
                r.axes.keys().cloned().collect()
            } else {
                r.axis_order.clone()
            };
            match &axes {
                None => axes = Some((order, input)),
                Some((first, from)) if *first != order => bail!(
                    "{} and {} come from different sweeps (axes {} and {}): merge the shards of one sweep",
                    from.display(),
                    input.display(),
                    first.join(", "),
                    order.join(", ")
                ),
                Some(_) => {}
            }
            if let Some(old) = merged.latest(&r.hash) {
                if old.status != JobStatus::Failed
                    && r.status != JobStatus::Failed
                    && !same_outcome(old, &r)
                {
                    eprintln!(
                        "warning: job {} (hash {}) has two different finished records; {} keeps the one from {}",
                        r.job,
                        &r.hash[..12.min(r.hash.len())],
                        out.display(),
                        input.display()
                    );
                }
            }
            merged.insert(r);
        }
    }
    let records = merged.unique();
    let mut text = String::new();
    for r in &records {
        text.push_str(&serde_json::to_string(r).context("record to JSON")?);
        text.push('\n');
    }
    // Atomic (temporary file, fsync, rename): a merge interrupted half-way
    // or failing never leaves a half-written results file or a stray one.
    crate::experiment::run_dir::write_atomic(out, text.as_bytes())?;
    Ok(records.len())
}

/// Whether two finished records of one job say the same (their results
/// without the wall-clock fields).
fn same_outcome(a: &JobRecord, b: &JobRecord) -> bool {
    fn without_timing(v: &Option<serde_json::Value>) -> Option<serde_json::Value> {
        let mut v = v.clone()?;
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    m.remove("samples_per_second");
                    m.remove("wall_seconds");
                    m.values_mut().for_each(strip);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut v);
        Some(v)
    }
    a.status == b.status && without_timing(&a.result) == without_timing(&b.result)
}

impl ResultStore {
    /// Like [`ResultStore::open`] but never modifies the file (a truncated
    /// last line is only reported).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let mut store = Self::default();
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read results file {}", path.display()))?;
        // A line that is not UTF-8 becomes unreadable JSON: reported and
        // skipped like any unreadable line, as `sweep` does.
        let text = String::from_utf8_lossy(&bytes);
        let ends_clean = text.ends_with('\n') || text.is_empty();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if i + 1 == lines.len() && !ends_clean {
                store
                    .warnings
                    .push(format!("{}: ignored a truncated last line", path.display()));
                continue;
            }
            store.insert_line(line, path, i + 1);
        }
        Ok(store)
    }
}
