/* verify.c - the static verifier of a compiled program (program.h).
 *
 * The program is unrolled over a few decode steps (3, fewer when the
 * context is shorter). A task instance is (task, step); its id is
 * step * n_tasks + task.
 *
 *  1. Static checks: every task is on exactly one SM list; counters, waits
 *     and signals are in range; every wait's `needed` equals the number of
 *     tasks that signal its counter per step (else "wrong threshold").
 *  2. Simulation: each SM runs its list in order, step after step, with the
 *     counter semantics of the GPU. If every unfinished SM is blocked, that
 *     is a deadlock, reported with SM, task, counter, value and threshold.
 *     While simulating, each instance gets a vector clock with one component
 *     per SM (each SM's unrolled list is a chain): the join of its SM
 *     predecessor and of the producers its waits prove finished (a wait on
 *     counter c for step k proves every producer of c of steps <= k done,
 *     because producers of step k+1 must be ordered after those of step k,
 *     which is checked). "A happens before B" is then
 *     vc[B][sm(A)] >= position of A on its SM: O(1).
 *  3. Regions: instances are replayed in sequential order (step, then task)
 *     with the element ranges their op reads and writes (graph.h semantics,
 *     position = step, sequences independent, identity page table). Each
 *     tensor keeps a sorted list of segments with their last writer and the
 *     last reader per SM since that write (interval sweep). A read whose last
 *     writer does not happen before it is a missing dependency; an element
 *     nobody wrote may only be read from weights and meta tensors (host
 *     data); a write must happen after the previous write (overlapping
 *     writes) and after every read since it (a later step's write racing an
 *     earlier step's read).
 *  Tasks that arrive at a counter (program.h arrive): each is a producer of
 *  that counter and of the counter they signal; the simulation lets the
 *  last arrival of a step signal. What that last one does for the group
 *  (ATTENTION's merge) is an instance of its own, a "merge instance" with
 *  no SM: its clock is the join of the step's arrivals (the acq_rel adds
 *  chain them), anything happens before it that happens before one of
 *  them, and it happens before what every one of them happens before. Its
 *  regions are replayed after the group's last task in task order.
 *  The first violation is reported (LOOM_ERR_VERIFY) by op, layer, tile, step.
 *
 * defines: loom_verify */
#include <stdlib.h>

#include "compiler/internal.h"
#include "core/error.h"

#define VERIFY_STEPS 3

typedef struct seg {
    int64_t lo, hi;
    int32_t writer;      /* instance, -1 none                               */
    int32_t *readers;    /* [n_sms] last reader instance per SM, or NULL     */
} seg;

typedef struct shadow {
    seg *s;
    int32_t n, cap;
} shadow;

typedef struct access {
    int32_t tensor;
    int64_t lo, hi;
    bool write;
} access;

typedef struct vstate {
    const loom_program *p;
    const loom_graph *g;
    int32_t n_steps, n_tasks, n_sms, n_inst;
    int32_t *sm_of, *pos_of;     /* [n_tasks]                                */
    int32_t *sm_len;             /* [n_sms]                                  */
    int32_t *vc;                 /* [n_inst * n_sms]                          */
    uint8_t *done;               /* [n_inst]                                 */
    int32_t *prod_off, *prod;    /* producers of each counter (CSR): its
                                    signallers and the tasks arriving at it   */
    int32_t *last_arrival;       /* [n_counters] the highest task arriving at
                                    it, -1 none                              */
    int32_t *join;               /* [n_counters * n_steps * n_sms]           */
    uint8_t *join_ok;            /* [n_counters * n_steps]                   */
    shadow *sh;                  /* [n_tensors]                              */
    int32_t *terms;              /* [n_tensors] tiles of the ACCUM op summing
                                    into it, 0 none (regions, below)         */
    int32_t **free_clocks;
    int32_t n_free, cap_free;
    access *acc;
    int32_t n_acc, cap_acc;
    bool oom;
} vstate;

/* ------------------------------------------------------------ naming */

/* "L0.o_proj[3] (op linear, layer 0, tile 3, step 1)" */
static void describe(const vstate *v, int32_t inst, char *buf, size_t len)
{
    int32_t task = inst % v->n_tasks, step = inst / v->n_tasks;
    const loom_task *t = &v->p->tasks[task];
    const loom_op *o = &v->g->ops[t->op];
    char name[64];

    if (inst >= v->n_inst) {   /* a merge instance: counter, step */
        int32_t c = (inst - v->n_inst) % v->p->n_counters;
        step = (inst - v->n_inst) / v->p->n_counters;
        t = &v->p->tasks[v->last_arrival[c]];
        o = &v->g->ops[t->op];
        snprintf(buf, len, "the merge of group %d by the last tile to arrive at '%s' (op %s "
                 "'%s', layer %d, step %d)", t->group, v->p->counters[c].name,
                 loom_op_kind_name(o->kind), o->name, o->layer, step);
        return;
    }
    loom_task_name(v->p, task, name, sizeof name);
    snprintf(buf, len, "%s (op %s '%s', layer %d, tile %d, step %d)", name,
             loom_op_kind_name(o->kind), o->name, o->layer, t->tile, step);
}

static void describe_task(const loom_program *p, int32_t task, char *buf, size_t len)
{
    const loom_task *t = &p->tasks[task];
    const loom_op *o = &p->graph->ops[t->op];
    char name[64];

    loom_task_name(p, task, name, sizeof name);
    snprintf(buf, len, "%s (op %s '%s', layer %d, tile %d)", name, loom_op_kind_name(o->kind),
             o->name, o->layer, t->tile);
}

