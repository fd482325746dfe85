// rope_kv.cuh - ROPE_KV of one group g (one KV head and its G query heads),
// reading the packed qkv vector [q heads gG .. gG+G-1 | k head g | v head g]:
// q heads: (q_norm) + RoPE -> y; k: (k_norm) + RoPE -> K cache; v -> V cache;
// caches bf16 at (page_table, pos = step). One warp per head; lane owns the
// rotate-half pairs (i, i + HD/2) for i = lane + 32k.
//
// defines: rope_kv_task
#pragma once

// cos and sin of the fp32 angle a (|a| < 2^24): reduced in double to
// a/pi in [-1, 1], then sincospif, which needs no slow path (no stack).
__device__ __forceinline__ void rope_sincos(float a, float *s, float *c)
{
    double t = (double)a * 0.31830988618379067154;   // 1/pi
    t -= 2.0 * rint(0.5 * t);
    sincospif((float)t, s, c);
}

__device__ __forceinline__ u64 kv_slot(const loom_kparams &p, int pos)
{
    const int page = ((const int *)p.page_table)[pos / LOOM_PAGE_SIZE];
    return (u64)page * LOOM_PAGE_SIZE + (u64)(pos % LOOM_PAGE_SIZE);
}

template <int HD, int G, bool QNORM, bool KNORM>
__device__ __forceinline__ void rope_kv_task(const loom_kparams &p, const loom_dop &d,
                                             const loom_dtask *t, int step)
{
    constexpr int HALF = HD / 2;
    constexpr int PPL = (HALF + 31) / 32;           // pairs per lane
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = t->group;
    const float *x = (const float *)d.x + (u64)g * (G + 2) * HD;
    const float *inv_freq = (const float *)p.rope_inv_freq;
    const u64 slot = kv_slot(p, step);

    for (int j = warp; j < G + 2; j += LOOM_WARPS) {
        const float *xh = x + j * HD;
        float a[PPL], b[PPL];
        float ss = 0.0f;
#pragma unroll
        for (int k = 0; k < PPL; k++) {
            int i = lane + 32 * k;
            a[k] = i < HALF ? ldcg(xh + i) : 0.0f;
            b[k] = i < HALF ? ldcg(xh + i + HALF) : 0.0f;
            ss += a[k] * a[k] + b[k] * b[k];
        }
        const bool norm = j < G ? QNORM : (j == G ? KNORM : false);
        if (norm) {
            const float *nw = (const float *)(j < G ? d.norm : d.norm2);
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
        if (j <= G) {
#pragma unroll
            for (int k = 0; k < PPL; k++) {
                int i = lane + 32 * k;
                if (i < HALF) {
                    float s, c;
                    rope_sincos((float)step * inv_freq[i], &s, &c);
                    float ra = a[k] * c - b[k] * s;
                    float rb = b[k] * c + a[k] * s;
                    a[k] = ra;
                    b[k] = rb;
                }
            }
        }
        if (j < G) {
            float *y = (float *)d.y + (u64)(g * G + j) * HD;
#pragma unroll
            for (int k = 0; k < PPL; k++) {
                int i = lane + 32 * k;
                if (i < HALF) {
                    y[i] = a[k];
                    y[i + HALF] = b[k];
                }
            }
        } else {
            bf16raw *cache = (bf16raw *)(j == G ? d.kcache : d.vcache) +
                             (slot * LOOM_N_KV + g) * HD;
#pragma unroll
            for (int k = 0; k < PPL; k++) {
                int i = lane + 32 * k;
                if (i < HALF) {
                    cache[i] = f32_to_bf16(a[k]);
                    cache[i + HALF] = f32_to_bf16(b[k]);
                }
            }
        }
    }
}
