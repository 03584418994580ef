/* elementwise.c — element-wise ops: CPU kernels, wrappers and backward rules.
 *
 * Binary: out = a (op) b with NumPy/PyTorch broadcasting. Each operand is described by element
 * strides in the output's index space, with stride 0 on broadcast dimensions, so one loop serves
 * every shape. Backward sums dout over the broadcast dimensions:
 *     add: da = dout, db = dout          sub: da = dout, db = -dout
 *     mul: da = dout*b, db = dout*a      div: da = dout/b, db = -dout*a/b^2
 * Unary: out = f(x); backward multiplies dout by f'(x), written from x or from the saved output
 * where that is cheaper (exp, sigmoid, tanh, sqrt).
 * Saved for backward: the inputs (binary, and unary rules that use x) and the output.
 * In-place variants (tensor_relu_, tensor_add_) run the same forward kernels with the output
 * pointer equal to the first input; they exist for frozen forward passes, which then need no
 * second buffer per activation, and never record a node. */
#include "tensor/ops/elementwise.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/isa.h"
#include "tensor/kernels_cpu.h"

/* The streaming loops below run in blocks of EW_BLOCK elements, split across the threads, each
 * block through the variant of the chosen instruction-set level (tensor/isa.h). Every element
 * is computed by the same operations at every level, so the results are bit-identical. */
#define EW_BLOCK 8192
static inline int64_t ew_len(int64_t n, int64_t b) { return n - b < EW_BLOCK ? n - b : EW_BLOCK; }

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* Offset into an operand for output linear index `lin`. */
static inline int64_t bc_offset(int64_t lin, const BroadcastGeom *g, const int64_t *stride) {
    int64_t off = 0;
    for (int d = g->ndim - 1; d >= 0; d--) {
        int64_t i = lin % g->shape[d];
        lin /= g->shape[d];
        off += i * stride[d];
    }
    return off;
}

static inline float binary_apply(BinaryOp op, float x, float y) {
    switch (op) {
    case BINARY_ADD: return x + y;
    case BINARY_SUB: return x - y;
    case BINARY_MUL: return x * y;
    case BINARY_DIV: return x / y;
    default: return NAN;
    }
}

static int64_t geom_numel(const BroadcastGeom *g) {
    int64_t n = 1;
    for (int d = 0; d < g->ndim; d++) n *= g->shape[d];
    return n;
}

/* True when the operand is laid out exactly like the output (no broadcasting). */
static bool geom_dense(const BroadcastGeom *g, const int64_t *stride) {
    int64_t s = 1;
    for (int d = g->ndim - 1; d >= 0; d--) {
        if (g->shape[d] != 1 && stride[d] != s) return false;
        s *= g->shape[d];
    }
    return true;
}

/* out[i] = a[i] (op) b[i] for i < n — assigns. One switch per call, not per element, so each
 * case is a loop the compiler vectorises. */
static inline ISA_BODY void binary_dense_body(float *out, const float *a, const float *b,
                                              int64_t n, BinaryOp op) {
    switch (op) {
    case BINARY_ADD: for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i]; break;
    case BINARY_SUB: for (int64_t i = 0; i < n; i++) out[i] = a[i] - b[i]; break;
    case BINARY_MUL: for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i]; break;
    default: for (int64_t i = 0; i < n; i++) out[i] = binary_apply(op, a[i], b[i]); break;
    }
}
ISA_VARIANTS(binary_dense, (float *out, const float *a, const float *b, int64_t n, BinaryOp op),
             (out, a, b, n, op))

void binary_forward_cpu(float *out, const float *a, const float *b, const BroadcastGeom *g,
                        BinaryOp op) {
    /* out (shape), a and b broadcast to shape through their strides — assigns */
    int64_t n = geom_numel(g);
    bool da = geom_dense(g, g->astride), db = geom_dense(g, g->bstride);
    if (da && db) {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i += EW_BLOCK)
            binary_dense(out + i, a + i, b + i, ew_len(n, i), op);
        return;
    }
    /* Common fast case: b is a dense trailing block (its last dims, whole) repeated over the
     * leading dims — a bias row, or CLIP's attention-pool positional embedding (HW+1, C) added
     * to every image of (B, HW+1, C), which the per-element path below took 10 ns a float for.
     * k: the first dim of the block; b's strides are 0 before it and dense from it on. */
    int k = g->ndim;
    for (int64_t dense = 1; k > 0 && g->bstride[k - 1] == dense; k--) dense *= g->shape[k - 1];
    bool repeated = k < g->ndim;
    for (int d = 0; d < k; d++) repeated &= g->bstride[d] == 0;
    const int64_t inner = repeated ? shape_numel(g->ndim - k, g->shape + k) : 0;
    if (da && inner > 0) {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t r = 0; r < n / inner; r++)
            binary_dense(out + r * inner, a + r * inner, b, inner, op);
        return;
    }
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        out[i] = binary_apply(op, a[bc_offset(i, g, g->astride)], b[bc_offset(i, g, g->bstride)]);
}

