/* trace.c - a traced run as data: built from the backend's buffer, saved
 * and loaded as the loom trace file (JSON, jansson), and checked against
 * the schedule it ran.
 *
 * defines: loom_trace_from_run, loom_trace_free, loom_trace_ran,
 *          loom_trace_save, loom_trace_load, loom_trace_check */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "trace/trace.h"

#define TRACE_NONE UINT64_MAX   /* stamp of a task that did not run */
#define TRACE_VERSION 2         /* 1: 3 stamps per task (no signalled) */

void loom_trace_free(loom_trace *t)
{
    if (!t)
        return;
    free(t->ops);
    free(t->counters);
    free(t->tasks);
    free(t->sm_offset);
    free(t->sm_tasks);
    free(t->t);
    free(t);
}

bool loom_trace_ran(const loom_trace *t, int32_t s, int32_t task)
{
    return loom_trace_at(t, s, task, LOOM_TR_END) != TRACE_NONE;
}

/* A trace with every table allocated (stamps TRACE_NONE), or NULL. */
static loom_trace *trace_alloc(int32_t n_ops, int32_t n_counters, int32_t n_tasks, int32_t n_sms,
                               int32_t n_steps)
{
    loom_trace *t = calloc(1, sizeof *t);
    size_t n_t = (size_t)n_steps * (size_t)n_tasks * LOOM_TRACE_STAMPS;

    if (!t)
        return NULL;
    t->n_ops = n_ops;
    t->n_counters = n_counters;
    t->n_tasks = n_tasks;
    t->n_sms = n_sms;
    t->n_steps = n_steps;
    t->ops = calloc((size_t)n_ops + 1, sizeof *t->ops);
    t->counters = calloc((size_t)n_counters + 1, sizeof *t->counters);
    t->tasks = calloc((size_t)n_tasks + 1, sizeof *t->tasks);
    t->sm_offset = calloc((size_t)n_sms + 1, sizeof *t->sm_offset);
    t->sm_tasks = calloc((size_t)n_tasks + 1, sizeof *t->sm_tasks);
    t->t = malloc((n_t + 1) * sizeof *t->t);
    if (!t->ops || !t->counters || !t->tasks || !t->sm_offset || !t->sm_tasks || !t->t) {
        loom_trace_free(t);
        return NULL;
    }
    for (size_t i = 0; i < n_t; i++)
        t->t[i] = TRACE_NONE;
    return t;
}

/* ------------------------------------------------------------ from a run */

/* The weights op o reads in a step: a linear op's whole matrix, the
 * embedding's one row, nothing for the others. */
static int64_t op_weight_bytes(const loom_graph *g, const loom_op *o)
{
    if (o->w < 0 || (o->kind != LOOM_OP_LINEAR && o->kind != LOOM_OP_EMBED))
        return 0;
    const loom_gtensor *w = &g->tensors[o->w];
    const int64_t n = o->kind == LOOM_OP_EMBED ? w->cols : loom_gtensor_numel(w);
    return n * (int64_t)loom_dtype_size(w->dtype);
}

static void copy_program(loom_trace *t, const loom_program *p)
{
    const loom_graph *g = p->graph;

    for (int32_t i = 0; i < g->n_ops; i++) {
        snprintf(t->ops[i].name, sizeof t->ops[i].name, "%s", g->ops[i].name);
        t->ops[i].kind = g->ops[i].kind;
        t->ops[i].layer = g->ops[i].layer;
        t->ops[i].weight_bytes = op_weight_bytes(g, &g->ops[i]);
    }
    memcpy(t->counters, p->counters, sizeof *p->counters * (size_t)p->n_counters);
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const loom_task *pt = &p->tasks[i];
        loom_trace_task *tt = &t->tasks[i];
        loom_task_name(p, i, tt->name, sizeof tt->name);
        tt->op = pt->op;
        tt->signal = pt->signal;
        tt->n_waits = pt->n_waits;
        memcpy(tt->waits, pt->waits, sizeof tt->waits);
        tt->bytes = pt->bytes;
    }
    memcpy(t->sm_offset, p->sm_offset, sizeof(int32_t) * (size_t)(p->n_sms + 1));
    memcpy(t->sm_tasks, p->sm_tasks, sizeof(int32_t) * (size_t)p->sm_offset[p->n_sms]);
    for (int32_t sm = 0; sm < p->n_sms; sm++)
        for (int32_t k = p->sm_offset[sm]; k < p->sm_offset[sm + 1]; k++)
            t->tasks[p->sm_tasks[k]].sm = sm;
}

