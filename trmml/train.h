/* train.h — training any method of trmml/methods.c (TRM-ML, SPEC §4; DualCoOp, SPEC §3; PVLR,
 * SPEC §5; the Table-3 baseline, SPEC §9.3) on a frozen CLIP: the model of a run, batch sources,
 * the optimizer with resumable state, one training iteration, and the whole run (stages,
 * schedules, evaluation, checkpoints, resume). The method enters only through its table of
 * operations (trmml/method.h, docs/methods.md).
 *
 * Memory (docs/training.md). A step computes the text features G+, G- once, without a tape
 * (trmml_prompt_features_detached; or, when all classes fit in one chunk, with a tape that is set
 * aside and reused in place of the recompute: trmml_prompt_features_kept), splits the batch into micro-batches of tc.micro_batch images
 * whose head forward/backward passes accumulate parameter gradients and dL/dG, back-propagates
 * dL/dG through the text tower chunk by chunk (trmml_prompt_backward, tc.text_chunk classes at a
 * time), and takes one optimizer step. Every loss term is exact under this split: the per-image
 * terms (L_cls, L_KD, DualCoOp's ASL) are weighted by micro-batch size over batch size where
 * they average over images; the batch-level parts of TRM-ML (MMCP's threshold statistics and
 * pseudo-labels, MMCL's InfoNCE over all positive regions of the batch) are computed on the
 * whole batch's region features F^r, found first without a tape, and the InfoNCE gradient with
 * respect to F^r is carried into each micro-batch's backward pass (docs/training.md, "One step").
 *
 * Determinism: shuffling, dropout and augmentation draw from generators seeded by
 * (seed, stage, epoch or step), so a run resumed from a checkpoint repeats the uninterrupted
 * run's computation exactly. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "clip/model.h"
#include "clip/tokenizer.h"
#include "datasets/dataset.h"
#include "trmml/method.h"
#include "trmml/prompt.h"
#include "trmml/run.h"

/* ---- the model of a run ------------------------------------------------------------------- */

/* The model of a run: the frozen CLIP, the prompt learner every method shares, and the head of
 * the run's method (trmml/method.h), whose parameters live in one store. */
struct TrmmlModel {
    const TrmmlMethodOps *ops; /* the run's method */
    int method;                /* its index (RunConfig.method) */
    RunConfig cfg;             /* copy of the run's configuration */
    const ClipModel *clip;     /* frozen towers (borrowed; NULL for declare-only models) */
    int64_t C, d;              /* classes, joint width E */
    ParamStore *ps;            /* learnable parameters (owned) */
    PromptLearner prompt;      /* the learned prompts (ctx_pos NULL when the method has none) */
    void *head;                /* the method's state (ops->declare allocates, ops->free frees) */
};

/* Declare the learnable parameters of rc->method for C classes, joint width d and text width
 * `width` into a new store (not finalized), without a CLIP model: for parameter counts. */
void trmml_model_declare(TrmmlModel *m, const RunConfig *rc, int64_t C, int64_t d, int64_t width);
/* The full model: declare, finalize, set the prompt templates of `names` (tokenised with tok)
 * and compute the query-initialisation text features; then trmml_model_init. Errors: a class
 * name that does not fit in a prompt (STATUS_ERR_USAGE naming it). */
Status trmml_model_create(TrmmlModel *m, const RunConfig *rc, const ClipModel *clip,
                          const ClipTokenizer *tok, char *const *names, int64_t C);
/* (Re-)initialise every learnable parameter from `seed` (prompts, head, temperature) and reset
 * the MMCP state (bank, thresholds; prototypes are kept unless reset_prototypes). */
void trmml_model_init(TrmmlModel *m, uint64_t seed, bool reset_prototypes);
void trmml_model_free(TrmmlModel *m);

/* Text features G+, G- (C, E) of the current prompts, without a tape (current arena); pvlr:
 * G+ = T^C and G- NULL (both NULL with CAP off). */
void trmml_model_text_features(const TrmmlModel *m, Tensor **gpos, Tensor **gneg);
/* Positive-class probabilities (B, C) of dense (B, HW+1, E) given text features, no tape: the
 * method's `probs` (trmml/method.h). */
Tensor *trmml_model_probs(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg);
/* Spatial maps (B, C, HW) of dense (B, HW+1, E) for `trmml visualize`, values in [0, 1], no
 * tape: the method's `maps` (TRM-ML R = σ(Φ); DualCoOp the spatial weights w; PVLR the
 * text->visual attention); NULL when the method has none (the baseline). */
Tensor *trmml_model_maps(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg);

/* Named tensors of the learnable state for the checkpoint: "param.<name>" for every trainable
 * parameter, then the method's own `state` (TRM-ML: MMCP). Returns the count written to out (cap >= 64 +
 * number of parameters). Tensor headers come from the current arena. */
int trmml_model_state(TrmmlModel *m, RunTensor *out, int cap);

/* ---- batch sources ------------------------------------------------------------------------ */

/* Where dense features come from: a feature cache, or images through the frozen image tower
 * (with a training augmentation or the test transform). The prefetching loader
 * (datasets/loader.h) plugs in as another implementation of this interface. */
/* TrmmlTransform: trmml/method.h. */

