/* test_oracle.c - the oracle against an independent, cache-free reference.
 *
 * The reference below shares no code with src/ref/oracle.c: it reads the
 * weights itself, works in double, runs the whole prefix through every layer
 * for each position (no KV cache: attention over all positions recomputed
 * each time) and derives RoPE frequencies from its own formula. The oracle's
 * KV-cached step-by-step logits must match it to 1e-5 relative L2 at every
 * position, on each tiny preset; a planted one-weight perturbation must be
 * caught by the same comparison. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/model.h"
#include "ref/oracle.h"

#define N_POS 20
#define TOL 1e-5

static const char *const presets[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny"};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

/* ------------------------------------------------------------------------ */
/* Random inputs                                                             */
/* ------------------------------------------------------------------------ */

static loom_model *open_preset(const char *name)
{
    loom_model_params mp = loom_model_default_params();
    loom_model *m = NULL;
    mp.seed = loom_test_seed();
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    return m;
}

/* A shallow copy of a model whose q and k projections are scaled by 8 and
 * held as F32 in the test's own buffers. With N(0, 0.02) weights and hidden
 * 64 the tiny presets' attention scores are ~0.03, softmax is nearly
 * uniform, and a RoPE or masking error would hide (Qwen3's q/k norm hides
 * the scale, the others do not); scaled, the scores are O(1). */
typedef struct {
    loom_model m;
    float *buf[64];
    int n_buf;
} sharp_model;

static bool scale_tensor(sharp_model *s, loom_tensor *t, float k)
{
    int64_t n = loom_tensor_numel(t);
    float *p = malloc((size_t)n * sizeof *p);
    if (!p || s->n_buf == 64) {
        free(p);
        return false;
    }
    loom_tensor_read_f32(t, 0, n, p);
    for (int64_t i = 0; i < n; i++)
        p[i] *= k;
    t->dtype = LOOM_DTYPE_F32;
    t->gen_kind = LOOM_GEN_NONE;
    t->data = p;
    t->nbytes = (uint64_t)n * sizeof *p;
    s->buf[s->n_buf++] = p;
    return true;
}

static void sharp_free(sharp_model *s)
{
    for (int i = 0; i < s->n_buf; i++)
        free(s->buf[i]);
    free(s->m.w.layers);
    memset(s, 0, sizeof *s);
}

static bool sharpen(sharp_model *s, const loom_model *m)
{
    bool ok = true;
    memset(s, 0, sizeof *s);
    s->m = *m;
    s->m.w.layers = malloc(sizeof(loom_layer_weights) * m->cfg.n_layers);
    if (!s->m.w.layers)
        return false;
    memcpy(s->m.w.layers, m->w.layers, sizeof(loom_layer_weights) * m->cfg.n_layers);
    for (int l = 0; ok && l < m->cfg.n_layers; l++)
        ok = scale_tensor(s, &s->m.w.layers[l].wq, 8.0f) &&
             scale_tensor(s, &s->m.w.layers[l].wk, 8.0f);
    CHECK(ok, "could not sharpen %s", m->preset);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* The independent reference: double precision, no KV cache                 */
/* ------------------------------------------------------------------------ */

typedef struct {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *q_norm, *k_norm;
    float *wo, *ffn_norm, *w_gate, *w_up, *w_down;
} ref_layer;

typedef struct {
    loom_config c;
    float *embed, *final_norm, *lm_head;
    ref_layer *layer;
} ref_model;

static float *read_all(const loom_tensor *t)
{
    if (!loom_tensor_present(t))
        return NULL;
    int64_t n = loom_tensor_numel(t);
    float *p = malloc((size_t)n * sizeof *p);
    if (p)
        loom_tensor_read_f32(t, 0, n, p);
    return p;
}

static void ref_free(ref_model *r)
{
    for (int l = 0; r->layer && l < r->c.n_layers; l++) {
        ref_layer *y = &r->layer[l];
        float *all[] = {y->attn_norm, y->wq, y->wk, y->wv, y->bq, y->bk, y->bv, y->q_norm,
                        y->k_norm, y->wo, y->ffn_norm, y->w_gate, y->w_up, y->w_down};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]);
    }
    free(r->layer);
    if (r->lm_head != r->embed)
        free(r->lm_head);
    free(r->embed);
    free(r->final_norm);
    memset(r, 0, sizeof *r);
}

