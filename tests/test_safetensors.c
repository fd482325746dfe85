/* test_safetensors.c - dtypes, the safetensors parser on valid files built
 * from random data, and every file of the malformed corpus
 * (tests/data/malformed/MANIFEST) rejected with its status and message. */
#include "harness.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MALFORMED LOOM_TEST_DATA "/malformed"

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------- dtypes */

static void test_dtype_names(void)
{
    static const char *names[] = {"BF16", "F16", "F32", "F64", "I8", "U8", "I16", "U16",
                                  "I32", "U32", "I64", "U64", "BOOL", "F8_E4M3", "F8_E5M2"};
    static const size_t sizes[] = {2, 2, 4, 8, 1, 1, 2, 2, 4, 4, 8, 8, 1, 1, 1};
    loom_dtype dt;

    CHECK(sizeof names / sizeof names[0] == LOOM_DTYPE_COUNT, "name table size");
    for (int i = 0; i < LOOM_DTYPE_COUNT; i++) {
        CHECK(strcmp(loom_dtype_name((loom_dtype)i), names[i]) == 0, "name of %d", i);
        CHECK(loom_dtype_size((loom_dtype)i) == sizes[i], "size of %s", names[i]);
        CHECK(loom_dtype_parse(names[i], &dt) && dt == (loom_dtype)i, "parse %s", names[i]);
    }
    CHECK(!loom_dtype_parse("bf16", &dt), "dtype names are case-sensitive");
    CHECK(!loom_dtype_parse("F4", &dt), "unknown dtype accepted");
    CHECK(!loom_dtype_parse("", &dt), "empty dtype accepted");
    CHECK(loom_dtype_size(LOOM_DTYPE_COUNT) == 0, "size of an out-of-range dtype");
    CHECK(strcmp(loom_arch_name(LOOM_ARCH_QWEN3), "Qwen3ForCausalLM") == 0, "arch name");
    CHECK(strcmp(loom_arch_name(LOOM_ARCH_QWEN2), "Qwen2ForCausalLM") == 0, "arch name");
    CHECK(strcmp(loom_arch_name(LOOM_ARCH_LLAMA), "LlamaForCausalLM") == 0, "arch name");
}

/* The f16 value by its definition, in double arithmetic. */
static double f16_reference(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static bool f16_matches(uint16_t h, float got)
{
    double want = f16_reference(h);
    if (isnan(want))
        return isnan(got) && (signbit(got) != 0) == (h >> 15);
    return (double)got == want && (signbit(got) != 0) == (h >> 15);
}

static void test_f16_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if (!f16_matches((uint16_t)h, loom_f16_to_f32((uint16_t)h)) && bad++ < 5)
            CHECK(0, "f16 0x%04x -> %a, want %a", h, (double)loom_f16_to_f32((uint16_t)h),
                  f16_reference((uint16_t)h));
    CHECK(bad == 0, "%d f16 values wrong", bad);
    CHECK(loom_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest subnormal");
    CHECK(loom_f16_to_f32(0x7bff) == 65504.0f, "largest normal");
    CHECK(isinf(loom_f16_to_f32(0xfc00)) && loom_f16_to_f32(0xfc00) < 0, "-inf");
    /* planted: the checker rejects a wrong value */
    CHECK(!f16_matches(0x3c00, 1.0009765625f), "f16 checker accepted a wrong value");
    CHECK(!f16_matches(0x8000, 0.0f), "f16 checker ignored the sign of zero");
}

/* ------------------------------------------------------- valid files */

struct spec {
    const char *name;
    loom_dtype dtype;
    int32_t ndim;
    int64_t shape[LOOM_ST_MAX_DIMS];
    uint64_t begin, end;
};

static const char *json_dims(const struct spec *s, char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int32_t d = 0; d < s->ndim; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "",
                              (long long)s->shape[d]);
    snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Random tensors of several dtypes (one zero-sized), laid out in order,
 * written to the header in a shuffled order with metadata and padding. */
static int make_specs(struct spec *s, char names[][32], int max)
{
    static const loom_dtype dts[] = {LOOM_DTYPE_BF16, LOOM_DTYPE_F16, LOOM_DTYPE_F32,
                                     LOOM_DTYPE_I32, LOOM_DTYPE_U8, LOOM_DTYPE_F64,
                                     LOOM_DTYPE_BOOL, LOOM_DTYPE_I64, LOOM_DTYPE_F8_E4M3};
    int n = 3 + (int)(rng() % (uint64_t)(max - 3));
    uint64_t pos = 0;

    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        snprintf(names[i], 32, "model.layers.%d.w%llu", i, (unsigned long long)(rng() % 100));
        s[i].name = names[i];
        s[i].dtype = dts[rng() % (sizeof dts / sizeof dts[0])];
        s[i].ndim = (int32_t)(rng() % 4);     /* 0-dim is a scalar */
        for (int32_t d = 0; d < s[i].ndim; d++) {
            s[i].shape[d] = 1 + (int64_t)(rng() % 7);
            numel *= (uint64_t)s[i].shape[d];
        }
        if (i == 1 && s[i].ndim) {            /* one zero-sized tensor */
            s[i].shape[0] = 0;
            numel = 0;
        }
        s[i].begin = pos;
        pos += numel * loom_dtype_size(s[i].dtype);
        s[i].end = pos;
    }
    return n;
}

