/* codegen.c - the CUDA C of a program's megakernel.
 *
 * The task library (tasks/ *.cuh) holds every device function; what is
 * generated is small: this model's shapes as compile-time constants and two
 * switches over op *variants* (ops that need the same template instance share
 * one case, e.g. the qkv op of every layer), so the source stays a few KB
 * whatever the layer count and compiles in seconds. Per-op data (tensor
 * addresses) comes from the op table at run time.
 *
 * Same program -> same bytes: only integers and printf'd constants of the
 * program go into the text.
 *
 * defines: loom_cuda_codegen, loom_cuda_op_variants, loom_cuda_smem_bytes,
 *          loom_cuda_ll_mode, loom_cuda_tensor_ll, loom_cuda_polled_waits,
 *          loom_cuda_trace_flags, loom_cuda_task_table */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/xcheck.h"
#include "core/error.h"

#define WARPS (LOOM_CUDA_THREADS / 32)
/* Opt-in shared memory per block on sm_90 (227 KB); the runtime checks the
 * device's own limit. */
#define SMEM_LIMIT (227 * 1024)

/* ------------------------------------------------------------ text buffer */

typedef struct sbuf {
    char  *s;
    size_t len, cap;
    bool   oom;
} sbuf;

static void LOOM_PRINTF(2, 3) put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 16384) + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* ------------------------------------------------------------ variants */

static int32_t group_size(const loom_graph *g)
{
    return g->cfg.n_heads / g->cfg.n_kv_heads;
}

/* linear_task's FIX (tasks/linear.cuh): x, resid I64 (the fused MLP's
 * fixed-point residual stream), the first term of its sum written, x LL
 * words. */
static int fix_flags(const loom_graph *g, const loom_op *op)
{
    int f = 0;

    if (op->x >= 0 && g->tensors[op->x].dtype == LOOM_DTYPE_I64)
        f |= 1;
    if (op->resid >= 0 && g->tensors[op->resid].dtype == LOOM_DTYPE_I64)
        f |= 2;
    if (op->epi == LOOM_EPI_RESIDUAL && op->aux >= 0)
        f |= 4;
    if (op->x >= 0 && loom_cuda_tensor_ll(g, op->x))
        f |= 8;
    return f;
}

/* Two ops share a variant when they instantiate the same template. */
static bool same_variant(const loom_graph *g, const loom_op *a, const loom_op *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case LOOM_OP_EMBED:
        return a->cols == b->cols;
    case LOOM_OP_LINEAR:
        return a->cols == b->cols && a->pro == b->pro && a->epi == b->epi &&
               (a->bias >= 0) == (b->bias >= 0) && fix_flags(g, a) == fix_flags(g, b);
    case LOOM_OP_ATTENTION:
        return (a->norm >= 0) == (b->norm >= 0) && (a->norm2 >= 0) == (b->norm2 >= 0) &&
               loom_attn_merges(a) == loom_attn_merges(b);
    default:
        return true;
    }
}

void loom_cuda_op_variants(const loom_program *p, int32_t *variant, int32_t *n_variants)
{
    const loom_graph *g = p->graph;
    int32_t n = 0;

    for (int32_t i = 0; i < g->n_ops; i++) {
        variant[i] = -1;
        for (int32_t j = 0; j < i; j++)
            if (same_variant(g, &g->ops[i], &g->ops[j])) {
                variant[i] = variant[j];
                break;
            }
        if (variant[i] < 0)
            variant[i] = n++;
    }
    *n_variants = n;
}

/* Shared memory layout (tasks/common.cuh): a 128-byte head (wait verdict,
 * the staging barriers), the tables (the op table, this SM's task records in
 * list order and their ids), the task scratch, then the weight staging
 * slots (Hopper): the first rows of linear tasks' tiles, copied in by the
 * bulk copy engine while the task (and, with two slots, the one before it)
 * waits for its inputs. */
#define SMEM_HEAD 128
/* A staging slot's size unless LOOM_CUDA_STAGE_KB says (0: off). */
#define STAGE_MAX_KB 96

