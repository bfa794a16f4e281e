#!/usr/bin/python3
"""Data-parallel training, measured (docs/distributed.md; run as root after scripts/build.sh).

1. Throughput of 1 against 2 ranks on this machine (bench/configs mlp, cnn, resnet): one process
   with all cores and batch B, against `ktf-host --nproc-per-node 2` (cores split between the ranks)
   with B/2 per rank (the same global batch) and with B per rank. Alternating runs, --reps each.
2. Two "machines": two network namespaces joined by a veth pair, each rank its own address, with
   a tbf bandwidth limit on both ends: ktf-bench-allreduce's all-reduce time by size and link
   speed, fitted to t = a + bytes / bw. Latency (this kernel has no netem): bench/netdelay.py's
   user-space link that delays every packet, at --latencies one-way delays.
3. Training across the namespaces at those link speeds: seconds per step of the three models, and
   what the cost model of docs/distributed.md predicts from (1) and (2).

Writes docs/benchmarks-distributed.json and the data-parallel section of docs/benchmarks.md
(between its markers), with the machine and the command.
  sudo bench/distributed.py [--reps 3] [--rates unlimited,10gbit,1gbit,100mbit]
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT
HOST = bench.HOST
ALLREDUCE = os.path.join(ROOT, "build", "bench", "ktf-bench-allreduce")
CONFIGS = {m: os.path.join(ROOT, "bench", "configs", f"{m}.json") for m in ("mlp", "cnn", "resnet")}
LOOP = "/0/train_loop/ktf.train.KerasTrainLoop"
DATA = "/0/datasets/ktf.datasets.fashion.fashion_mnist.from_idx"
PARAMS = {}  # model -> trainable parameters (from the run's log)
NS = ("ktfbench-a", "ktfbench-b")
ADDR = ("10.204.0.1", "10.204.0.2")
MARK_BEGIN = "<!-- distributed:begin (bench/distributed.py) -->"
MARK_END = "<!-- distributed:end -->"


def sh(cmd, check=True):
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


def run_job(model, steps, batch, nproc=1, threads=None, prefix=(), env_extra=None, rank_env=None):
    """Trains `model` for `steps` steps; returns (seconds per step, samples per second) of rank 0.
    nproc > 1 with rank_env: ranks started by hand (in namespaces), else by --nproc-per-node."""
    work = tempfile.mkdtemp(prefix="ktf-dist-bench-")
    out = os.path.join(work, "run")
    args = ["--plugins", bench.PLUGINS, "-c", CONFIGS[model], "-o", out, "--quiet",
            "--set", f"{LOOP}/steps_per_epoch={steps}", "--set", f"{LOOP}/num_epochs=1",
            "--set", f"{DATA}/batch_size={batch}", "--set", f"{DATA}/prefetch=0"]
    if threads:
        args += ["--threads", str(threads)]
    env = bench.clean_env(KTF_PLUGIN_PATH="", **(env_extra or {}))
    try:
        if rank_env:
            procs = []
            for r, (ns, extra) in enumerate(rank_env):
                e = dict(env, **extra)
                cmd = ["ip", "netns", "exec", ns, "env"] + [f"{k}={v}" for k, v in e.items()
                                                             if k in extra] + [HOST] + args
                procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
            outs = [p.communicate()[0] for p in procs]
            if any(p.returncode for p in procs):
                sys.exit("bench: a rank failed:\n" + "\n".join(outs))
        else:
            launch = [HOST] + (["--nproc-per-node", str(nproc)] if nproc > 1 else []) + args
            r = subprocess.run(list(prefix) + launch, env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"bench: {' '.join(launch)} failed:\n{r.stdout}{r.stderr}")
        epoch = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))][-1]
        log = open(os.path.join(out, "log.txt")).read()
        m = re.search(r"model [\w.]+: (\d+) parameters, (\d+) trainable", log)
        if m:
            PARAMS[model] = int(m.group(2))
        return epoch["train_seconds"] / epoch["train_steps"], epoch["samples_per_second"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def throughput(models, reps, steps):
    cores = os.cpu_count()
    rows = {}
    for model in models:
        batch = 64
        runs = {"1 rank, batch 64": [], "2 ranks, 32 each": [], "2 ranks, 64 each": []}
        for _ in range(reps):  # alternating
            runs["1 rank, batch 64"].append(run_job(model, steps[model], batch, 1, cores))
            runs["2 ranks, 32 each"].append(run_job(model, steps[model], batch // 2, 2))
            runs["2 ranks, 64 each"].append(run_job(model, steps[model], batch, 2))
        rows[model] = {k: {"samples_per_second": statistics.median(s for _, s in v),
                           "seconds_per_step": statistics.median(t for t, _ in v)}
                       for k, v in runs.items()}
    return rows


class Namespaces:
    def __enter__(self):
        self.__exit__()
        for cmd in (f"ip netns add {NS[0]}", f"ip netns add {NS[1]}",
                    "ip link add ktfb-va type veth peer name ktfb-vb",
                    f"ip link set ktfb-va netns {NS[0]}", f"ip link set ktfb-vb netns {NS[1]}",
                    f"ip -n {NS[0]} addr add {ADDR[0]}/24 dev ktfb-va",
                    f"ip -n {NS[1]} addr add {ADDR[1]}/24 dev ktfb-vb",
                    f"ip -n {NS[0]} link set ktfb-va up", f"ip -n {NS[1]} link set ktfb-vb up",
                    f"ip -n {NS[0]} link set lo up", f"ip -n {NS[1]} link set lo up"):
            sh(cmd)
        return self

    def __exit__(self, *exc):
        sh(f"ip netns del {NS[0]}", check=False)
        sh(f"ip netns del {NS[1]}", check=False)

    def limit(self, rate):
        """tbf at `rate` on both ends of the veth pair ("unlimited": no qdisc)."""
        for ns, dev in zip(NS, ("ktfb-va", "ktfb-vb")):
            sh(f"ip netns exec {ns} tc qdisc del dev {dev} root", check=False)
            if rate != "unlimited":
                sh(f"ip netns exec {ns} tc qdisc add dev {dev} root tbf rate {rate} "
                   f"burst 256kb latency 400ms")

    def netem_available(self):
        r = sh(f"ip netns exec {NS[0]} tc qdisc add dev ktfb-va root netem delay 1ms",
               check=False)
        sh(f"ip netns exec {NS[0]} tc qdisc del dev ktfb-va root", check=False)
        return r.returncode == 0, (r.stderr or r.stdout).strip()

    def rank_env(self, port):
        return [(NS[r], {"RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": ADDR[0],
                         "MASTER_PORT": str(port)}) for r in range(2)]


class DelayedLink:
    """Two namespaces joined by bench/netdelay.py (TUN devices and a user-space forwarder that
    delays every packet by `delay` seconds one way): latency where the kernel has no netem."""
    NS = ("ktfdelay-a", "ktfdelay-b")
    ADDR = ("10.205.0.1", "10.205.0.2")

    def __init__(self, delay):
        self.delay = delay

    def __enter__(self):
        self.__exit__()
        sock = "/tmp/ktf-netdelay.sock"
        sh(f"ip netns add {self.NS[0]}")
        sh(f"ip netns add {self.NS[1]}")
        prog = os.path.join(ROOT, "bench", "netdelay.py")
        self.procs = []
        for i, role in enumerate(("listen", "connect")):
            p = subprocess.Popen(["ip", "netns", "exec", self.NS[i], "/usr/bin/python3", prog,
                                  "half", sock, role, self.ADDR[i], str(self.delay)],
                                 stdout=subprocess.PIPE, text=True)
            if p.stdout.readline().strip() != "ready":
                sys.exit("bench: bench/netdelay.py did not start")
            self.procs.append(p)
        return self

    def __exit__(self, *exc):
        for p in getattr(self, "procs", []):
            p.kill()
            p.wait()
        sh(f"ip netns del {self.NS[0]}", check=False)
        sh(f"ip netns del {self.NS[1]}", check=False)

    def rank_env(self, port):
        return [(self.NS[r], {"RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": self.ADDR[0],
                              "MASTER_PORT": str(port)}) for r in range(2)]


def latency_part(result, models, reps, delays):
    """All-reduce times and training steps over bench/netdelay.py's link at one-way `delays`."""
    sizes = [4 << 10, 64 << 10, 1 << 20, 16 << 20]
    steps = {"mlp": 40, "cnn": 30, "resnet": 3}
    result["latency"] = {"delays": delays, "allreduce": {}, "fit": {}, "training": {}}
    for i, delay in enumerate(delays):
        print(f"bench: all-reduce over a link with {delay * 1e3:g} ms one way", flush=True)
        with DelayedLink(delay) as link:
            pts = allreduce(link, 29710 + i, sizes)
            result["latency"]["allreduce"][str(delay)] = pts
            result["latency"]["fit"][str(delay)] = fit(pts)
            result["latency"]["training"][str(delay)] = {
                m: statistics.median(run_job(m, steps[m], 32, 2, threads=1,
                                             rank_env=link.rank_env(29750 + 10 * i + k))[0]
                                     for k in range(reps)) for m in models}


