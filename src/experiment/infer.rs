//! Inference after training (`dyadsim infer`, DESIGN.md §5.1): a run saved
//! with `train --out DIR` evaluated on its test split at given times after
//! its weights were programmed, with the devices' drift, programming error
//! and accumulated read noise, and optionally drift compensation.
//!
//! **Programming** ([`Programming`]): `keep` reads the trained devices as
//! they were saved (the programming instant is the end of training);
//! `fresh` programs the trained weights into new devices (fresh
//! device-to-device draws) with the model's programming error; and
//! `write_verify` corrects that error by pulses and verify reads until each
//! weight is within a tolerance, counting the pulses.
//!
//! **Time.** At each time `t` after programming (seconds, evaluated in
//! increasing order on one device clock per seed) every device has drifted
//! as `G(t_p)((t − t_p)/t₀)^−ν` with its own ν (DESIGN.md §2), and, where
//! the model has `read_noise_1f_*`, carries the 1/f read noise accumulated
//! since its write (one draw per device and time;
//! [`crate::devices::ReadNoiseGrowth`]); the per-read noise and periphery
//! act on every read as in training.
//!
//! **Compensation** ([`Compensation`]), as on the chip: right after
//! programming (twice) and again at `t`, a reference read of a fixed
//! calibration set of ±1 inputs through the same noisy periphery reads the
//! layer's weights ([`Crossbar::reference_read`]); the drift factor `f̂` of
//! the layer (`global`) or of each output line (`column`) is the
//! correlation of the read at `t` with the first read at programming over
//! that of the two reads at programming ([`DriftReference::gains`]), and
//! the layer's outputs are multiplied digitally by `1/f̂` before the
//! activation (aihwkit's GlobalDriftCompensation and
//! PerColumnDriftCompensation do this with one-hot reads and the ratio of
//! mean |y|, which output noise pulls towards 1). Drift with one ν for
//! every device scales every conductance by the same factor, which
//! `global` undoes exactly.
//!
//! **Seeds.** Each of K seeds draws its own read noise and 1/f noise, and
//! for `fresh` and `write_verify` its own devices and programming error;
//! the points give the mean, sample standard deviation, minimum and
//! maximum over them.

use super::config::SubstrateKind;
use super::run_dir::{self, SavedParameters};
use super::train::{evaluate_with, layer_seed};
use super::{Config, RunResult};
use crate::crossbar::{stream_seed, Crossbar, DriftReference, WriteVerify, WriteVerifyStats};
use crate::devices::array::NoiseRng;
use crate::linalg::{Mat, Vector};
use crate::network::{initial_parameters, Activation};
use crate::substrate::WeightArray;
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// File name of the inference result inside a run directory.
pub const INFER_FILE: &str = "infer.json";

/// Most time points of one evaluation.
pub const MAX_TIMES: usize = 1000;

/// Most seeds of one evaluation.
pub const MAX_SEEDS: usize = 10_000;

/// How the trained weights get into the devices that are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Programming {
    /// The devices as trained (`device_state.json`).
    Keep,
    /// New devices programmed with the model's programming error.
    Fresh,
    /// New devices programmed by write and verify, counting pulses.
    WriteVerify,
}

/// Digital scaling of each layer's outputs against drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compensation {
    /// Outputs as read.
    None,
    /// One scale per layer.
    Global,
    /// One scale per output line.
    Column,
}

impl Programming {
    /// Every mode, in the order of the help text.
    pub const ALL: [Programming; 3] = [
        Programming::Keep,
        Programming::Fresh,
        Programming::WriteVerify,
    ];

    /// The name on the command line and in `infer.json`.
    pub const fn name(self) -> &'static str {
        match self {
            Programming::Keep => "keep",
            Programming::Fresh => "fresh",
            Programming::WriteVerify => "write_verify",
        }
    }
}

impl Compensation {
    /// Every mode, in the order of the help text.
    pub const ALL: [Compensation; 3] = [
        Compensation::None,
        Compensation::Global,
        Compensation::Column,
    ];

