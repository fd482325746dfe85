/* loom.c - the command-line tool.
 *
 *   loom run       the main job: a model on the GPU (CPU + tiny preset without one)
 *   loom generate  greedy generation from prompt ids
 *   loom logits    teacher-forced logits of a token sequence, as float32
 *   loom bench     ms/token at batch 1 (JSON on the last line with --json)
 *   loom compile   compile + verify; --print-schedule, --emit-cuda FILE
 *   loom inspect   architecture, shapes, parameters, bytes per step, floor
 *   loom save      write a preset as a Hugging Face directory
 *   loom presets   list the built-in presets
 *   loom trace     a recorded timeline (--trace FILE): --summary, --svg OUT,
 *                  --perfetto OUT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api_internal.h"
#include "backend/backend.h"
#include "core/error.h"
#include "compiler/program.h"
#include "loom.h"
#include "model/model.h"
#include "ref/oracle.h"
#include "tokenizer/tokenizer.h"
#include "trace/trace.h"

#ifdef LOOM_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

/* ------------------------------------------------------------ options */

typedef struct options {
    const char *model_dir;
    const char *preset;
    const char *backend;        /* auto | cpu | cuda | oracle (logits) */
    const char *prompt_ids;
    const char *prompt;         /* --prompt "text" (needs a tokenizer)      */
    const char *tokenizer_dir;  /* --tokenizer DIR (default: --model DIR)   */
    const char *tokens;
    const char *out;
    const char *emit_cuda;
    const char *emit_cubin;     /* loom compile: --emit-cubin FILE          */
    const char *arch;           /* loom compile: --arch sm_XY (sm_90a)      */
    const char *trace;          /* --trace FILE: record the timeline        */
    const char *svg;            /* loom trace: --svg OUT                    */
    double window_from, window_to; /* loom trace: --window A,B (us)         */
    const char *perfetto;       /* loom trace: --perfetto OUT               */
    int32_t     trace_steps;
    bool        summary;
    bool        bandwidth_set;
    int32_t     max_new;
    int32_t     prompt_len;
    int32_t     n_sms;
    int32_t     threads;
    int32_t     context;
    int32_t     repeat;
    uint64_t    seed;
    uint64_t    shard_bytes;
    double      bandwidth;
    bool        json;
    bool        print_schedule;
    bool        print_graph;
    bool        quiet;
    const char *positional;
} options;

static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loom: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nrun 'loom help' for usage\n", stderr);
    exit(2);
}

static void usage(void)
{
    puts("usage: loom COMMAND [options]\n"
         "\n"
         "commands:\n"
         "  run       [--model DIR | --preset NAME] [--max-new N]\n"
         "            [--prompt \"text\" | --prompt-ids 1,2,3] [--tokenizer DIR]\n"
         "            the main job: qwen3-0.6b on the GPU by default; the CPU backend\n"
         "            with qwen3-tiny when there is no GPU. Prints tokens as they come.\n"
         "  generate  --model DIR | --preset NAME (--prompt \"text\" | --prompt-ids 1,2,3)\n"
         "            [--max-new N] [--tokenizer DIR]: text prompts need the model's\n"
         "            tokenizer.json (or --tokenizer DIR); text is printed as it comes\n"
         "  logits    --model DIR | --preset NAME --tokens 1,2,3 --out FILE\n"
         "            [--backend cpu|cuda|oracle]: teacher-forced logits of every\n"
         "            position, little-endian float32 [n_tokens, vocab]\n"
         "  bench     --preset NAME | --model DIR [--prompt-len 64] [--new 256]\n"
         "            [--repeat 3] [--json]\n"
         "  compile   --preset NAME | --model DIR [--sms N] [--print-schedule]\n"
         "            [--print-graph] [--emit-cuda FILE] [--emit-cubin FILE [--arch sm_90a]]:\n"
         "            the cubin as the CUDA backend builds it (NVRTC, LOOM_CUDA_DEFINES\n"
         "            honoured), its registers, stack and spills printed\n"
         "  inspect   DIR | --preset NAME [--bandwidth BYTES_PER_S]\n"
         "  save      --preset NAME --out DIR [--shard-bytes N]\n"
         "  presets   list the built-in presets\n"
         "  trace     FILE [--summary] [--svg OUT.svg [--window FROM,TO]] [--perfetto OUT.json]\n"
         "            [--bandwidth BYTES_PER_S]: a timeline recorded by run, generate\n"
         "            or bench with --trace FILE [--trace-steps N] (default 4 steps,\n"
         "            the first after the prompt; FILE.perfetto.json is written too)\n"
         "\n"
         "common options: --backend auto|cpu|cuda, --sms N, --threads N, --context N,\n"
         "                --seed N (preset weights and random prompts), --quiet");
}