/* d(out)/d(x) for x the first (is_a) or second operand, times dout. */
static inline float binary_grad(BinaryOp op, bool is_a, float dout, float x, float y) {
    switch (op) {
    case BINARY_ADD: return dout;
    case BINARY_SUB: return is_a ? dout : -dout;
    case BINARY_MUL: return is_a ? dout * y : dout * x;
    case BINARY_DIV: return is_a ? dout / y : -dout * x / (y * y);
    default: return NAN;
    }
}

/* Accumulate the gradient of one operand: for each of its elements (in parallel), sum over the
 * output positions that read it. Operand elements are enumerated over the output dimensions
 * whose stride is non-zero; the remaining (broadcast) dimensions are the reduction. */
static void binary_backward_operand(float *dx, bool is_a, const float *dout, const float *a,
                                    const float *b, const BroadcastGeom *g, BinaryOp op) {
    const int64_t *xs = is_a ? g->astride : g->bstride;
    int64_t n = geom_numel(g);
    if (op != BINARY_DIV && geom_dense(g, g->astride) && geom_dense(g, g->bstride)) {
        /* No broadcasting (the residual adds of a ResNet, most products): element i of every
         * operand is element i of the output, and add/sub/mul need at most the other operand,
         * so the loop is a plain vectorisable stream. */
        const float sign = (op == BINARY_SUB && !is_a) ? -1.0f : 1.0f;
        const float *other = is_a ? b : a;
        if (op == BINARY_MUL) {
#pragma omp parallel for schedule(static) if (n > 32768)
            for (int64_t i = 0; i < n; i++) dx[i] += dout[i] * other[i];
        } else {
#pragma omp parallel for schedule(static) if (n > 32768)
            for (int64_t i = 0; i < n; i++) dx[i] += sign * dout[i];
        }
        return;
    }
    if (geom_dense(g, xs)) {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) {
            float av = a[bc_offset(i, g, g->astride)], bv = b[bc_offset(i, g, g->bstride)];
            dx[i] += binary_grad(op, is_a, dout[i], av, bv);
        }
        return;
    }
    int kd[6], rd[6], nk = 0, nr = 0;
    int64_t nkeep = 1, nred = 1;
    for (int d = 0; d < g->ndim; d++) {
        if (xs[d] != 0 || g->shape[d] == 1) { kd[nk++] = d; nkeep *= g->shape[d]; }
        else { rd[nr++] = d; nred *= g->shape[d]; }
    }
    int64_t ostride[6], s = 1;
    for (int d = g->ndim - 1; d >= 0; d--) { ostride[d] = s; s *= g->shape[d]; }
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t k = 0; k < nkeep; k++) {
        int64_t rem = k, obase = 0, xoff = 0;
        for (int j = nk - 1; j >= 0; j--) {
            int d = kd[j];
            int64_t i = rem % g->shape[d];
            rem /= g->shape[d];
            obase += i * ostride[d];
            xoff += i * xs[d];
        }
        double acc = 0.0;
        for (int64_t r = 0; r < nred; r++) {
            int64_t rr = r, o = obase;
            for (int j = nr - 1; j >= 0; j--) {
                int d = rd[j];
                o += (rr % g->shape[d]) * ostride[d];
                rr /= g->shape[d];
            }
            float av = a[bc_offset(o, g, g->astride)], bv = b[bc_offset(o, g, g->bstride)];
            acc += binary_grad(op, is_a, dout[o], av, bv);
        }
        dx[xoff] += (float)acc;
    }
}

