/* conv.c — 2-D convolution (NCHW, groups = 1, dilation = 1): CPU kernels, wrapper, backward.
 *
 * Math (cross-correlation, as PyTorch):
 *     out[n,o,oh,ow] = bias[o] + sum_{c,kh,kw} weight[o,c,kh,kw]
 *                                  * x[n, c, oh*stride_h - pad_h + kh, ow*stride_w - pad_w + kw]
 * with x read as zero outside the image. Shapes: x (N,C,H,W), weight (O,C,KH,KW), bias (O),
 * out (N,O,OH,OW), OH = (H + 2*pad_h - KH)/stride_h + 1, OW likewise. K = C*KH*KW, P = OH*OW.
 *
 * Every convolution is a GEMM through the core `gemm` kernel:
 *   - 1x1, stride 1, no padding: x[n] viewed as (C, P) is already the right matrix, so
 *     out[n] (O,P) = weight (O,C) @ x[n] (C,P), with no copy at all;
 *   - otherwise im2col: for a block of output positions, col (K, T) holds in row
 *     k = (c*KH + kh)*KW + kw the input pixels that weight[:,c,kh,kw] meets at each of the T
 *     positions, and out_block (O,T) = weight (O,K) @ col (K,T). A block is a few output rows
 *     of one image (large images; the GEMM writes straight into out) or a few whole images
 *     side by side (small images; one GEMM packs the weights once for all of them, and the
 *     result is scattered back to NCHW). Blocks bound the scratch (CONV_*_BYTES) instead of
 *     materialising K*P floats per image;
 *   - except the CPU forward of large enough 3x3 stride-1 convolutions, which runs Winograd
 *     F(4x4, 3x3) or F(2x2, 3x3): 36 or 16 GEMMs of C multiply-adds per element over
 *     transformed tiles (below).
 * Backward (docs/ops/conv.md): dbias[o] += sum_{n,p} dout[n,o,p]; per block
 *     dweight (O,K) += dout_block (O,T) @ col^T (T,K)         (col recomputed, not saved)
 *     dcol (K,T) = weight^T (K,O) @ dout_block (O,T), then col2im adds dcol back onto dx.
 * Saved for backward: nothing beyond the inputs x and weight (the geometry rides in Node.extra);
 * col is recomputed from x, which costs one im2col per block and saves K*P floats per image. */
#include "tensor/ops/conv.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/isa.h"
#include "tensor/kernels_cpu.h"
#include "tensor/ops/conv_wino_avx512.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/ops/gemm_f32.h"

/* Scratch budgets for one im2col block's col matrix. A block of output rows of a large image
 * stays small enough to remain in cache between the im2col that writes it and the GEMM that
 * reads it (measured: 4 MiB beat 16 MiB by ~25% at 64 channels, 112x112). Images whose whole
 * col fits that are grouped up to the larger budget, since each GEMM call packs the weights once
 * (measured: 4 images beat 1 by ~8% at 512 channels, 14x14, 3x3). */
#define CONV_ROWS_BYTES ((int64_t)4 << 20)
#define CONV_IMGS_BYTES ((int64_t)16 << 20)
/* On a GPU the opposite holds: there is no cache to stay in, and each block is one im2col
 * launch plus one cuBLAS call, so blocks are as large as a generous scratch allows (an RN101
 * layer1 3x3 conv at 448 px, 64 channels at 112x112, batch 32: 4 blocks of up to 9 images
 * instead of the CPU's 224 blocks of 16 rows). */
#define CONV_GPU_BYTES ((int64_t)256 << 20)

/* ---- CPU kernels -------------------------------------------------------------------------- */

static bool conv_pointwise(const ConvGeom *g) {
    return g->kh == 1 && g->kw == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
           g->pad_w == 0;
}

/* ceil(a / b) for b > 0, and 0 when a <= 0. */
static inline int64_t ceil_div_pos(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

/* The output columns [*lo, *hi) whose input column ow*stride_w - pad_w + kw lies inside [0, W);
 * the others read padding. */
static inline void conv_valid_cols(const ConvGeom *g, int64_t kw, int64_t *lo, int64_t *hi) {
    *lo = ceil_div_pos(g->pad_w - kw, g->stride_w);
    *hi = ceil_div_pos(g->w + g->pad_w - kw, g->stride_w);
    if (*hi > g->ow) *hi = g->ow;
    if (*lo > *hi) *lo = *hi;
}

/* col (K, rows*OW), rows `ld` apart, for output rows [oh0, oh0 + rows) of one image x (C,H,W)
 * — assigns. Row k = (c*KH + kh)*KW + kw, column r*OW + ow holds
 * x[c, (oh0+r)*sh - ph + kh, ow*sw - pw + kw] (zero in the padding). With stride_w = 1 each
 * (k, r) segment is one contiguous copy of part of an input row, so the loop is bound by memory
 * bandwidth; the (k, r) segments are independent and split across threads. */
static void im2col_rows(float *col, int64_t ld, const float *x, const ConvGeom *g, int64_t oh0,
                        int64_t rows) {
    const int64_t K = g->c * g->kh * g->kw, OW = g->ow;
#pragma omp parallel for collapse(2) schedule(static) if (K * rows * OW > 32768)
    for (int64_t k = 0; k < K; k++) {
        for (int64_t r = 0; r < rows; r++) {
            const int64_t c = k / (g->kh * g->kw), kh = (k / g->kw) % g->kh, kw = k % g->kw;
            const int64_t ih = (oh0 + r) * g->stride_h - g->pad_h + kh;
            float *dst = col + k * ld + r * OW;
            if (ih < 0 || ih >= g->h) {
                memset(dst, 0, (size_t)OW * sizeof *dst);
                continue;
            }
            const float *src = x + (c * g->h + ih) * g->w;
            int64_t lo, hi;
            conv_valid_cols(g, kw, &lo, &hi);
            const int64_t iw0 = kw - g->pad_w; /* input column of output column 0 */
            for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
            if (g->stride_w == 1)
                memcpy(dst + lo, src + lo + iw0, (size_t)(hi - lo) * sizeof *dst);
            else
                for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * g->stride_w + iw0];
            for (int64_t ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
        }
    }
}

/* dx (C,H,W) += col2im(dcol (K, rows*OW), rows `ld` apart) for output rows [oh0, oh0 + rows)
 * — accumulates. The adjoint of im2col_rows. Several (kh, kw, r) read the same input pixel, so
 * threads split the input rows (c, ih) and each gathers what lands on its own row: no two
 * threads ever write one pixel. */
static void col2im_rows(float *dx, const float *dcol, int64_t ld, const ConvGeom *g, int64_t oh0,
                        int64_t rows) {
    const int64_t OW = g->ow;
#pragma omp parallel for schedule(static) if (g->c * g->kh * g->kw * rows * OW > 32768)
    for (int64_t cih = 0; cih < g->c * g->h; cih++) {
        const int64_t c = cih / g->h, ih = cih % g->h;
        float *drow = dx + cih * g->w;
        for (int64_t kh = 0; kh < g->kh; kh++) {
            /* ih = oh*sh - ph + kh  =>  oh = (ih + ph - kh) / sh when that divides exactly */
            int64_t t = ih + g->pad_h - kh;
            if (t < 0 || t % g->stride_h != 0) continue;
            int64_t r = t / g->stride_h - oh0;
            if (r < 0 || r >= rows) continue;
            for (int64_t kw = 0; kw < g->kw; kw++) {
                const float *src = dcol + ((c * g->kh + kh) * g->kw + kw) * ld + r * OW;
                int64_t lo, hi;
                conv_valid_cols(g, kw, &lo, &hi);
                const int64_t iw0 = kw - g->pad_w;
                for (int64_t ow = lo; ow < hi; ow++) drow[ow * g->stride_w + iw0] += src[ow];
            }
        }
    }
}

/* The forward's epilogue, one pass over the GEMM's result: y = act(y + bias[o]) on the rows of
 * output channels [o0, o0 + o_count) of one image, T values each, rows `ld` apart — assigns in
 * place. act is ReLU when `relu`, the identity otherwise; bias may be NULL. The sum is formed
 * before the ReLU, and with a residual the GEMM has already added it (beta = 1): the value is
 * act((residual + conv) + bias) in that order, on every path. */
static inline ISA_BODY void conv_epilogue_row_body(float *restrict y, int64_t T, float b,
                                                   bool relu) {
    if (relu)
        for (int64_t t = 0; t < T; t++) {
            const float v = y[t] + b;
            y[t] = v > 0.0f ? v : 0.0f;
        }
    else
        for (int64_t t = 0; t < T; t++) y[t] += b;
}
ISA_VARIANTS(conv_epilogue_row, (float *restrict y, int64_t T, float b, bool relu),
             (y, T, b, relu))

/* The epilogue of `nimg` images whose (O, T) blocks start img_stride floats apart, rows `ld`
 * apart; nothing to do without a bias or a ReLU. */
static void conv_epilogue(float *y, const float *bias, bool relu, int64_t nimg,
                          int64_t img_stride, int64_t O, int64_t T, int64_t ld) {
    if (!bias && !relu) return;
#pragma omp parallel for collapse(2) schedule(static) if (nimg * O * T > 32768)
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t o = 0; o < O; o++)
            conv_epilogue_row(y + n * img_stride + o * ld, T, bias ? bias[o] : 0.0f, relu);
}

/* A block buffer buf (O, nb*P) holds images [n0, n0+nb) of an NCHW tensor (N,O,P) side by side:
 * image i owns its columns [i*P, (i+1)*P). block_scatter writes buf to out — assigns, or with
 * `residual` adds it to what out holds; block_gather reads t into buf — assigns. */
static void block_scatter(float *out, const float *buf, bool residual, int64_t n0, int64_t nb,
                          const ConvGeom *g) {
    const int64_t O = g->o, P = g->oh * g->ow;
#pragma omp parallel for collapse(2) schedule(static) if (nb * O * P > 32768)
    for (int64_t i = 0; i < nb; i++)
        for (int64_t o = 0; o < O; o++) {
            float *dst = out + ((n0 + i) * O + o) * P;
            const float *src = buf + o * nb * P + i * P;
            if (residual)
                for (int64_t p = 0; p < P; p++) dst[p] += src[p];
            else
                memcpy(dst, src, (size_t)P * sizeof *dst);
        }
}

static void block_gather(float *buf, const float *t, int64_t n0, int64_t nb, const ConvGeom *g) {
    const int64_t O = g->o, P = g->oh * g->ow;
#pragma omp parallel for collapse(2) schedule(static) if (nb * O * P > 32768)
    for (int64_t i = 0; i < nb; i++)
        for (int64_t o = 0; o < O; o++)
            memcpy(buf + o * nb * P + i * P, t + ((n0 + i) * O + o) * P, (size_t)P * sizeof *buf);
}

