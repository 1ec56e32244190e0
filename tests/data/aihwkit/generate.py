#!/usr/bin/env python3
"""aihwkit 1.1.0 reference data for dyadsim's device models (cross-simulator check).

What
----
For each of the eight device presets that have a dyadsim model file
(`device_models/*.toml`), this script drives 4,000 single devices of aihwkit
1.1.0 (CPU, one `AnalogTile` of 4000 x 1 devices, `SingleRPUConfig(device=...)`)
with single pulses and writes two CSV files next to itself:

* `pulse_response.csv` -- `preset,noise,seed,direction,pulse,mean_g,std_g`:
  every device starts at its OWN (drawn) lower bound, then receives N up
  pulses, then N down pulses. `pulse` counts from 0 within each direction and
  the state is read after that pulse; mean and std (population std, ddof = 0)
  are over the 4,000 devices. Every k-th pulse is written, k = ceil(N / 150),
  plus the last pulse (N - 1) of each direction.
* `summary.csv` -- `preset,seed,statistic,value`, the same 4,000 devices:
  `lower_bound_mean/_std`, `upper_bound_mean/_std` (drawn per-device bounds);
  `step_up_at_zero_mean/_cv`, `step_down_at_zero_mean/_cv` (noise off, every
  device set to w = 0, one pulse, |dg| per device, mean and coefficient of
  variation std/mean over devices); `symmetry_point_mean/_std` (noise off,
  from w = 0 alternate one up and one down pulse per cycle until converged,
  per device the mean of g after the last up and after the last down pulse)
  plus `symmetry_point_cycles` (the cycle count used, see below);
  `c2c_up_at_0.25`, `c2c_up_at_0.5` (noise-free and noisy tile with the same
  seed set to g = 0.25 / 0.5, one up pulse each, value = std over devices of
  (dg_noisy - dg_clean) / mean(dg_clean); devices whose own bounds do not
  contain that g strictly inside are excluded).

Units: every state, bound and step is the normalised conductance
g = (w - w_min) / (w_max - w_min) with the preset's NOMINAL w_min, w_max
(not the drawn per-device bounds). The preset's zero point w = 0 is
g0 = -w_min / (w_max - w_min).

Presets (dyadsim key -> aihwkit 1.1.0 class in aihwkit.simulator.presets.devices):
constant_step -> GokmenVlasovPresetDevice, reram_es -> ReRamESPresetDevice,
reram_sb -> ReRamSBPresetDevice, ecram -> EcRamPresetDevice, ecram_mo ->
EcRamMOPresetDevice, capacitor -> CapacitorPresetDevice, pcm ->
PCMPresetDevice (the single device, not the OneSidedUnitCell), reram_array_om
-> ReRamArrayOMPresetDevice.

`noise`: `on` is the preset as published; `off` sets dw_min_std = 0,
write_noise_std = 0 and (where the class has them) dw_min_std_add =
dw_min_std_slope = 0, keeping every device-to-device spread. The summary
statistics other than c2c use the `off` tile.

Number of pulses N per direction (pulse_response.csv)
  N = ceil(1.5 * n_nom / q), with n_nom the pulses a nominal device (all
  *_dtod = 0, noise off) needs to go from one bound to within 1 % of the range
  of the other (the larger of up and down, measured with aihwkit itself), and
  q = 1 - 2 dw_min_dtod (normal gain spread) or exp(-2 dw_min_dtod) (log-normal)
  the gain of a device 2 sigma below the mean, so that devices with small
  steps saturate too. The values (fixed below in N_PULSES) are
  constant_step 4643, reram_es 3095, reram_sb 10785, ecram 1894,
  ecram_mo 14792, capacitor 745, pcm 175, reram_array_om 338.
  (A rule "1.5 x range / smallest step" diverges for soft bounds, whose step
  vanishes at the bound, and gives 251 for the PCM whose up step shrinks 24x.)

How the protocol is realised in aihwkit 1.1.0 (verified by `verify()`, run
first on every invocation; the script stops if a check fails)
* Exactly one pulse per device per update: `UpdateParameters(desired_bl=1,
  update_management=False, update_bl_management=False)` (fixed_bl True,
  pulse type StochasticCompressed), learning rate 1, x = [1] (one input),
  d = -1 (up) / +1 (down) for all 4,000 outputs. Then A = B =
  sqrt(lr / (granularity * BL)) > 1 for every preset (granularity <= 0.0949),
  so both pulse probabilities A|x|, B|d| exceed 1 and every device receives
  one coincidence. Checked: on a GokmenVlasov tile with dw_min_std = 0 one
  up update moves every one of the 4,000 devices by exactly its own hidden
  `dwmin_up` and one down update by exactly `dwmin_down` (max deviation 0
  and 1.8e-12, float32 values compared in float64), from w = 0 (no device
  at a bound).
  (aihwkit's `count_pulses` is GPU-only in 1.1.0, so the pulse counters
  cannot be used on CPU.)
* Device state: the hidden parameter `persistent_weights` when the device
  has write noise (write_noise_std > 0: the update acts on it and the read
  weights are it plus fresh write noise), otherwise the tile weights
  (`get_weights(apply_weight_scaling=False)`). SoftBoundsReferenceDevice
  (reram_sb, reram_array_om) stores w = device - reference and adds the
  reference back inside every update; its hidden `reference` is set to 0 right
  after construction (`set_hidden_parameters`), which leaves every drawn
  device parameter and the device dynamics unchanged (checked once by hand:
  60 pulses on 3,979 ReRamArrayOM devices, stored + reference of the
  original tile and state of the zeroed tile agree to 1.1e-6 in w, float
  rounding) and makes the stored weight the device's own state (and
  `set_weights` set the device itself).
  For ReRamArrayOM the zeroed reference is the drawn reference_std = 0.05
  offset plus the per-device symmetry point (subtract_symmetry_point).
* Own lower bound: `set_weights` with w = w_min - 10 (w_max - w_min) clips
  every device to its own drawn lower bound (hidden `min_bound`);
  checked: |state - min_bound| = 0 for every device, noise off and on.
* Bounds: hidden parameters `min_bound` / `max_bound` (per device, weight
  units) converted to g.
* Seeding: seed s in 1..5 sets the device's `construction_seed = s` (the
  C++ RealWorldRNG that draws all device-to-device parameters) and
  torch.manual_seed(s). Checked: the same seed gives identical hidden
  parameters, seeds s and s+1 give different ones, and the noise-off and the
  noisy tile of one seed have identical hidden parameters (same devices).
  The cycle-to-cycle noise on CPU comes from a per-tile RNG that aihwkit 1.1.0
  seeds from the clock at construction (RNG(0) -> randomizeSeed; no Python
  API sets it, torch.manual_seed does not reach it), so it differs for every
  seed but the `on` rows and the c2c values are NOT bit-reproducible between
  runs (their statistics are); the `off` rows and all other summary values
  are (checked: a second run reproduced them digit for digit).
  The device-to-device draws follow the same standard-normal sequence for
  every preset (same populate order), so presets with equal relative spreads
  have identical bound / gain statistics for one seed (e.g. the bounds of
  constant_step and reram_es).
* Symmetry point: from w = 0, read at 1000, 2000, 4000, ... cycles; stops
  when the mean AND the std over devices of the per-device value each moved
  less than 1e-4 (g) since the previous read (half the cycles), at most
  128,000 cycles. (A fixed block length stops too early for the slowly
  relaxing soft-bounds and small-step devices.) ConstantStep has no interior
  symmetry point (each device drifts by dwmin_up - dwmin_down per cycle until
  a bound stops it), so for constant_step the cap is reached and the value
  depends on the cycle count (written as `symmetry_point_cycles`; 128000
  means the cap was reached: always for constant_step, whose std still
  grows there, and for reram_sb seeds 4 and 5, whose std still moved by more
  than 1e-4 between 32,000 and 64,000 cycles; for seed 4 mostly one device
  with steps of 5e-5 up / 1e-5 down).
* Leakage (capacitor lifetime), diffusion, drift: not applied (aihwkit applies
  decay only in `post_update_step`, which the optimizer calls; this script
  calls `tile.update` only).

How to install and run
----------------------
aihwkit 1.1.0's CPU wheel needs torch 2.10.0 (it does not load with 2.9.1):

    python3 -m venv venv
    venv/bin/pip install torch==2.10.0 torchvision==0.25.0 aihwkit==1.1.0
    taskset -c 1 venv/bin/python tests/data/aihwkit/generate.py

One CPU thread (torch.set_num_threads(1)). Runtime: 8.5 minutes (497 s) on
one core of the machine it was generated on (2026-12-02), most of it in
reram_sb (149 s), constant_step (124 s) and ecram_mo (101 s). Output:
pulse_response.csv 22,020 rows (0.97 MB), summary.csv 520 rows. Options:
`--presets a,b` and `--seeds 1,2` for partial runs (writes the CSVs for
those only), `--out DIR`, `--skip-verify`.
"""

