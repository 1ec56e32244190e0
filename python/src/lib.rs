//! `dyadsim._dyadsim`: the PyO3 extension module behind the Python package
//! `dyadsim` (`python/dyadsim/__init__.py` wraps it with the documented API).
//!
//! Everything here is a thin layer over the library crate: configurations
//! are resolved and checked by `dyadsim::experiment::Config`, runs are the
//! library's training executor, sweeps its `SweepRequest`, reports its
//! `report::generate`. Long calls release the GIL and look for Python
//! signals every 100 ms, so Ctrl-C stops them with `KeyboardInterrupt`
//! and nothing half-written.
//!
//! Array layout: a NumPy array `(B, n)` in C order holds its rows one after
//! another, which is exactly the column-major `n × B` matrix the library
//! uses (one sample per column), so batches cross the boundary with one
//! copy and no transposition. Weights are returned `(n_out, n_in)` in C
//! order (transposed from the library's column-major storage).

use anyhow::Context as _;
use dyadsim::crossbar::{Crossbar, CrossbarConfig};
use dyadsim::data::{DataConfig, DatasetName};
use dyadsim::devices::{builtin_names, DeviceModel};
use dyadsim::experiment::config::Config;
use dyadsim::experiment::run_dir::{check_out_dir, read_json, restore_run, save_run};
use dyadsim::experiment::sweep::{Shard, SweepRequest, ThreadPlan, TrainingRunner};
use dyadsim::experiment::train::{
    build_network, build_network_from, make_settler, run_continued, Interrupted, Observer,
    RunOutput,
};
use dyadsim::experiment::{RunResult, ValidConfig};
use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::{OuterProductGradient, WeightArray};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a long call looks for Python signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// A library error as a Python exception: `KeyboardInterrupt` for a run
/// stopped by Ctrl-C, `OSError` when a file could not be read or written,
/// `ValueError` otherwise (a bad configuration, a bad argument) — with the
/// message the CLI prints after `error:`.
fn to_py_err(e: anyhow::Error) -> PyErr {
    if e.is::<Interrupted>() {
        return PyKeyboardInterrupt::new_err("interrupted");
    }
    let message = format!("{e:#}");
    if e.chain().any(|c| c.is::<std::io::Error>()) {
        PyOSError::new_err(message)
    } else {
        PyValueError::new_err(message)
    }
}

/// A Python value (dict, list, str, int, float, bool) as a TOML value;
/// `path` names the field in errors.
fn py_to_toml(value: &Bound<'_, PyAny>, path: &str) -> PyResult<toml::Value> {
    if value.is_none() {
        return Err(PyValueError::new_err(format!(
            "configuration field `{path}` is None: leave the field out to get its default"
        )));
    }
    if value.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(value.extract()?));
    }
    if value.is_instance_of::<PyInt>() {
        let v: i64 = value.extract().map_err(|_| {
            PyValueError::new_err(format!(
                "configuration field `{path}`: integer {value} does not fit in 64 bits"
            ))
        })?;
        return Ok(toml::Value::Integer(v));
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(value.extract()?));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(value.extract()?));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut table = toml::Table::new();
        for (k, v) in dict.iter() {
            let key: String = k.extract().map_err(|_| {
                PyValueError::new_err(format!(
                    "configuration section `{path}`: keys must be strings, not {k}"
                ))
            })?;
            let sub = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            table.insert(key, py_to_toml(&v, &sub)?);
        }
        return Ok(toml::Value::Table(table));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, v) in value.try_iter()?.enumerate() {
            items.push(py_to_toml(&v?, &format!("{path}[{i}]"))?);
        }
        return Ok(toml::Value::Array(items));
    }
    // NumPy scalars and other numbers: as float if they convert.
    if let Ok(v) = value.extract::<f64>() {
        return Ok(toml::Value::Float(v));
    }
    Err(PyValueError::new_err(format!(
        "configuration field `{path}`: unsupported value {value} of type {}",
        value.get_type().name()?
    )))
}

/// A TOML table from a Python dict (or an error naming what it is).
fn py_to_table(value: &Bound<'_, PyAny>, what: &str) -> PyResult<toml::Table> {
    match py_to_toml(value, "")? {
        toml::Value::Table(t) => Ok(t),
        _ => Err(PyValueError::new_err(format!("{what} must be a dict"))),
    }
}

