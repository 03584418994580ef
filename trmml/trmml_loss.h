/* trmml_loss.h — TRM-ML's training losses (SPEC §4.3, §4.4, §4.6, §4.7):
 *
 *   L = L^q_cls + α L^r_cls + β L_KD + γ L_NCE
 *
 * L_cls: ASL on the class logits of each branch against the current targets ŷ (known labels
 * plus pseudo-labels, trmml_mmcp_targets), γ+ 1, γ− 2, m 0.05, ε 1e-8, sum over classes / mean
 * over images. L_KD: class-wise softmax KL from the detached region branch (teacher) to the
 * query branch (Eq. 6), or the per-class Bernoulli KL (kd_form). L_NCE: MMCL's InfoNCE with the
 * projection head shared by text and regions, positives and negatives from the batch's
 * ground-truth positive regions and the pre-batch memory bank. Each term has a switch in the
 * configuration; all return scalar (shape []) tensors from the current arena. */
#pragma once
#include <stdbool.h>

#include "tensor/tensor.h"
#include "trmml/carl.h"
#include "trmml/mmcp.h"
#include "trmml/trmml_config.h"

typedef struct {
    Tensor *total;                      /* L */
    Tensor *cls_q, *cls_r, *kd, *nce;   /* unweighted terms; NULL when switched off */
} TrmmlLoss;

/* ASL of logits (B,C) against targets (B,C) in {+1,-1,0} with cfg's ASL settings. */
Tensor *trmml_loss_cls(const TrmmlConfig *cfg, Tensor *logits, Tensor *targets);
/* L_KD with student u^q and teacher u^r (B,C); the teacher never receives a gradient. */
Tensor *trmml_loss_kd(const MethodTrmmlConfig *cfg, Tensor *student, Tensor *teacher);
/* L_NCE (§4.6). Anchors normalize(h(G+_c)); keys normalize(h(·)) of F^r_ic for every y_ic = +1
 * (ground truth, y (B,C)) and of the bank entries (bank NULL or cfg nce_use_bank off: none),
 * each labelled with its class; row c contrasts its class's keys against all others. Classes
 * with no key are left out; 0 (no tape) when no class has one. */
Tensor *trmml_loss_nce(const TrmmlCarl *m, const MethodTrmmlConfig *cfg, Tensor *gpos, Tensor *fr,
                       const Tensor *y, const TrmmlMmcp *bank);
/* Every switched-on term and their weighted total, from one CARL forward. targets = ŷ for L_cls,
 * y = ground truth for L_NCE; bank = the pre-batch bank (or NULL). */
void trmml_loss_compute(const TrmmlCarl *m, const TrmmlConfig *cfg, const MethodTrmmlConfig *mc,
                        const TrmmlCarlOut *out, Tensor *gpos, Tensor *targets, const Tensor *y, const TrmmlMmcp *bank,
                        TrmmlLoss *loss);
