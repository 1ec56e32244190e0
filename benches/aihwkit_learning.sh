#!/usr/bin/env bash
# The dyadsim side of the learning comparison with aihwkit 1.1
# (docs/benchmarks.md, "Learning: same physics, same accuracy"): aihwkit's
# MNIST example network with its settings (benches/aihwkit_parity/DEVICE.toml)
# trained on all 60,000 training images for 3 epochs, seeds 1-3, test
# accuracy on the 10,000 test images after each epoch. The aihwkit side is
# benches/aihwkit_learning.py.
#
#   bash benches/aihwkit_learning.sh [OUT_DIR]      # default /tmp/dyadsim_learning
#
# Prints one line per run (device, seed, test accuracy and training loss per
# epoch) and keeps each run's result.json in OUT_DIR/DEVICE_seedN.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/dyadsim_learning}
mkdir -p "$out"
cargo build --release --quiet
for device in constant_step reram_es; do
  for seed in 1 2 3; do
    ./target/release/dyadsim train --quiet --json \
      --config "benches/aihwkit_parity/$device.toml" \
      --seed "$seed" --epochs 3 \
      --set data.train_size=60000 --set data.validation_size=0 --set data.test_size=10000 \
      | tail -n 1 > "$out/${device}_seed$seed.json"
    python3 - "$out/${device}_seed$seed.json" "$device" "$seed" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
acc = " / ".join(f"{100 * e['test_accuracy']:.1f}" for e in r["epochs"])
loss = " / ".join(f"{e['train_loss']:.3f}" for e in r["epochs"])
print(f"{sys.argv[2]:<14} seed {sys.argv[3]}: test accuracy {acc} %, training loss {loss}, {r['wall_seconds']:.0f} s")
PY
  done
done
