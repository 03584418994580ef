// dropout.cu — inverted dropout on the GPU (specification: tensor/ops/dropout.c).
//
// The mask is the CPU's, bit for bit: u_i is the same splitmix64 hash of (seed, i) in 64-bit
// integer arithmetic, converted to a double with 53 bits exactly as the CPU does, and compared
// with p in double. Integer math and an exact int-to-double conversion leave no room for the
// device to round differently, so for a given seed the CPU and the GPU drop the same elements.
#include "cuda/common.cuh"

__device__ inline double dropout_uniform_dev(uint64_t seed, int64_t i) {
    uint64_t z = seed + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

__global__ void dropout_forward_kernel(float *out, float *mask, const float *inp, int64_t n,
                                       float p, float scale, uint64_t seed, int64_t first) {
    GRID_LOOP(i, n) {
        float keep = dropout_uniform_dev(seed, first + i) >= (double)p ? 1.0f : 0.0f;
        mask[i] = keep;
        out[i] = inp[i] * keep * scale; // a product, so NaN/inf inputs still show (as the CPU)
    }
}

void dropout_forward_cuda(float *out, float *mask, const float *inp, int64_t n, float p,
                          float scale, uint64_t seed, int64_t first) {
    /* out (n), mask (n), inp (n) — assigns */
    LAUNCH(dropout_forward_kernel, cuda_blocks(n), CUDA_THREADS, out, mask, inp, n, p, scale, seed,
           first);
}

__global__ void dropout_backward_kernel(float *dinp, const float *dout, const float *mask,
                                        int64_t n, float scale) {
    GRID_LOOP(i, n) dinp[i] += dout[i] * mask[i] * scale;
}

void dropout_backward_cuda(float *dinp, const float *dout, const float *mask, int64_t n,
                           float scale) {
    /* dinp (n), dout (n), mask (n) — accumulates */
    LAUNCH(dropout_backward_kernel, cuda_blocks(n), CUDA_THREADS, dinp, dout, mask, n, scale);
}
