/* test_gemm_bf16.c — the bf16 GEMM (tensor/ops/gemm_bf16.c) against double-precision references.
 *
 * Two error bounds, both from the analysis in docs/ops/gemm_bf16.md, per element (i, j) with
 * T_ij = sum_l |a_il b_lj| (the sum of the magnitudes of the terms, in double):
 *   1. Against the exact sum of the bf16-rounded inputs' products: each product is exact in
 *      float32, so the kernel's only errors are its float32 additions. Any summation order of K
 *      terms errs by at most gamma_K * T (Higham, Thm 3.1); alpha, beta and the slices of K that
 *      add their partial sums to C add at most 2 + 2 * slices roundings more:
 *          |C - ref| <= gamma_{K + 2 slices + 2} * (|alpha| T + |beta C0|).
 *   2. Against the exact sum of the float32 inputs' products: rounding a and b to bf16 changes
 *      each product by at most (2 u_bf16 + u_bf16^2) of its magnitude (u_bf16 = 2^-8: bf16 keeps
 *      8 significant bits), so bound 1 grows by (2 u_bf16 + u_bf16^2) |alpha| T; the fp32 GEMM
 *      (OpenBLAS) errs by at most its own gamma_{K+2} * T, and the two are within the sum of both.
 * Both micro-kernels run every case (AVX512-BF16, and AMX where the CPU has it).
 * Shapes: 1x1x1, sizes not multiples of the 12x32 or 32x32 tile, odd K (a zero-padded pair),
 * K longer than one KC slice, M longer than MC, N longer than NC, all four transposes, row strides
 * wider than the matrices, alpha/beta, and beta = 0 over a C full of NaN (C must not be read);
 * then frozen conv2d and linear under PRECISION_BF16 against PRECISION_FP32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/isa.h"
#include "tensor/kernels_cpu.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/convert.h"
#include "tensor/ops/matmul.h"
#include "test/gemm_case.h"
#include "test/test.h"

#define UBF16 3.90625e-3 /* 2^-8: bf16 keeps 8 significant bits */

static double gamma_n(double n) { return gemm_case_gamma(n); }

