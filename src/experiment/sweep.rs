//! Parameter sweeps: a base configuration, a grid of axes, parallel jobs,
//! a resumable JSON-lines result file and deterministic sharding
//! (DESIGN.md §5, issue "Sweeps, reports and hardware-feasibility estimates").
//!
//! # Spec file
//!
//! ```toml
//! base = "base.toml"            # or an inline [base] table (a run configuration)
//!
//! [axes]                        # full grid: every combination of these lists
//! "learning.alpha" = [0.0, 0.5, 1.0]
//! "device.read_noise" = [0.0, 0.02]
//! seed = [1, 2, 3]
//!
//! [zip]                         # optional: lists of equal length that vary together
//! "learning.beta" = [0.1, 0.5]  # (one more grid dimension)
//! "optimizer.lr" = [1e-3, 5e-4]
//!
//! [output]
//! results = "results.jsonl"     # file name inside `--out DIR`
//!
//! [report]                      # read by `dyadsim report` (optional)
//! technology = "device_models/technology/reram_taox_32nm.toml"
//!
//! [requirements]                # feasibility verdict of the report (optional)
//! accuracy_min = 0.9
//! energy_per_sample_max_j = 1e-6
//! lifetime_min_epochs = 1000
//! ```
//!
//! Axis keys are config paths (`learning.alpha`); unquoted dotted keys
//! (`learning.alpha = [...]`) are accepted too. Every job's configuration is
//! built and checked ([`Config::from_table_recommended`] + [`Config::check`]) by
//! [`SweepSpec::pending`] before anything runs, so an unknown field, an empty
//! axis or a wrong type is an error naming the axis, not a failed job an
//! hour into the sweep. The grid is streamed: the check runs in parallel
//! and keeps no job, and each job is built again ([`SweepSpec::job`]) when
//! it starts, so a grid of a million jobs needs tens of megabytes, not
//! gigabytes.
//!
//! # Jobs, hashes, shards
//!
//! Jobs are numbered in grid order (axes sorted by path, the zip group last,
//! last axis fastest). A job's identity is its **config hash**: SHA-256 of
//! the canonical TOML of its complete configuration (defaults filled in,
//! keys sorted), so two specs that describe the same run share results.
//! `--shard i/n` (0 ≤ i < n) takes the jobs with `index mod n = i`: a
//! deterministic partition that spreads neighbouring grid points (similar
//! cost) over the shards.
//!
//! # Threads
//!
//! Jobs run on a rayon pool of `parallel_jobs` threads; inside a job the
//! SGEMM of `matrixmultiply` uses `MATMUL_NUM_THREADS` threads (read once
//! per process). [`ThreadPlan::for_cores`] gives every core one job when
//! there are at least as many pending jobs as cores (one SGEMM thread per
//! job), and splits the cores over the jobs otherwise; the CLI sets
//! `MATMUL_NUM_THREADS` accordingly before any job starts unless the user
//! set it. Rayon work inside a job (per-device passes of a crossbar) runs on
//! the same pool, so nested parallelism steals work instead of
//! oversubscribing the cores.

pub mod runner;
pub mod store;
pub mod worker;

use crate::experiment::config::{set_path, Config, ValidConfig};
use crate::experiment::result::{RunResult, RunStatus};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
pub use runner::{SweepPlan, SweepRequest, TrainingRunner};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
pub use store::{merge_files, JobRecord, JobStatus, ResultStore, ResultWriter};
pub use worker::WorkerPool;

/// One swept config field and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Config path, e.g. `learning.alpha`.
    pub path: String,
    /// The values it takes (non-empty).
    pub values: Vec<toml::Value>,
}

/// An axis that lists a value twice would run the same job twice (in a
/// grid) or pair one value with two others (in a zip): an error.
fn check_distinct_values(axis: &Axis) -> Result<()> {
    for (i, v) in axis.values.iter().enumerate() {
        if let Some(j) = axis.values[..i].iter().position(|w| w == v) {
            bail!(
                "axis '{}' lists the value {} twice (positions {} and {}); each value of an axis must be distinct",
                axis.path,
                v,
                j + 1,
                i + 1
            );
        }
    }
    Ok(())
}

