/* oracle.c - the reference forward pass: naive, single-threaded, fp32.
 *
 * Reads like llama2.c's run.c on purpose: the weights as plain fp32 arrays
 * with their shapes in comments, a run state of activation buffers and an
 * fp32 KV cache, and 10-15 line loops (rmsnorm, matmul, softmax, rope). No
 * threads, no tiling, no cleverness: this is the truth the CPU and CUDA
 * backends are compared with, and it is compared with Hugging Face
 * transformers (tests/gpu/hf_compare.py). */
#include "ref/oracle.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ------------------------------------------------------------------------ */
/* Weights and run state                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    float *embed;       // (vocab, dim)
    float *attn_norm;   // (layer, dim)
    float *wq;          // (layer, n_heads * head_dim, dim)
    float *wk;          // (layer, n_kv_heads * head_dim, dim)
    float *wv;          // (layer, n_kv_heads * head_dim, dim)
    float *bq;          // (layer, n_heads * head_dim)      Qwen2 only, else NULL
    float *bk;          // (layer, n_kv_heads * head_dim)   Qwen2 only, else NULL
    float *bv;          // (layer, n_kv_heads * head_dim)   Qwen2 only, else NULL
    float *q_norm;      // (layer, head_dim)                Qwen3 only, else NULL
    float *k_norm;      // (layer, head_dim)                Qwen3 only, else NULL
    float *wo;          // (layer, dim, n_heads * head_dim)
    float *ffn_norm;    // (layer, dim)
    float *w_gate;      // (layer, hidden_dim, dim)
    float *w_up;        // (layer, hidden_dim, dim)
    float *w_down;      // (layer, dim, hidden_dim)
    float *final_norm;  // (dim,)
    float *lm_head;     // (vocab, dim); points at embed when tied
    float *inv_freq;    // (head_dim / 2,) RoPE inverse frequencies
} oracle_weights;

typedef struct {
    float *x;           // residual stream (dim,)
    float *xb;          // normed input of a block, then attention output (max(dim, q_dim),)
    float *xb2;         // output of a projection (dim,)
    float *q;           // queries (n_heads * head_dim,)
    float *k;           // key of this position (n_kv_heads * head_dim,)
    float *v;           // value of this position (n_kv_heads * head_dim,)
    float *att;         // scores (n_heads, seq_len)
    float *hb;          // gate (hidden_dim,)
    float *hb2;         // up (hidden_dim,)
    float *key_cache;   // (layer, seq_len, n_kv_heads * head_dim)
    float *value_cache; // (layer, seq_len, n_kv_heads * head_dim)
} oracle_state;

struct loom_oracle {
    loom_config cfg;
    int32_t seq_len;    // max_context: positions the KV cache holds
    int32_t n_past;     // positions already in the cache
    oracle_weights w;
    oracle_state s;
};

/* ------------------------------------------------------------------------ */
/* Loading: every weight to fp32, once                                       */
/* ------------------------------------------------------------------------ */

/* Checks t has the shape the config implies (rows x cols, or a vector when
 * cols == 0), so a wrong checkpoint fails here instead of reading garbage. */
static loom_status check_shape(const loom_tensor *t, int64_t rows, int64_t cols)
{
    if (!loom_tensor_present(t))
        return loom_fail(LOOM_ERR_FORMAT, "oracle: tensor '%s' of shape [%lld, %lld] is missing",
                         t->name[0] ? t->name : "(unnamed)", (long long)rows, (long long)cols);
    int32_t ndim = cols ? 2 : 1;
    if (t->ndim != ndim || t->shape[0] != rows || (cols && t->shape[1] != cols))
        return loom_fail(LOOM_ERR_FORMAT,
                         "oracle: tensor '%s': shape [%lld, %lld] (ndim %d), expected [%lld, %lld]",
                         t->name, (long long)t->shape[0],
                         (long long)(t->ndim > 1 ? t->shape[1] : 0), t->ndim,
                         (long long)rows, (long long)cols);
    return LOOM_OK;
}

/* Reads tensor t (rows x cols, or rows when cols == 0) as fp32 into dst. */
static loom_status load(float *dst, const loom_tensor *t, int64_t rows, int64_t cols)
{
    loom_status st = check_shape(t, rows, cols);
    if (st != LOOM_OK)
        return st;
    loom_tensor_read_f32(t, 0, rows * (cols ? cols : 1), dst);
    return LOOM_OK;
}

