/* train.c — the training program of every method (trmml/train.h), driving the method's table of
 * operations (trmml/method.h) and naming no method.
 *
 * Sections: the model of a run; batch sources; the optimizer with exportable state; one
 * iteration (the text tower around the method's step); the run (stages, schedules, evaluation,
 * checkpoints, resume). The order of one TRM-ML iteration is SPEC §4.9; docs/training.md walks
 * through it, docs/methods.md through the interface. */
#include "trmml/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autograd/tape.h"
#include "clip/checkpoint.h"
#include "clip/preprocess.h"
#include "datasets/augment.h"
#include "datasets/mask.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#include "tensor/dist.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/ops/optim.h"
#include "tensor/ops/reduce.h"
#include "trmml/evaluate.h"
#include "trmml/feature_cache.h"

_Static_assert(sizeof(bool) == 1, "the checkpoint stores bool flags as uint8");

uint64_t trmml_seed_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    /* splitmix64 finaliser over each word in turn: distinct counters give unrelated streams. */
    uint64_t x = seed, w[3] = {a, b, c};
    for (int i = 0; i < 4; i++) {
        if (i) x ^= w[i - 1] + 0x9e3779b97f4a7c15ULL * (uint64_t)i;
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
    }
    return x;
}

/* ---- the model ------------------------------------------------------------------------------ */

void trmml_model_declare(TrmmlModel *m, const RunConfig *rc, int64_t C, int64_t d, int64_t width) {
    memset(m, 0, sizeof *m);
    m->ops = trmml_method_ops(rc->method);
    m->method = rc->method;
    m->cfg = *rc;
    m->C = C;
    m->d = d;
    m->ps = param_store_create(tensor_default_device(), "learnable");
    m->ops->declare(m, width);
}

Status trmml_model_create(TrmmlModel *m, const RunConfig *rc, const ClipModel *clip,
                          const ClipTokenizer *tok, char *const *names, int64_t C) {
    trmml_model_declare(m, rc, C, clip->cfg.embed_dim, clip->cfg.text.width);
    m->clip = clip;
    param_store_finalize(m->ps);
    Status st = STATUS_OK;
    if (m->prompt.ctx_pos)
        st = trmml_prompt_set_classes(&m->prompt, clip, tok, (const char *const *)names);
    if (st == STATUS_OK && m->ops->create) st = m->ops->create(m, tok, names);
    if (st != STATUS_OK) {
        trmml_model_free(m);
        return st;
    }
    trmml_model_init(m, (uint64_t)rc->tc.seed, true);
    return STATUS_OK;
}

void trmml_model_init(TrmmlModel *m, uint64_t seed, bool reset_prototypes) {
    if (m->prompt.ctx_pos) trmml_prompt_init(&m->prompt, trmml_seed_mix(seed, 1, 0, 0));
    if (m->ops->init) m->ops->init(m, seed, reset_prototypes);
}

void trmml_model_free(TrmmlModel *m) {
    trmml_prompt_free(&m->prompt);
    if (m->ops) m->ops->free(m);
    param_store_destroy(m->ps);
    memset(m, 0, sizeof *m);
}

void trmml_model_text_features(const TrmmlModel *m, Tensor **gpos, Tensor **gneg) {
    *gpos = *gneg = NULL;
    if (!m->prompt.ctx_pos) return; /* pvlr without CAP: no learned prompt */
    bool g = ag_set_grad_enabled(false);
    trmml_prompt_features(&m->prompt, m->clip, m->cfg.tc.text_chunk, gpos, gneg);
    ag_set_grad_enabled(g);
}

Tensor *trmml_model_probs(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    bool g = ag_set_grad_enabled(false);
    Tensor *p = m->ops->probs(m, dense, gpos, gneg);
    ag_set_grad_enabled(g);
    return p;
}

Tensor *trmml_model_maps(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    if (!m->ops->maps) return NULL;
    bool g = ag_set_grad_enabled(false);
    Tensor *maps = m->ops->maps(m, dense, gpos, gneg);
    ag_set_grad_enabled(g);
    return maps;
}

int trmml_model_state(TrmmlModel *m, RunTensor *out, int cap) {
    int n = 0;
    char name[200];
    for (int i = 0; i < param_count(m->ps); i++) {
        Tensor *p = param_at(m->ps, i);
        if (!p->requires_grad) continue;
        snprintf(name, sizeof name, "param.%s", p->name);
        trmml_method_add_entry(out, &n, cap, name, p);
    }
    if (m->ops->state) n += m->ops->state(m, out + n, cap - n);
    return n;
}

/* ---- batch sources -------------------------------------------------------------------------- */

typedef struct {
    FeatureCache fc;
} CacheSource;

static Status cache_dense(TrmmlBatchSource *src, const int64_t *idx, int64_t count, int64_t first,
                          uint64_t seed, Tensor **out) {
    (void)first, (void)seed;
    *out = feature_cache_batch(&((CacheSource *)src->ctx)->fc, idx, count);
    return STATUS_OK;
}

static void cache_close(TrmmlBatchSource *src) {
    CacheSource *c = src->ctx;
    feature_cache_close(&c->fc);
    free(c);
}

Status trmml_source_cache(TrmmlBatchSource *src, const char *path, const Dataset *ds,
                          const ClipModel *clip, int64_t input_size) {
    memset(src, 0, sizeof *src);
    CacheSource *c = xcalloc(1, sizeof *c);
    Status st = feature_cache_open(path, &c->fc);
    if (st != STATUS_OK) {
        free(c);
        return st;
    }
    const int64_t g = input_size / 32;
    if (c->fc.n != ds->n || c->fc.dim != clip->cfg.embed_dim || c->fc.tokens != g * g + 1 ||
        c->fc.image_size != input_size) {
        st = error_set(STATUS_ERR_FORMAT,
                       "%s: cache of %lld images, %lld tokens x %lld at %lld px; "
                       "the run needs %lld images of %s %s, %lld tokens x %lld at %lld px "
                       "(re-run trmml extract)",
                       path, (long long)c->fc.n, (long long)c->fc.tokens, (long long)c->fc.dim,
                       (long long)c->fc.image_size, (long long)ds->n, ds->name, ds->split,
                       (long long)(g * g + 1), (long long)clip->cfg.embed_dim,
                       (long long)input_size);
        feature_cache_close(&c->fc);
        free(c);
        return st;
    }
    src->n = c->fc.n;
    src->tokens = c->fc.tokens;
    src->dim = c->fc.dim;
    src->dense = cache_dense;
    src->close = cache_close;
    src->ctx = c;
    return STATUS_OK;
}

