/* test_train_e2e.c — the training program end to end on a miniature world: a tiny synthetic
 * dataset (datasets/synth.h) and a small random CLIP (test/util_clip.h), with cached features.
 *
 * A random CLIP cannot learn the task, so these tests check mechanics and exact properties:
 *   - the learnable-parameter counts of SPEC §10 on COCO/RN101 shapes;
 *   - the micro-batched TRM-ML step (pass 0 + whole-batch InfoNCE + per-micro-batch heads +
 *     chunked text backward) gives the gradients of the plain one-pass loss of docs/trmml.md,
 *     and PVLR's step (label side as a leaf, micro-batches, label-side and text backward) too;
 *   - the training loss on a fixed batch decreases over 20 steps for each method;
 *   - every method runs end to end, and a run stopped after one epoch and resumed ends with the
 *     same checkpoint bytes and the same metrics.jsonl as the uninterrupted run;
 *   - the run directory reopens for evaluation with the final metrics;
 *   - a feature cache of the wrong resize filter is refused unless overridden. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autograd/tape.h"
#include "clip/safetensors.h"
#include "datasets/synth.h"
#include "tensor/device.h"
#include "tensor/ops/gemm_bf16.h"
#include "test/test.h"
#include "test/util_clip.h"
#include "trmml/evaluate.h"
#include "trmml/feature_cache.h"
#include "trmml/method_trmml.h"
#include "trmml/plot.h"
#include "trmml/train.h"
#include "trmml/pvlr.h"
#include "trmml/trmml_loss.h"

TEST(train_e2e_param_counts) {
    /* SPEC §10.1-10.2 on COCO/RN101 shapes: C = 80, d = 512, text width 512. */
    struct {
        int method;
        int64_t C, d, want;
    } cases[] = {
        {TRMML_METHOD_DUALCOOP, 80, 512, 1310720},
        {TRMML_METHOD_TRMML, 80, 512, 7129089},
        {TRMML_METHOD_BASELINE, 80, 512, 1310721},
        {TRMML_METHOD_TRMML, 20, 512, 6115329}, /* VOC */
        {TRMML_METHOD_PVLR, 80, 512, 14457425}, /* SPEC §5.8, counted in test_pvlr.c */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RunConfig rc = run_config_default(cases[i].method, "coco2014");
        TrmmlModel m;
        trmml_model_declare(&m, &rc, cases[i].C, cases[i].d, 512);
        int64_t got = param_numel_trainable(m.ps);
        EXPECT(got == cases[i].want, "%s C=%lld: %lld learnable parameters, SPEC says %lld",
               trmml_method_name(cases[i].method), (long long)cases[i].C, (long long)got,
               (long long)cases[i].want);
        trmml_model_free(&m);
    }
}

/* The miniature world: a synthetic dataset, a random CLIP checkpoint, both feature caches. */
typedef struct {
    char dir[64], world[128], root[160], classes[160], model[160], train_feat[160], test_feat[160];
    ClipModel *clip;
    ClipTokenizer *tok;
    Dataset *train;
    int threads;
} World;

static bool world_open(World *w) {
    memset(w, 0, sizeof *w);
    /* One thread: the miniature model's ops take microseconds, so with 2 threads on a shared
     * machine OpenMP barriers dominate (measured under load: 62 s with 2 threads, 4.5 s with 1
     * for this file). The computation is the same either way. */
    w->threads = device_threads();
    device_set_threads(1);
    w->tok = test_load_vocab();
    if (!w->tok) {
        device_set_threads(w->threads);
        return false;
    }
    snprintf(w->dir, sizeof w->dir, "/tmp/trmml-train-XXXXXX");
    CHECK(mkdtemp(w->dir), "mkdtemp");
    snprintf(w->world, sizeof w->world, "%s/world", w->dir);
    snprintf(w->root, sizeof w->root, "%s/VOCdevkit", w->world);
    snprintf(w->classes, sizeof w->classes, "%s/classes.txt", w->world);
    snprintf(w->model, sizeof w->model, "%s/clip.safetensors", w->dir);
    snprintf(w->train_feat, sizeof w->train_feat, "%s/train.feat", w->dir);
    snprintf(w->test_feat, sizeof w->test_feat, "%s/test.feat", w->dir);
    SynthConfig sc = ds_synth_default_config();
    sc.n_train = 20;
    sc.n_test = 10;
    sc.size = 64;
    CHECK(ds_synth_write(w->world, &sc, false, NULL) == STATUS_OK, "%s", error_last());
    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 11);
    CHECK(safetensors_write(w->model, sd) == STATUS_OK, "%s", error_last());
    CHECK(clip_model_load(&w->clip, sd, &cfg) == STATUS_OK, "%s", error_last());
    param_store_destroy(sd);
    DsOptions opt = {.class_list = w->classes};
    Dataset *test = NULL;
    CHECK(ds_open("voc2007", w->root, "trainval", &opt, &w->train) == STATUS_OK, "%s",
          error_last());
    CHECK(ds_open("voc2007", w->root, "test", &opt, &test) == STATUS_OK, "%s", error_last());
    ExtractOptions eo = {.image_size = 64, .batch = 8, .model_id = "random small"};
    CHECK(feature_cache_extract(w->clip, w->train, &eo, w->train_feat, NULL) == STATUS_OK, "%s",
          error_last());
    CHECK(feature_cache_extract(w->clip, test, &eo, w->test_feat, NULL) == STATUS_OK, "%s",
          error_last());
    ds_free(test);
    return true;
}

static void world_close(World *w) {
    clip_model_free(w->clip);
    clip_tokenizer_free(w->tok);
    ds_free(w->train);
    test_remove_tree(w->dir);
    device_set_threads(w->threads);
}

static RunConfig mini_config(const World *w, int method) {
    RunConfig rc = run_config_default(method, "voc2007");
    snprintf(rc.root, sizeof rc.root, "%s", w->root);
    snprintf(rc.class_list, sizeof rc.class_list, "%s", w->classes);
    snprintf(rc.model, sizeof rc.model, "%s", w->model);
    snprintf(rc.cached_train, sizeof rc.cached_train, "%s", w->train_feat);
    snprintf(rc.cached_test, sizeof rc.cached_test, "%s", w->test_feat);
    run_config_default_splits(&rc);
    rc.ratio = 0.5;
    rc.tc.input_size = 64;
    rc.tc.batch_size = 8;
    rc.tc.micro_batch = 3;
    rc.tc.text_chunk = 5;
    rc.tc.epochs = 2;
    rc.tc.ffn_hidden = 48;
    if (method == TRMML_METHOD_TRMML) {
        method_trmml_config(&rc)->mmcp_queue_len = 4; /* small queues fill within the run, so MMCP acts */
        method_trmml_config(&rc)->head_hidden = 48;
    }
    /* The world's caches are bicubic; DualCoOp's filter is bilinear (SPEC §2.3). */
    rc.tc.cache_any_filter = method == TRMML_METHOD_DUALCOOP;
    return rc;
}

/* The labels (B, C) float of the first B training images, fully known. */
static Tensor *first_labels(const Dataset *ds, int64_t B) {
    Tensor *y = tensor_empty(DT_F32, 2, SHAPE(B, ds->c));
    for (int64_t i = 0; i < B * ds->c; i++) tensor_f32(y)[i] = ds->labels[i];
    return y;
}

/* The micro-batched step's gradients equal those of the plain loss on one taped forward. */
/* The first B labels of the training split with every fifth entry unknown (0). */
static Tensor *labels_with_unknowns(const Dataset *ds, int64_t B) {
    Tensor *y = first_labels(ds, B);
    for (int64_t i = 0; i < B * ds->c; i += 5) tensor_f32(y)[i] = 0;
    return y;
}

/* Host copies of every parameter's gradient (the one-pass reference). */
static float **snapshot_grads(const TrmmlModel *m) {
    const int np = param_count(m->ps);
    float **ref = xcalloc((size_t)np, sizeof *ref);
    for (int i = 0; i < np; i++) {
        Tensor *p = param_at(m->ps, i);
        ref[i] = xmalloc((size_t)p->numel * sizeof(float));
        tensor_copy_to_host(ref[i], p->grad);
    }
    return ref;
}

/* A training step split differently (text chunks of 5 classes against one chunk of all C;
 * micro-batches of 3 against the whole batch) runs other GEMM shapes, so it rounds differently.
 * The gradients are sums over classes, tokens and images that cancel (context gradients near 3e-4
 * in a tensor whose largest is 0.15; a key bias's is exactly 0), so an elementwise relative bound
 * is meaningless: the bound is normwise, relative to the largest gradient of the parameter's
 * module (module_grad_scale). Derivation (test/tolerance.h, docs/testing.md): the text tower's
 * forward and backward (1 layer, width 64, MLP 256) are about 20 K-long stages, K <= 256, so the
 * two schemes differ by at most tol_chain_normwise(20, 256) = 6.1e-4 of the magnitudes carried;
 * the heads see the features through cosines divided by a temperature (InfoNCE 0.07, PVLR's
 * relation softmax 0.05), which multiplies a relative change by up to 1/0.05 = 20: 1.2e-2.
 * Measured worst (make test-matrix): 2.9e-4 (carl.head2.bias, OpenBLAS Haswell and Zen
 * kernels), 5.5e-7 (SkylakeX). A wrong chunk offset, a lost micro-batch or a lost side of the
 * features errs by O(1). */
