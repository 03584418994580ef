/* tolerance.h — default comparison tolerances (STYLE.md §6). A check passes when
 * |got - ref| <= atol + rtol * |ref| for every element. Loosening one needs a comment beside it
 * with the measured max error and the reason. */
#pragma once
#include <math.h>

#define TOL_ELEMENTWISE_ATOL 1e-6
#define TOL_ELEMENTWISE_RTOL 1e-5
#define TOL_REDUCE_ATOL 1e-5     /* reductions, norms, softmax, losses */
#define TOL_REDUCE_RTOL 1e-4
#define TOL_MATMUL_ATOL 1e-4     /* matmul, conv, attention: atol scaled by sqrt(K/64) */
#define TOL_MATMUL_RTOL 1e-3
#define TOL_GRADCHECK_ATOL 1e-3
#define TOL_GRADCHECK_RTOL 1e-2
#define TOL_MODEL_ATOL 1e-3
#define TOL_MODEL_RTOL 1e-3

/* atol for a sum of K products. */
static inline double tol_matmul_atol(long long k) {
    double s = sqrt((double)k / 64.0);
    return TOL_MATMUL_ATOL * (s > 1.0 ? s : 1.0);
}

/* Two float32 computations of one quantity that sum in different orders (other GEMM shapes,
 * chunks, micro-batches, threads, BLAS kernels) differ by at most the sum of their errors. A
 * K-long sum in any order errs by at most gamma_K = K*u/(1 - K*u) ~ K*u of the sum of the
 * magnitudes of its terms (u = 2^-24; Higham, "Accuracy and Stability of Numerical Algorithms",
 * Thm 3.1 and §3.1), and to first order the errors of a chain of `stages` such sums add, each
 * relative to the magnitude it carries. So the two differ by at most 2 * stages * K * u of that
 * magnitude. Where the terms cancel (gradients summed over classes, tokens and images), the
 * tests measure it by the largest value of the quantity (or of its module): a normwise estimate
 * of the terms' magnitude, not Higham's bound itself. docs/testing.md, "Two float32 computations
 * of one quantity". */
#define TOL_UNIT_ROUNDOFF 5.9604644775390625e-8 /* 2^-24 */
static inline double tol_chain_normwise(int stages, long long k) {
    return 2.0 * (double)stages * (double)k * TOL_UNIT_ROUNDOFF;
}
