#!/usr/bin/env python3
"""Mutation checks: applies each small mutation in scripts/mutants.tsv to the source, rebuilds,
runs the tests that guard that code, and reports whether the tests kill it (a failing build or
test run) or it survives. The source is restored after each mutant, also on Ctrl-C.

    scripts/mutants.sh [BUILD_DIR] [--only SUBSTRING]

Each line of mutants.tsv: file <TAB> the exact text (it must occur once) <TAB> its replacement
<TAB> the ctest -R regex of the guarding tests <TAB> what the mutation breaks. In the text and the
replacement, \\n stands for a newline and \\t for a tab.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    mutants = []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            sys.exit(f"{path}:{n}: expected 5 tab-separated fields, got {len(parts)}")
        file, old, new, tests, what = parts
        unescape = lambda s: s.replace("\\n", "\n").replace("\\t", "\t")
        mutants.append(dict(line=n, file=file, old=unescape(old), new=unescape(new), tests=tests,
                            what=what))
    return mutants


def run(cmd, cwd, timeout):
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired:
        return 124, "timed out"


def main():
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        i = args.index("--only")
        only = args[i + 1]
        del args[i:i + 2]
    build = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
    mutants = load(os.path.join(ROOT, "scripts", "mutants.tsv"))
    if only:
        mutants = [m for m in mutants if only in m["file"] or only in m["what"]]
    # Every mutation must apply to exactly one place before anything is changed.
    for m in mutants:
        text = open(os.path.join(ROOT, m["file"]), encoding="utf-8").read()
        count = text.count(m["old"])
        if count != 1:
            sys.exit(f"mutants.tsv:{m['line']}: the text occurs {count} times in {m['file']}")
    rc, out = run(["ninja", "-C", build], ROOT, 3600)
    if rc != 0:
        sys.exit("the unmutated tree does not build:\n" + out[-3000:])
    results = []
    for m in mutants:
        path = os.path.join(ROOT, m["file"])
        original = open(path, encoding="utf-8").read()
        start = time.time()
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace(m["old"], m["new"], 1))
            rc, out = run(["ninja", "-C", build], ROOT, 1800)
            if rc != 0:
                verdict = "killed (build)"
            else:
                rc, out = run(["ctest", "--test-dir", build, "-R", m["tests"], "--timeout", "600"],
                              ROOT, 1800)
                ran = "No tests were found" not in out
                verdict = "killed" if rc != 0 and ran else ("SURVIVED" if ran else "NO TESTS")
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        results.append((m, verdict, time.time() - start))
        print(f"{verdict:15} {time.time() - start:6.0f} s  {m['file']}:  {m['what']}", flush=True)
    run(["ninja", "-C", build], ROOT, 3600)  # back to the unmutated binaries
    killed = sum(1 for _, v, _ in results if v.startswith("killed"))
    print(f"\n{killed} of {len(results)} mutants killed, {len(results) - killed} survived")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
