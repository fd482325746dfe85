#!/usr/bin/env python3
"""Trains byte-level BPE tokenizers with Hugging Face `tokenizers` (the
reference implementation) and writes, for tests/test_tokenizer.c, each one's
tokenizer.json + tokenizer_config.json and the ids / texts the reference
gives for several thousand lines.

usage: gen_fixtures.py OUT_DIR [SEED] [N_RANDOM_LINES]

OUT_DIR/index.txt lists one tokenizer directory per line; each holds
cases.txt with one record per line (texts are hex of their UTF-8 bytes, "-"
when empty):
  B <bos> <eos>                      ids from tokenizer_config.json (-1: none)
  E <add_special> <hex text> <n> <ids...>   encode(text).ids
  D <skip_special> <hex text> <n> <ids...>  decode(ids) (UTF-8, U+FFFD lossy)
The training corpus is fixed (corpus.txt + lines from a fixed seed), so the
vocabularies do not depend on SEED; the test lines do.
"""
import gzip
import json
import os
import random
import shutil
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                 "<|end_header_id|>", "<|eot_id|>"]

# ---------------------------------------------------------------- text

LETTERS = [
    (0x61, 0x7A), (0x41, 0x5A), (0xC0, 0xD6), (0xD8, 0xF6), (0x100, 0x17F),
    (0x410, 0x44F), (0x400, 0x40F), (0x391, 0x3A9), (0x3B1, 0x3C9),
    (0x621, 0x64A), (0x5D0, 0x5EA), (0x905, 0x939), (0x4E00, 0x9FFF),
    (0x3041, 0x3096), (0x30A1, 0x30FA), (0xAC00, 0xD7A3), (0xE01, 0xE30),
    (0x531, 0x556), (0x10D0, 0x10FA), (0x995, 0x9B9), (0xB95, 0xBB9),
]
MARKS = [0x301, 0x300, 0x308, 0x30A, 0x303, 0x327, 0x64B, 0x650, 0x93E, 0x94D,
         0x947, 0x9BE, 0xBCD, 0xE34, 0x5B7, 0x3099]
DIGITS = [(0x30, 0x39), (0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19)]
PUNCT = list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") + list("«»“”‘’—–…·•§¶†‡※¿¡、。，！？")
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\u00a0",
          "\u3000", "\u2003", "\u200b", "\u180e", "\u0085", "\u2028", "\u202f", "\x0b",
          "\x0c", "\r"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇫🇷", "1️⃣", "❤️‍🔥", "🧑🏿‍💻",
         "👩‍❤️‍💋‍👨", "🐈‍⬛", "✨", "🚀", "🙂", "🤖", "☕", "♥️", "🫠", "👋🏻"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "'D"]
CODE = ["def f(x):", "return x", "int main(void) {", "}", "printf(\"%d\\n\", n);",
        "a[i] += b[j] * c;", "if (x != NULL && *x)", "#include <stdio.h>", "x = {'k': [1, 2]}",
        "for i in range(10):", "</div>", "<a href=\"/x\">", "// comment", "/* block */",
        "0xFF", "1e-9", "==", "->", "::", "&&", "||", "...", "```python"]


def rand_char(r, ranges):
    lo, hi = r.choice(ranges)
    return chr(r.randint(lo, hi))


def rand_word(r):
    k = r.random()
    if k < 0.45:
        w = "".join(rand_char(r, LETTERS[:1] if r.random() < 0.3 else [r.choice(LETTERS)])
                    for _ in range(r.randint(1, 10)))
        if r.random() < 0.15:
            w += chr(r.choice(MARKS))
        return w
    if k < 0.55:
        return "".join(rand_char(r, [r.choice(DIGITS)]) for _ in range(r.randint(1, 8)))
    if k < 0.65:
        return "".join(r.choice(PUNCT) for _ in range(r.randint(1, 3)))
    if k < 0.73:
        return "".join(r.choice(EMOJI) for _ in range(r.randint(1, 3)))
    if k < 0.80:
        return r.choice(CONTRACTIONS)
    if k < 0.90:
        return r.choice(CODE)
    if k < 0.95:
        return r.choice(SPACES) * r.randint(1, 3)
    # any assigned code point (BMP mostly). Unassigned ones are left out:
    # PCRE2 10.42 knows Unicode 14 and tokenizers' regex engine a later
    # version, so a character assigned since (e.g. U+136DE, Unicode 16) is
    # Cn to one and a letter to the other (see README in this directory).
    while True:
        cp = r.randint(0x80, 0x2FFFF) if r.random() < 0.3 else r.randint(0x80, 0xFFFF)
        if unicodedata.category(chr(cp)) not in ("Cn", "Cs"):
            return chr(cp)


def rand_line(r, specials=()):
    parts = []
    for _ in range(r.randint(1, 25)):
        parts.append(rand_word(r))
        if specials and r.random() < 0.06:
            parts.append(r.choice(specials))
        parts.append(r.choice(SPACES) if r.random() < 0.8 else "")
    return "".join(parts)