/// `[output] results` names a file inside the output directory: a plain
/// file name, so that a spec can never write outside `--out`.
fn check_results_name(name: &str) -> Result<()> {
    let path = Path::new(name);
    let plain = path.components().count() == 1
        && matches!(
            path.components().next(),
            Some(std::path::Component::Normal(_))
        );
    if !plain || name.is_empty() {
        bail!(
            "[output] results = {name:?}: must be a file name inside the output directory (no directories, no '..', not absolute), e.g. \"results.jsonl\""
        );
    }
    if !name.ends_with(".jsonl") {
        bail!("[output] results = {name:?}: must end in .jsonl (one JSON line per job)");
    }
    Ok(())
}

/// Output settings of a sweep (TOML `[output]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSettings {
    /// JSON-lines file name inside the output directory.
    pub results: String,
}

impl Default for OutputSettings {
    fn default() -> Self {
        Self {
            results: "results.jsonl".into(),
        }
    }
}

/// User-set requirements of the feasibility verdict (TOML `[requirements]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Requirements {
    /// Test accuracy ≥ this (0..1).
    pub accuracy_min: Option<f64>,
    /// Energy per training sample ≤ this (J).
    pub energy_per_sample_max_j: Option<f64>,
    /// Lifetime of the first 1 % of devices ≥ this many epochs.
    pub lifetime_min_epochs: Option<f64>,
}

impl Requirements {
    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        if let Some(a) = self.accuracy_min {
            if !(0.0..=1.0).contains(&a) {
                bail!(
                    "requirements.accuracy_min = {a}: allowed range is [0, 1] (a fraction, not %)"
                );
            }
        }
        if let Some(e) = self.energy_per_sample_max_j {
            if !(e.is_finite() && e > 0.0) {
                bail!("requirements.energy_per_sample_max_j = {e}: must be > 0 (joules)");
            }
        }
        if let Some(l) = self.lifetime_min_epochs {
            if !(l.is_finite() && l > 0.0) {
                bail!("requirements.lifetime_min_epochs = {l}: must be > 0");
            }
        }
        Ok(())
    }

    /// Whether any requirement is set.
    pub fn any(&self) -> bool {
        self.accuracy_min.is_some()
            || self.energy_per_sample_max_j.is_some()
            || self.lifetime_min_epochs.is_some()
    }
}

/// Report settings carried by a sweep spec (TOML `[report]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// Technology description used by the feasibility section
    /// (relative paths are relative to the spec file).
    pub technology: Option<PathBuf>,
}

/// File written by `dyadsim sweep` beside the results: the report settings
/// and requirements of the spec (paths made absolute).
pub const REPORT_SETTINGS_FILE: &str = "report-settings.toml";

/// Report settings stored beside sweep results.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoredSettings {
    /// `[report]` of the spec.
    pub report: ReportSettings,
    /// `[requirements]` of the spec.
    pub requirements: Requirements,
}

/// A parsed sweep specification.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// The base configuration (a TOML table; defaults fill the rest).
    pub base: toml::Table,
    /// Full-grid axes, sorted by path.
    pub grid: Vec<Axis>,
    /// Axes that vary together (all the same length); empty if none.
    pub zip: Vec<Axis>,
    /// Where results go.
    pub output: OutputSettings,
    /// Report settings.
    pub report: ReportSettings,
    /// Feasibility requirements for the report.
    pub requirements: Requirements,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    base: Option<toml::Value>,
    axes: Option<toml::Table>,
    zip: Option<toml::Table>,
    #[serde(default)]
    output: OutputSettings,
    #[serde(default)]
    report: ReportSettings,
    #[serde(default)]
    requirements: Requirements,
}

/// Flattens `{learning = {alpha = [..]}}` and `{"learning.alpha" = [..]}`
/// into axes; every leaf must be a non-empty list.
fn flatten_axes(
    section: &str,
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<Axis>,
) -> Result<()> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Array(values) => {
                if values.is_empty() {
                    bail!("[{section}] axis '{path}' is empty: give at least one value");
                }
                out.push(Axis {
                    path,
                    values: values.clone(),
                });
            }
            toml::Value::Table(inner) => flatten_axes(section, inner, &path, out)?,
            other => bail!(
                "[{section}] axis '{path}' must be a list of values, found {} `{other}` (write `{path} = [{other}]` for a single value)",
                other.type_str()
            ),
        }
    }
    Ok(())
}