static long long parse_int(const char *flag, const char *v, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || *end || end == v || x < lo || x > hi)
        die_usage("%s: '%s' is not an integer in [%lld, %lld]", flag, v, lo, hi);
    return x;
}

static void parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = "auto";
    o->max_new = -1;
    o->prompt_len = 64;
    o->repeat = 3;
    o->seed = 1234;
    o->bandwidth = 3.05e12;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() (v ? (i++, v) : (die_usage("%s needs a value", a), ""))
        if (!strcmp(a, "--model")) o->model_dir = VAL();
        else if (!strcmp(a, "--preset")) o->preset = VAL();
        else if (!strcmp(a, "--backend")) o->backend = VAL();
        else if (!strcmp(a, "--prompt-ids")) o->prompt_ids = VAL();
        else if (!strcmp(a, "--prompt")) o->prompt = VAL();
        else if (!strcmp(a, "--tokenizer")) o->tokenizer_dir = VAL();
        else if (!strcmp(a, "--tokens")) o->tokens = VAL();
        else if (!strcmp(a, "--out")) o->out = VAL();
        else if (!strcmp(a, "--emit-cuda")) o->emit_cuda = VAL();
        else if (!strcmp(a, "--emit-cubin")) o->emit_cubin = VAL();
        else if (!strcmp(a, "--arch")) o->arch = VAL();
        else if (!strcmp(a, "--max-new") || !strcmp(a, "--new")) o->max_new = (int32_t)parse_int(a, VAL(), 1, 1 << 24);
        else if (!strcmp(a, "--prompt-len")) o->prompt_len = (int32_t)parse_int(a, VAL(), 1, 1 << 24);
        else if (!strcmp(a, "--sms")) o->n_sms = (int32_t)parse_int(a, VAL(), 1, 4096);
        else if (!strcmp(a, "--threads")) o->threads = (int32_t)parse_int(a, VAL(), 1, 4096);
        else if (!strcmp(a, "--context")) o->context = (int32_t)parse_int(a, VAL(), 1, 1 << 24);
        else if (!strcmp(a, "--repeat")) o->repeat = (int32_t)parse_int(a, VAL(), 1, 1000);
        else if (!strcmp(a, "--seed")) o->seed = (uint64_t)parse_int(a, VAL(), 0, (1LL << 62));
        else if (!strcmp(a, "--shard-bytes")) o->shard_bytes = (uint64_t)parse_int(a, VAL(), 1, (1LL << 62));
        else if (!strcmp(a, "--bandwidth")) { o->bandwidth = strtod(VAL(), NULL); o->bandwidth_set = true; }
        else if (!strcmp(a, "--trace")) o->trace = VAL();
        else if (!strcmp(a, "--trace-steps")) o->trace_steps = (int32_t)parse_int(a, VAL(), 1, 1 << 16);
        else if (!strcmp(a, "--svg")) o->svg = VAL();
        else if (!strcmp(a, "--window")) {
            const char *w = VAL();
            char *end = NULL;
            o->window_from = strtod(w, &end);
            if (end == w || *end != ',' || (o->window_to = strtod(end + 1, &end), *end) ||
                o->window_from < 0 || o->window_to <= o->window_from)
                die_usage("--window wants FROM,TO in us with 0 <= FROM < TO, e.g. 500,560");
        }
        else if (!strcmp(a, "--perfetto")) o->perfetto = VAL();
        else if (!strcmp(a, "--summary")) o->summary = true;
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--print-schedule")) o->print_schedule = true;
        else if (!strcmp(a, "--print-graph")) o->print_graph = true;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) o->quiet = true;
        else if (a[0] != '-' && !o->positional) o->positional = a;
        else die_usage("unknown option '%s'", a);
#undef VAL
    }
    if (o->bandwidth <= 0)
        die_usage("--bandwidth must be a positive number of bytes per second");
}

