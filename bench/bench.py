#!/usr/bin/python3
"""ktf vs. PyTorch-in-Python, measured side by side (run by bench/run.sh after the build).

Runs ktf-host on bench/configs/*.json and bench/reference/train_reference.py on the same model,
data, batch size, optimizer, epochs and threads, alternating, --reps times each, and reports
medians and ratios ktf/PyTorch in docs/benchmarks.md with a chart docs/benchmarks.png.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, "build", "ktf-host")
PLUGINS = os.path.join(ROOT, "build", "plugins")
PIPELINE = os.path.join(ROOT, "build", "bench", "ktf-bench-pipeline")
REFERENCE = os.path.join(ROOT, "bench", "reference", "train_reference.py")
PY = "/usr/bin/python3"

# FLOPs of one forward pass of the benchmark CNN on a 28x28 image (multiply-adds x 2).
CNN_FWD_FLOPS = 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 32 * 9 + 1600 * 128 + 128 * 10)


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (stdout, max RSS in KiB)."""
    with tempfile.NamedTemporaryFile("r") as t:
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if out.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{out.stdout}")
        return out.stdout, int(t.read().strip().splitlines()[-1])


def run_ktf(config, threads, workdir, seed):
    run_dir = os.path.join(workdir, f"ktf-{os.path.basename(config)}-{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)
    env = dict(os.environ, KTF_PLUGIN_PATH="")
    _, rss = timed([HOST, "--plugins", PLUGINS, "-c", config, "--threads", str(threads),
                    "--seed", str(seed), "-o", run_dir, "--quiet"], env)
    epochs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    log = open(os.path.join(run_dir, "log.txt")).read()
    first = epochs[0]["first_step_after_start"]
    data = float(re.search(r"dataset built in ([0-9.]+) s", log).group(1))
    train_s = sum(e["train_seconds"] for e in epochs)
    samples = sum(e["train_samples"] for e in epochs)
    steps = sum(e["train_steps"] for e in epochs)
    result = {"samples_per_second": samples / train_s, "seconds_per_step": train_s / steps,
              "startup_to_first_step": first, "startup_minus_data": first - data,
              "max_rss_kb": rss, "time_to_target": None, "history": epochs}
    elapsed = 0.0
    for e in epochs:
        elapsed += e["train_seconds"]
        if e.get("val_accuracy", 0) >= 0.90 and result["time_to_target"] is None:
            result["time_to_target"] = elapsed
    return result


def run_reference(model, threads, seed, extra=()):
    out, rss = timed([PY, REFERENCE, "--model", model, "--threads", str(threads), "--seed", str(seed)]
                     + list(extra))
    r = json.loads(out.strip().splitlines()[-1])
    r["max_rss_kb"] = rss
    return r


def matmul_peak(threads):
    code = ("import torch,time;torch.set_num_threads(%d);a=torch.randn(2048,2048);b=torch.randn(2048,2048)\n"
            "for _ in range(3): a@b\n"
            "best=0\n"
            "for _ in range(10):\n t=time.perf_counter();a@b;best=max(best,2*2048**3/(time.perf_counter()-t))\n"
            "print(best/1e9)") % threads
    return float(subprocess.check_output([PY, "-c", code], text=True).strip())


def conv_time(threads):
    """bench/cnn_conv_time.py: the CNN's convolutions' time per step, and the share of the peak
    they allow."""
    out = subprocess.check_output([PY, os.path.join(ROOT, "bench", "cnn_conv_time.py"),
                                   "--threads", str(threads)], text=True)
    return json.loads(out)


def load_floor(reps=7):
    """Median wall time of `ktf-host --version` (loads libtorch and its libraries, does nothing),
    and of Python's `import torch`, for reading the start-up row."""
    def wall(cmd):
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    return {"ktf_host_version": wall([HOST, "--version"]),
            "python_import_torch": wall([PY, "-c", "import torch"])}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-resnet", action="store_true")
    p.add_argument("--skip-target", action="store_true", help="skip time-to-0.90 (the longest part)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs"))
    p.add_argument("--cases", default="",
                   help="comma-separated subset of mlp,cnn,tiny,resnet,cnn_to_090 (default: all)")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite benchmarks.md/.png from the measurements in OUT/benchmarks.json "
                        "(e.g. after editing bench/notes.md); runs nothing")
    a = p.parse_args()
    if a.report_only:
        raw = json.load(open(os.path.join(a.out, "benchmarks.json")))
        a.reps = raw.get("reps", a.reps)
        write_report(a, raw["results"], raw["pipeline"], raw["matmul_peak_gflops"],
                     raw["load_floor_seconds"], raw.get("cnn_conv_time"))
        return
    work = tempfile.mkdtemp(prefix="ktf-bench-")
    cfg = lambda name: os.path.join(ROOT, "bench", "configs", name + ".json")
    cases = [("mlp", "mlp", []), ("cnn", "cnn", []), ("tiny", "tiny", ["--epochs", "3"])]
    if not a.skip_resnet:
        cases.append(("resnet", "resnet", ["--steps", "40"]))
    if not a.skip_target:
        cases.append(("cnn_to_090", "cnn", ["--epochs", "6", "--eval"]))
    if a.cases:
        cases = [c for c in cases if c[0] in a.cases.split(",")]
    results = {name: {"ktf": [], "pytorch": []} for name, _, _ in cases}
    for rep in range(a.reps):
        for name, model, extra in cases:
            # Alternate which implementation goes first, so drift hits both alike.
            order = ["ktf", "pytorch"] if rep % 2 == 0 else ["pytorch", "ktf"]
            for impl in order:
                print(f"bench: rep {rep + 1}/{a.reps} {name} {impl}", flush=True)
                if impl == "ktf":
                    r = run_ktf(cfg(name), a.threads, work, rep)
                else:
                    r = run_reference(model, a.threads, rep, extra)
                results[name][impl].append(r)
    if a.cases:  # a subset: print the medians and keep the raw runs; the report needs every case
        summary = {}
        for name in results:
            k = median([r["samples_per_second"] for r in results[name]["ktf"]])
            t = median([r["samples_per_second"] for r in results[name]["pytorch"]])
            summary[name] = {"ktf_samples_per_second": k, "pytorch_samples_per_second": t,
                             "ratio": k / t, "runs": results[name]}
            print(f"bench: {name}: ktf {k:.1f} samples/s, PyTorch {t:.1f} samples/s, "
                  f"ratio {k / t:.3f}")
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, f"benchmarks-{a.cases.replace(',', '-')}.json"), "w") as f:
            json.dump(summary, f, indent=1)
        shutil.rmtree(work, ignore_errors=True)
        return
    pipeline = []
    for rep in range(a.reps):
        out = subprocess.check_output([PIPELINE, PLUGINS, cfg("pipeline"), "5"], text=True)
        pipeline.append(json.loads(out.strip().splitlines()[-1])["samples_per_second"])
    peak = matmul_peak(a.threads)
    floor = load_floor()
    convs = conv_time(a.threads)
    write_report(a, results, pipeline, peak, floor, convs)
    shutil.rmtree(work, ignore_errors=True)


