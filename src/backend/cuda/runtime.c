/* runtime.c - the CUDA backend: device state of a program and runs of the
 * megakernel.
 *
 * create: context on device 0, codegen + NVRTC (cached), one cuMemAlloc per
 * graph tensor (never managed memory), weights uploaded through a pinned
 * staging buffer, identity page table, the task / op tables, counters, the
 * error record and a host-mapped token ring. With LOOM_CUDA_SENTINELS=1
 * every buffer is followed by 256 bytes of a known pattern, checked after
 * each run.
 *
 * run: ONE cooperative launch (one CTA per SM of the schedule) runs every
 * step; the host polls the ring while the kernel runs and hands each token
 * to on_token as it arrives.
 *
 * defines: loom_cuda_backend */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/driver.h"
#include "backend/cuda/xcheck.h"
#include "core/error.h"
#include "core/progress.h"

#define SENTINEL_BYTES 256
#define SENTINEL_BYTE 0xa5
#define STAGING_BYTES (64u << 20)
#define RING_HEAD 2             /* ring[0] count, ring[1] host stop flag   */

/* The module global loom_trace of tasks/trace.cuh (device layout). */
typedef struct loom_trace_dev {
    uint64_t buf;
    int32_t  first, steps, n_tasks, pad;
} loom_trace_dev;

typedef struct cuda_state {
    const loom_program *prog;
    const loom_graph   *g;
    const loom_cu      *cu;
    CUdevice   dev;
    CUcontext  ctx;
    bool       ctx_held;
    CUmodule   mod;
    CUfunction fn;
    CUstream   stream;
    int64_t    smem;
    int32_t    device_sms;
    bool       sentinels;
    bool       verbose;
    uint64_t   timeout_ns;
    uint32_t   timeout_ms;

    CUdeviceptr *buf;           /* per graph tensor                          */
    size_t      *bytes;         /* per graph tensor, data only               */
    int32_t     *page_table;    /* host copy, [B, pages per sequence]        */
    int64_t      pages_per_seq;

    CUdeviceptr d_tasks, d_sm_offset, d_sm_tasks, d_ops, d_counters;
    CUdeviceptr d_error, d_stop, d_step_time;
    volatile int32_t *ring;     /* pinned, mapped                            */
    CUdeviceptr d_ring;

    bool        trace;          /* traced kernel (loom trace, trace.cuh)     */
    CUdeviceptr d_trace_var;    /* its module global loom_trace              */
    CUdeviceptr d_trace_buf;    /* stamps of the traced steps                */
    size_t      trace_bytes;

    int32_t     ll_epoch;       /* of the last run (tasks/common.cuh LL tags) */
    int32_t     ll_word;        /* bytes of an LL word, as the kernel has it */
    bool       *ll;             /* [n_tensors]: a buffer of LL words         */

    bool        xcheck_on;      /* LOOM_CUDA_XCHECK=1 (xcheck.h)             */
    loom_xcheck xcheck;
} cuda_state;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ memory */

static loom_status dev_alloc(cuda_state *s, CUdeviceptr *p, size_t n, const char *what)
{
    loom_status st = loom_cu_check(s->cu->MemAlloc(p, n ? n : 16), "cuMemAlloc");
    if (st != LOOM_OK)
        return loom_fail_context(st, "%s (%zu bytes)", what, n);
    return LOOM_OK;
}

/* A device copy of n bytes of host data. */
static loom_status dev_upload(cuda_state *s, CUdeviceptr *p, const void *src, size_t n,
                              const char *what)
{
    loom_status st = dev_alloc(s, p, n, what);
    if (st == LOOM_OK && n)
        st = loom_cu_check(s->cu->MemcpyHtoD(*p, src, n), "cuMemcpyHtoD");
    if (st != LOOM_OK)
        return loom_fail_context(st, "%s", what);
    return LOOM_OK;
}

/* Bytes of tensor id on the device (s->ll and s->ll_word set): an LL
 * word's per element for LL tensors, rounded up to 16. */
static size_t tensor_bytes(const cuda_state *s, int32_t id)
{
    const loom_gtensor *t = &s->g->tensors[id];
    size_t elem = s->ll[id] ? (size_t)s->ll_word : loom_dtype_size(t->dtype);
    size_t n = (size_t)loom_gtensor_numel(t) * elem;
    return (n + 15) / 16 * 16;
}

