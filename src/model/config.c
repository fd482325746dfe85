/* config.c - Hugging Face config.json <-> loom_config.
 *
 * Reads the keys of Qwen3ForCausalLM, Qwen2ForCausalLM and LlamaForCausalLM
 * configs in both spellings transformers has used: 4.x writes top-level
 * "rope_theta" / "rope_scaling" / "torch_dtype", 5.x writes
 * "rope_parameters" {rope_theta, rope_type, ...} and "dtype". Anything that
 * would change the model's math and that loom does not implement (another
 * activation, biases where the arch has none, sliding windows, other rope
 * types) is refused as LOOM_ERR_UNSUPPORTED rather than ignored. */
#include "model/model.h"
#include "core/error.h"

#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

struct cfg_parse {
    const char *path;
    json_t *root;
    const char *prefix;    /* "rope_scaling." inside a rope block, for messages */
};

/* A short rendering of v for messages: its JSON text, cut to fit. */
static const char *describe(json_t *v, char *buf, size_t cap)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, cap, "%s", s ? s : "?");
    free(s);
    return buf;
}

static loom_status type_error(const struct cfg_parse *p, const char *key, json_t *v,
                              const char *want)
{
    char buf[96];
    return loom_fail(LOOM_ERR_FORMAT, "%s: '%s%s' must be %s, got %s", p->path, p->prefix,
                     key, want, describe(v, buf, sizeof buf));
}

/* v must be a JSON integer that fits int32 (a real such as 2.0 is refused:
 * sizes are written as integers). */
static loom_status int_value(const struct cfg_parse *p, const char *key, json_t *v,
                             int32_t *out)
{
    json_int_t x;

    if (!json_is_integer(v))
        return type_error(p, key, v, "an integer");
    x = json_integer_value(v);
    if (x < INT32_MIN || x > INT32_MAX)
        return loom_fail(LOOM_ERR_FORMAT, "%s: '%s%s' = %lld is out of the int32 range",
                         p->path, p->prefix, key, (long long)x);
    *out = (int32_t)x;
    return LOOM_OK;
}

/* obj[key] as int32; absent or null gives def, or an error if required. */
static loom_status get_int(const struct cfg_parse *p, json_t *obj, const char *key,
                           bool required, int32_t def, int32_t *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v)) {
        if (required)
            return loom_fail(LOOM_ERR_FORMAT, "%s: missing key '%s%s'", p->path, p->prefix,
                             key);
        *out = def;
        return LOOM_OK;
    }
    return int_value(p, key, v, out);
}

/* obj[key] as a number (integer or real, finite). */
static loom_status get_num(const struct cfg_parse *p, json_t *obj, const char *key,
                           bool required, double def, double *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v)) {
        if (required)
            return loom_fail(LOOM_ERR_FORMAT, "%s: missing key '%s%s'", p->path, p->prefix,
                             key);
        *out = def;
        return LOOM_OK;
    }
    if (!json_is_number(v))
        return type_error(p, key, v, "a number");
    *out = json_number_value(v);
    return LOOM_OK;
}

static loom_status get_bool(const struct cfg_parse *p, json_t *obj, const char *key,
                            bool def, bool *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v)) {
        *out = def;
        return LOOM_OK;
    }
    if (!json_is_boolean(v))
        return type_error(p, key, v, "true or false");
    *out = json_is_true(v);
    return LOOM_OK;
}

static loom_status get_str(const struct cfg_parse *p, json_t *obj, const char *key,
                           const char *def, const char **out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v)) {
        *out = def;
        return LOOM_OK;
    }
    if (!json_is_string(v))
        return type_error(p, key, v, "a string");
    *out = json_string_value(v);
    return LOOM_OK;
}

static loom_status parse_arch(const struct cfg_parse *p, loom_config *c)
{
    json_t *v = json_object_get(p->root, "architectures");
    const char *name;

    if (!v)
        return loom_fail(LOOM_ERR_FORMAT, "%s: missing key 'architectures'", p->path);
    if (!json_is_array(v) || json_array_size(v) != 1 ||
        !json_is_string(json_array_get(v, 0)))
        return type_error(p, "architectures", v, "a list of one string");
    name = json_string_value(json_array_get(v, 0));
    for (int a = 0; a < LOOM_ARCH_COUNT; a++) {
        if (strcmp(name, loom_arch_name((loom_arch)a)) == 0) {
            c->arch = (loom_arch)a;
            c->qk_norm = c->arch == LOOM_ARCH_QWEN3;
            c->attention_bias = c->arch == LOOM_ARCH_QWEN2;
            return LOOM_OK;
        }
    }
    return loom_fail(LOOM_ERR_UNSUPPORTED,
                     "%s: architecture '%s' is not supported (Qwen3ForCausalLM, "
                     "Qwen2ForCausalLM, LlamaForCausalLM are)",
                     p->path, name);
}

