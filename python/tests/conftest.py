"""Shared fixtures of the Python tests: the repository, the `dyadsim` CLI
binary (the reference the binding is compared with) and small configs."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A run small enough for a test: 2,000 training and 500 test images.
SMALL = {
    "network": {"arch": "784-32-10"},
    "training": {"epochs": 1, "batch": 50},
    "data": {"train_size": 2000, "validation_size": 0, "test_size": 500},
    "seed": 3,
}

SMALL_TOML = """
seed = 3
[network]
arch = "784-32-10"
[training]
epochs = 1
batch = 50
[data]
train_size = 2000
validation_size = 0
test_size = 500
"""

# Fields that measure time, not behaviour.
TIMING = {"samples_per_second", "wall_seconds"}


def without_timing(result):
    """The result record without its wall-clock fields (also per epoch)."""
    r = {k: v for k, v in result.items() if k not in TIMING}
    r["epochs"] = [{k: v for k, v in e.items() if k not in TIMING} for e in result["epochs"]]
    return r


@pytest.fixture(scope="session")
def cli():
    """Runs the `dyadsim` binary (DYADSIM_BIN, else target/release/dyadsim,
    built if missing) and returns the completed process."""
    binary = os.environ.get("DYADSIM_BIN") or str(REPO / "target" / "release" / "dyadsim")
    if not Path(binary).exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "dyadsim"], cwd=REPO, check=True)

    def run(*args, check=True):
        p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"dyadsim {' '.join(map(str, args))} failed: {p.stderr}")
        return p

    return run


@pytest.fixture
def cli_json(cli):
    """The result JSON that `dyadsim train ... --json` prints."""

    def run(*args):
        out = cli("train", "--quiet", "--json", *args).stdout.strip().splitlines()
        return json.loads(out[-1])

    return run