#define STEP_SPLIT_NORMWISE (tol_chain_normwise(20, 256) / 0.05)

/* The magnitude of the terms a parameter's gradient sums: the largest |gradient| over the tensors
 * of its module (names equal up to the last '.'). A bias's gradient sums the rows of dL/dout that
 * its weight's gradient sums multiplied by layer-normalised inputs (|x| ~ 1), and can cancel to
 * nothing (a key bias's gradient is exactly 0: softmax ignores a shift per query), so its own
 * largest value is no measure of its rounding error; the module's is. */
static double module_grad_scale(const ParamStore *ps, float *const *ref, int i) {
    const char *name = param_at(ps, i)->name;
    const char *dot = strrchr(name, '.');
    const size_t len = dot ? (size_t)(dot - name) + 1 : strlen(name);
    double scale = 0;
    for (int j = 0; j < param_count(ps); j++) {
        const Tensor *q = param_at(ps, j);
        if (strncmp(q->name, name, len) != 0 || strchr(q->name + len, '.')) continue;
        for (int64_t k = 0; k < q->numel; k++)
            if (fabs((double)ref[j][k]) > scale) scale = fabs((double)ref[j][k]);
    }
    return scale;
}

/* Every parameter's gradient against the reference ref (host copies, freed with ref), within
 * STEP_SPLIT_NORMWISE of its module's largest gradient. */
static void expect_grads_normwise(const ParamStore *ps, float **ref) {
    for (int i = 0; i < param_count(ps); i++) {
        const Tensor *p = param_at(ps, i);
        EXPECT_CLOSE_SCALED(p->name, tensor_f32(p->grad), ref[i], p->numel, STEP_SPLIT_NORMWISE,
                            module_grad_scale(ps, ref, i));
    }
    for (int i = 0; i < param_count(ps); i++) free(ref[i]);
    free(ref);
}

/* One trmml_train_step on items idx[0..B) of the cache (labels_with_unknowns) must give the
 * one-pass reference's loss and gradients. Frees ref. */
static void expect_step_matches_one_pass(TrmmlModel *m, FeatureCache *fc, const World *w,
                                         const int64_t *idx, int64_t B, float **ref,
                                         float ref_loss) {
    TrmmlOptim *o = trmml_optim_create(m);
    Tensor *dense = feature_cache_batch(fc, idx, B);
    Tensor *y = labels_with_unknowns(w->train, B);
    TrmmlStepStats st;
    EXPECT(trmml_train_step(m, o, dense, y, false, 1, &st), "step: loss %g", st.loss);
    /* The loss is a mean of terms of one sign: the bound relative to it. */
    EXPECT(fabs(st.loss - ref_loss) <= STEP_SPLIT_NORMWISE * fabs(ref_loss),
           "loss %.7g, one-pass %.7g", st.loss, ref_loss);
    expect_grads_normwise(m->ps, ref);
    tensor_step_end();
    trmml_optim_free(o);
}

TEST(train_e2e_micro_batch_step_matches_one_pass) {
    World w;
    if (!world_open(&w)) return;
    RunConfig rc = mini_config(&w, TRMML_METHOD_TRMML);
    /* Dropout on: the step draws each micro-batch's masks at its rows of the batch with the
     * step's seed (1 below), so the one-pass reference drawn with seed 1 from row 0 has the same
     * masks (tensor_dropout_rows). */
    rc.tc.dropout = 0.3;
    /* weigh KD and InfoNCE like L_cls, so errors in them show */
    method_trmml_config(&rc)->beta = method_trmml_config(&rc)->gamma = 1.0;
    TrmmlModel m;
    CHECK(trmml_model_create(&m, &rc, w.clip, w.tok, w.train->class_names, w.train->c) == STATUS_OK,
          "%s", error_last());
    /* A bank with a few entries, so that L_NCE also uses it. */
    Rng r;
    rng_seed(&r, 3);
    float v[32];
    for (int c = 0; c < 16; c += 3)
        for (int j = 0; j < 2; j++) {
            rng_fill_normal(&r, v, 32, 0, 1);
            trmml_mmcp_push_vector(&method_trmml_state(&m)->mmcp, c, v);
        }
    FeatureCache fc;
    CHECK(feature_cache_open(w.train_feat, &fc) == STATUS_OK, "%s", error_last());
    const int64_t B = 7, idx[7] = {0, 1, 2, 3, 4, 5, 6};

    /* Reference: the docs/trmml.md step in one pass (taped prompts, full batch). */
    Tensor *dense = feature_cache_batch(&fc, idx, B);
    Tensor *y = labels_with_unknowns(w.train, B);
    param_zero_grad(m.ps);
    Tensor *gp, *gn;
    trmml_prompt_features(&m.prompt, w.clip, 0, &gp, &gn);
    TrmmlCarlOut out;
    DropoutDraws drop = {.row0 = 0};
    rng_seed(&drop.rng, 1);
    MethodTrmmlState *s = method_trmml_state(&m);
    trmml_carl_forward(&s->carl, method_trmml_head_input(&m, dense), gp, gn, true, &drop, &out);
    TrmmlLoss loss;
    trmml_loss_compute(&s->carl, &rc.tc, method_trmml_config(&rc), &out, gp,
                       trmml_mmcp_targets(y, NULL, false), y, &s->mmcp, &loss);
    const float ref_loss = tensor_f32(loss.total)[0];
    ag_backward(loss.total);
    float **ref = snapshot_grads(&m);
    tensor_step_end();

    /* The training step: micro-batches of 3 (3 + 3 + 1), text chunks of 5 classes. */
    expect_step_matches_one_pass(&m, &fc, &w, idx, B, ref, ref_loss);
    feature_cache_close(&fc);
    trmml_model_free(&m);
    world_close(&w);
}

/* The trainer keeps the text tower's taped forward for the backward (two passes) instead of
 * re-running it (three); the step's loss and every gradient equal the chunked recompute scheme's
 * within the bound above, for each method. */
TEST(train_e2e_kept_text_graph_matches_recompute) {
    World w;
    if (!world_open(&w)) return;
    const int methods[4] = {TRMML_METHOD_TRMML, TRMML_METHOD_DUALCOOP, TRMML_METHOD_BASELINE,
                            TRMML_METHOD_PVLR};
    FeatureCache fc;
    CHECK(feature_cache_open(w.train_feat, &fc) == STATUS_OK, "%s", error_last());
    const int64_t B = 7, idx[7] = {0, 1, 2, 3, 4, 5, 6};
    for (int k = 0; k < 4; k++) {
        float **ref = NULL, ref_loss = 0;
        for (int pass = 0; pass < 2; pass++) {
            RunConfig rc = mini_config(&w, methods[k]);
            rc.tc.dropout = 0;
            rc.tc.text_chunk = pass == 0 ? 5 : 0; /* recompute in chunks of 5, then kept */
            TrmmlModel m;
            CHECK(trmml_model_create(&m, &rc, w.clip, w.tok, w.train->class_names, w.train->c) ==
                      STATUS_OK, "%s", error_last());
            TrmmlOptim *o = trmml_optim_create(&m);
            TrmmlStepStats st;
            EXPECT(trmml_train_step(&m, o, feature_cache_batch(&fc, idx, B),
                                    labels_with_unknowns(w.train, B), false, 1, &st),
                   "method %d: loss %g", methods[k], st.loss);
            EXPECT(ag_tape_length() == 0, "method %d: %d nodes left on the tape", methods[k],
                   ag_tape_length());
            if (pass == 0) {
                ref = snapshot_grads(&m);
                ref_loss = (float)st.loss;
            } else {
                /* The loss is a mean of terms of one sign: the bound relative to it. */
                EXPECT(fabsf((float)st.loss - ref_loss) <=
                           STEP_SPLIT_NORMWISE * fabsf(ref_loss),
                       "method %d: loss %.7g kept, %.7g recomputed", methods[k], st.loss, ref_loss);
                expect_grads_normwise(m.ps, ref);
            }
            tensor_step_end();
            trmml_optim_free(o);
            trmml_model_free(&m);
        }
    }
    feature_cache_close(&fc);
    world_close(&w);
}

/* With one chunk of all C classes, the recompute scheme (a forward without a tape, then a taped
 * forward and its backward) and the kept graph (one taped forward, then its backward) run the
 * same ops on the same shapes: the features and the context gradients must be identical, bit for
 * bit, under any GEMM kernel. */