static bool ref_load(ref_model *r, const loom_model *m)
{
    memset(r, 0, sizeof *r);
    r->c = m->cfg;
    r->embed = read_all(&m->w.embed);
    r->final_norm = read_all(&m->w.final_norm);
    r->lm_head = r->c.tie_word_embeddings ? r->embed : read_all(&m->w.lm_head);
    r->layer = calloc(r->c.n_layers, sizeof *r->layer);
    bool ok = r->embed && r->final_norm && r->lm_head && r->layer;
    for (int l = 0; ok && l < r->c.n_layers; l++) {
        const loom_layer_weights *s = &m->w.layers[l];
        ref_layer *y = &r->layer[l];
        y->attn_norm = read_all(&s->attn_norm);
        y->wq = read_all(&s->wq);
        y->wk = read_all(&s->wk);
        y->wv = read_all(&s->wv);
        y->bq = read_all(&s->bq);
        y->bk = read_all(&s->bk);
        y->bv = read_all(&s->bv);
        y->q_norm = read_all(&s->q_norm);
        y->k_norm = read_all(&s->k_norm);
        y->wo = read_all(&s->wo);
        y->ffn_norm = read_all(&s->ffn_norm);
        y->w_gate = read_all(&s->w_gate);
        y->w_up = read_all(&s->w_up);
        y->w_down = read_all(&s->w_down);
        ok = y->attn_norm && y->wq && y->wk && y->wv && y->wo && y->ffn_norm &&
             y->w_gate && y->w_up && y->w_down &&
             (!r->c.attention_bias || (y->bq && y->bk && y->bv)) &&
             (!r->c.qk_norm || (y->q_norm && y->k_norm));
    }
    CHECK(ok, "reference: could not read the weights of %s", m->preset);
    return ok;
}

/* Inverse frequency i, written from the llama3 rule in terms of the ratio
 * r = original context / wavelength: r >= high keeps the frequency, r <= low
 * divides it by factor, in between the two are blended linearly in r. */
static double ref_inv_freq(const loom_config *c, int i)
{
    double f = exp(-log(c->rope_theta) * (2.0 * i) / c->head_dim);
    if (!c->rope_llama3)
        return f;
    double r = c->rope_original_max_position * f / (2.0 * M_PI);
    double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    if (r > hi)
        return f;
    if (r < lo)
        return f / c->rope_factor;
    double blend = (r - lo) / (hi - lo);
    return f * (blend + (1.0 - blend) / c->rope_factor);
}

static void ref_rmsnorm(double *x, const float *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double k = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        x[i] = x[i] * k * w[i];
}

/* y (rows) = W (rows, cols) x (cols) + b */
static void ref_linear(double *y, const float *W, const float *b, const double *x,
                       int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double acc = b ? b[r] : 0.0;
        for (int c = 0; c < cols; c++)
            acc += (double)W[(int64_t)r * cols + c] * x[c];
        y[r] = acc;
    }
}

static void ref_rope(double *v, int hd, const loom_config *c, int pos)
{
    for (int i = 0; i < hd / 2; i++) {
        double a = pos * ref_inv_freq(c, i);
        double x0 = v[i], x1 = v[i + hd / 2];
        v[i] = x0 * cos(a) - x1 * sin(a);
        v[i + hd / 2] = x1 * cos(a) + x0 * sin(a);
    }
}

/* Attention of all n positions of layer y at once: causal, grouped-query,
 * from q (n, q_dim), k and v (n, kv_dim) into o (n, q_dim). */