/* A task ran when all its stamps are set. */
static bool rec_ran(const uint64_t *s)
{
    for (int k = 0; k < LOOM_TRACE_STAMPS; k++)
        if (!s[k])
            return false;
    return true;
}

loom_status loom_trace_from_run(const loom_program *p, const loom_trace_rec *rec,
                                int32_t steps_run, const char *backend, double bandwidth,
                                loom_trace **out)
{
    loom_trace *t;
    uint64_t origin = UINT64_MAX;
    size_t n;

    if (!p || !rec || !rec->t || rec->steps < 1 || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "trace: no program or recording");
    if (p->sm_offset[p->n_sms] != p->n_tasks)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "trace: SM lists hold %d tasks, program %d",
                         p->sm_offset[p->n_sms], p->n_tasks);
    t = trace_alloc(p->graph->n_ops, p->n_counters, p->n_tasks, p->n_sms, rec->steps);
    if (!t)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "trace: %d tasks x %d steps", p->n_tasks,
                         rec->steps);
    snprintf(t->backend, sizeof t->backend, "%s", backend ? backend : "?");
    snprintf(t->clock, sizeof t->clock, "%s",
             backend && !strcmp(backend, "cuda") ? "globaltimer ns" : "CLOCK_MONOTONIC ns");
    t->first_step = rec->first_step;
    t->steps_run = steps_run;
    t->truncated = steps_run > rec->first_step + rec->steps;
    t->bandwidth = bandwidth > 0 ? bandwidth : 0;
    copy_program(t, p);
    for (int32_t i = 0; rec->flags && i < p->n_tasks; i++) {
        loom_trace_task *tt = &t->tasks[i];
        for (int32_t w = 0; w < tt->n_waits; w++)
            tt->polled |= rec->flags[i] & LOOM_TRACE_POLLED(w) ? 1u << w : 0u;
        tt->early = (rec->flags[i] & LOOM_TRACE_EARLY) != 0;
    }

    n = (size_t)rec->steps * (size_t)p->n_tasks * LOOM_TRACE_STAMPS;
    for (size_t i = 0; i < n; i += LOOM_TRACE_STAMPS)
        if (rec_ran(rec->t + i))
            for (int k = 0; k < LOOM_TRACE_STAMPS; k++)
                if (rec->t[i + k] < origin)
                    origin = rec->t[i + k];
    for (size_t i = 0; i < n; i += LOOM_TRACE_STAMPS)
        if (rec_ran(rec->t + i))
            for (int k = 0; k < LOOM_TRACE_STAMPS; k++)
                t->t[i + k] = rec->t[i + k] - origin;
    *out = t;
    return LOOM_OK;
}

/* ------------------------------------------------------------ save */

static json_t *task_json(const loom_trace_task *tt)
{
    json_t *waits = json_array();

    for (int32_t w = 0; w < tt->n_waits; w++)
        json_array_append_new(waits, json_pack("[iii]", tt->waits[w].counter,
                                               tt->waits[w].needed, tt->waits[w].step_offset));
    json_t *o = json_pack("{s:s, s:i, s:i, s:I, s:i, s:o}", "name", tt->name, "op", tt->op,
                          "sm", tt->sm, "bytes", (json_int_t)tt->bytes, "signal", tt->signal,
                          "waits", waits);
    if (o && tt->polled)   /* absent: none (files without them load as before) */
        json_object_set_new(o, "polled", json_integer(tt->polled));
    if (o && tt->early)
        json_object_set_new(o, "early", json_true());
    return o;
}

