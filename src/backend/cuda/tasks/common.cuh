// common.cuh - the small vocabulary every megakernel task uses: the tables
// the host hands over (same layout as src/backend/cuda/cuda.h), bf16
// conversions by bit operations, 16-byte streaming loads of weights, warp
// reductions, %globaltimer, and the counter wait / signal protocol.
//
// Self-contained device code: no CUDA toolkit header, so NVRTC needs no
// include path. The generated source defines LOOM_THREADS before this file.
//
// defines: loom_dtask, loom_dop, loom_kparams, loom_kerror, bf16 helpers,
//          ld_weight16, warp_sum, loom_wait_all, loom_signal
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short bf16raw;

#define LOOM_WARPS (LOOM_THREADS / 32)
#define LOOM_MAX_WAITS 4
#define LOOM_MAX_EOS 8

// ------------------------------------------------------------ host tables

struct loom_dtask {
    int op, tile, row_begin, row_end, group, split, n_waits, signal;
    int wait_counter[LOOM_MAX_WAITS];
    int wait_needed[LOOM_MAX_WAITS];
    int wait_offset[LOOM_MAX_WAITS];
};
static_assert(sizeof(loom_dtask) == 80, "loom_dtask layout (cuda.h)");

struct loom_dop {
    u64 x, y, w, norm, norm2, bias, resid, aux, kcache, vcache;
    int variant, rows, cols, n_tiles, split, arrive, pad[2];
};
static_assert(sizeof(loom_dop) == 112, "loom_dop layout (cuda.h)");

struct loom_kerror {
    int flag, sm, task, counter;
    u32 value, threshold;
    int step, pad;
};
static_assert(sizeof(loom_kerror) == 32, "loom_kerror layout (cuda.h)");

struct loom_kparams {
    u64 tasks, sm_offset, sm_tasks, ops, counters, tokens, page_table, rope_inv_freq;
    u64 error, stop_step, step_time, host_ring, timeout_ns;
    int n_steps, n_prompt;
    int eos[LOOM_MAX_EOS];
    int n_eos, ll_epoch;
};
static_assert(sizeof(loom_kparams) == 152, "loom_kparams layout (cuda.h)");

// Shared memory: one dynamic buffer. Its first 16 bytes hold the CTA's wait
// verdict (loom_wait_state); each task carves the rest, LOOM_SMEM on.
// (LOOM_EMU: the host emulator of dev/cuda_emu provides the buffer, per CTA,
// and the PTX helpers below.)
#ifndef LOOM_EMU
extern __shared__ float4 loom_smem4[];
#endif
// Layout of the dynamic shared memory (offsets from the generated source):
//   [0, 16)                 loom_wait_state (the CTA's wait verdict)
//   [16, 32)                the staging slots' mbarriers (LOOM_STAGE_BAR(s))
//   [32, 52)                the L2 look-ahead's state (LOOM_L2_AHEAD_STATE)
//   [64, 68)                a copy's bytes issued, handed over (LOOM_STAGE_HANDED)
//   [LOOM_TABLES_OFFSET, LOOM_SCRATCH_OFFSET) the tables, copied at kernel
//                           start: the op table (LOOM_OPS_BYTES), this SM's
//                           task records in list order (LOOM_TASKS_BYTES),
//                           their task ids, the page table
//                           (LOOM_PAGES_OFFSET, LOOM_N_PAGES entries; the
//                           host fills it before the launch). A task's
//                           descriptors and K/V slots are then shared-memory
//                           reads, not chains of dependent global loads
//                           (list -> task -> op, page -> row).
//   [LOOM_SCRATCH_OFFSET, LOOM_STAGE_OFFSET) task scratch, LOOM_SMEM on
//   [LOOM_STAGE_OFFSET, +LOOM_STAGE_SLOTS * LOOM_STAGE_BYTES) the weight
//                           staging slots
#define LOOM_SMEM ((float *)((char *)loom_smem4 + LOOM_SCRATCH_OFFSET))
#define LOOM_TABLES ((char *)loom_smem4 + LOOM_TABLES_OFFSET)
#define LOOM_SOPS ((const loom_dop *)LOOM_TABLES)
#define LOOM_STASKS ((const loom_dtask *)(LOOM_TABLES + LOOM_OPS_BYTES))
#define LOOM_SIDS ((const int *)(LOOM_TABLES + LOOM_OPS_BYTES + LOOM_TASKS_BYTES))
#define LOOM_SPAGES ((const int *)(LOOM_TABLES + LOOM_PAGES_OFFSET))

// The program-wide id of task record t (one of LOOM_STASKS).
__device__ __forceinline__ int loom_task_id(const loom_dtask *t)
{
    return LOOM_SIDS[t - LOOM_STASKS];
}

// Weight staging (sm_90, not the host emulator): the first rows of a linear
// task's tile - as many whole rows as a slot of LOOM_STAGE_BYTES holds - are
// copied into shared memory by the bulk copy engine (TMA), completing on the
// slot's mbarrier. Weights depend on nothing, so they stream while the SM
// would otherwise only wait; after its wait the task reads those rows from
// shared memory and the rest from global memory. With two slots
// (LOOM_STAGE_SLOTS) the copy for the next task on the SM's list is started
// before the current task waits, into the slot no task reads any more, so
// it streams through this task's wait and run. Elsewhere (sm_80) every row
// comes from global memory.
#if ((defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(LOOM_EMU)) ||            \
     defined(LOOM_EMU_STAGE)) &&                                                           \
    LOOM_STAGE_BYTES >= 16
#define LOOM_STAGE 1
#else
#define LOOM_STAGE 0
#endif
#ifndef LOOM_STAGE_SLOTS
#define LOOM_STAGE_SLOTS 1
#endif
#define LOOM_STAGE_BAR(s) ((u64 *)((char *)loom_smem4 + 16) + (s))
#define LOOM_STAGE_DATA(s) ((char *)loom_smem4 + LOOM_STAGE_OFFSET + (u64)(s) * LOOM_STAGE_BYTES)

// One copy into a slot: `rows` rows of task instance `tag` (step * n + k + 1;
// 0: none). src, bytes and issued are thread 0's (it issues the pieces);
// the rest every thread keeps alike.
struct stage_copy {
    const char *src;
    u32 bytes, issued;
    int tag, rows, slot;
};

// cur: the current task's copy; nxt: the next task's, started a task ahead
// (two slots). Scalars in structs that are swapped, never indexed by the
// slot: an indexed array would live in local memory.
struct stage_state {
    stage_copy cur, nxt;
    u32 parity;      // bit s: phase of slot s's mbarrier its next copy completes
    u32 pending;     // bit s: a copy into slot s started and not yet waited for
};

