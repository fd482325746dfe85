/* compile.c - model -> graph -> tasks -> schedule -> verified program.
 *
 * defines: loom_compile_default_params, loom_compile, loom_program_free,
 *          loom_task_name, loom_compile_print_stats */
#include <stdlib.h>

#include "compiler/internal.h"
#include "core/error.h"

loom_compile_params loom_compile_default_params(int32_t n_sms)
{
    loom_compile_params p;

    memset(&p, 0, sizeof p);
    p.graph.max_batch = 1;
    p.graph.max_context = 0;     /* min(model's, 4096) */
    p.graph.page_size = 64;
    p.graph.attn_split = 0;      /* chosen from n_sms  */
    p.graph.n_sms = n_sms > 0 ? n_sms : 1;
    p.graph.record_logits = false;
    p.bw_gbps = 3000.0;
    p.tflops = 60.0;
    p.task_overhead_us = 1.0;
    p.stage_bytes = 96 * 1024;   /* the CUDA backend's slot (codegen.c STAGE_MAX_KB) */
    p.skip_verify = false;
    return p;
}

void loom_program_free(loom_program *p)
{
    if (!p)
        return;
    loom_graph_free(p->graph);
    free(p->tasks);
    free(p->counters);
    free(p->sm_offset);
    free(p->sm_tasks);
    free(p);
}

loom_status loom_compile(const loom_model *model, loom_compile_params params,
                         loom_program **out)
{
    loom_program *p;
    loom_status st;

    if (!model || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "compile: NULL model or output");
    p = calloc(1, sizeof *p);
    if (!p)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "compile: program");
    st = loom_graph_build(model, params.graph, &p->graph);
    if (st != LOOM_OK)
        goto fail;
    p->n_sms = p->graph->params.n_sms;
    st = loom_partition(p, &params);
    if (st == LOOM_OK)
        st = loom_schedule(p, &params);
    if (st == LOOM_OK && !params.skip_verify)
        st = loom_verify(p);
    if (st != LOOM_OK)
        goto fail;
    *out = p;
    return LOOM_OK;
fail:
    loom_program_free(p);
    return st;
}

void loom_task_name(const loom_program *p, int32_t task, char *buf, size_t len)
{
    const loom_task *t;
    const loom_op *o;
    char pre[16] = "";

    if (!p || task < 0 || task >= p->n_tasks) {
        snprintf(buf, len, "task#%d", task);
        return;
    }
    t = &p->tasks[task];
    o = &p->graph->ops[t->op];
    if (o->layer >= 0)
        snprintf(pre, sizeof pre, "L%d.", o->layer);
    if (o->kind == LOOM_OP_ATTENTION)
        snprintf(buf, len, "%s%s[g%d.s%d]", pre, o->name, t->group, t->split);
    else if (o->kind == LOOM_OP_ATTN_MERGE)
        snprintf(buf, len, "%s%s[g%d]", pre, o->name, t->group);
    else
        snprintf(buf, len, "%s%s[%d]", pre, o->name, t->tile);
}

void loom_compile_print_stats(const loom_program *p, FILE *f)
{
    int32_t per_kind[LOOM_OP_KIND_COUNT] = {0};
    uint64_t bytes = 0, weights = 0;
    int32_t lo = p->n_tasks, hi = 0;

    for (int32_t k = 0; k < p->n_tasks; k++) {
        per_kind[p->graph->ops[p->tasks[k].op].kind]++;
        bytes += p->tasks[k].bytes;
    }
    for (int32_t i = 0; i < p->graph->n_tensors; i++)
        if (p->graph->tensors[i].role == LOOM_ROLE_WEIGHT)
            weights += (uint64_t)loom_gtensor_numel(&p->graph->tensors[i]) *
                       loom_dtype_size(p->graph->tensors[i].dtype);
    for (int32_t s = 0; s < p->n_sms; s++) {
        int32_t n = p->sm_offset[s + 1] - p->sm_offset[s];
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
    }
    fprintf(f, "program: %d ops, %d tasks, %d counters, %d SMs (%d..%d tasks each)\n",
            p->graph->n_ops, p->n_tasks, p->n_counters, p->n_sms, lo, hi);
    for (int32_t k = 0; k < LOOM_OP_KIND_COUNT; k++)
        if (per_kind[k])
            fprintf(f, "  %-10s %6d tasks\n", loom_op_kind_name(k), per_kind[k]);
    fprintf(f, "weights %.1f MB, bytes moved per step (cost model) %.1f MB\n", weights / 1e6,
            bytes / 1e6);
    fprintf(f, "est step %.2f us, critical path %.2f us\n", p->est_step_us, p->est_critical_us);
}
