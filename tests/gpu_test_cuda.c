/* gpu_test_cuda.c - the CUDA backend against the CPU backend (GPU only;
 * exits 77 "skipped: no CUDA GPU (reason)" without one).
 *
 * (a) op by op: one program per preset (qwen3-tiny, qwen2-tiny, llama-tiny,
 *     qwen3-0.6b), the same random prompt run teacher-forced on both
 *     backends, then EVERY activation and KV tensor read back and compared:
 *     fp32 activations by normalised MSE <= 1e-5, bf16 KV rows (position,
 *     kv head) by relative L2 <= 1e-2; any NaN fails; the first tensor that differs is
 *     named. Sentinel mode is on (LOOM_CUDA_SENTINELS=1). The checker is
 *     checked once with a planted error.
 * (b) whole model: greedy tokens and per-step logits (rel L2 <= 1e-2) over
 *     40 steps, up to the first step where the two backends pick different
 *     tokens out of a near tie (which must be one); qwen3-0.6b also at 160
 *     steps, with 4 splits merged by an op and by the attention, and with
 *     one staging slot (which runs the L2 look-ahead).
 * (c) a wait that can never be met (threshold mutated, skip_verify,
 *     wait_timeout_ms 300) ends in LOOM_ERR_TIMEOUT naming the SM, the task,
 *     the counter, its value and threshold.
 * (d) on_token returning false and an EOS id stop generation early.
 * (e) bad requests are refused with LOOM_ERR_LIMIT.
 * (f) determinism: the same request run 5 times gives bit-identical state,
 *     tokens and logits (the race detector). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "harness.h"
#include "model/model.h"

#define CTX 96
#define PAGE 16
#define OP_PROMPT 21           /* (a): teacher-forced steps                 */
#define W_PROMPT 6             /* (b)                                        */
#define W_STEPS 40
#define ACT_NMSE 1e-5
#define KV_REL 1e-2
#define LOGIT_REL 1e-2

static int32_t g_sms;

/* ------------------------------------------------------------------ setup */

static loom_model *open_preset(const char *name, uint64_t seed)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    mp.seed = seed;
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    return m;
}

/* ctx positions, split KV splits per group (0: the compiler's choice),
 * their merge (graph.h attn_merge; 0: the compiler's choice). */
/* graph.h mlp_fuse of every compile (test_fused_mlp sets it). */
static int32_t g_mlp_fuse;

static loom_program *compile_at(const loom_model *m, bool skip_verify, int32_t ctx,
                                int32_t split, int32_t merge)
{
    loom_compile_params cp = loom_compile_default_params(g_sms);
    loom_program *p = NULL;
    cp.graph.max_context = ctx;
    cp.graph.attn_split = split;
    cp.graph.attn_merge = merge;
    cp.graph.mlp_fuse = g_mlp_fuse;
    cp.graph.page_size = PAGE;
    cp.graph.record_logits = true;
    cp.skip_verify = skip_verify;
    CHECK_OK(loom_compile(m, cp, &p));
    return p;
}

static loom_program *compile(const loom_model *m, bool skip_verify)
{
    return compile_at(m, skip_verify, CTX, 0, 0);
}

static void *create(const loom_backend_vtable *be, const loom_program *p, uint32_t timeout_ms)
{
    loom_engine_params ep = loom_engine_default_params();
    void *st = NULL;
    ep.wait_timeout_ms = timeout_ms;
    ep.verbose = be == &loom_cuda_backend;
    CHECK_OK(be->create(p, &ep, &st));
    return st;
}

/* ------------------------------------------------------------------ compare */

static float bf16f(uint16_t h)
{
    return loom_bf16_to_f32(h);
}

/* Normalised MSE of fp32 a (device) against b (reference); NaN -> INFINITY. */
static double nmse_f32(const float *a, const float *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i] || b[i] != b[i])
            return INFINITY;
        if (a[i] == b[i]) {   /* also equal infinities (empty chunks: m = -inf) */
            if (isfinite(b[i]))
                den += (double)b[i] * b[i];
            continue;
        }
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? num / den : num;
}

