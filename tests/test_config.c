/* test_config.c - config.json parsing of real Qwen3 / Qwen2 / Llama configs
 * (transformers 4.x and 5.x spellings), to_json -> parse round trips, and
 * every malformed config of tests/data/malformed/MANIFEST rejected with its
 * status and message. */
#include "harness.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CONFIGS LOOM_TEST_DATA "/configs"
#define MALFORMED LOOM_TEST_DATA "/malformed"

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, fp);
    buf[*len] = '\0';
    fclose(fp);
    return buf;
}

static loom_status parse_file(const char *path, loom_config *c)
{
    size_t len = 0;
    char *text = read_text(path, &len);
    loom_status st;

    if (!text)
        return LOOM_ERR_IO;
    st = loom_config_parse(path, text, len, c);
    free(text);
    return st;
}

/* Every field equal (floats bit for bit); names the first difference. */
static bool config_equal(const loom_config *a, const loom_config *b, const char **diff)
{
#define SAME(f)                                                            \
    if (memcmp(&a->f, &b->f, sizeof a->f) != 0) {                          \
        *diff = #f;                                                        \
        return false;                                                      \
    }
    SAME(arch) SAME(vocab_size) SAME(hidden_size) SAME(intermediate_size)
    SAME(n_layers) SAME(n_heads) SAME(n_kv_heads) SAME(head_dim)
    SAME(max_position_embeddings) SAME(rms_norm_eps) SAME(rope_theta)
    SAME(tie_word_embeddings) SAME(attention_bias) SAME(qk_norm) SAME(rope_llama3)
    SAME(rope_factor) SAME(rope_low_freq_factor) SAME(rope_high_freq_factor)
    SAME(rope_original_max_position) SAME(bos_token_id) SAME(n_eos) SAME(torch_dtype)
#undef SAME
    for (int32_t i = 0; i < a->n_eos && i < LOOM_MAX_EOS; i++)
        if (a->eos_token_ids[i] != b->eos_token_ids[i]) {
            *diff = "eos_token_ids";
            return false;
        }
    return true;
}

static void check_round_trip(const char *what, const loom_config *c)
{
    loom_config back;
    const char *diff = "";
    char *json = NULL;

    CHECK_OK(loom_config_to_json(c, &json));
    if (!json)
        return;
    CHECK_OK(loom_config_parse(what, json, strlen(json), &back));
    CHECK(config_equal(c, &back, &diff), "%s: round trip changed %s:\n%s", what, diff, json);
    free(json);
}

/* ------------------------------------------------------ valid configs */

static void test_qwen3_0_6b(void)
{
    loom_config c;

    CHECK_OK(parse_file(CONFIGS "/qwen3-0.6b.json", &c));
    CHECK(c.arch == LOOM_ARCH_QWEN3 && c.qk_norm && !c.attention_bias, "arch flags");
    CHECK(c.vocab_size == 151936 && c.hidden_size == 1024 && c.intermediate_size == 3072,
          "sizes");
    CHECK(c.n_layers == 28 && c.n_heads == 16 && c.n_kv_heads == 8, "layers/heads");
    CHECK(c.head_dim == 128, "head_dim %d (differs from hidden/heads = 64)", c.head_dim);
    CHECK(c.max_position_embeddings == 40960, "max positions");
    CHECK(c.rms_norm_eps == 1e-6f && c.rope_theta == 1e6, "eps %g theta %g",
          (double)c.rms_norm_eps, c.rope_theta);
    CHECK(c.tie_word_embeddings && !c.rope_llama3, "tie / rope");
    CHECK(c.bos_token_id == 151643 && c.n_eos == 1 && c.eos_token_ids[0] == 151645, "tokens");
    CHECK(c.torch_dtype == LOOM_DTYPE_BF16, "dtype");
    check_round_trip("qwen3-0.6b", &c);
}

static void test_qwen2(void)
{
    loom_config c;

    CHECK_OK(parse_file(CONFIGS "/qwen2.5-0.5b.json", &c));
    CHECK(c.arch == LOOM_ARCH_QWEN2 && c.attention_bias && !c.qk_norm, "arch flags");
    CHECK(c.hidden_size == 896 && c.n_heads == 14 && c.n_kv_heads == 2, "sizes");
    CHECK(c.head_dim == 64, "head_dim %d = hidden / heads", c.head_dim);
    CHECK(c.intermediate_size == 4864 && c.n_layers == 24, "ffn / layers");
    CHECK(c.rope_theta == 1e6 && c.tie_word_embeddings, "theta / tie");
    CHECK(c.n_eos == 1 && c.eos_token_ids[0] == 151643, "eos");
    check_round_trip("qwen2.5-0.5b", &c);
}

