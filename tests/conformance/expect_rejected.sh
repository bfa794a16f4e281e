#!/usr/bin/env bash
# Runs the conformance suite on one component of a broken fixture plugin and passes when the suite
# FAILS it with the expected message.
#   expect_rejected.sh RUNNER PLUGIN GTEST_FILTER EXPECTED_TEXT
set -uo pipefail
RUNNER=$1 PLUGIN=$2 FILTER=$3 EXPECTED=$4
out=$("$RUNNER" "$PLUGIN" --gtest_filter="$FILTER" 2>&1)
rc=$?
if [[ $rc -eq 0 ]]; then
  echo "the conformance suite accepted $FILTER:"; echo "$out"; exit 1
fi
if ! grep -qF -- "$EXPECTED" <<<"$out"; then
  echo "the conformance suite failed $FILTER, but without '$EXPECTED':"; echo "$out"; exit 1
fi
grep -c "Running 1 test" <<<"$out" >/dev/null || { echo "no test ran for $FILTER"; echo "$out"; exit 1; }
echo "rejected as expected: $FILTER ($EXPECTED)"
