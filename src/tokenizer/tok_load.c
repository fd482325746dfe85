/* tok_load.c - tokenizer.json (+ tokenizer_config.json) -> loom_tokenizer.
 *
 * Accepts what Qwen2/Qwen3 and Llama-3 ship: model BPE (vocab, merges as
 * "a b" strings or ["a", "b"] pairs, ignore_merges), added_tokens,
 * normalizer null or NFC (NFD/NFKC/NFKD, Sequence of those), pre_tokenizer
 * Split(Regex/String, Isolated/Removed) and ByteLevel (Sequence of those),
 * decoder ByteLevel, post_processor ByteLevel / TemplateProcessing. Anything
 * else is refused as LOOM_ERR_UNSUPPORTED naming the file and the key. */
#include "tokenizer/tok_internal.h"
#include "core/error.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's pattern, used by ByteLevel when use_regex is true. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---------------------------------------------------------------- byte map */

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 to 256, 257, ... in byte order. */
uint32_t tok_byte_to_cp(uint8_t b)
{
    int n = 0;

    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    for (int c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE))
            n++;
    return 256u + (uint32_t)n;
}

/* ---------------------------------------------------------------- maps */

uint64_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;

    while (c < n)
        c <<= 1;
    return c;
}

int32_t tok_strmap_get(const struct tok_strmap *m, char *const *form,
                       const uint32_t *form_len, const char *key, size_t len)
{
    uint32_t i = (uint32_t)tok_hash(key, len) & m->mask;

    for (;; i = (i + 1) & m->mask) {
        int32_t v = m->slots[i];
        if (!v)
            return -1;
        if (form_len[v - 1] == len && !memcmp(form[v - 1], key, len))
            return v - 1;
    }
}

static void strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t id)
{
    uint32_t i = (uint32_t)tok_hash(key, len) & m->mask;

    while (m->slots[i])
        i = (i + 1) & m->mask;
    m->slots[i] = id + 1;
}

static uint32_t merge_hash(uint64_t key)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(key >> 32);
}

/* Later entries overwrite earlier ones, as in tokenizers' HashMap collect. */
static void merge_put(struct tok_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = merge_hash(key) & m->mask;

    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
}

/* ---------------------------------------------------------------- loading */

struct tok_load {
    loom_tokenizer *tok;
    const char *path;
    json_t *root;
    size_t arena_used, arena_cap;
};

static const char *describe(json_t *v, char *buf, size_t cap)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, cap, "%s", s ? s : "?");
    free(s);
    return buf;
}

/* json_t string or NULL when v is absent/null; error for other types. */
static loom_status opt_string(const struct tok_load *L, json_t *obj, const char *key,
                              const char **out)
{
    json_t *v = json_object_get(obj, key);
    char buf[80];

    *out = NULL;
    if (!v || json_is_null(v))
        return LOOM_OK;
    if (!json_is_string(v))
        return loom_fail(LOOM_ERR_FORMAT, "%s: '%s' must be a string, got %s", L->path, key,
                         describe(v, buf, sizeof buf));
    *out = json_string_value(v);
    return LOOM_OK;
}

static bool opt_bool(json_t *obj, const char *key, bool def)
{
    json_t *v = json_object_get(obj, key);

    return json_is_boolean(v) ? json_is_true(v) : def;
}

static char *arena_put(struct tok_load *L, const char *s, size_t n)
{
    char *p = L->tok->arena + L->arena_used;

    memcpy(p, s, n);
    p[n] = '\0';
    L->arena_used += n + 1;
    return p;
}