static int64_t round_up(int64_t n, int64_t to)
{
    return (n + to - 1) / to * to;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t tables_bytes(const loom_program *p);
static int64_t scratch_bytes(const loom_program *p);

/* Staging slots, unless LOOM_CUDA_STAGE_SLOTS says (1 or 2): two (the next
 * task's rows stream through this task's wait) when the median linear tile
 * fits in half the room - small models, whose layers are bound by the hops'
 * latency, not by bandwidth; one otherwise, where a copy a task ahead only
 * competes with the current task's stream (H100, perf-notes v11: two slots
 * 6% faster at 0.6B, 2-3.5% slower at 1.7B and 8B). */
static int stage_slots(const loom_program *p)
{
    const char *e = getenv("LOOM_CUDA_STAGE_SLOTS");
    int64_t room = SMEM_LIMIT - SMEM_HEAD - tables_bytes(p) - scratch_bytes(p), *b, med;
    int32_t n = 0;

    if (e && *e && (atoi(e) == 1 || atoi(e) == 2))
        return atoi(e);
    b = malloc(sizeof *b * (size_t)(p->n_tasks > 0 ? p->n_tasks : 1));
    if (!b)
        return 1;
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const loom_op *op = &p->graph->ops[p->tasks[i].op];
        if (op->kind == LOOM_OP_LINEAR)
            b[n++] = (int64_t)(p->tasks[i].row_end - p->tasks[i].row_begin) * op->cols * 2;
    }
    qsort(b, (size_t)n, sizeof *b, cmp_i64);
    med = n > 0 ? b[n / 2] : 0;
    free(b);
    return n > 0 && med <= room / 2 ? 2 : 1;
}

/* The L2 look-ahead's budget (common.cuh LOOM_L2_AHEAD), unless
 * LOOM_CUDA_L2_AHEAD_KB says: L2_AHEAD_KB with one staging slot, where the
 * SMs that wait through an attention then bring gate_up's rows toward L2
 * (H100, perf-notes v17: 1.7B 1.461 -> 1.430-1.438 ms, 8B at 4096
 * positions 1% faster, 8B at 64 within noise; 128 and 384 KB no better);
 * none with two, where the next task's copy streams through the waits
 * already and the look-ahead measured 3-4% slower (0.6B). */
#define L2_AHEAD_KB 192
static int64_t l2_ahead_bytes(int slots)
{
    const char *e = getenv("LOOM_CUDA_L2_AHEAD_KB");
    int64_t kb = e && *e ? atoll(e) : slots == 1 ? L2_AHEAD_KB : 0;

    return kb > 0 ? kb * 1024 : 0;
}

/* The longest SM task list. */
static int32_t max_sm_tasks(const loom_program *p)
{
    int32_t m = 1;
    for (int32_t s = 0; s < p->n_sms; s++)
        if (p->sm_offset[s + 1] - p->sm_offset[s] > m)
            m = p->sm_offset[s + 1] - p->sm_offset[s];
    return m;
}

static int64_t ops_bytes(const loom_program *p)
{
    return round_up((int64_t)p->graph->n_ops * (int64_t)sizeof(loom_dop), 16);
}

static int64_t tasks_bytes(const loom_program *p)
{
    return round_up((int64_t)max_sm_tasks(p) * (int64_t)sizeof(loom_dtask), 16);
}

/* The page table's entries (batch 1: check_shapes). */
static int64_t n_pages(const loom_program *p)
{
    const loom_graph_params *gp = &p->graph->params;
    return (gp->max_context + gp->page_size - 1) / gp->page_size;
}

/* Offset of the page table in the tables: after the task ids. */
static int64_t pages_offset(const loom_program *p)
{
    return round_up(ops_bytes(p) + tasks_bytes(p) + (int64_t)max_sm_tasks(p) * 4, 16);
}

/* Op table + task records + task ids + page table, to a 128-byte boundary. */
static int64_t tables_bytes(const loom_program *p)
{
    return round_up(pages_offset(p) + n_pages(p) * 4, 128);
}

