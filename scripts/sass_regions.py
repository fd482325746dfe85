#!/usr/bin/env python3
"""Where a megakernel's machine code comes from, and what an edit moved.

    scripts/sass_regions.py A.cubin [B.cubin] [--lines N]

A.cubin: a kernel as `loom compile --emit-cubin FILE [--arch sm_90a]`
builds it (LOOM_CUDA_DEFINES honoured). Its SASS, with line information
(nvdisasm --print-line-info: $NVDISASM, else nvdisasm on the PATH, else the
one PyPI's nvidia-cuda-nvdisasm installs), is counted per source file of
the task library - the file each instruction's line belongs to, after
inlining - and per source line. With B, the two side by side and the N
lines (10) whose instruction counts moved most: the megakernel is one
function at its register cap, so an edit in one task can move code in all
of them (docs/perf-notes.md v24, 8), and a timing change then may be the
compiler's rather than the edit's mechanism.

Either argument may also be nvdisasm's text output (.sass). Only the
standard library.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

LINE = re.compile(r'//## File "([^"]+)", line (\d+)')
INSN = re.compile(r"/\*[0-9a-f]{4,}\*/")


def find_nvdisasm():
    """nvdisasm's path, or None."""
    env = os.environ.get("NVDISASM")
    if env:
        return env
    path = shutil.which("nvdisasm")
    if path:
        return path
    for base in sys.path:   # pip install nvidia-cuda-nvdisasm
        hits = glob.glob(os.path.join(base, "nvidia", "*", "bin", "nvdisasm"))
        if hits:
            return hits[0]
    return None


def listing(path):
    """nvdisasm's listing of a cubin with line information (or the text of a .sass file)."""
    with open(path, "rb") as f:
        elf = f.read(4) == b"\x7fELF"
    if not elf:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    tool = find_nvdisasm()
    if not tool:
        sys.exit("sass_regions: no nvdisasm (set NVDISASM, or pip install nvidia-cuda-nvdisasm)")
    r = subprocess.run([tool, "--print-line-info", "-c", path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sass_regions: nvdisasm failed on {path}: {r.stderr.strip()}")
    return r.stdout


def count(text):
    """(instructions per file, instructions per (file, line)); an instruction
    before any line information counts under '?'."""
    files, lines = Counter(), Counter()
    where = ("?", 0)
    for row in text.splitlines():
        m = LINE.search(row)
        if m:
            where = (os.path.basename(m.group(1)), int(m.group(2)))
        elif INSN.search(row):
            files[where[0]] += 1
            lines[where] += 1
    return files, lines


def report(a, b=None, top=10, out=sys.stdout):
    fa, la = a
    if b is None:
        total = sum(fa.values())
        print(f"{'file':<28} {'insns':>7} {'KB':>6} {'share':>6}", file=out)
        for f, n in fa.most_common():
            print(f"{f:<28} {n:7d} {n * 16 / 1024:6.1f} {100 * n / total:5.1f}%", file=out)
        print(f"{'all':<28} {total:7d} {total * 16 / 1024:6.1f}", file=out)
        return
    fb, lb = b
    print(f"{'file':<28} {'A insns':>8} {'B insns':>8} {'B - A':>7}", file=out)
    for f in sorted(set(fa) | set(fb), key=lambda f: -(fa[f] + fb[f])):
        print(f"{f:<28} {fa[f]:8d} {fb[f]:8d} {fb[f] - fa[f]:+7d}", file=out)
    print(f"{'all':<28} {sum(fa.values()):8d} {sum(fb.values()):8d} "
          f"{sum(fb.values()) - sum(fa.values()):+7d}", file=out)
    moved = sorted((k for k in set(la) | set(lb) if la[k] != lb[k]),
                   key=lambda k: (-abs(lb[k] - la[k]), k))[:top]
    print(f"\nthe {len(moved)} lines that moved most (instructions):", file=out)
    for k in moved:
        where = f"{k[0]}:{k[1]}"
        print(f"  {where:<26} {la[k]:5d} -> {lb[k]:5d} ({lb[k] - la[k]:+d})", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="a cubin (loom compile --emit-cubin) or nvdisasm's .sass text")
    ap.add_argument("b", nargs="?", help="another, to compare with the first")
    ap.add_argument("--lines", type=int, default=10, help="lines listed that moved most")
    args = ap.parse_args()
    a = count(listing(args.a))
    if not sum(a[0].values()):
        sys.exit(f"sass_regions: no instructions in {args.a}")
    report(a, count(listing(args.b)) if args.b else None, args.lines)


if __name__ == "__main__":
    main()
