/* cmd_zeroshot_eval.c — `trmml zeroshot-eval`: zero-shot CLIP's mAP family on a dataset split
 * (trmml/zeroshot.h), the reference row of the embedded default's table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip/tokenizer.h"
#include "datasets/metrics.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "trmml/evaluate.h"
#include "trmml/zeroshot.h"

typedef struct {
    ModelFlags model;
    DatasetFlags ds;
    const char *out;
    int64_t size;
    int feature; /* a ZeroShotFeature, spelled FEATURE_NAMES[feature] */
    int precision; /* Precision, --precision */
} ZeroshotEvalFlags;

static const char *const FEATURE_NAMES[] = {"pooled", "token0", NULL}; /* in enum order */

static const KeySpec ZEROSHOT_EVAL_FLAGS[] = {
    FLAG_ARG(ZeroshotEvalFlags, "out", out, "FILE.json", "also write the metrics JSON there"),
    FLAG_ENUM(ZeroshotEvalFlags, "feature", feature, FEATURE_NAMES,
              "score with the pooled embedding, or token 0 of the dense features (no attention)"),
};

COMMAND_AS(zeroshot_eval, "zeroshot-eval", "zero-shot CLIP's mAP, CF1, OF1 on a dataset split",
           "trmml zeroshot-eval --model FILE --dataset NAME --root DIR --split S [options]\n"
           "  Scores every image with p_c = softmax over classes of exp(logit_scale) *\n"
           "  cos(image, \"a photo of a {class}.\") at N x N (--size; bicubic resize of the shorter\n"
           "  side, centre crop) and prints the metrics JSON (datasets/metrics.h).") {
    ZeroshotEvalFlags o = {.feature = ZEROSHOT_POOLED};
    const KeyGroup groups[] = {MODEL_GROUP(&o.model), DATASET_GROUP(&o.ds, DATASET_SPLIT),
                               FLAGS_OF(ZEROSHOT_EVAL_FLAGS, &o), SIZE_GROUP(&o.size), PRECISION_GROUP(&o.precision)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.model.model || !o.ds.dataset || !o.ds.root || !o.ds.split)
        return tool_usage_error("--model, --dataset, --root and --split are required");
    const DsOptions dopt = flags_ds_options(&o.ds);
    int size = (int)o.size;
    const ZeroShotFeature feature = (ZeroShotFeature)o.feature;
    const char *out = o.out;
    Status st = tool_device_select(NULL);
    Dataset *ds = NULL;
    ClipTokenizer *tok = NULL;
    ClipModel *clip = NULL;
    if (st == STATUS_OK) st = ds_open(o.ds.dataset, o.ds.root, o.ds.split, &dopt, &ds);
    if (st == STATUS_OK) st = clip_tokenizer_load(clip_vocab_path(o.model.vocab), &tok);
    if (st == STATUS_OK) st = trmml_load_clip(o.model.model, &clip);
    double *scores = NULL, *targets = NULL, *ap = NULL;
    char *json = NULL;
    if (st == STATUS_OK) {
        const int64_t N = ds->n, C = ds->c;
        if (!size) size = (int)(32 * clip->cfg.vision.grid);
        scores = xmalloc((size_t)(N * C) * sizeof *scores);
        targets = xmalloc((size_t)(N * C) * sizeof *targets);
        ap = xmalloc((size_t)C * sizeof *ap);
        for (int64_t i = 0; i < N * C; i++) targets[i] = ds->labels[i];
        st = trmml_zeroshot_scores(clip, tok, ds, size, 32, feature, scores);
        Metrics m;
        if (st == STATUS_OK) st = ds_metrics(&m, ap, scores, targets, N, C);
        if (st == STATUS_OK) json = ds_metrics_json(&m);
        if (st == STATUS_OK)
            fprintf(stderr, "zeroshot-eval: %lld images, %lld classes, mAP %.2f, chance-level mAP "
                            "%.4f (random scores)\n", (long long)N, (long long)C, m.map,
                    ds_chance_map(targets, N, C));
    }
    if (st == STATUS_OK && out) {
        char *text = xmalloc(strlen(json) + 2);
        sprintf(text, "%s\n", json);
        st = xwrite_file_atomic(out, text, strlen(text));
        free(text);
    }
    rc = st == STATUS_OK ? 0 : tool_fail(st);
    if (rc == 0) printf("%s\n", json);
    free(json);
    free(scores);
    free(targets);
    free(ap);
    if (clip) clip_model_free(clip);
    clip_tokenizer_free(tok);
    ds_free(ds);
    return rc;
}
