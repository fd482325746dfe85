#!/usr/bin/env python3
"""Where each SM's time goes, task by task, from `loom trace` files.

    scripts/sm_time.py RUN.trace [MORE.trace ...]

For each file: per SM and traced step, the sum over the SM's tasks (in the
order of their wait stamps) of
- wait: wait begin to run begin (the task's prefetch, staging set-up and
  counter waits),
- run: run begin to end,
- release: end to signalled,
- idle: the previous task's signalled to this one's wait begin,
then their means over SMs and steps in us, the span (the SM's first wait
begin to its last signalled) as mean and max, and tasks per SM a step.
With every wait dropped (LOOM_CUDA_SKIP_WAITS=all) this is what the tasks
themselves cost; the span's max is the busiest SM's step (perf-notes v27).

Only the standard library; reads the JSON trace format of docs/trace.md
(trace_phases.py's reader: version 1's three stamps a task read as four,
signalled = end).
"""
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trace_phases import load as load_trace   # noqa: E402  (checked, version 1 made 4 stamps)

PARTS = ["wait", "run", "release", "idle"]


def sm_time(d):
    """{part: mean us per SM per step}, span mean, span max, tasks/SM/step."""
    by_sm = defaultdict(list)
    for i, t in enumerate(d["tasks"]):
        by_sm[t["sm"]].append(i)
    tot, spans = defaultdict(float), []
    for stamps in d["t"]:
        for ids in by_sm.values():
            ids = sorted(ids, key=lambda i: stamps[4 * i])
            prev = None
            for i in ids:
                w, r, e, g = stamps[4 * i:4 * i + 4]
                tot["wait"] += r - w
                tot["run"] += e - r
                tot["release"] += g - e
                if prev is not None:
                    tot["idle"] += w - prev
                prev = g
            spans.append((stamps[4 * ids[-1] + 3] - stamps[4 * ids[0]]) / 1000)
    n = len(spans)
    if n == 0:
        raise ValueError("no traced steps")
    per = {p: tot[p] / n / 1000 for p in PARTS}
    return per, statistics.mean(spans), max(spans), len(d["tasks"]) / len(by_sm)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    for path in argv:
        d, _ = load_trace(path)   # exits with a message on a file it cannot read
        try:
            per, mean, most, k = sm_time(d)
        except (KeyError, ValueError, IndexError, TypeError) as e:
            print(f"{path}: cannot read its stamps: {e!r}", file=sys.stderr)
            return 1
        print(f"{path}: us per SM per step: " +
              ", ".join(f"{p} {per[p]:.1f}" for p in PARTS) +
              f"; span mean {mean:.1f}, max {most:.1f}; {k:.1f} tasks an SM a step")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