/* One buffer per tensor (+ sentinel tail), zeroed. */
static loom_status alloc_tensors(cuda_state *s)
{
    const loom_graph *g = s->g;
    loom_status st;

    s->buf = calloc((size_t)g->n_tensors, sizeof *s->buf);
    s->bytes = calloc((size_t)g->n_tensors, sizeof *s->bytes);
    s->ll = calloc((size_t)g->n_tensors, sizeof *s->ll);
    if (!s->buf || !s->bytes || !s->ll)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda: tensor table of %d", g->n_tensors);
    s->ll_word = loom_cuda_ll_word();
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const loom_gtensor *t = &g->tensors[i];
        s->ll[i] = loom_cuda_tensor_ll(g, i);
        size_t n = tensor_bytes(s, i), tail = s->sentinels ? SENTINEL_BYTES : 0;
        st = loom_cu_check(s->cu->MemAlloc(&s->buf[i], n + tail), "cuMemAlloc");
        if (st == LOOM_OK)
            st = loom_cu_check(s->cu->MemsetD8(s->buf[i], 0, n), "cuMemsetD8");
        if (st == LOOM_OK && tail)
            st = loom_cu_check(s->cu->MemsetD8(s->buf[i] + n, SENTINEL_BYTE, tail),
                               "cuMemsetD8");
        if (st != LOOM_OK)
            return loom_fail_context(st, "tensor '%s' (%zu bytes)", t->name, n);
        s->bytes[i] = n;
    }
    return LOOM_OK;
}

/* Every WEIGHT tensor, packed by loom_graph_fill_weight into pinned
 * staging memory, in chunks of whole rows. */
static loom_status upload_weights(cuda_state *s)
{
    const loom_graph *g = s->g;
    void *stage = NULL;
    uint64_t total = 0, done = 0;
    loom_progress pr;
    loom_status st;

    for (int32_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].role == LOOM_ROLE_WEIGHT)
            total += s->bytes[i];
    st = loom_cu_check(s->cu->MemHostAlloc(&stage, STAGING_BYTES, 0), "cuMemHostAlloc");
    if (st != LOOM_OK)
        return loom_fail_context(st, "weight staging buffer");
    loom_progress_begin(&pr, "uploading weights", total, total > (256ull << 20));
    for (int32_t i = 0; i < g->n_tensors && st == LOOM_OK; i++) {
        const loom_gtensor *t = &g->tensors[i];
        int64_t row_bytes = t->cols * (int64_t)loom_dtype_size(t->dtype);
        int64_t chunk = row_bytes > 0 ? STAGING_BYTES / row_bytes : 0;
        if (t->role != LOOM_ROLE_WEIGHT)
            continue;
        if (chunk < 1) {
            st = loom_fail(LOOM_ERR_UNSUPPORTED, "cuda: tensor '%s': row of %lld bytes exceeds "
                           "the staging buffer", t->name, (long long)row_bytes);
            break;
        }
        for (int64_t r = 0; r < t->rows && st == LOOM_OK; r += chunk) {
            int64_t n = t->rows - r < chunk ? t->rows - r : chunk;
            st = loom_graph_fill_weight(g, i, r, n, stage);
            if (st != LOOM_OK)
                break;
            st = loom_cu_check(s->cu->MemcpyHtoD(s->buf[i] + (CUdeviceptr)(r * row_bytes),
                                                 stage, (size_t)(n * row_bytes)),
                               "cuMemcpyHtoD");
            if (st != LOOM_OK)
                st = loom_fail_context(st, "uploading tensor '%s'", t->name);
            done += (uint64_t)(n * row_bytes);
            loom_progress_update(&pr, done);
        }
    }
    loom_progress_end(&pr);
    s->cu->MemFreeHost(stage);
    return st;
}

/* Identity: position p of sequence b lives in page b * pages_per_seq + p / page_size. */
static loom_status upload_page_table(cuda_state *s)
{
    const loom_graph *g = s->g;
    const loom_gtensor *t = &g->tensors[g->t_page_table];
    int64_t n = loom_gtensor_numel(t);

    s->pages_per_seq = t->cols;
    s->page_table = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!s->page_table)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda: page table of %lld", (long long)n);
    for (int64_t i = 0; i < n; i++)
        s->page_table[i] = (int32_t)i;
    return loom_cu_check(s->cu->MemcpyHtoD(s->buf[g->t_page_table], s->page_table,
                                           sizeof(int32_t) * (size_t)n), "cuMemcpyHtoD(page table)");
}

static uint64_t tensor_addr(const cuda_state *s, int32_t id)
{
    return id >= 0 ? (uint64_t)s->buf[id] : 0;
}