/* A block of the im2col path: images [n0, n0 + nb) times output rows [oh0, oh0 + rows). */
typedef struct {
    int64_t n0, nb, oh0, rows;
} ConvBlock;

static ConvBlock conv_block(const ConvGeom *g, int64_t n0, int64_t oh0) {
    ConvBlock b = {.n0 = n0, .nb = g->tile_imgs, .oh0 = oh0, .rows = g->tile_rows};
    if (b.nb > g->n - n0) b.nb = g->n - n0;
    if (b.rows > g->oh - oh0) b.rows = g->oh - oh0;
    return b;
}

/* im2col of a whole block: image i fills columns [i*T, (i+1)*T) of col (K, nb*T). */
static void im2col_block(float *col, const float *inp, const ConvGeom *g, const ConvBlock *b) {
    const int64_t T = b->rows * g->ow;
    for (int64_t i = 0; i < b->nb; i++)
        im2col_rows(col + i * T, b->nb * T, inp + (b->n0 + i) * g->c * g->h * g->w, g, b->oh0,
                    b->rows);
}

/* ---- Winograd F(2x2, 3x3) and F(4x4, 3x3) forward ------------------------------------------
 *
 * For a 3x3 stride-1 convolution, each m x m block of outputs ("tile") at output (m ty, m tx)
 * needs only the (m+2) x (m+2) input patch d starting at input (m ty - ph, m tx - pw), and
 * (Lavin & Gray, 2016)
 *     y (m x m) = A^T [ (G g G^T) .* (B^T d B) ] A
 * for the 3x3 filter g of one (o, c) pair. F(2x2, 3x3) (m = 2, points 0, 1, -1, inf):
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]    G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *     A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4x4, 3x3) (m = 4, points 0, 1, -1, 1/2, -2, inf; the matrices at wino4_bt, wino4_g and
 * wino4_at below; docs/ops/conv.md has the choice of points and the error bound).
 * The sum over input channels happens in the transformed domain, where it is a matrix product:
 * for each of the (m+2)^2 positions xi of the transform,
 *     M[xi] (O, T) = U[xi] (O, C) @ V[xi] (C, T),   U = G g G^T,  V = B^T d B,
 * so a convolution becomes 16 (m = 2) or 36 (m = 4) GEMMs of C multiply-adds per element instead
 * of one GEMM of 9C per output: 16/(4*9) = 0.44 or 36/(16*9) = 0.25 of the multiply-adds, plus
 * the transforms, which are additions streamed through memory. Tiles run in blocks of whole
 * tile rows (g->wino_rows of them, across images) so V and M stay a few MiB. Outputs past OH or
 * OW that are not a multiple of m are computed and dropped; patch pixels outside the image are
 * the zero padding. Rounding differs from the im2col path: for m = 2 each transform adds at most
 * 4 terms, for m = 4 the transforms' coefficients reach 8 and their rounding is larger (the
 * bound in docs/ops/conv.md). */

#define WINO_CHUNK 64 /* tiles per inner loop: a chunk's input rows sit on the stack */
/* F(4x4, 3x3)'s chunks: up to WINO4_CHUNK (conv_wino_avx512.h) tiles, as whole tile rows whose
 * count is a multiple of 16 where the row width allows (wino4_chunk_rows), so that its loops
 * run in whole AVX-512 vectors */

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Tile rows of TW tiles per F(4x4, 3x3) chunk (TW <= WINO4_CHUNK): the most that fit
 * WINO4_CHUNK, rounded down to a multiple of 16 / gcd(TW, 16) so that the chunk's tile count is
 * a multiple of 16 (7 tiles at 28x28: 16 rows, 112 tiles, where 18 rows gave 126 = 7 vectors and
 * a remainder of 14 run in scalar code); at least one. */
static int64_t wino4_chunk_rows(int64_t TW) {
    const int64_t fit = WINO4_CHUNK / TW, step = 16 / gcd64(TW, 16);
    return fit >= step ? fit / step * step : fit;
}

/* Outputs per tile side m, tiles per output column and row, and transformed matrices
 * (m + 2)^2 of the Winograd choice in g. */
static inline int64_t wino_tiles_h(const ConvGeom *g) {
    return (g->oh + g->wino_m - 1) / g->wino_m;
}
static inline int64_t wino_tiles_w(const ConvGeom *g) {
    return (g->ow + g->wino_m - 1) / g->wino_m;
}
static inline int64_t wino_nxi(const ConvGeom *g) { return (g->wino_m + 2) * (g->wino_m + 2); }

/* The nxi matrices of U, V and M lie this many floats apart for matrices of n floats: n rounded
 * up to a multiple of 16 plus 16 more. With exactly n (often a power of two) the streams that a
 * transform reads or writes at once fall into the same cache sets and evict each other
 * (measured: the weight transform of a 512x512 layer ran 4x slower). */
static inline int64_t wino_stride(int64_t n) { return (n + 15) / 16 * 16 + 16; }

/* The transforms below run through the variant of the chosen instruction-set level
 * (tensor/isa.h): a dispatch per row of U, or per channel of a block of tile rows, in the
 * caller's parallel loop. Each m = 4 transform is a 1-D one applied to rows, then to columns,
 * with its coefficients multiplied in a fixed order (no FMA contraction in ISO C, so every level
 * rounds alike). */

/* F(2x2, 3x3): row o of U (16, ob, C), the 16 matrices S apart, from output channel o0 + o of
 * weight (O, C, 3, 3): U[xi][o][c] = (G g G^T)[xi / 4][xi % 4] with g = weight[o0 + o, c]
 * — assigns */
static inline ISA_BODY void wino_weights_row_body(float *restrict U, int64_t S,
                                                  const float *restrict weight, int64_t o0,
                                                  int64_t o, int64_t C) {
    for (int64_t c = 0; c < C; c++) {
        const float *w = weight + ((o0 + o) * C + c) * 9;
        float t[4][3]; /* G g: rows of g combined */
        for (int j = 0; j < 3; j++) {
            t[0][j] = w[j];
            t[1][j] = 0.5f * (w[j] + w[3 + j] + w[6 + j]);
            t[2][j] = 0.5f * (w[j] - w[3 + j] + w[6 + j]);
            t[3][j] = w[6 + j];
        }
        for (int i = 0; i < 4; i++) { /* (G g) G^T: columns combined */
            float *u = U + (i * 4) * S + o * C + c;
            u[0] = t[i][0];
            u[S] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            u[2 * S] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            u[3 * S] = t[i][2];
        }
    }
}
ISA_VARIANTS(wino_weights_row, (float *restrict U, int64_t S, const float *restrict weight,
                                int64_t o0, int64_t o, int64_t C), (U, S, weight, o0, o, C))

/* F(4x4, 3x3), points 0, 1, -1, 1/2, -2, inf. G (6x3) applied to the three values g0..g2:
 *     G = [1/2 0 0; 1/6 1/6 1/6; -1/6 1/6 -1/6; -16/15 -8/15 -4/15; 1/30 -1/15 2/15; 0 0 1/2]
 * (Cook-Toom's G with rows 0, 1, 2, 4, 5 halved, and those rows of B^T doubled: powers of two,
 * exact, which leave B^T small integers). The integer combination first, exact up to its
 * additions, then one multiplication by the rounded constant. */
static inline ISA_BODY void wino4_g(float *restrict t, float g0, float g1, float g2) {
    t[0] = 0.5f * g0;
    t[1] = ((g0 + g1) + g2) * (1.0f / 6.0f);
    t[2] = ((g1 - g0) - g2) * (1.0f / 6.0f);
    t[3] = ((4.0f * g0 + 2.0f * g1) + g2) * (-4.0f / 15.0f);
    t[4] = ((g0 - 2.0f * g1) + 4.0f * g2) * (1.0f / 30.0f);
    t[5] = 0.5f * g2;
}

/* B^T (6x6) applied to d0..d5:
 *     B^T = [2 -3 -4 3 2 0; 0 -2 1 5 2 0; 0 2 -5 1 2 0; 0 -2 -1 2 1 0; 0 1 -2 -1 2 0;
 *            0 2 -3 -4 3 2] */
static inline ISA_BODY void wino4_bt(float *restrict b, float d0, float d1, float d2, float d3,
                                     float d4, float d5) {
    b[0] = (2.0f * (d0 + d4) - 3.0f * (d1 - d3)) - 4.0f * d2;
    b[1] = 2.0f * (d4 - d1) + (d2 + 5.0f * d3);
    b[2] = 2.0f * (d1 + d4) + (d3 - 5.0f * d2);
    b[3] = 2.0f * (d3 - d1) + (d4 - d2);
    b[4] = 2.0f * (d4 - d2) + (d1 - d3);
    b[5] = (2.0f * (d1 + d5) - 3.0f * (d2 - d4)) - 4.0f * d3;
}

/* A^T (4x6) applied to m0..m5:
 *     A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1] */
static inline ISA_BODY void wino4_at(float *restrict y, float m0, float m1, float m2, float m3,
                                     float m4, float m5) {
    const float p = m1 + m2, q = m1 - m2;
    y[0] = ((m0 + p) + m3) + m4;
    y[1] = (q + 0.5f * m3) - 2.0f * m4;
    y[2] = (p + 0.25f * m3) + 4.0f * m4;
    y[3] = ((q + 0.125f * m3) - 8.0f * m4) + m5;
}

/* F(4x4, 3x3): row o of U (36, ob, C), the 36 matrices S apart, from output channel o0 + o of
 * weight (O, C, 3, 3): U[xi][o][c] = (G g G^T)[xi / 6][xi % 6] — assigns. Input channels in
 * blocks of WINO_CHUNK, each in three passes that vectorise over the channels: the 9 taps
 * gathered tap-major, each column of g through G, each row of G g through G. (Per channel,
 * the 9 taps 9 floats apart kept the loop scalar, and at 512 channels and 14x14 the weight
 * transform took as long as the input transform.) */
static inline ISA_BODY void wino4_weights_row_body(float *restrict U, int64_t S,
                                                   const float *restrict weight, int64_t o0,
                                                   int64_t o, int64_t C) {
    float w[9][WINO_CHUNK], t[3][6][WINO_CHUNK]; /* t[j][i] = (G g)[i][j] */
    for (int64_t c0 = 0; c0 < C; c0 += WINO_CHUNK) {
        const int64_t nc = C - c0 < WINO_CHUNK ? C - c0 : WINO_CHUNK;
        const float *src = weight + ((o0 + o) * C + c0) * 9;
        for (int64_t c = 0; c < nc; c++)
            for (int k = 0; k < 9; k++) w[k][c] = src[c * 9 + k];
        for (int j = 0; j < 3; j++) /* G g: each column of g through G */
            for (int64_t c = 0; c < nc; c++) {
                float r[6];
                wino4_g(r, w[j][c], w[3 + j][c], w[6 + j][c]);
                for (int i = 0; i < 6; i++) t[j][i][c] = r[i];
            }
        for (int i = 0; i < 6; i++) { /* (G g) G^T: each row of G g through G */
            float *u = U + (i * 6) * S + o * C + c0;
#if !defined(__clang__) /* the six rows of U never overlap */
#pragma GCC ivdep
#endif
            for (int64_t c = 0; c < nc; c++) {
                float r[6];
                wino4_g(r, t[0][i][c], t[1][i][c], t[2][i][c]);
                for (int j = 0; j < 6; j++) u[j * S + c] = r[j];
            }
        }
    }
}
ISA_VARIANTS(wino4_weights_row, (float *restrict U, int64_t S, const float *restrict weight,
                                 int64_t o0, int64_t o, int64_t C), (U, S, weight, o0, o, C))

