// argmax.cuh - the ARGMAX task: the token of this step from the lm_head
// tiles' {max, row} partials (ties: lowest row, NaN never wins), written to
// tokens[step + 1] unless that is still inside the prompt; an EOS token sets
// the stop step to step + 1. Then the task signals (itself: what the next
// step's embed waits for is out), and only after that does a generated token
// go to the host-mapped ring (system-scope fence before the count) and the
// host's stop flag get read: two trips over PCIe that were ~2.5 us of
// every step's critical path. A stop the host asks for sets the stop step
// to step + 2 (never later than one already set): step + 1 has been
// released to run; its tokens are not delivered (runtime.c drain_ring).
//
// defines: argmax_task
#pragma once

__device__ __forceinline__ void argmax_task(const loom_kparams &p, const loom_dop &d,
                                            const loom_dtask *t, int step)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *aux = (const float *)d.aux;
    const float none = __uint_as_float(0x7fc00000u);   // NaN: nothing yet
    float bv = none, br = 0.0f;
    float *red = LOOM_SMEM;                             // 2 * LOOM_WARPS floats

    // Every thread scans a share of the partials (thousands at 8B: one warp
    // alone took ~20 us on the H100), then warps, then the block, reduce.
    for (int i = threadIdx.x; i < d.n_tiles; i += LOOM_THREADS) {
        float v = ldcg(aux + 2 * i), r = ldcg(aux + 2 * i + 1);
        if (argmax_better(v, r, bv, br)) {
            bv = v;
            br = r;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        float orr = __shfl_xor_sync(0xffffffffu, br, o);
        if (argmax_better(ov, orr, bv, br)) {
            bv = ov;
            br = orr;
        }
    }
    if (lane == 0) {
        red[2 * warp] = bv;
        red[2 * warp + 1] = br;
    }
    __syncthreads();
    if (threadIdx.x != 0)
        return;
    for (int w = 1; w < LOOM_WARPS; w++)
        if (argmax_better(red[2 * w], red[2 * w + 1], bv, br)) {
            bv = red[2 * w];
            br = red[2 * w + 1];
        }
    const int token = bv != bv ? (int)ldcg(aux + 1) : (int)br;
    const bool gen = step + 1 >= p.n_prompt;
    volatile int *stop = (volatile int *)p.stop_step;
    bool eos = false;
    if (gen) {
        ((int *)p.tokens)[step + 1] = token;
#pragma unroll
        for (int e = 0; e < LOOM_MAX_EOS; e++)
            eos |= e < p.n_eos && token == p.eos[e];
        if (eos)
            *stop = step + 1;
    }
    ((u64 *)p.step_time)[step] = globaltimer();
    loom_signal_now(p, t, (loom_wait_state *)loom_smem4);   // loom_signal: done
    if (!gen)
        return;
    volatile int *ring = (volatile int *)p.host_ring;
    const int gi = step + 1 - p.n_prompt;
    ring[2 + gi] = token;
    __threadfence_system();
    ring[0] = gi + 1;
    if (!eos && ring[1] != 0 && step + 2 < *stop)
        *stop = step + 2;
}
