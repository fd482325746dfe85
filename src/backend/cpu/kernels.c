/* kernels.c - the CPU reference kernels (see kernels.h).
 *
 * Each function runs one task of one op for one sequence b at decode step
 * `step` (whose position is `step`), reading and writing the graph's
 * tensors through m->data. The arithmetic follows graph.h word for word and
 * the oracle's order of operations where graph.h leaves it open (RMSNorm as
 * w * (inv * x), RoPE angle (float)pos * inv_freq in fp32). */
#include "backend/cpu/kernels.h"

#include <math.h>

/* Lanes of the dot product: independent partial sums that gcc -O2 turns
 * into SIMD lanes without reassociating anything (the order is fixed, so
 * the result is the same on every run and every thread). */
#define DOT_LANES 16

/* ------------------------------------------------------------------ access */

static inline const loom_gtensor *gt(const loom_cpu_bufs *m, int32_t id)
{
    return &m->g->tensors[id];
}

/* Row b of an F32 tensor. */
static inline float *f32_row(const loom_cpu_bufs *m, int32_t id, int64_t b)
{
    return (float *)m->data[id] + b * gt(m, id)->cols;
}

/* Row b of an activation as F32: an F32 tensor's own row, or an I64 fixed
 * point one's (graph.h) converted into buf. */
static const float *f32_in(const loom_cpu_bufs *m, int32_t id, int64_t b, float *buf)
{
    int64_t cols = gt(m, id)->cols;

    if (gt(m, id)->dtype != LOOM_DTYPE_I64)
        return f32_row(m, id, b);
    const int64_t *a = (const int64_t *)m->data[id] + b * cols;
    for (int64_t c = 0; c < cols; c++)
        buf[c] = loom_fix_to_f32(a[c]);
    return buf;
}

/* Element i of row b of an activation (F32 or I64 fixed point) as F32. */
static inline float f32_at(const loom_cpu_bufs *m, int32_t id, int64_t b, int64_t i)
{
    if (gt(m, id)->dtype == LOOM_DTYPE_I64)
        return loom_fix_to_f32(((const int64_t *)m->data[id])[b * gt(m, id)->cols + i]);
    return f32_row(m, id, b)[i];
}

static inline int32_t *i32_row(const loom_cpu_bufs *m, int32_t id, int64_t b)
{
    return (int32_t *)m->data[id] + b * gt(m, id)->cols;
}

uint16_t *loom_cpu_kv_at(const loom_cpu_bufs *m, int32_t cache, int32_t b, int32_t pos,
                         int32_t h)
{
    const loom_graph *g = m->g;
    int64_t ps = g->params.page_size, hd = g->cfg.head_dim, nkv = g->cfg.n_kv_heads;
    int64_t page = i32_row(m, g->t_page_table, b)[pos / ps];
    int64_t slot = page * ps + pos % ps;

    return (uint16_t *)m->data[cache] + (slot * nkv + h) * hd;
}

int64_t loom_cpu_scratch_floats(const loom_graph *g)
{
    int64_t n = (int64_t)g->cfg.n_heads * g->cfg.head_dim;   /* attention's q heads */

    for (int32_t i = 0; i < g->n_ops; i++)
        if (g->ops[i].cols > n)
            n = g->ops[i].cols;
    return n + g->params.max_context + 2 * (int64_t)g->cfg.head_dim + 64;
}

/* ------------------------------------------------------------------ blocks */

/* o = w * (x * 1/sqrt(mean(x^2) + eps)), as Hugging Face's RMSNorm (and the
 * oracle). o may be x. */
static void rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps)
{
    float ss = 0.0f;

    for (int64_t j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int64_t j = 0; j < n; j++)
        o[j] = w[j] * (ss * x[j]);
}

/* On x86-64 a second copy of the dot product is built for AVX2 and picked at
 * load time. IEEE fp32 ops, never contracted to FMA, in the same per-lane
 * order: both copies give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)
#define DOT_CLONES                                                            \
    __attribute__((target_clones("arch=x86-64-v3", "default"),                \
                   optimize("O3", "fp-contract=off")))
#else
#define DOT_CLONES
#endif

/* sum_c w[c] * x[c] with bf16 w, in DOT_LANES fixed-order partial sums. */
DOT_CLONES
static float dot_bf16(const uint16_t *w, const float *x, int64_t n)
{
    float acc[DOT_LANES] = {0};
    int64_t c = 0;

    for (; c + DOT_LANES <= n; c += DOT_LANES)
        for (int j = 0; j < DOT_LANES; j++)
            acc[j] += loom_bf16_to_f32(w[c + j]) * x[c + j];
    for (int j = 0; j < DOT_LANES && c < n; c++, j++)
        acc[j] += loom_bf16_to_f32(w[c]) * x[c];
    for (int s = DOT_LANES / 2; s > 0; s /= 2)
        for (int j = 0; j < s; j++)
            acc[j] += acc[j + s];
    return acc[0];
}

