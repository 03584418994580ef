/* conv_wino_avx512.c — the F(4x4, 3x3) input transform in AVX-512 intrinsics
 * (conv_wino_avx512.h). The two passes of conv.c's wino4_input_chunk, 16 lanes at a time:
 *
 *   vertical: for each tile row, the six input rows (4 ty - ph + i) combined by B^T column by
 *     column into s[a], 16 columns per step: a masked load gives zeros for the columns in the
 *     padding (and past the chunk) and the last step is one masked vector, so no column runs in
 *     scalar code;
 *   horizontal: each row s[a] through B^T along the columns, 16 tiles per step. Tile q reads
 *     s[a][4q .. 4q + 5]: the four words 4q .. 4q + 3 of 16 tiles are the 64 floats at 4 q0,
 *     deinterleaved by two-source permutes; words 4 and 5 are words 0 and 1 of the next tile,
 *     one lane over (valignd), with the next group's first tile from the 5th vector.
 *
 * The rows of s of successive tile rows lie 4 nt floats apart (so that the tiles of the chunk
 * form one run), which makes the two columns that the last tile of a row reads past its row
 * (4 nt, 4 nt + 1) the next row's first two: they are saved in e0, e1 before the next row
 * overwrites them, and the lanes of those last tiles take them back with a masked expand-load
 * (lanes in order, from consecutive rows). conv.c recomputed those tiles in scalar code.
 *
 * The arithmetic is wino4_bt's, operation for operation (no FMA: each product and sum rounds
 * as in the portable code), so V is the same bit for bit. */
#include "tensor/ops/conv_wino_avx512.h"

#include <immintrin.h>

#include "tensor/error.h"
#include "tensor/isa.h"
#include "tensor/ops/gemm_f32.h"

#if defined(__clang__)
#define X16_TARGET __attribute__((target("arch=x86-64-v4")))
#else
#define X16_TARGET __attribute__((target("arch=x86-64-v4,prefer-vector-width=512")))
#endif

/* B^T applied to d0..d5 lane by lane, in the order of conv.c's wino4_bt. */
X16_TARGET static inline void bt16(__m512 b[6], __m512 d0, __m512 d1, __m512 d2, __m512 d3,
                                   __m512 d4, __m512 d5) {
    const __m512 two = _mm512_set1_ps(2.0f), three = _mm512_set1_ps(3.0f);
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    /* b0 = (2 (d0 + d4) - 3 (d1 - d3)) - 4 d2 */
    b[0] = _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(two, _mm512_add_ps(d0, d4)),
                                       _mm512_mul_ps(three, _mm512_sub_ps(d1, d3))),
                         _mm512_mul_ps(four, d2));
    /* b1 = 2 (d4 - d1) + (d2 + 5 d3) */
    b[1] = _mm512_add_ps(_mm512_mul_ps(two, _mm512_sub_ps(d4, d1)),
                         _mm512_add_ps(d2, _mm512_mul_ps(five, d3)));
    /* b2 = 2 (d1 + d4) + (d3 - 5 d2) */
    b[2] = _mm512_add_ps(_mm512_mul_ps(two, _mm512_add_ps(d1, d4)),
                         _mm512_sub_ps(d3, _mm512_mul_ps(five, d2)));
    /* b3 = 2 (d3 - d1) + (d4 - d2) */
    b[3] = _mm512_add_ps(_mm512_mul_ps(two, _mm512_sub_ps(d3, d1)), _mm512_sub_ps(d4, d2));
    /* b4 = 2 (d4 - d2) + (d1 - d3) */
    b[4] = _mm512_add_ps(_mm512_mul_ps(two, _mm512_sub_ps(d4, d2)), _mm512_sub_ps(d1, d3));
    /* b5 = (2 (d1 + d5) - 3 (d2 - d4)) - 4 d3 */
    b[5] = _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(two, _mm512_add_ps(d1, d5)),
                                       _mm512_mul_ps(three, _mm512_sub_ps(d2, d4))),
                         _mm512_mul_ps(four, d3));
}

/* Lanes [lo, hi) of a 16-lane step, clamped to [0, 16]. */
static inline __mmask16 lanes(int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
}

