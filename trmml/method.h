/* method.h — one training method as a table of operations (docs/methods.md).
 *
 * The training program (trmml/train.c), evaluation (trmml/evaluate.c) and the commands
 * (tools/cmd_train.c) know a method only through its TrmmlMethodOps: the keys of its
 * configuration, the parameters and state of its head, its part of a training step, its scores
 * and maps, what it adds to the checkpoint, its optimizer, its transforms and its stages. Each
 * method fills one table in a file of its own (trmml/method_trmml.c, method_baseline.c,
 * method_dualcoop.c, method_pvlr.c: glue over the head files carl.c, baseline.c, dualcoop.c,
 * pvlr.c); trmml/methods.c lists the tables. Adding a method is one new file and one entry in
 * that list (docs/methods.md walks through the baseline as the example).
 *
 * Shared pieces the method files use (the micro-batch split, checkpoint entries, the CLIP text
 * features of the query template) are declared at the end of this header (trmml/method.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clip/tokenizer.h"
#include "tensor/keys.h"
#include "tensor/ops/dropout.h"
#include "tensor/tensor.h"
#include "trmml/run.h"

typedef struct TrmmlModel TrmmlModel;         /* trmml/train.h */
typedef struct TrmmlStepStats TrmmlStepStats; /* trmml/train.h */

/* The optimizers a method may ask for (trmml/train.c, "optimizer"). */
typedef enum {
    TRMML_OPTIM_ADAMW = 0, /* AdamW under OneCycle (SPEC §2.4): lr, beta1 cycled per step */
    TRMML_OPTIM_SGD,       /* SGD with momentum under the method's own `schedule` */
} TrmmlOptimKind;

/* Where dense features come from and how images are transformed (datasets/augment.h). */
typedef enum {
    TRMML_TRANSFORM_TEST_BICUBIC = 0, /* TRM-ML / baseline / PVLR test transform (SPEC §2.2) */
    TRMML_TRANSFORM_TEST_BILINEAR,    /* DualCoOp test transform (SPEC §2.3) */
    TRMML_TRANSFORM_TRAIN_TRMML,      /* SPEC §2.2 */
    TRMML_TRANSFORM_TRAIN_DUALCOOP,   /* SPEC §2.3 */
} TrmmlTransform;

/* What one training step hands the method (SPEC §4.9; trmml_train_step does the rest: the text
 * tower's forward and chunked backward, the gradient norm, the optimizer step).
 *
 * Under MPI (tensor/dist.h, docs/distributed.md) each rank holds rows [row0, row0 + b) of the
 * batch of B images (b = 0 for a rank with none; one process: row0 = 0, b = B). The method
 * accumulates its rank's share of the gradients: a loss that averages over the batch's images
 * weights a micro-batch of nb images by nb / B (B = `batch`, not b), and the driver sums the
 * ranks' gradients. What the method computes over the whole batch (TRM-ML's thresholds,
 * pseudo-labels, InfoNCE, bank) it makes the same on every rank itself, through the dist
 * layer's collectives, and the stats it returns are the whole batch's. */
typedef struct {
    Tensor *dense;   /* (b, HW+1, E) frozen dense features of this rank's rows */
    Tensor *y;       /* (b, C) their observed labels in {+1, -1, 0} (float32, CPU) */
    Tensor *gpos;    /* (C, E) text features G+ (no tape; NULL when the method declares no
                        prompt); the method accumulates dL/dG+ into gpos->grad */
    Tensor *gneg;    /* (C, E) G-, or NULL (positive-only prompts) */
    bool phase_on;   /* the method's batch-level phase (TRM-ML: MMCP pseudo-labels) */
    uint64_t seed;   /* dropout and other draws of this step */
    Tensor *y_batch; /* (B, C) the whole batch's observed labels (y is rows [row0, row0 + b)) */
    int64_t row0;    /* this rank's first row in the batch */
    int64_t batch;   /* B */
} TrmmlStepInput;

typedef struct TrmmlMethodOps TrmmlMethodOps;
struct TrmmlMethodOps {
    const char *name;  /* the value of the `method` key and of --method: "trmml" */
    const char *title; /* one line for logs and --help: "TRM-ML (SPEC §4)" */

