/* pvlr.h — PVLR, the third method (SPEC §5, DECISION 24; docs/pvlr.md): knowledge-aware
 * prompting (KAP), context-aware prompting (CAP), the interaction and fusion module (IFM),
 * dual-modal attention (DMA) and similarity-based prediction, as a head over frozen CLIP
 * features.
 *
 * Shapes (docs/shapes.md letters): B images, C classes, HW spatial positions, d joint width,
 * NH heads (d % NH == 0). Inputs: dense features (B, HW+1, d) — token 0 is the global feature
 * v_g, tokens 1..HW the visual tokens Vtok (docs/pvlr.md, "Global feature") — and, with CAP on,
 * the CAP text features T^C (C, d) of the positive-only, class-shared prompt learner
 * (trmml/prompt.h, positive_only).
 *
 * Parameters (declared under "<prefix>.*"; a component switched off declares nothing):
 *   kap.weight (d,d), kap_norm.{weight,bias}           KAP: K = LN(T^K + (A^K T^K) W_K), W_K = 0 at init
 *   cap.attn.{q,k,v,o}, cap.norm1/2, cap.ffn1/2         CAP: one post-norm encoder layer among labels
 *   ifm.k2c.*, ifm.c2k.*, ifm.norm_k/_c, ifm.gate (2d->d), ifm.ffn1/2, ifm.norm
 *   t2v.attn.*, t2v.norm1/2, t2v.ffn1/2                 DMA text -> visual
 *   v2t.attn.*, v2t.norm1/2, v2t.ffn1/2                 DMA visual -> text
 *   logit_scale (1), class_bias (C)                     s = min(exp(t), temp_max), per-class bias
 * Every attention is multi-head (PyTorch nn.MultiheadAttention semantics: separate q/k/v/o
 * projections with biases, scores scaled by 1/sqrt(d/NH), no dropout on the weights).
 * The KAP constants T^K and A^K T^K are computed once from CLIP (pvlr_set_knowledge) and are not
 * learnable. Every forward function only calls tensor ops, so the tape differentiates it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "nn/layers.h"
#include "tensor/ops/dropout.h"
#include "tensor/tensor.h"
#include "trmml/trmml_config.h"

/* PVLR's ASL focusing (SPEC §5.7): auto = full when every training label is known (ratio 1, not
 * single-positive), else partial; custom = the asl_gamma_pos / asl_gamma_neg keys. */
typedef enum { PVLR_ASL_AUTO = 0, PVLR_ASL_FULL, PVLR_ASL_PARTIAL, PVLR_ASL_CUSTOM } PvlrAslSetting;

/* PVLR's own keys (SPEC §5, DECISION 24; docs/pvlr.md; the key table is in
 * trmml/method_pvlr.c): component switches for the ablation, sizes, constants, the second
 * learning rate of §5.7. The shared keys (ffn_hidden, ln_eps, dropout, temp_max, asl_*,
 * query_template, prompt_*, the recipe) apply to PVLR too. */
typedef struct {
    bool pvlr_use_kap, pvlr_use_cap, pvlr_use_ifm, pvlr_use_t2v, pvlr_use_v2t, pvlr_use_global;
    int64_t pvlr_heads;
    double pvlr_kap_tau, pvlr_spatial_temp, pvlr_temp_init, pvlr_layer_lr;
    int pvlr_asl; /* PvlrAslSetting */
} MethodPvlrConfig;

typedef struct {
    NnLinear q, k, v, o; /* each (d,d) with bias */
} PvlrAttention;

typedef struct {
    Tensor *weight, *bias; /* (d) */
} PvlrNorm;

typedef struct {
    NnLinear fc1, fc2; /* d -> ffn_hidden -> d, ReLU */
} PvlrFfn;

typedef struct {
    int64_t C, d, heads, ffn_hidden;
    float ln_eps, dropout, kap_tau, spatial_temp, temp_max;
    float asl_gamma_pos, asl_gamma_neg, asl_clip, asl_eps; /* resolved ASL setting (§5.7) */
    bool use_kap, use_cap, use_ifm, use_t2v, use_v2t, use_global;
    /* KAP */
    Tensor *kap_weight; /* W_K (d,d), applied as x W_K */
    PvlrNorm kap_norm;
    ParamStore *consts;        /* owned: the frozen KAP constants; NULL until set */
    Tensor *kap_text;          /* T^K (C,d), L2-normalised */
    Tensor *kap_relation_text; /* A^K T^K (C,d) */
    /* CAP */
    PvlrAttention cap_attn;
    PvlrNorm cap_norm1, cap_norm2;
    PvlrFfn cap_ffn;
    /* IFM */
    PvlrAttention ifm_k2c, ifm_c2k;
    PvlrNorm ifm_norm_k, ifm_norm_c, ifm_norm;
    NnLinear gate; /* (d, 2d) in PyTorch layout: g = σ([K'; C'] W_gᵀ + b_g) */
    PvlrFfn ifm_ffn;
    /* DMA */
    PvlrAttention t2v_attn, v2t_attn;
    PvlrNorm t2v_norm1, t2v_norm2, v2t_norm1, v2t_norm2;
    PvlrFfn t2v_ffn, v2t_ffn;
    /* prediction */
    Tensor *logit_scale; /* t (1) */
    Tensor *class_bias;  /* b (C) */
    float temp_init;
} PvlrHead;

