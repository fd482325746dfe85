/* graph.c - builds the decode-step graph (graph.h) of a model.
 *
 * One op list for every supported architecture (Qwen3, Qwen2, Llama):
 *
 *   embed -> per layer: qkv -> attn [-> attn_merge] -> o_proj
 *                       -> gate_up -> down
 *
 * (with the MLP fused, loom_mlp_fused: down's weight transposed, its tiles
 * summing into the fixed-point x_{l+1}, whose first term o_proj writes)
 *
 * (with a split attention, the merge is an op or the attention's own:
 * loom_attn_merge_mode)
 *         -> lm_head -> argmax
 *
 * Every layer has its own activation tensors (x_l, qkv_l, attn_l,
 * mid_l, act_l, partials), so no op updates a tensor in place and the
 * verifier can reason about each tensor's writers per step.
 *
 * defines: loom_graph_build, loom_graph_free, loom_graph_print,
 *          loom_op_kind_name */
#include "graph/graph.h"

#include <stdio.h>
#include <stdlib.h>

#include "compiler/internal.h"
#include "core/error.h"

/* Builder state: growing tensor and op arrays. */
typedef struct builder {
    loom_graph *g;
    int32_t cap_tensors, cap_ops;
    bool fused;   /* loom_mlp_fused, once for every layer */
    bool oom;
} builder;

const char *loom_op_kind_name(loom_op_kind k)
{
    static const char *names[LOOM_OP_KIND_COUNT] = {
        "embed", "linear", "rope_kv", "attention", "attn_merge", "argmax",
    };
    return (unsigned)k < LOOM_OP_KIND_COUNT ? names[k] : "?";
}

static const char *role_name(loom_role r)
{
    static const char *names[] = {"weight", "act", "kv", "meta"};
    return (unsigned)r < 4 ? names[r] : "?";
}

static int32_t add_tensor(builder *b, const char *name, loom_role role,
                          loom_dtype dt, int64_t rows, int64_t cols, int32_t layer)
{
    loom_graph *g = b->g;
    loom_gtensor *t;

    if (b->oom)
        return -1;
    if (g->n_tensors == b->cap_tensors) {
        int32_t cap = b->cap_tensors ? 2 * b->cap_tensors : 64;
        loom_gtensor *n = realloc(g->tensors, (size_t)cap * sizeof *n);
        if (!n) {
            b->oom = true;
            return -1;
        }
        g->tensors = n;
        b->cap_tensors = cap;
    }
    t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->role = role;
    t->dtype = dt;
    t->rows = rows;
    t->cols = cols;
    t->layer = layer;
    return g->n_tensors++;
}

/* Per-layer tensor: name "layers.<l>.<suffix>". */
static int32_t add_ltensor(builder *b, int32_t l, const char *suffix, loom_role role,
                           loom_dtype dt, int64_t rows, int64_t cols)
{
    char name[64];

    snprintf(name, sizeof name, "layers.%d.%s", l, suffix);
    return add_tensor(b, name, role, dt, rows, cols, l);
}