typedef struct {
    const Dataset *ds;
    const ClipModel *clip;
    int S;
    TrmmlTransform transform;
    double min_area;
} ImageSource;

#define TRMML_TOWER_CHUNK 8

/* Load, transform and normalise items idx[0..count), then the tower, no tape. Each image's
 * augmentation draws from its own generator seeded by (seed, position in the batch), so a rank's
 * share of a batch is augmented as in one process. */
static Status image_dense(TrmmlBatchSource *src, const int64_t *idx, int64_t count, int64_t first,
                          uint64_t seed, Tensor **out) {
    ImageSource *s = src->ctx;
    const int S = s->S;
    Arena *arena = tensor_arena();
    Tensor *dense = tensor_empty(DT_F32, 3, SHAPE(count, src->tokens, src->dim));
    const size_t per = (size_t)(src->tokens * src->dim);
    /* The tower runs TRMML_TOWER_CHUNK images at a time, so its activations stay small
     * whatever the batch size. */
    for (int64_t b0 = 0; b0 < count; b0 += TRMML_TOWER_CHUNK) {
        const int64_t nb = count - b0 < TRMML_TOWER_CHUNK ? count - b0 : TRMML_TOWER_CHUNK;
        const size_t mark = arena_mark(arena);
        float *px = xmalloc(sizeof(float) * (size_t)(nb * 3 * S * S)); /* host pixels, uploaded */
        for (int64_t b = 0; b < nb; b++) {
            Image im = {0}, t = {0};
            Status st = image_load(ds_image_path(s->ds, idx[b0 + b]), &im, NULL);
            if (st != STATUS_OK) {
                free(px);
                arena_release(arena, mark);
                return st;
            }
            Rng rng;
            rng_seed(&rng, trmml_seed_mix(seed, (uint64_t)(first + b0 + b), 0, 3));
            switch (s->transform) {
            case TRMML_TRANSFORM_TEST_BICUBIC: aug_test(&im, S, RESAMPLE_BICUBIC, &t); break;
            case TRMML_TRANSFORM_TEST_BILINEAR: aug_test(&im, S, RESAMPLE_BILINEAR, &t); break;
            case TRMML_TRANSFORM_TRAIN_TRMML: aug_trmml_train(&im, S, s->min_area, &rng, &t); break;
            case TRMML_TRANSFORM_TRAIN_DUALCOOP: aug_dualcoop_train(&im, S, &rng, &t); break;
            }
            image_normalize(&t, CLIP_MEAN, CLIP_STD, px + b * 3 * S * S);
            image_free(&im);
            image_free(&t);
        }
        Tensor *x = tensor_from_f32(4, SHAPE(nb, 3, S, S), px);
        free(px);
        bool g = ag_set_grad_enabled(false);
        Tensor *emb = NULL, *d = NULL;
        clip_encode_image(s->clip, x, &emb, &d);
        ag_set_grad_enabled(g);
        device_table(dense->device)->copy_d2d(tensor_f32(dense) + (size_t)b0 * per, d->data,
                                              (size_t)nb * per * sizeof(float));
        arena_release(arena, mark);
    }
    *out = dense;
    return STATUS_OK;
}

static void image_close(TrmmlBatchSource *src) { free(src->ctx); }

Status trmml_source_images(TrmmlBatchSource *src, const Dataset *ds, const ClipModel *clip,
                           int64_t input_size, TrmmlTransform transform, bool nuswide) {
    memset(src, 0, sizeof *src);
    if (input_size % 32 != 0)
        return error_set(STATUS_ERR_USAGE, "input_size %lld is not a multiple of 32",
                         (long long)input_size);
    ImageSource *s = xcalloc(1, sizeof *s);
    *s = (ImageSource){ds, clip, (int)input_size, transform,
                       nuswide ? AUG_MIN_AREA_NUSWIDE : AUG_MIN_AREA};
    const int64_t g = input_size / 32;
    src->n = ds->n;
    src->tokens = g * g + 1;
    src->dim = clip->cfg.embed_dim;
    src->dense = image_dense;
    src->close = image_close;
    src->ctx = s;
    return STATUS_OK;
}

void trmml_source_close(TrmmlBatchSource *src) {
    if (src && src->close) src->close(src);
    if (src) memset(src, 0, sizeof *src);
}

/* ---- optimizer ------------------------------------------------------------------------------ */

/* The optimizer of a run: nn/optim's SGD or AdamW over the model's trainable parameters, plus
 * the checkpoint view of its state under stable names ("optim.m.<param>", "optim.v.<param>",
 * "optim.steps"). The per-parameter step counts live in `steps` (checkpointed) and are handed to
 * nn/optim around each update, so a restored checkpoint continues exactly. */
struct TrmmlOptim {
    Optimizer *opt;
    bool adamw;
    int n;
    char **names;      /* 2n entry names, [2i] for state 0 and [2i+1] for state 1 */
    ParamStore *state; /* holds `steps` */
    Tensor *steps;     /* (n) int64 */
};

