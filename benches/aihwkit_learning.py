#!/usr/bin/env python3
"""The aihwkit side of a learning comparison: 3 epochs of MNIST (not a speed bench).

Options for the ablation in docs/benchmarks.md:
`--digital-bias {true,false}` (rpu_config.mapping.digital_bias),
`--max-input-size N` (rpu_config.mapping.max_input_size; 1024 puts layer 1
on one tile) and `--bound-management {NONE,ITERATIVE,ITERATIVE_WORST_CASE,SHIFT}`
(rpu_config.forward.bound_management); unset options keep aihwkit's defaults.
The layout records the tile module class and the C++ tile's x_size / d_size
(x_size = in_size + 1 when the bias is an analog column).

Trains the network of `aihwkit_parity.py` (aihwkit 1.1's MNIST example:
784-256-128-10, sigmoid hidden layers, log-softmax + NLL loss, bias on,
AnalogSGD lr 0.1, batch 64, configs `cs` = SingleRPUConfig(device=
ConstantStepDevice()) and `reram` = ReRamESPreset()) on all 60,000 training
images for 3 epochs, reshuffled every epoch by the seed (the last batch of an
epoch has 32 images). After each epoch it prints, and with `--json FILE`
stores, the mean training loss of the epoch (per image) and the accuracy on
the 10,000 test images (t10k files, aihwkit's analog forward in eval mode,
batches of 1,000), with the wall time of the epoch's training and of the
test pass.

Seeding: `--seed S` sets torch.manual_seed(S) (PyTorch's initial weights),
the shuffling generator (torch.Generator().manual_seed(S)) and aihwkit's
`construction_seed` of the devices, 100 S + layer (1, 2, 3), so that the
layers draw different devices. aihwkit maps the 784 inputs of layer 1 onto two
tiles of 392 inputs (mapping.max_input_size 512); both get the layer's seed
and hence the same device draws. aihwkit's cycle-to-cycle, write and forward
/ backward noise on CPU come from RNGs that aihwkit 1.1.0 seeds from the
clock when a tile is built (no Python API sets them), so two runs with one
seed differ.

Not part of the build or the tests. Needs the official CPU wheel (see
`aihwkit_parity.py`); MNIST is read from the repository's data/mnist:

    taskset -c 1 venv/bin/python benches/aihwkit_learning.py cs --seed 1 --json cs_1.json
    taskset -c 1 venv/bin/python benches/aihwkit_learning.py reram --seed 1 --json reram_1.json

`--print-config` prints the layers' rpu_config, the tile layout and the C++ tile info
of layer 1 first.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import aihwkit
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.parameters import BoundManagementType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aihwkit_parity import BATCH, LR, MNIST_DIR, load_idx, rpu_config  # noqa: E402

EPOCHS = 3
TEST_BATCH = 1000


def load(prefix):
    x = load_idx(os.path.join(MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(MNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.reshape(x.shape[0], -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(y.astype(np.int64))


def build(name, seed, digital_bias=None, max_input_size=None, bound_management=None):
    torch.manual_seed(seed)
    sizes = [784, 256, 128, 10]
    layers, configs = [], []
    for i in range(3):
        cfg = rpu_config(name)
        cfg.device.construction_seed = 100 * seed + i + 1
        if digital_bias is not None:
            cfg.mapping.digital_bias = digital_bias
        if max_input_size is not None:
            cfg.mapping.max_input_size = max_input_size
        if bound_management is not None:
            cfg.forward.bound_management = BoundManagementType[bound_management]
        configs.append(cfg)
        layers.append(AnalogLinear(sizes[i], sizes[i + 1], True, rpu_config=cfg))
        layers.append(nn.Sigmoid() if i < 2 else nn.LogSoftmax(dim=1))
    return AnalogSequential(*layers), configs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config", choices=["cs", "reram"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--json", default=None)
    ap.add_argument("--print-config", action="store_true")
    ap.add_argument("--digital-bias", choices=["true", "false"], default=None)
    ap.add_argument("--max-input-size", type=int, default=None)
    ap.add_argument("--bound-management", choices=[b.name for b in BoundManagementType], default=None)
    args = ap.parse_args()

    torch.set_num_threads(1)
    x_train, y_train = load("train")
    x_test, y_test = load("t10k")
    ablation = dict(
        digital_bias=None if args.digital_bias is None else args.digital_bias == "true",
        max_input_size=args.max_input_size, bound_management=args.bound_management)
    model, configs = build(args.config, args.seed, **ablation)
    opt = AnalogSGD(model.parameters(), lr=LR)
    opt.regroup_param_groups(model)
    loss_fn = nn.NLLLoss(reduction="sum")
    print(f"aihwkit {aihwkit.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), config {args.config}, seed {args.seed}", flush=True)

    layout = []
    for k, layer in enumerate(l for l in model if isinstance(l, AnalogLinear)):
        tiles = list(layer.analog_tiles())
        layout.append(dict(
            layer=k + 1,
            tiles=[[t.out_size, t.in_size] for t in tiles],
            analog_bias=[bool(t.analog_bias) for t in tiles],
            digital_bias=[bool(t.digital_bias) for t in tiles],
            # the digital bias vector: on the tile, or on the TileModuleArray of a split layer
            bias_parameters=[(n, list(p.shape)) for n, p in layer.named_parameters() if n.endswith("bias")],
            construction_seed=configs[k].device.construction_seed,
            module_class=type(layer.analog_module).__name__,
            cpp_tile_d_x_size=[[t.tile.get_d_size(), t.tile.get_x_size()] for t in tiles],
            mapping_digital_bias=configs[k].mapping.digital_bias,
            mapping_max_input_size=configs[k].mapping.max_input_size,
            forward_bound_management=str(configs[k].forward.bound_management),
            tile_forward_bound_management=[str(t.rpu_config.forward.bound_management) for t in tiles],
        ))
    if args.print_config:
        print(configs[0])
        print("mapping:", vars(configs[0].mapping))
        print("forward:", vars(configs[0].forward))
        print("backward:", vars(configs[0].backward))
        print("update:", vars(configs[0].update))
        for entry in layout:
            print(entry)
        first = next(l for l in model if isinstance(l, AnalogLinear))
        print(next(first.analog_tiles()).tile.get_info())

    gen = torch.Generator().manual_seed(args.seed)
    n = x_train.shape[0]
    epochs = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total_loss = 0.0
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            idx = perm[start : start + BATCH]
            xb, yb = x_train[idx], y_train[idx]
            opt.zero_grad()
            loss_sum = loss_fn(model(xb), yb)
            (loss_sum / xb.shape[0]).backward()  # batch-mean loss, as nn.NLLLoss()
            opt.step()
            total_loss += float(loss_sum.detach())
        t_train = time.perf_counter() - t0
        model.eval()
        t0 = time.perf_counter()
        correct = 0
        with torch.no_grad():
            for start in range(0, x_test.shape[0], TEST_BATCH):
                out = model(x_test[start : start + TEST_BATCH])
                correct += int((out.argmax(1) == y_test[start : start + TEST_BATCH]).sum())
        t_eval = time.perf_counter() - t0
        entry = dict(epoch=epoch, train_loss=total_loss / n, test_accuracy=correct / x_test.shape[0],
                     train_seconds=t_train, test_seconds=t_eval)
        epochs.append(entry)
        print(f"epoch {epoch}: train loss {entry['train_loss']:.4f}, test accuracy "
              f"{100 * entry['test_accuracy']:.2f} %, {t_train:.1f} s train, {t_eval:.1f} s test",
              flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config, seed=args.seed, aihwkit=aihwkit.__version__,
                           torch=torch.__version__, batch=BATCH, lr=LR, layout=layout,
                           rpu_config=str(configs[0]), ablation=ablation, epochs=epochs), f, indent=1)


if __name__ == "__main__":
    main()
