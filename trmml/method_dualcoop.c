/* method_dualcoop.c — DualCoOp (SPEC §3) behind the method interface (trmml/method.h): dual
 * prompts, spatial aggregation of the dense features (trmml/dualcoop.h), ASL on the dual logits
 * summed over the known entries, SGD under Dassl's warm-up + cosine schedule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/schedule.h"
#include "trmml/dualcoop.h"
#include "trmml/method.h"
#include "trmml/mmcp.h"
#include "trmml/train.h"

/* ---- configuration: DualCoOp's own keys ---- */

/* SPEC §3: SGD with momentum under Dassl's constant warm-up + cosine (SPEC §2.4), and the loss
 * weight of DECISION 4. */
typedef struct {
    double sgd_momentum;   /* 0.9 */
    int64_t warmup_epochs; /* constant warm-up epochs (1) */
    double warmup_lr;      /* warm-up lr 1e-5 */
    double loss_w;         /* NAN = 0.015 / ratio (1 in single-positive mode) */
} MethodDualcoopConfig;

#define T MethodDualcoopConfig
static const KeySpec DUALCOOP_KEYS[] = {
    KEY_DOUBLE(T, "sgd_momentum", sgd_momentum, 0, 1e300, "DualCoOp SGD, SPEC 3"),
    KEY_INT(T, "warmup_epochs", warmup_epochs, -1, 4294967295.0, "DualCoOp cosine, SPEC 2.4"),
    KEY_DOUBLE(T, "warmup_lr", warmup_lr, 0, 1e300, "DualCoOp cosine, SPEC 2.4"),
    KEY_DOUBLE_OR(T, "loss_w", loss_w, 0, 1e300, "auto",
                  "DualCoOp loss weight, auto = 0.015/ratio (DECISION 4)"),
};
#undef T

const TrmmlMethodOps METHOD_DUALCOOP;

static const MethodDualcoopConfig *dualcoop_config(const RunConfig *rc) {
    return trmml_method_config_of(rc, &METHOD_DUALCOOP);
}

/* SPEC §3: lr 0.002 (COCO) / 0.001 (VOC), batch 32, 50 epochs, weight decay 5e-4. */
static void dualcoop_config_default(void *mc, TrmmlConfig *tc, const char *dataset) {
    *(MethodDualcoopConfig *)mc = (MethodDualcoopConfig){0.9, 1, 1e-5, NAN};
    const bool voc = dataset && strncmp(dataset, "voc", 3) == 0;
    tc->lr = voc ? 0.001 : 0.002;
    tc->batch_size = 32;
    tc->epochs = 50;
    tc->weight_decay = 5e-4;
}

static Status dualcoop_config_validate(const RunConfig *rc) {
    const MethodDualcoopConfig *c = dualcoop_config(rc);
    if (c->sgd_momentum >= 1)
        return error_set(STATUS_ERR_USAGE, "configuration: sgd_momentum %g must be < 1",
                         c->sgd_momentum);
    return STATUS_OK;
}

/* DECISION 4: loss_w, or 0.015 / ratio when it is `auto` (ratio 1 in single-positive mode). */
static double loss_weight(const RunConfig *rc) {
    const double w = dualcoop_config(rc)->loss_w;
    if (!isnan(w)) return w;
    return 0.015 / (rc->tc.single_positive ? 1.0 : rc->ratio);
}

/* ---- the model: the prompts; the head has no parameters ---- */

static void dualcoop_declare(TrmmlModel *m, int64_t text_width) {
    const RunConfig *rc = &m->cfg;
    DualCoOpConfig *dc = xcalloc(1, sizeof *dc);
    m->head = dc;
    trmml_method_declare_prompt(m, text_width, false);
    *dc = trmml_dualcoop_config(rc->tc.single_positive ? 1.0f : (float)rc->ratio);
    dc->loss_w = (float)loss_weight(rc);
}

/* ---- one step: loss_w * ASL summed over the known entries ---- */