TrmmlOptim *trmml_optim_create(TrmmlModel *m) {
    const RunConfig *rc = &m->cfg;
    const TrmmlConfig *tc = &rc->tc;
    TrmmlOptim *o = xcalloc(1, sizeof *o);
    o->adamw = m->ops->optim == TRMML_OPTIM_ADAMW;
    if (o->adamw) {
        o->opt = optim_adamw_create(m->ps, tc->lr, tc->beta1_max, tc->adam_beta2, tc->adam_eps,
                                    tc->weight_decay);
    } else {
        double lr0, momentum;
        m->ops->schedule(rc, 0, &lr0, &momentum);
        o->opt = optim_sgd_create(m->ps, tc->lr, momentum, tc->weight_decay, false);
    }
    o->n = optim_param_count(o->opt);
    o->names = xcalloc((size_t)(2 * o->n) + 1, sizeof *o->names);
    for (int i = 0; i < o->n; i++) {
        const char *pn = optim_param_at(o->opt, i)->name;
        bool no_decay = false;
        double lr_scale = 1.0;
        if (m->ops->param_group) m->ops->param_group(rc, pn, &no_decay, &lr_scale);
        if (no_decay) optim_exclude_weight_decay(o->opt, pn);
        if (lr_scale != 1.0) optim_set_lr_scale(o->opt, pn, lr_scale);
        size_t len = strlen(pn) + 16;
        o->names[2 * i] = xmalloc(len);
        o->names[2 * i + 1] = xmalloc(len);
        snprintf(o->names[2 * i], len, "optim.m.%s", pn);
        snprintf(o->names[2 * i + 1], len, "optim.v.%s", pn);
    }
    o->state = param_store_create(DEVICE_CPU, "optimizer steps");
    o->steps = param_add(o->state, "optim.steps", DT_I64, 1, SHAPE(o->n > 0 ? o->n : 1), false);
    param_store_finalize(o->state);
    return o;
}

void trmml_optim_free(TrmmlOptim *o) {
    if (!o) return;
    for (int i = 0; i < 2 * o->n; i++) free(o->names[i]);
    free(o->names);
    param_store_destroy(o->state);
    optim_destroy(o->opt);
    free(o);
}

void trmml_optim_set(TrmmlOptim *o, double lr, double beta1) {
    optim_set_lr(o->opt, lr);
    optim_set_beta1(o->opt, beta1);
}

void trmml_optim_reset(TrmmlOptim *o) {
    optim_reset_state(o->opt);
    memset(o->steps->data, 0, (size_t)o->steps->numel * sizeof(int64_t));
}

int trmml_optim_state(TrmmlOptim *o, RunTensor *out, int cap) {
    int n = 0;
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 2; k++)
            if (optim_state_at(o->opt, i, k))
                trmml_method_add_entry(out, &n, cap, o->names[2 * i + k],
                                       optim_state_at(o->opt, i, k));
    trmml_method_add_entry(out, &n, cap, "optim.steps", o->steps);
    return n;
}

/* One update of every parameter (nn/optim), with the checkpointed step counts. */
static void optim_update(TrmmlOptim *o) {
    int64_t *steps = tensor_i64(o->steps);
    for (int i = 0; i < o->n; i++) optim_set_param_steps(o->opt, i, steps[i]);
    optim_step(o->opt);
    for (int i = 0; i < o->n; i++) steps[i] = optim_param_steps(o->opt, i);
}

static double grad_norm(const TrmmlOptim *o) {
    double s = 0;
    for (int i = 0; i < o->n; i++) s += tensor_sum_squares(optim_param_at(o->opt, i)->grad);
    return sqrt(s);
}

/* ---- one iteration -------------------------------------------------------------------------- */


bool trmml_train_step(TrmmlModel *m, TrmmlOptim *o, Tensor *dense, Tensor *y, bool phase_on,
                      uint64_t step_seed, TrmmlStepStats *st) {
    return trmml_train_step_rows(m, o, dense, y, 0, phase_on, step_seed, st);
}

bool trmml_train_step_rows(TrmmlModel *m, TrmmlOptim *o, Tensor *dense, Tensor *y, int64_t row0,
                           bool phase_on, uint64_t step_seed, TrmmlStepStats *st) {
    memset(st, 0, sizeof *st);
    double t = time_now_s(), t1;
    CHECK(dense->ndim == 3 && y->ndim == 2 && row0 >= 0 &&
              row0 + dense->shape[0] <= y->shape[0] && y->shape[1] == m->C,
          "train_step: dense %s (from row %lld) and labels %s must be (b,T,E) and (B,%lld)",
          tensor_shape_str(dense), (long long)row0, tensor_shape_str(y), (long long)m->C);
    const TrmmlConfig *tc = &m->cfg.tc;
    param_zero_grad(m->ps);
    /* §4.9 step 3: G+, G- once, without a tape; heads accumulate dL/dG into their buffers. */
    TrmmlStepInput in = {.dense = dense, .y = trmml_rows(y, row0, dense->shape[0]),
                         .phase_on = phase_on, .seed = step_seed, .y_batch = y, .row0 = row0,
                         .batch = y->shape[0]};
    PromptGraph graph = {0};
    bool kept = false; /* one chunk: the taped forward is kept for the backward (2 passes, not 3) */
    if (m->prompt.ctx_pos)
        kept = trmml_prompt_features_kept(&m->prompt, m->clip, tc->text_chunk, &in.gpos, &in.gneg,
                                          &graph);
    st->sec_text_fwd = (t1 = time_now_s()) - t;
    t = t1;
    m->ops->step(m, &in, st);
    if (!isfinite(st->loss)) return false;
    st->sec_head = (t1 = time_now_s()) - t;
    t = t1;
    /* The text tower's backward, chunk by chunk, into the contexts. */
    if (kept)
        trmml_prompt_backward_kept(&m->prompt, &graph, in.gpos, in.gneg);
    else if (m->prompt.ctx_pos)
        trmml_prompt_backward(&m->prompt, m->clip, tc->text_chunk, in.gpos, in.gneg);
    st->sec_text_bwd = (t1 = time_now_s()) - t;
    t = t1;
    /* Under MPI: the gradients of the whole batch, the ranks' shares summed in rank order (one
     * all-reduce of the store's gradient block; every rank then takes the same update). */
    Tensor *grads = dist_size() > 1 ? param_grad_block(m->ps) : NULL;
    if (grads) dist_allreduce_tensor(grads);
    st->sec_allreduce = time_now_s() - t;
    st->grad_norm = grad_norm(o);
    if (!isfinite(st->grad_norm)) {
        st->loss = st->grad_norm;
        return false;
    }
    optim_update(o);
    if (m->ops->after_update) m->ops->after_update(m, &in);
    st->sec_update = time_now_s() - t;
    return true;
}

/* ---- a run ---------------------------------------------------------------------------------- */

