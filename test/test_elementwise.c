/* test_elementwise.c — elementwise family: forward and backward against PyTorch fixtures,
 * finite-difference gradchecks, and the frozen-input contract. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/ops/elementwise.h"
#include "test/test.h"

typedef Tensor *(*BinFn)(Tensor *, Tensor *);
static const struct { const char *name; BinFn fn; } bins[] = {
    {"add", tensor_add}, {"sub", tensor_sub}, {"mul", tensor_mul}, {"div", tensor_div}};
static const char *bshapes[] = {"same", "row", "col", "both", "scalar", "lead"};

TEST(elementwise_binary_fixtures) {
    Fixture *fx = fixture_open("elementwise");
    if (!fx) return;
    for (size_t o = 0; o < sizeof bins / sizeof bins[0]; o++)
        for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++) {
            char cs[64];
            snprintf(cs, sizeof cs, "%s_%s", bins[o].name, bshapes[s]);
            Tensor *in[2] = {test_case_input(fx, cs, "a", true), test_case_input(fx, cs, "b", true)};
            if (!in[0] || !in[1]) return;
            Tensor *out = bins[o].fn(in[0], in[1]);
            test_check_case(fx, cs, out, in, (const char *[]){"a", "b"}, 2, (CaseTol){TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL, TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL});
        }
}

typedef Tensor *(*UnFn)(Tensor *);
static Tensor *pow3(Tensor *x) { return tensor_pow(x, 3.0f); }
static Tensor *pow_half(Tensor *x) { return tensor_pow(x, 0.5f); }
static Tensor *pow_m1_5(Tensor *x) { return tensor_pow(x, -1.5f); }
static Tensor *clamp(Tensor *x) { return tensor_clamp(x, -0.5f, 0.8f); }
static Tensor *clamp_lo(Tensor *x) { return tensor_clamp(x, -0.3f, INFINITY); }
static Tensor *affine(Tensor *x) { return tensor_affine(x, 2.5f, -0.75f); }
static const struct { const char *name; UnFn fn; } uns[] = {
    {"exp", tensor_exp}, {"log", tensor_log}, {"sqrt", tensor_sqrt}, {"abs", tensor_abs},
    {"relu", tensor_relu}, {"sigmoid", tensor_sigmoid}, {"tanh", tensor_tanh},
    {"gelu", tensor_gelu}, {"quick_gelu", tensor_quick_gelu}, {"neg", tensor_neg},
    {"pow3", pow3}, {"pow_half", pow_half}, {"pow_m1_5", pow_m1_5}, {"clamp", clamp},
    {"clamp_lo", clamp_lo}, {"affine", affine}};

TEST(elementwise_unary_fixtures) {
    Fixture *fx = fixture_open("elementwise");
    if (!fx) return;
    for (size_t u = 0; u < sizeof uns / sizeof uns[0]; u++) {
        char cs[64];
        snprintf(cs, sizeof cs, "unary_%s", uns[u].name);
        Tensor *x = test_case_input(fx, cs, "x", true);
        if (!x) return;
        Tensor *out = uns[u].fn(x);
        /* Transcendentals in float32 (expf, erf, powf) differ from float64 by a few ulps, so
         * this family's element-wise tolerance applies to the rounded float32 result. */
        test_check_case(fx, cs, out, &x, (const char *[]){"x"}, 1, (CaseTol){TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL, TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL});
    }
    Tensor *x = fixture_tensor(fx, "sigmoid_extreme/x");
    if (x) EXPECT_TENSOR("sigmoid_extreme", tensor_sigmoid(x), fixture_get(fx, "sigmoid_extreme/out"),
                         TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL);
}

static Tensor *gc_binary(Tensor *const *in, void *ctx) { return ((BinFn)ctx)(in[0], in[1]); }
static Tensor *gc_unary(Tensor *const *in, void *ctx) { return ((UnFn)ctx)(in[0]); }

TEST(elementwise_gradcheck) {
    /* Broadcasting in both directions, on shapes no fixture has. */
    for (size_t o = 0; o < sizeof bins / sizeof bins[0]; o++) {
        Tensor *a = test_randn(11 + o, 3, SHAPE(2, 1, 5));
        Tensor *b = test_rand_uniform(21 + o, 0.5f, 2.0f, 2, SHAPE(3, 1));
        EXPECT_GRADCHECK(bins[o].name, gc_binary, (void *)bins[o].fn, ((Tensor *[]){a, b}), 2,
                         NULL, NULL);
    }
    for (size_t u = 0; u < sizeof uns / sizeof uns[0]; u++) {
        /* Inputs in [0.3, 1.9]: away from the kinks of relu/abs/clamp by at least 10*eps except
         * clamp's 0.8 upper bound, which is moved out of the range below. */
        Tensor *x = test_rand_uniform(31 + u, 0.3f, 1.9f, 2, SHAPE(3, 7));
        if (uns[u].fn == clamp) {
            float *p = tensor_f32(x);
            for (int i = 0; i < 21; i++)
                if (fabsf(p[i] - 0.8f) < 0.15f) p[i] = 0.8f + (p[i] < 0.8f ? -0.15f : 0.15f);
        }
        EXPECT_GRADCHECK(uns[u].name, gc_unary, (void *)uns[u].fn, &x, 1, NULL, NULL);
    }
}

