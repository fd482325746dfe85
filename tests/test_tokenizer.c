/* test_tokenizer.c - the C tokenizer against Hugging Face's tokenizers.
 *
 * tests/tokenizer/gen_fixtures.py (run here with python3, seeded by
 * loom_test_seed()) trains Qwen-style, Llama-3-style and GPT-2-style
 * byte-level BPE tokenizers with the reference package and writes the ids
 * and texts it gives for corpus lines in many scripts, emoji, code and
 * random text; every encode must give identical ids, every decode (whole
 * and streamed one id at a time) identical text. Then the errors: invalid
 * UTF-8, unsupported model types, malformed files. */
#include "harness.h"
#include "tokenizer/tokenizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *fixtures;          /* tmpdir with the generated tokenizers */

/* ---------------------------------------------------------------- helpers */

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f)
        return false;
    fputs(text, f);
    return fclose(f) == 0;
}

static size_t unhex(const char *h, char *out)
{
    size_t n = 0;

    if (!strcmp(h, "-"))
        return 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

/* Every byte sequence the streaming decoder emits must be whole UTF-8. */
static bool valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        size_t need = p[i] < 0x80 ? 1 : p[i] >= 0xF0 ? 4 : p[i] >= 0xE0 ? 3 : 2;
        if (p[i] >= 0x80 && p[i] < 0xC2)
            return false;
        if (i + need > n)
            return false;
        for (size_t k = 1; k < need; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
        i += need;
    }
    return true;
}

/* Index of the first difference, or -1 when equal. */
static int32_t ids_diff(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    for (int32_t i = 0; i < na && i < nb; i++)
        if (a[i] != b[i])
            return i;
    return na == nb ? -1 : (na < nb ? na : nb);
}

/* Streams ids through a loom_detok; returns the concatenated text
 * (malloc'ed) or NULL on failure, and fails any chunk that is not whole
 * UTF-8. */
static char *stream(const loom_tokenizer *tok, const int32_t *ids, int32_t n, bool skip,
                    size_t *len)
{
    loom_detok *dt = NULL;
    char *all = malloc(1);
    const char *s;
    size_t l;

    *len = 0;
    CHECK_OK(loom_detok_new(tok, skip, &dt));
    if (!dt || !all)
        goto fail;
    for (int32_t i = 0; i <= n; i++) {
        loom_status st = i < n ? loom_detok_push(dt, ids[i], &s, &l)
                               : loom_detok_flush(dt, &s, &l);
        char *p;
        CHECK(st == LOOM_OK, "detok: %s", loom_last_error());
        if (st)
            goto fail;
        CHECK(valid_utf8(s, l), "detok: chunk %d is not whole UTF-8", i);
        if (!(p = realloc(all, *len + l + 1)))
            goto fail;
        all = p;
        memcpy(all + *len, s, l);
        *len += l;
    }
    loom_detok_free(dt);
    return all;
fail:
    loom_detok_free(dt);
    free(all);
    return NULL;
}

