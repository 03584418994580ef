/* pvlr.c — the PVLR head (SPEC §5; trmml/pvlr.h; docs/pvlr.md). Everything is composed of tensor
 * ops; the tape differentiates it.
 *
 *   KAP  K   = LN(T^K + (A^K T^K) W_K)                                  (C,d)
 *   CAP  Cx  = EncoderLayer(T^C): LN(x + MHA(x,x,x)), LN(x + FFN(x))    (C,d)
 *   IFM  K'  = LN(K + MHA(K, Cx, Cx)),  C' = LN(Cx + MHA(Cx, K, K))
 *        g   = σ([K'; C'] W_g + b_g),  L0 = g ⊙ K' + (1 − g) ⊙ C',  L0 = LN(L0 + FFN(L0))
 *   DMA  V1  = LN(Vtok + MHA(Vtok, L0, L0)),  V1 = LN(V1 + FFN(V1))     (B,HW,d)
 *        L1  = LN(L0 + MHA(L0, V1, V1)),      L1 = LN(L1 + FFN(L1))     (B,C,d)
 *   pred S   = cos(L1_c, V1_p),  w = softmax_p(20 S),  a_c = Σ_p w S,  g_c = cos(L1_c, v_g)
 *        z_c = s (a_c + g_c)/2 + b_c
 * Post-norm blocks with dropout on the attention output, inside the FFN and on its output
 * (PyTorch's TransformerEncoderLayer sites). Switched-off components are replaced as
 * docs/pvlr.md "Ablation switches" says.
 *
 * The label side (KAP, CAP, IFM) does not depend on the image: L0 is computed once per call and
 * its key/value (text->visual) and query (visual->text) projections are taken on the C rows once
 * and broadcast over the batch, never on B copies. */
#include "trmml/pvlr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/ops/attention.h"
#include "tensor/ops/dropout.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/loss.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape.h"
#include "trmml/head_params.h"
#include "tensor/ops/softmax.h"

/* ---- declaration -------------------------------------------------------------------------- */


static void norm(PvlrNorm *n, ParamStore *ps, const char *prefix, const char *leaf, int64_t d) {
    char name[256];
    snprintf(name, sizeof name, "%.100s.weight", leaf);
    n->weight = trmml_param_declare(ps, prefix, name, 1, SHAPE(d), true);
    snprintf(name, sizeof name, "%.100s.bias", leaf);
    n->bias = trmml_param_declare(ps, prefix, name, 1, SHAPE(d), true);
}

static void attention(PvlrAttention *a, ParamStore *ps, const char *prefix, const char *leaf,
                      int64_t d) {
    const char *parts[4] = {"q", "k", "v", "o"};
    NnLinear *l[4] = {&a->q, &a->k, &a->v, &a->o};
    char name[256];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%.100s.%s", leaf, parts[i]);
        trmml_linear_declare(l[i], ps, prefix, name, d, d);
    }
}

static void ffn(PvlrFfn *f, ParamStore *ps, const char *prefix, const char *leaf, int64_t d,
                int64_t hidden) {
    char name[256];
    snprintf(name, sizeof name, "%.100s1", leaf);
    trmml_linear_declare(&f->fc1, ps, prefix, name, d, hidden);
    snprintf(name, sizeof name, "%.100s2", leaf);
    trmml_linear_declare(&f->fc2, ps, prefix, name, hidden, d);
}

/* IFM exists only between two label sources (DECISION in docs/pvlr.md). */
static bool ifm_on(const MethodPvlrConfig *pc) {
    return pc->pvlr_use_ifm && pc->pvlr_use_kap && pc->pvlr_use_cap;
}

/* The sizes, switches and constants of a head from the configuration (SPEC §5.7: full labels
 * γ+ 0, γ− 4; partial labels γ+ 1, γ− 2; both with m = 0.05). */