/* Bytes of task scratch: the largest of the linear tasks' (input vector,
 * reduction space) and the attention tasks'. */
static int64_t scratch_bytes(const loom_program *p)
{
    const loom_graph *g = p->graph;
    int64_t G = group_size(g), hd = g->cfg.head_dim, need = 0;

    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *op = &g->ops[i];
        int64_t b = 0, ch = op->cols / 8;
        if (op->kind == LOOM_OP_LINEAR && op->epi == LOOM_EPI_ACCUM)   /* row groups' sums */
            b = (ch > 0 && ch < LOOM_CUDA_THREADS ? LOOM_CUDA_THREADS / ch : 1) * op->cols * 4;
        else if (op->kind == LOOM_OP_LINEAR)
            b = ((int64_t)op->cols + 2 * WARPS) * 4;
        else if (op->kind == LOOM_OP_ATTENTION)   /* attention.cuh attn_smem */
            b = (G * hd + WARPS * G * (hd + 2) + hd + 3 * hd) * 4;
        if (op->kind == LOOM_OP_ATTN_MERGE || loom_attn_merges(op))   /* the group's partials */
            b = b > G * op->split * (hd + 2) * 4 ? b : G * op->split * (hd + 2) * 4;
        if (b > need)
            need = b;
    }
    return (need + 127) / 128 * 128;
}

/* A staging slot: STAGE_MAX_KB (or LOOM_CUDA_STAGE_KB), no more than the
 * largest linear tile nor than its share of the room the limit leaves. */
static int64_t stage_bytes(const loom_program *p)
{
    const char *e = getenv("LOOM_CUDA_STAGE_KB");
    int64_t kb = e && *e ? atoll(e) : STAGE_MAX_KB, tile = 0;
    int64_t room = SMEM_LIMIT - SMEM_HEAD - tables_bytes(p) - scratch_bytes(p);
    int64_t n = kb > 0 ? kb * 1024 : 0;

    for (int32_t i = 0; i < p->n_tasks; i++) {
        const loom_op *op = &p->graph->ops[p->tasks[i].op];
        int64_t b = (int64_t)(p->tasks[i].row_end - p->tasks[i].row_begin) * op->cols * 2;
        if (op->kind == LOOM_OP_LINEAR && b > tile)
            tile = b;
    }
    if (n > tile)
        n = tile;
    if (n > room / stage_slots(p))
        n = room / stage_slots(p);
    return n > 0 ? n / 16 * 16 : 0;
}

int64_t loom_cuda_smem_bytes(const loom_program *p, int cc_major)
{
    return SMEM_HEAD + tables_bytes(p) + scratch_bytes(p) +
           (cc_major >= 9 ? stage_slots(p) * stage_bytes(p) : 0);
}

/* ------------------------------------------------------------ LL activations */

/* tasks/common.cuh "activations": LOOM_CUDA_LL=1 or 2 has the kernel pass
 * every activation as LL words {value, tag}, its consumers learning they
 * are there from a counter added to without a release (1) or by polling the
 * words (2); 3 (experiments) LL words with released counters; 4, the
 * default, only attention's output, polled by o_proj, every other hop a
 * released counter; 0 none. On the H100 mode 4 took 2.5-3.5% off 0.6B and
 * changed 1.7B and 8B by less than the noise; modes 1-3 cost more than the
 * releases they save (docs/perf-notes.md v13, v20). */
int loom_cuda_ll_mode(void)
{
    const char *e = getenv("LOOM_CUDA_LL");
    int m = e && *e ? atoi(e) : 4;
    return m >= 0 && m <= 4 ? m : 4;
}

/* Ops whose output (y, and in modes 1-3 attention's partials) are LL words:
 * mode 4 attention's y (its merge op's, when the partials go to one); else
 * all but the lm_head (logits and argmax partials, read by the host and
 * ARGMAX) and ARGMAX (the token). */