// The copies go out in pieces of LOOM_STAGE_CHUNK bytes, one more before
// each poll of a wait (the current task's first, then the next task's; the
// current task's rest once its wait is over, the next task's once a linear
// task has its x, or after a release): a poll's answer and a task's first
// reads queue behind the SM's copy data still in flight, so a whole tile
// requested at once delayed the wake-up by up to the copy's duration
// (docs/perf-notes.md v10, v11). 0: one piece. 16 KB with two slots, 32 KB
// with one (H100, perf-notes v22: 0.6B, two slots, 0.689 -> 0.674-0.680 ms
// with 16 KB, 0.684 with 8 KB, 0.704 with 64 KB; 1.7B and 8B, one slot,
// 0.5-1% slower with 16 KB).
#ifndef LOOM_STAGE_CHUNK
#define LOOM_STAGE_CHUNK (LOOM_STAGE_SLOTS > 1 ? 16384 : 32768)
#endif

// L2 look-ahead (LOOM_L2_AHEAD bytes; 0: off): while a linear task waits
// and the pieces of its copies are all out, thread 0 sends the weights that
// no copy covers - the current task's rows after its staged ones, then the
// tiles of the next linear tasks on the list, at most LOOM_L2_AHEAD_TASKS
// ahead (the next one's past the rows its copy will stage:
// LOOM_L2_AHEAD_SKIP_NEXT, megakernel.cuh) - to L2 by bulk prefetch, one
// piece of LOOM_L2_AHEAD_PIECE bytes per poll, never more than LOOM_L2_AHEAD
// bytes beyond the current task's staged rows. The pieces go out only while
// the SM waits, so they take the HBM time a wait would leave unused (at
// 1.7B, ~7 us a layer in which 92 SMs wait for attention). 16 KB pieces and
// no look-ahead while an attention waits: 8B 1.8-2.5% faster than 32 KB
// pieces at every wait, 1.7B the same (perf-notes v17). The state lives in
// shared memory (l2_ahead_state, thread 0's); l2_ahead_pump is defined in
// megakernel.cuh, after the task headers it reads (stage_rows, the tables).
#ifndef LOOM_L2_AHEAD
#define LOOM_L2_AHEAD 0
#endif
#ifndef LOOM_L2_AHEAD_TASKS
#define LOOM_L2_AHEAD_TASKS 3
#endif
#ifndef LOOM_L2_AHEAD_PIECE
#define LOOM_L2_AHEAD_PIECE 16384
#endif
struct l2_ahead_state {
    int n, n_steps;   // the SM's list length, the run's steps
    int cur;          // the current task instance (step * n + k)
    int inst;         // the look-ahead's frontier: task instance and
    u32 off;          // bytes of its tile sent
};
#define LOOM_L2_AHEAD_STATE ((l2_ahead_state *)((char *)loom_smem4 + 32))
__device__ __forceinline__ void l2_ahead_pump();

// ------------------------------------------------------------ numbers

__device__ __forceinline__ float bf16_to_f32(bf16raw h)
{
    return __uint_as_float(((u32)h) << 16);
}

// Round to nearest even; NaN stays NaN (as loom_f32_to_bf16 on the host).
__device__ __forceinline__ bf16raw f32_to_bf16(float f)
{
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (bf16raw)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16raw)(u >> 16);
}

// The low / high bf16 of a 32-bit word as floats.
__device__ __forceinline__ float bf16_lo(u32 w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(u32 w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ float loom_neg_inf() { return __uint_as_float(0xff800000u); }

// ------------------------------------------------------------ memory

#ifndef LOOM_EMU
// L2 policies (LOOM_L2_HINTS, default on): weights are read once per step
// and would evict what is read again soon - the KV cache, which attention
// reads every step, and the activations - so their loads and bulk copies
// say evict_first, and the K/V rows evict_last (docs/perf-notes.md v12).
#ifndef LOOM_L2_HINTS
#define LOOM_L2_HINTS 1
#endif
__device__ __forceinline__ u64 l2_evict_first()
{
    u64 pol;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    return pol;
}

__device__ __forceinline__ u64 l2_evict_last()
{
    u64 pol;
    asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(pol));
    return pol;
}

#if LOOM_L2_HINTS
#define LOOM_L2_HINT ".L2::cache_hint"
#define LOOM_POL_ARG(n) ", %" #n
#define LOOM_POL_FIRST , "l"(l2_evict_first())
#define LOOM_POL_LAST , "l"(l2_evict_last())
#else
#define LOOM_L2_HINT ""
#define LOOM_POL_ARG(n) ""
#define LOOM_POL_FIRST
#define LOOM_POL_LAST
#endif

// 16 bytes of weights: read-only for the whole kernel, streamed once, so
// through the non-coherent path without allocating in L1.
// LOOM_WEIGHTS_CG (experiment for the open step 0-1 race, docs/perf-notes.md):
// weights through L2 only, never the L1/texture path.
#if defined(LOOM_WEIGHTS_CG)
#define LOOM_LD_WEIGHT "ld.global.cg" LOOM_L2_HINT ".v4.u32 {%0, %1, %2, %3}, [%4]" LOOM_POL_ARG(5) ";"
#else
#define LOOM_LD_WEIGHT \
    "ld.global.nc.L1::no_allocate" LOOM_L2_HINT ".v4.u32 {%0, %1, %2, %3}, [%4]" LOOM_POL_ARG(5) ";"
#endif
__device__ __forceinline__ uint4 ld_weight16(const void *p)
{
    uint4 v;
    asm volatile(LOOM_LD_WEIGHT
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p) LOOM_POL_FIRST);
    return v;
}

// A K or V row's 4 or 8 bytes (through L2: written this launch by other
// SMs), and a bf16 into the caches, kept in L2 (evict_last).
__device__ __forceinline__ u32 ld_kv4(const void *p)
{
    u32 v;
    asm volatile("ld.global.cg" LOOM_L2_HINT ".u32 %0, [%1]" LOOM_POL_ARG(2) ";"
                 : "=r"(v) : "l"(p) LOOM_POL_LAST);
    return v;
}

__device__ __forceinline__ uint2 ld_kv8(const void *p)
{
    uint2 v;
    asm volatile("ld.global.cg" LOOM_L2_HINT ".v2.u32 {%0, %1}, [%2]" LOOM_POL_ARG(3) ";"
                 : "=r"(v.x), "=r"(v.y) : "l"(p) LOOM_POL_LAST);
    return v;
}

__device__ __forceinline__ void st_kv(bf16raw *p, bf16raw v)
{
    asm volatile("st.global" LOOM_L2_HINT ".b16 [%0], %1" LOOM_POL_ARG(2) ";"
                 ::"l"(p), "h"(v) LOOM_POL_LAST : "memory");
}

// The same without `volatile`: the compiler may schedule it (hoist the next
// group's loads above this group's FMAs) - for the streaming loop. The
// preload before a wait keeps the volatile one, which stays where it is.
__device__ __forceinline__ uint4 ld_weight16_sched(const void *p)
{
#if defined(LOOM_VOLATILE_STREAM)
    return ld_weight16(p);
#else
    uint4 v;
    asm(LOOM_LD_WEIGHT
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p) LOOM_POL_FIRST);
    return v;
