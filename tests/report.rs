//! Reports from a tiny 2 × 2 sweep (fake runner, so it runs without the
//! training loop) and from a single run directory.

use anyhow::Result;
use dyadsim::experiment::sweep::{run_sweep, Job, SweepOptions, SweepSpec};
use dyadsim::experiment::RunResult;
use dyadsim::report::feasibility::Requirements;
use dyadsim::report::{generate, ReportOptions};
use serde_json::json;
use std::path::Path;

const SPEC: &str = r#"
[base]
[base.network]
arch = "4-3-2"
[base.training]
dynamics = "ode"
[axes]
"learning.alpha" = [0.25, 0.75]
"device.read_noise" = [0.0, 0.05]
"#;

/// A fake run with every field the report draws: epochs with accuracy,
/// Lipschitz, angle and settle time, and crossbar hardware statistics.
fn fake(job: &Job) -> Result<RunResult> {
    let a = job.config.raw().learning.alpha as f64;
    let noise = job
        .config
        .raw()
        .device
        .get("read_noise")
        .and_then(|v| v.as_float())
        .unwrap_or(0.0);
    let diverged = a > 0.5 && noise > 0.0;
    let epochs: Vec<_> = (1..=3)
        .map(|e| {
            json!({
                "epoch": e, "test_accuracy": 0.5 + 0.1 * e as f64 - noise,
                "lipschitz": 2.0 + a, "max_state": 1.0, "gradient_angle_deg": 30.0 / e as f64,
                "settle_time_mean": 5.0 + 10.0 * a, "samples_per_second": 1.0, "status": "ok"
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "status": if diverged { "diverged" } else { "ok" },
        "diverged_at": if diverged { json!({"epoch": 2, "batch": 1, "layer": 1, "reason": "runaway_state", "value": 1e4}) } else { json!(null) },
        "test_accuracy": if diverged { None } else { Some(0.8 - noise) },
        "lipschitz": 2.0 + a,
        "max_state": 1.0, "samples_per_second": 1.0, "wall_seconds": 1.0,
        "samples_seen": 300, "epochs": epochs,
        "hardware": {"layers": [
            {"pulses_applied": 600, "pulses_per_device_mean": 5.0, "pulses_per_device_max": 20,
             "conductance_histogram": {"edges": [0.0, 0.25, 0.5, 1.0], "counts": [3, 5, 2]},
             "pulse_histogram": {"edges": [0.0, 10.0, 20.0], "counts": [25, 5]}},
            {"pulses_applied": 100,
             "conductance_histogram": {"edges": [0.0, 0.25, 0.5, 1.0], "counts": [1, 4, 3]}}
        ]}
    }))?)
}