X16_TARGET void wino4_input_chunk_avx512(float *V, int64_t cstride, int64_t col0,
                                         const float *inp, const ConvGeom *g, int64_t c,
                                         int64_t rf, int64_t nr, int64_t tx0, int64_t nt) {
    CHECK(isa_level() == ISA_AVX512, "wino4_input_chunk_avx512 outside the avx512 level");
    CHECK(nr >= 1 && nt >= 1 && nr * nt <= WINO4_CHUNK && (nr == 1 || tx0 == 0),
          "wino4_input_chunk_avx512: %lld rows of %lld tiles", (long long)nr, (long long)nt);
    /* s[a][x], x < 4 nq + 2, then 80 floats that the last group's loads may reach (zeroed, so
     * that the unused lanes compute on zeros) */
    enum { SW = 4 * WINO4_CHUNK + 96 };
    float s[6][SW] __attribute__((aligned(64)));
    float e0[6][WINO4_CHUNK], e1[6][WINO4_CHUNK]; /* s[a][4 nt (rr + 1) + 0, 1] of row rr */
    const int64_t TH = (g->oh + 3) / 4, nq = nr * nt, len = 4 * nt + 2;
    const int64_t iw0 = 4 * tx0 - g->pad_w, plane = g->h * g->w;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t rr = 0; rr < nr; rr++) {
        const int64_t n = (rf + rr) / TH, ty = (rf + rr) % TH, off = 4 * nt * rr;
        const float *x = inp + (n * g->c + c) * g->h * g->w;
        const float *r[6]; /* input row of window row i, or NULL in the padding */
        for (int i = 0; i < 6; i++) {
            const int64_t ih = 4 * ty - g->pad_h + i;
            r[i] = ih >= 0 && ih < g->h ? x + ih * g->w : NULL;
        }
        if (rr > 0)
            for (int a = 0; a < 6; a++) {
                e0[a][rr - 1] = s[a][off];
                e1[a][rr - 1] = s[a][off + 1];
            }
        for (int64_t j0 = 0; j0 < len; j0 += 16) {
            /* chunk columns j0 + l: input column iw0 + j0 + l, read where it is in the image */
            const __mmask16 in = lanes(-iw0 - j0, g->w - iw0 - j0);
            __m512 d[6];
            for (int i = 0; i < 6; i++) {
                d[i] = r[i] && in ? _mm512_maskz_loadu_ps(in, r[i] + iw0 + j0) : zero;
                /* the same columns of the next input channel, which the caller transforms
                 * next: its plane is not in cache yet */
                if (r[i] && in && c + 1 < g->c)
                    _mm_prefetch((const char *)(r[i] + plane + iw0 + j0), _MM_HINT_T1);
            }
            __m512 b[6];
            bt16(b, d[0], d[1], d[2], d[3], d[4], d[5]);
            const __mmask16 keep = lanes(0, len - j0);
            for (int a = 0; a < 6; a++) _mm512_mask_storeu_ps(s[a] + off + j0, keep, b[a]);
        }
    }
    for (int a = 0; a < 6; a++)
        for (int64_t x = 4 * nq + 2; x < 4 * nq + 82; x++) s[a][x] = 0.0f;
    for (int64_t q0 = 0; q0 < nq; q0 += 16) {
        /* lanes of the last tile of a row rr < nr - 1, whose words 4 and 5 are in e0, e1; the
         * first such row in this group is q0 / nt */
        __mmask16 fix = 0;
        for (int64_t q = q0 / nt * nt + nt - 1; q < q0 + 16 && q < (nr - 1) * nt; q += nt)
            fix |= (__mmask16)(1u << (q - q0));
        const int64_t rr0 = q0 / nt;
        const __mmask16 keep = lanes(0, nq - q0);
        /* deinterleave indices: word k of tile l (l < 8) is element 4 l + k of a pair of
         * vectors (the second source from index 16) */
        const __m512i i0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(1));
        const __m512i i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(2));
        const __m512i i3 = _mm512_add_epi32(i0, _mm512_set1_epi32(3));
        for (int a = 0; a < 6; a++) {
            const float *base = s[a] + 4 * q0;
            const __m512 v0 = _mm512_loadu_ps(base), v1 = _mm512_loadu_ps(base + 16);
            const __m512 v2 = _mm512_loadu_ps(base + 32), v3 = _mm512_loadu_ps(base + 48);
            const __m512 v4 = _mm512_loadu_ps(base + 64);
            /* t_k: lanes 0..7 from v0:v1, lanes 8..15 from v2:v3 */
            const __m512 t0 = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(v0, i0, v1),
                                                   _mm512_permutex2var_ps(v2, i0, v3), 0x44);
            const __m512 t1 = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(v0, i1, v1),
                                                   _mm512_permutex2var_ps(v2, i1, v3), 0x44);
            const __m512 t2 = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(v0, i2, v1),
                                                   _mm512_permutex2var_ps(v2, i2, v3), 0x44);
            const __m512 t3 = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(v0, i3, v1),
                                                   _mm512_permutex2var_ps(v2, i3, v3), 0x44);
            /* words 4, 5 of tile l: words 0, 1 of tile l + 1 (lane 15: v4[0], v4[1]) */
            const __m512i v4i = _mm512_castps_si512(v4);
            __m512 t4 = _mm512_castsi512_ps(
                _mm512_alignr_epi32(v4i, _mm512_castps_si512(t0), 1));
            __m512 t5 = _mm512_castsi512_ps(_mm512_alignr_epi32(
                _mm512_alignr_epi32(v4i, v4i, 1), _mm512_castps_si512(t1), 1));
            if (fix) {
                t4 = _mm512_mask_expandloadu_ps(t4, fix, e0[a] + rr0);
                t5 = _mm512_mask_expandloadu_ps(t5, fix, e1[a] + rr0);
            }
            __m512 b[6];
            bt16(b, t0, t1, t2, t3, t4, t5);
            float *v = V + (a * 6) * cstride + col0 + q0;
            for (int k = 0; k < 6; k++) _mm512_mask_storeu_ps(v + k * cstride, keep, b[k]);
        }
    }
}

