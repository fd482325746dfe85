/* graph.h - loom's graph IR: tensors and ops of one decode step.
 *
 * The graph describes ONE decode step for a batch of up to max_batch
 * sequences (B = 1 is what is tested). The backends run it once per step;
 * "step" below is the decode step index k, and the position of the token fed
 * at step k is k (the prompt is fed one token per step from position 0).
 *
 * Storage conventions, identical on every backend:
 *   weights      BF16 matrices (packed, see below), F32 vectors (norms, biases,
 *                rope inverse frequencies)
 *   activations  F32, [B, n]; with the MLP fused (mlp_fuse below) the
 *                residual stream after each layer (layers.l.x for l >= 1,
 *                x_final) is I64 fixed point: the value times 2^32
 *                (LOOM_FIX_FRAC_BITS), rounded to nearest even, each term
 *                clamped to +-LOOM_FIX_LIMIT first (NaN to -LOOM_FIX_LIMIT),
 *                so sums of terms are exact and their order does not
 *                matter; every reader converts it to F32 (loom_fix_to_f32)
 *   KV cache     BF16, paged: per layer K and V of [n_pages, page_size,
 *                n_kv_heads, head_dim]; position p of sequence b lives in page
 *                page_table[b, p / page_size], slot p % page_size
 *   meta         I32 (tokens, page table)
 *
 * Op semantics (per sequence b; acc is fp32):
 *   EMBED       y[c] = embed[tokens[b, step], c]                for c in tile
 *   LINEAR      xn = pro(x); acc[r] = sum_c W[r, c] * xn[c]     for r in tile
 *               pro NONE: xn = x; RMSNORM: xn = x * rsqrt(mean(x^2) + eps) * norm
 *               (x, resid: F32, or I64 fixed point converted to F32)
 *               epi STORE:    y[r] = acc[r] (+ bias[r])
 *                   RESIDUAL: y[r] = resid[r] + acc[r]; with aux >= 0 (an
 *                             I64 tensor) also aux[r] = fix(y[r]): the first
 *                             term of the ACCUM op that sums into aux
 *                   SILU_MUL: W rows interleaved (2i: gate i, 2i+1: up i);
 *                             y[i] = silu(acc[2i]) * acc[2i+1]
 *                   ACCUM:    the tile's rows are the sum's dimension:
 *                             y[c] += fix(sum_{r in tile} W[r, c] * x[r])
 *                             for every c < cols (y I64, its first term
 *                             written by an earlier op; the tiles' adds are
 *                             atomic and commute exactly)
 *                   ARGMAX:   y[r] = acc[r] (logits, row `step` of y when the
 *                             graph records logits, else row 0), and
 *                             aux[b, tile] = {max value, its row as float}
 *                             (ties: lowest row)
 *   ATTENTION   tile (g, s) of group g (one KV head and its G = n_heads /
 *               n_kv_heads query heads), reading x = qkv in the packed QKV
 *               layout: group g rows [q heads gG .. gG+G-1 | k head g | v head g]
 *               (1) each tile makes its G query heads from x: (q_norm RMSNorm
 *                   if norm >= 0), RoPE(pos), kept in the tile (fp32)
 *               (2) split 0 also makes k: (k_norm RMSNorm if norm2 >= 0),
 *                   RoPE(pos), and v, and writes them to the K / V caches at
 *                   (page_table, pos), head g, bf16, before reading the caches
 *               (3) the tile attends over positions [p0, p1), the splits
 *                   taken from the newest position back: n = pos + 1,
 *                   chunk = ceil(n / split), p1 = n - s*chunk,
 *                   p0 = max(0, n - (s+1)*chunk), empty when p1 <= 0 (so
 *                   split 0 holds position pos). scale 1/sqrt(head_dim).
 *               split == 1: y[head] = softmax-weighted sum of V (normalised)
 *               split  > 1: aux[b, head, s] = {o[hd] unnormalised, m, l}
 *                           (m = max score, l = sum exp(score - m);
 *                           empty chunk: m = -inf, l = 0, o = 0), and
 *                           with y (the merge in the attention): y made
 *                           from aux as ATTN_MERGE does, by the group's
 *                           last tile to finish (program.h: arrive)
 *               RoPE is Hugging Face's rotate-half: for i < hd/2, angle =
 *               pos * inv_freq[i] (fp32), (a, b) = (x[i], x[i + hd/2]),
 *               out[i] = a cos - b sin, out[i + hd/2] = b cos + a sin
 *   ATTN_MERGE  group g: y[head] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s
 *   ARGMAX      one tile: token = argmax over aux of the lm_head tiles (ties:
 *               lowest row); tokens[b, step + 1] = token unless step + 1 is
 *               still inside the prompt; the backend also streams it out
 *
 * defines: loom_graph, loom_gtensor, loom_op and their enums,
 *          loom_graph_build, loom_graph_fill_weight */
