// attention.cuh - ATTENTION tile (g, s) and ATTN_MERGE of group g.
//
// ATTENTION: the G query heads of group g share each K/V row load. Warps take
// positions p0 + warp, p0 + warp + LOOM_WARPS, ... of the chunk; for each one
// the warp computes G scores (lane owns elements i = lane + 32e of the head)
// and updates an online softmax {m, l, o} per head; the warps' states are
// then merged through shared memory. split == 1 writes the normalised output,
// split > 1 the partials {o, m, l} (empty chunk: o = 0, m = -inf, l = 0).
//
// defines: attention_task, attn_merge_task
#pragma once

template <int HD, int G>
__device__ __forceinline__ void attention_task(const loom_kparams &p, const loom_dop &d,
                                               const loom_dtask *t, int step)
{
    constexpr int EPL = (HD + 31) / 32;             // elements per lane
    constexpr int ST = HD + 2;                      // {o[HD], m, l}
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = t->group, s = t->split, split = d.split;
    const int n = step + 1, chunk = (n + split - 1) / split;
    int p0 = s * chunk, p1 = p0 + chunk < n ? p0 + chunk : n;
    if (p0 > p1)
        p0 = p1;
    const float scale = 1.0f / sqrtf((float)HD);
    float *qs = LOOM_SMEM;                          // G * HD
    float *st = LOOM_SMEM + G * HD;                 // LOOM_WARPS * G * ST
    const float *q = (const float *)d.x + (u64)g * G * HD;

    for (int i = threadIdx.x; i < G * HD; i += LOOM_THREADS)
        qs[i] = ldcg(q + i);
    __syncthreads();

    float m[G], l[G], o[G][EPL];
#pragma unroll
    for (int h = 0; h < G; h++) {
        m[h] = loom_neg_inf();
        l[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < EPL; e++)
            o[h][e] = 0.0f;
    }
    const bf16raw *kc = (const bf16raw *)d.kcache, *vc = (const bf16raw *)d.vcache;
    for (int pos = p0 + warp; pos < p1; pos += LOOM_WARPS) {
        const u64 base = (kv_slot(p, pos) * LOOM_N_KV + g) * HD;
        float kv[EPL], vv[EPL];
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            int i = lane + 32 * e;
            kv[e] = i < HD ? bf16_to_f32(ldcg_bf16(kc + base + i)) : 0.0f;
            vv[e] = i < HD ? bf16_to_f32(ldcg_bf16(vc + base + i)) : 0.0f;
        }
#pragma unroll
        for (int h = 0; h < G; h++) {
            float dot = 0.0f;
#pragma unroll
            for (int e = 0; e < EPL; e++) {
                int i = lane + 32 * e;
                if (i < HD)
                    dot = fmaf(qs[h * HD + i], kv[e], dot);
            }
            float sc = warp_sum(dot) * scale;
            float mn = fmaxf(m[h], sc);
            float corr = expf(m[h] - mn), pe = expf(sc - mn);
            l[h] = l[h] * corr + pe;
#pragma unroll
            for (int e = 0; e < EPL; e++)
                o[h][e] = o[h][e] * corr + pe * vv[e];
            m[h] = mn;
        }
    }
    // This warp's states into shared memory.
#pragma unroll
    for (int h = 0; h < G; h++) {
        float *sw = st + (warp * G + h) * ST;
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            int i = lane + 32 * e;
            if (i < HD)
                sw[i] = o[h][e];
        }
        if (lane == 0) {
            sw[HD] = m[h];
            sw[HD + 1] = l[h];
        }
    }
    __syncthreads();
    // Merge the warps: thread per (head, element).
    for (int k = threadIdx.x; k < G * HD; k += LOOM_THREADS) {
        const int h = k / HD, i = k % HD;
        float M = loom_neg_inf();
        for (int w = 0; w < LOOM_WARPS; w++)
            M = fmaxf(M, st[(w * G + h) * ST + HD]);
        float O = 0.0f, L = 0.0f;
        if (M != loom_neg_inf()) {
            for (int w = 0; w < LOOM_WARPS; w++) {
                const float *sw = st + (w * G + h) * ST;
                float a = expf(sw[HD] - M);
                O += a * sw[i];
                L += a * sw[HD + 1];
            }
        }
        const int head = g * G + h;
        if (split == 1) {
            ((float *)d.y)[(u64)head * HD + i] = O / L;
        } else {
            float *e = (float *)d.aux + ((u64)head * split + s) * ST;
            e[i] = O;
            if (i == 0) {
                e[HD] = M;
                e[HD + 1] = L;
            }
        }
    }
}

template <int HD, int G>
__device__ __forceinline__ void attn_merge_task(const loom_dop &d, const loom_dtask *t)
{
    constexpr int ST = HD + 2;
    const int split = d.split;

    for (int k = threadIdx.x; k < G * HD; k += LOOM_THREADS) {
        const int h = k / HD, i = k % HD, head = t->group * G + h;
        const float *e = (const float *)d.aux + (u64)head * split * ST;
        float M = loom_neg_inf(), den = 0.0f, y = 0.0f;
        for (int s = 0; s < split; s++)
            M = fmaxf(M, ldcg(e + s * ST + HD));
        for (int s = 0; s < split; s++) {
            float a = expf(ldcg(e + s * ST + HD) - M);
            den += a * ldcg(e + s * ST + HD + 1);
            y += a * ldcg(e + s * ST + i);
        }
        ((float *)d.y)[(u64)head * HD + i] = y / den;
    }
}
