/* test_trace.c - timeline recording on the CPU backend (tiny presets).
 *
 * A traced loom_generate writes the trace file and its Perfetto JSON; the
 * trace loads, matches the program (tasks, SMs, first step after the
 * prompt), and passes the checker: each task exactly once per traced step,
 * wait <= run <= end <= signalled, each SM's list in order, every run after
 * the ends of the producers of the counters it waits on. Stress mode
 * (random orders and delays) and a run stopped early by on_token pass too.
 * The checker is checked with planted bugs (one producer's end shifted past
 * its consumer's run, a run before its wait, a signalled before its end, a
 * missing task), and on a hand-made trace of three tasks where each rule is
 * broken alone (and a producer signalled after its consumer ran, which is
 * allowed). The file round-trips (version 2, 4 stamps a task) and a version
 * 1 file (3 stamps) loads with signalled = end. The Perfetto JSON parses
 * with jansson (a slice per task, a release slice after it, a track per SM,
 * a marker per step); the SVG starts with <svg, has one row per SM and
 * draws releases in their colour (both modes); the summary names every op
 * type, the release columns with the right numbers, the critical path and
 * the longest waits; malformed files are refused.
 * With the CUDA toolkit: the traced megakernel (LOOM_TRACE) of qwen3-tiny
 * and qwen3-0.6b on 132 SMs compiles with NVRTC for sm_90a without spills,
 * and differs from the untraced source (so its cubin is cached apart). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "harness.h"
#include "trace/trace.h"

#ifdef LOOM_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#define N_PROMPT 5
#define MAX_NEW 9
#define TRACE_STEPS 3
#define N_SMS 6

static const char *const tiny[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny"};
#define N_TINY (int)(sizeof tiny / sizeof tiny[0])

static char g_path[1200];

typedef struct stopper {
    int32_t after;              /* stop after this many tokens */
} stopper;

static bool stop_after(void *user, int32_t token, int32_t index)
{
    (void)token;
    return index + 1 < ((stopper *)user)->after;
}

/* A traced run of preset on the CPU backend; returns the loaded trace and
 * (if prog_out) checks it against the engine's program. */
static loom_trace *traced_run(const char *preset, bool stress, int32_t stop, const char *dir)
{
    loom_model_params mp = loom_model_default_params();
    loom_engine_params ep = loom_engine_default_params();
    loom_generate_params gp = loom_generate_default_params();
    loom_model *m = NULL;
    loom_engine *e = NULL;
    loom_trace *t = NULL;
    int32_t prompt[N_PROMPT], out[MAX_NEW], n_out = 0;
    uint64_t seed = loom_test_seed();
    stopper sp = {stop};

    snprintf(g_path, sizeof g_path, "%s/%s%s.trace", dir, preset, stress ? "-stress" : "");
    mp.seed = seed;
    CHECK_OK(loom_model_from_preset(preset, mp, &m));
    if (!m)
        return NULL;
    ep.backend = LOOM_BACKEND_CPU;
    ep.n_threads = 2;
    ep.n_sms = N_SMS;
    ep.max_context = 32;
    ep.stress = stress;
    ep.stress_seed = seed;
    ep.trace_path = g_path;
    ep.trace_steps = TRACE_STEPS;
    ep.trace_bandwidth = 2.5e12;
    CHECK_OK(loom_engine_create(m, ep, &e));
    if (!e)
        goto out;
    for (int i = 0; i < N_PROMPT; i++)
        prompt[i] = (int32_t)((seed >> (i * 8)) % 200 + 1 + (uint64_t)i);
    gp.max_new_tokens = MAX_NEW;
    gp.eos_token = -1;
    if (stop > 0) {
        gp.on_token = stop_after;
        gp.user = &sp;
    }
    CHECK_OK(loom_generate(e, prompt, N_PROMPT, gp, out, &n_out, NULL));
    CHECK_OK(loom_trace_load(g_path, &t));
    if (!t)
        goto out;

    const loom_program *p = loom_engine_program(e);
    CHECK(t->n_tasks == p->n_tasks && t->n_sms == p->n_sms, "%s: %d tasks on %d SMs, program "
          "%d on %d", preset, t->n_tasks, t->n_sms, p->n_tasks, p->n_sms);
    CHECK(t->first_step == N_PROMPT && t->n_steps == TRACE_STEPS, "%s: traced steps %d + %d",
          preset, t->first_step, t->n_steps);
    CHECK(t->bandwidth == 2.5e12 && !strcmp(t->backend, "cpu"), "%s: bandwidth %g, backend %s",
          preset, t->bandwidth, t->backend);
    for (int32_t sm = 0; sm < p->n_sms && t->n_tasks == p->n_tasks; sm++)
        for (int32_t k = p->sm_offset[sm]; k < p->sm_offset[sm + 1]; k++)
            CHECK(t->sm_tasks[k] == p->sm_tasks[k] && t->tasks[p->sm_tasks[k]].sm == sm,
                  "%s: SM %d list differs at %d", preset, sm, k);
    /* Each op's weights a step: a linear op's rows x cols, the embedding's
     * one row, nothing else (bf16 weights). */
    int64_t linear = 0;
    for (int32_t i = 0; i < p->graph->n_ops && t->n_ops == p->graph->n_ops; i++) {
        const loom_op *o = &p->graph->ops[i];
        const int64_t want = o->kind == LOOM_OP_LINEAR  ? (int64_t)o->rows * o->cols * 2
                             : o->kind == LOOM_OP_EMBED ? (int64_t)o->cols * 2
                                                        : 0;
        CHECK(t->ops[i].weight_bytes == want, "%s: op %d (%s): weight_bytes %lld, want %lld",
              preset, i, o->name, (long long)t->ops[i].weight_bytes, (long long)want);
        linear += o->kind == LOOM_OP_LINEAR ? t->ops[i].weight_bytes : 0;
    }
    CHECK(linear > 0, "%s: no linear op has weights in the trace", preset);
out:
    loom_engine_free(e);
    loom_model_free(m);
    return t;
}

