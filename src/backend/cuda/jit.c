/* jit.c - NVRTC compilation of the generated megakernel, with a cubin cache
 * on disk.
 *
 * Cache: one file per key in $LOOM_CACHE_DIR, else $XDG_CACHE_HOME/loom,
 * else ~/.cache/loom. The key is 128 bits: two FNV-1a 64 hashes (different
 * offset bases) of the source, the embedded task headers, the architecture,
 * the options and NVRTC's version; collisions are not a security concern
 * here, only a stale-cubin one, which 128 bits makes negligible. A file is
 * written to a temporary name and renamed, so readers never see half a file.
 * It holds the cubin and ptxas's resource report (which a cache hit could
 * not otherwise give).
 *
 * defines: loom_cuda_compile, loom_cuda_build, loom_cuda_cubin_free, loom_cuda_arch_name */
#include <errno.h>
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/cuda/cuda.h"
#include "core/error.h"

#define CACHE_MAGIC "LOOMCUB1"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void loom_cuda_arch_name(int major, int minor, char *buf, size_t len)
{
    /* The "a" targets (sm_90a) allow the arch-specific instructions. */
    snprintf(buf, len, "sm_%d%d%s", major, minor, major == 9 && minor == 0 ? "a" : "");
}

/* ------------------------------------------------------------ hashing */

typedef struct hash128 {
    uint64_t a, b;
} hash128;

static void hash_bytes(hash128 *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ull;
        h->b = (h->b ^ p[i]) * 0x100000001b3ull;
    }
}

/* Length-prefixed, so ("ab","c") and ("a","bc") differ. */
static void hash_str(hash128 *h, const char *s)
{
    uint64_t n = strlen(s);
    hash_bytes(h, &n, sizeof n);
    hash_bytes(h, s, n);
}