/* ------------------------------------------------------------ static checks */

static loom_status check_lists(vstate *v)
{
    const loom_program *p = v->p;
    char d[128];

    if (!p->sm_offset || !p->sm_tasks || p->sm_offset[0] != 0 ||
        p->sm_offset[p->n_sms] != p->n_tasks)
        return loom_fail(LOOM_ERR_VERIFY, "verify: SM lists hold %d tasks, program has %d",
                         p->sm_offset ? p->sm_offset[p->n_sms] : -1, p->n_tasks);
    for (int32_t k = 0; k < p->n_tasks; k++)
        v->sm_of[k] = -1;
    for (int32_t s = 0; s < p->n_sms; s++) {
        if (p->sm_offset[s + 1] < p->sm_offset[s])
            return loom_fail(LOOM_ERR_VERIFY, "verify: SM %d list has negative length", s);
        v->sm_len[s] = p->sm_offset[s + 1] - p->sm_offset[s];
        for (int32_t i = p->sm_offset[s]; i < p->sm_offset[s + 1]; i++) {
            int32_t k = p->sm_tasks[i];
            if (k < 0 || k >= p->n_tasks)
                return loom_fail(LOOM_ERR_VERIFY, "verify: SM %d lists task id %d of %d", s,
                                 k, p->n_tasks);
            if (v->sm_of[k] >= 0) {
                describe_task(p, k, d, sizeof d);
                return loom_fail(LOOM_ERR_VERIFY, "verify: %s is listed twice (SM %d and SM %d)",
                                 d, v->sm_of[k], s);
            }
            v->sm_of[k] = s;
            v->pos_of[k] = i - p->sm_offset[s];
        }
    }
    return LOOM_OK;
}

static loom_status check_task_fields(const loom_program *p, int32_t k)
{
    const loom_task *t = &p->tasks[k];
    char d[128];

    if (t->op < 0 || t->op >= p->graph->n_ops)
        return loom_fail(LOOM_ERR_VERIFY, "verify: task %d: op %d out of range", k, t->op);
    describe_task(p, k, d, sizeof d);
    if (k > 0 && t->op < p->tasks[k - 1].op)
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s: tasks not in op order", d);
    if (t->tile != (k > 0 && p->tasks[k - 1].op == t->op ? p->tasks[k - 1].tile + 1 : 0) ||
        t->tile >= p->graph->ops[t->op].n_tiles)
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s: tile %d out of sequence (op has %d "
                         "tiles)", d, t->tile, p->graph->ops[t->op].n_tiles);
    if (t->n_waits < 0 || t->n_waits > LOOM_MAX_WAITS)
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s has %d waits (max %d)", d, t->n_waits,
                         LOOM_MAX_WAITS);
    if (t->signal < -1 || t->signal >= p->n_counters)
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s signals counter %d of %d", d, t->signal,
                         p->n_counters);
    if (t->arrive < -1 || t->arrive >= p->n_counters ||
        (t->arrive >= 0 && (t->signal < 0 || t->arrive == t->signal)))
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s arrives at counter %d of %d and signals "
                         "%d (need a counter of its own and a signal)", d, t->arrive,
                         p->n_counters, t->signal);
    for (int32_t w = 0; w < t->n_waits; w++) {
        const loom_wait *wt = &t->waits[w];
        if (wt->counter < 0 || wt->counter >= p->n_counters)
            return loom_fail(LOOM_ERR_VERIFY, "verify: %s waits on counter %d of %d", d,
                             wt->counter, p->n_counters);
        if (wt->step_offset != 0 && wt->step_offset != -1)
            return loom_fail(LOOM_ERR_VERIFY, "verify: %s waits with step_offset %d", d,
                             wt->step_offset);
    }
    return LOOM_OK;
}

/* Fills the producer lists and checks every threshold against them: a
 * counter gets a signal per step from each task signalling it that arrives
 * nowhere, one from each group of tasks arriving at one counter, and (a
 * counter tasks arrive at) one from each of those. */