/* U (nxi, ob, C) for output channels [o0, o0 + ob) of weight (O, C, 3, 3), tiles of m x m
 * outputs — assigns */
static void wino_weights(float *U, const float *weight, int64_t m, int64_t o0, int64_t ob,
                         int64_t C) {
    const int64_t S = wino_stride(ob * C); /* distance between successive xi */
#pragma omp parallel for schedule(static) if (ob * C > 4096)
    for (int64_t o = 0; o < ob; o++) {
        if (m == 4)
            wino4_weights_row(U, S, weight, o0, o, C);
        else
            wino_weights_row(U, S, weight, o0, o, C);
    }
}

/* Rows [ih0, ih0 + rows) of one channel x (H, W), columns [iw0, iw0 + len), into d (rows, ld)
 * with the zero padding filled in — assigns. */
static inline ISA_BODY void wino_patch_rows(float *restrict d, int64_t ld, int rows,
                                            const float *restrict x, const ConvGeom *g,
                                            int64_t ih0, int64_t iw0, int64_t len) {
    for (int i = 0; i < rows; i++) {
        float *di = d + i * ld;
        const int64_t ih = ih0 + i;
        if (ih < 0 || ih >= g->h) {
            memset(di, 0, (size_t)len * sizeof(float));
            continue;
        }
        const float *row = x + ih * g->w;
        /* [lo, hi): the j with 0 <= iw0 + j < W, both clamped to [0, len] (a padding wider
         * than the chunk puts whole chunks outside the image) */
        int64_t lo = iw0 < 0 ? -iw0 : 0, hi = g->w - iw0;
        if (lo > len) lo = len;
        if (hi > len) hi = len;
        if (hi < lo) hi = lo;
        /* A loop, not memcpy: GCC inlines a memcpy of unknown length here as `rep movsq`,
         * whose start-up cost on rows of a few dozen floats was a quarter of the F(4x4, 3x3)
         * input transform at 28x28. */
        for (int64_t j = 0; j < lo; j++) di[j] = 0.0f;
        for (int64_t j = lo; j < hi; j++) di[j] = row[iw0 + j];
        for (int64_t j = hi; j < len; j++) di[j] = 0.0f;
    }
}

/* F(2x2, 3x3): V[xi][c][col0 + t] = (B^T d B)[xi] for the tiles tx0 .. tx0 + nt - 1 of tile row
 * ty of one channel x (H, W) — assigns. V points at channel c's row of V[0]; rows of successive
 * xi are cstride apart. */
static inline ISA_BODY void wino_input_chunk(float *restrict V, int64_t cstride, int64_t col0,
                                             const float *restrict x, const ConvGeom *g,
                                             int64_t ty, int64_t tx0, int64_t nt) {
    float d[4][2 * WINO_CHUNK + 2];
    wino_patch_rows(d[0], 2 * WINO_CHUNK + 2, 4, x, g, 2 * ty - g->pad_h, 2 * tx0 - g->pad_w,
                    2 * nt + 2);
    float *v[16];
    for (int k = 0; k < 16; k++) v[k] = V + k * cstride + col0;
    /* The 16 rows v[k] never overlap each other or d: ivdep lets the loop vectorise over t. */
#if !defined(__clang__) /* clang does not vectorise this loop either way */
#pragma GCC ivdep
#endif
    for (int64_t t = 0; t < nt; t++) {
        float u[4][4]; /* d B: columns combined, per patch row */
        for (int i = 0; i < 4; i++) {
            const float *r = d[i] + 2 * t;
            u[i][0] = r[0] - r[2];
            u[i][1] = r[1] + r[2];
            u[i][2] = r[2] - r[1];
            u[i][3] = r[1] - r[3];
        }
        for (int j = 0; j < 4; j++) { /* B^T (d B): rows combined */
            v[0 + j][t] = u[0][j] - u[2][j];
            v[4 + j][t] = u[1][j] + u[2][j];
            v[8 + j][t] = u[2][j] - u[1][j];
            v[12 + j][t] = u[1][j] - u[3][j];
        }
    }
}

/* F(4x4, 3x3): as wino_input_chunk, 6x6 patches at input (4 ty - ph, 4 tx - pw), 36 rows of V
 * cstride apart, for the tiles tx0 .. tx0 + nt - 1 of nr successive tile rows rf .. rf + nr - 1
 * (flattened (n, ty)) of input channel c of inp (N, C, H, W): tile t of row rf + rr goes to
 * column col0 + rr nt + t (so nr > 1 needs whole rows, nt = TW), nr nt <= WINO4_CHUNK — assigns.
 * V = B^T d B in two passes, each a loop that vectorises:
 *   vertical: the six input rows of a tile row combined by B^T, read in place from x, column by
 *     column (unit stride, every column of the chunk at once) into s (zeros where a row or a
 *     column lies in the padding) — no copy of the patch first;
 *   horizontal: each of those six rows through B^T along the columns, tile by tile (tile q
 *     reads s[a][4q .. 4q + 5]), into the six rows of V of each a.
 * To keep the horizontal loop running over all nr nt tiles of the chunk (loops over the 7 tiles
 * of a 28x28 tile row ran mostly in their scalar remainders), the rows of s of tile row rr lie
 * 4 nt floats after those of row rr - 1, so that tile q of the chunk starts at 4q; the two
 * columns that each row reads past its last tile (4 nt, 4 nt + 1) are kept in `e` before the
 * next row's pass overwrites them, and the last tile of each row but the last is recomputed
 * from them after the vector loop. (The previous form copied each 6-row patch into a buffer,
 * then combined columns and then rows: a third of its time was the copy, which ran at the same
 * speed at every instruction-set level.) */
static inline ISA_BODY void wino4_input_chunk(float *restrict V, int64_t cstride, int64_t col0,
                                              const float *restrict inp, const ConvGeom *g,
                                              int64_t c, int64_t rf, int64_t nr, int64_t tx0,
                                              int64_t nt) {
    float s[6][4 * WINO4_CHUNK + 2]; /* s[a][x] = (B^T d)[a] at chunk column x */
    float e[6][WINO4_CHUNK][2]; /* e[a][rr] = s[a][4 nt (rr + 1) + 0, 1] as row rr left them */
    float zeros[4 * WINO4_CHUNK + 2];
    const int64_t TH = wino_tiles_h(g), nq = nr * nt, len = 4 * nt + 2;
    const int64_t iw0 = 4 * tx0 - g->pad_w, plane = g->h * g->w;
    /* [lo, hi): the chunk columns j with 0 <= iw0 + j < W, both clamped to [0, len] */
    int64_t lo = iw0 < 0 ? -iw0 : 0, hi = g->w - iw0;
    if (lo > len) lo = len;
    if (hi > len) hi = len;
    if (hi < lo) hi = lo;
    for (int64_t j = 0; j < len; j++) zeros[j] = 0.0f;
    for (int64_t rr = 0; rr < nr; rr++) {
        const int64_t n = (rf + rr) / TH, ty = (rf + rr) % TH, off = 4 * nt * rr;
        const float *x = inp + (n * g->c + c) * g->h * g->w;
        /* input row ih = 4 ty - ph + i, chunk column j at r[i][o[i] + j]; a row in the
         * padding reads zeros instead (o = -lo: indices [0, hi - lo)) */
        const float *r[6];
        int64_t o[6];
        for (int i = 0; i < 6; i++) {
            const int64_t ih = 4 * ty - g->pad_h + i;
            const bool in = ih >= 0 && ih < g->h;
            r[i] = in ? x + ih * g->w : zeros;
            o[i] = in ? iw0 : -lo;
        }
        if (rr > 0)
            for (int a = 0; a < 6; a++) {
                e[a][rr - 1][0] = s[a][off];
                e[a][rr - 1][1] = s[a][off + 1];
            }
        for (int a = 0; a < 6; a++) {
            for (int64_t j = 0; j < lo; j++) s[a][off + j] = 0.0f;
            for (int64_t j = hi; j < len; j++) s[a][off + j] = 0.0f;
        }
        float *s0 = s[0] + off, *s1 = s[1] + off, *s2 = s[2] + off, *s3 = s[3] + off,
              *s4 = s[4] + off, *s5 = s[5] + off;
        const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *r4 = r[4], *r5 = r[5];
        const int64_t o0 = o[0], o1 = o[1], o2 = o[2], o3 = o[3], o4 = o[4], o5 = o[5];
        /* the six rows of s never overlap each other or the input */
#if !defined(__clang__)
#pragma GCC ivdep
#endif
        for (int64_t j = lo; j < hi; j++) {
            float b[6];
            wino4_bt(b, r0[o0 + j], r1[o1 + j], r2[o2 + j], r3[o3 + j], r4[o4 + j], r5[o5 + j]);
            s0[j] = b[0], s1[j] = b[1], s2[j] = b[2], s3[j] = b[3], s4[j] = b[4], s5[j] = b[5];
        }
        /* The same rows of the next input channel, which the caller transforms next: one
         * prefetch per cache line into L2, so that the next channel's loads do not wait on
         * memory (they did: a third of the transform at 112x112). */
        if (c + 1 < g->c)
            for (int i = 0; i < 6; i++)
                if (r[i] != zeros)
                    for (int64_t j = lo; j < hi; j += 16)
                        __builtin_prefetch(r[i] + o[i] + j + plane, 0, 2);
    }
    for (int a = 0; a < 6; a++) { /* (B^T d) B: each row of s through B^T, tile by tile */
        float *v0 = V + (a * 6) * cstride + col0, *v1 = v0 + cstride, *v2 = v1 + cstride,
              *v3 = v2 + cstride, *v4 = v3 + cstride, *v5 = v4 + cstride;
        const float *sa = s[a];
        /* the six rows of V never overlap each other or s */
#if !defined(__clang__)
#pragma GCC ivdep
#endif
        for (int64_t q = 0; q < nq; q++) {
            const float *t = sa + 4 * q;
            float b[6];
            wino4_bt(b, t[0], t[1], t[2], t[3], t[4], t[5]);
            v0[q] = b[0], v1[q] = b[1], v2[q] = b[2], v3[q] = b[3], v4[q] = b[4], v5[q] = b[5];
        }
        for (int64_t rr = 0; rr + 1 < nr; rr++) { /* the last tile of each row, from e */
            const int64_t q = rr * nt + nt - 1;
            const float *t = sa + 4 * q;
            float b[6];
            wino4_bt(b, t[0], t[1], t[2], t[3], e[a][rr][0], e[a][rr][1]);
            for (int k = 0; k < 6; k++) V[(a * 6 + k) * cstride + col0 + q] = b[k];
        }
    }
}