static void cache_key(const char *source, const char *arch, const char *const *opts,
                      int n_opts, char key[33])
{
    hash128 h = {0xcbf29ce484222325ull, 0x6c6f6f6d2d637562ull};   /* FNV basis, "loom-cub" */
    int major = 0, minor = 0;
    char ver[32];

    nvrtcVersion(&major, &minor);
    snprintf(ver, sizeof ver, "nvrtc %d.%d", major, minor);
    hash_str(&h, CACHE_MAGIC);
    hash_str(&h, ver);
    hash_str(&h, arch);
    for (int i = 0; i < n_opts; i++)
        hash_str(&h, opts[i]);
    for (int i = 0; i < loom_cuda_n_headers; i++) {
        hash_str(&h, loom_cuda_header_names[i]);
        hash_str(&h, loom_cuda_header_texts[i]);
    }
    hash_str(&h, source);
    snprintf(key, 33, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
}

/* ------------------------------------------------------------ cache files */

/* The default cache directory into buf; false if there is none. */
static bool default_cache_dir(char *buf, size_t len)
{
    const char *d = getenv("LOOM_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *home;

    if (d && *d)
        return snprintf(buf, len, "%s", d) < (int)len;
    if (x && *x)
        return snprintf(buf, len, "%s/loom", x) < (int)len;
    home = getenv("HOME");
    if (home && *home)
        return snprintf(buf, len, "%s/.cache/loom", home) < (int)len;
    return false;
}

/* mkdir -p; true if dir exists afterwards. */
static bool make_dirs(const char *dir)
{
    char tmp[1024];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i < n; i++)
        if (tmp[i] == '/') {
            tmp[i] = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return false;
            tmp[i] = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

typedef struct cache_head {
    char     magic[8];
    int32_t  res[6];
    int32_t  found;
    int32_t  pad;
    uint64_t size;
} cache_head;

static bool cache_load(const char *path, loom_cuda_cubin *c)
{
    FILE *f = fopen(path, "rb");
    cache_head h;
    void *data = NULL;
    bool ok = false;

    if (!f)
        return false;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CACHE_MAGIC, 8) != 0 ||
        h.size == 0 || h.size > (1ull << 31))
        goto out;
    data = malloc(h.size);
    if (!data || fread(data, 1, h.size, f) != h.size)
        goto out;
    c->data = data;
    c->size = h.size;
    c->res.registers = h.res[0];
    c->res.stack_frame = h.res[1];
    c->res.spill_stores = h.res[2];
    c->res.spill_loads = h.res[3];
    c->res.smem_static = h.res[4];
    c->res.cmem = h.res[5];
    c->res.found = h.found != 0;
    data = NULL;
    ok = true;
out:
    free(data);
    fclose(f);
    return ok;
}

/* Best effort: a cache that cannot be written only costs time. */
static void cache_store(const char *dir, const char *path, const loom_cuda_cubin *c)
{
    char tmp[1200];
    cache_head h;
    FILE *f;
    int fd;
    bool ok;

    if (!make_dirs(dir))
        return;
    snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", dir);
    fd = mkstemp(tmp);
    if (fd < 0)
        return;
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.res[0] = c->res.registers;
    h.res[1] = c->res.stack_frame;
    h.res[2] = c->res.spill_stores;
    h.res[3] = c->res.spill_loads;
    h.res[4] = c->res.smem_static;
    h.res[5] = c->res.cmem;
    h.found = c->res.found;
    h.size = c->size;
    ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(c->data, 1, c->size, f) == c->size;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
}

/* ------------------------------------------------------------ report */

static int32_t num_before(const char *line, const char *end, const char *word)
{
    const char *w = strstr(line, word);
    if (!w || (end && w > end))
        return -1;
    while (w > line && w[-1] == ' ')
        w--;
    while (w > line && w[-1] >= '0' && w[-1] <= '9')
        w--;
    return atoi(w);
}

/* Parses ptxas -v output for loom_megakernel:
 *   ptxas info : Function properties for loom_megakernel
 *       0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
 *   ptxas info : Used 96 registers, used 1 barriers, 1024 bytes smem, 572 bytes cmem[0] */
static void parse_report(const char *log, loom_cuda_resources *r)
{
    const char *fp = strstr(log, "Function properties for loom_megakernel");
    const char *ce = strstr(log, "Compiling entry function 'loom_megakernel'");
    const char *used, *eol;

    memset(r, 0, sizeof *r);
    if (!fp || !ce)
        return;
    fp = strchr(fp, '\n');
    used = strstr(ce, "Used ");
    if (!fp || !used)
        return;
    fp++;
    eol = strchr(fp, '\n');
    r->stack_frame = num_before(fp, eol, " bytes stack frame");
    r->spill_stores = num_before(fp, eol, " bytes spill stores");
    r->spill_loads = num_before(fp, eol, " bytes spill loads");
    eol = strchr(used, '\n');
    r->registers = atoi(used + 5);
    r->smem_static = num_before(used, eol, " bytes smem");
    r->cmem = num_before(used, eol, " bytes cmem[0]");
    if (r->smem_static < 0)
        r->smem_static = 0;
    if (r->cmem < 0)
        r->cmem = 0;
    r->found = r->registers > 0 && r->stack_frame >= 0 && r->spill_stores >= 0 &&
               r->spill_loads >= 0;
}

/* ------------------------------------------------------------ NVRTC */

static loom_status nvrtc_fail(nvrtcResult rc, const char *call, const char *arch)
{
    return loom_fail(LOOM_ERR_BACKEND, "nvrtc: %s for %s: %s", call, arch,
                     nvrtcGetErrorString(rc));
}

/* The program's log, malloc'd ("" if none). */
static char *program_log(nvrtcProgram prog)
{
    size_t n = 0;
    char *log;

    if (nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS || n == 0)
        n = 1;
    log = calloc(n + 1, 1);
    if (log && n > 1 && nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS)
        log[0] = 0;
    return log;
}

static loom_status nvrtc_build(const char *source, const char *arch, const char *const *opts,
                               int n_opts, loom_cuda_cubin *c)
{
    nvrtcProgram prog = NULL;
    nvrtcResult rc;
    loom_status st = LOOM_OK;
    char *log = NULL;
    size_t size = 0;

    rc = nvrtcCreateProgram(&prog, source, "loom_megakernel.cu", loom_cuda_n_headers,
                            (const char *const *)loom_cuda_header_texts,
                            (const char *const *)loom_cuda_header_names);
    if (rc != NVRTC_SUCCESS)
        return nvrtc_fail(rc, "nvrtcCreateProgram", arch);
    rc = nvrtcCompileProgram(prog, n_opts, opts);
    log = program_log(prog);
    if (rc != NVRTC_SUCCESS) {
        const char *err = log ? strstr(log, "error") : NULL;
        st = loom_fail(LOOM_ERR_BACKEND, "nvrtc: compiling the megakernel for %s failed: %s",
                       arch, err ? err : (log ? log : nvrtcGetErrorString(rc)));
        goto out;
    }
    rc = nvrtcGetCUBINSize(prog, &size);
    if (rc != NVRTC_SUCCESS || size == 0) {
        st = nvrtc_fail(rc, "nvrtcGetCUBINSize", arch);
        goto out;
    }
    c->data = malloc(size);
    if (!c->data) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "nvrtc: cubin of %zu bytes", size);
        goto out;
    }
    rc = nvrtcGetCUBIN(prog, c->data);
    if (rc != NVRTC_SUCCESS) {
        free(c->data);
        c->data = NULL;
        st = nvrtc_fail(rc, "nvrtcGetCUBIN", arch);
        goto out;
    }
    c->size = size;
    parse_report(log ? log : "", &c->res);