/* Relative L2 error of bf16 a against bf16 b (NaN when either holds one). */
static double rel_l2_bf16(const uint16_t *a, const uint16_t *b, int32_t n)
{
    double num = 0, den = 0;
    for (int32_t i = 0; i < n; i++) {
        double d = (double)bf16f(a[i]) - bf16f(b[i]);
        num += d * d;
        den += (double)bf16f(b[i]) * bf16f(b[i]);
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* First (position, kv head) row of a bf16 KV tensor [rows, cols] whose
 * relative L2 error against the reference exceeds KV_REL, or -1; NaN always
 * differs. Rows, not elements: the two backends accumulate in fp32 in
 * different orders, and a random-weight model amplifies that noise with
 * depth, so after rounding to bf16 a deep layer's row differs by about one
 * ulp in many elements (measured: rel L2 up to 0.0037 at layer 25 of
 * qwen3-0.6b; an element-wise 2-ulp bound failed 4 seeds in 10). A stale or
 * misplaced row is off by O(1); bit-exact races are the job of the
 * determinism test (f). */
static int64_t first_bad_row(const uint16_t *a, const uint16_t *b, int64_t rows, int64_t cols,
                             int32_t hd, double *err)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t h = 0; h < cols / hd; h++) {
            double e = rel_l2_bf16(a + r * cols + h * hd, b + r * cols + h * hd, hd);
            if (!(e <= KV_REL)) {   /* NaN fails too */
                *err = e;
                return r * cols + h * hd;
            }
        }
    return -1;
}

/* LOOM_TEST_DIAG, a KV tensor [positions, n_kv * head_dim] that differs
 * (device a, reference b): the (position, kv head) rows with a relative L2
 * error over KV_REL / 4, and for the worst the reference rows of the same
 * head nearest to the device's (a row written from another position's
 * values shows up there). */
static void diag_kv(const loom_graph *g, const loom_gtensor *t, const uint16_t *a,
                    const uint16_t *b)
{
    int32_t hd = g->cfg.head_dim, nkv = (int32_t)(t->cols / hd), shown = 0, wp = -1, wh = -1;
    double worst = 0;
    for (int64_t pos = 0; pos < t->rows; pos++)
        for (int32_t h = 0; h < nkv; h++) {
            const uint16_t *ra = a + pos * t->cols + (int64_t)h * hd;
            double e = rel_l2_bf16(ra, b + pos * t->cols + (int64_t)h * hd, hd);
            if (!(e > KV_REL / 4))
                continue;
            if (!(e <= worst)) {
                worst = e;
                wp = (int32_t)pos;
                wh = h;
            }
            if (shown++ < 12)
                printf("  diag %s: position %lld kv head %d: rel L2 %.3g\n", t->name,
                       (long long)pos, h, e);
        }
    printf("  diag %s: %d (position, kv head) rows over %.1e\n", t->name, shown, KV_REL / 4);
    if (wp < 0)
        return;
    const uint16_t *ra = a + (int64_t)wp * t->cols + (int64_t)wh * hd;
    for (int64_t q = 0; q < t->rows; q++) {
        double e = rel_l2_bf16(ra, b + q * t->cols + (int64_t)wh * hd, hd);
        if (q == wp || e < 0.05)
            printf("  diag %s: device row (position %d, head %d) vs reference position %lld: "
                   "rel L2 %.3g\n", t->name, wp, wh, (long long)q, e);
    }
}

/* Attention partials, records of {o[hd], m, l} (graph.h), compared in what
 * a merge takes from them, each as normalised MSE over all records: the
 * chunks' normalised outputs o / l (returned) and their log-weights m + ln l
 * (*lse_nmse). Raw, the unnormalised o and l amplify rounding: the two
 * sides' deep-layer activations differ by rounding, which moves a chunk's
 * scores, and an error in them scales all of its o and l alike (exp(s - m))
 * - an error the merge's normalisation cancels. Seen: raw normalised MSE
 * 1.0-1.2e-5 against the 1e-5 bound where the merged attn_out agreed; in
 * this form 4.5-5e-6 (perf-notes v22). An empty chunk (m = -inf) must be
 * empty on both sides; NaN anywhere: INFINITY. */
