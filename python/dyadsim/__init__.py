"""dyadsim — analog-crossbar hardware model and on-chip training emulator.

The Python face of the Rust library: train a network with dual propagation
(DP, DP⊤) or back-propagation on a digital or crossbar substrate, run
resumable sweeps, drive one crossbar array from your own NumPy loop, and
read results as NumPy arrays and pandas DataFrames.

>>> import dyadsim
>>> run = dyadsim.train({"network": {"arch": "784-64-10"},
...                      "training": {"epochs": 1},
...                      "data": {"train_size": 2000, "test_size": 500}})
>>> run.result["test_accuracy"]          # doctest: +SKIP
0.87

Configurations are the TOML configuration's sections (see the README's
configuration reference): a dict, a path to a TOML file, or TOML text.
Every long call releases the GIL and can be interrupted with Ctrl-C
(``KeyboardInterrupt``; nothing half-written). Bad configurations raise
``ValueError`` with the message the command line prints; files that cannot
be read or written raise ``OSError``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _dyadsim

__all__ = [
    "Crossbar",
    "Device",
    "Run",
    "device",
    "fit_device",
    "devices",
    "fashion_mnist",
    "load_results",
    "load_run",
    "mnist",
    "report",
    "resume",
    "sweep",
    "train",
    "__version__",
]

__version__ = _dyadsim.version()

PathLike = Union[str, "os.PathLike[str]"]
ConfigLike = Union[Mapping[str, Any], PathLike]


def _config_argument(config: ConfigLike) -> Tuple[str, Any]:
    """What ``config`` is: ("dict", dict), ("path", str) or ("toml", str)."""
    if isinstance(config, Mapping):
        return "dict", dict(config)
    if isinstance(config, os.PathLike):
        return "path", os.fspath(config)
    if isinstance(config, str):
        # TOML text has an assignment or a table header; a path has neither
        # (and a missing file is reported as the CLI's --config would).
        if "\n" in config or "=" in config or config.lstrip().startswith("["):
            return "toml", config
        return "path", config
    raise TypeError(
        "config must be a dict of configuration sections, a path to a TOML file "
        f"or TOML text, not {type(config).__name__}"
    )


def _layers_argument(init: Any) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``init`` as ``[(W, b), …]`` of C-order float32 arrays.

    Accepts a list of ``(W, b)`` pairs, a dict / ``np.load`` result with
    ``W1, b1, W2, b2, …``, or a path to such an ``.npz`` file.
    """
    if isinstance(init, (str, os.PathLike)):
        with np.load(os.fspath(init)) as npz:
            return _layers_argument(dict(npz))
    if isinstance(init, Mapping):
        layers = []
        k = 1
        while f"W{k}" in init:
            if f"b{k}" not in init:
                raise ValueError(f"init has W{k} but no b{k} (each layer k needs W{{k}} and b{{k}})")
            layers.append((init[f"W{k}"], init[f"b{k}"]))
            k += 1
        if not layers:
            raise ValueError(
                f"init has no W1 (keys: {', '.join(map(str, init)) or 'none'}); "
                "expected W1, b1, W2, b2, … with W{k} of shape (outputs, inputs)"
            )
        init = layers
    out = []
    for k, pair in enumerate(init, start=1):
        try:
            w, b = pair
        except (TypeError, ValueError):
            raise ValueError(f"init layer {k}: expected a (weights, bias) pair") from None
        w = np.ascontiguousarray(w, dtype=np.float32)
        b = np.ascontiguousarray(b, dtype=np.float32)
        if w.ndim != 2 or b.ndim != 1:
            raise ValueError(
                f"init layer {k}: weights must be 2-D (outputs, inputs) and bias 1-D, "
                f"got shapes {w.shape} and {b.shape}"
            )
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"init layer {k}: weights and bias must be finite")
        out.append((w, b))
    return out