/* Reads the ids of model.vocab and added_tokens to size the tables. */
static loom_status scan_ids(struct tok_load *L, json_t *vocab, json_t *added)
{
    const char *key;
    json_t *v;
    size_t i, chars = 0;
    json_int_t max = -1;
    char buf[80];

    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= TOK_MAX_ID)
            return loom_fail(LOOM_ERR_FORMAT, "%s: model.vocab: token '%s' has id %s "
                             "(must be an integer in [0, %d))", L->path, key,
                             describe(v, buf, sizeof buf), TOK_MAX_ID);
        if (json_integer_value(v) > max)
            max = json_integer_value(v);
        chars += strlen(key) + 1;
    }
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        const char *c = json_string_value(json_object_get(v, "content"));
        if (!json_is_object(v) || !json_is_integer(id) || !c || !*c ||
            json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_ID)
            return loom_fail(LOOM_ERR_FORMAT, "%s: added_tokens[%zu]: needs a non-empty "
                             "'content' and an integer 'id' in [0, %d), got %s", L->path, i,
                             TOK_MAX_ID, describe(v, buf, sizeof buf));
        if (json_integer_value(id) > max)
            max = json_integer_value(id);
        chars += strlen(c) + 1;
    }
    if (max < 0)
        return loom_fail(LOOM_ERR_FORMAT, "%s: model.vocab is empty", L->path);
    L->tok->n_ids = (int32_t)max + 1;
    L->arena_cap = 2 * chars;
    return LOOM_OK;
}

static loom_status alloc_tables(struct tok_load *L, size_t n_vocab)
{
    loom_tokenizer *t = L->tok;
    size_t n = (size_t)t->n_ids;

    t->form = calloc(n, sizeof *t->form);
    t->form_len = calloc(n, sizeof *t->form_len);
    t->bytes = calloc(n, sizeof *t->bytes);
    t->bytes_len = calloc(n, sizeof *t->bytes_len);
    t->is_special = calloc(n, 1);
    t->arena = malloc(L->arena_cap + 1);
    t->vocab.mask = pow2_at_least(2 * n_vocab + 1) - 1;
    t->vocab.slots = calloc((size_t)t->vocab.mask + 1, sizeof *t->vocab.slots);
    if (!t->form || !t->form_len || !t->bytes || !t->bytes_len || !t->is_special ||
        !t->arena || !t->vocab.slots)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: tables for %d ids", L->path, t->n_ids);
    return LOOM_OK;
}

static loom_status load_vocab(struct tok_load *L, json_t *vocab)
{
    loom_tokenizer *t = L->tok;
    const char *key;
    json_t *v;

    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(key);
        if (t->form[id])
            return loom_fail(LOOM_ERR_FORMAT, "%s: model.vocab: id %d is used by both "
                             "'%s' and '%s'", L->path, id, t->form[id], key);
        t->form[id] = arena_put(L, key, len);
        t->form_len[id] = (uint32_t)len;
        strmap_put(&t->vocab, key, len, id);
    }
    return LOOM_OK;
}

/* One merge as "a b" or ["a", "b"]; *a and *b point into buf or the JSON. */
static loom_status merge_pair(const struct tok_load *L, json_t *m, size_t i, char *buf,
                              size_t cap, const char **a, const char **b)
{
    char d[80];

    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ') || strlen(s) >= cap)
            goto bad;
        memcpy(buf, s, (size_t)(sp - s));
        buf[sp - s] = '\0';
        *a = buf;
        *b = sp + 1;
        return LOOM_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 &&
        json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        return LOOM_OK;
    }
bad:
    return loom_fail(LOOM_ERR_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", "
                     "\"b\"], got %s", L->path, i, describe(m, d, sizeof d));
}

static loom_status vocab_id(const struct tok_load *L, const char *s, size_t len, size_t i,
                            int32_t *id)
{
    const loom_tokenizer *t = L->tok;

    *id = tok_strmap_get(&t->vocab, t->form, t->form_len, s, len);
    if (*id < 0)
        return loom_fail(LOOM_ERR_FORMAT, "%s: model.merges[%zu]: token '%.*s' is not in "
                         "model.vocab", L->path, i, (int)len, s);
    return LOOM_OK;
}

