/* test_graph.c - the decode-step graph of each tiny preset: ops and tensors
 * as graph.h describes them, packed weights element by element against the
 * model's tensors, rope inverse frequencies against HF's formula. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "graph/graph.h"
#include "harness.h"

static const char *tiny[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny"};

static loom_model *load(const char *name)
{
    loom_model *m = NULL;
    loom_model_params mp = loom_model_default_params();

    mp.seed = loom_test_seed();
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    return m;
}

static loom_graph_params params(int32_t n_sms)
{
    loom_graph_params p = {.max_batch = 1, .max_context = 100, .page_size = 16,
                           .attn_split = 0, .mlp_fuse = 1, .n_sms = n_sms,
                           .record_logits = false};
    return p;
}

static int32_t find_tensor(const loom_graph *g, const char *name)
{
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return i;
    return -1;
}

static void check_shape(const loom_graph *g, int32_t t, int64_t rows, int64_t cols,
                        loom_role role, loom_dtype dt, const char *what)
{
    CHECK(t >= 0 && t < g->n_tensors, "%s: tensor id %d", what, t);
    if (t < 0 || t >= g->n_tensors)
        return;
    const loom_gtensor *x = &g->tensors[t];
    CHECK(x->rows == rows && x->cols == cols, "%s '%s': [%lld, %lld], expected [%lld, %lld]",
          what, x->name, (long long)x->rows, (long long)x->cols, (long long)rows,
          (long long)cols);
    CHECK(x->role == role && x->dtype == dt, "%s '%s': role %d dtype %d", what, x->name,
          x->role, x->dtype);
}

/* One layer's ops starting at op index i; returns the index after them. */
static int32_t check_layer(const loom_graph *g, int32_t i, int32_t l, int32_t *x)
{
    const loom_config *c = &g->cfg;
    int64_t hd = c->head_dim, H = c->hidden_size, qkv = (c->n_heads + 2 * c->n_kv_heads) * hd;
    const loom_op *o = &g->ops[i];
    int32_t S = 0;

    CHECK(o->kind == LOOM_OP_LINEAR && !strcmp(o->name, "qkv") && o->layer == l, "L%d qkv", l);
    CHECK(o->x == *x && o->pro == LOOM_PRO_RMSNORM && o->epi == LOOM_EPI_STORE, "L%d qkv io", l);
    check_shape(g, o->w, qkv, H, LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, "wqkv");
    check_shape(g, o->norm, 1, H, LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, "attn_norm");
    check_shape(g, o->y, 1, qkv, LOOM_ROLE_ACT, LOOM_DTYPE_F32, "qkv_out");
    CHECK((o->bias >= 0) == c->attention_bias, "L%d bias present iff Qwen2", l);
    if (o->bias >= 0)
        check_shape(g, o->bias, 1, qkv, LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, "bqkv");
    o = &g->ops[++i];
    CHECK(o->kind == LOOM_OP_ATTENTION && o->x == g->ops[i - 1].y, "L%d attn reads qkv", l);
    CHECK((o->norm >= 0) == c->qk_norm && (o->norm2 >= 0) == c->qk_norm, "L%d q/k norm", l);
    if (c->qk_norm) {
        check_shape(g, o->norm, 1, hd, LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, "q_norm");
        check_shape(g, o->norm2, 1, hd, LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, "k_norm");
    }
    check_shape(g, o->kcache, (int64_t)g->n_pages * g->params.page_size, c->n_kv_heads * hd,
                LOOM_ROLE_KV, LOOM_DTYPE_BF16, "k_cache");
    check_shape(g, o->vcache, (int64_t)g->n_pages * g->params.page_size, c->n_kv_heads * hd,
                LOOM_ROLE_KV, LOOM_DTYPE_BF16, "v_cache");
    S = o->split;
    int32_t attn = o->y;
    if (S > 1) {
        check_shape(g, o->aux, 1, (int64_t)c->n_heads * S * (hd + 2), LOOM_ROLE_ACT,
                    LOOM_DTYPE_F32, "attn partials");
        /* the merge: in the attention (y set, mode 2) or an op (1) */
        int32_t mode = o->y >= 0 ? 2 : 1;
        CHECK(mode == loom_attn_merge_mode(&g->params, S), "L%d merge: mode %d, asked %d", l,
              mode, g->params.attn_merge);
        if (mode == 1) {
            o = &g->ops[++i];
            CHECK(o->kind == LOOM_OP_ATTN_MERGE && o->aux == g->ops[i - 1].aux && o->split == S,
                  "L%d merge", l);
            attn = o->y;
        }
    }
    check_shape(g, attn, 1, c->n_heads * hd, LOOM_ROLE_ACT, LOOM_DTYPE_F32, "attn_out");
    o = &g->ops[++i];
    CHECK(!strcmp(o->name, "o_proj") && o->x == attn && o->resid == *x &&
          o->epi == LOOM_EPI_RESIDUAL && o->pro == LOOM_PRO_NONE, "L%d o_proj", l);
    check_shape(g, o->w, H, c->n_heads * hd, LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, "wo");
    int32_t mid = o->y;
    o = &g->ops[++i];
    CHECK(!strcmp(o->name, "gate_up") && o->x == mid && o->epi == LOOM_EPI_SILU_MUL &&
          o->pro == LOOM_PRO_RMSNORM, "L%d gate_up", l);
    check_shape(g, o->w, 2 * (int64_t)c->intermediate_size, H, LOOM_ROLE_WEIGHT,
                LOOM_DTYPE_BF16, "w_gate_up");
    check_shape(g, o->y, 1, c->intermediate_size, LOOM_ROLE_ACT, LOOM_DTYPE_F32, "act");
    int32_t act = o->y;
    o = &g->ops[++i];
    CHECK(!strcmp(o->name, "down") && o->x == act && o->resid == mid &&
          o->epi == LOOM_EPI_RESIDUAL, "L%d down", l);
    check_shape(g, o->w, H, c->intermediate_size, LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, "w_down");
    check_shape(g, o->y, 1, H, LOOM_ROLE_ACT, LOOM_DTYPE_F32, "x_next");
    CHECK(o->y != *x && o->y != mid, "L%d: no in-place update", l);
    *x = o->y;
    return i + 1;
}

