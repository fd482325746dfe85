#!/usr/bin/env python3
"""bandwidth.py - the GPU's memory bandwidth as measured in this run.

Batch-1 decode reads every weight once per token, so its floor is
bytes per step / read bandwidth.  This script measures that read bandwidth
the way a decode kernel sees it: a read-only reduction over buffers much
larger than the L2 cache (50 MB on an H100), rotating over several buffers so
no repetition finds its data in L2.  Several readers are timed and the
fastest one is reported as read_bytes_per_s (the stricter floor; "reader"
names it):

  triton  a small Triton kernel: each program sums BLOCK x ITERS bf16 in fp32,
          one store; several shapes (TRITON_SHAPES), the fastest reported
  torch   torch.sum(x, dtype=torch.float32)

  ldg, bulk  bench/read_probe.cu, built with nvcc when there is one: loads of
          16 bytes, 8 in flight per thread (as loom's linear tiles read), and
          bulk copies (TMA, sm_90) into a shared-memory ring (as loom stages),
          one buffer a launch (bulk) and every buffer in one launch (bulk_all:
          the launch's ramp and tail a smaller part, as in loom's long run)

Until session 14 the Triton reader alone (one shape, 128 KB a program) set
the floor, while loom's lm_head, by its trace, streamed at 3.03-3.09 TB/s
on H100s where that reader read 2.85-2.96 (an upper bound: the lm_head's
wall time leaves out the rows it staged before its run). On one H100 the
readers then read (TB/s): Triton 2.36-2.98 by shape, torch.sum 2.89, ldg
2.45, bulk 2.99 (docs/perf-notes.md v23). In session 16 loom itself, every
wait dropped (wrong results, a timing experiment), streamed 8B's weights at
3.10 TB/s by wall time, above every reader; bulk_all read 3.14-3.17 (v25).
Each reader's sum must be exact, or its number is not used.

It also times a device-to-device copy (dst.copy_(src)), counted as bytes read
plus bytes written.  Each number is the median over --reps repetitions.
Before any timing, --warmup-s seconds of reads bring the GPU out of its idle
clocks: without them the first reader, timed right after an idle GPU, read
2.78 TB/s on an H100 that streams 2.93 (and the floor came out low).

  python3 bench/bandwidth.py --gib 4 --json     # JSON on the last stdout line
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def log(msg):
    print(f"bandwidth: {msg}", file=sys.stderr, flush=True)


def time_ms(fn, bufs, reps):
    """Median ms of fn(buf), cycling over bufs, CUDA events, after a warm-up."""
    for b in bufs:
        fn(b)
    torch.cuda.synchronize()
    ms = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for r in range(reps):
        b = bufs[r % len(bufs)]
        start.record()
        fn(b)
        end.record()
        end.synchronize()
        ms.append(start.elapsed_time(end))
    return statistics.median(ms)


try:
    import triton
    import triton.language as tl
except Exception as _e:          # noqa: BLE001
    triton, TRITON_ERROR = None, str(_e)

if triton is not None:
    @triton.jit
    def read_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):
        """Program pid sums elements [pid * BLOCK * ITERS, +BLOCK * ITERS) in fp32."""
        pid = tl.program_id(0)
        base = pid.to(tl.int64) * (BLOCK * ITERS)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(ITERS):
            offs = base + i * BLOCK + tl.arange(0, BLOCK)
            acc += tl.load(x_ptr + offs, mask=offs < n, other=0.0).to(tl.float32)
        tl.store(out_ptr + pid, tl.sum(acc, axis=0))


# (BLOCK, ITERS, num_warps): elements a load round, rounds a program, warps.
TRITON_SHAPES = [(4096, 16, 8), (8192, 8, 8), (8192, 16, 16), (16384, 4, 16), (2048, 32, 4)]


def triton_read(x, out=None, BLOCK=4096, ITERS=16, WARPS=8):
    """Partial sums of x, one per program (a read of every byte of x)."""
    n = x.numel()
    nprog = triton.cdiv(n, BLOCK * ITERS)
    if out is None or out.numel() < nprog:
        out = torch.empty(nprog, dtype=torch.float32, device=x.device)
    read_kernel[(nprog,)](x, out, n, BLOCK=BLOCK, ITERS=ITERS, num_warps=WARPS)
    return out


def cuda_probe(gib, buffers, reps):
    """read_probe.cu's readers ({"ldg": B/s, "bulk": B/s, ...}), or {"error": why}."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        return {"error": "no nvcc"}
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "read_probe.cu")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "read_probe")
        b = subprocess.run([nvcc, "-O2", "-arch=native", src, "-o", exe],
                           capture_output=True, text=True)
        if b.returncode != 0:
            return {"error": "nvcc: " + (b.stderr.strip().splitlines() or ["failed"])[-1]}
        r = subprocess.run([exe, str(gib), str(buffers), str(reps)], capture_output=True,
                           text=True, timeout=300)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"read_probe exit {r.returncode}: {r.stdout.strip()[-200:]}"}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gib", type=float, default=4.0, help="total bytes of the read buffers")
    p.add_argument("--buffers", type=int, default=4, help="buffers rotated over")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup-s", type=float, default=2.0,
                   help="seconds of reads before any timing (clocks up from idle)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bandwidth: no CUDA device")

    n = int(a.gib * 2**30 / 2 / a.buffers) // 65536 * 65536    # bf16 elements per buffer
    # Random contents: nothing a memory system could compress.
    bufs = [torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
            for _ in range(a.buffers)]
    nbytes = 2 * n
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 0)
    log(f"{torch.cuda.get_device_name()}: {a.buffers} buffers of {nbytes / 2**20:.0f} MiB "
        f"(L2 {l2 / 2**20:.0f} MiB), {a.reps} reps")
    res = {"device": torch.cuda.get_device_name(), "buffer_bytes": nbytes,
           "buffers": a.buffers, "reps": a.reps, "l2_bytes": l2,
           "n_sms": props.multi_processor_count, "torch": torch.__version__}

    # Clocks up: reads until --warmup-s has passed.
    t0, k = time.monotonic(), 0
    while time.monotonic() - t0 < a.warmup_s:
        torch.sum(bufs[k % len(bufs)], dtype=torch.float32)
        k += 1
        if k % len(bufs) == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    res["warmup_s"] = a.warmup_s

    # torch.sum, fp32 accumulation
    ms = time_ms(lambda x: torch.sum(x, dtype=torch.float32), bufs, a.reps)
    res["torch_sum_bytes_per_s"] = nbytes / (ms * 1e-3)
    log(f"torch.sum read: {res['torch_sum_bytes_per_s'] / 1e12:.3f} TB/s")

    # Triton reader; its sum of ones must be exact, or its number is not used.
    if triton is None:
        log(f"no triton ({TRITON_ERROR}): torch.sum only")
        res["triton_error"] = TRITON_ERROR
    else:
        ones = torch.ones(1 << 26, dtype=torch.bfloat16, device="cuda")
        shapes = {}
        for blk, iters, warps in TRITON_SHAPES:
            key = f"{blk}x{iters}/{warps}w"
            try:
                total = triton_read(ones, BLOCK=blk, ITERS=iters, WARPS=warps).sum().item()
                if total != ones.numel():
                    raise RuntimeError(f"sum of {ones.numel()} ones read as {total}")
                out = triton_read(bufs[0], BLOCK=blk, ITERS=iters, WARPS=warps)
                ms = time_ms(lambda x: triton_read(x, out, blk, iters, warps), bufs, a.reps)
                shapes[key] = nbytes / (ms * 1e-3)
                log(f"triton read {key}: {shapes[key] / 1e12:.3f} TB/s")
            except Exception as e:    # noqa: BLE001
                log(f"triton reader {key} failed: {e}")
                res.setdefault("triton_errors", {})[key] = str(e)
        del ones
        res["triton_shapes_bytes_per_s"] = shapes
        if shapes:
            best = max(shapes, key=shapes.get)
            res["triton_read_bytes_per_s"] = shapes[best]
            res["triton_best_shape"] = best
        else:
            res["triton_error"] = "every reader shape failed"
    # read_probe.cu: loom's ways of reading (its own buffers of hashed words).
    probe = cuda_probe(a.gib, a.buffers, a.reps)
    res["cuda_probe"] = probe
    for k in ("ldg", "bulk", "bulk_all"):
        if k in probe:
            log(f"cuda {k} read: {probe[k] / 1e12:.3f} TB/s")
    for k, v in probe.items():
        if k.endswith("error"):
            log(f"cuda probe {k}: {v}")
    readers = {"torch_sum": res["torch_sum_bytes_per_s"]}
    if "triton_read_bytes_per_s" in res:
        readers["triton"] = res["triton_read_bytes_per_s"]
    readers.update({f"cuda_{k}": probe[k] for k in ("ldg", "bulk", "bulk_all") if k in probe})
    res["reader"] = max(readers, key=readers.get)
    res["read_bytes_per_s"] = readers[res["reader"]]

    # Device-to-device copy, bytes read + written; pairs (src, dst) rotate.
    half = len(bufs) // 2
    if half >= 1:
        pairs = [(bufs[i], bufs[i + half]) for i in range(half)]
        ms = time_ms(lambda sd: sd[1].copy_(sd[0]), pairs, a.reps)
        res["copy_bytes_per_s"] = 2 * nbytes / (ms * 1e-3)
        log(f"copy (read + write): {res['copy_bytes_per_s'] / 1e12:.3f} TB/s")

    log(f"read bandwidth used for the floor: {res['read_bytes_per_s'] / 1e12:.3f} TB/s "
        f"({res['reader']})")
    if a.json:
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
