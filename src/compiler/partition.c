/* partition.c - cuts each op into tiles (tasks) and wires their counters.
 *
 * Tile counts follow the SM count: linear ops get n_sms tiles (one per SM:
 * every extra tile costs a task's fixed overhead), qkv tiles never straddle a
 * KV-head group, attn_merge (when there is one) gets one tile per group,
 * attention n_kv * split tiles.
 *
 * With the MLP fused (graph.h mlp_fuse), down (ACCUM) gets gate_up's tiles
 * halved, tile k reading only gate_up tile k's outputs on its SM: gate_up
 * has no counter and down's tiles no waits (schedule.c pins them).
 *
 * Counters are per group where producer and consumer tiles line up
 * (qkv g -> attention tiles of g -> merge g), per op otherwise. A split
 * attention that merges itself (no attn_merge op) has its tiles of group g
 * arrive at a counter of g; the last of them merges and signals.
 * embed at step k waits on argmax of step k - 1 (step_offset -1).
 *
 * defines: loom_partition, loom_attn_split_choice, loom_linear_tile_count,
 *          loom_qkv_tiles_per_group, loom_cost_context */
#include <stdlib.h>

#include "compiler/internal.h"
#include "core/error.h"

int32_t loom_attn_split_choice(const loom_graph_params *p, int32_t n_kv_heads)
{
    int32_t s = p->attn_split;
    const char *env = getenv("LOOM_ATTN_SPLIT");   /* experiments: force the split */

    if (s <= 0 && env && atoi(env) > 0)
        s = atoi(env);

    if (s <= 0) {
        int64_t d = (int64_t)n_kv_heads * (p->max_batch > 0 ? p->max_batch : 1);
        s = (int32_t)(p->n_sms / d);
        if (s > 16)
            s = 16;
        /* A split per 64 positions of context, none (1) below 2: attention
         * preloads its first 64 positions (16 warps x 4) before its wait, so
         * a tile of up to 64 does all its K/V reads off the critical path
         * (H100/H200, perf-notes v14: at 320 positions 4-8 splits beat one
         * by 7-11% at 0.6B and 1.7B, 4% at 8B; at 4096, 16 beat 32). */
        int64_t by_len = ((int64_t)p->max_context + 63) / 64;
        if (s > by_len)
            s = (int32_t)by_len;
        if (s < 2)
            s = 1;
    }
    if (s > p->max_context)
        s = p->max_context;
    return s < 1 ? 1 : s;
}

/* Where a split attention's partials are merged (graph.h attn_merge):
 * params->attn_merge when set, else (0) LOOM_ATTN_MERGE (experiments: 1 or
 * 2), else in the attention, by the last tile of each group: no merge op
 * and no hop to it (H100, perf-notes v16: 0.6B 0.772 -> 0.731 ms, 1.7B
 * 1.522 -> 1.502, 8B 5.368 -> 5.351, 0.6B at 4096 positions 1.033 ->
 * 1.020). (A merge in o_proj's prologue, every o_proj tile reading all
 * heads' partials, measured slower than the op at every split tried and
 * was removed: perf-notes v14, v16.) */
int32_t loom_attn_merge_mode(const loom_graph_params *p, int32_t split)
{
    const char *force = getenv("LOOM_ATTN_MERGE");
    int32_t mode = p->attn_merge;

    if (split <= 1)
        return 0;
    if (mode == 0 && force && atoi(force) >= 1 && atoi(force) <= 2)
        mode = atoi(force);
    return mode == 0 ? LOOM_MERGE_ATTN : mode;
}

/* Weight bytes a linear tile may hold: no limit (one tile per SM and op)
 * unless LOOM_TILE_MAX_KB asks for smaller tiles (experiments: more tiles
 * per SM cost a task's fixed overhead each, ~3-4 us on the H100;
 * docs/perf-notes.md v5). */
static uint64_t tile_max_bytes(void)
{
    const char *e = getenv("LOOM_TILE_MAX_KB");
    long long kb = e ? atoll(e) : 0;
    return kb > 0 ? (uint64_t)kb * 1024u : UINT64_MAX;
}

int32_t loom_linear_tile_count(int64_t rows, int64_t cols, int32_t n_sms, int32_t unit)
{
    int64_t units = rows / unit, n = n_sms;
    uint64_t bytes = (uint64_t)rows * (uint64_t)cols * 2, max = tile_max_bytes();

    if (bytes / (uint64_t)n > max) {
        n = (int64_t)((bytes + max - 1) / max);
        n = (n + n_sms - 1) / n_sms * n_sms;
    }
    if (n > units)
        n = units;
    return n < 1 ? 1 : (int32_t)n;
}

