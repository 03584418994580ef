/* zeroshot.h — zero-shot CLIP as a multi-label classifier: the reference row of the embedded
 * default's table (issue 6) and `trmml zeroshot --dataset`.
 *
 * For an image with attention-pooled embedding v and the prompts "a photo of a {class}." with
 * text embeddings t_c (both L2-normalised):
 *   p_c = softmax_c(exp(logit_scale) * v . t_c)
 * CLIP's own zero-shot classifier. A softmax over classes is a single-label rule: on a
 * multi-label image the probability mass is shared among the present classes, so the
 * threshold metrics (CF1, OF1 at 0.5) understate what the ranking (mAP) shows. */
#pragma once
#include <stdint.h>

#include "clip/model.h"
#include "clip/tokenizer.h"
#include "datasets/dataset.h"

/* Which image feature v is: CLIP's attention-pooled embedding, or token 0 of the dense features
 * (the mean token through v_proj and c_proj, no attention: the Table-3 baseline's z_0). */
typedef enum { ZEROSHOT_POOLED = 0, ZEROSHOT_TOKEN0 = 1 } ZeroShotFeature;

/* scores (N x C, row-major) of every image of ds at input_size (CLIP's test transform: bicubic
 * resize of the shorter side, centre crop), batch images at a time. Errors name the image or
 * the class name that does not fit in a prompt. */
Status trmml_zeroshot_scores(const ClipModel *clip, const ClipTokenizer *tok, const Dataset *ds,
                             int64_t input_size, int64_t batch, ZeroShotFeature feature,
                             double *scores);
