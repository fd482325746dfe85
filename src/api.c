/* api.c - engines: compile a model for a backend and run greedy decoding.
 *
 * The glue between the public API (loom.h), the compiler (loom_compile) and
 * the backends (backend.h). Input checks that do not depend on the backend
 * (token range, context limit) live here, so both backends report them the
 * same way. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "api_internal.h"
#include "core/error.h"
#include "loom.h"
#include "trace/trace.h"

struct loom_engine {
    const loom_model          *model;
    loom_program              *prog;
    const loom_backend_vtable *backend;
    void                      *state;
    loom_engine_params         params;
    char                      *trace_path;   /* owned copy of params.trace_path */
};

loom_engine_params loom_engine_default_params(void)
{
    loom_engine_params p;
    memset(&p, 0, sizeof p);
    p.backend = LOOM_BACKEND_AUTO;
    p.max_batch = 1;
    p.kv_page_size = 64;
    p.wait_timeout_ms = 5000;
    p.stress_virtual_sms = 64;
    return p;
}

loom_generate_params loom_generate_default_params(void)
{
    loom_generate_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 64;
    p.eos_token = -2;
    return p;
}

static int32_t online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

/* Picks the backend and the number of workers the schedule targets. */
static loom_status resolve_backend(loom_engine_params *p, const loom_backend_vtable **vt)
{
    int32_t sms = 0;
    char dev[128];
    if (p->backend == LOOM_BACKEND_CUDA || p->backend == LOOM_BACKEND_AUTO) {
        loom_status st = loom_cuda_device_sms(&sms, dev, sizeof dev);
        if (st == LOOM_OK) {
            p->backend = LOOM_BACKEND_CUDA;
            if (p->n_sms <= 0)
                p->n_sms = sms;
            *vt = &loom_cuda_backend;
            return LOOM_OK;
        }
        if (p->backend == LOOM_BACKEND_CUDA)
            return st;
    } else if (p->backend != LOOM_BACKEND_CPU) {
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "unknown backend %d", (int)p->backend);
    }
    p->backend = LOOM_BACKEND_CPU;
    if (p->n_threads <= 0)
        p->n_threads = online_cores();
    if (p->n_sms <= 0)
        p->n_sms = p->stress ? p->stress_virtual_sms : p->n_threads;
    *vt = &loom_cpu_backend;
    return LOOM_OK;
}

loom_status loom_engine_create(const loom_model *model, loom_engine_params params,
                               loom_engine **out)
{
    const loom_backend_vtable *vt = NULL;
    loom_engine *e = NULL;
    loom_status st;

    if (!model || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_engine_create: model and out are required");
    if (params.max_batch <= 0)
        params.max_batch = 1;
    if (params.max_batch != 1)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "max_batch %d: only batch 1 is supported for now",
                         params.max_batch);
    if (params.kv_page_size <= 0)
        params.kv_page_size = 64;
    if (params.wait_timeout_ms == 0)
        params.wait_timeout_ms = 5000;
    if (params.max_context <= 0)
        params.max_context = model->max_context < 4096 ? model->max_context : 4096;
    if (params.max_context > model->cfg.max_position_embeddings)
        return loom_fail(LOOM_ERR_LIMIT, "max_context %d exceeds the model's max_position_embeddings %d",
                         params.max_context, model->cfg.max_position_embeddings);

    st = resolve_backend(&params, &vt);
    if (st != LOOM_OK)
        return st;

    e = calloc(1, sizeof *e);
    if (!e)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "loom_engine_create: out of memory");
    e->model = model;
    e->backend = vt;
    e->params = params;
    if (params.trace_path) {
        e->trace_path = strdup(params.trace_path);
        if (!e->trace_path) {
            st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "loom_engine_create: trace path");
            goto fail;
        }
        e->params.trace_path = e->trace_path;
        if (e->params.trace_steps <= 0)
            e->params.trace_steps = LOOM_TRACE_DEFAULT_STEPS;
    }

    loom_compile_params cp = loom_compile_default_params(params.n_sms);
    cp.graph.max_batch = params.max_batch;
    cp.graph.max_context = params.max_context;
    cp.graph.page_size = params.kv_page_size;
    cp.graph.record_logits = params.record_logits;
    st = loom_compile(model, cp, &e->prog);
    if (st != LOOM_OK)
        goto fail;
    st = vt->create(e->prog, &e->params, &e->state);
    if (st != LOOM_OK)
        goto fail;
    *out = e;
    return LOOM_OK;

fail:
    loom_program_free(e->prog);
    free(e->trace_path);
    free(e);
    return st;
}

void loom_engine_free(loom_engine *engine)
{
    if (!engine)
        return;
    if (engine->state)
        engine->backend->destroy(engine->state);
    loom_program_free(engine->prog);
    free(engine->trace_path);
    free(engine);
}

const char *loom_engine_backend_name(const loom_engine *engine)
{
    return engine ? engine->backend->name : "none";
}

