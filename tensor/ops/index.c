/* index.c — index ops: CPU kernels, wrappers and backward rules.
 *
 * embedding:   out[i, :] = weight[ids[i], :]           dweight[ids[i], :] += dout[i, :]
 *              (ids flattened; out has ids' shape plus D). A gather forward, a scatter-add
 *              backward: an id that occurs m times receives the sum of m rows of dout.
 * gather_rows: out[b, :] = x[b, idx[b], :]              dx[b, idx[b], :] += dout[b, :]
 * write_rows:  out = base with rows [start, start+K) of every n replaced by src[n] or by the
 *              shared src[0]. Each output element comes from exactly one input element, so
 *                  dsrc[s, k, :] += sum over the n reading src[s] of dout[n, start+k, :]
 *                  dbase[n, t, :] += dout[n, t, :]  for t outside [start, start+K)
 *              (the overwritten rows of base do not reach the output: their gradient is 0).
 * topk:        per row, the k largest values in descending order with their indices; ties go to
 *              the lower index, NaN ranks above every number. Not differentiated.
 * Saved for backward: the index tensors (ids, idx), by reference; write_rows saves nothing. */
#include "tensor/ops/index.h"

#include <math.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

void embedding_forward_cpu(float *out, const float *weight, const int64_t *ids, int64_t n,
                           int64_t D) {
    /* out (n,D), weight (V,D), ids (n) — assigns */
#pragma omp parallel for schedule(static) if (n * D > 32768)
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * D, weight + ids[i] * D, (size_t)D * sizeof(float));
}

void embedding_backward_cpu(float *dweight, const float *dout, const int64_t *ids, int64_t n,
                            int64_t D) {
    /* dweight (V,D), dout (n,D), ids (n) — accumulates */
    /* Repeated ids make rows of dweight collide, so threads split the D columns, not the ids;
     * each element then sums its contributions in id order, the same for any thread count. */
    enum { COLS = 64 };
    int64_t nblocks = (D + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) if (n * D > 32768)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t c0 = blk * COLS, c1 = c0 + COLS < D ? c0 + COLS : D;
        for (int64_t i = 0; i < n; i++) {
            float *dw = dweight + ids[i] * D;
            const float *g = dout + i * D;
            for (int64_t c = c0; c < c1; c++) dw[c] += g[c];
        }
    }
}

void gather_rows_forward_cpu(float *out, const float *inp, const int64_t *idx, int64_t B,
                             int64_t T, int64_t D) {
    /* out (B,D), inp (B,T,D), idx (B) — assigns */
    for (int64_t b = 0; b < B; b++)
        memcpy(out + b * D, inp + (b * T + idx[b]) * D, (size_t)D * sizeof(float));
}

void gather_rows_backward_cpu(float *dinp, const float *dout, const int64_t *idx, int64_t B,
                              int64_t T, int64_t D) {
    /* dinp (B,T,D), dout (B,D), idx (B) — accumulates */
    for (int64_t b = 0; b < B; b++) {
        float *dx = dinp + (b * T + idx[b]) * D;
        const float *g = dout + b * D;
        for (int64_t d = 0; d < D; d++) dx[d] += g[d];
    }
}

void write_rows_forward_cpu(float *out, const float *base, const float *src, int64_t N,
                           int64_t T, int64_t D, int64_t K, int64_t start, bool shared) {
    /* out (N,T,D), base (N,T,D), src (N,K,D), or (1,K,D) when shared — assigns */
#pragma omp parallel for schedule(static) if (N * T * D > 32768)
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * T * D;
        const float *s = src + (shared ? 0 : n) * K * D;
        memcpy(o, base + n * T * D, (size_t)(start * D) * sizeof(float));
        memcpy(o + start * D, s, (size_t)(K * D) * sizeof(float));
        int64_t after = start + K;
        memcpy(o + after * D, base + (n * T + after) * D, (size_t)((T - after) * D) * sizeof(float));
    }
}

