/* schedule.c - list scheduling of one decode step onto the SMs.
 *
 * Tasks are placed in program order; each goes to the SM on which it would
 * finish earliest, given when that SM is free, when the counters it waits
 * on (this step's) are complete and, for the op after an attention, how
 * much of its rows the SM stages while it waits (loom_task.staged_us);
 * among equally good SMs the one that became free last (best fit), so SMs
 * idle since earlier stay free for later work.
 * A task that reads its input with no counter (the fused MLP's down tile,
 * loom_task_local_input) goes on the SM of the task that writes it.
 * Every SM list is thus a subsequence of program order, which is a
 * topological order of the dependencies. No SM is reserved.
 *
 * defines: loom_schedule, loom_schedule_print */
#include <stdlib.h>

#include "compiler/internal.h"
#include "core/error.h"

/* Dependency-only times: earliest finish of each task with unlimited SMs,
 * and the producer that bounds it (-1 none). */
static loom_status critical_path(const loom_program *p, double *fin, int32_t *pred)
{
    double *cready = calloc((size_t)p->n_counters, sizeof *cready);
    int32_t *clast = malloc((size_t)p->n_counters * sizeof *clast);

    if (!cready || !clast) {
        free(cready);
        free(clast);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "schedule: %d counters", p->n_counters);
    }
    for (int32_t c = 0; c < p->n_counters; c++)
        clast[c] = -1;
    for (int32_t k = 0; k < p->n_tasks; k++) {
        const loom_task *t = &p->tasks[k];
        double ready = 0;
        int32_t local = loom_task_local_input(p, k);
        pred[k] = local;
        ready = local >= 0 ? fin[local] : 0;
        for (int32_t w = 0; w < t->n_waits; w++) {
            const loom_wait *wt = &t->waits[w];
            if (wt->step_offset == 0 && cready[wt->counter] > ready) {
                ready = cready[wt->counter];
                pred[k] = clast[wt->counter];
            }
        }
        fin[k] = ready + t->est_us - t->staged_us;   /* on an SM idle long before */
        if (t->signal >= 0 && fin[k] > cready[t->signal]) {
            cready[t->signal] = fin[k];
            clast[t->signal] = k;
        }
    }
    free(cready);
    free(clast);
    return LOOM_OK;
}

/* Places every task; fills sm_offset / sm_tasks and est_step_us. A task
 * with staged rows (staged_us) finishes up to that much sooner on an SM
 * idle before its inputs are ready. */
static loom_status place(loom_program *p)
{
    int32_t n = p->n_sms;
    double *free_at = calloc((size_t)n, sizeof *free_at);
    double *cready = calloc((size_t)p->n_counters, sizeof *cready);
    int32_t *sm_of = malloc((size_t)p->n_tasks * sizeof *sm_of);
    int32_t *fill = calloc((size_t)n + 1, sizeof *fill);
    loom_status st = LOOM_OK;
    double makespan = 0;

    p->sm_offset = calloc((size_t)n + 1, sizeof *p->sm_offset);
    p->sm_tasks = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *p->sm_tasks);
    if (!free_at || !cready || !sm_of || !fill || !p->sm_offset || !p->sm_tasks) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "schedule: %d tasks on %d SMs", p->n_tasks, n);
        goto out;
    }
    for (int32_t k = 0; k < p->n_tasks; k++) {
        const loom_task *t = &p->tasks[k];
        double ready = 0, best_fin = 0, best_free = -1;
        int32_t best = 0;
        const double pre = t->staged_us;
        const int32_t local = loom_task_local_input(p, k);
        for (int32_t w = 0; w < t->n_waits; w++)
            if (t->waits[w].step_offset == 0 && cready[t->waits[w].counter] > ready)
                ready = cready[t->waits[w].counter];
        /* on its input's SM, after it, or anywhere */
        const int32_t s0 = local >= 0 ? sm_of[local] : 0, s1 = local >= 0 ? s0 + 1 : n;
        for (int32_t s = s0; s < s1; s++) {
            double idle = ready > free_at[s] ? ready - free_at[s] : 0;
            double fin = (free_at[s] > ready ? free_at[s] : ready) + t->est_us -
                         (idle < pre ? idle : pre);
            if (s == s0 || fin < best_fin - 1e-9 ||
                (fin < best_fin + 1e-9 && free_at[s] > best_free)) {
                best = s;
                best_fin = fin;
                best_free = free_at[s];
            }
        }
        sm_of[k] = best;
        free_at[best] = best_fin;
        if (t->signal >= 0 && best_fin > cready[t->signal])
            cready[t->signal] = best_fin;
        if (best_fin > makespan)
            makespan = best_fin;
        p->sm_offset[best + 1]++;
    }
    for (int32_t s = 0; s < n; s++)
        p->sm_offset[s + 1] += p->sm_offset[s];
    for (int32_t k = 0; k < p->n_tasks; k++)
        p->sm_tasks[p->sm_offset[sm_of[k]] + fill[sm_of[k]]++] = k;
    p->est_step_us = makespan;
