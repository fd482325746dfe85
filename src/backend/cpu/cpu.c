/* cpu.c - the CPU backend: worker threads running the compiler's task table
 * with C11 atomics, exactly the counter semantics of program.h.
 *
 * The program's n_sms lists are "virtual SMs", dealt to the threads round
 * robin (SM i -> thread i % N). Each thread keeps, per virtual SM, the step
 * and the position in the list it has reached, and runs whichever of its SMs
 * has a ready next task: it never blocks on one SM while another of its SMs
 * could run, so any number of virtual SMs fits on any number of threads
 * without deadlock (the verifier proved the lists deadlock-free when every
 * SM progresses independently).
 *
 * Waits are bounded: when a thread can run none of its SMs and the one
 * blocked longest has waited past the timeout on the same wait, the run
 * stops with LOOM_ERR_TIMEOUT naming the SM, the task, the counter, its value
 * and the threshold; every thread leaves.
 *
 * Tokens: the thread that runs the ARGMAX task of step k records the token
 * and calls on_token (tokens come in order: the argmax of step k + 1 waits
 * transitively on that of step k). It then decides whether the run stops
 * after step k (EOS, on_token returned false) and writes stop_steps = k + 1
 * before its release signal. Every task of step k + 1 waits (transitively)
 * on that signal, so a worker that checks stop_steps after its acquire sees
 * the decision and retires the SM at the step boundary.
 *
 * Trace (req->trace): per task of the traced steps, when its SM first tried
 * it (wait begin), when its waits were met (run begin) and when it ended
 * (before its signal), CLOCK_MONOTONIC ns.
 *
 * Stress mode (tests): each thread picks randomly among its ready SMs and
 * sleeps random short delays between tasks, so that orders the static
 * schedule never produces are exercised; results must not change.
 *
 * defines: loom_cpu_backend */
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"

#define CPU_ALIGN 64
#define CPU_DEFAULT_TIMEOUT_MS 5000u
#define CPU_FILL_BLOCK_BYTES (4u << 20)
#define CPU_STRESS_MAX_DELAY_US 50
#define CPU_ERR_MAX 512

typedef struct cpu_state {
    const loom_program *prog;
    const loom_graph   *g;
    void              **data;       /* per graph tensor, CPU_ALIGN-aligned   */
    loom_cpu_bufs       bufs;
    atomic_uint        *counters;   /* prog->n_counters                      */
    int32_t             n_threads;
    uint32_t            timeout_ms;
    bool                stress;
    uint64_t            stress_seed;
    int64_t             scratch_floats;
} cpu_state;

/* Shared state of one run. */
typedef struct run_ctx {
    cpu_state              *s;
    const loom_run_request *req;
    int32_t                 n_steps;
    atomic_int              stop_steps;  /* steps to run; lowered by argmax   */
    atomic_bool             abort;       /* a thread failed: everyone leaves  */
    int32_t                *gen;         /* generated tokens, in order        */
    int32_t                 n_gen;       /* written by the argmax task only   */
    double                 *step_end_ms; /* when each step's argmax finished  */
    struct timespec         t0;
    pthread_mutex_t         err_lock;
    loom_status             err;
    char                    msg[CPU_ERR_MAX];
} run_ctx;

/* One virtual SM as a thread sees it. */
typedef struct vsm {
    int32_t sm;
    int32_t step, idx;          /* next task: list[idx] at step              */
    bool    done;
    uint64_t wait_ns;           /* trace: when the next task was first tried */
    double  blocked_since_ms;   /* < 0: not blocked                          */
    int32_t blocked_task;       /* the task and the wait it is blocked on    */
    int32_t blocked_wait;
} vsm;

typedef struct worker {
    run_ctx  *ctx;
    int32_t   id;
    vsm      *sms;
    int32_t   n_sms;
    float    *scratch;
    int32_t  *order;            /* stress mode: a permutation of sms         */
    uint64_t  rng;
    pthread_t thread;
} worker;

