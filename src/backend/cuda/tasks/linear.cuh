// linear.cuh - LINEAR as a GEMV over one tile of rows of a bf16 weight:
// y[r] = epi(sum_c W[r, c] * pro(x)[c]) for r in [row_begin, row_end).
//
// The input vector (RMSNorm'ed when PRO) is staged in shared memory as fp32.
// Each warp owns pairs of rows; each lane streams 16-byte chunks (8 bf16) of
// both rows, LOOM_LIN_UNROLL chunks per row in flight, fp32 accumulation,
// then a warp reduction. A task is split in linear_prefetch (weights only,
// may run before the task's waits) and linear_task (after them).
//
// defines: linear_prefetch, linear_task
#pragma once

#ifndef LOOM_LIN_UNROLL
#define LOOM_LIN_UNROLL 4
#endif

enum { LOOM_PRO_NONE = 0, LOOM_PRO_RMSNORM = 1 };
enum { LOOM_EPI_STORE = 0, LOOM_EPI_RESIDUAL = 1, LOOM_EPI_SILU_MUL = 2, LOOM_EPI_ARGMAX = 3 };

#ifndef LOOM_PREFETCH_BYTES
#define LOOM_PREFETCH_BYTES (1ull << 40)   // the whole tile
#endif

// Bring the first LOOM_PREFETCH_BYTES of the tile's weights toward L2 (a
// hint; tiles are <= ~256 KB).
template <int COLS>
__device__ __forceinline__ void linear_prefetch(const loom_dop &d, const loom_dtask *t)
{
    const char *w = (const char *)d.w + (u64)t->row_begin * COLS * 2;
    u64 bytes = (u64)(t->row_end - t->row_begin) * COLS * 2;
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

// Lane's partial dot products of rows w0 and w1 with xs (shared, fp32).
template <int COLS>
__device__ __forceinline__ void dot_rows2(const bf16raw *w0, const bf16raw *w1,
                                          const float *xs, float &a0, float &a1)
{
    constexpr int CH = COLS / 8;
    constexpr int U = LOOM_LIN_UNROLL;
    const int lane = threadIdx.x & 31;
    const float4 *x4 = (const float4 *)xs;

#pragma unroll 1
    for (int c = lane; c < CH; c += 32 * U) {
        uint4 v0[U], v1[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int cc = c + 32 * u;
            if (cc < CH) {
                v0[u] = ld_weight16(w0 + cc * 8);
                v1[u] = ld_weight16(w1 + cc * 8);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int cc = c + 32 * u;
            if (cc < CH) {
                float4 xa = x4[2 * cc], xb = x4[2 * cc + 1];
                a0 = dot8(v0[u], xa, xb, a0);
                a1 = dot8(v1[u], xa, xb, a1);
            }
        }
    }
}

// x (and its RMSNorm) into shared memory: xs[c] = w[c] * (inv * x[c]) as the
// CPU reference computes it.
template <int COLS, int PRO>
__device__ __forceinline__ void linear_stage_x(const loom_dop &d, float *xs, float *red)
{
    const float4 *x4 = (const float4 *)d.x;
    float ss = 0.0f;

    for (int c = threadIdx.x; c < COLS / 4; c += LOOM_THREADS) {
        float4 v = x4[c];
        ((float4 *)xs)[c] = v;
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    if (PRO == LOOM_PRO_RMSNORM) {
        const float4 *n4 = (const float4 *)d.norm;
        ss = block_sum(ss, red);
        float inv = 1.0f / sqrtf(ss / (float)COLS + LOOM_EPS);
        for (int c = threadIdx.x; c < COLS / 4; c += LOOM_THREADS) {
            float4 v = ((float4 *)xs)[c], w = n4[c];
            v.x = w.x * (inv * v.x);
            v.y = w.y * (inv * v.y);
            v.z = w.z * (inv * v.z);
            v.w = w.w * (inv * v.w);
            ((float4 *)xs)[c] = v;
        }
    }
    __syncthreads();
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

template <int COLS, int PRO, int EPI, bool BIAS>
__device__ __forceinline__ void linear_task(const loom_dop &d, const loom_dtask *t, int step)
{
    float *xs = LOOM_SMEM;
    float *red = LOOM_SMEM + COLS;      // 2 * LOOM_WARPS floats
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int rb = t->row_begin, re = t->row_end;
    const bf16raw *W = (const bf16raw *)d.w;
    float *y = (float *)d.y;
    float best_v = loom_neg_inf(), best_r = (float)rb;

    linear_stage_x<COLS, PRO>(d, xs, red);
    if (EPI == LOOM_EPI_ARGMAX)
        y += (LOOM_LOGITS_BY_STEP ? (u64)step : 0ull) * (u64)d.rows;

    for (int r0 = rb + 2 * warp; r0 < re; r0 += 2 * LOOM_WARPS) {
        const int r1 = r0 + 1 < re ? r0 + 1 : r0;
        float a0 = 0.0f, a1 = 0.0f;
        dot_rows2<COLS>(W + (u64)r0 * COLS, W + (u64)r1 * COLS, xs, a0, a1);
        a0 = warp_sum(a0);
        a1 = warp_sum(a1);
        if (lane != 0)
            continue;
        if (EPI == LOOM_EPI_SILU_MUL) {
            y[r0 / 2] = silu(a0) * a1;      // r0 even: tiles hold whole pairs
        } else if (EPI == LOOM_EPI_RESIDUAL) {
            const float *resid = (const float *)d.resid;
            float v0 = resid[r0] + a0, v1 = resid[r1] + a1;
            y[r0] = v0;
            if (r1 != r0)
                y[r1] = v1;
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
            y[r0] = a0;
            if (r1 != r0)
                y[r1] = a1;
        }
    }
    if (EPI == LOOM_EPI_ARGMAX) {
        __syncthreads();
        linear_argmax_reduce(d, t, best_v, best_r, red);
    }
}
