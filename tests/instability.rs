//! The paper's Table 2 in miniature: with asymmetric nudging α = 0 and
//! strong feedback β = ½, 30 fwbw rounds, DP⊤ keeps bounded states and
//! learns while plain DP's states run away (paper Appendix A.1). Reference
//! figures (independent implementation) for 784-256×4-10 after 40 batches of
//! 50: DP⊤ 89 % with max |s| ≈ 2; DP max |s| ≈ 7·10⁴ and chance accuracy.

mod common;

use common::{config, mnist_subset};
use dyadsim::experiment::result::{DivergenceCause, RunStatus};
use dyadsim::experiment::train::run;

fn table2_run(rule: &str, stop_on_runaway: bool) -> dyadsim::experiment::RunResult {
    let cfg = config(&[
        "network.arch=\"784-256x4-10\"",
        &format!("learning.rule=\"{rule}\""),
        "learning.alpha=0",
        "learning.beta=0.5",
        "learning.schedule=\"fwbw:30\"",
        "training.epochs=1",
        "training.batch=50",
        &format!("divergence.stop_on_runaway={stop_on_runaway}"),
        "seed=1",
    ])
    .check()
    .unwrap();
    let data = mnist_subset(2000, 2000);
    run(&cfg, &data, &mut []).unwrap().result
}

#[test]
fn dpt_stays_bounded_and_learns_while_dp_runs_away() {
    let dpt = table2_run("dpt", false);
    let dp = table2_run("dp", false);
    assert_eq!(
        dpt.status,
        RunStatus::Ok,
        "DP⊤ must not be flagged: {:?}",
        dpt.diverged_at
    );
    let dpt_acc = dpt.test_accuracy.unwrap();
    assert!(dpt_acc > 0.83, "DP⊤ accuracy {dpt_acc}");
    assert!(
        dpt.max_state < 10.0,
        "DP⊤ states should stay O(1), got {}",
        dpt.max_state
    );

    assert_eq!(dp.status, RunStatus::Diverged);
    assert!(
        dp.max_state > 10.0 * dpt.max_state,
        "DP max |s| {} should exceed 10× DP⊤'s {}",
        dp.max_state,
        dpt.max_state
    );
    let dp_acc = dp.test_accuracy.unwrap_or(0.0);
    assert!(
        dp_acc < dpt_acc - 0.2,
        "DP should learn far worse: {dp_acc} vs {dpt_acc}"
    );
    let at = dp.diverged_at.expect("where DP diverged");
    assert_eq!(at.reason, "runaway_state");
    // DP's runaway is its feedback loop's gain (paper Appendix A.1), not
    // weights that Adam drove away
    assert_eq!(at.cause, Some(DivergenceCause::LoopGain), "{at:?}");
    assert_eq!(at.weight_norms.len(), 5);
    for (now, before) in at.weight_norms.iter().zip(&at.weight_norms_before) {
        assert!(*now < 2.0 * before, "{at:?}");
    }
    assert!(
        at.epoch == 1 && at.batch >= 1 && at.layer >= 1 && at.layer <= 5,
        "{at:?}"
    );
}

#[test]
fn divergence_stops_the_run_and_says_where() {
    let dp = table2_run("dp", true);
    assert_eq!(dp.status, RunStatus::Diverged);
    let at = dp.diverged_at.clone().unwrap();
    assert!(at.value > 1e3, "{at:?}");
    // Stopped at the first runaway batch: far fewer samples than the 2000 offered.
    assert!(dp.samples_seen < 2000, "{}", dp.samples_seen);
    // The JSON never carries NaN.
    let json = serde_json::to_string(&dp).unwrap();
    assert!(!json.contains("NaN"));
}

/// Plain pulsed SGD on `pcm` under DP⊤ (the default 784-512-512-10) runs
/// away within a few batches because its writes (a few hundred states, strongly asymmetric steps)
/// blow the weights up: the record says so, with the norms that show it.
#[test]
fn a_crossbar_runaway_from_the_writes_is_told_apart_from_loop_gain() {
    let cfg = config(&[
        "training.substrate=\"crossbar\"",
        "crossbar.device=\"pcm\"",
        "crossbar.algorithm=\"sgd\"",
        "training.epochs=1",
        "seed=1",
    ])
    .check()
    .unwrap();
    let result = run(&cfg, &mnist_subset(300, 100), &mut []).unwrap().result;
    let at = result.diverged_at.expect("plain SGD on pcm diverges");
    assert_eq!(at.cause, Some(DivergenceCause::Writes), "{at:?}");
    let grew = at
        .weight_norms
        .iter()
        .zip(&at.weight_norms_before)
        .any(|(now, before)| *now >= 2.0 * before);
    assert!(grew, "{at:?}");
    assert!(at.describe().contains("the writes drove the weights away"));
}