    /// The name on the command line and in `infer.json`.
    pub const fn name(self) -> &'static str {
        match self {
            Compensation::None => "none",
            Compensation::Global => "global",
            Compensation::Column => "column",
        }
    }
}

impl std::fmt::Display for Programming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Compensation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a comma-separated list of names (`flag` names the option in errors).
fn parse_names<T: Copy + PartialEq>(
    text: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    flag: &str,
) -> Result<Vec<T>> {
    let allowed = || all.iter().map(|t| name(*t)).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let Some(t) = all.iter().find(|t| name(**t) == part) else {
            bail!(
                "{flag} {text}: '{part}' is not one of {} (a comma-separated list)",
                allowed()
            );
        };
        if out.contains(t) {
            bail!("{flag} {text}: '{part}' is given twice");
        }
        out.push(*t);
    }
    Ok(out)
}

/// Parses `--program keep,fresh` (each mode once).
pub fn parse_programming(text: &str) -> Result<Vec<Programming>> {
    parse_names(text, &Programming::ALL, Programming::name, "--program")
}

/// Parses `--compensation none,global` (each mode once).
pub fn parse_compensation(text: &str) -> Result<Vec<Compensation>> {
    parse_names(
        text,
        &Compensation::ALL,
        Compensation::name,
        "--compensation",
    )
}

/// Parses `--times 1,3600,86400` (seconds after programming): finite,
/// ≥ 0, no value twice, any order (evaluated and reported in increasing
/// order), at most [`MAX_TIMES`].
pub fn parse_times(text: &str) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let t: f64 = part.parse().map_err(|_| {
            anyhow::anyhow!(
                "--times {text}: '{part}' is not a number (seconds after programming, comma-separated, e.g. 1,3600,86400)"
            )
        })?;
        times.push(t);
    }
    check_times(&times)?;
    let mut sorted = times;
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}

/// The range checks of [`parse_times`].
fn check_times(times: &[f64]) -> Result<()> {
    if times.is_empty() {
        bail!("--times: give at least one time (seconds after programming)");
    }
    if times.len() > MAX_TIMES {
        bail!("--times: {} times given, at most {MAX_TIMES}", times.len());
    }
    for &t in times {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--times: {t} is out of range: each time must be finite and ≥ 0 s (seconds after programming)");
        }
    }
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        bail!("--times: {} is given twice", w[0]);
    }
    Ok(())
}

/// What to evaluate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferSettings {
    /// Times after programming (s).
    pub times_s: Vec<f64>,
    /// Programming modes, each evaluated at every time.
    pub programming: Vec<Programming>,
    /// Compensation modes, each evaluated at every time.
    pub compensation: Vec<Compensation>,
    /// Number of seeds K (≥ 1).
    pub seeds: usize,
    /// First seed (seeds are `seed, seed + 1, …`).
    pub seed: u64,
    /// Write-and-verify settings (`write_verify`).
    pub write_verify: WriteVerify,
    /// Evaluate on the first N test images of the run's test split (all if `None`).
    pub test_size: Option<usize>,
}

impl InferSettings {
    /// Checks every setting; errors name the flag and its allowed range.
    pub fn check(&self) -> Result<()> {
        check_times(&self.times_s)?;
        if self.programming.is_empty() {
            bail!("--program: give at least one of keep, fresh, write_verify");
        }
        if self.compensation.is_empty() {
            bail!("--compensation: give at least one of none, global, column");
        }
        if !(1..=MAX_SEEDS).contains(&self.seeds) {
            bail!("--seeds {}: out of range, 1 to {MAX_SEEDS}", self.seeds);
        }
        if self.seed.checked_add(self.seeds as u64).is_none() {
            bail!("--seed {}: too large for {} seeds", self.seed, self.seeds);
        }
        let wv = &self.write_verify;
        if !(wv.tolerance.is_finite() && wv.tolerance > 0.0 && wv.tolerance <= 1.0) {
            bail!(
                "--tolerance {}: out of range, (0, 1] (a fraction of the layer's w_scale)",
                wv.tolerance
            );
        }
        if !(1..=10_000).contains(&wv.max_iterations) {
            bail!(
                "--max-iterations {}: out of range, 1 to 10000",
                wv.max_iterations
            );
        }
        if self.test_size == Some(0) {
            bail!("--test-size 0: give at least 1 image");
        }
        Ok(())
    }
}