TEST(elementwise_frozen_operand_gets_no_gradient) {
    /* y = w * x with w frozen: x gets its gradient, w never gets a buffer. */
    Tensor *w = test_randn(1, 2, SHAPE(4, 3));
    Tensor *x = test_randn(2, 2, SHAPE(4, 3));
    ag_set_requires_grad(x, NULL);
    Tensor *y = tensor_mul(w, x);
    ag_backward_with(y, test_randn(3, 2, SHAPE(4, 3)));
    EXPECT(w->grad == NULL, "frozen operand received a gradient buffer");
    EXPECT(x->grad != NULL, "input did not receive a gradient");
    /* No tape at all when nothing requires a gradient. */
    ag_tape_reset();
    Tensor *z = tensor_exp(tensor_mul(w, w));
    EXPECT(ag_tape_length() == 0 && !z->requires_grad, "a frozen computation recorded %d nodes",
           ag_tape_length());
}

TEST(elementwise_grad_accumulates_over_uses) {
    /* x used twice: dx = dout*(2x) + dout, checked against the closed form. */
    Tensor *x = test_randn(5, 1, SHAPE(6));
    ag_set_requires_grad(x, NULL);
    Tensor *y = tensor_add(tensor_mul(x, x), x);
    Tensor *dout = test_randn(6, 1, SHAPE(6));
    ag_backward_with(y, dout);
    float ref[6];
    for (int i = 0; i < 6; i++) ref[i] = tensor_f32(dout)[i] * (2 * tensor_f32(x)[i] + 1);
    EXPECT_CLOSE_N("dx", tensor_f32(x->grad), ref, 6, TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL);
}

/* An addition's backward hands dout's buffer to one intermediate operand with no gradient yet
 * and copies or accumulates for the other (add_pass_gradient): the shapes of graph that could
 * break that — the same intermediate twice, an intermediate used again after the addition, a
 * leaf beside an intermediate, a residual chain — against the closed forms, and by gradcheck. */
static Tensor *gc_add_shapes(Tensor *const *in, void *ctx) {
    Tensor *e = tensor_exp(in[0]);                   /* an intermediate */
    Tensor *r = tensor_add(e, e);                    /* the same one twice: 2 e */
    r = tensor_add(r, tensor_tanh(e));               /* e used again, after the hand-over */
    r = tensor_add(in[1], r);                        /* a leaf beside an intermediate */
    return tensor_add(tensor_sigmoid(r), r);         /* a residual: r read by both operands */
}

TEST(elementwise_add_hands_over_gradient) {
    Tensor *x = test_randn(7, 2, SHAPE(3, 5)), *w = test_randn(8, 2, SHAPE(3, 5));
    EXPECT_GRADCHECK("add hand-over shapes", gc_add_shapes, NULL, ((Tensor *[]){x, w}), 2, NULL,
                     NULL);
    /* The same graph once more with a known upstream gradient: dx and dw in closed form. */
    ag_set_requires_grad(x, NULL);
    ag_set_requires_grad(w, NULL);
    Tensor *y = gc_add_shapes((Tensor *[]){x, w}, NULL);
    Tensor *dout = test_randn(9, 2, SHAPE(3, 5));
    ag_backward_with(y, dout);
    float rx[15], rw[15];
    for (int i = 0; i < 15; i++) {
        const double xv = tensor_f32(x)[i], e = exp(xv), t = tanh(e);
        const double r = tensor_f32(w)[i] + 2 * e + t, s = 1 / (1 + exp(-r));
        const double dr = tensor_f32(dout)[i] * (1 + s * (1 - s));
        rw[i] = (float)dr;
        rx[i] = (float)(dr * (2 + (1 - t * t)) * e);
    }
    EXPECT_CLOSE_N("add hand-over dw", tensor_f32(w->grad), rw, 15, TOL_ELEMENTWISE_ATOL,
                   TOL_ELEMENTWISE_RTOL);
    /* dx goes through four float32 functions and three sums (a few ulps each, rtol 1e-5 is
     * ~80 ulps); its absolute floor is the elementwise atol times the largest factor, |2 + 1 -
     * t²| e <= 3 e^2.5 ~ 37 for these |x| < 2.5: 1e-5 covers it. */
    EXPECT_CLOSE_N("add hand-over dx", tensor_f32(x->grad), rx, 15, 1e-5, TOL_ELEMENTWISE_RTOL);
    /* The caller's upstream gradient is untouched (the hand-over uses the tape's own copy). */
    Tensor *again = test_randn(9, 2, SHAPE(3, 5));
    EXPECT_CLOSE_N("add hand-over dout unchanged", tensor_f32(dout), tensor_f32(again), 15, 0, 0);
}

