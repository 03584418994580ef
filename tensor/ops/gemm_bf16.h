/* gemm_bf16.h — the project's own bf16 GEMM: a packed, cache-blocked AVX512-BF16 micro-kernel
 * (docs/ops/gemm_bf16.md explains how it is built).
 *
 *     C (M,N) = alpha * op(A) @ op(B) + beta * C
 *
 * row-major, op(X) = X or X^T, row strides lda/ldb/ldc in elements, as gemm_cpu (gemm.h). The
 * entries of A and B are rounded to bfloat16 (round to nearest, ties to even) when packed;
 * products of two bf16 are exact in float32 and are summed in float32 (vdpbf16ps). Like the
 * instruction, bf16 inputs below 2^-126 in magnitude (denormals) count as zero and denormal
 * sums are flushed to zero. beta = 0 assigns without reading C; beta = 1 accumulates.
 *
 * Without AVX512-BF16 (or with $TRMML_ISA below avx512) the bf16 GEMM is refused: there is no
 * slower fallback, because bf16 exists here only to be faster than the fp32 GEMM, which every
 * CPU runs. Callers ask gemm_bf16_available() first; calling the kernel anyway is a CHECK
 * failure. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

/* Whether this CPU runs the bf16 GEMM (AVX512-BF16, and the chosen ISA level is avx512). */
bool gemm_bf16_available(void);
/* STATUS_OK, or STATUS_ERR_DEVICE with a message (error_last) saying what the CPU lacks. */
Status gemm_bf16_check(void);

/* The micro-kernel: AVX512-BF16 (vdpbf16ps on zmm registers) on every CPU that runs the bf16
 * GEMM, or AMX (tdpbf16ps on tile registers) where the CPU has AMX-BF16 and Linux grants the
 * tile state; AMX is the default where usable. Both give results within the same bound. */
typedef enum { GEMM_BF16_AVX512 = 0, GEMM_BF16_AMX = 1 } GemmBf16Kernel;
GemmBf16Kernel gemm_bf16_kernel(void);
bool gemm_bf16_kernel_available(GemmBf16Kernel k);
/* Force a kernel (tests, benchmarks); returns the previous one. CHECK: it must be available. */
GemmBf16Kernel gemm_bf16_set_kernel(GemmBf16Kernel k);
const char *gemm_bf16_kernel_name(GemmBf16Kernel k);

/* Bytes of scratch gemm_bf16_cpu needs for these sizes (packed panels of A and B, 64-byte
 * aligned inside). */
size_t gemm_bf16_scratch_bytes(int64_t m, int64_t n, int64_t k);

/* An epilogue applied to each element of C as it is stored after the last k:
 *     C[i][j] = act((alpha * sum + beta * C[i][j]) + row_bias[i] + col_bias[j])
 * in that order, either bias NULL for none, act = ReLU when `relu` (NaN becomes 0, as the ReLU
 * op), the identity otherwise. It saves the pass over C that a separate bias and ReLU would
 * take: a convolution's bias per output channel (row), a linear layer's per output (column). */
typedef struct {
    const float *row_bias; /* (M) or NULL */
    const float *col_bias; /* (N) or NULL */
    bool relu;
} GemmEpilogue;

/* C = alpha * op(A) op(B) + beta * C as above, then the epilogue `ep` (NULL: none); scratch
 * holds gemm_bf16_scratch_bytes(m, n, k) bytes (the caller owns it). Runs on the OpenMP threads.
 * Assigns (beta = 0) or accumulates. */
void gemm_bf16_cpu(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                   bool trans_a, bool trans_b, float alpha, float beta, int64_t lda, int64_t ldb,
                   int64_t ldc, void *scratch, const GemmEpilogue *ep);

/* `batch` products of the same shape at once, C_p = alpha op(A_p) op(B_p) + beta C_p then the
 * epilogue, matrices stride_a/b/c elements apart (stride_a 0: one A shared by all, packed once;
 * stride_c may be 0 only for batch 1). One parallel region and three barriers per slice of k
 * for all of them, instead of as many per product: the 16 products of a Winograd block, the
 * images of a 1x1 convolution with its weights packed once. Scratch:
 * gemm_bf16_batched_scratch_bytes(batch, stride_a == 0, m, n, k) bytes. */
size_t gemm_bf16_batched_scratch_bytes(int64_t batch, bool shared_a, int64_t m, int64_t n,
                                       int64_t k);
void gemm_bf16_batched_cpu(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                           int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha,
                           float beta, int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a,
                           int64_t stride_b, int64_t stride_c, void *scratch,
                           const GemmEpilogue *ep);

/* ---- Precision of the frozen towers' products -------------------------------------------
 * PRECISION_BF16 routes the forward products of conv2d and linear whose weight is frozen
 * (requires_grad false) through this GEMM: im2col (and 1x1) convolutions and x W^T, inputs
 * rounded to bf16, sums in float32. Everything else stays fp32: products with a learnable weight,
 * every backward product, the other ops. On the CPU only: a bf16 op on another device is a CHECK
 * failure, never a silent fp32. The weights are rounded as they are packed, on every call: the
 * packing of an (O, K) weight costs 1/T of the T-column product it feeds (docs/ops/gemm_bf16.md).
 * Default PRECISION_FP32. */
typedef enum { PRECISION_FP32 = 0, PRECISION_BF16 = 1 } Precision;
/* Set the precision; STATUS_ERR_DEVICE (message via error_last) when the CPU cannot run bf16
 * (gemm_bf16_check), leaving the precision unchanged. */
Status tensor_set_precision(Precision p);
Precision tensor_precision(void);
const char *precision_name(Precision p); /* "fp32", "bf16" */
/* Whether a forward product with this weight takes the bf16 path (the setting is bf16 and the
 * weight is frozen); CHECKs that the device is the CPU when it does. */
struct Tensor;
bool tensor_bf16_forward(const struct Tensor *weight);

/* The conversions float <-> bfloat16 are tensor/convert.h's f32_to_bf16 and bf16_to_f32. */

/* The blocking in use (from the cache sizes at first use; docs/ops/gemm_bf16.md). */
typedef struct {
    int64_t mr, nr, kc, mc, nc;
    int64_t ksub; /* AMX: pairs of k per chunk whose B stays in L1 (0 for AVX512-BF16) */
} GemmBf16Blocking;
GemmBf16Blocking gemm_bf16_blocking(void);
