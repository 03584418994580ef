/* test_conv.c — conv family: conv2d forward and backward against PyTorch fixtures, finite-
 * difference gradchecks, the frozen-weight contract, and the im2col blocking. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/ops/shape.h"
#include "test/test.h"

typedef struct {
    const char *name;
    int64_t stride_h, stride_w, pad_h, pad_w;
    bool bias;
} ConvCase;

/* The cases of scripts/fixtures_conv.py (frozen_weight is tested on its own below). */
static const ConvCase cases[] = {
    {"k3_p1", 1, 1, 1, 1, true},
    {"k3_p0_nobias", 1, 1, 0, 0, false},
    {"k3_s2_p1", 2, 2, 1, 1, true},
    {"k3_s2_p0_nobias", 2, 2, 0, 0, false},
    {"k1", 1, 1, 0, 0, true},
    {"k1_nobias", 1, 1, 0, 0, false},
    {"k1_s2", 2, 2, 0, 0, true},
    {"stem_k7_s2_p3", 2, 2, 3, 3, false},
    {"patch_k4_s4", 4, 4, 0, 0, false},
    {"rect_k3x2_s2x1_p1x0", 2, 1, 1, 0, true},
    {"block_c24_12", 1, 1, 1, 1, true},
};

static Tensor *fx_get(Fixture *fx, const char *cs, const char *name, bool requires_grad) {
    char key[160];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    Tensor *t = fixture_tensor(fx, key);
    if (t && requires_grad) ag_set_requires_grad(t, NULL);
    return t;
}

static void expect_fx(Fixture *fx, const char *cs, const char *name, const Tensor *got,
                      double atol, const char *note) {
    char key[160], what[240];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    snprintf(what, sizeof what, "conv2d %s %s%s", cs, name, note);
    EXPECT_TENSOR(what, got, fixture_get(fx, key), atol, TOL_MATMUL_RTOL);
}

/* K = C*KH*KW products per output element; dweight and dbias sum over N*OH*OW instead. */
static long long conv_k(const Tensor *weight) {
    return weight->shape[1] * weight->shape[2] * weight->shape[3];
}

/* The factor on the matmul tolerance for the Winograd F(4x4, 3x3) forward. Its rounding is
 * bounded by gamma_{C+26} times |A^T| (sum_c |G||g||G^T| .* |B^T||d||B|) |A| (docs/ops/conv.md,
 * "Winograd F(4x4, 3x3)"). With every |g| <= a and |d| <= b that magnitude is at most
 * e_i e_j C a b at output (i, j) of a tile, e = (148/5, 92/5, 92/5, 148/5) the sums over
 * |A^T| of each point's |G| row sum times |B^T| row sum; the direct sum's is 9 C a b and
 * F(2x2, 3x3)'s e = (8, 8). The worst output's bound is (148/5)^2 / 9 = 97.4 times the direct
 * sum's where F(2x2, 3x3)'s is 64 / 9 = 7.1 times it, and F(2x2, 3x3) is held to the matmul
 * tolerance: F(4x4, 3x3) is held to 97.4 / 7.1 = 13.7, rounded up to 14, times it. */
#define WINO4_TOL_FACTOR 14.0

/* The Winograd tiles the tests run: F(2x2, 3x3) and F(4x4, 3x3). */
static const ConvWinogradTile wino_tiles[2] = {CONV_WINOGRAD_F2, CONV_WINOGRAD_F4};

/* The matmul tolerance of a K-long sum, times WINO4_TOL_FACTOR under F(4x4, 3x3). */
static double wino_atol(long long k, ConvWinogradTile tile) {
    return tol_matmul_atol(k) * (tile == CONV_WINOGRAD_F4 ? WINO4_TOL_FACTOR : 1.0);
}

TEST(conv_fixtures) {
    Fixture *fx = fixture_open("conv");
    if (!fx) return;
    /* Every case with the default forward, then every 3x3 stride-1 case again with the Winograd
     * forward forced (the fixtures are below its size thresholds), F(2x2, 3x3) then
     * F(4x4, 3x3). */
    const ConvWinograd prev = conv_set_winograd(CONV_WINOGRAD_AUTO);
    const ConvWinogradTile prev_tile = conv_set_winograd_tile(CONV_WINOGRAD_F4);
    const size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t j = 0; j < 3 * ncases; j++) {
        const size_t i = j % ncases;
        const ConvCase *c = &cases[i];
        const bool forced = j >= ncases;
        const ConvWinogradTile tile = j >= 2 * ncases ? CONV_WINOGRAD_F4 : CONV_WINOGRAD_F2;
        Tensor *x = fx_get(fx, c->name, "x", true);
        Tensor *w = fx_get(fx, c->name, "weight", true);
        Tensor *b = c->bias ? fx_get(fx, c->name, "bias", true) : NULL;
        Tensor *dout = fx_get(fx, c->name, "dout", false);
        if (!x || !w || !dout || (c->bias && !b)) break;
        if (forced && (w->shape[2] != 3 || w->shape[3] != 3 || c->stride_h != 1 ||
                       c->stride_w != 1))
            continue;
        conv_set_winograd(forced ? CONV_WINOGRAD_ALWAYS : CONV_WINOGRAD_AUTO);
        conv_set_winograd_tile(forced ? tile : prev_tile);
        Tensor *out = tensor_conv2d_ex(x, w, b, c->stride_h, c->stride_w, c->pad_h, c->pad_w);
        double atol_k = forced ? wino_atol(conv_k(w), tile) : tol_matmul_atol(conv_k(w));
        expect_fx(fx, c->name, "out", out, atol_k,
                  !forced ? "" : tile == CONV_WINOGRAD_F4 ? " (Winograd F4 forced)"
                                                          : " (Winograd F2 forced)");
        if (forced) { /* the backward is the same im2col code either way */
            ag_tape_reset();
            continue;
        }
        ag_backward_with(out, dout);
        /* dx sums over O*KH*KW terms, dweight and dbias over N*OH*OW. */
        long long npos = out->shape[0] * out->shape[2] * out->shape[3];
        long long taps = w->shape[0] * w->shape[2] * w->shape[3];
        expect_fx(fx, c->name, "dx", x->grad, tol_matmul_atol(taps), "");
        expect_fx(fx, c->name, "dweight", w->grad, tol_matmul_atol(npos), "");
        if (b) expect_fx(fx, c->name, "dbias", b->grad, tol_matmul_atol(npos), "");
        ag_tape_reset();
    }
    conv_set_winograd(prev);
    conv_set_winograd_tile(prev_tile);
}

