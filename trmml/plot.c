/* plot.c — charts and labelled panels with cairo (trmml/plot.h).
 *
 * A chart is laid out from the outside in: the title on top, the y label (rotated) and the y
 * tick numbers on the left, the x tick numbers and the x label below, the legend at the right
 * when it goes outside; what is left is the plot area, where data coordinates map linearly to
 * pixels. Ticks are evenly spaced at 1, 2 or 5 times a power of ten, and the axis range is
 * widened to whole ticks. */
#include "trmml/plot.h"

#include <cairo/cairo.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trmml/run.h"

#define FONT "DejaVu Sans"
static const unsigned PALETTE[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0x9467bd, 0xff7f0e, 0x8c564b};
#define NPALETTE ((int)(sizeof PALETTE / sizeof PALETTE[0]))
#define STAGE_COLOUR 0x7f7f7f

static void colour(cairo_t *cr, unsigned rgb) {
    cairo_set_source_rgb(cr, (rgb >> 16 & 255) / 255.0, (rgb >> 8 & 255) / 255.0,
                         (rgb & 255) / 255.0);
}

static void font(cairo_t *cr, double size, bool bold) {
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static double text_width(cairo_t *cr, const char *s) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

/* s with its anchor at (x, y): ax 0 = left, 0.5 = centre, 1 = right; y is the vertical centre
 * of the font's capitals. */
static void text(cairo_t *cr, double x, double y, double ax, const char *s) {
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    cairo_move_to(cr, x - ax * text_width(cr, s), y + 0.35 * fe.ascent);
    cairo_show_text(cr, s);
}

/* cairo draws text with any font fontconfig offers, and with none it draws nothing: refuse a
 * plot without labels. */
static Status font_check(cairo_t *cr) {
    font(cr, 12, false);
    if (text_width(cr, "0") > 0) return STATUS_OK;
    return error_set(STATUS_ERR_IO, "plot: no font found for the labels (fontconfig offers none); "
                     "HINT: install fonts-dejavu-core (scripts/install-deps.sh)");
}

/* ---- validation ---------------------------------------------------------------------------- */

static Status check_chart(const PlotChart *c, int index) {
    if (!c->title || !c->xlabel || !c->ylabel)
        return error_set(STATUS_ERR_USAGE, "plot: chart %d lacks a title or an axis label", index);
    if (c->nseries < 0 || c->nhlines < 0 || c->nvlines < 0 || c->nxticks < 0 ||
        (c->nseries && !c->series) || (c->nhlines && !c->hlines) || (c->nvlines && !c->vlines) ||
        (c->nxticks && !c->xticks))
        return error_set(STATUS_ERR_USAGE, "plot: chart '%s': a count without its array",
                         c->title);
    for (int s = 0; s < c->nseries; s++) {
        const PlotSeries *p = &c->series[s];
        if (p->n < 0 || (p->n && (!p->x || !p->y)) || !p->label)
            return error_set(STATUS_ERR_USAGE, "plot: chart '%s': series %d has %d points "
                             "without x, y or a label", c->title, s, p->n);
        for (int i = 0; i < p->n; i++)
            if (!isfinite(p->x[i]))
                return error_set(STATUS_ERR_USAGE, "plot: chart '%s': series '%s' point %d: x "
                                 "is %g", c->title, p->label, i, p->x[i]);
    }
    for (int i = 0; i < c->nhlines; i++)
        if (!isfinite(c->hlines[i].y) || !c->hlines[i].label)
            return error_set(STATUS_ERR_USAGE, "plot: chart '%s': reference line %d: y %g",
                             c->title, i, c->hlines[i].y);
    for (int i = 0; i < c->nvlines; i++)
        if (!isfinite(c->vlines[i]) || !c->vline_label)
            return error_set(STATUS_ERR_USAGE, "plot: chart '%s': marker %d at x %g (or no "
                             "label)", c->title, i, c->vlines[i]);
    for (int i = 0; i < c->nxticks; i++)
        if (!isfinite(c->xticks[i]))
            return error_set(STATUS_ERR_USAGE, "plot: chart '%s': x tick %d is %g", c->title, i,
                             c->xticks[i]);
    return STATUS_OK;
}

/* ---- axes ---------------------------------------------------------------------------------- */

typedef struct {
    double lo, hi, step; /* range, widened to whole steps; tick spacing */
} Axis;

/* An axis over [lo, hi] (lo > hi: no data) with about `target` ticks. */
static Axis axis_make(double lo, double hi, int target, bool integer) {
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * fmax(1, fabs(lo))) {
        const double pad = lo != 0 ? 0.05 * fabs(lo) : 0.5;
        lo -= pad, hi += pad;
    }
    const double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    Axis a = {.step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag};
    if (integer && a.step < 1) a.step = 1;
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    return a;
}

