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
 * Where the CPU has AMX (and Linux grants the tile state), a second micro-kernel multiplies tiles
 * instead: a 32 x 32 block of C in four tile registers, tdpbf16ps on 16 x 32 bf16 tiles of A and
 * B, with a longer KC and C kept in L1 between chunks of k (the AMX section below).
 *
 * Rounding: each product of two bf16 is exact in float32 (8 + 8 significant bits); vdpbf16ps and
 * tdpbf16ps add the products of a pair one after the other to the running float32 sum, and later
 * KC-slices add their partial sums to C, so every entry is a float32 sum of K exact products in
 * some order: its error is at most gamma_K * sum_l |a_il b_lj| (Higham, Thm 3.1), plus the
 * roundings of alpha and beta. */
#include "tensor/ops/gemm_bf16.h"
#include "tensor/convert.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tensor/isa.h"
#include "tensor/ops/gemm_epilogue.h"
#include "tensor/ops/gemm.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

#define MR 12 /* rows of the register tile: 12 broadcasts of A per pair of k */
#define NR 32 /* columns: two zmm of 16 float32 accumulators each */
#define AMX_MR 32 /* the AMX kernel's rows: two 16-row tiles */
#define AMX_KP 16 /* pairs of k in one AMX tile row */
#define AMX_MAX_PANELS 4 /* panels of A per AMX block: its C (16 KiB) rides on the stack */

/* The code of this file is compiled for AVX-512 with BF16; it runs only when
 * gemm_bf16_available() says the CPU has both. */
#if defined(__clang__)
#define BF16_TARGET __attribute__((target("arch=x86-64-v4,avx512bf16")))
#else
#define BF16_TARGET __attribute__((target("arch=x86-64-v4,avx512bf16,prefer-vector-width=512")))
#endif

bool gemm_bf16_available(void) {
    return isa_has_avx512_bf16() && isa_level() == ISA_AVX512;
}

/* AMX: the CPU's tile unit (CPUID amx-tile, amx-bf16), usable once Linux grants the process the
 * large tile state (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, Linux 5.16 and later; the
 * permission covers every thread of the process). Asked once. */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
static int g_amx = -1; /* -1: not asked yet */

static bool amx_usable(void) {
    if (g_amx < 0) {
        bool ok = false;
#if defined(__x86_64__) && defined(SYS_arch_prctl)
        ok = isa_has_amx_bf16() &&
             syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#endif
        g_amx = ok;
    }
    return g_amx == 1;
}

static int g_kernel = -1; /* GemmBf16Kernel, or -1: the best available */

GemmBf16Kernel gemm_bf16_kernel(void) {
    if (g_kernel >= 0) return (GemmBf16Kernel)g_kernel;
    return amx_usable() ? GEMM_BF16_AMX : GEMM_BF16_AVX512;
}

bool gemm_bf16_kernel_available(GemmBf16Kernel k) {
    return gemm_bf16_available() && (k == GEMM_BF16_AVX512 || (k == GEMM_BF16_AMX && amx_usable()));
}

GemmBf16Kernel gemm_bf16_set_kernel(GemmBf16Kernel k) {
    CHECK(gemm_bf16_kernel_available(k), "gemm_bf16: kernel %s is not available on this CPU",
          gemm_bf16_kernel_name(k));
    const GemmBf16Kernel prev = gemm_bf16_kernel();
    g_kernel = (int)k;
    return prev;
}

