/* info.c - model parameters, freeing, and the numbers a user asks about a
 * model: its shape, unique parameter count, and weight bytes per step. */
#include "model/model.h"

#include <stdlib.h>

#include "core/error.h"

loom_model_params loom_model_default_params(void)
{
    loom_model_params p;

    memset(&p, 0, sizeof p);
    p.seed = 1234;
    p.max_context = 0;
    p.progress = true;
    return p;
}

void loom_model_free(loom_model *model)
{
    if (!model)
        return;
    loom_weights_free(&model->w);
    for (int32_t i = 0; i < model->n_files; i++)
        loom_st_close(&model->files[i]);
    free(model->files);
    free(model->dir);
    free(model);
}

static uint64_t embed_params(const loom_config *c)
{
    return (uint64_t)c->vocab_size * (uint64_t)c->hidden_size;
}

/* Unique parameters: tied embeddings count once. */
uint64_t loom_model_param_count(const loom_config *c)
{
    uint64_t h = (uint64_t)c->hidden_size, inter = (uint64_t)c->intermediate_size;
    uint64_t q = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    uint64_t kv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    uint64_t layer, n;

    layer = 2 * h                     /* input / post-attention norms */
          + q * h + 2 * kv * h        /* q, k, v projections          */
          + h * q                     /* o projection                 */
          + 3 * inter * h;            /* gate, up, down               */
    if (c->attention_bias)
        layer += q + 2 * kv;
    if (c->qk_norm)
        layer += 2 * (uint64_t)c->head_dim;
    n = embed_params(c) + (uint64_t)c->n_layers * layer + h;
    if (!c->tie_word_embeddings)
        n += embed_params(c);
    return n;
}

/* Every weight is read once per step in BF16, the lm_head included; an
 * untied embedding table is only gathered one row per token (negligible). */
uint64_t loom_model_bytes_per_step(const loom_config *c)
{
    uint64_t n = loom_model_param_count(c);

    if (!c->tie_word_embeddings)
        n -= embed_params(c);
    return 2 * n;
}

static const char *dtype_lower(loom_dtype dt)
{
    switch (dt) {
    case LOOM_DTYPE_BF16: return "bf16";
    case LOOM_DTYPE_F16: return "f16";
    case LOOM_DTYPE_F32: return "f32";
    default: return "?";
    }
}

loom_status loom_model_get_info(const loom_model *m, loom_model_info *out)
{
    loom_model_info in;

    if (!m || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_model_get_info: NULL argument");
    memset(&in, 0, sizeof in);
    in.architecture = loom_arch_name(m->cfg.arch);
    in.dtype = dtype_lower(m->w.embed.dtype);
    in.n_layers = m->cfg.n_layers;
    in.hidden_size = m->cfg.hidden_size;
    in.intermediate_size = m->cfg.intermediate_size;
    in.n_heads = m->cfg.n_heads;
    in.n_kv_heads = m->cfg.n_kv_heads;
    in.head_dim = m->cfg.head_dim;
    in.vocab_size = m->cfg.vocab_size;
    in.max_context = m->max_context;
    in.tied_embeddings = m->cfg.tie_word_embeddings;
    in.n_params = loom_model_param_count(&m->cfg);
    in.bytes_per_step = loom_model_bytes_per_step(&m->cfg);
    *out = in;
    return LOOM_OK;
}