#endif
}

// Hint: bring one 128-byte line of weights into L2 (no register result, so
// it can be issued before a task's inputs are ready).
__device__ __forceinline__ void prefetch_l2(const void *p)
{
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

__device__ __forceinline__ u64 globaltimer()
{
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ u32 ld_acquire(const u32 *p)
{
    u32 v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void red_release_add(u32 *p, u32 v)
{
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ void red_relaxed_add(u32 *p, u32 v)
{
    asm volatile("red.relaxed.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// The value before the add.
__device__ __forceinline__ u32 atom_acq_rel_add(u32 *p, u32 v)
{
    u32 old;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;"
                 : "=r"(old)
                 : "l"(p), "r"(v)
                 : "memory");
    return old;
}

#endif // LOOM_EMU

__device__ __forceinline__ int ld_volatile(const int *p)
{
    return *(const volatile int *)p;
}

#ifndef LOOM_EMU   // (LOOM_EMU: emu.h has ld_shared16; smem_addr is staging's only)
__device__ __forceinline__ u32 smem_addr(const void *p)
{
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}

// 16 bytes of staged weights (shared memory). volatile: never hoisted above
// the mbarrier wait that says they have landed.
__device__ __forceinline__ uint4 ld_shared16(const void *p)
{
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(smem_addr(p)));
    return v;
}
#endif

// The staging protocol: stage_init at kernel start; stage_start for the
// current and the next task before the current one waits (megakernel.cuh
// stage_ahead); stage_pump / stage_pump_all by thread 0 to issue the pieces
// (during and after the wait); stage_wait by every thread before the staged
// rows are read (linear.cuh); stage_drain at kernel exit. Without staging
// (sm_80) they do nothing, and stage_rows is 0.
#if LOOM_STAGE && !defined(LOOM_EMU)   // (LOOM_EMU_STAGE: emu.h has these)
__device__ __forceinline__ void mbar_init(u64 *bar, u32 count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count)
                 : "memory");
}

// One thread: the arrival on bar (its count is 1) that expects `bytes` of
// bulk copies before the phase completes.
__device__ __forceinline__ void mbar_expect(u64 *bar, u32 bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}

// Copy `bytes` (a multiple of 16, both addresses 16-byte aligned) global ->
// shared with the bulk copy engine, completing on bar.
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, u32 bytes, u64 *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes" LOOM_L2_HINT
                 " [%0], [%1], %2, [%3]" LOOM_POL_ARG(4) ";"
                 ::"r"(smem_addr(dst)), "l"(src), "r"(bytes), "r"(smem_addr(bar)) LOOM_POL_FIRST
                 : "memory");
}

// Send `bytes` (a multiple of 16, 16-byte aligned) toward L2: no
// destination, no completion to wait for.
__device__ __forceinline__ void bulk_prefetch_l2(const void *src, u32 bytes)
{
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ bool mbar_test(u64 *bar, u32 parity)
{
    u32 ok;
    asm volatile("{\n\t.reg .pred p;\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                 "selp.u32 %0, 1, 0, p;\n\t}"
                 : "=r"(ok) : "r"(smem_addr(bar)), "r"(parity) : "memory");
    return ok != 0;
}

