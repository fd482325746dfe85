// argmax.cuh - the ARGMAX task: the token of this step from the lm_head
// tiles' {max, row} partials (ties: lowest row, NaN never wins), written to
// tokens[step + 1] unless that is still inside the prompt; a generated token
// also goes to the host-mapped ring (system-scope fence before the count),
// and EOS or the host's stop flag set the stop step (before the task's
// release signal, so every CTA that acquires it sees the stop).
//
// defines: argmax_task
#pragma once

__device__ __forceinline__ void argmax_task(const loom_kparams &p, const loom_dop &d, int step)
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
    int *tokens = (int *)p.tokens;
    if (step + 1 >= p.n_prompt) {
        tokens[step + 1] = token;
        volatile int *ring = (volatile int *)p.host_ring;
        const int gi = step + 1 - p.n_prompt;
        ring[2 + gi] = token;
        __threadfence_system();
        ring[0] = gi + 1;
        bool stop = ring[1] != 0;
#pragma unroll
        for (int e = 0; e < LOOM_MAX_EOS; e++)
            if (e < p.n_eos && token == p.eos[e])
                stop = true;
        if (stop)
            *(volatile int *)p.stop_step = step + 1;
    }
    ((u64 *)p.step_time)[step] = globaltimer();
}
