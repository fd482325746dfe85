/* model.h - loom's internal view of a model: config, tensors, weights.
 *
 * A tensor's bytes live either in a memory-mapped safetensors file (data !=
 * NULL) or are generated on read from a deterministic random source (presets:
 * gen_kind != LOOM_GEN_NONE). Everyone reads weights through
 * loom_tensor_read_f32 / loom_tensor_read_bf16, so a preset never needs its
 * 16 GB materialised on the host unless a backend asks for them.
 *
 * defines: loom_dtype, loom_arch, loom_config, loom_tensor, loom_layer_weights,
 *          loom_weights, struct loom_model, safetensors parsing, config parsing,
 *          preset generation, bf16 conversion helpers */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "loom.h"

/* ---------------------------------------------------------------- dtypes */

/* Every safetensors dtype is known to the parser; only BF16, F16 and F32 are
 * supported for weights. LOOM_DTYPE_I32 is loom's own (meta tensors). */
typedef enum loom_dtype {
    LOOM_DTYPE_BF16 = 0,
    LOOM_DTYPE_F16,
    LOOM_DTYPE_F32,
    LOOM_DTYPE_F64,
    LOOM_DTYPE_I8,
    LOOM_DTYPE_U8,
    LOOM_DTYPE_I16,
    LOOM_DTYPE_U16,
    LOOM_DTYPE_I32,
    LOOM_DTYPE_U32,
    LOOM_DTYPE_I64,
    LOOM_DTYPE_U64,
    LOOM_DTYPE_BOOL,
    LOOM_DTYPE_F8_E4M3,
    LOOM_DTYPE_F8_E5M2,
    LOOM_DTYPE_COUNT
} loom_dtype;

size_t loom_dtype_size(loom_dtype dt);        /* bytes per element */
const char *loom_dtype_name(loom_dtype dt);   /* "BF16" (safetensors spelling) */
/* Parses a safetensors dtype string; false if unknown. */
bool loom_dtype_parse(const char *s, loom_dtype *out);

static inline float loom_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t loom_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float loom_f16_to_f32(uint16_t h);

/* ---------------------------------------------------------------- config */

typedef enum loom_arch {
    LOOM_ARCH_QWEN3 = 0,   /* Qwen3ForCausalLM: per-head q/k RMSNorm          */
    LOOM_ARCH_QWEN2,       /* Qwen2ForCausalLM: q/k/v biases                  */
    LOOM_ARCH_LLAMA,       /* LlamaForCausalLM: optional llama3 rope scaling  */
    LOOM_ARCH_COUNT
} loom_arch;

const char *loom_arch_name(loom_arch a);      /* "Qwen3ForCausalLM" */

#define LOOM_MAX_EOS 8

typedef struct loom_config {
    loom_arch arch;
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t intermediate_size;
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;              /* config's head_dim, or hidden / heads    */
    int32_t max_position_embeddings;
    float   rms_norm_eps;
    double  rope_theta;
    bool    tie_word_embeddings;
    bool    attention_bias;        /* q/k/v biases (Qwen2)                    */
    bool    qk_norm;               /* per-head q/k RMSNorm (Qwen3)            */
    /* rope_scaling {"rope_type": "llama3", ...} */
    bool    rope_llama3;
    float   rope_factor;
    float   rope_low_freq_factor;
    float   rope_high_freq_factor;
    int32_t rope_original_max_position;
    int32_t bos_token_id;          /* -1 if none                              */
    int32_t eos_token_ids[LOOM_MAX_EOS];
    int32_t n_eos;
    loom_dtype torch_dtype;        /* as declared; BF16 if absent             */
} loom_config;

/* Parses config.json text (len bytes, not necessarily NUL-terminated) and
 * checks every value's range. path names the file in messages. */
loom_status loom_config_parse(const char *path, const char *json, size_t len,
                              loom_config *out);

/* Checks ranges and divisibility of an already-filled config (used by the
 * parser and by presets). */
loom_status loom_config_validate(const char *path, const loom_config *cfg);

/* Writes cfg as HF-style config.json text; *out is malloc'd (caller frees). */
loom_status loom_config_to_json(const loom_config *cfg, char **out);

/* ---------------------------------------------------------------- tensors */

typedef enum loom_gen_kind {
    LOOM_GEN_NONE = 0,     /* bytes at data                                   */
    LOOM_GEN_NORMAL,       /* ~ N(0, 0.02): linear weights, embeddings, biases */
    LOOM_GEN_NEAR_ONE,     /* 1 + N(0, 0.02): norm weights                     */
} loom_gen_kind;

#define LOOM_MAX_NAME 128

typedef struct loom_tensor {
    char       name[LOOM_MAX_NAME];  /* HF name: "model.layers.0.self_attn.q_proj.weight" */
    loom_dtype dtype;
    int32_t    ndim;                 /* 0 = tensor absent                       */
    int64_t    shape[2];             /* [rows, cols] or [n]                     */
    const void *data;                /* borrowed from a mapping of the model    */
    uint64_t   nbytes;
    loom_gen_kind gen_kind;
    uint64_t   gen_seed;
    uint64_t   gen_uid;              /* FNV-1a of name                          */
} loom_tensor;

static inline bool loom_tensor_present(const loom_tensor *t) { return t->ndim > 0; }
int64_t loom_tensor_numel(const loom_tensor *t);