/* ------------------------------------------------------------------ helpers */

static double ms_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static uint64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* The trace slot [wait begin, run begin, end, signalled] of task at step,
 * or NULL when the run is not traced or the step is outside the traced
 * window. */
static uint64_t *trace_slot(const run_ctx *ctx, int32_t task, int32_t step)
{
    const loom_trace_rec *tr = ctx->req->trace;
    int32_t k;

    if (!tr || !tr->t)
        return NULL;
    k = step - tr->first_step;
    if (k < 0 || k >= tr->steps)
        return NULL;
    return tr->t + ((size_t)k * (size_t)ctx->s->prog->n_tasks + (size_t)task) *
                       LOOM_TRACE_STAMPS;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Stress delays are a few microseconds: ask the kernel not to stretch them
 * by its default 50 us timer slack. */
#ifdef __linux__
static void fine_timer_slack(void)
{
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
}
#else
static void fine_timer_slack(void)
{
}
#endif

static void *alloc_aligned(size_t bytes)
{
    size_t n = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;

    return aligned_alloc(CPU_ALIGN, n ? n : CPU_ALIGN);
}

static int32_t online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (int32_t)n : 1;
}

/* ------------------------------------------------------------------ create */

static void cpu_destroy(void *state)
{
    cpu_state *s = state;

    if (!s)
        return;
    if (s->data) {
        for (int32_t i = 0; i < s->g->n_tensors; i++)
            free(s->data[i]);
        free(s->data);
    }
    free(s->counters);
    free(s);
}

/* Filling the weights: jobs of up to CPU_FILL_BLOCK_BYTES rows of one
 * WEIGHT tensor (so that packing never needs more temporary memory than a
 * block), taken from a shared index by every thread of the backend. */
typedef struct fill_job {
    int32_t tensor;
    int64_t row0, nrows;
} fill_job;

typedef struct fill_ctx {
    cpu_state       *s;
    fill_job        *jobs;
    int32_t          n_jobs;
    atomic_int       next;
    atomic_bool      failed;
    pthread_mutex_t  lock;
    loom_status      st;
    char             msg[CPU_ERR_MAX];
} fill_ctx;

static int64_t fill_block_rows(const loom_gtensor *gt)
{
    size_t row_bytes = (size_t)gt->cols * loom_dtype_size(gt->dtype);
    int64_t block = row_bytes ? (int64_t)(CPU_FILL_BLOCK_BYTES / row_bytes) : 1;

    return block < 1 ? 1 : block;
}

/* Jobs for every WEIGHT tensor; NULL when out of memory. */
static fill_job *fill_jobs(const loom_graph *g, int32_t *n_jobs)
{
    int64_t n = 0, k = 0;
    fill_job *jobs;

    for (int32_t t = 0; t < g->n_tensors; t++)
        if (g->tensors[t].role == LOOM_ROLE_WEIGHT)
            n += (g->tensors[t].rows + fill_block_rows(&g->tensors[t]) - 1) /
                 fill_block_rows(&g->tensors[t]);
    if (n > INT32_MAX)
        return NULL;
    jobs = calloc((size_t)(n > 0 ? n : 1), sizeof *jobs);
    if (!jobs)
        return NULL;
    for (int32_t t = 0; t < g->n_tensors; t++) {
        const loom_gtensor *gt = &g->tensors[t];
        int64_t block = fill_block_rows(gt);
        if (gt->role != LOOM_ROLE_WEIGHT)
            continue;
        for (int64_t r = 0; r < gt->rows; r += block) {
            jobs[k].tensor = t;
            jobs[k].row0 = r;
            jobs[k].nrows = gt->rows - r < block ? gt->rows - r : block;
            k++;
        }
    }
    *n_jobs = (int32_t)n;
    return jobs;
}

