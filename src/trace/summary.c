/* summary.c - where the time of a traced run went (loom trace --summary):
 *
 *   per op type (op name: qkv, o_proj, attn, ...): tasks, SM time, the wall
 *     time some SM ran it (union of its slices), bytes, and GB/s = bytes /
 *     that wall time, against the GPU's bandwidth; the mean and max release
 *     (end to signalled: the signal's barrier and fence);
 *   per SM: busy (running), waiting (prefetch + counter waits), release and
 *     idle (from a task's signalled to the next one's wait, after its list)
 *     fractions of the traced window;
 *   the critical path: from the task that ended last, back through what
 *     released each task: the producer that ended last among the counters
 *     it waited on, or its SM's previous task when that ended later;
 *   the 10 longest waits and what they waited for (counter, producer).
 *
 * defines: loom_trace_summary */
#include <stdlib.h>
#include <string.h>

#include "trace/trace.h"

#define MAX_TYPES 32
#define N_LONGEST 10
#define PATH_SHOWN 40

typedef struct span {
    uint64_t b, e;
} span;

typedef struct op_type {
    const char *name;
    int32_t     tasks;          /* task instances                             */
    uint64_t    sm_ns, bytes, wall_ns;
    uint64_t    release_ns, release_max;   /* signalled - end: sum, max     */
    span       *spans;
    int32_t     n_spans;
} op_type;

/* A task instance (traced step, task). */
typedef struct inst {
    int32_t s, i;
} inst;

static uint64_t at(const loom_trace *t, inst x, int k)
{
    return loom_trace_at(t, x.s, x.i, k);
}

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return (x->b > y->b) - (x->b < y->b);
}

/* Length of the union of spans (sorted in place). */
static uint64_t union_ns(span *sp, int32_t n)
{
    uint64_t total = 0, cb = 0, ce = 0;

    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    for (int32_t k = 0; k < n; k++) {
        if (k == 0 || sp[k].b > ce) {
            total += ce - cb;
            cb = sp[k].b;
            ce = sp[k].e;
        } else if (sp[k].e > ce) {
            ce = sp[k].e;
        }
    }
    return total + (ce - cb);
}

static int32_t type_of(op_type *ty, int32_t *n, const char *name)
{
    for (int32_t k = 0; k < *n; k++)
        if (!strcmp(ty[k].name, name))
            return k;
    if (*n == MAX_TYPES)
        return MAX_TYPES - 1;   /* more kinds than ever exist: lumped */
    ty[*n].name = name;
    return (*n)++;
}

static void print_ops(const loom_trace *t, double bw, FILE *f)
{
    op_type ty[MAX_TYPES];
    int32_t n = 0, steps = 0;
    span *all = malloc(sizeof *all * ((size_t)t->n_steps * (size_t)t->n_tasks + 1));

    memset(ty, 0, sizeof ty);
    if (!all)
        return;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i) && s + 1 > steps)
                steps = s + 1;
    /* Group the run slices by op type, each type's slices contiguous. */
    int32_t *type = malloc(sizeof *type * ((size_t)t->n_ops + 1)), used = 0;
    for (int32_t o = 0; type && o < t->n_ops; o++)
        type[o] = type_of(ty, &n, t->ops[o].name);
    for (int32_t k = 0; type && k < n; k++) {
        ty[k].spans = all + used;
        for (int32_t s = 0; s < t->n_steps; s++)
            for (int32_t i = 0; i < t->n_tasks; i++) {
                if (type[t->tasks[i].op] != k || !loom_trace_ran(t, s, i))
                    continue;
                inst x = {s, i};
                span sp = {at(t, x, LOOM_TR_RUN), at(t, x, LOOM_TR_END)};
                ty[k].spans[ty[k].n_spans++] = sp;
                ty[k].tasks++;
                ty[k].sm_ns += sp.e - sp.b;
                ty[k].bytes += t->tasks[i].bytes;
                uint64_t rel = loom_trace_release_ns(t, s, i);
                ty[k].release_ns += rel;
                ty[k].release_max = rel > ty[k].release_max ? rel : ty[k].release_max;
            }
        used += ty[k].n_spans;
        ty[k].wall_ns = union_ns(ty[k].spans, ty[k].n_spans);
    }
    fprintf(f, "\nper op type (per step; GB/s = bytes / wall time some SM runs it, against "
            "%.3g B/s; rel: a task's release, end to signalled, mean and max in us):\n", bw);
    fprintf(f, "  %-11s %6s %10s %10s %11s %9s %7s %9s %9s\n", "op", "tasks", "SM us",
            "wall us", "MB", "GB/s", "% bw", "rel avg", "rel max");
    for (int32_t k = 0; k < n && steps > 0; k++) {
        double wall = (double)ty[k].wall_ns / steps, bytes = (double)ty[k].bytes / steps;
        double gbs = wall > 0 ? bytes / wall : 0;
        double rel = ty[k].tasks ? (double)ty[k].release_ns / ty[k].tasks : 0;
        fprintf(f, "  %-11s %6d %10.2f %10.2f %11.3f %9.1f %6.1f%% %9.3f %9.3f\n", ty[k].name,
                ty[k].tasks / steps, (double)ty[k].sm_ns / steps / 1e3, wall / 1e3,
                bytes / 1e6, gbs, gbs * 1e9 / bw * 100, rel / 1e3,
                (double)ty[k].release_max / 1e3);
    }
    free(type);
    free(all);
}