TEST(train_e2e_kept_text_graph_is_exact) {
    World w;
    if (!world_open(&w)) return;
    const int methods[2] = {TRMML_METHOD_TRMML, TRMML_METHOD_PVLR}; /* two sides; positive only */
    for (int k = 0; k < 2; k++) {
        RunConfig rc = mini_config(&w, methods[k]);
        TrmmlModel m;
        CHECK(trmml_model_create(&m, &rc, w.clip, w.tok, w.train->class_names, w.train->c) ==
                  STATUS_OK, "%s", error_last());
        const PromptLearner *pl = &m.prompt;
        float *feat[2][2] = {{0}}, *grad[2][2] = {{0}};
        for (int kept = 0; kept < 2; kept++) {
            param_zero_grad(m.ps);
            Tensor *gp = NULL, *gn = NULL;
            PromptGraph graph = {0};
            bool was_kept = false;
            if (kept)
                was_kept = trmml_prompt_features_kept(pl, w.clip, 0, &gp, &gn, &graph);
            else
                trmml_prompt_features_detached(pl, w.clip, 0, &gp, &gn);
            EXPECT(was_kept == (kept == 1), "method %d: kept %d", methods[k], was_kept);
            /* The same random upstream gradient dL/dG+, dL/dG- for both schemes. */
            Tensor *side[2] = {gp, gn};
            for (int s = 0; s < 2 && side[s]; s++) {
                Rng r;
                rng_seed(&r, 40 + (uint64_t)s);
                float *v = xmalloc((size_t)side[s]->numel * sizeof(float));
                rng_fill_normal(&r, v, side[s]->numel, 0, 1);
                tensor_copy_from_host(side[s]->grad, v);
                free(v);
                feat[kept][s] = xmalloc((size_t)side[s]->numel * sizeof(float));
                tensor_copy_to_host(feat[kept][s], side[s]);
            }
            if (kept)
                trmml_prompt_backward_kept(pl, &graph, gp, gn);
            else
                trmml_prompt_backward(pl, w.clip, 0, gp, gn);
            Tensor *ctx[2] = {pl->ctx_pos, pl->ctx_neg};
            for (int s = 0; s < 2 && ctx[s]; s++) {
                grad[kept][s] = xmalloc((size_t)ctx[s]->numel * sizeof(float));
                tensor_copy_to_host(grad[kept][s], ctx[s]->grad);
            }
            tensor_step_end();
        }
        for (int s = 0; s < 2; s++) {
            const Tensor *ctx = s == 0 ? pl->ctx_pos : pl->ctx_neg;
            if (!ctx) continue;
            const int64_t nf = (int64_t)m.C * w.clip->cfg.embed_dim;
            EXPECT(feat[0][s] && feat[1][s] &&
                       memcmp(feat[0][s], feat[1][s], (size_t)nf * sizeof(float)) == 0,
                   "method %d side %d: kept features differ from the detached ones", methods[k], s);
            EXPECT(memcmp(grad[0][s], grad[1][s], (size_t)ctx->numel * sizeof(float)) == 0,
                   "method %d: %s: the kept graph's gradient differs from the recomputed one",
                   methods[k], ctx->name);
            /* The check can fail: the gradient is not zero. */
            bool nonzero = false;
            for (int64_t i = 0; i < ctx->numel; i++) nonzero |= grad[0][s][i] != 0;
            EXPECT(nonzero, "method %d: %s received no gradient", methods[k], ctx->name);
        }
        for (int a = 0; a < 2; a++)
            for (int s = 0; s < 2; s++) free(feat[a][s]), free(grad[a][s]);
        trmml_model_free(&m);
    }
    world_close(&w);
}

/* PVLR's step (label side once as a leaf, micro-batches, label-side backward, chunked text
 * backward) gives the gradients of the plain one-pass loss. */
TEST(train_e2e_pvlr_micro_batch_step_matches_one_pass) {
    World w;
    if (!world_open(&w)) return;
    RunConfig rc = mini_config(&w, TRMML_METHOD_PVLR);
    rc.tc.dropout = 0.3; /* the step's draws are reproduced below */
    TrmmlModel m;
    CHECK(trmml_model_create(&m, &rc, w.clip, w.tok, w.train->class_names, w.train->c) == STATUS_OK,
          "%s", error_last());
    /* W_K starts at 0, which would hide its path: give it values. */
    Rng r;
    rng_seed(&r, 4);
    float *wk = xmalloc((size_t)((PvlrHead *)m.head)->kap_weight->numel * sizeof(float));
    rng_fill_normal(&r, wk, ((PvlrHead *)m.head)->kap_weight->numel, 0, 0.1f);
    tensor_copy_from_host(((PvlrHead *)m.head)->kap_weight, wk);
    free(wk);
    FeatureCache fc;
    CHECK(feature_cache_open(w.train_feat, &fc) == STATUS_OK, "%s", error_last());
    const int64_t B = 7, idx[7] = {0, 1, 2, 3, 4, 5, 6};
    Tensor *dense = feature_cache_batch(&fc, idx, B);
    Tensor *y = labels_with_unknowns(w.train, B);
    param_zero_grad(m.ps);
    Tensor *gp, *gn;
    trmml_prompt_features(&m.prompt, w.clip, 0, &gp, &gn);
    EXPECT(gn == NULL, "PVLR's prompt learner produced negative features");
    /* The step's draws (step seed 1): the label side from its own seed, the images' masks from
     * the step's seed at their rows of the batch. */
    PvlrOut out;
    DropoutDraws labels_drop = {.row0 = 0}, images_drop = {.row0 = 0};
    rng_seed(&labels_drop.rng, trmml_seed_mix(1, 7, 0, 0));
    rng_seed(&images_drop.rng, 1);
    Tensor *labels = pvlr_labels((PvlrHead *)m.head, gp, true, &labels_drop);
    pvlr_predict((PvlrHead *)m.head, dense, labels, true, &images_drop, &out);
    Tensor *loss = pvlr_loss((PvlrHead *)m.head, out.logits, y);
    const float ref_loss = tensor_f32(loss)[0];
    ag_backward(loss);
    float **ref = snapshot_grads(&m);
    tensor_step_end();
    expect_step_matches_one_pass(&m, &fc, &w, idx, B, ref, ref_loss);
    feature_cache_close(&fc);
    trmml_model_free(&m);
    world_close(&w);
}

/* Each method lowers its training loss on one fixed batch (random CLIP features still carry
 * information the heads can fit). */
TEST(train_e2e_loss_decreases_on_a_fixed_batch) {
    World w;
    if (!world_open(&w)) return;
    FeatureCache fc;
    CHECK(feature_cache_open(w.train_feat, &fc) == STATUS_OK, "%s", error_last());
    const int64_t B = 8, idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int method = 0; method < TRMML_METHOD_COUNT; method++) {
        RunConfig rc = mini_config(&w, method);
        rc.tc.dropout = 0;
        TrmmlModel m;
        CHECK(trmml_model_create(&m, &rc, w.clip, w.tok, w.train->class_names, w.train->c) ==
                  STATUS_OK,
              "%s", error_last());
        TrmmlOptim *o = trmml_optim_create(&m);
        /* A constant learning rate: 1e-3 (AdamW) or 0.02 (SGD, momentum 0.9). */
        trmml_optim_set(o, method == TRMML_METHOD_DUALCOOP ? 0.02 : 1e-3,
                        method == TRMML_METHOD_DUALCOOP ? 0.9 : 0.9);
        double first = NAN, last = NAN;
        for (int s = 0; s < 20; s++) {
            Tensor *dense = feature_cache_batch(&fc, idx, B);
            TrmmlStepStats st;
            bool ok =
                trmml_train_step(&m, o, dense, first_labels(w.train, B), false, (uint64_t)s, &st);
            tensor_step_end();
            EXPECT(ok && isfinite(st.loss), "%s step %d: loss %g", trmml_method_name(method), s,
                   st.loss);
            if (s == 0) first = st.loss;
            last = st.loss;
        }
        /* Measured: trmml 2.52 -> 1.07, dualcoop 0.58 -> 0.26, baseline 1.24 -> 0.65, pvlr
         * 5.61 -> 2.07 (roughly). */
        EXPECT(last < 0.8 * first, "%s: loss %g after 20 steps, %g at the first",
               trmml_method_name(method), last, first);
        trmml_optim_free(o);
        trmml_model_free(&m);
    }
    feature_cache_close(&fc);
    world_close(&w);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

static bool same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Every method end to end, with kill-and-resume, and evaluation of the run directory. */
/* The last line of run `dir`'s metrics.jsonl must be reproduced exactly by reopening the run
 * (trmml_run_open) and evaluating it on the test cache; `check`, when given, runs on the opened
 * run first. */
