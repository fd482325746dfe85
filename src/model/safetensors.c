/* safetensors.c - parse and validate a safetensors file.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * (an object: tensor name -> {dtype, shape, data_offsets}, plus an optional
 * "__metadata__" map of strings), then the data buffer. Every tensor's
 * data_offsets are relative to the data buffer; together the tensors must
 * tile it exactly, with no gap or overlap.
 *
 * loom_st_parse holds every check and works on memory (the fuzzer drives
 * it); loom_st_open only maps the file and calls it. */
#include "model/model.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The parse in progress: outputs go here and reach the caller only when
 * the whole file checked out. */
struct st_parse {
    const char *path;
    loom_st_entry *entries;
    int32_t n;
};

static void free_entries(loom_st_entry *e, int32_t n)
{
    if (!e)
        return;
    for (int32_t i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* jansson reports a duplicate key as "duplicate object key near '"k"'":
 * copy k (without its quotes) into buf so the message can name it. */
static void duplicate_key(const char *text, char *buf, size_t cap)
{
    const char *p = strstr(text, "near '");
    size_t len;

    buf[0] = '\0';
    if (!p)
        return;
    p += 6;
    if (*p == '"')
        p++;
    len = strlen(p);
    if (len && p[len - 1] == '\'')
        len--;
    if (len && p[len - 1] == '"')
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
}

static loom_status load_header(const char *path, const uint8_t *json, uint64_t len,
                               json_t **out)
{
    json_error_t err;
    char key[256];
    json_t *root = json_loadb((const char *)json, (size_t)len, JSON_REJECT_DUPLICATES, &err);

    if (!root) {
        switch (json_error_code(&err)) {
        case json_error_invalid_utf8:
            return loom_fail(LOOM_ERR_FORMAT, "%s: header is not valid UTF-8: %s (byte %d)",
                             path, err.text, err.position);
        case json_error_duplicate_key:
            duplicate_key(err.text, key, sizeof key);
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: duplicate tensor name or key '%s' in header (%s)",
                             path, key, err.text);
        default:
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: header is not valid JSON: %s (line %d, column %d)",
                             path, err.text, err.line, err.column);
        }
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return loom_fail(LOOM_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    *out = root;
    return LOOM_OK;
}

static loom_status check_metadata(const char *path, json_t *meta)
{
    const char *k;
    json_t *v;

    if (!json_is_object(meta))
        return loom_fail(LOOM_ERR_FORMAT, "%s: '__metadata__' is not a map of strings",
                         path);
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: '__metadata__' is not a map of strings: key '%s'",
                             path, k);
    }
    return LOOM_OK;
}

/* A JSON integer >= 0, as JSON writes it (not a real, not a string). */
static bool get_uint(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static loom_status parse_shape(const char *path, const char *name, json_t *shape,
                               loom_st_entry *e)
{
    size_t n;

    if (!json_is_array(shape))
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': shape is not an array",
                         path, name);
    n = json_array_size(shape);
    if (n > LOOM_ST_MAX_DIMS)
        return loom_fail(LOOM_ERR_UNSUPPORTED,
                         "%s: tensor '%s': shape has %zu dims, more than the limit %d",
                         path, name, n, LOOM_ST_MAX_DIMS);
    for (size_t i = 0; i < n; i++) {
        uint64_t d;
        if (!get_uint(json_array_get(shape, i), &d))
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: tensor '%s': shape dim %zu is not a non-negative integer",
                             path, name, i);
        e->shape[i] = (int64_t)d;
    }
    e->ndim = (int32_t)n;
    return LOOM_OK;
}

/* Bytes the shape needs, overflow-checked; a zero dim makes it 0 whatever
 * the other dims are. */