/* A^T applied to m0..m5 lane by lane, in the order of conv.c's wino4_at. */
X16_TARGET static inline void at16(__m512 y[4], __m512 m0, __m512 m1, __m512 m2, __m512 m3,
                                   __m512 m4, __m512 m5) {
    const __m512 p = _mm512_add_ps(m1, m2), q = _mm512_sub_ps(m1, m2);
    /* y0 = ((m0 + p) + m3) + m4 */
    y[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m0, p), m3), m4);
    /* y1 = (q + m3 / 2) - 2 m4 */
    y[1] = _mm512_sub_ps(_mm512_add_ps(q, _mm512_mul_ps(_mm512_set1_ps(0.5f), m3)),
                         _mm512_mul_ps(_mm512_set1_ps(2.0f), m4));
    /* y2 = (p + m3 / 4) + 4 m4 */
    y[2] = _mm512_add_ps(_mm512_add_ps(p, _mm512_mul_ps(_mm512_set1_ps(0.25f), m3)),
                         _mm512_mul_ps(_mm512_set1_ps(4.0f), m4));
    /* y3 = ((q + m3 / 8) - 8 m4) + m5 */
    y[3] = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(q, _mm512_mul_ps(_mm512_set1_ps(0.125f), m3)),
                                       _mm512_mul_ps(_mm512_set1_ps(8.0f), m4)),
                         m5);
}

/* dst[j] = act((dst[j] + r[j]) + b) with `residual`, else act(r[j] + b), j < w, act = ReLU
 * when `relu` (max with +0, which is `v > 0 ? v : 0` for every v, NaN and -0 included): conv.c's
 * wino_store_row, 16 columns per step and the rest in one masked step. */
X16_TARGET static void store_row16(float *dst, const float *r, int64_t w, float bias,
                                   bool residual, bool relu, int64_t next) {
    const __m512 b = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    for (int64_t j = 0; j < w; j += 16) {
        /* the same row of the next output channel, which the caller stores next (0: none) */
        if (next) _mm_prefetch((const char *)(dst + next + j), _MM_HINT_T0);
        const __mmask16 m = lanes(0, w - j);
        __m512 v = _mm512_maskz_loadu_ps(m, r + j);
        if (residual) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + j), v);
        v = _mm512_add_ps(v, b);
        if (relu) v = _mm512_max_ps(v, zero);
        _mm512_mask_storeu_ps(dst + j, m, v);
    }
}