/* Every preset unsplit, and split 3 with the merge as an op and in the
 * attention (attn_merge n % 3 = 0 .. 2). */
static void test_ops_and_tensors(void)
{
    for (int n = 0; n < 9; n++) {
        loom_model *m = load(tiny[n / 3]);
        loom_graph *g = NULL;
        loom_graph_params gp = params(8);
        if (!m)
            continue;
        gp.attn_split = n % 3 ? 3 : 0;
        gp.attn_merge = n % 3;
        CHECK_OK(loom_graph_build(m, gp, &g));
        if (!g) {
            loom_model_free(m);
            continue;
        }
        const loom_config *c = &g->cfg;
        CHECK(g->n_pages == 7, "%s: n_pages %d, expected ceil(100/16) = 7", tiny[n / 3], g->n_pages);
        check_shape(g, g->t_tokens, 1, 101, LOOM_ROLE_META, LOOM_DTYPE_I32, "tokens");
        check_shape(g, g->t_page_table, 1, 7, LOOM_ROLE_META, LOOM_DTYPE_I32, "page_table");
        check_shape(g, g->t_rope_inv_freq, 1, c->head_dim / 2, LOOM_ROLE_WEIGHT,
                    LOOM_DTYPE_F32, "inv_freq");
        check_shape(g, g->t_logits, 1, c->vocab_size, LOOM_ROLE_ACT, LOOM_DTYPE_F32, "logits");
        const loom_op *o = &g->ops[0];
        CHECK(o->kind == LOOM_OP_EMBED && o->x == g->t_tokens, "%s: embed first", tiny[n / 3]);
        check_shape(g, o->w, c->vocab_size, c->hidden_size, LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16,
                    "embed");
        int32_t x = o->y, i = 1;
        for (int32_t l = 0; l < c->n_layers; l++)
            i = check_layer(g, i, l, &x);
        CHECK(i == g->op_lm_head && i + 2 == g->n_ops, "%s: lm_head at %d, ops %d", tiny[n / 3],
              g->op_lm_head, g->n_ops);
        o = &g->ops[g->op_lm_head];
        CHECK(o->x == x && o->y == g->t_logits && o->epi == LOOM_EPI_ARGMAX &&
              o->pro == LOOM_PRO_RMSNORM, "%s: lm_head io", tiny[n / 3]);
        CHECK((o->w == g->ops[0].w) == c->tie_word_embeddings, "%s: tied lm_head", tiny[n / 3]);
        o = &g->ops[g->op_argmax];
        CHECK(o->kind == LOOM_OP_ARGMAX && o->x == g->ops[g->op_lm_head].aux &&
              o->y == g->t_tokens, "%s: argmax io", tiny[n / 3]);
        FILE *f = tmpfile();
        if (f) {
            loom_graph_print(g, f);
            CHECK(ftell(f) > 1000, "%s: graph print wrote %ld bytes", tiny[n / 3], ftell(f));
            fclose(f);
        }
        loom_graph_free(g);
        /* recorded logits: one row per position */
        gp = params(8);
        gp.record_logits = true;
        CHECK_OK(loom_graph_build(m, gp, &g));
        if (g)
            check_shape(g, g->t_logits, 100, m->cfg.vocab_size, LOOM_ROLE_ACT, LOOM_DTYPE_F32,
                        "recorded logits");
        loom_graph_free(g);
        loom_model_free(m);
    }
}

