#!/usr/bin/env python3
"""Where a layer's time goes, op by op, from `loom trace` files.

    scripts/trace_phases.py RUN.trace [MORE.trace ...] [--stamp KIND]
                            [--bw TBPS [--png FILE]]

For every op of a layer (qkv, attn, o_proj, gate_up, down) and the lm_head
and argmax, the mean over the traced steps and layers of its *phase*: from
the last end of the op before it to its own last end. The phases add up to
the step, so two runs compare op by op even when their tasks wait in
different places (LL words: a task's wait is inside its run). Also the
first run of each op after the op before it ended (negative: it starts
polling early).

--bw TBPS: also each op's weights (a step's: the trace's weight_bytes; in
traces from before 2026-11-23, which lack them, its tasks' bytes, the cost
model's reads and writes, activations included) at TBPS terabytes a
second, and the phase's excess over that: where a layer loses time against
the floor. A phase can be shorter than its bytes' time (bytes the op before
prefetched) and the op before's then longer. --png FILE (with --bw): the
same as a bar chart (matplotlib).

--stamp KIND (attention or linear): the kernel was built with
-DLOOM_ATTN_PHASE=k or -DLOOM_LIN_PHASE=k (tasks/trace.cuh), which puts the
time a task of that kind reaches point k of its run in its wait-begin stamp;
prints, per op, that point's mean offset from the task's run begin and from
the op before's last end.

Only the standard library (and matplotlib for --png); reads the JSON trace
format of docs/trace.md.
"""
import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

ORDER = ["qkv", "attn", "o_proj", "gate_up", "down", "lm_head", "argmax"]


def load(path):
    """The trace and its tasks by op. A version-1 file's three stamps a task
    (docs/trace.md) become four, signalled = end, so every reader indexes
    4 * task + k."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: cannot read it: {e}")
    if not isinstance(d, dict) or d.get("format") != "loom-trace":
        sys.exit(f"{path}: not a loom trace")
    n = len(d.get("tasks", []))
    k = 3 if d.get("version") == 1 else 4
    if any(len(row) != k * n for row in d.get("t", [])):
        sys.exit(f"{path}: a step's stamps do not match its {n} tasks")
    if k == 3:
        d["t"] = [[x for i in range(n) for x in row[3 * i:3 * i + 3] + [row[3 * i + 2]]]
                  for row in d["t"]]
    by_op = defaultdict(list)
    for i, task in enumerate(d["tasks"]):
        by_op[task["op"]].append(i)
    return d, by_op


def op_bytes(d, by_op):
    """({op name: mean bytes an instance reads}, what they are): the ops'
    weights where the trace has them (weight_bytes, since 2026-11-23), else
    the sum of the tasks' bytes (the cost model's: activations too)."""
    weights = all("weight_bytes" in op for op in d["ops"])
    per = defaultdict(list)
    for o, ids in by_op.items():
        op = d["ops"][o]
        per[op["name"]].append(op["weight_bytes"] if weights
                               else sum(d["tasks"][i]["bytes"] for i in ids))
    what = "weights" if weights else "tasks' bytes"
    return {n: statistics.mean(v) for n, v in per.items()}, what


def plot(path, title, rows, what):
    """rows: (op, phase us, us at the bandwidth); what: op_bytes's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.4))
    ys = list(range(len(rows)))[::-1]
    ax.barh([y + 0.2 for y in ys], [r[1] for r in rows], height=0.4, color="tab:orange",
            label="phase (last end of the op before -> its own last end)")
    ax.barh([y - 0.2 for y in ys], [r[2] for r in rows], height=0.4, color="tab:blue",
            label=("its weights" if what == "weights" else
                   "its tasks' bytes (cost model: weights and activations)") + " at the bandwidth")
    for y, r in zip(ys, rows):
        ax.text(max(r[1], r[2]) + 0.5, y, f"{r[1] - r[2]:+.2f} us", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows])
    ax.set_xlabel("us per layer (mean over the traced steps and layers)")
    ax.set_xlim(0, max(max(r[1], r[2]) for r in rows) * 1.15)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def phases(d, by_op):
    phase, first = defaultdict(list), defaultdict(list)
    ops = d["ops"]
    for stamps in d["t"]:
        last_end = {o: max(stamps[4 * i + 2] for i in ids) for o, ids in by_op.items()}
        first_run = {o: min(stamps[4 * i + 1] for i in ids) for o, ids in by_op.items()}
        for o in range(1, len(ops)):
            if o in last_end and o - 1 in last_end:
                name = ops[o]["name"]
                phase[name].append((last_end[o] - last_end[o - 1]) / 1000)
                first[name].append((first_run[o] - last_end[o - 1]) / 1000)
    return phase, first


def point_stamps(d, by_op, kind):
    """{op name: ([from run begin], [from the op before's last end])}."""
    out = defaultdict(lambda: ([], []))
    for stamps in d["t"]:
        for o, op in enumerate(d["ops"]):
            if op["kind"] != kind or o - 1 not in by_op:
                continue
            before = max(stamps[4 * i + 2] for i in by_op[o - 1])
            for i in by_op[o]:
                out[op["name"]][0].append((stamps[4 * i] - stamps[4 * i + 1]) / 1000)
                out[op["name"]][1].append((stamps[4 * i] - before) / 1000)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--stamp", choices=("attention", "linear"))
    ap.add_argument("--bw", type=float, help="TB/s")
    ap.add_argument("--png")
    a = ap.parse_args()
    if a.png and not a.bw:
        ap.error("--png needs --bw")
    if a.bw is not None and a.bw <= 0:
        ap.error("--bw: a bandwidth above 0")
    kind, png, bw = a.stamp, a.png, a.bw * 1e12 if a.bw else None
    for path in a.traces:
        d, by_op = load(path)
        phase, first = phases(d, by_op)
        nbytes, what = op_bytes(d, by_op)
        print(f"{path}: {d['steps']} steps from {d['first_step']}"
              + (f"; --bw: against each op's {what}" if bw else ""))
        extra = f" {'at the bw':>9s} {'excess':>7s}" if bw else ""
        print(f"  {'op':8s} {'phase us':>9s} {'n':>5s} {'first run after the op before':>31s}"
              + extra)
        total, rows = 0.0, []
        for name in ORDER:
            if name not in phase:
                continue
            v = phase[name]
            total += sum(v) / d["steps"]
            line = (f"  {name:8s} {statistics.mean(v):9.2f} {len(v):5d} "
                    f"{statistics.mean(first[name]):31.2f}")
            if bw:
                at = nbytes[name] / bw * 1e6
                line += f" {at:9.2f} {statistics.mean(v) - at:+7.2f}"
                rows.append((name, statistics.mean(v), at))
            print(line)
        print(f"  step (sum of the phases, from the first op's end): {total:.1f} us")
        if png:
            layer = [r for r in rows if r[0] in ORDER[:5]]
            plot(png, f"{os.path.basename(path)}: a layer's phases against its {what} at "
                 f"{bw / 1e12:.3f} TB/s", layer, what)
        if kind:
            for name, (r, b) in sorted(point_stamps(d, by_op, kind).items(),
                                       key=lambda kv: ORDER.index(kv[0])
                                       if kv[0] in ORDER else len(ORDER)):
                print(f"  {name} stamp: {statistics.mean(r):.2f} us after its run begin, "
                      f"{statistics.mean(b):.2f} us after the op before's last end")


if __name__ == "__main__":
    main()
