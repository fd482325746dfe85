/* test_model.c - presets, parameter counts, the weight generator, and the
 * save -> load round trip (single file, shards, F32 and F16 checkpoints). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "model/model.h"

/* ------------------------------------------------------------- helpers */

/* Sums the element counts of every tensor the config requires: an
 * independent count (through the tensor list, not info.c's formula). */
static loom_status count_numel(void *user, loom_tensor *slot, const char *hf_name,
                               int32_t ndim, int64_t rows, int64_t cols)
{
    (void)slot, (void)hf_name;
    *(uint64_t *)user += (uint64_t)(ndim == 2 ? rows * cols : rows);
    return LOOM_OK;
}

static uint64_t visited_params(const loom_config *cfg)
{
    loom_weights w;
    uint64_t n = 0;

    if (loom_weights_init_generated(cfg, 1, &w) != LOOM_OK)
        return 0;
    loom_weights_visit(cfg, &w, count_numel, &n);
    loom_weights_free(&w);
    return n;
}

/* ------------------------------------------------------------- presets */

static void test_presets_validate(void)
{
    const char *const *names = loom_preset_names();
    int n = 0;

    for (; names[n]; n++) {
        loom_config cfg;
        CHECK(loom_preset_config(names[n], &cfg), "preset %s unknown", names[n]);
        CHECK_OK(loom_config_validate(names[n], &cfg));
        CHECK(loom_model_param_count(&cfg) == visited_params(&cfg),
              "%s: param count %llu, tensors sum to %llu", names[n],
              (unsigned long long)loom_model_param_count(&cfg),
              (unsigned long long)visited_params(&cfg));
    }
    CHECK(n == 7, "%d presets", n);
    CHECK(!loom_preset_config("qwen3-0.7b", &(loom_config){0}), "unknown preset accepted");
}

/* Exact counts worked out by hand from the HF shapes (tied embeddings
 * once): 0.6B is 596.0M (440.5M without embeddings), 8B 8.19B, 1B 1.24B. */
static void test_param_counts(void)
{
    static const struct {
        const char *name;
        uint64_t params, bytes;
    } want[] = {
        {"qwen3-0.6b", 596049920ull, 2 * 596049920ull},
        {"qwen3-8b", 8190735360ull, 2 * (8190735360ull - 151936ull * 4096)},
        {"llama-3.2-1b", 1235814400ull, 2 * 1235814400ull},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        loom_config cfg;
        CHECK(loom_preset_config(want[i].name, &cfg), "%s", want[i].name);
        CHECK(loom_model_param_count(&cfg) == want[i].params, "%s: %llu params, want %llu",
              want[i].name, (unsigned long long)loom_model_param_count(&cfg),
              (unsigned long long)want[i].params);
        CHECK(loom_model_bytes_per_step(&cfg) == want[i].bytes, "%s: %llu bytes, want %llu",
              want[i].name, (unsigned long long)loom_model_bytes_per_step(&cfg),
              (unsigned long long)want[i].bytes);
    }
}

static void test_preset_shapes(void)
{
    loom_config c;

    CHECK(loom_preset_config("llama-3.2-1b", &c), "llama-3.2-1b");
    CHECK(c.rope_llama3 && c.rope_factor == 32.0f && c.rope_original_max_position == 8192 &&
          c.n_eos == 3 && c.eos_token_ids[2] == 128009 && c.tie_word_embeddings &&
          c.head_dim == 64, "llama-3.2-1b config");
    CHECK(loom_preset_config("qwen3-8b", &c) && !c.tie_word_embeddings && c.qk_norm &&
          c.n_layers == 36 && c.hidden_size == 4096, "qwen3-8b config");
    CHECK(loom_preset_config("qwen2-tiny", &c) && c.attention_bias && !c.qk_norm &&
          !c.tie_word_embeddings, "qwen2-tiny config");
    CHECK(loom_preset_config("llama-tiny", &c) && c.rope_llama3 &&
          c.rope_original_max_position == 64 && c.max_position_embeddings == 512,
          "llama-tiny config");
}