/* Reads elements [begin, begin+count) (row-major flat index) converted to
 * f32 / bf16. Works for mapped and generated tensors alike. */
void loom_tensor_read_f32(const loom_tensor *t, int64_t begin, int64_t count, float *dst);
void loom_tensor_read_bf16(const loom_tensor *t, int64_t begin, int64_t count, uint16_t *dst);

/* The preset generator: value of element idx of a generated tensor, as the
 * bf16 bits it rounds to. Integer hashing and one float multiply, so it is
 * bit-identical wherever it is computed. */
uint16_t loom_gen_value_bf16(loom_gen_kind kind, uint64_t seed, uint64_t uid, uint64_t idx);
uint64_t loom_fnv1a(const char *s);

/* ---------------------------------------------------------------- weights */

typedef struct loom_layer_weights {
    loom_tensor attn_norm;   /* (hidden)                                  */
    loom_tensor wq;          /* (n_heads * head_dim, hidden)              */
    loom_tensor wk;          /* (n_kv_heads * head_dim, hidden)           */
    loom_tensor wv;          /* (n_kv_heads * head_dim, hidden)           */
    loom_tensor bq;          /* (n_heads * head_dim)     Qwen2 only       */
    loom_tensor bk;          /* (n_kv_heads * head_dim)  Qwen2 only       */
    loom_tensor bv;          /* (n_kv_heads * head_dim)  Qwen2 only       */
    loom_tensor q_norm;      /* (head_dim)               Qwen3 only       */
    loom_tensor k_norm;      /* (head_dim)               Qwen3 only       */
    loom_tensor wo;          /* (hidden, n_heads * head_dim)              */
    loom_tensor ffn_norm;    /* (hidden)  post_attention_layernorm        */
    loom_tensor w_gate;      /* (intermediate, hidden)                    */
    loom_tensor w_up;        /* (intermediate, hidden)                    */
    loom_tensor w_down;      /* (hidden, intermediate)                    */
} loom_layer_weights;

typedef struct loom_weights {
    loom_tensor embed;        /* (vocab, hidden) model.embed_tokens.weight */
    loom_tensor final_norm;   /* (hidden)        model.norm.weight         */
    loom_tensor lm_head;      /* (vocab, hidden) lm_head.weight, or a copy of
                                 embed's view when embeddings are tied     */
    loom_layer_weights *layers; /* n_layers entries, owned by the model    */
} loom_weights;

/* ---------------------------------------------------------- safetensors */

#define LOOM_ST_MAX_DIMS 8
#define LOOM_ST_MAX_HEADER 100000000ull

typedef struct loom_st_entry {
    char      *name;                 /* owned                                  */
    loom_dtype dtype;
    int32_t    ndim;
    int64_t    shape[LOOM_ST_MAX_DIMS];
    uint64_t   begin, end;           /* data_offsets, relative to data         */
} loom_st_entry;

typedef struct loom_st_file {
    char          *path;             /* owned copy, for messages               */
    void          *map;              /* mmap base (NULL if parsed from memory) */
    uint64_t       file_size;
    uint64_t       header_len;
    const uint8_t *data;             /* start of the data buffer (8 + N)       */
    uint64_t       data_size;
    loom_st_entry *entries;          /* sorted by begin                        */
    int32_t        n_entries;
} loom_st_file;

/* Parses and validates a whole safetensors file held in memory (bytes stay
 * borrowed: out->data points into them). Every check of the format is here,
 * so this is the function the fuzzer drives. path names the file in messages. */
loom_status loom_st_parse(const char *path, const uint8_t *bytes, uint64_t size,
                          loom_st_file *out);
/* mmaps path and parses it. */
loom_status loom_st_open(const char *path, loom_st_file *out);
void loom_st_close(loom_st_file *f);      /* frees entries, unmaps */
const loom_st_entry *loom_st_find(const loom_st_file *f, const char *name);

/* ---------------------------------------------------------------- model */

struct loom_model {
    loom_config  cfg;
    loom_weights w;
    char        *dir;            /* NULL for presets                         */
    char         preset[32];     /* "" for checkpoints                       */
    int32_t      max_context;    /* from params or config                    */
    loom_st_file *files;         /* mapped shards                            */
    int32_t      n_files;
};

/* Fills the weights struct from a config with generated tensors (presets)
 * or with absent tensors, named as HF names them. */
loom_status loom_weights_init_generated(const loom_config *cfg, uint64_t seed,
                                        loom_weights *w);
void loom_weights_free(loom_weights *w);

/* Calls fn for every tensor the config requires (HF name, expected shape),
 * in a fixed order; the mapping of names onto loom_weights fields. */
typedef loom_status (*loom_weight_visit_fn)(void *user, loom_tensor *slot,
                                            const char *hf_name, int32_t ndim,
                                            int64_t rows, int64_t cols);
loom_status loom_weights_visit(const loom_config *cfg, loom_weights *w,
                               loom_weight_visit_fn fn, void *user);

/* The preset's config (exact HF shapes); false if the name is unknown. */
bool loom_preset_config(const char *name, loom_config *out);

/* Bytes of weights read per decode step (all weights in BF16; tied
 * embeddings count once, for the lm_head read; the embedding row is
 * negligible) and the unique parameter count. */
uint64_t loom_model_bytes_per_step(const loom_config *cfg);
uint64_t loom_model_param_count(const loom_config *cfg);

#endif