static void ref_attention(const loom_config *c, int n, const double *q, const double *k,
                          const double *v, double *o)
{
    int hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    double *p = malloc(n * sizeof *p);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < c->n_heads; h++) {
            int g = h * c->n_kv_heads / c->n_heads;   /* kv head of query head h */
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += q[t * qd + h * hd + i] * k[s * kvd + g * hd + i];
                p[s] = d / sqrt((double)hd);
                mx = p[s] > mx ? p[s] : mx;
            }
            for (int s = 0; s <= t; s++)
                sum += (p[s] = exp(p[s] - mx));
            for (int i = 0; i < hd; i++) {
                double acc = 0;
                for (int s = 0; s <= t; s++)
                    acc += p[s] * v[s * kvd + g * hd + i];
                o[t * qd + h * hd + i] = acc / sum;
            }
        }
    free(p);
}

/* One transformer layer over all n positions of x (n, dim), in place. */
static void ref_layer_forward(const ref_model *r, const ref_layer *y, int n, double *x)
{
    const loom_config *c = &r->c;
    int dim = c->hidden_size, hd = c->head_dim, ff = c->intermediate_size;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    double *xn = malloc(sizeof(double) * n * dim), *q = malloc(sizeof(double) * n * qd);
    double *k = malloc(sizeof(double) * n * kvd), *v = malloc(sizeof(double) * n * kvd);
    double *o = malloc(sizeof(double) * n * qd), *t1 = malloc(sizeof(double) * dim);
    double *g = malloc(sizeof(double) * ff), *u = malloc(sizeof(double) * ff);

    for (int t = 0; t < n; t++) {
        memcpy(xn + t * dim, x + t * dim, sizeof(double) * dim);
        ref_rmsnorm(xn + t * dim, y->attn_norm, dim, c->rms_norm_eps);
        ref_linear(q + t * qd, y->wq, y->bq, xn + t * dim, qd, dim);
        ref_linear(k + t * kvd, y->wk, y->bk, xn + t * dim, kvd, dim);
        ref_linear(v + t * kvd, y->wv, y->bv, xn + t * dim, kvd, dim);
        for (int h = 0; h < c->n_heads; h++) {
            if (c->qk_norm)
                ref_rmsnorm(q + t * qd + h * hd, y->q_norm, hd, c->rms_norm_eps);
            ref_rope(q + t * qd + h * hd, hd, c, t);
        }
        for (int h = 0; h < c->n_kv_heads; h++) {
            if (c->qk_norm)
                ref_rmsnorm(k + t * kvd + h * hd, y->k_norm, hd, c->rms_norm_eps);
            ref_rope(k + t * kvd + h * hd, hd, c, t);
        }
    }
    ref_attention(c, n, q, k, v, o);
    for (int t = 0; t < n; t++) {
        double *xt = x + t * dim;
        ref_linear(t1, y->wo, NULL, o + t * qd, dim, qd);
        for (int i = 0; i < dim; i++)
            xt[i] += t1[i];
        memcpy(t1, xt, sizeof(double) * dim);
        ref_rmsnorm(t1, y->ffn_norm, dim, c->rms_norm_eps);
        ref_linear(g, y->w_gate, NULL, t1, ff, dim);
        ref_linear(u, y->w_up, NULL, t1, ff, dim);
        for (int i = 0; i < ff; i++)
            g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        ref_linear(t1, y->w_down, NULL, g, dim, ff);
        for (int i = 0; i < dim; i++)
            xt[i] += t1[i];
    }
    free(xn); free(q); free(k); free(v); free(o); free(t1); free(g); free(u);
}