static void expect_reopened_eval_matches(const World *w, const char *dir, const char *name,
                                         void (*check)(const TrmmlRun *)) {
    char path[320];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t n = 0;
    char *text = slurp(path, &n);
    char *lastline = text && n > 1 ? text + n - 1 : NULL;
    while (lastline && lastline > text && lastline[-1] != '\n') lastline--;
    TrmmlRun run;
    if (trmml_run_open(dir, &run) != STATUS_OK) {
        test_fail(__FILE__, __LINE__, "%s: reopen: %s", name, error_last());
        free(text);
        return;
    }
    if (check) check(&run);
    Dataset *test = NULL;
    DsOptions dopt = {.class_list = w->classes};
    CHECK(ds_open("voc2007", w->root, "test", &dopt, &test) == STATUS_OK, "%s", error_last());
    TrmmlBatchSource src;
    CHECK(trmml_source_cache(&src, w->test_feat, test, run.clip, 64) == STATUS_OK, "%s",
          error_last());
    TrmmlEval ev;
    EXPECT(trmml_evaluate(&run.model, &src, test, TRMML_EVAL_BATCH, &ev) == STATUS_OK, "%s: %s",
           name, error_last());
    EXPECT(ev.json && lastline && strstr(lastline, ev.json) && run.meta.finished,
           "%s: eval of the reopened run gives %.60s, training logged %.200s", name,
           ev.json ? ev.json : "(none)", lastline ? lastline : "(none)");
    trmml_eval_free(&ev);
    trmml_source_close(&src);
    ds_free(test);
    trmml_run_close(&run);
    free(text);
}

TEST(train_e2e_runs_resume_and_eval) {
    World w;
    if (!world_open(&w)) return;
    for (int method = 0; method < TRMML_METHOD_COUNT; method++) {
        const char *name = trmml_method_name(method);
        RunConfig rc = mini_config(&w, method);
        char full[256], cut[256], a[320], b[320];
        snprintf(full, sizeof full, "%s/%s-full", w.dir, name);
        snprintf(cut, sizeof cut, "%s/%s-cut", w.dir, name);
        TrainOptions opt = {0};
        EXPECT(trmml_train_run(&rc, full, &opt) == STATUS_OK, "%s: %s", name, error_last());
        /* Killed after the first epoch's checkpoint, then resumed from it. */
        opt.stop_after = 1;
        EXPECT(trmml_train_run(&rc, cut, &opt) == STATUS_OK, "%s cut: %s", name, error_last());
        EXPECT(trmml_train_run(&rc, cut, &opt) == STATUS_ERR_USAGE,
               "%s: a second run into the same "
               "directory without --resume must be refused",
               name);
        opt.stop_after = 0;
        opt.resume = true;
        EXPECT(trmml_train_run(&rc, cut, &opt) == STATUS_OK, "%s resume: %s", name, error_last());
        snprintf(a, sizeof a, "%s/checkpoint.safetensors", full);
        snprintf(b, sizeof b, "%s/checkpoint.safetensors", cut);
        EXPECT(same_file(a, b),
               "%s: the resumed run's checkpoint differs from the uninterrupted one", name);
        snprintf(a, sizeof a, "%s/metrics.jsonl", full);
        snprintf(b, sizeof b, "%s/metrics.jsonl", cut);
        EXPECT(same_file(a, b), "%s: the resumed run's metrics.jsonl differs", name);
        /* Two stages for TRM-ML (2 + 2 epochs), one for the others. */
        size_t n = 0;
        char *text = slurp(a, &n);
        int lines = 0;
        for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
        EXPECT(lines == (method == TRMML_METHOD_TRMML ? 4 : 2) && strstr(text, "\"mAP\":"),
               "%s: metrics.jsonl has %d lines: %.200s", name, lines, text ? text : "(missing)");
        /* The last evaluation is reproduced exactly by reopening the run directory. */
        expect_reopened_eval_matches(&w, full, name, NULL);
        free(text);
    }
    world_close(&w);
}

/* The image-tower source with the test transform reproduces the cache (to float16 rounding);
 * the training transform gives features of the same shape that depend on the seed. */
TEST(train_e2e_image_source_matches_cache) {
    World w;
    if (!world_open(&w)) return;
    TrmmlBatchSource cached, images, augmented;
    CHECK(trmml_source_cache(&cached, w.train_feat, w.train, w.clip, 64) == STATUS_OK, "%s",
          error_last());
    CHECK(trmml_source_images(&images, w.train, w.clip, 64, TRMML_TRANSFORM_TEST_BICUBIC, false) ==
              STATUS_OK,
          "%s", error_last());
    CHECK(trmml_source_images(&augmented, w.train, w.clip, 64, TRMML_TRANSFORM_TRAIN_TRMML,
                              false) == STATUS_OK,
          "%s", error_last());
    const int64_t idx[3] = {5, 0, 17};
    Tensor *a = NULL, *b = NULL, *c1 = NULL, *c2 = NULL;
    EXPECT(cached.dense(&cached, idx, 3, 0, 0, &a) == STATUS_OK, "%s", error_last());
    EXPECT(images.dense(&images, idx, 3, 0, 0, &b) == STATUS_OK, "%s", error_last());
    EXPECT(a && b && tensor_same_shape(a, b) && a->shape[1] == 5 && a->shape[2] == 32, "shapes");
    if (a && b && tensor_same_shape(a, b))
        EXPECT_CLOSE_N("tower vs cache", tensor_f32(b), tensor_f32(a), a->numel, 1e-4, 4.9e-4);
    EXPECT(augmented.dense(&augmented, idx, 3, 0, 1, &c1) == STATUS_OK &&
               augmented.dense(&augmented, idx, 3, 0, 2, &c2) == STATUS_OK,
           "%s", error_last());
    if (c1 && c2) {
        bool differ = false;
        for (int64_t i = 0; i < c1->numel; i++) differ |= tensor_f32(c1)[i] != tensor_f32(c2)[i];
        EXPECT(tensor_same_shape(c1, a) && differ, "augmented batches of two seeds should differ");
    }
    tensor_step_end();
    trmml_source_close(&cached);
    trmml_source_close(&images);
    trmml_source_close(&augmented);
    world_close(&w);
}