static double nmse_partials(const float *a, const float *b, int64_t n, int64_t hd,
                            double *lse_nmse)
{
    double num = 0.0, den = 0.0, lnum = 0.0, lden = 0.0;
    *lse_nmse = INFINITY;
    for (int64_t r = 0; r + hd + 2 <= n; r += hd + 2) {
        const float *x = a + r, *y = b + r;
        for (int64_t k = 0; k < hd + 2; k++)
            if (x[k] != x[k] || y[k] != y[k])
                return INFINITY;
        const bool ea = isinf(x[hd]) && x[hd] < 0, eb = isinf(y[hd]) && y[hd] < 0;
        if (ea != eb)
            return INFINITY;
        if (ea)
            continue;
        const double la = x[hd + 1], lb = y[hd + 1];
        if (!(la > 0.0) || !(lb > 0.0))   /* a chunk's sum of exp: >= 1 */
            return INFINITY;
        const double lse_a = (double)x[hd] + log(la), lse_b = (double)y[hd] + log(lb);
        lnum += (lse_a - lse_b) * (lse_a - lse_b);
        lden += lse_b * lse_b;
        for (int64_t k = 0; k < hd; k++) {
            const double d = x[k] / la - y[k] / lb;
            num += d * d;
            den += (y[k] / lb) * (y[k] / lb);
        }
    }
    *lse_nmse = lden > 0.0 ? lnum / lden : lnum;
    return den > 0.0 ? num / den : num;
}

/* Compares every ACT and KV tensor of the two states; returns the id of the
 * first that differs (-1: none) and describes it in why. plant: perturb
 * the device copy of tensor `plant` first (checking the checker). */
static int32_t compare_states_with(const loom_program *p, const loom_backend_vtable *va,
                                   void *gpu, const loom_backend_vtable *vb, void *cpu,
                                   int32_t plant, char *why, size_t why_len)
{
    const loom_graph *g = p->graph;
    int32_t bad = -1;

    for (int32_t i = 0; i < g->n_tensors && bad < 0; i++) {
        const loom_gtensor *t = &g->tensors[i];
        int64_t n = loom_gtensor_numel(t);
        size_t bytes = (size_t)n * loom_dtype_size(t->dtype);
        if (t->role != LOOM_ROLE_ACT && t->role != LOOM_ROLE_KV)
            continue;
        void *a = malloc(bytes ? bytes : 1), *b = malloc(bytes ? bytes : 1);
        CHECK(a && b, "out of memory for tensor '%s'", t->name);
        if (!a || !b) {
            free(a);
            free(b);
            return i;
        }
        CHECK_OK(va->read_tensor(gpu, i, a));
        CHECK_OK(vb->read_tensor(cpu, i, b));
        if (t->dtype == LOOM_DTYPE_I64) {   /* the fused MLP's fixed point: its values */
            for (int64_t k = 0; k < n; k++) {
                ((float *)a)[k] = loom_fix_to_f32(((const int64_t *)a)[k]);
                ((float *)b)[k] = loom_fix_to_f32(((const int64_t *)b)[k]);
            }
        }
        bool f32 = t->dtype == LOOM_DTYPE_F32 || t->dtype == LOOM_DTYPE_I64;
        const bool part = strstr(t->name, "attn_partials") != NULL;
        if (i == plant && n > 0) {   /* element 0 (partials: the first m): written by step 0 */
            if (part && n > g->cfg.head_dim)
                ((float *)a)[g->cfg.head_dim] += 1.0f;
            else if (f32)
                ((float *)a)[0] += 0.5f + 2.0f * fabsf(((float *)a)[0]);
            else
                ((uint16_t *)a)[0] ^= 0x4000;   /* the top exponent bit */
        }
        if (f32) {
            double lse = 0.0;
            double e = part ? nmse_partials(a, b, n, g->cfg.head_dim, &lse) : nmse_f32(a, b, n);
            const double raw = part && plant < 0 ? nmse_f32(a, b, n) : 0.0;
            if (raw > ACT_NMSE)   /* what the raw check saw */
                printf("  note: '%s' raw normalised MSE %.3g; o / l %.3g, log-weights %.3g\n",
                       t->name, raw, e, lse);
            if (!(e <= ACT_NMSE)) {
                bad = i;
                snprintf(why, why_len, "tensor '%s': normalised MSE %.3g > %.1g", t->name, e,
                         ACT_NMSE);
            } else if (!(lse <= ACT_NMSE)) {
                bad = i;
                snprintf(why, why_len, "tensor '%s': the chunks' log-weights m + ln l: "
                         "normalised MSE %.3g > %.1g", t->name, lse, ACT_NMSE);
            }
        } else if (t->dtype == LOOM_DTYPE_BF16) {
            double e = 0;
            int64_t k = first_bad_row(a, b, t->rows, t->cols, g->cfg.head_dim, &e);
            if (k >= 0 && t->role == LOOM_ROLE_KV && plant < 0 && getenv("LOOM_TEST_DIAG"))
                diag_kv(g, t, a, b);
            if (k >= 0) {
                bad = i;
                snprintf(why, why_len, "tensor '%s': position %lld, kv head %lld: rel L2 %.3g "
                         "> %.0e (element %lld: %g vs %g)", t->name, (long long)(k / t->cols),
                         (long long)(k % t->cols / g->cfg.head_dim), e, KV_REL, (long long)k,
                         (double)bf16f(((uint16_t *)a)[k]), (double)bf16f(((uint16_t *)b)[k]));
            }
        }
        free(a);
        free(b);
    }
    return bad;
}