/* LOOM_MLP_FUSE_DEFAULT: 1 until the fused MLP measures faster. */
#define LOOM_MLP_FUSE_DEFAULT 1

bool loom_mlp_fused(const loom_graph_params *p, const loom_config *c)
{
    const char *force = getenv("LOOM_MLP_FUSE");
    int32_t mode = p->mlp_fuse;

    if (mode == 0 && force && atoi(force) >= 1 && atoi(force) <= 2)
        mode = atoi(force);
    if (mode == 0)
        mode = LOOM_MLP_FUSE_DEFAULT;
    return mode == 2 && loom_linear_tile_count(2 * (int64_t)c->intermediate_size, c->hidden_size,
                                               p->n_sms > 0 ? p->n_sms : 1, 2) <=
                            LOOM_FIX_MAX_TILES;
}

bool loom_linear_after_attention(const loom_graph *g, int32_t op)
{
    const char *e = getenv("LOOM_AFTER_ATTN_TILES");

    if (op <= 0 || op >= g->n_ops || (e && atoi(e) == 0))
        return false;
    const loom_op *o = &g->ops[op], *a = &g->ops[op - 1];
    return o->kind == LOOM_OP_LINEAR && a->kind == LOOM_OP_ATTENTION && a->n_tiles > 0 &&
           3 * a->n_tiles <= g->params.n_sms;
}

int32_t loom_qkv_tiles_per_group(const loom_config *c, int32_t n_sms)
{
    int64_t G = c->n_heads / c->n_kv_heads, rows = (G + 2) * c->head_dim, n = 1;
    uint64_t bytes = (uint64_t)rows * (uint64_t)c->hidden_size * 2, max = tile_max_bytes();

    /* k * n_sms tiles in all (floor per group: no SM runs k + 1 of them),
     * k the smallest multiple keeping tiles under the weight limit */
    for (int64_t k = 1; k <= 64; k++) {
        n = k * n_sms / c->n_kv_heads;
        if (n >= 1 && bytes / (uint64_t)n <= max)
            break;
    }
    if (n > rows)
        n = rows;
    return n < 1 ? 1 : (int32_t)n;
}

bool loom_op_feeds_accum(const loom_graph *g, int32_t op)
{
    if (op < 0 || op + 1 >= g->n_ops)
        return false;
    const loom_op *o = &g->ops[op], *n = &g->ops[op + 1];
    return o->kind == LOOM_OP_LINEAR && o->epi == LOOM_EPI_SILU_MUL && n->kind == LOOM_OP_LINEAR &&
           n->epi == LOOM_EPI_ACCUM && n->x == o->y;
}

int32_t loom_task_local_input(const loom_program *p, int32_t task)
{
    const loom_task *t = &p->tasks[task];
    const loom_op *o = &p->graph->ops[t->op];

    if (o->kind != LOOM_OP_LINEAR || o->epi != LOOM_EPI_ACCUM || t->op == 0)
        return -1;
    /* the op before has as many tiles, its tasks just before this op's */
    int32_t k = task - p->graph->ops[t->op - 1].n_tiles;
    return k >= 0 && p->tasks[k].op == t->op - 1 && p->tasks[k].tile == t->tile ? k : -1;
}

int64_t loom_cost_context(const loom_graph *g)
{
    int64_t n = g->params.max_context / 2;
    return n < 1 ? 1 : n;
}

/* Growing arrays of the program under construction. */
typedef struct part {
    loom_program *p;
    int32_t cap_tasks, cap_counters;
    int32_t *op_counter;      /* [n_ops] first counter of the op            */
    bool *op_per_group;       /* [n_ops] one counter per group              */
    int32_t *op_first_task;   /* [n_ops + 1]                                */
} part;

static loom_status grow(void **arr, int32_t *cap, int32_t n, size_t esz)
{
    if (n < *cap)
        return LOOM_OK;
    int32_t c = *cap ? 2 * *cap : 256;
    void *a = realloc(*arr, (size_t)c * esz);
    if (!a)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "partition: %d entries", c);
    *arr = a;
    *cap = c;
    return LOOM_OK;
}

static loom_status add_counter(part *s, int32_t op, const char *name, int32_t *id)
{
    loom_program *p = s->p;
    loom_status st = grow((void **)&p->counters, &s->cap_counters, p->n_counters,
                          sizeof *p->counters);
    if (st != LOOM_OK)
        return st;
    loom_counter_info *c = &p->counters[p->n_counters];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->op = op;
    *id = p->n_counters++;
    return LOOM_OK;
}

