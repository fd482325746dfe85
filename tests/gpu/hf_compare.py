#!/usr/bin/env python3
"""hf_compare.py - loom's logits against Hugging Face transformers, teacher-forced.

Runs on the GPU machine (torch + transformers 4.5x or 5.x, no internet). For
each model below it builds a random-weight checkpoint with transformers
(every linear weight, embedding and bias ~ N(0, 0.02), every norm weight
1 + N(0, 0.02) so the norms matter), saves it with save_pretrained in
float32 (safetensors), draws a random token sequence and runs HF on it in
one teacher-forced forward:

  float32   -> the reference logits [T, vocab] (TF32 off, eager attention)
  bfloat16  -> HF's own error: relative L2 per position against the reference

Then for every backend in --backends it runs

  LOOM --model DIR --tokens t1,t2,... --out FILE --backend B

(LOOM is --loom, default "./build/loom logits"), reads FILE as little-endian
float32 [T, vocab] and computes the same per-position relative L2 error.

A backend PASSes on a model when no value is NaN/inf, and
  max over positions of its error <= 1.5 * max over positions of HF-bf16's,
  and every position's error <= 3e-2; the oracle (fp32 like the reference)
  must also stay <= 1e-4. --plant-bug checks the checker: after each PASS
  the same run on a copy of the checkpoint with one weight changed must FAIL.
Greedy-token agreement (argmax per position vs the reference) is reported
but does not gate: with random weights the top logits are close together.

Prints a table, writes --json, exits 1 if anything failed (2 on a setup
error). Checkpoints and HF references are cached under --workdir, keyed by
the model spec, so a later invocation (e.g. another backend, or the device
machine's 10-minute command limit) skips the HF part.

See tests/gpu/README.md.
"""

import argparse
import hashlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

# ---------------------------------------------------------------- the models

