/* resample.c — Pillow-exact image resizing (nearest, bilinear, bicubic).
 *
 * Convolution resampling (bilinear, bicubic), one axis at a time. For an axis of `in` samples
 * resized to `out`, with scale s = in/out:
 *     filterscale f = max(s, 1)          (downscaling widens the filter: antialiasing)
 *     support     r = R·f                (R = 1 bilinear "triangle", 2 bicubic)
 *     centre      c = (i + 0.5)·s        for output sample i
 *     taps        j = xmin .. xmax−1,    xmin = trunc(c − r + 0.5) ≥ 0, xmax = trunc(c + r + 0.5) ≤ in
 *     weight      k_j = K((j − c + 0.5) / f), normalised to sum 1
 * K is the triangle 1 − |x|, or Keys' cubic with a = −0.5:
 *     (a+2)|x|³ − (a+3)|x|² + 1 (|x| < 1),  a(|x|³ − 5|x|² + 8|x| − 4) (1 ≤ |x| < 2),  0 beyond.
 * Each weight becomes a fixed-point integer with 22 fractional bits, rounded half away from zero;
 * an output sample is (2^21 + Σ k_j·v_j) >> 22, clamped to 0..255. The horizontal pass runs first
 * and its 8-bit result feeds the vertical pass; an axis whose size does not change is skipped.
 * Every floating-point expression is evaluated in the same order as Pillow's, so the weights,
 * hence the pixels, are bit-identical.
 *
 * Nearest: source index floor(x_o) where x_o starts at s/2 and advances by s per output sample
 * (accumulated in double, as Pillow does). */
#include "tensor/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22 /* 32 − 8 (pixel) − 2 (headroom for weights summing above 1) */

const char *resample_filter_name(ResampleFilter f) {
    switch (f) {
    case RESAMPLE_NEAREST: return "nearest";
    case RESAMPLE_BILINEAR: return "bilinear";
    case RESAMPLE_BICUBIC: return "bicubic";
    }
    return "unknown";
}

