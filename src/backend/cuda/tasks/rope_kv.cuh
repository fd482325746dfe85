// rope_kv.cuh - the per-head norm + RoPE of the attention task (graph.h
// ATTENTION (1), (2)) and the KV cache slot of a position.
//
// A head of HD floats is held by one warp as rotate-half pairs: lane owns
// (i, i + HD/2) for i = lane + 32k, k < ROPE_PPL(HD).
//
// defines: rope_sincos, kv_slot, ROPE_PPL, head_norm_rope
#pragma once

#define ROPE_PPL(HD) (((HD) / 2 + 31) / 32)         // pairs per lane

// cos and sin of the fp32 angle a (|a| < 2^24): reduced in double to
// a/pi in [-1, 1], then sincospif, which needs no slow path (no stack).
__device__ __forceinline__ void rope_sincos(float a, float *s, float *c)
{
    double t = (double)a * 0.31830988618379067154;   // 1/pi
    t -= 2.0 * rint(0.5 * t);
    sincospif((float)t, s, c);
}

// The cache row of position pos: its page from the page table's copy in
// shared memory (megakernel start).
__device__ __forceinline__ u64 kv_slot(int pos)
{
    const int page = LOOM_SPAGES[pos / LOOM_PAGE_SIZE];
    return (u64)page * LOOM_PAGE_SIZE + (u64)(pos % LOOM_PAGE_SIZE);
}

// Elements x0 .. x0 + HD - 1 of activation x (written by other SMs: LL
// words, or floats read through L2) into the warp's pairs a[k] = x[i],
// b[k] = x[i + HD/2]; RMSNorm'ed with nw when norm (HF: w * (inv * x)),
// then rotated by RoPE when rope, cs[i] and sn[i] the cos and sin of pair i's
// angle (rope_sincos of pos * inv_freq[i]). nw, cs, sn: shared memory, made
// before the task's wait (attention.cuh attention_prefetch). Whole warp.
template <int HD>
__device__ __forceinline__ void head_norm_rope(const loom_kparams &p, u64 x, int x0,
                                               ll_wait &w, const float *nw, bool norm,
                                               bool rope, const float *cs, const float *sn,
                                               float (&a)[ROPE_PPL(HD)],
                                               float (&b)[ROPE_PPL(HD)],
                                               u32 *xc = nullptr)
{
    constexpr int HALF = HD / 2, PPL = ROPE_PPL(HD);
    const int lane = threadIdx.x & 31;
    float ss = 0.0f;
    int idx[2 * PPL];
    float v[2 * PPL];

#pragma unroll
    for (int k = 0; k < PPL; k++) {
        const int i = lane + 32 * k;
        idx[k] = i < HALF ? x0 + i : -1;
        idx[PPL + k] = i < HALF ? x0 + i + HALF : -1;
    }
    ld_act_n(p, x, idx, v, w);
#pragma unroll
    for (int k = 0; k < PPL; k++) {
        int i = lane + 32 * k;
        a[k] = v[k];
        b[k] = v[PPL + k];
        ss += a[k] * a[k] + b[k] * b[k];
        if (i < HALF) {   // LOOM_XCHECK: the raw inputs per 32 elements
            xc_add(xc, i / 32, __float_as_uint(a[k]));
            xc_add(xc, (i + HALF) / 32, __float_as_uint(b[k]));
        }
    }
    if (norm) {
        ss = warp_sum(ss);
        float inv = 1.0f / sqrtf(ss / (float)HD + LOOM_EPS);
#pragma unroll
        for (int k = 0; k < PPL; k++) {
            int i = lane + 32 * k;
            if (i < HALF) {
                a[k] = nw[i] * (inv * a[k]);
                b[k] = nw[i + HALF] * (inv * b[k]);
            }
        }
    }
    if (rope) {
#pragma unroll
        for (int k = 0; k < PPL; k++) {
            int i = lane + 32 * k;
            if (i < HALF) {
                const float s = sn[i], c = cs[i];
                float ra = a[k] * c - b[k] * s;
                float rb = b[k] * c + a[k] * s;
                a[k] = ra;
                b[k] = rb;
            }
        }
    }
}
