/* reduce.c — sum, mean and max over one dimension or the whole tensor: CPU kernels, wrappers
 * and backward rules.
 *
 * Layout: reducing dimension d of a contiguous tensor views it as (outer, dim, inner) with
 * outer = prod(shape[:d]), dim = shape[d], inner = prod(shape[d+1:]); element (o, k, i) sits at
 * (o*dim + k)*inner + i. The output is (outer, inner) in the same order, which is the input's
 * shape with dimension d dropped (or kept as 1). A whole-tensor reduction is (1, numel, 1).
 *
 *     sum:  out[o,i] = sum_k x[o,k,i]            dx[o,k,i] = dout[o,i]
 *     mean: out[o,i] = sum_k x[o,k,i] / dim      dx[o,k,i] = dout[o,i] / dim
 *     max:  out[o,i] = x[o,argmax[o,i],i]        dx[o,argmax[o,i],i] = dout[o,i], 0 elsewhere
 *     max over all: out = max(x)                 dx[j] = dout / count for every x[j] == out
 * max follows torch 1.13: over a dim, ties go to the first index (gradient to that index only);
 * over the whole tensor, the gradient is shared evenly among tied maxima. NaN counts as the
 * maximum (first NaN index), so NaN propagates as in torch.
 *
 * Sums accumulate in double. Parallel over outer x (blocks of inner); a whole-tensor reduction
 * (outer = inner = 1) is instead split into a fixed number of chunks combined in order, so the
 * result does not depend on the thread count.
 * Saved for backward: max saves argmax (int64, shape of the output) as an explicit forward output;
 * max over all uses its own output value; sum and mean save nothing. */
#include "tensor/ops/reduce.h"

#include <math.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

#define REDUCE_BLOCK 32   /* inner columns handled by one work item (contiguous reads) */
#define REDUCE_CHUNKS 64  /* fixed split of a whole-tensor reduction (thread-count independent) */

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Sum of x[0..n) in double: chunk partial sums combined in chunk order. */
static double sum_contiguous(const float *x, int64_t n) {
    double part[REDUCE_CHUNKS];
    int64_t chunk = (n + REDUCE_CHUNKS - 1) / REDUCE_CHUNKS;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int c = 0; c < REDUCE_CHUNKS; c++) {
        double s = 0.0;
        for (int64_t j = c * chunk; j < min_i64(n, (c + 1) * chunk); j++) s += x[j];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < REDUCE_CHUNKS; c++) s += part[c];
    return s;
}

