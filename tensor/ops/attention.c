/* attention.c — multi-head scaled dot-product attention: CPU kernels, wrappers, backward rules.
 *
 * For every batch b and head h (BH = B*NH independent problems), with q (T,HS), k (S,HS),
 * v (S,HSV):
 *     scores = q kᵀ * scale (+ mask)           (T,S)   gemm
 *     P      = softmax over keys(scores)       (T,S)   attention_softmax_forward
 *     out    = P v                             (T,HSV) gemm
 * The causal mask (CLIP's text transformer) gives key j > query i probability exactly 0; it
 * needs T == S. The single-query form of CLIP's attention pooling is T = 1, not causal.
 * Backward (derivation in docs/ops/attention.md), each product only when its input needs it:
 *     dv = Pᵀ dout;  dP = dout vᵀ;  dS = P ⊙ (dP − rowsum(dP ⊙ P));
 *     dq = dS k * scale;  dk = dSᵀ q * scale.
 * Saved for backward: P (B,NH,T,S), an explicit forward output kept in the arena only when a tape
 * node is recorded; q, k, v are the node's inputs.
 *
 * Head split/merge are layout copies between (B,T,NH*HS) (what a linear layer produces) and
 * (B,NH,T,HS) (one contiguous (T,HS) matrix per head, what the batched gemm wants). */
#include "tensor/ops/attention.h"

#include <math.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

void attention_softmax_forward_cpu(float *probs, int64_t BH, int64_t T, int64_t S, bool causal) {
    /* probs (BH,T,S): scaled scores on entry, probabilities on return — assigns, in place */
    int64_t rows = BH * T;
#pragma omp parallel for schedule(static) if (rows * S > 32768)
    for (int64_t r = 0; r < rows; r++) {
        float *p = probs + r * S;
        /* Causal: query i = r mod T sees keys 0..i (T == S); the others are the −∞ entries of
         * the additive mask, exp(−∞) = 0, so they are skipped and set to 0. */
        int64_t n = causal ? r % T + 1 : S;
        /* Subtracting the row maximum keeps exp() in range; the largest term becomes exp(0). */
        float mx = p[0];
        for (int64_t j = 1; j < n; j++) mx = fmaxf(mx, p[j]);
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            float e = expf(p[j] - mx);
            p[j] = e;
            sum += e;
        }
        float inv = (float)(1.0 / sum); /* sum >= 1: the maximum contributes exp(0) */
        for (int64_t j = 0; j < n; j++) p[j] *= inv;
        for (int64_t j = n; j < S; j++) p[j] = 0.0f;
    }
}

void attention_softmax_backward_cpu(float *dscores, const float *dprobs, const float *probs,
                                    int64_t BH, int64_t T, int64_t S) {
    /* dscores (BH,T,S), dprobs (BH,T,S), probs (BH,T,S); dscores may alias dprobs — assigns */
    int64_t rows = BH * T;
#pragma omp parallel for schedule(static) if (rows * S > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *p = probs + r * S, *dp = dprobs + r * S;
        float *ds = dscores + r * S;
        /* P = softmax(S): dS_j = P_j (dP_j − Σ_l dP_l P_l). Masked keys have P_j = 0, hence
         * dS_j = 0, so the mask needs no special case here. */
        double dot = 0.0;
        for (int64_t j = 0; j < S; j++) dot += (double)dp[j] * p[j];
        float fdot = (float)dot;
        for (int64_t j = 0; j < S; j++) ds[j] = p[j] * (dp[j] - fdot);
    }
}

/* One loop for both directions of the (B,T,W) <-> (B,NH,T,HS) layout change: element
 * (b, h, t, d) of the head-major tensor is column col0 + h*HS + d of row (b, t) of the flat one.
 * to_heads: dst is head-major and src flat; otherwise the reverse. */
