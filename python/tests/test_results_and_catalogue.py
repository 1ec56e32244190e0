"""load_results, sweep, report, the device catalogue and the datasets."""

import json
from pathlib import Path

import numpy as np
import pytest

import dyadsim
from conftest import REPO, SMALL

SAMPLE = REPO / "reports" / "sample" / "results.jsonl"


def test_load_results_of_the_sample_has_one_row_per_job():
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    jobs = {r["hash"] for r in records}
    df = dyadsim.load_results(SAMPLE)
    assert len(df) == len(jobs)
    assert set(df["hash"]) == jobs
    for axis in records[0]["axis_order"]:
        assert axis in df.columns
    assert {"test_accuracy", "status", "samples_per_second", "epochs", "hardware", "config"} <= set(df.columns)
    first = df.set_index("hash").loc[records[0]["hash"]]
    assert first["status"] == records[0]["status"]
    assert first["learning.rule"] == records[0]["axes"]["learning.rule"]
    # The sweep directory gives the same table.
    assert len(dyadsim.load_results(SAMPLE.parent)) == len(jobs)


def test_load_results_skips_unreadable_lines_with_a_warning(tmp_path):
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    path = tmp_path / "results.jsonl"
    path.write_bytes(lines[0] + b"\xff\xfe not json\n" + lines[1])
    with pytest.warns(UserWarning, match="results.jsonl:2"):
        df = dyadsim.load_results(path)
    assert len(df) == 2


def test_sweep_runs_resumes_and_reports(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        """
[base]
seed = 1
[base.network]
arch = "784-16-10"
[base.training]
epochs = 1
[base.data]
train_size = 500
validation_size = 0
test_size = 200

[axes]
"learning.alpha" = [0.0, 1.0]
"""
    )
    out = tmp_path / "out"
    summary = dyadsim.sweep(spec, out, jobs=1)
    assert summary["ran"] == 2 and summary["ok"] + summary["diverged"] == 2
    again = dyadsim.sweep(spec, out)
    assert again["ran"] == 0 and again["skipped"] == 2
    df = dyadsim.load_results(out)
    assert sorted(df["learning.alpha"]) == [0.0, 1.0]
    written = dyadsim.report(out, tmp_path / "report", title="two alphas")
    assert Path(written["html"]).is_file() and written["runs"] == 2
    with pytest.raises(ValueError, match="shard"):
        dyadsim.sweep(spec, out, shard="3/2")


def test_load_results_of_a_run_directory(tmp_path):
    dyadsim.train(SMALL).save(tmp_path / "run")
    df = dyadsim.load_results(tmp_path / "run")
    assert len(df) == 1 and df["status"][0] == "ok"
    with pytest.raises(FileNotFoundError):
        dyadsim.load_results(tmp_path)


def test_the_device_catalogue_is_the_cli_one(cli):
    names = dyadsim.devices()
    listed = cli("devices").stdout.splitlines()[1:]
    assert names == [line.split()[0] for line in listed[: len(names)]]
    pcm = dyadsim.device("pcm")
    assert pcm.params["name"] == "pcm" and pcm.params["response"] == "exponential"
    assert pcm.g_min_us < pcm.g_max_us
    assert dyadsim.device("pcm", read_noise=0.07).params["read_noise"] == 0.07
    with pytest.raises(ValueError):
        dyadsim.device("pcm", no_such_key=1)
    with pytest.raises(ValueError):
        dyadsim.device("no_such_model")


def test_fit_device_is_the_cli_fit_and_its_model_loads(cli, tmp_path):
    trace = tmp_path / "trace.csv"
    cli("devices", "trace", "ecram", "--pulses", "1500", "--devices", "40", "--out", trace)
    fit = dyadsim.fit_device(trace, "linear", tmp_path / "mine.toml", bootstrap=50)
    on_cli = json.loads(
        cli(
            "devices", "fit", trace, "--response", "linear", "--out", tmp_path / "cli.toml",
            "--bootstrap", "50", "--json",
        ).stdout.strip().splitlines()[-1]
    )
    assert fit["parameters"] == on_cli["parameters"]
    values = {p["key"]: p for p in fit["parameters"]}
    assert abs(values["dw_min"]["value"] - 0.001) < 0.05 * 0.001
    mine = dyadsim.device(tmp_path / "mine.toml")
    assert mine.params["response"] == "linear" and mine.params["name"] == "mine"
    with pytest.raises(ValueError, match="points"):
        dyadsim.fit_device(trace, "linear", tmp_path / "x.toml", points=8)
    bad = tmp_path / "bad.csv"
    bad.write_text("device,pulse,direction,conductance_us\n0,0,up,nan\n")
    with pytest.raises(ValueError, match="row 2, column conductance_us"):
        dyadsim.fit_device(bad, "linear", tmp_path / "x.toml")
    with pytest.raises(OSError):
        dyadsim.fit_device(tmp_path / "missing.csv", "linear", tmp_path / "x.toml")


def test_mnist_splits_as_the_cli():
    for split, n in [("train", 50_000), ("validation", 10_000), ("test", 10_000)]:
        x, y = dyadsim.mnist(split)
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))
    with pytest.raises(ValueError, match="split"):
        dyadsim.mnist("dev")


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    if Path("/usr/share/datasets/fashion-mnist").exists():
        x, y = dyadsim.fashion_mnist("test")
        assert x.shape == (10_000, 784)
        return
    with pytest.raises(OSError, match="dataset-fashion-mnist"):
        dyadsim.fashion_mnist("test", data_dir=tmp_path)


def test_ctrl_c_during_a_sweep_records_nothing_of_the_stopped_jobs(tmp_path):
    import os
    import signal
    import threading

    spec = tmp_path / "spec.toml"
    spec.write_text(
        """
[base.network]
arch = "784-128-10"
[base.training]
epochs = 20
substrate = "crossbar"
[base.crossbar]
device = "reram_es"

[axes]
seed = [1, 2, 3]
"""
    )
    out = tmp_path / "out"
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            dyadsim.sweep(spec, out, jobs=1)
    finally:
        timer.cancel()
    results = out / "results.jsonl"
    assert not results.exists() or results.read_text().strip() == ""
