//! Run directories: what `train --out DIR` leaves behind and what
//! `train --resume DIR` (or a library caller) continues from.
//!
//! A run directory holds `config.toml` (the effective configuration),
//! `result.json` (the [`RunResult`](super::RunResult)), `parameters.json` (the effective
//! weights, column-major as [`SavedLayer`] says) and the same weights as
//! `parameters.npz` (row-major NumPy arrays `W1, b1, …`, see
//! [`super::npz`]), on crossbars `device_state.json` (conductances, pulse counters,
//! wear), `run_state.json` (epochs done, every random stream, the
//! optimiser's moments) and `manifest.json` (which files belong to the run,
//! with their SHA-256; epochs done of epochs planned). The directory is
//! written as one unit ([`write_dir_atomic`]), after every epoch while a
//! run trains and once more when it ends, and `--resume` refuses one whose
//! files do not belong together ([`check_manifest`]).

use super::train::RunOutput;
use super::ValidConfig;
use crate::linalg::{Mat, Vector};
use crate::network::Network;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

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
    let manifest = check_manifest(dir)?;
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
    } else if net.layers.iter().any(|l| l.hardware_stats().is_some()) {
        bail!(
            "{}: the network is on crossbars but the directory has no {DEVICE_STATE_FILE}: resuming would start from fresh devices (was the run saved on the digital substrate?)",
            dir.display()
        );
    }
    let path = dir.join(RUN_STATE_FILE);
    if !path.exists() {
        if manifest.is_some() {
            bail!(
                "{}: no {RUN_STATE_FILE} (the run directory is incomplete)",
                dir.display()
            );
        }
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

/// The effective weights of `net` in the `parameters.json` layout.
fn saved_parameters(net: &Network) -> SavedParameters {
    SavedParameters {
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
    }
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

/// The directory that holds `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `contents` to `path` atomically (temporary file in the same
/// directory, fsync, rename), so a crash never leaves a half-written file.
/// The file gets the usual mode (0666 less the process's umask, as any
/// program's new file), so colleagues on shared storage can read it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let (tmp, mut file) = create_unique(dir, name, |p| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
    })?;
    let written = file
        .write_all(contents)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move the result into place at {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir);
    Ok(())
}

/// Creates a fresh `.NAME.tmp-…` entry in `dir` with `create` (which must
/// fail with `AlreadyExists` for a taken name); returns its path and what
/// `create` returned.
fn create_unique<T>(
    dir: &Path,
    name: &std::ffi::OsStr,
    create: impl Fn(&Path) -> std::io::Result<T>,
) -> Result<(PathBuf, T)> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..1000 {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let candidate = dir.join(format!(
            ".{}.tmp-{}-{n}-{nanos}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match create(&candidate) {
            Ok(t) => return Ok((candidate, t)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create a temporary entry in {}", dir.display())
                })
            }
        }
    }
    bail!(
        "cannot find a free temporary name in {} (1000 tries)",
        dir.display()
    )
}

/// Makes a rename inside `dir` durable (best effort: not every file
/// system can sync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `files` (name, contents) as the directory `dir`, as one unit:
/// into a fresh sibling directory first (each file synced), which then
/// takes `dir`'s place in one step — an atomic exchange where the system
/// has one (Linux `renameat2(RENAME_EXCHANGE)`), else two renames. A crash
/// leaves either the old directory or the new one, never a mix (at worst,
/// without the exchange, a hidden `.NAME.tmp-…` sibling beside the old or
/// new one). Files of the old directory that `files` does not name are
/// gone afterwards.
pub fn write_dir_atomic(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let parent = parent_dir(dir);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create directory {}", parent.display()))?;
    let name = dir
        .file_name()
        .with_context(|| format!("{}: not a directory name", dir.display()))?;
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let (staging, ()) = create_unique(parent, name, |p| std::fs::create_dir(p))?;
    let filled = (|| -> Result<()> {
        for (file_name, contents) in files {
            let path = staging.join(file_name);
            let mut f = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            f.write_all(contents)
                .and_then(|_| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        sync_dir(&staging);
        if dir.exists() {
            swap_into_place(&staging, dir)
        } else {
            std::fs::rename(&staging, dir).with_context(|| {
                format!(
                    "cannot move the run directory into place at {}",
                    dir.display()
                )
            })
        }
    })();
    // On success `staging` holds the old directory (or nothing); on error
    // it holds the unfinished new one. Either way it goes.
    let _ = std::fs::remove_dir_all(&staging);
    filled?;
    sync_dir(parent);
    Ok(())
}

/// Puts the directory `new` in the place of the existing directory `dir`;
/// afterwards `new`'s path holds the old directory (or does not exist).
#[cfg(target_os = "linux")]
fn swap_into_place(new: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .with_context(|| format!("{}: path contains a NUL byte", p.display()))
    };
    let (a, b) = (c(new)?, c(dir)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // The file system or kernel cannot exchange: two renames instead.
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            swap_by_renames(new, dir)
        }
        _ => Err(err).with_context(|| {
            format!(
                "cannot put the new run directory in place of {}",
                dir.display()
            )
        }),
    }
}