static void settings(PvlrHead *m, int64_t C, int64_t d, const TrmmlConfig *cfg,
                     const MethodPvlrConfig *pc, bool full_labels) {
    memset(m, 0, sizeof *m);
    m->C = C;
    m->d = d;
    m->heads = pc->pvlr_heads;
    m->ffn_hidden = cfg->ffn_hidden;
    m->ln_eps = (float)cfg->ln_eps;
    m->dropout = (float)cfg->dropout;
    m->kap_tau = (float)pc->pvlr_kap_tau;
    m->spatial_temp = (float)pc->pvlr_spatial_temp;
    m->temp_max = (float)cfg->temp_max;
    m->temp_init = (float)pc->pvlr_temp_init;
    m->use_kap = pc->pvlr_use_kap;
    m->use_cap = pc->pvlr_use_cap;
    m->use_ifm = ifm_on(pc);
    m->use_t2v = pc->pvlr_use_t2v;
    m->use_v2t = pc->pvlr_use_v2t;
    m->use_global = pc->pvlr_use_global;
    int setting = pc->pvlr_asl;
    if (setting == PVLR_ASL_AUTO) setting = full_labels ? PVLR_ASL_FULL : PVLR_ASL_PARTIAL;
    m->asl_gamma_pos = setting == PVLR_ASL_FULL      ? 0.0f
                       : setting == PVLR_ASL_PARTIAL ? 1.0f
                                                     : (float)cfg->asl_gamma_pos;
    m->asl_gamma_neg = setting == PVLR_ASL_FULL      ? 4.0f
                       : setting == PVLR_ASL_PARTIAL ? 2.0f
                                                     : (float)cfg->asl_gamma_neg;
    m->asl_clip = (float)cfg->asl_clip;
    m->asl_eps = (float)cfg->asl_eps;

}

/* One attention layer with its FFN: <name>.attn, <name>.norm1, <name>.ffn, <name>.norm2. */
static void declare_block(PvlrAttention *a, PvlrNorm *n1, PvlrFfn *f, PvlrNorm *n2,
                          ParamStore *ps, const char *prefix, const char *name, int64_t d,
                          int64_t H) {
    char leaf[64];
    snprintf(leaf, sizeof leaf, "%s.attn", name);
    attention(a, ps, prefix, leaf, d);
    snprintf(leaf, sizeof leaf, "%s.norm1", name);
    norm(n1, ps, prefix, leaf, d);
    snprintf(leaf, sizeof leaf, "%s.ffn", name);
    ffn(f, ps, prefix, leaf, d, H);
    snprintf(leaf, sizeof leaf, "%s.norm2", name);
    norm(n2, ps, prefix, leaf, d);
}

void pvlr_declare(PvlrHead *m, ParamStore *ps, const char *prefix, int64_t C, int64_t d,
                  const TrmmlConfig *cfg, const MethodPvlrConfig *pc, bool full_labels) {
    CHECK(C > 0 && d > 0 && pc->pvlr_heads > 0 && d % pc->pvlr_heads == 0,
          "pvlr '%s': C %lld, d %lld, heads %lld (must divide d)", prefix, (long long)C,
          (long long)d, (long long)pc->pvlr_heads);
    CHECK(pc->pvlr_use_kap || pc->pvlr_use_cap, "pvlr: KAP and CAP both off");
    settings(m, C, d, cfg, pc, full_labels);
    const int64_t H = m->ffn_hidden;
    if (m->use_kap) {
        m->kap_weight = trmml_param_declare(ps, prefix, "kap.weight", 2, SHAPE(d, d), true);
        norm(&m->kap_norm, ps, prefix, "kap_norm", d);
    }
    if (m->use_cap)
        declare_block(&m->cap_attn, &m->cap_norm1, &m->cap_ffn, &m->cap_norm2, ps, prefix, "cap",
                      d, H);
    if (m->use_ifm) {
        attention(&m->ifm_k2c, ps, prefix, "ifm.k2c", d);
        norm(&m->ifm_norm_k, ps, prefix, "ifm.norm_k", d);
        attention(&m->ifm_c2k, ps, prefix, "ifm.c2k", d);
        norm(&m->ifm_norm_c, ps, prefix, "ifm.norm_c", d);
        trmml_linear_declare(&m->gate, ps, prefix, "ifm.gate", 2 * d, d);
        ffn(&m->ifm_ffn, ps, prefix, "ifm.ffn", d, H);
        norm(&m->ifm_norm, ps, prefix, "ifm.norm", d);
    }
    if (m->use_t2v)
        declare_block(&m->t2v_attn, &m->t2v_norm1, &m->t2v_ffn, &m->t2v_norm2, ps, prefix, "t2v",
                      d, H);
    if (m->use_v2t)
        declare_block(&m->v2t_attn, &m->v2t_norm1, &m->v2t_ffn, &m->v2t_norm2, ps, prefix, "v2t",
                      d, H);
    m->logit_scale = trmml_param_declare(ps, prefix, "logit_scale", 1, SHAPE(1), true);
    m->class_bias = trmml_param_declare(ps, prefix, "class_bias", 1, SHAPE(C), true);
}

