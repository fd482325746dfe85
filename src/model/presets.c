/* presets.c - built-in model shapes (exactly as their HF config.json files
 * say) and models with deterministic random weights built from them. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "model/model_priv.h"

static const char *const preset_names[] = {
    "qwen3-0.6b", "qwen3-1.7b", "qwen3-8b", "llama-3.2-1b",
    "qwen3-tiny", "qwen2-tiny", "llama-tiny", NULL,
};

const char *const *loom_preset_names(void)
{
    return preset_names;
}

static void qwen3_base(loom_config *c)
{
    c->arch = LOOM_ARCH_QWEN3;
    c->vocab_size = 151936;
    c->n_kv_heads = 8;
    c->head_dim = 128;
    c->max_position_embeddings = 40960;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 1000000.0;
    c->qk_norm = true;
    c->bos_token_id = 151643;
    c->eos_token_ids[0] = 151645;
    c->n_eos = 1;
}

/* Common shape of the tiny presets: small enough for the oracle and tests. */
static void tiny_base(loom_config *c, loom_arch arch)
{
    c->arch = arch;
    c->vocab_size = 512;
    c->hidden_size = 64;
    c->intermediate_size = 128;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 16;
    c->max_position_embeddings = 512;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 1000000.0;
    c->bos_token_id = 1;
    c->eos_token_ids[0] = 2;
    c->n_eos = 1;
}

static bool fill_preset(const char *name, loom_config *c)
{
    if (strcmp(name, "qwen3-0.6b") == 0) {
        qwen3_base(c);
        c->hidden_size = 1024;
        c->intermediate_size = 3072;
        c->n_layers = 28;
        c->n_heads = 16;
        c->tie_word_embeddings = true;
    } else if (strcmp(name, "qwen3-1.7b") == 0) {
        qwen3_base(c);
        c->hidden_size = 2048;
        c->intermediate_size = 6144;
        c->n_layers = 28;
        c->n_heads = 16;
        c->tie_word_embeddings = true;
    } else if (strcmp(name, "qwen3-8b") == 0) {
        qwen3_base(c);
        c->hidden_size = 4096;
        c->intermediate_size = 12288;
        c->n_layers = 36;
        c->n_heads = 32;
        c->tie_word_embeddings = false;
    } else if (strcmp(name, "llama-3.2-1b") == 0) {
        c->arch = LOOM_ARCH_LLAMA;
        c->vocab_size = 128256;
        c->hidden_size = 2048;
        c->intermediate_size = 8192;
        c->n_layers = 16;
        c->n_heads = 32;
        c->n_kv_heads = 8;
        c->head_dim = 64;
        c->max_position_embeddings = 131072;
        c->rms_norm_eps = 1e-5f;
        c->rope_theta = 500000.0;
        c->rope_llama3 = true;
        c->rope_factor = 32.0f;
        c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f;
        c->rope_original_max_position = 8192;
        c->tie_word_embeddings = true;
        c->bos_token_id = 128000;
        c->eos_token_ids[0] = 128001;
        c->eos_token_ids[1] = 128008;
        c->eos_token_ids[2] = 128009;
        c->n_eos = 3;
    } else if (strcmp(name, "qwen3-tiny") == 0) {
        tiny_base(c, LOOM_ARCH_QWEN3);
        c->qk_norm = true;
        c->tie_word_embeddings = true;
    } else if (strcmp(name, "qwen2-tiny") == 0) {
        tiny_base(c, LOOM_ARCH_QWEN2);
        c->attention_bias = true;
        c->tie_word_embeddings = false;
    } else if (strcmp(name, "llama-tiny") == 0) {
        /* original_max_position 64 < 512 so that llama3 scaling matters */
        tiny_base(c, LOOM_ARCH_LLAMA);
        c->rms_norm_eps = 1e-5f;
        c->rope_theta = 500000.0;
        c->rope_llama3 = true;
        c->rope_factor = 8.0f;
        c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f;
        c->rope_original_max_position = 64;
        c->tie_word_embeddings = false;
    } else {
        return false;
    }
    return true;
}

bool loom_preset_config(const char *name, loom_config *out)
{
    loom_config c;

    if (!name)
        return false;
    memset(&c, 0, sizeof c);
    c.bos_token_id = -1;
    c.torch_dtype = LOOM_DTYPE_BF16;
    if (!fill_preset(name, &c))
        return false;
    *out = c;
    return true;
}

loom_status loom_model_resolve_context(const char *what, const loom_config *cfg,
                                       int32_t want, int32_t *out)
{
    if (want < 0 || want > cfg->max_position_embeddings)
        return loom_fail(LOOM_ERR_LIMIT,
                         "%s: max_context %d outside 1..%d (max_position_embeddings)",
                         what, want, cfg->max_position_embeddings);
    *out = want ? want : cfg->max_position_embeddings;
    return LOOM_OK;
}

loom_status loom_model_from_preset(const char *name, loom_model_params params,
                                   loom_model **out)
{
    loom_model *m;
    loom_config cfg;
    loom_status st;
    int32_t ctx;

    if (!name || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_model_from_preset: NULL argument");
    if (!loom_preset_config(name, &cfg))
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "unknown preset '%s' (try qwen3-0.6b, qwen3-1.7b, qwen3-8b, "
                         "llama-3.2-1b, qwen3-tiny, qwen2-tiny, llama-tiny)", name);
    st = loom_config_validate(name, &cfg);
    if (st != LOOM_OK)
        return st;
    st = loom_model_resolve_context(name, &cfg, params.max_context, &ctx);
    if (st != LOOM_OK)
        return st;
    m = calloc(1, sizeof *m);
    if (!m)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "preset '%s': model", name);
    m->cfg = cfg;
    m->max_context = ctx;
    snprintf(m->preset, sizeof m->preset, "%s", name);
    st = loom_weights_init_generated(&cfg, params.seed, &m->w);
    if (st != LOOM_OK) {
        free(m);
        return st;
    }
    *out = m;
    return LOOM_OK;
}
