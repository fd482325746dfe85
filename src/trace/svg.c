/* svg.c - a trace drawn as an SVG timeline, by loom itself (no viewer
 * needed): one row per SM (a <g class="sm-row">), each task a rectangle in
 * its op's colour (hover: name, step, us), its wait before it hatched grey,
 * its release after it (end to signalled: the signal's barrier and fence)
 * dark grey, idle time left white; a dashed marker per decode step; a time
 * axis in us and a legend of the ops. Readable at 132 SMs: 1600 px wide,
 * rows of 4-16 px.
 *
 * Small traces draw every task (with a tooltip). Large ones (a real model:
 * ~20000 tasks a step) are drawn at the picture's resolution, so that the
 * file stays a few MB: each row is cut into bins of half a pixel, each bin
 * takes the colour of the op that runs most of it (else release, wait, or
 * idle; short tasks are not hidden by long waits: see bin_winner), and the
 * runs of one colour become one <path> per row.
 *
 * A window (from, to in us after the trace's first stamp) zooms in: tasks are
 * clipped to it, and with few enough in it every one is drawn.
 *
 * defines: loom_trace_write_svg, loom_trace_write_svg_mode,
 *          loom_trace_write_svg_window */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "trace/trace.h"

#define LEFT 64.0          /* SM labels                                       */
#define RIGHT 16.0
#define TOP 48.0           /* title and step labels                          */
#define AXIS 36.0          /* time axis below the rows                       */
#define LEGEND_ROW 20.0
#define MAX_TYPES 16
#define BIN_PX 0.5
#define DETAIL_MAX 4000    /* task instances drawn one by one at most        */
#define RELEASE_COLOR "#262626"   /* no op colour is this dark              */

/* Colours of the op types, by op name; anything else: grey. */
static const struct {
    const char *name, *color;
} k_colors[] = {
    {"embed", "#8c564b"},   {"qkv", "#1f77b4"},    {"rope_kv", "#17becf"},
    {"attn", "#d62728"},    {"attn_merge", "#ff9896"}, {"o_proj", "#2ca02c"},
    {"gate_up", "#ff7f0e"}, {"down", "#9467bd"},   {"lm_head", "#e377c2"},
    {"argmax", "#7f7f7f"},
};

static const char *op_color(const char *name)
{
    for (size_t i = 0; i < sizeof k_colors / sizeof k_colors[0]; i++)
        if (!strcmp(k_colors[i].name, name))
            return k_colors[i].color;
    return "#bcbd22";
}

typedef struct view {
    FILE    *f;
    uint64_t t0, t1;        /* time range drawn (ns)                         */
    double   width, plot_w, row_h;
    bool     detail;        /* every task a rectangle (else binned)          */
    int32_t  n_types;       /* op types (by name); category n_types = wait,
                               n_types + 1 = release                         */
    const char *types[MAX_TYPES];
    int32_t *op_type;       /* [n_ops]                                       */
    float   *cov;           /* binned: [n_bins][n_types + 2] coverage        */
    int8_t  *win;           /* binned: [n_bins] category shown, -1 idle      */
    int32_t  n_bins;
} view;

static double xpos(const view *v, uint64_t ns)
{
    return LEFT + (double)(ns - v->t0) / (double)(v->t1 - v->t0) * v->plot_w;
}

static void time_range(const loom_trace *t, uint64_t *t0, uint64_t *t1)
{
    *t0 = UINT64_MAX;
    *t1 = 0;
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i)) {
                if (loom_trace_at(t, s, i, LOOM_TR_WAIT) < *t0)
                    *t0 = loom_trace_at(t, s, i, LOOM_TR_WAIT);
                if (loom_trace_at(t, s, i, LOOM_TR_SIGNAL) > *t1)
                    *t1 = loom_trace_at(t, s, i, LOOM_TR_SIGNAL);
            }
    if (*t0 == UINT64_MAX)
        *t0 = 0;
    if (*t1 <= *t0)
        *t1 = *t0 + 1000;
}

