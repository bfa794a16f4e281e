#!/usr/bin/env bash
# Builds ktf with sanitizers and runs the test suite under them; any report fails the run.
#   ./scripts/sanitize.sh            both parts below
#   ./scripts/sanitize.sh asan [ctest options...]
#       AddressSanitizer + UndefinedBehaviorSanitizer (GCC): every target in build-asan/, the
#       whole ctest suite (ktf-host and every process the tests start are instrumented too)
#   ./scripts/sanitize.sh tsan
#       ThreadSanitizer: build-tsan/, the data pipeline's threads (prefetching, the shuffle
#       buffer, the TFRecord readers, checkpoints written from a background thread)
# Reports go to <build>/sanitizer-logs/ rather than stderr (tests compare ktf's messages); the
# script lists them and exits 1 when there is any. Sanitizer exits use code 86, which no ktf error
# has, so a test expecting exit 1 or 2 fails too. libtorch, OpenMP and protobuf are not
# instrumented: LeakSanitizer skips memory they keep (fuzz/lsan.supp).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
[[ $# -gt 0 ]] && shift
KTF_SETUP_TESTS=1 ./scripts/setup.sh
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros}
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-ccache}
JOBS=${KTF_JOBS:-$(nproc)}
status=0

reports() {  # reports <log dir> <label>
  local n
  n=$(find "$1" -type f | wc -l)
  if ((n > 0)); then
    echo "sanitize: $2: $n report(s):"
    find "$1" -type f | sort | head -20 | while read -r f; do
      echo "== $f"
      head -40 "$f"
    done
    status=1
  else
    echo "sanitize: $2: no report"
  fi
}

if [[ $MODE == asan || $MODE == all ]]; then
  B=build-asan
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKTF_SANITIZE=address,undefined \
    >/dev/null
  cmake --build $B -j "$JOBS"
  rm -rf "$PWD/$B/sanitizer-logs" && mkdir -p "$PWD/$B/sanitizer-logs"
  export ASAN_OPTIONS="log_path=$PWD/$B/sanitizer-logs/asan:exitcode=86:detect_leaks=1:detect_odr_violation=0:allocator_may_return_null=1"
  export UBSAN_OPTIONS="log_path=$PWD/$B/sanitizer-logs/ubsan:exitcode=86:print_stacktrace=1:halt_on_error=1"
  # use_tls=0: GCC 12's LeakSanitizer crashes scanning glibc 2.36's dynamic TLS at exit in a
  # process that ran oneDNN's convolutions ("Tracer caught signal 11", exit 86, no report). Not
  # scanning TLS can only add reports (memory held only there looks leaked), not hide one;
  # fuzz/lsan.supp names what glibc and GLib keep there.
  export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0:use_tls=0"
  start=$(date +%s)
  (cd $B && ctest --output-on-failure --timeout 4000 -j "$JOBS" "$@") || status=1
  echo "sanitize: asan+ubsan suite took $(($(date +%s) - start)) s"
  reports "$PWD/$B/sanitizer-logs" "AddressSanitizer + UndefinedBehaviorSanitizer"
  unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
fi

if [[ $MODE == tsan || $MODE == all ]]; then
  B=build-tsan
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKTF_SANITIZE=thread >/dev/null
  cmake --build $B -j "$JOBS" --target ktf_datasets_tests ktf_core_tests ktf_datasets ktf_networks \
    ktf_losses ktf_optimizers ktf_train
  rm -rf "$PWD/$B/sanitizer-logs" && mkdir -p "$PWD/$B/sanitizer-logs"
  # One OpenMP thread: libgomp is not instrumented, so its barriers would look like races.
  export OMP_NUM_THREADS=1
  export TSAN_OPTIONS="log_path=$PWD/$B/sanitizer-logs/tsan:exitcode=86:halt_on_error=0:second_deadlock_stack=1"
  start=$(date +%s)
  $B/tests/datasets/ktf_datasets_tests --gtest_filter='Pipeline.*:TFRecord*:Csv*' || status=1
  $B/tests/core/ktf_core_tests --gtest_filter='DatasetBase.*:DataShard.*:State.*:CheckpointStore.*:RunLog.*' || status=1
  echo "sanitize: tsan data pipeline took $(($(date +%s) - start)) s"
  reports "$PWD/$B/sanitizer-logs" "ThreadSanitizer"
fi
exit $status
