/* loader.c - loom_model_load: an HF model directory (config.json plus
 * model.safetensors, or model.safetensors.index.json and its shards) into a
 * loom_model whose tensors point into read-only mappings of the shards.
 *
 * Every required tensor must be present exactly once, with the shape the
 * config implies and a dtype of BF16, F16 or F32; no shard may hold a tensor
 * loom does not know, and the index and the shards must agree. Any failure
 * frees everything built so far and names the file and tensor at fault. */
#include "model/model.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/progress.h"
#include "model/model_priv.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define MAX_TEXT_FILE (64ull << 20)

/* A tensor the config requires, and where it was found. */
typedef struct req {
    loom_tensor *slot;
    int32_t ndim;
    int64_t rows, cols;
    int32_t file;             /* index into ctx.files; -1 not found yet */
} req;

/* One weight_map entry of the index. */
typedef struct map_ent {
    const char *tensor;       /* borrowed from the index JSON */
    const char *shard;
    bool seen;
} map_ent;

typedef struct load_ctx {
    const char *dir;
    loom_model_params params;
    char *index_path;         /* NULL: single file */
    json_t *index;
    loom_config cfg;
    loom_weights w;
    req *reqs;                /* sorted by name */
    int32_t n_reqs, cap_reqs;
    map_ent *map;             /* sorted by tensor name */
    int32_t n_map;
    const char **shards;      /* unique shard file names, sorted */
    int32_t n_shards;
    loom_st_file *files;      /* n_files opened of n_shards */
    int32_t n_files;
} load_ctx;

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Reads a whole (small) text file into a malloc'd buffer. */
static loom_status read_text(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return loom_fail(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return loom_fail(LOOM_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    if ((unsigned long)n > MAX_TEXT_FILE) {
        fclose(f);
        return loom_fail(LOOM_ERR_FORMAT, "%s: %ld bytes, more than %llu", path, n,
                         (unsigned long long)MAX_TEXT_FILE);
    }
    buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: %ld bytes", path, n);
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return loom_fail(LOOM_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return LOOM_OK;
}

static loom_status load_config(load_ctx *c)
{
    char *path = join_path(c->dir, "config.json"), *text = NULL;
    size_t len = 0;
    loom_status st;

    if (!path)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: path", c->dir);
    st = read_text(path, &text, &len);
    if (st == LOOM_OK)
        st = loom_config_parse(path, text, len, &c->cfg);
    free(text);
    free(path);
    return st;
}

/* ------------------------------------------------------- required tensors */

static int cmp_req(const void *a, const void *b)
{
    return strcmp(((const req *)a)->slot->name, ((const req *)b)->slot->name);
}

static loom_status collect_req(void *user, loom_tensor *slot, const char *hf_name,
                               int32_t ndim, int64_t rows, int64_t cols)
{
    load_ctx *c = user;

    (void)hf_name;   /* slot->name already holds it (init_generated) */
    if (c->n_reqs == c->cap_reqs)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loader: more tensors than counted");
    c->reqs[c->n_reqs++] = (req){slot, ndim, rows, cols, -1};
    return LOOM_OK;
}

static loom_status count_req(void *user, loom_tensor *slot, const char *hf_name,
                             int32_t ndim, int64_t rows, int64_t cols)
{
    (void)slot, (void)hf_name, (void)ndim, (void)rows, (void)cols;
    ((load_ctx *)user)->cap_reqs++;
    return LOOM_OK;
}

/* Names every required tensor (slots start out generated: the names are
 * right, and every slot is replaced by mapped data or the load fails). */
static loom_status build_reqs(load_ctx *c)
{
    loom_status st = loom_weights_init_generated(&c->cfg, 0, &c->w);

    if (st != LOOM_OK)
        return st;
    loom_weights_visit(&c->cfg, &c->w, count_req, c);
    c->reqs = calloc((size_t)c->cap_reqs, sizeof *c->reqs);
    if (!c->reqs)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: %d tensors", c->dir, c->cap_reqs);
    st = loom_weights_visit(&c->cfg, &c->w, collect_req, c);
    if (st != LOOM_OK)
        return st;
    qsort(c->reqs, (size_t)c->n_reqs, sizeof *c->reqs, cmp_req);
    return LOOM_OK;
}

static req *find_req(load_ctx *c, const char *name)
{
    int32_t lo = 0, hi = c->n_reqs;

    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name, c->reqs[mid].slot->name);
        if (r == 0)
            return &c->reqs[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------- the index */

static int cmp_map(const void *a, const void *b)
{
    return strcmp(((const map_ent *)a)->tensor, ((const map_ent *)b)->tensor);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static map_ent *find_map(load_ctx *c, const char *name)
{
    map_ent key = {name, NULL, false};

    if (!c->map)
        return NULL;
    return bsearch(&key, c->map, (size_t)c->n_map, sizeof key, cmp_map);
}

/* A shard must be a plain file name inside the model directory. */
static bool shard_name_ok(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static loom_status parse_weight_map(load_ctx *c, json_t *wm)
{
    const char *key;
    json_t *val;
    int32_t n = 0;

    c->map = calloc(json_object_size(wm) + 1, sizeof *c->map);
    c->shards = calloc(json_object_size(wm) + 1, sizeof *c->shards);
    if (!c->map || !c->shards)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: weight_map", c->index_path);
    json_object_foreach(wm, key, val) {
        const char *s = json_string_value(val);
        if (!s || !shard_name_ok(s))
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: tensor '%s': shard is not a file name in the model directory",
                             c->index_path, key);
        c->map[n] = (map_ent){key, s, false};
        c->shards[n] = s;
        n++;
    }
    if (n == 0)
        return loom_fail(LOOM_ERR_FORMAT, "%s: weight_map is empty", c->index_path);
    c->n_map = n;
    qsort(c->map, (size_t)n, sizeof *c->map, cmp_map);
    qsort(c->shards, (size_t)n, sizeof *c->shards, cmp_str);
    c->n_shards = 0;
    for (int32_t i = 0; i < n; i++)
        if (c->n_shards == 0 || strcmp(c->shards[c->n_shards - 1], c->shards[i]) != 0)
            c->shards[c->n_shards++] = c->shards[i];
    return LOOM_OK;
}

static loom_status load_index(load_ctx *c)
{
    char *text = NULL;
    size_t len = 0;
    json_error_t err;
    json_t *wm;
    loom_status st;

    st = read_text(c->index_path, &text, &len);
    if (st != LOOM_OK)
        return st;
    c->index = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!c->index)
        return loom_fail(LOOM_ERR_FORMAT, "%s: line %d column %d: %s", c->index_path,
                         err.line, err.column, err.text);
    wm = json_is_object(c->index) ? json_object_get(c->index, "weight_map") : NULL;
    if (!json_is_object(wm))
        return loom_fail(LOOM_ERR_FORMAT, "%s: no \"weight_map\" object", c->index_path);
    return parse_weight_map(c, wm);
}

/* Decides between one file and an index; fills c->shards. */
static loom_status find_shards(load_ctx *c)
{
    char *single = join_path(c->dir, SINGLE_NAME);
    bool have_single;

    c->index_path = join_path(c->dir, INDEX_NAME);
    if (!single || !c->index_path) {
        free(single);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: path", c->dir);
    }
    have_single = file_exists(single);
    free(single);
    if (have_single) {
        free(c->index_path);
        c->index_path = NULL;
        c->shards = calloc(1, sizeof *c->shards);
        if (!c->shards)
            return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: shards", c->dir);
        c->shards[0] = SINGLE_NAME;
        c->n_shards = 1;
        return LOOM_OK;
    }
    if (!file_exists(c->index_path))
        return loom_fail(LOOM_ERR_IO, "%s: neither %s nor %s found", c->dir, SINGLE_NAME,
                         INDEX_NAME);
    return load_index(c);
}

/* ------------------------------------------------------------- the shards */

/* The first tensor the index maps to shard, for messages. */
static const char *first_tensor_of(const load_ctx *c, const char *shard)
{
    for (int32_t i = 0; i < c->n_map; i++)
        if (strcmp(c->map[i].shard, shard) == 0)
            return c->map[i].tensor;
    return "?";
}

static loom_status open_shards(load_ctx *c)
{
    loom_progress bar;
    uint64_t total = 0, done = 0;
    loom_status st = LOOM_OK;

    c->files = calloc((size_t)c->n_shards, sizeof *c->files);
    if (!c->files)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: %d shards", c->dir, c->n_shards);
    for (int32_t i = 0; i < c->n_shards; i++) {
        struct stat sb;
        char *p = join_path(c->dir, c->shards[i]);
        if (p && stat(p, &sb) == 0)
            total += (uint64_t)sb.st_size;
        free(p);
    }
    loom_progress_begin(&bar, "loading", total, c->params.progress);
    for (int32_t i = 0; i < c->n_shards && st == LOOM_OK; i++) {
        char *p = join_path(c->dir, c->shards[i]);
        if (!p) {
            st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: path", c->dir);
            break;
        }
        st = loom_st_open(p, &c->files[i]);
        free(p);
        if (st != LOOM_OK) {
            if (c->index_path)
                loom_fail_context(st, "%s: tensor '%s' is in shard '%s'", c->index_path,
                                  first_tensor_of(c, c->shards[i]), c->shards[i]);
            break;
        }
        c->n_files++;
        /* Start reading the weights in while the rest is checked. */
        if (c->files[i].map && c->files[i].file_size)
            madvise(c->files[i].map, c->files[i].file_size, MADV_WILLNEED);
        done += c->files[i].file_size;
        loom_progress_update(&bar, done);
    }
    loom_progress_end(&bar);
    return st;
}

static void format_shape(char *buf, size_t cap, int32_t ndim, const int64_t *shape)
{
    size_t n = 0;

    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static loom_status check_entry(const loom_st_file *f, const loom_st_entry *e, const req *r)
{
    int64_t want[2] = {r->rows, r->cols};
    bool ok = e->ndim == r->ndim;

    for (int32_t i = 0; ok && i < r->ndim; i++)
        ok = e->shape[i] == want[i];
    if (!ok) {
        char got[128], exp[64];
        format_shape(got, sizeof got, e->ndim, e->shape);
        format_shape(exp, sizeof exp, r->ndim, want);
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': shape %s, expected %s",
                         f->path, e->name, got, exp);
    }
    if (e->dtype != LOOM_DTYPE_BF16 && e->dtype != LOOM_DTYPE_F16 &&
        e->dtype != LOOM_DTYPE_F32)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: tensor '%s': dtype %s not supported (BF16, F16 or F32)",
                         f->path, e->name, loom_dtype_name(e->dtype));
    return LOOM_OK;
}

static void fill_slot(loom_tensor *t, const loom_st_file *f, const loom_st_entry *e,
                      const req *r)
{
    t->dtype = e->dtype;
    t->ndim = r->ndim;
    t->shape[0] = r->rows;
    t->shape[1] = r->cols;
    t->data = f->data + e->begin;
    t->nbytes = e->end - e->begin;
    t->gen_kind = LOOM_GEN_NONE;
    t->gen_seed = 0;
    t->gen_uid = 0;
}

/* Checks one entry against the index (if any). */
static loom_status check_in_index(load_ctx *c, int32_t fi, const loom_st_entry *e)
{
    map_ent *m;

    if (!c->index_path)
        return LOOM_OK;
    m = find_map(c, e->name);
    if (!m)
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s' is not listed in %s",
                         c->files[fi].path, e->name, c->index_path);
    if (strcmp(m->shard, c->shards[fi]) != 0)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: tensor '%s' is in shard '%s' but %s lists it in '%s'",
                         c->files[fi].path, e->name, c->shards[fi], c->index_path, m->shard);
    m->seen = true;
    return LOOM_OK;
}

static loom_status map_file(load_ctx *c, int32_t fi)
{
    const loom_st_file *f = &c->files[fi];
    loom_status st;

    for (int32_t i = 0; i < f->n_entries; i++) {
        const loom_st_entry *e = &f->entries[i];
        req *r = find_req(c, e->name);

        st = check_in_index(c, fi, e);
        if (st != LOOM_OK)
            return st;
        /* A tied checkpoint may still carry lm_head.weight: embed is used. */
        if (!r && c->cfg.tie_word_embeddings && strcmp(e->name, "lm_head.weight") == 0)
            continue;
        if (!r)
            return loom_fail(LOOM_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of %s)",
                             f->path, e->name, loom_arch_name(c->cfg.arch));
        if (r->file >= 0)
            return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s' also in %s", f->path,
                             e->name, c->files[r->file].path);
        st = check_entry(f, e, r);
        if (st != LOOM_OK)
            return st;
        fill_slot(r->slot, f, e, r);
        r->file = fi;
    }
    return LOOM_OK;
}