def write_report(a, results, pipeline, peak, floor, convs=None):
    def med(name, impl, key):
        return median([r[key] for r in results[name][impl]])

    rows = []  # (measure, ktf, pytorch, ratio, target, met)

    def add(measure, name, key, target_ratio, higher_better, fmt="{:.0f}"):
        if name not in results:
            return
        k, t = med(name, "ktf", key), med(name, "pytorch", key)
        if k is None or t is None:
            rows.append((measure, fmt.format(k) if k else "not reached", fmt.format(t) if t else "not reached", "-", "", "no"))
            return
        ratio = k / t
        if target_ratio is None:  # reported for information; the target is stated below the table
            rows.append((measure, fmt.format(k), fmt.format(t), f"{ratio:.2f}", "-", "-"))
            return
        met = ratio >= target_ratio if higher_better else ratio <= target_ratio
        rows.append((measure, fmt.format(k), fmt.format(t), f"{ratio:.2f}",
                     ("≥ " if higher_better else "≤ ") + f"{target_ratio}", "yes" if met else "**no**"))

    add("MLP 784-256-128-10 throughput (samples/s)", "mlp", "samples_per_second", 1.5, True)
    add("CNN throughput (samples/s)", "cnn", "samples_per_second", 1.05, True)
    add("ResNet-18 throughput (samples/s)", "resnet", "samples_per_second", 1.05, True, "{:.1f}")
    add("tiny MLP 784-32-10: time per step (ms)", "tiny", "seconds_per_step", 0.5, False, "{:.7f}")
    add("CNN: training time to 0.90 test accuracy (s)", "cnn_to_090", "time_to_target", 1.0, False, "{:.1f}")
    add("start-up to first step, minus data decoding (s), MLP", "mlp", "startup_minus_data", None, False, "{:.3f}")
    add("start-up to first step, total (s), MLP", "mlp", "startup_to_first_step", None, False, "{:.3f}")
    add("peak resident memory (MiB), CNN", "cnn", "max_rss_kb", 1.0, False, "{:.0f}")
    # Convert units in place for readability.
    fixed = []
    for r in rows:
        if r[0].startswith("tiny"):
            r = (r[0],) + tuple(f"{float(x) * 1000:.3f}" if i < 2 and x[0].isdigit() else x for i, x in enumerate(r[1:3])) + r[3:]
        if r[0].startswith("peak"):
            r = (r[0],) + tuple(f"{float(x) / 1024:.0f}" if x[0].isdigit() else x for x in r[1:3]) + r[3:]
        fixed.append(r)
    rows = fixed
    startup = med("mlp", "ktf", "startup_minus_data")
    cnn_rate = med("cnn", "ktf", "samples_per_second")
    pipe = statistics.median(pipeline)
    gflops = cnn_rate * 3 * CNN_FWD_FLOPS / 1e9
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.date.today()} on {platform.node()}: {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), libtorch/PyTorch 1.13.1 (Debian), OpenBLAS "
        f"(openmp), {a.threads} threads, batch 64, Adam, Fashion-MNIST from dataset-fashion-mnist. "
        f"Medians of {a.reps} alternating runs each; ratio = ktf / PyTorch.",
        "",
        "Reproduce: `bench/run.sh --reps %d`" % a.reps,
        "",
        "| measure | ktf | PyTorch (Python) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        f"- Start-up to first step beyond data decoding, ktf: {startup:.3f} s (target ≤ 0.3 s): "
        + ("met." if startup <= 0.3 else "**not met**."),
        f"- Data pipeline alone (batch 64, RandomCrop + RandomFlip + RandomErasing): {pipe:,.0f} samples/s, "
        f"{pipe / cnn_rate:.1f}× the CNN's training rate of {cnn_rate:,.0f} samples/s (target ≥ 10×): "
        + ("met." if pipe / cnn_rate >= 10 else "**not met**."),
        f"- CNN achieved {gflops:.1f} GFLOP/s (3 × {CNN_FWD_FLOPS / 1e6:.2f} MFLOP per sample × samples/s) "
        f"against a measured fp32 matmul peak of {peak:.1f} GFLOP/s (2048² `torch.mm`, same threads): "
        f"{100 * gflops / peak:.0f} % (target ≥ 75 %): " + ("met." if gflops / peak >= 0.75 else "**not met**."),
    ]
    if convs:
        step_ms = 1e3 * 64 / cnn_rate
        lines += [
            f"- The CNN's two convolutions (forward and backward, oneDNN: the same kernels for ktf "
            f"and PyTorch) take {convs['conv_ms_per_step']:.2f} ms per step inside training steps "
            f"of the reference CNN (PyTorch profiler, `bench/cnn_conv_time.py`); ktf's whole step "
            f"takes {step_ms:.2f} ms. Even with everything else in the step free, the step would "
            f"reach {100 * convs['ceiling_share_of_peak_convs_only']:.0f} % of the peak "
            f"({convs['matmul_peak_gflops']:.0f} GFLOP/s in that run).",
        ]
    lines += [
        f"- Loading alone: `ktf-host --version` (loads libtorch and the libraries it needs, does "
        f"nothing) takes {floor['ktf_host_version']:.3f} s wall time; `import torch` in Python "
        f"takes {floor['python_import_torch']:.3f} s (medians of 7).",
    ]
    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        lines += ["", open(notes).read().rstrip()]
    os.makedirs(a.out, exist_ok=True)
    md = os.path.join(a.out, "benchmarks.md")
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n\n![ktf vs PyTorch](benchmarks.png)\n")
    raw = os.path.join(a.out, "benchmarks.json")
    with open(raw, "w") as f:
        json.dump({"results": results, "pipeline": pipeline, "matmul_peak_gflops": peak,
                   "load_floor_seconds": floor, "cnn_conv_time": convs, "reps": a.reps,
                   "threads": a.threads,
                   "date": str(datetime.date.today())}, f, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = [n for n in ("mlp", "cnn", "resnet", "tiny") if n in results]
        key = lambda n: "seconds_per_step" if n == "tiny" else "samples_per_second"
        ratios = [med(n, "ktf", key(n)) / med(n, "pytorch", key(n)) for n in names]
        ratios = [1 / r if n == "tiny" else r for n, r in zip(names, ratios)]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(names, ratios, color=["#4c72b0" if r >= 1 else "#c44e52" for r in ratios])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("speed, ktf / PyTorch")
        ax.set_title("Training speed relative to PyTorch-in-Python (higher is better)")
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "benchmarks.png"), dpi=120)
    except ImportError:
        print("bench: matplotlib missing, no chart", file=sys.stderr)
    print(open(md).read())


if __name__ == "__main__":
    main()