typedef struct TrmmlBatchSource TrmmlBatchSource;
struct TrmmlBatchSource {
    int64_t n, tokens, dim;  /* items, HW+1, E */
    /* Dense features (count, tokens, dim) float32 of items idx[0..count) into *out (current
     * arena); `seed` drives the augmentation, each image's from (seed, its position in the
     * batch: first + i for idx[i]; a rank's share of a batch starts at first > 0); a cache
     * ignores both. Errors name the image. */
    Status (*dense)(TrmmlBatchSource *src, const int64_t *idx, int64_t count, int64_t first,
                    uint64_t seed, Tensor **out);
    void (*close)(TrmmlBatchSource *src);
    void *ctx;
};

/* A feature cache of the dataset split (checks item count, tokens and width against the model
 * and the input size). */
Status trmml_source_cache(TrmmlBatchSource *src, const char *path, const Dataset *ds,
                          const ClipModel *clip, int64_t input_size);
/* Images of ds through the image tower (no tape) after `transform` at input_size. */
Status trmml_source_images(TrmmlBatchSource *src, const Dataset *ds, const ClipModel *clip,
                           int64_t input_size, TrmmlTransform transform, bool nuswide);
void trmml_source_close(TrmmlBatchSource *src);

/* ---- optimizer with resumable state --------------------------------------------------------- */

/* The method's optimizer (TrmmlMethodOps.optim: AdamW, or SGD with momentum) over the trainable
 * parameters, in the method's parameter groups (param_group), whose state lives in named tensors so the
 * checkpoint can hold it (nn/optim.h keeps its state private). Same update kernels as nn/optim. */
typedef struct TrmmlOptim TrmmlOptim;
TrmmlOptim *trmml_optim_create(TrmmlModel *m);
void trmml_optim_free(TrmmlOptim *o);
/* lr and beta1 (Adam) / momentum (SGD) for the next step. */
void trmml_optim_set(TrmmlOptim *o, double lr, double beta1);
/* Zero the state (a fresh optimizer, e.g. at the start of stage 2). */
void trmml_optim_reset(TrmmlOptim *o);
/* Checkpoint entries "optim.*" (cap >= 2 * parameters + 1). */
int trmml_optim_state(TrmmlOptim *o, RunTensor *out, int cap);

/* ---- one iteration ------------------------------------------------------------------------ */

struct TrmmlStepStats {
    double loss;               /* total */
    double cls, kd, nce;       /* TRM-ML terms (cls = L^q + alpha L^r); DualCoOp/baseline: cls */
    double grad_norm;          /* global L2 norm of the parameter gradients (all ranks') */
    int64_t pseudo_pos, pseudo_neg;  /* MMCP pseudo-labels of the batch */
    /* Wall-clock seconds of the step's parts (tools/bench_train.c): the text tower's forward,
     * the heads' forward and backward over the micro-batches, the text tower's chunked
     * backward, and the update (gradient norm, optimizer, clamp, bank push). */
    double sec_text_fwd, sec_head, sec_text_bwd, sec_update;
    double sec_allreduce; /* of sec_update: the gradients' all-reduce under MPI */
};

/* One training iteration (SPEC §4.9) on dense (B, HW+1, E) and labels y (B, C) float32 CPU
 * tensor in {+1,-1,0}: forward, backward over micro-batches, text-tower backward, optimizer
 * step (lr, beta1 set before), the method's after_update (temperature clamp, bank update).
 * phase_on: the method's batch-level phase (TRM-ML: MMCP pseudo-labels, stage 2).
 * Returns false without stepping when the loss is not finite (stats->loss holds it). The caller
 * ends the step (tensor_step_end). One process; under MPI every rank calls
 * trmml_train_step_rows with its rows. */
bool trmml_train_step(TrmmlModel *m, TrmmlOptim *o, Tensor *dense, Tensor *y, bool phase_on,
                      uint64_t step_seed, TrmmlStepStats *stats);
/* The same iteration on one rank's share (tensor/dist.h, docs/distributed.md): dense (b, HW+1,
 * E) holds rows [row0, row0 + b) of the batch whose labels are y (B, C); every rank calls it
 * with its rows (b may be 0), the gradients are summed over the ranks in rank order before the
 * norm and the update, and the stats are the whole batch's. One process: row0 = 0, b = B. */
bool trmml_train_step_rows(TrmmlModel *m, TrmmlOptim *o, Tensor *dense, Tensor *y, int64_t row0,
                           bool phase_on, uint64_t step_seed, TrmmlStepStats *stats);

/* ---- a run -------------------------------------------------------------------------------- */

typedef struct {
    bool resume;        /* continue from out_dir/checkpoint.safetensors */
    FILE *echo;         /* progress lines (stderr), NULL = log file only */
    bool progress_bar;  /* echo is a terminal: one updating line per epoch */
    int64_t stop_after; /* > 0: return after this many epochs of this invocation, as if killed
                           right after that epoch's checkpoint (tests of --resume) */
} TrainOptions;

/* Train rc in out_dir, writing config.txt, classes.txt, log.txt, metrics.jsonl, ap.csv and
 * checkpoint.safetensors (docs/training.md). Nothing is created before every input was opened
 * and checked; out_dir is locked (run_lock) while the run holds it. With resume, rc is ignored
 * (may be NULL): the configuration, counters and metrics come from the verified checkpoint.
 * Stops with an error naming the step when a loss is not finite (the last checkpoint stays).
 * Under MPI every rank calls it: each takes its share of every batch and of the evaluation,
 * rank 0 alone writes the run directory and prints, and an error on any rank is every rank's
 * (docs/distributed.md); a checkpoint resumes with any number of ranks. */
Status trmml_train_run(const RunConfig *rc, const char *out_dir, const TrainOptions *opt);

/* A splitmix64-style mix of a seed with up to three counters (stage, epoch/step, item). */
uint64_t trmml_seed_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