import argparse
import csv
import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch

import aihwkit
from aihwkit.simulator.configs import SingleRPUConfig
from aihwkit.simulator.parameters import UpdateParameters
from aihwkit.simulator.presets import devices as presets
from aihwkit.simulator.tiles import AnalogTile

N_DEVICES = 4000
SEEDS = [1, 2, 3, 4, 5]
ROWS_PER_DIRECTION = 150

PRESETS = {
    "constant_step": presets.GokmenVlasovPresetDevice,
    "reram_es": presets.ReRamESPresetDevice,
    "reram_sb": presets.ReRamSBPresetDevice,
    "ecram": presets.EcRamPresetDevice,
    "ecram_mo": presets.EcRamMOPresetDevice,
    "capacitor": presets.CapacitorPresetDevice,
    "pcm": presets.PCMPresetDevice,
    "reram_array_om": presets.ReRamArrayOMPresetDevice,
}

# N per direction, from nominal_pulses() and the rule in the docstring
# (recomputed and compared by verify()).
N_PULSES = {
    "constant_step": 4643,
    "reram_es": 3095,
    "reram_sb": 10785,
    "ecram": 1894,
    "ecram_mo": 14792,
    "capacitor": 745,
    "pcm": 175,
    "reram_array_om": 338,
}

