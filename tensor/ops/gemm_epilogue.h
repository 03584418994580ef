/* gemm_epilogue.h — how the project's own GEMMs (gemm_bf16.c, gemm_f32.c) store a row of their
 * register tile: alpha, beta and the epilogue (GemmEpilogue, gemm_bf16.h), with AVX-512 masks at
 * the right edge; and their empty sum (k = 0). Included by those two files only; store_c_row is
 * compiled for AVX-512 wherever it is inlined. */
#pragma once
#include <immintrin.h>
#include <stdint.h>

#include "tensor/error.h"
#include "tensor/ops/gemm_bf16.h"

/* Row ci of C (its first nr <= NR columns) gets
 * alpha (t0 | t1) + beta ci (beta 0: ci is not read, so NaN in C does not leak in), then, when
 * ep is not NULL (the last slice of k), + rowb (the row's bias, ep->row_bias given), + colb[j]
 * (colb: ep->col_bias at the tile's first column) and the ReLU (ep->relu; max(x, 0) maps NaN to
 * 0, as the ReLU op), in that order. */
static inline __attribute__((always_inline, target("arch=x86-64-v4"))) void
store_c_row(float *ci, __m512 t0, __m512 t1, int64_t nr, float alpha, float beta,
            const GemmEpilogue *ep, float rowb, const float *colb) {
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff
                         : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1)
                                   : (__mmask16)0;
    if (alpha != 1.0f) {
        const __m512 va = _mm512_set1_ps(alpha);
        t0 = _mm512_mul_ps(va, t0);
        t1 = _mm512_mul_ps(va, t1);
    }
    if (beta != 0.0f) {
        __m512 c0 = _mm512_maskz_loadu_ps(m0, ci), c1 = _mm512_maskz_loadu_ps(m1, ci + 16);
        if (beta != 1.0f) {
            const __m512 vb = _mm512_set1_ps(beta);
            c0 = _mm512_mul_ps(vb, c0);
            c1 = _mm512_mul_ps(vb, c1);
        }
        t0 = _mm512_add_ps(t0, c0);
        t1 = _mm512_add_ps(t1, c1);
    }
    if (ep) {
        if (ep->row_bias) {
            const __m512 vr = _mm512_set1_ps(rowb);
            t0 = _mm512_add_ps(t0, vr);
            t1 = _mm512_add_ps(t1, vr);
        }
        if (ep->col_bias) {
            t0 = _mm512_add_ps(t0, _mm512_maskz_loadu_ps(m0, colb));
            t1 = _mm512_add_ps(t1, _mm512_maskz_loadu_ps(m1, colb + 16));
        }
        if (ep->relu) {
            t0 = _mm512_max_ps(t0, _mm512_setzero_ps());
            t1 = _mm512_max_ps(t1, _mm512_setzero_ps());
        }
    }
    _mm512_mask_storeu_ps(ci, m0, t0);
    _mm512_mask_storeu_ps(ci + 16, m1, t1);
}

/* The empty sum (k = 0) of `batch` products: C = act(beta * C + row_bias[i] + col_bias[j]),
 * matrices stride_c apart (beta = 0: C is not read) — assigns. */
static inline void gemm_empty_sum(float *c, int64_t batch, int64_t m, int64_t n, float beta,
                                  int64_t ldc, int64_t stride_c, const GemmEpilogue *ep) {
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                float *cij = c + p * stride_c + i * ldc + j;
                float v = beta == 0.0f ? 0.0f : beta * *cij;
                if (ep && ep->row_bias) v += ep->row_bias[i];
                if (ep && ep->col_bias) v += ep->col_bias[j];
                if (ep && ep->relu) v = v > 0.0f ? v : 0.0f;
                *cij = v;
            }
}

/* What both own GEMMs check and do before any packing (`name` for messages): nothing for an
 * empty C; a batch may not share one C; K = 0 is the empty sum; a product needs its scratch.
 * Returns true when the products are left to run. */
static inline bool gemm_own_prologue(const char *name, float *c, int64_t batch, int64_t m,
                                     int64_t n, int64_t k, float beta, int64_t ldc,
                                     int64_t stride_c, const void *scratch,
                                     const GemmEpilogue *ep) {
    if (batch <= 0 || m <= 0 || n <= 0) return false;
    CHECK(batch == 1 || stride_c != 0, "%s: batch %lld with stride_c = 0 would race on C", name,
          (long long)batch);
    if (k <= 0) {
        gemm_empty_sum(c, batch, m, n, beta, ldc, stride_c, ep);
        return false;
    }
    CHECK(scratch != NULL, "%s: no scratch for %lld x %lldx%lldx%lld", name, (long long)batch,
          (long long)m, (long long)n, (long long)k);
    return true;
}