static loom_status shape_bytes(const char *path, const char *name, const loom_st_entry *e,
                               uint64_t *out)
{
    uint64_t numel = 1;

    for (int32_t i = 0; i < e->ndim; i++)
        if (e->shape[i] == 0) {
            *out = 0;
            return LOOM_OK;
        }
    for (int32_t i = 0; i < e->ndim; i++)
        if (__builtin_mul_overflow(numel, (uint64_t)e->shape[i], &numel))
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: tensor '%s': element count overflows 64 bits", path, name);
    if (__builtin_mul_overflow(numel, (uint64_t)loom_dtype_size(e->dtype), out))
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: tensor '%s': byte size (%llu elements x %s) overflows 64 bits",
                         path, name, (unsigned long long)numel, loom_dtype_name(e->dtype));
    return LOOM_OK;
}

/* "[2, 3]" for messages. */
static const char *shape_str(const loom_st_entry *e, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < e->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "",
                              (long long)e->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

static loom_status parse_offsets(const char *path, const char *name, json_t *offs,
                                 loom_st_entry *e)
{
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !get_uint(json_array_get(offs, 0), &e->begin) ||
        !get_uint(json_array_get(offs, 1), &e->end))
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets is not two non-negative integers",
                         path, name);
    if (e->end < e->begin)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets end %llu < begin %llu", path, name,
                         (unsigned long long)e->end, (unsigned long long)e->begin);
    return LOOM_OK;
}

/* One header entry -> e (name already set). */
static loom_status parse_entry(const char *path, const char *name, json_t *obj,
                               loom_st_entry *e)
{
    json_t *dtype, *shape, *offs;
    const char *k;
    json_t *v;
    uint64_t need = 0;
    char dims[LOOM_ST_MAX_DIMS * 22 + 4];
    loom_status st;

    if (!json_is_object(obj))
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': entry is not an object",
                         path, name);
    json_object_foreach(obj, k, v) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': unexpected key '%s'",
                             path, name, k);
    }
    dtype = json_object_get(obj, "dtype");
    shape = json_object_get(obj, "shape");
    offs = json_object_get(obj, "data_offsets");
    if (!dtype || !shape || !offs)
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': missing key '%s'", path, name,
                         !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!json_is_string(dtype))
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': dtype is not a string",
                         path, name);
    if (!loom_dtype_parse(json_string_value(dtype), &e->dtype))
        return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path,
                         name, json_string_value(dtype));
    st = parse_shape(path, name, shape, e);
    if (st)
        return st;
    st = parse_offsets(path, name, offs, e);
    if (st)
        return st;
    st = shape_bytes(path, name, e, &need);
    if (st)
        return st;
    if (e->end - e->begin != need)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets span %llu bytes but shape %s x %s "
                         "needs %llu",
                         path, name, (unsigned long long)(e->end - e->begin),
                         shape_str(e, dims, sizeof dims), loom_dtype_name(e->dtype),
                         (unsigned long long)need);
    return LOOM_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const loom_st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Sorted by begin, the tensors must tile [0, data_size) exactly. */
static loom_status check_tiling(const char *path, const loom_st_entry *e, int32_t n,
                                uint64_t data_size)
{
    uint64_t pos = 0;

    for (int32_t i = 0; i < n; i++) {
        if (e[i].begin != pos) {
            if (i == 0)
                return loom_fail(LOOM_ERR_FORMAT,
                                 "%s: tensor '%s': first tensor begins at %llu, not 0",
                                 path, e[i].name, (unsigned long long)e[i].begin);
            return loom_fail(LOOM_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets not contiguous: begins at %llu "
                             "but tensor '%s' ends at %llu (%s)",
                             path, e[i].name, (unsigned long long)e[i].begin, e[i - 1].name,
                             (unsigned long long)pos, e[i].begin > pos ? "gap" : "overlap");
        }
        pos = e[i].end;
    }
    if (pos != data_size)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: tensors end at byte %llu but the data buffer is %llu bytes",
                         path, (unsigned long long)pos, (unsigned long long)data_size);
    return LOOM_OK;
}

