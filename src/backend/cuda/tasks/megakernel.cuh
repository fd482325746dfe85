// megakernel.cuh - the persistent kernel: one CTA per SM runs its task list
// for every decode step. Per task: its weights keep streaming (they depend
// on nothing: common.cuh "Weight staging"), wait on its counters, run it,
// signal. The generated source
// defines loom_prefetch and loom_dispatch (a switch over op variants) before
// including this file.
//
// defines: loom_megakernel
#pragma once

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
    for (int i = threadIdx.x; i < LOOM_N_PAGES; i += LOOM_THREADS)
        ((int *)LOOM_SPAGES)[i] = ((const int *)p.page_table)[i];
    if (threadIdx.x == 0)
        ws->failed = 0;
    __syncthreads();

    stage_state sg;   // the weight stream (common.cuh "Weight staging")
    uint4 pre[LOOM_PRELOAD];   // sm_80: a linear task's first weights, loaded before its wait
    stage_init(sg, n, p.n_steps);
    for (int step = 0; step < p.n_steps; step++) {
        // acq: a counter wait of this step has ended on this CTA, which makes
        // everything of the steps before visible to it (attention_prefetch)
        bool acq = false;
        for (int k = 0; k < n; k++) {
            const int id = LOOM_SIDS[k];
            const loom_dtask *t = LOOM_STASKS + k;
            const loom_dop &d = LOOM_SOPS[t->op];
#if LOOM_TRACE
            u64 *tr = loom_trace_slot(step, id);   // trace.cuh
            loom_trace_stamp(tr, 0);
#endif
            if (threadIdx.x == 0)
                stage_pump(sg);   // weights do not wait
            loom_prefetch(p, d, t, step, acq, pre, sg);
            if (loom_wait_all(p, t, id, step, ws, sg) != LOOM_WAIT_OK)
                goto out;
            const bool acq_before = acq;
            acq |= t->n_waits > 0 && step > 0;
#if LOOM_TRACE
            loom_trace_stamp(tr, 1);
#endif
            u32 *xc = xc_slot(t, step);   // LOOM_XCHECK records (common.cuh)
            xc_begin(xc);
            loom_dispatch(p, d, t, step, acq_before, pre, sg);
            if (ws->verdict != LOOM_WAIT_OK)   // a staging wait timed out
                goto out;
#if LOOM_TRACE
            loom_trace_end(tr);
#endif
            xc_end(xc);
            if (loom_signal(p, t, ws) != LOOM_WAIT_OK)   // a task gave up on an input
                goto out;
#if LOOM_TRACE
            loom_trace_stamp(tr, 3);   // signalled: the release issued
#endif
            if (threadIdx.x == 0)
                stage_pump(sg);
        }
    }
out:
    stage_drain(p, sg);
}
