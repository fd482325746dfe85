// attention.cuh - ATTENTION tile (g, s) and ATTN_MERGE of group g.
//
// ATTENTION: first the tile's G query heads are made from the packed qkv
// rows of group g (q_norm, RoPE: head_norm_rope, one warp a head) into shared
// memory; split 0 also makes k (k_norm, RoPE) and v and stores them to the
// caches at position step, and keeps them in shared memory for its own use.
// Before the wait (attention_prefetch): the RoPE angles, the norm weights,
// and the first batch of K/V rows below step in registers. Splits take positions
// from the newest back (graph.h), so split 0 holds position step.
// The G query heads of group g share each K/V row load. Warps take
// positions p0 + warp, p0 + warp + LOOM_WARPS, ... of the chunk, loading the
// K and V rows of 4 of them before using any (one L2 round trip for 4); for
// each the warp computes G scores (lane owns the contiguous elements
// lane * EPL .. + EPL - 1 of the head, q in registers, pre-scaled) and
// updates an online softmax {m, l, o} per head; the warps' states are
// then merged through shared memory. split == 1 writes the normalised output,
// split > 1 the partials {o, m, l} (empty chunk: o = 0, m = -inf, l = 0).
//
// ATTENTION merging itself (MERGE, graph.h): the group's last tile to finish
// merges its partials as ATTN_MERGE does (attn_arrive).
//
// defines: attention_task, attn_merge_task
#pragma once

// LL: split 0's fence after its K/V rows (below); 0 only for timing experiments.
#ifndef LOOM_LL_KV_FENCE
#define LOOM_LL_KV_FENCE 1   // 0: experiments only (timing without it)
#endif

// Positions [p0, p1) of split s of `split` at step (graph.h ATTENTION (3)).
__device__ __forceinline__ void attn_range(int step, int s, int split, int &p0, int &p1)
{
    const int n = step + 1, chunk = (n + split - 1) / split;
    p1 = n - s * chunk;
    p0 = p1 - chunk;
    p1 = p1 > 0 ? p1 : 0;
    p0 = p0 > 0 ? p0 : 0;
}

// Scratch of an attention tile (floats from LOOM_SMEM): qs[G * HD] (the
// query heads), st[LOOM_WARPS * G * (HD + 2)] (the warps' states), then
// what attention_prefetch puts there before the wait: the RoPE cos and sin
// of position step (HD / 2 each), the q_norm and k_norm weights (HD each),
// and split 0's k and v rows of position step (2 * HD bf16 in HD floats, as
// the cache holds them), which it reads from there instead of the cache.
template <int HD, int G>
struct attn_smem {
    static constexpr int QS = 0, ST = G * HD, COS = ST + LOOM_WARPS * G * (HD + 2);
    static constexpr int SIN = COS + HD / 2, QN = SIN + HD / 2, KN = QN + HD, KV = KN + HD;
    static constexpr int FLOATS = KV + HD;
};

