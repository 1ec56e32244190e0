//! The training loop (the argmin-style *executor*): it runs a learning rule
//! over mini-batches, applies the gradients through the weight arrays,
//! guards against divergence, evaluates, and notifies observers. Rules know
//! nothing of progress bars, files or divergence policy.

use super::config::DynamicsKind;
use super::result::{DivergenceEvent, EpochRecord, RunResult, RunStatus};
use super::ValidConfig;
use crate::data::{epoch_batches, Dataset, Split};
use crate::linalg::{Mat, Vector};
use crate::metrics::{
    diagnose_divergence, first_runaway, gradient_angle, lipschitz_estimate, weight_norms,
    DivergenceCause,
};
use crate::network::{argmax_columns, initial_parameters, Network};
pub use crate::rules::learner::{EpochSettler, SettleSummary};
use crate::rules::learner::{Learner, Settler};
use crate::substrate::WeightArray;
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Receives progress snapshots from the training loop.
pub trait Observer {
    /// Training starts: epochs and batches per epoch.
    fn on_start(&mut self, _epochs: usize, _batches_per_epoch: usize) {}
    /// A batch finished: running mean loss and accuracy of the epoch so far.
    fn on_batch(&mut self, _epoch: usize, _batch: usize, _mean_loss: f64, _accuracy: f64) {}
    /// An epoch finished.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
    /// Divergence was detected.
    fn on_divergence(&mut self, _event: &DivergenceEvent) {}
    /// Training finished.
    fn on_finish(&mut self, _result: &RunResult) {}
    /// Whether this observer takes checkpoints ([`Observer::on_checkpoint`]):
    /// only then does the executor assemble the result so far after each
    /// epoch.
    fn wants_checkpoints(&self) -> bool {
        false
    }
    /// After every epoch but the last (for an observer that
    /// [wants them](Observer::wants_checkpoints)): the result so far and
    /// the network as it stands, e.g. to write the run directory so that an
    /// interrupted run loses at most the epoch in progress. An error stops
    /// the run with that error.
    fn on_checkpoint(&mut self, _result: &RunResult, _network: &Network) -> Result<()> {
        Ok(())
    }
    /// Asked after every batch: `true` stops the run at once, and the
    /// training call returns the error [`Interrupted`] instead of a result
    /// (a Python caller's Ctrl-C; nothing is written).
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// The error of a run that an [`Observer`] stopped
/// ([`Observer::should_stop`]): the run has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Seed of layer `k`'s own random streams, derived from the run seed.
pub fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(
        0x632B_E59B_D9B4_E019 ^ (layer as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// Builds the network of a configuration on its substrate, with the
/// seeded initialisation W ~ N(0, gain²/fan_in), b = 0.
pub fn build_network(cfg: &ValidConfig) -> Result<Network> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.raw().seed);
    let params = initial_parameters(cfg.arch(), cfg.raw().network.init_gain, &mut rng);
    build_network_from(cfg, params)
}

/// Builds the network of a configuration on its substrate, starting from
/// the given parameters (`W_1, b_1` first; e.g. weights exported from
/// another framework, `train --init-from`). Each shape must match the
/// architecture. On a crossbar, automatic weight scaling (`w_scale = 0`)
/// is resolved from these parameters, as it is from the random ones.
pub fn build_network_from(cfg: &ValidConfig, params: Vec<(Mat, Vector)>) -> Result<Network> {
    let arch = cfg.arch();
    if params.len() != arch.0.len() - 1 {
        bail!(
            "{} weight layer(s) given, network.arch '{}' has {}",
            params.len(),
            arch,
            arch.0.len() - 1
        );
    }
    for (k, ((w, b), dims)) in params.iter().zip(arch.0.windows(2)).enumerate() {
        if w.nrows() != dims[1] || w.ncols() != dims[0] || b.len() != dims[1] {
            bail!(
                "layer {}: weights {}×{} and bias of {} given, network.arch '{}' needs weights {}×{} (outputs × inputs) and a bias of {}",
                k + 1,
                w.nrows(),
                w.ncols(),
                b.len(),
                arch,
                dims[1],
                dims[0],
                dims[1]
            );
        }
    }
    let layers = params
        .into_iter()
        .enumerate()
        .map(|(k, (w, b))| build_layer(cfg, k, w, b, layer_seed(cfg.raw().seed, k)))
        .collect::<Result<Vec<_>>>()?;
    let net = Network {
        layers,
        activation: cfg.raw().network.activation,
        loss: cfg.raw().network.loss,
    };
    net.validate()?;
    Ok(net)
}

/// Accuracy of the free prediction on a split (`None` if any output is not finite).
pub fn evaluate(net: &mut Network, split: &Split, eval_batch: usize) -> Option<f64> {
    let classes = net.layers[net.depth() - 1].n_out();
    evaluate_with(split, classes, eval_batch, |x| net.predict(x))
}

/// Accuracy on a split of the predictions `predict` makes for each batch
/// of `eval_batch` images (`classes` outputs per image; `None` if any
/// output is not finite).
pub fn evaluate_with(
    split: &Split,
    classes: usize,
    eval_batch: usize,
    mut predict: impl FnMut(&Mat) -> Mat,
) -> Option<f64> {
    if split.is_empty() {
        return None;
    }
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    let mut correct = 0usize;
    let indices: Vec<usize> = (0..split.len()).collect();
    for chunk in indices.chunks(eval_batch) {
        split.batch(chunk, classes, &mut x, &mut y);
        let out = predict(&x);
        if out.iter().any(|v| !v.is_finite()) {
            return None;
        }
        correct += argmax_columns(&out)
            .into_iter()
            .zip(chunk)
            .filter(|(p, &i)| *p == split.labels[i] as usize)
            .count();
    }
    Some(correct as f64 / split.len() as f64)
}

/// What a finished run leaves behind.
pub struct RunOutput {
    /// The result record.
    pub result: RunResult,
    /// The trained network (for saving device state, further analysis).
    pub network: Network,
}

/// Builds the settler for `training.dynamics = "ode"`.
pub fn make_settler(cfg: &ValidConfig) -> Result<Option<Box<dyn EpochSettler>>> {
    match cfg.raw().training.dynamics {
        DynamicsKind::Discrete => Ok(None),
        DynamicsKind::Ode => Ok(Some(Box::new(crate::circuit::CircuitSettler::new(
            cfg.circuit(),
        )?))),
    }
}

/// Trains a fresh network as configured.
pub fn run(
    cfg: &ValidConfig,
    data: &Dataset,
    observers: &mut [&mut dyn Observer],
) -> Result<RunOutput> {
    let network = build_network(cfg)?;
    let settler = make_settler(cfg)?;
    run_with(cfg, data, network, settler, observers)
}

/// Trains `network` (already built) with an optional settler.
pub fn run_with(
    cfg: &ValidConfig,
    data: &Dataset,
    network: Network,
    settler: Option<Box<dyn EpochSettler>>,
    observers: &mut [&mut dyn Observer],
) -> Result<RunOutput> {
    run_continued(cfg, data, network, settler, observers, 0)
}

/// [`run_with`] for a run that continues one which already trained
/// `epochs_done` epochs (`train --resume`): the shuffling stream skips the
/// orders those epochs used, so that — with the network's parameters,
/// device state and continuation state restored — the result is the one
/// the uninterrupted run would have had.
pub fn run_continued(
    cfg: &ValidConfig,
    data: &Dataset,
    mut network: Network,
    mut settler: Option<Box<dyn EpochSettler>>,
    observers: &mut [&mut dyn Observer],
    epochs_done: usize,
) -> Result<RunOutput> {
    let raw = cfg.raw();
    if data.train.input_width() != cfg.arch().inputs() {
        bail!(
            "network.arch '{}' expects {} inputs but the dataset's images have {} pixels",
            cfg.arch(),
            cfg.arch().inputs(),
            data.train.input_width()
        );
    }
    if cfg.arch().outputs() != crate::data::CLASSES {
        bail!(
            "network.arch '{}' has {} outputs, but {} has {} classes: the last width must be {}",
            cfg.arch(),
            cfg.arch().outputs(),
            data.name,
            crate::data::CLASSES,
            crate::data::CLASSES
        );
    }
    let rule_needs_dual = raw.learning.rule.is_dual();
    if settler.is_some() && !rule_needs_dual {
        bail!("training.dynamics = \"ode\" needs a dual-propagation rule (dp, dpt, dp-damped), not {:?}", raw.learning.rule);
    }
    let classes = cfg.arch().outputs();
    let mut learner = Learner::new(cfg.learning());
    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(raw.seed ^ 0x5EED_0F5A_u64);
    for _ in 0..epochs_done {
        epoch_batches(data.train.len(), raw.training.batch, &mut shuffle_rng);
    }
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    let angle_batch: Vec<usize> = (0..raw.training.batch.min(data.train.len())).collect();
    let batches_per_epoch = data.train.len().div_ceil(raw.training.batch);
    for o in observers.iter_mut() {
        o.on_start(raw.training.epochs, batches_per_epoch);
    }
    let start = Instant::now();
    let mut train_seconds = 0.0f64;
    let mut samples_seen = 0u64;
    let mut epochs = Vec::new();
    let mut diverged_at: Option<DivergenceEvent> = None;
    let mut overall_max_state = 0.0f32;
    // ‖W_k‖₂ at the start of the current epoch, against which a divergence
    // is diagnosed (a read-out of the stored weights: no device is touched).
    let read_weights =
        |network: &Network| -> Vec<Mat> { network.layers.iter().map(|l| l.weights()).collect() };
    let mut norms_at_epoch_start = weight_norms(&read_weights(&network));
    'epochs: for epoch in 1..=raw.training.epochs {
        let epoch_start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut epoch_max_state = 0.0f32;
        let mut stop = false;
        for (b, indices) in epoch_batches(data.train.len(), raw.training.batch, &mut shuffle_rng)
            .iter()
            .enumerate()
        {
            data.train.batch(indices, classes, &mut x, &mut y);
            let outcome = learner.step(
                &mut network,
                &x,
                &y,
                settler.as_mut().map(|s| s.as_mut() as &mut dyn Settler),
            );
            let batch_max = outcome
                .layer_max_state
                .iter()
                .cloned()
                .fold(0.0f32, |m, v| {
                    if v.is_finite() {
                        m.max(v)
                    } else {
                        f32::INFINITY
                    }
                });
            epoch_max_state = epoch_max_state.max(batch_max);
            let circuit_divergence = settler.as_mut().and_then(|s| s.take_divergence());
            if let Some((layer, reason, value)) = first_runaway(
                &outcome.layer_max_state,
                raw.divergence.state_limit,
                "state",
            )
            .or(circuit_divergence)
            {
                if diverged_at.is_none() {
                    let (cause, norms, lipschitz) =
                        diagnose_divergence(&norms_at_epoch_start, &read_weights(&network));
                    let event = DivergenceEvent {
                        epoch,
                        batch: b + 1,
                        layer,
                        reason: reason.clone(),
                        value,
                        cause: Some(cause),
                        weight_norms: norms,
                        weight_norms_before: norms_at_epoch_start.clone(),
                        lipschitz,
                    };
                    for o in observers.iter_mut() {
                        o.on_divergence(&event);
                    }
                    diverged_at = Some(event);
                }
                if raw.divergence.stop_on_runaway || reason.starts_with("non_finite") {
                    stop = true;
                }
            }
            loss_sum += outcome.loss_sum;
            correct += outcome.correct;
            seen += indices.len();
            samples_seen += indices.len() as u64;
            if stop {
                break;
            }
            for (layer, grad) in network.layers.iter_mut().zip(&outcome.gradients) {
                layer.apply_gradient(grad);
            }
            for o in observers.iter_mut() {
                o.on_batch(
                    epoch,
                    b + 1,
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                );
            }
            if observers.iter_mut().any(|o| o.should_stop()) {
                return Err(Interrupted.into());
            }
        }
        let epoch_train_seconds = epoch_start.elapsed().as_secs_f64();
        train_seconds += epoch_train_seconds;
        overall_max_state = overall_max_state.max(epoch_max_state);
        // Weights are checked once per epoch (a dense read-out of every array).
        let weights: Vec<Mat> = network.layers.iter().map(|l| l.weights()).collect();
        let weight_max: Vec<f32> = weights.iter().map(crate::linalg::max_abs).collect();
        if let Some((layer, reason, value)) =
            first_runaway(&weight_max, raw.divergence.weight_limit, "weight")
        {
            if diverged_at.is_none() {
                // A weight past the limit (or not finite) was put there by
                // the updates, whatever the norms say.
                let (_, norms, lipschitz) = diagnose_divergence(&norms_at_epoch_start, &weights);
                let event = DivergenceEvent {
                    epoch,
                    batch: batches_per_epoch,
                    layer,
                    reason,
                    value,
                    cause: Some(DivergenceCause::Writes),
                    weight_norms: norms,
                    weight_norms_before: norms_at_epoch_start.clone(),
                    lipschitz,
                };
                for o in observers.iter_mut() {
                    o.on_divergence(&event);
                }
                diverged_at = Some(event);
            }
            stop = true;
        }
        let weights_finite = weight_max.iter().all(|m| m.is_finite());
        if !stop {
            norms_at_epoch_start = weight_norms(&weights);
        }
        let angle = if raw.training.track_angle && weights_finite && rule_needs_dual {
            data.train.batch(&angle_batch, classes, &mut x, &mut y);
            Some(gradient_angle(&mut network, &mut learner, &x, &y).angle_deg)
        } else {
            None
        };
        let settle = settler.as_mut().and_then(|s| s.take_summary());
        let status = if diverged_at.is_some() {
            RunStatus::Diverged
        } else {
            RunStatus::Ok
        };
        let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
        let record = EpochRecord {
            epoch,
            train_loss: if seen > 0 {
                finite(loss_sum / seen as f64)
            } else {
                None
            },
            train_accuracy: if seen > 0 {
                Some(correct as f64 / seen as f64)
            } else {
                None
            },
            validation_accuracy: if weights_finite {
                evaluate(&mut network, &data.validation, raw.training.eval_batch)
            } else {
                None
            },
            test_accuracy: if weights_finite {
                evaluate(&mut network, &data.test, raw.training.eval_batch)
            } else {
                None
            },
            lipschitz: if weights_finite {
                finite(lipschitz_estimate(&weights, 500))
            } else {
                None
            },
            max_state: if epoch_max_state.is_finite() {
                epoch_max_state as f64
            } else {
                f64::INFINITY
            },
            gradient_angle_deg: angle,
            settle_time_mean: settle.map(|s| s.time_mean),
            settle_time_max: settle.map(|s| s.time_max),
            settle_steps_mean: settle.map(|s| s.steps_mean),
            settle_steps_max: settle.map(|s| s.steps_max),
            samples_per_second: seen as f64 / epoch_train_seconds.max(1e-9),
            status,
        };
        for o in observers.iter_mut() {
            o.on_epoch(&record);
        }
        epochs.push(record);
        if stop {
            break 'epochs;
        }
        if epoch < raw.training.epochs && observers.iter().any(|o| o.wants_checkpoints()) {
            let so_far = assemble_result(
                &network,
                diverged_at.clone(),
                epochs.clone(),
                overall_max_state,
                samples_seen,
                train_seconds,
                start,
            );
            for o in observers.iter_mut() {
                o.on_checkpoint(&so_far, &network)?;
            }
        }
    }
    let result = assemble_result(
        &network,
        diverged_at,
        epochs,
        overall_max_state,
        samples_seen,
        train_seconds,
        start,
    );
    for o in observers.iter_mut() {
        o.on_finish(&result);
    }
    Ok(RunOutput { result, network })
}