void write_rows_backward_cpu(float *dbase, float *dsrc, const float *dout, int64_t N, int64_t T,
                             int64_t D, int64_t K, int64_t start, bool shared) {
    /* dbase (N,T,D) or NULL, dsrc (N,K,D), or (1,K,D) when shared, or NULL, dout (N,T,D)
     * — accumulates */
    int64_t KD = K * D;
    if (dbase) {
        /* Rows [start, start+K) were overwritten in the forward: no gradient reaches them. */
#pragma omp parallel for schedule(static) if (N * T * D > 32768)
        for (int64_t n = 0; n < N; n++)
            for (int64_t t = 0; t < T; t++) {
                if (t >= start && t < start + K) continue;
                float *db = dbase + (n * T + t) * D;
                const float *g = dout + (n * T + t) * D;
                for (int64_t d = 0; d < D; d++) db[d] += g[d];
            }
    }
    if (dsrc && !shared) {
#pragma omp parallel for schedule(static) if (N * KD > 32768)
        for (int64_t n = 0; n < N; n++) {
            float *ds = dsrc + n * KD;
            const float *g = dout + (n * T + start) * D;
            for (int64_t j = 0; j < KD; j++) ds[j] += g[j];
        }
    } else if (dsrc) {
        /* Shared src: every n read the same rows, so their gradients sum (in double, in n
         * order, independent of the thread count). */
#pragma omp parallel for schedule(static) if (N * KD > 32768)
        for (int64_t j = 0; j < KD; j++) {
            double acc = 0.0;
            for (int64_t n = 0; n < N; n++) acc += dout[(n * T + start) * D + j];
            dsrc[j] += (float)acc;
        }
    }
}

/* True when (a at index ia) ranks before (b at index ib): larger value first, NaN above every
 * number, and equal values (or two NaNs) in index order. */
static inline bool topk_before(float a, int64_t ia, float b, int64_t ib) {
    bool na = isnan(a), nb = isnan(b);
    if (na || nb) return na && (!nb || ia < ib);
    return a > b || (a == b && ia < ib);
}

void topk_forward_cpu(float *values, int64_t *indices, const float *inp, int64_t rows, int64_t L,
                      int64_t k) {
    /* values (rows,k), indices (rows,k), inp (rows,L) — assigns */
#pragma omp parallel for schedule(static) if (rows * L > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = inp + r * L;
        float *v = values + r * k;
        int64_t *ix = indices + r * k, cnt = 0;
        /* Insertion into the sorted prefix v[0..cnt): O(L*k), fine for the small k of label
         * ranking. Scanning j upwards means a later equal value never moves ahead of an
         * earlier one, which is the tie rule. */
        for (int64_t j = 0; j < L; j++) {
            if (cnt == k && !topk_before(x[j], j, v[k - 1], ix[k - 1])) continue;
            int64_t pos = cnt < k ? cnt++ : k - 1;
            while (pos > 0 && topk_before(x[j], j, v[pos - 1], ix[pos - 1])) {
                v[pos] = v[pos - 1];
                ix[pos] = ix[pos - 1];
                pos--;
            }
            v[pos] = x[j];
            ix[pos] = j;
        }
    }
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

static void check_index_tensor(const char *op, const Tensor *t, const char *argname,
                               const Tensor *data) {
    CHECK(t != NULL, "%s: argument '%s' is NULL", op, argname);
    CHECK(t->dtype == DT_I64, "%s: argument '%s' must be int64, got %s %s", op, argname,
          dtype_name(t->dtype), tensor_shape_str(t));
    tensor_check_same_device(op, data, t);
}

/* CHECK every index in [0, limit). The indices are read in place, so this runs where they are
 * host memory (the CPU backend); a device backend checks inside its kernel. */
static void check_index_range(const char *op, const Tensor *idx, int64_t limit,
                              const char *bound, const Tensor *data) {
    if (!device_host_addressable(idx->device)) return;
    const int64_t *p = idx->data;
    for (int64_t i = 0; i < idx->numel; i++)
        CHECK(p[i] >= 0 && p[i] < limit,
              "%s: index %lld at flat position %lld of %s is outside [0, %s = %lld) for %s", op,
              (long long)p[i], (long long)i, tensor_shape_str(idx), bound, (long long)limit,
              tensor_shape_str(data));
}

static void embedding_backward(Node *n) {
    Tensor *weight = n->in[0], *ids = n->saved[0];
    KERNEL_RUN(weight->device, embedding_backward, ag_grad(weight)->data, n->out->grad->data,
                                                    ids->data, ids->numel, weight->shape[1]);
}

Tensor *tensor_embedding(Tensor *weight, Tensor *ids) {
    tensor_check_f32("embedding", weight, "weight");
    check_index_tensor("embedding", ids, "ids", weight);
    CHECK(weight->ndim == 2, "embedding: weight must be (V,D), got %s", tensor_shape_str(weight));
    CHECK(ids->ndim < TENSOR_MAX_DIMS, "embedding: ids %s leave no room for the D dimension",
          tensor_shape_str(ids));
    int64_t V = weight->shape[0], D = weight->shape[1];
    check_index_range("embedding", ids, V, "V", weight);
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, ids->shape, (size_t)ids->ndim * sizeof(int64_t));
    shape[ids->ndim] = D;
    Tensor *out = tensor_empty(DT_F32, ids->ndim + 1, shape);
    KERNEL_RUN(weight->device, embedding_forward, out->data, weight->data, ids->data, ids->numel, D);
    Node *n = AG_RECORD("embedding", out, embedding_backward, weight);
    if (n) n->saved[0] = ids;
    return out;
}

