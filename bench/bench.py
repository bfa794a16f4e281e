#!/usr/bin/python3
"""ktf vs. PyTorch-in-Python, measured side by side (run by bench/run.sh after the build).

Runs ktf-host on bench/configs/*.json and bench/reference/train_reference.py on the same model,
data, batch size, optimizer, epochs and threads, alternating, --reps times each, and reports
medians and ratios ktf/PyTorch in docs/benchmarks.md with a chart docs/benchmarks.png.

PyTorch runs as a Debian user gets it (OpenBLAS choosing its kernels itself, no OPENBLAS_CORETYPE)
and, where that differs, with the kernels ktf chose (OPENBLAS_CORETYPE set to them); bf16 rows run
ktf --precision bf16 against PyTorch's CPU autocast. With --torch2 (after KTF_TORCH=2 set-up and
build) a second table compares ktf built on PyTorch 2.11's libtorch with PyTorch 2.11 eager, CPU
autocast and torch.compile. The machine (CPU, ISA, BLAS kernels, oneDNN ISA, threads) and the
kernels' peaks (bench/peaks.py) head the report.
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


def clean_env(**extra):
    """The environment as a fresh Debian user has it: no OPENBLAS_CORETYPE (some images set one)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env.update(extra)
    return env


def run_ktf(config, threads, workdir, seed, host=HOST, plugins=PLUGINS, extra=()):
    run_dir = os.path.join(workdir, f"ktf-{os.path.basename(config)}-{seed}-{len(extra)}")
    shutil.rmtree(run_dir, ignore_errors=True)
    env = clean_env(KTF_PLUGIN_PATH="")
    _, rss = timed([host, "--plugins", plugins, "-c", config, "--threads", str(threads),
                    "--seed", str(seed), "-o", run_dir, "--quiet"] + list(extra), env)
    epochs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    log = open(os.path.join(run_dir, "log.txt")).read()
    first = epochs[0]["first_step_after_start"]
    data = float(re.search(r"dataset built in ([0-9.]+) s", log).group(1))
    train_s = sum(e["train_seconds"] for e in epochs)
    samples = sum(e["train_samples"] for e in epochs)
    steps = sum(e["train_steps"] for e in epochs)
    kernels = re.search(r"^ktf: ((OpenBLAS kernels|BLAS: )[^\n]*)$", log, re.M)
    result = {"samples_per_second": samples / train_s, "seconds_per_step": train_s / steps,
              "startup_to_first_step": first, "startup_minus_data": first - data,
              "max_rss_kb": rss, "time_to_target": None, "history": epochs,
              "kernels": kernels.group(1) if kernels else None}
    elapsed = 0.0
    for e in epochs:
        elapsed += e["train_seconds"]
        if e.get("val_accuracy", 0) >= 0.90 and result["time_to_target"] is None:
            result["time_to_target"] = elapsed
    return result


def run_reference(model, threads, seed, extra=(), python=PY, env=None):
    out, rss = timed([python, REFERENCE, "--model", model, "--threads", str(threads), "--seed",
                      str(seed)] + list(extra), env if env is not None else clean_env())
    r = json.loads(out.strip().splitlines()[-1])
    r["max_rss_kb"] = rss
    return r


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


TORCH2_VENV = os.environ.get("KTF_TORCH2_VENV",
                             os.path.expanduser("~/.cache/ktf-torch2/venv"))
HOST2 = os.path.join(ROOT, "build-torch2", "ktf-host")
PLUGINS2 = os.path.join(ROOT, "build-torch2", "plugins")
PEAKS = os.path.join(ROOT, "bench", "peaks.py")


def openblas_default_core():
    """The kernels Debian's OpenBLAS picks by itself on this CPU (no OPENBLAS_CORETYPE)."""
    code = ("import ctypes;l=ctypes.CDLL('libopenblas.so.0');"
            "l.openblas_get_corename.restype=ctypes.c_char_p;print(l.openblas_get_corename().decode())")
    return subprocess.check_output([PY, "-c", code], text=True, env=clean_env()).strip()


