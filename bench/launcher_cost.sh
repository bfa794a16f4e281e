#!/usr/bin/env bash
# What ktf-host's launcher costs: --version (the launcher alone, no libtorch), --list (the launcher,
# libtorch, the engine and the plugins), and --list when the launcher must re-execute itself to
# replace OpenBLAS's kernels (forced with KTF_BLAS_PRETEND_LIBRARY_CHOICE=Prescott, as on a CPU
# newer than the library). Medians of N alternating runs, wall time.
#   bench/launcher_cost.sh [N]   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-15}
H="build/ktf-host --plugins build/plugins"
export KTF_PLUGIN_PATH=
unset OPENBLAS_CORETYPE
python3 - "$N" "$H" <<'PY'
import os, statistics, subprocess, sys, time
n, host = int(sys.argv[1]), sys.argv[2].split()
cases = {
    "--version (launcher only)": (host[:1] + ["--version"], {}),
    "--list (no re-execution)": (host + ["--list"], {}),
    "--list (re-executed once with OPENBLAS_CORETYPE)": (host + ["--list"],
                                                         {"KTF_BLAS_PRETEND_LIBRARY_CHOICE": "Prescott"}),
}
times = {k: [] for k in cases}
for i in range(n):
    for name, (cmd, extra) in (cases.items() if i % 2 == 0 else reversed(list(cases.items()))):
        env = dict(os.environ, **extra)
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times[name].append(time.perf_counter() - t)
for name, ts in times.items():
    print(f"{name}: median {1e3 * statistics.median(ts):.1f} ms (min {1e3 * min(ts):.1f}, n={n})")
PY
