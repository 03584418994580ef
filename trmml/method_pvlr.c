/* method_pvlr.c — PVLR (SPEC §5, DECISION 24; docs/pvlr.md) behind the method interface
 * (trmml/method.h): positive-only CAP prompts, the label side (KAP, CAP, IFM) once per step,
 * DMA and prediction over micro-batches, two learning rates (SPEC §5.7). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/ops/elementwise.h"
#include "trmml/method_pvlr.h"
#include "trmml/method.h"
#include "trmml/mmcp.h"
#include "trmml/pvlr.h"
#include "trmml/train.h"

/* ---- configuration: PVLR's own keys (MethodPvlrConfig, trmml/pvlr.h) ---- */

static const char *const PVLR_ASL_NAMES[] = {"auto", "full", "partial", "custom", NULL};

#define T MethodPvlrConfig
static const KeySpec PVLR_KEYS[] = {
    KEY_BOOL(T, "pvlr_kap", pvlr_use_kap,
             "PVLR knowledge-aware prompting, SPEC 5.2 (docs/pvlr.md: off)"),
    KEY_BOOL(T, "pvlr_cap", pvlr_use_cap, "PVLR context-aware prompting, SPEC 5.3"),
    KEY_BOOL(T, "pvlr_ifm", pvlr_use_ifm,
             "PVLR interaction and fusion, SPEC 5.4 (off: L0 = (K+Cx)/2)"),
    KEY_BOOL(T, "pvlr_dma_t2v", pvlr_use_t2v,
             "PVLR text->visual attention, SPEC 5.5 (off: V1 = Vtok)"),
    KEY_BOOL(T, "pvlr_dma_v2t", pvlr_use_v2t,
             "PVLR visual->text attention, SPEC 5.5 (off: L1 = L0)"),
    KEY_BOOL(T, "pvlr_global", pvlr_use_global, "PVLR global term g_c in the logit, SPEC 5.6"),
    KEY_INT(T, "pvlr_heads", pvlr_heads, 1, 4096, "PVLR attention heads (must divide d), SPEC 5"),
    KEY_DOUBLE(T, "pvlr_kap_tau", pvlr_kap_tau, 1e-6, 1e6,
               "PVLR relation softmax temperature, SPEC 5.2"),
    KEY_DOUBLE(T, "pvlr_spatial_temp", pvlr_spatial_temp, 0, 1e6,
               "PVLR spatial softmax scale, SPEC 5.6"),
    KEY_DOUBLE(T, "pvlr_temp_init", pvlr_temp_init, -20, 20,
               "PVLR t0 (s = exp(t)), SPEC 5.6: ln 10"),
    KEY_DOUBLE(T, "pvlr_layer_lr", pvlr_layer_lr, 0, 10,
               "PVLR max lr of attention/fusion layers, SPEC 5.7"),
    KEY_ENUM(T, "pvlr_asl", pvlr_asl, PVLR_ASL_NAMES,
             "PVLR ASL setting (full 0/4, partial 1/2), SPEC 5.7"),
};
#undef T

const TrmmlMethodOps METHOD_PVLR;

MethodPvlrConfig *method_pvlr_config(const RunConfig *rc) {
    return trmml_method_config_of(rc, &METHOD_PVLR);
}

PvlrHead *method_pvlr_head(const TrmmlModel *m) { return trmml_method_head_of(m, &METHOD_PVLR); }

/* SPEC §5.3, §5.7: TRM-ML's recipe with one class-shared context. */
static void pvlr_config_default(void *mc, TrmmlConfig *tc, const char *dataset) {
    *(MethodPvlrConfig *)mc = (MethodPvlrConfig){
        .pvlr_use_kap = true, .pvlr_use_cap = true, .pvlr_use_ifm = true,
        .pvlr_use_t2v = true, .pvlr_use_v2t = true, .pvlr_use_global = true,
        .pvlr_heads = 8, .pvlr_kap_tau = 0.05, .pvlr_spatial_temp = 20.0,
        .pvlr_temp_init = 2.302585092994046, /* ln 10 */
        .pvlr_layer_lr = 1e-4, .pvlr_asl = PVLR_ASL_AUTO,
    };
    tc->prompt_class_specific = false;
}

static Status pvlr_config_validate(const RunConfig *rc) {
    const MethodPvlrConfig *c = method_pvlr_config(rc);
    if (!c->pvlr_use_kap && !c->pvlr_use_cap)
        return error_set(STATUS_ERR_USAGE, "config: pvlr_kap and pvlr_cap are both off; PVLR needs "
                                           "at least one source of label representations");
    if (exp(c->pvlr_temp_init) > rc->tc.temp_max * (1 + 1e-6))
        return error_set(STATUS_ERR_USAGE,
                         "config: pvlr_temp_init %g gives a scale above temp_max %g",
                         c->pvlr_temp_init, rc->tc.temp_max);
    return STATUS_OK;
}

/* ---- the model ---- */

static void pvlr_method_declare(TrmmlModel *m, int64_t text_width) {
    const RunConfig *rc = &m->cfg;
    PvlrHead *h = xcalloc(1, sizeof *h);
    m->head = h;
    /* CAP: the positive template only (SPEC §5.3); no learned prompt with CAP off. */
    const MethodPvlrConfig *pc = method_pvlr_config(rc);
    if (pc->pvlr_use_cap) trmml_method_declare_prompt(m, text_width, true);
    pvlr_declare(h, m->ps, "pvlr", m->C, m->d, &rc->tc, pc,
                 !rc->tc.single_positive && rc->ratio >= 1.0);
}