static float *alloc_floats(int64_t n)
{
    if (n <= 0 || (uint64_t)n > SIZE_MAX / sizeof(float))
        return NULL;
    return calloc((size_t)n, sizeof(float));
}

static void free_weights(oracle_weights *w)
{
    if (w->lm_head != w->embed)
        free(w->lm_head);
    free(w->embed);
    free(w->attn_norm); free(w->wq); free(w->wk); free(w->wv);
    free(w->bq); free(w->bk); free(w->bv);
    free(w->q_norm); free(w->k_norm); free(w->wo);
    free(w->ffn_norm); free(w->w_gate); free(w->w_up); free(w->w_down);
    free(w->final_norm); free(w->inv_freq);
    memset(w, 0, sizeof *w);
}

static loom_status alloc_weights(oracle_weights *w, const loom_config *p)
{
    int64_t L = p->n_layers, dim = p->hidden_size, hd = p->head_dim;
    int64_t q_dim = (int64_t)p->n_heads * hd, kv_dim = (int64_t)p->n_kv_heads * hd;
    int64_t hidden = p->intermediate_size, vocab = p->vocab_size;

    w->embed = alloc_floats(vocab * dim);
    w->attn_norm = alloc_floats(L * dim);
    w->wq = alloc_floats(L * q_dim * dim);
    w->wk = alloc_floats(L * kv_dim * dim);
    w->wv = alloc_floats(L * kv_dim * dim);
    w->wo = alloc_floats(L * dim * q_dim);
    w->ffn_norm = alloc_floats(L * dim);
    w->w_gate = alloc_floats(L * hidden * dim);
    w->w_up = alloc_floats(L * hidden * dim);
    w->w_down = alloc_floats(L * dim * hidden);
    w->final_norm = alloc_floats(dim);
    w->lm_head = p->tie_word_embeddings ? w->embed : alloc_floats(vocab * dim);
    w->inv_freq = alloc_floats(hd / 2);
    bool ok = w->embed && w->attn_norm && w->wq && w->wk && w->wv && w->wo &&
              w->ffn_norm && w->w_gate && w->w_up && w->w_down && w->final_norm &&
              w->lm_head && w->inv_freq;
    if (p->attention_bias) {
        w->bq = alloc_floats(L * q_dim);
        w->bk = alloc_floats(L * kv_dim);
        w->bv = alloc_floats(L * kv_dim);
        ok = ok && w->bq && w->bk && w->bv;
    }
    if (p->qk_norm) {
        w->q_norm = alloc_floats(L * hd);
        w->k_norm = alloc_floats(L * hd);
        ok = ok && w->q_norm && w->k_norm;
    }
    if (!ok)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY,
                         "oracle: out of memory converting %lld layers of hidden %lld to fp32",
                         (long long)L, (long long)dim);
    return LOOM_OK;
}

/* One layer's tensors into slot l of the per-layer arrays. */
static loom_status load_layer(oracle_weights *w, const loom_config *p,
                              const loom_layer_weights *lw, int64_t l)
{
    int64_t dim = p->hidden_size, hd = p->head_dim, hidden = p->intermediate_size;
    int64_t q_dim = (int64_t)p->n_heads * hd, kv_dim = (int64_t)p->n_kv_heads * hd;
    loom_status st = LOOM_OK;

    if (!st) st = load(w->attn_norm + l * dim, &lw->attn_norm, dim, 0);
    if (!st) st = load(w->wq + l * q_dim * dim, &lw->wq, q_dim, dim);
    if (!st) st = load(w->wk + l * kv_dim * dim, &lw->wk, kv_dim, dim);
    if (!st) st = load(w->wv + l * kv_dim * dim, &lw->wv, kv_dim, dim);
    if (!st) st = load(w->wo + l * dim * q_dim, &lw->wo, dim, q_dim);
    if (!st) st = load(w->ffn_norm + l * dim, &lw->ffn_norm, dim, 0);
    if (!st) st = load(w->w_gate + l * hidden * dim, &lw->w_gate, hidden, dim);
    if (!st) st = load(w->w_up + l * hidden * dim, &lw->w_up, hidden, dim);
    if (!st) st = load(w->w_down + l * dim * hidden, &lw->w_down, dim, hidden);
    if (!st && p->attention_bias) {
        st = load(w->bq + l * q_dim, &lw->bq, q_dim, 0);
        if (!st) st = load(w->bk + l * kv_dim, &lw->bk, kv_dim, 0);
        if (!st) st = load(w->bv + l * kv_dim, &lw->bv, kv_dim, 0);
    }
    if (!st && p->qk_norm) {
        st = load(w->q_norm + l * hd, &lw->q_norm, hd, 0);
        if (!st) st = load(w->k_norm + l * hd, &lw->k_norm, hd, 0);
    }
    return st;
}

