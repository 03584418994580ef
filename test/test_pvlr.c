/* test_pvlr.c — the PVLR head (trmml/pvlr.c; SPEC §5; docs/pvlr.md):
 *   - the learnable-parameter count of the COCO/RN101 model (declare-only, as `trmml train`
 *     builds it) against the hand count of SPEC §5.8's architecture: 14,457,425;
 *   - each ablation switch removes exactly its parameters;
 *   - KAP constants, L0, V1, L1, S, logits, both ASL settings and the gradients of every
 *     learnable tensor, of T^C and of the dense input against a PyTorch implementation
 *     (scripts/fixtures_pvlr.py), dropout off;
 *   - each switched-off component is replaced as documented (forward);
 *   - dropout: applied in training (deterministic for a seed), absent in evaluation;
 *   - finite-difference gradcheck on a tiny head;
 *   - the visualisation maps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test/test.h"
#include "trmml/method_pvlr.h"
#include "trmml/pvlr.h"
#include "trmml/train.h"

/* ---- parameter counts (SPEC §5.8) -------------------------------------------------------- */

/* By hand, d = 512, FFN 2048, C = 80 (docs/pvlr.md "Parameter count"):
 *   attention (q, k, v, o with biases) 4(d² + d) = 1,050,624;  FFN 2·d·2048 + 2048 + d = 2,099,712;
 *   LayerNorm 2d = 1,024;  one post-norm layer = attention + FFN + 2 LN = 3,152,384.
 *   KAP      W_K d² + LN                                      =    263,168
 *   CAP      contexts 16·512 + one layer                      =  3,160,576
 *   IFM      2 (attention + LN) + gate 2d·d + d + FFN + LN    =  4,728,832
 *   DMA      two layers                                       =  6,304,768
 *   t, b     1 + C                                            =         81
 *   total                                                     = 14,457,425 (13.79·2^20) */
#define PVLR_COCO_PARAMS 14457425

static int64_t model_count(const RunConfig *rc, int64_t C) {
    TrmmlModel m;
    trmml_model_declare(&m, rc, C, 512, 512);
    int64_t n = param_numel_trainable(m.ps);
    trmml_model_free(&m);
    return n;
}

TEST(pvlr_param_count_coco) {
    RunConfig rc = run_config_default(TRMML_METHOD_PVLR, "coco2014");
    const int64_t n = model_count(&rc, 80);
    EXPECT(n == PVLR_COCO_PARAMS, "COCO/RN101: %lld learnable, by hand %d", (long long)n,
           PVLR_COCO_PARAMS);
    const MethodPvlrConfig *pc = method_pvlr_config(&rc);
    EXPECT(n == pvlr_param_count(80, 512, &rc.tc, pc) + 16 * 512, "formula %lld + contexts",
           (long long)pvlr_param_count(80, 512, &rc.tc, pc));
    /* VOC: 60 classes fewer, one bias each. */
    EXPECT(model_count(&rc, 20) == PVLR_COCO_PARAMS - 60, "VOC %lld", (long long)model_count(&rc, 20));
}