static void heads_copy(float *dst, const float *src, int64_t B, int64_t T, int64_t W,
                       int64_t col0, int64_t NH, int64_t HS, bool to_heads, bool accumulate) {
    int64_t rows = B * NH * T;
#pragma omp parallel for schedule(static) if (rows * HS > 32768)
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = r % T, h = (r / T) % NH, b = r / (T * NH);
        int64_t head_off = r * HS, flat_off = (b * T + t) * W + col0 + h * HS;
        float *d = dst + (to_heads ? head_off : flat_off);
        const float *s = src + (to_heads ? flat_off : head_off);
        if (accumulate)
            for (int64_t i = 0; i < HS; i++) d[i] += s[i];
        else
            for (int64_t i = 0; i < HS; i++) d[i] = s[i];
    }
}

void attention_heads_split_forward_cpu(float *out, const float *inp, int64_t B, int64_t T,
                                       int64_t W, int64_t col0, int64_t NH, int64_t HS) {
    /* out (B,NH,T,HS), inp (B,T,W) — assigns */
    heads_copy(out, inp, B, T, W, col0, NH, HS, true, false);
}

void attention_heads_split_backward_cpu(float *dinp, const float *dout, int64_t B, int64_t T,
                                        int64_t W, int64_t col0, int64_t NH, int64_t HS) {
    /* dinp (B,T,W), dout (B,NH,T,HS) — accumulates into columns [col0, col0 + NH*HS) */
    heads_copy(dinp, dout, B, T, W, col0, NH, HS, false, true);
}

void attention_heads_merge_forward_cpu(float *out, const float *inp, int64_t B, int64_t T,
                                       int64_t NH, int64_t HS) {
    /* out (B,T,NH*HS), inp (B,NH,T,HS) — assigns */
    heads_copy(out, inp, B, T, NH * HS, 0, NH, HS, false, false);
}