/* "1,2,3" -> malloc'd array. */
static int32_t *parse_ids(const char *flag, const char *s, int32_t *n)
{
    int32_t cap = 16, len = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = s;
    while (ids && *p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < -2147483647L || v > 2147483647L)
            die_usage("%s: '%s' is not a comma-separated list of integers", flag, s);
        if (len == cap)
            ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (!ids)
            break;
        ids[len++] = (int32_t)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            die_usage("%s: unexpected '%c' in '%s'", flag, *p, s);
    }
    if (!ids || !len)
        die_usage("%s: no token ids given", flag);
    *n = len;
    return ids;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* len bytes to path, through a temporary name and a rename: no half-written
 * file. what: the file's contents, for the message. */
static loom_status write_whole(const char *path, const void *data, size_t len, const char *what)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    ok = (f && fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return loom_fail(LOOM_ERR_IO, "%s: cannot write %s: %s", path, what, strerror(e));
    }
    return LOOM_OK;
}

static int fail(loom_status st, const char *what)
{
    fprintf(stderr, "loom: %s: %s\n  %s\n", what, loom_status_string(st), loom_last_error());
    return 1;
}

static loom_status open_model(const options *o, const char *default_preset, loom_model **m)
{
    loom_model_params mp = loom_model_default_params();
    mp.seed = o->seed;
    mp.progress = !o->quiet && isatty(2);
    if (o->model_dir)
        return loom_model_load(o->model_dir, mp, m);
    const char *name = o->preset ? o->preset : default_preset;
    if (!name)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "give --model DIR or --preset NAME");
    return loom_model_from_preset(name, mp, m);
}

static loom_backend parse_backend(const char *s)
{
    if (!strcmp(s, "auto")) return LOOM_BACKEND_AUTO;
    if (!strcmp(s, "cpu")) return LOOM_BACKEND_CPU;
    if (!strcmp(s, "cuda") || !strcmp(s, "gpu")) return LOOM_BACKEND_CUDA;
    die_usage("--backend: '%s' is not one of auto, cpu, cuda", s);
    return LOOM_BACKEND_AUTO;
}

static loom_engine_params engine_params(const options *o)
{
    loom_engine_params ep = loom_engine_default_params();
    ep.backend = parse_backend(o->backend);
    ep.n_sms = o->n_sms;
    ep.n_threads = o->threads;
    ep.max_context = o->context;
    ep.verbose = !o->quiet;
    ep.trace_path = o->trace;
    ep.trace_steps = o->trace_steps;
    ep.trace_bandwidth = o->bandwidth_set ? o->bandwidth : 0;
    return ep;
}

/* Random prompt of n ids, deterministic in seed. */
static void random_prompt(int32_t *ids, int32_t n, int32_t vocab, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int32_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)vocab);
    }
}

/* ------------------------------------------------------------ run / generate */

typedef struct stream_state {
    int32_t     count;
    loom_detok *dt;      /* text out when the prompt came as text */
} stream_state;