static loom_status load_merges(struct tok_load *L, json_t *merges)
{
    loom_tokenizer *t = L->tok;
    size_t n = json_array_size(merges), i;
    char buf[1024], cat[2048];
    loom_status st;
    json_t *m;

    if (merges && !json_is_array(merges))
        return loom_fail(LOOM_ERR_FORMAT, "%s: model.merges must be an array", L->path);
    t->merges.mask = pow2_at_least(2 * n + 1) - 1;
    t->merges.slots = malloc(((size_t)t->merges.mask + 1) * sizeof *t->merges.slots);
    if (!t->merges.slots)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: %zu merges", L->path, n);
    for (i = 0; i <= t->merges.mask; i++)
        t->merges.slots[i].key = UINT64_MAX;
    json_array_foreach(merges, i, m) {
        const char *a = NULL, *b = NULL;
        int32_t ia, ib, inew;
        size_t la, lb;
        if ((st = merge_pair(L, m, i, buf, sizeof buf, &a, &b)))
            return st;
        la = strlen(a);
        lb = strlen(b);
        if (la + lb >= sizeof cat)
            return loom_fail(LOOM_ERR_LIMIT, "%s: model.merges[%zu]: merged token longer "
                             "than %zu bytes", L->path, i, sizeof cat);
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        if ((st = vocab_id(L, a, la, i, &ia)) || (st = vocab_id(L, b, lb, i, &ib)) ||
            (st = vocab_id(L, cat, la + lb, i, &inew)))
            return st;
        merge_put(&t->merges, ia, ib, (int32_t)i, inew);
    }
    return LOOM_OK;
}

static int added_cmp(const void *x, const void *y)
{
    const struct tok_added *a = x, *b = y;

    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id - b->id;
}

static loom_status load_added(struct tok_load *L, json_t *added)
{
    loom_tokenizer *t = L->tok;
    size_t i;
    json_t *v;

    t->added = calloc(json_array_size(added) + 1, sizeof *t->added);
    if (!t->added)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: added_tokens", L->path);
    json_array_foreach(added, i, v) {
        struct tok_added *a = &t->added[t->n_added++];
        const char *c = json_string_value(json_object_get(v, "content"));
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        size_t len = strlen(c);
        a->id = id;
        a->special = opt_bool(v, "special", false);
        a->lstrip = opt_bool(v, "lstrip", false);
        a->rstrip = opt_bool(v, "rstrip", false);
        a->single_word = opt_bool(v, "single_word", false);
        a->normalized = opt_bool(v, "normalized", !a->special);
        if (t->form[id] && (t->form_len[id] != len || memcmp(t->form[id], c, len)))
            return loom_fail(LOOM_ERR_FORMAT, "%s: added_tokens[%zu]: id %d is '%s' but "
                             "model.vocab gives it to '%s'", L->path, i, id, c, t->form[id]);
        if (!t->form[id]) {
            t->form[id] = arena_put(L, c, len);
            t->form_len[id] = (uint32_t)len;
        }
        a->content = t->form[id];
        a->len = (uint32_t)len;
        t->is_special[id] = a->special;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, added_cmp);
    return LOOM_OK;
}

/* What decode emits for each id: the ByteLevel decoder maps every char of
 * the token back to its byte; a token with a char outside the mapping (an
 * added token such as "<think>\n") is emitted as its own UTF-8. */