/// The configuration named by `kind`: `"dict"` (a Python dict of the TOML
/// sections), `"path"` (a TOML file), `"toml"` (TOML text).
fn resolve_config(kind: &str, config: &Bound<'_, PyAny>) -> PyResult<Config> {
    match kind {
        // The device model's recommended crossbar settings fill the fields
        // the configuration leaves out, as on the command line.
        "dict" => {
            Config::from_table_recommended(py_to_table(config, "config")?, "the configuration dict")
                .map_err(to_py_err)
        }
        "path" => {
            let path: PathBuf = config.extract()?;
            Config::from_file_recommended(&path).map_err(to_py_err)
        }
        "toml" => {
            let text: String = config.extract()?;
            // Parsed as a configuration first, for the CLI's error messages.
            toml::from_str::<Config>(&text)
                .context("invalid configuration")
                .map_err(to_py_err)?;
            let table: toml::Table = toml::from_str(&text)
                .context("invalid configuration")
                .map_err(to_py_err)?;
            Config::from_table_recommended(table, "the configuration text").map_err(to_py_err)
        }
        other => Err(PyValueError::new_err(format!(
            "unknown configuration kind {other:?}"
        ))),
    }
}

/// Writes `text` to Python's `sys.stderr` (so it shows in Jupyter too).
fn write_stderr(py: Python<'_>, text: &str) {
    if let Ok(stderr) = py.import("sys").and_then(|s| s.getattr("stderr")) {
        let _ = stderr.call_method1("write", (text,));
        let _ = stderr.call_method0("flush");
    }
}

/// The observer of a run started from Python: looks for signals (Ctrl-C)
/// every [`SIGNAL_POLL`] and, with `progress`, draws one status line per
/// epoch on `sys.stderr`.
struct PythonObserver<'a> {
    progress: bool,
    /// Set by another thread to stop this run (a sweep's Ctrl-C).
    stop: Option<&'a AtomicBool>,
    /// Whether this observer polls Python's signals itself (the main
    /// thread's run; a sweep's jobs are stopped through `stop`).
    poll_signals: bool,
    last_poll: Instant,
    /// The signal handler's exception (`KeyboardInterrupt`), raised after
    /// the run unwound.
    pending: Option<PyErr>,
    epochs: usize,
    batches: usize,
    /// Whether `sys.stderr` is a terminal: only there is the line of the
    /// epoch in progress redrawn (a log or a pipe gets the epoch lines).
    live: bool,
}

impl<'a> PythonObserver<'a> {
    fn new(progress: bool) -> Self {
        let live = progress
            && Python::attach(|py| {
                py.import("sys")
                    .and_then(|s| s.getattr("stderr"))
                    .and_then(|e| e.call_method0("isatty"))
                    .and_then(|t| t.extract::<bool>())
                    .unwrap_or(false)
            });
        Self {
            live,
            progress,
            stop: None,
            poll_signals: true,
            last_poll: Instant::now(),
            pending: None,
            epochs: 0,
            batches: 0,
        }
    }

    fn stopped_by(stop: &'a AtomicBool) -> Self {
        Self {
            stop: Some(stop),
            poll_signals: false,
            ..Self::new(false)
        }
    }
}

