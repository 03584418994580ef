/* test_dropout.c — dropout: drop statistics, determinism for a seed, backward consistency with
 * the saved mask, a finite-difference gradcheck with a fixed mask, the p = 1 edge case, and the
 * eval/p = 0 identity.
 *
 * There is no PyTorch fixture: PyTorch's mask comes from its own generator, so the two masks
 * cannot agree element by element. What is compared instead is the contract that fixes the
 * output once the mask is known (out = x*mask/(1-p), dx = dout*mask/(1-p)), checked exactly
 * against the saved mask, and the distribution of the mask itself. */
#include <math.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/ops/dropout.h"
#include "test/test.h"

TEST(dropout_statistics) {
    /* Fraction dropped within 5 sigma of p, sigma = sqrt(p(1-p)/n); survivors scaled exactly. */
    enum { N = 200003 };
    Tensor *x = TENSOR_F32(N);
    tensor_fill(x, 1.0f);
    const float ps[] = {0.1f, 0.5f, 0.9f};
    Rng rng;
    rng_seed(&rng, 7);
    for (int k = 0; k < 3; k++) {
        float p = ps[k], scale = 1.0f / (1.0f - p);
        Tensor *out = tensor_dropout(x, p, true, &rng);
        const float *o = tensor_f32(out);
        int64_t dropped = 0, bad = 0, dropped_first_half = 0;
        for (int64_t i = 0; i < N; i++) {
            if (o[i] == 0.0f) {
                dropped++;
                dropped_first_half += i < N / 2;
            } else if (o[i] != scale) {
                bad++;
            }
        }
        double frac = (double)dropped / N, sigma = sqrt(p * (1.0 - p) / N);
        EXPECT(fabs(frac - p) < 5 * sigma, "p = %g: dropped fraction %.5f, expected %.5f +- %.5f",
               p, frac, p, 5 * sigma);
        /* The halves are drawn independently: each near p too (sigma grows by sqrt 2). */
        double half = (double)dropped_first_half / (N / 2);
        EXPECT(fabs(half - p) < 5 * sigma * M_SQRT2, "p = %g: first half dropped %.5f", p, half);
        EXPECT(bad == 0, "p = %g: %lld survivors not equal to 1/(1-p) = %g", p, (long long)bad,
               scale);
    }
}

TEST(dropout_deterministic_for_a_seed) {
    Tensor *x = test_randn(1, 2, SHAPE(37, 53));
    Rng a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed(&c, 43);
    Tensor *oa = tensor_dropout(x, 0.3f, true, &a);
    Tensor *ob = tensor_dropout(x, 0.3f, true, &b);
    Tensor *oc = tensor_dropout(x, 0.3f, true, &c);
    EXPECT(memcmp(oa->data, ob->data, (size_t)x->numel * sizeof(float)) == 0,
           "the same seed gave different outputs");
    EXPECT(memcmp(oa->data, oc->data, (size_t)x->numel * sizeof(float)) != 0,
           "different seeds gave the same output");
    /* The generator advances: a second call with the same Rng draws a new mask. */
    Tensor *oa2 = tensor_dropout(x, 0.3f, true, &a);
    EXPECT(memcmp(oa->data, oa2->data, (size_t)x->numel * sizeof(float)) != 0,
           "two calls with one Rng gave the same mask");
    /* The mask depends on the seed only, not on the thread count (large enough to run in
     * parallel). */
    Tensor *big = test_randn(9, 1, SHAPE(100000));
    int threads = device_threads();
    device_set_threads(1);
    rng_seed(&a, 5);
    Tensor *o1 = tensor_dropout(big, 0.5f, true, &a);
    device_set_threads(2);
    rng_seed(&a, 5);
    Tensor *o2 = tensor_dropout(big, 0.5f, true, &a);
    device_set_threads(threads);
    EXPECT(memcmp(o1->data, o2->data, (size_t)big->numel * sizeof(float)) == 0,
           "1 and 2 threads gave different masks");
}

/* tensor_dropout_rows: a batch split into slices (micro-batches, ranks), each slice drawn with
 * the step's seed and its first row, gets the whole batch's mask, bit for bit. */
