/* plot.h — every PNG plot trmml draws: a run's training curve (curve.png), the mAP-by-ratio
 * chart of `trmml results` and the labelled region panels of `trmml visualize`.
 *
 * Drawn with cairo (libcairo2-dev) in memory, text in DejaVu Sans found through fontconfig
 * (fonts-dejavu-core); docs/plots.md says why cairo rather than PLplot. Every function checks
 * its input before drawing (STATUS_ERR_USAGE naming the problem; no file is touched), and
 * writes the PNG through run_write_file (a temporary beside the file, fsync, rename), so a
 * failure never leaves a partial file. A machine without any font is an error too
 * (STATUS_ERR_IO with a hint), not a plot without labels. */
#pragma once
#include <stdbool.h>

#include "tensor/image.h"
#include "tensor/error.h"

/* One line of a chart: n points (x[i], y[i]); a y that is not finite leaves a gap. Colours come
 * from a fixed palette in series order, unless `colour` (0xRRGGBB) is non-zero. */
typedef struct {
    const char *label;  /* legend text */
    const double *x, *y;
    const double *err;  /* optional: an error bar y ± err[i] at each point */
    int n;
    unsigned colour;
    bool markers;       /* a dot at each point */
} PlotSeries;

/* A horizontal reference line across the chart (dashed), with its legend text. */
typedef struct {
    double y;
    const char *label;
    unsigned colour; /* 0xRRGGBB */
} PlotLine;

typedef enum {
    PLOT_LEGEND_INSIDE,  /* inside the chart, in a box, in the corner that hides least of the lines */
    PLOT_LEGEND_OUTSIDE, /* right of the chart */
} PlotLegend;

/* One chart: title, axis labels, ticks with numbers, grid, series, reference lines, vertical
 * markers (stage boundaries: dashed, one legend entry `vline_label`), and a legend. */
typedef struct {
    const char *title, *xlabel, *ylabel;
    const PlotSeries *series;
    int nseries;
    const PlotLine *hlines;
    int nhlines;
    const double *vlines;
    int nvlines;
    const char *vline_label;
    const double *xticks;     /* optional: x ticks at these values (else evenly spaced) */
    int nxticks;
    const char *xtick_format; /* optional printf format of an x tick ("%.0f %%") */
    bool x_integer;           /* evenly spaced x ticks on whole numbers only */
    PlotLegend legend;
} PlotChart;

/* A w x h PNG at path: the figure title (may be NULL) over nchart charts side by side. */
Status plot_charts_png(const char *path, int w, int h, const char *title, const PlotChart *charts,
                       int ncharts);

/* `trmml visualize`: k panels side by side, all images of one size; each under a caption that
 * names its class (names[i]) and its score ("p = 0.873"). An image narrower than
 * PLOT_PANEL_MIN_WIDTH is scaled up to that width so the caption fits; so the PNG is
 * k * max(w, PLOT_PANEL_MIN_WIDTH) wide and PLOT_CAPTION_HEIGHT + the scaled height high. */
#define PLOT_PANEL_MIN_WIDTH 256
#define PLOT_CAPTION_HEIGHT 46
Status plot_panels_png(const char *path, const Image *images, char *const *names,
                       const double *scores, int k);
