/* xcheck.c - the host side of the LOOM_XCHECK debug mode (tasks/common.cuh).
 *
 * With LOOM_CUDA_XCHECK=1 the generated kernel records, for the first
 * XC_STEPS steps, u32 sums of the bit patterns of every task's inputs and
 * outputs. After the run this file checks two invariants that hold in any
 * correct execution, whatever the timing:
 *   1. every tile of a LINEAR op read the same input vector (8 segment sums);
 *   2. every ATTENTION tile read, for each 32 rows of its qkv slice, exactly
 *      the values the qkv tiles stored there in that step;
 *   3. the K and V cache rows hold at the end of the run what the attention
 *      tiles stored into them (nothing overwrote them later).
 * A violation names the step, the tile, its SM, the segment, and when the
 * tile started against when the producers of its input ended (%globaltimer,
 * ns), which separates "read before the producer finished" from "read a
 * stale copy after it finished".
 *
 * defines: loom_cuda_xcheck_enabled, loom_cuda_xcheck_init, _arm, _report,
 *          _free */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/xcheck.h"
#include "core/error.h"

#define XC_WORDS 64   /* tasks/common.cuh */
#define XC_ATTN 12
#define XC_KV 62
#define XC_STEPS 4
#define XC_MAX_REPORTS 24

typedef struct xc_dev {   /* loom_xcheck_dev of tasks/common.cuh */
    uint64_t slots, ysum;
    int32_t  steps, n_tasks, n_ops, ysegs;
} xc_dev;

bool loom_cuda_xcheck_enabled(void)
{
    const char *e = getenv("LOOM_CUDA_XCHECK");
    return e && !strcmp(e, "1");
}

static int32_t ysegs_of(const loom_program *p)
{
    int32_t m = 1;
    for (int32_t i = 0; i < p->graph->n_ops; i++)
        if (p->graph->ops[i].kind == LOOM_OP_LINEAR && p->graph->ops[i].rows > m)
            m = p->graph->ops[i].rows;
    return (m + 31) / 32;
}

loom_status loom_cuda_xcheck_init(loom_xcheck *x, const loom_cu *cu, CUmodule mod,
                                  const loom_program *p)
{
    size_t n = 0;
    loom_status st;

    memset(x, 0, sizeof *x);
    st = loom_cu_check(cu->ModuleGetGlobal(&x->var, &n, mod, "loom_xcheck"),
                       "cuModuleGetGlobal(loom_xcheck)");
    if (st == LOOM_OK && n != sizeof(xc_dev))
        return loom_fail(LOOM_ERR_BACKEND, "cuda xcheck: loom_xcheck is %zu bytes, expected %zu",
                         n, sizeof(xc_dev));
    x->ysegs = ysegs_of(p);
    x->slot_bytes = sizeof(uint32_t) * XC_WORDS * (size_t)p->n_tasks * XC_STEPS;
    x->ysum_bytes = sizeof(uint32_t) * (size_t)x->ysegs * (size_t)p->graph->n_ops * XC_STEPS;
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemAlloc(&x->slots, x->slot_bytes), "cuMemAlloc(xcheck slots)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemAlloc(&x->ysum, x->ysum_bytes), "cuMemAlloc(xcheck sums)");
    if (st != LOOM_OK)
        loom_cuda_xcheck_free(x, cu);
    return st;
}

void loom_cuda_xcheck_free(loom_xcheck *x, const loom_cu *cu)
{
    if (x->slots)
        cu->MemFree(x->slots);
    if (x->ysum)
        cu->MemFree(x->ysum);
    x->slots = x->ysum = 0;
}

loom_status loom_cuda_xcheck_arm(loom_xcheck *x, const loom_cu *cu, const loom_program *p)
{
    xc_dev d = {x->slots, x->ysum, XC_STEPS, p->n_tasks, p->graph->n_ops, x->ysegs};
    loom_status st = loom_cu_check(cu->MemsetD8(x->slots, 0, x->slot_bytes), "cuMemsetD8(xcheck)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemsetD8(x->ysum, 0, x->ysum_bytes), "cuMemsetD8(xcheck)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemcpyHtoD(x->var, &d, sizeof d), "cuMemcpyHtoD(loom_xcheck)");
    return st;
}

/* Latest end stamp (relative to t0) of the tasks of op `op` at `step`. */
static int64_t producers_end(const loom_program *p, const uint32_t *slots, int32_t step,
                             int32_t op, uint32_t t0)
{
    int64_t last = -1;
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].op == op) {
            const uint32_t *s = slots + ((size_t)step * p->n_tasks + i) * XC_WORDS;
            int64_t e = (int32_t)(s[10] - t0);
            if (s[11] && e > last)
                last = e;
        }
    return last;
}

