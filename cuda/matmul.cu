// matmul.cu — the matmul family's own kernels on the GPU: tensor_linear's forward and its
// bias's backward (specification: tensor/ops/matmul.c). The products go through gemm_cuda
// (cuda/gemm.cu).
#include "cuda/common.cuh"

__global__ void linear_bias_fill_kernel(float *out, const float *bias, int64_t rows, int64_t n) {
    GRID_LOOP(i, rows * n) out[i] = bias[i % n];
}

void linear_forward_cuda(float *y, const float *x, const float *w, const float *bias,
                         int64_t rows, int64_t in, int64_t out, void *scratch) {
    /* y (rows,OUT), x (rows,IN), w (OUT,IN), bias (OUT) or NULL — assigns: the bias on every
     * row, then x w^T added by cuBLAS (beta = 1); no scratch */
    (void)scratch;
    if (bias)
        LAUNCH(linear_bias_fill_kernel, cuda_blocks(rows * out), CUDA_THREADS, y, bias, rows,
               out);
    gemm_cuda(y, x, w, 1, rows, out, in, false, true, 1.0f, bias ? 1.0f : 0.0f, in, in, out, 0,
              0, 0);
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
