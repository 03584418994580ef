/* gemm_case.h — the random products the tests of the project's own GEMMs (test_gemm_bf16.c,
 * test_gemm_f32.c) run: a case's shape, transposes, alpha/beta and row padding, its operands
 * drawn from one seed, the γ_n of the error bounds, the check that C's row padding stayed
 * untouched, and the two bit-for-bit checks both GEMMs share (the epilogue, the batched form).
 * Test-only; static inline, so each test file has its own copy. */
#pragma once
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ops/gemm_bf16.h"
#include "test/test.h"

#define GEMM_CASE_U32 5.9604644775390625e-8 /* 2^-24: float32's unit roundoff */

/* γ_n = n u / (1 - n u) (Higham, Thm 3.1) */
static inline double gemm_case_gamma(double n) {
    return n * GEMM_CASE_U32 / (1.0 - n * GEMM_CASE_U32);
}

typedef struct {
    int64_t m, n, k;
    bool ta, tb;
    float alpha, beta;
    int64_t pad; /* extra elements per row beyond the matrix (lda/ldb/ldc wider) */
} GemmCase;

/* The operands of a case: op(A) (M,K) stored (K,M) when ta, op(B) (K,N) stored (N,K) when tb,
 * rows lda/ldb/ldc apart; c0 the C the product starts from (NaN everywhere when beta = 0, which
 * must then not be read) and c a copy of it for the kernel. */
typedef struct {
    float *a, *b, *c, *c0;
    int64_t lda, ldb, ldc;
} GemmCaseData;

/* Draws a, b and c0 from `seed` (normal, in that order), padding included — new memory. */
static inline GemmCaseData gemm_case_make(const GemmCase *cs, uint64_t seed) {
    const int64_t ar = cs->ta ? cs->k : cs->m, ac = cs->ta ? cs->m : cs->k; /* stored shapes */
    const int64_t br = cs->tb ? cs->n : cs->k, bc = cs->tb ? cs->k : cs->n;
    GemmCaseData d = {.lda = ac + cs->pad, .ldb = bc + cs->pad, .ldc = cs->n + cs->pad};
    d.a = xcalloc((size_t)(ar * d.lda), sizeof(float));
    d.b = xcalloc((size_t)(br * d.ldb), sizeof(float));
    d.c = xcalloc((size_t)(cs->m * d.ldc), sizeof(float));
    d.c0 = xcalloc((size_t)(cs->m * d.ldc), sizeof(float));
    Rng r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < ar * d.lda; i++) d.a[i] = rng_normal(&r);
    for (int64_t i = 0; i < br * d.ldb; i++) d.b[i] = rng_normal(&r);
    for (int64_t i = 0; i < cs->m * d.ldc; i++) d.c0[i] = cs->beta == 0.0f ? NAN : rng_normal(&r);
    memcpy(d.c, d.c0, (size_t)(cs->m * d.ldc) * sizeof(float));
    return d;
}

/* Element (i, l) of op(A) and (l, j) of op(B). */
static inline float gemm_case_a(const GemmCase *cs, const GemmCaseData *d, int64_t i, int64_t l) {
    return cs->ta ? d->a[l * d->lda + i] : d->a[i * d->lda + l];
}
static inline float gemm_case_b(const GemmCase *cs, const GemmCaseData *d, int64_t l, int64_t j) {
    return cs->tb ? d->b[j * d->ldb + l] : d->b[l * d->ldb + j];
}

/* Fails the running test (once) if the kernel wrote into C's row padding. */
static inline void gemm_case_check_padding(const GemmCase *cs, const GemmCaseData *d) {
    for (int64_t i = 0; i < cs->m; i++)
        for (int64_t j = cs->n; j < d->ldc; j++)
            if (memcmp(&d->c[i * d->ldc + j], &d->c0[i * d->ldc + j], sizeof(float)) != 0) {
                test_fail(__FILE__, __LINE__, "write into C's row padding at [%lld,%lld]",
                          (long long)i, (long long)j);
                return;
            }
}

static inline void gemm_case_free(GemmCaseData *d) {
    free(d->a);
    free(d->b);
    free(d->c);
    free(d->c0);
}

/* A GEMM under test: its batched entry and scratch size (gemm_bf16_batched_cpu and
 * gemm_f32_batched_cpu have the same signature), and its name for messages. */
/* Every transpose pair on a 29 x 45 x 51 product through run_case (each kernel's own check
 * against double): assigning, accumulating with alpha 0.5, and alpha -1.5, beta 2 over kc + 1
 * (the second slice of k adds alpha times its partial sum onto the first's store). */
static inline void gemm_case_transposes(void (*run_case)(const GemmCase *, uint64_t), int64_t kc) {
    for (int t = 0; t < 4; t++) {
        GemmCase cs = {29, 45, 51, t & 1, (t >> 1) & 1, 1.0f, 0.0f, 2};
        run_case(&cs, 200 + t);
        cs.alpha = 0.5f;
        cs.beta = 1.0f; /* accumulate */
        run_case(&cs, 300 + t);
        cs.alpha = -1.5f;
        cs.beta = 2.0f;
        cs.k = kc + 1;
        run_case(&cs, 400 + t);
    }
}

typedef struct {
    const char *name;
    size_t (*scratch_bytes)(int64_t batch, bool shared_a, int64_t m, int64_t n, int64_t k);
    void (*batched)(float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
                    int64_t k, bool trans_a, bool trans_b, float alpha, float beta, int64_t lda,
                    int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                    void *scratch, const GemmEpilogue *ep);
} GemmUnderTest;