#ifndef LOOM_GRAPH_H
#define LOOM_GRAPH_H

#include "model/model.h"

typedef enum loom_role {
    LOOM_ROLE_WEIGHT = 0,
    LOOM_ROLE_ACT,
    LOOM_ROLE_KV,
    LOOM_ROLE_META,
} loom_role;

typedef struct loom_gtensor {
    char       name[64];       /* "layers.3.qkv_out", "layers.3.k_cache"     */
    loom_role  role;
    loom_dtype dtype;          /* BF16, F32 or I32                           */
    int64_t    rows, cols;     /* 2-D extent in elements; acts: rows = B     */
    int32_t    layer;          /* -1 if not in a layer                       */
} loom_gtensor;

static inline int64_t loom_gtensor_numel(const loom_gtensor *t) { return t->rows * t->cols; }

typedef enum loom_op_kind {
    LOOM_OP_EMBED = 0,
    LOOM_OP_LINEAR,
    LOOM_OP_ROPE_KV,           /* unused: fused into ATTENTION            */
    LOOM_OP_ATTENTION,
    LOOM_OP_ATTN_MERGE,
    LOOM_OP_ARGMAX,
    LOOM_OP_KIND_COUNT
} loom_op_kind;

typedef enum loom_prologue { LOOM_PRO_NONE = 0, LOOM_PRO_RMSNORM } loom_prologue;

typedef enum loom_epilogue {
    LOOM_EPI_STORE = 0,
    LOOM_EPI_RESIDUAL,
    LOOM_EPI_SILU_MUL,
    LOOM_EPI_ARGMAX,
    LOOM_EPI_ACCUM,
} loom_epilogue;

/* The fixed point of the fused MLP's residual stream (above). LOOM_FIX_LIMIT
 * keeps every term under 2^54 and any 256 terms and a first one under 2^63:
 * an ACCUM op has at most LOOM_FIX_MAX_TILES tiles. */
#define LOOM_FIX_FRAC_BITS 32
#define LOOM_FIX_LIMIT 4194304.0f   /* 2^22 */
#define LOOM_FIX_MAX_TILES 256

static inline int64_t loom_fix_from_f32(float v)
{
    v = v > -LOOM_FIX_LIMIT ? v : -LOOM_FIX_LIMIT;   /* NaN: -LIMIT */
    v = v < LOOM_FIX_LIMIT ? v : LOOM_FIX_LIMIT;
    return (int64_t)__builtin_rint((double)v * 4294967296.0);
}

static inline float loom_fix_to_f32(int64_t a)
{
    return (float)a * (1.0f / 4294967296.0f);
}

const char *loom_op_kind_name(loom_op_kind k);   /* "linear" */

