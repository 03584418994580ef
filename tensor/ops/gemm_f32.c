/* gemm_f32.c — C = act(alpha * op(A) op(B) + beta * C + biases) in float32 on AVX-512, the
 * epilogue applied as C is stored (tensor/ops/gemm_f32.h; docs/ops/gemm_f32.md walks through
 * it beside the bf16 GEMM it shares its structure and its store with).
 *
 * Structure (Goto & van de Geijn 2008, in the loop order BLIS uses on AVX-512 CPUs):
 *     pack all of op(A) once, for every slice of KC k, into MR-row panels (shared by the threads)
 *     for each work item (product p, NC-block of columns, block of rows), on one thread:
 *       for each KC-slice of k:     pack B's (KC, NC) block into NR-column panels (in L2)
 *         for each MR panel of A:   (MR x KC floats, stays in L1)
 *           for each NR panel of the block:
 *               micro-kernel: the (MR, NR) tile of C (+)= A panel (MR, KC) @ B panel (KC, NR)
 * The micro-kernel keeps its 12 x 32 tile (24 zmm accumulators) in registers over the slice;
 * each step over k loads 32 floats of B (two zmm, from L2, sequential) and broadcasts the 12
 * floats of A's column (from L1), and issues 24 FMAs. The register tile is the bf16 kernel's,
 * with one k per step instead of a pair; here A's panel, read 12 times per step, is the one kept
 * in L1, and B's panel streams from L2 (two loads per step).
 * Each item owns its C block, so no two threads write one element, and the only barrier is the
 * one after packing A.
 *
 * Rounding: each entry of C is a float32 sum of K products, each FMA rounding once, in
 * order of k within a slice and slice by slice: its error is at most gamma_K sum_l |a_il b_lj|
 * (Higham, Thm 3.1) plus the roundings of alpha, beta and the epilogue, the bound every GEMM of
 * the project is tested against. */
#include "tensor/ops/gemm_f32.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tensor/isa.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/gemm_epilogue.h"

#define MR 12 /* rows of the register tile: 12 broadcasts of A per k */
#define NR 32 /* columns: two zmm of 16 float32 accumulators */

#if defined(__clang__)
#define F32_TARGET __attribute__((target("arch=x86-64-v4")))
#else
#define F32_TARGET __attribute__((target("arch=x86-64-v4,prefer-vector-width=512")))
#endif

static int g_on = -1; /* -1: $TRMML_GEMM_F32 not read yet; 0 off, 1 on */

static bool enabled(void) {
    int on = __atomic_load_n(&g_on, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *e = getenv("TRMML_GEMM_F32");
        on = !(e && strcmp(e, "off") == 0);
        __atomic_store_n(&g_on, on, __ATOMIC_RELAXED);
    }
    return on;
}

bool gemm_f32_available(void) {
    return enabled() && isa_level() == ISA_AVX512 && gemm_path() == GEMM_BLAS;
}