def allreduce(ns, port, sizes):
    procs = []
    for r, (name, extra) in enumerate(ns.rank_env(port)):
        cmd = ["ip", "netns", "exec", name, "env"] + [f"{k}={v}" for k, v in extra.items()] + \
              [ALLREDUCE] + [str(s) for s in sizes]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate() for p in procs]
    if any(p.returncode for p in procs):
        sys.exit(f"bench: ktf-bench-allreduce failed: {outs}")
    return [json.loads(l) for l in outs[0][0].splitlines() if l.startswith("{")]


def fit(points):
    """t = a + bytes / bw: a is the time of the smallest all-reduce (latency and fixed cost), bw
    the least-squares slope through it over the sizes of >= 1 MiB; returns (a, bw in bytes/s)."""
    small = min(points, key=lambda p: p["bytes"])
    a = small["seconds"]
    pts = [(p["bytes"], p["seconds"] - a) for p in points if p["bytes"] >= 1 << 20]
    slope = sum(x * y for x, y in pts) / sum(x * x for x, _ in pts)
    return a, 1.0 / slope


def predict(compute_step, grad_bytes, a, bw):
    """The cost model: a step of 2 ranks takes the compute of one rank's batch plus the all-reduce
    of the gradients (t = a + bytes / bw), minus what of it overlaps backward. Upper bound: no
    overlap."""
    return compute_step + a + grad_bytes / bw


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rates", default="unlimited,10gbit,1gbit,100mbit")
    p.add_argument("--models", default="mlp,cnn,resnet")
    p.add_argument("--latencies", default="0,0.001,0.005",
                   help="one-way delays (s) of bench/netdelay.py's link")
    p.add_argument("--latency-only", action="store_true",
                   help="measure only the latency part, into the existing JSON")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite docs/benchmarks.md from docs/benchmarks-distributed.json")
    a = p.parse_args()
    out_json = os.path.join(ROOT, "docs", "benchmarks-distributed.json")
    if a.report_only:
        report(json.load(open(out_json)))
        return
    if os.geteuid() != 0:
        sys.exit("bench/distributed.py: network namespaces need root")
    models = a.models.split(",")
    delays = [float(x) for x in a.latencies.split(",")]
    if a.latency_only:
        result = json.load(open(out_json))
        latency_part(result, models, a.reps, delays)
        result["latency"]["command"] = "bench/distributed.py " + " ".join(sys.argv[1:]) + " (as root)"
        result["latency"]["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")
        json.dump(result, open(out_json, "w"), indent=1)
        report(result)
        return
    steps = {"mlp": 300, "cnn": 100, "resnet": 8}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": ("bench/distributed.py " + " ".join(sys.argv[1:])).strip() + " (as root)",
              "commit": sh("git -C " + ROOT + " rev-parse --short HEAD").stdout.strip(),
              "machine": bench.machine(os.cpu_count(), None)}
    print("bench: 1 against 2 ranks on this machine", flush=True)
    result["throughput"] = throughput(models, a.reps, steps)
    result["params"] = dict(PARAMS)
    # The compute of one rank's step across the namespaces: one process, 1 thread, batch 32.
    net_steps = {"mlp": 300, "cnn": 100, "resnet": 6}
    print("bench: one rank's compute (1 thread, batch 32)", flush=True)
    result["compute"] = {m: statistics.median(run_job(m, net_steps[m], 32, 1, 1)[0]
                                              for _ in range(a.reps)) for m in models}
    with Namespaces() as ns:
        ok, why = ns.netem_available()
        result["netem"] = {"available": ok, "message": why}
        result["allreduce"], result["fit"], result["training"] = {}, {}, {}
        sizes = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
        for i, rate in enumerate(a.rates.split(",")):
            ns.limit(rate)
            print(f"bench: all-reduce over the veth pair at {rate}", flush=True)
            pts = allreduce(ns, 29610 + i, sizes if rate not in ("100mbit",) else sizes[:-1])
            result["allreduce"][rate] = pts
            result["fit"][rate] = fit(pts)
            result["training"][rate] = {}
            for model in models:
                # One core per "machine": 1 intra-op thread each (2 each on these 2 cores would
                # oversubscribe them).
                times = [run_job(model, net_steps[model], 32, 2, threads=1,
                                 rank_env=ns.rank_env(29650 + 10 * i + k))[0]
                         for k in range(a.reps)]
                result["training"][rate][model] = statistics.median(times)
        ns.limit("unlimited")
    latency_part(result, models, a.reps, delays)
    json.dump(result, open(out_json, "w"), indent=1)
    report(result)


