// resize.cu — bicubic and bilinear resampling on the GPU (specification: tensor/ops/resize.c,
// torch.nn.functional.interpolate with align_corners=False, PyTorch 1.13, no antialias).
//
// The same separable scheme as the CPU: a horizontal pass (N,C,H,W) -> scratch (N,C,H,OW), then
// a vertical pass scratch -> (N,C,OH,OW), one thread per output element of each pass. Tap
// indices and weights are computed in double by the same formulas, and each pass rounds to
// float32 once, so the GPU result equals the CPU's up to the order of at most four additions.
#include "cuda/common.cuh"

#define RESIZE_MAX_TAPS 4

__device__ inline double source_coord(int64_t dst, float scale) {
    return (double)scale * ((double)dst + 0.5) - 0.5;
}

__device__ inline int64_t clamp_index(int64_t i, int64_t in) {
    return i < 0 ? 0 : i >= in ? in - 1 : i;
}

__device__ inline int bicubic_taps(int64_t dst, int64_t in, float scale, int64_t *idx, double *w) {
    const double A = -0.75;
    double src = source_coord(dst, scale); // not clamped: may be below 0
    double fl = floor(src);
    int64_t i = (int64_t)fl;
    double t = src - fl, u = 1.0 - t;
    w[0] = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A; // |x| = t+1
    w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;                         // |x| = t
    w[2] = ((A + 2) * u - (A + 3)) * u * u + 1;                         // |x| = 1-t
    w[3] = ((A * (u + 1) - 5 * A) * (u + 1) + 8 * A) * (u + 1) - 4 * A; // |x| = 2-t
    for (int j = 0; j < 4; j++) idx[j] = clamp_index(i - 1 + j, in);
    return 4;
}

__device__ inline int bilinear_taps(int64_t dst, int64_t in, float scale, int64_t *idx, double *w) {
    double src = source_coord(dst, scale);
    if (src < 0.0) src = 0.0; // bilinear clamps the coordinate
    int64_t i = (int64_t)src;
    if (i > in - 1) i = in - 1;
    double t = src - (double)i;
    if (t > 1.0) t = 1.0;
    idx[0] = i;
    idx[1] = i < in - 1 ? i + 1 : i;
    w[0] = 1.0 - t;
    w[1] = t;
    return 2;
}

__device__ inline int resize_taps(bool cubic, int64_t dst, int64_t in, float scale, int64_t *idx,
                                  double *w) {
    return cubic ? bicubic_taps(dst, in, scale, idx, w) : bilinear_taps(dst, in, scale, idx, w);
}

__global__ void resize_rows_kernel(float *scratch, const float *inp, int64_t rows, int64_t W,
                                   int64_t OW, float sx, bool cubic) {
    GRID_LOOP(t, rows * OW) {
        int64_t r = t / OW, ox = t % OW;
        int64_t idx[RESIZE_MAX_TAPS];
        double w[RESIZE_MAX_TAPS], s = 0.0;
        int nt = resize_taps(cubic, ox, W, sx, idx, w);
        for (int j = 0; j < nt; j++) s += inp[r * W + idx[j]] * w[j];
        scratch[t] = (float)s;
    }
}

__global__ void resize_cols_kernel(float *out, const float *scratch, int64_t planes, int64_t H,
                                   int64_t OH, int64_t OW, float sy, bool cubic) {
    GRID_LOOP(t, planes * OH * OW) {
        int64_t p = t / (OH * OW), oy = (t / OW) % OH, ox = t % OW;
        int64_t idx[RESIZE_MAX_TAPS];
        double w[RESIZE_MAX_TAPS], s = 0.0;
        int nt = resize_taps(cubic, oy, H, sy, idx, w);
        for (int j = 0; j < nt; j++) s += scratch[(p * H + idx[j]) * OW + ox] * w[j];
        out[t] = (float)s;
    }
}

static void separable_resize(float *out, float *scratch, const float *inp, int64_t planes,
                             int64_t H, int64_t W, int64_t OH, int64_t OW, bool cubic) {
    // PyTorch's scale for an explicit output size: in / out in float32
    float sx = (float)W / (float)OW, sy = (float)H / (float)OH;
    LAUNCH(resize_rows_kernel, cuda_blocks(planes * H * OW), CUDA_THREADS, scratch, inp, planes * H,
           W, OW, sx, cubic);
    LAUNCH(resize_cols_kernel, cuda_blocks(planes * OH * OW), CUDA_THREADS, out, scratch, planes, H,
           OH, OW, sy, cubic);
}

void resize_bicubic_forward_cuda(float *out, float *scratch, const float *inp, int64_t N, int64_t C,
                                 int64_t H, int64_t W, int64_t OH, int64_t OW) {
    /* out (N,C,OH,OW), scratch (N,C,H,OW), inp (N,C,H,W) — assigns */
    separable_resize(out, scratch, inp, N * C, H, W, OH, OW, true);
}

void resize_bilinear_forward_cuda(float *out, float *scratch, const float *inp, int64_t N,
                                  int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    /* out (N,C,OH,OW), scratch (N,C,H,OW), inp (N,C,H,W) — assigns */
    separable_resize(out, scratch, inp, N * C, H, W, OH, OW, false);
}
