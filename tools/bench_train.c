/* bench_train.c — `trmml bench train`: one TRM-ML training iteration at full size, split into
 * its parts, and one epoch with and without the feature cache (issue #5, item 7).
 *
 * The iteration: RN101-size CLIP with random weights (bench_random_clip), batch B = 32 images of
 * 448 px, C = 20 and C = 80 classes, TRM-ML's full head (CARL, both branches, KD, MMCL with a
 * full bank of 256 entries per class; stage 1, so no pseudo-labels), no micro-batches and the
 * text tower in one chunk (the PyTorch reference does the same), dropout off. Parts, each the
 * median over the timed iterations (keys as scripts/bench_torch_train.py prints them):
 *     "train rn101 img 448 b32"            image tower forward (no tape)
 *     "train rn101 c20 text fwd+bwd"       trmml_prompt_features_detached + trmml_prompt_backward
 *                                          (the backward re-runs the forward with a tape)
 *     "train rn101 c20 head fwd+bwd"       everything between: pass 0, InfoNCE, CARL, losses,
 *                                          backward into the head and dL/dG
 *     "train rn101 c20 update"             gradient norm, AdamW, temperature clamp, bank push
 *     "train rn101 c20 step"               trmml_train_step alone: an iteration from the feature
 *                                          cache (the dense features already computed)
 *     "train rn101 c20 iteration"          image tower + trmml_train_step: from the images
 * the parts timed inside trmml_train_step (TrmmlStepStats.sec_*). On --device cuda the model and
 * the data live on the GPU; the parts are left out there (trmml_train_step reads its clock without
 * synchronising the device, so a part would count work queued by the one before it), and the
 * step and iteration rows are timed with bench_clock (synchronised). Labels: about 3 positives per
 * image (b*5 + c divisible by C/3), half of the entries known. GFLOP counts the image tower as
 * tools/bench_clip.c does and the text tower as forward + backward (2 x forward; trmml spends a
 * third forward on the recompute); the other rows have none.
 *
 * The epoch: a synthetic world (datasets/synth.h, 64 training images of 448 px, 16 classes),
 * one epoch of TRM-ML steps at batch 32 (two steps), once from the feature cache and once
 * through the image tower with the training augmentation; plus the one-time extraction of the
 * cache. Rows "train epoch 64 img cached", "... uncached", "train extract 64 img" (ms per
 * epoch / extraction). No checkpoint, evaluation or logging (trmml_train_run adds those).
 *
 * --case TEXT computes only what the matching rows need (the image tower for any iteration row).
 * --quick: batch 2, 224 px, C = 20 only, one timed iteration, an epoch of 4 images. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/tape.h"
#include "clip/tokenizer.h"
#include "datasets/synth.h"
#include "tensor/clock.h"
#include "tools/bench.h"
#include "trmml/feature_cache.h"
#include "trmml/method_trmml.h"
#include "trmml/train.h"

typedef struct {
    int64_t B, S, N; /* batch, input side, epoch images */
    int reps;        /* timed iterations after one warm-up */
} TrainBench;

/* A TRM-ML model for C classes on clip, without a tokenizer: templates
 * [SOT][X x 16][name of 1..5 tokens][.][EOT] with end of text at 18..22, as bench_clip's
 * prompts; random queries; a full bank (stage-1 steady state, where MMCL contrasts against every
 * entry). */
static void bench_model(TrmmlModel *m, RunConfig *rc, const ClipModel *clip, int64_t C) {
    trmml_model_declare(m, rc, C, clip->cfg.embed_dim, clip->cfg.text.width);
    m->clip = clip;
    param_store_finalize(m->ps);
    const int64_t n_ctx = rc->tc.prompt_ctx_len;
    int64_t *id = xcalloc((size_t)(C * 77), sizeof *id);
    for (int64_t c = 0; c < C; c++) {
        int64_t *row = id + c * 77, n = 1 + c % 5, j = 0;
        row[j++] = CLIP_SOT;
        for (int64_t k = 0; k < n_ctx; k++) row[j++] = 343; /* "x" */
        for (int64_t k = 0; k < n; k++) row[j++] = 1000 + 37 * c + k;
        row[j++] = 269; /* "." */
        row[j] = CLIP_EOT;
    }
    Tensor *ids = tensor_empty(DT_I64, 2, SHAPE(C, 77)); /* on the model's device */
    tensor_copy(ids, tensor_wrap(DT_I64, DEVICE_CPU, 2, SHAPE(C, 77), id));
    free(id);
    trmml_prompt_set_tokens(&m->prompt, clip->text.token_embedding, ids);
    TrmmlMmcp *mmcp = &method_trmml_state(m)->mmcp;
    trmml_mmcp_init(mmcp, C, m->d, method_trmml_config(rc));
    trmml_model_init(m, 1, true);
    Rng r;
    rng_seed(&r, 5);
    float *v = xmalloc((size_t)m->d * sizeof *v);
    for (int64_t c = 0; c < C; c++)
        for (int64_t j = 0; j < mmcp->len; j++) {
            rng_fill_normal(&r, v, m->d, 0, 1);
            trmml_mmcp_push_vector(mmcp, c, v);
        }
    free(v);
}

