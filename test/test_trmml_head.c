/* test_trmml_head.c — TRM-ML's head, MMCP and losses (trmml/carl.c, trmml/mmcp.c,
 * trmml/trmml_loss.c, trmml/trmml_config.c):
 *   - the learnable-parameter counts of SPEC §10.2 (COCO/RN101 7,129,089 and the others);
 *   - CARL + matching + MMCP pseudo-labels + L_cls + KD + MMCL + bank push against a PyTorch
 *     implementation (scripts/fixtures_trmml_head.py), folded and plain forms, every gradient;
 *   - the algebraic folding against the plain form on a larger random head;
 *   - MMCP on hand-built banks: FIFO, EMA thresholds, pseudo-label rules, fusion, single
 *     positive, top-k bank insertion;
 *   - finite-difference gradcheck of the whole loss on a tiny head;
 *   - the configuration parser and printer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "test/test.h"
#include "trmml/carl.h"
#include "trmml/mmcp.h"
#include "trmml/trmml_config.h"
#include "trmml/method_pvlr.h"
#include "trmml/method_trmml.h"
#include "trmml/trmml_loss.h"

/* The shared keys and TRM-ML's own, as the head functions take them. */
typedef struct {
    TrmmlConfig tc;
    MethodTrmmlConfig mc;
} HeadConfig;

static HeadConfig head_config_default(void) {
    return (HeadConfig){trmml_config_default(), method_trmml_config_default()};
}


/* ---- parameter counts (SPEC §10.2) ------------------------------------------------------- */

/* The prompt learner is not part of the head: 2 C 16 512 contexts, counted by formula. */
static int64_t prompt_count(int64_t C) { return 2 * C * 16 * 512; }

static int64_t declared_count(int64_t C, int64_t d) {
    HeadConfig cfg = head_config_default();
    ParamStore *ps = param_store_create(DEVICE_CPU, "count");
    TrmmlCarl m;
    trmml_carl_declare(&m, ps, "carl", C, d, &cfg.tc, &cfg.mc);
    int64_t n = param_numel_trainable(ps);
    EXPECT(n == trmml_carl_param_count(C, d, &cfg.tc, &cfg.mc), "C %lld d %lld: declared %lld vs formula %lld",
           (long long)C, (long long)d, (long long)n, (long long)trmml_carl_param_count(C, d, &cfg.tc, &cfg.mc));
    param_store_destroy(ps);
    return n;
}

TEST(trmml_head_param_count) {
    /* COCO / RN101: 7,129,089 in all (6.80 M in Table 5), of which the head is 5,818,369. */
    EXPECT(declared_count(80, 512) == 5818369, "COCO head %lld", (long long)declared_count(80, 512));
    EXPECT(declared_count(80, 512) + prompt_count(80) == 7129089, "COCO total");
    struct { const char *name; int64_t C, d, total; } rows[] = {
        {"VOC", 20, 512, 6115329},  {"NUS", 81, 512, 7145985},     {"VG-200", 200, 512, 9156609},
        {"CUB", 312, 512, 11048961}, {"COCO/RN50", 80, 1024, 16089089},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t got = declared_count(rows[i].C, rows[i].d) + prompt_count(rows[i].C);
        EXPECT(got == rows[i].total, "%s: %lld learnable, SPEC §10.2 says %lld", rows[i].name,
               (long long)got, (long long)rows[i].total);
    }
}

/* ---- the PyTorch fixture ------------------------------------------------------------------ */

typedef struct {
    HeadConfig cfg;
    ParamStore *ps;
    TrmmlCarl m;
    TrmmlMmcp mmcp;
    Tensor *f, *gpos, *gneg, *y;
} Head;

static const FixtureTensor *get(Fixture *fx, const char *name) {
    char key[256];
    snprintf(key, sizeof key, "head/%.200s", name);
    return fixture_get(fx, key);
}

/* Build the fixture's head (sizes, weights, bank, thresholds) with folding on or off. */
static bool head_load(Fixture *fx, Head *h, bool fold) {
    const FixtureTensor *sz = get(fx, "sizes"), *args = get(fx, "args");
    if (!sz || !args) return false;
    int64_t C = sz->i64[0], d = sz->i64[1];
    HeadConfig *c = &h->cfg;
    *c = head_config_default();
    c->tc.ffn_hidden = sz->i64[4];
    c->mc.mlp_hidden = sz->i64[5];
    c->mc.head_hidden = sz->i64[6];
    c->mc.mmcp_queue_len = sz->i64[7];
    c->mc.mmcp_k = sz->i64[8];
    c->tc.dropout = 0.0;
    c->mc.alpha = args->f32[0];
    c->mc.beta = args->f32[1];
    c->mc.gamma = args->f32[2];
    c->mc.nce_tau = args->f32[3];
    c->mc.mmcp_eta = args->f32[4];
    c->tc.ln_eps = args->f32[5];
    c->mc.region_eps = args->f32[6];
    c->tc.temp_max = args->f32[7];
    c->mc.attn_fold = fold;
    h->ps = param_store_create(DEVICE_CPU, "head");
    trmml_carl_declare(&h->m, h->ps, "carl", C, d, &c->tc, &c->mc);
    param_store_finalize(h->ps);
    if (!fixture_fill_params(fx, h->ps, "head/p/")) return false;
    trmml_mmcp_init(&h->mmcp, C, d, &c->mc);
    const FixtureTensor *bank = get(fx, "bank"), *fill = get(fx, "fill"), *write = get(fx, "write"),
                        *protos = get(fx, "protos"), *theta = get(fx, "theta"),
                        *init = get(fx, "theta_init");
    if (!bank || !fill || !write || !protos || !theta || !init) return false;
    memcpy(h->mmcp.bank, bank->f32, (size_t)bank->numel * sizeof(float));
    memcpy(h->mmcp.fill, fill->i64, (size_t)C * sizeof(int64_t));
    memcpy(h->mmcp.write, write->i64, (size_t)C * sizeof(int64_t));
    memcpy(h->mmcp.proto, protos->f32, (size_t)(C * d) * sizeof(float));
    h->mmcp.has_proto = true;
    memcpy(h->mmcp.theta, theta->f32, (size_t)(4 * C) * sizeof(float));
    for (int64_t i = 0; i < 4 * C; i++) h->mmcp.theta_init[i] = init->f32[i] != 0.0f;
    h->f = test_case_input(fx, "head", "f", false);
    h->gpos = test_case_input(fx, "head", "gpos", true);
    h->gneg = test_case_input(fx, "head", "gneg", true);
    h->y = test_case_input(fx, "head", "y", false);
    return h->f && h->gpos && h->gneg && h->y;
}

