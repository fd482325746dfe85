// emu_kernel.cpp - runs the generated megakernel (LOOM_EMU_SOURCE, included
// below) as a grid of CTAs of LOOM_THREADS host threads each, all at once
// (as a cooperative launch). See dev/README.md.
#include "emu.h"

#include LOOM_EMU_SOURCE

thread_local emu_dim threadIdx;
thread_local emu_dim blockIdx;

// One CTA: its barriers, shuffle slots and shared memory: the head, the
// tables, the task scratch (common.cuh), and the staging slots when the
// emulator stages (-DLOOM_EMU_STAGE, common.cuh LOOM_STAGE).
struct emu_cta {
    std::barrier<> block{LOOM_THREADS};
    std::barrier<> *warp[LOOM_WARPS];
    float slot[LOOM_THREADS];
    int any[2] = {0, 0};   // __syncthreads_or, calls alternating
    alignas(128) float4 smem[(LOOM_STAGE_OFFSET + LOOM_STAGE * LOOM_STAGE_SLOTS *
                                                   LOOM_STAGE_BYTES + 15) / 16];
    emu_cta()
    {
        for (int w = 0; w < LOOM_WARPS; w++)
            warp[w] = new std::barrier<>(32);
    }
    ~emu_cta()
    {
        for (int w = 0; w < LOOM_WARPS; w++)
            delete warp[w];
    }
};

static thread_local emu_cta *t_cta;

float4 *emu_smem() { return t_cta->smem; }
void emu_syncthreads() { t_cta->block.arrive_and_wait(); }

int emu_syncthreads_or(int p)
{
    static thread_local unsigned calls;
    int *any = &t_cta->any[calls++ & 1u];
    if (p)
        __atomic_fetch_or(any, 1, __ATOMIC_RELAXED);
    t_cta->block.arrive_and_wait();
    const int r = __atomic_load_n(any, __ATOMIC_RELAXED);
    t_cta->block.arrive_and_wait();
    if (threadIdx.x == 0)   // read by all; used again two calls on, past two barriers
        __atomic_store_n(any, 0, __ATOMIC_RELAXED);
    return r;
}

float emu_shfl(float v, int src)
{
    unsigned t = threadIdx.x, w = t / 32;
    t_cta->slot[t] = v;
    t_cta->warp[w]->arrive_and_wait();
    float r = t_cta->slot[(t & ~31u) | (unsigned)src];
    t_cta->warp[w]->arrive_and_wait();
    return r;
}

extern "C" void emu_launch(const void *params, int grid)
{
    const loom_kparams *p = (const loom_kparams *)params;
    std::vector<emu_cta *> ctas;
    std::vector<std::thread> th;

    for (int b = 0; b < grid; b++)
        ctas.push_back(new emu_cta());
    for (int b = 0; b < grid; b++)
        for (unsigned t = 0; t < LOOM_THREADS; t++)
            th.emplace_back([p, b, t, &ctas] {
                threadIdx.x = t;
                blockIdx.x = (unsigned)b;
                t_cta = ctas[b];
                loom_megakernel(*p);
            });
    for (auto &x : th)
        x.join();
    for (auto *c : ctas)
        delete c;
}
