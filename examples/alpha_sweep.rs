//! Nudging-asymmetry sweep: DP and DP⊤ over α on the library API.
//!
//! The question of the paper's Table 2: the original DP fixed-point
//! iteration is only safe at α = ½, DP⊤ is stable for every α. Runs a
//! rule × α grid (reduced size by default; `--full` for more data, epochs
//! and 30 inference rounds) and prints accuracy, Lipschitz estimate and
//! divergence per job.
//!
//!     cargo run --release --example alpha_sweep [-- --full]

use anyhow::Result;
use dyadsim::experiment::sweep::TrainingRunner;
use dyadsim::experiment::sweep::{run_sweep, ResultStore, SweepOptions, SweepSpec};
use std::path::Path;

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--full");
    let (train, epochs, rounds) = if full { (10_000, 3, 30) } else { (500, 1, 6) };
    let spec = SweepSpec::from_str_in(
        &format!(
            r#"
            [base]
            data = {{ train_size = {train}, validation_size = 0, test_size = 500 }}
            network = {{ arch = "784-64-64-10" }}
            learning = {{ beta = 0.5, schedule = "fwbw:{rounds}" }}
            training = {{ epochs = {epochs}, batch = 50 }}
            [axes]
            "learning.rule" = ["dp", "dpt"]
            "learning.alpha" = [0.0, 0.5, 1.0]
            "#
        ),
        Path::new("."),
    )?;
    let jobs = spec.jobs()?;
    let dir = tempfile::tempdir()?;
    let results = dir.path().join("results.jsonl");
    let runner = TrainingRunner::default();
    run_sweep(
        &jobs,
        &results,
        &SweepOptions::default(),
        |j| runner.run(j),
        |_| {},
    )?;

    println!(
        "{:<6} {:>5} {:>9} {:>10} {:>9}",
        "rule", "α", "status", "test acc", "Lipschitz"
    );
    for r in ResultStore::open(&results)?.unique() {
        let res = r.result.clone().unwrap_or_default();
        let num = |k: &str| res.get(k).and_then(|v| v.as_f64());
        println!(
            "{:<6} {:>5} {:>9} {:>10} {:>9}",
            r.axes["learning.rule"].as_str().unwrap_or("?"),
            r.axes["learning.alpha"],
            format!("{:?}", r.status).to_lowercase(),
            num("test_accuracy").map_or("–".into(), |a| format!("{:.2}%", 100.0 * a)),
            num("lipschitz").map_or("–".into(), |l| format!("{l:.2}")),
        );
    }
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