/* Logits of the last of n tokens, computed from scratch. */
static void ref_logits(const ref_model *r, const int32_t *tok, int n, double *logits)
{
    int dim = r->c.hidden_size;
    double *x = malloc(sizeof(double) * n * dim);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < dim; i++)
            x[t * dim + i] = r->embed[(int64_t)tok[t] * dim + i];
    for (int l = 0; l < r->c.n_layers; l++)
        ref_layer_forward(r, &r->layer[l], n, x);
    double *last = x + (n - 1) * dim;
    ref_rmsnorm(last, r->final_norm, dim, r->c.rms_norm_eps);
    ref_linear(logits, r->lm_head, NULL, last, r->c.vocab_size, dim);
    free(x);
}

/* ------------------------------------------------------------------------ */
/* The comparison                                                            */
/* ------------------------------------------------------------------------ */

/* max over positions of |a - b|_2 / |b|_2 (a: n_pos x vocab); NaN -> inf. */
static double max_rel_l2(const float *a, const double *b, int n_pos, int vocab)
{
    double worst = 0;
    for (int p = 0; p < n_pos; p++) {
        double d = 0, s = 0;
        for (int i = 0; i < vocab; i++) {
            double e = a[(int64_t)p * vocab + i] - b[(int64_t)p * vocab + i];
            d += e * e;
            s += b[(int64_t)p * vocab + i] * b[(int64_t)p * vocab + i];
        }
        double rel = sqrt(d) / sqrt(s);
        if (!(rel <= worst))   /* NaN included */
            worst = isnan(rel) ? INFINITY : rel;
    }
    return worst;
}

/* The oracle's logits of tok[0..n), one cached step at a time. */
static bool oracle_run(const loom_model *m, const int32_t *tok, int n, float *logits)
{
    loom_oracle *o = NULL;
    bool ok = true;
    CHECK_OK(loom_oracle_create(m, N_POS, &o));
    if (!o)
        return false;
    for (int p = 0; p < n && ok; p++) {
        loom_status st = loom_oracle_forward(o, tok[p], p, logits + (int64_t)p * m->cfg.vocab_size);
        CHECK(st == LOOM_OK, "forward pos %d: %s", p, loom_last_error());
        ok = st == LOOM_OK;
    }
    loom_oracle_free(o);
    return ok;
}

