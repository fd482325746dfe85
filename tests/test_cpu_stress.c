/* test_cpu_stress.c - the CPU backend's stress mode: 64 virtual SMs on 2
 * threads, each thread picking randomly among its ready SMs and sleeping
 * random short delays between tasks. Every task is deterministic and the
 * counters order every read after its write, so 100 runs with different
 * stress seeds must give bit-identical tokens and logits (also with split
 * attention merged by whichever tile of a group arrives last). The check is
 * checked once with a planted race (a dropped wait), which stress mode must
 * expose within a few runs. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "harness.h"
#include "model/model.h"

#define N_PROMPT 5
#define N_STEPS 14
#define CTX 32
#define N_RUNS 100
#define N_VIRTUAL 64
#define N_THREADS 2

typedef struct outcome {
    int32_t tokens[CTX];
    int32_t n_generated, n_steps_run;
    float  *logits;                 /* [N_STEPS, vocab] */
} outcome;

/* One stress run with seed on a fresh backend; false if it failed. A
 * non-negative eos stops the run after that token. */
static bool stress_run_eos(const loom_program *p, uint64_t seed, const int32_t *prompt,
                           int32_t eos, outcome *o)
{
    loom_engine_params ep = loom_engine_default_params();
    loom_run_request rq;
    loom_run_result res = {0};
    void *st = NULL;
    loom_status s;

    ep.backend = LOOM_BACKEND_CPU;
    ep.n_threads = N_THREADS;
    ep.stress = true;
    ep.stress_seed = seed;
    ep.stress_virtual_sms = N_VIRTUAL;
    CHECK_OK(s = loom_cpu_backend.create(p, &ep, &st));
    if (s != LOOM_OK)
        return false;
    memset(&rq, 0, sizeof rq);
    rq.prompt = prompt;
    rq.n_prompt = N_PROMPT;
    rq.n_steps = N_STEPS;
    rq.out_tokens = o->tokens;
    rq.logits_out = o->logits;
    rq.eos[0] = eos;
    rq.n_eos = eos >= 0;
    CHECK_OK(s = loom_cpu_backend.run(st, &rq, &res));
    o->n_generated = res.n_generated;
    o->n_steps_run = res.n_steps_run;
    loom_cpu_backend.destroy(st);
    return s == LOOM_OK;
}

static bool stress_run(const loom_program *p, uint64_t seed, const int32_t *prompt,
                       outcome *o)
{
    return stress_run_eos(p, seed, prompt, -1, o);
}

static bool same(const outcome *a, const outcome *b, int32_t vocab)
{
    return a->n_generated == b->n_generated && a->n_steps_run == b->n_steps_run &&
           memcmp(a->tokens, b->tokens, (size_t)a->n_generated * sizeof(int32_t)) == 0 &&
           memcmp(a->logits, b->logits, (size_t)N_STEPS * vocab * sizeof(float)) == 0;
}

/* split 0: the compiler's (1 at this context); merge: graph.h attn_merge */
static loom_program *compile_split(const loom_model *m, bool skip_verify, int32_t split,
                                   int32_t merge)
{
    loom_compile_params cp = loom_compile_default_params(N_VIRTUAL);
    loom_program *p = NULL;
    cp.graph.attn_split = split;
    cp.graph.attn_merge = merge;
    cp.graph.max_context = CTX;
    cp.graph.page_size = 8;
    cp.graph.record_logits = true;
    cp.skip_verify = skip_verify;
    CHECK_OK(loom_compile(m, cp, &p));
    return p;
}

static loom_program *compile(const loom_model *m, bool skip_verify)
{
    return compile_split(m, skip_verify, 0, 0);
}

static void stress_preset_split(const char *name, int32_t split, int32_t merge)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    loom_program *p = NULL;
    outcome first = {0}, o = {0};
    int32_t prompt[N_PROMPT];
    uint64_t seed = loom_test_seed();
    int differ = 0;

    mp.seed = seed;
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    if (m)
        p = compile_split(m, false, split, merge);
    if (!p)
        goto out;
    int32_t vocab = m->cfg.vocab_size;
    first.logits = malloc((size_t)N_STEPS * vocab * sizeof(float));
    o.logits = malloc((size_t)N_STEPS * vocab * sizeof(float));
    if (!first.logits || !o.logits)
        goto out;
    for (int i = 0; i < N_PROMPT; i++)
        prompt[i] = (int32_t)(loom_test_rng_next(&seed) % (uint64_t)vocab);

    if (!stress_run(p, seed, prompt, &first))
        goto out;
    CHECK(first.n_generated == N_STEPS - N_PROMPT + 1, "%s: %d tokens", name,
          first.n_generated);
    for (int r = 1; r < N_RUNS; r++) {
        if (!stress_run(p, seed + (uint64_t)r, prompt, &o))
            break;
        if (!same(&first, &o, vocab) && differ++ < 3)
            loom_test_fail(__FILE__, __LINE__, "%s: stress seed %llu differs from the first run",
                           name, (unsigned long long)(seed + (uint64_t)r));
    }
    CHECK(differ == 0, "%s: %d of %d stress runs differ", name, differ, N_RUNS - 1);
