"""dyadsim.Crossbar: the same bits as the Rust library, shapes, statistics."""

import json
from pathlib import Path

import numpy as np
import pytest

import dyadsim

FIXTURE = Path(__file__).parent / "data" / "crossbar_reads.json"


def floats(bits, shape):
    return np.array(bits, dtype=np.uint32).view(np.float32).reshape(shape)


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).ravel().tolist()


def test_reads_and_update_equal_the_rust_library_bit_for_bit():
    # Written by tests/python_crossbar_fixture.rs from the Rust library.
    f = json.loads(FIXTURE.read_text())
    rows, cols, b = f["rows"], f["cols"], f["batch"]
    xb = dyadsim.Crossbar(
        rows,
        cols,
        f["device"],
        seed=f["seed"],
        weights=floats(f["weights"], (rows, cols)),
        bias=floats(f["bias"], (rows,)),
    )
    x = floats(f["x"], (b, cols))
    assert bits(xb.forward(x)) == f["forward_before_update"]
    assert bits(xb.transposed(floats(f["d"], (b, rows)))) == f["transposed"]
    xb.update(floats(f["left"], (b, rows)), floats(f["right"], (b, cols)), f["scale"])
    assert bits(xb.forward(x)) == f["forward_after_update"]
    assert bits(xb.weights()[0]) == f["weights_after_update"]
    assert xb.hardware_stats()["pulses_applied"] == f["pulses_applied"] > 0


def test_same_seed_same_reads_other_seed_other_reads():
    x = np.linspace(-1, 1, 3 * 40, dtype=np.float32).reshape(3, 40)
    a = dyadsim.Crossbar(8, 40, "reram_es", seed=4).forward(x)
    b = dyadsim.Crossbar(8, 40, "reram_es", seed=4).forward(x)
    c = dyadsim.Crossbar(8, 40, "reram_es", seed=5).forward(x)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_exact_reads_on_ideal_devices_are_the_matrix_product():
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.5, 0.5, (6, 9)).astype(np.float32)
    bias = rng.uniform(-0.1, 0.1, 6).astype(np.float32)
    xb = dyadsim.Crossbar(
        6, 9, "ideal", weights=w, bias=bias, write="exact",
        adc_bits=0, dac_bits=0, output_noise=0.0, device_params={"read_noise": 0.0},
    )
    got_w, got_b = xb.weights()
    np.testing.assert_allclose(got_w, w, atol=1e-6)
    np.testing.assert_allclose(got_b, bias, atol=1e-6)
    x = rng.uniform(-1, 1, (4, 9)).astype(np.float32)
    np.testing.assert_allclose(xb.forward(x), x @ w.T + bias, atol=1e-5)
    d = rng.uniform(-1, 1, (4, 6)).astype(np.float32)
    np.testing.assert_allclose(xb.transposed(d), d @ w, atol=1e-5)
    # An exact write is the SGD step W ← W − lr·scale·leftᵀ·right.
    lr = xb.settings["lr"]
    left, right = rng.normal(size=(4, 6)), rng.normal(size=(4, 9))
    xb.update(left, right, 0.25)
    expected = w - lr * 0.25 * (left.T @ right)
    np.testing.assert_allclose(xb.weights()[0], expected, atol=1e-5)
    np.testing.assert_allclose(xb.weights()[1], bias - lr * 0.25 * left.sum(0), atol=1e-5)


def test_set_weights_programs_the_devices():
    w = np.full((4, 5), 0.25, dtype=np.float32)
    xb = dyadsim.Crossbar(4, 5, "ideal", write="exact")
    xb.set_weights(w, np.zeros(4))
    np.testing.assert_allclose(xb.weights()[0], w, atol=1e-6)


def test_statistics_and_time():
    xb = dyadsim.Crossbar(16, 32, "reram_es", seed=1)
    before = xb.hardware_stats()
    assert before["pulses_applied"] == 0 and before["shape"] == [16, 33]  # the bias column is a crossbar column too
    rng = np.random.default_rng(1)
    xb.forward(rng.uniform(0, 1, (10, 32)))
    xb.update(rng.normal(0, 0.5, (10, 16)), rng.uniform(0, 1, (10, 32)), -0.1)
    after = xb.hardware_stats()
    assert after["pulses_applied"] > 0
    assert after["reads"]["forward_reads"] == 1 and after["reads"]["forward_samples"] == 10
    xb.advance_time(3600.0)
    assert xb.hardware_stats()["device_time_s"] >= 3600.0


def test_bad_arguments_are_clear_errors():
    xb = dyadsim.Crossbar(4, 5, "reram_es")
    with pytest.raises(ValueError, match=r"expected \(batch, 5\)"):
        xb.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected \(batch, 4\)"):
        xb.transposed(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="same batch"):
        xb.update(np.zeros((2, 4)), np.zeros((3, 5)), 1.0)
    with pytest.raises(ValueError, match="seconds"):
        xb.advance_time(-1.0)
    with pytest.raises(ValueError, match="unknown field"):
        dyadsim.Crossbar(4, 5, "reram_es", no_such_setting=1)
    with pytest.raises(ValueError, match="no_such_device"):
        dyadsim.Crossbar(4, 5, "no_such_device")
    with pytest.raises(ValueError, match="rows"):
        dyadsim.Crossbar(0, 5)
    with pytest.raises(ValueError, match=r"expected \(4, 5\)"):
        dyadsim.Crossbar(4, 5, weights=np.zeros((5, 4)))