// Query heads of group g into qs (G * HD); with kv, k and v into the caches
// at position step. One warp a head.
template <int HD, int G, bool QNORM, bool KNORM>
__device__ __forceinline__ void attention_qkv(const loom_kparams &p, const loom_dop &d,
                                              const loom_dtask *t, int g, int step, bool kv,
                                              float *qs)
{
    using L = attn_smem<HD, G>;
    constexpr int HALF = HD / 2, PPL = ROPE_PPL(HD);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int x0 = g * (G + 2) * HD;
    float *sm = LOOM_SMEM;
    ll_wait w = ll_begin(p, t, step, nullptr, 0);
    const int heads = kv ? G + 2 : G;
    u32 *xc = HD % 32 == 0 ? xc_slot(t, step) : nullptr;   // LOOM_XCHECK

    for (int j = warp; j < heads; j += LOOM_WARPS) {
        float a[PPL], b[PPL];
        const bool norm = j < G ? QNORM : (j == G ? KNORM : false);
        u32 *xcj = xc && XC_ATTN + (j + 1) * (HD / 32) <= XC_KV ? xc + XC_ATTN + j * (HD / 32)
                                                                : nullptr;
        head_norm_rope<HD>(p, d.x, x0 + j * HD, w, sm + (j < G ? L::QN : L::KN), norm, j <= G,
                           sm + L::COS, sm + L::SIN, a, b, xcj);
        if (j < G) {
#pragma unroll
            for (int k = 0; k < PPL; k++) {
                int i = lane + 32 * k;
                if (i < HALF) {
                    qs[j * HD + i] = a[k];
                    qs[j * HD + i + HALF] = b[k];
                }
            }
            continue;
        }
        bf16raw *cache = (bf16raw *)(j == G ? d.kcache : d.vcache) +
                         (kv_slot(step) * LOOM_N_KV + g) * HD;
        bf16raw *now = (bf16raw *)(sm + L::KV) + (j - G) * HD;   // as the cache holds it
#pragma unroll
        for (int k = 0; k < PPL; k++) {
            int i = lane + 32 * k;
            if (i < HALF) {
                const bf16raw ha = f32_to_bf16(a[k]), hb = f32_to_bf16(b[k]);
                st_kv(cache + i, ha);
                st_kv(cache + i + HALF, hb);
                now[i] = ha;
                now[i + HALF] = hb;
                // LOOM_XCHECK: the cache row's bits, XC_KV (K), XC_KV + 1 (V)
                xc_add(xc, XC_KV + (j - G), (u32)ha + (u32)hb);
            }
        }
    }
}

// The lane's EPL contiguous bf16 of a K or V row at p (through L2: written
// this launch by other SMs) as floats, the first n of them valid (the rest
// and n <= 0 read as zeros). VEC (HD == 32 * EPL, so p is aligned): one
// vector load.
// 4 bf16 (two words) as floats (EPL == 4).
template <int EPL>
__device__ __forceinline__ void bf16x4_unpack(u32 w0, u32 w1, float (&out)[EPL])
{
    out[0] = bf16_lo(w0);
    out[1 % EPL] = bf16_hi(w0);
    out[2 % EPL] = bf16_lo(w1);
    out[3 % EPL] = bf16_hi(w1);
}

template <int EPL, bool VEC>
__device__ __forceinline__ void kv_row_load(const bf16raw *p, int n, float (&out)[EPL])
{
    if (VEC && EPL == 4) {
        uint2 v = make_uint2(0u, 0u);
        if (n > 0)
            v = ld_kv8(p);
        bf16x4_unpack<EPL>(v.x, v.y, out);
    } else if (VEC && EPL == 2) {
        u32 v = 0u;
        if (n > 0)
            v = ld_kv4(p);
        out[0] = bf16_lo(v);
        out[1 % EPL] = bf16_hi(v);
    } else {
#pragma unroll
        for (int e = 0; e < EPL; e++)
            out[e] = e < n ? bf16_to_f32(ldcg_bf16(p + e)) : 0.0f;
    }
}

// The lane's part of the K and V rows of position pos of KV head g from the
// caches; positions from p1 on (past the tile's range) read as zeros.
template <int HD, int EPL, bool VEC>
__device__ __forceinline__ void kv_rows_load(const bf16raw *kc, const bf16raw *vc, int pos,
                                             int p0, int p1, int g, float (&k)[EPL],
                                             float (&v)[EPL])
{
    const int lane = threadIdx.x & 31;
    const int nv = pos < p1 ? HD - lane * EPL : 0;
    const u64 base = (kv_slot(pos < p1 ? pos : p0) * LOOM_N_KV + g) * HD + (u64)lane * EPL;
    kv_row_load<EPL, VEC>(kc + base, nv, k);
    kv_row_load<EPL, VEC>(vc + base, nv, v);
}

