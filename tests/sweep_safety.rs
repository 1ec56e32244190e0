//! Sweeps share an output directory safely: a job whose process is killed
//! is recorded as failed and the sweep goes on, two processes split the
//! grid instead of running it twice, results stay inside `--out`, an axis lists
//! each value once, `merge` refuses files that are not one sweep's shards
//! and `report` skips an unreadable line instead of refusing the file.

mod common;

use common::dyadsim;

const BASE: &str = r#"
[base]
data = { train_size = 1500, validation_size = 0, test_size = 100 }
network = { arch = "784-32-10" }
training = { epochs = 2, batch = 20, eval_batch = 100 }
"#;

fn spec(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("spec.toml");
    std::fs::write(&path, format!("{BASE}{extra}")).expect("write spec");
    path
}

/// `dyadsim VERB INPUT --out OUT EXTRA…`: (exit code, stderr).
fn cmd(verb: &str, input: &str, out: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![verb, input, "--out", out];
    args.extend_from_slice(extra);
    let (code, _, err) = dyadsim(&args);
    (code, err)
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("results")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The worker processes (children) of process `pid`.
#[cfg(target_os = "linux")]
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// A job's process killed with SIGKILL (as the out-of-memory killer does)
/// is recorded as failed with how it died; the next job runs in a fresh
/// worker, the sweep exits 0, and a rerun does not retry the failed job
/// unless asked to.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_job_is_recorded_as_failed_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // Job 0 trains for a long time (it is killed long before it ends),
    // job 1 for one epoch.
    let spec = spec(tmp.path(), "[axes]\n\"training.epochs\" = [5000, 1]\n");
    let out = tmp.path().join("out");
    let mut sweep = std::process::Command::new(env!("CARGO_BIN_EXE_dyadsim"))
        .args([
            "sweep",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--jobs",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sweep");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let worker = loop {
        if let Some(&w) = children(sweep.id()).first() {
            break w;
        }
        assert!(std::time::Instant::now() < deadline, "no worker started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Let it get into training, then kill it as the OOM killer would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = std::process::Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = loop {
        if let Some(_status) = sweep.try_wait().expect("wait") {
            break sweep.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = sweep.kill();
            panic!("the sweep did not finish after its worker was killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sweep failed: {stderr}");
    let records = lines(&out.join("results.jsonl"));
    assert_eq!(records.len(), 2, "{stderr}");
    let by_job = |j: u64| {
        records
            .iter()
            .find(|r| r["job"] == j)
            .unwrap_or_else(|| panic!("job {j} not recorded: {stderr}"))
    };
    assert_eq!(by_job(0)["status"], "failed");
    let error = by_job(0)["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("killed by signal 9 (SIGKILL"),
        "the record says how the job died: {error}"
    );
    assert_eq!(by_job(1)["status"], "ok", "the next job ran: {stderr}");
    assert!(stderr.contains("1 ok, 0 diverged, 1 failed"), "{stderr}");
    // A rerun keeps the failed record (nothing to run) …
    let (code, err) = cmd("sweep", spec.to_str().unwrap(), out.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ran 0 jobs"), "{err}");
    assert_eq!(lines(&out.join("results.jsonl")).len(), 2);
}

#[test]
fn two_processes_on_one_out_run_each_job_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec = spec(tmp.path(), "[axes]\nseed = [1, 2, 3, 4, 5, 6]\n");
    let out = tmp.path().join("out");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dyadsim"))
            .args([
                "sweep",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--jobs",
                "1",
            ])
            .env("MATMUL_NUM_THREADS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sweep")
    };
    let (a, b) = (start(), start());
    let mut ran = 0;
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let n: usize = err
            .split("sweep: ran ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary line in: {err}"));
        ran += n;
    }
    // Between them the two processes ran each job once.
    assert_eq!(ran, 6);
    let records = lines(&out.join("results.jsonl"));
    let mut jobs: Vec<u64> = records.iter().map(|r| r["job"].as_u64().unwrap()).collect();
    jobs.sort();
    assert_eq!(jobs, vec![0, 1, 2, 3, 4, 5], "every job exactly once");
    // No claim is left behind.
    let left = std::fs::read_dir(out.join(".claims"))
        .expect("claims dir")
        .count();
    assert_eq!(left, 0);
}

#[test]
fn results_stay_inside_out_and_axis_values_are_distinct() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let outside = tmp.path().join("x.jsonl");
    std::fs::write(&outside, "unrelated\n").expect("write");
    for results in [
        "../x.jsonl",
        outside.to_str().unwrap(),
        "sub/r.jsonl",
        "r.txt",
    ] {
        let spec = spec(
            tmp.path(),
            &format!("[axes]\nseed = [1]\n[output]\nresults = {results:?}\n"),
        );
        let (code, err) = cmd("sweep", spec.to_str().unwrap(), out.to_str().unwrap(), &[]);
        assert_eq!(code, 2, "{results}: {err}");
        assert!(err.contains("[output] results"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "unrelated\n");
    // Piped (a Slurm log): one line per finished job; --quiet: nothing.
    let two = spec(tmp.path(), "[axes]\nseed = [1, 2]\n");
    let (code, err) = cmd("sweep", two.to_str().unwrap(), out.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    for job in [
        "job 0 (seed = 1): ok, test accuracy",
        "job 1 (seed = 2): ok, test accuracy",
    ] {
        assert!(err.contains(job), "{err}");
    }
    let quiet_out = tmp.path().join("quiet");
    let (code, err) = cmd(
        "sweep",
        two.to_str().unwrap(),
        quiet_out.to_str().unwrap(),
        &["--quiet"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.trim().is_empty(), "{err}");
    let spec = spec(tmp.path(), "[axes]\nseed = [1, 1, 2]\n");
    let (code, err) = cmd(
        "sweep",
        spec.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--dry-run"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("'seed' lists the value 1 twice"), "{err}");
}

#[test]
fn merge_refuses_what_is_not_one_sweeps_shards_and_report_skips_a_bad_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = |extra: &str, name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = spec(&dir, extra);
        let out = dir.join("out");
        let (code, err) = cmd("sweep", spec.to_str().unwrap(), out.to_str().unwrap(), &[]);
        assert_eq!(code, 0, "{err}");
        out.join("results.jsonl")
    };
    let seeds = run("[axes]\nseed = [1]\n", "a");
    let alphas = run("[axes]\n\"learning.alpha\" = [0.5]\n", "b");
    let merged = tmp.path().join("merged.jsonl");
    let (code, _, err) = dyadsim(&[
        "merge",
        seeds.to_str().unwrap(),
        alphas.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("different sweeps"), "{err}");
    let toml = tmp.path().join("a").join("spec.toml");
    let (code, _, err) = dyadsim(&[
        "merge",
        toml.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a results file"), "{err}");
    assert!(!merged.exists());
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.contains(".tmp"), "a temporary file was left: {name}");
    }
    // A record of the same job with another result: merged with a warning.
    let text = std::fs::read_to_string(&seeds).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    record["result"]["test_accuracy"] = serde_json::json!(0.123);
    let other = tmp.path().join("other.jsonl");
    std::fs::write(&other, format!("{record}\n")).unwrap();
    let (code, _, err) = dyadsim(&[
        "merge",
        seeds.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("two different finished records"), "{err}");
    // report: a line that is not UTF-8 is skipped, the rest reported.
    let mut bytes = std::fs::read(&seeds).unwrap();
    bytes.extend_from_slice(b"\xff\xfe{\"job\": 9}\n");
    let damaged = tmp.path().join("damaged.jsonl");
    std::fs::write(&damaged, bytes).unwrap();
    let (code, err) = cmd(
        "report",
        damaged.to_str().unwrap(),
        tmp.path().join("report").to_str().unwrap(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn technologies_by_name_and_a_sweep_directory_that_moves() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tech = tmp.path().join("my_tech.toml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/device_models/technology/pcm_gst_32nm.toml"
        ),
        &tech,
    )
    .expect("copy technology");
    let spec = spec(
        tmp.path(),
        "[axes]\nseed = [1]\n[report]\ntechnology = \"my_tech.toml\"\n",
    );
    let out = tmp.path().join("out");
    let (code, err) = cmd("sweep", spec.to_str().unwrap(), out.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    let settings = std::fs::read_to_string(out.join("report-settings.toml")).expect("settings");
    assert!(
        settings.contains("technology = \"technology.toml\""),
        "{settings}"
    );
    // The spec's technology file goes away and the sweep directory moves:
    // the report still finds its technology.
    std::fs::remove_file(&tech).expect("rm");
    let moved = tmp.path().join("moved");
    std::fs::rename(&out, &moved).expect("mv");
    let (code, err) = cmd(
        "report",
        moved.to_str().unwrap(),
        tmp.path().join("r1").to_str().unwrap(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // A shipped technology by name, and an unknown one.
    let (code, err) = cmd(
        "report",
        moved.to_str().unwrap(),
        tmp.path().join("r2").to_str().unwrap(),
        &["--technology", "pcm_gst_32nm"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = cmd(
        "report",
        moved.to_str().unwrap(),
        tmp.path().join("r3").to_str().unwrap(),
        &["--technology", "no_such_tech"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("neither a file nor a shipped technology"),
        "{err}"
    );
}

#[test]
fn sweep_and_report_write_a_flat_results_csv() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec = spec(
        tmp.path(),
        "[axes]\nseed = [1, 2]\n\"learning.alpha\" = [0.0, 1.0]\n",
    );
    let out = tmp.path().join("out");
    let (code, err) = cmd("sweep", spec.to_str().unwrap(), out.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for column in [
        "learning.alpha",
        "seed",
        "status",
        "test_accuracy",
        "energy_total_j",
        "lifetime_1pct_epochs",
    ] {
        assert!(
            header.iter().any(|h| h == column),
            "{column} missing from {header:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 4);
    let acc = header.iter().position(|h| h == "test_accuracy").unwrap();
    for row in &rows {
        let a: f64 = row[acc].parse().expect("accuracy is a number");
        assert!((0.0..=1.0).contains(&a));
    }
    let report = tmp.path().join("report");
    let (code, err) = cmd(
        "report",
        out.to_str().unwrap(),
        report.to_str().unwrap(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let again = std::fs::read_to_string(report.join("results.csv")).expect("report's results.csv");
    assert_eq!(again, text);
}
