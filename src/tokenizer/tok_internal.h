/* tok_internal.h - the loaded tokenizer's tables, shared by tok_load.c,
 * tok_encode.c and tok_decode.c. */
#ifndef LOOM_TOK_INTERNAL_H
#define LOOM_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* Largest id accepted in a tokenizer.json (bounds the per-id tables). */
#define TOK_MAX_ID (1 << 24)

/* String -> id, open addressing; keys are the tokenizer's per-id strings. */
struct tok_strmap {
    uint32_t mask;       /* capacity - 1, capacity a power of two */
    int32_t *slots;      /* id + 1, 0 = empty */
};

/* (left id, right id) -> (rank, merged id). */
struct tok_merge_slot {
    uint64_t key;        /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t id;
};

struct tok_mergemap {
    uint32_t mask;
    struct tok_merge_slot *slots;
};

struct tok_added {
    int32_t id;
    const char *content; /* points into the tokenizer's arena */
    uint32_t len;
    bool special, lstrip, rstrip, single_word, normalized;
};

enum tok_step_kind { TOK_STEP_SPLIT, TOK_STEP_BYTELEVEL };

/* One pre-tokenizer step; ByteLevel with use_regex is a Split with the GPT-2
 * pattern followed by the byte mapping, which BPE applies implicitly. */
struct tok_step {
    enum tok_step_kind kind;
    pcre2_code *re;      /* NULL for ByteLevel without use_regex */
    bool removed;        /* behavior "Removed" (else "Isolated") */
    bool invert;
};

enum tok_norm { TOK_NORM_NONE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD };

struct loom_tokenizer {
    char *path;                  /* tokenizer.json, for messages */
    int32_t n_ids;               /* max id + 1 */
    /* Per id (NULL/0 for ids that name no token). */
    char **form;                 /* vocab form (e.g. "Ġthe") or added content */
    uint32_t *form_len;
    char **bytes;                /* what decode emits for the id */
    uint32_t *bytes_len;
    uint8_t *is_special;
    char *arena;                 /* storage of forms and bytes */

    struct tok_strmap vocab;     /* model.vocab forms -> id */
    struct tok_mergemap merges;
    int32_t byte_id[256];        /* id of each single byte's token, -1 if none */
    uint16_t byte_cp[256];       /* tok_byte_to_cp of each byte */
    int32_t unk_id;
    bool ignore_merges;

    struct tok_added *added;     /* sorted by content length, longest first */
    int n_added;

    enum tok_norm norm;
    struct tok_step *steps;
    int n_steps;
    bool add_prefix_space;

    int32_t *tmpl_pre, *tmpl_post;   /* post-processor template ids around the text */
    int n_tmpl_pre, n_tmpl_post;
    bool has_template;
    bool add_bos;                /* tokenizer_config add_bos_token */
    int32_t bos, eos;
};

/* Byte-level BPE's reversible byte <-> code point mapping (GPT-2). */
uint32_t tok_byte_to_cp(uint8_t b);

/* Decodes one UTF-8 character at s (n bytes available).
 * Returns 1 and *len = its length when valid; 0 when the n bytes are a
 * valid but unfinished prefix; -1 when invalid, *len = the length of the
 * maximal invalid subpart (what one U+FFFD replaces). */
int tok_utf8_next(const uint8_t *s, size_t n, size_t *len);

int32_t tok_strmap_get(const struct tok_strmap *m, char *const *form,
                       const uint32_t *form_len, const char *key, size_t len);
uint64_t tok_hash(const void *p, size_t n);

#endif
