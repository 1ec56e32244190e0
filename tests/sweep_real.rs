//! End to end with the real training loop: a tiny 2 × 2 sweep through the
//! CLI path, resumed, then reported.

use dyadsim::experiment::sweep::{Shard, SweepRequest, TrainingRunner};
use dyadsim::report::{generate, ReportOptions};

const SPEC: &str = r#"
[base]
data = { train_size = 200, validation_size = 0, test_size = 100 }
network = { arch = "784-16-10" }
training = { epochs = 2, batch = 20, eval_batch = 100 }
[axes]
"learning.alpha" = [0.0, 1.0]
"learning.rule" = ["dp", "dpt"]
[requirements]
accuracy_min = 0.3
"#;

#[test]
fn tiny_real_sweep_resumes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = dir.path().join("out");
    let runner = TrainingRunner::default();
    let mut args = SweepRequest {
        spec,
        out: out.clone(),
        shard: Shard::default(),
        jobs: Some(2),
        retry_failed: false,
        limit: Some(1),
    };
    let s = args.plan_and_run(|j| runner.run(j)).unwrap();
    assert_eq!((s.ran, s.failed), (1, 0));
    args.limit = None;
    let s = args.plan_and_run(|j| runner.run(j)).unwrap();
    assert_eq!((s.ran, s.skipped, s.failed), (3, 1, 0));

    let report = dir.path().join("report");
    let r = generate(
        &out,
        &ReportOptions {
            out: report.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.runs, 4);
    let md = std::fs::read_to_string(&r.markdown).unwrap();
    let html = std::fs::read_to_string(&r.html).unwrap();
    for text in [&md, &html] {
        for needle in [
            "learning.alpha",
            "learning.rule",
            "nudging asymmetry α ∈ {0, 1}",
            "learning rule ∈ {DP, DP⊤}",
        ] {
            assert!(text.contains(needle), "report lacks {needle}");
        }
        // every run trained and has an accuracy in the table
        assert_eq!(
            text.matches("| ok |").count() + text.matches("<td>ok</td>").count(),
            4
        );
    }
    // the spec's requirement reached the report through report-settings.toml
    assert!(md.contains("accuracy ≥ 30.00%"), "{md}");
    for f in [
        "accuracy_vs_learning_alpha",
        "heatmap_learning_alpha_learning_rule",
        "learning_curves",
    ] {
        assert!(
            report.join("figures").join(format!("{f}.png")).exists(),
            "{f}"
        );
        assert!(
            report.join("figures").join(format!("{f}.svg")).exists(),
            "{f}"
        );
    }
}
