// linear.cuh - LINEAR as a GEMV over one tile of rows of a bf16 weight:
// y[r] = epi(sum_c W[r, c] * pro(x)[c]) for r in [row_begin, row_end).
//
// The input vector (RMSNorm'ed when PRO) is staged in shared memory as fp32.
// Each warp owns pairs of rows; each lane streams 16-byte chunks (8 bf16) of
// both rows, LOOM_LIN_UNROLL chunks per row in flight, fp32 accumulation,
// then a warp reduction. A task is split in linear_prefetch (weights only,
// runs before the task's waits: the tile's first rows go to shared memory
// by bulk copy on Hopper, common.cuh "Weight staging"; the first rows read
// from global memory go to registers and L2) and linear_task (after them).
//
// ACCUM (the fused MLP's down) is linear_accum_task, at the end.
//
// defines: linear_prefetch, linear_task, linear_accum_task
#pragma once

// Chunks per row in flight: 8 for wide rows on Hopper (8B's 4096-12288
// columns: 2.6% faster on the H100), 4 for narrow ones (8 was slower on 0.6B)
// and on sm_80 (where 8 spills).
#ifndef LOOM_LIN_UNROLL_WIDE
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define LOOM_LIN_UNROLL_WIDE 8
#else
#define LOOM_LIN_UNROLL_WIDE 4
#endif
#endif
#define LOOM_LIN_UNROLL_FOR(cols) ((cols) >= 4096 ? LOOM_LIN_UNROLL_WIDE : LOOM_LIN_UNROLL)
#ifndef LOOM_LIN_UNROLL
#define LOOM_LIN_UNROLL 4
#endif

enum { LOOM_PRO_NONE = 0, LOOM_PRO_RMSNORM = 1 };
enum { LOOM_EPI_STORE = 0, LOOM_EPI_RESIDUAL = 1, LOOM_EPI_SILU_MUL = 2, LOOM_EPI_ARGMAX = 3,
       LOOM_EPI_ACCUM = 4 };

// linear_task's FIX: which of its tensors are the fused MLP's fixed-point
// residual stream (graph.h; codegen.c fix_flags), and (LL_X) whether x is LL
// words (common.cuh "activations").
enum { LOOM_FIX_X = 1, LOOM_FIX_RESID = 2, LOOM_FIX_AUX = 4, LOOM_FIX_LL_X = 8 };

#ifndef LOOM_PREFETCH_BYTES
#define LOOM_PREFETCH_BYTES 16384   // measured best on the H100 (perf-notes)
#endif

// Weights a warp loads into registers before its task's wait: the first
// chunk group (LOOM_LIN_UNROLL 16-byte vectors) of its first two rows.
#define LOOM_PRELOAD (2 * LOOM_LIN_UNROLL)

// The thread that issues the next task's pieces once x is in (two slots;
// common.cuh stage_hand_over): the last warp's first, which has
// the fewest row pairs - thread 0's warp has the most, and issuing the
// pieces held its first pair back by 0.2-0.5 us (0.6B on the H100: 0.691 /
// 0.694 -> 0.688 / 0.688 ms, perf-notes v22). 0 (experiments): thread 0.
#ifndef LOOM_LIN_HAND_TO
#define LOOM_LIN_HAND_TO (LOOM_THREADS - 32)
#endif
// How many of those pieces it issues then (0: all); thread 0 issues the rest
// after the task's release (megakernel.cuh). 2 (of 16 KB): 0.6B 0.673-0.687
// -> 0.656-0.659 ms, at 4096 positions 0.946 -> 0.923 (1: 0.673-0.679, 3:
// 0.663-0.677; all after the release, v21: 5-6% slower; H100, perf-notes
// v22).
#ifndef LOOM_LIN_HAND_PIECES
#define LOOM_LIN_HAND_PIECES 2
#endif

// -DLOOM_LIN_PHASE=k (trace.cuh): a linear task's points - 1 thread 0's
// share of x in, 2 past the CTA barrier (all of x, the staged rows landed),
// 3 the next task's copy pumped and the norm's scale taken, 4 thread 0's
// pairs done (their outputs stored).
#if defined(LOOM_LIN_PHASE) && defined(LOOM_TRACE)
#define LIN_PHASE(k) LOOM_PHASE_POINT(LOOM_LIN_PHASE, k, step, loom_task_id(t))
#else
#define LIN_PHASE(k) ((void)0)
#endif