// The first batch of K/V rows is loaded into the preload registers (one
// uint4 a position: the lane's 4 bf16 of K, then of V) before the wait:
// released counters (not LOOM_LL_ALL, attention_prefetch), rows of 4 bf16 a
// lane, groups of up to 2 heads (at 4, 8B, the registers spill).
// -DLOOM_ATTN_PRELOAD=0 turns it off (experiments); -DLOOM_LL_PRELOAD=1
// turns it on in LL modes 1-3 (experiments: the CTA has then read LL words
// of this step, which stand in for the acquire; megakernel.cuh).
#ifndef LOOM_ATTN_PRELOAD
#define LOOM_ATTN_PRELOAD 1
#endif
// -DLOOM_ATTN_PHASE=k (trace.cuh): an attention tile's points - 1 q/k/v in
// (normed, rotated), 2 its positions done, 3 its partials stored, 4 arrived
// at the group's counter.
#if defined(LOOM_ATTN_PHASE) && defined(LOOM_TRACE)
#define ATTN_PHASE(k) LOOM_PHASE_POINT(LOOM_ATTN_PHASE, k, step, loom_task_id(t))
#else
#define ATTN_PHASE(k) ((void)0)
#endif
#ifndef LOOM_LL_PRELOAD
#define LOOM_LL_PRELOAD 0
#endif
__host__ __device__ constexpr bool attn_preloads(int HD, int G)
{
    return LOOM_ATTN_PRELOAD && (!LOOM_LL_ALL || LOOM_LL_PRELOAD) && HD == 128 && G <= 2;
}

// Positions a warp loads at once (PB; its PB * G scores are reduced
// together, so PB * G <= 32): 8 for groups of up to 2 heads (1% faster than
// 4 at 0.6B on the H100, perf-notes v12) unless the first batch is
// preloaded or LL words are read (4: 8 spills there), else 4 (8 spills at
// G = 4), fewer for groups above 8. -DLOOM_ATTN_PB=n overrides (experiments).
#ifndef LOOM_ATTN_PB
#define LOOM_ATTN_PB 0
#endif
__host__ __device__ constexpr int attn_positions_per_batch(int HD, int G)
{
    return LOOM_ATTN_PB > 0 && G * LOOM_ATTN_PB <= 32 &&
                   (!attn_preloads(HD, G) || LOOM_ATTN_PB <= LOOM_PRELOAD)
               ? LOOM_ATTN_PB
           : G <= 2 ? (attn_preloads(HD, G) || LOOM_LL_ALL ? 4 : 8)
           : G <= 8 ? 4
                    : (32 / G > 0 ? 32 / G : 1);
}

// The smallest power of two >= n (n <= 32; more is never asked).
__host__ __device__ constexpr int pow2_at_least(int n)
{
    return n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : n <= 16 ? 16 : 32;
}

// The RoPE cos and sin of position step and the norm weights into the
// tile's scratch (attn_smem): before the wait (LOOM_ATTN_EARLY, the
// default) or, -DLOOM_ATTN_EARLY=0 (experiments), after it.
#ifndef LOOM_ATTN_EARLY
#define LOOM_ATTN_EARLY 1
#endif
template <int HD, int G, bool QNORM, bool KNORM>
__device__ __forceinline__ void attention_tables(const loom_kparams &p, const loom_dop &d,
                                                 int step)
{
    using L = attn_smem<HD, G>;
    float *sm = LOOM_SMEM;
    const float *inv_freq = (const float *)p.rope_inv_freq;
    // not warp 0, whose thread 0 polls the counters next
    const int t0 = LOOM_ATTN_EARLY && LOOM_THREADS > 32 ? 32 : 0;
    for (int i = threadIdx.x - t0; i >= 0 && i < HD / 2; i += LOOM_THREADS - t0)
        rope_sincos((float)step * inv_freq[i], sm + L::SIN + i, sm + L::COS + i);
    for (int i = threadIdx.x - t0; i >= 0 && i < HD; i += LOOM_THREADS - t0) {
        if (QNORM)
            sm[L::QN + i] = ((const float *)d.norm)[i];
        if (KNORM)
            sm[L::KN + i] = ((const float *)d.norm2)[i];
    }
}