/* ------------------------------------------------------------ per SM */

/* SM sm's time in the traced steps: busy (run begin to end), wait (wait
 * begin to run begin) and release (end to signalled), ns. */
static void sm_times(const loom_trace *t, int32_t sm, uint64_t ns[3])
{
    ns[0] = ns[1] = ns[2] = 0;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t k = t->sm_offset[sm]; k < t->sm_offset[sm + 1]; k++) {
            inst x = {s, t->sm_tasks[k]};
            if (!loom_trace_ran(t, s, x.i))
                continue;
            ns[0] += at(t, x, LOOM_TR_END) - at(t, x, LOOM_TR_RUN);
            ns[1] += at(t, x, LOOM_TR_RUN) - at(t, x, LOOM_TR_WAIT);
            ns[2] += at(t, x, LOOM_TR_SIGNAL) - at(t, x, LOOM_TR_END);
        }
}

/* Busy, wait, release and the rest (idle) as percentages of win ns. */
static void print_fractions(FILE *f, const char *label, const double ns[3], double win)
{
    fprintf(f, "  %-6s %5.1f%% %5.1f%% %6.1f%% %5.1f%%\n", label, ns[0] / win * 100,
            ns[1] / win * 100, ns[2] / win * 100, (win - ns[0] - ns[1] - ns[2]) / win * 100);
}

static void print_sms(const loom_trace *t, FILE *f)
{
    uint64_t t0 = UINT64_MAX, t1 = 0;
    double sum[3] = {0, 0, 0};
    char label[16];

    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i)) {
                inst x = {s, i};
                t0 = at(t, x, LOOM_TR_WAIT) < t0 ? at(t, x, LOOM_TR_WAIT) : t0;
                t1 = at(t, x, LOOM_TR_SIGNAL) > t1 ? at(t, x, LOOM_TR_SIGNAL) : t1;
            }
    if (t1 <= t0)
        return;
    double win = (double)(t1 - t0);
    fprintf(f, "\nper SM (fractions of the traced window, %.2f us; release: end to signalled, "
            "idle: the rest):\n", win / 1e3);
    fprintf(f, "  %-6s %6s %6s %7s %6s\n", "SM", "busy", "wait", "release", "idle");
    for (int32_t sm = 0; sm < t->n_sms; sm++) {
        uint64_t ns[3];
        sm_times(t, sm, ns);
        double d[3] = {(double)ns[0], (double)ns[1], (double)ns[2]};
        for (int j = 0; j < 3; j++)
            sum[j] += d[j];
        snprintf(label, sizeof label, "%d", sm);
        print_fractions(f, label, d, win);
    }
    print_fractions(f, "all", sum, win * t->n_sms);
}

/* ------------------------------------------------------------ waits */

/* What released instance x: the producer instance that ended last among
 * the counters it waits on (*counter set), else {-1, -1}. */
