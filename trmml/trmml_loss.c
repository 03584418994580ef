/* trmml_loss.c — L_cls, L_KD, L_NCE and their total (SPEC §4.3-4.7), composed of the fused
 * losses of tensor/ops/loss.h. tensor_info_nce computes exactly the §4.6 form (each positive
 * contrasted against the row's negatives only, averaged over positives, then over the rows
 * that have one; docs/ops/loss.md), so MMCL is one (C, K) logit matrix and a positive mask. */
#include "trmml/trmml_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/index.h"
#include "tensor/ops/loss.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape.h"

static LossReduction asl_reduction(int r) {
    switch (r) {
    case TRMML_ASL_SUM: return LOSS_SUM;
    case TRMML_ASL_MEAN: return LOSS_MEAN;
    default: return LOSS_SUM_CLASSES_MEAN_IMAGES;
    }
}

Tensor *trmml_loss_cls(const TrmmlConfig *cfg, Tensor *logits, Tensor *targets) {
    return tensor_asl(logits, targets, (float)cfg->asl_gamma_pos, (float)cfg->asl_gamma_neg,
                      (float)cfg->asl_clip, (float)cfg->asl_eps, asl_reduction(cfg->asl_reduction));
}

/* softplus(x) = relu(x) + log(1 + exp(-|x|)), overflow-free for any x. */
static Tensor *softplus(Tensor *x) {
    return tensor_add(tensor_relu(x), tensor_log(tensor_add_scalar(tensor_exp(tensor_neg(tensor_abs(x))), 1.0f)));
}

/* Per-class Bernoulli KL(σ(u^r/T) || σ(u^q/T)) summed over classes, mean over images:
 *   p log p + (1-p) log(1-p) + p softplus(-u^q/T) + (1-p) softplus(u^q/T),
 * using log σ(z) = -softplus(-z). The teacher entropy term is a constant computed on the host. */
static Tensor *kd_bernoulli(Tensor *student, Tensor *teacher, float T) {
    int64_t B = student->shape[0], n = student->numel;
    float *tu = xmalloc((size_t)n * sizeof(float));
    tensor_copy_to_host(tu, teacher);
    double ent = 0;
    for (int64_t i = 0; i < n; i++) {
        double z = tu[i] / T;
        double p = 1.0 / (1.0 + exp(-z));
        /* log p = -softplus(-z), log(1-p) = -softplus(z), both finite for any z. */
        double lp = -(fmax(-z, 0) + log1p(exp(-fabs(z)))), lq = -(fmax(z, 0) + log1p(exp(-fabs(z))));
        ent += p * lp + (1 - p) * lq;
        tu[i] = (float)p;
    }
    Tensor *p = tensor_from_f32(student->ndim, student->shape, tu);
    free(tu);
    Tensor *zs = tensor_mul_scalar(student, 1.0f / T);
    Tensor *a = tensor_mul(p, softplus(tensor_neg(zs)));
    Tensor *b = tensor_mul(tensor_affine(p, -1.0f, 1.0f), softplus(zs));
    Tensor *sum = tensor_sum_all(tensor_add(a, b));
    return tensor_affine(sum, 1.0f / (float)B, (float)(ent / (double)B));
}

Tensor *trmml_loss_kd(const MethodTrmmlConfig *cfg, Tensor *student, Tensor *teacher) {
    CHECK(student->ndim == 2 && tensor_same_shape(student, teacher),
          "trmml kd: student %s and teacher %s must be one (B,C) shape", tensor_shape_str(student),
          tensor_shape_str(teacher));
    if (cfg->kd_form == TRMML_KD_BERNOULLI) return kd_bernoulli(student, teacher, (float)cfg->kd_temperature);
    return tensor_kl_div_softmax(student, teacher, 1, (float)cfg->kd_temperature);
}

