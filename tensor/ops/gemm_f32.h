/* gemm_f32.h — the project's own float32 GEMM for AVX-512: a packed, cache-blocked FMA
 * micro-kernel whose epilogue (bias, ReLU) is applied as it stores C (docs/ops/gemm_f32.md).
 *
 *     C (M,N) = act((alpha * op(A) @ op(B) + beta * C) + row_bias[i] + col_bias[j])
 *
 * row-major, op(X) = X or X^T, row strides lda/ldb/ldc in elements, as gemm_cpu (gemm.h); the
 * epilogue is gemm_bf16.h's (GemmEpilogue). beta = 0 assigns without reading C.
 *
 * Why it exists beside OpenBLAS: a 1x1 convolution with a bias and a ReLU is a GEMM followed by
 * a pass over its output, and with 64 input or output channels the product does so little work
 * per element of C that writing C, clearing it first (OpenBLAS with beta = 0) and the pass over
 * it cost as much as the multiply-adds. Here C is written once, already with its bias, residual
 * and ReLU. The convolution's 1x1 forward takes it at the avx512 level (conv.c); every other
 * product stays with gemm_cpu.
 *
 * Available at the avx512 ISA level only (tensor/isa.h): gemm_f32_available(); calling it
 * otherwise is a CHECK failure. $TRMML_GEMM_F32=off (or TRMML_GEMM=naive) keeps the 1x1
 * convolutions on gemm_cpu, for comparisons. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/ops/gemm_bf16.h" /* GemmEpilogue */

/* Whether the avx512 level is chosen, gemm_cpu is OpenBLAS (not the naive oracle) and
 * $TRMML_GEMM_F32 is not "off". */
bool gemm_f32_available(void);
/* Switch it on or off (tests, benchmarks; as $TRMML_GEMM_F32); returns the previous setting.
 * Not while kernels run. */
bool gemm_f32_set_enabled(bool on);

/* The blocking in use (from the cache sizes at first use): MR x NR register tile, KC k per slice
 * (an A panel of MR x KC floats stays in L1), NC columns of B per block (KC x NC floats in L2). */
typedef struct {
    int64_t mr, nr, kc, nc;
} GemmF32Blocking;
GemmF32Blocking gemm_f32_blocking(void);

/* `batch` products C_p = op(A_p) op(B_p) as above, matrices stride_a/b/c elements apart
 * (stride_a 0: one A for all, packed once; stride_c may be 0 only for batch 1), then the
 * epilogue ep (NULL: none). Runs on the OpenMP threads. Scratch:
 * gemm_f32_batched_scratch_bytes(batch, stride_a == 0, m, n, k) bytes (the caller owns it; its
 * size depends on omp_get_max_threads(), which must not change in between). */
size_t gemm_f32_batched_scratch_bytes(int64_t batch, bool shared_a, int64_t m, int64_t n,
                                      int64_t k);
void gemm_f32_batched_cpu(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                          int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha,
                          float beta, int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a,
                          int64_t stride_b, int64_t stride_c, void *scratch,
                          const GemmEpilogue *ep);

/* The same product with op(A) packed beforehand, once for many products (a Winograd
 * convolution's transformed weights U[xi], shared by every block of tiles), each product then on
 * the calling thread alone (inside the caller's parallel region):
 *   gemm_f32_pack_a: ap (gemm_f32_packed_a_floats(m, k) floats) = op(A) in the micro-kernel's
 *     panels, a (M,K) or (K,M) when trans_a — assigns, on the calling thread;
 *   gemm_f32_packed_single: C (M,N) = act(alpha * A @ op(B) + beta * C + biases) with the packed
 *     A, b (K,N) or (N,K) when trans_b, b_scratch the thread's own
 *     gemm_f32_b_scratch_floats(n, k) floats — assigns (beta = 0) or accumulates. */
int64_t gemm_f32_packed_a_floats(int64_t m, int64_t k);
void gemm_f32_pack_a(float *ap, const float *a, int64_t m, int64_t k, bool trans_a, int64_t lda);
/* One panel at a time, for a caller that makes A's rows in panels (GemmF32Blocking.mr rows):
 * panel q of ap (as gemm_f32_pack_a(ap, a, m, k, false, lda) would write it) from `rows`, which
 * points at row q * mr of A (M,K), rows lda apart — assigns that panel only. */
void gemm_f32_pack_a_panel(float *ap, const float *rows, int64_t m, int64_t k, int64_t q,
                           int64_t lda);
int64_t gemm_f32_b_scratch_floats(int64_t n, int64_t k);
void gemm_f32_packed_single(float *c, const float *ap, const float *b, int64_t m, int64_t n,
                            int64_t k, bool trans_b, float alpha, float beta, int64_t ldb,
                            int64_t ldc, float *b_scratch, const GemmEpilogue *ep);