X16_TARGET void wino4_output_chunk_avx512(float *out, const float *M, int64_t ostride,
                                          int64_t col0, float bias, bool residual, bool relu,
                                          const ConvGeom *g, int64_t oc, int64_t rf, int64_t nr,
                                          int64_t tx0, int64_t nt) {
    CHECK(isa_level() == ISA_AVX512, "wino4_output_chunk_avx512 outside the avx512 level");
    CHECK(nr >= 1 && nt >= 1 && nr * nt <= WINO4_CHUNK && (nr == 1 || tx0 == 0),
          "wino4_output_chunk_avx512: %lld rows of %lld tiles", (long long)nr, (long long)nt);
    /* r[i][4 nt rr + x]: output row 4 ty + i, column 4 tx0 + x, for 16-tile groups (64 floats
     * each, the last one partly unused) */
    float r[4][4 * WINO4_CHUNK + 64] __attribute__((aligned(64)));
    const int64_t TH = (g->oh + 3) / 4, nq = nr * nt;
    const float *m = M + col0;
    for (int64_t q0 = 0; q0 < nq; q0 += 16) {
        const __mmask16 in = lanes(0, nq - q0);
        __m512 s[4][6]; /* A^T m: each column of m through A^T */
        for (int j = 0; j < 6; j++) {
            __m512 c[6], a[4];
            for (int k = 0; k < 6; k++) {
                c[k] = _mm512_maskz_loadu_ps(in, m + (6 * k + j) * ostride + q0);
                /* four groups ahead in each of the 36 rows: more streams than the hardware
                 * prefetcher follows */
                _mm_prefetch((const char *)(m + (6 * k + j) * ostride + q0 + 64), _MM_HINT_T0);
            }
            at16(a, c[0], c[1], c[2], c[3], c[4], c[5]);
            for (int i = 0; i < 4; i++) s[i][j] = a[i];
        }
        for (int i = 0; i < 4; i++) { /* (A^T m) A: each row through A^T, then interleaved */
            __m512 y[4];
            at16(y, s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5]);
            /* y[k][l] is column 4 (q0 + l) + k: a 4 x 16 transpose into 64 consecutive floats.
             * After the unpacks, 128-bit lane L of e, f, g, h holds tile 4 L, 4 L + 1, 4 L + 2,
             * 4 L + 3 (its four columns); the lane shuffles gather tiles 0-3, 4-7, ... */
            const __m512 a = _mm512_unpacklo_ps(y[0], y[1]), b = _mm512_unpackhi_ps(y[0], y[1]);
            const __m512 c = _mm512_unpacklo_ps(y[2], y[3]), d = _mm512_unpackhi_ps(y[2], y[3]);
            const __m512 e = _mm512_castpd_ps(
                _mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
            const __m512 f = _mm512_castpd_ps(
                _mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
            const __m512 gg = _mm512_castpd_ps(
                _mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
            const __m512 h = _mm512_castpd_ps(
                _mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
            const __m512 t0 = _mm512_shuffle_f32x4(e, f, 0x44);
            const __m512 t1 = _mm512_shuffle_f32x4(gg, h, 0x44);
            const __m512 t2 = _mm512_shuffle_f32x4(e, f, 0xEE);
            const __m512 t3 = _mm512_shuffle_f32x4(gg, h, 0xEE);
            float *dst = r[i] + 4 * q0;
            _mm512_store_ps(dst, _mm512_shuffle_f32x4(t0, t1, 0x88));
            _mm512_store_ps(dst + 16, _mm512_shuffle_f32x4(t0, t1, 0xDD));
            _mm512_store_ps(dst + 32, _mm512_shuffle_f32x4(t2, t3, 0x88));
            _mm512_store_ps(dst + 48, _mm512_shuffle_f32x4(t2, t3, 0xDD));
        }
    }
    const int64_t ow0 = 4 * tx0;
    const int64_t w = 4 * nt < g->ow - ow0 ? 4 * nt : g->ow - ow0; /* drop columns past OW */
    for (int64_t rr = 0; rr < nr; rr++) {
        const int64_t n = (rf + rr) / TH, ty = (rf + rr) % TH;
        float *y = out + (n * g->o + oc) * g->oh * g->ow;
        for (int i = 0; i < 4 && 4 * ty + i < g->oh; i++)
            store_row16(y + (4 * ty + i) * g->ow + ow0, r[i] + 4 * nt * rr, w, bias, residual,
                        relu, oc + 1 < g->o ? g->oh * g->ow : 0);
    }
}

/* G applied to g0..g2 lane by lane, in the order of conv.c's wino4_g. */
X16_TARGET static inline void g16(__m512 t[6], __m512 g0, __m512 g1, __m512 g2) {
    const __m512 half = _mm512_set1_ps(0.5f);
    t[0] = _mm512_mul_ps(half, g0);
    t[1] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g0, g1), g2), _mm512_set1_ps(1.0f / 6.0f));
    t[2] = _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(g1, g0), g2), _mm512_set1_ps(1.0f / 6.0f));
    t[3] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(4.0f), g0),
                                                     _mm512_mul_ps(_mm512_set1_ps(2.0f), g1)),
                                       g2),
                         _mm512_set1_ps(-4.0f / 15.0f));
    t[4] = _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(g0, _mm512_mul_ps(_mm512_set1_ps(2.0f), g1)),
                                       _mm512_mul_ps(_mm512_set1_ps(4.0f), g2)),
                         _mm512_set1_ps(1.0f / 30.0f));
    t[5] = _mm512_mul_ps(half, g2);
}

