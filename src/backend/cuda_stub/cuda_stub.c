/* cuda_stub.c - the CUDA backend when loom is built without the CUDA
 * toolkit: every entry point (backend.h and backend/cuda/cuda.h) reports
 * LOOM_ERR_NO_DEVICE. */
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"

#define NO_TOOLKIT "loom was built without the CUDA toolkit"

loom_status loom_cuda_device_sms(int32_t *n_sms, char *device_name, size_t name_len)
{
    (void)n_sms; (void)device_name; (void)name_len;
    return loom_fail(LOOM_ERR_NO_DEVICE, NO_TOOLKIT);
}

static loom_status stub_create(const loom_program *prog, const loom_engine_params *params,
                               void **state)
{
    (void)prog; (void)params; (void)state;
    return loom_fail(LOOM_ERR_NO_DEVICE, NO_TOOLKIT);
}

static loom_status stub_run(void *state, const loom_run_request *req, loom_run_result *res)
{
    (void)state; (void)req; (void)res;
    return loom_fail(LOOM_ERR_NO_DEVICE, NO_TOOLKIT);
}

static loom_status stub_read(void *state, int32_t tensor, void *dst)
{
    (void)state; (void)tensor; (void)dst;
    return loom_fail(LOOM_ERR_NO_DEVICE, NO_TOOLKIT);
}

static void stub_destroy(void *state) { (void)state; }

const loom_backend_vtable loom_cuda_backend = {"cuda", stub_create, stub_run, stub_read, stub_destroy};

int64_t loom_cuda_smem_bytes(const loom_program *p, int cc_major)
{
    (void)p;
    (void)cc_major;
    return 0;
}

void loom_cuda_op_variants(const loom_program *p, int32_t *variant, int32_t *n_variants)
{
    for (int32_t i = 0; p && variant && i < p->graph->n_ops; i++)
        variant[i] = 0;
    if (n_variants)
        *n_variants = 0;
}

loom_status loom_cuda_codegen(const loom_program *p, char **source)
{
    (void)p; (void)source;
    return loom_fail(LOOM_ERR_NO_DEVICE, NO_TOOLKIT " (CUDA code generation is part of it)");
}

loom_status loom_cuda_compile(const char *source, const char *arch, const char *cache_dir,
                              loom_cuda_cubin *out)
{
    (void)source; (void)arch; (void)cache_dir; (void)out;
    return loom_fail(LOOM_ERR_NO_DEVICE, NO_TOOLKIT " (no NVRTC)");
}

void loom_cuda_cubin_free(loom_cuda_cubin *c)
{
    if (c)
        memset(c, 0, sizeof *c);
}

void loom_cuda_arch_name(int major, int minor, char *buf, size_t len)
{
    snprintf(buf, len, "sm_%d%d%s", major, minor, major == 9 && minor == 0 ? "a" : "");
}