/* The epilogue (row bias, column bias, ReLU) against the same GEMM without it, then the
 * epilogue written out here: the same float operations in the same order, so bit for bit — and
 * only after the last slice of k (a case with two slices, kc the GEMM's slice length, and
 * beta = 1), with edge tiles, a transposed operand and wide rows whose padding must stay
 * untouched. Then the batched call, A per product and shared (stride 0, packed once), against
 * one call per product: bit for bit too, and nothing written in the gaps between the matrices. */
static inline void gemm_case_check_epilogue_and_batch(const GemmUnderTest *gt, int64_t kc) {
    const GemmCase cases[] = {
        {37, 45, 19, false, false, 1.0f, 0.0f, 3},
        {13, 70, kc + 5, true, false, 0.5f, 1.0f, 0},
        {32, 32, 64, false, true, 1.0f, 0.0f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const GemmCase *cs = &cases[i];
        const int64_t m = cs->m, n = cs->n, k = cs->k;
        const int64_t amat = (cs->ta ? k : m) * ((cs->ta ? m : k) + cs->pad);
        const int64_t bmat = (cs->tb ? n : k) * ((cs->tb ? k : n) + cs->pad);
        const int64_t lda = (cs->ta ? m : k) + cs->pad, ldb = (cs->tb ? k : n) + cs->pad;
        const int64_t ldc = n + cs->pad;
        Tensor *a = test_randn(1000 + i, 1, SHAPE(amat)), *b = test_randn(1010 + i, 1, SHAPE(bmat));
        Tensor *c0 = test_randn(1020 + i, 1, SHAPE(m * ldc));
        Tensor *rb = test_randn(1030 + i, 1, SHAPE(m)), *cb = test_randn(1040 + i, 1, SHAPE(n));
        void *scratch = arena_alloc(tensor_arena(), gt->scratch_bytes(1, true, m, n, k));
        Tensor *plain = TENSOR_F32(m * ldc), *got = TENSOR_F32(m * ldc);
        memcpy(plain->data, c0->data, (size_t)(m * ldc) * sizeof(float));
        gt->batched(tensor_f32(plain), tensor_f32(a), tensor_f32(b), 1, m, n, k, cs->ta, cs->tb,
                    cs->alpha, cs->beta, lda, ldb, ldc, 0, 0, 0, scratch, NULL);
        for (int v = 0; v < 4; v++) { /* row bias + ReLU, column bias, both, both + ReLU */
            const GemmEpilogue ep = {.row_bias = v != 1 ? tensor_f32(rb) : NULL,
                                     .col_bias = v >= 1 ? tensor_f32(cb) : NULL,
                                     .relu = v == 0 || v == 3};
            memcpy(got->data, c0->data, (size_t)(m * ldc) * sizeof(float));
            gt->batched(tensor_f32(got), tensor_f32(a), tensor_f32(b), 1, m, n, k, cs->ta, cs->tb,
                        cs->alpha, cs->beta, lda, ldb, ldc, 0, 0, 0, scratch, &ep);
            Tensor *want = TENSOR_F32(m * ldc);
            for (int64_t r = 0; r < m; r++)
                for (int64_t j = 0; j < ldc; j++) {
                    float x = tensor_f32(plain)[r * ldc + j];
                    if (j < n) {
                        if (ep.row_bias) x = x + ep.row_bias[r];
                        if (ep.col_bias) x = x + ep.col_bias[j];
                        if (ep.relu) x = x > 0.0f ? x : 0.0f;
                    }
                    tensor_f32(want)[r * ldc + j] = x;
                }
            char what[160];
            snprintf(what, sizeof what, "%s epilogue case %zu variant %d", gt->name, i, v);
            EXPECT_CLOSE_N(what, tensor_f32(got), tensor_f32(want), m * ldc, 0, 0);
        }
        for (int shared = 0; shared < 2; shared++) { /* 3 products, gaps between the matrices */
            const int64_t B = 3, sa = shared ? 0 : amat + 7, sb = bmat + 5, sc = m * ldc + 3;
            Tensor *ab = test_randn(1050 + i, 1, SHAPE(shared ? amat : B * sa));
            Tensor *bb = test_randn(1060 + i, 1, SHAPE(B * sb));
            Tensor *cc = test_randn(1070 + i, 1, SHAPE(B * sc));
            const GemmEpilogue ep = {.row_bias = tensor_f32(rb), .col_bias = NULL, .relu = true};
            Tensor *want = TENSOR_F32(B * sc), *gotb = TENSOR_F32(B * sc);
            memcpy(want->data, cc->data, (size_t)(B * sc) * sizeof(float));
            memcpy(gotb->data, cc->data, (size_t)(B * sc) * sizeof(float));
            for (int64_t p = 0; p < B; p++)
                gt->batched(tensor_f32(want) + p * sc, tensor_f32(ab) + p * sa,
                            tensor_f32(bb) + p * sb, 1, m, n, k, cs->ta, cs->tb, cs->alpha,
                            cs->beta, lda, ldb, ldc, 0, 0, 0, scratch, &ep);
            void *all = arena_alloc(tensor_arena(), gt->scratch_bytes(B, shared, m, n, k));
            gt->batched(tensor_f32(gotb), tensor_f32(ab), tensor_f32(bb), B, m, n, k, cs->ta,
                        cs->tb, cs->alpha, cs->beta, lda, ldb, ldc, sa, sb, sc, all, &ep);
            char what[160];
            snprintf(what, sizeof what, "%s batched case %zu, shared A %d", gt->name, i, shared);
            EXPECT_CLOSE_N(what, tensor_f32(gotb), tensor_f32(want), B * sc, 0, 0);
        }
    }
}