/// The pulses write and verify took, per seed (the same at every time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramPulses {
    /// Mean pulses over the seeds (whole network).
    pub mean: f64,
    /// Pulses per seed.
    pub per_seed: Vec<u64>,
    /// Mean pulses per cross-point (weights and biases).
    pub per_weight: f64,
    /// Mean fraction of cross-points within tolerance at the end.
    pub converged_fraction: f64,
}

/// One evaluated point: a programming mode, a compensation mode and a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferPoint {
    /// Seconds after programming.
    pub time_s: f64,
    /// Programming mode.
    pub program: Programming,
    /// Compensation mode.
    pub compensation: Compensation,
    /// Mean test accuracy over the seeds whose outputs were finite (`None`
    /// if none were).
    pub test_accuracy: Option<f64>,
    /// Sample standard deviation over those seeds (`None` for fewer than 2).
    pub test_accuracy_std: Option<f64>,
    /// Lowest accuracy over the seeds.
    pub test_accuracy_min: Option<f64>,
    /// Highest accuracy over the seeds.
    pub test_accuracy_max: Option<f64>,
    /// Each seed's accuracy (`None`: non-finite outputs).
    pub seed_accuracies: Vec<Option<f64>>,
    /// Write-and-verify pulses (`write_verify` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_pulses: Option<ProgramPulses>,
}

/// What `dyadsim infer` prints with `--json` and writes to `infer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferResult {
    /// The run directory evaluated.
    pub run_dir: String,
    /// Device model of the run.
    pub device_model: String,
    /// Layer widths.
    pub arch: String,
    /// Test images evaluated.
    pub test_images: usize,
    /// The test accuracy the run recorded when it finished, if any.
    pub trained_test_accuracy: Option<f64>,
    /// What was evaluated.
    pub settings: InferSettings,
    /// The seeds used.
    pub seeds: Vec<u64>,
    /// One point per programming mode, compensation mode and time (in
    /// that nesting, times increasing).
    pub points: Vec<InferPoint>,
    /// Wall-clock seconds of the evaluation.
    pub wall_seconds: f64,
    /// Version, commit, date and machine.
    pub provenance: super::provenance::Provenance,
}

/// A trained crossbar run, ready to be programmed and read.
pub struct TrainedRun {
    config: super::ValidConfig,
    /// The trained crossbars, devices as saved.
    arrays: Vec<Crossbar>,
    /// The trained weights and biases (the programming targets).
    targets: Vec<(Mat, Vector)>,
    result: Option<RunResult>,
}

