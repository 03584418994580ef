/* matmul.c — matrix products on top of the core gemm kernel: matmul (optionally transposed,
 * batched, or with a right operand shared across the batch) and linear (x W^T + b).
 *
 * Math, per batch matrix p, with op(X) = X or X^T:
 *     C_p (M,N) = op(A_p) (M,K) @ op(B_p) (K,N)
 *     d op(A_p) = dC_p @ op(B_p)^T          d op(B_p) = op(A_p)^T @ dC_p
 * When a is stored transposed the gradient of the stored matrix is the transpose of d op(A), i.e.
 * dA_p = op(B_p) @ dC_p^T (K,M); likewise dB_p = dC_p^T @ op(A_p) (N,K) when b is stored
 * transposed. A 2-D b is shared by every matrix of a (gemm batch stride 0) and its gradient is
 * the sum over the batch. Every gradient is accumulated by gemm with beta = 1 straight into the
 * gradient buffer; the transposes are gemm flags, never copies (derivation: docs/ops/matmul.md).
 * Linear: y (R,OUT) = x (R,IN) @ W^T + b over all R leading rows of x, with W stored (OUT,IN):
 *     dx = dy @ W      dW = dy^T @ x      db = column sums of dy.
 * Shapes: PyTorch order, contiguous row-major. Saved for backward: the inputs only. */
#include "tensor/ops/matmul.h"

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/ops/gemm_f32.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

void linear_forward_cpu(float *y, const float *x, const float *w, const float *bias,
                        int64_t rows, int64_t in, int64_t out, void *scratch) {
    /* y (rows,OUT), x (rows,IN), w (OUT,IN), bias (OUT) or NULL — assigns */
    if (scratch) { /* the own GEMM (avx512 level): y written once, with its bias */
        const GemmEpilogue ep = {.row_bias = NULL, .col_bias = bias, .relu = false};
        gemm_f32_batched_cpu(y, x, w, 1, rows, out, in, false, true, 1.0f, 0.0f, in, in, out, 0,
                             0, 0, scratch, &ep);
        return;
    }
    if (bias) {
#pragma omp parallel for schedule(static) if (rows * out > 32768)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < out; j++) y[r * out + j] = bias[j];
    }
    gemm_cpu(y, x, w, 1, rows, out, in, false, true, 1.0f, bias ? 1.0f : 0.0f, in, in, out, 0, 0,
             0);
}

size_t linear_forward_scratch_bytes(DeviceKind dev, int64_t rows, int64_t in, int64_t out) {
    if (!device_runs_cpu_kernels(dev) || !gemm_f32_available() || rows * out == 0) return 0;
    return gemm_f32_batched_scratch_bytes(1, false, rows, out, in);
}

void linear_bias_backward_cpu(float *dbias, const float *dout, int64_t rows, int64_t n) {
    /* dbias (N), dout (rows,N) — accumulates */
    /* Each thread owns a block of columns and walks every row: reads stay contiguous, no two
     * threads write the same dbias entry, and the result does not depend on the thread count.
     * Double accumulators keep sums over many rows (B*T tokens) accurate. */
    enum { BLOCK = 64 };
    int64_t nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (rows * n > 32768)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t j0 = blk * BLOCK, j1 = j0 + BLOCK < n ? j0 + BLOCK : n;
        double acc[BLOCK] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *row = dout + r * n;
            for (int64_t j = j0; j < j1; j++) acc[j - j0] += row[j];
        }
        for (int64_t j = j0; j < j1; j++) dbias[j] += (float)acc[j - j0];
    }
}

/* ---- matmul ------------------------------------------------------------------------------- */

/* Node iarg layout for matmul. */
enum { MM_BATCH, MM_M, MM_N, MM_K, MM_TA, MM_TB, MM_SHARED };

/* One gemm call through the device table; the argument order is the kernel's. */
static void gemm_call(DeviceKind dev, float *c, const float *a, const float *b, int64_t batch,
                      int64_t m, int64_t n, int64_t k, bool ta, bool tb, float beta, int64_t lda,
                      int64_t ldb, int64_t ldc, int64_t sa, int64_t sb, int64_t sc) {
    KERNEL_RUN(dev, gemm, c, a, b, batch, m, n, k, ta, tb, 1.0f, beta, lda, ldb, ldc, sa, sb, sc);
}

