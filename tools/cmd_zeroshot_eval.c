/* cmd_zeroshot_eval.c — `trmml zeroshot-eval`: zero-shot CLIP's mAP family on a dataset split
 * (trmml/zeroshot.h), the reference row of the embedded default's table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip/tokenizer.h"
#include "datasets/metrics.h"
#include "tools/command.h"
#include "trmml/evaluate.h"
#include "trmml/zeroshot.h"

static int fail(Status st) {
    fprintf(stderr, "trmml zeroshot-eval: %s\n", error_last());
    return st == STATUS_ERR_USAGE ? 2 : 1;
}

COMMAND_AS(zeroshot_eval, "zeroshot-eval", "zero-shot CLIP's mAP, CF1, OF1 on a dataset split",
           "trmml zeroshot-eval --model FILE --dataset NAME --root DIR --split S [--size N]\n"
           "                    [--class-list F] [--image-dir D] [--vocab F] [--out FILE.json]\n"
           "                    [--feature pooled|token0]\n"
           "  Scores every image with p_c = softmax over classes of exp(logit_scale) *\n"
           "  cos(image, \"a photo of a {class}.\") at N x N (default: the model's native side;\n"
           "  bicubic resize of the shorter side, centre crop) and prints the metrics JSON\n"
           "  (datasets/metrics.h); --out also writes it to FILE.json. --feature token0 scores\n"
           "  with token 0 of the dense features (no attention) instead of the pooled embedding.") {
    const char *model_path = NULL, *name = NULL, *root = NULL, *split = NULL, *vocab = NULL;
    const char *out = NULL;
    DsOptions dopt = {0};
    int size = 0;
    ZeroShotFeature feature = ZEROSHOT_POOLED;
    static const char *const value_flags[] = {
        "--model",     "--dataset", "--root", "--split",   "--class-list",
        "--image-dir", "--vocab",   "--out",  "--feature", "--size",       NULL};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v;
        int rc = tool_flag_value("zeroshot-eval", argc, argv, &i, value_flags, &v);
        if (rc) return rc;
        if (strcmp(f, "--model") == 0) model_path = v;
        else if (strcmp(f, "--dataset") == 0) name = v;
        else if (strcmp(f, "--root") == 0) root = v;
        else if (strcmp(f, "--split") == 0) split = v;
        else if (strcmp(f, "--class-list") == 0) dopt.class_list = v;
        else if (strcmp(f, "--image-dir") == 0) dopt.image_dir = v;
        else if (strcmp(f, "--vocab") == 0) vocab = v;
        else if (strcmp(f, "--out") == 0) out = v;
        else if (strcmp(f, "--feature") == 0) {
            if (strcmp(v, "pooled") && strcmp(v, "token0")) {
                fprintf(stderr, "trmml zeroshot-eval: --feature '%s': expected pooled or token0\n", v);
                return 2;
            }
            feature = strcmp(v, "token0") == 0 ? ZEROSHOT_TOKEN0 : ZEROSHOT_POOLED;
        }
        else if (strcmp(f, "--size") == 0) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 32 || n > 4096 || n % 32) {
                fprintf(stderr, "trmml zeroshot-eval: --size '%s': expected a multiple of 32 in "
                                "[32, 4096]\n", v);
                return 2;
            }
            size = (int)n;
        } else
            CHECK(false, "zeroshot-eval: value flag %s not handled", f);
    }
    if (!model_path || !name || !root || !split) {
        fprintf(stderr, "trmml zeroshot-eval: --model, --dataset, --root and --split are required\n");
        return 2;
    }
    Dataset *ds = NULL;
    ClipTokenizer *tok = NULL;
    ClipModel *clip = NULL;
    Status st = ds_open(name, root, split, &dopt, &ds);
    if (st == STATUS_OK) st = clip_tokenizer_load(clip_vocab_path(vocab), &tok);
    if (st == STATUS_OK) st = trmml_load_clip(model_path, &clip);
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
    int rc = st == STATUS_OK ? 0 : fail(st);
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