static bool print_token(void *user, int32_t token, int32_t index)
{
    stream_state *s = user;
    const char *text;
    size_t len;

    s->count = index + 1;
    if (!s->dt)
        printf(" %d", token);
    else if (loom_detok_push(s->dt, token, &text, &len) == LOOM_OK)
        fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* The prompt as token ids: --prompt "text" through the model's tokenizer
 * (*tok set), or --prompt-ids. *ids is malloc'd. Returns false with a message
 * printed when neither is usable. */
static bool prompt_tokens(const options *o, loom_tokenizer **tok, int32_t **ids, int32_t *n)
{
    loom_status st;
    *tok = NULL;
    if (o->prompt && o->prompt_ids)
        die_usage("give --prompt or --prompt-ids, not both");
    if (o->prompt_ids) {
        *ids = parse_ids("--prompt-ids", o->prompt_ids, n);
        return true;
    }
    const char *dir = o->tokenizer_dir ? o->tokenizer_dir : o->model_dir;
    if (!dir) {
        fprintf(stderr, "loom: --prompt needs a tokenizer: a preset has none, give --tokenizer "
                        "DIR (a directory with tokenizer.json) or use --prompt-ids\n");
        return false;
    }
    if ((st = loom_tokenizer_load(dir, tok)) != LOOM_OK ||
        (st = loom_tokenizer_encode(*tok, o->prompt, strlen(o->prompt), true, ids, n)) != LOOM_OK) {
        fail(st, "tokenizing the prompt");
        loom_tokenizer_free(*tok);
        *tok = NULL;
        return false;
    }
    return true;
}

/* Where a --trace run left its timeline. */
static void print_trace_note(const options *o, int32_t n_steps)
{
    int32_t steps = o->trace_steps > 0 ? o->trace_steps : LOOM_TRACE_DEFAULT_STEPS;

    fprintf(stderr, "loom: wrote the timeline of %d of the %d steps (from the first after the "
            "prompt; --trace-steps N for more) to %s and %s.perfetto.json: loom trace %s "
            "--summary --svg timeline.svg\n", steps < n_steps ? steps : n_steps, n_steps,
            o->trace, o->trace, o->trace);
}

static int generate_and_print(const options *o, loom_model *m, loom_engine_params ep,
                              const int32_t *prompt, int32_t n_prompt, int32_t max_new,
                              const loom_tokenizer *tok)
{
    loom_engine *e = NULL;
    loom_status st;
    double t0 = now_s();
    if ((st = loom_engine_create(m, ep, &e)) != LOOM_OK)
        return fail(st, "creating the engine");
    if (!o->quiet)
        fprintf(stderr, "loom: backend %s, engine ready in %.2f s\n", loom_engine_backend_name(e),
                now_s() - t0);

    int32_t *out = calloc((size_t)max_new, sizeof *out);
    int32_t n_out = 0;
    stream_state ss = {0, NULL};
    loom_generate_params gp = loom_generate_default_params();
    gp.max_new_tokens = max_new;
    gp.on_token = print_token;
    gp.user = &ss;
    loom_generate_stats stats = {0};
    if (!out) {
        loom_engine_free(e);
        return fail(LOOM_ERR_OUT_OF_MEMORY, "allocating the output");
    }
    if (tok && (st = loom_detok_new(tok, true, &ss.dt)) != LOOM_OK) {
        free(out);
        loom_engine_free(e);
        return fail(st, "starting the detokenizer");
    }
    printf(tok ? "generated: " : "generated:");
    fflush(stdout);
    st = loom_generate(e, prompt, n_prompt, gp, out, &n_out, &stats);
    if (ss.dt) {
        const char *text;
        size_t len;
        if (loom_detok_flush(ss.dt, &text, &len) == LOOM_OK)
            fwrite(text, 1, len, stdout);
        loom_detok_free(ss.dt);
    }
    putchar('\n');
    if (st != LOOM_OK) {
        free(out);
        loom_engine_free(e);
        return fail(st, "generating");
    }
    printf("%d tokens generated, %d steps, %.3f ms/token (%s)\n", n_out, stats.n_steps,
           stats.ms_per_token, loom_engine_backend_name(e));
    if (o->trace)
        print_trace_note(o, stats.n_steps);
    free(out);
    loom_engine_free(e);
    return 0;
}

static int cmd_run(const options *o)
{
    options oo = *o;
    loom_model *m = NULL;
    loom_status st;
    const char *preset = "qwen3-0.6b";
    int32_t sms = 0;
    char dev[128] = "";

    if (!o->model_dir && !o->preset) {
        bool gpu = strcmp(o->backend, "cpu") &&
                   loom_cuda_device_sms(&sms, dev, sizeof dev) == LOOM_OK;
        if (!gpu) {
            preset = "qwen3-tiny";
            oo.backend = "cpu";
            printf("no usable GPU (%s): running the CPU backend with the %s preset\n",
                   strcmp(o->backend, "cpu") ? loom_last_error() : "--backend cpu", preset);
        } else {
            printf("GPU: %s (%d SMs): running the %s preset (random weights)\n", dev, sms, preset);
        }
    }
    if ((st = open_model(&oo, preset, &m)) != LOOM_OK)
        return fail(st, "opening the model");

    int32_t n_prompt = 0, *prompt = NULL;
    loom_tokenizer *tok = NULL;
    if (o->prompt_ids || o->prompt) {
        if (!prompt_tokens(o, &tok, &prompt, &n_prompt)) {
            loom_model_free(m);
            return 1;
        }
    } else {
        n_prompt = 8;
        prompt = malloc(n_prompt * sizeof *prompt);
        random_prompt(prompt, n_prompt, m->cfg.vocab_size, o->seed);
    }
    int32_t max_new = o->max_new > 0 ? o->max_new : 64;
    printf("prompt:");
    for (int32_t i = 0; i < n_prompt; i++)
        printf(" %d", prompt[i]);
    putchar('\n');
    int rc = generate_and_print(&oo, m, engine_params(&oo), prompt, n_prompt, max_new, tok);
    free(prompt);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    return rc;
}

static int cmd_generate(const options *o)
{
    loom_model *m = NULL;
    loom_status st;
    if (!o->prompt_ids && !o->prompt)
        die_usage("generate needs --prompt-ids 1,2,3 or --prompt \"text\"");
    if (!o->model_dir && !o->preset)
        die_usage("generate needs --model DIR or --preset NAME");
    int32_t n_prompt = 0, *prompt = NULL;
    loom_tokenizer *tok = NULL;
    if (!prompt_tokens(o, &tok, &prompt, &n_prompt))
        return 1;
    if ((st = open_model(o, NULL, &m)) != LOOM_OK) {
        free(prompt);
        loom_tokenizer_free(tok);
        return fail(st, "opening the model");
    }
    int rc = generate_and_print(o, m, engine_params(o), prompt, n_prompt,
                                o->max_new > 0 ? o->max_new : 32, tok);
    free(prompt);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    return rc;
}

/* ------------------------------------------------------------ logits */

static loom_status logits_oracle(loom_model *m, const int32_t *toks, int32_t n, float *logits)
{
    loom_oracle *orc = NULL;
    loom_status st = loom_oracle_create(m, n, &orc);
    for (int32_t i = 0; st == LOOM_OK && i < n; i++)
        st = loom_oracle_forward(orc, toks[i], i, logits + (size_t)i * m->cfg.vocab_size);
    loom_oracle_free(orc);
    return st;
}

static loom_status logits_engine(const options *o, loom_model *m, const int32_t *toks, int32_t n,
                                 float *logits)
{
    loom_engine *e = NULL;
    loom_engine_params ep = engine_params(o);
    ep.record_logits = true;
    if (ep.max_context <= 0)
        ep.max_context = n + 1;
    loom_status st = loom_engine_create(m, ep, &e);
    if (st != LOOM_OK)
        return st;
    int32_t next = 0, n_out = 0;
    loom_generate_params gp = loom_generate_default_params();
    gp.max_new_tokens = 1;
    gp.eos_token = -1;
    gp.logits_out = logits;
    st = loom_generate(e, toks, n, gp, &next, &n_out, NULL);
    loom_engine_free(e);
    return st;
}

static int cmd_logits(const options *o)
{
    loom_model *m = NULL;
    loom_status st;
    if (!o->tokens || !o->out)
        die_usage("logits needs --tokens 1,2,3 and --out FILE");
    if (!o->model_dir && !o->preset)
        die_usage("logits needs --model DIR or --preset NAME");
    if ((st = open_model(o, NULL, &m)) != LOOM_OK)
        return fail(st, "opening the model");
    int32_t n = 0;
    int32_t *toks = parse_ids("--tokens", o->tokens, &n);
    size_t count = (size_t)(n + 1) * (size_t)m->cfg.vocab_size;
    float *logits = malloc(count * sizeof *logits);
    int rc = 1;
    if (!logits) {
        fail(LOOM_ERR_OUT_OF_MEMORY, "allocating the logits");
        goto out;
    }
    st = !strcmp(o->backend, "oracle") ? logits_oracle(m, toks, n, logits)
                                       : logits_engine(o, m, toks, n, logits);
    if (st != LOOM_OK) {
        fail(st, "computing the logits");
        goto out;
    }
    st = write_whole(o->out, logits, sizeof *logits * (size_t)n * m->cfg.vocab_size, "the logits");
    if (st != LOOM_OK) {
        fail(st, "writing the logits");
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "loom: wrote %d x %d float32 logits to %s\n", n, m->cfg.vocab_size, o->out);
    rc = 0;
out:
    free(logits);
    free(toks);
    loom_model_free(m);
    return rc;
}

/* ------------------------------------------------------------ bench */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmd_bench(const options *o)
{
    loom_model *m = NULL;
    loom_engine *e = NULL;
    loom_status st;
    int32_t max_new = o->max_new > 0 ? o->max_new : 256;
    char dev[128] = "cpu";
    int32_t dev_sms = 0;

    if ((st = open_model(o, "qwen3-0.6b", &m)) != LOOM_OK)
        return fail(st, "opening the model");
    loom_engine_params ep = engine_params(o);
    if (ep.max_context <= 0)
        ep.max_context = o->prompt_len + max_new;
    double t0 = now_s();
    if ((st = loom_engine_create(m, ep, &e)) != LOOM_OK) {
        loom_model_free(m);
        return fail(st, "creating the engine");
    }
    double setup_s = now_s() - t0;
    if (!strcmp(loom_engine_backend_name(e), "cuda"))
        loom_cuda_device_sms(&dev_sms, dev, sizeof dev);

    int32_t *prompt = malloc(o->prompt_len * sizeof *prompt);
    int32_t *out = malloc(max_new * sizeof *out);
    double *ms = calloc(o->repeat, sizeof *ms);
    int rc = 1;
    loom_generate_params gp = loom_generate_default_params();
    gp.max_new_tokens = max_new;
    gp.eos_token = -1;   /* always run the full length */
    loom_generate_stats stats = {0};
    int32_t n_out = 0;
    double wall = -1.0;   /* best run's wall time per step, launch to results */
    if (!prompt || !out || !ms)
        goto out;
    random_prompt(prompt, o->prompt_len, m->cfg.vocab_size, o->seed);
    /* warm-up run, then the timed ones */
    for (int r = -1; r < o->repeat; r++) {
        st = loom_generate(e, prompt, o->prompt_len, gp, out, &n_out, &stats);
        if (st != LOOM_OK) {
            fail(st, "benchmark run");
            goto out;
        }
        if (r >= 0)
            ms[r] = stats.ms_per_token;
        if (r >= 0 && stats.n_steps > 0 && (wall < 0 || stats.total_ms / stats.n_steps < wall))
            wall = stats.total_ms / stats.n_steps;
    }
    if (o->trace)
        print_trace_note(o, stats.n_steps);
    qsort(ms, o->repeat, sizeof *ms, cmp_double);
    double med = ms[o->repeat / 2];
    uint64_t bytes = loom_model_bytes_per_step(&m->cfg);
    const loom_program *prog = loom_engine_program(e);
    printf("%-14s %-5s %7.3f ms/token  (min %.3f, max %.3f over %d runs; %d+%d tokens; %.2f GB/step; setup %.1f s)\n",
           o->model_dir ? o->model_dir : (o->preset ? o->preset : "qwen3-0.6b"),
           loom_engine_backend_name(e), med, ms[0], ms[o->repeat - 1], o->repeat, o->prompt_len,
           max_new, bytes / 1e9, setup_s);
    printf("%-14s %-5s %7.3f ms/step of wall time (best run: launch to results, prompt "
           "included)\n", "", "", wall);
    if (o->json)
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"device\": \"%s\", \"ms_per_token\": %.5f, "
               "\"ms_min\": %.5f, \"ms_max\": %.5f, \"bytes_per_step\": %llu, \"n_sms\": %d, "
               "\"n_tasks\": %d, \"prompt_len\": %d, \"new_tokens\": %d, \"setup_s\": %.3f, "
               "\"est_step_us\": %.1f, \"wall_ms_per_step\": %.5f}\n",
               o->model_dir ? o->model_dir : (o->preset ? o->preset : "qwen3-0.6b"),
               loom_engine_backend_name(e), dev, med, ms[0], ms[o->repeat - 1],
               (unsigned long long)bytes, prog->n_sms, prog->n_tasks, o->prompt_len, max_new,
               setup_s, prog->est_step_us, wall);
    rc = 0;
out:
    free(prompt);
    free(out);
    free(ms);
    loom_engine_free(e);
    loom_model_free(m);
    return rc;
}