/* One case: random A, B, C0 (test/gemm_case.h); the kernel's C against both references. */
static void run_case(const GemmCase *cs, uint64_t seed) {
    const int64_t m = cs->m, n = cs->n, k = cs->k;
    GemmCaseData d = gemm_case_make(cs, seed);
    float *a = d.a, *b = d.b, *c = d.c, *c0 = d.c0;
    const int64_t lda = d.lda, ldb = d.ldb, ldc = d.ldc;
    float *cf = xcalloc((size_t)(m * ldc), sizeof(float));
    memcpy(cf, c0, (size_t)(m * ldc) * sizeof(float));
    /* from the guarded test arena: a write past the scratch is caught after the test */
    void *scratch = arena_alloc(tensor_arena(), gemm_bf16_scratch_bytes(m, n, k));
    gemm_bf16_cpu(c, a, b, m, n, k, cs->ta, cs->tb, cs->alpha, cs->beta, lda, ldb, ldc, scratch,
                  NULL);
    gemm_cpu(cf, a, b, 1, m, n, k, cs->ta, cs->tb, cs->alpha, cs->beta, lda, ldb, ldc, 0, 0, 0);
    const GemmBf16Blocking bl = gemm_bf16_blocking();
    const double slices = (double)((k + bl.kc - 1) / bl.kc);
    const double g_bf16 = gamma_n((double)k + 2.0 * slices + 2.0), g_f32 = gamma_n((double)k + 2);
    const double rnd = 2.0 * UBF16 + UBF16 * UBF16;
    double worst1 = 0.0, worst2 = 0.0, worst3 = 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sr = 0.0, sx = 0.0, t = 0.0;
            for (int64_t l = 0; l < k; l++) {
                const float av = cs->ta ? a[l * lda + i] : a[i * lda + l];
                const float bv = cs->tb ? b[j * ldb + l] : b[l * ldb + j];
                sr += (double)bf16_to_f32(f32_to_bf16(av)) * bf16_to_f32(f32_to_bf16(bv));
                sx += (double)av * bv;
                t += fabs((double)av * bv);
            }
            const double cb = cs->beta == 0.0f ? 0.0 : (double)cs->beta * c0[i * ldc + j];
            const double ref_r = cs->alpha * sr + cb, ref_x = cs->alpha * sx + cb;
            /* T of the rounded inputs is at most (1 + rnd) T */
            const double scale = fabs(cs->alpha) * t * (1.0 + rnd) + fabs(cb);
            const double tol1 = g_bf16 * scale;
            const double tol2 = tol1 + rnd * fabs(cs->alpha) * t;
            const double tol3 = tol2 + g_f32 * (fabs(cs->alpha) * t + fabs(cb));
            const double got = c[i * ldc + j];
            const double e1 = fabs(got - ref_r), e2 = fabs(got - ref_x);
            const double e3 = fabs(got - cf[i * ldc + j]);
            if (!(e1 <= tol1 && e2 <= tol2 && e3 <= tol3)) {
                if (bad++ < 5)
                    test_fail(__FILE__, __LINE__,
                              "%s %lldx%lldx%lld ta=%d tb=%d [%lld,%lld]: got %.9g, "
                              "bf16-exact %.9g "
                              "(tol %.3g), fp32-exact %.9g (tol %.3g), fp32 gemm %.9g (tol %.3g)",
                              gemm_bf16_kernel_name(gemm_bf16_kernel()), (long long)m,
                              (long long)n, (long long)k, cs->ta, cs->tb, (long long)i,
                              (long long)j, got, ref_r, tol1, ref_x, tol2,
                              (double)cf[i * ldc + j], tol3);
            }
            if (tol1 > 0 && e1 / tol1 > worst1) worst1 = e1 / tol1;
            if (tol2 > 0 && e2 / tol2 > worst2) worst2 = e2 / tol2;
            if (tol3 > 0 && e3 / tol3 > worst3) worst3 = e3 / tol3;
        }
    gemm_case_check_padding(cs, &d); /* the padding between rows of C must be untouched */
    if (getenv("TRMML_TEST_MEASURE"))
        printf("  gemm_bf16 %s %lldx%lldx%lld ta=%d tb=%d: max err/bound %.3f (bf16 exact), %.3f "
               "(fp32 exact), %.3f (fp32 gemm)\n",
               gemm_bf16_kernel_name(gemm_bf16_kernel()), (long long)m, (long long)n,
               (long long)k, cs->ta, cs->tb, worst1, worst2, worst3);
    gemm_case_free(&d);
    free(cf);
}

static bool need_bf16(void) {
    if (gemm_bf16_available()) return true;
    gemm_bf16_check();
    test_skip(error_last());
    return false;
}

/* The cases of one kernel, sized from its own blocking. */
static void odd_shapes(void) {
    const GemmBf16Blocking bl = gemm_bf16_blocking();
    const GemmCase cases[] = {
        {1, 1, 1, false, false, 1.0f, 0.0f, 0},
        {1, 1, 2, false, false, 1.0f, 0.0f, 0},
        {12, 32, 16, false, false, 1.0f, 0.0f, 0},  /* exactly one 12x32 tile */
        {32, 32, 32, false, false, 1.0f, 0.0f, 0},  /* exactly one 32x32 tile */
        {13, 37, 7, false, false, 1.0f, 0.0f, 3},   /* odd K, edge tiles, wide rows */
        {25, 65, 33, false, false, 1.0f, 0.0f, 0},
        {7, 5, 2 * bl.kc + 3, false, false, 1.0f, 0.0f, 0}, /* three slices of K, the last odd */
        {3, 17, 4001, false, false, 1.0f, 0.0f, 0},          /* long sums */
        {bl.mc + 5, 9, 11, false, false, 1.0f, 0.0f, 0},     /* two MC blocks */
        {3, bl.nc + 7, 5, false, false, 1.0f, 0.0f, 0},      /* two NC blocks */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 100 + i);
}

