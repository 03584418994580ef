/* softmax.c — softmax and log-softmax over any axis with an optional additive mask: CPU kernels,
 * wrappers, backward rules, and the causal-mask helper.
 *
 * With z = x + mask (mask broadcast to x's shape, or 0) and m = max_k z_k along the axis:
 *     softmax:     y_k = exp(z_k - m) / sum_j exp(z_j - m)
 *     log_softmax: y_k = z_k - m - log(sum_j exp(z_j - m))
 * Subtracting m keeps every exponent <= 0, so nothing overflows and the largest term is 1.
 * Backward (derivation in docs/ops/softmax.md), from the saved output y:
 *     softmax:     dz_k = y_k * (dy_k - sum_j dy_j y_j)
 *     log_softmax: dz_k = dy_k - exp(y_k) * sum_j dy_j
 * and dx = dz, dmask = dz summed over the mask's broadcast dimensions.
 *
 * Fully masked rows (every z_k = -inf): torch returns NaN for the whole row. Here softmax gives 0
 * and log_softmax -inf, so a padded or fully masked row cannot poison the rest of a batch with
 * NaN; the backward formulas then give dz = 0 (softmax) and dz = dy (log_softmax, the same
 * pass-through torch gives at the -inf entries of a partially masked row).
 *
 * Layout: the axis splits x into (outer, dim, inner); element (o, k, i) is at (o*dim + k)*inner + i.
 * Rows (o, i) are independent and run in parallel; each row's sum is accumulated in double.
 * Saved for backward: the output (softmax probabilities or log-probabilities). */
#include "tensor/ops/softmax.h"

#include <math.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"
#include "tensor/ops/elementwise.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* Offset of the mask element added to x[(o*dim + 0)*inner + i], and the mask's step along the
 * axis; from the row's first linear index, decomposed over x's shape. */
static int64_t mask_row_offset(const SoftmaxMask *mg, int64_t lin) {
    int64_t off = 0;
    for (int d = mg->ndim - 1; d >= 0; d--) {
        off += (lin % mg->shape[d]) * mg->stride[d];
        lin /= mg->shape[d];
    }
    return off;
}

/* One row: y = softmax or log_softmax of z = x + m, elements `st` apart (m may be NULL). */
static void softmax_row(float *y, const float *x, const float *m, int64_t mst, int64_t n,
                        int64_t st, bool log_out) {
    float mx = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        float z = x[k * st] + (m ? m[k * mst] : 0.0f);
        mx = fmaxf(mx, z);
    }
    if (mx == -INFINITY) { /* fully masked row: no probability mass anywhere */
        for (int64_t k = 0; k < n; k++) y[k * st] = log_out ? -INFINITY : 0.0f;
        return;
    }
    double sum = 0.0;
    for (int64_t k = 0; k < n; k++) {
        float e = expf(x[k * st] + (m ? m[k * mst] : 0.0f) - mx);
        if (!log_out) y[k * st] = e;
        sum += e;
    }
    if (log_out) {
        double lse = (double)mx + log(sum);
        for (int64_t k = 0; k < n; k++)
            y[k * st] = (float)((double)(x[k * st] + (m ? m[k * mst] : 0.0f)) - lse);
    } else {
        double inv = 1.0 / sum;
        for (int64_t k = 0; k < n; k++) y[k * st] = (float)(y[k * st] * inv);
    }
}

static void softmax_rows(float *out, const float *inp, const float *mask, const SoftmaxMask *mg,
                         int64_t outer, int64_t dim, int64_t inner, bool log_out) {
    int64_t mst = mask ? mg->stride[mg->axis] : 0;
#pragma omp parallel for schedule(static) if (outer * dim * inner > 16384)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *m = mask ? mask + mask_row_offset(mg, base) : NULL;
        softmax_row(out + base, inp + base, m, mst, dim, inner, log_out);
    }
}

void softmax_forward_cpu(float *out, const float *inp, const float *mask, const SoftmaxMask *mg,
                         int64_t outer, int64_t dim, int64_t inner) {
    /* out (outer,dim,inner), inp (outer,dim,inner), mask broadcast to inp through mg — assigns */
    softmax_rows(out, inp, mask, mg, outer, dim, inner, false);
}

void softmax_backward_cpu(float *dinp, const float *dout, const float *out, int64_t outer,
                          int64_t dim, int64_t inner) {
    /* dinp (outer,dim,inner), dout (outer,dim,inner), out (outer,dim,inner) — accumulates */
#pragma omp parallel for schedule(static) if (outer * dim * inner > 16384)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *y = out + base, *dy = dout + base;
        double s = 0.0; /* sum_j dy_j y_j */
        for (int64_t k = 0; k < dim; k++) s += (double)dy[k * inner] * y[k * inner];
        for (int64_t k = 0; k < dim; k++)
            dinp[base + k * inner] += (float)(y[k * inner] * (dy[k * inner] - s));
    }
}

void log_softmax_forward_cpu(float *out, const float *inp, const float *mask,
                             const SoftmaxMask *mg, int64_t outer, int64_t dim, int64_t inner) {
    /* out (outer,dim,inner), inp (outer,dim,inner), mask broadcast to inp through mg — assigns */
    softmax_rows(out, inp, mask, mg, outer, dim, inner, true);
}

