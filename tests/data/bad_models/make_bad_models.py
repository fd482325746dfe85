#!/usr/bin/env python3
"""make_bad_models.py - writes the bad-checkpoint corpus for tests/test_bad_models.c.

Each case is a directory holding a tiny Qwen3 model (1 layer, hidden 64,
vocab 128: about 65 KB) broken in one way, and MANIFEST.json lists, for each
case, the status loom_model_load must return and substrings its message must
contain (the file and the tensor at fault). Two controls ("good",
"good_sharded") must load. Python 3 standard library only; deterministic:
rerunning it rewrites identical bytes.

    python3 tests/data/bad_models/make_bad_models.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "attention_bias": False,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}

DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I32": 4}
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"


def tensors():
    """(name, shape) of every tensor the config requires, HF names."""
    h, i, v = CONFIG["hidden_size"], CONFIG["intermediate_size"], CONFIG["vocab_size"]
    hd = CONFIG["head_dim"]
    q, kv = CONFIG["num_attention_heads"] * hd, CONFIG["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", [v, h])]
    for l in range(CONFIG["num_hidden_layers"]):
        p = "model.layers.%d." % l
        out += [
            (p + "input_layernorm.weight", [h]),
            (p + "self_attn.q_proj.weight", [q, h]),
            (p + "self_attn.k_proj.weight", [kv, h]),
            (p + "self_attn.v_proj.weight", [kv, h]),
            (p + "self_attn.q_norm.weight", [hd]),
            (p + "self_attn.k_norm.weight", [hd]),
            (p + "self_attn.o_proj.weight", [h, q]),
            (p + "post_attention_layernorm.weight", [h]),
            (p + "mlp.gate_proj.weight", [i, h]),
            (p + "mlp.up_proj.weight", [i, h]),
            (p + "mlp.down_proj.weight", [h, i]),
        ]
    out.append(("model.norm.weight", [h]))
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def data_of(name, shape, dtype):
    """Deterministic non-zero values (an LCG seeded by the name)."""
    s = sum(ord(c) * 31 ** k for k, c in enumerate(name)) & 0xFFFFFFFF
    out = bytearray()
    for _ in range(numel(shape)):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        x = ((s >> 8) / float(1 << 24) - 0.5) * 0.08 or 0.01
        if name.endswith("norm.weight"):
            x += 1.0
        if dtype == "BF16":
            out += struct.pack("<H", struct.unpack("<I", struct.pack("<f", x))[0] >> 16)
        elif dtype == "F32":
            out += struct.pack("<f", x)
        elif dtype == "F16":
            out += struct.pack("<e", x)
        elif dtype == "F64":
            out += struct.pack("<d", x)
        elif dtype == "I32":
            out += struct.pack("<i", int(x * 1000) or 1)
    return bytes(out)


def write_st(path, items):
    """items: list of (name, shape, dtype); writes a safetensors file."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, shape, dtype in items:
        b = data_of(name, shape, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def bf16_items(skip=()):
    return [(n, s, "BF16") for n, s in tensors() if n not in skip]


def write_config(d, text=None):
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(text if text is not None else json.dumps(CONFIG, indent=2) + "\n")


def write_index(d, weight_map, text=None):
    if text is None:
        text = json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map},
                          indent=2) + "\n"
    with open(os.path.join(d, INDEX), "w") as f:
        f.write(text)


def split_items():
    """The required tensors split in two halves for two shards."""
    items = bf16_items()
    return items[: len(items) // 2], items[len(items) // 2:]


def sharded(d, first, second, weight_map=None, index_text=None, write_second=True):
    write_config(d)
    write_st(os.path.join(d, SHARD1), first)
    if write_second:
        write_st(os.path.join(d, SHARD2), second)
    if weight_map is None:
        weight_map = {n: SHARD1 for n, _, _ in first}
        weight_map.update({n: SHARD2 for n, _, _ in second})
    write_index(d, weight_map, index_text)


LAYER0 = "model.layers.0."
CASES = []


def case(name, status, expect):
    def wrap(fn):
        CASES.append((name, status, expect, fn))
        return fn
    return wrap


@case("good", "LOOM_OK", [])
def good(d):
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"), bf16_items())


@case("good_sharded", "LOOM_OK", [])
def good_sharded(d):
    sharded(d, *split_items())


@case("good_tied_lm_head", "LOOM_OK", [])
def good_tied_lm_head(d):
    """Tied embeddings, yet lm_head.weight stored too: loads, embed is used."""
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"),
             bf16_items() + [("lm_head.weight", [CONFIG["vocab_size"], CONFIG["hidden_size"]],
                              "BF16")])


@case("missing_tensor", "LOOM_ERR_FORMAT",
      ["model.safetensors", LAYER0 + "mlp.up_proj.weight", "missing"])
def missing_tensor(d):
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"), bf16_items({LAYER0 + "mlp.up_proj.weight"}))


@case("extra_tensor", "LOOM_ERR_FORMAT",
      ["model.safetensors", LAYER0 + "self_attn.rotary_emb.inv_freq", "unexpected"])
def extra_tensor(d):
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"),
             bf16_items() + [(LAYER0 + "self_attn.rotary_emb.inv_freq", [8], "F32")])


@case("misshaped_tensor", "LOOM_ERR_FORMAT",
      ["model.safetensors", LAYER0 + "self_attn.k_proj.weight", "[64, 64]", "[32, 64]"])
