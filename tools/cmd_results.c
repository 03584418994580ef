/* cmd_results.c — `trmml results`: the embedded default's results grid (scripts/embedded.sh
 * results) summarised as docs/results.md (mean ± sample standard deviation over seeds) and a PNG
 * of mAP against the label ratio per method. Reads RUNS/<tag>-r<ratio>-s<seed>/eval.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/image.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "trmml/run.h"

#define MAX_RATIOS 16
#define MAX_SEEDS 16

/* The value of a top-level key of a metrics JSON object; NAN when absent. Top-level keys come
 * before the "top3" object, so the first occurrence is the top-level one. */
static double json_metric(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The whole file, NUL-terminated; NULL, with the last error naming `what` and the path, when it
 * is missing or not a regular file. */
static char *read_text(const char *path, const char *what) {
    FILE *f;
    if (xfopen_regular(path, what, &f) != STATUS_OK) return NULL;
    size_t cap = 4096, n = 0, got;
    char *s = xmalloc(cap);
    while ((got = fread(s + n, 1, cap - n - 1, f)) > 0)
        if ((n += got) + 1 >= cap) s = xrealloc(s, cap *= 2);
    fclose(f);
    s[n] = 0;
    return s;
}

static int split_words(char *s, char **out, int cap) {
    int n = 0;
    for (char *save = NULL, *w = strtok_r(s, " ,", &save); w && n < cap; w = strtok_r(NULL, " ,", &save))
        out[n++] = w;
    return n;
}

typedef struct {
    const char *tag, *label;
} Row;

static const Row METHODS[] = {
    {"baseline", "baseline (Table 3: text-image matching)"},
    {"dualcoop", "DualCoOp"},
    {"trmml", "TRM-ML"},
    {"pvlr", "PVLR"},
};
static const Row ABLATION[] = {
    {"baseline", "baseline (text-image matching)"},
    {"trmml-carl", "+ CARL (text-region matching)"},
    {"trmml-kd", "+ KD"},
    {"trmml-mmcp", "+ MMCP"},
    {"trmml", "+ MMCL (TRM-ML)"},
};
#define NMETHODS ((int)(sizeof METHODS / sizeof METHODS[0]))
#define NABL ((int)(sizeof ABLATION / sizeof ABLATION[0]))

typedef struct {
    double mean[MAX_RATIOS], sd[MAX_RATIOS];
    int n[MAX_RATIOS];
} Series;

/* mean and sample standard deviation of `key` over the seeds of each ratio; n = runs found. */
static void collect(Series *s, const char *runs, const char *tag, const char *key, char **ratios,
                    int nr, char **seeds, int ns) {
    for (int r = 0; r < nr; r++) {
        double v[MAX_SEEDS];
        int n = 0;
        for (int k = 0; k < ns; k++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s-r%s-s%s/eval.json", runs, tag, ratios[r], seeds[k]);
            char *j = read_text(path, "run metrics");
            if (!j) continue; /* a run not made (yet): shown as '–' */
            double x = json_metric(j, key);
            free(j);
            if (isfinite(x)) v[n++] = x;
        }
        double m = 0, q = 0;
        for (int i = 0; i < n; i++) m += v[i] / n;
        for (int i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
        s->mean[r] = n ? m : NAN;
        s->sd[r] = n > 1 ? sqrt(q / (n - 1)) : NAN;
        s->n[r] = n;
    }
}

static void cell(FILE *f, double m, double sd) {
    if (!isfinite(m)) fprintf(f, " – |");
    else if (isfinite(sd)) fprintf(f, " %.2f ± %.2f |", m, sd);
    else fprintf(f, " %.2f |", m);
}

static double avg(const Series *s, int nr) {
    double a = 0;
    for (int r = 0; r < nr; r++) {
        if (!isfinite(s->mean[r])) return NAN;
        a += s->mean[r] / nr;
    }
    return a;
}

/* ---- the plot: a 5x7 bitmap font for labels and ticks ------------------------------------- */

typedef struct {
    char c;
    uint8_t rows[7]; /* 5 bits per row, bit 4 = leftmost pixel */
} Glyph;

static const Glyph FONT[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {30, 1, 1, 14, 1, 1, 30}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 14, 0, 0, 0}},
    {'%', {24, 25, 2, 4, 8, 19, 3}},     {'(', {2, 4, 8, 8, 8, 4, 2}},
    {')', {8, 4, 2, 2, 2, 4, 8}},        {'A', {14, 17, 17, 31, 17, 17, 17}},
    {'B', {30, 17, 17, 30, 17, 17, 30}}, {'C', {14, 17, 16, 16, 16, 17, 14}},
    {'D', {30, 17, 17, 17, 17, 17, 30}}, {'E', {31, 16, 16, 30, 16, 16, 31}},
    {'F', {31, 16, 16, 30, 16, 16, 16}}, {'G', {14, 17, 16, 23, 17, 17, 15}},
    {'H', {17, 17, 17, 31, 17, 17, 17}}, {'I', {14, 4, 4, 4, 4, 4, 14}},
    {'K', {17, 18, 20, 24, 20, 18, 17}}, {'L', {16, 16, 16, 16, 16, 16, 31}},
    {'M', {17, 27, 21, 21, 17, 17, 17}}, {'N', {17, 25, 21, 19, 17, 17, 17}},
    {'O', {14, 17, 17, 17, 17, 17, 14}}, {'P', {30, 17, 17, 30, 16, 16, 16}},
    {'R', {30, 17, 17, 30, 20, 18, 17}}, {'S', {15, 16, 16, 14, 1, 1, 30}},
    {'T', {31, 4, 4, 4, 4, 4, 4}},       {'U', {17, 17, 17, 17, 17, 17, 14}},
    {'V', {17, 17, 17, 17, 17, 10, 4}},  {'W', {17, 17, 17, 21, 21, 21, 10}},
    {'Y', {17, 17, 10, 4, 4, 4, 4}},      {'Z', {31, 1, 2, 4, 8, 16, 31}},
};