static loom_status parse_entries(struct st_parse *p, json_t *root)
{
    size_t cap = json_object_size(root);
    const char *k;
    json_t *v;
    loom_status st;

    if (cap > INT32_MAX)
        return loom_fail(LOOM_ERR_UNSUPPORTED, "%s: %zu header entries, more than %d",
                         p->path, cap, INT32_MAX);
    p->entries = calloc(cap ? cap : 1, sizeof *p->entries);
    if (!p->entries)
        return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: %zu header entries", p->path, cap);
    json_object_foreach(root, k, v) {
        loom_st_entry *e = &p->entries[p->n];
        if (strcmp(k, "__metadata__") == 0) {
            st = check_metadata(p->path, v);
            if (st)
                return st;
            continue;
        }
        e->name = strdup(k);
        if (!e->name)
            return loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: tensor '%s'", p->path, k);
        p->n++;
        st = parse_entry(p->path, k, v, e);
        if (st)
            return st;
    }
    return LOOM_OK;
}

loom_status loom_st_parse(const char *path, const uint8_t *bytes, uint64_t size,
                          loom_st_file *out)
{
    struct st_parse p = {.path = path ? path : "<memory>"};
    json_t *root = NULL;
    uint64_t n, data_size;
    char *path_copy = NULL;
    loom_status st;

    if (!out || (!bytes && size))
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_st_parse: NULL argument");
    if (size < 8)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: file is %llu bytes, shorter than the 8-byte header length",
                         p.path, (unsigned long long)size);
    n = read_le64(bytes);
    if (n > LOOM_ST_MAX_HEADER)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: header length %llu exceeds the limit %llu", p.path,
                         (unsigned long long)n, LOOM_ST_MAX_HEADER);
    if (n > size - 8)
        return loom_fail(LOOM_ERR_FORMAT,
                         "%s: header length %llu extends beyond the file (%llu bytes)",
                         p.path, (unsigned long long)n, (unsigned long long)size);
    data_size = size - 8 - n;

    st = load_header(p.path, bytes + 8, n, &root);
    if (st)
        return st;
    st = parse_entries(&p, root);
    if (st)
        goto out;
    qsort(p.entries, (size_t)p.n, sizeof *p.entries, cmp_begin);
    st = check_tiling(p.path, p.entries, p.n, data_size);
    if (st)
        goto out;
    path_copy = strdup(p.path);
    if (!path_copy) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "%s: path copy", p.path);
        goto out;
    }

    memset(out, 0, sizeof *out);
    out->path = path_copy;
    out->file_size = size;
    out->header_len = n;
    out->data = bytes + 8 + n;
    out->data_size = data_size;
    out->entries = p.entries;
    out->n_entries = p.n;
    p.entries = NULL;
out:
    free_entries(p.entries, p.n);
    json_decref(root);
    return st;
}

loom_status loom_st_open(const char *path, loom_st_file *out)
{
    struct stat sb;
    void *map = NULL;
    uint64_t size;
    loom_status st;
    int fd;

    if (!path || !out)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "loom_st_open: NULL argument");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return loom_fail(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0) {
        st = loom_fail(LOOM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = loom_fail(LOOM_ERR_IO, "%s: not a regular file", path);
        goto out_close;
    }
    size = (uint64_t)sb.st_size;
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            st = loom_fail(LOOM_ERR_IO, "%s: cannot mmap %llu bytes: %s", path,
                           (unsigned long long)size, strerror(errno));
            goto out_close;
        }
    }
    st = loom_st_parse(path, map, size, out);
    if (st) {
        if (map)
            munmap(map, (size_t)size);
        goto out_close;
    }
    out->map = map;
out_close:
    close(fd);
    return st;
}

void loom_st_close(loom_st_file *f)
{
    if (!f)
        return;
    free_entries(f->entries, f->n_entries);
    if (f->map)
        munmap(f->map, (size_t)f->file_size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const loom_st_entry *loom_st_find(const loom_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    for (int32_t i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0)
            return &f->entries[i];
    return NULL;
}