/// [`swap_into_place`] where the system has no atomic exchange.
#[cfg(not(target_os = "linux"))]
fn swap_into_place(new: &Path, dir: &Path) -> Result<()> {
    swap_by_renames(new, dir)
}

/// `dir` → a hidden sibling, `new` → `dir`, then the old one to `new`'s
/// path (which the caller removes).
fn swap_by_renames(new: &Path, dir: &Path) -> Result<()> {
    let parent = parent_dir(dir);
    let name = dir.file_name().unwrap_or_default();
    let (old, ()) = create_unique(parent, name, |p| std::fs::create_dir(p))?;
    std::fs::remove_dir(&old).with_context(|| format!("cannot use {}", old.display()))?;
    std::fs::rename(dir, &old)
        .with_context(|| format!("cannot move the old run directory {} aside", dir.display()))?;
    std::fs::rename(new, dir).with_context(|| {
        format!(
            "cannot move the new run directory into place at {} (the old one is at {})",
            dir.display(),
            old.display()
        )
    })?;
    std::fs::rename(&old, new)
        .with_context(|| format!("cannot remove the old run directory {}", old.display()))
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

/// File name of the manifest of a run directory: which files belong to
/// it (with their SHA-256), how many epochs it holds of how many planned.
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json`: the files of one run directory, written with them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// dyadsim version that wrote the directory.
    pub dyadsim_version: String,
    /// Epochs the saved state holds, over this run and those it resumed.
    pub epochs_done: usize,
    /// Epochs the run was asked for (same count).
    pub epochs_planned: usize,
    /// Whether the run finished (`false`: a checkpoint after an epoch of a
    /// run still going, or one that was stopped; `train --resume DIR`
    /// continues it).
    pub complete: bool,
    /// Every file of the directory and the SHA-256 (hex) of its contents.
    pub files: std::collections::BTreeMap<String, String>,
    /// Version and commit, date and machine of the write.
    #[serde(default)]
    pub provenance: super::provenance::Provenance,
}

/// The SHA-256 of `bytes` as lowercase hex (run manifests, sweep config hashes).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `dir` looks like a run directory (has a manifest, or the
/// result and configuration of one written before manifests existed).
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
        || (dir.join("result.json").is_file() && dir.join("config.toml").is_file())
}

/// Checks, before training, that `dir` can take a run directory: not a
/// file; an existing directory only if it is empty, or a run directory and
/// `replace` is set (`--force`, or it is the run being resumed); its parent
/// writable. So an unusable `--out` fails before the run, not after it.
pub fn check_out_dir(dir: &Path, replace: bool, flag: &str) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{flag} {}: exists and is not a directory", dir.display());
        }
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("{flag} {}: cannot read the directory", dir.display()))?
            .next()
            .is_none();
        if !empty {
            if !is_run_dir(dir) {
                bail!(
                    "{flag} {}: the directory is not empty and holds no run (no manifest.json); a run directory replaces the whole directory, so choose a new or empty one",
                    dir.display()
                );
            }
            if !replace {
                bail!(
                    "{flag} {}: already holds a run; pass --force to replace it, or --resume {} to continue it",
                    dir.display(),
                    dir.display()
                );
            }
        }
    }
    let parent = parent_dir(dir);
    std::fs::create_dir_all(parent).with_context(|| {
        format!(
            "{flag} {}: cannot create {}",
            dir.display(),
            parent.display()
        )
    })?;
    let name = dir
        .file_name()
        .with_context(|| format!("{flag} {}: not a directory name", dir.display()))?;
    let (probe, ()) = create_unique(parent, name, |p| std::fs::create_dir(p))
        .with_context(|| format!("{flag} {}: cannot write there", dir.display()))?;
    let _ = std::fs::remove_dir(probe);
    Ok(())
}

/// Checks that the files of the run directory `dir` belong together: each
/// file its manifest lists has the contents it was written with, and no
/// run file is there that the manifest does not list. A directory without
/// a manifest (written before manifests existed) passes unchecked.
pub fn check_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let manifest: Manifest = read_json(&path, "run manifest")?;
    for (name, hash) in &manifest.files {
        let file = dir.join(name);
        let bytes = std::fs::read(&file).with_context(|| {
            format!(
                "{}: the manifest lists {name}, which cannot be read: the run directory is incomplete",
                dir.display()
            )
        })?;
        if &sha256_hex(&bytes) != hash {
            bail!(
                "{}: {name} is not the file this run wrote (its SHA-256 differs from manifest.json): the files do not belong together; restore the directory as written, or start a new run",
                dir.display()
            );
        }
    }
    for name in RUN_FILES {
        if dir.join(name).exists() && !manifest.files.contains_key(*name) {
            bail!(
                "{}: {name} is not part of this run (manifest.json does not list it): the files do not belong together",
                dir.display()
            );
        }
    }
    Ok(Some(manifest))
}

/// The files a run directory may hold.
const RUN_FILES: &[&str] = &[
    "result.json",
    "config.toml",
    PARAMETERS_FILE,
    PARAMETERS_NPZ_FILE,
    DEVICE_STATE_FILE,
    RUN_STATE_FILE,
];

/// Writes a finished run into `dir`: result, configuration, parameters,
/// device and continuation state. `epochs_before` is the number of epochs
/// the run had trained before it was resumed (0 for a fresh run).
pub fn save_run(
    dir: &Path,
    cfg: &ValidConfig,
    output: &RunOutput,
    epochs_before: usize,
) -> Result<()> {
    save_run_state(
        dir,
        cfg,
        &output.result,
        &output.network,
        epochs_before,
        true,
    )
}

/// Writes the state of a run — finished (`complete`) or a checkpoint after
/// an epoch — into `dir` as one unit ([`write_dir_atomic`]), with its
/// [`Manifest`].
pub fn save_run_state(
    dir: &Path,
    cfg: &ValidConfig,
    result: &super::RunResult,
    network: &Network,
    epochs_before: usize,
    complete: bool,
) -> Result<()> {
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    files.push((
        "result.json",
        serde_json::to_vec_pretty(result).context("serialising result")?,
    ));
    files.push(("config.toml", cfg.raw().to_toml_string()?.into_bytes()));
    // Crossbar layers also leave their device state (conductances, pulse
    // counters) so the run can be inspected or resumed.
    let states: Vec<serde_json::Value> = network
        .layers
        .iter()
        .filter_map(|l| l.device_state())
        .collect();
    if !states.is_empty() {
        files.push((
            DEVICE_STATE_FILE,
            serde_json::to_vec(&serde_json::json!({ "layers": states }))
                .context("serialising device state")?,
        ));
    }
    // The trained weights, so `dyadsim settle --from DIR` can load them.
    files.push((
        PARAMETERS_FILE,
        serde_json::to_vec(&saved_parameters(network)).context("serialising parameters")?,
    ));
    files.push((
        PARAMETERS_NPZ_FILE,
        super::npz::encode_parameters(&network.parameters()).context("encoding parameters.npz")?,
    ));
    // Where the random streams and optimiser stood, so a resumed run
    // continues exactly.
    let epochs_done = epochs_before + result.epochs.len();
    let state = RunState {
        epochs_done,
        layers: network
            .layers
            .iter()
            .map(|l| l.continuation_state())
            .collect(),
    };
    files.push((
        RUN_STATE_FILE,
        serde_json::to_vec(&state).context("serialising run state")?,
    ));
    let manifest = Manifest {
        dyadsim_version: env!("CARGO_PKG_VERSION").to_string(),
        epochs_done,
        epochs_planned: epochs_before + cfg.raw().training.epochs,
        complete,
        files: files
            .iter()
            .map(|(name, bytes)| (name.to_string(), sha256_hex(bytes)))
            .collect(),
        provenance: super::provenance::Provenance::now(),
    };
    files.push((
        MANIFEST_FILE,
        serde_json::to_vec_pretty(&manifest).context("serialising manifest")?,
    ));
    write_dir_atomic(dir, &files)
}