/* Everything a run holds open; released by run_close in any state. */
typedef struct {
    RunConfig rc;
    const char *dir;
    char ckpt[RUN_PATH_MAX], metrics[RUN_PATH_MAX], apcsv[RUN_PATH_MAX], curve[RUN_PATH_MAX],
        config[RUN_PATH_MAX];
    RunLock lock;
    RunCheckpoint resume; /* the checkpoint resumed from, until its state is restored */
    bool config_intact;   /* resume: config.txt holds exactly the resolved configuration */
    RunLog log;
    Dataset *train, *test;
    int8_t *mask; /* (N, C) observed training labels */
    char mask_line[512];
    ClipModel *clip;
    ClipTokenizer *tok;
    TrmmlModel model;
    bool model_ok;
    TrmmlBatchSource src_train, src_test;
    TrmmlOptim *opt;
    RunMeta meta;
    char *history;    /* metrics.jsonl as the next checkpoint records it (meta.history lines) */
    int64_t iters;    /* optimizer steps per epoch */
    double last_loss; /* mean loss of the last epoch */
} Run;

static void run_close(Run *r) {
    trmml_optim_free(r->opt);
    trmml_source_close(&r->src_train);
    trmml_source_close(&r->src_test);
    if (r->model_ok) trmml_model_free(&r->model);
    clip_tokenizer_free(r->tok);
    if (r->clip) clip_model_free(r->clip);
    free(r->mask);
    free(r->history);
    ds_free(r->train);
    ds_free(r->test);
    run_checkpoint_close(&r->resume);
    run_log_close(&r->log);
    run_unlock(&r->lock);
    tensor_set_precision(PRECISION_FP32);
}

static Status open_source(Run *r, TrmmlBatchSource *src, const char *cached, const Dataset *ds,
                          TrmmlTransform transform) {
    if (cached[0]) {
        Status st = trmml_source_cache(src, cached, ds, r->clip, r->rc.tc.input_size);
        /* A cache holds the features of images resized with one filter, the one of the method's
         * test transform (bicubic or bilinear, SPEC §2.2, §2.3). Features of the other filter
         * are features of other images, so they are refused unless asked for. */
        const char *want = resample_filter_name(
            trmml_method_ops(r->rc.method)->test_transform == TRMML_TRANSFORM_TEST_BILINEAR
                ? RESAMPLE_BILINEAR
                : RESAMPLE_BICUBIC);
        const char *got = st == STATUS_OK ? ((CacheSource *)src->ctx)->fc.resample : want;
        if (strcmp(got, want) != 0 && !r->rc.tc.cache_any_filter)
            st = error_set(STATUS_ERR_FORMAT,
                           "%s: features extracted with the %s filter, but %s resizes with %s "
                           "(SPEC §2.2/§2.3); re-extract with `trmml extract --resample %s`, or "
                           "accept it with --cache-any-filter (cache_any_filter = true)",
                           cached, got, trmml_method_name(r->rc.method), want, want);
        return st;
    }
    return trmml_source_images(src, ds, r->clip, r->rc.tc.input_size, transform,
                               strcmp(ds->name, "nuswide") == 0);
}

/* The resolved configuration as text (config.txt and the start-up print). */
static char *config_text(const RunConfig *rc, size_t *n) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, n);
    CHECK(f, "open_memstream");
    run_config_print(rc, f);
    fclose(f);
    return buf;
}

static Status write_classes(const char *dir, const Dataset *ds) {
    char path[RUN_PATH_MAX];
    if (!run_path(path, sizeof path, dir, "classes.txt"))
        return error_set(STATUS_ERR_USAGE, "%s: path too long", dir);
    size_t n = 0;
    for (int64_t c = 0; c < ds->c; c++) n += strlen(ds->class_names[c]) + 1;
    char *text = xmalloc(n + 1), *p = text;
    for (int64_t c = 0; c < ds->c; c++) p += sprintf(p, "%s\n", ds->class_names[c]);
    Status st = run_write_file(path, text, n);
    free(text);
    return st;
}

static Status append_line(const char *path, const char *line) {
    FILE *f = xfopen(path, "ab");
    if (!f) return STATUS_ERR_IO;
    Status st = xfwrite(line, 1, strlen(line), f, path);
    if (fclose(f) != 0 && st == STATUS_OK) st = error_set(STATUS_ERR_IO, "%s: write failed", path);
    return st;
}

static Status save_checkpoint(Run *r) {
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    int cap = 2 * param_count(r->model.ps) + 2 * param_count(r->model.ps) + 64;
    RunTensor *t = xcalloc((size_t)cap, sizeof *t);
    int n = trmml_model_state(&r->model, t, cap);
    n += trmml_optim_state(r->opt, t + n, cap - n);
    size_t len;
    char *config = config_text(&r->rc, &len);
    Status st = run_checkpoint_write(r->ckpt, &r->meta, config, r->history, t, n);
    free(config);
    free(t);
    arena_release(arena, mark);
    return st;
}

/* The learnable state, optimizer state and counters of the checkpoint opened by resume_config. */
static Status restore_checkpoint(Run *r) {
    const RunCheckpoint *ck = &r->resume;
    if (ck->meta.method != r->rc.method || ck->meta.n_classes != r->model.C)
        return error_set(STATUS_ERR_FORMAT, "%s: a %s checkpoint with %lld classes, the run is %s "
                                            "with %lld (classes.txt or the class list changed)",
                         r->ckpt, trmml_method_name((int)ck->meta.method),
                         (long long)ck->meta.n_classes, trmml_method_name(r->rc.method),
                         (long long)r->model.C);
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    int cap = 4 * param_count(r->model.ps) + 64;
    RunTensor *t = xcalloc((size_t)cap, sizeof *t);
    int n = trmml_model_state(&r->model, t, cap);
    n += trmml_optim_state(r->opt, t + n, cap - n);
    Status st = run_checkpoint_restore(ck, t, n);
    free(t);
    arena_release(arena, mark);
    if (st != STATUS_OK) return st;
    r->meta = ck->meta;
    free(r->history);
    r->history = strdup(ck->metrics);
    CHECK(r->history, "strdup");
    return STATUS_OK;
}

/* The counters of a restored checkpoint against this run's epochs and steps per epoch, so a
 * checkpoint that does not fit (another dataset size under a moved root) is an error naming
 * the file, never a CHECK in the schedule. Checkpoints are written after whole epochs: the
 * step counter is a multiple of the epoch's steps. */