static void head_free(Head *h) {
    trmml_mmcp_free(&h->mmcp);
    param_store_destroy(h->ps);
}

/* Compare n floats where NAN means "undefined" on both sides. */
static void expect_close_nan(const char *what, const float *got, const FixtureTensor *ref) {
    if (!ref) return;
    for (int64_t i = 0; i < ref->numel; i++) {
        bool gn = isnan(got[i]), rn = isnan(ref->f32[i]);
        if (gn || rn) {
            EXPECT(gn && rn, "%s[%lld]: %g vs %g (one side undefined)", what, (long long)i, got[i], ref->f32[i]);
            continue;
        }
        EXPECT(fabs(got[i] - ref->f32[i]) <= TOL_MODEL_ATOL + TOL_MODEL_RTOL * fabs(ref->f32[i]),
               "%s[%lld]: %.7g vs %.7g", what, (long long)i, got[i], ref->f32[i]);
    }
}

static void run_fixture(bool fold) {
    Fixture *fx = fixture_open("trmml_head");
    if (!fx) return;
    Head h;
    if (!head_load(fx, &h, fold)) return;
    int64_t B = h.f->shape[0], C = h.m.C;

    TrmmlCarlOut out;
    trmml_carl_forward(&h.m, h.f, h.gpos, h.gneg, true, NULL, &out);
    EXPECT_TENSOR("phi", out.phi, get(fx, "phi"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("attn", out.attn, get(fx, "attn"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("regions", out.regions, get(fx, "regions"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("fq", out.fq, get(fx, "fq"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("fr", out.fr, get(fx, "fr"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("uq", out.uq, get(fx, "uq"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("ur", out.ur, get(fx, "ur"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);

    /* MMCP on the pre-batch bank (§4.9 step 5), then the targets (step 6). */
    float *sv = xmalloc((size_t)(B * C) * sizeof(float)), *st = xmalloc((size_t)(B * C) * sizeof(float));
    Tensor *pseudo = trmml_mmcp_pseudo_labels(&h.mmcp, out.fr, h.y, false, sv, st);
    expect_close_nan("sim_vis", sv, get(fx, "sim_vis"));
    expect_close_nan("sim_txt", st, get(fx, "sim_txt"));
    expect_close_nan("theta_after", h.mmcp.theta, get(fx, "theta_after"));
    free(sv);
    free(st);
    EXPECT_TENSOR("pseudo", pseudo, get(fx, "pseudo"), 0, 0);
    Tensor *targets = trmml_mmcp_targets(h.y, pseudo, false);
    EXPECT_TENSOR("targets", targets, get(fx, "targets"), 0, 0);

    TrmmlLoss loss;
    trmml_loss_compute(&h.m, &h.cfg.tc, &h.cfg.mc, &out, h.gpos, targets, h.y, &h.mmcp, &loss);
    EXPECT_TENSOR("cls_q", loss.cls_q, get(fx, "cls_q"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("cls_r", loss.cls_r, get(fx, "cls_r"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("kd", loss.kd, get(fx, "kd"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("nce", loss.nce, get(fx, "nce"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("total", loss.total, get(fx, "total"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);

    Tensor *dout = test_case_input(fx, "head", "dout", false);
    param_zero_grad(h.ps);
    ag_backward_with(loss.total, dout);
    for (int i = 0; i < param_count(h.ps); i++) {
        Tensor *t = param_at(h.ps, i);
        char key[160], what[200];
        snprintf(key, sizeof key, "d/%.150s", t->name);
        snprintf(what, sizeof what, "d%.150s (%s)", t->name, fold ? "folded" : "plain");
        EXPECT(t->grad != NULL, "%s has no gradient", t->name);
        if (t->grad) EXPECT_TENSOR(what, t->grad, get(fx, key), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    }
    EXPECT_TENSOR("dgpos", h.gpos->grad, get(fx, "dgpos"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT_TENSOR("dgneg", h.gneg->grad, get(fx, "dgneg"), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    EXPECT(h.f->grad == NULL, "the frozen dense features received a gradient buffer");

    /* Step 8: after the optimizer step, the top-k pixels of ground-truth positives. */
    trmml_mmcp_push(&h.mmcp, out.regions, h.f, h.y);
    EXPECT_CLOSE_N("bank_after", h.mmcp.bank, get(fx, "bank_after")->f32,
                   get(fx, "bank_after")->numel, TOL_REDUCE_ATOL, TOL_REDUCE_RTOL);
    const FixtureTensor *fa = get(fx, "fill_after"), *wa = get(fx, "write_after");
    for (int64_t c = 0; c < C; c++)
        EXPECT(h.mmcp.fill[c] == fa->i64[c] && h.mmcp.write[c] == wa->i64[c],
               "queue %lld: fill %lld write %lld, expected %lld %lld", (long long)c,
               (long long)h.mmcp.fill[c], (long long)h.mmcp.write[c], (long long)fa->i64[c],
               (long long)wa->i64[c]);
    head_free(&h);
}

TEST(trmml_head_fixture_folded) { run_fixture(true); }
TEST(trmml_head_fixture_plain) { run_fixture(false); }

TEST(trmml_head_kd_bernoulli_fixture) {
    Fixture *fx = fixture_open("trmml_head");
    if (!fx) return;
    HeadConfig cfg = head_config_default();
    cfg.mc.kd_form = TRMML_KD_BERNOULLI;
    Tensor *student = test_case_input(fx, "kd_bernoulli", "student", true);
    Tensor *teacher = test_case_input(fx, "kd_bernoulli", "teacher", true);
    if (!student || !teacher) return;
    Tensor *out = trmml_loss_kd(&cfg.mc, student, teacher);
    test_check_case(fx, "kd_bernoulli", out, &student, (const char *[]){"student"}, 1,
                    (CaseTol){TOL_REDUCE_ATOL, TOL_REDUCE_RTOL, TOL_REDUCE_ATOL, TOL_REDUCE_RTOL});
    EXPECT(teacher->grad == NULL, "the KD teacher received a gradient");
}

/* ---- folding vs the plain form ------------------------------------------------------------ */

/* A random head: text-initialised queries, and every bias and LayerNorm made non-trivial so the
 * folding of b_k and b_v is exercised. */
static void random_head(Head *h, int64_t C, int64_t d, int64_t HW, int64_t B, HeadConfig cfg,
                        uint64_t seed) {
    h->cfg = cfg;
    h->ps = param_store_create(DEVICE_CPU, "head");
    trmml_carl_declare(&h->m, h->ps, "carl", C, d, &h->cfg.tc, &h->cfg.mc);
    param_store_finalize(h->ps);
    Rng rng;
    rng_seed(&rng, seed);
    float *text = xmalloc((size_t)(C * d) * sizeof(float));
    rng_fill_normal(&rng, text, C * d, 0, 1);
    trmml_carl_init(&h->m, &rng, text, logf(20.0f));
    free(text);
    Tensor *extra[] = {h->m.attn_q.bias, h->m.attn_k.bias, h->m.attn_v.bias, h->m.attn_o.bias,
                       h->m.ln1_bias, h->m.ln2_bias};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        float *v = xmalloc((size_t)extra[i]->numel * sizeof(float));
        rng_fill_normal(&rng, v, extra[i]->numel, 0, 0.3f);
        tensor_copy_from_host(extra[i], v);
        free(v);
    }
    trmml_mmcp_init(&h->mmcp, C, d, &h->cfg.mc);
    h->f = test_randn(seed + 1, 3, SHAPE(B, HW, d));
    h->gpos = test_randn(seed + 2, 2, SHAPE(C, d));
    h->gneg = test_randn(seed + 3, 2, SHAPE(C, d));
    ag_set_requires_grad(h->gpos, NULL);
    ag_set_requires_grad(h->gneg, NULL);
    h->y = TENSOR_F32(B, C);
    for (int64_t i = 0; i < B * C; i++) tensor_f32(h->y)[i] = (float)((int)((i * 7 + 3) % 3) - 1);
    for (int64_t i = 0; i < B && i < C; i++) tensor_f32(h->y)[i * C + i] = 1.0f;
}

/* Bank entries for every class: a few random vectors each. */
static void fill_bank(TrmmlMmcp *m, uint64_t seed, int64_t per_class) {
    Rng rng;
    rng_seed(&rng, seed);
    float *v = xmalloc((size_t)m->d * sizeof(float));
    for (int64_t c = 0; c < m->C; c++)
        for (int64_t j = 0; j < per_class; j++) {
            rng_fill_normal(&rng, v, m->d, 0, 1);
            trmml_mmcp_push_vector(m, c, v);
        }
    free(v);
}

/* Outputs, losses and every gradient of one forward/backward, copied to the host. */
typedef struct {
    float *vals;
    int64_t n;
} Flat;

static void flat_push(Flat *fl, const Tensor *t) {
    CHECK(t != NULL, "flat_push: missing tensor");
    fl->vals = xrealloc(fl->vals, (size_t)(fl->n + t->numel) * sizeof(float));
    tensor_copy_to_host(fl->vals + fl->n, t);
    fl->n += t->numel;
}

static Flat run_once(Head *h) {
    Flat fl = {0};
    TrmmlCarlOut out;
    trmml_carl_forward(&h->m, h->f, h->gpos, h->gneg, true, NULL, &out);
    TrmmlLoss loss;
    trmml_loss_compute(&h->m, &h->cfg.tc, &h->cfg.mc, &out, h->gpos, h->y, h->y, &h->mmcp, &loss);
    Tensor *outs[] = {out.phi, out.regions, out.fq, out.fr, out.uq, out.ur, loss.total};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) flat_push(&fl, outs[i]);
    param_zero_grad(h->ps);
    h->gpos->grad = h->gneg->grad = NULL;
    ag_backward(loss.total);
    for (int i = 0; i < param_count(h->ps); i++) flat_push(&fl, param_at(h->ps, i)->grad);
    flat_push(&fl, h->gpos->grad);
    flat_push(&fl, h->gneg->grad);
    return fl;
}

TEST(trmml_head_fold_matches_plain) {
    HeadConfig cfg = head_config_default();
    cfg.tc.dropout = 0.0;
    cfg.tc.ffn_hidden = 48;
    cfg.mc.head_hidden = 40;
    cfg.mc.mmcp_queue_len = 6;
    cfg.mc.beta = 0.5;
    cfg.mc.gamma = 0.5;
    Head h;
    random_head(&h, 7, 32, 13, 4, cfg, 11);
    fill_bank(&h.mmcp, 12, 3);
    h.m.fold = true;
    Flat a = run_once(&h);
    h.m.fold = false;
    Flat b = run_once(&h);
    EXPECT(a.n == b.n, "sizes %lld vs %lld", (long long)a.n, (long long)b.n);
    /* Both forms are float32 sums of different lengths over the same terms: matmul tolerance
     * (measured max abs difference about 1e-6 on the outputs and 1e-5 on the gradients). */
    EXPECT_CLOSE_N("fold vs plain", a.vals, b.vals, a.n < b.n ? a.n : b.n, tol_matmul_atol(32),
                   TOL_MATMUL_RTOL);
    free(a.vals);
    free(b.vals);
    head_free(&h);
}

TEST(trmml_head_infer_is_region_branch) {
    HeadConfig cfg = head_config_default();
    cfg.tc.ffn_hidden = 16;
    cfg.mc.head_hidden = 16;
    Head h;
    random_head(&h, 5, 8, 6, 3, cfg, 21);
    TrmmlCarlOut out;
    trmml_carl_forward(&h.m, h.f, h.gpos, h.gneg, false, NULL, &out);
    Tensor *ref = tensor_sigmoid(out.ur);
    int before = ag_tape_length();
    Tensor *p = trmml_carl_infer(&h.m, h.f, h.gpos, h.gneg);
    EXPECT(ag_tape_length() == before, "inference recorded %d tape nodes", ag_tape_length() - before);
    EXPECT_CLOSE_N("infer", tensor_f32(p), tensor_f32(ref), p->numel, TOL_ELEMENTWISE_ATOL,
                   TOL_ELEMENTWISE_RTOL);
    /* Dropout: training output differs from eval, and reproduces for one seed. */
    Tensor *fq_eval = out.fq;
    h.m.dropout = 0.5f;
    DropoutDraws r1 = {.row0 = 0}, r2 = {.row0 = 0};
    rng_seed(&r1.rng, 3);
    rng_seed(&r2.rng, 3);
    TrmmlCarlOut t1, t2;
    trmml_carl_forward(&h.m, h.f, h.gpos, h.gneg, true, &r1, &t1);
    trmml_carl_forward(&h.m, h.f, h.gpos, h.gneg, true, &r2, &t2);
    EXPECT(memcmp(t1.fq->data, t2.fq->data, (size_t)t1.fq->numel * 4) == 0, "dropout not reproducible");
    EXPECT(memcmp(t1.fq->data, fq_eval->data, (size_t)t1.fq->numel * 4) != 0, "dropout had no effect");
    EXPECT(memcmp(t1.fr->data, out.fr->data, (size_t)t1.fr->numel * 4) == 0,
           "dropout must not reach the region branch");
    head_free(&h);
}

TEST(trmml_head_temperature_cap) {
    HeadConfig cfg = head_config_default();
    cfg.tc.ffn_hidden = 8;
    cfg.mc.head_hidden = 8;
    Head h;
    random_head(&h, 3, 4, 5, 2, cfg, 31);
    float t = logf(400.0f);
    tensor_copy_from_host(h.m.logit_scale, &t);
    Tensor *s = trmml_carl_scale(&h.m);
    EXPECT(tensor_f32(s)[0] == 100.0f, "s = %g above the cap", tensor_f32(s)[0]);
    param_zero_grad(h.ps);
    ag_backward(tensor_sum_all(s));
    EXPECT(tensor_f32(h.m.logit_scale->grad)[0] == 0.0f, "t gets a gradient above the cap");
    trmml_carl_clamp_temperature(&h.m);
    tensor_copy_to_host(&t, h.m.logit_scale);
    EXPECT(t == logf(100.0f), "t after clamping %g", t);
    /* Default init from CLIP's logit_scale when temp_init is "clip". */
    Rng rng;
    rng_seed(&rng, 1);
    trmml_carl_init(&h.m, &rng, NULL, 2.5f);
    tensor_copy_to_host(&t, h.m.logit_scale);
    EXPECT(t == 2.5f, "t init %g, expected CLIP's 2.5", t);
    head_free(&h);
}

/* ---- gradcheck ---------------------------------------------------------------------------- */

typedef struct {
    Head *h;
} GcCtx;

static Tensor *gc_loss(Tensor *const *inputs, void *vctx) {
    Head *h = ((GcCtx *)vctx)->h;
    TrmmlCarlOut out;
    trmml_carl_forward(&h->m, h->f, inputs[0], inputs[1], true, NULL, &out);
    TrmmlLoss loss;
    trmml_loss_compute(&h->m, &h->cfg.tc, &h->cfg.mc, &out, inputs[0], h->y, h->y, &h->mmcp, &loss);
    return loss.total;
}

/* Two stop-gradients make finite differences of the full loss disagree with the tape by
 * design: ASL's detached focusing factors and KD's detached teacher. So the checks run with
 * γ+ = γ− = 0 (factors identically 1), and KD is on only for the inputs that reach the query
 * branch alone (decoder value/output path, FFN, MLP, LayerNorms; the head reaches L_NCE only). */
TEST(trmml_head_gradcheck) {
    HeadConfig cfg = head_config_default();
    cfg.tc.dropout = 0.0;
    cfg.tc.ffn_hidden = 7;
    cfg.mc.head_hidden = 5;
    cfg.mc.mmcp_queue_len = 3;
    cfg.tc.asl_gamma_pos = cfg.tc.asl_gamma_neg = 0.0;
    cfg.mc.beta = 1.0;
    cfg.mc.gamma = 1.0;
    cfg.mc.nce_tau = 0.5;
    cfg.mc.use_kd = false;
    Head h;
    random_head(&h, 3, 6, 5, 2, cfg, 41);
    float t = logf(5.0f);
    tensor_copy_from_host(h.m.logit_scale, &t);
    fill_bank(&h.mmcp, 42, 2);
    GcCtx ctx = {&h};
    GradcheckOpts opts = {TOL_GRADCHECK_ATOL, TOL_GRADCHECK_RTOL, 64, false, 0, 7};
    Tensor *in[] = {h.gpos, h.gneg, h.m.queries, h.m.attn_q.weight, h.m.attn_q.bias,
                    h.m.attn_k.weight, h.m.attn_k.bias, h.m.logit_scale};
    EXPECT_GRADCHECK("trmml head, no KD (G+, G-, Q, Wq, bq, Wk, bk, t)", gc_loss, &ctx, in, 8, NULL, &opts);
    h.cfg.mc.use_kd = true;
    Tensor *in2[] = {h.gpos, h.gneg, h.m.attn_v.weight, h.m.attn_o.bias, h.m.ffn1.weight,
                     h.m.mlp2.weight, h.m.ln1_weight, h.m.head1.weight};
    const bool wrt2[] = {false, false, true, true, true, true, true, true};
    EXPECT_GRADCHECK("trmml head, KD on (Wv, bo, ffn1, mlp2, ln1, head1)", gc_loss, &ctx, in2, 8, wrt2,
                     &opts);
    head_free(&h);
}

/* ---- MMCP on hand-built banks ------------------------------------------------------------- */

static HeadConfig mmcp_cfg(int64_t len, int64_t k, double eta) {
    HeadConfig c = head_config_default();
    c.mc.mmcp_queue_len = len;
    c.mc.mmcp_k = k;
    c.mc.mmcp_eta = eta;
    return c;
}

TEST(trmml_head_mmcp_fifo) {
    HeadConfig cfg = mmcp_cfg(3, 1, 0.99);
    TrmmlMmcp m;
    trmml_mmcp_init(&m, 2, 2, &cfg.mc);
    for (int j = 1; j <= 5; j++) trmml_mmcp_push_vector(&m, 0, (float[]){(float)j, 0.0f});
    trmml_mmcp_push_vector(&m, 1, (float[]){3.0f, 4.0f});
    EXPECT(m.fill[0] == 3 && m.write[0] == 2 && m.fill[1] == 1 && m.write[1] == 1,
           "fill %lld/%lld write %lld/%lld", (long long)m.fill[0], (long long)m.fill[1],
           (long long)m.write[0], (long long)m.write[1]);
    /* Stored normalised; class 1's (3,4) becomes (0.6,0.8). */
    EXPECT(m.bank[(1 * 3 + 0) * 2 + 0] == 0.6f && m.bank[(1 * 3 + 0) * 2 + 1] == 0.8f, "not normalised");
    /* Newest first, per_class limit: class 0 holds pushes 3,4,5 in slots 0,1,2 -> 5,4 then 3. */
    float vecs[8];
    int64_t cls[4];
    int64_t n = trmml_mmcp_bank_entries(&m, 0, vecs, cls);
    EXPECT(n == 4 && trmml_mmcp_bank_size(&m) == 4, "%lld entries", (long long)n);
    n = trmml_mmcp_bank_entries(&m, 2, vecs, cls);
    EXPECT(n == 3 && cls[0] == 0 && cls[1] == 0 && cls[2] == 1, "per-class limit: %lld entries", (long long)n);
    /* Overwrite order: 5 pushes into 3 slots leave 4 and 5 in slots 0 and 1... all unit (1,0). */
    for (int j = 6; j <= 8; j++) trmml_mmcp_push_vector(&m, 0, (float[]){0.0f, (float)j});
    EXPECT(m.write[0] == 2 && m.bank[(0 * 3 + 1) * 2 + 1] == 1.0f && m.bank[(0 * 3 + 2) * 2 + 1] == 1.0f,
           "FIFO overwrite of the oldest slot");
    trmml_mmcp_free(&m);
}

/* F^r rows (B,1,2) for a one-class bank. */
static Tensor *rows(int64_t B, const float *xy) { return tensor_from_f32(3, SHAPE(B, 1, 2), xy); }

TEST(trmml_head_mmcp_threshold_ema) {
    HeadConfig cfg = mmcp_cfg(1, 1, 0.75);
    cfg.mc.mmcp_use_text = false;
    TrmmlMmcp m;
    trmml_mmcp_init(&m, 1, 2, &cfg.mc);
    trmml_mmcp_push_vector(&m, 0, (float[]){1.0f, 0.0f});
    /* Batch 1: s = 1 (positive), 0 (negative), 0.7071 (unknown): first values initialise. */
    Tensor *y1 = tensor_from_f32(2, SHAPE(3, 1), (float[]){1, -1, 0});
    Tensor *p = trmml_mmcp_pseudo_labels(&m, rows(3, (float[]){1, 0, 0, 1, 1, 1}), y1, false, NULL, NULL);
    EXPECT(fabsf(m.theta[TRMML_THETA_VIS_POS] - 1.0f) < 1e-6f && fabsf(m.theta[TRMML_THETA_VIS_NEG]) < 1e-6f,
           "first init: theta+ %g theta- %g", m.theta[0], m.theta[1]);
    EXPECT(tensor_f32(p)[2] == 0.0f, "0.707 lies between the thresholds");
    EXPECT(!m.theta_init[TRMML_THETA_TXT_POS] && !m.theta_init[TRMML_THETA_TXT_NEG],
           "text thresholds initialised without prototypes");
    /* Batch 2: positives 1 and 0.7071 (mean 0.85355), negative 0.7071; eta 0.75. */
    Tensor *y2 = tensor_from_f32(2, SHAPE(3, 1), (float[]){1, 1, -1});
    trmml_mmcp_pseudo_labels(&m, rows(3, (float[]){2, 0, 1, 1, 1, -1}), y2, false, NULL, NULL);
    EXPECT(fabsf(m.theta[0] - 0.9633883f) < 1e-6f && fabsf(m.theta[1] - 0.1767767f) < 1e-6f,
           "EMA: theta+ %.7f theta- %.7f", m.theta[0], m.theta[1]);
    /* Batch 3: no negative known -> theta- unchanged; one positive at 0 -> 0.75*0.96339. */
    Tensor *y3 = tensor_from_f32(2, SHAPE(1, 1), (float[]){1});
    trmml_mmcp_pseudo_labels(&m, rows(1, (float[]){0, 1}), y3, false, NULL, NULL);
    EXPECT(fabsf(m.theta[0] - 0.7225412f) < 1e-6f && fabsf(m.theta[1] - 0.1767767f) < 1e-6f,
           "one-sided EMA: theta+ %.7f theta- %.7f", m.theta[0], m.theta[1]);
    /* Single positive: the unknown counts as a negative for the statistics. */
    TrmmlMmcp s;
    trmml_mmcp_init(&s, 1, 2, &cfg.mc);
    trmml_mmcp_push_vector(&s, 0, (float[]){1.0f, 0.0f});
    Tensor *ysp = tensor_from_f32(2, SHAPE(2, 1), (float[]){1, 0});
    trmml_mmcp_pseudo_labels(&s, rows(2, (float[]){1, 0, 0, 1}), ysp, true, NULL, NULL);
    EXPECT(s.theta_init[TRMML_THETA_VIS_NEG] && fabsf(s.theta[TRMML_THETA_VIS_NEG]) < 1e-6f,
           "single positive: assumed negatives feed theta-");
    trmml_mmcp_free(&s);
    trmml_mmcp_free(&m);
}

/* Set all four thresholds of class 0. */
static void set_theta(TrmmlMmcp *m, float vp, float vn, float tp, float tn) {
    float v[4] = {vp, vn, tp, tn};
    for (int i = 0; i < 4; i++) {
        m->theta[i * m->C] = v[i];
        m->theta_init[i * m->C] = 1;
    }
}

TEST(trmml_head_mmcp_pseudo_label_rules) {
    HeadConfig cfg = mmcp_cfg(1, 1, 0.9);
    TrmmlMmcp m;
    trmml_mmcp_init(&m, 1, 2, &cfg.mc);
    trmml_mmcp_push_vector(&m, 0, (float[]){1.0f, 0.0f});
    trmml_mmcp_set_prototypes(&m, tensor_from_f32(2, SHAPE(1, 2), (float[]){0.0f, 2.0f}));
    /* s_vis = x, s_txt = y of the normalised row; every label unknown (no EMA update). */
    const float xy[] = {1, 1, 1, -1, -1, -1, 1, 0, -1, 1};
    Tensor *f = rows(5, xy), *y = TENSOR_ZEROS(5, 1);
    set_theta(&m, 0.5f, -0.5f, 0.5f, -0.5f);
    float *p = tensor_f32(trmml_mmcp_pseudo_labels(&m, f, y, false, NULL, NULL));
    /* (+,+) -> +1; (+,-) -> 0; (-,-) -> -1; (+,0) -> 0; (-,+) -> 0 */
    EXPECT(p[0] == 1 && p[1] == 0 && p[2] == -1 && p[3] == 0 && p[4] == 0,
           "fusion: %g %g %g %g %g", p[0], p[1], p[2], p[3], p[4]);
    /* Visual only (Table 6): its own vote. */
    m.use_text = false;
    p = tensor_f32(trmml_mmcp_pseudo_labels(&m, f, y, false, NULL, NULL));
    EXPECT(p[0] == 1 && p[1] == 1 && p[2] == -1 && p[3] == 1 && p[4] == -1, "visual only");
    /* theta- >= theta+ -> no pseudo-label from that modality. */
    set_theta(&m, 0.2f, 0.3f, 0.5f, -0.5f);
    p = tensor_f32(trmml_mmcp_pseudo_labels(&m, f, y, false, NULL, NULL));
    EXPECT(p[0] == 0 && p[2] == 0 && p[3] == 0, "theta- >= theta+ must give none");
    /* The tests are inclusive: s = θ⁺ -> +1, s = θ⁻ -> -1 (exact: s = 1 and 0). */
    set_theta(&m, 1.0f, 0.0f, 0.5f, -0.5f);
    p = tensor_f32(trmml_mmcp_pseudo_labels(&m, rows(2, (float[]){3, 0, 0, 2}), TENSOR_ZEROS(2, 1),
                                            false, NULL, NULL));
    EXPECT(p[0] == 1 && p[1] == -1, "boundaries: %g %g", p[0], p[1]);
    /* Uninitialised threshold -> none. */
    set_theta(&m, 0.5f, -0.5f, 0.5f, -0.5f);
    m.theta_init[TRMML_THETA_VIS_NEG] = 0;
    p = tensor_f32(trmml_mmcp_pseudo_labels(&m, f, y, false, NULL, NULL));
    EXPECT(p[0] == 0 && p[2] == 0, "uninitialised threshold must give none");
    /* Known entries never get a pseudo-label. */
    m.theta_init[TRMML_THETA_VIS_NEG] = 1;
    Tensor *yk = tensor_from_f32(2, SHAPE(5, 1), (float[]){-1, 0, 1, 0, 0});
    p = tensor_f32(trmml_mmcp_pseudo_labels(&m, f, yk, false, NULL, NULL));
    EXPECT(p[0] == 0 && p[2] == 0 && p[3] == 1, "known entries: %g %g, unknown %g", p[0], p[2], p[3]);
    trmml_mmcp_free(&m);

    /* Queue not full -> no visual similarity, no pseudo-label. */
    HeadConfig c2 = mmcp_cfg(2, 1, 0.9);
    c2.mc.mmcp_use_text = false;
    TrmmlMmcp q;
    trmml_mmcp_init(&q, 1, 2, &c2.mc);
    trmml_mmcp_push_vector(&q, 0, (float[]){1.0f, 0.0f});
    set_theta(&q, 0.5f, -0.5f, 0.5f, -0.5f);
    float sv[5];
    p = tensor_f32(trmml_mmcp_pseudo_labels(&q, f, y, false, sv, NULL));
    EXPECT(p[0] == 0 && p[2] == 0 && isnan(sv[0]), "queue not full must give none");
    trmml_mmcp_push_vector(&q, 0, (float[]){1.0f, 0.0f});
    p = tensor_f32(trmml_mmcp_pseudo_labels(&q, f, y, false, sv, NULL));
    EXPECT(p[0] == 1 && p[2] == -1 && fabsf(sv[0] - 0.7071068f) < 1e-6f, "full queue votes");
    trmml_mmcp_free(&q);
}

TEST(trmml_head_mmcp_targets) {
    Tensor *y = tensor_from_f32(2, SHAPE(1, 4), (float[]){1, 0, 0, -1});
    Tensor *pl = tensor_from_f32(2, SHAPE(1, 4), (float[]){0, 1, -1, 0});
    Tensor *none = TENSOR_ZEROS(1, 4);
    const float *t = tensor_f32(trmml_mmcp_targets(y, pl, false));
    EXPECT(t[0] == 1 && t[1] == 1 && t[2] == -1 && t[3] == -1, "partial labels");
    t = tensor_f32(trmml_mmcp_targets(y, none, false));
    EXPECT(t[1] == 0 && t[2] == 0, "no pseudo-label keeps unknown");
    t = tensor_f32(trmml_mmcp_targets(y, pl, true));
    EXPECT(t[1] == 1 && t[2] == -1, "single positive: pseudo-positive overrides");
    t = tensor_f32(trmml_mmcp_targets(y, NULL, true));
    EXPECT(t[0] == 1 && t[1] == -1 && t[2] == -1 && t[3] == -1, "single positive: assume negative");
}

TEST(trmml_head_mmcp_bank_push_topk) {
    HeadConfig cfg = mmcp_cfg(8, 2, 0.9);
    TrmmlMmcp m;
    trmml_mmcp_init(&m, 2, 2, &cfg.mc);
    /* R (2 images, 2 classes, 4 positions); image 0 class 0 has a tie at positions 1 and 3. */
    Tensor *R = tensor_from_f32(3, SHAPE(2, 2, 4), (float[]){0.1f, 0.9f, 0.2f, 0.9f,   /* i0 c0 */
                                                            0.8f, 0.1f, 0.1f, 0.1f,   /* i0 c1 */
                                                            0.3f, 0.2f, 0.7f, 0.1f,   /* i1 c0 */
                                                            0.1f, 0.2f, 0.3f, 0.4f}); /* i1 c1 */
    float fv[2 * 4 * 2];
    for (int i = 0; i < 16; i++) fv[i] = (float)(i + 1);
    Tensor *f = tensor_from_f32(3, SHAPE(2, 4, 2), fv);
    /* Image 0: class 0 positive, class 1 unknown; image 1: class 0 negative, class 1 positive. */
    Tensor *y = tensor_from_f32(2, SHAPE(2, 2), (float[]){1, 0, -1, 1});
    trmml_mmcp_push(&m, R, f, y);
    EXPECT(m.fill[0] == 2 && m.fill[1] == 2, "fill %lld %lld", (long long)m.fill[0], (long long)m.fill[1]);
    /* class 0 <- image 0 positions 1 then 3 (tie: lower index first); class 1 <- image 1 at 3, 2. */
    const struct { int64_t c, slot, img, pos; } want[] = {{0, 0, 0, 1}, {0, 1, 0, 3}, {1, 0, 1, 3}, {1, 1, 1, 2}};
    for (int i = 0; i < 4; i++) {
        const float *src = fv + (want[i].img * 4 + want[i].pos) * 2;
        float n = sqrtf(src[0] * src[0] + src[1] * src[1]);
        const float *got = m.bank + (want[i].c * 8 + want[i].slot) * 2;
        EXPECT(fabsf(got[0] - src[0] / n) < 1e-6f && fabsf(got[1] - src[1] / n) < 1e-6f,
               "class %lld slot %lld: (%g,%g), expected image %lld position %lld", (long long)want[i].c,
               (long long)want[i].slot, got[0], got[1], (long long)want[i].img, (long long)want[i].pos);
    }
    trmml_mmcp_free(&m);
}

TEST(trmml_head_nce_without_keys_is_zero) {
    HeadConfig cfg = head_config_default();
    cfg.tc.ffn_hidden = 8;
    cfg.mc.head_hidden = 8;
    Head h;
    random_head(&h, 3, 4, 5, 2, cfg, 51);
    TrmmlCarlOut out;
    trmml_carl_forward(&h.m, h.f, h.gpos, h.gneg, false, NULL, &out);
    Tensor *y = tensor_from_f32(2, SHAPE(2, 3), (float[]){-1, 0, -1, 0, -1, 0});
    Tensor *l = trmml_loss_nce(&h.m, &cfg.mc, h.gpos, out.fr, y, &h.mmcp);
    EXPECT(tensor_f32(l)[0] == 0.0f && !l->requires_grad, "no positives and an empty bank: 0");
    /* Switches: components off leave their terms NULL and out of the total. */
    cfg.mc.use_kd = cfg.mc.use_mmcl = false;
    TrmmlLoss loss;
    trmml_loss_compute(&h.m, &cfg.tc, &cfg.mc, &out, h.gpos, h.y, h.y, &h.mmcp, &loss);
    EXPECT(!loss.kd && !loss.nce && loss.total, "switched-off terms");
    float tot = tensor_f32(loss.total)[0], q = tensor_f32(loss.cls_q)[0], r = tensor_f32(loss.cls_r)[0];
    EXPECT(fabsf(tot - (q + r)) <= 1e-5f * fabsf(tot), "L = L^q + alpha L^r: %g vs %g", tot, q + r);
    head_free(&h);
}

/* ---- configuration ------------------------------------------------------------------------ */

static char *print_config(const RunConfig *c) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    run_config_print(c, f);
    fclose(f);
    return buf;
}

TEST(trmml_head_config) {
    RunConfig c = run_config_default(TRMML_METHOD_TRMML, NULL);
    const MethodTrmmlConfig *m = method_trmml_config(&c);
    EXPECT(m->alpha == 1.0 && m->beta == 0.05 && m->gamma == 0.01 && m->mmcp_k == 4 &&
               m->mmcp_queue_len == 256 && m->mmcp_eta == 0.99 && m->nce_tau == 0.07 &&
               c.tc.dropout == 0.1 && c.tc.temp_max == 100.0 && isnan(c.tc.temp_init) &&
               c.tc.pct_start == 0.2 && c.tc.weight_decay == 1e-2 && c.tc.asl_eps == 1e-8 &&
               c.tc.ffn_hidden == 2048 && m->head_hidden == 2048 && c.tc.epochs == 40 &&
               c.tc.batch_size == 128 && c.tc.lr == 5e-4,
           "SPEC defaults");
    const TrmmlMethodOps *ops = trmml_method_ops(TRMML_METHOD_TRMML);
    EXPECT(trmml_config_validate(&c.tc) == STATUS_OK && ops->config_validate(&c) == STATUS_OK,
           "defaults invalid: %s", error_last());
    const char *text = "# a comment\n"
                       "beta = 0.1\n"
                       "use_mmcp: false   # YAML style\n"
                       "kd_form = bernoulli\n"
                       "query_template = \"a photo of the {}.\"\n"
                       "temp_init = 3.5\n\n"
                       "mmcp_k = 8\n";
    EXPECT(run_config_parse_text(&c, text, "test") == STATUS_OK, "parse: %s", error_last());
    EXPECT(m->beta == 0.1 && !m->use_mmcp && m->kd_form == TRMML_KD_BERNOULLI &&
               c.tc.temp_init == 3.5 && m->mmcp_k == 8 &&
               strcmp(c.tc.query_template, "a photo of the {}.") == 0,
           "parsed values");
    /* The printed configuration parses back to the same configuration, whatever the method
     * of the configuration it is read into. */
    char *p1 = print_config(&c);
    RunConfig d = run_config_default(TRMML_METHOD_PVLR, NULL);
    EXPECT(run_config_parse_text(&d, p1, "printed") == STATUS_OK, "reparse: %s", error_last());
    char *p2 = print_config(&d);
    EXPECT(strcmp(p1, p2) == 0, "print/parse round trip differs");
    EXPECT(strstr(p1, "temp_init = 3.5") && strstr(p1, "beta = 0.1 ") && strstr(p1, "DECISION 17") &&
               !strstr(p1, "pvlr_") && !strstr(p1, "sgd_momentum"),
           "printed form (the shared keys and TRM-ML's):\n%s", p1);
    RunConfig e = run_config_default(TRMML_METHOD_TRMML, NULL);
    char *p3 = print_config(&e);
    EXPECT(strstr(p3, "temp_init = clip"), "temp_init default prints as clip");
    free(p1);
    free(p2);
    free(p3);
    EXPECT(trmml_config_key_count() + ops->nkeys > 50, "%d keys", trmml_config_key_count() + ops->nkeys);
    /* Errors name the key (and the line), and leave the configuration unchanged. */
    RunConfig g = run_config_default(TRMML_METHOD_TRMML, NULL);
    EXPECT(run_config_set(&g, "no_such_key", "1") == STATUS_ERR_USAGE &&
               strstr(error_last(), "no_such_key"), "unknown key: %s", error_last());
    EXPECT(run_config_parse_text(&g, "beta = 0.2\nmmcp_eta = 1.5\n", "cfg.txt") == STATUS_ERR_USAGE &&
               strstr(error_last(), "cfg.txt:2") && strstr(error_last(), "mmcp_eta"),
           "out of range: %s", error_last());
    EXPECT(run_config_set(&g, "use_kd", "maybe") == STATUS_ERR_USAGE, "bad bool");
    EXPECT(run_config_set(&g, "kd_form", "hinton") == STATUS_ERR_USAGE &&
               strstr(error_last(), "softmax|bernoulli"), "bad enum: %s", error_last());
    EXPECT(run_config_set(&g, "mmcp_k", "4.5") == STATUS_ERR_USAGE, "bad integer");
    EXPECT(run_config_parse_text(&g, "just words\n", "x") == STATUS_ERR_USAGE, "no separator");
    /* A key of another method names the method it belongs to. */
    EXPECT(run_config_set(&g, "pvlr_heads", "4") == STATUS_ERR_USAGE &&
               strstr(error_last(), "'pvlr_heads' belongs to method pvlr"),
           "key of another method: %s", error_last());
    EXPECT(run_config_parse_text(&g, "epochs = 3\nsgd_momentum = 0.5\n", "cfg.txt") == STATUS_ERR_USAGE &&
               strstr(error_last(), "cfg.txt") && strstr(error_last(), "method dualcoop"),
           "key of another method in a file: %s", error_last());
    /* A method line, anywhere in the text, selects the method whose keys the rest reads. */
    RunConfig h = run_config_default(TRMML_METHOD_TRMML, NULL);
    EXPECT(run_config_parse_text(&h, "pvlr_heads = 4\nmethod = pvlr\n", "cfg.txt") == STATUS_OK &&
               h.method == TRMML_METHOD_PVLR && method_pvlr_config(&h)->pvlr_heads == 4,
           "method line: %s", error_last());
    EXPECT(run_config_set(&h, "method", "nosuch") == STATUS_ERR_USAGE &&
               strstr(error_last(), "trmml, dualcoop, baseline, pvlr"), "bad method: %s", error_last());
    g.tc.temp_init = log(200.0);
    EXPECT(trmml_config_validate(&g.tc) == STATUS_ERR_USAGE, "temp_init above the cap");
    EXPECT(run_config_parse_file(&g, "/nonexistent/trmml.cfg") == STATUS_ERR_IO, "missing file");
}
