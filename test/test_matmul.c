/* test_matmul.c — matmul family: tensor_matmul(_t) and tensor_linear against PyTorch fixtures
 * (every transpose combination, batched, shared right operand), finite-difference gradchecks,
 * the frozen-weight contract, and CPU/CUDA parity. The gemm kernel itself: test/test_gemm.c. */
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/ops/gemm_f32.h"
#include "tensor/ops/matmul.h"
#include "test/test.h"

static const struct { const char *tag; bool ta, tb; } trans[] = {
    {"nn", false, false}, {"tn", true, false}, {"nt", false, true}, {"tt", true, true}};

/* The op under test applied to a case's inputs (a closure over the transpose flags). */
typedef struct { bool linear, ta, tb; } OpCtx;
static Tensor *apply(const OpCtx *op, Tensor **in) {
    return op->linear ? tensor_linear(in[0], in[1], in[2])
                      : tensor_matmul_t(in[0], in[1], op->ta, op->tb);
}

/* Compare out and the gradient of every input that requires one with the fixture case. Then run
 * forward and backward a second time: the gradients must accumulate to twice the reference (a
 * rule that assigned instead of adding would leave them at 1x). The tolerance is the matmul one
 * for the longest sum (`klen`) any of the products takes. */
static void check_case(Fixture *fx, const char *cs, const OpCtx *op, Tensor **in,
                       const char **names, int nin, int64_t klen) {
    char key[160], what[200];
    double atol = tol_matmul_atol(klen), rtol = TOL_MATMUL_RTOL;
    Tensor *out = apply(op, in);
    snprintf(key, sizeof key, "%s/out", cs);
    snprintf(what, sizeof what, "%s out", cs);
    EXPECT_TENSOR(what, out, fixture_get(fx, key), atol, rtol);
    snprintf(key, sizeof key, "%s/dout", cs);
    Tensor *dout = fixture_tensor(fx, key);
    if (!dout) return;
    ag_backward_with(out, dout);
    ag_tape_reset();
    for (int i = 0; i < nin; i++) {
        if (!in[i]->requires_grad) continue;
        snprintf(key, sizeof key, "%s/d%s", cs, names[i]);
        snprintf(what, sizeof what, "%s d%s", cs, names[i]);
        EXPECT_TENSOR(what, in[i]->grad, fixture_get(fx, key), atol, rtol);
    }
    ag_backward_with(apply(op, in), dout);
    ag_tape_reset();
    for (int i = 0; i < nin; i++) {
        if (!in[i]->requires_grad) continue;
        snprintf(key, sizeof key, "%s/d%s", cs, names[i]);
        snprintf(what, sizeof what, "%s d%s accumulated twice", cs, names[i]);
        const FixtureTensor *ref = fixture_get(fx, key);
        if (!ref) return;
        float *twice = arena_alloc(tensor_arena(), (size_t)ref->numel * sizeof(float));
        for (int64_t j = 0; j < ref->numel; j++) twice[j] = 2 * ref->f32[j];
        EXPECT_CLOSE_N(what, tensor_f32(in[i]->grad), twice, ref->numel, 2 * atol, rtol);
    }
}

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

TEST(matmul_fixtures) {
    Fixture *fx = fixture_open("matmul");
    if (!fx) return;
    const char *kinds[] = {"mm", "bmm", "shared"};
    for (size_t kd = 0; kd < 3; kd++)
        for (size_t t = 0; t < 4; t++) {
            char cs[64];
            snprintf(cs, sizeof cs, "%s_%s", kinds[kd], trans[t].tag);
            Tensor *in[2] = {test_case_input(fx, cs, "a", true), test_case_input(fx, cs, "b", true)};
            if (!in[0] || !in[1]) return;
            OpCtx op = {false, trans[t].ta, trans[t].tb};
            /* (M, K, N) = (3, 5, 7); the shared case sums dB over 6 batch matrices: 18 terms. */
            check_case(fx, cs, &op, in, (const char *[]){"a", "b"}, 2, 18);
        }
    Tensor *in[2] = {test_case_input(fx, "mm_k1", "a", true), test_case_input(fx, "mm_k1", "b", true)};
    if (in[0] && in[1])
        check_case(fx, "mm_k1", &(OpCtx){0}, in, (const char *[]){"a", "b"}, 2, 6);
    in[0] = test_case_input(fx, "clip_shared", "a", true);
    in[1] = test_case_input(fx, "clip_shared", "b", true);
    if (in[0] && in[1])
        check_case(fx, "clip_shared", &(OpCtx){0}, in, (const char *[]){"a", "b"},
                   2, max3(64, 96, 26));
}