static loom_status check_counters(vstate *v)
{
    const loom_program *p = v->p;
    int32_t nc = p->n_counters;
    int32_t *have = calloc((size_t)nc + 1, sizeof *have);
    int32_t *fill = calloc((size_t)nc + 1, sizeof *fill);
    char d[128];
    loom_status st = LOOM_OK;

    if (!have || !fill) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: %d counters", nc);
        goto out;
    }
    for (int32_t c = 0; c < nc; c++)
        v->last_arrival[c] = -1;
    for (int32_t k = 0; k < p->n_tasks && st == LOOM_OK; k++) {
        const loom_task *t = &p->tasks[k];
        st = check_task_fields(p, k);
        if (st != LOOM_OK)
            break;
        if (t->signal >= 0)
            v->prod_off[t->signal + 1]++;
        if (t->arrive < 0) {
            have[t->signal + 1]++;   /* [0]: no signal */
            continue;
        }
        int32_t a = t->arrive, first = v->last_arrival[a];
        if (first < 0)
            have[t->signal + 1]++;
        else if (p->tasks[first].signal != t->signal) {
            describe_task(p, k, d, sizeof d);
            st = loom_fail(LOOM_ERR_VERIFY, "verify: %s arrives at '%s' and signals '%s', "
                           "another task arriving there '%s'", d, p->counters[a].name,
                           p->counters[t->signal].name, p->counters[p->tasks[first].signal].name);
        }
        have[a + 1]++;
        v->prod_off[a + 1]++;
        v->last_arrival[a] = k;
    }
    for (int32_t k = 0; k < p->n_tasks && st == LOOM_OK; k++) {
        int32_t c = p->tasks[k].signal;
        if (c >= 0 && v->last_arrival[c] >= 0) {
            describe_task(p, k, d, sizeof d);
            st = loom_fail(LOOM_ERR_VERIFY, "verify: %s signals '%s', which tasks arrive at",
                           d, p->counters[c].name);
        }
    }
    if (st != LOOM_OK)
        goto out;
    for (int32_t c = 0; c < nc; c++)
        v->prod_off[c + 1] += v->prod_off[c];
    for (int32_t k = 0; k < p->n_tasks; k++) {
        int32_t c = p->tasks[k].signal, a = p->tasks[k].arrive;
        if (c >= 0)
            v->prod[v->prod_off[c] + fill[c]++] = k;
        if (a >= 0)
            v->prod[v->prod_off[a] + fill[a]++] = k;
    }
    for (int32_t c = 0; c < nc && st == LOOM_OK; c++)
        if (p->counters[c].signals != have[c + 1])
            st = loom_fail(LOOM_ERR_VERIFY, "verify: counter '%s' says %d signals per step, "
                           "it gets %d", p->counters[c].name, p->counters[c].signals,
                           have[c + 1]);
    for (int32_t k = 0; k < p->n_tasks && st == LOOM_OK; k++) {
        const loom_task *t = &p->tasks[k];
        for (int32_t w = 0; w < t->n_waits; w++) {
            int32_t c = t->waits[w].counter;
            if (t->waits[w].needed != have[c + 1]) {
                describe_task(p, k, d, sizeof d);
                st = loom_fail(LOOM_ERR_VERIFY,
                               "verify: wrong threshold: %s waits for %d signals per step of "
                               "counter '%s', which gets %d per step", d,
                               t->waits[w].needed, p->counters[c].name, have[c + 1]);
                break;
            }
        }
    }
out:
    free(have);
    free(fill);
    return st;
}

/* ------------------------------------------------------------ simulation */

static inline int32_t upos(const vstate *v, int32_t inst)
{
    int32_t task = inst % v->n_tasks, step = inst / v->n_tasks;
    return step * v->sm_len[v->sm_of[task]] + v->pos_of[task] + 1;
}

/* The clock of an instance, or of a merge instance (the join of its
 * arrivals, which producers_join keeps). */
static inline const int32_t *clock_of(const vstate *v, int32_t inst)
{
    if (inst < v->n_inst)
        return v->vc + (size_t)inst * v->n_sms;
    int32_t c = (inst - v->n_inst) % v->p->n_counters, k = (inst - v->n_inst) / v->p->n_counters;
    return v->join + ((size_t)c * v->n_steps + k) * v->n_sms;
}

/* a happens before b; a merge instance when each of its arrivals does. */
static bool hb(const vstate *v, int32_t a, int32_t b)
{
    if (a >= v->n_inst) {
        int32_t c = (a - v->n_inst) % v->p->n_counters, k = (a - v->n_inst) / v->p->n_counters;
        for (int32_t i = v->prod_off[c]; i < v->prod_off[c + 1]; i++)
            if (!hb(v, k * v->n_tasks + v->prod[i], b))
                return false;
        return true;
    }
    return clock_of(v, b)[v->sm_of[a % v->n_tasks]] >= upos(v, a);
}

static void vc_join(int32_t *dst, const int32_t *src, int32_t n)
{
    for (int32_t s = 0; s < n; s++)
        if (src[s] > dst[s])
            dst[s] = src[s];
}

/* Join of the clocks of counter c's producers of step k; NULL (and *missing
 * set) when one of them has not run yet. */
static const int32_t *producers_join(vstate *v, int32_t c, int32_t k, int32_t *missing)
{
    size_t slot = (size_t)c * v->n_steps + k;
    int32_t *j = v->join + slot * v->n_sms;

    if (v->join_ok[slot])
        return j;
    for (int32_t i = v->prod_off[c]; i < v->prod_off[c + 1]; i++) {
        int32_t inst = k * v->n_tasks + v->prod[i];
        if (!v->done[inst]) {
            *missing = inst;
            return NULL;
        }
        vc_join(j, v->vc + (size_t)inst * v->n_sms, v->n_sms);
    }
    v->join_ok[slot] = 1;
    return j;
}

/* Runs instance inst on SM s (its waits are satisfied): its vector clock. */
static loom_status run_instance(vstate *v, int32_t s, int32_t cur, int32_t inst)
{
    const loom_task *t = &v->p->tasks[inst % v->n_tasks];
    int32_t step = inst / v->n_tasks, len = v->sm_len[s];
    int32_t *vc = v->vc + (size_t)inst * v->n_sms;
    char d[160], e[160];

    if (cur > 0) {
        int32_t prev = (cur - 1) / len * v->n_tasks +
                       v->p->sm_tasks[v->p->sm_offset[s] + (cur - 1) % len];
        memcpy(vc, v->vc + (size_t)prev * v->n_sms, (size_t)v->n_sms * sizeof *vc);
    }
    vc[s] = upos(v, inst);
    for (int32_t w = 0; w < t->n_waits; w++) {
        int32_t k = step + t->waits[w].step_offset, missing = -1;
        if (k < 0)
            continue;
        const int32_t *j = producers_join(v, t->waits[w].counter, k, &missing);
        if (!j) {
            describe(v, inst, d, sizeof d);
            describe(v, missing, e, sizeof e);
            return loom_fail(LOOM_ERR_VERIFY,
                             "verify: counter '%s' reached the threshold of %s while its "
                             "producer %s had not run: producers of consecutive steps are not "
                             "ordered", v->p->counters[t->waits[w].counter].name, d, e);
        }
        vc_join(vc, j, v->n_sms);
    }
    v->done[inst] = 1;
    return LOOM_OK;
}