out:
    free(log);
    nvrtcDestroyProgram(&prog);
    return st;
}

#define LOOM_MAX_TUNE_DEFINES 8

/* Splits $LOOM_CUDA_DEFINES into at most LOOM_MAX_TUNE_DEFINES "-D..." words;
 * others are ignored. Returns how many were stored in opts. */
static int tune_defines(char (*words)[64], const char **opts)
{
    const char *env = getenv("LOOM_CUDA_DEFINES");
    int n = 0;
    while (env && *env && n < LOOM_MAX_TUNE_DEFINES) {
        while (*env == ' ')
            env++;
        size_t len = strcspn(env, " ");
        if (len > 2 && len < 64 && !strncmp(env, "-D", 2)) {
            memcpy(words[n], env, len);
            words[n][len] = '\0';
            opts[n] = words[n];
            n++;
        }
        env += len;
    }
    return n;
}

loom_status loom_cuda_compile(const char *source, const char *arch, const char *cache_dir,
                              loom_cuda_cubin *out)
{
    char arch_opt[32], dir[1024], path[1200];
    /* LOOM_CUDA_DEFINES="-DNAME=V ...": extra -D options for tuning
     * experiments (benchmarks A/B a knob without rebuilding loom). */
    const char *opts[4 + LOOM_MAX_TUNE_DEFINES] = {arch_opt, "-std=c++17", "--ptxas-options=-v",
                                                   "-lineinfo"};
    char tune[LOOM_MAX_TUNE_DEFINES][64];
    const int n_opts = 4 + tune_defines(tune, opts + 4);
    loom_cuda_cubin c;
    bool use_cache;
    double t0 = now_ms();
    loom_status st;

    if (!source || !arch || strncmp(arch, "sm_", 3) != 0 || strlen(arch) > 12)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "nvrtc: bad architecture '%s' (want sm_XY)",
                         arch ? arch : "(null)");
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    snprintf(arch_opt, sizeof arch_opt, "-arch=%s", arch);
    cache_key(source, arch, opts, n_opts, c.key);

    if (cache_dir)
        use_cache = snprintf(dir, sizeof dir, "%s", cache_dir) < (int)sizeof dir && *cache_dir;
    else
        use_cache = default_cache_dir(dir, sizeof dir);
    if (use_cache) {
        snprintf(path, sizeof path, "%s/%s-%s.cubin", dir, c.key, arch);
        if (cache_load(path, &c)) {
            c.cached = true;
            c.compile_ms = now_ms() - t0;
            *out = c;
            return LOOM_OK;
        }
    }
    st = nvrtc_build(source, arch, opts, n_opts, &c);
    if (st != LOOM_OK)
        return st;
    if (use_cache)
        cache_store(dir, path, &c);
    c.compile_ms = now_ms() - t0;
    *out = c;
    return LOOM_OK;
}

loom_status loom_cuda_build(const loom_program *p, bool trace, const char *arch,
                            loom_cuda_cubin *out)
{
    char *src = NULL;
    loom_status st = loom_cuda_codegen_ex(p, trace, &src);
    if (st != LOOM_OK)
        return st;
    st = loom_cuda_compile(src, arch, NULL, out);
    free(src);
    return st;
}

void loom_cuda_cubin_free(loom_cuda_cubin *c)
{
    if (!c)
        return;
    free(c->data);
    c->data = NULL;
    c->size = 0;
}