static void test_llama_3_2(void)
{
    loom_config c;

    CHECK_OK(parse_file(CONFIGS "/llama-3.2-1b-instruct.json", &c));
    CHECK(c.arch == LOOM_ARCH_LLAMA && !c.attention_bias && !c.qk_norm, "arch flags");
    CHECK(c.vocab_size == 128256 && c.hidden_size == 2048 && c.intermediate_size == 8192,
          "sizes");
    CHECK(c.n_layers == 16 && c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 64,
          "heads");
    CHECK(c.rms_norm_eps == 1e-5f && c.rope_theta == 500000.0, "eps / theta");
    CHECK(c.rope_llama3 && c.rope_factor == 32.0f && c.rope_low_freq_factor == 1.0f &&
          c.rope_high_freq_factor == 4.0f && c.rope_original_max_position == 8192,
          "llama3 rope scaling");
    CHECK(c.bos_token_id == 128000 && c.n_eos == 3 && c.eos_token_ids[0] == 128001 &&
          c.eos_token_ids[1] == 128008 && c.eos_token_ids[2] == 128009, "tokens");
    check_round_trip("llama-3.2-1b-instruct", &c);
}

/* transformers 5: "rope_parameters" and "dtype" mean what 4.x wrote as
 * rope_theta / rope_scaling / torch_dtype. */
static void test_transformers5_form(void)
{
    loom_config v4, v5;
    const char *diff = "";

    CHECK_OK(parse_file(CONFIGS "/qwen3-0.6b.json", &v4));
    CHECK_OK(parse_file(CONFIGS "/qwen3-0.6b-tf5.json", &v5));
    CHECK(config_equal(&v4, &v5, &diff), "qwen3 tf5 form differs in %s", diff);

    CHECK_OK(parse_file(CONFIGS "/llama-3.2-1b-instruct.json", &v4));
    CHECK_OK(parse_file(CONFIGS "/llama-3.2-1b-tf5.json", &v5));
    CHECK(v5.n_eos == 1 && v5.eos_token_ids[0] == 128001, "tf5 eos");
    v5.n_eos = v4.n_eos;                /* the instruct model lists 3 eos ids */
    memcpy(v5.eos_token_ids, v4.eos_token_ids, sizeof v5.eos_token_ids);
    CHECK(config_equal(&v4, &v5, &diff), "llama tf5 form differs in %s", diff);
}

