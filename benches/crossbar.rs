//! Crossbar training throughput (issue 3, "Speed").
//!
//! Training samples per second for a 784-256-128-10 network on `reram_es`
//! crossbars with stochastic pulse trains (BL ≤ 31, update and BL management, aihwkit
//! preset periphery), batch 1 and batch 50, for BP (the rule aihwkit's
//! anchor figure trains with) and DP⊤ (fwbw:6, ≈6× the reads); with the
//! differential pair (both devices pulsed per coincidence, the default) and,
//! at batch 50, one device per weight against a reference (the layout of
//! aihwkit's single-device presets). Timed:
//! inference, local gradients and pulse writes over fixed mini-batches
//! (the per-epoch evaluation of `train` is not training and is left out).
//! `aihwkit_parity` trains aihwkit 1.1's MNIST example network with its
//! settings, to set against `benches/aihwkit_parity.py` (aihwkit measured on
//! this machine: ≈ 7,800–12,500 samples per CPU-second, one thread, batch
//! 64; docs/benchmarks.md). Also: the pulsed update alone (of the default crossbar,
//! and of the `constant_step` parity run), and the cost of read noise (one
//! extra SGEMM). With `DYADSIM_BENCH_PULSE_PATHS=1`,
//! `pulse_paths_side_by_side` times the vector pulse path against
//! event-by-event writes (two device arrays, one built
//! `with_vector_blocks(false)`), alternating in one process.
//!
//! Run with `RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 cargo bench --bench
//! crossbar` for the per-core figure (both pools on one thread: wall time is
//! then CPU time). Each training configuration is trained for a while
//! first, then the same next samples are timed again and again from that
//! state, so every iteration does the same work; it prints the device
//! pulses per training sample of those samples, the load that sets the cost
//! of the pulse path.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use dyadsim::controller::{Controller, UpdateGranularity, WritePlan, WriteScheme};
use dyadsim::crossbar::{Crossbar, CrossbarConfig};
use dyadsim::data::{load_raw, Dataset, Split};
use dyadsim::devices::array::{EventTargets, WriteSink};
use dyadsim::devices::{DeviceArray, DeviceModel};
use dyadsim::experiment::config::{Config, DatasetName};
use dyadsim::experiment::train::build_network;
use dyadsim::linalg::{Mat, Vector};
use dyadsim::network::Network;
use dyadsim::rules::learner::Learner;
use dyadsim::substrate::{OuterProductGradient, WeightArray};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn dataset(train: usize) -> Dataset {
    let (tr, te) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    Dataset {
        name: DatasetName::Mnist,
        train: tr.truncated(train),
        validation: tr.truncated(0),
        test: te.truncated(1),
    }
}

/// `crossbar.lr` is per batch (the gradient carries 1/B); 0.1 at batch 50
/// and 0.002 at batch 1 give the same step per sample, i.e. the same
/// pulse load per sample.
/// `mapping` is `differential` (a pair per weight, both devices pulsed) or
/// `reference` (one device per weight, like aihwkit's single-device presets).
fn config(rule: &str, batch: usize, mapping: &str) -> dyadsim::experiment::ValidConfig {
    let settings = [
        format!("crossbar.mapping=\"{mapping}\""),
        "network.arch=\"784-256-128-10\"".to_string(),
        format!("learning.rule=\"{rule}\""),
        format!("training.batch={batch}"),
        "training.substrate=\"crossbar\"".into(),
        "crossbar.device=\"reram_es\"".into(),
        "crossbar.write=\"stochastic\"".into(),
        format!("crossbar.lr={}", 0.1 * batch as f64 / 50.0),
    ];
    config_of(&settings)
}

fn config_of(settings: &[String]) -> dyadsim::experiment::ValidConfig {
    let mut c = Config::default();
    for s in settings {
        c.set(s).expect("valid setting");
    }
    c.check().expect("valid configuration")
}

