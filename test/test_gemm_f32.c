/* test_gemm_f32.c — the project's fp32 GEMM (tensor/ops/gemm_f32.c) against double precision.
 *
 * The bound (docs/ops/gemm_f32.md), per element (i, j) with T_ij = sum_l |a_il b_lj| in double:
 * every FMA rounds once, so the sum of a slice of K terms errs by at most gamma_kc * T (Higham,
 * Thm 3.1); alpha, beta and each later slice adding its partial sum to C add two roundings each:
 *     |C - ref| <= gamma_{K + 2 slices + 2} * (|alpha| T + |beta C0|).
 * Shapes: 1x1x1, sizes not multiples of the 12x32 tile, K over several KC slices, N over several
 * NC blocks, a single product split into row blocks across the threads, all four transposes,
 * row strides wider than the matrices (whose padding must stay untouched), alpha/beta, and
 * beta = 0 over a C full of NaN (C must not be read). Then the epilogue and the batched form,
 * bit for bit against what they stand for, and the refusal below the avx512 level. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/isa.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/gemm_f32.h"
#include "test/gemm_case.h"
#include "test/test.h"

/* One case: random A, B, C0 (test/gemm_case.h); the kernel's C against the exact product. */
static void run_case(const GemmCase *cs, uint64_t seed) {
    const int64_t m = cs->m, n = cs->n, k = cs->k;
    GemmCaseData d = gemm_case_make(cs, seed);
    const int64_t ldc = d.ldc;
    /* from the guarded test arena: a write past the scratch is caught after the test */
    void *scratch = arena_alloc(tensor_arena(), gemm_f32_batched_scratch_bytes(1, true, m, n, k));
    gemm_f32_batched_cpu(d.c, d.a, d.b, 1, m, n, k, cs->ta, cs->tb, cs->alpha, cs->beta, d.lda,
                         d.ldb, ldc, 0, 0, 0, scratch, NULL);
    const GemmF32Blocking bl = gemm_f32_blocking();
    const double slices = (double)((k + bl.kc - 1) / bl.kc);
    const double g = gemm_case_gamma((double)k + 2.0 * slices + 2.0);
    double worst = 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0.0, t = 0.0;
            for (int64_t l = 0; l < k; l++) {
                const double p = (double)gemm_case_a(cs, &d, i, l) * gemm_case_b(cs, &d, l, j);
                sum += p;
                t += fabs(p);
            }
            const double cb = cs->beta == 0.0f ? 0.0 : (double)cs->beta * d.c0[i * ldc + j];
            const double ref = cs->alpha * sum + cb;
            const double tol = g * (fabs(cs->alpha) * t + fabs(cb));
            const double err = fabs(d.c[i * ldc + j] - ref);
            if (!(err <= tol) && bad++ < 5)
                test_fail(__FILE__, __LINE__,
                          "gemm_f32 %lldx%lldx%lld ta=%d tb=%d [%lld,%lld]: got %.9g, exact "
                          "%.9g (tol %.3g)",
                          (long long)m, (long long)n, (long long)k, cs->ta, cs->tb, (long long)i,
                          (long long)j, (double)d.c[i * ldc + j], ref, tol);
            if (tol > 0 && err / tol > worst) worst = err / tol;
        }
    gemm_case_check_padding(cs, &d);
    if (getenv("TRMML_TEST_MEASURE"))
        printf("  gemm_f32 %lldx%lldx%lld ta=%d tb=%d: max err/bound %.3f\n", (long long)m,
               (long long)n, (long long)k, cs->ta, cs->tb, worst);
    gemm_case_free(&d);
}

static bool need_f32(void) {
    if (gemm_f32_available()) return true;
    test_skip("the own fp32 GEMM runs only at the avx512 level, with OpenBLAS as gemm_cpu");
    return false;
}

TEST(gemm_f32_shapes_vs_double) {
    if (!need_f32()) return;
    const GemmF32Blocking bl = gemm_f32_blocking();
    const GemmCase cases[] = {
        {1, 1, 1, false, false, 1.0f, 0.0f, 0},
        {12, 32, 16, false, false, 1.0f, 0.0f, 0},           /* exactly one tile */
        {13, 37, 7, false, false, 1.0f, 0.0f, 3},            /* edge tiles, wide rows */
        {25, 65, 33, false, false, 1.0f, 0.0f, 0},           /* split into row blocks */
        {7, 5, 2 * bl.kc + 3, false, false, 1.0f, 0.0f, 0}, /* three slices of K */
        {3, 17, 4001, false, false, 1.0f, 0.0f, 0},          /* long sums */
        {30, 2 * bl.nc + 7, 5, false, false, 1.0f, 0.0f, 0}, /* three NC blocks */
        {64, 3 * 196, 256, false, false, 1.0f, 1.0f, 0},     /* a 1x1 convolution's, residual */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 100 + i);
}

TEST(gemm_f32_transposes_alpha_beta) {
    if (!need_f32()) return;
    gemm_case_transposes(run_case, gemm_f32_blocking().kc);
}

/* The epilogue and the batched form, bit for bit (test/gemm_case.h). */
TEST(gemm_f32_epilogue_and_batch_bit_exact) {
    if (!need_f32()) return;
    const GemmUnderTest gt = {"gemm_f32", gemm_f32_batched_scratch_bytes, gemm_f32_batched_cpu};
    gemm_case_check_epilogue_and_batch(&gt, gemm_f32_blocking().kc);
}

