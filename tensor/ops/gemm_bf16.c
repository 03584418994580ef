/* gemm_bf16.c — C = alpha * op(A) op(B) + beta * C with A and B rounded to bf16 and float32
 * accumulation, on AVX512-BF16 (tensor/ops/gemm_bf16.h; docs/ops/gemm_bf16.md, which walks
 * through the design for a reader learning how a fast GEMM is built).
 *
 * Structure (Goto & van de Geijn, "Anatomy of high-performance matrix multiplication", 2008):
 *     for each KC-slice of k:          pack A's columns of the slice (all M rows) into MR-row
 *                                       panels, as bf16 pairs
 *       for each NC-block of columns:  pack B's (KC, NC) block into NR-column panels
 *         for each MC-block of rows, for each NR panel, for each MR panel of the block:
 *             micro-kernel: the (MR, NR) tile of C += A panel (MR, KC) @ B panel (KC, NR)
 * The micro-kernel keeps its MR x NR tile (12 x 32 floats = 24 zmm registers) in registers for
 * the whole slice; each step over k reads one pair of k (two bf16 per 32-bit lane) of 32 columns
 * of B (two zmm loads) and of each of the 12 rows of A (a 32-bit broadcast), and issues 24
 * vdpbf16ps, each 16 lanes x 2 products. Packing rounds each float to bf16 once, pads the edges
 * of M, N and an odd K with zeros (which add exact zeros to the sums), and lays the panels out in
 * the order the micro-kernel reads them, so that its loads are sequential.
 *
 * Rounding: each product of two bf16 is exact in float32 (8 + 8 significant bits); vdpbf16ps adds
 * the products of a pair one after the other to the running float32 sum, and later KC-slices add
 * their partial sums to C, so every entry is a float32 sum of K exact products in some order:
 * its error is at most gamma_K * sum_l |a_il b_lj| (Higham, Thm 3.1), plus the roundings of alpha
 * and beta. */
#include "tensor/ops/gemm_bf16.h"

#include <immintrin.h>
#include <string.h>
#include <unistd.h>

#include "tensor/isa.h"

#define MR 12 /* rows of the register tile: 12 broadcasts of A per pair of k */
#define NR 32 /* columns: two zmm of 16 float32 accumulators each */

/* The code of this file is compiled for AVX-512 with BF16; it runs only when
 * gemm_bf16_available() says the CPU has both. */
#define BF16_TARGET __attribute__((target("arch=x86-64-v4,avx512bf16,prefer-vector-width=512")))

bool gemm_bf16_available(void) {
    return isa_has_avx512_bf16() && isa_level() == ISA_AVX512;
}

Status gemm_bf16_check(void) {
    if (gemm_bf16_available()) return STATUS_OK;
    if (!isa_has_avx512_bf16())
        return error_set(STATUS_ERR_DEVICE,
                         "bf16 needs AVX512-BF16 (vdpbf16ps), which this CPU lacks (cpu isa: %s); "
                         "use fp32",
                         isa_name());
    return error_set(STATUS_ERR_DEVICE,
                     "bf16 needs the avx512 ISA level, but TRMML_ISA chose %s; unset TRMML_ISA "
                     "or use fp32",
                     isa_level_name(isa_level()));
}

/* ---- Blocking from the cache sizes --------------------------------------------------------
 * KC: one B micro-panel (KC x NR bf16 = 64*KC bytes) takes at most half of L1d, so it stays
 *     there while the micro-kernel sweeps the MR panels of A past it (the A panel, 24*KC bytes,
 *     streams through the other half).
 * MC: one MC x KC block of packed A takes at most half of L2, so it stays there across the NR
 *     panels of a block of B.
 * NC: one KC x NC block of packed B takes at most a quarter of L3 (shared with other cores),
 *     at most 4096 columns. */
static GemmBf16Blocking g_blocking;

static int64_t cache_bytes(int name, int64_t fallback) {
    long v = sysconf(name);
    return v > 0 ? (int64_t)v : fallback;
}