/* sum_i q[i] * k[i] with bf16 k (attention scores; head_dim terms). */
static float dot_q_k(const float *q, const uint16_t *k, int64_t n)
{
    return dot_bf16(k, q, n);
}

static inline float silu(float g)
{
    return g * (1.0f / (1.0f + expf(-g)));
}

/* Hugging Face rotate-half RoPE of one head, in place. */
static void rope(float *x, int32_t hd, const float *inv_freq, int32_t pos)
{
    int32_t half = hd / 2;

    for (int32_t i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle), s = sinf(angle);
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

/* ------------------------------------------------------------------ ops */

void loom_cpu_embed(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                    int32_t b, int32_t step)
{
    int32_t token = i32_row(m, m->g->t_tokens, b)[step];
    const uint16_t *row = (const uint16_t *)m->data[op->w] + (int64_t)token * op->cols;
    float *y = f32_row(m, op->y, b);

    for (int32_t c = t->row_begin; c < t->row_end; c++)
        y[c] = loom_bf16_to_f32(row[c]);
}

/* The ARGMAX epilogue: logits of rows [r0, r1) into the logits tensor and
 * the tile's {max, row} into aux (ties and NaN: the lowest row wins, NaN is
 * never the max). */
static void linear_argmax(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                          int32_t b, int32_t step, const float *xn)
{
    const uint16_t *w = m->data[op->w];
    int64_t lrow = m->g->params.record_logits ? step : b;
    float *y = f32_row(m, op->y, lrow);
    float *aux = f32_row(m, op->aux, b) + 2 * (int64_t)t->tile;
    float best = -INFINITY;
    int32_t best_row = t->row_begin;

    for (int32_t r = t->row_begin; r < t->row_end; r++) {
        float acc = dot_bf16(w + (int64_t)r * op->cols, xn, op->cols);
        y[r] = acc;
        if (acc > best) {
            best = acc;
            best_row = r;
        }
    }
    aux[0] = best;
    aux[1] = (float)best_row;
}

/* Head h's merged attention output y[hd] from its split partials in aux
 * (graph.h ATTN_MERGE). */
static void merge_head(const float *aux, int32_t h, int32_t split, int32_t hd, float *y)
{
    const float *e = aux + (int64_t)h * split * (hd + 2);
    float M = -INFINITY, den = 0.0f;

    for (int32_t s = 0; s < split; s++)
        if (e[s * (hd + 2) + hd] > M)
            M = e[s * (hd + 2) + hd];
    memset(y, 0, (size_t)hd * sizeof(float));
    for (int32_t s = 0; s < split; s++) {
        const float *es = e + (int64_t)s * (hd + 2);
        float a = expf(es[hd] - M);
        den += a * es[hd + 1];
        for (int32_t i = 0; i < hd; i++)
            y[i] += a * es[i];
    }
    for (int32_t i = 0; i < hd; i++)
        y[i] /= den;
}

/* The ACCUM epilogue (graph.h): the tile's term of every column, summed
 * over its rows in fp32 (part: cols floats), added to y in fixed point. */
static void linear_accum(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                         int32_t b, float *part)
{
    const uint16_t *w = m->data[op->w];
    const float *x = f32_row(m, op->x, b);
    int64_t cols = op->cols;
    int64_t *y = (int64_t *)m->data[op->y] + b * cols;

    memset(part, 0, (size_t)cols * sizeof *part);
    for (int32_t r = t->row_begin; r < t->row_end; r++) {
        const uint16_t *wr = w + (int64_t)r * cols;
        float xr = x[r];
        for (int64_t c = 0; c < cols; c++)
            part[c] = fmaf(loom_bf16_to_f32(wr[c]), xr, part[c]);
    }
    for (int64_t c = 0; c < cols; c++)   /* other tiles add to y at the same time */
        __atomic_fetch_add(&y[c], loom_fix_from_f32(part[c]), __ATOMIC_RELAXED);
}

void loom_cpu_linear(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                     int32_t b, int32_t step, float *scratch)
{
    const uint16_t *w = m->data[op->w];
    int64_t cols = op->cols;

    if (op->epi == LOOM_EPI_ACCUM) {
        linear_accum(m, op, t, b, scratch);
        return;
    }
    const float *xn = f32_in(m, op->x, b, scratch);
    if (op->pro == LOOM_PRO_RMSNORM) {
        rmsnorm(scratch, xn, m->data[op->norm], cols, m->g->cfg.rms_norm_eps);
        xn = scratch;
    }
    if (op->epi == LOOM_EPI_ARGMAX) {
        linear_argmax(m, op, t, b, step, xn);
        return;
    }

    float *y = f32_row(m, op->y, b);
    if (op->epi == LOOM_EPI_SILU_MUL) {
        for (int32_t i = t->row_begin / 2; i < t->row_end / 2; i++) {
            float gate = dot_bf16(w + (int64_t)(2 * i) * cols, xn, cols);
            float up = dot_bf16(w + (int64_t)(2 * i + 1) * cols, xn, cols);
            y[i] = silu(gate) * up;
        }
        return;
    }

    const float *bias = op->bias >= 0 ? m->data[op->bias] : NULL;
    bool resid = op->epi == LOOM_EPI_RESIDUAL;
    int64_t *first = resid && op->aux >= 0 ? (int64_t *)m->data[op->aux] + b * gt(m, op->aux)->cols
                                           : NULL;   /* the fused MLP's sum */
    for (int32_t r = t->row_begin; r < t->row_end; r++) {
        float acc = dot_bf16(w + (int64_t)r * cols, xn, cols);
        if (resid)
            y[r] = f32_at(m, op->resid, b, r) + acc;
        else
            y[r] = bias ? acc + bias[r] : acc;
        if (first)
            first[r] = loom_fix_from_f32(y[r]);
    }
}

/* Head j of a group's packed qkv slice x (j < G: a query head, G: k),
 * RMSNorm'ed with weight tensor norm when norm >= 0, then RoPE at pos, into
 * out[hd]. */
static void norm_rope_head(const loom_cpu_bufs *m, const float *x, int32_t j, int32_t norm,
                           int32_t pos, float *out)
{
    const loom_graph *g = m->g;
    int32_t hd = g->cfg.head_dim;

    memcpy(out, x + (int64_t)j * hd, (size_t)hd * sizeof(float));
    if (norm >= 0)
        rmsnorm(out, out, m->data[norm], hd, g->cfg.rms_norm_eps);
    rope(out, hd, m->data[g->t_rope_inv_freq], pos);
}

/* Split 0's part: k (k_norm, RoPE) and v of group grp into the caches at
 * position step. */
static void append_kv(const loom_cpu_bufs *m, const loom_op *op, int32_t b, int32_t grp,
                      const float *x, int32_t step, float *k)
{
    int32_t hd = m->g->cfg.head_dim, G = m->g->cfg.n_heads / m->g->cfg.n_kv_heads;
    const float *v = x + (int64_t)(G + 1) * hd;
    uint16_t *kc = loom_cpu_kv_at(m, op->kcache, b, step, grp);
    uint16_t *vc = loom_cpu_kv_at(m, op->vcache, b, step, grp);

    norm_rope_head(m, x, G, op->norm2, step, k);
    for (int32_t i = 0; i < hd; i++) {
        kc[i] = loom_f32_to_bf16(k[i]);
        vc[i] = loom_f32_to_bf16(v[i]);
    }
}

/* One query head q over positions [p0, p1): the scores' max *m, the sum of
 * exp(score - max) *l and o = sum exp(score - max) v (unnormalised), or,
 * when normalise, o = sum softmax(score) v as the oracle computes it. */
static void attend(const loom_cpu_bufs *m, const loom_op *op, int32_t b, int32_t kvh,
                   const float *q, int32_t p0, int32_t p1, bool normalise,
                   float *o, float *mx, float *l, float *score)
{
    int32_t hd = m->g->cfg.head_dim;
    float scale = 1.0f / sqrtf((float)hd);
    float max = -INFINITY, sum = 0.0f;

    for (int32_t p = p0; p < p1; p++) {
        float s = dot_q_k(q, loom_cpu_kv_at(m, op->kcache, b, p, kvh), hd) * scale;
        score[p - p0] = s;
        if (s > max)
            max = s;
    }
    for (int32_t p = p0; p < p1; p++) {
        score[p - p0] = expf(score[p - p0] - max);
        sum += score[p - p0];
    }
    if (normalise)
        for (int32_t p = p0; p < p1; p++)
            score[p - p0] /= sum;
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int32_t p = p0; p < p1; p++) {
        const uint16_t *v = loom_cpu_kv_at(m, op->vcache, b, p, kvh);
        float a = score[p - p0];
        for (int32_t i = 0; i < hd; i++)
            o[i] += a * loom_bf16_to_f32(v[i]);
    }
    *mx = max;
    *l = sum;
}

