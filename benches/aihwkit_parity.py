#!/usr/bin/env python3
"""The aihwkit side of dyadsim's speed comparison (docs/benchmarks.md).

Trains aihwkit 1.1's MNIST example network (784-256-128-10, sigmoid hidden
layers, log-softmax + NLL loss, bias on, AnalogSGD lr 0.1, batch 64) on one
CPU thread and prints training samples per second (forward + backward +
pulsed update), as `cargo bench --bench crossbar -- aihwkit_parity` does for
dyadsim with the same network and settings.

Not part of the build or the tests. Needs the official CPU wheel:

    python3.11 -m venv venv && . venv/bin/activate
    pip install torch==2.10.0 torchvision==0.25.0 aihwkit==1.1.0
    taskset -c 0 python benches/aihwkit_parity.py cs      # ConstantStepDevice
    taskset -c 0 python benches/aihwkit_parity.py reram   # ReRamESPreset

(aihwkit 1.1.0's wheel does not load with torch 2.9.1 although its metadata
allows it; 2.10.0 works.) MNIST is read from the repository's data/mnist.
"""

import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
from torch import nn

import aihwkit
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import FloatingPointRPUConfig, SingleRPUConfig
from aihwkit.simulator.configs.devices import ConstantStepDevice
from aihwkit.simulator.presets import ReRamESPreset

MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "mnist")
BATCH = 64
LR = 0.1


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist():
    x = load_idx(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(MNIST_DIR, "train-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.reshape(x.shape[0], -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(y.astype(np.int64))


def rpu_config(name):
    if name == "cs":
        return SingleRPUConfig(device=ConstantStepDevice())
    if name == "reram":
        return ReRamESPreset()
    return FloatingPointRPUConfig()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config", choices=["cs", "reram", "fp"])
    ap.add_argument("--warmup-batches", type=int, default=40)
    ap.add_argument("--batches", type=int, default=320)  # 20,480 samples
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x_all, y_all = load_mnist()
    perm = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(args.seed))
    x_all, y_all = x_all[perm], y_all[perm]

    sizes = [784, 256, 128, 10]
    layers = []
    for i in range(3):
        layers.append(AnalogLinear(sizes[i], sizes[i + 1], True, rpu_config=rpu_config(args.config)))
        layers.append(nn.Sigmoid() if i < 2 else nn.LogSoftmax(dim=1))
    model = AnalogSequential(*layers)
    opt = AnalogSGD(model.parameters(), lr=LR)
    opt.regroup_param_groups(model)
    loss_fn = nn.NLLLoss()
    print(f"aihwkit {aihwkit.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), config {args.config}")

    pos = 0

    def run(batches):
        nonlocal pos
        forward_backward = update = 0.0
        for _ in range(batches):
            if pos + BATCH > x_all.shape[0]:
                pos = 0
            xb, yb = x_all[pos : pos + BATCH], y_all[pos : pos + BATCH]
            pos += BATCH
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            t1 = time.perf_counter()
            opt.step()  # the pulsed update
            t2 = time.perf_counter()
            forward_backward += t1 - t0
            update += t2 - t1
        return forward_backward, update

    run(args.warmup_batches)
    results = []
    for r in range(args.repeats):
        fb, up = run(args.batches)
        n = args.batches * BATCH
        results.append(dict(samples=n, samples_per_s=n / (fb + up), update_share=up / (fb + up)))
        print(f"repeat {r}: {n / (fb + up):.0f} samples/s (update {100 * up / (fb + up):.0f} %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config, aihwkit=aihwkit.__version__, results=results), f)


if __name__ == "__main__":
    main()
