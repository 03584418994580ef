/* gemm.c — CPU GEMM (OpenBLAS or naive) and the two core kernels `accumulate` and `fill`.
 *
 * gemm_cpu computes, for each batch index p,
 *     C_p (M,N) = alpha * op(A_p) @ op(B_p) + beta * C_p
 * with row-major matrices, op(X) = X or X^T, row strides lda/ldb/ldc and batch strides
 * stride_a/b/c in elements (0 = the same matrix for every p). Assigns when beta = 0 (C is not
 * read then), accumulates when beta = 1. */
#include "tensor/ops/gemm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef TRMML_OPENBLAS
#include <cblas.h>
#endif

#include "tensor/kernels_cpu.h"
#include "tensor/tensor.h"

#ifdef TRMML_OPENBLAS
static GemmPath g_path = GEMM_BLAS;
#else
static GemmPath g_path = GEMM_NAIVE;
#endif
static bool g_path_init;

GemmPath gemm_path(void) {
    if (!g_path_init) {
        g_path_init = true;
        const char *env = getenv("TRMML_GEMM");
        if (env && strcmp(env, "naive") == 0) g_path = GEMM_NAIVE;
    }
    return g_path;
}

GemmPath gemm_set_path(GemmPath p) {
    GemmPath prev = gemm_path();
#ifndef TRMML_OPENBLAS
    CHECK(p == GEMM_NAIVE, "this build has no OpenBLAS; only the naive GEMM is available");
#endif
    g_path = p;
    return prev;
}

const char *gemm_backend_name(void) {
#ifdef TRMML_OPENBLAS
    /* The kernel OpenBLAS chose for this CPU (or OPENBLAS_CORETYPE forced): results round
     * differently under each, so `trmml version`, benchmarks and test-matrix name it. */
    static char buf[80];
    if (gemm_path() == GEMM_BLAS) {
        snprintf(buf, sizeof buf, "openblas, core %s", openblas_get_corename());
        return buf;
    }
#endif
    return "naive";
}

void gemm_set_threads(int n) {
#ifdef TRMML_OPENBLAS
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

/* Naive path: each output element is a double-precision dot product (the oracle), summed over
 * l = 0..K-1 in order. Products of two floats are exact in double (24 + 24 significant bits), so
 * the result depends only on that order. When B's rows are contiguous (not transposed), a block
 * of NAIVE_JB outputs of one row is accumulated together, l outermost: the same sums in the same
 * order (the result is bit for bit the element-by-element loop's) with unit-stride loads that
 * vectorise, which makes the oracle fast enough to run the whole suite (make test-matrix). */
#define NAIVE_JB 64
static void gemm_naive(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                       int64_t n, int64_t k, bool ta, bool tb, float alpha, float beta,
                       int64_t lda, int64_t ldb, int64_t ldc, int64_t sa, int64_t sb, int64_t sc) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < batch; p++) {
        for (int64_t i = 0; i < m; i++) {
            const float *A = a + p * sa;
            const float *B = b + p * sb;
            float *C = c + p * sc + i * ldc;
            for (int64_t j0 = 0; j0 < n; j0 += NAIVE_JB) {
                const int64_t nj = n - j0 < NAIVE_JB ? n - j0 : NAIVE_JB;
                double acc[NAIVE_JB] = {0};
                if (!tb) {
                    for (int64_t l = 0; l < k; l++) {
                        const double av = ta ? A[l * lda + i] : A[i * lda + l];
                        const float *Bl = B + l * ldb + j0;
                        for (int64_t jj = 0; jj < nj; jj++) acc[jj] += av * Bl[jj];
                    }
                } else {
                    for (int64_t jj = 0; jj < nj; jj++) {
                        const float *Bj = B + (j0 + jj) * ldb;
                        double s = 0.0;
                        for (int64_t l = 0; l < k; l++)
                            s += (double)(ta ? A[l * lda + i] : A[i * lda + l]) * Bj[l];
                        acc[jj] = s;
                    }
                }
                for (int64_t jj = 0; jj < nj; jj++) {
                    float prev = beta == 0.0f ? 0.0f : beta * C[j0 + jj];
                    C[j0 + jj] = (float)(alpha * acc[jj]) + prev;
                }
            }
        }
    }
}