static void *fill_main(void *arg)
{
    fill_ctx *f = arg;
    const loom_graph *g = f->s->g;

    for (;;) {
        int32_t i = atomic_fetch_add(&f->next, 1);
        if (i >= f->n_jobs || atomic_load(&f->failed))
            break;
        const fill_job *j = &f->jobs[i];
        const loom_gtensor *gt = &g->tensors[j->tensor];
        size_t row_bytes = (size_t)gt->cols * loom_dtype_size(gt->dtype);
        char *dst = (char *)f->s->data[j->tensor] + (size_t)j->row0 * row_bytes;
        loom_status st = loom_graph_fill_weight(g, j->tensor, j->row0, j->nrows, dst);
        if (st == LOOM_OK)
            continue;
        /* The message is thread-local: hand it to the creating thread. */
        pthread_mutex_lock(&f->lock);
        if (f->st == LOOM_OK) {
            f->st = st;
            snprintf(f->msg, sizeof f->msg, "cpu backend: filling '%s': %s", gt->name,
                     loom_last_error());
        }
        pthread_mutex_unlock(&f->lock);
        atomic_store(&f->failed, true);
    }
    return NULL;
}

/* Every WEIGHT tensor, on the backend's threads (the calling one too). */
static loom_status fill_weights(cpu_state *s)
{
    fill_ctx f = {.s = s, .st = LOOM_OK};
    pthread_t th[64];
    int32_t n_th = 0, want = s->n_threads - 1 < 64 ? s->n_threads - 1 : 64;

    f.jobs = fill_jobs(s->g, &f.n_jobs);
    if (!f.jobs)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: weight fill jobs");
    atomic_init(&f.next, 0);
    atomic_init(&f.failed, false);
    pthread_mutex_init(&f.lock, NULL);
    /* Fewer helpers than wanted (pthread_create failing) only means slower. */
    while (n_th < want && pthread_create(&th[n_th], NULL, fill_main, &f) == 0)
        n_th++;
    fill_main(&f);
    for (int32_t i = 0; i < n_th; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&f.lock);
    free(f.jobs);
    if (f.st != LOOM_OK)
        return loom_fail(f.st, "%s", f.msg);
    return LOOM_OK;
}

/* Identity page table (graph.c): position p of sequence b lives in page
 * b * pages_per_seq + p / page_size. */
static void fill_page_table(cpu_state *s)
{
    const loom_gtensor *gt = &s->g->tensors[s->g->t_page_table];
    int32_t *pt = s->data[s->g->t_page_table];

    for (int64_t b = 0; b < gt->rows; b++)
        for (int64_t i = 0; i < gt->cols; i++)
            pt[b * gt->cols + i] = (int32_t)(b * gt->cols + i);
}

static loom_status alloc_tensors(cpu_state *s)
{
    const loom_graph *g = s->g;

    s->data = calloc((size_t)g->n_tensors, sizeof *s->data);
    if (!s->data)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: tensor table");
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const loom_gtensor *gt = &g->tensors[i];
        size_t bytes = (size_t)loom_gtensor_numel(gt) * loom_dtype_size(gt->dtype);
        s->data[i] = alloc_aligned(bytes);
        if (!s->data[i])
            return loom_fail(LOOM_ERR_OUT_OF_MEMORY,
                             "cpu backend: tensor '%s' (%zu bytes)", gt->name, bytes);
        if (gt->role != LOOM_ROLE_WEIGHT)
            memset(s->data[i], 0, bytes);
    }
    fill_page_table(s);
    return fill_weights(s);
}