static loom_status add_task(part *s, int32_t op, int32_t rb, int32_t re, int32_t group,
                            int32_t split, int32_t signal, int32_t arrive)
{
    loom_program *p = s->p;
    loom_status st = grow((void **)&p->tasks, &s->cap_tasks, p->n_tasks, sizeof *p->tasks);
    if (st != LOOM_OK)
        return st;
    loom_task *t = &p->tasks[p->n_tasks];
    memset(t, 0, sizeof *t);
    t->op = op;
    t->tile = p->n_tasks - s->op_first_task[op];
    t->row_begin = rb;
    t->row_end = re;
    t->group = group;
    t->split = split;
    t->signal = signal;
    t->arrive = arrive;
    /* the tasks arriving at one counter signal once a step: the last */
    if (signal >= 0 && (arrive < 0 || ++p->counters[arrive].signals == 1))
        p->counters[signal].signals++;
    p->n_tasks++;
    return LOOM_OK;
}

/* Op prefix for names: "L3.o_proj" or "lm_head". */
static void op_label(const loom_op *o, char *buf, size_t len)
{
    if (o->layer >= 0)
        snprintf(buf, len, "L%d.%s", o->layer, o->name);
    else
        snprintf(buf, len, "%s", o->name);
}

/* Counters of op i: one per group for qkv and for split attention followed
 * by a merge op (group by group), one for the op otherwise; a split
 * attention that merges itself also has one per group its tiles arrive at
 * (the last merges the group), after the op's. */
static loom_status make_counters(part *s, int32_t i)
{
    const loom_graph *g = s->p->graph;
    const loom_op *o = &g->ops[i];
    char label[40], name[64];
    bool per_group = (o->kind == LOOM_OP_LINEAR && strcmp(o->name, "qkv") == 0) ||
                     (o->kind == LOOM_OP_ATTENTION && o->split > 1 && !loom_attn_merges(o));
    bool arrive = loom_attn_merges(o);
    int32_t n = per_group ? g->cfg.n_kv_heads : 1, id;

    op_label(o, label, sizeof label);
    s->op_per_group[i] = per_group;
    if (loom_op_feeds_accum(g, i)) {   /* read on its own SM only: no counter */
        s->op_counter[i] = -1;
        return LOOM_OK;
    }
    s->op_counter[i] = s->p->n_counters;
    for (int32_t k = 0; k < n; k++) {
        if (per_group)
            snprintf(name, sizeof name, "%s.g%d", label, k);
        else
            snprintf(name, sizeof name, "%s", label);
        loom_status st = add_counter(s, i, name, &id);
        if (st != LOOM_OK)
            return st;
    }
    for (int32_t k = 0; arrive && k < g->cfg.n_kv_heads; k++) {
        snprintf(name, sizeof name, "%s.arrive.g%d", label, k);
        loom_status st = add_counter(s, i, name, &id);
        if (st != LOOM_OK)
            return st;
    }
    return LOOM_OK;
}

/* Even split of n units into k parts: part t is [t*n/k, (t+1)*n/k). */
static int32_t cut(int64_t n, int64_t k, int64_t t)
{
    return (int32_t)(t * n / k);
}