out:
    free(free_at);
    free(cready);
    free(sm_of);
    free(fill);
    return st;
}

loom_status loom_schedule(loom_program *p, const loom_compile_params *cp)
{
    double *fin = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *fin);
    int32_t *pred = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *pred);
    loom_status st;

    (void)cp;
    if (!fin || !pred) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "schedule: %d tasks", p->n_tasks);
        goto out;
    }
    st = place(p);
    if (st != LOOM_OK)
        goto out;
    st = critical_path(p, fin, pred);
    if (st != LOOM_OK)
        goto out;
    p->est_critical_us = 0;
    for (int32_t k = 0; k < p->n_tasks; k++)
        if (fin[k] > p->est_critical_us)
            p->est_critical_us = fin[k];
out:
    free(fin);
    free(pred);
    return st;
}

static void print_critical(const loom_program *p, FILE *f)
{
    double *fin = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *fin);
    int32_t *pred = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *pred);
    int32_t *chain = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *chain);
    int32_t last = -1, n = 0;
    char name[64];

    if (!fin || !pred || !chain || critical_path(p, fin, pred) != LOOM_OK) {
        fprintf(f, "critical path: (out of memory)\n");
        goto out;
    }
    for (int32_t k = 0; k < p->n_tasks; k++)
        if (last < 0 || fin[k] > fin[last])
            last = k;
    for (int32_t k = last; k >= 0; k = pred[k])
        chain[n++] = k;
    fprintf(f, "critical path: %.2f us, %d tasks\n", last >= 0 ? fin[last] : 0.0, n);
    for (int32_t i = n - 1; i >= 0; i--) {
        loom_task_name(p, chain[i], name, sizeof name);
        fprintf(f, "  %-24s %8.2f us  (ends at %.2f)\n", name, p->tasks[chain[i]].est_us,
                fin[chain[i]]);
    }
out:
    free(fin);
    free(pred);
    free(chain);
}

void loom_schedule_print(const loom_program *p, FILE *f)
{
    char name[64];

    if (!f)
        f = stdout;
    fprintf(f, "schedule: %d tasks on %d SMs, est %.2f us/step, critical path %.2f us\n",
            p->n_tasks, p->n_sms, p->est_step_us, p->est_critical_us);
    for (int32_t s = 0; s < p->n_sms; s++) {
        double total = 0;
        fprintf(f, "SM %d: %d tasks\n", s, p->sm_offset[s + 1] - p->sm_offset[s]);
        for (int32_t i = p->sm_offset[s]; i < p->sm_offset[s + 1]; i++) {
            const loom_task *t = &p->tasks[p->sm_tasks[i]];
            loom_task_name(p, p->sm_tasks[i], name, sizeof name);
            fprintf(f, "  %-24s %8.2f us\n", name, t->est_us);
            total += t->est_us;
        }
        fprintf(f, "  total %.2f us\n", total);
    }
    print_critical(p, f);
}
