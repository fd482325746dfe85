/* tok_decode.c - ids -> text, whole or streamed.
 *
 * Each id's bytes were resolved at load (ByteLevel decoder). The bytes of a
 * sequence are joined and made valid UTF-8 the way Rust's
 * String::from_utf8_lossy does (and Python's errors="replace"): each maximal
 * invalid subpart becomes one U+FFFD. The streaming decoder applies the same
 * rule incrementally and holds back only a valid but unfinished character,
 * so its output, concatenated, is byte for byte the whole-sequence decode. */
#include "tokenizer/tok_internal.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

int tok_utf8_next(const uint8_t *s, size_t n, size_t *len)
{
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t need;

    *len = 1;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        need = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        need = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        need = 4;
    else
        return -1;
    if (b == 0xE0)
        lo = 0xA0;
    else if (b == 0xED)
        hi = 0x9F;
    else if (b == 0xF0)
        lo = 0x90;
    else if (b == 0xF4)
        hi = 0x8F;
    for (size_t i = 1; i < need; i++) {
        if (i >= n)
            return 0;
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF)) {
            *len = i;
            return -1;
        }
    }
    *len = need;
    return 1;
}

/* Growable output byte buffer. */
struct buf {
    char *p;
    size_t n, cap;
};

static bool buf_put(struct buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *p;
        while (cap < b->n + n + 1)
            cap *= 2;
        if (!(p = realloc(b->p, cap)))
            return false;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

/* Appends the valid UTF-8 of s[0..n) to out, U+FFFD for invalid subparts;
 * returns how many bytes were consumed: all of them when final, else it
 * stops before an unfinished character at the end. -1 if out of memory. */
static ptrdiff_t lossy(struct buf *out, const uint8_t *s, size_t n, bool final)
{
    size_t i = 0, run = 0, len;

    while (i < n) {
        int r = s[i] < 0x80 ? 1 : tok_utf8_next(s + i, n - i, &len);
        if (r == 1) {
            i += s[i] < 0x80 ? 1 : len;
            continue;
        }
        if (!buf_put(out, s + run, i - run))
            return -1;
        if (r == 0 && !final)
            return (ptrdiff_t)i;
        if (!buf_put(out, replacement, 3))
            return -1;
        i += r == 0 ? n - i : len;
        run = i;
    }
    if (i > run && !buf_put(out, s + run, i - run))   /* s may be NULL when n == 0 */
        return -1;
    return (ptrdiff_t)i;
}

static bool id_bytes(const loom_tokenizer *t, int32_t id, bool skip_special,
                     const char **s, size_t *n)
{
    *n = 0;
    if (id >= t->n_ids || !t->bytes[id] || (skip_special && t->is_special[id]))
        return false;     /* an id naming no token is skipped, as tokenizers does */
    *s = t->bytes[id];
    *n = t->bytes_len[id];
    return true;
}

loom_status loom_tokenizer_decode(const loom_tokenizer *t, const int32_t *ids, int32_t n,
                                  bool skip_special, char **text, size_t *len)
{
    struct buf raw = {0}, out = {0};
    loom_status st = LOOM_OK;
    const char *s;
    size_t l;

    if (!t || (!ids && n) || n < 0 || !text || !len)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_tokenizer_decode: bad argument");
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0) {
            st = loom_fail(LOOM_ERR_LIMIT, "decode: token %d at position %d is negative",
                           ids[i], i);
            goto out;
        }
        if (id_bytes(t, ids[i], skip_special, &s, &l) && !buf_put(&raw, s, l))
            goto oom;
    }
    if (!buf_put(&out, "", 0) || lossy(&out, (const uint8_t *)raw.p, raw.n, true) < 0)
        goto oom;
    *text = out.p;
    *len = out.n;
    out.p = NULL;
    goto out;
oom:
    st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "decode: %d tokens", n);
out:
    free(raw.p);
    free(out.p);
    return st;
}

/* ---------------------------------------------------------------- streaming */

struct loom_detok {
    const loom_tokenizer *tok;
    bool skip_special;
    uint8_t pending[8];     /* an unfinished character (at most 3 bytes) */
    size_t n_pending;
    struct buf work, out;
};

loom_status loom_detok_new(const loom_tokenizer *tok, bool skip_special, loom_detok **out)
{
    loom_detok *d;

    if (!tok || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_detok_new: NULL argument");
    if (!(d = calloc(1, sizeof *d)))
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "loom_detok_new");
    d->tok = tok;
    d->skip_special = skip_special;
    *out = d;
    return LOOM_OK;
}

loom_status loom_detok_push(loom_detok *d, int32_t id, const char **out, size_t *out_len)
{
    const char *s;
    size_t l;
    ptrdiff_t used;

    if (!d || !out || !out_len)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_detok_push: NULL argument");
    if (id < 0)
        return loom_fail(LOOM_ERR_LIMIT, "detok: token %d is negative", id);
    d->out.n = d->work.n = 0;
    if (!buf_put(&d->out, "", 0))
        goto oom;
    if (id_bytes(d->tok, id, d->skip_special, &s, &l)) {
        if (!buf_put(&d->work, d->pending, d->n_pending) || !buf_put(&d->work, s, l))
            goto oom;
        used = lossy(&d->out, (const uint8_t *)d->work.p, d->work.n, false);
        if (used < 0)
            goto oom;
        d->n_pending = d->work.n - (size_t)used;
        memcpy(d->pending, d->work.p + used, d->n_pending);
    }
    *out = d->out.p;
    *out_len = d->out.n;
    return LOOM_OK;
oom:
    return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "detok: token %d", id);
}

loom_status loom_detok_flush(loom_detok *d, const char **out, size_t *out_len)
{
    if (!d || !out || !out_len)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_detok_flush: NULL argument");
    d->out.n = 0;
    if (!buf_put(&d->out, "", 0) ||
        lossy(&d->out, d->pending, d->n_pending, true) < 0)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "detok: flush");
    d->n_pending = 0;
    *out = d->out.p;
    *out_len = d->out.n;
    return LOOM_OK;
}

void loom_detok_free(loom_detok *d)
{
    if (!d)
        return;
    free(d->work.p);
    free(d->out.p);
    free(d);
}