/* The whole trace as a JSON object, or NULL when out of memory. */
static json_t *trace_json(const loom_trace *t)
{
    json_t *ops = json_array(), *ctrs = json_array(), *tasks = json_array();
    json_t *lists = json_array(), *steps = json_array();

    for (int32_t i = 0; i < t->n_ops; i++)
        json_array_append_new(ops, json_pack("{s:s, s:s, s:i, s:I}", "name", t->ops[i].name,
                                             "kind", loom_op_kind_name(t->ops[i].kind),
                                             "layer", t->ops[i].layer, "weight_bytes",
                                             (json_int_t)t->ops[i].weight_bytes));
    for (int32_t i = 0; i < t->n_counters; i++)
        json_array_append_new(ctrs, json_pack("{s:s, s:i, s:i}", "name", t->counters[i].name,
                                              "op", t->counters[i].op, "signals",
                                              t->counters[i].signals));
    for (int32_t i = 0; i < t->n_tasks; i++)
        json_array_append_new(tasks, task_json(&t->tasks[i]));
    for (int32_t sm = 0; sm < t->n_sms; sm++) {
        json_t *l = json_array();
        for (int32_t k = t->sm_offset[sm]; k < t->sm_offset[sm + 1]; k++)
            json_array_append_new(l, json_integer(t->sm_tasks[k]));
        json_array_append_new(lists, l);
    }
    for (int32_t s = 0; s < t->n_steps; s++) {
        json_t *a = json_array();
        for (int32_t i = 0; i < t->n_tasks; i++)
            for (int k = 0; k < LOOM_TRACE_STAMPS; k++) {
                uint64_t v = loom_trace_at(t, s, i, k);
                json_array_append_new(a, json_integer(v == TRACE_NONE ? -1 : (json_int_t)v));
            }
        json_array_append_new(steps, a);
    }
    return json_pack("{s:s, s:i, s:s, s:s, s:i, s:i, s:i, s:i, s:b, s:o, s:o, s:o, s:o, s:o, "
                     "s:o}",
                     "format", "loom-trace", "version", TRACE_VERSION, "backend", t->backend,
                     "clock", t->clock, "n_sms", t->n_sms, "first_step", t->first_step, "steps",
                     t->n_steps, "steps_run", t->steps_run, "truncated", t->truncated,
                     "bandwidth", t->bandwidth > 0 ? json_real(t->bandwidth) : json_null(),
                     "ops", ops, "counters", ctrs, "tasks", tasks, "sm_tasks", lists, "t", steps);
}

loom_status loom_trace_dump_json(json_t *root, const char *path, const char *what)
{
    char tmp[4096];
    int rc;

    if (!root)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: building the %s JSON", path, what);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    rc = json_dump_file(root, tmp, JSON_COMPACT);
    json_decref(root);
    if (rc != 0 || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return loom_fail(LOOM_ERR_IO, "%s: cannot write the %s: %s", path, what, strerror(e));
    }
    return LOOM_OK;
}

loom_status loom_trace_save(const loom_trace *t, const char *path)
{
    if (!t || !path)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "trace save: NULL trace or path");
    return loom_trace_dump_json(trace_json(t), path, "trace");
}

/* ------------------------------------------------------------ load */

typedef struct reader {
    const char *path;
    loom_status st;
} reader;

static bool bad(reader *r, const char *fmt, ...) LOOM_PRINTF(2, 3);

static bool bad(reader *r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (r->st != LOOM_OK)
        return false;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = loom_fail(LOOM_ERR_FORMAT, "%s: loom trace: %s", r->path, msg);
    return false;
}

