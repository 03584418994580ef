// matmul.cu — the matmul family's own kernels on the GPU: the bias of tensor_linear
// (specification: tensor/ops/matmul.c). The products go through gemm_cuda (cuda/gemm.cu).
#include "cuda/common.cuh"

__global__ void linear_bias_forward_kernel(float *out, const float *bias, int64_t rows, int64_t n) {
    GRID_LOOP(i, rows * n) out[i] = bias[i % n];
}

void linear_bias_forward_cuda(float *out, const float *bias, int64_t rows, int64_t n) {
    /* out (rows,N), bias (N) — assigns */
    LAUNCH(linear_bias_forward_kernel, cuda_blocks(rows * n), CUDA_THREADS, out, bias, rows, n);
}

// One thread per column walks every row in order, in double, as the CPU kernel does: reads are
// coalesced across the threads of a warp and the sum does not depend on the launch shape.
__global__ void linear_bias_backward_kernel(float *dbias, const float *dout, int64_t rows,
                                            int64_t n) {
    GRID_LOOP(j, n) {
        double acc = 0.0;
        for (int64_t r = 0; r < rows; r++) acc += dout[r * n + j];
        dbias[j] += (float)acc;
    }
}

void linear_bias_backward_cuda(float *dbias, const float *dout, int64_t rows, int64_t n) {
    /* dbias (N), dout (rows,N) — accumulates */
    LAUNCH(linear_bias_backward_kernel, cuda_blocks(n), CUDA_THREADS, dbias, dout, rows, n);
}