GemmBf16Blocking gemm_bf16_blocking(void) {
    if (g_blocking.kc == 0) {
        GemmBf16Blocking b = {.mr = MR, .nr = NR};
        const int64_t l1 = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
        const int64_t l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
        const int64_t l3 = cache_bytes(_SC_LEVEL3_CACHE_SIZE, 8 << 20);
        b.kc = l1 / 2 / (NR * 2) / 16 * 16; /* a multiple of 16: pairs never straddle slices */
        if (b.kc < 64) b.kc = 64;
        if (b.kc > 1024) b.kc = 1024;
        b.mc = l2 / 2 / (b.kc * 2) / MR * MR;
        if (b.mc < MR) b.mc = MR;
        b.nc = l3 / 4 / (b.kc * 2) / NR * NR;
        if (b.nc < NR) b.nc = NR;
        if (b.nc > 4096) b.nc = 4096;
        g_blocking = b; /* the same value from any thread that races here */
    }
    return g_blocking;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Pairs of k in the largest slice, and the panel counts the scratch is sized for. */
static void scratch_layout(int64_t m, int64_t n, int64_t k, int64_t *a_words, int64_t *b_words) {
    const GemmBf16Blocking bl = gemm_bf16_blocking();
    const int64_t kp = (min64(bl.kc, k) + 1) / 2;
    *a_words = ceil_div(m, MR) * MR * kp;
    *b_words = ceil_div(min64(bl.nc, n), NR) * NR * kp;
}

size_t gemm_bf16_scratch_bytes(int64_t m, int64_t n, int64_t k) {
    int64_t aw, bw;
    scratch_layout(m, n, k, &aw, &bw);
    return (size_t)(aw + bw) * sizeof(uint32_t) + 128;
}

/* Two bf16 in one 32-bit word: element k of the pair in the low half, k + 1 in the high half,
 * the order vdpbf16ps pairs them in (lane i multiplies elements 2i and 2i+1 of both sources). */
static inline uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)bf16_from_f32(lo) | (uint32_t)bf16_from_f32(hi) << 16;
}

/* Panel q of A's slice: rows [q*MR, q*MR + MR) x columns [k0, k0 + kc) of op(A), element (i, l)
 * at a[i*rs + l*cs], into ap (kp, MR) words — assigns; rows past m and the column past an odd
 * kc are zeros. */
BF16_TARGET static void pack_a_panel(uint32_t *restrict ap, const float *restrict a, int64_t rs,
                                     int64_t cs, int64_t m, int64_t q, int64_t k0, int64_t kc) {
    const int64_t kp = (kc + 1) / 2, i0 = q * MR;
    for (int64_t i = 0; i < MR; i++) {
        if (i0 + i >= m) {
            for (int64_t p = 0; p < kp; p++) ap[p * MR + i] = 0;
            continue;
        }
        const float *row = a + (i0 + i) * rs + k0 * cs;
        for (int64_t p = 0; p < kc / 2; p++)
            ap[p * MR + i] = bf16_pair(row[2 * p * cs], row[(2 * p + 1) * cs]);
        if (kc % 2) ap[(kp - 1) * MR + i] = bf16_pair(row[(kc - 1) * cs], 0.0f);
    }
}

/* Panel r of B's block: rows [k0, k0 + kc) x columns [j0 + r*NR, j0 + r*NR + NR) of op(B),
 * element (l, j) at b[l*rs + j*cs], into bp (kp, NR) words — assigns; zeros past n and kc. */
BF16_TARGET static void pack_b_panel(uint32_t *restrict bp, const float *restrict b, int64_t rs,
                                     int64_t cs, int64_t n, int64_t j0, int64_t r, int64_t k0,
                                     int64_t kc) {
    const int64_t kp = (kc + 1) / 2, jb = j0 + r * NR;
    const int64_t w = min64(NR, n - jb); /* valid columns */
    for (int64_t p = 0; p < kp; p++) {
        const float *lo = b + (k0 + 2 * p) * rs + jb * cs;
        const float *hi = lo + rs;
        uint32_t *dst = bp + p * NR;
        if (2 * p + 1 < kc) {
            if (cs == 1)
                for (int64_t j = 0; j < w; j++) dst[j] = bf16_pair(lo[j], hi[j]);
            else
                for (int64_t j = 0; j < w; j++) dst[j] = bf16_pair(lo[j * cs], hi[j * cs]);
        } else {
            for (int64_t j = 0; j < w; j++) dst[j] = bf16_pair(lo[j * cs], 0.0f);
        }
        for (int64_t j = w; j < NR; j++) dst[j] = 0;
    }
}

/* The micro-kernel: tile (mr, nr) of C, rows ldc apart, = alpha * (A panel (kp, MR) @
 * B panel (kp, NR)) + beta * tile — assigns (beta = 0: C not read) or accumulates. The 24
 * accumulators live in zmm registers for the whole loop over k. */
