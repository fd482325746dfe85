#!/usr/bin/env python3
"""scripts/dram_timeline.py on a synthetic run whose answer is known.

Two traced steps of a two-layer model, one task per op: embed (2 us), then
qkv, attn, o_proj, gate_up, down (10 us each) per layer, then the lm_head
(100 us, 300 MB: 3 TB/s). The "sampled" DRAM throughput, 1.5 us apart and
123 us ahead of the trace's clock, reads 40 in the lm_head, 20 in every
down phase and 0 elsewhere. The script must find the offset, scale 40 to
3 TB/s, and put ~1.5 TB/s in the down phases and ~0 in the others. A
planted error (the down phases' samples moved into gate_up) must move the
numbers with them.
"""
import json
import os
import subprocess
import sys
import tempfile

from synth_trace import synth_trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "dram_timeline.py")
OPS = ["qkv", "attn", "o_proj", "gate_up", "down"]
STEP_NS, LEAD_NS, IV_NS = 210_000, 123_000, 1500


def make(tmp, plant=False):
    ops = [{"name": "embed", "kind": "embed", "layer": -1}]
    for L in range(2):
        ops += [{"name": n, "kind": "attention" if n == "attn" else "linear", "layer": L}
                for n in OPS]
    ops.append({"name": "lm_head", "kind": "linear", "layer": -1})
    tasks = [{"name": f"{o['name']}[0]", "op": i, "sm": 0,
              "bytes": 300_000_000 if o["name"] == "lm_head" else 1000, "signal": 0,
              "waits": []} for i, o in enumerate(ops)]
    spans, t = [], 0
    for o in ops:
        d = 2_000 if o["name"] == "embed" else 100_000 if o["name"] == "lm_head" else 10_000
        spans.append((t, t + d))
        t += d
    trace = synth_trace(ops, tasks, spans, 2, STEP_NS)
    loud = "gate_up" if plant else "down"
    samples = []
    for i in range(int((LEAD_NS + 3 * STEP_NS) / IV_NS)):
        c = (i + 0.5) * IV_NS - LEAD_NS   # on the trace's clock
        v = 0.0
        for s in range(2):
            for o, (a, b) in zip(ops, spans):
                if s * STEP_NS + a <= c < s * STEP_NS + b:
                    v = 40.0 if o["name"] == "lm_head" else 20.0 if o["name"] == loud else 0.0
        samples.append(v)
    metric = "pmsampling:dramc__read_throughput.avg.pct_of_peak_sustained_elapsed"
    csv_text = (f'"ID","Kernel Name","{metric}","profiler__pmsampler_interval_time"\n'
                '"","","%","us"\n'
                f'"0","loom_megakernel","({"; ".join(f"{v:.2f}" for v in samples)})",'
                '"1.50 (1.50)"\n')
    paths = os.path.join(tmp, "run.csv"), os.path.join(tmp, "run.trace")
    with open(paths[0], "w") as f:
        f.write(csv_text)
    with open(paths[1], "w") as f:
        json.dump(trace, f)
    return paths


def phases(out):
    """{phase: TB/s} from the script's table, and the offset (us)."""
    res, offset = {}, None
    for line in out.splitlines():
        w = line.split()
        if "offset" in w:
            offset = float(w[w.index("offset") + 1])
        if w and w[0] in OPS and len(w) == 6:
            res[w[0]] = float(w[3])
    return res, offset


def run(plant):
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, trace_path = make(tmp, plant)
        p = subprocess.run([sys.executable, SCRIPT, csv_path, trace_path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"dram_timeline.py failed: {p.stderr}")
        return phases(p.stdout) + (p.stdout,)


def main():
    bw, offset, out = run(False)
    fails = []
    if offset is None or abs(offset * 1000 - LEAD_NS) > IV_NS:
        fails.append(f"offset {offset} us, want {LEAD_NS / 1000} +- 1.5")
    if not 1.2 <= bw.get("down", 0) <= 1.8:
        fails.append(f"down phase {bw.get('down')} TB/s, want ~1.5")
    for n in ["qkv", "attn", "o_proj"]:
        if bw.get(n, 1) > 0.3:
            fails.append(f"{n} phase {bw.get(n)} TB/s, want ~0")
    bw2, _, _ = run(True)   # planted: the loud phase is gate_up now
    if not (bw2.get("gate_up", 0) > 1.2 and bw2.get("down", 1) < 0.3):
        fails.append(f"planted run not seen: {bw2}")
    if fails:
        print(out)
        sys.exit("FAIL: " + "; ".join(fails))
    print(f"ok: offset {offset} us, phases {bw}; planted {bw2}")


if __name__ == "__main__":
    main()