/* Tasks that ran at traced step s. */
static int32_t count_ran(const loom_trace *t, int32_t s)
{
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_tasks; i++)
        n += loom_trace_ran(t, s, i);
    return n;
}

static void test_record_and_check(void)
{
    char *dir = loom_test_tmpdir();

    for (int k = 0; k < N_TINY; k++)
        for (int stress = 0; stress < 2; stress++) {
            loom_trace *t = traced_run(tiny[k], stress, 0, dir);
            if (!t)
                continue;
            CHECK_OK(loom_trace_check(t));
            CHECK(t->steps_run == N_PROMPT + MAX_NEW - 1 && t->truncated,
                  "%s: %d steps run, truncated %d", tiny[k], t->steps_run, t->truncated);
            for (int32_t s = 0; s < t->n_steps; s++)
                CHECK(count_ran(t, s) == t->n_tasks, "%s: step %d: %d of %d tasks ran",
                      tiny[k], s, count_ran(t, s), t->n_tasks);
            /* The Perfetto file beside it parses. */
            char pf[1300];
            json_error_t err;
            snprintf(pf, sizeof pf, "%s.perfetto.json", g_path);
            json_t *root = json_load_file(pf, JSON_REJECT_DUPLICATES, &err);
            CHECK(root && json_is_array(json_object_get(root, "traceEvents")),
                  "%s: %s: %s", tiny[k], pf, err.text);
            json_decref(root);
            loom_trace_free(t);
        }
    loom_test_rmtree(dir);
    free(dir);
}

/* on_token stops the run after 1 token, i.e. at step N_PROMPT - 1: the
 * traced steps after it never ran, and the checker accepts that. */
static void test_stopped_early(void)
{
    char *dir = loom_test_tmpdir();
    loom_trace *t = traced_run("qwen3-tiny", false, 1, dir);

    if (t) {
        CHECK(t->steps_run == N_PROMPT, "steps run %d, expected %d", t->steps_run, N_PROMPT);
        CHECK_OK(loom_trace_check(t));
        CHECK(count_ran(t, 0) == 0, "a step after the stop ran %d tasks", count_ran(t, 0));
        loom_trace_free(t);
    }
    loom_test_rmtree(dir);
    free(dir);
}

/* A task at traced step 1 that waits on a counter of this step, and the
 * producer of that counter that ended last. */
static bool find_edge(const loom_trace *t, int32_t *consumer, int32_t *producer)
{
    for (int32_t i = 0; i < t->n_tasks; i++)
        for (int32_t w = 0; w < t->tasks[i].n_waits; w++) {
            if (t->tasks[i].waits[w].step_offset != 0)
                continue;
            int32_t c = t->tasks[i].waits[w].counter;
            *producer = -1;
            for (int32_t j = 0; j < t->n_tasks; j++)
                if (t->tasks[j].signal == c &&
                    (*producer < 0 || loom_trace_at(t, 1, j, LOOM_TR_END) >
                                          loom_trace_at(t, 1, *producer, LOOM_TR_END)))
                    *producer = j;
            if (*producer >= 0) {
                *consumer = i;
                return true;
            }
        }
    return false;
}

static uint64_t *stamp(loom_trace *t, int32_t s, int32_t task, int k)
{
    return &t->t[((size_t)s * (size_t)t->n_tasks + (size_t)task) * LOOM_TRACE_STAMPS +
                 (size_t)k];
}

/* The checker refuses t with a message that has `what` and names `task`. */
static bool refused(const loom_trace *t, const char *what, const char *task)
{
    return loom_trace_check(t) == LOOM_ERR_VERIFY && strstr(loom_last_error(), what) &&
           strstr(loom_last_error(), task);
}