/* Integer field key of obj in [lo, hi]. */
static bool get_int(reader *r, json_t *obj, const char *key, json_int_t lo, json_int_t hi,
                    json_int_t *v)
{
    json_t *x = json_object_get(obj, key);

    if (!json_is_integer(x))
        return bad(r, "'%s' is missing or not an integer", key);
    *v = json_integer_value(x);
    if (*v < lo || *v > hi)
        return bad(r, "'%s' = %lld outside [%lld, %lld]", key, (long long)*v, (long long)lo,
                   (long long)hi);
    return true;
}

static bool get_str(reader *r, json_t *obj, const char *key, char *dst, size_t len)
{
    json_t *x = json_object_get(obj, key);

    if (!json_is_string(x))
        return bad(r, "'%s' is missing or not a string", key);
    if (strlen(json_string_value(x)) >= len)
        return bad(r, "'%s' is longer than %zu bytes", key, len - 1);
    snprintf(dst, len, "%s", json_string_value(x));
    return true;
}

static json_t *get_array(reader *r, json_t *obj, const char *key, size_t n)
{
    json_t *x = json_object_get(obj, key);

    if (!json_is_array(x)) {
        bad(r, "'%s' is missing or not an array", key);
        return NULL;
    }
    if (n != (size_t)-1 && json_array_size(x) != n) {
        bad(r, "'%s' has %zu entries, expected %zu", key, json_array_size(x), n);
        return NULL;
    }
    return x;
}

static bool load_ops(reader *r, json_t *root, loom_trace *t)
{
    json_t *a = get_array(r, root, "ops", (size_t)t->n_ops), *o;
    size_t i;
    json_int_t v;
    char kind[24];

    if (!a)
        return false;
    json_array_foreach(a, i, o) {
        if (!get_str(r, o, "name", t->ops[i].name, sizeof t->ops[i].name) ||
            !get_str(r, o, "kind", kind, sizeof kind) || !get_int(r, o, "layer", -1, 1 << 20, &v))
            return false;
        t->ops[i].layer = (int32_t)v;
        t->ops[i].weight_bytes = 0;   /* optional (trace.h) */
        if (json_object_get(o, "weight_bytes")) {
            if (!get_int(r, o, "weight_bytes", 0, INT64_MAX, &v))
                return false;
            t->ops[i].weight_bytes = (int64_t)v;
        }
        t->ops[i].kind = -1;
        for (int32_t k = 0; k < LOOM_OP_KIND_COUNT; k++)
            if (!strcmp(kind, loom_op_kind_name((loom_op_kind)k)))
                t->ops[i].kind = k;
        if (t->ops[i].kind < 0)
            return bad(r, "op %zu: unknown kind '%s'", i, kind);
    }
    return true;
}

static bool load_counters(reader *r, json_t *root, loom_trace *t)
{
    json_t *a = get_array(r, root, "counters", (size_t)t->n_counters), *o;
    size_t i;
    json_int_t v;

    if (!a)
        return false;
    json_array_foreach(a, i, o) {
        loom_counter_info *c = &t->counters[i];
        if (!get_str(r, o, "name", c->name, sizeof c->name) ||
            !get_int(r, o, "op", -1, t->n_ops - 1, &v))
            return false;
        c->op = (int32_t)v;
        if (!get_int(r, o, "signals", 0, INT32_MAX, &v))
            return false;
        c->signals = (int32_t)v;
    }
    return true;
}

static bool load_waits(reader *r, json_t *o, size_t i, loom_trace *t)
{
    json_t *a = get_array(r, o, "waits", (size_t)-1), *w;
    loom_trace_task *tt = &t->tasks[i];
    size_t k;

    if (!a)
        return false;
    if (json_array_size(a) > LOOM_MAX_WAITS)
        return bad(r, "task %zu: %zu waits (at most %d)", i, json_array_size(a), LOOM_MAX_WAITS);
    tt->n_waits = (int32_t)json_array_size(a);
    json_array_foreach(a, k, w) {
        json_int_t c, n, off;
        if (json_unpack(w, "[III!]", &c, &n, &off) != 0)
            return bad(r, "task %zu: wait %zu is not [counter, needed, step_offset]", i, k);
        if (c < 0 || c >= t->n_counters || n < 1 || n > INT32_MAX || off < -1 || off > 0)
            return bad(r, "task %zu: wait %zu = [%lld, %lld, %lld] out of range", i, k,
                       (long long)c, (long long)n, (long long)off);
        tt->waits[k] = (loom_wait){(int32_t)c, (int32_t)n, (int32_t)off};
    }
    return true;
}