/* dst[j] = act((dst[j] + r[j]) + b) with `residual`, else act(r[j] + b), for j < w, act = ReLU
 * when `relu` — assigns (accumulates with `residual`). The forward's epilogue on one output row
 * of the Winograd path, in the order of conv_epilogue_row. */
static inline ISA_BODY void wino_store_row(float *restrict dst, const float *restrict r,
                                           int64_t w, float b, bool residual, bool relu) {
    if (residual && relu)
        for (int64_t j = 0; j < w; j++) {
            const float v = (dst[j] + r[j]) + b;
            dst[j] = v > 0.0f ? v : 0.0f;
        }
    else if (residual)
        for (int64_t j = 0; j < w; j++) dst[j] = (dst[j] + r[j]) + b;
    else if (relu)
        for (int64_t j = 0; j < w; j++) {
            const float v = r[j] + b;
            dst[j] = v > 0.0f ? v : 0.0f;
        }
    else
        for (int64_t j = 0; j < w; j++) dst[j] = r[j] + b;
}

/* F(2x2, 3x3): out rows 2ty, 2ty + 1 of one (n, o) plane y (OH, OW), tiles tx0 .. tx0 + nt - 1,
 * from M[xi][o][col0 + t], through wino_store_row (bias, residual, ReLU) — assigns, or
 * accumulates with `residual`. */
static inline ISA_BODY void wino_output_chunk(float *restrict y, const float *restrict M,
                                              int64_t ostride, int64_t col0, float bias,
                                              bool residual, bool relu, const ConvGeom *g,
                                              int64_t ty, int64_t tx0, int64_t nt) {
    float r0[2 * WINO_CHUNK], r1[2 * WINO_CHUNK];
    const float *m[16];
    for (int k = 0; k < 16; k++) m[k] = M + k * ostride + col0;
    for (int64_t t = 0; t < nt; t++) {
        float s[2][4]; /* A^T m: rows combined */
        for (int j = 0; j < 4; j++) {
            s[0][j] = m[j][t] + m[4 + j][t] + m[8 + j][t];
            s[1][j] = m[4 + j][t] - m[8 + j][t] - m[12 + j][t];
        }
        r0[2 * t] = s[0][0] + s[0][1] + s[0][2]; /* (A^T m) A: columns combined */
        r0[2 * t + 1] = s[0][1] - s[0][2] - s[0][3];
        r1[2 * t] = s[1][0] + s[1][1] + s[1][2];
        r1[2 * t + 1] = s[1][1] - s[1][2] - s[1][3];
    }
    const int64_t ow0 = 2 * tx0;
    const int64_t w = 2 * nt < g->ow - ow0 ? 2 * nt : g->ow - ow0; /* drop a column past OW */
    wino_store_row(y + 2 * ty * g->ow + ow0, r0, w, bias, residual, relu);
    if (2 * ty + 1 < g->oh)
        wino_store_row(y + (2 * ty + 1) * g->ow + ow0, r1, w, bias, residual, relu);
}

/* F(4x4, 3x3): out rows 4ty .. 4ty + 3 (those below OH) of output channel oc of out
 * (N, O, OH, OW), as wino_output_chunk, for the tiles tx0 .. tx0 + nt - 1 of nr successive tile
 * rows rf .. rf + nr - 1 (flattened (n, ty)) from columns col0 + rr nt + t of M, nr nt <=
 * WINO4_CHUNK (nr > 1 needs whole rows) — assigns, or accumulates with `residual`. One loop over
 * all nr nt tiles of the chunk, which vectorises, then the rows stored. */
static inline ISA_BODY void wino4_output_chunk(float *restrict out, const float *restrict M,
                                               int64_t ostride, int64_t col0, float bias,
                                               bool residual, bool relu, const ConvGeom *g,
                                               int64_t oc, int64_t rf, int64_t nr, int64_t tx0,
                                               int64_t nt) {
    float r[4][4 * WINO4_CHUNK]; /* r[i][4 nt rr + x]: output row 4 ty + i, column 4 tx0 + x */
    const float *m[36];
    const int64_t TH = wino_tiles_h(g), nq = nr * nt;
    for (int k = 0; k < 36; k++) m[k] = M + k * ostride + col0;
    for (int64_t q0 = 0; q0 < nq; q0 += 16) {
        /* 64 tiles ahead in each of the 36 rows of M, which are more streams than the hardware
         * prefetcher follows (measured at the avx512 level: a third of the transform) */
        for (int k = 0; k < 36; k++) __builtin_prefetch(m[k] + q0 + 64, 0, 3);
        const int64_t q1 = q0 + 16 < nq ? q0 + 16 : nq;
        for (int64_t q = q0; q < q1; q++) {
            float s[4][6]; /* A^T m: each column of m through A^T */
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++) {
                float a[4];
                wino4_at(a, m[j][q], m[6 + j][q], m[12 + j][q], m[18 + j][q], m[24 + j][q],
                         m[30 + j][q]);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) s[i][j] = a[i];
            }
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) /* (A^T m) A: each row through A^T */
                wino4_at(r[i] + 4 * q, s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5]);
        }
    }
    const int64_t ow0 = 4 * tx0, plane = g->oh * g->ow;
    const int64_t w = 4 * nt < g->ow - ow0 ? 4 * nt : g->ow - ow0; /* drop columns past OW */
    for (int64_t rr = 0; rr < nr; rr++) {
        const int64_t n = (rf + rr) / TH, ty = (rf + rr) % TH;
        float *y = out + (n * g->o + oc) * plane;
        for (int i = 0; i < 4 && 4 * ty + i < g->oh; i++) {
            float *dst = y + (4 * ty + i) * g->ow + ow0;
            wino_store_row(dst, r[i] + 4 * nt * rr, w, bias, residual, relu);
            /* the same row of the next output channel, which the caller stores next */
            if (oc + 1 < g->o)
                for (int64_t j = 0; j < w; j += 16) __builtin_prefetch(dst + plane + j, 0, 3);
        }
    }
}

/* Tiles per Winograd block: wino_rows rows of wino_tiles_w tiles. */
static int64_t wino_tiles_per_block(const ConvGeom *g) { return g->wino_rows * wino_tiles_w(g); }

/* Tile rows r0 .. r0 + R - 1 (flattened (n, ty)) of channel c into columns [0, R*TW) of V's
 * rows (V[xi] is (C, T), the nxi matrices sv apart) — assigns. F(4x4, 3x3) takes whole tile
 * rows per chunk (wino4_chunk_rows), so its loops run over 112 or 128 tiles however narrow the
 * image; F(2x2, 3x3), and F(4x4, 3x3) on rows wider than a chunk, go row by row. */
static inline ISA_BODY void wino_input_rows_body(float *V, int64_t sv, int64_t T,
                                                 const float *inp, const ConvGeom *g, int64_t r0,
                                                 int64_t R, int64_t c) {
    const int64_t TH = wino_tiles_h(g), TW = wino_tiles_w(g);
    const int64_t cw = g->wino_m == 4 ? WINO4_CHUNK : WINO_CHUNK; /* tiles per chunk */
    /* at the avx512 level F(4x4, 3x3) takes the intrinsics form (conv_wino_avx512.h) */
    const bool avx512 = isa_level() == ISA_AVX512;
    if (g->wino_m == 4 && TW <= WINO4_CHUNK) {
        const int64_t rows = wino4_chunk_rows(TW);
        for (int64_t r = 0; r < R; r += rows) {
            const int64_t nr = rows < R - r ? rows : R - r;
            if (avx512)
                wino4_input_chunk_avx512(V + c * T, sv, r * TW, inp, g, c, r0 + r, nr, 0, TW);
            else
                wino4_input_chunk(V + c * T, sv, r * TW, inp, g, c, r0 + r, nr, 0, TW);
        }
        return;
    }
    for (int64_t r = 0; r < R; r++) {
        const int64_t n = (r0 + r) / TH, ty = (r0 + r) % TH;
        const float *x = inp + (n * g->c + c) * g->h * g->w;
        for (int64_t tx0 = 0; tx0 < TW; tx0 += cw) {
            const int64_t nt = TW - tx0 < cw ? TW - tx0 : cw;
            if (g->wino_m == 4 && avx512)
                wino4_input_chunk_avx512(V + c * T, sv, r * TW + tx0, inp, g, c, r0 + r, 1, tx0,
                                         nt);
            else if (g->wino_m == 4)
                wino4_input_chunk(V + c * T, sv, r * TW + tx0, inp, g, c, r0 + r, 1, tx0, nt);
            else
                wino_input_chunk(V + c * T, sv, r * TW + tx0, x, g, ty, tx0, nt);
        }
    }
}
ISA_VARIANTS(wino_input_rows, (float *V, int64_t sv, int64_t T, const float *inp,
                               const ConvGeom *g, int64_t r0, int64_t R, int64_t c),
             (V, sv, T, inp, g, r0, R, c))

/* Output rows of tile rows r0 .. r0 + R - 1 for output channel o0 + o, from M (M[xi] is (ob, T),
 * the nxi matrices sm apart), plus its bias, the residual and the ReLU as asked — assigns
 * (accumulates with `residual`). Chunks as in wino_input_rows. */