static void build_bytes(struct tok_load *L)
{
    loom_tokenizer *t = L->tok;
    int16_t rev[324];              /* code point -> byte, -1 if unmapped */

    for (int i = 0; i < 324; i++)
        rev[i] = -1;
    for (int b = 0; b < 256; b++)
        rev[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;

    for (int32_t id = 0; id < t->n_ids; id++) {
        const uint8_t *s = (const uint8_t *)t->form[id];
        size_t n = t->form_len[id], i = 0, len, o = 0;
        char *out = t->arena + L->arena_used;
        if (!s)
            continue;
        while (i < n) {
            int b = -1;
            if (tok_utf8_next(s + i, n - i, &len) == 1) {
                uint32_t cp = s[i];
                if (len == 2)
                    cp = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
                b = len <= 2 && cp < 324 ? rev[cp] : -1;
            }
            if (b < 0)
                break;
            out[o++] = (char)b;
            i += len;
        }
        if (i < n) {            /* not all chars mapped: the raw form */
            memcpy(out, s, n);
            o = n;
        }
        t->bytes[id] = out;
        t->bytes_len[id] = (uint32_t)o;
        L->arena_used += o;
    }
}

static loom_status load_model(struct tok_load *L)
{
    json_t *model = json_object_get(L->root, "model"), *vocab, *added;
    const char *type, *s;
    loom_status st;
    char d[80];

    if (!json_is_object(model))
        return loom_fail(LOOM_ERR_FORMAT, "%s: missing object 'model'", L->path);
    if ((st = opt_string(L, model, "type", &type)))
        return st;
    if (type && strcmp(type, "BPE"))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (only "
                         "byte-level BPE: Qwen2/Qwen3, Llama-3)", L->path, type);
    if (opt_bool(model, "byte_fallback", false))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: model.byte_fallback (SentencePiece-style "
                         "BPE) is not supported", L->path);
    if (json_is_number(json_object_get(model, "dropout")))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: model.dropout (BPE dropout) is not "
                         "supported", L->path);
    if ((!opt_string(L, model, "continuing_subword_prefix", &s) && s && *s) ||
        (!opt_string(L, model, "end_of_word_suffix", &s) && s && *s))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: model: continuing_subword_prefix / "
                         "end_of_word_suffix are not supported", L->path);
    vocab = json_object_get(model, "vocab");
    added = json_object_get(L->root, "added_tokens");
    if (!json_is_object(vocab))
        return loom_fail(LOOM_ERR_FORMAT, "%s: model.vocab must be an object, got %s",
                         L->path, describe(vocab, d, sizeof d));
    if (added && !json_is_array(added) && !json_is_null(added))
        return loom_fail(LOOM_ERR_FORMAT, "%s: added_tokens must be an array", L->path);
    L->tok->ignore_merges = opt_bool(model, "ignore_merges", false);
    if ((st = scan_ids(L, vocab, added)) || (st = alloc_tables(L, json_object_size(vocab))) ||
        (st = load_vocab(L, vocab)) || (st = load_merges(L, json_object_get(model, "merges"))) ||
        (st = load_added(L, added)))
        return st;
    if ((st = opt_string(L, model, "unk_token", &s)))
        return st;
    L->tok->unk_id = s ? loom_tokenizer_token_id(L->tok, s) : -1;
    build_bytes(L);
    return LOOM_OK;
}

/* ---------------------------------------------------------------- pipeline */

/* The patterns are written for Oniguruma, whose \s is exactly the Unicode
 * White_Space property; PCRE2's \s (with UCP) also matches U+180E. Spell
 * \s / \S as the property so both engines split alike. Returns malloc'ed. */
static char *onig_to_pcre2(const char *pat)
{
    size_t n = strlen(pat), o = 0;
    char *out = malloc(8 * n + 1);

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (pat[i] == '\\' && (pat[i + 1] == 's' || pat[i + 1] == 'S')) {
            o += (size_t)sprintf(out + o, "\\%c{White_Space}", pat[i + 1] == 's' ? 'p' : 'P');
            i++;
        } else if (pat[i] == '\\' && pat[i + 1]) {
            out[o++] = pat[i++];
            out[o++] = pat[i];
        } else {
            out[o++] = pat[i];
        }
    }
    out[o] = '\0';
    return out;
}

static loom_status compile_re(const struct tok_load *L, const char *what, const char *pat,
                              bool literal, pcre2_code **out)
{
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : 0);
    char *p = literal ? strdup(pat) : onig_to_pcre2(pat);
    pcre2_code *re;

    if (!p)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: %s: regex", L->path, what);
    re = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    free(p);

    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: %s: regex /%s/ at offset %zu: %s",
                         L->path, what, pat, (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter */
    *out = re;
    return LOOM_OK;
}