void attention_heads_merge_backward_cpu(float *dinp, const float *dout, int64_t B, int64_t T,
                                        int64_t NH, int64_t HS) {
    /* dinp (B,NH,T,HS), dout (B,T,NH*HS) — accumulates */
    heads_copy(dinp, dout, B, T, NH * HS, 0, NH, HS, true, true);
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

static void attention_backward(Node *n) {
    Tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *probs = n->saved[0];
    DeviceKind dev = n->out->device;
    int64_t BH = q->shape[0] * q->shape[1], T = q->shape[2], HS = q->shape[3];
    int64_t S = k->shape[2], HSV = v->shape[3];
    float scale = (float)n->farg[0];
    const float *dout = n->out->grad->data, *P = probs->data;

    /* out = P v  =>  dv (S,HSV) += Pᵀ (S,T) dout (T,HSV) */
    if (ag_needs(v))
        KERNEL_RUN(dev, gemm, ag_grad(v)->data, P, dout, BH, S, HSV, T, true, false, 1.0f, 1.0f,
                               S, HSV, HSV, T * S, T * HSV, S * HSV);
    if (!ag_needs(q) && !ag_needs(k)) return;
    /* Gradient buffers come from the arena before the scratch mark, so they outlive it. */
    float *dq = ag_needs(q) ? ag_grad(q)->data : NULL;
    float *dk = ag_needs(k) ? ag_grad(k)->data : NULL;
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *dS = arena_alloc(arena, (size_t)(BH * T * S) * sizeof(float));
    /* out = P v  =>  dP (T,S) = dout (T,HSV) vᵀ (HSV,S) */
    KERNEL_RUN(dev, gemm, dS, dout, v->data, BH, T, S, HSV, false, true, 1.0f, 0.0f, HSV, HSV,
                           S, T * HSV, S * HSV, T * S);
    /* P = softmax(scores): dscores, in place over dP */
    KERNEL_RUN(dev, attention_softmax_backward, dS, dS, P, BH, T, S);
    /* scores = q kᵀ * scale  =>  dq (T,HS) += scale dS (T,S) k (S,HS) */
    if (dq)
        KERNEL_RUN(dev, gemm, dq, dS, k->data, BH, T, HS, S, false, false, scale, 1.0f, S, HS,
                               HS, T * S, S * HS, T * HS);
    /* ... and dk (S,HS) += scale dSᵀ (S,T) q (T,HS) */
    if (dk)
        KERNEL_RUN(dev, gemm, dk, dS, q->data, BH, S, HS, T, true, false, scale, 1.0f, S, HS,
                               HS, T * S, T * HS, S * HS);
    arena_release(arena, mark);
}

Tensor *tensor_attention(Tensor *q, Tensor *k, Tensor *v, bool causal, float scale) {
    tensor_check_f32("attention", q, "q");
    tensor_check_f32("attention", k, "k");
    tensor_check_f32("attention", v, "v");
    tensor_check_same_device("attention", q, k);
    tensor_check_same_device("attention", q, v);
    CHECK(q->ndim == 4 && k->ndim == 4 && v->ndim == 4,
          "attention: q %s, k %s, v %s must be 4-D (B,NH,T,HS), (B,NH,S,HS), (B,NH,S,HSV)",
          tensor_shape_str(q), tensor_shape_str(k), tensor_shape_str(v));
    CHECK(k->shape[0] == q->shape[0] && v->shape[0] == q->shape[0] && k->shape[1] == q->shape[1] &&
              v->shape[1] == q->shape[1] && k->shape[3] == q->shape[3] && v->shape[2] == k->shape[2],
          "attention: q %s, k %s, v %s do not fit (B,NH,T,HS), (B,NH,S,HS), (B,NH,S,HSV)",
          tensor_shape_str(q), tensor_shape_str(k), tensor_shape_str(v));
    int64_t B = q->shape[0], NH = q->shape[1], T = q->shape[2], HS = q->shape[3];
    int64_t S = k->shape[2], HSV = v->shape[3], BH = B * NH;
    CHECK(S >= 1, "attention: k %s has no keys to attend to", tensor_shape_str(k));
    CHECK(!causal || T == S, "attention: causal mask needs as many queries as keys, q %s k %s",
          tensor_shape_str(q), tensor_shape_str(k));
    CHECK(isfinite(scale), "attention: scale %g is not finite", scale);

    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(B, NH, T, HSV));
    Node *n = AG_RECORD("attention", out, attention_backward, q, k, v);
    /* P is a forward output when backward will need it; otherwise scratch released below. */
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *P;
    if (n) {
        Tensor *probs = tensor_empty(DT_F32, 4, SHAPE(B, NH, T, S));
        n->saved[0] = probs;
        n->iarg[0] = causal;
        n->farg[0] = scale;
        P = probs->data;
    } else {
        P = arena_alloc(arena, (size_t)(BH * T * S) * sizeof(float));
    }
    DeviceKind dev = q->device;
    /* scores (T,S) = scale * q (T,HS) kᵀ, written straight into P */
    KERNEL_RUN(dev, gemm, P, q->data, k->data, BH, T, S, HS, false, true, scale, 0.0f, HS, HS, S,
                           T * HS, S * HS, T * S);
    KERNEL_RUN(dev, attention_softmax_forward, P, BH, T, S, causal);
    /* out (T,HSV) = P (T,S) v (S,HSV) */
    KERNEL_RUN(dev, gemm, out->data, P, v->data, BH, T, HSV, S, false, false, 1.0f, 0.0f, S, HSV,
                           HSV, T * S, S * HSV, T * HSV);
    if (!n) arena_release(arena, mark);
    return out;
}

static void heads_split_backward(Node *n) {
    Tensor *x = n->in[0];
    Tensor *o = n->out; /* (B,NH,T,HS) */
    KERNEL_RUN(o->device, attention_heads_split_backward, 
        ag_grad(x)->data, o->grad->data, x->shape[0], x->shape[1], x->shape[2], n->iarg[0],
        o->shape[1], o->shape[3]);
}