/// The network and settings of the aihwkit measurement in `docs/benchmarks.md`
/// (aihwkit 1.1's MNIST example network: 784-256-128-10, sigmoid hidden
/// layers, softmax cross-entropy, analog SGD at lr 0.1, batch 64, one device
/// per weight, initial weights with PyTorch's spread, stochastic pulse
/// trains of at most 31 slots with update and BL management) on
/// `constant_step` or `reram_es`, as `benches/aihwkit_parity/DEVICE.toml`
/// sets them (the files the learning comparison trains with, where each
/// setting is explained). Without `read_energy`, dyadsim's read-energy
/// count, which aihwkit does not keep, is off (`crossbar.read_energy = false`).
fn aihwkit_parity_config(device: &str, read_energy: bool) -> dyadsim::experiment::ValidConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/aihwkit_parity")
        .join(format!("{device}.toml"));
    let mut c = Config::from_file(&path).expect("parity configuration");
    if !read_energy {
        c.set("crossbar.read_energy=false").expect("valid setting");
    }
    c.check().expect("valid configuration")
}

/// A network on crossbars and its rule, training on a stream of MNIST
/// mini-batches (it wraps around at its end). [`bench_training`] first
/// trains it for a while, so that the timed work has the pulse load of
/// ongoing training rather than of the heavy first steps, then times the
/// next `chunk` samples — inference, local gradients and the controller's
/// pulse writes, without the per-epoch evaluation of `train` — each timed
/// iteration starting from a clone of that same state. Every iteration
/// therefore does exactly the same work (the same samples, the same
/// pulses), whatever number of iterations the benchmark runs: figures of
/// two builds compare like with like.
#[derive(Clone)]
struct Trainer {
    net: Network,
    learner: Learner,
    batches: Rc<Vec<(Mat, Mat)>>,
    next: usize,
    samples_trained: u64,
}

impl Trainer {
    fn new(rule: &str, batch: usize, mapping: &str, train: &Split, stream: usize) -> Self {
        Self::of(config(rule, batch, mapping), train, stream)
    }

    fn of(cfg: dyadsim::experiment::ValidConfig, train: &Split, stream: usize) -> Self {
        let batch = cfg.raw().training.batch;
        let net = build_network(&cfg).expect("crossbar network");
        let learner = Learner::new(cfg.learning());
        let batches = (0..stream / batch)
            .map(|k| {
                let idx: Vec<usize> = (k * batch..(k + 1) * batch).collect();
                let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
                train.batch(&idx, 10, &mut x, &mut y);
                (x, y)
            })
            .collect();
        Self {
            net,
            learner,
            batches: Rc::new(batches),
            next: 0,
            samples_trained: 0,
        }
    }

    /// Trains the next `chunk` samples of the stream.
    fn train(&mut self, chunk: usize) {
        let mut done = 0;
        while done < chunk {
            let (x, y) = &self.batches[self.next];
            let out = self.learner.step(&mut self.net, x, y, None);
            for (layer, g) in self.net.layers.iter_mut().zip(&out.gradients) {
                layer.apply_gradient(g);
            }
            done += x.ncols();
            self.next = (self.next + 1) % self.batches.len();
        }
        self.samples_trained += done as u64;
    }

    /// Device pulses so far (both devices of a pair count).
    fn pulses(&self) -> u64 {
        pulses_of(&self.net)
    }
}

/// Device pulses applied to `net` so far (both devices of a pair count;
/// a Tiki-Taka layer's fast array too).
fn pulses_of(net: &Network) -> u64 {
    net.layers
        .iter()
        .filter_map(|l| l.hardware_stats())
        .map(|h| {
            h.pulses_applied
                + h.transfer
                    .as_ref()
                    .map_or(0, |t| t.fast_array.pulses_applied)
        })
        .sum()
}

/// Trains `trainer` for `warm` samples, then times the next `chunk` samples
/// again and again from that state (see [`Trainer`]), and prints the pulse
/// load of the timed samples, so that a reader can compare with other
/// simulators' loads at the same point of training.
fn bench_training(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    (function, parameter): (&str, &str),
    trainer: &mut Trainer,
    (warm, chunk): (usize, usize),
) {
    // Warmed up inside the routine, which criterion calls only if its
    // filter selects this benchmark.
    let mut timed = None;
    group.throughput(Throughput::Elements(chunk as u64));
    group.bench_function(BenchmarkId::new(function, parameter), |b| {
        if timed.is_none() {
            trainer.train(warm);
            let mut probe = trainer.clone();
            probe.train(chunk);
            let pulses = probe.pulses() - trainer.pulses();
            timed = Some((trainer.samples_trained, probe.samples_trained, pulses));
        }
        b.iter_batched(
            || trainer.clone(),
            |mut t| {
                t.train(chunk);
                t
            },
            BatchSize::PerIteration,
        )
    });
    if let Some((start, end, pulses)) = timed {
        eprintln!(
            "{function}/{parameter}: {:.0} device pulses per training sample \
             (timed samples {start}–{end} of training)",
            pulses as f64 / (end - start) as f64
        );
    }
}