static void reference_run(const ref_model *r, const int32_t *tok, int n, double *logits)
{
    for (int p = 0; p < n; p++)
        ref_logits(r, tok, p + 1, logits + (int64_t)p * r->c.vocab_size);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

/* The oracle against the reference on preset k, as generated or sharpened. */
static void match_one(int k, bool sharp)
{
    loom_model *m0 = open_preset(presets[k]);
    sharp_model sm;
    if (!m0)
        return;
    if (sharp && !sharpen(&sm, m0)) {
        loom_model_free(m0);
        return;
    }
    const loom_model *m = sharp ? &sm.m : m0;
    {
        int vocab = m->cfg.vocab_size;
        int32_t tok[N_POS];
        float *got = malloc(sizeof(float) * N_POS * vocab);
        double *want = malloc(sizeof(double) * N_POS * vocab);
        ref_model r;
        loom_test_random_tokens(loom_test_seed() + k, vocab, tok, N_POS);
        if (oracle_run(m, tok, N_POS, got) && ref_load(&r, m)) {
            double sumsq = 0;
            bool finite = true;
            for (int i = 0; i < N_POS * vocab; i++) {
                finite = finite && isfinite(got[i]);
                sumsq += (double)got[i] * got[i];
            }
            CHECK(finite, "%s: oracle logits not finite", presets[k]);
            CHECK(sumsq > 0, "%s: oracle logits all zero", presets[k]);
            reference_run(&r, tok, N_POS, want);
            double err = max_rel_l2(got, want, N_POS, vocab);
            CHECK(err <= TOL, "%s%s: oracle vs cache-free reference: max rel L2 %.3g > %g",
                  presets[k], sharp ? " (sharpened)" : "", err, TOL);
            fprintf(stderr, "  %s%s: max rel L2 vs reference %.3g over %d positions\n",
                    presets[k], sharp ? " (sharpened)" : "", err, N_POS);
            ref_free(&r);
        }
        free(got);
        free(want);
    }
    if (sharp)
        sharp_free(&sm);
    loom_model_free(m0);
}

static void test_matches_reference(void)
{
    for (int k = 0; k < N_PRESETS; k++)
        match_one(k, false);
}

static void test_matches_reference_sharp_attention(void)
{
    for (int k = 0; k < N_PRESETS; k++)
        match_one(k, true);
}

/* Planted bug: one weight of a copy changed by a plausible amount (2 sigma
 * of the init); the comparison above must see it. One perturbation in a
 * key projection (reaches the logits only through attention) and one in the
 * final norm. */
static void test_planted_weight_bug_is_caught(void)
{
    loom_model *m = open_preset("qwen3-tiny");
    if (!m)
        return;
    int vocab = m->cfg.vocab_size;
    int32_t tok[N_POS];
    float *got = malloc(sizeof(float) * N_POS * vocab);
    double *want = malloc(sizeof(double) * N_POS * vocab);
    ref_model r;
    loom_test_random_tokens(loom_test_seed() ^ 0x5eed, vocab, tok, N_POS);
    if (oracle_run(m, tok, N_POS, got) && ref_load(&r, m)) {
        reference_run(&r, tok, N_POS, want);
        CHECK(max_rel_l2(got, want, N_POS, vocab) <= TOL, "unperturbed copy must agree");

        r.layer[0].wk[3 * m->cfg.hidden_size + 5] += 0.04f;
        reference_run(&r, tok, N_POS, want);
        double err = max_rel_l2(got, want, N_POS, vocab);
        CHECK(err > TOL, "perturbed wk[0][3,5] not detected: rel L2 %.3g", err);
        fprintf(stderr, "  planted wk perturbation: rel L2 %.3g (tolerance %g)\n", err, TOL);
        r.layer[0].wk[3 * m->cfg.hidden_size + 5] -= 0.04f;

        r.final_norm[7] += 0.04f;
        reference_run(&r, tok, N_POS, want);
        err = max_rel_l2(got, want, N_POS, vocab);
        CHECK(err > TOL, "perturbed final_norm[7] not detected: rel L2 %.3g", err);
        fprintf(stderr, "  planted final_norm perturbation: rel L2 %.3g\n", err);
        ref_free(&r);
    }
    free(got);
    free(want);
    loom_model_free(m);
}

/* Two oracles, and one oracle after reset, give bit-identical logits. */
static void test_deterministic(void)
{
    for (int k = 0; k < N_PRESETS; k++) {
        loom_model *m = open_preset(presets[k]);
        if (!m)
            continue;
        int vocab = m->cfg.vocab_size, n = 8;
        int32_t tok[8];
        float *a = malloc(sizeof(float) * n * vocab), *b = malloc(sizeof(float) * n * vocab);
        loom_test_random_tokens(loom_test_seed() * 3 + k, vocab, tok, n);
        if (oracle_run(m, tok, n, a) && oracle_run(m, tok, n, b))
            CHECK(memcmp(a, b, sizeof(float) * n * vocab) == 0, "%s: two runs differ",
                  presets[k]);
        loom_oracle *o = NULL;
        CHECK_OK(loom_oracle_create(m, n, &o));
        for (int p = 0; o && p < n; p++)
            CHECK_OK(loom_oracle_forward(o, tok[p], p, b + p * vocab));
        loom_oracle_reset(o);
        CHECK(loom_oracle_n_past(o) == 0, "reset leaves %d positions", loom_oracle_n_past(o));
        for (int p = 0; o && p < n; p++)
            CHECK_OK(loom_oracle_forward(o, tok[p], p, b + p * vocab));
        CHECK(memcmp(a, b, sizeof(float) * n * vocab) == 0, "%s: run after reset differs",
              presets[k]);
        loom_oracle_free(o);
        free(a);
        free(b);
        loom_model_free(m);
    }
}

static void test_rope_position_zero_is_identity(void)
{
    loom_config c;
    CHECK(loom_preset_config("qwen3-0.6b", &c), "preset config");
    float inv[64], x[128], y[128];
    uint64_t s = loom_test_seed();
    loom_rope_inv_freq(&c, inv);
    for (int i = 0; i < c.head_dim; i++)
        x[i] = y[i] = (float)((int64_t)(loom_test_rng_next(&s) % 2001) - 1000) / 500.0f + 0.001f;
    loom_rope_apply(y, c.head_dim, inv, 0);
    CHECK(memcmp(x, y, sizeof(float) * c.head_dim) == 0, "rope at position 0 is not identity");
    /* Elsewhere it is a rotation of each pair (i, i + hd/2): norms are kept. */
    loom_rope_apply(y, c.head_dim, inv, 37);
    for (int i = 0; i < c.head_dim / 2; i++) {
        double n0 = hypot(x[i], x[i + c.head_dim / 2]), n1 = hypot(y[i], y[i + c.head_dim / 2]);
        CHECK(fabs(n0 - n1) <= 1e-5 * (1 + n0), "pair %d norm %g -> %g", i, n0, n1);
    }
    CHECK(memcmp(x, y, sizeof(float) * c.head_dim) != 0, "rope at 37 changed nothing");
    /* The default frequencies: 1 / theta^(2i/hd). */
    for (int i = 0; i < c.head_dim / 2; i++) {
        double want = pow(1e6, -2.0 * i / 128);
        CHECK(fabs(inv[i] - want) <= 1e-6 * want, "inv_freq[%d] %.9g, want %.9g", i, inv[i], want);
    }
}

static void test_rope_llama3_scaling(void)
{
    /* Llama-3.2's rope: theta 5e5, head_dim 64, factor 32, low 1, high 4,
     * original 8192. Values computed by hand from the formula (python). */
    static const struct { int i; double want; } known[] = {
        {0, 1.0}, {14, 3.211445995e-03}, {15, 1.290547928e-03}, {16, 4.295567966e-04},
        {17, 9.708287803e-05}, {18, 1.946163818e-05}, {31, 9.418306725e-08},
    };
    loom_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = 64;
    c.rope_theta = 500000.0;
    c.rope_llama3 = true;
    c.rope_factor = 32.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_position = 8192;
    float inv[32];
    loom_rope_inv_freq(&c, inv);
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        double got = inv[known[k].i], want = known[k].want;
        CHECK(fabs(got - want) <= 1e-6 * want, "llama3 inv_freq[%d] %.9g, want %.9g",
              known[k].i, got, want);
    }
    /* Every entry, and the tiny preset (all three bands), against the
     * test's own formula. */
    loom_config t;
    CHECK(loom_preset_config("llama-tiny", &t) && t.rope_llama3, "llama-tiny has llama3 rope");
    const loom_config *cs[] = {&c, &t};
    for (int k = 0; k < 2; k++) {
        float f[128];
        int bands[3] = {0, 0, 0};
        loom_rope_inv_freq(cs[k], f);
        for (int i = 0; i < cs[k]->head_dim / 2; i++) {
            double want = ref_inv_freq(cs[k], i), plain = pow(cs[k]->rope_theta, -2.0 * i / cs[k]->head_dim);
            CHECK(fabs(f[i] - want) <= 1e-6 * want, "config %d: inv_freq[%d] %.9g, want %.9g",
                  k, i, f[i], want);
            bands[want == plain ? 0 : fabs(want * cs[k]->rope_factor - plain) < 1e-12 * plain ? 2 : 1]++;
        }
        CHECK(bands[0] && bands[1] && bands[2], "config %d: bands kept/smooth/divided %d/%d/%d",
              k, bands[0], bands[1], bands[2]);
    }
}

