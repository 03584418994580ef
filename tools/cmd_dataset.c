/* cmd_dataset.c — `trmml mask` and `trmml verify-dataset`: the dataset readers
 * (datasets/dataset.h) joined with the label protocols (datasets/mask.h) and the image decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/csv.h"
#include "datasets/dataset.h"
#include "datasets/image.h"
#include "datasets/mask.h"
#include "tensor/text.h"
#include "tools/command.h"

/* Options shared by both commands. Returns 0, or 2 after printing a usage error. */
typedef struct {
    const char *dataset, *root, *split, *out;
    const char *image_dir, *class_list, *split_list, *labels;
    double ratio;
    bool have_ratio, single_positive, dualcoop_labels, no_decode;
    long seed;
} DsArgs;

static int parse_args(const char *cmd, int argc, char **argv, DsArgs *a) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        const char **target = NULL;
        if (strcmp(f, "--dataset") == 0) target = &a->dataset;
        else if (strcmp(f, "--root") == 0) target = &a->root;
        else if (strcmp(f, "--split") == 0) target = &a->split;
        else if (strcmp(f, "--out") == 0) target = &a->out;
        else if (strcmp(f, "--image-dir") == 0) target = &a->image_dir;
        else if (strcmp(f, "--class-list") == 0) target = &a->class_list;
        else if (strcmp(f, "--split-list") == 0) target = &a->split_list;
        else if (strcmp(f, "--labels") == 0) target = &a->labels;
        else if (strcmp(f, "--single-positive") == 0) { a->single_positive = true; continue; }
        else if (strcmp(f, "--dualcoop-labels") == 0) { a->dualcoop_labels = true; continue; }
        else if (strcmp(f, "--no-decode") == 0) { a->no_decode = true; continue; }
        else if (strcmp(f, "--ratio") == 0 || strcmp(f, "--seed") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "trmml %s: %s needs a value\n", cmd, f);
                return 2;
            }
            char *end;
            const char *v = argv[++i];
            if (f[2] == 'r') {
                a->ratio = strtod(v, &end);
                if (*end || end == v || !(a->ratio > 0.0 && a->ratio <= 1.0)) {
                    fprintf(stderr, "trmml %s: --ratio '%s': expected a number in (0, 1]\n", cmd, v);
                    return 2;
                }
                a->have_ratio = true;
            } else {
                a->seed = strtol(v, &end, 10);
                if (*end || end == v || a->seed < 0 || a->seed > 4294967295L) {
                    fprintf(stderr, "trmml %s: --seed '%s': expected an integer in [0, 2^32)\n", cmd, v);
                    return 2;
                }
            }
            continue;
        } else {
            fprintf(stderr, "trmml %s: unknown option '%s' (see trmml %s --help)\n", cmd, f, cmd);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "trmml %s: %s needs a value\n", cmd, f);
            return 2;
        }
        *target = argv[++i];
    }
    if (!a->dataset || !a->root) {
        fprintf(stderr, "trmml %s: --dataset and --root are required (see trmml %s --help)\n", cmd, cmd);
        return 2;
    }
    return 0;
}

static DsOptions ds_options(const DsArgs *a) {
    DsOptions o = {0};
    o.image_dir = a->image_dir;
    o.class_list = a->class_list;
    o.split_list = a->split_list;
    o.labels = a->labels;
    o.convention = a->dualcoop_labels ? DS_LABELS_DUALCOOP : DS_LABELS_PM1;
    return o;
}