/* ------------------------------------------------------------ compile */

#ifdef LOOM_HAVE_CUDA
static loom_status emit_cuda(const loom_program *p, const char *path)
{
    char *src = NULL;
    loom_status st = loom_cuda_codegen(p, &src);
    if (st != LOOM_OK)
        return st;
    st = write_whole(path, src, strlen(src), "the generated CUDA");
    free(src);
    return st;
}

/* The generated CUDA built for arch as the backend builds it (NVRTC with the
 * embedded task headers and LOOM_CUDA_DEFINES, through the cubin cache),
 * written to path; what ptxas reported is printed. */
static loom_status emit_cubin(const loom_program *p, const char *arch, const char *path)
{
    loom_cuda_cubin c;
    loom_status st = loom_cuda_build(p, false, arch, &c);
    if (st != LOOM_OK)
        return st;
    st = write_whole(path, c.data, c.size, "the cubin");
    if (st == LOOM_OK) {
        const char *defs = getenv("LOOM_CUDA_DEFINES");
        printf("wrote the %s cubin to %s (%zu bytes, %s in %.0f ms%s%s): %d registers, %d bytes "
               "of stack, %d / %d bytes spilled (stores / loads)\n",
               c.arch, path, c.size, c.cached ? "cached" : "NVRTC", c.compile_ms,
               defs && *defs ? ", LOOM_CUDA_DEFINES=" : "", defs && *defs ? defs : "",
               c.res.registers, c.res.stack_frame, c.res.spill_stores, c.res.spill_loads);
    }
    loom_cuda_cubin_free(&c);
    return st;
}
#else
static loom_status emit_cuda(const loom_program *p, const char *path)
{
    (void)p; (void)path;
    return loom_fail(LOOM_ERR_NO_DEVICE, "loom was built without the CUDA toolkit: no code generator");
}

