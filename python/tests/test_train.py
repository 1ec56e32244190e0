"""dyadsim.train, Run, save / load_run / resume and init, against the CLI."""

import os
import signal
import threading

import numpy as np
import pytest

import dyadsim
from conftest import SMALL, SMALL_TOML, without_timing


def test_train_from_a_dict_gives_the_cli_result(tmp_path, cli_json):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    ours = dyadsim.train(SMALL).result
    theirs = cli_json("--config", config)
    assert ours["status"] == "ok"
    assert without_timing(ours) == without_timing(theirs)


def test_a_path_and_toml_text_give_the_same_run_as_the_dict(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    by_dict = without_timing(dyadsim.train(SMALL).result)
    assert without_timing(dyadsim.train(config).result) == by_dict
    assert without_timing(dyadsim.train(str(config)).result) == by_dict
    assert without_timing(dyadsim.train(SMALL_TOML).result) == by_dict


def relu_forward(weights, biases, x):
    h = x
    for k, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T + b
        if k + 1 < len(weights):
            h = np.maximum(h, 0.0)
    return h


def test_numpy_forward_pass_with_the_returned_weights_reproduces_the_test_accuracy():
    run = dyadsim.train(SMALL)
    weights, biases = run.weights, run.biases
    assert [w.shape for w in weights] == [(32, 784), (10, 32)]
    assert all(w.dtype == np.float32 and w.flags["C_CONTIGUOUS"] for w in weights)
    assert [b.shape for b in biases] == [(32,), (10,)]
    x, y = dyadsim.mnist("test")
    x, y = x[:500], y[:500]
    predicted = relu_forward(weights, biases, x).argmax(axis=1)
    correct = int((predicted == y).sum())
    reported = round(run.result["test_accuracy"] * 500)
    # NumPy sums in another order than the Rust SGEMM: a logit tie within
    # float rounding may flip at most a sample or so.
    assert abs(correct - reported) <= 1, (correct, reported)
    assert correct > 0.6 * 500  # it learned: not a forward pass of noise


def test_bad_configurations_raise_value_error_with_the_cli_message(tmp_path, cli):
    bad = {
        "unknown_field.toml": "[training]\nepochz = 3\n",
        "bad_arch.toml": '[network]\narch = "784-x-10"\n',
        "bad_variant.toml": '[learning]\nrule = "dtp"\n',
        "out_of_range.toml": "[learning]\nalpha = 1.5\n",
    }
    for name, text in bad.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError) as err:
            dyadsim.train(path)
        p = cli("train", "--quiet", "--config", path, check=False)
        assert p.returncode == 2
        assert p.stderr.strip() == f"error: {str(err.value).strip()}", name
    with pytest.raises(ValueError, match="epochz"):
        dyadsim.train({"training": {"epochz": 3}})
    with pytest.raises(ValueError, match="None"):
        dyadsim.train({"data": {"data_dir": None}})
    with pytest.raises(TypeError):
        dyadsim.train(42)


def test_save_load_and_resume_continue_exactly(tmp_path):
    two = dict(SMALL, training={"epochs": 2, "batch": 50})
    whole = dyadsim.train(two)
    first = dyadsim.train(SMALL)
    first.save(tmp_path / "run")
    for name in ["result.json", "config.toml", "parameters.json", "parameters.npz", "run_state.json"]:
        assert (tmp_path / "run" / name).is_file(), name
    loaded = dyadsim.load_run(tmp_path / "run")
    assert loaded.epochs_done == 1
    assert loaded.result == first.result
    for a, b in zip(loaded.weights, first.weights):
        assert np.array_equal(a, b)
    continued = dyadsim.resume(tmp_path / "run", epochs=1)
    assert continued.epochs_done == 2
    for a, b in zip(continued.weights, whole.weights):
        assert np.array_equal(a, b)
    # (A resumed run numbers its own epochs from 1, as `train --resume` does.)
    resumed_epoch = dict(without_timing(continued.result)["epochs"][0], epoch=2)
    assert resumed_epoch == without_timing(whole.result)["epochs"][1]


