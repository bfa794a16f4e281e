#!/bin/bash
# GPU check, run on a lent GPU machine (PyTorch 2.x wheel with CUDA, Ubuntu, no network): builds
# ktf against that libtorch, trains the ResNet and the two-cycle configs on the GPU, evaluates them
# with the host, and reads the TensorBoard logs with TensorBoard's own EventAccumulator.
#
# The machine lacks Boost, RapidJSON, protobuf, libpng and the dataset; they travel in .deps/
# (ignored by git), prepared here on Debian 12:
#   mkdir -p .deps && cd .deps && apt-get download libboost1.74-dev \
#     libboost-program-options1.74-dev libboost-program-options1.74.0 rapidjson-dev \
#     libprotobuf-dev libprotobuf32 protobuf-compiler libprotoc32 libpng-dev libpng16-16 zlib1g-dev
#   cp -r /usr/share/datasets/fashion-mnist .deps/ && cp ../scripts/gpu/device_check.sh .deps/
# then, on the GPU machine, from the repository root: bash .deps/device_check.sh (OUT=<dir> for
# the logs). Results of 2026-11-26 (H200) are in docs/runs/ and docs/models.md.
OUT=${OUT:-/tmp/ktf-gpu-out}; mkdir -p "$OUT"
set -u
T0=$(date +%s)
stamp() { echo "[device +$(( $(date +%s) - T0 ))s] $*"; }
D=/tmp/deps; mkdir -p $D
for f in .deps/*.deb; do dpkg -x "$f" $D; done
export PATH=$D/usr/bin:$PATH LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
rm -f $D/usr/lib/x86_64-linux-gnu/libz.a; ls -la /usr/lib/x86_64-linux-gnu/libz.so*
mkdir -p /usr/share/datasets && cp -r .deps/fashion-mnist /usr/share/datasets/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
g++ --version | head -1; cmake --version | head -1
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch;print("torch", torch.__version__, torch.version.cuda)'
stamp configure; rm -f /tmp/b/CMakeCache.txt
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DKTF_BUILD_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$TP;$D/usr" -DRAPIDJSON_INCLUDE_DIR=$D/usr/include \
  -DProtobuf_PROTOC_EXECUTABLE=$D/usr/bin/protoc -DProtobuf_INCLUDE_DIR=$D/usr/include \
  -DProtobuf_LIBRARY=$D/usr/lib/x86_64-linux-gnu/libprotobuf.so \
  -DBoost_DIR=$D/usr/lib/x86_64-linux-gnu/cmake/Boost-1.74.0 \
  -DZLIB_INCLUDE_DIR=$D/usr/include -DZLIB_LIBRARY_RELEASE=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1) -DPNG_PNG_INCLUDE_DIR=$D/usr/include \
  -DPNG_LIBRARY=$D/usr/lib/x86_64-linux-gnu/libpng16.so > $OUT/cmake.log 2>&1 || { tail -40 $OUT/cmake.log; exit 1; }
grep -n "KTF_PROTOBUF_INCLUDE_DIRS\|Protobuf_INCLUDE" /tmp/b/CMakeCache.txt | head -5
ninja -C /tmp/b -t commands sdk/libktf_sdk.so | grep "example.pb.cc" | grep -o -- "-I[^ ]*\|-isystem [^ ]*" | head -8
stamp build
ninja -C /tmp/b -j16 ktf-host ktf_datasets ktf_networks ktf_losses ktf_optimizers ktf_train > $OUT/build.log 2>&1 || { grep -B2 -A12 "error" $OUT/build.log | head -80; exit 1; }
stamp built
H="/tmp/b/ktf-host --plugins /tmp/b/plugins --device cuda --threads 8"
$H --version
run() {  # name config seconds
  stamp "train $1"
  timeout -s INT $3 $H -c "$2" -o runs/$1 > $OUT/$1.log 2>&1; echo "exit $?"
  grep -v "^\s*$" $OUT/$1.log | grep -E "epoch|cycle|Epoch" | tail -40
  stamp "evaluate $1"
  $H --evaluate runs/$1 2>&1 | tail -12
  cp runs/$1/metrics.jsonl $OUT/$1.metrics.jsonl
}
run resnet configs/fashion_mnist_resnet.json 180
run two_cycles configs/fashion_mnist_two_cycles.json 115
stamp tensorboard
python3 - <<'PY'
from tensorboard.backend.event_processing import event_accumulator as ea
import glob, os
for d in sorted({os.path.dirname(p) for p in glob.glob("runs/two_cycles/tensorboard/**/events.out.tfevents.*", recursive=True)}):
    acc = ea.EventAccumulator(d, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    print(d, {k: len(v) for k, v in tags.items() if isinstance(v, list)})
    for t in tags["scalars"]:
        ev = acc.Scalars(t)
        print("  scalar", t, [(e.step, round(e.value, 4)) for e in ev][:6])
    for t in tags["histograms"][:3]:
        print("  histogram", t, len(acc.Histograms(t)), "steps")
    for t in tags["images"][:3]:
        im = acc.Images(t)
        print("  image", t, len(im), im[0].width, im[0].height)
    print("  graph:", acc.Graph() is not None if tags.get("graph") else "none")
PY
stamp done