static Status check_counters(const Run *r, bool two_stage) {
    const RunMeta *m = &r->meta;
    const int64_t E = r->rc.tc.epochs;
    if (m->stage != 1 && !(m->stage == 2 && two_stage))
        return error_set(STATUS_ERR_FORMAT, "%s: stage %lld, this run has %s", r->ckpt,
                         (long long)m->stage, two_stage ? "stages 1 and 2" : "one stage");
    if (m->epochs_done < 0 || m->epochs_done > E)
        return error_set(STATUS_ERR_FORMAT, "%s: %lld completed epochs, the run has %lld per stage",
                         r->ckpt, (long long)m->epochs_done, (long long)E);
    if (m->step != m->epochs_done * r->iters)
        return error_set(STATUS_ERR_FORMAT,
                         "%s: %lld optimizer steps after %lld epochs of stage %lld, but this run "
                         "takes %lld steps per epoch (%lld training images, batch %lld): the "
                         "dataset under root is not the one the run started on",
                         r->ckpt, (long long)m->step, (long long)m->epochs_done,
                         (long long)m->stage, (long long)r->iters, (long long)r->train->n,
                         (long long)r->rc.tc.batch_size);
    const int64_t global = m->epochs_done + (m->stage == 2 ? E : 0);
    if (m->global_epochs != global || m->history != global || m->best_epoch < 0 ||
        m->best_epoch > global || (m->finished != 0 && m->finished != 1))
        return error_set(STATUS_ERR_FORMAT,
                         "%s: counters disagree (stage %lld, %lld epochs of the stage, %lld in "
                         "all, %lld metrics lines, best epoch %lld)",
                         r->ckpt, (long long)m->stage, (long long)m->epochs_done,
                         (long long)m->global_epochs, (long long)m->history,
                         (long long)m->best_epoch);
    return STATUS_OK;
}

/* Evaluate on the test split: log line, ap.csv, and the JSON for metrics.jsonl (owned). */
static Status run_eval(Run *r, char **json, double *map) {
    TrmmlEval ev;
    Status st = trmml_evaluate(&r->model, &r->src_test, r->test, TRMML_EVAL_BATCH, &ev);
    if (st != STATUS_OK) return st;
    *map = ev.metrics.map;
    run_log_printf(&r->log, "eval stage=%lld epoch=%lld mAP=%.2f CF1=%.2f OF1=%.2f\n",
                   (long long)r->meta.stage, (long long)r->meta.epochs_done, ev.metrics.map,
                   ev.metrics.all.cf1, ev.metrics.all.of1);
    if (dist_is_root()) st = trmml_write_ap_csv(r->apcsv, r->test->class_names, ev.ap, r->test->c);
    *json = ev.json;
    ev.json = NULL;
    trmml_eval_free(&ev);
    return st;
}

/* DECISION 19: one stage, or two (TRM-ML with MMCP: the method's `stages`). */
static bool two_stage_run(const RunConfig *rc) {
    const TrmmlMethodOps *ops = trmml_method_ops(rc->method);
    return ops->stages && ops->stages(rc) == 2;
}

static Status run_paths(Run *r) {
    if (!run_path(r->ckpt, sizeof r->ckpt, r->dir, "checkpoint.safetensors") ||
        !run_path(r->metrics, sizeof r->metrics, r->dir, "metrics.jsonl") ||
        !run_path(r->apcsv, sizeof r->apcsv, r->dir, "ap.csv") ||
        !run_path(r->curve, sizeof r->curve, r->dir, "curve.png") ||
        !run_path(r->config, sizeof r->config, r->dir, "config.txt"))
        return error_set(STATUS_ERR_USAGE, "%s: path too long", r->dir);
    return STATUS_OK;
}

static Status already_holds(const char *dir) {
    return error_set(STATUS_ERR_USAGE,
                     "%s already holds a run (checkpoint.safetensors): add --resume to continue "
                     "it, or choose another --out",
                     dir);
}

/* --resume: the directory's lock, its checkpoint (verified), and the run's configuration from
 * it (run_config_of_checkpoint). Writes nothing but the lock file. */
static Status resume_config(Run *r) {
    struct stat sb;
    /* The lock before the checkpoint test: a fresh run that holds the directory has no
     * checkpoint yet, and must be named as the holder, not reported as restartable. */
    Status st = dist_is_root() && stat(r->dir, &sb) == 0 && S_ISDIR(sb.st_mode)
                    ? run_lock(r->dir, &r->lock)
                    : STATUS_OK;
    if (st == STATUS_OK && access(r->ckpt, F_OK) != 0)
        st = error_set(STATUS_ERR_IO,
                       "%s: no checkpoint.safetensors to resume from (a run stopped before the "
                       "end of its first epoch has none); start it again without --resume",
                       r->dir);
    if (st == STATUS_OK) st = run_checkpoint_open(r->ckpt, &r->resume);
    if (st == STATUS_OK)
        st = run_config_of_checkpoint(&r->resume, r->config, &r->rc, &r->config_intact);
    if (st == STATUS_OK) st = run_config_validate(&r->rc);
    return st;
}

/* Everything the run reads: datasets, observed labels, CLIP, tokenizer, model, batch sources,
 * optimizer. Writes nothing, so a run refused here leaves no trace on disk. */
