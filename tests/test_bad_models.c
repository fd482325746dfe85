/* test_bad_models.c - loom_model_load on the broken checkpoints of
 * tests/data/bad_models (written by make_bad_models.py, listed with the
 * expected status and message substrings in MANIFEST.json). Every failure
 * must name the file and the tensor at fault and leave *out untouched. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/model.h"

#define CORPUS LOOM_TEST_DATA "/bad_models"

/* Cases the corpus must hold, so that a shrunken manifest cannot pass. */
static const char *const required_cases[] = {
    "good", "good_sharded", "good_tied_lm_head",
    "missing_tensor", "extra_tensor", "misshaped_tensor", "dtype_f64", "dtype_i32",
    "index_missing_shard", "index_duplicate_tensor", "index_unlisted_tensor",
    "index_listed_not_held", "index_tensor_in_two_shards", "index_missing_tensor",
    "index_shard_outside_dir", "untied_lm_head_missing", "config_missing",
    "config_malformed", "no_weights",
};

static json_t *load_manifest(void)
{
    json_error_t err;
    json_t *m = json_load_file(CORPUS "/MANIFEST.json", 0, &err);

    CHECK(json_is_array(m), "%s/MANIFEST.json: %s", CORPUS, err.text);
    return m;
}

/* True when the status's string starts with name ("LOOM_ERR_IO"). */
static bool status_is(loom_status st, const char *name)
{
    const char *s = loom_status_string(st);
    size_t n = strlen(name);

    return strncmp(s, name, n) == 0 && s[n] == ':';
}

/* The message check, also used on a planted wrong expectation. */
static bool message_has_all(const char *msg, json_t *expect, const char **missing)
{
    size_t i;
    json_t *e;

    json_array_foreach(expect, i, e) {
        if (!strstr(msg, json_string_value(e))) {
            *missing = json_string_value(e);
            return false;
        }
    }
    return true;
}

static void run_case(json_t *c)
{
    const char *name = json_string_value(json_object_get(c, "case"));
    const char *status = json_string_value(json_object_get(c, "status"));
    json_t *expect = json_object_get(c, "expect");
    loom_model_params p = loom_model_default_params();
    loom_model *const sentinel = (loom_model *)&p;   /* any non-NULL address */
    loom_model *m = sentinel;
    const char *missing = "";
    char dir[4096];
    loom_status st;

    p.progress = false;
    snprintf(dir, sizeof dir, "%s/%s", CORPUS, name);
    st = loom_model_load(dir, p, &m);
    fprintf(stderr, "  %-28s %s\n", name, st == LOOM_OK ? "loads" : loom_last_error());
    CHECK(status_is(st, status), "%s: got %s (%s), want %s", name, loom_status_string(st),
          loom_last_error(), status);
    if (st == LOOM_OK) {
        CHECK(m != sentinel && m, "%s: no model", name);
        if (m != sentinel)
            loom_model_free(m);
        return;
    }
    CHECK(m == sentinel, "%s: *out written on failure", name);
    CHECK(message_has_all(loom_last_error(), expect, &missing),
          "%s: message lacks '%s': %s", name, missing, loom_last_error());
    CHECK(strstr(loom_last_error(), name), "%s: message does not name the directory: %s",
          name, loom_last_error());
}

static void test_corpus(void)
{
    json_t *m = load_manifest();
    json_t *c;
    size_t i;

    for (size_t r = 0; r < sizeof required_cases / sizeof required_cases[0]; r++) {
        bool found = false;
        json_array_foreach(m, i, c)
            found |= strcmp(json_string_value(json_object_get(c, "case")),
                            required_cases[r]) == 0;
        CHECK(found, "MANIFEST.json lacks case %s", required_cases[r]);
    }
    json_array_foreach(m, i, c)
        run_case(c);
    json_decref(m);
}

/* The checks are not blind: a wrong tensor name in the expectation or a
 * wrong status must be rejected by the same checkers. */
static void test_checker_catches_planted_bug(void)
{
    loom_model_params p = loom_model_default_params();
    loom_model *m = NULL;
    json_t *wrong = json_pack("[ss]", "model.safetensors", "model.layers.0.mlp.gate_proj.weight");
    const char *missing = "";
    loom_status st;

    p.progress = false;
    st = loom_model_load(CORPUS "/missing_tensor", p, &m);
    CHECK(st != LOOM_OK && !m, "missing_tensor loaded");
    CHECK(!message_has_all(loom_last_error(), wrong, &missing),
          "message check accepted a tensor it does not name: %s", loom_last_error());
    CHECK(!status_is(st, "LOOM_ERR_IO") && !status_is(st, "LOOM_ERR_FORM"),
          "status check too loose");
    json_decref(wrong);
}

/* The two controls hold the same bytes in one file and in two shards. */
static void test_controls_agree(void)
{
    loom_model_params p = loom_model_default_params();
    loom_model *a = NULL, *b = NULL;
    const loom_tensor *ta[3], *tb[3];
    int same = 0, nonzero = 0;

    p.progress = false;
    CHECK_OK(loom_model_load(CORPUS "/good", p, &a));
    CHECK_OK(loom_model_load(CORPUS "/good_sharded", p, &b));
    if (!a || !b)
        goto out;
    CHECK(a->n_files == 1 && b->n_files == 2, "files %d %d", a->n_files, b->n_files);
    ta[0] = &a->w.embed, ta[1] = &a->w.layers[0].w_down, ta[2] = &a->w.final_norm;
    tb[0] = &b->w.embed, tb[1] = &b->w.layers[0].w_down, tb[2] = &b->w.final_norm;
    for (int i = 0; i < 3; i++) {
        int64_t n = loom_tensor_numel(ta[i]);
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        loom_tensor_read_f32(ta[i], 0, n, x);
        loom_tensor_read_f32(tb[i], 0, n, y);
        same += memcmp(x, y, (size_t)n * 4) == 0;
        for (int64_t j = 0; j < n; j++)
            nonzero += x[j] != 0.0f;
        free(x);
        free(y);
    }
    CHECK(same == 3 && nonzero > 1000, "controls differ (%d same) or are zero", same);
    CHECK(a->w.lm_head.data == a->w.embed.data, "tied lm_head");
out:
    loom_model_free(a);
    loom_model_free(b);
}

TEST_MAIN(TEST(test_corpus), TEST(test_checker_catches_planted_bug), TEST(test_controls_agree))