impl SweepSpec {
    /// Reads a spec file; `base = "file.toml"` is resolved relative to it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sweep spec {}", path.display()))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_str_in(&text, dir)
            .with_context(|| format!("invalid sweep spec {}", path.display()))
    }

    /// Parses spec text; relative paths (`base`, `report.technology`) are
    /// resolved against `dir`.
    pub fn from_str_in(text: &str, dir: &Path) -> Result<Self> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let base = match raw.base {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(toml::Value::String(file)) => {
                let p = dir.join(&file);
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("base = \"{file}\": cannot read {}", p.display()))?;
                toml::from_str(&text).with_context(|| {
                    format!("base = \"{file}\": invalid TOML in {}", p.display())
                })?
            }
            Some(other) => bail!(
                "base must be a table or a file name, found {}",
                other.type_str()
            ),
        };
        let mut grid = Vec::new();
        if let Some(axes) = &raw.axes {
            flatten_axes("axes", axes, "", &mut grid)?;
        }
        let mut zip = Vec::new();
        if let Some(z) = &raw.zip {
            flatten_axes("zip", z, "", &mut zip)?;
        }
        if let Some(first) = zip.first() {
            for a in &zip {
                if a.values.len() != first.values.len() {
                    bail!(
                        "[zip] axes must have equal lengths: '{}' has {} values, '{}' has {}",
                        first.path,
                        first.values.len(),
                        a.path,
                        a.values.len()
                    );
                }
            }
        }
        for z in &zip {
            if grid.iter().any(|g| g.path == z.path) {
                bail!("axis '{}' appears in both [axes] and [zip]", z.path);
            }
        }
        for axis in grid.iter().chain(&zip) {
            check_distinct_values(axis)?;
        }
        check_results_name(&raw.output.results)?;
        grid.sort_by(|a, b| a.path.cmp(&b.path));
        let mut report = raw.report;
        if let Some(t) = &report.technology {
            // Relative to the spec; a shipped technology's name stays a name.
            if t.is_relative() && dir.join(t).exists() {
                report.technology = Some(dir.join(t));
            }
        }
        raw.requirements.validate()?;
        Ok(Self {
            base,
            grid,
            zip,
            output: raw.output,
            report,
            requirements: raw.requirements,
        })
    }

    /// Number of jobs in the full grid.
    pub fn job_count(&self) -> usize {
        let zip_len = self.zip.first().map_or(1, |a| a.values.len());
        self.grid.iter().map(|a| a.values.len()).product::<usize>() * zip_len
    }

    /// All axis paths (grid then zip).
    pub fn axis_paths(&self) -> Vec<String> {
        self.grid
            .iter()
            .chain(self.zip.iter())
            .map(|a| a.path.clone())
            .collect()
    }

    /// The axis values of job `index` (grid order, last axis fastest).
    fn assignment(&self, mut index: usize) -> Vec<(String, toml::Value)> {
        let zip_len = self.zip.first().map_or(1, |a| a.values.len());
        let mut out = Vec::new();
        let zip_i = index % zip_len;
        index /= zip_len;
        let mut digits = vec![0usize; self.grid.len()];
        for (d, axis) in digits.iter_mut().zip(self.grid.iter()).rev() {
            *d = index % axis.values.len();
            index /= axis.values.len();
        }
        for (axis, d) in self.grid.iter().zip(digits) {
            out.push((axis.path.clone(), axis.values[d].clone()));
        }
        for axis in &self.zip {
            out.push((axis.path.clone(), axis.values[zip_i].clone()));
        }
        out
    }

    fn build(&self, assignment: &[(String, toml::Value)]) -> Result<ValidConfig> {
        let mut table = self.base.clone();
        for (path, value) in assignment {
            set_path(&mut table, path, value.clone()).with_context(|| format!("axis '{path}'"))?;
        }
        // The device model's recommendations fill what neither the base
        // nor the job's axes give (the job's configuration records them).
        Config::from_table_recommended(table, "sweep spec")?.check()
    }

    /// Checks the base configuration and every axis value on its own
    /// against it, so that an error names the axis and value rather than
    /// the first job that combines them.
    pub fn check_axes(&self) -> Result<()> {
        Config::from_table_recommended(self.base.clone(), "sweep spec")
            .and_then(|c| c.check())
            .context("[base] configuration")?;
        for axis in self.grid.iter().chain(self.zip.iter()) {
            for value in &axis.values {
                self.build(&[(axis.path.clone(), value.clone())])
                    .with_context(|| format!("axis '{}' = {value}", axis.path))?;
            }
        }
        Ok(())
    }

    /// Builds and checks job `index` of the grid: its axis values, its
    /// configuration and its hash. Errors name the job and its values.
    pub fn job(&self, index: usize) -> Result<Job> {
        let (axes, config) = self.job_config(index)?;
        let hash = config_hash(config.raw())?;
        Ok(Job {
            index,
            axes,
            config,
            hash,
        })
    }

    /// The axis values and checked configuration of job `index`, without
    /// its hash.
    fn job_config(&self, index: usize) -> Result<(Vec<(String, toml::Value)>, ValidConfig)> {
        let axes = self.assignment(index);
        let config = self
            .build(&axes)
            .with_context(|| format!("job {index} ({})", describe_assignment(&axes)))?;
        Ok((axes, config))
    }

    /// Expands and validates every job ([`SweepSpec::check_axes`], then
    /// each combination). For large grids prefer [`SweepSpec::pending`],
    /// which keeps no job in memory.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        self.check_axes()?;
        (0..self.job_count()).map(|index| self.job(index)).collect()
    }

    /// The grid indices of `shard`'s jobs that `store` has no usable record
    /// of, in grid order. Every job of the shard is built and checked (in
    /// parallel, none kept), so a combination that is invalid is an error
    /// before anything runs; its hash is computed only when there are
    /// records to compare it with.
    pub fn pending(
        &self,
        store: &ResultStore,
        shard: Shard,
        retry_failed: bool,
    ) -> Result<Vec<usize>> {
        self.check_axes()?;
        let compare = !store.records.is_empty();
        let indices: Vec<usize> = (0..self.job_count())
            .filter(|&i| shard.contains(i))
            .collect();
        let pending: Vec<Result<Option<usize>>> = indices
            .par_iter()
            .map(|&index| {
                if !compare {
                    self.job_config(index)?;
                    return Ok(Some(index));
                }
                let job = self.job(index)?;
                Ok(store.needs_run(&job.hash, retry_failed).then_some(index))
            })
            .collect();
        // The first error in grid order, as a sequential check would give.
        pending.into_iter().filter_map(Result::transpose).collect()
    }
}