/* scratch: q heads [G * hd], k [hd], then the scores (max_context). */
void loom_cpu_attention(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                        int32_t b, int32_t step, float *scratch)
{
    const loom_graph *g = m->g;
    int32_t hd = g->cfg.head_dim, G = g->cfg.n_heads / g->cfg.n_kv_heads;
    int32_t split = op->split > 0 ? op->split : 1, s = t->split;
    int32_t n = step + 1, chunk = (n + split - 1) / split;
    int32_t p1 = n - s * chunk, p0 = n - (s + 1) * chunk;
    const float *x = f32_row(m, op->x, b) + (int64_t)t->group * (G + 2) * hd;
    float *qs = scratch, *k = scratch + (int64_t)G * hd, *score = k + hd;
    float mx, l;

    if (p1 < 0)
        p1 = 0;
    if (p0 < 0)
        p0 = 0;
    for (int32_t j = 0; j < G; j++)
        norm_rope_head(m, x, j, op->norm, step, qs + (int64_t)j * hd);
    if (s == 0)
        append_kv(m, op, b, t->group, x, step, k);
    for (int32_t j = 0; j < G; j++) {
        int32_t h = t->group * G + j;
        const float *q = qs + (int64_t)j * hd;
        if (split == 1) {
            float *o = f32_row(m, op->y, b) + (int64_t)h * hd;
            attend(m, op, b, t->group, q, p0, p1, true, o, &mx, &l, score);
            continue;
        }
        float *e = f32_row(m, op->aux, b) + ((int64_t)h * split + s) * (hd + 2);
        attend(m, op, b, t->group, q, p0, p1, false, e, &mx, &l, score);
        e[hd] = mx;
        e[hd + 1] = l;
    }
}