static void test_from_preset(void)
{
    loom_model_params p = loom_model_default_params();
    loom_model *m = NULL;
    loom_model_info info;

    CHECK(p.seed == 1234 && p.progress, "default params");
    CHECK_OK(loom_model_from_preset("qwen3-8b", p, &m));
    CHECK_OK(loom_model_get_info(m, &info));
    CHECK(info.max_context == 40960 && info.n_layers == 36 && !info.tied_embeddings &&
          info.n_params == 8190735360ull && strcmp(info.dtype, "bf16") == 0 &&
          strcmp(info.architecture, "Qwen3ForCausalLM") == 0, "qwen3-8b info");
    CHECK(m->w.layers[35].w_down.shape[0] == 4096 && m->w.layers[35].w_down.shape[1] == 12288,
          "w_down shape");
    CHECK(strcmp(m->w.lm_head.name, "lm_head.weight") == 0, "lm_head name");
    loom_model_free(m);

    m = NULL;
    p.max_context = 100;
    CHECK_OK(loom_model_from_preset("qwen3-tiny", p, &m));
    CHECK(m && m->max_context == 100, "max_context from params");
    CHECK(m && strcmp(m->w.lm_head.name, "model.embed_tokens.weight") == 0,
          "tied lm_head is the embedding");
    loom_model_free(m);

    m = NULL;
    p.max_context = 513;
    CHECK(loom_model_from_preset("qwen3-tiny", p, &m) == LOOM_ERR_LIMIT && !m,
          "max_context over the limit accepted");
    CHECK(strstr(loom_last_error(), "513"), "message: %s", loom_last_error());
    CHECK(loom_model_from_preset("gpt-5", p, &m) != LOOM_OK && !m, "unknown preset accepted");
    CHECK(strstr(loom_last_error(), "gpt-5"), "message: %s", loom_last_error());
}

/* ----------------------------------------------------------- generator */

/* The generator exactly as tensor.c's comment states it (the CUDA port's
 * specification), written again here. */
static uint64_t ref_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint16_t ref_gen(loom_gen_kind kind, uint64_t seed, uint64_t uid, uint64_t idx)
{
    const float k = 0.02f / (65536.0f * sqrtf(1.0f / 3.0f));
    uint64_t base = ref_mix(seed ^ ref_mix(uid));
    uint64_t h = ref_mix(base + (idx + 1) * 0x9E3779B97F4A7C15ull);
    uint32_t s = (uint32_t)(h & 0xffff) + (uint32_t)((h >> 16) & 0xffff) +
                 (uint32_t)((h >> 32) & 0xffff) + (uint32_t)(h >> 48);
    volatile float n = (float)((int32_t)s - 131070) * k;
    volatile float one_n = 1.0f + n;
    return loom_f32_to_bf16(kind == LOOM_GEN_NEAR_ONE ? one_n : n);
}

static void test_gen_matches_spec(void)
{
    uint64_t r = loom_test_seed();
    int bad = 0;

    for (int i = 0; i < 200000; i++) {
        uint64_t seed = ref_mix(r + 3 * (uint64_t)i), uid = ref_mix(seed), idx = uid >> 20;
        loom_gen_kind kind = i & 1 ? LOOM_GEN_NEAR_ONE : LOOM_GEN_NORMAL;
        if (loom_gen_value_bf16(kind, seed, uid, idx) != ref_gen(kind, seed, uid, idx))
            bad++;
    }
    CHECK(bad == 0, "%d of 200000 generated values differ from the specification", bad);
    CHECK(loom_fnv1a("") == 0xcbf29ce484222325ull && loom_fnv1a("a") == 0xaf63dc4c8601ec8cull,
          "fnv1a test vectors");
}

typedef struct stats {
    double mean, std, max_abs_dev;
    int nan;
} stats;

static stats stats_of(const float *x, int n, double center)
{
    stats s = {0};
    double sum = 0, sq = 0;

    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            s.nan++;
        sum += x[i];
        if (fabs(x[i] - center) > s.max_abs_dev)
            s.max_abs_dev = fabs(x[i] - center);
    }
    s.mean = sum / n;
    for (int i = 0; i < n; i++)
        sq += (x[i] - s.mean) * (x[i] - s.mean);
    s.std = sqrt(sq / (n - 1));
    return s;
}

