// elementwise.cu — element-wise ops on the GPU (specification: tensor/ops/elementwise.c).
//
// Binary: out = a (op) b with broadcasting through BroadcastGeom strides (0 = broadcast), one
// thread per output element. Backward: per operand, each element of the operand sums dout * the
// local derivative over the output positions that read it (the broadcast dimensions); the sum is
// in double, in a fixed order — a block per operand element when the sum is long, a thread per
// element when it is short. Unary: one thread per element, the same formulas as the CPU (float
// math, GELU through erf in double).
#include "cuda/common.cuh"

__device__ inline int64_t bc_offset(int64_t lin, const BroadcastGeom &g, const int64_t *stride) {
    int64_t off = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t i = lin % g.shape[d];
        lin /= g.shape[d];
        off += i * stride[d];
    }
    return off;
}

__device__ inline float binary_apply(BinaryOp op, float x, float y) {
    switch (op) {
    case BINARY_ADD: return x + y;
    case BINARY_SUB: return x - y;
    case BINARY_MUL: return x * y;
    case BINARY_DIV: return x / y;
    default: return NAN;
    }
}

__device__ inline float binary_grad(BinaryOp op, bool is_a, float dout, float x, float y) {
    switch (op) {
    case BINARY_ADD: return dout;
    case BINARY_SUB: return is_a ? dout : -dout;
    case BINARY_MUL: return is_a ? dout * y : dout * x;
    case BINARY_DIV: return is_a ? dout / y : -dout * x / (y * y);
    default: return NAN;
    }
}

static int64_t geom_numel(const BroadcastGeom *g) {
    int64_t n = 1;
    for (int d = 0; d < g->ndim; d++) n *= g->shape[d];
    return n;
}

// In place (out == a) is safe: element i of out is written by the thread that read a[i] (a has
// the output's shape then), and b does not overlap out (the wrapper checks).
__global__ void binary_forward_kernel(float *out, const float *a, const float *b, BroadcastGeom g,
                                      BinaryOp op, int64_t n) {
    GRID_LOOP(i, n)
    out[i] = binary_apply(op, a[bc_offset(i, g, g.astride)], b[bc_offset(i, g, g.bstride)]);
}

void binary_forward_cuda(float *out, const float *a, const float *b, const BroadcastGeom *g,
                         BinaryOp op) {
    /* out (shape), a and b broadcast to shape through their strides — assigns */
    int64_t n = geom_numel(g);
    LAUNCH(binary_forward_kernel, cuda_blocks(n), CUDA_THREADS, out, a, b, *g, op, n);
}

// The kept/reduced split of one operand's gradient: kept dims (stride != 0 or size 1) index the
// operand's elements, reduced dims (broadcast) are summed over.
struct BinaryReduce {
    int nk, nr;
    int kd[6], rd[6];
    int64_t ostride[6];
};

__device__ inline void binary_reduce_base(const BroadcastGeom &g, const BinaryReduce &r,
                                          const int64_t *xs, int64_t k, int64_t *obase,
                                          int64_t *xoff) {
    int64_t rem = k, ob = 0, xo = 0;
    for (int j = r.nk - 1; j >= 0; j--) {
        int d = r.kd[j];
        int64_t i = rem % g.shape[d];
        rem /= g.shape[d];
        ob += i * r.ostride[d];
        xo += i * xs[d];
    }
    *obase = ob;
    *xoff = xo;
}

__device__ inline int64_t binary_reduce_pos(const BroadcastGeom &g, const BinaryReduce &r,
                                            int64_t obase, int64_t rr) {
    int64_t o = obase;
    for (int j = r.nr - 1; j >= 0; j--) {
        int d = r.rd[j];
        o += (rr % g.shape[d]) * r.ostride[d];
        rr /= g.shape[d];
    }
    return o;
}

// Short sums: one thread per operand element, summing its nred terms in order.
__global__ void binary_backward_thread_kernel(float *dx, bool is_a, const float *dout,
                                              const float *a, const float *b, BroadcastGeom g,
                                              BinaryReduce r, BinaryOp op, int64_t nkeep,
                                              int64_t nred) {
    const int64_t *xs = is_a ? g.astride : g.bstride;
    GRID_LOOP(k, nkeep) {
        int64_t obase, xoff;
        binary_reduce_base(g, r, xs, k, &obase, &xoff);
        double acc = 0.0;
        for (int64_t q = 0; q < nred; q++) {
            int64_t o = binary_reduce_pos(g, r, obase, q);
            float av = a[bc_offset(o, g, g.astride)], bv = b[bc_offset(o, g, g.bstride)];
            acc += binary_grad(op, is_a, dout[o], av, bv);
        }
        dx[xoff] += (float)acc;
    }
}

// Long sums (a bias gradient over B*T rows): a block per operand element, tree-reduced.
__global__ void binary_backward_block_kernel(float *dx, bool is_a, const float *dout,
                                             const float *a, const float *b, BroadcastGeom g,
                                             BinaryReduce r, BinaryOp op, int64_t nkeep,
                                             int64_t nred) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    const int64_t *xs = is_a ? g.astride : g.bstride;
    BLOCK_LOOP(k, nkeep) {
        int64_t obase, xoff;
        binary_reduce_base(g, r, xs, k, &obase, &xoff);
        double acc = 0.0;
        for (int64_t q = threadIdx.x; q < nred; q += blockDim.x) {
            int64_t o = binary_reduce_pos(g, r, obase, q);
            float av = a[bc_offset(o, g, g.astride)], bv = b[bc_offset(o, g, g.bstride)];
            acc += binary_grad(op, is_a, dout[o], av, bv);
        }
        acc = block_sum(acc, sh);
        if (threadIdx.x == 0) dx[xoff] += (float)acc;
    }
}