static inline ISA_BODY void wino_output_rows_body(float *out, const float *M, int64_t sm,
                                                  int64_t T, const float *bias, bool residual,
                                                  bool relu, const ConvGeom *g, int64_t r0,
                                                  int64_t R, int64_t o0, int64_t o) {
    const int64_t TH = wino_tiles_h(g), TW = wino_tiles_w(g);
    const int64_t cw = g->wino_m == 4 ? WINO4_CHUNK : WINO_CHUNK; /* tiles per chunk */
    const float b = bias ? bias[o0 + o] : 0.0f;
    const bool avx512 = isa_level() == ISA_AVX512; /* conv_wino_avx512.h for F(4x4, 3x3) */
    if (g->wino_m == 4 && TW <= WINO4_CHUNK) {
        const int64_t rows = wino4_chunk_rows(TW);
        for (int64_t r = 0; r < R; r += rows) {
            const int64_t nr = rows < R - r ? rows : R - r;
            if (avx512)
                wino4_output_chunk_avx512(out, M + o * T, sm, r * TW, b, residual, relu, g,
                                          o0 + o, r0 + r, nr, 0, TW);
            else
                wino4_output_chunk(out, M + o * T, sm, r * TW, b, residual, relu, g, o0 + o,
                                   r0 + r, nr, 0, TW);
        }
        return;
    }
    for (int64_t r = 0; r < R; r++) {
        const int64_t n = (r0 + r) / TH, ty = (r0 + r) % TH;
        float *y = out + (n * g->o + o0 + o) * g->oh * g->ow;
        for (int64_t tx0 = 0; tx0 < TW; tx0 += cw) {
            const int64_t nt = TW - tx0 < cw ? TW - tx0 : cw;
            if (g->wino_m == 4 && avx512)
                wino4_output_chunk_avx512(out, M + o * T, sm, r * TW + tx0, b, residual, relu, g,
                                          o0 + o, r0 + r, 1, tx0, nt);
            else if (g->wino_m == 4)
                wino4_output_chunk(out, M + o * T, sm, r * TW + tx0, b, residual, relu, g, o0 + o,
                                   r0 + r, 1, tx0, nt);
            else
                wino_output_chunk(y, M + o * T, sm, r * TW + tx0, b, residual, relu, g, ty, tx0,
                                  nt);
        }
    }
}
ISA_VARIANTS(wino_output_rows, (float *out, const float *M, int64_t sm, int64_t T,
                                const float *bias, bool residual, bool relu, const ConvGeom *g,
                                int64_t r0, int64_t R, int64_t o0, int64_t o),
             (out, M, sm, T, bias, residual, relu, g, r0, R, o0, o))

static int thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The own fp32 GEMM's share of a Winograd forward (g->gemm_f32_floats > 0), its whole scratch
 * (U itself is not kept): the nxi matrices U[xi] packed once per slice of output channels,
 * wino_f32_pa floats apart; per thread, a B scratch (for blocks of up to wino_tiles_per_block
 * tiles) and wino_f32_ut floats for one panel of output channels: for F(2x2, 3x3) its nxi
 * matrices, which its weight transform writes and the packing reads while they are in L2; for
 * F(4x4, 3x3), which writes the panels directly, the panel's 9 C taps transposed. */
static int64_t wino_f32_pa(const ConvGeom *g) {
    return (gemm_f32_packed_a_floats(g->wino_o, g->c) + 15) / 16 * 16;
}
static int64_t wino_f32_bs(const ConvGeom *g, int64_t T) {
    return (gemm_f32_b_scratch_floats(T, g->c) + 15) / 16 * 16;
}
static int64_t wino_f32_ut(const ConvGeom *g) {
    const int64_t mr = gemm_f32_blocking().mr;
    return g->wino_m == 4 ? (9 * g->c * mr + 15) / 16 * 16
                          : wino_nxi(g) * wino_stride(mr * g->c);
}
static int64_t wino_f32_floats(const ConvGeom *g) {
    return wino_nxi(g) * wino_f32_pa(g) +
           g->wino_threads * (wino_f32_bs(g, wino_tiles_per_block(g)) + wino_f32_ut(g));
}
typedef struct {
    float *up; /* packed U[0], or NULL: gemm_cpu */
    float *bs; /* B scratch of thread 0; thread t's at bs + t * bsw */
    float *ut; /* a panel's U (F2) or taps (F4) of thread 0; thread t's at ut + t * utw */
    int64_t pa, bsw, utw;
} WinoF32;

/* U[xi] of output channels [o0, o0 + ob) packed for the own GEMM into f->up, a panel of mr
 * output channels at a time on each thread: F(4x4, 3x3) straight into the panels; F(2x2, 3x3)
 * its nxi matrices (mr, C) transformed into the thread's f->ut, then packed from there —
 * assigns. */
static void wino_weights_packed(const WinoF32 *f, const float *weight, const ConvGeom *g,
                                int64_t o0, int64_t ob) {
    const int64_t C = g->c, nxi = wino_nxi(g), mr = gemm_f32_blocking().mr;
    const int64_t S = wino_stride(mr * C), panels = (ob + mr - 1) / mr;
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < panels; q++) {
        float *ut = f->ut + thread_num() * f->utw;
        const int64_t rows = mr < ob - q * mr ? mr : ob - q * mr;
        if (g->wino_m == 4) {
            wino4_weights_panel_avx512(f->up, f->pa, ut, weight, o0, q, rows, ob, C);
            continue;
        }
        for (int64_t o = 0; o < rows; o++) wino_weights_row(ut, S, weight, o0 + q * mr, o, C);
        for (int64_t xi = 0; xi < nxi; xi++)
            gemm_f32_pack_a_panel(f->up + xi * f->pa, ut + xi * S, ob, C, q, C);
    }
}

/* M[xi] (ob, T) = U[xi] (ob, C) @ V[xi] (C, T) on the calling thread (thread tid): the own
 * fp32 GEMM with U[xi] packed beforehand, or the core GEMM — assigns. */
static void wino_product(float *M, const float *U, const float *V, const WinoF32 *f,
                         int64_t xi, int64_t ob, int64_t T, int64_t C, int tid) {
    /* U: all nxi matrices (NULL with the own GEMM) */
    if (f->up)
        gemm_f32_packed_single(M, f->up + xi * f->pa, V, ob, T, C, false, 1.0f, 0.0f, T, T,
                               f->bs + tid * f->bsw, NULL);
    else
        gemm_cpu(M, U + xi * wino_stride(ob * C), V, 1, ob, T, C, false, false, 1.0f, 0.0f, C,
                 T, T, 0, 0, 0);
}

/* One block of tile rows [r0, r0 + R) through the whole pipeline on the calling thread: input
 * transform into V (nxi, C, T), nxi single-threaded GEMMs into M (nxi, ob, T), output transform
 * into out for output channels [o0, o0 + ob) — assigns. */
static void wino_block(float *out, const float *inp, const float *bias, bool residual, bool relu,
                       const float *U, float *V, float *M, const WinoF32 *f, const ConvGeom *g,
                       int64_t r0, int64_t R, int64_t o0, int64_t ob) {
    const int64_t C = g->c, T = R * wino_tiles_w(g), nxi = wino_nxi(g);
    const int64_t sv = wino_stride(C * T), sm = wino_stride(ob * T);
    for (int64_t c = 0; c < C; c++) wino_input_rows(V, sv, T, inp, g, r0, R, c);
    /* inside the parallel region each GEMM runs on this thread alone */
    const int tid = thread_num();
    for (int64_t xi = 0; xi < nxi; xi++)
        wino_product(M + xi * sm, U, V + xi * sv, f, xi, ob, T, C, tid);
    for (int64_t o = 0; o < ob; o++)
        wino_output_rows(out, M, sm, T, bias, residual, relu, g, r0, R, o0, o);
}

/* The stages of wino_block for one block of all tiles, each stage split across the threads:
 * for small images, where per-thread blocks would make the GEMMs too thin. The input transform
 * is skipped when V already holds it (a later slice of output channels). */
static void wino_block_shared(float *out, const float *inp, const float *bias, bool residual,
                              bool relu, const float *U, float *V, float *M, const WinoF32 *f,
                              const ConvGeom *g, int64_t o0, int64_t ob, bool transform_input) {
    const int64_t C = g->c, R = g->n * wino_tiles_h(g), T = R * wino_tiles_w(g);
    const int64_t sv = wino_stride(C * T), sm = wino_stride(ob * T);
    const int64_t nxi = wino_nxi(g);
    if (transform_input) {
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < C; c++) wino_input_rows(V, sv, T, inp, g, 0, R, c);
    }
    /* the nxi products split across the threads, each GEMM on one thread */
#pragma omp parallel for schedule(static)
    for (int64_t xi = 0; xi < nxi; xi++)
        wino_product(M + xi * sm, U, V + xi * sv, f, xi, ob, T, C, thread_num());
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < ob; o++)
        wino_output_rows(out, M, sm, T, bias, residual, relu, g, 0, R, o0, o);
}

static void conv2d_forward_winograd(float *out, const float *inp, const float *weight,
                                    const float *bias, float *col, float *ybuf,
                                    const ConvGeom *g, bool residual, bool relu) {
    /* out (N,O,OH,OW), inp (N,C,H,W), weight (O,C,3,3), bias (O) or NULL; scratch col holds
     * U (nxi, wino_o, C) then V (nxi, C, Tb), ybuf holds M (nxi, wino_o, Tb), one V and one M
     * per thread when blocks are per thread; nxi = (wino_m + 2)^2, Tb = wino_tiles_per_block,
     * each of the nxi matrices wino_stride apart — assigns out = act(conv + bias), or with
     * `residual` accumulates out = act((out + conv) + bias), act = ReLU when `relu` (the output
     * transform applies it).
     *
     * Large images: each thread takes whole blocks of tile rows through the whole pipeline in
     * its own V and M, so the only barriers are the two around each slice of output channels.
     * (Splitting every stage of every block across the threads put three barriers per block,
     * and on the development VM a barrier can cost milliseconds when a vCPU is descheduled:
     * 2-3x slower at 224 px.) Small images (all tiles in one block): every stage is split
     * across the threads instead, which keeps the GEMMs as wide as the whole batch. */
    CHECK(g->wino_m == 2 || g->wino_m == 4, "conv2d Winograd: tiles of %lld outputs (2 or 4)",
          (long long)g->wino_m);
    const int64_t C = g->c, O = g->o, nxi = wino_nxi(g);
    const int64_t rows_total = g->n * wino_tiles_h(g);
    const int64_t blocks = (rows_total + g->wino_rows - 1) / g->wino_rows;
    const int64_t tb = wino_tiles_per_block(g);
    /* the own GEMM keeps no U: its packed copy and buffers follow the V copies */
    const bool own = g->gemm_f32_floats > 0;
    float *U = own ? NULL : col, *V0 = own ? col : col + nxi * wino_stride(g->wino_o * C);
    float *M0 = ybuf;
    const int64_t copies = g->wino_per_thread ? g->wino_threads : 1;
    WinoF32 f = {0};
    if (own) {
        f.pa = wino_f32_pa(g);
        f.bsw = wino_f32_bs(g, tb);
        f.utw = wino_f32_ut(g);
        f.up = V0 + copies * nxi * wino_stride(C * tb);
        f.bs = f.up + nxi * f.pa;
        f.ut = f.bs + g->wino_threads * f.bsw;
    }
    for (int64_t o0 = 0; o0 < O; o0 += g->wino_o) {
        /* Output channels in slices of wino_o so that U stays within its budget. */
        const int64_t ob = g->wino_o < O - o0 ? g->wino_o : O - o0;
        if (own)
            wino_weights_packed(&f, weight, g, o0, ob);
        else
            wino_weights(U, weight, g->wino_m, o0, ob, C);
        if (!g->wino_per_thread) { /* one block; its input transform serves every slice */
            wino_block_shared(out, inp, bias, residual, relu, U, V0, M0, &f, g, o0, ob, o0 == 0);
            continue;
        }
#pragma omp parallel num_threads(g->wino_threads)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *V = V0 + tid * nxi * wino_stride(C * tb);
            float *M = M0 + tid * nxi * wino_stride(g->wino_o * tb);
#pragma omp for schedule(dynamic, 1)
            for (int64_t blk = 0; blk < blocks; blk++) {
                const int64_t r0 = blk * g->wino_rows;
                const int64_t R = g->wino_rows < rows_total - r0 ? g->wino_rows : rows_total - r0;
                wino_block(out, inp, bias, residual, relu, U, V, M, &f, g, r0, R, o0, ob);
            }
        }
    }
}

