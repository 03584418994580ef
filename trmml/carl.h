/* carl.h — TRM-ML's learnable head: category-aware region learning (CARL, SPEC §4.2), the
 * text-query / text-region matching of Eq. 1 (§4.3), the contrastive projection head of §4.6,
 * and the inference path of §4.8.
 *
 * Shapes (docs/shapes.md letters; SPEC §4.10): B images, C classes, HW spatial positions,
 * d joint width. Inputs: dense features f (B,HW,d), frozen (no gradient); text features
 * G+ and G- (C,d) from the prompt learner (trmml/prompt.h), usually requiring a gradient.
 *
 * Parameters (declared into a caller's ParamStore under "<prefix>.*", all trainable except the
 * temperature when temp_learnable is off; SPEC §10.2 counts them):
 *   queries (C,d)                             category queries Q (DECISION 9)
 *   attn.{q,k,v,o}.{weight (d,d), bias (d)}   single-head cross-attention
 *   ln1.{weight,bias}, ln2.{weight,bias} (d)  post-norm LayerNorms
 *   ffn1 (d->ffn_hidden), ffn2 (->d)          decoder FFN with ReLU
 *   mlp1 (d->mlp_hidden), mlp2 (->d)          Eq. 3 MLP with ReLU (mlp_hidden 0 = d)
 *   head1 (d->head_hidden), head2 (->d)       MMCL projection head h with ReLU (DECISION 13)
 *   logit_scale (1)                           t, matching scale s = min(exp(t), temp_max)
 * Every function below only calls tensor ops, so the tape differentiates it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "nn/layers.h"
#include "tensor/ops/dropout.h"
#include "tensor/tensor.h"
#include "trmml/trmml_config.h"

typedef struct {
    int64_t C, d, ffn_hidden, mlp_hidden, head_hidden;
    Tensor *queries;                       /* Q (C,d) */
    NnLinear attn_q, attn_k, attn_v, attn_o;
    Tensor *ln1_weight, *ln1_bias, *ln2_weight, *ln2_bias;
    NnLinear ffn1, ffn2, mlp1, mlp2, head1, head2;
    Tensor *logit_scale;                   /* t (1) */
    /* copied from the configuration at declare time */
    float ln_eps, dropout, region_eps, temp_max, temp_init;
    bool fold, region_mean;
    int query_init;                        /* TrmmlQueryInit */
} TrmmlCarl;

/* Everything the training step needs from one forward pass (arena tensors). */
typedef struct {
    Tensor *phi;      /* Φ (B,C,HW): attention logits Qp Kᵀ/√d, the region energies */
    Tensor *attn;     /* A (B,C,HW): softmax of Φ over HW */
    Tensor *regions;  /* R (B,C,HW) = σ(Φ), soft regions (Eq. 2) */
    Tensor *fq;       /* F^q (B,C,d): query-level features (Eq. 3) */
    Tensor *fr;       /* F^r (B,C,d): region-level features (Eq. 4) */
    Tensor *scale;    /* s (1) = min(exp(t), temp_max) */
    Tensor *uq, *ur;  /* u^q, u^r (B,C): class logits of both branches (Eq. 1) */
} TrmmlCarlOut;

/* Declare the parameters of a head for C classes and width d into ps (not yet finalized). The
 * sizes, dropout, LayerNorm eps, folding, Eq. 4 pooling and temperature settings come from cfg. */
void trmml_carl_declare(TrmmlCarl *m, ParamStore *ps, const char *prefix, int64_t C, int64_t d,
                        const TrmmlConfig *cfg, const MethodTrmmlConfig *mc);
/* The learnable-parameter count of that head, by formula (SPEC §10.2 without the prompts). */
int64_t trmml_carl_param_count(int64_t C, int64_t d, const TrmmlConfig *cfg,
                               const MethodTrmmlConfig *mc);
/* Initialise after param_store_finalize: queries = rows of text_features (C,d) L2-normalised
 * (DECISION 9; host floats, borrowed) or, when text_features is NULL or cfg said random,
 * N(0, 1/d); attention weights Xavier-uniform and biases 0; LayerNorms 1/0; FFN, MLP and head
 * PyTorch's Linear default; t = cfg temp_init, or clip_logit_scale when temp_init was "clip". */
void trmml_carl_init(TrmmlCarl *m, Rng *rng, const float *text_features, float clip_logit_scale);
/* After each optimizer step: t <- min(t, log(temp_max)), so that the cap of s never leaves t
 * stranded above it with a zero gradient (CLIP clamps its logit scale the same way). */
void trmml_carl_clamp_temperature(TrmmlCarl *m);

/* The full training forward of §4.2-4.3. f (B,HW,d) frozen; gpos, gneg (C,d). Dropout is applied
 * when training (drop required then: its rng advanced once per dropout site, f holding rows
 * drop->row0 .. of the batch, so the masks do not depend on how the batch is split). */
void trmml_carl_forward(const TrmmlCarl *m, Tensor *f, Tensor *gpos, Tensor *gneg, bool training,
                        DropoutDraws *drop, TrmmlCarlOut *out);
/* Φ (B,C,HW) = (Q Wqᵀ + bq) (f Wkᵀ + bk)ᵀ / √d, folded or plain as m->fold says. */
Tensor *trmml_carl_energies(const TrmmlCarl *m, Tensor *f);
/* F^r (B,C,d) = Σ_p R_p f_p / (Σ_p R_p + region_eps) (or the plain sum), R (B,C,HW). */
Tensor *trmml_carl_region_features(const TrmmlCarl *m, Tensor *regions, Tensor *f);
/* s (1) = min(exp(t), temp_max). */
Tensor *trmml_carl_scale(const TrmmlCarl *m);
/* Eq. 1: u (B,C) = s (cos(F_c, G+_c) - cos(F_c, G-_c)) for features F (B,C,d). */
Tensor *trmml_carl_match(Tensor *feat, Tensor *gpos, Tensor *gneg, Tensor *scale);
/* The projection head of §4.6: normalize(h(x)) for x (..., d). */
Tensor *trmml_carl_project(const TrmmlCarl *m, Tensor *x);
/* §4.8: probabilities p (B,C) = σ(u^r) from the region branch only, with no tape recorded.
 * The decoder's value/output projections, FFN, MLP and head are not evaluated. */
Tensor *trmml_carl_infer(const TrmmlCarl *m, Tensor *f, Tensor *gpos, Tensor *gneg);