void binary_backward_cpu(float *da, float *db, const float *dout, const float *a, const float *b,
                         const BroadcastGeom *g, BinaryOp op) {
    /* da (a's shape), db (b's shape), dout (shape) — accumulates */
    if (da) binary_backward_operand(da, true, dout, a, b, g, op);
    if (db) binary_backward_operand(db, false, dout, a, b, g, op);
}

/* e^x without a library call per element, so that loops over it vectorise (glibc's expf is a
 * scalar call; QuickGELU's exponentials were 15% of the CLIP text tower's forward + backward).
 * Cephes' expf: x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2, ln2 split in two so that
 * n * (first part) is exact; e^r by a degree-7 polynomial; 2^n built in the exponent bits. The
 * polynomial runs on x clamped to [-87, 88], where 2^n is a normal float; outside, the result
 * is 0 below -87 (e^-87 = 1.6e-38: no denormals) and +inf above 88 (true expf overflows at
 * 88.72), so 1 / (1 + e^x) still goes to exactly 0 and 1. In range the error is about an ulp
 * (QuickGELU as a whole: test elementwise_quick_gelu_accuracy). All selects, no branches. */
static inline float exp_poly(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    const float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f; /* ln2 = 0.693359375 - 2.12194440e-4 */
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } two_n = {.i = ((int32_t)n + 127) << 23};
    float e = y * two_n.f;
    e = x > 88.0f ? INFINITY : e;
    return x < -87.0f ? 0.0f : e;
}

/* QuickGELU's sigmoid(1.702 x), branch-free. */
static inline float quick_gelu_sigmoid(float x) { return 1.0f / (1.0f + exp_poly(-1.702f * x)); }

static inline float sigmoidf_(float x) {
    /* Split by sign so exp never overflows. */
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float unary_apply(UnaryOp op, float x, float alpha, float beta) {
    switch (op) {
    case UNARY_EXP: return expf(x);
    case UNARY_LOG: return logf(x);
    case UNARY_SQRT: return sqrtf(x);
    case UNARY_ABS: return fabsf(x);
    case UNARY_RELU: return x > 0 ? x : 0.0f;
    case UNARY_SIGMOID: return sigmoidf_(x);
    case UNARY_TANH: return tanhf(x);
    case UNARY_GELU: return (float)(0.5 * x * (1.0 + erf(x * M_SQRT1_2)));
    case UNARY_QUICK_GELU: return x * quick_gelu_sigmoid(x);
    case UNARY_POW: return powf(x, alpha);
    case UNARY_CLAMP: return fminf(fmaxf(x, alpha), beta);
    case UNARY_AFFINE: return alpha * x + beta;
    case UNARY_NEG: return -x;
    default: return NAN;
    }
}

/* ReLU (the ResNet's activation) and QuickGELU (the text tower's, through exp_poly): branch-free
 * streams the compiler vectorises. out (n), inp (n) — assigns. */
static inline ISA_BODY void unary_fast_fwd_body(float *out, const float *inp, int64_t n,
                                                UnaryOp op) {
    if (op == UNARY_RELU)
        for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0.0f;
    else
        for (int64_t i = 0; i < n; i++) out[i] = inp[i] * quick_gelu_sigmoid(inp[i]);
}
ISA_VARIANTS(unary_fast_fwd, (float *out, const float *inp, int64_t n, UnaryOp op),
             (out, inp, n, op))

/* Their gradients: dinp (n) (+)= dout (n) * f'(inp (n)) — accumulates, or assigns. QuickGELU: s + 1.702 x s (1 - s), s = sigmoid(1.702 x). */
static inline ISA_BODY void unary_fast_bwd_body(float *dinp, const float *dout, const float *inp,
                                                int64_t n, UnaryOp op, bool accumulate) {
    if (op == UNARY_RELU) {
        if (accumulate)
            for (int64_t i = 0; i < n; i++) dinp[i] += inp[i] > 0 ? dout[i] : 0.0f;
        else
            for (int64_t i = 0; i < n; i++) dinp[i] = inp[i] > 0 ? dout[i] : 0.0f;
    } else if (accumulate) {
        for (int64_t i = 0; i < n; i++) {
            const float x = inp[i], sg = quick_gelu_sigmoid(x);
            dinp[i] += dout[i] * (sg + 1.702f * x * sg * (1.0f - sg));
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            const float x = inp[i], sg = quick_gelu_sigmoid(x);
            dinp[i] = dout[i] * (sg + 1.702f * x * sg * (1.0f - sg));
        }
    }
}
ISA_VARIANTS(unary_fast_bwd, (float *dinp, const float *dout, const float *inp, int64_t n,
                              UnaryOp op, bool accumulate), (dinp, dout, inp, n, op, accumulate))

void unary_forward_cpu(float *out, const float *inp, int64_t n, UnaryOp op, float alpha,
                       float beta) {
    /* out (n), inp (n) — assigns */
    if (op == UNARY_RELU || op == UNARY_QUICK_GELU) {
#pragma omp parallel for schedule(static) if (n > 16384)
        for (int64_t i = 0; i < n; i += EW_BLOCK)
            unary_fast_fwd(out + i, inp + i, ew_len(n, i), op);
        return;
    }
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) out[i] = unary_apply(op, inp[i], alpha, beta);
}