/// A benchmark group for training runs: few, long samples (one sample is
/// many training steps).
fn training_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    group
}

fn training(c: &mut Criterion) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let mut group = training_group(c, "crossbar_train_784-256-128-10_reram_es_stochastic");
    // Both mappings at batch 1 and 50 for the differential pair (the
    // default), batch 50 for one device per weight (aihwkit's layout).
    let cases = [
        ("differential", 1usize),
        ("differential", 50),
        ("reference", 50),
    ];
    for rule in ["bp", "dpt"] {
        for (mapping, batch) in cases {
            let chunk = if batch == 1 { 200 } else { 1000 };
            let mut trainer = Trainer::new(rule, batch, mapping, &train, 10_000);
            let warm = 5_000;
            let id = if mapping == "differential" {
                format!("batch{batch}")
            } else {
                format!("batch{batch}_{mapping}")
            };
            bench_training(&mut group, (rule, &id), &mut trainer, (warm, chunk));
        }
    }
    group.finish();
}

/// Stochastic pulse trains against mixed-precision writes (digital
/// accumulator, whole pulses per device) on the same network, device and
/// batch, side by side (issue "On-chip learning that works on realistic
/// devices": mixed precision at ≥ 50 % of the stochastic samples/s).
fn write_schemes(c: &mut Criterion) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let mut group = training_group(c, "crossbar_train_784-256-128-10_reram_es_batch50_write");
    for rule in ["bp", "dpt"] {
        for write in ["stochastic", "mixed_precision"] {
            let mut settings = vec![
                "network.arch=\"784-256-128-10\"".to_string(),
                format!("learning.rule=\"{rule}\""),
                "training.batch=50".into(),
                "training.substrate=\"crossbar\"".into(),
                "crossbar.device=\"reram_es\"".into(),
                "crossbar.lr=0.1".into(),
            ];
            settings.push(format!("crossbar.write=\"{write}\""));
            let mut trainer = Trainer::of(config_of(&settings), &train, 10_000);
            bench_training(&mut group, (rule, write), &mut trainer, (5_000, 1000));
        }
    }
    group.finish();
}