/* The task, SM-list and op tables the kernel reads. */
static loom_status upload_tables(cuda_state *s)
{
    const loom_program *p = s->prog;
    const loom_graph *g = s->g;
    loom_dtask *dt = calloc((size_t)(p->n_tasks > 0 ? p->n_tasks : 1), sizeof *dt);
    loom_dop *dop = calloc((size_t)(g->n_ops > 0 ? g->n_ops : 1), sizeof *dop);
    int32_t *variant = calloc((size_t)(g->n_ops > 0 ? g->n_ops : 1), sizeof *variant);
    int32_t nv = 0;
    loom_status st = LOOM_OK;

    if (!dt || !dop || !variant) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda: task tables");
        goto out;
    }
    loom_cuda_task_table(p, dt);
    for (int i = 0; i < LOOM_CUDA_N_EXP; i++) {
        const char *v = getenv(loom_cuda_experiments[i]);   /* codegen.c op_listed */
        if (v && *v)
            fprintf(stderr, "cuda: %s=%s: results may be WRONG (a timing experiment)\n",
                    loom_cuda_experiments[i], v);
    }
    loom_cuda_op_variants(p, variant, &nv);
    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *op = &g->ops[i];
        dop[i].x = tensor_addr(s, op->x);
        dop[i].y = tensor_addr(s, op->y);
        dop[i].w = tensor_addr(s, op->w);
        dop[i].norm = tensor_addr(s, op->norm);
        dop[i].norm2 = tensor_addr(s, op->norm2);
        dop[i].bias = tensor_addr(s, op->bias);
        dop[i].resid = tensor_addr(s, op->resid);
        dop[i].aux = tensor_addr(s, op->aux);
        dop[i].kcache = tensor_addr(s, op->kcache);
        dop[i].vcache = tensor_addr(s, op->vcache);
        dop[i].variant = variant[i];
        dop[i].rows = op->rows;
        dop[i].cols = op->cols;
        dop[i].n_tiles = op->n_tiles;
        dop[i].split = op->split > 0 ? op->split : 1;
        dop[i].arrive = loom_cuda_op_arrive(p, i);
    }
    /* ARGMAX reads the lm_head partials: their tile count. */
    if (g->op_argmax >= 0 && g->op_lm_head >= 0) {
        dop[g->op_argmax].n_tiles = g->ops[g->op_lm_head].n_tiles;
        dop[g->op_argmax].aux = tensor_addr(s, g->ops[g->op_lm_head].aux);
    }
    st = dev_upload(s, &s->d_tasks, dt, sizeof *dt * (size_t)p->n_tasks, "task table");
    if (st == LOOM_OK)
        st = dev_upload(s, &s->d_ops, dop, sizeof *dop * (size_t)g->n_ops, "op table");
    if (st == LOOM_OK)
        st = dev_upload(s, &s->d_sm_offset, p->sm_offset,
                        sizeof(int32_t) * (size_t)(p->n_sms + 1), "SM offsets");
    if (st == LOOM_OK)
        st = dev_upload(s, &s->d_sm_tasks, p->sm_tasks,
                        sizeof(int32_t) * (size_t)p->sm_offset[p->n_sms], "SM task lists");
out:
    free(dt);
    free(dop);
    free(variant);
    return st;
}

/* Counters, error record, stop step, step stamps, the mapped token ring. */
static loom_status alloc_control(cuda_state *s)
{
    const loom_program *p = s->prog;
    size_t ring_bytes = sizeof(int32_t) * (size_t)(RING_HEAD + s->g->params.max_context + 2);
    void *ring = NULL;
    loom_status st;

    st = dev_alloc(s, &s->d_counters, sizeof(uint32_t) * (size_t)(p->n_counters + 1), "counters");
    if (st == LOOM_OK)
        st = dev_alloc(s, &s->d_error, sizeof(loom_kerror), "error record");
    if (st == LOOM_OK)
        st = dev_alloc(s, &s->d_stop, 16, "stop step");
    if (st == LOOM_OK)
        st = dev_alloc(s, &s->d_step_time, sizeof(uint64_t) * (size_t)s->g->params.max_context,
                       "step stamps");
    if (st != LOOM_OK)
        return st;
    st = loom_cu_check(s->cu->MemHostAlloc(&ring, ring_bytes,
                                           CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE),
                       "cuMemHostAlloc(token ring)");
    if (st != LOOM_OK)
        return st;
    s->ring = ring;
    memset(ring, 0, ring_bytes);
    return loom_cu_check(s->cu->MemHostGetDevicePointer(&s->d_ring, ring, 0),
                         "cuMemHostGetDevicePointer(token ring)");
}

/* ------------------------------------------------------------ module */

