// pool.cu — spatial pooling on the GPU (specification: tensor/ops/pool.c): avg_pool2d with
// kernel = stride = k over NCHW, and the spatial mean of each (n, c) plane.
#include "cuda/common.cuh"

__global__ void avg_pool2d_forward_kernel(float *out, const float *inp, int64_t planes, int64_t H,
                                          int64_t W, int64_t k) {
    int64_t OH = H / k, OW = W / k;
    float scale = 1.0f / (float)(k * k);
    GRID_LOOP(t, planes * OH * OW) {
        int64_t p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        const float *x = inp + p * H * W;
        float s = 0.0f; // float, in the CPU's (a, b) order
        for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b < k; b++) s += x[(i * k + a) * W + j * k + b];
        out[t] = s * scale;
    }
}

void avg_pool2d_forward_cuda(float *out, const float *inp, int64_t N, int64_t C, int64_t H,
                             int64_t W, int64_t k) {
    /* out (N,C,H/k,W/k), inp (N,C,H,W) — assigns */
    int64_t n = N * C * (H / k) * (W / k);
    LAUNCH(avg_pool2d_forward_kernel, cuda_blocks(n), CUDA_THREADS, out, inp, N * C, H, W, k);
}

__global__ void avg_pool2d_backward_kernel(float *dinp, const float *dout, int64_t planes,
                                           int64_t H, int64_t W, int64_t k) {
    int64_t OH = H / k, OW = W / k;
    float scale = 1.0f / (float)(k * k);
    GRID_LOOP(t, planes * H * W) {
        int64_t p = t / (H * W), y = (t / W) % H, x = t % W;
        dinp[t] += dout[p * OH * OW + (y / k) * OW + x / k] * scale;
    }
}

void avg_pool2d_backward_cuda(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H,
                              int64_t W, int64_t k) {
    /* dinp (N,C,H,W), dout (N,C,H/k,W/k) — accumulates */
    LAUNCH(avg_pool2d_backward_kernel, cuda_blocks(N * C * H * W), CUDA_THREADS, dinp, dout, N * C,
           H, W, k);
}

// A block per row, double accumulation (HW reaches 112*112).
__global__ void spatial_mean_forward_kernel(float *out, const float *inp, int64_t rows,
                                            int64_t HW) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, rows) {
        double s = 0.0;
        for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) s += inp[r * HW + p];
        s = block_sum(s, sh);
        if (threadIdx.x == 0) out[r] = (float)(s / (double)HW);
    }
}

void spatial_mean_forward_cuda(float *out, const float *inp, int64_t rows, int64_t HW) {
    /* out (rows), inp (rows,HW) with rows = N*C — assigns */
    LAUNCH(spatial_mean_forward_kernel, rows < CUDA_MAX_BLOCKS ? rows : CUDA_MAX_BLOCKS,
           CUDA_REDUCE_THREADS, out, inp, rows, HW);
}

__global__ void spatial_mean_backward_kernel(float *dinp, const float *dout, int64_t rows,
                                             int64_t HW) {
    GRID_LOOP(t, rows * HW) dinp[t] += dout[t / HW] / (float)HW;
}

void spatial_mean_backward_cuda(float *dinp, const float *dout, int64_t rows, int64_t HW) {
    /* dinp (rows,HW), dout (rows) — accumulates */
    LAUNCH(spatial_mean_backward_kernel, cuda_blocks(rows * HW), CUDA_THREADS, dinp, dout, rows,
           HW);
}