def misshaped_tensor(d):
    items = [(n, [64, 64] if n.endswith("k_proj.weight") else s, t) for n, s, t in bf16_items()]
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"), items)


@case("dtype_f64", "LOOM_ERR_UNSUPPORTED", ["model.safetensors", "model.norm.weight", "F64"])
def dtype_f64(d):
    items = [(n, s, "F64" if n == "model.norm.weight" else t) for n, s, t in bf16_items()]
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"), items)


@case("dtype_i32", "LOOM_ERR_UNSUPPORTED",
      ["model.safetensors", LAYER0 + "input_layernorm.weight", "I32"])
def dtype_i32(d):
    items = [(n, s, "I32" if n.endswith("input_layernorm.weight") else t)
             for n, s, t in bf16_items()]
    write_config(d)
    write_st(os.path.join(d, "model.safetensors"), items)


def first_of_shard2():
    return min(n for n, _, _ in split_items()[1])


@case("index_missing_shard", "LOOM_ERR_IO", [INDEX, SHARD2, first_of_shard2()])
def index_missing_shard(d):
    sharded(d, *split_items(), write_second=False)


@case("index_duplicate_tensor", "LOOM_ERR_FORMAT", [INDEX, "duplicate", "model.norm.weight"])
def index_duplicate_tensor(d):
    first, second = split_items()
    lines = ['    "%s": "%s"' % (n, SHARD1) for n, _, _ in first]
    lines += ['    "%s": "%s"' % (n, SHARD2) for n, _, _ in second]
    lines.append('    "model.norm.weight": "%s"' % SHARD1)   # listed a second time
    text = ('{\n  "metadata": {"total_size": 0},\n  "weight_map": {\n' +
            ",\n".join(lines) + "\n  }\n}\n")
    sharded(d, first, second, index_text=text)


@case("index_unlisted_tensor", "LOOM_ERR_FORMAT", [SHARD2, "model.norm.weight", "not listed"])
def index_unlisted_tensor(d):
    first, second = split_items()
    wm = {n: SHARD1 for n, _, _ in first}
    wm.update({n: SHARD2 for n, _, _ in second if n != "model.norm.weight"})
    sharded(d, first, second, weight_map=wm)


@case("index_listed_not_held", "LOOM_ERR_FORMAT",
      [INDEX, SHARD1, LAYER0 + "mlp.down_proj.weight", "does not hold"])
def index_listed_not_held(d):
    first, second = split_items()
    wm = {n: SHARD1 for n, _, _ in first}
    wm.update({n: SHARD2 for n, _, _ in second})
    wm[LAYER0 + "mlp.down_proj.weight"] = SHARD1
    second = [it for it in second if it[0] != LAYER0 + "mlp.down_proj.weight"]
    sharded(d, first, second, weight_map=wm)


@case("index_tensor_in_two_shards", "LOOM_ERR_FORMAT", [SHARD1, "model.norm.weight", INDEX])
def index_tensor_in_two_shards(d):
    first, second = split_items()
    norm = [it for it in second if it[0] == "model.norm.weight"]
    sharded(d, first + norm, second)


@case("index_missing_tensor", "LOOM_ERR_FORMAT",
      [INDEX, LAYER0 + "self_attn.q_norm.weight", "missing"])
def index_missing_tensor(d):
    first, second = split_items()
    first = [it for it in first if it[0] != LAYER0 + "self_attn.q_norm.weight"]
    second = [it for it in second if it[0] != LAYER0 + "self_attn.q_norm.weight"]
    sharded(d, first, second)


@case("index_shard_outside_dir", "LOOM_ERR_FORMAT",
      [INDEX, "model.norm.weight", "not a file name in the model directory"])
def index_shard_outside_dir(d):
    """A weight_map entry pointing outside the model directory is refused."""
    first, second = split_items()
    wm = {n: SHARD1 for n, _, _ in first}
    wm.update({n: SHARD2 for n, _, _ in second})
    wm["model.norm.weight"] = "../good/model.safetensors"
    sharded(d, first, second, weight_map=wm)


@case("untied_lm_head_missing", "LOOM_ERR_FORMAT", ["model.safetensors", "lm_head.weight"])
def untied_lm_head_missing(d):
    """tie_word_embeddings false but no lm_head.weight stored."""
    cfg = dict(CONFIG, tie_word_embeddings=False)
    write_config(d, json.dumps(cfg, indent=2) + "\n")
    write_st(os.path.join(d, "model.safetensors"), bf16_items())


@case("config_missing", "LOOM_ERR_IO", ["config.json"])
def config_missing(d):
    write_st(os.path.join(d, "model.safetensors"), bf16_items())


@case("config_malformed", "LOOM_ERR_FORMAT", ["config.json"])
def config_malformed(d):
    text = json.dumps(CONFIG, indent=2)
    write_config(d, text[: len(text) // 2] + "\n")   # cut off mid-object
    write_st(os.path.join(d, "model.safetensors"), bf16_items())


@case("no_weights", "LOOM_ERR_IO", ["model.safetensors", INDEX])
def no_weights(d):
    write_config(d)


def main():
    manifest = []
    for name, status, expect, fn in CASES:
        d = os.path.join(HERE, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        fn(d)
        manifest.append({"case": name, "status": status, "expect": expect,
                         "what": fn.__doc__ or name.replace("_", " ")})
    with open(os.path.join(HERE, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