TEST(pvlr_ablation_param_sets) {
    const int64_t d = 512, layer = 3152384, ifm = 4728832, kap = d * d + 2 * d, ctx = 16 * 512;
    struct {
        const char *key;
        int64_t removed;
        const char *absent, *present;
    } cases[] = {
        {"pvlr_kap", kap + ifm, "pvlr.kap.weight", "pvlr.cap.attn.q.weight"},
        {"pvlr_cap", layer + ctx + ifm, "prompt.ctx_pos", "pvlr.kap.weight"},
        {"pvlr_ifm", ifm, "pvlr.ifm.gate.weight", "pvlr.kap.weight"},
        {"pvlr_dma_t2v", layer, "pvlr.t2v.ffn1.weight", "pvlr.v2t.ffn1.weight"},
        {"pvlr_dma_v2t", layer, "pvlr.v2t.attn.o.bias", "pvlr.t2v.attn.o.bias"},
        {"pvlr_global", 0, "prompt.ctx_neg", "pvlr.class_bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RunConfig rc = run_config_default(TRMML_METHOD_PVLR, "coco2014");
        EXPECT(run_config_set(&rc, cases[i].key, "false") == STATUS_OK, "%s", error_last());
        TrmmlModel m;
        trmml_model_declare(&m, &rc, 80, 512, 512);
        const int64_t n = param_numel_trainable(m.ps);
        EXPECT(n == PVLR_COCO_PARAMS - cases[i].removed, "%s off: %lld learnable, expected %lld",
               cases[i].key, (long long)n, (long long)(PVLR_COCO_PARAMS - cases[i].removed));
        EXPECT(!param_find(m.ps, cases[i].absent), "%s off still declares %s", cases[i].key,
               cases[i].absent);
        EXPECT(param_find(m.ps, cases[i].present), "%s off lost %s", cases[i].key,
               cases[i].present);
        trmml_model_free(&m);
    }
    RunConfig rc = run_config_default(TRMML_METHOD_PVLR, "coco2014");
    method_pvlr_config(&rc)->pvlr_use_kap = method_pvlr_config(&rc)->pvlr_use_cap = false;
    EXPECT(trmml_method_ops(TRMML_METHOD_PVLR)->config_validate(&rc) == STATUS_ERR_USAGE,
           "KAP and CAP both off accepted");
}

/* ---- the PyTorch fixture ------------------------------------------------------------------ */

typedef struct {
    RunConfig cfg;
    ParamStore *ps;
    PvlrHead m;
    Tensor *dense, *text_ctx, *y, *y_full;
} Head;

static const FixtureTensor *get(Fixture *fx, const char *name) {
    char key[256];
    snprintf(key, sizeof key, "pvlr/%.200s", name);
    return fixture_get(fx, key);
}

/* The fixture's head with some components switched off (NULL: all on); parameters by name. */
static bool head_load(Fixture *fx, Head *h, const char *off) {
    const FixtureTensor *sz = get(fx, "sizes"), *args = get(fx, "args"), *raw = get(fx, "kap_raw");
    if (!sz || !args || !raw) return false;
    const int64_t C = sz->i64[0], d = sz->i64[1];
    RunConfig *c = &h->cfg;
    *c = run_config_default(TRMML_METHOD_PVLR, NULL);
    MethodPvlrConfig *pc = method_pvlr_config(c);
    pc->pvlr_heads = sz->i64[2];
    c->tc.ffn_hidden = sz->i64[5];
    c->tc.dropout = 0.0;
    pc->pvlr_kap_tau = args->f32[0];
    pc->pvlr_spatial_temp = args->f32[1];
    c->tc.ln_eps = args->f32[2];
    c->tc.asl_clip = args->f32[3];
    c->tc.asl_eps = args->f32[4];
    c->tc.temp_max = args->f32[5];
    if (off) CHECK(run_config_set(c, off, "false") == STATUS_OK, "%s", error_last());
    h->ps = param_store_create(DEVICE_CPU, "pvlr");
    pvlr_declare(&h->m, h->ps, "pvlr", C, d, &c->tc, pc, false);
    param_store_finalize(h->ps);
    if (!fixture_fill_params(fx, h->ps, "pvlr/p/")) return false;
    pvlr_set_knowledge(&h->m, raw->f32);
    h->dense = test_case_input(fx, "pvlr", "dense", true);
    h->text_ctx = test_case_input(fx, "pvlr", "text_ctx", true);
    h->y = test_case_input(fx, "pvlr", "y", false);
    h->y_full = test_case_input(fx, "pvlr", "y_full", false);
    return h->dense && h->text_ctx && h->y && h->y_full;
}

static void head_free(Head *h) {
    pvlr_free(&h->m);
    param_store_destroy(h->ps);
}

TEST(pvlr_fixture_forward_loss_gradients) {
    Fixture *fx = fixture_open("pvlr");
    if (!fx) return;
    Head h;
    if (!head_load(fx, &h, NULL)) return;
    EXPECT_TENSOR("kap_text", h.m.kap_text, get(fx, "kap_text"), TOL_REDUCE_ATOL, TOL_REDUCE_RTOL);
    EXPECT_TENSOR("kap_relation_text", h.m.kap_relation_text, get(fx, "kap_relation_text"),
                  TOL_REDUCE_ATOL, TOL_REDUCE_RTOL);
    PvlrOut out;
    pvlr_forward(&h.m, h.dense, h.text_ctx, true, NULL, &out);
    EXPECT_TENSOR("labels L0", out.labels, get(fx, "labels"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("visual V1", out.visual, get(fx, "visual"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("label_ctx L1", out.label_ctx, get(fx, "label_ctx"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("sim S", out.sim, get(fx, "sim"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("logits z", out.logits, get(fx, "logits"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);

    /* The full-label setting, as auto resolves it when every label is known (γ+ 0, γ− 4). */
    ParamStore *scratch = param_store_create(DEVICE_CPU, "scratch");
    PvlrHead full;
    pvlr_declare(&full, scratch, "pvlr", h.m.C, h.m.d, &h.cfg.tc, method_pvlr_config(&h.cfg), true);
    EXPECT(full.asl_gamma_pos == 0.0f && full.asl_gamma_neg == 4.0f,
           "auto with full labels resolved to γ+ %g γ− %g", full.asl_gamma_pos, full.asl_gamma_neg);
    PvlrHead with_full = h.m;
    with_full.asl_gamma_pos = full.asl_gamma_pos;
    with_full.asl_gamma_neg = full.asl_gamma_neg;
    EXPECT_TENSOR("loss_full", pvlr_loss(&with_full, out.logits, h.y_full), get(fx, "loss_full"),
                  TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    param_store_destroy(scratch);
    /* The partial-label setting (γ+ 1, γ− 2; unknowns ignored) drives the gradients. */
    EXPECT(h.m.asl_gamma_pos == 1.0f && h.m.asl_gamma_neg == 2.0f, "auto with partial labels "
           "resolved to γ+ %g γ− %g", h.m.asl_gamma_pos, h.m.asl_gamma_neg);
    Tensor *loss = pvlr_loss(&h.m, out.logits, h.y);
    EXPECT_TENSOR("loss_partial", loss, get(fx, "loss_partial"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    Tensor *dout = test_case_input(fx, "pvlr", "dout", false);
    param_zero_grad(h.ps);
    ag_backward_with(loss, dout);
    int checked = 0;
    for (int i = 0; i < param_count(h.ps); i++) {
        Tensor *t = param_at(h.ps, i);
        char key[160];
        snprintf(key, sizeof key, "d/%.150s", t->name);
        EXPECT(t->grad != NULL, "%s has no gradient", t->name);
        if (t->grad) EXPECT_TENSOR(t->name, t->grad, get(fx, key), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
        checked++;
    }
    EXPECT(checked == 81, "%d learnable tensors compared, 81 expected", checked);
    EXPECT_TENSOR("dtext_ctx", h.text_ctx->grad, get(fx, "dtext_ctx"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("ddense", h.dense->grad, get(fx, "ddense"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT(h.m.kap_text->grad == NULL && h.m.kap_relation_text->grad == NULL,
           "the frozen KAP constants received a gradient");
    head_free(&h);
}

/* ---- ablation forwards -------------------------------------------------------------------- */

TEST(pvlr_ablation_forward) {
    Fixture *fx = fixture_open("pvlr");
    if (!fx) return;
    const FixtureTensor *kref = get(fx, "kap_out"), *cref = get(fx, "cap_out");
    if (!kref || !cref) return;
    /* CAP off: L0 = K; KAP off: L0 = Cx; IFM off: L0 = (K + Cx)/2 (docs/pvlr.md). */
    const char *offs[3] = {"pvlr_cap", "pvlr_kap", "pvlr_ifm"};
    for (int i = 0; i < 3; i++) {
        Head h;
        if (!head_load(fx, &h, offs[i])) return;
        const int64_t n = kref->numel;
        float *want = xmalloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++)
            want[j] = i == 0 ? kref->f32[j] : i == 1 ? cref->f32[j] : 0.5f * (kref->f32[j] + cref->f32[j]);
        Tensor *l0 = pvlr_labels(&h.m, h.text_ctx, false, NULL);
        char what[64];
        snprintf(what, sizeof what, "L0 with %s off", offs[i]);
        EXPECT(l0->numel == n, "%s: %lld values", what, (long long)l0->numel);
        EXPECT_CLOSE_N(what, tensor_f32(l0), want, n, TOL_MODEL_ATOL, TOL_MODEL_RTOL);
        free(want);
        head_free(&h);
    }
    /* DMA text->visual off: V1 = Vtok; visual->text off: L1_b = L0 for every image; global off:
     * z = s a + b. */
    Head h;
    if (!head_load(fx, &h, "pvlr_dma_t2v")) return;
    PvlrOut out;
    pvlr_forward(&h.m, h.dense, h.text_ctx, false, NULL, &out);
    const int64_t B = h.dense->shape[0], T = h.dense->shape[1], d = h.m.d, C = h.m.C;
    const float *z = tensor_f32(h.dense);
    for (int64_t b = 0; b < B; b++)
        EXPECT_CLOSE_N("V1 = Vtok", tensor_f32(out.visual) + b * (T - 1) * d, z + (b * T + 1) * d,
                       (T - 1) * d, 0, 0);
    head_free(&h);
    if (!head_load(fx, &h, "pvlr_dma_v2t")) return;
    pvlr_forward(&h.m, h.dense, h.text_ctx, false, NULL, &out);
    for (int64_t b = 0; b < B; b++)
        EXPECT_CLOSE_N("L1 = L0", tensor_f32(out.label_ctx) + b * C * d, tensor_f32(out.labels),
                       C * d, 0, 0);
    head_free(&h);
    if (!head_load(fx, &h, "pvlr_global")) return;
    pvlr_forward(&h.m, h.dense, h.text_ctx, false, NULL, &out);
    const int64_t HW = T - 1;
    const float s = expf(tensor_f32(h.m.logit_scale)[0]);
    for (int64_t i = 0; i < B * C; i++) {
        double a = 0;
        for (int64_t p = 0; p < HW; p++)
            a += (double)tensor_f32(out.weights)[i * HW + p] * tensor_f32(out.sim)[i * HW + p];
        const float want = (float)(s * a) + tensor_f32(h.m.class_bias)[i % C];
        EXPECT(fabsf(tensor_f32(out.logits)[i] - want) <= 1e-5f + 1e-5f * fabsf(want),
               "global off: z[%lld] %g, s a + b %g", (long long)i, tensor_f32(out.logits)[i], want);
    }
    /* With the global term, the fixture's logits differ from the spatial term alone. */
    const FixtureTensor *zref = get(fx, "logits");
    double diff = 0;
    for (int64_t i = 0; i < B * C; i++) diff = fmax(diff, fabs(tensor_f32(out.logits)[i] - zref->f32[i]));
    EXPECT(diff > 1e-2, "switching the global term off changed the logits by only %g", diff);
    head_free(&h);
}

/* ---- dropout ------------------------------------------------------------------------------ */

static void random_head(Head *h, int64_t C, int64_t d, int64_t heads, int64_t ffn, double dropout,
                        uint64_t seed) {
    h->cfg = run_config_default(TRMML_METHOD_PVLR, NULL);
    method_pvlr_config(&h->cfg)->pvlr_heads = heads;
    h->cfg.tc.ffn_hidden = ffn;
    h->cfg.tc.dropout = dropout;
    h->ps = param_store_create(DEVICE_CPU, "pvlr");
    pvlr_declare(&h->m, h->ps, "pvlr", C, d, &h->cfg.tc, method_pvlr_config(&h->cfg), false);
    param_store_finalize(h->ps);
    Rng rng;
    rng_seed(&rng, seed);
    pvlr_init(&h->m, &rng);
    /* W_K starts at 0; make it (and the biases) non-trivial so every path carries signal. */
    float *w = xmalloc((size_t)(d * d) * sizeof(float));
    rng_fill_normal(&rng, w, d * d, 0, 0.2f);
    tensor_copy_from_host(h->m.kap_weight, w);
    rng_fill_normal(&rng, w, C, 0, 0.3f);
    tensor_copy_from_host(h->m.class_bias, w);
    rng_fill_normal(&rng, w, C * d, 0, 1);
    pvlr_set_knowledge(&h->m, w);
    free(w);
    h->text_ctx = test_randn(seed + 1, 2, SHAPE(C, d));
    h->dense = NULL;
    h->y = h->y_full = NULL;
}

static bool same(const Tensor *a, const Tensor *b) {
    return a->numel == b->numel && memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0;
}

TEST(pvlr_dropout_train_only) {
    Head h;
    random_head(&h, 6, 32, 4, 24, 0.1, 5);
    Tensor *dense = test_randn(9, 3, SHAPE(2, 10, 32));
    PvlrOut e1, e2, t1, t2, t3;
    pvlr_forward(&h.m, dense, h.text_ctx, false, NULL, &e1);
    pvlr_forward(&h.m, dense, h.text_ctx, false, NULL, &e2);
    EXPECT(same(e1.logits, e2.logits), "evaluation is not deterministic");
    DropoutDraws r = {.row0 = 0};
    rng_seed(&r.rng, 77);
    pvlr_forward(&h.m, dense, h.text_ctx, true, &r, &t1);
    rng_seed(&r.rng, 77);
    pvlr_forward(&h.m, dense, h.text_ctx, true, &r, &t2);
    rng_seed(&r.rng, 78);
    pvlr_forward(&h.m, dense, h.text_ctx, true, &r, &t3);
    EXPECT(same(t1.logits, t2.logits), "training with the same seed differs");
    EXPECT(!same(t1.logits, e1.logits), "training gives the evaluation logits: no dropout applied");
    EXPECT(!same(t1.logits, t3.logits), "two seeds give the same dropout");
    EXPECT(!same(t1.labels, e1.labels) && !same(t1.visual, e1.visual),
           "dropout missing in the label side or the visual side");
    /* Evaluation equals training with dropout 0 (no other train/eval difference). */
    h.m.dropout = 0.0f;
    pvlr_forward(&h.m, dense, h.text_ctx, true, NULL, &t1);
    EXPECT(same(t1.logits, e1.logits), "training without dropout differs from evaluation");
    head_free(&h);
}

/* ---- gradcheck ---------------------------------------------------------------------------- */

static Tensor *gc_loss(Tensor *const *in, void *ctx) {
    Head *h = ctx;
    PvlrOut out;
    pvlr_forward(&h->m, in[0], in[1], false, NULL, &out);
    return pvlr_loss(&h->m, out.logits, h->y);
}

/* ASL's detached focusing factors and its p - m clip kink make finite differences disagree by
 * design, so the check runs with γ+ = γ− = 0 and m = 0 (the fixture covers the real setting). */
TEST(pvlr_gradcheck) {
    Head h;
    random_head(&h, 3, 8, 2, 6, 0.0, 21);
    h.m.asl_gamma_pos = h.m.asl_gamma_neg = 0.0f;
    h.m.asl_clip = 0.0f;
    h.dense = test_randn(22, 3, SHAPE(2, 5, 8));
    ag_set_requires_grad(h.dense, NULL);
    ag_set_requires_grad(h.text_ctx, NULL);
    h.y = TENSOR_F32(2, 3);
    const float yv[6] = {1, -1, 0, -1, 1, 1};
    tensor_copy_from_host(h.y, yv);
    /* Four-point stencil: at eps = 1e-2 the curvature of the stacked LayerNorms and softmaxes
     * gives the two-point difference a truncation error of about 3e-3 (measured on W_K). */
    GradcheckOpts opts = {TOL_GRADCHECK_ATOL, TOL_GRADCHECK_RTOL, 64, true, 0, 7};
    Tensor *in[] = {h.dense, h.text_ctx, h.m.kap_weight, h.m.cap_attn.q.weight,
                    h.m.ifm_k2c.v.weight, h.m.gate.weight, h.m.ifm_ffn.fc1.bias, h.m.logit_scale};
    EXPECT_GRADCHECK("pvlr head (dense, T^C, W_K, CAP q, IFM v, gate, IFM FFN, t)", gc_loss, &h,
                     in, 8, NULL, &opts);
    Tensor *in2[] = {h.dense, h.text_ctx, h.m.t2v_attn.k.weight, h.m.t2v_ffn.fc2.weight,
                     h.m.v2t_attn.o.weight, h.m.v2t_norm2.weight, h.m.kap_norm.bias,
                     h.m.class_bias};
    const bool wrt2[] = {false, false, true, true, true, true, true, true};
    EXPECT_GRADCHECK("pvlr head (DMA k, FFN, o, LN, KAP LN, b)", gc_loss, &h, in2, 8, wrt2, &opts);
    head_free(&h);
}

/* ---- visualisation maps ------------------------------------------------------------------- */

TEST(pvlr_attention_maps) {
    Head h;
    random_head(&h, 4, 16, 2, 12, 0.1, 31);
    Tensor *dense = test_randn(32, 3, SHAPE(2, 10, 16));
    for (int t2v = 1; t2v >= 0; t2v--) {
        h.m.use_t2v = t2v; /* off: the prediction weights w (the layer's parameters go unused) */
        Tensor *maps = pvlr_attention_maps(&h.m, dense, h.text_ctx);
        EXPECT(maps->ndim == 3 && maps->shape[0] == 2 && maps->shape[1] == 4 && maps->shape[2] == 9,
               "maps %s", tensor_shape_str(maps));
        const float *v = tensor_f32(maps);
        for (int64_t i = 0; i < 8; i++) {
            float mx = 0, mn = 1;
            for (int64_t p = 0; p < 9; p++) mx = fmaxf(mx, v[i * 9 + p]), mn = fminf(mn, v[i * 9 + p]);
            EXPECT(mx == 1.0f && mn >= 0.0f && mn < 1.0f, "t2v %d map %lld spans [%g, %g]", t2v,
                   (long long)i, mn, mx);
        }
        if (!t2v) {
            /* The prediction weights, rescaled: the same argmax as w. */
            PvlrOut out;
            pvlr_predict(&h.m, dense, pvlr_labels(&h.m, h.text_ctx, false, NULL), false, NULL, &out);
            const float *w = tensor_f32(out.weights);
            for (int64_t i = 0; i < 8; i++) {
                int64_t a = 0, b = 0;
                for (int64_t p = 1; p < 9; p++) {
                    if (w[i * 9 + p] > w[i * 9 + a]) a = p;
                    if (v[i * 9 + p] > v[i * 9 + b]) b = p;
                }
                EXPECT(a == b, "map %lld: argmax %lld vs w's %lld", (long long)i, (long long)b,
                       (long long)a);
            }
        }
    }
    head_free(&h);
}