static loom_status add_step(struct tok_load *L, json_t *p, int idx)
{
    loom_tokenizer *t = L->tok;
    struct tok_step *s = &t->steps[t->n_steps];
    const char *type = json_string_value(json_object_get(p, "type")), *beh, *pat;
    json_t *pattern;
    loom_status st;
    char what[64];

    snprintf(what, sizeof what, "pre_tokenizer[%d]", idx);
    if (type && !strcmp(type, "ByteLevel")) {
        s->kind = TOK_STEP_BYTELEVEL;
        if (opt_bool(p, "add_prefix_space", true)) {
            if (t->n_steps)
                return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: %s: ByteLevel add_prefix_space "
                                 "after another pre-tokenizer", L->path, what);
            t->add_prefix_space = true;
        }
        if (opt_bool(p, "use_regex", true) &&
            (st = compile_re(L, what, gpt2_pattern, false, &s->re)))
            return st;
        t->n_steps++;
        return LOOM_OK;
    }
    if (!type || strcmp(type, "Split"))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: %s: pre-tokenizer type '%s' is not "
                         "supported (Split, ByteLevel, Sequence)", L->path, what,
                         type ? type : "?");
    s->kind = TOK_STEP_SPLIT;
    beh = json_string_value(json_object_get(p, "behavior"));
    if (!beh || (strcmp(beh, "Isolated") && strcmp(beh, "Removed")))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: %s: Split behavior '%s' is not supported "
                         "(Isolated, Removed)", L->path, what, beh ? beh : "?");
    s->removed = !strcmp(beh, "Removed");
    s->invert = opt_bool(p, "invert", false);
    pattern = json_object_get(p, "pattern");
    if ((pat = json_string_value(json_object_get(pattern, "Regex"))))
        st = compile_re(L, what, pat, false, &s->re);
    else if ((pat = json_string_value(json_object_get(pattern, "String"))))
        st = compile_re(L, what, pat, true, &s->re);
    else
        return loom_fail(LOOM_ERR_FORMAT, "%s: %s: Split needs pattern {\"Regex\": ...} or "
                         "{\"String\": ...}", L->path, what);
    if (st)
        return st;
    t->n_steps++;
    return LOOM_OK;
}

static loom_status load_pre_tokenizer(struct tok_load *L)
{
    json_t *p = json_object_get(L->root, "pre_tokenizer"), *list, *one[1];
    const char *type = json_string_value(json_object_get(p, "type"));
    json_t **items = one;
    size_t n = 1;
    loom_status st;

    if (!p || json_is_null(p))
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: no pre_tokenizer: only byte-level BPE "
                         "(ByteLevel pre-tokenizer) is supported", L->path);
    one[0] = p;
    if (type && !strcmp(type, "Sequence")) {
        list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return loom_fail(LOOM_ERR_FORMAT, "%s: pre_tokenizer.pretokenizers must be an "
                             "array", L->path);
        n = json_array_size(list);
        items = NULL;
        p = list;
    }
    L->tok->steps = calloc(n + 1, sizeof *L->tok->steps);
    if (!L->tok->steps)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: pre_tokenizer", L->path);
    for (size_t i = 0; i < n; i++)
        if ((st = add_step(L, items ? items[i] : json_array_get(p, i), (int)i)))
            return st;
    if (!L->tok->n_steps || L->tok->steps[L->tok->n_steps - 1].kind != TOK_STEP_BYTELEVEL)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: pre_tokenizer must end with ByteLevel "
                         "(only byte-level BPE is supported)", L->path);
    return LOOM_OK;
}

static loom_status norm_one(struct tok_load *L, json_t *n, int depth)
{
    const char *type = json_string_value(json_object_get(n, "type"));
    static const char *names[] = {"", "NFC", "NFD", "NFKC", "NFKD"};
    json_t *list, *x;
    loom_status st;
    size_t i;

    if (!n || json_is_null(n))
        return LOOM_OK;
    if (type && !strcmp(type, "Sequence") && depth == 0) {
        list = json_object_get(n, "normalizers");
        json_array_foreach(list, i, x)
            if ((st = norm_one(L, x, 1)))
                return st;
        return LOOM_OK;
    }
    for (int k = 1; k < 5; k++) {
        if (type && !strcmp(type, names[k])) {
            if (L->tok->norm != TOK_NORM_NONE && L->tok->norm != (enum tok_norm)k)
                break;
            L->tok->norm = (enum tok_norm)k;
            return LOOM_OK;
        }
    }
    return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported (NFC, NFD, "
                     "NFKC, NFKD, or none)", L->path, type ? type : "?");
}

static loom_status load_decoder(struct tok_load *L)
{
    json_t *d = json_object_get(L->root, "decoder");
    const char *type = json_string_value(json_object_get(d, "type"));

    if (type && !strcmp(type, "ByteLevel"))
        return LOOM_OK;
    return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: decoder '%s' is not supported (ByteLevel)",
                     L->path, type ? type : "null");
}