const char *gemm_bf16_kernel_name(GemmBf16Kernel k) {
    return k == GEMM_BF16_AMX ? "amx (tdpbf16ps, 32x32 tiles)" : "avx512-bf16 (vdpbf16ps, 12x32)";
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

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- Blocking from the cache sizes --------------------------------------------------------
 * AVX512-BF16 kernel (12 x 32 register tile):
 *   KC: one B micro-panel (KC x NR bf16 = 64*KC bytes) takes at most half of L1d, so it stays
 *       there while the micro-kernel sweeps the MR panels of A past it (the A panel, 24*KC
 *       bytes, streams through the other half).
 *   MC: one MC x KC block of packed A takes at most half of L2, so it stays there across the NR
 *       panels of a block of B.
 * AMX kernel (32 x 32 tile of C in four tile registers): it multiplies ~10x faster, so updating
 *   C once per KC slice (a load and a store of 32 rows of C, often 32 pages apart) would cost as
 *   much as the products; KC is as long as L2 allows instead: the A and B panels (64*KC bytes
 *   each) take at most a quarter of L2, and MC x KC of A at most half.
 * NC (both): one KC x NC block of packed B takes at most a quarter of L3 (shared with other
 *   cores), at most 4096 columns. */
static GemmBf16Blocking g_blocking[2];

static int64_t cache_bytes(int name, int64_t fallback) {
    long v = sysconf(name);
    return v > 0 ? (int64_t)v : fallback;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static GemmBf16Blocking blocking_for(GemmBf16Kernel kern) {
    if (g_blocking[kern].kc == 0) {
        const int64_t l1 = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
        const int64_t l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
        const int64_t l3 = cache_bytes(_SC_LEVEL3_CACHE_SIZE, 8 << 20);
        const int64_t mr = kern == GEMM_BF16_AMX ? AMX_MR : MR;
        GemmBf16Blocking b = {.mr = mr, .nr = NR};
        /* KC a multiple of 32: pairs never straddle slices, and a slice is whole AMX tiles */
        if (kern == GEMM_BF16_AMX)
            b.kc = clamp64(l2 / 4 / 128 / 32 * 32, 256, 4096);
        else
            b.kc = clamp64(l1 / 2 / (NR * 2) / 32 * 32, 64, 1024);
        b.mc = clamp64(l2 / 2 / (b.kc * 2) / mr * mr, mr, 1 << 20);
        if (kern == GEMM_BF16_AMX) {
            /* C of one block rides in a stack buffer (16 KiB); B's chunk of ksub pairs (128 bytes
             * each) takes at most a quarter of L1d, so both stay there */
            b.mc = clamp64(b.mc, AMX_MR, AMX_MAX_PANELS * AMX_MR);
            b.ksub = clamp64(l1 / 4 / 128 / AMX_KP * AMX_KP, AMX_KP, 1 << 20);
        }
        b.nc = clamp64(l3 / 4 / (b.kc * 2) / NR * NR, NR, 4096);
        g_blocking[kern] = b; /* the same value from any thread that races here */
    }
    return g_blocking[kern];
}

GemmBf16Blocking gemm_bf16_blocking(void) { return blocking_for(gemm_bf16_kernel()); }

/* Words of packed A and B for the largest slice of either kernel. The AMX kernel reads pairs
 * of k in blocks of 16 (one tile row is 16 pairs) and rows of A in panels of 32 (two 16-row
 * tiles); its panels are padded with zeros to those multiples. */
static void scratch_layout(int64_t m, int64_t n, int64_t k, int64_t *a_words, int64_t *b_words) {
    *a_words = *b_words = 0;
    for (int kern = 0; kern < 2; kern++) {
        const GemmBf16Blocking bl = blocking_for((GemmBf16Kernel)kern);
        const int64_t kp = ceil_div((min64(bl.kc, k) + 1) / 2, AMX_KP) * AMX_KP;
        const int64_t aw = ceil_div(m, bl.mr) * bl.mr * (kp + AMX_KP);
        const int64_t bw = ceil_div(min64(bl.nc, n), NR) * NR * kp;
        if (aw > *a_words) *a_words = aw;
        if (bw > *b_words) *b_words = bw;
    }
}

size_t gemm_bf16_scratch_bytes(int64_t m, int64_t n, int64_t k) {
    return gemm_bf16_batched_scratch_bytes(1, true, m, n, k);
}

/* Two bf16 in one 32-bit word: element k of the pair in the low half, k + 1 in the high half,
 * the order vdpbf16ps pairs them in (lane i multiplies elements 2i and 2i+1 of both sources). */
static inline uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)f32_to_bf16(lo) | (uint32_t)f32_to_bf16(hi) << 16;
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

/* B's block, rows [k0, k0 + kc) x columns [j0, j0 + nc) of op(B) (element (l, j) at
 * b[l*rs + j*cs]), is packed into NR-column panels (kpp, NR) words, kpp*NR words apart; zeros past
 * n and kc, and in the pairs [kp, kpp) that pad the AMX kernel's last tile. Two work items, for
 * the two layouts, so that the reads run along memory: */

/* pair p (rows k0 + 2p, k0 + 2p + 1) of every panel, when B's rows are contiguous (cs = 1):
 * two sequential row reads (a panel at a time would touch a new page per row) — assigns. */
BF16_TARGET static void pack_b_pair(uint32_t *restrict bp, const float *restrict b, int64_t rs,
                                    int64_t n, int64_t j0, int64_t nc, int64_t p, int64_t k0,
                                    int64_t kc, int64_t kpp) {
    const int64_t panels = ceil_div(nc, NR), kp = (kc + 1) / 2;
    const float *lo = b + (k0 + 2 * p) * rs + j0, *hi = lo + rs;
    for (int64_t r = 0; r < panels; r++) {
        uint32_t *dst = bp + r * kpp * NR + p * NR;
        const int64_t w = p < kp ? min64(NR, n - j0 - r * NR) : 0; /* valid columns */
        if (2 * p + 1 < kc)
            for (int64_t j = 0; j < w; j++) dst[j] = bf16_pair(lo[r * NR + j], hi[r * NR + j]);
        else
            for (int64_t j = 0; j < w; j++) dst[j] = bf16_pair(lo[r * NR + j], 0.0f);
        for (int64_t j = w; j < NR; j++) dst[j] = 0;
    }
}

/* panel r, column by column, when B is stored transposed (rs = 1): each column of op(B) is a
 * contiguous run of k — assigns. */
BF16_TARGET static void pack_b_panel_t(uint32_t *restrict bp, const float *restrict b, int64_t cs,
                                       int64_t n, int64_t j0, int64_t r, int64_t k0, int64_t kc,
                                       int64_t kpp) {
    const int64_t jb = j0 + r * NR;
    const int64_t w = min64(NR, n - jb);
    uint32_t *dst = bp + r * kpp * NR;
    for (int64_t j = 0; j < NR; j++) {
        const float *col = b + (jb + j) * cs + k0;
        int64_t p = 0;
        if (j < w) {
            for (; p < kc / 2; p++) dst[p * NR + j] = bf16_pair(col[2 * p], col[2 * p + 1]);
            if (kc % 2) dst[(p++) * NR + j] = bf16_pair(col[kc - 1], 0.0f);
        }
        for (; p < kpp; p++) dst[p * NR + j] = 0;
    }
}

/* The micro-kernel: tile (mr, nr) of C, rows ldc apart, = alpha * (A panel (kp, MR) @
 * B panel (kp, NR)) + beta * tile — assigns (beta = 0: C not read) or accumulates. The 24
 * accumulators live in zmm registers for the whole loop over k. Then the epilogue ep (NULL but
 * on the last slice of k; the tile starts at row i0, column j0 of C, which index the biases). */
BF16_TARGET static void micro_kernel(int64_t kp, const uint32_t *restrict ap,
                                     const uint32_t *restrict bp, float *c, int64_t ldc, int64_t mr,
                                     int64_t nr, float alpha, float beta,
                                     const GemmEpilogue *ep, int64_t i0, int64_t j0) {
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
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        store_c_row(c + i * ldc, acc[i][0], acc[i][1], nr, alpha, beta, ep,
                    ep && ep->row_bias ? ep->row_bias[i0 + i] : 0.0f,
                    ep && ep->col_bias ? ep->col_bias + j0 : NULL);
    }
}