static loom_status emit_cubin(const loom_program *p, const char *arch, const char *path)
{
    (void)p; (void)arch; (void)path;
    return loom_fail(LOOM_ERR_NO_DEVICE, "loom was built without the CUDA toolkit: no NVRTC");
}
#endif

static int cmd_compile(const options *o)
{
    loom_model *m = NULL;
    loom_program *p = NULL;
    loom_status st;
    int32_t sms = o->n_sms;
    char dev[128];
    if (o->arch && !o->emit_cubin)
        die_usage("--arch is the --emit-cubin target: give --emit-cubin FILE too");
    if ((st = open_model(o, "qwen3-0.6b", &m)) != LOOM_OK)
        return fail(st, "opening the model");
    if (sms <= 0 && loom_cuda_device_sms(&sms, dev, sizeof dev) != LOOM_OK)
        sms = 132;   /* an H100's */
    loom_compile_params cp = loom_compile_default_params(sms);
    cp.graph.max_context = o->context > 0 ? o->context : (m->max_context < 4096 ? m->max_context : 4096);
    double t0 = now_s();
    st = loom_compile(m, cp, &p);
    double dt = now_s() - t0;
    if (st != LOOM_OK) {
        loom_model_free(m);
        return fail(st, "compiling");
    }
    printf("compiled and verified in %.1f ms: %d ops, %d tasks, %d counters on %d SMs; "
           "estimated step %.1f us, critical path %.1f us\n",
           dt * 1e3, p->graph->n_ops, p->n_tasks, p->n_counters, p->n_sms, p->est_step_us,
           p->est_critical_us);
    if (o->print_graph)
        loom_graph_print(p->graph, stdout);
    if (o->print_schedule)
        loom_schedule_print(p, stdout);
    int rc = 0;
    if (o->emit_cuda) {
        st = emit_cuda(p, o->emit_cuda);
        if (st != LOOM_OK)
            rc = fail(st, "emitting CUDA");
        else
            printf("wrote the generated CUDA to %s\n", o->emit_cuda);
    }
    if (o->emit_cubin && rc == 0) {
        st = emit_cubin(p, o->arch ? o->arch : "sm_90a", o->emit_cubin);
        if (st != LOOM_OK)
            rc = fail(st, "building the cubin");
    }
    loom_program_free(p);
    loom_model_free(m);
    return rc;
}

