#!/usr/bin/env python3
"""run_bench.py - loom vs its PyTorch peer vs the bandwidth floor, in one run.

The one script to run on the GPU machine:

  python3 bench/run_bench.py --loom ./build/loom --out-dir "$OUT" \\
      --sizes qwen3-0.6b,qwen3-1.7b,qwen3-8b --context 64,4096

Steps, each a subprocess with a timeout, all inside one time budget:
  1. nvidia-smi: device name and driver
  2. bench/bandwidth.py: read bandwidth of this GPU, now
  3. for every (context, size): `loom bench --preset SIZE --prompt-len P --new N --json`
  4. for every (context, size): bench/peer.py, same size, P and N
loom goes first for every row so its numbers are in even if the peers (long
torch.compile max-autotune compiles) run out of time.  A failed or skipped
measurement is recorded with its error and the run goes on.  After every
measurement the results are rewritten:
  OUT_DIR/<YYYY-MM-DD>-<device-slug>-<commit>.json   everything, with commands
  OUT_DIR/latest.md                                 the table
  OUT_DIR/bench.log                                 every subprocess's output
and the table is printed last.

Context: a context C <= 512 is the prompt length (64: the design brief's
setting, 64-token prompt + 256 new tokens).  A longer C is the length reached
at the end of generation: prompt C - new, so generation attends over
C - new .. C positions (the peer pre-fills that cache with random values).

Floor: (weight bytes + KV bytes at the mean attended length) / read bandwidth,
weight bytes from loom's bytes_per_step (the peer's count where loom has none).
"""
import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# name: (layers, kv_heads, head_dim), as in peer.py's PRESETS (KV bytes per position).
KV_SHAPE = {
    "qwen3-0.6b": (28, 8, 128),
    "qwen3-1.7b": (28, 8, 128),
    "qwen3-8b": (36, 8, 128),
}
LONG_CONTEXT = 512

T0 = time.monotonic()


def log(msg, logf=None):
    line = f"[{time.monotonic() - T0:6.1f}s] {msg}"
    print(line, file=sys.stderr, flush=True)
    if logf:
        logf.write(line + "\n")
        logf.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loom", default=str(ROOT / "build" / "loom"), help="loom binary")
    p.add_argument("--sizes", default="qwen3-0.6b,qwen3-1.7b,qwen3-8b")
    p.add_argument("--context", default="64", help="comma-separated, e.g. 64,4096")
    p.add_argument("--new", type=int, default=256, help="generated tokens timed")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    p.add_argument("--out-dir", default=str(BENCH / "results"))
    p.add_argument("--cache-dir", default="/tmp/loom-bench-inductor",
                   help="TORCHINDUCTOR_CACHE_DIR for the peer (kept out of OUT_DIR: "
                        "thousands of files)")
    p.add_argument("--commit", default=None, help="commit id (default: $LOOM_COMMIT or git)")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--skip-loom", action="store_true")
    p.add_argument("--peer-mode", default="max-autotune-no-cudagraphs")
    p.add_argument("--budget-s", type=float, default=540,
                   help="wall-clock budget of the whole run; later steps are skipped")
    p.add_argument("--timeout-loom", type=float, default=180)
    p.add_argument("--timeout-peer", type=float, default=360)
    p.add_argument("--timeout-bandwidth", type=float, default=120)
    return p.parse_args()


# ------------------------------------------------------------ subprocesses

def run_cmd(cmd, timeout, logf, tag):
    """Run cmd, echo its output live (prefixed by tag) and into logf, kill its
    process group at the timeout.  Returns (rc, stdout lines, error or None)."""
    log(f"{tag}: $ {' '.join(cmd)}  (timeout {timeout:.0f} s)", logf)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=env, cwd=ROOT,
                                process_group=0)   # its own group, same session
    except OSError as e:
        log(f"{tag}: cannot start: {e}", logf)
        return None, [], f"cannot start: {e}"
    out, errs, lock = [], [], threading.Lock()

    def pump(stream, keep):
        for line in stream:
            line = line.rstrip("\n")
            with lock:
                (out if keep else errs).append(line)
                logf.write(f"{tag}{'' if keep else ' (stderr)'}: {line}\n")
                logf.flush()
                short = line if len(line) <= 240 else line[:240] + " ..."
                print(f"  {tag}: {short}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
    for t in threads:
        t.start()
    err = None
    try:
        rc = proc.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)     # the group we started, by its id
        rc = proc.wait()
        err = f"timed out after {timeout:.0f} s"
    for t in threads:
        t.join(timeout=5)
    if err is None and rc != 0:
        tail = [line.strip() for line in errs + out if line.strip()][-2:]
        err = f"exit status {rc}" + (f": {' | '.join(tail)}" if tail else "")
    log(f"{tag}: {'ok' if err is None else err}", logf)
    return rc, out, err