Tensor *tensor_attention_heads_split_cols(Tensor *x, int64_t col0, int64_t NH, int64_t HS) {
    tensor_check_f32("attention_heads_split", x, "x");
    CHECK(x->ndim == 3, "attention_heads_split: x %s must be (B,T,W)", tensor_shape_str(x));
    CHECK(NH >= 1 && HS >= 0 && col0 >= 0 && col0 + NH * HS <= x->shape[2],
          "attention_heads_split: columns [%lld, %lld) of %lld heads x %lld do not fit x %s",
          (long long)col0, (long long)(col0 + NH * HS), (long long)NH, (long long)HS,
          tensor_shape_str(x));
    int64_t B = x->shape[0], T = x->shape[1], W = x->shape[2];
    Tensor *out = tensor_empty(DT_F32, 4, SHAPE(B, NH, T, HS));
    KERNEL_RUN(x->device, attention_heads_split_forward, out->data, x->data, B, T, W, col0, NH, HS);
    Node *n = AG_RECORD("attention_heads_split", out, heads_split_backward, x);
    if (n) n->iarg[0] = col0;
    return out;
}

Tensor *tensor_attention_heads_split(Tensor *x, int64_t NH) {
    tensor_check_f32("attention_heads_split", x, "x");
    CHECK(x->ndim == 3 && NH >= 1 && x->shape[2] % NH == 0,
          "attention_heads_split: x %s must be (B,T,NH*HS) with NH = %lld", tensor_shape_str(x),
          (long long)NH);
    return tensor_attention_heads_split_cols(x, 0, NH, x->shape[2] / NH);
}

static void heads_merge_backward(Node *n) {
    Tensor *x = n->in[0]; /* (B,NH,T,HS) */
    KERNEL_RUN(x->device, attention_heads_merge_backward, 
        ag_grad(x)->data, n->out->grad->data, x->shape[0], x->shape[2], x->shape[1], x->shape[3]);
}

Tensor *tensor_attention_heads_merge(Tensor *x) {
    tensor_check_f32("attention_heads_merge", x, "x");
    CHECK(x->ndim == 4, "attention_heads_merge: x %s must be (B,NH,T,HS)", tensor_shape_str(x));
    int64_t B = x->shape[0], NH = x->shape[1], T = x->shape[2], HS = x->shape[3];
    Tensor *out = tensor_empty(DT_F32, 3, SHAPE(B, T, NH * HS));
    KERNEL_RUN(x->device, attention_heads_merge_forward, out->data, x->data, B, T, NH, HS);
    AG_RECORD("attention_heads_merge", out, heads_merge_backward, x);
    return out;
}

/* ---- packed sequences, heads in place ------------------------------------------------------ */

/* tensor_attention_packed computes what tensor_attention does for every (sequence, head), but
 * finds each head's (len, HS) blocks inside the packed 2-D inputs through the GEMM's leading
 * dimension (the row width) instead of copying them out, and writes its output rows straight
 * into the merged (Rq, NH*HS) result. Per run and head, one strided-batched product covers the
 * run's n sequences (their blocks are a fixed stride apart); the softmax runs once per run over
 * its NH*n matrices. The probabilities are laid out run by run, head-major within a run:
 * sequence i of run k, head h, is the (tq, len) matrix at p0(k) + (h*n + i)*tq*len, tq = len
 * (every row a query) or 1 (the last row only). The steps are the device's `gemm` and softmax
 * kernels, so the same code runs on the CPU (OpenBLAS) and the GPU (cuBLAS). Hand-written CPU
 * code was measured slower than OpenBLAS's small-matrix products here three times: per-row dot
 * products (150 ms against 109 ms per text-tower forward and backward at two threads); scores
 * along transposed keys with register-blocked weighted sums (270 ms against 200 ms at one
 * thread); one (sequence, head) per thread with single-threaded products (124 against 110 ms at
 * two threads). docs/profile.md. */