static int32_t compare_states(const loom_program *p, void *gpu, void *cpu, int32_t plant,
                              char *why, size_t why_len)
{
    return compare_states_with(p, &loom_cuda_backend, gpu, &loom_cpu_backend, cpu, plant, why,
                               why_len);
}

/* ------------------------------------------------------------------ (a) */

static void op_by_op(const char *preset)
{
    uint64_t seed = loom_test_seed() ^ loom_fnv1a(preset);
    loom_model *m = open_preset(preset, seed);
    loom_program *p = m ? compile(m, false) : NULL;
    void *gpu = NULL, *cpu = NULL;
    int32_t prompt[OP_PROMPT], out[4];
    loom_run_result rg, rc;
    char why[256] = "";

    if (!p)
        goto out;
    loom_test_random_tokens(seed, p->graph->cfg.vocab_size, prompt, OP_PROMPT);
    gpu = create(&loom_cuda_backend, p, 0);
    cpu = create(&loom_cpu_backend, p, 0);
    if (!gpu || !cpu)
        goto out;
    /* Teacher-forced: every step's input is the prompt, so every tensor is
     * a function of the prompt alone (no argmax near-tie can diverge). */
    loom_run_request req = loom_test_request(prompt, OP_PROMPT, OP_PROMPT, out, NULL);
    CHECK_OK(loom_cuda_backend.run(gpu, &req, &rg));
    CHECK_OK(loom_cpu_backend.run(cpu, &req, &rc));
    CHECK(rg.n_steps_run == OP_PROMPT, "%s: %d steps run", preset, rg.n_steps_run);

    int32_t bad = compare_states(p, gpu, cpu, -1, why, sizeof why);
    CHECK(bad < 0, "%s: first tensor that differs: %s", preset, why);
    if (getenv("LOOM_TEST_DIAG")) {   /* which side differs: a 1-thread CPU run as referee */
        loom_engine_params ep = loom_engine_default_params();
        void *cpu1 = NULL;
        loom_run_result r1;
        char w2[256] = "";
        ep.n_threads = 1;
        if (loom_cpu_backend.create(p, &ep, &cpu1) == LOOM_OK &&
            loom_cpu_backend.run(cpu1, &req, &r1) == LOOM_OK) {
            int32_t b1 = compare_states_with(p, &loom_cuda_backend, gpu, &loom_cpu_backend, cpu1,
                                             -1, w2, sizeof w2);
            printf("  diag %s: gpu vs cpu(1 thread): %s\n", preset, b1 < 0 ? "agree" : w2);
            b1 = compare_states_with(p, &loom_cpu_backend, cpu, &loom_cpu_backend, cpu1, -1, w2,
                                     sizeof w2);
            printf("  diag %s: cpu(all threads) vs cpu(1 thread): %s\n", preset,
                   b1 < 0 ? "agree" : w2);
        }
        if (cpu1)
            loom_cpu_backend.destroy(cpu1);
    }
    printf("  %s: %d tensors agree after %d steps (%.2f ms/step on the GPU)\n", preset,
           p->graph->n_tensors, OP_PROMPT, rg.ms_per_step);

    /* The checker, once, with a planted error in an activation, a KV cache and
     * (a split attention) the partials. */
    for (int32_t i = 0; i < p->graph->n_tensors && bad < 0; i++) {
        const loom_gtensor *t = &p->graph->tensors[i];
        if (strstr(t->name, "layers.0.mid") || strstr(t->name, "layers.0.k_cache") ||
            strstr(t->name, "layers.0.attn_partials")) {
            int32_t got = compare_states(p, gpu, cpu, i, why, sizeof why);
            CHECK(got == i, "%s: planted error in '%s' not caught (got %d)", preset, t->name,
                  got);
        }
    }
out:
    if (gpu)
        loom_cuda_backend.destroy(gpu);
    if (cpu)
        loom_cpu_backend.destroy(cpu);
    loom_program_free(p);
    loom_model_free(m);
}

