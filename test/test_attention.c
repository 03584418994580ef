/* test_attention.c — attention family: forward, saved probabilities and backward against
 * PyTorch fixtures (on both CPU GEMM paths), the realistic single-query size against a
 * double-precision reference, finite-difference gradchecks, frozen inputs, and the head
 * split/merge copies. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/ops/attention.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/shape.h"
#include "test/test.h"

static const char *attention_cases[] = {"odd", "odd_causal", "value_hs", "single_query",
                                        "clip_text", "large_scores"};

static Tensor *fx_input(Fixture *fx, const char *cs, const char *name, bool requires_grad) {
    char key[160];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    Tensor *t = fixture_tensor(fx, key);
    if (t && requires_grad) ag_set_requires_grad(t, NULL);
    return t;
}

static const FixtureTensor *fx_ref(Fixture *fx, const char *cs, const char *name) {
    char key[160];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    return fixture_get(fx, key);
}

/* atol for a case: the longest sum in forward or backward is over HS, HSV, S or T. */
static double case_atol(const Tensor *q, const Tensor *k, const Tensor *v) {
    int64_t K = q->shape[2];
    if (q->shape[3] > K) K = q->shape[3];
    if (k->shape[2] > K) K = k->shape[2];
    if (v->shape[3] > K) K = v->shape[3];
    return tol_matmul_atol(K);
}

/* One fixture case: forward, saved P, then backward for the inputs flagged in `grads`
 * (q, k, v); inputs not flagged must end with no gradient buffer. */
static void run_case(Fixture *fx, const char *cs, const bool grads[3], const char *tag) {
    static const char *names[3] = {"q", "k", "v"};
    Tensor *in[3];
    for (int i = 0; i < 3; i++)
        if (!(in[i] = fx_input(fx, cs, names[i], grads[i]))) return;
    const FixtureTensor *fscale = fx_ref(fx, cs, "scale"), *fcausal = fx_ref(fx, cs, "causal");
    if (!fscale || !fcausal) return;
    double atol = case_atol(in[0], in[1], in[2]);
    char what[200];

    Tensor *out = tensor_attention(in[0], in[1], in[2], fcausal->i64[0] != 0, fscale->f32[0]);
    snprintf(what, sizeof what, "attention %s %s out", cs, tag);
    EXPECT_TENSOR(what, out, fx_ref(fx, cs, "out"), atol, TOL_MATMUL_RTOL);
    EXPECT(out->node && out->node->saved[0], "attention %s: no probabilities saved", cs);
    if (!out->node || !out->node->saved[0]) return;
    snprintf(what, sizeof what, "attention %s %s probs", cs, tag);
    EXPECT_TENSOR(what, out->node->saved[0], fx_ref(fx, cs, "probs"), TOL_REDUCE_ATOL,
                  TOL_REDUCE_RTOL);

    ag_backward_with(out, fx_input(fx, cs, "dout", false));
    for (int i = 0; i < 3; i++) {
        if (!grads[i]) {
            EXPECT(in[i]->grad == NULL, "attention %s: frozen %s received a gradient buffer", cs,
                   names[i]);
            continue;
        }
        char dname[8];
        snprintf(dname, sizeof dname, "d%s", names[i]);
        snprintf(what, sizeof what, "attention %s %s %s", cs, tag, dname);
        EXPECT_TENSOR(what, in[i]->grad, fx_ref(fx, cs, dname), atol, TOL_MATMUL_RTOL);
    }
    ag_tape_reset();
}

TEST(attention_fixtures) {
    Fixture *fx = fixture_open("attention");
    if (!fx) return;
    /* The BLAS path (when built) and the naive double-accumulating path, the parity oracle. */
    GemmPath start = gemm_path();
    GemmPath paths[2] = {start, GEMM_NAIVE};
    for (int p = 0; p < (start == GEMM_NAIVE ? 1 : 2); p++) {
        gemm_set_path(paths[p]);
        for (size_t c = 0; c < sizeof attention_cases / sizeof attention_cases[0]; c++)
            run_case(fx, attention_cases[c], (const bool[]){true, true, true},
                     paths[p] == GEMM_NAIVE ? "naive" : "blas");
    }
    gemm_set_path(start);
}