/* First wait of inst not satisfied by the counters, or -1. */
static int32_t blocking_wait(const vstate *v, const int64_t *cnt, int32_t inst)
{
    const loom_task *t = &v->p->tasks[inst % v->n_tasks];
    int32_t step = inst / v->n_tasks;

    for (int32_t w = 0; w < t->n_waits; w++) {
        int64_t thr = (int64_t)t->waits[w].needed * (step + 1 + t->waits[w].step_offset);
        if (cnt[t->waits[w].counter] < thr)
            return w;
    }
    return -1;
}

static loom_status report_deadlock(const vstate *v, const int32_t *cur, const int64_t *cnt)
{
    for (int32_t s = 0; s < v->n_sms; s++) {
        int32_t len = v->sm_len[s];
        if (cur[s] >= v->n_steps * len)
            continue;
        int32_t step = cur[s] / len, task = v->p->sm_tasks[v->p->sm_offset[s] + cur[s] % len];
        int32_t inst = step * v->n_tasks + task, w = blocking_wait(v, cnt, inst);
        const loom_wait *wt = &v->p->tasks[task].waits[w < 0 ? 0 : w];
        char d[160];
        describe(v, inst, d, sizeof d);
        return loom_fail(LOOM_ERR_VERIFY,
                         "verify: deadlock: every SM is blocked; SM %d at %s waits on counter "
                         "'%s' = %lld, needs %lld", s, d, v->p->counters[wt->counter].name,
                         (long long)cnt[wt->counter],
                         (long long)wt->needed * (step + 1 + wt->step_offset));
    }
    return loom_fail(LOOM_ERR_VERIFY, "verify: deadlock");
}

/* After instance inst ran: its signal; a task that arrives at a counter
 * signals only as the step's last arrival, whose merge instance gets the
 * join of the step's arrivals (producers_join). */
static loom_status arrive(vstate *v, int32_t inst, int64_t *cnt)
{
    const loom_task *t = &v->p->tasks[inst % v->n_tasks];
    int32_t step = inst / v->n_tasks, a = t->arrive, missing = -1;
    char d[160], e[160];

    if (a >= 0) {
        if (++cnt[a] < (int64_t)v->p->counters[a].signals * (step + 1))
            return LOOM_OK;
        if (!producers_join(v, a, step, &missing)) {
            describe(v, inst, d, sizeof d);
            describe(v, missing, e, sizeof e);
            return loom_fail(LOOM_ERR_VERIFY, "verify: %s is the last of its step to arrive at "
                             "'%s' while %s has not: arrivals of consecutive steps are not "
                             "ordered", d, v->p->counters[a].name, e);
        }
    }
    if (t->signal >= 0)
        cnt[t->signal]++;
    return LOOM_OK;
}

static loom_status simulate(vstate *v)
{
    int64_t *cnt = calloc((size_t)v->p->n_counters + 1, sizeof *cnt);
    int32_t *cur = calloc((size_t)v->n_sms, sizeof *cur);
    int64_t left = v->n_inst;
    loom_status st = LOOM_OK;

    if (!cnt || !cur) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: simulation");
        goto out;
    }
    while (left > 0) {
        bool progress = false;
        for (int32_t s = 0; s < v->n_sms; s++) {
            int32_t len = v->sm_len[s];
            while (cur[s] < v->n_steps * len) {
                int32_t task = v->p->sm_tasks[v->p->sm_offset[s] + cur[s] % len];
                int32_t inst = cur[s] / len * v->n_tasks + task;
                if (blocking_wait(v, cnt, inst) >= 0)
                    break;
                st = run_instance(v, s, cur[s], inst);
                if (st != LOOM_OK)
                    goto out;
                st = arrive(v, inst, cnt);
                if (st != LOOM_OK)
                    goto out;
                cur[s]++;
                left--;
                progress = true;
            }
        }
        if (!progress) {
            st = report_deadlock(v, cur, cnt);
            goto out;
        }
    }
out:
    free(cnt);
    free(cur);
    return st;
}

/* Producers of each counter at step k+1 must happen after all of step k's:
 * only then does "counter >= needed * (k + 1)" mean "step k's are done". */
