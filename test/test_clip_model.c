/* test_clip_model.c — CLIP's towers against a PyTorch reference (scripts/fixtures_clip_model.py).
 *
 * The fixture holds a reduced CLIP of the RN50/RN101 family (layers (1,1,1,1), width 8, grid 2,
 * text width 32 with 2 heads and 2 layers, E = 32) with random weights and non-trivial BatchNorm
 * statistics. The test loads its state dict into a ParamStore in the released files' dtypes
 * (float16 convolution and linear weights), builds the model (inference, check, up-cast, BN
 * folding) and compares: image embeddings at the native size and at twice it (cosine >= 0.99999),
 * dense features (max error relative to the largest reference value <= 1e-3), text embeddings
 * from ids and from embedded prompts, and the gradient into the prompts (model tolerance).
 * Also: the §1.3 key list and §1.4 inference at full RN50/RN101 size (no data allocated), the
 * MAC counts of SPEC §1.5-1.6, load errors, arena hygiene, and the end-of-text truncation.
 * The image tower's memory plan (in-place ReLU and residual add, two stacks) is checked against
 * a plain out-of-place forward on a random model with identity blocks (bit for bit), and its
 * activation peak at full RN101 size against a stated bound. */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clip/model.h"
#include "tensor/convert.h"
#include "tensor/device.h"
#include "tensor/ops/attention.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/pool.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape.h"
#include "test/test.h"

#define COSINE_MIN 0.99999
#define DENSE_MAX_REL 1e-3

/* ---- loading the fixture model ------------------------------------------------------------ */

/* The fixture's "sd/..." tensors declared (shapes only, no data) in a new store. */
static ParamStore *fixture_shapes(Fixture *fx) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "clip fixture shapes");
    for (int i = 0; i < fixture_count(fx); i++) {
        const FixtureTensor *t = fixture_at(fx, i);
        if (strncmp(t->name, "sd/", 3) == 0)
            param_add(ps, t->name + 3, t->dtype == 1 ? DT_I64 : DT_F32, t->ndim, t->shape, false);
    }
    return ps;
}

/* The state dict as the checkpoint reader would give it: every key of SPEC §1.3 in the released
 * dtype (float16 weights), values from the fixture (float16-representable by construction). */
static ParamStore *fixture_state_dict(Fixture *fx, const ClipConfig *cfg) {
    ParamStore *sd = param_store_create(DEVICE_CPU, "clip fixture state dict");
    clip_state_dict_declare(sd, cfg);
    param_store_finalize(sd);
    for (int i = 0; i < param_count(sd); i++) {
        Tensor *t = param_at(sd, i);
        char key[192];
        snprintf(key, sizeof key, "sd/%s", t->name);
        const FixtureTensor *f = fixture_get(fx, key);
        if (!f) continue;
        EXPECT(f->numel == t->numel, "%s: fixture has %lld values, state dict %lld", key,
               (long long)f->numel, (long long)t->numel);
        if (f->numel != t->numel) continue;
        for (int64_t j = 0; j < t->numel; j++) {
            if (t->dtype == DT_F16) {
                uint16_t h = f32_to_f16(f->f32[j]);
                EXPECT(f16_to_f32(h) == f->f32[j], "%s[%lld] = %g is not float16", key,
                       (long long)j, f->f32[j]);
                ((uint16_t *)t->data)[j] = h;
            } else if (t->dtype == DT_I64) {
                ((int64_t *)t->data)[j] = f->i64[j];
            } else {
                ((float *)t->data)[j] = f->f32[j];
            }
        }
    }
    return sd;
}

/* The reduced model's config: inferred from the shapes, text heads given (width 32 is not a
 * multiple of 64, so the shapes do not fix it). */
static bool fixture_config(Fixture *fx, ClipConfig *cfg) {
    ParamStore *shapes = fixture_shapes(fx);
    Status st = clip_config_infer(shapes, cfg);
    param_store_destroy(shapes);
    EXPECT(st == STATUS_OK, "clip_config_infer: %s", error_last());
    cfg->text.heads = 2;
    return st == STATUS_OK;
}

static ClipModel *fixture_model(Fixture **fx_out) {
    Fixture *fx = fixture_open("clip_model");
    *fx_out = fx;
    EXPECT(fx, "clip_model fixture: %s", error_last());
    if (!fx) return NULL;
    ClipConfig cfg;
    if (!fixture_config(fx, &cfg)) return NULL;
    ParamStore *sd = fixture_state_dict(fx, &cfg);
    ClipModel *m = NULL;
    Status st = clip_model_load(&m, sd, &cfg);
    param_store_destroy(sd); /* the model must not need it any more */
    EXPECT(st == STATUS_OK, "clip_model_load: %s", error_last());
    if (m) arena_set_guards(m->work, true);
    return m;
}

