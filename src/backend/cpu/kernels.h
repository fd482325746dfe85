/* kernels.h - the CPU reference kernels: one function per op kind, each
 * running one task (tile) of its op for one sequence b at one decode step,
 * exactly as graph.h writes the op's semantics.
 *
 * Storage is the graph's: bf16 weights, fp32 activations and accumulation,
 * bf16 KV cache (rounded to nearest even), I32 meta. Every kernel is
 * deterministic: its result depends on its inputs only, never on the thread
 * that runs it or on the order tasks run in. These kernels are what the GPU
 * tasks are compared against, so they stay plain.
 *
 * scratch arguments point at loom_cpu_scratch_floats(g) floats private to
 * the calling thread. Tensor ids come from the op (graph.h); the tile from
 * the task (program.h).
 *
 * defines: loom_cpu_bufs, loom_cpu_scratch_floats, loom_cpu_embed,
 *          loom_cpu_linear, loom_cpu_attention,
 *          loom_cpu_attn_merge, loom_cpu_argmax, loom_cpu_run_task,
 *          loom_cpu_kv_at */
#ifndef LOOM_BACKEND_CPU_KERNELS_H
#define LOOM_BACKEND_CPU_KERNELS_H

#include "compiler/program.h"

/* Storage of every graph tensor, indexed by tensor id: row-major
 * [rows, cols] elements of the tensor's graph dtype. */
typedef struct loom_cpu_bufs {
    const loom_graph *g;
    void *const *data;         /* g->n_tensors pointers                     */
} loom_cpu_bufs;

/* Floats of scratch one task needs (prologue vector; attention: its q heads,
 * k and scores). */
int64_t loom_cpu_scratch_floats(const loom_graph *g);

void loom_cpu_embed(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                    int32_t b, int32_t step);
void loom_cpu_linear(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                     int32_t b, int32_t step, float *scratch);
void loom_cpu_attention(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                        int32_t b, int32_t step, float *scratch);
void loom_cpu_attn_merge(const loom_cpu_bufs *m, const loom_op *op, const loom_task *t,
                         int32_t b, int32_t step);
/* Returns the token; writes tokens[b, step + 1] when step + 1 >= n_prompt. */
int32_t loom_cpu_argmax(const loom_cpu_bufs *m, const loom_op *op, int32_t b,
                        int32_t step, int32_t n_prompt);

/* Runs task `task` of p for every sequence of the batch at `step`. For the
 * ARGMAX task, *token gets sequence 0's token (else it is left alone). */
void loom_cpu_run_task(const loom_program *p, const loom_cpu_bufs *m, int32_t task,
                       int32_t step, int32_t n_prompt, float *scratch, int32_t *token);

/* The merge of task `task`'s group (an ATTENTION that merges itself: the
 * last of the group's tiles to arrive runs it) for every sequence. */
void loom_cpu_run_merge(const loom_program *p, const loom_cpu_bufs *m, int32_t task,
                        int32_t step);

/* Address of KV position pos of sequence b, KV head h (head_dim bf16). */
uint16_t *loom_cpu_kv_at(const loom_cpu_bufs *m, int32_t cache, int32_t b, int32_t pos,
                         int32_t h);

#endif