TEST(matmul_linear_fixtures) {
    Fixture *fx = fixture_open("matmul");
    if (!fx) return;
    const char *cases[] = {"linear_vec", "linear_2d", "linear_3d", "linear_vec_nobias",
                           "linear_2d_nobias", "linear_3d_nobias", "linear_clip"};
    /* Both forms of the CPU forward (matmul.def, linear_forward): at the avx512 level the own
     * fp32 GEMM with the bias in its store, then (and at every other level) the bias fill and
     * gemm. */
    const bool own = gemm_f32_available();
    for (int pass = 0; pass < (own ? 2 : 1); pass++) {
        const bool prev = pass == 1 ? gemm_f32_set_enabled(false) : own;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            bool has_bias = !strstr(cases[c], "nobias");
            Tensor *in[3] = {test_case_input(fx, cases[c], "x", true),
                             test_case_input(fx, cases[c], "w", true),
                             has_bias ? test_case_input(fx, cases[c], "b", true) : NULL};
            if (!in[0] || !in[1] || (has_bias && !in[2])) break;
            int64_t rows = in[0]->numel / in[0]->shape[in[0]->ndim - 1];
            check_case(fx, cases[c], &(OpCtx){.linear = true}, in,
                       (const char *[]){"x", "w", "b"}, has_bias ? 3 : 2,
                       max3(in[1]->shape[0], in[1]->shape[1], rows));
        }
        if (pass == 1) gemm_f32_set_enabled(prev);
    }
}

TEST(matmul_frozen_operands_get_no_gradient) {
    Fixture *fx = fixture_open("matmul");
    if (!fx) return;
    /* linear with frozen weight and bias (a frozen CLIP layer under prompt tuning): dx matches
     * PyTorch, neither parameter gets a gradient buffer. */
    Tensor *x = test_case_input(fx, "linear_3d", "x", true);
    Tensor *w = fixture_tensor(fx, "linear_3d/w"), *b = fixture_tensor(fx, "linear_3d/b");
    if (!x || !w || !b) return;
    Tensor *y = tensor_linear(x, w, b);
    ag_backward_with(y, fixture_tensor(fx, "linear_3d/dout"));
    EXPECT(w->grad == NULL && b->grad == NULL, "frozen weight or bias received a gradient buffer");
    EXPECT_TENSOR("linear_3d frozen dx", x->grad, fixture_get(fx, "linear_3d/dx"),
                  tol_matmul_atol(15), TOL_MATMUL_RTOL);
    ag_tape_reset();

    /* Frozen weight, trainable bias: only db and dx. */
    x->grad = NULL;
    ag_set_requires_grad(b, NULL);
    y = tensor_linear(x, w, b);
    ag_backward_with(y, fixture_tensor(fx, "linear_3d/dout"));
    EXPECT(w->grad == NULL, "frozen weight received a gradient buffer");
    EXPECT_TENSOR("linear_3d frozen-w db", b->grad, fixture_get(fx, "linear_3d/db"),
                  tol_matmul_atol(15), TOL_MATMUL_RTOL);
    EXPECT_TENSOR("linear_3d frozen-w dx", x->grad, fixture_get(fx, "linear_3d/dx"),
                  tol_matmul_atol(15), TOL_MATMUL_RTOL);
    ag_tape_reset();

    /* matmul with a frozen shared right operand. */
    Tensor *a = test_case_input(fx, "shared_tn", "a", true), *bm = fixture_tensor(fx, "shared_tn/b");
    if (!a || !bm) return;
    Tensor *c = tensor_matmul_t(a, bm, true, false);
    ag_backward_with(c, fixture_tensor(fx, "shared_tn/dout"));
    EXPECT(bm->grad == NULL, "frozen matmul operand received a gradient buffer");
    EXPECT_TENSOR("shared_tn frozen da", a->grad, fixture_get(fx, "shared_tn/da"),
                  tol_matmul_atol(18), TOL_MATMUL_RTOL);
    ag_tape_reset();

    /* Nothing requires a gradient: no tape at all. */
    Tensor *z = tensor_linear(fixture_tensor(fx, "linear_3d/x"), w, NULL);
    EXPECT(ag_tape_length() == 0 && !z->requires_grad, "a frozen linear recorded %d nodes",
           ag_tape_length());
}