def corpus_lines():
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8", newline="") as f:
        return f.read().splitlines(keepends=True)


def training_text():
    r = random.Random(1234)
    base = corpus_lines()
    return base * 20 + [rand_line(r) for _ in range(6000)]


# ---------------------------------------------------------------- tokenizers

def train(kind):
    special = QWEN_SPECIAL if kind == "qwen" else LLAMA_SPECIAL if kind == "llama3" else []
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind == "qwen":
        tok.normalizer = normalizers.NFC()
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    else:
        pattern = QWEN_PATTERN if kind == "qwen" else LLAMA3_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=6000, min_frequency=2, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    if kind == "qwen":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        # Qwen3 style non-special added tokens (<think> is normalized=false);
        # one normalized token with lstrip/rstrip exercises the other path.
        tok.add_tokens([AddedToken("<think>", normalized=False, special=False),
                        AddedToken("</think>", normalized=False, special=False),
                        AddedToken("[MASK]", normalized=True, lstrip=True, rstrip=True,
                                   special=False)])
    if kind == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
    text = tok.to_str()
    js = json.loads(text)
    if kind == "llama3":
        js["model"]["ignore_merges"] = True      # as Llama-3 ships it
    return Tokenizer.from_str(json.dumps(js)), js


CONFIGS = {
    "qwen": {"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "gpt2": {},
}


def hx(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return b.hex() if b else "-"


def write_cases(tok, js, cfg, out, seed, n_random):
    r = random.Random(seed)
    specials = [a["content"] for a in js["added_tokens"]]
    lines = [l for l in corpus_lines()] + ["", " ", "\n", "a", "  leading", "trailing  "]
    lines += [rand_line(r, specials) for _ in range(n_random)]
    # long words: the BPE heap on thousands of symbols
    lines.append("".join(rand_char(r, [(0x4E00, 0x4FFF)]) for _ in range(3000)))
    lines.append("ab" * 2000)
    lines.append(" " * 500 + "x" + "\n" * 300)
    lines.append("".join(specials) + "x" + " ".join(specials))
    n_ids = tok.get_vocab_size(with_added_tokens=True)
    bos = tok.token_to_id(cfg["bos_token"]) if cfg.get("bos_token") else None
    eos = tok.token_to_id(cfg["eos_token"]) if cfg.get("eos_token") else None
    rec = ["B %d %d" % (-1 if bos is None else bos, -1 if eos is None else eos)]
    all_ids = []
    for i, line in enumerate(lines):
        add = i % 3 == 0
        ids = tok.encode(line, add_special_tokens=add).ids
        all_ids.append(ids)
        rec.append("E %d %s %d %s" % (add, hx(line), len(ids), " ".join(map(str, ids))))
        # round trip through the reference decoder (NFC for qwen)
        if i % 4 == 0:
            text = tok.decode(ids, skip_special_tokens=False)
            rec.append("D 0 %s %d %s" % (hx(text), len(ids), " ".join(map(str, ids))))
    for i in range(600):
        # random ids, some past the end (skipped), bytes split across tokens
        ids = [r.randrange(n_ids + 3) for _ in range(r.randint(1, 12))]
        if i % 2:
            src = r.choice(all_ids) or [0]
            a = r.randrange(len(src))
            ids = src[a:a + r.randint(1, 6)] + ids[:2]
        skip = i % 3 == 0
        text = tok.decode(ids, skip_special_tokens=skip)
        rec.append("D %d %s %d %s" % (skip, hx(text), len(ids), " ".join(map(str, ids))))
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.write("\n".join(rec) + "\n")


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    n_random = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    names = []
    for kind in ("qwen", "llama3", "gpt2"):
        d = os.path.join(out, kind)
        os.makedirs(d, exist_ok=True)
        tok, js = train(kind)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(js, f, ensure_ascii=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(CONFIGS[kind], f)
        write_cases(tok, js, CONFIGS[kind], d, seed, n_random)
        names.append(kind)
    real = os.path.join(HERE, "qwen3", "tokenizer.json.gz")
    if os.path.exists(real):
        # The real Qwen3 tokenizer (see README.md here), unpacked for the test.
        d = os.path.join(out, "qwen3")
        os.makedirs(d, exist_ok=True)
        with gzip.open(real, "rb") as f:
            data = f.read()
        with open(os.path.join(d, "tokenizer.json"), "wb") as f:
            f.write(data)
        shutil.copy(os.path.join(HERE, "qwen3", "tokenizer_config.json"), d)
        with open(os.path.join(d, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        tok = Tokenizer.from_str(data.decode("utf-8"))
        write_cases(tok, json.loads(data), cfg, d, seed, n_random)
        names.append("qwen3")
    with open(os.path.join(out, "index.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


if __name__ == "__main__":
    main()