static bool load_tasks(reader *r, json_t *root, loom_trace *t)
{
    json_t *a = get_array(r, root, "tasks", (size_t)t->n_tasks), *o;
    size_t i;
    json_int_t v;

    if (!a)
        return false;
    json_array_foreach(a, i, o) {
        loom_trace_task *tt = &t->tasks[i];
        if (!get_str(r, o, "name", tt->name, sizeof tt->name) ||
            !get_int(r, o, "op", 0, t->n_ops - 1, &v))
            return false;
        tt->op = (int32_t)v;
        if (!get_int(r, o, "sm", 0, t->n_sms - 1, &v))
            return false;
        tt->sm = (int32_t)v;
        if (!get_int(r, o, "signal", -1, t->n_counters - 1, &v))
            return false;
        tt->signal = (int32_t)v;
        if (!get_int(r, o, "bytes", 0, INT64_MAX, &v))
            return false;
        tt->bytes = (uint64_t)v;
        if (!load_waits(r, o, i, t))
            return false;
        tt->polled = 0;
        if (json_object_get(o, "polled")) {
            if (!get_int(r, o, "polled", 0, ((json_int_t)1 << tt->n_waits) - 1, &v))
                return false;
            tt->polled = (uint32_t)v;
        }
        json_t *early = json_object_get(o, "early");
        if (early && !json_is_boolean(early))
            return bad(r, "task %zu: \"early\" is not true or false", i);
        tt->early = early && json_is_true(early);
    }
    return true;
}

/* The SM lists: each task exactly once, on the SM its entry names. */
static bool load_lists(reader *r, json_t *root, loom_trace *t)
{
    json_t *a = get_array(r, root, "sm_tasks", (size_t)t->n_sms), *l, *x;
    unsigned char *seen = calloc((size_t)t->n_tasks + 1, 1);
    int32_t n = 0;
    size_t sm, k;
    bool ok = a && seen;

    if (!seen)
        bad(r, "out of memory");
    for (sm = 0; ok && sm < json_array_size(a); sm++) {
        l = json_array_get(a, sm);
        t->sm_offset[sm] = n;
        if (!json_is_array(l)) {
            ok = bad(r, "sm_tasks[%zu] is not an array", sm);
            break;
        }
        json_array_foreach(l, k, x) {
            json_int_t id = json_is_integer(x) ? json_integer_value(x) : -1;
            if (id < 0 || id >= t->n_tasks || seen[id] || n >= t->n_tasks ||
                t->tasks[id].sm != (int32_t)sm) {
                ok = bad(r, "sm_tasks[%zu][%zu]: not a task of this SM listed once", sm, k);
                break;
            }
            seen[id] = 1;
            t->sm_tasks[n++] = (int32_t)id;
        }
    }
    if (ok && n != t->n_tasks)
        ok = bad(r, "sm_tasks list %d of the %d tasks", n, t->n_tasks);
    t->sm_offset[t->n_sms] = n;
    free(seen);
    return ok;
}

/* The stamps: per task 4 (version 2), or 3 (version 1, before the
 * signalled stamp: signalled = end, i.e. no release time). */