static bool op_ll_output(const loom_op *op)
{
    switch (op->kind) {
    case LOOM_OP_ATTENTION:
        return loom_cuda_ll_mode() != 4 || op->y >= 0;
    case LOOM_OP_ATTN_MERGE:
        return true;
    case LOOM_OP_EMBED:
        return loom_cuda_ll_mode() != 4;
    case LOOM_OP_LINEAR:
        return loom_cuda_ll_mode() != 4 && op->epi != LOOM_EPI_ARGMAX;
    default:
        return false;
    }
}

int loom_cuda_ll_word(void)
{
    const char *e = getenv("LOOM_CUDA_LL_WORD");
    return e && atoi(e) == 8 ? 8 : 4;
}

void loom_cuda_ll_values(const void *words, int word, float *dst, size_t n)
{
    const uint32_t *w = words;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = word == 4 ? w[i] & ~3u : w[2 * i];
        memcpy(&dst[i], &v, sizeof v);
    }
}

bool loom_cuda_tensor_ll(const loom_graph *g, int32_t tensor)
{
    if (tensor < 0 || loom_cuda_ll_mode() == 0)
        return false;
    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *op = &g->ops[i];
        if (op_ll_output(op) && (op->y == tensor || (op->kind == LOOM_OP_ATTENTION &&
                                                     op->aux == tensor &&
                                                     loom_cuda_ll_mode() != 4)))
            return true;
    }
    return false;
}

uint32_t loom_cuda_polled_waits(const loom_program *p, int32_t task, int ll)
{
    const loom_task *t = &p->tasks[task];
    uint32_t m = 0;

    for (int32_t w = 0; (ll == 2 || ll == 4) && w < t->n_waits && w < LOOM_MAX_WAITS; w++)
        if (op_ll_output(&p->graph->ops[p->counters[t->waits[w].counter].op]))
            m |= 1u << w;
    return m;
}

uint32_t loom_cuda_trace_flags(const loom_program *p, int32_t task, int ll)
{
    uint32_t f = 0, polled = loom_cuda_polled_waits(p, task, ll);

    for (int32_t w = 0; w < LOOM_MAX_WAITS; w++)
        f |= polled >> w & 1u ? LOOM_TRACE_POLLED(w) : 0u;
    if (p->graph->ops[p->tasks[task].op].kind == LOOM_OP_ARGMAX)
        f |= LOOM_TRACE_EARLY;
    return f;
}

/* Experiments (timing only, results wrong): LOOM_CUDA_SKIP_WAITS=down+o_proj
 * (op names, or "all") drops every wait of those ops' tasks: what the
 * hops into them cost, as an upper bound of fusing them away;
 * LOOM_CUDA_RELAX_SIGNALS=down has those ops' tasks signal without a
 * release: what the release's fence costs them. */
const char *const loom_cuda_experiments[LOOM_CUDA_N_EXP] = {"LOOM_CUDA_SKIP_WAITS",
                                                            "LOOM_CUDA_RELAX_SIGNALS"};

static bool op_listed(const char *env, const char *op_name)
{
    const char *e = getenv(env);
    if (!e || !*e)
        return false;
    if (!strcmp(e, "all"))
        return true;
    size_t n = strlen(op_name);
    for (const char *q = e; (q = strstr(q, op_name)) != NULL; q += n)
        if ((q == e || q[-1] == '+') && (q[n] == '+' || q[n] == '\0'))
            return true;
    return false;
}

