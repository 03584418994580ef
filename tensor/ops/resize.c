/* resize.c — bicubic and bilinear resampling of NCHW maps, matching
 * torch.nn.functional.interpolate(..., align_corners=False) of PyTorch 1.13 (no antialias).
 *
 * Each axis is resampled independently (the 2-D kernel is a product of 1-D kernels), so the
 * kernels run a horizontal pass (N,C,H,W) -> scratch (N,C,H,OW) and then a vertical pass
 * scratch -> (N,C,OH,OW). For output index d along an axis of input size `in` and output size
 * `out`, as PyTorch does when an output size (not a scale factor) is given:
 *     scale = in / out                  (rounded to float32, as PyTorch does)
 *     src   = (d + 0.5) * scale - 0.5   (not rounded to float32)
 * Bicubic: src is not clamped; with i = floor(src), t = src - i, the four taps i-1 .. i+2 are
 * clamped to [0, in-1] and weighted W(t+1), W(t), W(1-t), W(2-t) with Keys' cubic convolution,
 * A = -0.75:
 *     W(x) = (A+2)|x|^3 - (A+3)|x|^2 + 1          for |x| <= 1
 *     W(x) = A|x|^3 - 5A|x|^2 + 8A|x| - 4A        for 1 < |x| < 2
 * Bilinear: src is clamped at 0; taps i = floor(src) and min(i+1, in-1), weights 1-t and t.
 * Weights and tap sums are computed in double and each pass rounds to float32 once, so results
 * sit within PyTorch's own float32 rounding noise of its output. Forward only; nothing saved. */
#include "tensor/ops/resize.h"

#include <math.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

#define RESIZE_MAX_TAPS 4

/* Source indices and weights of output index `dst` along one axis; returns the tap count. */
typedef int (*TapsFn)(int64_t dst, int64_t in, float scale, int64_t *idx, double *w);

/* The source coordinate as PyTorch 1.13 forms it for float32 input: the scale is in / out
 * rounded to float32, the coordinate itself is not rounded to float32. (Measured: rounding src to
 * float32 moves results by up to 4e-4 at 3001 -> 997, while this form stays within PyTorch's own
 * float32 noise, ~2e-6; the exact double ratio is off by up to 3e-4.) */
static inline double source_coord(int64_t dst, float scale) {
    return (double)scale * ((double)dst + 0.5) - 0.5;
}

static inline int64_t clamp_index(int64_t i, int64_t in) { return i < 0 ? 0 : i >= in ? in - 1 : i; }

static int bicubic_taps(int64_t dst, int64_t in, float scale, int64_t *idx, double *w) {
    const double A = -0.75;
    double src = source_coord(dst, scale);              /* not clamped: may be below 0 */
    double fl = floor(src);
    int64_t i = (int64_t)fl;
    /* The cubic is evaluated in double: in float32 the far-tap polynomial cancels terms of
     * size ~3 down to ~0.01 and loses several ulps. */
    double t = src - fl;                                /* in [0, 1) */
    double u = 1.0 - t;
    w[0] = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;  /* |x| = t+1 */
    w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;                          /* |x| = t   */
    w[2] = ((A + 2) * u - (A + 3)) * u * u + 1;                          /* |x| = 1-t */
    w[3] = ((A * (u + 1) - 5 * A) * (u + 1) + 8 * A) * (u + 1) - 4 * A;  /* |x| = 2-t */
    for (int j = 0; j < 4; j++) idx[j] = clamp_index(i - 1 + j, in);
    return 4;
}

static int bilinear_taps(int64_t dst, int64_t in, float scale, int64_t *idx, double *w) {
    double src = source_coord(dst, scale);
    if (src < 0.0) src = 0.0;                           /* bilinear clamps the coordinate */
    int64_t i = (int64_t)src;                           /* floor, src >= 0 */
    if (i > in - 1) i = in - 1;
    double t = src - (double)i;
    if (t > 1.0) t = 1.0;
    idx[0] = i;
    idx[1] = i < in - 1 ? i + 1 : i;
    w[0] = 1.0 - t;
    w[1] = t;
    return 2;
}