/// The result record of a run from its epochs so far.
fn assemble_result(
    network: &Network,
    diverged_at: Option<DivergenceEvent>,
    epochs: Vec<EpochRecord>,
    overall_max_state: f32,
    samples_seen: u64,
    train_seconds: f64,
    start: Instant,
) -> RunResult {
    let last = epochs.last().cloned().unwrap_or_default();
    let layer_stats: Vec<crate::substrate::LayerHardwareStats> = network
        .layers
        .iter()
        .filter_map(|l| l.hardware_stats())
        .collect();
    RunResult {
        status: if diverged_at.is_some() {
            RunStatus::Diverged
        } else {
            RunStatus::Ok
        },
        diverged_at,
        test_accuracy: last.test_accuracy,
        validation_accuracy: last.validation_accuracy,
        train_loss: last.train_loss,
        train_accuracy: last.train_accuracy,
        lipschitz: last.lipschitz,
        max_state: if overall_max_state.is_finite() {
            overall_max_state as f64
        } else {
            f64::INFINITY
        },
        samples_per_second: samples_seen as f64 / train_seconds.max(1e-9),
        wall_seconds: start.elapsed().as_secs_f64(),
        samples_seen,
        epochs,
        hardware: crate::substrate::HardwareSummary::of(layer_stats),
    }
}

/// Builds one weight layer on the configured substrate with the given
/// initial parameters. `layer` is 0-based (W_1 is layer 0); `seed` seeds the
/// layer's own random streams (device variation, read noise, write noise).
pub fn build_layer(
    config: &ValidConfig,
    layer: usize,
    weights: Mat,
    bias: Vector,
    seed: u64,
) -> Result<Box<dyn WeightArray>> {
    use super::config::SubstrateKind;
    match config.raw().training.substrate {
        SubstrateKind::Digital => Ok(Box::new(crate::digital::DigitalWeights::new(
            weights,
            bias,
            &config.raw().optimizer,
        ))),
        SubstrateKind::Crossbar => {
            let array = crate::crossbar::Crossbar::with_parameters_checked(
                &config.raw().crossbar,
                &config.raw().device,
                &weights,
                &bias,
                seed,
            )
            .map_err(|e| e.context(format!("building crossbar for weight layer {}", layer + 1)))?;
            Ok(Box::new(array))
        }
    }
}
