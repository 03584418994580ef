/* cmd_results.c — `trmml results`: the embedded default's results grid (scripts/embedded.sh
 * results) summarised as docs/results.md (mean ± sample standard deviation over seeds) and a PNG
 * of mAP against the label ratio per method. Reads RUNS/<tag>-r<ratio>-s<seed>/eval.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/json.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "trmml/plot.h"
#include "trmml/run.h"

#define MAX_RATIOS 16
#define MAX_SEEDS 16

/* The top-level number `key` of the metrics object in the file `path` (ds_metrics_json). A
 * missing file is STATUS_ERR_IO (a run not made yet, for the caller to decide); a malformed file
 * or a missing key is STATUS_ERR_FORMAT naming the file and the key. */
static Status read_metric(const char *path, const char *what, const char *key, double *out) {
    uint8_t *text = NULL;
    size_t n;
    yajl_val v = NULL;
    *out = NAN;
    Status st = xread_file(path, what, &text, &n);
    if (st == STATUS_OK) st = json_parse((const char *)text, path, &v);
    if (st == STATUS_OK) st = json_get_number(v, key, path, false, out);
    json_free(v);
    free(text);
    return st;
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

/* The plot's colour of each method (0xRRGGBB), in METHODS order. */
static const unsigned METHOD_COLOURS[] = {0x8c564b, 0x1f77b4, 0xd62728, 0x2ca02c};
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

/* mean and sample standard deviation of `key` over the seeds of each ratio; n = runs found.
 * A run without eval.json is not made (yet) and shown as '–'; an eval.json that cannot be read
 * is an error. */
static Status collect(Series *s, const char *runs, const char *tag, const char *key,
                      char **ratios, int nr, char **seeds, int ns) {
    for (int r = 0; r < nr; r++) {
        double v[MAX_SEEDS];
        int n = 0;
        for (int k = 0; k < ns; k++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s-r%s-s%s/eval.json", runs, tag, ratios[r], seeds[k]);
            if (access(path, F_OK) != 0) continue;
            Status st = read_metric(path, "run metrics", key, &v[n]);
            if (st != STATUS_OK) return st;
            n++;
        }
        double m = 0, q = 0;
        for (int i = 0; i < n; i++) m += v[i] / n;
        for (int i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
        s->mean[r] = n ? m : NAN;
        s->sd[r] = n > 1 ? sqrt(q / (n - 1)) : NAN;
        s->n[r] = n;
    }
    return STATUS_OK;
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

/* mAP against the label ratio, one line per method (± one standard deviation over seeds),
 * zero-shot CLIP and chance as dashed references (trmml/plot.h). */
static Status plot(const char *path, const Series *s, int ns, const char *const *names,
                   double zeroshot, double chance, char **ratios, int nr) {
    double x[MAX_RATIOS];
    for (int r = 0; r < nr; r++) x[r] = 100 * atof(ratios[r]);
    PlotSeries series[NMETHODS];
    for (int k = 0; k < ns; k++)
        series[k] = (PlotSeries){.label = names[k], .x = x, .y = s[k].mean, .err = s[k].sd,
                                 .n = nr, .colour = METHOD_COLOURS[k], .markers = true};
    char zlabel[64], clabel[64];
    snprintf(zlabel, sizeof zlabel, "zero-shot CLIP (%.2f)", zeroshot);
    snprintf(clabel, sizeof clabel, "chance (%.2f)", chance);
    const PlotLine refs[2] = {{zeroshot, zlabel, 0x7f7f7f}, {chance, clabel, 0x303030}};
    const PlotChart chart = {
        .title = "mAP on the synthetic test split (mean ± sd over seeds)",
        .xlabel = "label ratio: known labels (%)", .ylabel = "mAP (%)", .series = series,
        .nseries = ns, .hlines = refs, .nhlines = 2, .xticks = x,
        .nxticks = nr, .xtick_format = "%.0f %%", .legend = PLOT_LEGEND_OUTSIDE};
    return plot_charts_png(path, 900, 560, NULL, &chart, 1);
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

/* The grid of runs a report covers. */
typedef struct {
    const char *runs;
    char **ratios, **seeds;
    int nr, ns;
} Grid;

/* A table's header: "| first | 10 % | ... | Avg. |" and its rule. */
static void table_header(FILE *f, const char *first, const Grid *g) {
    fprintf(f, "| %s |", first);
    for (int r = 0; r < g->nr; r++) fprintf(f, " %.0f %% |", 100 * atof(g->ratios[r]));
    fprintf(f, " Avg. |\n|---|");
    for (int r = 0; r <= g->nr; r++) fprintf(f, "---|");
    fprintf(f, "\n");
}

/* One row of `key` for the runs tagged `tag` (into *t). */
static Status table_row(FILE *f, const Grid *g, const char *tag, const char *label,
                        const char *key, Series *t) {
    Status st = collect(t, g->runs, tag, key, g->ratios, g->nr, g->seeds, g->ns);
    if (st != STATUS_OK) return st;
    fprintf(f, "| %s |", label);
    for (int r = 0; r < g->nr; r++) cell(f, t->mean[r], t->sd[r]);
    cell(f, avg(t, g->nr), NAN);
    fprintf(f, "\n");
    return STATUS_OK;
}

static void write_intro(FILE *f, const Grid *g, const char *command, const double z[3],
                        double chance) {
    fprintf(f, "# Results on the embedded synthetic world\n\n");
    fprintf(f, "Generated by `trmml results` from the runs of `make results` (scripts/embedded.sh"
               " results)%s%s%s. Every number is the mean ± sample standard deviation over seeds "
               "%s", command ? ": `" : "", command ? command : "", command ? "`" : "", g->seeds[0]);
    for (int k = 1; k < g->ns; k++) fprintf(f, ", %s", g->seeds[k]);
    fprintf(f, " (the seed draws the label mask and the learnable initialisation), on the "
               "synthetic test split, in percent. docs/embedded.md explains the setting and "
               "discusses these numbers.\n\n");
    fprintf(f, "Reference: zero-shot CLIP (the small pretrained model, prompts \"a photo of a "
               "{class}.\") mAP %.2f, CF1 %.2f, OF1 %.2f; chance-level mAP (random scores) %.2f.\n",
            z[0], z[1], z[2], chance);
}

/* The mAP, CF1 and OF1 tables of the methods (their mAP series into s), TRM-ML's components,
 * and where TRM-ML is or is not ahead of DualCoOp (issue 6: the table is honest). */
static Status write_tables(FILE *f, const Grid *g, Series s[NMETHODS]) {
    static const char *keys[3] = {"mAP", "CF1", "OF1"};
    Status st = STATUS_OK;
    for (int q = 0; q < 3 && st == STATUS_OK; q++) {
        fprintf(f, "\n## %s by label ratio\n\n", keys[q]);
        table_header(f, "method", g);
        for (int k = 0; k < NMETHODS && st == STATUS_OK; k++) {
            Series t;
            st = table_row(f, g, METHODS[k].tag, METHODS[k].label, keys[q], &t);
            if (q == 0 && st == STATUS_OK) s[k] = t;
        }
    }
    fprintf(f, "\n## TRM-ML's components (the paper's Table 3), mAP\n\n");
    table_header(f, "components", g);
    for (int k = 0; k < NABL && st == STATUS_OK; k++) {
        Series t;
        st = table_row(f, g, ABLATION[k].tag, ABLATION[k].label, "mAP", &t);
    }
    fprintf(f, "\n## TRM-ML against DualCoOp, ratio by ratio (mAP)\n\n");
    for (int r = 0; r < g->nr && st == STATUS_OK; r++) {
        const double a = s[2].mean[r], b = s[1].mean[r];
        if (!isfinite(a) || !isfinite(b)) continue;
        fprintf(f, "- %.0f %%: TRM-ML %.2f, DualCoOp %.2f: %s\n", 100 * atof(g->ratios[r]), a, b,
                a > b ? "TRM-ML is ahead" : "TRM-ML is NOT ahead");
    }
    return st;
}

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
    const char *zs = o.zeroshot, *out = o.out, *png = o.plot;
    char *ratio_s = o.ratios ? strdup(o.ratios) : NULL, *seed_s = o.seeds ? strdup(o.seeds) : NULL;
    char *ratios[MAX_RATIOS], *seeds[MAX_SEEDS];
    Grid g = {o.runs, ratios, seeds, ratio_s ? split_words(ratio_s, ratios, MAX_RATIOS) : 0,
              seed_s ? split_words(seed_s, seeds, MAX_SEEDS) : 0};
    if (!g.runs || !zs || !out || !png || !g.nr || !g.ns || !isfinite(o.chance)) {
        fprintf(stderr, "trmml results: --runs, --zeroshot, --chance, --ratios, --seeds, --out and "
                        "--plot are required\n");
        free(ratio_s), free(seed_s);
        return 2;
    }
    double z[3];
    Status st = read_metric(zs, "zero-shot metrics", "mAP", &z[0]);
    if (st == STATUS_OK) st = read_metric(zs, "zero-shot metrics", "CF1", &z[1]);
    if (st == STATUS_OK) st = read_metric(zs, "zero-shot metrics", "OF1", &z[2]);
    if (st != STATUS_OK) {
        fprintf(stderr, "trmml results: --zeroshot: %s\n", error_last());
        free(ratio_s), free(seed_s);
        return 1;
    }
    char *md = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&md, &len);
    CHECK(f, "trmml results: open_memstream failed");
    write_intro(f, &g, o.command, z, o.chance);
    Series s[NMETHODS];
    st = write_tables(f, &g, s);
    fprintf(f, "\n![mAP against the label ratio](%s)\n", strrchr(png, '/') ? strrchr(png, '/') + 1 : png);
    fclose(f);
    /* The plot first: a bad input leaves neither file written. */
    if (st == STATUS_OK) {
        const char *names[NMETHODS] = {"baseline", "DualCoOp", "TRM-ML", "PVLR"};
        st = plot(png, s, NMETHODS, names, z[0], o.chance, ratios, g.nr);
    }
    if (st == STATUS_OK) st = xwrite_file_atomic(out, md, len);
    free(md);
    free(ratio_s), free(seed_s);
    if (st != STATUS_OK) {
        fprintf(stderr, "trmml results: %s\n", error_last());
        return 1;
    }
    printf("trmml results: wrote %s and %s\n", out, png);
    return 0;
}
