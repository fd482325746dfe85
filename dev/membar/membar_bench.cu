// membar_bench.cu - how long loom's release (loom_signal: CTA barrier, then
// thread 0's red.release.gpu = MEMBAR.ALL.GPU + RED) takes on one SM, as a
// function of what that SM loaded just before and of what the other SMs do
// meanwhile. docs/perf-notes.md v18 found the release after 1.7B's down task
// at ~3 us against ~0.5 after o_proj, growing with the weight bytes the
// task's warps load from HBM; this separates the candidates:
//   own   - the probe CTA's warps load B bytes of weights (ld.global.nc, all
//           consumed, as linear_task's dot products) before the release;
//   bg    - the other SMs stream weights meanwhile with loads (as the
//           linear tasks: 16 warps x 8 x 16-byte loads in flight per warp),
//           or with bulk copies into shared memory (as the staging), or idle;
//   store - thread 0 stores one word before the release (loom's outputs), or
//           not.
// Each case: 256 releases by the probe CTA (SM of block 0), each after its own
// loads from a fresh region (L2 misses), timed with %globaltimer around the
// red.release; percentiles printed, and the
// bandwidth the other SMs got (loads).
//
// Build and run on the GPU machine (nvcc only, no loom):
//   nvcc -O2 -arch=sm_90a -o /tmp/membar dev/membar/membar_bench.cu && /tmp/membar
#include <algorithm>
#include <vector>
#include "bench.cuh"

enum { BG_NONE = 0, BG_LOADS = 1, BG_BULK = 2 };
enum { THREADS = 512, ITERS = 256, BULK_PIECE = 32768 };

__device__ __forceinline__ uint4 ld_nc(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__device__ __forceinline__ u32 smem_u32(const void *p)
{
    return (u32)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_wait(u64 *bar, u32 parity)
{
    u32 done = 0;
    while (!done)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared.b64 p, [%1], %2;"
                     " selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity));
}

struct args {
    const uint4 *w;      // weights to stream, n16 16-byte words
    u64 n16;
    const uint4 *own;    // the probe's regions, ITERS x own_bytes
    int own_bytes;
    int bg;              // BG_*
    int store;           // thread 0 stores a word before the release
    int unroll;          // BG_LOADS: loads per lane in flight (1, 2, 4, 8)
    u64 *bytes;          // BG_LOADS: bytes the other SMs read
    u64 *span;           // [2]: the probe's first and last globaltimer
    u32 *counter, *out_word, *sink;
    volatile u32 *stop;
    u64 *ns;             // [ITERS]
};

// One warp's share of streaming: U 16-byte loads per lane in flight, each
// round over its slice of w, until stop; returns the 16-byte words it read.
template <int U>
__device__ u64 stream(const args &a, u64 base, u64 per, u32 &acc)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u64 n = 0;
    while (!*a.stop) {
        for (u64 i = (u64)warp * 32 * U + lane; i + 32 * (U - 1) < per;
             i += (THREADS / 32) * 32 * U) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                v[u] = ld_nc(a.w + base + i + 32 * u);
#pragma unroll
            for (int u = 0; u < U; u++)
                acc += v[u].x ^ v[u].w;
            n += 32 * U;
            if (*a.stop)
                break;
        }
    }
    return n;
}

__global__ void __launch_bounds__(THREADS, 1) bench(args a)
{
    extern __shared__ __align__(128) unsigned char smem[];
    if (blockIdx.x == 0) {
        u32 acc = 0;
        if (threadIdx.x == 0)
            a.span[0] = gtimer();
        for (int it = 0; it < ITERS; it++) {
            // own loads: the CTA's warps read own_bytes, every value used
            const uint4 *r = a.own + (u64)it * (a.own_bytes / 16);
            for (int i = threadIdx.x; i < a.own_bytes / 16; i += THREADS) {
                uint4 v = ld_nc(r + i);
                acc += v.x ^ v.y ^ v.z ^ v.w;
            }
            if (a.store && threadIdx.x < 32)
                a.out_word[threadIdx.x] = acc + it;
            __syncthreads();
            if (threadIdx.x == 0) {
                u64 t0 = gtimer();
                red_release(a.counter);
                u64 t1 = gtimer();
                a.ns[it] = t1 - t0;
            }
            __syncthreads();
            // let the memory system settle into the background's steady state
            u64 t = gtimer();
            while (gtimer() - t < 4000) {
            }
        }
        if (threadIdx.x == 0) {
            a.sink[0] = acc;
            a.span[1] = gtimer();
            *a.stop = 1;
            __threadfence();
        }
        return;
    }
    if (a.bg == BG_NONE)
        return;
    // the other SMs: each its own slice of w, round and round until stop
    const u64 per = a.n16 / (gridDim.x - 1), base = (u64)(blockIdx.x - 1) * per;
    u32 acc = 0;
    if (a.bg == BG_LOADS) {
        u64 n = 0;
        switch (a.unroll) {
        case 1: n = stream<1>(a, base, per, acc); break;
        case 2: n = stream<2>(a, base, per, acc); break;
        case 4: n = stream<4>(a, base, per, acc); break;
        default: n = stream<8>(a, base, per, acc); break;
        }
        if (acc == 0x12345678u)
            a.sink[1] = acc;
        if ((threadIdx.x & 31) == 0)
            atomicAdd(a.bytes, n * 16);
        return;
    }
    // BG_BULK: thread 0 keeps 3 bulk copies of 32 KB in flight into shared memory
    u64 *bar = (u64 *)smem;
    unsigned char *buf = smem + 128;
    if (threadIdx.x == 0) {
        for (int s = 0; s < 3; s++)
            asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(smem_u32(bar + s)));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        u64 off = 0;
        u32 phase[3] = {0, 0, 0};
        const u64 bytes = per * 16;
        int k = 0;
        for (; !*a.stop; k++) {
            const int s = k % 3;
            if (k >= 3) {   // wait for this slot's previous copy
                mbar_wait(bar + s, phase[s]);
                phase[s] ^= 1;
            }
            if (off + BULK_PIECE > bytes)
                off = 0;
            asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(smem_u32(bar + s)),
                         "r"((u32)BULK_PIECE));
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                         " [%0], [%1], %2, [%3];" ::"r"(smem_u32(buf + s * BULK_PIECE)),
                         "l"((const char *)(a.w + base) + off), "r"((u32)BULK_PIECE),
                         "r"(smem_u32(bar + s))
                         : "memory");
            off += BULK_PIECE;
        }
        for (int s = 0; s < 3 && s < k; s++)   // drain: no copy may outlive the CTA
            mbar_wait(bar + s, phase[s]);
    }
}

