//! Hardware feasibility of on-chip DP⊤ training: train a small net, then
//! estimate energy per training sample, latency, area and device lifetime
//! for two technologies, and write a full report with a verdict against
//! requirements (reduced size by default; `--full` trains longer).
//!
//!     cargo run --release --example feasibility_report [-- --full] [-- --out DIR]

use anyhow::Result;
use dyadsim::experiment::sweep::SweepSpec;
use dyadsim::experiment::sweep::TrainingRunner;
use dyadsim::report::feasibility::{estimate, Requirements, RunCounts};
use dyadsim::report::technology::Technology;
use dyadsim::report::{format_term as f, generate, ReportOptions};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--full");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || std::env::temp_dir().join("dyadsim-feasibility"),
            PathBuf::from,
        );
    let (train, epochs) = if full { (10_000, 3) } else { (500, 1) };
    let substrate = std::env::var("DYADSIM_SUBSTRATE").unwrap_or_else(|_| "crossbar".into());
    let spec = SweepSpec::from_str_in(
        &format!(
            r#"
            [base]
            data = {{ train_size = {train}, validation_size = 0, test_size = 500 }}
            network = {{ arch = "784-64-10" }}
            training = {{ epochs = {epochs}, batch = 20, substrate = "{substrate}" }}
            crossbar = {{ device = "constant_step", write = "stochastic", lr = 0.2 }}
            [axes]
            "learning.alpha" = [0.5]
            "#
        ),
        Path::new("."),
    )?;
    let job = &spec.jobs()?[0];
    let result = TrainingRunner::default().run(job)?;

    // The cost model on its own: one estimate per technology.
    let counts = RunCounts::from_run(job.config.raw(), &result)?;
    let techs = Path::new(env!("CARGO_MANIFEST_DIR")).join("device_models/technology");
    for name in ["reram_taox_32nm", "pcm_gst_32nm"] {
        let tech = Technology::from_file(&techs.join(format!("{name}.toml")))?;
        let e = estimate(&counts, &tech.params);
        println!(
            "{name}: energy/sample {}, digital BP {}, latency/sample {}, area {}, 1 % lifetime {}",
            f(&e.total_energy_j, "J"),
            f(&e.digital_energy_j, "J"),
            f(&e.latency_s, "s"),
            f(&e.area_m2, "mm²"),
            f(&e.lifetime_1pct_epochs, "epochs")
        );
    }

    // The same as a report: write the run like `dyadsim train --out` does.
    let run_dir = out.join("run");
    std::fs::create_dir_all(&run_dir)?;
    std::fs::write(
        run_dir.join("result.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    std::fs::write(
        run_dir.join("config.toml"),
        toml::to_string(&job.config.raw())?,
    )?;
    let report = generate(
        &run_dir,
        &ReportOptions {
            out: out.join("report"),
            requirements: Requirements {
                accuracy_min: Some(0.8),
                energy_per_sample_max_j: Some(1e-6),
                lifetime_min_epochs: Some(1e3),
            },
            ..Default::default()
        },
    )?;
    println!("report: {}", report.html.display());
    Ok(())
}

/// CI runs the example in its reduced size (`[[example]] test = true`).
#[cfg(test)]
mod ci {
    #[test]
    fn runs_in_reduced_size() {
        super::main().unwrap();
    }
}
