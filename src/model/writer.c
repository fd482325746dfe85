/* writer.c - loom_model_save: a model as an HF-style directory, weights in
 * BF16 under their HF names (tied embeddings stored once).
 *
 * Every file is first written under a temporary name in the target
 * directory; only when all of them are complete are they renamed into
 * place, so a failed save leaves no half-written model behind. */
#include "model/model.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

#define DEFAULT_SHARD_BYTES 5000000000ull
#define CHUNK_ELEMS (1 << 20)
#define MAX_FILES 100000

/* One tensor to write, and where. */
typedef struct out_tensor {
    const loom_tensor *t;
    const char *name;
    int32_t shard;
    uint64_t begin, end;      /* data_offsets within its shard */
} out_tensor;

/* One file to write: its final and temporary paths. */
typedef struct out_file {
    char *path, *tmp;
    bool written;             /* tmp exists */
} out_file;

typedef struct save_ctx {
    const loom_model *m;
    const char *dir;
    out_tensor *ts;
    int32_t n_ts, cap_ts;
    int32_t n_shards;
    out_file *files;          /* shards, then config.json, then the index */
    int32_t n_files;
    uint16_t *chunk;
} save_ctx;

static loom_status mkdir_p(const char *dir)
{
    char *p = strdup(dir);
    loom_status st = LOOM_OK;

    if (!p)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: path", dir);
    for (char *s = p + 1; ; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            st = loom_fail(LOOM_ERR_IO, "%s: cannot create directory: %s", p,
                           strerror(errno));
            break;
        }
        if (end)
            break;
        *s = '/';
    }
    free(p);
    return st;
}

static loom_status add_tensor(void *user, loom_tensor *slot, const char *hf_name,
                              int32_t ndim, int64_t rows, int64_t cols)
{
    save_ctx *c = user;

    (void)ndim, (void)rows, (void)cols;
    if (c->n_ts == c->cap_ts) {
        int32_t cap = c->cap_ts ? 2 * c->cap_ts : 64;
        out_tensor *n = realloc(c->ts, (size_t)cap * sizeof *n);
        if (!n)
            return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: tensor list", c->dir);
        c->ts = n;
        c->cap_ts = cap;
    }
    c->ts[c->n_ts++] = (out_tensor){slot, hf_name, 0, 0, 0};
    return LOOM_OK;
}

/* The visit callback gets names in a stack buffer: use the slots' own. */
static loom_status collect(save_ctx *c)
{
    /* visit takes a mutable struct; add_tensor only records the slots */
    loom_weights *w = (loom_weights *)&c->m->w;
    loom_status st = loom_weights_visit(&c->m->cfg, w, add_tensor, c);

    if (st != LOOM_OK)
        return st;
    for (int32_t i = 0; i < c->n_ts; i++)
        c->ts[i].name = c->ts[i].t->name[0] ? c->ts[i].t->name : "?";
    return LOOM_OK;
}

/* Packs tensors, in order, into shards of at most shard_bytes (a tensor
 * larger than that gets a shard of its own). */
static void assign_shards(save_ctx *c, uint64_t shard_bytes)
{
    uint64_t total = 0, cur = 0;
    int32_t shard = 0;

    for (int32_t i = 0; i < c->n_ts; i++)
        total += (uint64_t)loom_tensor_numel(c->ts[i].t) * 2;
    for (int32_t i = 0; i < c->n_ts; i++) {
        uint64_t b = (uint64_t)loom_tensor_numel(c->ts[i].t) * 2;
        if (total > shard_bytes && cur > 0 && cur + b > shard_bytes) {
            shard++;
            cur = 0;
        }
        c->ts[i].shard = shard;
        c->ts[i].begin = cur;
        c->ts[i].end = cur + b;
        cur += b;
    }
    c->n_shards = shard + 1;
}