static loom_status load_module(cuda_state *s)
{
    const loom_cu *cu = s->cu;
    int major = 0, minor = 0, optin = 0, coop = 0, per_sm = 0;
    char arch[16];
    loom_cuda_cubin cubin;
    loom_status st;

    st = loom_cu_check(cu->DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                              s->dev), "cuDeviceGetAttribute(cc major)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                                  s->dev), "cuDeviceGetAttribute(cc minor)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->DeviceGetAttribute(&optin,
                                                  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                                                  s->dev), "cuDeviceGetAttribute(smem opt-in)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->DeviceGetAttribute(&coop, CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH,
                                                  s->dev), "cuDeviceGetAttribute(cooperative)");
    if (st != LOOM_OK)
        return st;
    if (major < 8)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "cuda: compute capability %d.%d (need 8.0+)",
                         major, minor);
    if (!coop)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "cuda: device 0 cannot launch cooperatively");
    s->smem = loom_cuda_smem_bytes(s->prog, major);
    if (s->smem > optin)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "cuda: the megakernel needs %lld bytes of shared memory, device allows %d",
                         (long long)s->smem, optin);
    loom_cuda_arch_name(major, minor, arch, sizeof arch);
    st = loom_cuda_build(s->prog, s->trace, arch, &cubin);
    if (st != LOOM_OK)
        return st;
    if (s->verbose)
        fprintf(stderr, "cuda: megakernel for %s %s in %.0f ms: %d registers, %d B stack, "
                "%d/%d B spills, %lld B dynamic smem\n", arch,
                cubin.cached ? "loaded from cache" : "compiled", cubin.compile_ms,
                cubin.res.registers, cubin.res.stack_frame, cubin.res.spill_stores,
                cubin.res.spill_loads, (long long)s->smem);
    st = loom_cu_check(cu->ModuleLoadData(&s->mod, cubin.data), "cuModuleLoadData");
    loom_cuda_cubin_free(&cubin);
    if (st != LOOM_OK)
        return st;
    st = loom_cu_check(cu->ModuleGetFunction(&s->fn, s->mod, "loom_megakernel"),
                       "cuModuleGetFunction(loom_megakernel)");
    if (st == LOOM_OK && s->trace) {
        size_t n = 0;
        st = loom_cu_check(cu->ModuleGetGlobal(&s->d_trace_var, &n, s->mod, "loom_trace"),
                           "cuModuleGetGlobal(loom_trace)");
        if (st == LOOM_OK && n != sizeof(loom_trace_dev))
            st = loom_fail(LOOM_ERR_BACKEND, "cuda: loom_trace is %zu bytes, expected %zu", n,
                           sizeof(loom_trace_dev));
    }
    if (st == LOOM_OK && s->xcheck_on)
        st = loom_cuda_xcheck_init(&s->xcheck, cu, s->mod, s->prog);
    if (st == LOOM_OK)
        st = loom_cu_check(cu->FuncSetAttribute(s->fn,
                                                CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                (int)s->smem),
                           "cuFuncSetAttribute(max dynamic smem)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->OccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, s->fn,
                                                                         LOOM_CUDA_THREADS,
                                                                         (size_t)s->smem),
                           "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    if (st != LOOM_OK)
        return st;
    if ((int64_t)per_sm * s->device_sms < s->prog->n_sms)
        return loom_fail(LOOM_ERR_BACKEND,
                         "cuda: the schedule needs %d resident CTAs but only %d fit "
                         "(%d per SM x %d SMs, %d threads, %lld B smem each)",
                         s->prog->n_sms, per_sm * s->device_sms, per_sm, s->device_sms,
                         LOOM_CUDA_THREADS, (long long)s->smem);
    return LOOM_OK;
}

/* ------------------------------------------------------------ create / destroy */

static void cuda_destroy(void *state)
{
    cuda_state *s = state;
    const loom_cu *cu;

    if (!s)
        return;
    cu = s->cu;
    if (cu && s->ctx_held) {
        cu->CtxSetCurrent(s->ctx);
        if (s->buf)
            for (int32_t i = 0; i < s->g->n_tensors; i++)
                if (s->buf[i])
                    cu->MemFree(s->buf[i]);
        CUdeviceptr d[] = {s->d_tasks, s->d_sm_offset, s->d_sm_tasks, s->d_ops,
                           s->d_counters, s->d_error, s->d_stop, s->d_step_time,
                           s->d_trace_buf};
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
            if (d[i])
                cu->MemFree(d[i]);
        loom_cuda_xcheck_free(&s->xcheck, cu);
        if (s->ring)
            cu->MemFreeHost((void *)s->ring);
        if (s->stream)
            cu->StreamDestroy(s->stream);
        if (s->mod)
            cu->ModuleUnload(s->mod);
        cu->DevicePrimaryCtxRelease(s->dev);
    }
    free(s->buf);
    free(s->bytes);
    free(s->ll);
    free(s->page_table);
    free(s);
}

static loom_status cuda_create(const loom_program *prog, const loom_engine_params *params,
                               void **state)
{
    cuda_state *s;
    loom_status st;
    const char *env = getenv("LOOM_CUDA_SENTINELS");

    if (!prog || !prog->graph || !state)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cuda backend: NULL program or state");
    s = calloc(1, sizeof *s);
    if (!s)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda: backend state");
    s->prog = prog;
    s->g = prog->graph;
    s->sentinels = env && strcmp(env, "1") == 0;
    s->verbose = params && params->verbose;
    s->trace = params && params->trace_path;
    s->xcheck_on = loom_cuda_xcheck_enabled();
    s->timeout_ms = params && params->wait_timeout_ms ? params->wait_timeout_ms : 5000;
    s->timeout_ns = (uint64_t)s->timeout_ms * 1000000ull;

    st = loom_cuda_driver(&s->cu);
    if (st != LOOM_OK)
        goto fail;
    st = loom_cu_check(s->cu->DeviceGet(&s->dev, 0), "cuDeviceGet(0)");
    if (st == LOOM_OK)
        st = loom_cu_check(s->cu->DeviceGetAttribute(&s->device_sms,
                                                     CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                                     s->dev), "cuDeviceGetAttribute(SM count)");
    if (st == LOOM_OK)
        st = loom_cu_check(s->cu->DevicePrimaryCtxRetain(&s->ctx, s->dev),
                           "cuDevicePrimaryCtxRetain");
    if (st != LOOM_OK)
        goto fail;
    s->ctx_held = true;
    st = loom_cu_check(s->cu->CtxSetCurrent(s->ctx), "cuCtxSetCurrent");
    if (st == LOOM_OK)
        /* A blocking stream: the launch is ordered after the synchronous
         * memsets and copies (legacy default stream) that prepare a run. */
        st = loom_cu_check(s->cu->StreamCreate(&s->stream, CU_STREAM_DEFAULT),
                           "cuStreamCreate");
    if (st == LOOM_OK)
        st = load_module(s);
    if (st == LOOM_OK)
        st = alloc_tensors(s);
    if (st == LOOM_OK)
        st = upload_weights(s);
    if (st == LOOM_OK)
        st = upload_page_table(s);
    if (st == LOOM_OK)
        st = upload_tables(s);
    if (st == LOOM_OK)
        st = alloc_control(s);
    if (st != LOOM_OK)
        goto fail;
    *state = s;
    return LOOM_OK;
fail:
    cuda_destroy(s);
    return st;
}

