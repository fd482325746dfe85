/* xcheck.h - the LOOM_XCHECK debug mode of the CUDA backend (xcheck.c,
 * tasks/common.cuh): LOOM_CUDA_XCHECK=1 builds a kernel that records what
 * every task read and wrote in the first steps, and the run then checks that
 * each tile's inputs are what their producers wrote.
 *
 * defines: loom_xcheck, loom_cuda_xcheck_enabled, loom_cuda_xcheck_init,
 *          loom_cuda_xcheck_arm, loom_cuda_xcheck_report, loom_cuda_xcheck_free */
#ifndef LOOM_BACKEND_CUDA_XCHECK_H
#define LOOM_BACKEND_CUDA_XCHECK_H

#include <stdbool.h>

#include "backend/cuda/driver.h"
#include "compiler/program.h"

typedef struct loom_xcheck {
    CUdeviceptr var;            /* module global loom_xcheck                 */
    CUdeviceptr slots, ysum;    /* records (tasks/common.cuh)                */
    size_t      slot_bytes, ysum_bytes;
    int32_t     ysegs;
} loom_xcheck;

/* LOOM_CUDA_XCHECK=1 in the environment (read by codegen and runtime). */
bool loom_cuda_xcheck_enabled(void);
loom_status loom_cuda_xcheck_init(loom_xcheck *x, const loom_cu *cu, CUmodule mod,
                                  const loom_program *p);
/* Before each launch: zeroed records, the global pointed at them. */
loom_status loom_cuda_xcheck_arm(loom_xcheck *x, const loom_cu *cu, const loom_program *p);
/* After a run of n_run steps (buf: the tensors' buffers, page_table: sequence
 * 0's pages): LOOM_ERR_BACKEND when an invariant broke (the
 * tiles at fault are listed on stderr). */
loom_status loom_cuda_xcheck_report(const loom_xcheck *x, const loom_cu *cu,
                                    const loom_program *p, int32_t n_run,
                                    const CUdeviceptr *buf, const int32_t *page_table);
void loom_cuda_xcheck_free(loom_xcheck *x, const loom_cu *cu);

#endif
