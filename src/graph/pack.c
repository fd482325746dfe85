/* pack.c - graph weight tensors from the model's tensors.
 *
 * Packed layouts (graph.h):
 *   layers.l.wqkv       rows grouped per KV head g:
 *                         [q heads gG .. gG+G-1 | k head g | v head g]
 *   layers.l.bqkv       the q/k/v biases in the same order (Qwen2)
 *   layers.l.w_gate_up  rows interleaved: 2i = gate row i, 2i+1 = up row i
 *   layers.l.w_down_t   the model's w_down transposed (the fused MLP): row i
 *                       is column i, one read per source row of each chunk
 *   rope_inv_freq       Hugging Face's inverse frequencies (llama3 scaling)
 * Everything else is the model's tensor as is. Rows are copied in runs of
 * contiguous source rows, one read call per run.
 *
 * defines: loom_graph_fill_weight */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "graph/graph.h"

/* HF's default inverse frequencies, then the llama3 rescaling
 * (transformers' _compute_llama3_parameters), in double. */
static void rope_inv_freq(const loom_config *c, int64_t i0, int64_t n, float *dst)
{
    int32_t hd = c->head_dim;

    for (int64_t k = 0; k < n; k++) {
        int64_t i = i0 + k;
        double inv = 1.0 / pow(c->rope_theta, (double)(2 * i) / hd);
        if (c->rope_llama3) {
            double old = c->rope_original_max_position, f = c->rope_factor;
            double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / inv;
            if (wavelen > old / lo) {
                inv = inv / f;
            } else if (wavelen >= old / hi) {
                double s = (old / wavelen - lo) / (hi - lo);
                inv = (1.0 - s) * inv / f + s * inv;
            }
        }
        dst[k] = (float)inv;
    }
}

/* Reads n elements of src from element begin into dst (graph dtype). */
static void read_elems(const loom_tensor *src, loom_dtype dt, int64_t begin, int64_t n,
                       void *dst)
{
    if (dt == LOOM_DTYPE_BF16)
        loom_tensor_read_bf16(src, begin, n, dst);
    else
        loom_tensor_read_f32(src, begin, n, dst);
}

/* Packed QKV: row r of the packed tensor (each row `cols` elements; cols = 1
 * for the bias vector) -> (source tensor, source row). */
static const loom_tensor *qkv_source(const loom_config *c, const loom_layer_weights *lw,
                                     bool bias, int64_t r, int64_t *src_row, int64_t *run)
{
    int64_t hd = c->head_dim, G = c->n_heads / c->n_kv_heads;
    int64_t per = (G + 2) * hd, g = r / per, j = r % per;

    if (j < G * hd) {
        *src_row = g * G * hd + j;
        *run = G * hd - j;
        return bias ? &lw->bq : &lw->wq;
    }
    j -= G * hd;
    if (j < hd) {
        *src_row = g * hd + j;
        *run = hd - j;
        return bias ? &lw->bk : &lw->wk;
    }
    j -= hd;
    *src_row = g * hd + j;
    *run = hd - j;
    return bias ? &lw->bv : &lw->wv;
}

static loom_status need(const loom_graph *g, const loom_tensor *t, const char *what)
{
    if (!loom_tensor_present(t))
        return loom_fail(LOOM_ERR_FORMAT, "%s: graph weight '%s' needs model tensor '%s', absent",
                         g->model->dir ? g->model->dir : g->model->preset, what, t->name);
    return LOOM_OK;
}

/* Rows [r0, r0 + n) of packed QKV (elements of `cols` per row). */
static loom_status fill_qkv(const loom_graph *g, const loom_layer_weights *lw, bool bias,
                            int64_t r0, int64_t n, int64_t cols, loom_dtype dt, char *dst)
{
    size_t esz = loom_dtype_size(dt);
    int64_t r = r0, end = r0 + n;

    while (r < end) {
        int64_t src_row, run;
        const loom_tensor *t = qkv_source(&g->cfg, lw, bias, r, &src_row, &run);
        loom_status st = need(g, t, bias ? "bqkv" : "wqkv");
        if (st != LOOM_OK)
            return st;
        if (run > end - r)
            run = end - r;
        read_elems(t, dt, src_row * cols, run * cols, dst);
        dst += (size_t)(run * cols) * esz;
        r += run;
    }
    return LOOM_OK;
}

static loom_status fill_gate_up(const loom_graph *g, const loom_layer_weights *lw,
                                int64_t r0, int64_t n, int64_t cols, uint16_t *dst)
{
    loom_status st = need(g, &lw->w_gate, "w_gate_up");

    if (st == LOOM_OK)
        st = need(g, &lw->w_up, "w_gate_up");
    if (st != LOOM_OK)
        return st;
    for (int64_t r = r0; r < r0 + n; r++) {
        const loom_tensor *t = (r & 1) ? &lw->w_up : &lw->w_gate;
        loom_tensor_read_bf16(t, (r >> 1) * cols, cols, dst);
        dst += cols;
    }
    return LOOM_OK;
}