// Before the task's wait: none of this depends on the step's data. The
// RoPE angles of position step, the norm weights, and (PRE) the K/V rows of
// the warp's first batch of positions below step - written in earlier steps
// and published to this CTA by an acquire it made earlier in this step
// (acq: the megakernel saw a counter wait of this step end; every task of a
// step waits, through embed, on everything of the step before). Released
// counters only (not LOOM_LL_ALL): LL modes 1-3 publish no release to
// acquire.
template <int HD, int G, bool QNORM, bool KNORM>
__device__ __forceinline__ void attention_prefetch(const loom_kparams &p, const loom_dop &d,
                                                   const loom_dtask *t, int step, bool acq,
                                                   uint4 (&pre)[LOOM_PRELOAD])
{
    if (LOOM_ATTN_EARLY)
        attention_tables<HD, G, QNORM, KNORM>(p, d, step);
    constexpr int PB = attn_positions_per_batch(HD, G);
    if (!attn_preloads(HD, G) || !acq)
        return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int p0, p1;
    attn_range(step, t->split, d.split, p0, p1);
    const bf16raw *kc = (const bf16raw *)d.kcache, *vc = (const bf16raw *)d.vcache;
#pragma unroll
    for (int b = 0; b < (PB < LOOM_PRELOAD ? PB : LOOM_PRELOAD); b++) {
        const int pos = p0 + warp + b * LOOM_WARPS;
        if (pos < p1 && pos < step) {
            const u64 base = (kv_slot(pos) * LOOM_N_KV + t->group) * HD + (u64)lane * 4;
            const uint2 k = ld_kv8(kc + base), v = ld_kv8(vc + base);
            pre[b] = make_uint4(k.x, k.y, v.x, v.y);
        }
    }
}

// ATTN_MERGE of group t->group: its partials (G heads x split x {o, m, l})
// first into shared memory, 8 words per thread in flight (the task scratch
// holds them: codegen's scratch_bytes), then one thread per (head,
// element). Also the merge an attention that merges itself runs
// (attn_arrive).
template <int HD, int G>
__device__ __forceinline__ void attn_merge_task(const loom_kparams &p, const loom_dop &d,
                                                const loom_dtask *t, int step)
{
    ll_wait w = ll_begin(p, t, step, nullptr, 0);
    constexpr int ST = HD + 2, K = 8;
    const int g = t->group, split = d.split, n = G * split * ST, e0 = g * n;
    float *ps = LOOM_SMEM;

    for (int j0 = threadIdx.x; j0 < n; j0 += K * LOOM_THREADS) {
        int idx[K];
        float v[K];
#pragma unroll
        for (int k = 0; k < K; k++)
            idx[k] = j0 + k * LOOM_THREADS < n ? e0 + j0 + k * LOOM_THREADS : -1;
        ld_act_n(p, d.aux, idx, v, w);
#pragma unroll
        for (int k = 0; k < K; k++)
            if (idx[k] >= 0)
                ps[j0 + k * LOOM_THREADS] = v[k];
    }
    __syncthreads();
    for (int k = threadIdx.x; k < G * HD; k += LOOM_THREADS) {
        const int h = k / HD, i = k % HD, head = g * G + h;
        const float *e = ps + h * split * ST;
        float M = loom_neg_inf(), den = 0.0f, y = 0.0f;
        for (int s = 0; s < split; s++)
            M = fmaxf(M, e[s * ST + HD]);
        for (int s = 0; s < split; s++) {
            float a = expf(e[s * ST + HD] - M);
            den += a * e[s * ST + HD + 1];
            y += a * e[s * ST + i];
        }
        st_act_y(d.y, (u64)head * HD + i, y / den, w.tag);
    }
}

// An attention that merges itself (program.h arrive): after its partials,
// the tile arrives at its group's counter; the last of the step's arrivals
// merges the group and signals (loom_signal), the others do not. The
// barrier orders every thread's partials before thread 0's add, whose
// release half publishes them and whose acquire half (the last one's)
// makes all the group's visible, as a counter wait does: after the next
// barrier every thread's loads go through L2.
template <int HD, int G>
__device__ __forceinline__ void attn_arrive(const loom_kparams &p, const loom_dop &d,
                                            const loom_dtask *t, int step)
{
    loom_wait_state *ws = (loom_wait_state *)loom_smem4;
    __syncthreads();
    if (threadIdx.x == 0) {
        const u32 n = atom_acq_rel_add((u32 *)p.counters + d.arrive + t->group, 1u) + 1u;
        ws->no_signal = n < (u32)d.split * (u32)(step + 1);
    }
    __syncthreads();
    ATTN_PHASE(4);
    if (*(volatile int *)&ws->no_signal)
        return;
    attn_merge_task<HD, G>(p, d, t, step);
}

