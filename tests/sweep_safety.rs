//! Sweeps share an output directory safely: two processes split the grid
//! instead of running it twice, results stay inside `--out`, an axis lists
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

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("results")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
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
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
        let (code, _, err) = dyadsim(&[
            "sweep",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{results}: {err}");
        assert!(err.contains("[output] results"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "unrelated\n");
    let spec = spec(tmp.path(), "[axes]\nseed = [1, 1, 2]\n");
    let (code, _, err) = dyadsim(&[
        "sweep",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dry-run",
    ]);
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
        let (code, _, err) = dyadsim(&[
            "sweep",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
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
    let (code, _, err) = dyadsim(&[
        "report",
        damaged.to_str().unwrap(),
        "--out",
        tmp.path().join("report").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
}
