/* emu_run.c - runs a preset's generated megakernel in the host emulator
 * (one CTA running every task in program order, or with EMU_GRID=1 the
 * compiler's per-SM lists on n_sms concurrent CTAs) and compares every
 * activation and KV tensor, the logits and the tokens with the CPU backend:
 *     emu_run PRESET N_PROMPT N_STEPS [SEED]
 * Exit 0 when everything agrees. */
#include <math.h>

#include "emu_common.h"

void emu_launch(const void *params, int grid);

/* fp32 tolerance (normalised MSE). The kernels' fp32 arithmetic differs
 * from the CPU backend's only by rounding (~1e-14), but a last-bit
 * difference can flip the bf16 rounding of one KV element (1 ulp, 2^-8),
 * which every later attention output then carries: ~1e-9 at the tiny
 * presets. A wrong index or sign is O(1e-3 .. 1). */
#define EMU_NMSE 1e-6

static void **g_buf;

static double nmse(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i] || b[i] != b[i])
            return INFINITY;
        if (a[i] == b[i]) {   /* also equal infinities (empty chunks: m = -inf) */
            if (isfinite(b[i]))
                den += (double)b[i] * b[i];
            continue;
        }
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

static uint64_t addr(int32_t id) { return id >= 0 ? (uint64_t)(uintptr_t)g_buf[id] : 0; }