static void test_bad_params(void)
{
    loom_model *m = load("qwen3-tiny");
    loom_graph *g = NULL;
    loom_graph_params p = params(8);

    if (!m)
        return;
    p.max_context = 1 << 20;
    CHECK(loom_graph_build(m, p, &g) == LOOM_ERR_LIMIT && !g, "context too long");
    p = params(0);
    p.page_size = -1;
    CHECK(loom_graph_build(m, p, &g) == LOOM_ERR_INVALID_ARGUMENT && !g, "bad page size");
    p = params(8);
    p.attn_merge = 3;
    CHECK(loom_graph_build(m, p, &g) == LOOM_ERR_INVALID_ARGUMENT && !g, "bad attn_merge");
    loom_model_free(m);
}

/* Compares n bf16 values of dst with the model tensor's elements. */
static int compare_rows(const uint16_t *dst, const loom_tensor *t, int64_t src_row,
                        int64_t cols)
{
    uint16_t *ref = malloc((size_t)cols * 2);
    int bad = 0;

    loom_tensor_read_bf16(t, src_row * cols, cols, ref);
    for (int64_t c = 0; c < cols; c++)
        bad += dst[c] != ref[c];
    free(ref);
    return bad;
}

static void check_packing(const loom_graph *g, int32_t l)
{
    const loom_config *c = &g->cfg;
    const loom_layer_weights *lw = &g->model->w.layers[l];
    int64_t hd = c->head_dim, G = c->n_heads / c->n_kv_heads, H = c->hidden_size;
    char name[64];
    int bad = 0;

    snprintf(name, sizeof name, "layers.%d.wqkv", l);
    int32_t t = find_tensor(g, name);
    int64_t rows = g->tensors[t].rows;
    uint16_t *w = malloc((size_t)(rows * H) * 2);
    CHECK_OK(loom_graph_fill_weight(g, t, 0, rows, w));
    for (int64_t r = 0; r < rows; r++) {
        int64_t grp = r / ((G + 2) * hd), j = r % ((G + 2) * hd);
        const loom_tensor *src = j < G * hd ? &lw->wq : j < (G + 1) * hd ? &lw->wk : &lw->wv;
        int64_t sr = j < G * hd ? grp * G * hd + j : grp * hd + (j - (j < (G + 1) * hd ? G : G + 1) * hd);
        bad += compare_rows(w + r * H, src, sr, H);
    }
    CHECK(bad == 0, "L%d wqkv: %d elements differ", l, bad);
    /* a block in the middle equals the same rows of the whole */
    uint16_t *part = malloc((size_t)(rows * H) * 2);
    CHECK_OK(loom_graph_fill_weight(g, t, 5, rows - 9, part));
    CHECK(memcmp(part, w + 5 * H, (size_t)((rows - 9) * H) * 2) == 0, "L%d wqkv block", l);
    free(part);
    free(w);

    snprintf(name, sizeof name, "layers.%d.w_gate_up", l);
    t = find_tensor(g, name);
    rows = g->tensors[t].rows;
    w = malloc((size_t)(rows * H) * 2);
    CHECK_OK(loom_graph_fill_weight(g, t, 0, rows, w));
    bad = 0;
    for (int64_t r = 0; r < rows; r++)
        bad += compare_rows(w + r * H, (r & 1) ? &lw->w_up : &lw->w_gate, r / 2, H);
    CHECK(bad == 0, "L%d w_gate_up: %d elements differ", l, bad);
    free(w);

    snprintf(name, sizeof name, "layers.%d.bqkv", l);
    t = find_tensor(g, name);
    CHECK((t >= 0) == c->attention_bias, "L%d bqkv present iff attention_bias", l);
    if (t >= 0) {
        int64_t n = g->tensors[t].cols;
        float *b = malloc((size_t)n * 4), v;
        bad = 0;
        CHECK_OK(loom_graph_fill_weight(g, t, 0, 1, b));
        for (int64_t r = 0; r < n; r++) {
            int64_t grp = r / ((G + 2) * hd), j = r % ((G + 2) * hd);
            if (j < G * hd)
                loom_tensor_read_f32(&lw->bq, grp * G * hd + j, 1, &v);
            else if (j < (G + 1) * hd)
                loom_tensor_read_f32(&lw->bk, grp * hd + j - G * hd, 1, &v);
            else
                loom_tensor_read_f32(&lw->bv, grp * hd + j - (G + 1) * hd, 1, &v);
            bad += b[r] != v || isnan(v) || v == 0;
        }
        CHECK(bad == 0, "L%d bqkv: %d elements differ", l, bad);
        free(b);
    }

    snprintf(name, sizeof name, "layers.%d.attn_norm", l);
    t = find_tensor(g, name);
    float *nv = malloc((size_t)H * 4), ref;
    CHECK_OK(loom_graph_fill_weight(g, t, 0, 1, nv));
    bad = 0;
    for (int64_t i = 0; i < H; i++) {
        loom_tensor_read_f32(&lw->attn_norm, i, 1, &ref);
        bad += nv[i] != ref;
    }
    CHECK(bad == 0, "L%d attn_norm: %d differ", l, bad);
    free(nv);
}