static void matmul_backward(Node *nd) {
    Tensor *a = nd->in[0], *b = nd->in[1];
    DeviceKind dev = nd->out->device;
    int64_t batch = nd->iarg[MM_BATCH], m = nd->iarg[MM_M], n = nd->iarg[MM_N], k = nd->iarg[MM_K];
    bool ta = nd->iarg[MM_TA], tb = nd->iarg[MM_TB], shared = nd->iarg[MM_SHARED];
    const float *A = a->data, *B = b->data, *dC = nd->out->grad->data;
    int64_t lda = ta ? m : k, ldb = tb ? k : n; /* row strides of a and b as stored */
    int64_t sb = shared ? 0 : k * n;
    /* With b shared and a not transposed, the batch of a is one tall (batch*M, K) matrix: the
     * products fold into single gemms and dB's batch sum becomes part of the K-long sum. */
    bool fold = shared && !ta;

    if (ag_needs(a)) {
        float *dA = ag_grad(a)->data;
        if (!ta) /* dA (M,K) = dC (M,N) @ op(B)^T */
            gemm_call(dev, dA, dC, B, fold ? 1 : batch, fold ? batch * m : m, k, n, false, !tb,
                      1.0f, n, ldb, k, m * n, sb, m * k);
        else     /* dA stored (K,M) = op(B) (K,N) @ dC^T */
            gemm_call(dev, dA, B, dC, batch, k, m, n, tb, true, 1.0f, ldb, n, m, sb, m * n, m * k);
    }
    if (ag_needs(b)) {
        float *dB = ag_grad(b)->data;
        /* !tb: dB (K,N) = op(A)^T (K,M) @ dC (M,N);  tb: dB stored (N,K) = dC^T (N,M) @ op(A) */
        const float *x = tb ? dC : A, *y = tb ? A : dC;
        bool tx = tb ? true : !ta, ty = tb ? ta : false;
        int64_t ldx = tb ? n : lda, ldy = tb ? lda : n, sx = tb ? m * n : m * k,
                sy = tb ? m * k : m * n;
        int64_t rows = tb ? n : k, cols = tb ? k : n;
        if (fold) {
            gemm_call(dev, dB, x, y, 1, rows, cols, batch * m, tx, ty, 1.0f, ldx, ldy, cols, 0, 0,
                      0);
        } else if (shared) {
            /* a stored transposed: the batch cannot fold into K. One accumulating gemm per batch
             * matrix, in order (a batched gemm with C stride 0 would race on dB). */
            for (int64_t p = 0; p < batch; p++)
                gemm_call(dev, dB, x + p * sx, y + p * sy, 1, rows, cols, m, tx, ty, 1.0f, ldx,
                          ldy, cols, 0, 0, 0);
        } else {
            gemm_call(dev, dB, x, y, batch, rows, cols, m, tx, ty, 1.0f, ldx, ldy, cols, sx, sy,
                      k * n);
        }
    }
}

Tensor *tensor_matmul_t(Tensor *a, Tensor *b, bool trans_a, bool trans_b) {
    const char *op = "matmul";
    tensor_check_f32(op, a, "a");
    tensor_check_f32(op, b, "b");
    tensor_check_same_device(op, a, b);
    CHECK(a->ndim >= 2 && b->ndim >= 2, "%s: operands need at least 2 dims, got a %s and b %s", op,
          tensor_shape_str(a), tensor_shape_str(b));
    int na = a->ndim, nb = b->ndim;
    /* Stored a is (..., M, K), or (..., K, M) when transposed; b (K, N) or (N, K) likewise. */
    int64_t m = trans_a ? a->shape[na - 1] : a->shape[na - 2];
    int64_t k = trans_a ? a->shape[na - 2] : a->shape[na - 1];
    int64_t kb = trans_b ? b->shape[nb - 1] : b->shape[nb - 2];
    int64_t n = trans_b ? b->shape[nb - 2] : b->shape[nb - 1];
    CHECK(k == kb, "%s: inner dimensions differ: a %s%s and b %s%s give K = %lld vs %lld", op,
          tensor_shape_str(a), trans_a ? "^T" : "", tensor_shape_str(b), trans_b ? "^T" : "",
          (long long)k, (long long)kb);
    bool shared = nb == 2;
    if (!shared) {
        bool same = na == nb;
        for (int d = 0; same && d < na - 2; d++) same = a->shape[d] == b->shape[d];
        CHECK(same, "%s: batch dimensions of a %s and b %s differ (b must have a's batch dims or "
              "be 2-D)", op, tensor_shape_str(a), tensor_shape_str(b));
    }
    int64_t batch = shape_numel(na - 2, a->shape);
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < na - 2; d++) shape[d] = a->shape[d];
    shape[na - 2] = m;
    shape[na - 1] = n;
    Tensor *out = tensor_empty(DT_F32, na, shape);

    int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
    if (shared && !trans_a) /* the batch of a is one tall (batch*M, K) matrix */
        gemm_call(a->device, out->data, a->data, b->data, 1, batch * m, n, k, false, trans_b, 0.0f,
                  lda, ldb, n, 0, 0, 0);
    else
        gemm_call(a->device, out->data, a->data, b->data, batch, m, n, k, trans_a, trans_b, 0.0f,
                  lda, ldb, n, m * k, shared ? 0 : k * n, m * n);

    Node *nd = AG_RECORD(op, out, matmul_backward, a, b);
    if (nd) {
        nd->iarg[MM_BATCH] = batch;
        nd->iarg[MM_M] = m;
        nd->iarg[MM_N] = n;
        nd->iarg[MM_K] = k;
        nd->iarg[MM_TA] = trans_a;
        nd->iarg[MM_TB] = trans_b;
        nd->iarg[MM_SHARED] = shared;
    }
    return out;
}