/* A new op with every tensor slot unused; NULL when out of memory. */
static loom_op *add_op(builder *b, loom_op_kind kind, int32_t layer, const char *name)
{
    loom_graph *g = b->g;
    loom_op *op;

    if (b->oom)
        return NULL;
    if (g->n_ops == b->cap_ops) {
        int32_t cap = b->cap_ops ? 2 * b->cap_ops : 64;
        loom_op *n = realloc(g->ops, (size_t)cap * sizeof *n);
        if (!n) {
            b->oom = true;
            return NULL;
        }
        g->ops = n;
        b->cap_ops = cap;
    }
    op = &g->ops[g->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->layer = layer;
    snprintf(op->name, sizeof op->name, "%s", name);
    op->x = op->y = op->w = op->norm = op->norm2 = -1;
    op->bias = op->resid = op->aux = op->kcache = op->vcache = -1;
    op->split = 1;
    return op;
}

static loom_op *add_linear(builder *b, int32_t layer, const char *name, int32_t x,
                           int32_t y, int32_t w, loom_prologue pro, int32_t norm,
                           loom_epilogue epi)
{
    loom_op *op = add_op(b, LOOM_OP_LINEAR, layer, name);

    if (!op)
        return NULL;
    op->x = x;
    op->y = y;
    op->w = w;
    op->pro = pro;
    op->norm = norm;
    op->epi = epi;
    op->rows = (int32_t)b->g->tensors[w].rows;
    op->cols = (int32_t)b->g->tensors[w].cols;
    return op;
}

/* Resolves defaults (0 = chosen) and checks the graph params. */
static loom_status resolve_params(const loom_model *m, loom_graph_params *p)
{
    const loom_config *c = &m->cfg;
    int32_t model_ctx = m->max_context > 0 ? m->max_context : c->max_position_embeddings;

    if (p->max_batch == 0)
        p->max_batch = 1;
    if (p->max_context == 0)
        p->max_context = model_ctx < 4096 ? model_ctx : 4096;
    if (p->page_size == 0)
        p->page_size = 64;
    if (p->n_sms == 0)
        p->n_sms = 1;
    if (p->max_batch < 1 || p->max_batch > 1024)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "graph: max_batch %d outside 1..1024",
                         p->max_batch);
    if (p->max_context < 1 || p->max_context > model_ctx)
        return loom_fail(LOOM_ERR_LIMIT, "graph: max_context %d outside 1..%d (model's context)",
                         p->max_context, model_ctx);
    if (p->page_size < 1 || p->page_size > 65536)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "graph: kv page_size %d outside 1..65536",
                         p->page_size);
    if (p->n_sms < 1 || p->n_sms > 4096)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "graph: n_sms %d outside 1..4096", p->n_sms);
    if (p->attn_split < 0 || p->attn_split > p->max_context)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "graph: attn_split %d outside 0..%d",
                         p->attn_split, p->max_context);
    if (p->attn_merge < 0 || p->attn_merge > 2)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "graph: attn_merge %d outside 0..2 (0 chosen, 1 op, 2 attention)",
                         p->attn_merge);
    if (p->mlp_fuse < 0 || p->mlp_fuse > 2)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "graph: mlp_fuse %d outside 0..2 (0 chosen, 1 down by rows, 2 fused)",
                         p->mlp_fuse);
    if (p->mlp_fuse == 2 && !loom_mlp_fused(p, c))
        return loom_fail(LOOM_ERR_LIMIT,
                         "graph: mlp_fuse 2: gate_up would have %d tiles on %d SMs, more than "
                         "the fixed-point residual's %d terms",
                         loom_linear_tile_count(2 * (int64_t)c->intermediate_size,
                                                c->hidden_size, p->n_sms, 2),
                         p->n_sms, LOOM_FIX_MAX_TILES);
    if (p->record_logits && p->max_batch != 1)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "graph: record_logits needs max_batch 1 (got %d)", p->max_batch);
    return LOOM_OK;
}

static loom_status check_config(const loom_config *c)
{
    if (c->n_kv_heads < 1 || c->n_heads < 1 || c->n_heads % c->n_kv_heads != 0)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "graph: n_heads %d not a multiple of n_kv_heads %d",
                         c->n_heads, c->n_kv_heads);
    if (c->head_dim < 2 || c->head_dim % 2 != 0)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "graph: head_dim %d must be even", c->head_dim);
    if (c->hidden_size < 1 || c->intermediate_size < 1 || c->vocab_size < 1 || c->n_layers < 1)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "graph: empty model dimensions");
    if ((int64_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim > INT32_MAX / 2 ||
        (int64_t)c->intermediate_size * 2 > INT32_MAX / 2)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "graph: model dimensions too large");
    return LOOM_OK;
}

/* Tensors and ops of one transformer layer; *x is x_l on entry, x_{l+1} on
 * return. */