static void transposes(void) {
    gemm_case_transposes(run_case, gemm_bf16_blocking().kc);
}

/* fn once per micro-kernel this CPU runs. */
static void each_kernel(void (*fn)(void)) {
    for (int kern = 0; kern < 2; kern++) {
        if (!gemm_bf16_kernel_available((GemmBf16Kernel)kern)) continue;
        const GemmBf16Kernel prev = gemm_bf16_set_kernel((GemmBf16Kernel)kern);
        fn();
        gemm_bf16_set_kernel(prev);
    }
}

TEST(gemm_bf16_odd_shapes_vs_double) {
    if (need_bf16()) each_kernel(odd_shapes);
}

TEST(gemm_bf16_transposes_alpha_beta) {
    if (need_bf16()) each_kernel(transposes);
}

/* The epilogue and the batched form, bit for bit (test/gemm_case.h), on each micro-kernel. */
static void epilogue_and_batch(void) {
    char name[96];
    snprintf(name, sizeof name, "gemm_bf16 %s", gemm_bf16_kernel_name(gemm_bf16_kernel()));
    const GemmUnderTest gt = {name, gemm_bf16_batched_scratch_bytes, gemm_bf16_batched_cpu};
    gemm_case_check_epilogue_and_batch(&gt, gemm_bf16_blocking().kc);
}

TEST(gemm_bf16_epilogue_and_batch_bit_exact) {
    if (need_bf16()) each_kernel(epilogue_and_batch);
}

TEST(gemm_bf16_rounding_to_nearest_even) {
    struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1 */
        {0x3f808000u, 0x3f80}, /* tie, even below: stays */
        {0x3f818000u, 0x3f82}, /* tie, odd below: up */
        {0x3f808001u, 0x3f81}, /* above the tie: up */
        {0xbf80ffffu, 0xbf81}, /* negative, rounds away in magnitude */
        {0x7f7fffffu, 0x7f80}, /* largest float rounds to +inf */
        {0x7f800000u, 0x7f80}, /* +inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x00000001u, 0x0000}, /* smallest denormal rounds to 0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f;
        memcpy(&f, &cases[i].in, sizeof f);
        EXPECT(f32_to_bf16(f) == cases[i].out, "bf16(0x%08x) = 0x%04x, want 0x%04x",
               cases[i].in, f32_to_bf16(f), cases[i].out);
    }
    EXPECT(isnan(bf16_to_f32(f32_to_bf16(NAN))), "NaN must stay NaN");
    uint32_t snan = 0x7f800001u; /* a NaN whose payload is only in the dropped bits */
    float fs;
    memcpy(&fs, &snan, sizeof fs);
    EXPECT(isnan(bf16_to_f32(f32_to_bf16(fs))), "a low-payload NaN must not become inf");
}

TEST(gemm_bf16_refused_below_avx512) {
    if (!isa_has_avx512_bf16()) {
        EXPECT(!gemm_bf16_available() && gemm_bf16_check() == STATUS_ERR_DEVICE &&
                   strstr(error_last(), "AVX512-BF16"),
               "no AVX512-BF16: the bf16 GEMM must be refused with a message: %s", error_last());
        return;
    }
    const IsaLevel prev = isa_set_level(ISA_AVX2);
    const bool avail = gemm_bf16_available();
    const Status st = gemm_bf16_check();
    isa_set_level(prev);
    EXPECT(!avail && st == STATUS_ERR_DEVICE && strstr(error_last(), "TRMML_ISA"),
           "at TRMML_ISA=avx2 the bf16 GEMM must be refused: %s", error_last());
    EXPECT(gemm_bf16_available() && gemm_bf16_check() == STATUS_OK, "avx512 again");
}