TEST(conv_frozen_weight_gets_no_gradient) {
    /* x requires a gradient, weight and bias are frozen: only dx is computed. */
    Fixture *fx = fixture_open("conv");
    if (!fx) return;
    const char *cs = "frozen_weight";
    Tensor *x = fx_get(fx, cs, "x", true);
    Tensor *w = fx_get(fx, cs, "weight", false);
    Tensor *b = fx_get(fx, cs, "bias", false);
    Tensor *dout = fx_get(fx, cs, "dout", false);
    if (!x || !w || !b || !dout) return;
    Tensor *out = tensor_conv2d(x, w, b, 1, 1);
    expect_fx(fx, cs, "out", out, tol_matmul_atol(conv_k(w)), "");
    ag_backward_with(out, dout);
    EXPECT(w->grad == NULL, "frozen weight received a gradient buffer");
    EXPECT(b->grad == NULL, "frozen bias received a gradient buffer");
    expect_fx(fx, cs, "dx", x->grad, tol_matmul_atol(w->shape[0] * w->shape[2] * w->shape[3]), "");
    ag_tape_reset();
    /* Nothing requires a gradient: no tape. */
    Tensor *x2 = test_randn(5, 4, SHAPE(1, 3, 5, 5));
    tensor_conv2d(x2, w, b, 1, 1);
    EXPECT(ag_tape_length() == 0, "a frozen conv recorded %d nodes", ag_tape_length());
}

typedef struct {
    int64_t stride_h, stride_w, pad_h, pad_w;
} ConvArgs;

static Tensor *gc_conv(Tensor *const *in, void *ctx) {
    const ConvArgs *a = ctx;
    return tensor_conv2d_ex(in[0], in[1], in[2], a->stride_h, a->stride_w, a->pad_h, a->pad_w);
}

TEST(conv_gradcheck) {
    /* Shapes no fixture has: kernel taller than wide, large stride with padding, 1x1 on the
     * GEMM path with a one-pixel-wide image, a kernel that covers the whole padded input, and a
     * 32-channel 3x3 whose forward is Winograd's, F(2x2, 3x3) and F(4x4, 3x3) (finite
     * differences of it against the im2col backward). */
    static const struct {
        int64_t n, c, h, w, o, kh, kw;
        ConvArgs a;
        ConvWinogradTile tile;
    } g[] = {
        {1, 2, 6, 5, 3, 3, 1, {1, 2, 1, 0}, CONV_WINOGRAD_F4},
        {2, 2, 9, 8, 3, 5, 5, {3, 3, 2, 2}, CONV_WINOGRAD_F4},
        {3, 4, 5, 1, 2, 1, 1, {1, 1, 0, 0}, CONV_WINOGRAD_F4},
        {1, 3, 3, 4, 2, 5, 4, {1, 1, 1, 0}, CONV_WINOGRAD_F4},
        {2, 32, 5, 6, 32, 3, 3, {1, 1, 1, 1}, CONV_WINOGRAD_F2}, /* Winograd, im2col backward */
        {2, 32, 5, 6, 32, 3, 3, {1, 1, 1, 1}, CONV_WINOGRAD_F4},
    };
    /* ALWAYS: the 32-channel case is below the Winograd size thresholds (the others are not
     * 3x3 stride 1 and stay on im2col). */
    const ConvWinograd prev = conv_set_winograd(CONV_WINOGRAD_ALWAYS);
    const ConvWinogradTile prev_tile = conv_set_winograd_tile(CONV_WINOGRAD_F4);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        conv_set_winograd_tile(g[i].tile);
        Tensor *x = test_randn(100 + i, 4, SHAPE(g[i].n, g[i].c, g[i].h, g[i].w));
        Tensor *w = test_randn(200 + i, 4, SHAPE(g[i].o, g[i].c, g[i].kh, g[i].kw));
        Tensor *b = test_randn(300 + i, 1, SHAPE(g[i].o));
        /* Weights of variance 1/fan_in keep the outputs O(1). With unit weights the 288-tap
         * case's outputs are ~17, and the float32 rounding of the loss divided by the finite-
         * difference step reaches 1e-3: one of its 544 coordinates then failed by 1.4e-3 under
         * the Winograd forward (whose rounding is 0.7-1.6x im2col's, docs/ops/conv.md). */
        const float scale = 1.0f / sqrtf((float)(g[i].c * g[i].kh * g[i].kw));
        for (int64_t k = 0; k < w->numel; k++) tensor_f32(w)[k] *= scale;
        /* A convolution is linear in each coordinate the check moves (one at a time), so the
         * central difference has no truncation error at any step, only the float32 rounding of
         * L = sum(out * dout) divided by 2 eps: up to ~5e-4 at the default eps (1e-2) in the
         * 288-tap case, measured under both OpenBLAS and the own fp32 GEMM, with tails past the
         * 1e-3 tolerance at 2 of 544 coordinates. A step ten times longer divides that noise by
         * ten and leaves the analytic side as it is. */
        const GradcheckOpts opts = {.eps_scale = 0.1};
        char name[64];
        snprintf(name, sizeof name, "conv2d gradcheck %zu", i);
        EXPECT_GRADCHECK(name, gc_conv, (void *)&g[i].a, ((Tensor *[]){x, w, b}), 3, NULL, &opts);
    }
    conv_set_winograd(prev);
    conv_set_winograd_tile(prev_tile);
}

