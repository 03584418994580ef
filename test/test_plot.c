/* test_plot.c — trmml/plot.h and curve.png: valid PNGs of the documented sizes with labels
 * drawn, bad input refused with a message and no file left, and a malformed metrics.jsonl
 * leaving the previous curve.png untouched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/image.h"
#include "test/test.h"
#include "trmml/plot.h"
#include "trmml/run.h"

/* Pixels that are neither white nor near-white in the rectangle (x0, y0)-(x1, y1). */
static long inked(const Image *im, int x0, int y0, int x1, int y1) {
    long n = 0;
    for (int y = y0; y < y1 && y < im->h; y++)
        for (int x = x0; x < x1 && x < im->w; x++) {
            const uint8_t *p = im->px + ((size_t)y * im->w + x) * 3;
            n += p[0] < 200 || p[1] < 200 || p[2] < 200;
        }
    return n;
}

/* Pixels close to the colour rgb (0xRRGGBB). */
static long coloured(const Image *im, unsigned rgb) {
    long n = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h; i++) {
        const uint8_t *p = im->px + 3 * i;
        n += abs(p[0] - (int)(rgb >> 16 & 255)) < 24 && abs(p[1] - (int)(rgb >> 8 & 255)) < 24 &&
             abs(p[2] - (int)(rgb & 255)) < 24;
    }
    return n;
}

/* Two stages of two epochs, evaluated every epoch but the first. */
static const char *METRICS =
    "{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":10,\"loss\":2.5,\"eval\":null}\n"
    "{\"stage\":1,\"epoch\":2,\"global_epoch\":2,\"step\":20,\"loss\":1.75,\"eval\":{\"mAP\":61.5}}\n"
    "{\"stage\":2,\"epoch\":1,\"global_epoch\":3,\"step\":10,\"loss\":1.25,\"eval\":{\"mAP\":70}}\n"
    "{\"stage\":2,\"epoch\":2,\"global_epoch\":4,\"step\":20,\"loss\":1.0,\"eval\":{\"mAP\":72.25}}\n";

TEST(plot_curve_png) {
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "plot");
    char metrics[128], png[128];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(png, sizeof png, "%s/curve.png", dir);
    test_write_file(metrics, METRICS, (size_t)-1);
    Status st = run_write_curve(metrics, png);
    Image im = {0};
    if (st == STATUS_OK) st = image_load(png, &im, NULL);
    EXPECT(st == STATUS_OK && im.w == RUN_CURVE_W && im.h == RUN_CURVE_H, "curve.png: %s, %dx%d", error_last(),
           im.w, im.h);
    if (st == STATUS_OK) {
        /* Text in the title band, both charts' lines in their colours, the stage boundary's
         * grey, and the tick numbers left of each chart's frame. */
        EXPECT(inked(&im, 0, 0, 960, 28) > 200, "no title: %ld dark pixels",
               inked(&im, 0, 0, 960, 28));
        EXPECT(coloured(&im, 0x1f77b4) > 100 && coloured(&im, 0xd62728) > 100,
               "loss (blue) %ld, mAP (red) %ld pixels", coloured(&im, 0x1f77b4),
               coloured(&im, 0xd62728));
        EXPECT(coloured(&im, 0x7f7f7f) > 50, "stage boundary: %ld grey pixels",
               coloured(&im, 0x7f7f7f));
        EXPECT(inked(&im, 0, 60, 60, 340) > 150 && inked(&im, 480, 60, 540, 340) > 150,
               "y label and tick numbers: %ld, %ld", inked(&im, 0, 60, 60, 340),
               inked(&im, 480, 60, 540, 340));
    }
    image_free(&im);
    /* No temporary left beside it. */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "ls '%s' | grep -c tmp > /dev/null", dir);
    EXPECT(system(tmp) != 0, "a temporary was left in %s", dir);
    /* A malformed line: an error naming the file and line, the previous PNG kept. */
    test_write_file(metrics, "{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":10,\"loss\":2.5,"
                        "\"eval\":null}\n{\"stage\":1,\"epoch\":2,\"global_epoch\":2,\"st", (size_t)-1);
    char want[160];
    snprintf(want, sizeof want, "%s:2: malformed JSON", metrics);
    st = run_write_curve(metrics, png);
    EXPECT(st == STATUS_ERR_FORMAT && strstr(error_last(), want), "malformed: %d %s", st,
           error_last());
    EXPECT(image_load(png, &im, NULL) == STATUS_OK && im.w == 960, "the old curve.png is gone");
    image_free(&im);
    test_write_file(metrics, "", (size_t)-1);
    EXPECT(run_write_curve(metrics, png) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "nothing to plot"),
           "empty: %s", error_last());
    test_remove_tree(dir);
}

