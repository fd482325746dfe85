/* trace.h - the megakernel's timeline: what a traced run recorded, the
 * loom trace file, its checker, and the views of it (Perfetto JSON, SVG,
 * summary).
 *
 * A trace holds, per traced decode step and task, four timestamps (ns from
 * the trace's origin): when its SM began waiting for it (the prefetch and
 * the counter waits), when it began to run, when it ended (before its
 * release signal) and when it was signalled (right after the release:
 * [end, signalled) is the time the release took). Beside them it carries
 * what is needed to read them without the model: each task's name, op, SM,
 * bytes and waits, the counters, and the bandwidth of the GPU if it was
 * given at record time.
 *
 * The file (loom trace FILE) is a JSON object:
 *   {"format": "loom-trace", "version": 2, "backend": "cuda", "clock": ...,
 *    "n_sms": N, "first_step": k, "steps": S, "steps_run": R,
 *    "truncated": bool, "bandwidth": B | null,
 *    "ops": [{"name", "kind", "layer", "weight_bytes"}],
 *    "counters": [{"name", "op", "signals"}],
 *    "tasks": [{"name", "op", "sm", "bytes", "signal", "waits": [[c, n, o]]}],
 *    "sm_tasks": [[task ids in order] per SM],
 *    "t": [[4 x n_tasks ns] per step]}
 * (-1: the task did not run). Version 1 had 3 stamps per task (no
 * signalled); it still loads, with signalled = end. An op's "weight_bytes"
 * (the weights a step reads: a linear op's matrix, the embedding's row) is
 * optional: files from before 2026-11-23 load with 0.
 *
 * defines: loom_trace, loom_trace_from_run, loom_trace_save, loom_trace_load,
 *          loom_trace_free, loom_trace_check, loom_trace_write_perfetto,
 *          loom_trace_write_svg, loom_trace_summary */
#ifndef LOOM_TRACE_H
#define LOOM_TRACE_H

#include <stdio.h>

#include "backend/backend.h"
#include "compiler/program.h"

#define LOOM_TRACE_DEFAULT_STEPS 4
#define LOOM_TRACE_DEFAULT_BW 3.0e12

enum { LOOM_TR_WAIT = 0, LOOM_TR_RUN = 1, LOOM_TR_END = 2, LOOM_TR_SIGNAL = 3 };

typedef struct loom_trace_op {
    char    name[24];          /* "qkv", "attn", ...                          */
    int32_t kind;              /* loom_op_kind                                */
    int32_t layer;             /* -1 outside the layers                       */
    int64_t weight_bytes;      /* weights a step reads (0: none, or a file
                                  from before the field)                     */
} loom_trace_op;

typedef struct loom_trace_task {
    char      name[48];        /* loom_task_name: "L3.o_proj[17]"             */
    int32_t   op, sm, signal, n_waits;
    loom_wait waits[LOOM_MAX_WAITS];
    uint32_t  polled;          /* bit w: wait w polled inside the run
                                  (LOOM_TRACE_POLLED(w))                      */
    bool      early;           /* signals inside its run (LOOM_TRACE_EARLY)   */
    uint64_t  bytes;
} loom_trace_task;

typedef struct loom_trace {
    char               backend[16];
    char               clock[32];
    int32_t            n_sms, n_tasks, n_ops, n_counters;
    int32_t            first_step;  /* decode step of traced step 0          */
    int32_t            n_steps;     /* steps traced                          */
    int32_t            steps_run;   /* steps the run ran                     */
    bool               truncated;   /* the run went on past the traced steps */
    double             bandwidth;   /* bytes/s given at record time; 0 none  */
    loom_trace_op     *ops;
    loom_counter_info *counters;
    loom_trace_task   *tasks;
    int32_t           *sm_offset;   /* [n_sms + 1]                           */
    int32_t           *sm_tasks;
    uint64_t          *t;           /* [n_steps][n_tasks][LOOM_TRACE_STAMPS]
                                       ns from origin (LOOM_TR_*);
                                       the origin (0) is the earliest stamp */
} loom_trace;