    /* ---- configuration (tensor/keys.h) ---- */
    /* The method's own keys, writing into its config struct of config_size bytes (at most
     * RUN_METHOD_CONFIG_BYTES), which lives in RunConfig.mc. keys may be NULL when nkeys is 0. */
    const KeySpec *keys;
    int nkeys;
    size_t config_size;
    /* The method's defaults: its own keys into mc, and its changes to the shared keys (tc) for
     * `dataset` (may be NULL). */
    void (*config_default)(void *mc, TrmmlConfig *tc, const char *dataset);
    /* Cross-field checks of the method's keys against the run's (STATUS_ERR_USAGE naming the
     * key). NULL: none. */
    Status (*config_validate)(const RunConfig *rc);

    /* ---- the model ---- */
    /* Allocate m->head and declare the head's parameters (and the prompt learner, usually with
     * trmml_method_declare_prompt) into m->ps, not yet finalized. m->cfg, C, d are set. */
    void (*declare)(TrmmlModel *m, int64_t text_width);
    /* After finalize and the prompt templates: what the head needs from CLIP and the class names
     * (the query text features). m->clip is set. NULL: nothing. */
    Status (*create)(TrmmlModel *m, const ClipTokenizer *tok, char *const *names);
    /* (Re-)initialise the head's parameters from `seed` (the prompts are done by the caller);
     * reset_state: also reset state kept across stages (TRM-ML's prototypes). NULL: nothing. */
    void (*init)(TrmmlModel *m, uint64_t seed, bool reset_state);
    /* Release m->head (parameters belong to m->ps). */
    void (*free)(TrmmlModel *m);

    /* ---- training ---- */
    /* The method's part of one step: the heads' forward and backward over the micro-batches of
     * in->dense, accumulating parameter gradients and dL/dG; fills st->loss (and its terms) with
     * the whole batch's values, the same on every rank (TrmmlStepInput). */
    void (*step)(TrmmlModel *m, const TrmmlStepInput *in, TrmmlStepStats *st);
    /* After the optimizer update: projections (temperature clamps), state updates (TRM-ML's
     * bank push of this batch, DECISION 27). NULL: nothing. */
    void (*after_update)(TrmmlModel *m, const TrmmlStepInput *in);
    /* Extra fields of the step's log line (" cls=... kd=..."), or NULL. */
    void (*step_log)(const TrmmlStepStats *st, char *buf, size_t cap);

    /* ---- optimizer and schedule ---- */
    TrmmlOptimKind optim;
    /* For parameter `param`: whether weight decay is off for it and its lr as a multiple of the
     * scheduled lr (a parameter group). NULL: decay on, scale 1 for all. */
    void (*param_group)(const RunConfig *rc, const char *param, bool *no_decay, double *lr_scale);
    /* TRMML_OPTIM_SGD: lr and momentum of an epoch (also the momentum at creation, epoch 0). */
    void (*schedule)(const RunConfig *rc, int64_t epoch, double *lr, double *momentum);

    /* ---- stages (DECISION 19) ---- */
    /* Number of stages (1 or 2). NULL: 1. */
    int (*stages)(const RunConfig *rc);
    /* Entering stage 2 (before its first epoch; the caller resets the optimizer and counters):
     * the method's changes, and a log line into note. */
    void (*begin_stage2)(TrmmlModel *m, char *note, size_t cap);
    /* Before each epoch: whether the step's batch-level phase is on (TrmmlStepInput.phase_on),
     * making any change that switching it on needs (note: a log line, or left ""). NULL: off. */
    bool (*phase)(TrmmlModel *m, int64_t stage, int64_t epochs_done, char *note, size_t cap);

    /* ---- evaluation and use ---- */
    TrmmlTransform train_transform, test_transform;
    /* Positive-class probabilities (B, C) of dense (B, HW+1, E), no tape. */
    Tensor *(*probs)(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg);
    /* Spatial maps (B, C, HW) for `trmml visualize`, no tape, values in [0, 1]. NULL: the method
     * has none (the baseline matches the whole image). */
    Tensor *(*maps)(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg);

    /* ---- checkpoint ---- */
    /* Named tensors of the state beyond the trainable parameters (headers over the method's
     * own buffers), appended with trmml_method_add_entry; returns the count. NULL: none. */
    int (*state)(TrmmlModel *m, RunTensor *out, int cap);
};