static void test_planted_bugs(void)
{
    char *dir = loom_test_tmpdir();
    loom_trace *t = traced_run("qwen3-tiny", false, 0, dir);
    int32_t cons = -1, prod = -1;

    if (!t)
        goto out;
    CHECK_OK(loom_trace_check(t));
    CHECK(find_edge(t, &cons, &prod), "no producer / consumer pair in the trace");
    if (cons < 0)
        goto out;

    /* 1. The producer's end (and signalled, to stay after it) shifted past
     * its consumer's run begin. */
    uint64_t *end = stamp(t, 1, prod, LOOM_TR_END), saved = *end;
    uint64_t *sig = stamp(t, 1, prod, LOOM_TR_SIGNAL), saved_sig = *sig;
    *end = *stamp(t, 1, cons, LOOM_TR_RUN) + 1;
    *sig = *sig > *end ? *sig : *end;
    loom_status st = loom_trace_check(t);
    CHECK(st == LOOM_ERR_VERIFY, "a producer ending after its consumer ran was not caught");
    CHECK(strstr(loom_last_error(), t->tasks[prod].name) ||
              strstr(loom_last_error(), t->tasks[cons].name),
          "the message does not name the task: %s", loom_last_error());
    *end = saved;
    *sig = saved_sig;
    CHECK_OK(loom_trace_check(t));

    /* 1a. A wait the consumer polls inside its run (loom_trace_task.polled:
     * CUDA's LL words): its run may begin before that producer ended, its
     * end may not. An edge of step 1 whose consumer began waiting before
     * its producer ended: its run begin moved back to its wait begin, its
     * waits marked polled. */
    int32_t pc = -1, pp = -1;
    for (int32_t i = 0; i < t->n_tasks && pc < 0; i++)
        for (int32_t w = 0; w < t->tasks[i].n_waits && pc < 0; w++) {
            const loom_wait *wt = &t->tasks[i].waits[w];
            for (int32_t j = 0; j < t->n_tasks && wt->step_offset == 0; j++)
                if (t->tasks[j].signal == wt->counter &&
                    *stamp(t, 1, i, LOOM_TR_WAIT) < *stamp(t, 1, j, LOOM_TR_END)) {
                    pc = i;
                    pp = j;
                    break;
                }
        }
    CHECK(pc >= 0, "no consumer began waiting before its producer ended");
    if (pc >= 0) {
        uint64_t *cr = stamp(t, 1, pc, LOOM_TR_RUN), *ce = stamp(t, 1, pc, LOOM_TR_END);
        const uint64_t run0 = *cr, end0 = *ce;
        *cr = *stamp(t, 1, pc, LOOM_TR_WAIT);
        CHECK(loom_trace_check(t) == LOOM_ERR_VERIFY,
              "a run before its producer's end was not caught");
        t->tasks[pc].polled = (1u << t->tasks[pc].n_waits) - 1u;   /* all its waits */
        CHECK_OK(loom_trace_check(t));
        *ce = *cr;   /* and it ended before its producer did */
        CHECK(refused(t, "polling", t->tasks[pc].name),
              "a polling task that ended before its producer %s was not caught: %s",
              t->tasks[pp].name, loom_last_error());
        *cr = run0;
        *ce = end0;
        t->tasks[pc].polled = 0;
        CHECK_OK(loom_trace_check(t));
    }

    /* 1b. A producer that signals inside its run (loom_trace_task.early:
     * CUDA's argmax): its consumers may run before its end, not before its
     * run began. A producer that is the last task of its SM in the last
     * traced step (nothing after it on the SM to keep in order) with a
     * consumer in the same step: its end moved past the consumer's run,
     * then its run begin too. */
    const int32_t ls = t->n_steps - 1;
    int32_t ec = -1, ep = -1;
    for (int32_t sm = 0; sm < t->n_sms && ec < 0; sm++) {
        if (t->sm_offset[sm + 1] == t->sm_offset[sm])
            continue;
        const int32_t j = t->sm_tasks[t->sm_offset[sm + 1] - 1];
        for (int32_t i = 0; i < t->n_tasks && ec < 0 && t->tasks[j].signal >= 0; i++)
            for (int32_t w = 0; w < t->tasks[i].n_waits; w++)
                if (t->tasks[i].waits[w].counter == t->tasks[j].signal &&
                    t->tasks[i].waits[w].step_offset == 0) {
                    ec = i;
                    ep = j;
                }
    }
    CHECK(ec >= 0, "no SM's last task has a consumer in its step");
    if (ec >= 0) {
        uint64_t *pr = stamp(t, ls, ep, LOOM_TR_RUN), *pe = stamp(t, ls, ep, LOOM_TR_END);
        uint64_t *ps = stamp(t, ls, ep, LOOM_TR_SIGNAL);
        const uint64_t pr0 = *pr, pe0 = *pe, ps0 = *ps, cr = *stamp(t, ls, ec, LOOM_TR_RUN);
        *pe = cr + 10;
        *ps = cr + 20;
        CHECK(loom_trace_check(t) == LOOM_ERR_VERIFY,
              "a producer ending after its consumer ran was not caught");
        t->tasks[ep].early = true;
        CHECK_OK(loom_trace_check(t));
        *pr = cr + 1;   /* and it began after its consumer ran */
        CHECK(refused(t, "signals early", t->tasks[ec].name),
              "a consumer that ran before its early producer %s began was not caught: %s",
              t->tasks[ep].name, loom_last_error());
        *pr = pr0;
        *pe = pe0;
        *ps = ps0;
        t->tasks[ep].early = false;
        CHECK_OK(loom_trace_check(t));
    }

    /* 1c. Signalled before the end. */
    *sig = saved - 1;
    CHECK(loom_trace_check(t) == LOOM_ERR_VERIFY && strstr(loom_last_error(), "signalled"),
          "signalled before the end was not caught: %s", loom_last_error());
    *sig = saved_sig;

    /* 2. A run that begins before its wait. */
    uint64_t *w = stamp(t, 2, cons, LOOM_TR_WAIT), *r = stamp(t, 2, cons, LOOM_TR_RUN);
    uint64_t sw = *w;
    *w = *r + 5;
    CHECK(loom_trace_check(t) == LOOM_ERR_VERIFY, "wait after run was not caught");
    *w = sw;

    /* 3. A task missing from a step the run completed. */
    uint64_t se[LOOM_TRACE_STAMPS];
    for (int k = 0; k < LOOM_TRACE_STAMPS; k++) {
        se[k] = *stamp(t, 0, prod, k);
        *stamp(t, 0, prod, k) = UINT64_MAX;
    }
    CHECK(loom_trace_check(t) == LOOM_ERR_VERIFY, "a task that did not run was not caught");
    for (int k = 0; k < LOOM_TRACE_STAMPS; k++)
        *stamp(t, 0, prod, k) = se[k];
    CHECK_OK(loom_trace_check(t));
out:
    loom_trace_free(t);
    loom_test_rmtree(dir);
    free(dir);
}