class Run:
    """A trained (or loaded) run: result, configuration and parameters.

    ``result`` is the dict ``dyadsim train --json`` prints; ``weights`` and
    ``biases`` are lists of float32 arrays, weights shaped ``(n_out, n_in)``
    row-major, so that ``relu(x @ W.T + b)`` is a hidden layer of the
    network's forward pass (the output layer has no activation).
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._result: Optional[Dict[str, Any]] = None

    @property
    def result(self) -> Dict[str, Any]:
        """The result record (status, accuracies, per-epoch records, hardware statistics)."""
        if self._result is None:
            self._result = json.loads(self._handle.result_json())
        return self._result

    @property
    def config(self) -> Dict[str, Any]:
        """The effective configuration (every field), as ``config.toml`` holds it."""
        return _toml_loads(self._handle.config_toml())

    @property
    def config_toml(self) -> str:
        """The effective configuration as TOML text."""
        return self._handle.config_toml()

    @property
    def weights(self) -> List[np.ndarray]:
        """Weights ``W_k``, float32 ``(n_out, n_in)`` row-major, ``W_1`` first."""
        return self._handle.weights()

    @property
    def biases(self) -> List[np.ndarray]:
        """Biases ``b_k``, float32 ``(n_out,)``."""
        return self._handle.biases()

    @property
    def epochs_done(self) -> int:
        """Epochs trained in all, including those of runs this one resumed."""
        return self._handle.epochs_done()

    def save(self, dir: PathLike, *, overwrite: bool = False) -> None:
        """Writes the run directory, as ``dyadsim train --out DIR`` does.

        The directory is written as one unit (a crash leaves the old one or
        the new one). An existing run directory is replaced only with
        ``overwrite=True``; a non-empty directory that holds no run never.
        """
        self._handle.save(os.fspath(dir), bool(overwrite))

    def __repr__(self) -> str:
        r = self.result
        acc = r.get("test_accuracy")
        acc_text = "n/a" if acc is None else f"{100 * acc:.2f} %"
        return f"<dyadsim.Run status={r.get('status')} test_accuracy={acc_text} epochs={self.epochs_done}>"


def _toml_loads(text: str) -> Dict[str, Any]:
    try:
        import tomllib  # Python ≥ 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.9, 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "reading the configuration as a dict needs Python ≥ 3.11 or the package tomli "
                "(pip install tomli); Run.config_toml has the TOML text"
            ) from None
    return tomllib.loads(text)


def train(config: ConfigLike, *, progress: bool = False, init: Any = None) -> Run:
    """Trains one run and returns it.

    ``config``: a dict with the TOML configuration's sections
    (``{"network": {"arch": "784-64-10"}, "training": {"epochs": 1}}``), a
    path to a TOML file, or TOML text; every field has a default.
    ``progress``: a status line per epoch on ``sys.stderr``.
    ``init``: start from given parameters instead of the seeded random
    initialisation — ``[(W1, b1), (W2, b2), …]``, a dict with ``W1, b1, …``
    or a path to an ``.npz`` file (``W{k}`` shaped ``(outputs, inputs)``, as
    a PyTorch ``nn.Linear`` weight).
    """
    kind, value = _config_argument(config)
    layers = None if init is None else _layers_argument(init)
    return Run(_dyadsim.train(kind, value, progress, layers))


def resume(dir: PathLike, epochs: int, *, progress: bool = False) -> Run:
    """Continues the run directory ``dir`` for ``epochs`` more epochs.

    Exactly as ``dyadsim train --resume DIR --epochs N``: the saved
    parameters, device state and random streams continue, so the result
    equals that of the uninterrupted run. The returned run is not saved;
    call ``Run.save``.
    """
    return Run(_dyadsim.resume(os.fspath(dir), int(epochs), progress))


def load_run(dir: PathLike) -> Run:
    """Reads a run directory written by ``train --out`` or ``Run.save``."""
    return Run(_dyadsim.load_run(os.fspath(dir)))


def mnist(split: str = "train") -> Tuple[np.ndarray, np.ndarray]:
    """MNIST (shipped inside the package) as ``(x, y)``.

    ``x``: float32 ``(N, 784)`` in [0, 1]; ``y``: int64 labels. ``split`` is
    ``"train"`` (the first 50,000 training images), ``"validation"`` (the
    last 10,000) or ``"test"`` (10,000), as the command line splits them.
    """
    return _dyadsim.dataset("mnist", split, None)


def fashion_mnist(split: str = "train", data_dir: Optional[PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as ``(x, y)``, split as :func:`mnist`.

    Looked for in ``data_dir``, then where Debian's ``dataset-fashion-mnist``
    installs it; a missing dataset raises ``OSError`` saying how to get it.
    """
    return _dyadsim.dataset(
        "fashion_mnist", split, None if data_dir is None else os.fspath(data_dir)
    )