/* The shared separable driver: rows of every plane along W into scratch, then columns along H.
 * Weights and sums are double; each pass rounds its result to float32 once. */
static void separable_resize(float *out, float *scratch, const float *inp, int64_t planes,
                             int64_t H, int64_t W, int64_t OH, int64_t OW, TapsFn taps) {
    /* PyTorch's scale for an explicit output size: in / out in float32 */
    float sx = (float)W / (float)OW, sy = (float)H / (float)OH;
#pragma omp parallel for schedule(static) if (planes * H * OW > 65536)
    for (int64_t r = 0; r < planes * H; r++) {
        const float *x = inp + r * W;
        float *t = scratch + r * OW;
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t idx[RESIZE_MAX_TAPS];
            double w[RESIZE_MAX_TAPS], s = 0.0;
            int nt = taps(ox, W, sx, idx, w);
            for (int j = 0; j < nt; j++) s += x[idx[j]] * w[j];
            t[ox] = (float)s;
        }
    }
#pragma omp parallel for schedule(static) if (planes * OH * OW > 65536)
    for (int64_t r = 0; r < planes * OH; r++) {
        int64_t p = r / OH, oy = r % OH;
        int64_t idx[RESIZE_MAX_TAPS];
        double w[RESIZE_MAX_TAPS];
        int nt = taps(oy, H, sy, idx, w);
        const float *t = scratch + p * H * OW;
        float *o = out + r * OW;
        for (int64_t ox = 0; ox < OW; ox++) {
            double s = 0.0;
            for (int j = 0; j < nt; j++) s += t[idx[j] * OW + ox] * w[j];
            o[ox] = (float)s;
        }
    }
}

void resize_bicubic_forward_cpu(float *out, float *scratch, const float *inp, int64_t N,
                                int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    /* out (N,C,OH,OW), scratch (N,C,H,OW), inp (N,C,H,W) — assigns */
    separable_resize(out, scratch, inp, N * C, H, W, OH, OW, bicubic_taps);
}

void resize_bilinear_forward_cpu(float *out, float *scratch, const float *inp, int64_t N,
                                 int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    /* out (N,C,OH,OW), scratch (N,C,H,OW), inp (N,C,H,W) — assigns */
    separable_resize(out, scratch, inp, N * C, H, W, OH, OW, bilinear_taps);
}

/* ---- Wrappers ----------------------------------------------------------------------------- */

static void resize_check(const char *op, const Tensor *x, int64_t out_h, int64_t out_w) {
    tensor_check_f32(op, x, "x");
    CHECK(x->ndim == 4, "%s: x must be (N,C,H,W), got %s", op, tensor_shape_str(x));
    CHECK(x->shape[2] >= 1 && x->shape[3] >= 1, "%s: empty spatial size in x %s", op,
          tensor_shape_str(x));
    CHECK(out_h >= 1 && out_w >= 1, "%s: output size %lldx%lld must be positive (x %s)", op,
          (long long)out_h, (long long)out_w, tensor_shape_str(x));
    CHECK(!(ag_grad_enabled() && x->requires_grad),
          "%s: forward only (no backward rule), but x %s requires a gradient; run it under "
          "no-grad or on a frozen tensor", op, tensor_shape_str(x));
}

Tensor *tensor_resize_bicubic(Tensor *x, int64_t out_h, int64_t out_w) {
    resize_check("resize_bicubic", x, out_h, out_w);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(N, C, out_h, out_w));
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *scratch = arena_alloc(arena, (size_t)(N * C * H * out_w) * sizeof(float));
    KERNEL_RUN(x->device, resize_bicubic_forward, out->data, scratch, x->data, N, C, H, W, out_h,
                                                   out_w);
    arena_release(arena, mark);
    return out;
}

Tensor *tensor_resize_bilinear(Tensor *x, int64_t out_h, int64_t out_w) {
    resize_check("resize_bilinear", x, out_h, out_w);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(N, C, out_h, out_w));
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *scratch = arena_alloc(arena, (size_t)(N * C * H * out_w) * sizeof(float));
    KERNEL_RUN(x->device, resize_bilinear_forward, out->data, scratch, x->data, N, C, H, W,
                                                    out_h, out_w);
    arena_release(arena, mark);
    return out;
}
