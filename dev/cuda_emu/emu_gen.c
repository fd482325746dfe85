/* emu_gen.c - writes the generated megakernel source of a preset for the
 * emulator:
 *     emu_gen PRESET OUT.cu
 * The shared-memory layout is widened so that the tables (common.cuh) hold
 * every task of the program: in the single-CTA mode of emu_run one CTA runs
 * them all, more than the longest SM list the generated layout is sized
 * for; the page table moves behind them. The task scratch and the staging
 * slots keep their sizes; nothing else changes. */
#include "emu_common.h"

/* The value of `#define NAME v` in src; -1 when absent. */
static long long define_value(const char *src, const char *name)
{
    char key[96];
    const char *s;

    snprintf(key, sizeof key, "\n#define %s ", name);
    s = strstr(src, key);
    return s ? atoll(s + strlen(key)) : -1;
}

/* src (freed) with the value of `#define NAME` replaced by v. */
static char *set_define(char *src, const char *name, long long v)
{
    char key[96], *s, *e, *out;
    size_t n;

    snprintf(key, sizeof key, "\n#define %s ", name);
    s = strstr(src, key);
    if (!s)
        return src;
    s += strlen(key);
    e = strchr(s, '\n');
    n = (size_t)(s - src) + 32 + strlen(e) + 1;
    out = malloc(n);
    if (!out)
        return src;
    snprintf(out, n, "%.*s%lld%s", (int)(s - src), src, v, e);
    free(src);
    return out;
}

static long long round_up(long long n, long long to) { return (n + to - 1) / to * to; }

int main(int argc, char **argv)
{
    loom_model *m = NULL;
    loom_program *p;
    char *src = NULL;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: emu_gen PRESET OUT.cu\n");
        return 2;
    }
    p = emu_program(argv[1], 1, &m);
    if (!p || loom_cuda_codegen(p, &src) != LOOM_OK) {
        fprintf(stderr, "emu_gen: %s\n", loom_last_error());
        return 1;
    }
    long long head = define_value(src, "LOOM_TABLES_OFFSET");
    long long ops = define_value(src, "LOOM_OPS_BYTES");
    long long scratch = define_value(src, "LOOM_STAGE_OFFSET") -
                        define_value(src, "LOOM_SCRATCH_OFFSET");
    long long n_pages = define_value(src, "LOOM_N_PAGES");
    long long tasks = round_up((long long)p->n_tasks * (long long)sizeof(loom_dtask), 16);
    long long pages = round_up(ops + tasks + 4ll * p->n_tasks, 16);
    long long tables = round_up(pages + 4ll * n_pages, 128);
    if (head < 0 || ops < 0 || scratch < 0 || n_pages < 0) {
        fprintf(stderr, "emu_gen: the generated source has no shared-memory layout\n");
        return 1;
    }
    src = set_define(src, "LOOM_TASKS_BYTES", tasks);
    src = set_define(src, "LOOM_PAGES_OFFSET", pages);
    src = set_define(src, "LOOM_SCRATCH_OFFSET", head + tables);
    src = set_define(src, "LOOM_STAGE_OFFSET", head + tables + scratch);
    f = fopen(argv[2], "w");
    if (!f || fputs(src, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "emu_gen: cannot write %s\n", argv[2]);
        return 1;
    }
    free(src);
    loom_program_free(p);
    loom_model_free(m);
    return 0;
}
