//! The crossbar's read-energy counter: Σ over reads of Σ_lines G_line·u²
//! (E = V²·G·t summed over the actual conductances, DESIGN.md §5), checked
//! against the device physics (a constant-step pair at w = 0 sits at mid-range,
//! G⁺ ≈ G⁻ ≈ (G_min + G_max)/2) and against its own linearity.

use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::crossbar::{Crossbar, CrossbarConfig};
use dyadsim::substrate::WeightArray;

const N_OUT: usize = 8;
const N_IN: usize = 5;

fn crossbar() -> Crossbar {
    let cfg = CrossbarConfig {
        device: "constant_step".into(),
        w_scale: 1.0,
        ..CrossbarConfig::default()
    };
    let mut xb = Crossbar::new(&cfg, &toml::Table::new(), N_OUT, N_IN, 5).unwrap();
    xb.set_parameters(&Mat::zeros(N_OUT, N_IN), &Vector::zeros(N_OUT));
    xb
}

fn counter(xb: &Crossbar) -> (f64, u64) {
    let h = xb.hardware_summary().unwrap();
    (
        h["reads"]["read_drive_conductance_s"].as_f64().unwrap(),
        h["reads"]["dac_conversions"].as_u64().unwrap(),
    )
}

fn forward_count(xb: &mut Crossbar, x: &[f32]) -> f64 {
    let before = counter(xb).0;
    let mut out = Mat::zeros(0, 0);
    xb.forward(&Mat::from_column_slice(N_IN, 1, x), &mut out);
    counter(xb).0 - before
}

#[test]
fn read_energy_counts_the_conductance_each_driven_line_sees() {
    let mut xb = crossbar();
    // constant_step: G in [0, 25] µS, w = 0 at mid-range: a pair is ≈ 25 µS.
    let pair = 25e-6;
    let e0 = forward_count(&mut xb, &[1.0, 0.0, 0.0, 0.0, 0.0]);
    // Line 0 and the bias line, N_OUT pairs each (device-to-device spread of the bounds: ±15 %).
    let expected = 2.0 * N_OUT as f64 * pair;
    assert!((e0 - expected).abs() < 0.2 * expected, "{e0} vs {expected}");
    // Linear in the lines driven, and invariant to the input's scale (abs-max DAC).
    let e1 = forward_count(&mut xb, &[0.0, 1.0, 0.0, 0.0, 0.0]);
    let zero = forward_count(&mut xb, &[0.0; N_IN]);
    let both = forward_count(&mut xb, &[1.0, 1.0, 0.0, 0.0, 0.0]);
    assert!(
        (both - (e0 + e1 - zero)).abs() < 1e-12,
        "{both} vs {}",
        e0 + e1 - zero
    );
    let scaled = forward_count(&mut xb, &[3.0, 0.0, 0.0, 0.0, 0.0]);
    assert!((scaled - e0).abs() < 1e-12);
    // Half drive costs a quarter (E ∝ V²).
    let half = forward_count(&mut xb, &[1.0, 0.5, 0.0, 0.0, 0.0]);
    assert!((half - (e0 + 0.25 * (e1 - zero))).abs() < 1e-12);
    // Transposed read of one output line: N_IN pairs, no bias line.
    let before = counter(&xb);
    let mut d = Mat::zeros(N_OUT, 1);
    d[(0, 0)] = 1.0;
    let mut out = Mat::zeros(0, 0);
    xb.transposed(&d, &mut out);
    let after = counter(&xb);
    let t = after.0 - before.0;
    let expected_t = N_IN as f64 * pair;
    assert!(
        (t - expected_t).abs() < 0.2 * expected_t,
        "{t} vs {expected_t}"
    );
    assert_eq!(
        after.1 - before.1,
        N_OUT as u64,
        "one DAC conversion per driven column"
    );
}
