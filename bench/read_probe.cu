// read_probe.cu - HBM read bandwidth the way loom's kernels read: bench/bandwidth.py
// builds it with nvcc when there is one and takes the fastest of its readers and
// its own. Two readers, each over buffers much larger than L2, rotated:
//   ldg   every thread keeps 8 loads of 16 bytes in flight (ld.global.nc), as
//         loom's linear tiles do; one CTA of 1024 threads per SM, grid-stride;
//   bulk  (sm_90) one CTA per SM streams its share by bulk copies
//         (cp.async.bulk, TMA) of 32 KB into a ring of 6 slots, 5 warps
//         summing each landed slot from shared memory, as loom's staging does;
//         bulk_all: the same over every buffer in one launch.
// Each sums the buffer's 32-bit words (mod 2^64); the sum must be exact (the
// words are a hash the host sums too) or its number is not used.
//   read_probe GIB BUFFERS REPS   -> one JSON line {"ldg": B/s, "bulk": B/s, ...}
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>

#define CK(x)                                                                          \
    do {                                                                               \
        cudaError_t e_ = (x);                                                          \
        if (e_ != cudaSuccess) {                                                       \
            printf("{\"error\": \"%s: %s\"}\n", #x, cudaGetErrorString(e_));           \
            return 1;                                                                  \
        }                                                                              \
    } while (0)

// The buffers' contents: 32-bit words of a hash of (buffer, index), nothing a
// memory system could compress; the host sums the same words for the check.
__host__ __device__ __forceinline__ uint32_t word_at(uint32_t buf, uint64_t i)
{
    uint64_t z = i + 0x9e3779b97f4a7c15ull * (buf + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)(z ^ (z >> 31));
}

__global__ void fill(uint32_t *w, size_t n, uint32_t buf)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        w[i] = word_at(buf, i);
}

__device__ __forceinline__ uint4 ld_nc(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

__global__ void __launch_bounds__(1024) ldg_read(const uint4 *p, size_t n, unsigned long long *sum)
{
    constexpr int U = 8;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long acc = 0;
    for (; i + (U - 1) * stride < n; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int k = 0; k < U; k++)
            v[k] = ld_nc(p + i + k * stride);
#pragma unroll
        for (int k = 0; k < U; k++)
            acc += (unsigned long long)v[k].x + v[k].y + v[k].z + v[k].w;
    }
    for (; i < n; i += stride) {
        const uint4 v = ld_nc(p + i);
        acc += (unsigned long long)v.x + v.y + v.z + v.w;
    }
    atomicAdd(sum, acc);
}

constexpr int SLOTS = 6, PIECE = 32768, SUMMERS = 5;