static inline float unary_grad(UnaryOp op, float x, float y, float alpha, float beta) {
    switch (op) {
    case UNARY_EXP: return y;                                   /* d exp(x) = exp(x) */
    case UNARY_LOG: return 1.0f / x;
    case UNARY_SQRT: return 0.5f / y;                           /* d sqrt(x) = 1/(2 sqrt(x)) */
    case UNARY_ABS: return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;  /* sign(x), 0 at 0 as torch */
    case UNARY_RELU: return x > 0 ? 1.0f : 0.0f;
    case UNARY_SIGMOID: return y * (1.0f - y);
    case UNARY_TANH: return 1.0f - y * y;
    case UNARY_GELU: {                                          /* Phi(x) + x phi(x) */
        double cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2));
        double pdf = exp(-0.5 * (double)x * x) * 0.3989422804014327;
        return (float)(cdf + x * pdf);
    }
    case UNARY_QUICK_GELU: {                                    /* s + 1.702 x s (1 - s) */
        float s = quick_gelu_sigmoid(x);
        return s + 1.702f * x * s * (1.0f - s);
    }
    case UNARY_POW:                                             /* p x^(p-1); 0 when p = 0 */
        return alpha == 0.0f ? 0.0f : alpha * powf(x, alpha - 1.0f);
    case UNARY_CLAMP: return (x >= alpha && x <= beta) ? 1.0f : 0.0f;
    case UNARY_AFFINE: return alpha;
    case UNARY_NEG: return -1.0f;
    default: return NAN;
    }
}

void unary_backward_cpu(float *dinp, const float *dout, const float *inp, const float *out,
                        int64_t n, UnaryOp op, float alpha, float beta, bool accumulate) {
    /* dinp (n), dout (n), inp (n), out (n) — accumulates, or assigns */
    if (op == UNARY_RELU || op == UNARY_QUICK_GELU) {
#pragma omp parallel for schedule(static) if (n > 16384)
        for (int64_t i = 0; i < n; i += EW_BLOCK)
            unary_fast_bwd(dinp + i, dout + i, inp + i, ew_len(n, i), op, accumulate);
        return;
    }
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        const float d = dout[i] * unary_grad(op, inp[i], out[i], alpha, beta);
        dinp[i] = accumulate ? dinp[i] + d : d;
    }
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

void broadcast_geom(const char *op, const Tensor *a, const Tensor *b, BroadcastGeom *g) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    memset(g, 0, sizeof *g);
    g->ndim = nd;
    int64_t sa = 1, sb = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int ia = d - (nd - a->ndim), ib = d - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        CHECK(da == db || da == 1 || db == 1, "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
              op, tensor_shape_str(a), tensor_shape_str(b), d, (long long)da, (long long)db);
        g->shape[d] = da > db ? da : db;
        if (da == 1 && db == 0) g->shape[d] = 0;
        if (db == 1 && da == 0) g->shape[d] = 0;
        g->astride[d] = da == 1 ? 0 : sa;
        g->bstride[d] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
}

static const char *binary_name[BINARY_COUNT] = {"add", "sub", "mul", "div"};

/* The gradient of an operand x of out = a + b without broadcasting: dx = dout, element for
 * element. An intermediate x (made by a recorded op) with no gradient yet takes dout's buffer
 * as its own, as reshape's backward does (out's gradient is complete when this node runs and is
 * read by no later one) — but only one operand may (*handed): two tensors must never share a
 * buffer they both accumulate into. A new buffer gets a copy; one with values accumulates. */