static void show_text(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): ", what, n);
    for (size_t i = 0; i < n && i < 160; i++)
        fprintf(stderr, (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? "%c" :
                        "\\x%02x", (unsigned char)s[i]);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------------- reference */

struct counts {
    int enc, enc_bad, dec, dec_bad, round, round_bad;
};

static void check_encode(const loom_tokenizer *tok, const char *name, int line, bool add,
                         const char *text, size_t len, const int32_t *want, int32_t nwant,
                         bool round_trip, struct counts *c)
{
    int32_t *ids = NULL, n = 0, d;
    char *back = NULL;
    size_t blen;

    c->enc++;
    CHECK_OK(loom_tokenizer_encode(tok, text, len, add, &ids, &n));
    d = ids_diff(ids, n, want, nwant);
    if (d >= 0 && ++c->enc_bad <= 5) {
        CHECK(0, "%s: cases line %d: ids differ at %d: loom %d, tokenizers %d (n %d vs %d)",
              name, line, d, d < n ? ids[d] : -1, d < nwant ? want[d] : -1, n, nwant);
        show_text("text", text, len);
    }
    if (round_trip && ids) {
        c->round++;
        CHECK_OK(loom_tokenizer_decode(tok, ids, n, false, &back, &blen));
        if (back && (blen != len || memcmp(back, text, len)) && ++c->round_bad <= 5)
            CHECK(0, "%s: cases line %d: decode(encode(x)) != x", name, line);
        free(back);
        /* streamed decode of a real sequence equals the whole decode */
        back = stream(tok, ids, n, false, &blen);
        if (back && (blen != len || memcmp(back, text, len)) && ++c->round_bad <= 5)
            CHECK(0, "%s: cases line %d: streamed decode != x", name, line);
        free(back);
    }
    free(ids);
}

static void check_decode(const loom_tokenizer *tok, const char *name, int line, bool skip,
                         const char *want, size_t wlen, const int32_t *ids, int32_t n,
                         struct counts *c)
{
    char *text = NULL, *streamed;
    size_t len = 0, slen = 0;

    c->dec++;
    CHECK_OK(loom_tokenizer_decode(tok, ids, n, skip, &text, &len));
    streamed = stream(tok, ids, n, skip, &slen);
    if (text && (len != wlen || memcmp(text, want, len)) && ++c->dec_bad <= 5) {
        CHECK(0, "%s: cases line %d: decode differs from tokenizers", name, line);
        show_text("loom", text, len);
        show_text("tokenizers", want, wlen);
    }
    if (streamed && text && (slen != len || memcmp(streamed, text, len)) && ++c->dec_bad <= 5)
        CHECK(0, "%s: cases line %d: streamed decode differs from decode", name, line);
    free(text);
    free(streamed);
}

static void run_cases(const char *name)
{
    char path[4096], *line = NULL, *text = NULL, kind;
    size_t cap = 0;
    int32_t *ids = NULL;
    loom_tokenizer *tok = NULL;
    struct counts c = {0};
    int lineno = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", fixtures, name);
    CHECK_OK(loom_tokenizer_load(path, &tok));
    snprintf(path, sizeof path, "%s/%s/cases.txt", fixtures, name);
    f = fopen(path, "r");
    CHECK(f != NULL, "%s: cannot open", path);
    if (!tok || !f)
        goto out;
    while (getline(&line, &cap, f) > 0) {
        char *save, *hex;
        int flag, n, bos, eos;
        size_t len;
        lineno++;
        if (sscanf(line, "B %d %d", &bos, &eos) == 2) {
            CHECK(loom_tokenizer_bos(tok) == bos && loom_tokenizer_eos(tok) == eos,
                  "%s: bos/eos %d/%d, want %d/%d", name, loom_tokenizer_bos(tok),
                  loom_tokenizer_eos(tok), bos, eos);
            continue;
        }
        kind = *strtok_r(line, " \n", &save);
        flag = atoi(strtok_r(NULL, " \n", &save));
        hex = strtok_r(NULL, " \n", &save);
        n = atoi(strtok_r(NULL, " \n", &save));
        text = realloc(text, strlen(hex) / 2 + 1);
        ids = realloc(ids, (size_t)(n + 1) * sizeof *ids);
        len = unhex(hex, text);
        for (int i = 0; i < n; i++)
            ids[i] = atoi(strtok_r(NULL, " \n", &save));
        if (kind == 'E')
            check_encode(tok, name, lineno, flag, text, len, ids, n,
                         !flag && strncmp(name, "qwen", 4) && !memchr(text, '<', len) &&
                         !memchr(text, '[', len) && (strcmp(name, "gpt2") || len == 0 ||
                                                     text[0] == ' '), &c);
        else
            check_decode(tok, name, lineno, flag, text, len, ids, n, &c);
    }
    fprintf(stderr, "  %s: %d encodes (%d differ), %d decodes (%d differ), %d round trips "
            "(%d differ)\n", name, c.enc, c.enc_bad, c.dec, c.dec_bad, c.round, c.round_bad);
    CHECK(c.enc > 3000 && c.dec > 500 && (c.round > 500 || strcmp(name, "llama3")),
          "%s: too few cases", name);
out:
    if (f)
        fclose(f);
    free(line);
    free(text);
    free(ids);
    loom_tokenizer_free(tok);
}

static void generate(void)
{
    char cmd[8192];
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    /* LOOM_TOK_LINES: random lines per tokenizer (3000; more for a soak) */
    const char *lines = getenv("LOOM_TOK_LINES") ? getenv("LOOM_TOK_LINES") : "3000";
    int rc;

    fixtures = loom_test_tmpdir();
    snprintf(cmd, sizeof cmd, "%s '%s/tests/tokenizer/gen_fixtures.py' '%s' %llu %d", py,
             LOOM_SOURCE_DIR, fixtures, (unsigned long long)(loom_test_seed() % 1000000007),
             atoi(lines) > 0 ? atoi(lines) : 3000);
    rc = system(cmd);
    CHECK(rc == 0, "%s failed (rc %d): the reference needs `pip install -r "
          "tests/tokenizer/requirements.txt` (scripts/setup.sh does it)", cmd, rc);
}

static void test_reference_qwen(void)
{
    if (!fixtures)
        generate();
    run_cases("qwen");
}

static void test_reference_llama3(void)
{
    if (!fixtures)
        generate();
    run_cases("llama3");
}

/* The real Qwen3 tokenizer.json (tests/tokenizer/qwen3, 151669 ids). */
static void test_reference_qwen3_real(void)
{
    if (!fixtures)
        generate();
    run_cases("qwen3");
}

static void test_reference_gpt2(void)
{
    if (!fixtures)
        generate();
    run_cases("gpt2");
}

/* The checker itself: a planted one-id difference and a planted broken
 * chunk must be seen. */
static void test_checker_catches_planted_bug(void)
{
    int32_t a[4] = {5, 6, 7, 8}, b[4] = {5, 6, 9, 8};

    CHECK(ids_diff(a, 4, a, 4) == -1, "ids_diff: equal arrays differ");
    CHECK(ids_diff(a, 4, b, 4) == 2, "ids_diff missed a planted difference");
    CHECK(ids_diff(a, 4, a, 3) == 3, "ids_diff missed a length difference");
    CHECK(!valid_utf8("\xf0\x9f\x98", 3), "valid_utf8 accepted a split emoji");
    CHECK(valid_utf8("\xf0\x9f\x98\x80", 4), "valid_utf8 refused an emoji");
}

/* Bytes of one character pushed one token at a time: nothing comes out
 * until its last byte, then the whole character. */
static void test_stream_holds_split_chars(void)
{
    loom_tokenizer *tok = NULL;
    loom_detok *dt = NULL;
    char path[4096];
    const char *s;
    size_t l;
    /* byte-level forms of F0 9F 98 80 (U+1F600) and of 'a' */
    const char *forms[] = {"ð", "Ł", "ĺ", "Ģ", "a"};
    const size_t want_len[] = {0, 0, 0, 4, 1};

    if (!fixtures)
        generate();
    snprintf(path, sizeof path, "%s/llama3", fixtures);
    CHECK_OK(loom_tokenizer_load(path, &tok));
    if (!tok)
        return;
    CHECK_OK(loom_detok_new(tok, false, &dt));
    for (int i = 0; dt && i < 5; i++) {
        int32_t id = loom_tokenizer_token_id(tok, forms[i]);
        CHECK(id >= 0, "no byte token '%s'", forms[i]);
        CHECK_OK(loom_detok_push(dt, id, &s, &l));
        CHECK(l == want_len[i], "push %d emitted %zu bytes, want %zu", i, l, want_len[i]);
        if (i == 3)
            CHECK(l == 4 && !memcmp(s, "\xf0\x9f\x98\x80", 4), "emoji not emitted whole");
    }
    /* a dangling lead byte is flushed as U+FFFD */
    if (dt) {
        CHECK_OK(loom_detok_push(dt, loom_tokenizer_token_id(tok, "ð"), &s, &l));
        CHECK(l == 0, "lead byte emitted early");
        CHECK_OK(loom_detok_flush(dt, &s, &l));
        CHECK(l == 3 && !memcmp(s, "\xef\xbf\xbd", 3), "flush did not give U+FFFD");
    }
    loom_detok_free(dt);
    loom_tokenizer_free(tok);
}

static void expect_encode_error(const loom_tokenizer *tok, const char *text, size_t len,
                                const char *offset)
{
    int32_t *ids = (int32_t *)0x1, n = -7;
    loom_status st = loom_tokenizer_encode(tok, text, len, false, &ids, &n);

    CHECK(st == LOOM_ERR_INVALID_ARGUMENT, "invalid UTF-8 accepted (%s)", loom_status_string(st));
    CHECK(strstr(loom_last_error(), offset) != NULL, "message '%s' lacks '%s'",
          loom_last_error(), offset);
    CHECK(ids == (int32_t *)0x1 && n == -7, "outputs written on failure");
}

static void test_invalid_utf8(void)
{
    loom_tokenizer *tok = NULL;
    char path[4096];

    if (!fixtures)
        generate();
    snprintf(path, sizeof path, "%s/qwen", fixtures);
    CHECK_OK(loom_tokenizer_load(path, &tok));
    if (!tok)
        return;
    expect_encode_error(tok, "ab\xff", 3, "offset 2");
    expect_encode_error(tok, "abc\xc0\xaf", 5, "offset 3");          /* overlong */
    expect_encode_error(tok, "x\xed\xa0\x80", 4, "offset 1");        /* surrogate */
    expect_encode_error(tok, "hello \xe4\xb8", 8, "offset 6");       /* truncated */
    expect_encode_error(tok, "\x80", 1, "offset 0");                 /* lone continuation */
    expect_encode_error(tok, "\xf4\x90\x80\x80", 4, "offset 0");     /* > U+10FFFF */
    loom_tokenizer_free(tok);
}

/* Writes dir/tokenizer.json with text and expects status and a message
 * containing what. */
static void expect_load_error(const char *text, loom_status want, const char *what)
{
    char *dir = loom_test_tmpdir(), path[4096];
    loom_tokenizer *tok = (loom_tokenizer *)0x1;
    loom_status st;

    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(write_file(path, text), "cannot write %s", path);
    st = loom_tokenizer_load(dir, &tok);
    CHECK(st == want, "load gave %s, want %s (%s)", loom_status_string(st),
          loom_status_string(want), loom_last_error());
    CHECK(strstr(loom_last_error(), what) && strstr(loom_last_error(), "tokenizer.json"),
          "message '%s' lacks '%s' or the file name", loom_last_error(), what);
    CHECK(tok == (loom_tokenizer *)0x1, "output written on failure");
    loom_test_rmtree(dir);
    free(dir);
}

#define BL_PRE "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, " \
               "\"decoder\": {\"type\": \"ByteLevel\"}, "

static void test_bad_files(void)
{
    loom_tokenizer *tok = (loom_tokenizer *)0x1;

    CHECK(loom_tokenizer_load("/nonexistent/model", &tok) == LOOM_ERR_IO, "missing dir");
    CHECK(strstr(loom_last_error(), "/nonexistent/model/tokenizer.json") != NULL,
          "message '%s' lacks the path", loom_last_error());
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,", LOOM_ERR_FORMAT,
                      "line 1");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                      LOOM_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}",
                      LOOM_ERR_UNSUPPORTED, "Unigram");
    expect_load_error("{" BL_PRE "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
                      "\"b\": 1}, \"merges\": [\"a c\"]}}", LOOM_ERR_FORMAT, "'c'");
    expect_load_error("{" BL_PRE "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
                      "\"b\": 0}, \"merges\": []}}", LOOM_ERR_FORMAT, "id 0");
    expect_load_error("{" BL_PRE "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}}}",
                      LOOM_ERR_FORMAT, "'a'");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"decoder\": null, "
                      "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      LOOM_ERR_UNSUPPORTED, "Metaspace");
    expect_load_error("{\"normalizer\": {\"type\": \"Lowercase\"}, " BL_PRE "\"model\": "
                      "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      LOOM_ERR_UNSUPPORTED, "Lowercase");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{"
                      "\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
                      "\"Isolated\"}, {\"type\": \"ByteLevel\"}]}, \"decoder\": {\"type\": "
                      "\"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                      "\"merges\": []}}", LOOM_ERR_UNSUPPORTED, "regex");
    expect_load_error("[1, 2]", LOOM_ERR_FORMAT, "object");
}