// Rows of linear task t's tile a staging slot takes: all, or as many as fit
// rounded down to an even count (row pairs are both staged or both not).
__device__ __forceinline__ int stage_rows(const loom_dtask *t, const loom_dop &d)
{
    const int rows = t->row_end - t->row_begin;
    const int fit = LOOM_STAGE ? LOOM_STAGE_BYTES / (d.cols * 2) : 0;
    return rows <= fit ? rows : (fit & ~1);
}

// Before the wait (weights depend on nothing; the staged rows are on their
// way, megakernel.cuh stage_ahead): without staging, each warp loads the
// first chunk group of its first row pair into registers (linear_task
// starts from them); the LOOM_PREFETCH_BYTES after the staged rows go
// toward L2. PRE false (ACCUM, which reads rows its own way): no registers.
template <int COLS, bool PRE = true>
__device__ __forceinline__ void linear_prefetch(const loom_dop &d, const loom_dtask *t,
                                                uint4 (&pre)[LOOM_PRELOAD], stage_state &sg)
{
    constexpr int CH = COLS / 8, U = LOOM_LIN_UNROLL;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int rb = t->row_begin, h = sg.cur.rows;
    const bf16raw *W = (const bf16raw *)d.w;
    const int r0 = rb + 2 * warp;   // with staging the tile's head is staged already
    if (PRE && !LOOM_STAGE && r0 < t->row_end) {
        const int r1 = r0 + 1 < t->row_end ? r0 + 1 : r0;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int cc = lane + 32 * u;
            if (cc < CH) {
                pre[u] = ld_weight16(W + (u64)r0 * COLS + cc * 8);
                pre[U + u] = ld_weight16(W + (u64)r1 * COLS + cc * 8);
            }
        }
    }
    const char *w = (const char *)d.w + (u64)(rb + h) * COLS * 2;
    u64 bytes = (u64)(t->row_end - rb - h) * COLS * 2;
    if (bytes > (u64)LOOM_PREFETCH_BYTES)
        bytes = (u64)LOOM_PREFETCH_BYTES;
    for (u64 off = (u64)threadIdx.x * 128; off < bytes; off += (u64)LOOM_THREADS * 128)
        prefetch_l2(w + off);
}

// 8 bf16 weights (one 16-byte chunk) dot 8 fp32 inputs.
__device__ __forceinline__ float dot8(uint4 w, float4 xa, float4 xb, float acc)
{
    acc = fmaf(bf16_lo(w.x), xa.x, acc);
    acc = fmaf(bf16_hi(w.x), xa.y, acc);
    acc = fmaf(bf16_lo(w.y), xa.z, acc);
    acc = fmaf(bf16_hi(w.y), xa.w, acc);
    acc = fmaf(bf16_lo(w.z), xb.x, acc);
    acc = fmaf(bf16_hi(w.z), xb.y, acc);
    acc = fmaf(bf16_lo(w.w), xb.z, acc);
    acc = fmaf(bf16_hi(w.w), xb.w, acc);
    return acc;
}

// Where x's float4 number c lives in the task's shared copy xs: a chunk's
// (8 columns') first half in the first COLS / 2 floats, its second half in
// the rest. A warp's loads of x in dot_rows2 then read consecutive 16-byte
// words, one per lane; the natural order (a lane's 32 bytes together) put
// two lanes of every quarter-warp on the same banks, and x's reads, as many
// bytes as the weights', took twice their time.
// (-DLOOM_XS_SPLIT=0, experiments: the natural order.)
#ifndef LOOM_XS_SPLIT
#define LOOM_XS_SPLIT 1
#endif
template <int COLS>
__device__ __forceinline__ int xs_at(int c)
{
    return LOOM_XS_SPLIT ? (c & 1) * (COLS / 8) + (c >> 1) : c;
}

// The same for element i of x: its float index in xs.
template <int COLS>
__device__ __forceinline__ int xs_elem(int i)
{
    return 4 * xs_at<COLS>(i >> 2) + (i & 3);
}

