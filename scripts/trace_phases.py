#!/usr/bin/env python3
"""Where a layer's time goes, op by op, from `loom trace` files.

    scripts/trace_phases.py RUN.trace [MORE.trace ...] [--attn-stamp]

For every op of a layer (qkv, attn, o_proj, gate_up, down) and the lm_head
and argmax, the mean over the traced steps and layers of its *phase*: from
the last end of the op before it to its own last end. The phases add up to
the step, so two runs compare op by op even when their tasks wait in
different places (LL words: a task's wait is inside its run). Also the
first run of each op after the op before it ended (negative: it starts
polling early).

--attn-stamp: the kernel was built with -DLOOM_ATTN_PHASE=k
(tasks/attention.cuh), which puts the time an attention tile reaches point
k of its run in the wait-begin stamp; prints that point's mean offset from
the tile's run begin and from its qkv op's last end.

Only the standard library; reads the JSON trace format of docs/trace.md.
"""
import json
import statistics
import sys
from collections import defaultdict

ORDER = ["qkv", "attn", "o_proj", "gate_up", "down", "lm_head", "argmax"]


def load(path):
    with open(path) as f:
        d = json.load(f)
    if d.get("format") != "loom-trace":
        sys.exit(f"{path}: not a loom trace")
    by_op = defaultdict(list)
    for i, task in enumerate(d["tasks"]):
        by_op[task["op"]].append(i)
    return d, by_op


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


def attn_stamps(d, by_op):
    from_run, from_qkv = [], []
    for stamps in d["t"]:
        for o, op in enumerate(d["ops"]):
            if op["kind"] != "attention":
                continue
            qkv_end = max(stamps[4 * i + 2] for i in by_op[o - 1])
            for i in by_op[o]:
                from_run.append((stamps[4 * i] - stamps[4 * i + 1]) / 1000)
                from_qkv.append((stamps[4 * i] - qkv_end) / 1000)
    return from_run, from_qkv


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    for path in args:
        d, by_op = load(path)
        phase, first = phases(d, by_op)
        print(f"{path}: {d['steps']} steps from {d['first_step']}")
        print(f"  {'op':8s} {'phase us':>9s} {'n':>5s} {'first run after the op before':>31s}")
        total = 0.0
        for name in ORDER:
            if name not in phase:
                continue
            v = phase[name]
            total += sum(v) / d["steps"]
            print(f"  {name:8s} {statistics.mean(v):9.2f} {len(v):5d} "
                  f"{statistics.mean(first[name]):31.2f}")
        print(f"  step (sum of the phases, from the first op's end): {total:.1f} us")
        if "--attn-stamp" in sys.argv:
            r, q = attn_stamps(d, by_op)
            print(f"  attention stamp: {statistics.mean(r):.2f} us after its run begin, "
                  f"{statistics.mean(q):.2f} us after qkv's last end")


if __name__ == "__main__":
    main()