/* Mean within 1e-3 of center, std within 5% of 0.02, range +-0.07. */
static bool stats_ok(stats s, double center)
{
    return !s.nan && fabs(s.mean - center) < 1e-3 && fabs(s.std - 0.02) < 0.001 &&
           s.max_abs_dev < 0.0705;
}

static void test_gen_stats(void)
{
    enum { N = 1000000 };
    float *x = malloc(N * sizeof *x);
    uint16_t *b = malloc(N * sizeof *b);
    loom_tensor t;
    stats s;
    int same = 0;

    memset(&t, 0, sizeof t);
    t.ndim = 2;
    t.shape[0] = 1000;
    t.shape[1] = N / 1000;
    t.gen_kind = LOOM_GEN_NORMAL;
    t.gen_seed = loom_test_seed();
    t.gen_uid = loom_fnv1a("model.layers.3.mlp.up_proj.weight");
    loom_tensor_read_f32(&t, 0, N, x);
    s = stats_of(x, N, 0.0);
    CHECK(stats_ok(s, 0.0), "NORMAL: mean %g std %g max %g nan %d", s.mean, s.std,
          s.max_abs_dev, s.nan);

    /* The checker rejects a planted wrong scale. */
    for (int i = 0; i < N; i++)
        x[i] *= 1.1f;
    CHECK(!stats_ok(stats_of(x, N, 0.0), 0.0), "stats checker accepts std 0.022");

    /* read_bf16 at an offset agrees with read_f32 and with single values. */
    loom_tensor_read_f32(&t, 0, N, x);
    loom_tensor_read_bf16(&t, 777, N - 777, b);
    for (int i = 0; i < N - 777; i++)
        same += loom_bf16_to_f32(b[i]) == x[i + 777] &&
                b[i] == loom_gen_value_bf16(LOOM_GEN_NORMAL, t.gen_seed, t.gen_uid,
                                            (uint64_t)i + 777);
    CHECK(same == N - 777, "%d of %d offset reads agree", same, N - 777);

    /* Another seed gives other values. */
    t.gen_seed++;
    loom_tensor_read_bf16(&t, 0, N, b);
    same = 0;
    for (int i = 0; i < N; i++)
        same += loom_bf16_to_f32(b[i]) == x[i];
    CHECK(same < N / 20, "seed+1 repeats %d of %d values", same, N);

    t.gen_kind = LOOM_GEN_NEAR_ONE;
    loom_tensor_read_f32(&t, 0, N, x);
    s = stats_of(x, N, 1.0);
    CHECK(stats_ok(s, 1.0), "NEAR_ONE: mean %g std %g max %g nan %d", s.mean, s.std,
          s.max_abs_dev, s.nan);
    free(x);
    free(b);
}

/* ------------------------------------------------------------- round trip */

/* The tensors a model's config requires, in loom_weights_visit order. */
typedef struct tensor_list {
    const loom_tensor *t[512];
    int n;
} tensor_list;

static loom_status list_slot(void *user, loom_tensor *slot, const char *hf_name,
                             int32_t ndim, int64_t rows, int64_t cols)
{
    tensor_list *l = user;

    (void)hf_name, (void)ndim, (void)rows, (void)cols;
    if (l->n < 512)
        l->t[l->n++] = slot;
    return LOOM_OK;
}

static void list_tensors(const loom_model *m, tensor_list *l)
{
    l->n = 0;
    loom_weights_visit(&m->cfg, (loom_weights *)&m->w, list_slot, l);   /* read only */
    if (l->n < 512)
        l->t[l->n++] = &m->w.lm_head;   /* tied: the embedding's view */
}

