/* preprocess.c — CLIP's image transform: resize shorter side (Pillow bicubic), centre crop,
 * scale to [0,1], normalise (SPEC §1.9).
 *
 * PyTorch computes ToTensor as float32 v/255 and Normalize as float32 (x − mean)/std, each
 * operation rounded to float32. The same two roundings happen here (C11 evaluates float
 * expressions in float on x86-64 and does not contract them), precomputed as a 256-entry table
 * per channel. */
#include "clip/preprocess.h"

#include <stdlib.h>

#include "tensor/resample.h"

const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

void clip_preprocess_into(const Image *im, int n, float *out) {
    CHECK(im && im->px && out && n >= 1, "clip_preprocess_into: empty image or size %d", n);
    Image resized = image_resize_shorter(im, n, RESAMPLE_BICUBIC);
    Image crop = image_center_crop(&resized, n, n);
    image_free(&resized);
    image_normalize(&crop, CLIP_MEAN, CLIP_STD, out);
    image_free(&crop);
}

/* Fill a host buffer, then place it in `t` (directly when the arena is on the CPU). */
static float *host_target(Tensor *t) {
    return t->device == DEVICE_CPU ? tensor_f32(t) : xmalloc(sizeof(float) * (size_t)t->numel);
}

static void host_finish(Tensor *t, float *host) {
    if (t->device == DEVICE_CPU) return;
    tensor_copy_from_host(t, host);
    free(host);
}

Tensor *clip_preprocess(const Image *im, int n) {
    Tensor *t = TENSOR_F32(3, n, n);
    float *host = host_target(t);
    clip_preprocess_into(im, n, host);
    host_finish(t, host);
    return t;
}

Tensor *clip_preprocess_batch(const Image *ims, int count, int n) {
    CHECK(ims && count >= 1 && n >= 1, "clip_preprocess_batch: %d images at size %d", count, n);
    Tensor *t = TENSOR_F32(count, 3, n, n);
    float *host = host_target(t);
    size_t per = (size_t)3 * (size_t)n * (size_t)n;
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < count; b++) clip_preprocess_into(&ims[b], n, host + (size_t)b * per);
    host_finish(t, host);
    return t;
}