static Status open_inputs(Run *r) {
    const RunConfig *rc = &r->rc;
    DsOptions dopt = {.class_list = rc->class_list[0] ? rc->class_list : NULL};
    Status st = run_config_apply_precision(rc);
    if (st == STATUS_OK) st = ds_open(rc->dataset, rc->root, rc->train_split, &dopt, &r->train);
    if (st == STATUS_OK) st = ds_open(rc->dataset, rc->root, rc->test_split, &dopt, &r->test);
    if (st != STATUS_OK) return st;
    if (r->train->c != r->test->c)
        return error_set(STATUS_ERR_FORMAT, "%s: train and test class counts differ", rc->root);

    /* The observed training labels (SPEC §6.1 / §6.7), recorded by seed and hash. */
    const int64_t N = r->train->n, C = r->train->c;
    r->mask = xmalloc((size_t)(N * C));
    MaskInfo mi;
    if (rc->tc.single_positive)
        st = ds_mask_single_positive(
            r->mask, r->train->labels, N, C,
            (uint32_t)(rc->mask_seed < 0 ? DS_SINGLE_POSITIVE_SEED : rc->mask_seed), &mi);
    else
        st = ds_mask_partial(r->mask, r->train->labels, N, C, rc->ratio,
                             (uint32_t)(rc->mask_seed < 0 ? DS_PARTIAL_SEED : rc->mask_seed), &mi);
    if (st != STATUS_OK) return st;
    ds_mask_info_format(&mi, r->mask_line, sizeof r->mask_line);

    if ((st = trmml_load_clip(rc->model, &r->clip)) != STATUS_OK) return st;
    if ((st = clip_tokenizer_load(clip_vocab_path(rc->vocab[0] ? rc->vocab : NULL), &r->tok)) !=
        STATUS_OK)
        return st;
    if ((st = trmml_model_create(&r->model, rc, r->clip, r->tok, r->train->class_names, C)) !=
        STATUS_OK)
        return st;
    r->model_ok = true;
    const TrmmlMethodOps *ops = r->model.ops;
    if ((st = open_source(r, &r->src_train, rc->cached_train, r->train, ops->train_transform)) !=
        STATUS_OK)
        return st;
    if ((st = open_source(r, &r->src_test, rc->cached_test, r->test, ops->test_transform)) !=
        STATUS_OK)
        return st;
    r->opt = trmml_optim_create(&r->model);
    r->iters = (N + rc->tc.batch_size - 1) / rc->tc.batch_size;
    /* OneCycle rises and falls over the run's steps: it needs two at least. */
    if (r->opt->adamw && rc->tc.epochs * r->iters < 2)
        return error_set(STATUS_ERR_USAGE,
                         "train: %lld epoch(s) of %lld step(s) (%lld training images, batch %lld) "
                         "make %lld optimizer step(s), and the OneCycle schedule needs at least 2: "
                         "use more --epochs or a smaller --batch",
                         (long long)rc->tc.epochs, (long long)r->iters, (long long)N,
                         (long long)rc->tc.batch_size, (long long)(rc->tc.epochs * r->iters));
    return STATUS_OK;
}

/* A fresh run, once every check passed: the directory, its lock, config.txt, classes.txt.
 * Leftovers of a run that never completed an epoch (no checkpoint) are replaced. */
static Status create_run_dir(Run *r) {
    Status st = run_mkdir(r->dir);
    if (st == STATUS_OK) st = run_lock(r->dir, &r->lock);
    if (st != STATUS_OK) return st;
    /* Again under the lock: another run may have written its first checkpoint meanwhile. */
    if (access(r->ckpt, F_OK) == 0) return already_holds(r->dir);
    size_t n;
    char *text = config_text(&r->rc, &n);
    st = run_write_file(r->config, text, n);
    free(text);
    if (st == STATUS_OK) st = write_classes(r->dir, r->train);
    /* metrics.jsonl is appended to; ap.csv and curve.png would describe the earlier attempt. */
    remove(r->metrics);
    remove(r->apcsv);
    remove(r->curve);
    return st;
}

/* Resume: config.txt and metrics.jsonl as the checkpoint records them. metrics.jsonl holds
 * more lines after a kill between its append and the checkpoint's rename, other bytes when it
 * was damaged or edited; either way the checkpoint's record is the truth. */
static Status restore_files(Run *r) {
    Status st = STATUS_OK;
    if (!r->config_intact) {
        size_t n;
        char *text = config_text(&r->rc, &n);
        st = run_write_file(r->config, text, n);
        free(text);
        if (st != STATUS_OK) return st;
        run_log_printf(&r->log, "config.txt: rewritten from the checkpoint's configuration (it "
                                "lacked keys or was reformatted)\n");
    }
    uint8_t *have = NULL;
    size_t n = 0;
    /* Missing: rewritten below; unreadable: an error, not silently replaced. */
    if (access(r->metrics, F_OK) == 0 &&
        (st = xread_file(r->metrics, "metrics file", &have, &n)) != STATUS_OK)
        return st;
    const size_t want = strlen(r->history);
    if (!have || n != want || memcmp(have, r->history, want) != 0) {
        st = run_write_file(r->metrics, r->history, want);
        if (st == STATUS_OK)
            run_log_printf(&r->log,
                           "metrics.jsonl: reset to the %lld lines the checkpoint records (the "
                           "file %s)\n",
                           (long long)r->meta.history,
                           !have                                      ? "was missing"
                           : n > want && memcmp(have, r->history, want) == 0 ? "had lines written after it"
                                                                      : "held other bytes");
    }
    free(have);
    return st;
}

static Status open_run(Run *r, const RunConfig *rc, const TrainOptions *opt) {
    Status st = run_paths(r);
    if (st != STATUS_OK) return st;
    if (opt->resume) {
        st = resume_config(r);
    } else {
        r->rc = *rc;
        st = access(r->ckpt, F_OK) == 0 ? already_holds(r->dir) : run_config_validate(&r->rc);
    }
    if (st == STATUS_OK) st = open_inputs(r);
    if (st != STATUS_OK) return st;
    r->meta = (RunMeta){.method = r->rc.method, .n_classes = r->train->c, .stage = 1,
                        .best_map = -1};
    r->history = xcalloc(1, 1);
    if (opt->resume) {
        st = restore_checkpoint(r);
        if (st == STATUS_OK) st = check_counters(r, two_stage_run(&r->rc));
        run_checkpoint_close(&r->resume);
    } else if (dist_is_root()) { /* rank 0 writes the run directory (docs/distributed.md) */
        st = create_run_dir(r);
    }
    if (st == STATUS_OK && dist_is_root())
        st = run_log_open(&r->log, r->dir, opt->resume, opt->echo);
    if (st != STATUS_OK) return st;
    size_t n;
    char *text = config_text(&r->rc, &n);
    run_log_printf(&r->log, "# trmml train %s: %s\n%s", opt->resume ? "resumed" : "started", r->dir,
                   text);
    free(text);
    run_log_printf(&r->log, "mask %s\n", r->mask_line);
    run_log_printf(&r->log, "model method=%s classes=%lld learnable=%lld train=%lld test=%lld\n",
                   trmml_method_name(r->rc.method), (long long)r->model.C,
                   (long long)param_numel_trainable(r->model.ps), (long long)r->train->n,
                   (long long)r->test->n);
    if (opt->resume) {
        if (dist_is_root() && (st = restore_files(r)) != STATUS_OK) return st;
        run_log_printf(&r->log, "resume stage=%lld epoch=%lld step=%lld\n",
                       (long long)r->meta.stage, (long long)r->meta.epochs_done,
                       (long long)r->meta.step);
    }
    return STATUS_OK;
}

