/* dropout.c — inverted dropout: CPU kernels, wrapper and backward rule.
 *
 *     mask_i = [u_i >= p],   out_i = x_i * mask_i / (1 - p),   dx_i = dout_i * mask_i / (1 - p)
 * with u_i uniform on [0, 1). E[out_i] = x_i, so evaluation (no dropout) needs no rescaling.
 * u_i is a hash of (seed, i) rather than a sequential generator stream: the mask depends only on
 * the seed and the element's position, never on how the loop is split across threads, and a
 * device kernel can reproduce it. The wrapper draws the seed from the caller's Rng.
 * p = 1 drops everything; the scale is then taken as 0 (not 1/0) so no inf or NaN appears.
 * Saved for backward: the mask (a forward output) and the scale. */
#include "tensor/ops/dropout.h"

#include <math.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* Uniform [0, 1) with 53 bits for element i: the i-th output of a splitmix64 stream started at
 * `seed` (the finaliser is a bijection with full avalanche, so consecutive counters give
 * independent-looking values). */
static inline double dropout_uniform(uint64_t seed, int64_t i) {
    uint64_t z = seed + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

void dropout_forward_cpu(float *out, float *mask, const float *inp, int64_t n, float p,
                         float scale, uint64_t seed, int64_t first) {
    /* out (n), mask (n), inp (n) — assigns */
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        /* P(u < p) = p, so an element is dropped with probability p; u < 1 always, so p = 1
         * drops every element. */
        float keep = dropout_uniform(seed, first + i) >= (double)p ? 1.0f : 0.0f;
        mask[i] = keep;
        /* A product, not a select, so a NaN or inf input still shows up as NaN (as in
         * PyTorch) instead of being hidden by the drop. */
        out[i] = inp[i] * keep * scale;
    }
}

void dropout_backward_cpu(float *dinp, const float *dout, const float *mask, int64_t n,
                          float scale) {
    /* dinp (n), dout (n), mask (n) — accumulates */
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * mask[i] * scale;
}

/* ---- Wrapper and backward rule ------------------------------------------------------------ */

static void dropout_backward(Node *n) {
    Tensor *x = n->in[0], *mask = n->saved[0];
    KERNEL_RUN(x->device, dropout_backward, ag_grad(x)->data, n->out->grad->data, mask->data,
                                             x->numel, (float)n->farg[0]);
}

/* The draws of x's elements are numbers first .. first + numel - 1 of the seed's sequence. */
static Tensor *dropout_at(Tensor *x, float p, bool training, Rng *rng, int64_t first) {
    tensor_check_f32("dropout", x, "x");
    CHECK(p >= 0.0f && p <= 1.0f, "dropout: p = %g outside [0, 1] for x %s", p,
          tensor_shape_str(x));
    if (!training || p == 0.0f) return x;
    CHECK(rng != NULL, "dropout: training with p = %g needs an Rng (x %s)", p, tensor_shape_str(x));
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    uint64_t seed = rng_next(rng);
    Tensor *out = tensor_empty(DT_F32, x->ndim, x->shape);
    Tensor *mask = tensor_empty(DT_F32, x->ndim, x->shape);
    KERNEL_RUN(x->device, dropout_forward, out->data, mask->data, x->data, x->numel, p, scale,
                                            seed, first);
    Node *n = AG_RECORD("dropout", out, dropout_backward, x);
    if (n) {
        n->saved[0] = mask;
        n->farg[0] = scale;
    }
    return out;
}

Tensor *tensor_dropout(Tensor *x, float p, bool training, Rng *rng) {
    return dropout_at(x, p, training, rng, 0);
}

Tensor *tensor_dropout_rows(Tensor *x, float p, bool training, DropoutDraws *d) {
    CHECK(!training || p == 0.0f || d != NULL,
          "dropout: training with p = %g needs DropoutDraws (x %s)", p, tensor_shape_str(x));
    if (!training || p == 0.0f) return tensor_dropout(x, p, training, NULL);
    CHECK(x->ndim >= 1 && d->row0 >= 0, "dropout: rows from %lld of x %s",
          (long long)d->row0, tensor_shape_str(x));
    const int64_t row = x->shape[0] > 0 ? x->numel / x->shape[0] : 0;
    return dropout_at(x, p, training, &d->rng, d->row0 * row);
}