def fmt_bytes(n):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def report(r):
    m = r["machine"]
    lines = [MARK_BEGIN, "", "## Data-parallel training (issue 13)", "",
             f"Measured {r['date']} at {r['commit']} by `{r['command']}` on **{m.get('Model name')}**"
             f" (family {m.get('CPU family')} model {m.get('Model')}, {m['cores']} cores, {m['isa']};"
             f" OpenBLAS picks {m['openblas_default']} by itself). Medians of alternating runs.", "",
             "### 1 against 2 ranks on this machine", "",
             "One process with every core against `ktf-host --nproc-per-node 2` (the cores split "
             "between the ranks, 1 intra-op thread each here). Samples per second of the job "
             "(every rank's examples); ratio against 1 rank.", "",
             "| model | parameters | 1 rank, batch 64 | 2 ranks × 32 (same global batch) | ratio | "
             "2 ranks × 64 | ratio |", "|---|---|---|---|---|---|---|"]
    for model, row in r["throughput"].items():
        base = row["1 rank, batch 64"]["samples_per_second"]
        same = row["2 ranks, 32 each"]["samples_per_second"]
        big = row["2 ranks, 64 each"]["samples_per_second"]
        lines.append(f"| {model} | {r['params'].get(model, 0):,} | {base:,.0f} | {same:,.0f} | "
                     f"{same / base:.2f}× | {big:,.0f} | {big / base:.2f}× |")
    netem = r["netem"]
    lines += ["", "### All-reduce between two network namespaces", "",
              "Two ranks in two network namespaces joined by a veth pair (10.204.0.1 and "
              "10.204.0.2; the rendezvous and Gloo use only these), a `tc tbf` bandwidth limit "
              "on both ends; `ktf-bench-allreduce` times one all-reduce (sum) of a float32 "
              "buffer, median of its repeats. Fit: t = a + bytes / bw, a the smallest "
              "all-reduce's time, bw fitted over sizes ≥ 1 MiB (tbf's burst makes 64 KiB "
              "irregular).", "",
              "Latency could not be added: " + (
                  "netem is available." if netem["available"] else
                  f"this kernel has no `sch_netem` (`tc qdisc add ... netem` says “{netem['message']}”), "
                  "so every figure below has the veth pair's own latency (tens of µs) and the "
                  "latency term of the cost model is the fitted `a`."), ""]
    rates = list(r["allreduce"])
    sizes = [p["bytes"] for p in r["allreduce"][rates[0]]]
    lines.append("| size | " + " | ".join(rates) + " |")
    lines.append("|---|" + "---|" * len(rates))
    for s in sizes:
        cells = []
        for rate in rates:
            pt = next((p for p in r["allreduce"][rate] if p["bytes"] == s), None)
            cells.append(f"{pt['seconds'] * 1e3:.2f} ms" if pt else "—")
        lines.append(f"| {fmt_bytes(s)} | " + " | ".join(cells) + " |")
    lines.append("| **a** (smallest) | " + " | ".join(f"{r['fit'][x][0] * 1e3:.2f} ms" for x in rates) + " |")
    lines.append("| **bw** (fit ≥ 1 MiB) | " + " | ".join(f"{r['fit'][x][1] * 8 / 1e9:.2f} Gbit/s" for x in rates) + " |")
    lines += ["", "### Training across the namespaces against the cost model", "",
              "Seconds per step of 2 ranks × batch 32, one rank per namespace (1 intra-op thread "
              "each; the namespaces share this machine's 2 cores). T<sub>c</sub>: one process, "
              "1 thread, batch 32 (one rank's compute). Predicted, without overlap: "
              "T<sub>c</sub> + a + gradient bytes / bw of the link (the fit above). A measured "
              "step below the prediction is all-reduce hidden behind backward.", "",
              "| model | gradient bytes | T<sub>c</sub> | " +
              " | ".join(f"{x}: measured / predicted (efficiency)" for x in rates) + " |",
              "|---|---|---|" + "---|" * len(rates)]
    for model in r["training"][rates[0]]:
        grad = 4 * r["params"].get(model, 0)
        compute = r["compute"][model]
        cells = []
        for rate in rates:
            a, bw = r["fit"][rate]
            got = r["training"][rate][model]
            cells.append(f"{got * 1e3:.1f} / {predict(compute, grad, a, bw) * 1e3:.1f} ms "
                         f"({compute / got:.0%})")
        lines.append(f"| {model} | {fmt_bytes(grad)} | {compute * 1e3:.1f} ms | " +
                     " | ".join(cells) + " |")
    lines += ["", "Largest gradient size at which the model predicts ≥ 90 % efficiency "
              "(S = bw · (T<sub>c</sub> / 9 − a)), by link and one rank's step time:", "",
              "| T<sub>c</sub> | " + " | ".join(rates) + " |", "|---|" + "---|" * len(rates)]
    for tc in (0.01, 0.1, 1.0):
        cells = []
        for rate in rates:
            a, bw = r["fit"][rate]
            cap = bw * (tc / 9 - a)
            cells.append(fmt_bytes(int(cap)) + f" ({int(cap / 4 / 1e6 * 10) / 10:g} M params)"
                         if cap > 0 else "none")
        lines.append(f"| {tc * 1e3:g} ms | " + " | ".join(cells) + " |")
    if "latency" in r:
        lat = r["latency"]
        d = lat["delays"]
        lines += ["", "### Latency: a link that delays every packet", "",
                  "Without netem, `bench/netdelay.py` joins the two namespaces by TUN devices and a "
                  "user-space forwarder that delays every packet by a fixed time one way (the 0 ms "
                  "column is the forwarder alone: it is slower than the veth pair). "
                  f"Measured {lat.get('date', r['date'])} by `{lat.get('command', r['command'])}`.", "",
                  "| size | " + " | ".join(f"{x * 1e3:g} ms one way" for x in d) + " |",
                  "|---|" + "---|" * len(d)]
        for size in [p["bytes"] for p in lat["allreduce"][str(d[0])]]:
            cells = [f"{next(p for p in lat['allreduce'][str(x)] if p['bytes'] == size)['seconds'] * 1e3:.2f} ms"
                     for x in d]
            lines.append(f"| {fmt_bytes(size)} | " + " | ".join(cells) + " |")
        lines.append("| **a** | " + " | ".join(f"{lat['fit'][str(x)][0] * 1e3:.2f} ms" for x in d) + " |")
        lines.append("| **bw** | " + " | ".join(f"{lat['fit'][str(x)][1] * 8 / 1e9:.2f} Gbit/s" for x in d) + " |")
        base_a = lat["fit"][str(d[0])][0]
        per = [(lat["fit"][str(x)][0] - base_a) / x for x in d if x > 0]
        lines += ["", "a grows by " + ", ".join(f"{k:.1f}" for k in per) +
                  " one-way delays per all-reduce (two ranks: a reduce-scatter and an all-gather "
                  "step, each a message and its TCP acknowledgement).", "",
                  "Training steps over the delayed link (2 ranks × batch 32, 1 thread each), "
                  "measured / predicted with that link's a and bw (no overlap):", "",
                  "| model | " + " | ".join(f"{x * 1e3:g} ms" for x in d) + " |",
                  "|---|" + "---|" * len(d)]
        for model in lat["training"][str(d[0])]:
            grad = 4 * r["params"].get(model, 0)
            cells = []
            for x in d:
                a_, bw_ = lat["fit"][str(x)]
                got = lat["training"][str(x)][model]
                cells.append(f"{got * 1e3:.1f} / {predict(r['compute'][model], grad, a_, bw_) * 1e3:.1f} ms")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", MARK_END]
    section = "\n".join(lines) + "\n"
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(path).read()
    if MARK_BEGIN in text:
        text = text[:text.index(MARK_BEGIN)] + section + text[text.index(MARK_END) + len(MARK_END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(path, "w").write(text)
    print(section)


if __name__ == "__main__":
    main()