static loom_status check_step_order(vstate *v)
{
    int32_t *last = malloc((size_t)v->n_sms * sizeof *last);
    char d[160], e[160];
    loom_status st = LOOM_OK;

    if (!last)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: step order");
    for (int32_t c = 0; c < v->p->n_counters && st == LOOM_OK; c++) {
        for (int32_t k = 1; k < v->n_steps && st == LOOM_OK; k++) {
            for (int32_t s = 0; s < v->n_sms; s++)
                last[s] = -1;
            for (int32_t i = v->prod_off[c]; i < v->prod_off[c + 1]; i++) {
                int32_t q = (k - 1) * v->n_tasks + v->prod[i], s = v->sm_of[v->prod[i]];
                if (last[s] < 0 || upos(v, q) > upos(v, last[s]))
                    last[s] = q;
            }
            for (int32_t i = v->prod_off[c]; i < v->prod_off[c + 1] && st == LOOM_OK; i++) {
                int32_t pi = k * v->n_tasks + v->prod[i];
                for (int32_t s = 0; s < v->n_sms; s++) {
                    if (last[s] < 0 || hb(v, last[s], pi))
                        continue;
                    describe(v, pi, d, sizeof d);
                    describe(v, last[s], e, sizeof e);
                    st = loom_fail(LOOM_ERR_VERIFY,
                                   "verify: counter '%s': %s may signal before %s: producers "
                                   "of consecutive steps are not ordered",
                                   v->p->counters[c].name, d, e);
                    break;
                }
            }
        }
    }
    free(last);
    return st;
}

/* ------------------------------------------------------------ regions */

static void emit(vstate *v, int32_t tensor, int64_t lo, int64_t hi, bool write)
{
    if (tensor < 0 || hi <= lo)
        return;
    if (v->n_acc == v->cap_acc) {
        int32_t cap = v->cap_acc ? 2 * v->cap_acc : 64;
        access *a = realloc(v->acc, (size_t)cap * sizeof *a);
        if (!a) {
            v->oom = true;
            return;
        }
        v->acc = a;
        v->cap_acc = cap;
    }
    v->acc[v->n_acc++] = (access){tensor, lo, hi, write};
}

/* Columns [c0, c1) of every batch row of an activation tensor. */
static void emit_cols(vstate *v, int32_t tensor, int64_t c0, int64_t c1, bool write)
{
    if (tensor < 0)
        return;
    int64_t cols = v->g->tensors[tensor].cols;
    for (int64_t b = 0; b < v->g->params.max_batch; b++)
        emit(v, tensor, b * cols + c0, b * cols + c1, write);
}

/* KV cache row of (sequence b, position pos) under the identity page table. */
static int64_t kv_row(const loom_graph *g, int64_t b, int64_t pos)
{
    int64_t pps = (g->params.max_context + g->params.page_size - 1) / g->params.page_size;
    return b * pps * g->params.page_size + pos;
}

static void emit_kv(vstate *v, int32_t tensor, int64_t pos0, int64_t pos1, int32_t grp,
                    bool write)
{
    const loom_graph *g = v->g;
    int64_t hd = g->cfg.head_dim, cols = g->tensors[tensor].cols;
    int64_t pps = (g->params.max_context + g->params.page_size - 1) / g->params.page_size;

    for (int64_t b = 0; b < g->params.max_batch; b++) {
        emit(v, g->t_page_table, b * pps + pos0 / g->params.page_size,
             b * pps + (pos1 - 1) / g->params.page_size + 1, false);
        for (int64_t pos = pos0; pos < pos1; pos++) {
            int64_t r = kv_row(g, b, pos);
            emit(v, tensor, r * cols + grp * hd, r * cols + (grp + 1) * hd, write);
        }
    }
}

/* A tensor an ACCUM op sums into (graph.h) has, past its elements, one
 * range of as many per tile of that op: what the tile adds. The tile
 * reads the elements (the first term, written by an earlier op, must be
 * there before its adds) and writes its own range, so the tiles' adds
 * need no order among themselves; a reader of the sum reads the elements
 * and every tile's range (the sum is done when all tiles are); the next
 * step's first term is a write of the elements, after every tile that
 * read them. Reads of the ranges are of all of them, whatever columns the
 * reader wants: more than it needs, so nothing wrong passes. */
static int64_t extent(const vstate *v, int32_t tensor)
{
    return loom_gtensor_numel(&v->g->tensors[tensor]) * (1 + v->terms[tensor]);
}

static void emit_read(vstate *v, int32_t tensor, int64_t c0, int64_t c1)
{
    if (tensor < 0)
        return;
    emit_cols(v, tensor, c0, c1, false);
    if (v->terms[tensor] > 0)
        emit(v, tensor, loom_gtensor_numel(&v->g->tensors[tensor]), extent(v, tensor), false);
}

static void linear_regions(vstate *v, const loom_op *o, const loom_task *t, int32_t step)
{
    const loom_graph *g = v->g;
    int64_t rb = t->row_begin, re = t->row_end;

    if (o->epi == LOOM_EPI_ACCUM) {
        int64_t n = loom_gtensor_numel(&g->tensors[o->y]);
        emit_read(v, o->x, rb, re);
        emit_cols(v, o->y, 0, g->tensors[o->y].cols, false);
        emit(v, o->y, n * (1 + t->tile), n * (2 + t->tile), true);
        return;
    }
    emit_read(v, o->x, 0, g->tensors[o->x].cols);
    if (o->resid >= 0)
        emit_read(v, o->resid, rb, re);
    if (o->aux >= 0 && o->epi == LOOM_EPI_RESIDUAL)
        emit_cols(v, o->aux, rb, re, true);
    switch (o->epi) {
    case LOOM_EPI_SILU_MUL:
        emit_cols(v, o->y, rb / 2, (re + 1) / 2, true);
        break;
    case LOOM_EPI_ARGMAX:
        if (g->params.record_logits) {
            int64_t cols = g->tensors[o->y].cols;
            emit(v, o->y, step * cols + rb, step * cols + re, true);
        } else {
            emit_cols(v, o->y, rb, re, true);
        }
        emit_cols(v, o->aux, 2 * (int64_t)t->tile, 2 * (int64_t)t->tile + 2, true);
        break;
    default:
        emit_cols(v, o->y, rb, re, true);
    }
}

