/* backend.h - what a backend (CPU threads, CUDA megakernel) implements.
 *
 * A backend takes a verified loom_program, owns its device state (weights in
 * its packed layout, activations, KV cache, counters) and runs decode steps.
 *
 * defines: loom_backend_vtable, loom_run_request, loom_run_result,
 *          loom_cpu_backend, loom_cuda_backend */
#ifndef LOOM_BACKEND_H
#define LOOM_BACKEND_H

#include "compiler/program.h"

/* Timeline recording (loom trace): per traced step and task,
 * LOOM_TRACE_STAMPS 64-bit timestamps in ns, [wait begin, run begin, end,
 * signalled] (end: before the release signal; signalled: right after it),
 * of one clock (CUDA: %globaltimer, CPU: CLOCK_MONOTONIC); 0 = not run.
 * Steps first_step .. first_step + steps - 1 are recorded, later ones are
 * not (the buffer, steps * n_tasks * LOOM_TRACE_STAMPS u64, cannot
 * overflow). Caller-owned and zeroed. */
#define LOOM_TRACE_STAMPS 4

typedef struct loom_trace_rec {
    uint64_t *t;                    /* [steps][n_tasks][LOOM_TRACE_STAMPS]      */
    int32_t   first_step;
    int32_t   steps;
    uint32_t *flags;                /* [n_tasks], zeroed, or NULL: what the
                                       backend's tasks do beyond the stamps'
                                       order (LOOM_TRACE_POLLED, _EARLY)        */
} loom_trace_rec;

/* loom_trace_rec.flags of a task: it does not wait on the counter of its
 * wait w but polls that input inside its run (CUDA LL words), so its run
 * may begin before the producer ends; it signals inside its run, before its
 * end stamp (CUDA argmax: the next step's embed may run before that end). */
#define LOOM_TRACE_POLLED(w) (1u << (w))
#define LOOM_TRACE_EARLY (1u << 16)

typedef struct loom_run_request {
    const int32_t *prompt;          /* n_prompt >= 1 token ids, all < vocab     */
    int32_t        n_prompt;
    int32_t        n_steps;         /* steps to run, n_prompt <= n_steps <= max_context */
    int32_t        eos[LOOM_MAX_EOS]; /* stop once a generated token is one of   */
    int32_t        n_eos;
    loom_token_callback on_token;   /* each generated token as it comes         */
    void          *user;
    int32_t       *out_tokens;      /* generated tokens; capacity n_steps - n_prompt + 1 */
    float         *logits_out;      /* [n_steps, vocab] or NULL; needs the graph
                                       built with record_logits                */
    loom_trace_rec *trace;          /* NULL: no timeline recorded               */
} loom_run_request;

typedef struct loom_run_result {
    int32_t n_steps_run;            /* steps actually run                       */
    int32_t n_generated;            /* tokens written to out_tokens             */
    double  total_ms;               /* wall time of the run                     */
    double  ms_per_step;            /* steady state: mean interval between the
                                       generated tokens (steps n_prompt - 1 ..
                                       n_steps_run - 1; the prompt's steps,
                                       shorter in context, do not count), or
                                       between all steps when fewer than two
                                       tokens were generated                    */
} loom_run_result;

typedef struct loom_backend_vtable {
    const char *name;
    /* Prepares everything for prog (borrowed for the backend's lifetime). */
    loom_status (*create)(const loom_program *prog, const loom_engine_params *params,
                          void **state);
    loom_status (*run)(void *state, const loom_run_request *req, loom_run_result *res);
    /* Copies graph tensor `tensor` as it stands after the last run (its graph
     * dtype, loom_gtensor_numel elements) into dst: used by the tests that
     * compare backends op by op. KV tensors are copied in logical order
     * [max_context, n_kv_heads, head_dim] of sequence 0. */
    loom_status (*read_tensor)(void *state, int32_t tensor, void *dst);
    void (*destroy)(void *state);
} loom_backend_vtable;

extern const loom_backend_vtable loom_cpu_backend;
extern const loom_backend_vtable loom_cuda_backend;

/* CUDA: the number of SMs of device 0, or an error (LOOM_ERR_NO_DEVICE when
 * there is no driver or GPU). Used to size the schedule before compiling. */
loom_status loom_cuda_device_sms(int32_t *n_sms, char *device_name, size_t name_len);

#endif