/* The Winograd forward under PRECISION_BF16 (a frozen weight, tensor/ops/gemm_bf16.h), always
 * F(2x2, 3x3): the 16 products of each block go through the bf16 GEMM, which rounds U and V to
 * bf16 as it packs them and sums in float32; the transforms stay float32. All output channels
 * at once (wino_o = O, so each block's input transform serves every output channel) and blocks
 * of wino_rows tile rows across images, with every stage split across the threads: the bf16
 * GEMM runs on all of them (the 16 products in one batched call), and wide blocks amortise its
 * packing of U[xi] (O x C pairs per block). Scratch: col holds
 * U (16, O, C) then V (16, C, Tb), ybuf M (16, O, Tb), Tb = wino_tiles_per_block, each of the 16
 * matrices wino_stride apart; packs gemm_bf16_batched_scratch_bytes(16, false, O, Tb, C) —
 * assigns
 * out = act(conv + bias), or with `residual` accumulates out = act((out + conv) + bias). */
static void conv2d_forward_winograd_bf16(float *out, const float *inp, const float *weight,
                                         const float *bias, float *col, float *ybuf,
                                         const ConvGeom *g, bool residual, bool relu,
                                         void *packs) {
    const int64_t C = g->c, O = g->o, TW = wino_tiles_w(g);
    const int64_t rows_total = g->n * wino_tiles_h(g), su = wino_stride(O * C);
    CHECK(g->wino_o == O && !g->wino_per_thread && g->wino_m == 2, "conv2d bf16 Winograd: blocks "
          "of %lld of %lld output channels, per thread %lld, tiles of %lld (expected all channels "
          "in shared blocks, tiles of 2)", (long long)g->wino_o, (long long)O,
          (long long)g->wino_per_thread, (long long)g->wino_m);
    float *U = col, *V = col + 16 * su, *M = ybuf;
    wino_weights(U, weight, 2, 0, O, C);
    for (int64_t r0 = 0; r0 < rows_total; r0 += g->wino_rows) {
        const int64_t R = g->wino_rows < rows_total - r0 ? g->wino_rows : rows_total - r0;
        const int64_t T = R * TW, sv = wino_stride(C * T), sm = wino_stride(O * T);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < C; c++) wino_input_rows(V, sv, T, inp, g, r0, R, c);
        /* M[xi] (O, T) = U[xi] (O, C) @ V[xi] (C, T): the 16 products in one batched call
         * on all the threads */
        gemm_bf16_batched_cpu(M, U, V, 16, O, T, C, false, false, 1.0f, 0.0f, C, T, T, su, sv, sm,
                              packs, NULL);
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < O; o++)
            wino_output_rows(out, M, sm, T, bias, residual, relu, g, r0, R, 0, o);
    }
}

/* C (m, n) = A (m, k) @ B (k, n) + beta C, row-major with row strides lda/ldb/ldc: the fp32 core
 * GEMM, or the bf16 one (tensor/ops/gemm_bf16.h) when bf16_scratch is not NULL, which then also
 * applies the epilogue ep (bias per row of C, ReLU) as it stores C. */
static void conv_gemm(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                      float beta, int64_t lda, int64_t ldb, int64_t ldc, void *bf16_scratch,
                      const GemmEpilogue *ep) {
    if (bf16_scratch)
        gemm_bf16_cpu(c, a, b, m, n, k, false, false, 1.0f, beta, lda, ldb, ldc, bf16_scratch, ep);
    else
        gemm_cpu(c, a, b, 1, m, n, k, false, false, 1.0f, beta, lda, ldb, ldc, 0, 0, 0);
}

/* The forward without Winograd: 1x1 GEMMs or im2col blocks, through conv_gemm, then the
 * epilogue (bias, ReLU) — assigns, or with `residual` adds the convolution to what out holds
 * (the GEMMs accumulate onto it, beta = 1). The bf16 GEMM applies the epilogue as it stores
 * each product that lands in out directly, and so does the own fp32 GEMM of a 1x1 convolution
 * at the avx512 level (g->gemm_f32_floats, col its scratch); OpenBLAS leaves it to one pass. */
static void conv2d_forward_gemm(float *out, const float *inp, const float *weight,
                                const float *bias, float *col, float *ybuf, const ConvGeom *g,
                                bool residual, bool relu, void *bf16_scratch) {
    const int64_t K = g->c * g->kh * g->kw, P = g->oh * g->ow;
    const int64_t in_img = g->c * g->h * g->w, out_img = g->o * P;
    const float beta = residual ? 1.0f : 0.0f;
    const GemmEpilogue ep = {.row_bias = bias, .col_bias = NULL, .relu = relu};
    if (conv_pointwise(g)) {
        if (bf16_scratch) { /* one batched call: the weights packed once for every image */
            gemm_bf16_batched_cpu(out, weight, inp, g->n, g->o, P, g->c, false, false, 1.0f, beta,
                                  g->c, P, P, 0, in_img, out_img, bf16_scratch, &ep);
            return;
        }
        if (g->gemm_f32_floats > 0) { /* the own fp32 GEMM, epilogue fused; col is its scratch */
            gemm_f32_batched_cpu(out, weight, inp, g->n, g->o, P, g->c, false, false, 1.0f, beta,
                                 g->c, P, P, 0, in_img, out_img, col, &ep);
            return;
        }
        /* one batched call: the weights shared by every image */
        gemm_cpu(out, weight, inp, g->n, g->o, P, g->c, false, false, 1.0f, beta, g->c, P, P, 0,
                 in_img, out_img);
        conv_epilogue(out, bias, relu, g->n, out_img, g->o, P, P);
        return;
    }
    for (int64_t n0 = 0; n0 < g->n; n0 += g->tile_imgs) {
        for (int64_t oh0 = 0; oh0 < g->oh; oh0 += g->tile_rows) {
            const ConvBlock b = conv_block(g, n0, oh0);
            const int64_t T = b.rows * g->ow, ld = b.nb * T;
            im2col_block(col, inp, g, &b);
            if (b.nb == 1) {
                /* One image: the GEMM writes the (O, T) block of out in place, rows P apart. */
                float *y = out + n0 * out_img + oh0 * g->ow;
                conv_gemm(y, weight, col, g->o, T, K, beta, K, T, P, bf16_scratch, &ep);
                if (!bf16_scratch) conv_epilogue(y, bias, relu, 1, 0, g->o, T, P);
            } else {
                /* Several whole images in one GEMM (the weights are packed once for all of
                 * them), then each image's columns are moved to its place in NCHW, onto the
                 * residual, and the epilogue follows (the residual comes before the bias). */
                conv_gemm(ybuf, weight, col, g->o, ld, K, 0.0f, K, ld, ld, bf16_scratch, NULL);
                block_scatter(out, ybuf, residual, n0, b.nb, g);
                conv_epilogue(out + n0 * out_img, bias, relu, b.nb, out_img, g->o, P, P);
            }
        }
    }
}

void conv2d_forward_cpu(float *out, const float *inp, const float *weight, const float *bias,
                        float *col, float *ybuf, const ConvGeom *g, bool residual, bool relu) {
    /* out (N,O,OH,OW), inp (N,C,H,W), weight (O,C,KH,KW), bias (O) or NULL,
     * col (C*KH*KW, tile_imgs*tile_rows*OW) scratch, unused on the 1x1 path,
     * ybuf (O, tile_imgs*OH*OW) scratch, used only when tile_imgs > 1 — assigns
     * out = act(conv + bias), or with `residual` accumulates: out = act((out + conv) + bias);
     * act = ReLU when `relu`, else the identity */
    if (g->wino_rows > 0) {
        conv2d_forward_winograd(out, inp, weight, bias, col, ybuf, g, residual, relu);
        return;
    }
    conv2d_forward_gemm(out, inp, weight, bias, col, ybuf, g, residual, relu, NULL);
}

void conv2d_backward_cpu(float *dinp, float *dweight, float *dbias, float *col, float *dcol,
                         float *dybuf, const float *dout, const float *inp, const float *weight,
                         const ConvGeom *g) {
    /* dinp (N,C,H,W) or NULL, dweight (O,C,KH,KW) or NULL, dbias (O) or NULL,
     * col and dcol (C*KH*KW, tile_imgs*tile_rows*OW) scratch, needed for dweight and dinp
     * respectively (unused on the 1x1 path), dybuf (O, tile_imgs*OH*OW) scratch used when
     * tile_imgs > 1, dout (N,O,OH,OW), inp (N,C,H,W), weight (O,C,KH,KW) — accumulates */
    const int64_t K = g->c * g->kh * g->kw, P = g->oh * g->ow;
    const int64_t in_img = g->c * g->h * g->w, out_img = g->o * P;
    if (dbias) {
        /* out = ... + bias[o] at every (n, p): dbias[o] = sum_{n,p} dout[n,o,p] */
#pragma omp parallel for schedule(static) if (g->n * out_img > 32768)
        for (int64_t o = 0; o < g->o; o++) {
            double acc = 0.0;
            for (int64_t n = 0; n < g->n; n++) {
                const float *d = dout + n * out_img + o * P;
                for (int64_t p = 0; p < P; p++) acc += d[p];
            }
            dbias[o] += (float)acc;
        }
    }
    if (!dinp && !dweight) return;
    if (conv_pointwise(g)) {
        /* out[n] = weight @ x[n]:  dweight += dout[n] @ x[n]^T,  dx[n] += weight^T @ dout[n].
         * dweight is one matrix shared by all images, so its products run one after another. */
        if (dweight)
            for (int64_t n = 0; n < g->n; n++)
                gemm_cpu(dweight, dout + n * out_img, inp + n * in_img, 1, g->o, g->c, P, false,
                         true, 1.0f, 1.0f, P, P, g->c, 0, 0, 0);
        if (dinp)
            gemm_cpu(dinp, weight, dout, g->n, g->c, P, g->o, true, false, 1.0f, 1.0f, g->c, P, P,
                     0, out_img, in_img);
        return;
    }
    for (int64_t n0 = 0; n0 < g->n; n0 += g->tile_imgs) {
        for (int64_t oh0 = 0; oh0 < g->oh; oh0 += g->tile_rows) {
            const ConvBlock b = conv_block(g, n0, oh0);
            const int64_t T = b.rows * g->ow, ld = b.nb * T;
            /* dy: the block's (O, nb*T) slice of dout, read in place for one image, otherwise
             * gathered into dybuf in the column order of col. */
            const float *dy = dout + n0 * out_img + oh0 * g->ow;
            int64_t ldy = P;
            if (b.nb > 1) {
                block_gather(dybuf, dout, n0, b.nb, g);
                dy = dybuf;
                ldy = ld;
            }
            if (dweight) {
                /* out_block = weight @ col: dweight (O,K) += dy (O,nb*T) @ col^T (nb*T,K) */
                im2col_block(col, inp, g, &b);
                gemm_cpu(dweight, dy, col, 1, g->o, K, ld, false, true, 1.0f, 1.0f, ldy, ld, K, 0,
                         0, 0);
            }
            if (dinp) {
                /* dcol (K,nb*T) = weight^T (K,O) @ dy (O,nb*T), then added back onto the pixels */
                gemm_cpu(dcol, weight, dy, 1, K, ld, g->o, true, false, 1.0f, 0.0f, K, ldy, ld, 0,
                         0, 0);
                for (int64_t i = 0; i < b.nb; i++)
                    col2im_rows(dinp + (n0 + i) * in_img, dcol + i * T, ld, g, oh0, b.rows);
            }
        }
    }
}