TEST(attention_frozen_inputs_get_no_gradient) {
    /* Only the inputs that require a gradient get one; the others get no buffer at all. */
    Fixture *fx = fixture_open("attention");
    if (!fx) return;
    run_case(fx, "odd_causal", (const bool[]){true, false, false}, "q only");
    run_case(fx, "odd", (const bool[]){false, false, true}, "v only");
    run_case(fx, "value_hs", (const bool[]){false, true, false}, "k only");
    /* Nothing requires a gradient: no tape, and P is scratch released before returning. */
    ag_tape_reset();
    Tensor *q = test_randn(1, 4, SHAPE(1, 4, 64, 8)), *k = test_randn(2, 4, SHAPE(1, 4, 64, 8));
    Tensor *v = test_randn(3, 4, SHAPE(1, 4, 64, 8));
    size_t before = arena_used(tensor_arena());
    Tensor *out = tensor_attention(q, k, v, true, 0.35f);
    size_t used = arena_used(tensor_arena()) - before, probs_bytes = 4 * 64 * 64 * sizeof(float);
    EXPECT(ag_tape_length() == 0 && !out->requires_grad, "frozen attention recorded %d nodes",
           ag_tape_length());
    EXPECT(used < probs_bytes, "no-grad attention kept %zu bytes (P alone is %zu)", used,
           probs_bytes);
}

/* Double-precision attention for one (b, h) problem and its gradients for upstream dout. */
static void naive_attention(const float *q, const float *k, const float *v, const float *dout,
                            int64_t T, int64_t S, int64_t HS, bool causal, double scale,
                            double *out, double *dq, double *dk, double *dv) {
    double *P = calloc((size_t)(T * S), sizeof *P), *dS = calloc((size_t)(T * S), sizeof *dS);
    for (int64_t i = 0; i < T; i++) {
        int64_t n = causal ? i + 1 : S;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t d = 0; d < HS; d++) s += (double)q[i * HS + d] * k[j * HS + d];
            P[i * S + j] = s * scale;
            mx = fmax(mx, s * scale);
        }
        for (int64_t j = 0; j < n; j++) sum += P[i * S + j] = exp(P[i * S + j] - mx);
        for (int64_t j = 0; j < n; j++) P[i * S + j] /= sum;
    }
    memset(dq, 0, sizeof(double) * T * HS);
    memset(dk, 0, sizeof(double) * S * HS);
    memset(dv, 0, sizeof(double) * S * HS);
    for (int64_t i = 0; i < T; i++) {
        double dot = 0;
        for (int64_t d = 0; d < HS; d++) {
            double o = 0;
            for (int64_t j = 0; j < S; j++) o += P[i * S + j] * v[j * HS + d];
            out[i * HS + d] = o;
        }
        for (int64_t j = 0; j < S; j++) {
            double dp = 0;
            for (int64_t d = 0; d < HS; d++) {
                dp += (double)dout[i * HS + d] * v[j * HS + d];
                dv[j * HS + d] += P[i * S + j] * dout[i * HS + d];
            }
            dS[i * S + j] = dp;
            dot += dp * P[i * S + j];
        }
        for (int64_t j = 0; j < S; j++) dS[i * S + j] = P[i * S + j] * (dS[i * S + j] - dot);
    }
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < S; j++)
            for (int64_t d = 0; d < HS; d++) {
                dq[i * HS + d] += scale * dS[i * S + j] * k[j * HS + d];
                dk[j * HS + d] += scale * dS[i * S + j] * q[i * HS + d];
            }
    free(P);
    free(dS);
}

