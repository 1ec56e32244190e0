//! The reads of one seeded crossbar, pinned in
//! `python/tests/data/crossbar_reads.json` as f32 bit patterns: this test
//! checks that the Rust library still produces them, and the Python test
//! `python/tests/test_crossbar.py` that `dyadsim.Crossbar` returns the
//! same bits for the same inputs — together, the binding changes no bit
//! (no hidden transposition, copy with conversion or re-seeding).
//!
//! After a deliberate change of the bits, regenerate with
//! `DYADSIM_UPDATE_FIXTURES=1 cargo test --release --test python_crossbar_fixture`.

use dyadsim::crossbar::{Crossbar, CrossbarConfig};
use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::{OuterProductGradient, WeightArray};
use serde_json::{json, Value};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/python/tests/data/crossbar_reads.json"
);

/// Bits of a column-major `n × B` batch in the C order of a NumPy `(B, n)` array.
fn batch_bits(m: &Mat) -> Vec<u32> {
    m.as_slice().iter().map(|v| v.to_bits()).collect()
}

/// Bits of a `rows × cols` matrix in C (row-major) order.
fn matrix_bits(m: &Mat) -> Vec<u32> {
    m.transpose()
        .as_slice()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// A deterministic batch with values of both signs, `n × b`.
fn batch(n: usize, b: usize, phase: f32) -> Mat {
    Mat::from_fn(n, b, |i, j| ((i * 7 + j * 13) % 17) as f32 / 17.0 - phase)
}

fn compute() -> Value {
    let (rows, cols, batch_size, seed) = (12, 20, 5, 7u64);
    let config = CrossbarConfig {
        device: "reram_es".into(),
        ..CrossbarConfig::default()
    };
    let w = Mat::from_fn(rows, cols, |i, j| {
        ((i * 31 + j * 17) % 23) as f32 / 23.0 * 0.6 - 0.3
    });
    let b = Vector::from_fn(rows, |i, _| (i as f32 - 6.0) / 40.0);
    let mut xb = Crossbar::with_parameters(&config, &toml::Table::new(), &w, &b, seed)
        .expect("reram_es crossbar");
    let x = batch(cols, batch_size, 0.2);
    let d = batch(rows, batch_size, 0.5);
    let left = batch(rows, batch_size, 0.4);
    let right = batch(cols, batch_size, 0.0);
    let scale = 0.5f32;
    let mut y1 = Mat::zeros(0, 0);
    xb.forward(&x, &mut y1);
    let mut t1 = Mat::zeros(0, 0);
    xb.transposed(&d, &mut t1);
    xb.apply_gradient(&OuterProductGradient {
        left: left.clone(),
        right: right.clone(),
        scale,
    });
    let mut y2 = Mat::zeros(0, 0);
    xb.forward(&x, &mut y2);
    let stats = xb.hardware_stats().expect("crossbar statistics");
    json!({
        "device": "reram_es",
        "rows": rows,
        "cols": cols,
        "batch": batch_size,
        "seed": seed,
        "scale": scale,
        "weights": matrix_bits(&w),
        "bias": b.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "x": batch_bits(&x),
        "d": batch_bits(&d),
        "left": batch_bits(&left),
        "right": batch_bits(&right),
        "forward_before_update": batch_bits(&y1),
        "transposed": batch_bits(&t1),
        "forward_after_update": batch_bits(&y2),
        "weights_after_update": matrix_bits(&xb.weights()),
        "pulses_applied": stats.pulses_applied,
    })
}

#[test]
fn crossbar_reads_match_the_pinned_fixture() {
    let now = compute();
    if std::env::var_os("DYADSIM_UPDATE_FIXTURES").is_some() {
        let text = serde_json::to_string(&now).expect("serialise") + "\n";
        std::fs::write(FIXTURE, text).expect("write the fixture");
        return;
    }
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(FIXTURE).expect("read python/tests/data/crossbar_reads.json"),
    )
    .expect("fixture is JSON");
    assert!(
        now == pinned,
        "the crossbar reads changed; if deliberately, regenerate the fixture with \
         DYADSIM_UPDATE_FIXTURES=1 cargo test --release --test python_crossbar_fixture"
    );
    assert!(
        now["pulses_applied"].as_u64().unwrap_or(0) > 0,
        "the update wrote no pulse: the fixture would not test the write path"
    );
}
