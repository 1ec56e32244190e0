"""Speed of the Python package against the Rust side (docs/benchmarks.md,
"The Python package").

1. `dyadsim.train` against the CLI (`dyadsim train --json`) on the same
   configurations, alternating, several rounds: training samples/s as each
   run's result reports it (the training loop's own clock, without data
   loading or evaluation).
2. `Crossbar.forward` at batch 50 on 784×256 (reram_es, read noise 0.05,
   two MNIST batches in turn so that every read is a fresh one): time per
   call, to set beside criterion's
   `crossbar_784x256_batch50/forward_read_with_read_noise` (same work in
   Rust: `cargo bench --bench crossbar -- forward_read_with_read_noise`).

Run after `pip install .` and `cargo build --release`:
    python benches/python_speed.py [--rounds 3] [--bin target/release/dyadsim]
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import dyadsim

CONFIGS = {
    "digital DP⊤ 784-256-10, 1 epoch of 50,000": """
[network]
arch = "784-256-10"
[training]
epochs = 1
[data]
train_size = 50000
validation_size = 0
test_size = 1000
""",
    "crossbar reram_es DP⊤ 784-256-10, 1 epoch of 20,000": """
[network]
arch = "784-256-10"
[training]
epochs = 1
substrate = "crossbar"
[crossbar]
device = "reram_es"
[data]
train_size = 20000
validation_size = 0
test_size = 1000
""",
}


def train_speed(binary, rounds):
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in CONFIGS.items():
            path = Path(tmp) / "c.toml"
            path.write_text(text)
            cli, py = [], []
            for _ in range(rounds):
                out = subprocess.run(
                    [binary, "train", "--quiet", "--json", "--config", str(path)],
                    capture_output=True, text=True, check=True,
                ).stdout.strip().splitlines()[-1]
                cli.append(json.loads(out)["samples_per_second"])
                py.append(dyadsim.train(text).result["samples_per_second"])
            c, p = statistics.median(cli), statistics.median(py)
            print(f"{name}: CLI {c:,.0f} samples/s, dyadsim.train {p:,.0f} samples/s "
                  f"(ratio {p / c:.3f}; rounds CLI {[round(v) for v in cli]}, Python {[round(v) for v in py]})")


def forward_speed(rounds):
    x, _ = dyadsim.mnist("train")
    inputs = [np.ascontiguousarray(x[:50]), np.ascontiguousarray(x[:50][::-1])]
    rng = np.random.default_rng(1)
    w0 = ((rng.random((256, 784)) - 0.5) * 0.1).astype(np.float32)
    xb = dyadsim.Crossbar(256, 784, "reram_es", seed=1, weights=w0, lr=0.1,
                          device_params={"read_noise": 0.05})
    for i in range(50):
        xb.forward(inputs[i % 2])
    per_call = []
    for _ in range(rounds):
        n = 2000
        t = time.perf_counter()
        for i in range(n):
            xb.forward(inputs[i % 2])
        per_call.append((time.perf_counter() - t) / n)
    med = statistics.median(per_call)
    print(f"Crossbar.forward 784×256 batch 50 (reram_es, read noise 0.05): {1e6 * med:.1f} µs per call "
          f"(rounds {[round(1e6 * v, 1) for v in per_call]} µs); compare criterion "
          "crossbar_784x256_batch50/forward_read_with_read_noise")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["forward", "train"], help="run one of the two parts")
    ap.add_argument("--bin", default=str(Path(__file__).resolve().parents[1] / "target" / "release" / "dyadsim"))
    args = ap.parse_args()
    if args.only != "train":
        forward_speed(args.rounds)
    if args.only != "forward":
        train_speed(args.bin, args.rounds)


if __name__ == "__main__":
    main()