/* ------------------------------------------------------------ run */

static loom_status check_request(const cuda_state *s, const loom_run_request *req)
{
    const loom_graph *g = s->g;
    int32_t vocab = g->cfg.vocab_size, ctx = g->params.max_context;

    if (!req || !req->prompt)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cuda backend: NULL request or prompt");
    if (req->n_prompt < 1)
        return loom_fail(LOOM_ERR_LIMIT, "cuda backend: prompt of %d tokens (at least 1 needed)",
                         req->n_prompt);
    if (req->n_prompt > ctx)
        return loom_fail(LOOM_ERR_LIMIT,
                         "cuda backend: prompt of %d tokens longer than max_context %d",
                         req->n_prompt, ctx);
    for (int32_t i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= vocab)
            return loom_fail(LOOM_ERR_LIMIT,
                             "cuda backend: prompt token %d at index %d outside the vocabulary "
                             "[0, %d)", req->prompt[i], i, vocab);
    if (req->n_steps > ctx)
        return loom_fail(LOOM_ERR_LIMIT, "cuda backend: n_steps %d exceeds max_context %d",
                         req->n_steps, ctx);
    if (req->n_steps < req->n_prompt)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "cuda backend: n_steps %d shorter than the prompt (%d tokens)",
                         req->n_steps, req->n_prompt);
    if (req->n_eos < 0 || req->n_eos > LOOM_MAX_EOS)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cuda backend: n_eos %d outside 0..%d",
                         req->n_eos, LOOM_MAX_EOS);
    if (req->logits_out && !g->params.record_logits)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "cuda backend: logits_out needs a program compiled with record_logits");
    return LOOM_OK;
}

/* Counters, error record, stop step, ring and tokens for a fresh run. */
static loom_status reset_run(cuda_state *s, const loom_run_request *req)
{
    const loom_cu *cu = s->cu;
    const loom_gtensor *tok = &s->g->tensors[s->g->t_tokens];
    int32_t stop = req->n_steps;
    loom_status st;

    st = loom_cu_check(cu->MemsetD8(s->d_counters, 0,
                                    sizeof(uint32_t) * (size_t)(s->prog->n_counters + 1)),
                       "cuMemsetD8(counters)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemsetD8(s->d_error, 0, sizeof(loom_kerror)), "cuMemsetD8(error)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemcpyHtoD(s->d_stop, &stop, sizeof stop), "cuMemcpyHtoD(stop)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemsetD8(s->d_step_time, 0,
                                        sizeof(uint64_t) * (size_t)s->g->params.max_context),
                           "cuMemsetD8(step stamps)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemsetD8(s->buf[s->g->t_tokens], 0, s->bytes[s->g->t_tokens]),
                           "cuMemsetD8(tokens)");
    /* 8-byte LL tags carry the run's epoch (1..255); when it wraps, no word
     * of an earlier run may still match: the LL buffers are zeroed. 4-byte
     * words' tags repeat every 3 steps: zeroed before every run. */
    if (st == LOOM_OK && (s->ll_epoch == 255 || s->ll_word == 4)) {
        for (int32_t i = 0; i < s->g->n_tensors && st == LOOM_OK; i++)
            if (s->ll[i])
                st = loom_cu_check(cu->MemsetD8(s->buf[i], 0, s->bytes[i]), "cuMemsetD8(LL)");
        s->ll_epoch = 0;
    }
    s->ll_epoch++;
    if (st == LOOM_OK && req->n_prompt <= tok->cols)
        st = loom_cu_check(cu->MemcpyHtoD(s->buf[s->g->t_tokens], req->prompt,
                                          sizeof(int32_t) * (size_t)req->n_prompt),
                           "cuMemcpyHtoD(prompt)");
    /* The resets above run on the legacy stream; the kernel must not start
     * before they land (a counter still holding an earlier run's count
     * satisfies a wait early). */
    if (st == LOOM_OK)
        st = loom_cu_check(cu->StreamSynchronize(NULL), "cuStreamSynchronize(resets)");
    s->ring[0] = 0;
    s->ring[1] = 0;
    return st;
}