static void model_done(ClipModel *m) {
    if (!m) return;
    EXPECT(arena_check_guards(m->work) == 0, "a kernel wrote past its output in the work arena");
    clip_model_free(m);
}

/* ---- comparisons -------------------------------------------------------------------------- */

/* Row-wise cosine between got (R, D) and the fixture tensor (R, D); fails below COSINE_MIN. */
static void expect_cosine(const char *what, const Tensor *got, const FixtureTensor *ref) {
    if (!ref || !got) return;
    EXPECT(got->ndim == 2 && ref->ndim == 2 && got->shape[0] == ref->shape[0] &&
               got->shape[1] == ref->shape[1],
           "%s: shape %s vs fixture", what, tensor_shape_str(got));
    if (test_failed()) return;
    const int64_t R = got->shape[0], D = got->shape[1];
    const float *g = tensor_f32(got);
    for (int64_t r = 0; r < R; r++) {
        double dot = 0, ng = 0, nr = 0;
        for (int64_t j = 0; j < D; j++) {
            double a = g[r * D + j], b = ref->f32[r * D + j];
            dot += a * b, ng += a * a, nr += b * b;
        }
        double cosv = dot / sqrt(ng * nr);
        EXPECT(cosv >= COSINE_MIN, "%s: row %lld cosine %.9f < %.5f", what, (long long)r, cosv,
               COSINE_MIN);
    }
}

/* max |got - ref| / max |ref| <= bound, plus the model tolerance element by element. */
static void expect_rel_max(const char *what, const Tensor *got, const FixtureTensor *ref,
                           double bound) {
    if (!ref || !got) return;
    if (!EXPECT_TENSOR(what, got, ref, TOL_MODEL_ATOL, TOL_MODEL_RTOL)) return;
    const float *g = tensor_f32(got);
    double max_err = 0, max_ref = 0;
    for (int64_t i = 0; i < ref->numel; i++) {
        double e = fabs((double)g[i] - ref->f32[i]);
        if (e > max_err) max_err = e;
        if (fabs(ref->f32[i]) > max_ref) max_ref = fabs(ref->f32[i]);
    }
    EXPECT(max_ref > 0 && max_err / max_ref <= bound,
           "%s: max error %.3e relative to max |ref| %.3e is %.3e > %.1e", what, max_err, max_ref,
           max_ref > 0 ? max_err / max_ref : INFINITY, bound);
}

/* ---- the key list and inference at full size ---------------------------------------------- */

/* Parameters (not BN buffers) declared for cfg: SPEC §1.3's sanity numbers. */
static void count_keys(const ClipConfig *cfg, int *entries, int64_t *params) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "shapes");
    clip_state_dict_declare(ps, cfg); /* declared only: no data is allocated */
    *entries = param_count(ps);
    *params = 0;
    for (int i = 0; i < param_count(ps); i++) {
        const Tensor *t = param_at(ps, i);
        if (strstr(t->name, "running_") || strstr(t->name, "num_batches_tracked")) continue;
        *params += t->numel;
    }
    ClipConfig back;
    Status st = clip_config_infer(ps, &back);
    EXPECT(st == STATUS_OK, "infer: %s", error_last());
    EXPECT(memcmp(&back, cfg, sizeof back) == 0, "inferred config differs from the declared one");
    EXPECT(clip_state_dict_check(ps, cfg) == STATUS_OK, "check: %s", error_last());
    param_store_destroy(ps);
}

TEST(clip_model_released_key_lists) {
    int n;
    int64_t p;
    ClipConfig rn50 = clip_config_rn50(), rn101 = clip_config_rn101();
    count_keys(&rn50, &n, &p);
    EXPECT(n == 489 && p == 102007137, "RN50: %d entries, %lld parameters (SPEC: 489, 102007137)",
           n, (long long)p);
    count_keys(&rn101, &n, &p);
    EXPECT(n == 795 && p == 119688033, "RN101: %d entries, %lld parameters (SPEC: 795, 119688033)",
           n, (long long)p);
}

TEST(clip_model_macs_match_spec) {
    /* SPEC §1.5: conv MACs; §1.6: the dense path (v_proj + c_proj over all tokens) at 448. */
    static const struct {
        bool rn101;
        int64_t side;
        double conv_g, dense_g;
    } cases[] = {{false, 224, 5.37, 0}, {false, 448, 21.47, 1.24}, {true, 224, 9.08, 0},
                 {true, 448, 36.32, 1.03}};
    for (int i = 0; i < 4; i++) {
        ClipConfig c = cases[i].rn101 ? clip_config_rn101() : clip_config_rn50();
        double conv, pool, dense;
        clip_resnet_macs(&c.vision, cases[i].side, cases[i].side, &conv, &pool, &dense);
        EXPECT(fabs(conv * 1e-9 - cases[i].conv_g) < 0.006, "%s %lld: conv %.3f G MACs, SPEC %.2f",
               cases[i].rn101 ? "RN101" : "RN50", (long long)cases[i].side, conv * 1e-9,
               cases[i].conv_g);
        if (cases[i].dense_g > 0)
            EXPECT(fabs(dense * 1e-9 - cases[i].dense_g) < 0.006, "dense %.3f G MACs, SPEC %.2f",
                   dense * 1e-9, cases[i].dense_g);
    }
}

