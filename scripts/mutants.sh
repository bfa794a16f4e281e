#!/usr/bin/env bash
# Mutation checks (see scripts/mutants.py): each mutant in scripts/mutants.tsv must be killed by
# the tests named for it. Needs a configured build (scripts/build.sh).
#   scripts/mutants.sh [BUILD_DIR] [--only SUBSTRING]
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros}
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ktf-ccache}
exec python3 scripts/mutants.py "$@"
