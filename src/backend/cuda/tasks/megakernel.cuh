// megakernel.cuh - the persistent kernel: one CTA per SM runs its task list
// for every decode step. Per task: prefetch its weights (they depend on
// nothing: bulk copy to shared memory, registers, L2), wait on its counters,
// run it, signal. The generated source
// defines loom_prefetch and loom_dispatch (a switch over op variants) before
// including this file.
//
// defines: loom_megakernel
#pragma once

// Before task k of `step` waits: its rows staged (started a task ahead, or
// now), and with two slots the copy for the next task on the list (the next
// step's first when k is the last) started into the other slot, which no
// task reads any more: its last reader ran before the current task.
__device__ __forceinline__ void stage_ahead(stage_state &sg, int step, int k, int n, int n_steps)
{
    const loom_dtask *t = LOOM_STASKS + k;
    const loom_dop &d = LOOM_SOPS[t->op];
    const int tag = step * n + k + 1;
    if (LOOM_L2_AHEAD > 0 && threadIdx.x == 0)
        LOOM_L2_AHEAD_STATE->cur = tag - 1;
    if (sg.nxt.tag == tag) {
        sg.cur = sg.nxt;
    } else {
        const int slot = LOOM_STAGE_SLOTS > 1 ? 1 - sg.cur.slot : 0;
        const bool lin = loom_variant_linear(d.variant);
        stage_start(sg, sg.cur, slot, tag, (const bf16raw *)d.w + (u64)t->row_begin * d.cols,
                    lin ? stage_rows(t, d) : 0, d.cols);
    }
    const int kn = k + 1 < n ? k + 1 : 0, sn = k + 1 < n ? step : step + 1;
    const loom_dtask *tn = LOOM_STASKS + kn;
    const loom_dop &dn = LOOM_SOPS[tn->op];
    const bool ahead = LOOM_STAGE_SLOTS > 1 && sn < n_steps && loom_variant_linear(dn.variant);
    stage_start(sg, sg.nxt, 1 - sg.cur.slot, ahead ? sn * n + kn + 1 : 0,
                (const bf16raw *)dn.w + (u64)tn->row_begin * dn.cols, ahead ? stage_rows(tn, dn) : 0,
                dn.cols);
}

// LOOM_L2_AHEAD_SKIP_NEXT: with one slot, the look-ahead leaves out the rows
// of the next task that its own copy will stage, and sends its later rows
// instead. The copy then streams from HBM when that task starts, which
// found HBM idle there (1.7B: gate_up's first rows came from L2 while its
// warps read them; perf-notes v23), and the rows its warps load come from
// L2. 0: the next task's tile from its first row (before v23).
#ifndef LOOM_L2_AHEAD_SKIP_NEXT
#define LOOM_L2_AHEAD_SKIP_NEXT 1
#endif
#if LOOM_STAGE
// Thread 0 (common.cuh "L2 look-ahead"): the next look-ahead piece, if the
// current task is linear and the frontier is less than LOOM_L2_AHEAD bytes
// past its staged rows. A linear task's range is its tile's bytes, less the
// staged rows of the current task and of the next (two slots, or
// LOOM_L2_AHEAD_SKIP_NEXT), whose copies carry them.
__device__ __forceinline__ void l2_ahead_pump()
{
    constexpr int budget = LOOM_L2_AHEAD;
    l2_ahead_state *la = LOOM_L2_AHEAD_STATE;
    const int cur = la->cur, last = la->n * la->n_steps;
    if (!loom_variant_linear(LOOM_SOPS[LOOM_STASKS[cur % la->n].op].variant))
        return;   // not while an attention waits: it is on the critical path
    int inst = la->inst;
    u32 off = la->off;
    int ahead = 0;   // bytes from the current task's range to the frontier
    if (inst < cur) {
        inst = cur;
        off = 0;
    }
    for (int i = cur; i < last && i <= cur + LOOM_L2_AHEAD_TASKS; i++) {
        const loom_dtask *t = LOOM_STASKS + i % la->n;
        const loom_dop &d = LOOM_SOPS[t->op];
        if (!loom_variant_linear(d.variant)) {
            if (i == inst) {
                inst = i + 1;
                off = 0;
            }
            continue;
        }
        const u32 row = (u32)d.cols * 2u, total = (u32)(t->row_end - t->row_begin) * row;
        const bool staged = i == cur || ((LOOM_STAGE_SLOTS > 1 || LOOM_L2_AHEAD_SKIP_NEXT) &&
                                         i == cur + 1);
        const u32 lo = staged ? (u32)stage_rows(t, d) * row : 0u;
        if (i < inst) {
            ahead += (int)(total - lo);
            continue;
        }
        off = off > lo ? off : lo;
        ahead += (int)(off - lo);
        if (ahead >= budget)
            break;
        if (off >= total) {
            inst = i + 1;
            off = 0;
            continue;
        }
        u32 b = total - off;
        b = b < (u32)LOOM_L2_AHEAD_PIECE ? b : (u32)LOOM_L2_AHEAD_PIECE;
        b = b < (u32)(budget - ahead) ? b : (u32)(budget - ahead);
        bulk_prefetch_l2((const char *)d.w + (u64)t->row_begin * row + off, b);
        la->inst = i;
        la->off = off + b;
        return;
    }
    la->inst = inst;
    la->off = off;
}
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
    for (int i = threadIdx.x; i < LOOM_N_PAGES; i += LOOM_THREADS)
        ((int *)LOOM_SPAGES)[i] = ((const int *)p.page_table)[i];
    if (threadIdx.x == 0) {
        ws->failed = 0;
        ws->no_signal = 0;
        if (LOOM_L2_AHEAD > 0)
            *LOOM_L2_AHEAD_STATE = {n, p.n_steps, 0, 0, 0u};
    }
    __syncthreads();

    stage_state sg = {{nullptr, 0u, 0u, 0, 0, 0}, {nullptr, 0u, 0u, 0, 0, 1}, 0u, 0u};
    uint4 pre[LOOM_PRELOAD];   // a linear task's first weights, loaded before its wait
    stage_init();
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
            stage_ahead(sg, step, k, n, p.n_steps);   // weights do not wait
            loom_prefetch(p, d, t, step, acq, pre, sg);
            if (loom_wait_all(p, t, id, step, ws, sg) != LOOM_WAIT_OK)
                goto out;
            const bool acq_before = acq;
            acq |= (t->n_waits > 0 || (LOOM_LL_ALL && LOOM_LL_PRELOAD && d.x != 0)) && step > 0;
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
            // The next task's pieces not yet out (all of them after a task that
            // is not linear; after a linear one, those past the ones handed
            // over at its x, linear.cuh): after the release, which would wait
            // for them.
            if (threadIdx.x == 0)
                stage_pump_all(sg.nxt);
        }
    }
out:
    stage_drain(p, sg);
}