/* ---- load errors -------------------------------------------------------------------------- */

typedef struct {
    const char *skip, *reshape, *extra;
    DType force_dtype;
    const char *force_key;
} Corruption;

static void declare_corrupt(void *ctx, const char *name, DType dt, int ndim,
                            const int64_t *shape) {
    void **c = ctx;
    ParamStore *ps = c[0];
    const Corruption *k = c[1];
    if (k->skip && strcmp(name, k->skip) == 0) return;
    int64_t s[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) s[i] = shape[i];
    if (k->reshape && strcmp(name, k->reshape) == 0) s[0] += 1;
    if (k->force_key && strcmp(name, k->force_key) == 0) dt = k->force_dtype;
    param_add(ps, name, dt, ndim, s, false);
}

/* Status of clip_model_load on the reduced config's key list with one corruption. */
static Status load_corrupt(const ClipConfig *cfg, Corruption k, bool with_cfg) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "corrupt");
    void *ctx[2] = {ps, &k};
    clip_state_dict_foreach(cfg, declare_corrupt, ctx);
    if (k.extra) param_add(ps, k.extra, DT_F16, 2, SHAPE(4, 4), false);
    param_store_finalize(ps);
    ClipModel *m = NULL;
    Status st = clip_model_load(&m, ps, with_cfg ? cfg : NULL);
    EXPECT((st == STATUS_OK) == (m != NULL), "load: status %d but model %p", st, (void *)m);
    clip_model_free(m);
    param_store_destroy(ps);
    return st;
}

static void expect_error(Status st, const char *needle) {
    EXPECT(st != STATUS_OK, "expected a failure mentioning '%s'", needle);
    EXPECT(strstr(error_last(), needle) != NULL, "error '%s' does not mention '%s'", error_last(),
           needle);
}

TEST(clip_model_load_errors) {
    Fixture *fx = fixture_open("clip_model");
    ClipConfig cfg;
    if (!fx || !fixture_config(fx, &cfg)) return;
    expect_error(load_corrupt(&cfg, (Corruption){.skip = "visual.layer3.0.bn2.running_var"}, true),
                 "missing 'visual.layer3.0.bn2.running_var'");
    expect_error(load_corrupt(&cfg, (Corruption){.reshape = "transformer.resblocks.1.mlp.c_fc.weight"},
                              true),
                 "'transformer.resblocks.1.mlp.c_fc.weight' has shape [129, 32], expected [128, 32]");
    expect_error(load_corrupt(&cfg, (Corruption){.force_key = "visual.conv2.weight",
                                                 .force_dtype = DT_I64}, true),
                 "'visual.conv2.weight' is int64");
    expect_error(load_corrupt(&cfg, (Corruption){.extra = "visual.proj"}, false), "visual.proj");
    /* inferred without a config: width 32 gives no head count */
    expect_error(load_corrupt(&cfg, (Corruption){0}, false), "heads");
    expect_error(load_corrupt(&cfg, (Corruption){.reshape = "visual.attnpool.positional_embedding"},
                              false),
                 "g*g + 1");
    EXPECT(load_corrupt(&cfg, (Corruption){.extra = "input_resolution_like_extra"}, true) ==
               STATUS_OK,
           "an extra key must be ignored: %s", error_last());
}

/* ---- image tower ---------------------------------------------------------------------------- */