void sum_forward_cpu(float *out, const float *inp, int64_t outer, int64_t dim, int64_t inner,
                     int64_t divisor) {
    /* out (outer,inner), inp (outer,dim,inner) — assigns */
    if (outer * inner == 1) {
        out[0] = (float)(sum_contiguous(inp, dim) / (double)divisor);
        return;
    }
    int64_t nblk = (inner + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
#pragma omp parallel for schedule(static) if (outer * dim * inner > 32768)
    for (int64_t w = 0; w < outer * nblk; w++) {
        int64_t o = w / nblk, i0 = (w % nblk) * REDUCE_BLOCK;
        int64_t nb = min_i64(REDUCE_BLOCK, inner - i0);
        double acc[REDUCE_BLOCK] = {0};
        const float *p = inp + o * dim * inner + i0;
        for (int64_t k = 0; k < dim; k++)
            for (int64_t j = 0; j < nb; j++) acc[j] += p[k * inner + j];
        for (int64_t j = 0; j < nb; j++) out[o * inner + i0 + j] = (float)(acc[j] / (double)divisor);
    }
}

void sum_backward_cpu(float *dinp, const float *dout, int64_t outer, int64_t dim, int64_t inner,
                      int64_t divisor) {
    /* dinp (outer,dim,inner), dout (outer,inner) — accumulates */
    float div = (float)divisor;
#pragma omp parallel for schedule(static) if (outer * dim * inner > 32768)
    for (int64_t r = 0; r < outer * dim; r++) {
        const float *g = dout + (r / dim) * inner;
        for (int64_t i = 0; i < inner; i++) dinp[r * inner + i] += g[i] / div;
    }
}

/* v beats the current best: strictly greater (so ties keep the first index), or the first NaN. */
static inline bool max_takes(float v, float best) {
    return v > best || (isnan(v) && !isnan(best));
}

void max_forward_cpu(float *out, int64_t *argmax, const float *inp, int64_t outer, int64_t dim,
                     int64_t inner) {
    /* out (outer,inner), argmax (outer,inner), inp (outer,dim,inner) — assigns */
    if (outer * inner == 1) {
        float cval[REDUCE_CHUNKS];
        int64_t cidx[REDUCE_CHUNKS];
        int64_t chunk = (dim + REDUCE_CHUNKS - 1) / REDUCE_CHUNKS;
#pragma omp parallel for schedule(static) if (dim > 65536)
        for (int c = 0; c < REDUCE_CHUNKS; c++) {
            int64_t lo = c * chunk, hi = min_i64(dim, (c + 1) * chunk);
            cidx[c] = -1; /* empty chunk */
            if (lo >= hi) continue;
            float best = inp[lo];
            int64_t bi = lo;
            for (int64_t j = lo + 1; j < hi; j++)
                if (max_takes(inp[j], best)) { best = inp[j]; bi = j; }
            cval[c] = best;
            cidx[c] = bi;
        }
        /* Chunks in index order with the same strict rule keep the first of tied maxima. */
        float best = cval[0];
        int64_t bi = cidx[0];
        for (int c = 1; c < REDUCE_CHUNKS; c++)
            if (cidx[c] >= 0 && max_takes(cval[c], best)) { best = cval[c]; bi = cidx[c]; }
        out[0] = best;
        argmax[0] = bi;
        return;
    }
    int64_t nblk = (inner + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
#pragma omp parallel for schedule(static) if (outer * dim * inner > 32768)
    for (int64_t w = 0; w < outer * nblk; w++) {
        int64_t o = w / nblk, i0 = (w % nblk) * REDUCE_BLOCK;
        int64_t nb = min_i64(REDUCE_BLOCK, inner - i0);
        float best[REDUCE_BLOCK];
        int64_t bi[REDUCE_BLOCK];
        const float *p = inp + o * dim * inner + i0;
        for (int64_t j = 0; j < nb; j++) { best[j] = p[j]; bi[j] = 0; }
        for (int64_t k = 1; k < dim; k++)
            for (int64_t j = 0; j < nb; j++)
                if (max_takes(p[k * inner + j], best[j])) { best[j] = p[k * inner + j]; bi[j] = k; }
        for (int64_t j = 0; j < nb; j++) {
            out[o * inner + i0 + j] = best[j];
            argmax[o * inner + i0 + j] = bi[j];
        }
    }
}

void max_backward_cpu(float *dinp, const float *dout, const int64_t *argmax, int64_t outer,
                      int64_t dim, int64_t inner) {
    /* dinp (outer,dim,inner), dout (outer,inner), argmax (outer,inner) — accumulates */
#pragma omp parallel for schedule(static) if (outer * inner > 32768)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t o = r / inner, i = r % inner;
        dinp[(o * dim + argmax[r]) * inner + i] += dout[r];
    }
}

void max_all_backward_cpu(float *dinp, const float *dout, const float *inp, const float *out,
                          int64_t n) {
    /* dinp (n), dout (1), inp (n), out (1) — accumulates */
    float m = out[0];
    bool m_nan = isnan(m);
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count) if (n > 65536)
    for (int64_t j = 0; j < n; j++) count += m_nan ? isnan(inp[j]) : inp[j] == m;
    /* Torch divides the upstream gradient by the number of tied maxima (evenly distributed). */
    float g = dout[0] / (float)count;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t j = 0; j < n; j++)
        if (m_nan ? isnan(inp[j]) : inp[j] == m) dinp[j] += g;
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

/* Output of reducing dimension d of x: the shape without d, or with d as 1 (keepdim). */
static Tensor *reduced_empty(const Tensor *x, int d, bool keepdim, DType dt) {
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i != d) shape[nd++] = x->shape[i];
        else if (keepdim) shape[nd++] = 1;
    }
    return tensor_empty(dt, nd, shape);
}

/* (outer, dim, inner) view of x around dimension d. */
static void reduce_view(const Tensor *x, int d, int64_t *outer, int64_t *dim, int64_t *inner) {
    *outer = shape_numel(d, x->shape);
    *dim = x->shape[d];
    *inner = shape_numel(x->ndim - d - 1, x->shape + d + 1);
}