out:
    free(first.logits);
    free(o.logits);
    loom_program_free(p);
    loom_model_free(m);
}

/* An EOS mid-run stops every stress run at the same step boundary with the
 * same tokens, and the logits of the steps run are the same. */
static void test_stress_eos(void)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    loom_program *p = NULL;
    outcome first = {0}, o = {0};
    int32_t prompt[N_PROMPT];
    uint64_t seed = loom_test_seed() ^ 0xe05;

    mp.seed = seed;
    CHECK_OK(loom_model_from_preset("llama-tiny", mp, &m));
    if (m)
        p = compile(m, false);
    if (!p)
        goto out;
    int32_t vocab = m->cfg.vocab_size;
    first.logits = calloc((size_t)N_STEPS * vocab, sizeof(float));
    o.logits = calloc((size_t)N_STEPS * vocab, sizeof(float));
    if (!first.logits || !o.logits)
        goto out;
    for (int i = 0; i < N_PROMPT; i++)
        prompt[i] = (int32_t)(loom_test_rng_next(&seed) % (uint64_t)vocab);
    if (!stress_run(p, seed, prompt, &first))
        goto out;
    int32_t eos = first.tokens[4], stop = 0;
    while (first.tokens[stop] != eos)
        stop++;
    for (int r = 0; r < 10; r++) {
        memset(o.logits, 0, (size_t)N_STEPS * vocab * sizeof(float));
        if (!stress_run_eos(p, seed + 100 + (uint64_t)r, prompt, eos, &o))
            break;
        bool ok = o.n_generated == stop + 1 && o.n_steps_run == N_PROMPT + stop &&
                  memcmp(o.tokens, first.tokens, (size_t)(stop + 1) * sizeof(int32_t)) == 0 &&
                  memcmp(o.logits, first.logits,
                         (size_t)o.n_steps_run * vocab * sizeof(float)) == 0;
        CHECK(ok, "eos %d, run %d: %d tokens, %d steps; expected %d, %d", eos, r,
              o.n_generated, o.n_steps_run, stop + 1, N_PROMPT + stop);
    }
out:
    free(first.logits);
    free(o.logits);
    loom_program_free(p);
    loom_model_free(m);
}

static void stress_preset(const char *name) { stress_preset_split(name, 0, 0); }

static void test_stress_qwen3_tiny(void) { stress_preset("qwen3-tiny"); }
static void test_stress_llama_tiny(void) { stress_preset("llama-tiny"); }
/* 4 splits, each group merged by whichever of its tiles arrives last
 * (program.h arrive): the order changes from run to run, the bits do not. */
static void test_stress_merge_by_last(void) { stress_preset_split("qwen3-tiny", 4, 2); }

/* The planted race: layer 0's attention tasks no longer wait for the qkv
 * tiles, so they may read qkv_out before it is written. Stress mode must
 * produce a run that differs from the sound program's. */
static void test_planted_race_is_caught(void)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    loom_program *good = NULL, *bad = NULL;
    outcome ref = {0}, o = {0};
    int32_t prompt[N_PROMPT];
    uint64_t seed = loom_test_seed() ^ 0x7ace;
    int caught = 0, dropped = 0, runs = 0;

    mp.seed = seed;
    CHECK_OK(loom_model_from_preset("qwen3-tiny", mp, &m));
    if (m) {
        good = compile(m, false);
        bad = compile(m, true);
    }
    if (!good || !bad)
        goto out;
    for (int32_t i = 0; i < bad->n_tasks; i++) {
        const loom_op *op = &bad->graph->ops[bad->tasks[i].op];
        if (op->kind == LOOM_OP_ATTENTION && op->layer == 0) {
            bad->tasks[i].n_waits = 0;
            dropped++;
        }
    }
    CHECK(dropped > 0, "no attention task in layer 0");
    int32_t vocab = m->cfg.vocab_size;
    ref.logits = malloc((size_t)N_STEPS * vocab * sizeof(float));
    o.logits = malloc((size_t)N_STEPS * vocab * sizeof(float));
    if (!ref.logits || !o.logits)
        goto out;
    for (int i = 0; i < N_PROMPT; i++)
        prompt[i] = (int32_t)(loom_test_rng_next(&seed) % (uint64_t)vocab);
    if (!stress_run(good, seed, prompt, &ref))
        goto out;
    for (runs = 0; runs < 20 && !caught; runs++) {
        if (!stress_run(bad, seed + (uint64_t)runs, prompt, &o))
            break;
        caught += !same(&ref, &o, vocab);
    }
    CHECK(caught > 0, "a dropped wait went unnoticed in %d stress runs", runs);
    fprintf(stderr, "  planted race caught after %d run(s)\n", runs);
out:
    free(ref.logits);
    free(o.logits);
    loom_program_free(good);
    loom_program_free(bad);
    loom_model_free(m);
}

TEST_MAIN(TEST(test_stress_qwen3_tiny), TEST(test_stress_llama_tiny),
          TEST(test_stress_merge_by_last), TEST(test_stress_eos),
          TEST(test_planted_race_is_caught))