static loom_status parse_sizes(const struct cfg_parse *p, loom_config *c)
{
    json_t *r = p->root;
    loom_status st;

    if ((st = get_int(p, r, "vocab_size", true, 0, &c->vocab_size)) ||
        (st = get_int(p, r, "hidden_size", true, 0, &c->hidden_size)) ||
        (st = get_int(p, r, "intermediate_size", true, 0, &c->intermediate_size)) ||
        (st = get_int(p, r, "num_hidden_layers", true, 0, &c->n_layers)) ||
        (st = get_int(p, r, "num_attention_heads", true, 0, &c->n_heads)) ||
        (st = get_int(p, r, "num_key_value_heads", false, c->n_heads, &c->n_kv_heads)) ||
        (st = get_int(p, r, "max_position_embeddings", true, 0,
                      &c->max_position_embeddings)))
        return st;
    if (json_object_get(r, "head_dim") && !json_is_null(json_object_get(r, "head_dim")))
        return get_int(p, r, "head_dim", true, 0, &c->head_dim);

    /* no head_dim: it is hidden / heads, which must divide exactly */
    if (c->n_heads <= 0)
        return loom_fail(LOOM_ERR_FORMAT, "%s: 'num_attention_heads' = %d must be positive",
                         p->path, c->n_heads);
    if (c->hidden_size % c->n_heads)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: 'hidden_size' = %d is not divisible by "
                         "'num_attention_heads' = %d (and no 'head_dim')",
                         p->path, c->hidden_size, c->n_heads);
    c->head_dim = c->hidden_size / c->n_heads;
    return LOOM_OK;
}

/* double -> float; beyond float's range gives inf (which validate refuses)
 * instead of the undefined conversion. */
static float to_float(double d)
{
    if (fabs(d) > FLT_MAX)
        return d < 0 ? -INFINITY : INFINITY;
    return (float)d;
}

/* A rope block: 4.x "rope_scaling" (type key "rope_type" or "type") or 5.x
 * "rope_parameters" (which also carries rope_theta). */
static loom_status parse_rope_block(const struct cfg_parse *outer, const char *key,
                                    json_t *obj, loom_config *c)
{
    char prefix[32];
    struct cfg_parse in = *outer, *p = &in;
    const char *type = NULL;
    double f = 0, lo = 0, hi = 0;
    int32_t orig = 0;
    loom_status st;

    if (!json_is_object(obj))
        return type_error(outer, key, obj, "an object");
    snprintf(prefix, sizeof prefix, "%s.", key);
    in.prefix = prefix;
    if ((st = get_str(p, obj, "rope_type", NULL, &type)))
        return st;
    if (!type && (st = get_str(p, obj, "type", NULL, &type)))
        return st;
    if (json_object_get(obj, "rope_theta") &&
        (st = get_num(p, obj, "rope_theta", true, 0, &c->rope_theta)))
        return st;
    if (!type || strcmp(type, "default") == 0)
        return LOOM_OK;
    if (strcmp(type, "llama3") != 0)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: '%s' rope_type '%s' is not supported (default, llama3 are)",
                         p->path, key, type);
    if ((st = get_num(p, obj, "factor", true, 0, &f)) ||
        (st = get_num(p, obj, "low_freq_factor", true, 0, &lo)) ||
        (st = get_num(p, obj, "high_freq_factor", true, 0, &hi)) ||
        (st = get_int(p, obj, "original_max_position_embeddings", true, 0, &orig)))
        return st;
    c->rope_llama3 = true;
    c->rope_factor = to_float(f);
    c->rope_low_freq_factor = to_float(lo);
    c->rope_high_freq_factor = to_float(hi);
    c->rope_original_max_position = orig;
    return LOOM_OK;
}

static loom_status parse_rope(const struct cfg_parse *p, loom_config *c)
{
    json_t *params = json_object_get(p->root, "rope_parameters");
    json_t *scaling = json_object_get(p->root, "rope_scaling");
    loom_status st;

    if ((st = get_num(p, p->root, "rope_theta", false, 10000.0, &c->rope_theta)))
        return st;
    if (params && !json_is_null(params))
        return parse_rope_block(p, "rope_parameters", params, c);
    if (scaling && !json_is_null(scaling))
        return parse_rope_block(p, "rope_scaling", scaling, c);
    return LOOM_OK;
}