/* got (bf16) against ref (fp32) of one op, with mag = the op on |inputs| (no bias), which is
 * T = sum |w x| per output up to its own gamma_K rounding. Both results are float32 sums of the
 * same K terms plus the bias: the bf16 terms differ from the fp32 ones by at most
 * (2 u_bf16 + u_bf16^2) of their magnitude, each side's sum errs by at most gamma_{K+1} of
 * (T + |bias|), so
 *     |got - ref| <= (2 u_bf16 + u_bf16^2 + 2 gamma_{K+1}) (1 + gamma_K) (1 + 3 u_bf16) (T + |b|)
 * with |b| <= |ref| + T (the factor (1 + 3 u_bf16) covers T of the rounded inputs). */
static void expect_bf16_close(const char *what, const Tensor *got, const Tensor *ref,
                              const Tensor *mag, int64_t k) {
    const double rnd = 2.0 * UBF16 + UBF16 * UBF16;
    const double f = (rnd + 2.0 * gamma_n((double)k + 1)) * (1.0 + gamma_n((double)k)) *
                     (1.0 + 3.0 * UBF16);
    const float *g = tensor_f32((Tensor *)got), *r = tensor_f32((Tensor *)ref);
    const float *t = tensor_f32((Tensor *)mag);
    double worst = 0.0;
    int bad = 0;
    for (int64_t i = 0; i < ref->numel; i++) {
        const double tol = f * (2.0 * t[i] + fabs(r[i]));
        const double e = fabs((double)g[i] - r[i]);
        if (e > tol && bad++ < 5)
            test_fail(__FILE__, __LINE__, "%s [%lld]: bf16 %.9g, fp32 %.9g (tol %.3g)", what,
                      (long long)i, g[i], r[i], tol);
        if (tol > 0 && e / tol > worst) worst = e / tol;
    }
    if (getenv("TRMML_TEST_MEASURE")) printf("  %s: max err/bound %.3f\n", what, worst);
}

static Tensor *abs_copy(Tensor *x) {
    Tensor *y = tensor_empty(DT_F32, x->ndim, x->shape);
    for (int64_t i = 0; i < x->numel; i++) tensor_f32(y)[i] = fabsf(tensor_f32(x)[i]);
    return y;
}

/* conv2d (im2col 3x3, stride 2, 1x1, 40 channels) and linear with frozen
 * weights: PRECISION_BF16 within the bound above of PRECISION_FP32; with a weight that requires
 * a gradient, bf16 is not used (bit-identical to fp32). */