static bool same_bf16(const loom_tensor *a, const loom_tensor *b)
{
    int64_t n = loom_tensor_numel(a);
    uint16_t *x = malloc((size_t)n * 2), *y = malloc((size_t)n * 2);
    bool eq = n > 0 && n == loom_tensor_numel(b) && a->ndim == b->ndim &&
              strcmp(a->name, b->name) == 0;

    if (eq) {
        loom_tensor_read_bf16(a, 0, n, x);
        loom_tensor_read_bf16(b, 0, n, y);
        eq = memcmp(x, y, (size_t)n * 2) == 0;
    }
    free(x);
    free(y);
    return eq;
}

/* Number of tensors of a whose bf16 values differ from b's; *first names
 * the first. */
static int mismatches(const loom_model *a, const loom_model *b, const char **first)
{
    static tensor_list la, lb;
    int bad = 0;

    list_tensors(a, &la);
    list_tensors(b, &lb);
    *first = "(count)";
    if (la.n != lb.n)
        return la.n > lb.n ? la.n : lb.n;
    for (int i = 0; i < la.n; i++) {
        if (!same_bf16(la.t[i], lb.t[i]) && !bad++)
            *first = la.t[i]->name;
    }
    return bad;
}

/* Files in dir whose names end with suffix (or contain it, if anywhere). */
static int count_files(const char *dir, const char *suffix, bool anywhere)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t k = strlen(suffix);
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (anywhere ? strstr(e->d_name, suffix) != NULL
                     : len >= k && strcmp(e->d_name + len - k, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void roundtrip(const char *preset, uint64_t shard_bytes)
{
    loom_model_params p = loom_model_default_params();
    loom_model *a = NULL, *b = NULL, *other = NULL;
    char *dir = loom_test_tmpdir();
    char sub[4200];
    const char *first = "";
    int bad;

    p.seed = loom_test_seed();
    p.progress = false;
    snprintf(sub, sizeof sub, "%s/out/%s", dir, preset);   /* save creates dirs */
    CHECK_OK(loom_model_from_preset(preset, p, &a));
    CHECK_OK(loom_model_save(a, sub, shard_bytes));
    CHECK_OK(loom_model_load(sub, p, &b));
    if (!a || !b)
        goto out;
    bad = mismatches(a, b, &first);
    CHECK(bad == 0, "%s: %d tensors differ after the round trip, first %s", preset, bad,
          first);
    CHECK(b->cfg.n_layers == a->cfg.n_layers && b->cfg.arch == a->cfg.arch &&
          b->cfg.tie_word_embeddings == a->cfg.tie_word_embeddings &&
          b->cfg.rope_llama3 == a->cfg.rope_llama3 &&
          b->cfg.attention_bias == a->cfg.attention_bias, "%s: config differs", preset);
    if (a->cfg.tie_word_embeddings)
        CHECK(b->w.lm_head.data == b->w.embed.data, "%s: tied lm_head not the embedding",
              preset);
    if (shard_bytes) {
        CHECK(b->n_files > 1 && count_files(sub, "index.json", false) == 1 &&
              count_files(sub, ".safetensors", false) == b->n_files,
              "%s: %d shards", preset, b->n_files);
    } else {
        CHECK(b->n_files == 1 && count_files(sub, ".safetensors", false) == 1 &&
              count_files(sub, "index.json", false) == 0, "%s: not one file", preset);
    }
    CHECK(count_files(sub, ".tmp", true) == 0, "%s: temporaries left", preset);

    /* The comparison is not blind: another seed must differ everywhere. */
    p.seed++;
    CHECK_OK(loom_model_from_preset(preset, p, &other));
    if (other) {
        tensor_list l;
        list_tensors(b, &l);
        bad = mismatches(other, b, &first);
        CHECK(bad == l.n, "%s: another seed matches in %d of %d tensors", preset,
              l.n - bad, l.n);
    }
out:
    loom_model_free(a);
    loom_model_free(b);
    loom_model_free(other);
    loom_test_rmtree(dir);
    free(dir);
}

static void test_roundtrip_single(void)
{
    roundtrip("qwen3-tiny", 0);
    roundtrip("qwen2-tiny", 0);
    roundtrip("llama-tiny", 0);
}

/* 40 KB shards: the tiny models' 64x512 embeddings are 64 KB, so some
 * tensors get a shard of their own and the rest are packed. */
static void test_roundtrip_sharded(void)
{
    roundtrip("qwen3-tiny", 40000);
    roundtrip("qwen2-tiny", 40000);
    roundtrip("llama-tiny", 40000);
}

static void test_save_errors(void)
{
    loom_model_params p = loom_model_default_params();
    loom_model *m = NULL;

    p.progress = false;
    CHECK_OK(loom_model_from_preset("qwen3-tiny", p, &m));
    CHECK(loom_model_save(m, "/dev/null/model", 0) == LOOM_ERR_IO, "save under a file");
    CHECK(strstr(loom_last_error(), "/dev/null"), "message: %s", loom_last_error());
    loom_model_free(m);
}

/* --------------------------------------------------- F32 / F16 checkpoints */

/* Independent f16 decoder for the expected values. */
static float f16_ref(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

/* A random finite f16 in roughly [-2, 2], never zero (normal or subnormal). */
static uint16_t rand_f16(uint64_t *s)
{
    uint64_t r = (*s = ref_mix(*s + 0x9E3779B97F4A7C15ull));
    uint16_t e = (uint16_t)(r % 17), m = (uint16_t)((r >> 8) & 1023);
    if (e == 0 && m == 0)
        m = 1;
    return (uint16_t)(((r >> 20) & 1) << 15 | e << 10 | m);
}

/* Writes a qwen3-tiny checkpoint by hand: dir/config.json from cfg (qwen3-
 * tiny's config, torch_dtype set to dt) and dir/model.safetensors with
 * every tensor in dtype dt, filled from the rand_f16 stream (F32: those
 * values times 1.0001, exact in neither f16 nor bf16; F16: the bits). */
static bool write_ckpt(const char *dir, const loom_config *cfg, loom_dtype dt, uint64_t seed)
{
    loom_model_params p = loom_model_default_params();
    loom_model *m = NULL;
    tensor_list l;
    char path[4200], *json = NULL, hdr[65536];
    size_t esz = dt == LOOM_DTYPE_F32 ? 4 : 2, hn = 0;
    uint64_t off = 0, s = seed;
    loom_config c = *cfg;
    FILE *f;

    p.progress = false;
    if (loom_model_from_preset("qwen3-tiny", p, &m) != LOOM_OK)
        return false;
    m->cfg = c;
    list_tensors(m, &l);
    l.n--;   /* qwen3-tiny is tied: drop the lm_head view */
    hn += (size_t)snprintf(hdr + hn, sizeof hdr - hn, "{");
    for (int i = 0; i < l.n; i++) {
        uint64_t nb = (uint64_t)loom_tensor_numel(l.t[i]) * esz;
        char shape[64];
        if (l.t[i]->ndim == 2)
            snprintf(shape, sizeof shape, "%lld,%lld", (long long)l.t[i]->shape[0],
                     (long long)l.t[i]->shape[1]);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)l.t[i]->shape[0]);
        hn += (size_t)snprintf(hdr + hn, sizeof hdr - hn,
                               "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],"
                               "\"data_offsets\":[%llu,%llu]}",
                               i ? "," : "", l.t[i]->name, loom_dtype_name(dt), shape,
                               (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    hn += (size_t)snprintf(hdr + hn, sizeof hdr - hn, "}");
    while (hn % 8)
        hdr[hn++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f)
        goto fail;
    {
        uint64_t len = hn;   /* little-endian host, like the loader */
        fwrite(&len, 8, 1, f);
        fwrite(hdr, 1, hn, f);
    }
    for (uint64_t i = 0; i < off / esz; i++) {
        if (dt == LOOM_DTYPE_F32) {
            uint16_t h = rand_f16(&s);
            float v = f16_ref(h) * 1.0001f;   /* not bf16- or f16-exact */
            fwrite(&v, 4, 1, f);
        } else {
            uint16_t h = rand_f16(&s);
            fwrite(&h, 2, 1, f);
        }
    }
    fclose(f);
    loom_model_free(m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (loom_config_to_json(&c, &json) != LOOM_OK)
        return false;
    f = fopen(path, "wb");
    if (f) {
        fputs(json, f);
        fclose(f);
    }
    free(json);
    return f != NULL;
fail:
    loom_model_free(m);
    return false;
}

/* Loads the checkpoint and checks every element against the bytes written:
 * read_f32 exact, read_bf16 the rounding of it. */
static void check_ckpt_values(loom_dtype dt)
{
    loom_model_params p = loom_model_default_params();
    loom_config cfg;
    loom_model *m = NULL;
    char *dir = loom_test_tmpdir();
    uint64_t seed = loom_test_seed(), s = seed;
    tensor_list l;
    int bad = 0, nan = 0;
    loom_model_info info;

    p.progress = false;
    loom_preset_config("qwen3-tiny", &cfg);
    cfg.torch_dtype = dt;
    CHECK(write_ckpt(dir, &cfg, dt, seed), "writing the %s checkpoint", loom_dtype_name(dt));
    CHECK_OK(loom_model_load(dir, p, &m));
    if (!m)
        goto out;
    CHECK_OK(loom_model_get_info(m, &info));
    CHECK(strcmp(info.dtype, dt == LOOM_DTYPE_F32 ? "f32" : "f16") == 0, "dtype %s",
          info.dtype);
    list_tensors(m, &l);
    l.n--;
    for (int i = 0; i < l.n; i++) {
        int64_t n = loom_tensor_numel(l.t[i]);
        float *x = malloc((size_t)n * 4);
        uint16_t *b = malloc((size_t)n * 2);
        loom_tensor_read_f32(l.t[i], 0, n, x);
        loom_tensor_read_bf16(l.t[i], 0, n, b);
        for (int64_t j = 0; j < n; j++) {
            float want = f16_ref(rand_f16(&s));
            if (dt == LOOM_DTYPE_F32)
                want *= 1.0001f;
            nan += isnan(x[j]);
            bad += x[j] != want || b[j] != loom_f32_to_bf16(want);
        }
        free(x);
        free(b);
    }
    CHECK(bad == 0 && nan == 0, "%s: %d values wrong, %d NaN", loom_dtype_name(dt), bad, nan);
out:
    loom_model_free(m);
    loom_test_rmtree(dir);
    free(dir);
}

static void test_load_f32(void)
{
    check_ckpt_values(LOOM_DTYPE_F32);
}

static void test_load_f16(void)
{
    check_ckpt_values(LOOM_DTYPE_F16);
}

/* A bulk read of a generated tensor equals the generator element by element
 * (sampled), and its speed is reported - never a pass/fail threshold: timings
 * belong to benchmarks. */
static void test_gen_bulk_read(void)
{
    loom_model_params p = loom_model_default_params();
    loom_model *m = NULL;
    enum { N = 1 << 24 };
    uint16_t *b = malloc((size_t)N * 2);
    struct timespec t0, t1;
    double s;

    p.progress = false;
    CHECK_OK(loom_model_from_preset("qwen3-0.6b", p, &m));
    if (!m || !b)
        goto out;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    loom_tensor_read_bf16(&m->w.embed, 1000, N, b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "  generator: %.1f M bf16 values/s (reported, not checked)\n", N / s / 1e6);
    for (int64_t i = 0; i < N; i += 4099) {
        uint16_t want = loom_gen_value_bf16(m->w.embed.gen_kind, m->w.embed.gen_seed,
                                            m->w.embed.gen_uid, (uint64_t)(1000 + i));
        CHECK(b[i] == want, "bulk read element %lld: 0x%04x, generator 0x%04x", (long long)i,
              b[i], want);
        if (b[i] != want)
            break;
    }
out:
    loom_model_free(m);
    free(b);
}

TEST_MAIN(TEST(test_presets_validate), TEST(test_param_counts), TEST(test_preset_shapes),
          TEST(test_from_preset), TEST(test_gen_matches_spec), TEST(test_gen_stats),
          TEST(test_gen_bulk_read), TEST(test_roundtrip_single), TEST(test_roundtrip_sharded),
          TEST(test_save_errors), TEST(test_load_f32), TEST(test_load_f16))
