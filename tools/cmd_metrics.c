/* cmd_metrics.c — `trmml metrics`: mAP and the threshold metrics of a score matrix against a
 * target matrix, as one JSON object on stdout (definitions: datasets/metrics.h, SPEC §7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/csv.h"
#include "datasets/metrics.h"
#include "tools/command.h"
#include "tools/flags.h"

typedef struct {
    const char *scores, *targets;
} MetricsFlags;

static const KeySpec METRICS_FLAGS[] = {
    FLAG_ARG(MetricsFlags, "scores", scores, "S.csv",
             "N x C probabilities, comma-separated, one image per line"),
    FLAG_ARG(MetricsFlags, "targets", targets, "T.csv",
             "N x C labels: +1 positive; anything else (-1, 0, ...) negative"),
};

COMMAND(metrics, "mAP, per-class AP, CP/CR/CF1/OP/OR/OF1 and top-3 of scores against targets",
        "trmml metrics --scores S.csv --targets T.csv\n"
        "Prints one JSON object, all values in percent:\n"
        "  {\"mAP\":..,\"AP\":[..],\"CP\":..,\"CR\":..,\"CF1\":..,\"OP\":..,\"OR\":..,\"OF1\":..,\n"
        "   \"top3\":{\"CP\":..,\"CR\":..,\"CF1\":..,\"OP\":..,\"OR\":..,\"OF1\":..}}\n"
        "CSV: no header; blank lines and lines starting with '#' are skipped.\n"
        "Exit status: 0 success, 1 unreadable or malformed input, 2 usage error.") {
    MetricsFlags o = {0};
    const KeyGroup groups[] = {FLAGS_OF(METRICS_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.scores || !o.targets) return tool_usage_error("missing --%s", o.scores ? "targets" : "scores");
    if (!*o.scores || !*o.targets) return tool_usage_error("an empty file name");
    const char *scores_path = o.scores, *targets_path = o.targets;
    double *scores = NULL, *targets = NULL, *ap = NULL;
    int64_t n, nc, tn, tnc;
    Status st = ds_csv_read(scores_path, &scores, &n, &nc);
    if (st == STATUS_OK) st = ds_csv_read(targets_path, &targets, &tn, &tnc);
    if (st == STATUS_OK && (tn != n || tnc != nc))
        st = error_set(STATUS_ERR_FORMAT,
                       "shape mismatch: scores '%s' are %lld x %lld, targets '%s' are %lld x %lld",
                       scores_path, (long long)n, (long long)nc, targets_path, (long long)tn,
                       (long long)tnc);
    Metrics m;
    if (st == STATUS_OK) {
        ap = xmalloc(sizeof *ap * (size_t)nc);
        st = ds_metrics(&m, ap, scores, targets, n, nc);
        if (st != STATUS_OK) error_set(st, "%s: %s", scores_path, error_last());
    }
    if (st == STATUS_OK) {
        char *json = ds_metrics_json(&m);
        printf("%s\n", json);
        free(json);
    } else {
        fprintf(stderr, "trmml metrics: %s\n", error_last());
    }
    free(scores);
    free(targets);
    free(ap);
    return st == STATUS_OK ? 0 : 1;
}
