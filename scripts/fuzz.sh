#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, AddressSanitizer + UndefinedBehaviorSanitizer) into
# build-fuzz/ and runs each for a bounded time over its seed corpus (fuzz/corpus/<target>).
#   ./scripts/fuzz.sh                 every target, KTF_FUZZ_SECONDS (default 60) each
#   ./scripts/fuzz.sh fuzz_csv        one target
#   KTF_FUZZ_SECONDS=600 ./scripts/fuzz.sh
# New inputs the fuzzer finds go to build-fuzz/corpus/<target> (the committed corpus is not
# touched); a crash, leak, timeout or out-of-memory leaves build-fuzz/findings/<target>/crash-*
# (or timeout-*, oom-*, leak-*), and the script exits 1 naming it. Turn each finding into a
# regression test (tests/core/fuzz_regressions_test.cpp) and its input into a corpus file.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${KTF_FUZZ_SECONDS:-60}
BUILD_DIR=${KTF_FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=(fuzz_config fuzz_idx fuzz_csv fuzz_tfrecord fuzz_example fuzz_image)
fi
KTF_SETUP_FUZZ=1 ./scripts/setup.sh
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros}
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-ccache}
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKTF_FUZZ=ON -DKTF_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "${KTF_JOBS:-$(nproc)}" --target fuzz_targets
# libtorch is not instrumented; its allocations at exit are not ours to report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
status=0
summary=()
for t in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/corpus/$t"
  findings="$BUILD_DIR/findings/$t"
  mkdir -p "$corpus" "$findings"
  log="$BUILD_DIR/findings/$t.log"
  echo "fuzz: $t for ${SECONDS_EACH} s (log $log)"
  # -rss_limit_mb: an input that makes a reader allocate more than 2 GiB is a finding.
  if "$BUILD_DIR/fuzz/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
      "$corpus" "fuzz/corpus/$t" $([[ -d fuzz/regressions/$t ]] && echo "fuzz/regressions/$t") \
      >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    summary+=("$t: ${runs:-?} executions in ${SECONDS_EACH} s, coverage ${cov:-?} edges, no finding")
  else
    status=1
    found=$(ls -t "$findings" | head -1)
    summary+=("$t: FINDING $findings/$found (see $log)")
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