/* Writes header + data into a malloc'd buffer. */
static uint8_t *build_file(const struct spec *s, int n, const uint8_t *data, uint64_t dsize,
                           uint64_t *size_out)
{
    char *hdr = malloc(16384), dims[128];
    size_t len = 0;
    int order[64];
    uint8_t *file;

    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng() % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    len += (size_t)snprintf(hdr + len, 16384 - len, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int k = 0; k < n; k++) {
        const struct spec *e = &s[order[k]];
        len += (size_t)snprintf(hdr + len, 16384 - len,
                                ", \"%s\": {\"dtype\": \"%s\", \"shape\": %s, "
                                "\"data_offsets\": [%llu, %llu]}",
                                e->name, loom_dtype_name(e->dtype),
                                json_dims(e, dims, sizeof dims),
                                (unsigned long long)e->begin, (unsigned long long)e->end);
    }
    len += (size_t)snprintf(hdr + len, 16384 - len, "}");
    while (len % 8)                 /* the format allows trailing spaces */
        hdr[len++] = ' ';
    *size_out = 8 + len + dsize;
    file = malloc(*size_out);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)len >> (8 * i));
    memcpy(file + 8, hdr, len);
    memcpy(file + 8 + len, data, dsize);
    free(hdr);
    return file;
}

static void check_parsed(const loom_st_file *f, const struct spec *s, int n,
                         const uint8_t *data, uint64_t dsize)
{
    CHECK(f->n_entries == n, "%d entries, want %d", f->n_entries, n);
    CHECK(f->data_size == dsize, "data size %llu, want %llu",
          (unsigned long long)f->data_size, (unsigned long long)dsize);
    if (f->n_entries != n)
        return;
    for (int i = 1; i < n; i++)
        CHECK(f->entries[i - 1].begin <= f->entries[i].begin, "entries not sorted by begin");
    for (int i = 0; i < n; i++) {
        const loom_st_entry *e = loom_st_find(f, s[i].name);
        CHECK(e != NULL, "tensor %s not found", s[i].name);
        if (!e)
            continue;
        CHECK(e->dtype == s[i].dtype && e->ndim == s[i].ndim, "%s: dtype/ndim", s[i].name);
        for (int32_t d = 0; d < s[i].ndim; d++)
            CHECK(e->shape[d] == s[i].shape[d], "%s: dim %d", s[i].name, d);
        CHECK(e->begin == s[i].begin && e->end == s[i].end, "%s: offsets", s[i].name);
        CHECK(memcmp(f->data + e->begin, data + s[i].begin, e->end - e->begin) == 0,
              "%s: bytes differ", s[i].name);
    }
    CHECK(loom_st_find(f, "missing.weight") == NULL, "found a tensor that is not there");
}

