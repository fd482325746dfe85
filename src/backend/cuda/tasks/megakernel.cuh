// megakernel.cuh - the persistent kernel: one CTA per SM runs its task list
// for every decode step. Per task: prefetch its weights (they depend on
// nothing: bulk copy to shared memory, registers, L2), wait on its counters,
// run it, signal. The generated source
// defines loom_prefetch and loom_dispatch (a switch over op variants) before
// including this file.
//
// defines: loom_megakernel
#pragma once

// Rows of linear task t's tile a staging slot takes: all, or as many as fit
// rounded down to an even count (row pairs are both staged or both not).
__device__ __forceinline__ int stage_rows(const loom_dtask *t, const loom_dop &d)
{
    const int rows = t->row_end - t->row_begin;
    const int fit = LOOM_STAGE ? LOOM_SLOT_BYTES / (d.cols * 2) : 0;
    return rows <= fit ? rows : (fit & ~1);
}

// Starts staging task instance `tag` - 1 (t, d) into slot s.
__device__ __forceinline__ void stage_start(stage_state &sg, int s, int tag, const loom_dtask *t,
                                            const loom_dop &d)
{
    const int h = stage_rows(t, d);
    if (s) {
        sg.tag1 = tag;
        sg.rows1 = h;
    } else {
        sg.tag0 = tag;
        sg.rows0 = h;
    }
    if (h > 0) {
        if (threadIdx.x == 0)
            stage_issue(s, (const bf16raw *)d.w + (u64)t->row_begin * d.cols,
                        (u32)h * (u32)d.cols * 2u);
        sg.pending |= 1u << s;
    }
}

// Before task k of `step` waits: its rows staged (started now unless the
// task before did it), and the copy for the next task on the list (the next
// step's first when k is the last) started into the other slot, which no
// task reads any more: its last user ran before the current task.
__device__ __forceinline__ void stage_ahead(stage_state &sg, int step, int k, int n, int n_steps)
{
    const loom_dtask *t = LOOM_STASKS + k;
    const loom_dop &d = LOOM_SOPS[t->op];
    const int tag = step * n + k + 1;
    sg.cur = -1;
    if (!LOOM_STAGE)
        return;
    if (loom_variant_linear(d.variant)) {
        sg.cur = sg.tag0 == tag ? 0 : sg.tag1 == tag ? 1 : -1;
        if (sg.cur < 0) {
            sg.cur = 0;
            stage_start(sg, 0, tag, t, d);
        }
    }
    const int kn = k + 1 < n ? k + 1 : 0, sn = k + 1 < n ? step : step + 1;
    const loom_dtask *tn = LOOM_STASKS + kn;
    const loom_dop &dn = LOOM_SOPS[tn->op];
    if (sn < n_steps && loom_variant_linear(dn.variant))
        stage_start(sg, sg.cur == 0 ? 1 : 0, sn * n + kn + 1, tn, dn);
}

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

    stage_state sg = {0, 0, 0, 0, 0u, 0u, -1};
    uint4 pre[LOOM_PRELOAD];   // a linear task's first weights, loaded before its wait
    stage_init();
    for (int step = 0; step < p.n_steps; step++) {
        for (int k = 0; k < n; k++) {
            const int id = LOOM_SIDS[k];
            const loom_dtask *t = LOOM_STASKS + k;
            const loom_dop &d = LOOM_SOPS[t->op];
#if LOOM_TRACE
            u64 *tr = loom_trace_slot(step, id);   // trace.cuh
            loom_trace_stamp(tr, 0);
#endif
            stage_ahead(sg, step, k, n, p.n_steps);   // weights do not wait
            loom_prefetch(d, t, pre, sg);
            if (loom_wait_all(p, t, id, step, ws) != LOOM_WAIT_OK)
                goto out;
#if LOOM_TRACE
            loom_trace_stamp(tr, 1);
#endif
            u32 *xc = xc_slot(t, step);   // LOOM_XCHECK records (common.cuh)
            xc_begin(xc);
            loom_dispatch(p, d, t, step, pre, sg);
            if (ws->verdict != LOOM_WAIT_OK)   // a staging wait timed out
                goto out;
#if LOOM_TRACE
            loom_trace_end(tr);
#endif
            xc_end(xc);
            loom_signal(p, t);
        }
    }
out:
    stage_drain(p, sg);
}