/* The layout of one call: the runs g (host memory), NH heads of HS columns, the column offsets
 * and row widths of q and kv, every row a causal query or the last rows only. */
typedef struct {
    const AttentionGroup *g;
    int ngroups;
    int64_t NH, HS, qcol, kcol, vcol, Wq, Wkv;
    bool last_only;
    float scale;
} PackedGeom;

static void packed_forward(DeviceKind dev, float *out, float *probs, const float *q,
                           const float *kv, const PackedGeom *g) {
    /* out (Rq, NH*HS), probs (run by run), q (Rq, Wq), kv (R, Wkv) — assigns */
    const int64_t NH = g->NH, HS = g->HS, C = NH * HS, Wq = g->Wq, Wkv = g->Wkv;
    int64_t q0 = 0, k0 = 0, p0 = 0;
    for (int k = 0; k < g->ngroups; k++) {
        const int64_t n = g->g[k].n, len = g->g[k].len, tq = g->last_only ? 1 : len;
        /* scores (tq,len) = scale * q (tq,HS) k^T (HS,len), the run's n sequences at once */
        for (int64_t h = 0; h < NH; h++)
            KERNEL_RUN(dev, gemm, probs + p0 + h * n * tq * len, q + q0 * Wq + g->qcol + h * HS,
                       kv + k0 * Wkv + g->kcol + h * HS, n, tq, len, HS, false, true, g->scale,
                       0.0f, Wq, Wkv, len, tq * Wq, len * Wkv, tq * len);
        KERNEL_RUN(dev, attention_softmax_forward, probs + p0, NH * n, tq, len, !g->last_only);
        /* out (tq,HS) = P (tq,len) v (len,HS), into head h's columns */
        for (int64_t h = 0; h < NH; h++)
            KERNEL_RUN(dev, gemm, out + q0 * C + h * HS, probs + p0 + h * n * tq * len,
                       kv + k0 * Wkv + g->vcol + h * HS, n, tq, HS, len, false, false, 1.0f, 0.0f,
                       len, Wkv, C, tq * len, len * Wkv, tq * C);
        q0 += n * tq;
        k0 += n * len;
        p0 += NH * n * tq * len;
    }
}

static void packed_backward(DeviceKind dev, float *dq, float *dkv, const float *dout,
                            const float *probs, const float *q, const float *kv, float *scratch,
                            const PackedGeom *g, bool acc_q, bool acc_kv) {
    /* dq (Rq, Wq) query columns, dkv (R, Wkv) key and value columns, either NULL — accumulates
     * (acc_*) or assigns those columns: each element is written by exactly one product */
    const int64_t NH = g->NH, HS = g->HS, C = NH * HS, Wq = g->Wq, Wkv = g->Wkv;
    const float bq = acc_q ? 1.0f : 0.0f, bkv = acc_kv ? 1.0f : 0.0f;
    int64_t q0 = 0, k0 = 0, p0 = 0;
    for (int k = 0; k < g->ngroups; k++) {
        const int64_t n = g->g[k].n, len = g->g[k].len, tq = g->last_only ? 1 : len;
        const int64_t sp = tq * len, sq = tq * Wq, skv = len * Wkv; /* per-sequence strides */
        for (int64_t h = 0; h < NH; h++) {
            const float *P = probs + p0 + h * n * sp, *dh = dout + q0 * C + h * HS;
            const float *vh = kv + k0 * Wkv + g->vcol + h * HS;
            /* out = P v  =>  dv (len,HS) (+)= P^T (len,tq) dout (tq,HS) */
            if (dkv)
                KERNEL_RUN(dev, gemm, dkv + k0 * Wkv + g->vcol + h * HS, P, dh, n, len, HS, tq,
                           true, false, 1.0f, bkv, len, C, Wkv, sp, tq * C, skv);
            /* ... and dP (tq,len) = dout (tq,HS) v^T (HS,len) */
            KERNEL_RUN(dev, gemm, scratch + p0 + h * n * sp, dh, vh, n, tq, len, HS, false, true,
                       1.0f, 0.0f, C, Wkv, len, tq * C, skv, sp);
        }
        /* P = softmax(scores): dscores over dP, in place, the run's NH*n matrices at once */
        KERNEL_RUN(dev, attention_softmax_backward, scratch + p0, scratch + p0, probs + p0, NH * n,
                   tq, len);
        for (int64_t h = 0; h < NH; h++) {
            const float *dS = scratch + p0 + h * n * sp;
            const float *qh = q + q0 * Wq + g->qcol + h * HS;
            const float *kh = kv + k0 * Wkv + g->kcol + h * HS;
            /* scores = q k^T * scale  =>  dq (tq,HS) (+)= scale dS (tq,len) k (len,HS) */
            if (dq)
                KERNEL_RUN(dev, gemm, dq + q0 * Wq + g->qcol + h * HS, dS, kh, n, tq, HS, len,
                           false, false, g->scale, bq, len, Wkv, Wq, sp, skv, sq);
            /* ... and dk (len,HS) (+)= scale dS^T (len,tq) q (tq,HS) */
            if (dkv)
                KERNEL_RUN(dev, gemm, dkv + k0 * Wkv + g->kcol + h * HS, dS, qh, n, len, HS, tq,
                           true, false, g->scale, bkv, len, Wq, Wkv, sp, sq, skv);
        }
        q0 += n * tq;
        k0 += n * len;
        p0 += NH * n * sp;
    }
}