/// `learning.alpha = 0.5, seed = 2`.
pub fn describe_assignment(axes: &[(String, toml::Value)]) -> String {
    axes.iter()
        .map(|(p, v)| format!("{p} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SHA-256 (hex) of the canonical TOML of a complete configuration.
pub fn config_hash(config: &Config) -> Result<String> {
    let canonical = toml::to_string(&config.to_table()?).context("serialising configuration")?;
    Ok(crate::experiment::run_dir::sha256_hex(canonical.as_bytes()))
}

/// One grid point: its axis values and checked configuration.
#[derive(Clone, Debug)]
pub struct Job {
    /// Position in the grid (0-based).
    pub index: usize,
    /// The axis values of this job, in axis order.
    pub axes: Vec<(String, toml::Value)>,
    /// The checked configuration.
    pub config: ValidConfig,
    /// [`config_hash`] of the configuration.
    pub hash: String,
}

/// A deterministic 1/n of the jobs: those with `index mod count = index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard number, `< count`.
    pub index: usize,
    /// Number of shards ≥ 1.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether job `job_index` belongs to this shard.
    pub fn contains(&self, job_index: usize) -> bool {
        job_index % self.count == self.index
    }

    /// `results.jsonl` → `results.shard-2-of-8.jsonl` (unchanged for 1 shard).
    pub fn file_name(&self, base: &str) -> String {
        if self.count == 1 {
            return base.to_string();
        }
        let (stem, ext) = base.rsplit_once('.').unwrap_or((base, "jsonl"));
        format!("{stem}.shard-{}-of-{}.{ext}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let err = || {
            anyhow::anyhow!("--shard '{s}': expected i/n with integers 0 ≤ i < n (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-(n−1))")
        };
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: usize = i.trim().parse().map_err(|_| err())?;
        let count: usize = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Self { index, count })
    }
}

/// How the cores are split between parallel jobs and SGEMM threads inside a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Jobs running at once (rayon pool size).
    pub parallel_jobs: usize,
    /// `MATMUL_NUM_THREADS` for each job.
    pub threads_per_job: usize,
}