static void image_case(const char *cs) {
    Fixture *fx;
    ClipModel *m = fixture_model(&fx);
    if (!m) return;
    char key[64], what[96];
    snprintf(key, sizeof key, "%s/images", cs);
    Tensor *images = fixture_tensor(fx, key);
    if (!images) return;
    Arena *a = tensor_arena();
    const size_t mark = arena_mark(a);
    Tensor *emb = NULL, *dense = NULL;
    clip_encode_image(m, images, &emb, &dense);

    /* Frozen and freed: no tape, nothing requires a gradient, only the two outputs remain. */
    EXPECT(ag_tape_length() == 0, "%s: the image tower recorded %d tape nodes", cs,
           ag_tape_length());
    EXPECT(!emb->requires_grad && !dense->requires_grad, "%s: outputs require a gradient", cs);
    const size_t out_bytes = (size_t)(emb->numel + dense->numel) * sizeof(float);
    const size_t slack = 4 * 1024; /* two tensor headers, alignment and guard words */
    EXPECT(arena_used(a) - mark <= out_bytes + slack,
           "%s: %zu bytes left in the arena after the tower, outputs take %zu", cs,
           arena_used(a) - mark, out_bytes);
    EXPECT(arena_used(m->work) == 0, "%s: the work arena holds %zu bytes", cs, arena_used(m->work));

    snprintf(key, sizeof key, "%s/embedding", cs);
    snprintf(what, sizeof what, "%s embedding", cs);
    expect_cosine(what, emb, fixture_get(fx, key));
    EXPECT_TENSOR(what, emb, fixture_get(fx, key), TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    snprintf(key, sizeof key, "%s/dense", cs);
    snprintf(what, sizeof what, "%s dense", cs);
    expect_rel_max(what, dense, fixture_get(fx, key), DENSE_MAX_REL);

    /* Without the dense output: the same embedding. */
    Tensor *emb2 = NULL;
    clip_encode_image(m, images, &emb2, NULL);
    EXPECT_CLOSE_N("embedding without dense", tensor_f32(emb2), tensor_f32(emb), emb->numel, 0, 0);
    model_done(m);
}

TEST(clip_model_image_native) { image_case("img64"); }
TEST(clip_model_image_double_size) { image_case("img128"); }

/* ---- text tower ----------------------------------------------------------------------------- */

TEST(clip_model_text_ids) {
    Fixture *fx;
    ClipModel *m = fixture_model(&fx);
    if (!m) return;
    Tensor *ids = fixture_tensor(fx, "text/ids");
    Tensor *eot = clip_text_eot_positions(ids);
    const int64_t want[3] = {5, 10, 14};
    for (int i = 0; i < 3; i++)
        EXPECT(tensor_i64(eot)[i] == want[i], "eot[%d] = %lld, expected %lld", i,
               (long long)tensor_i64(eot)[i], (long long)want[i]);
    Tensor *emb = clip_encode_text(m, ids);
    EXPECT(ag_tape_length() == 0, "text from ids recorded %d tape nodes", ag_tape_length());
    expect_cosine("text embedding", emb, fixture_get(fx, "text/embedding"));
    EXPECT_TENSOR("text embedding", emb, fixture_get(fx, "text/embedding"), TOL_MODEL_ATOL,
                  TOL_MODEL_RTOL);
    EXPECT(arena_used(m->work) == 0, "the work arena holds %zu bytes", arena_used(m->work));
    model_done(m);
}

TEST(clip_model_text_prompt_gradient) {
    Fixture *fx;
    ClipModel *m = fixture_model(&fx);
    if (!m) return;
    Tensor *x = test_case_input(fx, "prompt", "x", true);
    Tensor *eot = fixture_tensor(fx, "prompt/eot");
    Tensor *dout = fixture_tensor(fx, "prompt/dout");
    if (!x || !eot || !dout) return;
    Tensor *emb = clip_encode_text_embedded(m, x, eot);
    expect_cosine("prompt embedding", emb, fixture_get(fx, "prompt/embedding"));
    EXPECT_TENSOR("prompt embedding", emb, fixture_get(fx, "prompt/embedding"), TOL_MODEL_ATOL,
                  TOL_MODEL_RTOL);
    EXPECT(emb->requires_grad, "prompt features do not require a gradient");
    ag_backward_with(emb, dout);
    EXPECT(x->grad != NULL, "no gradient reached the prompts");
    if (x->grad) expect_rel_max("prompt dx", x->grad, fixture_get(fx, "prompt/dx"), 1e-4);
    /* Frozen weights: none received a buffer. */
    for (int i = 0; i < param_count(m->params); i++) {
        const Tensor *p = param_at(m->params, i);
        EXPECT(p->grad == NULL && !p->requires_grad, "weight %s has a gradient", p->name);
    }
    model_done(m);
}

/* Features and prompt gradient of one layout; the gradient is copied out and x's cleared. */
static Tensor *layout_run(ClipModel *m, Tensor *x, Tensor *eot, Tensor *dout,
                          ClipTextLayout layout, Tensor **dx) {
    Tensor *y = clip_text_encode_embedded_ex(&m->text, x, eot, layout);
    ag_backward_with(y, dout);
    *dx = tensor_empty_like(x);
    memcpy((*dx)->data, x->grad->data, (size_t)x->numel * sizeof(float));
    tensor_fill(x->grad, 0.0f);
    return y;
}

TEST(clip_model_text_layouts_change_nothing) {
    Fixture *fx;
    ClipModel *m = fixture_model(&fx);
    if (!m) return;
    Tensor *x = test_case_input(fx, "prompt", "x", true);
    Tensor *eot = fixture_tensor(fx, "prompt/eot");
    Tensor *dout = fixture_tensor(fx, "prompt/dout");
    if (!x || !eot || !dout) return;
    Tensor *dx_full, *dx_trunc, *dx_len;
    Tensor *full = layout_run(m, x, eot, dout, CLIP_TEXT_ALL_POSITIONS, &dx_full);
    Tensor *trunc = layout_run(m, x, eot, dout, CLIP_TEXT_TRUNCATED, &dx_trunc);
    Tensor *bylen = layout_run(m, x, eot, dout, CLIP_TEXT_BY_LENGTH, &dx_len);
    /* The causal mask makes the math identical, but the layouts change every GEMM's row count,
     * and a BLAS kernel may sum edge rows in another order: they round differently. Normwise
     * bounds (test/tolerance.h) for the fixture tower (2 layers, width 32, MLP 128, K <= 128):
     * about 13 K-long stages to the features, 40 to dx. Measured (make test-matrix), truncated
     * against full: 3.7e-7 of the scale (OpenBLAS Haswell, Zen), 2.8e-7 (Prescott), 0 (SkylakeX,
     * Cooperlake, naive); by length passes under the same four OpenBLAS kernels
     * and the naive GEMM (checked with OPENBLAS_CORETYPE and TRMML_GEMM=naive). */
    const struct {
        const char *name;
        Tensor *y, *dx;
    } cut[] = {{"truncated", trunc, dx_trunc}, {"by length", bylen, dx_len}};
    for (int i = 0; i < 2; i++) {
        EXPECT_CLOSE_NORMWISE(cut[i].name, tensor_f32(cut[i].y), tensor_f32(full), full->numel,
                              tol_chain_normwise(13, 128));
        EXPECT_CLOSE_NORMWISE(cut[i].name, tensor_f32(cut[i].dx), tensor_f32(dx_full),
                              x->numel, tol_chain_normwise(40, 128));
    }
    /* Rows past the batch's last end-of-text position get exactly zero; by length, so do the
     * rows past each sequence's own. */
    const int64_t N = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int64_t *e = tensor_i64(eot);
    bool zero_trunc = true, zero_len = true, spread = false;
    for (int64_t n = 0; n < N; n++) {
        spread |= e[n] != e[0];
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < C; c++) {
                if (t >= 21) zero_trunc &= tensor_f32(dx_trunc)[(n * T + t) * C + c] == 0;
                if (t > e[n]) zero_len &= tensor_f32(dx_len)[(n * T + t) * C + c] == 0;
            }
    }
    EXPECT(spread, "the fixture's sequences should end at different positions");
    EXPECT(zero_trunc, "gradient rows after the last end-of-text token are not zero");
    EXPECT(zero_len, "by length: gradient rows after a sequence's end-of-text token are not zero");
    model_done(m);
}