/* The op whose output is tensor t, or -1. */
static int32_t producer_op(const loom_graph *g, int32_t t)
{
    for (int32_t i = 0; i < g->n_ops; i++)
        if (g->ops[i].y == t)
            return i;
    return -1;
}

/* Invariant 1 for op `op` at `step`: the most common segment-sum vector is
 * taken as the input; every tile that read something else is reported. */
static int32_t check_linear(const loom_program *p, const uint32_t *slots, int32_t step,
                            int32_t op, uint32_t t0, int32_t *reported)
{
    const loom_graph *g = p->graph;
    int32_t first = -1, n = 0, bad = 0, best = -1, best_votes = 0;

    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].op == op) {
            if (first < 0)
                first = i;
            n++;
        }
    /* mode by pairwise votes (an op has at most a few hundred tiles) */
    for (int32_t i = first; i < first + n; i++) {
        const uint32_t *a = slots + ((size_t)step * p->n_tasks + i) * XC_WORDS;
        int32_t votes = 0;
        for (int32_t j = first; j < first + n; j++)
            votes += !memcmp(a, slots + ((size_t)step * p->n_tasks + j) * XC_WORDS,
                             8 * sizeof(uint32_t));
        if (votes > best_votes) {
            best_votes = votes;
            best = i;
        }
    }
    const uint32_t *ref = slots + ((size_t)step * p->n_tasks + best) * XC_WORDS;
    int32_t prod = producer_op(g, g->ops[op].x);
    for (int32_t i = first; i < first + n; i++) {
        const uint32_t *a = slots + ((size_t)step * p->n_tasks + i) * XC_WORDS;
        if (!memcmp(a, ref, 8 * sizeof(uint32_t)))
            continue;
        bad++;
        if ((*reported)++ >= XC_MAX_REPORTS)
            continue;
        char name[96], segs[64] = "";
        size_t len = 0;
        loom_task_name(p, i, name, sizeof name);
        for (int k = 0; k < 8; k++)
            if (a[k] != ref[k])
                len += (size_t)snprintf(segs + len, sizeof segs - len, "%s%d", len ? "," : "", k);
        fprintf(stderr,
                "xcheck: step %d %s (SM %u) read an input x unlike %d of the op's %d tiles "
                "(segments %s of 8); it ran %lld..%lld ns, %s's tiles ended by %lld ns\n",
                step, name, a[11] - 1, best_votes, n, segs, (long long)(int32_t)(a[9] - t0),
                (long long)(int32_t)(a[10] - t0), prod >= 0 ? g->ops[prod].name : "?",
                prod >= 0 ? (long long)producers_end(p, slots, step, prod, t0) : -1LL);
    }
    return bad;
}

/* Invariant 2 for ATTENTION task i at `step`. */
static int32_t check_attention(const loom_program *p, const uint32_t *slots,
                               const uint32_t *ysum, int32_t ysegs, int32_t step, int32_t i,
                               uint32_t t0, int32_t *reported)
{
    const loom_graph *g = p->graph;
    const loom_task *t = &p->tasks[i];
    const loom_op *op = &g->ops[t->op];
    int32_t hd = g->cfg.head_dim, G = g->cfg.n_heads / g->cfg.n_kv_heads;
    int32_t heads = t->split == 0 ? G + 2 : G, segs = hd / 32, bad = 0;
    int32_t qkv = producer_op(g, op->x);
    const uint32_t *a = slots + ((size_t)step * p->n_tasks + i) * XC_WORDS;

    if (hd % 32 || qkv < 0)
        return 0;
    for (int32_t j = 0; j < heads && XC_ATTN + (j + 1) * segs <= XC_KV; j++)
        for (int32_t k = 0; k < segs; k++) {
            int64_t row = (int64_t)t->group * (G + 2) * hd + (int64_t)j * hd + 32 * k;
            uint32_t want = ysum[((size_t)step * g->n_ops + qkv) * ysegs + row / 32];
            uint32_t got = a[XC_ATTN + j * segs + k];
            if (got == want)
                continue;
            bad++;
            if ((*reported)++ >= XC_MAX_REPORTS)
                continue;
            char name[96];
            int64_t wend = -1;
            loom_task_name(p, i, name, sizeof name);
            for (int32_t q = 0; q < p->n_tasks; q++)
                if (p->tasks[q].op == qkv && p->tasks[q].row_begin <= row &&
                    row < p->tasks[q].row_end) {
                    const uint32_t *s = slots + ((size_t)step * p->n_tasks + q) * XC_WORDS;
                    wend = (int32_t)(s[10] - t0);
                }
            fprintf(stderr,
                    "xcheck: step %d %s (SM %u) read qkv rows %lld..%lld (head %d) unlike what "
                    "%s stored; it ran %lld..%lld ns, the writing tile ended at %lld ns\n",
                    step, name, a[11] - 1, (long long)row, (long long)row + 31, j,
                    g->ops[qkv].name, (long long)(int32_t)(a[9] - t0),
                    (long long)(int32_t)(a[10] - t0), (long long)wend);
        }
    return bad;
}

