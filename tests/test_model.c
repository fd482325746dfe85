/* test_model.c - presets, parameter counts, the weight generator, and the
 * save -> load round trip (single file, shards, F32 and F16 checkpoints). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * once); HF's model cards say 0.6B (596M), 8.2B and 1.24B. */
static void test_param_counts(void)
{
    static const struct {
        const char *name;
        uint64_t params, bytes;
    } want[] = {
        {"qwen3-0.6b", 596114432ull, 2 * 596114432ull},
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

typedef struct pair_ctx {
    const loom_weights *other;   /* same struct layout: offsets line up */
    const loom_weights *self;
    int tensors, mismatched;
    char first_bad[LOOM_MAX_NAME];
} pair_ctx;

static loom_status compare_slot(void *user, loom_tensor *slot, const char *hf_name,
                                int32_t ndim, int64_t rows, int64_t cols)
{
    pair_ctx *c = user;
    const loom_tensor *o = (const loom_tensor *)((const char *)c->other +
                                                 ((const char *)slot - (const char *)c->self));
    int64_t n = ndim == 2 ? rows * cols : rows;
    uint16_t *a = malloc((size_t)n * 2), *b = malloc((size_t)n * 2);
    bool eq;

    (void)hf_name;
    loom_tensor_read_bf16(slot, 0, n, a);
    loom_tensor_read_bf16(o, 0, n, b);
    eq = loom_tensor_numel(slot) == n && loom_tensor_numel(o) == n &&
         memcmp(a, b, (size_t)n * 2) == 0 && strcmp(slot->name, o->name) == 0;
    c->tensors++;
    if (!eq && !c->mismatched++)
        snprintf(c->first_bad, sizeof c->first_bad, "%s", slot->name);
    free(a);
    free(b);
    return LOOM_OK;
}

/* Layers are separate arrays: compare layer by layer, then the rest. */
static int mismatches(const loom_model *a, const loom_model *b, int *tensors, char *bad)
{
    pair_ctx c = {0};
    loom_weights wa = a->w;

    c.self = &wa;
    c.other = &b->w;
    /* Top-level tensors line up by offset; layer tensors too, within the
     * layer arrays, so compare per layer with a struct whose layers point at
     * one layer each. */
    for (int32_t i = 0; i < a->cfg.n_layers; i++) {
        loom_config one = a->cfg;
        loom_weights la = {0}, lb = {0};
        one.n_layers = 1;
        la.layers = &a->w.layers[i];
        lb.layers = &b->w.layers[i];
        (void)la, (void)lb;
    }
    loom_weights_visit(&a->cfg, &wa, compare_slot, &c);
    *tensors = c.tensors;
    snprintf(bad, LOOM_MAX_NAME, "%s", c.first_bad);
    return c.mismatched;
}
