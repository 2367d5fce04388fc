"""One decode step's kernels on the GPU's timeline, from Nsight Systems.

Input: the CSV of `nsys stats --report cuda_gpu_trace --format csv` over a
`rocmforge bench -p 0 -n N --device gpu` run profiled with
`--cuda-graph-trace=node` (every kernel of a replayed graph is a row).
A decode step starts at a `get_rows` kernel (the token's embedding row);
the last complete step is shown. Each kernel is charged with how far it
moved the step's end: its end minus the latest end before it (kernels
overlap under programmatic dependent launch, so durations do not add up to
the step; these charges do). Usage: python3 nsys_step.py TRACE.csv [TOP]
"""
import collections
import csv
import sys


def rows_of(path):
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    head = next((i for i, l in enumerate(lines) if "Start (ns)" in l), None)
    if head is None:
        sys.exit(f"{path}: no 'Start (ns)' header (not a cuda_gpu_trace CSV?)")
    reader = csv.reader(lines[head:])
    cols = next(reader)
    start = cols.index("Start (ns)")
    dur = cols.index("Duration (ns)")
    name = cols.index("Name")
    out = []
    for r in reader:
        if len(r) <= max(start, dur, name):
            continue
        try:
            s, d = float(r[start].replace(",", "")), float(r[dur].replace(",", ""))
        except ValueError:
            continue
        out.append((s, d, r[name].split("(")[0].strip()))
    return sorted(out)


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    rows = [r for r in rows_of(path) if not r[2].startswith("[CUDA mem")]
    starts = [i for i, r in enumerate(rows) if r[2].startswith("get_rows")]
    if len(starts) < 2:
        sys.exit("fewer than two decode steps (get_rows kernels) in the trace")
    step = rows[starts[-2]:starts[-1]]
    t0 = step[0][0]
    wall = step[-1][0] + step[-1][1] - t0
    charge = collections.defaultdict(lambda: [0.0, 0.0, 0])
    last_end = t0
    for s, d, n in step:
        end = s + d
        c = charge[n]
        c[0] += max(0.0, end - last_end)
        c[1] += d
        c[2] += 1
        last_end = max(last_end, end)
    busy = sum(d for _, d, _ in step)
    print(f"one decode step: {wall / 1e3:.1f} us from its first kernel's start to its last one's end,"
          f" {len(step)} kernels, {busy / 1e3:.1f} us of kernel time")
    print(f"{'charged us':>11} {'kernel us':>10} {'count':>6}  kernel")
    for n, (c, d, k) in sorted(charge.items(), key=lambda x: -x[1][0])[:top]:
        print(f"{c / 1e3:11.1f} {d / 1e3:10.1f} {k:6d}  {n}")
    gap = rows[starts[-1]][0] - (step[-1][0] + step[-1][1])
    print(f"then {gap / 1e3:.1f} us until the next step's first kernel"
          " (the host's turn: reading the picked id back, launching the next step)")


main()
