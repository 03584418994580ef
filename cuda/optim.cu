// optim.cu — optimizer updates on the GPU (specification: tensor/ops/optim.c): SGD and AdamW in
// float32 in torch's order of operations, one thread per element; sum of squares (for global
// gradient-norm clipping) in double, reduced in one block in a fixed order.
#include "cuda/common.cuh"

__global__ void sgd_step_kernel(float *param, float *momentum_buf, const float *grad, int64_t n,
                                SgdStep h) {
    GRID_LOOP(i, n) {
        float g = grad[i] + h.weight_decay * param[i];
        if (momentum_buf) {
            float buf = h.first ? g : h.momentum * momentum_buf[i] + g;
            momentum_buf[i] = buf;
            g = h.nesterov ? g + h.momentum * buf : buf;
        }
        param[i] -= h.lr * g;
    }
}

void sgd_step_cuda(float *param, float *momentum_buf, const float *grad, int64_t n,
                   const SgdStep *h) {
    /* param (n), momentum_buf (n) or NULL, grad (n) — updates param and momentum_buf in place */
    LAUNCH(sgd_step_kernel, cuda_blocks(n), CUDA_THREADS, param, momentum_buf, grad, n, *h);
}

__global__ void adamw_step_kernel(float *param, float *exp_avg, float *exp_avg_sq,
                                  const float *grad, int64_t n, AdamWStep h) {
    GRID_LOOP(i, n) {
        float p = param[i] * h.decay;
        float g = grad[i];
        float m = h.beta1 * exp_avg[i] + h.one_minus_beta1 * g;
        float v = h.beta2 * exp_avg_sq[i] + h.one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        // eps outside the square root and after the bias correction of v, as torch.
        float denom = sqrtf(v) / h.bias_correction2_sqrt + h.eps;
        param[i] = p + (-h.step_size * m) / denom;
    }
}

void adamw_step_cuda(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, int64_t n,
                     const AdamWStep *h) {
    /* param (n), exp_avg (n), exp_avg_sq (n), grad (n) — updates param and both moments */
    LAUNCH(adamw_step_kernel, cuda_blocks(n), CUDA_THREADS, param, exp_avg, exp_avg_sq, grad, n,
           *h);
}

// One block: the caller's out[0] is accumulated into without a second kernel or scratch. A
// parameter of a few million elements is a few thousand loads per thread.
#define SUMSQ_THREADS 1024
__global__ void __launch_bounds__(SUMSQ_THREADS)
    sum_squares_kernel(double *out, const float *x, int64_t n) {
    __shared__ double sh[SUMSQ_THREADS];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += (double)x[i] * x[i];
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) out[0] += acc;
}

void sum_squares_cuda(double *out, const float *x, int64_t n) {
    /* out (1), x (n) — accumulates */
    LAUNCH(sum_squares_kernel, 1, SUMSQ_THREADS, out, x, n);
}

__global__ void scale_inplace_kernel(float *x, int64_t n, float s) { GRID_LOOP(i, n) x[i] *= s; }

void scale_inplace_cuda(float *x, int64_t n, float s) {
    /* x (n) — in place */
    LAUNCH(scale_inplace_kernel, cuda_blocks(n), CUDA_THREADS, x, n, s);
}
