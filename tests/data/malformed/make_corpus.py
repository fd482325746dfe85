#!/usr/bin/env python3
"""make_corpus.py - writes the malformed safetensors / config.json corpus.

Each file breaks exactly one rule of the format, and MANIFEST records, one
line per file, tab-separated:  file  expected-loom_status  message-substring
tests/test_safetensors.c (*.safetensors) and tests/test_config.c (*.json)
check that loom rejects each file with that status and a message containing
the substring (and the file's path). Run from anywhere:
    python3 tests/data/malformed/make_corpus.py
The output is deterministic and committed next to this script."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FMT, UNS = "LOOM_ERR_FORMAT", "LOOM_ERR_UNSUPPORTED"
manifest = []


def write(name, data, status, substring):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    manifest.append((name, status, substring))


def st_raw(header_bytes, data=b"", n=None):
    """8-byte length (n, or the header's real length), header, data."""
    if n is None:
        n = len(header_bytes)
    return struct.pack("<Q", n) + header_bytes + data


def st(header, data):
    return st_raw(json.dumps(header).encode(), data)


def ok_entry(dtype="F32", shape=(2,), offs=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


D8 = bytes(range(1, 9))      # 8 bytes of data: one F32 [2] tensor
D16 = bytes(range(1, 17))


def safetensors_cases():
    w = lambda name, data, status, sub: write(name + ".safetensors", data, status, sub)
    # --- file framing
    w("st_short_file", b"\x05\x00\x00\x00\x00", FMT, "shorter than the 8-byte")
    w("st_empty_file", b"", FMT, "file is 0 bytes")
    w("st_header_too_large", st_raw(b"{}", b"", n=100000001), FMT,
      "header length 100000001 exceeds the limit 100000000")
    w("st_header_len_max", st_raw(b"{}", b"", n=2**64 - 1), FMT,
      "header length 18446744073709551615 exceeds the limit")
    w("st_header_beyond_file", st_raw(b'{"a":1}', b"", n=1000), FMT,
      "header length 1000 extends beyond the file (15 bytes)")
    # --- header text
    w("st_invalid_utf8", st_raw(b'{"w\xff": ' + json.dumps(ok_entry()).encode() + b"}", D8),
      FMT, "not valid UTF-8")
    w("st_invalid_json", st_raw(b'{"w": {"dtype": "F32",', D8), FMT, "not valid JSON")
    w("st_empty_header", st_raw(b"", D8), FMT, "not valid JSON")
    w("st_not_object", st_raw(b"[1, 2]", D8), FMT, "header is not a JSON object")
    w("st_duplicate_name",
      st_raw(b'{"w": ' + json.dumps(ok_entry()).encode() + b', "w": ' +
             json.dumps(ok_entry(offs=(8, 16))).encode() + b"}", D16),
      FMT, "duplicate tensor name or key 'w'")
    w("st_metadata_not_map", st({"__metadata__": "pt", "w": ok_entry()}, D8), FMT,
      "'__metadata__' is not a map of strings")
    w("st_metadata_value", st({"__metadata__": {"format": 1}, "w": ok_entry()}, D8), FMT,
      "'__metadata__' is not a map of strings: key 'format'")
    # --- one entry
    w("st_entry_not_object", st({"w": [0, 8]}, D8), FMT, "tensor 'w': entry is not an object")
    for key in ("dtype", "shape", "data_offsets"):
        e = ok_entry()
        del e[key]
        w("st_missing_" + key, st({"w": e}, D8), FMT, "tensor 'w': missing key '%s'" % key)
    e = ok_entry()
    e["extra"] = 1
    w("st_extra_key", st({"w": e}, D8), FMT, "tensor 'w': unexpected key 'extra'")
    w("st_unknown_dtype", st({"w": ok_entry(dtype="F4")}, D8), FMT,
      "tensor 'w': unknown dtype 'F4'")
    w("st_dtype_not_string", st({"w": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}}, D8),
      FMT, "tensor 'w': dtype is not a string")
    w("st_shape_not_array", st({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, D8),
      FMT, "tensor 'w': shape is not an array")
    w("st_shape_negative", st({"w": ok_entry(shape=(-2,))}, D8), FMT,
      "tensor 'w': shape dim 0 is not a non-negative integer")
    w("st_shape_real", st({"w": ok_entry(shape=(1, 2.0))}, D8), FMT,
      "tensor 'w': shape dim 1 is not a non-negative integer")
    w("st_shape_too_many_dims", st({"w": ok_entry(shape=(1,) * 8 + (2,))}, D8), UNS,
      "tensor 'w': shape has 9 dims, more than the limit 8")
    w("st_offsets_three", st({"w": ok_entry(offs=(0, 4, 8))}, D8), FMT,
      "tensor 'w': data_offsets is not two non-negative integers")
    w("st_offsets_negative", st({"w": ok_entry(offs=(-8, 0))}, D8), FMT,
      "tensor 'w': data_offsets is not two non-negative integers")
    w("st_offsets_real", st({"w": ok_entry(offs=(0, 8.0))}, D8), FMT,
      "tensor 'w': data_offsets is not two non-negative integers")
    w("st_numel_overflow", st({"w": ok_entry(shape=(2**32, 2**32, 2))}, D8), FMT,
      "tensor 'w': element count overflows 64 bits")
    w("st_bytes_overflow", st({"w": ok_entry(shape=(2**62,))}, D8), FMT,
      "tensor 'w': byte size (4611686018427387904 elements x F32) overflows 64 bits")
    w("st_end_before_begin", st({"w": ok_entry(offs=(8, 0))}, D8), FMT,
      "tensor 'w': data_offsets end 0 < begin 8")
    w("st_size_mismatch", st({"w": ok_entry(shape=(4,), offs=(0, 8))}, D8), FMT,
      "tensor 'w': data_offsets span 8 bytes but shape [4] x F32 needs 16")
    # --- the tensors together
    w("st_gap", st({"a": ok_entry(offs=(0, 8)), "b": ok_entry(offs=(12, 20))}, D16 + D8[:4]),
      FMT, "tensor 'b': data_offsets not contiguous: begins at 12 but tensor 'a' ends at 8 (gap)")
    w("st_overlap", st({"a": ok_entry(offs=(0, 8)), "b": ok_entry(offs=(4, 12))}, D8 + D8[:4]),
      FMT, "tensor 'b': data_offsets not contiguous: begins at 4 but tensor 'a' ends at 8 (overlap)")
    w("st_first_not_zero", st({"w": ok_entry(offs=(4, 12))}, D8 + D8[:4]), FMT,
      "tensor 'w': first tensor begins at 4, not 0")
    w("st_trailing_data", st({"w": ok_entry()}, D16), FMT,
      "tensors end at byte 8 but the data buffer is 16 bytes")
    w("st_data_short", st({"w": ok_entry(shape=(4,), offs=(0, 16))}, D8), FMT,
      "tensors end at byte 16 but the data buffer is 8 bytes")
    w("st_no_tensors_with_data", st({}, D8), FMT,
      "tensors end at byte 0 but the data buffer is 8 bytes")


QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
    "vocab_size": 1024, "hidden_size": 256, "intermediate_size": 768,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 128, "max_position_embeddings": 4096, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000, "hidden_act": "silu", "attention_bias": False,
    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}


def config_cases():
    def w(name, changes, status, sub, base=QWEN3, remove=()):
        c = dict(base)
        c.update(changes)
        for k in remove:
            del c[k]
        write("cfg_" + name + ".json", (json.dumps(c, indent=2) + "\n").encode(), status, sub)

    w("unknown_arch", {"architectures": ["GPT2LMHeadModel"]}, UNS,
      "architecture 'GPT2LMHeadModel' is not supported")
    w("two_archs", {"architectures": ["Qwen3ForCausalLM", "LlamaForCausalLM"]}, FMT,
      "'architectures' must be a list of one string")
    w("hidden_act_gelu", {"hidden_act": "gelu"}, UNS, "'hidden_act' = 'gelu' is not supported")
    w("llama_attention_bias", {"architectures": ["LlamaForCausalLM"], "attention_bias": True},
      UNS, "'attention_bias' = true is not supported for LlamaForCausalLM")
    w("mlp_bias", {"mlp_bias": True}, UNS, "'mlp_bias' = true is not supported")
    w("qwen2_sliding_window", {"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True},
      UNS, "'use_sliding_window' = true is not supported")
    w("rope_yarn", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, UNS,
      "'rope_scaling' rope_type 'yarn' is not supported")
    w("rope_parameters_linear", {"rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                     "rope_theta": 10000.0}},
      UNS, "'rope_parameters' rope_type 'linear' is not supported", remove=("rope_theta",))
    w("llama3_missing_factor", {"architectures": ["LlamaForCausalLM"], "rope_scaling": {
        "rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}, FMT, "missing key 'rope_scaling.factor'")
    w("torch_dtype_int8", {"torch_dtype": "int8"}, UNS, "'torch_dtype' = 'int8' is not supported")
    w("hidden_zero", {"hidden_size": 0}, FMT, "'hidden_size' = 0 must be positive")
    w("layers_negative", {"num_hidden_layers": -2}, FMT,
      "'num_hidden_layers' = -2 must be positive")
    w("vocab_zero", {"vocab_size": 0}, FMT, "'vocab_size' = 0 must be positive")
    w("heads_not_divisible", {"num_attention_heads": 4, "num_key_value_heads": 3}, FMT,
      "'num_attention_heads' = 4 is not divisible by 'num_key_value_heads' = 3")
    w("hidden_not_divisible", {"hidden_size": 250}, FMT,
      "'hidden_size' = 250 is not divisible by 'num_attention_heads' = 4", remove=("head_dim",))
    w("head_dim_odd", {"head_dim": 63}, FMT, "'head_dim' = 63 is odd")
    w("eps_zero", {"rms_norm_eps": 0.0}, FMT, "'rms_norm_eps' = 0 must be positive")
    w("theta_negative", {"rope_theta": -1.0}, FMT, "'rope_theta' = -1 must be positive")
    w("string_for_int", {"hidden_size": "256"}, FMT,
      "'hidden_size' must be an integer, got \"256\"")
    w("real_for_int", {"num_hidden_layers": 2.0}, FMT,
      "'num_hidden_layers' must be an integer, got 2.0")
    w("missing_vocab", {}, FMT, "missing key 'vocab_size'", remove=("vocab_size",))
    w("eos_outside_vocab", {"eos_token_id": [2, 5000]}, FMT,
      "'eos_token_id' = 5000 is outside the vocabulary [0, 1024)")
    write("cfg_not_json.json", b'{"architectures": ["Qwen3ForCausalLM"],\n', FMT,
          "not valid JSON")
    write("cfg_not_object.json", b'["Qwen3ForCausalLM"]\n', FMT, "not a JSON object")


def main():
    safetensors_cases()
    config_cases()
    with open(os.path.join(HERE, "MANIFEST"), "w") as f:
        f.write("# file\texpected loom_status\texpected message substring "
                "(written by make_corpus.py)\n")
        for name, status, sub in manifest:
            assert "\t" not in sub and "\n" not in sub
            f.write("%s\t%s\t%s\n" % (name, status, sub))


if __name__ == "__main__":
    main()