typedef struct stream_state {
    int32_t delivered;          /* tokens handed out                          */
    int32_t kept;               /* tokens that count (stop: up to the false)  */
    bool    stopped;
} stream_state;

/* Hands out the tokens the kernel has published so far. */
static void drain_ring(cuda_state *s, const loom_run_request *req, stream_state *ss)
{
    int32_t cap = req->n_steps - req->n_prompt + 1;
    int32_t count = s->ring[0];

    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    for (; ss->delivered < count && ss->delivered < cap; ss->delivered++) {
        int32_t i = ss->delivered, token = s->ring[RING_HEAD + i];
        if (ss->stopped)
            continue;
        ss->kept = i + 1;
        if (req->on_token && !req->on_token(req->user, token, i)) {
            ss->stopped = true;
            s->ring[1] = 1;
        }
    }
}

static loom_status timeout_error(cuda_state *s, const loom_kerror *e)
{
    char task[96] = "?";
    const char *counter = "?";

    if (e->task >= 0 && e->task < s->prog->n_tasks)
        loom_task_name(s->prog, e->task, task, sizeof task);
    if (e->counter == -2)   /* tasks/linear.cuh: stage_wait */
        return loom_fail(LOOM_ERR_TIMEOUT,
                         "cuda: weight staging wait timed out after %u ms: SM %d, task %d %s, "
                         "step %d: the bulk copy of the tile's first rows into shared memory "
                         "never completed", s->timeout_ms, e->sm, e->task, task, e->step);
    if (e->counter == -3) {   /* tasks/common.cuh: ll_poll */
        const loom_op *op = &s->g->ops[e->task >= 0 && e->task < s->prog->n_tasks
                                           ? s->prog->tasks[e->task].op : 0];
        int32_t in = e->threshold == 1 ? op->resid : op->kind == LOOM_OP_ATTN_MERGE ? op->aux
                                                                                     : op->x;
        return loom_fail(LOOM_ERR_TIMEOUT,
                         "cuda: wait timed out after %u ms: SM %d, task %d %s, step %d: element "
                         "%u of its input '%s' never carried this step's tag", s->timeout_ms,
                         e->sm, e->task, task, e->step, e->value,
                         in >= 0 ? s->g->tensors[in].name : "?");
    }
    if (e->counter >= 0 && e->counter < s->prog->n_counters)
        counter = s->prog->counters[e->counter].name;
    return loom_fail(LOOM_ERR_TIMEOUT,
                     "cuda: wait timed out after %u ms: SM %d, task %d %s, step %d: counter %d "
                     "'%s' = %u, needs %u", s->timeout_ms, e->sm, e->task, task, e->step,
                     e->counter, counter, e->value, e->threshold);
}

/* Every buffer's tail still holds the pattern. */
static loom_status check_sentinels(cuda_state *s)
{
    unsigned char tail[SENTINEL_BYTES];
    loom_status st;

    for (int32_t i = 0; i < s->g->n_tensors; i++) {
        st = loom_cu_check(s->cu->MemcpyDtoH(tail, s->buf[i] + s->bytes[i], SENTINEL_BYTES),
                           "cuMemcpyDtoH(sentinel)");
        if (st != LOOM_OK)
            return st;
        for (int j = 0; j < SENTINEL_BYTES; j++)
            if (tail[j] != SENTINEL_BYTE)
                return loom_fail(LOOM_ERR_BACKEND, "cuda: out-of-bounds write after tensor "
                                 "'%s' (sentinel byte %d of %d is 0x%02x)", s->g->tensors[i].name,
                                 j, SENTINEL_BYTES, tail[j]);
    }
    return LOOM_OK;
}

/* Launches and polls until the kernel ends. */
static loom_status launch_and_stream(cuda_state *s, const loom_run_request *req,
                                     stream_state *ss)
{
    const loom_cu *cu = s->cu;
    loom_kparams kp;
    void *args[] = {&kp};
    struct timespec nap = {0, 50000};
    CUresult r;
    loom_status st;

    memset(&kp, 0, sizeof kp);
    kp.tasks = s->d_tasks;
    kp.sm_offset = s->d_sm_offset;
    kp.sm_tasks = s->d_sm_tasks;
    kp.ops = s->d_ops;
    kp.counters = s->d_counters;
    kp.tokens = s->buf[s->g->t_tokens];
    kp.page_table = s->buf[s->g->t_page_table];
    kp.rope_inv_freq = s->buf[s->g->t_rope_inv_freq];
    kp.error = s->d_error;
    kp.stop_step = s->d_stop;
    kp.step_time = s->d_step_time;
    kp.host_ring = s->d_ring;
    kp.timeout_ns = s->timeout_ns;
    kp.n_steps = req->n_steps;
    kp.n_prompt = req->n_prompt;
    kp.n_eos = req->n_eos;
    kp.ll_epoch = s->ll_epoch;
    for (int32_t i = 0; i < req->n_eos; i++)
        kp.eos[i] = req->eos[i];

    st = loom_cu_check(cu->LaunchCooperativeKernel(s->fn, (unsigned)s->prog->n_sms, 1, 1,
                                                   LOOM_CUDA_THREADS, 1, 1, (unsigned)s->smem,
                                                   s->stream, args),
                       "cuLaunchCooperativeKernel");
    if (st != LOOM_OK)
        return loom_fail_context(st, "grid %d x %d threads, %lld B smem", s->prog->n_sms,
                                 LOOM_CUDA_THREADS, (long long)s->smem);
    while ((r = cu->StreamQuery(s->stream)) == CUDA_ERROR_NOT_READY) {
        drain_ring(s, req, ss);
        nanosleep(&nap, NULL);
    }
    st = loom_cu_check(r, "megakernel (cuStreamQuery)");
    drain_ring(s, req, ss);
    return st;
}