TEST(conv_blocks_match_one_block) {
    /* The wrapper picks the im2col blocks from a scratch budget, which at test sizes always
     * means all images in one block. Here the kernels run with every blocking: one block of
     * all images, two-image blocks (the last one short), single images, and blocks of 2 and 3
     * output rows (the last one short); all must agree. */
    const int64_t N = 3, C = 3, H = 11, W = 7, O = 4, KH = 3, KW = 3;
    ConvGeom g = {.n = N, .c = C, .h = H, .w = W, .o = O, .kh = KH, .kw = KW, .stride_h = 1,
                  .stride_w = 2, .pad_h = 1, .pad_w = 1};
    g.oh = (H + 2 - KH) / 1 + 1;
    g.ow = (W + 2 - KW) / 2 + 1;
    const int64_t K = C * KH * KW, P = g.oh * g.ow, nout = N * O * P;
    Tensor *x = test_randn(1, 4, SHAPE(N, C, H, W));
    Tensor *w = test_randn(2, 4, SHAPE(O, C, KH, KW));
    Tensor *b = test_randn(3, 1, SHAPE(O));
    Tensor *dout = test_randn(4, 1, SHAPE(nout));
    float *ref[4] = {NULL}; /* out, dx, dweight, dbias with one block */
    const int64_t blocks[][2] = {{N, g.oh}, {2, g.oh}, {1, g.oh}, {1, 2}, {1, 3}};
    for (int t = 0; t < 5; t++) {
        g.tile_imgs = blocks[t][0];
        g.tile_rows = blocks[t][1];
        size_t col_bytes = (size_t)(K * g.tile_imgs * g.tile_rows * g.ow) * sizeof(float);
        size_t ybuf_bytes = (size_t)(O * g.tile_imgs * P) * sizeof(float);
        float *col = arena_alloc(tensor_arena(), col_bytes);
        float *dcol = arena_alloc(tensor_arena(), col_bytes);
        float *ybuf = arena_alloc(tensor_arena(), ybuf_bytes);
        Tensor *out = TENSOR_F32(nout);
        Tensor *dx = TENSOR_ZEROS(N, C, H, W), *dw = TENSOR_ZEROS(O, C, KH, KW);
        Tensor *db = TENSOR_ZEROS(O);
        KERNEL_RUN(DEVICE_CPU, conv2d_forward, out->data, x->data, w->data, b->data, col, ybuf,
                                                &g, false, false);
        KERNEL_RUN(DEVICE_CPU, conv2d_backward, dx->data, dw->data, db->data, col, dcol, ybuf,
                                                 dout->data, x->data, w->data, &g);
        float *got[4] = {out->data, dx->data, dw->data, db->data};
        if (t == 0) {
            memcpy(ref, got, sizeof ref);
            continue;
        }
        const int64_t n[4] = {nout, N * C * H * W, O * K, O};
        static const char *what[4] = {"out", "dx", "dweight", "dbias"};
        for (int k = 0; k < 4; k++) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s, blocks of %lld images x %lld rows", what[k],
                     (long long)g.tile_imgs, (long long)g.tile_rows);
            EXPECT_CLOSE_N(msg, got[k], ref[k], n[k], tol_matmul_atol(K), TOL_MATMUL_RTOL);
        }
    }
}

/* The Winograd F(2x2, 3x3) and F(4x4, 3x3) forwards (CPU, 3x3 stride 1, >= 32 channels in and
 * out) against the im2col forward, kernel to kernel, on geometries that reach every edge of the
 * tilings: output sides of every remainder modulo 2 and 4 (the last tile row or column partly
 * outside), padding 0, 1, 2, 3, 70, 140 and 280 (patches reading padding on both sides,
 * patches and a whole chunk of padding only), images wider than one chunk (64 tiles of 2, 128
 * of 4), and blocks of 1, 2 and 3 tile rows (blocks that cross from one image into the next, a short last block) times output
 * channel slices of 16, 32 and all (a short last slice), on one thread and on two, with
 * per-thread blocks and with one shared block. */