impl TrainedRun {
    /// Loads the run directory `dir` (written by `dyadsim train --out`):
    /// its configuration, parameters and device state. Errors say why a
    /// directory is not a usable run (not a run directory, digital
    /// substrate, files that do not belong together).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "RUN_DIR {}: not a directory (give a directory written by `dyadsim train --out`)",
                dir.display()
            );
        }
        if !run_dir::is_run_dir(dir) {
            bail!(
                "RUN_DIR {}: not a run directory (no manifest.json, nor result.json with config.toml): give a directory written by `dyadsim train --out`",
                dir.display()
            );
        }
        run_dir::check_manifest(dir)?;
        let config_path = dir.join("config.toml");
        let config = Config::from_file(&config_path)?
            .check()
            .with_context(|| format!("{}", config_path.display()))?;
        if config.raw().training.substrate != SubstrateKind::Crossbar {
            bail!(
                "RUN_DIR {}: the run was trained on the digital substrate; infer reads weights from devices, so it needs a run trained with --substrate crossbar (or --device NAME)",
                dir.display()
            );
        }
        let params_path = dir.join(run_dir::PARAMETERS_FILE);
        let saved: SavedParameters = run_dir::read_json(&params_path, "parameters")?;
        let state_path = dir.join(run_dir::DEVICE_STATE_FILE);
        if !state_path.exists() {
            bail!(
                "RUN_DIR {}: no {} (the crossbar run's device state is missing)",
                dir.display(),
                run_dir::DEVICE_STATE_FILE
            );
        }
        let states: serde_json::Value = run_dir::read_json(&state_path, "device state")?;
        let states = states
            .get("layers")
            .and_then(|l| l.as_array())
            .with_context(|| format!("{}: no `layers` array", state_path.display()))?;
        let arch = config.arch().clone();
        run_dir::check_layer_count(&params_path, saved.layers.len(), arch.depth())?;
        run_dir::check_layer_count(&state_path, states.len(), arch.depth())?;
        // The arrays as training built them (the same seeds, so the same
        // device draws and the same w_scale resolved from the same initial
        // weights), then the saved weights and devices, as `--resume` does.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.raw().seed);
        let initial = initial_parameters(&arch, config.raw().network.init_gain, &mut rng);
        let mut arrays = Vec::with_capacity(arch.depth());
        let mut targets = Vec::with_capacity(arch.depth());
        for (k, ((w0, b0), (layer, state))) in initial
            .into_iter()
            .zip(saved.layers.iter().zip(states))
            .enumerate()
        {
            let what = || format!("{}: layer {}", dir.display(), k + 1);
            if layer.rows != w0.nrows()
                || layer.cols != w0.ncols()
                || layer.weights.len() != layer.rows * layer.cols
                || layer.bias.len() != layer.rows
            {
                bail!(
                    "{}: layer {} is {}×{}, the configuration's network.arch expects {}×{}",
                    params_path.display(),
                    k + 1,
                    layer.rows,
                    layer.cols,
                    w0.nrows(),
                    w0.ncols()
                );
            }
            let mut array = Crossbar::with_parameters_checked(
                &config.raw().crossbar,
                &config.raw().device,
                &w0,
                &b0,
                layer_seed(config.raw().seed, k),
            )
            .with_context(what)?;
            let w = Mat::from_column_slice(layer.rows, layer.cols, &layer.weights);
            let b = Vector::from_column_slice(&layer.bias);
            array.set_parameters(&w, &b);
            array.restore_device_state(state).with_context(what)?;
            arrays.push(array);
            targets.push((w, b));
        }
        let result_path = dir.join("result.json");
        let result = result_path
            .exists()
            .then(|| run_dir::read_json::<RunResult>(&result_path, "result"))
            .transpose()?;
        Ok(Self {
            config,
            arrays,
            targets,
            result,
        })
    }

    /// The run's checked configuration.
    pub fn config(&self) -> &super::ValidConfig {
        &self.config
    }

    /// The trained crossbars, devices as saved.
    pub fn arrays(&self) -> &[Crossbar] {
        &self.arrays
    }

    /// The trained weights and biases, `W_1, b_1` first.
    pub fn targets(&self) -> &[(Mat, Vector)] {
        &self.targets
    }

    /// The test accuracy the run recorded, if any.
    pub fn trained_test_accuracy(&self) -> Option<f64> {
        self.result.as_ref().and_then(|r| r.test_accuracy)
    }

    /// The network's crossbars for seed `seed` programmed as `mode` says
    /// (the trained ones for `keep`), each with its read noise reseeded,
    /// and the write-and-verify counts (zero for the other modes).
    pub fn programmed(
        &self,
        mode: Programming,
        seed: u64,
        write_verify: &WriteVerify,
    ) -> Result<(Vec<Crossbar>, WriteVerifyStats)> {
        let run_seed = self.config.raw().seed;
        let mut stats = WriteVerifyStats::default();
        let mut out = Vec::with_capacity(self.arrays.len());
        for (k, (trained, (w, b))) in self.arrays.iter().zip(&self.targets).enumerate() {
            // Streams of this seed and layer, apart from training's (which
            // used streams 1–6 of `layer_seed(run_seed, k)`).
            let base = layer_seed(run_seed ^ seed.wrapping_mul(0xA24B_AED4_963E_E407), k);
            let mut array = match mode {
                Programming::Keep => trained.clone(),
                Programming::Fresh | Programming::WriteVerify => {
                    let mut fresh = Crossbar::new(
                        &trained.inference_config(),
                        &self.config.raw().device,
                        trained.n_out(),
                        trained.n_in(),
                        stream_seed(base, 11),
                    )?;
                    let mut rng = NoiseRng::seed_from_u64(stream_seed(base, 12));
                    if mode == Programming::Fresh {
                        fresh.program_with_error(w, b, &mut rng);
                    } else {
                        let s = fresh
                            .write_verify(w, b, write_verify, &mut rng)
                            .with_context(|| format!("--program write_verify, layer {}", k + 1))?;
                        stats.add(&s);
                    }
                    fresh
                }
            };
            array.reseed_read_noise(stream_seed(base, 13));
            out.push(array);
        }
        Ok((out, stats))
    }
}