/* ---- AMX ------------------------------------------------------------------------------------
 * The tile unit multiplies whole tiles: tdpbf16ps C (16 rows x 16 floats) += A (16 rows x 16
 * pairs of k) . B (16 pairs of k x 16 columns, each entry a pair), 16 x 16 x 32 products per
 * instruction. The kernel holds a 32 x 32 block of C in four tiles (tmm0-3), and per 16 pairs of
 * k loads two tiles of A (rows 0-15, 16-31) and two of B (columns 0-15, 16-31) and issues four
 * tdpbf16ps. B's packed panel (kpp, 32) is already what a B tile wants: tile row p is the 16
 * words of pair p, 128 bytes apart. A's panel is packed row by row instead, (32, kpp) words, so
 * that a tile row is 16 consecutive pairs of one row of A. */
#define AMX_TARGET __attribute__((target("arch=x86-64-v4,avx512bf16,amx-tile,amx-bf16")))

/* Panel q of A's slice for the AMX kernel: rows [q*32, q*32 + 32) x columns [k0, k0 + kc) of
 * op(A) (element (i, l) at a[i*rs + l*cs]) into ap (32, kpp) words, rows kpp + 16 words apart
 * — assigns; zeros past m, kc
 * and kp. */
BF16_TARGET static void pack_a_panel_rows(uint32_t *restrict ap, const float *restrict a,
                                          int64_t rs, int64_t cs, int64_t m, int64_t q,
                                          int64_t k0, int64_t kc, int64_t kpp) {
    const int64_t i0 = q * AMX_MR;
    for (int64_t i = 0; i < AMX_MR; i++) {
        uint32_t *dst = ap + i * (kpp + AMX_KP);
        int64_t p = 0;
        if (i0 + i < m) {
            const float *row = a + (i0 + i) * rs + k0 * cs;
            for (; p < kc / 2; p++) dst[p] = bf16_pair(row[2 * p * cs], row[(2 * p + 1) * cs]);
            if (kc % 2) dst[p++] = bf16_pair(row[(kc - 1) * cs], 0.0f);
        }
        for (; p < kpp; p++) dst[p] = 0;
    }
}