impl Observer for PythonObserver<'_> {
    fn on_start(&mut self, epochs: usize, batches: usize) {
        self.epochs = epochs;
        self.batches = batches;
    }

    fn on_batch(&mut self, epoch: usize, batch: usize, loss: f64, accuracy: f64) {
        if self.last_poll.elapsed() < SIGNAL_POLL {
            return;
        }
        self.last_poll = Instant::now();
        if !self.poll_signals && !self.progress {
            return;
        }
        Python::attach(|py| {
            if self.poll_signals {
                if let Err(e) = py.check_signals() {
                    self.pending = Some(e);
                }
            }
            if self.progress && self.live {
                write_stderr(
                    py,
                    &format!(
                        "\repoch {epoch}/{}  batch {batch}/{}  loss {loss:.4}  train accuracy {:.2}%   ",
                        self.epochs,
                        self.batches,
                        100.0 * accuracy
                    ),
                );
            }
        });
    }

    fn on_epoch(&mut self, record: &dyadsim::experiment::result::EpochRecord) {
        if !self.progress {
            return;
        }
        let pct = |v: Option<f64>| {
            v.map(|a| format!("{:.2}%", 100.0 * a))
                .unwrap_or_else(|| "n/a".into())
        };
        let line = format!(
            "{}epoch {}/{}: train loss {}, train accuracy {}, validation {}, test {}, {:.0} samples/s\n",
            if self.live { "\r" } else { "" },
            record.epoch,
            self.epochs,
            record
                .train_loss
                .map(|l| format!("{l:.4}"))
                .unwrap_or_else(|| "n/a".into()),
            pct(record.train_accuracy),
            pct(record.validation_accuracy),
            pct(record.test_accuracy),
            record.samples_per_second
        );
        Python::attach(|py| write_stderr(py, &line));
    }

    fn should_stop(&mut self) -> bool {
        self.pending.is_some() || self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// A finished run: its configuration, result and trained network.
struct RunState {
    cfg: ValidConfig,
    output: RunOutput,
    /// Epochs trained before this run resumed (0 for a fresh run).
    epochs_before: usize,
}

/// A run held by Python (`dyadsim.Run` wraps it).
#[pyclass(name = "_Run", module = "dyadsim._dyadsim")]
struct PyRun {
    state: Mutex<RunState>,
}

impl PyRun {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, RunState>> {
        self.state
            .lock()
            .map_err(|_| PyValueError::new_err("the run's state is unusable (a call panicked)"))
    }
}

/// A matrix and a vector handed to Python: `(x, y)` of a dataset split,
/// `(W, b)` of a crossbar.
type Pair<'py, T> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<T>>);

/// `(n_out, n_in)` C-order array of a column-major matrix.
fn matrix_to_numpy<'py>(py: Python<'py>, m: &Mat) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let row_major = m.transpose();
    PyArray1::from_slice(py, row_major.as_slice()).reshape([m.nrows(), m.ncols()])
}

#[pymethods]
impl PyRun {
    /// The result record as JSON (what `train --json` prints).
    fn result_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.lock()?.output.result)
            .map_err(|e| PyValueError::new_err(format!("serialising the result: {e}")))
    }

    /// The effective configuration as TOML (what `config.toml` holds).
    fn config_toml(&self) -> PyResult<String> {
        self.lock()?
            .cfg
            .raw()
            .to_toml_string()
            .map_err(|e| PyValueError::new_err(format!("{e:#}")))
    }

    /// Epochs trained in all, including those of the runs this one resumed.
    fn epochs_done(&self) -> PyResult<usize> {
        let s = self.lock()?;
        Ok(s.epochs_before + s.output.result.epochs.len())
    }

    /// The effective weights, `(n_out, n_in)` float32 arrays, `W_1` first.
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let s = self.lock()?;
        s.output
            .network
            .layers
            .iter()
            .map(|l| matrix_to_numpy(py, &l.weights()))
            .collect()
    }

    /// The effective biases, `(n_out,)` float32 arrays.
    fn biases<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArray1<f32>>>> {
        let s = self.lock()?;
        Ok(s.output
            .network
            .layers
            .iter()
            .map(|l| PyArray1::from_slice(py, l.bias().as_slice()))
            .collect())
    }

    /// Writes the run directory (`train --out DIR`), as one unit; an
    /// existing run directory only with `overwrite`.
    #[pyo3(signature = (dir, overwrite=false))]
    fn save(&self, dir: PathBuf, overwrite: bool) -> PyResult<()> {
        check_out_dir(&dir, overwrite, "Run.save").map_err(to_py_err)?;
        let s = self.lock()?;
        // The network is `Send` but not `Sync`: written with the GIL held
        // (a few files; the training calls are the long ones).
        save_run(&dir, &s.cfg, &s.output, s.epochs_before).map_err(to_py_err)
    }
}

/// Parameters handed in from Python: `[(W, b), …]`, `W` `(n_out, n_in)`.
fn parameters_from_py(init: &Bound<'_, PyList>) -> PyResult<Vec<(Mat, Vector)>> {
    let mut params = Vec::new();
    for (k, item) in init.iter().enumerate() {
        let (w, b): (PyReadonlyArray2<f32>, PyReadonlyArray1<f32>) = item.extract()?;
        let shape = w.shape().to_vec();
        let w = w
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("init layer {}: weights: {e}", k + 1)))?;
        let b = b
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("init layer {}: bias: {e}", k + 1)))?;
        params.push((
            Mat::from_row_slice(shape[0], shape[1], w),
            Vector::from_column_slice(b),
        ));
    }
    Ok(params)
}

