//! Sweep engine: sharding, merge, resume, truncated lines, failures and
//! spec errors — with a fake job runner, so no training happens here.

use anyhow::Result;
use dyadsim::experiment::sweep::{
    merge_files, run_sweep, Job, JobStatus, ResultStore, Shard, SweepOptions, SweepRequest,
    SweepSpec,
};
use dyadsim::experiment::RunResult;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const SPEC: &str = r#"
[base]
seed = 1
[base.data]
train_size = 100
test_size = 50
[base.network]
arch = "4-3-2"
[axes]
"learning.alpha" = [0.0, 0.5, 1.0]
seed = [1, 2]
"device.read_noise" = [0.0, 0.05]
"#;

/// A deterministic fake run: accuracy is a function of the config only.
fn fake(job: &Job) -> Result<RunResult> {
    let c = &job.config.raw();
    let acc = 0.5 + 0.3 * c.learning.alpha as f64 + 0.01 * c.seed as f64;
    let diverged = c.learning.alpha == 0.0 && c.seed == 2;
    Ok(serde_json::from_value(serde_json::json!({
        "status": if diverged { "diverged" } else { "ok" },
        "diverged_at": if diverged { serde_json::json!({"epoch": 1, "batch": 3, "layer": 2, "reason": "runaway_state", "value": 1e4}) } else { serde_json::Value::Null },
        "test_accuracy": if diverged { None } else { Some(acc) },
        "max_state": 1.0,
        "samples_per_second": 10.0,
        "wall_seconds": 0.5,
        "samples_seen": 100,
        "epochs": [],
        "hardware": null
    }))?)
}

fn spec() -> SweepSpec {
    SweepSpec::from_str_in(SPEC, Path::new(".")).unwrap()
}

fn result_set(path: &Path) -> BTreeSet<(String, String)> {
    ResultStore::open_read_only(path)
        .unwrap()
        .unique()
        .into_iter()
        .map(|r| (r.hash.clone(), serde_json::to_string(&r.result).unwrap()))
        .collect()
}