/* ---- Wrapper and backward rule ------------------------------------------------------------ */

/* Scratch sizes in floats for the im2col blocks of g: col (and dcol) and the block buffer ybuf
 * (and dybuf; 0 when blocks hold a single image and the GEMM writes the output in place). The
 * Winograd forward sizes its own (conv_forward_scratch). */
static size_t conv_col_floats(const ConvGeom *g) {
    if (conv_pointwise(g)) return 0;
    return (size_t)(g->c * g->kh * g->kw * g->tile_imgs * g->tile_rows * g->ow);
}
static size_t conv_ybuf_floats(const ConvGeom *g) {
    if (conv_pointwise(g) || g->tile_imgs == 1) return 0;
    return (size_t)(g->o * g->tile_imgs * g->oh * g->ow);
}

/* The forward's scratch: im2col's, or on the Winograd path col = U (nxi,wino_o,C) and
 * V (nxi,C,Tb), ybuf = M (nxi,wino_o,Tb), V and M once per thread when blocks are per thread. */
static void conv_forward_scratch(const ConvGeom *g, size_t *col, size_t *ybuf) {
    if (g->wino_rows > 0) {
        const int64_t tb = wino_tiles_per_block(g), nxi = wino_nxi(g);
        const int64_t copies = g->wino_per_thread ? g->wino_threads : 1;
        /* U, or with the own GEMM its packed copy and buffers (after V) instead */
        const int64_t u = g->gemm_f32_floats > 0 ? 0 : nxi * wino_stride(g->wino_o * g->c);
        *col = (size_t)(u + copies * nxi * wino_stride(g->c * tb) + g->gemm_f32_floats);
        *ybuf = (size_t)(copies * nxi * wino_stride(g->wino_o * tb));
    } else {
        *col = g->gemm_f32_floats > 0 ? (size_t)g->gemm_f32_floats : conv_col_floats(g);
        *ybuf = conv_ybuf_floats(g);
    }
}

static float *scratch(Arena *a, size_t floats) {
    return floats ? arena_alloc(a, floats * sizeof(float)) : NULL;
}

static void conv2d_backward(Node *nd) {
    Tensor *x = nd->in[0], *weight = nd->in[1], *bias = nd->in[2];
    const ConvGeom *g = nd->extra;
    /* Only inputs that require a gradient get a buffer; a frozen weight skips the im2col and
     * the dweight GEMM entirely. Buffers are taken before the scratch mark so that releasing
     * the scratch keeps them. */
    float *dx = ag_needs(x) ? ag_grad(x)->data : NULL;
    float *dweight = ag_needs(weight) ? ag_grad(weight)->data : NULL;
    float *dbias = ag_needs(bias) ? ag_grad(bias)->data : NULL;
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    float *col = dweight ? scratch(a, conv_col_floats(g)) : NULL;
    float *dcol = dx ? scratch(a, conv_col_floats(g)) : NULL;
    float *dybuf = dx || dweight ? scratch(a, conv_ybuf_floats(g)) : NULL;
    KERNEL_RUN(x->device, conv2d_backward, dx, dweight, dbias, col, dcol, dybuf,
                                            nd->out->grad->data, x->data, weight->data, g);
    arena_release(a, mark);
}

/* Block sizes for the im2col path: when one image's col fits the rows budget, whole images, as
 * many as fit the images budget; otherwise as many output rows of one image as fit the rows
 * budget (at least one). The budgets are the CPU's cache-sized ones, or CONV_GPU_BYTES for
 * both on CUDA. */
static void conv_pick_blocks(ConvGeom *g, DeviceKind dev) {
    const int64_t rows_budget = dev == DEVICE_CUDA ? CONV_GPU_BYTES : CONV_ROWS_BYTES;
    const int64_t imgs_budget = dev == DEVICE_CUDA ? CONV_GPU_BYTES : CONV_IMGS_BYTES;
    const int64_t row_bytes = g->c * g->kh * g->kw * g->ow * (int64_t)sizeof(float);
    const int64_t img_bytes = row_bytes * g->oh;
    if (img_bytes <= rows_budget) {
        g->tile_rows = g->oh;
        g->tile_imgs = imgs_budget / (img_bytes > 0 ? img_bytes : 1);
        if (g->tile_imgs > g->n) g->tile_imgs = g->n;
    } else {
        g->tile_imgs = 1;
        g->tile_rows = rows_budget / row_bytes;
    }
    if (g->tile_rows < 1) g->tile_rows = 1;
    if (g->tile_imgs < 1) g->tile_imgs = 1;
}

/* The Winograd mode (conv.h); starts from TRMML_CONV_WINOGRAD: "0" OFF, "always" ALWAYS,
 * anything else (or unset) AUTO. */
static int g_winograd = -1; /* -1: not read from the environment yet */

static ConvWinograd conv_winograd_mode(void) {
    if (g_winograd < 0) {
        const char *env = getenv("TRMML_CONV_WINOGRAD");
        g_winograd = CONV_WINOGRAD_AUTO;
        if (env && strcmp(env, "0") == 0) g_winograd = CONV_WINOGRAD_OFF;
        if (env && strcmp(env, "always") == 0) g_winograd = CONV_WINOGRAD_ALWAYS;
    }
    return (ConvWinograd)g_winograd;
}

ConvWinograd conv_set_winograd(ConvWinograd mode) {
    const ConvWinograd prev = conv_winograd_mode();
    g_winograd = mode;
    return prev;
}

/* The fp32 Winograd tile (conv.h); starts from TRMML_CONV_WINOGRAD_TILE: "2" F(2x2, 3x3),
 * anything else (or unset) F(4x4, 3x3). */
static int g_winograd_tile = -1; /* -1: not read from the environment yet */

static ConvWinogradTile conv_winograd_tile(void) {
    if (g_winograd_tile < 0) {
        const char *env = getenv("TRMML_CONV_WINOGRAD_TILE");
        g_winograd_tile = env && strcmp(env, "2") == 0 ? CONV_WINOGRAD_F2 : CONV_WINOGRAD_F4;
    }
    return (ConvWinogradTile)g_winograd_tile;
}

ConvWinogradTile conv_set_winograd_tile(ConvWinogradTile tile) {
    CHECK(tile == CONV_WINOGRAD_F2 || tile == CONV_WINOGRAD_F4,
          "conv_set_winograd_tile: tile %d (CONV_WINOGRAD_F2 or CONV_WINOGRAD_F4)", (int)tile);
    const ConvWinogradTile prev = conv_winograd_tile();
    g_winograd_tile = tile;
    return prev;
}

/* Whether g's CPU forward takes the Winograd path, its tile and its blocks. The tile: F(4x4, 3x3)
 * unless conv_set_winograd_tile chose F(2x2, 3x3) or the weight is a bf16 one (which stays on
 * F(2x2, 3x3), conv2d_forward_winograd_bf16). Output channels in slices whose U[xi] fit
 * WINO_U_BYTES / 16 each (all of them up to 256x256 channels; U is WINO_U_BYTES for F(2x2, 3x3),
 * 36/16 of it for F(4x4, 3x3)); one block of all tiles, stages split across threads, when its V
 * and M fit WINO_SHARED_BYTES; otherwise per thread as many rows of tiles as keep its V and M
 * within WINO_BYTES, but at least WINO_MIN_TILES tiles (each GEMM call packs all of U[xi], so
 * narrower blocks pay that packing for little work: 28 tiles at 512 channels ran 1.4x im2col's
 * time).
 * Below WINO_MIN_CHANNELS input or output channels the GEMMs (K = C) are too thin to beat
 * im2col's one GEMM with K = 9C, and below WINO_MIN_TILES tiles in all (512 channels at 14x14,
 * batch 1: 49 of F(2x2, 3x3)) too narrow (measured 2.2x im2col's time there). Under AUTO a
 * convolution with too few 4x4 tiles takes F(2x2, 3x3) if it has enough 2x2 ones. A frozen
 * weight under bf16 takes the same thresholds and its own blocks (WINO_BF16_BYTES below). */
#define WINO_BYTES ((int64_t)2 << 20)
#define WINO_SHARED_BYTES ((int64_t)16 << 20)
#define WINO_U_BYTES ((int64_t)4 << 20)
#define WINO_MIN_CHANNELS 32
#define WINO_MIN_TILES 128
/* Under bf16 (conv2d_forward_winograd_bf16): every output channel in one slice, and blocks of
 * tile rows whose V and M fit WINO_BF16_BYTES, shared by the threads. */