/* Attention tile (g, s) reads qkv group g's rows. Split 0 writes K/V at
 * position step and reads positions [0, step): the position it writes it
 * reads back itself, after its own write (a task's reads are applied before
 * its writes here). Splits s >= 1 read [0, step), a superset of their chunk:
 * no tile but split 0 may rely on the entry of this step. */
static void attention_regions(vstate *v, const loom_op *o, const loom_task *t, int32_t step)
{
    const loom_config *c = &v->g->cfg;
    int64_t hd = c->head_dim, G = c->n_heads / c->n_kv_heads, S = o->split;

    emit_cols(v, o->x, t->group * (G + 2) * hd, (t->group + 1) * (G + 2) * hd, false);
    if (step > 0) {
        emit_kv(v, o->kcache, 0, step, t->group, false);
        emit_kv(v, o->vcache, 0, step, t->group, false);
    }
    if (t->split == 0) {
        emit_kv(v, o->kcache, step, step + 1, t->group, true);
        emit_kv(v, o->vcache, step, step + 1, t->group, true);
    }
    if (S == 1) {
        emit_cols(v, o->y, t->group * G * hd, (t->group + 1) * G * hd, true);
        return;
    }
    for (int64_t h = t->group * G; h < (t->group + 1) * G; h++)
        emit_cols(v, o->aux, (h * S + t->split) * (hd + 2), (h * S + t->split + 1) * (hd + 2),
                  true);
}

/* The merge of group grp: its partials in (all splits), its heads out. */
static void merge_regions(vstate *v, const loom_op *o, int32_t grp)
{
    const loom_config *c = &v->g->cfg;
    int64_t hd = c->head_dim, G = c->n_heads / c->n_kv_heads, n = G * o->split * (hd + 2);

    emit_cols(v, o->aux, grp * n, (grp + 1) * n, false);
    emit_cols(v, o->y, grp * G * hd, (grp + 1) * G * hd, true);
}

/* Element ranges task instance (task, step) reads and writes. */
static void task_regions(vstate *v, int32_t task, int32_t step)
{
    const loom_graph *g = v->g;
    const loom_task *t = &v->p->tasks[task];
    const loom_op *o = &g->ops[t->op];
    int64_t tok_cols = g->params.max_context + 1;

    v->n_acc = 0;
    switch (o->kind) {
    case LOOM_OP_EMBED:
        emit_cols(v, o->x, step, step + 1, false);
        emit_cols(v, o->y, t->row_begin, t->row_end, true);
        break;
    case LOOM_OP_LINEAR:
        linear_regions(v, o, t, step);
        break;
    case LOOM_OP_ATTENTION:
        attention_regions(v, o, t, step);
        break;
    case LOOM_OP_ATTN_MERGE:
        merge_regions(v, o, t->group);
        break;
    case LOOM_OP_ARGMAX:
        emit_cols(v, o->x, 0, g->tensors[o->x].cols, false);
        if (step + 1 < tok_cols)
            emit_cols(v, o->y, step + 1, step + 2, true);
        break;
    default:
        break;
    }
}

static int32_t *clock_alloc(vstate *v)
{
    int32_t *c;

    if (v->n_free > 0) {
        c = v->free_clocks[--v->n_free];
    } else {
        c = malloc(((size_t)v->n_sms + 1) * sizeof *c);
        if (!c) {
            v->oom = true;
            return NULL;
        }
    }
    for (int32_t s = 0; s <= v->n_sms; s++)
        c[s] = -1;
    return c;
}

static void clock_release(vstate *v, int32_t *c)
{
    if (!c)
        return;
    if (v->n_free == v->cap_free) {
        int32_t cap = v->cap_free ? 2 * v->cap_free : 256;
        int32_t **a = realloc(v->free_clocks, (size_t)cap * sizeof *a);
        if (!a) {
            free(c);
            return;
        }
        v->free_clocks = a;
        v->cap_free = cap;
    }
    v->free_clocks[v->n_free++] = c;
}