/* The tile shapes: tmm0-3 C (16 x 64 bytes), tmm4-5 A, tmm6-7 B, all 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} AmxConfig;

AMX_TARGET static void amx_configure(void) {
    AmxConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    /* GCC 12 does not model ldtilecfg as reading all 64 bytes and drops the stores above
     * without this barrier (the tiles then stay unconfigured: SIGILL at the first tile op). */
    __asm__ __volatile__("" : : "r"(&cfg) : "memory");
    _tile_loadconfig(&cfg);
}

AMX_TARGET static void amx_release(void) { _tile_release(); }

/* The AMX kernel for one block: rows [q0*32, q1*32) of C (q1 - q0 <= AMX_MAX_PANELS panels of
 * A, (32, kpp) words each, kpp*32 words apart) x the NR columns of one B panel (kpp, NR):
 * C block = alpha * A block @ B panel + beta * C block — assigns (beta = 0: C not read) or
 * accumulates, then the epilogue ep (NULL but on the last slice of k; the panel starts at
 * column j0 of C); mr_last rows valid in the last panel, nr columns valid.
 * The four C tiles are kept in cbuf (contiguous, in L1) between chunks of ksub pairs of k: the
 * B panel's chunk (ksub x 128 bytes) stays in L1 while every panel of A streams past it, and C
 * itself is read and written once, at the end, instead of once per chunk. */