static loom_status parse_tokens(const struct cfg_parse *p, loom_config *c)
{
    json_t *eos = json_object_get(p->root, "eos_token_id");
    loom_status st;

    if ((st = get_int(p, p->root, "bos_token_id", false, -1, &c->bos_token_id)))
        return st;
    c->n_eos = 0;
    if (!eos || json_is_null(eos))
        return LOOM_OK;
    if (json_is_integer(eos)) {
        c->n_eos = 1;
        return int_value(p, "eos_token_id", eos, &c->eos_token_ids[0]);
    }
    if (!json_is_array(eos))
        return type_error(p, "eos_token_id", eos, "an integer or a list of integers");
    if (json_array_size(eos) > LOOM_MAX_EOS)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: 'eos_token_id' has %zu ids, more than %d",
                         p->path, json_array_size(eos), LOOM_MAX_EOS);
    for (size_t i = 0; i < json_array_size(eos); i++) {
        if ((st = int_value(p, "eos_token_id", json_array_get(eos, i),
                            &c->eos_token_ids[i])))
            return st;
    }
    c->n_eos = (int32_t)json_array_size(eos);
    return LOOM_OK;
}

/* Keys that would change the math in ways loom does not implement. */
static loom_status parse_features(const struct cfg_parse *p, loom_config *c)
{
    const char *act = "silu", *dt = "bfloat16", *dt_key;
    bool attn_bias = false, mlp_bias = false, sliding = false;
    loom_status st;

    if ((st = get_str(p, p->root, "hidden_act", "silu", &act)) ||
        (st = get_bool(p, p->root, "attention_bias", false, &attn_bias)) ||
        (st = get_bool(p, p->root, "mlp_bias", false, &mlp_bias)) ||
        (st = get_bool(p, p->root, "use_sliding_window", false, &sliding)) ||
        (st = get_bool(p, p->root, "tie_word_embeddings", false, &c->tie_word_embeddings)))
        return st;
    if (strcmp(act, "silu") != 0)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: 'hidden_act' = '%s' is not supported (silu is)", p->path, act);
    if (attn_bias && c->arch != LOOM_ARCH_QWEN2)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: 'attention_bias' = true is not supported for %s", p->path,
                         loom_arch_name(c->arch));
    if (mlp_bias)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: 'mlp_bias' = true is not supported",
                         p->path);
    if (sliding)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: 'use_sliding_window' = true is not supported", p->path);

    /* transformers 5 writes "dtype", 4.x "torch_dtype" */
    dt_key = json_object_get(p->root, "dtype") ? "dtype" : "torch_dtype";
    if ((st = get_str(p, p->root, dt_key, "bfloat16", &dt)))
        return st;
    if (strcmp(dt, "bfloat16") == 0)
        c->torch_dtype = LOOM_DTYPE_BF16;
    else if (strcmp(dt, "float16") == 0)
        c->torch_dtype = LOOM_DTYPE_F16;
    else if (strcmp(dt, "float32") == 0)
        c->torch_dtype = LOOM_DTYPE_F32;
    else
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: '%s' = '%s' is not supported (bfloat16, float16, float32 are)",
                         p->path, dt_key, dt);
    return LOOM_OK;
}

loom_status loom_config_parse(const char *path, const char *json, size_t len,
                              loom_config *out)
{
    struct cfg_parse p = {.path = path ? path : "<config>", .prefix = ""};
    json_error_t err;
    loom_config c;
    double eps = 0;
    loom_status st;

    if (!out || (!json && len))
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_config_parse: NULL argument");
    memset(&c, 0, sizeof c);
    p.root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!p.root)
        return loom_fail(LOOM_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)",
                         p.path, err.text, err.line, err.column);
    if (!json_is_object(p.root)) {
        st = loom_fail(LOOM_ERR_FORMAT, "%s: not a JSON object", p.path);
        goto out;
    }
    if ((st = parse_arch(&p, &c)) || (st = parse_sizes(&p, &c)) ||
        (st = get_num(&p, p.root, "rms_norm_eps", false, 1e-6, &eps)) ||
        (st = parse_rope(&p, &c)) || (st = parse_tokens(&p, &c)) ||
        (st = parse_features(&p, &c)))
        goto out;
    c.rms_norm_eps = to_float(eps);
    if ((st = loom_config_validate(p.path, &c)))
        goto out;
    *out = c;