/* Index of the segment holding element x. */
static int32_t seg_find(const shadow *sh, int64_t x)
{
    int32_t lo = 0, hi = sh->n - 1;

    while (lo < hi) {
        int32_t mid = (lo + hi + 1) / 2;
        if (sh->s[mid].lo <= x)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Makes x a segment boundary. */
static void seg_split(vstate *v, shadow *sh, int64_t x)
{
    int32_t i = seg_find(sh, x);
    seg *a;

    if (sh->s[i].lo == x || x >= sh->s[i].hi)
        return;
    if (sh->n == sh->cap) {
        int32_t cap = 2 * sh->cap;
        seg *n = realloc(sh->s, (size_t)cap * sizeof *n);
        if (!n) {
            v->oom = true;
            return;
        }
        sh->s = n;
        sh->cap = cap;
    }
    memmove(&sh->s[i + 2], &sh->s[i + 1], (size_t)(sh->n - i - 1) * sizeof *sh->s);
    sh->n++;
    a = &sh->s[i];
    sh->s[i + 1] = *a;
    sh->s[i + 1].lo = x;
    a->hi = x;
    if (a->readers) {
        int32_t *c = clock_alloc(v);
        if (c)
            memcpy(c, a->readers, (size_t)v->n_sms * sizeof *c);
        sh->s[i + 1].readers = c;
    }
}

static shadow *shadow_of(vstate *v, int32_t tensor)
{
    shadow *sh = &v->sh[tensor];

    if (!sh->s) {
        sh->s = calloc(16, sizeof *sh->s);
        if (!sh->s) {
            v->oom = true;
            return NULL;
        }
        sh->cap = 16;
        sh->n = 1;
        sh->s[0] = (seg){0, extent(v, tensor), -1, NULL};
    }
    return sh;
}

/* "'layers.3.mid' elements [0, 1024)", or for the ranges past an ACCUM
 * sum's elements "the terms tiles 3..4 add to 'layers.4.x'". */
static void span(const vstate *v, int32_t tensor, int64_t lo, int64_t hi, char *buf, size_t len)
{
    const loom_gtensor *t = &v->g->tensors[tensor];
    int64_t n = loom_gtensor_numel(t);

    if (lo < n || n <= 0)
        snprintf(buf, len, "'%s' elements [%lld, %lld)", t->name, (long long)lo, (long long)hi);
    else
        snprintf(buf, len, "the terms tiles %lld..%lld add to '%s'", (long long)(lo / n - 1),
                 (long long)((hi - 1) / n - 1), t->name);
}

static loom_status read_error(vstate *v, int32_t inst, const access *a, const seg *sg)
{
    char d[160], e[160], r[128];

    describe(v, inst, d, sizeof d);
    span(v, a->tensor, sg->lo, sg->hi, r, sizeof r);
    if (sg->writer < 0)
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s reads %s that no task wrote before it", d,
                         r);
    describe(v, sg->writer, e, sizeof e);
    return loom_fail(LOOM_ERR_VERIFY,
                     "verify: missing dependency: %s reads %s written by %s without waiting "
                     "for it", d, r, e);
}

static loom_status write_error(vstate *v, int32_t inst, const access *a, const seg *sg,
                               int32_t other, bool other_reads)
{
    char d[160], e[160], r[128];

    describe(v, inst, d, sizeof d);
    describe(v, other, e, sizeof e);
    span(v, a->tensor, sg->lo, sg->hi, r, sizeof r);
    if (other_reads)
        return loom_fail(LOOM_ERR_VERIFY,
                         "verify: write-after-read race: %s may write %s before %s has read "
                         "them", d, r, e);
    return loom_fail(LOOM_ERR_VERIFY,
                     "verify: overlapping writes: %s and %s both write %s and are not ordered",
                     e, d, r);
}

/* One access of instance inst: checks it against the segments' history and
 * records it. */
static loom_status apply(vstate *v, int32_t inst, const access *a)
{
    const loom_gtensor *t = &v->g->tensors[a->tensor];
    /* readers: one slot per SM, the last for merge instances */
    int32_t sm = inst < v->n_inst ? v->sm_of[inst % v->n_tasks] : v->n_sms;
    shadow *sh;
    char d[160];

    if (a->lo < 0 || a->hi > extent(v, a->tensor)) {
        describe(v, inst, d, sizeof d);
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s %s '%s' elements [%lld, %lld) outside "
                         "its %lld elements (and its sum's terms)", d,
                         a->write ? "writes" : "reads", t->name, (long long)a->lo,
                         (long long)a->hi, (long long)loom_gtensor_numel(t));
    }
    if (t->role == LOOM_ROLE_WEIGHT && !a->write)
        return LOOM_OK;
    if (t->role == LOOM_ROLE_WEIGHT) {
        describe(v, inst, d, sizeof d);
        return loom_fail(LOOM_ERR_VERIFY, "verify: %s writes weight '%s'", d, t->name);
    }
    sh = shadow_of(v, a->tensor);
    if (sh)
        seg_split(v, sh, a->lo);
    if (sh)
        seg_split(v, sh, a->hi);
    if (!sh || v->oom)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: shadow of '%s'", t->name);
    for (int32_t i = seg_find(sh, a->lo); i < sh->n && sh->s[i].lo < a->hi; i++) {
        seg *sg = &sh->s[i];
        if (!a->write) {
            if (sg->writer < 0 ? t->role != LOOM_ROLE_META : !hb(v, sg->writer, inst))
                return read_error(v, inst, a, sg);
            if (!sg->readers && !(sg->readers = clock_alloc(v)))
                return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: reader clocks");
            int32_t r = sg->readers[sm];
            if (sm == v->n_sms && r >= 0 && r != inst && !hb(v, r, inst)) {
                char e[160];
                describe(v, inst, d, sizeof d);
                describe(v, r, e, sizeof e);
                return loom_fail(LOOM_ERR_VERIFY, "verify: %s and %s, not ordered, both read "
                                 "'%s' elements [%lld, %lld) (the verifier keeps one merge "
                                 "reader)", e, d, t->name, (long long)sg->lo,
                                 (long long)sg->hi);
            }
            sg->readers[sm] = inst;
            continue;
        }
        if (sg->writer >= 0 && sg->writer != inst && !hb(v, sg->writer, inst))
            return write_error(v, inst, a, sg, sg->writer, false);
        for (int32_t s = 0; sg->readers && s <= v->n_sms; s++) {
            int32_t r = sg->readers[s];
            if (r >= 0 && r != inst && !hb(v, r, inst))
                return write_error(v, inst, a, sg, r, true);
        }
        clock_release(v, sg->readers);
        sg->readers = NULL;
        sg->writer = inst;
    }
    return LOOM_OK;
}