proptest! {
    #[test]
    fn shards_partition_the_grid(jobs in 0usize..400, n in 1usize..40) {
        let mut seen = vec![0u32; jobs];
        for i in 0..n {
            let s: Shard = format!("{i}/{n}").parse().unwrap();
            for (j, count) in seen.iter_mut().enumerate() {
                if s.contains(j) { *count += 1; }
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
    }
}

#[test]
fn shard_runs_then_merge_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = spec().jobs().unwrap();
    assert_eq!(jobs.len(), 12);
    let whole = dir.path().join("whole.jsonl");
    let s = run_sweep(&jobs, &whole, &SweepOptions::default(), fake, |_| {}).unwrap();
    // α = 0 with seed 2 diverges at both noise levels
    assert_eq!((s.ran, s.ok, s.diverged, s.failed), (12, 10, 2, 0));
    for n in [1usize, 2, 5, 13] {
        let mut files: Vec<PathBuf> = Vec::new();
        let mut ran = 0;
        for i in 0..n {
            let f = dir.path().join(format!("n{n}-shard{i}.jsonl"));
            let opts = SweepOptions {
                shard: Shard { index: i, count: n },
                ..Default::default()
            };
            ran += run_sweep(&jobs, &f, &opts, fake, |_| {}).unwrap().ran;
            files.push(f);
        }
        assert_eq!(ran, 12, "n = {n}");
        // merging twice the same shard must not duplicate jobs
        files.push(files[0].clone());
        let merged = dir.path().join(format!("merged{n}.jsonl"));
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        assert_eq!(merge_files(&refs, &merged).unwrap(), 12);
        assert_eq!(result_set(&merged), result_set(&whole), "n = {n}");
    }
}

#[test]
fn resume_runs_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = spec().jobs().unwrap();
    let path = dir.path().join("r.jsonl");
    let first: Mutex<BTreeSet<String>> = Mutex::default();
    let opts = SweepOptions {
        limit: Some(5),
        parallel_jobs: 2,
        ..Default::default()
    };
    let s = run_sweep(
        &jobs,
        &path,
        &opts,
        |j: &Job| {
            first.lock().unwrap().insert(j.hash.clone());
            fake(j)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(s.ran, 5);
    let second: Mutex<BTreeSet<String>> = Mutex::default();
    let s = run_sweep(
        &jobs,
        &path,
        &SweepOptions::default(),
        |j: &Job| {
            second.lock().unwrap().insert(j.hash.clone());
            fake(j)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!((s.ran, s.skipped), (7, 5));
    let (a, b) = (first.into_inner().unwrap(), second.into_inner().unwrap());
    assert!(a.is_disjoint(&b));
    assert_eq!(a.len() + b.len(), 12);
    // a third run has nothing to do
    let calls = AtomicUsize::new(0);
    let s = run_sweep(
        &jobs,
        &path,
        &SweepOptions::default(),
        |j: &Job| {
            calls.fetch_add(1, Ordering::SeqCst);
            fake(j)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!((s.ran, s.skipped, calls.into_inner()), (0, 12, 0));
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 12);
}

#[test]
fn truncated_last_line_is_tolerated_and_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = spec().jobs().unwrap();
    let path = dir.path().join("r.jsonl");
    run_sweep(&jobs, &path, &SweepOptions::default(), fake, |_| {}).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let last_hash = serde_json::from_str::<serde_json::Value>(&last).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    // a crash in the middle of the last write
    std::fs::write(&path, &text[..text.len() - last.len() / 2]).unwrap();
    let store = ResultStore::open_read_only(&path).unwrap();
    assert_eq!(store.unique().len(), 11);
    assert_eq!(store.warnings.len(), 1);
    let rerun: Mutex<Vec<String>> = Mutex::default();
    let s = run_sweep(
        &jobs,
        &path,
        &SweepOptions::default(),
        |j: &Job| {
            rerun.lock().unwrap().push(j.hash.clone());
            fake(j)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(s.ran, 1);
    assert_eq!(rerun.into_inner().unwrap(), vec![last_hash]);
    // the file is clean again: every line parses
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert_eq!(ResultStore::open(&path).unwrap().unique().len(), 12);
}

#[test]
fn failures_and_panics_are_recorded_and_do_not_stop_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = spec().jobs().unwrap();
    let path = dir.path().join("r.jsonl");
    let runner = |j: &Job| -> Result<RunResult> {
        if j.config.raw().learning.alpha == 1.0 {
            anyhow::bail!("simulated out-of-memory");
        }
        if j.config.raw().learning.alpha == 0.5 && j.config.raw().seed == 2 {
            panic!("simulated bug");
        }
        fake(j)
    };
    let s = run_sweep(&jobs, &path, &SweepOptions::default(), runner, |_| {}).unwrap();
    // α = 1: 4 errors; α = ½ with seed 2: 2 panics; α = 0 with seed 2: 2 diverged
    assert_eq!((s.ran, s.failed, s.diverged, s.ok), (12, 6, 2, 4));
    let store = ResultStore::open(&path).unwrap();
    let failed: Vec<_> = store
        .unique()
        .into_iter()
        .filter(|r| r.status == JobStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().any(|r| r
        .error
        .as_deref()
        .unwrap()
        .contains("simulated out-of-memory")));
    assert!(failed
        .iter()
        .any(|r| r.error.as_deref().unwrap().contains("simulated bug")));
    let diverged: Vec<_> = store
        .unique()
        .into_iter()
        .filter(|r| r.status == JobStatus::Diverged)
        .collect();
    assert_eq!(diverged.len(), 2);
    assert_eq!(
        diverged[0].result.as_ref().unwrap()["diverged_at"]["reason"],
        "runaway_state"
    );
    // failed jobs are kept unless retried; a retry that succeeds wins
    let s = run_sweep(&jobs, &path, &SweepOptions::default(), fake, |_| {}).unwrap();
    assert_eq!(s.ran, 0);
    let opts = SweepOptions {
        retry_failed: true,
        ..Default::default()
    };
    let s = run_sweep(&jobs, &path, &opts, fake, |_| {}).unwrap();
    assert_eq!((s.ran, s.failed), (6, 0));
    let store = ResultStore::open(&path).unwrap();
    assert!(store.unique().iter().all(|r| r.status != JobStatus::Failed));
}

/// Writes a spec, runs the CLI path with a counting runner, returns the error text.
fn spec_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, text).unwrap();
    let calls = AtomicUsize::new(0);
    let args = SweepRequest {
        spec,
        out: dir.path().join("out"),
        shard: Shard::default(),
        jobs: Some(1),
        retry_failed: false,
        limit: None,
    };
    let err = args
        .plan_and_run(|j: &Job| {
            calls.fetch_add(1, Ordering::SeqCst);
            fake(j)
        })
        .expect_err("the spec must be rejected");
    assert_eq!(calls.into_inner(), 0, "no job may run for a bad spec");
    assert!(!dir.path().join("out").join("results.jsonl").exists());
    format!("{err:#}")
}

#[test]
fn bad_specs_are_clear_errors_before_any_job_runs() {
    let e = spec_error("[axes]\n\"learning.alpah\" = [0.0, 1.0]\n");
    assert!(
        e.contains("learning.alpah") && e.contains("unknown field"),
        "{e}"
    );
    let e = spec_error("[axes]\n\"learning.alpha\" = []\n");
    assert!(e.contains("learning.alpha") && e.contains("empty"), "{e}");
    let e = spec_error("[axes]\n\"learning.alpha\" = [0.5, \"high\"]\n");
    assert!(
        e.contains("learning.alpha") && e.contains("invalid type"),
        "{e}"
    );
    let e = spec_error("[axes]\n\"learning.alpha\" = [0.5, 1.5]\n");
    assert!(e.contains("learning.alpha") && e.contains("[0, 1]"), "{e}");
    let e = spec_error("[axes]\n\"learning.alpha\" = 0.5\n");
    assert!(e.contains("must be a list"), "{e}");
    let e = spec_error("[axis]\n\"learning.alpha\" = [0.5]\n");
    assert!(e.contains("unknown field") && e.contains("axis"), "{e}");
    let e = spec_error("[base]\nepochs = 3\n[axes]\nseed = [1]\n");
    assert!(e.contains("base") && e.contains("epochs"), "{e}");
    let e = spec_error("[zip]\n\"learning.alpha\" = [0.5, 1.0]\nseed = [1]\n");
    assert!(e.contains("equal lengths"), "{e}");
    let e = spec_error("[axes]\nseed = [1]\n[requirements]\naccuracy_min = 90\n");
    assert!(e.contains("accuracy_min"), "{e}");
    // Every section is checked up front, the circuit's and cross-section
    // rules included, so a bad circuit axis fails before the first job.
    let e = spec_error("[axes]\n\"circuit.dt\" = [0.1, 3.0]\n");
    assert!(e.contains("circuit.dt") && e.contains("(0, 2.5]"), "{e}");
    let e = spec_error(
        "[base.training]\ndynamics = \"ode\"\n[axes]\n\"learning.rule\" = [\"dpt\", \"bp\"]\n",
    );
    assert!(
        e.contains("training.dynamics") && e.contains("learning.rule"),
        "{e}"
    );
}

#[test]
fn cli_path_writes_shard_files_and_report_settings() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!("{SPEC}\n[requirements]\naccuracy_min = 0.6\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut total = 0;
    for i in 0..3 {
        let args = SweepRequest {
            spec: spec.clone(),
            out: out.clone(),
            shard: Shard { index: i, count: 3 },
            jobs: Some(2),
            retry_failed: false,
            limit: None,
        };
        total += args.plan_and_run(fake).unwrap().ran;
        assert!(out.join(format!("results.shard-{i}-of-3.jsonl")).exists());
    }
    assert_eq!(total, 12);
    let settings = std::fs::read_to_string(out.join("report-settings.toml")).unwrap();
    assert!(settings.contains("accuracy_min = 0.6"), "{settings}");
}

/// The streaming plan (`SweepSpec::pending`, no job kept in memory) picks
/// exactly the jobs the materialised grid would, fresh and on resume, for
/// every shard and with failed jobs kept or retried.
#[test]
fn streaming_pending_equals_the_materialised_grid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.jsonl");
    let jobs = spec().jobs().unwrap();
    let materialised = |store: &ResultStore, shard: Shard, retry: bool| -> Vec<usize> {
        jobs.iter()
            .filter(|j| shard.contains(j.index))
            .filter(|j| match store.latest(&j.hash) {
                None => true,
                Some(r) => retry && r.status == JobStatus::Failed,
            })
            .map(|j| j.index)
            .collect()
    };
    let shards: Vec<Shard> = ["0/1", "0/3", "2/3"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let empty = ResultStore::open(&path).unwrap();
    for &shard in &shards {
        let fresh = spec().pending(&empty, shard, false).unwrap();
        assert_eq!(fresh, materialised(&empty, shard, false));
    }
    // Record five jobs, one of them failed.
    let failing = |job: &Job| {
        if job.index == 3 {
            anyhow::bail!("a failure")
        }
        fake(job)
    };
    let opts = SweepOptions {
        limit: Some(5),
        ..Default::default()
    };
    run_sweep(&jobs, &path, &opts, failing, |_| {}).unwrap();
    let store = ResultStore::open(&path).unwrap();
    assert_eq!(store.records.len(), 5);
    for &shard in &shards {
        for retry in [false, true] {
            let streamed = spec().pending(&store, shard, retry).unwrap();
            assert_eq!(
                streamed,
                materialised(&store, shard, retry),
                "{shard:?} {retry}"
            );
        }
    }
    let all = spec().pending(&store, Shard::default(), false).unwrap();
    assert_eq!(all, (5..12).collect::<Vec<_>>());
    let retried = spec().pending(&store, Shard::default(), true).unwrap();
    assert_eq!(retried, [3, 5, 6, 7, 8, 9, 10, 11]);
}
