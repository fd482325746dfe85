#!/usr/bin/env python3
"""HBM read bandwidth across a decoder layer, from ncu's PM sampling and a loom trace.

    scripts/dram_timeline.py RUN.csv RUN.trace [--png OUT.png] [--title TEXT]

RUN.csv: the DRAM read throughput that Nsight Compute sampled every
~1.5 us during the megakernel (PM sampling), and RUN.trace the loom trace
of the same run (`scripts/dram-timeline.sh` records both on the GPU).

The two clocks are not the same, so the samples are placed on the trace's
clock by the lm_head: a ~100 us phase every step that only streams. The
offset is the one that puts the highest mean throughput inside the traced
steps' lm_head windows (samples weighted by their overlap). The lm_head
also sets the scale: its bytes over its wall time (both from the trace) is
what the samples inside it read, so the percentages become TB/s without
trusting a peak. (Its first rows are staged before its tiles' run begins,
so that rate may read up to the staged share high, ~4%; the percentages of
it and the idle times do not depend on the scale.)

Every traced layer's samples are then folded onto one time axis: time from
the previous layer's last down tile end (the first layer: embed's). Printed:
the op phases (each op's mean last end, as scripts/trace_phases.py), the
mean TB/s in each, and the "idle HBM" of each phase - its time less the time
its bandwidth would take at the lm_head's rate, summed over the layer. That
is the time a layer would save if HBM streamed through it as it does
through the lm_head. --png draws the folded profile with the phases.

Only the standard library, and matplotlib for --png.
"""
import argparse
import csv
import os
import re
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trace_phases import load as load_trace   # noqa: E402  (the trace and its tasks by op)

METRIC = "dramc__read_throughput.avg.pct_of_peak_sustained_elapsed"
ORDER = ["qkv", "attn", "o_proj", "gate_up", "down"]
BIN_US = 0.5


def load_samples(path):
    """(samples, interval ns) from ncu's raw CSV page (--print-metric-instances values)."""
    csv.field_size_limit(1 << 30)   # one cell holds every sample
    rows = list(csv.reader(open(path, newline="")))
    head = next((i for i, r in enumerate(rows) if any(METRIC in c for c in r)), None)
    if head is None:
        sys.exit(f"{path}: no column with {METRIC} (ncu --metrics pmsampling:{METRIC})")
    h = rows[head]
    data = next((r for r in rows[head + 1:] if len(r) == len(h) and r[0].strip('"').isdigit()),
                None)
    if data is None:
        sys.exit(f"{path}: no data row")
    cell = data[next(i for i, c in enumerate(h) if METRIC in c)]
    m = re.search(r"\((.*)\)", cell)
    if not m:
        sys.exit(f"{path}: the throughput is not a list of samples (PM sampling off?)")
    vals = [float(x.replace(",", "") or 0) for x in m.group(1).split(";")]
    iv = next((data[i] for i, c in enumerate(h) if c == "profiler__pmsampler_interval_time"), "")
    try:
        interval = float(iv.split()[0].replace(",", "")) * 1000.0
    except (ValueError, IndexError):
        sys.exit(f"{path}: no profiler__pmsampler_interval_time (export it with the metric)")
    return vals, interval