/* The trace file src as version 1 wrote it (3 stamps a task: the signalled
 * ones dropped) to dst. */
static bool write_v1(const char *src, const char *dst)
{
    json_error_t err;
    json_t *root = json_load_file(src, 0, &err), *steps, *st, *x;
    size_t s, k;
    bool ok;

    if (!root)
        return false;
    json_object_set_new(root, "version", json_integer(1));
    steps = json_object_get(root, "t");
    json_array_foreach(steps, s, st) {
        json_t *v1 = json_array();
        json_array_foreach(st, k, x)
            if (k % LOOM_TRACE_STAMPS != LOOM_TR_SIGNAL)
                json_array_append(v1, x);
        json_array_set_new(steps, s, v1);
    }
    ok = json_dump_file(root, dst, JSON_COMPACT) == 0;
    json_decref(root);
    return ok;
}

/* The saved file: version 2, 4 stamps a task. */
static void check_file_v2(const char *path, int32_t n_tasks)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    json_t *t0 = json_array_get(json_object_get(root, "t"), 0);

    CHECK(root && json_integer_value(json_object_get(root, "version")) == 2,
          "%s: not version 2", path);
    CHECK(json_array_size(t0) == (size_t)n_tasks * 4, "%s: %zu stamps in step 0, expected 4 x %d",
          path, json_array_size(t0), n_tasks);
    json_decref(root);
}

/* A version 1 file of t loads: the same wait, run and end, signalled = end,
 * and passes the checker. */
static void check_load_v1(const loom_trace *t, const char *path, const char *dir)
{
    char v1[1300];
    loom_trace *u = NULL;
    int32_t diff = 0;

    snprintf(v1, sizeof v1, "%s/v1.trace", dir);
    CHECK(write_v1(path, v1), "cannot write %s", v1);
    CHECK_OK(loom_trace_load(v1, &u));
    if (!u)
        return;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            for (int k = 0; k < LOOM_TRACE_STAMPS; k++)
                diff += loom_trace_at(u, s, i, k) !=
                        loom_trace_at(t, s, i, k == LOOM_TR_SIGNAL ? LOOM_TR_END : k);
    CHECK(diff == 0, "version 1: %d stamps differ from the trace's (signalled = end)", diff);
    CHECK_OK(loom_trace_check(u));
    loom_trace_free(u);
}

/* Saved and loaded again: the same trace. */
static void test_round_trip(void)
{
    char *dir = loom_test_tmpdir();
    loom_trace *t = traced_run("llama-tiny", false, 0, dir), *u = NULL;
    char path[1300];

    if (!t)
        goto out;
    for (int32_t i = 0; i < t->n_tasks; i++) {   /* as a CUDA run marks them */
        if (t->tasks[i].n_waits > 0 && i % 3 == 0)
            t->tasks[i].polled = 1u << (t->tasks[i].n_waits - 1);
        t->tasks[i].early = i % 5 == 1;
    }
    snprintf(path, sizeof path, "%s/again.trace", dir);
    CHECK_OK(loom_trace_save(t, path));
    CHECK_OK(loom_trace_load(path, &u));
    if (!u)
        goto out;
    CHECK(u->n_tasks == t->n_tasks && u->n_steps == t->n_steps && u->n_counters == t->n_counters &&
              u->n_ops == t->n_ops && u->steps_run == t->steps_run,
          "sizes differ after a round trip");
    CHECK(memcmp(u->t, t->t, sizeof *t->t * LOOM_TRACE_STAMPS * (size_t)t->n_tasks *
                                 (size_t)t->n_steps) == 0,
          "stamps differ after a round trip");
    for (int32_t i = 0; i < t->n_ops && u->n_ops == t->n_ops; i++)
        CHECK(!strcmp(u->ops[i].name, t->ops[i].name) &&
                  u->ops[i].weight_bytes == t->ops[i].weight_bytes,
              "op %d differs after a round trip", i);
    for (int32_t i = 0; i < t->n_tasks && u->n_tasks == t->n_tasks; i++)
        CHECK(!strcmp(u->tasks[i].name, t->tasks[i].name) &&
                  u->tasks[i].bytes == t->tasks[i].bytes &&
                  u->tasks[i].n_waits == t->tasks[i].n_waits &&
                  u->tasks[i].signal == t->tasks[i].signal &&
                  u->tasks[i].polled == t->tasks[i].polled &&
                  u->tasks[i].early == t->tasks[i].early,
              "task %d differs after a round trip", i);
    check_file_v2(path, t->n_tasks);
    check_load_v1(t, path, dir);

    /* The releases were recorded: signalled after the end (the clock moves
     * between two reads). */
    int32_t released = 0;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            released += loom_trace_ran(t, s, i) && loom_trace_release_ns(t, s, i) > 0;
    CHECK(released > 0, "no task has signalled > end");
out:
    loom_trace_free(t);
    loom_trace_free(u);
    loom_test_rmtree(dir);
    free(dir);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s = NULL;
    long n;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) == (size_t)n)
        s[n] = 0;
    else {
        free(s);
        s = NULL;
    }
    fclose(f);
    return s;
}