/* What one forward pass produces (arena tensors). */
typedef struct {
    Tensor *labels;    /* L0 (C,d): the fused label representations */
    Tensor *visual;    /* V1 (B,HW,d): semantic-related visual tokens */
    Tensor *label_ctx; /* L1 (B,C,d): context-aware label representations */
    Tensor *sim;       /* S (B,C,HW) = cos(L1_c, V1_p) */
    Tensor *weights;   /* w (B,C,HW) = softmax_p(spatial_temp S) */
    Tensor *logits;    /* z (B,C) */
} PvlrOut;

/* Declare the head for C classes and width d into ps (not finalized). Sizes, switches and
 * constants come from cfg and pc; full_labels selects the full-label ASL setting when pc says auto. */
void pvlr_declare(PvlrHead *m, ParamStore *ps, const char *prefix, int64_t C, int64_t d,
                  const TrmmlConfig *cfg, const MethodPvlrConfig *pc, bool full_labels);
/* The head's learnable-parameter count by formula (without the CAP contexts). */
int64_t pvlr_param_count(int64_t C, int64_t d, const TrmmlConfig *cfg,
                         const MethodPvlrConfig *pc);
/* After finalize: W_K 0; q/k/v Xavier-uniform over the stacked (3d, d) in-projection and o
 * U(±1/√d), their biases 0 (nn.MultiheadAttention); FFNs and the gate PyTorch's Linear default;
 * LayerNorms 1/0; t = pvlr_temp_init (ln 10); b = 0. */
void pvlr_init(PvlrHead *m, Rng *rng);
/* KAP constants from the frozen CLIP text features of the fixed prompts (C,d host floats,
 * borrowed): T^K = normalize(rows), A^K = row-softmax(T^K T^Kᵀ / kap_tau), kept A^K T^K. May be
 * called again (replaces them). Needed before any forward with KAP on. */
void pvlr_set_knowledge(PvlrHead *m, const float *text_features);
void pvlr_free(PvlrHead *m);
/* After each optimizer step: t <- min(t, log(temp_max)). */
void pvlr_clamp_temperature(PvlrHead *m);

/* KAP, CAP and IFM: the label representations L0 (C,d). text_ctx = T^C (C,d), required when
 * use_cap (ignored otherwise). Dropout when training (drop->rng advanced once per site; the
 * label side has no image rows, so drop->row0 should be 0 for pvlr_labels and dense's first row
 * in the batch for pvlr_predict: then the masks do not depend on how the batch is split). */
Tensor *pvlr_labels(const PvlrHead *m, Tensor *text_ctx, bool training, DropoutDraws *drop);
/* DMA and prediction on dense (B, HW+1, d) given L0 (C,d); fills every field of out. */
void pvlr_predict(const PvlrHead *m, Tensor *dense, Tensor *labels, bool training,
                  DropoutDraws *drop, PvlrOut *out);
/* pvlr_labels then pvlr_predict (one drop, labels first; drop->row0 must be 0). */
void pvlr_forward(const PvlrHead *m, Tensor *dense, Tensor *text_ctx, bool training,
                  DropoutDraws *drop, PvlrOut *out);
/* ASL (§2.1) of logits (B,C) against targets (B,C) in {+1,-1,0} with the resolved setting,
 * summed over classes and averaged over the B images (DECISION 3). */
Tensor *pvlr_loss(const PvlrHead *m, Tensor *logits, Tensor *targets);
/* For `trmml visualize`: per-class spatial maps (B,C,HW) of dense, no tape, rescaled to a
 * maximum of 1 per class: the text->visual attention (mean over heads of the weight each visual
 * token gives class c), or the prediction weights w when DMA text->visual is off. */
Tensor *pvlr_attention_maps(const PvlrHead *m, Tensor *dense, Tensor *text_ctx);