#ifndef LOOM_ATTN_PLAIN_ALL
#define LOOM_ATTN_PLAIN_ALL 0   // experiments: the plain batches' loop at any G
#endif
// (at G = 4, 8B on the H100: 16 bytes spilled, 4096 positions 5.834 ->
// 5.778 ms but 64 positions 5.341 -> 5.395; with LOOM_ATTN_PB=2, no spill,
// 5.795 at 4096. Off: perf-notes v16.)

// acq and pre: as attention_prefetch had them (pre holds the first batch's
// K/V rows when it loaded them).
template <int HD, int G, bool QNORM, bool KNORM, bool MERGE>
__device__ __forceinline__ void attention_task(const loom_kparams &p, const loom_dop &d,
                                               const loom_dtask *t, int step, bool acq,
                                               const uint4 (&pre)[LOOM_PRELOAD])
{
    constexpr int EPL = (HD + 31) / 32;             // elements per lane
    constexpr int ST = HD + 2;                      // {o[HD], m, l}
    constexpr bool VEC = HD == 32 * EPL;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = t->group, s = t->split, split = d.split;
    int p0, p1;
    attn_range(step, s, split, p0, p1);
    const float scale = 1.0f / sqrtf((float)HD);   // folded into q
    float *qs = LOOM_SMEM;                          // G * HD
    float *st = LOOM_SMEM + G * HD;                 // LOOM_WARPS * G * ST

    // q (and split 0's cache entries at step, also kept in shared memory);
    // the barrier publishes them to the block and tells every thread whether
    // one gave up on its qkv input.
    if (!LOOM_ATTN_EARLY) {
        attention_tables<HD, G, QNORM, KNORM>(p, d, step);
        __syncthreads();
    }
    attention_qkv<HD, G, QNORM, KNORM>(p, d, t, g, step, s == 0, qs);
    __syncthreads();
    ATTN_PHASE(1);
    if (LOOM_LL_ALL && *(volatile int *)&((loom_wait_state *)loom_smem4)->failed)
        return;

    // Lane owns elements lane * EPL .. lane * EPL + EPL - 1 of a head
    // (contiguous: one load of EPL bf16 per row), its q in registers.
    float q[G][EPL], m[G], l[G], o[G][EPL];
#pragma unroll
    for (int h = 0; h < G; h++) {
        m[h] = loom_neg_inf();
        l[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            const int i = lane * EPL + e;
            q[h][e] = i < HD ? qs[h * HD + i] * scale : 0.0f;
            o[h][e] = 0.0f;
        }
    }
    const bf16raw *kc = (const bf16raw *)d.kcache, *vc = (const bf16raw *)d.vcache;
    // PB positions per warp at a time: their K and V rows are all loaded
    // before any is used (one L2 round trip for PB positions), their PB * G
    // scores reduced together (warp_sum_n), and the online softmax corrected
    // once per batch, so the chain of dependent shuffles and exponentials is
    // per batch, not per position and head.
    constexpr int PB = attn_positions_per_batch(HD, G);
    constexpr int NS = pow2_at_least(PB * G);
    // The rows of the first batch below step came before the wait (pre);
    // split 0's row at step is in shared memory (attention_qkv).
    const bool preloaded = attn_preloads(HD, G) && acq;
    const bf16raw *now = (const bf16raw *)(LOOM_SMEM + attn_smem<HD, G>::KV);
    for (int pos0 = p0 + warp, first = 1; pos0 < p1; pos0 += LOOM_WARPS * PB, first = 0) {
        float kv[PB][EPL], vv[PB][EPL];
        // Most batches read every row from the cache: that path alone, its
        // loads all in flight at once (with the two other sources in the
        // same unrolled loop, 0.6B at 4096 positions was 6% slower; perf-notes
        // v15). Only with the preload: at G = 4 (8B) the second copy spills.
        const bool plain = (attn_preloads(HD, G) || LOOM_ATTN_PLAIN_ALL) &&
                           !(preloaded && first) &&
                           !(pos0 <= step && step < pos0 + LOOM_WARPS * PB);
        if (plain) {
#pragma unroll
            for (int b = 0; b < PB; b++)
                kv_rows_load<HD, EPL, VEC>(kc, vc, pos0 + b * LOOM_WARPS, p0, p1, g, kv[b], vv[b]);
        }
#pragma unroll
        for (int b = 0; b < PB && !plain; b++) {
            const int pos = pos0 + b * LOOM_WARPS;
            if (pos < p1 && pos == step) {
#pragma unroll
                for (int e = 0; e < EPL; e++) {
                    const int i = lane * EPL + e;
                    kv[b][e] = i < HD ? bf16_to_f32(now[i]) : 0.0f;
                    vv[b][e] = i < HD ? bf16_to_f32(now[HD + i]) : 0.0f;
                }
            } else if (preloaded && first && pos < p1) {
                const uint4 r = pre[b < LOOM_PRELOAD ? b : 0];   // EPL == 4
                bf16x4_unpack<EPL>(r.x, r.y, kv[b]);
                bf16x4_unpack<EPL>(r.z, r.w, vv[b]);
            } else {
                kv_rows_load<HD, EPL, VEC>(kc, vc, pos, p0, p1, g, kv[b], vv[b]);
            }
        }
        float sc[NS];
#pragma unroll
        for (int i = 0; i < NS; i++) {
            const int b = i / G, h = i % G;
            float dot = 0.0f;
            if (i < PB * G) {
#pragma unroll
                for (int e = 0; e < EPL; e++)
                    dot = fmaf(q[h][e], kv[b < PB ? b : 0][e], dot);
            }
            sc[i] = dot;
        }
        warp_sum_n<NS>(sc);
#pragma unroll
        for (int h = 0; h < G; h++) {
            float mn = m[h];
#pragma unroll
            for (int b = 0; b < PB; b++)
                if (pos0 + b * LOOM_WARPS < p1)
                    mn = fmaxf(mn, sc[b * G + h]);
            const float corr = expf(m[h] - mn);   // m = -inf (first batch): 0
            l[h] *= corr;
#pragma unroll
            for (int e = 0; e < EPL; e++)
                o[h][e] *= corr;
#pragma unroll
            for (int b = 0; b < PB; b++) {
                // past p1: pe = 0 (its v reads as zeros)
                const float pe = pos0 + b * LOOM_WARPS < p1 ? expf(sc[b * G + h] - mn) : 0.0f;
                l[h] += pe;
#pragma unroll
                for (int e = 0; e < EPL; e++)
                    o[h][e] = fmaf(pe, vv[b][e], o[h][e]);
            }
            m[h] = mn;
        }
    }
    ATTN_PHASE(2);
    // This warp's states into shared memory.
#pragma unroll
    for (int h = 0; h < G; h++) {
        float *sw = st + (warp * G + h) * ST;
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            const int i = lane * EPL + e;
            if (i < HD)
                sw[i] = o[h][e];
        }
        if (lane == 0) {
            sw[HD] = m[h];
            sw[HD + 1] = l[h];
        }
    }
    // LL: the K/V rows split 0 stored are read by other SMs in later steps,
    // after no counter's release: thread 0's gpu-scope fence (cumulative
    // over the rows, which the barrier after attention_qkv ordered before
    // it) publishes them before any of this task's outputs. It costs little
    // here: those stores were acknowledged long ago.
    if (LOOM_LL_ALL && LOOM_LL_KV_FENCE && s == 0 && threadIdx.x == 0)
        __threadfence();
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
        const u32 tag = ll_tag(p, step);
        if (split == 1) {
            st_act_y(d.y, (u64)head * HD + i, O / L, tag);
        } else {
            const u64 e = ((u64)head * split + s) * ST;
            st_act(d.aux, e + i, O, tag);
            if (i == 0) {
                st_act(d.aux, e + HD, M, tag);
                st_act(d.aux, e + HD + 1, L, tag);
            }
        }
    }
    ATTN_PHASE(3);
    if (MERGE && split > 1)
        attn_arrive<HD, G>(p, d, t, step);
}
