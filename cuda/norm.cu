// norm.cu — LayerNorm and L2 normalisation on the GPU (specification: tensor/ops/norm.c).
//
// LayerNorm: a block per row; mean, then the sum of squared deviations (two passes, in double,
// as the CPU), then the normalised row. Backward: a block per row for dx (two double row sums);
// dweight/dbias are column sums over the N rows, a thread per column walking the rows in order.
// L2 normalisation along an axis of (outer, dim, inner): a block per row (o, i), the norm in
// double; backward reduces <dy, y> in double per row.
#include "cuda/common.cuh"

static int64_t row_grid(int64_t rows) { return rows < CUDA_MAX_BLOCKS ? rows : CUDA_MAX_BLOCKS; }

__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                         const float *weight, const float *bias, int64_t n,
                                         int64_t c, float eps) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, n) {
        const float *x = inp + r * c;
        float *y = out + r * c;
        double s = 0.0;
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += x[j];
        double mu = block_sum(s, sh) / (double)c;
        double v = 0.0;
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
            double d = x[j] - mu;
            v += d * d;
        }
        v = block_sum(v, sh);
        double rs = 1.0 / sqrt(v / (double)c + (double)eps);
        if (threadIdx.x == 0) {
            mean[r] = (float)mu;
            rstd[r] = (float)rs;
        }
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
            float xh = (float)((x[j] - mu) * rs);
            y[j] = xh * (weight ? weight[j] : 1.0f) + (bias ? bias[j] : 0.0f);
        }
    }
}

void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int64_t n, int64_t c,
                            float eps) {
    /* out (N,C), mean (N), rstd (N), inp (N,C), weight (C) or NULL, bias (C) or NULL — assigns */
    LAUNCH(layernorm_forward_kernel, row_grid(n), CUDA_REDUCE_THREADS, out, mean, rstd, inp, weight,
           bias, n, c, eps);
}

__global__ void layernorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                               const float *weight, const float *mean,
                                               const float *rstd, int64_t n, int64_t c) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, n) {
        const float *x = inp + r * c, *dy = dout + r * c;
        float mu = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0; // sum_j g_j and sum_j g_j xhat_j, g = dy * weight
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
            float xh = (x[j] - mu) * rs;
            float g = dy[j] * (weight ? weight[j] : 1.0f);
            sg += g;
            sgx += (double)g * xh;
        }
        double mg = block_sum(sg, sh) / (double)c;
        double mgx = block_sum(sgx, sh) / (double)c;
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
            float xh = (x[j] - mu) * rs;
            float g = dy[j] * (weight ? weight[j] : 1.0f);
            dinp[r * c + j] += (float)(rs * (g - mg - xh * mgx));
        }
    }
}

__global__ void layernorm_backward_params_kernel(float *dweight, float *dbias, const float *dout,
                                                 const float *inp, const float *mean,
                                                 const float *rstd, int64_t n, int64_t c) {
    GRID_LOOP(j, c) {
        double aw = 0.0, ab = 0.0;
        for (int64_t r = 0; r < n; r++) {
            float dy = dout[r * c + j];
            aw += (double)dy * ((inp[r * c + j] - mean[r]) * rstd[r]);
            ab += dy;
        }
        if (dweight) dweight[j] += (float)aw;
        if (dbias) dbias[j] += (float)ab;
    }
}

void layernorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int64_t n, int64_t c) {
    /* dinp (N,C) or NULL, dweight (C) or NULL, dbias (C) or NULL, dout (N,C), inp (N,C),
     * weight (C) or NULL, mean (N), rstd (N) — accumulates */
    if (dinp)
        LAUNCH(layernorm_backward_dinp_kernel, row_grid(n), CUDA_REDUCE_THREADS, dinp, dout, inp,
               weight, mean, rstd, n, c);
    if (dweight || dbias)
        LAUNCH(layernorm_backward_params_kernel, cuda_blocks(c), CUDA_THREADS, dweight, dbias, dout,
               inp, mean, rstd, n, c);
}

__global__ void l2_normalize_forward_kernel(float *out, float *norm, const float *inp,
                                            int64_t outer, int64_t dim, int64_t inner, float eps) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, outer * inner) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *x = inp + base;
        double s = 0.0;
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
            s += (double)x[k * inner] * x[k * inner];
        s = block_sum(s, sh);
        float nr = (float)sqrt(s);
        if (threadIdx.x == 0) norm[r] = nr;
        float den = fmaxf(nr, eps);
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
            out[base + k * inner] = x[k * inner] / den;
    }
}

void l2_normalize_forward_cuda(float *out, float *norm, const float *inp, int64_t outer,
                               int64_t dim, int64_t inner, float eps) {
    /* out (outer,dim,inner), norm (outer,inner), inp (outer,dim,inner) — assigns */
    LAUNCH(l2_normalize_forward_kernel, row_grid(outer * inner), CUDA_REDUCE_THREADS, out, norm,
           inp, outer, dim, inner, eps);
}

__global__ void l2_normalize_backward_kernel(float *dinp, const float *dout, const float *inp,
                                             const float *norm, int64_t outer, int64_t dim,
                                             int64_t inner, float eps) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, outer * inner) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *x = inp + base, *dy = dout + base;
        float nr = norm[r];
        if (nr < eps) { // y = x / eps: the clamped denominator is a constant
            for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
                dinp[base + k * inner] += dy[k * inner] / eps;
            continue;
        }
        // y = x / ||x||: dx = (dy - y * <dy, y>) / ||x||
        double s = 0.0;
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
            s += (double)dy[k * inner] * (x[k * inner] / nr);
        s = block_sum(s, sh);
        for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
            double y = x[k * inner] / nr;
            dinp[base + k * inner] += (float)((dy[k * inner] - y * s) / nr);
        }
    }
}

void l2_normalize_backward_cuda(float *dinp, const float *dout, const float *inp, const float *norm,
                                int64_t outer, int64_t dim, int64_t inner, float eps) {
    /* dinp (outer,dim,inner), dout (outer,dim,inner), inp (outer,dim,inner),
     * norm (outer,inner) — accumulates */
    LAUNCH(l2_normalize_backward_kernel, row_grid(outer * inner), CUDA_REDUCE_THREADS, dinp, dout,
           inp, norm, outer, dim, inner, eps);
}

__global__ void l2_normalize_apply_kernel(float *out, const float *inp, const float *norm,
                                          int64_t outer, int64_t dim, int64_t inner, float eps) {
    GRID_LOOP(t, outer * dim * inner) {
        int64_t r = (t / (dim * inner)) * inner + t % inner;
        out[t] = inp[t] / fmaxf(norm[r], eps);
    }
}

void l2_normalize_apply_cuda(float *out, const float *inp, const float *norm, int64_t outer,
                             int64_t dim, int64_t inner, float eps) {
    /* out (outer,dim,inner), inp (outer,dim,inner), norm (outer,inner) — assigns */
    LAUNCH(l2_normalize_apply_kernel, cuda_blocks(outer * dim * inner), CUDA_THREADS, out, inp,
           norm, outer, dim, inner, eps);
}