AMX_TARGET static void amx_block(int64_t kpp, int64_t ksub, const uint32_t *ap, int64_t q0,
                                 int64_t q1, const uint32_t *bp, float *c, int64_t ldc,
                                 int64_t m, int64_t nr, float alpha, float beta,
                                 const GemmEpilogue *ep, int64_t j0) {
    float cbuf[AMX_MAX_PANELS * AMX_MR * NR] __attribute__((aligned(64)));
    /* Rows of an A panel are kpp + 16 words apart: with exactly kpp (often a power of two) the
     * 32 rows of two A tiles would fall into one or two sets of L1 and evict each other. */
    const int64_t lda_p = kpp + AMX_KP, sa = lda_p * 4;
    for (int64_t c0 = 0; c0 < kpp; c0 += ksub) {
        const int64_t c1 = min64(c0 + ksub, kpp);
        for (int64_t q = q0; q < q1; q++) {
            float *cb = cbuf + (q - q0) * AMX_MR * NR;
            const uint32_t *aq = ap + q * lda_p * AMX_MR;
            if (c0 == 0) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
            } else {
                _tile_loadd(0, cb, NR * 4);
                _tile_loadd(1, cb + 16, NR * 4);
                _tile_loadd(2, cb + 16 * NR, NR * 4);
                _tile_loadd(3, cb + 16 * NR + 16, NR * 4);
            }
            for (int64_t p0 = c0; p0 < c1; p0 += AMX_KP) {
                _tile_loadd(4, aq + p0, sa);
                _tile_loadd(5, aq + 16 * lda_p + p0, sa);
                _tile_loadd(6, bp + p0 * NR, NR * 4);
                _tile_loadd(7, bp + p0 * NR + 16, NR * 4);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, cb, NR * 4);
            _tile_stored(1, cb + 16, NR * 4);
            _tile_stored(2, cb + 16 * NR, NR * 4);
            _tile_stored(3, cb + 16 * NR + 16, NR * 4);
        }
    }
    const int64_t rows = min64((q1 - q0) * AMX_MR, m - q0 * AMX_MR);
    for (int64_t i = 0; i < rows; i++) {
        const int64_t row = q0 * AMX_MR + i;
        store_c_row(c + row * ldc, _mm512_load_ps(cbuf + i * NR),
                    _mm512_load_ps(cbuf + i * NR + 16), nr, alpha, beta, ep,
                    ep && ep->row_bias ? ep->row_bias[row] : 0.0f,
                    ep && ep->col_bias ? ep->col_bias + j0 : NULL);
    }
}

/* Words of one packed A and one packed B in the scratch, each rounded up to 64 bytes. */
static void scratch_words(int64_t m, int64_t n, int64_t k, int64_t *aw, int64_t *bw) {
    scratch_layout(m, n, k, aw, bw);
    *aw = ceil_div(*aw, 16) * 16;
    *bw = ceil_div(*bw, 16) * 16;
}

size_t gemm_bf16_batched_scratch_bytes(int64_t batch, bool shared_a, int64_t m, int64_t n,
                                       int64_t k) {
    int64_t aw, bw;
    scratch_words(m, n, k, &aw, &bw);
    return (size_t)((shared_a ? 1 : batch) * aw + batch * bw) * sizeof(uint32_t) + 128;
}