static loom_status cpu_create(const loom_program *prog, const loom_engine_params *params,
                              void **state)
{
    loom_engine_params def = loom_engine_default_params();
    cpu_state *s;
    loom_status st;

    if (!prog || !prog->graph || !state)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cpu backend: NULL program or state");
    if (!params)
        params = &def;
    s = calloc(1, sizeof *s);
    if (!s)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: state");
    s->prog = prog;
    s->g = prog->graph;
    s->n_threads = params->n_threads > 0 ? params->n_threads : online_cores();
    if (s->n_threads > prog->n_sms)
        s->n_threads = prog->n_sms;
    s->timeout_ms = params->wait_timeout_ms ? params->wait_timeout_ms : CPU_DEFAULT_TIMEOUT_MS;
    s->stress = params->stress;
    s->stress_seed = params->stress_seed;
    s->scratch_floats = loom_cpu_scratch_floats(s->g);

    st = alloc_tensors(s);
    if (st != LOOM_OK)
        goto fail;
    s->bufs.g = s->g;
    s->bufs.data = s->data;
    s->counters = calloc((size_t)(prog->n_counters > 0 ? prog->n_counters : 1),
                         sizeof *s->counters);
    if (!s->counters) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: %d counters", prog->n_counters);
        goto fail;
    }
    for (int32_t i = 0; i < prog->n_counters; i++)
        atomic_init(&s->counters[i], 0u);
    *state = s;
    return LOOM_OK;

fail:
    cpu_destroy(s);
    return st;
}

/* ------------------------------------------------------------------ workers */

/* The first wait of task t at step that is not yet satisfied, or -1. */
static int32_t first_unmet_wait(const cpu_state *s, const loom_task *t, int32_t step)
{
    for (int32_t i = 0; i < t->n_waits; i++) {
        const loom_wait *w = &t->waits[i];
        long long n = (long long)w->needed * (step + 1 + w->step_offset);
        if (n <= 0)
            continue;
        unsigned v = atomic_load_explicit(&s->counters[w->counter], memory_order_acquire);
        if ((long long)v < n)
            return i;
    }
    return -1;
}

/* Records the first failure of the run and tells every thread to leave. */
static void run_fail(run_ctx *ctx, loom_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void run_fail(run_ctx *ctx, loom_status st, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&ctx->err_lock);
    if (ctx->err == LOOM_OK) {
        ctx->err = st;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&ctx->err_lock);
    atomic_store(&ctx->abort, true);
}

/* The SM of this thread blocked longest, if it has waited past the limit,
 * ends the run: the root cause of a stall is the first wait that stopped. */
static void check_timeout(worker *wk)
{
    const cpu_state *s = wk->ctx->s;
    vsm *v = NULL;

    for (int32_t i = 0; i < wk->n_sms; i++) {
        vsm *c = &wk->sms[i];
        if (!c->done && c->blocked_since_ms >= 0 &&
            (!v || c->blocked_since_ms < v->blocked_since_ms))
            v = c;
    }
    if (!v || ms_since(&wk->ctx->t0) - v->blocked_since_ms <= (double)s->timeout_ms)
        return;

    const loom_wait *w = &s->prog->tasks[v->blocked_task].waits[v->blocked_wait];
    unsigned value = atomic_load_explicit(&s->counters[w->counter], memory_order_acquire);
    long long need = (long long)w->needed * (v->step + 1 + w->step_offset);
    char name[64];

    loom_task_name(s->prog, v->blocked_task, name, sizeof name);
    run_fail(wk->ctx, LOOM_ERR_TIMEOUT,
             "cpu backend: SM %d (thread %d) waited over %u ms at step %d before task %s: "
             "counter '%s' (#%d) = %u, needs %lld (%d signals per step, step offset %d)",
             v->sm, wk->id, s->timeout_ms, v->step, name, s->prog->counters[w->counter].name,
             w->counter, value, need, w->needed, w->step_offset);
}

static bool is_eos(const loom_run_request *req, int32_t token)
{
    for (int32_t i = 0; i < req->n_eos && i < LOOM_MAX_EOS; i++)
        if (req->eos[i] == token)
            return true;
    return false;
}

/* After the ARGMAX task of `step` ran: stream the token out and decide
 * whether the run stops after this step. Runs before the task's release
 * signal, so the decision is visible to every task of step + 1. */
