/* oracle.h - the reference forward pass everything else is compared with.
 *
 * A naive, single-threaded fp32 forward pass of Qwen3, Qwen2 and Llama,
 * written like llama2.c's run.c: every weight converted to fp32 once, plain
 * loops, an fp32 KV cache. It follows Hugging Face transformers' semantics
 * (RMSNorm in fp32, Qwen3 per-head q/k norm before RoPE, rotate-half RoPE,
 * llama3 rope scaling, grouped-query attention, SiLU MLP).
 *
 * Usage:
 *
 *     loom_oracle *o = NULL;
 *     if (loom_oracle_create(model, 128, &o) != LOOM_OK) ...;
 *     for (int32_t p = 0; p < n; p++)
 *         loom_oracle_forward(o, tokens[p], p, logits);   // logits: vocab floats
 *     loom_oracle_free(o);
 *
 * defines: loom_oracle, loom_oracle_create/forward/reset/free, loom_argmax,
 *          loom_rope_inv_freq, loom_rope_apply */
#ifndef LOOM_REF_ORACLE_H
#define LOOM_REF_ORACLE_H

#include "model/model.h"

typedef struct loom_oracle loom_oracle;   /* opaque */

/* Converts every weight of m to fp32 (through loom_tensor_read_f32) and
 * allocates an fp32 KV cache of max_context positions (0 = min(the model's
 * max_context, 4096)). The oracle copies what it needs: m may be freed
 * afterwards. Free with loom_oracle_free. */
loom_status loom_oracle_create(const loom_model *m, int32_t max_context, loom_oracle **out);

/* Runs token at position pos, appends its K and V to the cache and writes
 * vocab_size logits. pos must be the next position (the number of tokens run
 * since create or reset) and < max_context; token must be in [0, vocab).
 * On error nothing changes, logits included. */
loom_status loom_oracle_forward(loom_oracle *o, int32_t token, int32_t pos, float *logits);

/* Forgets every cached position: the next forward starts at position 0. */
void loom_oracle_reset(loom_oracle *o);

/* Positions held in the KV cache (= the next position to run). */
int32_t loom_oracle_n_past(const loom_oracle *o);

void loom_oracle_free(loom_oracle *o);   /* NULL is fine */

/* Index of the largest of x[0..n); ties go to the lowest index. NaN is never
 * the largest (unless all are NaN: 0). Returns 0 for n <= 1. */
int32_t loom_argmax(const float *x, int32_t n);

/* RoPE inverse frequencies, head_dim / 2 of them: inv_freq[i] =
 * 1 / theta^(2i / head_dim) computed in double, then llama3 scaling if the
 * config asks for it, then stored as float. */
void loom_rope_inv_freq(const loom_config *cfg, float *inv_freq);

/* Rotates one head x[0..head_dim) in place, Hugging Face's rotate-half
 * convention: pairs (i, i + head_dim/2), angle = (float)pos * inv_freq[i]. */
void loom_rope_apply(float *x, int32_t head_dim, const float *inv_freq, int32_t pos);

#endif
