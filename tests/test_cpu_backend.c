/* test_cpu_backend.c - the CPU backend against the oracle, whole graphs.
 *
 * Each preset is compiled (record_logits on), run on the CPU backend for a
 * random prompt plus greedy decoding, and the oracle is fed the very same
 * token sequence (the prompt, then the backend's generated tokens): at every
 * step the logits must agree to 1e-2 relative L2 and the greedy token must
 * be the oracle's wherever the oracle's top-2 margin is clear; any NaN
 * fails. The checker is checked once with a planted off-by-one position.
 * Also: the tokens do not depend on the number of virtual SMs, bad inputs
 * are refused with LOOM_ERR_LIMIT naming the culprit, EOS and on_token stop
 * the run cleanly, and a wait that can never be met ends in LOOM_ERR_TIMEOUT
 * naming the counter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "harness.h"
#include "model/model.h"
#include "ref/oracle.h"

#define N_PROMPT 8
#define N_STEPS 36
#define CTX 64
#define REL_TOL 1e-2
#define MARGIN 1e-2   /* token check where top-2 margin > MARGIN * range */

static const char *const tiny[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny"};
#define N_TINY (int)(sizeof tiny / sizeof tiny[0])

/* ------------------------------------------------------------------ setup */

static loom_model *open_preset(const char *name)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    mp.seed = loom_test_seed();
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    return m;
}

/* graph.h mlp_fuse of every compile here (test_fused_mlp sets it). */
static int32_t g_mlp_fuse;

/* attn_split 0: the compiler's choice (1 at these short contexts);
 * attn_merge (split > 1): 0 chosen, 1 a merge op, 2 in the attention. */
static loom_program *compile_split(const loom_model *m, int32_t n_sms, int32_t ctx,
                                   int32_t attn_split, int32_t attn_merge, bool skip_verify)
{
    loom_compile_params cp = loom_compile_default_params(n_sms);
    loom_program *p = NULL;
    cp.graph.max_context = ctx;
    cp.graph.attn_split = attn_split;
    cp.graph.attn_merge = attn_merge;
    cp.graph.mlp_fuse = g_mlp_fuse;
    cp.graph.page_size = 16;       /* several pages: the page table matters */
    cp.graph.record_logits = true;
    cp.skip_verify = skip_verify;
    CHECK_OK(loom_compile(m, cp, &p));
    return p;
}

static loom_program *compile(const loom_model *m, int32_t n_sms, int32_t ctx, bool skip_verify)
{
    return compile_split(m, n_sms, ctx, 0, 0, skip_verify);
}

static void *create(const loom_program *p, int32_t n_threads)
{
    loom_engine_params ep = loom_engine_default_params();
    void *st = NULL;
    ep.backend = LOOM_BACKEND_CPU;
    ep.n_threads = n_threads;
    CHECK_OK(loom_cpu_backend.create(p, &ep, &st));
    return st;
}

/* ------------------------------------------------------------------ checker */

/* The token sequence the backend saw: prompt, then its generated tokens. */
static void fed_tokens(const int32_t *prompt, int32_t n_prompt, const int32_t *gen,
                       int32_t n_steps, int32_t *seq)
{
    for (int32_t k = 0; k < n_steps; k++)
        seq[k] = k < n_prompt ? prompt[k] : gen[k - n_prompt];
}

/* Oracle logits of seq[0 .. n) into ref ([n, vocab]). */
static void oracle_logits(const loom_model *m, int32_t ctx, const int32_t *seq, int32_t n,
                          float *ref)
{
    loom_oracle *o = NULL;
    CHECK_OK(loom_oracle_create(m, ctx, &o));
    if (!o)
        return;
    for (int32_t k = 0; k < n; k++)
        CHECK_OK(loom_oracle_forward(o, seq[k], k, ref + (int64_t)k * m->cfg.vocab_size));
    loom_oracle_free(o);
}

/* Failures of backend logits `got` against the oracle's `ref` over n steps;
 * gen[k - (n_prompt - 1)] is the token the backend picked at step k. Prints
 * the first few failures when loud. */
