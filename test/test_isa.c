/* test_isa.c — the instruction-set variants of the CPU kernels' hot loops (tensor/isa.h).
 *
 * The variants compile one source for three targets. GCC's vectoriser never reorders float
 * arithmetic without -fassociative-math, and ISO C mode (-std=c11) turns FMA contraction off, so
 * every level performs the same IEEE operations in the same order: the outputs must be
 * bit-identical to the baseline's (docs/ops/isa.md). That is checked here on random inputs whose
 * sizes are not multiples of any vector width (tails), and the op families with variants re-run
 * their fixture tests under each level in a child process. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/isa.h"
#include "tensor/kernels_cpu.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm_f32.h"
#include "tensor/ops/norm.h"
#include "test/test.h"

/* Bitwise comparison; on failure names the level, the output and the first differing index. */
static bool same_bits(const char *what, IsaLevel level, const float *got, const float *ref,
                      int64_t n) {
    if (memcmp(got, ref, (size_t)n * sizeof *got) == 0) return true;
    int64_t i = 0;
    while (i < n && memcmp(got + i, ref + i, sizeof *got) == 0) i++;
    test_fail(__FILE__, __LINE__, "%s at %s differs from baseline at [%lld]: %.9g vs %.9g", what,
              isa_level_name(level), (long long)i, got[i], ref[i]);
    return false;
}

/* Runs every kernel with ISA variants at `level`, results into out (floats, in a fixed order);
 * returns how many floats were written. */
static int64_t run_kernels(float *out) {
    int64_t pos = 0;
    const int64_t n = 12345; /* not a multiple of 8, 16 or the 8192-element block */
    Tensor *x = test_randn(1, 1, SHAPE(n));
    Tensor *y = test_randn(2, 1, SHAPE(n));
    float *xs = tensor_f32(x);
    for (int64_t i = 0; i < n; i++) xs[i] *= 40.0f; /* reaches exp_poly's clamps at +-87/88 */
    const UnaryOp ops[2] = {UNARY_RELU, UNARY_QUICK_GELU};
    for (int k = 0; k < 2; k++) {
        unary_forward_cpu(out + pos, xs, n, ops[k], 0.0f, 0.0f);
        pos += n;
        memcpy(out + pos, tensor_f32(y), (size_t)n * sizeof(float)); /* accumulates onto y */
        unary_backward_cpu(out + pos, tensor_f32(y), xs, NULL, n, ops[k], 0.0f, 0.0f, true);
        pos += n;
        unary_backward_cpu(out + pos, tensor_f32(y), xs, NULL, n, ops[k], 0.0f, 0.0f, false);
        pos += n;
    }
    /* binary: dense and a trailing row broadcast (bias add) */
    Tensor *a = test_randn(3, 2, SHAPE(37, 53)), *b = test_randn(4, 2, SHAPE(37, 53));
    Tensor *row = test_randn(5, 1, SHAPE(53));
    Tensor *outs[4] = {tensor_add(a, b), tensor_mul(a, b), tensor_sub(a, row), tensor_div(a, b)};
    for (int k = 0; k < 4; k++) {
        memcpy(out + pos, tensor_f32(outs[k]), (size_t)outs[k]->numel * sizeof(float));
        pos += outs[k]->numel;
    }
    /* layer norm forward and backward */
    const int64_t N = 13, C = 77;
    Tensor *lx = test_randn(6, 2, SHAPE(N, C)), *lw = test_randn(7, 1, SHAPE(C));
    Tensor *lb = test_randn(8, 1, SHAPE(C)), *ldy = test_randn(9, 2, SHAPE(N, C));
    float *mean = out + pos + N * C, *rstd = mean + N;
    layernorm_forward_cpu(out + pos, mean, rstd, tensor_f32(lx), tensor_f32(lw), tensor_f32(lb),
                          N, C, 1e-5f);
    pos += N * C + 2 * N;
    float *dinp = out + pos, *dw = dinp + N * C, *db = dw + C;
    memset(dinp, 0, (size_t)(N * C + 2 * C) * sizeof(float));
    layernorm_backward_cpu(dinp, dw, db, tensor_f32(ldy), tensor_f32(lx), tensor_f32(lw), mean,
                           rstd, N, C);
    pos += N * C + 2 * C;
    /* Winograd convolution, F(2x2, 3x3) and F(4x4, 3x3): output sides 13 and 11 (dropped
     * columns and rows for either tile), padding, bias */
    ConvWinograd prev = conv_set_winograd(CONV_WINOGRAD_ALWAYS);
    Tensor *cx = test_randn(10, 4, SHAPE(2, 33, 13, 11));
    Tensor *cw = test_randn(11, 4, SHAPE(35, 33, 3, 3));
    Tensor *cb = test_randn(12, 1, SHAPE(35));
    bool g = ag_set_grad_enabled(false);
    static const ConvWinogradTile tiles[2] = {CONV_WINOGRAD_F2, CONV_WINOGRAD_F4};
    for (int t = 0; t < 2; t++) {
        const ConvWinogradTile prev_tile = conv_set_winograd_tile(tiles[t]);
        Tensor *cy = tensor_conv2d(cx, cw, cb, 1, 1);
        conv_set_winograd_tile(prev_tile);
        memcpy(out + pos, tensor_f32(cy), (size_t)cy->numel * sizeof(float));
        pos += cy->numel;
    }
    /* F(4x4, 3x3) at the shapes that exercise the avx512 form's masks (conv_wino_avx512.h):
     * rows of 7 tiles, 16 to a chunk across three images (row ends at every lane position,
     * some groups with three); rows of 133 tiles, wider than a chunk (a chunk of 5 at an
     * offset, the right padding inside it); and the residual-and-ReLU store. */
    const ConvWinogradTile prev_tile = conv_set_winograd_tile(CONV_WINOGRAD_F4);
    Tensor *nx = test_randn(13, 4, SHAPE(3, 2, 26, 28));
    Tensor *wx = test_randn(14, 4, SHAPE(1, 2, 3, 530));
    Tensor *fw = test_randn(15, 4, SHAPE(3, 2, 3, 3)), *fb = test_randn(16, 1, SHAPE(3));
    Tensor *ys[2] = {tensor_conv2d(nx, fw, fb, 1, 1), tensor_conv2d(wx, fw, fb, 1, 1)};
    Tensor *acc = tensor_empty_like(ys[0]);
    memcpy(acc->data, ys[0]->data, (size_t)acc->numel * sizeof(float));
    tensor_conv2d_add_relu_(acc, nx, fw, fb, 1, 1);
    conv_set_winograd_tile(prev_tile);
    Tensor *fouts[3] = {ys[0], ys[1], acc};
    for (int i = 0; i < 3; i++) {
        memcpy(out + pos, tensor_f32(fouts[i]), (size_t)fouts[i]->numel * sizeof(float));
        pos += fouts[i]->numel;
    }
    ag_set_grad_enabled(g);
    conv_set_winograd(prev);
    return pos;
}