/* KAP's fixed prompts: CLIP text features of the query template (no tape). */
static Status pvlr_method_create(TrmmlModel *m, const ClipTokenizer *tok, char *const *names) {
    if (!method_pvlr_config(&m->cfg)->pvlr_use_kap) return STATUS_OK;
    float *text = NULL;
    Status st = trmml_query_features(m, tok, names, &text);
    if (st == STATUS_OK) pvlr_set_knowledge(m->head, text);
    free(text);
    return st;
}

static void pvlr_method_init(TrmmlModel *m, uint64_t seed, bool reset_state) {
    Rng rng;
    rng_seed(&rng, trmml_seed_mix(seed, 2, 0, 0));
    pvlr_init(m->head, &rng);
}

static void pvlr_method_free(TrmmlModel *m) {
    if (!m->head) return;
    pvlr_free(m->head);
    free(m->head);
    m->head = NULL;
}

/* ---- one step ---- */

typedef struct {
    Tensor *labels; /* L0 (C,d), a leaf collecting dL/dL0 */
} PvlrStep;

static Tensor *pvlr_micro_loss(TrmmlModel *m, const TrmmlStepInput *in, Tensor *targets,
                               int64_t b0, int64_t nb, void *ctx) {
    PvlrStep *ps = ctx;
    PvlrOut out;
    DropoutDraws drop = trmml_dropout_draws(in, b0); /* the whole batch's masks, any split */
    pvlr_predict(m->head, trmml_rows(in->dense, b0, nb), ps->labels, true, &drop, &out);
    return pvlr_loss(m->head, out.logits, trmml_rows(targets, b0, nb));
}

/* The label side L0 (KAP, CAP, IFM) is image-independent, so it runs once per step without a
 * tape as a leaf that collects dL/dL0 from every micro-batch's DMA + prediction backward; then
 * it is re-run with a tape (same dropout masks: the generator is re-seeded) and dL/dL0 is
 * back-propagated into its layers and T^C, the way the text tower is handled. */
static void pvlr_method_step(TrmmlModel *m, const TrmmlStepInput *in, TrmmlStepStats *st) {
    Tensor *targets = trmml_mmcp_targets(in->y, NULL, m->cfg.tc.single_positive);
    const uint64_t label_seed = trmml_seed_mix(in->seed, 7, 0, 0);
    PvlrStep ps;
    DropoutDraws drop = {.row0 = 0}; /* the label side has no image rows */
    rng_seed(&drop.rng, label_seed);
    bool g = ag_set_grad_enabled(false);
    ps.labels = pvlr_labels(m->head, in->gpos, true, &drop);
    ag_set_grad_enabled(g);
    ag_set_requires_grad(ps.labels, tensor_zeros_like(ps.labels));
    trmml_micro_batches(m, in, targets, true, pvlr_micro_loss, &ps, st);
    if (!isfinite(st->loss)) return;
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    rng_seed(&drop.rng, label_seed);
    ag_backward_with(pvlr_labels(m->head, in->gpos, true, &drop), ps.labels->grad);
    arena_release(arena, mark);
}

static void pvlr_method_after_update(TrmmlModel *m, const TrmmlStepInput *in) {
    pvlr_clamp_temperature(m->head);
}

/* SPEC §5.7: the attention and fusion layers (every "pvlr.*" tensor but t and b) train at
 * pvlr_layer_lr, the CAP contexts, t and b at lr: a group's lr is a scale of the scheduled lr,
 * as torch's OneCycleLR with one max_lr per group. No decay on t unless wd_temperature. */
static void pvlr_param_group(const RunConfig *rc, const char *param, bool *no_decay,
                             double *lr_scale) {
    const bool t = strcmp(param, "pvlr.logit_scale") == 0;
    const bool layer =
        strncmp(param, "pvlr.", 5) == 0 && !t && strcmp(param, "pvlr.class_bias") != 0;
    *no_decay = t && !rc->tc.wd_temperature;
    *lr_scale = layer && rc->tc.lr > 0 ? method_pvlr_config(rc)->pvlr_layer_lr / rc->tc.lr : 1.0;
}

/* ---- evaluation and maps ---- */

/* SPEC §5.6: sigmoid(z). */
static Tensor *pvlr_method_probs(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    PvlrOut out;
    pvlr_forward(m->head, dense, gpos, false, NULL, &out);
    return tensor_sigmoid(out.logits);
}

static Tensor *pvlr_method_maps(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    return pvlr_attention_maps(m->head, dense, gpos);
}

const TrmmlMethodOps METHOD_PVLR = {
    .name = "pvlr", .title = "PVLR (SPEC §5)",
    TRMML_METHOD_CONFIG(PVLR_KEYS, MethodPvlrConfig, pvlr_config_default, pvlr_config_validate),
    .declare = pvlr_method_declare, .create = pvlr_method_create, .init = pvlr_method_init,
    .free = pvlr_method_free,
    .step = pvlr_method_step, .after_update = pvlr_method_after_update,
    .optim = TRMML_OPTIM_ADAMW, .param_group = pvlr_param_group,
    .train_transform = TRMML_TRANSFORM_TRAIN_TRMML, .test_transform = TRMML_TRANSFORM_TEST_BICUBIC,
    .probs = pvlr_method_probs, .maps = pvlr_method_maps,
};
