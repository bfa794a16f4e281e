#!/usr/bin/env bash
# Installs ktf to a fresh prefix, builds examples/my_custom_model against that prefix only
# (find_package(ktf)), runs its conformance tests, then lists, describes and trains it with the
# installed ktf-host.
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
grep -q "provided by: my_custom_model 1.0.0 ($WORK/build/libmy_custom_model.so)" "$WORK/describe.txt"
grep -q "width  *int  *16  *filters of the first conv block" "$WORK/describe.txt"
"$HOST" --plugins "$WORK/build" -c "$WORK/src/config.json" --output-dir "$WORK/run" \
  --set /0/train_loop/ktf.train.KerasTrainLoop/num_epochs=1 \
  --set /0/train_loop/ktf.train.KerasTrainLoop/steps_per_epoch=300 \
  --set /0/train_loop/ktf.train.KerasTrainLoop/verbose=2
test -f "$WORK/run/weights/cycle-1.pt"
acc=$(grep -o '"val_accuracy": [0-9.]*' "$WORK/run/metrics.jsonl" | tail -1 | awk '{print $2}')
echo "val_accuracy after 300 steps: $acc"
awk -v a="$acc" 'BEGIN { exit !(a > 0.70) }'
echo "install round trip: passed"