static double at(std::vector<u64> v, double q)
{
    std::sort(v.begin(), v.end());
    size_t i = (size_t)(q * (double)(v.size() - 1) + 0.5);
    return (double)v[i];
}

int main()
{
    int dev = 0, sms = 0;
    CK(cudaSetDevice(dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    const u64 wbytes = 2ull << 30;   // 2 GB streamed: far past L2
    const int max_own = 192 * 1024;
    uint4 *w, *own;
    u32 *words;
    u64 *ns, *big;
    CK(cudaMalloc(&w, wbytes));
    CK(cudaMalloc(&own, (u64)ITERS * max_own));
    CK(cudaMalloc(&words, 4096));
    CK(cudaMalloc(&big, 64));
    CK(cudaMalloc(&ns, ITERS * sizeof(u64)));
    CK(cudaMemset(own, 2, (u64)ITERS * max_own));
    CK(cudaMemset(w, 1, wbytes));   // after own: own's lines leave L2
    const int smem = 128 + 3 * BULK_PIECE;
    CK(cudaFuncSetAttribute(bench, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    printf("device: %s, %d SMs; release = red.release.gpu by thread 0 after a CTA barrier;\n"
           "%d releases a case (the first 4 dropped), each after the probe's own loads\n",
           prop.name, sms, ITERS);
    printf("%-30s %6s %5s %9s %9s %9s %9s %10s\n", "background (the other SMs)", "own KB",
           "store", "p50 ns", "p90 ns", "p99 ns", "max ns", "bg GB/s");
    struct { int bg, unroll, own_kb, store; } cases[] = {
        {BG_NONE, 0, 0, 0},  {BG_NONE, 0, 0, 1},  {BG_NONE, 0, 96, 1}, {BG_NONE, 0, 192, 1},
        {BG_LOADS, 1, 96, 1}, {BG_LOADS, 2, 96, 1}, {BG_LOADS, 4, 96, 1}, {BG_LOADS, 8, 0, 0},
        {BG_LOADS, 8, 0, 1},  {BG_LOADS, 8, 96, 1}, {BG_LOADS, 8, 192, 1}, {BG_BULK, 0, 0, 1},
        {BG_BULK, 0, 96, 1},
    };
    for (const auto &c : cases) {
        args a;
        a.w = w;
        a.n16 = wbytes / 16;
        a.own = own;
        a.own_bytes = c.own_kb * 1024;
        a.bg = c.bg;
        a.store = c.store;
        a.unroll = c.unroll;
        a.counter = words;
        a.out_word = words + 64;
        a.sink = words + 256;
        a.stop = words + 512;
        a.bytes = big;
        a.span = big + 2;
        a.ns = ns;
        CK(cudaMemset(words, 0, 4096));
        CK(cudaMemset(big, 0, 64));
        CK(cudaMemset(w, 1, 256ull << 20));   // the last case's own lines out of L2
        bench<<<sms, THREADS, smem>>>(a);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        std::vector<u64> hn(ITERS);
        u64 hb[4];
        CK(cudaMemcpy(hn.data(), ns, ITERS * sizeof(u64), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hb, big, sizeof hb, cudaMemcpyDeviceToHost));
        hn.erase(hn.begin(), hn.begin() + 4);   // the background starting
        char name[64], bw[32] = "-";
        if (c.bg == BG_LOADS) {
            snprintf(name, sizeof name, "loads, 16 warps x %d x 16 B", c.unroll);
            snprintf(bw, sizeof bw, "%.0f", (double)hb[0] / (double)(hb[3] - hb[2]));
        } else {
            snprintf(name, sizeof name, "%s", c.bg == BG_NONE ? "idle" : "bulk copies, 3 x 32 KB");
        }
        printf("%-30s %6d %5d %9.0f %9.0f %9.0f %9.0f %10s\n", name, c.own_kb, c.store,
               at(hn, 0.5), at(hn, 0.9), at(hn, 0.99), at(hn, 1.0), bw);
    }
    return 0;
}
