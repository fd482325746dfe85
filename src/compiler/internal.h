/* internal.h - helpers shared by src/graph and src/compiler only (not a
 * contract with the backends).
 *
 * defines: the partition policy (tile counts, attention split) the graph
 *          builder needs to size partial tensors, the compiler's passes,
 *          loom_compile_print_stats */
#ifndef LOOM_COMPILER_INTERNAL_H
#define LOOM_COMPILER_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>

#include "compiler/program.h"

/* KV splits per group of an ATTENTION op: params->attn_split when > 0, else
 * a split per 64 positions of max_context, at most n_sms / (n_kv * B) and
 * 16, 1 below 2; never more than max_context. */
int32_t loom_attn_split_choice(const loom_graph_params *params, int32_t n_kv_heads);

/* Where the partials of a `split`-way attention are merged: 0 for
 * split <= 1 (nothing to merge), else LOOM_MERGE_OP (an ATTN_MERGE op) or
 * LOOM_MERGE_ATTN (the attention: the last tile of each group to finish
 * merges it, program.h arrive): params->attn_merge, or when it is 0,
 * LOOM_ATTN_MERGE (experiments), else the attention. */
enum { LOOM_MERGE_OP = 1, LOOM_MERGE_ATTN = 2 };
int32_t loom_attn_merge_mode(const loom_graph_params *params, int32_t split);

/* Whether the graph fuses the MLP (graph.h mlp_fuse): params->mlp_fuse
 * when set, else (0) LOOM_MLP_FUSE (experiments: 1 or 2), else
 * LOOM_MLP_FUSE_DEFAULT; never when gate_up would have more than
 * LOOM_FIX_MAX_TILES tiles. */
bool loom_mlp_fused(const loom_graph_params *params, const loom_config *cfg);

/* Tiles of a LINEAR op of rows x cols BF16 weights with rows grouped in
 * units of `unit` rows (gate/up pairs: 2): n_sms tiles, more (a multiple of
 * n_sms) only when LOOM_TILE_MAX_KB (experiments) caps a tile's weights,
 * never more than rows / unit. */
int32_t loom_linear_tile_count(int64_t rows, int64_t cols, int32_t n_sms, int32_t unit);

/* Whether LINEAR op `op` runs on the SMs the ATTENTION op before it leaves
 * free: when that attention's tiles take at most a third of the SMs (each
 * tile an SM of its own), the op is cut into n_sms - (its tiles) tiles,
 * and the schedule places them by when their staged rows land
 * (loom_compile_params.stage_bytes) - on the SMs that wait through the
 * attention with nothing else to do, so every tile's rows are in shared
 * memory when its input comes, and none waits behind an attention tile on
 * its SM (docs/perf-notes.md v17). Needs the attention's n_tiles (set by the
 * partitioner in op order). LOOM_AFTER_ATTN_TILES=0 (experiments): never. */
bool loom_linear_after_attention(const loom_graph *g, int32_t op);

/* Tiles per KV-head group of the qkv op (tiles never straddle groups):
 * k * n_sms / n_kv (at least 1), k the smallest multiple keeping tiles
 * under the LOOM_TILE_MAX_KB cap (k = 1 without one). */
int32_t loom_qkv_tiles_per_group(const loom_config *cfg, int32_t n_sms);

/* Whether op's outputs are read only by the ACCUM op right after it (the
 * fused MLP's gate_up): its tile k by that op's tile k, on the same SM
 * after it (the schedule), so the op has no counter. */
bool loom_op_feeds_accum(const loom_graph *g, int32_t op);

/* For a task of an ACCUM op: the task whose outputs it reads with no
 * counter between them (gate_up's tile of the same index), which the
 * schedule puts before it on its SM; -1 for every other task. */
int32_t loom_task_local_input(const loom_program *p, int32_t task);

/* Number of positions the cost model assumes attention reads. */
int64_t loom_cost_context(const loom_graph *g);

/* Passes of loom_compile, in order. partition fills tasks (op order, then
 * tile), counters and waits, bytes and est_us; schedule fills the per-SM
 * lists and estimates. */
loom_status loom_partition(loom_program *p, const loom_compile_params *cp);
loom_status loom_schedule(loom_program *p, const loom_compile_params *cp);

/* Task statistics for `loom compile`: tasks per op kind, counters, bytes,
 * estimated step time and the bandwidth floor. */
void loom_compile_print_stats(const loom_program *p, FILE *f);

#endif