NOISE_FIELDS = ("dw_min_std", "write_noise_std", "dw_min_std_add", "dw_min_std_slope")

SYM_FIRST = 1000
SYM_MAX_CYCLES = 128_000
SYM_TOL = 1e-4


def field_names(cls):
    return {f.name for f in dataclasses.fields(cls)}


def make_tile(key, seed, noise, n=N_DEVICES, nominal=False):
    """A tile of n x 1 devices of preset `key`; noise 'on' or 'off'."""
    cls = PRESETS[key]
    kw = dict(construction_seed=seed)
    if noise == "off":
        kw.update({f: 0.0 for f in NOISE_FIELDS if f in field_names(cls)})
    if nominal:
        kw.update({f: 0.0 for f in field_names(cls) if f.endswith("_dtod")})
        if "reference_std" in field_names(cls):
            kw["reference_std"] = 0.0
    torch.manual_seed(seed)
    update = UpdateParameters(desired_bl=1, update_management=False, update_bl_management=False)
    tile = AnalogTile(n, 1, SingleRPUConfig(device=cls(**kw), update=update))
    tile.set_learning_rate(1.0)
    hidden = tile.get_hidden_parameters()
    if "reference" in hidden:
        hidden["reference"] = torch.zeros_like(hidden["reference"])
        tile.set_hidden_parameters(hidden)
    return tile


def nominal_range(key):
    d = PRESETS[key]()
    return d.w_min, d.w_max


def to_g(key, w):
    w_min, w_max = nominal_range(key)
    return (np.asarray(w, dtype=np.float64) - w_min) / (w_max - w_min)


def state_w(tile):
    """The devices' own state in weight units (persistent, reference zeroed)."""
    hidden = tile.get_hidden_parameters()
    if "persistent_weights" in hidden:
        w = hidden["persistent_weights"]
    else:
        w = tile.get_weights(apply_weight_scaling=False)[0]
    return w.detach().numpy().astype(np.float64).ravel()


def hidden_np(tile, name):
    return tile.get_hidden_parameters()[name].detach().numpy().astype(np.float64).ravel()


def set_w(tile, w):
    n = tile.out_size
    w = np.broadcast_to(np.asarray(w, dtype=np.float32), (n,)).copy()
    tile.set_weights(torch.from_numpy(w).reshape(n, 1), apply_weight_scaling=False)


class Pulser:
    """One pulse on every device of a tile per call."""

    def __init__(self, tile):
        self.tile = tile
        self.x = torch.ones(1, 1)
        self.d_up = -torch.ones(1, tile.out_size)
        self.d_down = torch.ones(1, tile.out_size)

    def up(self):
        self.tile.update(self.x, self.d_up)

    def down(self):
        self.tile.update(self.x, self.d_down)