__device__ __forceinline__ unsigned smem_u32(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

// Before sm_90 there are no bulk copies: the body is empty (main skips it).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
__device__ __forceinline__ void bulk_read_body(const char *const *, int, size_t,
                                               unsigned long long *) {}
#else
// Pieces b, b + gridDim.x, ... of the buffers bufs[0..nbuf) taken as one
// (each `pieces` long); slot s holds the CTA's pieces s, s + SLOTS, ...:
// thread 0 issues, warps 1.. SUMMERS sum, then all meet.
__device__ __forceinline__ void bulk_read_body(const char *const *bufs, int nbuf, size_t per_buf,
                                               unsigned long long *sum)
{
    const size_t pieces = per_buf * (size_t)nbuf;
    extern __shared__ __align__(128) char ring[];
    __shared__ __align__(8) unsigned long long bar[SLOTS];
    const size_t mine = pieces > blockIdx.x ? (pieces - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
    if (threadIdx.x == 0) {
        for (int s = 0; s < SLOTS; s++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(bar + s)));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    auto issue = [&](size_t k) {   // the CTA's k-th piece into slot k % SLOTS
        const int s = (int)(k % SLOTS);
        const size_t g = blockIdx.x + k * gridDim.x;
        const char *src = bufs[g / per_buf] + (g % per_buf) * (size_t)PIECE;
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                     ::"r"(smem_u32(bar + s)), "r"(PIECE) : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                     " [%0], [%1], %2, [%3];"
                     ::"r"(smem_u32(ring + s * PIECE)), "l"(src), "r"(PIECE),
                     "r"(smem_u32(bar + s)) : "memory");
    };
    if (threadIdx.x == 0)
        for (size_t k = 0; k < mine && k < SLOTS; k++)
            issue(k);
    unsigned long long acc = 0;
    for (size_t k = 0; k < mine; k++) {
        const int s = (int)(k % SLOTS);
        const unsigned parity = (unsigned)((k / SLOTS) & 1);
        if (threadIdx.x >= 32) {
            unsigned ok = 0;
            while (!ok)
                asm volatile("{\n\t.reg .pred q;\n\t"
                             "mbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n\t"
                             "selp.u32 %0, 1, 0, q;\n\t}"
                             : "=r"(ok) : "r"(smem_u32(bar + s)), "r"(parity) : "memory");
            const uint4 *w = (const uint4 *)(ring + s * PIECE);
            for (int j = threadIdx.x - 32; j < PIECE / 16; j += 32 * SUMMERS) {
                const uint4 v = w[j];
                acc += (unsigned long long)v.x + v.y + v.z + v.w;
            }
        }
        __syncthreads();   // the slot is read: refill it
        if (threadIdx.x == 0 && k + SLOTS < mine) {
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            issue(k + SLOTS);
        }
    }
    atomicAdd(sum, acc);
}
#endif

__global__ void __launch_bounds__(32 * (SUMMERS + 1)) bulk_read(const char *const *bufs, int nbuf,
                                                                size_t per_buf,
                                                                unsigned long long *sum)
{
    bulk_read_body(bufs, nbuf, per_buf, sum);
}

int main(int argc, char **argv)
{
    const double gib = argc > 1 ? atof(argv[1]) : 4.0;
    const int nbuf = argc > 2 ? atoi(argv[2]) : 4, reps = argc > 3 ? atoi(argv[3]) : 20;
    int dev = 0, sms = 0, major = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    const size_t bytes = (size_t)(gib * (1ull << 30) / nbuf) / (1u << 20) * (1u << 20);
    std::vector<char *> bufs(nbuf);
    std::vector<unsigned long long> want(nbuf, 0);
    for (int k = 0; k < nbuf; k++) {
        CK(cudaMalloc(&bufs[k], bytes));
        fill<<<sms * 4, 1024>>>((uint32_t *)bufs[k], bytes / 4, (uint32_t)k);
        CK(cudaGetLastError());
        for (size_t i = 0; i < bytes / 4; i++)
            want[k] += word_at((uint32_t)k, i);
    }
    CK(cudaDeviceSynchronize());
    unsigned long long want_all = 0;
    for (int k = 0; k < nbuf; k++)
        want_all += want[k];
    unsigned long long *sum;
    CK(cudaMalloc(&sum, sizeof *sum));
    const char **d_bufs;   // the buffers' addresses, for the bulk readers
    CK(cudaMalloc(&d_bufs, nbuf * sizeof *d_bufs));
    CK(cudaMemcpy(d_bufs, bufs.data(), nbuf * sizeof *d_bufs, cudaMemcpyHostToDevice));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const int ring = SLOTS * PIECE;
    if (major >= 9)
        CK(cudaFuncSetAttribute(bulk_read, cudaFuncAttributeMaxDynamicSharedMemorySize, ring));
    printf("{\"device_sms\": %d, \"buffer_bytes\": %zu", sms, bytes);
    // ldg and bulk: one buffer a launch; bulk_all: every buffer in one launch,
    // nbuf times as long, so the launch's start and end weigh less (loom's
    // step times are taken inside one long launch).
    for (int r = 0; r < 3; r++) {
        if (r >= 1 && major < 9)
            break;
        const char *name = r == 0 ? "ldg" : r == 1 ? "bulk" : "bulk_all";
        const int per_launch = r == 2 ? nbuf : 1;
        std::vector<float> ms;
        bool exact = true;
        for (int i = -nbuf; i < reps; i++) {   // one pass over the buffers to warm up
            const int k = (i + nbuf) % nbuf;
            CK(cudaMemset(sum, 0, sizeof *sum));
            CK(cudaEventRecord(e0));
            if (r == 0)
                ldg_read<<<sms, 1024>>>((const uint4 *)bufs[k], bytes / 16, sum);
            else
                bulk_read<<<sms, 32 * (SUMMERS + 1), ring>>>(r == 2 ? d_bufs : d_bufs + k,
                                                             per_launch, bytes / PIECE, sum);
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            CK(cudaGetLastError());
            unsigned long long got = 0;
            CK(cudaMemcpy(&got, sum, sizeof got, cudaMemcpyDeviceToHost));
            exact &= got == (r == 2 ? want_all : want[k]);
            float t = 0;
            CK(cudaEventElapsedTime(&t, e0, e1));
            if (i >= 0)
                ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2];
        if (exact)
            printf(", \"%s\": %.6e", name, (double)bytes * per_launch / (med * 1e-3));
        else
            printf(", \"%s_error\": \"inexact sum\"", name);
    }
    printf("}\n");
    return 0;
}