fn update_and_reads(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n_out, n_in, batch) = (256, 784, 50);
    let data = dataset(batch);
    let mut x = Mat::zeros(0, 0);
    let mut y = Mat::zeros(0, 0);
    let idx: Vec<usize> = (0..batch).collect();
    data.train.batch(&idx, 10, &mut x, &mut y);
    let cfg = CrossbarConfig {
        device: "reram_es".into(),
        lr: 0.1,
        ..CrossbarConfig::default()
    };
    let w0 = Mat::from_fn(n_out, n_in, |_, _| (rng.gen::<f32>() - 0.5) * 0.1);
    let cfg = cfg.resolved_for(&w0, &Vector::zeros(n_out));
    let mut xbar = Crossbar::new(&cfg, &toml::Table::new(), n_out, n_in, 1).expect("crossbar");
    xbar.set_parameters(&w0, &Vector::zeros(n_out));
    // Error signals sized so that a sample asks for ~10³ pulse events on this
    // layer, as the first layer sees in the training runs above.
    let delta = Mat::from_fn(n_out, batch, |_, _| (rng.gen::<f32>() - 0.5) * 0.01);
    let grad = OuterProductGradient {
        left: delta,
        right: x.clone(),
        scale: -1.0 / batch as f32,
    };
    let mut group = c.benchmark_group("crossbar_784x256_batch50");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("stochastic_update", |b| {
        b.iter(|| xbar.apply_gradient(&grad))
    });
    // The controller's share of that: sampling the coincidence counts only.
    let mut controller = Controller::new(
        WriteScheme::Stochastic,
        UpdateGranularity::PerSample,
        cfg.bl,
        cfg.update_management,
        cfg.lr,
        xbar.pulse_weight(),
        cfg.bias_input,
        n_out,
        n_in,
        2,
    );
    group.bench_function("stochastic_sampling_only", |b| {
        b.iter(|| {
            if let WritePlan::Pulses(events) = controller.plan(&grad) {
                controller.recycle(events);
            }
        })
    });
    let mut out = Mat::zeros(0, 0);
    let mut quiet = toml::Table::new();
    quiet.insert("read_noise".into(), toml::Value::Float(0.0));
    let mut clean = Crossbar::new(&cfg, &quiet, n_out, n_in, 1).expect("crossbar");
    clean.set_parameters(&w0, &Vector::zeros(n_out));
    // Two different input batches in turn, so that every read is a fresh
    // one (a repeat of the same inputs only redraws the noise).
    let mut x_other = x.clone();
    x_other.as_mut_slice().reverse();
    let inputs = [x.clone(), x_other];
    let mut turn = 0usize;
    group.bench_function("forward_read_no_read_noise", |b| {
        b.iter(|| {
            turn += 1;
            clean.forward(&inputs[turn % 2], &mut out)
        })
    });
    let mut ov = toml::Table::new();
    ov.insert("read_noise".into(), toml::Value::Float(0.05));
    let mut noisy = Crossbar::new(&cfg, &ov, n_out, n_in, 1).expect("crossbar");
    noisy.set_parameters(&w0, &Vector::zeros(n_out));
    group.bench_function("forward_read_with_read_noise", |b| {
        b.iter(|| {
            turn += 1;
            noisy.forward(&inputs[turn % 2], &mut out)
        })
    });
    group.bench_function("forward_read_repeated_inputs", |b| {
        b.iter(|| noisy.forward(&x, &mut out))
    });
    group.finish();
}

/// Like-for-like with aihwkit 1.1 (see [`aihwkit_parity_config`] and
/// `docs/benchmarks.md`): the same network, batch, learning rate, devices and
/// periphery; the pulses per sample printed next to the figure are the load
/// to compare with aihwkit's.
fn aihwkit_parity(c: &mut Criterion) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let mut group = training_group(c, "crossbar_train_aihwkit_parity_784-256-128-10_batch64");
    // With dyadsim's read-energy count (its default) and without it (the
    // work aihwkit does: it keeps no such count).
    for read_energy in [true, false] {
        for device in ["constant_step", "reram_es"] {
            let mut trainer =
                Trainer::of(aihwkit_parity_config(device, read_energy), &train, 20_480);
            let id = if read_energy {
                device.to_string()
            } else {
                format!("{device}_read_energy_off")
            };
            // Timed: samples 19,968–20,992 of training, the window in which
            // docs/benchmarks.md counted aihwkit's pulses.
            bench_training(&mut group, ("bp", &id), &mut trainer, (19_968, 1_024));
        }
    }
    group.finish();
}

/// The pulsed update alone in the aihwkit-parity run on `constant_step`:
/// the gradients of one batch of 64 at the timed point of training, written
/// into each layer again and again (the devices keep moving, the events per
/// write stay those of that batch). The pulse path's own figure, without the
/// noise of a whole training run around it.
fn aihwkit_parity_update(c: &mut Criterion) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let mut group = c.benchmark_group("crossbar_aihwkit_parity_update_constant_step_batch64");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let mut prepared = None;
    group.throughput(Throughput::Elements(64));
    group.bench_function("all_layers", |b| {
        let (net, gradients) = prepared.get_or_insert_with(|| {
            let (_, mut net, gradients) = parity_update_at_timed_point(&train);
            let before = pulses_of(&net);
            write_gradients(&mut net, &gradients);
            eprintln!(
                "parity update: {} device pulses per write of a batch",
                pulses_of(&net) - before
            );
            (net, gradients)
        });
        b.iter(|| write_gradients(net, gradients))
    });
    group.finish();
}