/* Twelve lengths, one of them 1 (end of text at position 0) and one the whole T: twelve groups
 * of attention in the packed matrix. Against all positions, with and without a tape. */
TEST(clip_model_text_many_lengths_change_nothing) {
    Fixture *fx;
    ClipModel *m = fixture_model(&fx);
    if (!m) return;
    const int64_t N = 14, T = 30, C = m->text.cfg.width;
    const int64_t ends[14] = {0, 29, 3, 5, 5, 7, 11, 13, 13, 17, 19, 23, 26, 2}; /* 12 lengths */
    Tensor *x = test_randn(11, 3, SHAPE(N, T, C));
    ag_set_requires_grad(x, NULL);
    Tensor *eot = tensor_empty(DT_I64, 1, SHAPE(N));
    memcpy(tensor_i64(eot), ends, sizeof ends);
    Tensor *dout = test_randn(12, 2, SHAPE(N, m->text.cfg.embed_dim));
    Tensor *dx_full, *dx_len;
    Tensor *full = layout_run(m, x, eot, dout, CLIP_TEXT_ALL_POSITIONS, &dx_full);
    Tensor *bylen = layout_run(m, x, eot, dout, CLIP_TEXT_BY_LENGTH, &dx_len);
    /* As clip_model_text_layouts_change_nothing (the same tower, T <= 77). */
    EXPECT_CLOSE_NORMWISE("packed features", tensor_f32(bylen), tensor_f32(full), full->numel,
                          tol_chain_normwise(13, 128));
    EXPECT_CLOSE_NORMWISE("packed dx", tensor_f32(dx_len), tensor_f32(dx_full), x->numel,
                          tol_chain_normwise(40, 128));
    /* Without a tape (the work-arena scopes), the same features. */
    bool grad = ag_set_grad_enabled(false);
    Tensor *plain = clip_text_encode_embedded(&m->text, x, eot);
    ag_set_grad_enabled(grad);
    EXPECT_CLOSE_NORMWISE("packed features, no tape", tensor_f32(plain), tensor_f32(full),
                          full->numel, tol_chain_normwise(13, 128));
    EXPECT(arena_used(m->work) == 0, "the work arena holds %zu bytes", arena_used(m->work));
    model_done(m);
}