# hidden/inter/layers/heads/kv/head_dim/vocab; rope as (theta, llama3 dict or None)
MODELS = {
    # Qwen3-0.6B's exact shapes
    "qwen3-0.6b": dict(
        arch="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
        head_dim=128, max_position_embeddings=40960, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, rope_scaling=None),
    # a second Qwen3 size: wider, untied, 4 layers
    "qwen3-h2048-l4": dict(
        arch="qwen3", vocab_size=151936, hidden_size=2048, intermediate_size=6144,
        num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=8,
        head_dim=128, max_position_embeddings=40960, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=False, rope_scaling=None),
    # Qwen2 (q/k/v biases), Qwen2.5-0.5B's widths, 4 layers
    "qwen2-h896-l4": dict(
        arch="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=4, num_attention_heads=14, num_key_value_heads=2,
        head_dim=64, max_position_embeddings=32768, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, rope_scaling=None),
    # Llama with Llama-3.2's widths and llama3 rope scaling, 4 layers
    "llama-h2048-l4": dict(
        arch="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=8,
        head_dim=64, max_position_embeddings=131072, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}

BIG_PARAMS = 1.0e9          # cpu/oracle skipped above this unless --all
SLOW_BACKENDS = ("cpu", "oracle")
ERR_CAP = 3e-2              # no position may be worse than this
BF16_FACTOR = 1.5           # max error <= 1.5 x HF-bf16's max error
ORACLE_CAP = 1e-4           # the oracle is fp32 like the reference: much tighter
PLANT_TENSOR = "model.norm.weight"   # --plant-bug changes element 0 of this
PLANT_DELTA = 1.0
CACHE_VERSION = 1           # bump when the checkpoint recipe changes


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- rope truth

def expected_inv_freq(spec):
    """RoPE inverse frequencies from the formula, in double (the check that
    transformers took our rope parameters, whatever its version)."""
    hd = spec["head_dim"]
    out = []
    for i in range(hd // 2):
        f = 1.0 / spec["rope_theta"] ** (2.0 * i / hd)
        rs = spec["rope_scaling"]
        if rs:
            orig = rs["original_max_position_embeddings"]
            lo, hi, factor = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
            wavelen = 2 * math.pi / f
            if wavelen < orig / hi:
                pass
            elif wavelen > orig / lo:
                f = f / factor
            else:
                s = (orig / wavelen - lo) / (hi - lo)
                f = (1 - s) * f / factor + s * f
        out.append(f)
    return out


# ---------------------------------------------------------------- HF side

def make_config(spec):
    """The transformers config for spec, on transformers 5 (rope_parameters)
    or 4 (rope_theta / rope_scaling)."""
    import transformers as T
    cls = {"qwen3": T.Qwen3Config, "qwen2": T.Qwen2Config, "llama": T.LlamaConfig}[spec["arch"]]
    common = dict(
        vocab_size=spec["vocab_size"], hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        rms_norm_eps=spec["rms_norm_eps"],
        tie_word_embeddings=spec["tie_word_embeddings"],
        hidden_act="silu", initializer_range=0.02,
        bos_token_id=1, eos_token_id=2,
    )
    if spec["arch"] in ("qwen3", "llama"):
        common["head_dim"] = spec["head_dim"]
    if spec["arch"] == "llama":
        common.update(attention_bias=False, mlp_bias=False)
    if spec["arch"] == "qwen3":
        common["attention_bias"] = False
    if spec["arch"] in ("qwen3", "qwen2"):
        common["use_sliding_window"] = False

    rope_v5 = {"rope_type": "default", "rope_theta": spec["rope_theta"]}
    if spec["rope_scaling"]:
        rope_v5 = dict(spec["rope_scaling"], rope_theta=spec["rope_theta"])
    major = int(T.__version__.split(".")[0])
    if major >= 5:
        try:
            return cls(rope_parameters=rope_v5, **common)
        except TypeError:
            pass
    kw = dict(common, rope_theta=spec["rope_theta"])
    if spec["rope_scaling"]:
        kw["rope_scaling"] = dict(spec["rope_scaling"])
    return cls(**kw)


def build_model(spec, device):
    import torch
    import transformers as T
    cfg = make_config(spec)
    with torch.device(device):
        try:
            model = T.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        except (TypeError, ValueError):
            model = T.AutoModelForCausalLM.from_config(cfg)
            model.config._attn_implementation = "eager"
    return model.to(device=device, dtype=torch.float32).eval()


def init_weights(model, seed):
    """N(0, 0.02) everywhere (biases too, so Qwen2's matter), 1 + N(0, 0.02)
    for norm weights; deterministic for a seed. Tied weights are one
    parameter and are drawn once."""
    import torch
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.02, generator=g)
            if "norm" in name.split(".")[-2] and name.endswith("weight"):
                p.add_(1.0)


def load_model(model_dir, dtype, device):
    """from_pretrained in dtype with eager attention; `dtype=` on
    transformers >= 4.56 and 5, `torch_dtype=` before."""
    import torch
    import transformers as T
    model = None
    for kw in ("dtype", "torch_dtype"):
        try:
            model = T.AutoModelForCausalLM.from_pretrained(
                model_dir, attn_implementation="eager", **{kw: dtype})
        except TypeError:
            continue
        if next(model.parameters()).dtype == dtype:
            break
    if model is None or next(model.parameters()).dtype != dtype:
        raise RuntimeError("%s: could not load in %s" % (model_dir, dtype))
    return model.to(device).eval()


def empty_cache(device):
    import torch
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def check_model(model, spec):
    """Guards against a transformers version silently ignoring an argument:
    shapes, tying, eager attention and the rope frequencies it computed."""
    import torch
    errs = []
    base = model.model
    emb = base.embed_tokens.weight
    if tuple(emb.shape) != (spec["vocab_size"], spec["hidden_size"]):
        errs.append("embed shape %s" % (tuple(emb.shape),))
    tied = model.lm_head.weight.data_ptr() == emb.data_ptr()
    if tied != spec["tie_word_embeddings"]:
        errs.append("lm_head tied=%s, wanted %s" % (tied, spec["tie_word_embeddings"]))
    attn = base.layers[0].self_attn
    hd, nh, nkv = spec["head_dim"], spec["num_attention_heads"], spec["num_key_value_heads"]
    if tuple(attn.q_proj.weight.shape) != (nh * hd, spec["hidden_size"]):
        errs.append("q_proj shape %s" % (tuple(attn.q_proj.weight.shape),))
    if tuple(attn.k_proj.weight.shape) != (nkv * hd, spec["hidden_size"]):
        errs.append("k_proj shape %s" % (tuple(attn.k_proj.weight.shape),))
    if (attn.q_proj.bias is not None) != (spec["arch"] == "qwen2"):
        errs.append("q_proj bias present=%s" % (attn.q_proj.bias is not None))
    if hasattr(attn, "q_norm") != (spec["arch"] == "qwen3"):
        errs.append("q_norm present=%s" % hasattr(attn, "q_norm"))
    if len(base.layers) != spec["num_hidden_layers"]:
        errs.append("%d layers" % len(base.layers))
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in (None, "eager"):
        log("  note: attention implementation is %r, not eager" % impl)
    inv = None
    for mod in model.modules():
        if hasattr(mod, "inv_freq") and isinstance(mod.inv_freq, torch.Tensor):
            inv = mod.inv_freq.detach().double().cpu().tolist()
            break
    want = expected_inv_freq(spec)
    if inv is None:
        errs.append("no rotary inv_freq found")
    elif len(inv) != len(want) or any(abs(a - b) > 1e-5 * b for a, b in zip(inv, want)):
        bad = [(i, a, b) for i, (a, b) in enumerate(zip(inv, want)) if abs(a - b) > 1e-5 * b]
        errs.append("rope inv_freq differs from the formula at %s" % bad[:3])
    return errs


def rel_l2_rows(a, ref):
    """Per-row ||a - ref|| / ||ref|| in float64; NaN/inf rows give inf."""
    import torch
    a = a.double()
    ref = ref.double()
    err = (a - ref).norm(dim=-1) / ref.norm(dim=-1)
    bad = ~torch.isfinite(a).all(dim=-1)
    err[bad] = float("inf")
    return err.cpu().tolist()


def spec_key(name, spec, seed, seq_len):
    blob = json.dumps([CACHE_VERSION, name, spec, seed, seq_len], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def legacy_rope_keys(model_dir, spec):
    """Adds top-level rope_theta / rope_scaling next to transformers 5's
    rope_parameters, for a loom that only reads the 4.x keys."""
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.setdefault("rope_theta", spec["rope_theta"])
    if spec["rope_scaling"]:
        cfg.setdefault("rope_scaling", dict(spec["rope_scaling"]))
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


def prepare(name, spec, args):
    """Checkpoint + HF references for one model, from the cache when its key
    matches. Returns a dict with dir, tokens, ref (CPU float32 [T, V]),
    bf16 errors, params."""
    import torch
    seed = args.seed + sum(map(ord, name))
    key = spec_key(name, spec, seed, args.seq_len)
    model_dir = os.path.join(args.workdir, name)
    meta_path = os.path.join(model_dir, "hf_meta.json")
    ref_path = os.path.join(model_dir, "hf_ref.pt")
    if os.path.exists(meta_path) and os.path.exists(ref_path) and not args.rebuild:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("key") == key:
            log("[%s] cached checkpoint and HF reference in %s" % (name, model_dir))
            meta["ref"] = torch.load(ref_path)
            meta["dir"] = model_dir
            return meta

    t0 = time.time()
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    torch.manual_seed(seed)
    model = build_model(spec, args.device)
    init_weights(model, seed)
    errs = check_model(model, spec)
    if errs:
        raise RuntimeError("%s: transformers did not build the model asked for: %s"
                           % (name, "; ".join(errs)))
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir)
    del model
    empty_cache(args.device)
    if args.legacy_rope_keys:
        legacy_rope_keys(model_dir, spec)
    t1 = time.time()

    # Both HF runs load the checkpoint from disk, exactly what loom reads:
    # a config that does not survive save/load shows up here, not as a loom
    # mismatch, and the bf16 model keeps its rope buffer in fp32 as it does
    # for any user of from_pretrained.
    g = torch.Generator(device="cpu")
    g.manual_seed(seed + 1)
    tokens = torch.randint(0, spec["vocab_size"], (args.seq_len,), generator=g)
    ids = tokens.unsqueeze(0).to(args.device)
    model = load_model(model_dir, torch.float32, args.device)
    errs = check_model(model, spec)
    if errs:
        raise RuntimeError("%s: the saved checkpoint does not reload as built: %s"
                           % (name, "; ".join(errs)))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=False).logits[0].float()
    del model
    empty_cache(args.device)
    model = load_model(model_dir, torch.bfloat16, args.device)
    with torch.no_grad():
        lo = model(input_ids=ids, use_cache=False).logits[0].float()
    bf16_err = rel_l2_rows(lo, ref)
    bf16_greedy = (lo.argmax(-1) == ref.argmax(-1)).double().mean().item()
    ref = ref.cpu().contiguous()
    del model, lo
    empty_cache(args.device)

    meta = dict(key=key, name=name, spec=spec, seed=seed, params=params,
                tokens=tokens.tolist(), bf16_err=bf16_err, bf16_greedy=bf16_greedy,
                transformers=__import__("transformers").__version__,
                torch=torch.__version__)
    torch.save(ref, ref_path)
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    log("[%s] %.2fB params: checkpoint %.1fs, HF fp32 + bf16 %.1fs; HF-bf16 rel L2 max %.3g"
        % (name, params / 1e9, t1 - t0, time.time() - t1, max(bf16_err)))
    meta["ref"] = ref
    meta["dir"] = model_dir
    return meta


