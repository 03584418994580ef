/* norm.c — LayerNorm, L2 normalisation and the cosine-similarity matrix: CPU kernels, wrappers
 * and backward rules. Derivations in docs/ops/norm.md.
 *
 * LayerNorm over the last dim C of x viewed as (N,C):
 *     mean = sum_j x_j / C,  var = sum_j (x_j - mean)^2 / C (biased),  rstd = 1/sqrt(var + eps)
 *     xhat = (x - mean) * rstd,  y = xhat * weight + bias
 * Backward, with g = dy * weight:
 *     dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))
 *     dweight = sum_rows dy * xhat,  dbias = sum_rows dy
 * Saves mean and rstd (N) as explicit forward outputs; xhat is recomputed from them.
 *
 * L2 normalisation along an axis (x viewed as (outer, dim, inner)), as F.normalize:
 *     y = x / max(||x||, eps), eps = 1e-12
 *     dx = (dy - y * sum_k dy_k y_k) / ||x||   when ||x|| >= eps
 *     dx = dy / eps                            when ||x|| < eps (the clamp is constant there)
 * Saves the norms (outer, inner); y is recomputed from x and the norm.
 *
 * Cosine-similarity matrix S = normalize(a) @ normalize(b)^T, batched over B: one node that
 * normalises both operands into scratch and calls the core gemm. Backward recomputes the
 * normalised rows from the saved norms (l2_normalize_apply), then
 *     d(ahat) = dS @ bhat,  d(bhat) = dS^T @ ahat,  and the L2 backward above for a and b.
 * Sums (moments, norms, row dot products) accumulate in double. */
#include "tensor/ops/norm.h"

#include <math.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/isa.h"
#include "tensor/kernels_cpu.h"

#define NORM_BLOCK 32 /* columns per work item in the dweight/dbias column sums */
#define L2_EPS 1e-12f  /* torch.nn.functional.normalize's default */

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* A row's sums run in double over ROW_LANES independent partial sums, element j in lane
 * j mod ROW_LANES, the lanes combined pairwise at the end (LANES_TOTAL). One running sum is a
 * chain of C dependent additions, 4 cycles each, which is what LayerNorm waited on in CLIP's
 * text tower (C = 512: ~2,000 cycles per sum); the lanes vectorise. Being explicit, not a
 * compiler reassociation, they give the same result at every instruction-set level. */
#define ROW_LANES 8
_Static_assert(ROW_LANES == 8, "LANES_TOTAL combines exactly 8 lanes");
#define LANES_TOTAL(a) \
    ((((a)[0] + (a)[1]) + ((a)[2] + (a)[3])) + (((a)[4] + (a)[5]) + ((a)[6] + (a)[7])))

/* Row r of layernorm_forward_cpu, through the variant of the chosen instruction-set level
 * (tensor/isa.h; the same operations in the same order at every level) — assigns. */
static inline ISA_BODY void layernorm_row_body(float *out, float *mean, float *rstd,
                                               const float *inp, const float *weight,
                                               const float *bias, int64_t r, int64_t c,
                                               float eps) {
    const float *x = inp + r * c;
    float *y = out + r * c;
    double s[ROW_LANES] = {0}, v[ROW_LANES] = {0};
    int64_t j = 0;
    for (; j + ROW_LANES <= c; j += ROW_LANES)
        for (int k = 0; k < ROW_LANES; k++) s[k] += x[j + k];
    for (int k = 0; j < c; j++, k++) s[k] += x[j];
    double mu = LANES_TOTAL(s) / (double)c;
    /* Two passes: the variance of (x - mean) does not cancel catastrophically the way
     * E[x^2] - E[x]^2 does when |mean| >> std. */
    for (j = 0; j + ROW_LANES <= c; j += ROW_LANES)
        for (int k = 0; k < ROW_LANES; k++) {
            double d = x[j + k] - mu;
            v[k] += d * d;
        }
    for (int k = 0; j < c; j++, k++) {
        double d = x[j] - mu;
        v[k] += d * d;
    }
    double rs = 1.0 / sqrt(LANES_TOTAL(v) / (double)c + (double)eps);
    mean[r] = (float)mu;
    rstd[r] = (float)rs;
    for (int64_t j = 0; j < c; j++) {
        float xh = (float)((x[j] - mu) * rs);
        y[j] = xh * (weight ? weight[j] : 1.0f) + (bias ? bias[j] : 0.0f);
    }
}
ISA_VARIANTS(layernorm_row, (float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int64_t r, int64_t c,
                             float eps), (out, mean, rstd, inp, weight, bias, r, c, eps))