bool gemm_f32_set_enabled(bool on) {
    const bool prev = enabled();
    __atomic_store_n(&g_on, on ? 1 : 0, __ATOMIC_RELAXED);
    return prev;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int64_t cache_bytes(int name, int64_t fallback) {
    long v = sysconf(name);
    return v > 0 ? (int64_t)v : fallback;
}

/* KC: one A panel (MR x KC floats) takes at most half of L1d, so it stays there while the B
 * panels of a block stream past it through the other half. NC: one KC x NC block of packed B
 * takes at most half of L2 (per core), so each B panel comes from L2. */
static GemmF32Blocking g_blocking;

GemmF32Blocking gemm_f32_blocking(void) {
    if (g_blocking.kc == 0) {
        const int64_t l1 = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
        const int64_t l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
        GemmF32Blocking b = {.mr = MR, .nr = NR};
        b.kc = clamp64(l1 / 2 / (MR * 4) / 16 * 16, 64, 512);
        b.nc = clamp64(l2 / 2 / (b.kc * 4) / NR * NR, NR, 4096);
        g_blocking = b; /* the same value from any thread that races here */
    }
    return g_blocking;
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Floats of one packed op(A): MR-row panels covering M, for all K. */
static int64_t a_floats(int64_t m, int64_t k) { return ceil_div(m, MR) * MR * k; }
/* Floats of one thread's packed B block: KC x NC, whole panels. */
static int64_t b_floats(const GemmF32Blocking *bl, int64_t n, int64_t k) {
    return min64(bl->kc, k) * ceil_div(min64(bl->nc, n), NR) * NR;
}
/* The batched call's scratch: each packed A (aw floats) and each thread's B block (bw), both
 * rounded up to 64 bytes. */
static void scratch_floats(const GemmF32Blocking *bl, int64_t m, int64_t n, int64_t k,
                           int64_t *aw, int64_t *bw) {
    *aw = ceil_div(a_floats(m, k), 16) * 16;
    *bw = ceil_div(b_floats(bl, n, k), 16) * 16;
}

size_t gemm_f32_batched_scratch_bytes(int64_t batch, bool shared_a, int64_t m, int64_t n,
                                      int64_t k) {
    const GemmF32Blocking bl = gemm_f32_blocking();
    int64_t aw, bw;
    scratch_floats(&bl, m, n, k, &aw, &bw);
    return (size_t)((shared_a ? 1 : batch) * aw + max_threads() * bw) * sizeof(float) + 64;
}

/* r[0..15] (16 rows of 16 floats) transposed in registers: afterwards r[j] holds element j of
 * every former row (four rounds of unpacks and shuffles, 64 in all). */
F32_TARGET static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
    }
}

/* One panel of op(A)'s slice: its rows (rows <= MR of them) x kc columns, element (i, l) at
 * src[i*rs + l*cs], into ap (kc, MR) floats: ap[l*MR + i] — assigns; rows past `rows` are
 * zeros. Column l of the panel is 12 floats of op(A), stored with one 12-lane masked store,
 * read with one masked load when they are contiguous (A stored transposed, rs = 1); otherwise
 * A's rows are (cs = 1), and 16 columns go at a time, the 12 rows loaded as vectors and
 * transposed in registers. (Element by element the stores ran 48 bytes apart, and packing a
 * Winograd convolution's 36 weight matrices took half as long as its input transform; a gather
 * per column was no faster.) */
F32_TARGET static void pack_a_panel(float *restrict ap, const float *restrict src, int64_t rs,
                                    int64_t cs, int64_t rows, int64_t kc) {
    const __mmask16 store = (__mmask16)((1u << MR) - 1);
    if (rs == 1) {
        const __mmask16 valid = (__mmask16)((1u << rows) - 1);
        for (int64_t l = 0; l < kc; l++)
            _mm512_mask_storeu_ps(ap + l * MR, store, _mm512_maskz_loadu_ps(valid, src + l * cs));
        return;
    }
    (void)cs; /* 1: op(A) is A, one of the two strides is always 1 */
    for (int64_t l0 = 0; l0 < kc; l0 += 16) {
        const int64_t w = min64(16, kc - l0);
        const __mmask16 cols = w == 16 ? (__mmask16)0xffff : (__mmask16)((1u << w) - 1);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(cols, src + i * rs + l0) : _mm512_setzero_ps();
        transpose16(r);
        for (int j = 0; j < w; j++) _mm512_mask_storeu_ps(ap + (l0 + j) * MR, store, r[j]);
    }
}

/* op(B)'s block, rows [k0, k0 + kc) x columns [j0, j0 + nc) (element (l, j) at b[l*rs + j*cs]),
 * into NR-column panels (kc, NR) floats, kc*NR apart: bp[r*kc*NR + l*NR + j] — assigns; columns
 * past n are zeros. Rows are read along memory when B's rows are contiguous (cs = 1), columns
 * when B is stored transposed (rs = 1). */
