//! The continuous-time circuit's cost: wall time and right-hand-side
//! evaluations (each = one forward read per array and one transposed read
//! per hidden layer) to settle one batch of 50 MNIST images on
//! 784-512-512-10 at initialisation (DP⊤, α = ½, β = ½, tol 1e-4), per
//! integrator; and one training step (settle + local gradient + Adam) with
//! `--dynamics ode`, as samples/second.
//!
//! Run with `cargo bench --bench circuit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dyadsim::circuit::{CircuitConfig, CircuitSettler, IntegratorKind};
use dyadsim::data::load_raw;
use dyadsim::experiment::config::{Config, DatasetName};
use dyadsim::experiment::train::{build_network, EpochSettler};
use dyadsim::linalg::Mat;
use dyadsim::rules::dual::{DualInference, DualState};
use dyadsim::rules::learner::{Learner, Settler};

const BATCH: usize = 50;

fn batch() -> (Mat, Mat) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let idx: Vec<usize> = (0..BATCH).collect();
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    train.batch(&idx, 10, &mut x, &mut y);
    (x, y)
}

fn circuit(kind: IntegratorKind, dt: f64) -> CircuitConfig {
    CircuitConfig {
        integrator: kind,
        dt,
        ..CircuitConfig::default()
    }
}

fn bench_settle(c: &mut Criterion) {
    let (x, y) = batch();
    let cfg = Config::default().check().unwrap(); // 784-512-512-10, DP⊤, α = β = ½
    let params = cfg.learning().dual().cloned().unwrap();
    let mut group = c.benchmark_group("settle_784-512-512-10_b50");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, circuit) in [
        ("rk45", circuit(IntegratorKind::Rk45, 0.1)),
        (
            "rk45_hold_input",
            CircuitConfig {
                hold_input_drive: true,
                ..circuit(IntegratorKind::Rk45, 0.1)
            },
        ),
        ("rk4_dt0.5", circuit(IntegratorKind::Rk4, 0.5)),
        ("euler_dt0.1", circuit(IntegratorKind::Euler, 0.1)),
    ] {
        let mut net = build_network(&cfg).unwrap();
        let mut state = DualState::default();
        let mut settler = CircuitSettler::new(&circuit.check().unwrap()).unwrap();
        let mut settle_once = |settler: &mut CircuitSettler| {
            let mut inf = DualInference {
                params: &params,
                net: &mut net,
                state: &mut state,
            };
            inf.forward_init(&x, &y);
            settler.settle_observed(&mut inf, &y, |_, _, _| {}).0
        };
        let r = settle_once(&mut settler);
        eprintln!(
            "{name}: {:?} at t = {:.2} τ, {} steps ({} rejected), {} RHS evaluations",
            r.status, r.settle_time, r.steps, r.rejected_steps, r.rhs_evals
        );
        group.bench_function(name, |b| b.iter(|| settle_once(&mut settler)));
    }
    group.finish();
}

fn bench_training_step(c: &mut Criterion) {
    let (x, y) = batch();
    let mut cfg = Config::default();
    cfg.set("training.dynamics=\"ode\"").unwrap();
    let cfg = cfg.check().unwrap();
    let mut net = build_network(&cfg).unwrap();
    let mut learner = Learner::new(cfg.learning());
    let mut settler = CircuitSettler::new(cfg.circuit()).unwrap();
    let mut group = c.benchmark_group("train_step_ode_784-512-512-10_b50");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("dpt_rk45", |b| {
        b.iter(|| {
            let out = learner.step(&mut net, &x, &y, Some(&mut settler as &mut dyn Settler));
            for (layer, g) in net.layers.iter_mut().zip(&out.gradients) {
                layer.apply_gradient(g);
            }
        })
    });
    group.finish();
    if let Some(s) = settler.take_summary() {
        eprintln!(
            "training steps: mean settle time {:.2} τ (max {:.2}), mean steps {:.1} (max {})",
            s.time_mean, s.time_max, s.steps_mean, s.steps_max
        );
    }
}

criterion_group!(benches, bench_settle, bench_training_step);
criterion_main!(benches);