static loom_status make_tasks(part *s, int32_t i)
{
    loom_graph *g = s->p->graph;
    loom_op *o = &g->ops[i];
    const loom_config *c = &g->cfg;
    int32_t n_sms = s->p->n_sms, kv = c->n_kv_heads, ctr = s->op_counter[i];
    loom_status st = LOOM_OK;

    s->op_first_task[i] = s->p->n_tasks;
    switch (o->kind) {
    case LOOM_OP_EMBED: {
        int32_t n = c->hidden_size / 1024;
        n = n < 1 ? 1 : n > 4 ? 4 : n;
        for (int32_t t = 0; t < n && st == LOOM_OK; t++)
            st = add_task(s, i, cut(c->hidden_size, n, t), cut(c->hidden_size, n, t + 1),
                          -1, -1, ctr, -1);
        break;
    }
    case LOOM_OP_LINEAR:
        if (s->op_per_group[i]) { /* qkv */
            int32_t per = (c->n_heads / kv + 2) * c->head_dim;
            int32_t n = loom_qkv_tiles_per_group(c, n_sms);
            for (int32_t gr = 0; gr < kv; gr++)
                for (int32_t t = 0; t < n && st == LOOM_OK; t++)
                    st = add_task(s, i, gr * per + cut(per, n, t), gr * per + cut(per, n, t + 1),
                                  gr, -1, ctr + gr, -1);
        } else if (o->epi == LOOM_EPI_ACCUM) {
            /* tile k sums over gate_up tile k's outputs */
            const loom_op *gu = i > 0 ? &g->ops[i - 1] : NULL;
            if (!gu || !loom_op_feeds_accum(g, i - 1))
                return loom_fail(LOOM_ERR_UNSUPPORTED, "partition: op '%s' (layer %d) sums "
                                 "over a tensor no gate_up before it writes", o->name, o->layer);
            for (int32_t k = s->op_first_task[i - 1]; k < s->op_first_task[i] && st == LOOM_OK;
                 k++)
                st = add_task(s, i, s->p->tasks[k].row_begin / 2, s->p->tasks[k].row_end / 2,
                              -1, -1, ctr, -1);
        } else {
            int32_t unit = o->epi == LOOM_EPI_SILU_MUL ? 2 : 1, sms = n_sms;
            if (loom_linear_after_attention(g, i))
                sms -= g->ops[i - 1].n_tiles;
            int32_t n = loom_linear_tile_count(o->rows, o->cols, sms, unit);
            int64_t units = o->rows / unit;
            for (int32_t t = 0; t < n && st == LOOM_OK; t++)
                st = add_task(s, i, unit * cut(units, n, t), unit * cut(units, n, t + 1),
                              -1, -1, ctr, -1);
        }
        break;
    case LOOM_OP_ATTENTION:
        for (int32_t gr = 0; gr < kv; gr++)
            for (int32_t sp = 0; sp < o->split && st == LOOM_OK; sp++)
                st = add_task(s, i, 0, 0, gr, sp, s->op_per_group[i] ? ctr + gr : ctr,
                              loom_attn_merges(o) ? ctr + 1 + gr : -1);
        break;
    case LOOM_OP_ATTN_MERGE:
        for (int32_t gr = 0; gr < kv && st == LOOM_OK; gr++)
            st = add_task(s, i, 0, 0, gr, -1, ctr, -1);
        break;
    case LOOM_OP_ARGMAX:
        st = add_task(s, i, 0, 0, -1, -1, ctr, -1);
        break;
    default:
        return loom_fail(LOOM_ERR_UNSUPPORTED, "partition: op '%s': unknown kind %d", o->name,
                         (int)o->kind);
    }
    o->n_tiles = s->p->n_tasks - s->op_first_task[i];
    return st;
}

static void add_wait(loom_task *t, int32_t counter, int32_t needed, int32_t offset)
{
    loom_wait *w = &t->waits[t->n_waits++];
    w->counter = counter;
    w->needed = needed;
    w->step_offset = offset;
}

/* The waits of op i's tasks: on the op before it (per group when both sides
 * are per group and line up), embed on argmax of the previous step. */
static void make_waits(part *s, int32_t i)
{
    loom_program *p = s->p;
    const loom_graph *g = p->graph;
    const loom_op *o = &g->ops[i];
    int32_t prev = i - 1;

    for (int32_t k = s->op_first_task[i]; k < s->op_first_task[i + 1]; k++) {
        loom_task *t = &p->tasks[k];
        if (o->kind == LOOM_OP_LINEAR && o->epi == LOOM_EPI_ACCUM) {
            continue;   /* its input is its own SM's (loom_task_local_input) */
        } else if (o->kind == LOOM_OP_EMBED) {
            int32_t c = s->op_counter[g->op_argmax];
            add_wait(t, c, p->counters[c].signals, -1);
        } else if (s->op_per_group[prev] && t->group >= 0 && o->kind != LOOM_OP_LINEAR) {
            int32_t c = s->op_counter[prev] + t->group;
            add_wait(t, c, p->counters[c].signals, 0);
        } else {
            int32_t c = s->op_counter[prev];
            add_wait(t, c, p->counters[c].signals, 0);
        }
    }
}