TEST(conv_winograd_matches_im2col) {
    static const struct {
        int64_t n, c, h, w, o, pad;
        bool bias;
    } shapes[] = {
        {3, 32, 7, 9, 40, 1, true},   /* OH 7, OW 9: odd both ways */
        {2, 33, 8, 6, 32, 0, false},  /* OH 6, OW 4: even, no padding */
        {2, 32, 5, 4, 48, 2, true},   /* padding 2: OH 7, OW 6 */
        {1, 32, 3, 133, 32, 1, true}, /* 67 tiles per row: two chunks, the second short */
        {1, 32, 4, 5, 32, 3, false},  /* padding 3: first and last tile rows/columns all padding */
        {1, 32, 2, 2, 32, 70, false}, /* padding 70: the second chunk wholly right of the image */
        {1, 32, 3, 261, 32, 1, true}, /* OW 261: 66 tiles of 4, two chunks, the last tile 1 wide */
        {1, 32, 2, 2, 32, 140, false}, /* the same as padding 70 for tiles of 4 */
        /* tiles of 4 take chunks of 128 tiles: OW 525, 132 tiles, two chunks, the last tile 1
         * wide; padding 280, the second chunk wholly right of the image */
        {1, 32, 3, 525, 32, 1, true},
        {1, 32, 2, 2, 32, 280, false},
    };
    /* tile rows per block, output channels per slice, threads, per-thread blocks (else one
     * block of all tiles with each stage split across the threads) */
    static const int64_t blocks[][4] = {{1, 16, 2, 1},      {2, 32, 1, 1},   {3, 1000, 2, 1},
                                        {1000, 1000, 2, 1}, {1000, 16, 2, 0}, {1000, 1000, 2, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        ConvGeom g = {.n = shapes[s].n, .c = shapes[s].c, .h = shapes[s].h, .w = shapes[s].w,
                      .o = shapes[s].o, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1,
                      .pad_h = shapes[s].pad, .pad_w = shapes[s].pad};
        g.oh = g.h + 2 * g.pad_h - 2;
        g.ow = g.w + 2 * g.pad_w - 2;
        g.tile_imgs = g.n; /* the im2col reference: every image in one block */
        g.tile_rows = g.oh;
        const int64_t K = g.c * 9, P = g.oh * g.ow, nout = g.n * g.o * P;
        Tensor *x = test_randn(10 + s, 4, SHAPE(g.n, g.c, g.h, g.w));
        Tensor *w = test_randn(20 + s, 4, SHAPE(g.o, g.c, 3, 3));
        Tensor *b = shapes[s].bias ? test_randn(30 + s, 1, SHAPE(g.o)) : NULL;
        const float *bias = b ? tensor_f32(b) : NULL;
        Tensor *ref = TENSOR_F32(nout), *got = TENSOR_F32(nout);
        float *col = arena_alloc(tensor_arena(), (size_t)(K * g.n * P) * sizeof(float));
        float *ybuf = arena_alloc(tensor_arena(), (size_t)(g.o * g.n * P) * sizeof(float));
        KERNEL_RUN(DEVICE_CPU, conv2d_forward, ref->data, x->data, w->data, bias, col, ybuf, &g,
                                                false, false);
        for (size_t k = 0; k < 2 * sizeof blocks / sizeof blocks[0]; k++) {
            const ConvWinogradTile tile = wino_tiles[k % 2];
            const int64_t m = g.wino_m = tile, nxi = (m + 2) * (m + 2);
            const int64_t TH = (g.oh + m - 1) / m, TW = (g.ow + m - 1) / m;
            g.wino_rows = blocks[k / 2][0] < g.n * TH ? blocks[k / 2][0] : g.n * TH;
            g.wino_o = blocks[k / 2][1] < g.o ? blocks[k / 2][1] : g.o;
            g.wino_threads = blocks[k / 2][2];
            g.wino_per_thread = blocks[k / 2][3];
            if (!g.wino_per_thread) g.wino_rows = g.n * TH; /* the one block holds every tile */
            const int64_t tb = g.wino_rows * TW, th = g.wino_threads;
            /* U, then V and M per thread; the nxi matrices of each lie < n + 32 floats apart */
            const size_t col_floats = (size_t)(nxi * (g.wino_o * g.c + 32) +
                                               th * nxi * (g.c * tb + 32));
            const size_t buf_floats = (size_t)(th * nxi * (g.wino_o * tb + 32));
            float *wcol = arena_alloc(tensor_arena(), col_floats * sizeof(float));
            float *wbuf = arena_alloc(tensor_arena(), buf_floats * sizeof(float));
            tensor_fill(got, NAN); /* every output must be written */
            KERNEL_RUN(DEVICE_CPU, conv2d_forward, got->data, x->data, w->data, bias, wcol,
                                                    wbuf, &g, false, false);
            char msg[160];
            snprintf(msg, sizeof msg, "winograd F%lld %lldx%lldx%lldx%lld -> %lld pad %lld, "
                     "blocks of %lld tile rows x %lld channels, %lld threads, per thread %lld",
                     (long long)m, (long long)g.n, (long long)g.c, (long long)g.h,
                     (long long)g.w, (long long)g.o, (long long)g.pad_h, (long long)g.wino_rows,
                     (long long)g.wino_o, (long long)g.wino_threads,
                     (long long)g.wino_per_thread);
            EXPECT_CLOSE_N(msg, tensor_f32(got), tensor_f32(ref), nout, wino_atol(K, tile),
                           TOL_MATMUL_RTOL);
        }
    }
}

TEST(conv_winograd_is_taken_and_switchable) {
    /* Through the wrapper: a 3x3 stride-1 convolution with 32 channels and 2*12*10 = 240 tiles
     * takes the Winograd path by default — its rounding differs from im2col's, so the two
     * outputs are close but not identical — while CONV_WINOGRAD_OFF gives the im2col result bit
     * for bit, and so does AUTO below 128 tiles. */
    Tensor *x = test_randn(41, 4, SHAPE(2, 32, 24, 20));
    Tensor *w = test_randn(42, 4, SHAPE(32, 32, 3, 3));
    Tensor *b = test_randn(43, 1, SHAPE(32));
    Tensor *small = test_randn(44, 4, SHAPE(1, 32, 9, 8)); /* 5*4 = 20 tiles */
    const ConvWinograd prev = conv_set_winograd(CONV_WINOGRAD_OFF);
    Tensor *im2col = tensor_conv2d(x, w, b, 1, 1);
    Tensor *small_im2col = tensor_conv2d(small, w, b, 1, 1);
    conv_set_winograd(CONV_WINOGRAD_AUTO);
    Tensor *wino = tensor_conv2d(x, w, b, 1, 1);
    Tensor *small_auto = tensor_conv2d(small, w, b, 1, 1);
    conv_set_winograd(CONV_WINOGRAD_OFF);
    Tensor *again = tensor_conv2d(x, w, b, 1, 1);
    conv_set_winograd(prev);
    double max_diff = 0;
    for (int64_t i = 0; i < wino->numel; i++) {
        const double d = fabs((double)tensor_f32(wino)[i] - tensor_f32(im2col)[i]);
        if (d > max_diff) max_diff = d;
    }
    EXPECT(max_diff > 0, "the Winograd output equals im2col's bit for bit: was it taken?");
    EXPECT_CLOSE_N("winograd vs im2col", tensor_f32(wino), tensor_f32(im2col), wino->numel,
                   tol_matmul_atol(32 * 9), TOL_MATMUL_RTOL);
    EXPECT(memcmp(again->data, im2col->data, (size_t)im2col->numel * sizeof(float)) == 0,
           "CONV_WINOGRAD_OFF did not restore the im2col path");
    EXPECT(memcmp(small_auto->data, small_im2col->data,
                  (size_t)small_im2col->numel * sizeof(float)) == 0,
           "20 tiles took the Winograd path under CONV_WINOGRAD_AUTO");
}

/* The transforms of tensor/ops/conv.c in double, as the code applies them (F(4x4, 3x3) with its
 * power-of-two row scaling): B^T (a x a), G (a x 3), A^T (m x a), a = m + 2. */
static const double wino2_bt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const double wino2_g[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
static const double wino2_at[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const double wino4_bt_d[6][6] = {{2, -3, -4, 3, 2, 0}, {0, -2, 1, 5, 2, 0},
                                        {0, 2, -5, 1, 2, 0},  {0, -2, -1, 2, 1, 0},
                                        {0, 1, -2, -1, 2, 0}, {0, 2, -3, -4, 3, 2}};
static const double wino4_g_d[6][3] = {{.5, 0, 0},
                                       {1. / 6, 1. / 6, 1. / 6},
                                       {-1. / 6, 1. / 6, -1. / 6},
                                       {-16. / 15, -8. / 15, -4. / 15},
                                       {1. / 30, -1. / 15, 2. / 15},
                                       {0, 0, .5}};
static const double wino4_at_d[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, .5, -2, 0},
                                        {0, 1, 1, .25, 4, 0}, {0, 1, -1, .125, -8, 1}};

/* out (a x b) = L (a x k) X (k x k) R^T (b x k), all |.| when `abs`, row-major, a, b, k <= 6. */
static void wino_sandwich(double *out, const double *L, int a, const double *X, int k,
                          const double *R, int b, bool abs) {
    double t[6][6];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < k; j++) {
            double v = 0;
            for (int l = 0; l < k; l++)
                v += (abs ? fabs(L[i * k + l]) : L[i * k + l]) * X[l * k + j];
            t[i][j] = v;
        }
    for (int i = 0; i < a; i++)
        for (int j = 0; j < b; j++) {
            double v = 0;
            for (int l = 0; l < k; l++) v += t[i][l] * (abs ? fabs(R[j * k + l]) : R[j * k + l]);
            out[i * b + j] = v;
        }
}

/* For a 3x3 stride-1 convolution with padding pad: ref = the direct convolution plus bias in
 * double, and mag = the magnitude of the Winograd bound in double: per tile of m x m outputs
 * |A^T| (sum_c (|G| |g| |G|^T) .* (|B^T| |d| |B^T|^T)) |A| plus |bias|, d the zero-padded
 * input patch and g the filter (docs/ops/conv.md). Both (N,O,OH,OW). */
static void wino_reference(double *ref, double *mag, const Tensor *x, const Tensor *w,
                           const Tensor *b, int64_t pad, int m) {
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = w->shape[0], OH = H + 2 * pad - 2, OW = W + 2 * pad - 2;
    const int a = m + 2;
    const double *BT = m == 4 ? &wino4_bt_d[0][0] : &wino2_bt[0][0];
    const double *G = m == 4 ? &wino4_g_d[0][0] : &wino2_g[0][0];
    const double *AT = m == 4 ? &wino4_at_d[0][0] : &wino2_at[0][0];
    const float *xv = tensor_f32((Tensor *)x), *wv = tensor_f32((Tensor *)w);
    const float *bv = b ? tensor_f32((Tensor *)b) : NULL;
    double *U = xcalloc((size_t)(O * C * 36), sizeof *U), *V = xcalloc((size_t)(C * 36), sizeof *V);
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++) { /* |G| |g| |G|^T */
            double g[9];
            for (int k = 0; k < 9; k++) g[k] = fabs(wv[(o * C + c) * 9 + k]);
            double gg[6][6] = {{0}};
            for (int i = 0; i < a; i++) /* |G| |g| (a x 3), then times |G|^T */
                for (int j = 0; j < 3; j++)
                    for (int l = 0; l < 3; l++) gg[i][j] += fabs(G[i * 3 + l]) * g[l * 3 + j];
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++) {
                    double v = 0;
                    for (int l = 0; l < 3; l++) v += gg[i][l] * fabs(G[j * 3 + l]);
                    U[(o * C + c) * 36 + i * a + j] = v;
                }
        }
    for (int64_t n = 0; n < N; n++)
        for (int64_t ty = 0; ty * m < OH; ty++)
            for (int64_t tx = 0; tx * m < OW; tx++) {
                for (int64_t c = 0; c < C; c++) {
                    double d[36];
                    for (int i = 0; i < a; i++)
                        for (int j = 0; j < a; j++) {
                            const int64_t ih = m * ty - pad + i, iw = m * tx - pad + j;
                            d[i * a + j] = ih >= 0 && ih < H && iw >= 0 && iw < W
                                               ? fabs(xv[((n * C + c) * H + ih) * W + iw]) : 0.0;
                        }
                    wino_sandwich(V + c * 36, BT, a, d, a, BT, a, true);
                }
                for (int64_t o = 0; o < O; o++) {
                    double S[36] = {0}, Y[16];
                    for (int64_t c = 0; c < C; c++)
                        for (int k = 0; k < a * a; k++)
                            S[k] += U[(o * C + c) * 36 + k] * V[c * 36 + k];
                    wino_sandwich(Y, AT, m, S, a, AT, m, true);
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < m; j++) {
                            const int64_t oh = m * ty + i, ow = m * tx + j;
                            if (oh >= OH || ow >= OW) continue;
                            const int64_t at = ((n * O + o) * OH + oh) * OW + ow;
                            double y = bv ? bv[o] : 0.0;
                            for (int64_t c = 0; c < C; c++)
                                for (int kh = 0; kh < 3; kh++)
                                    for (int kw = 0; kw < 3; kw++) {
                                        const int64_t ih = oh - pad + kh, iw = ow - pad + kw;
                                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                        y += (double)wv[((o * C + c) * 3 + kh) * 3 + kw] *
                                             xv[((n * C + c) * H + ih) * W + iw];
                                    }
                            ref[at] = y;
                            mag[at] = Y[i * m + j] + (bv ? fabs(bv[o]) : 0.0);
                        }
                }
            }
    free(U);
    free(V);
}