static inst released_by(const loom_trace *t, const int32_t *last, inst x, int32_t *counter)
{
    const loom_trace_task *tt = &t->tasks[x.i];
    inst best = {-1, -1};

    *counter = -1;
    for (int32_t w = 0; w < tt->n_waits; w++) {
        int32_t c = tt->waits[w].counter, ps = x.s + tt->waits[w].step_offset;
        if (ps < 0)
            continue;
        inst p = {ps, last[(size_t)ps * (size_t)t->n_counters + c]};
        if (p.i < 0 || !loom_trace_ran(t, p.s, p.i))
            continue;
        if (best.i < 0 || at(t, p, LOOM_TR_END) > at(t, best, LOOM_TR_END)) {
            best = p;
            *counter = c;
        }
    }
    return best;
}

static const loom_trace *g_sort_trace;   /* qsort has no context argument */

static int cmp_wait_desc(const void *a, const void *b)
{
    const inst *x = a, *y = b;
    uint64_t wx = at(g_sort_trace, *x, LOOM_TR_RUN) - at(g_sort_trace, *x, LOOM_TR_WAIT);
    uint64_t wy = at(g_sort_trace, *y, LOOM_TR_RUN) - at(g_sort_trace, *y, LOOM_TR_WAIT);
    return (wx < wy) - (wx > wy);
}

static void print_waits(const loom_trace *t, const int32_t *last, FILE *f)
{
    size_t n = 0;
    inst *all = malloc(sizeof *all * ((size_t)t->n_steps * (size_t)t->n_tasks + 1));

    if (!all)
        return;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i))
                all[n++] = (inst){s, i};
    g_sort_trace = t;
    qsort(all, n, sizeof *all, cmp_wait_desc);
    fprintf(f, "\nthe %d longest waits:\n", N_LONGEST);
    for (size_t k = 0; k < n && k < N_LONGEST; k++) {
        int32_t c;
        inst p = released_by(t, last, all[k], &c);
        fprintf(f, "  %9.2f us  SM %-4d step %-4d %-22s", (double)(at(t, all[k], LOOM_TR_RUN) -
                at(t, all[k], LOOM_TR_WAIT)) / 1e3, t->tasks[all[k].i].sm,
                t->first_step + all[k].s, t->tasks[all[k].i].name);
        if (p.i >= 0 && at(t, p, LOOM_TR_END) > at(t, all[k], LOOM_TR_WAIT))
            fprintf(f, " waited for '%s': %s (op %s) ended last\n", t->counters[c].name,
                    t->tasks[p.i].name, t->ops[t->tasks[p.i].op].name);
        else
            fprintf(f, " no counter: prefetch / its own SM\n");
    }
    free(all);
}

/* ------------------------------------------------------------ critical path */

/* The SM's previous instance of x (same step or the step before). */
static inst sm_prev(const loom_trace *t, inst x)
{
    int32_t sm = t->tasks[x.i].sm;

    for (int32_t k = t->sm_offset[sm]; k < t->sm_offset[sm + 1]; k++)
        if (t->sm_tasks[k] == x.i) {
            if (k > t->sm_offset[sm])
                return (inst){x.s, t->sm_tasks[k - 1]};
            if (x.s > 0)
                return (inst){x.s - 1, t->sm_tasks[t->sm_offset[sm + 1] - 1]};
        }
    return (inst){-1, -1};
}