void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int64_t n, int64_t c,
                           float eps) {
    /* out (N,C), mean (N), rstd (N), inp (N,C), weight (C) or NULL, bias (C) or NULL — assigns */
#pragma omp parallel for schedule(static) if (n * c > 16384)
    for (int64_t r = 0; r < n; r++) layernorm_row(out, mean, rstd, inp, weight, bias, r, c, eps);
}

/* Row r of dinp in layernorm_backward_cpu — accumulates. */
static inline ISA_BODY void layernorm_dinp_row_body(float *dinp, const float *dout,
                                                    const float *inp, const float *weight,
                                                    const float *mean, const float *rstd,
                                                    int64_t r, int64_t c) {
    const float *x = inp + r * c, *dy = dout + r * c;
    float mu = mean[r], rs = rstd[r];
    /* sum_j g_j and sum_j g_j xhat_j, g = dy * weight */
    double sg[ROW_LANES] = {0}, sgx[ROW_LANES] = {0};
    int64_t j = 0;
    for (; j + ROW_LANES <= c; j += ROW_LANES)
        for (int k = 0; k < ROW_LANES; k++) {
            float xh = (x[j + k] - mu) * rs;
            float g = dy[j + k] * (weight ? weight[j + k] : 1.0f);
            sg[k] += g;
            sgx[k] += (double)g * xh;
        }
    for (int k = 0; j < c; j++, k++) {
        float xh = (x[j] - mu) * rs;
        float g = dy[j] * (weight ? weight[j] : 1.0f);
        sg[k] += g;
        sgx[k] += (double)g * xh;
    }
    /* The two means rounded to float once; the per-element step in float, like g and xhat
     * themselves (in double it ran at half the vector width: 44 -> 40 ms per text pass). */
    const float mg = (float)(LANES_TOTAL(sg) / (double)c);
    const float mgx = (float)(LANES_TOTAL(sgx) / (double)c);
    float *dx = dinp + r * c;
    for (int64_t j = 0; j < c; j++) {
        float xh = (x[j] - mu) * rs;
        float g = dy[j] * (weight ? weight[j] : 1.0f);
        dx[j] += rs * (g - mg - xh * mgx);
    }
}
ISA_VARIANTS(layernorm_dinp_row, (float *dinp, const float *dout, const float *inp,
                                  const float *weight, const float *mean, const float *rstd,
                                  int64_t r, int64_t c),
             (dinp, dout, inp, weight, mean, rstd, r, c))

/* Columns [b*NORM_BLOCK, (b+1)*NORM_BLOCK) of dweight and dbias (either may be NULL): sums over
 * the N rows — accumulates. Each work item owns a block of columns, so no two threads write the
 * same dweight/dbias entry and the order of the sum is fixed. */
static inline ISA_BODY void layernorm_dparam_block_body(float *dweight, float *dbias,
                                                        const float *dout, const float *inp,
                                                        const float *mean, const float *rstd,
                                                        int64_t n, int64_t c, int64_t b) {
    int64_t j0 = b * NORM_BLOCK, nb = c - j0 < NORM_BLOCK ? c - j0 : NORM_BLOCK;
    double aw[NORM_BLOCK] = {0}, ab[NORM_BLOCK] = {0};
    for (int64_t r = 0; r < n; r++) {
        const float *x = inp + r * c + j0, *dy = dout + r * c + j0;
        for (int64_t j = 0; j < nb; j++) {
            aw[j] += (double)dy[j] * ((x[j] - mean[r]) * rstd[r]);
            ab[j] += dy[j];
        }
    }
    for (int64_t j = 0; j < nb; j++) {
        if (dweight) dweight[j0 + j] += (float)aw[j];
        if (dbias) dbias[j0 + j] += (float)ab[j];
    }
}
ISA_VARIANTS(layernorm_dparam_block, (float *dweight, float *dbias, const float *dout,
                                      const float *inp, const float *mean, const float *rstd,
                                      int64_t n, int64_t c, int64_t b),
             (dweight, dbias, dout, inp, mean, rstd, n, c, b))

void layernorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int64_t n, int64_t c) {
    /* dinp (N,C) or NULL, dweight (C) or NULL, dbias (C) or NULL, dout (N,C), inp (N,C),
     * weight (C) or NULL, mean (N), rstd (N) — accumulates */
    if (dinp) {
#pragma omp parallel for schedule(static) if (n * c > 16384)
        for (int64_t r = 0; r < n; r++)
            layernorm_dinp_row(dinp, dout, inp, weight, mean, rstd, r, c);
    }
    if (dweight || dbias) {
        const int64_t nblk = (c + NORM_BLOCK - 1) / NORM_BLOCK;
#pragma omp parallel for schedule(static) if (n * c > 16384)
        for (int64_t b = 0; b < nblk; b++)
            layernorm_dparam_block(dweight, dbias, dout, inp, mean, rstd, n, c, b);
    }
}

void l2_normalize_forward_cpu(float *out, float *norm, const float *inp, int64_t outer,
                              int64_t dim, int64_t inner, float eps) {
    /* out (outer,dim,inner), norm (outer,inner), inp (outer,dim,inner) — assigns */
#pragma omp parallel for schedule(static) if (outer * dim * inner > 16384)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *x = inp + base;
        double s = 0.0;
        for (int64_t k = 0; k < dim; k++) s += (double)x[k * inner] * x[k * inner];
        float nr = (float)sqrt(s);
        norm[r] = nr;
        float den = fmaxf(nr, eps);
        for (int64_t k = 0; k < dim; k++) out[base + k * inner] = x[k * inner] / den;
    }
}

void l2_normalize_backward_cpu(float *dinp, const float *dout, const float *inp,
                               const float *norm, int64_t outer, int64_t dim, int64_t inner,
                               float eps) {
    /* dinp (outer,dim,inner), dout (outer,dim,inner), inp (outer,dim,inner),
     * norm (outer,inner) — accumulates */
#pragma omp parallel for schedule(static) if (outer * dim * inner > 16384)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        const float *x = inp + base, *dy = dout + base;
        float nr = norm[r];
        if (nr < eps) {
            /* y = x / eps: the clamped denominator is a constant. */
            for (int64_t k = 0; k < dim; k++) dinp[base + k * inner] += dy[k * inner] / eps;
            continue;
        }
        /* y = x / ||x||: dx = (dy - y * <dy, y>) / ||x||. */
        double s = 0.0;
        for (int64_t k = 0; k < dim; k++) s += (double)dy[k * inner] * (x[k * inner] / nr);
        for (int64_t k = 0; k < dim; k++) {
            double y = x[k * inner] / nr;
            dinp[base + k * inner] += (float)((dy[k * inner] - y * s) / nr);
        }
    }
}

void l2_normalize_apply_cpu(float *out, const float *inp, const float *norm, int64_t outer,
                            int64_t dim, int64_t inner, float eps) {
    /* out (outer,dim,inner), inp (outer,dim,inner), norm (outer,inner) — assigns */
#pragma omp parallel for schedule(static) if (outer * dim * inner > 16384)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t base = (r / inner) * dim * inner + r % inner;
        float den = fmaxf(norm[r], eps);
        for (int64_t k = 0; k < dim; k++) out[base + k * inner] = inp[base + k * inner] / den;
    }
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

/* in: x, weight, bias (either may be NULL); saved: mean, rstd; iarg: [0] N, [1] C. */
static void layernorm_backward(Node *n) {
    Tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    /* Frozen (or absent) parameters get no buffer and their column sums are skipped. */
    float *dx = ag_needs(x) ? ag_grad(x)->data : NULL;
    float *dw = ag_needs(w) ? ag_grad(w)->data : NULL;
    float *db = ag_needs(b) ? ag_grad(b)->data : NULL;
    KERNEL_RUN(x->device, layernorm_backward, dx, dw, db, n->out->grad->data, x->data,
                                               w ? w->data : NULL, n->saved[0]->data,
                                               n->saved[1]->data, n->iarg[0], n->iarg[1]);
}

