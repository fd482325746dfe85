/* cuda.h - the CUDA backend's internal interface: code generation, NVRTC
 * compilation with its on-disk cubin cache, and the layout of the tables the
 * host hands to the megakernel.
 *
 * The structs below marked "device layout" are read by the generated kernel
 * (tasks/common.cuh declares the same layouts; both sides check the sizes
 * with static asserts).
 *
 * defines: loom_cuda_codegen, loom_cuda_compile, loom_cuda_cubin,
 *          loom_cuda_resources, loom_cuda_smem_bytes, loom_cuda_threads,
 *          loom_dtask, loom_dop, loom_kparams, loom_kerror,
 *          loom_cuda_embedded_headers */
#ifndef LOOM_BACKEND_CUDA_H
#define LOOM_BACKEND_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler/program.h"

/* Threads of one CTA of the megakernel (16 warps). */
#define LOOM_CUDA_THREADS 512

/* ------------------------------------------------------------- device layout */

/* One task as the kernel reads it (80 bytes). */
typedef struct loom_dtask {
    int32_t op;                 /* index into the op table                   */
    int32_t tile;
    int32_t row_begin, row_end;
    int32_t group, split;
    int32_t n_waits;
    int32_t signal;             /* counter to add 1 to (| LOOM_CUDA_SIGNAL_RELAXED:
                                   no release); -1 none                      */
    int32_t wait_counter[LOOM_MAX_WAITS];
    int32_t wait_needed[LOOM_MAX_WAITS];
    int32_t wait_offset[LOOM_MAX_WAITS];
} loom_dtask;

/* One op as the kernel reads it: its variant (the switch case of the
 * generated dispatcher) and device addresses of its tensors (0 unused). */
typedef struct loom_dop {
    uint64_t x, y, w, norm, norm2, bias, resid, aux, kcache, vcache;
    int32_t  variant;
    int32_t  rows, cols;
    int32_t  n_tiles;
    int32_t  split;
    int32_t  arrive;            /* ATTENTION merging itself: the counter group 0's
                                   tiles arrive at (group g: arrive + g), else -1 */
    int32_t  pad[2];
} loom_dop;

/* The error record a timed-out wait fills (first one wins). */
typedef struct loom_kerror {
    int32_t flag;               /* 0 none, 1 timeout                         */
    int32_t sm, task;
    int32_t counter;            /* >= 0 its value / threshold; -2 staging;
                                   -3 an LL input: value = element,
                                   threshold 0 x (or partials), 1 resid    */
    uint32_t value, threshold;
    int32_t step;
    int32_t pad;
} loom_kerror;

/* The kernel's only parameter, passed by value. */
typedef struct loom_kparams {
    uint64_t tasks;             /* loom_dtask[n_tasks]                       */
    uint64_t sm_offset;         /* int32[n_sms + 1]                          */
    uint64_t sm_tasks;          /* int32 task ids                            */
    uint64_t ops;               /* loom_dop[n_ops]                           */
    uint64_t counters;          /* uint32[n_counters]                        */
    uint64_t tokens;            /* int32 [B, max_context + 1]                */
    uint64_t page_table;        /* int32 [B, pages per sequence]             */
    uint64_t rope_inv_freq;     /* float [head_dim / 2]                      */
    uint64_t error;             /* loom_kerror                               */
    uint64_t stop_step;         /* int32: steps >= this are not run          */
    uint64_t step_time;         /* uint64 [max_context]: globaltimer ns      */
    uint64_t host_ring;         /* mapped int32: [0] count, [1] stop flag,
                                   [2 ..] generated tokens                   */
    uint64_t timeout_ns;
    int32_t  n_steps;
    int32_t  n_prompt;
    int32_t  eos[LOOM_MAX_EOS];
    int32_t  n_eos;
    int32_t  ll_epoch;          /* LL tags' bits 24-31 (common.cuh), 1..255   */
} loom_kparams;

/* The same sizes are asserted in tasks/common.cuh. */
_Static_assert(sizeof(loom_dtask) == 80, "loom_dtask layout (tasks/common.cuh)");
_Static_assert(sizeof(loom_dop) == 112, "loom_dop layout (tasks/common.cuh)");
_Static_assert(sizeof(loom_kerror) == 32, "loom_kerror layout (tasks/common.cuh)");
_Static_assert(sizeof(loom_kparams) == 152, "loom_kparams layout (tasks/common.cuh)");
_Static_assert(LOOM_MAX_WAITS == 4 && LOOM_MAX_EOS == 8, "device table sizes (common.cuh)");

/* ------------------------------------------------------------- codegen */

/* Dynamic shared memory the generated kernel of p needs (bytes) on a device
 * of compute capability cc_major: the weight staging buffer is there from 9
 * (Hopper) on. */
int64_t loom_cuda_smem_bytes(const loom_program *p, int cc_major);

/* Variant (switch case) of each op of p: variant[i] for op i, n_variants
 * distinct. variant must hold p->graph->n_ops entries. */
void loom_cuda_op_variants(const loom_program *p, int32_t *variant, int32_t *n_variants);