/* This epoch's order: a permutation of N drawn from (seed, stage, epoch) (owned). */
static int64_t *epoch_order(int64_t N, uint64_t seed, uint64_t stage, int64_t epoch) {
    int64_t *perm = xmalloc((size_t)N * sizeof *perm);
    Rng rng;
    rng_seed(&rng, trmml_seed_mix(seed, stage, (uint64_t)epoch, 0x5ef1e));
    for (int64_t i = 0; i < N; i++) perm[i] = i;
    for (int64_t i = N - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&rng) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return perm;
}

/* The step's log line: to the log file, and to a terminal as one updating line. */
static void log_step(Run *r, const TrainOptions *opt, const TrmmlStepStats *s, double lr,
                     int64_t it, int64_t iters, int64_t nb, double ms) {
    const int64_t epoch = r->meta.epochs_done;
    char line[512];
    int n = snprintf(line, sizeof line,
                     "step=%lld stage=%lld epoch=%lld loss=%.6f lr=%.6g "
                     "grad_norm=%.4g ms=%.1f img/s=%.1f",
                     (long long)r->meta.step, (long long)r->meta.stage, (long long)epoch + 1,
                     s->loss, lr, s->grad_norm, ms, 1e3 * (double)nb / ms);
    if (dist_size() > 1 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " allreduce_ms=%.1f",
                      1e3 * s->sec_allreduce);
    if (r->model.ops->step_log && (size_t)n < sizeof line)
        r->model.ops->step_log(s, line + n, sizeof line - (size_t)n);
    if (!opt->progress_bar) {
        run_log_printf(&r->log, "%s\n", line);
        return;
    }
    /* A terminal gets one updating line; the log file gets every line. */
    fprintf(opt->echo, "\r[stage %lld epoch %lld/%lld] %lld/%lld loss %.4f  %.1f img/s ",
            (long long)r->meta.stage, (long long)epoch + 1, (long long)r->rc.tc.epochs,
            (long long)it + 1, (long long)iters, s->loss, 1e3 * (double)nb / ms);
    fflush(opt->echo);
    FILE *e = r->log.echo;
    r->log.echo = NULL;
    run_log_printf(&r->log, "%s\n", line);
    r->log.echo = e;
}

/* lr and beta1 (momentum) of the next step: OneCycle per step for AdamW, the method's own
 * schedule per epoch for SGD. */
static void step_lr(const Run *r, int64_t iters, double *lr, double *beta1) {
    const TrmmlConfig *tc = &r->rc.tc;
    if (!r->opt->adamw) {
        r->model.ops->schedule(&r->rc, r->meta.epochs_done, lr, beta1);
        return;
    }
    OneCycle oc = schedule_onecycle_default(tc->lr, tc->epochs * iters);
    oc.pct_start = tc->pct_start;
    oc.div_factor = tc->div_factor;
    oc.final_div_factor = tc->final_div_factor;
    oc.base_momentum = tc->beta1_min;
    oc.max_momentum = tc->beta1_max;
    schedule_onecycle(&oc, r->meta.step, lr, beta1);
}

/* One optimizer step on items perm[0..nb): dense features (under MPI, of this rank's share
 * [lo, hi) of the batch), observed labels, the step; an error naming the step when its loss is
 * not finite. */
static Status run_step(Run *r, const int64_t *perm, int64_t nb, bool phase_on,
                       TrmmlStepStats *s) {
    const uint64_t seed = (uint64_t)r->rc.tc.seed, stage = (uint64_t)r->meta.stage;
    const int64_t C = r->model.C;
    int64_t lo, hi;
    dist_share(nb, dist_rank(), &lo, &hi);
    Tensor *dense = NULL;
    Status st = STATUS_OK;
    if (hi > lo)
        st = r->src_train.dense(&r->src_train, perm + lo, hi - lo, lo,
                                trmml_seed_mix(seed, stage, (uint64_t)r->meta.step, 1), &dense);
    else /* a rank with no image in this (last, short) batch still takes part in the step */
        dense = tensor_empty(DT_F32, 3, SHAPE(0, r->src_train.tokens, r->src_train.dim));
    if ((st = dist_agree(st)) != STATUS_OK) {
        tensor_step_end();
        return st;
    }
    float *Y = xmalloc(sizeof(float) * (size_t)(nb * C));
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < C; c++) Y[b * C + c] = r->mask[perm[b] * C + c];
    Tensor *y = tensor_from_f32(2, SHAPE(nb, C), Y);
    free(Y);
    bool ok = trmml_train_step_rows(&r->model, r->opt, dense, y, lo, phase_on,
                                    trmml_seed_mix(seed, stage, (uint64_t)r->meta.step, 2), s);
    tensor_step_end();
    if (ok) return STATUS_OK;
    return error_set(STATUS_ERR_FORMAT,
                     "step %lld (stage %lld, epoch %lld): the loss is not "
                     "finite (%g); stopped, the last checkpoint (%lld completed epochs) is kept",
                     (long long)r->meta.step + 1, (long long)r->meta.stage,
                     (long long)r->meta.epochs_done + 1, s->loss, (long long)r->meta.epochs_done);
}