// Proxy fences of the staging protocol (stage_init, stage_start).
__device__ __forceinline__ void fence_mbarrier_init()
{
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
#endif
#if LOOM_STAGE
// Spins until the barrier's phase `parity` completed or timeout_ns passed.
__device__ __forceinline__ bool mbar_wait_bounded(u64 *bar, u32 parity, u64 timeout_ns)
{
    u64 t0 = 0;
    for (int spin = 0; !mbar_test(bar, parity); spin++) {
        if ((spin & 63) != 63)
            continue;
        u64 now = globaltimer();
        if (t0 == 0)
            t0 = now;
        else if (now - t0 > timeout_ns)
            return false;
    }
    return true;
}

__device__ __forceinline__ void stage_init()
{
    if (threadIdx.x == 0) {
        for (int s = 0; s < LOOM_STAGE_SLOTS; s++)
            mbar_init(LOOM_STAGE_BAR(s), 1);
        fence_mbarrier_init();
    }
    __syncthreads();
}

// Thread 0: the next piece of copy c, if any is left; false when none was.
__device__ __forceinline__ bool stage_pump_one(stage_copy &c)
{
    if (c.issued >= c.bytes)
        return false;
    u32 n = c.bytes - c.issued;
    if (LOOM_STAGE_CHUNK > 0 && n > (u32)LOOM_STAGE_CHUNK)
        n = LOOM_STAGE_CHUNK;
    bulk_copy(LOOM_STAGE_DATA(c.slot) + c.issued, c.src + c.issued, n, LOOM_STAGE_BAR(c.slot));
    c.issued += n;
    return true;
}

// Thread 0, before a poll: one piece, the current task's before the next's,
// and after both an L2 look-ahead piece.
__device__ __forceinline__ void stage_pump(stage_state &sg)
{
    if (!stage_pump_one(sg.cur) && !stage_pump_one(sg.nxt) && LOOM_L2_AHEAD > 0)
        l2_ahead_pump();
}

// Thread 0: every piece of copy c not yet issued.
__device__ __forceinline__ void stage_pump_all(stage_copy &c)
{
    while (stage_pump_one(c)) {
    }
}

// Handing copy c's next pieces from thread 0 to thread `to`: thread 0 notes
// how many bytes it issued (stage_hand_note, before a CTA barrier); after the
// barrier thread `to` issues `pieces` more (0: all that are left) and thread
// 0 counts them as issued (stage_hand_over): both know which those are, as
// every piece but the last is LOOM_STAGE_CHUNK bytes. Thread 0 issues the
// rest later (stage_pump_all after the task's release). A task that gives up
// between the two leaves thread 0 the pieces, for stage_drain.
#define LOOM_STAGE_HANDED ((u32 *)((char *)loom_smem4 + 64))
__device__ __forceinline__ void stage_hand_note(const stage_copy &c)
{
    if (threadIdx.x == 0)
        *LOOM_STAGE_HANDED = c.issued;
}

__device__ __forceinline__ void stage_hand_over(stage_copy &c, int to, int pieces = 0)
{
    const bool all = pieces <= 0 || LOOM_STAGE_CHUNK <= 0;
    if (threadIdx.x == 0) {
        const u32 n = c.issued + (u32)pieces * (u32)LOOM_STAGE_CHUNK;
        c.issued = all || n > c.bytes ? c.bytes : n;
    }
    if ((int)threadIdx.x == to) {
        c.issued = *LOOM_STAGE_HANDED;
        for (int k = 0; (all || k < pieces) && stage_pump_one(c); k++) {
        }
    }
}

// Starts copy c: `rows` rows of `cols` columns from src into slot `slot` for
// task instance `tag`. The whole phase is expected on the slot's barrier at
// once (thread 0), the pieces follow (stage_pump). The copy's writes (async
// proxy) come after the slot's last reads by an earlier task (generic
// proxy): the proxy fence orders them.
__device__ __forceinline__ void stage_start(stage_state &sg, stage_copy &c, int slot, int tag,
                                            const void *src, int rows, int cols)
{
    c.src = (const char *)src;
    c.bytes = (u32)rows * (u32)cols * 2u;
    c.issued = 0;
    c.tag = tag;
    c.rows = rows;
    c.slot = slot;
    if (rows <= 0)
        return;
    if (threadIdx.x == 0) {
        fence_proxy_async();
        mbar_expect(LOOM_STAGE_BAR(slot), c.bytes);
    }
    sg.pending |= 1u << slot;
}

// No bulk copy may still be writing into the shared memory of a CTA that is
// gone (the run stopped or a wait gave up with copies in flight): every
// piece issued, every started phase waited for.
__device__ __forceinline__ void stage_drain(const loom_kparams &p, stage_state &sg)
{
    if (threadIdx.x != 0)
        return;
    stage_pump_all(sg.cur);
    stage_pump_all(sg.nxt);
    for (int s = 0; s < LOOM_STAGE_SLOTS; s++)
        if (sg.pending >> s & 1u)
            mbar_wait_bounded(LOOM_STAGE_BAR(s), sg.parity >> s & 1u, p.timeout_ns);
}
#else
__device__ __forceinline__ void stage_init() {}
__device__ __forceinline__ void stage_pump(stage_state &) {}
__device__ __forceinline__ void stage_pump_all(stage_copy &) {}
__device__ __forceinline__ void stage_hand_note(const stage_copy &) {}
__device__ __forceinline__ void stage_hand_over(stage_copy &, int, int = 0) {}
__device__ __forceinline__ void stage_start(stage_state &, stage_copy &c, int slot, int tag,
                                            const void *, int, int)
{
    c.tag = tag;
    c.rows = 0;
    c.slot = slot;
}
__device__ __forceinline__ void stage_drain(const loom_kparams &, stage_state &) {}
#endif // LOOM_STAGE

// Activations written by other SMs in this launch are read through L2 only
// (ld.global.cg): L1 is not coherent across SMs, and a line an SM cached in an
// earlier step (the schedule is static: the same SM reads the same tensor
// every step) would be stale. With every such read here, the counter hop
// needs no L1-invalidating fence.
#ifdef LOOM_EMU
__device__ __forceinline__ float ldcg(const float *p) { return *(const volatile float *)p; }
__device__ __forceinline__ float4 ldcg4(const float4 *p) { return *p; }
__device__ __forceinline__ int ldcg_i32(const int *p) { return *(const volatile int *)p; }
__device__ __forceinline__ bf16raw ldcg_bf16(const bf16raw *p) { return *p; }
#else
__device__ __forceinline__ float ldcg(const float *p)
{
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

__device__ __forceinline__ float4 ldcg4(const float4 *p)
{
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
    return v;
}

__device__ __forceinline__ int ldcg_i32(const int *p)
{
    int v;
    asm volatile("ld.global.cg.s32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}

__device__ __forceinline__ bf16raw ldcg_bf16(const bf16raw *p)
{
    unsigned short v;
    asm volatile("ld.global.cg.u16 %0, [%1];" : "=h"(v) : "l"(p));
    return v;
}
#endif

// ------------------------------------------------------------ fixed point

// The fused MLP's residual stream (graph.h "activations"): I64, the value
// times 2^32; LOOM_FIX_LIMIT (generated, graph.h's) bounds each term, NaN
// goes to -LIMIT. The conversions are the CPU backend's bit for bit: the
// scaling by a power of two is exact, then one rounding to nearest even.
__device__ __forceinline__ long long fix_from_f32(float v)
{
    v = v > -LOOM_FIX_LIMIT ? v : -LOOM_FIX_LIMIT;
    v = v < LOOM_FIX_LIMIT ? v : LOOM_FIX_LIMIT;
    return __float2ll_rn(v * 4294967296.0f);
}

__device__ __forceinline__ float fix_to_f32(long long a)
{
    return __ll2float_rn(a) * (1.0f / 4294967296.0f);
}

#ifdef LOOM_EMU
__device__ __forceinline__ long long ldcg_s64(const long long *p)
{
    return *(const volatile long long *)p;
}
__device__ __forceinline__ void red_add_s64(long long *p, long long v)
{
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
#else
__device__ __forceinline__ long long ldcg_s64(const long long *p)
{
    long long v;
    asm volatile("ld.global.cg.s64 %0, [%1];" : "=l"(v) : "l"(p));
    return v;
}

// A term of an ACCUM sum: a relaxed atomic add (the task's signal releases it).
__device__ __forceinline__ void red_add_s64(long long *p, long long v)
{
    asm volatile("red.relaxed.gpu.global.add.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
#endif

// Elements 4i .. 4i + 3 of a fixed-point activation as fp32 (through L2, as ldcg4).
__device__ __forceinline__ float4 ldcg_fix4(const long long *x, int i)
{
    return make_float4(fix_to_f32(ldcg_s64(x + 4 * i)), fix_to_f32(ldcg_s64(x + 4 * i + 1)),
                       fix_to_f32(ldcg_s64(x + 4 * i + 2)), fix_to_f32(ldcg_s64(x + 4 * i + 3)));
}

// ------------------------------------------------------------ input check

// LOOM_XCHECK (debug build, LOOM_CUDA_XCHECK=1 at code generation; the host
// side is src/backend/cuda/xcheck.c): for the first loom_xcheck.steps steps
// every task records, in its slot of XC_WORDS words, u32 sums of the bit
// patterns of what it read and wrote. Every tile of a LINEAR op reads the
// same input vector, so their sums must be equal; an ATTENTION tile's sums
// of the qkv rows it read must equal the sums the qkv tiles wrote. A stale
// or early read breaks one of the two, and the host names the tile, step,
// SM and segment.
//   slot[0..7]   LINEAR: input x in 8 equal segments
//   slot[8]      LINEAR: the values it stored
//   slot[9, 10]  low 32 bits of %globaltimer when the waits were met / at the end
//   slot[11]     SM + 1
//   slot[12..61] ATTENTION: its qkv inputs per head and 32 rows
//   slot[62, 63] ATTENTION split 0: the K and V cache rows it stored
//   ysum[(step * n_ops + op) * ysegs + i / 32]: LINEAR: output element i
#ifndef LOOM_XCHECK
#define LOOM_XCHECK 0
#endif
#define XC_WORDS 64
#define XC_ATTN 12
#define XC_KV 62

struct loom_xcheck_dev {
    u64 slots, ysum;
    int steps, n_tasks, n_ops, ysegs;
};

#if LOOM_XCHECK
__device__ loom_xcheck_dev loom_xcheck;
#endif

// The task's record slot of this step, nullptr when not recording (always
// without LOOM_XCHECK: every hook below then folds away).
__device__ __forceinline__ u32 *xc_slot(const loom_dtask *t, int step)
{
#if LOOM_XCHECK
    if (loom_xcheck.slots != 0 && step < loom_xcheck.steps)
        return (u32 *)loom_xcheck.slots +
               ((u64)step * loom_xcheck.n_tasks + (u64)loom_task_id(t)) * XC_WORDS;
#endif
    (void)t;
    (void)step;
    return nullptr;
}

__device__ __forceinline__ u32 xc_bits4(float4 v)
{
    return __float_as_uint(v.x) + __float_as_uint(v.y) + __float_as_uint(v.z) +
           __float_as_uint(v.w);
}

// Adds bits to word w of the slot.
__device__ __forceinline__ void xc_add(u32 *xc, int w, u32 bits)
{
    if (xc)
        atomicAdd(xc + w, bits);
}

// A LINEAR tile stored y[i] = v.
__device__ __forceinline__ void xc_out(u32 *xc, const loom_dtask *t, int step, int i, float v)
{
#if LOOM_XCHECK
    if (!xc)
        return;
    v = ll_seen(v);
    atomicAdd(xc + 8, __float_as_uint(v));
    atomicAdd((u32 *)loom_xcheck.ysum +
                  ((u64)step * loom_xcheck.n_ops + t->op) * loom_xcheck.ysegs + i / 32,
              __float_as_uint(v));
#endif
    (void)xc;
    (void)t;
    (void)step;
    (void)i;
    (void)v;
}

// Thread 0 stamps the slot: 9 when the waits were met (with the SM), 10 at
// the end (after a barrier: every thread's work done).
__device__ __forceinline__ void xc_begin(u32 *xc)
{
    if (xc && threadIdx.x == 0) {
        xc[9] = (u32)globaltimer();
        xc[11] = blockIdx.x + 1;
    }
}

__device__ __forceinline__ void xc_end(u32 *xc)
{
    if (xc) {
        __syncthreads();
        if (threadIdx.x == 0)
            xc[10] = (u32)globaltimer();
    }
}

// ------------------------------------------------------------ reductions

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// p ? a : b as a register select: written as `?:` on array elements, the
// compiler may turn it into a computed index, which puts the array in local
// memory.
#ifndef LOOM_EMU   // (LOOM_EMU: emu.h)
__device__ __forceinline__ float select_f32(bool p, float a, float b)
{
    float r;
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %3, 0;\n\tselp.f32 %0, %1, %2, q;\n\t}"
        : "=f"(r) : "f"(a), "f"(b), "r"((u32)p));
    return r;
}
#endif

// Warp sums of N values at once (N a power of two, <= 32): every lane ends
// with all N sums in v. Halving: at offset 16 a lane keeps half the values
// (the upper half in lanes with bit 4 set) and adds its partner's; after
// log2 N such steps each lane holds one value's partial (value index = the
// lane's top log2 N bits), the remaining offsets finish it, and N shuffles
// broadcast. N - 1 + (5 - log2 N) + N shuffles instead of 5 N; the additions
// pair lanes in warp_sum's order, so each sum is bitwise warp_sum's.
__host__ __device__ constexpr int loom_log2(int n)
{
    return n <= 1 ? 0 : 1 + loom_log2(n / 2);
}

// Halving level K of warp_sum_n (templates: each level's trip count is a
// constant, so v stays in registers; a loop over levels made the compiler
// index v in local memory).
template <int N, int K>
__device__ __forceinline__ void warp_sum_n_level(float (&v)[N], int lane)
{
    if constexpr (K < loom_log2(N)) {
        constexpr int half = N >> (K + 1), o = 16 >> K;
        const bool upper = (lane & o) != 0;
#pragma unroll
        for (int i = 0; i < half; i++) {
            const float send = select_f32(upper, v[i], v[i + half]);
            const float keep = select_f32(upper, v[i + half], v[i]);
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
        warp_sum_n_level<N, K + 1>(v, lane);
    }
}

template <int N>
__device__ __forceinline__ void warp_sum_n(float (&v)[N])
{
    static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "warp_sum_n: N a power of 2 <= 32");
    constexpr int L = loom_log2(N);
    const int lane = threadIdx.x & 31;
    warp_sum_n_level<N, 0>(v, lane);
#pragma unroll
    for (int k = L; k < 5; k++)
        v[0] += __shfl_xor_sync(0xffffffffu, v[0], 16 >> k);
    const float mine = v[0];
#pragma unroll
    for (int i = 0; i < N; i++)
        v[i] = __shfl_sync(0xffffffffu, mine, i << (5 - L));
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// (value, row) pair order of ARGMAX: larger value wins, ties and NaN: the
// lowest row wins and NaN is never the max.
__device__ __forceinline__ bool argmax_better(float v, float r, float bv, float br)
{
    if (v != v)
        return false;
    if (bv != bv)
        return true;
    return v > bv || (v == bv && r < br);
}

// ------------------------------------------------------------ counters

enum { LOOM_WAIT_OK = 0, LOOM_WAIT_EXIT = 1 };

// Shared state of the CTA's wait: thread 0 decides, everyone follows.
// `failed`: a task gave up inside its run (an input activation that never
// came, tasks read it after loom_signal's barrier); set once, never cleared.
// `no_signal`: the task is not the last of its group to arrive (program.h
// arrive; attention.cuh attn_arrive), or it signalled already
// (loom_signal_now): thread 0 sets it, loom_signal clears it.
struct loom_wait_state {
    int verdict;
    int failed;
    int no_signal;
};

// Polling a counter: acquire loads back to back; LOOM_POLL_NS > 0 sleeps
// that long after the first miss, doubling up to 128 ns (on the H100 the
// tight spin was 0.3% faster; relaxed loads plus one acquire fence were 1-7%
// slower: docs/perf-notes.md v7).
#ifndef LOOM_POLL_NS
#define LOOM_POLL_NS 0
#endif
// A spin looks at the abort flag and the stop step once it has lasted this
// long (ns).
#ifndef LOOM_POLL_LOOK_NS
#define LOOM_POLL_LOOK_NS 20000
#endif

// Thread 0 spins until every wait of t is satisfied for `step`, with an
// acquire load and __nanosleep backoff. Gives up (LOOM_WAIT_EXIT) when the
// run is aborted, when this step is past the stop step (an earlier ARGMAX
// ended generation), or on timeout, which it records in the error record
// (first timeout wins) before raising the abort flag every CTA polls.
//
// The wake-up path - a counter reached - costs nothing beyond the acquire
// load that saw it: the abort flag and the stop step (each a round trip to
// L2) are looked at only by a spin that has lasted LOOM_POLL_LOOK_NS, and
// after the waits only by the tasks that wait on the previous step (embed).
// That is enough: every task of step s + 1 depends, through embed, on
// ARGMAX of step s, which stores the stop step before its release; embed's
// tasks see it and exit, so nothing of a stopped step runs. An aborted run
// (another CTA timed out) lets the tasks whose inputs are there finish; the
// first that has to spin sees the flag.
__device__ __forceinline__ int loom_wait_thread0(const loom_kparams &p, const loom_dtask *t, int task_id,
                                 int step, stage_state &sg)
{
    u32 *counters = (u32 *)p.counters;
    loom_kerror *err = (loom_kerror *)p.error;
    const int *stop = (const int *)p.stop_step;
    bool look = false;   // look at the stop step and abort flag at the end

    for (int i = 0; i < t->n_waits; i++) {
        look |= t->wait_offset[i] < 0;
        long long thr = (long long)t->wait_needed[i] * (step + 1 + t->wait_offset[i]);
        if (thr <= 0)
            continue;
        const u32 *c = counters + t->wait_counter[i];
        u32 v = ld_acquire(c);
        if ((long long)v >= thr)
            continue;
        u64 t0 = globaltimer();
        u32 ns = LOOM_POLL_NS;
        for (int spin = 0;; spin++) {
            if (ns) {
                __nanosleep(ns);
                if (ns < 128)
                    ns <<= 1;
            }
            stage_pump(sg);   // the next piece of the task's weights
            v = ld_acquire(c);
            if ((long long)v >= thr)
                break;
            // The abort flag and the stop step: each a round trip to L2 that
            // would delay the wake-up, so only in long spins (a hop takes a
            // few us; a stopped or aborted run spins until it looks).
            u64 now = globaltimer();
            if ((spin & 15) == 15 && now - t0 > LOOM_POLL_LOOK_NS &&
                (ld_volatile(&err->flag) != 0 || step >= ld_volatile(stop)))
                return LOOM_WAIT_EXIT;
            if (now - t0 > p.timeout_ns) {
                if (atomicCAS(&err->flag, 0, -1) == 0) {
                    err->sm = blockIdx.x;
                    err->task = task_id;
                    err->counter = t->wait_counter[i];
                    err->value = v;
                    err->threshold = (u32)thr;
                    err->step = step;
                    __threadfence();
                    atomicExch(&err->flag, 1);
                }
                return LOOM_WAIT_EXIT;
            }
        }
    }
    // Waits done. The acquires and the CTA barrier after this function keep
    // every thread's later loads behind the producers' releases; those loads
    // go through L2 (ldcg), so no stale L1 line can answer them.
#if defined(LOOM_WAIT_FENCE)
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
#endif
    if (look && (step >= ld_volatile(stop) || ld_volatile(&err->flag) != 0))
        return LOOM_WAIT_EXIT;
    return LOOM_WAIT_OK;
}

__device__ __forceinline__ int loom_wait_all(const loom_kparams &p, const loom_dtask *t,
                                             int task_id, int step, loom_wait_state *ws,
                                             stage_state &sg)
{
    if (threadIdx.x == 0) {
        ws->verdict = loom_wait_thread0(p, t, task_id, step, sg);
        if (LOOM_LL != 2)   // the rest of this task's rows (LL 2: once it has its x, linear.cuh)
            stage_pump_all(sg.cur);
    }
    __syncthreads();
    int v = ws->verdict;
    __syncthreads();
    return v;
}

#if LOOM_STAGE
// Every thread: wait until the staged rows have landed; a CTA barrier. Bounded; the verdict
// is the CTA's (a vote), so no thread is left behind at a barrier. On
// timeout the error record names the task and counter -2 (staging), and the
// CTA's wait verdict says exit.
__device__ __forceinline__ bool stage_wait(const loom_kparams &p, stage_state &sg, int task_id,
                                           int step)
{
    const int s = sg.cur.slot;
    bool ok = mbar_wait_bounded(LOOM_STAGE_BAR(s), sg.parity >> s & 1u, p.timeout_ns);
    sg.parity ^= 1u << s;
    sg.pending &= ~(1u << s);
    if (!__syncthreads_or(!ok))
        return true;
    if (threadIdx.x == 0) {
        loom_kerror *err = (loom_kerror *)p.error;
        if (atomicCAS(&err->flag, 0, -1) == 0) {
            err->sm = blockIdx.x;
            err->task = task_id;
            err->counter = -2;
            err->value = 0;
            err->threshold = 0;
            err->step = step;
            __threadfence();
            atomicExch(&err->flag, 1);
        }
        ((loom_wait_state *)loom_smem4)->verdict = LOOM_WAIT_EXIT;
    }
    __syncthreads();
    return false;
}
#else
__device__ __forceinline__ bool stage_wait(const loom_kparams &, stage_state &, int, int)
{
    __syncthreads();
    return true;
}
#endif

// ------------------------------------------------------------ activations

// LL activations (LOOM_LL, from the generated source; NCCL's "LL" protocol):
// an activation one task hands to another is a buffer of LL words {value,
// tag} (LOOM_LL_WORD below), tag = ll_tag(step), each written by one store,
// which is single-copy atomic: a reader that sees this step's tag sees the
// value, and polls again the words that do not carry it yet. So the
// producer needs no release (a CTA barrier, then MEMBAR.GPU, which waits
// until every store of the SM in flight is acknowledged, then the counter
// add). In modes 1-3 (LOOM_LL_ALL) every activation - the layer input x,
// qkv, attention's output or partials, mid, act - is LL words:
//   LOOM_LL 1: the counter stays, as a relaxed add; the consumer's thread 0
//              polls it as before (one word, little L2 traffic), then every
//              thread reads its x as LL words, which are there but for the
//              rare word the relaxed add overtook;
//   LOOM_LL 2: no counter: every thread polls its own input words from the
//              start (no poll round trip before the loads of x, but every
//              waiting SM polls the producers' lines).
//   LOOM_LL 3: LL words, released counters (experiments: the words' cost).
//   LOOM_LL 4: only attention's output (the y an o_proj reads) is LL words,
//              as in mode 2; every other hop keeps its released counter.
// The host drops or relaxes the waits and signals (loom_cuda_task_table).
// The host's default is mode 4 (codegen.c loom_cuda_ll_mode): on the H100
// it took 2.5-3.5% off 0.6B; in modes 1-3 what the releases save is lost
// elsewhere (docs/perf-notes.md v13, v20).
// Counters still order what is not an LL word: ARGMAX waits on the
// lm_head tiles (logits, partials) and embed on ARGMAX of the step before
// (the token). In modes 1-3 the K/V rows split 0 of attention stores are
// published by its fence before its LL outputs (attention.cuh); in mode 4
// by the released counters of the later tasks on its SM.
#ifndef LOOM_LL
#define LOOM_LL 0
#endif
#define LOOM_LL_ALL (LOOM_LL >= 1 && LOOM_LL <= 3)
#define LOOM_SIGNAL_RELAXED (1 << 30)   // in loom_dtask.signal (cuda.h)
// A thread polls all its missing words at once while they are at most this
// many, else only its first missing one (the L2 traffic of 132 waiting SMs).
#ifndef LOOM_LL_POLL
#define LOOM_LL_POLL 4
#endif

// LOOM_LL_WORD: the bytes of an LL word.
//   8: {value, tag}, each 32 bits, one 64-bit store; the tag is the run's
//      epoch (bits 24-31, never 0) and step + 1: words of an earlier run
//      never match, and the host zeroes the buffers when the epoch wraps.
//   4: the float itself, its two lowest mantissa bits the tag (step % 3 + 1;
//      the host zeroes the buffers before every run, so 0 never matches): a
//      word is as wide as the plain float, and a reader sees the value with
//      those two bits cleared (at most 3 units in the last place of its
//      24-bit mantissa off; an infinity stays one). A word is read in the
//      step it is written for or the one before (every buffer is written
//      once a step, and the next step's writer comes after every reader of
//      this one), and three tags tell those apart from the zeroed buffer.
#ifndef LOOM_LL_WORD
#define LOOM_LL_WORD 4
#endif
constexpr int LL_E = 16 / LOOM_LL_WORD;   // elements per 16-byte load

__device__ __forceinline__ u32 ll_tag(const loom_kparams &p, int step)
{
    if (LOOM_LL_WORD == 4)
        return (u32)(step % 3) + 1u;
    return ((u32)p.ll_epoch << 24) | (u32)(step + 1);
}

__device__ __forceinline__ u32 ll_word_tag(u64 w)
{
    return LOOM_LL_WORD == 4 ? (u32)w & 3u : (u32)(w >> 32);
}

__device__ __forceinline__ float ll_word_value(u64 w)
{
    return __uint_as_float(LOOM_LL_WORD == 4 ? (u32)w & ~3u : (u32)w);
}

// The value a reader of an LL activation (st_act) of v sees (LOOM_XCHECK's
// sums).
__device__ __forceinline__ float ll_seen(float v)
{
    return LOOM_LL_ALL && LOOM_LL_WORD == 4 ? __uint_as_float(__float_as_uint(v) & ~3u) : v;
}

#ifndef LOOM_EMU   // (LOOM_EMU: emu.h)
// The words' loads and stores: relaxed, gpu scope; a 16-byte load is two
// 8-byte or four 4-byte accesses, each single-copy atomic.
// LOOM_LL_ST_WEAK (experiment): weak stores.
#if defined(LOOM_LL_ST_WEAK)
#define LOOM_ST_LL "st.global"
#else
#define LOOM_ST_LL "st.relaxed.gpu.global"
#endif
__device__ __forceinline__ void st_ll_u64(u64 *p, u64 w)
{
    asm volatile(LOOM_ST_LL ".u64 [%0], %1;" ::"l"(p), "l"(w) : "memory");
}

__device__ __forceinline__ void st_ll_u32(u32 *p, u32 w)
{
    asm volatile(LOOM_ST_LL ".u32 [%0], %1;" ::"l"(p), "r"(w) : "memory");
}

// LOOM_LL_LD_CG (experiment): weak loads through L2 instead.
#if defined(LOOM_LL_LD_CG)
#define LOOM_LD_LL "ld.global.cg"
#else
#define LOOM_LD_LL "ld.relaxed.gpu.global"
#endif
__device__ __forceinline__ u64 ld_ll_u64(const u64 *p)
{
    u64 w;
    asm volatile(LOOM_LD_LL ".u64 %0, [%1];" : "=l"(w) : "l"(p));
    return w;
}

__device__ __forceinline__ u32 ld_ll_u32(const u32 *p)
{
    u32 w;
    asm volatile(LOOM_LD_LL ".u32 %0, [%1];" : "=r"(w) : "l"(p));
    return w;
}

__device__ __forceinline__ void ld_ll_v2(const void *p, u64 &a, u64 &b)
{
    asm volatile(LOOM_LD_LL ".v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p));
}

__device__ __forceinline__ void ld_ll_v4(const void *p, u32 (&w)[4])
{
    asm volatile(LOOM_LD_LL ".v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3]) : "l"(p));
}
#endif

// Element i of LL buffer y: store v with the tag; load the raw word.
__device__ __forceinline__ void st_ll(u64 y, u64 i, float v, u32 tag)
{
    if (LOOM_LL_WORD == 4)
        st_ll_u32((u32 *)y + i, (__float_as_uint(v) & ~3u) | tag);
    else
        st_ll_u64((u64 *)y + i, ((u64)tag << 32) | (u64)__float_as_uint(v));
}

__device__ __forceinline__ u64 ld_ll(u64 x, u64 i)
{
    return LOOM_LL_WORD == 4 ? (u64)ld_ll_u32((const u32 *)x + i) : ld_ll_u64((const u64 *)x + i);
}

// Elements LL_E * c .. LL_E * c + LL_E - 1 of LL buffer x, one 16-byte load:
// their values into v; true when every word carries tag.
__device__ __forceinline__ bool ld_ll16(u64 x, int c, u32 tag, float (&v)[LL_E])
{
    const char *p = (const char *)x + 16 * (u64)c;
    if constexpr (LOOM_LL_WORD == 4) {
        u32 w[4];
        ld_ll_v4(p, w);
        u32 bad = 0;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            bad |= w[e] ^ tag;
            v[e] = ll_word_value(w[e]);
        }
        return (bad & 3u) == 0;
    } else {
        u64 a, b;
        ld_ll_v2(p, a, b);
        v[0] = ll_word_value(a);
        v[1] = ll_word_value(b);
        return ll_word_tag(a) == tag && ll_word_tag(b) == tag;
    }
}

// Element i of an activation y: an LL word (LOOM_LL_ALL), or a float.
__device__ __forceinline__ void st_act(u64 y, u64 i, float v, u32 tag)
{
    if (LOOM_LL_ALL)
        st_ll(y, i, v, tag);
    else
        ((float *)y)[i] = v;
}

// Element i of attention's output: an LL word in every LL mode.
__device__ __forceinline__ void st_act_y(u64 y, u64 i, float v, u32 tag)
{
    if (LOOM_LL)
        st_ll(y, i, v, tag);
    else
        ((float *)y)[i] = v;
}

// A thread's poll of its input words: who it is for the error record, and
// how long it has spun.
struct ll_wait {
    u32 tag;
    int task, step, input;   // input: 0 x, 1 resid (the error record's threshold)
    stage_state *sg;         // thread 0 issues a weight piece per poll (or nullptr)
    u64 t0;
    int polls;
};

__device__ __forceinline__ ll_wait ll_begin(const loom_kparams &p, const loom_dtask *t,
                                            int step, stage_state *sg, int input)
{
    return ll_wait{ll_tag(p, step), loom_task_id(t), step, input, sg, 0ull, 0};
}

// The record of a read that timed out: counter -3, value = the element.
// (Scalars: a reference to the caller's ll_wait would put it, and the
// staging state it points to, in local memory. Inline: a call inside the
// polling loop makes the ABI save registers around it - 8B's kernel
// spilled on sm_80.)
__device__ __forceinline__ void ll_timeout(u64 error, int task, int step, int input, u32 elem)
{
    loom_kerror *err = (loom_kerror *)error;
    if (atomicCAS(&err->flag, 0, -1) == 0) {
        err->sm = blockIdx.x;
        err->task = task;
        err->counter = -3;
        err->value = elem;
        err->threshold = (u32)input;
        err->step = step;
        __threadfence();
        atomicExch(&err->flag, 1);
    }
}

// Before another poll for element elem: thread 0 issues the next piece of
// the task's weights (as the counter wait does). As there, the abort flag
// and the stop step are looked at only in a spin of LOOM_POLL_LOOK_NS or
// more; after the timeout the error record is filled. false: give up - the
// CTA's `failed` is set, which its other threads see at their next poll and
// the megakernel after the task.
__device__ __forceinline__ bool ll_poll(const loom_kparams &p, ll_wait &w, u32 elem)
{
    loom_wait_state *ws = (loom_wait_state *)loom_smem4;
    if (w.sg && threadIdx.x == 0)
        stage_pump(*w.sg);
    if (LOOM_POLL_NS)   // as the counter wait (the emulator yields its core)
        __nanosleep(LOOM_POLL_NS);
    if ((++w.polls & 15) != 0)
        return true;
    if (*(volatile int *)&ws->failed)
        return false;
    const u64 now = globaltimer();
    if (w.t0 == 0) {
        w.t0 = now;
        return true;
    }
    bool give_up = false;
    if (now - w.t0 > LOOM_POLL_LOOK_NS) {
        loom_kerror *err = (loom_kerror *)p.error;
        give_up = ld_volatile(&err->flag) != 0 || w.step >= ld_volatile((const int *)p.stop_step);
    }
    if (!give_up && now - w.t0 > p.timeout_ns) {
        ll_timeout(p.error, w.task, w.step, w.input, elem);
        give_up = true;
    }
    if (give_up)
        *(volatile int *)&ws->failed = 1;
    return !give_up;
}

// Element i of activation x from `word`, its LL word loaded earlier
// (ld_ll), polled again only when that did not carry the tag: a load
// issued early, its check where the value is used, so the round trip
// stays hidden as a plain load's would (not LOOM_LL_ALL: word holds the
// float's bits).
__device__ __forceinline__ float ld_act_settle(const loom_kparams &p, u64 x, u64 i, u64 word,
                                               ll_wait &w)
{
    if (!LOOM_LL_ALL)
        return __uint_as_float((u32)word);
    while (ll_word_tag(word) != w.tag && ll_poll(p, w, (u32)i))
        word = ld_ll(x, i);
    return ll_word_value(word);
}

// The early load of ld_act_settle.
__device__ __forceinline__ u64 ld_act_raw(u64 x, u64 i)
{
    return LOOM_LL_ALL ? ld_ll(x, i) : (u64)__float_as_uint(ldcg((const float *)x + i));
}

// Elements idx[k] of activation x (idx[k] < 0: none, reads 0) into v[k]:
// the loads issued together, the missing ones polled again together.
template <int N>
__device__ __forceinline__ void ld_act_n(const loom_kparams &p, u64 x,
                                         const int (&idx)[N], float (&v)[N], ll_wait &w)
{
    if (!LOOM_LL_ALL) {
#pragma unroll
        for (int k = 0; k < N; k++)
            v[k] = idx[k] >= 0 ? ldcg((const float *)x + idx[k]) : 0.0f;
        return;
    }
    u32 miss = 0;
#pragma unroll
    for (int k = 0; k < N; k++) {
        miss |= idx[k] >= 0 ? 1u << k : 0u;
        v[k] = 0.0f;
    }
    for (int want = -1;; want = -1) {
#pragma unroll
        for (int k = 0; k < N; k++) {
            if (miss >> k & 1u) {
                const u64 word = ld_ll(x, (u64)idx[k]);
                v[k] = ll_word_value(word);
                if (ll_word_tag(word) == w.tag)
                    miss &= ~(1u << k);
                else if (want < 0)
                    want = idx[k];
            }
        }
        if (!miss || !ll_poll(p, w, (u32)want))
            return;
    }
}

// All threads' writes of the task, the CTA barrier, then one release add by
// thread 0. In the PTX memory model the barrier orders every thread's writes
// before thread 0's release (causality order is transitive across scopes),
// so a consumer that acquires the counter sees them all: the pattern of
// cooperative groups' grid sync. LOOM_SIGNAL_FENCE adds a gpu-scope fence in
// every thread first (experiments only: it costs ~0.1 ms per step at 0.6B;
// docs/perf-notes.md tells how the bug it was added for turned out to be
// rounding noise, and test (f) of gpu_test_cuda checks bit-exact runs).
// The barrier also tells every thread whether the task gave up on an input
// (ws->failed): then there is no signal and the result is LOOM_WAIT_EXIT.
// LL activations: with LOOM_LL 1 the signal of a task whose outputs are LL
// words is a relaxed add (LOOM_SIGNAL_RELAXED in t->signal: no fence, the
// words carry their own step), with LOOM_LL 2 (4: attention's) there is
// none (t->signal -1) and the barrier only keeps the next task's use of
// shared memory behind this one's. A task that arrived at a counter and was
// not the last of its step (ws->no_signal) does not signal either.
// Thread 0, from inside a task (ARGMAX): the task's signal now, with a
// release that covers thread 0's own writes only; loom_signal then adds
// nothing.
__device__ __forceinline__ void loom_signal_add(const loom_kparams &p, const loom_dtask *t)
{
    u32 *c = (u32 *)p.counters + (t->signal & ~LOOM_SIGNAL_RELAXED);
    if (t->signal & LOOM_SIGNAL_RELAXED)
        red_relaxed_add(c, 1u);
    else
        red_release_add(c, 1u);
}

__device__ __forceinline__ void loom_signal_now(const loom_kparams &p, const loom_dtask *t,
                                                loom_wait_state *ws)
{
    if (t->signal < 0)
        return;
    loom_signal_add(p, t);
    ws->no_signal = 1;
}

__device__ __forceinline__ int loom_signal(const loom_kparams &p, const loom_dtask *t,
                                           loom_wait_state *ws)
{
#if defined(LOOM_SIGNAL_FENCE)
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
#endif
    __syncthreads();
    if (*(const volatile int *)&ws->failed)
        return LOOM_WAIT_EXIT;
    if (threadIdx.x == 0 && ws->no_signal) {
        ws->no_signal = 0;
        return LOOM_WAIT_OK;
    }
    if (threadIdx.x == 0 && t->signal >= 0)
        loom_signal_add(p, t);
    return LOOM_WAIT_OK;
}