/// Per-layer output scales of one compensation mode (`None`: outputs as read).
type Gains = Vec<Option<Vec<f32>>>;

/// Every layer's drift reference right after programming (`None` for
/// compensation `none`).
fn references(arrays: &mut [Crossbar], mode: Compensation) -> Option<Vec<DriftReference>> {
    (mode != Compensation::None).then(|| arrays.iter_mut().map(|a| a.drift_reference()).collect())
}

/// Every layer's output scales now, against its reference.
fn gains(
    arrays: &mut [Crossbar],
    mode: Compensation,
    at_programming: &Option<Vec<DriftReference>>,
) -> Gains {
    match at_programming {
        None => vec![None; arrays.len()],
        Some(refs) => arrays
            .iter_mut()
            .zip(refs)
            .map(|(a, r)| Some(r.gains(&a.reference_read(), mode == Compensation::Column)))
            .collect(),
    }
}

/// The free prediction through `arrays`, each layer's outputs scaled by
/// its gains (one for the layer, or one per output line) before the
/// activation.
pub fn predict_compensated(
    arrays: &mut [Crossbar],
    gains: &[Option<Vec<f32>>],
    activation: Activation,
    x: &Mat,
) -> Mat {
    let depth = arrays.len();
    let mut current = x.clone();
    let mut next = Mat::zeros(0, 0);
    for (k, array) in arrays.iter_mut().enumerate() {
        array.forward(&current, &mut next);
        if let Some(Some(g)) = gains.get(k) {
            scale_outputs(&mut next, g);
        }
        if k + 1 < depth {
            next.as_mut_slice()
                .iter_mut()
                .for_each(|v| *v = activation.apply(*v));
        }
        std::mem::swap(&mut current, &mut next);
    }
    current
}

/// `y ← g ⊙ y`: one gain for every output, or one per output line (row).
fn scale_outputs(y: &mut Mat, g: &[f32]) {
    let rows = y.nrows().max(1);
    if let [g] = g {
        y.as_mut_slice().iter_mut().for_each(|v| *v *= g);
        return;
    }
    for column in y.as_mut_slice().chunks_exact_mut(rows) {
        for (v, g) in column.iter_mut().zip(g) {
            *v *= g;
        }
    }
}

/// Mean, sample standard deviation, minimum and maximum of the finite values.
fn spread(values: &[Option<f64>]) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return (None, None, None, None);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (Some(mean), std, Some(min), Some(max))
}