/// Trains and returns the run; the GIL is released while it trains.
fn train_checked(
    py: Python<'_>,
    cfg: ValidConfig,
    progress: bool,
    start: Start,
) -> PyResult<PyRun> {
    let mut observer = PythonObserver::new(progress);
    let outcome = py.detach(|| -> anyhow::Result<(RunOutput, usize)> {
        let data = dyadsim::data::load(&cfg.raw().data)?;
        let (network, epochs_done) = match start {
            Start::Fresh => (build_network(&cfg)?, 0),
            Start::From(params) => (build_network_from(&cfg, params).context("init")?, 0),
            Start::Resume(dir) => {
                let mut network = build_network(&cfg)?;
                let done = restore_run(&dir, &mut network)?;
                (network, done)
            }
        };
        let settler = make_settler(&cfg)?;
        let mut observers: [&mut dyn Observer; 1] = [&mut observer];
        let output = run_continued(&cfg, &data, network, settler, &mut observers, epochs_done)?;
        Ok((output, epochs_done))
    });
    if progress && observer.live && observer.pending.is_some() {
        // Ctrl-C left the line of the epoch in progress open.
        write_stderr(py, "\n");
    }
    match outcome {
        Ok((output, epochs_before)) => Ok(PyRun {
            state: Mutex::new(RunState {
                cfg,
                output,
                epochs_before,
            }),
        }),
        Err(e) => match observer.pending.take() {
            Some(signal) if e.is::<Interrupted>() => Err(signal),
            _ => Err(to_py_err(e)),
        },
    }
}

/// Where a run's network starts.
enum Start {
    /// The seeded random initialisation.
    Fresh,
    /// Given parameters.
    From(Vec<(Mat, Vector)>),
    /// A run directory's saved state.
    Resume(PathBuf),
}

/// `dyadsim.train`: `kind` says what `config` is (`"dict"`, `"path"`,
/// `"toml"`); `init` optional `[(W, b), …]`.
#[pyfunction]
#[pyo3(signature = (kind, config, progress=false, init=None))]
fn train(
    py: Python<'_>,
    kind: &str,
    config: &Bound<'_, PyAny>,
    progress: bool,
    init: Option<&Bound<'_, PyList>>,
) -> PyResult<PyRun> {
    let cfg = resolve_config(kind, config)?.check().map_err(to_py_err)?;
    let start = match init {
        Some(list) => Start::From(parameters_from_py(list)?),
        None => Start::Fresh,
    };
    train_checked(py, cfg, progress, start)
}

/// The configuration of a run directory, optionally with more epochs.
fn run_dir_config(dir: &Path, epochs: Option<usize>) -> PyResult<ValidConfig> {
    let mut cfg = Config::from_file(&dir.join("config.toml")).map_err(to_py_err)?;
    if let Some(e) = epochs {
        cfg.training.epochs = e;
    }
    cfg.check().map_err(to_py_err)
}

/// `dyadsim.resume`: continues the run directory `dir` for `epochs` more
/// epochs (as `train --resume DIR --epochs N`).
#[pyfunction]
#[pyo3(signature = (dir, epochs, progress=false))]
fn resume(py: Python<'_>, dir: PathBuf, epochs: usize, progress: bool) -> PyResult<PyRun> {
    let cfg = run_dir_config(&dir, Some(epochs))?;
    train_checked(py, cfg, progress, Start::Resume(dir))
}

/// `dyadsim.load_run`: a run directory's configuration, result and
/// network (parameters, device and continuation state).
#[pyfunction]
fn load_run(py: Python<'_>, dir: PathBuf) -> PyResult<PyRun> {
    let cfg = run_dir_config(&dir, None)?;
    let state = py
        .detach(|| -> anyhow::Result<RunState> {
            let result: RunResult = read_json(&dir.join("result.json"), "result")?;
            let mut network = build_network(&cfg)?;
            let epochs_done = restore_run(&dir, &mut network)?;
            let epochs_before = epochs_done.saturating_sub(result.epochs.len());
            Ok(RunState {
                cfg: cfg.clone(),
                output: RunOutput { result, network },
                epochs_before,
            })
        })
        .map_err(to_py_err)?;
    Ok(PyRun {
        state: Mutex::new(state),
    })
}