/* Roundings on the longest path from one input or weight value to an output, besides the C-long
 * sum of the products (docs/ops/conv.md): F(2x2, 3x3) weight transform 2 per 1-D pass (two
 * additions; halving is exact), input transform 1, output transform 2, so 2*(2+1+2) = 10;
 * F(4x4, 3x3) weight transform 4 per pass (two additions, the product with a rounded constant:
 * two factors), input transform 4 (the longest of wino4_bt), output transform 4, so 24; and the
 * bias 1. */
#define WINO2_DEPTH 11
#define WINO4_DEPTH 25

/* Both Winograd forwards against the float64 direct convolution, every element within
 * gamma_{C + depth} times the magnitude of wino_reference (Higham, Lemma 3.3: a value that went
 * through k roundings errs by at most gamma_k of the sum of its terms' magnitudes); the largest
 * fraction of the bound reached goes to stdout. Shapes with every remainder of OH and OW modulo
 * 4, padding 1 and 0, unit-normal and post-ReLU (|x|) inputs, 64 and 256 input channels. */
TEST(conv_winograd_within_bound) {
    static const struct {
        int64_t n, c, h, w, o, pad;
        bool relu_input;
    } shapes[] = {{2, 64, 9, 10, 24, 1, false}, {1, 256, 7, 6, 16, 0, true},
                  {1, 64, 13, 12, 16, 1, true},
                  /* 1100 input channels: more than one slice of k of the own fp32 GEMM
                   * (KC <= 512), whose Winograd weights are written straight into its panels
                   * slice by slice; 13 output channels: a second panel with one row */
                  {1, 1100, 6, 5, 13, 1, false}};
    const bool grad = ag_set_grad_enabled(false);
    const ConvWinograd prev = conv_set_winograd(CONV_WINOGRAD_ALWAYS);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Tensor *x = test_randn(140 + s, 4, SHAPE(shapes[s].n, shapes[s].c, shapes[s].h,
                                                 shapes[s].w));
        Tensor *w = test_randn(150 + s, 4, SHAPE(shapes[s].o, shapes[s].c, 3, 3));
        Tensor *b = test_randn(160 + s, 1, SHAPE(shapes[s].o));
        if (shapes[s].relu_input)
            for (int64_t i = 0; i < x->numel; i++) tensor_f32(x)[i] = fabsf(tensor_f32(x)[i]);
        for (int t = 0; t < 2; t++) {
            const ConvWinogradTile prev_tile = conv_set_winograd_tile(wino_tiles[t]);
            Tensor *got = tensor_conv2d(x, w, b, 1, shapes[s].pad);
            conv_set_winograd_tile(prev_tile);
            double *ref = xcalloc((size_t)got->numel, sizeof *ref);
            double *mag = xcalloc((size_t)got->numel, sizeof *mag);
            wino_reference(ref, mag, x, w, b, shapes[s].pad, (int)wino_tiles[t]);
            const int64_t k = shapes[s].c + (wino_tiles[t] == CONV_WINOGRAD_F4 ? WINO4_DEPTH
                                                                              : WINO2_DEPTH);
            const double gamma = k * TOL_UNIT_ROUNDOFF / (1 - k * TOL_UNIT_ROUNDOFF);
            double worst = 0;
            int64_t bad = 0, at = 0;
            for (int64_t i = 0; i < got->numel; i++) {
                const double e = fabs(tensor_f32(got)[i] - ref[i]), bound = gamma * mag[i];
                if (e > bound && bad++ == 0) at = i;
                if (bound > 0 && e / bound > worst) worst = e / bound;
            }
            EXPECT(bad == 0, "F%d shape %zu: %lld of %lld outputs beyond gamma_%lld * magnitude, "
                   "first at %lld: got %.9g, float64 %.9g, bound %.3g", (int)wino_tiles[t], s,
                   (long long)bad, (long long)got->numel, (long long)k, (long long)at,
                   tensor_f32(got)[at], ref[at], gamma * mag[at]);
            printf("  F%d %lldx%lldx%lldx%lld -> %lld: largest error %.2e of the bound\n",
                   (int)wino_tiles[t], (long long)shapes[s].n, (long long)shapes[s].c,
                   (long long)shapes[s].h, (long long)shapes[s].w, (long long)shapes[s].o, worst);
            free(ref);
            free(mag);
        }
    }
    conv_set_winograd(prev);
    ag_set_grad_enabled(grad);
}

