/* perfetto.c - a trace as Chrome trace-event JSON, which ui.perfetto.dev
 * (and chrome://tracing) open: one process, one thread track per SM
 * ("SM 12"), and per task instance a complete ("X") slice named by the
 * task ("L3.o_proj[17]", category = op kind, args: op, layer, step, bytes,
 * GB/s), preceded by a "wait" slice (category "wait", args: the counters it
 * waited on) when it waited, and followed by a "release" slice (category
 * "release": end to signalled, the release signal's barrier and fence; args:
 * the counter it signals) when that took time. A global instant marker
 * opens each decode step.
 * Times are microseconds (floating point, ns resolution).
 *
 * defines: loom_trace_write_perfetto */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "trace/trace.h"

#define PID 1

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

/* A slice's duration, 1 ns short: viewers convert ts and dur from
 * microseconds to ns separately (truncating), and adjacent slices of a
 * track (a wait, then its task) must not overlap by a rounding. */
static double dur_us(uint64_t b, uint64_t e)
{
    return e > b + 1 ? us(e - b - 1) : 0.0;
}

static json_t *meta_event(const char *name, int32_t tid, json_t *args)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:o}", "name", name, "ph", "M", "pid", PID, "tid",
                     tid, "args", args);
}

/* Names of the counters task i waits on: "L3.qkv.g2, L2.down". */
static json_t *wait_names(const loom_trace *t, int32_t i)
{
    char buf[256] = "";
    size_t len = 0;

    for (int32_t w = 0; w < t->tasks[i].n_waits && len < sizeof buf; w++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", w ? ", " : "",
                                t->counters[t->tasks[i].waits[w].counter].name);
    return json_string(buf);
}

static void task_events(const loom_trace *t, int32_t s, int32_t i, json_t *ev)
{
    const loom_trace_task *tt = &t->tasks[i];
    const loom_trace_op *op = &t->ops[tt->op];
    uint64_t w = loom_trace_at(t, s, i, LOOM_TR_WAIT), b = loom_trace_at(t, s, i, LOOM_TR_RUN);
    uint64_t e = loom_trace_at(t, s, i, LOOM_TR_END), g = loom_trace_at(t, s, i, LOOM_TR_SIGNAL);
    int32_t step = t->first_step + s;

    if (b > w)
        json_array_append_new(ev, json_pack("{s:s, s:s, s:s, s:f, s:f, s:i, s:i, s:{s:s, s:i, "
                                            "s:o}}", "name", "wait", "cat", "wait", "ph", "X",
                                            "ts", us(w), "dur", dur_us(w, b), "pid", PID, "tid",
                                            tt->sm, "args", "task", tt->name, "step", step,
                                            "waits_on", wait_names(t, i)));
    json_array_append_new(ev, json_pack("{s:s, s:s, s:s, s:f, s:f, s:i, s:i, s:{s:s, s:i, s:i, "
                                        "s:I, s:f}}", "name", tt->name, "cat",
                                        loom_op_kind_name(op->kind), "ph", "X", "ts", us(b),
                                        "dur", dur_us(b, e), "pid", PID, "tid", tt->sm, "args",
                                        "op", op->name, "layer", op->layer, "step", step,
                                        "bytes", (json_int_t)tt->bytes, "GB/s",
                                        e > b ? (double)tt->bytes / (double)(e - b) : 0.0));
    if (g > e)
        json_array_append_new(ev, json_pack("{s:s, s:s, s:s, s:f, s:f, s:i, s:i, s:{s:s, s:i, "
                                            "s:s}}", "name", "release", "cat", "release", "ph",
                                            "X", "ts", us(e), "dur", dur_us(e, g), "pid", PID,
                                            "tid", tt->sm, "args", "task", tt->name, "step", step,
                                            "signals", tt->signal >= 0
                                                           ? t->counters[tt->signal].name
                                                           : "(none)"));
}

/* A global instant marker at the first stamp of each traced step. */
static void step_markers(const loom_trace *t, json_t *ev)
{
    for (int32_t s = 0; s < t->n_steps; s++) {
        uint64_t first = UINT64_MAX;
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i) && loom_trace_at(t, s, i, LOOM_TR_WAIT) < first)
                first = loom_trace_at(t, s, i, LOOM_TR_WAIT);
        if (first == UINT64_MAX)
            continue;
        char name[32];
        snprintf(name, sizeof name, "step %d", t->first_step + s);
        json_array_append_new(ev, json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:i}", "name", name,
                                            "cat", "step", "ph", "i", "s", "g", "ts", us(first),
                                            "pid", PID, "tid", 0));
    }
}

static json_t *perfetto_json(const loom_trace *t)
{
    json_t *ev = json_array();
    char name[64];

    snprintf(name, sizeof name, "loom megakernel (%s, %d SMs)", t->backend, t->n_sms);
    json_array_append_new(ev, meta_event("process_name", 0, json_pack("{s:s}", "name", name)));
    for (int32_t sm = 0; sm < t->n_sms; sm++) {
        snprintf(name, sizeof name, "SM %d", sm);
        json_array_append_new(ev, meta_event("thread_name", sm, json_pack("{s:s}", "name", name)));
        json_array_append_new(ev, meta_event("thread_sort_index", sm,
                                             json_pack("{s:i}", "sort_index", sm)));
    }
    step_markers(t, ev);
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i))
                task_events(t, s, i, ev);
    /* Only the two keys every viewer knows (older Perfetto importers reject
     * unknown top-level keys). */
    return json_pack("{s:o, s:s}", "traceEvents", ev, "displayTimeUnit", "ns");
}

loom_status loom_trace_write_perfetto(const loom_trace *t, const char *path)
{
    if (!t || !path)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "perfetto: NULL trace or path");
    return loom_trace_dump_json(perfetto_json(t), path, "Perfetto trace");
}
