/*
 * loom.h - public C API of loom, a compiler and runtime that runs LLM decode
 * as one persistent GPU kernel (a megakernel), with a CPU backend running the
 * very same task table.
 *
 * Usage:
 *
 *     loom_model *model = NULL;
 *     loom_model_params mp = loom_model_default_params();
 *     if (loom_model_load("/path/to/Qwen3-0.6B", mp, &model) != LOOM_OK)
 *         fprintf(stderr, "%s\n", loom_last_error());
 *
 *     loom_engine *eng = NULL;
 *     loom_engine_params ep = loom_engine_default_params();   // backend AUTO
 *     loom_engine_create(model, ep, &eng);
 *
 *     int32_t prompt[] = {9707, 11, 1879};
 *     int32_t out[64]; int n_out = 0;
 *     loom_generate_params gp = loom_generate_default_params();
 *     gp.max_new_tokens = 64;
 *     loom_generate(eng, prompt, 3, gp, out, &n_out);
 *
 *     loom_engine_free(eng);
 *     loom_model_free(model);
 *
 * Conventions: every function that can fail returns loom_status (negative on
 * failure) and sets a message for loom_last_error() that names the file,
 * tensor, token or limit at fault. On failure, output arguments are left
 * untouched (nothing half-written). No library function exits or aborts.
 */
#ifndef LOOM_H
#define LOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 1
#define LOOM_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Status                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum loom_status {
    LOOM_OK                  = 0,
    LOOM_ERR_INVALID_ARGUMENT = -1,  /* bad argument from the caller          */
    LOOM_ERR_IO              = -2,   /* file missing, unreadable, mmap failed  */
    LOOM_ERR_FORMAT          = -3,   /* malformed safetensors / JSON / config  */
    LOOM_ERR_UNSUPPORTED     = -4,   /* valid but not supported (arch, dtype)  */
    LOOM_ERR_OUT_OF_MEMORY   = -5,
    LOOM_ERR_LIMIT           = -6,   /* token >= vocab, context or KV full     */
    LOOM_ERR_VERIFY          = -7,   /* the static verifier rejected a program */
    LOOM_ERR_BACKEND         = -8,   /* CUDA / NVRTC / thread failure          */
    LOOM_ERR_TIMEOUT         = -9,   /* a counter wait exceeded its limit      */
    LOOM_ERR_NO_DEVICE       = -10,  /* no CUDA driver or GPU                  */
} loom_status;

/* Static string naming the status ("LOOM_ERR_FORMAT: malformed input"). */
const char *loom_status_string(loom_status status);

/* The message of the last failure on this thread. Valid until the next loom
 * call on this thread. Never NULL (empty string when there was none). */
const char *loom_last_error(void);

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct loom_model loom_model;   /* opaque */

typedef struct loom_model_params {
    uint64_t seed;          /* presets: seed of the random weights           */
    int32_t  max_context;   /* presets: 0 = the preset's own                 */
    bool     progress;      /* show loading progress on a terminal (stderr)  */
} loom_model_params;

loom_model_params loom_model_default_params(void);

/* Loads a Hugging Face model directory (config.json + model.safetensors or
 * model.safetensors.index.json shards). Weights are memory-mapped; *out owns
 * the mappings. Free with loom_model_free. */
loom_status loom_model_load(const char *dir, loom_model_params params,
                            loom_model **out);

/* A built-in preset with deterministic random weights from params.seed:
 * "qwen3-0.6b", "qwen3-1.7b", "qwen3-8b", "llama-3.2-1b", "qwen3-tiny",
 * "qwen2-tiny", "llama-tiny". Weights are generated lazily, on read. */
loom_status loom_model_from_preset(const char *name, loom_model_params params,
                                   loom_model **out);

/* Names of the presets, NULL-terminated, static storage. */
const char *const *loom_preset_names(void);

void loom_model_free(loom_model *model);   /* NULL is fine */

/* Writes the model as an HF-style directory: config.json and
 * model.safetensors, or model-0000k-of-0000n.safetensors shards plus
 * model.safetensors.index.json when larger than shard_bytes (0 = 5 GB).
 * Weights are written in BF16. Creates dir if missing. */
loom_status loom_model_save(const loom_model *model, const char *dir,
                            uint64_t shard_bytes);

