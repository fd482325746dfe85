/* harness.c - see harness.h. */
#include "harness.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int loom_test_failures;

void loom_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    loom_test_failures++;
}

int loom_test_run(const char *suite, const loom_test_case *cases, int n)
{
    int passed = 0, failed = 0;
    const char *only = getenv("LOOM_TEST_ONLY");
    fprintf(stderr, "%s: seed %llu\n", suite, (unsigned long long)loom_test_seed());
    for (int i = 0; i < n; i++) {
        if (only && !strstr(cases[i].name, only))
            continue;
        loom_test_failures = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cases[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (loom_test_failures) {
            failed++;
            fprintf(stderr, "[FAIL] %s (%d checks failed, %.0f ms)\n", cases[i].name,
                    loom_test_failures, ms);
        } else {
            passed++;
            fprintf(stderr, "[ ok ] %s (%.0f ms)\n", cases[i].name, ms);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

char *loom_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/loom-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        return NULL;
    return strdup(tmpl);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void loom_test_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t loom_test_seed(void)
{
    static uint64_t seed;
    if (!seed) {
        const char *s = getenv("LOOM_TEST_SEED");
        seed = s ? strtoull(s, NULL, 10)
                 : ((uint64_t)time(NULL) * 2654435761u) ^ ((uint64_t)getpid() << 20);
        if (!seed)
            seed = 1;
    }
    return seed;
}

int loom_test_read_manifest(const char *path, loom_test_expect *out, int max)
{
    FILE *fp = fopen(path, "r");
    char line[1024];
    int n = 0;

    if (!fp)
        return -1;
    while (n < max && fgets(line, sizeof line, fp)) {
        char *a, *b, *c;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        a = strtok(line, "\t");
        b = strtok(NULL, "\t");
        c = strtok(NULL, "");
        if (!a || !b || !c)
            continue;
        snprintf(out[n].file, sizeof out[n].file, "%s", a);
        snprintf(out[n].status, sizeof out[n].status, "%s", b);
        snprintf(out[n].substring, sizeof out[n].substring, "%s", c);
        n++;
    }
    fclose(fp);
    return n;
}

bool loom_test_rejection_matches(const loom_test_expect *x, const char *path, loom_status got,
                                 const char *msg, char *why, size_t cap)
{
    const char *name = loom_status_string(got);
    size_t len = strlen(x->status);

    if (got == LOOM_OK) {
        snprintf(why, cap, "accepted");
        return false;
    }
    if (strncmp(name, x->status, len) != 0 || name[len] != ':') {
        snprintf(why, cap, "status %s, want %s (%s)", name, x->status, msg);
        return false;
    }
    if (!strstr(msg, x->substring)) {
        snprintf(why, cap, "message \"%s\" lacks \"%s\"", msg, x->substring);
        return false;
    }
    if (!strstr(msg, path)) {
        snprintf(why, cap, "message \"%s\" does not name %s", msg, path);
        return false;
    }
    return true;
}

uint64_t loom_test_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void loom_test_random_tokens(uint64_t seed, int32_t vocab, int32_t *tok, int n)
{
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)(loom_test_rng_next(&seed) % (uint64_t)vocab);
}

loom_run_request loom_test_request(const int32_t *prompt, int32_t n_prompt, int32_t n_steps,
                                   int32_t *out, float *logits)
{
    loom_run_request r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.n_prompt = n_prompt;
    r.n_steps = n_steps;
    r.out_tokens = out;
    r.logits_out = logits;
    return r;
}
