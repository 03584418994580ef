/* zeroshot.c — zero-shot multi-label scores of a dataset (trmml/zeroshot.h). */
#include "trmml/zeroshot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "clip/preprocess.h"
#include "tensor/image.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/shape.h"
#include "tensor/ops/softmax.h"

Status trmml_zeroshot_scores(const ClipModel *clip, const ClipTokenizer *tok, const Dataset *ds,
                             int64_t input_size, int64_t batch, ZeroShotFeature feature,
                             double *scores) {
    CHECK(batch >= 1 && input_size >= 32 && input_size % 32 == 0,
          "trmml_zeroshot_scores: batch %lld, input_size %lld", (long long)batch,
          (long long)input_size);
    const int64_t C = ds->c;
    Arena *arena = tensor_arena();
    const size_t mark = arena_mark(arena);
    bool grad = ag_set_grad_enabled(false);
    char **prompts = xcalloc((size_t)C, sizeof *prompts);
    for (int64_t c = 0; c < C; c++) {
        size_t n = strlen(ds->class_names[c]) + 16;
        prompts[c] = xmalloc(n);
        snprintf(prompts[c], n, "a photo of a %s.", ds->class_names[c]);
    }
    Tensor *ids = NULL;
    int64_t *eot = xcalloc((size_t)C, sizeof *eot);
    Status st = clip_tokenize_tensor(tok, (const char *const *)prompts, (int)C, false, &ids, eot);
    Tensor *text = NULL;
    if (st == STATUS_OK) text = tensor_l2_normalize(clip_encode_text(clip, ids), -1); /* (C, E) */
    float scale = 0;
    if (st == STATUS_OK) tensor_copy_to_host(&scale, clip->logit_scale);
    scale = expf(scale);
    Image *ims = xcalloc((size_t)batch, sizeof *ims);
    for (int64_t b0 = 0; b0 < ds->n && st == STATUS_OK; b0 += batch) {
        const int64_t nb = ds->n - b0 < batch ? ds->n - b0 : batch;
        for (int64_t b = 0; b < nb && st == STATUS_OK; b++)
            st = image_load(ds_image_path(ds, b0 + b), &ims[b], NULL);
        if (st == STATUS_OK) {
            const size_t m2 = arena_mark(arena);
            Tensor *emb = NULL, *dense = NULL;
            clip_encode_image(clip, clip_preprocess_batch(ims, (int)nb, (int)input_size), &emb,
                              feature == ZEROSHOT_TOKEN0 ? &dense : NULL);
            if (feature == ZEROSHOT_TOKEN0) /* (nb, HW+1, E) -> row 0 of each image */
                emb = tensor_reshape(tensor_slice(dense, 1, 0, 1), 2, SHAPE(nb, dense->shape[2]));
            Tensor *logits = tensor_matmul_t(tensor_l2_normalize(emb, -1), text, false, true);
            Tensor *prob = tensor_softmax(tensor_mul_scalar(logits, scale), -1, NULL); /* (nb, C) */
            float *p = xmalloc((size_t)(nb * C) * sizeof *p);
            tensor_copy_to_host(p, prob);
            for (int64_t i = 0; i < nb * C; i++) scores[b0 * C + i] = p[i];
            free(p);
            arena_release(arena, m2);
        }
        for (int64_t b = 0; b < nb; b++) image_free(&ims[b]);
    }
    free(ims);
    free(eot);
    for (int64_t c = 0; c < C; c++) free(prompts[c]);
    free(prompts);
    ag_set_grad_enabled(grad);
    arena_release(arena, mark);
    return st;
}
