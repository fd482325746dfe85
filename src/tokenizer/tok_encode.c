/* tok_encode.c - text -> ids, in the order Hugging Face's tokenizers runs:
 *   1. added tokens with normalized=false (the special ones) split off the
 *      raw text, leftmost-longest;
 *   2. each remaining piece normalized (NFC), then the normalized=true added
 *      tokens split off;
 *   3. the pre-tokenizer steps split the pieces (PCRE2, UTF + UCP);
 *   4. each word goes through BPE: its bytes are the initial symbols (the
 *      ByteLevel mapping is implicit: byte_id[] holds each byte's token) and
 *      the pair of lowest merge rank, leftmost first, merges until none is
 *      left (a heap, as tokenizers' word.rs). */
#include "tokenizer/tok_internal.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct ids {
    int32_t *v;
    size_t n, cap;
};

struct sym {
    int32_t id, prev, next;
    uint32_t len;
};

struct cand {
    int32_t rank, pos, id;
};

/* Scratch of one encode call (the tokenizer itself stays read-only). */
struct enc {
    const loom_tokenizer *t;
    struct ids out;
    pcre2_match_data *md;
    struct sym *syms;
    struct cand *heap;
    size_t cap_syms, cap_heap;
    char *word;                   /* byte-level form, for ignore_merges */
    size_t cap_word;
    loom_status st;
};

static bool push_id(struct enc *e, int32_t id)
{
    if (e->out.n == e->out.cap) {
        size_t cap = e->out.cap ? 2 * e->out.cap : 64;
        int32_t *v = realloc(e->out.v, cap * sizeof *v);
        if (!v) {
            e->st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "tokenizer: %zu ids", cap);
            return false;
        }
        e->out.v = v;
        e->out.cap = cap;
    }
    e->out.v[e->out.n++] = id;
    return true;
}

static bool grow(struct enc *e, void **p, size_t *cap, size_t need, size_t elem)
{
    void *q;

    if (need <= *cap)
        return true;
    need = need < 64 ? 64 : 2 * need;
    q = realloc(*p, need * elem);
    if (!q) {
        e->st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "tokenizer: word of %zu bytes", need / 2);
        return false;
    }
    *p = q;
    *cap = need;
    return true;
}

/* ---------------------------------------------------------------- BPE */

static const struct tok_merge_slot *merge_get(const struct tok_mergemap *m, int32_t a,
                                              int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;

    for (;; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key)
            return &m->slots[i];
        if (m->slots[i].key == UINT64_MAX)
            return NULL;
    }
}