static void draw_task(const view *v, const loom_trace *t, int32_t s, int32_t i, double y)
{
    const loom_trace_task *tt = &t->tasks[i];
    uint64_t w = loom_trace_at(t, s, i, LOOM_TR_WAIT), b = loom_trace_at(t, s, i, LOOM_TR_RUN);
    uint64_t e = loom_trace_at(t, s, i, LOOM_TR_END), g = loom_trace_at(t, s, i, LOOM_TR_SIGNAL);
    double run_us = (double)(e - b) / 1e3, wait_us = (double)(b - w) / 1e3;
    double release_us = (double)(g - e) / 1e3;

    if (g <= v->t0 || w >= v->t1)   /* outside the window */
        return;
    w = w < v->t0 ? v->t0 : w > v->t1 ? v->t1 : w;
    b = b < v->t0 ? v->t0 : b > v->t1 ? v->t1 : b;
    e = e < v->t0 ? v->t0 : e > v->t1 ? v->t1 : e;
    g = g > v->t1 ? v->t1 : g;
    double xw = xpos(v, w), xb = xpos(v, b), xe = xpos(v, e), xg = xpos(v, g);

    if (xb - xw >= 0.05)
        fprintf(v->f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                "fill=\"url(#wait)\"/>\n", xw, y, xb - xw, v->row_h - 1);
    if (e > v->t0)   /* the run, unless the window begins during the release */
        fprintf(v->f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                "fill=\"%s\"><title>%s step %d: run %.2f us, waited %.2f us, release %.2f us"
                "</title></rect>\n", xb, y, xe - xb > 0.1 ? xe - xb : 0.1, v->row_h - 1,
                op_color(v->types[v->op_type[tt->op]]), tt->name, t->first_step + s, run_us,
                wait_us, release_us);
    if (xg - xe >= 0.05)
        fprintf(v->f, "<rect class=\"release\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                "height=\"%.2f\" fill=\"" RELEASE_COLOR "\"/>\n", xe, y, xg - xe, v->row_h - 1);
}

/* Adds the part of [b, e) (ns) that falls in each bin to category c. */
static void cover(view *v, int32_t c, uint64_t b, uint64_t e)
{
    if (e <= v->t0 || b >= v->t1)   /* outside the window */
        return;
    b = b < v->t0 ? v->t0 : b;
    e = e > v->t1 ? v->t1 : e;
    double scale = (double)v->n_bins / (double)(v->t1 - v->t0);
    double p0 = (double)(b - v->t0) * scale, p1 = (double)(e - v->t0) * scale;
    int32_t nc = v->n_types + 2;

    for (int32_t k = (int32_t)p0; k < v->n_bins && k < p1; k++) {
        double lo = p0 > k ? p0 : k, hi = p1 < k + 1 ? p1 : k + 1;
        if (hi > lo)
            v->cov[(size_t)k * (size_t)nc + (size_t)c] += (float)(hi - lo);
    }
}

/* The colour of category c of a binned row: an op, wait or release. */
static const char *category_fill(const view *v, int32_t c)
{
    return c < v->n_types ? op_color(v->types[c]) : c == v->n_types ? "url(#wait)"
                                                                    : RELEASE_COLOR;
}

/* The category a bin of coverage c shows (-1 idle). Work first: the op
 * running most of the bin if it covers a tenth of it (short tasks between
 * long waits stay visible); then the release the same way, if it covers no
 * less than the wait (a long release is what the picture is for; a short
 * one is not drawn over a longer wait); else wait if the bin is mostly
 * covered, else idle. */
static int8_t bin_winner(const view *v, const float *c)
{
    float wait = c[v->n_types], rel = c[v->n_types + 1], sum = wait + rel, best = 0;
    int8_t win = -1;

    for (int32_t j = 0; j < v->n_types; j++) {
        sum += c[j];
        if (c[j] > best) {
            best = c[j];
            win = (int8_t)j;
        }
    }
    if (best >= 0.1f)
        return win;
    if (rel >= 0.1f && rel >= wait)
        return (int8_t)(v->n_types + 1);
    return sum >= 0.5f ? (int8_t)v->n_types : -1;
}

/* One row at the picture's resolution: a <path> per colour. */
static void draw_row_binned(view *v, const loom_trace *t, int32_t sm, double y)
{
    int32_t nc = v->n_types + 2;

    memset(v->cov, 0, sizeof *v->cov * (size_t)v->n_bins * (size_t)nc);
    for (int32_t s = 0; s < t->n_steps; s++)
        for (int32_t k = t->sm_offset[sm]; k < t->sm_offset[sm + 1]; k++) {
            int32_t i = t->sm_tasks[k];
            if (!loom_trace_ran(t, s, i))
                continue;
            cover(v, v->n_types, loom_trace_at(t, s, i, LOOM_TR_WAIT),
                  loom_trace_at(t, s, i, LOOM_TR_RUN));
            cover(v, v->op_type[t->tasks[i].op], loom_trace_at(t, s, i, LOOM_TR_RUN),
                  loom_trace_at(t, s, i, LOOM_TR_END));
            cover(v, v->n_types + 1, loom_trace_at(t, s, i, LOOM_TR_END),
                  loom_trace_at(t, s, i, LOOM_TR_SIGNAL));
        }
    for (int32_t k = 0; k < v->n_bins; k++)
        v->win[k] = bin_winner(v, v->cov + (size_t)k * (size_t)nc);
    for (int32_t j = 0; j < nc; j++) {
        bool open = false;
        for (int32_t k = 0; k < v->n_bins; k++) {
            if (v->win[k] != j)
                continue;
            int32_t e = k;
            while (e < v->n_bins && v->win[e] == j)
                e++;
            if (!open)
                fprintf(v->f, "<path fill=\"%s\" d=\"", category_fill(v, j));
            open = true;
            fprintf(v->f, "M%.1f %.2fh%.1fv%.2fh-%.1fz", LEFT + k * BIN_PX, y,
                    (e - k) * BIN_PX, v->row_h - 1, (e - k) * BIN_PX);
            k = e - 1;
        }
        if (open)
            fputs("\"/>\n", v->f);
    }
}

