// batchnorm.cu — 2-D batch normalisation on the GPU (specification: tensor/ops/batchnorm.c).
//
// A block per channel: training mode reduces the channel's N*HW values twice in double (mean,
// then squared deviations), thread 0 updates the running statistics, and the block normalises.
// Backward: a block per channel reduces sum(g) and sum(g * xhat) in double, then writes dx.
#include "cuda/common.cuh"

__global__ void batchnorm_forward_kernel(float *out, float *mean, float *rstd, float *running_mean,
                                         float *running_var, const float *inp, const float *weight,
                                         const float *bias, int64_t N, int64_t C, int64_t HW,
                                         bool training, float momentum, float eps) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    __shared__ float sc[2]; // mean, rstd as floats, shared with the whole block
    const int64_t M = N * HW;
    BLOCK_LOOP(c, C) {
        if (training) {
            double s = 0.0;
            for (int64_t t = threadIdx.x; t < M; t += blockDim.x)
                s += inp[((t / HW) * C + c) * HW + t % HW];
            double m = block_sum(s, sh) / (double)M;
            double ss = 0.0;
            for (int64_t t = threadIdx.x; t < M; t += blockDim.x) {
                double d = inp[((t / HW) * C + c) * HW + t % HW] - m;
                ss += d * d;
            }
            ss = block_sum(ss, sh);
            if (threadIdx.x == 0) {
                if (running_mean)
                    running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
                if (running_var)
                    running_var[c] = (float)((1.0 - momentum) * running_var[c] +
                                             momentum * ss / (double)(M - 1));
                mean[c] = (float)m;
                rstd[c] = (float)(1.0 / sqrt(ss / (double)M + (double)eps));
                sc[0] = mean[c];
                sc[1] = rstd[c];
            }
        } else if (threadIdx.x == 0) {
            double m = running_mean[c], v = running_var[c];
            mean[c] = (float)m;
            rstd[c] = (float)(1.0 / sqrt(v + (double)eps));
            sc[0] = mean[c];
            sc[1] = rstd[c];
        }
        __syncthreads();
        float mc = sc[0], scale = sc[1] * (weight ? weight[c] : 1.0f);
        float shift = bias ? bias[c] : 0.0f;
        for (int64_t t = threadIdx.x; t < M; t += blockDim.x) {
            int64_t i = ((t / HW) * C + c) * HW + t % HW;
            out[i] = (inp[i] - mc) * scale + shift;
        }
        __syncthreads(); // sc is rewritten for the next channel of this block
    }
}

void batchnorm_forward_cuda(float *out, float *mean, float *rstd, float *running_mean,
                            float *running_var, const float *inp, const float *weight,
                            const float *bias, int64_t N, int64_t C, int64_t HW, bool training,
                            float momentum, float eps) {
    /* out (N,C,HW), mean (C), rstd (C), running_mean (C) or NULL, running_var (C) or NULL,
     * inp (N,C,HW), weight (C) or NULL, bias (C) or NULL — assigns out/mean/rstd; training
     * updates the running stats in place */
    LAUNCH(batchnorm_forward_kernel, C < CUDA_MAX_BLOCKS ? C : CUDA_MAX_BLOCKS, CUDA_REDUCE_THREADS,
           out, mean, rstd, running_mean, running_var, inp, weight, bias, N, C, HW, training,
           momentum, eps);
}

__global__ void batchnorm_backward_kernel(float *dinp, float *dweight, float *dbias,
                                          const float *dout, const float *inp, const float *mean,
                                          const float *rstd, const float *weight, int64_t N,
                                          int64_t C, int64_t HW, bool training) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    const int64_t M = N * HW;
    BLOCK_LOOP(c, C) {
        float mc = mean[c], rc = rstd[c];
        double sg = 0.0, sgx = 0.0;
        if (training || dweight || dbias) {
            for (int64_t t = threadIdx.x; t < M; t += blockDim.x) {
                int64_t i = ((t / HW) * C + c) * HW + t % HW;
                sg += dout[i];
                sgx += (double)dout[i] * ((inp[i] - mc) * rc);
            }
            sg = block_sum(sg, sh);
            sgx = block_sum(sgx, sh);
        }
        if (threadIdx.x == 0) {
            if (dbias) dbias[c] += (float)sg;
            if (dweight) dweight[c] += (float)sgx;
        }
        if (!dinp) continue;
        float k = rc * (weight ? weight[c] : 1.0f);
        float mg = training ? (float)(sg / (double)M) : 0.0f;
        float mgx = training ? (float)(sgx / (double)M) : 0.0f;
        for (int64_t t = threadIdx.x; t < M; t += blockDim.x) {
            int64_t i = ((t / HW) * C + c) * HW + t % HW;
            float xhat = (inp[i] - mc) * rc;
            dinp[i] += k * (dout[i] - mg - xhat * mgx);
        }
    }
}

void batchnorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *mean, const float *rstd,
                             const float *weight, int64_t N, int64_t C, int64_t HW, bool training) {
    /* dinp (N,C,HW) or NULL, dweight (C) or NULL, dbias (C) or NULL, dout (N,C,HW),
     * inp (N,C,HW), mean (C), rstd (C), weight (C) or NULL — accumulates */
    LAUNCH(batchnorm_backward_kernel, C < CUDA_MAX_BLOCKS ? C : CUDA_MAX_BLOCKS,
           CUDA_REDUCE_THREADS, dinp, dweight, dbias, dout, inp, mean, rstd, weight, N, C, HW,
           training);
}

// One thread per output channel o, exactly the CPU's per-o sequence: the scale s is computed,
// then the K weights and the bias of o are read and written by this thread alone, so outputs
// aliasing their inputs (weight_out == conv_weight, bias_out == conv_bias) are safe.
__global__ void batchnorm_fold_forward_kernel(float *weight_out, float *bias_out,
                                              const float *conv_weight, const float *conv_bias,
                                              const float *bn_weight, const float *bn_bias,
                                              const float *running_mean, const float *running_var,
                                              int64_t O, int64_t K, float eps) {
    GRID_LOOP(o, O) {
        double s = (bn_weight ? (double)bn_weight[o] : 1.0) / sqrt((double)running_var[o] + eps);
        double b = conv_bias ? conv_bias[o] : 0.0;
        for (int64_t j = 0; j < K; j++) weight_out[o * K + j] = (float)(conv_weight[o * K + j] * s);
        bias_out[o] = (float)((b - running_mean[o]) * s + (bn_bias ? bn_bias[o] : 0.0));
    }
}

void batchnorm_fold_forward_cuda(float *weight_out, float *bias_out, const float *conv_weight,
                                 const float *conv_bias, const float *bn_weight,
                                 const float *bn_bias, const float *running_mean,
                                 const float *running_var, int64_t O, int64_t K, float eps) {
    /* weight_out (O,K), bias_out (O), conv_weight (O,K), conv_bias (O) or NULL,
     * bn_weight (O) or NULL, bn_bias (O) or NULL, running_mean (O), running_var (O) — assigns
     * (outputs may alias inputs) */
    LAUNCH(batchnorm_fold_forward_kernel, cuda_blocks(O), CUDA_THREADS, weight_out, bias_out,
           conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, O, K, eps);
}