static void build_layer(builder *b, int32_t l, int32_t *x)
{
    loom_graph *g = b->g;
    const loom_config *c = &g->cfg;
    int64_t B = g->params.max_batch, hd = c->head_dim, H = c->hidden_size;
    int64_t q_cols = (int64_t)c->n_heads * hd;
    int64_t qkv_rows = (int64_t)(c->n_heads + 2 * c->n_kv_heads) * hd;
    int64_t kv_rows = (int64_t)g->n_pages * g->params.page_size;
    int32_t S = loom_attn_split_choice(&g->params, c->n_kv_heads);
    int32_t merge = loom_attn_merge_mode(&g->params, S);   /* 0 for S <= 1 */
    int32_t attn_norm, wqkv, bqkv = -1, qn = -1, kn = -1, wo, ffn_norm, wgu, wd;
    int32_t qkv, kc, vc, attn, part = -1, mid, act, xn;
    bool fused = b->fused;
    loom_op *op;

    attn_norm = add_ltensor(b, l, "attn_norm", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1, H);
    wqkv = add_ltensor(b, l, "wqkv", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, qkv_rows, H);
    if (c->attention_bias)
        bqkv = add_ltensor(b, l, "bqkv", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1, qkv_rows);
    if (c->qk_norm) {
        qn = add_ltensor(b, l, "q_norm", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1, hd);
        kn = add_ltensor(b, l, "k_norm", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1, hd);
    }
    wo = add_ltensor(b, l, "wo", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, H, q_cols);
    ffn_norm = add_ltensor(b, l, "ffn_norm", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1, H);
    wgu = add_ltensor(b, l, "w_gate_up", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16,
                      2 * (int64_t)c->intermediate_size, H);
    if (fused) /* transposed: row i is column i of the model's w_down */
        wd = add_ltensor(b, l, "w_down_t", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16,
                         c->intermediate_size, H);
    else
        wd = add_ltensor(b, l, "w_down", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, H,
                         c->intermediate_size);

    qkv = add_ltensor(b, l, "qkv_out", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B, qkv_rows);
    kc = add_ltensor(b, l, "k_cache", LOOM_ROLE_KV, LOOM_DTYPE_BF16, kv_rows,
                     (int64_t)c->n_kv_heads * hd);
    vc = add_ltensor(b, l, "v_cache", LOOM_ROLE_KV, LOOM_DTYPE_BF16, kv_rows,
                     (int64_t)c->n_kv_heads * hd);
    attn = add_ltensor(b, l, "attn_out", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B, q_cols);
    if (S > 1) /* aux[b, head, s] = {o[hd], m, l} */
        part = add_ltensor(b, l, "attn_partials", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B,
                           (int64_t)c->n_heads * S * (hd + 2));
    mid = add_ltensor(b, l, "mid", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B, H);
    act = add_ltensor(b, l, "act", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B, c->intermediate_size);
    xn = add_ltensor(b, l + 1 < c->n_layers ? l + 1 : -1, "", LOOM_ROLE_ACT,
                     fused ? LOOM_DTYPE_I64 : LOOM_DTYPE_F32, B, H);
    if (b->oom)
        return;
    /* x_{l+1} is named after the layer that reads it (or "x_final"). */
    if (l + 1 < c->n_layers)
        snprintf(g->tensors[xn].name, sizeof g->tensors[xn].name, "layers.%d.x", l + 1);
    else
        snprintf(g->tensors[xn].name, sizeof g->tensors[xn].name, "x_final");

    op = add_linear(b, l, "qkv", *x, qkv, wqkv, LOOM_PRO_RMSNORM, attn_norm, LOOM_EPI_STORE);
    if (op)
        op->bias = bqkv;
    /* attention makes q (and, in split 0, the cache entries) from qkv */
    op = add_op(b, LOOM_OP_ATTENTION, l, "attn");
    if (op) {
        op->x = qkv;
        op->y = S > 1 && merge != LOOM_MERGE_ATTN ? -1 : attn;
        op->aux = part;
        op->norm = qn;
        op->norm2 = kn;
        op->kcache = kc;
        op->vcache = vc;
        op->w = g->t_rope_inv_freq;
        op->split = S;
    }
    if (merge == LOOM_MERGE_OP) {
        op = add_op(b, LOOM_OP_ATTN_MERGE, l, "attn_merge");
        if (op) {
            op->aux = part;
            op->y = attn;
            op->split = S;
        }
    }
    op = add_linear(b, l, "o_proj", attn, mid, wo, LOOM_PRO_NONE, -1, LOOM_EPI_RESIDUAL);
    if (op) {
        op->resid = *x;
        op->aux = fused ? xn : -1;   /* x_{l+1}'s first term: mid */
    }
    add_linear(b, l, "gate_up", mid, act, wgu, LOOM_PRO_RMSNORM, ffn_norm, LOOM_EPI_SILU_MUL);
    if (fused) {
        add_linear(b, l, "down", act, xn, wd, LOOM_PRO_NONE, -1, LOOM_EPI_ACCUM);
    } else {
        op = add_linear(b, l, "down", act, xn, wd, LOOM_PRO_NONE, -1, LOOM_EPI_RESIDUAL);
        if (op)
            op->resid = mid;
    }
    *x = xn;
}

