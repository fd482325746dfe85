#!/usr/bin/env python3
"""plot.py - bar chart of one run_bench.py result: loom, peer and floor ms/token.

  python3 bench/plot.py bench/results/2026-11-21-h100-80gb-hbm3-abc1234.json [-o out.png]
"""
import argparse
import json
import sys
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("result", help="a JSON file written by run_bench.py")
    p.add_argument("-o", "--out", default=None, help="PNG (default: next to the JSON)")
    a = p.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(Path(a.result).read_text())
    rows = res["rows"]
    labels = [f"{r['model']}\nctx {r['context']}" for r in rows]
    series = [("loom", [r.get("loom", {}).get("ms_per_token") for r in rows]),
              ("PyTorch peer", [r.get("peer", {}).get("ms_per_token") for r in rows]),
              ("floor", [r.get("floor_ms") for r in rows])]
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(rows)), 4))
    for i, (name, vals) in enumerate(series):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        bars = ax.bar(xs, [v or 0 for v in vals], width, label=name)
        for b, v in zip(bars, vals):
            ax.annotate("n/a" if v is None else f"{v:.2f}", (b.get_x() + b.get_width() / 2,
                        b.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("ms / token (batch 1, lower is better)")
    ax.set_title(f"{res['device'].get('name', '?')}, {res['date'][:10]}, commit {res['commit']}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(a.out) if a.out else Path(a.result).with_suffix(".png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