#define ISA_OUT_FLOATS 200000

TEST(isa_variants_bit_identical) {
    /* The convolutions' products stay with OpenBLAS at every level: the own fp32 GEMM, which
     * the avx512 level would take (tensor/ops/gemm_f32.h), sums in another order. */
    const bool own_gemm = gemm_f32_set_enabled(false);
    float *ref = xcalloc(ISA_OUT_FLOATS, sizeof(float));
    float *got = xcalloc(ISA_OUT_FLOATS, sizeof(float));
    const IsaLevel chosen = isa_set_level(ISA_BASELINE);
    const int64_t n = run_kernels(ref);
    CHECK(n <= ISA_OUT_FLOATS, "ISA_OUT_FLOATS %d < %lld", ISA_OUT_FLOATS, (long long)n);
    int tested = 0;
    for (int l = ISA_AVX2; l < ISA_COUNT; l++) {
        if (!isa_supported((IsaLevel)l)) continue;
        isa_set_level((IsaLevel)l);
        memset(got, 0xff, ISA_OUT_FLOATS * sizeof(float));
        EXPECT(run_kernels(got) == n, "output count differs");
        same_bits("hot-loop kernels", (IsaLevel)l, got, ref, n);
        tested++;
    }
    isa_set_level(chosen);
    gemm_f32_set_enabled(own_gemm);
    free(ref);
    free(got);
    if (tested == 0) test_skip("this CPU runs only the baseline level");
}

/* The fixture tests of the op families with ISA variants, once per level below the chosen one
 * (the main run covers the chosen level), each in a child process started with $TRMML_ISA. */
TEST(isa_op_fixtures_at_every_level) {
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    EXPECT(len > 0, "readlink /proc/self/exe");
    if (len <= 0) return;
    exe[len] = '\0';
    int ran = 0;
    for (int l = 0; l < ISA_COUNT; l++) {
        if (!isa_supported((IsaLevel)l) || (IsaLevel)l == isa_level()) continue;
        char cmd[4400], out[65536];
        snprintf(cmd, sizeof cmd,
                 "TRMML_ISA=%s '%s' conv_ elementwise_ norm_ 2>&1",
                 isa_level_name((IsaLevel)l), exe);
        int rc = test_run_capture(cmd, out, sizeof out);
        const char *last = out + strlen(out);
        while (last > out && last[-1] == '\n') last--;
        while (last > out && last[-1] != '\n') last--;
        long passed = -1, failed = -1, skipped = -1;
        sscanf(last, "%ld passed, %ld failed, %ld skipped", &passed, &failed, &skipped);
        EXPECT(rc == 0 && failed == 0 && passed > 20, "TRMML_ISA=%s: exit %d, last line: %s",
               isa_level_name((IsaLevel)l), rc, last);
        if (rc != 0) fprintf(stderr, "%s\n", out);
        ran++;
    }
    if (ran == 0) test_skip("this CPU runs only the baseline level");
}

TEST(isa_env_refuses_unknown_level) {
    char bin[4096], cmd[4400], out[4096];
    if (!test_trmml_path(bin, sizeof bin)) return;
    snprintf(cmd, sizeof cmd, "TRMML_ISA=avx1024 '%s' version 2>&1", bin);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "TRMML_ISA=avx1024: expected baseline, avx2 or avx512"),
           "exit %d: %s", rc, out);
    IsaLevel l;
    EXPECT(isa_parse("baseline", &l) == STATUS_OK && l == ISA_BASELINE, "baseline refused");
    for (int k = 1; k < ISA_COUNT; k++) {
        Status st = isa_parse(isa_level_name((IsaLevel)k), &l);
        EXPECT(isa_supported((IsaLevel)k) ? st == STATUS_OK : st == STATUS_ERR_DEVICE,
               "isa_parse(%s): %d", isa_level_name((IsaLevel)k), (int)st);
    }
    snprintf(cmd, sizeof cmd, "TRMML_ISA=baseline '%s' version 2>&1", bin);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "cpu isa: baseline"), "exit %d: %s", rc, out);
}