static bool cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct cand *h, size_t *n, struct cand c)
{
    size_t i = (*n)++;

    while (i && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static struct cand heap_pop(struct cand *h, size_t *n)
{
    struct cand top = h[0], last = h[--(*n)];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
            c++;
        if (!cand_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static void try_pair(struct enc *e, size_t *nh, int32_t pos)
{
    const struct sym *s = e->syms;
    const struct tok_merge_slot *m;

    if (pos < 0 || s[pos].next < 0)
        return;
    m = merge_get(&e->t->merges, s[pos].id, s[s[pos].next].id);
    if (m)
        heap_push(e->heap, nh, (struct cand){m->rank, pos, m->id});
}

/* ignore_merges (Llama-3): a word that is itself in the vocab is one token. */
static bool whole_word(struct enc *e, const uint8_t *w, size_t n)
{
    const loom_tokenizer *t = e->t;
    size_t o = 0;
    int32_t id;

    if (!grow(e, (void **)&e->word, &e->cap_word, 2 * n, 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = t->byte_cp[w[i]];
        if (cp < 0x80) {
            e->word[o++] = (char)cp;
        } else {
            e->word[o++] = (char)(0xC0 | cp >> 6);
            e->word[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    id = tok_strmap_get(&t->vocab, t->form, t->form_len, e->word, o);
    return id >= 0 && push_id(e, id);
}

static bool bpe_word(struct enc *e, const uint8_t *w, size_t n)
{
    const loom_tokenizer *t = e->t;
    size_t nh = 0, ns = 0;

    if (!n)
        return true;
    if (t->ignore_merges && (whole_word(e, w, n) || e->st))
        return !e->st;
    if (!grow(e, (void **)&e->syms, &e->cap_syms, n, sizeof *e->syms) ||
        !grow(e, (void **)&e->heap, &e->cap_heap, 2 * n, sizeof *e->heap))
        return false;
    /* A byte without a token becomes unk (consecutive ones not fused) or is
     * dropped when the model has no unk, as tokenizers does. */
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id < 0)
            id = t->unk_id;
        if (id < 0)
            continue;
        e->syms[ns] = (struct sym){id, (int32_t)ns - 1, (int32_t)ns + 1, 1};
        ns++;
    }
    if (!ns)
        return true;
    e->syms[ns - 1].next = -1;
    for (size_t i = 0; i + 1 < ns; i++)
        try_pair(e, &nh, (int32_t)i);
    while (nh) {
        struct cand c = heap_pop(e->heap, &nh);
        struct sym *s = &e->syms[c.pos], *r;
        const struct tok_merge_slot *m;
        if (!s->len || s->next < 0)
            continue;
        r = &e->syms[s->next];
        m = merge_get(&t->merges, s->id, r->id);
        if (!m || m->id != c.id)
            continue;     /* stale: one side merged since it was queued */
        s->id = c.id;
        s->len += r->len;
        s->next = r->next;
        r->len = 0;
        if (s->next >= 0)
            e->syms[s->next].prev = c.pos;
        try_pair(e, &nh, s->prev);
        try_pair(e, &nh, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = e->syms[i].next)
        if (!push_id(e, e->syms[i].id))
            return false;
    return true;
}

/* ---------------------------------------------------------------- pre-tokenize */

static bool pretok(struct enc *e, int step, const char *s, size_t n);

/* Splits [s, s+n) by step's regex: matches and the gaps between them become
 * pieces (Isolated), or only the gaps (Removed); invert swaps the roles. */
static bool split_step(struct enc *e, int step, const char *s, size_t n)
{
    const struct tok_step *st = &e->t->steps[step];
    PCRE2_SIZE off = 0, prev = 0, *ov;
    bool keep_match = !st->removed || st->invert, keep_gap = !st->removed || !st->invert;

    while (off < n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            e->st = loom_fail(LOOM_ERR_LIMIT, "%s: pre-tokenizer regex failed on a %zu-byte "
                              "piece: %s", e->t->path, n, (const char *)msg);
            return false;
        }
        ov = pcre2_get_ovector_pointer(e->md);
        if (ov[1] == ov[0]) {           /* empty match: step over one char */
            off = ov[0] + 1;
            while (off < n && ((uint8_t)s[off] & 0xC0) == 0x80)
                off++;
            continue;
        }
        if (ov[0] > prev && keep_gap && !pretok(e, step + 1, s + prev, ov[0] - prev))
            return false;
        if (keep_match && !pretok(e, step + 1, s + ov[0], ov[1] - ov[0]))
            return false;
        prev = off = ov[1];
    }
    if (prev < n && keep_gap)
        return pretok(e, step + 1, s + prev, n - prev);
    return true;
}

static bool pretok(struct enc *e, int step, const char *s, size_t n)
{
    if (!n)
        return true;
    if (step == e->t->n_steps)
        return bpe_word(e, (const uint8_t *)s, n);
    if (e->t->steps[step].re)
        return split_step(e, step, s, n);
    return pretok(e, step + 1, s, n);
}

/* ---------------------------------------------------------------- added tokens */

static bool is_space(uint32_t cp)
{
    if ((cp >= 9 && cp <= 13) || cp == ' ' || cp == 0x85)
        return true;
    if (cp < 0xA0)
        return false;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL ||
           c == UTF8PROC_CATEGORY_ZP;
}

static bool is_word(uint32_t cp)
{
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);

    return cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ND) ||
           c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO || c == UTF8PROC_CATEGORY_PC;
}

/* Code point of the character ending at s + i (i > 0), and its start. */
static uint32_t cp_before(const char *s, size_t i, size_t *start)
{
    utf8proc_int32_t cp = 0;

    *start = i - 1;
    while (*start > 0 && ((uint8_t)s[*start] & 0xC0) == 0x80)
        (*start)--;
    utf8proc_iterate((const utf8proc_uint8_t *)s + *start, (utf8proc_ssize_t)(i - *start), &cp);
    return (uint32_t)cp;
}

static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *len)
{
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                          (utf8proc_ssize_t)(n - i), &cp);
    *len = l > 0 ? (size_t)l : 1;
    return (uint32_t)cp;
}

/* Longest added token (of the wanted kind) starting at s + i, or NULL. */
static const struct tok_added *added_at(const loom_tokenizer *t, bool normalized,
                                        const char *s, size_t n, size_t i)
{
    for (int k = 0; k < t->n_added; k++) {
        const struct tok_added *a = &t->added[k];
        if (a->normalized == normalized && a->len <= n - i && a->content[0] == s[i] &&
            !memcmp(a->content, s + i, a->len))
            return a;
    }
    return NULL;
}

/* single_word: the match must not touch word characters on either side. */
static bool word_bounded(const char *s, size_t n, size_t start, size_t stop)
{
    size_t x;

    if (start > 0 && is_word(cp_before(s, start, &x)))
        return false;
    return stop >= n || !is_word(cp_at(s, n, stop, &x));
}

typedef bool (*piece_fn)(struct enc *e, const char *s, size_t n);

/* Splits [s, s+n) at the added tokens of one kind (leftmost-longest, with
 * lstrip/rstrip eating the whitespace around them); the gaps go to next. */
static bool split_added(struct enc *e, bool normalized, const char *s, size_t n,
                        piece_fn next, uint8_t first_bytes[256])
{
    size_t done = 0, i = 0, x;

    while (i < n) {
        const struct tok_added *a = first_bytes[(uint8_t)s[i]] ?
            added_at(e->t, normalized, s, n, i) : NULL;
        size_t start = i, stop;
        if (!a || (a->single_word && !word_bounded(s, n, i, i + a->len))) {
            i++;
            continue;
        }
        stop = i + a->len;
        if (a->lstrip)
            while (start > done && is_space(cp_before(s, start, &x)))
                start = x;
        if (a->rstrip)
            while (stop < n && is_space(cp_at(s, n, stop, &x)))
                stop += x;
        if (start > done && !next(e, s + done, start - done))
            return false;
        if (!push_id(e, a->id))
            return false;
        done = i = stop;
    }
    return done >= n || next(e, s + done, n - done);
}

/* A piece ready for the pre-tokenizer. ByteLevel add_prefix_space (GPT-2)
 * pre-tokenizes each piece as if it began with a space. */
static bool normalized_piece(struct enc *e, const char *s, size_t n)
{
    char *p;
    bool ok;

    if (!e->t->add_prefix_space || !n || s[0] == ' ')
        return pretok(e, 0, s, n);
    if (!(p = malloc(n + 1))) {
        e->st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "tokenizer: %zu bytes", n);
        return false;
    }
    p[0] = ' ';
    memcpy(p + 1, s, n);
    ok = pretok(e, 0, p, n + 1);
    free(p);
    return ok;
}

static bool has_added(const loom_tokenizer *t, bool normalized, uint8_t first[256])
{
    bool any = false;

    memset(first, 0, 256);
    for (int k = 0; k < t->n_added; k++) {
        if (t->added[k].normalized == normalized) {
            first[(uint8_t)t->added[k].content[0]] = 1;
            any = true;
        }
    }
    return any;
}

/* A piece between raw-matched added tokens: normalize, then split off the
 * normalized added tokens, then pre-tokenize. */
static bool raw_piece(struct enc *e, const char *s, size_t n)
{
    const loom_tokenizer *t = e->t;
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t nn;
    uint8_t first[256];
    bool ascii = true, ok;
    int opts = UTF8PROC_STABLE;

    for (size_t i = 0; i < n && ascii; i++)
        ascii = !((uint8_t)s[i] & 0x80);
    if (t->norm != TOK_NORM_NONE && !ascii) {
        if (t->norm == TOK_NORM_NFC || t->norm == TOK_NORM_NFKC)
            opts |= UTF8PROC_COMPOSE;
        else
            opts |= UTF8PROC_DECOMPOSE;
        if (t->norm == TOK_NORM_NFKC || t->norm == TOK_NORM_NFKD)
            opts |= UTF8PROC_COMPAT;
        nn = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &norm,
                          (utf8proc_option_t)opts);
        if (nn < 0) {
            e->st = loom_fail(LOOM_ERR_INVALID_ARGUMENT, "%s: normalizer: %s", t->path,
                              utf8proc_errmsg(nn));
            return false;
        }
        s = (const char *)norm;
        n = (size_t)nn;
    }
    if (has_added(t, true, first))
        ok = split_added(e, true, s, n, normalized_piece, first);
    else
        ok = normalized_piece(e, s, n);
    free(norm);
    return ok;
}