static void test_op_by_op(void)
{
    static const char *const presets[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny",
                                          "qwen3-0.6b"};
    const char *only = getenv("LOOM_TEST_PRESET");   /* one preset per process */
    setenv("LOOM_CUDA_SENTINELS", "1", 1);
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!only || !strcmp(only, presets[i]))
            op_by_op(presets[i]);
    unsetenv("LOOM_CUDA_SENTINELS");
}

/* ------------------------------------------------------------------ (b) */

static double rel_l2(const float *a, const float *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i] || b[i] != b[i])
            return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0.0 ? den : 1.0));
}

/* (b) at ctx positions, split KV splits (0: the compiler's) merged as
 * `merge` says (0: the compiler's choice), steps steps from a
 * W_PROMPT-token prompt. */
static void whole_model_at(const char *preset, int32_t ctx, int32_t split, int32_t merge,
                           int32_t steps)
{
    uint64_t seed = loom_test_seed() ^ loom_fnv1a(preset) ^ 1;
    loom_model *m = open_preset(preset, seed);
    loom_program *p = m ? compile_at(m, false, ctx, split, merge) : NULL;
    void *gpu = NULL, *cpu = NULL;
    int32_t prompt[W_PROMPT], *tg = NULL, *tc = NULL;
    float *lg = NULL, *lc = NULL;
    loom_run_result rg, rc;
    int64_t V;

    if (!p)
        goto out;
    V = p->graph->cfg.vocab_size;
    loom_test_random_tokens(seed, (int32_t)V, prompt, W_PROMPT);
    tg = calloc((size_t)steps + 1, sizeof *tg);
    tc = calloc((size_t)steps + 1, sizeof *tc);
    lg = calloc((size_t)(steps * V), sizeof *lg);
    lc = calloc((size_t)(steps * V), sizeof *lc);
    gpu = create(&loom_cuda_backend, p, 0);
    cpu = create(&loom_cpu_backend, p, 0);
    CHECK(tg && tc && lg && lc, "%s: out of memory for %d steps", preset, steps);
    if (!gpu || !cpu || !tg || !tc || !lg || !lc)
        goto out;
    loom_run_request qg = loom_test_request(prompt, W_PROMPT, steps, tg, lg);
    loom_run_request qc = loom_test_request(prompt, W_PROMPT, steps, tc, lc);
    CHECK_OK(loom_cuda_backend.run(gpu, &qg, &rg));
    CHECK_OK(loom_cpu_backend.run(cpu, &qc, &rc));
    CHECK(rg.n_steps_run == steps && rg.n_generated == steps - W_PROMPT + 1,
          "%s: %d steps, %d tokens", preset, rg.n_steps_run, rg.n_generated);
    int32_t k;
    for (k = 0; k < steps; k++) {
        double e = rel_l2(lg + k * V, lc + k * V, V);
        CHECK(e <= LOGIT_REL, "%s: step %d logits rel L2 %.3g", preset, k, e);
        int32_t gi = k + 1 - W_PROMPT;
        if (gi < 0 || tg[gi] == tc[gi])
            continue;
        /* Different tokens: must be a near tie in the reference logits. */
        float a = lc[k * V + tg[gi]], b = lc[k * V + tc[gi]];
        CHECK(fabsf(a - b) <= 1e-3f * (fabsf(b) + 1e-3f) + 1e-4f,
              "%s: step %d: token %d (GPU) vs %d (CPU), CPU logits %g vs %g", preset, k,
              tg[gi], tc[gi], (double)a, (double)b);
        break;
    }
    printf("  %s (ctx %d, split %d, merge %d): %d steps agree%s; GPU %.3f ms/step, total "
           "%.1f ms\n", preset, ctx, split, merge, k, k < steps ? " (then a near tie)" : "",
           rg.ms_per_step, rg.total_ms);
out:
    if (gpu)
        loom_cuda_backend.destroy(gpu);
    if (cpu)
        loom_cpu_backend.destroy(cpu);
    free(tg);
    free(tc);
    free(lg);
    free(lc);
    loom_program_free(p);
    loom_model_free(m);
}

static void whole_model(const char *preset)
{
    whole_model_at(preset, CTX, 0, 0, W_STEPS);
}