/* ------------------------------------------------------------ inspect / save */

static void human_bytes(double b, char *buf, size_t len)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        i++;
    }
    snprintf(buf, len, "%.2f %s", b, u[i]);
}

static int cmd_inspect(const options *o)
{
    options oo = *o;
    loom_model *m = NULL;
    loom_model_info info;
    loom_status st;
    char bb[32];
    if (o->positional && !o->model_dir)
        oo.model_dir = o->positional;
    if (!oo.model_dir && !oo.preset)
        die_usage("inspect needs a model directory or --preset NAME");
    if ((st = open_model(&oo, NULL, &m)) != LOOM_OK)
        return fail(st, "opening the model");
    if ((st = loom_model_get_info(m, &info)) != LOOM_OK) {
        loom_model_free(m);
        return fail(st, "reading the model");
    }
    human_bytes((double)info.bytes_per_step, bb, sizeof bb);
    printf("model           %s\n", oo.model_dir ? oo.model_dir : oo.preset);
    printf("architecture    %s\n", info.architecture);
    printf("dtype           %s (stored), bf16 (run)\n", info.dtype);
    printf("layers          %d\n", info.n_layers);
    printf("hidden          %d\n", info.hidden_size);
    printf("intermediate    %d\n", info.intermediate_size);
    printf("heads           %d (kv %d, head_dim %d)\n", info.n_heads, info.n_kv_heads, info.head_dim);
    printf("vocab           %d\n", info.vocab_size);
    printf("context         %d\n", info.max_context);
    printf("embeddings      %s\n", info.tied_embeddings ? "tied" : "untied");
    printf("parameters      %llu (%.3f B)\n", (unsigned long long)info.n_params, info.n_params / 1e9);
    printf("bytes/step      %llu (%s, bf16 weights read once per decode step)\n",
           (unsigned long long)info.bytes_per_step, bb);
    printf("floor           %.3f ms/token at %.3g B/s\n", info.bytes_per_step / o->bandwidth * 1e3,
           o->bandwidth);
    loom_model_free(m);
    return 0;
}

