#!/bin/bash
# GPU check, run on a lent GPU machine (PyTorch 2.x wheel with CUDA, Ubuntu, no network): builds
# ktf and its tests against that libtorch, runs the test suite and the plugin conformance suite
# on CUDA, checks the CUDA kernel plugin against libtorch's ops, trains with fp16 loss scaling and
# CUDA graphs, and runs bench/gpu.py (ktf against that machine's own PyTorch: eager fp32, eager
# bf16 autocast, torch.compile(mode="reduce-overhead")), whose report lands in $OUT/docs.
#
# The machine lacks Boost, RapidJSON, protobuf, libpng, GoogleTest and the dataset; they travel in
# .deps/ (ignored by git), prepared here on Debian 12:
#   mkdir -p .deps && cd .deps && apt-get download libboost1.74-dev \
#     libboost-program-options1.74-dev libboost-program-options1.74.0 rapidjson-dev \
#     libprotobuf-dev libprotobuf32 protobuf-compiler libprotoc32 libpng-dev libpng16-16 zlib1g-dev \
#     libgtest-dev googletest
#   cp -r /usr/share/datasets/fashion-mnist .deps/ && cp ../scripts/gpu/device_check.sh .deps/
# then, on the GPU machine, from the repository root: bash .deps/device_check.sh (OUT=<dir> for
# the logs; KTF_GPU_QUICK=1 skips the test suite). Results of 2026-11-26 (H200, fp32 only) are in
# docs/runs/ and docs/models.md.
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
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DKTF_BUILD_TESTS=ON \
  -DGTest_DIR=$D/usr/lib/x86_64-linux-gnu/cmake/GTest -DKTF_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$TP;$D/usr" -DRAPIDJSON_INCLUDE_DIR=$D/usr/include \
  -DProtobuf_PROTOC_EXECUTABLE=$D/usr/bin/protoc -DProtobuf_INCLUDE_DIR=$D/usr/include \
  -DProtobuf_LIBRARY=$D/usr/lib/x86_64-linux-gnu/libprotobuf.so \
  -DBoost_DIR=$D/usr/lib/x86_64-linux-gnu/cmake/Boost-1.74.0 \
  -DZLIB_INCLUDE_DIR=$D/usr/include -DZLIB_LIBRARY_RELEASE=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1) -DPNG_PNG_INCLUDE_DIR=$D/usr/include \
  -DPNG_LIBRARY=$D/usr/lib/x86_64-linux-gnu/libpng16.so > $OUT/cmake.log 2>&1 || { tail -40 $OUT/cmake.log; exit 1; }
grep -n "KTF_PROTOBUF_INCLUDE_DIRS\|Protobuf_INCLUDE" /tmp/b/CMakeCache.txt | head -5
ninja -C /tmp/b -t commands sdk/libktf_sdk.so | grep "example.pb.cc" | grep -o -- "-I[^ ]*\|-isystem [^ ]*" | head -8
grep -n "ktf: CUDA\|plugins/cuda" $OUT/cmake.log
stamp build
ninja -C /tmp/b -j16 > $OUT/build.log 2>&1 || { grep -B2 -A12 "error" $OUT/build.log | head -80; exit 1; }
stamp built
H="/tmp/b/ktf-host --plugins /tmp/b/plugins --device cuda --threads 8"
$H --version
stamp "CUDA kernel plugin against libtorch's ops"
/tmp/b/bench/ktf-bench-cuda-loss /tmp/b/plugins 300 2>&1 | tee $OUT/cuda_loss.jsonl; echo "exit ${PIPESTATUS[0]}"
stamp "conformance on CUDA"
for p in /tmp/b/plugins/*.so; do
  /tmp/b/ktf-conformance "$p" --with /tmp/b/plugins --device cuda > $OUT/conformance-$(basename $p .so).log 2>&1
  echo "$(basename $p): exit $? $(grep -E "PASSED|FAILED" $OUT/conformance-$(basename $p .so).log | tr '\n' ' ')"
done
grep -h -A3 "^\[  FAILED" $OUT/conformance-*.log | head -40
stamp "fp16 with loss scaling, CUDA graphs"
$H -c configs/fashion_mnist_cnn.json --precision fp16 -o runs/fp16 --quiet --set /0/lr_schedule/ktf.optimizers.schedules.CosineDecay/epochs=2 --set /0/train_loop/ktf.train.KerasTrainLoop/num_epochs=2 > $OUT/fp16.log 2>&1; echo "exit $?"
grep -h "cuda graphs\|loss\|accuracy" runs/fp16/log.txt | tail -6; tail -2 runs/fp16/metrics.jsonl
$H -c configs/fashion_mnist_cnn.json -o runs/graphs --quiet --set /0/lr_schedule/ktf.optimizers.schedules.CosineDecay/epochs=2 --set /0/train_loop/ktf.train.KerasTrainLoop/num_epochs=2 > $OUT/graphs.log 2>&1; echo "exit $?"
grep -h "cuda graphs\|accuracy" runs/graphs/log.txt | tail -6
$H --evaluate runs/graphs 2>&1 | tail -4
stamp "benchmark against this machine's PyTorch"
python3 bench/gpu.py --host /tmp/b/ktf-host --plugins /tmp/b/plugins --reps ${KTF_GPU_REPS:-1} --out $OUT/docs 2>&1 | tail -30
run() {  # name config seconds
  stamp "train $1"
  timeout -s INT $3 $H -c "$2" -o runs/$1 "${@:4}" > $OUT/$1.log 2>&1; echo "exit $?"
  grep -v "^\s*$" $OUT/$1.log | grep -E "epoch|cycle|Epoch" | tail -40
  stamp "evaluate $1"
  $H --evaluate runs/$1 2>&1 | tail -12
  cp runs/$1/metrics.jsonl $OUT/$1.metrics.jsonl
}
run resnet configs/fashion_mnist_resnet.json 150 --precision bf16
if [[ "${KTF_GPU_QUICK:-0}" != "1" ]]; then
  stamp "test suite (CUDA build; tests that need Debian's torchrun, network namespaces or python3-torch left out)"
  (cd /tmp/b && ctest -j12 --timeout 240 -E "Distributed|deploy|Torchrun|Python" > $OUT/ctest.log 2>&1); echo "exit $?"
  tail -25 $OUT/ctest.log
fi
stamp done