static loom_status build_weights(oracle_weights *w, const loom_model *m)
{
    const loom_config *p = &m->cfg;
    int64_t dim = p->hidden_size, vocab = p->vocab_size;
    loom_status st = alloc_weights(w, p);

    if (!st) st = load(w->embed, &m->w.embed, vocab, dim);
    for (int32_t l = 0; !st && l < p->n_layers; l++)
        st = load_layer(w, p, &m->w.layers[l], l);
    if (!st) st = load(w->final_norm, &m->w.final_norm, dim, 0);
    if (!st && !p->tie_word_embeddings)
        st = load(w->lm_head, &m->w.lm_head, vocab, dim);
    if (!st)
        loom_rope_inv_freq(p, w->inv_freq);
    return st;
}

static void free_state(oracle_state *s)
{
    free(s->x); free(s->xb); free(s->xb2);
    free(s->q); free(s->k); free(s->v); free(s->att);
    free(s->hb); free(s->hb2);
    free(s->key_cache); free(s->value_cache);
    memset(s, 0, sizeof *s);
}

static loom_status build_state(oracle_state *s, const loom_config *p, int32_t seq_len)
{
    int64_t dim = p->hidden_size, q_dim = (int64_t)p->n_heads * p->head_dim;
    int64_t kv_dim = (int64_t)p->n_kv_heads * p->head_dim;
    int64_t cache = (int64_t)p->n_layers * seq_len * kv_dim;

    s->x = alloc_floats(dim);
    s->xb = alloc_floats(dim > q_dim ? dim : q_dim);
    s->xb2 = alloc_floats(dim);
    s->q = alloc_floats(q_dim);
    s->k = alloc_floats(kv_dim);
    s->v = alloc_floats(kv_dim);
    s->att = alloc_floats((int64_t)p->n_heads * seq_len);
    s->hb = alloc_floats(p->intermediate_size);
    s->hb2 = alloc_floats(p->intermediate_size);
    s->key_cache = alloc_floats(cache);
    s->value_cache = alloc_floats(cache);
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->att ||
        !s->hb || !s->hb2 || !s->key_cache || !s->value_cache)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY,
                         "oracle: out of memory for a KV cache of %d positions (%lld floats)",
                         seq_len, (long long)(2 * cache));
    return LOOM_OK;
}

loom_status loom_oracle_create(const loom_model *m, int32_t max_context, loom_oracle **out)
{
    loom_oracle *o = NULL;
    loom_status st;

    if (!m || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "oracle: NULL model or output");
    if (max_context < 0)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "oracle: max_context %d < 0", max_context);
    if (max_context == 0)
        max_context = m->max_context > 0 && m->max_context < 4096 ? m->max_context : 4096;
    st = loom_config_validate(m->preset[0] ? m->preset : m->dir ? m->dir : "model", &m->cfg);
    if (st != LOOM_OK)
        return loom_fail_context(st, "oracle");
    if (m->cfg.n_layers > 0 && !m->w.layers)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "oracle: model has no layer weights");

    o = calloc(1, sizeof *o);
    if (!o)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "oracle: out of memory");
    o->cfg = m->cfg;
    o->seq_len = max_context;
    st = build_weights(&o->w, m);
    if (st != LOOM_OK)
        goto fail;
    st = build_state(&o->s, &o->cfg, max_context);
    if (st != LOOM_OK)
        goto fail;
    *out = o;
    return LOOM_OK;

fail:
    loom_oracle_free(o);
    return st;
}

void loom_oracle_free(loom_oracle *o)
{
    if (!o)
        return;
    free_weights(&o->w);
    free_state(&o->s);
    free(o);
}

void loom_oracle_reset(loom_oracle *o)
{
    if (o)
        o->n_past = 0;
}

int32_t loom_oracle_n_past(const loom_oracle *o)
{
    return o ? o->n_past : 0;
}