/// The `constant_step` parity run trained to the timed point (sample
/// 19,968), a copy of its network, and the gradients of its next batch of
/// 64: the pulsed update that `aihwkit_parity_update` and
/// `pulse_paths_side_by_side` write again and again.
fn parity_update_at_timed_point(train: &Split) -> (Trainer, Network, Vec<OuterProductGradient>) {
    let mut trainer = Trainer::of(aihwkit_parity_config("constant_step", true), train, 20_480);
    trainer.train(19_968);
    let (x, y) = &trainer.batches[trainer.next];
    let gradients = trainer.learner.step(&mut trainer.net, x, y, None).gradients;
    let net = trainer.net.clone();
    (trainer, net, gradients)
}

/// Writes `gradients` into `net`'s layers, one each.
fn write_gradients(net: &mut Network, gradients: &[OuterProductGradient]) {
    for (layer, g) in net.layers.iter_mut().zip(gradients) {
        layer.apply_gradient(g);
    }
}

/// Takes the reads of [`DeviceArray::apply_events`] and keeps a checksum,
/// so that the timed writes cannot be optimised away.
#[derive(Default)]
struct Checksum(f64);

impl WriteSink for Checksum {
    fn written(&mut self, _index: usize, _before: [f32; 2], after: [f32; 2]) {
        self.0 += after[0] as f64;
    }
}

/// The vector pulse path against event-by-event writes, in the same
/// minutes: the pulse events the aihwkit-parity `constant_step` run's
/// controllers plan for one batch's gradients at the timed point (one
/// device per weight, as in that run), applied alternately 50 times to
/// device arrays of its layers' sizes with the vector path, then to the
/// same arrays built `with_vector_blocks(false)` (40 rounds). Both paths
/// give the same bits, so this times them alone; alternating this finely
/// keeps the machine's drift out of the ratio, which separately timed runs
/// on this shared machine cannot (±15 %). Runs only with
/// `DYADSIM_BENCH_PULSE_PATHS=1` (it is not a criterion benchmark).
///
/// The path is an option of each device array, not a global switch, and a
/// network's arrays are not reachable from here, so this times the pulse
/// path alone, not whole training samples with each path.
fn pulse_paths_side_by_side(_: &mut Criterion) {
    if std::env::var_os("DYADSIM_BENCH_PULSE_PATHS").is_none() {
        return;
    }
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let (_, net, gradients) = parity_update_at_timed_point(&train);
    let config = aihwkit_parity_config("constant_step", true);
    let (cfg, overrides) = (&config.raw().crossbar, &config.raw().device);
    let model = DeviceModel::load(&cfg.device, overrides).expect("shipped device model");
    // Per layer: its planned events and [vector, event-by-event] arrays.
    let mut layers = Vec::new();
    for (k, (layer, g)) in net.layers.iter().zip(&gradients).enumerate() {
        let (n_out, n_in) = (layer.n_out(), layer.n_in());
        let resolved = cfg.resolved_for(&layer.weights(), &layer.bias());
        let xbar = Crossbar::new(&resolved, overrides, n_out, n_in, 1).expect("crossbar");
        let mut controller = Controller::new(
            resolved.write,
            resolved.update,
            resolved.bl,
            resolved.update_management,
            resolved.lr,
            xbar.pulse_weight(),
            resolved.bias_input,
            n_out,
            n_in,
            3,
        )
        .with_pulse_trains(resolved.pulse_trains)
        .with_bl_management(resolved.bl_management);
        let WritePlan::Pulses(events) = controller.plan(g) else {
            panic!("constant_step plans pulses");
        };
        let vector = DeviceArray::new(&model, n_out * (n_in + 1), k as u64 + 1);
        let scalar = vector.clone().with_vector_blocks(false);
        layers.push((events, [vector, scalar]));
    }
    let mut sinks = [Checksum::default(), Checksum::default()];
    // [vector, event by event]
    let mut update_us = [Vec::new(), Vec::new()];
    for _round in 0..40 {
        for (path, sink) in sinks.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..50 {
                for (events, arrays) in layers.iter_mut() {
                    arrays[path].apply_events(events, EventTargets::Devices, sink);
                    arrays[path].end_write();
                }
            }
            update_us[path].push(start.elapsed().as_secs_f64() / 50.0 * 1e6);
        }
    }
    assert_eq!(
        sinks[0].0.to_bits(),
        sinks[1].0.to_bits(),
        "both paths read the same conductances"
    );
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = update_us[1]
        .iter()
        .zip(&update_us[0])
        .map(|(slow, fast)| slow / fast)
        .collect();
    eprintln!(
        "pulse paths, constant_step parity: one batch's pulse events {:.0} µs vector / {:.0} µs \
         event by event (median ratio {:.3} over {} rounds, range {:.3}–{:.3}; {} events)",
        median(&update_us[0]),
        median(&update_us[1]),
        median(&ratios),
        ratios.len(),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
        layers.iter().map(|(e, _)| e.len()).sum::<usize>()
    );
}