/// `dyadsim.mnist` / `dyadsim.fashion_mnist`: `(x, y)` of one split.
#[pyfunction]
#[pyo3(signature = (dataset, split, data_dir=None))]
fn dataset<'py>(
    py: Python<'py>,
    dataset: &str,
    split: &str,
    data_dir: Option<PathBuf>,
) -> PyResult<Pair<'py, i64>> {
    let name = match dataset {
        "mnist" => DatasetName::Mnist,
        "fashion_mnist" => DatasetName::FashionMnist,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown dataset {other:?}: mnist or fashion_mnist"
            )))
        }
    };
    if !matches!(split, "train" | "validation" | "test") {
        return Err(PyValueError::new_err(format!(
            "split {split:?}: expected \"train\", \"validation\" or \"test\""
        )));
    }
    let config = DataConfig {
        dataset: name,
        data_dir,
        ..DataConfig::default()
    };
    let data = py
        .detach(|| dyadsim::data::load(&config))
        .map_err(to_py_err)?;
    let part = match split {
        "train" => &data.train,
        "validation" => &data.validation,
        _ => &data.test,
    };
    let x = PyArray1::from_slice(py, part.images.as_slice())
        .reshape([part.len(), part.input_width()])?;
    let y: Vec<i64> = part.labels.iter().map(|&l| l as i64).collect();
    Ok((x, PyArray1::from_vec(py, y)))
}

/// One weight layer on a crossbar, driven from NumPy (`dyadsim.Crossbar`
/// wraps it).
#[pyclass(name = "_Crossbar", module = "dyadsim._dyadsim")]
struct PyCrossbar {
    crossbar: Crossbar,
    /// Input and output of the last read (reused, so a read allocates
    /// only the returned array).
    input: Mat,
    output: Mat,
}

/// Copies a C-order `(B, n)` batch into `dst` as the column-major `n × B`
/// matrix it already is.
fn batch_into(
    dst: &mut Mat,
    src: &PyReadonlyArray2<'_, f32>,
    n: usize,
    what: &str,
) -> PyResult<()> {
    let shape = src.shape();
    if shape[1] != n {
        return Err(PyValueError::new_err(format!(
            "{what} has shape ({}, {}), expected (batch, {n})",
            shape[0], shape[1]
        )));
    }
    let data = src
        .as_slice()
        .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
    dyadsim::linalg::ensure_shape(dst, n, shape[0]);
    dst.as_mut_slice().copy_from_slice(data);
    Ok(())
}

impl PyCrossbar {
    /// A forward (`W x + b`) or transposed (`Wᵀ d`) read of a C-order
    /// `(B, n)` batch, returned as `(B, m)`.
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        batch: &PyReadonlyArray2<'py, f32>,
        transposed: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (n, what) = if transposed {
            (self.crossbar.n_out(), "d")
        } else {
            (self.crossbar.n_in(), "x")
        };
        batch_into(&mut self.input, batch, n, what)?;
        let Self {
            crossbar,
            input,
            output,
        } = self;
        py.detach(|| {
            if transposed {
                crossbar.transposed(input, output)
            } else {
                crossbar.forward(input, output)
            }
        });
        PyArray1::from_slice(py, output.as_slice()).reshape([output.ncols(), output.nrows()])
    }
}