static void test_whole_model(void)
{
    whole_model("qwen3-tiny");
    whole_model("llama-tiny");
    whole_model("qwen3-0.6b");
    /* Attention tiles that read several batches of positions past the one
     * loaded before their wait (attention.cuh: the plain batches' loop):
     * 2 splits, 160 steps - split 1 spans up to 80 positions by the end. */
    whole_model_at("qwen3-0.6b", 256, 2, 0, 160);
    /* One split of up to 200 positions: the first batch of 64 preloaded
     * before the wait, two more read from the cache after it, and the
     * batch that holds the step's own row (from shared memory). */
    whole_model_at("qwen3-0.6b", 256, 1, 0, 200);
    /* 4 splits merged by an ATTN_MERGE op (1) and by the last tile of each
     * group to finish (2, program.h arrive), whichever is the default. */
    whole_model_at("qwen3-0.6b", CTX, 4, 1, W_STEPS);
    whole_model_at("qwen3-0.6b", CTX, 4, 2, W_STEPS);
    /* One staging slot, as 1.7B and 8B have it (0.6B takes two): the
     * cases above run the two-slot protocol only. */
    setenv("LOOM_CUDA_STAGE_SLOTS", "1", 1);
    printf("  with LOOM_CUDA_STAGE_SLOTS=1:\n");
    whole_model("qwen3-0.6b");
    unsetenv("LOOM_CUDA_STAGE_SLOTS");
    /* Plain floats and a released counter at every hop (LOOM_CUDA_LL=0):
     * the default passes attention's output to o_proj as LL words (4). */
    setenv("LOOM_CUDA_LL", "0", 1);
    printf("  with LOOM_CUDA_LL=0:\n");
    whole_model("qwen3-0.6b");
    whole_model_at("qwen3-0.6b", CTX, 4, 1, W_STEPS);
    unsetenv("LOOM_CUDA_LL");
}

static void test_deterministic(void);

/* (a), (b) and (f) with the MLP fused (graph.h mlp_fuse 2, not the
 * default): down's tiles after gate_up's on each SM, their terms added to
 * the fixed-point residual stream by 64-bit atomics (linear.cuh ACCUM),
 * in any order and still bit-identical run to run. */
static void test_fused_mlp(void)
{
    g_mlp_fuse = 2;
    setenv("LOOM_CUDA_SENTINELS", "1", 1);
    op_by_op("qwen3-tiny");
    op_by_op("qwen3-0.6b");
    unsetenv("LOOM_CUDA_SENTINELS");
    whole_model("qwen3-0.6b");
    test_deterministic();
    g_mlp_fuse = 0;
}

/* ------------------------------------------------------------------ (c) */

static void test_timeout(void)
{
    loom_model *m = open_preset("qwen3-tiny", loom_test_seed());
    loom_program *p = m ? compile(m, true) : NULL;
    void *gpu = NULL;
    int32_t prompt[3] = {1, 2, 3}, out[8], victim = -1;
    loom_run_result r;
    char want[64];

    if (!p)
        goto out;
    /* ARGMAX's wait on the lm_head tiles (a counter in every LL mode:
     * logits are plain data): its threshold can never be met. */
    for (int32_t i = 0; i < p->n_tasks && victim < 0; i++)
        if (p->tasks[i].op == p->graph->op_argmax && p->tasks[i].n_waits > 0)
            victim = i;
    CHECK(victim >= 0, "no argmax task with a wait");
    if (victim < 0)
        goto out;
    p->tasks[victim].waits[0].needed += 1000;
    gpu = create(&loom_cuda_backend, p, 300);
    if (!gpu)
        goto out;
    loom_run_request req = loom_test_request(prompt, 3, 6, out, NULL);
    loom_status st = loom_cuda_backend.run(gpu, &req, &r);
    CHECK(st == LOOM_ERR_TIMEOUT, "run -> %s: %s", loom_status_string(st), loom_last_error());
    /* The first wait to time out is the victim's or any downstream of it
     * that started waiting earlier (the next step's embed, ...): the
     * message must name one of the program's counters, its value and
     * threshold. */
    bool named = false;
    for (int32_t c = 0; c < p->n_counters && !named; c++) {
        snprintf(want, sizeof want, "'%s'", p->counters[c].name);
        named = strstr(loom_last_error(), want) != NULL;
    }
    CHECK(named && strstr(loom_last_error(), "needs") && strstr(loom_last_error(), "SM"),
          "message '%s' does not name the SM, counter and threshold", loom_last_error());
    printf("  %s\n", loom_last_error());
out:
    if (gpu)
        loom_cuda_backend.destroy(gpu);
    loom_program_free(p);
    loom_model_free(m);
}

/* ------------------------------------------------------------------ (d), (e) */

typedef struct stopper {
    int32_t seen, stop_after;
    int32_t last_index;
    bool    in_order;
} stopper;