TEST(conv_winograd_tile_is_taken_and_switchable) {
    /* Through the wrapper under AUTO: with 2*12*10 = 240 tiles of 4x4 outputs the default
     * F(4x4, 3x3) is taken (its rounding differs from F(2x2, 3x3)'s, both are close to
     * im2col's); with 2*6*5 = 60 tiles of 4x4 (240 of 2x2) AUTO falls back to F(2x2, 3x3), bit
     * for bit what CONV_WINOGRAD_F2 gives. */
    Tensor *x = test_randn(45, 4, SHAPE(2, 32, 48, 40));
    Tensor *few = test_randn(46, 4, SHAPE(2, 32, 24, 20));
    Tensor *w = test_randn(47, 4, SHAPE(32, 32, 3, 3));
    Tensor *b = test_randn(48, 1, SHAPE(32));
    const ConvWinograd prev = conv_set_winograd(CONV_WINOGRAD_OFF);
    Tensor *im2col = tensor_conv2d(x, w, b, 1, 1);
    conv_set_winograd(CONV_WINOGRAD_AUTO);
    const ConvWinogradTile prev_tile = conv_set_winograd_tile(CONV_WINOGRAD_F2);
    Tensor *f2 = tensor_conv2d(x, w, b, 1, 1), *few_f2 = tensor_conv2d(few, w, b, 1, 1);
    conv_set_winograd_tile(CONV_WINOGRAD_F4);
    Tensor *f4 = tensor_conv2d(x, w, b, 1, 1), *few_f4 = tensor_conv2d(few, w, b, 1, 1);
    conv_set_winograd(prev);
    conv_set_winograd_tile(prev_tile);
    EXPECT(memcmp(f4->data, f2->data, (size_t)f2->numel * sizeof(float)) != 0,
           "F(4x4, 3x3) equals F(2x2, 3x3) bit for bit: was it taken?");
    EXPECT_CLOSE_N("winograd F2 vs im2col", tensor_f32(f2), tensor_f32(im2col), f2->numel,
                   wino_atol(32 * 9, CONV_WINOGRAD_F2), TOL_MATMUL_RTOL);
    EXPECT_CLOSE_N("winograd F4 vs im2col", tensor_f32(f4), tensor_f32(im2col), f4->numel,
                   wino_atol(32 * 9, CONV_WINOGRAD_F4), TOL_MATMUL_RTOL);
    EXPECT(memcmp(few_f4->data, few_f2->data, (size_t)few_f2->numel * sizeof(float)) == 0,
           "60 tiles of 4x4 did not fall back to F(2x2, 3x3) under CONV_WINOGRAD_AUTO");
}