/* ---- the GEMM clock ------------------------------------------------------------------------ */

static int g_clock_on = -1; /* -1: TRMML_GEMM_CLOCK not read yet */
static uint64_t g_clock_ns;

bool gemm_clock_enabled(void) {
    int on = __atomic_load_n(&g_clock_on, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *e = getenv("TRMML_GEMM_CLOCK");
        on = e && strcmp(e, "1") == 0;
        __atomic_store_n(&g_clock_on, on, __ATOMIC_RELAXED);
    }
    return on;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t gemm_clock_begin(void) { return gemm_clock_enabled() ? now_ns() : 0; }

void gemm_clock_end(uint64_t start) {
    if (start) __atomic_fetch_add(&g_clock_ns, now_ns() - start, __ATOMIC_RELAXED);
}

double gemm_clock_seconds(void) {
    return 1e-9 * (double)__atomic_load_n(&g_clock_ns, __ATOMIC_RELAXED);
}

/* ---- the CPU GEMM ------------------------------------------------------------------------- */

static void gemm_cpu_run(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                         int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha,
                         float beta, int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a,
                         int64_t stride_b, int64_t stride_c) {
    /* c (batch,M,N) a (batch,M,K) or (batch,K,M) b (batch,K,N) or (batch,N,K) */
    if (batch <= 0 || m <= 0 || n <= 0) return;
    CHECK(batch == 1 || stride_c != 0, "gemm: batch %lld with stride_c = 0 would race on C "
          "(only A and B may be shared across the batch)", (long long)batch);
    if (k == 0) { /* empty sum: C = beta * C */
        for (int64_t p = 0; p < batch; p++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    float *C = c + p * stride_c + i * ldc + j;
                    *C = beta == 0.0f ? 0.0f : beta * *C;
                }
        return;
    }
#ifdef TRMML_OPENBLAS
    if (gemm_path() == GEMM_BLAS) {
        /* cblas takes int sizes. */
        CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                  ldc <= INT_MAX,
              "gemm: sizes %lldx%lldx%lld exceed the BLAS int range", (long long)m, (long long)n,
              (long long)k);
        enum CBLAS_TRANSPOSE TA = trans_a ? CblasTrans : CblasNoTrans;
        enum CBLAS_TRANSPOSE TB = trans_b ? CblasTrans : CblasNoTrans;
        /* Many small products (attention heads): one single-threaded BLAS call per thread. */
        int nth = 1;
#ifdef _OPENMP
        nth = omp_get_max_threads();
#endif
        bool small = (double)m * n * k < 262144.0; /* below ~64^3 the BLAS threading does not pay */
        if (batch > 1 && small && nth > 1) {
#pragma omp parallel for schedule(static)
            for (int64_t p = 0; p < batch; p++)
                cblas_sgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, alpha, a + p * stride_a,
                            (int)lda, b + p * stride_b, (int)ldb, beta, c + p * stride_c, (int)ldc);
        } else {
            for (int64_t p = 0; p < batch; p++)
                cblas_sgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, alpha, a + p * stride_a,
                            (int)lda, b + p * stride_b, (int)ldb, beta, c + p * stride_c, (int)ldc);
        }
        return;
    }
#endif
    gemm_naive(c, a, b, batch, m, n, k, trans_a, trans_b, alpha, beta, lda, ldb, ldc, stride_a,
               stride_b, stride_c);
}

void gemm_cpu(float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
              int64_t k, bool trans_a, bool trans_b, float alpha, float beta, int64_t lda,
              int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
    const uint64_t clk = gemm_clock_begin();
    gemm_cpu_run(c, a, b, batch, m, n, k, trans_a, trans_b, alpha, beta, lda, ldb, ldc, stride_a,
                 stride_b, stride_c);
    gemm_clock_end(clk);
}

void accumulate_cpu(float *out, const float *in, int64_t n) {
    /* out (n) += in (n) — accumulates */
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) out[i] += in[i];
}

void fill_cpu(float *out, float v, int64_t n) {
    /* out (n) = v — assigns */
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) out[i] = v;
}
