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
    if (threadIdx.x >= 32)
        return;
    const int lane = threadIdx.x;
    const float *aux = (const float *)d.aux;
    const float none = __uint_as_float(0x7fc00000u);   // NaN: nothing yet
    float bv = none, br = 0.0f;

    for (int i = lane; i < d.n_tiles; i += 32) {
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
    if (lane != 0)
        return;
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