def align(pct, iv, windows):
    """The offset (ns, trace -> sample clock) with the highest mean inside the windows,
    each sample weighted by how much of it a window covers (one best offset, not a
    plateau a sample wide)."""
    span = len(pct) * iv
    if span <= windows[-1][1]:
        sys.exit(f"the samples cover {span / 1e3:.0f} us, less than the trace's "
                 f"{windows[-1][1] / 1e3:.0f} (not the same run?)")

    def score(tau):
        s = n = 0.0
        for a, b in windows:
            a, b = a + tau, b + tau
            for i in range(max(int(a // iv), 0), min(int(b // iv) + 1, len(pct))):
                w = min(b, (i + 1) * iv) - max(a, i * iv)
                if w > 0:
                    s += w * pct[i]
                    n += w
        return s / n if n else 0.0

    coarse = max(range(0, int(span - windows[-1][1]), 1000), key=score)
    return max(range(max(coarse - 1000, 0), coarse + 1000, 50), key=score)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("trace")
    ap.add_argument("--png")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    pct, iv = load_samples(a.csv)
    d, by_op = load_trace(a.trace)
    ops = d["ops"]
    lm = [o for o, op in enumerate(ops) if op["name"] == "lm_head"]
    emb = [o for o, op in enumerate(ops) if op["kind"] == "embed"]
    if not lm or not emb:
        sys.exit(f"{a.trace}: no lm_head or embed op")
    lm, emb = lm[0], emb[0]
    lm_bytes = sum(d["tasks"][i]["bytes"] for i in by_op[lm])
    windows = [(min(st[4 * i + 1] for i in by_op[lm]), max(st[4 * i + 2] for i in by_op[lm]))
               for st in d["t"]]
    tau = align(pct, iv, windows)
    inside = [pct[i] for a, b in windows
              for i in range(int((a + tau) / iv) + 1, min(int((b + tau) / iv), len(pct)))]
    lm_rate = sum(lm_bytes / (b - a) for a, b in windows) / len(windows) * 1e9   # B/s
    scale = lm_rate / (sum(inside) / len(inside))   # B/s per sampled unit
    layer = defaultdict(dict)
    for o, op in enumerate(ops):
        if op.get("layer", -1) >= 0:
            layer[op["layer"]][op["name"]] = o
    layers = sorted(layer)
    if not layers or any(n not in layer[L] for L in layers for n in ORDER):
        sys.exit(f"{a.trace}: layers without the ops {ORDER}")
    bins, ends = defaultdict(list), defaultdict(list)
    for st in d["t"]:
        last = {o: max(st[4 * i + 2] for i in ids) for o, ids in by_op.items()}
        for L in layers:
            base = last[layer[L - 1]["down"]] if L - 1 in layer else last[emb]
            for n in ORDER:
                ends[n].append((last[layer[L][n]] - base) / 1e3)
            lo, hi = base + tau - 5000, base + tau + 1.3 * (last[layer[L]["down"]] - base)
            for i in range(max(int(lo / iv), 0), min(int(hi / iv) + 1, len(pct))):
                t_us = ((i + 0.5) * iv - tau - base) / 1e3
                bins[round(t_us / BIN_US)].append(pct[i] * scale)
    prof = sorted((k * BIN_US, sum(v) / len(v)) for k, v in bins.items())
    mean_end = {n: sum(v) / len(v) for n, v in ends.items()}
    period = mean_end["down"]

    def mean_bw(t0, t1):
        v = [b for t, b in prof if t0 <= t < t1]
        return sum(v) / len(v) if v else 0.0

    print(f"{a.trace}: {len(d['t'])} traced steps x {len(layers)} layers; samples every "
          f"{iv / 1e3:.2f} us, offset {tau / 1e3:.1f} us (lm_head inside its windows: "
          f"{lm_rate / 1e12:.3f} TB/s, the scale)")
    print(f"layer: {period:.2f} us, mean {mean_bw(0, period) / 1e12:.3f} TB/s "
          f"({100 * mean_bw(0, period) / lm_rate:.0f}% of the lm_head's rate)")
    print(f"{'phase':10s} {'from us':>8s} {'to us':>7s} {'TB/s':>6s} {'% lm':>5s} "
          f"{'idle HBM us':>12s}")
    t0, idle = 0.0, 0.0
    for n in ORDER:
        t1 = mean_end[n]
        bw = mean_bw(t0, t1)
        gap = (t1 - t0) * (1 - bw / lm_rate)
        idle += gap
        print(f"{n:10s} {t0:8.2f} {t1:7.2f} {bw / 1e12:6.3f} {100 * bw / lm_rate:5.0f} {gap:12.2f}")
        t0 = t1
    print(f"{'layer':10s} {0:8.2f} {period:7.2f} {mean_bw(0, period) / 1e12:6.3f} "
          f"{100 * mean_bw(0, period) / lm_rate:5.0f} {idle:12.2f}")
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(10, 3.6))
        xs = [t for t, _ in prof if -2 <= t <= period + 2]
        ys = [b / 1e12 for t, b in prof if -2 <= t <= period + 2]
        ax.step(xs, ys, where="mid", color="tab:blue", label="HBM read (PM sampling, folded)")
        ax.axhline(lm_rate / 1e12, color="tab:gray", ls="--", lw=1,
                   label=f"lm_head's rate, {lm_rate / 1e12:.2f} TB/s")
        t0 = 0.0
        colors = ["#e8f0fe", "#fde8e8", "#e8fde9", "#fff4e0", "#f1e8fd"]
        for n, c in zip(ORDER, colors):
            ax.axvspan(t0, mean_end[n], color=c, zorder=0)
            ax.text((t0 + mean_end[n]) / 2, 0.05, f"{n}\n{mean_bw(t0, mean_end[n]) / 1e12:.2f}",
                    ha="center", va="bottom", fontsize=8)
            t0 = mean_end[n]
        ax.set_xlim(-2, period + 2)
        ax.set_ylim(0, max(ys + [lm_rate / 1e12]) * 1.1)
        ax.set_xlabel("us after the previous layer's last down tile ended")
        ax.set_ylabel("TB/s")
        ax.set_title(a.title or f"HBM read across a layer ({len(layers)} layers x "
                     f"{len(d['t'])} steps folded); phases end at each op's last tile")
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
