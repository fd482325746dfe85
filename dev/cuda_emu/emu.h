// emu.h - just enough of CUDA to run the megakernel's device code on the
// host: one CTA of LOOM_THREADS std::threads, __syncthreads as a barrier,
// warp shuffles through a slot array and per-warp barriers, and host
// versions of the PTX helpers of tasks/common.cuh (compiled with LOOM_EMU).
// Force-included (g++ -include emu.h) before the generated source.
//
// The kernels compile with LOOM_STAGE 0 here (common.cuh): no weight
// staging, its functions are the stubs; LOOM_TRACE is off.
//
// defines: threadIdx, blockIdx, uint2, uint4, float4, __syncthreads,
//          __shfl_xor_sync, __shfl_sync, atomics, the PTX helpers of
//          common.cuh's `#ifndef LOOM_EMU` parts, loom_smem4, emu_launch
#pragma once
#define LOOM_EMU 1

#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#define __global__
#define __host__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(a, b)
#define __shared__ static

struct emu_dim { unsigned x, y, z; };
extern thread_local emu_dim threadIdx;
extern thread_local emu_dim blockIdx;

struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
// the fixed point's conversions (common.cuh): round to nearest even, as the GPU
inline long long __float2ll_rn(float v) { return (long long)std::nearbyint(v); }
inline float __ll2float_rn(long long a) { return (float)a; }

inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }

void emu_syncthreads();
// Lane `src` of the calling thread's warp (all 32 lanes take part).
float emu_shfl(float v, int src);
inline void __syncthreads() { emu_syncthreads(); }
// Whether p is nonzero on any thread of the CTA (a barrier).
int emu_syncthreads_or(int p);
inline int __syncthreads_or(int p) { return emu_syncthreads_or(p); }
inline float __shfl_sync(unsigned, float v, int src) { return emu_shfl(v, src & 31); }
inline float __shfl_xor_sync(unsigned, float v, int o)
{
    return emu_shfl(v, (int)((threadIdx.x & 31u) ^ (unsigned)o));
}
inline void __nanosleep(unsigned) { std::this_thread::yield(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline int atomicCAS(int *p, int cmp, int v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

inline void sincospif(float x, float *s, float *c)
{
    *s = (float)std::sin(M_PI * (double)x);
    *c = (float)std::cos(M_PI * (double)x);
}

// Loads and stores: plain memory (L1 / L2 and their cache policies do not
// exist here); K/V rows written by other CTAs are read after an acquire
// (a counter's, or embed's of the step), activations as LL words.
inline uint4 ld_weight16(const void *p) { uint4 v; memcpy(&v, p, 16); return v; }
inline uint4 ld_weight16_sched(const void *p) { return ld_weight16(p); }
inline uint4 ld_shared16(const void *p) { uint4 v; memcpy(&v, p, 16); return v; }
inline unsigned ld_kv4(const void *p) { unsigned v; memcpy(&v, p, 4); return v; }
inline uint2 ld_kv8(const void *p) { uint2 v; memcpy(&v, p, 8); return v; }
inline void st_kv(unsigned short *p, unsigned short v) { *p = v; }
// selp
inline float select_f32(bool p, float a, float b) { return p ? a : b; }
inline void prefetch_l2(const void *) {}
inline unsigned long long globaltimer()
{
    return (unsigned long long)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}
// LL words (common.cuh "activations"): relaxed atomics; a 16-byte load is
// two 8-byte or four 4-byte ones.
inline void st_ll_u64(unsigned long long *p, unsigned long long w)
{
    __atomic_store_n(p, w, __ATOMIC_RELAXED);
}
inline void st_ll_u32(unsigned *p, unsigned w) { __atomic_store_n(p, w, __ATOMIC_RELAXED); }
inline unsigned long long ld_ll_u64(const unsigned long long *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
inline unsigned ld_ll_u32(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void ld_ll_v2(const void *p, unsigned long long &a, unsigned long long &b)
{
    a = ld_ll_u64((const unsigned long long *)p);
    b = ld_ll_u64((const unsigned long long *)p + 1);
}
inline void ld_ll_v4(const void *p, unsigned (&w)[4])
{
    for (int e = 0; e < 4; e++)
        w[e] = ld_ll_u32((const unsigned *)p + e);
}
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned ld_acquire(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void red_release_add(unsigned *p, unsigned v) { __atomic_fetch_add(p, v, __ATOMIC_RELEASE); }
inline void red_relaxed_add(unsigned *p, unsigned v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atom_acq_rel_add(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }

// Weight staging (common.cuh, with -DLOOM_EMU_STAGE): a bulk copy is a
// memcpy by the thread that issues it, then its bytes complete on the
// slot's mbarrier. The barrier word: bits 0-31 the transaction bytes still
// expected, bit 32 the one arrival still expected, bit 63 the phase's
// parity (phases completed, mod 2).
inline void emu_mbar_update(unsigned long long *bar, long long tx, bool arrive)
{
    unsigned long long o = __atomic_load_n(bar, __ATOMIC_ACQUIRE), n;
    do {
        unsigned long long bytes = (unsigned)((long long)(o & 0xffffffffull) + tx);
        unsigned long long pend = arrive ? 0ull : (o >> 32 & 1ull), phase = o >> 63;
        if (bytes == 0 && pend == 0) {   // the phase completes; the next expects an arrival
            phase ^= 1ull;
            pend = 1ull;
        }
        n = phase << 63 | pend << 32 | bytes;
    } while (!__atomic_compare_exchange_n(bar, &o, n, false, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
}
inline void mbar_init(unsigned long long *bar, unsigned)
{
    __atomic_store_n(bar, 1ull << 32, __ATOMIC_RELEASE);
}
inline void mbar_expect(unsigned long long *bar, unsigned bytes)
{
    emu_mbar_update(bar, bytes, true);
}
inline void bulk_copy(void *dst, const void *src, unsigned bytes, unsigned long long *bar)
{
    memcpy(dst, src, bytes);
    emu_mbar_update(bar, -(long long)bytes, false);
}
inline void bulk_prefetch_l2(const void *, unsigned) {}
inline bool mbar_test(unsigned long long *bar, unsigned parity)
{
    const bool done = (__atomic_load_n(bar, __ATOMIC_ACQUIRE) >> 63) != parity;
    if (!done)
        std::this_thread::yield();
    return done;
}
inline void fence_mbarrier_init() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void fence_proxy_async() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// The dynamic shared memory of the calling thread's CTA.
float4 *emu_smem();
#define loom_smem4 (emu_smem())