/* LL activations (tasks/common.cuh): the mode, LOOM_CUDA_LL (0 off; 1
 * counters added to without a release, 2 no counters, 3 LL words with
 * released counters, for experiments; 4, the default, as 2 for attention's
 * output only); whether graph tensor `tensor` is a buffer of LL words
 * {value, tag} (F32 activations passed between tasks); the kernel's task table
 * of p (dt holds p->n_tasks): the signals of the ops whose outputs are LL
 * words are relaxed (mode 1, LOOM_CUDA_SIGNAL_RELAXED in dtask.signal) or
 * gone with the waits on them (modes 2 and 4: their consumers poll the
 * words). */
#define LOOM_CUDA_SIGNAL_RELAXED (1 << 30)
int loom_cuda_ll_mode(void);
bool loom_cuda_tensor_ll(const loom_graph *g, int32_t tensor);
/* The bytes of an LL word, LOOM_CUDA_LL_WORD: 8 {value, tag}, or 4 (the
 * default) the float with the tag in its two lowest bits (common.cuh
 * LOOM_LL_WORD); the values of n words of `word` bytes into dst. */
int loom_cuda_ll_word(void);
void loom_cuda_ll_values(const void *words, int word, float *dst, size_t n);
void loom_cuda_task_table(const loom_program *p, loom_dtask *dt);
/* The environment variables of loom_cuda_task_table's timing experiments
 * (results wrong; the runtime warns when one is set). */
enum { LOOM_CUDA_EXP_SKIP_WAITS, LOOM_CUDA_EXP_RELAX_SIGNALS, LOOM_CUDA_N_EXP };
extern const char *const loom_cuda_experiments[LOOM_CUDA_N_EXP];
/* Bit w: task `task` of p polls the words of its wait w's producer inside
 * its run instead of waiting on the counter (LL mode `ll`, loom_cuda_ll_mode:
 * 2 and 4; the task table drops those waits). */
uint32_t loom_cuda_polled_waits(const loom_program *p, int32_t task, int ll);
/* loom_trace_rec.flags of task `task`: its polled waits, and
 * LOOM_TRACE_EARLY for argmax, which signals before its PCIe work
 * (tasks/argmax.cuh loom_signal_now). */
uint32_t loom_cuda_trace_flags(const loom_program *p, int32_t task, int ll);

/* loom_dop.arrive of op `op`: the counter its tiles of group 0 arrive at
 * (program.h arrive; group g's: + g, which codegen checks), -1 none. */
int32_t loom_cuda_op_arrive(const loom_program *p, int32_t op);

/* Emits the CUDA C of p's megakernel: deterministic (same program, same
 * bytes), the model's shapes as compile-time constants. *source is malloc'd
 * (caller frees). Fails (LOOM_ERR_UNSUPPORTED) on shapes the kernels do not
 * handle, naming the op and the shape. */
loom_status loom_cuda_codegen(const loom_program *p, char **source);
/* The same, with trace: the traced kernel (LOOM_TRACE, tasks/trace.cuh). */
loom_status loom_cuda_codegen_ex(const loom_program *p, bool trace, char **source);

/* ------------------------------------------------------------- NVRTC + cache */

/* ptxas's resource report of the kernel. */
typedef struct loom_cuda_resources {
    int32_t registers;
    int32_t stack_frame;        /* bytes                                     */
    int32_t spill_stores;       /* bytes                                     */
    int32_t spill_loads;        /* bytes                                     */
    int32_t smem_static;        /* bytes                                     */
    int32_t cmem;               /* bytes of cmem[0]                          */
    bool    found;              /* the report was parsed                     */
} loom_cuda_resources;

typedef struct loom_cuda_cubin {
    void   *data;               /* malloc'd cubin                            */
    size_t  size;
    loom_cuda_resources res;
    double  compile_ms;         /* wall time of compile or cache load        */
    bool    cached;             /* loaded from the disk cache                */
    char    key[33];            /* cache key, 128-bit hex                    */
    char    arch[16];           /* "sm_90a"                                  */
} loom_cuda_cubin;

/* Compiles source (from loom_cuda_codegen) for arch ("sm_90a", "sm_80")
 * with NVRTC, or loads the cubin from the cache. cache_dir NULL = the
 * default ($LOOM_CACHE_DIR, else $XDG_CACHE_HOME/loom, else ~/.cache/loom);
 * "" disables the cache. On failure *out is untouched and the message holds
 * NVRTC's log. Free with loom_cuda_cubin_free. */
loom_status loom_cuda_compile(const char *source, const char *arch, const char *cache_dir,
                              loom_cuda_cubin *out);
/* The megakernel of p (traced when trace) generated and compiled for arch
 * through the default cache: what the runtime loads, and
 * `loom compile --emit-cubin` writes. */
loom_status loom_cuda_build(const loom_program *p, bool trace, const char *arch,
                            loom_cuda_cubin *out);
void loom_cuda_cubin_free(loom_cuda_cubin *c);

/* "sm_90a" for compute capability 9.0, "sm_80" for 8.0, ... */
void loom_cuda_arch_name(int major, int minor, char *buf, size_t len);

/* The task library (tasks/ *.cuh) as strings, for NVRTC (generated by
 * cmake/embed.cmake). */
extern const char *const loom_cuda_header_names[];
extern const char *const loom_cuda_header_texts[];
extern const int loom_cuda_n_headers;

#endif