static void gather_rows_backward(Node *n) {
    Tensor *x = n->in[0], *idx = n->saved[0];
    KERNEL_RUN(x->device, gather_rows_backward, ag_grad(x)->data, n->out->grad->data, idx->data,
                                                 x->shape[0], x->shape[1], x->shape[2]);
}

Tensor *tensor_gather_rows(Tensor *x, Tensor *idx) {
    tensor_check_f32("gather_rows", x, "x");
    check_index_tensor("gather_rows", idx, "idx", x);
    CHECK(x->ndim == 3 && idx->ndim == 1 && idx->shape[0] == x->shape[0],
          "gather_rows: x must be (B,T,D) and idx (B), got x %s idx %s", tensor_shape_str(x),
          tensor_shape_str(idx));
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2];
    check_index_range("gather_rows", idx, T, "T", x);
    Tensor *out = tensor_empty(DT_F32, 2, SHAPE(B, D));
    KERNEL_RUN(x->device, gather_rows_forward, out->data, x->data, idx->data, B, T, D);
    Node *n = AG_RECORD("gather_rows", out, gather_rows_backward, x);
    if (n) n->saved[0] = idx;
    return out;
}

/* Node iarg: [0] start. */
static void write_rows_backward(Node *n) {
    Tensor *base = n->in[0], *src = n->in[1];
    float *dbase = ag_needs(base) ? ag_grad(base)->data : NULL;
    float *dsrc = ag_needs(src) ? ag_grad(src)->data : NULL;
    KERNEL_RUN(base->device, write_rows_backward, dbase, dsrc, n->out->grad->data,
                                                   base->shape[0], base->shape[1], base->shape[2],
                                                   src->shape[1], n->iarg[0],
                                                   src->shape[0] != base->shape[0]);
}

Tensor *tensor_write_rows(Tensor *base, Tensor *src, int64_t start) {
    tensor_check_f32("write_rows", base, "base");
    tensor_check_f32("write_rows", src, "src");
    tensor_check_same_device("write_rows", base, src);
    CHECK(base->ndim == 3 && src->ndim == 3 && src->shape[2] == base->shape[2] &&
              (src->shape[0] == base->shape[0] || src->shape[0] == 1),
          "write_rows: base must be (N,T,D) and src (N,K,D) or (1,K,D), got base %s src %s",
          tensor_shape_str(base), tensor_shape_str(src));
    int64_t N = base->shape[0], T = base->shape[1], D = base->shape[2];
    int64_t K = src->shape[1];
    /* src (1,K,D) with N > 1 is shared; with N == 1 both readings are the same. */
    bool shared = src->shape[0] != N;
    CHECK(K >= 1 && start >= 0 && start + K <= T,
          "write_rows: rows [%lld, %lld) of src %s do not fit in T = %lld of base %s",
          (long long)start, (long long)(start + K), tensor_shape_str(src), (long long)T,
          tensor_shape_str(base));
    Tensor *out = tensor_empty(DT_F32, 3, base->shape);
    KERNEL_RUN(base->device, write_rows_forward, out->data, base->data, src->data, N, T, D, K,
                                                  start, shared);
    Node *n = AG_RECORD("write_rows", out, write_rows_backward, base, src);
    if (n) n->iarg[0] = start;
    return out;
}

void tensor_topk(Tensor *x, int64_t k, Tensor **values, Tensor **indices) {
    tensor_check_f32("topk", x, "x");
    CHECK(values != NULL && indices != NULL, "topk: values and indices must be non-NULL");
    CHECK(x->ndim >= 1, "topk: x must have a last dimension, got %s", tensor_shape_str(x));
    int64_t L = x->shape[x->ndim - 1];
    CHECK(k >= 1 && k <= L, "topk: k = %lld outside [1, %lld] for x %s", (long long)k,
          (long long)L, tensor_shape_str(x));
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = k;
    *values = tensor_empty(DT_F32, x->ndim, shape);
    *indices = tensor_empty(DT_I64, x->ndim, shape);
    KERNEL_RUN(x->device, topk_forward, (*values)->data, (*indices)->data, x->data, x->numel / L,
                                         L, k);
}