static void build_all(builder *b)
{
    loom_graph *g = b->g;
    const loom_config *c = &g->cfg;
    const loom_graph_params *p = &g->params;
    int64_t B = p->max_batch, H = c->hidden_size;
    int64_t pages_per_seq = (p->max_context + p->page_size - 1) / p->page_size;
    int32_t embed, x, fnorm, lm_w, partials, lm_tiles;
    loom_op *op;

    g->t_tokens = add_tensor(b, "tokens", LOOM_ROLE_META, LOOM_DTYPE_I32, B,
                             p->max_context + 1, -1);
    /* Identity mapping, filled by the backend: position p of sequence b lives
     * in page b * pages_per_seq + p / page_size. */
    g->t_page_table = add_tensor(b, "page_table", LOOM_ROLE_META, LOOM_DTYPE_I32, B,
                                 pages_per_seq, -1);
    g->t_rope_inv_freq = add_tensor(b, "rope_inv_freq", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1,
                                    c->head_dim / 2, -1);
    embed = add_tensor(b, "embed", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16, c->vocab_size, H, -1);
    x = add_tensor(b, "layers.0.x", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B, H, 0);

    op = add_op(b, LOOM_OP_EMBED, -1, "embed");
    if (op) {
        op->x = g->t_tokens;
        op->y = x;
        op->w = embed;
        op->rows = c->vocab_size;
        op->cols = c->hidden_size;
    }
    b->fused = loom_mlp_fused(p, c);
    for (int32_t l = 0; l < c->n_layers && !b->oom; l++)
        build_layer(b, l, &x);

    fnorm = add_tensor(b, "final_norm", LOOM_ROLE_WEIGHT, LOOM_DTYPE_F32, 1, H, -1);
    lm_w = c->tie_word_embeddings ? embed
                                  : add_tensor(b, "lm_head", LOOM_ROLE_WEIGHT, LOOM_DTYPE_BF16,
                                               c->vocab_size, H, -1);
    g->t_logits = add_tensor(b, "logits", LOOM_ROLE_ACT, LOOM_DTYPE_F32,
                             p->record_logits ? p->max_context : B, c->vocab_size, -1);
    lm_tiles = loom_linear_tile_count(c->vocab_size, H, p->n_sms, 1);
    /* aux[b, tile] = {max value, its row as float} */
    partials = add_tensor(b, "lm_partials", LOOM_ROLE_ACT, LOOM_DTYPE_F32, B,
                          2 * (int64_t)lm_tiles, -1);
    if (b->oom)
        return;
    g->op_lm_head = g->n_ops;
    op = add_linear(b, -1, "lm_head", x, g->t_logits, lm_w, LOOM_PRO_RMSNORM, fnorm,
                    LOOM_EPI_ARGMAX);
    if (op)
        op->aux = partials;
    g->op_argmax = g->n_ops;
    op = add_op(b, LOOM_OP_ARGMAX, -1, "argmax");
    if (op) {
        op->x = partials;
        op->y = g->t_tokens;
    }
}

