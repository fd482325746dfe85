/* program.h - the compiler's output: tasks, counters, per-SM lists.
 *
 * This table is the one thing both backends run. A task runs one tile of one
 * op for one decode step. Every decode step, each SM runs its list in order:
 *
 *     for step in 0 .. n_steps-1:
 *         for task in sm_tasks[sm]:
 *             for w in task.waits: spin until counter[w.counter] >=
 *                                  w.needed * (step + 1 + w.step_offset)   (acquire)
 *             run task (op, tile) for this step
 *             if task.arrive >= 0:                                      (acq_rel)
 *                 n = counter[task.arrive] += 1
 *                 if n < counters[task.arrive].signals * (step + 1): next task
 *                 (the last of the tasks arriving there this step: it
 *                 finishes their op's work - ATTENTION's merge - and signals)
 *             if task.signal >= 0: counter[task.signal] += 1               (release)
 *
 * Counters start at 0 at the start of a run and are never reset between
 * steps: a wait with step_offset -1 on step 0 is satisfied at once.
 *
 * Tile coordinates: LINEAR: rows [row_begin, row_end) of W; EMBED: columns
 * [row_begin, row_end) of the hidden vector; ATTN_MERGE: group;
 * ATTENTION: group and split; ARGMAX: nothing.
 *
 * defines: loom_task, loom_wait, loom_program, loom_compile, loom_verify,
 *          loom_schedule_print */
#ifndef LOOM_PROGRAM_H
#define LOOM_PROGRAM_H

#include <stdio.h>

#include "graph/graph.h"

#define LOOM_MAX_WAITS 4

typedef struct loom_wait {
    int32_t counter;
    int32_t needed;        /* signals per step the waiter needs             */
    int32_t step_offset;   /* 0: this step's; -1: the previous step's       */
} loom_wait;

typedef struct loom_task {
    int32_t   op;          /* index into graph->ops                         */
    int32_t   tile;        /* index of the tile within its op               */
    int32_t   row_begin, row_end;
    int32_t   group, split;
    int32_t   n_waits;
    loom_wait waits[LOOM_MAX_WAITS];
    int32_t   signal;      /* counter to add 1 to when done; -1 none         */
    int32_t   arrive;      /* counter the task arrives at before it signals,
                              -1 none (above): only the last arrival of a
                              step signals; every task arriving at a counter
                              signals the same one                         */
    float     est_us;      /* cost model estimate                            */
    float     staged_us;   /* of est_us: the rows that stream into its SM
                              while it waits, if it waits long enough
                              (loom_linear_after_attention), else 0          */
    uint64_t  bytes;       /* bytes the task reads + writes (cost model)     */
} loom_task;

typedef struct loom_counter_info {
    char    name[48];      /* "L3.qkv.g2", "L3.o_proj", "argmax"            */
    int32_t op;            /* op whose tasks signal it                      */
    int32_t signals;       /* tasks signalling it per step (the tasks that
                              arrive at one counter count once); for a
                              counter tasks arrive at: the arrivals per step */
} loom_counter_info;

typedef struct loom_program {
    loom_graph        *graph;        /* owned                                 */
    loom_task         *tasks;        /* sequential order: op order, then tile */
    int32_t            n_tasks;
    loom_counter_info *counters;
    int32_t            n_counters;
    int32_t            n_sms;
    int32_t           *sm_offset;    /* [n_sms + 1] into sm_tasks             */
    int32_t           *sm_tasks;     /* task ids, each SM's list in order     */
    double             est_step_us;  /* makespan of one step, cost model      */
    double             est_critical_us; /* critical path of one step          */
} loom_program;

typedef struct loom_compile_params {
    loom_graph_params graph;
    double  bw_gbps;           /* cost model: device read bandwidth (GB/s)   */
    double  tflops;            /* cost model: fp32 FMA rate (TFLOP/s)        */
    double  task_overhead_us;  /* cost model: fixed cost per task            */
    int64_t stage_bytes;       /* cost model: weight bytes a task can have
                                  in its SM before its inputs are ready (the
                                  CUDA backend's staging slot)              */
    bool    skip_verify;       /* tests only                                 */
} loom_compile_params;

loom_compile_params loom_compile_default_params(int32_t n_sms);

/* graph -> partition -> counters -> schedule -> verify. On success *out owns
 * the graph. */
loom_status loom_compile(const loom_model *model, loom_compile_params params,
                         loom_program **out);
void loom_program_free(loom_program *p);

/* The static verifier (run by loom_compile). Proves (a) every region a task
 * reads is written by tasks it transitively waits on, in the step the
 * semantics require; (b) no two unordered tasks write overlapping regions and
 * writes of step k+1 cannot race reads of step k; (c) the per-SM orders plus
 * counters cannot deadlock and every threshold equals its counter's signals.
 * The first violation is reported by op, layer and tile (LOOM_ERR_VERIFY). */
loom_status loom_verify(const loom_program *p);

/* "L3.o_proj[17]" style name of a task, for messages and traces. */
void loom_task_name(const loom_program *p, int32_t task, char *buf, size_t len);

/* Per SM: its tasks with estimated time; then the estimated critical path. */
void loom_schedule_print(const loom_program *p, FILE *f);

#endif