/* The forward's repeated-block path (b dense over its last dims, repeated over the leading
 * ones): a (HW+1, C) block onto every image of (B, HW+1, C) as CLIP's attention pool does, with
 * and without a leading 1, and a block that is not a whole trailing part (b (4, 1, 5) has a
 * broadcast dim inside: the per-element path), against the definition. */
TEST(elementwise_repeated_block_broadcast) {
    Tensor *a = test_randn(21, 3, SHAPE(4, 3, 5));
    struct { int nd; int64_t shape[3]; } bs[] = {{2, {3, 5}}, {3, {1, 3, 5}}, {3, {4, 1, 5}},
                                                 {1, {5}}};
    for (int c = 0; c < 4; c++) {
        Tensor *b = test_randn(22 + c, bs[c].nd, bs[c].shape);
        Tensor *y = tensor_sub(a, b);
        float ref[60];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 5; k++) {
                    const int64_t bi = c == 2 ? i * 5 + k : c == 3 ? k : j * 5 + k;
                    ref[(i * 3 + j) * 5 + k] = tensor_f32(a)[(i * 3 + j) * 5 + k] -
                                               tensor_f32(b)[bi];
                }
        char what[64];
        snprintf(what, sizeof what, "a (4,3,5) - b case %d", c);
        EXPECT_CLOSE_N(what, tensor_f32(y), ref, 60, 0, 0); /* one rounding, the same one */
    }
}

TEST(elementwise_quick_gelu_accuracy) {
    /* QuickGELU computes its exponential with a polynomial (exp_poly in elementwise.c) so that
     * the loop vectorises. Against float64 evaluation of the same float32 argument 1.702f * x,
     * on a dense sweep of [-40, 40] and extremes: the value within 8 float32 ulps, the
     * derivative within 8 ulps of its terms (or either within 1e-30 absolutely, where the result
     * underflows: exp_poly stops at e^-87), and the extremes finite. */
    const int64_t n = 80001 + 10;
    Tensor *x = tensor_empty(DT_F32, 1, SHAPE(n));
    float *xs = tensor_f32(x);
    for (int64_t i = 0; i < 80001; i++) xs[i] = -40.0f + 0.001f * (float)i;
    const float extremes[10] = {-1e30f, -1e4f, -100.0f, -60.0f, -51.3f, 51.3f, 60.0f, 100.0f,
                                1e4f, 1e30f};
    memcpy(xs + 80001, extremes, sizeof extremes);
    ag_set_requires_grad(x, NULL);
    Tensor *y = tensor_quick_gelu(x);
    Tensor *dy = tensor_empty(DT_F32, 1, SHAPE(n));
    tensor_fill(dy, 1.0f);
    ag_backward_with(y, dy);
    int bad = 0;
    for (int64_t i = 0; i < n && bad < 5; i++) {
        /* the argument rounded to float32 as the kernel (and PyTorch) form it: at x = -35 its
         * rounding alone moves e^(1.702 x) by 2e-6 relative */
        const double v = xs[i], a = (float)(1.702f * xs[i]), s = 1.0 / (1.0 + exp(-a));
        const double ref = v * s, dref = s + a * s * (1.0 - s);
        const double got = tensor_f32(y)[i], dgot = tensor_f32(x->grad)[i];
        const double ulp = 8.0 * FLT_EPSILON;
        if (!isfinite(got) || fabs(got - ref) > fmax(ulp * fabs(ref), 1e-30)) {
            EXPECT(false, "quick_gelu(%.9g) = %.9g, float64 says %.9g", v, got, ref);
            bad++;
        }
        /* ulps of the derivative's terms' size: the sum cancels near x = -0.78, and where s
         * is near 1 the float32 1 - s is off by up to an ulp of 1, times a s */
        const double dscale = fabs(s) + fabs(a * s);
        if (!isfinite(dgot) || fabs(dgot - dref) > fmax(ulp * dscale, 1e-30)) {
            EXPECT(false, "quick_gelu'(%.9g) = %.9g, float64 says %.9g", v, dgot, dref);
            bad++;
        }
    }
    ag_tape_reset();
}