void loom_cuda_task_table(const loom_program *p, loom_dtask *dt)
{
    const loom_graph *g = p->graph;
    int ll = loom_cuda_ll_mode();

    for (int32_t i = 0; i < p->n_tasks; i++) {
        const loom_task *t = &p->tasks[i];
        loom_dtask *d = &dt[i];
        memset(d, 0, sizeof *d);
        d->op = t->op;
        d->tile = t->tile;
        d->row_begin = t->row_begin;
        d->row_end = t->row_end;
        d->group = t->group;
        d->split = t->split;
        /* LL 1: the counter of an op with LL outputs is added to without a
         * release; LL 2 and 4: there is none, its consumers poll the words. */
        bool poll = ll == 2 || ll == 4;
        d->signal = t->signal;
        if ((ll == 1 || poll) && t->signal >= 0 && op_ll_output(&g->ops[t->op]))
            d->signal = poll ? -1 : (t->signal | LOOM_CUDA_SIGNAL_RELAXED);
        const uint32_t polled = loom_cuda_polled_waits(p, i, ll);
        const char *name = g->ops[t->op].name;
        const bool skip = op_listed(loom_cuda_experiments[LOOM_CUDA_EXP_SKIP_WAITS], name);
        if (d->signal >= 0 &&
            op_listed(loom_cuda_experiments[LOOM_CUDA_EXP_RELAX_SIGNALS], name))
            d->signal |= LOOM_CUDA_SIGNAL_RELAXED;
        for (int32_t w = 0; w < t->n_waits && w < LOOM_MAX_WAITS; w++) {
            const loom_wait *wt = &t->waits[w];
            if ((polled >> w & 1u) || skip)
                continue;
            d->wait_counter[d->n_waits] = wt->counter;
            d->wait_needed[d->n_waits] = wt->needed;
            d->wait_offset[d->n_waits] = wt->step_offset;
            d->n_waits++;
        }
    }
}

int32_t loom_cuda_op_arrive(const loom_program *p, int32_t op)
{
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].op == op && p->tasks[i].arrive >= 0)
            return p->tasks[i].arrive - p->tasks[i].group;
    return -1;
}

/* With LL on, what the kernels read as LL words must be LL tensors, and
 * the step must fit the tag's 24 bits. */
static loom_status check_ll(const loom_program *p)
{
    const loom_graph *g = p->graph;

    if (loom_cuda_ll_mode() == 0)
        return LOOM_OK;
    if (loom_cuda_ll_word() == 8 && g->params.max_context >= (1 << 24) - 1)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "cuda codegen: context %d: LL activations tag "
                         "steps in 24 bits (LOOM_CUDA_LL=0 lifts the limit)",
                         g->params.max_context);
    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *op = &g->ops[i];
        int32_t in[2] = {-1, -1};
        if (op->kind == LOOM_OP_LINEAR) {
            in[0] = op->x;
            in[1] = op->resid;
        } else if (op->kind == LOOM_OP_ATTENTION) {
            in[0] = op->x;
        } else if (op->kind == LOOM_OP_ATTN_MERGE) {
            in[0] = op->aux;
        }
        /* Modes 1-3 read every input as LL words; mode 4 a linear op's x
         * as its tensor is (fix_flags), every other input as floats. */
        for (int k = 0; k < 2; k++) {
            bool all = loom_cuda_ll_mode() != 4, any = !all && k == 0 &&
                                                       op->kind == LOOM_OP_LINEAR;
            if (in[k] >= 0 && !any && loom_cuda_tensor_ll(g, in[k]) != all)
                return loom_fail(LOOM_ERR_UNSUPPORTED,
                                 "cuda codegen: op %d '%s' (layer %d) reads tensor '%s', which "
                                 "%s as LL words (LOOM_CUDA_LL=%d)", i, op->name, op->layer,
                                 g->tensors[in[k]].name, all ? "no op writes" : "is written",
                                 loom_cuda_ll_mode());
        }
    }
    return LOOM_OK;
}

/* ------------------------------------------------------------ checks */