typedef struct loom_op {
    loom_op_kind  kind;
    int32_t       layer;       /* -1 for embed, lm_head, argmax              */
    char          name[24];    /* "qkv", "o_proj", "gate_up", "down",
                                  "lm_head", "attn", "attn_merge",
                                  "embed", "argmax"                          */
    /* tensor ids into graph->tensors, -1 when unused */
    int32_t x;                 /* main input                                  */
    int32_t y;                 /* main output                                 */
    int32_t w;                 /* packed weight (LINEAR, EMBED)               */
    int32_t norm;              /* RMSNorm weight: prologue / q_norm           */
    int32_t norm2;             /* k_norm                                      */
    int32_t bias;              /* LINEAR bias (packed like W's rows)          */
    int32_t resid;             /* LINEAR RESIDUAL input                       */
    int32_t aux;               /* ARGMAX partials / attention partials        */
    int32_t kcache, vcache;    /* ATTENTION                                   */
    int32_t rows, cols;        /* LINEAR: W is [rows, cols]; EMBED: [vocab, hidden] */
    loom_prologue pro;
    loom_epilogue epi;
    int32_t n_tiles;           /* set by the partitioner                      */
    int32_t split;             /* ATTENTION, ATTN_MERGE: KV-length splits (>= 1) */
} loom_op;

/* An ATTENTION that merges its own partials (split > 1 with y: above). */
static inline bool loom_attn_merges(const loom_op *o)
{
    return o->kind == LOOM_OP_ATTENTION && o->split > 1 && o->y >= 0;
}

typedef struct loom_graph_params {
    int32_t max_batch;         /* B (1 tested)                                */
    int32_t max_context;       /* positions per sequence                      */
    int32_t page_size;         /* KV positions per page                       */
    int32_t attn_split;        /* KV splits per group; 0 = chosen from n_sms   */
    int32_t attn_merge;        /* split > 1: 0 chosen (2), 1 an ATTN_MERGE op,
                                  2 in the attention (its group's last tile
                                  merges)                                    */
    int32_t mlp_fuse;          /* 0 chosen (loom_mlp_fused), 1 gate_up then a
                                  down by rows, 2 down by the sum's dimension
                                  (ACCUM): its tile k reads only gate_up tile
                                  k's outputs and runs after it on its SM, no
                                  hop between them                           */
    int32_t n_sms;             /* target workers (tile counts scale with it)  */
    bool    record_logits;     /* logits tensor has max_context rows          */
} loom_graph_params;

typedef struct loom_graph {
    loom_config        cfg;
    const loom_model  *model;       /* borrowed: weights are read from it    */
    loom_graph_params  params;
    int32_t            n_pages;     /* physical KV pages per layer           */
    loom_gtensor      *tensors;
    int32_t            n_tensors;
    loom_op           *ops;         /* in sequential (program) order         */
    int32_t            n_ops;
    /* well-known tensors */
    int32_t t_tokens;               /* I32 [B, max_context + 1]              */
    int32_t t_page_table;           /* I32 [B, max_context / page_size]      */
    int32_t t_rope_inv_freq;        /* F32 [1, head_dim / 2]                 */
    int32_t t_logits;               /* F32 [B or max_context, vocab]         */
    int32_t op_lm_head, op_argmax;
} loom_graph;

/* Builds the decode-step graph of model's architecture. Ops get n_tiles = 0;
 * the partitioner sets them. */
loom_status loom_graph_build(const loom_model *model, loom_graph_params params,
                             loom_graph **out);
void loom_graph_free(loom_graph *g);

/* Writes rows [row0, row0 + nrows) of a WEIGHT tensor in its graph dtype
 * (BF16 or F32) into dst, applying the packing (QKV grouped per KV head,
 * gate/up interleaved, rope inverse frequencies computed). */
loom_status loom_graph_fill_weight(const loom_graph *g, int32_t tensor,
                                   int64_t row0, int64_t nrows, void *dst);

/* Prints tensors and ops, one a line. */
void loom_graph_print(const loom_graph *g, void *file /* FILE* */);

#endif