#[pymethods]
impl PyCrossbar {
    /// `rows × cols` crossbar with the settings (dict of `crossbar.*`
    /// keys, `device` among them), device overrides (dict of `device.*`
    /// keys) and optional initial `weights` `(rows, cols)` and `bias`.
    #[new]
    #[pyo3(signature = (rows, cols, settings, device_params, seed, weights=None, bias=None))]
    fn new(
        rows: usize,
        cols: usize,
        settings: &Bound<'_, PyAny>,
        device_params: &Bound<'_, PyAny>,
        seed: u64,
        weights: Option<PyReadonlyArray2<'_, f32>>,
        bias: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<Self> {
        if rows == 0 || cols == 0 {
            return Err(PyValueError::new_err(format!(
                "a crossbar needs rows ≥ 1 and cols ≥ 1, got {rows} × {cols}"
            )));
        }
        let mut table = match toml::Value::try_from(CrossbarConfig::default()) {
            Ok(toml::Value::Table(t)) => t,
            _ => {
                return Err(PyValueError::new_err(
                    "the default crossbar settings do not serialise",
                ))
            }
        };
        for (key, value) in py_to_table(settings, "crossbar settings")? {
            table.insert(key, value);
        }
        let config: CrossbarConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    PyValueError::new_err(format!("invalid crossbar settings: {e}"))
                })?;
        let overrides = py_to_table(device_params, "device_params")?;
        let w = match weights {
            Some(w) => weights_from(&w, rows, cols)?,
            None => default_weights(rows, cols, seed),
        };
        let b = match bias {
            Some(b) => bias_from(&b, rows)?,
            None => Vector::zeros(rows),
        };
        let crossbar =
            Crossbar::with_parameters(&config, &overrides, &w, &b, seed).map_err(to_py_err)?;
        Ok(Self {
            crossbar,
            input: Mat::zeros(0, 0),
            output: Mat::zeros(0, 0),
        })
    }

    /// Rows (outputs).
    #[getter]
    fn rows(&self) -> usize {
        self.crossbar.n_out()
    }

    /// Columns (inputs).
    #[getter]
    fn cols(&self) -> usize {
        self.crossbar.n_in()
    }

    /// The crossbar settings in effect (`w_scale` resolved) as JSON.
    fn settings_json(&self) -> PyResult<String> {
        serde_json::to_string(self.crossbar.config())
            .map_err(|e| PyValueError::new_err(format!("serialising settings: {e}")))
    }

    /// Forward read `W x + b` of a `(B, cols)` batch → `(B, rows)`.
    fn forward<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.read(py, &x, false)
    }

    /// Transposed read `Wᵀ d` of a `(B, rows)` batch → `(B, cols)`.
    fn transposed<'py>(
        &mut self,
        py: Python<'py>,
        d: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.read(py, &d, true)
    }

    /// One learning step for the gradient `scale · leftᵀ · right` (left
    /// `(B, rows)`, right `(B, cols)`), written by the controller.
    fn update(
        &mut self,
        py: Python<'_>,
        left: PyReadonlyArray2<'_, f32>,
        right: PyReadonlyArray2<'_, f32>,
        scale: f32,
    ) -> PyResult<()> {
        if !scale.is_finite() {
            return Err(PyValueError::new_err(format!(
                "scale must be finite, got {scale}"
            )));
        }
        if left.shape()[0] != right.shape()[0] {
            return Err(PyValueError::new_err(format!(
                "left has {} samples, right {}: both are (batch, ·) with the same batch",
                left.shape()[0],
                right.shape()[0]
            )));
        }
        let mut l = Mat::zeros(0, 0);
        let mut r = Mat::zeros(0, 0);
        batch_into(&mut l, &left, self.crossbar.n_out(), "left")?;
        batch_into(&mut r, &right, self.crossbar.n_in(), "right")?;
        let grad = OuterProductGradient {
            left: l,
            right: r,
            scale,
        };
        let crossbar = &mut self.crossbar;
        py.detach(|| crossbar.apply_gradient(&grad));
        Ok(())
    }

    /// Programs the devices towards `weights` `(rows, cols)` and `bias`.
    fn set_weights(
        &mut self,
        weights: PyReadonlyArray2<'_, f32>,
        bias: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<()> {
        let (rows, cols) = (self.crossbar.n_out(), self.crossbar.n_in());
        let w = weights_from(&weights, rows, cols)?;
        let b = match bias {
            Some(b) => bias_from(&b, rows)?,
            None => self.crossbar.bias(),
        };
        self.crossbar.set_parameters(&w, &b);
        Ok(())
    }

    /// The weights `(rows, cols)` and bias `(rows,)` the devices encode.
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Pair<'py, f32>> {
        Ok((
            matrix_to_numpy(py, &self.crossbar.weights())?,
            PyArray1::from_slice(py, self.crossbar.bias().as_slice()),
        ))
    }

    /// Hardware statistics (pulses, wear, reads, converter events) as JSON.
    fn hardware_stats_json(&self) -> PyResult<String> {
        let stats = self.crossbar.hardware_stats().unwrap_or_default();
        serde_json::to_string(&stats)
            .map_err(|e| PyValueError::new_err(format!("serialising statistics: {e}")))
    }

    /// Lets `seconds` of physical time pass without writing.
    fn advance_time(&mut self, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "seconds must be finite and ≥ 0, got {seconds}"
            )));
        }
        self.crossbar.advance_time(seconds);
        Ok(())
    }
}