# ---------------------------------------------------------------- loom side

def run_loom(args, meta, backend):
    """Runs loom on one backend; returns (errors per position or None,
    greedy agreement or None, note, seconds)."""
    import torch
    ref = meta["ref"]
    n, vocab = ref.shape
    fd, out = tempfile.mkstemp(prefix="loom-logits-", suffix=".f32", dir=args.workdir)
    os.close(fd)
    cmd = shlex.split(args.loom) + [
        "--model", meta["dir"], "--tokens", ",".join(map(str, meta["tokens"])),
        "--out", out, "--backend", backend]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=args.timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired:
        os.unlink(out)
        return None, None, "timed out after %ds" % args.timeout, time.time() - t0
    except OSError as e:
        os.unlink(out)
        return None, None, "could not run %s: %s" % (cmd[0], e), time.time() - t0
    secs = time.time() - t0
    try:
        if proc.returncode != 0:
            tail = proc.stdout.strip().splitlines()[-3:]
            return None, None, "exit %d: %s" % (proc.returncode, " | ".join(tail)), secs
        size = os.path.getsize(out)
        if size != n * vocab * 4:
            return None, None, "%s holds %d bytes, expected %d x %d float32" % (
                out, size, n, vocab), secs
        with open(out, "rb") as f:
            data = bytearray(f.read())
        got = torch.frombuffer(data, dtype=torch.float32).reshape(n, vocab)
        if sys.byteorder != "little":
            got = got.byteswap()
        err = rel_l2_rows(got, ref)
        greedy = (got.argmax(-1) == ref.argmax(-1)).double().mean().item()
        return err, greedy, "", secs
    finally:
        os.unlink(out)


