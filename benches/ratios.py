#!/usr/bin/env python3
"""Each criterion result as a ratio to its group's bare service, from the
last run (target/criterion/**/new/estimates.json).

Every group keeps a `bare` entry (the same request and checks with no
layer); an entry `a/b/c` is compared with `a/b/bare`, else `a/bare`. The
machine is shared and noisy: read ratios from one run, not absolute times
across runs.

    cargo bench -p mcp-benches -- --warm-up-time 1 --measurement-time 3
    python3 benches/ratios.py
"""

import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


def medians(root):
    found = {}
    for directory, _, files in os.walk(root):
        if os.path.basename(directory) == "new" and "estimates.json" in files:
            bench = os.path.relpath(os.path.dirname(directory), root)
            with open(os.path.join(directory, "estimates.json")) as f:
                found[bench.replace(os.sep, "/")] = json.load(f)["median"]["point_estimate"]
    return found


def baseline(name, found):
    parts = name.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = "/".join(parts[:cut] + ["bare"])
        if candidate in found and candidate != name:
            return candidate
    return None


def show(ns):
    return "%.0f ns" % ns if ns < 10_000 else "%.1f us" % (ns / 1000)


def main():
    found = medians(sys.argv[1] if len(sys.argv) > 1 else ROOT)
    if not found:
        sys.exit("no criterion results under %s: run cargo bench -p mcp-benches first" % ROOT)
    print("| bench | median | bare | ratio to bare |")
    print("|---|---:|---:|---:|")
    for name in sorted(found):
        if name.endswith("/bare") or name.split("/")[-1] == "report":
            continue
        bare = baseline(name, found)
        if bare is None:
            print("| %s | %s | - | - |" % (name, show(found[name])))
        else:
            print("| %s | %s | %s | %.2fx |" % (
                name, show(found[name]), show(found[bare]), found[name] / found[bare]))


if __name__ == "__main__":
    main()