/* Applies the regions v->acc holds for instance inst: its reads, then its
 * writes. */
static loom_status apply_all(vstate *v, int32_t inst)
{
    if (v->oom)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: regions");
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < v->n_acc; i++) {
            if (v->acc[i].write != (pass == 1))
                continue;
            loom_status st = apply(v, inst, &v->acc[i]);
            if (st != LOOM_OK)
                return st;
        }
    }
    return LOOM_OK;
}

static loom_status check_regions(vstate *v)
{
    for (int32_t step = 0; step < v->n_steps; step++) {
        for (int32_t k = 0; k < v->n_tasks; k++) {
            const loom_task *t = &v->p->tasks[k];
            task_regions(v, k, step);
            loom_status st = apply_all(v, step * v->n_tasks + k);
            if (st != LOOM_OK)
                return st;
            /* the group's merge after its last task */
            if (t->arrive < 0 || v->last_arrival[t->arrive] != k)
                continue;
            v->n_acc = 0;
            merge_regions(v, &v->g->ops[t->op], t->group);
            st = apply_all(v, v->n_inst + step * v->p->n_counters + t->arrive);
            if (st != LOOM_OK)
                return st;
        }
    }
    return LOOM_OK;
}

/* ------------------------------------------------------------ driver */

static void vstate_free(vstate *v)
{
    free(v->sm_of);
    free(v->pos_of);
    free(v->sm_len);
    free(v->vc);
    free(v->done);
    free(v->prod_off);
    free(v->prod);
    free(v->last_arrival);
    free(v->join);
    free(v->join_ok);
    if (v->sh) {
        for (int32_t t = 0; t < v->g->n_tensors; t++) {
            for (int32_t i = 0; i < v->sh[t].n; i++)
                free(v->sh[t].s[i].readers);
            free(v->sh[t].s);
        }
    }
    free(v->sh);
    free(v->terms);
    for (int32_t i = 0; i < v->n_free; i++)
        free(v->free_clocks[i]);
    free(v->free_clocks);
    free(v->acc);
}

static loom_status vstate_init(vstate *v, const loom_program *p)
{
    int32_t nt = p->n_tasks ? p->n_tasks : 1, nc = p->n_counters;

    memset(v, 0, sizeof *v);
    v->p = p;
    v->g = p->graph;
    v->n_tasks = p->n_tasks;
    v->n_sms = p->n_sms;
    v->n_steps = p->graph->params.max_context < VERIFY_STEPS ? p->graph->params.max_context
                                                             : VERIFY_STEPS;
    v->n_inst = v->n_steps * p->n_tasks;
    if ((uint64_t)v->n_inst * (uint64_t)p->n_sms > (1ull << 29))
        return loom_fail(LOOM_ERR_LIMIT, "verify: %d tasks x %d steps x %d SMs: too large to "
                         "verify (vector clocks over 2 GB)", p->n_tasks, v->n_steps, p->n_sms);
    v->sm_of = malloc((size_t)nt * sizeof *v->sm_of);
    v->pos_of = malloc((size_t)nt * sizeof *v->pos_of);
    v->sm_len = calloc((size_t)p->n_sms, sizeof *v->sm_len);
    v->vc = calloc((size_t)(v->n_inst ? v->n_inst : 1) * p->n_sms, sizeof *v->vc);
    v->done = calloc((size_t)(v->n_inst ? v->n_inst : 1), 1);
    v->prod_off = calloc((size_t)nc + 1, sizeof *v->prod_off);
    v->prod = malloc((size_t)nt * 2 * sizeof *v->prod);   /* signal and arrive */
    v->last_arrival = malloc((size_t)(nc ? nc : 1) * sizeof *v->last_arrival);
    v->join = calloc((size_t)(nc ? nc : 1) * v->n_steps * p->n_sms, sizeof *v->join);
    v->join_ok = calloc((size_t)(nc ? nc : 1) * v->n_steps, 1);
    v->sh = calloc((size_t)p->graph->n_tensors, sizeof *v->sh);
    v->terms = calloc((size_t)p->graph->n_tensors, sizeof *v->terms);
    if (!v->terms)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: %d tensors", p->graph->n_tensors);
    for (int32_t i = 0; i < p->graph->n_ops; i++) {
        const loom_op *o = &p->graph->ops[i];
        if (o->kind == LOOM_OP_LINEAR && o->epi == LOOM_EPI_ACCUM && o->y >= 0)
            v->terms[o->y] = o->n_tiles;
    }
    if (!v->sm_of || !v->pos_of || !v->sm_len || !v->vc || !v->done || !v->prod_off ||
        !v->prod || !v->last_arrival || !v->join || !v->join_ok || !v->sh)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "verify: %d tasks x %d SMs x %d steps",
                         p->n_tasks, p->n_sms, v->n_steps);
    return LOOM_OK;
}

loom_status loom_verify(const loom_program *p)
{
    vstate v;
    loom_status st;

    if (!p || !p->graph || !p->tasks || p->n_sms < 1 || p->n_tasks < 1)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "verify: empty program");
    st = vstate_init(&v, p);
    if (st == LOOM_OK)
        st = check_lists(&v);
    if (st == LOOM_OK)
        st = check_counters(&v);
    if (st == LOOM_OK)
        st = simulate(&v);
    if (st == LOOM_OK)
        st = check_step_order(&v);
    if (st == LOOM_OK)
        st = check_regions(&v);
    vstate_free(&v);
    return st;
}