def last_json(lines):
    """The JSON object on the last non-empty stdout line, or None."""
    for line in reversed(lines):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None
    return None


def measure(cmd, timeout, logf, tag, commands):
    """Run one measurement: returns its JSON dict, or {"error": ...}."""
    commands.append(" ".join(cmd))
    t = time.monotonic()
    rc, out, err = run_cmd(cmd, timeout, logf, tag)
    res = last_json(out) if err is None else None
    if err is None and res is None:
        err = "no JSON object on the last stdout line"
    if res is None:
        res = {"error": err}
    res["wall_s"] = round(time.monotonic() - t, 2)
    return res


# ------------------------------------------------------------ device, results

def device_info(logf):
    q = "name,driver_version,memory.total,clocks.max.sm,clocks.max.mem"
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        first = r.stdout.strip().splitlines()[0]
        f = [x.strip() for x in first.split(",")]
        info = dict(zip(["name", "driver", "memory", "max_sm_clock", "max_mem_clock"], f))
    except (OSError, IndexError, subprocess.SubprocessError) as e:
        info = {"name": "unknown-gpu", "error": f"nvidia-smi: {e}"}
    log(f"device: {info}", logf)
    return info


def git_commit(arg):
    if arg:
        return arg
    if os.environ.get("LOOM_COMMIT"):
        return os.environ["LOOM_COMMIT"]
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def slug(name):
    s = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")
    return s or "unknown-gpu"


def prompt_len(ctx, new):
    return ctx if ctx <= LONG_CONTEXT else ctx - new


def compute(row, bw):
    """Floor and ratios of one row, from what has been measured so far."""
    loom, peer = row.get("loom", {}), row.get("peer", {})
    wb = loom.get("bytes_per_step") or peer.get("weight_bytes")
    L, kv, hd = KV_SHAPE.get(row["model"], (0, 0, 0))
    kv_bytes = 2 * L * kv * hd * 2 * (row["prompt_len"] + (row["new"] + 1) / 2)
    row["kv_bytes_per_step"] = int(kv_bytes)
    lm, pm = loom.get("ms_per_token"), peer.get("ms_per_token")
    if wb and bw:
        row["weight_bytes"] = int(wb)
        row["floor_ms"] = (wb + kv_bytes) / bw * 1e3
        row["floor_weights_ms"] = wb / bw * 1e3
        if lm:
            row["loom_x_floor"] = lm / row["floor_ms"]
        if pm:
            row["peer_x_floor"] = pm / row["floor_ms"]
    if lm and pm:
        row["loom_speedup"] = pm / lm


def fmt(x, spec=".3f", none="-"):
    return none if x is None else format(x, spec)