def judge(err, bf16_err, backend):
    if err is None:
        return False
    if any(not math.isfinite(e) for e in err):
        return False
    if backend == "oracle" and max(err) > ORACLE_CAP:
        return False
    return max(err) <= BF16_FACTOR * max(bf16_err) and max(err) <= ERR_CAP


def plant_bug(meta, args):
    """A copy of the checkpoint with one weight changed (element 0 of the
    final norm, + PLANT_DELTA), for checking that the comparison catches it.
    Other shards and files are hard-linked (copied if that fails)."""
    import torch
    from safetensors.torch import load_file, save_file
    src = meta["dir"]
    dst = src.rstrip("/") + ".planted"
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    shard = "model.safetensors"
    index = os.path.join(src, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shard = json.load(f)["weight_map"][PLANT_TENSOR]
    for fn in os.listdir(src):
        if fn == shard or fn.startswith("hf_"):
            continue
        try:
            os.link(os.path.join(src, fn), os.path.join(dst, fn))
        except OSError:
            shutil.copy(os.path.join(src, fn), os.path.join(dst, fn))
    tensors = load_file(os.path.join(src, shard))
    w = tensors[PLANT_TENSOR].clone()
    w.view(-1)[0] += PLANT_DELTA
    tensors[PLANT_TENSOR] = w
    save_file(tensors, os.path.join(dst, shard), metadata={"format": "pt"})
    del tensors
    return dict(meta, dir=dst)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom", default="./build/loom logits",
                    help="command that writes logits (default: %(default)s)")
    ap.add_argument("--backends", default="cuda,cpu,oracle")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--all", action="store_true",
                    help="run cpu/oracle on models over 1B parameters too")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "loom-hf-compare"))
    ap.add_argument("--rebuild", action="store_true", help="ignore cached checkpoints")
    ap.add_argument("--hf-only", action="store_true",
                    help="only build checkpoints and HF references")
    ap.add_argument("--legacy-rope-keys", action="store_true",
                    help="also write rope_theta/rope_scaling at the top of config.json")
    ap.add_argument("--timeout", type=int, default=540, help="seconds per loom run")
    ap.add_argument("--plant-bug", action="store_true",
                    help="after each PASS, rerun on a copy with one weight changed: "
                         "it must FAIL (reported CAUGHT, else MISSED and the run fails)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    try:
        import torch
        import transformers
    except ImportError as e:
        print("hf_compare: needs torch and transformers: %s" % e, file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("hf_compare: no CUDA device (use --device cpu to build references on the CPU)",
              file=sys.stderr)
        return 2
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        print("hf_compare: unknown model(s) %s; known: %s" % (unknown, ", ".join(MODELS)),
              file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    os.makedirs(args.workdir, exist_ok=True)
    log("hf_compare: torch %s, transformers %s, device %s, workdir %s" % (
        torch.__version__, transformers.__version__,
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
        args.workdir))

    rows, failed = [], False
    for name in names:
        try:
            meta = prepare(name, MODELS[name], args)
        except Exception as e:   # a setup failure of one model fails the run
            log("[%s] HF setup failed: %s: %s" % (name, type(e).__name__, e))
            rows.append(dict(model=name, backend="hf", status="ERROR", note=str(e)))
            failed = True
            continue
        bf = meta["bf16_err"]
        if args.hf_only:
            continue
        for b in backends:
            row = dict(model=name, backend=b, params=meta["params"],
                       hf_bf16_max=max(bf), hf_bf16_mean=sum(bf) / len(bf),
                       hf_bf16_greedy=meta["bf16_greedy"])
            if b in SLOW_BACKENDS and meta["params"] > BIG_PARAMS and not args.all:
                row.update(status="SKIP", note="%.2fB params > 1B (use --all)"
                           % (meta["params"] / 1e9))
                rows.append(row)
                continue
            err, greedy, note, secs = run_loom(args, meta, b)
            ok = judge(err, bf, b)
            row.update(status="PASS" if ok else "FAIL", note=note, seconds=round(secs, 1))
            if err is not None:
                row.update(loom_max=max(err), loom_mean=sum(err) / len(err),
                           worst_pos=max(range(len(err)), key=lambda i: err[i]),
                           greedy=greedy, loom_err=err)
            failed = failed or not ok
            rows.append(row)
            log("[%s] %s: %s %s" % (name, b, row["status"], note))
            if args.plant_bug and ok:
                # the checker checked: the same comparison on a checkpoint
                # with one weight changed must fail
                planted = plant_bug(meta, args)
                perr, _, pnote, _ = run_loom(args, planted, b)
                caught = perr is not None and not judge(perr, bf, b)
                prow = dict(model=name, backend=b + "+bug", status="CAUGHT" if caught else "MISSED",
                            note=pnote or "%s[0] += %g" % (PLANT_TENSOR, PLANT_DELTA),
                            hf_bf16_max=max(bf), hf_bf16_mean=sum(bf) / len(bf))
                if perr is not None:
                    prow.update(loom_max=max(perr), loom_mean=sum(perr) / len(perr))
                failed = failed or not caught
                rows.append(prow)
                log("[%s] %s with a planted bug: %s" % (name, b, prow["status"]))
                shutil.rmtree(planted["dir"], ignore_errors=True)

    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, limits=dict(bf16_factor=BF16_FACTOR, err_cap=ERR_CAP,
                                                   oracle_cap=ORACLE_CAP),
                           seq_len=args.seq_len, seed=args.seed,
                           torch=torch.__version__, transformers=transformers.__version__),
                      f, indent=1)
    return 1 if failed else 0


def fmt(v, spec="%.3g"):
    return "-" if v is None else spec % v


def print_table(rows):
    hdr = "%-16s %-7s %10s %10s %10s %10s %7s %7s  %s" % (
        "model", "backend", "loom max", "loom mean", "bf16 max", "bf16 mean",
        "greedy", "status", "note")
    print()
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print("%-16s %-7s %10s %10s %10s %10s %7s %7s  %s" % (
            r["model"], r["backend"], fmt(r.get("loom_max")), fmt(r.get("loom_mean")),
            fmt(r.get("hf_bf16_max")), fmt(r.get("hf_bf16_mean")),
            fmt(r.get("greedy"), "%.2f"), r["status"], r.get("note", "")))
    print("PASS: no NaN, max rel L2 <= %.1f x HF-bf16's max, every position <= %g"
          " (oracle: <= %g)" % (BF16_FACTOR, ERR_CAP, ORACLE_CAP))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
