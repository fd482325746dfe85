/* driver.h - the CUDA driver API, loaded with dlopen("libcuda.so.1") at run
 * time so that libloom loads on machines without a driver. Only the types
 * come from the toolkit's <cuda.h>; every entry point is a pointer filled by
 * dlsym from the driver's own (versioned) symbol names.
 *
 * defines: loom_cu, loom_cuda_driver, loom_cu_check */
#ifndef LOOM_BACKEND_CUDA_DRIVER_H
#define LOOM_BACKEND_CUDA_DRIVER_H

#include <cuda.h>

#include "loom.h"

typedef struct loom_cu {
    CUresult (*Init)(unsigned int flags);
    CUresult (*DriverGetVersion)(int *v);
    CUresult (*DeviceGetCount)(int *n);
    CUresult (*DeviceGet)(CUdevice *d, int ordinal);
    CUresult (*DeviceGetName)(char *name, int len, CUdevice d);
    CUresult (*DeviceGetAttribute)(int *v, CUdevice_attribute a, CUdevice d);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *c, CUdevice d);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice d);
    CUresult (*CtxSetCurrent)(CUcontext c);
    CUresult (*ModuleLoadData)(CUmodule *m, const void *image);
    CUresult (*ModuleUnload)(CUmodule m);
    CUresult (*ModuleGetFunction)(CUfunction *f, CUmodule m, const char *name);
    CUresult (*ModuleGetGlobal)(CUdeviceptr *p, size_t *bytes, CUmodule m, const char *name);
    CUresult (*FuncSetAttribute)(CUfunction f, CUfunction_attribute a, int v);
    CUresult (*OccupancyMaxActiveBlocksPerMultiprocessor)(int *n, CUfunction f, int threads,
                                                          size_t smem);
    CUresult (*MemAlloc)(CUdeviceptr *p, size_t n);
    CUresult (*MemFree)(CUdeviceptr p);
    CUresult (*MemcpyHtoD)(CUdeviceptr dst, const void *src, size_t n);
    CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t n);
    CUresult (*MemsetD8)(CUdeviceptr p, unsigned char v, size_t n);
    CUresult (*MemHostAlloc)(void **p, size_t n, unsigned int flags);
    CUresult (*MemFreeHost)(void *p);
    CUresult (*MemHostGetDevicePointer)(CUdeviceptr *d, void *p, unsigned int flags);
    CUresult (*StreamCreate)(CUstream *s, unsigned int flags);
    CUresult (*StreamDestroy)(CUstream s);
    CUresult (*StreamQuery)(CUstream s);
    CUresult (*StreamSynchronize)(CUstream s);
    CUresult (*LaunchCooperativeKernel)(CUfunction f, unsigned int gx, unsigned int gy,
                                        unsigned int gz, unsigned int bx, unsigned int by,
                                        unsigned int bz, unsigned int smem, CUstream s,
                                        void **params);
    CUresult (*GetErrorString)(CUresult r, const char **s);
    CUresult (*GetErrorName)(CUresult r, const char **s);
} loom_cu;

/* The driver, loaded and initialised once per process; LOOM_ERR_NO_DEVICE
 * (with the reason) when there is no driver or no GPU. */
loom_status loom_cuda_driver(const loom_cu **out);

/* LOOM_OK, or LOOM_ERR_BACKEND "cuda: <call>: <name>: <description>". */
loom_status loom_cu_check(CUresult r, const char *call);

#endif
