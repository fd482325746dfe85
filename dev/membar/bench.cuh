// bench.cuh - what membar_bench.cu and reduce_bench.cu share: error checks
// and the PTX they time. (Standalone: loom's tasks/common.cuh needs the
// defines of a generated kernel.)
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

typedef unsigned long long u64;
typedef unsigned int u32;

#define CK(x)                                                                          \
    do {                                                                               \
        cudaError_t e_ = (x);                                                          \
        if (e_ != cudaSuccess) {                                                       \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x,                  \
                    cudaGetErrorString(e_));                                           \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

__device__ __forceinline__ u64 gtimer()
{
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// loom's release: MEMBAR.ALL.GPU + RED in SASS
__device__ __forceinline__ void red_release(u32 *p)
{
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(p) : "memory");
}