static bool load_stamps(reader *r, json_t *root, loom_trace *t, json_int_t version)
{
    json_t *a = get_array(r, root, "t", (size_t)t->n_steps), *st, *x;
    size_t s, k, per = version == 1 ? 3 : LOOM_TRACE_STAMPS;

    if (!a)
        return false;
    json_array_foreach(a, s, st) {
        if (!json_is_array(st) || json_array_size(st) != (size_t)t->n_tasks * per)
            return bad(r, "t[%zu] is not an array of %zu x %d stamps", s, per, t->n_tasks);
        json_array_foreach(st, k, x) {
            json_int_t v = json_is_integer(x) ? json_integer_value(x) : -2;
            if (v < -1)
                return bad(r, "t[%zu][%zu] is not a stamp (ns >= 0, or -1)", s, k);
            uint64_t *slot = t->t + (s * (size_t)t->n_tasks + k / per) * LOOM_TRACE_STAMPS;
            slot[k % per] = v < 0 ? TRACE_NONE : (uint64_t)v;
            if (per == 3 && k % per == LOOM_TR_END)
                slot[LOOM_TR_SIGNAL] = slot[LOOM_TR_END];
        }
    }
    return true;
}

static bool load_header(reader *r, json_t *root, json_int_t *n[5])
{
    json_t *fmt = json_object_get(root, "format");

    if (!json_is_object(root) || !json_is_string(fmt) ||
        strcmp(json_string_value(fmt), "loom-trace") != 0)
        return bad(r, "not a loom trace (no \"format\": \"loom-trace\")");
    if (!get_int(r, root, "version", 1, TRACE_VERSION, n[4]) ||
        !get_int(r, root, "n_sms", 1, 1 << 20, n[0]) ||
        !get_int(r, root, "steps", 1, 1 << 20, n[1]))
        return false;
    if (!get_array(r, root, "ops", (size_t)-1) || !get_array(r, root, "counters", (size_t)-1) ||
        !get_array(r, root, "tasks", (size_t)-1))
        return false;
    *n[2] = (json_int_t)json_array_size(json_object_get(root, "tasks"));
    *n[3] = (json_int_t)json_array_size(json_object_get(root, "counters"));
    if (*n[2] < 1 || *n[2] > (1 << 24))
        return bad(r, "%lld tasks", (long long)*n[2]);
    return true;
}

static bool load_meta(reader *r, json_t *root, loom_trace *t)
{
    json_t *bw = json_object_get(root, "bandwidth"), *tr = json_object_get(root, "truncated");
    json_int_t v;

    if (!get_str(r, root, "backend", t->backend, sizeof t->backend) ||
        !get_str(r, root, "clock", t->clock, sizeof t->clock) ||
        !get_int(r, root, "first_step", 0, INT32_MAX, &v))
        return false;
    t->first_step = (int32_t)v;
    if (!get_int(r, root, "steps_run", 0, INT32_MAX, &v))
        return false;
    t->steps_run = (int32_t)v;
    if (!json_is_boolean(tr))
        return bad(r, "'truncated' is missing or not a boolean");
    t->truncated = json_is_true(tr);
    if (!json_is_null(bw) && !(json_is_number(bw) && json_number_value(bw) > 0))
        return bad(r, "'bandwidth' is neither null nor a positive number");
    t->bandwidth = json_is_null(bw) ? 0 : json_number_value(bw);
    return true;
}

loom_status loom_trace_load(const char *path, loom_trace **out)
{
    json_error_t err;
    json_t *root;
    json_int_t n_sms = 0, steps = 0, n_tasks = 0, n_ctr = 0, ver = 0;
    json_int_t *nums[5] = {&n_sms, &steps, &n_tasks, &n_ctr, &ver};
    reader r = {path, LOOM_OK};
    loom_trace *t = NULL;

    if (!path || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "trace load: NULL path or out");
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return loom_fail(errno == ENOENT ? LOOM_ERR_IO : LOOM_ERR_FORMAT, "%s:%d:%d: %s", path,
                         err.line, err.column, err.text);
    if (!load_header(&r, root, nums))
        goto out;
    size_t n_ops = json_array_size(json_object_get(root, "ops"));
    if ((size_t)steps * (size_t)n_tasks > ((size_t)1 << 28)) {
        bad(&r, "%lld steps x %lld tasks is too large", (long long)steps, (long long)n_tasks);
        goto out;
    }
    t = trace_alloc((int32_t)n_ops, (int32_t)n_ctr, (int32_t)n_tasks, (int32_t)n_sms,
                    (int32_t)steps);
    if (!t) {
        r.st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: trace of %lld tasks", path,
                         (long long)n_tasks);
        goto out;
    }
    if (load_meta(&r, root, t) && load_ops(&r, root, t) && load_counters(&r, root, t) &&
        load_tasks(&r, root, t) && load_lists(&r, root, t) && load_stamps(&r, root, t, ver)) {
        *out = t;
        t = NULL;
    }