/// A `(rows, cols)` C-order weight array as a matrix.
fn weights_from(w: &PyReadonlyArray2<'_, f32>, rows: usize, cols: usize) -> PyResult<Mat> {
    if w.shape() != [rows, cols] {
        return Err(PyValueError::new_err(format!(
            "weights have shape {:?}, expected ({rows}, {cols})",
            w.shape()
        )));
    }
    let data = w
        .as_slice()
        .map_err(|e| PyValueError::new_err(format!("weights: {e}")))?;
    Ok(Mat::from_row_slice(rows, cols, data))
}

/// A bias array of `rows` entries as a vector.
fn bias_from(b: &PyReadonlyArray1<'_, f32>, rows: usize) -> PyResult<Vector> {
    if b.len() != rows {
        return Err(PyValueError::new_err(format!(
            "bias has {} entries, expected {rows}",
            b.len()
        )));
    }
    let data = b
        .as_slice()
        .map_err(|e| PyValueError::new_err(format!("bias: {e}")))?;
    Ok(Vector::from_column_slice(data))
}

/// The weights of a crossbar built without any: W ~ N(0, 1/cols) from
/// `seed` (the fan-in scaling of the training runs' initialisation).
fn default_weights(rows: usize, cols: usize, seed: u64) -> Mat {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0f32, 1.0 / (cols as f32).sqrt())
        .unwrap_or_else(|_| rand_distr::Normal::new(0.0, 1.0).expect("unit normal"));
    Mat::from_fn(rows, cols, |_, _| normal.sample(&mut rng))
}

/// `dyadsim.sweep`: runs (or continues) the sweep `spec` into `out`;
/// returns the summary as JSON.
#[pyfunction]
#[pyo3(signature = (spec, out, jobs=None, shard=None, retry_failed=false, limit=None))]
fn sweep(
    py: Python<'_>,
    spec: PathBuf,
    out: PathBuf,
    jobs: Option<usize>,
    shard: Option<&str>,
    retry_failed: bool,
    limit: Option<usize>,
) -> PyResult<String> {
    if jobs == Some(0) {
        return Err(PyValueError::new_err(
            "jobs must be ≥ 1 (or None: one per core)",
        ));
    }
    let shard: Shard = match shard {
        Some(s) => s
            .parse()
            .map_err(|e: anyhow::Error| PyValueError::new_err(format!("shard: {e:#}")))?,
        None => Shard::default(),
    };
    let request = SweepRequest {
        spec,
        out,
        shard,
        jobs,
        retry_failed,
        limit,
    };
    let plan = py.detach(|| request.plan()).map_err(to_py_err)?;
    for w in &plan.warnings {
        write_stderr(py, &format!("warning: {w}\n"));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let matmul_env = std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    let threads = ThreadPlan::for_cores(cores, plan.to_run, jobs, matmul_env);
    let stop = AtomicBool::new(false);
    let runner = TrainingRunner::default();
    let mut signal: Option<PyErr> = None;
    let outcome = py.detach(|| {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                request.run(
                    &plan,
                    threads,
                    |job| {
                        if stop.load(Ordering::Relaxed) {
                            return Err(Interrupted.into());
                        }
                        let mut observer = PythonObserver::stopped_by(&stop);
                        runner.run_observed(job, &mut [&mut observer])
                    },
                    |_| {},
                )
            });
            while !worker.is_finished() {
                std::thread::sleep(SIGNAL_POLL);
                if signal.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        signal = Some(e);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            worker
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the sweep thread panicked")))
        })
    });
    let summary = outcome.map_err(to_py_err)?;
    if let Some(e) = signal {
        return Err(e);
    }
    serde_json::to_string(&summary)
        .map_err(|e| PyValueError::new_err(format!("serialising the summary: {e}")))
}

