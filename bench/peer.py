#!/usr/bin/env python3
"""peer.py - loom's PyTorch peer: a batch-1 Qwen3 decode step, by hand.

The strongest plain-PyTorch baseline we know how to write for batch-1 decode
(the recipe of gpt-fast): random bf16 weights on the GPU, a static KV cache
updated in place at a position held in a device tensor, one decode step
compiled by torch.compile(mode="max-autotune-no-cudagraphs", fullgraph=True),
captured ONCE in a torch.cuda.CUDAGraph and replayed per token.  The step
writes its argmax into the static token tensor and advances the static
position tensor itself, so generation runs with no host sync per token.

  python3 bench/peer.py --preset qwen3-0.6b --prompt-len 64 --new 256 --json

Prints progress on stderr and, with --json, one JSON object on the LAST
stdout line (keys as in `loom bench --json`: model, backend, device,
ms_per_token, bytes_per_step, compile_s, ...).

Prompt: prompt_len <= --teacher-max (256) tokens are fed one per replay,
teacher-forced; a longer prompt (the long-context rows) is not run: the KV
cache positions [0, prompt_len) are filled with random values instead and
generation starts at position prompt_len.  Either way the timed part is the
`new` generated tokens at positions prompt_len .. prompt_len + new - 1.

--device cpu runs the same model code eagerly (no compile, no graph) on a
tiny preset: a smoke test of the model code for machines without a GPU.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# name: (vocab, hidden, inter, layers, heads, kv_heads, head_dim, tied)
PRESETS = {
    "qwen3-0.6b": (151936, 1024, 3072, 28, 16, 8, 128, True),
    "qwen3-1.7b": (151936, 2048, 6144, 28, 16, 8, 128, True),
    "qwen3-8b": (151936, 4096, 12288, 36, 32, 8, 128, False),
    "qwen3-tiny": (512, 64, 192, 2, 4, 2, 16, True),   # CPU smoke test only
}
RMS_EPS = 1e-6
ROPE_THETA = 1e6


def log(msg):
    print(f"peer: {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="qwen3-0.6b", choices=sorted(PRESETS))
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--context", type=int, default=None,
                   help="as run_bench.py: C <= 512 is the prompt length; a longer C "
                        "is reached at the end (prompt C - new, pre-filled)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    p.add_argument("--mode", default="max-autotune-no-cudagraphs",
                   help="torch.compile mode; 'eager' skips torch.compile")
    p.add_argument("--teacher-max", type=int, default=256,
                   help="longest prompt fed token by token; longer is pre-filled")
    p.add_argument("--cache-dir", default=None,
                   help="TORCHINDUCTOR_CACHE_DIR (default: /tmp/loom-bench-inductor)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.context is not None:
        a.prompt_len = a.context if a.context <= 512 else a.context - a.new
    return a


args = parse_args()
# Must be set before torch (inductor) is imported.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                      args.cache_dir or "/tmp/loom-bench-inductor")
if args.cache_dir:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = args.cache_dir

import torch                      # noqa: E402
import torch.nn as nn             # noqa: E402
import torch.nn.functional as F   # noqa: E402

BF16 = torch.bfloat16


# ------------------------------------------------------------ model

def rmsnorm(x, w):
    """Qwen3RMSNorm: normalise in fp32, scale in the input dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + RMS_EPS)
    return w * xf.to(x.dtype)