/// Plain pulsed SGD against the Tiki-Taka family on the same network,
/// device and batch, side by side (issue "On-chip learning that works on
/// realistic devices": ttv2/cttv2/agad at ≥ 70 % of plain SGD's samples/s).
/// `reram_array_om` is the device the family exists for; SGD there runs
/// (and diverges) at its default rate, so it is timed at `crossbar.lr = 0.01`.
fn algorithms(c: &mut Criterion) {
    let (train, _) = load_raw(DatasetName::Mnist, None).expect("embedded MNIST");
    let mut group = training_group(
        c,
        "crossbar_train_784-256-128-10_reram_array_om_batch50_algorithm",
    );
    for rule in ["bp", "dpt"] {
        for algorithm in ["sgd", "ttv2", "cttv2", "agad"] {
            let mut settings = vec![
                "network.arch=\"784-256-128-10\"".to_string(),
                format!("learning.rule=\"{rule}\""),
                "training.batch=50".into(),
                "training.substrate=\"crossbar\"".into(),
                "crossbar.device=\"reram_array_om\"".into(),
                format!("crossbar.algorithm=\"{algorithm}\""),
            ];
            if algorithm == "sgd" {
                settings.push("crossbar.lr=0.01".into());
            }
            let mut trainer = Trainer::of(config_of(&settings), &train, 10_000);
            bench_training(&mut group, (rule, algorithm), &mut trainer, (5_000, 1000));
        }
    }
    group.finish();
}

/// `dyadsim devices fit` on 200-device traces of 1,000 up and 1,000 down
/// pulses (issue target: under a second): `ecram` fitted as linear and
/// piecewise, `reram_sb` as soft bounds, `reram_es` as exponential.
fn device_fit(c: &mut Criterion) {
    use dyadsim::devices::fit::{fit_trace, FitOptions, FitResponse, Trace};
    let trace_text = |name: &str| {
        let model = DeviceModel::load(name, &toml::Table::new()).expect("shipped model");
        Trace::simulate(&model, 200, 1000, 1).to_csv()
    };
    let mut group = c.benchmark_group("devices_fit_200x1000");
    group.sample_size(10);
    for (name, model, response) in [
        ("linear", "ecram", FitResponse::Linear),
        ("soft_bounds", "reram_sb", FitResponse::SoftBounds),
        ("exponential", "reram_es", FitResponse::Exponential),
        ("piecewise16", "ecram", FitResponse::Piecewise(16)),
    ] {
        let text = trace_text(model);
        let trace = Trace::from_reader(text.as_bytes(), model).expect("trace");
        let opts = FitOptions {
            response,
            name: "bench".into(),
            origin: model.into(),
            bootstrap: 200,
            seed: 1,
        };
        group.bench_function(name, |b| b.iter(|| fit_trace(&trace, &opts).expect("fit")));
        if name == "linear" {
            group.bench_function("read_csv", |b| {
                b.iter(|| Trace::from_reader(text.as_bytes(), model).expect("trace"))
            });
        }
    }
    group.finish();
}