static bool on_token(void *user, int32_t token, int32_t index)
{
    stopper *s = user;
    (void)token;
    if (index != s->last_index + 1)
        s->in_order = false;
    s->last_index = index;
    s->seen++;
    return s->seen < s->stop_after;
}

static void test_stop_and_limits(void)
{
    loom_model *m = open_preset("qwen3-tiny", loom_test_seed());
    loom_program *p = m ? compile(m, false) : NULL;
    void *gpu = NULL;
    int32_t prompt[4], out[CTX + 1], full[CTX + 1];
    loom_run_result r;

    if (!p)
        goto out;
    loom_test_random_tokens(loom_test_seed(), p->graph->cfg.vocab_size, prompt, 4);
    gpu = create(&loom_cuda_backend, p, 0);
    if (!gpu)
        goto out;

    /* on_token returning false at the 3rd token. */
    stopper s = {0, 3, -1, true};
    loom_run_request req = loom_test_request(prompt, 4, 40, out, NULL);
    req.on_token = on_token;
    req.user = &s;
    CHECK_OK(loom_cuda_backend.run(gpu, &req, &r));
    CHECK(r.n_generated == 3 && s.seen == 3 && s.in_order, "on_token stop: %d generated, %d seen",
          r.n_generated, s.seen);
    /* The kernel may run a few steps more before it sees the host's flag
     * (a tiny model's step takes microseconds); the tokens after it are
     * not delivered. */
    printf("  on_token stop after 3 tokens: %d of 40 steps ran\n", r.n_steps_run);

    /* EOS: the 5th token of a full run, as the EOS id, stops there. */
    req = loom_test_request(prompt, 4, 30, full, NULL);
    CHECK_OK(loom_cuda_backend.run(gpu, &req, &r));
    int32_t eos_at = 4;
    for (int32_t i = 0; i < eos_at; i++)
        if (full[i] == full[eos_at])
            eos_at = i;   /* an earlier occurrence stops first */
    req = loom_test_request(prompt, 4, 30, out, NULL);
    req.eos[0] = full[eos_at];
    req.n_eos = 1;
    CHECK_OK(loom_cuda_backend.run(gpu, &req, &r));
    CHECK(r.n_generated == eos_at + 1 && out[eos_at] == full[eos_at],
          "eos stop: %d generated, want %d", r.n_generated, eos_at + 1);
    CHECK(r.n_steps_run == 4 + eos_at, "eos stop: %d steps run, want %d", r.n_steps_run,
          4 + eos_at);

    /* Bad requests. */
    int32_t bad[2] = {1, p->graph->cfg.vocab_size};
    req = loom_test_request(bad, 2, 4, out, NULL);
    CHECK(loom_cuda_backend.run(gpu, &req, &r) == LOOM_ERR_LIMIT &&
              strstr(loom_last_error(), "index 1"), "bad token: %s", loom_last_error());
    req = loom_test_request(prompt, 4, CTX + 1, out, NULL);
    CHECK(loom_cuda_backend.run(gpu, &req, &r) == LOOM_ERR_LIMIT, "n_steps > context: %s",
          loom_last_error());
    /* Still usable afterwards. */
    req = loom_test_request(prompt, 4, 8, out, NULL);
    CHECK_OK(loom_cuda_backend.run(gpu, &req, &r));
    CHECK(r.n_generated == 5 && out[0] == full[0], "rerun: %d tokens, first %d vs %d",
          r.n_generated, out[0], full[0]);
out:
    if (gpu)
        loom_cuda_backend.destroy(gpu);
    loom_program_free(p);
    loom_model_free(m);
}

/* ------------------------------------------------------------------ (f) */

/* Every ACT and KV tensor of the engine's state, concatenated (malloc'd). */
static unsigned char *snapshot(const loom_program *p, void *gpu, size_t *len)
{
    const loom_graph *g = p->graph;
    size_t total = 0, off = 0;
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].role == LOOM_ROLE_ACT || g->tensors[i].role == LOOM_ROLE_KV)
            total += (size_t)loom_gtensor_numel(&g->tensors[i]) *
                     loom_dtype_size(g->tensors[i].dtype);
    unsigned char *buf = malloc(total ? total : 1);
    CHECK(buf != NULL, "out of memory for a %zu-byte snapshot", total);
    for (int32_t i = 0; buf && i < g->n_tensors; i++) {
        const loom_gtensor *t = &g->tensors[i];
        if (t->role != LOOM_ROLE_ACT && t->role != LOOM_ROLE_KV)
            continue;
        CHECK_OK(loom_cuda_backend.read_tensor(gpu, i, buf + off));
        off += (size_t)loom_gtensor_numel(t) * loom_dtype_size(t->dtype);
    }
    *len = total;
    return buf;
}

