/* cmd_dataset.c — `trmml mask` and `trmml verify-dataset`: the dataset readers
 * (datasets/dataset.h) joined with the label protocols (datasets/mask.h) and the image decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/csv.h"
#include "datasets/dataset.h"
#include "tensor/image.h"
#include "datasets/mask.h"
#include "tensor/text.h"
#include "tools/command.h"
#include "tools/flags.h"

typedef struct {
    DatasetFlags ds;
    const char *out;
    double ratio;  /* 0: not given */
    int64_t seed;  /* -1: the protocol's default */
    bool single_positive;
} MaskFlags;

static const KeySpec MASK_FLAGS[] = {
    FLAG_ARG(MaskFlags, "out", out, "FILE.csv", "the mask to write"),
    FLAG_DOUBLE(MaskFlags, "ratio", ratio, 0, 1, "R",
                "keep each label with probability R in (0, 1] (element-wise, nested across ratios)"),
    FLAG_SWITCH(MaskFlags, "single-positive", single_positive, "keep one positive per image"),
    FLAG_INT(MaskFlags, "seed", seed, 0, 4294967295.0, "S",
             "MT19937 seed (default 0; 1200 with --single-positive, as the reference)"),
};

COMMAND(mask, "write a partial-label or single-positive training mask (SPEC §6.1, §6.7)",
        "trmml mask --dataset NAME --root DIR --split S --ratio R --out FILE.csv [options]\n"
        "trmml mask --dataset NAME --root DIR --split S --single-positive --out FILE.csv [options]\n"
        "Writes the N x C matrix of +1/-1/0 as CSV, headed by a '#' line with the protocol, seed,\n"
        "counts and the SHA-256 of the mask; prints the same line on stderr.") {
    MaskFlags o = {.seed = -1};
    const KeyGroup groups[] = {DATASET_GROUP(&o.ds, DATASET_ALL), FLAGS_OF(MASK_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.ds.dataset || !o.ds.root || !o.ds.split || !o.out)
        return tool_usage_error("--dataset, --root, --split and --out are required");
    if (o.single_positive == (o.ratio > 0))
        return tool_usage_error("give exactly one of --ratio R (R > 0) and --single-positive");
    const uint32_t seed = o.seed >= 0 ? (uint32_t)o.seed : (o.single_positive ? 1200u : 0u);
    const DsOptions opt = flags_ds_options(&o.ds);
    Dataset *ds = NULL;
    Status st = ds_open(o.ds.dataset, o.ds.root, o.ds.split, &opt, &ds);
    if (st != STATUS_OK) return tool_fail(st);
    int8_t *mask = xmalloc((size_t)(ds->n * ds->c) + 1);
    MaskInfo info;
    st = o.single_positive
             ? ds_mask_single_positive(mask, ds->labels, ds->n, ds->c, seed, &info)
             : ds_mask_partial(mask, ds->labels, ds->n, ds->c, o.ratio, seed, &info);
    char line[512];
    if (st == STATUS_OK) {
        ds_mask_info_format(&info, line, sizeof line);
        st = ds_csv_write_labels(o.out, mask, ds->n, ds->c, line);
    }
    if (st == STATUS_OK)
        fprintf(stderr, "%s: %s %s, %lld images x %lld classes\n%s\n", o.out, o.ds.dataset,
                o.ds.split, (long long)ds->n, (long long)ds->c, line);
    else
        rc = tool_fail(st);
    free(mask);
    ds_free(ds);
    return st == STATUS_OK ? 0 : rc;
}

/* The splits verify-dataset looks at when --split is not given. */
static const char *default_splits(const char *name) {
    if (strncmp(name, "voc", 3) == 0) return "trainval,test";
    if (strcmp(name, "coco2014") == 0) return "train,val";
    return "train,test";
}

typedef struct {
    DatasetFlags ds; /* --split: a comma-separated list */
    bool no_decode;
} VerifyFlags;

static const KeySpec VERIFY_FLAGS[] = {
    FLAG_SWITCH(VerifyFlags, "no-decode", no_decode,
                "check that images exist, without decoding them"),
};

COMMAND_AS(verify_dataset, "verify-dataset", "check a dataset tree: counts, missing or unreadable images, empty rows",
        "trmml verify-dataset --dataset NAME --root DIR [--split S] [options]\n"
        "  Opens each split (default: trainval,test for VOC; train,val for COCO; train,test\n"
        "  otherwise) and reports per split: images and classes, list entries the reader dropped,\n"
        "  missing images, images that do not decode (every image is decoded unless --no-decode),\n"
        "  and images without any positive label. Exit status 1 when anything is missing or\n"
        "  unreadable.") {
    VerifyFlags o = {0};
    const KeyGroup groups[] = {DATASET_GROUP(&o.ds, DATASET_ALL), FLAGS_OF(VERIFY_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.ds.dataset || !o.ds.root) return tool_usage_error("--dataset and --root are required");
    char splits[256];
    snprintf(splits, sizeof splits, "%s", o.ds.split ? o.ds.split : default_splits(o.ds.dataset));
    const DsOptions opt = flags_ds_options(&o.ds);
    int problems = 0, opened = 0;
    for (char *save = NULL, *s = strtok_r(splits, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        Dataset *ds = NULL;
        Status st = ds_open(o.ds.dataset, o.ds.root, s, &opt, &ds);
        if (st != STATUS_OK) {
            printf("%s %s: cannot open: %s\n", o.ds.dataset, s, error_last());
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
            if (o.no_decode) continue;
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
               o.ds.dataset, s, (long long)ds->n, (long long)ds->c, (long long)ds->n_dropped, first,
               (long long)missing, o.no_decode ? "not decoded: " : "", (long long)unreadable,
               (long long)empty);
        problems += missing > 0 || unreadable > 0;
        ds_free(ds);
    }
    if (!opened) return 1;
    return problems ? 1 : 0;
}