static loom_status check_complete(load_ctx *c)
{
    for (int32_t i = 0; i < c->n_map; i++) {
        const map_ent *m = &c->map[i];
        if (!m->seen)
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: tensor '%s' is listed in shard '%s', which does not hold it",
                             c->index_path, m->tensor, m->shard);
    }
    for (int32_t i = 0; i < c->n_reqs; i++) {
        if (c->reqs[i].file >= 0)
            continue;
        if (c->index_path)
            return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s' missing (not in weight_map)",
                             c->index_path, c->reqs[i].slot->name);
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s' missing", c->files[0].path,
                         c->reqs[i].slot->name);
    }
    return LOOM_OK;
}

static loom_status load_all(load_ctx *c)
{
    loom_status st;

    st = load_config(c);
    if (st == LOOM_OK)
        st = build_reqs(c);
    if (st == LOOM_OK)
        st = find_shards(c);
    if (st == LOOM_OK)
        st = open_shards(c);
    for (int32_t i = 0; st == LOOM_OK && i < c->n_files; i++)
        st = map_file(c, i);
    if (st == LOOM_OK)
        st = check_complete(c);
    if (st == LOOM_OK && c->cfg.tie_word_embeddings)
        c->w.lm_head = c->w.embed;
    return st;
}

static void ctx_free(load_ctx *c, bool keep_model_parts)
{
    if (!keep_model_parts) {
        loom_weights_free(&c->w);
        for (int32_t i = 0; i < c->n_files; i++)
            loom_st_close(&c->files[i]);
        free(c->files);
    }
    free(c->reqs);
    free(c->map);
    free(c->shards);
    json_decref(c->index);
    free(c->index_path);
}

loom_status loom_model_load(const char *dir, loom_model_params params, loom_model **out)
{
    load_ctx c;
    loom_model *m = NULL;
    loom_status st;

    if (!dir || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_model_load: NULL argument");
    memset(&c, 0, sizeof c);
    c.dir = dir;
    c.params = params;
    st = load_all(&c);
    if (st == LOOM_OK)
        st = loom_model_resolve_context(dir, &c.cfg, params.max_context, &params.max_context);
    if (st == LOOM_OK) {
        m = calloc(1, sizeof *m);
        if (m)
            m->dir = strdup(dir);
        if (!m || !m->dir)
            st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: model", dir);
    }
    if (st != LOOM_OK) {
        if (m)
            free(m->dir);
        free(m);
        ctx_free(&c, false);
        return st;
    }
    m->cfg = c.cfg;
    m->w = c.w;
    m->max_context = params.max_context;
    m->files = c.files;
    m->n_files = c.n_files;
    ctx_free(&c, true);
    *out = m;
    return LOOM_OK;
}