// 16 bytes of weights: staged (shared memory) or from global memory.
template <bool STAGED>
__device__ __forceinline__ uint4 ld_w16(const bf16raw *p)
{
    return STAGED ? ld_shared16(p) : ld_weight16_sched(p);
}

// Lane's partial dot products of rows w0 and w1 (in the staging buffer when
// STAGED) with xs (shared, fp32, laid out by xs_at).
template <int COLS, bool STAGED>
__device__ __forceinline__ void dot_rows2(const bf16raw *w0, const bf16raw *w1,
                                          const float *xs, float &a0, float &a1,
                                          const uint4 (&pre)[LOOM_PRELOAD], bool use_pre)
{
    constexpr int CH = COLS / 8;
    // shared memory answers in tens of cycles: fewer loads in flight do
    constexpr int U = STAGED ? LOOM_LIN_UNROLL : LOOM_LIN_UNROLL_FOR(COLS);
    constexpr int P = LOOM_LIN_UNROLL;   // chunks preloaded before the wait
    const int lane = threadIdx.x & 31;
    const float4 *x4 = (const float4 *)xs;

#pragma unroll 1
    for (int c = lane; c < CH; c += 32 * U) {
        uint4 v0[U], v1[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int cc = c + 32 * u;
            if (cc < CH) {
                if (u < P && use_pre && c == lane) {   // loaded before the wait
                    v0[u] = pre[u < P ? u : 0];
                    v1[u] = pre[P + (u < P ? u : 0)];
                } else {
                    v0[u] = ld_w16<STAGED>(w0 + cc * 8);
                    v1[u] = ld_w16<STAGED>(w1 + cc * 8);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int cc = c + 32 * u;
            if (cc < CH) {
                const float4 xa = x4[xs_at<COLS>(2 * cc)], xb = x4[xs_at<COLS>(2 * cc + 1)];
                a0 = dot8(v0[u], xa, xb, a0);
                a1 = dot8(v1[u], xa, xb, a1);
            }
        }
    }
}

// x into shared memory, times the RMSNorm weight when PRO: xs[c] = w[c] *
// x[c]; each warp's partial sum of squares into red[warp]. No barrier: the
// caller's next CTA barrier (the staging wait's, or its own) publishes both,
// and linear_norm_scale then gives the norm's scale 1 / rms(x), which the
// caller applies to the dot products (sum_c W[r,c] w[c] x[c] * inv equals
// the reference's sum_c W[r,c] (w[c] (inv x[c])) up to rounding). So the
// reduction costs no barrier of its own and x one L2 round trip.
// xc: the task's LOOM_XCHECK slot (nullptr: not recorded). XFIX: x is the
// fixed-point residual stream (converted here).
template <int COLS, int PRO, bool XFIX = false>
__device__ __forceinline__ void linear_stage_x(const loom_dop &d, float *xs, float *red,
                                               u32 *xc = nullptr)
{
    const float4 *x4 = (const float4 *)d.x, *n4 = (const float4 *)d.norm;
    float ss = 0.0f;

    for (int c = threadIdx.x; c < COLS / 4; c += LOOM_THREADS) {
        float4 v = XFIX ? ldcg_fix4((const long long *)d.x, c) : ldcg4(x4 + c);
        xc_add(xc, (c * 8) / (COLS / 4), xc_bits4(v));
        if (PRO == LOOM_PRO_RMSNORM) {
            const float4 w = n4[c];
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            v.x *= w.x;
            v.y *= w.y;
            v.z *= w.z;
            v.w *= w.w;
        }
        ((float4 *)xs)[xs_at<COLS>(c)] = v;
    }
    if (PRO == LOOM_PRO_RMSNORM) {
        ss = warp_sum(ss);
        if ((threadIdx.x & 31) == 0)
            red[threadIdx.x >> 5] = ss;
    }
}

// The same from LL words (common.cuh "activations"): thread c reads the
// 16-byte loads c + k * LOOM_THREADS (LL_E elements each), issues every
// load at once, then polls those still missing - all of them while they are
// at most LOOM_LL_POLL, else the first one. Thread 0 issues a piece of the
// weights per poll and the rest of the tile's pieces once its own x is in.
// false: gave up (the CTA's failed flag is set).
template <int COLS, int PRO>
__device__ __forceinline__ bool linear_stage_x_ll(const loom_kparams &p, const loom_dop &d,
                                                  float *xs, float *red, ll_wait &w,
                                                  stage_state &sg, u32 *xc)
{
    constexpr int NP = COLS / LL_E, PER = (NP + LOOM_THREADS - 1) / LOOM_THREADS;
    static_assert(PER <= 32, "linear_stage_x_ll: a miss mask of 32 loads per thread");
    const float *nw = (const float *)d.norm;
    float ss = 0.0f;
    u32 miss = 0;
#pragma unroll
    for (int k = 0; k < PER; k++)
        miss |= threadIdx.x + k * LOOM_THREADS < NP ? 1u << k : 0u;
    bool ok = true;
    for (bool all = true; miss != 0;) {
        const int only = __ffs(miss) - 1;
#pragma unroll
        for (int k = 0; k < PER; k++) {
            const int c = threadIdx.x + k * LOOM_THREADS;
            float v[LL_E];
            if ((miss >> k & 1u) && (all || k == only) && ld_ll16(d.x, c, w.tag, v)) {
                miss &= ~(1u << k);
                u32 bits = 0;
#pragma unroll
                for (int e = 0; e < LL_E; e++) {
                    bits += __float_as_uint(v[e]);
                    if (PRO == LOOM_PRO_RMSNORM) {
                        ss += v[e] * v[e];
                        v[e] *= nw[LL_E * c + e];
                    }
                    xs[xs_elem<COLS>(LL_E * c + e)] = v[e];
                }
                xc_add(xc, (LL_E * c * 8) / COLS, bits);
            }
        }
        if (miss == 0)
            break;
        all = __popc(miss) <= LOOM_LL_POLL;
        if (!ll_poll(p, w, (u32)(LL_E * (threadIdx.x + (__ffs(miss) - 1) * LOOM_THREADS)))) {
            ok = false;
            break;
        }
    }
    if (threadIdx.x == 0)
        stage_pump_all(sg.cur);   // the rest of the tile's rows
    if (PRO == LOOM_PRO_RMSNORM) {
        ss = warp_sum(ss);
        if ((threadIdx.x & 31) == 0)
            red[threadIdx.x >> 5] = ss;
    }
    return ok;
}

// After the barrier that follows linear_stage_x: the RMSNorm scale
// 1 / sqrt(mean(x^2) + eps) (every thread sums the warps' partials), or 1.
template <int COLS, int PRO>
__device__ __forceinline__ float linear_norm_scale(const float *red)
{
    if (PRO != LOOM_PRO_RMSNORM)
        return 1.0f;
    const int lane = threadIdx.x & 31;
    float s = warp_sum(lane < LOOM_WARPS ? red[lane] : 0.0f);
    return 1.0f / sqrtf(s / (float)COLS + LOOM_EPS);
}

// The early load of a residual element: ld_act_raw's word, or (FIX) the
// fixed-point value's.
template <bool FIX>
__device__ __forceinline__ u64 ld_resid_raw(u64 resid, int i)
{
    return FIX ? (u64)ldcg_s64((const long long *)resid + i) : ld_act_raw(resid, i);
}

__device__ __forceinline__ float silu(float g)
{
    return g * (1.0f / (1.0f + expf(-g)));
}

// The block's best {value, row} of the ARGMAX epilogue into aux[tile].
__device__ __forceinline__ void linear_argmax_reduce(const loom_dop &d, const loom_dtask *t,
                                                     float bv, float br, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        red[2 * warp] = bv;
        red[2 * warp + 1] = br;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = red[0], r = red[1];
        for (int i = 1; i < LOOM_WARPS; i++)
            if (argmax_better(red[2 * i], red[2 * i + 1], v, r)) {
                v = red[2 * i];
                r = red[2 * i + 1];
            }
        float *aux = (float *)d.aux + 2 * t->tile;
        aux[0] = v;
        aux[1] = r;
    }
}

template <int COLS, int PRO, int EPI, bool BIAS, int FIX = 0>
__device__ __forceinline__ void linear_task(const loom_kparams &p, const loom_dop &d,
                                            const loom_dtask *t, int step,
                                            const uint4 (&pre)[LOOM_PRELOAD], stage_state &sg)
{
    float *xs = LOOM_SMEM;
    float *red = LOOM_SMEM + COLS;      // 2 * LOOM_WARPS floats
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int rb = t->row_begin, re = t->row_end;
    const bf16raw *W = (const bf16raw *)d.w;
    float *y = (float *)d.y;
    float best_v = loom_neg_inf(), best_r = (float)rb;
    u32 *xc = xc_slot(t, step);
#define XC_OUT(i, v) xc_out(xc, t, step, (i), (v))

    ll_wait w = ll_begin(p, t, step, &sg, 0);
    if (FIX & LOOM_FIX_LL_X) {
        linear_stage_x_ll<COLS, PRO>(p, d, xs, red, w, sg, xc);
    } else {
        linear_stage_x<COLS, PRO, (FIX & LOOM_FIX_X) != 0>(d, xs, red, xc);
    }
    LIN_PHASE(1);
    if (EPI == LOOM_EPI_ARGMAX)
        y += (LOOM_LOGITS_BY_STEP ? (u64)step : 0ull) * (u64)d.rows;
    // One CTA barrier publishes xs and red: the staging wait's when rows
    // rb .. rb + h - 1 are staged in slot sg.cur.slot (h is 0 on sm_80),
    // else a plain one. After it every thread sees whether one gave up on x.
    const int h = sg.cur.rows;
    stage_hand_note(sg.nxt);   // published by the barrier
    if (h > 0) {
        if (!stage_wait(p, sg, loom_task_id(t), step))
            return;
    } else {
        __syncthreads();
    }
    if ((LOOM_LL_ALL || (FIX & LOOM_FIX_LL_X)) &&
        *(volatile int *)&((loom_wait_state *)loom_smem4)->failed)
        return;
    LIN_PHASE(2);
    const u32 tag = w.tag;
    w.input = 1;   // resid from here on
    // x is in: the next task's rows (two slots) may stream behind this
    // task's own now, issued by LOOM_LIN_HAND_TO.
    stage_hand_over(sg.nxt, LOOM_LIN_HAND_TO, LOOM_LIN_HAND_PIECES);
    const float inv = linear_norm_scale<COLS, PRO>(red);
    LIN_PHASE(3);
    const bf16raw *S = (const bf16raw *)LOOM_STAGE_DATA(sg.cur.slot);   // row rb

    // RESIDUAL: the warp's first pair's residuals are loaded now (lane 0),
    // their L2 round trip hidden behind the dot products: as raw words,
    // whose LL tags are checked only where they are used (a check here
    // would wait for the round trip: 8% slower at 0.6B).
    // (FIX_RESID: the words are fixed-point values.)
    const u64 resid = d.resid;
    u64 rw0 = 0, rw1 = 0;
    if (EPI == LOOM_EPI_RESIDUAL && lane == 0 && rb + 2 * warp < re) {
        const int r0 = rb + 2 * warp;
        rw0 = ld_resid_raw<(FIX & LOOM_FIX_RESID) != 0>(resid, r0);
        rw1 = ld_resid_raw<(FIX & LOOM_FIX_RESID) != 0>(resid, r0 + 1 < re ? r0 + 1 : r0);
    }

    for (int r0 = rb + 2 * warp; r0 < re; r0 += 2 * LOOM_WARPS) {
        const int r1 = r0 + 1 < re ? r0 + 1 : r0;
        float a0 = 0.0f, a1 = 0.0f;
        if (LOOM_STAGE && r0 < rb + h)
            dot_rows2<COLS, true>(S + (u64)(r0 - rb) * COLS, S + (u64)(r1 - rb) * COLS, xs,
                                  a0, a1, pre, false);
        else
            dot_rows2<COLS, false>(W + (u64)r0 * COLS, W + (u64)r1 * COLS, xs, a0, a1, pre,
                                   !LOOM_STAGE && r0 == rb + 2 * warp);
        a0 = warp_sum(a0) * inv;
        a1 = warp_sum(a1) * inv;
        if (lane != 0)
            continue;
        if (EPI == LOOM_EPI_SILU_MUL) {
            const float v = silu(a0) * a1;   // r0 even: tiles hold whole pairs
            st_act(d.y, r0 / 2, v, tag);
            XC_OUT(r0 / 2, v);
        } else if (EPI == LOOM_EPI_RESIDUAL) {
            constexpr bool RF = (FIX & LOOM_FIX_RESID) != 0;
            if (r0 != rb + 2 * warp) {
                rw0 = ld_resid_raw<RF>(resid, r0);
                rw1 = ld_resid_raw<RF>(resid, r1);
            }
            const float res0 = RF ? fix_to_f32((long long)rw0)
                                  : ld_act_settle(p, resid, r0, rw0, w);
            const float res1 = RF ? fix_to_f32((long long)rw1)
                                  : ld_act_settle(p, resid, r1, rw1, w);
            float v0 = res0 + a0, v1 = res1 + a1;
            st_act(d.y, r0, v0, tag);
            XC_OUT(r0, v0);
            if (FIX & LOOM_FIX_AUX)   // the first term of the fused MLP's sum
                ((long long *)d.aux)[r0] = fix_from_f32(v0);
            if (r1 != r0) {
                st_act(d.y, r1, v1, tag);
                XC_OUT(r1, v1);
                if (FIX & LOOM_FIX_AUX)
                    ((long long *)d.aux)[r1] = fix_from_f32(v1);
            }
        } else if (EPI == LOOM_EPI_ARGMAX) {
            y[r0] = a0;
            if (argmax_better(a0, (float)r0, best_v, best_r)) {
                best_v = a0;
                best_r = (float)r0;
            }
            if (r1 != r0) {
                y[r1] = a1;
                if (argmax_better(a1, (float)r1, best_v, best_r)) {
                    best_v = a1;
                    best_r = (float)r1;
                }
            }
        } else {
            if (BIAS) {
                a0 += ((const float *)d.bias)[r0];
                a1 += ((const float *)d.bias)[r1];
            }
            st_act(d.y, r0, a0, tag);
            XC_OUT(r0, a0);
            if (r1 != r0) {
                st_act(d.y, r1, a1, tag);
                XC_OUT(r1, a1);
            }
        }
    }
#undef XC_OUT
    LIN_PHASE(4);
    if (EPI == LOOM_EPI_ARGMAX) {
        __syncthreads();
        linear_argmax_reduce(d, t, best_v, best_r, red);
    }
}

// ------------------------------------------------------------ ACCUM

// Rows in flight per thread from global memory (staged rows: 4).
#ifndef LOOM_ACCUM_UNROLL
#define LOOM_ACCUM_UNROLL 8
#endif

// Rows r = first, first + step, ... < end of W (base: row `base_row`, in the
// staging buffer when STAGED) times x[r], into the thread's column sums:
// chunk c0 + k * LOOM_THREADS of each row (8 columns) into acc[k]. U rows
// in flight, their x loaded with them (this SM wrote x: L2 answers).
template <int COLS, int CPT, bool STAGED>
__device__ __forceinline__ void accum_rows(const bf16raw *base, int base_row, const float *x,
                                           int first, int end, int step, int c0,
                                           float (&acc)[CPT][8])
{
    constexpr int CH = COLS / 8, U = STAGED ? 4 : LOOM_ACCUM_UNROLL;
#pragma unroll 1
    for (int r = first; r < end; r += U * step) {
        uint4 v[U][CPT];
        float xv[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int rr = r + u * step;
            xv[u] = rr < end ? ldcg(x + rr) : 0.0f;
#pragma unroll
            for (int k = 0; k < CPT; k++) {
                const int cc = c0 + k * LOOM_THREADS;
                v[u][k] = rr < end && cc < CH
                              ? ld_w16<STAGED>(base + (u64)(rr - base_row) * COLS + cc * 8)
                              : make_uint4(0u, 0u, 0u, 0u);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
#pragma unroll
            for (int k = 0; k < CPT; k++) {
                const uint4 w = v[u][k];
                acc[k][0] = fmaf(bf16_lo(w.x), xv[u], acc[k][0]);
                acc[k][1] = fmaf(bf16_hi(w.x), xv[u], acc[k][1]);
                acc[k][2] = fmaf(bf16_lo(w.y), xv[u], acc[k][2]);
                acc[k][3] = fmaf(bf16_hi(w.y), xv[u], acc[k][3]);
                acc[k][4] = fmaf(bf16_lo(w.z), xv[u], acc[k][4]);
                acc[k][5] = fmaf(bf16_hi(w.z), xv[u], acc[k][5]);
                acc[k][6] = fmaf(bf16_lo(w.w), xv[u], acc[k][6]);
                acc[k][7] = fmaf(bf16_hi(w.w), xv[u], acc[k][7]);
            }
        }
    }
}

// ACCUM (graph.h; the fused MLP's down): W is the model's w_down
// transposed, so the tile's rows [rb, re) - the outputs of gate_up's tile
// of the same index, which ran just before on this SM (partition, schedule)
// - are contiguous. y[c] += fix(sum_r W[r, c] * x[r]) for every column c.
// Thread i owns chunk i % CH of the rows (8 columns) in row group i / CH:
// RG = LOOM_THREADS / CH groups take rows g, g + RG, ... (2048 columns:
// 256 chunks, two groups); wider rows have one group and CPT chunks a
// thread. No wait: x is this SM's, published by the barrier that ended
// gate_up's task (loom_signal). The rows from global memory first, while
// the staged ones land; the groups' sums meet in shared memory in group
// order (the term is the same every run), and each column's term goes to y
// by one 64-bit atomic add, which the task's signal releases.
template <int COLS>
__device__ __forceinline__ void linear_accum_task(const loom_kparams &p, const loom_dop &d,
                                                  const loom_dtask *t, int step, stage_state &sg)
{
    constexpr int CH = COLS / 8;
    constexpr int RG = CH >= LOOM_THREADS ? 1 : LOOM_THREADS / CH;
    constexpr int CPT = (CH + LOOM_THREADS - 1) / LOOM_THREADS;
    const int rb = t->row_begin, re = t->row_end, h = sg.cur.rows;
    const int g = RG > 1 ? (int)threadIdx.x / CH : 0;
    const int c0 = RG > 1 ? (int)threadIdx.x % CH : (int)threadIdx.x;
    const bool on = g < RG;
    const float *x = (const float *)d.x;
    long long *y = (long long *)d.y;
    float acc[CPT][8];
#pragma unroll
    for (int k = 0; k < CPT; k++)
#pragma unroll
        for (int j = 0; j < 8; j++)
            acc[k][j] = 0.0f;

    if (on)
        accum_rows<COLS, CPT, false>((const bf16raw *)d.w, 0, x, rb + h + g, re, RG, c0, acc);
    if (h > 0) {
        if (!stage_wait(p, sg, loom_task_id(t), step))
            return;
        if (on)
            accum_rows<COLS, CPT, true>((const bf16raw *)LOOM_STAGE_DATA(sg.cur.slot), rb, x,
                                        rb + g, rb + h, RG, c0, acc);
    }
    if (RG == 1) {
#pragma unroll
        for (int k = 0; k < CPT; k++) {
            const int cc = c0 + k * LOOM_THREADS;
            if (cc < CH)
#pragma unroll
                for (int j = 0; j < 8; j++)
                    red_add_s64(y + cc * 8 + j, fix_from_f32(acc[k][j]));
        }
        return;
    }
    float *part = LOOM_SMEM;   // [RG][COLS] (codegen.c scratch_bytes)
    if (on) {
        float4 *p4 = (float4 *)(part + g * COLS + c0 * 8);
        p4[0] = make_float4(acc[0][0], acc[0][1], acc[0][2], acc[0][3]);
        p4[1] = make_float4(acc[0][4], acc[0][5], acc[0][6], acc[0][7]);
    }
    __syncthreads();
    for (int c = threadIdx.x; c < COLS; c += LOOM_THREADS) {
        float s = part[c];
#pragma unroll
        for (int k = 1; k < RG; k++)
            s += part[k * COLS + c];
        red_add_s64(y + c, fix_from_f32(s));
    }
}