impl ThreadPlan {
    /// `cores` cores, `pending` jobs, an optional user request for the
    /// number of parallel jobs and an optional user-set `MATMUL_NUM_THREADS`.
    /// Jobs are the coarse, perfectly parallel unit, so they get the cores
    /// first; left-over cores go to SGEMM threads (capped at 4, the most
    /// matrixmultiply uses).
    pub fn for_cores(
        cores: usize,
        pending: usize,
        requested_jobs: Option<usize>,
        matmul_threads: Option<usize>,
    ) -> Self {
        let cores = cores.max(1);
        let parallel_jobs = match (requested_jobs, matmul_threads) {
            (Some(j), _) if j > 0 => j,
            (_, Some(t)) if t > 0 => (cores / t).max(1),
            _ => cores,
        }
        .min(pending.max(1));
        let threads_per_job = match matmul_threads {
            Some(t) if t > 0 => t,
            _ => (cores / parallel_jobs).clamp(1, 4),
        };
        Self {
            parallel_jobs,
            threads_per_job,
        }
    }
}

/// Options of [`run_sweep`].
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Which part of the grid this process runs.
    pub shard: Shard,
    /// Jobs run at once (rayon pool size; 0 = all cores).
    pub parallel_jobs: usize,
    /// Rerun jobs whose last record is `failed` (default: keep them).
    pub retry_failed: bool,
    /// Run at most this many pending jobs, then stop (for quick partial runs).
    pub limit: Option<usize>,
}

/// What a sweep invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepSummary {
    /// Jobs in the full grid.
    pub total: usize,
    /// Jobs in this shard.
    pub in_shard: usize,
    /// Jobs of this shard already recorded (skipped).
    pub skipped: usize,
    /// Jobs run now.
    pub ran: usize,
    /// Of those: finished normally.
    pub ok: usize,
    /// Of those: diverged.
    pub diverged: usize,
    /// Of those: failed with an error (or panic).
    pub failed: usize,
    /// Jobs stopped by the caller ([`crate::experiment::train::Interrupted`])
    /// or not started after such a stop: not recorded, still pending.
    pub interrupted: usize,
}

/// The jobs of `shard` that `store` has no usable record of.
pub fn pending_jobs<'a>(
    jobs: &'a [Job],
    store: &ResultStore,
    shard: Shard,
    retry_failed: bool,
) -> Vec<&'a Job> {
    jobs.iter()
        .filter(|j| shard.contains(j.index))
        .filter(|j| store.needs_run(&j.hash, retry_failed))
        .collect()
}

/// Runs the pending jobs of a shard in parallel, appending one JSON line per
/// finished job to `results_path`. `runner` runs one job (the real one is
/// `experiment::train::run`; tests pass a fake); an error or panic in a job
/// is recorded as `failed` and the sweep goes on; a job whose runner
/// returns [`crate::experiment::train::Interrupted`] is not recorded. `on_done` is called after
/// each record is written (progress bars).
pub fn run_sweep<R, D>(
    jobs: &[Job],
    results_path: &Path,
    options: &SweepOptions,
    runner: R,
    on_done: D,
) -> Result<SweepSummary>
where
    R: Fn(&Job) -> Result<RunResult> + Sync,
    D: Fn(&JobRecord) + Sync,
{
    let store = ResultStore::open(results_path)?;
    let in_shard = jobs
        .iter()
        .filter(|j| options.shard.contains(j.index))
        .count();
    let mut pending = pending_jobs(jobs, &store, options.shard, options.retry_failed);
    let counts = GridCounts {
        total: jobs.len(),
        in_shard,
        skipped: in_shard - pending.len(),
    };
    if let Some(limit) = options.limit {
        pending.truncate(limit);
    }
    run_pending(
        pending.len(),
        |k| Ok(std::borrow::Cow::Borrowed(pending[k])),
        counts,
        store,
        results_path,
        options,
        runner,
        on_done,
    )
}