/* Defaults and the other spellings HF has used. */
static void test_defaults_and_spellings(void)
{
    static const char legacy[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 512, \"hidden_size\": 128,"
        " \"intermediate_size\": 256, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
        " \"max_position_embeddings\": 1024, \"bos_token_id\": null, \"eos_token_id\": null,"
        " \"head_dim\": null, \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8,"
        " \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
        " \"original_max_position_embeddings\": 256}, \"torch_dtype\": \"float16\"}";
    loom_config c;

    CHECK_OK(loom_config_parse("legacy.json", legacy, sizeof legacy - 1, &c));
    CHECK(c.n_kv_heads == 4 && c.head_dim == 32, "kv heads / head_dim defaults");
    CHECK(c.bos_token_id == -1 && c.n_eos == 0, "null token ids");
    CHECK(!c.tie_word_embeddings && c.rope_theta == 10000.0, "tie / theta defaults");
    CHECK(c.rope_llama3 && c.rope_factor == 8.0f, "legacy 'type' key");
    CHECK(c.torch_dtype == LOOM_DTYPE_F16, "float16");
    check_round_trip("legacy", &c);

    /* validate refuses a preset whose flags contradict the arch */
    c.qk_norm = true;
    CHECK(loom_config_validate("preset", &c) == LOOM_ERR_UNSUPPORTED, "llama with qk_norm");
}

/* Random valid configs survive to_json -> parse bit for bit, including
 * floats that need all their digits. */
static void test_round_trip_random(void)
{
    rng_state = loom_test_seed() ^ 0x5eed;
    for (int i = 0; i < 500; i++) {
        loom_config c;
        int32_t g = 1 + (int32_t)(rng() % 8);
        memset(&c, 0, sizeof c);
        c.arch = (loom_arch)(rng() % LOOM_ARCH_COUNT);
        c.qk_norm = c.arch == LOOM_ARCH_QWEN3;
        c.attention_bias = c.arch == LOOM_ARCH_QWEN2;
        c.vocab_size = 1000 + (int32_t)(rng() % 200000);
        c.hidden_size = 64 * (1 + (int32_t)(rng() % 128));
        c.intermediate_size = 1 + (int32_t)(rng() % 30000);
        c.n_layers = 1 + (int32_t)(rng() % 96);
        c.n_kv_heads = 1 + (int32_t)(rng() % 16);
        c.n_heads = c.n_kv_heads * g;
        c.head_dim = 2 * (1 + (int32_t)(rng() % 128));
        c.max_position_embeddings = 1 + (int32_t)(rng() % 1000000);
        c.rms_norm_eps = (float)(1e-7 + rng_unit() * 1e-4);
        switch (rng() % 3) {   /* integral, fractional, integral beyond 2^53 */
        case 0: c.rope_theta = (double)(1 + rng() % 10000000); break;
        case 1: c.rope_theta = 1e4 * (1 + rng_unit()); break;
        default: c.rope_theta = ldexp(1 + rng_unit(), 54 + (int)(rng() % 40)); break;
        }
        c.tie_word_embeddings = rng() & 1;
        c.rope_llama3 = rng() & 1;
        if (c.rope_llama3) {
            c.rope_factor = (float)(1 + 63 * rng_unit());
            c.rope_low_freq_factor = (float)(0.1 + rng_unit());
            c.rope_high_freq_factor = c.rope_low_freq_factor + (float)(0.5 + 4 * rng_unit());
            c.rope_original_max_position = 1 + (int32_t)(rng() % 65536);
        }
        c.bos_token_id = (rng() & 1) ? -1 : (int32_t)(rng() % (uint64_t)c.vocab_size);
        c.n_eos = (int32_t)(rng() % (LOOM_MAX_EOS + 1));
        for (int32_t k = 0; k < c.n_eos; k++)
            c.eos_token_ids[k] = (int32_t)(rng() % (uint64_t)c.vocab_size);
        c.torch_dtype = (loom_dtype)(rng() % 3);   /* BF16, F16, F32 */
        CHECK_OK(loom_config_validate("random", &c));
        check_round_trip("random", &c);
        if (loom_test_failures)
            break;
    }
}

static void test_to_json_text(void)
{
    loom_config c;
    char *json = NULL;

    CHECK_OK(parse_file(CONFIGS "/qwen3-0.6b.json", &c));
    CHECK_OK(loom_config_to_json(&c, &json));
    if (!json)
        return;
    CHECK(strstr(json, "\"model_type\": \"qwen3\"") && strstr(json, "\"hidden_act\": \"silu\"") &&
          strstr(json, "\"use_cache\": true") && strstr(json, "\"rms_norm_eps\": 1e-6") &&
          strstr(json, "\"rope_theta\": 1000000,") && strstr(json, "\"torch_dtype\": \"bfloat16\""),
          "to_json text:\n%s", json);
    free(json);
}

/* ------------------------------------------------------ the corpus */

static void test_malformed_configs(void)
{
    static loom_test_expect x[128];
    int n = loom_test_read_manifest(MALFORMED "/MANIFEST", x, 128), checked = 0;
    char path[512], why[1400];

    CHECK(n > 0, "cannot read %s/MANIFEST", MALFORMED);
    for (int i = 0; i < n; i++) {
        loom_config c;
        loom_status st;

        if (!strstr(x[i].file, ".json"))
            continue;
        snprintf(path, sizeof path, "%s/%s", MALFORMED, x[i].file);
        memset(&c, 0x5a, sizeof c);
        st = parse_file(path, &c);
        CHECK(loom_test_rejection_matches(&x[i], path, st, loom_last_error(), why, sizeof why),
              "%s: %s", x[i].file, why);
        CHECK(c.vocab_size == 0x5a5a5a5a, "%s: output written on failure", x[i].file);
        checked++;
    }
    CHECK(checked >= 8, "only %d malformed configs", checked);
    fprintf(stderr, "  %d malformed configs rejected as expected\n", checked);
}

/* Planted: the checkers report a wrong expectation and a changed field. */
static void test_checkers_planted(void)
{
    loom_test_expect right = {"cfg_head_dim_odd.json", "LOOM_ERR_FORMAT", "'head_dim' = 63"};
    loom_test_expect wrong = right;
    char path[512], msg[1024], why[1400];
    const char *diff = "";
    loom_config a, b;
    loom_status st;

    snprintf(path, sizeof path, "%s/%s", MALFORMED, right.file);
    st = parse_file(path, &a);
    snprintf(msg, sizeof msg, "%s", loom_last_error());
    CHECK(loom_test_rejection_matches(&right, path, st, msg, why, sizeof why), "right: %s", why);
    snprintf(wrong.substring, sizeof wrong.substring, "'head_dim' = 64");
    CHECK(!loom_test_rejection_matches(&wrong, path, st, msg, why, sizeof why),
          "checker missed a wrong message");
    wrong = right;
    snprintf(wrong.status, sizeof wrong.status, "LOOM_ERR_UNSUPPORTED");
    CHECK(!loom_test_rejection_matches(&wrong, path, st, msg, why, sizeof why),
          "checker missed a wrong status");

    CHECK_OK(parse_file(CONFIGS "/llama-3.2-1b-instruct.json", &a));
    b = a;
    b.rope_high_freq_factor = nextafterf(b.rope_high_freq_factor, 10.0f);
    CHECK(!config_equal(&a, &b, &diff), "config_equal missed a one-ulp change");
    b = a;
    b.eos_token_ids[2]++;
    CHECK(!config_equal(&a, &b, &diff), "config_equal missed an eos change");
}

TEST_MAIN(TEST(test_qwen3_0_6b), TEST(test_qwen2), TEST(test_llama_3_2),
          TEST(test_transformers5_form), TEST(test_defaults_and_spellings),
          TEST(test_round_trip_random), TEST(test_to_json_text), TEST(test_malformed_configs),
          TEST(test_checkers_planted))
