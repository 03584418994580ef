// softmax.cu — softmax and log-softmax over any axis with an optional additive mask, on the GPU
// (specification: tensor/ops/softmax.c). x is viewed as (outer, dim, inner).
//
// A block per row (o, i): the row maximum of z = x + mask, then the sum of exp(z - max) in
// double, each tree-reduced in shared memory; a fully masked row (max = -inf) gives 0 (softmax)
// or -inf (log_softmax) as on the CPU. Backward: a block per row reduces the row's dot product
// in double, then every element is updated.
#include "cuda/common.cuh"

// Offset of the mask element added to x at linear index `lin` of x's index space.
__device__ inline int64_t mask_offset(const SoftmaxMask &mg, int64_t lin) {
    int64_t off = 0;
    for (int d = mg.ndim - 1; d >= 0; d--) {
        off += (lin % mg.shape[d]) * mg.stride[d];
        lin /= mg.shape[d];
    }
    return off;
}

__global__ void softmax_rows_kernel(float *out, const float *inp, const float *mask, SoftmaxMask mg,
                                    int64_t outer, int64_t dim, int64_t inner, bool log_out) {
    __shared__ float shf[CUDA_REDUCE_THREADS];
    __shared__ double shd[CUDA_REDUCE_THREADS];
    const int64_t mst = mask ? mg.stride[mg.axis] : 0;
    BLOCK_LOOP(r, outer * inner) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *x = inp + base;
        float *y = out + base;
        const float *m = mask ? mask + mask_offset(mg, base) : nullptr;
        float mx = -INFINITY;
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
            mx = fmaxf(mx, x[k * inner] + (m ? m[k * mst] : 0.0f));
        mx = block_max(mx, shf);
        if (mx == -INFINITY) { // fully masked row: no probability mass anywhere
            for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
                y[k * inner] = log_out ? -INFINITY : 0.0f;
            continue;
        }
        double sum = 0.0;
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
            float e = expf(x[k * inner] + (m ? m[k * mst] : 0.0f) - mx);
            if (!log_out) y[k * inner] = e;
            sum += e;
        }
        sum = block_sum(sum, shd);
        if (log_out) {
            double lse = (double)mx + log(sum);
            for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
                y[k * inner] = (float)((double)(x[k * inner] + (m ? m[k * mst] : 0.0f)) - lse);
        } else {
            // Each thread rescales the elements it wrote itself: no barrier needed.
            double inv = 1.0 / sum;
            for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
                y[k * inner] = (float)(y[k * inner] * inv);
        }
    }
}

static void softmax_rows(float *out, const float *inp, const float *mask, const SoftmaxMask *mg,
                         int64_t outer, int64_t dim, int64_t inner, bool log_out) {
    SoftmaxMask g = {};
    if (mask) g = *mg;
    int64_t rows = outer * inner;
    LAUNCH(softmax_rows_kernel, rows < CUDA_MAX_BLOCKS ? rows : CUDA_MAX_BLOCKS,
           CUDA_REDUCE_THREADS, out, inp, mask, g, outer, dim, inner, log_out);
}

void softmax_forward_cuda(float *out, const float *inp, const float *mask, const SoftmaxMask *mg,
                          int64_t outer, int64_t dim, int64_t inner) {
    /* out (outer,dim,inner), inp (outer,dim,inner), mask broadcast to inp through mg — assigns */
    softmax_rows(out, inp, mask, mg, outer, dim, inner, false);
}

void log_softmax_forward_cuda(float *out, const float *inp, const float *mask,
                              const SoftmaxMask *mg, int64_t outer, int64_t dim, int64_t inner) {
    /* out (outer,dim,inner), inp (outer,dim,inner), mask broadcast to inp through mg — assigns */
    softmax_rows(out, inp, mask, mg, outer, dim, inner, true);
}

// log_out: dz_k = dy_k - exp(y_k) * sum_j dy_j; otherwise dz_k = y_k (dy_k - sum_j dy_j y_j).
__global__ void softmax_backward_kernel(float *dinp, const float *dout, const float *out,
                                        int64_t outer, int64_t dim, int64_t inner, bool log_out) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, outer * inner) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *y = out + base, *dy = dout + base;
        double s = 0.0;
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
            s += log_out ? (double)dy[k * inner] : (double)dy[k * inner] * y[k * inner];
        s = block_sum(s, sh);
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
            if (log_out)
                dinp[base + k * inner] += (float)(dy[k * inner] - exp((double)y[k * inner]) * s);
            else
                dinp[base + k * inner] += (float)(y[k * inner] * (dy[k * inner] - s));
        }
    }
}

void softmax_backward_cuda(float *dinp, const float *dout, const float *out, int64_t outer,
                           int64_t dim, int64_t inner) {
    /* dinp (outer,dim,inner), dout (outer,dim,inner), out (outer,dim,inner) — accumulates */
    int64_t rows = outer * inner;
    LAUNCH(softmax_backward_kernel, rows < CUDA_MAX_BLOCKS ? rows : CUDA_MAX_BLOCKS,
           CUDA_REDUCE_THREADS, dinp, dout, out, outer, dim, inner, false);
}

void log_softmax_backward_cuda(float *dinp, const float *dout, const float *out, int64_t outer,
                               int64_t dim, int64_t inner) {
    /* dinp (outer,dim,inner), dout (outer,dim,inner), out (outer,dim,inner) — accumulates */
    int64_t rows = outer * inner;
    LAUNCH(softmax_backward_kernel, rows < CUDA_MAX_BLOCKS ? rows : CUDA_MAX_BLOCKS,
           CUDA_REDUCE_THREADS, dinp, dout, out, outer, dim, inner, true);
}

__global__ void causal_mask_kernel(float *out, int64_t t) {
    GRID_LOOP(e, t * t) out[e] = (e % t) > (e / t) ? -INFINITY : 0.0f;
}

void causal_mask_cuda(float *out, int64_t t) {
    /* out (T,T) — assigns */
    LAUNCH(causal_mask_kernel, cuda_blocks(t * t), CUDA_THREADS, out, t);
}