/* The compiler's KV split choice: one split per 64 positions, capped by
 * the SMs per KV head and 16, and none (1) below 2. */
static void test_attn_split_choice(void)
{
    struct { int32_t sms, ctx, forced, want; } c[] = {
        {132, 320, 0, 5},   {132, 700, 0, 11},   {132, 1024, 0, 16}, {132, 64, 0, 1},
        {132, 65, 0, 2},    {132, 4096, 0, 16},  {132, 40960, 0, 16}, {16, 4096, 0, 2},
        {8, 4096, 0, 1},    {64, 4096, 0, 8},    {132, 320, 3, 3},    {132, 2, 5, 2},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        loom_graph_params p = params(c[i].sms);
        p.max_context = c[i].ctx;
        p.attn_split = c[i].forced;
        int32_t s = loom_attn_split_choice(&p, 8);
        CHECK(s == c[i].want, "split for %d SMs, context %d, asked %d: %d, want %d", c[i].sms,
              c[i].ctx, c[i].forced, s, c[i].want);
    }
}

/* The merge mode: 0 with no split; else as the params ask, or when they
 * ask nothing (0) as LOOM_ATTN_MERGE does (1, 2), else the attention (2). */
static void test_attn_merge_choice(void)
{
    struct { int32_t split, asked; const char *env; int32_t want; } k[] = {
        {1, 0, NULL, 0}, {1, 2, NULL, 0}, {1, 0, "1", 0}, {4, 0, NULL, 2}, {16, 0, NULL, 2},
        {4, 1, NULL, 1}, {4, 2, NULL, 2}, {4, 0, "1", 1}, {4, 2, "1", 2}, {4, 0, "2", 2},
        {4, 0, "3", 2},  {4, 0, "x", 2},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        loom_graph_params p = params(132);
        p.attn_merge = k[i].asked;
        if (k[i].env)
            setenv("LOOM_ATTN_MERGE", k[i].env, 1);
        else
            unsetenv("LOOM_ATTN_MERGE");
        int32_t f = loom_attn_merge_mode(&p, k[i].split);
        CHECK(f == k[i].want, "split %d, asked %d, env %s: mode %d, want %d", k[i].split,
              k[i].asked, k[i].env ? k[i].env : "-", f, k[i].want);
    }
    unsetenv("LOOM_ATTN_MERGE");
}