/* ---- packed sequences: wrapper and backward rule -------------------------------------------- */

static void attention_packed_backward(Node *nd) {
    const PackedGeom *g = nd->extra;
    Tensor *q = nd->in[0], *kv = nd->nin > 1 ? nd->in[1] : nd->in[0];
    const int64_t C = g->NH * g->HS;
    /* q == kv: one buffer takes dq, dk and dv in its three column ranges. The products write
     * every element of those ranges once, so a buffer they cover entirely (a fused projection,
     * W = 3C; or q alone, W = C, and kv, W = 2C) is taken new and assigned instead of zeroed
     * and accumulated into. */
    const bool cover_q = g->qcol == 0 && g->Wq == C;
    const bool cover_kv = g->Wkv == 2 * C && ((g->kcol == 0 && g->vcol == C) ||
                                             (g->kcol == C && g->vcol == 0));
    const bool cover_qkv = g->Wq == 3 * C && g->qcol % C == 0 && g->kcol % C == 0 &&
                           g->vcol % C == 0 && g->qcol != g->kcol && g->qcol != g->vcol &&
                           g->kcol != g->vcol;
    bool fq = false, fkv = false;
    float *dq = NULL, *dkv = NULL;
    if (q == kv) {
        if (ag_needs(q)) dq = dkv = (cover_qkv ? ag_grad_fresh(q, &fq) : ag_grad(q))->data;
        fkv = fq;
    } else {
        if (ag_needs(q)) dq = (cover_q ? ag_grad_fresh(q, &fq) : ag_grad(q))->data;
        if (ag_needs(kv)) dkv = (cover_kv ? ag_grad_fresh(kv, &fkv) : ag_grad(kv))->data;
    }
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *scratch = arena_alloc(arena, (size_t)nd->saved[0]->numel * sizeof(float));
    const uint64_t prof = prof_layer_begin(nd->out->device);
    packed_backward(nd->out->device, dq, dkv, nd->out->grad->data, nd->saved[0]->data, q->data,
                    kv->data, scratch, g, !fq, !fkv);
    /* the layer profile: four products of the forward's size (dv, dP, dq, dk) */
    prof_layer_end(nd->out->device, prof, "attention packed backward",
                   4.0 * (double)nd->saved[0]->numel * (double)g->HS * 2.0);
    arena_release(arena, mark);
}