Tensor *tensor_layernorm(Tensor *x, Tensor *weight, Tensor *bias, float eps) {
    tensor_check_f32("layernorm", x, "x");
    CHECK(x->ndim >= 1 && x->shape[x->ndim - 1] > 0, "layernorm: x %s has no last dim to normalise",
          tensor_shape_str(x));
    int64_t c = x->shape[x->ndim - 1], rows = x->numel / c;
    Tensor *params[2] = {weight, bias};
    const char *pname[2] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        if (!params[i]) continue;
        tensor_check_f32("layernorm", params[i], pname[i]);
        tensor_check_same_device("layernorm", x, params[i]);
        CHECK(params[i]->ndim == 1 && params[i]->shape[0] == c,
              "layernorm: %s %s does not match the last dim of x %s", pname[i],
              tensor_shape_str(params[i]), tensor_shape_str(x));
    }
    CHECK(eps >= 0.0f, "layernorm: eps %g < 0", eps);
    Tensor *out = tensor_empty(DT_F32, x->ndim, x->shape);
    Tensor *mean = tensor_empty(DT_F32, x->ndim - 1, x->shape);
    Tensor *rstd = tensor_empty(DT_F32, x->ndim - 1, x->shape);
    KERNEL_RUN(x->device, layernorm_forward, out->data, mean->data, rstd->data, x->data,
                                              weight ? weight->data : NULL,
                                              bias ? bias->data : NULL, rows, c, eps);
    Node *n = AG_RECORD("layernorm", out, layernorm_backward, x, weight, bias);
    if (n) {
        n->saved[0] = mean;
        n->saved[1] = rstd;
        n->iarg[0] = rows;
        n->iarg[1] = c;
    }
    return out;
}

/* saved: norm; iarg: [0] outer, [1] dim, [2] inner. */
static void l2_normalize_backward(Node *n) {
    Tensor *x = n->in[0];
    KERNEL_RUN(x->device, l2_normalize_backward, ag_grad(x)->data, n->out->grad->data, x->data,
                                                  n->saved[0]->data, n->iarg[0], n->iarg[1],
                                                  n->iarg[2], L2_EPS);
}

Tensor *tensor_l2_normalize(Tensor *x, int dim) {
    tensor_check_f32("l2_normalize", x, "x");
    int d = tensor_dim(x, dim);
    int64_t outer = shape_numel(d, x->shape), len = x->shape[d];
    int64_t inner = shape_numel(x->ndim - d - 1, x->shape + d + 1);
    int64_t nshape[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != d) nshape[nd++] = x->shape[i];
    Tensor *out = tensor_empty(DT_F32, x->ndim, x->shape);
    Tensor *norm = tensor_empty(DT_F32, nd, nshape);
    KERNEL_RUN(x->device, l2_normalize_forward, out->data, norm->data, x->data, outer, len, inner,
                                                 L2_EPS);
    Node *n = AG_RECORD("l2_normalize", out, l2_normalize_backward, x);
    if (n) {
        n->saved[0] = norm;
        n->iarg[0] = outer;
        n->iarg[1] = len;
        n->iarg[2] = inner;
    }
    return out;
}