/* ---------------------------------------------------------------- API */

static loom_status check_utf8(const char *text, size_t len)
{
    size_t i = 0, l;

    while (i < len) {
        if ((uint8_t)text[i] < 0x80) {
            i++;
            continue;
        }
        if (tok_utf8_next((const uint8_t *)text + i, len - i, &l) != 1)
            return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "prompt: invalid UTF-8 at byte "
                             "offset %zu (byte 0x%02x)", i, (uint8_t)text[i]);
        i += l;
    }
    return LOOM_OK;
}

static bool add_ids(struct enc *e, const int32_t *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!push_id(e, v[i]))
            return false;
    return true;
}

static bool encode_all(struct enc *e, const char *text, size_t len, bool add_special)
{
    const loom_tokenizer *t = e->t;
    uint8_t first[256];
    bool ok;

    if (add_special && t->has_template && !add_ids(e, t->tmpl_pre, t->n_tmpl_pre))
        return false;
    if (add_special && !t->has_template && t->add_bos && !push_id(e, t->bos))
        return false;
    ok = has_added(t, false, first) ? split_added(e, false, text, len, raw_piece, first)
                                    : raw_piece(e, text, len);
    if (ok && add_special && t->has_template)
        ok = add_ids(e, t->tmpl_post, t->n_tmpl_post);
    return ok;
}

loom_status loom_tokenizer_encode(const loom_tokenizer *t, const char *text, size_t len,
                                  bool add_special, int32_t **ids, int32_t *n)
{
    struct enc e = {.t = t};
    loom_status st;

    if (!t || (!text && len) || !ids || !n)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_tokenizer_encode: NULL argument");
    if (len > INT32_MAX / 2)
        return loom_fail(LOOM_ERR_LIMIT, "prompt: %zu bytes exceeds the limit of %d", len,
                         INT32_MAX / 2);
    if ((st = check_utf8(text, len)))
        return st;
    e.md = pcre2_match_data_create(4, NULL);
    if (!e.md) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "tokenizer: match data");
        goto out;
    }
    if (!encode_all(&e, text ? text : "", len, add_special)) {
        st = e.st;
        goto out;
    }
    if (!e.out.v && !(e.out.v = malloc(sizeof *e.out.v))) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "tokenizer: ids");
        goto out;
    }
    *ids = e.out.v;
    *n = (int32_t)e.out.n;
    e.out.v = NULL;
    st = LOOM_OK;
out:
    free(e.out.v);
    free(e.syms);
    free(e.heap);
    free(e.word);
    pcre2_match_data_free(e.md);
    return st;
}