/* The commands: train (uncached, one epoch), eval, predict, visualize, and their errors. */
TEST(train_e2e_commands) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    World w;
    if (!world_open(&w)) return;
    static char out[1 << 16];
    char cmd[8192], run[256], png[256];
    snprintf(run, sizeof run, "%s/run", w.dir);
    snprintf(png, sizeof png, "%s/regions.png", w.dir);
    /* Usage errors: status 2; a missing checkpoint: status 1 with a hint. */
    snprintf(cmd, sizeof cmd, "'%s' train --method nope --out %s 2>&1", exe, run);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 2 && strstr(out, "--method 'nope'"),
           "bad method: %s", out);
    snprintf(cmd, sizeof cmd,
             "'%s' train --method trmml --dataset voc2007 --root '%s' --model %s/none.pt "
             "--out %s 2>&1",
             exe, w.root, w.dir, run);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 1 && strstr(out, "none.pt") &&
               strstr(out, "HINT"),
           "missing model: %s", out);
    /* One optimizer step in all (a batch larger than the split, one epoch) leaves OneCycle no
     * room to rise and fall: a usage error that says what to change, and no run directory. */
    snprintf(cmd, sizeof cmd,
             "'%s' --threads 1 train --method pvlr --dataset voc2007 --root '%s' --class-list '%s' "
             "--model '%s' --out '%s/one-step' --cached '%s' --cached-test '%s' --epochs 1 "
             "--batch 100000 --set input_size=64 --set ffn_hidden=32 --set pvlr_heads=4 2>&1",
             exe, w.root, w.classes, w.model, run, w.train_feat, w.test_feat);
    char one_step[300];
    snprintf(one_step, sizeof one_step, "%s/one-step", run);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 2 && strstr(out, "OneCycle") &&
               strstr(out, "--epochs") && access(one_step, F_OK) != 0,
           "one optimizer step: %s", out);
    /* PVLR from the feature caches, then its text->visual attention maps. */
    snprintf(cmd, sizeof cmd,
             "'%s' --threads 1 train --method pvlr --dataset voc2007 --root '%s' --class-list '%s' "
             "--model '%s' --out '%s/pvlr' --cached '%s' --cached-test '%s' --epochs 1 --batch 10 "
             "--no-dma-v2t --set input_size=64 --set ffn_hidden=32 --set pvlr_heads=4 2>&1",
             exe, w.root, w.classes, w.model, run, w.train_feat, w.test_feat);
    int prc = test_run_capture(cmd, out, sizeof out);
    EXPECT(prc == 0 && strstr(out, "model method=pvlr") && strstr(out, "eval stage=1 epoch=1 mAP="),
           "pvlr train exit %d: %.2000s", prc, out);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 visualize '%s/pvlr' '%s' --out '%s' --top 2 2>&1",
             exe, run, ds_image_path(w.train, 0), png);
    prc = test_run_capture(cmd, out, sizeof out);
    Image pim = {0};
    /* Two captioned panels of the 64 px picture, scaled up to PLOT_PANEL_MIN_WIDTH so that the
     * caption (class, probability) fits (trmml/plot.h). */
    EXPECT(prc == 0 && strncmp(out, "0\t", 2) == 0 && image_load(png, &pim, NULL) == STATUS_OK &&
               pim.w == 2 * PLOT_PANEL_MIN_WIDTH && pim.h == PLOT_CAPTION_HEIGHT + PLOT_PANEL_MIN_WIDTH,
           "pvlr visualize exit %d (%dx%d): %.500s", prc, pim.w, pim.h, out);
    image_free(&pim);
    /* TRM-ML through the image tower (augmented training, test transform for the evaluation). */
    snprintf(
        cmd, sizeof cmd,
        "'%s' --threads 1 train --method trmml --dataset voc2007 --root '%s' "
        "--class-list '%s' --model '%s' --out '%s' --ratio 0.5 --epochs 1 --batch 10 "
        "--micro-batch 4 --no-mmcp --set input_size=64 --set ffn_hidden=32 --set head_hidden=32 "
        "2>&1",
        exe, w.root, w.classes, w.model, run);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "step=2 stage=1 epoch=1 loss=") &&
               strstr(out, "eval stage=1 epoch=1 mAP="),
           "train exit %d: %.2000s", rc, out);
    char path[320];
    const char *files[] = {
        "config.txt", "classes.txt",           "log.txt", "metrics.jsonl", "ap.csv",
        "curve.png",  "checkpoint.safetensors"};
    for (int i = 0; i < 7; i++) {
        snprintf(path, sizeof path, "%s/%s", run, files[i]);
        EXPECT(access(path, R_OK) == 0, "run directory lacks %s", files[i]);
    }
    /* curve.png is a PNG of the size trmml/run.h documents (its content: test_plot.c). */
    Image curve = {0};
    snprintf(path, sizeof path, "%s/curve.png", run);
    EXPECT(image_load(path, &curve, NULL) == STATUS_OK && curve.w == RUN_CURVE_W && curve.h == RUN_CURVE_H,
           "curve.png: %dx%d: %s", curve.w, curve.h, error_last());
    image_free(&curve);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 eval '%s' 2>&1", exe, run);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strncmp(out, "{\"mAP\":", 7) == 0 && strstr(out, "\"top3\":"),
           "eval exit %d: %.500s", rc, out);
    /* It prints what training logged for the checkpoint, to the last digit (the same images in
     * the same batches of TRMML_EVAL_BATCH, both at --threads 1). */
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    size_t nm = 0;
    char *metrics = slurp(path, &nm);
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    char *last = metrics && nm > 1 ? metrics + nm - 1 : NULL; /* its last line */
    while (last && last > metrics && last[-1] != '\n') last--;
    EXPECT(last && out[0] && strstr(last, out), "trmml eval printed %.300s; metrics.jsonl: %.600s",
           out, metrics ? metrics : "(missing)");
    free(metrics);
    snprintf(path, sizeof path, "%s/ap.csv", run);
    size_t n = 0;
    char *csv = slurp(path, &n);
    EXPECT(csv && strncmp(csv, "class,AP\nred circle,", 20) == 0, "ap.csv: %.100s",
           csv ? csv : "(missing)");
    free(csv);
    const char *image = ds_image_path(w.train, 0);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 predict '%s' '%s' --top 2 2>&1", exe, run, image);
    rc = test_run_capture(cmd, out, sizeof out);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    EXPECT(rc == 0 && lines == 2 && strncmp(out, image, strlen(image)) == 0,
           "predict exit %d: %.500s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 visualize '%s' '%s' --out '%s' --top 2 2>&1", exe,
             run, image, png);
    rc = test_run_capture(cmd, out, sizeof out);
    Image im = {0};
    EXPECT(rc == 0 && strncmp(out, "0\t", 2) == 0 && image_load(png, &im, NULL) == STATUS_OK &&
               im.w == 2 * PLOT_PANEL_MIN_WIDTH && im.h == PLOT_CAPTION_HEIGHT + PLOT_PANEL_MIN_WIDTH,
           "visualize exit %d (%dx%d): %.500s", rc, im.w, im.h, out);
    image_free(&im);
    /* --resume of a finished run does nothing and succeeds; other flags with it are refused. */
    snprintf(cmd, sizeof cmd, "'%s' train --out '%s' --resume --epochs 3 2>&1", exe, run);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 2, "resume with flags: %s", out);
    world_close(&w);
}

/* `trmml train --cached` refuses a cache extracted with another resize filter than the method's
 * (exit 1, naming the file and both filters, no checkpoint), unless --cache-any-filter. */
TEST(train_e2e_cache_filter_is_checked) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    World w;
    if (!world_open(&w)) return;
    char bilinear[200];
    snprintf(bilinear, sizeof bilinear, "%s/train-bilinear.feat", w.dir);
    ExtractOptions eo = {.image_size = 64, .batch = 8, .model_id = "random small",
                         .filter = RESAMPLE_BILINEAR};
    CHECK(feature_cache_extract(w.clip, w.train, &eo, bilinear, NULL) == STATUS_OK, "%s",
          error_last());
    static char out[1 << 16];
    char cmd[8192], run[256], ckpt[300];
    const struct {
        const char *method, *train_cache, *extra, *got, *want;
        int status;
    } cases[] = {
        {"dualcoop", w.train_feat, "", "bicubic", "bilinear", 1},
        {"trmml", bilinear, "", "bilinear", "bicubic", 1},
        {"dualcoop", w.train_feat, "--cache-any-filter", NULL, NULL, 0},
    };
    for (int i = 0; i < 3; i++) {
        snprintf(run, sizeof run, "%s/run-filter-%d", w.dir, i);
        snprintf(cmd, sizeof cmd,
                 "'%s' --threads 1 train --method %s --dataset voc2007 --root '%s' "
                 "--class-list '%s' --model '%s' --out '%s' --ratio 0.5 --epochs 1 --batch 10 "
                 "--set input_size=64 --cached '%s' --cached-test '%s' %s 2>&1",
                 exe, cases[i].method, w.root, w.classes, w.model, run, cases[i].train_cache,
                 w.test_feat, cases[i].extra);
        int rc = test_run_capture(cmd, out, sizeof out);
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run);
        const bool has_ckpt = access(ckpt, F_OK) == 0;
        if (cases[i].status) {
            char want[300];
            snprintf(want, sizeof want, "%s: features extracted with the %s filter",
                     cases[i].train_cache, cases[i].got);
            EXPECT(rc == 1 && strstr(out, want) && strstr(out, cases[i].want) &&
                       strstr(out, "--cache-any-filter") && !has_ckpt,
                   "%s with a %s cache: exit %d, checkpoint %d: %.1000s", cases[i].method,
                   cases[i].got, rc, has_ckpt, out);
        } else {
            EXPECT(rc == 0 && has_ckpt, "%s %s: exit %d: %.1000s", cases[i].method,
                   cases[i].extra, rc, out);
        }
    }
    world_close(&w);
}

/* A non-finite loss is reported and the step is not applied (the parameters stay as they were). */
TEST(train_e2e_non_finite_loss_is_not_applied) {
    World w;
    if (!world_open(&w)) return;
    for (int method = 0; method < TRMML_METHOD_COUNT; method++) {
        RunConfig rc = mini_config(&w, method);
        TrmmlModel m;
        CHECK(trmml_model_create(&m, &rc, w.clip, w.tok, w.train->class_names, w.train->c) ==
                  STATUS_OK,
              "%s", error_last());
        TrmmlOptim *o = trmml_optim_create(&m);
        Tensor *p0 = param_at(m.ps, 0);
        float before = tensor_f32(p0)[0];
        Tensor *dense = tensor_empty(DT_F32, 3, SHAPE(4, 5, 32));
        /* NaN in token 0 (the baseline's input) and in a spatial token (TRM-ML's). */
        for (int64_t i = 0; i < dense->numel; i++)
            tensor_f32(dense)[i] = i == 7 || i == 40 ? NAN : 0.1f * (float)(i % 13);
        TrmmlStepStats st;
        bool ok = trmml_train_step(&m, o, dense, first_labels(w.train, 4), false, 0, &st);
        tensor_step_end();
        EXPECT(!ok && !isfinite(st.loss) && tensor_f32(p0)[0] == before,
               "%s: a NaN feature gave ok=%d loss %g", trmml_method_name(method), ok, st.loss);
        trmml_optim_free(o);
        trmml_model_free(&m);
    }
    world_close(&w);
}

/* ---- the run directory under hostile conditions (docs/training.md "Reliability") ----------- */

/* Replace the first occurrence of `from` in file `path` by `to`; false when absent. */
static bool edit_file(const char *path, const char *from, const char *to) {
    size_t n = 0;
    char *text = slurp(path, &n);
    char *hit = text ? memmem(text, n, from, strlen(from)) : NULL;
    if (hit) {
        size_t head = (size_t)(hit - text), tail = n - head - strlen(from);
        char *out = xmalloc(n + strlen(to) + 1);
        memcpy(out, text, head);
        memcpy(out + head, to, strlen(to));
        memcpy(out + head + strlen(to), hit + strlen(from), tail);
        test_write_file(path, out, head + strlen(to) + tail);
        free(out);
    }
    free(text);
    return hit != NULL;
}