int64_t pvlr_param_count(int64_t C, int64_t d, const TrmmlConfig *cfg,
                         const MethodPvlrConfig *pc) {
    const int64_t H = cfg->ffn_hidden, attn = 4 * (d * d + d), ln = 2 * d,
                  ff = (d * H + H) + (H * d + d), layer = attn + ln + ff + ln;
    int64_t n = 1 + C; /* t, b */
    if (pc->pvlr_use_kap) n += d * d + ln;
    if (pc->pvlr_use_cap) n += layer;
    if (ifm_on(pc)) n += 2 * (attn + ln) + (2 * d * d + d) + ff + ln;
    if (pc->pvlr_use_t2v) n += layer;
    if (pc->pvlr_use_v2t) n += layer;
    return n;
}

/* ---- initialisation ----------------------------------------------------------------------- */

static void fill_uniform(Tensor *t, Rng *rng, float bound) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    rng_fill_uniform(rng, h, t->numel, -bound, bound);
    tensor_copy_from_host(t, h);
    free(h);
}

static void init_norm(PvlrNorm *n) {
    if (!n->weight) return;
    tensor_fill(n->weight, 1.0f);
    tensor_fill(n->bias, 0.0f);
}

static void init_attention(PvlrAttention *a, Rng *rng, int64_t d) {
    if (!a->q.weight) return;
    /* nn.MultiheadAttention: xavier_uniform_ on the stacked (3d, d) in-projection, the output
     * projection with Linear's bound 1/sqrt(d), every bias 0. */
    const float in_bound = sqrtf(6.0f / (float)(3 * d + d));
    fill_uniform(a->q.weight, rng, in_bound);
    fill_uniform(a->k.weight, rng, in_bound);
    fill_uniform(a->v.weight, rng, in_bound);
    fill_uniform(a->o.weight, rng, 1.0f / sqrtf((float)d));
    NnLinear *l[4] = {&a->q, &a->k, &a->v, &a->o};
    for (int i = 0; i < 4; i++) tensor_fill(l[i]->bias, 0.0f);
}

static void init_ffn(PvlrFfn *f, Rng *rng) {
    if (!f->fc1.weight) return;
    nn_linear_init(&f->fc1, rng);
    nn_linear_init(&f->fc2, rng);
}

/* In the order of block(): attention, norm1, FFN, norm2 (the generator's draws follow it). */
static void init_block(PvlrAttention *a, PvlrNorm *n1, PvlrFfn *f, PvlrNorm *n2, Rng *rng,
                       int64_t d) {
    init_attention(a, rng, d);
    init_norm(n1);
    init_ffn(f, rng);
    init_norm(n2);
}

void pvlr_init(PvlrHead *m, Rng *rng) {
    const int64_t d = m->d;
    if (m->kap_weight) tensor_fill(m->kap_weight, 0.0f); /* KAP starts as pure CLIP knowledge */
    init_norm(&m->kap_norm);
    init_block(&m->cap_attn, &m->cap_norm1, &m->cap_ffn, &m->cap_norm2, rng, d);
    init_attention(&m->ifm_k2c, rng, d);
    init_norm(&m->ifm_norm_k);
    init_attention(&m->ifm_c2k, rng, d);
    init_norm(&m->ifm_norm_c);
    if (m->gate.weight) nn_linear_init(&m->gate, rng);
    init_ffn(&m->ifm_ffn, rng);
    init_norm(&m->ifm_norm);
    init_block(&m->t2v_attn, &m->t2v_norm1, &m->t2v_ffn, &m->t2v_norm2, rng, d);
    init_block(&m->v2t_attn, &m->v2t_norm1, &m->v2t_ffn, &m->v2t_norm2, rng, d);
    CHECK(isfinite(m->temp_init), "pvlr: temperature init %g is not finite", m->temp_init);
    tensor_copy_from_host(m->logit_scale, &m->temp_init);
    tensor_fill(m->class_bias, 0.0f);
    pvlr_clamp_temperature(m);
}

