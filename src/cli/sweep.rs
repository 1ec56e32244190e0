//! `dyadsim sweep` and `dyadsim merge`.

use crate::experiment::sweep::{
    merge_files, pending_jobs, run_sweep, JobRecord, JobStatus, ResultStore, Shard, SweepOptions,
    SweepSpec, SweepSummary, ThreadPlan,
};
use crate::experiment::RunResult;
use crate::report::load::{StoredSettings, REPORT_SETTINGS_FILE};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Run a grid of training jobs from a sweep spec, in parallel, resumably.
///
/// Results are appended to `OUT/results.jsonl` (one JSON line per finished
/// job); rerunning the same command skips finished jobs. With `--shard i/n`
/// the file is `OUT/results.shard-i-of-n.jsonl`; combine shards with
/// `dyadsim merge`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Sweep spec (TOML tables: `base`, `axes`, optional `zip`, `output`, `report`, `requirements`).
    pub spec: PathBuf,
    /// Output directory (results file and report settings).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Run only the deterministic part i/n of the grid (jobs with index mod n = i, 0 ≤ i < n),
    /// e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-(n-1).
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Jobs run at once (default: one per core; with MATMUL_NUM_THREADS=t set, cores/t).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Rerun jobs whose last record is `failed`.
    #[arg(long)]
    pub retry_failed: bool,
    /// Run at most N pending jobs, then stop (rerun to continue).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Validate the spec and list the jobs of this shard without running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Combine shard result files into one (one line per config hash).
#[derive(clap::Args, Debug, Clone)]
pub struct MergeArgs {
    /// Shard files (`results.shard-*-of-*.jsonl`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Merged output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// `dyadsim sweep` with the real training loop.
pub fn run(args: &SweepArgs) -> Result<()> {
    let runner = TrainingRunner::default();
    run_with(args, |job| runner.run(job)).map(|_| ())
}

/// The job runner of the CLI: [`crate::experiment::train::run`] per job,
/// with datasets loaded once per distinct `[data]` section and shared
/// between jobs (read-only).
#[derive(Default)]
pub struct TrainingRunner {
    datasets: Mutex<HashMap<String, Arc<crate::data::Dataset>>>,
}

impl TrainingRunner {
    /// Trains one job's configuration; no observers (the sweep's progress
    /// bar counts jobs).
    pub fn run(&self, job: &crate::experiment::sweep::Job) -> Result<RunResult> {
        let data_cfg = &job.config.raw.data;
        let key = serde_json::to_string(data_cfg).context("data config to JSON")?;
        let cached = self
            .datasets
            .lock()
            .map_err(|_| anyhow::anyhow!("dataset cache lock poisoned"))?
            .get(&key)
            .cloned();
        let data = match cached {
            Some(d) => d,
            None => {
                // Loaded outside the lock: two jobs may load the same data at
                // once, which costs time but never blocks the other jobs.
                let d = Arc::new(crate::data::load(data_cfg)?);
                self.datasets
                    .lock()
                    .map_err(|_| anyhow::anyhow!("dataset cache lock poisoned"))?
                    .insert(key, d.clone());
                d
            }
        };
        let output = crate::experiment::train::run(&job.config, &data, &mut [])?;
        Ok(output.result)
    }
}

/// `dyadsim sweep` with any job runner (tests pass a fake one).
pub fn run_with<R>(args: &SweepArgs, runner: R) -> Result<SweepSummary>
where
    R: Fn(&crate::experiment::sweep::Job) -> Result<RunResult> + Sync,
{
    let spec = SweepSpec::from_file(&args.spec)?;
    let jobs = spec.jobs()?;
    let shard = args.shard.unwrap_or_default();
    let results = args.out.join(shard.file_name(&spec.output.results));
    let store = ResultStore::open(&results)?;
    for w in &store.warnings {
        eprintln!("warning: {w}");
    }
    let pending = pending_jobs(&jobs, &store, shard, args.retry_failed);
    let n_pending = args.limit.map_or(pending.len(), |l| l.min(pending.len()));
    if args.dry_run {
        println!(
            "{} jobs in the grid, {} in shard {}/{}, {} pending:",
            jobs.len(),
            jobs.iter().filter(|j| shard.contains(j.index)).count(),
            shard.index,
            shard.count,
            pending.len()
        );
        for j in &pending {
            println!(
                "  job {:>4}  {}  {}",
                j.index,
                &j.hash[..12],
                crate::experiment::sweep::describe_assignment(&j.axes)
            );
        }
        return Ok(SweepSummary::default());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // Settings for `dyadsim report OUT` (technology path made absolute).
    let mut settings = StoredSettings {
        report: spec.report.clone(),
        requirements: spec.requirements.clone(),
    };
    if let Some(t) = &settings.report.technology {
        settings.report.technology = Some(std::fs::canonicalize(t).unwrap_or_else(|_| t.clone()));
    }
    let settings_path = args.out.join(REPORT_SETTINGS_FILE);
    std::fs::write(
        &settings_path,
        toml::to_string(&settings).context("serialising report settings")?,
    )
    .with_context(|| format!("cannot write {}", settings_path.display()))?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let matmul_env = std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    let plan = ThreadPlan::for_cores(cores, n_pending, args.jobs, matmul_env);
    if matmul_env.is_none() {
        // matrixmultiply reads this once, at its first SGEMM: set it before
        // any job starts so parallel jobs do not oversubscribe the cores.
        std::env::set_var("MATMUL_NUM_THREADS", plan.threads_per_job.to_string());
    }
    eprintln!(
        "sweep: {} jobs, {} in this shard, {} already done, running {} ({} at once × {} SGEMM thread(s)); results → {}",
        jobs.len(),
        jobs.iter().filter(|j| shard.contains(j.index)).count(),
        jobs.iter().filter(|j| shard.contains(j.index)).count() - pending.len(),
        n_pending,
        plan.parallel_jobs,
        plan.threads_per_job,
        results.display()
    );
    let bar = ProgressBar::new(n_pending as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} jobs  {elapsed_precise} (eta {eta})  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let on_done = |r: &JobRecord| {
        if r.status == JobStatus::Failed {
            bar.println(format!(
                "job {} ({}) failed: {}",
                r.job,
                r.describe(),
                r.error.as_deref().unwrap_or("")
            ));
        }
        bar.set_message(format!("last: job {} {:?}", r.job, r.status));
        bar.inc(1);
    };
    let options = SweepOptions {
        shard,
        parallel_jobs: plan.parallel_jobs,
        retry_failed: args.retry_failed,
        limit: args.limit,
    };
    let summary = run_sweep(&jobs, &results, &options, runner, on_done)?;
    bar.finish_and_clear();
    eprintln!(
        "sweep: ran {} job(s): {} ok, {} diverged, {} failed; {} skipped (already recorded)",
        summary.ran, summary.ok, summary.diverged, summary.failed, summary.skipped
    );
    Ok(summary)
}

/// `dyadsim merge`.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let inputs: Vec<&std::path::Path> = args.inputs.iter().map(PathBuf::as_path).collect();
    let n = merge_files(&inputs, &args.out)?;
    eprintln!(
        "merge: {n} record(s) from {} file(s) → {}",
        inputs.len(),
        args.out.display()
    );
    Ok(())
}