/* A run of `rc` into w.dir/<name>: complete (stop_after 0) or stopped after one epoch. */
static void train_into(const World *w, const RunConfig *rc, const char *name, int64_t stop_after,
                       char *dir, size_t cap) {
    snprintf(dir, cap, "%s/%s", w->dir, name);
    TrainOptions opt = {.stop_after = stop_after};
    CHECK(trmml_train_run(rc, dir, &opt) == STATUS_OK, "%s: %s", dir, error_last());
}

/* precision = bf16 (CPUs with AVX512-BF16): the frozen text tower's products run in bf16; a
 * run is as deterministic as in fp32 (resumed = uninterrupted, bit for bit), config.txt keeps
 * the key, reopening the run evaluates in bf16 again and reproduces the logged line, and
 * closing a run leaves the process in fp32. */
static void expect_bf16(const TrmmlRun *run) {
    EXPECT(run->cfg.precision == PRECISION_BF16 && tensor_precision() == PRECISION_BF16,
           "a reopened bf16 run evaluates in fp32");
}

TEST(train_e2e_bf16_run_resumes_and_evaluates_exactly) {
    if (!gemm_bf16_available()) {
        test_skip("this CPU has no AVX512-BF16");
        return;
    }
    World w;
    if (!world_open(&w)) return;
    RunConfig rc = mini_config(&w, TRMML_METHOD_TRMML);
    EXPECT(run_config_set(&rc, "precision", "bf16") == STATUS_OK, "%s", error_last());
    char full[256], cut[256], a[320], b[320];
    train_into(&w, &rc, "bf16-full", 0, full, sizeof full);
    EXPECT(tensor_precision() == PRECISION_FP32, "a closed run leaves the precision in bf16");
    train_into(&w, &rc, "bf16-cut", 1, cut, sizeof cut);
    TrainOptions opt = {.resume = true};
    EXPECT(trmml_train_run(NULL, cut, &opt) == STATUS_OK, "resume: %s", error_last());
    snprintf(a, sizeof a, "%s/checkpoint.safetensors", full);
    snprintf(b, sizeof b, "%s/checkpoint.safetensors", cut);
    EXPECT(same_file(a, b), "bf16: the resumed run's checkpoint differs from the uninterrupted one");
    snprintf(a, sizeof a, "%s/config.txt", full);
    size_t n = 0;
    char *config = slurp(a, &n);
    EXPECT(config && strstr(config, "\nprecision = bf16"), "config.txt: %.300s",
           config ? config : "(missing)");
    free(config);
    expect_reopened_eval_matches(&w, full, "bf16", expect_bf16);
    world_close(&w);
}

/* Resume takes the run's settings from its checkpoint: a config.txt that lost keys (truncated)
 * resumes exactly as the uninterrupted run and gets its keys back; a config.txt whose recipe was
 * edited is refused naming the file and the key; neither ends in a signal (issue 13, item 1). */
TEST(train_e2e_resume_config_comes_from_checkpoint) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    World w;
    if (!world_open(&w)) return;
    static char out[1 << 16];
    char full[256], cut[256], path[320], a[320], cmd[8192];
    RunConfig rc = mini_config(&w, TRMML_METHOD_BASELINE);
    train_into(&w, &rc, "full", 0, full, sizeof full);

    train_into(&w, &rc, "truncated", 1, cut, sizeof cut);
    snprintf(path, sizeof path, "%s/config.txt", cut);
    size_t n = 0;
    char *text = slurp(path, &n);
    char *third = text ? strchr(strchr(strchr(text, '\n') + 1, '\n') + 1, '\n') : NULL;
    CHECK(third, "config.txt of %s has fewer than three lines", cut);
    test_write_file(path, text, (size_t)(third + 1 - text)); /* method, dataset, root only */
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 train --out '%s' --resume 2>&1", exe, cut);
    int st = test_run_capture(cmd, out, sizeof out);
    snprintf(a, sizeof a, "%s/checkpoint.safetensors", full);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cut);
    EXPECT(st == 0 && same_file(a, path),
           "resume with a truncated config.txt: exit %d, same checkpoint %d: %.1500s", st,
           same_file(a, path), out);
    snprintf(path, sizeof path, "%s/config.txt", cut);
    free(text);
    text = slurp(path, &n);
    EXPECT(text && strstr(text, "\nepochs = 2 ") && strstr(text, "\nbatch_size = 8 "),
           "config.txt was not restored from the checkpoint: %.300s", text ? text : "(missing)");
    free(text);

    train_into(&w, &rc, "edited", 1, cut, sizeof cut);
    snprintf(path, sizeof path, "%s/config.txt", cut);
    CHECK(edit_file(path, "\nepochs = 2 ", "\nepochs = 5 "), "no 'epochs = 2' in %s", path);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 train --out '%s' --resume 2>&1", exe, cut);
    st = test_run_capture(cmd, out, sizeof out);
    EXPECT(st == 1 && strstr(out, path) && strstr(out, "'epochs'") &&
               strstr(out, "'epochs = 5'") && strstr(out, "'epochs = 2'"),
           "resume with an edited config.txt: exit %d: %.1500s", st, out);

    /* How a step is split may change (a smaller machine); a cache may not vanish. */
    train_into(&w, &rc, "resplit", 1, cut, sizeof cut);
    snprintf(path, sizeof path, "%s/config.txt", cut);
    CHECK(edit_file(path, "\nmicro_batch = 3 ", "\nmicro_batch = 2 "), "no 'micro_batch = 3' in %s",
          path);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 train --out '%s' --resume 2>&1", exe, cut);
    st = test_run_capture(cmd, out, sizeof out);
    EXPECT(st == 0, "resume with micro_batch 3 -> 2: exit %d: %.1500s", st, out);
    train_into(&w, &rc, "uncached", 1, cut, sizeof cut);
    snprintf(path, sizeof path, "%s/config.txt", cut);
    char from[400];
    snprintf(from, sizeof from, "\ncached_train = \"%s\"", w.train_feat);
    CHECK(edit_file(path, from, "\ncached_train = \"\""), "no cached_train line in %s", path);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 train --out '%s' --resume 2>&1", exe, cut);
    st = test_run_capture(cmd, out, sizeof out);
    EXPECT(st == 1 && strstr(out, "'cached_train'"),
           "resume with the training cache removed: exit %d: %.1500s", st, out);
    world_close(&w);
}

/* The counters of a checkpoint are checked against the run before training continues: a
 * dataset that changed size under `root` (the relocatable key) is refused with a message, not a
 * CHECK abort in the schedule. */
TEST(train_e2e_resume_checks_counters) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    World w;
    if (!world_open(&w)) return;
    static char out[1 << 16];
    char cut[256], path[320], cmd[8192], world2[200], root2[240];
    snprintf(world2, sizeof world2, "%s/world2", w.dir);
    snprintf(root2, sizeof root2, "%s/VOCdevkit", world2);
    SynthConfig sc = ds_synth_default_config();
    sc.n_train = 28; /* 4 steps of 8 per epoch instead of 3 */
    sc.n_test = 10;
    sc.size = 64;
    CHECK(ds_synth_write(world2, &sc, false, NULL) == STATUS_OK, "%s", error_last());
    RunConfig rc = mini_config(&w, TRMML_METHOD_BASELINE);
    rc.cached_train[0] = rc.cached_test[0] = 0; /* the image tower: no cache of 20 images */
    train_into(&w, &rc, "moved", 1, cut, sizeof cut);
    snprintf(path, sizeof path, "%s/config.txt", cut);
    CHECK(edit_file(path, w.root, root2), "no root in %s", path);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 train --out '%s' --resume 2>&1", exe, cut);
    int st = test_run_capture(cmd, out, sizeof out);
    EXPECT(st == 1 && strstr(out, "checkpoint.safetensors") && strstr(out, "steps per epoch"),
           "resume on a dataset of another size: exit %d: %.1500s", st, out);
    world_close(&w);
}

/* metrics.jsonl is rewritten on resume from the checkpoint's own record: garbage, a missing
 * file, and a line written after the last checkpoint (a kill between the two) all end as the
 * uninterrupted run's file (issue 13, item 3). */