static void test_fill_weight_packing(void)
{
    for (int n = 0; n < 3; n++) {
        loom_model *m = load(tiny[n]);
        loom_graph *g = NULL;
        if (!m)
            continue;
        CHECK_OK(loom_graph_build(m, params(3), &g));
        if (g) {
            for (int32_t l = 0; l < g->cfg.n_layers; l++)
                check_packing(g, l);
            /* errors: not a weight, rows out of range */
            float tmp[4096];
            CHECK(loom_graph_fill_weight(g, g->t_logits, 0, 1, tmp) ==
                      LOOM_ERR_INVALID_ARGUMENT, "fill of an activation");
            CHECK(loom_graph_fill_weight(g, g->ops[0].w, g->cfg.vocab_size - 1, 2, tmp) ==
                      LOOM_ERR_INVALID_ARGUMENT, "rows past the end");
            /* lm_head (untied: the model's lm_head) */
            int32_t t = g->ops[g->op_lm_head].w;
            uint16_t *row = malloc((size_t)g->cfg.hidden_size * 2);
            CHECK_OK(loom_graph_fill_weight(g, t, 7, 1, row));
            CHECK(compare_rows(row, &m->w.lm_head, 7, g->cfg.hidden_size) == 0, "lm_head row");
            free(row);
        }
        loom_graph_free(g);
        loom_model_free(m);
    }
}

/* The fused MLP (mlp_fuse 2): o_proj writes the first term of x_{l+1}
 * (I64), down sums into it by the intermediate dimension from the
 * transposed weight, whose rows are the model's w_down columns; every reader
 * of x_{l+1} reads the I64 tensor. Too many gate_up tiles for the fixed
 * point's bound: refused. */
static void test_fused_mlp(void)
{
    for (int n = 0; n < 3; n++) {
        loom_model *m = load(tiny[n]);
        loom_graph *g = NULL;
        loom_graph_params gp = params(8);
        if (!m)
            continue;
        gp.mlp_fuse = 2;
        CHECK_OK(loom_graph_build(m, gp, &g));
        if (!g) {
            loom_model_free(m);
            continue;
        }
        const loom_config *c = &g->cfg;
        int64_t H = c->hidden_size, I = c->intermediate_size;
        int32_t x = g->ops[0].y;
        for (int32_t i = 0; i < g->n_ops; i++) {
            const loom_op *o = &g->ops[i];
            if (o->kind == LOOM_OP_LINEAR && (!strcmp(o->name, "qkv") || o->epi == LOOM_EPI_ARGMAX))
                CHECK(o->x == x, "%s op %d '%s' reads the residual stream", tiny[n], i, o->name);
            if (strcmp(o->name, "down"))
                continue;
            const loom_op *op = &g->ops[i - 2], *gu = &g->ops[i - 1];
            CHECK(o->epi == LOOM_EPI_ACCUM && o->x == gu->y && o->resid < 0 &&
                  o->rows == I && o->cols == H, "%s L%d down: ACCUM over gate_up's act",
                  tiny[n], o->layer);
            CHECK(!strcmp(op->name, "o_proj") && op->aux == o->y && op->resid == x &&
                  op->epi == LOOM_EPI_RESIDUAL, "%s L%d o_proj: the first term", tiny[n],
                  o->layer);
            check_shape(g, o->w, I, H, LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, "w_down_t");
            check_shape(g, o->y, 1, H, LOOM_ROLE_ACT, LOOM_DTYPE_I64, "x_next (fixed point)");
            CHECK(loom_op_feeds_accum(g, i - 1) && !loom_op_feeds_accum(g, i - 2),
                  "%s L%d: gate_up feeds the sum", tiny[n], o->layer);
            /* rows 3 .. 5 of w_down_t: columns 3 .. 5 of w_down */
            uint16_t *t = malloc((size_t)(3 * H) * 2), *src = malloc((size_t)I * 2);
            if (t && src) {
                CHECK_OK(loom_graph_fill_weight(g, o->w, 3, 3, t));
                int bad = 0;
                for (int64_t j = 0; j < H; j++) {
                    loom_tensor_read_bf16(&m->w.layers[o->layer].w_down, j * I, I, src);
                    for (int64_t r = 0; r < 3; r++)
                        bad += t[r * H + j] != src[3 + r];
                }
                CHECK(bad == 0, "%s L%d: w_down_t rows 3..5: %d elements not w_down's columns",
                      tiny[n], o->layer, bad);
            }
            free(t);
            free(src);
            x = o->y;
        }
        loom_graph_free(g);
        loom_model_free(m);
    }
    loom_model *m = load("qwen3-0.6b");
    loom_graph *g = NULL;
    loom_graph_params gp = params(300);   /* 300 gate_up tiles > LOOM_FIX_MAX_TILES */
    if (m) {
        gp.mlp_fuse = 2;
        CHECK(loom_graph_build(m, gp, &g) == LOOM_ERR_LIMIT && strstr(loom_last_error(), "300"),
              "mlp_fuse 2 at 300 SMs: %s", loom_last_error());
        gp.mlp_fuse = 3;
        CHECK(loom_graph_build(m, gp, &g) == LOOM_ERR_INVALID_ARGUMENT, "mlp_fuse 3");
        gp.mlp_fuse = 0;   /* chosen: not fused where it cannot be */
        CHECK_OK(loom_graph_build(m, gp, &g));
        loom_graph_free(g);
    }
    loom_model_free(m);
}

