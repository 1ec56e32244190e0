"""Weights between PyTorch and dyadsim: a PyTorch MLP's `state_dict` to a
dyadsim run and back.

1. Train a 784-64-10 ReLU MLP in PyTorch for one epoch (digital, Adam).
2. Convert its `state_dict` to dyadsim's parameter layout (`W1, b1, …`,
   each `W{k}` shaped (outputs, inputs) — exactly `nn.Linear.weight`) and
   save it as an `.npz` file (what `dyadsim train --init-from` reads).
3. Fine-tune it on a ReRAM crossbar with DP⊤ from those weights.
4. Load the chip's trained weights (`parameters.npz` of the run directory)
   back into the PyTorch model and evaluate it there.

Needs torch (`pip install torch`); run: python python/examples/pytorch_state_dict.py
"""

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import dyadsim


def to_dyadsim(state_dict, linear_names):
    """`{W1, b1, W2, b2, …}` from the `nn.Linear` layers named in order."""
    out = {}
    for k, name in enumerate(linear_names, start=1):
        out[f"W{k}"] = state_dict[f"{name}.weight"].detach().cpu().numpy().astype(np.float32)
        out[f"b{k}"] = state_dict[f"{name}.bias"].detach().cpu().numpy().astype(np.float32)
    return out


def from_dyadsim(params, linear_names):
    """A `state_dict` fragment for `load_state_dict` from `{W1, b1, …}`."""
    sd = {}
    for k, name in enumerate(linear_names, start=1):
        sd[f"{name}.weight"] = torch.from_numpy(np.asarray(params[f"W{k}"]))
        sd[f"{name}.bias"] = torch.from_numpy(np.asarray(params[f"b{k}"]))
    return sd


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()


def main():
    torch.manual_seed(0)
    x_train, y_train = dyadsim.mnist("train")
    x_test, y_test = dyadsim.mnist("test")
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    linear = ["0", "2"]  # the nn.Linear entries of the Sequential
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for i in range(0, len(xt), 100):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt[i : i + 100]), yt[i : i + 100])
        loss.backward()
        opt.step()
    print(f"PyTorch, 1 epoch digital:            test accuracy {100 * accuracy(model, x_test, y_test):.2f} %")

    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init.npz"
        np.savez(init, **to_dyadsim(model.state_dict(), linear))
        # The same weights read into dyadsim, before any training step: the
        # NumPy forward pass gives PyTorch's accuracy.
        config = {
            "network": {"arch": "784-64-10", "loss": "ce"},
            "learning": {"rule": "dpt", "alpha": 0.5},
            "training": {"epochs": 1, "substrate": "crossbar"},
            "crossbar": {"device": "reram_es", "lr": 0.01},
            "data": {"train_size": 10000},
        }
        run = dyadsim.train(config, init=init, progress=True)
        print(f"dyadsim, DP⊤ on reram_es from it:    test accuracy {100 * run.result['test_accuracy']:.2f} %"
              f" ({run.result['hardware']['total']['pulses_applied']:,} pulses)")
        run.save(Path(tmp) / "run")
        with np.load(Path(tmp) / "run" / "parameters.npz") as chip:
            model.load_state_dict(from_dyadsim(chip, linear))
    print(f"PyTorch with the chip's weights back: test accuracy {100 * accuracy(model, x_test, y_test):.2f} %"
          " (exact float weights: no read noise or converters)")


if __name__ == "__main__":
    main()