F32_TARGET static void pack_b_block(float *restrict bp, const float *restrict b, int64_t rs,
                                    int64_t cs, int64_t n, int64_t j0, int64_t nc, int64_t k0,
                                    int64_t kc) {
    const int64_t panels = ceil_div(nc, NR);
    if (cs == 1) {
        for (int64_t l = 0; l < kc; l++) {
            const float *src = b + (k0 + l) * rs + j0;
            for (int64_t r = 0; r < panels; r++) {
                float *dst = bp + r * kc * NR + l * NR;
                const int64_t w = min64(NR, n - j0 - r * NR);
                const __mmask16 m0 = w >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << w) - 1);
                const __mmask16 m1 = w >= 32   ? (__mmask16)0xffff
                                     : w > 16 ? (__mmask16)((1u << (w - 16)) - 1)
                                              : (__mmask16)0;
                _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src + r * NR));
                _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + r * NR + 16));
            }
        }
        return;
    }
    /* B stored transposed (rs = 1; a linear layer's weight (N, K)): column j of op(B) is
     * contiguous along l, so 16 columns x 16 rows at a time are loaded as 16 vectors and
     * transposed in registers, as pack_a_panel does (one float at a time, the stores 128
     * bytes apart made this packing a quarter of a linear layer's time). */
    (void)rs;
    for (int64_t r = 0; r < panels; r++) {
        float *dst = bp + r * kc * NR;
        for (int h = 0; h < NR / 16; h++) {
            const int64_t col0 = j0 + r * NR + h * 16;
            for (int64_t l0 = 0; l0 < kc; l0 += 16) {
                const int64_t w = min64(16, kc - l0);
                const __mmask16 rows = w == 16 ? (__mmask16)0xffff : (__mmask16)((1u << w) - 1);
                __m512 v[16];
                for (int i = 0; i < 16; i++)
                    v[i] = col0 + i < n ? _mm512_maskz_loadu_ps(rows, b + (col0 + i) * cs + k0 + l0)
                                        : _mm512_setzero_ps();
                transpose16(v);
                for (int j = 0; j < w; j++) _mm512_store_ps(dst + (l0 + j) * NR + h * 16, v[j]);
            }
        }
    }
}

/* The micro-kernel: tile (mr, nr) of C, rows ldc apart, = alpha * (A panel (kc, MR) @
 * B panel (kc, NR)) + beta * tile — assigns (beta = 0: C not read) or accumulates — then the
 * epilogue ep (NULL but on the last slice of k; the tile starts at row i0, column j0 of C). */
