#!/usr/bin/env python3
"""scripts/sm_time.py on a synthetic trace whose answer is known.

Two SMs, two tasks each, two traced steps. On SM 0 each task waits 1 us,
runs 3 us and releases in 0.5 us, the second one's wait beginning 2 us
after the first one's signalled; SM 1's tasks take twice as long in every
part. Per SM per step: wait 3, run 9, release 1.5, idle 3 us (the means of
SM 0's 2, 6, 1, 2 and SM 1's 4, 12, 2, 4); spans 11 and 22 us: mean 16.5,
max 22. A planted change (SM 1's second run 2 us longer) must move run to
10 and the spans to 17.5 and 24, and nothing else. A version-1 file (three
stamps a task, signalled = end) reads with no release: idle 3.75 (SM 0's
2.5, SM 1's 5: the release joins the idle time), spans 10.5 and 21. A file that is not a
trace, a trace without steps and one whose stamps do not match its tasks
are refused with a message.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "sm_time.py")


def task_stamps(t0, scale, extra_run=0):
    """Two tasks from t0 (ns): wait 1, run 3, release 0.5 us, idle 2 between."""
    out, t = [], t0
    for k in range(2):
        w = t
        r = w + 1000 * scale
        e = r + 3000 * scale + (extra_run if k == 1 else 0)
        g = e + 500 * scale
        out.append([w, r, e, g])
        t = g + 2000 * scale
    return out


def make(path, plant=False, version=2):
    tasks = [{"name": f"t{i}", "op": 0, "sm": i // 2, "bytes": 0} for i in range(4)]
    stamps = []
    for s in range(2):
        t0 = 1_000_000 + s * 100_000
        a = task_stamps(t0, 1)
        b = task_stamps(t0, 2, 2000 if plant else 0)
        stamps.append([x for st in a + b for x in (st if version == 2 else st[:3])])
    d = {"format": "loom-trace", "version": version, "backend": "cuda", "n_sms": 2,
         "first_step": 0, "steps": 2, "steps_run": 2, "truncated": False, "bandwidth": None,
         "ops": [{"name": "qkv", "kind": "linear", "layer": 0}], "counters": [],
         "tasks": tasks, "sm_tasks": [[0, 1], [2, 3]], "t": stamps}
    with open(path, "w") as f:
        json.dump(d, f)


def parse(out):
    line = out.strip().splitlines()[-1]
    body = line.split(": us per SM per step: ")[1]
    parts, rest = body.split("; span mean ")
    vals = {k: float(v) for k, v in (p.split() for p in parts.split(", "))}
    mean, rest = rest.split(", max ")
    return vals, float(mean), float(rest.split(";")[0])


def run(path):
    return subprocess.run([sys.executable, SCRIPT, path], capture_output=True, text=True,
                          check=True).stdout


def main():
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for plant in (False, True):
            p = os.path.join(tmp, f"t{int(plant)}.trace")
            make(p, plant)
            vals, mean, most = parse(run(p))
            want = {"wait": 3.0, "run": 10.0 if plant else 9.0, "release": 1.5, "idle": 3.0}
            want_mean, want_max = (17.5, 24.0) if plant else (16.5, 22.0)
            for k, v in want.items():
                if abs(vals[k] - v) > 1e-6:
                    print(f"FAIL plant={plant}: {k} {vals[k]} (want {v})")
                    fails += 1
            if abs(mean - want_mean) > 1e-6 or abs(most - want_max) > 1e-6:
                print(f"FAIL plant={plant}: span {mean} / {most} (want {want_mean} / {want_max})")
                fails += 1
        # version 1: three stamps a task, no release (signalled = end)
        p = os.path.join(tmp, "v1.trace")
        make(p, version=1)
        vals, mean, most = parse(run(p))
        want = {"wait": 3.0, "run": 9.0, "release": 0.0, "idle": 3.75}
        for k, v in want.items():
            if abs(vals[k] - v) > 0.0501:   # printed to 0.1 us
                print(f"FAIL version 1: {k} {vals[k]} (want {v})")
                fails += 1
        if abs(mean - 15.75) > 0.0501 or abs(most - 21.0) > 1e-6:
            print(f"FAIL version 1: span {mean} / {most} (want 15.75 / 21)")
            fails += 1
        bad = os.path.join(tmp, "bad.trace")
        short = {"format": "loom-trace", "version": 2, "tasks": [{"sm": 0}], "t": [[1, 2, 3]]}
        for d in ({"format": "other"}, {"format": "loom-trace", "tasks": [], "t": []}, short,
                  [1, 2]):
            with open(bad, "w") as f:
                json.dump(d, f)
            r = subprocess.run([sys.executable, SCRIPT, bad], capture_output=True, text=True)
            if r.returncode == 0 or "Traceback" in r.stderr:
                print(f"FAIL: {d} accepted, or not refused with a message: {r.stderr!r}")
                fails += 1
    print("test_sm_time:", "FAIL" if fails else "ok")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
