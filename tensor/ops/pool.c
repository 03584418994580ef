/* pool.c — spatial pooling over NCHW maps: CPU kernels, wrappers and backward rules.
 *
 * avg_pool2d (kernel = stride = k, no padding, H and W multiples of k):
 *     out[n,c,i,j] = 1/k^2 * sum_{a,b < k} x[n,c, i*k + a, j*k + b]
 * The windows tile the input exactly, so each input element feeds exactly one output:
 *     dx[n,c,y,x] = dout[n,c, y/k, x/k] / k^2.
 * spatial_mean: out[n,c] = 1/(H*W) * sum_{y,x} x[n,c,y,x];  dx[n,c,y,x] = dout[n,c] / (H*W).
 * Shapes follow PyTorch (N,C,H,W), contiguous. Both ops are linear, so backward saves nothing. */
#include "tensor/ops/pool.h"

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/isa.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* One output row of a 2x2 pool: o[j] = ((((0 + r0[2j]) + r0[2j+1]) + r1[2j]) + r1[2j+1]) * scale,
 * the operations of the general loop below in its order (so the same bits, the sign of a zero
 * sum included), written so that the ISA variants vectorise it — assigns. k = 2 is the ResNet
 * towers' anti-aliasing pool. */
static inline ISA_BODY void avg_pool2_row_body(float *restrict o, const float *restrict r0,
                                               const float *restrict r1, int64_t OW,
                                               float scale) {
    for (int64_t j = 0; j < OW; j++)
        o[j] = ((((0.0f + r0[2 * j]) + r0[2 * j + 1]) + r1[2 * j]) + r1[2 * j + 1]) * scale;
}
ISA_VARIANTS(avg_pool2_row, (float *restrict o, const float *restrict r0,
                             const float *restrict r1, int64_t OW, float scale),
             (o, r0, r1, OW, scale))

void avg_pool2d_forward_cpu(float *out, const float *inp, int64_t N, int64_t C, int64_t H,
                            int64_t W, int64_t k) {
    /* out (N,C,H/k,W/k), inp (N,C,H,W) — assigns */
    int64_t OH = H / k, OW = W / k, planes = N * C;
    float scale = 1.0f / (float)(k * k);
    if (k == 2) {
#pragma omp parallel for collapse(2) schedule(static) if (planes * H * W > 65536)
        for (int64_t p = 0; p < planes; p++)
            for (int64_t i = 0; i < OH; i++) {
                const float *x = inp + p * H * W + 2 * i * W;
                avg_pool2_row(out + (p * OH + i) * OW, x, x + W, OW, scale);
            }
        return;
    }
#pragma omp parallel for schedule(static) if (planes * H * W > 65536)
    for (int64_t p = 0; p < planes; p++) {
        const float *x = inp + p * H * W;
        float *o = out + p * OH * OW;
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                float s = 0.0f;
                for (int64_t a = 0; a < k; a++)
                    for (int64_t b = 0; b < k; b++) s += x[(i * k + a) * W + j * k + b];
                o[i * OW + j] = s * scale;
            }
    }
}

void avg_pool2d_backward_cpu(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H,
                             int64_t W, int64_t k) {
    /* dinp (N,C,H,W), dout (N,C,H/k,W/k) — accumulates */
    int64_t OH = H / k, OW = W / k, planes = N * C;
    float scale = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static) if (planes * H * W > 65536)
    for (int64_t p = 0; p < planes; p++) {
        float *dx = dinp + p * H * W;
        const float *g = dout + p * OH * OW;
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) dx[y * W + x] += g[(y / k) * OW + x / k] * scale;
    }
}

void spatial_mean_forward_cpu(float *out, const float *inp, int64_t rows, int64_t HW) {
    /* out (rows), inp (rows,HW) with rows = N*C — assigns */
#pragma omp parallel for schedule(static) if (rows * HW > 65536)
    for (int64_t r = 0; r < rows; r++) {
        /* double accumulation: HW reaches 112*112 and the fixture reference is float64 */
        double s = 0.0;
        for (int64_t p = 0; p < HW; p++) s += inp[r * HW + p];
        out[r] = (float)(s / (double)HW);
    }
}

void spatial_mean_backward_cpu(float *dinp, const float *dout, int64_t rows, int64_t HW) {
    /* dinp (rows,HW), dout (rows) — accumulates */
#pragma omp parallel for schedule(static) if (rows * HW > 65536)
    for (int64_t r = 0; r < rows; r++) {
        float g = dout[r] / (float)HW;
        for (int64_t p = 0; p < HW; p++) dinp[r * HW + p] += g;
    }
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

static void avg_pool2d_backward(Node *n) {
    Tensor *x = n->in[0];
    KERNEL_RUN(x->device, avg_pool2d_backward, ag_grad(x)->data, n->out->grad->data, x->shape[0],
                                                x->shape[1], x->shape[2], x->shape[3], n->iarg[0]);
}

Tensor *tensor_avg_pool2d(Tensor *x, int64_t k) {
    tensor_check_f32("avg_pool2d", x, "x");
    CHECK(x->ndim == 4, "avg_pool2d: x must be (N,C,H,W), got %s", tensor_shape_str(x));
    CHECK(k >= 1, "avg_pool2d: kernel size %lld < 1", (long long)k);
    CHECK(x->shape[2] % k == 0 && x->shape[3] % k == 0,
          "avg_pool2d: kernel %lld does not divide the spatial size of x %s", (long long)k,
          tensor_shape_str(x));
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(N, C, H / k, W / k));
    KERNEL_RUN(x->device, avg_pool2d_forward, out->data, x->data, N, C, H, W, k);
    Node *n = AG_RECORD("avg_pool2d", out, avg_pool2d_backward, x);
    if (n) n->iarg[0] = k;
    return out;
}

static void spatial_mean_backward(Node *n) {
    Tensor *x = n->in[0];
    KERNEL_RUN(x->device, spatial_mean_backward, ag_grad(x)->data, n->out->grad->data,
                                                  x->shape[0] * x->shape[1],
                                                  x->shape[2] * x->shape[3]);
}

Tensor *tensor_spatial_mean(Tensor *x) {
    tensor_check_f32("spatial_mean", x, "x");
    CHECK(x->ndim == 4, "spatial_mean: x must be (N,C,H,W), got %s", tensor_shape_str(x));
    CHECK(x->shape[2] * x->shape[3] > 0, "spatial_mean: no spatial positions in x %s",
          tensor_shape_str(x));
    int64_t N = x->shape[0], C = x->shape[1];
    Tensor *out = tensor_empty(DT_F32, 2, SHAPE(N, C));
    KERNEL_RUN(x->device, spatial_mean_forward, out->data, x->data, N * C,
                                                 x->shape[2] * x->shape[3]);
    AG_RECORD("spatial_mean", out, spatial_mean_backward, x);
    return out;
}