#define WINO_BF16_BYTES ((int64_t)16 << 20)
static void conv_pick_winograd(ConvGeom *g, DeviceKind dev, bool bf16) {
    g->wino_rows = g->wino_o = g->wino_threads = g->wino_per_thread = g->wino_m = 0;
    const ConvWinograd mode = conv_winograd_mode();
    if (!device_runs_cpu_kernels(dev) || mode == CONV_WINOGRAD_OFF || g->kh != 3 || g->kw != 3 ||
        g->stride_h != 1 || g->stride_w != 1)
        return;
    g->wino_m = bf16 ? CONV_WINOGRAD_F2 : conv_winograd_tile();
    if (mode == CONV_WINOGRAD_AUTO) {
        if (g->c < WINO_MIN_CHANNELS || g->o < WINO_MIN_CHANNELS) {
            g->wino_m = 0;
            return;
        }
        if (g->n * wino_tiles_h(g) * wino_tiles_w(g) < WINO_MIN_TILES) g->wino_m = 2;
        if (g->n * wino_tiles_h(g) * wino_tiles_w(g) < WINO_MIN_TILES) {
            g->wino_m = 0;
            return;
        }
    }
    const int64_t TH = wino_tiles_h(g), TW = wino_tiles_w(g), F = (int64_t)sizeof(float);
    const int64_t nxi = wino_nxi(g);
    g->wino_threads = 1;
#ifdef _OPENMP
    g->wino_threads = omp_get_max_threads();
#endif
    if (bf16) {
        g->wino_o = g->o;
        const int64_t row_bytes = 16 * (g->c + g->o) * TW * F; /* V and M of one tile row */
        g->wino_rows = WINO_BF16_BYTES / row_bytes;
        if (g->wino_rows < 1) g->wino_rows = 1;
        if (g->wino_rows > g->n * TH) g->wino_rows = g->n * TH;
        return;
    }
    g->wino_o = WINO_U_BYTES / (16 * g->c * F);
    if (g->wino_o < WINO_MIN_CHANNELS) g->wino_o = WINO_MIN_CHANNELS;
    if (g->wino_o > g->o) g->wino_o = g->o;
    if (g->wino_o < 1) g->wino_o = 1;
    const int64_t row_bytes = nxi * (g->c + g->wino_o) * TW * F; /* V and M of one tile row */
    if (g->n * TH * row_bytes <= WINO_SHARED_BYTES) {
        g->wino_rows = g->n * TH;
        return;
    }
    g->wino_per_thread = 1;
    g->wino_rows = WINO_BYTES / row_bytes;
    if (g->wino_rows * TW < WINO_MIN_TILES) g->wino_rows = (WINO_MIN_TILES + TW - 1) / TW;
    if (g->wino_rows > g->n * TH) g->wino_rows = g->n * TH;
}

/* Validate the operands of `op` and return the geometry, blocks and Winograd choice included. */
static ConvGeom conv_geom(const char *op, const Tensor *x, const Tensor *weight,
                          const Tensor *bias, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                          int64_t pad_w) {
    tensor_check_f32(op, x, "x");
    tensor_check_f32(op, weight, "weight");
    tensor_check_same_device(op, x, weight);
    CHECK(x->ndim == 4 && weight->ndim == 4,
          "%s: x %s must be (N,C,H,W) and weight %s (O,C,KH,KW)", op, tensor_shape_str(x),
          tensor_shape_str(weight));
    CHECK(weight->shape[1] == x->shape[1], "%s: weight %s expects %lld input channels, x %s "
          "has %lld", op, tensor_shape_str(weight), (long long)weight->shape[1],
          tensor_shape_str(x), (long long)x->shape[1]);
    if (bias) {
        tensor_check_f32(op, bias, "bias");
        tensor_check_same_device(op, x, bias);
        CHECK(bias->ndim == 1 && bias->shape[0] == weight->shape[0],
              "%s: bias %s must be (O) = (%lld) for weight %s", op, tensor_shape_str(bias),
              (long long)weight->shape[0], tensor_shape_str(weight));
    }
    CHECK(stride_h >= 1 && stride_w >= 1 && pad_h >= 0 && pad_w >= 0,
          "%s: stride (%lld, %lld) must be >= 1 and padding (%lld, %lld) >= 0", op,
          (long long)stride_h, (long long)stride_w, (long long)pad_h, (long long)pad_w);
    ConvGeom g = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                  .o = weight->shape[0], .kh = weight->shape[2], .kw = weight->shape[3],
                  .stride_h = stride_h, .stride_w = stride_w, .pad_h = pad_h, .pad_w = pad_w};
    CHECK(g.h + 2 * pad_h >= g.kh && g.w + 2 * pad_w >= g.kw && g.kh >= 1 && g.kw >= 1,
          "%s: kernel %s does not fit x %s padded by (%lld, %lld)", op, tensor_shape_str(weight),
          tensor_shape_str(x), (long long)pad_h, (long long)pad_w);
    g.oh = (g.h + 2 * pad_h - g.kh) / stride_h + 1;
    g.ow = (g.w + 2 * pad_w - g.kw) / stride_w + 1;
    conv_pick_blocks(&g, x->device);
    const bool bf16 = tensor_bf16_forward(weight);
    conv_pick_winograd(&g, x->device, bf16);
    g.gemm_f32_floats = 0;
    if (!bf16 && device_runs_cpu_kernels(x->device) && gemm_f32_available()) {
        if (conv_pointwise(&g)) /* the batched call's scratch */
            g.gemm_f32_floats = (int64_t)((gemm_f32_batched_scratch_bytes(g.n, true, g.o,
                                                                           g.oh * g.ow, g.c) +
                                           3) / 4);
        else if (g.wino_rows > 0) /* packed U, and a B scratch per thread */
            g.gemm_f32_floats = wino_f32_floats(&g);
    }
    return g;
}

/* Run the forward of g into out (its scratch from the current arena, released after) with the
 * epilogue asked: out = act(conv + bias), or with `residual` out = act((out + conv) + bias). */
static void conv_forward_into(Tensor *out, const Tensor *x, const Tensor *weight,
                              const Tensor *bias, const ConvGeom *g, bool residual, bool relu) {
    /* A frozen weight under PRECISION_BF16 (tensor/ops/gemm_bf16.h): every forward product
     * goes through the bf16 GEMM — the 1x1 and im2col GEMMs, and the 16 products of the
     * Winograd path (conv2d_forward_winograd_bf16). Backward stays fp32. */
    const bool bf16 = tensor_bf16_forward(weight);
    const uint64_t prof = prof_layer_begin(x->device);
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    size_t col_floats, ybuf_floats;
    conv_forward_scratch(g, &col_floats, &ybuf_floats);
    float *col = scratch(a, col_floats), *ybuf = scratch(a, ybuf_floats);
    const float *b = bias ? bias->data : NULL;
    if (bf16 && g->wino_rows > 0) {
        void *packs = arena_alloc(
            a, gemm_bf16_batched_scratch_bytes(16, false, g->o, wino_tiles_per_block(g), g->c));
        conv2d_forward_winograd_bf16(out->data, x->data, weight->data, b, col, ybuf, g, residual,
                                     relu, packs);
    } else if (bf16) {
        /* the bf16 GEMM's packing scratch: every image of a 1x1 convolution (one batched call,
         * the weights packed once), or the widest im2col block */
        const int64_t width = g->tile_imgs * g->tile_rows * g->ow;
        const size_t bytes =
            conv_pointwise(g)
                ? gemm_bf16_batched_scratch_bytes(g->n, true, g->o, g->oh * g->ow, g->c)
                : gemm_bf16_scratch_bytes(g->o, width, g->c * g->kh * g->kw);
        void *packs = arena_alloc(a, bytes);
        conv2d_forward_gemm(out->data, x->data, weight->data, b, col, ybuf, g, residual, relu,
                            packs);
    } else {
        KERNEL_RUN(x->device, conv2d_forward, out->data, x->data, weight->data, b, col, ybuf, g,
                                               residual, relu);
    }
    arena_release(a, mark);
    if (prof) { /* the layer profile: the direct convolution's operations, as bench counts */
        char label[80];
        snprintf(label, sizeof label, "conv %lldx%lld/%lld %lld->%lld %lldx%lld b%lld%s%s",
                 (long long)g->kh, (long long)g->kw, (long long)g->stride_h, (long long)g->c,
                 (long long)g->o, (long long)g->oh, (long long)g->ow, (long long)g->n,
                 g->wino_rows > 0 ? (g->wino_m == 4 ? " F4" : " F2") : "", bf16 ? " bf16" : "");
        prof_layer_end(x->device, prof, label,
                       2.0 * (double)(g->n * g->o * g->oh * g->ow) * (double)(g->c * g->kh * g->kw));
    }
}

Tensor *tensor_conv2d_ex(Tensor *x, Tensor *weight, Tensor *bias, int64_t stride_h,
                         int64_t stride_w, int64_t pad_h, int64_t pad_w) {
    ConvGeom g = conv_geom("conv2d", x, weight, bias, stride_h, stride_w, pad_h, pad_w);
    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(g.n, g.o, g.oh, g.ow));
    conv_forward_into(out, x, weight, bias, &g, false, false);
    Node *nd = AG_RECORD("conv2d", out, conv2d_backward, x, weight, bias);
    if (nd) {
        nd->extra = arena_alloc_host(tensor_arena(), sizeof g);
        memcpy(nd->extra, &g, sizeof g);
    }
    return out;
}

/* Whether a forward with these operands would record a tape node (then the fused forms below
 * run the ops one by one, so that backward sees the pre-activation). */
static bool conv_records(const Tensor *x, const Tensor *weight, const Tensor *bias) {
    return ag_grad_enabled() &&
           (x->requires_grad || weight->requires_grad || (bias && bias->requires_grad));
}

Tensor *tensor_conv2d_relu(Tensor *x, Tensor *weight, Tensor *bias, int64_t stride,
                           int64_t padding) {
    if (conv_records(x, weight, bias))
        return tensor_relu(tensor_conv2d(x, weight, bias, stride, padding));
    ConvGeom g = conv_geom("conv2d_relu", x, weight, bias, stride, stride, padding, padding);
    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(g.n, g.o, g.oh, g.ow));
    conv_forward_into(out, x, weight, bias, &g, false, true);
    return out;
}

Tensor *tensor_conv2d_add_relu_(Tensor *acc, Tensor *x, Tensor *weight, Tensor *bias,
                                int64_t stride, int64_t padding) {
    ConvGeom g = conv_geom("conv2d_add_relu_", x, weight, bias, stride, stride, padding, padding);
    tensor_check_f32("conv2d_add_relu_", acc, "acc");
    tensor_check_same_device("conv2d_add_relu_", acc, x);
    CHECK(acc->ndim == 4 && acc->shape[0] == g.n && acc->shape[1] == g.o &&
              acc->shape[2] == g.oh && acc->shape[3] == g.ow,
          "conv2d_add_relu_: acc %s must be the output's shape (%lld, %lld, %lld, %lld)",
          tensor_shape_str(acc), (long long)g.n, (long long)g.o, (long long)g.oh,
          (long long)g.ow);
    CHECK(!ag_grad_enabled(), "conv2d_add_relu_: in-place op while grad mode is on (acc %s); use "
          "tensor_relu(tensor_add(acc, tensor_conv2d(...))), or turn grad mode off for a frozen "
          "forward pass", tensor_shape_str(acc));
    CHECK(!acc->requires_grad, "conv2d_add_relu_: in-place op on a tensor that requires a "
          "gradient (acc %s)", tensor_shape_str(acc));
    CHECK(acc->data != x->data, "conv2d_add_relu_: acc must not be the input x");
    conv_forward_into(acc, x, weight, bias, &g, true, true);
    return acc;
}

Tensor *tensor_conv2d(Tensor *x, Tensor *weight, Tensor *bias, int64_t stride, int64_t padding) {
    return tensor_conv2d_ex(x, weight, bias, stride, stride, padding, padding);
}