void pvlr_set_knowledge(PvlrHead *m, const float *text_features) {
    const int64_t C = m->C, d = m->d;
    /* Host double arithmetic: computed once per model, not per step. */
    double *t = xmalloc((size_t)(C * d) * sizeof(double));
    for (int64_t c = 0; c < C; c++) {
        double n = 0;
        for (int64_t j = 0; j < d; j++) n += (double)text_features[c * d + j] * text_features[c * d + j];
        const double inv = 1.0 / fmax(sqrt(n), 1e-12);
        for (int64_t j = 0; j < d; j++) t[c * d + j] = text_features[c * d + j] * inv;
    }
    float *tk = xmalloc((size_t)(C * d) * sizeof(float));
    float *akt = xcalloc((size_t)(C * d), sizeof(float));
    double *row = xmalloc((size_t)C * sizeof(double));
    for (int64_t c = 0; c < C; c++) {
        for (int64_t j = 0; j < d; j++) tk[c * d + j] = (float)t[c * d + j];
        /* A^K row c = softmax over c' of <T^K_c, T^K_c'> / tau (max subtracted for range). */
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < C; k++) {
            double s = 0;
            for (int64_t j = 0; j < d; j++) s += t[c * d + j] * t[k * d + j];
            row[k] = s / m->kap_tau;
            mx = fmax(mx, row[k]);
        }
        for (int64_t k = 0; k < C; k++) sum += (row[k] = exp(row[k] - mx));
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t k = 0; k < C; k++) s += row[k] / sum * t[k * d + j];
            akt[c * d + j] = (float)s;
        }
    }
    if (m->consts) param_store_destroy(m->consts);
    m->consts = param_store_create(tensor_default_device(), "pvlr knowledge");
    m->kap_text = param_add(m->consts, "pvlr.kap_text", DT_F32, 2, SHAPE(C, d), false);
    m->kap_relation_text = param_add(m->consts, "pvlr.kap_relation_text", DT_F32, 2, SHAPE(C, d), false);
    param_store_finalize(m->consts);
    tensor_copy_from_host(m->kap_text, tk);
    tensor_copy_from_host(m->kap_relation_text, akt);
    free(t);
    free(tk);
    free(akt);
    free(row);
}

void pvlr_free(PvlrHead *m) {
    if (m->consts) param_store_destroy(m->consts);
    m->consts = NULL;
    m->kap_text = m->kap_relation_text = NULL;
}

void pvlr_clamp_temperature(PvlrHead *m) {
    float t;
    tensor_copy_to_host(&t, m->logit_scale);
    const float cap = logf(m->temp_max);
    if (t > cap) {
        t = cap;
        tensor_copy_from_host(m->logit_scale, &t);
    }
}

/* ---- building blocks ---------------------------------------------------------------------- */

/* x (T,d) or (Bx,T,d) -> (B,NH,T,HS), a batch of 1 broadcast to B (label-side projections are
 * taken once on the C rows; the broadcast's backward sums over the batch). */
static Tensor *split_heads(const PvlrHead *m, Tensor *x, int64_t B) {
    if (x->ndim == 2) x = tensor_reshape(x, 3, SHAPE(1, x->shape[0], x->shape[1]));
    Tensor *h = tensor_attention_heads_split(x, m->heads);
    if (h->shape[0] == B) return h;
    CHECK(h->shape[0] == 1, "pvlr attention: batch %lld vs %lld", (long long)h->shape[0],
          (long long)B);
    return tensor_add(tensor_zeros(DT_F32, 4, SHAPE(B, h->shape[1], h->shape[2], h->shape[3])), h);
}

/* Multi-head attention: queries xq, keys and values xkv, each (T,d) shared or (B,T,d); the
 * output is (B,T,d), or (T,d) when neither input has a batch. */
static Tensor *mha(const PvlrHead *m, const PvlrAttention *a, Tensor *xq, Tensor *xkv) {
    const int64_t B = xq->ndim == 3 ? xq->shape[0] : xkv->ndim == 3 ? xkv->shape[0] : 1;
    Tensor *q = split_heads(m, nn_linear_forward(&a->q, xq), B);
    Tensor *k = split_heads(m, nn_linear_forward(&a->k, xkv), B);
    Tensor *v = split_heads(m, nn_linear_forward(&a->v, xkv), B);
    const float scale = 1.0f / sqrtf((float)(m->d / m->heads));
    Tensor *o = nn_linear_forward(&a->o, tensor_attention_heads_merge(tensor_attention(q, k, v, false, scale)));
    if (xq->ndim == 2 && xkv->ndim == 2) o = tensor_reshape(o, 2, SHAPE(o->shape[1], o->shape[2]));
    return o;
}

