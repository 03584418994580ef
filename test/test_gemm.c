/* test_gemm.c — the core gemm kernel (tensor/ops/gemm.c) tested directly, on every CPU path:
 * alpha/beta semantics (beta = 0 must not read C), all four transpose combinations, row strides
 * wider than the matrices, batch strides with gaps and 0 (shared operand), empty sums (K = 0),
 * and OpenBLAS against the naive double-precision oracle on random inputs.
 * Every result is checked against a double-precision reference written here, independently of
 * the naive path. Buffers come from the guarded test arena, so a write past a matrix is caught;
 * the gaps between rows and batch matrices hold sentinels that must survive unchanged. */
#include <math.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/ops/gemm.h"
#include "test/test.h"

static const GemmPath paths[] = {
    GEMM_NAIVE,
#ifdef TRMML_OPENBLAS
    GEMM_BLAS,
#endif
};
static const char *path_name[] = {"blas", "naive"};
#define NPATHS ((int)(sizeof paths / sizeof paths[0]))

#define SENTINEL 12345.0f

/* Strided batched problem: the sizes and layout one gemm call takes. */
typedef struct {
    int64_t batch, m, n, k;
    bool ta, tb;
    float alpha, beta;
    int64_t lda, ldb, ldc, sa, sb, sc;
} Problem;

/* Stored rows x cols of op(X) for X (rows, cols) transposed or not. */
static int64_t a_rows(const Problem *p) { return p->ta ? p->k : p->m; }
static int64_t b_rows(const Problem *p) { return p->tb ? p->n : p->k; }

/* Elements spanned by `batch` matrices of `rows` rows with row stride ld and batch stride s. */
static int64_t span(int64_t batch, int64_t rows, int64_t ld, int64_t s) {
    if (batch == 0 || rows == 0) return 1;
    return (batch - 1) * s + rows * ld;
}