/* Finite differences through the whole tower on a short sequence. */
typedef struct {
    ClipModel *m;
    Tensor *eot;
} PromptCtx;

static Tensor *prompt_fn(Tensor *const *in, void *ctx) {
    PromptCtx *p = ctx;
    return clip_text_encode_embedded(&p->m->text, in[0], p->eot);
}

TEST(clip_model_text_gradcheck) {
    Fixture *fx;
    ClipModel *m = fixture_model(&fx);
    if (!m) return;
    Tensor *x = test_randn(7, 3, SHAPE(2, 6, 32));
    Tensor *eot = tensor_empty(DT_I64, 1, SHAPE(2));
    tensor_i64(eot)[0] = 3, tensor_i64(eot)[1] = 5;
    PromptCtx ctx = {m, eot};
    GradcheckOpts opts = {.atol = TOL_GRADCHECK_ATOL, .rtol = TOL_GRADCHECK_RTOL, .seed = 3,
                          .max_coords = 48};
    EXPECT_GRADCHECK("clip text prompts", prompt_fn, &ctx, &x, 1, NULL, &opts);
    model_done(m);
}

/* ---- the image tower's memory plan ---------------------------------------------------------- */

/* Run fn(arg) in a child process with its stderr discarded; true when it died of SIGABRT (a
 * CHECK failure). */
static bool aborts(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        FILE *null = freopen("/dev/null", "w", stderr);
        (void)null;
        fn(arg);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void relu_with_grad_on(void *x) {
    ag_set_grad_enabled(true);
    tensor_relu_(x);
}
static void relu_on_requires_grad(void *x) {
    ag_set_grad_enabled(false);
    ag_set_requires_grad(x, NULL);
    tensor_relu_(x);
}
static void add_growing_a(void *x) {
    ag_set_grad_enabled(false);
    tensor_add_(tensor_slice(x, 0, 0, 1), x); /* (1, ...) += (3, ...): the output would grow */
}
static void add_overlapping(void *x) {
    ag_set_grad_enabled(false);
    Tensor *t = x;
    Tensor *one = tensor_empty(DT_F32, 1, SHAPE(1));
    one->data = (float *)t->data + 1; /* a one-element view into t, broadcast over all of t */
    tensor_add_(t, one);
}

/* tensor_relu_ / tensor_add_ equal the out-of-place ops, write in place (nothing allocated),
 * and refuse to run where a tape could see the overwritten tensor. */
TEST(clip_model_inplace_ops) {
    bool grad = ag_set_grad_enabled(false);
    Arena *a = tensor_arena();
    Tensor *x = test_randn(1, 3, SHAPE(3, 5, 7));
    const Tensor *bs[4] = {test_randn(2, 3, SHAPE(3, 5, 7)), /* same shape: the dense path */
                           test_randn(3, 1, SHAPE(7)),       /* a trailing row (bias) */
                           test_randn(4, 2, SHAPE(5, 1)),    /* a general broadcast */
                           x};                               /* x += x */
    for (int i = 0; i < 4; i++) {
        Tensor *b = (Tensor *)bs[i];
        Tensor *ref = tensor_add(x, b);
        Tensor *got = tensor_empty_like(x);
        memcpy(got->data, x->data, (size_t)x->numel * sizeof(float));
        Tensor *bb = b == x ? got : b;
        const size_t used = arena_used(a);
        EXPECT(tensor_add_(got, bb) == got, "add_ case %d did not return its first argument", i);
        EXPECT(arena_used(a) == used, "add_ case %d allocated %zu bytes", i, arena_used(a) - used);
        EXPECT_CLOSE_N("add_ vs add", tensor_f32(got), tensor_f32(ref), x->numel, 0, 0);
    }
    Tensor *ref = tensor_relu(x);
    const size_t used = arena_used(a);
    EXPECT(tensor_relu_(x) == x, "relu_ did not return its argument");
    EXPECT(arena_used(a) == used, "relu_ allocated %zu bytes", arena_used(a) - used);
    EXPECT_CLOSE_N("relu_ vs relu", tensor_f32(x), tensor_f32(ref), x->numel, 0, 0);
    EXPECT(ag_tape_length() == 0, "in-place ops recorded %d tape nodes", ag_tape_length());

    EXPECT(aborts(relu_with_grad_on, x), "relu_ with grad mode on did not abort");
    EXPECT(aborts(relu_on_requires_grad, x), "relu_ on a tensor requiring a gradient did not abort");
    EXPECT(aborts(add_growing_a, x), "add_ with b larger than a did not abort");
    EXPECT(aborts(add_overlapping, x), "add_ with overlapping operands did not abort");
    ag_set_grad_enabled(grad);
}

/* A reduced config of the family with identity blocks in every stage (the fixture model has one
 * block per stage, all with a downsample branch). */
static ClipConfig small_config(void) {
    ClipConfig c = {
        .vision = {.layers = {2, 2, 3, 2}, .width = 8, .channels = 256, .heads = 4, .grid = 2,
                   .embed_dim = 32},
        .text = {.width = 64, .layers = 1, .heads = 1, .context = 8, .vocab = 16, .embed_dim = 32},
        .embed_dim = 32};
    return c;
}

/* Random values for a state-dict key: He-scaled weights, BatchNorm statistics around 1 with the
 * residual branches' last BN damped (keeps the trunk's scale steady), small biases. */
static float random_value(const Tensor *t, Rng *r) {
    const char *n = t->name;
    const double u = 2 * rng_uniform(r) - 1;
    if (strstr(n, "running_var")) return (float)(1.25 + 0.75 * u);
    if (strstr(n, "running_mean")) return (float)(0.2 * u);
    if (strstr(n, "visual.") && strstr(n, "bn") && strstr(n, ".weight")) return (float)(1 + 0.5 * u);
    if ((strstr(n, ".bn3.") || strstr(n, "downsample.1.")) && strstr(n, ".weight"))
        return (float)(0.2 + 0.1 * u);
    if (t->ndim >= 2) return (float)(u * sqrt(6.0 / (double)(t->numel / t->shape[0])));
    return (float)(0.1 * u);
}

static ClipModel *random_model(ClipConfig cfg, bool zero) {
    ParamStore *sd = param_store_create(DEVICE_CPU, "random clip state dict");
    clip_state_dict_declare(sd, &cfg);
    param_store_finalize(sd); /* zeroed */
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < param_count(sd) && !zero; i++) {
        Tensor *t = param_at(sd, i);
        if (t->dtype == DT_I64) continue;
        for (int64_t j = 0; j < t->numel; j++) {
            const float v = random_value(t, &r);
            if (t->dtype == DT_F16) ((uint16_t *)t->data)[j] = f32_to_f16(v);
            else ((float *)t->data)[j] = v;
        }
    }
    ClipModel *m = NULL;
    Status st = clip_model_load(&m, sd, &cfg);
    param_store_destroy(sd);
    EXPECT(st == STATUS_OK, "clip_model_load: %s", error_last());
    return m;
}

