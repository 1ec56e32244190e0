#!/usr/bin/env python3
"""How many pulses aihwkit 1.1's update asks for, per layer (docs/benchmarks.md).

Trains the network of `aihwkit_parity.py` to sample 19,968 and then, over
samples 19,968-20,992, sums per layer what a pulse-for-pulse update of the
gradient would need, lr * sum_b (sum_i |x_bi|) (sum_j |d_bj|) / dw_min, with
x a layer's input and d the loss gradient at its output (hooks). Next to
aihwkit's own pulse count this shows how it turns an update into pulses: on
ConstantStep the two agree; on ReRAM-ES aihwkit applies 1/1.475 of it, the
ratio of dw_min to its ExpStep "weight granularity".

The count needs an aihwkit built with the pulse counter of docs/benchmarks.md
(`bench_pulse_get` in rpu_base); with the official wheel only the requested
pulses are printed.

    taskset -c 0 python benches/aihwkit_requested_pulses.py reram
"""

import ctypes
import sys

import torch
from torch import nn
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD

from aihwkit_parity import BATCH, LR, load_mnist, rpu_config

DW_MIN = {"cs": 0.001, "reram": 0.00135}


def pulse_counter():
    """Per-layer cumulative pulse counts of the patched build, or None."""
    try:
        from aihwkit.simulator import rpu_base

        lib = ctypes.CDLL(rpu_base.__file__)
        get = lib.bench_pulse_get
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_ulonglong
    get.argtypes = [ctypes.c_int, ctypes.c_int]
    return lambda in_size: get(0, in_size)


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "reram"
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x_all, y_all = load_mnist()
    perm = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(0))
    x_all, y_all = x_all[perm], y_all[perm]
    sizes = [784, 256, 128, 10]
    linears = [AnalogLinear(sizes[i], sizes[i + 1], True, rpu_config=rpu_config(name)) for i in range(3)]
    model = AnalogSequential(linears[0], nn.Sigmoid(), linears[1], nn.Sigmoid(), linears[2], nn.LogSoftmax(dim=1))
    opt = AnalogSGD(model.parameters(), lr=LR)
    opt.regroup_param_groups(model)
    loss_fn = nn.NLLLoss()

    recording = [False]
    requested = [0.0, 0.0, 0.0]

    def hook(k):
        def forward(module, inputs, output):
            if not recording[0]:
                return
            x_rows = inputs[0].detach().abs().sum(1)

            def backward(grad):
                d_rows = grad.detach().abs().sum(1)
                requested[k] += LR / DW_MIN[name] * float((x_rows * d_rows).sum())

            output.register_hook(backward)

        return forward

    for k, layer in enumerate(linears):
        layer.register_forward_hook(hook(k))

    pos = 0

    def step():
        nonlocal pos
        xb, yb = x_all[pos : pos + BATCH], y_all[pos : pos + BATCH]
        pos += BATCH
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()

    for _ in range(19_968 // BATCH):
        step()
    counter = pulse_counter()
    # The patched counters are keyed by a tile's input count (aihwkit splits
    # layer 1 into two tiles of 392 inputs; both land on one key).
    in_sizes = [{tile.in_size for tile in layer.analog_tiles()} for layer in linears]

    def count(k):
        return sum(counter(n) for n in in_sizes[k])

    before = [count(k) for k in range(3)] if counter else None
    recording[0] = True
    for _ in range(1_024 // BATCH):
        step()
    samples = 1_024
    for k in range(3):
        line = f"layer {k + 1}: requested {requested[k] / samples:.1f} pulses/sample"
        if counter:
            line += f", counted {(count(k) - before[k]) / samples:.1f}"
        print(line)


if __name__ == "__main__":
    main()