/* Everything about a request that does not depend on the backend. */
static loom_status check_request(const loom_engine *e, const int32_t *prompt, int32_t n_prompt,
                                 const loom_generate_params *p)
{
    const loom_config *cfg = &e->model->cfg;
    if (!prompt || n_prompt <= 0)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "the prompt is empty: at least one token is needed");
    if (p->max_new_tokens <= 0)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "max_new_tokens is %d: it must be at least 1",
                         p->max_new_tokens);
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= cfg->vocab_size)
            return loom_fail(LOOM_ERR_LIMIT, "prompt token %d is %d: outside the vocabulary [0, %d)",
                             i, prompt[i], cfg->vocab_size);
    int64_t steps = (int64_t)n_prompt + p->max_new_tokens - 1;
    if (steps > e->params.max_context)
        return loom_fail(LOOM_ERR_LIMIT,
                         "prompt (%d tokens) + new tokens (%d) need %lld positions: the engine's "
                         "context (KV cache) holds %d",
                         n_prompt, p->max_new_tokens, (long long)steps + 1, e->params.max_context);
    if (p->logits_out && !e->params.record_logits)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "logits_out needs an engine created with record_logits = true");
    if (p->eos_token >= cfg->vocab_size)
        return loom_fail(LOOM_ERR_LIMIT, "eos_token %d is outside the vocabulary [0, %d)",
                         p->eos_token, cfg->vocab_size);
    return LOOM_OK;
}

/* The run with its timeline recorded: trace_steps steps from the first one
 * after the prompt (earlier ones when the run is shorter), written to the
 * engine's trace path and, as Perfetto JSON, to PATH.perfetto.json. */
static loom_status run_traced(loom_engine *e, loom_run_request *req, loom_run_result *res)
{
    const loom_program *p = e->prog;
    loom_trace_rec rec = {NULL, req->n_prompt, e->params.trace_steps, NULL};
    loom_trace *tr = NULL;
    char *pf = NULL;
    loom_status st;

    if (rec.steps > req->n_steps)
        rec.steps = req->n_steps;
    if (rec.first_step + rec.steps > req->n_steps)
        rec.first_step = req->n_steps - rec.steps;
    rec.t = calloc((size_t)rec.steps * (size_t)p->n_tasks * LOOM_TRACE_STAMPS + 1,
                   sizeof *rec.t);
    rec.flags = calloc((size_t)p->n_tasks + 1, sizeof *rec.flags);
    pf = malloc(strlen(e->trace_path) + sizeof ".perfetto.json");
    if (!rec.t || !rec.flags || !pf) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "trace: %d steps x %d tasks", rec.steps,
                       p->n_tasks);
        goto out;
    }
    req->trace = &rec;
    st = e->backend->run(e->state, req, res);
    req->trace = NULL;
    if (st == LOOM_OK)
        st = loom_trace_from_run(p, &rec, res->n_steps_run, e->backend->name,
                                 e->params.trace_bandwidth, &tr);
    if (st == LOOM_OK)
        st = loom_trace_save(tr, e->trace_path);
    if (st == LOOM_OK) {
        strcpy(pf, e->trace_path);
        strcat(pf, ".perfetto.json");
        st = loom_trace_write_perfetto(tr, pf);
    }
out:
    loom_trace_free(tr);
    free(rec.t);
    free(rec.flags);
    free(pf);
    return st;
}

loom_status loom_generate(loom_engine *engine, const int32_t *prompt, int32_t n_prompt,
                          loom_generate_params params, int32_t *out_tokens, int32_t *n_out,
                          loom_generate_stats *stats)
{
    loom_run_request req;
    loom_run_result res;
    loom_status st;

    if (!engine || !out_tokens || !n_out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_generate: engine, out_tokens and n_out are required");
    st = check_request(engine, prompt, n_prompt, &params);
    if (st != LOOM_OK)
        return st;

    memset(&req, 0, sizeof req);
    memset(&res, 0, sizeof res);
    req.prompt = prompt;
    req.n_prompt = n_prompt;
    req.n_steps = n_prompt + params.max_new_tokens - 1;
    if (params.eos_token == -2) {
        req.n_eos = engine->model->cfg.n_eos;
        memcpy(req.eos, engine->model->cfg.eos_token_ids, sizeof req.eos);
    } else if (params.eos_token >= 0) {
        req.n_eos = 1;
        req.eos[0] = params.eos_token;
    }
    req.on_token = params.on_token;
    req.user = params.user;
    req.out_tokens = out_tokens;
    req.logits_out = params.logits_out;

    if (engine->trace_path)
        st = run_traced(engine, &req, &res);
    else
        st = engine->backend->run(engine->state, &req, &res);
    if (st != LOOM_OK)
        return st;
    *n_out = res.n_generated;
    if (stats) {
        stats->n_steps = res.n_steps_run;
        stats->total_ms = res.total_ms;
        stats->ms_per_token = res.ms_per_step;
    }
    return LOOM_OK;
}

/* For the CLI and tests: the compiled program behind an engine. */
const loom_program *loom_engine_program(const loom_engine *engine)
{
    return engine ? engine->prog : NULL;
}