/* iarg: [0] outer, [1] dim, [2] inner, [3] divisor (1 for sum, dim for mean). */
static void sum_backward(Node *n) {
    Tensor *x = n->in[0];
    KERNEL_RUN(x->device, sum_backward, ag_grad(x)->data, n->out->grad->data, n->iarg[0],
                                         n->iarg[1], n->iarg[2], n->iarg[3]);
}

static Tensor *sum_like(const char *op, Tensor *x, int d, bool keepdim, bool all, bool mean) {
    tensor_check_f32(op, x, "x");
    int64_t outer, dim, inner;
    Tensor *out;
    if (all) {
        outer = inner = 1;
        dim = x->numel;
        out = tensor_empty(DT_F32, 0, NULL);
    } else {
        reduce_view(x, d, &outer, &dim, &inner);
        out = reduced_empty(x, d, keepdim, DT_F32);
    }
    CHECK(!mean || !all || dim > 0, "%s: mean of an empty tensor %s", op, tensor_shape_str(x));
    /* A mean over an empty dimension is 0/0 = NaN, as in torch. */
    int64_t divisor = mean ? dim : 1;
    if (mean && dim == 0) {
        KERNEL_RUN(x->device, fill, out->data, NAN, out->numel);
    } else {
        KERNEL_RUN(x->device, sum_forward, out->data, x->data, outer, dim, inner, divisor);
    }
    Node *n = AG_RECORD(op, out, sum_backward, x);
    if (n) {
        n->iarg[0] = outer;
        n->iarg[1] = dim;
        n->iarg[2] = inner;
        n->iarg[3] = divisor > 0 ? divisor : 1;
    }
    return out;
}

Tensor *tensor_sum(Tensor *x, int dim, bool keepdim) {
    return sum_like("sum", x, tensor_dim(x, dim), keepdim, false, false);
}
Tensor *tensor_mean(Tensor *x, int dim, bool keepdim) {
    return sum_like("mean", x, tensor_dim(x, dim), keepdim, false, true);
}
Tensor *tensor_sum_all(Tensor *x) { return sum_like("sum_all", x, 0, false, true, false); }
Tensor *tensor_mean_all(Tensor *x) { return sum_like("mean_all", x, 0, false, true, true); }

/* saved[0]: argmax (int64, output shape); iarg: [0] outer, [1] dim, [2] inner. */
static void max_backward(Node *n) {
    Tensor *x = n->in[0];
    KERNEL_RUN(x->device, max_backward, ag_grad(x)->data, n->out->grad->data,
                                         tensor_i64(n->saved[0]), n->iarg[0], n->iarg[1],
                                         n->iarg[2]);
}

Tensor *tensor_max(Tensor *x, int dim, bool keepdim) {
    tensor_check_f32("max", x, "x");
    int d = tensor_dim(x, dim);
    int64_t outer, len, inner;
    reduce_view(x, d, &outer, &len, &inner);
    CHECK(len > 0, "max: dimension %d of %s is empty", dim, tensor_shape_str(x));
    Tensor *out = reduced_empty(x, d, keepdim, DT_F32);
    Tensor *argmax = reduced_empty(x, d, keepdim, DT_I64);
    KERNEL_RUN(x->device, max_forward, out->data, argmax->data, x->data, outer, len, inner);
    Node *n = AG_RECORD("max", out, max_backward, x);
    if (n) {
        n->saved[0] = argmax;
        n->iarg[0] = outer;
        n->iarg[1] = len;
        n->iarg[2] = inner;
    }
    return out;
}

static void max_all_backward(Node *n) {
    Tensor *x = n->in[0];
    KERNEL_RUN(x->device, max_all_backward, ag_grad(x)->data, n->out->grad->data, x->data,
                                             n->out->data, x->numel);
}

Tensor *tensor_max_all(Tensor *x) {
    tensor_check_f32("max_all", x, "x");
    CHECK(x->numel > 0, "max_all: empty tensor %s", tensor_shape_str(x));
    Tensor *out = tensor_empty(DT_F32, 0, NULL);
    /* The kernel's argmax is not needed: backward finds every tied maximum from the output. */
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    int64_t *argmax = arena_alloc(arena, sizeof(int64_t));
    KERNEL_RUN(x->device, max_forward, out->data, argmax, x->data, 1, x->numel, 1);
    arena_release(arena, mark);
    AG_RECORD("max_all", out, max_all_backward, x);
    return out;
}