static void binary_backward_operand(float *dx, bool is_a, const float *dout, const float *a,
                                    const float *b, const BroadcastGeom *g, BinaryOp op) {
    const int64_t *xs = is_a ? g->astride : g->bstride;
    BinaryReduce r;
    r.nk = r.nr = 0;
    int64_t nkeep = 1, nred = 1;
    for (int d = 0; d < g->ndim; d++) {
        if (xs[d] != 0 || g->shape[d] == 1) {
            r.kd[r.nk++] = d;
            nkeep *= g->shape[d];
        } else {
            r.rd[r.nr++] = d;
            nred *= g->shape[d];
        }
    }
    int64_t s = 1;
    for (int d = g->ndim - 1; d >= 0; d--) {
        r.ostride[d] = s;
        s *= g->shape[d];
    }
    if (nred >= 64 && nkeep < (int64_t)1 << 20)
        LAUNCH(binary_backward_block_kernel, nkeep < CUDA_MAX_BLOCKS ? nkeep : CUDA_MAX_BLOCKS,
               CUDA_REDUCE_THREADS, dx, is_a, dout, a, b, *g, r, op, nkeep, nred);
    else
        LAUNCH(binary_backward_thread_kernel, cuda_blocks(nkeep), CUDA_THREADS, dx, is_a, dout, a,
               b, *g, r, op, nkeep, nred);
}

void binary_backward_cuda(float *da, float *db, const float *dout, const float *a, const float *b,
                          const BroadcastGeom *g, BinaryOp op) {
    /* da (a's shape), db (b's shape), dout (shape) — accumulates */
    if (da) binary_backward_operand(da, true, dout, a, b, g, op);
    if (db) binary_backward_operand(db, false, dout, a, b, g, op);
}

__device__ inline float sigmoidf_dev(float x) {
    // Split by sign so exp never overflows.
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

__device__ inline float unary_apply(UnaryOp op, float x, float alpha, float beta) {
    switch (op) {
    case UNARY_EXP: return expf(x);
    case UNARY_LOG: return logf(x);
    case UNARY_SQRT: return sqrtf(x);
    case UNARY_ABS: return fabsf(x);
    case UNARY_RELU: return x > 0 ? x : 0.0f;
    case UNARY_SIGMOID: return sigmoidf_dev(x);
    case UNARY_TANH: return tanhf(x);
    case UNARY_GELU: return (float)(0.5 * x * (1.0 + erf(x * M_SQRT1_2)));
    case UNARY_QUICK_GELU: return x * sigmoidf_dev(1.702f * x);
    case UNARY_POW: return powf(x, alpha);
    case UNARY_CLAMP: return fminf(fmaxf(x, alpha), beta);
    case UNARY_AFFINE: return alpha * x + beta;
    case UNARY_NEG: return -x;
    default: return NAN;
    }
}

__global__ void unary_forward_kernel(float *out, const float *inp, int64_t n, UnaryOp op,
                                     float alpha, float beta) {
    GRID_LOOP(i, n) out[i] = unary_apply(op, inp[i], alpha, beta);
}

void unary_forward_cuda(float *out, const float *inp, int64_t n, UnaryOp op, float alpha,
                        float beta) {
    /* out (n), inp (n) — assigns; out may be inp (each element read, then written, by one
     * thread) */
    LAUNCH(unary_forward_kernel, cuda_blocks(n), CUDA_THREADS, out, inp, n, op, alpha, beta);
}

__device__ inline float unary_grad(UnaryOp op, float x, float y, float alpha, float beta) {
    switch (op) {
    case UNARY_EXP: return y; // d exp(x) = exp(x)
    case UNARY_LOG: return 1.0f / x;
    case UNARY_SQRT: return 0.5f / y;                           // d sqrt(x) = 1/(2 sqrt(x))
    case UNARY_ABS: return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f; // sign(x), 0 at 0 as torch
    case UNARY_RELU: return x > 0 ? 1.0f : 0.0f;
    case UNARY_SIGMOID: return y * (1.0f - y);
    case UNARY_TANH: return 1.0f - y * y;
    case UNARY_GELU: { // Phi(x) + x phi(x)
        double cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2));
        double pdf = exp(-0.5 * (double)x * x) * 0.3989422804014327;
        return (float)(cdf + x * pdf);
    }
    case UNARY_QUICK_GELU: { // s + 1.702 x s (1 - s)
        float s = sigmoidf_dev(1.702f * x);
        return s + 1.702f * x * s * (1.0f - s);
    }
    case UNARY_POW: // p x^(p-1); 0 when p = 0
        return alpha == 0.0f ? 0.0f : alpha * powf(x, alpha - 1.0f);
    case UNARY_CLAMP: return (x >= alpha && x <= beta) ? 1.0f : 0.0f;
    case UNARY_AFFINE: return alpha;
    case UNARY_NEG: return -1.0f;
    default: return NAN;
    }
}

__global__ void unary_backward_kernel(float *dinp, const float *dout, const float *inp,
                                      const float *out, int64_t n, UnaryOp op, float alpha,
                                      float beta, bool accumulate) {
    GRID_LOOP(i, n) {
        const float d = dout[i] * unary_grad(op, inp[i], out[i], alpha, beta);
        dinp[i] = accumulate ? dinp[i] + d : d;
    }
}

void unary_backward_cuda(float *dinp, const float *dout, const float *inp, const float *out,
                         int64_t n, UnaryOp op, float alpha, float beta, bool accumulate) {
    /* dinp (n), dout (n), inp (n), out (n) — accumulates, or assigns */
    LAUNCH(unary_backward_kernel, cuda_blocks(n), CUDA_THREADS, dinp, dout, inp, out, n, op, alpha,
           beta, accumulate);
}