/// Issue target: an IR-drop forward read of a 256×256 tile at batch 50
/// within 10× an ideal read. One tile: 255 inputs + the bias line (256
/// rows) × 128 outputs (256 device columns), `reram_es` programmed to
/// random weights, no read noise, 0.35 Ω per segment (aihwkit's IR-drop
/// anchor; see `docs/benchmarks.md`). Side by side: the ideal read; the
/// read once the transfer matrix is known (unchanged devices, what
/// evaluation reads see); the read right after the devices changed (the
/// transfer matrix recomputed, exact and first order); and the direct
/// solve of the batch's 50 right-hand sides.
fn ir_drop(c: &mut Criterion) {
    use dyadsim::crossbar::ir_drop::{SolveSettings, TileSpan};
    use dyadsim::crossbar::{IrDropSolver, ReadDirection};
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n_out, n_in, batch) = (128, 255, 50);
    let w0 = Mat::from_fn(n_out, n_in, |_, _| (rng.gen::<f32>() - 0.5) * 0.2);
    let b0 = Vector::zeros(n_out);
    let x = Mat::from_fn(n_in, batch, |_, _| rng.gen::<f32>());
    // Two input batches in turn: a repeat of the same inputs only redraws
    // the noise (see `update_and_reads`).
    let inputs = [
        x.clone(),
        Mat::from_fn(n_in, batch, |_, _| rng.gen::<f32>()),
    ];
    let mut turn = 0usize;
    let mut quiet = toml::Table::new();
    quiet.insert("read_noise".into(), toml::Value::Float(0.0));
    let base = CrossbarConfig {
        device: "reram_es".into(),
        ..CrossbarConfig::default()
    };
    let build = |cfg: &CrossbarConfig| {
        Crossbar::with_parameters(cfg, &quiet, &w0, &b0, 1).expect("crossbar")
    };
    let lines = |solver| CrossbarConfig {
        line_resistance_ohm: 0.35,
        ir_drop: solver,
        ..base.clone()
    };
    let mut group = c.benchmark_group("ir_drop_256x256_batch50");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(batch as u64));
    let mut out = Mat::zeros(0, 0);
    let mut ideal = build(&base);
    group.bench_function("ideal_read", |b| {
        b.iter(|| {
            turn += 1;
            ideal.forward(&inputs[turn % 2], &mut out)
        })
    });
    let mut exact = build(&lines(IrDropSolver::Exact));
    exact.forward(&x, &mut out);
    group.bench_function("exact_read_known_transfer", |b| {
        b.iter(|| {
            turn += 1;
            exact.forward(&inputs[turn % 2], &mut out)
        })
    });
    group.bench_function("ideal_read_after_programming", |b| {
        b.iter(|| {
            ideal.set_parameters(&w0, &b0);
            ideal.forward(&x, &mut out)
        })
    });
    group.bench_function("exact_read_after_programming", |b| {
        b.iter(|| {
            exact.set_parameters(&w0, &b0);
            exact.forward(&x, &mut out)
        })
    });
    let mut first = build(&lines(IrDropSolver::FirstOrder));
    group.bench_function("first_order_read_after_programming", |b| {
        b.iter(|| {
            first.set_parameters(&w0, &b0);
            first.forward(&x, &mut out)
        })
    });
    let tile = TileSpan {
        row: 0,
        rows: n_in + 1,
        col: 0,
        cols: 2 * n_out,
    };
    let network = exact
        .tile_network(tile, ReadDirection::Forward)
        .expect("network");
    let drives: Vec<f64> = (0..(n_in + 1) * batch)
        .map(|k| {
            if k / batch < n_in {
                x.as_slice()[(k % batch) * n_in + k / batch] as f64
            } else {
                1.0
            }
        })
        .collect();
    let settings = SolveSettings {
        tolerance: 1e-7,
        max_iterations: 10_000,
    };
    let solved = network.solve(&drives, batch, settings);
    println!(
        "ir_drop: direct solve of the batch took {} sweeps (converged: {})",
        solved.iterations, solved.converged
    );
    group.bench_function("exact_solve_of_the_batch", |b| {
        b.iter(|| network.solve(&drives, batch, settings))
    });
    group.finish();
}

criterion_group!(
    benches,
    ir_drop,
    device_fit,
    training,
    write_schemes,
    algorithms,
    aihwkit_parity,
    aihwkit_parity_update,
    pulse_paths_side_by_side,
    update_and_reads
);
criterion_main!(benches);