static double triangle_kernel(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double cubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Taps of one axis: output sample i reads input samples first[i] .. first[i]+count[i]−1 with
 * weights coef[i*ksize .. i*ksize+count[i]−1]. */
typedef struct {
    int ksize;
    int *first, *count;
    int32_t *coef;
} Taps;

static Taps taps_make(int in, int out, ResampleFilter filter) {
    double support_unit = filter == RESAMPLE_BICUBIC ? 2.0 : 1.0;
    double (*kernel)(double) = filter == RESAMPLE_BICUBIC ? cubic_kernel : triangle_kernel;
    double scale = (double)in / out;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_unit * filterscale;
    Taps t;
    t.ksize = (int)ceil(support) * 2 + 1;
    t.first = xmalloc(sizeof(int) * (size_t)out);
    t.count = xmalloc(sizeof(int) * (size_t)out);
    t.coef = xcalloc((size_t)out * (size_t)t.ksize, sizeof(int32_t));
    double *w = xmalloc(sizeof(double) * (size_t)t.ksize);
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow's "round" */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in) xmax = in;
        int n = xmax - xmin;
        double ww = 0.0;
        for (int x = 0; x < n; x++) {
            w[x] = kernel((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = t.coef + (size_t)i * (size_t)t.ksize;
        for (int x = 0; x < n; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        t.first[i] = xmin;
        t.count[i] = n;
    }
    free(w);
    return t;
}

static void taps_free(Taps *t) {
    free(t->first);
    free(t->count);
    free(t->coef);
}

/* Round the fixed-point sum to 8 bits. |Σk| <= ~1.3·2^22 for bicubic, so the sum of 255·k stays
 * far inside int32. */
static inline uint8_t clip8(int32_t s) {
    if (s < 0) return 0;
    s >>= PRECISION_BITS;
    return (uint8_t)(s > 255 ? 255 : s);
}

/* Horizontal pass: rows y0 .. y0+rows−1 of src (width in_w) to dst (rows x out_w). */
static void pass_horizontal(uint8_t *dst, const uint8_t *src, int in_w, int out_w, int y0,
                            int rows, const Taps *t) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)(y0 + y) * (size_t)in_w * 3;
        uint8_t *o = dst + (size_t)y * (size_t)out_w * 3;
        for (int x = 0; x < out_w; x++) {
            const int32_t *k = t->coef + (size_t)x * (size_t)t->ksize;
            const uint8_t *p = in + (size_t)t->first[x] * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int j = 0; j < t->count[x]; j++) {
                s0 += p[3 * j] * k[j];
                s1 += p[3 * j + 1] * k[j];
                s2 += p[3 * j + 2] * k[j];
            }
            o[3 * x] = clip8(s0);
            o[3 * x + 1] = clip8(s1);
            o[3 * x + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: src has width w; its row r holds input row y0 + r. `acc` holds w*3 int32
 * (scratch): each output row is accumulated tap row by tap row, so the inner loop runs along
 * contiguous memory (and vectorises); the sums are the same integers as in the per-pixel order. */
static void pass_vertical(uint8_t *dst, const uint8_t *src, int w, int out_h, int y0,
                          const Taps *t, int32_t *acc) {
    size_t stride = (size_t)w * 3;
    for (int y = 0; y < out_h; y++) {
        const int32_t *k = t->coef + (size_t)y * (size_t)t->ksize;
        const uint8_t *base = src + (size_t)(t->first[y] - y0) * stride;
        uint8_t *o = dst + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) acc[x] = 1 << (PRECISION_BITS - 1);
        for (int j = 0; j < t->count[y]; j++) {
            const uint8_t *row = base + (size_t)j * stride;
            int32_t kj = k[j];
            for (size_t x = 0; x < stride; x++) acc[x] += row[x] * kj;
        }
        for (size_t x = 0; x < stride; x++) o[x] = clip8(acc[x]);
    }
}

static Image resize_nearest(const Image *src, int w, int h) {
    Image out = image_zeros(w, h);
    int *xin = xmalloc(sizeof(int) * (size_t)w);
    double sx = (double)src->w / w, sy = (double)src->h / h;
    /* Accumulated, not multiplied: Pillow steps the coordinate by the scale, and the rounding
     * of the running sum decides ties. Out-of-range coordinates leave black, as in Pillow. */
    double xo = sx * 0.5;
    for (int x = 0; x < w; x++, xo += sx) xin[x] = xo < 0.0 ? -1 : (int)xo;
    double yo = sy * 0.5;
    for (int y = 0; y < h; y++, yo += sy) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        if (yi < 0 || yi >= src->h) continue;
        const uint8_t *in = src->px + (size_t)yi * (size_t)src->w * 3;
        uint8_t *o = out.px + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++)
            if (xin[x] >= 0 && xin[x] < src->w) memcpy(o + 3 * x, in + 3 * (size_t)xin[x], 3);
    }
    free(xin);
    return out;
}

Image image_resize(const Image *src, int w, int h, ResampleFilter filter) {
    CHECK(src && src->px, "image_resize of an empty image");
    CHECK(w >= 1 && h >= 1 && w <= IMAGE_MAX_SIDE && h <= IMAGE_MAX_SIDE,
          "image_resize %dx%d -> %dx%d: target size outside 1..%d", src->w, src->h, w, h,
          IMAGE_MAX_SIDE);
    CHECK(filter == RESAMPLE_NEAREST || filter == RESAMPLE_BILINEAR || filter == RESAMPLE_BICUBIC,
          "image_resize: unknown filter %d", (int)filter);
    if (w == src->w && h == src->h) return image_clone(src);
    if (filter == RESAMPLE_NEAREST) return resize_nearest(src, w, h);

    bool need_h = w != src->w, need_v = h != src->h;
    Taps tv = taps_make(src->h, h, filter);
    /* The horizontal pass only needs the input rows that some vertical tap reads. */
    int y0 = 0, y1 = src->h;
    if (need_v) {
        y0 = tv.first[0];
        y1 = tv.first[h - 1] + tv.count[h - 1];
    }
    Image out = image_new(w, h);
    int32_t *acc = need_v ? xmalloc(sizeof(int32_t) * (size_t)w * 3) : NULL;
    if (need_h) {
        Taps th = taps_make(src->w, w, filter);
        if (need_v) {
            uint8_t *tmp = xmalloc((size_t)(y1 - y0) * (size_t)w * 3);
            pass_horizontal(tmp, src->px, src->w, w, y0, y1 - y0, &th);
            pass_vertical(out.px, tmp, w, h, y0, &tv, acc);
            free(tmp);
        } else {
            pass_horizontal(out.px, src->px, src->w, w, 0, h, &th);
        }
        taps_free(&th);
    } else {
        pass_vertical(out.px, src->px, w, h, 0, &tv, acc);
    }
    taps_free(&tv);
    free(acc);
    return out;
}

Image image_resize_shorter(const Image *src, int n, ResampleFilter filter) {
    CHECK(src && src->px && n >= 1, "image_resize_shorter: empty image or size %d", n);
    int64_t shorter = src->w <= src->h ? src->w : src->h;
    int64_t longer = src->w <= src->h ? src->h : src->w;
    /* torchvision: int(n * long / short), a correctly rounded double quotient, truncated. */
    int64_t other = (int64_t)((double)((int64_t)n * longer) / (double)shorter);
    CHECK(other <= IMAGE_MAX_SIDE, "image_resize_shorter: %dx%d to shorter side %d gives a side "
          "of %lld", src->w, src->h, n, (long long)other);
    return src->w <= src->h ? image_resize(src, n, (int)other, filter)
                            : image_resize(src, (int)other, n, filter);
}