Tensor *tensor_attention_packed(Tensor *q, int64_t qcol, Tensor *kv, int64_t kcol, int64_t vcol,
                                const AttentionGroup *groups, int ngroups, int64_t NH, int64_t HS,
                                bool last_only, float scale) {
    const char *op = "attention_packed";
    tensor_check_f32(op, q, "q");
    tensor_check_f32(op, kv, "kv");
    tensor_check_same_device(op, q, kv);
    CHECK(q->ndim == 2 && kv->ndim == 2, "%s: q %s and kv %s must be 2-D (rows, columns)", op,
          tensor_shape_str(q), tensor_shape_str(kv));
    CHECK(groups && ngroups >= 1 && NH >= 1 && HS >= 1, "%s: needs >= 1 run of sequences, "
          "heads and head size (got %d runs, NH %lld, HS %lld)", op, ngroups, (long long)NH,
          (long long)HS);
    CHECK(isfinite(scale), "%s: scale %g is not finite", op, scale);
    int64_t R = 0, Rq = 0, np = 0;
    for (int k = 0; k < ngroups; k++) {
        CHECK(groups[k].n >= 1 && groups[k].len >= 1, "%s: run %d has %lld sequences of %lld "
              "rows (both must be >= 1)", op, k, (long long)groups[k].n,
              (long long)groups[k].len);
        const int64_t tq = last_only ? 1 : groups[k].len;
        R += groups[k].n * groups[k].len;
        Rq += groups[k].n * tq;
        np += NH * groups[k].n * tq * groups[k].len;
    }
    const int64_t C = NH * HS, Wq = q->shape[1], Wkv = kv->shape[1];
    CHECK(kv->shape[0] == R && q->shape[0] == Rq,
          "%s: the runs hold %lld rows, so kv %s needs %lld rows and q %s %lld", op, (long long)R,
          tensor_shape_str(kv), (long long)R, tensor_shape_str(q), (long long)Rq);
    CHECK(qcol >= 0 && qcol + C <= Wq && kcol >= 0 && kcol + C <= Wkv && vcol >= 0 &&
              vcol + C <= Wkv,
          "%s: %lld heads x %lld from columns %lld of q %s, %lld and %lld of kv %s do not fit",
          op, (long long)NH, (long long)HS, (long long)qcol, tensor_shape_str(q), (long long)kcol,
          (long long)vcol, tensor_shape_str(kv));

    PackedGeom geom = {groups, ngroups, NH, HS, qcol, kcol, vcol, Wq, Wkv, last_only,
                                scale};
    Tensor *out = tensor_empty(DT_F32, 2, SHAPE(Rq, C));
    Node *nd = q == kv ? AG_RECORD(op, out, attention_packed_backward, q)
                       : AG_RECORD(op, out, attention_packed_backward, q, kv);
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    float *P;
    if (nd) {
        /* The runs' table and the geometry ride in the node (host memory, read by backward). */
        AttentionGroup *g = arena_alloc_host(arena, (size_t)ngroups * sizeof *g);
        memcpy(g, groups, (size_t)ngroups * sizeof *g);
        geom.g = g;
        PackedGeom *pg = arena_alloc_host(arena, sizeof *pg);
        *pg = geom;
        nd->extra = pg;
        nd->saved[0] = tensor_empty(DT_F32, 1, SHAPE(np));
        P = nd->saved[0]->data;
    } else {
        P = arena_alloc(arena, (size_t)np * sizeof(float));
    }
    const uint64_t prof = prof_layer_begin(q->device);
    packed_forward(q->device, out->data, P, q->data, kv->data, &geom);
    /* the layer profile: two products (scores, weighted sum) of np * HS multiply-adds each */
    prof_layer_end(q->device, prof, "attention packed forward",
                   2.0 * (double)np * (double)HS * 2.0);
    if (!nd) arena_release(arena, mark);
    return out;
}