TEST(matmul_grad_accumulates_over_uses) {
    /* G = x x^T uses x as both operands: dx = (dG + dG^T) x, so both backward gemms must add into
     * the one buffer (beta = 1). Checked against the closed form in double. */
    enum { R = 4, C = 6 };
    Tensor *x = test_randn(41, 2, SHAPE(R, C));
    ag_set_requires_grad(x, NULL);
    Tensor *g = tensor_matmul_t(x, x, false, true);
    Tensor *dg = test_randn(42, 2, SHAPE(R, R));
    ag_backward_with(g, dg);
    const float *xv = tensor_f32(x), *d = tensor_f32(dg);
    float ref[R * C];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int l = 0; l < R; l++) s += (double)(d[i * R + l] + d[l * R + i]) * xv[l * C + j];
            ref[i * C + j] = (float)s;
        }
    EXPECT_CLOSE_N("x x^T dx", tensor_f32(x->grad), ref, R * C, tol_matmul_atol(2 * R),
                   TOL_MATMUL_RTOL);
}

TEST(matmul_empty_inner_dim) {
    /* K = 0: the empty sum is 0 (the output buffer starts uninitialised, so 0 must be written). */
    Tensor *a = TENSOR_F32(2, 3, 0), *b = TENSOR_F32(0, 4);
    Tensor *c = tensor_matmul(a, b);
    EXPECT(c->ndim == 3 && c->shape[0] == 2 && c->shape[1] == 3 && c->shape[2] == 4,
           "K = 0 output shape %s", tensor_shape_str(c));
    float zeros[24] = {0};
    EXPECT_CLOSE_N("K = 0 out", tensor_f32(c), zeros, 24, 0, 0);
}

typedef struct { bool ta, tb; } TransCtx;
static Tensor *gc_matmul(Tensor *const *in, void *ctx) {
    const TransCtx *t = ctx;
    return tensor_matmul_t(in[0], in[1], t->ta, t->tb);
}
static Tensor *gc_linear(Tensor *const *in, void *ctx) {
    return tensor_linear(in[0], in[1], in[2]);
}
static Tensor *gc_linear_nobias(Tensor *const *in, void *ctx) {
    return tensor_linear(in[0], in[1], NULL);
}

TEST(matmul_gradcheck) {
    /* (M, K, N) = (4, 2, 3) with batch (3), shapes no fixture has. */
    enum { M = 4, K = 2, N = 3, BATCH = 3 };
    for (size_t t = 0; t < 4; t++) {
        TransCtx ctx = {trans[t].ta, trans[t].tb};
        int64_t ar = ctx.ta ? K : M, ac = ctx.ta ? M : K, br = ctx.tb ? N : K, bc = ctx.tb ? K : N;
        char name[64];
        snprintf(name, sizeof name, "mm_%s", trans[t].tag);
        Tensor *a = test_randn(100 + t, 2, SHAPE(ar, ac));
        Tensor *b = test_randn(110 + t, 2, SHAPE(br, bc));
        EXPECT_GRADCHECK(name, gc_matmul, &ctx, ((Tensor *[]){a, b}), 2, NULL, NULL);
        snprintf(name, sizeof name, "bmm_%s", trans[t].tag);
        a = test_randn(120 + t, 3, SHAPE(BATCH, ar, ac));
        b = test_randn(130 + t, 3, SHAPE(BATCH, br, bc));
        EXPECT_GRADCHECK(name, gc_matmul, &ctx, ((Tensor *[]){a, b}), 2, NULL, NULL);
        snprintf(name, sizeof name, "shared_%s", trans[t].tag);
        a = test_randn(140 + t, 3, SHAPE(BATCH, ar, ac));
        b = test_randn(150 + t, 2, SHAPE(br, bc));
        EXPECT_GRADCHECK(name, gc_matmul, &ctx, ((Tensor *[]){a, b}), 2, NULL, NULL);
    }
}

