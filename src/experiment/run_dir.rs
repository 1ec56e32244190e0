//! Run directories: what `train --out DIR` leaves behind and what
//! `train --resume DIR` (or a library caller) continues from.
//!
//! A run directory holds `config.toml` (the effective configuration),
//! `result.json` (the [`RunResult`](super::RunResult)), `parameters.json` (the effective
//! weights, column-major as [`SavedLayer`] says) and the same weights as
//! `parameters.npz` (row-major NumPy arrays `W1, b1, …`, see
//! [`super::npz`]), on crossbars `device_state.json` (conductances, pulse counters,
//! wear) and `run_state.json` (epochs done, every random stream, the
//! optimiser's moments). Every file is written atomically.

use super::train::RunOutput;
use super::ValidConfig;
use crate::linalg::{Mat, Vector};
use crate::network::Network;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;

/// File name of the crossbar device state inside a run directory.
pub const DEVICE_STATE_FILE: &str = "device_state.json";

/// File name of the continuation state (epochs done, random streams,
/// optimiser moments) inside a run directory.
pub const RUN_STATE_FILE: &str = "run_state.json";

/// Restores the state of the run directory `dir` into `net`;
/// returns the epochs the saved run had trained (0 for a run directory
/// without `run_state.json`, written before it existed: such a run resumes
/// with fresh random streams and optimiser moments).
pub fn restore_run(dir: &Path, net: &mut Network) -> Result<usize> {
    load_parameters(&dir.join(PARAMETERS_FILE), net)?;
    let path = dir.join(DEVICE_STATE_FILE);
    if path.exists() {
        let saved: serde_json::Value = read_json(&path, "device state")?;
        let layers = saved
            .get("layers")
            .and_then(|l| l.as_array())
            .with_context(|| format!("{}: no `layers` array", path.display()))?;
        check_layer_count(&path, layers.len(), net.depth())?;
        for (k, (layer, state)) in net.layers.iter_mut().zip(layers).enumerate() {
            layer
                .restore_device_state(state)
                .with_context(|| format!("{}: layer {}", path.display(), k + 1))?;
        }
    }
    let path = dir.join(RUN_STATE_FILE);
    if !path.exists() {
        return Ok(0);
    }
    let saved: RunState = read_json(&path, "run state")?;
    check_layer_count(&path, saved.layers.len(), net.depth())?;
    for (k, (layer, state)) in net.layers.iter_mut().zip(&saved.layers).enumerate() {
        if let Some(state) = state {
            layer
                .restore_continuation_state(state)
                .with_context(|| format!("{}: layer {}", path.display(), k + 1))?;
        }
    }
    Ok(saved.epochs_done)
}

/// `run_state.json`: what `--resume` needs besides parameters and devices.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunState {
    /// Epochs trained so far, over this run and the ones it resumed.
    epochs_done: usize,
    /// Each layer's continuation state (random streams, optimiser moments).
    layers: Vec<Option<serde_json::Value>>,
}

/// The weights and biases of a network, as saved beside a run's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedParameters {
    /// One entry per layer, `W_1` first.
    pub layers: Vec<SavedLayer>,
}

/// One layer's parameters (weights column-major, `rows × cols`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedLayer {
    /// `n_k`.
    pub rows: usize,
    /// `n_{k−1}`.
    pub cols: usize,
    /// `W_k`, column-major.
    pub weights: Vec<f32>,
    /// `b_k`.
    pub bias: Vec<f32>,
}

/// File name of saved parameters inside a run directory.
pub const PARAMETERS_FILE: &str = "parameters.json";

/// File name of the saved parameters as NumPy arrays inside a run directory.
pub const PARAMETERS_NPZ_FILE: &str = "parameters.npz";