TEST(train_e2e_resume_rewrites_metrics) {
    World w;
    if (!world_open(&w)) return;
    char full[256], cut[256], path[320], a[320], b[320];
    RunConfig rc = mini_config(&w, TRMML_METHOD_BASELINE);
    train_into(&w, &rc, "full", 0, full, sizeof full);
    snprintf(a, sizeof a, "%s/metrics.jsonl", full);
    char garbage[300];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (char)(i * 37 + 11);
    const char *cases[] = {"garbage", "missing", "extra"};
    for (int k = 0; k < 3; k++) {
        train_into(&w, &rc, cases[k], 1, cut, sizeof cut);
        snprintf(path, sizeof path, "%s/metrics.jsonl", cut);
        if (k == 0) test_write_file(path, garbage, sizeof garbage);
        if (k == 1) remove(path);
        if (k == 2) {
            size_t n = 0;
            char *text = slurp(path, &n), *both = xmalloc(2 * n + 1);
            memcpy(both, text, n);
            memcpy(both + n, text, n);
            test_write_file(path, both, 2 * n);
            free(both);
            free(text);
        }
        TrainOptions opt = {.resume = true};
        EXPECT(trmml_train_run(&rc, cut, &opt) == STATUS_OK, "%s: %s", cases[k], error_last());
        snprintf(b, sizeof b, "%s/metrics.jsonl", cut);
        EXPECT(same_file(a, b), "%s metrics.jsonl: the resumed run's differs", cases[k]);
    }
    world_close(&w);
}

/* One flipped byte anywhere in a checkpoint (data or header), or a truncated one, is refused by
 * every reader (trmml_run_open: eval, predict, visualize; resume), naming the file; so is a
 * version 1 checkpoint, by its version (issue 13, item 6). */
TEST(train_e2e_checkpoint_corruption_is_refused) {
    World w;
    if (!world_open(&w)) return;
    char full[256], path[320];
    RunConfig rc = mini_config(&w, TRMML_METHOD_BASELINE);
    train_into(&w, &rc, "full", 0, full, sizeof full);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", full);
    size_t n = 0;
    char *good = slurp(path, &n);
    CHECK(good && n > 64, "%s", path);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(uint8_t)good[i] << (8 * i);
    char *meta = memmem(good, 8 + hlen, "\"format\":\"pt\"", 13);
    CHECK(meta, "%s: no format metadata", path);
    const struct {
        const char *what;
        size_t at, len;
    } cases[] = {
        {"data byte", (8 + hlen + n) / 2, n},
        {"last data byte", n - 40, n},
        {"header byte", (size_t)(meta - good) + 11, n}, /* "pt" -> "qt": still valid JSON */
        {"truncated", n, n / 2},
    };
    for (int k = 0; k < 4; k++) {
        char *bad = xmalloc(n);
        memcpy(bad, good, n);
        if (cases[k].at < n) bad[cases[k].at] ^= 1;
        test_write_file(path, bad, cases[k].len);
        free(bad);
        TrmmlRun run;
        Status st = trmml_run_open(full, &run);
        EXPECT(st != STATUS_OK && strstr(error_last(), path), "%s: reopen gave %d: %s",
               cases[k].what, st, st == STATUS_OK ? "accepted" : error_last());
        if (st == STATUS_OK) trmml_run_close(&run);
        TrainOptions opt = {.resume = true};
        st = trmml_train_run(&rc, full, &opt);
        EXPECT(st != STATUS_OK && strstr(error_last(), path), "%s: resume gave %d: %s",
               cases[k].what, st, st == STATUS_OK ? "accepted" : error_last());
    }
    /* A version 1 checkpoint (no record, no digest) is refused by its version, and so is a
     * version 2 one (a configuration of every method's keys, docs/methods.md). */
    TrmmlRun run;
    for (int version = 1; version <= 2; version++) {
        ParamStore *old = param_store_create(DEVICE_CPU, "old");
        Tensor *mt = param_add(old, "trmml.meta", DT_I64, 1, SHAPE(16), false);
        param_store_finalize(old);
        memset(mt->data, 0, 16 * sizeof(int64_t));
        ((int64_t *)mt->data)[0] = RUN_CKPT_MAGIC;
        ((int64_t *)mt->data)[1] = version;
        CHECK(safetensors_write(path, old) == STATUS_OK, "%s", error_last());
        param_store_destroy(old);
        char want[32];
        snprintf(want, sizeof want, "version %d,", version);
        Status st = trmml_run_open(full, &run);
        EXPECT(st != STATUS_OK && strstr(error_last(), path) && strstr(error_last(), want),
               "a version %d checkpoint gave %d: %s", version, st,
               st == STATUS_OK ? "accepted" : error_last());
        if (st == STATUS_OK) trmml_run_close(&run);
    }
    test_write_file(path, good, n);
    EXPECT(trmml_run_open(full, &run) == STATUS_OK, "intact again: %s", error_last());
    trmml_run_close(&run);
    free(good);
    world_close(&w);
}

/* A run directory is locked while a `trmml train` holds it: a second one is refused naming the
 * holder (pid and host from RUN/.lock); a lock file whose holder is gone (kill -9: the kernel
 * drops the flock) does not block (issue 13, item 2). */
TEST(train_e2e_run_dir_is_locked) {
    World w;
    if (!world_open(&w)) return;
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/locked", w.dir);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0, "lock %s", path);
    const char holder[] = "pid=4242 host=testhost started=2024-01-02T03:04:05Z\n";
    CHECK(write(fd, holder, strlen(holder)) == (ssize_t)strlen(holder), "write %s", path);
    RunConfig rc = mini_config(&w, TRMML_METHOD_BASELINE);
    TrainOptions opt = {0};
    Status st = trmml_train_run(&rc, dir, &opt);
    EXPECT(st != STATUS_OK && strstr(error_last(), "4242") && strstr(error_last(), "testhost"),
           "a locked run directory gave %d: %s", st, st == STATUS_OK ? "trained" : error_last());
    opt.resume = true;
    st = trmml_train_run(&rc, dir, &opt);
    EXPECT(st != STATUS_OK, "resume into a locked run directory was accepted");
    close(fd); /* what the kernel does for a killed holder; the file stays */
    opt.resume = false;
    EXPECT(trmml_train_run(&rc, dir, &opt) == STATUS_OK, "after the holder left: %s",
           error_last());
    world_close(&w);
}

/* A `trmml train` that fails its checks creates no run directory; leftovers of a run that never
 * completed an epoch (config.txt, log.txt, .lock, no checkpoint) do not block a new run, and
 * --resume there says there is nothing to resume (issue 13, item 7). */
TEST(train_e2e_failed_start_leaves_nothing) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    World w;
    if (!world_open(&w)) return;
    static char out[1 << 16];
    char cmd[8192], run[256], path[320];
    snprintf(run, sizeof run, "%s/never", w.dir);
    /* A cache of the other resize filter: refused after the dataset and model were opened. */
    snprintf(cmd, sizeof cmd,
             "'%s' --threads 1 train --method dualcoop --dataset voc2007 --root '%s' "
             "--class-list '%s' --model '%s' --out '%s' --ratio 0.5 --epochs 1 --batch 10 "
             "--set input_size=64 --cached '%s' --cached-test '%s' 2>&1",
             exe, w.root, w.classes, w.model, run, w.train_feat, w.test_feat);
    int st = test_run_capture(cmd, out, sizeof out);
    EXPECT(st == 1 && access(run, F_OK) != 0,
           "a refused start: exit %d, run directory %s: %.1000s", st,
           access(run, F_OK) == 0 ? "created" : "absent", out);
    /* Leftovers of a run killed before its first checkpoint. */
    CHECK(mkdir(run, 0755) == 0 || errno == EEXIST, "mkdir %s", run);
    const char *names[] = {"config.txt", "log.txt", ".lock", "metrics.jsonl"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", run, names[i]);
        test_write_file(path, "left over\n", 10);
    }
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 train --out '%s' --resume 2>&1", exe, run);
    st = test_run_capture(cmd, out, sizeof out);
    EXPECT(st == 1 && strstr(out, "no checkpoint.safetensors") && strstr(out, "without --resume"),
           "resume without a checkpoint: exit %d: %.1000s", st, out);
    RunConfig rc = mini_config(&w, TRMML_METHOD_BASELINE);
    rc.tc.epochs = 1;
    TrainOptions opt = {0};
    EXPECT(trmml_train_run(&rc, run, &opt) == STATUS_OK, "into leftovers: %s", error_last());
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    size_t n = 0;
    char *text = slurp(path, &n);
    EXPECT(text && strncmp(text, "{\"stage\":1,", 11) == 0 && memchr(text, '\n', n) == text + n - 1,
           "metrics.jsonl after a run into leftovers: %.200s", text ? text : "(missing)");
    free(text);
    world_close(&w);
}

/* `trmml train` (argv, output to /dev/null) started in the background; its pid. */
static pid_t spawn_quiet(char *const argv[]) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 1), dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* kill -9 of a real `trmml train` process at moments spread over its run (start-up, epochs,
 * checkpoint writes, the stage boundary), then what a user does: --resume when a checkpoint is
 * there, else the same command again. Wherever the kill fell, the run ends with the checkpoint
 * and metrics.jsonl of the uninterrupted run, byte for byte (docs/training.md "Reliability"). */