static Tensor *dualcoop_micro_loss(TrmmlModel *m, const TrmmlStepInput *in, Tensor *targets,
                                   int64_t b0, int64_t nb, void *ctx) {
    const DualCoOpConfig *dc = m->head;
    Tensor *ln, *lp;
    trmml_dualcoop_forward(dc, trmml_rows(in->dense, b0, nb), in->gpos, in->gneg, &ln, &lp);
    return trmml_dualcoop_loss(dc, ln, lp, trmml_rows(targets, b0, nb));
}

static void dualcoop_step(TrmmlModel *m, const TrmmlStepInput *in, TrmmlStepStats *st) {
    Tensor *targets = trmml_mmcp_targets(in->y, NULL, m->cfg.tc.single_positive);
    trmml_micro_batches(m, in, targets, false, dualcoop_micro_loss, NULL, st);
}

/* SPEC §2.4: constant warm-up lr for warmup_epochs, then cosine; momentum fixed. */
static void dualcoop_schedule(const RunConfig *rc, int64_t epoch, double *lr, double *momentum) {
    const MethodDualcoopConfig *c = dualcoop_config(rc);
    *lr = schedule_dassl_cosine(rc->tc.lr, epoch, rc->tc.epochs, c->warmup_epochs, c->warmup_lr);
    *momentum = c->sgd_momentum;
}

/* ---- evaluation and maps ---- */

/* p = sigmoid(z+ - z-). */
static Tensor *dualcoop_probs(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    Tensor *ln, *lp;
    trmml_dualcoop_forward(m->head, dense, gpos, gneg, &ln, &lp);
    return trmml_dualcoop_probs(ln, lp);
}

/* The spatial weights of class c in image b: w = softmax over the T tokens of 20 cos(z_t, G+_c)
 * (SPEC §3 step 2), token 0 left out, rescaled to a maximum of 1, into o (HW). s: T scratch. */
static void spatial_weights(const float *z, const float *G, int64_t T, int64_t E, double *s,
                            float *o) {
    double mx = -INFINITY;
    for (int64_t t = 0; t < T; t++) {
        const float *zt = z + t * E;
        double dot = 0, nz = 0;
        for (int64_t e = 0; e < E; e++) {
            dot += (double)zt[e] * G[e];
            nz += (double)zt[e] * zt[e];
        }
        s[t] = 20.0 * dot / fmax(sqrt(nz), 1e-12);
        if (s[t] > mx) mx = s[t];
    }
    double sum = 0, wmax = 0;
    for (int64_t t = 0; t < T; t++) sum += (s[t] = exp(s[t] - mx));
    for (int64_t t = 1; t < T; t++) wmax = fmax(wmax, s[t] / sum);
    for (int64_t t = 1; t < T; t++) o[t - 1] = (float)(wmax > 0 ? s[t] / sum / wmax : 0);
}

static Tensor *dualcoop_maps(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    const int64_t B = dense->shape[0], T = dense->shape[1], E = dense->shape[2], C = m->C,
                  HW = T - 1;
    /* On the host, in double precision (visualisation only). */
    float *z = tensor_to_host(dense), *G = tensor_to_host(gpos);
    float *o = xmalloc(sizeof(float) * (size_t)(B * C * HW));
    double *s = xmalloc((size_t)T * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            spatial_weights(z + b * T * E, G + c * E, T, E, s, o + (b * C + c) * HW);
    Tensor *out = tensor_from_f32(3, SHAPE(B, C, HW), o);
    free(s);
    free(o);
    free(z);
    free(G);
    return out;
}

const TrmmlMethodOps METHOD_DUALCOOP = {
    .name = "dualcoop", .title = "DualCoOp (SPEC §3)",
    TRMML_METHOD_CONFIG(DUALCOOP_KEYS, MethodDualcoopConfig, dualcoop_config_default,
                        dualcoop_config_validate),
    .declare = dualcoop_declare, .free = trmml_method_free_head, /* no parameters to init */
    .step = dualcoop_step,
    .optim = TRMML_OPTIM_SGD, .schedule = dualcoop_schedule,
    .train_transform = TRMML_TRANSFORM_TRAIN_DUALCOOP,
    .test_transform = TRMML_TRANSFORM_TEST_BILINEAR,
    .probs = dualcoop_probs, .maps = dualcoop_maps,
};