static int compare(const float *got, const float *ref, int32_t n, int32_t vocab,
                   const int32_t *gen, int32_t n_prompt, bool loud, double *worst)
{
    int fails = 0;
    *worst = 0;
    for (int32_t k = 0; k < n; k++) {
        const float *a = got + (int64_t)k * vocab, *b = ref + (int64_t)k * vocab;
        double num = 0, den = 0, lo = b[0], hi = b[0];
        bool nan = false;
        for (int32_t i = 0; i < vocab; i++) {
            nan |= isnan(a[i]) || isnan(b[i]);
            num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            den += (double)b[i] * b[i];
            lo = b[i] < lo ? b[i] : lo;
            hi = b[i] > hi ? b[i] : hi;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (rel > *worst)
            *worst = rel;
        int32_t best = loom_argmax(b, vocab), second = best == 0 ? 1 : 0;
        for (int32_t i = 0; i < vocab; i++)
            if (i != best && b[i] > b[second])
                second = i;
        bool clear = b[best] - b[second] > MARGIN * (hi - lo);
        int32_t tok = k >= n_prompt - 1 ? gen[k - (n_prompt - 1)] : loom_argmax(a, vocab);
        bool bad = nan || rel > REL_TOL || (clear && tok != best);
        if (bad && loud && fails < 5)
            loom_test_fail(__FILE__, __LINE__,
                           "step %d: rel L2 %.3g%s, token %d vs oracle %d (margin %.3g)", k,
                           rel, nan ? " NaN" : "", tok, best, b[best] - b[second]);
        fails += bad;
    }
    return fails;
}

/* Runs prompt + decoding to n_steps on n_sms virtual SMs, compares with the
 * oracle. Returns the generated tokens in gen (n_steps - N_PROMPT + 1). */
static void run_vs_oracle(const char *preset, int32_t n_sms, int32_t n_threads, int32_t ctx,
                          int32_t n_steps, int32_t attn_split, int32_t attn_merge, bool plant)
{
    loom_model *m = open_preset(preset);
    if (!m)
        return;
    int32_t vocab = m->cfg.vocab_size, n_gen = n_steps - N_PROMPT + 1;
    loom_program *p = compile_split(m, n_sms, ctx, attn_split, attn_merge, false);
    void *st = p ? create(p, n_threads) : NULL;
    float *got = calloc((size_t)n_steps * vocab, sizeof *got);
    float *ref = calloc((size_t)n_steps * vocab, sizeof *ref);
    int32_t prompt[N_PROMPT], gen[CTX + 1], seq[CTX + 1];
    loom_run_result res = {0};

    if (!st || !got || !ref)
        goto out;
    loom_test_random_tokens(loom_test_seed() ^ 0x5eed, vocab, prompt, N_PROMPT);
    loom_run_request rq = loom_test_request(prompt, N_PROMPT, n_steps, gen, got);
    CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
    CHECK(res.n_steps_run == n_steps && res.n_generated == n_gen,
          "%s: ran %d steps, %d tokens; expected %d, %d", preset, res.n_steps_run,
          res.n_generated, n_steps, n_gen);
    for (int32_t i = 0; i < res.n_generated; i++)
        CHECK(gen[i] >= 0 && gen[i] < vocab, "%s: token %d = %d", preset, i, gen[i]);

    fed_tokens(prompt, N_PROMPT, gen, n_steps, seq);
    oracle_logits(m, ctx, seq, n_steps, ref);
    double worst;
    int fails = compare(got, ref, n_steps, vocab, gen, N_PROMPT, true, &worst);
    CHECK(fails == 0, "%s (n_sms %d): %d of %d steps differ from the oracle", preset, n_sms,
          fails, n_steps);
    fprintf(stderr, "  %s: n_sms %d, %d steps, worst rel L2 %.2e, %.2f ms/step\n", preset,
            n_sms, n_steps, worst, res.ms_per_step);
    if (plant) {
        /* The checker must catch logits one position off. */
        int planted = compare(got + vocab, ref, n_steps - 1, vocab, gen + 1, N_PROMPT, false,
                              &worst);
        CHECK(planted > 0, "%s: the checker missed logits shifted by one position", preset);
    }

    /* The K cache holds the steps run, zero beyond (fresh backend). */
    const loom_graph *g = p->graph;
    int32_t kc = g->ops[2].kcache;
    if (g->ops[2].kind == LOOM_OP_ATTENTION && kc >= 0) {
        const loom_gtensor *gt = &g->tensors[kc];
        uint16_t *kv = calloc((size_t)loom_gtensor_numel(gt), sizeof *kv);
        if (kv) {
            CHECK_OK(loom_cpu_backend.read_tensor(st, kc, kv));
            int64_t row = gt->cols, nz_in = 0, nz_out = 0;
            for (int64_t i = 0; i < (int64_t)n_steps * row; i++)
                nz_in += kv[i] != 0;
            for (int64_t i = (int64_t)n_steps * row; i < loom_gtensor_numel(gt); i++)
                nz_out += kv[i] != 0;
            CHECK(nz_in > n_steps * row / 2 && nz_out == 0,
                  "%s: k cache read: %lld nonzero of %lld in the steps run, %lld beyond",
                  preset, (long long)nz_in, (long long)(n_steps * row), (long long)nz_out);
            free(kv);
        }
    }
out:
    free(got);
    free(ref);
    if (st)
        loom_cpu_backend.destroy(st);
    loom_program_free(p);
    loom_model_free(m);
}

/* ------------------------------------------------------------------ tests */

static void test_tiny_vs_oracle(void)
{
    for (int i = 0; i < N_TINY; i++)
        run_vs_oracle(tiny[i], 4, 2, CTX, N_STEPS, 0, 0, i == 0);
}

/* Split attention (3 splits, taken from the newest position back, some
 * empty in the first steps) merged by an attn_merge op and by the last tile
 * of each group to arrive (program.h arrive; 4 virtual SMs on 2 and 3
 * threads, 5 splits on 16 SMs). */
static void test_split_attention_vs_oracle(void)
{
    for (int i = 0; i < N_TINY; i++) {
        run_vs_oracle(tiny[i], 4, 2, CTX, N_STEPS, 3, 1, false);
        run_vs_oracle(tiny[i], 4, 2, CTX, N_STEPS, 3, 2, false);
        run_vs_oracle(tiny[i], 4, 3, CTX, N_STEPS, 3, 2, false);
        run_vs_oracle(tiny[i], 16, 3, CTX, N_STEPS, 5, 2, false);
    }
}

/* The fused MLP (graph.h mlp_fuse 2: down's tiles after gate_up's on each
 * SM, summing into the fixed-point residual stream) against the oracle:
 * on 1, 4 and 16 virtual SMs, the tiles' adds racing on 3 threads. */
static void test_fused_mlp_vs_oracle(void)
{
    g_mlp_fuse = 2;
    for (int i = 0; i < N_TINY; i++) {
        run_vs_oracle(tiny[i], 1, 1, CTX, N_STEPS, 0, 0, false);
        run_vs_oracle(tiny[i], 4, 3, CTX, N_STEPS, 0, 0, false);
        run_vs_oracle(tiny[i], 16, 3, CTX, N_STEPS, 3, 2, false);
    }
    g_mlp_fuse = 0;
}

static void test_qwen3_06b_vs_oracle(void)
{
    run_vs_oracle("qwen3-0.6b", 2, 2, 48, 33, 0, 0, false);
}

/* Tokens and logits of one run of preset on n_sms virtual SMs. */
static void run_tokens(const loom_model *m, int32_t n_sms, int32_t n_threads,
                       const int32_t *prompt, int32_t *gen, float *logits)
{
    loom_program *p = compile(m, n_sms, CTX, false);
    void *st = p ? create(p, n_threads) : NULL;
    loom_run_result res = {0};
    if (st) {
        loom_run_request rq = loom_test_request(prompt, N_PROMPT, N_STEPS, gen, logits);
        CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
        loom_cpu_backend.destroy(st);
    }
    loom_program_free(p);
}

static void test_n_sms_same_tokens(void)
{
    static const int32_t sms[] = {1, 3, 7};
    const char *names[] = {"qwen3-tiny", "llama-tiny"};

    for (int i = 0; i < 2; i++) {
        loom_model *m = open_preset(names[i]);
        if (!m)
            continue;
        int32_t vocab = m->cfg.vocab_size, prompt[N_PROMPT], gen[3][CTX];
        float *lg = calloc((size_t)3 * N_STEPS * vocab, sizeof *lg);
        loom_test_random_tokens(loom_test_seed() ^ 0xabc, vocab, prompt, N_PROMPT);
        for (int j = 0; j < 3 && lg; j++)
            run_tokens(m, sms[j], 2, prompt, gen[j], lg + (size_t)j * N_STEPS * vocab);
        for (int j = 1; j < 3 && lg; j++) {
            double worst;
            int diff = 0;
            for (int32_t k = 0; k < N_STEPS - N_PROMPT + 1; k++)
                diff += gen[j][k] != gen[0][k];
            if (diff == 0)
                continue;
            fprintf(stderr, "  %s: n_sms %d: %d tokens differ from n_sms 1 (near-ties?)\n",
                    names[i], sms[j], diff);
            /* Different splits round differently: only near-ties may differ,
             * and then the logits must still agree. */
            int fails = compare(lg + (size_t)j * N_STEPS * vocab, lg, N_STEPS, vocab, gen[j],
                                N_PROMPT, true, &worst);
            CHECK(fails == 0, "%s: n_sms %d gives %d other tokens than n_sms 1", names[i],
                  sms[j], diff);
        }
        free(lg);
        loom_model_free(m);
    }
}

static void test_bad_inputs(void)
{
    loom_model *m = open_preset("qwen3-tiny");
    if (!m)
        return;
    int32_t vocab = m->cfg.vocab_size, gen[CTX + 1];
    loom_program *p = compile(m, 2, CTX, false);
    void *st = p ? create(p, 2) : NULL;
    int32_t prompt[N_PROMPT];
    loom_run_result res = {0};
    loom_status s;

    if (!st)
        goto out;
    loom_test_random_tokens(loom_test_seed() ^ 0xbad, vocab, prompt, N_PROMPT);

    prompt[5] = vocab;
    loom_run_request rq = loom_test_request(prompt, N_PROMPT, 16, gen, NULL);
    s = loom_cpu_backend.run(st, &rq, &res);
    CHECK(s == LOOM_ERR_LIMIT && strstr(loom_last_error(), "512") &&
          strstr(loom_last_error(), "index 5"),
          "token == vocab: %s: %s", loom_status_string(s), loom_last_error());

    prompt[5] = -3;
    s = loom_cpu_backend.run(st, &rq, &res);
    CHECK(s == LOOM_ERR_LIMIT && strstr(loom_last_error(), "-3") &&
          strstr(loom_last_error(), "index 5"),
          "token < 0: %s: %s", loom_status_string(s), loom_last_error());

    prompt[5] = 7;
    rq.n_steps = CTX + 1;
    s = loom_cpu_backend.run(st, &rq, &res);
    CHECK(s == LOOM_ERR_LIMIT && strstr(loom_last_error(), "65") &&
          strstr(loom_last_error(), "max_context 64"),
          "n_steps > max_context: %s: %s", loom_status_string(s), loom_last_error());

    rq.n_steps = 16;
    rq.n_prompt = 0;
    s = loom_cpu_backend.run(st, &rq, &res);
    CHECK(s == LOOM_ERR_LIMIT, "empty prompt: %s: %s", loom_status_string(s),
          loom_last_error());

    /* Still usable after refusals. */
    rq.n_prompt = N_PROMPT;
    CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
    CHECK(res.n_generated == 16 - N_PROMPT + 1, "%d tokens after refusals", res.n_generated);
out:
    if (st)
        loom_cpu_backend.destroy(st);
    loom_program_free(p);
    loom_model_free(m);
}

typedef struct {
    int32_t tokens[CTX];
    int32_t n, stop_after;
    bool in_order;
} sink;

static bool on_token(void *user, int32_t token, int32_t index)
{
    sink *s = user;
    s->in_order &= index == s->n;
    if (s->n < CTX)
        s->tokens[s->n] = token;
    s->n++;
    return s->n != s->stop_after;
}

static void test_stop(void)
{
    loom_model *m = open_preset("llama-tiny");
    if (!m)
        return;
    int32_t vocab = m->cfg.vocab_size, gen[CTX + 1], gen2[CTX + 1], prompt[N_PROMPT];
    loom_program *p = compile(m, 5, CTX, false);
    void *st = p ? create(p, 2) : NULL;
    loom_run_result res = {0};
    sink sk = {.in_order = true};

    if (!st)
        goto out;
    loom_test_random_tokens(loom_test_seed() ^ 0x57, vocab, prompt, N_PROMPT);

    /* All tokens, streamed in order. */
    loom_run_request rq = loom_test_request(prompt, N_PROMPT, 24, gen, NULL);
    rq.on_token = on_token;
    rq.user = &sk;
    CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
    CHECK(sk.in_order && sk.n == 17 && res.n_generated == 17 && res.n_steps_run == 24,
          "stream: %d tokens (in order %d), %d generated, %d steps", sk.n, sk.in_order,
          res.n_generated, res.n_steps_run);
    CHECK(memcmp(sk.tokens, gen, 17 * sizeof *gen) == 0, "streamed tokens != out_tokens");

    /* on_token returning false after the 5th token stops after it. */
    memset(&sk, 0, sizeof sk);
    sk.in_order = true;
    sk.stop_after = 5;
    CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
    CHECK(sk.n == 5 && res.n_generated == 5 && res.n_steps_run == N_PROMPT + 4,
          "on_token stop: %d streamed, %d generated, %d steps", sk.n, res.n_generated,
          res.n_steps_run);

    /* EOS = the 7th generated token of the first run: stops there (its
     * first occurrence), EOS included. */
    int32_t first = 0;
    while (gen[first] != gen[6])
        first++;
    rq.on_token = NULL;
    rq.out_tokens = gen2;
    rq.eos[0] = gen[6];
    rq.n_eos = 1;
    CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
    CHECK(res.n_generated == first + 1 && res.n_steps_run == N_PROMPT + first &&
          memcmp(gen2, gen, (size_t)(first + 1) * sizeof *gen) == 0,
          "eos %d: %d generated, %d steps; expected %d", gen[6], res.n_generated,
          res.n_steps_run, first + 1);
out:
    if (st)
        loom_cpu_backend.destroy(st);
    loom_program_free(p);
    loom_model_free(m);
}

/* A wait planted one signal too high never completes: the run must end in
 * LOOM_ERR_TIMEOUT naming the counter, within a few timeouts. */
static void test_timeout(void)
{
    loom_model *m = open_preset("qwen3-tiny");
    if (!m)
        return;
    loom_program *p = compile(m, 3, CTX, true);
    loom_engine_params ep = loom_engine_default_params();
    void *st = NULL;
    int32_t prompt[N_PROMPT], gen[CTX + 1], victim = -1;
    loom_run_result res = {0};

    if (!p)
        goto out;
    /* The first task after the embed with a same-step wait */
    for (int32_t i = 0; i < p->n_tasks && victim < 0; i++)
        if (p->graph->ops[p->tasks[i].op].kind == LOOM_OP_LINEAR && p->tasks[i].n_waits > 0 &&
            p->tasks[i].waits[0].step_offset == 0)
            victim = i;
    CHECK(victim >= 0, "no task with a same-step wait");
    if (victim < 0)
        goto out;
    loom_wait *w = &p->tasks[victim].waits[0];
    w->needed += 1;
    const char *counter = p->counters[w->counter].name;

    /* One thread for 3 SMs: no other thread can be descheduled long enough
     * to time out first, so the planted wait is the one reported. */
    ep.n_threads = 1;
    ep.wait_timeout_ms = 200;
    CHECK_OK(loom_cpu_backend.create(p, &ep, &st));
    if (!st)
        goto out;
    loom_test_random_tokens(loom_test_seed(), m->cfg.vocab_size, prompt, N_PROMPT);
    loom_run_request rq = loom_test_request(prompt, N_PROMPT, 16, gen, NULL);
    loom_status s = loom_cpu_backend.run(st, &rq, &res);
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", counter);
    CHECK(s == LOOM_ERR_TIMEOUT && strstr(loom_last_error(), quoted) &&
          strstr(loom_last_error(), "SM "),
          "planted wait on %s: %s: %s", quoted, loom_status_string(s), loom_last_error());
    fprintf(stderr, "  timeout message: %s\n", loom_last_error());

    /* The backend recovers once the program is sound again. */
    w->needed -= 1;
    CHECK_OK(loom_cpu_backend.run(st, &rq, &res));
out:
    if (st)
        loom_cpu_backend.destroy(st);
    loom_program_free(p);
    loom_model_free(m);
}

TEST_MAIN(TEST(test_tiny_vs_oracle), TEST(test_split_attention_vs_oracle),
          TEST(test_fused_mlp_vs_oracle), TEST(test_n_sms_same_tokens), TEST(test_bad_inputs),
          TEST(test_stop), TEST(test_timeout), TEST(test_qwen3_06b_vs_oracle))
