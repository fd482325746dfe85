// emu_kernel.cpp - runs the generated megakernel (LOOM_EMU_SOURCE, included
// below) as one CTA of LOOM_THREADS host threads. See dev/README.md.
#include "emu.h"

#include LOOM_EMU_SOURCE

thread_local emu_dim threadIdx;
alignas(16) float4 loom_smem4[(232448 + 15) / 16];

static std::barrier<> *g_block;
static std::barrier<> *g_warp[LOOM_WARPS];
static float g_slot[LOOM_THREADS];

void emu_syncthreads() { g_block->arrive_and_wait(); }

float emu_shfl_xor(float v, int o)
{
    unsigned t = threadIdx.x, w = t / 32;
    g_slot[t] = v;
    g_warp[w]->arrive_and_wait();
    float r = g_slot[(t & ~31u) | ((t & 31u) ^ (unsigned)o)];
    g_warp[w]->arrive_and_wait();
    return r;
}

extern "C" void emu_launch(const void *params)
{
    const loom_kparams *p = (const loom_kparams *)params;
    std::barrier<> block(LOOM_THREADS);
    std::vector<std::barrier<> *> warps;
    std::vector<std::thread> th;

    g_block = &block;
    for (int w = 0; w < LOOM_WARPS; w++)
        g_warp[w] = new std::barrier<>(32);
    for (unsigned t = 0; t < LOOM_THREADS; t++)
        th.emplace_back([p, t] {
            threadIdx.x = t;
            loom_megakernel(*p);
        });
    for (auto &x : th)
        x.join();
    for (int w = 0; w < LOOM_WARPS; w++)
        delete g_warp[w];
}