void loom_cpu_attn_merge(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                         int32_t b, int32_t step)
{
    const loom_graph *g = m->g;
    int32_t hd = g->cfg.head_dim, G = g->cfg.n_heads / g->cfg.n_kv_heads;

    (void)step;
    for (int32_t j = 0; j < G; j++) {
        int32_t h = t->group * G + j;
        merge_head(f32_row(m, op->aux, b), h, op->split, hd, f32_row(m, op->y, b) + (int64_t)h * hd);
    }
}

int32_t loom_cpu_argmax(const loom_cpu_bufs *m, const loom_op *op, int32_t b,
                        int32_t step, int32_t n_prompt)
{
    const loom_graph *g = m->g;
    const loom_op *lm = &g->ops[g->op_lm_head];
    const float *aux = f32_row(m, lm->aux, b);
    float best = aux[0], best_row = aux[1];

    (void)op;
    for (int32_t i = 1; i < lm->n_tiles; i++) {
        float v = aux[2 * i], r = aux[2 * i + 1];
        if (v > best || (v == best && r < best_row) || (best != best && v == v)) {
            best = v;
            best_row = r;
        }
    }
    int32_t token = (int32_t)best_row;
    if (step + 1 >= n_prompt)
        i32_row(m, g->t_tokens, b)[step + 1] = token;
    return token;
}

void loom_cpu_run_task(const loom_program *p, const loom_cpu_bufs *m, int32_t task,
                       int32_t step, int32_t n_prompt, float *scratch, int32_t *token)
{
    const loom_task *t = &p->tasks[task];
    const loom_op *op = &p->graph->ops[t->op];
    int32_t B = p->graph->params.max_batch > 0 ? p->graph->params.max_batch : 1;

    for (int32_t b = 0; b < B; b++) {
        switch (op->kind) {
        case LOOM_OP_EMBED:
            loom_cpu_embed(m, op, t, b, step);
            break;
        case LOOM_OP_LINEAR:
            loom_cpu_linear(m, op, t, b, step, scratch);
            break;
        case LOOM_OP_ATTENTION:
            loom_cpu_attention(m, op, t, b, step, scratch);
            break;
        case LOOM_OP_ATTN_MERGE:
            loom_cpu_attn_merge(m, op, t, b, step);
            break;
        case LOOM_OP_ARGMAX: {
            int32_t tok = loom_cpu_argmax(m, op, b, step, n_prompt);
            if (b == 0 && token)
                *token = tok;
            break;
        }
        default:
            break;
        }
    }
}

void loom_cpu_run_merge(const loom_program *p, const loom_cpu_bufs *m, int32_t task,
                        int32_t step)
{
    const loom_task *t = &p->tasks[task];
    int32_t B = p->graph->params.max_batch > 0 ? p->graph->params.max_batch : 1;

    for (int32_t b = 0; b < B; b++)
        loom_cpu_attn_merge(m, &p->graph->ops[t->op], t, b, step);
}