/// Evaluates the run in `dir` as `settings` say (checked first).
pub fn infer(dir: &Path, settings: &InferSettings) -> Result<InferResult> {
    settings.check()?;
    let start = Instant::now();
    let run = TrainedRun::load(dir)?;
    let data = crate::data::load(&run.config.raw().data)?;
    let mut test = data.test;
    if let Some(n) = settings.test_size {
        if n > test.len() {
            bail!(
                "--test-size {n}: out of range, the run's test split has {} images (1 to {})",
                test.len(),
                test.len()
            );
        }
        test = test.truncated(n);
    }
    let mut result = infer_on(&run, &test, settings)?;
    result.run_dir = dir.display().to_string();
    result.wall_seconds = start.elapsed().as_secs_f64();
    Ok(result)
}

/// Evaluates a loaded run on `test` (settings checked by the caller).
pub fn infer_on(
    run: &TrainedRun,
    test: &crate::data::Split,
    settings: &InferSettings,
) -> Result<InferResult> {
    let start = Instant::now();
    let raw = run.config.raw();
    let activation = raw.network.activation;
    let eval_batch = raw.training.eval_batch;
    let classes = run.config.arch().outputs();
    let seeds: Vec<u64> = (0..settings.seeds as u64)
        .map(|r| settings.seed + r)
        .collect();
    let times = &settings.times_s;
    let n_comp = settings.compensation.len();
    let mut points = Vec::new();
    for &mode in &settings.programming {
        // accuracy[time][compensation][seed]
        let mut accuracy = vec![vec![vec![None; seeds.len()]; n_comp]; times.len()];
        let mut pulses = Vec::with_capacity(seeds.len());
        let mut converged = Vec::with_capacity(seeds.len());
        let mut cross_points = 0u64;
        for (r, &seed) in seeds.iter().enumerate() {
            let (mut arrays, stats) = run.programmed(mode, seed, &settings.write_verify)?;
            pulses.push(stats.pulses);
            cross_points = stats.cross_points;
            converged.push(stats.converged as f64 / stats.cross_points.max(1) as f64);
            // Every draw of a point comes from streams of its own seed,
            // time and compensation mode, so that a point does not depend
            // on which other times or modes are evaluated with it.
            let stream = |what: u64, t: f64| {
                stream_seed(
                    stream_seed(seed ^ 0x5851_F42D_4C95_7F2D, raw.seed ^ t.to_bits()),
                    what,
                )
            };
            let reseed = |arrays: &mut [Crossbar], what: u64, t: f64| {
                for (k, a) in arrays.iter_mut().enumerate() {
                    a.reseed_read_noise(stream_seed(stream(what, t), k as u64));
                }
            };
            let freeze = |arrays: &mut [Crossbar], t: f64| {
                let mut noise = NoiseRng::seed_from_u64(stream(1, t));
                for a in arrays.iter_mut() {
                    a.freeze_accumulated_read_noise(&mut noise);
                }
            };
            // The drift references right after programming.
            freeze(&mut arrays, 0.0);
            let baselines: Vec<Option<Vec<DriftReference>>> = settings
                .compensation
                .iter()
                .map(|&c| {
                    reseed(&mut arrays, 2 + c as u64, -1.0);
                    references(&mut arrays, c)
                })
                .collect();
            let mut clock = 0.0;
            for (ti, &t) in times.iter().enumerate() {
                for a in arrays.iter_mut() {
                    a.advance_clock(t - clock);
                }
                freeze(&mut arrays, t);
                clock = t;
                for (ci, &c) in settings.compensation.iter().enumerate() {
                    reseed(&mut arrays, 2 + c as u64, t);
                    let g = gains(&mut arrays, c, &baselines[ci]);
                    accuracy[ti][ci][r] = evaluate_with(test, classes, eval_batch, |x| {
                        predict_compensated(&mut arrays, &g, activation, x)
                    });
                }
            }
        }
        let program_pulses = (mode == Programming::WriteVerify).then(|| {
            let mean = pulses.iter().sum::<u64>() as f64 / pulses.len() as f64;
            ProgramPulses {
                mean,
                per_seed: pulses.clone(),
                per_weight: mean / cross_points.max(1) as f64,
                converged_fraction: converged.iter().sum::<f64>() / converged.len() as f64,
            }
        });
        for (ci, &c) in settings.compensation.iter().enumerate() {
            for (ti, &t) in times.iter().enumerate() {
                let values = &accuracy[ti][ci];
                let (mean, std, min, max) = spread(values);
                points.push(InferPoint {
                    time_s: t,
                    program: mode,
                    compensation: c,
                    test_accuracy: mean,
                    test_accuracy_std: std,
                    test_accuracy_min: min,
                    test_accuracy_max: max,
                    seed_accuracies: values.clone(),
                    program_pulses: program_pulses.clone(),
                });
            }
        }
    }
    Ok(InferResult {
        run_dir: String::new(),
        device_model: run.arrays[0].model().name.clone(),
        arch: run.config.arch().to_string(),
        test_images: test.len(),
        trained_test_accuracy: run.trained_test_accuracy(),
        settings: settings.clone(),
        seeds,
        points,
        wall_seconds: start.elapsed().as_secs_f64(),
        provenance: super::provenance::Provenance::now(),
    })
}