/* in: a, b; saved: norms of a (B*N) and b (B*M); iarg: [0] B, [1] N, [2] M, [3] D. */
static void cosine_backward(Node *n) {
    Tensor *a = n->in[0], *b = n->in[1];
    int64_t B = n->iarg[0], N = n->iarg[1], M = n->iarg[2], D = n->iarg[3];
    DeviceKind dev = a->device;
    const float *ds = n->out->grad->data, *na = n->saved[0]->data, *nb = n->saved[1]->data;
    /* Gradient buffers first: they must outlive the scratch region released below. */
    float *da = ag_needs(a) ? ag_grad(a)->data : NULL;
    float *db = ag_needs(b) ? ag_grad(b)->data : NULL;
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    if (da) {
        /* d(ahat) (N,D) = dS (N,M) @ bhat (M,D), then through ahat = a / max(||a||, eps). */
        float *bhat = arena_alloc(arena, (size_t)(B * M * D) * sizeof(float));
        float *dahat = arena_alloc(arena, (size_t)(B * N * D) * sizeof(float));
        KERNEL_RUN(dev, l2_normalize_apply, bhat, b->data, nb, B * M, D, 1, L2_EPS);
        KERNEL_RUN(dev, gemm, dahat, ds, bhat, B, N, D, M, false, false, 1.0f, 0.0f, M, D, D,
                               N * M, M * D, N * D);
        KERNEL_RUN(dev, l2_normalize_backward, da, dahat, a->data, na, B * N, D, 1, L2_EPS);
    }
    if (db) {
        /* d(bhat) (M,D) = dS^T (M,N) @ ahat (N,D). */
        float *ahat = arena_alloc(arena, (size_t)(B * N * D) * sizeof(float));
        float *dbhat = arena_alloc(arena, (size_t)(B * M * D) * sizeof(float));
        KERNEL_RUN(dev, l2_normalize_apply, ahat, a->data, na, B * N, D, 1, L2_EPS);
        KERNEL_RUN(dev, gemm, dbhat, ds, ahat, B, M, D, N, true, false, 1.0f, 0.0f, M, D, D,
                               N * M, N * D, M * D);
        KERNEL_RUN(dev, l2_normalize_backward, db, dbhat, b->data, nb, B * M, D, 1, L2_EPS);
    }
    arena_release(arena, mark);
}

Tensor *tensor_cosine_similarity_matrix(Tensor *a, Tensor *b) {
    const char *op = "cosine_similarity_matrix";
    tensor_check_f32(op, a, "a");
    tensor_check_f32(op, b, "b");
    tensor_check_same_device(op, a, b);
    int nd = a->ndim;
    CHECK((nd == 2 || nd == 3) && b->ndim == nd && a->shape[nd - 1] == b->shape[nd - 1] &&
              (nd == 2 || a->shape[0] == b->shape[0]),
          "%s: expected a (N,D), b (M,D) or a (B,N,D), b (B,M,D); got a %s, b %s", op,
          tensor_shape_str(a), tensor_shape_str(b));
    int64_t B = nd == 3 ? a->shape[0] : 1, N = a->shape[nd - 2], M = b->shape[nd - 2];
    int64_t D = a->shape[nd - 1];
    Tensor *out = nd == 3 ? tensor_empty(DT_F32, 3, SHAPE(B, N, M))
                          : tensor_empty(DT_F32, 2, SHAPE(N, M));
    Tensor *na = tensor_empty(DT_F32, nd - 1, a->shape);
    Tensor *nb = tensor_empty(DT_F32, nd - 1, b->shape);
    /* The normalised operands are scratch: backward rebuilds them from the saved norms. */
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *ahat = arena_alloc(arena, (size_t)a->numel * sizeof(float));
    float *bhat = arena_alloc(arena, (size_t)b->numel * sizeof(float));
    KERNEL_RUN(a->device, l2_normalize_forward, ahat, na->data, a->data, B * N, D, 1, L2_EPS);
    KERNEL_RUN(a->device, l2_normalize_forward, bhat, nb->data, b->data, B * M, D, 1, L2_EPS);
    /* S (N,M) = ahat (N,D) @ bhat^T, each batch. */
    KERNEL_RUN(a->device, gemm, out->data, ahat, bhat, B, N, M, D, false, true, 1.0f, 0.0f, D, D,
                                 M, N * D, M * D, N * M);
    arena_release(arena, mark);
    Node *n = AG_RECORD(op, out, cosine_backward, a, b);
    if (n) {
        n->saved[0] = na;
        n->saved[1] = nb;
        n->iarg[0] = B;
        n->iarg[1] = N;
        n->iarg[2] = M;
        n->iarg[3] = D;
    }
    return out;
}