TEST(plot_chart_bad_input_leaves_no_file) {
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "plot");
    char png[128];
    snprintf(png, sizeof png, "%s/chart.png", dir);
    const double x[3] = {1, NAN, 3}, y[3] = {1, 2, 3};
    const PlotSeries s = {.label = "s", .x = x, .y = y, .n = 3};
    PlotChart c = {.title = "t", .xlabel = "x", .ylabel = "y", .series = &s, .nseries = 1};
    EXPECT(plot_charts_png(png, 400, 300, NULL, &c, 1) == STATUS_ERR_USAGE &&
               strstr(error_last(), "point 1: x is nan") && access(png, F_OK) != 0,
           "non-finite x: %s", error_last());
    c.xlabel = NULL;
    EXPECT(plot_charts_png(png, 400, 300, NULL, &c, 1) == STATUS_ERR_USAGE &&
               strstr(error_last(), "lacks a title or an axis label") && access(png, F_OK) != 0,
           "no label: %s", error_last());
    c.xlabel = "x";
    c.nseries = 0;
    EXPECT(plot_charts_png(png, 4, 300, NULL, &c, 1) == STATUS_ERR_USAGE &&
               access(png, F_OK) != 0, "4 pixels wide: %s", error_last());
    /* An unwritable place: an error naming it. */
    EXPECT(plot_charts_png("/nonexistent/dir/c.png", 400, 300, NULL, &c, 1) == STATUS_ERR_IO &&
               strstr(error_last(), "/nonexistent/dir/c.png"), "unwritable: %s", error_last());
    test_remove_tree(dir);
}

TEST(plot_panels_png_captions) {
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "plot");
    char png[128];
    snprintf(png, sizeof png, "%s/panels.png", dir);
    Image ims[2] = {image_zeros(64, 48), image_zeros(64, 48)};
    memset(ims[1].px, 200, (size_t)64 * 48 * 3);
    char *names[2] = {"red circle", "a class name far too long to fit above one panel"};
    const double scores[2] = {0.8734, 0.0412};
    Status st = plot_panels_png(png, ims, names, scores, 2);
    Image im = {0};
    if (st == STATUS_OK) st = image_load(png, &im, NULL);
    /* 64 px wide images are scaled to 256: 2 x 256 by 46 + 192. */
    EXPECT(st == STATUS_OK && im.w == 2 * PLOT_PANEL_MIN_WIDTH &&
               im.h == PLOT_CAPTION_HEIGHT + 192,
           "panels: %s, %dx%d", error_last(), im.w, im.h);
    if (st == STATUS_OK) {
        EXPECT(inked(&im, 0, 0, 256, PLOT_CAPTION_HEIGHT) > 150 &&
                   inked(&im, 256, 0, 512, PLOT_CAPTION_HEIGHT) > 150,
               "captions: %ld and %ld dark pixels", inked(&im, 0, 0, 256, PLOT_CAPTION_HEIGHT),
               inked(&im, 256, 0, 512, PLOT_CAPTION_HEIGHT));
        EXPECT(inked(&im, 10, 60, 250, 230) > 30000, "the first image (black) is not drawn");
    }
    image_free(&im);
    image_free(&ims[1]);
    ims[1] = image_zeros(32, 48);
    EXPECT(plot_panels_png(png, ims, names, scores, 2) == STATUS_ERR_USAGE &&
               strstr(error_last(), "panel 1: 32x48 image"),
           "mixed sizes: %s", error_last());
    image_free(&ims[0]);
    image_free(&ims[1]);
    test_remove_tree(dir);
}
