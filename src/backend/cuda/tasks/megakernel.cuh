// megakernel.cuh - the persistent kernel: one CTA per SM runs its task list
// for every decode step. Per task: prefetch its weights (they depend on
// nothing: bulk copy to shared memory, registers, L2), wait on its counters,
// run it, signal. The generated source
// defines loom_prefetch and loom_dispatch (a switch over op variants) before
// including this file.
//
// defines: loom_megakernel
#pragma once

// Bytes of the next linear task's tile sent toward L2 before this task's
// wait (experiment, docs/perf-notes.md v8; 0: none).
#ifndef LOOM_PREFETCH_NEXT_BYTES
#define LOOM_PREFETCH_NEXT_BYTES 0
#endif

extern "C" __global__ void __launch_bounds__(LOOM_THREADS, 1)
loom_megakernel(const loom_kparams p)
{
    loom_wait_state *ws = (loom_wait_state *)loom_smem4;
    const int *list = (const int *)p.sm_tasks;
    const int begin = ((const int *)p.sm_offset)[blockIdx.x];
    const int n = ((const int *)p.sm_offset)[blockIdx.x + 1] - begin;

    // The tables into shared memory (common.cuh), 16 bytes per thread.
    constexpr int OPV = sizeof(loom_dop) / 16, TV = sizeof(loom_dtask) / 16;
    for (int i = threadIdx.x; i < LOOM_N_OPS * OPV; i += LOOM_THREADS)
        ((uint4 *)LOOM_SOPS)[i] = ((const uint4 *)p.ops)[i];
    for (int i = threadIdx.x; i < n * TV; i += LOOM_THREADS)
        ((uint4 *)LOOM_STASKS)[i] = ((const uint4 *)p.tasks)[(u64)list[begin + i / TV] * TV + i % TV];
    for (int i = threadIdx.x; i < n; i += LOOM_THREADS)
        ((int *)LOOM_SIDS)[i] = list[begin + i];
    __syncthreads();

    stage_state sg = {0, 0u, false};
    uint4 pre[LOOM_PRELOAD];   // a linear task's first weights, loaded before its wait
#if LOOM_STAGE
    if (threadIdx.x == 0) {
        mbar_init(LOOM_STAGE_BAR, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
#endif
    for (int step = 0; step < p.n_steps; step++) {
        for (int k = 0; k < n; k++) {
            const int id = LOOM_SIDS[k];
            const loom_dtask *t = LOOM_STASKS + k;
            const loom_dop &d = LOOM_SOPS[t->op];
#if LOOM_TRACE
            u64 *tr = loom_trace_slot(step, id);   // trace.cuh
            loom_trace_stamp(tr, 0);
#endif
            loom_prefetch(d, t, pre, sg);   // weights do not wait
#if LOOM_PREFETCH_NEXT_BYTES > 0
            {   // the head of the next linear task's tile toward L2
                const loom_dtask *tn = LOOM_STASKS + (k + 1 < n ? k + 1 : 0);
                const loom_dop &dn = LOOM_SOPS[tn->op];
                if (loom_variant_linear(dn.variant)) {
                    const char *w = (const char *)dn.w + (u64)tn->row_begin * dn.cols * 2;
                    u64 bytes = (u64)(tn->row_end - tn->row_begin) * dn.cols * 2;
                    if (bytes > (u64)LOOM_PREFETCH_NEXT_BYTES)
                        bytes = (u64)LOOM_PREFETCH_NEXT_BYTES;
                    for (u64 off = (u64)threadIdx.x * 128; off < bytes;
                         off += (u64)LOOM_THREADS * 128)
                        prefetch_l2(w + off);
                }
            }
#endif
            if (loom_wait_all(p, t, id, step, ws) != LOOM_WAIT_OK)
                goto out;
#if LOOM_TRACE
            loom_trace_stamp(tr, 1);
#endif
#if LOOM_XCHECK
            u32 *xc = xc_slot(t, step);
            if (xc && threadIdx.x == 0) {
                xc[9] = (u32)globaltimer();
                xc[11] = blockIdx.x + 1;
            }
#endif
            loom_dispatch(p, d, t, step, pre, sg);
            if (ws->verdict != LOOM_WAIT_OK)   // a staging wait timed out
                goto out;
#if LOOM_TRACE
            loom_trace_end(tr);
#endif
#if LOOM_XCHECK
            if (xc) {
                __syncthreads();
                if (threadIdx.x == 0)
                    xc[10] = (u32)globaltimer();
            }
#endif
            loom_signal(p, t);
        }
    }
out:
#if LOOM_STAGE
    // No bulk copy may still be writing into the shared memory of a CTA
    // that is gone (a wait gave up after its task's copy started).
    if (sg.pending && threadIdx.x == 0)
        mbar_wait_bounded(LOOM_STAGE_BAR, sg.parity, p.timeout_ns);
#endif
    return;
}
