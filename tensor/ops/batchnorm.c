/* batchnorm.c — 2-D batch normalisation (per channel of NCHW maps): CPU kernels, wrapper,
 * backward rule, and folding an eval-mode BN into the convolution before it.
 *
 * For channel c, over its M = N*H*W values:
 *     xhat = (x - mean_c) * rstd_c,   y = weight_c * xhat + bias_c,   rstd_c = 1/sqrt(var_c + eps)
 * Training mode (torch.nn.functional.batch_norm, training=True): mean_c and the biased variance
 * var_c come from the batch; the running statistics are then updated in place as PyTorch does,
 *     running_mean = (1 - momentum) * running_mean + momentum * mean_c
 *     running_var  = (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)   (unbiased)
 * Eval mode: mean_c = running_mean_c, var_c = running_var_c (constants).
 * Backward (derivation in docs/ops/batchnorm.md), with g = dy:
 *     dbias_c = sum g,   dweight_c = sum g * xhat
 *     training: dx = weight_c * rstd_c * (g - mean(g) - xhat * mean(g * xhat))
 *     eval:     dx = weight_c * rstd_c * g
 * Saved for backward: the input x and the per-channel mean and rstd (explicit forward outputs,
 * written in both modes so one backward kernel serves both).
 * Shapes follow PyTorch: x (N,C,H,W) contiguous, weight/bias/running stats (C). */
#include "tensor/ops/batchnorm.h"

#include <math.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

void batchnorm_forward_cpu(float *out, float *mean, float *rstd, float *running_mean,
                           float *running_var, const float *inp, const float *weight,
                           const float *bias, int64_t N, int64_t C, int64_t HW, bool training,
                           float momentum, float eps) {
    /* out (N,C,HW), mean (C), rstd (C), running_mean (C) or NULL, running_var (C) or NULL,
     * inp (N,C,HW), weight (C) or NULL, bias (C) or NULL — assigns out/mean/rstd; training
     * updates the running stats in place */
    int64_t M = N * HW;
#pragma omp parallel for schedule(static) if (N * C * HW > 65536)
    for (int64_t c = 0; c < C; c++) {
        double m, v;
        if (training) {
            /* Two passes in double: the mean, then squared deviations from it, so a large mean
             * does not cancel the variance (E[x^2] - E[x]^2 would). */
            double s = 0.0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t p = 0; p < HW; p++) s += inp[(n * C + c) * HW + p];
            m = s / (double)M;
            double ss = 0.0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t p = 0; p < HW; p++) {
                    double d = inp[(n * C + c) * HW + p] - m;
                    ss += d * d;
                }
            v = ss / (double)M;
            if (running_mean)
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            if (running_var)
                running_var[c] = (float)((1.0 - momentum) * running_var[c] +
                                         momentum * ss / (double)(M - 1));
        } else {
            m = running_mean[c];
            v = running_var[c];
        }
        mean[c] = (float)m;
        rstd[c] = (float)(1.0 / sqrt(v + (double)eps));
        float scale = rstd[c] * (weight ? weight[c] : 1.0f), shift = bias ? bias[c] : 0.0f;
        float mc = mean[c];
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + (n * C + c) * HW;
            float *y = out + (n * C + c) * HW;
            for (int64_t p = 0; p < HW; p++) y[p] = (x[p] - mc) * scale + shift;
        }
    }
}

void batchnorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *mean, const float *rstd,
                            const float *weight, int64_t N, int64_t C, int64_t HW,
                            bool training) {
    /* dinp (N,C,HW) or NULL, dweight (C) or NULL, dbias (C) or NULL, dout (N,C,HW),
     * inp (N,C,HW), mean (C), rstd (C), weight (C) or NULL — accumulates */
    int64_t M = N * HW;
#pragma omp parallel for schedule(static) if (N * C * HW > 65536)
    for (int64_t c = 0; c < C; c++) {
        float mc = mean[c], rc = rstd[c];
        /* sum g and sum g*xhat: needed by dbias, dweight and the training-mode dx (through the
         * batch statistics); eval-mode dx alone needs neither. */
        double sg = 0.0, sgx = 0.0;
        if (training || dweight || dbias) {
            for (int64_t n = 0; n < N; n++)
                for (int64_t p = 0; p < HW; p++) {
                    int64_t i = (n * C + c) * HW + p;
                    sg += dout[i];
                    sgx += (double)dout[i] * ((inp[i] - mc) * rc);
                }
        }
        if (dbias) dbias[c] += (float)sg;
        if (dweight) dweight[c] += (float)sgx;
        if (!dinp) continue;
        float k = rc * (weight ? weight[c] : 1.0f);
        /* Training: the batch mean and variance depend on x, giving the two projection terms
         * (mean(g) and xhat * mean(g * xhat)); eval statistics are constants. */
        float mg = training ? (float)(sg / (double)M) : 0.0f;
        float mgx = training ? (float)(sgx / (double)M) : 0.0f;
        for (int64_t n = 0; n < N; n++)
            for (int64_t p = 0; p < HW; p++) {
                int64_t i = (n * C + c) * HW + p;
                float xhat = (inp[i] - mc) * rc;
                dinp[i] += k * (dout[i] - mg - xhat * mgx);
            }
    }
}