static void after_argmax(run_ctx *ctx, int32_t step, int32_t token)
{
    const loom_run_request *req = ctx->req;
    bool stop = false;

    ctx->step_end_ms[step] = ms_since(&ctx->t0);
    if (step + 1 < req->n_prompt)
        return;
    int32_t idx = ctx->n_gen++;
    ctx->gen[idx] = token;
    if (is_eos(req, token))
        stop = true;
    if (req->on_token && !req->on_token(req->user, token, idx))
        stop = true;
    if (stop && step + 1 < atomic_load_explicit(&ctx->stop_steps, memory_order_relaxed))
        atomic_store_explicit(&ctx->stop_steps, step + 1, memory_order_release);
}

static void advance(const cpu_state *s, vsm *v)
{
    int32_t len = s->prog->sm_offset[v->sm + 1] - s->prog->sm_offset[v->sm];

    if (++v->idx >= len) {
        v->idx = 0;
        v->step++;
    }
}

/* Tries to run v's next task. Returns true if it ran one. Marks v done when
 * its steps are over; when the task is not ready, notes since when and on
 * which wait v is blocked (check_timeout reads it). */
static bool try_sm(worker *wk, vsm *v)
{
    run_ctx *ctx = wk->ctx;
    const cpu_state *s = ctx->s;
    const loom_program *p = s->prog;
    int32_t len = p->sm_offset[v->sm + 1] - p->sm_offset[v->sm];

    if (v->done)
        return false;
    if (len == 0 || v->step >= atomic_load_explicit(&ctx->stop_steps, memory_order_acquire)) {
        v->done = true;
        return false;
    }
    int32_t task = p->sm_tasks[p->sm_offset[v->sm] + v->idx];
    uint64_t *slot = trace_slot(ctx, task, v->step);
    if (slot && v->wait_ns == 0)
        v->wait_ns = now_ns();
    int32_t wi = first_unmet_wait(s, &p->tasks[task], v->step);
    if (wi >= 0) {
        if (v->blocked_since_ms < 0 || v->blocked_task != task || v->blocked_wait != wi)
            v->blocked_since_ms = ms_since(&ctx->t0);
        v->blocked_task = task;
        v->blocked_wait = wi;
        return false;
    }
    v->blocked_since_ms = -1.0;
    /* The waits' acquires make the argmax's stop decision visible. */
    if (v->step >= atomic_load_explicit(&ctx->stop_steps, memory_order_acquire)) {
        v->done = true;
        return false;
    }

    int32_t token = -1;
    const loom_task *t = &p->tasks[task];
    if (slot) {
        slot[0] = v->wait_ns;
        slot[1] = now_ns();
        v->wait_ns = 0;
    }
    loom_cpu_run_task(p, &s->bufs, task, v->step, ctx->req->n_prompt, wk->scratch, &token);
    if (p->graph->ops[t->op].kind == LOOM_OP_ARGMAX)
        after_argmax(ctx, v->step, token);
    /* Arriving (program.h): the step's last arrival, whose acq_rel add
     * follows every other's, merges the group and signals; the others
     * do not signal. */
    bool last = true;
    if (t->arrive >= 0) {
        uint64_t n = (uint64_t)atomic_fetch_add_explicit(&s->counters[t->arrive], 1u,
                                                         memory_order_acq_rel) + 1;
        last = n >= (uint64_t)p->counters[t->arrive].signals * (uint64_t)(v->step + 1);
        if (last)
            loom_cpu_run_merge(p, &s->bufs, task, v->step);
    }
    /* The end is stamped before the release: a consumer's run begin (after
     * its acquire) is never before its producers' ends. */
    if (slot)
        slot[2] = now_ns();
    if (last && t->signal >= 0)
        atomic_fetch_add_explicit(&s->counters[t->signal], 1u, memory_order_release);
    /* Signalled: after the release (no signal: right after the end). */
    if (slot)
        slot[3] = now_ns();
    advance(s, v);
    return true;
}