/* Invariant 3 for ATTENTION split-0 task i at `step` (its K and V rows). */
static loom_status check_cache(const loom_program *p, const loom_cu *cu, const uint32_t *slots,
                               const CUdeviceptr *buf, const int32_t *page_table,
                               int32_t step, int32_t i, int32_t *bad, int32_t *reported)
{
    const loom_graph *g = p->graph;
    const loom_task *t = &p->tasks[i];
    const loom_op *op = &g->ops[t->op];
    int32_t hd = g->cfg.head_dim, nkv = g->cfg.n_kv_heads, G = g->cfg.n_heads / nkv;
    int32_t ps = g->params.page_size;
    const uint32_t *a = slots + ((size_t)step * p->n_tasks + i) * XC_WORDS;
    uint16_t row[1024];

    if (t->split != 0 || hd % 32 || hd > 1024 || XC_ATTN + (G + 2) * (hd / 32) > XC_KV)
        return LOOM_OK;
    int64_t slot = (int64_t)page_table[step / ps] * ps + step % ps;
    for (int kv = 0; kv < 2; kv++) {
        int32_t tensor = kv ? op->vcache : op->kcache;
        size_t off = (size_t)((slot * nkv + t->group) * hd) * sizeof(uint16_t);
        loom_status st = loom_cu_check(cu->MemcpyDtoH(row, buf[tensor] + off,
                                                      (size_t)hd * sizeof(uint16_t)),
                                       "cuMemcpyDtoH(xcheck cache row)");
        if (st != LOOM_OK)
            return st;
        uint32_t sum = 0;
        for (int32_t e = 0; e < hd; e++)
            sum += row[e];
        if (sum == a[XC_KV + kv])
            continue;
        (*bad)++;
        if ((*reported)++ >= XC_MAX_REPORTS)
            continue;
        char name[96];
        loom_task_name(p, i, name, sizeof name);
        fprintf(stderr, "xcheck: step %d %s (SM %u): the %s cache row of position %d, kv head "
                "%d, no longer holds what it stored (bit sum %08x, stored %08x)\n", step,
                name, a[11] - 1, kv ? "V" : "K", step, t->group, sum, a[XC_KV + kv]);
    }
    return LOOM_OK;
}

loom_status loom_cuda_xcheck_report(const loom_xcheck *x, const loom_cu *cu,
                                    const loom_program *p, int32_t n_run,
                                    const CUdeviceptr *buf, const int32_t *page_table)
{
    const loom_graph *g = p->graph;
    uint32_t *slots = malloc(x->slot_bytes), *ysum = malloc(x->ysum_bytes);
    int32_t steps = n_run < XC_STEPS ? n_run : XC_STEPS, bad = 0, reported = 0;
    loom_status st;

    if (!slots || !ysum) {
        free(slots);
        free(ysum);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda xcheck: %zu bytes", x->slot_bytes);
    }
    st = loom_cu_check(cu->MemcpyDtoH(slots, x->slots, x->slot_bytes), "cuMemcpyDtoH(xcheck)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemcpyDtoH(ysum, x->ysum, x->ysum_bytes), "cuMemcpyDtoH(xcheck)");
    for (int32_t step = 0; st == LOOM_OK && step < steps; step++) {
        uint32_t t0 = UINT32_MAX;   /* the step's earliest start */
        for (int32_t i = 0; i < p->n_tasks; i++) {
            const uint32_t *s = slots + ((size_t)step * p->n_tasks + i) * XC_WORDS;
            if (s[11] && (t0 == UINT32_MAX || (int32_t)(s[9] - t0) < 0))
                t0 = s[9];
        }
        for (int32_t op = 0; op < g->n_ops; op++)   /* (ACCUM tiles read x's slices: none) */
            if (g->ops[op].kind == LOOM_OP_LINEAR && g->ops[op].epi != LOOM_EPI_ACCUM)
                bad += check_linear(p, slots, step, op, t0, &reported);
        for (int32_t i = 0; i < p->n_tasks; i++)
            if (g->ops[p->tasks[i].op].kind == LOOM_OP_ATTENTION) {
                bad += check_attention(p, slots, ysum, x->ysegs, step, i, t0, &reported);
                if (st == LOOM_OK)
                    st = check_cache(p, cu, slots, buf, page_table, step, i, &bad, &reported);
            }
    }
    free(slots);
    free(ysum);
    if (st == LOOM_OK && bad)
        return loom_fail(LOOM_ERR_BACKEND,
                         "cuda xcheck: %d tile inputs of the first %d steps differ from what "
                         "their producers wrote (listed on stderr)", bad, steps);
    if (st == LOOM_OK)
        fprintf(stderr, "xcheck: the inputs of every tile of the first %d steps agree\n", steps);
    return st;
}
