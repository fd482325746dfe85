/* weights.c - the mapping of HF tensor names onto loom_weights fields, with
 * the shape each must have, and generated (preset) weights. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"

typedef struct visit_ctx {
    const loom_config *cfg;
    loom_weights *w;
    loom_weight_visit_fn fn;
    void *user;
} visit_ctx;

static loom_status visit1(visit_ctx *c, loom_tensor *slot, const char *name,
                          int32_t ndim, int64_t rows, int64_t cols)
{
    return c->fn(c->user, slot, name, ndim, rows, cols);
}

static loom_status visit_layer(visit_ctx *c, int32_t i)
{
    const loom_config *cfg = c->cfg;
    loom_layer_weights *l = &c->w->layers[i];
    int64_t h = cfg->hidden_size, inter = cfg->intermediate_size;
    int64_t q = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t kv = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    char p[LOOM_MAX_NAME], name[LOOM_MAX_NAME];
    loom_status st;

    snprintf(p, sizeof p, "model.layers.%d.", i);
#define V(slot, suffix, nd, r, cl)                                            \
    do {                                                                      \
        snprintf(name, sizeof name, "%s%s", p, suffix);                       \
        st = visit1(c, slot, name, nd, r, cl);                                \
        if (st != LOOM_OK)                                                    \
            return st;                                                        \
    } while (0)
    V(&l->attn_norm, "input_layernorm.weight", 1, h, 1);
    V(&l->wq, "self_attn.q_proj.weight", 2, q, h);
    V(&l->wk, "self_attn.k_proj.weight", 2, kv, h);
    V(&l->wv, "self_attn.v_proj.weight", 2, kv, h);
    if (cfg->attention_bias) {
        V(&l->bq, "self_attn.q_proj.bias", 1, q, 1);
        V(&l->bk, "self_attn.k_proj.bias", 1, kv, 1);
        V(&l->bv, "self_attn.v_proj.bias", 1, kv, 1);
    }
    if (cfg->qk_norm) {
        V(&l->q_norm, "self_attn.q_norm.weight", 1, cfg->head_dim, 1);
        V(&l->k_norm, "self_attn.k_norm.weight", 1, cfg->head_dim, 1);
    }
    V(&l->wo, "self_attn.o_proj.weight", 2, h, q);
    V(&l->ffn_norm, "post_attention_layernorm.weight", 1, h, 1);
    V(&l->w_gate, "mlp.gate_proj.weight", 2, inter, h);
    V(&l->w_up, "mlp.up_proj.weight", 2, inter, h);
    V(&l->w_down, "mlp.down_proj.weight", 2, h, inter);
#undef V
    return LOOM_OK;
}

/* Order: embeddings, layers 0..n-1, final norm, lm_head (skipped when tied:
 * then w->lm_head is a copy of w->embed, made by whoever fills the slots).
 * 1-D tensors are reported as ndim 1, rows = length, cols = 1.
 * w->layers must hold cfg->n_layers entries. */
loom_status loom_weights_visit(const loom_config *cfg, loom_weights *w,
                               loom_weight_visit_fn fn, void *user)
{
    visit_ctx c = {cfg, w, fn, user};
    int64_t v = cfg->vocab_size, h = cfg->hidden_size;
    loom_status st;

    st = visit1(&c, &w->embed, "model.embed_tokens.weight", 2, v, h);
    for (int32_t i = 0; st == LOOM_OK && i < cfg->n_layers; i++)
        st = visit_layer(&c, i);
    if (st == LOOM_OK)
        st = visit1(&c, &w->final_norm, "model.norm.weight", 1, h, 1);
    if (st == LOOM_OK && !cfg->tie_word_embeddings)
        st = visit1(&c, &w->lm_head, "lm_head.weight", 2, v, h);
    return st;
}

static bool is_norm_name(const char *name)
{
    return strstr(name, "norm.weight") != NULL;   /* *_layernorm, *_norm, norm */
}

typedef struct gen_ctx {
    uint64_t seed;
} gen_ctx;

static loom_status gen_slot(void *user, loom_tensor *slot, const char *hf_name,
                            int32_t ndim, int64_t rows, int64_t cols)
{
    const gen_ctx *g = user;

    memset(slot, 0, sizeof *slot);
    snprintf(slot->name, sizeof slot->name, "%s", hf_name);
    slot->dtype = LOOM_DTYPE_BF16;
    slot->ndim = ndim;
    slot->shape[0] = rows;
    slot->shape[1] = cols;
    slot->nbytes = (uint64_t)rows * (uint64_t)cols * 2;
    slot->gen_kind = is_norm_name(hf_name) ? LOOM_GEN_NEAR_ONE : LOOM_GEN_NORMAL;
    slot->gen_seed = g->seed;
    slot->gen_uid = loom_fnv1a(hf_name);
    return LOOM_OK;
}

/* Every required tensor generated from (seed, fnv1a(name)): norms near one,
 * everything else (embeddings, projections, biases) ~ N(0, 0.02). The
 * loader starts from this too and replaces each slot with mapped data. */
loom_status loom_weights_init_generated(const loom_config *cfg, uint64_t seed,
                                        loom_weights *w)
{
    loom_weights nw;
    gen_ctx g = {seed};
    loom_status st;

    memset(&nw, 0, sizeof nw);
    if (cfg->n_layers <= 0)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "weights: n_layers %d <= 0",
                         cfg->n_layers);
    nw.layers = calloc((size_t)cfg->n_layers, sizeof *nw.layers);
    if (!nw.layers)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "weights: %d layers", cfg->n_layers);
    st = loom_weights_visit(cfg, &nw, gen_slot, &g);
    if (st != LOOM_OK) {
        free(nw.layers);
        return st;
    }
    if (cfg->tie_word_embeddings)
        nw.lm_head = nw.embed;
    *w = nw;
    return LOOM_OK;
}

void loom_weights_free(loom_weights *w)
{
    if (!w)
        return;
    free(w->layers);
    memset(w, 0, sizeof *w);
}