static void put(Image *im, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->px + ((size_t)y * im->w + x) * 3, rgb, 3);
}

/* Text at (x, y) top-left, scale 2 (10x14 pixels per glyph, 12 pixels apart); letters are
 * drawn upper-case, characters without a glyph as blanks. */
static void text(Image *im, int x, int y, const char *s, const uint8_t rgb[3]) {
    for (; *s; s++, x += 12) {
        char c = (*s >= 'a' && *s <= 'z') ? (char)(*s - 32) : *s;
        for (size_t g = 0; g < sizeof FONT / sizeof FONT[0]; g++) {
            if (FONT[g].c != c) continue;
            for (int r = 0; r < 7; r++)
                for (int b = 0; b < 5; b++)
                    if (FONT[g].rows[r] & (16 >> b))
                        for (int dy = 0; dy < 2; dy++)
                            for (int dx = 0; dx < 2; dx++) put(im, x + 2 * b + dx, y + 2 * r + dy, rgb);
        }
    }
}

static void line(Image *im, double x0, double y0, double x1, double y1, int width,
                 const uint8_t rgb[3]) {
    int steps = (int)ceil(fmax(fabs(x1 - x0), fabs(y1 - y0))) + 1;
    for (int i = 0; i <= steps; i++) {
        double t = (double)i / steps;
        int x = (int)lrint(x0 + t * (x1 - x0)), y = (int)lrint(y0 + t * (y1 - y0));
        for (int d = 0; d < width; d++) put(im, x, y + d - width / 2, rgb), put(im, x + d - width / 2, y, rgb);
    }
}

#define PW 900
#define PH 560
#define PL 80   /* plot area: left, right, top, bottom */
#define PR 600
#define PT 40
#define PB 500