static void add_pass_gradient(Tensor *x, Tensor *dout, bool *handed) {
    if (!ag_needs(x)) return;
    if (!x->grad && x->node && !*handed) {
        x->grad = tensor_wrap(DT_F32, x->device, x->ndim, x->shape, dout->data);
        *handed = true;
        return;
    }
    bool fresh;
    float *dx = ag_grad_fresh(x, &fresh)->data;
    if (fresh)
        device_table(x->device)->copy_d2d(dx, dout->data, (size_t)x->numel * sizeof(float));
    else /* dx may be dout itself (x + x after the hand-over): out[i] += in[i] is still right */
        KERNEL_RUN(x->device, accumulate, dx, dout->data, x->numel);
}

static void binary_backward(Node *n) {
    Tensor *a = n->in[0], *b = n->in[1];
    BinaryOp op = (BinaryOp)n->iarg[0];
    BroadcastGeom *g = n->extra;
    if (op == BINARY_ADD && tensor_same_shape(a, n->out) && tensor_same_shape(b, n->out)) {
        bool handed = false;
        add_pass_gradient(a, n->out->grad, &handed);
        add_pass_gradient(b, n->out->grad, &handed);
        return;
    }
    float *da = ag_needs(a) ? ag_grad(a)->data : NULL;
    float *db = ag_needs(b) ? ag_grad(b)->data : NULL;
    KERNEL_RUN(n->out->device, binary_backward, da, db, n->out->grad->data, a->data, b->data, g, op);
}

static Tensor *binary(BinaryOp op, Tensor *a, Tensor *b) {
    const char *name = binary_name[op];
    tensor_check_f32(name, a, "a");
    tensor_check_f32(name, b, "b");
    tensor_check_same_device(name, a, b);
    BroadcastGeom geom;
    broadcast_geom(name, a, b, &geom);
    Tensor *out = tensor_empty(DT_F32, geom.ndim, geom.shape);
    KERNEL_RUN(a->device, binary_forward, out->data, a->data, b->data, &geom, op);
    Node *n = AG_RECORD(name, out, binary_backward, a, b);
    if (n) {
        n->iarg[0] = op;
        n->extra = arena_alloc_host(tensor_arena(), sizeof geom);
        memcpy(n->extra, &geom, sizeof geom);
    }
    return out;
}

Tensor *tensor_add(Tensor *a, Tensor *b) { return binary(BINARY_ADD, a, b); }
Tensor *tensor_sub(Tensor *a, Tensor *b) { return binary(BINARY_SUB, a, b); }
Tensor *tensor_mul(Tensor *a, Tensor *b) { return binary(BINARY_MUL, a, b); }
Tensor *tensor_div(Tensor *a, Tensor *b) { return binary(BINARY_DIV, a, b); }

static const char *unary_name[UNARY_COUNT] = {
    "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "gelu", "quick_gelu", "pow", "clamp",
    "affine", "neg"};

static void unary_backward(Node *n) {
    Tensor *x = n->in[0];
    /* A new gradient buffer is assigned, not zeroed and accumulated into. (Not computed in
     * place over dout: the vectorised loops assume dinp and dout apart and fall back to their
     * scalar versions when they alias — measured 2x slower for QuickGELU.) */
    bool fresh;
    float *dx = ag_grad_fresh(x, &fresh)->data;
    KERNEL_RUN(x->device, unary_backward, dx, n->out->grad->data, x->data, n->out->data, x->numel,
               (UnaryOp)n->iarg[0], (float)n->farg[0], (float)n->farg[1], !fresh);
}

static Tensor *unary(UnaryOp op, Tensor *x, float alpha, float beta) {
    tensor_check_f32(unary_name[op], x, "x");
    Tensor *out = tensor_empty(DT_F32, x->ndim, x->shape);
    KERNEL_RUN(x->device, unary_forward, out->data, x->data, x->numel, op, alpha, beta);
    Node *n = AG_RECORD(unary_name[op], out, unary_backward, x);
    if (n) {
        n->iarg[0] = op;
        n->farg[0] = alpha;
        n->farg[1] = beta;
    }
    return out;
}