/// Runs one job, turning a panic into the error `job panicked: MESSAGE`
/// (the job is then recorded as failed, and the sweep goes on).
pub(crate) fn run_catching_panics(job: impl FnOnce() -> Result<RunResult>) -> Result<RunResult> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(anyhow::anyhow!("job panicked: {msg}"))
    })
}

/// The sizes a [`SweepSummary`] reports besides what ran.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GridCounts {
    /// Jobs in the full grid.
    pub total: usize,
    /// Jobs in this shard.
    pub in_shard: usize,
    /// Jobs of this shard already recorded.
    pub skipped: usize,
}

/// Runs `count` pending jobs, the `k`-th given by `job_at(k)` (built when
/// it starts, so a grid of a million jobs is never in memory at once);
/// `store` holds the records read so far. See [`run_sweep`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_pending<'a, J, R, D>(
    count: usize,
    job_at: J,
    counts: GridCounts,
    store: ResultStore,
    results_path: &Path,
    options: &SweepOptions,
    runner: R,
    on_done: D,
) -> Result<SweepSummary>
where
    J: Fn(usize) -> Result<std::borrow::Cow<'a, Job>> + Sync,
    R: Fn(&Job) -> Result<RunResult> + Sync,
    D: Fn(&JobRecord) + Sync,
{
    let writer = ResultWriter::append(results_path)?;
    let claims = Claims::new(results_path, store)?;
    let threads = if options.parallel_jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.parallel_jobs
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.min(count.max(1)))
        .thread_name(|i| format!("sweep-job-{i}"))
        .build()
        .context("building the sweep thread pool")?;
    let shard_label = (options.shard.count > 1)
        .then(|| format!("{}/{}", options.shard.index, options.shard.count));
    let outcomes: Vec<Result<JobOutcome>> = pool.install(|| {
        (0..count)
            .into_par_iter()
            .map(|k| {
                let job = job_at(k)?;
                let job = job.as_ref();
                // Another process on the same output directory may run
                // this job already, or have finished it since this one
                // read the results.
                let Some(_claim) = claims.claim(job, options.retry_failed)? else {
                    return Ok(JobOutcome::ElsewhereOrDone);
                };
                let start = Instant::now();
                let outcome = run_catching_panics(|| runner(job));
                if let Err(e) = &outcome {
                    if e.is::<crate::experiment::train::Interrupted>() {
                        // A job stopped by its caller (Ctrl-C in Python) has
                        // no result: nothing is recorded, so it stays
                        // pending and a rerun starts it again.
                        return Ok(JobOutcome::Interrupted);
                    }
                }
                let record = JobRecord::from_outcome(
                    job,
                    outcome,
                    start.elapsed().as_secs_f64(),
                    shard_label.clone(),
                )?;
                writer.write(&record)?;
                on_done(&record);
                Ok(JobOutcome::Ran(record.status))
            })
            .collect()
    });
    let mut summary = SweepSummary {
        total: counts.total,
        in_shard: counts.in_shard,
        skipped: counts.skipped,
        ..Default::default()
    };
    for o in outcomes {
        match o? {
            JobOutcome::Ran(JobStatus::Ok) => summary.ok += 1,
            JobOutcome::Ran(JobStatus::Diverged) => summary.diverged += 1,
            JobOutcome::Ran(JobStatus::Failed) => summary.failed += 1,
            JobOutcome::Interrupted => {
                summary.interrupted += 1;
                continue;
            }
            JobOutcome::ElsewhereOrDone => {
                summary.skipped += 1;
                continue;
            }
        }
        summary.ran += 1;
    }
    Ok(summary)
}

/// What became of one pending job in [`run_sweep`].
enum JobOutcome {
    /// It ran and its record was written.
    Ran(JobStatus),
    /// Its runner returned [`crate::experiment::train::Interrupted`].
    Interrupted,
    /// Another process holds it, or recorded it since the results were read.
    ElsewhereOrDone,
}

/// Cross-process claims on a sweep's jobs: a job runs only in the process
/// that holds the lock on `OUT/.claims/HASH` (an OS file lock, released
/// when the process ends, however it ends) and that, holding it, still
/// finds no record of the job in the results file (read on from where it
/// was read before). So two `sweep` processes on one `--out` share the
/// grid instead of running it twice.
struct Claims {
    dir: PathBuf,
    results: PathBuf,
    store: std::sync::Mutex<(ResultStore, u64)>,
}