def set_to_lower_bound(key, tile):
    w_min, w_max = nominal_range(key)
    set_w(tile, w_min - 10.0 * (w_max - w_min))
    dev = np.abs(state_w(tile) - hidden_np(tile, "min_bound")).max()
    if dev > 1e-6:
        sys.exit(f"{key}: devices not at their own lower bound after set_weights (max dev {dev})")


def nominal_pulses(key):
    """Pulses a nominal device needs from one bound to within 1 % of the other."""
    tile = make_tile(key, 1, "off", n=1, nominal=True)
    p = Pulser(tile)
    lo, hi = hidden_np(tile, "min_bound")[0], hidden_np(tile, "max_bound")[0]
    tol = 0.01 * (nominal_range(key)[1] - nominal_range(key)[0])
    counts = []
    for start, target, pulse in ((lo, hi, p.up), (hi, lo, p.down)):
        set_w(tile, start)
        n = 0
        while abs(state_w(tile)[0] - target) > tol and n < 1_000_000:
            pulse()
            n += 1
        counts.append(n)
    return max(counts)


def n_rule(key):
    d = PRESETS[key]()
    q = math.exp(-2.0 * d.dw_min_dtod) if d.dw_min_dtod_log_normal else 1.0 - 2.0 * d.dw_min_dtod
    return math.ceil(1.5 * nominal_pulses(key) / q)


def verify(keys):
    """The checks named in the docstring; exits on failure."""
    # one update = exactly one own step per device (noise-free ConstantStep)
    tile = make_tile("constant_step", 11, "off")
    p = Pulser(tile)
    set_w(tile, 0.0)
    w0 = state_w(tile)
    p.up()
    w1 = state_w(tile)
    p.down()
    w2 = state_w(tile)
    e_up = np.abs((w1 - w0) - hidden_np(tile, "dwmin_up")).max()
    e_down = np.abs((w1 - w2) - hidden_np(tile, "dwmin_down")).max()
    print(f"verify: one update = own step: max |dw - dwmin_up| {e_up:.3g}, "
          f"max |dw - dwmin_down| {e_down:.3g}", file=sys.stderr)
    if e_up > 1e-7 or e_down > 1e-7:
        sys.exit("one update did not move every device by exactly its own step")
    # seeding
    for key in keys:
        a, b, c = make_tile(key, 1, "off"), make_tile(key, 1, "on"), make_tile(key, 2, "off")
        for name in ("max_bound", "min_bound", "dwmin_up", "dwmin_down"):
            ha, hb, hc = hidden_np(a, name), hidden_np(b, name), hidden_np(c, name)
            if not np.array_equal(ha, hb):
                sys.exit(f"{key}: noise-off and noisy tile of one seed differ in {name}")
            if np.array_equal(ha, hc) and ha.std() > 0:
                sys.exit(f"{key}: seeds 1 and 2 give the same {name}")
        a2 = make_tile(key, 1, "off")
        if not np.array_equal(hidden_np(a, "max_bound"), hidden_np(a2, "max_bound")):
            sys.exit(f"{key}: the same seed gives different bounds")
        n = n_rule(key)
        if n != N_PULSES[key]:
            sys.exit(f"{key}: N rule gives {n}, table has {N_PULSES[key]}")
    print("verify: seeding and N table ok", file=sys.stderr)


def pulse_response(key, seed, noise, writer):
    n = N_PULSES[key]
    k = math.ceil(n / ROWS_PER_DIRECTION)
    tile = make_tile(key, seed, noise)
    p = Pulser(tile)
    set_to_lower_bound(key, tile)
    for direction, pulse in (("up", p.up), ("down", p.down)):
        for i in range(n):
            pulse()
            if i % k == 0 or i == n - 1:
                g = to_g(key, state_w(tile))
                writer.writerow([key, noise, seed, direction, i, f"{g.mean():.7g}", f"{g.std():.7g}"])