def machine(threads, ktf_kernels):
    info = {"threads": threads, "cores": os.cpu_count()}
    for line in subprocess.check_output(["lscpu"], text=True).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU family", "Model", "Vendor ID"):
            info[key.strip()] = value.strip()
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE/AVX"
    if "avx512_bf16" in flags:
        isa += " + AVX512-BF16"
    if "amx_tile" in flags:
        isa += " + AMX"
    info["isa"] = isa
    info["openblas_default"] = openblas_default_core()
    info["ktf_kernels"] = ktf_kernels
    m = re.search(r"OpenBLAS kernels (\w+)", ktf_kernels or "")
    info["ktf_openblas"] = m.group(1) if m else None
    m = re.search(r"oneDNN ISA (\w+)", ktf_kernels or "")
    info["onednn_isa"] = m.group(1) if m else None
    info["env_openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE")
    return info


def peaks(threads, python=PY, coretype=None):
    env = clean_env(**({"OPENBLAS_CORETYPE": coretype} if coretype else {}))
    out = subprocess.check_output([python, PEAKS, "--threads", str(threads)], text=True, env=env)
    return json.loads(out.strip().splitlines()[-1])


def plan(a, cfg, same_kernels):
    """(case, impl, run(rep)) of one repetition, in order."""
    t = a.threads
    fp32 = [("mlp", "mlp", []), ("cnn", "cnn", []), ("tiny", "tiny", ["--epochs", "3"])]
    if not a.skip_resnet:
        fp32.append(("resnet", "resnet", ["--steps", "40"]))
    if not a.skip_target:
        fp32.append(("cnn_to_090", "cnn", ["--epochs", "6", "--eval"]))
    steps = []
    for name, model, extra in fp32:
        steps.append((name, "ktf", lambda rep, n=name: run_ktf(cfg(n), t, a.work, rep)))
        steps.append((name, "pytorch",
                      lambda rep, m=model, e=extra: run_reference(m, t, rep, e)))
        if same_kernels:
            env = clean_env(OPENBLAS_CORETYPE=same_kernels)
            steps.append((name, "pytorch_same",
                          lambda rep, m=model, e=extra, env=env: run_reference(m, t, rep, e, env=env)))
    bf16 = [("cnn_bf16", "cnn", "cnn", [])]
    if not a.skip_resnet:
        bf16.append(("resnet_bf16", "resnet", "resnet", ["--steps", "40"]))
    for name, config, model, extra in bf16:
        steps.append((name, "ktf", lambda rep, c=config: run_ktf(cfg(c), t, a.work, rep,
                                                                  extra=["--precision", "bf16"])))
        steps.append((name, "pytorch", lambda rep, m=model, e=extra: run_reference(
            m, t, rep, e + ["--precision", "bf16"])))
    if a.torch2:
        py2 = os.path.join(TORCH2_VENV, "bin", "python")
        t2 = [("mlp", "mlp", []), ("cnn", "cnn", [])]
        if not a.skip_resnet:
            t2.append(("resnet", "resnet", ["--steps", "40"]))
        for base, model, extra in t2:
            name = base + "_t2"
            steps.append((name, "ktf", lambda rep, b=base: run_ktf(cfg(b), t, a.work, rep,
                                                                    host=HOST2, plugins=PLUGINS2)))
            steps.append((name, "pytorch", lambda rep, m=model, e=extra: run_reference(
                m, t, rep, e, python=py2)))
            # torch.compile: the first steps compile; the last, partial batch would compile again.
            ce = (extra if "--steps" in extra else ["--steps", "900"]) + ["--compile", "--warmup", "5"]
            steps.append((name, "pytorch_compile", lambda rep, m=model, e=ce: run_reference(
                m, t, rep, e, python=py2)))
            name = base + "_t2_bf16"
            if base == "mlp":
                continue
            steps.append((name, "ktf", lambda rep, b=base: run_ktf(
                cfg(b), t, a.work, rep, host=HOST2, plugins=PLUGINS2,
                extra=["--precision", "bf16"])))
            steps.append((name, "pytorch", lambda rep, m=model, e=extra: run_reference(
                m, t, rep, e + ["--precision", "bf16"], python=py2)))
    return steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-resnet", action="store_true")
    p.add_argument("--skip-target", action="store_true", help="skip time-to-0.90 (the longest part)")
    p.add_argument("--torch2", action="store_true",
                   help="also the PyTorch 2.11 table (needs KTF_TORCH=2 setup.sh and build.sh)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs"))
    p.add_argument("--cases", default="",
                   help="comma-separated subset of the case names (default: all)")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite benchmarks.md/.png from the measurements in OUT/benchmarks.json "
                        "(e.g. after editing bench/notes.md); runs nothing")
    a = p.parse_args()
    if a.report_only:
        raw = json.load(open(os.path.join(a.out, "benchmarks.json")))
        a.reps = raw.get("reps", a.reps)
        a.torch2 = raw.get("torch2", any(name.endswith("_t2") for name in raw["results"]))
        write_report(a, raw["results"], raw["pipeline"], raw["matmul_peak_gflops"],
                     raw["load_floor_seconds"], raw.get("cnn_conv_time"), raw.get("machine"),
                     raw.get("peaks"))
        return
    a.work = tempfile.mkdtemp(prefix="ktf-bench-")
    cfg = lambda name: os.path.join(ROOT, "bench", "configs", name + ".json")
    probe = run_ktf(cfg("tiny"), a.threads, a.work, 0)
    mach = machine(a.threads, probe["kernels"])
    same = mach["ktf_openblas"] if mach["ktf_openblas"] != mach["openblas_default"] else None
    print(f"bench: machine {mach}", flush=True)
    steps = plan(a, cfg, same)
    if a.cases:
        steps = [st for st in steps if st[0] in a.cases.split(",")]
    results = {}
    for name, impl, _ in steps:
        results.setdefault(name, {}).setdefault(impl, [])
    for rep in range(a.reps):
        # Alternate the order of the implementations within each case, so drift hits all alike.
        by_case = {}
        for st in steps:
            by_case.setdefault(st[0], []).append(st)
        for name, group in by_case.items():
            for _, impl, fn in (group if rep % 2 == 0 else list(reversed(group))):
                print(f"bench: rep {rep + 1}/{a.reps} {name} {impl}", flush=True)
                results[name][impl].append(fn(rep))
    if a.cases:  # a subset: print the medians and keep the raw runs; the report needs every case
        summary = {}
        for name, impls in results.items():
            rates = {impl: median([r["samples_per_second"] for r in runs])
                     for impl, runs in impls.items()}
            summary[name] = {"samples_per_second": rates, "runs": impls}
            print(f"bench: {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, f"benchmarks-{a.cases.replace(',', '-')}.json"), "w") as f:
            json.dump({"machine": mach, "cases": summary}, f, indent=1)
        shutil.rmtree(a.work, ignore_errors=True)
        return
    pipeline = []
    for rep in range(a.reps):
        out = subprocess.check_output([PIPELINE, PLUGINS, cfg("pipeline"), "5"], text=True)
        pipeline.append(json.loads(out.strip().splitlines()[-1])["samples_per_second"])
    pk = {"debian_default": peaks(a.threads), "debian_generic": peaks(a.threads, coretype="Prescott")}
    if same:
        pk["debian_same"] = peaks(a.threads, coretype=same)
    if a.torch2:
        pk["torch2"] = peaks(a.threads, python=os.path.join(TORCH2_VENV, "bin", "python"))
    peak = (pk.get("debian_same") or pk["debian_default"])["matmul_fp32_gflops"]
    floor = load_floor()
    convs = conv_time(a.threads)
    write_report(a, results, pipeline, peak, floor, convs, mach, pk)
    shutil.rmtree(a.work, ignore_errors=True)


def resnet18_fwd_flops(size=28, classes=10):
    """Multiply-adds x 2 of one forward pass of ktf.networks.ResNet depth 18, small_input."""
    flops, h, cin = 2 * size * size * 64 * 1 * 9, size, 64  # stem: 3x3 conv, 1 -> 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            s = stride if block == 0 else 1
            ho = h // s
            flops += 2 * ho * ho * cout * cin * 9 + 2 * ho * ho * cout * cout * 9
            if s != 1 or cin != cout:
                flops += 2 * ho * ho * cout * cin  # 1x1 downsample
            h, cin = ho, cout
    return flops + 2 * 512 * classes


def write_report(a, results, pipeline, peak, floor, convs=None, mach=None, pk=None):
    def med(name, impl, key):
        if name not in results or impl not in results[name]:
            return None
        return median([r[key] for r in results[name][impl]])

    def verdict(ratio, target, higher_better=True):
        if target is None or ratio is None:
            return "-", "-"
        met = ratio >= target if higher_better else ratio <= target
        return ("≥ " if higher_better else "≤ ") + f"{target}", "yes" if met else "**no**"

    same_run = bool(mach and mach.get("ktf_openblas") and
                    mach["ktf_openblas"] != mach.get("openblas_default"))
    rows = []  # measure, ktf, pytorch, ratio, pytorch same, ratio same, target, met

    def add(measure, name, key, targets, higher_better=True, fmt="{:.0f}", scale=1.0):
        k, t = med(name, "ktf", key), med(name, "pytorch", key)
        if k is None and t is None:
            return
        ts = med(name, "pytorch_same", key) if same_run else t
        show = lambda v: fmt.format(v * scale) if v is not None else "not reached"
        ratio = k / t if k and t else None
        ratio_same = k / ts if k and ts else None
        target_default, target_same = targets
        tgt, met = [], []
        for r, target, label in ((ratio, target_default, "default"), (ratio_same, target_same, "same")):
            v = verdict(r, target, higher_better)
            if v[0] != "-":
                tgt.append(v[0] + (f" ({label})" if target_default and target_same else ""))
                met.append(v[1])
        rows.append((measure, show(k), show(t), f"{ratio:.2f}" if ratio else "-",
                     show(ts) if same_run else "= default", f"{ratio_same:.2f}" if ratio_same else "-",
                     ", ".join(tgt) or "-", ", ".join(met) or "-"))

    add("MLP 784-256-128-10 throughput (samples/s)", "mlp", "samples_per_second", (2.0, 1.25))
    add("CNN throughput (samples/s)", "cnn", "samples_per_second", (1.2, 1.05))
    add("ResNet-18 throughput (samples/s)", "resnet", "samples_per_second", (None, 1.0), fmt="{:.1f}")
    add("tiny MLP 784-32-10: time per step (ms)", "tiny", "seconds_per_step", (None, 0.5), False,
        "{:.3f}", 1e3)
    add("CNN: training time to 0.90 test accuracy (s)", "cnn_to_090", "time_to_target", (None, 1.0),
        False, "{:.1f}")
    add("start-up to first step, minus data decoding (s), MLP", "mlp", "startup_minus_data",
        (None, None), False, "{:.3f}")
    add("start-up to first step, total (s), MLP", "mlp", "startup_to_first_step", (None, None),
        False, "{:.3f}")
    add("peak resident memory (MiB), CNN", "cnn", "max_rss_kb", (None, 1.0), False, "{:.0f}",
        1 / 1024)

    lines = ["# Benchmarks", ""]
    if mach:
        lines += [
            f"Measured {datetime.date.today()} on **{mach.get('Model name')}** (vendor "
            f"{mach.get('Vendor ID')}, family {mach.get('CPU family')}, model {mach.get('Model')}; "
            f"{mach['isa']}), {mach['cores']} cores, {a.threads} threads; Debian's libtorch/PyTorch "
            f"1.13.1 with OpenBLAS 0.3.21 (openmp) and oneDNN (ISA {mach.get('onednn_isa')}); batch "
            f"64, Adam, Fashion-MNIST from dataset-fashion-mnist. Medians of {a.reps} alternating "
            "runs each; ratio = ktf / PyTorch.",
            "",
            f"- BLAS kernels: OpenBLAS chooses **{mach['openblas_default']}** by itself on this CPU "
            f"(no `OPENBLAS_CORETYPE`); ktf-host runs **{mach.get('ktf_openblas')}** "
            f"(its log: \"{mach.get('ktf_kernels')}\").",
            "- PyTorch (Debian default) = `/usr/bin/python3` with `python3-torch`, OpenBLAS choosing "
            "its kernels itself; PyTorch (same kernels) = the same with `OPENBLAS_CORETYPE` set to "
            "ktf's choice" + ("." if same_run else ": here the same kernels as the default, so one "
                              "run serves both columns."),
        ]
        if mach.get("env_openblas_coretype"):
            lines.append(f"- This machine's environment sets `OPENBLAS_CORETYPE="
                         f"{mach['env_openblas_coretype']}`; the benchmark removes it for every run "
                         "(ktf-host would keep a user's setting).")
    lines += [
        "- The earlier machine's tables (an AMD EPYC with AVX2, 2026-11-26): "
        "[benchmarks-2026-11-26-epyc-avx2.md](benchmarks-2026-11-26-epyc-avx2.md).",
        "",
        "Reproduce: `bench/run.sh --reps %d%s%s`" % (
            a.reps, " --torch2" if a.torch2 else "",
            "" if "cnn_to_090" in results else " --skip-target"),
        "",
        "## fp32, Debian's libtorch 1.13",
        "",
        "| measure | ktf | PyTorch (Debian default) | ratio | PyTorch (same kernels) | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]

    # bf16
    bf = []
    for name, base, label, fwd in (("cnn_bf16", "cnn", "CNN", CNN_FWD_FLOPS),
                                   ("resnet_bf16", "resnet", "ResNet-18", resnet18_fwd_flops())):
        kb, k32, tb = (med(name, "ktf", "samples_per_second"), med(base, "ktf", "samples_per_second"),
                       med(name, "pytorch", "samples_per_second"))
        if kb is None:
            continue
        own = kb / k32 if k32 else None
        vs = kb / tb if tb else None
        targets = ((2.0, 1.05) if base == "resnet" else (None, None))
        t_own, m_own = verdict(own, targets[0])
        t_vs, m_vs = verdict(vs, targets[1])
        bf.append((f"{label} bf16 throughput (samples/s)", f"{kb:.1f}", f"{k32:.1f}" if k32 else "-",
                   f"{own:.2f}" if own else "-", t_own, m_own, f"{tb:.1f}" if tb else "-",
                   f"{vs:.2f}" if vs else "-", t_vs, m_vs))
    if bf:
        lines += ["", "## bf16 (ktf `--precision bf16`, PyTorch `torch.autocast(\"cpu\", torch.bfloat16)`)", "",
                  "| measure | ktf bf16 | ktf fp32 | bf16 / fp32 | target | met | PyTorch autocast | ktf / PyTorch | target | met |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in bf]

    # Peaks and the ResNet's share of the convolution peak
    if pk:
        d = pk.get("debian_same") or pk["debian_default"]
        g = pk["debian_generic"]
        lines += ["", "## Kernel peaks (bench/peaks.py: best of 10 calls, GFLOP/s)", "",
                  "| kernels | matmul fp32 | matmul bf16 | conv 3×3 fp32 fwd+bwd | conv 3×3 bf16 fwd+bwd |",
                  "|---|---|---|---|---|"]
        for key, label in (("debian_generic", "OpenBLAS Prescott (generic) + oneDNN, libtorch 1.13"),
                           ("debian_default", f"OpenBLAS {mach['openblas_default'] if mach else ''} (its own choice) + oneDNN, libtorch 1.13"),
                           ("debian_same", f"OpenBLAS {mach.get('ktf_openblas') if mach else ''} (ktf's choice) + oneDNN, libtorch 1.13"),
                           ("torch2", "MKL + oneDNN, PyTorch 2.11 wheel")):
            if key in pk:
                v = pk[key]
                lines.append(f"| {label} | {v['matmul_fp32_gflops']:.0f} | {v['matmul_bf16_gflops']:.0f} | "
                             f"{v['conv_fwd_bwd_fp32_gflops']:.0f} | {v['conv_fwd_bwd_bf16_gflops']:.0f} |")
        ratio = d["matmul_fp32_gflops"] / g["matmul_fp32_gflops"]
        lines += ["", f"- fp32 matmul peak of the chosen kernels / the generic kernels: {ratio:.1f}× "
                  "(target ≥ 4×): " + ("met." if ratio >= 4 else "**not met**.")]
        f3 = 3 * resnet18_fwd_flops()
        for name, label, peak_key in (("resnet", "fp32", "conv_fwd_bwd_fp32_gflops"),
                                      ("resnet_bf16", "bf16", "conv_fwd_bwd_bf16_gflops")):
            rk, rt = med(name, "ktf", "samples_per_second"), med(name, "pytorch", "samples_per_second")
            if rk and rt:
                lines.append(f"- ResNet-18 {label} (3 × {resnet18_fwd_flops() / 1e6:.0f} MFLOP per "
                             f"sample): ktf {rk * f3 / 1e9:.0f} GFLOP/s, PyTorch {rt * f3 / 1e9:.0f} "
                             f"GFLOP/s: {100 * rk * f3 / 1e9 / d[peak_key]:.0f} % and "
                             f"{100 * rt * f3 / 1e9 / d[peak_key]:.0f} % of the {label} 3×3 "
                             f"convolution peak ({d[peak_key]:.0f} GFLOP/s).")

    # PyTorch 2.11
    t2 = []
    for name, label, t_eager, t_compile in (("mlp_t2", "MLP", 1.2, None), ("cnn_t2", "CNN", 1.05, 1.0),
                                            ("resnet_t2", "ResNet-18", None, None)):
        k, e, c = (med(name, "ktf", "samples_per_second"), med(name, "pytorch", "samples_per_second"),
                   med(name, "pytorch_compile", "samples_per_second"))
        if k is None:
            continue
        te, me = verdict(k / e if e else None, t_eager)
        tc, mc = verdict(k / c if c else None, t_compile)
        t2.append((f"{label} fp32 (samples/s)", f"{k:.1f}", f"{e:.1f}" if e else "-",
                   f"{k / e:.2f}" if e else "-", te, me, f"{c:.1f}" if c else "-",
                   f"{k / c:.2f}" if c else "-", tc, mc))
    for name, label in (("cnn_t2_bf16", "CNN"), ("resnet_t2_bf16", "ResNet-18")):
        k, e = med(name, "ktf", "samples_per_second"), med(name, "pytorch", "samples_per_second")
        if k is None:
            continue
        t2.append((f"{label} bf16 (samples/s; PyTorch: autocast)", f"{k:.1f}", f"{e:.1f}" if e else "-",
                   f"{k / e:.2f}" if e else "-", "-", "-", "-", "-", "-", "-"))
    if t2:
        lines += ["", "## PyTorch 2.11 from PyPI (MKL, its own oneDNN): ktf built on the same libtorch", "",
                  "`KTF_TORCH=2 ./scripts/build.sh` (build-torch2/) against the PyTorch 2.11 of "
                  "`KTF_TORCH=2 ./scripts/setup.sh`; torch.compile's throughput leaves out its first 5 "
                  "steps (compilation) and runs 900 steps (no partial last batch).", "",
                  "| measure | ktf (2.11) | PyTorch 2.11 eager | ratio | target | met | torch.compile | ratio | target | met |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in t2]

    startup = med("mlp", "ktf", "startup_minus_data")
    cnn_rate = med("cnn", "ktf", "samples_per_second")
    pipe = statistics.median(pipeline)
    gflops = cnn_rate * 3 * CNN_FWD_FLOPS / 1e9
    lines += [
        "",
        "## Other measures",
        "",
        f"- Start-up to first step beyond data decoding, ktf: {startup:.3f} s (target ≤ 0.3 s): "
        + ("met." if startup <= 0.3 else "**not met**."),
        f"- Data pipeline alone (batch 64, RandomCrop + RandomFlip + RandomErasing): {pipe:,.0f} samples/s, "
        f"{pipe / cnn_rate:.1f}× the CNN's training rate of {cnn_rate:,.0f} samples/s (target ≥ 10×): "
        + ("met." if pipe / cnn_rate >= 10 else "**not met**."),
        f"- CNN achieved {gflops:.1f} GFLOP/s (3 × {CNN_FWD_FLOPS / 1e6:.2f} MFLOP per sample × samples/s) "
        f"against the fp32 matmul peak of the chosen kernels, {peak:.1f} GFLOP/s: "
        f"{100 * gflops / peak:.0f} % (target ≥ 75 %): " + ("met." if gflops / peak >= 0.75 else "**not met**."),
    ]
    if convs:
        step_ms = 1e3 * 64 / cnn_rate
        lines += [
            f"- The CNN's two convolutions (forward and backward, oneDNN: the same kernels for ktf "
            f"and PyTorch) take {convs['conv_ms_per_step']:.2f} ms per step inside training steps "
            f"of the reference CNN (PyTorch profiler, `bench/cnn_conv_time.py`); ktf's whole step "
            f"takes {step_ms:.2f} ms.",
        ]
    lines += [
        f"- Loading: `ktf-host --version` takes {floor['ktf_host_version']:.3f} s wall time (the "
        f"launcher answers it without loading libtorch); `import torch` in Python takes "
        f"{floor['python_import_torch']:.3f} s (medians of 7).",
    ]
    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        lines += ["", open(notes).read().rstrip()]
    os.makedirs(a.out, exist_ok=True)
    md = os.path.join(a.out, "benchmarks.md")
    # bench/distributed.py's and bench/gpu.py's sections (between their markers) are their own:
    # kept as they were.
    kept = ""
    if os.path.exists(md):
        old = open(md).read()
        for section in ("distributed", "gpu"):
            begin, end = f"<!-- {section}:begin", f"<!-- {section}:end -->"
            if begin in old and end in old:
                kept += "\n" + old[old.index(begin):old.index(end) + len(end)] + "\n"
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n\n![ktf vs PyTorch](benchmarks.png)\n" + kept)
    raw = os.path.join(a.out, "benchmarks.json")
    with open(raw, "w") as f:
        json.dump({"results": results, "pipeline": pipeline, "matmul_peak_gflops": peak,
                   "load_floor_seconds": floor, "cnn_conv_time": convs, "reps": a.reps,
                   "threads": a.threads, "machine": mach, "peaks": pk, "torch2": a.torch2,
                   "date": str(datetime.date.today())}, f, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = [n for n in ("mlp", "cnn", "resnet", "tiny", "cnn_bf16", "resnet_bf16",
                             "mlp_t2", "cnn_t2", "resnet_t2") if n in results]
        key = lambda n: "seconds_per_step" if n == "tiny" else "samples_per_second"
        ratios = [med(n, "ktf", key(n)) / med(n, "pytorch", key(n)) for n in names]
        ratios = [1 / r if n == "tiny" else r for n, r in zip(names, ratios)]
        fig, ax = plt.subplots(figsize=(8, 3.4))
        ax.bar(names, ratios, color=["#4c72b0" if r >= 1 else "#c44e52" for r in ratios])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("speed, ktf / PyTorch")
        ax.set_title("Training speed relative to PyTorch-in-Python (higher is better)")
        plt.setp(ax.get_xticklabels(), rotation=20)
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "benchmarks.png"), dpi=120)
    except ImportError:
        print("bench: matplotlib missing, no chart", file=sys.stderr)
    print(open(md).read())


if __name__ == "__main__":
    main()
