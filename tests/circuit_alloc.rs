//! The integrators step whole batches in place: once the workspaces exist,
//! a step of any integrator on the dyadic circuit allocates nothing of its
//! own (counted with a wrapping global allocator). The only allocations left
//! are inside `matrixmultiply`'s SGEMM, which takes one packing buffer per
//! call: exactly one per crossbar read.

use dyadsim::circuit::{
    AmplifierConfig, DyadCircuit, Integrator, IntegratorKind, IntegratorSettings,
};
use dyadsim::digital::optimizer::OptimizerConfig;
use dyadsim::digital::DigitalWeights;
use dyadsim::linalg::{Mat, Vector};
use dyadsim::network::{Activation, Loss, Network};
use dyadsim::rules::dual::{DualInference, DualParams, DualState, DualVariant};
use dyadsim::substrate::WeightArray;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the test's own thread is counted (the harness allocates concurrently).
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTED.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn integrator_steps_allocate_nothing_beyond_the_sgemm_packing_buffers() {
    COUNTED.with(|c| c.set(true));
    let sizes = [20usize, 16, 12, 5];
    let layers: Vec<Box<dyn WeightArray>> = sizes
        .windows(2)
        .map(|w| {
            let weights = Mat::from_fn(w[1], w[0], |i, j| {
                ((i * 7 + j * 3) % 11) as f32 / 30.0 - 0.15
            });
            Box::new(DigitalWeights::new(
                weights,
                Vector::zeros(w[1]),
                &OptimizerConfig::default(),
            )) as Box<dyn WeightArray>
        })
        .collect();
    let mut net = Network {
        layers,
        activation: Activation::Relu,
        loss: Loss::Ce,
    };
    let params = DualParams {
        variant: DualVariant::Dpt,
        alpha: 0.5,
        hidden_alpha: 0.5,
        beta: 0.5,
        robust_input: false,
        power_iterations: 5,
    };
    let x = Mat::from_fn(20, 8, |i, j| ((i + j) % 5) as f32 / 5.0);
    let y = Mat::from_fn(5, 8, |i, j| if i == j % 5 { 1.0 } else { 0.0 });
    let mut state = DualState::default();
    DualInference {
        params: &params,
        net: &mut net,
        state: &mut state,
    }
    .forward_init(&x, &y);
    let amp = AmplifierConfig {
        gain_mismatch: 0.1,
        rail: Some(5.0),
        ..AmplifierConfig::default()
    };
    let mut circuit = DyadCircuit::new(&net, &params, &amp, 8);
    let mut v = vec![0.0f32; circuit.layout().dim()];
    circuit.initial_state(&state, &mut v);
    for (kind, hold) in [
        (IntegratorKind::Euler, false),
        (IntegratorKind::Rk4, false),
        (IntegratorKind::Rk45, false),
        (IntegratorKind::EulerMaruyama, false),
        (IntegratorKind::Rk45, true),
    ] {
        circuit.set_hold_input_drive(hold);
        let settings = IntegratorSettings {
            kind,
            ..IntegratorSettings::default()
        };
        let mut integ = Integrator::new(settings, v.len());
        let mut system = circuit.system(&mut net, &state.input, &y);
        let mut v = v.clone();
        integ.reset(&mut system, 0.0, &v).unwrap();
        integ.step(&mut system, &mut v, 100.0).unwrap(); // sizes every read buffer
        let evals_before = integ.stats().rhs_evals;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..20 {
            integ.step(&mut system, &mut v, 100.0).unwrap();
        }
        let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let evals = (integ.stats().rhs_evals - evals_before) as usize;
        // Per evaluation: 3 forward reads + 2 transposed reads = 5 SGEMM calls,
        // one fewer when array 1 is read once per settle.
        let reads = if hold { 4 } else { 5 } * evals;
        assert_eq!(
            during, reads,
            "{kind:?} (hold {hold}): {during} allocations in 20 steps ({evals} evaluations, {reads} SGEMM calls)"
        );
    }
}