typedef struct loom_model_info {
    const char *architecture;   /* "Qwen3ForCausalLM" ...; static storage   */
    const char *dtype;          /* dtype of the weights as stored ("bf16")  */
    int32_t n_layers, hidden_size, intermediate_size;
    int32_t n_heads, n_kv_heads, head_dim, vocab_size, max_context;
    bool    tied_embeddings;
    uint64_t n_params;          /* unique parameters                          */
    uint64_t bytes_per_step;    /* weight bytes read per decode step (bf16)   */
} loom_model_info;

loom_status loom_model_get_info(const loom_model *model, loom_model_info *out);

/* ------------------------------------------------------------------------ */
/* Engines: a compiled program on a backend                                  */
/* ------------------------------------------------------------------------ */

typedef struct loom_engine loom_engine;  /* opaque */

typedef enum loom_backend {
    LOOM_BACKEND_AUTO = 0,   /* CUDA if a GPU is usable, else CPU */
    LOOM_BACKEND_CPU  = 1,
    LOOM_BACKEND_CUDA = 2,
} loom_backend;

typedef struct loom_engine_params {
    loom_backend backend;
    int32_t  n_sms;            /* workers the schedule targets; 0 = device's SMs
                                  (CUDA) or n_threads (CPU)                   */
    int32_t  n_threads;        /* CPU backend threads; 0 = online cores       */
    int32_t  max_batch;        /* IR batch dimension (1 is what is tested)    */
    int32_t  max_context;      /* KV positions per sequence; 0 = min(model, 4096) */
    int32_t  kv_page_size;     /* positions per KV page; 0 = 64               */
    uint32_t wait_timeout_ms;  /* bound of every counter wait; 0 = 5000       */
    const char *trace_path;    /* non-NULL: each loom_generate writes its
                                  timeline there (loom trace FILE), and the
                                  Perfetto JSON to FILE.perfetto.json; CUDA
                                  compiles a traced kernel                  */
    int32_t  trace_steps;      /* steps traced, from the first one after the
                                  prompt; 0 = 4                             */
    double   trace_bandwidth;  /* bytes/s recorded in the trace; 0 = none   */
    uint64_t stress_seed;      /* CPU stress mode: seed of the random choices */
    int32_t  stress_virtual_sms; /* CPU stress mode: virtual SMs (> threads)  */
    bool     stress;           /* CPU backend: random delays and orders       */
    bool     record_logits;    /* keep every step's logits (needed for
                                  loom_generate_params.logits_out)            */
    bool     verbose;          /* print compile / JIT timings to stderr       */
} loom_engine_params;

loom_engine_params loom_engine_default_params(void);

/* Compiles the model into a task table, verifies it, and prepares the
 * backend (uploads weights). The engine borrows model: keep it alive until
 * loom_engine_free. */
loom_status loom_engine_create(const loom_model *model, loom_engine_params params,
                               loom_engine **out);

void loom_engine_free(loom_engine *engine);   /* NULL is fine */

/* Backend actually used ("cuda", "cpu"); static storage. */
const char *loom_engine_backend_name(const loom_engine *engine);

/* Called for each generated token, in order, while generation runs.
 * Return false to ask the engine to stop early. */
typedef bool (*loom_token_callback)(void *user, int32_t token, int32_t index);

typedef struct loom_generate_params {
    int32_t max_new_tokens;       /* default 64                                  */
    int32_t eos_token;            /* -2 = the model's EOS, -1 = none             */
    loom_token_callback on_token; /* may be NULL                                 */
    void   *user;                 /* passed to on_token                          */
    float  *logits_out;           /* optional, caller-owned, at least
                                     (n_prompt + max_new_tokens) * vocab floats:
                                     the logits of every step (teacher-forced
                                     over the prompt)                            */
} loom_generate_params;

loom_generate_params loom_generate_default_params(void);

typedef struct loom_generate_stats {
    int32_t n_steps;          /* decode steps run (prompt + generated)      */
    double  total_ms;         /* wall time of the run                       */
    double  ms_per_token;     /* mean ms between generated tokens          */
} loom_generate_stats;

/* Greedy decoding. The prompt is fed one token per step; tokens generated
 * after it go to out_tokens[0 .. *n_out). out_tokens must hold
 * max_new_tokens entries. Stops at EOS (included in the output) or after
 * max_new_tokens. stats may be NULL. */
loom_status loom_generate(loom_engine *engine, const int32_t *prompt,
                          int32_t n_prompt, loom_generate_params params,
                          int32_t *out_tokens, int32_t *n_out,
                          loom_generate_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* LOOM_H */