Tensor *tensor_matmul(Tensor *a, Tensor *b) { return tensor_matmul_t(a, b, false, false); }

/* ---- linear ------------------------------------------------------------------------------- */

/* Node iarg layout for linear. */
enum { LIN_ROWS, LIN_IN, LIN_OUT };

static void linear_backward(Node *nd) {
    Tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->in[2];
    DeviceKind dev = nd->out->device;
    int64_t rows = nd->iarg[LIN_ROWS], in = nd->iarg[LIN_IN], out = nd->iarg[LIN_OUT];
    const float *dy = nd->out->grad->data;
    if (ag_needs(x)) { /* y = x W^T: dx (R,IN) = dy (R,OUT) @ W (OUT,IN), assigned when new */
        const uint64_t prof = prof_layer_begin(dev);
        bool fresh;
        float *dx = ag_grad_fresh(x, &fresh)->data;
        gemm_call(dev, dx, dy, w->data, 1, rows, in, out, false, false, fresh ? 0.0f : 1.0f, out,
                  in, in, 0, 0, 0);
        if (prof) {
            char label[80];
            snprintf(label, sizeof label, "linear %lld->%lld dx", (long long)in, (long long)out);
            prof_layer_end(dev, prof, label, 2.0 * (double)rows * (double)in * (double)out);
        }
    }
    if (ag_needs(w)) /* dW (OUT,IN) = dy^T (OUT,R) @ x (R,IN) */
        gemm_call(dev, ag_grad(w)->data, dy, x->data, 1, out, in, rows, true, false, 1.0f, out,
                  in, in, 0, 0, 0);
    if (ag_needs(bias)) /* y = ... + b on every row: db = sum over rows of dy */
        KERNEL_RUN(dev, linear_bias_backward, ag_grad(bias)->data, dy, rows, out);
}

Tensor *tensor_linear(Tensor *x, Tensor *weight, Tensor *bias) {
    const char *op = "linear";
    tensor_check_f32(op, x, "x");
    tensor_check_f32(op, weight, "weight");
    tensor_check_same_device(op, x, weight);
    CHECK(x->ndim >= 1 && weight->ndim == 2 && weight->shape[1] == x->shape[x->ndim - 1],
          "%s: x %s needs a last dim equal to weight %s's second dim (weight is (OUT, IN))", op,
          tensor_shape_str(x), tensor_shape_str(weight));
    int64_t in = weight->shape[1], nout = weight->shape[0];
    if (bias) {
        tensor_check_f32(op, bias, "bias");
        tensor_check_same_device(op, x, bias);
        CHECK(bias->ndim == 1 && bias->shape[0] == nout, "%s: bias %s must be (%lld) for weight %s",
              op, tensor_shape_str(bias), (long long)nout, tensor_shape_str(weight));
    }
    int64_t rows = shape_numel(x->ndim - 1, x->shape);
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = nout;
    Tensor *y = tensor_empty(DT_F32, x->ndim, shape);
    const uint64_t prof = prof_layer_begin(x->device);
    const bool bf16 = tensor_bf16_forward(weight);

    if (bf16) {
        /* A frozen weight under PRECISION_BF16: the same product, x and W rounded to bf16
         * (tensor/ops/gemm_bf16.h), the bias added as the GEMM stores y (its epilogue); the
         * backward below stays fp32. */
        Arena *a = tensor_arena();
        size_t mark = arena_mark(a);
        void *scratch = arena_alloc(a, gemm_bf16_scratch_bytes(rows, nout, in));
        const GemmEpilogue ep = {.row_bias = NULL, .col_bias = bias ? bias->data : NULL,
                                     .relu = false};
        gemm_bf16_cpu(y->data, x->data, weight->data, rows, nout, in, false, true, 1.0f, 0.0f, in,
                      in, nout, scratch, &ep);
        arena_release(a, mark);
    } else {
        /* At the avx512 level on the CPU the own GEMM adds the bias as it stores y (y written
         * once); otherwise y starts as the bias and gemm accumulates x W^T onto it. */
        Arena *a = tensor_arena();
        size_t mark = arena_mark(a);
        const size_t bytes = linear_forward_scratch_bytes(x->device, rows, in, nout);
        void *scratch = bytes ? arena_alloc(a, bytes) : NULL;
        KERNEL_RUN(x->device, linear_forward, y->data, x->data, weight->data,
                   bias ? bias->data : NULL, rows, in, nout, scratch);
        arena_release(a, mark);
    }

    if (prof) { /* the layer profile (bias included in the time) */
        char label[80];
        snprintf(label, sizeof label, "linear %lld->%lld%s", (long long)in, (long long)nout,
                 bf16 ? " bf16" : "");
        prof_layer_end(x->device, prof, label, 2.0 * (double)rows * (double)in * (double)nout);
    }
    Node *nd = AG_RECORD(op, y, linear_backward, x, weight, bias);
    if (nd) {
        nd->iarg[LIN_ROWS] = rows;
        nd->iarg[LIN_IN] = in;
        nd->iarg[LIN_OUT] = nout;
    }
    return y;
}