static void batched_run(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                        int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta,
                        int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b,
                        int64_t stride_c, void *scratch, const GemmEpilogue *ep) {
    /* c (batch,M,N), a (batch,M,K) or (batch,K,M) when trans_a (stride_a 0: one A for all),
     * b (batch,K,N) or (batch,N,K) when trans_b, scratch of
     * gemm_bf16_batched_scratch_bytes(batch, stride_a == 0, m, n, k) bytes, ep NULL or its
     * row_bias (M) and col_bias (N) — assigns (beta = 0) or accumulates, then the epilogue */
    CHECK(gemm_bf16_available(), "gemm_bf16: %s",
          (gemm_bf16_check(), error_last()));
    if (!gemm_own_prologue("gemm_bf16", c, batch, m, n, k, beta, ldc, stride_c, scratch, ep))
        return;
    const GemmBf16Kernel kern = gemm_bf16_kernel();
    const GemmBf16Blocking bl = blocking_for(kern);
    const bool amx = kern == GEMM_BF16_AMX;
    const int64_t mr_panel = amx ? AMX_MR : MR; /* rows per packed panel of A */
    /* One packed A per product, or one for all when A is shared; one packed B per product. */
    const int64_t a_packs = stride_a == 0 ? 1 : batch;
    int64_t aw, bw;
    scratch_words(m, n, k, &aw, &bw);
    uint32_t *ap0 = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *bp0 = ap0 + a_packs * aw;
    /* element strides of op(A) (i, l) and op(B) (l, j) */
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    const int64_t brs = trans_b ? 1 : ldb, bcs = trans_b ? ldb : 1;
    const int64_t a_panels = ceil_div(m, mr_panel), m_blocks = ceil_div(m, bl.mc);
    /* One parallel region for the whole batch: three barriers per slice of k and block of
     * columns (pack A, pack B, multiply), however many products. */
#pragma omp parallel
    {
        if (amx) amx_configure(); /* the tile configuration is per thread */
        for (int64_t k0 = 0; k0 < k; k0 += bl.kc) {
            const int64_t kc = min64(bl.kc, k - k0), kp = (kc + 1) / 2;
            /* pairs per packed row: the AMX kernel reads whole tiles of 16 pairs */
            const int64_t kpp = amx ? ceil_div(kp, AMX_KP) * AMX_KP : kp;
            /* The first slice applies beta; later slices add their partial sums to C; the last
             * one applies the epilogue. */
            const float beta_k = k0 == 0 ? beta : 1.0f;
            const GemmEpilogue *ep_k = k0 + kc >= k ? ep : NULL;
#pragma omp for collapse(2) schedule(static)
            for (int64_t pa = 0; pa < a_packs; pa++)
                for (int64_t q = 0; q < a_panels; q++) {
                    uint32_t *ap = ap0 + pa * aw;
                    const float *ab = a + pa * stride_a;
                    if (amx)
                        pack_a_panel_rows(ap + q * (kpp + AMX_KP) * AMX_MR, ab, ars, acs, m, q,
                                          k0, kc, kpp);
                    else
                        pack_a_panel(ap + q * kp * MR, ab, ars, acs, m, q, k0, kc);
                }
            for (int64_t j0 = 0; j0 < n; j0 += bl.nc) {
                const int64_t nc = min64(bl.nc, n - j0), b_panels = ceil_div(nc, NR);
                if (bcs == 1) {
#pragma omp for collapse(2) schedule(static)
                    for (int64_t pb = 0; pb < batch; pb++)
                        for (int64_t p = 0; p < kpp; p++)
                            pack_b_pair(bp0 + pb * bw, b + pb * stride_b, brs, n, j0, nc, p, k0,
                                        kc, kpp);
                } else {
#pragma omp for collapse(2) schedule(static)
                    for (int64_t pb = 0; pb < batch; pb++)
                        for (int64_t r = 0; r < b_panels; r++)
                            pack_b_panel_t(bp0 + pb * bw, b + pb * stride_b, bcs, n, j0, r, k0,
                                           kc, kpp);
                }
                /* Each thread takes whole NR panels of B for one MC block of A (in L2), and
                 * sweeps the block's panels of A past the B panel (in L1). */
#pragma omp for collapse(3) schedule(static)
                for (int64_t pc = 0; pc < batch; pc++)
                    for (int64_t ib = 0; ib < m_blocks; ib++)
                        for (int64_t r = 0; r < b_panels; r++) {
                            const uint32_t *ap = ap0 + (stride_a == 0 ? 0 : pc) * aw;
                            const uint32_t *bp = bp0 + pc * bw;
                            float *cb = c + pc * stride_c;
                            const int64_t jb = j0 + r * NR, nr = min64(NR, n - jb);
                            const int64_t q_end =
                                min64(ceil_div((ib + 1) * bl.mc, mr_panel), a_panels);
                            const int64_t q_begin = ib * bl.mc / mr_panel;
                            if (amx) {
                                amx_block(kpp, bl.ksub, ap, q_begin, q_end, bp + r * kpp * NR,
                                          cb + jb, ldc, m, nr, alpha, beta_k, ep_k, jb);
                                continue;
                            }
                            for (int64_t q = q_begin; q < q_end; q++) {
                                const int64_t i0 = q * MR;
                                micro_kernel(kp, ap + q * kp * MR, bp + r * kp * NR,
                                             cb + i0 * ldc + jb, ldc, min64(MR, m - i0), nr,
                                             alpha, beta_k, ep_k, i0, jb);
                            }
                        }
            }
        }
        if (amx) amx_release();
    }
}

