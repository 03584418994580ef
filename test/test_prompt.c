/* test_prompt.c — the dual prompt learner (trmml/prompt.h) against PyTorch
 * (scripts/fixtures_dualcoop.py, on the reduced random CLIP of test/fixtures/clip_model.bin).
 *
 * Covers: the learnable-parameter count of SPEC §10.1, seeded N(0, 0.02^2) initialisation,
 * CoOp's template with the real tokenizer (skipped without the shared vocabulary), the
 * assembly of prompt embeddings and where their gradient goes, the text features G+/G- for
 * class-specific and shared contexts at every chunk size, and the two gradient schemes (taped
 * and chunked recompute) agreeing, with no gradient buffer on any frozen weight. */
#include <math.h>
#include <string.h>

#include "clip/model.h"
#include "clip/tokenizer.h"
#include "tensor/ops/shape.h"
#include "test/test.h"
#include "test/util_clip.h"
#include "trmml/prompt.h"

/* ---- the fixture model ---------------------------------------------------------------------- */

static void expect_frozen(const ClipModel *m) {
    for (int i = 0; i < param_count(m->params); i++) {
        const Tensor *p = param_at(m->params, i);
        EXPECT(p->grad == NULL && !p->requires_grad, "frozen weight %s has a gradient", p->name);
    }
}

/* A learner for the fixture's classes with contexts from "<cs>/ctx_pos|neg", templates from
 * "prompt/ids". The caller destroys *ps and frees the learner. */
static bool fixture_learner(Fixture *fx, const ClipModel *m, const char *cs, bool class_specific,
                            PromptLearner *pl, ParamStore **ps) {
    const FixtureTensor *ids = fixture_get(fx, "prompt/ids");
    if (!ids) return false;
    PromptConfig cfg = trmml_prompt_config(ids->shape[0], m->cfg.text.width);
    cfg.class_specific = class_specific;
    *ps = param_store_create(DEVICE_CPU, "prompt test");
    trmml_prompt_declare(pl, &cfg, *ps);
    param_store_finalize(*ps);
    char key[64];
    const char *which[2] = {"ctx_pos", "ctx_neg"};
    Tensor *dst[2] = {pl->ctx_pos, pl->ctx_neg};
    for (int i = 0; i < 2; i++) {
        snprintf(key, sizeof key, "%s/%s", cs, which[i]);
        const FixtureTensor *f = fixture_get(fx, key);
        if (!f) return false;
        EXPECT(f->numel == dst[i]->numel, "%s: %lld values for a %s context", key,
               (long long)f->numel, tensor_shape_str(dst[i]));
        if (f->numel != dst[i]->numel) return false;
        tensor_copy_from_host(dst[i], f->f32);
    }
    Tensor *idt = tensor_empty(DT_I64, 2, ids->shape);
    memcpy(idt->data, ids->i64, (size_t)ids->numel * sizeof(int64_t));
    trmml_prompt_set_tokens(pl, m->text.token_embedding, idt);
    return true;
}