def test_parameters_npz_holds_the_row_major_weights(tmp_path):
    run = dyadsim.train(SMALL)
    run.save(tmp_path / "run")
    with np.load(tmp_path / "run" / "parameters.npz") as npz:
        assert sorted(npz.files) == ["W1", "W2", "b1", "b2"]
        for k, (w, b) in enumerate(zip(run.weights, run.biases), start=1):
            assert npz[f"W{k}"].dtype == np.float32
            assert np.array_equal(npz[f"W{k}"], w)
            assert np.array_equal(npz[f"b{k}"], b)


def test_init_from_numpy_arrays_equals_the_cli_init_from(tmp_path, cli_json):
    rng = np.random.default_rng(5)
    w1 = rng.normal(0, 0.05, (32, 784))  # float64, converted on the way in
    b1 = np.zeros(32)
    w2 = np.asfortranarray(rng.normal(0, 0.2, (10, 32)))  # Fortran order
    b2 = rng.normal(0, 0.01, 10)
    path = tmp_path / "init.npz"
    np.savez_compressed(path, W1=w1, b1=b1, W2=w2, b2=b2)
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    theirs = cli_json("--config", config, "--init-from", path)
    for init in ([(w1, b1), (w2, b2)], {"W1": w1, "b1": b1, "W2": w2, "b2": b2}, path):
        ours = dyadsim.train(SMALL, init=init).result
        assert without_timing(ours) == without_timing(theirs)
    # The start differs from the seeded initialisation's.
    assert without_timing(dyadsim.train(SMALL).result) != without_timing(theirs)


def test_init_with_wrong_shapes_is_a_value_error():
    with pytest.raises(ValueError, match="layer 1"):
        dyadsim.train(SMALL, init=[(np.zeros((32, 100)), np.zeros(32)), (np.zeros((10, 32)), np.zeros(10))])
    with pytest.raises(ValueError, match="1 weight layer.* has 2"):
        dyadsim.train(SMALL, init=[(np.zeros((32, 784)), np.zeros(32))])
    with pytest.raises(ValueError, match="no W1"):
        dyadsim.train(SMALL, init={"weight": np.zeros((32, 784))})


def test_ctrl_c_during_train_raises_keyboard_interrupt_and_writes_nothing(tmp_path):
    # A crossbar run long enough (tens of seconds) that the interrupt,
    # sent after half a second, arrives while it trains.
    config = {
        "network": {"arch": "784-128-10"},
        "training": {"epochs": 20, "substrate": "crossbar"},
        "crossbar": {"device": "reram_es"},
    }
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            dyadsim.train(config)
    finally:
        timer.cancel()
    assert list(tmp_path.iterdir()) == []


def test_progress_prints_one_line_per_epoch(capsys):
    dyadsim.train(SMALL, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1: train loss" in err and "samples/s" in err


def test_train_releases_the_gil():
    # A Python thread keeps counting while a run trains: it could not if
    # the run held the GIL (it would get the interpreter only at the
    # 100 ms signal checks).
    config = {
        "network": {"arch": "784-64-10"},
        "training": {"epochs": 1, "substrate": "crossbar"},
        "crossbar": {"device": "reram_es"},
        "data": {"train_size": 3000, "validation_size": 0, "test_size": 200},
    }
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        dyadsim.train(config)
    finally:
        stop.set()
        t.join()
    assert count[0] > 10_000, count[0]


def test_save_replaces_a_run_only_when_asked(tmp_path):
    run = dyadsim.train(SMALL)
    run.save(tmp_path / "run")
    with pytest.raises(ValueError, match="already holds a run"):
        run.save(tmp_path / "run")
    run.save(tmp_path / "run", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="holds no run"):
        run.save(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_device_models_recommended_setting_applies_as_on_the_cli():
    tiny = {
        "network": {"arch": "784-8-10"},
        "training": {"epochs": 1, "batch": 20, "substrate": "crossbar"},
        "data": {"train_size": 40, "validation_size": 0, "test_size": 20},
    }
    run = dyadsim.train({**tiny, "crossbar": {"device": "pcm"}})
    assert run.config["crossbar"]["algorithm"] == "ttv2"
    assert run.config["sources"]["crossbar.algorithm"].endswith("pcm.toml (built in), recommended")
    mine = dyadsim.train({**tiny, "crossbar": {"device": "pcm", "algorithm": "sgd"}})
    assert mine.config["crossbar"]["algorithm"] == "sgd"
    assert mine.config["sources"]["crossbar.algorithm"] == "the configuration dict"