/* The tower as a plain chain of out-of-place ops, every intermediate kept: the reference for the
 * in-place, two-stack clip_resnet_encode with its fused convolutions. */
static Tensor *plain_conv(const ClipConv *c, Tensor *x) {
    return tensor_conv2d(x, c->weight, c->bias, c->stride, c->pad);
}

/* A block's end as the fused tensor_conv2d_add_relu_ computes it: the product added to the
 * residual first, then the bias (broadcast over the spatial positions), then the ReLU. */
static Tensor *plain_conv_add_relu(const ClipConv *c, Tensor *x, Tensor *residual) {
    Tensor *sum = tensor_add(residual, tensor_conv2d(x, c->weight, NULL, c->stride, c->pad));
    Tensor *bias = tensor_reshape(c->bias, 4, SHAPE(1, c->bias->shape[0], 1, 1));
    return tensor_relu(tensor_add(sum, bias));
}

static Tensor *plain_image_forward(const ClipResNet *v, Tensor *x, Tensor **dense) {
    for (int i = 0; i < 3; i++) x = tensor_relu(plain_conv(&v->stem[i], x));
    x = tensor_avg_pool2d(x, 2);
    for (int L = 0; L < 4; L++) {
        for (int64_t i = 0; i < v->cfg.layers[L]; i++) {
            const ClipBottleneck *b = &v->blocks[L][i];
            Tensor *out = tensor_relu(plain_conv(&b->conv2, tensor_relu(plain_conv(&b->conv1, x))));
            if (b->stride > 1) out = tensor_avg_pool2d(out, b->stride);
            Tensor *identity = x;
            if (b->downsample.weight) {
                if (b->stride > 1) identity = tensor_avg_pool2d(identity, b->stride);
                identity = plain_conv(&b->downsample, identity);
            }
            x = plain_conv_add_relu(&b->conv3, out, identity);
        }
    }
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    Tensor *parts[2] = {tensor_reshape(tensor_spatial_mean(x), 3, SHAPE(B, 1, C)),
                        tensor_transpose(tensor_reshape(x, 3, SHAPE(B, C, H * W)), 1, 2)};
    Tensor *t = tensor_add(tensor_concat(parts, 2, 1), clip_resnet_positional_embedding(v, H, W));
    Tensor *q = tensor_linear(tensor_slice(t, 1, 0, 1), v->q_weight, v->q_bias);
    Tensor *k = tensor_linear(t, v->k_weight, v->k_bias);
    Tensor *val = tensor_linear(t, v->v_weight, v->v_bias);
    const int64_t NH = v->cfg.heads;
    Tensor *a = tensor_attention(tensor_attention_heads_split(q, NH),
                                 tensor_attention_heads_split(k, NH),
                                 tensor_attention_heads_split(val, NH), false,
                                 1.0f / sqrtf((float)(C / NH)));
    a = tensor_reshape(tensor_attention_heads_merge(a), 2, SHAPE(B, C));
    *dense = tensor_linear(val, v->c_weight, v->c_bias);
    return tensor_linear(a, v->c_weight, v->c_bias);
}