static void draw_rows(view *v, const loom_trace *t)
{
    int32_t label_every = v->row_h >= 10 ? 1 : (int32_t)ceil(10.0 / v->row_h);

    for (int32_t sm = 0; sm < t->n_sms; sm++) {
        double y = TOP + sm * v->row_h;
        fprintf(v->f, "<g class=\"sm-row\" data-sm=\"%d\">\n", sm);
        if (sm % label_every == 0)
            fprintf(v->f, "<text x=\"%.1f\" y=\"%.2f\" font-size=\"%.0f\" text-anchor=\"end\">"
                    "SM %d</text>\n", LEFT - 4, y + v->row_h - 1,
                    v->row_h < 10 ? 9.0 : v->row_h - 2, sm);
        if (!v->detail)
            draw_row_binned(v, t, sm, y);
        for (int32_t s = 0; v->detail && s < t->n_steps; s++)
            for (int32_t k = t->sm_offset[sm]; k < t->sm_offset[sm + 1]; k++)
                if (loom_trace_ran(t, s, t->sm_tasks[k]))
                    draw_task(v, t, s, t->sm_tasks[k], y);
        fputs("</g>\n", v->f);
    }
}

/* A dashed line and a label at the first stamp of each step. */
static void draw_steps(const view *v, const loom_trace *t, double bottom)
{
    for (int32_t s = 0; s < t->n_steps; s++) {
        uint64_t first = UINT64_MAX;
        for (int32_t i = 0; i < t->n_tasks; i++)
            if (loom_trace_ran(t, s, i) && loom_trace_at(t, s, i, LOOM_TR_WAIT) < first)
                first = loom_trace_at(t, s, i, LOOM_TR_WAIT);
        if (first == UINT64_MAX || first < v->t0 || first > v->t1)
            continue;
        double x = xpos(v, first);
        fprintf(v->f, "<line class=\"step\" x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" "
                "stroke=\"#000\" stroke-dasharray=\"4,3\" stroke-width=\"1\"/>\n"
                "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\">step %d</text>\n", x, TOP - 14,
                x, bottom, x + 3, TOP - 4, t->first_step + s);
    }
}