static int cmd_save(const options *o)
{
    loom_model *m = NULL;
    loom_status st;
    if (!o->out || !o->preset)
        die_usage("save needs --preset NAME and --out DIR");
    if ((st = open_model(o, NULL, &m)) != LOOM_OK)
        return fail(st, "opening the model");
    st = loom_model_save(m, o->out, o->shard_bytes);
    loom_model_free(m);
    if (st != LOOM_OK)
        return fail(st, "saving");
    printf("wrote %s\n", o->out);
    return 0;
}

static int cmd_presets(void)
{
    for (const char *const *n = loom_preset_names(); *n; n++) {
        loom_config c;
        if (!loom_preset_config(*n, &c))
            continue;
        printf("%-14s %-18s %2d layers  hidden %5d  %6.3f B params  %7.3f GB/step\n", *n,
               loom_arch_name(c.arch), c.n_layers, c.hidden_size, loom_model_param_count(&c) / 1e9,
               loom_model_bytes_per_step(&c) / 1e9);
    }
    return 0;
}

/* ------------------------------------------------------------ trace */

static int cmd_trace(const options *o)
{
    loom_trace *t = NULL;
    loom_status st;
    int rc = 0;

    if (!o->positional)
        die_usage("trace needs a trace FILE (recorded with run / generate / bench --trace FILE)");
    if ((st = loom_trace_load(o->positional, &t)) != LOOM_OK)
        return fail(st, "reading the trace");
    st = loom_trace_check(t);
    if (st != LOOM_OK)
        fprintf(stderr, "loom: warning: the trace is not consistent with its schedule: %s\n",
                loom_last_error());
    if (o->svg) {
        if ((st = loom_trace_write_svg_window(t, o->svg, 0, -1, o->window_from,
                                              o->window_to)) != LOOM_OK)
            rc = fail(st, "writing the SVG");
        else if (!o->quiet)
            fprintf(stderr, "loom: wrote %s\n", o->svg);
    }
    if (o->perfetto) {
        if ((st = loom_trace_write_perfetto(t, o->perfetto)) != LOOM_OK)
            rc = fail(st, "writing the Perfetto JSON");
        else if (!o->quiet)
            fprintf(stderr, "loom: wrote %s (open it in ui.perfetto.dev)\n", o->perfetto);
    }
    if (o->summary || (!o->svg && !o->perfetto))
        loom_trace_summary(t, o->bandwidth_set ? o->bandwidth : 0, stdout);
    loom_trace_free(t);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    parse_options(argc, argv, &o);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(&o);
    if (!strcmp(cmd, "generate")) return cmd_generate(&o);
    if (!strcmp(cmd, "logits")) return cmd_logits(&o);
    if (!strcmp(cmd, "bench")) return cmd_bench(&o);
    if (!strcmp(cmd, "compile")) return cmd_compile(&o);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(&o);
    if (!strcmp(cmd, "save")) return cmd_save(&o);
    if (!strcmp(cmd, "presets")) return cmd_presets();
    if (!strcmp(cmd, "trace")) return cmd_trace(&o);
    die_usage("unknown command '%s'", cmd);
    return 2;
}
