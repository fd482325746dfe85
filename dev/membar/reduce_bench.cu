// reduce_bench.cu - what a split-K hop would cost: every CTA adds a partial
// vector of N values into one accumulator in global memory, then signals a
// counter (red.release.gpu); the hop ends when every CTA has seen the counter
// complete (as the next op's tiles would). Against loom's hop today: each CTA
// stores its N / CTAs rows, then signals. For a fused gate_up + down (each
// tile its gate/up rows, then down's columns for them; docs/perf-notes.md
// v18, "Next"), the adds decide whether the fusion can pay.
//   rows      - each CTA stores its N / CTAs values (loom today), then signals
//   f32       - red.global.add.f32, N per CTA (sums in a run-dependent order)
//   v4.f32    - red.global.add.v4.f32 (sm_90), N / 4 per CTA
//   u64       - red.global.add.u64 of fixed-point values (exact, so the same
//               sum whatever the order)
// A case runs REPS hops back to back (the accumulator and counter never
// reset: the counter target grows by CTAs per hop, the adds accumulate),
// each started by the previous one's end; the time per hop is the run's
// length / REPS, from %globaltimer.
//
// Build and run on the GPU machine (nvcc only, no loom):
//   nvcc -O2 -arch=sm_90a -o /tmp/reduce dev/membar/reduce_bench.cu && /tmp/reduce
#include "bench.cuh"

enum { THREADS = 512, REPS = 200 };
enum { M_ROWS = 0, M_F32 = 1, M_V4 = 2, M_U64 = 3 };

__device__ __forceinline__ u32 ld_acquire(const u32 *p)
{
    u32 v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__global__ void __launch_bounds__(THREADS, 1)
hops(int mode, int n, float *accf, u64 *accu, u32 *counter, u64 *span)
{
    const u32 ctas = gridDim.x;
    if (blockIdx.x == 0 && threadIdx.x == 0)
        span[0] = gtimer();
    for (int r = 0; r < REPS; r++) {
        // this CTA's partial: n values (value i: small, depends on CTA and rep)
        if (mode == M_ROWS) {
            const int per = (n + ctas - 1) / ctas, b = blockIdx.x * per;
            for (int i = threadIdx.x; i < per && b + i < n; i += THREADS)
                accf[b + i] = (float)(r + i);
        } else if (mode == M_F32) {
            for (int i = threadIdx.x; i < n; i += THREADS)
                asm volatile("red.global.add.f32 [%0], %1;" ::"l"(accf + i),
                             "f"(1e-3f * (float)(blockIdx.x + i)) : "memory");
        } else if (mode == M_V4) {
            for (int i = threadIdx.x; i < n / 4; i += THREADS) {
                const float v = 1e-3f * (float)(blockIdx.x + i);
                asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(accf + 4 * i),
                             "f"(v), "f"(v), "f"(v), "f"(v) : "memory");
            }
        } else {
            for (int i = threadIdx.x; i < n; i += THREADS)
                asm volatile("red.global.add.u64 [%0], %1;" ::"l"(accu + i),
                             "l"((u64)(blockIdx.x + i) << 20) : "memory");
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            red_release(counter);
            const u32 want = ctas * (u32)(r + 1);
            while (ld_acquire(counter) < want) {
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
        atomicMax(span + 1, gtimer());
}

int main()
{
    int sms = 0;
    CK(cudaSetDevice(0));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    float *accf;
    u64 *accu, *span;
    u32 *counter;
    CK(cudaMalloc(&accf, 8192 * sizeof(float)));
    CK(cudaMalloc(&accu, 8192 * sizeof(u64)));
    CK(cudaMalloc(&counter, 256));
    CK(cudaMalloc(&span, 2 * sizeof(u64)));
    printf("device: %s, %d CTAs (one per SM), %d hops a case; us per hop\n", prop.name, sms, REPS);
    printf("%6s %10s %10s %10s %10s\n", "N", "rows", "f32", "v4.f32", "u64");
    const int ns[] = {1024, 2048, 4096};
    for (int n : ns) {
        printf("%6d", n);
        for (int mode = 0; mode < 4; mode++) {
            double best = 1e30;
            for (int rep = 0; rep < 3; rep++) {
                CK(cudaMemset(accf, 0, 8192 * sizeof(float)));
                CK(cudaMemset(accu, 0, 8192 * sizeof(u64)));
                CK(cudaMemset(counter, 0, 256));
                CK(cudaMemset(span, 0, 2 * sizeof(u64)));
                hops<<<sms, THREADS>>>(mode, n, accf, accu, counter, span);
                CK(cudaGetLastError());
                CK(cudaDeviceSynchronize());
                u64 hs[2];
                CK(cudaMemcpy(hs, span, sizeof hs, cudaMemcpyDeviceToHost));
                const double us = (double)(hs[1] - hs[0]) / 1e3 / REPS;
                best = us < best ? us : best;
            }
            printf(" %10.2f", best);
        }
        printf("\n");
    }
    return 0;
}