/* Ticks every 1, 2 or 5 x 10^k us, about 10 of them. */
static void draw_axis(const view *v, double y)
{
    double span_us = (double)(v->t1 - v->t0) / 1e3, step = pow(10, floor(log10(span_us / 10)));

    if (span_us / step > 25)
        step *= 5;
    else if (span_us / step > 12)
        step *= 2;
    fprintf(v->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>\n",
            LEFT, y, LEFT + v->plot_w, y);
    for (double u = 0; u <= span_us + 1e-9; u += step) {
        double x = LEFT + u / span_us * v->plot_w;
        fprintf(v->f, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#000\"/>"
                "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                x, y, x, y + 5, x, y + 17, u);
    }
    fprintf(v->f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">time (us)"
            "</text>\n", LEFT + v->plot_w, y + 31);
}

/* The op types present, in op order, then wait, release and idle. */
static void draw_legend(const view *v, double y)
{
    static const char *const extra[] = {"wait", "release", "idle"};
    double x = LEFT;

    for (int32_t k = 0; k <= v->n_types + 2; k++) {
        const char *name = k < v->n_types ? v->types[k] : extra[k - v->n_types];
        const char *fill = k <= v->n_types + 1 ? category_fill(v, k) : "#fff";
        fprintf(v->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\" "
                "stroke=\"#444\" stroke-width=\"0.5\"/><text x=\"%.1f\" y=\"%.1f\" "
                "font-size=\"12\">%s</text>\n", x, y, fill, x + 16, y + 10, name);
        x += 24 + 7.5 * (double)strlen(name);
    }
}

/* Op types by name, in op order (more than MAX_TYPES: lumped into the last). */
static void op_types(view *v, const loom_trace *t)
{
    v->n_types = 0;
    for (int32_t o = 0; o < t->n_ops; o++) {
        int32_t k = 0;
        while (k < v->n_types && strcmp(v->types[k], t->ops[o].name))
            k++;
        if (k == v->n_types && v->n_types < MAX_TYPES)
            v->types[v->n_types++] = t->ops[o].name;
        v->op_type[o] = k < v->n_types ? k : v->n_types - 1;
    }
}

static void draw(view *v, const loom_trace *t, double height)
{
    double rows_bottom = TOP + t->n_sms * v->row_h;

    fprintf(v->f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n", v->width, height,
            v->width, height);
    fputs("<defs><pattern id=\"wait\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" "
          "patternTransform=\"rotate(45)\"><rect width=\"4\" height=\"4\" fill=\"#e4e4e4\"/>"
          "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"4\" stroke=\"#a8a8a8\" stroke-width=\"1.5\"/>"
          "</pattern></defs>\n", v->f);
    fprintf(v->f, "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n"
            "<text x=\"%.1f\" y=\"16\" font-size=\"14\">loom megakernel timeline: %s, %d SMs, "
            "%d tasks, steps %d-%d of %d, %.1f us</text>\n", LEFT, t->backend, t->n_sms,
            t->n_tasks, t->first_step, t->first_step + t->n_steps - 1, t->steps_run,
            (double)(v->t1 - v->t0) / 1e3);
    draw_rows(v, t);
    draw_steps(v, t, rows_bottom);
    draw_axis(v, rows_bottom + 4);
    draw_legend(v, rows_bottom + AXIS + 8);
    fputs("</svg>\n", v->f);
}

loom_status loom_trace_write_svg(const loom_trace *t, const char *path, int32_t width)
{
    return loom_trace_write_svg_window(t, path, width, -1, 0, 0);
}

loom_status loom_trace_write_svg_mode(const loom_trace *t, const char *path, int32_t width,
                                      int detail)
{
    return loom_trace_write_svg_window(t, path, width, detail, 0, 0);
}

loom_status loom_trace_write_svg_window(const loom_trace *t, const char *path, int32_t width,
                                        int detail, double from_us, double to_us)
{
    char tmp[4096];
    view v;
    loom_status st = LOOM_OK;
    int64_t instances = 0;
    double height;
    int err;

    if (!t || !path)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "svg: NULL trace or path");
    memset(&v, 0, sizeof v);
    v.width = width > 0 ? width : 1600;
    if (v.width < LEFT + RIGHT + 100)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "svg: width %d px is too small", width);
    v.plot_w = v.width - LEFT - RIGHT;
    v.row_h = 720.0 / t->n_sms;
    v.row_h = v.row_h < 4 ? 4 : v.row_h > 16 ? 16 : v.row_h;
    time_range(t, &v.t0, &v.t1);
    if (from_us < 0 || (to_us > 0 && to_us <= from_us) ||
        from_us * 1e3 >= (double)(v.t1 - v.t0))
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT,
                         "svg: window %g..%g us outside the trace's %.1f us", from_us, to_us,
                         (double)(v.t1 - v.t0) / 1e3);
    if (to_us > 0 && to_us * 1e3 < (double)(v.t1 - v.t0))
        v.t1 = v.t0 + (uint64_t)(to_us * 1e3);
    v.t0 += (uint64_t)(from_us * 1e3);
    for (int32_t s = 0; s < t->n_steps; s++)   /* task instances in the window */
        for (int32_t i = 0; i < t->n_tasks; i++)
            instances += loom_trace_ran(t, s, i) &&
                         loom_trace_at(t, s, i, LOOM_TR_SIGNAL) > v.t0 &&
                         loom_trace_at(t, s, i, LOOM_TR_WAIT) < v.t1;
    v.detail = detail >= 0 ? detail != 0 : instances <= DETAIL_MAX;
    v.n_bins = (int32_t)(v.plot_w / BIN_PX);
    v.op_type = calloc((size_t)t->n_ops + 1, sizeof *v.op_type);
    v.cov = calloc((size_t)v.n_bins * (MAX_TYPES + 2), sizeof *v.cov);
    v.win = calloc((size_t)v.n_bins, sizeof *v.win);
    if (!v.op_type || !v.cov || !v.win) {
        st = loom_fail(LOOM_ERR_OUT_OF_MEMORY, "svg: %d bins", v.n_bins);
        goto out;
    }
    op_types(&v, t);
    height = TOP + t->n_sms * v.row_h + AXIS + 8 + LEGEND_ROW + 8;

    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    v.f = fopen(tmp, "w");
    if (!v.f) {
        st = loom_fail(LOOM_ERR_IO, "%s: cannot write the SVG: %s", tmp, strerror(errno));
        goto out;
    }
    draw(&v, t, height);
    err = ferror(v.f);
    if (fclose(v.f) != 0 || err || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        st = loom_fail(LOOM_ERR_IO, "%s: cannot write the SVG: %s", path, strerror(e));
    }
out:
    free(v.op_type);
    free(v.cov);
    free(v.win);
    return st;
}
