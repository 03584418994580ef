/* carl.c — the CARL decoder, Eq. 1 matching, the projection head and the inference path
 * (SPEC §4.2, §4.3, §4.6, §4.8). Everything is composed of tensor ops; the tape differentiates it.
 *
 * The decoder is one post-norm layer with a single-head cross-attention from the C category
 * queries to the HW pixels (no self-attention, no extra positional encoding; DECISION 10):
 *
 *   Qp = Q Wqᵀ + bq                                   (C,d), shared by the batch
 *   Φ  = Qp Kᵀ / √d,  K = f Wkᵀ + bk                  (B,C,HW)
 *   A  = softmax_HW(Φ);  O = (A V) Woᵀ + bo,  V = f Wvᵀ + bv
 *   X1 = LN1(Q + drop(O));  X = LN2(X1 + drop(FFN(X1)));  F^q = X + MLP(X)   (Eq. 3)
 *   R  = σ(Φ);  F^r = Σ_p R_p f_p / (Σ_p R_p + 1e-6)                           (Eq. 2, 4)
 *
 * Folding (SPEC §4.2 "Cost"; cfg attn_fold): the B·HW pixel projections K and V are never
 * formed. Qp Kᵀ = (Qp Wk) fᵀ + Qp bk, so W_k is folded into the C queries once per step; and
 * since each row of A sums to 1, A V = (A f) Wvᵀ + bv, so the raw features are pooled first and
 * only the B·C pooled vectors are projected. Both identities are exact in real arithmetic; the
 * test carl_fold_matches_plain compares the two forms' outputs and gradients. */
#include "trmml/carl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/ops/dropout.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape.h"
#include "trmml/head_params.h"
#include "tensor/ops/softmax.h"


static int64_t mlp_hidden(int64_t d, const MethodTrmmlConfig *mc) {
    return mc->mlp_hidden > 0 ? mc->mlp_hidden : d;
}

void trmml_carl_declare(TrmmlCarl *m, ParamStore *ps, const char *prefix, int64_t C, int64_t d,
                        const TrmmlConfig *cfg, const MethodTrmmlConfig *mc) {
    CHECK(C > 0 && d > 0, "carl '%s': C %lld, d %lld", prefix, (long long)C, (long long)d);
    memset(m, 0, sizeof *m);
    m->C = C;
    m->d = d;
    m->ffn_hidden = cfg->ffn_hidden;
    m->mlp_hidden = mlp_hidden(d, mc);
    m->head_hidden = mc->head_hidden;
    m->ln_eps = (float)cfg->ln_eps;
    m->dropout = (float)cfg->dropout;
    m->region_eps = (float)mc->region_eps;
    m->region_mean = mc->region_pool == TRMML_REGION_MEAN;
    m->temp_max = (float)cfg->temp_max;
    m->temp_init = (float)cfg->temp_init;
    m->fold = mc->attn_fold;
    m->query_init = mc->query_init;

    m->queries = trmml_param_declare(ps, prefix, "queries", 2, SHAPE(C, d), true);
    trmml_linear_declare(&m->attn_q, ps, prefix, "attn.q", d, d);
    trmml_linear_declare(&m->attn_k, ps, prefix, "attn.k", d, d);
    trmml_linear_declare(&m->attn_v, ps, prefix, "attn.v", d, d);
    trmml_linear_declare(&m->attn_o, ps, prefix, "attn.o", d, d);
    m->ln1_weight = trmml_param_declare(ps, prefix, "ln1.weight", 1, SHAPE(d), true);
    m->ln1_bias = trmml_param_declare(ps, prefix, "ln1.bias", 1, SHAPE(d), true);
    m->ln2_weight = trmml_param_declare(ps, prefix, "ln2.weight", 1, SHAPE(d), true);
    m->ln2_bias = trmml_param_declare(ps, prefix, "ln2.bias", 1, SHAPE(d), true);
    trmml_linear_declare(&m->ffn1, ps, prefix, "ffn1", d, m->ffn_hidden);
    trmml_linear_declare(&m->ffn2, ps, prefix, "ffn2", m->ffn_hidden, d);
    trmml_linear_declare(&m->mlp1, ps, prefix, "mlp1", d, m->mlp_hidden);
    trmml_linear_declare(&m->mlp2, ps, prefix, "mlp2", m->mlp_hidden, d);
    trmml_linear_declare(&m->head1, ps, prefix, "head1", d, m->head_hidden);
    trmml_linear_declare(&m->head2, ps, prefix, "head2", m->head_hidden, d);
    m->logit_scale = trmml_param_declare(ps, prefix, "logit_scale", 1, SHAPE(1), mc->temp_learnable);
}

