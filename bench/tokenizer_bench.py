#!/usr/bin/env python3
"""Encode throughput of loom's C tokenizer next to Hugging Face `tokenizers`,
on one CPU core, same text, same tokenizer.json; the ids must be identical.

usage: bench/tokenizer_bench.py [--lib build/libloom.so] [--tokenizer DIR]
                                [--mb 4] [--repeat 5] [--out bench/results/X.json]

Default tokenizer: the real Qwen3 tokenizer.json committed under
tests/tokenizer/qwen3 (unpacked to a temporary directory). Default text:
tests/tokenizer/corpus.txt (many scripts, emoji, code) and lines from the
test generator, repeated to --mb megabytes. Both sides encode
  1. the whole text in one call, and
  2. line by line (Python loop over lines for both; ctypes calls for loom),
best of --repeat, pinned to one core with RAYON_NUM_THREADS=1.
Writes a JSON with the numbers and the machine, prints a table.
"""
import argparse
import ctypes
import glob
import gzip
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "tokenizer"))


def find_lib():
    for pat in ("build/libloom.so", "build-*/libloom.so"):
        hits = sorted(glob.glob(os.path.join(ROOT, pat)))
        if hits:
            return hits[0]
    sys.exit("tokenizer_bench: no libloom.so found; build first or pass --lib")


class Loom:
    def __init__(self, lib, model_dir):
        self.lib = ctypes.CDLL(lib)
        self.libc = ctypes.CDLL(None)
        L = self.lib
        L.loom_tokenizer_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        L.loom_tokenizer_encode.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool,
            ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)), ctypes.POINTER(ctypes.c_int32)]
        L.loom_last_error.restype = ctypes.c_char_p
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.tok = ctypes.c_void_p()
        t0 = time.perf_counter()
        if L.loom_tokenizer_load(model_dir.encode(), ctypes.byref(self.tok)) != 0:
            sys.exit("loom_tokenizer_load: " + L.loom_last_error().decode())
        self.load_s = time.perf_counter() - t0

    def encode(self, b, want_ids=True):
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_int32()
        if self.lib.loom_tokenizer_encode(self.tok, b, len(b), False, ctypes.byref(ids),
                                          ctypes.byref(n)) != 0:
            raise RuntimeError(self.lib.loom_last_error().decode())
        out = ids[:n.value] if want_ids else n.value
        self.libc.free(ids)
        return out


def make_text(mb):
    import gen_fixtures as g
    r = random.Random(42)
    base = "".join(g.corpus_lines())
    lines = []
    size = 0
    while size < mb * 1e6:
        chunk = base if r.random() < 0.5 else "".join(g.rand_line(r) + "\n" for _ in range(50))
        lines.append(chunk)
        size += len(chunk.encode())
    return "".join(lines)


def best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib")
    ap.add_argument("--tokenizer")
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import tokenizers
    from tokenizers import Tokenizer

    tmp = None
    model_dir = a.tokenizer
    if not model_dir:
        tmp = tempfile.mkdtemp()
        src = os.path.join(ROOT, "tests", "tokenizer", "qwen3")
        with gzip.open(os.path.join(src, "tokenizer.json.gz"), "rb") as f, \
                open(os.path.join(tmp, "tokenizer.json"), "wb") as g:
            g.write(f.read())
        shutil.copy(os.path.join(src, "tokenizer_config.json"), tmp)
        model_dir = tmp
    lib = a.lib or find_lib()
    loom = Loom(lib, model_dir)
    t0 = time.perf_counter()
    hf = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    hf_load = time.perf_counter() - t0

    text = make_text(a.mb)
    data = text.encode()
    lines = [l.encode() for l in text.splitlines(keepends=True)]
    slines = text.splitlines(keepends=True)

    ids_hf = hf.encode(text, add_special_tokens=False).ids
    ids_loom = loom.encode(data)
    same = ids_hf == ids_loom
    if not same:
        print("WARNING: ids differ between loom and tokenizers", file=sys.stderr)

    res = {"whole": {}, "lines": {}}
    res["whole"]["tokenizers"] = best(lambda: hf.encode(text, add_special_tokens=False),
                                      a.repeat)
    res["whole"]["loom"] = best(lambda: loom.encode(data, False), a.repeat)
    res["lines"]["tokenizers"] = best(
        lambda: [hf.encode(l, add_special_tokens=False) for l in slines], a.repeat)
    res["lines"]["loom"] = best(lambda: [loom.encode(l, False) for l in lines], a.repeat)

    report = {
        "what": "tokenizer encode throughput, one CPU core",
        "device": "CPU: " + (platform.processor() or platform.machine()),
        "cpu_model": cpu_model(),
        "tokenizer": os.path.basename(a.tokenizer) if a.tokenizer else "Qwen3 tokenizer.json",
        "tokenizers_version": tokenizers.__version__,
        "text_bytes": len(data), "text_lines": len(lines), "tokens": len(ids_hf),
        "ids_identical": same,
        "load_s": {"loom": loom.load_s, "tokenizers": hf_load},
        "results": {
            mode: {impl: {"seconds": s, "MB_per_s": len(data) / s / 1e6,
                          "Mtokens_per_s": len(ids_hf) / s / 1e6}
                   for impl, s in d.items()}
            for mode, d in res.items()},
    }
    print("tokenizer encode, one core: %s, %.1f MB, %d lines, %d tokens, ids identical: %s"
          % (report["tokenizer"], len(data) / 1e6, len(lines), len(ids_hf), same))
    print("%-8s %-12s %10s %10s %12s" % ("mode", "impl", "seconds", "MB/s", "Mtok/s"))
    for mode, d in report["results"].items():
        for impl, r in d.items():
            print("%-8s %-12s %10.3f %10.2f %12.3f" % (mode, impl, r["seconds"], r["MB_per_s"],
                                                      r["Mtokens_per_s"]))
    print("load: loom %.3f s, tokenizers %.3f s" % (loom.load_s, hf_load))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)
        print("wrote", a.out)
    if tmp:
        shutil.rmtree(tmp)
    return 0 if same else 1


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