def table(res):
    bw = res["bandwidth"]
    read = bw.get("read_bytes_per_s")
    lines = [
        f"# loom benchmark, {res['date']}, {res['device'].get('name')}, commit {res['commit']}",
        "",
        f"Batch 1, bf16, random weights, greedy; ms/token = median over {res['args']['reps']} "
        f"runs of {res['args']['new']} generated tokens. Read bandwidth measured in this run: "
        f"{fmt(read and read / 1e12)} TB/s ({bw.get('reader', 'fastest reader')}; copy "
        f"{fmt(bw.get('copy_bytes_per_s') and bw['copy_bytes_per_s'] / 1e12)} "
        f"TB/s read+write). Floor = (weight + KV bytes) / read bandwidth. Peer: PyTorch "
        f"{res.get('torch') or '?'}, torch.compile({res['args']['peer_mode']}) + one CUDA graph "
        f"per step (bench/peer.py).",
        "",
        "| model | ctx | loom ms/tok | peer ms/tok | floor ms | loom/floor | peer/floor | loom speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = [f"- bandwidth: {bw['error']}: no floor"] if bw.get("error") else []
    for r in res["rows"]:
        lm, pm = r.get("loom", {}), r.get("peer", {})
        lines.append(
            f"| {r['model']} | {r['context']} | {fmt(lm.get('ms_per_token'))} | "
            f"{fmt(pm.get('ms_per_token'))} | {fmt(r.get('floor_ms'))} | "
            f"{fmt(r.get('loom_x_floor'), '.2f')} | {fmt(r.get('peer_x_floor'), '.2f')} | "
            f"{fmt(r.get('loom_speedup'), '.2f')} |")
        for who, m in (("loom", lm), ("peer", pm)):
            if m.get("error"):
                notes.append(f"- {r['model']} ctx {r['context']}: {who}: {m['error']}")
        if lm.get("backend") not in (None, "cuda"):
            notes.append(f"- {r['model']} ctx {r['context']}: loom ran on its "
                         f"'{lm['backend']}' backend, not the GPU")
    if notes:
        lines += ["", "Errors and notes:", ""] + notes
    return "\n".join(lines) + "\n"


def save(res, out_dir, name):
    """Rewrite the JSON and markdown results (temporary file + rename)."""
    for fname, text in ((name, json.dumps(res, indent=1) + "\n"), ("latest.md", table(res))):
        tmp = out_dir / (fname + ".tmp")
        tmp.write_text(text)
        tmp.replace(out_dir / fname)


# ------------------------------------------------------------ main

def main():
    a = parse_args()
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    contexts = [int(c) for c in a.context.split(",") if c.strip()]
    for c in contexts:
        if c > LONG_CONTEXT and c <= a.new:
            sys.exit(f"run_bench: context {c} must exceed --new {a.new}")
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = T0 + a.budget_s
    logf = open(out_dir / "bench.log", "a")

    def left(limit):
        return min(limit, deadline - time.monotonic())

    dev = device_info(logf)
    now = datetime.datetime.now(datetime.timezone.utc)
    commit = git_commit(a.commit)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", commit)     # the device tool's file names
    name = f"{now:%Y-%m-%d}-{slug(dev.get('name', ''))}-{safe}.json"
    loom = os.path.abspath(a.loom)
    res = {"date": now.isoformat(timespec="seconds"), "device": dev, "commit": commit,
           "args": vars(a), "bandwidth": {}, "rows": [], "commands": [], "torch": None}
    for c in contexts:
        for s in sizes:
            res["rows"].append({"model": s, "context": c, "prompt_len": prompt_len(c, a.new),
                                "new": a.new})
    save(res, out_dir, name)

    py = sys.executable
    res["bandwidth"] = measure([py, str(BENCH / "bandwidth.py"), "--json"],
                               left(a.timeout_bandwidth), logf, "bandwidth", res["commands"])
    res["torch"] = res["bandwidth"].get("torch")
    bw = res["bandwidth"].get("read_bytes_per_s")
    save(res, out_dir, name)

    phases = []
    if not a.skip_loom:
        phases.append(("loom", a.timeout_loom, lambda r: [
            loom, "bench", "--preset", r["model"], "--prompt-len", str(r["prompt_len"]),
            "--new", str(r["new"]), "--repeat", str(a.reps), "--json"]))
    if not a.skip_peer:
        phases.append(("peer", a.timeout_peer, lambda r: [
            py, str(BENCH / "peer.py"), "--preset", r["model"], "--prompt-len",
            str(r["prompt_len"]), "--new", str(r["new"]), "--reps", str(a.reps),
            "--mode", a.peer_mode, "--cache-dir", a.cache_dir, "--json"]))
    for who, limit, make in phases:
        for r in res["rows"]:
            tag = f"{who} {r['model']} ctx {r['context']}"
            if deadline - time.monotonic() < 15:
                r[who] = {"error": f"skipped: the {a.budget_s:.0f} s budget is spent"}
                log(f"{tag}: {r[who]['error']}", logf)
            else:
                r[who] = measure(make(r), left(limit), logf, tag, res["commands"])
            compute(r, bw)
            save(res, out_dir, name)

    res["wall_s"] = round(time.monotonic() - T0, 1)
    save(res, out_dir, name)
    logf.close()
    print(f"\nresults: {out_dir / name}, {out_dir / 'latest.md'}\n", flush=True)
    print(table(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