static Status plot(const char *path, Series *s, int ns, const char *const *names, double zeroshot,
                   double chance, char **ratios, int nr) {
    Image im = image_new(PW, PH);
    memset(im.px, 255, (size_t)PW * PH * 3);
    static const uint8_t black[3] = {0, 0, 0}, grey[3] = {200, 200, 200}, dark[3] = {90, 90, 90};
    static const uint8_t colours[][3] = {{127, 127, 127}, {31, 119, 180}, {214, 39, 40},
                                         {44, 160, 44}, {148, 103, 189}, {255, 127, 14}};
    double lo = chance, hi = zeroshot;
    for (int k = 0; k < ns; k++)
        for (int r = 0; r < nr; r++)
            if (isfinite(s[k].mean[r])) lo = fmin(lo, s[k].mean[r]), hi = fmax(hi, s[k].mean[r]);
    lo = floor(lo / 10) * 10, hi = ceil(hi / 10) * 10;
    if (hi <= lo) hi = lo + 10;
    double x0 = atof(ratios[0]), x1 = atof(ratios[nr - 1]);
    if (x1 <= x0) x1 = x0 + 1;
#define X(v) (PL + ((v) - x0) / (x1 - x0) * (PR - PL))
#define Y(v) (PB - ((v) - lo) / (hi - lo) * (PB - PT))
    for (double v = lo; v <= hi + 1e-9; v += 10) {
        line(&im, PL, Y(v), PR, Y(v), 1, grey);
        char t[16];
        snprintf(t, sizeof t, "%.0f", v);
        text(&im, PL - 12 * (int)strlen(t) - 8, (int)Y(v) - 7, t, black);
    }
    for (int r = 0; r < nr; r++) {
        double x = X(atof(ratios[r]));
        line(&im, x, PB, x, PB + 6, 1, black);
        char t[16];
        snprintf(t, sizeof t, "%.0f%%", 100 * atof(ratios[r]));
        text(&im, (int)x - 6 * (int)strlen(t), PB + 12, t, black);
    }
    line(&im, PL, PB, PR, PB, 1, black);
    line(&im, PL, PB, PL, PT, 1, black);
    text(&im, PL + 120, PB + 36, "LABEL RATIO (KNOWN LABELS)", black);
    text(&im, 8, PT - 30, "MAP (%) ON THE SYNTHETIC TEST SPLIT", black);
    /* reference lines: zero-shot CLIP (dashed grey) and chance (dashed dark) */
    for (int pass = 0; pass < 2; pass++) {
        double v = pass ? chance : zeroshot;
        if (!isfinite(v)) continue;
        for (int x = PL; x < PR; x += 12) line(&im, x, Y(v), fmin(x + 6, PR), Y(v), 2, pass ? dark : colours[0]);
    }
    for (int k = 0; k < ns; k++) {
        const uint8_t *c = colours[1 + k % 5];
        double px = NAN, py = NAN;
        for (int r = 0; r < nr; r++) {
            if (!isfinite(s[k].mean[r])) continue;
            double x = X(atof(ratios[r])), y = Y(s[k].mean[r]);
            if (isfinite(px)) line(&im, px, py, x, y, 3, c);
            for (int d = -4; d <= 4; d++) line(&im, x - 4, y + d, x + 4, y + d, 1, c);
            if (isfinite(s[k].sd[r])) /* error bar: ± one standard deviation */
                line(&im, x, Y(s[k].mean[r] - s[k].sd[r]), x, Y(s[k].mean[r] + s[k].sd[r]), 1, c);
            px = x, py = y;
        }
        line(&im, PR + 30, PT + 20 + 30 * k, PR + 60, PT + 20 + 30 * k, 3, c);
        text(&im, PR + 70, PT + 13 + 30 * k, names[k], black);
    }
    int k = ns;
    for (int x = PR + 30; x < PR + 60; x += 12) line(&im, x, PT + 20 + 30 * k, x + 6, PT + 20 + 30 * k, 2, colours[0]);
    text(&im, PR + 70, PT + 13 + 30 * k, "ZERO-SHOT CLIP", black);
    k++;
    for (int x = PR + 30; x < PR + 60; x += 12) line(&im, x, PT + 20 + 30 * k, x + 6, PT + 20 + 30 * k, 2, dark);
    text(&im, PR + 70, PT + 13 + 30 * k, "CHANCE", black);
#undef X
#undef Y
    Status st = image_save_png(&im, path);
    image_free(&im);
    return st;
}