/// A held claim: the lock, and the lock file removed when it is dropped.
struct Claim {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Claims {
    fn new(results: &Path, store: ResultStore) -> Result<Self> {
        let dir = results
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(".claims");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let read = std::fs::metadata(results).map_or(0, |m| m.len());
        Ok(Self {
            dir,
            results: results.to_path_buf(),
            store: std::sync::Mutex::new((store, read)),
        })
    }

    /// The claim on `job` if this process may run it now.
    fn claim(&self, job: &Job, retry_failed: bool) -> Result<Option<Claim>> {
        let path = self.dir.join(&job.hash);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the claim file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        let claim = Claim { path, _file: file };
        let mut guard = self
            .store
            .lock()
            .map_err(|_| anyhow::anyhow!("results store lock poisoned"))?;
        let (store, read) = &mut *guard;
        *read = store.read_appended(&self.results, *read)?;
        Ok(store.needs_run(&job.hash, retry_failed).then_some(claim))
    }
}

impl From<RunStatus> for JobStatus {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Ok => JobStatus::Ok,
            RunStatus::Diverged => JobStatus::Diverged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<SweepSpec> {
        SweepSpec::from_str_in(text, Path::new("."))
    }

    #[test]
    fn grid_order_is_last_axis_fastest_with_zip_innermost() {
        let s = spec(
            r#"
            [axes]
            "learning.alpha" = [0.0, 1.0]
            seed = [1, 2, 3]
            [zip]
            "learning.beta" = [0.1, 0.2]
            "optimizer.lr" = [0.01, 0.02]
            "#,
        )
        .unwrap();
        assert_eq!(s.job_count(), 12);
        let jobs = s.jobs().unwrap();
        let a = |j: &Job, p: &str| j.axes.iter().find(|(q, _)| q == p).unwrap().1.clone();
        assert_eq!(a(&jobs[0], "seed"), toml::Value::Integer(1));
        assert_eq!(a(&jobs[2], "seed"), toml::Value::Integer(2));
        assert_eq!(a(&jobs[6], "learning.alpha"), toml::Value::Float(1.0));
        // zipped axes move together
        for j in &jobs {
            let beta = a(j, "learning.beta").as_float().unwrap();
            let lr = a(j, "optimizer.lr").as_float().unwrap();
            assert!((lr - beta / 10.0).abs() < 1e-12);
            assert_eq!(j.config.raw().learning.beta as f64, beta as f32 as f64);
        }
        // every job distinct
        let mut hashes: Vec<_> = jobs.iter().map(|j| j.hash.clone()).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 12);
    }

    #[test]
    fn dotted_tables_are_axes_too() {
        let s = spec("[axes]\nlearning.alpha = [0.0, 1.0]\n").unwrap();
        assert_eq!(s.grid[0].path, "learning.alpha");
    }

    #[test]
    fn hash_ignores_how_defaults_are_written() {
        let a = spec("[base]\nseed = 1\n[axes]\n\"learning.alpha\" = [0.5]\n")
            .unwrap()
            .jobs()
            .unwrap();
        let b = spec("[axes]\n\"learning.alpha\" = [0.5]\n")
            .unwrap()
            .jobs()
            .unwrap();
        assert_eq!(a[0].hash, b[0].hash);
    }

    #[test]
    fn shard_parse_and_names() {
        let s: Shard = "2/8".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 8 });
        assert!("8/8".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        assert_eq!(s.file_name("results.jsonl"), "results.shard-2-of-8.jsonl");
    }

    #[test]
    fn thread_plan_splits_cores() {
        assert_eq!(
            ThreadPlan::for_cores(2, 4, None, None),
            ThreadPlan {
                parallel_jobs: 2,
                threads_per_job: 1
            }
        );
        assert_eq!(
            ThreadPlan::for_cores(8, 2, None, None),
            ThreadPlan {
                parallel_jobs: 2,
                threads_per_job: 4
            }
        );
        assert_eq!(
            ThreadPlan::for_cores(8, 100, None, Some(2)),
            ThreadPlan {
                parallel_jobs: 4,
                threads_per_job: 2
            }
        );
        assert_eq!(
            ThreadPlan::for_cores(8, 100, Some(3), None),
            ThreadPlan {
                parallel_jobs: 3,
                threads_per_job: 2
            }
        );
    }
}
