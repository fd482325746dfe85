/* progress.h - a one-line progress bar on stderr for long loads/saves:
 *
 *     loading [##########          ]  50% 1.2/2.4 GB
 *
 * Drawn only when enabled (params.progress) and stderr is a terminal, so logs
 * and pipes stay clean. Redraws at most once per whole percent.
 *
 * defines: loom_progress, loom_progress_begin/update/end */
#ifndef LOOM_CORE_PROGRESS_H
#define LOOM_CORE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct loom_progress {
    char     label[48];
    uint64_t total;      /* units (bytes) when done                      */
    uint64_t done;
    int      last_pct;   /* last percent drawn, -1 before the first draw */
    bool     on;         /* drawing at all                               */
} loom_progress;

/* Starts a bar; want = the caller's wish (params.progress). */
void loom_progress_begin(loom_progress *p, const char *label, uint64_t total, bool want);
/* Sets the amount done (absolute) and redraws if the percent moved. */
void loom_progress_update(loom_progress *p, uint64_t done);
/* Draws 100% and ends the line. */
void loom_progress_end(loom_progress *p);

#endif