static void stress_delay(worker *wk)
{
    uint64_t r = splitmix64(&wk->rng);

    /* Most gaps are zero (a fast path the schedule could take), the rest
     * 1-50 us, so that 100 stress runs stay within a minute. */
    if ((r & 3) != 0)
        return;
    struct timespec d = {0, (long)(1 + (r >> 8) % CPU_STRESS_MAX_DELAY_US) * 1000};
    nanosleep(&d, NULL);
}

/* Stress mode: one task of a random ready SM. */
static bool stress_round(worker *wk, bool *all_done)
{
    int32_t *order = wk->order;
    int32_t n = wk->n_sms;

    /* A fresh random permutation (Fisher-Yates) */
    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)(splitmix64(&wk->rng) % (uint64_t)(i + 1));
        int32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    *all_done = true;
    for (int32_t i = 0; i < n; i++) {
        vsm *v = &wk->sms[order[i]];
        bool ran = try_sm(wk, v);
        if (!v->done)
            *all_done = false;
        if (ran) {
            stress_delay(wk);
            return true;
        }
    }
    return false;
}

/* Normal mode: every SM in turn, each running while it has ready tasks. */
static bool normal_round(worker *wk, bool *all_done)
{
    bool progressed = false;

    *all_done = true;
    for (int32_t i = 0; i < wk->n_sms; i++) {
        vsm *v = &wk->sms[i];
        while (!atomic_load_explicit(&wk->ctx->abort, memory_order_relaxed) && try_sm(wk, v))
            progressed = true;
        if (!v->done)
            *all_done = false;
    }
    return progressed;
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    uint32_t idle = 0;

    if (wk->ctx->s->stress)
        fine_timer_slack();

    for (;;) {
        bool all_done = false, progressed;
        if (atomic_load_explicit(&wk->ctx->abort, memory_order_relaxed))
            break;
        if (wk->ctx->s->stress)
            progressed = stress_round(wk, &all_done);
        else
            progressed = normal_round(wk, &all_done);
        if (all_done)
            break;
        if (progressed) {
            idle = 0;
            continue;
        }
        check_timeout(wk);
        if (++idle < 64)
            cpu_relax();
        else
            sched_yield();
    }
    return NULL;
}

/* ------------------------------------------------------------------ run */

static loom_status check_request(const cpu_state *s, const loom_run_request *req)
{
    const loom_graph *g = s->g;
    int32_t ctx = g->params.max_context, vocab = g->cfg.vocab_size;

    if (!req || !req->prompt)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cpu backend: NULL request or prompt");
    if (req->n_prompt < 1)
        return loom_fail(LOOM_ERR_LIMIT, "cpu backend: prompt of %d tokens (at least 1 needed)",
                         req->n_prompt);
    if (req->n_prompt > ctx)
        return loom_fail(LOOM_ERR_LIMIT,
                         "cpu backend: prompt of %d tokens longer than max_context %d",
                         req->n_prompt, ctx);
    for (int32_t i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= vocab)
            return loom_fail(LOOM_ERR_LIMIT,
                             "cpu backend: prompt token %d at index %d outside the vocabulary "
                             "[0, %d)", req->prompt[i], i, vocab);
    if (req->n_steps > ctx)
        return loom_fail(LOOM_ERR_LIMIT, "cpu backend: n_steps %d exceeds max_context %d",
                         req->n_steps, ctx);
    if (req->n_steps < req->n_prompt)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "cpu backend: n_steps %d shorter than the prompt (%d tokens)",
                         req->n_steps, req->n_prompt);
    if (req->n_eos < 0 || req->n_eos > LOOM_MAX_EOS)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cpu backend: n_eos %d outside 0..%d",
                         req->n_eos, LOOM_MAX_EOS);
    if (req->logits_out && !g->params.record_logits)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "cpu backend: logits_out needs a program compiled with record_logits");
    return LOOM_OK;
}