/* ------------------------------------------------------------ trace */

/* Traced kernel: a zeroed stamp buffer for req->trace's steps (grown when
 * needed), its address in loom_trace; no req->trace: buf 0, nothing stored. */
static loom_status trace_arm(cuda_state *s, const loom_run_request *req)
{
    const loom_cu *cu = s->cu;
    loom_trace_dev td = {0, 0, 0, s->prog->n_tasks, 0};
    loom_status st;

    if (!s->trace)
        return LOOM_OK;
    if (req->trace && req->trace->t && req->trace->steps > 0) {
        size_t n = sizeof(uint64_t) * LOOM_TRACE_STAMPS * (size_t)s->prog->n_tasks *
                   (size_t)req->trace->steps;
        if (n > s->trace_bytes) {
            if (s->d_trace_buf)
                cu->MemFree(s->d_trace_buf);
            s->d_trace_buf = 0;
            s->trace_bytes = 0;
            st = dev_alloc(s, &s->d_trace_buf, n, "trace stamps");
            if (st != LOOM_OK)
                return st;
            s->trace_bytes = n;
        }
        st = loom_cu_check(cu->MemsetD8(s->d_trace_buf, 0, n), "cuMemsetD8(trace)");
        if (st != LOOM_OK)
            return st;
        td.buf = s->d_trace_buf;
        td.first = req->trace->first_step;
        td.steps = req->trace->steps;
    }
    return loom_cu_check(cu->MemcpyHtoD(s->d_trace_var, &td, sizeof td),
                         "cuMemcpyHtoD(loom_trace)");
}

static loom_status trace_collect(cuda_state *s, const loom_run_request *req)
{
    size_t n = sizeof(uint64_t) * LOOM_TRACE_STAMPS * (size_t)s->prog->n_tasks *
               (size_t)req->trace->steps;

    if (!req->trace->t || req->trace->steps <= 0 || !s->d_trace_buf)
        return LOOM_OK;
    const int ll = loom_cuda_ll_mode();
    for (int32_t i = 0; req->trace->flags && i < s->prog->n_tasks; i++)
        req->trace->flags[i] = loom_cuda_trace_flags(s->prog, i, ll);
    return loom_cu_check(s->cu->MemcpyDtoH(req->trace->t, s->d_trace_buf, n),
                         "cuMemcpyDtoH(trace)");
}