/* Digits after the point that show a tick spacing of `step`. */
static int tick_decimals(double step) {
    return step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
}

static void range_of(const PlotChart *c, double *xlo, double *xhi, double *ylo, double *yhi) {
    *xlo = *ylo = INFINITY, *xhi = *yhi = -INFINITY;
    for (int s = 0; s < c->nseries; s++)
        for (int i = 0; i < c->series[s].n; i++) {
            const PlotSeries *p = &c->series[s];
            *xlo = fmin(*xlo, p->x[i]), *xhi = fmax(*xhi, p->x[i]);
            if (!isfinite(p->y[i])) continue;
            const double e = p->err && isfinite(p->err[i]) ? fabs(p->err[i]) : 0;
            *ylo = fmin(*ylo, p->y[i] - e), *yhi = fmax(*yhi, p->y[i] + e);
        }
    for (int i = 0; i < c->nhlines; i++)
        *ylo = fmin(*ylo, c->hlines[i].y), *yhi = fmax(*yhi, c->hlines[i].y);
    for (int i = 0; i < c->nvlines; i++)
        *xlo = fmin(*xlo, c->vlines[i]), *xhi = fmax(*xhi, c->vlines[i]);
    for (int i = 0; i < c->nxticks; i++)
        *xlo = fmin(*xlo, c->xticks[i]), *xhi = fmax(*xhi, c->xticks[i]);
}

/* The plot area in pixels and the data range it shows. */
typedef struct {
    double left, top, right, bottom;
    Axis x, y;
    double xmin, xmax, ymin, ymax; /* the ranges, padded by 3 % so nothing sits on the frame */
} Frame;

static double px_x(const Frame *f, double v) {
    return f->left + (v - f->xmin) / (f->xmax - f->xmin) * (f->right - f->left);
}
static double px_y(const Frame *f, double v) {
    return f->bottom - (v - f->ymin) / (f->ymax - f->ymin) * (f->bottom - f->top);
}

static void x_tick_label(const PlotChart *c, const Axis *a, double v, char *buf, size_t cap) {
    if (c->xtick_format) snprintf(buf, cap, c->xtick_format, v);
    else snprintf(buf, cap, "%.*f", tick_decimals(a->step), v);
}

/* The x tick values: the chart's own, or every step of the axis. */
static int x_ticks(const PlotChart *c, const Axis *a, double *out, int cap) {
    if (c->nxticks) {
        int n = c->nxticks < cap ? c->nxticks : cap;
        memcpy(out, c->xticks, (size_t)n * sizeof *out);
        return n;
    }
    int n = 0;
    for (long k = lround(a->lo / a->step); k * a->step <= a->hi + 1e-9 * a->step && n < cap; k++)
        out[n++] = k * a->step;
    return n;
}

/* ---- legend -------------------------------------------------------------------------------- */

typedef enum { LEGEND_SERIES, LEGEND_HLINE, LEGEND_VLINE } LegendKind;

static int legend_entries(const PlotChart *c) {
    return c->nseries + c->nhlines + (c->nvlines ? 1 : 0);
}

static const char *legend_label(const PlotChart *c, int i, LegendKind *kind, unsigned *rgb) {
    if (i < c->nseries) {
        *kind = LEGEND_SERIES;
        *rgb = c->series[i].colour ? c->series[i].colour : PALETTE[i % NPALETTE];
        return c->series[i].label;
    }
    i -= c->nseries;
    if (i < c->nhlines) {
        *kind = LEGEND_HLINE;
        *rgb = c->hlines[i].colour;
        return c->hlines[i].label;
    }
    *kind = LEGEND_VLINE;
    *rgb = STAGE_COLOUR;
    return c->vline_label;
}

static double legend_width(cairo_t *cr, const PlotChart *c) {
    font(cr, 12, false);
    double w = 0;
    for (int i = 0; i < legend_entries(c); i++) {
        LegendKind k;
        unsigned rgb;
        w = fmax(w, text_width(cr, legend_label(c, i, &k, &rgb)));
    }
    return w + 48; /* the key (28), gaps, the box */
}