/* Counters to 0, the prompt into tokens (every sequence of the batch). */
static void reset_run(cpu_state *s, const loom_run_request *req)
{
    const loom_gtensor *tk = &s->g->tensors[s->g->t_tokens];
    int32_t *tokens = s->data[s->g->t_tokens];

    for (int32_t i = 0; i < s->prog->n_counters; i++)
        atomic_store_explicit(&s->counters[i], 0u, memory_order_relaxed);
    memset(tokens, 0, (size_t)loom_gtensor_numel(tk) * sizeof(int32_t));
    for (int64_t b = 0; b < tk->rows; b++)
        memcpy(tokens + b * tk->cols, req->prompt, (size_t)req->n_prompt * sizeof(int32_t));
    /* pthread_create orders all of this before the workers' first load. */
}

static void free_workers(worker *wks, int32_t n)
{
    if (!wks)
        return;
    for (int32_t i = 0; i < n; i++) {
        free(wks[i].sms);
        free(wks[i].order);
        free(wks[i].scratch);
    }
    free(wks);
}

/* Threads' share of the virtual SMs (SM i -> thread i % N) and scratch. */
static loom_status make_workers(run_ctx *ctx, worker **out)
{
    cpu_state *s = ctx->s;
    int32_t N = s->n_threads;
    worker *wks = calloc((size_t)N, sizeof *wks);

    if (!wks)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: %d workers", N);
    for (int32_t t = 0; t < N; t++) {
        worker *wk = &wks[t];
        wk->ctx = ctx;
        wk->id = t;
        wk->rng = s->stress_seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(t + 1));
        wk->n_sms = (s->prog->n_sms - t + N - 1) / N;
        wk->sms = calloc((size_t)(wk->n_sms > 0 ? wk->n_sms : 1), sizeof *wk->sms);
        wk->order = calloc((size_t)(wk->n_sms > 0 ? wk->n_sms : 1), sizeof *wk->order);
        wk->scratch = alloc_aligned((size_t)s->scratch_floats * sizeof(float));
        if (!wk->sms || !wk->order || !wk->scratch) {
            free_workers(wks, N);
            return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: worker %d", t);
        }
        for (int32_t i = 0; i < wk->n_sms; i++) {
            wk->sms[i].sm = t + i * N;
            wk->sms[i].blocked_since_ms = -1.0;
        }
    }
    *out = wks;
    return LOOM_OK;
}

/* Starts the workers and waits for them. */
static loom_status run_threads(run_ctx *ctx, worker *wks)
{
    int32_t N = ctx->s->n_threads, started = 0;
    loom_status st = LOOM_OK;

    for (; started < N; started++) {
        int rc = pthread_create(&wks[started].thread, NULL, worker_main, &wks[started]);
        if (rc != 0) {
            atomic_store(&ctx->abort, true);
            st = loom_fail(LOOM_ERR_BACKEND, "cpu backend: starting thread %d of %d: %s",
                           started, N, strerror(rc));
            break;
        }
    }
    for (int32_t i = 0; i < started; i++)
        pthread_join(wks[i].thread, NULL);
    return st;
}

static void fill_result(run_ctx *ctx, loom_run_result *res, double total_ms)
{
    int32_t n_run = atomic_load(&ctx->stop_steps);

    if (n_run > ctx->n_steps)
        n_run = ctx->n_steps;
    res->n_steps_run = n_run;
    res->n_generated = ctx->n_gen;
    res->total_ms = total_ms;
    int32_t first = n_run - ctx->req->n_prompt >= 1 ? ctx->req->n_prompt - 1 : 0;
    res->ms_per_step = n_run - first > 1
        ? (ctx->step_end_ms[n_run - 1] - ctx->step_end_ms[first]) / (n_run - 1 - first)
        : total_ms;
}

static void copy_outputs(run_ctx *ctx, int32_t n_run)
{
    const cpu_state *s = ctx->s;
    const loom_run_request *req = ctx->req;
    int64_t vocab = s->g->cfg.vocab_size;

    if (req->out_tokens)
        memcpy(req->out_tokens, ctx->gen, (size_t)ctx->n_gen * sizeof(int32_t));
    if (req->logits_out)
        memcpy(req->logits_out, s->data[s->g->t_logits],
               (size_t)n_run * (size_t)vocab * sizeof(float));
}

