// trace.cuh - timeline recording of the megakernel (loom trace), included
// by the generated source only when the engine traces (it then defines
// LOOM_TRACE 1: a different source, so a different cubin and cache key; an
// untraced kernel has no trace code at all).
//
// The host fills the module global loom_trace before each launch
// (cuModuleGetGlobal): per task of steps first .. first + steps - 1, thread
// 0 of its CTA stores four %globaltimer stamps into buf[(k * n_tasks +
// task) * 4 ..]: 0 wait begin (before the prefetch and the waits), 1 run
// begin (waits met), 2 end (every thread done, before the release signal,
// so that a consumer never runs before its producers' ends) and 3
// signalled (after loom_signal: its barrier, then thread 0's red.release,
// i.e. MEMBAR.ALL.GPU + RED; the RED itself is fire-and-forget, so this is
// when the release was issued, not when a consumer can see it; no signal:
// after the barrier). The buffer is sized for exactly those steps: it
// cannot overflow.
//
// Experiments (traced kernels only): -DLOOM_ATTN_PHASE=k or -DLOOM_LIN_PHASE=k
// replace an attention's or a linear task's wait-begin stamp by the time its
// thread 0 reaches point k of its run (attention.cuh, linear.cuh list the
// points; scripts/trace_phases.py --stamp reads them; the trace's consistency
// check then warns: the stamp is out of order).
//
// defines: loom_trace, loom_trace_slot, loom_trace_stamp, loom_trace_end,
//          LOOM_PHASE_POINT
#pragma once

struct loom_trace_dev {
    u64 buf;                    // u64 [steps][n_tasks][4], 0 = not traced
    int first, steps, n_tasks, pad;
};

__device__ loom_trace_dev loom_trace;

// The stamps of task id at step, or nullptr outside the traced steps.
__device__ __forceinline__ u64 *loom_trace_slot(int step, int id)
{
    const int k = step - loom_trace.first;
    if (loom_trace.buf == 0 || k < 0 || k >= loom_trace.steps)
        return nullptr;
    return (u64 *)loom_trace.buf + ((u64)k * (u64)loom_trace.n_tasks + (u64)id) * 4;
}

__device__ __forceinline__ void loom_trace_stamp(u64 *slot, int which)
{
    if (slot && threadIdx.x == 0)
        slot[which] = globaltimer();
}

// The end: after every thread's work (the barrier), before loom_signal.
// slot is the same for the whole CTA (it depends on step and task only), so
// the barrier is taken by all threads or none: untraced steps pay nothing.
// The barrier returns a result (BAR.RED.POPC) and the stamp branches on it,
// which keeps the clock read behind the barrier's release. After a plain
// __syncthreads (BAR.SYNC.DEFER_BLOCKING) thread 0 read the clock as soon
// as it arrived: on the H100 8B's down tiles stamped their end ~20 us
// before their last warp finished (warp 0 has the staged rows), and the
// trace showed that as release time (docs/perf-notes.md v25).
__device__ __forceinline__ void loom_trace_end(u64 *slot)
{
    if (slot) {
        const int n = __syncthreads_count(1);
        if (n > 0)
            loom_trace_stamp(slot, 2);
    }
}

// Point k of a task's run when `chosen` is k (the experiments above).
#define LOOM_PHASE_POINT(chosen, k, step, id)                                     \
    do {                                                                          \
        if ((chosen) == (k))                                                      \
            loom_trace_stamp(loom_trace_slot((step), (id)), 0);                   \
    } while (0)