void batchnorm_fold_forward_cpu(float *weight_out, float *bias_out, const float *conv_weight,
                                const float *conv_bias, const float *bn_weight,
                                const float *bn_bias, const float *running_mean,
                                const float *running_var, int64_t O, int64_t K, float eps) {
    /* weight_out (O,K), bias_out (O), conv_weight (O,K), conv_bias (O) or NULL,
     * bn_weight (O) or NULL, bn_bias (O) or NULL, running_mean (O), running_var (O);
     * K = C*KH*KW. Outputs may alias inputs (each element is read before it is written) —
     * assigns */
    for (int64_t o = 0; o < O; o++) {
        /* BN(z) = (z - mean) * s + beta with s = gamma / sqrt(var + eps), and z = W x + b,
         * so BN(z) = (s W) x + ((b - mean) * s + beta). */
        double s = (bn_weight ? (double)bn_weight[o] : 1.0) / sqrt((double)running_var[o] + eps);
        double b = conv_bias ? conv_bias[o] : 0.0;
        for (int64_t j = 0; j < K; j++) weight_out[o * K + j] = (float)(conv_weight[o * K + j] * s);
        bias_out[o] = (float)((b - running_mean[o]) * s + (bn_bias ? bn_bias[o] : 0.0));
    }
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

/* CHECK an optional per-channel vector: NULL, or f32 (C) on x's device. */
static void check_channel_vec(const char *op, const Tensor *x, const Tensor *v, const char *name,
                              int64_t C) {
    if (!v) return;
    tensor_check_f32(op, v, name);
    tensor_check_same_device(op, x, v);
    CHECK(v->ndim == 1 && v->shape[0] == C, "%s: %s must have shape [%lld] (C of x %s), got %s", op,
          name, (long long)C, tensor_shape_str(x), tensor_shape_str(v));
}

static void batchnorm2d_backward(Node *n) {
    Tensor *x = n->in[0], *weight = n->in[1], *bias = n->in[2];
    float *dx = ag_needs(x) ? ag_grad(x)->data : NULL;
    float *dweight = ag_needs(weight) ? ag_grad(weight)->data : NULL;
    float *dbias = ag_needs(bias) ? ag_grad(bias)->data : NULL;
    KERNEL_RUN(x->device, batchnorm_backward, 
        dx, dweight, dbias, n->out->grad->data, x->data, n->saved[0]->data, n->saved[1]->data,
        weight ? weight->data : NULL, x->shape[0], x->shape[1], x->shape[2] * x->shape[3],
        n->iarg[0] != 0);
}

Tensor *tensor_batchnorm2d(Tensor *x, Tensor *weight, Tensor *bias, Tensor *running_mean,
                           Tensor *running_var, bool training, float momentum, float eps) {
    const char *op = "batchnorm2d";
    tensor_check_f32(op, x, "x");
    CHECK(x->ndim == 4, "%s: x must be (N,C,H,W), got %s", op, tensor_shape_str(x));
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    check_channel_vec(op, x, weight, "weight", C);
    check_channel_vec(op, x, bias, "bias", C);
    check_channel_vec(op, x, running_mean, "running_mean", C);
    check_channel_vec(op, x, running_var, "running_var", C);
    CHECK(eps >= 0.0f, "%s: eps %g < 0", op, eps);
    if (training) {
        CHECK(N * HW > 1, "%s: training needs more than one value per channel, x is %s", op,
              tensor_shape_str(x));
        CHECK(!running_mean == !running_var, "%s: give both running statistics or neither", op);
        CHECK(momentum >= 0.0f && momentum <= 1.0f, "%s: momentum %g outside [0, 1]", op, momentum);
    } else {
        CHECK(running_mean && running_var, "%s: eval mode needs running_mean and running_var", op);
    }
    Tensor *out = tensor_empty(DT_F32, 4, x->shape);
    Tensor *mean = tensor_empty(DT_F32, 1, SHAPE(C));
    Tensor *rstd = tensor_empty(DT_F32, 1, SHAPE(C));
    KERNEL_RUN(x->device, batchnorm_forward, 
        out->data, mean->data, rstd->data, running_mean ? running_mean->data : NULL,
        running_var ? running_var->data : NULL, x->data, weight ? weight->data : NULL,
        bias ? bias->data : NULL, N, C, HW, training, momentum, eps);
    Node *n = AG_RECORD(op, out, batchnorm2d_backward, x, weight, bias);
    if (n) {
        n->saved[0] = mean;
        n->saved[1] = rstd;
        n->iarg[0] = training;
    }
    return out;
}

void batchnorm_fold_into_conv(Tensor *weight_out, Tensor *bias_out, const Tensor *conv_weight,
                              const Tensor *conv_bias, const Tensor *bn_weight,
                              const Tensor *bn_bias, const Tensor *running_mean,
                              const Tensor *running_var, float eps) {
    const char *op = "batchnorm_fold_into_conv";
    tensor_check_f32(op, conv_weight, "conv_weight");
    tensor_check_f32(op, weight_out, "weight_out");
    CHECK(conv_weight->ndim >= 2, "%s: conv_weight must be (O,C,KH,KW), got %s", op,
          tensor_shape_str(conv_weight));
    CHECK(tensor_same_shape(weight_out, conv_weight), "%s: weight_out %s does not match conv_weight %s",
          op, tensor_shape_str(weight_out), tensor_shape_str(conv_weight));
    tensor_check_same_device(op, conv_weight, weight_out);
    int64_t O = conv_weight->shape[0];
    CHECK(running_mean && running_var, "%s: running_mean and running_var are required", op);
    CHECK(bias_out, "%s: bias_out is required", op);
    check_channel_vec(op, conv_weight, bias_out, "bias_out", O);
    check_channel_vec(op, conv_weight, conv_bias, "conv_bias", O);
    check_channel_vec(op, conv_weight, bn_weight, "bn_weight", O);
    check_channel_vec(op, conv_weight, bn_bias, "bn_bias", O);
    check_channel_vec(op, conv_weight, running_mean, "running_mean", O);
    check_channel_vec(op, conv_weight, running_var, "running_var", O);
    KERNEL_RUN(conv_weight->device, batchnorm_fold_forward, 
        weight_out->data, bias_out->data, conv_weight->data, conv_bias ? conv_bias->data : NULL,
        bn_weight ? bn_weight->data : NULL, bn_bias ? bn_bias->data : NULL, running_mean->data,
        running_var->data, O, conv_weight->numel / O, eps);
}