static void test_argmax(void)
{
    float a[] = {1.0f, 3.0f, 3.0f, 2.0f};
    CHECK(loom_argmax(a, 4) == 1, "tie goes to lowest index, got %d", loom_argmax(a, 4));
    float b[] = {NAN, -5.0f, -1.0f, NAN};
    CHECK(loom_argmax(b, 4) == 2, "NaN is never the largest, got %d", loom_argmax(b, 4));
    float c[] = {-INFINITY, -INFINITY};
    CHECK(loom_argmax(c, 2) == 0, "all -inf: %d", loom_argmax(c, 2));
}

static void test_bad_inputs(void)
{
    loom_model *m = open_preset("llama-tiny");
    if (!m)
        return;
    int vocab = m->cfg.vocab_size;
    loom_oracle *o = NULL;
    CHECK_OK(loom_oracle_create(m, 4, &o));
    if (!o) {
        loom_model_free(m);
        return;
    }
    float *logits = malloc(sizeof(float) * vocab);
    for (int i = 0; i < vocab; i++)
        logits[i] = 42.0f;
    char want[64];

    CHECK(loom_oracle_forward(o, vocab, 0, logits) == LOOM_ERR_LIMIT, "token = vocab accepted");
    snprintf(want, sizeof want, "token %d", vocab);
    CHECK(strstr(loom_last_error(), want) && strstr(loom_last_error(), "512"),
          "message '%s' does not name the token and the vocab", loom_last_error());
    CHECK(loom_oracle_forward(o, -1, 0, logits) == LOOM_ERR_LIMIT, "token -1 accepted");
    CHECK(strstr(loom_last_error(), "token -1"), "message '%s'", loom_last_error());
    CHECK(loom_oracle_forward(o, 3, 1, logits) == LOOM_ERR_INVALID_ARGUMENT,
          "position 1 accepted before 0");
    CHECK(strstr(loom_last_error(), "position 1"), "message '%s'", loom_last_error());
    CHECK(loom_oracle_forward(o, 3, 0, NULL) == LOOM_ERR_INVALID_ARGUMENT, "NULL logits");
    CHECK(loom_oracle_n_past(o) == 0, "a failed call moved the cache to %d", loom_oracle_n_past(o));
    for (int i = 0; i < vocab; i++)
        if (logits[i] != 42.0f) {
            CHECK(0, "a failed call wrote logits[%d]", i);
            break;
        }

    for (int p = 0; p < 4; p++)
        CHECK_OK(loom_oracle_forward(o, (p * 37) % vocab, p, logits));
    CHECK(loom_oracle_forward(o, 5, 4, logits) == LOOM_ERR_LIMIT, "position 4 of 4 accepted");
    CHECK(strstr(loom_last_error(), "position 4") && strstr(loom_last_error(), "[0, 4)"),
          "message '%s' does not name the position and the limit", loom_last_error());
    CHECK(loom_oracle_forward(o, 5, 1000000, logits) == LOOM_ERR_LIMIT, "position 1e6 accepted");
    CHECK(loom_oracle_n_past(o) == 4, "n_past %d", loom_oracle_n_past(o));

    loom_oracle *o2 = NULL;
    CHECK(loom_oracle_create(m, -1, &o2) == LOOM_ERR_INVALID_ARGUMENT && !o2,
          "max_context -1 accepted");
    CHECK(loom_oracle_create(NULL, 4, &o2) == LOOM_ERR_INVALID_ARGUMENT && !o2, "NULL model");
    free(logits);
    loom_oracle_free(o);
    loom_oracle_free(NULL);
    loom_model_free(m);
}

TEST_MAIN(TEST(test_matches_reference), TEST(test_matches_reference_sharp_attention),
          TEST(test_planted_weight_bug_is_caught),
          TEST(test_deterministic), TEST(test_rope_position_zero_is_identity),
          TEST(test_rope_llama3_scaling), TEST(test_argmax), TEST(test_bad_inputs))