int64_t trmml_carl_param_count(int64_t C, int64_t d, const TrmmlConfig *cfg,
                               const MethodTrmmlConfig *mc) {
    int64_t hf = cfg->ffn_hidden, hm = mlp_hidden(d, mc), hh = mc->head_hidden;
    return C * d                          /* queries */
           + 4 * (d * d + d)              /* q, k, v, o with biases */
           + 4 * d                        /* two LayerNorms */
           + (d * hf + hf) + (hf * d + d) /* decoder FFN */
           + (d * hm + hm) + (hm * d + d) /* Eq. 3 MLP */
           + (d * hh + hh) + (hh * d + d) /* projection head */
           + (mc->temp_learnable ? 1 : 0);
}

/* Host fill helpers: initialisation runs once, outside per-step code. */
static void set_host(Tensor *t, const float *v) { tensor_copy_from_host(t, v); }

static void fill_xavier(Tensor *w, Rng *rng) {
    /* torch.nn.init.xavier_uniform_: U(±sqrt(6 / (fan_in + fan_out))). */
    float bound = sqrtf(6.0f / (float)(w->shape[0] + w->shape[1]));
    float *h = xmalloc((size_t)w->numel * sizeof(float));
    rng_fill_uniform(rng, h, w->numel, -bound, bound);
    set_host(w, h);
    free(h);
}

void trmml_carl_init(TrmmlCarl *m, Rng *rng, const float *text_features, float clip_logit_scale) {
    int64_t C = m->C, d = m->d;
    float *q = xmalloc((size_t)(C * d) * sizeof(float));
    if (text_features && m->query_init == TRMML_QUERY_INIT_TEXT) {
        for (int64_t c = 0; c < C; c++) {
            double n = 0;
            for (int64_t j = 0; j < d; j++) n += (double)text_features[c * d + j] * text_features[c * d + j];
            float inv = (float)(1.0 / fmax(sqrt(n), 1e-12));
            for (int64_t j = 0; j < d; j++) q[c * d + j] = text_features[c * d + j] * inv;
        }
    } else {
        /* Rows of norm about 1, like the normalised text features of the default init. */
        rng_fill_normal(rng, q, C * d, 0.0f, 1.0f / sqrtf((float)d));
    }
    set_host(m->queries, q);
    free(q);

    NnLinear *attn[4] = {&m->attn_q, &m->attn_k, &m->attn_v, &m->attn_o};
    for (int i = 0; i < 4; i++) {
        fill_xavier(attn[i]->weight, rng);
        tensor_fill(attn[i]->bias, 0.0f);
    }
    tensor_fill(m->ln1_weight, 1.0f);
    tensor_fill(m->ln1_bias, 0.0f);
    tensor_fill(m->ln2_weight, 1.0f);
    tensor_fill(m->ln2_bias, 0.0f);
    NnLinear *lin[6] = {&m->ffn1, &m->ffn2, &m->mlp1, &m->mlp2, &m->head1, &m->head2};
    for (int i = 0; i < 6; i++) nn_linear_init(lin[i], rng);
    float t = isnan(m->temp_init) ? clip_logit_scale : m->temp_init;
    CHECK(isfinite(t), "carl: temperature init %g is not finite", t);
    set_host(m->logit_scale, &t);
    trmml_carl_clamp_temperature(m);
}