void log_softmax_backward_cpu(float *dinp, const float *dout, const float *out, int64_t outer,
                              int64_t dim, int64_t inner) {
    /* dinp (outer,dim,inner), dout (outer,dim,inner), out (outer,dim,inner) — accumulates */
#pragma omp parallel for schedule(static) if (outer * dim * inner > 16384)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *y = out + base, *dy = dout + base;
        double s = 0.0; /* sum_j dy_j */
        for (int64_t k = 0; k < dim; k++) s += dy[k * inner];
        /* exp(y) recovers the probabilities; exp(-inf) = 0 at masked entries. */
        for (int64_t k = 0; k < dim; k++)
            dinp[base + k * inner] += (float)(dy[k * inner] - exp((double)y[k * inner]) * s);
    }
}

void causal_mask_cpu(float *out, int64_t t) {
    /* out (T,T) — assigns */
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j < t; j++) out[i * t + j] = j > i ? -INFINITY : 0.0f;
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

/* iarg: [0] outer, [1] dim, [2] inner, [3] 1 for log_softmax. in: x, mask (may be NULL). */
static void softmax_backward(Node *n) {
    Tensor *x = n->in[0], *mask = n->in[1];
    bool log_out = n->iarg[3] != 0;
    DeviceKind dev = n->out->device;
    const float *dout = n->out->grad->data;
    /* Gradient buffers first: they must outlive the scratch region released below. */
    float *dx = ag_needs(x) ? ag_grad(x)->data : NULL;
    float *dmask = ag_needs(mask) ? ag_grad(mask)->data : NULL;
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *dz;
    if (dmask) {
        /* dz is needed twice (dx and the reduction to dmask): take it as zeroed scratch. */
        dz = arena_alloc(arena, (size_t)x->numel * sizeof(float));
        device_table(dev)->memset0(dz, (size_t)x->numel * sizeof(float));
    } else {
        dz = dx;
    }
    int64_t outer = n->iarg[0], len = n->iarg[1], inner = n->iarg[2];
    if (log_out)
        KERNEL_RUN(dev, log_softmax_backward, dz, dout, n->out->data, outer, len, inner);
    else
        KERNEL_RUN(dev, softmax_backward, dz, dout, n->out->data, outer, len, inner);
    if (dmask) {
        if (dx) KERNEL_RUN(dev, accumulate, dx, dz, x->numel);
        /* z = x + mask: the mask's gradient is dz summed over its broadcast dimensions. */
        BroadcastGeom g;
        broadcast_geom(n->op, x, mask, &g);
        KERNEL_RUN(dev, binary_backward, NULL, dmask, dz, x->data, mask->data, &g, BINARY_ADD);
    }
    arena_release(arena, mark);
}

static Tensor *softmax_op(const char *op, Tensor *x, int dim, Tensor *mask, bool log_out) {
    tensor_check_f32(op, x, "x");
    int d = tensor_dim(x, dim);
    SoftmaxMask mg;
    if (mask) {
        tensor_check_f32(op, mask, "mask");
        tensor_check_same_device(op, x, mask);
        BroadcastGeom g;
        broadcast_geom(op, x, mask, &g);
        bool fits = g.ndim == x->ndim;
        for (int i = 0; fits && i < x->ndim; i++) fits = g.shape[i] == x->shape[i];
        CHECK(fits, "%s: mask %s does not broadcast to x %s without growing it", op,
              tensor_shape_str(mask), tensor_shape_str(x));
        memset(&mg, 0, sizeof mg);
        mg.ndim = x->ndim;
        mg.axis = d;
        memcpy(mg.shape, g.shape, sizeof mg.shape);
        memcpy(mg.stride, g.bstride, sizeof mg.stride);
    }
    int64_t outer = shape_numel(d, x->shape), len = x->shape[d];
    int64_t inner = shape_numel(x->ndim - d - 1, x->shape + d + 1);
    Tensor *out = tensor_empty(DT_F32, x->ndim, x->shape);
    const float *mdata = mask ? mask->data : NULL;
    const SoftmaxMask *mgp = mask ? &mg : NULL;
    if (log_out)
        KERNEL_RUN(x->device, log_softmax_forward, out->data, x->data, mdata, mgp, outer, len,
                                                    inner);
    else
        KERNEL_RUN(x->device, softmax_forward, out->data, x->data, mdata, mgp, outer, len, inner);
    Node *n = AG_RECORD(op, out, softmax_backward, x, mask);
    if (n) {
        n->iarg[0] = outer;
        n->iarg[1] = len;
        n->iarg[2] = inner;
        n->iarg[3] = log_out;
    }
    return out;
}

Tensor *tensor_softmax(Tensor *x, int dim, Tensor *mask) {
    return softmax_op("softmax", x, dim, mask, false);
}

Tensor *tensor_log_softmax(Tensor *x, int dim, Tensor *mask) {
    return softmax_op("log_softmax", x, dim, mask, true);
}

Tensor *tensor_causal_mask(int64_t t) {
    CHECK(t >= 1, "causal_mask: T = %lld, expected >= 1", (long long)t);
    Tensor *out = tensor_empty(DT_F32, 2, SHAPE(t, t));
    KERNEL_RUN(out->device, causal_mask, out->data, t);
    return out;
}