TEST(gemm_bf16_frozen_conv_linear_match_fp32) {
    if (!need_bf16()) return;
    const bool grad = ag_set_grad_enabled(false);
    struct {
        int64_t n, c, h, w, o, k, stride, pad;
    } convs[] = {{2, 5, 9, 11, 7, 3, 1, 1}, {2, 6, 13, 10, 9, 3, 2, 1}, {3, 17, 6, 7, 19, 1, 1, 0},
                 {1, 40, 18, 18, 36, 3, 1, 1}};
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        Tensor *x = test_randn(500 + i, 4, SHAPE(convs[i].n, convs[i].c, convs[i].h, convs[i].w));
        Tensor *w = test_randn(600 + i, 4, SHAPE(convs[i].o, convs[i].c, convs[i].k, convs[i].k));
        Tensor *b = test_randn(700 + i, 1, SHAPE(convs[i].o));
        Tensor *ref = tensor_conv2d(x, w, b, convs[i].stride, convs[i].pad);
        Tensor *mag =
            tensor_conv2d(abs_copy(x), abs_copy(w), NULL, convs[i].stride, convs[i].pad);
        EXPECT(tensor_set_precision(PRECISION_BF16) == STATUS_OK, "%s", error_last());
        Tensor *got = tensor_conv2d(x, w, b, convs[i].stride, convs[i].pad);
        tensor_set_precision(PRECISION_FP32);
        char what[64];
        snprintf(what, sizeof what, "conv2d case %zu", i);
        expect_bf16_close(what, got, ref, mag, convs[i].c * convs[i].k * convs[i].k);
    }
    Tensor *x = test_randn(800, 3, SHAPE(3, 7, 77)), *w = test_randn(801, 2, SHAPE(45, 77));
    Tensor *b = test_randn(802, 1, SHAPE(45));
    Tensor *ref = tensor_linear(x, w, b), *mag = tensor_linear(abs_copy(x), abs_copy(w), NULL);
    tensor_set_precision(PRECISION_BF16);
    Tensor *got = tensor_linear(x, w, b);
    /* a learnable weight keeps fp32 under PRECISION_BF16 */
    w->requires_grad = true;
    Tensor *learn = tensor_linear(x, w, b);
    w->requires_grad = false;
    tensor_set_precision(PRECISION_FP32);
    expect_bf16_close("linear", got, ref, mag, 77);
    EXPECT(memcmp(tensor_f32(learn), tensor_f32(ref), (size_t)ref->numel * sizeof(float)) == 0,
           "linear with a learnable weight must stay fp32 under PRECISION_BF16");
    ag_set_grad_enabled(grad);
}

/* The magnitude for the bound of a Winograd F(2x2, 3x3) convolution (tensor/ops/conv.c): per
 * output, the sum over the output transform's coefficients (|A^T| = [1 1 1 0; 0 1 1 1]) of
 * S[xi] = sum_c |U[xi][o][c]| |V[xi][c][tile]|, with U = G g G^T and V = B^T d B computed in
 * double from the weight and the zero-padded input patch d. The products the GEMM sums are
 * U V, so this plays the part of T = sum |w x| of a direct convolution. */
static Tensor *wino_magnitude(const Tensor *x, const Tensor *w, int64_t pad) {
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = w->shape[0], OH = H + 2 * pad - 2, OW = W + 2 * pad - 2;
    const int64_t TH = (OH + 1) / 2, TW = (OW + 1) / 2;
    const float *xv = tensor_f32((Tensor *)x), *wv = tensor_f32((Tensor *)w);
    double *U = calloc((size_t)(O * C * 16), sizeof *U), *V = calloc((size_t)(C * 16), sizeof *V);
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++) {
            const float *g = wv + (o * C + c) * 9;
            double t[4][3];
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[j];
                t[1][j] = 0.5 * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5 * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            double *u = U + (o * C + c) * 16;
            for (int i = 0; i < 4; i++) {
                u[i * 4 + 0] = fabs(t[i][0]);
                u[i * 4 + 1] = fabs(0.5 * (t[i][0] + t[i][1] + t[i][2]));
                u[i * 4 + 2] = fabs(0.5 * (t[i][0] - t[i][1] + t[i][2]));
                u[i * 4 + 3] = fabs(t[i][2]);
            }
        }
    Tensor *mag = tensor_zeros(DT_F32, 4, SHAPE(N, O, OH, OW));
    for (int64_t n = 0; n < N; n++)
        for (int64_t ty = 0; ty < TH; ty++)
            for (int64_t tx = 0; tx < TW; tx++) {
                for (int64_t c = 0; c < C; c++) {
                    double d[4][4], r[4][4];
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) {
                            const int64_t ih = 2 * ty - pad + i, iw = 2 * tx - pad + j;
                            d[i][j] = ih >= 0 && ih < H && iw >= 0 && iw < W
                                          ? xv[((n * C + c) * H + ih) * W + iw] : 0.0;
                        }
                    for (int i = 0; i < 4; i++) { /* d B */
                        r[i][0] = d[i][0] - d[i][2];
                        r[i][1] = d[i][1] + d[i][2];
                        r[i][2] = d[i][2] - d[i][1];
                        r[i][3] = d[i][1] - d[i][3];
                    }
                    for (int j = 0; j < 4; j++) { /* B^T (d B) */
                        V[c * 16 + 0 + j] = fabs(r[0][j] - r[2][j]);
                        V[c * 16 + 4 + j] = fabs(r[1][j] + r[2][j]);
                        V[c * 16 + 8 + j] = fabs(r[2][j] - r[1][j]);
                        V[c * 16 + 12 + j] = fabs(r[1][j] - r[3][j]);
                    }
                }
                static const int at[2][4] = {{1, 1, 1, 0}, {0, 1, 1, 1}};
                for (int64_t o = 0; o < O; o++) {
                    double S[16] = {0};
                    for (int64_t c = 0; c < C; c++)
                        for (int k = 0; k < 16; k++) S[k] += U[(o * C + c) * 16 + k] * V[c * 16 + k];
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            const int64_t oh = 2 * ty + a, ow = 2 * tx + b;
                            if (oh >= OH || ow >= OW) continue;
                            double m = 0;
                            for (int i = 0; i < 4; i++)
                                for (int j = 0; j < 4; j++) m += at[a][i] * at[b][j] * S[i * 4 + j];
                            tensor_f32(mag)[((n * O + o) * OH + oh) * OW + ow] = (float)m;
                        }
                }
            }
    free(U);
    free(V);
    return mag;
}