/* ---- fused epilogues (tensor_conv2d_relu, tensor_conv2d_add_relu_) --------------------- */

/* The kernel with its epilogue flags on every path and blocking against the plain kernel
 * followed by the epilogue written out here, in the documented order: relu(conv + bias), and
 * with a residual relu((residual + conv) + bias). The same float operations in the same order,
 * so bit for bit: the product added onto the residual inside the GEMM (beta = 1) is the plain
 * fl(residual + product) while K fits one K block of the BLAS (K <= 9 * 33 here). Paths: 1x1,
 * im2col in blocks of all images, of one image, of output rows (stride 2), and Winograd
 * F(2x2, 3x3) and F(4x4, 3x3) with per-thread and shared blocks and channel slices. */
TEST(conv_fused_epilogue_every_path_and_blocking) {
    typedef struct {
        int64_t n, c, h, w, o, k, stride, pad;
        int64_t tile_imgs, tile_rows; /* 0: all images, all rows */
        int64_t wino_rows, wino_o, wino_threads, wino_per_thread; /* wino_rows 0: im2col */
        int64_t wino_m; /* 0: tiles of 2 */
    } Case;
    static const Case cases[] = {
        {3, 7, 5, 6, 4, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},         /* 1x1 */
        {3, 5, 9, 7, 6, 3, 1, 1, 0, 0, 0, 0, 0, 0, 0},         /* im2col, all images, one block */
        {3, 5, 9, 7, 6, 3, 1, 1, 2, 0, 0, 0, 0, 0, 0},         /* blocks of two images */
        {2, 5, 11, 9, 6, 3, 2, 1, 1, 2, 0, 0, 0, 0, 0},        /* stride 2, 2 output rows */
        {2, 33, 7, 9, 40, 3, 1, 1, 0, 0, 2, 16, 2, 1, 0},      /* F2, per thread, slices */
        {2, 32, 6, 5, 32, 3, 1, 1, 0, 0, 1000, 1000, 2, 0, 0}, /* F2, one shared block */
        {2, 33, 11, 9, 40, 3, 1, 1, 0, 0, 1, 16, 2, 1, 4},     /* F4, per thread, slices */
        {2, 32, 6, 7, 32, 3, 1, 1, 0, 0, 1000, 1000, 2, 0, 4}  /* F4, one shared block */
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const Case *cs = &cases[s];
        ConvGeom g = {.n = cs->n, .c = cs->c, .h = cs->h, .w = cs->w, .o = cs->o, .kh = cs->k,
                      .kw = cs->k, .stride_h = cs->stride, .stride_w = cs->stride,
                      .pad_h = cs->pad, .pad_w = cs->pad};
        g.oh = (g.h + 2 * g.pad_h - g.kh) / g.stride_h + 1;
        g.ow = (g.w + 2 * g.pad_w - g.kw) / g.stride_w + 1;
        g.tile_imgs = cs->tile_imgs ? cs->tile_imgs : g.n;
        g.tile_rows = cs->tile_rows ? cs->tile_rows : g.oh;
        const int64_t m = cs->wino_m ? cs->wino_m : 2, nxi = (m + 2) * (m + 2);
        const int64_t TH = (g.oh + m - 1) / m, TW = (g.ow + m - 1) / m;
        if (cs->wino_rows) {
            g.wino_m = m;
            g.wino_rows =
                cs->wino_per_thread && cs->wino_rows < g.n * TH ? cs->wino_rows : g.n * TH;
            g.wino_o = cs->wino_o < g.o ? cs->wino_o : g.o;
            g.wino_threads = cs->wino_threads;
            g.wino_per_thread = cs->wino_per_thread;
        }
        const int64_t K = g.c * g.kh * g.kw, P = g.oh * g.ow, nout = g.n * g.o * P;
        /* scratch for either path: im2col's col and block buffer, or Winograd's U, V, M */
        const int64_t tb = g.wino_rows * TW, th = g.wino_threads ? g.wino_threads : 1;
        const size_t col_floats = (size_t)(K * g.tile_imgs * g.tile_rows * g.ow +
                                           nxi * (g.o * g.c + 32) + th * nxi * (g.c * tb + 32));
        const size_t buf_floats = (size_t)(g.o * g.n * P + th * nxi * (g.o * tb + 32));
        float *col = arena_alloc(tensor_arena(), col_floats * sizeof(float));
        float *ybuf = arena_alloc(tensor_arena(), buf_floats * sizeof(float));
        Tensor *x = test_randn(50 + s, 4, SHAPE(g.n, g.c, g.h, g.w));
        Tensor *w = test_randn(60 + s, 4, SHAPE(g.o, g.c, g.kh, g.kw));
        Tensor *b = test_randn(70 + s, 1, SHAPE(g.o));
        Tensor *res = test_randn(80 + s, 1, SHAPE(nout));
        const float *bias = tensor_f32(b), *r = tensor_f32(res);
        Tensor *plain = TENSOR_F32(nout), *want = TENSOR_F32(nout), *got = TENSOR_F32(nout);
        KERNEL_RUN(DEVICE_CPU, conv2d_forward, plain->data, x->data, w->data, NULL, col, ybuf,
                                                &g, false, false);
        const float *pl = tensor_f32(plain);
        for (int variant = 0; variant < 3; variant++) {
            /* 0: bias + ReLU; 1: residual + bias + ReLU; 2: residual, no bias, no ReLU */
            const bool residual = variant >= 1, relu = variant <= 1;
            const float *bv = variant <= 1 ? bias : NULL;
            for (int64_t i = 0; i < nout; i++) {
                float v = residual ? r[i] + pl[i] : pl[i];
                v = v + (bv ? bv[(i / P) % g.o] : 0.0f);
                tensor_f32(want)[i] = relu ? (v > 0 ? v : 0.0f) : v;
            }
            if (residual) memcpy(got->data, r, (size_t)nout * sizeof(float));
            else tensor_fill(got, NAN); /* every output must be written */
            KERNEL_RUN(DEVICE_CPU, conv2d_forward, got->data, x->data, w->data, bv, col, ybuf, &g,
                                                    residual, relu);
            char msg[160];
            snprintf(msg, sizeof msg, "case %zu (%lldx%lld, %s F%lld), residual %d, bias %d, "
                     "relu %d", s, (long long)g.kh, (long long)g.kw,
                     g.wino_rows ? "winograd" : "gemm", (long long)g.wino_m, residual, bv != NULL,
                     relu);
            EXPECT_CLOSE_N(msg, tensor_f32(got), tensor_f32(want), nout, 0, 0);
        }
    }
}