out:
    loom_trace_free(t);
    json_decref(root);
    return r.st;
}

/* ------------------------------------------------------------ check */

/* Steps every task must have run: those the run completed. */
static int32_t complete_steps(const loom_trace *t)
{
    int32_t n = t->steps_run - t->first_step;

    if (n < 0)
        n = 0;
    return n < t->n_steps ? n : t->n_steps;
}

static loom_status check_task(const loom_trace *t, int32_t s, int32_t i)
{
    uint64_t w = loom_trace_at(t, s, i, LOOM_TR_WAIT), b = loom_trace_at(t, s, i, LOOM_TR_RUN);
    uint64_t e = loom_trace_at(t, s, i, LOOM_TR_END), g = loom_trace_at(t, s, i, LOOM_TR_SIGNAL);
    int32_t step = t->first_step + s;

    if (s < complete_steps(t) && e == TRACE_NONE)
        return loom_fail(LOOM_ERR_VERIFY, "trace: step %d: task %d %s did not run", step, i,
                         t->tasks[i].name);
    if (s >= complete_steps(t) && e != TRACE_NONE)
        return loom_fail(LOOM_ERR_VERIFY, "trace: step %d: task %d %s ran, but the run "
                         "stopped after %d steps", step, i, t->tasks[i].name, t->steps_run);
    if (e == TRACE_NONE)
        return LOOM_OK;
    if (w == TRACE_NONE || b == TRACE_NONE || g == TRACE_NONE || w > b || b > e || e > g)
        return loom_fail(LOOM_ERR_VERIFY, "trace: step %d: task %d %s: wait %llu, run %llu, "
                         "end %llu, signalled %llu ns are not in order", step, i,
                         t->tasks[i].name, (unsigned long long)w, (unsigned long long)b,
                         (unsigned long long)e, (unsigned long long)g);
    return LOOM_OK;
}

/* Each SM ran its list in order, one task after the other, step by step:
 * a task's wait begins after the previous task was signalled (both stamps
 * are taken by the same thread, in program order, on one clock). */
static loom_status check_sm_order(const loom_trace *t)
{
    for (int32_t sm = 0; sm < t->n_sms; sm++) {
        int32_t prev = -1, prev_s = 0;
        for (int32_t s = 0; s < complete_steps(t); s++)
            for (int32_t k = t->sm_offset[sm]; k < t->sm_offset[sm + 1]; k++) {
                int32_t i = t->sm_tasks[k];
                if (prev >= 0 && loom_trace_at(t, s, i, LOOM_TR_WAIT) <
                                     loom_trace_at(t, prev_s, prev, LOOM_TR_SIGNAL))
                    return loom_fail(LOOM_ERR_VERIFY, "trace: SM %d: task %d %s of step %d "
                                     "began waiting before task %d %s of step %d was "
                                     "signalled", sm, i, t->tasks[i].name, t->first_step + s,
                                     prev, t->tasks[prev].name, t->first_step + prev_s);
                prev = i;
                prev_s = s;
            }
    }
    return LOOM_OK;
}

/* Per traced step and counter: the producer that ended last (or one that
 * did not run). last[s * n_counters + c], -1 when c has no producer. */