TEST(train_e2e_kill_9_at_any_moment) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    World w;
    if (!world_open(&w)) return;
    char run[256], full[256], a[320], b[320];
    char *argv[40];
    int argc = 0;
    argv[argc++] = exe;
    argv[argc++] = "--threads";
    argv[argc++] = "1";
    argv[argc++] = "train";
    const char *fixed[] = {"--method", "trmml", "--dataset", "voc2007", "--ratio", "0.5",
                           "--epochs", "2", "--batch", "8", "--set", "input_size=64", "--set",
                           "ffn_hidden=32", "--set", "head_hidden=32", "--set", "mmcp_queue_len=4",
                           "--root", w.root, "--class-list", w.classes, "--model", w.model,
                           "--cached", w.train_feat, "--cached-test", w.test_feat, "--out"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) argv[argc++] = (char *)fixed[i];
    const int out_at = argc;
    argv[argc++] = full;
    argv[argc] = NULL;
    snprintf(full, sizeof full, "%s/uninterrupted", w.dir);
    const double t0 = now_ms();
    int status = 0;
    CHECK(waitpid(spawn_quiet(argv), &status, 0) > 0, "waitpid");
    const double t_run = now_ms() - t0;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the uninterrupted run failed (%d)",
          status);
    const double fractions[] = {0.05, 0.3, 0.5, 0.7, 0.95};
    for (int k = 0; k < 5; k++) {
        snprintf(run, sizeof run, "%s/killed-%d", w.dir, k);
        argv[out_at] = run;
        pid_t pid = spawn_quiet(argv);
        const double delay = fractions[k] * t_run;
        struct timespec ts = {(time_t)(delay / 1e3), (long)(fmod(delay, 1e3) * 1e6)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        CHECK(waitpid(pid, &status, 0) > 0, "waitpid");
        snprintf(a, sizeof a, "%s/checkpoint.safetensors", run);
        const bool had_checkpoint = access(a, F_OK) == 0;
        /* What a user does next: resume a run with a checkpoint, else start it again. */
        char *again[8] = {exe, "--threads", "1", "train", "--out", run, "--resume", NULL};
        pid = had_checkpoint ? spawn_quiet(again) : spawn_quiet(argv);
        CHECK(waitpid(pid, &status, 0) > 0, "waitpid");
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "killed after %.0f of %.0f ms (%s checkpoint): the %s exited %d", delay, t_run,
               had_checkpoint ? "a" : "no", had_checkpoint ? "resume" : "restart",
               WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
        snprintf(b, sizeof b, "%s/checkpoint.safetensors", full);
        EXPECT(same_file(a, b), "killed after %.0f ms: the final checkpoint differs", delay);
        snprintf(a, sizeof a, "%s/metrics.jsonl", run);
        snprintf(b, sizeof b, "%s/metrics.jsonl", full);
        EXPECT(same_file(a, b), "killed after %.0f ms: metrics.jsonl differs", delay);
    }
    world_close(&w);
}

/* config.txt parses back to the configuration that printed it, for paths with spaces, '#',
 * single quotes, '=' and UTF-8; a value that one line between double quotes cannot keep (a double
 * quote, a line break) is refused when set, naming the key, instead of breaking --resume. */
TEST(train_e2e_config_txt_round_trips) {
    for (int method = 0; method < TRMML_METHOD_COUNT; method++) {
        RunConfig rc = run_config_default(method, "voc2007");
        run_config_default_splits(&rc);
        const char *root = "/data/my data #2/it's=VOC \xc3\xa9t\xc3\xa9";
        EXPECT(run_config_set(&rc, "root", root) == STATUS_OK &&
                   run_config_set(&rc, "model", "/m/RN101 # copy.pt") == STATUS_OK,
               "%s", error_last());
        char *text = NULL, *again = NULL;
        size_t n = 0, m = 0;
        FILE *f = open_memstream(&text, &n);
        run_config_print(&rc, f);
        fclose(f);
        RunConfig back = run_config_default(TRMML_METHOD_TRMML, NULL);
        EXPECT(run_config_parse_text(&back, text, "config.txt") == STATUS_OK, "%s: %s",
               trmml_method_name(method), error_last());
        f = open_memstream(&again, &m);
        run_config_print(&back, f);
        fclose(f);
        EXPECT(n == m && memcmp(text, again, n) == 0 && strcmp(back.root, rc.root) == 0,
               "%s: config.txt does not parse back:\n%s\n---\n%s", trmml_method_name(method), text,
               again);
        free(text);
        free(again);
    }
    RunConfig rc = run_config_default(TRMML_METHOD_TRMML, "voc2007");
    const char *bad[] = {"/data/a\"b", "/data/a\nb", "/data/a\rb"};
    for (int i = 0; i < 3; i++) {
        Status st = run_config_set(&rc, "root", bad[i]);
        EXPECT(st == STATUS_ERR_USAGE && strstr(error_last(), "'root'") &&
                   strstr(error_last(), "double quote or a line break"),
               "root %d: status %d: %s", i, st, error_last());
    }
}

/* The lock file is opened without following a symbolic link: one planted as RUN/.lock in a
 * shared runs folder must not let the lock's truncate empty another file. And run_write_file
 * takes a temporary of its own, so another writer's temporary (here a directory squatting on
 * the old fixed name "<path>.tmp") does not stop or tear it. */
TEST(train_e2e_run_files_are_not_hijacked) {
    char dir[] = "/tmp/trmml-hijack-XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char victim[96], lock[96], ap[96], squat[96];
    snprintf(victim, sizeof victim, "%s/precious.txt", dir);
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    test_write_file(victim, "keep me\n", 8);
    CHECK(symlink(victim, lock) == 0, "symlink");
    RunLock l;
    EXPECT(run_lock(dir, &l) != STATUS_OK && strstr(error_last(), ".lock"),
           "run_lock followed a symbolic link: %s", error_last());
    run_unlock(&l);
    size_t n = 0;
    char *text = slurp(victim, &n);
    EXPECT(text && n == 8 && memcmp(text, "keep me\n", 8) == 0, "the link's target was changed");
    free(text);
    snprintf(ap, sizeof ap, "%s/ap.csv", dir);
    snprintf(squat, sizeof squat, "%s/ap.csv.tmp", dir);
    CHECK(mkdir(squat, 0755) == 0, "mkdir");
    EXPECT(run_write_file(ap, "class,AP\n", 9) == STATUS_OK, "%s", error_last());
    text = slurp(ap, &n);
    EXPECT(text && n == 9, "ap.csv: %s", text ? text : "(missing)");
    free(text);
    test_remove_tree(dir);
}

/* Checkpoints are device-independent (issue 16): every method, stopped after its first epoch on
 * one device and resumed on the other, ends with the uninterrupted CPU run's checkpoint and
 * metrics.jsonl, byte for byte. The other device is the guard device (tensor/device_guard.c):
 * the CPU's kernels behind the device table, so the arithmetic is the CPU's and any host access
 * to its memory crashes; half the methods go guard -> CPU, the other half CPU -> guard. */
static void use_device(DeviceKind dev) {
    tensor_step_end(); /* the default arena must be empty to move */
    tensor_set_default_device(dev);
}

TEST(train_e2e_resume_on_another_device) {
    World w;
    if (!world_open(&w)) return;
    for (int method = 0; method < TRMML_METHOD_COUNT; method++) {
        const char *name = trmml_method_name(method);
        const DeviceKind first = method % 2 ? DEVICE_CPU : DEVICE_GUARD;
        const DeviceKind then = method % 2 ? DEVICE_GUARD : DEVICE_CPU;
        RunConfig rc = mini_config(&w, method);
        char full[256], cut[256], a[320], b[320];
        snprintf(full, sizeof full, "%s/%s-dev-full", w.dir, name);
        snprintf(cut, sizeof cut, "%s/%s-dev-cut", w.dir, name);
        TrainOptions opt = {0};
        use_device(DEVICE_CPU);
        EXPECT(trmml_train_run(&rc, full, &opt) == STATUS_OK, "%s: %s", name, error_last());
        use_device(first);
        opt.stop_after = 1;
        EXPECT(trmml_train_run(&rc, cut, &opt) == STATUS_OK, "%s on %s: %s", name,
               device_name(first), error_last());
        use_device(then);
        opt.stop_after = 0;
        opt.resume = true;
        EXPECT(trmml_train_run(&rc, cut, &opt) == STATUS_OK, "%s resumed on %s: %s", name,
               device_name(then), error_last());
        use_device(DEVICE_CPU);
        snprintf(a, sizeof a, "%s/checkpoint.safetensors", full);
        snprintf(b, sizeof b, "%s/checkpoint.safetensors", cut);
        EXPECT(same_file(a, b), "%s: %s -> %s: the checkpoint differs from the CPU run's", name,
               device_name(first), device_name(then));
        snprintf(a, sizeof a, "%s/metrics.jsonl", full);
        snprintf(b, sizeof b, "%s/metrics.jsonl", cut);
        EXPECT(same_file(a, b), "%s: %s -> %s: metrics.jsonl differs from the CPU run's", name,
               device_name(first), device_name(then));
    }
    world_close(&w);
}