/* 3x3 stride-1 convolutions that take the Winograd path, under PRECISION_BF16 (the 16 products
 * through the bf16 GEMM) against the fp32 Winograd forward. Both compute the same float32 U and V
 * and the same transforms; the bf16 side rounds U and V to bf16, so with T the Winograd
 * magnitude above the bound of expect_bf16_close holds with K = C + 10 (the C-term sums of the
 * products, then at most 9 terms of the output transform and the bias). Shapes: one block of
 * tiles with a short tile row (odd output side), and two blocks (the bf16 blocks hold 409 tile
 * rows at 32 + 32 channels and 10 tiles per row), on the default AUTO choice and forced. */
TEST(gemm_bf16_frozen_conv_winograd_within_bound) {
    if (!need_bf16()) return;
    const bool grad = ag_set_grad_enabled(false);
    static const struct {
        int64_t n, c, h, w, o;
        ConvWinograd mode;
    } convs[] = {{2, 32, 24, 20, 32, CONV_WINOGRAD_AUTO},
                 {1, 33, 7, 9, 40, CONV_WINOGRAD_ALWAYS},
                 {2, 32, 410, 20, 32, CONV_WINOGRAD_AUTO}};
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        const ConvWinograd prev = conv_set_winograd(convs[i].mode);
        Tensor *x = test_randn(900 + i, 4, SHAPE(convs[i].n, convs[i].c, convs[i].h, convs[i].w));
        Tensor *w = test_randn(910 + i, 4, SHAPE(convs[i].o, convs[i].c, 3, 3));
        Tensor *b = test_randn(920 + i, 1, SHAPE(convs[i].o));
        /* the fp32 reference on the bf16 path's tiles, F(2x2, 3x3) */
        const ConvWinogradTile prev_tile = conv_set_winograd_tile(CONV_WINOGRAD_F2);
        Tensor *ref = tensor_conv2d(x, w, b, 1, 1);
        conv_set_winograd_tile(prev_tile);
        Tensor *mag = wino_magnitude(x, w, 1);
        EXPECT(tensor_set_precision(PRECISION_BF16) == STATUS_OK, "%s", error_last());
        Tensor *got = tensor_conv2d(x, w, b, 1, 1);
        tensor_set_precision(PRECISION_FP32);
        conv_set_winograd(prev);
        char what[64];
        snprintf(what, sizeof what, "winograd conv2d case %zu", i);
        expect_bf16_close(what, got, ref, mag, convs[i].c + 10);
    }
    ag_set_grad_enabled(grad);
}