TEST(matmul_linear_gradcheck) {
    Tensor *x = test_randn(200, 3, SHAPE(2, 3, 6));
    Tensor *w = test_randn(201, 2, SHAPE(5, 6)), *b = test_randn(202, 1, SHAPE(5));
    EXPECT_GRADCHECK("linear", gc_linear, NULL, ((Tensor *[]){x, w, b}), 3, NULL, NULL);
    EXPECT_GRADCHECK("linear_nobias", gc_linear_nobias, NULL, ((Tensor *[]){x, w}), 2, NULL, NULL);
    /* Only x checked, weight and bias frozen (the prompt-tuning path). */
    EXPECT_GRADCHECK("linear_frozen", gc_linear, NULL, ((Tensor *[]){x, w, b}), 3,
                     ((const bool[]){true, false, false}), NULL);
}

/* Forward and backward of one op on CPU and CUDA from the same random inputs. */
TEST(matmul_cuda_parity) {
#ifndef TRMML_CUDA
    test_skip("CUDA backend not compiled in");
#else
    const DeviceTable *cu = device_table(DEVICE_CUDA);
    if (!cu->available) { test_skip("no GPU answers"); return; }
    if (!cu->gemm || !cu->linear_forward || !cu->linear_bias_backward || !cu->accumulate ||
        !cu->fill) {
        test_skip("CUDA matmul kernels not implemented yet");
        return;
    }
    enum { B = 2, T = 13, IN = 64, OUT = 96 };
    Tensor *x = test_randn(300, 3, SHAPE(B, T, IN)), *w = test_randn(301, 2, SHAPE(OUT, IN));
    Tensor *b = test_randn(302, 1, SHAPE(OUT)), *dy = test_randn(303, 3, SHAPE(B, T, OUT));
    Tensor *in[3] = {x, w, b};
    for (int i = 0; i < 3; i++) ag_set_requires_grad(in[i], NULL);
    Tensor *y = tensor_linear(x, w, b);
    ag_backward_with(y, dy);
    ag_tape_reset();

    Arena *gpu = arena_create(DEVICE_CUDA, "parity", 0);
    Arena *prev = tensor_set_arena(gpu);
    Tensor *gin[3], *gdy = tensor_empty_like(dy);
    tensor_copy_from_host(gdy, tensor_f32(dy));
    for (int i = 0; i < 3; i++) {
        gin[i] = tensor_empty_like(in[i]);
        tensor_copy_from_host(gin[i], tensor_f32(in[i]));
        ag_set_requires_grad(gin[i], NULL);
    }
    Tensor *gy = tensor_linear(gin[0], gin[1], gin[2]);
    ag_backward_with(gy, gdy);
    ag_tape_reset();
    const Tensor *pairs[4][2] = {{y, gy}, {x->grad, gin[0]->grad}, {w->grad, gin[1]->grad},
                                 {b->grad, gin[2]->grad}};
    const char *names[4] = {"y", "dx", "dw", "db"};
    for (int i = 0; i < 4; i++) {
        float *host = xmalloc((size_t)pairs[i][1]->numel * sizeof(float));
        tensor_copy_to_host(host, pairs[i][1]);
        EXPECT_CLOSE_N(names[i], host, tensor_f32(pairs[i][0]), pairs[i][0]->numel,
                       tol_matmul_atol(OUT), TOL_MATMUL_RTOL);
        free(host);
    }
    tensor_set_arena(prev);
    arena_destroy(gpu);
#endif
}