/* Post-norm residual: LN(x + dropout(y)). */
static Tensor *add_norm(const PvlrHead *m, const PvlrNorm *n, Tensor *x, Tensor *y, bool training,
                        DropoutDraws *drop) {
    return tensor_layernorm(tensor_add(x, tensor_dropout_rows(y, m->dropout, training, drop)),
                            n->weight, n->bias, m->ln_eps);
}

/* FFN(x) = fc2(dropout(relu(fc1 x))). */
static Tensor *feed_forward(const PvlrHead *m, const PvlrFfn *f, Tensor *x, bool training,
                            DropoutDraws *drop) {
    Tensor *h = tensor_dropout_rows(tensor_relu(nn_linear_forward(&f->fc1, x)), m->dropout,
                                    training, drop);
    return nn_linear_forward(&f->fc2, h);
}

/* One post-norm layer: x1 = LN1(x + MHA(x, kv, kv)); LN2(x1 + FFN(x1)). */
static Tensor *block(const PvlrHead *m, const PvlrAttention *a, const PvlrNorm *n1, const PvlrFfn *f,
                     const PvlrNorm *n2, Tensor *x, Tensor *kv, bool training, DropoutDraws *drop) {
    Tensor *x1 = add_norm(m, n1, x, mha(m, a, x, kv), training, drop);
    return add_norm(m, n2, x1, feed_forward(m, f, x1, training, drop), training, drop);
}

/* (C,d) -> (B,C,d): the shared rows repeated for every image. */
static Tensor *broadcast_batch(Tensor *x, int64_t B) {
    return tensor_add(tensor_zeros(DT_F32, 3, SHAPE(B, x->shape[0], x->shape[1])), x);
}

static void check_dense(const PvlrHead *m, const Tensor *dense) {
    CHECK(dense && dense->ndim == 3 && dense->shape[1] >= 2 && dense->shape[2] == m->d,
          "pvlr: dense features %s must be (B, HW+1, %lld)", dense ? tensor_shape_str(dense) : "NULL",
          (long long)m->d);
}

/* ---- forward ------------------------------------------------------------------------------ */

Tensor *pvlr_labels(const PvlrHead *m, Tensor *text_ctx, bool training, DropoutDraws *drop) {
    CHECK(!training || m->dropout == 0.0f || drop,
          "pvlr: training with dropout needs DropoutDraws");
    Tensor *k = NULL, *cx = NULL;
    if (m->use_kap) {
        CHECK(m->kap_text, "pvlr: KAP constants not set (pvlr_set_knowledge)");
        k = tensor_layernorm(tensor_add(m->kap_text, tensor_matmul(m->kap_relation_text, m->kap_weight)),
                             m->kap_norm.weight, m->kap_norm.bias, m->ln_eps);
    }
    if (m->use_cap) {
        CHECK(text_ctx && text_ctx->ndim == 2 && text_ctx->shape[0] == m->C && text_ctx->shape[1] == m->d,
              "pvlr: CAP text features %s must be (%lld, %lld)",
              text_ctx ? tensor_shape_str(text_ctx) : "NULL", (long long)m->C, (long long)m->d);
        cx = block(m, &m->cap_attn, &m->cap_norm1, &m->cap_ffn, &m->cap_norm2, text_ctx, text_ctx,
                   training, drop);
    }
    if (!k) return cx;
    if (!cx) return k;
    if (!m->use_ifm) return tensor_mul_scalar(tensor_add(k, cx), 0.5f);
    Tensor *kp = add_norm(m, &m->ifm_norm_k, k, mha(m, &m->ifm_k2c, k, cx), training, drop);
    Tensor *cp = add_norm(m, &m->ifm_norm_c, cx, mha(m, &m->ifm_c2k, cx, k), training, drop);
    Tensor *both[2] = {kp, cp};
    Tensor *g = tensor_sigmoid(nn_linear_forward(&m->gate, tensor_concat(both, 2, 1)));
    Tensor *l0 = tensor_add(cp, tensor_mul(g, tensor_sub(kp, cp))); /* g K' + (1 - g) C' */
    return add_norm(m, &m->ifm_norm, l0, feed_forward(m, &m->ifm_ffn, l0, training, drop), training,
                    drop);
}