TEST(dropout_rows_do_not_depend_on_the_split) {
    enum { B = 7, R = 3, D = 11 };
    Tensor *x = test_randn(5, 3, SHAPE(B, R, D));
    DropoutDraws whole = {.row0 = 0};
    rng_seed(&whole.rng, 99);
    Tensor *all = tensor_dropout_rows(x, 0.4f, true, &whole);
    /* The same as tensor_dropout with the same seed (row 0 starts at element 0). */
    Rng plain;
    rng_seed(&plain, 99);
    Tensor *ref = tensor_dropout(x, 0.4f, true, &plain);
    EXPECT(memcmp(all->data, ref->data, (size_t)x->numel * sizeof(float)) == 0,
           "rows from 0 differ from tensor_dropout");
    const int64_t per = R * D, cuts[] = {0, 2, 3, 7};
    for (int s = 0; s < 3; s++) {
        const int64_t r0 = cuts[s], n = cuts[s + 1] - cuts[s];
        Tensor *slice = tensor_wrap(DT_F32, DEVICE_CPU, 3, SHAPE(n, R, D),
                                    tensor_f32(x) + r0 * per);
        DropoutDraws d = {.row0 = r0};
        rng_seed(&d.rng, 99);
        Tensor *out = tensor_dropout_rows(slice, 0.4f, true, &d);
        EXPECT(memcmp(out->data, tensor_f32(all) + r0 * per, (size_t)(n * per) * sizeof(float)) ==
                   0,
               "slice of rows %lld..%lld draws another mask than the whole batch",
               (long long)r0, (long long)(r0 + n));
    }
    /* Another row0 is another part of the sequence: the mask of rows 0..1 drawn as rows 2..3
     * differs. */
    DropoutDraws shifted = {.row0 = 2};
    rng_seed(&shifted.rng, 99);
    Tensor *first = tensor_wrap(DT_F32, DEVICE_CPU, 3, SHAPE(2, R, D), tensor_f32(x));
    Tensor *moved = tensor_dropout_rows(first, 0.4f, true, &shifted);
    EXPECT(memcmp(moved->data, all->data, (size_t)(2 * per) * sizeof(float)) != 0,
           "row0 does not move the draws");
    EXPECT(tensor_dropout_rows(x, 0.4f, false, NULL) == x, "eval mode needs no DropoutDraws");
}

TEST(dropout_backward_uses_the_mask) {
    Tensor *x = test_randn(2, 3, SHAPE(3, 5, 7));
    ag_set_requires_grad(x, NULL);
    Rng rng;
    rng_seed(&rng, 3);
    float p = 0.4f, scale = 1.0f / (1.0f - p);
    Tensor *out = tensor_dropout(x, p, true, &rng);
    if (!out->node) {
        test_fail(__FILE__, __LINE__, "no node recorded in training mode");
        return;
    }
    Tensor *mask = out->node->saved[0];
    Tensor *dout = test_randn(4, 3, SHAPE(3, 5, 7));
    ag_backward_with(out, dout);
    const float *m = tensor_f32(mask), *xv = tensor_f32(x), *o = tensor_f32(out);
    const float *g = tensor_f32(dout), *dx = tensor_f32(x->grad);
    int64_t kept = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        EXPECT(m[i] == 0.0f || m[i] == 1.0f, "mask[%lld] = %g is not 0/1", (long long)i, m[i]);
        kept += m[i] == 1.0f;
        /* Products are formed in the same float order as the kernel, so they match exactly. */
        float ro = xv[i] * m[i] * scale, rdx = g[i] * m[i] * scale;
        if (o[i] != ro || dx[i] != rdx) {
            test_fail(__FILE__, __LINE__, "element %lld: out %g (ref %g), dx %g (ref %g), mask %g",
                      (long long)i, o[i], ro, dx[i], rdx, m[i]);
            break;
        }
    }
    EXPECT(kept > 0 && kept < x->numel, "degenerate mask: %lld of %lld kept", (long long)kept,
           (long long)x->numel);
}

/* A fresh Rng with the same seed on every call, so every evaluation uses the same mask. */
static Tensor *gc_dropout(Tensor *const *in, void *ctx) {
    Rng rng;
    rng_seed(&rng, 99);
    return tensor_dropout(in[0], *(const float *)ctx, true, &rng);
}

TEST(dropout_gradcheck) {
    Tensor *x = test_randn(5, 2, SHAPE(6, 11));
    float p = 0.3f;
    EXPECT_GRADCHECK("dropout", gc_dropout, &p, &x, 1, NULL, NULL);
}

TEST(dropout_p1_all_zero) {
    Tensor *x = test_randn(6, 2, SHAPE(9, 13));
    ag_set_requires_grad(x, NULL);
    Rng rng;
    rng_seed(&rng, 1);
    Tensor *out = tensor_dropout(x, 1.0f, true, &rng);
    ag_backward_with(out, test_randn(7, 2, SHAPE(9, 13)));
    const float *o = tensor_f32(out), *dx = tensor_f32(x->grad);
    int64_t bad = 0;
    for (int64_t i = 0; i < x->numel; i++) bad += !(o[i] == 0.0f && dx[i] == 0.0f);
    EXPECT(bad == 0, "p = 1: %lld elements of out or dx not exactly 0 (NaN/inf included)",
           (long long)bad);
}

TEST(dropout_eval_and_p0_are_identity) {
    Tensor *x = test_randn(8, 2, SHAPE(4, 5));
    ag_set_requires_grad(x, NULL);
    Rng rng;
    rng_seed(&rng, 1);
    Rng before = rng;
    EXPECT(tensor_dropout(x, 0.5f, false, &rng) == x, "eval mode did not return the input");
    EXPECT(tensor_dropout(x, 0.0f, true, &rng) == x, "p = 0 did not return the input");
    EXPECT(tensor_dropout(x, 0.5f, false, NULL) == x, "eval mode needs no Rng");
    EXPECT(ag_tape_length() == 0, "identity dropout recorded %d nodes", ag_tape_length());
    EXPECT(memcmp(&rng, &before, sizeof rng) == 0, "identity dropout advanced the Rng");
}