static int32_t count_str(const char *s, const char *needle)
{
    int32_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void check_perfetto(const loom_trace *t, const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err), *ev, *x;
    int32_t slices = 0, waits = 0, releases = 0, tracks = 0, markers = 0, ran = 0;
    size_t k;

    CHECK(root != NULL, "%s:%d: %s", path, err.line, err.text);
    ev = json_object_get(root, "traceEvents");
    CHECK(json_is_array(ev), "%s: no traceEvents array", path);
    json_array_foreach(ev, k, x) {
        const char *ph = json_string_value(json_object_get(x, "ph"));
        const char *cat = json_string_value(json_object_get(x, "cat"));
        const char *name = json_string_value(json_object_get(x, "name"));
        CHECK(ph && name, "%s: event %zu has no ph or name", path, k);
        if (!ph || !name)
            break;
        if (!strcmp(ph, "X")) {
            CHECK(json_is_number(json_object_get(x, "ts")) &&
                      json_number_value(json_object_get(x, "dur")) >= 0,
                  "%s: slice %zu without ts / dur", path, k);
            if (cat && !strcmp(cat, "wait"))
                waits++;
            else if (cat && !strcmp(cat, "release"))
                releases += !strcmp(name, "release");
            else
                slices++;
        }
        tracks += !strcmp(ph, "M") && !strcmp(name, "thread_name");
        markers += !strcmp(ph, "i");
    }
    for (int32_t s = 0; s < t->n_steps; s++)
        ran += count_ran(t, s);
    CHECK(slices == ran, "%s: %d task slices, %d task instances ran", path, slices, ran);
    CHECK(waits > 0 && waits <= ran, "%s: %d wait slices", path, waits);
    CHECK(releases > 0 && releases <= ran, "%s: %d release slices", path, releases);
    CHECK(tracks == t->n_sms, "%s: %d SM tracks of %d", path, tracks, t->n_sms);
    CHECK(markers == t->n_steps, "%s: %d step markers of %d", path, markers, t->n_steps);
    json_decref(root);
}

static void test_outputs(void)
{
    char *dir = loom_test_tmpdir();
    loom_trace *t = traced_run("qwen2-tiny", false, 0, dir);
    char path[1300];
    char *s = NULL;

    if (!t)
        goto out;
    snprintf(path, sizeof path, "%s/t.perfetto.json", dir);
    CHECK_OK(loom_trace_write_perfetto(t, path));
    check_perfetto(t, path);

    for (int mode = 0; mode < 2; mode++) {
        snprintf(path, sizeof path, "%s/t%d.svg", dir, mode);
        CHECK_OK(loom_trace_write_svg_mode(t, path, 0, mode));
        s = read_all(path);
        CHECK(s && (mode ? strstr(s, "<title>") : strstr(s, "<path ")), "%s: %s mode drew no task",
              path, mode ? "detail" : "binned");
        CHECK(s && !strncmp(s, "<svg ", 5), "%s does not start with <svg", path);
        if (s) {
            CHECK(count_str(s, "class=\"sm-row\"") == t->n_sms, "%s: %d SM rows of %d", path,
                  count_str(s, "class=\"sm-row\""), t->n_sms);
            CHECK(count_str(s, "<g ") == count_str(s, "</g>") && strstr(s, "</svg>\n"),
                  "%s: unbalanced groups or no </svg>", path);
            CHECK(count_str(s, "class=\"step\"") == t->n_steps, "%s: %d step markers", path,
                  count_str(s, "class=\"step\""));
            CHECK(!strstr(s, "nan") && !strstr(s, "inf"), "%s: a NaN or inf coordinate", path);
            free(s);
            s = NULL;
        }
    }

    /* A window (the middle third): fewer tasks drawn, none outside it, and
     * a window past the end refused. */
    uint64_t t0 = UINT64_MAX, t1 = 0;
    int32_t all = 0;
    for (int32_t st = 0; st < t->n_steps; st++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, st, i)) {
                all++;
                if (loom_trace_at(t, st, i, LOOM_TR_WAIT) < t0)
                    t0 = loom_trace_at(t, st, i, LOOM_TR_WAIT);
                if (loom_trace_at(t, st, i, LOOM_TR_END) > t1)
                    t1 = loom_trace_at(t, st, i, LOOM_TR_END);
            }
    double span_us = (double)(t1 - t0) / 1e3;
    snprintf(path, sizeof path, "%s/window.svg", dir);
    CHECK_OK(loom_trace_write_svg_window(t, path, 0, 1, span_us / 3, 2 * span_us / 3));
    s = read_all(path);
    if (s) {
        int32_t drawn = count_str(s, "<title>");
        CHECK(drawn > 0 && drawn < all, "%s: %d of %d tasks drawn in a third of the time", path,
              drawn, all);
        CHECK(!strstr(s, "x=\"-") && !strstr(s, "width=\"-"), "%s: a shape outside the window",
              path);
        free(s);
        s = NULL;
    }
    CHECK(loom_trace_write_svg_window(t, path, 0, 1, span_us * 2, span_us * 3) ==
              LOOM_ERR_INVALID_ARGUMENT && strstr(loom_last_error(), "window"),
          "a window past the trace: %s", loom_last_error());

    snprintf(path, sizeof path, "%s/summary.txt", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        loom_trace_summary(t, 0, f);
        fclose(f);
        s = read_all(path);
    }
    const char *want[] = {"qkv", "o_proj", "gate_up", "down", "lm_head", "attn",
                          "embed", "argmax", "critical path", "longest waits", "2.5e+12",
                          "rel max", "release", "of which releases"};
    for (size_t k = 0; s && k < sizeof want / sizeof want[0]; k++)
        CHECK(strstr(s, want[k]), "summary has no '%s'", want[k]);
    for (int32_t o = 0; s && o < t->n_ops; o++)
        CHECK(strstr(s, t->ops[o].name), "summary has no op type '%s'", t->ops[o].name);
    free(s);