static loom_status add_file(save_ctx *c, const char *name)
{
    out_file *f = &c->files[c->n_files];
    size_t n = strlen(c->dir) + strlen(name) + 32;

    f->path = malloc(n);
    f->tmp = malloc(n);
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: path", c->dir);
    }
    snprintf(f->path, n, "%s/%s", c->dir, name);
    snprintf(f->tmp, n, "%s/.%s.tmp%ld", c->dir, name, (long)getpid());
    f->written = false;
    c->n_files++;
    return LOOM_OK;
}

static loom_status plan_files(save_ctx *c)
{
    char name[64];
    loom_status st = LOOM_OK;

    c->files = calloc((size_t)c->n_shards + 2, sizeof *c->files);
    if (!c->files)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: file list", c->dir);
    for (int32_t i = 0; st == LOOM_OK && i < c->n_shards; i++) {
        if (c->n_shards == 1)
            snprintf(name, sizeof name, "model.safetensors");
        else
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", i + 1,
                     c->n_shards);
        st = add_file(c, name);
    }
    if (st == LOOM_OK)
        st = add_file(c, "config.json");
    if (st == LOOM_OK && c->n_shards > 1)
        st = add_file(c, "model.safetensors.index.json");
    return st;
}

/* ----------------------------------------------------------------- files */

static loom_status close_file(FILE *f, const char *path, loom_status st)
{
    bool bad = ferror(f) != 0;

    if (fclose(f) != 0)
        bad = true;
    if (st == LOOM_OK && bad)
        st = loom_fail(LOOM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return st;
}

static loom_status write_text(out_file *of, const char *text)
{
    FILE *f = fopen(of->tmp, "wb");
    size_t n = strlen(text);

    if (!f)
        return loom_fail(LOOM_ERR_IO, "%s: cannot create: %s", of->tmp, strerror(errno));
    of->written = true;
    fwrite(text, 1, n, f);
    return close_file(f, of->path, LOOM_OK);
}

static json_t *shard_header(save_ctx *c, int32_t shard)
{
    json_t *h = json_object(), *meta = json_object();

    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(h, "__metadata__", meta);
    for (int32_t i = 0; i < c->n_ts; i++) {
        const out_tensor *o = &c->ts[i];
        json_t *e, *shape;
        if (o->shard != shard)
            continue;
        e = json_object();
        shape = json_array();
        for (int32_t d = 0; d < o->t->ndim; d++)
            json_array_append_new(shape, json_integer(o->t->shape[d]));
        json_object_set_new(e, "dtype", json_string("BF16"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)o->begin, (json_int_t)o->end));
        json_object_set_new(h, o->name, e);
    }
    return h;
}

/* 8-byte little-endian length, the JSON padded with spaces to 8 bytes. */
static void write_header(FILE *f, const char *json)
{
    size_t n = strlen(json), padded = (n + 7) & ~(size_t)7;
    uint8_t len[8];

    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(json, 1, n, f);
    for (size_t i = n; i < padded; i++)
        fputc(' ', f);
}

static void write_data(save_ctx *c, FILE *f, const loom_tensor *t)
{
    int64_t n = loom_tensor_numel(t);

    for (int64_t i = 0; i < n && !ferror(f); i += CHUNK_ELEMS) {
        int64_t k = n - i < CHUNK_ELEMS ? n - i : CHUNK_ELEMS;
        loom_tensor_read_bf16(t, i, k, c->chunk);
        fwrite(c->chunk, 2, (size_t)k, f);   /* bf16 little-endian host */
    }
}

static loom_status write_shard(save_ctx *c, int32_t shard)
{
    out_file *of = &c->files[shard];
    json_t *h = shard_header(c, shard);
    char *json = h ? json_dumps(h, JSON_COMPACT) : NULL;
    FILE *f;

    json_decref(h);
    if (!json)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: header", of->path);
    f = fopen(of->tmp, "wb");
    if (!f) {
        free(json);
        return loom_fail(LOOM_ERR_IO, "%s: cannot create: %s", of->tmp, strerror(errno));
    }
    of->written = true;
    write_header(f, json);
    free(json);
    for (int32_t i = 0; i < c->n_ts; i++)
        if (c->ts[i].shard == shard)
            write_data(c, f, c->ts[i].t);
    return close_file(f, of->path, LOOM_OK);
}