/* TemplateProcessing "single": special-token ids before and after $A. */
static loom_status load_template(struct tok_load *L, json_t *p)
{
    loom_tokenizer *t = L->tok;
    json_t *single = json_object_get(p, "single"), *specials = json_object_get(p, "special_tokens");
    json_t *item, *ids, *x;
    size_t i, j, total = 0;
    bool after = false;

    json_array_foreach(single, i, item) {
        const char *name = json_string_value(json_object_get(
            json_object_get(item, "SpecialToken"), "id"));
        if (!name)
            continue;
        total += json_array_size(json_object_get(json_object_get(specials, name), "ids"));
    }
    t->tmpl_pre = calloc(total + 1, sizeof *t->tmpl_pre);
    t->tmpl_post = calloc(total + 1, sizeof *t->tmpl_post);
    if (!t->tmpl_pre || !t->tmpl_post)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: post_processor", L->path);
    json_array_foreach(single, i, item) {
        const char *name = json_string_value(json_object_get(
            json_object_get(item, "SpecialToken"), "id"));
        if (json_object_get(item, "Sequence")) {
            after = true;
            continue;
        }
        ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
        if (!name || !json_is_array(ids))
            return loom_fail(LOOM_ERR_FORMAT, "%s: post_processor.single[%zu]: special token "
                             "'%s' has no ids in special_tokens", L->path, i, name ? name : "?");
        json_array_foreach(ids, j, x) {
            json_int_t id = json_integer_value(x);
            if (!json_is_integer(x) || id < 0 || id >= t->n_ids)
                return loom_fail(LOOM_ERR_FORMAT, "%s: post_processor: special token '%s': "
                                 "id out of range", L->path, name);
            if (after)
                t->tmpl_post[t->n_tmpl_post++] = (int32_t)id;
            else
                t->tmpl_pre[t->n_tmpl_pre++] = (int32_t)id;
        }
    }
    t->has_template = true;
    return LOOM_OK;
}

static loom_status load_post_processor(struct tok_load *L)
{
    json_t *p = json_object_get(L->root, "post_processor"), *list, *x;
    const char *type = json_string_value(json_object_get(p, "type"));
    size_t i;
    loom_status st;

    if (!p || json_is_null(p) || (type && !strcmp(type, "ByteLevel")))
        return LOOM_OK;
    if (type && !strcmp(type, "TemplateProcessing"))
        return load_template(L, p);
    if (type && !strcmp(type, "Sequence")) {
        list = json_object_get(p, "processors");
        json_array_foreach(list, i, x) {
            type = json_string_value(json_object_get(x, "type"));
            if (type && !strcmp(type, "ByteLevel"))
                continue;
            if (type && !strcmp(type, "TemplateProcessing") && !L->tok->has_template) {
                if ((st = load_template(L, x)))
                    return st;
                continue;
            }
            break;
        }
        if (i == json_array_size(list))
            return LOOM_OK;
    }
    return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: post_processor '%s' is not supported "
                     "(ByteLevel, TemplateProcessing, Sequence)", L->path, type ? type : "?");
}

/* ---------------------------------------------------------------- config */

/* bos_token / eos_token: a string, {"content": ...}, or null. */
static int32_t config_token(const loom_tokenizer *t, json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);

    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? loom_tokenizer_token_id(t, json_string_value(v)) : -1;
}