static loom_status cpu_run(void *state, const loom_run_request *req, loom_run_result *res)
{
    cpu_state *s = state;
    run_ctx ctx;
    worker *wks = NULL;
    loom_run_result r = {0};
    loom_status st;

    if (!s)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cpu backend: NULL state");
    st = check_request(s, req);
    if (st != LOOM_OK)
        return st;

    memset(&ctx, 0, sizeof ctx);
    ctx.s = s;
    ctx.req = req;
    ctx.n_steps = req->n_steps;
    atomic_init(&ctx.stop_steps, req->n_steps);
    atomic_init(&ctx.abort, false);
    ctx.err = LOOM_OK;
    pthread_mutex_init(&ctx.err_lock, NULL);
    ctx.gen = calloc((size_t)(req->n_steps - req->n_prompt + 1), sizeof *ctx.gen);
    ctx.step_end_ms = calloc((size_t)req->n_steps, sizeof *ctx.step_end_ms);
    if (!ctx.gen || !ctx.step_end_ms) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cpu backend: run of %d steps", req->n_steps);
        goto out;
    }
    st = make_workers(&ctx, &wks);
    if (st != LOOM_OK)
        goto out;

    reset_run(s, req);
    clock_gettime(CLOCK_MONOTONIC, &ctx.t0);
    st = run_threads(&ctx, wks);
    double total_ms = ms_since(&ctx.t0);
    if (st != LOOM_OK)
        goto out;
    if (ctx.err != LOOM_OK) {
        st = loom_fail(ctx.err, "%s", ctx.msg);
        goto out;
    }
    fill_result(&ctx, &r, total_ms);
    copy_outputs(&ctx, r.n_steps_run);
    if (res)
        *res = r;

out:
    free_workers(wks, s->n_threads);
    free(ctx.gen);
    free(ctx.step_end_ms);
    pthread_mutex_destroy(&ctx.err_lock);
    return st;
}

/* ------------------------------------------------------------------ read */

/* KV tensor in logical order [positions, n_kv_heads, head_dim] of
 * sequence 0 (every position of its pages), the rest zero. */
static void read_kv(const cpu_state *s, int32_t tensor, uint16_t *dst)
{
    const loom_graph *g = s->g;
    const loom_gtensor *gt = &g->tensors[tensor];
    const loom_gtensor *pt = &g->tensors[g->t_page_table];
    int64_t row = gt->cols, positions = pt->cols * g->params.page_size;

    if (positions > gt->rows)
        positions = gt->rows;
    for (int64_t p = 0; p < positions; p++)
        memcpy(dst + p * row, loom_cpu_kv_at(&s->bufs, tensor, 0, (int32_t)p, 0),
               (size_t)row * sizeof(uint16_t));
    memset(dst + positions * row, 0, (size_t)((gt->rows - positions) * row) * sizeof(uint16_t));
}

static loom_status cpu_read_tensor(void *state, int32_t tensor, void *dst)
{
    const cpu_state *s = state;

    if (!s || !dst)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cpu backend: NULL state or destination");
    if (tensor < 0 || tensor >= s->g->n_tensors)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cpu backend: tensor %d outside [0, %d)",
                         tensor, s->g->n_tensors);
    const loom_gtensor *gt = &s->g->tensors[tensor];
    if (gt->role == LOOM_ROLE_KV) {
        read_kv(s, tensor, dst);
        return LOOM_OK;
    }
    memcpy(dst, s->data[tensor], (size_t)loom_gtensor_numel(gt) * loom_dtype_size(gt->dtype));
    return LOOM_OK;
}

const loom_backend_vtable loom_cpu_backend = {
    "cpu", cpu_create, cpu_run, cpu_read_tensor, cpu_destroy,
};