BF16_TARGET static void micro_kernel(int64_t kp, const uint32_t *restrict ap,
                                     const uint32_t *restrict bp, float *c, int64_t ldc, int64_t mr,
                                     int64_t nr, float alpha, float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            /* the pair (a[i][2p], a[i][2p+1]) in all 16 lanes */
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)ap[p * MR + i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
    }
    /* Column masks of the two vectors for a tile narrower than NR. */
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff
                         : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1)
                                   : (__mmask16)0;
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        float *ci = c + i * ldc;
        __m512 t0 = alpha == 1.0f ? acc[i][0] : _mm512_mul_ps(va, acc[i][0]);
        __m512 t1 = alpha == 1.0f ? acc[i][1] : _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            __m512 c0 = _mm512_maskz_loadu_ps(m0, ci), c1 = _mm512_maskz_loadu_ps(m1, ci + 16);
            if (beta != 1.0f) {
                c0 = _mm512_mul_ps(vb, c0);
                c1 = _mm512_mul_ps(vb, c1);
            }
            t0 = _mm512_add_ps(t0, c0);
            t1 = _mm512_add_ps(t1, c1);
        }
        _mm512_mask_storeu_ps(ci, m0, t0);
        _mm512_mask_storeu_ps(ci + 16, m1, t1);
    }
}

void gemm_bf16_cpu(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                   bool trans_a, bool trans_b, float alpha, float beta, int64_t lda, int64_t ldb,
                   int64_t ldc, void *scratch) {
    /* c (M,N), a (M,K) or (K,M) when trans_a, b (K,N) or (N,K) when trans_b, scratch of
     * gemm_bf16_scratch_bytes(m, n, k) bytes — assigns (beta = 0) or accumulates */
    CHECK(gemm_bf16_available(), "gemm_bf16: %s",
          (gemm_bf16_check(), error_last()));
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* empty sum: C = beta * C */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    CHECK(scratch != NULL, "gemm_bf16: no scratch for %lldx%lldx%lld", (long long)m,
          (long long)n, (long long)k);
    const GemmBf16Blocking bl = gemm_bf16_blocking();
    int64_t aw, bw;
    scratch_layout(m, n, k, &aw, &bw);
    uint32_t *ap = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *bp = (uint32_t *)(((uintptr_t)(ap + aw) + 63) & ~(uintptr_t)63);
    /* element strides of op(A) (i, l) and op(B) (l, j) */
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    const int64_t brs = trans_b ? 1 : ldb, bcs = trans_b ? ldb : 1;
    const int64_t a_panels = ceil_div(m, MR), m_blocks = ceil_div(m, bl.mc);
#pragma omp parallel
    for (int64_t k0 = 0; k0 < k; k0 += bl.kc) {
        const int64_t kc = min64(bl.kc, k - k0), kp = (kc + 1) / 2;
        /* The first slice applies beta; later slices add their partial sums to C. */
        const float beta_k = k0 == 0 ? beta : 1.0f;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < a_panels; q++)
            pack_a_panel(ap + q * kp * MR, a, ars, acs, m, q, k0, kc);
        for (int64_t j0 = 0; j0 < n; j0 += bl.nc) {
            const int64_t nc = min64(bl.nc, n - j0), b_panels = ceil_div(nc, NR);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < b_panels; r++)
                pack_b_panel(bp + r * kp * NR, b, brs, bcs, n, j0, r, k0, kc);
            /* Each thread takes whole NR panels of B for one MC block of A (in L2), and
             * sweeps the block's MR panels past the B panel (in L1). */
#pragma omp for collapse(2) schedule(static)
            for (int64_t ib = 0; ib < m_blocks; ib++)
                for (int64_t r = 0; r < b_panels; r++) {
                    const int64_t jb = j0 + r * NR, nr = min64(NR, n - jb);
                    const int64_t q_end = min64(ceil_div((ib + 1) * bl.mc, MR), a_panels);
                    for (int64_t q = ib * bl.mc / MR; q < q_end; q++) {
                        const int64_t i0 = q * MR;
                        micro_kernel(kp, ap + q * kp * MR, bp + r * kp * NR, c + i0 * ldc + jb,
                                     ldc, min64(MR, m - i0), nr, alpha, beta_k);
                    }
                }
        }
    }
}