COMMAND(mask, "write a partial-label or single-positive training mask (SPEC §6.1, §6.7)",
        "trmml mask --dataset NAME --root DIR --split S --ratio R [--seed 0] --out FILE.csv\n"
        "trmml mask --dataset NAME --root DIR --split S --single-positive [--seed 0] --out FILE.csv\n"
        "  NAME: voc2007 voc2012 coco2014 nuswide vg200 cub\n"
        "  --ratio R           keep each label with probability R (element-wise, MT19937 seed 0 by\n"
        "                      default, nested across ratios)\n"
        "  --single-positive   keep one positive per image (default seed 1200 as the reference)\n"
        "  --image-dir, --class-list, --split-list, --labels   override the layout's paths\n"
        "  --dualcoop-labels   label files use 1/0/-1 (positive/negative/unknown)\n"
        "Writes the N x C matrix of +1/-1/0 as CSV, headed by a '#' line with the protocol, seed,\n"
        "counts and the SHA-256 of the mask; prints the same line on stderr.") {
    DsArgs a;
    int rc = parse_args("mask", argc, argv, &a);
    if (rc) return rc;
    if (!a.split || !a.out) {
        fprintf(stderr, "trmml mask: --split and --out are required\n");
        return 2;
    }
    if (a.single_positive == a.have_ratio) {
        fprintf(stderr, "trmml mask: give exactly one of --ratio R and --single-positive\n");
        return 2;
    }
    bool seed_given = false;
    for (int i = 0; i < argc; i++) seed_given |= strcmp(argv[i], "--seed") == 0;
    uint32_t seed = seed_given ? (uint32_t)a.seed : (a.single_positive ? 1200u : 0u);

    DsOptions opt = ds_options(&a);
    Dataset *ds = NULL;
    Status st = ds_open(a.dataset, a.root, a.split, &opt, &ds);
    if (st != STATUS_OK) {
        fprintf(stderr, "trmml mask: %s\n", error_last());
        return st == STATUS_ERR_USAGE ? 2 : 1;
    }
    int8_t *mask = xmalloc((size_t)(ds->n * ds->c) + 1);
    MaskInfo info;
    st = a.single_positive
             ? ds_mask_single_positive(mask, ds->labels, ds->n, ds->c, seed, &info)
             : ds_mask_partial(mask, ds->labels, ds->n, ds->c, a.ratio, seed, &info);
    char line[512];
    if (st == STATUS_OK) {
        ds_mask_info_format(&info, line, sizeof line);
        st = ds_csv_write_labels(a.out, mask, ds->n, ds->c, line);
    }
    if (st == STATUS_OK)
        fprintf(stderr, "%s: %s %s, %lld images x %lld classes\n%s\n", a.out, a.dataset, a.split,
                (long long)ds->n, (long long)ds->c, line);
    else
        fprintf(stderr, "trmml mask: %s\n", error_last());
    free(mask);
    ds_free(ds);
    return st == STATUS_OK ? 0 : 1;
}

/* The splits verify-dataset looks at when --split is not given. */
static const char *default_splits(const char *name) {
    if (strncmp(name, "voc", 3) == 0) return "trainval,test";
    if (strcmp(name, "coco2014") == 0) return "train,val";
    return "train,test";
}

COMMAND_AS(verify_dataset, "verify-dataset", "check a dataset tree: counts, missing or unreadable images, empty rows",
        "trmml verify-dataset --dataset NAME --root DIR [--split S] [--no-decode] [path options]\n"
        "  Opens each split (default: trainval,test for VOC; train,val for COCO; train,test\n"
        "  otherwise) and reports per split: images and classes, list entries the reader dropped,\n"
        "  missing images, images that do not decode (every image is decoded unless --no-decode),\n"
        "  and images without any positive label. Exit status 1 when anything is missing or\n"
        "  unreadable.") {
    DsArgs a;
    int rc = parse_args("verify-dataset", argc, argv, &a);
    if (rc) return rc;
    char splits[256];
    snprintf(splits, sizeof splits, "%s", a.split ? a.split : default_splits(a.dataset));
    DsOptions opt = ds_options(&a);
    int problems = 0, opened = 0;
    for (char *save = NULL, *s = strtok_r(splits, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        Dataset *ds = NULL;
        Status st = ds_open(a.dataset, a.root, s, &opt, &ds);
        if (st != STATUS_OK) {
            printf("%s %s: cannot open: %s\n", a.dataset, s, error_last());
            problems++;
            continue;
        }
        opened++;
        int64_t missing = 0, unreadable = 0, empty = 0;
        for (int64_t i = 0; i < ds->n; i++) {
            const char *path = ds_image_path(ds, i);
            const int8_t *row = ds_label_row(ds, i);
            bool pos = false;
            for (int64_t c = 0; c < ds->c; c++) pos |= row[c] == 1;
            empty += !pos;
            if (!ds_is_file(path)) {
                if (missing++ < 5) printf("  missing: %s\n", text_for_message(path));
                continue;
            }
            if (a.no_decode) continue;
            Image im = {0};
            if (image_load(path, &im, NULL) != STATUS_OK) {
                if (unreadable++ < 5) printf("  unreadable: %s\n", error_last());
            }
            image_free(&im);
        }
        char first[300] = "";
        if (ds->n_dropped)
            snprintf(first, sizeof first, " (first: %s)", text_for_message(ds->dropped_example));
        printf("%s %s: %lld images, %lld classes, %lld dropped by the reader%s, %lld missing, "
               "%s%lld unreadable, %lld without a positive label\n",
               a.dataset, s, (long long)ds->n, (long long)ds->c, (long long)ds->n_dropped, first,
               (long long)missing, a.no_decode ? "not decoded: " : "", (long long)unreadable,
               (long long)empty);
        problems += missing > 0 || unreadable > 0;
        ds_free(ds);
    }
    if (!opened) return 1;
    return problems ? 1 : 0;
}