/* Rows [r0, r0 + n) of w_down transposed ([intermediate, hidden]): for
 * each source row j, its columns [r0, r0 + n) go to column j. */
static loom_status fill_down_t(const loom_graph *g, const loom_layer_weights *lw, int64_t r0,
                               int64_t n, int64_t cols, uint16_t *dst)
{
    const loom_tensor *t = &lw->w_down;
    int64_t I = g->cfg.intermediate_size;
    loom_status st = need(g, t, "w_down_t");
    uint16_t *run;

    if (st != LOOM_OK)
        return st;
    if (loom_tensor_numel(t) != I * cols)
        return loom_fail(LOOM_ERR_FORMAT, "fill_weight: tensor 'w_down_t': model tensor '%s' has "
                         "%lld elements, graph expects %lld", t->name,
                         (long long)loom_tensor_numel(t), (long long)(I * cols));
    run = malloc((size_t)n * sizeof *run);
    if (!run)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "fill_weight: 'w_down_t': %lld columns",
                         (long long)n);
    for (int64_t j = 0; j < cols; j++) {
        loom_tensor_read_bf16(t, j * I + r0, n, run);
        for (int64_t i = 0; i < n; i++)
            dst[i * cols + j] = run[i];
    }
    free(run);
    return LOOM_OK;
}

/* The model tensor a plain (unpacked) graph weight copies. */
static const loom_tensor *plain_source(const loom_graph *g, const loom_gtensor *gt)
{
    const loom_weights *w = &g->model->w;
    const char *s = gt->name;

    if (gt->layer < 0) {
        if (strcmp(s, "embed") == 0)
            return &w->embed;
        if (strcmp(s, "lm_head") == 0)
            return &w->lm_head;
        if (strcmp(s, "final_norm") == 0)
            return &w->final_norm;
        return NULL;
    }
    const loom_layer_weights *lw = &w->layers[gt->layer];
    s = strrchr(s, '.');
    if (!s)
        return NULL;
    s++;
    if (strcmp(s, "attn_norm") == 0)
        return &lw->attn_norm;
    if (strcmp(s, "q_norm") == 0)
        return &lw->q_norm;
    if (strcmp(s, "k_norm") == 0)
        return &lw->k_norm;
    if (strcmp(s, "wo") == 0)
        return &lw->wo;
    if (strcmp(s, "ffn_norm") == 0)
        return &lw->ffn_norm;
    if (strcmp(s, "w_down") == 0)
        return &lw->w_down;
    return NULL;
}

loom_status loom_graph_fill_weight(const loom_graph *g, int32_t tensor, int64_t row0,
                                   int64_t nrows, void *dst)
{
    const loom_gtensor *gt;
    const loom_tensor *src;
    const char *suffix;
    loom_status st;

    if (!g || !dst || tensor < 0 || tensor >= g->n_tensors)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "fill_weight: bad graph, tensor %d or dst",
                         tensor);
    gt = &g->tensors[tensor];
    if (gt->role != LOOM_ROLE_WEIGHT)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "fill_weight: tensor '%s' is not a weight",
                         gt->name);
    if (row0 < 0 || nrows < 0 || row0 + nrows > gt->rows)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "fill_weight: tensor '%s': rows [%lld, %lld) outside [0, %lld)",
                         gt->name, (long long)row0, (long long)(row0 + nrows),
                         (long long)gt->rows);
    if (nrows == 0)
        return LOOM_OK;
    if (tensor == g->t_rope_inv_freq) {
        rope_inv_freq(&g->cfg, 0, gt->cols, dst);
        return LOOM_OK;
    }
    suffix = gt->layer >= 0 ? strrchr(gt->name, '.') + 1 : gt->name;
    if (gt->layer >= 0) {
        const loom_layer_weights *lw = &g->model->w.layers[gt->layer];
        if (strcmp(suffix, "wqkv") == 0)
            return fill_qkv(g, lw, false, row0, nrows, gt->cols, gt->dtype, dst);
        if (strcmp(suffix, "bqkv") == 0) /* [1, n]: the whole vector, 1 col per "row" */
            return fill_qkv(g, lw, true, 0, gt->cols, 1, gt->dtype, dst);
        if (strcmp(suffix, "w_gate_up") == 0)
            return fill_gate_up(g, lw, row0, nrows, gt->cols, dst);
        if (strcmp(suffix, "w_down_t") == 0)
            return fill_down_t(g, lw, row0, nrows, gt->cols, dst);
    }
    src = plain_source(g, gt);
    if (!src)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "fill_weight: no source for tensor '%s'",
                         gt->name);
    st = need(g, src, gt->name);
    if (st != LOOM_OK)
        return st;
    if (loom_tensor_numel(src) != loom_gtensor_numel(gt))
        return loom_fail(LOOM_ERR_FORMAT, "fill_weight: tensor '%s': model tensor '%s' has %lld "
                         "elements, graph expects %lld", gt->name, src->name,
                         (long long)loom_tensor_numel(src), (long long)loom_gtensor_numel(gt));
    read_elems(src, gt->dtype, row0 * gt->cols, nrows * gt->cols, dst);
    return LOOM_OK;
}