static void expect_features(Fixture *fx, const char *cs, Tensor *gpos, Tensor *gneg) {
    char key[64], what[96];
    snprintf(key, sizeof key, "%s/gpos", cs);
    snprintf(what, sizeof what, "%s G+", cs);
    EXPECT_TENSOR(what, gpos, fixture_get(fx, key), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    snprintf(key, sizeof key, "%s/gneg", cs);
    snprintf(what, sizeof what, "%s G-", cs);
    EXPECT_TENSOR(what, gneg, fixture_get(fx, key), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
}

/* ---- parameters and initialisation ------------------------------------------------------- */

static int64_t declared_params(int64_t C, int64_t W, bool class_specific) {
    PromptConfig cfg = trmml_prompt_config(C, W);
    cfg.class_specific = class_specific;
    ParamStore *ps = param_store_create(DEVICE_CPU, "count");
    PromptLearner pl;
    trmml_prompt_declare(&pl, &cfg, ps); /* declared only: nothing is allocated */
    int64_t n = param_numel_trainable(ps);
    EXPECT(n == trmml_prompt_num_params(&cfg), "declared %lld, formula %lld", (long long)n,
           (long long)trmml_prompt_num_params(&cfg));
    param_store_destroy(ps);
    return n;
}

TEST(prompt_learnable_parameter_count) {
    /* SPEC §10.1: DualCoOp on COCO with RN101 (text width 512): 2*80*16*512 = 1.25 * 2^20. */
    int64_t coco = declared_params(80, 512, true);
    EXPECT(coco == 1310720, "COCO/RN101 contexts: %lld parameters, expected 1,310,720",
           (long long)coco);
    EXPECT(coco * 4 == 5 * (1 << 20), "COCO/RN101 contexts are not 1.25 M (2^20 units)");
    EXPECT(declared_params(20, 512, true) == 327680, "VOC contexts");
    EXPECT(declared_params(80, 512, false) == 16384, "class-agnostic contexts");
}

TEST(prompt_init_seeded_normal) {
    PromptConfig cfg = trmml_prompt_config(20, 64);
    ParamStore *ps = param_store_create(DEVICE_CPU, "init");
    PromptLearner a;
    trmml_prompt_declare(&a, &cfg, ps);
    param_store_finalize(ps);
    trmml_prompt_init(&a, 7);
    const int64_t n = a.ctx_pos->numel;
    const float *p = tensor_f32(a.ctx_pos), *q = tensor_f32(a.ctx_neg);
    double s = 0, s2 = 0;
    int same = 0;
    for (int64_t i = 0; i < n; i++) s += p[i], s2 += (double)p[i] * p[i], same += p[i] == q[i];
    const double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    /* n = 20480 draws: the sample std is within 2 % of 0.02 and the mean within 5 sigma */
    EXPECT(fabs(sd - 0.02) < 0.02 * 0.02, "sample std %.5f, expected 0.02", sd);
    EXPECT(fabs(mean) < 5 * 0.02 / sqrt((double)n), "sample mean %.6f", mean);
    EXPECT(same < 3, "ctx_pos and ctx_neg share %d values", same);
    EXPECT(a.ctx_pos->requires_grad && a.ctx_pos->grad, "contexts are not trainable");

    float first = p[0];
    trmml_prompt_init(&a, 7);
    EXPECT(tensor_f32(a.ctx_pos)[0] == first, "the same seed gives other values");
    trmml_prompt_init(&a, 8);
    EXPECT(tensor_f32(a.ctx_pos)[0] != first, "another seed gives the same values");
    trmml_prompt_free(&a);
    param_store_destroy(ps);
}

/* ---- templates ----------------------------------------------------------------------------- */

TEST(prompt_template_real_tokenizer) {
    const char *path = clip_vocab_path(NULL);
    ClipTokenizer *tok = NULL;
    if (clip_tokenizer_load(path, &tok) != STATUS_OK) {
        char why[512];
        snprintf(why, sizeof why, "CLIP vocabulary not loadable at %s", path);
        test_skip(why);
        return;
    }
    const char *names[3] = {"person", "traffic_light", "dining table"};
    Tensor *ids = NULL;
    Status st = trmml_prompt_template_ids(tok, names, 3, 16, &ids);
    EXPECT(st == STATUS_OK && ids, "template ids: %s", error_last());
    if (!ids) {
        clip_tokenizer_free(tok);
        return;
    }
    int32_t x[4], name[16], dot[4];
    EXPECT(clip_tokenize(tok, "X", x, 4) == 1, "'X' is one token");
    EXPECT(clip_tokenize(tok, ".", dot, 4) == 1, "'.' is one token");
    /* underscores become spaces, as in CoOp */
    const char *plain[3] = {"person", "traffic light", "dining table"};
    const int64_t *row = tensor_i64(ids);
    for (int c = 0; c < 3; c++, row += 77) {
        int n = clip_tokenize(tok, plain[c], name, 16);
        EXPECT(row[0] == CLIP_SOT, "class %d: row starts with %lld", c, (long long)row[0]);
        for (int k = 1; k <= 16; k++)
            EXPECT(row[k] == x[0], "class %d: placeholder %d is %lld", c, k, (long long)row[k]);
        for (int k = 0; k < n; k++)
            EXPECT(row[17 + k] == name[k], "class %d: name token %d", c, k);
        EXPECT(row[17 + n] == dot[0] && row[18 + n] == CLIP_EOT && row[19 + n] == 0,
               "class %d: '.', EOT, padding after the name", c);
    }

    /* A name that cannot fit: an error naming the class, no ids. */
    char longname[400] = "";
    for (int i = 0; i < 60; i++) strcat(longname, "cat ");
    const char *bad[2] = {"dog", longname};
    Tensor *none = NULL;
    st = trmml_prompt_template_ids(tok, bad, 2, 16, &none);
    EXPECT(st == STATUS_ERR_USAGE && none == NULL && strstr(error_last(), "class 1"),
           "over-long name: status %d, message '%s'", st, error_last());
    clip_tokenizer_free(tok);
}

/* ---- assembly -------------------------------------------------------------------------------- */

/* Random frozen token embedding (64, 32), the fixture's templates, contexts from seed 3. */
static void assembly_case(bool class_specific) {
    Fixture *fx = fixture_open("dualcoop");
    const FixtureTensor *ids = fixture_get(fx, "prompt/ids");
    const FixtureTensor *eot = fixture_get(fx, "prompt/eot");
    if (!ids || !eot) return;
    const int64_t C = ids->shape[0], W = 32, NCTX = 16;
    Tensor *tok = test_randn(11, 2, SHAPE(64, W));
    PromptConfig cfg = trmml_prompt_config(C, W);
    cfg.class_specific = class_specific;
    ParamStore *ps = param_store_create(DEVICE_CPU, "assembly");
    PromptLearner pl;
    trmml_prompt_declare(&pl, &cfg, ps);
    param_store_finalize(ps);
    trmml_prompt_init(&pl, 3);
    Tensor *idt = tensor_empty(DT_I64, 2, ids->shape);
    memcpy(idt->data, ids->i64, (size_t)ids->numel * sizeof(int64_t));
    trmml_prompt_set_tokens(&pl, tok, idt);

    int64_t T = 0;
    for (int64_t c = 0; c < C; c++) {
        EXPECT(pl.eot[c] == eot->i64[c], "eot[%lld] = %lld, expected %lld", (long long)c,
               (long long)pl.eot[c], (long long)eot->i64[c]);
        if (eot->i64[c] + 1 > T) T = eot->i64[c] + 1;
    }
    EXPECT(pl.T == T, "template length %lld, expected max eot + 1 = %lld", (long long)pl.T,
           (long long)T);

    const int64_t c0 = 1, n = 3;
    Tensor *e_eot = NULL;
    Tensor *x = trmml_prompt_embeddings(&pl, c0, n, &e_eot);
    EXPECT(x->ndim == 3 && x->shape[0] == 2 * n && x->shape[1] == T && x->shape[2] == W,
           "embeddings %s, expected (%lld, %lld, %lld)", tensor_shape_str(x), (long long)(2 * n),
           (long long)T, (long long)W);
    if (test_failed()) goto done;
    const float *xe = tensor_f32(x), *te = tensor_f32(tok);
    int bad_fixed = 0, bad_ctx = 0, bad_eot = 0;
    for (int64_t s = 0; s < 2 * n; s++) {
        const int64_t c = c0 + s % n;
        const float *ctx = tensor_f32(s < n ? pl.ctx_pos : pl.ctx_neg) +
                           (class_specific ? c * NCTX * W : 0);
        bad_eot += tensor_i64(e_eot)[s] != eot->i64[c];
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < W; j++) {
                float got = xe[(s * T + t) * W + j];
                if (t >= 1 && t <= NCTX) bad_ctx += got != ctx[(t - 1) * W + j];
                else bad_fixed += got != te[ids->i64[c * ids->shape[1] + t] * W + j];
            }
    }
    EXPECT(bad_fixed == 0, "%d template values differ from the token embedding", bad_fixed);
    EXPECT(bad_ctx == 0, "%d context rows differ from the contexts", bad_ctx);
    EXPECT(bad_eot == 0, "%d end-of-text positions wrong", bad_eot);

    /* Backward: each context gets exactly the dout rows it was written to. */
    Tensor *dout = test_randn(5, 3, x->shape);
    ag_backward_with(x, dout);
    EXPECT(tok->grad == NULL, "the frozen token embedding received a gradient buffer");
    const float *d = tensor_f32(dout);
    Tensor *grads[2] = {pl.ctx_pos->grad, pl.ctx_neg->grad};
    for (int side = 0; side < 2; side++) {
        Tensor *want = tensor_zeros_like(grads[side]);
        float *w = tensor_f32(want);
        for (int64_t k = 0; k < n; k++) {
            const int64_t row = class_specific ? (c0 + k) * NCTX * W : 0;
            for (int64_t i = 0; i < NCTX * W; i++)
                w[row + i] += d[((side * n + k) * T + 1) * W + i];
        }
        EXPECT_CLOSE_N(side ? "dctx_neg" : "dctx_pos", tensor_f32(grads[side]), w, want->numel,
                       TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL);
    }
done:
    trmml_prompt_free(&pl);
    param_store_destroy(ps);
}

TEST(prompt_assembly_class_specific) { assembly_case(true); }
TEST(prompt_assembly_class_agnostic) { assembly_case(false); }

/* ---- features through the text tower ------------------------------------------------------- */

TEST(prompt_features_vs_torch_every_chunk) {
    ClipModel *m = test_fixture_clip_model();
    Fixture *fx = fixture_open("dualcoop");
    PromptLearner pl;
    ParamStore *ps = NULL;
    if (!m || !fixture_learner(fx, m, "prompt", true, &pl, &ps)) goto done;
    const int64_t chunks[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++) {
        Tensor *gp, *gn;
        trmml_prompt_features(&pl, m, chunks[i], &gp, &gn);
        EXPECT(gp->requires_grad && gn->requires_grad, "taped features need a gradient");
        expect_features(fx, "prompt", gp, gn);
        ag_tape_reset();
        bool g = ag_set_grad_enabled(false);
        trmml_prompt_features_detached(&pl, m, chunks[i], &gp, &gn);
        ag_set_grad_enabled(g);
        expect_features(fx, "prompt", gp, gn);
    }
    expect_frozen(m);
    trmml_prompt_free(&pl);
done:
    if (ps) param_store_destroy(ps);
    if (m) clip_model_free(m);
}

TEST(prompt_features_class_agnostic_vs_torch) {
    ClipModel *m = test_fixture_clip_model();
    Fixture *fx = fixture_open("dualcoop");
    PromptLearner pl;
    ParamStore *ps = NULL;
    if (!m || !fixture_learner(fx, m, "agnostic", false, &pl, &ps)) goto done;
    Tensor *gp, *gn;
    trmml_prompt_features(&pl, m, 2, &gp, &gn);
    expect_features(fx, "agnostic", gp, gn);
    trmml_prompt_free(&pl);
done:
    if (ps) param_store_destroy(ps);
    if (m) clip_model_free(m);
}

/* The taped scheme (one backward through every chunk) and the recompute scheme (leaf features,
 * then per-chunk backward) give the same context gradients for any dL/dG, and the recompute
 * backward leaves nothing in the arena. */
static void schemes_case(bool class_specific) {
    ClipModel *m = test_fixture_clip_model();
    Fixture *fx = fixture_open("dualcoop");
    PromptLearner pl;
    ParamStore *ps = NULL;
    if (!m || !fixture_learner(fx, m, class_specific ? "prompt" : "agnostic", class_specific, &pl,
                               &ps))
        goto done;
    const int64_t C = pl.cfg.n_classes, E = m->cfg.embed_dim;
    Tensor *dgp = test_randn(21, 2, SHAPE(C, E)), *dgn = test_randn(22, 2, SHAPE(C, E));

    Tensor *gp, *gn;
    trmml_prompt_features(&pl, m, 0, &gp, &gn);
    ag_backward_many((Tensor *const[]){gp, gn}, (Tensor *const[]){dgp, dgn}, 2);
    Tensor *ref_pos = tensor_empty_like(pl.ctx_pos), *ref_neg = tensor_empty_like(pl.ctx_neg);
    memcpy(ref_pos->data, pl.ctx_pos->grad->data, (size_t)ref_pos->numel * sizeof(float));
    memcpy(ref_neg->data, pl.ctx_neg->grad->data, (size_t)ref_neg->numel * sizeof(float));

    const int64_t chunks[3] = {1, 2, 0};
    for (int i = 0; i < 3; i++) {
        param_zero_grad(ps);
        trmml_prompt_features_detached(&pl, m, chunks[i], &gp, &gn);
        EXPECT(ag_tape_length() == 0, "detached features recorded %d nodes", ag_tape_length());
        /* dL/dG arrives in two halves, as from two micro-batches */
        float *a = tensor_f32(gp->grad), *b = tensor_f32(gn->grad);
        for (int64_t j = 0; j < C * E; j++) {
            a[j] += 0.25f * tensor_f32(dgp)[j], a[j] += 0.75f * tensor_f32(dgp)[j];
            b[j] += tensor_f32(dgn)[j];
        }
        const size_t used = arena_used(tensor_arena());
        trmml_prompt_backward(&pl, m, chunks[i], gp, gn);
        EXPECT(arena_used(tensor_arena()) == used, "chunk %lld: backward left %zu bytes",
               (long long)chunks[i], arena_used(tensor_arena()) - used);
        /* Chunks change the GEMM shapes, so the two round differently; the context gradients
         * sum over tokens (and, class-agnostic, over classes) with cancellation: the bound is
         * normwise (test/tolerance.h). The text tower has 2 layers of width 32 (MLP 128): about
         * 40 K-long stages in its forward and backward, K <= 128. Measured: 1.1e-6 of max|ref|
         * (OpenBLAS Haswell kernel), 8e-7 (Prescott), 6e-8 (SkylakeX), 1.2e-7 (naive GEMM). */
        const double tol = tol_chain_normwise(40, 128); /* 6.1e-4 */
        char what[64];
        snprintf(what, sizeof what, "chunk %lld dctx_pos", (long long)chunks[i]);
        EXPECT_CLOSE_NORMWISE(what, tensor_f32(pl.ctx_pos->grad), tensor_f32(ref_pos),
                              ref_pos->numel, tol);
        snprintf(what, sizeof what, "chunk %lld dctx_neg", (long long)chunks[i]);
        EXPECT_CLOSE_NORMWISE(what, tensor_f32(pl.ctx_neg->grad), tensor_f32(ref_neg),
                              ref_neg->numel, tol);
    }
    expect_frozen(m);
    trmml_prompt_free(&pl);
done:
    if (ps) param_store_destroy(ps);
    if (m) clip_model_free(m);
}

TEST(prompt_recompute_backward_matches_taped) { schemes_case(true); }
TEST(prompt_recompute_backward_matches_taped_agnostic) { schemes_case(false); }

/* Finite differences of the features with respect to the contexts (through the text tower). */
typedef struct {
    PromptLearner *pl;
    const ClipModel *m;
} FeatCtx;

static Tensor *features_fn(Tensor *const *in, void *ctx) {
    FeatCtx *f = ctx;
    Tensor *gp, *gn;
    trmml_prompt_features(f->pl, f->m, 2, &gp, &gn);
    return tensor_concat((Tensor *const[]){gp, gn}, 2, 0);
}

TEST(prompt_features_gradcheck) {
    ClipModel *m = test_fixture_clip_model();
    Fixture *fx = fixture_open("dualcoop");
    PromptLearner pl;
    ParamStore *ps = NULL;
    if (!m || !fixture_learner(fx, m, "prompt", true, &pl, &ps)) goto done;
    FeatCtx ctx = {&pl, m};
    GradcheckOpts opts = {.atol = TOL_GRADCHECK_ATOL, .rtol = TOL_GRADCHECK_RTOL, .seed = 5,
                          .max_coords = 32};
    EXPECT_GRADCHECK("prompt features", features_fn, &ctx,
                     ((Tensor *const[]){pl.ctx_pos, pl.ctx_neg}), 2, NULL, &opts);
    trmml_prompt_free(&pl);
done:
    if (ps) param_store_destroy(ps);
    if (m) clip_model_free(m);
}