loom_status loom_graph_build(const loom_model *model, loom_graph_params params,
                             loom_graph **out)
{
    builder b = {0};
    loom_graph *g;
    loom_status st;

    if (!model || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "graph: NULL model or output");
    st = check_config(&model->cfg);
    if (st != LOOM_OK)
        return st;
    st = resolve_params(model, &params);
    if (st != LOOM_OK)
        return st;
    g = calloc(1, sizeof *g);
    if (!g)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "graph: allocation");
    g->cfg = model->cfg;
    g->model = model;
    g->params = params;
    g->n_pages = (int32_t)(params.max_batch *
                           ((params.max_context + params.page_size - 1) / params.page_size));
    g->op_lm_head = g->op_argmax = -1;
    b.g = g;
    build_all(&b);
    if (b.oom) {
        loom_graph_free(g);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "graph: %d tensors, %d ops", g->n_tensors,
                         g->n_ops);
    }
    *out = g;
    return LOOM_OK;
}

void loom_graph_free(loom_graph *g)
{
    if (!g)
        return;
    free(g->tensors);
    free(g->ops);
    free(g);
}

static const char *tname(const loom_graph *g, int32_t t)
{
    return t >= 0 ? g->tensors[t].name : "-";
}

void loom_graph_print(const loom_graph *g, void *file)
{
    FILE *f = file ? file : stdout;
    const loom_graph_params *p = &g->params;

    fprintf(f, "graph: %s, batch %d, context %d, page %d (%d pages/layer), n_sms %d%s\n",
            loom_arch_name(g->cfg.arch), p->max_batch, p->max_context, p->page_size,
            g->n_pages, p->n_sms, p->record_logits ? ", logits recorded" : "");
    fprintf(f, "tensors (%d):\n", g->n_tensors);
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const loom_gtensor *t = &g->tensors[i];
        fprintf(f, "  t%-4d %-24s %-6s %-4s [%lld, %lld]\n", i, t->name, role_name(t->role),
                loom_dtype_name(t->dtype), (long long)t->rows, (long long)t->cols);
    }
    fprintf(f, "ops (%d):\n", g->n_ops);
    for (int32_t i = 0; i < g->n_ops; i++) {
        const loom_op *o = &g->ops[i];
        fprintf(f, "  op%-4d L%-3d %-10s %-10s x=%s y=%s", i, o->layer, o->name,
                loom_op_kind_name(o->kind), tname(g, o->x), tname(g, o->y));
        if (o->w >= 0)
            fprintf(f, " w=%s [%d, %d]", tname(g, o->w), o->rows, o->cols);
        if (o->norm >= 0)
            fprintf(f, " norm=%s", tname(g, o->norm));
        if (o->norm2 >= 0)
            fprintf(f, " norm2=%s", tname(g, o->norm2));
        if (o->bias >= 0)
            fprintf(f, " bias=%s", tname(g, o->bias));
        if (o->resid >= 0)
            fprintf(f, " resid=%s", tname(g, o->resid));
        if (o->aux >= 0)
            fprintf(f, " aux=%s", tname(g, o->aux));
        if (o->kcache >= 0)
            fprintf(f, " kv=%s,%s", tname(g, o->kcache), tname(g, o->vcache));
        if (o->kind == LOOM_OP_ATTENTION || o->kind == LOOM_OP_ATTN_MERGE)
            fprintf(f, " split=%d", o->split);
        fprintf(f, " tiles=%d\n", o->n_tiles);
    }
}
