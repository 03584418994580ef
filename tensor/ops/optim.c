/* optim.c — optimizer update kernels: CPU kernels and their wrappers.
 *
 * SGD, as torch.optim.SGD with dampening 0 (weight decay coupled to the gradient):
 *     g = grad + wd*param
 *     buf = g                      on the first step
 *     buf = momentum*buf + g       afterwards
 *     param -= lr * (nesterov ? g + momentum*buf : buf)      (param -= lr*g when momentum = 0)
 * AdamW, as torch.optim.AdamW (decoupled weight decay, applied before the Adam update):
 *     param *= 1 - lr*wd
 *     m = beta1*m + (1-beta1)*grad;   v = beta2*v + (1-beta2)*grad^2
 *     param -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 * Both are written in float32 in the same order of operations as torch's single-tensor path, so
 * the trajectories agree to float32 round-off. Global-norm clipping needs sum(grad^2), which is
 * accumulated in double (a parameter can hold millions of elements).
 * Shapes: every kernel sees flat arrays of n elements. Nothing is saved; nothing is recorded. */
#include "tensor/ops/optim.h"

#include <math.h>

#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

void sgd_step_cpu(float *param, float *momentum_buf, const float *grad, int64_t n,
                  const SgdStep *h) {
    /* param (n), momentum_buf (n) or NULL, grad (n) — updates param and momentum_buf in place */
    const float lr = h->lr, mu = h->momentum, wd = h->weight_decay;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + wd * param[i];
        if (momentum_buf) {
            float buf = h->first ? g : mu * momentum_buf[i] + g;
            momentum_buf[i] = buf;
            g = h->nesterov ? g + mu * buf : buf;
        }
        param[i] -= lr * g;
    }
}

void adamw_step_cpu(float *param, float *exp_avg, float *exp_avg_sq, const float *grad,
                    int64_t n, const AdamWStep *h) {
    /* param (n), exp_avg (n), exp_avg_sq (n), grad (n) — updates param and both moments in place */
    const float b1 = h->beta1, b2 = h->beta2, c1 = h->one_minus_beta1, c2 = h->one_minus_beta2;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float p = param[i] * h->decay;
        float g = grad[i];
        float m = b1 * exp_avg[i] + c1 * g;
        float v = b2 * exp_avg_sq[i] + c2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        /* eps outside the square root and after the bias correction of v, as torch. */
        float denom = sqrtf(v) / h->bias_correction2_sqrt + h->eps;
        param[i] = p + (-h->step_size * m) / denom;
    }
}

void sum_squares_cpu(double *out, const float *x, int64_t n) {
    /* out (1), x (n) — accumulates */
    double acc = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : acc) if (n > 65536)
    for (int64_t i = 0; i < n; i++) acc += (double)x[i] * x[i];
    out[0] += acc;
}

void scale_inplace_cpu(float *x, int64_t n, float s) {
    /* x (n) — in place */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

/* ---- Wrappers ----------------------------------------------------------------------------- */

/* Every state tensor of a step must match the parameter in dtype, device and shape. */
static void check_like(const char *op, const Tensor *param, const Tensor *t, const char *argname) {
    tensor_check_f32(op, t, argname);
    tensor_check_same_device(op, param, t);
    CHECK(tensor_same_shape(param, t), "%s: %s has shape %s, parameter '%s' has %s", op, argname,
          tensor_shape_str(t), param->name ? param->name : "?", tensor_shape_str(param));
}

void tensor_sgd_step(Tensor *param, Tensor *momentum_buf, const Tensor *grad, const SgdStep *h) {
    tensor_check_f32("sgd_step", param, "param");
    check_like("sgd_step", param, grad, "grad");
    CHECK((h->momentum != 0.0f) == (momentum_buf != NULL),
          "sgd_step: momentum %g needs a momentum buffer exactly when it is non-zero (buffer %s)",
          h->momentum, momentum_buf ? "given" : "missing");
    CHECK(!h->nesterov || h->momentum > 0.0f, "sgd_step: nesterov needs momentum > 0 (got %g)",
          h->momentum);
    if (momentum_buf) check_like("sgd_step", param, momentum_buf, "momentum_buf");
    KERNEL_RUN(param->device, sgd_step, param->data, momentum_buf ? momentum_buf->data : NULL,
                                         grad->data, param->numel, h);
}

void tensor_adamw_step(Tensor *param, Tensor *exp_avg, Tensor *exp_avg_sq, const Tensor *grad,
                       const AdamWStep *h) {
    tensor_check_f32("adamw_step", param, "param");
    check_like("adamw_step", param, grad, "grad");
    check_like("adamw_step", param, exp_avg, "exp_avg");
    check_like("adamw_step", param, exp_avg_sq, "exp_avg_sq");
    CHECK(h->bias_correction2_sqrt > 0.0f, "adamw_step: bias_correction2_sqrt %g must be > 0",
          h->bias_correction2_sqrt);
    KERNEL_RUN(param->device, adamw_step, param->data, exp_avg->data, exp_avg_sq->data,
                                           grad->data, param->numel, h);
}

double tensor_sum_squares(const Tensor *x) {
    tensor_check_f32("sum_squares", x, "x");
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    CHECK(arena_device(a) == x->device, "sum_squares: x is on %s but the current arena is on %s",
          device_name(x->device), device_name(arena_device(a)));
    double *acc = arena_alloc(a, sizeof(double)); /* scratch on x's device for the result */
    device_table(x->device)->memset0(acc, sizeof(double)); /* the kernel accumulates */
    KERNEL_RUN(x->device, sum_squares, acc, x->data, x->numel);
    double host = 0.0;
    device_table(x->device)->copy_d2h(&host, acc, sizeof host);
    arena_release(a, mark);
    return host;
}

void tensor_scale_inplace(Tensor *x, float s) {
    tensor_check_f32("scale_inplace", x, "x");
    KERNEL_RUN(x->device, scale_inplace, x->data, x->numel, s);
}