out:
    json_decref(p.root);
    return st;
}

/* ------------------------------------------------------------ validate */

static loom_status check_positive(const char *path, const char *key, int64_t v)
{
    if (v <= 0)
        return loom_fail(LOOM_ERR_FORMAT, "%s: '%s' = %lld must be positive", path, key,
                         (long long)v);
    return LOOM_OK;
}

static loom_status check_token(const char *path, const char *key, int32_t id, int32_t vocab)
{
    if (id < 0 || id >= vocab)
        return loom_fail(LOOM_ERR_FORMAT, "%s: '%s' = %d is outside the vocabulary [0, %d)",
                         path, key, id, vocab);
    return LOOM_OK;
}

static loom_status validate_sizes(const char *path, const loom_config *c)
{
    loom_status st;

    if ((st = check_positive(path, "vocab_size", c->vocab_size)) ||
        (st = check_positive(path, "hidden_size", c->hidden_size)) ||
        (st = check_positive(path, "intermediate_size", c->intermediate_size)) ||
        (st = check_positive(path, "num_hidden_layers", c->n_layers)) ||
        (st = check_positive(path, "num_attention_heads", c->n_heads)) ||
        (st = check_positive(path, "num_key_value_heads", c->n_kv_heads)) ||
        (st = check_positive(path, "head_dim", c->head_dim)) ||
        (st = check_positive(path, "max_position_embeddings", c->max_position_embeddings)))
        return st;
    if (c->n_heads % c->n_kv_heads)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: 'num_attention_heads' = %d is not divisible by "
                         "'num_key_value_heads' = %d",
                         path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return loom_fail(LOOM_ERR_FORMAT, "%s: 'head_dim' = %d is odd (rope rotates pairs)",
                         path, c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim > INT32_MAX)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: 'num_attention_heads' x 'head_dim' = %d x %d overflows int32",
                         path, c->n_heads, c->head_dim);
    return LOOM_OK;
}

static loom_status validate_rope(const char *path, const loom_config *c)
{
    if (!(c->rms_norm_eps > 0.0f) || !isfinite(c->rms_norm_eps))
        return loom_fail(LOOM_ERR_FORMAT, "%s: 'rms_norm_eps' = %g must be positive", path,
                         (double)c->rms_norm_eps);
    if (!(c->rope_theta > 0.0) || !isfinite(c->rope_theta))
        return loom_fail(LOOM_ERR_FORMAT, "%s: 'rope_theta' = %g must be positive", path,
                         c->rope_theta);
    if (!c->rope_llama3)
        return LOOM_OK;
    if (!(c->rope_factor > 0.0f) || !isfinite(c->rope_factor))
        return loom_fail(LOOM_ERR_FORMAT, "%s: rope 'factor' = %g must be positive", path,
                         (double)c->rope_factor);
    if (!(c->rope_low_freq_factor > 0.0f) ||
        !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
        !isfinite(c->rope_high_freq_factor))
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: rope 'low_freq_factor' = %g, 'high_freq_factor' = %g: need "
                         "0 < low < high",
                         path, (double)c->rope_low_freq_factor,
                         (double)c->rope_high_freq_factor);
    return check_positive(path, "original_max_position_embeddings",
                          c->rope_original_max_position);
}

static loom_status validate_tokens(const char *path, const loom_config *c)
{
    loom_status st;

    if (c->bos_token_id != -1 &&
        (st = check_token(path, "bos_token_id", c->bos_token_id, c->vocab_size)))
        return st;
    if (c->n_eos < 0 || c->n_eos > LOOM_MAX_EOS)
        return loom_fail(LOOM_ERR_FORMAT, "%s: %d eos ids, limit %d", path, c->n_eos,
                         LOOM_MAX_EOS);
    for (int32_t i = 0; i < c->n_eos; i++)
        if ((st = check_token(path, "eos_token_id", c->eos_token_ids[i], c->vocab_size)))
            return st;
    return LOOM_OK;
}