TEST(clip_model_image_inplace_matches_plain_forward) {
    ClipModel *m = random_model(small_config(), false);
    if (!m) return;
    arena_set_guards(m->work, true);
    /* 96 px: a 3 x 3 grid, so the positional embedding is resized too. */
    Tensor *images = test_randn(9, 4, SHAPE(2, 3, 96, 96));
    Tensor *emb, *dense;
    clip_encode_image(m, images, &emb, &dense);
    bool grad = ag_set_grad_enabled(false);
    Tensor *ref_dense, *ref = plain_image_forward(&m->visual, images, &ref_dense);
    ag_set_grad_enabled(grad);
    double scale = 0;
    for (int64_t i = 0; i < ref->numel; i++) scale = fmax(scale, fabs(tensor_f32(ref)[i]));
    EXPECT(scale > 1e-3 && scale < 1e3, "embedding scale %g: the random model is degenerate", scale);
    /* The same ops on the same values (a + b and b + a are the same float): bit for bit. The
     * fused block end accumulates the product onto the residual inside the GEMM, which is the
     * plain fl(residual + product) while K fits one of the BLAS's K blocks (conv3's K, the
     * planes, is at most 64 here). */
    EXPECT_CLOSE_N("embedding vs plain forward", tensor_f32(emb), tensor_f32(ref), ref->numel, 0, 0);
    EXPECT_CLOSE_N("dense vs plain forward", tensor_f32(dense), tensor_f32(ref_dense),
                   ref_dense->numel, 0, 0);
    model_done(m);
}

/* Activation peak of the RN101 tower at 448 px, batch 1: the peaks of the caller's arena (input,
 * the current activation, the outputs) and the work arena (a block's intermediates, conv
 * scratch) added, an upper bound on what is live at once. The values do not change the peak, so
 * the weights are zero (no random fill to pay for). Measured 43.9 MiB (caller 21.5: input 2.3,
 * layer1's 12.25 MiB activation, a 3 MiB conv2 output and 4 MiB of im2col scratch; work 22.3:
 * layer1 block 0's c1, downsample output, c2 and scratch); the out-of-place tower this replaced
 * measured 75.8 MiB. The bound leaves 10% for allocator alignment and guard words. The Winograd
 * F(4x4, 3x3) forward (the fp32 default since) needs more scratch per block of tiles (36
 * matrices per 4x4 tile for the same GEMM width): 64.7 MiB (caller 32.0 + work 32.7; the
 * largest, layer3 block 0's 256-channel 3x3 convolution at 56x56 with 30 MiB of U, V and M
 * where F(2x2, 3x3) had 13.4), against 45.3 MiB with TRMML_CONV_WINOGRAD_TILE=2; the bound is
 * that plus 10%. docs/ops/conv.md, "Winograd F(4x4, 3x3)". At the avx512 level the Winograd
 * products go through the own fp32 GEMM (tensor/ops/gemm_f32.h), which keeps U only packed
 * (made a panel of output channels at a time) and a B panel block per thread: 66.0 MiB
 * (caller 32.8 + work 33.3), within the same bound. */
#define RN101_448_B1_PEAK_MIB 71.0

TEST(clip_model_image_rn101_448_peak) {
    ClipModel *m = random_model(clip_config_rn101(), true);
    if (!m) return;
    Arena *a = arena_create(DEVICE_CPU, "rn101 peak", 0);
    Arena *prev = tensor_set_arena(a);
    Tensor *images = tensor_zeros(DT_F32, 4, SHAPE(1, 3, 448, 448));
    Tensor *emb, *dense;
    clip_encode_image(m, images, &emb, &dense);
    EXPECT(emb->shape[1] == 512 && dense->shape[1] == 197, "outputs %s and %s",
           tensor_shape_str(emb), tensor_shape_str(dense));
    const double peak = (double)(arena_peak(a) + arena_peak(m->work)) / 1048576.0;
    printf("  RN101 448 b1 activation peak %.1f MiB (caller arena %.1f + work arena %.1f)\n", peak,
           arena_peak(a) / 1048576.0, arena_peak(m->work) / 1048576.0);
    EXPECT(peak <= RN101_448_B1_PEAK_MIB, "activation peak %.1f MiB > %.1f MiB", peak,
           RN101_448_B1_PEAK_MIB);
    tensor_set_arena(prev);
    arena_destroy(a);
    clip_model_free(m);
}