out:
    loom_trace_free(t);
    loom_test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------ a hand-made trace */

/* Three tasks of one op, one step: A then B on SM 0, C on SM 1 waits for A's
 * counter. Stamps (ns) [wait, run, end, signalled]; window 0 .. 1000:
 *   A: 0, 100, 300, 400   B: 500, 500, 700, 750   C: 0, 350, 600, 1000 */
enum { TA, TB, TC };
static const uint64_t k_tiny[3][4] = {{0, 100, 300, 400}, {500, 500, 700, 750},
                                      {0, 350, 600, 1000}};

/* Writes the hand-made trace with stamps st (version 2, or version 1: the
 * signalled stamps left out) to path. */
static void write_tiny(const char *path, const uint64_t st[3][4], int version)
{
    FILE *f = fopen(path, "w");

    CHECK(f != NULL, "cannot write %s", path);
    if (!f)
        return;
    fprintf(f, "{\"format\": \"loom-trace\", \"version\": %d, \"backend\": \"cpu\", "
            "\"clock\": \"CLOCK_MONOTONIC ns\", \"n_sms\": 2, \"first_step\": 0, "
            "\"steps\": 1, \"steps_run\": 1, \"truncated\": false, \"bandwidth\": null, "
            "\"ops\": [{\"name\": \"qkv\", \"kind\": \"%s\", \"layer\": 0}], "
            "\"counters\": [{\"name\": \"c_a\", \"op\": 0, \"signals\": 1}], "
            "\"tasks\": [{\"name\": \"A\", \"op\": 0, \"sm\": 0, \"bytes\": 1000, "
            "\"signal\": 0, \"waits\": []}, {\"name\": \"B\", \"op\": 0, \"sm\": 0, "
            "\"bytes\": 1000, \"signal\": -1, \"waits\": []}, {\"name\": \"C\", \"op\": 0, "
            "\"sm\": 1, \"bytes\": 1000, \"signal\": -1, \"waits\": [[0, 1, 0]]}], "
            "\"sm_tasks\": [[0, 1], [2]], \"t\": [[", version,
            loom_op_kind_name(LOOM_OP_LINEAR));
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < (version == 1 ? 3 : 4); k++)
            fprintf(f, "%s%llu", i + k ? ", " : "", (unsigned long long)st[i][k]);
    fputs("]]}\n", f);
    fclose(f);
}

/* The hand-made trace with stamp [task][k] set to v, checked: the status. */
static loom_status check_tiny(const char *dir, int task, int k, uint64_t v)
{
    uint64_t st[3][4];
    char path[1300];
    loom_trace *t = NULL;
    loom_status s;

    memcpy(st, k_tiny, sizeof st);
    if (task >= 0)
        st[task][k] = v;
    snprintf(path, sizeof path, "%s/tiny.trace", dir);
    write_tiny(path, (const uint64_t(*)[4])st, 2);
    CHECK_OK(loom_trace_load(path, &t));
    if (!t)
        return LOOM_ERR_FORMAT;
    CHECK(t->ops[0].weight_bytes == 0, "an op without weight_bytes loaded with %lld",
          (long long)t->ops[0].weight_bytes);
    s = loom_trace_check(t);
    loom_trace_free(t);
    return s;
}

/* Each rule of the checker broken alone. */
static void test_tiny_check(void)
{
    char *dir = loom_test_tmpdir();

    CHECK_OK(check_tiny(dir, -1, 0, 0));
    /* A's signalled before its end. */
    CHECK(check_tiny(dir, TA, LOOM_TR_SIGNAL, 250) == LOOM_ERR_VERIFY &&
              strstr(loom_last_error(), "signalled 250"),
          "signalled before the end: %s", loom_last_error());
    /* B began waiting after A's end but before A was signalled. */
    CHECK(check_tiny(dir, TB, LOOM_TR_WAIT, 350) == LOOM_ERR_VERIFY &&
              strstr(loom_last_error(), "was signalled"),
          "a wait before the SM's previous task was signalled: %s", loom_last_error());
    /* A ends (380, signalled 400) after C began running (350). */
    CHECK(check_tiny(dir, TA, LOOM_TR_END, 380) == LOOM_ERR_VERIFY &&
              strstr(loom_last_error(), "before its producer task 0 A"),
          "a producer ending after its consumer ran: %s", loom_last_error());
    /* A signalled (450) after C began running (350): allowed, the
     * signalled stamp is read after the release is issued. */
    CHECK_OK(check_tiny(dir, TA, LOOM_TR_SIGNAL, 450));
    loom_test_rmtree(dir);
    free(dir);
}