class Crossbar:
    """One weight layer on a crossbar, driven from NumPy.

    ``Crossbar(rows, cols, device="reram_es", *, seed=0, weights=None,
    bias=None, device_params=None, **crossbar_settings)`` builds a
    ``rows × cols`` array (plus its bias column) of the device model
    ``device`` (a shipped name or a path to a model TOML file).
    ``crossbar_settings`` are the ``[crossbar]`` configuration keys
    (``lr``, ``write``, ``mapping``, ``adc_bits``, …), ``device_params``
    overrides of the device model's keys (``{"read_noise": 0.05}``).
    Without ``weights`` the devices are programmed to W ~ N(0, 1/cols)
    drawn from ``seed``, which also seeds device variation and every noise
    stream, so the same arguments give the same reads bit for bit.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        device: str = "reram_es",
        *,
        seed: int = 0,
        weights: Optional[np.ndarray] = None,
        bias: Optional[np.ndarray] = None,
        device_params: Optional[Mapping[str, Any]] = None,
        **crossbar_settings: Any,
    ) -> None:
        settings = dict(crossbar_settings)
        if "device" in settings:
            raise TypeError("give the device model as the `device` argument, not as a setting")
        settings["device"] = os.fspath(device)
        self._xb = _dyadsim._Crossbar(
            int(rows),
            int(cols),
            settings,
            dict(device_params or {}),
            int(seed),
            None if weights is None else np.ascontiguousarray(weights, dtype=np.float32),
            None if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
        )

    @property
    def rows(self) -> int:
        """Outputs (rows of W)."""
        return self._xb.rows

    @property
    def cols(self) -> int:
        """Inputs (columns of W)."""
        return self._xb.cols

    @property
    def settings(self) -> Dict[str, Any]:
        """The ``[crossbar]`` settings in effect (``w_scale`` resolved)."""
        return json.loads(self._xb.settings_json())

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Forward read ``x @ W.T + b`` through the periphery: ``(B, cols)`` → ``(B, rows)``."""
        return self._xb.forward(_batch(x, "x"))

    def transposed(self, d: np.ndarray) -> np.ndarray:
        """Transposed read ``d @ W`` (no bias): ``(B, rows)`` → ``(B, cols)``."""
        return self._xb.transposed(_batch(d, "d"))

    def update(self, left: np.ndarray, right: np.ndarray, scale: float = 1.0) -> None:
        """One learning step for the gradient ``∇W = scale · leftᵀ · right``.

        ``left`` ``(B, rows)``, ``right`` ``(B, cols)``; the bias gradient is
        ``scale · left.sum(0)``. The controller writes the descent step
        ``W ← W − lr · ∇W`` (``lr`` = the ``lr`` setting) as device pulses —
        the outer-product form every learning rule uses: for DP/DP⊤
        ``left = δ_k``, ``right = s̄_{k−1}``, ``scale = −1/(Bβ)``; for
        back-propagation ``left`` is the error, ``scale = 1/B``.
        """
        self._xb.update(_batch(left, "left"), _batch(right, "right"), float(scale))

    def set_weights(self, weights: np.ndarray, bias: Optional[np.ndarray] = None) -> None:
        """Programs the devices towards ``weights`` ``(rows, cols)`` (and ``bias``; kept if None)."""
        self._xb.set_weights(
            np.ascontiguousarray(weights, dtype=np.float32),
            None if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
        )

    def weights(self) -> Tuple[np.ndarray, np.ndarray]:
        """The weights ``(rows, cols)`` and bias ``(rows,)`` the conductances encode."""
        return self._xb.weights()

    def hardware_stats(self) -> Dict[str, Any]:
        """Pulses, wear, stuck devices, reads, converter events and conductance range."""
        return json.loads(self._xb.hardware_stats_json())

    def advance_time(self, seconds: float) -> None:
        """Lets ``seconds`` of physical time pass without writing (retention, drift)."""
        self._xb.advance_time(float(seconds))

    def __repr__(self) -> str:
        s = self.settings
        return f"<dyadsim.Crossbar {self.rows}×{self.cols} device={s.get('device')!r} write={s.get('write')!r}>"


