/* progress.c - see progress.h. */
#include "core/progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 30

static void draw(const loom_progress *p, int pct)
{
    char bar[BAR_WIDTH + 1];
    int fill = pct * BAR_WIDTH / 100;

    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : ' ';
    bar[BAR_WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %3d%% %.1f/%.1f GB", p->label, bar, pct,
            (double)p->done / 1e9, (double)p->total / 1e9);
    fflush(stderr);
}

void loom_progress_begin(loom_progress *p, const char *label, uint64_t total, bool want)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->last_pct = -1;
    p->on = want && isatty(STDERR_FILENO);
    if (p->on)
        loom_progress_update(p, 0);
}

void loom_progress_update(loom_progress *p, uint64_t done)
{
    int pct;

    p->done = done > p->total ? p->total : done;
    if (!p->on)
        return;
    pct = p->total ? (int)(p->done * 100 / p->total) : 100;
    if (pct == p->last_pct)
        return;
    p->last_pct = pct;
    draw(p, pct);
}

void loom_progress_end(loom_progress *p)
{
    if (!p->on)
        return;
    loom_progress_update(p, p->total);
    fputc('\n', stderr);
    p->on = false;
}
