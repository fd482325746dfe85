#!/usr/bin/env python3
"""Where a layer's time goes, op by op, from `loom trace` files.

    scripts/trace_phases.py RUN.trace [MORE.trace ...] [--stamp KIND]

For every op of a layer (qkv, attn, o_proj, gate_up, down) and the lm_head
and argmax, the mean over the traced steps and layers of its *phase*: from
the last end of the op before it to its own last end. The phases add up to
the step, so two runs compare op by op even when their tasks wait in
different places (LL words: a task's wait is inside its run). Also the
first run of each op after the op before it ended (negative: it starts
polling early).

--stamp KIND (attention or linear): the kernel was built with
-DLOOM_ATTN_PHASE=k or -DLOOM_LIN_PHASE=k (tasks/trace.cuh), which puts the
time a task of that kind reaches point k of its run in its wait-begin stamp;
prints, per op, that point's mean offset from the task's run begin and from
the op before's last end.

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
    argv, kind = sys.argv[1:], None
    if "--stamp" in argv:
        i = argv.index("--stamp")
        if i + 1 >= len(argv) or argv[i + 1] not in ("attention", "linear"):
            sys.exit("--stamp: attention or linear")
        kind = argv[i + 1]
        del argv[i:i + 2]
    args = [a for a in argv if not a.startswith("--")]
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
        if kind:
            for name, (r, b) in sorted(point_stamps(d, by_op, kind).items(),
                                       key=lambda kv: ORDER.index(kv[0])
                                       if kv[0] in ORDER else len(ORDER)):
                print(f"  {name} stamp: {statistics.mean(r):.2f} us after its run begin, "
                      f"{statistics.mean(b):.2f} us after the op before's last end")


if __name__ == "__main__":
    main()