/* Shapes the kernels handle; names the op and shape otherwise. */
static loom_status check_shapes(const loom_program *p)
{
    const loom_graph *g = p->graph;
    const loom_config *c = &g->cfg;

    if (g->params.max_batch != 1)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "cuda codegen: max_batch %d (only 1 is supported)",
                         g->params.max_batch);
    if (c->head_dim % 2 || c->head_dim > 1024 || group_size(g) > 16)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "cuda codegen: head_dim %d, %d query heads per KV head "
                         "(need even head_dim <= 1024, <= 16 heads per group)",
                         c->head_dim, group_size(g));
    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *op = &g->ops[i];
        if (op->kind == LOOM_OP_LINEAR && (op->cols % 8 || op->cols <= 0))
            return loom_fail(LOOM_ERR_UNSUPPORTED,
                             "cuda codegen: op %d '%s' (layer %d): %d columns, need a multiple of 8",
                             i, op->name, op->layer, op->cols);
        if (op->kind == LOOM_OP_ATTENTION && op->split < 1)
            return loom_fail(LOOM_ERR_UNSUPPORTED, "cuda codegen: op %d '%s': split %d", i,
                             op->name, op->split);
    }
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const loom_task *t = &p->tasks[i];
        const loom_op *op = &g->ops[t->op];
        if (op->kind == LOOM_OP_LINEAR && op->epi == LOOM_EPI_SILU_MUL &&
            (t->row_begin % 2 || t->row_end % 2))
            return loom_fail(LOOM_ERR_UNSUPPORTED,
                             "cuda codegen: task %d of '%s' (layer %d): rows [%d, %d) split a "
                             "gate/up pair", i, op->name, op->layer, t->row_begin, t->row_end);
        /* attention.cuh attn_arrive: group g's counter is the op's + g */
        if ((t->arrive >= 0) != loom_attn_merges(op) ||
            (t->arrive >= 0 && t->arrive != loom_cuda_op_arrive(p, t->op) + t->group))
            return loom_fail(LOOM_ERR_UNSUPPORTED,
                             "cuda codegen: task %d of '%s' (layer %d, group %d) arrives at "
                             "counter %d (need the op's first + group, and an attention that "
                             "merges itself)", i, op->name, op->layer, t->group, t->arrive);
    }
    int ll = loom_cuda_ll_mode();
    for (int32_t i = 0; i < g->n_ops && ll != 0 && ll != 4; i++)
        if (g->ops[i].kind == LOOM_OP_LINEAR && g->ops[i].epi == LOOM_EPI_ACCUM)
            return loom_fail(LOOM_ERR_UNSUPPORTED,
                             "cuda codegen: op %d '%s' (layer %d) sums into a fixed-point "
                             "tensor, which LL activations (LOOM_CUDA_LL=%d) cannot carry: "
                             "compile with the MLP unfused (LOOM_MLP_FUSE=1) or LL mode 4", i,
                             g->ops[i].name, g->ops[i].layer, ll);
    loom_status st = check_ll(p);
    if (st != LOOM_OK)
        return st;
    if (loom_cuda_smem_bytes(p, 9) > SMEM_LIMIT)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "cuda codegen: %lld bytes of shared memory needed, limit %d",
                         (long long)loom_cuda_smem_bytes(p, 9), SMEM_LIMIT);
    return LOOM_OK;
}

/* ------------------------------------------------------------ emission */