/* Bytes moved and flops of one task, for the cost model. */
static void task_cost(const loom_graph *g, const loom_task *t, double *bytes, double *flops)
{
    const loom_op *o = &g->ops[t->op];
    const loom_config *c = &g->cfg;
    double B = g->params.max_batch, hd = c->head_dim, G = c->n_heads / c->n_kv_heads;
    double nr = t->row_end - t->row_begin;
    /* a group's merge: its partials in, its heads out */
    double merge = B * (G * o->split * (hd + 2) * 4 + G * hd * 4);

    *flops = 0;
    switch (o->kind) {
    case LOOM_OP_EMBED:
        *bytes = B * (4 + nr * 2 + nr * 4);
        break;
    case LOOM_OP_LINEAR:
        if (o->epi == LOOM_EPI_ACCUM) {   /* its rows of x in, a term of every y out */
            *bytes = nr * o->cols * 2 + B * nr * 4 + B * o->cols * 8;
            *flops = 2 * B * nr * o->cols;
            break;
        }
        *bytes = nr * o->cols * 2 + B * g->tensors[o->x].cols * 4 +
                 (o->pro == LOOM_PRO_RMSNORM ? o->cols * 4 : 0);
        *bytes += (o->bias >= 0 ? nr * 4 : 0) + (o->resid >= 0 ? B * nr * 4 : 0);
        *bytes += B * (o->epi == LOOM_EPI_SILU_MUL ? nr / 2 : nr) * 4;
        *bytes += o->epi == LOOM_EPI_ARGMAX ? B * 8 : 0;
        *flops = 2 * B * nr * o->cols;
        break;
    case LOOM_OP_ATTENTION: {
        /* q heads (+ k, v and their cache rows in split 0), norm and rope */
        double ctx = (double)loom_cost_context(g) / o->split, kv = t->split == 0 ? 2 : 0;
        *bytes = B * (2 * ctx * hd * 2 + (2 * G + kv) * hd * 4 + kv * hd * 2) + hd * 2 * 4;
        *flops = B * (4 * G * hd * ctx + (G + kv) * hd * 10);
        /* merging itself: the last tile of the group merges, so the
         * group's signal comes a merge after its slowest tile */
        if (loom_attn_merges(o))
            *bytes += merge;
        break;
    }
    case LOOM_OP_ATTN_MERGE:
        *bytes = merge;
        break;
    case LOOM_OP_ARGMAX:
        *bytes = B * (g->tensors[o->x].cols * 4 + 8);
        break;
    default:
        *bytes = 0;
    }
}

/* Weight bytes of task t its SM stages before its inputs are ready, if it
 * waits long enough: counted for the op after an attention only (`after`:
 * loom_linear_after_attention of t's op), whose SMs wait through the
 * attention. */
static double staged_bytes(const loom_program *p, const loom_compile_params *cp,
                           const loom_task *t, bool after)
{
    const loom_op *o = &p->graph->ops[t->op];
    double w = (double)(t->row_end - t->row_begin) * o->cols * 2, s = (double)cp->stage_bytes;

    if (!after)
        return 0;
    return w < s ? w : s;
}

static void set_costs(loom_program *p, const loom_compile_params *cp)
{
    double bw = (cp->bw_gbps > 0 ? cp->bw_gbps : 3000) * 1e3 / p->n_sms;   /* B/us/SM */
    double fl = (cp->tflops > 0 ? cp->tflops : 60) * 1e6 / p->n_sms;        /* flop/us */
    double ov = cp->task_overhead_us >= 0 ? cp->task_overhead_us : 1.0;
    int32_t op = -1;
    bool after = false;   /* loom_linear_after_attention(op), once per op */

    for (int32_t k = 0; k < p->n_tasks; k++) {
        double bytes, flops;
        if (p->tasks[k].op != op) {
            op = p->tasks[k].op;
            after = loom_linear_after_attention(p->graph, op);
        }
        task_cost(p->graph, &p->tasks[k], &bytes, &flops);
        p->tasks[k].bytes = (uint64_t)bytes;
        p->tasks[k].est_us = (float)(bytes / bw + flops / fl + ov);
        p->tasks[k].staged_us = (float)(staged_bytes(p, cp, &p->tasks[k], after) / bw);
    }
}

loom_status loom_partition(loom_program *p, const loom_compile_params *cp)
{
    loom_graph *g = p->graph;
    part s = {.p = p};
    loom_status st = LOOM_ERR_OUT_OF_MEMORY;

    s.op_counter = calloc((size_t)g->n_ops, sizeof *s.op_counter);
    s.op_per_group = calloc((size_t)g->n_ops, sizeof *s.op_per_group);
    s.op_first_task = calloc((size_t)g->n_ops + 1, sizeof *s.op_first_task);
    if (!s.op_counter || !s.op_per_group || !s.op_first_task) {
        loom_fail(st, "partition: %d ops", g->n_ops);
        goto out;
    }
    for (int32_t i = 0; i < g->n_ops; i++) {
        st = make_counters(&s, i);
        if (st != LOOM_OK)
            goto out;
    }
    for (int32_t i = 0; i < g->n_ops; i++) {
        st = make_tasks(&s, i);
        if (st != LOOM_OK)
            goto out;
    }
    s.op_first_task[g->n_ops] = p->n_tasks;
    for (int32_t i = 0; i < g->n_ops; i++)
        make_waits(&s, i);
    set_costs(p, cp);
    st = LOOM_OK;
out:
    free(s.op_counter);
    free(s.op_per_group);
    free(s.op_first_task);
    return st;
}
