/* driver.c - the CUDA driver API through dlopen (see driver.h), and
 * loom_cuda_device_sms.
 *
 * defines: loom_cuda_driver, loom_cu_check, loom_cuda_device_sms */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/driver.h"
#include "core/error.h"

static loom_cu g_cu;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static loom_status g_status = LOOM_ERR_NO_DEVICE;
static char g_reason[512] = "CUDA driver not loaded";

/* Entry points and the driver's exported names (versioned where the API
 * header maps the plain name onto a _v2). */
#define SYM(field, name) {(void **)&g_cu.field, name}
static const struct {
    void      **slot;
    const char *name;
} g_syms[] = {
    SYM(Init, "cuInit"),
    SYM(DriverGetVersion, "cuDriverGetVersion"),
    SYM(DeviceGetCount, "cuDeviceGetCount"),
    SYM(DeviceGet, "cuDeviceGet"),
    SYM(DeviceGetName, "cuDeviceGetName"),
    SYM(DeviceGetAttribute, "cuDeviceGetAttribute"),
    SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
    SYM(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
    SYM(CtxSetCurrent, "cuCtxSetCurrent"),
    SYM(ModuleLoadData, "cuModuleLoadData"),
    SYM(ModuleUnload, "cuModuleUnload"),
    SYM(ModuleGetFunction, "cuModuleGetFunction"),
    SYM(ModuleGetGlobal, "cuModuleGetGlobal_v2"),
    SYM(FuncSetAttribute, "cuFuncSetAttribute"),
    SYM(OccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor"),
    SYM(MemAlloc, "cuMemAlloc_v2"),
    SYM(MemFree, "cuMemFree_v2"),
    SYM(MemcpyHtoD, "cuMemcpyHtoD_v2"),
    SYM(MemcpyDtoH, "cuMemcpyDtoH_v2"),
    SYM(MemsetD8, "cuMemsetD8_v2"),
    SYM(MemHostAlloc, "cuMemHostAlloc"),
    SYM(MemFreeHost, "cuMemFreeHost"),
    SYM(MemHostGetDevicePointer, "cuMemHostGetDevicePointer_v2"),
    SYM(StreamCreate, "cuStreamCreate"),
    SYM(StreamDestroy, "cuStreamDestroy_v2"),
    SYM(StreamQuery, "cuStreamQuery"),
    SYM(StreamSynchronize, "cuStreamSynchronize"),
    SYM(LaunchCooperativeKernel, "cuLaunchCooperativeKernel"),
    SYM(GetErrorString, "cuGetErrorString"),
    SYM(GetErrorName, "cuGetErrorName"),
};

static const char *result_name(CUresult r)
{
    const char *s = NULL;
    if (!g_cu.GetErrorName || g_cu.GetErrorName(r, &s) != CUDA_SUCCESS || !s)
        return "CUDA_ERROR_?";
    return s;
}

static const char *result_string(CUresult r)
{
    const char *s = NULL;
    if (!g_cu.GetErrorString || g_cu.GetErrorString(r, &s) != CUDA_SUCCESS || !s)
        return "unknown error";
    return s;
}

loom_status loom_cu_check(CUresult r, const char *call)
{
    if (r == CUDA_SUCCESS)
        return LOOM_OK;
    return loom_fail(LOOM_ERR_BACKEND, "cuda: %s: %s (%d): %s", call, result_name(r), (int)r,
                     result_string(r));
}

static void load_once(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    CUresult r;
    int n = 0;

    if (!lib) {
        const char *e = dlerror();
        snprintf(g_reason, sizeof g_reason, "no CUDA driver: dlopen(libcuda.so.1): %s",
                 e ? e : "not found");
        return;
    }
    for (size_t i = 0; i < sizeof g_syms / sizeof g_syms[0]; i++) {
        *g_syms[i].slot = dlsym(lib, g_syms[i].name);
        if (!*g_syms[i].slot) {
            snprintf(g_reason, sizeof g_reason,
                     "CUDA driver too old: libcuda.so.1 lacks %s", g_syms[i].name);
            return;
        }
    }
    r = g_cu.Init(0);
    if (r != CUDA_SUCCESS) {
        snprintf(g_reason, sizeof g_reason, "no usable CUDA GPU: cuInit: %s: %s",
                 result_name(r), result_string(r));
        return;
    }
    r = g_cu.DeviceGetCount(&n);
    if (r != CUDA_SUCCESS || n < 1) {
        snprintf(g_reason, sizeof g_reason, "no CUDA GPU: cuDeviceGetCount: %d devices (%s)",
                 n, result_name(r));
        return;
    }
    g_status = LOOM_OK;
}

loom_status loom_cuda_driver(const loom_cu **out)
{
    pthread_once(&g_once, load_once);
    if (g_status != LOOM_OK)
        return loom_fail(LOOM_ERR_NO_DEVICE, "%s", g_reason);
    *out = &g_cu;
    return LOOM_OK;
}

loom_status loom_cuda_device_sms(int32_t *n_sms, char *device_name, size_t name_len)
{
    const loom_cu *cu;
    CUdevice dev;
    int sms = 0;
    char name[256] = "";
    loom_status st;

    st = loom_cuda_driver(&cu);
    if (st != LOOM_OK)
        return st;
    st = loom_cu_check(cu->DeviceGet(&dev, 0), "cuDeviceGet(0)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                                  dev), "cuDeviceGetAttribute(SM count)");
    if (st == LOOM_OK)
        st = loom_cu_check(cu->DeviceGetName(name, (int)sizeof name, dev), "cuDeviceGetName");
    if (st != LOOM_OK)
        return st;
    if (n_sms)
        *n_sms = sms;
    if (device_name && name_len)
        snprintf(device_name, name_len, "%s", name);
    return LOOM_OK;
}