static void to_float(float *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

TEST(attention_single_query_realistic_vs_double) {
    /* CLIP attention pooling at 224 px: query token 0 against HW+1 = 50 keys, 32 heads of 64. */
    const int64_t B = 2, NH = 32, T = 1, S = 50, HS = 64, BH = B * NH;
    const float scale = 0.125f;
    Tensor *q = test_randn(41, 4, SHAPE(B, NH, T, HS)), *k = test_randn(42, 4, SHAPE(B, NH, S, HS));
    Tensor *v = test_randn(43, 4, SHAPE(B, NH, S, HS)), *dout = test_randn(44, 4, SHAPE(B, NH, T, HS));
    Tensor *in[3] = {q, k, v};
    for (int i = 0; i < 3; i++) ag_set_requires_grad(in[i], NULL);
    Tensor *out = tensor_attention(q, k, v, false, scale);
    ag_backward_with(out, dout);

    int64_t nq = T * HS, nk = S * HS;
    double *o = malloc(sizeof(double) * nq), *dq = malloc(sizeof(double) * nq);
    double *dk = malloc(sizeof(double) * nk), *dv = malloc(sizeof(double) * nk);
    float *ref_out = malloc(sizeof(float) * BH * nq), *ref_dq = malloc(sizeof(float) * BH * nq);
    float *ref_dk = malloc(sizeof(float) * BH * nk), *ref_dv = malloc(sizeof(float) * BH * nk);
    for (int64_t p = 0; p < BH; p++) {
        naive_attention(tensor_f32(q) + p * nq, tensor_f32(k) + p * nk, tensor_f32(v) + p * nk,
                        tensor_f32(dout) + p * nq, T, S, HS, false, scale, o, dq, dk, dv);
        to_float(ref_out + p * nq, o, nq);
        to_float(ref_dq + p * nq, dq, nq);
        to_float(ref_dk + p * nk, dk, nk);
        to_float(ref_dv + p * nk, dv, nk);
    }
    double atol = tol_matmul_atol(HS > S ? HS : S);
    EXPECT_CLOSE_N("single query out", tensor_f32(out), ref_out, BH * nq, atol, TOL_MATMUL_RTOL);
    EXPECT_CLOSE_N("single query dq", tensor_f32(q->grad), ref_dq, BH * nq, atol, TOL_MATMUL_RTOL);
    EXPECT_CLOSE_N("single query dk", tensor_f32(k->grad), ref_dk, BH * nk, atol, TOL_MATMUL_RTOL);
    EXPECT_CLOSE_N("single query dv", tensor_f32(v->grad), ref_dv, BH * nk, atol, TOL_MATMUL_RTOL);
    free(o), free(dq), free(dk), free(dv);
    free(ref_out), free(ref_dq), free(ref_dk), free(ref_dv);
}

typedef struct { bool causal; float scale; } AttnCtx;

static Tensor *gc_attention(Tensor *const *in, void *ctx) {
    const AttnCtx *c = ctx;
    return tensor_attention(in[0], in[1], in[2], c->causal, c->scale);
}

TEST(attention_gradcheck) {
    /* Shapes no fixture has: a value head size of its own, causal with B > 1, and the
     * realistic single-query size (256 sampled coordinates per input). */
    struct { const char *name; int64_t B, NH, T, S, HS, HSV; AttnCtx ctx; } cases[] = {
        {"attention noncausal", 1, 2, 3, 6, 5, 3, {false, 0.45f}},
        {"attention causal", 2, 2, 6, 6, 3, 3, {true, 0.6f}},
        {"attention single query", 2, 32, 1, 50, 64, 64, {false, 0.125f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Tensor *q = test_randn(51 + c, 4, SHAPE(cases[c].B, cases[c].NH, cases[c].T, cases[c].HS));
        Tensor *k = test_randn(61 + c, 4, SHAPE(cases[c].B, cases[c].NH, cases[c].S, cases[c].HS));
        Tensor *v = test_randn(71 + c, 4, SHAPE(cases[c].B, cases[c].NH, cases[c].S, cases[c].HSV));
        EXPECT_GRADCHECK(cases[c].name, gc_attention, &cases[c].ctx, ((Tensor *[]){q, k, v}), 3,
                         NULL, NULL);
    }
}

/* ---- head split / merge ------------------------------------------------------------------- */

TEST(attention_heads_fixtures) {
    Fixture *fx = fixture_open("attention");
    if (!fx) return;
    const char *cases[] = {"split", "split_cols", "merge"};
    for (int c = 0; c < 3; c++) {
        Tensor *x = fx_input(fx, cases[c], "x", true);
        if (!x) return;
        Tensor *out = c == 0   ? tensor_attention_heads_split(x, 3)
                      : c == 1 ? tensor_attention_heads_split_cols(x, 12, 3, 4)
                               : tensor_attention_heads_merge(x);
        char what[96];
        snprintf(what, sizeof what, "attention %s out", cases[c]);
        /* Pure copies: exact. */
        EXPECT_TENSOR(what, out, fx_ref(fx, cases[c], "out"), 0, 0);
        ag_backward_with(out, fx_input(fx, cases[c], "dout", false));
        snprintf(what, sizeof what, "attention %s dx", cases[c]);
        EXPECT_TENSOR(what, x->grad, fx_ref(fx, cases[c], "dx"), 0, 0);
        ag_tape_reset();
    }
    /* merge(split(x)) == x */
    Tensor *x = test_randn(81, 3, SHAPE(3, 7, 10));
    Tensor *y = tensor_attention_heads_merge(tensor_attention_heads_split(x, 5));
    EXPECT_CLOSE_N("attention split/merge round trip", tensor_f32(y), tensor_f32(x), x->numel, 0, 0);
}

/* CLIP's self-attention block core: a fused (B,T,3C) projection split into q, k, v heads,
 * causal attention, heads merged. Checks that the three column slices' gradients add up. */
static Tensor *gc_fused_mha(Tensor *const *in, void *ctx) {
    const int64_t NH = 2, HS = 3, C = NH * HS;
    Tensor *q = tensor_attention_heads_split_cols(in[0], 0, NH, HS);
    Tensor *k = tensor_attention_heads_split_cols(in[0], C, NH, HS);
    Tensor *v = tensor_attention_heads_split_cols(in[0], 2 * C, NH, HS);
    return tensor_attention_heads_merge(tensor_attention(q, k, v, true, 0.5f));
}

TEST(attention_heads_gradcheck) {
    Tensor *qkv = test_randn(91, 3, SHAPE(2, 5, 18));
    EXPECT_GRADCHECK("attention fused qkv", gc_fused_mha, NULL, &qkv, 1, NULL, NULL);
}

/* Backward accumulates: gradient buffers that already hold values (another use of the same
 * tensor, or an earlier backward) end with those values plus this op's gradient. */
TEST(attention_backward_accumulates) {
    Fixture *fx = fixture_open("attention");
    if (!fx) return;
    struct { const char *cs, *in; int op; } cases[] = {
        {"odd_causal", "q", 0}, {"odd_causal", "k", 0}, {"odd_causal", "v", 0},
        {"split_cols", "x", 1}, {"merge", "x", 2}};
    for (int c = 0; c < 5; c++) {
        const char *cs = cases[c].cs;
        Tensor *x[3] = {NULL, NULL, NULL};
        int nin = cases[c].op == 0 ? 3 : 1;
        const char *names[3] = {"q", "k", "v"};
        int which = 0;
        for (int i = 0; i < nin; i++) {
            const char *name = nin == 1 ? "x" : names[i];
            if (!(x[i] = fx_input(fx, cs, name, false))) return;
            if (strcmp(name, cases[c].in) == 0) which = i;
        }
        Tensor *prior = test_randn(101 + c, x[which]->ndim, x[which]->shape);
        Tensor *grad = tensor_empty_like(prior);
        memcpy(grad->data, prior->data, (size_t)prior->numel * sizeof(float));
        ag_set_requires_grad(x[which], grad);
        Tensor *out = cases[c].op == 0
                          ? tensor_attention(x[0], x[1], x[2], true, fx_ref(fx, cs, "scale")->f32[0])
                      : cases[c].op == 1 ? tensor_attention_heads_split_cols(x[0], 12, 3, 4)
                                         : tensor_attention_heads_merge(x[0]);
        ag_backward_with(out, fx_input(fx, cs, "dout", false));
        char key[160], what[160];
        snprintf(key, sizeof key, "%s/d%s", cs, cases[c].in);
        Tensor *ref = fixture_tensor(fx, key);
        if (!ref) return;
        float *r = tensor_f32(ref);
        for (int64_t i = 0; i < ref->numel; i++) r[i] += tensor_f32(prior)[i];
        snprintf(what, sizeof what, "attention %s d%s accumulated", cs, cases[c].in);
        /* Copies add the same two floats as the reference does: exact. */
        double atol = nin == 3 ? case_atol(x[0], x[1], x[2]) : 0, rtol = nin == 3 ? TOL_MATMUL_RTOL : 0;
        EXPECT_CLOSE_N(what, tensor_f32(grad), r, ref->numel, atol, rtol);
        ag_tape_reset();
    }
}

/* ---- packed sequences, heads in place ------------------------------------------------------ */


typedef struct {
    const AttentionGroup *g;
    int ng;
    int64_t NH, HS, qcol, kcol, vcol;
    bool last;
    float scale;
} PackedCase;

static Tensor *packed_op(Tensor *q, Tensor *kv, const PackedCase *c) {
    return tensor_attention_packed(q, c->qcol, kv, c->kcol, c->vcol, c->g, c->ng, c->NH, c->HS,
                                   c->last, c->scale);
}

/* The reference: every sequence on its own, sliced out, split into heads, through
 * tensor_attention, merged, and the results concatenated: the ops tested above. */
static Tensor *packed_by_parts(Tensor *q, Tensor *kv, const PackedCase *c) {
    const int64_t C = c->NH * c->HS, Wq = q->shape[1], Wkv = kv->shape[1];
    int64_t nseq = 0, qr = 0, kr = 0;
    for (int k = 0; k < c->ng; k++) nseq += c->g[k].n;
    Tensor **outs = malloc((size_t)nseq * sizeof *outs);
    int s = 0;
    for (int k = 0; k < c->ng; k++)
        for (int64_t i = 0; i < c->g[k].n; i++) {
            const int64_t len = c->g[k].len, tq = c->last ? 1 : len;
            Tensor *qs = tensor_reshape(tensor_slice(q, 0, qr, tq), 3, SHAPE(1, tq, Wq));
            Tensor *ks = tensor_reshape(tensor_slice(kv, 0, kr, len), 3, SHAPE(1, len, Wkv));
            Tensor *a = tensor_attention(tensor_attention_heads_split_cols(qs, c->qcol, c->NH, c->HS),
                                         tensor_attention_heads_split_cols(ks, c->kcol, c->NH, c->HS),
                                         tensor_attention_heads_split_cols(ks, c->vcol, c->NH, c->HS),
                                         !c->last, c->scale);
            outs[s++] = tensor_reshape(tensor_attention_heads_merge(a), 2, SHAPE(tq, C));
            qr += tq;
            kr += len;
        }
    Tensor *out = tensor_concat(outs, s, 0);
    free(outs);
    return out;
}

/* A fused (R, 3C) projection, every row a causal query; and separate last-row queries against a
 * keys-and-values matrix, both at column offsets inside wider matrices. */
static const AttentionGroup packed_groups[] = {{2, 3}, {1, 5}, {3, 4}, {1, 1}};
static const PackedCase packed_fused = {packed_groups, 4, 2, 3, 0, 6, 12, false, 0.45f};
static const PackedCase packed_last = {packed_groups, 4, 2, 3, 1, 2, 8, true, 0.6f};
#define PACKED_R (2 * 3 + 5 + 3 * 4 + 1)
#define PACKED_B 7

/* out and the inputs' gradients for upstream dout, by `op` or by parts; q == kv when fused. */
static void packed_run(bool by_parts, const PackedCase *c, uint64_t seed, Tensor **out,
                       Tensor **dq, Tensor **dkv) {
    const bool fused = !c->last;
    Tensor *kv = test_randn(seed, 2, SHAPE(PACKED_R, fused ? 18 : 14));
    Tensor *q = fused ? kv : test_randn(seed + 1, 2, SHAPE(PACKED_B, 8));
    ag_set_requires_grad(kv, NULL);
    if (!fused) ag_set_requires_grad(q, NULL);
    *out = by_parts ? packed_by_parts(q, kv, c) : packed_op(q, kv, c);
    ag_backward_with(*out, test_randn(seed + 2, 2, (*out)->shape));
    *dq = q->grad;
    *dkv = kv->grad;
    ag_tape_reset();
}

TEST(attention_packed_matches_by_parts) {
    const PackedCase *cases[2] = {&packed_fused, &packed_last};
    GemmPath start = gemm_path();
    GemmPath paths[2] = {start, GEMM_NAIVE};
    for (int p = 0; p < (start == GEMM_NAIVE ? 1 : 2); p++) {
        gemm_set_path(paths[p]);
        for (int c = 0; c < 2; c++) {
            Tensor *out[2], *dq[2], *dkv[2];
            for (int by = 0; by < 2; by++)
                packed_run(by, cases[c], 111 + 10 * c, &out[by], &dq[by], &dkv[by]);
            char what[96];
            const char *tag = c ? "last rows" : "fused causal";
            /* The same sums over the same terms (len <= 5 keys, HS = 3); only the GEMM's blocking
             * may differ between a head read in place and a copied one. */
            double atol = tol_matmul_atol(5);
            EXPECT(out[0]->shape[0] == out[1]->shape[0] && out[0]->shape[1] == 6,
                   "attention_packed %s: out %s, by parts %s", tag, tensor_shape_str(out[0]),
                   tensor_shape_str(out[1]));
            snprintf(what, sizeof what, "attention_packed %s out", tag);
            EXPECT_CLOSE_N(what, tensor_f32(out[0]), tensor_f32(out[1]), out[1]->numel, atol,
                           TOL_MATMUL_RTOL);
            snprintf(what, sizeof what, "attention_packed %s dkv", tag);
            EXPECT_CLOSE_N(what, tensor_f32(dkv[0]), tensor_f32(dkv[1]), dkv[1]->numel, atol,
                           TOL_MATMUL_RTOL);
            snprintf(what, sizeof what, "attention_packed %s dq", tag);
            EXPECT_CLOSE_N(what, tensor_f32(dq[0]), tensor_f32(dq[1]), dq[1]->numel, atol,
                           TOL_MATMUL_RTOL);
        }
    }
    gemm_set_path(start);
}

static Tensor *gc_packed(Tensor *const *in, void *ctx) {
    const PackedCase *c = ctx;
    return packed_op(in[0], c->last ? in[1] : in[0], c);
}

TEST(attention_packed_gradcheck) {
    Tensor *qkv = test_randn(121, 2, SHAPE(PACKED_R, 18));
    EXPECT_GRADCHECK("attention_packed fused causal", gc_packed, (void *)&packed_fused, &qkv, 1,
                     NULL, NULL);
    Tensor *q = test_randn(122, 2, SHAPE(PACKED_B, 8)), *kv = test_randn(123, 2, SHAPE(PACKED_R, 14));
    EXPECT_GRADCHECK("attention_packed last rows", gc_packed, (void *)&packed_last,
                     ((Tensor *[]){q, kv}), 2, NULL, NULL);
}

TEST(attention_packed_frozen_keys_and_no_tape) {
    /* Queries that learn against frozen keys and values: only q gets a buffer. */
    Tensor *q = test_randn(131, 2, SHAPE(PACKED_B, 8)), *kv = test_randn(132, 2, SHAPE(PACKED_R, 14));
    ag_set_requires_grad(q, NULL);
    Tensor *out = packed_op(q, kv, &packed_last);
    ag_backward_with(out, test_randn(133, 2, out->shape));
    EXPECT(q->grad && !kv->grad, "attention_packed: q grad %p, frozen kv grad %p",
           (void *)q->grad, (void *)kv->grad);
    ag_tape_reset();
    /* Nothing requires a gradient: no node, and the probabilities are scratch. */
    Tensor *qkv = test_randn(134, 2, SHAPE(PACKED_R, 18));
    size_t before = arena_used(tensor_arena());
    out = packed_op(qkv, qkv, &packed_fused);
    size_t used = arena_used(tensor_arena()) - before;
    EXPECT(ag_tape_length() == 0 && !out->requires_grad && used < 2 * (size_t)out->numel *
           sizeof(float) + 256, "attention_packed without a tape: %d nodes, %zu bytes kept",
           ag_tape_length(), used);
}

/* The PyTorch fixtures: the same packing written out by parts in float64. */
TEST(attention_packed_fixtures) {
    Fixture *fx = fixture_open("attention");
    if (!fx) return;
    const char *cases[] = {"packed_fused", "packed_last"};
    for (int c = 0; c < 2; c++) {
        const char *cs = cases[c];
        const FixtureTensor *fg = fx_ref(fx, cs, "groups"), *fh = fx_ref(fx, cs, "heads");
        const FixtureTensor *fs = fx_ref(fx, cs, "scale");
        if (!fg || !fh || !fs) return;
        AttentionGroup g[8];
        const int ng = (int)(fg->numel / 2);
        EXPECT(ng >= 1 && ng <= 8, "attention %s: %d runs in the fixture", cs, ng);
        if (ng < 1 || ng > 8) return;
        for (int k = 0; k < ng; k++) g[k] = (AttentionGroup){fg->i64[2 * k], fg->i64[2 * k + 1]};
        const int64_t *h = fh->i64;
        const bool last = h[5] != 0;
        Tensor *q = fx_input(fx, cs, last ? "q" : "qkv", true);
        Tensor *kv = last ? fx_input(fx, cs, "kv", true) : q;
        if (!q || !kv) return;
        Tensor *out = tensor_attention_packed(q, h[2], kv, h[3], h[4], g, ng, h[0], h[1], last,
                                              fs->f32[0]);
        int64_t maxlen = h[1];
        for (int k = 0; k < ng; k++) maxlen = g[k].len > maxlen ? g[k].len : maxlen;
        const double atol = tol_matmul_atol(maxlen);
        char what[96];
        snprintf(what, sizeof what, "attention %s out", cs);
        EXPECT_TENSOR(what, out, fx_ref(fx, cs, "out"), atol, TOL_MATMUL_RTOL);
        ag_backward_with(out, fx_input(fx, cs, "dout", false));
        snprintf(what, sizeof what, "attention %s d%s", cs, last ? "q" : "qkv");
        EXPECT_TENSOR(what, q->grad, fx_ref(fx, cs, last ? "dq" : "dqkv"), atol, TOL_MATMUL_RTOL);
        if (last) {
            snprintf(what, sizeof what, "attention %s dkv", cs);
            EXPECT_TENSOR(what, kv->grad, fx_ref(fx, cs, "dkv"), atol, TOL_MATMUL_RTOL);
        }
        ag_tape_reset();
    }
}
