//! `dyadsim settle` and `dyadsim train --dynamics ode` from the command line:
//! documented files and JSON, loading a trained run, clean errors.

mod common;

use common::dyadsim;

fn last_json(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().last().expect("some stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

#[test]
fn settle_writes_trajectories_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let out_s = out.to_str().unwrap();
    let (code, stdout, stderr) = dyadsim(&[
        "settle",
        "--arch",
        "784-32-16-10",
        "--batch",
        "8",
        "--neurons",
        "2",
        "--out",
        out_s,
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let j = last_json(&stdout);
    assert_eq!(j["status"], "settled", "{j}");
    assert_eq!(j["rule"], "dpt");
    let t = j["settle_time"].as_f64().unwrap();
    assert!(t > 0.0 && t < 50.0, "{t}");
    let (steps, evals) = (
        j["steps"].as_u64().unwrap(),
        j["rhs_evals"].as_u64().unwrap(),
    );
    assert!(
        evals >= 6 * steps,
        "rk45: ≥ 6 evaluations per step ({steps}, {evals})"
    );
    let csv = std::fs::read_to_string(out.join("trajectories.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "rule,alpha,t,layer,neuron,v_plus,v_minus,s_mean,delta"
    );
    // 2 neurons × 3 layers per recorded step (the initial point + every step).
    assert_eq!(lines.count() as u64, 6 * (steps + 1));
    let png = std::fs::read(out.join("trajectories.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("settle.json")).unwrap()).unwrap();
    assert_eq!(saved, j);
}

#[test]
fn settle_compare_draws_dp_and_dpt_for_the_same_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let (code, stdout, stderr) = dyadsim(&[
        "settle",
        "--arch",
        "784-32-10",
        "--batch",
        "4",
        "--alpha",
        "0.25",
        "--compare",
        "--format",
        "svg",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let j = last_json(&stdout);
    assert_eq!(j["alpha"], 0.25);
    assert_eq!(j["dp"]["rule"], "dp");
    assert_eq!(j["dpt"]["rule"], "dpt");
    let svg = std::fs::read_to_string(out.join("trajectories.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("DP⊤") && svg.contains("DP α"));
}

#[test]
fn settle_loads_the_trained_weights_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let (code, stdout, stderr) = dyadsim(&[
        "train",
        "--arch",
        "784-24-10",
        "--train-size",
        "500",
        "--test-size",
        "200",
        "--epochs",
        "1",
        "--dynamics",
        "ode",
        "--out",
        run_s,
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let result = last_json(&stdout);
    let epoch = &result["epochs"][0];
    assert!(epoch["settle_time_mean"].as_f64().unwrap() > 0.0, "{epoch}");
    assert!(epoch["settle_steps_max"].as_f64().unwrap() >= 1.0);
    assert!(run.join("parameters.json").exists());

    let settle = |from: Option<&str>| {
        let out = dir.path().join(format!("s{}", from.is_some()));
        let mut args = vec![
            "settle",
            "--arch",
            "784-24-10",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        if let Some(f) = from {
            args.extend(["--from", f]);
        }
        let (code, stdout, stderr) = dyadsim(&args);
        assert_eq!(code, 0, "{stderr}");
        last_json(&stdout)
    };
    // Trained weights differ from the initial ones, so the settled state does too.
    let trained = settle(Some(run_s));
    let initial = settle(None);
    assert_eq!(trained["status"], "settled");
    assert_ne!(trained["state_norm"], initial["state_norm"]);
}

#[test]
fn settle_rejects_bad_input_cleanly() {
    for (args, needle) in [
        (vec!["settle", "--format", "gif"], "--format"),
        (vec!["settle", "--rule", "bp"], "dual-propagation"),
        (vec!["settle", "--set", "circuit.t_max=-1"], "circuit.t_max"),
        (vec!["settle", "--amp-noise", "0.1"], "euler_maruyama"),
        (vec!["settle", "--from", "/nonexistent/run"], "config.toml"),
        (
            vec!["settle", "--integrator", "leapfrog"],
            "circuit.integrator",
        ),
        (vec!["settle", "--batch", "0"], "--batch 0 (training.batch)"),
        // Training flags settle cannot use are refused, with the reason.
        (
            vec!["settle", "--epochs", "3"],
            "--epochs 3 cannot affect `dyadsim settle`",
        ),
        (
            vec!["settle", "--set", "optimizer.lr=0.1"],
            "cannot affect `dyadsim settle`: settle takes no optimiser step",
        ),
        (
            vec!["angle", "--dynamics", "ode"],
            "--dynamics ode cannot affect `dyadsim angle`",
        ),
        (
            vec!["angle", "--test-size", "100"],
            "the batch comes from the training split",
        ),
    ] {
        let (code, _, err) = dyadsim(&args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected '{needle}' in: {err}"
        );
    }
}