static RunConfig bench_config(const TrainBench *tb) {
    RunConfig rc = run_config_default(TRMML_METHOD_TRMML, "coco2014");
    rc.tc.batch_size = tb->B;
    rc.tc.input_size = tb->S;
    rc.tc.micro_batch = 0;
    rc.tc.text_chunk = 0;
    rc.tc.dropout = 0;
    return rc;
}

/* Labels (B, C): positive where (b*5 + c) % max(C/3, 1) == 0, known where (b*3 + c) is even. */
static Tensor *bench_labels(int64_t B, int64_t C) {
    float *h = xmalloc((size_t)(B * C) * sizeof *h);
    const int64_t every = C / 3 > 0 ? C / 3 : 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            h[b * C + c] = (b * 3 + c) % 2 ? 0.0f : ((b * 5 + c) % every == 0 ? 1.0f : -1.0f);
    Tensor *y = tensor_from_f32(2, SHAPE(B, C), h);
    free(h);
    return y;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* The image tower on the batch, timed (median of tb->reps after a warm-up); its dense features
 * are copied into `dense` (in the input arena). The row "train rn101 img S bB". */
static double bench_image_tower(const BenchCtx *ctx, const TrainBench *tb, const ClipModel *clip,
                                Tensor *images, Tensor *dense) {
    const int64_t B = tb->B, S = tb->S, T = dense->shape[1], E = clip->cfg.embed_dim;
    double t_img[16];
    for (int i = 0; i <= tb->reps; i++) {
        const double t0 = bench_clock();
        bool gm = ag_set_grad_enabled(false);
        Tensor *emb, *d;
        clip_encode_image(clip, images, &emb, &d);
        ag_set_grad_enabled(gm);
        if (i > 0) t_img[i - 1] = bench_clock() - t0;
        tensor_copy(dense, d);
        tensor_step_end();
    }
    double conv, pool, dmacs;
    clip_resnet_macs(&clip->cfg.vision, S, S, &conv, &pool, &dmacs);
    const double img_gflop =
        2.0 * (double)B * (conv + pool + (double)T * clip->cfg.vision.channels * E) * 1e-9;
    const double img = median(t_img, tb->reps);
    char key[96];
    snprintf(key, sizeof key, "train rn101 img %lld b%lld", (long long)S, (long long)B);
    if (bench_wanted(ctx, key)) bench_report(key, img, img_gflop);
    return img;
}

/* The keys of the step rows at C classes, in report order: text, head, update (the parts),
 * step, iteration. */
enum { ROW_TEXT, ROW_HEAD, ROW_UPDATE, ROW_STEP, ROW_ITERATION, NROWS };
static void step_keys(int64_t C, char keys[NROWS][96]) {
    static const char *const what[NROWS] = {"text fwd+bwd", "head fwd+bwd", "update", "step",
                                            "iteration"};
    for (int k = 0; k < NROWS; k++)
        snprintf(keys[k], sizeof keys[k], "train rn101 c%lld %s", (long long)C, what[k]);
}

/* The training step at C classes on the cached dense features, timed by parts; rows "train
 * rn101 cC text fwd+bwd | head fwd+bwd | update | step | iteration" (the last adds the tower's
 * img). The parts only on the CPU (see the file's comment). */
static void bench_step(const BenchCtx *ctx, const TrainBench *tb, const ClipModel *clip,
                       Tensor *dense, int64_t C, double img, Arena *in, Arena *work) {
    RunConfig rc = bench_config(tb);
    TrmmlModel m;
    bench_model(&m, &rc, clip, C);
    TrmmlOptim *o = trmml_optim_create(&m);
    double t_text[16], t_head[16], t_upd[16], t_step[16], t_fwd[16];
    for (int i = 0; i <= tb->reps; i++) {
        tensor_set_arena(in);
        Tensor *y = bench_labels(tb->B, C);
        tensor_set_arena(work);
        trmml_optim_set(o, 5e-4, 0.9);
        TrmmlStepStats st;
        const double t0 = bench_clock();
        const bool ok = trmml_train_step(&m, o, dense, y, false, (uint64_t)i, &st);
        const double t = bench_clock() - t0;
        tensor_step_end();
        CHECK(ok && isfinite(st.loss), "bench train: step loss %g", st.loss);
        if (i == 0) continue;
        t_text[i - 1] = st.sec_text_fwd + st.sec_text_bwd;
        t_fwd[i - 1] = st.sec_text_fwd;
        t_head[i - 1] = st.sec_head;
        t_upd[i - 1] = st.sec_update;
        t_step[i - 1] = t;
    }
    const double text_gflop =
        2.0 * 2.0 * (double)(2 * C) * clip_text_macs(&clip->cfg.text, m.prompt.T) * 1e-9;
    char keys[NROWS][96];
    step_keys(C, keys);
    const double step = median(t_step, tb->reps);
    const double value[NROWS] = {median(t_text, tb->reps), median(t_head, tb->reps),
                                 median(t_upd, tb->reps), step, img + step};
    for (int k = 0; k < NROWS; k++) {
        if (!bench_wanted(ctx, keys[k])) continue;
        if (k <= ROW_UPDATE && ctx->dev != DEVICE_CPU)
            bench_skip(ctx, keys[k], "a part of the step, timed without synchronising the device");
        else bench_report(keys[k], value[k], k == ROW_TEXT ? text_gflop : 0);
    }
    fprintf(stderr, "  c%lld: ", (long long)C);
    if (ctx->dev == DEVICE_CPU)
        fprintf(stderr, "text forward alone %.1f ms of the text row; ",
                1e3 * median(t_fwd, tb->reps));
    fprintf(stderr, "arena peak %.1f MiB (steps) + model work %.1f MiB\n",
            arena_peak(work) / 1048576.0, arena_peak(clip->work) / 1048576.0);
    trmml_optim_free(o);
    trmml_model_free(&m);
    tensor_step_end();
}

/* Whether any step row at C classes is wanted (--case). */
static bool step_wanted(const BenchCtx *ctx, int64_t C) {
    char keys[NROWS][96];
    step_keys(C, keys);
    for (int k = 0; k < NROWS; k++)
        if (bench_wanted(ctx, keys[k])) return true;
    return false;
}

static void bench_iteration(const BenchCtx *ctx, const TrainBench *tb, const ClipModel *clip) {
    const int64_t B = tb->B, S = tb->S, g = S / 32, T = g * g + 1, E = clip->cfg.embed_dim;
    static const int64_t classes[2] = {20, 80};
    const int nclasses = tb->reps > 1 ? 2 : 1;
    char key[96];
    snprintf(key, sizeof key, "train rn101 img %lld b%lld", (long long)S, (long long)B);
    bool any = bench_wanted(ctx, key);
    for (int ci = 0; ci < nclasses; ci++) any |= step_wanted(ctx, classes[ci]);
    if (!any) return;
    /* Images and the dense features live in an arena of their own: steps reset theirs. */
    Arena *in = arena_create(ctx->dev, "bench train input", 0);
    Arena *prev = tensor_set_arena(in);
    Rng r;
    rng_seed(&r, 11);
    Tensor *images = bench_uniform(&r, 4, SHAPE(B, 3, S, S), -1, 1);
    Tensor *dense = tensor_empty(DT_F32, 3, SHAPE(B, T, E));
    Arena *work = arena_create(ctx->dev, "bench train", 0);
    tensor_set_arena(work);
    const double img = bench_image_tower(ctx, tb, clip, images, dense);
    for (int ci = 0; ci < nclasses; ci++)
        if (step_wanted(ctx, classes[ci]))
            bench_step(ctx, tb, clip, dense, classes[ci], img, in, work);
    tensor_set_arena(prev);
    arena_destroy(work);
    arena_destroy(in);
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

/* One epoch over src: batches of B in dataset order, all labels known. */
static double run_epoch(TrmmlModel *m, TrmmlOptim *o, TrmmlBatchSource *src, const Dataset *ds,
                        int64_t B) {
    const double t0 = bench_clock();
    int64_t *idx = xmalloc((size_t)B * sizeof *idx);
    for (int64_t b0 = 0; b0 < ds->n; b0 += B) {
        const int64_t nb = ds->n - b0 < B ? ds->n - b0 : B;
        for (int64_t i = 0; i < nb; i++) idx[i] = b0 + i;
        Tensor *dense = NULL;
        Status st = src->dense(src, idx, nb, 0, (uint64_t)b0, &dense);
        CHECK(st == STATUS_OK, "bench train: %s", error_last());
        float *h = xmalloc((size_t)(nb * ds->c) * sizeof *h);
        for (int64_t i = 0; i < nb * ds->c; i++) h[i] = ds->labels[b0 * ds->c + i];
        Tensor *y = tensor_from_f32(2, SHAPE(nb, ds->c), h);
        free(h);
        TrmmlStepStats s;
        trmml_optim_set(o, 5e-4, 0.9);
        CHECK(trmml_train_step(m, o, dense, y, false, (uint64_t)b0, &s), "bench train: loss %g",
              s.loss);
        tensor_step_end();
    }
    free(idx);
    return bench_clock() - t0;
}

static void bench_epoch(const BenchCtx *ctx, const TrainBench *tb, const ClipModel *clip) {
    char keys[3][96];
    snprintf(keys[0], sizeof keys[0], "train epoch %lld img cached", (long long)tb->N);
    snprintf(keys[1], sizeof keys[1], "train epoch %lld img uncached", (long long)tb->N);
    snprintf(keys[2], sizeof keys[2], "train extract %lld img", (long long)tb->N);
    if (!bench_wanted(ctx, keys[0]) && !bench_wanted(ctx, keys[1]) && !bench_wanted(ctx, keys[2]))
        return;
    char dir[64] = "/tmp/trmml-bench-train-XXXXXX", world[128], root[160], classes[160],
         cache[160];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(world, sizeof world, "%s/world", dir);
    snprintf(root, sizeof root, "%s/VOCdevkit", world);
    snprintf(classes, sizeof classes, "%s/classes.txt", world);
    snprintf(cache, sizeof cache, "%s/train.feat", dir);
    SynthConfig sc = ds_synth_default_config();
    sc.n_train = tb->N;
    sc.n_test = 1;
    sc.size = (int)tb->S;
    CHECK(ds_synth_write(world, &sc, false, NULL) == STATUS_OK, "%s", error_last());
    DsOptions opt = {.class_list = classes};
    Dataset *ds = NULL;
    CHECK(ds_open("voc2007", root, "trainval", &opt, &ds) == STATUS_OK, "%s", error_last());
    RunConfig rc = bench_config(tb);
    TrmmlModel m;
    bench_model(&m, &rc, clip, ds->c);
    TrmmlOptim *o = trmml_optim_create(&m);

    double t0 = bench_clock();
    ExtractOptions eo = {.image_size = (int)tb->S, .batch = 8, .model_id = "random rn101"};
    CHECK(feature_cache_extract(clip, ds, &eo, cache, NULL) == STATUS_OK, "%s", error_last());
    const double t_extract = bench_clock() - t0;
    TrmmlBatchSource cached, images;
    CHECK(trmml_source_cache(&cached, cache, ds, clip, tb->S) == STATUS_OK, "%s", error_last());
    CHECK(trmml_source_images(&images, ds, clip, tb->S, TRMML_TRANSFORM_TRAIN_TRMML, false) ==
              STATUS_OK,
          "%s", error_last());
    const double t_cached = run_epoch(&m, o, &cached, ds, tb->B);
    const double t_images = run_epoch(&m, o, &images, ds, tb->B);
    CHECK(ds->n == tb->N, "bench train: the world has %lld training images, not %lld",
          (long long)ds->n, (long long)tb->N);
    const double value[3] = {t_cached, t_images, t_extract};
    for (int k = 0; k < 3; k++)
        if (bench_wanted(ctx, keys[k])) bench_report(keys[k], value[k], 0);
    fprintf(stderr,
            "  epoch of %lld images (%lld classes, batch %lld, %lld px): cached %.1f s, "
            "uncached %.1f s (%.1fx); extracting the cache once %.1f s\n",
            (long long)ds->n, (long long)ds->c, (long long)tb->B, (long long)tb->S, t_cached,
            t_images, t_images / t_cached, t_extract);
    trmml_source_close(&cached);
    trmml_source_close(&images);
    trmml_optim_free(o);
    trmml_model_free(&m);
    ds_free(ds);
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "  bench train: could not remove %s\n", dir);
}

BENCH(train, "one TRM-ML training iteration (RN101, batch 32, 448 px, C = 20 / 80) in parts; "
             "an epoch with the feature cache vs without") {
    const TrainBench tb = ctx->quick ? (TrainBench){.B = 2, .S = 224, .N = 4, .reps = 1}
                                     : (TrainBench){.B = 32, .S = 448, .N = 64, .reps = 3};
    ClipModel *clip = bench_random_clip(clip_config_rn101());
    bench_iteration(ctx, &tb, clip);
    bench_epoch(ctx, &tb, clip);
    clip_model_free(clip);
}