static loom_status load_config(loom_tokenizer *t, const char *path, bool required)
{
    json_error_t err;
    json_t *cfg;
    FILE *f = fopen(path, "rb");

    if (!f) {
        if (!required)
            return LOOM_OK;
        return loom_fail(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    cfg = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!cfg || !json_is_object(cfg)) {
        json_decref(cfg);
        return loom_fail(LOOM_ERR_FORMAT, "%s: line %d, column %d: %s", path, err.line,
                         err.column, cfg ? "not a JSON object" : err.text);
    }
    t->bos = config_token(t, cfg, "bos_token");
    t->eos = config_token(t, cfg, "eos_token");
    t->add_bos = opt_bool(cfg, "add_bos_token", false) && t->bos >= 0;
    json_decref(cfg);
    return LOOM_OK;
}

/* ---------------------------------------------------------------- API */

static loom_status load_json(struct tok_load *L)
{
    json_error_t err;
    FILE *f = fopen(L->path, "rb");
    loom_status st;

    if (!f)
        return loom_fail(LOOM_ERR_IO, "%s: cannot open: %s", L->path, strerror(errno));
    L->root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!L->root)
        return loom_fail(LOOM_ERR_FORMAT, "%s: line %d, column %d: %s", L->path, err.line,
                         err.column, err.text);
    if (!json_is_object(L->root))
        return loom_fail(LOOM_ERR_FORMAT, "%s: not a JSON object", L->path);
    if ((st = load_model(L)) || (st = norm_one(L, json_object_get(L->root, "normalizer"), 0)) ||
        (st = load_pre_tokenizer(L)) || (st = load_decoder(L)) ||
        (st = load_post_processor(L)))
        return st;
    for (int b = 0; b < 256; b++) {
        char s[3];
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        size_t n = cp < 0x80 ? 1 : 2;
        L->tok->byte_cp[b] = (uint16_t)cp;
        if (n == 1)
            s[0] = (char)cp;
        else {
            s[0] = (char)(0xC0 | cp >> 6);
            s[1] = (char)(0x80 | (cp & 0x3f));
        }
        L->tok->byte_id[b] = tok_strmap_get(&L->tok->vocab, L->tok->form, L->tok->form_len,
                                            s, n);
    }
    return LOOM_OK;
}

loom_status loom_tokenizer_load_files(const char *json_path, const char *config_path,
                                      loom_tokenizer **out)
{
    struct tok_load L = {0};
    loom_status st;

    if (!json_path || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_tokenizer_load: NULL argument");
    L.tok = calloc(1, sizeof *L.tok);
    if (!L.tok || !(L.tok->path = strdup(json_path))) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: tokenizer", json_path);
        goto fail;
    }
    L.path = L.tok->path;
    L.tok->bos = L.tok->eos = L.tok->unk_id = -1;
    if ((st = load_json(&L)))
        goto fail;
    if (config_path && (st = load_config(L.tok, config_path, true)))
        goto fail;
    json_decref(L.root);
    *out = L.tok;
    return LOOM_OK;
fail:
    json_decref(L.root);
    loom_tokenizer_free(L.tok);
    return st;
}

loom_status loom_tokenizer_load(const char *model_dir, loom_tokenizer **out)
{
    char *json = NULL, *cfg = NULL;
    loom_tokenizer *t = NULL;
    loom_status st;

    if (!model_dir || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_tokenizer_load: NULL argument");
    if (asprintf(&json, "%s/tokenizer.json", model_dir) < 0 ||
        asprintf(&cfg, "%s/tokenizer_config.json", model_dir) < 0) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: paths", model_dir);
        goto out;
    }
    if ((st = loom_tokenizer_load_files(json, NULL, &t)))
        goto out;
    if ((st = load_config(t, cfg, false))) {
        loom_tokenizer_free(t);
        goto out;
    }
    *out = t;
out:
    free(json);
    free(cfg);
    return st;
}

void loom_tokenizer_free(loom_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_steps; i++)
        pcre2_code_free(t->steps[i].re);
    free(t->steps);
    free(t->form);
    free(t->form_len);
    free(t->bytes);
    free(t->bytes_len);
    free(t->is_special);
    free(t->arena);
    free(t->vocab.slots);
    free(t->merges.slots);
    free(t->added);
    free(t->tmpl_pre);
    free(t->tmpl_post);
    free(t->path);
    free(t);
}

int32_t loom_tokenizer_bos(const loom_tokenizer *t) { return t->bos; }
int32_t loom_tokenizer_eos(const loom_tokenizer *t) { return t->eos; }
int32_t loom_tokenizer_vocab_size(const loom_tokenizer *t) { return t->n_ids; }

int32_t loom_tokenizer_token_id(const loom_tokenizer *t, const char *token)
{
    size_t len = strlen(token);

    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->added[i].content, token, len))
            return t->added[i].id;
    return tok_strmap_get(&t->vocab, t->form, t->form_len, token, len);
}

bool loom_tokenizer_is_special(const loom_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->is_special[id];
}