def rope(x, cos, sin):
    """Rotate-half RoPE; x [n, head_dim] bf16, cos/sin [head_dim] fp32."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rot = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos + rot * sin).to(x.dtype)


def weight(dev, *shape):
    return nn.Parameter(torch.empty(*shape, dtype=BF16, device=dev).normal_(0, 0.02),
                        requires_grad=False)


def norm_weight(dev, n):
    # "about 1": 1 + small noise, so a wrong norm cannot hide behind ones.
    return nn.Parameter(torch.empty(n, dtype=BF16, device=dev).normal_(1.0, 0.05),
                        requires_grad=False)


class Layer(nn.Module):
    def __init__(self, cfg, max_ctx, dev):
        super().__init__()
        _, d, inter, _, nh, nkv, hd, _ = cfg
        self.nh, self.nkv, self.hd = nh, nkv, hd
        self.in_norm = norm_weight(dev, d)
        self.wqkv = weight(dev, (nh + 2 * nkv) * hd, d)   # q, k, v fused
        self.q_norm = norm_weight(dev, hd)
        self.k_norm = norm_weight(dev, hd)
        self.wo = weight(dev, d, nh * hd)
        self.post_norm = norm_weight(dev, d)
        self.wgu = weight(dev, 2 * inter, d)               # gate, up fused
        self.wd = weight(dev, d, inter)
        # Static KV cache of this layer, [kv_heads, max_ctx, head_dim]: head-major
        # so that q @ k^T is a plain strided batched matmul (no transpose copy).
        self.register_buffer("k_cache", torch.zeros(nkv, max_ctx, hd, dtype=BF16, device=dev))
        self.register_buffer("v_cache", torch.zeros(nkv, max_ctx, hd, dtype=BF16, device=dev))

    def forward(self, x, pos, cos, sin, valid):
        nh, nkv, hd = self.nh, self.nkv, self.hd
        h = rmsnorm(x, self.in_norm)
        q, k, v = F.linear(h, self.wqkv).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
        q = rope(rmsnorm(q.view(nh, hd), self.q_norm), cos, sin)
        k = rope(rmsnorm(k.view(nkv, hd), self.k_norm), cos, sin)
        # In-place write of this position into the static cache (index_put_,
        # which inductor keeps in place, as in gpt-fast).
        self.k_cache[:, pos] = k.view(nkv, 1, hd)
        self.v_cache[:, pos] = v.view(nkv, 1, hd)
        # GQA attention over the whole cache, positions > pos masked out.
        qg = q.view(nkv, nh // nkv, hd)                               # [kv, g, hd]
        s = torch.matmul(qg, self.k_cache.transpose(1, 2)).float()    # [kv, g, ctx]
        s = s * (1.0 / math.sqrt(hd))
        s = s.masked_fill(~valid, float("-inf"))
        p = torch.softmax(s, dim=-1).to(BF16)
        o = torch.matmul(p, self.v_cache)                             # [kv, g, hd]
        x = x + F.linear(o.reshape(1, nh * hd), self.wo)
        h = rmsnorm(x, self.post_norm)
        gate, up = F.linear(h, self.wgu).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, self.wd)


class Qwen3(nn.Module):
    def __init__(self, cfg, max_ctx, dev):
        super().__init__()
        vocab, d, _, nl, _, _, hd, tied = cfg
        self.embed = weight(dev, vocab, d)
        self.layers = nn.ModuleList(Layer(cfg, max_ctx, dev) for _ in range(nl))
        self.norm = norm_weight(dev, d)
        self.lm_head = self.embed if tied else weight(dev, vocab, d)
        inv = 1.0 / ROPE_THETA ** (torch.arange(0, hd, 2, dtype=torch.float32, device=dev) / hd)
        ang = torch.outer(torch.arange(max_ctx, dtype=torch.float32, device=dev), inv)
        ang = torch.cat((ang, ang), dim=-1)                           # [ctx, hd]
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())
        self.register_buffer("ctx_idx", torch.arange(max_ctx, device=dev))

    def weight_bytes(self):
        """Bytes of weights read per step: all but the embedding table (one row
        read) unless it is also the lm_head."""
        n = sum(p.numel() for name, p in self.named_parameters()
                if name not in ("embed", "lm_head"))   # tied: lm_head is embed
        n += self.lm_head.numel()
        return 2 * n


def decode_step(model, token, pos):
    """One decode step.  token [1] int64: the input token, overwritten with the
    argmax; pos [1] int64: its position, advanced by one.  Returns the logits."""
    x = F.embedding(token, model.embed)                               # [1, d]
    cos, sin = model.cos[pos], model.sin[pos]                         # [1, hd]
    valid = model.ctx_idx <= pos                                      # [ctx]
    for layer in model.layers:
        x = layer(x, pos, cos, sin, valid)
    logits = F.linear(rmsnorm(x, model.norm), model.lm_head)          # [1, vocab]
    token.copy_(logits.argmax(dim=-1))
    pos.add_(1)
    return logits


# ------------------------------------------------------------ benchmark

def cpu_smoke(cfg, a):
    """Eager run of the model code on the CPU: checks shapes and finiteness."""
    torch.manual_seed(a.seed)
    model = Qwen3(cfg, a.prompt_len + a.new, "cpu")
    token = torch.tensor([1], dtype=torch.int64)
    pos = torch.zeros(1, dtype=torch.int64)
    with torch.no_grad():
        for i in range(a.prompt_len + a.new):
            logits = decode_step(model, token, pos)
            assert torch.isfinite(logits.float()).all(), f"non-finite logits at step {i}"
    assert int(pos) == a.prompt_len + a.new
    log(f"cpu smoke test ok: {a.prompt_len + a.new} steps, last token {int(token)}")
    return 0


def make_step(mode):
    if mode == "eager":
        return decode_step
    return torch.compile(decode_step, mode=mode, fullgraph=True)


def run(cfg, a):
    dev = "cuda"
    torch.manual_seed(a.seed)
    P, N = a.prompt_len, a.new
    max_ctx = P + N
    vocab = cfg[0]
    t0 = time.time()
    model = Qwen3(cfg, max_ctx, dev)
    token = torch.zeros(1, dtype=torch.int64, device=dev)
    pos = torch.zeros(1, dtype=torch.int64, device=dev)
    prompt = torch.randint(0, vocab, (P,), dtype=torch.int64, device=dev)
    torch.cuda.synchronize()
    log(f"{a.preset}: weights {model.weight_bytes() / 1e9:.3f} GB, max_ctx {max_ctx}, "
        f"built in {time.time() - t0:.1f} s")

    # Compile + warm up on a side stream (the recipe for graph capture).
    step = make_step(a.mode)
    t0 = time.time()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            token.copy_(prompt[:1])
            pos.zero_()
            step(model, token, pos)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    log(f"compile + warm-up ({a.mode}): {compile_s:.1f} s")

    # Capture ONE decode step.
    graph = torch.cuda.CUDAGraph()
    token.copy_(prompt[:1])
    pos.zero_()
    with torch.cuda.graph(graph):
        logits = step(model, token, pos)
    torch.cuda.synchronize()

    # Prompt: teacher-forced replays, or a random-filled cache.
    pos.zero_()
    if P <= a.teacher_max:
        for i in range(P):
            token.copy_(prompt[i:i + 1])
            graph.replay()
    else:
        for layer in model.layers:
            layer.k_cache[:, :P].normal_(0, 1)
            layer.v_cache[:, :P].normal_(0, 1)
        token.copy_(prompt[-1:])
        pos.fill_(P)
    torch.cuda.synchronize()
    first_tok = token.clone()
    assert int(pos) == P, f"position {int(pos)} after the prompt, expected {P}"

    def reset():
        token.copy_(first_tok)
        pos.fill_(P)

    # Check: one replay against the uncompiled step from the same state.
    reset()
    ref = decode_step(model, token, pos).float()
    reset()
    graph.replay()
    got = logits.float()
    check_diff = (got - ref).abs().max().item()
    finite = bool(torch.isfinite(got).all().item())
    log(f"graph vs eager logits: max |diff| {check_diff:.3g} (logit scale "
        f"{ref.abs().max().item():.3g}), finite {finite}")

    # Timed: N generated tokens per repetition, graph output feeding the next replay.
    ms = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for r in range(a.reps + 1):        # repetition 0 is a warm-up
        reset()
        torch.cuda.synchronize()
        start.record()
        for _ in range(N):
            graph.replay()
        end.record()
        end.synchronize()
        if r > 0:
            ms.append(start.elapsed_time(end) / N)
    assert int(pos) == P + N, f"position {int(pos)} after generation, expected {P + N}"
    med = statistics.median(ms)
    log(f"{a.preset}: {med:.4f} ms/token (min {min(ms):.4f}, max {max(ms):.4f}, "
        f"{a.reps} reps of {N} tokens)")

    _, _, _, nl, _, nkv, hd, _ = cfg
    kv_pos_bytes = 2 * nl * nkv * hd * 2                 # K and V, bf16, one position
    wb = model.weight_bytes()
    kv_avg = kv_pos_bytes * (P + (N + 1) / 2)            # mean attended length
    return {
        "model": a.preset,
        "backend": "torch.compile+cudagraph" if a.mode != "eager" else "torch-eager+cudagraph",
        "device": torch.cuda.get_device_name(),
        "ms_per_token": med,
        "ms_min": min(ms),
        "ms_max": max(ms),
        "ms_reps": ms,
        "bytes_per_step": int(wb + kv_avg),
        "weight_bytes": wb,
        "kv_bytes_per_position": kv_pos_bytes,
        "kv_bytes_read_per_step": kv_pos_bytes * max_ctx,   # this peer reads the whole cache
        "compile_s": compile_s,
        "mode": a.mode,
        "prompt_len": P,
        "new_tokens": N,
        "max_ctx": max_ctx,
        "prompt": "teacher-forced" if P <= a.teacher_max else "random-filled cache",
        "check_max_abs_diff": check_diff,
        "logits_finite": finite,
        "torch": torch.__version__,
        "triton": getattr(sys.modules.get("triton"), "__version__", None),
    }


def main():
    cfg = PRESETS[args.preset]
    if args.prompt_len < 1 or args.new < 1 or args.reps < 1:
        sys.exit("peer: --prompt-len, --new and --reps must be >= 1")
    if args.device == "cpu":
        return cpu_smoke(cfg, args)
    if not torch.cuda.is_available():
        sys.exit("peer: no CUDA device (use --device cpu --preset qwen3-tiny for a smoke test)")
    with torch.no_grad():
        res = run(cfg, args)
    if args.json:
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