Tensor *tensor_add_scalar(Tensor *x, float s) { return unary(UNARY_AFFINE, x, 1.0f, s); }
Tensor *tensor_mul_scalar(Tensor *x, float s) { return unary(UNARY_AFFINE, x, s, 0.0f); }
Tensor *tensor_affine(Tensor *x, float alpha, float beta) { return unary(UNARY_AFFINE, x, alpha, beta); }
Tensor *tensor_neg(Tensor *x) { return unary(UNARY_NEG, x, 0, 0); }
Tensor *tensor_pow(Tensor *x, float p) { return unary(UNARY_POW, x, p, 0); }
Tensor *tensor_clamp(Tensor *x, float lo, float hi) {
    CHECK(!(lo > hi), "clamp: lo %g > hi %g", lo, hi);
    return unary(UNARY_CLAMP, x, lo, hi);
}
Tensor *tensor_exp(Tensor *x) { return unary(UNARY_EXP, x, 0, 0); }
Tensor *tensor_log(Tensor *x) { return unary(UNARY_LOG, x, 0, 0); }
Tensor *tensor_sqrt(Tensor *x) { return unary(UNARY_SQRT, x, 0, 0); }
Tensor *tensor_abs(Tensor *x) { return unary(UNARY_ABS, x, 0, 0); }
Tensor *tensor_relu(Tensor *x) { return unary(UNARY_RELU, x, 0, 0); }
Tensor *tensor_sigmoid(Tensor *x) { return unary(UNARY_SIGMOID, x, 0, 0); }
Tensor *tensor_tanh(Tensor *x) { return unary(UNARY_TANH, x, 0, 0); }
Tensor *tensor_gelu(Tensor *x) { return unary(UNARY_GELU, x, 0, 0); }
Tensor *tensor_quick_gelu(Tensor *x) { return unary(UNARY_QUICK_GELU, x, 0, 0); }

/* ---- In-place variants (no grad) ---------------------------------------------------------- */

/* An in-place write destroys the value a backward rule would read, so it is allowed only where
 * no rule can ever see this tensor: no tape is being recorded, and the tensor is not part of a
 * recorded graph (it would require a gradient if it were). */
static void check_inplace(const char *op, const Tensor *x) {
    CHECK(!ag_grad_enabled(), "%s: in-place op while grad mode is on (x %s); use the out-of-place "
          "op, or turn grad mode off for a frozen forward pass", op, tensor_shape_str(x));
    CHECK(!x->requires_grad, "%s: in-place op on a tensor that requires a gradient (x %s)", op,
          tensor_shape_str(x));
}

Tensor *tensor_relu_(Tensor *x) {
    tensor_check_f32("relu_", x, "x");
    check_inplace("relu_", x);
    KERNEL_RUN(x->device, unary_forward, x->data, x->data, x->numel, UNARY_RELU, 0, 0);
    return x;
}

Tensor *tensor_add_(Tensor *a, Tensor *b) {
    tensor_check_f32("add_", a, "a");
    tensor_check_f32("add_", b, "b");
    tensor_check_same_device("add_", a, b);
    check_inplace("add_", a);
    BroadcastGeom geom;
    broadcast_geom("add_", a, b, &geom);
    /* The output is a, so the broadcast shape must be a's own: then a's strides in the output's
     * index space are the output's, and element i of a is read only to write element i. */
    bool same = geom.ndim == a->ndim;
    for (int d = 0; same && d < a->ndim; d++) same = geom.shape[d] == a->shape[d];
    CHECK(same, "add_: b %s does not broadcast to a's shape %s (a is the output)",
          tensor_shape_str(b), tensor_shape_str(a));
    /* b is read at broadcast positions while a is written: they must not share memory, except
     * for b being exactly a (x += x reads each element before writing it). */
    const char *pa = a->data, *pb = b->data;
    const size_t na = (size_t)a->numel * sizeof(float), nb = (size_t)b->numel * sizeof(float);
    CHECK((pa == pb && na == nb) || pb + nb <= pa || pa + na <= pb,
          "add_: b %s overlaps a %s in memory", tensor_shape_str(b), tensor_shape_str(a));
    KERNEL_RUN(a->device, binary_forward, a->data, a->data, b->data, &geom, BINARY_ADD);
    return a;
}
