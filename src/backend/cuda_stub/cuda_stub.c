/* cuda_stub.c - the CUDA backend when loom is built without the CUDA
 * toolkit: every entry point reports LOOM_ERR_NO_DEVICE. */
#include "backend/backend.h"
#include "core/error.h"

loom_status loom_cuda_device_sms(int32_t *n_sms, char *device_name, size_t name_len)
{
    (void)n_sms; (void)device_name; (void)name_len;
    return loom_fail(LOOM_ERR_NO_DEVICE, "loom was built without the CUDA toolkit");
}

static loom_status stub_create(const loom_program *prog, const loom_engine_params *params,
                               void **state)
{
    (void)prog; (void)params; (void)state;
    return loom_fail(LOOM_ERR_NO_DEVICE, "loom was built without the CUDA toolkit");
}

static loom_status stub_run(void *state, const loom_run_request *req, loom_run_result *res)
{
    (void)state; (void)req; (void)res;
    return loom_fail(LOOM_ERR_NO_DEVICE, "loom was built without the CUDA toolkit");
}

static loom_status stub_read(void *state, int32_t tensor, void *dst)
{
    (void)state; (void)tensor; (void)dst;
    return loom_fail(LOOM_ERR_NO_DEVICE, "loom was built without the CUDA toolkit");
}

static void stub_destroy(void *state) { (void)state; }

const loom_backend_vtable loom_cuda_backend = {"cuda", stub_create, stub_run, stub_read, stub_destroy};