/* ------------------------------------------------------------------------ */
/* Neural net blocks                                                         */
/* ------------------------------------------------------------------------ */

static void accum(float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        a[i] += b[i];
}

/* o = x * 1/sqrt(mean(x^2) + eps) * weight, as Hugging Face's RMSNorm. */
static void rmsnorm(float *o, const float *x, const float *weight, int n, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss /= n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++)
        o[j] = weight[j] * (ss * x[j]);
}

static void softmax(float *x, int n)
{
    float max_val = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max_val)
            max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

/* W (d, n) @ x (n,) -> xout (d,), plus bias (d,) when not NULL. */
static void matmul(float *xout, const float *x, const float *w, const float *bias, int n, int d)
{
    for (int i = 0; i < d; i++) {
        const float *row = w + (int64_t)i * n;
        float val = 0.0f;
        for (int j = 0; j < n; j++)
            val += row[j] * x[j];
        xout[i] = bias ? val + bias[i] : val;
    }
}

/* llama3 rope scaling (transformers' _compute_llama3_parameters): long
 * wavelengths are slowed down by factor, short ones kept, the band between
 * the two interpolated smoothly. */
static double llama3_scale(const loom_config *p, double inv_freq)
{
    double orig = p->rope_original_max_position;
    double low = p->rope_low_freq_factor, high = p->rope_high_freq_factor;
    double factor = p->rope_factor;
    double low_freq_wavelen = orig / low, high_freq_wavelen = orig / high;
    double wavelen = 2.0 * M_PI / inv_freq;

    if (wavelen < high_freq_wavelen)
        return inv_freq;
    if (wavelen > low_freq_wavelen)
        return inv_freq / factor;
    double smooth = (orig / wavelen - low) / (high - low);
    return (1.0 - smooth) * inv_freq / factor + smooth * inv_freq;
}

void loom_rope_inv_freq(const loom_config *p, float *inv_freq)
{
    int hd = p->head_dim;
    for (int i = 0; i < hd / 2; i++) {
        double f = 1.0 / pow(p->rope_theta, (double)(2 * i) / hd);
        if (p->rope_llama3)
            f = llama3_scale(p, f);
        inv_freq[i] = (float)f;
    }
}

void loom_rope_apply(float *x, int32_t head_dim, const float *inv_freq, int32_t pos)
{
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle), s = sinf(angle);
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

int32_t loom_argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i]))
            best = i;
    return best;
}

/* ------------------------------------------------------------------------ */
/* The forward pass                                                          */
/* ------------------------------------------------------------------------ */

/* q, k, v of this position for layer l: projections (+ bias), Qwen3's
 * per-head q/k RMSNorm, then RoPE; k and v go to the cache at pos. */
static void qkv(loom_oracle *o, int l, int pos)
{
    const loom_config *p = &o->cfg;
    oracle_weights *w = &o->w;
    oracle_state *s = &o->s;
    int dim = p->hidden_size, hd = p->head_dim;
    int q_dim = p->n_heads * hd, kv_dim = p->n_kv_heads * hd;
    int64_t ql = (int64_t)l * q_dim, kvl = (int64_t)l * kv_dim;

    matmul(s->q, s->xb, w->wq + ql * dim, w->bq ? w->bq + ql : NULL, dim, q_dim);
    matmul(s->k, s->xb, w->wk + kvl * dim, w->bk ? w->bk + kvl : NULL, dim, kv_dim);
    matmul(s->v, s->xb, w->wv + kvl * dim, w->bv ? w->bv + kvl : NULL, dim, kv_dim);
    for (int h = 0; h < p->n_heads; h++) {
        float *q = s->q + h * hd;
        if (w->q_norm)
            rmsnorm(q, q, w->q_norm + (int64_t)l * hd, hd, p->rms_norm_eps);
        loom_rope_apply(q, hd, w->inv_freq, pos);
    }
    for (int h = 0; h < p->n_kv_heads; h++) {
        float *k = s->k + h * hd;
        if (w->k_norm)
            rmsnorm(k, k, w->k_norm + (int64_t)l * hd, hd, p->rms_norm_eps);
        loom_rope_apply(k, hd, w->inv_freq, pos);
    }
    int64_t off = ((int64_t)l * o->seq_len + pos) * kv_dim;
    memcpy(s->key_cache + off, s->k, kv_dim * sizeof(float));
    memcpy(s->value_cache + off, s->v, kv_dim * sizeof(float));
}