/// Writes the effective weights of `net` to `dir/parameters.json` (atomically).
pub fn save_parameters(dir: &Path, net: &Network) -> Result<()> {
    let saved = SavedParameters {
        layers: net
            .layers
            .iter()
            .map(|l| {
                let w = l.weights();
                SavedLayer {
                    rows: w.nrows(),
                    cols: w.ncols(),
                    weights: w.as_slice().to_vec(),
                    bias: l.bias().as_slice().to_vec(),
                }
            })
            .collect(),
    };
    let json = serde_json::to_string(&saved).context("serialising parameters")?;
    write_atomic(&dir.join(PARAMETERS_FILE), json.as_bytes())
}

/// Loads `path` (a `parameters.json`) into `net`, checking every shape.
pub fn load_parameters(path: &Path, net: &mut Network) -> Result<()> {
    let saved: SavedParameters = read_json(path, "parameters")?;
    check_layer_count(path, saved.layers.len(), net.depth())?;
    for (k, (layer, s)) in net.layers.iter_mut().zip(&saved.layers).enumerate() {
        ensure!(
            s.rows == layer.n_out()
                && s.cols == layer.n_in()
                && s.weights.len() == s.rows * s.cols
                && s.bias.len() == s.rows,
            "{}: layer {} is {}×{} ({} weights, {} biases), the network expects {}×{}",
            path.display(),
            k + 1,
            s.rows,
            s.cols,
            s.weights.len(),
            s.bias.len(),
            layer.n_out(),
            layer.n_in()
        );
        layer.set_parameters(
            &Mat::from_column_slice(s.rows, s.cols, &s.weights),
            &Vector::from_column_slice(&s.bias),
        );
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (temporary file in the same
/// directory, fsync, rename), so a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot move the result into place at {}: {}",
            path.display(),
            e.error
        )
    })?;
    Ok(())
}

/// Reads the JSON file `path` (a `what` of a run directory) into `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid {what} file {}", path.display()))
}

/// Checks that a file of per-layer entries saved `saved` layers for a
/// network of `depth` layers.
pub fn check_layer_count(path: &Path, saved: usize, depth: usize) -> Result<()> {
    anyhow::ensure!(
        saved == depth,
        "{}: {saved} layers saved, the network has {depth} (was the run on the same substrate and architecture?)",
        path.display()
    );
    Ok(())
}

/// Writes a finished run into `dir`: result, configuration, parameters,
/// device and continuation state. `epochs_before` is the number of epochs
/// the run had trained before it was resumed (0 for a fresh run).
///
/// [`RunResult`]: super::RunResult
pub fn save_run(
    dir: &Path,
    cfg: &ValidConfig,
    output: &RunOutput,
    epochs_before: usize,
) -> Result<()> {
    let result = &output.result;
    let json = serde_json::to_string_pretty(result).context("serialising result")?;
    write_atomic(&dir.join("result.json"), json.as_bytes())?;
    let toml = toml::to_string_pretty(&cfg.raw()).context("serialising config")?;
    write_atomic(&dir.join("config.toml"), toml.as_bytes())?;
    // Crossbar layers also leave their device state (conductances, pulse
    // counters) so the run can be inspected or resumed.
    let states: Vec<serde_json::Value> = output
        .network
        .layers
        .iter()
        .filter_map(|l| l.device_state())
        .collect();
    if !states.is_empty() {
        let json = serde_json::to_string(&serde_json::json!({ "layers": states }))
            .context("serialising device state")?;
        write_atomic(&dir.join(DEVICE_STATE_FILE), json.as_bytes())?;
    }
    // The trained weights, so `dyadsim settle --from DIR` can load them.
    save_parameters(dir, &output.network)?;
    super::npz::write_parameters(&dir.join(PARAMETERS_NPZ_FILE), &output.network.parameters())?;
    // Where the random streams and optimiser stood, so a resumed run
    // continues exactly.
    let state = RunState {
        epochs_done: epochs_before + result.epochs.len(),
        layers: output
            .network
            .layers
            .iter()
            .map(|l| l.continuation_state())
            .collect(),
    };
    let json = serde_json::to_string(&state).context("serialising run state")?;
    write_atomic(&dir.join(RUN_STATE_FILE), json.as_bytes())
}
