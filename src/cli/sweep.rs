//! `dyadsim sweep` and `dyadsim merge`.

use anyhow::{Context, Result};
use dyadsim::experiment::sweep::{
    describe_assignment, merge_files, Job, JobRecord, JobStatus, Shard, SweepRequest, SweepSummary,
    ThreadPlan, WorkerPool,
};
use dyadsim::experiment::RunResult;
use dyadsim::report::count;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

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
    /// No progress bar, per-job lines or summary (errors and warnings still print).
    #[arg(long)]
    pub quiet: bool,
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

/// `dyadsim sweep` with the real training loop, each job in a worker
/// process (`dyadsim sweep-worker`) so that a job that aborts or is killed
/// is recorded as failed and the sweep goes on.
pub fn run(args: &SweepArgs) -> Result<()> {
    let exe = std::env::current_exe()
        .context("locating the dyadsim executable to start the sweep's worker processes")?;
    let workers = WorkerPool::new(exe, vec!["sweep-worker".into()]);
    run_with(args, |job| workers.run(job)).map(|_| ())
}

impl SweepArgs {
    /// The library request these arguments describe.
    fn request(&self) -> SweepRequest {
        SweepRequest {
            spec: self.spec.clone(),
            out: self.out.clone(),
            shard: self.shard.unwrap_or_default(),
            jobs: self.jobs,
            retry_failed: self.retry_failed,
            limit: self.limit,
        }
    }
}

/// `dyadsim sweep` with any job runner: plans the sweep, lists it
/// (`--dry-run`) or runs it behind a progress bar.
fn run_with<R>(args: &SweepArgs, runner: R) -> Result<SweepSummary>
where
    R: Fn(&Job) -> Result<RunResult> + Sync,
{
    if args.jobs == Some(0) {
        anyhow::bail!("--jobs 0: must be ≥ 1 (leave it out for one job per core)");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(jobs) = args.jobs {
        // Each parallel job is a worker process with its own copy of the
        // dataset (≈210 MB for MNIST) and its own arrays; training is
        // compute-bound, so jobs beyond the cores only add memory.
        let most = 4 * cores;
        if jobs > most {
            anyhow::bail!(
                "--jobs {jobs}: at most {most} on this machine (4 per core; it has {}): every parallel job is a process with its own dataset and arrays, and jobs beyond the cores only wait for them",
                count(cores, "core")
            );
        }
        if jobs > cores && !args.quiet {
            eprintln!(
                "warning: --jobs {jobs} runs more jobs at once than the machine's {}: they share the cores (no faster) and each holds its own dataset in memory",
                count(cores, "core")
            );
        }
    }
    let request = args.request();
    let plan = request.plan()?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let shard = request.shard;
    if args.dry_run {
        println!(
            "{} in the grid, {} in shard {}/{}, {} pending:",
            count(plan.total, "job"),
            plan.in_shard,
            shard.index,
            shard.count,
            plan.pending.len()
        );
        // Printed as each job is built: a long grid lists at once.
        let mut listing = std::io::BufWriter::new(std::io::stdout().lock());
        for j in plan.pending_jobs() {
            let j = j?;
            writeln!(
                listing,
                "  job {:>4}  {}  {}",
                j.index,
                &j.hash[..12],
                describe_assignment(&j.axes)
            )
            .context("writing the job list")?;
        }
        listing.flush().context("writing the job list")?;
        return Ok(SweepSummary::default());
    }
    let matmul_env = std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    let threads = ThreadPlan::for_cores(cores, plan.to_run, args.jobs, matmul_env);
    if matmul_env.is_none() {
        // matrixmultiply reads this once, at its first SGEMM: the binary
        // sets it before any job starts so parallel jobs do not
        // oversubscribe the cores.
        std::env::set_var("MATMUL_NUM_THREADS", threads.threads_per_job.to_string());
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // A worker process's own rayon pool (per-device passes of a
        // crossbar) gets the job's share of the cores, as the sweep's pool
        // would give it in one process.
        std::env::set_var("RAYON_NUM_THREADS", threads.threads_per_job.to_string());
    }
    if !args.quiet {
        eprintln!(
            "sweep: {}, {} in this shard, {} already done, running {} ({} at once × {}); results → {}",
            count(plan.total, "job"),
            plan.in_shard,
            plan.in_shard - plan.pending.len(),
            plan.to_run,
            threads.parallel_jobs,
            count(threads.threads_per_job, "SGEMM thread"),
            plan.results.display()
        );
    }
    let bar = ProgressBar::new(plan.to_run as u64);
    let terminal = std::io::stderr().is_terminal();
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else if terminal {
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
        if r.status == JobStatus::Failed && !args.quiet {
            bar.println(format!(
                "job {} ({}) failed: {}",
                r.job,
                r.describe(),
                r.error.as_deref().unwrap_or("")
            ));
        } else if !terminal && !args.quiet {
            // A log (Slurm, a pipe): one line per finished job instead of a bar.
            let accuracy = r
                .result
                .as_ref()
                .and_then(|v| v.get("test_accuracy"))
                .and_then(|v| v.as_f64())
                .map_or_else(|| "n/a".to_string(), |a| format!("{:.2}%", 100.0 * a));
            eprintln!(
                "job {} ({}): {}, test accuracy {accuracy}, {:.1} s",
                r.job,
                r.describe(),
                r.status,
                r.wall_seconds
            );
        }
        bar.set_message(format!("last: job {} {}", r.job, r.status));
        bar.inc(1);
    };
    let summary = request.run(&plan, threads, runner, on_done)?;
    bar.finish_and_clear();
    // The flat table of every job so far, for pandas or a spreadsheet.
    if summary.ran > 0 {
        let csv = request.out.join("results.csv");
        let written = dyadsim::report::load::load(&request.out).and_then(|data| {
            let tech = dyadsim::report::table::technology_for(&data, None)?;
            dyadsim::report::table::write_results_csv(&data, &tech, &csv)
        });
        if let Err(e) = written {
            // The results themselves are recorded; only the flat copy is missing.
            eprintln!("warning: {} not written: {e:#}", csv.display());
        }
    }
    if !args.quiet {
        eprintln!(
            "sweep: ran {}: {} ok, {} diverged, {} failed; {} skipped (already recorded or run by another process)",
            count(summary.ran, "job"),
            summary.ok, summary.diverged, summary.failed, summary.skipped
        );
    }
    Ok(summary)
}

/// `dyadsim merge`.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let inputs: Vec<&std::path::Path> = args.inputs.iter().map(PathBuf::as_path).collect();
    let n = merge_files(&inputs, &args.out)?;
    eprintln!(
        "merge: {} from {} → {}",
        count(n, "record"),
        count(inputs.len(), "file"),
        args.out.display()
    );
    Ok(())
}
