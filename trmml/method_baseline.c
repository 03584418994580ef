/* method_baseline.c — the Table-3 baseline (SPEC §9.3, DECISION 22) behind the method interface
 * (trmml/method.h): TRM-ML's prompts and recipe with CARL off, the global image feature matched
 * against G+ and G- (trmml/baseline.h). The smallest method: docs/methods.md reads it as the
 * worked example of adding one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ops/elementwise.h"
#include "trmml/baseline.h"
#include "trmml/method.h"
#include "trmml/mmcp.h"
#include "trmml/train.h"

/* ---- configuration: the baseline's own key ---- */

/* The baseline is TRM-ML's recipe with CARL off; `use_carl = false` says so in its files. */
typedef struct {
    bool use_carl; /* false: the only value the baseline accepts */
} MethodBaselineConfig;

const TrmmlMethodOps METHOD_BASELINE;

static const KeySpec BASELINE_KEYS[] = {
    KEY_BOOL(MethodBaselineConfig, "use_carl", use_carl,
             "Table 3; off = text-image baseline, SPEC 9.3 DECISION 22"),
};

static void baseline_config_default(void *mc, TrmmlConfig *tc, const char *dataset) {
    ((MethodBaselineConfig *)mc)->use_carl = false;
}

static Status baseline_config_validate(const RunConfig *rc) {
    const MethodBaselineConfig *c = trmml_method_config_of(rc, &METHOD_BASELINE);
    if (c->use_carl)
        return error_set(STATUS_ERR_USAGE, "configuration: method baseline needs use_carl = false");
    return STATUS_OK;
}

/* ---- the model: the prompts and one trainable temperature ---- */

static void baseline_declare(TrmmlModel *m, int64_t text_width) {
    BaselineHead *h = xcalloc(1, sizeof *h);
    m->head = h;
    trmml_method_declare_prompt(m, text_width, false);
    trmml_baseline_declare(h, m->ps);
}

/* t = temp_init, or CLIP's logit scale when temp_init is `clip` (NAN). */
static void baseline_init(TrmmlModel *m, uint64_t seed, bool reset_state) {
    const double t0 = m->cfg.tc.temp_init;
    trmml_baseline_init(m->head, isnan(t0) ? trmml_clip_logit_scale(m) : (float)t0);
}

/* ---- one step: ASL on u, summed over classes, averaged over images ---- */

static Tensor *baseline_micro_loss(TrmmlModel *m, const TrmmlStepInput *in, Tensor *targets,
                                   int64_t b0, int64_t nb, void *ctx) {
    const BaselineHead *h = m->head;
    Tensor *s = trmml_logit_scale(h->logit_t);
    Tensor *u = trmml_baseline_logits(trmml_rows(in->dense, b0, nb), in->gpos, in->gneg, s);
    return trmml_baseline_loss(u, trmml_rows(targets, b0, nb));
}

static void baseline_step(TrmmlModel *m, const TrmmlStepInput *in, TrmmlStepStats *st) {
    Tensor *targets = trmml_mmcp_targets(in->y, NULL, m->cfg.tc.single_positive);
    trmml_micro_batches(m, in, targets, true, baseline_micro_loss, NULL, st);
}

static void baseline_after_update(TrmmlModel *m, const TrmmlStepInput *in) {
    trmml_baseline_clamp(m->head);
}

/* No weight decay on the temperature unless wd_temperature (DECISION 6). */
static void baseline_param_group(const RunConfig *rc, const char *param, bool *no_decay,
                                 double *lr_scale) {
    *no_decay = strcmp(param, "baseline.logit_t") == 0 && !rc->tc.wd_temperature;
    *lr_scale = 1.0;
}

/* ---- evaluation: sigmoid(u) ---- */

static Tensor *baseline_probs(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    const BaselineHead *h = m->head;
    Tensor *s = trmml_logit_scale(h->logit_t);
    return tensor_sigmoid(trmml_baseline_logits(dense, gpos, gneg, s));
}

const TrmmlMethodOps METHOD_BASELINE = {
    .name = "baseline", .title = "the Table-3 baseline (SPEC §9.3)",
    TRMML_METHOD_CONFIG(BASELINE_KEYS, MethodBaselineConfig, baseline_config_default,
                        baseline_config_validate),
    .declare = baseline_declare, .init = baseline_init, .free = trmml_method_free_head,
    .step = baseline_step, .after_update = baseline_after_update,
    .optim = TRMML_OPTIM_ADAMW, .param_group = baseline_param_group,
    .train_transform = TRMML_TRANSFORM_TRAIN_TRMML, .test_transform = TRMML_TRANSFORM_TEST_BICUBIC,
    .probs = baseline_probs, /* no .maps: the whole image is matched, no regions to show */
};