/* HF's _compute_default_rope_parameters and _compute_llama3_parameters. */
static double hf_inv_freq(const loom_config *c, int i)
{
    double inv = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim);
    if (!c->rope_llama3)
        return inv;
    double low_wl = c->rope_original_max_position / c->rope_low_freq_factor;
    double high_wl = c->rope_original_max_position / c->rope_high_freq_factor;
    double wl = 2 * M_PI / inv;
    double scaled = wl > low_wl ? inv / c->rope_factor : inv;
    double smooth = (c->rope_original_max_position / wl - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
    double smoothed = (1 - smooth) * scaled / c->rope_factor + smooth * scaled;
    bool medium = !(wl < high_wl) && !(wl > low_wl);
    return medium ? smoothed : scaled;
}

static void test_rope_inv_freq(void)
{
    for (int n = 0; n < 3; n++) {
        loom_model *m = load(tiny[n]);
        loom_graph *g = NULL;
        if (!m)
            continue;
        CHECK_OK(loom_graph_build(m, params(1), &g));
        if (g) {
            int half = g->cfg.head_dim / 2, scaled = 0, smoothed = 0;
            float *f = malloc((size_t)half * 4);
            CHECK_OK(loom_graph_fill_weight(g, g->t_rope_inv_freq, 0, 1, f));
            for (int i = 0; i < half; i++) {
                double want = hf_inv_freq(&g->cfg, i);
                double plain = 1.0 / pow(g->cfg.rope_theta, 2.0 * i / g->cfg.head_dim);
                CHECK(fabs(f[i] - want) <= 1e-6 * want && !isnan(f[i]),
                      "%s inv_freq[%d] = %g, expected %g", tiny[n], i, f[i], want);
                scaled += fabs(want - plain / g->cfg.rope_factor) < 1e-9 * plain;
                smoothed += want != plain && fabs(want - plain / g->cfg.rope_factor) > 1e-9 * plain;
            }
            /* the llama preset exercises all three bands of the scaling */
            if (g->cfg.rope_llama3)
                CHECK(scaled > 0 && smoothed > 0 && scaled + smoothed < half,
                      "%s: %d scaled, %d smoothed of %d", tiny[n], scaled, smoothed, half);
            free(f);
        }
        loom_graph_free(g);
        loom_model_free(m);
    }
}

TEST_MAIN(TEST(test_ops_and_tensors), TEST(test_bad_params), TEST(test_attn_split_choice),
          TEST(test_attn_merge_choice),
          TEST(test_fill_weight_packing), TEST(test_fused_mlp),
          TEST(test_rope_inv_freq))