/* The configuration entries of a method's table: its key table over its struct T, its defaults
 * and its checks (either may be NULL). */
#define TRMML_METHOD_CONFIG(table, T, defaults, validate)                                          \
    .keys = (table), .nkeys = KEY_COUNT(table), .config_size = sizeof(T),                          \
    .config_default = (defaults), .config_validate = (validate)

/* ---- the registry (trmml/methods.c) ---- */

/* Every method, indexed by RunConfig.method (TRMML_METHOD_* name the built-in ones). */
extern const TrmmlMethodOps *const trmml_methods[];
int trmml_method_count(void);
/* The table of method i (CHECK on an unknown index). */
const TrmmlMethodOps *trmml_method_ops(int method);
/* The method whose table has the key `key`, other than `except` (-1 = any); -1 when none. */
int trmml_method_owning_key(const char *key, int except);

/* ---- helpers for the method files (trmml/method.c) ---- */

/* A header over rows [b0, b0 + nb) of a contiguous tensor whose first dimension is the batch
 * (no copy; the rows stay owned by t). */
Tensor *trmml_rows(Tensor *t, int64_t b0, int64_t nb);
/* The dropout draws of the micro-batch that starts at this rank's row b0: the step's seed
 * (in->seed, the same on every rank and for every micro-batch) and the micro-batch's first row
 * in the whole batch, so each image's masks are the ones one process draws for it, however the
 * batch is split into micro-batches and ranks (tensor_dropout_rows). */
DropoutDraws trmml_dropout_draws(const TrmmlStepInput *in, int64_t b0);
/* The first value of a float32 tensor. */
float trmml_scalar(const Tensor *t);
/* Images per micro-batch: tc.micro_batch when it splits B, else B. */
int64_t trmml_micro_size(const TrmmlConfig *tc, int64_t B);
/* One micro-batch's loss (scalar, on the tape) for rows [b0, b0+nb) of the step. */
typedef Tensor *(*TrmmlMicroLoss)(TrmmlModel *m, const TrmmlStepInput *in, Tensor *targets,
                                  int64_t b0, int64_t nb, void *ctx);
/* The micro-batch loop of a loss that sums per-image terms, over this rank's rows: each
 * micro-batch's loss is back-propagated, weighted by nb/B (B = in->batch) when per_image_mean
 * (a loss that averages over the batch's images) and as it is otherwise; st->cls accumulates
 * the weighted values, summed over the ranks at the end; st->loss = st->cls. targets are this
 * rank's rows. */
void trmml_micro_batches(TrmmlModel *m, const TrmmlStepInput *in, Tensor *targets,
                         bool per_image_mean, TrmmlMicroLoss loss, void *ctx, TrmmlStepStats *st);
/* The method's own keys of rc, RunConfig.mc (CHECK that rc's method is `ops`): what a method
 * file's typed accessor returns (method_trmml_config()); writable through a const rc, as
 * strchr. */
void *trmml_method_config_of(const RunConfig *rc, const TrmmlMethodOps *ops);
/* m->head (CHECK that m's method is `ops`). */
void *trmml_method_head_of(const TrmmlModel *m, const TrmmlMethodOps *ops);
/* `free` of a method whose head is one plain struct: free(m->head). */
void trmml_method_free_head(TrmmlModel *m);
/* Append a named checkpoint entry (CHECK when more than cap). */
void trmml_method_add_entry(RunTensor *out, int *n, int cap, const char *name, Tensor *t);
/* CLIP's stored logit scale t (ln 100 without a CLIP model). */
float trmml_clip_logit_scale(const TrmmlModel *m);
/* The frozen CLIP text features (C, d) of tc.query_template filled with each class name
 * (DECISION 9; "_" read as " "), no tape, as host floats (owned by the caller) in *out. */
Status trmml_query_features(const TrmmlModel *m, const ClipTokenizer *tok, char *const *names,
                            float **out);
/* Declare the prompt learner of the shared prompt keys; positive_only: the positive template
 * only (PVLR's CAP, SPEC §5.3). */
void trmml_method_declare_prompt(TrmmlModel *m, int64_t text_width, bool positive_only);