static void emit_header(sbuf *b, const loom_program *p, bool trace)
{
    const loom_graph *g = p->graph;
    const loom_config *c = &g->cfg;

    put(b, "// Generated by loom %d.%d.%d - do not edit\n", LOOM_VERSION_MAJOR,
        LOOM_VERSION_MINOR, LOOM_VERSION_PATCH);
    put(b, "// model: %s, vocab %d, hidden %d, intermediate %d, layers %d, heads %d, "
           "kv heads %d, head_dim %d%s%s%s\n",
        loom_arch_name(c->arch), c->vocab_size, c->hidden_size, c->intermediate_size,
        c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->qk_norm ? ", qk_norm" : "",
        c->attention_bias ? ", qkv bias" : "", c->tie_word_embeddings ? ", tied" : "");
    put(b, "// program: %d SMs, %d tasks, %d counters, %d ops; batch %d, context %d, "
           "page %d%s\n",
        p->n_sms, p->n_tasks, p->n_counters, g->n_ops, g->params.max_batch,
        g->params.max_context, g->params.page_size,
        g->params.record_logits ? ", logits recorded" : "");
    put(b, "#define LOOM_THREADS %d\n", LOOM_CUDA_THREADS);
    put(b, "#define LOOM_EPS %.9ef\n", (double)c->rms_norm_eps);
    put(b, "#define LOOM_PAGE_SIZE %d\n", g->params.page_size);
    put(b, "#define LOOM_N_KV %d\n", c->n_kv_heads);
    put(b, "#define LOOM_LOGITS_BY_STEP %d\n", g->params.record_logits ? 1 : 0);
    put(b, "#define LOOM_N_OPS %d\n", g->n_ops);
    put(b, "#define LOOM_OPS_BYTES %lld\n", (long long)ops_bytes(p));
    put(b, "#define LOOM_TASKS_BYTES %lld\n", (long long)tasks_bytes(p));
    put(b, "#define LOOM_TABLES_OFFSET %d\n", SMEM_HEAD);
    put(b, "#define LOOM_PAGES_OFFSET %lld\n", (long long)pages_offset(p));
    put(b, "#define LOOM_N_PAGES %lld\n", (long long)n_pages(p));
    put(b, "#define LOOM_SCRATCH_OFFSET %lld\n", (long long)(SMEM_HEAD + tables_bytes(p)));
    put(b, "#define LOOM_STAGE_OFFSET %lld\n",
        (long long)(SMEM_HEAD + tables_bytes(p) + scratch_bytes(p)));
    put(b, "#define LOOM_STAGE_BYTES %lld\n", (long long)stage_bytes(p));
    put(b, "#define LOOM_STAGE_SLOTS %d\n", stage_slots(p));
    put(b, "#define LOOM_L2_AHEAD %lld\n", (long long)l2_ahead_bytes(stage_slots(p)));
    put(b, "#define LOOM_LL %d\n", loom_cuda_ll_mode());
    put(b, "#define LOOM_LL_WORD %d\n", loom_cuda_ll_word());
    put(b, "#define LOOM_FIX_LIMIT %.1ff\n", (double)LOOM_FIX_LIMIT);
    if (loom_cuda_xcheck_enabled())   /* debug mode: xcheck.h */
        put(b, "#define LOOM_XCHECK 1\n");
    put(b, "#include \"loom/common.cuh\"\n");
    if (trace)   /* loom trace: timestamps in the task loop (megakernel.cuh) */
        put(b, "#define LOOM_TRACE 1\n#include \"loom/trace.cuh\"\n");
    put(b, "#include \"loom/embed.cuh\"\n"
           "#include \"loom/linear.cuh\"\n#include \"loom/rope_kv.cuh\"\n"
           "#include \"loom/attention.cuh\"\n#include \"loom/argmax.cuh\"\n\n");
}

/* "qkv (28 ops)" comment of a variant. */
static void emit_comment(sbuf *b, const loom_graph *g, const int32_t *variant, int32_t v)
{
    int32_t first = -1, n = 0;

    for (int32_t i = 0; i < g->n_ops; i++)
        if (variant[i] == v) {
            if (first < 0)
                first = i;
            n++;
        }
    put(b, " // %s, %d op%s\n", g->ops[first].name, n, n == 1 ? "" : "s");
}

static void emit_case(sbuf *b, const loom_graph *g, const loom_op *op, int32_t v)
{
    int32_t hd = g->cfg.head_dim, G = group_size(g);

    put(b, "    case %d: ", v);
    switch (op->kind) {
    case LOOM_OP_EMBED:
        put(b, "embed_task<%d>(p, d, t, step); break;", op->cols);
        break;
    case LOOM_OP_LINEAR:
        if (op->epi == LOOM_EPI_ACCUM)
            put(b, "linear_accum_task<%d>(p, d, t, step, sg); break;", op->cols);
        else
            put(b, "linear_task<%d, %d, %d, %s, %d>(p, d, t, step, pre, sg); break;", op->cols,
                (int)op->pro, (int)op->epi, op->bias >= 0 ? "true" : "false", fix_flags(g, op));
        break;
    case LOOM_OP_ATTENTION:
        put(b, "attention_task<%d, %d, %s, %s, %s>(p, d, t, step, acq, pre); break;", hd, G,
            op->norm >= 0 ? "true" : "false", op->norm2 >= 0 ? "true" : "false",
            loom_attn_merges(op) ? "true" : "false");
        break;
    case LOOM_OP_ATTN_MERGE:
        put(b, "attn_merge_task<%d, %d>(p, d, t, step); break;", hd, G);
        break;
    case LOOM_OP_ARGMAX:
        put(b, "argmax_task(p, d, t, step); break;");
        break;
    default:
        put(b, "break;");
        break;
    }
}