/* A loaded tokenizer is read-only: threads encoding at once get the ids
 * one thread gets. */
struct enc_job {
    const loom_tokenizer *tok;
    const char *text;
    size_t len;
    int32_t *ids;
    int32_t n;
    loom_status st;
};

static void *enc_thread(void *arg)
{
    struct enc_job *j = arg;

    for (int r = 0; r < 20 && !j->st; r++) {
        free(j->ids);
        j->ids = NULL;
        j->st = loom_tokenizer_encode(j->tok, j->text, j->len, true, &j->ids, &j->n);
    }
    return NULL;
}

static void test_threads(void)
{
    static const char text[] = "Hello 世界! Привет, мир. 👨‍👩‍👧‍👦 <|im_start|>user\n"
                               "def f(x):\n    return x ** 2  # 平方\n<|im_end|>";
    struct enc_job jobs[4];
    pthread_t th[4];
    loom_tokenizer *tok = NULL;
    char path[4096];

    if (!fixtures)
        generate();
    snprintf(path, sizeof path, "%s/qwen", fixtures);
    CHECK_OK(loom_tokenizer_load(path, &tok));
    if (!tok)
        return;
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct enc_job){tok, text, sizeof text - 1, NULL, 0, LOOM_OK};
        CHECK(pthread_create(&th[i], NULL, enc_thread, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == LOOM_OK && jobs[i].n > 10, "thread %d: %s", i,
              loom_status_string(jobs[i].st));
        CHECK(ids_diff(jobs[i].ids, jobs[i].n, jobs[0].ids, jobs[0].n) == -1,
              "thread %d got other ids", i);
    }
    for (int i = 0; i < 4; i++)
        free(jobs[i].ids);
    loom_tokenizer_free(tok);
}

static void test_zz_cleanup(void)
{
    if (fixtures && !getenv("LOOM_KEEP_TMP"))
        loom_test_rmtree(fixtures);
    free(fixtures);
    fixtures = NULL;
}

TEST_MAIN(TEST(test_checker_catches_planted_bug), TEST(test_reference_qwen),
          TEST(test_reference_llama3), TEST(test_reference_gpt2), TEST(test_reference_qwen3_real),
          TEST(test_stream_holds_split_chars), TEST(test_invalid_utf8), TEST(test_bad_files), TEST(test_threads),
          TEST(test_zz_cleanup))