def _batch(a: np.ndarray, name: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {a.shape}")
    return a


def sweep(
    spec: PathLike,
    out: PathLike,
    *,
    jobs: Optional[int] = None,
    shard: Optional[str] = None,
    retry_failed: bool = False,
    limit: Optional[int] = None,
) -> Dict[str, int]:
    """Runs (or continues) a sweep, as ``dyadsim sweep SPEC --out OUT``.

    Finished jobs are skipped, so calling it again resumes. ``jobs``: jobs
    at once (default one per core); ``shard``: ``"i/n"`` for part i of n.
    Returns the summary (``total``, ``skipped``, ``ran``, ``ok``,
    ``diverged``, ``failed``, ``interrupted``). On Ctrl-C the running jobs
    stop, are not recorded, and ``KeyboardInterrupt`` is raised.
    """
    summary = _dyadsim.sweep(
        os.fspath(spec), os.fspath(out), jobs, shard, bool(retry_failed), limit
    )
    return json.loads(summary)


def report(
    results: PathLike,
    out: PathLike,
    *,
    technology: Optional[PathLike] = None,
    title: Optional[str] = None,
    require_accuracy: Optional[float] = None,
    require_energy: Optional[float] = None,
    require_lifetime: Optional[float] = None,
) -> Dict[str, Any]:
    """Figures, ``report.md`` and ``report.html`` (with the feasibility section).

    ``results``: a results ``.jsonl`` file, a sweep directory or a run
    directory — as ``dyadsim report``. Returns the paths written.
    """
    summary = _dyadsim.report(
        os.fspath(results),
        os.fspath(out),
        None if technology is None else os.fspath(technology),
        title,
        require_accuracy,
        require_energy,
        require_lifetime,
    )
    return json.loads(summary)


_RESULT_OBJECTS = ("epochs", "hardware", "diverged_at")


def _read_records(path: Path) -> List[Dict[str, Any]]:
    """Job records of a results file; unreadable lines are skipped with a warning."""
    records = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                records.append(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                warnings.warn(f"{path}:{n}: skipped an unreadable line ({e})", stacklevel=3)
    return records


def _result_files(path: Path) -> List[Path]:
    if path.is_file():
        return [path]
    if (path / "result.json").is_file():
        return [path / "result.json"]
    merged = path / "results.jsonl"
    if merged.is_file():
        return [merged]
    shards = sorted(path.glob("results*.jsonl"))
    if shards:
        return shards
    raise FileNotFoundError(
        f"{path}: no results.jsonl, results.shard-*.jsonl or result.json "
        "(expected a results file, a sweep output directory or a run directory)"
    )


def load_results(path_or_dir: PathLike):
    """Results as a pandas DataFrame, one row per job.

    ``path_or_dir``: a sweep results file (``.jsonl``), a sweep output
    directory (its ``results.jsonl`` or shard files), or a run directory
    (``result.json``: one row). Columns: ``job``, ``hash``, ``status``,
    ``error``, ``wall_seconds``, one column per sweep axis (named by its
    path, e.g. ``learning.alpha``), every scalar field of the result
    (``test_accuracy``, ``samples_per_second``, …) and the nested objects
    ``epochs``, ``hardware``, ``diverged_at`` and ``config`` as dict/list
    columns. Where a job was recorded more than once (a retried failure),
    its last record counts, as for ``dyadsim report``.
    """
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "load_results returns a pandas DataFrame: pip install pandas "
            "(or install dyadsim with the extra: pip install '.[pandas]')"
        ) from None
    path = Path(os.fspath(path_or_dir))
    files = _result_files(path)
    if files[0].name == "result.json":
        result = json.loads(files[0].read_text(encoding="utf-8"))
        config = {}
        if (path / "config.toml").is_file():
            config = _toml_loads((path / "config.toml").read_text(encoding="utf-8"))
        records = [{"job": 0, "hash": None, "axes": {}, "status": result.get("status"),
                    "error": None, "config": config, "result": result,
                    "wall_seconds": result.get("wall_seconds")}]
    else:
        latest: Dict[str, Dict[str, Any]] = {}
        for f in files:
            for r in _read_records(f):
                latest[r.get("hash")] = r
        records = sorted(latest.values(), key=lambda r: r.get("job", 0))
    axis_names: List[str] = []
    for r in records:
        for a in r.get("axis_order") or sorted(r.get("axes") or {}):
            if a not in axis_names:
                axis_names.append(a)
    rows = []
    for r in records:
        row: Dict[str, Any] = {
            "job": r.get("job"),
            "hash": r.get("hash"),
            "status": r.get("status"),
            "error": r.get("error"),
            "wall_seconds": r.get("wall_seconds"),
        }
        axes = r.get("axes") or {}
        for a in axis_names:
            row[a] = axes.get(a)
        result = r.get("result") or {}
        for k, v in result.items():
            if k in _RESULT_OBJECTS or isinstance(v, (dict, list)):
                continue
            row.setdefault(k, v)
        for k in _RESULT_OBJECTS:
            row[k] = result.get(k)
        row["config"] = r.get("config")
        rows.append(row)
    return pd.DataFrame(rows)


class Device:
    """A device model: its parameters as written in its model file."""

    def __init__(self, info: Dict[str, Any]) -> None:
        self.name: str = info["name"]
        self.description: str = info["description"]
        self.origin: str = info["origin"]
        self.states: float = info["states"]
        self.g_min_us: float = info["g_min_us"]
        self.g_max_us: float = info["g_max_us"]
        self.summary: str = info["summary"]
        self.params: Dict[str, Any] = info["params"]

    def __repr__(self) -> str:
        return f"<dyadsim.Device {self.summary}>"


def devices() -> List[str]:
    """Names of the shipped device models (``dyadsim devices``)."""
    return list(_dyadsim.devices())


def device(name: str, **overrides: Any) -> Device:
    """One device model (shipped name or TOML path), with key overrides.

    ``device("reram_es").params`` is the model file's keys as a dict; the
    model is loaded and checked as a run would, so a bad override raises
    ``ValueError``.
    """
    return Device(json.loads(_dyadsim.device(os.fspath(name), overrides)))


def fit_device(
    trace: PathLike,
    response: str,
    out: PathLike,
    *,
    points: Optional[int] = None,
    name: Optional[str] = None,
    bootstrap: int = 200,
    seed: int = 1,
) -> Dict[str, Any]:
    """Fit a device model to a pulse trace (``dyadsim devices fit``).

    ``trace`` is a CSV file with the columns ``device, pulse, direction,
    conductance_us`` (for each device its up pulses, then its down pulses,
    the conductance read after each; a lab's measurement or
    ``dyadsim devices trace``); ``response`` is ``"linear"``,
    ``"soft_bounds"``, ``"exponential"`` or ``"piecewise"`` (with
    ``points`` table points, default 16). The model file is written to
    ``out`` (``.toml``; it loads with ``device(out)`` and as a run's
    ``crossbar.device``). Returns the fit: ``parameters`` (each ``key``,
    ``value``, ``std_error``), ``residual_rms``, ``noise_rms``,
    ``devices``, ``stuck_devices``, ``steps``, ``warnings``. A bad trace
    raises ``ValueError`` naming the row and column; a missing file
    ``OSError``.
    """
    return json.loads(
        _dyadsim.fit_device(os.fspath(trace), response, os.fspath(out), points, name, bootstrap, seed)
    )
