#!/usr/bin/env python3
"""scripts/sass_regions.py on two synthetic nvdisasm listings whose counts are known.

A: 3 instructions from linear.cuh line 10, 2 from attention.cuh line 5, 1
before any line information. B: the same, with linear.cuh line 10 grown
to 7 instructions and one more attention.cuh line (line 9, 1 instruction).
The per-file counts, their differences and the lines that moved must come
out as planted, in both the one-listing and the two-listing reports.
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "sass_regions.py")
INSN = "        /*{:04x}*/                   IMAD R1, R2, R3, R4 ;"


def listing(blocks):
    """blocks: [(file or None, line, n)] -> an nvdisasm-like listing."""
    rows, pc = ["\t.target\tsm_90a", ".text.loom_megakernel:"], 0
    for f, line, n in blocks:
        if f:
            rows.append(f'\t//## File "/tmp/loom/{f}", line {line}')
        for _ in range(n):
            rows.append(INSN.format(pc))
            pc += 16
    return "\n".join(rows) + "\n"


def run(*args):
    r = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: sass_regions.py {' '.join(args)}: {r.stderr}")
    return r.stdout


def main():
    a = listing([(None, 0, 1), ("linear.cuh", 10, 3), ("attention.cuh", 5, 2)])
    b = listing([(None, 0, 1), ("linear.cuh", 10, 7), ("attention.cuh", 5, 2),
                 ("attention.cuh", 9, 1)])
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = os.path.join(tmp, "a.sass"), os.path.join(tmp, "b.sass")
        for p, text in ((pa, a), (pb, b)):
            with open(p, "w") as f:
                f.write(text)
        one = run(pa).split("\n")
        two = run(pa, pb, "--lines", "3")
    want_one = {"linear.cuh": 3, "attention.cuh": 2, "?": 1, "all": 6}
    for row in one:
        parts = row.split()
        if parts and parts[0] in want_one and int(parts[1]) != want_one[parts[0]]:
            print(f"FAIL: one listing: {parts[0]} has {parts[1]}, want {want_one[parts[0]]}")
            fails += 1
    if sum(1 for r in one if r.split() and r.split()[0] in want_one) != len(want_one):
        print(f"FAIL: one listing: rows missing:\n{chr(10).join(one)}")
        fails += 1
    rows = [r.split() for r in two.split("\n")]
    for want in (["linear.cuh", "3", "7", "+4"], ["attention.cuh", "2", "3", "+1"],
                 ["?", "1", "1", "+0"], ["all", "6", "11", "+5"],
                 ["linear.cuh:10", "3", "->", "7", "(+4)"],
                 ["attention.cuh:9", "0", "->", "1", "(+1)"]):
        if want not in rows:
            print(f"FAIL: two listings: no row {want} in:\n{two}")
            fails += 1
    if "the 2 lines that moved most" not in two or "attention.cuh:5" in two:
        print(f"FAIL: two listings: lines that did not move are listed:\n{two}")
        fails += 1
    print("sass_regions: ok" if not fails else f"sass_regions: {fails} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