static void print_critical(const loom_trace *t, const int32_t *last, FILE *f)
{
    inst x = {-1, -1};
    int32_t hops = 0, max_hops = t->n_steps * t->n_tasks;
    inst *path = malloc(sizeof *path * ((size_t)max_hops + 1));
    uint64_t run_ns[MAX_TYPES] = {0}, wait_ns = 0, release_ns = 0;
    const char *names[MAX_TYPES];
    int32_t n_names = 0;

    if (!path)
        return;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i) &&
                (x.i < 0 || at(t, (inst){s, i}, LOOM_TR_END) > at(t, x, LOOM_TR_END)))
                x = (inst){s, i};
    while (x.i >= 0 && hops < max_hops) {
        int32_t c;
        path[hops++] = x;
        inst p = released_by(t, last, x, &c), q = sm_prev(t, x);
        if (q.i >= 0 && !loom_trace_ran(t, q.s, q.i))
            q.i = -1;
        if (q.i >= 0 && (p.i < 0 || at(t, q, LOOM_TR_END) >= at(t, p, LOOM_TR_END)))
            p = q;
        x = p;
    }
    for (int32_t k = 0; k < hops; k++) {
        inst y = path[k];
        int32_t ty = -1;
        for (int32_t j = 0; j < n_names; j++)
            if (!strcmp(names[j], t->ops[t->tasks[y.i].op].name))
                ty = j;
        if (ty < 0 && n_names < MAX_TYPES) {
            ty = n_names++;
            names[ty] = t->ops[t->tasks[y.i].op].name;
        }
        if (ty >= 0)
            run_ns[ty] += at(t, y, LOOM_TR_END) - at(t, y, LOOM_TR_RUN);
        if (k + 1 < hops && at(t, y, LOOM_TR_RUN) > at(t, path[k + 1], LOOM_TR_END)) {
            uint64_t end = at(t, path[k + 1], LOOM_TR_END), run = at(t, y, LOOM_TR_RUN);
            uint64_t sig = at(t, path[k + 1], LOOM_TR_SIGNAL);
            wait_ns += run - end;
            release_ns += (sig < run ? sig : run) - end;   /* the part its release took */
        }
    }
    if (hops == 0) {
        free(path);
        return;
    }
    uint64_t span_ns = at(t, path[0], LOOM_TR_END) - at(t, path[hops - 1], LOOM_TR_RUN);
    fprintf(f, "\ncritical path: %d tasks, %.2f us from the first one's run to the last one's "
            "end\n  running:", hops, (double)span_ns / 1e3);
    for (int32_t j = 0; j < n_names; j++)
        fprintf(f, " %s %.2f us;", names[j], (double)run_ns[j] / 1e3);
    fprintf(f, "\n  gaps between a task's end and the next one's run (release, wake-up, "
            "dispatch): %.2f us, of which releases (end to signalled) %.2f us\n"
            "  its last %d tasks (latest first):\n", (double)wait_ns / 1e3,
            (double)release_ns / 1e3, PATH_SHOWN);
    for (int32_t k = 0; k < hops && k < PATH_SHOWN; k++) {
        inst y = path[k];
        fprintf(f, "    step %-4d SM %-4d %-22s run %8.2f us (%.2f .. %.2f)\n",
                t->first_step + y.s, t->tasks[y.i].sm, t->tasks[y.i].name,
                (double)(at(t, y, LOOM_TR_END) - at(t, y, LOOM_TR_RUN)) / 1e3,
                (double)at(t, y, LOOM_TR_RUN) / 1e3, (double)at(t, y, LOOM_TR_END) / 1e3);
    }
    free(path);
}

/* ------------------------------------------------------------ summary */

static void print_header(const loom_trace *t, double bw, FILE *f)
{
    fprintf(f, "loom trace: %s backend (%s), %d SMs, %d tasks per step, %d counters\n",
            t->backend, t->clock, t->n_sms, t->n_tasks, t->n_counters);
    fprintf(f, "traced steps %d..%d of a run of %d steps%s\n", t->first_step,
            t->first_step + t->n_steps - 1, t->steps_run,
            t->truncated ? " (the trace keeps these steps: later ones were not recorded)"
                         : "");
    fprintf(f, "bandwidth %.3g B/s (%s)\n", bw,
            t->bandwidth > 0 && bw == t->bandwidth ? "recorded in the trace" : "given / default");
    for (int32_t s = 0; s < t->n_steps; s++) {
        uint64_t b = UINT64_MAX, e = 0;
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i)) {
                inst x = {s, i};
                b = at(t, x, LOOM_TR_WAIT) < b ? at(t, x, LOOM_TR_WAIT) : b;
                e = at(t, x, LOOM_TR_END) > e ? at(t, x, LOOM_TR_END) : e;
            }
        if (e > b)
            fprintf(f, "  step %d: %.2f us from its first wait to its last end\n",
                    t->first_step + s, (double)(e - b) / 1e3);
    }
}

void loom_trace_summary(const loom_trace *t, double bandwidth, FILE *f)
{
    int32_t *last;

    if (!t || !f)
        return;
    if (bandwidth <= 0)
        bandwidth = t->bandwidth > 0 ? t->bandwidth : LOOM_TRACE_DEFAULT_BW;
    last = malloc(sizeof *last * ((size_t)t->n_steps * (size_t)t->n_counters + 1));
    if (!last) {
        fprintf(f, "loom trace: out of memory\n");
        return;
    }
    loom_trace_last_producers(t, last);
    print_header(t, bandwidth, f);
    print_ops(t, bandwidth, f);
    print_sms(t, f);
    print_critical(t, last, f);
    print_waits(t, last, f);
    free(last);
}