void pvlr_predict(const PvlrHead *m, Tensor *dense, Tensor *labels, bool training,
                  DropoutDraws *drop, PvlrOut *out) {
    check_dense(m, dense);
    CHECK(labels && labels->ndim == 2 && labels->shape[0] == m->C && labels->shape[1] == m->d,
          "pvlr: label representations %s must be (%lld, %lld)",
          labels ? tensor_shape_str(labels) : "NULL", (long long)m->C, (long long)m->d);
    CHECK(!training || m->dropout == 0.0f || drop,
          "pvlr: training with dropout needs DropoutDraws");
    memset(out, 0, sizeof *out);
    const int64_t B = dense->shape[0], HW = dense->shape[1] - 1;
    out->labels = labels;
    Tensor *vtok = tensor_slice(dense, 1, 1, HW); /* (B,HW,d) */
    out->visual = !m->use_t2v ? vtok
                              : block(m, &m->t2v_attn, &m->t2v_norm1, &m->t2v_ffn, &m->t2v_norm2,
                                      vtok, labels, training, drop);
    out->label_ctx = !m->use_v2t ? broadcast_batch(labels, B)
                                 : block(m, &m->v2t_attn, &m->v2t_norm1, &m->v2t_ffn,
                                         &m->v2t_norm2, labels, out->visual, training, drop);
    out->sim = tensor_cosine_similarity_matrix(out->label_ctx, out->visual);       /* (B,C,HW) */
    out->weights = tensor_softmax(tensor_mul_scalar(out->sim, m->spatial_temp), -1, NULL);
    Tensor *a = tensor_sum(tensor_mul(out->weights, out->sim), -1, false);         /* (B,C) */
    Tensor *s = tensor_clamp(tensor_exp(m->logit_scale), -INFINITY, m->temp_max);
    if (m->use_global) {
        Tensor *vg = tensor_slice(dense, 1, 0, 1);                                  /* (B,1,d) */
        Tensor *g = tensor_reshape(tensor_cosine_similarity_matrix(out->label_ctx, vg), 2,
                                   SHAPE(B, m->C));
        a = tensor_mul_scalar(tensor_add(a, g), 0.5f);
    }
    out->logits = tensor_add(tensor_mul(a, s), m->class_bias);
}

void pvlr_forward(const PvlrHead *m, Tensor *dense, Tensor *text_ctx, bool training,
                  DropoutDraws *drop, PvlrOut *out) {
    Tensor *labels = pvlr_labels(m, text_ctx, training, drop);
    pvlr_predict(m, dense, labels, training, drop, out);
}

Tensor *pvlr_loss(const PvlrHead *m, Tensor *logits, Tensor *targets) {
    return tensor_asl(logits, targets, m->asl_gamma_pos, m->asl_gamma_neg, m->asl_clip, m->asl_eps,
                      LOSS_SUM_CLASSES_MEAN_IMAGES);
}

Tensor *pvlr_attention_maps(const PvlrHead *m, Tensor *dense, Tensor *text_ctx) {
    check_dense(m, dense);
    bool g = ag_set_grad_enabled(false);
    const int64_t B = dense->shape[0], HW = dense->shape[1] - 1, C = m->C;
    Tensor *labels = pvlr_labels(m, text_ctx, false, NULL);
    Tensor *maps; /* (B,C,HW) before rescaling */
    if (m->use_t2v) {
        /* The weights inside the first DMA attention: visual token p over the C labels. */
        Tensor *vtok = tensor_slice(dense, 1, 1, HW);
        Tensor *q = split_heads(m, nn_linear_forward(&m->t2v_attn.q, vtok), B); /* (B,NH,HW,HS) */
        Tensor *k = split_heads(m, nn_linear_forward(&m->t2v_attn.k, labels), B); /* (B,NH,C,HS) */
        Tensor *scores = tensor_mul_scalar(tensor_matmul_t(q, k, false, true),
                                           1.0f / sqrtf((float)(m->d / m->heads)));
        Tensor *p = tensor_mean(tensor_softmax(scores, -1, NULL), 1, false); /* (B,HW,C) */
        maps = tensor_transpose(p, 1, 2);
    } else {
        PvlrOut out;
        pvlr_predict(m, dense, labels, false, NULL, &out);
        maps = out.weights;
    }
    float *v = tensor_to_host(maps); /* each map scaled to a maximum of 1, on the host */
    for (int64_t i = 0; i < B * C; i++) {
        float mx = 0;
        for (int64_t p = 0; p < HW; p++) mx = fmaxf(mx, v[i * HW + p]);
        for (int64_t p = 0; p < HW; p++) v[i * HW + p] = mx > 0 ? v[i * HW + p] / mx : 0;
    }
    ag_set_grad_enabled(g);
    Tensor *scaled = tensor_from_f32(maps->ndim, maps->shape, v);
    free(v);
    return scaled;
}