/* One epoch of the current stage. */
static Status run_epoch(Run *r, const TrainOptions *opt, bool phase_on, int64_t iters) {
    const int64_t N = r->train->n, B = r->rc.tc.batch_size;
    int64_t *perm = epoch_order(N, (uint64_t)r->rc.tc.seed, (uint64_t)r->meta.stage,
                                r->meta.epochs_done);
    double loss_sum = 0, t_epoch = time_now_s();
    Status st = STATUS_OK;
    for (int64_t it = 0; it < iters && st == STATUS_OK; it++) {
        const int64_t b0 = it * B, nb = N - b0 < B ? N - b0 : B;
        double lr, beta1;
        step_lr(r, iters, &lr, &beta1);
        trmml_optim_set(r->opt, lr, beta1);
        double t0 = time_now_s();
        TrmmlStepStats s;
        st = run_step(r, perm + b0, nb, phase_on, &s);
        if (st != STATUS_OK) break;
        r->meta.step++;
        loss_sum += s.loss;
        log_step(r, opt, &s, lr, it, iters, nb, 1e3 * (time_now_s() - t0));
    }
    if (opt->progress_bar) fputc('\n', opt->echo);
    free(perm);
    if (st == STATUS_OK)
        run_log_printf(&r->log, "epoch stage=%lld epoch=%lld loss=%.6f s=%.1f\n",
                       (long long)r->meta.stage, (long long)r->meta.epochs_done + 1,
                       loss_sum / (double)iters, time_now_s() - t_epoch);
    r->last_loss = loss_sum / (double)iters;
    return st;
}

/* Before each epoch: the stage boundary (DECISION 19: the method's changes, a fresh optimizer,
 * the counters of stage 2), then whether the run is finished and whether the method's
 * batch-level phase is on. Returns false when every epoch is done. */
static bool begin_epoch(Run *r, bool two_stage, bool *phase_on) {
    const TrmmlConfig *tc = &r->rc.tc;
    const TrmmlMethodOps *ops = r->model.ops;
    char note[256] = "";
    if (two_stage && r->meta.stage == 1 && r->meta.epochs_done == tc->epochs) {
        ops->begin_stage2(&r->model, note, sizeof note);
        trmml_optim_reset(r->opt);
        r->meta.stage = 2;
        r->meta.epochs_done = r->meta.step = 0;
        r->meta.best_epoch = 0;
        r->meta.best_map = -1;
        run_log_printf(&r->log, "%s\n", note);
        note[0] = 0;
    }
    if (r->meta.epochs_done == tc->epochs) {
        r->meta.finished = 1;
        return false;
    }
    *phase_on = ops->phase && ops->phase(&r->model, r->meta.stage, r->meta.epochs_done, note,
                                         sizeof note);
    if (note[0]) run_log_printf(&r->log, "%s\n", note);
    return true;
}

/* After an epoch: the evaluation when due, metrics.jsonl and the curve, the checkpoint. */
static Status end_epoch(Run *r, bool last) {
    const TrmmlConfig *tc = &r->rc.tc;
    char *json = NULL;
    double map = NAN;
    Status st = STATUS_OK;
    if (tc->eval_every > 0 && (r->meta.epochs_done % tc->eval_every == 0 || last)) {
        st = dist_agree(run_eval(r, &json, &map));
        if (st != STATUS_OK) return st;
        if (map > r->meta.best_map) {
            r->meta.best_map = map;
            r->meta.best_epoch = r->meta.global_epochs;
        }
    }
    size_t n;
    char *line = run_metrics_line(&r->meta, r->last_loss, json, &n);
    free(json);
    /* Rank 0 writes the run directory; its failure is every rank's. */
    if (dist_is_root()) st = append_line(r->metrics, line);
    if (st == STATUS_OK && dist_is_root()) st = run_write_curve(r->metrics, r->curve);
    if ((st = dist_agree(st)) != STATUS_OK) {
        free(line);
        return st;
    }
    /* The checkpoint's record of metrics.jsonl grows with the file. */
    const size_t have = strlen(r->history);
    r->history = xrealloc(r->history, have + n + 1);
    memcpy(r->history + have, line, n + 1);
    free(line);
    r->meta.history++;
    if (last) r->meta.finished = 1;
    return dist_agree(dist_is_root() ? save_checkpoint(r) : STATUS_OK);
}

/* The last line of the log: stopped, done, or the error (which stays the last error). */
static void final_log(Run *r, Status st, int64_t ran) {
    if (st == STATUS_OK && !r->meta.finished) {
        run_log_printf(&r->log,
                       "stopped after %lld epochs of this invocation (resume with --resume)\n",
                       (long long)ran);
    } else if (st == STATUS_OK) {
        if (r->meta.best_epoch > 0)
            run_log_printf(&r->log,
                           "done epochs=%lld best_epoch=%lld best_mAP=%.2f (the checkpoint "
                           "keeps the last epoch, DECISION 21)\n",
                           (long long)r->meta.global_epochs, (long long)r->meta.best_epoch,
                           r->meta.best_map);
        else
            run_log_printf(&r->log, "done epochs=%lld\n", (long long)r->meta.global_epochs);
    } else if (r->log.file) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error_last());
        run_log_printf(&r->log, "error: %s\n", msg);
        error_set(st, "%s", msg);
    }
}

Status trmml_train_run(const RunConfig *rc, const char *out_dir, const TrainOptions *opt_in) {
    CHECK(rc || opt_in->resume, "trmml_train_run: a fresh run needs its configuration");
    /* Under MPI rank 0 alone prints (and writes, below). */
    TrainOptions quiet = *opt_in;
    if (!dist_is_root()) quiet.echo = NULL, quiet.progress_bar = false;
    const TrainOptions *opt = &quiet;
    Run r;
    memset(&r, 0, sizeof r);
    r.lock.fd = -1;
    r.dir = out_dir;
    Status st = dist_agree(open_run(&r, rc, opt));
    const bool two_stage = st == STATUS_OK && two_stage_run(&r.rc);
    int64_t ran = 0;
    bool phase_on = false;
    while (st == STATUS_OK && !r.meta.finished &&
           !(opt->stop_after > 0 && ran == opt->stop_after)) {
        if (!begin_epoch(&r, two_stage, &phase_on)) break;
        st = run_epoch(&r, opt, phase_on, r.iters);
        if (st != STATUS_OK) break;
        r.meta.epochs_done++;
        r.meta.global_epochs++;
        const bool last =
            r.meta.epochs_done == r.rc.tc.epochs && (!two_stage || r.meta.stage == 2);
        st = end_epoch(&r, last);
        ran++;
    }
    final_log(&r, st, ran);
    run_close(&r);
    return st;
}