void loom_trace_last_producers(const loom_trace *t, int32_t *last)
{
    for (int32_t s = 0; s < t->n_steps; s++) {
        int32_t *l = last + (size_t)s * (size_t)t->n_counters;
        for (int32_t c = 0; c < t->n_counters; c++)
            l[c] = -1;
        for (int32_t j = 0; j < t->n_tasks; j++) {
            int32_t c = t->tasks[j].signal;
            uint64_t e = loom_trace_at(t, s, j, LOOM_TR_END);
            if (c < 0)
                continue;
            if (l[c] < 0 || e == TRACE_NONE ||
                (loom_trace_at(t, s, l[c], LOOM_TR_END) != TRACE_NONE &&
                 e > loom_trace_at(t, s, l[c], LOOM_TR_END)))
                l[c] = j;
        }
    }
}

/* Task i of traced step s began running after the ends of the producers
 * of each counter it waits on, at the step the wait requires; for a wait it
 * polls inside its run (tt->polled: its input as LL words, no counter), it
 * ended after them. A producer that signals inside its run (early: CUDA's
 * argmax, before its PCIe work) only began before its consumers ran.
 *
 * The end, not the signalled stamp: the end is taken before the release
 * and the consumer's run begin after the acquire that saw it, so on one
 * clock (%globaltimer is one for all SMs; CLOCK_MONOTONIC one for all
 * CPUs) end <= run begin always holds. The signalled stamp is read after
 * the release was issued: on the GPU the RED is fire-and-forget, and a
 * consumer can see it and stamp its run begin before the producer's
 * thread 0 reads its clock; on the CPU the producer's thread can be
 * preempted between its fetch_add and clock_gettime. Comparing with it
 * would fail on correct runs. A polling consumer's run begins before its
 * input is there; it ends after it has read all of it, which the producer
 * stored before the CTA barrier that precedes its end stamp. */
static loom_status check_producers(const loom_trace *t, const int32_t *last, int32_t s,
                                   int32_t i)
{
    const loom_trace_task *tt = &t->tasks[i];

    for (int32_t w = 0; w < tt->n_waits; w++) {
        int32_t c = tt->waits[w].counter, ps = s + tt->waits[w].step_offset;
        const bool polled = tt->polled >> w & 1u;
        uint64_t at = loom_trace_at(t, s, i, polled ? LOOM_TR_END : LOOM_TR_RUN);
        if (ps < 0)
            continue;   /* the previous step was not traced */
        int32_t j = last[(size_t)ps * (size_t)t->n_counters + c];
        if (j < 0)
            continue;
        const bool early = t->tasks[j].early;
        uint64_t end = loom_trace_at(t, ps, j, early ? LOOM_TR_RUN : LOOM_TR_END);
        if (end == TRACE_NONE || end > at)
            return loom_fail(LOOM_ERR_VERIFY, "trace: step %d: task %d %s %s at %llu ns, "
                             "before its producer task %d %s (counter '%s', step %d) "
                             "%s at %llu ns", t->first_step + s, i, tt->name,
                             polled ? "ended (polling its input)" : "ran",
                             (unsigned long long)at, j, t->tasks[j].name, t->counters[c].name,
                             t->first_step + ps, early ? "began (it signals early)" : "ended",
                             (unsigned long long)end);
    }
    return LOOM_OK;
}

loom_status loom_trace_check(const loom_trace *t)
{
    loom_status st;

    if (!t)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "trace check: NULL trace");
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if ((st = check_task(t, s, i)) != LOOM_OK)
                return st;
    if ((st = check_sm_order(t)) != LOOM_OK)
        return st;
    int32_t *last = malloc(sizeof *last * ((size_t)t->n_steps * (size_t)t->n_counters + 1));
    if (!last)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "trace check: %d counters", t->n_counters);
    loom_trace_last_producers(t, last);
    st = LOOM_OK;
    for (int32_t s = 0; s < complete_steps(t) && st == LOOM_OK; s++)
        for (int32_t i = 0; i < t->n_tasks && st == LOOM_OK; i++)
            st = check_producers(t, last, s, i);
    free(last);
    return st;
}
