# Type stubs of the Python package `dyadsim` (the documentation is in the
# docstrings of `__init__.py` and in docs/python.md).
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, os.PathLike[str]]
ConfigLike = Union[Mapping[str, Any], PathLike]
InitLike = Union[
    Sequence[Tuple[npt.ArrayLike, npt.ArrayLike]],
    Mapping[str, npt.ArrayLike],
    PathLike,
]

class Run:
    @property
    def result(self) -> Dict[str, Any]: ...
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def config_toml(self) -> str: ...
    @property
    def weights(self) -> List[npt.NDArray[np.float32]]: ...
    @property
    def biases(self) -> List[npt.NDArray[np.float32]]: ...
    @property
    def epochs_done(self) -> int: ...
    def save(self, dir: PathLike, *, overwrite: bool = ...) -> None: ...

def train(config: ConfigLike, *, progress: bool = ..., init: Optional[InitLike] = ...) -> Run: ...
def resume(dir: PathLike, epochs: int, *, progress: bool = ...) -> Run: ...
def load_run(dir: PathLike) -> Run: ...
def mnist(split: str = ...) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def fashion_mnist(
    split: str = ..., data_dir: Optional[PathLike] = ...
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

class Crossbar:
    def __init__(
        self,
        rows: int,
        cols: int,
        device: str = ...,
        *,
        seed: int = ...,
        weights: Optional[npt.ArrayLike] = ...,
        bias: Optional[npt.ArrayLike] = ...,
        device_params: Optional[Mapping[str, Any]] = ...,
        **crossbar_settings: Any,
    ) -> None: ...
    @property
    def rows(self) -> int: ...
    @property
    def cols(self) -> int: ...
    @property
    def settings(self) -> Dict[str, Any]: ...
    def forward(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
    def transposed(self, d: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
    def update(self, left: npt.ArrayLike, right: npt.ArrayLike, scale: float = ...) -> None: ...
    def set_weights(self, weights: npt.ArrayLike, bias: Optional[npt.ArrayLike] = ...) -> None: ...
    def weights(self) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def hardware_stats(self) -> Dict[str, Any]: ...
    def advance_time(self, seconds: float) -> None: ...

def sweep(
    spec: PathLike,
    out: PathLike,
    *,
    jobs: Optional[int] = ...,
    shard: Optional[str] = ...,
    retry_failed: bool = ...,
    limit: Optional[int] = ...,
) -> Dict[str, int]: ...
def report(
    results: PathLike,
    out: PathLike,
    *,
    technology: Optional[PathLike] = ...,
    title: Optional[str] = ...,
    require_accuracy: Optional[float] = ...,
    require_energy: Optional[float] = ...,
    require_lifetime: Optional[float] = ...,
) -> Dict[str, Any]: ...
def load_results(path_or_dir: PathLike) -> Any: ...  # pandas.DataFrame

class Device:
    name: str
    description: str
    origin: str
    states: float
    g_min_us: float
    g_max_us: float
    summary: str
    params: Dict[str, Any]

def devices() -> List[str]: ...
def device(name: str, **overrides: Any) -> Device: ...
def fit_device(
    trace: PathLike,
    response: str,
    out: PathLike,
    *,
    points: Optional[int] = ...,
    name: Optional[str] = ...,
    bootstrap: int = ...,
    seed: int = ...,
) -> Dict[str, Any]: ...
