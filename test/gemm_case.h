/* gemm_case.h — the random products the tests of the project's own GEMMs (test_gemm_bf16.c,
 * test_gemm_f32.c) run: a case's shape, transposes, alpha/beta and row padding, its operands
 * drawn from one seed, the γ_n of the error bounds, and the check that C's row padding stayed
 * untouched. Test-only; static inline, so each test file has its own copy. */
#pragma once
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