static void test_valid_files(void)
{
    char *dir = loom_test_tmpdir();
    char path[4096];

    rng_state = loom_test_seed();
    CHECK(dir != NULL, "tmpdir");
    for (int round = 0; round < 20 && dir; round++) {
        struct spec s[16];
        char names[16][32];
        int n = make_specs(s, names, 16);
        uint64_t dsize = s[n - 1].end, fsize;
        uint8_t *data = malloc(dsize + 1), *file;
        loom_st_file f, g;
        FILE *fp;

        for (uint64_t i = 0; i < dsize; i++)
            data[i] = (uint8_t)(1 + rng() % 255);
        file = build_file(s, n, data, dsize, &fsize);

        CHECK_OK(loom_st_parse("mem.safetensors", file, fsize, &g));
        check_parsed(&g, s, n, data, dsize);
        CHECK(g.map == NULL && g.data == file + 8 + g.header_len, "memory parse pointers");
        loom_st_close(&g);

        snprintf(path, sizeof path, "%s/model-%d.safetensors", dir, round);
        fp = fopen(path, "wb");
        fwrite(file, 1, fsize, fp);
        fclose(fp);
        CHECK_OK(loom_st_open(path, &f));
        check_parsed(&f, s, n, data, dsize);
        CHECK(f.file_size == fsize && strcmp(f.path, path) == 0, "file size / path");
        loom_st_close(&f);
        CHECK(f.entries == NULL && f.map == NULL, "close clears the struct");
        free(file);
        free(data);
    }
    loom_test_rmtree(dir);
    free(dir);
}

/* Boundaries that must be accepted. */
static void test_edge_files(void)
{
    static const uint8_t empty[] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    static const uint8_t padded[] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    loom_st_file f;

    CHECK_OK(loom_st_parse("empty", empty, sizeof empty, &f));
    CHECK(f.n_entries == 0 && f.data_size == 0, "empty file");
    loom_st_close(&f);
    CHECK_OK(loom_st_parse("padded", padded, sizeof padded, &f));
    CHECK(f.header_len == 8, "padded header");
    loom_st_close(&f);
    CHECK(loom_st_open(MALFORMED "/does-not-exist.safetensors", &f) == LOOM_ERR_IO,
          "missing file is an IO error");
    CHECK(strstr(loom_last_error(), "does-not-exist.safetensors") != NULL,
          "IO message names the file: %s", loom_last_error());
}

/* ------------------------------------------------------ the corpus */

static void test_malformed_corpus(void)
{
    static loom_test_expect x[128];
    int n = loom_test_read_manifest(MALFORMED "/MANIFEST", x, 128), checked = 0;
    char path[512], why[1400];

    CHECK(n > 0, "cannot read %s/MANIFEST", MALFORMED);
    for (int i = 0; i < n; i++) {
        loom_st_file f;
        loom_status st;

        if (!strstr(x[i].file, ".safetensors"))
            continue;
        snprintf(path, sizeof path, "%s/%s", MALFORMED, x[i].file);
        memset(&f, 0xab, sizeof f);
        st = loom_st_open(path, &f);
        CHECK(loom_test_rejection_matches(&x[i], path, st, loom_last_error(), why, sizeof why),
              "%s: %s", x[i].file, why);
        CHECK(f.n_entries == (int32_t)0xabababab, "%s: output written on failure", x[i].file);
        checked++;
    }
    CHECK(checked >= 24, "only %d malformed safetensors files", checked);
    fprintf(stderr, "  %d malformed safetensors files rejected as expected\n", checked);
}

/* Planted: the checker must report a mismatch for a wrong expectation. */
static void test_checker_planted(void)
{
    loom_test_expect right = {"st_gap.safetensors", "LOOM_ERR_FORMAT", "(gap)"};
    loom_test_expect wrong_status = right, wrong_text = right;
    char path[512], msg[1024], why[1400];
    loom_st_file f;
    loom_status st;

    snprintf(wrong_status.status, sizeof wrong_status.status, "LOOM_ERR_UNSUPPORTED");
    snprintf(wrong_text.substring, sizeof wrong_text.substring, "(overlap)");
    snprintf(path, sizeof path, "%s/%s", MALFORMED, right.file);
    st = loom_st_open(path, &f);
    snprintf(msg, sizeof msg, "%s", loom_last_error());
    CHECK(loom_test_rejection_matches(&right, path, st, msg, why, sizeof why), "right: %s", why);
    CHECK(!loom_test_rejection_matches(&wrong_status, path, st, msg, why, sizeof why),
          "checker missed a wrong status");
    CHECK(!loom_test_rejection_matches(&wrong_text, path, st, msg, why, sizeof why),
          "checker missed a wrong message");
    CHECK(!loom_test_rejection_matches(&right, "/other/path", st, msg, why, sizeof why),
          "checker missed a message without the path");
    CHECK(!loom_test_rejection_matches(&right, path, LOOM_OK, "", why, sizeof why),
          "checker missed an accepted file");
}

TEST_MAIN(TEST(test_dtype_names), TEST(test_f16_exhaustive), TEST(test_valid_files),
          TEST(test_edge_files), TEST(test_malformed_corpus), TEST(test_checker_planted))
