// emu_kernel.cpp - runs the generated megakernel (LOOM_EMU_SOURCE, included
// below) as a grid of CTAs of LOOM_THREADS host threads each, all at once
// (as a cooperative launch). See dev/README.md.
#include "emu.h"

#include <mutex>

#include LOOM_EMU_SOURCE

thread_local emu_dim threadIdx;
thread_local emu_dim blockIdx;

// One CTA: its barriers, shuffle slots and shared memory: the head, the
// tables, the task scratch and the staging ring (common.cuh).
struct emu_cta {
    std::barrier<> block{LOOM_THREADS};
    std::barrier<> *warp[LOOM_WARPS];
    float slot[LOOM_THREADS];
    std::atomic<int> vote{0};
    alignas(128) float4 smem[(LOOM_STAGE_OFFSET + LOOM_STAGE_SLOTS * LOOM_STAGE_BYTES + 15) / 16];
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

int emu_syncthreads_or(int v)
{
    if (v)
        t_cta->vote.fetch_or(1);
    t_cta->block.arrive_and_wait();
    int r = t_cta->vote.load();
    t_cta->block.arrive_and_wait();
    if (threadIdx.x == 0)
        t_cta->vote.store(0);
    t_cta->block.arrive_and_wait();
    return r;
}

void emu_syncwarp() { t_cta->warp[threadIdx.x / 32]->arrive_and_wait(); }

static std::mutex mbar_lock;

void emu_mbar_update(unsigned long long *bar, int init_count, int arrive, int tx)
{
    std::lock_guard<std::mutex> g(mbar_lock);
    unsigned long long w = __atomic_load_n(bar, __ATOMIC_RELAXED);
    unsigned phase = (unsigned)(w & 0xffffu), pending = (unsigned)(w >> 16 & 0xffu);
    unsigned count = (unsigned)(w >> 24 & 0xffu);
    int txp = (int)(unsigned)(w >> 32);
    if (init_count >= 0) {
        phase = 0;
        pending = count = (unsigned)init_count;
        txp = 0;
    }
    if (arrive) {
        if (pending == 0)
            abort();   // more arrivals than the count: a protocol bug
        pending--;
    }
    txp += tx;
    if (init_count < 0 && pending == 0 && txp == 0) {
        phase = (phase + 1) & 0xffffu;
        pending = count;
    }
    __atomic_store_n(bar, (unsigned long long)phase | (unsigned long long)pending << 16 |
                              (unsigned long long)count << 24 |
                              (unsigned long long)(unsigned)txp << 32, __ATOMIC_RELEASE);
}

bool emu_mbar_test(unsigned long long *bar, unsigned parity)
{
    return ((unsigned)(__atomic_load_n(bar, __ATOMIC_ACQUIRE) & 1u)) != (parity & 1u);
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
