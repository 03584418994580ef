// reduce.cu — sum, mean and max over one dimension or the whole tensor on the GPU
// (specification: tensor/ops/reduce.c). The input is viewed as (outer, dim, inner).
//
// Few outputs (fewer than REDUCE_BLOCK_OUTPUTS, e.g. a whole-tensor reduction) get a block each,
// tree-reduced in shared memory; many outputs get a thread each, walking dim in order (reads
// coalesced across inner). Sums are in double. max keeps torch's rules: the first index among
// tied maxima, and NaN beats every number (the first NaN wins). max over all shares the gradient
// among tied maxima; its count and its update run in one block.
#include "cuda/common.cuh"

#define REDUCE_BLOCK_OUTPUTS 4096

static int64_t reduce_grid(int64_t n) { return n < CUDA_MAX_BLOCKS ? n : CUDA_MAX_BLOCKS; }

__global__ void sum_forward_block_kernel(float *out, const float *inp, int64_t outer, int64_t dim,
                                         int64_t inner, int64_t divisor) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, outer * inner) {
        const float *p = inp + (r / inner) * dim * inner + r % inner;
        double acc = 0.0;
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) acc += p[k * inner];
        acc = block_sum(acc, sh);
        if (threadIdx.x == 0) out[r] = (float)(acc / (double)divisor);
    }
}

__global__ void sum_forward_thread_kernel(float *out, const float *inp, int64_t outer, int64_t dim,
                                          int64_t inner, int64_t divisor) {
    GRID_LOOP(r, outer * inner) {
        const float *p = inp + (r / inner) * dim * inner + r % inner;
        double acc = 0.0;
        for (int64_t k = 0; k < dim; k++) acc += p[k * inner];
        out[r] = (float)(acc / (double)divisor);
    }
}

void sum_forward_cuda(float *out, const float *inp, int64_t outer, int64_t dim, int64_t inner,
                      int64_t divisor) {
    /* out (outer,inner), inp (outer,dim,inner) — assigns */
    int64_t n = outer * inner;
    if (n < REDUCE_BLOCK_OUTPUTS)
        LAUNCH(sum_forward_block_kernel, reduce_grid(n), CUDA_REDUCE_THREADS, out, inp, outer, dim,
               inner, divisor);
    else
        LAUNCH(sum_forward_thread_kernel, cuda_blocks(n), CUDA_THREADS, out, inp, outer, dim, inner,
               divisor);
}

__global__ void sum_backward_kernel(float *dinp, const float *dout, int64_t outer, int64_t dim,
                                    int64_t inner, int64_t divisor) {
    float div = (float)divisor;
    GRID_LOOP(t, outer * dim * inner) {
        int64_t o = t / (dim * inner), i = t % inner;
        dinp[t] += dout[o * inner + i] / div;
    }
}

void sum_backward_cuda(float *dinp, const float *dout, int64_t outer, int64_t dim, int64_t inner,
                       int64_t divisor) {
    /* dinp (outer,dim,inner), dout (outer,inner) — accumulates */
    LAUNCH(sum_backward_kernel, cuda_blocks(outer * dim * inner), CUDA_THREADS, dinp, dout, outer,
           dim, inner, divisor);
}

// (v, i) ranks before (best, bi): NaN above every number, larger values first, and equal values
// (or two NaNs) by the lower index — which makes the block's tree reduction pick exactly the
// element the CPU's sequential scan picks (first NaN, else first of the tied maxima).
__device__ inline bool max_before(float v, int64_t i, float best, int64_t bi) {
    if (bi < 0) return i >= 0;
    if (i < 0) return false;
    bool nv = isnan(v), nb = isnan(best);
    if (nv || nb) return nv && (!nb || i < bi);
    return v > best || (v == best && i < bi);
}