/// `dyadsim.report`: figures, Markdown and HTML report of `results` into
/// `out`; returns the summary (paths) as JSON.
#[pyfunction]
#[pyo3(signature = (results, out, technology=None, title=None, require_accuracy=None, require_energy=None, require_lifetime=None))]
#[allow(clippy::too_many_arguments)]
fn report(
    py: Python<'_>,
    results: PathBuf,
    out: PathBuf,
    technology: Option<PathBuf>,
    title: Option<String>,
    require_accuracy: Option<f64>,
    require_energy: Option<f64>,
    require_lifetime: Option<f64>,
) -> PyResult<String> {
    let requirements = dyadsim::report::feasibility::Requirements {
        accuracy_min: require_accuracy,
        energy_per_sample_max_j: require_energy,
        lifetime_min_epochs: require_lifetime,
    };
    requirements.validate().map_err(to_py_err)?;
    let options = dyadsim::report::ReportOptions {
        out,
        technology,
        requirements,
        title,
    };
    let summary = py
        .detach(|| dyadsim::report::generate(&results, &options))
        .map_err(to_py_err)?;
    let json = serde_json::json!({
        "runs": summary.runs,
        "markdown": summary.markdown,
        "html": summary.html,
        "figures": summary.figures,
    });
    Ok(json.to_string())
}

/// `dyadsim.devices`: the shipped device models' names.
#[pyfunction]
fn devices() -> Vec<&'static str> {
    builtin_names()
}

/// `dyadsim.device`: one model (shipped name or TOML path) with overrides,
/// as JSON: name, description, origin, states, conductance range and the
/// parameters as written in its file (with the overrides applied).
#[pyfunction]
#[pyo3(signature = (name, overrides))]
fn device(name: &str, overrides: &Bound<'_, PyAny>) -> PyResult<String> {
    let overrides = py_to_table(overrides, "device overrides")?;
    let model = DeviceModel::load(name, &overrides).map_err(to_py_err)?;
    let (origin, text) = DeviceModel::source_text(name).map_err(to_py_err)?;
    let mut params: toml::Table = toml::from_str(&text)
        .with_context(|| format!("device model file {origin}"))
        .map_err(to_py_err)?;
    for (k, v) in overrides {
        params.insert(k, v);
    }
    let json = serde_json::json!({
        "name": model.name,
        "description": model.description,
        "origin": origin,
        "states": model.states(),
        "g_min_us": model.conductance.g_min_us,
        "g_max_us": model.conductance.g_max_us,
        "summary": model.summary_line(),
        "params": params,
    });
    Ok(json.to_string())
}

/// `dyadsim.fit_device`: `dyadsim devices fit` — a model file fitted to a
/// pulse trace, written to `out`; the fit as JSON (the CLI's `--json`).
#[pyfunction]
#[pyo3(signature = (trace, response, out, points=None, name=None, bootstrap=200, seed=1))]
#[allow(clippy::too_many_arguments)]
fn fit_device(
    trace: PathBuf,
    response: &str,
    out: PathBuf,
    points: Option<usize>,
    name: Option<String>,
    bootstrap: usize,
    seed: u64,
) -> PyResult<String> {
    use dyadsim::devices::fit::{fit_file, FitRequest};
    let fitted = fit_file(&FitRequest {
        trace,
        response: response.to_string(),
        points,
        out: out.clone(),
        name,
        bootstrap,
        seed,
    })
    .map_err(to_py_err)?;
    dyadsim::experiment::run_dir::write_atomic(&out, fitted.text.as_bytes())
        .with_context(|| format!("writing the fitted model {}", out.display()))
        .map_err(to_py_err)?;
    Ok(fitted.json.to_string())
}

/// The version of the Rust crate the extension was built from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The extension module.
#[pymodule]
fn _dyadsim(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRun>()?;
    m.add_class::<PyCrossbar>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(resume, m)?)?;
    m.add_function(wrap_pyfunction!(load_run, m)?)?;
    m.add_function(wrap_pyfunction!(dataset, m)?)?;
    m.add_function(wrap_pyfunction!(sweep, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(device, m)?)?;
    m.add_function(wrap_pyfunction!(fit_device, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