/* One input channel at a time, vectorised over the 12 output channels of the panel (lanes 12-15
 * unused): the 9 taps are 12 contiguous floats each once the panel's rows are transposed into
 * wt (by the GEMM's own packing: a panel of one row is its rows transposed; read one float at a
 * time from rows 9 C floats apart, the taps took 60 % of the transform), G g and (G g) G^T stay
 * in registers, and four channels' results are stored at once. The packed U is written at
 * memory speed (36 floats per weight: 38 MB for a 512 x 512 layer); with the stores in whole
 * vectors it runs as fast as the portable transform writes its unpacked U (measured at 28x28
 * and 14x14, one thread), where 12-float stores took 1.2-1.6x as long. */
X16_TARGET void wino4_weights_panel_avx512(float *up, int64_t pa, float *wt, const float *weight,
                                           int64_t o0, int64_t q, int64_t rows, int64_t ob,
                                           int64_t C) {
    enum { MRW = 12 };
    CHECK(isa_level() == ISA_AVX512 && gemm_f32_blocking().mr == MRW,
          "wino4_weights_panel_avx512: the avx512 level and panels of %d rows", MRW);
    const int64_t kcb = gemm_f32_blocking().kc, mpad = (ob + MRW - 1) / MRW * MRW;
    gemm_f32_pack_a_panel(wt, weight + (o0 + q * MRW) * C * 9, rows, 9 * C, 0, 9 * C);
    const __mmask16 m = (__mmask16)((1u << MRW) - 1);
    /* Four channels' 12 values make 48 floats: three whole vectors per xi, stored at once
     * from ub instead of 36 stores of 12 floats per channel, most of which straddled two cache
     * lines */
    enum { CB = 4 };
    float ub[36][CB * MRW] __attribute__((aligned(64)));
    for (int64_t c0 = 0; c0 < C; c0 += CB) {
        const int64_t k0 = c0 / kcb * kcb, kcs = kcb < C - k0 ? kcb : C - k0;
        /* whole groups of CB inside one slice (kcb is a multiple of CB) */
        const int64_t nc = C - c0 < CB ? C - c0 : CB;
        for (int64_t cc = 0; cc < nc; cc++) {
            const float *w = wt + (c0 + cc) * 9 * MRW; /* tap k of the 12 channels at k MRW */
            __m512 t[3][6]; /* t[j][i] = (G g)[i][j] */
            for (int j = 0; j < 3; j++) /* G g: each column of g through G */
                g16(t[j], _mm512_maskz_loadu_ps(m, w + j * MRW),
                    _mm512_maskz_loadu_ps(m, w + (3 + j) * MRW),
                    _mm512_maskz_loadu_ps(m, w + (6 + j) * MRW));
            for (int i = 0; i < 6; i++) { /* (G g) G^T: each row of G g through G */
                __m512 u[6];
                g16(u, t[0][i], t[1][i], t[2][i]);
                for (int j = 0; j < 6; j++)
                    _mm512_mask_storeu_ps(ub[i * 6 + j] + cc * MRW, m, u[j]);
            }
        }
        float *dst = up + k0 * mpad + q * kcs * MRW + (c0 - k0) * MRW;
        for (int xi = 0; xi < 36; xi++) {
            float *d = dst + xi * pa;
            if (nc == CB) {
                _mm512_storeu_ps(d, _mm512_load_ps(ub[xi]));
                _mm512_storeu_ps(d + 16, _mm512_load_ps(ub[xi] + 16));
                _mm512_storeu_ps(d + 32, _mm512_load_ps(ub[xi] + 32));
            } else {
                for (int64_t x = 0; x < nc * MRW; x += 16)
                    _mm512_mask_storeu_ps(d + x, lanes(0, nc * MRW - x),
                                          _mm512_load_ps(ub[xi] + x));
            }
        }
    }
}