static void emit_switches(sbuf *b, const loom_graph *g, const int32_t *variant, int32_t nv)
{
    put(b, "__device__ __forceinline__ bool loom_variant_linear(int v)\n{\n    switch (v) {\n");
    for (int32_t v = 0; v < nv; v++)
        for (int32_t i = 0; i < g->n_ops; i++)
            if (variant[i] == v) {
                if (g->ops[i].kind == LOOM_OP_LINEAR)
                    put(b, "    case %d:\n", v);
                break;
            }
    put(b, "        return true;\n    default:\n        return false;\n    }\n}\n\n");

    put(b, "__device__ __forceinline__ void loom_prefetch(const loom_kparams &p, const loom_dop &d,\n"
           "                                              const loom_dtask *t, int step, bool acq,\n"
           "                                              uint4 (&pre)[LOOM_PRELOAD],\n"
           "                                              stage_state &sg)\n"
           "{\n    switch (d.variant) {\n");
    for (int32_t v = 0; v < nv; v++)
        for (int32_t i = 0; i < g->n_ops; i++)
            if (variant[i] == v) {
                const loom_op *op = &g->ops[i];
                if (op->kind == LOOM_OP_LINEAR)
                    put(b, "    case %d: linear_prefetch<%d, %s>(d, t, pre, sg); break;\n", v,
                        op->cols, op->epi == LOOM_EPI_ACCUM ? "false" : "true");
                else if (op->kind == LOOM_OP_ATTENTION)
                    put(b, "    case %d: attention_prefetch<%d, %d, %s, %s>(p, d, t, step, acq, "
                           "pre); break;\n", v, g->cfg.head_dim, group_size(g),
                        op->norm >= 0 ? "true" : "false", op->norm2 >= 0 ? "true" : "false");
                break;
            }
    put(b, "    default: break;\n    }\n}\n\n");

    put(b, "__device__ __forceinline__ void loom_dispatch(const loom_kparams &p, const loom_dop &d,\n"
           "                                              const loom_dtask *t, int step, bool acq,\n"
           "                                              const uint4 (&pre)[LOOM_PRELOAD],\n"
           "                                              stage_state &sg)\n"
           "{\n    switch (d.variant) {\n");
    for (int32_t v = 0; v < nv; v++)
        for (int32_t i = 0; i < g->n_ops; i++)
            if (variant[i] == v) {
                emit_case(b, g, &g->ops[i], v);
                emit_comment(b, g, variant, v);
                break;
            }
    put(b, "    default: break;\n    }\n}\n\n#include \"loom/megakernel.cuh\"\n");
}

loom_status loom_cuda_codegen(const loom_program *p, char **source)
{
    return loom_cuda_codegen_ex(p, false, source);
}

loom_status loom_cuda_codegen_ex(const loom_program *p, bool trace, char **source)
{
    const loom_graph *g = p->graph;
    sbuf b = {0};
    int32_t *variant, nv;
    loom_status st;

    st = check_shapes(p);
    if (st != LOOM_OK)
        return st;
    variant = malloc(sizeof(int32_t) * (size_t)(g->n_ops > 0 ? g->n_ops : 1));
    if (!variant)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda codegen: variant table of %d ops",
                         g->n_ops);
    loom_cuda_op_variants(p, variant, &nv);
    emit_header(&b, p, trace);
    emit_switches(&b, g, variant, nv);
    free(variant);
    if (b.oom) {
        free(b.s);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda codegen: source buffer");
    }
    *source = b.s;
    return LOOM_OK;
}
