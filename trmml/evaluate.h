/* evaluate.h — evaluation and use of a trained run: test-split scores and the mAP family
 * (SPEC §7, datasets/metrics.h), reopening a run directory, single-image prediction and the
 * region maps behind `trmml visualize` (the soft regions R = σ(Φ) of TRM-ML, SPEC §4.2 Eq. 2;
 * DualCoOp's spatial weights w, SPEC §3). */
#pragma once
#include <stdint.h>

#include "clip/model.h"
#include "clip/tokenizer.h"
#include "datasets/dataset.h"
#include "tensor/image.h"
#include "datasets/metrics.h"
#include "trmml/run.h"
#include "trmml/train.h"

/* The batch of evaluation, during training (metrics.jsonl) and in `trmml eval`: both score the
 * same images in the same batches, so on the same machine and thread count they print the same
 * numbers to the last digit (a different batch changes the GEMM shapes and so the rounding). */
#define TRMML_EVAL_BATCH 64

/* Positive-class probabilities of every item of src into scores (n x C, row-major), in batches
 * of `batch` images, no tape. Under MPI every rank calls it: the ranks score the batches in
 * turn and every rank receives all scores (an error on any rank is every rank's). */
Status trmml_scores(const TrmmlModel *m, TrmmlBatchSource *src, int64_t batch, double *scores);

typedef struct {
    Metrics metrics;   /* metrics.ap points at ap */
    double *ap;        /* (C) per-class AP in percent, owned */
    char *json;        /* ds_metrics_json, owned */
} TrmmlEval;

/* Score src (the items of ds, in order) and compute the metrics against ds's labels. */
Status trmml_evaluate(const TrmmlModel *m, TrmmlBatchSource *src, const Dataset *ds,
                      int64_t batch, TrmmlEval *out);
void trmml_eval_free(TrmmlEval *e);
/* "class,AP" then one line per class (AP in percent), written via tmp + rename. */
Status trmml_write_ap_csv(const char *path, char *const *names, const double *ap, int64_t C);

/* A run directory reopened for evaluation and use: its configuration, the CLIP model it names,
 * the class names, and the model with the checkpoint's learnable state. */
typedef struct {
    RunConfig cfg;
    RunMeta meta;
    ClipModel *clip;
    ClipTokenizer *tok;
    char **names;      /* C class names (owned) */
    int64_t C;
    TrmmlModel model;
} TrmmlRun;

/* Load a CLIP checkpoint (any format clip/checkpoint.h reads) into a model on the CPU. */
Status trmml_load_clip(const char *path, ClipModel **out);
/* Open dir: config.txt, classes.txt, the CLIP checkpoint, checkpoint.safetensors. Errors name
 * the missing or bad file. */
Status trmml_run_open(const char *dir, TrmmlRun *run);
void trmml_run_close(TrmmlRun *run);

/* Dense features (1, HW+1, E) of one image with the method's test transform, no tape. */
Tensor *trmml_image_dense(const TrmmlModel *m, const Image *im);
/* The image with map (g x g, values in [0, 1]) upsampled bilinearly to its size and blended
 * as a heat map (alpha 0.5). A new image (image_free). */
Image trmml_heatmap_overlay(const Image *im, const float *map, int g);
