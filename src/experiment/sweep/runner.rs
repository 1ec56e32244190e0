//! Running a sweep spec into a directory: the library form of `dyadsim
//! sweep` (what the CLI, the examples and a Python binding call), and the
//! job runner that trains each job with the real training executor.

use super::{
    run_pending, GridCounts, Job, JobRecord, ResultStore, Shard, StoredSettings, SweepOptions,
    SweepSpec, SweepSummary, ThreadPlan, REPORT_SETTINGS_FILE,
};
use crate::data::Dataset;
use crate::experiment::run_dir::write_atomic;
use crate::experiment::RunResult;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The job runner of real sweeps: [`crate::experiment::train::run`] per
/// job, with each distinct `[data]` section loaded once and shared between
/// jobs (read-only): jobs that need a dataset another job is loading wait
/// for it instead of loading a copy of their own.
#[derive(Default)]
pub struct TrainingRunner {
    datasets: Mutex<HashMap<String, DatasetSlot>>,
}

/// One dataset of a sweep: loaded by the first job that needs it.
type DatasetSlot = Arc<Mutex<Option<Arc<Dataset>>>>;

impl TrainingRunner {
    /// Trains one job's configuration; no observers (a sweep's progress
    /// counts jobs).
    pub fn run(&self, job: &Job) -> Result<RunResult> {
        self.run_observed(job, &mut [])
    }

    /// [`TrainingRunner::run`] with observers (e.g. one that stops the job
    /// on the caller's Ctrl-C through [`crate::experiment::train::Observer::should_stop`]).
    pub fn run_observed(
        &self,
        job: &Job,
        observers: &mut [&mut dyn crate::experiment::train::Observer],
    ) -> Result<RunResult> {
        let data = self.dataset(&job.config.raw().data)?;
        let output = crate::experiment::train::run(&job.config, &data, observers)?;
        Ok(output.result)
    }

    /// The dataset of `config`, loading it if no job has.
    fn dataset(&self, config: &crate::data::DataConfig) -> Result<Arc<Dataset>> {
        let key = serde_json::to_string(config).context("data config to JSON")?;
        let slot = self
            .datasets
            .lock()
            .map_err(|_| anyhow::anyhow!("dataset cache lock poisoned"))?
            .entry(key)
            .or_default()
            .clone();
        // Held while loading: other jobs of this dataset wait here (jobs of
        // other datasets do not).
        let mut loaded = slot
            .lock()
            .map_err(|_| anyhow::anyhow!("dataset lock poisoned"))?;
        if let Some(d) = loaded.as_ref() {
            return Ok(d.clone());
        }
        let d = Arc::new(crate::data::load(config)?);
        *loaded = Some(d.clone());
        Ok(d)
    }
}

/// The copy of the sweep's technology file inside its output directory.
pub const TECHNOLOGY_COPY: &str = "technology.toml";

/// A sweep to run: a spec file and an output directory (results file and
/// report settings), with the shard, parallelism and retry choices of
/// `dyadsim sweep`.
#[derive(Clone, Debug)]
pub struct SweepRequest {
    /// The sweep spec (TOML: `base`, `axes`, optional `zip`, `output`,
    /// `report`, `requirements`).
    pub spec: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// The part of the grid to run (default: all of it).
    pub shard: Shard,
    /// Jobs at once (default: one per core, see [`ThreadPlan::for_cores`]).
    pub jobs: Option<usize>,
    /// Rerun jobs whose last record is `failed`.
    pub retry_failed: bool,
    /// Run at most this many pending jobs.
    pub limit: Option<usize>,
}