static loom_status cuda_run(void *state, const loom_run_request *req, loom_run_result *res)
{
    cuda_state *s = state;
    const loom_cu *cu;
    stream_state ss = {0, 0, false};
    loom_run_result r = {0};
    loom_kerror err;
    int32_t stop = 0, n_run;
    uint64_t *stamps = NULL;
    double t0 = now_ms();
    loom_status st;

    if (!s)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cuda backend: NULL state");
    cu = s->cu;
    st = check_request(s, req);
    if (st != LOOM_OK)
        return st;
    st = loom_cu_check(cu->CtxSetCurrent(s->ctx), "cuCtxSetCurrent");
    if (st == LOOM_OK)
        st = reset_run(s, req);
    if (st == LOOM_OK)
        st = trace_arm(s, req);
    if (st == LOOM_OK && s->xcheck_on)
        st = loom_cuda_xcheck_arm(&s->xcheck, cu, s->prog);
    if (st == LOOM_OK)
        st = launch_and_stream(s, req, &ss);
    if (st != LOOM_OK)
        return st;
    st = loom_cu_check(cu->MemcpyDtoH(&err, s->d_error, sizeof err), "cuMemcpyDtoH(error)");
    if (st == LOOM_OK && err.flag != 0)
        return timeout_error(s, &err);
    if (st == LOOM_OK)
        st = loom_cu_check(cu->MemcpyDtoH(&stop, s->d_stop, sizeof stop), "cuMemcpyDtoH(stop)");
    if (st != LOOM_OK)
        return st;
    n_run = stop < req->n_steps ? stop : req->n_steps;
    if (s->xcheck_on) {
        st = loom_cuda_xcheck_report(&s->xcheck, cu, s->prog, n_run, s->buf, s->page_table);
        if (st != LOOM_OK)
            return st;
    }
    if (s->sentinels) {
        st = check_sentinels(s);
        if (st != LOOM_OK)
            return st;
    }
    if (req->logits_out && n_run > 0) {
        st = loom_cu_check(cu->MemcpyDtoH(req->logits_out, s->buf[s->g->t_logits],
                                          sizeof(float) * (size_t)n_run *
                                              (size_t)s->g->cfg.vocab_size),
                           "cuMemcpyDtoH(logits)");
        if (st != LOOM_OK)
            return st;
    }
    stamps = malloc(sizeof *stamps * (size_t)(n_run > 0 ? n_run : 1));
    if (!stamps)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda run: %d step stamps", n_run);
    st = loom_cu_check(cu->MemcpyDtoH(stamps, s->d_step_time, sizeof *stamps * (size_t)n_run),
                       "cuMemcpyDtoH(step stamps)");
    if (st != LOOM_OK) {
        free(stamps);
        return st;
    }
    if (req->trace && s->trace)
        st = trace_collect(s, req);
    if (st != LOOM_OK) {
        free(stamps);
        return st;
    }
    /* Outputs only now that the run succeeded (nothing half-written). */
    for (int32_t i = 0; req->out_tokens && i < ss.kept; i++)
        req->out_tokens[i] = s->ring[RING_HEAD + i];
    r.n_steps_run = n_run;
    r.n_generated = ss.kept;
    r.total_ms = now_ms() - t0;
    /* backend.h: the generated tokens' steps when there are two or more */
    int32_t first = n_run - req->n_prompt >= 1 ? req->n_prompt - 1 : 0;
    if (n_run - first > 1 && stamps[n_run - 1] > stamps[first])
        r.ms_per_step = (double)(stamps[n_run - 1] - stamps[first]) / 1e6 / (n_run - 1 - first);
    else
        r.ms_per_step = n_run > 0 ? r.total_ms / n_run : 0.0;
    free(stamps);
    if (res)
        *res = r;
    return LOOM_OK;
}

/* ------------------------------------------------------------ read_tensor */

static loom_status cuda_read_tensor(void *state, int32_t tensor, void *dst)
{
    cuda_state *s = state;
    const loom_graph *g;
    const loom_gtensor *t;
    loom_status st;

    if (!s)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cuda read_tensor: NULL state");
    g = s->g;
    if (tensor < 0 || tensor >= g->n_tensors || !dst)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "cuda read_tensor: tensor id %d outside 0..%d",
                         tensor, g->n_tensors - 1);
    t = &g->tensors[tensor];
    st = loom_cu_check(s->cu->CtxSetCurrent(s->ctx), "cuCtxSetCurrent");
    if (st != LOOM_OK)
        return st;
    if (s->ll[tensor]) {   /* LL words: the values */
        size_t n = (size_t)loom_gtensor_numel(t), bytes = n * (size_t)s->ll_word;
        uint32_t *w = malloc(bytes + 1);
        if (!w)
            return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "cuda read_tensor: '%s'", t->name);
        st = loom_cu_check(s->cu->MemcpyDtoH(w, s->buf[tensor], bytes), "cuMemcpyDtoH");
        if (st == LOOM_OK)
            loom_cuda_ll_values(w, s->ll_word, dst, n);
        free(w);
        return st == LOOM_OK ? st : loom_fail_context(st, "tensor '%s'", t->name);
    }
    if (t->role != LOOM_ROLE_KV) {
        size_t n = (size_t)loom_gtensor_numel(t) * loom_dtype_size(t->dtype);
        st = loom_cu_check(s->cu->MemcpyDtoH(dst, s->buf[tensor], n), "cuMemcpyDtoH");
        return st == LOOM_OK ? st : loom_fail_context(st, "tensor '%s'", t->name);
    }
    /* KV: logical order [positions, n_kv, head_dim] of sequence 0, every
     * position of its pages, the rest zero (as the CPU backend). */
    int64_t ps = g->params.page_size;
    size_t row = (size_t)t->cols * loom_dtype_size(t->dtype);
    int64_t positions = s->pages_per_seq * ps < t->rows ? s->pages_per_seq * ps : t->rows;
    for (int64_t i = 0; i * ps < positions; i++) {
        int64_t rows = positions - i * ps < ps ? positions - i * ps : ps;
        int64_t page = s->page_table[i];
        st = loom_cu_check(s->cu->MemcpyDtoH((char *)dst + (size_t)(i * ps) * row,
                                             s->buf[tensor] + (CUdeviceptr)((size_t)(page * ps) * row),
                                             (size_t)rows * row), "cuMemcpyDtoH");
        if (st != LOOM_OK)
            return loom_fail_context(st, "tensor '%s' page %lld", t->name, (long long)i);
    }
    memset((char *)dst + (size_t)positions * row, 0, (size_t)(t->rows - positions) * row);
    return LOOM_OK;
}

const loom_backend_vtable loom_cuda_backend = {"cuda", cuda_create, cuda_run, cuda_read_tensor,
                                               cuda_destroy};