/* Grouped-query attention of every query head over positions 0..pos of
 * layer l; the result, heads side by side, goes to xb. */
static void attention(loom_oracle *o, int l, int pos)
{
    const loom_config *p = &o->cfg;
    oracle_state *s = &o->s;
    int hd = p->head_dim, kv_dim = p->n_kv_heads * hd;
    int group = p->n_heads / p->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    const float *kc = s->key_cache + (int64_t)l * o->seq_len * kv_dim;
    const float *vc = s->value_cache + (int64_t)l * o->seq_len * kv_dim;

    for (int h = 0; h < p->n_heads; h++) {
        const float *q = s->q + h * hd;
        float *att = s->att + (int64_t)h * o->seq_len;
        int kvh = h / group;
        for (int t = 0; t <= pos; t++) {
            const float *k = kc + (int64_t)t * kv_dim + kvh * hd;
            float score = 0.0f;
            for (int i = 0; i < hd; i++)
                score += q[i] * k[i];
            att[t] = score * scale;
        }
        softmax(att, pos + 1);
        float *xb = s->xb + h * hd;
        memset(xb, 0, hd * sizeof(float));
        for (int t = 0; t <= pos; t++) {
            const float *v = vc + (int64_t)t * kv_dim + kvh * hd;
            for (int i = 0; i < hd; i++)
                xb[i] += att[t] * v[i];
        }
    }
}

/* SwiGLU MLP of layer l on xb: down(silu(gate(xb)) * up(xb)) -> xb2. */
static void mlp(loom_oracle *o, int l)
{
    const loom_config *p = &o->cfg;
    oracle_weights *w = &o->w;
    oracle_state *s = &o->s;
    int dim = p->hidden_size, hidden = p->intermediate_size;
    int64_t off = (int64_t)l * hidden * dim;

    matmul(s->hb, s->xb, w->w_gate + off, NULL, dim, hidden);
    matmul(s->hb2, s->xb, w->w_up + off, NULL, dim, hidden);
    for (int i = 0; i < hidden; i++) {
        float g = s->hb[i];
        s->hb[i] = g * (1.0f / (1.0f + expf(-g))) * s->hb2[i];
    }
    matmul(s->xb2, s->hb, w->w_down + off, NULL, hidden, dim);
}

static void transformer(loom_oracle *o, int token, int pos, float *logits)
{
    const loom_config *p = &o->cfg;
    oracle_weights *w = &o->w;
    oracle_state *s = &o->s;
    int dim = p->hidden_size, q_dim = p->n_heads * p->head_dim;
    float eps = p->rms_norm_eps;

    memcpy(s->x, w->embed + (int64_t)token * dim, dim * sizeof(float));
    for (int l = 0; l < p->n_layers; l++) {
        rmsnorm(s->xb, s->x, w->attn_norm + (int64_t)l * dim, dim, eps);
        qkv(o, l, pos);
        attention(o, l, pos);
        matmul(s->xb2, s->xb, w->wo + (int64_t)l * dim * q_dim, NULL, q_dim, dim);
        accum(s->x, s->xb2, dim);

        rmsnorm(s->xb, s->x, w->ffn_norm + (int64_t)l * dim, dim, eps);
        mlp(o, l);
        accum(s->x, s->xb2, dim);
    }
    rmsnorm(s->x, s->x, w->final_norm, dim, eps);
    matmul(logits, s->x, w->lm_head, NULL, dim, p->vocab_size);
}

loom_status loom_oracle_forward(loom_oracle *o, int32_t token, int32_t pos, float *logits)
{
    if (!o || !logits)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "oracle: NULL oracle or logits");
    if (token < 0 || token >= o->cfg.vocab_size)
        return loom_fail(LOOM_ERR_LIMIT, "oracle: token %d outside the vocabulary [0, %d)",
                         token, o->cfg.vocab_size);
    if (pos < 0 || pos >= o->seq_len)
        return loom_fail(LOOM_ERR_LIMIT, "oracle: position %d outside the context [0, %d)",
                         pos, o->seq_len);
    if (pos != o->n_past)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "oracle: position %d, but the KV cache holds %d positions "
                         "(the next position is %d)", pos, o->n_past, o->n_past);
    transformer(o, token, pos, logits);
    o->n_past = pos + 1;
    return LOOM_OK;
}