loom_status loom_config_validate(const char *path, const loom_config *c)
{
    loom_status st;

    if (!path)
        path = "<config>";
    if (!c)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_config_validate: NULL config");
    if ((unsigned)c->arch >= LOOM_ARCH_COUNT)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: architecture %d is unknown", path,
                         (int)c->arch);
    if (c->qk_norm != (c->arch == LOOM_ARCH_QWEN3) ||
        c->attention_bias != (c->arch == LOOM_ARCH_QWEN2))
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: %s with qk_norm = %d, attention_bias = %d is not supported",
                         path, loom_arch_name(c->arch), c->qk_norm, c->attention_bias);
    if (c->torch_dtype != LOOM_DTYPE_BF16 && c->torch_dtype != LOOM_DTYPE_F16 &&
        c->torch_dtype != LOOM_DTYPE_F32)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: torch_dtype %s is not supported", path,
                         loom_dtype_name(c->torch_dtype));
    if ((st = validate_sizes(path, c)) || (st = validate_rope(path, c)) ||
        (st = validate_tokens(path, c)))
        return st;
    return LOOM_OK;
}

/* ------------------------------------------------------------- to_json */

/* f as the double of its shortest decimal that reads back as f, so that
 * 1e-6f is written "1e-06", not "9.9999999747524271e-07". */
static json_t *json_float(float f)
{
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f)
            break;
    }
    return json_real(strtod(buf, NULL));
}

/* rope_theta is a double; integral values are written as integers. */
static json_t *json_double(double d)
{
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        return json_integer((json_int_t)d);
    return json_real(d);
}

static const char *model_type(loom_arch a)
{
    switch (a) {
    case LOOM_ARCH_QWEN3: return "qwen3";
    case LOOM_ARCH_QWEN2: return "qwen2";
    default: return "llama";
    }
}

static const char *torch_dtype_name(loom_dtype dt)
{
    switch (dt) {
    case LOOM_DTYPE_F16: return "float16";
    case LOOM_DTYPE_F32: return "float32";
    default: return "bfloat16";
    }
}

static json_t *eos_json(const loom_config *c)
{
    json_t *a;

    if (c->n_eos == 0)
        return json_null();
    if (c->n_eos == 1)
        return json_integer(c->eos_token_ids[0]);
    a = json_array();
    for (int32_t i = 0; a && i < c->n_eos; i++)
        json_array_append_new(a, json_integer(c->eos_token_ids[i]));
    return a;
}

static json_t *rope_scaling_json(const loom_config *c)
{
    json_t *o;

    if (!c->rope_llama3)
        return json_null();
    o = json_object();
    json_object_set_new(o, "rope_type", json_string("llama3"));
    json_object_set_new(o, "factor", json_float(c->rope_factor));
    json_object_set_new(o, "low_freq_factor", json_float(c->rope_low_freq_factor));
    json_object_set_new(o, "high_freq_factor", json_float(c->rope_high_freq_factor));
    json_object_set_new(o, "original_max_position_embeddings",
                        json_integer(c->rope_original_max_position));
    return o;
}

/* Builds the config object; jansson keeps insertion order, so the text is
 * deterministic. A failed allocation inside shows up as a NULL dump. */
static json_t *config_json(const loom_config *c)
{
    json_t *o = json_object();
    json_t *arch = json_array();

    json_array_append_new(arch, json_string(loom_arch_name(c->arch)));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(model_type(c->arch)));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "max_position_embeddings",
                        json_integer(c->max_position_embeddings));
    json_object_set_new(o, "rms_norm_eps", json_float(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_double(c->rope_theta));
    json_object_set_new(o, "rope_scaling", rope_scaling_json(c));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_boolean(c->attention_bias));
    if (c->arch == LOOM_ARCH_QWEN2)
        json_object_set_new(o, "use_sliding_window", json_false());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "bos_token_id",
                        c->bos_token_id < 0 ? json_null() : json_integer(c->bos_token_id));
    json_object_set_new(o, "eos_token_id", eos_json(c));
    json_object_set_new(o, "torch_dtype", json_string(torch_dtype_name(c->torch_dtype)));
    json_object_set_new(o, "use_cache", json_true());
    return o;
}

loom_status loom_config_to_json(const loom_config *cfg, char **out)
{
    loom_status st;
    json_t *o;
    char *s;

    if (!cfg || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_config_to_json: NULL argument");
    if ((st = loom_config_validate("loom_config_to_json", cfg)))
        return st;
    o = config_json(cfg);
    /* 15 digits reproduce every value json_float makes; a rope_theta not
     * written as an integer may need 17 */
    s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    if (s && !json_is_integer(json_object_get(o, "rope_theta"))) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.15g", cfg->rope_theta);
        if (strtod(buf, NULL) != cfg->rope_theta) {
            free(s);
            s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        }
    }
    json_decref(o);
    if (!s)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "loom_config_to_json: out of memory");
    *out = s;
    return LOOM_OK;
}