F32_TARGET static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp,
                                    float *c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                                    float beta, const GemmEpilogue *ep, int64_t i0, int64_t j0) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t l = 0; l < kc; l++) {
        const __m512 b0 = _mm512_load_ps(bp + l * NR), b1 = _mm512_load_ps(bp + l * NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(ap[l * MR + i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
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

/* Slice s of panel q of op(A) (element (i, l) at a[i*rs + l*cs]) into its place in the packed
 * A ap: slice s (k0 = s KC, kc long) of panel q at ap + k0 * MRpad + q * kc * MR, MRpad = M
 * rounded up to MR — assigns. */
static void pack_a_at(float *ap, const float *a, int64_t rs, int64_t cs, int64_t m, int64_t k,
                      int64_t s, int64_t q, const GemmF32Blocking *bl) {
    const int64_t k0 = s * bl->kc, kc = min64(bl->kc, k - k0);
    pack_a_panel(ap + k0 * ceil_div(m, MR) * MR + q * kc * MR, a + q * MR * rs + k0 * cs, rs, cs,
                 min64(MR, m - q * MR), kc);
}

/* The block of C at rows of A's panels [q0, q1) x columns [j0, j0 + nc) (nc <= NC), on the
 * calling thread: slice by slice of k, B's block packed into bp (b_floats), then every A panel
 * (in L1) against every B panel of the block — assigns (beta = 0) or accumulates, then the
 * epilogue. */
static void run_block(float *c, const float *ap, const float *b, int64_t m, int64_t n, int64_t k,
                      int64_t brs, int64_t bcs, float alpha, float beta, int64_t ldc, float *bp,
                      const GemmEpilogue *ep, int64_t q0, int64_t q1, int64_t j0, int64_t nc,
                      const GemmF32Blocking *bl) {
    const int64_t slices = ceil_div(k, bl->kc), mpad = ceil_div(m, MR) * MR;
    for (int64_t s = 0; s < slices; s++) {
        const int64_t k0 = s * bl->kc, kc = min64(bl->kc, k - k0);
        /* the first slice applies beta; later ones add to C; the last, the epilogue */
        const float beta_s = s == 0 ? beta : 1.0f;
        const GemmEpilogue *ep_s = s == slices - 1 ? ep : NULL;
        pack_b_block(bp, b, brs, bcs, n, j0, nc, k0, kc);
        for (int64_t q = q0; q < q1; q++) {
            const float *aq = ap + k0 * mpad + q * kc * MR;
            const int64_t i0 = q * MR, mr = min64(MR, m - i0);
            for (int64_t r = 0; r * NR < nc; r++)
                micro_kernel(kc, aq, bp + r * kc * NR, c + i0 * ldc + j0 + r * NR, ldc, mr,
                             min64(NR, nc - r * NR), alpha, beta_s, ep_s, i0, j0 + r * NR);
        }
    }
}

static float *align64(void *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static void batched_run(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                        int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta,
                        int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b,
                        int64_t stride_c, void *scratch, const GemmEpilogue *ep) {
    /* c (batch,M,N), a (batch,M,K) or (batch,K,M) when trans_a (stride_a 0: one A for all),
     * b (batch,K,N) or (batch,N,K) when trans_b, scratch of
     * gemm_f32_batched_scratch_bytes(batch, stride_a == 0, m, n, k) bytes, ep NULL or its
     * row_bias (M) and col_bias (N) — assigns (beta = 0) or accumulates, then the epilogue */
    CHECK(isa_level() == ISA_AVX512, "gemm_f32: needs the avx512 ISA level (chosen: %s)",
          isa_level_name(isa_level()));
    if (!gemm_own_prologue("gemm_f32", c, batch, m, n, k, beta, ldc, stride_c, scratch, ep))
        return;
    const GemmF32Blocking bl = gemm_f32_blocking();
    const int64_t a_packs = stride_a == 0 ? 1 : batch, a_panels = ceil_div(m, MR);
    int64_t aw, bw;
    scratch_floats(&bl, m, n, k, &aw, &bw);
    float *ap0 = align64(scratch), *bp0 = ap0 + a_packs * aw;
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1; /* op(A) (i, l) */
    const int64_t brs = trans_b ? 1 : ldb, bcs = trans_b ? ldb : 1; /* op(B) (l, j) */
    const int64_t slices = ceil_div(k, bl.kc), col_blocks = ceil_div(n, bl.nc);
    const int threads = max_threads();
    /* Rows in blocks only when products x column blocks leave threads idle: then each row
     * block is a work item of its own (whole panels of A). */
    int64_t row_blocks = 1;
    if (batch * col_blocks < 2 * threads)
        row_blocks = min64(a_panels, ceil_div(2 * threads, batch * col_blocks));
    const int64_t panels_per_rb = ceil_div(a_panels, row_blocks);
    const int64_t items = batch * col_blocks * row_blocks;
#pragma omp parallel num_threads(threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
#pragma omp for collapse(3) schedule(static)
        for (int64_t pa = 0; pa < a_packs; pa++)
            for (int64_t s = 0; s < slices; s++)
                for (int64_t q = 0; q < a_panels; q++)
                    pack_a_at(ap0 + pa * aw, a + pa * stride_a, ars, acs, m, k, s, q, &bl);
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            const int64_t p = it / (col_blocks * row_blocks);
            const int64_t jb = it / row_blocks % col_blocks, rb = it % row_blocks;
            const int64_t j0 = jb * bl.nc, q0 = rb * panels_per_rb;
            run_block(c + p * stride_c, ap0 + (stride_a == 0 ? 0 : p) * aw, b + p * stride_b, m,
                      n, k, brs, bcs, alpha, beta, ldc, bp0 + tid * bw, ep, q0,
                      min64(q0 + panels_per_rb, a_panels), j0, min64(bl.nc, n - j0), &bl);
        }
    }
}

int64_t gemm_f32_packed_a_floats(int64_t m, int64_t k) { return a_floats(m, k); }

void gemm_f32_pack_a(float *ap, const float *a, int64_t m, int64_t k, bool trans_a,
                     int64_t lda) {
    /* ap (gemm_f32_packed_a_floats(m, k)), a (M,K) or (K,M) when trans_a — assigns */
    const GemmF32Blocking bl = gemm_f32_blocking();
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    for (int64_t s = 0; s < ceil_div(k, bl.kc); s++)
        for (int64_t q = 0; q < ceil_div(m, MR); q++) pack_a_at(ap, a, ars, acs, m, k, s, q, &bl);
}

void gemm_f32_pack_a_panel(float *ap, const float *rows, int64_t m, int64_t k, int64_t q,
                           int64_t lda) {
    /* ap (gemm_f32_packed_a_floats(m, k)), rows: rows [q MR, q MR + MR) of A (M,K) (those
     * below m), lda apart — assigns panel q's part of ap */
    const GemmF32Blocking bl = gemm_f32_blocking();
    const int64_t mpad = ceil_div(m, MR) * MR;
    for (int64_t k0 = 0; k0 < k; k0 += bl.kc) {
        const int64_t kc = min64(bl.kc, k - k0);
        pack_a_panel(ap + k0 * mpad + q * kc * MR, rows + k0, lda, 1, min64(MR, m - q * MR), kc);
    }
}

int64_t gemm_f32_b_scratch_floats(int64_t n, int64_t k) {
    const GemmF32Blocking bl = gemm_f32_blocking();
    return b_floats(&bl, n, k) + 16;
}

void gemm_f32_packed_single(float *c, const float *ap, const float *b, int64_t m, int64_t n,
                            int64_t k, bool trans_b, float alpha, float beta, int64_t ldb,
                            int64_t ldc, float *b_scratch, const GemmEpilogue *ep) {
    /* c (M,N), ap packed by gemm_f32_pack_a(m, k), b (K,N) or (N,K) when trans_b, b_scratch
     * (gemm_f32_b_scratch_floats(n, k)) — assigns (beta = 0) or accumulates, then the epilogue;
     * on the calling thread */
    CHECK(isa_level() == ISA_AVX512, "gemm_f32: needs the avx512 ISA level (chosen: %s)",
          isa_level_name(isa_level()));
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        gemm_empty_sum(c, 1, m, n, beta, ldc, 0, ep);
        return;
    }
    const uint64_t clk = gemm_clock_begin();
    const GemmF32Blocking bl = gemm_f32_blocking();
    const int64_t brs = trans_b ? 1 : ldb, bcs = trans_b ? ldb : 1;
    for (int64_t j0 = 0; j0 < n; j0 += bl.nc)
        run_block(c, ap, b, m, n, k, brs, bcs, alpha, beta, ldc, align64(b_scratch), ep, 0,
                  ceil_div(m, MR), j0, min64(bl.nc, n - j0), &bl);
    gemm_clock_end(clk);
}

void gemm_f32_batched_cpu(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                          int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha,
                          float beta, int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a,
                          int64_t stride_b, int64_t stride_c, void *scratch,
                          const GemmEpilogue *ep) {
    const uint64_t clk = gemm_clock_begin();
    batched_run(c, a, b, batch, m, n, k, trans_a, trans_b, alpha, beta, lda, ldb, ldc, stride_a,
                stride_b, stride_c, scratch, ep);
    gemm_clock_end(clk);
}