Tensor *trmml_loss_nce(const TrmmlCarl *m, const MethodTrmmlConfig *cfg, Tensor *gpos, Tensor *fr,
                       const Tensor *y, const TrmmlMmcp *bank) {
    int64_t B = fr->shape[0], C = m->C, d = m->d;
    CHECK(fr->ndim == 3 && fr->shape[1] == C && fr->shape[2] == d && y->ndim == 2 &&
              y->shape[0] == B && y->shape[1] == C,
          "trmml nce: F^r %s and labels %s must be (B,%lld,%lld) and (B,%lld)",
          tensor_shape_str(fr), tensor_shape_str(y), (long long)C, (long long)d, (long long)C);
    float *Y = tensor_to_host(y); /* which keys are positives is decided on the host */
    bool use_bank = bank && cfg->nce_use_bank;
    int64_t nb = 0, nbank = use_bank ? trmml_mmcp_bank_size(bank) : 0;
    for (int64_t i = 0; i < B * C; i++) nb += Y[i] == 1.0f;
    if (nb + nbank == 0) {
        free(Y);
        return tensor_scalar(0.0f);
    }

    /* Keys: the batch's ground-truth positive regions (row i*C+c of F^r), then the bank. */
    int64_t *cls = xmalloc((size_t)(nb + nbank) * sizeof(int64_t));
    Tensor *parts[2];
    int np = 0;
    if (nb > 0) {
        int64_t *I = xmalloc((size_t)nb * sizeof *I), n = 0;
        for (int64_t i = 0; i < B * C; i++)
            if (Y[i] == 1.0f) {
                I[n] = i;
                cls[n++] = i % C;
            }
        Tensor *ids = tensor_empty(DT_I64, 1, SHAPE(nb));
        device_table(ids->device)->copy_h2d(ids->data, I, (size_t)nb * sizeof *I);
        free(I);
        parts[np++] = tensor_embedding(tensor_reshape(fr, 2, SHAPE(B * C, d)), ids);
    }
    int64_t K = nb;
    if (nbank > 0) {
        float *vecs = xmalloc((size_t)(nbank * d) * sizeof(float));
        int64_t got = trmml_mmcp_bank_entries(bank, cfg->nce_bank_per_class, vecs, cls + nb);
        if (got > 0) {
            /* Bank entries are detached inputs; they pass through h, so h gets their gradient. */
            parts[np++] = tensor_from_f32(2, SHAPE(got, d), vecs);
            K += got;
        }
        free(vecs);
    }
    Tensor *keys = np == 1 ? parts[0] : tensor_concat(parts, np, 0);          /* (K,d) */
    Tensor *logits = tensor_matmul_t(trmml_carl_project(m, gpos), trmml_carl_project(m, keys),
                                     false, true);                            /* (C,K) */
    float *mask = xcalloc((size_t)(C * K), sizeof(float));
    for (int64_t j = 0; j < K; j++) mask[cls[j] * K + j] = 1.0f;
    Tensor *pos = tensor_from_f32(2, SHAPE(C, K), mask);
    free(mask);
    free(cls);
    free(Y);
    return tensor_info_nce(logits, pos, (float)cfg->nce_tau);
}

void trmml_loss_compute(const TrmmlCarl *m, const TrmmlConfig *cfg, const MethodTrmmlConfig *mc,
                        const TrmmlCarlOut *out, Tensor *gpos, Tensor *targets, const Tensor *y, const TrmmlMmcp *bank,
                        TrmmlLoss *loss) {
    memset(loss, 0, sizeof *loss);
    loss->cls_q = trmml_loss_cls(cfg, out->uq, targets);
    loss->cls_r = trmml_loss_cls(cfg, out->ur, targets);
    Tensor *total = tensor_add(loss->cls_q, tensor_mul_scalar(loss->cls_r, (float)mc->alpha));
    if (mc->use_kd) {
        loss->kd = trmml_loss_kd(mc, out->uq, out->ur);
        total = tensor_add(total, tensor_mul_scalar(loss->kd, (float)mc->beta));
    }
    if (mc->use_mmcl) {
        loss->nce = trmml_loss_nce(m, mc, gpos, out->fr, y, bank);
        total = tensor_add(total, tensor_mul_scalar(loss->nce, (float)mc->gamma));
    }
    loss->total = total;
}