/* A trace of a run of p: rec as the backend filled it (absolute ns, 0 = not
 * run; copied and rebased to the earliest stamp). steps_run: steps the run
 * ran; bandwidth 0 = none. */
loom_status loom_trace_from_run(const loom_program *p, const loom_trace_rec *rec,
                                int32_t steps_run, const char *backend, double bandwidth,
                                loom_trace **out);
void loom_trace_free(loom_trace *t);

/* Timestamp k (LOOM_TR_*) of task at traced step s. */
static inline uint64_t loom_trace_at(const loom_trace *t, int32_t s, int32_t task, int k)
{
    return t->t[((size_t)s * (size_t)t->n_tasks + (size_t)task) * LOOM_TRACE_STAMPS +
                (size_t)k];
}

/* True when the task ran at traced step s (its stamps are meaningful). */
bool loom_trace_ran(const loom_trace *t, int32_t s, int32_t task);

/* The time the release of task at traced step s took (signalled - end). */
static inline uint64_t loom_trace_release_ns(const loom_trace *t, int32_t s, int32_t task)
{
    return loom_trace_at(t, s, task, LOOM_TR_SIGNAL) - loom_trace_at(t, s, task, LOOM_TR_END);
}

/* Per traced step s and counter c, the producer (task signalling c) that
 * ended last, or one that did not run; -1 when c has none. last holds
 * n_steps * n_counters entries: last[s * n_counters + c]. */
void loom_trace_last_producers(const loom_trace *t, int32_t *last);

/* The loom trace file: written to a temporary name and renamed; load
 * rejects anything malformed (LOOM_ERR_FORMAT naming the file and field). */
loom_status loom_trace_save(const loom_trace *t, const char *path);
loom_status loom_trace_load(const char *path, loom_trace **out);

/* Consistency with the schedule (LOOM_ERR_VERIFY naming step, task and
 * stamp): every task of each traced step ran exactly once (all of them, up
 * to the last step the run completed), wait begin <= run begin <= end <=
 * signalled, each SM's tasks in its list order without overlap (a task's
 * wait begins at or after the previous one's signalled), and every task's
 * run begin is at or after the ends of the producers of the counters it
 * waits on (the signals of the step its wait requires, when that step was
 * traced). */
loom_status loom_trace_check(const loom_trace *t);

/* Chrome / Perfetto trace JSON (ui.perfetto.dev): one track per SM, a
 * "wait" slice (category wait) before each task's slice (category = op
 * kind), a "release" slice (category release) after it, a marker per
 * decode step. */
loom_status loom_trace_write_perfetto(const loom_trace *t, const char *path);

/* An SVG timeline: SMs as rows, ops coloured with a legend, waits lighter,
 * releases dark grey, a marker per decode step, time axis in us. width 0 =
 * 1600 px. */
loom_status loom_trace_write_svg(const loom_trace *t, const char *path, int32_t width);
/* The same, choosing how: detail 1 every task a rectangle (with a tooltip),
 * 0 binned at the picture's resolution, -1 by size (large traces binned). */
loom_status loom_trace_write_svg_mode(const loom_trace *t, const char *path, int32_t width,
                                      int detail);
/* The same, zoomed to [from_us, to_us) after the trace's first stamp (to_us
 * <= 0: to the end); LOOM_ERR_INVALID_ARGUMENT when the window misses it. */
loom_status loom_trace_write_svg_window(const loom_trace *t, const char *path, int32_t width,
                                        int detail, double from_us, double to_us);

/* Per op type: time, bytes, GB/s against bandwidth (bytes/s), mean and max
 * release; per SM busy / waiting / release / idle; the critical path; the
 * 10 longest waits. */
void loom_trace_summary(const loom_trace *t, double bandwidth, FILE *f);

/* Writes root (consumed) to path through a temporary file and a rename, so
 * no half-written file is left; what names the file in messages. NULL root:
 * the JSON could not be built (out of memory). */
typedef struct json_t json_t;
loom_status loom_trace_dump_json(json_t *root, const char *path, const char *what);

#endif