TEST(gemm_f32_only_at_avx512) {
    if (!isa_supported(ISA_AVX512)) {
        EXPECT(!gemm_f32_available(), "no AVX-512: the own fp32 GEMM must not be offered");
        return;
    }
    const IsaLevel prev = isa_set_level(ISA_AVX2);
    const bool avail = gemm_f32_available();
    isa_set_level(prev);
    EXPECT(!avail, "at TRMML_ISA=avx2 the own fp32 GEMM must not be offered");
}

/* A packed once (gemm_f32_pack_a, and panel by panel with gemm_f32_pack_a_panel: the same
 * floats) then single-thread products against it, as the Winograd convolution uses them: the
 * same panels, slices and order as the batched call, so bit for bit, over two slices of k,
 * several column blocks, edge tiles, transposed A and B, and an epilogue. */
TEST(gemm_f32_packed_a_matches_batched) {
    if (!need_f32()) return;
    const GemmF32Blocking bl = gemm_f32_blocking();
    const struct {
        int64_t m, n, k;
        bool ta, tb;
        float beta;
    } cases[] = {{29, 45, 51, false, false, 0.0f},
                 {13, bl.nc + 37, bl.kc + 5, true, false, 1.0f},
                 {25, 70, 33, false, true, 0.0f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t m = cases[i].m, n = cases[i].n, k = cases[i].k;
        const bool ta = cases[i].ta, tb = cases[i].tb;
        const int64_t lda = ta ? m : k, ldb = tb ? k : n;
        Tensor *a = test_randn(1200 + i, 1, SHAPE(m * k));
        Tensor *b = test_randn(1210 + i, 1, SHAPE(k * n));
        Tensor *c0 = test_randn(1220 + i, 1, SHAPE(m * n)), *rb = test_randn(1230 + i, 1, SHAPE(m));
        const GemmEpilogue ep = {.row_bias = tensor_f32(rb), .col_bias = NULL, .relu = true};
        Tensor *want = TENSOR_F32(m * n), *got = TENSOR_F32(m * n);
        memcpy(want->data, c0->data, (size_t)(m * n) * sizeof(float));
        memcpy(got->data, c0->data, (size_t)(m * n) * sizeof(float));
        void *s = arena_alloc(tensor_arena(), gemm_f32_batched_scratch_bytes(1, true, m, n, k));
        gemm_f32_batched_cpu(tensor_f32(want), tensor_f32(a), tensor_f32(b), 1, m, n, k, ta, tb,
                             1.0f, cases[i].beta, lda, ldb, n, 0, 0, 0, s, &ep);
        float *ap = arena_alloc(tensor_arena(), (size_t)gemm_f32_packed_a_floats(m, k) * 4);
        float *bs = arena_alloc(tensor_arena(), (size_t)gemm_f32_b_scratch_floats(n, k) * 4);
        gemm_f32_pack_a(ap, tensor_f32(a), m, k, ta, lda);
        if (!ta) { /* panel by panel (a Winograd convolution's U), the same packed floats */
            const int64_t mr = gemm_f32_blocking().mr, na = gemm_f32_packed_a_floats(m, k);
            float *ap2 = arena_alloc(tensor_arena(), (size_t)na * 4);
            memset(ap2, 0xff, (size_t)na * 4);
            for (int64_t q = 0; q * mr < m; q++)
                gemm_f32_pack_a_panel(ap2, tensor_f32(a) + q * mr * lda, m, k, q, lda);
            EXPECT(memcmp(ap, ap2, (size_t)na * 4) == 0,
                   "gemm_f32_pack_a_panel differs from gemm_f32_pack_a (case %zu)", i);
        }
        gemm_f32_packed_single(tensor_f32(got), ap, tensor_f32(b), m, n, k, tb, 1.0f,
                               cases[i].beta, ldb, n, bs, &ep);
        char what[64];
        snprintf(what, sizeof what, "gemm_f32 packed A case %zu", i);
        EXPECT_CLOSE_N(what, tensor_f32(got), tensor_f32(want), m * n, 0, 0);
    }
}

/* K = 0: the empty sum, C = act(beta * C + biases), through the batched and the packed forms. */
TEST(gemm_f32_empty_sum) {
    if (!need_f32()) return;
    const int64_t m = 5, n = 7;
    Tensor *c0 = test_randn(1300, 1, SHAPE(m * n)), *rb = test_randn(1301, 1, SHAPE(m));
    const GemmEpilogue ep = {.row_bias = tensor_f32(rb), .col_bias = NULL, .relu = true};
    Tensor *want = TENSOR_F32(m * n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const float v = 0.5f * tensor_f32(c0)[i * n + j] + tensor_f32(rb)[i];
            tensor_f32(want)[i * n + j] = v > 0.0f ? v : 0.0f;
        }
    for (int form = 0; form < 2; form++) {
        Tensor *got = TENSOR_F32(m * n);
        memcpy(got->data, c0->data, (size_t)(m * n) * sizeof(float));
        if (form == 0)
            gemm_f32_batched_cpu(tensor_f32(got), NULL, NULL, 1, m, n, 0, false, false, 1.0f, 0.5f,
                                 1, n, n, 0, 0, 0, NULL, &ep);
        else
            gemm_f32_packed_single(tensor_f32(got), NULL, NULL, m, n, 0, false, 1.0f, 0.5f, n, n,
                                   NULL, &ep);
        EXPECT_CLOSE_N(form ? "gemm_f32 packed, K = 0" : "gemm_f32 batched, K = 0",
                       tensor_f32(got), tensor_f32(want), m * n, 0, 0);
    }
}