static void dashed(cairo_t *cr, bool on) {
    static const double dash[2] = {6, 4};
    cairo_set_dash(cr, dash, on ? 2 : 0, 0);
}

/* How much of the series' lines (sampled 16 times per segment) falls in the box. */
static int covered(const PlotChart *c, const Frame *f, double x, double y, double w, double h) {
    int hits = 0;
    for (int s = 0; s < c->nseries; s++) {
        const PlotSeries *p = &c->series[s];
        for (int i = 0; i < p->n; i++) {
            if (!isfinite(p->y[i])) continue;
            const bool seg = i + 1 < p->n && isfinite(p->y[i + 1]);
            for (int k = 0; k < (seg ? 16 : 1); k++) {
                const double t = k / 16.0;
                const double px = px_x(f, seg ? p->x[i] + t * (p->x[i + 1] - p->x[i]) : p->x[i]);
                const double py = px_y(f, seg ? p->y[i] + t * (p->y[i + 1] - p->y[i]) : p->y[i]);
                hits += px >= x - 4 && px <= x + w + 4 && py >= y - 4 && py <= y + h + 4;
            }
        }
    }
    return hits;
}

static void draw_legend(cairo_t *cr, const PlotChart *c, const Frame *f) {
    const int n = legend_entries(c);
    if (!n) return;
    const double row = 18, w = legend_width(cr, c), h = n * row + 8;
    double x = f->right - w - 8, y = f->top + 8;
    if (c->legend == PLOT_LEGEND_INSIDE) { /* the corner that hides the least of the lines */
        int best = -1;
        for (int corner = 0; corner < 4; corner++) {
            const double cx = corner & 1 ? f->left + 8 : f->right - w - 8,
                         cy = corner & 2 ? f->bottom - h - 8 : f->top + 8;
            const int hits = covered(c, f, cx, cy, w, h);
            if (best < 0 || hits < best) best = hits, x = cx, y = cy;
        }
    }
    if (c->legend == PLOT_LEGEND_OUTSIDE) x = f->right + 12;
    cairo_rectangle(cr, x, y, w, h);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
    cairo_fill_preserve(cr);
    colour(cr, 0xbbbbbb);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    font(cr, 12, false);
    for (int i = 0; i < n; i++) {
        LegendKind kind;
        unsigned rgb;
        const char *label = legend_label(c, i, &kind, &rgb);
        const double ky = y + 4 + row * (i + 0.5), kx = x + 8;
        colour(cr, rgb);
        cairo_set_line_width(cr, kind == LEGEND_SERIES ? 2.5 : 1.5);
        dashed(cr, kind != LEGEND_SERIES);
        if (kind == LEGEND_VLINE) {
            cairo_move_to(cr, kx + 14, ky - 7);
            cairo_line_to(cr, kx + 14, ky + 7);
        } else {
            cairo_move_to(cr, kx, ky);
            cairo_line_to(cr, kx + 28, ky);
        }
        cairo_stroke(cr);
        dashed(cr, false);
        if (kind == LEGEND_SERIES && i < c->nseries && c->series[i].markers) {
            cairo_arc(cr, kx + 14, ky, 3.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        colour(cr, 0x000000);
        text(cr, kx + 36, ky, 0, label);
    }
}

/* ---- one chart ----------------------------------------------------------------------------- */

/* Lay out the chart in the box (x, y, w, h): the Frame of its plot area. */
static Frame layout(cairo_t *cr, const PlotChart *c, double x, double y, double w, double h) {
    Frame f;
    double xlo, xhi, ylo, yhi;
    range_of(c, &xlo, &xhi, &ylo, &yhi);
    f.x = axis_make(xlo, xhi, 6, c->x_integer);
    f.y = axis_make(ylo, yhi, 5, false);
    const double xpad = 0.03 * (f.x.hi - f.x.lo), ypad = 0.03 * (f.y.hi - f.y.lo);
    f.xmin = f.x.lo - xpad, f.xmax = f.x.hi + xpad, f.ymin = f.y.lo - ypad, f.ymax = f.y.hi + ypad;
    font(cr, 12, false);
    double label_w = 0;
    char buf[64];
    for (long k = lround(f.y.lo / f.y.step); k * f.y.step <= f.y.hi + 1e-9 * f.y.step; k++) {
        snprintf(buf, sizeof buf, "%.*f", tick_decimals(f.y.step), k * f.y.step);
        label_w = fmax(label_w, text_width(cr, buf));
    }
    f.left = x + 10 + 16 + 8 + label_w + 6; /* margin, y label, gap, numbers, tick */
    f.right = x + w - 14 - (c->legend == PLOT_LEGEND_OUTSIDE ? legend_width(cr, c) + 12 : 0);
    f.top = y + 34;                         /* the title */
    f.bottom = y + h - 46;                  /* tick numbers, x label */
    return f;
}

static void draw_grid_and_ticks(cairo_t *cr, const PlotChart *c, const Frame *f) {
    char buf[64];
    double xt[64];
    const int nx = x_ticks(c, &f->x, xt, 64);
    font(cr, 12, false);
    cairo_set_line_width(cr, 1);
    for (long k = lround(f->y.lo / f->y.step); k * f->y.step <= f->y.hi + 1e-9 * f->y.step; k++) {
        const double v = k * f->y.step, py = round(px_y(f, v)) + 0.5;
        colour(cr, 0xe5e5e5);
        cairo_move_to(cr, f->left, py);
        cairo_line_to(cr, f->right, py);
        cairo_stroke(cr);
        colour(cr, 0x000000);
        cairo_move_to(cr, f->left - 5, py);
        cairo_line_to(cr, f->left, py);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%.*f", tick_decimals(f->y.step), v);
        text(cr, f->left - 8, py, 1, buf);
    }
    for (int i = 0; i < nx; i++) {
        const double px = round(px_x(f, xt[i])) + 0.5;
        colour(cr, 0xe5e5e5);
        cairo_move_to(cr, px, f->top);
        cairo_line_to(cr, px, f->bottom);
        cairo_stroke(cr);
        colour(cr, 0x000000);
        cairo_move_to(cr, px, f->bottom);
        cairo_line_to(cr, px, f->bottom + 5);
        cairo_stroke(cr);
        x_tick_label(c, &f->x, xt[i], buf, sizeof buf);
        text(cr, px, f->bottom + 15, 0.5, buf);
    }
}

static void draw_labels(cairo_t *cr, const PlotChart *c, const Frame *f, double x) {
    colour(cr, 0x000000);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, round(f->left) + 0.5, round(f->top) + 0.5, round(f->right - f->left),
                    round(f->bottom - f->top));
    cairo_stroke(cr);
    font(cr, 14, true);
    text(cr, (f->left + f->right) / 2, f->top - 17, 0.5, c->title);
    font(cr, 13, false);
    text(cr, (f->left + f->right) / 2, f->bottom + 35, 0.5, c->xlabel);
    cairo_save(cr);
    cairo_translate(cr, x + 10 + 8, (f->top + f->bottom) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text(cr, 0, 0, 0.5, c->ylabel);
    cairo_restore(cr);
}

static void draw_series(cairo_t *cr, const PlotSeries *p, unsigned rgb, const Frame *f) {
    colour(cr, rgb);
    cairo_set_line_width(cr, 2.5);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    bool pen = false;
    for (int i = 0; i < p->n; i++) {
        if (!isfinite(p->y[i])) {
            pen = false;
            continue;
        }
        if (pen) cairo_line_to(cr, px_x(f, p->x[i]), px_y(f, p->y[i]));
        else cairo_move_to(cr, px_x(f, p->x[i]), px_y(f, p->y[i]));
        pen = true;
    }
    cairo_stroke(cr);
    cairo_set_line_width(cr, 1.5);
    for (int i = 0; i < p->n; i++) {
        if (!isfinite(p->y[i])) continue;
        const double px = px_x(f, p->x[i]), py = px_y(f, p->y[i]);
        if (p->err && isfinite(p->err[i]) && p->err[i] > 0) { /* bar with end caps */
            const double lo = px_y(f, p->y[i] - p->err[i]), hi = px_y(f, p->y[i] + p->err[i]);
            cairo_move_to(cr, px, lo);
            cairo_line_to(cr, px, hi);
            cairo_move_to(cr, px - 4, lo);
            cairo_line_to(cr, px + 4, lo);
            cairo_move_to(cr, px - 4, hi);
            cairo_line_to(cr, px + 4, hi);
            cairo_stroke(cr);
        }
        /* A lone point (its neighbours not finite) gets a dot even without markers. */
        const bool alone = (i == 0 || !isfinite(p->y[i - 1])) &&
                           (i == p->n - 1 || !isfinite(p->y[i + 1]));
        if (p->markers || alone) {
            cairo_arc(cr, px, py, 3.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
    }
}

static void draw_chart(cairo_t *cr, const PlotChart *c, double x, double y, double w, double h) {
    const Frame f = layout(cr, c, x, y, w, h);
    draw_grid_and_ticks(cr, c, &f);
    cairo_save(cr);
    cairo_rectangle(cr, f.left, f.top, f.right - f.left, f.bottom - f.top);
    cairo_clip(cr);
    cairo_set_line_width(cr, 1.5);
    dashed(cr, true);
    for (int i = 0; i < c->nhlines; i++) {
        colour(cr, c->hlines[i].colour);
        cairo_move_to(cr, f.left, px_y(&f, c->hlines[i].y));
        cairo_line_to(cr, f.right, px_y(&f, c->hlines[i].y));
        cairo_stroke(cr);
    }
    colour(cr, STAGE_COLOUR);
    for (int i = 0; i < c->nvlines; i++) {
        cairo_move_to(cr, px_x(&f, c->vlines[i]), f.top);
        cairo_line_to(cr, px_x(&f, c->vlines[i]), f.bottom);
        cairo_stroke(cr);
    }
    dashed(cr, false);
    for (int s = 0; s < c->nseries; s++)
        draw_series(cr, &c->series[s], c->series[s].colour ? c->series[s].colour
                                                           : PALETTE[s % NPALETTE], &f);
    cairo_restore(cr);
    draw_labels(cr, c, &f, x);
    draw_legend(cr, c, &f);
}

/* ---- output -------------------------------------------------------------------------------- */

/* The surface's pixels (cairo's RGB24: one native-endian 0x00RRGGBB word each) as a PNG at
 * path, through run_write_file. */
static Status surface_png(cairo_surface_t *s, const char *path) {
    cairo_surface_flush(s);
    const int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char *data = cairo_image_surface_get_data(s);
    Image im = image_new(w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t p;
            memcpy(&p, data + (size_t)y * stride + 4 * (size_t)x, 4);
            uint8_t *q = im.px + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(p >> 16), q[1] = (uint8_t)(p >> 8), q[2] = (uint8_t)p;
        }
    uint8_t *png = NULL;
    size_t n = 0;
    Status st = image_encode_png(&im, &png, &n);
    image_free(&im);
    if (st == STATUS_OK) st = run_write_file(path, (const char *)png, n);
    free(png);
    return st;
}

/* cairo and fontconfig keep the fonts they found for the life of the process; give them back at
 * exit, so that a leak checker (make DEBUG=1 test) sees only the project's own allocations. */
static void release_fonts(void) {
    cairo_debug_reset_static_data();
    FcFini();
}

/* A white w x h canvas, or STATUS_ERR_USAGE / _OOM / _IO (no font) with *cr = NULL. */
static Status canvas(int w, int h, cairo_surface_t **s, cairo_t **cr) {
    static bool release_registered;
    if (!release_registered) release_registered = atexit(release_fonts) == 0;
    *s = NULL, *cr = NULL;
    if (w < 16 || h < 16 || w > 32767 || h > 32767) /* cairo's largest image surface */
        return error_set(STATUS_ERR_USAGE, "plot: %d x %d pixels (16 to 32767 a side)", w, h);
    *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    *cr = cairo_create(*s);
    Status st = STATUS_OK;
    if (cairo_status(*cr) != CAIRO_STATUS_SUCCESS)
        st = error_set(STATUS_ERR_OOM, "plot: cairo cannot make a %d x %d canvas: %s", w, h,
                       cairo_status_to_string(cairo_status(*cr)));
    if (st == STATUS_OK) st = font_check(*cr);
    if (st != STATUS_OK) {
        cairo_destroy(*cr);
        cairo_surface_destroy(*s);
        *s = NULL, *cr = NULL;
        return st;
    }
    cairo_set_source_rgb(*cr, 1, 1, 1);
    cairo_paint(*cr);
    return STATUS_OK;
}

/* Check that drawing went through, write the PNG, free the canvas. */
static Status finish(cairo_surface_t *s, cairo_t *cr, const char *path) {
    Status st = STATUS_OK;
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
        st = error_set(STATUS_ERR_IO, "%s: cairo failed while drawing: %s", path,
                       cairo_status_to_string(cairo_status(cr)));
    cairo_destroy(cr);
    if (st == STATUS_OK) st = surface_png(s, path);
    cairo_surface_destroy(s);
    return st;
}

Status plot_charts_png(const char *path, int w, int h, const char *title, const PlotChart *charts,
                       int ncharts) {
    if (ncharts < 1 || !charts)
        return error_set(STATUS_ERR_USAGE, "plot %s: no chart to draw", path);
    for (int i = 0; i < ncharts; i++) {
        Status st = check_chart(&charts[i], i);
        if (st != STATUS_OK) return st;
    }
    cairo_surface_t *s;
    cairo_t *cr;
    Status st = canvas(w, h, &s, &cr);
    if (st != STATUS_OK) return st;
    double top = 0;
    if (title) {
        colour(cr, 0x000000);
        font(cr, 16, true);
        text(cr, w / 2.0, 18, 0.5, title);
        top = 30;
    }
    for (int i = 0; i < ncharts; i++)
        draw_chart(cr, &charts[i], (double)w * i / ncharts, top, (double)w / ncharts, h - top);
    return finish(s, cr, path);
}

/* ---- labelled panels ----------------------------------------------------------------------- */

/* s at `size` px, shrunk (down to 9 px) and then cut with an ellipsis to fit `width`. */
static void fit_text(cairo_t *cr, double size, bool bold, const char *s, double width,
                     char *out, size_t cap) {
    snprintf(out, cap, "%s", s);
    font(cr, size, bold);
    while (size > 9 && text_width(cr, out) > width) font(cr, size -= 1, bold);
    size_t n = strlen(out);
    while (n > 0 && text_width(cr, out) > width) {
        do n--; while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80); /* a whole character */
        snprintf(out + n, cap - n, "…");
    }
}

static void draw_panel(cairo_t *cr, const Image *im, const char *name, double score, int rank,
                       double x, double pw, double ph) {
    cairo_surface_t *src = cairo_image_surface_create(CAIRO_FORMAT_RGB24, im->w, im->h);
    unsigned char *d = cairo_image_surface_get_data(src);
    const int stride = cairo_image_surface_get_stride(src);
    for (int y = 0; y < im->h; y++)
        for (int i = 0; i < im->w; i++) {
            const uint8_t *p = im->px + ((size_t)y * im->w + i) * 3;
            const uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            memcpy(d + (size_t)y * stride + 4 * (size_t)i, &v, 4);
        }
    cairo_surface_mark_dirty(src);
    cairo_save(cr);
    cairo_translate(cr, x, PLOT_CAPTION_HEIGHT);
    cairo_scale(cr, pw / im->w, ph / im->h);
    cairo_set_source_surface(cr, src, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_BILINEAR);
    cairo_paint(cr);
    cairo_restore(cr);
    cairo_surface_destroy(src);
    char line[256], fitted[256];
    snprintf(line, sizeof line, "%d. %s", rank, name);
    colour(cr, 0x000000);
    fit_text(cr, 15, true, line, pw - 12, fitted, sizeof fitted);
    text(cr, x + 6, 14, 0, fitted);
    snprintf(line, sizeof line, "p = %.3f", score);
    font(cr, 13, false);
    colour(cr, 0x404040);
    text(cr, x + 6, 34, 0, line);
    colour(cr, 0xffffff); /* a white rule between panels */
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, x, 0);
    cairo_line_to(cr, x, PLOT_CAPTION_HEIGHT + ph);
    cairo_stroke(cr);
}

Status plot_panels_png(const char *path, const Image *images, char *const *names,
                       const double *scores, int k) {
    if (k < 1 || !images || !names || !scores)
        return error_set(STATUS_ERR_USAGE, "plot %s: no panel to draw", path);
    for (int i = 0; i < k; i++)
        if (!images[i].px || images[i].w != images[0].w || images[i].h != images[0].h ||
            !names[i] || !isfinite(scores[i]))
            return error_set(STATUS_ERR_USAGE, "plot %s: panel %d: %dx%d image (the first is "
                             "%dx%d), or no name, or score %g", path, i, images[i].w,
                             images[i].h, images[0].w, images[0].h, scores[i]);
    const int w = images[0].w, h = images[0].h;
    const double scale = w < PLOT_PANEL_MIN_WIDTH ? (double)PLOT_PANEL_MIN_WIDTH / w : 1;
    const int pw = (int)lround(w * scale), ph = (int)lround(h * scale);
    cairo_surface_t *s;
    cairo_t *cr;
    Status st = canvas(k * pw, PLOT_CAPTION_HEIGHT + ph, &s, &cr);
    if (st != STATUS_OK) return st;
    for (int i = 0; i < k; i++) draw_panel(cr, &images[i], names[i], scores[i], i + 1, i * pw, pw, ph);
    return finish(s, cr, path);
}