/// A time in seconds in the largest unit (y, d, h, min, s) that keeps
/// it ≥ 1: `3600` is `1 h`, `90` is `1.500 min`.
pub fn duration_words(seconds: f64) -> String {
    const UNITS: [(f64, &str); 5] = [
        (365.0 * 86400.0, "y"),
        (86400.0, "d"),
        (3600.0, "h"),
        (60.0, "min"),
        (1.0, "s"),
    ];
    if seconds == 0.0 {
        return "0 s".into();
    }
    let (size, unit) = UNITS
        .iter()
        .find(|(size, _)| seconds >= *size)
        .copied()
        .unwrap_or((1.0, "s"));
    let v = seconds / size;
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.3} {unit}")
    }
}

/// Writes `result` to `path` atomically (pretty JSON).
pub fn write_result(path: &Path, result: &InferResult) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(result).context("serialising the inference result")?;
    run_dir::write_atomic(path, &bytes)
}

/// Reads an `infer.json`.
pub fn read_result(path: &Path) -> Result<InferResult> {
    run_dir::read_json(path, "inference result")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_whole_unit() {
        assert_eq!(duration_words(0.0), "0 s");
        assert_eq!(duration_words(1.0), "1 s");
        assert_eq!(duration_words(3600.0), "1 h");
        assert_eq!(duration_words(86400.0), "1 d");
        assert_eq!(duration_words(31_536_000.0), "1 y");
        assert_eq!(duration_words(0.5), "0.500 s");
        assert_eq!(duration_words(90.0), "1.500 min");
    }

    #[test]
    fn times_parse_sorted_and_bad_ones_name_the_flag() {
        assert_eq!(parse_times("3600, 1,0").unwrap(), vec![0.0, 1.0, 3600.0]);
        for bad in ["", "1,,2", "-1", "1e400", "nan", "2,2"] {
            let e = format!("{:#}", parse_times(bad).unwrap_err());
            assert!(e.contains("--times"), "{bad}: {e}");
        }
    }

    #[test]
    fn mode_lists_parse_each_name_once() {
        assert_eq!(
            parse_programming("keep,write_verify").unwrap(),
            vec![Programming::Keep, Programming::WriteVerify]
        );
        assert_eq!(
            parse_compensation("column").unwrap(),
            vec![Compensation::Column]
        );
        assert!(parse_compensation("none,none").is_err());
        assert!(parse_programming("verify").is_err());
    }

    #[test]
    fn spread_is_the_sample_statistics_of_the_finite_seeds() {
        let (mean, std, min, max) = spread(&[Some(0.5), None, Some(0.7)]);
        assert!((mean.unwrap() - 0.6).abs() < 1e-12);
        assert!((std.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!((min, max), (Some(0.5), Some(0.7)));
        assert_eq!(spread(&[None]), (None, None, None, None));
        assert_eq!(spread(&[Some(0.4)]).1, None);
    }
}