/* A version 1 file: signalled = end, no release drawn or counted. */
static void test_tiny_v1(void)
{
    char *dir = loom_test_tmpdir();
    char path[1300];
    loom_trace *t = NULL;

    snprintf(path, sizeof path, "%s/v1.trace", dir);
    write_tiny(path, k_tiny, 1);
    CHECK_OK(loom_trace_load(path, &t));
    for (int i = 0; t && i < 3; i++)
        for (int k = 0; k < 4; k++)
            CHECK(loom_trace_at(t, 0, i, k) == k_tiny[i][k < 3 ? k : LOOM_TR_END],
                  "version 1: task %d stamp %d = %llu", i, k,
                  (unsigned long long)loom_trace_at(t, 0, i, k));
    if (t)
        CHECK_OK(loom_trace_check(t));
    loom_trace_free(t);
    t = NULL;
    /* A version 1 file with 4 stamps a task, and a version 3: refused. */
    write_tiny(path, k_tiny, 2);
    char *s = read_all(path);
    for (int bad = 0; s && bad < 2; bad++) {
        char *v = strstr(s, "\"version\": 2");
        if (v)
            v[11] = bad ? '3' : '1';
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(s, f);
            fclose(f);
        }
        CHECK(loom_trace_load(path, &t) == LOOM_ERR_FORMAT && !t,
              "version %c with 4 stamps a task loaded", bad ? '3' : '1');
        if (v)
            v[11] = '2';
    }
    free(s);
    loom_test_rmtree(dir);
    free(dir);
}

static bool near(double a, double b)
{
    return a > b - 1e-3 && a < b + 1e-3;
}

/* The summary of the hand-made trace: qkv's mean release (100 + 50 + 400) / 3
 * ns and max 400 ns; the SMs 32.5% busy, 22.5% waiting, 27.5% releasing,
 * 17.5% idle; on the critical path (B after A), a gap of 200 ns of which
 * A's release 100 ns. */
static void check_tiny_summary(const char *s)
{
    const char *op = strstr(s, "\n  qkv "), *all = strstr(s, "\n  all ");
    double rel = -1, rel_max = -1, f[4] = {-1, -1, -1, -1};

    if (op)
        sscanf(op + 7, "%*d %*f %*f %*f %*f %*f%% %lf %lf", &rel, &rel_max);
    CHECK(near(rel, 0.183) && near(rel_max, 0.400), "qkv release mean %g, max %g us", rel,
          rel_max);
    if (all)
        sscanf(all + 7, "%lf%% %lf%% %lf%% %lf%%", &f[0], &f[1], &f[2], &f[3]);
    CHECK(near(f[0], 32.5) && near(f[1], 22.5) && near(f[2], 27.5) && near(f[3], 17.5),
          "SMs busy %g%%, wait %g%%, release %g%%, idle %g%%", f[0], f[1], f[2], f[3]);
    CHECK(strstr(s, "busy   wait release   idle"), "no release column per SM:\n%s", s);
    CHECK(strstr(s, "0.20 us, of which releases (end to signalled) 0.10 us"),
          "critical path gaps:\n%s", s);
}

/* The views of the hand-made trace: releases in their colour (svg, both
 * modes; none drawn for a version 1 file), a release slice per task
 * (Perfetto), the release numbers (summary). */
static void test_tiny_views(void)
{
    char *dir = loom_test_tmpdir();
    char path[1300], out[1300];
    loom_trace *t = NULL;
    char *s;

    for (int version = 1; version <= 2; version++) {
        snprintf(path, sizeof path, "%s/v%d.trace", dir, version);
        write_tiny(path, k_tiny, version);
        CHECK_OK(loom_trace_load(path, &t));
        for (int mode = 0; t && mode < 2; mode++) {
            snprintf(out, sizeof out, "%s/v%d-%d.svg", dir, version, mode);
            CHECK_OK(loom_trace_write_svg_mode(t, out, 0, mode));
            s = read_all(out);
            /* The legend's swatch, then one segment per release (detail) or
             * one path per SM row (binned); none without signalled stamps. */
            int32_t want = version == 1 ? 1 : mode ? 1 + 3 : 1 + 2;
            CHECK(s && count_str(s, "#262626") == want && strstr(s, ">release</text>"),
                  "%s: the release colour %d times, expected %d", out,
                  s ? count_str(s, "#262626") : -1, want);
            free(s);
        }
        loom_trace_free(t);
        t = NULL;
    }
    CHECK_OK(loom_trace_load(path, &t));
    if (!t)
        goto out;
    snprintf(out, sizeof out, "%s/tiny.perfetto.json", dir);
    CHECK_OK(loom_trace_write_perfetto(t, out));
    s = read_all(out);
    CHECK(s && count_str(s, "\"cat\":\"release\"") == 3, "%s: %d release slices, expected 3",
          out, s ? count_str(s, "\"cat\":\"release\"") : -1);
    free(s);

    snprintf(out, sizeof out, "%s/tiny.txt", dir);
    FILE *f = fopen(out, "w");
    if (f) {
        loom_trace_summary(t, 0, f);
        fclose(f);
    }
    s = read_all(out);
    check_tiny_summary(s ? s : "");
    free(s);
out:
    loom_trace_free(t);
    loom_test_rmtree(dir);
    free(dir);
}