int main(int argc, char **argv)
{
    const char *preset = argc > 1 ? argv[1] : "qwen3-tiny";
    int n_prompt = argc > 2 ? atoi(argv[2]) : 6, n_steps = argc > 3 ? atoi(argv[3]) : 6;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
    loom_model *m = NULL;
    loom_program *p = emu_program(preset, seed, &m);
    int fails = 0;
    double worst = 0;   /* largest fp32 nmse seen */

    if (!p) {
        fprintf(stderr, "emu_run: %s\n", loom_last_error());
        return 1;
    }
    const loom_graph *g = p->graph;
    int32_t V = g->cfg.vocab_size, prompt[EMU_CTX], out_cpu[EMU_CTX + 1];
    uint64_t s = seed * 7919;
    for (int i = 0; i < n_prompt; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        prompt[i] = (int32_t)((s >> 33) % (uint64_t)V);
    }

    /* CPU reference. */
    void *cpu = NULL;
    loom_engine_params ep = loom_engine_default_params();
    loom_run_request req;
    loom_run_result rc;
    memset(&req, 0, sizeof req);
    req.prompt = prompt;
    req.n_prompt = n_prompt;
    req.n_steps = n_steps;
    req.out_tokens = out_cpu;
    if (loom_cpu_backend.create(p, &ep, &cpu) != LOOM_OK ||
        loom_cpu_backend.run(cpu, &req, &rc) != LOOM_OK) {
        fprintf(stderr, "cpu: %s\n", loom_last_error());
        return 1;
    }

    /* Emulated device state: buffers, weights, page table, tables. */
    g_buf = calloc((size_t)g->n_tensors, sizeof *g_buf);
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const loom_gtensor *t = &g->tensors[i];
        size_t es = loom_cuda_tensor_ll(g, i) ? (size_t)loom_cuda_ll_word()
                                              : loom_dtype_size(t->dtype);
        size_t n = ((size_t)loom_gtensor_numel(t) * es + 15) / 16 * 16;
        g_buf[i] = aligned_alloc(64, n + 64);
        memset(g_buf[i], 0, n + 64);
        if (t->role == LOOM_ROLE_WEIGHT && loom_graph_fill_weight(g, i, 0, t->rows, g_buf[i]))
            return 1;
    }
    int32_t *pt = g_buf[g->t_page_table];
    for (int64_t i = 0; i < loom_gtensor_numel(&g->tensors[g->t_page_table]); i++)
        pt[i] = (int32_t)i;
    memcpy(g_buf[g->t_tokens], prompt, sizeof(int32_t) * (size_t)n_prompt);

    int32_t nv, *variant = calloc((size_t)g->n_ops, sizeof *variant);
    loom_cuda_op_variants(p, variant, &nv);
    loom_dtask *dt = calloc((size_t)p->n_tasks, sizeof *dt);
    loom_dop *dop = calloc((size_t)g->n_ops, sizeof *dop);
    /* EMU_GRID=1: the compiler's per-SM lists on n_sms concurrent CTAs;
     * else one CTA runs every task in program order. */
    bool grid = getenv("EMU_GRID") && atoi(getenv("EMU_GRID")) == 1;
    int32_t *list = calloc((size_t)p->n_tasks, sizeof *list), off[2] = {0, p->n_tasks};
    loom_cuda_task_table(p, dt);
    for (int32_t i = 0; i < p->n_tasks; i++)
        list[i] = i;     /* one CTA runs everything in program order */
    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *o = &g->ops[i];
        dop[i] = (loom_dop){addr(o->x), addr(o->y), addr(o->w), addr(o->norm), addr(o->norm2),
                            addr(o->bias), addr(o->resid), addr(o->aux), addr(o->kcache),
                            addr(o->vcache), variant[i], o->rows, o->cols, o->n_tiles,
                            o->split > 0 ? o->split : 1, loom_cuda_op_arrive(p, i), {0}};
    }
    dop[g->op_argmax].n_tiles = g->ops[g->op_lm_head].n_tiles;
    dop[g->op_argmax].aux = addr(g->ops[g->op_lm_head].aux);
    uint32_t *counters = calloc((size_t)p->n_counters + 1, 4);
    loom_kerror err = {0};
    int32_t stop[4] = {n_steps};
    uint64_t *stamps = calloc(EMU_CTX, 8);
    int32_t *ring = calloc(EMU_CTX + 8, 4);
    loom_kparams kp = {0};
    kp.tasks = (uintptr_t)dt;
    kp.sm_offset = grid ? (uintptr_t)p->sm_offset : (uintptr_t)off;
    kp.sm_tasks = grid ? (uintptr_t)p->sm_tasks : (uintptr_t)list;
    kp.ops = (uintptr_t)dop;
    kp.counters = (uintptr_t)counters;
    kp.tokens = addr(g->t_tokens);
    kp.page_table = addr(g->t_page_table);
    kp.rope_inv_freq = addr(g->t_rope_inv_freq);
    kp.error = (uintptr_t)&err;
    kp.stop_step = (uintptr_t)stop;
    kp.step_time = (uintptr_t)stamps;
    kp.host_ring = (uintptr_t)ring;
    kp.timeout_ns = 60000000000ull;
    kp.n_steps = n_steps;
    kp.n_prompt = n_prompt;
    kp.ll_epoch = 1;
    /* EMU_PLANT=1: a counter threshold that can never be met (ARGMAX's wait
     * on the lm_head tiles), =2: an LL input that is never written (the x
     * of the last linear op that reads LL words: the lm_head, or in LL mode
     * 4 the last o_proj) must end in the error record (the timeout path),
     * not a hang. */
    int plant = getenv("EMU_PLANT") ? atoi(getenv("EMU_PLANT")) : 0;
    void *never = NULL;
    if (plant == 1) {
        for (int32_t i = 0; i < p->n_tasks; i++)
            if (p->tasks[i].op == g->op_argmax && dt[i].n_waits > 0) {
                dt[i].wait_needed[0] += 1000;
                break;
            }
    } else if (plant == 2) {
        int32_t op = -1;
        for (int32_t i = 0; i < g->n_ops; i++)
            if (g->ops[i].kind == LOOM_OP_LINEAR && loom_cuda_tensor_ll(g, g->ops[i].x))
                op = i;
        never = op >= 0 ? calloc((size_t)g->ops[op].cols, 8) : NULL;
        if (never)
            dop[op].x = (uintptr_t)never;
    }
    if (plant)
        kp.timeout_ns = 2000000000ull;
    /* EMU_EOS=k: the CPU's k-th generated token as the EOS id. */
    int eos_at = getenv("EMU_EOS") ? atoi(getenv("EMU_EOS")) : -1;
    if (eos_at >= 0 && eos_at < n_steps - n_prompt + 1) {
        for (int i = 0; i < eos_at; i++)
            if (out_cpu[i] == out_cpu[eos_at])
                eos_at = i;
        kp.eos[0] = out_cpu[eos_at];
        kp.n_eos = 1;
    } else {
        eos_at = -1;
    }
    emu_launch(&kp, grid ? p->n_sms : 1);
    if (plant) {
        char name[96];
        loom_task_name(p, err.task, name, sizeof name);
        bool caught = err.flag == 1 && (plant == 1 ? err.counter >= 0 : err.counter == -3);
        printf("%s: planted %s %s: flag %d, SM %d, task %s, counter %d '%s' = %u < %u\n",
               preset, plant == 1 ? "wait" : "LL input", caught ? "caught" : "MISSED", err.flag,
               err.sm, name, err.counter, err.counter >= 0 ? p->counters[err.counter].name : "?",
               err.value, err.threshold);
        free(never);
        return caught ? 0 : 1;
    }
    if (err.flag) {
        printf("FAIL: emulated wait timed out: task %d counter %d\n", err.task, err.counter);
        return 1;
    }
    if (eos_at >= 0) {
        bool ok = ring[0] == eos_at + 1 && stop[0] == n_prompt + eos_at &&
                  ring[2 + eos_at] == out_cpu[eos_at];
        printf("%s: eos at generated token %d: %s (ring %d, stop step %d)\n", preset, eos_at,
               ok ? "ok" : "FAIL", ring[0], stop[0]);
        return ok ? 0 : 1;
    }

    /* Compare every ACT / KV tensor with the CPU backend. */
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const loom_gtensor *t = &g->tensors[i];
        int64_t n = loom_gtensor_numel(t);
        if (t->role != LOOM_ROLE_ACT && t->role != LOOM_ROLE_KV)
            continue;
        void *ref = calloc((size_t)n, loom_dtype_size(t->dtype));
        loom_cpu_backend.read_tensor(cpu, i, ref);
        if (loom_cuda_tensor_ll(g, i)) {   /* LL words: their values */
            float *v = malloc(sizeof *v * (size_t)n);
            loom_cuda_ll_values(g_buf[i], loom_cuda_ll_word(), v, (size_t)n);
            memcpy(g_buf[i], v, sizeof *v * (size_t)n);
            free(v);
        }
        if (t->dtype == LOOM_DTYPE_I64) {   /* fixed point (graph.h): its values, in place */
            for (int64_t k = 0; k < n; k++) {
                ((float *)g_buf[i])[k] = loom_fix_to_f32(((const int64_t *)g_buf[i])[k]);
                ((float *)ref)[k] = loom_fix_to_f32(((const int64_t *)ref)[k]);
            }
        }
        if (t->dtype == LOOM_DTYPE_F32 || t->dtype == LOOM_DTYPE_I64) {
            double e = nmse(g_buf[i], ref, n);
            worst = e > worst ? e : worst;
            if (!(e <= EMU_NMSE)) {
                printf("FAIL: tensor '%s': nmse %.3g\n", t->name, e);
                fails++;
            }
        } else {
            int64_t bad = 0;
            const uint16_t *a = g_buf[i], *b = ref;
            for (int64_t k = 0; k < n; k++) {
                float x = loom_bf16_to_f32(a[k]), y = loom_bf16_to_f32(b[k]);
                if (x != x || fabsf(x - y) > ldexpf(fmaxf(fabsf(x), fabsf(y)), -7) + 1e-7f)
                    bad++;
            }
            if (bad) {
                printf("FAIL: tensor '%s': %lld bf16 elements differ\n", t->name, (long long)bad);
                fails++;
            }
        }
        free(ref);
    }
    int32_t n_gen = n_steps - n_prompt + 1;
    if (ring[0] != n_gen || stop[0] != n_steps) {
        printf("FAIL: ring count %d (want %d), stop %d\n", ring[0], n_gen, stop[0]);
        fails++;
    }
    for (int i = 0; i < n_gen && i < ring[0]; i++)
        if (ring[2 + i] != out_cpu[i]) {
            printf("FAIL: token %d: %d vs cpu %d\n", i, ring[2 + i], out_cpu[i]);
            fails++;
            break;
        }
    printf("%s: %s (%d tensors, %d tasks, %d variants, %d generated, %s; max nmse %.2g)\n",
           preset, fails ? "FAIL" : "ok", g->n_tensors, p->n_tasks, nv, n_gen,
           grid ? "grid" : "1 CTA", worst);
    return fails ? 1 : 0;
}