/* The wrappers against the unfused ops, on the default path of each geometry and with
 * Winograd forced and refused, in fp32 and (where the CPU runs it) under PRECISION_BF16:
 * tensor_conv2d_relu = tensor_relu(tensor_conv2d) and tensor_conv2d_add_relu_(acc) =
 * relu((acc + conv without bias) + bias), bit for bit; with a tape recording,
 * tensor_conv2d_relu runs the two ops (a node for each) and its gradient is theirs. */
TEST(conv_fused_wrappers_match_unfused_ops) {
    static const struct {
        int64_t n, c, h, w, o, k, stride, pad;
        bool bias;
    } shapes[] = {
        {2, 6, 5, 7, 5, 1, 1, 0, true},  {2, 6, 5, 7, 5, 1, 1, 0, false},
        {2, 32, 8, 6, 32, 3, 1, 1, true}, {3, 4, 9, 8, 5, 3, 2, 1, true},
    };
    static const ConvWinograd modes[] = {CONV_WINOGRAD_AUTO, CONV_WINOGRAD_ALWAYS,
                                         CONV_WINOGRAD_OFF};
    const bool grad = ag_set_grad_enabled(false);
    const int precisions = gemm_bf16_available() ? 2 : 1;
    for (int pr = 0; pr < precisions; pr++)
    for (int tl = 0; tl < 2; tl++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            const ConvWinograd prev = conv_set_winograd(modes[m]);
            const ConvWinogradTile prev_tile = conv_set_winograd_tile(wino_tiles[tl]);
            EXPECT(tensor_set_precision(pr ? PRECISION_BF16 : PRECISION_FP32) == STATUS_OK, "%s",
                   error_last());
            Tensor *x = test_randn(90 + s, 4, SHAPE(shapes[s].n, shapes[s].c, shapes[s].h,
                                                    shapes[s].w));
            Tensor *w = test_randn(100 + s, 4, SHAPE(shapes[s].o, shapes[s].c, shapes[s].k,
                                                     shapes[s].k));
            Tensor *b = shapes[s].bias ? test_randn(110 + s, 1, SHAPE(shapes[s].o)) : NULL;
            const int64_t st = shapes[s].stride, pad = shapes[s].pad;
            Tensor *ref = tensor_relu(tensor_conv2d(x, w, b, st, pad));
            Tensor *got = tensor_conv2d_relu(x, w, b, st, pad);
            char msg[128];
            snprintf(msg, sizeof msg, "conv2d_relu shape %zu, winograd mode %d tile %d, %s", s,
                     (int)modes[m], (int)wino_tiles[tl], precision_name(tensor_precision()));
            EXPECT_CLOSE_N(msg, tensor_f32(got), tensor_f32(ref), ref->numel, 0, 0);

            Tensor *acc = test_randn(120 + s, ref->ndim, ref->shape);
            Tensor *sum = tensor_add(acc, tensor_conv2d(x, w, NULL, st, pad));
            if (b) sum = tensor_add(sum, tensor_reshape(b, 4, SHAPE(1, shapes[s].o, 1, 1)));
            Tensor *want = tensor_relu(sum);
            Tensor *out = tensor_conv2d_add_relu_(acc, x, w, b, st, pad);
            EXPECT(out == acc, "conv2d_add_relu_ did not return acc");
            snprintf(msg, sizeof msg, "conv2d_add_relu_ shape %zu, winograd mode %d tile %d, %s",
                     s, (int)modes[m], (int)wino_tiles[tl], precision_name(tensor_precision()));
            EXPECT_CLOSE_N(msg, tensor_f32(acc), tensor_f32(want), want->numel, 0, 0);
            tensor_set_precision(PRECISION_FP32);
            conv_set_winograd(prev);
            conv_set_winograd_tile(prev_tile);
        }
    }
    ag_set_grad_enabled(true);
    Tensor *x = test_randn(130, 4, SHAPE(2, 3, 6, 5));
    Tensor *w = test_randn(131, 4, SHAPE(4, 3, 3, 3));
    Tensor *b = test_randn(132, 1, SHAPE(4));
    Tensor *dout = test_randn(133, 4, SHAPE(2, 4, 6, 5));
    ag_set_requires_grad(x, NULL);
    Tensor *ref = tensor_relu(tensor_conv2d(x, w, b, 1, 1));
    ag_backward_with(ref, dout);
    Tensor *dx_ref = x->grad;
    x->grad = NULL;
    Tensor *got = tensor_conv2d_relu(x, w, b, 1, 1);
    EXPECT(got->node != NULL && strcmp(got->node->op, "relu") == 0,
           "conv2d_relu under a tape did not record the relu node (got %s)",
           got->node ? got->node->op : "no node");
    EXPECT_CLOSE_N("conv2d_relu under a tape: forward", tensor_f32(got), tensor_f32(ref),
                   ref->numel, 0, 0);
    ag_backward_with(got, dout);
    EXPECT_CLOSE_N("conv2d_relu under a tape: dx", tensor_f32(x->grad), tensor_f32(dx_ref),
                   x->numel, 0, 0);
    ag_set_grad_enabled(grad);
}