__global__ void max_forward_block_kernel(float *out, int64_t *argmax, const float *inp,
                                         int64_t outer, int64_t dim, int64_t inner) {
    __shared__ float sv[CUDA_REDUCE_THREADS];
    __shared__ int64_t si[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, outer * inner) {
        const float *p = inp + (r / inner) * dim * inner + r % inner;
        float best = 0.0f;
        int64_t bi = -1; // none yet
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
            if (max_before(p[k * inner], k, best, bi)) {
                best = p[k * inner];
                bi = k;
            }
        sv[threadIdx.x] = best;
        si[threadIdx.x] = bi;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s && max_before(sv[threadIdx.x + s], si[threadIdx.x + s],
                                              sv[threadIdx.x], si[threadIdx.x])) {
                sv[threadIdx.x] = sv[threadIdx.x + s];
                si[threadIdx.x] = si[threadIdx.x + s];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            out[r] = sv[0];
            argmax[r] = si[0];
        }
        __syncthreads();
    }
}

__global__ void max_forward_thread_kernel(float *out, int64_t *argmax, const float *inp,
                                          int64_t outer, int64_t dim, int64_t inner) {
    GRID_LOOP(r, outer * inner) {
        const float *p = inp + (r / inner) * dim * inner + r % inner;
        float best = p[0];
        int64_t bi = 0;
        for (int64_t k = 1; k < dim; k++)
            if (p[k * inner] > best || (isnan(p[k * inner]) && !isnan(best))) {
                best = p[k * inner];
                bi = k;
            }
        out[r] = best;
        argmax[r] = bi;
    }
}

void max_forward_cuda(float *out, int64_t *argmax, const float *inp, int64_t outer, int64_t dim,
                      int64_t inner) {
    /* out (outer,inner), argmax (outer,inner), inp (outer,dim,inner) — assigns */
    int64_t n = outer * inner;
    if (n < REDUCE_BLOCK_OUTPUTS)
        LAUNCH(max_forward_block_kernel, reduce_grid(n), CUDA_REDUCE_THREADS, out, argmax, inp,
               outer, dim, inner);
    else
        LAUNCH(max_forward_thread_kernel, cuda_blocks(n), CUDA_THREADS, out, argmax, inp, outer,
               dim, inner);
}

__global__ void max_backward_kernel(float *dinp, const float *dout, const int64_t *argmax,
                                    int64_t outer, int64_t dim, int64_t inner) {
    // Each output routes to one distinct input element: no two threads write the same place.
    GRID_LOOP(r, outer * inner) {
        int64_t o = r / inner, i = r % inner;
        dinp[(o * dim + argmax[r]) * inner + i] += dout[r];
    }
}

void max_backward_cuda(float *dinp, const float *dout, const int64_t *argmax, int64_t outer,
                       int64_t dim, int64_t inner) {
    /* dinp (outer,dim,inner), dout (outer,inner), argmax (outer,inner) — accumulates */
    LAUNCH(max_backward_kernel, cuda_blocks(outer * inner), CUDA_THREADS, dinp, dout, argmax, outer,
           dim, inner);
}

// One block: count the tied maxima, then share dout among them (the count must be complete
// before any update, and one block needs no second kernel or scratch for it).
#define MAX_ALL_THREADS 1024
__global__ void __launch_bounds__(MAX_ALL_THREADS)
    max_all_backward_kernel(float *dinp, const float *dout, const float *inp, const float *out,
                            int64_t n) {
    __shared__ int64_t sh[MAX_ALL_THREADS];
    float m = out[0];
    bool m_nan = isnan(m);
    int64_t count = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        count += m_nan ? isnan(inp[j]) : inp[j] == m;
    count = block_sum(count, sh);
    float g = dout[0] / (float)count;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        if (m_nan ? isnan(inp[j]) : inp[j] == m) dinp[j] += g;
}

void max_all_backward_cuda(float *dinp, const float *dout, const float *inp, const float *out,
                           int64_t n) {
    /* dinp (n), dout (1), inp (n), out (1) — accumulates */
    LAUNCH(max_all_backward_kernel, 1, MAX_ALL_THREADS, dinp, dout, inp, out, n);
}