/* The tensor holding byte `at` of a snapshot, for the message. */
static const char *tensor_at(const loom_program *p, size_t at)
{
    const loom_graph *g = p->graph;
    size_t off = 0;
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const loom_gtensor *t = &g->tensors[i];
        if (t->role != LOOM_ROLE_ACT && t->role != LOOM_ROLE_KV)
            continue;
        off += (size_t)loom_gtensor_numel(t) * loom_dtype_size(t->dtype);
        if (at < off)
            return t->name;
    }
    return "?";
}

/* (f) Determinism: the kernel has no floating-point atomics and fixed
 * reduction orders, so the same request on the same engine must give
 * bit-identical tokens, logits, activations and KV caches every time,
 * whatever the timing. A read that races its producer shows up here as a
 * difference in some run, however small, where a comparison with the CPU
 * backend has to allow for rounding. 5 runs of qwen3-0.6b shapes: 12 prompt
 * tokens, then greedy generation to 40 steps. */
static void test_deterministic(void)
{
    const char *preset = "qwen3-0.6b";
    uint64_t seed = loom_test_seed() ^ 0xd37e5u;
    loom_model *m = open_preset(preset, seed);
    loom_program *p = m ? compile(m, false) : NULL;
    void *gpu = NULL;
    unsigned char *first = NULL;
    size_t len0 = 0;
    int32_t prompt[12], out0[W_STEPS], out[W_STEPS];
    float *lg0 = NULL, *lg = NULL;
    int differ = 0;

    if (!p)
        goto out;
    gpu = create(&loom_cuda_backend, p, 0);
    if (!gpu)
        goto out;
    loom_test_random_tokens(seed, p->graph->cfg.vocab_size, prompt, 12);
    size_t nlog = (size_t)W_STEPS * (size_t)p->graph->cfg.vocab_size;
    lg0 = malloc(sizeof(float) * nlog);
    lg = malloc(sizeof(float) * nlog);
    CHECK(lg0 && lg, "out of memory for logits");
    for (int run = 0; lg0 && lg && run < 5; run++) {
        memset(run ? out : out0, 0xff, sizeof out);   /* only generated tokens are written */
        loom_run_request req = loom_test_request(prompt, 12, W_STEPS, run ? out : out0,
                                                 run ? lg : lg0);
        loom_run_result r;
        size_t len = 0;
        CHECK_OK(loom_cuda_backend.run(gpu, &req, &r));
        unsigned char *snap = snapshot(p, gpu, &len);
        if (!snap)
            break;
        if (run == 0) {
            first = snap;
            len0 = len;
            continue;
        }
        size_t at = 0;
        while (at < len && snap[at] == first[at])
            at++;
        CHECK(len == len0 && at == len, "%s: run %d differs from run 0 in tensor '%s' "
              "(byte %zu of the state)", preset, run, tensor_at(p, at), at);
        CHECK(!memcmp(out, out0, sizeof out), "%s: run %d generated other tokens", preset, run);
        CHECK(!memcmp(lg, lg0, sizeof(float) * nlog), "%s: run %d: other logits", preset, run);
        differ += at != len;
        free(snap);
    }
    printf("  %s: 5 runs of %d steps, %s\n", preset, W_STEPS,
           differ ? "NOT bit-identical" : "bit-identical state, tokens and logits");
out:
    free(first);
    free(lg0);
    free(lg);
    if (gpu)
        loom_cuda_backend.destroy(gpu);
    loom_program_free(p);
    loom_model_free(m);
}

int main(void)
{
    static const loom_test_case cases[] = {
        TEST(test_op_by_op), TEST(test_whole_model), TEST(test_fused_mlp), TEST(test_timeout),
        TEST(test_stop_and_limits), TEST(test_deterministic),
    };
    char name[256] = "";

    if (loom_cuda_device_sms(&g_sms, name, sizeof name) != LOOM_OK) {
        printf("skipped: no CUDA GPU (%s)\n", loom_last_error());
        return 77;
    }
    printf("device: %s, %d SMs\n", name, g_sms);
    return loom_test_run(__FILE__, cases, (int)(sizeof cases / sizeof cases[0]));
}
