#!/usr/bin/env python3
"""scripts/trace_phases.py --bw on a synthetic run whose answer is known.

Two traced steps of a two-layer model on one SM: embed (2 us), then qkv,
attn, o_proj, gate_up, down (10 us each) per layer, then the lm_head (100
us) and the argmax (1 us). The ops' weights at 3 TB/s take: qkv 30 MB 10
us, attn 3 MB 1 us, o_proj 15 MB 5 us, gate_up 60 MB 20 us, down 30 MB
10 us, lm_head 300 MB 100 us. So the excess of each phase over its
weights' time is 0, +9, +5, -10, 0 and 0 us. The tasks' bytes are twice
the weights (qkv: two tasks side by side, an instance's bytes their sum):
a trace without weight_bytes (before 2026-11-23) is set against those,
excess -10, +8, 0, -30, -10 and -100. A planted change (gate_up's weights
halved) must move gate_up's excess to 0 and nothing else. With
matplotlib, --png must write a picture.
"""
import json
import os
import subprocess
import sys
import tempfile

from synth_trace import synth_trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "trace_phases.py")
OPS = ["qkv", "attn", "o_proj", "gate_up", "down"]
MB = {"qkv": 15e6, "attn": 3e6, "o_proj": 15e6, "gate_up": 60e6, "down": 30e6,
      "lm_head": 300e6, "argmax": 0, "embed": 0}
WANT = {"qkv": 0.0, "attn": 9.0, "o_proj": 5.0, "gate_up": -10.0, "down": 0.0, "lm_head": 0.0}
WANT_TASKS = {"qkv": -10.0, "attn": 8.0, "o_proj": 0.0, "gate_up": -30.0, "down": -10.0,
              "lm_head": -100.0}
STEP_NS = 200_000


def make(path, plant=False, weights=True):
    ops = [{"name": "embed", "kind": "embed", "layer": -1}]
    for L in range(2):
        ops += [{"name": n, "kind": "attention" if n == "attn" else "linear", "layer": L}
                for n in OPS]
    ops += [{"name": "lm_head", "kind": "linear", "layer": -1},
            {"name": "argmax", "kind": "argmax", "layer": -1}]
    tasks, spans, t = [], [], 0
    for i, o in enumerate(ops):
        n = o["name"]
        d = {"embed": 2_000, "lm_head": 100_000, "argmax": 1_000}.get(n, 10_000)
        k_tasks = 2 if n == "qkv" else 1
        if weights:
            o["weight_bytes"] = int(MB[n] * k_tasks / (2 if plant and n == "gate_up" else 1))
        for k in range(k_tasks):
            tasks.append({"name": f"{n}[{k}]", "op": i, "sm": 0, "bytes": int(2 * MB[n]),
                          "signal": 0, "waits": []})
            spans.append((t, t + d))
        t += d
    with open(path, "w") as f:
        json.dump(synth_trace(ops, tasks, spans, 2, STEP_NS), f)


def run(tmp, plant, png=None, weights=True):
    path = os.path.join(tmp, "plant.trace" if plant else "run.trace")
    make(path, plant, weights)
    args = [sys.executable, SCRIPT, path, "--bw", "3"] + (["--png", png] if png else [])
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"trace_phases.py failed: {p.stderr}")
    excess = {}
    for line in p.stdout.splitlines():
        w = line.split()
        if w and w[0] in WANT and len(w) == 6:
            excess[w[0]] = float(w[5])
    return excess, p.stdout


def main():
    fails = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            import matplotlib  # noqa: F401
            png = os.path.join(tmp, "phases.png")
        except ImportError:
            png = None
        got, out = run(tmp, False, png)
        planted, _ = run(tmp, True)
        old, _ = run(tmp, False, weights=False)
        for n, v in WANT.items():
            if abs(got.get(n, 1e9) - v) > 0.01:
                fails.append(f"{n} excess {got.get(n)} us, want {v:+.2f}")
            if abs(old.get(n, 1e9) - WANT_TASKS[n]) > 0.01:
                fails.append(f"without weight_bytes: {n} excess {old.get(n)} us, "
                             f"want {WANT_TASKS[n]:+.2f}")
            pv = 0.0 if n == "gate_up" else v
            if abs(planted.get(n, 1e9) - pv) > 0.01:
                fails.append(f"planted: {n} excess {planted.get(n)} us, want {pv:+.2f}")
        if png and not (os.path.exists(png) and os.path.getsize(png) > 1000):
            fails.append("--png wrote no picture")
    if fails:
        print(out)
        sys.exit("FAIL: " + "; ".join(fails))
    print(f"ok: excess {got}; planted {planted}; without weight_bytes {old}"
          + ("" if png else " (no matplotlib: no --png)"))


if __name__ == "__main__":
    main()