void gemm_bf16_batched_cpu(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                           int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha,
                           float beta, int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a,
                           int64_t stride_b, int64_t stride_c, void *scratch,
                           const GemmEpilogue *ep) {
    const uint64_t clk = gemm_clock_begin();
    batched_run(c, a, b, batch, m, n, k, trans_a, trans_b, alpha, beta, lda, ldb, ldc, stride_a,
                stride_b, stride_c, scratch, ep);
    gemm_clock_end(clk);
}

void gemm_bf16_cpu(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                   bool trans_a, bool trans_b, float alpha, float beta, int64_t lda, int64_t ldb,
                   int64_t ldc, void *scratch, const GemmEpilogue *ep) {
    /* c (M,N), a (M,K) or (K,M) when trans_a, b (K,N) or (N,K) when trans_b, scratch of
     * gemm_bf16_scratch_bytes(m, n, k) bytes, ep NULL or its row_bias (M) and col_bias (N) —
     * assigns (beta = 0) or accumulates, then the epilogue */
    gemm_bf16_batched_cpu(c, a, b, 1, m, n, k, trans_a, trans_b, alpha, beta, lda, ldb, ldc, 0, 0,
                          0, scratch, ep);
}

/* ---- Precision -------------------------------------------------------------------------- */

static Precision g_precision = PRECISION_FP32;

Status tensor_set_precision(Precision p) {
    CHECK(p == PRECISION_FP32 || p == PRECISION_BF16, "precision %d", (int)p);
    if (p == PRECISION_BF16) {
        Status st = gemm_bf16_check();
        if (st != STATUS_OK) return st;
    }
    g_precision = p;
    return STATUS_OK;
}

Precision tensor_precision(void) { return g_precision; }

const char *precision_name(Precision p) { return p == PRECISION_BF16 ? "bf16" : "fp32"; }

/* $TRMML_PRECISION=fp32|bf16 sets the starting precision before main, after the ISA level
 * (constructor priority 102 > isa.c's 101), until the programs take a --precision flag; whole-
 * model benchmarks and tests use it. A CPU that cannot run bf16, or another word, stops the
 * program before any work with exit status 2. */
__attribute__((constructor(102))) static void precision_from_env(void) {
    const char *env = getenv("TRMML_PRECISION");
    if (!env || !*env || strcmp(env, "fp32") == 0) return;
    if (strcmp(env, "bf16") != 0) {
        fprintf(stderr, "trmml: TRMML_PRECISION=%s: expected fp32 or bf16\n", env);
        exit(2);
    }
    if (tensor_set_precision(PRECISION_BF16) != STATUS_OK) {
        fprintf(stderr, "trmml: TRMML_PRECISION=bf16: %s\n", error_last());
        exit(2);
    }
}

bool tensor_bf16_forward(const Tensor *weight) {
    if (g_precision != PRECISION_BF16 || weight->requires_grad) return false;
    CHECK(weight->device == DEVICE_CPU,
          "precision bf16 is implemented for the CPU only (docs/ops/gemm_bf16.md); this op's "
          "weight %s is on %s",
          tensor_shape_str(weight), device_name(weight->device));
    CHECK(gemm_bf16_available(), "precision bf16 but %s", (gemm_bf16_check(), error_last()));
    return true;
}