static void test_malformed(void)
{
    char *dir = loom_test_tmpdir();
    loom_trace *t = traced_run("qwen3-tiny", false, 0, dir), *u = NULL;
    char path[1300];
    char *s = read_all(g_path);

    if (!t || !s)
        goto out;
    /* Cut short, and a stamp made a string: both refused, nothing returned. */
    snprintf(path, sizeof path, "%s/bad.trace", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fwrite(s, 1, strlen(s) / 2, f);
        fclose(f);
    }
    CHECK(loom_trace_load(path, &u) == LOOM_ERR_FORMAT && !u, "a truncated trace loaded");
    char *p = strstr(s, "\"sm\":");
    if (p)
        memcpy(p, "\"sx\":", 5);
    f = fopen(path, "w");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
    CHECK(loom_trace_load(path, &u) == LOOM_ERR_FORMAT && !u, "a task without an SM loaded");
    CHECK(strstr(loom_last_error(), "'sm'"), "message does not name the field: %s",
          loom_last_error());
    /* A task's "early" that is not a boolean, its "polled" past its waits. */
    static const char *const bad_flags[] = {"\"early\": 3, ", "\"polled\": 99, "};
    for (int k = 0; k < 2; k++) {
        free(s);
        s = read_all(g_path);
        p = s ? strstr(s, "\"signal\":") : NULL;
        f = p ? fopen(path, "w") : NULL;
        if (f) {
            fwrite(s, 1, (size_t)(p - s), f);
            fputs(bad_flags[k], f);
            fputs(p, f);
            fclose(f);
        }
        CHECK(loom_trace_load(path, &u) == LOOM_ERR_FORMAT && !u, "a task with %s loaded",
              bad_flags[k]);
        CHECK(strstr(loom_last_error(), k == 0 ? "early" : "polled"),
              "message does not name the field: %s", loom_last_error());
    }
    /* An op's weights negative. */
    free(s);
    s = read_all(g_path);
    p = s ? strstr(s, "\"weight_bytes\":") : NULL;
    f = p ? fopen(path, "w") : NULL;
    if (f) {
        p += strlen("\"weight_bytes\":");
        fwrite(s, 1, (size_t)(p - s), f);
        fputs("-1", f);
        fputs(p, f);
        fclose(f);
    }
    CHECK(p && loom_trace_load(path, &u) == LOOM_ERR_FORMAT && !u,
          "an op with negative weight_bytes loaded");
    CHECK(strstr(loom_last_error(), "weight_bytes"), "message does not name the field: %s",
          loom_last_error());
    CHECK(loom_trace_load("/nonexistent/x.trace", &u) == LOOM_ERR_IO, "a missing file loaded");
out:
    free(s);
    loom_trace_free(t);
    loom_test_rmtree(dir);
    free(dir);
}

#ifdef LOOM_HAVE_CUDA
static void compile_traced(const char *preset, int32_t n_sms)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    loom_program *p = NULL;
    char *plain = NULL, *traced = NULL;
    loom_cuda_cubin cubin;

    mp.seed = loom_test_seed();
    CHECK_OK(loom_model_from_preset(preset, mp, &m));
    if (m)
        CHECK_OK(loom_compile(m, loom_compile_default_params(n_sms), &p));
    if (!p)
        goto out;
    CHECK_OK(loom_cuda_codegen(p, &plain));
    CHECK_OK(loom_cuda_codegen_ex(p, true, &traced));
    if (!plain || !traced)
        goto out;
    CHECK(!strstr(plain, "LOOM_TRACE") && strstr(traced, "#define LOOM_TRACE 1"),
          "%s: LOOM_TRACE only in the traced source", preset);
    memset(&cubin, 0, sizeof cubin);
    CHECK_OK(loom_cuda_compile(traced, "sm_90a", "", &cubin));
    if (cubin.data) {
        printf("  %s traced: %d registers, %d B stack, %d/%d B spills, %.0f ms\n", preset,
               cubin.res.registers, cubin.res.stack_frame, cubin.res.spill_stores,
               cubin.res.spill_loads, cubin.compile_ms);
        CHECK(cubin.res.spill_stores == 0 && cubin.res.spill_loads == 0,
              "%s traced: spills %d/%d B", preset, cubin.res.spill_stores, cubin.res.spill_loads);
        CHECK(cubin.res.registers * LOOM_CUDA_THREADS <= 65536, "%s traced: %d registers",
              preset, cubin.res.registers);
    }
    loom_cuda_cubin_free(&cubin);
out:
    free(plain);
    free(traced);
    if (p)
        p->graph->model = NULL;
    loom_program_free(p);
    loom_model_free(m);
}

static void test_traced_kernel_compiles(void)
{
    compile_traced("qwen3-tiny", 4);
    compile_traced("qwen3-0.6b", 132);
}
#define CUDA_TESTS , TEST(test_traced_kernel_compiles)
#else
#define CUDA_TESTS
#endif

TEST_MAIN(TEST(test_record_and_check), TEST(test_stopped_early), TEST(test_planted_bugs),
          TEST(test_round_trip), TEST(test_outputs), TEST(test_tiny_check), TEST(test_tiny_v1),
          TEST(test_tiny_views), TEST(test_malformed) CUDA_TESTS)