typedef struct {
    const char *runs, *zeroshot, *out, *plot, *command, *ratios, *seeds;
    double chance;
} ResultsFlags;

static const KeySpec RESULTS_FLAGS[] = {
    FLAG_ARG(ResultsFlags, "runs", runs, "DIR", "the runs, DIR/<method>-r<ratio>-s<seed>/"),
    FLAG_ARG(ResultsFlags, "zeroshot", zeroshot, "FILE.json", "zero-shot CLIP's metrics"),
    FLAG_DOUBLE(ResultsFlags, "chance", chance, -1e300, 1e300, "MAP", "chance-level mAP"),
    FLAG_ARG(ResultsFlags, "ratios", ratios, "\"0.1 0.3 ...\"", "the label ratios, in order"),
    FLAG_ARG(ResultsFlags, "seeds", seeds, "\"0 1 2\"", "the seeds of each ratio"),
    FLAG_ARG(ResultsFlags, "out", out, "FILE.md", "the Markdown tables"),
    FLAG_ARG(ResultsFlags, "plot", plot, "FILE.png", "the plot of mAP against the ratio"),
    FLAG_ARG(ResultsFlags, "command", command, "TEXT", "quoted in FILE.md as its command"),
};

COMMAND(results, "summarise the embedded default's results grid (docs/results.md and a plot)",
        "trmml results --runs DIR --zeroshot FILE.json --chance MAP --ratios \"0.1 0.3 ...\"\n"
        "              --seeds \"0 1 2\" --out FILE.md --plot FILE.png [--command TEXT]\n"
        "  Reads DIR/<method>-r<ratio>-s<seed>/eval.json for the methods (baseline, dualcoop,\n"
        "  trmml, pvlr) and TRM-ML's Table-3 components (trmml-carl, trmml-kd, trmml-mmcp),\n"
        "  writes mean ± sample standard deviation over the seeds of mAP, CF1 and OF1 per ratio\n"
        "  as Markdown, and a PNG of mAP against the ratio per method. Missing runs are shown\n"
        "  as '–'.") {
    ResultsFlags o = {.chance = NAN};
    const KeyGroup groups[] = {FLAGS_OF(RESULTS_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    const char *runs = o.runs, *zs = o.zeroshot, *out = o.out, *png = o.plot, *command = o.command;
    char *ratio_s = o.ratios ? strdup(o.ratios) : NULL, *seed_s = o.seeds ? strdup(o.seeds) : NULL;
    const double chance = o.chance;
    char *ratios[MAX_RATIOS], *seeds[MAX_SEEDS];
    int nr = ratio_s ? split_words(ratio_s, ratios, MAX_RATIOS) : 0;
    int ns = seed_s ? split_words(seed_s, seeds, MAX_SEEDS) : 0;
    if (!runs || !zs || !out || !png || !nr || !ns || !isfinite(chance)) {
        fprintf(stderr, "trmml results: --runs, --zeroshot, --chance, --ratios, --seeds, --out and "
                        "--plot are required\n");
        free(ratio_s), free(seed_s);
        return 2;
    }
    char *zj = read_text(zs, "zero-shot metrics");
    if (!zj) {
        fprintf(stderr, "trmml results: --zeroshot: %s\n", error_last());
        free(ratio_s), free(seed_s);
        return 1;
    }
    const double z_map = json_metric(zj, "mAP"), z_cf1 = json_metric(zj, "CF1"),
                 z_of1 = json_metric(zj, "OF1");
    free(zj);

    char *md = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&md, &len);
    CHECK(f, "trmml results: open_memstream failed");
    fprintf(f, "# Results on the embedded synthetic world\n\n");
    fprintf(f, "Generated by `trmml results` from the runs of `make results` (scripts/embedded.sh"
               " results)%s%s%s. Every number is the mean ± sample standard deviation over seeds "
               "%s", command ? ": `" : "", command ? command : "", command ? "`" : "", seeds[0]);
    for (int k = 1; k < ns; k++) fprintf(f, ", %s", seeds[k]);
    fprintf(f, " (the seed draws the label mask and the learnable initialisation), on the "
               "synthetic test split, in percent. docs/embedded.md explains the setting and "
               "discusses these numbers.\n\n");
    fprintf(f, "Reference: zero-shot CLIP (the small pretrained model, prompts \"a photo of a "
               "{class}.\") mAP %.2f, CF1 %.2f, OF1 %.2f; chance-level mAP (random scores) %.2f.\n",
            z_map, z_cf1, z_of1, chance);
    static const char *keys[3] = {"mAP", "CF1", "OF1"};
    Series s[NMETHODS];
    for (int q = 0; q < 3; q++) {
        fprintf(f, "\n## %s by label ratio\n\n| method |", keys[q]);
        for (int r = 0; r < nr; r++) fprintf(f, " %.0f %% |", 100 * atof(ratios[r]));
        fprintf(f, " Avg. |\n|---|");
        for (int r = 0; r <= nr; r++) fprintf(f, "---|");
        fprintf(f, "\n");
        for (int k = 0; k < NMETHODS; k++) {
            Series t;
            collect(&t, runs, METHODS[k].tag, keys[q], ratios, nr, seeds, ns);
            if (q == 0) s[k] = t;
            fprintf(f, "| %s |", METHODS[k].label);
            for (int r = 0; r < nr; r++) cell(f, t.mean[r], t.sd[r]);
            cell(f, avg(&t, nr), NAN);
            fprintf(f, "\n");
        }
    }
    fprintf(f, "\n## TRM-ML's components (the paper's Table 3), mAP\n\n| components |");
    for (int r = 0; r < nr; r++) fprintf(f, " %.0f %% |", 100 * atof(ratios[r]));
    fprintf(f, " Avg. |\n|---|");
    for (int r = 0; r <= nr; r++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int k = 0; k < NABL; k++) {
        Series t;
        collect(&t, runs, ABLATION[k].tag, "mAP", ratios, nr, seeds, ns);
        fprintf(f, "| %s |", ABLATION[k].label);
        for (int r = 0; r < nr; r++) cell(f, t.mean[r], t.sd[r]);
        cell(f, avg(&t, nr), NAN);
        fprintf(f, "\n");
    }
    /* Where the target method does not win, say so (issue 6: the table is honest). */
    fprintf(f, "\n## TRM-ML against DualCoOp, ratio by ratio (mAP)\n\n");
    for (int r = 0; r < nr; r++) {
        const double a = s[2].mean[r], b = s[1].mean[r];
        if (!isfinite(a) || !isfinite(b)) continue;
        fprintf(f, "- %.0f %%: TRM-ML %.2f, DualCoOp %.2f: %s\n", 100 * atof(ratios[r]), a, b,
                a > b ? "TRM-ML is ahead" : "TRM-ML is NOT ahead");
    }
    fprintf(f, "\n![mAP against the label ratio](%s)\n", strrchr(png, '/') ? strrchr(png, '/') + 1 : png);
    fclose(f);
    Status st = xwrite_file_atomic(out, md, len);
    free(md);
    if (st == STATUS_OK) {
        const char *names[NMETHODS] = {"BASELINE", "DUALCOOP", "TRM-ML", "PVLR"};
        st = plot(png, s, NMETHODS, names, z_map, chance, ratios, nr);
    }
    free(ratio_s), free(seed_s);
    if (st != STATUS_OK) {
        fprintf(stderr, "trmml results: %s\n", error_last());
        return 1;
    }
    printf("trmml results: wrote %s and %s\n", out, png);
    return 0;
}