/* A buffer from the guarded arena, filled with `fill` (gaps keep it). */
static float *buffer(int64_t n, float fill) {
    float *p = arena_alloc(tensor_arena(), (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = fill;
    return p;
}

/* Random values into the rows x cols matrices of a strided buffer; the gaps keep their fill. */
static void fill_matrices(float *x, int64_t batch, int64_t rows, int64_t cols, int64_t ld,
                          int64_t s, Rng *r) {
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) x[p * s + i * ld + j] = rng_normal(r);
}

/* ref = alpha op(A) op(B) + beta C in double at every C element; gaps copied from c. */
static void ref_gemm(float *ref, const float *c, const float *a, const float *b, const Problem *p,
                     int64_t nc) {
    memcpy(ref, c, (size_t)nc * sizeof(float));
    for (int64_t q = 0; q < p->batch; q++)
        for (int64_t i = 0; i < p->m; i++)
            for (int64_t j = 0; j < p->n; j++) {
                double acc = 0;
                for (int64_t l = 0; l < p->k; l++) {
                    const float *A = a + q * p->sa, *B = b + q * p->sb;
                    double av = p->ta ? A[l * p->lda + i] : A[i * p->lda + l];
                    double bv = p->tb ? B[j * p->ldb + l] : B[l * p->ldb + j];
                    acc += av * bv;
                }
                float *r = &ref[q * p->sc + i * p->ldc + j];
                *r = (float)(p->alpha * acc + (p->beta == 0.0f ? 0.0 : (double)p->beta * *r));
            }
}

static void run_gemm(float *c, const float *a, const float *b, const Problem *p) {
    KERNEL_RUN(DEVICE_CPU, gemm, c, a, b, p->batch, p->m, p->n, p->k, p->ta, p->tb, p->alpha,
                                  p->beta, p->lda, p->ldb, p->ldc, p->sa, p->sb, p->sc);
}

/* Run problem `p` on every path and compare with the reference. C starts as random values, or
 * NaN when beta = 0 (which must not read it); every gap holds a sentinel (NaN in A and B, so a
 * read of a gap poisons the result; SENTINEL in C, which must be left as it is). */
static void check_problem(const char *what, const Problem *p, uint64_t seed) {
    int64_t arow = a_rows(p), acol = p->ta ? p->m : p->k;
    int64_t brow = b_rows(p), bcol = p->tb ? p->k : p->n;
    int64_t na = span(p->sa ? p->batch : 1, arow, p->lda, p->sa);
    int64_t nb = span(p->sb ? p->batch : 1, brow, p->ldb, p->sb);
    int64_t nc = span(p->batch, p->m, p->ldc, p->sc);
    Rng r;
    rng_seed(&r, seed);
    float *a = buffer(na, NAN), *b = buffer(nb, NAN);
    fill_matrices(a, p->sa ? p->batch : 1, arow, acol, p->lda, p->sa, &r);
    fill_matrices(b, p->sb ? p->batch : 1, brow, bcol, p->ldb, p->sb, &r);
    float *c0 = buffer(nc, SENTINEL);
    if (p->beta == 0.0f) {
        float *nan = buffer(nc, NAN);
        for (int64_t q = 0; q < p->batch; q++)
            for (int64_t i = 0; i < p->m; i++)
                memcpy(&c0[q * p->sc + i * p->ldc], nan, (size_t)p->n * sizeof(float));
    } else {
        fill_matrices(c0, p->batch, p->m, p->n, p->ldc, p->sc, &r);
    }
    float *ref = buffer(nc, 0), *c = buffer(nc, 0);
    ref_gemm(ref, c0, a, b, p, nc);
    for (int pi = 0; pi < NPATHS; pi++) {
        GemmPath prev = gemm_set_path(paths[pi]);
        memcpy(c, c0, (size_t)nc * sizeof(float));
        run_gemm(c, a, b, p);
        gemm_set_path(prev);
        char label[200];
        snprintf(label, sizeof label,
                 "%s [%s] batch %lld m %lld n %lld k %lld %c%c alpha %g beta %g",
                 what, path_name[paths[pi]], (long long)p->batch, (long long)p->m,
                 (long long)p->n, (long long)p->k, p->ta ? 't' : 'n', p->tb ? 't' : 'n',
                 p->alpha, p->beta);
        /* Gaps hold SENTINEL in both, so the same check proves they were not written. */
        EXPECT_CLOSE_N(label, c, ref, nc, tol_matmul_atol(p->k), TOL_MATMUL_RTOL);
        /* The oracle is exact: with beta = 0 the naive path is the reference's double sum in
         * order l = 0..K-1 rounded once, bit for bit, whatever its loop blocking. */
        if (paths[pi] == GEMM_NAIVE && p->beta == 0.0f)
            EXPECT(memcmp(c, ref, (size_t)nc * sizeof(float)) == 0,
                   "%s: the naive path is not the in-order double sum bit for bit", label);
    }
}

/* A dense problem: row strides equal to the widths, batch strides equal to the matrix sizes. */
static Problem dense(int64_t batch, int64_t m, int64_t n, int64_t k, bool ta, bool tb, float alpha,
                     float beta) {
    Problem p = {batch, m, n, k, ta, tb, alpha, beta, 0, 0, n, 0, 0, m * n};
    p.lda = ta ? m : k;
    p.ldb = tb ? k : n;
    p.sa = m * k;
    p.sb = k * n;
    return p;
}

TEST(matmul_gemm_alpha_beta) {
    static const float ab[][2] = {{1, 0}, {0.5f, 0}, {1, 1}, {-2, 0.25f}, {0, 0.5f}, {0, 0}};
    for (int t = 0; t < 4; t++)
        for (size_t s = 0; s < sizeof ab / sizeof ab[0]; s++) {
            Problem p = dense(1, 5, 7, 3, t & 1, t & 2, ab[s][0], ab[s][1]);
            check_problem("alpha/beta", &p, 10 + s);
        }
}

TEST(matmul_gemm_wide_rows) {
    /* N = 150 with a row stride wider than it: the naive path's blocks of 64 outputs (64, 64,
     * 22), each transpose combination, exact against the reference (check_problem). */
    for (int t = 0; t < 4; t++) {
        Problem p = dense(2, 3, 150, 37, t & 1, t & 2, 1, 0);
        p.ldc = 153;
        p.sc = 3 * 153 + 4;
        check_problem("wide", &p, 60 + t);
    }
}

TEST(matmul_gemm_row_and_batch_strides) {
    /* Row strides wider than the rows (a sub-block of a larger matrix, e.g. one attention head
     * inside the (T, 3C) qkv projection) and batch strides with gaps between the matrices. */
    for (int t = 0; t < 4; t++)
        for (int beta = 0; beta < 2; beta++) {
            bool ta = t & 1, tb = t & 2;
            int64_t m = 4, n = 6, k = 5;
            Problem p = {3, m, n, k, ta, tb, 1.5f, (float)beta, 0, 0, n + 2, 0, 0, 0};
            p.lda = (ta ? m : k) + 3;
            p.ldb = (tb ? k : n) + 1;
            p.sa = a_rows(&p) * p.lda + 7;
            p.sb = b_rows(&p) * p.ldb + 2;
            p.sc = m * p.ldc + 5;
            check_problem("strided", &p, 20 + t);
        }
}

TEST(matmul_gemm_shared_operand) {
    /* Batch stride 0 for A, for B, and for both: every batch matrix reads the same operand. */
    static const int64_t zero[][2] = {{0, 1}, {1, 0}, {0, 0}};
    for (int t = 0; t < 4; t++)
        for (int z = 0; z < 3; z++) {
            Problem p = dense(4, 3, 5, 7, t & 1, t & 2, 1, z == 2 ? 1.0f : 0.0f);
            if (zero[z][0] == 0) p.sa = 0;
            if (zero[z][1] == 0) p.sb = 0;
            check_problem("shared", &p, 30 + 3 * t + z);
        }
    /* A larger shared B with a batch of small products (the BLAS path's per-batch threads). */
    Problem p = dense(6, 9, 33, 17, false, true, 1, 0);
    p.sb = 0;
    check_problem("shared many", &p, 45);
}

TEST(matmul_gemm_empty) {
    /* K = 0: C = beta C (with beta = 0, C = 0 without reading the NaNs). */
    for (int beta = 0; beta < 2; beta++) {
        Problem p = dense(2, 3, 4, 0, false, false, 1, beta ? 0.5f : 0.0f);
        p.lda = p.ldb = 1; /* no column is read */
        p.ldc = 6;
        p.sc = 3 * 6 + 1;
        check_problem("k=0", &p, 50 + beta);
    }
    /* M = 0, N = 0 or batch = 0: C is not touched. */
    float *c = buffer(4, SENTINEL), *a = buffer(4, 1.0f), *b = buffer(4, 1.0f);
    KERNEL_RUN(DEVICE_CPU, gemm, c, a, b, 1, 0, 2, 2, false, false, 1, 0, 2, 2, 2, 0, 0, 0);
    KERNEL_RUN(DEVICE_CPU, gemm, c, a, b, 1, 2, 0, 2, false, false, 1, 0, 2, 2, 2, 0, 0, 0);
    KERNEL_RUN(DEVICE_CPU, gemm, c, a, b, 0, 2, 2, 2, false, false, 1, 0, 2, 2, 2, 0, 0, 0);
    for (int i = 0; i < 4; i++) EXPECT(c[i] == SENTINEL, "empty gemm wrote C[%d] = %g", i, c[i]);
}

TEST(matmul_gemm_blas_naive_parity) {
#ifndef TRMML_OPENBLAS
    test_skip("build has no OpenBLAS");
#else
    /* Odd sizes, a K long enough to stress the tolerance scaling, and a batched case on the
     * BLAS path's threaded small-product branch. */
    static const int64_t sizes[][4] = {
        {1, 1, 1, 1}, {1, 17, 33, 65}, {1, 64, 96, 200}, {1, 130, 70, 513}, {5, 13, 11, 77}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++) {
            Problem p = dense(sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], t & 1, t & 2, 1,
                              0);
            int64_t na = p.batch * p.m * p.k, nb = p.batch * p.k * p.n, nc = p.batch * p.m * p.n;
            Rng r;
            rng_seed(&r, 60 + 4 * s + t);
            float *a = buffer(na, 0), *b = buffer(nb, 0);
            rng_fill_normal(&r, a, na, 0, 1);
            rng_fill_normal(&r, b, nb, 0, 1);
            float *cb = buffer(nc, NAN), *cn = buffer(nc, NAN);
            GemmPath prev = gemm_set_path(GEMM_BLAS);
            run_gemm(cb, a, b, &p);
            gemm_set_path(GEMM_NAIVE);
            run_gemm(cn, a, b, &p);
            gemm_set_path(prev);
            char label[160];
            snprintf(label, sizeof label, "blas vs naive batch %lld m %lld n %lld k %lld %c%c",
                     (long long)p.batch, (long long)p.m, (long long)p.n, (long long)p.k,
                     p.ta ? 't' : 'n', p.tb ? 't' : 'n');
            EXPECT_CLOSE_N(label, cb, cn, nc, tol_matmul_atol(p.k), TOL_MATMUL_RTOL);
        }
#endif
}
