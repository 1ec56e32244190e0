//! Noise robustness: does DP⊤ still learn on a crossbar as device read
//! noise grows? A read-noise × seed grid on the library API, reported as
//! mean ± std test accuracy per noise level (reduced size by default;
//! `--full` for more data and seeds).
//!
//!     cargo run --release --example noise_robustness [-- --full]

use anyhow::Result;
use dyadsim::experiment::sweep::TrainingRunner;
use dyadsim::experiment::sweep::{run_sweep, ResultStore, SweepOptions, SweepSpec};
use dyadsim::report::mean_std;
use std::collections::BTreeMap;
use std::path::Path;

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--full");
    let (train, epochs, seeds) = if full {
        (10_000, 3, "[1, 2, 3]")
    } else {
        (1000, 1, "[1]")
    };
    let spec = SweepSpec::from_str_in(
        &format!(
            r#"
            [base]
            data = {{ train_size = {train}, validation_size = 0, test_size = 500 }}
            network = {{ arch = "784-64-10" }}
            learning = {{ rule = "dpt", alpha = 0.5, beta = 0.5 }}
            training = {{ epochs = {epochs}, batch = 20, substrate = "crossbar" }}
            crossbar = {{ device = "constant_step", write = "stochastic", lr = 0.2 }}
            [axes]
            "device.read_noise" = [0.0, 0.02, 0.05, 0.1]
            seed = {seeds}
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

    // accuracy per noise level over seeds (diverged/failed runs count as missing)
    let mut by_noise: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in ResultStore::open(&results)?.unique() {
        let noise = r.axes["device.read_noise"].to_string();
        let acc = r.result.as_ref().and_then(|x| x["test_accuracy"].as_f64());
        if let Some(e) = &r.error {
            eprintln!("job {} failed: {e}", r.job);
        }
        by_noise.entry(noise).or_default().extend(acc);
    }
    println!(
        "{:>10} {:>18} {:>5}",
        "read noise", "test acc (mean±std)", "runs"
    );
    for (noise, accs) in &by_noise {
        if accs.is_empty() {
            println!("{noise:>10} {:>18} {:>5}", "–", 0);
            continue;
        }
        let (m, s) = mean_std(accs);
        println!(
            "{noise:>10} {:>12.2}% ± {:.2} {:>5}",
            100.0 * m,
            100.0 * s,
            accs.len()
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
