#!/usr/bin/env bash
# Installs ktf to a fresh prefix, builds examples/my_custom_model against that prefix only
# (find_package(ktf)), runs its conformance tests (with the installed plugins its components use),
# then lists, describes and trains it with the installed ktf-host: on Fashion-MNIST with its
# nested-head network, focal loss, mixup step and gradient-norm callback, and on its generated
# dataset with plain SGD.
#   install_roundtrip.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
BUILD=$1 SRC=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export KTF_PLUGIN_PATH=
cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
# The example must not see the source or build tree: only the installed prefix.
cp -r "$SRC/examples/my_custom_model" "$WORK/src"
cmake -S "$WORK/src" -B "$WORK/build" -G Ninja -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/build"
ctest --test-dir "$WORK/build" --output-on-failure
HOST="$WORK/prefix/bin/ktf-host"
list=$("$HOST" --plugins "$WORK/build" --list network)
grep -q '^  MyCustomModel ' <<<"$list" || { echo "MyCustomModel not listed:"; echo "$list"; exit 1; }
grep -q 'ktf.networks.MLP' <<<"$list" || { echo "installed plugins not loaded by default"; exit 1; }
"$HOST" --plugins "$WORK/build" --describe MyCustomModel | tee "$WORK/describe.txt"
grep -q "provided by: my_custom_model 1.1.0 ($WORK/build/libmy_custom_model.so)" "$WORK/describe.txt"
grep -q "width  *int  *16  *filters of the first conv block (>= 1)" "$WORK/describe.txt"
grep -q 'head  *network  *{"ktf.networks.MLP"' "$WORK/describe.txt"
LOOP=/0/train_loop/ktf.train.CustomTrainLoop
"$HOST" --plugins "$WORK/build" -c "$WORK/src/config.json" --output-dir "$WORK/run" \
  --set $LOOP/num_epochs=1 --set $LOOP/steps_per_epoch=300 --set $LOOP/verbose=2
test -f "$WORK/run/weights/cycle-1.pt"
acc=$(grep '"phase": "epoch"' "$WORK/run/metrics.jsonl" | grep -o '"val_accuracy": [0-9.]*' |
  tail -1 | awk '{print $2}')
echo "val_accuracy after 300 steps: $acc"
awk -v a="$acc" 'BEGIN { exit !(a > 0.70) }'
# The plugin step's extra value and the plugin callback's gradient norms reach metrics.jsonl.
lam=$(grep '"phase": "epoch"' "$WORK/run/metrics.jsonl" | grep -o '"lambda": [0-9.e-]*' | awk '{print $2}')
echo "mean mixup lambda: $lam"
awk -v l="$lam" 'BEGIN { exit !(l > 0 && l < 1) }'
norm=$(grep '"phase": "grad_norm"' "$WORK/run/metrics.jsonl" | grep -o '"grad_norm": [0-9.e-]*' |
  awk '{print $2}')
echo "mean gradient norm: $norm"
awk -v g="$norm" 'BEGIN { exit !(g > 0) }'
grep '"phase": "grad_norm"' "$WORK/run/metrics.jsonl" | grep -q '"steps": 300}'
# The generated dataset (ktf::IndexedDataset), plain SGD: the callback still sees gradients.
"$HOST" --plugins "$WORK/build" -c "$WORK/src/config_stripes.json" --output-dir "$WORK/stripes" \
  --quiet
acc=$(grep '"phase": "epoch"' "$WORK/stripes/metrics.jsonl" | grep -o '"val_accuracy": [0-9.]*' |
  tail -1 | awk '{print $2}')
echo "stripes val_accuracy: $acc"
awk -v a="$acc" 'BEGIN { exit !(a > 0.90) }'
test "$(grep -c '"phase": "grad_norm"' "$WORK/stripes/metrics.jsonl")" -eq 3
echo "install round trip: passed"