static loom_status write_config(save_ctx *c, out_file *of)
{
    loom_config cfg = c->m->cfg;
    char *json = NULL;
    loom_status st;

    cfg.torch_dtype = LOOM_DTYPE_BF16;   /* what the shards hold now */
    st = loom_config_to_json(&cfg, &json);
    if (st != LOOM_OK)
        return loom_fail_context(st, "%s", of->path);
    st = write_text(of, json);
    free(json);
    return st;
}

static loom_status write_index(save_ctx *c, out_file *of)
{
    json_t *root = json_object(), *map = json_object(), *meta = json_object();
    uint64_t total = 0;
    char *json;
    loom_status st;

    for (int32_t i = 0; i < c->n_ts; i++) {
        const char *shard = strrchr(c->files[c->ts[i].shard].path, '/') + 1;
        json_object_set_new(map, c->ts[i].name, json_string(shard));
        total += c->ts[i].end - c->ts[i].begin;
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", map);
    json = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!json)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: index", of->path);
    st = write_text(of, json);
    free(json);
    return st;
}

/* Renames every temporary into place; removes the layout not written (a
 * stale single file would shadow new shards, and the other way round). */
static loom_status commit(save_ctx *c)
{
    char *stale;

    for (int32_t i = 0; i < c->n_files; i++) {
        if (rename(c->files[i].tmp, c->files[i].path) != 0)
            return loom_fail(LOOM_ERR_IO, "%s: cannot rename into place: %s",
                             c->files[i].path, strerror(errno));
        c->files[i].written = false;
    }
    stale = malloc(strlen(c->dir) + 64);
    if (stale) {
        sprintf(stale, "%s/%s", c->dir,
                c->n_shards > 1 ? "model.safetensors" : "model.safetensors.index.json");
        unlink(stale);
        free(stale);
    }
    return LOOM_OK;
}

static loom_status save_all(save_ctx *c, uint64_t shard_bytes)
{
    loom_status st;

    st = mkdir_p(c->dir);
    if (st == LOOM_OK)
        st = collect(c);
    if (st != LOOM_OK)
        return st;
    assign_shards(c, shard_bytes);
    if (c->n_shards > MAX_FILES)
        return loom_fail(LOOM_ERR_LIMIT, "%s: %d shards, more than %d", c->dir,
                         c->n_shards, MAX_FILES);
    c->chunk = malloc((size_t)CHUNK_ELEMS * 2);
    if (!c->chunk)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: write buffer", c->dir);
    st = plan_files(c);
    for (int32_t i = 0; st == LOOM_OK && i < c->n_shards; i++)
        st = write_shard(c, i);
    if (st == LOOM_OK)
        st = write_config(c, &c->files[c->n_shards]);
    if (st == LOOM_OK && c->n_shards > 1)
        st = write_index(c, &c->files[c->n_shards + 1]);
    if (st == LOOM_OK)
        st = commit(c);
    return st;
}

loom_status loom_model_save(const loom_model *model, const char *dir, uint64_t shard_bytes)
{
    save_ctx c;
    loom_status st;

    if (!model || !dir || !dir[0])
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_model_save: NULL argument");
    memset(&c, 0, sizeof c);
    c.m = model;
    c.dir = dir;
    st = save_all(&c, shard_bytes ? shard_bytes : DEFAULT_SHARD_BYTES);
    for (int32_t i = 0; i < c.n_files; i++) {
        if (c.files[i].written)
            unlink(c.files[i].tmp);
        free(c.files[i].path);
        free(c.files[i].tmp);
    }
    free(c.files);
    free(c.ts);
    free(c.chunk);
    return st;
}