#[test]
fn tiny_sweep_report_has_figures_and_mentions_every_axis_value() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SweepSpec::from_str_in(SPEC, Path::new(".")).unwrap();
    let jobs = spec.jobs().unwrap();
    assert_eq!(jobs.len(), 4);
    let results = dir.path().join("sweep").join("results.jsonl");
    run_sweep(&jobs, &results, &SweepOptions::default(), fake, |_| {}).unwrap();
    let out = dir.path().join("report");
    let summary = generate(
        &dir.path().join("sweep"),
        &ReportOptions {
            out: out.clone(),
            requirements: Requirements {
                accuracy_min: Some(0.78),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(summary.runs, 4);
    for name in [
        "accuracy_vs_learning_alpha",
        "accuracy_vs_device_read_noise",
        "heatmap_device_read_noise_learning_alpha",
        "divergence_map",
        "lipschitz_vs_learning_alpha",
        "settle_vs_learning_alpha",
        "learning_curves",
        "gradient_angle",
        "conductance_histogram_0",
        "pulse_histogram_0",
    ] {
        let png = out.join("figures").join(format!("{name}.png"));
        let svg = out.join("figures").join(format!("{name}.svg"));
        let bytes = std::fs::read(&png).unwrap_or_else(|_| panic!("{} missing", png.display()));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(svg_text.contains("<svg"), "{name}");
    }
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    let html = std::fs::read_to_string(&summary.html).unwrap();
    for text in [&md, &html] {
        for needle in [
            "learning.alpha",
            "device.read_noise",
            "0.25",
            "0.75",
            "0.0",
            "0.05",
        ] {
            assert!(text.contains(needle), "report lacks {needle}");
        }
        assert!(text.contains("runaway state"));
        assert!(text.contains("Hardware feasibility"));
        assert!(text.contains("reram_taox_32nm"));
    }
    assert!(md.contains("](figures/accuracy_vs_learning_alpha.png)"));
    assert!(html.contains("data:image/png;base64,"));
    assert!(
        !html.contains("src=\"figures/"),
        "HTML must be self-contained"
    );
    // accuracy ≥ 0.78 holds only for the two noise-free runs
    assert!(
        md.contains("2 of 4 configurations meet every requirement"),
        "{md}"
    );
    // The first screen says what was swept, what won, what did not finish
    // and the verdict, then links every section.
    let first_screen = &md[..md.find("## Runs").expect("runs section")];
    for needle in [
        "**Swept:** read-noise σ (relative to G) ∈ {0, 0.05} × nudging asymmetry α ∈ {0.25, 0.75}.",
        "**Best configuration:** read noise σ = 0, α = 0.75 — 80.00 % test accuracy.",
        "**Did not finish:** 1 run diverged, 0 runs failed — read noise σ = 0.05, α = 0.75 (1 of 1).",
        "**Feasibility:** 2 of 4 configurations meet every requirement (accuracy ≥ 78.00%).",
        "- [Hardware feasibility](#hardware-feasibility)",
        "- [Runs](#runs)",
    ] {
        assert!(first_screen.contains(needle), "lacks {needle}:\n{first_screen}");
    }
    // The runs table is folded; the headings carry the ids the contents link.
    assert!(md.contains("<details><summary>4 runs (click to unfold)</summary>"));
    assert!(html.contains("<h2 id=\"hardware-feasibility\">"));
    assert!(html.contains("<a href=\"#hardware-feasibility\">"));
}

#[test]
fn run_directory_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let spec = SweepSpec::from_str_in(SPEC, Path::new(".")).unwrap();
    let job = &spec.jobs().unwrap()[0];
    let result = fake(job).unwrap();
    std::fs::write(
        run.join("result.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    std::fs::write(
        run.join("config.toml"),
        toml::to_string(&job.config.raw()).unwrap(),
    )
    .unwrap();
    let out = dir.path().join("report");
    let tech =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("device_models/technology/pcm_gst_32nm.toml");
    let s = generate(
        &run,
        &ReportOptions {
            out: out.clone(),
            technology: Some(tech),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.runs, 1);
    let md = std::fs::read_to_string(&s.markdown).unwrap();
    assert!(md.contains("pcm_gst_32nm"));
    assert!(md.contains("learning_curves.png"));
    assert!(out.join("figures/conductance_histogram_0.svg").exists());
}

/// The HTML page renders the Markdown markup used in the blocks and leaves
/// a lone `*` (a product in a source citation) alone.
#[test]
fn html_inline_markup() {
    use dyadsim::report::{render_html, Block};
    let dir = tempfile::tempdir().unwrap();
    let html = render_html(
        "t",
        &[
            Block::Para("a `x < y` and **bold** and *it*".into()),
            Block::Para("E = FOM * 2^N".into()),
        ],
        dir.path(),
    )
    .unwrap();
    assert!(html.contains("<code>x &lt; y</code>"), "{html}");
    assert!(
        html.contains("<b>bold</b>") && html.contains("<i>it</i>"),
        "{html}"
    );
    assert!(html.contains("E = FOM * 2^N"), "{html}");
}

/// The committed sample results (written before the hardware statistics
/// and the report's runs were typed) load into typed runs: every job, no
/// warnings, each crossbar run with its per-layer statistics and a stored
/// configuration that names its rule.
#[test]
fn committed_sample_results_load_typed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/sample/results.jsonl");
    let data = dyadsim::report::load::load(&path).unwrap();
    assert_eq!(data.runs.len(), 24);
    assert!(data.warnings.is_empty(), "{:?}", data.warnings);
    for r in &data.runs {
        let result = r.result.as_ref().expect("finished run");
        let hw = result.hardware.as_ref().expect("crossbar statistics");
        assert_eq!(hw.layers.len(), 2);
        assert!(hw
            .layers
            .iter()
            .all(|l| l.pulses_applied > 0 && l.devices > 0));
        assert_eq!(
            hw.total.pulses_applied,
            hw.layers.iter().map(|l| l.pulses_applied).sum::<u64>()
        );
    }
}
