/* svg.c - a trace drawn as an SVG timeline, by loom itself (no viewer
 * needed): one row per SM (a <g class="sm-row">), each task a rectangle in
 * its op's colour (hover: name, step, us), its wait before it hatched grey,
 * idle time left white; a dashed marker per decode step; a time axis in us
 * and a legend of the ops. Readable at 132 SMs: 1600 px wide, rows of 4-16
 * px.
 *
 * defines: loom_trace_write_svg */
#include <errno.h>
#include <math.h>
#include <stdio.h>
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
                if (loom_trace_at(t, s, i, LOOM_TR_END) > *t1)
                    *t1 = loom_trace_at(t, s, i, LOOM_TR_END);
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
    uint64_t e = loom_trace_at(t, s, i, LOOM_TR_END);
    double xw = xpos(v, w), xb = xpos(v, b), xe = xpos(v, e);

    if (xb - xw >= 0.05)
        fprintf(v->f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                "fill=\"url(#wait)\"/>\n", xw, y, xb - xw, v->row_h - 1);
    fprintf(v->f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\">"
            "<title>%s step %d: run %.2f us, waited %.2f us</title></rect>\n", xb, y,
            xe - xb > 0.1 ? xe - xb : 0.1, v->row_h - 1, op_color(t->ops[tt->op].name),
            tt->name, t->first_step + s, (double)(e - b) / 1e3, (double)(b - w) / 1e3);
}

static void draw_rows(const view *v, const loom_trace *t)
{
    int32_t label_every = v->row_h >= 10 ? 1 : (int32_t)ceil(10.0 / v->row_h);

    for (int32_t sm = 0; sm < t->n_sms; sm++) {
        double y = TOP + sm * v->row_h;
        fprintf(v->f, "<g class=\"sm-row\" data-sm=\"%d\">\n", sm);
        if (sm % label_every == 0)
            fprintf(v->f, "<text x=\"%.1f\" y=\"%.2f\" font-size=\"%.0f\" text-anchor=\"end\">"
                    "SM %d</text>\n", LEFT - 4, y + v->row_h - 1,
                    v->row_h < 10 ? 9.0 : v->row_h - 2, sm);
        for (int32_t s = 0; s < t->n_steps; s++)
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
        if (first == UINT64_MAX)
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

/* The op types present, in op order, then wait and idle. */
static void draw_legend(const view *v, const loom_trace *t, double y)
{
    const char *seen[MAX_TYPES];
    int32_t n = 0;
    double x = LEFT;

    for (int32_t o = 0; o < t->n_ops && n < MAX_TYPES; o++) {
        bool dup = false;
        for (int32_t k = 0; k < n; k++)
            dup = dup || !strcmp(seen[k], t->ops[o].name);
        if (!dup)
            seen[n++] = t->ops[o].name;
    }
    for (int32_t k = 0; k <= n + 1; k++) {
        const char *name = k < n ? seen[k] : k == n ? "wait" : "idle";
        const char *fill = k < n ? op_color(seen[k]) : k == n ? "url(#wait)" : "#fff";
        fprintf(v->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\" "
                "stroke=\"#444\" stroke-width=\"0.5\"/><text x=\"%.1f\" y=\"%.1f\" "
                "font-size=\"12\">%s</text>\n", x, y, fill, x + 16, y + 10, name);
        x += 24 + 7.5 * (double)strlen(name);
    }
}

static void draw(const view *v, const loom_trace *t, double height)
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
    draw_legend(v, t, rows_bottom + AXIS + 8);
    fputs("</svg>\n", v->f);
}

loom_status loom_trace_write_svg(const loom_trace *t, const char *path, int32_t width)
{
    char tmp[4096];
    view v;
    double height;
    int err;

    if (!t || !path)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "svg: NULL trace or path");
    v.width = width > 0 ? width : 1600;
    if (v.width < LEFT + RIGHT + 100)
        return loom_fail(LOOM_ERR_INVALID_ARGUMENT, "svg: width %d px is too small", width);
    v.plot_w = v.width - LEFT - RIGHT;
    v.row_h = 720.0 / t->n_sms;
    v.row_h = v.row_h < 4 ? 4 : v.row_h > 16 ? 16 : v.row_h;
    time_range(t, &v.t0, &v.t1);
    height = TOP + t->n_sms * v.row_h + AXIS + 8 + LEGEND_ROW + 8;

    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    v.f = fopen(tmp, "w");
    if (!v.f)
        return loom_fail(LOOM_ERR_IO, "%s: cannot write the SVG: %s", tmp, strerror(errno));
    draw(&v, t, height);
    err = ferror(v.f);
    if (fclose(v.f) != 0 || err || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return loom_fail(LOOM_ERR_IO, "%s: cannot write the SVG: %s", path, strerror(e));
    }
    return LOOM_OK;
}