void trmml_carl_clamp_temperature(TrmmlCarl *m) {
    float t;
    tensor_copy_to_host(&t, m->logit_scale);
    float cap = logf(m->temp_max);
    if (t > cap) {
        t = cap;
        tensor_copy_from_host(m->logit_scale, &t);
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

static void check_features(const TrmmlCarl *m, const Tensor *f) {
    CHECK(f && f->ndim == 3 && f->shape[2] == m->d, "carl: dense features %s must be (B,HW,%lld)",
          f ? tensor_shape_str(f) : "NULL", (long long)m->d);
}

Tensor *trmml_carl_energies(const TrmmlCarl *m, Tensor *f) {
    check_features(m, f);
    Tensor *qp = nn_linear_forward(&m->attn_q, m->queries); /* (C,d) */
    Tensor *phi_t;                                          /* Φᵀ (B,HW,C) */
    if (m->fold) {
        /* Qp Kᵀ = (Qp Wk) fᵀ + Qp bk: fold W_k into the C queries, never project the pixels. */
        Tensor *qk = tensor_matmul(qp, m->attn_k.weight);                           /* (C,d) */
        Tensor *bk = tensor_reshape(m->attn_k.bias, 2, SHAPE(m->d, 1));
        Tensor *qb = tensor_reshape(tensor_matmul(qp, bk), 1, SHAPE(m->C));         /* (C) */
        phi_t = tensor_add(tensor_matmul_t(f, qk, false, true), qb);
    } else {
        Tensor *k = nn_linear_forward(&m->attn_k, f);                              /* (B,HW,d) */
        phi_t = tensor_matmul_t(k, qp, false, true);
    }
    return tensor_mul_scalar(tensor_transpose(phi_t, 1, 2), 1.0f / sqrtf((float)m->d));
}

Tensor *trmml_carl_region_features(const TrmmlCarl *m, Tensor *regions, Tensor *f) {
    Tensor *num = tensor_matmul(regions, f); /* (B,C,d) = Σ_p R_p f_p */
    if (!m->region_mean) return num;
    Tensor *den = tensor_add_scalar(tensor_sum(regions, -1, true), m->region_eps); /* (B,C,1) */
    return tensor_div(num, den);
}

Tensor *trmml_carl_scale(const TrmmlCarl *m) {
    return tensor_clamp(tensor_exp(m->logit_scale), -INFINITY, m->temp_max);
}

Tensor *trmml_carl_match(Tensor *feat, Tensor *gpos, Tensor *gneg, Tensor *scale) {
    CHECK(feat->ndim == 3 && gpos->ndim == 2 && tensor_same_shape(gpos, gneg) &&
              feat->shape[1] == gpos->shape[0] && feat->shape[2] == gpos->shape[1],
          "carl match: features %s, G+ %s, G- %s must be (B,C,d), (C,d), (C,d)",
          tensor_shape_str(feat), tensor_shape_str(gpos), tensor_shape_str(gneg));
    /* cos(F,G+) - cos(F,G-) = <F/|F|, G+/|G+| - G-/|G-|>: one product per (image, class). */
    Tensor *nf = tensor_l2_normalize(feat, -1);
    Tensor *diff = tensor_sub(tensor_l2_normalize(gpos, -1), tensor_l2_normalize(gneg, -1));
    Tensor *cosd = tensor_sum(tensor_mul(nf, diff), -1, false); /* (B,C) */
    return tensor_mul(cosd, scale);
}

Tensor *trmml_carl_project(const TrmmlCarl *m, Tensor *x) {
    Tensor *h = nn_linear_forward(&m->head2, tensor_relu(nn_linear_forward(&m->head1, x)));
    return tensor_l2_normalize(h, -1);
}

void trmml_carl_forward(const TrmmlCarl *m, Tensor *f, Tensor *gpos, Tensor *gneg, bool training,
                        DropoutDraws *drop, TrmmlCarlOut *out) {
    check_features(m, f);
    CHECK(!training || m->dropout == 0.0f || drop,
          "carl forward: training with dropout needs DropoutDraws");
    memset(out, 0, sizeof *out);
    out->phi = trmml_carl_energies(m, f);
    out->attn = tensor_softmax(out->phi, -1, NULL);

    Tensor *av; /* A V (B,C,d) */
    if (m->fold) {
        /* Rows of A sum to 1, so A (f Wvᵀ + bv) = (A f) Wvᵀ + bv: pool, then project. */
        av = nn_linear_forward(&m->attn_v, tensor_matmul(out->attn, f));
    } else {
        av = tensor_matmul(out->attn, nn_linear_forward(&m->attn_v, f));
    }
    Tensor *o = nn_linear_forward(&m->attn_o, av);
    Tensor *x1 = tensor_layernorm(
        tensor_add(m->queries, tensor_dropout_rows(o, m->dropout, training, drop)),
                                  m->ln1_weight, m->ln1_bias, m->ln_eps);
    Tensor *h = tensor_dropout_rows(tensor_relu(nn_linear_forward(&m->ffn1, x1)), m->dropout,
                                    training, drop);
    Tensor *ffn = tensor_dropout_rows(nn_linear_forward(&m->ffn2, h), m->dropout, training, drop);
    Tensor *x = tensor_layernorm(tensor_add(x1, ffn), m->ln2_weight, m->ln2_bias, m->ln_eps);
    out->fq = tensor_add(x, nn_linear_forward(&m->mlp2, tensor_relu(nn_linear_forward(&m->mlp1, x))));

    out->regions = tensor_sigmoid(out->phi);
    out->fr = trmml_carl_region_features(m, out->regions, f);
    out->scale = trmml_carl_scale(m);
    out->uq = trmml_carl_match(out->fq, gpos, gneg, out->scale);
    out->ur = trmml_carl_match(out->fr, gpos, gneg, out->scale);
}

Tensor *trmml_carl_infer(const TrmmlCarl *m, Tensor *f, Tensor *gpos, Tensor *gneg) {
    bool g = ag_set_grad_enabled(false);
    Tensor *regions = tensor_sigmoid(trmml_carl_energies(m, f));
    Tensor *fr = trmml_carl_region_features(m, regions, f);
    Tensor *p = tensor_sigmoid(trmml_carl_match(fr, gpos, gneg, trmml_carl_scale(m)));
    ag_set_grad_enabled(g);
    return p;
}
