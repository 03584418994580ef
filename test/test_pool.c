/* test_pool.c — pool family: avg_pool2d and spatial_mean forward and backward against PyTorch
 * fixtures, and finite-difference gradchecks on shapes no fixture has. */
#include <string.h>

#include "tensor/ops/pool.h"
#include "test/test.h"

/* Run one fixture case: load x as a leaf, compare out and dx. */
static void check_case(Fixture *fx, const char *cs, Tensor *(*op)(Tensor *, int64_t), int64_t k) {
    Tensor *x = test_case_input(fx, cs, "x", true);
    if (x) test_check_case(fx, cs, op(x, k), &x, (const char *[]){"x"}, 1, CASE_TOL(TOL_REDUCE_ATOL, TOL_REDUCE_RTOL));
}

static Tensor *avg_pool(Tensor *x, int64_t k) { return tensor_avg_pool2d(x, k); }
static Tensor *spatial_mean(Tensor *x, int64_t k) { (void)k; return tensor_spatial_mean(x); }

TEST(pool_avg_pool2d_fixtures) {
    Fixture *fx = fixture_open("pool");
    if (!fx) return;
    static const struct { const char *name; int64_t k; } cases[] = {
        {"k2_odd", 2}, {"k3_rect", 3}, {"k1", 1}, {"k2_stem", 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cs[64];
        snprintf(cs, sizeof cs, "avg_pool2d_%s", cases[i].name);
        check_case(fx, cs, avg_pool, cases[i].k);
    }
}

TEST(pool_spatial_mean_fixtures) {
    Fixture *fx = fixture_open("pool");
    if (!fx) return;
    static const char *cases[] = {"odd", "one", "layer4"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cs[64];
        snprintf(cs, sizeof cs, "spatial_mean_%s", cases[i]);
        check_case(fx, cs, spatial_mean, 0);
    }
}

static Tensor *gc_avg_pool(Tensor *const *in, void *ctx) {
    return tensor_avg_pool2d(in[0], *(const int64_t *)ctx);
}
static Tensor *gc_spatial_mean(Tensor *const *in, void *ctx) {
    (void)ctx;
    return tensor_spatial_mean(in[0]);
}

TEST(pool_gradcheck) {
    int64_t k2 = 2, k4 = 4;
    Tensor *x = test_randn(41, 4, SHAPE(1, 2, 4, 6));
    EXPECT_GRADCHECK("avg_pool2d k2", gc_avg_pool, &k2, &x, 1, NULL, NULL);
    Tensor *y = test_randn(42, 4, SHAPE(2, 1, 8, 4));
    EXPECT_GRADCHECK("avg_pool2d k4", gc_avg_pool, &k4, &y, 1, NULL, NULL);
    Tensor *z = test_randn(43, 4, SHAPE(2, 3, 2, 5));
    EXPECT_GRADCHECK("spatial_mean", gc_spatial_mean, NULL, &z, 1, NULL, NULL);
}

TEST(pool_no_grad_records_nothing) {
    /* The frozen image tower runs pooling under no-grad: no node, no gradient buffer. */
    Tensor *x = test_randn(44, 4, SHAPE(1, 2, 4, 4));
    ag_tape_reset();
    Tensor *y = tensor_spatial_mean(tensor_avg_pool2d(x, 2));
    EXPECT(ag_tape_length() == 0 && !y->requires_grad, "a frozen computation recorded %d nodes",
           ag_tape_length());
}

/* The 2x2 pool's vectorised rows against the general loop's operations written out, bit for
 * bit: widths that leave vector tails (OW = 37, 3), a single output column, and signed zeros
 * (a window of -0 must pool to +0, as 0 + (-0) does in the general loop). */
TEST(pool_avg_pool2d_k2_rows_match_general_loop) {
    static const int64_t sizes[][4] = {{2, 3, 6, 74}, {1, 5, 4, 6}, {3, 2, 2, 2}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t N = sizes[s][0], C = sizes[s][1], H = sizes[s][2], W = sizes[s][3];
        Tensor *x = test_randn(70 + s, 4, SHAPE(N, C, H, W));
        for (int64_t i = 0; i < 4 && i < W; i++) tensor_f32(x)[i] = -0.0f;
        for (int64_t i = W; i < W + 2; i++) tensor_f32(x)[i] = -0.0f; /* first window all -0 */
        Tensor *got = tensor_avg_pool2d(x, 2);
        const float *xv = tensor_f32(x);
        const int64_t OH = H / 2, OW = W / 2;
        Tensor *want = TENSOR_F32(N, C, OH, OW);
        for (int64_t p = 0; p < N * C; p++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    float acc = 0.0f;
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) acc += xv[p * H * W + (2 * i + a) * W + 2 * j + b];
                    tensor_f32(want)[(p * OH + i) * OW + j] = acc * 0.25f;
                }
        EXPECT(memcmp(got->data, want->data, (size_t)want->numel * sizeof(float)) == 0,
               "avg_pool2d k=2 size %zu differs from the general loop's bits", s);
    }
}