impl SweepRequest {
    /// A request for the whole grid of `spec` into `out`, defaults otherwise.
    pub fn new(spec: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            spec: spec.into(),
            out: out.into(),
            shard: Shard::default(),
            jobs: None,
            retry_failed: false,
            limit: None,
        }
    }

    /// Reads and checks the spec (every job's configuration, before any
    /// job runs) and the results recorded so far.
    pub fn plan(&self) -> Result<SweepPlan> {
        let spec = SweepSpec::from_file(&self.spec)?;
        let results = self.out.join(self.shard.file_name(&spec.output.results));
        let store = ResultStore::open(&results)?;
        let pending = spec.pending(&store, self.shard, self.retry_failed)?;
        let total = spec.job_count();
        let in_shard = (0..total).filter(|&i| self.shard.contains(i)).count();
        let to_run = self.limit.map_or(pending.len(), |l| l.min(pending.len()));
        Ok(SweepPlan {
            spec,
            total,
            results,
            warnings: store.warnings.clone(),
            pending,
            in_shard,
            to_run,
        })
    }

    /// Runs `plan` (from [`SweepRequest::plan`]) with `threads.parallel_jobs`
    /// jobs at once: writes the report settings beside the results, then
    /// appends one record per finished job (`on_done` is called after each).
    /// The SGEMM thread count of `threads` is the caller's to apply (it is
    /// process-wide: `MATMUL_NUM_THREADS`, read by matrixmultiply at its
    /// first product), before the first job starts.
    pub fn run<R, D>(
        &self,
        plan: &SweepPlan,
        threads: ThreadPlan,
        runner: R,
        on_done: D,
    ) -> Result<SweepSummary>
    where
        R: Fn(&Job) -> Result<RunResult> + Sync,
        D: Fn(&JobRecord) + Sync,
    {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        // Settings for `dyadsim report OUT`. A technology file is copied
        // beside the results and named relative to them, so the sweep
        // directory is self-contained and can move; a shipped technology
        // stays a name.
        let mut settings = StoredSettings {
            report: plan.spec.report.clone(),
            requirements: plan.spec.requirements.clone(),
        };
        if let Some(t) = &settings.report.technology {
            if t.is_file() {
                let text = std::fs::read(t)
                    .with_context(|| format!("[report] technology: cannot read {}", t.display()))?;
                write_atomic(&self.out.join(TECHNOLOGY_COPY), &text)?;
                settings.report.technology = Some(PathBuf::from(TECHNOLOGY_COPY));
            }
        }
        let text = toml::to_string(&settings).context("serialising report settings")?;
        write_atomic(&self.out.join(REPORT_SETTINGS_FILE), text.as_bytes())?;
        let options = SweepOptions {
            shard: self.shard,
            parallel_jobs: threads.parallel_jobs,
            retry_failed: self.retry_failed,
            limit: self.limit,
        };
        // Records written since the plan was made (another process on this
        // directory) are read again here; claims skip what it has taken.
        let store = ResultStore::open(&plan.results)?;
        let counts = GridCounts {
            total: plan.total,
            in_shard: plan.in_shard,
            skipped: plan.in_shard - plan.pending.len(),
        };
        run_pending(
            plan.to_run,
            |k| plan.spec.job(plan.pending[k]).map(std::borrow::Cow::Owned),
            counts,
            store,
            &plan.results,
            &options,
            runner,
            on_done,
        )
    }

    /// [`SweepRequest::plan`] then [`SweepRequest::run`] with one job per
    /// core (or `jobs`) and the SGEMM threads the process already has.
    pub fn plan_and_run<R>(&self, runner: R) -> Result<SweepSummary>
    where
        R: Fn(&Job) -> Result<RunResult> + Sync,
    {
        let plan = self.plan()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = ThreadPlan::for_cores(cores, plan.to_run, self.jobs, None);
        self.run(&plan, threads, runner, |_| {})
    }
}

/// A checked sweep: its jobs, where their results go and which still have
/// to run.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// The parsed spec.
    pub spec: SweepSpec,
    /// Jobs in the full grid (each built when it starts:
    /// [`SweepSpec::job`]).
    pub total: usize,
    /// The results file of this shard.
    pub results: PathBuf,
    /// Problems found reading the results so far (a truncated last line…).
    pub warnings: Vec<String>,
    /// Grid indices of this shard's jobs without a usable record.
    pub pending: Vec<usize>,
    /// Jobs in this shard.
    pub in_shard: usize,
    /// Jobs this run will start (`pending`, cut at the request's limit).
    pub to_run: usize,
}

impl SweepPlan {
    /// The pending jobs, in grid order, each built as the iterator reaches
    /// it.
    pub fn pending_jobs(&self) -> impl Iterator<Item = Result<Job>> + '_ {
        self.pending.iter().map(|&i| self.spec.job(i))
    }
}