def symmetry_point(key, tile):
    """Alternate up/down from w = 0; checkpoints at SYM_FIRST * 2^k cycles."""
    p = Pulser(tile)
    set_w(tile, 0.0)
    prev = None
    cycles = 0
    target = SYM_FIRST
    while True:
        while cycles < target - 1:
            p.up()
            p.down()
            cycles += 1
        # the last cycle, read after its up and after its down pulse
        p.up()
        g_up = to_g(key, state_w(tile))
        p.down()
        g_down = to_g(key, state_w(tile))
        cycles += 1
        sp = 0.5 * (g_up + g_down)
        cur = (sp.mean(), sp.std())
        if prev is not None and abs(cur[0] - prev[0]) < SYM_TOL and abs(cur[1] - prev[1]) < SYM_TOL:
            return cur[0], cur[1], cycles
        if cycles >= SYM_MAX_CYCLES:
            return cur[0], cur[1], cycles
        prev = cur
        target *= 2


def summary(key, seed, writer):
    rows = []
    clean = make_tile(key, seed, "off")
    lo = to_g(key, hidden_np(clean, "min_bound"))
    hi = to_g(key, hidden_np(clean, "max_bound"))
    rows += [("lower_bound_mean", lo.mean()), ("lower_bound_std", lo.std()),
             ("upper_bound_mean", hi.mean()), ("upper_bound_std", hi.std())]
    p = Pulser(clean)
    for name, pulse in (("up", p.up), ("down", p.down)):
        set_w(clean, 0.0)
        g0 = to_g(key, state_w(clean))
        pulse()
        dg = np.abs(to_g(key, state_w(clean)) - g0)
        mean = dg.mean()
        cv = dg.std() / mean if mean > 0 else float("nan")
        rows += [(f"step_{name}_at_zero_mean", mean), (f"step_{name}_at_zero_cv", cv)]
    sp_mean, sp_std, cycles = symmetry_point(key, clean)
    rows += [("symmetry_point_mean", sp_mean), ("symmetry_point_std", sp_std),
             ("symmetry_point_cycles", cycles)]
    # cycle-to-cycle noise of one up pulse: noise-free and noisy tile, same devices
    noisy = make_tile(key, seed, "on")
    for name in ("min_bound", "max_bound", "dwmin_up", "dwmin_down"):
        if not np.array_equal(hidden_np(clean, name), hidden_np(noisy, name)):
            sys.exit(f"{key} seed {seed}: noisy and clean tiles differ in {name}")
    w_min, w_max = nominal_range(key)
    lo_w, hi_w = hidden_np(clean, "min_bound"), hidden_np(clean, "max_bound")
    for g_at in (0.25, 0.5):
        w_at = w_min + g_at * (w_max - w_min)
        inside = (lo_w < w_at) & (w_at < hi_w)
        deltas = []
        for tile in (clean, noisy):
            set_w(tile, w_at)
            s0 = state_w(tile)
            Pulser(tile).up()
            deltas.append(to_g(key, state_w(tile)) - to_g(key, s0))
            if not np.all(np.abs(s0[inside] - w_at) < 1e-6):
                sys.exit(f"{key}: devices not at w = {w_at} before the c2c pulse")
        d_clean, d_noisy = deltas[0][inside], deltas[1][inside]
        rows.append((f"c2c_up_at_{g_at}", (d_noisy - d_clean).std() / d_clean.mean()))
    for stat, value in rows:
        writer.writerow([key, seed, stat, value if stat == "symmetry_point_cycles" else f"{value:.7g}"])
    return cycles


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--skip-verify", action="store_true")
    args = ap.parse_args()
    keys = args.presets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    print(f"aihwkit {aihwkit.__version__}, torch {torch.__version__}", file=sys.stderr)
    t_start = time.perf_counter()
    if not args.skip_verify:
        verify(keys)
    with open(os.path.join(args.out, "pulse_response.csv"), "w", newline="") as f_pr, \
            open(os.path.join(args.out, "summary.csv"), "w", newline="") as f_sum:
        pr = csv.writer(f_pr, lineterminator="\n")
        sm = csv.writer(f_sum, lineterminator="\n")
        pr.writerow(["preset", "noise", "seed", "direction", "pulse", "mean_g", "std_g"])
        sm.writerow(["preset", "seed", "statistic", "value"])
        for key in keys:
            for seed in seeds:
                t0 = time.perf_counter()
                for noise in ("off", "on"):
                    pulse_response(key, seed, noise, pr)
                cycles = summary(key, seed, sm)
                print(f"{key} seed {seed}: {time.perf_counter() - t0:.1f} s "
                      f"(symmetry point {cycles} cycles)", file=sys.stderr)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
