/* model.c — CLIP from a state dict: architecture inference (SPEC §1.4), the §1.3 key list, the
 * key/shape check, and the build of the compute ParamStore (f32, BatchNorm folded).
 *
 * The state dict comes from an untrusted file, so everything about it is checked before use and
 * reported as a Status naming the key; once clip_state_dict_check has passed, the towers read
 * it without further checks. */
#include "clip/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/convert.h"
#include "tensor/device.h"

/* ---- configurations ----------------------------------------------------------------------- */

static ClipConfig config_released(int64_t layer3, int64_t E) {
    ClipConfig c = {
        .vision = {.layers = {3, 4, layer3, 3}, .width = 64, .channels = 2048, .heads = 32,
                   .grid = 7, .embed_dim = E},
        .text = {.width = 512, .layers = 12, .heads = 8, .context = 77, .vocab = 49408,
                 .embed_dim = E},
        .embed_dim = E,
    };
    return c;
}

ClipConfig clip_config_rn50(void) { return config_released(6, 1024); }
ClipConfig clip_config_rn101(void) { return config_released(23, 512); }

/* ---- the §1.3 key list -------------------------------------------------------------------- */

typedef struct {
    ClipKeyFn fn;
    void *ctx;
} KeySink;

static void emit(KeySink *k, const char *name, DType dt, int ndim, const int64_t *shape) {
    k->fn(k->ctx, name, dt, ndim, shape);
}

/* A convolution (f16 in the released files) and the BatchNorm after it (f32, counter i64). */
static void emit_conv_bn(KeySink *k, const char *conv, const char *bn, int64_t cout, int64_t cin,
                         int64_t ks) {
    char name[160];
    snprintf(name, sizeof name, "%s.weight", conv);
    emit(k, name, DT_F16, 4, SHAPE(cout, cin, ks, ks));
    static const char *stats[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", bn, stats[i]);
        emit(k, name, DT_F32, 1, SHAPE(cout));
    }
    snprintf(name, sizeof name, "%s.num_batches_tracked", bn);
    emit(k, name, DT_I64, 0, NULL);
}

static void emit_linear(KeySink *k, const char *prefix, int64_t out, int64_t in) {
    char name[192];
    snprintf(name, sizeof name, "%s.weight", prefix);
    emit(k, name, DT_F16, 2, SHAPE(out, in));
    snprintf(name, sizeof name, "%s.bias", prefix);
    emit(k, name, DT_F16, 1, SHAPE(out));
}

void clip_state_dict_foreach(const ClipConfig *cfg, ClipKeyFn fn, void *ctx) {
    KeySink k = {fn, ctx};
    const ClipResNetConfig *v = &cfg->vision;
    const ClipTextConfig *t = &cfg->text;
    const int64_t w = v->width, C = v->channels, W = t->width;
    /* CLIP's own parameters come first in its state dict, then visual, transformer, ... */
    emit(&k, "positional_embedding", DT_F32, 2, SHAPE(t->context, W));
    emit(&k, "text_projection", DT_F16, 2, SHAPE(W, cfg->embed_dim));
    emit(&k, "logit_scale", DT_F32, 0, NULL);

    emit_conv_bn(&k, "visual.conv1", "visual.bn1", w / 2, 3, 3);
    emit_conv_bn(&k, "visual.conv2", "visual.bn2", w / 2, w / 2, 3);
    emit_conv_bn(&k, "visual.conv3", "visual.bn3", w, w / 2, 3);
    int64_t inC = w;
    for (int L = 0; L < 4; L++) {
        const int64_t planes = w << L;
        for (int64_t b = 0; b < v->layers[L]; b++) {
            char conv[128], bn[128];
            static const int ks[3] = {1, 3, 1};
            const int64_t cin[3] = {inC, planes, planes}, cout[3] = {planes, planes, 4 * planes};
            for (int i = 0; i < 3; i++) {
                snprintf(conv, sizeof conv, "visual.layer%d.%lld.conv%d", L + 1, (long long)b, i + 1);
                snprintf(bn, sizeof bn, "visual.layer%d.%lld.bn%d", L + 1, (long long)b, i + 1);
                emit_conv_bn(&k, conv, bn, cout[i], cin[i], ks[i]);
            }
            if ((L > 0 && b == 0) || inC != 4 * planes) {
                snprintf(conv, sizeof conv, "visual.layer%d.%lld.downsample.0", L + 1, (long long)b);
                snprintf(bn, sizeof bn, "visual.layer%d.%lld.downsample.1", L + 1, (long long)b);
                emit_conv_bn(&k, conv, bn, 4 * planes, inC, 1);
            }
            inC = 4 * planes;
        }
    }
    emit(&k, "visual.attnpool.positional_embedding", DT_F32, 2, SHAPE(v->grid * v->grid + 1, C));
    emit_linear(&k, "visual.attnpool.k_proj", C, C);
    emit_linear(&k, "visual.attnpool.q_proj", C, C);
    emit_linear(&k, "visual.attnpool.v_proj", C, C);
    emit_linear(&k, "visual.attnpool.c_proj", v->embed_dim, C);

    for (int64_t i = 0; i < t->layers; i++) {
        char pre[96], name[160];
        snprintf(pre, sizeof pre, "transformer.resblocks.%lld", (long long)i);
        snprintf(name, sizeof name, "%s.attn.in_proj_weight", pre);
        emit(&k, name, DT_F16, 2, SHAPE(3 * W, W));
        snprintf(name, sizeof name, "%s.attn.in_proj_bias", pre);
        emit(&k, name, DT_F16, 1, SHAPE(3 * W));
        snprintf(name, sizeof name, "%s.attn.out_proj", pre);
        emit_linear(&k, name, W, W);
        snprintf(name, sizeof name, "%s.ln_1.weight", pre);
        emit(&k, name, DT_F32, 1, SHAPE(W));
        snprintf(name, sizeof name, "%s.ln_1.bias", pre);
        emit(&k, name, DT_F32, 1, SHAPE(W));
        snprintf(name, sizeof name, "%s.mlp.c_fc", pre);
        emit_linear(&k, name, 4 * W, W);
        snprintf(name, sizeof name, "%s.mlp.c_proj", pre);
        emit_linear(&k, name, W, 4 * W);
        snprintf(name, sizeof name, "%s.ln_2.weight", pre);
        emit(&k, name, DT_F32, 1, SHAPE(W));
        snprintf(name, sizeof name, "%s.ln_2.bias", pre);
        emit(&k, name, DT_F32, 1, SHAPE(W));
    }
    emit(&k, "token_embedding.weight", DT_F32, 2, SHAPE(t->vocab, W));
    emit(&k, "ln_final.weight", DT_F32, 1, SHAPE(W));
    emit(&k, "ln_final.bias", DT_F32, 1, SHAPE(W));
}

static void declare_key(void *ctx, const char *name, DType dt, int ndim, const int64_t *shape) {
    param_add(ctx, name, dt, ndim, shape, false);
}

void clip_state_dict_declare(ParamStore *ps, const ClipConfig *cfg) {
    clip_state_dict_foreach(cfg, declare_key, ps);
}

/* ---- checking a state dict ---------------------------------------------------------------- */

static const char *shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

typedef struct {
    const ParamStore *sd;
    Status status;
} CheckCtx;

static bool is_float(DType dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16; }

static void check_key(void *ctx, const char *name, DType dt, int ndim, const int64_t *shape) {
    CheckCtx *c = ctx;
    if (c->status != STATUS_OK || dt == DT_I64) return; /* BN counters are never read */
    char want[96], got[96];
    const Tensor *t = param_find(c->sd, name);
    if (!t) {
        c->status = error_set(STATUS_ERR_FORMAT, "state dict: missing '%s' (expected shape %s)",
                              name, shape_text(want, sizeof want, ndim, shape));
        return;
    }
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        c->status = error_set(STATUS_ERR_FORMAT, "state dict: '%s' has shape %s, expected %s",
                              name, shape_text(got, sizeof got, t->ndim, t->shape),
                              shape_text(want, sizeof want, ndim, shape));
        return;
    }
    if (!is_float(t->dtype))
        c->status = error_set(STATUS_ERR_FORMAT,
                              "state dict: '%s' is %s, expected float32, float16 or bfloat16",
                              name, dtype_name(t->dtype));
}

Status clip_state_dict_check(const ParamStore *sd, const ClipConfig *cfg) {
    CheckCtx c = {sd, STATUS_OK};
    clip_state_dict_foreach(cfg, check_key, &c);
    return c.status;
}

/* ---- inference (SPEC §1.4) ---------------------------------------------------------------- */

/* The tensor `name` with `ndim` dims, or a format error naming it. */
static Status need(const ParamStore *sd, const char *name, int ndim, const Tensor **out) {
    *out = param_find(sd, name);
    if (!*out) return error_set(STATUS_ERR_FORMAT, "state dict: missing '%s'", name);
    if ((*out)->ndim != ndim) {
        char got[96];
        return error_set(STATUS_ERR_FORMAT, "state dict: '%s' has shape %s, expected %d dims",
                         name, shape_text(got, sizeof got, (*out)->ndim, (*out)->shape), ndim);
    }
    return STATUS_OK;
}

/* Number of blocks under `prefix` (e.g. "visual.layer2."): one more than the largest block
 * index found, so that a gap shows up as a missing key in clip_state_dict_check. */
static int64_t count_blocks(const ParamStore *sd, const char *prefix) {
    size_t n = strlen(prefix);
    int64_t count = 0;
    for (int i = 0; i < param_count(sd); i++) {
        const char *name = param_at(sd, i)->name;
        if (strncmp(name, prefix, n) != 0) continue;
        char *end;
        long long b = strtoll(name + n, &end, 10);
        if (end != name + n && *end == '.' && b >= 0 && b < 100000 && b + 1 > count) count = b + 1;
    }
    return count;
}

Status clip_config_infer(const ParamStore *sd, ClipConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (param_find(sd, "visual.proj"))
        return error_set(STATUS_ERR_FORMAT, "state dict: 'visual.proj' present: a vision "
                         "transformer (ViT) model; only the ResNet models are supported");
    ClipResNetConfig *v = &cfg->vision;
    ClipTextConfig *t = &cfg->text;
    for (int L = 0; L < 4; L++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "visual.layer%d.", L + 1);
        v->layers[L] = count_blocks(sd, prefix);
        if (v->layers[L] == 0)
            return error_set(STATUS_ERR_FORMAT, "state dict: no keys under 'visual.layer%d.' "
                             "(not a CLIP ResNet state dict?)", L + 1);
    }
    const Tensor *x;
    Status st;
    if ((st = need(sd, "visual.layer1.0.conv1.weight", 4, &x))) return st;
    v->width = x->shape[0];
    if (v->width < 2 || v->width % 2)
        return error_set(STATUS_ERR_FORMAT, "state dict: 'visual.layer1.0.conv1.weight' gives "
                         "vision width %lld, expected an even width", (long long)v->width);
    if ((st = need(sd, "visual.attnpool.positional_embedding", 2, &x))) return st;
    const int64_t rows = x->shape[0];
    v->grid = (int64_t)llround(sqrt((double)(rows > 1 ? rows - 1 : 0)));
    v->channels = x->shape[1];
    if (v->grid < 1 || v->grid * v->grid + 1 != rows)
        return error_set(STATUS_ERR_FORMAT, "state dict: 'visual.attnpool.positional_embedding' "
                         "has %lld rows, expected g*g + 1 for a g x g grid", (long long)rows);
    if (v->channels != 32 * v->width)
        return error_set(STATUS_ERR_FORMAT, "state dict: 'visual.attnpool.positional_embedding' "
                         "has %lld columns, expected 32 * width = %lld", (long long)v->channels,
                         (long long)(32 * v->width));
    v->heads = v->channels / 64 > 0 ? v->channels / 64 : 1;
    if ((st = need(sd, "visual.attnpool.c_proj.weight", 2, &x))) return st;
    v->embed_dim = x->shape[0];

    if ((st = need(sd, "text_projection", 2, &x))) return st;
    cfg->embed_dim = t->embed_dim = x->shape[1];
    if (cfg->embed_dim != v->embed_dim)
        return error_set(STATUS_ERR_FORMAT, "state dict: 'text_projection' gives embedding width "
                         "%lld but 'visual.attnpool.c_proj.weight' %lld", (long long)cfg->embed_dim,
                         (long long)v->embed_dim);
    if ((st = need(sd, "positional_embedding", 2, &x))) return st;
    t->context = x->shape[0];
    if ((st = need(sd, "token_embedding.weight", 2, &x))) return st;
    t->vocab = x->shape[0];
    if ((st = need(sd, "ln_final.weight", 1, &x))) return st;
    t->width = x->shape[0];
    t->heads = t->width % 64 == 0 ? t->width / 64 : 0;
    t->layers = count_blocks(sd, "transformer.resblocks.");
    if (t->layers == 0)
        return error_set(STATUS_ERR_FORMAT, "state dict: no keys under 'transformer.resblocks.'");
    if (t->context < 1 || t->vocab < 1 || t->width < 1)
        return error_set(STATUS_ERR_FORMAT, "state dict: empty text tower (context %lld, vocab "
                         "%lld, width %lld)", (long long)t->context, (long long)t->vocab,
                         (long long)t->width);
    return STATUS_OK;
}

/* ---- building the model ------------------------------------------------------------------- */

Tensor *clip_sd_f32(const ParamStore *sd, const char *name) {
    const Tensor *src = param_find(sd, name);
    CHECK(src, "clip: state dict lacks '%s' after clip_state_dict_check", name);
    if (src->device == arena_device(tensor_arena())) return tensor_to_f32(src);
    /* A state dict on the host, the model on a device: upload as stored, convert there. */
    Tensor *up = tensor_empty(src->dtype, src->ndim, src->shape);
    tensor_copy(up, src);
    return tensor_to_f32(up);
}

void clip_load_f32(Tensor *dst, const ParamStore *sd, const char *name) {
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    Tensor *src = clip_sd_f32(sd, name);
    CHECK(dst->dtype == DT_F32 && tensor_same_shape(dst, src) && dst->device == src->device,
          "clip: '%s' %s %s does not fit %s %s", name, dtype_name(src->dtype),
          tensor_shape_str(src), dtype_name(dst->dtype), tensor_shape_str(dst));
    device_table(dst->device)->copy_d2d(dst->data, src->data, (size_t)dst->numel * sizeof(float));
    arena_release(a, mark);
}

static Status check_config(const ClipConfig *c) {
    const ClipResNetConfig *v = &c->vision;
    const ClipTextConfig *t = &c->text;
    if (t->heads < 1 || t->width % t->heads)
        return error_set(STATUS_ERR_USAGE, "clip: text width %lld cannot be split into %lld heads "
                         "(the state dict fixes width / 64; set ClipConfig.text.heads)",
                         (long long)t->width, (long long)t->heads);
    if (v->heads < 1 || v->channels % v->heads)
        return error_set(STATUS_ERR_USAGE, "clip: attention-pool width %lld cannot be split into "
                         "%lld heads", (long long)v->channels, (long long)v->heads);
    if (v->embed_dim != c->embed_dim || t->embed_dim != c->embed_dim)
        return error_set(STATUS_ERR_USAGE, "clip: embedding widths differ (vision %lld, text "
                         "%lld, model %lld)", (long long)v->embed_dim, (long long)t->embed_dim,
                         (long long)c->embed_dim);
    return STATUS_OK;
}

Status clip_model_load(ClipModel **out, const ParamStore *sd, const ClipConfig *cfg) {
    *out = NULL;
    CHECK(sd && param_count(sd) > 0, "clip_model_load: empty state dict");
    ClipConfig c;
    Status st;
    if (cfg) c = *cfg;
    else if ((st = clip_config_infer(sd, &c))) return st;
    if ((st = check_config(&c))) return st;
    if ((st = clip_state_dict_check(sd, &c))) return st;

    /* The model lives where the current arena does; the state dict may be on the host. */
    const DeviceKind dev = arena_device(tensor_arena());
    ClipModel *m = xcalloc(1, sizeof *m);
    m->cfg = c;
    m->params = param_store_create(dev, "clip");
    clip_resnet_declare(&m->visual, &c.vision, m->params);
    clip_text_declare(&m->text, &c.text, m->params);
    m->logit_scale = param_add(m->params, "logit_scale", DT_F32, 0, NULL, false);
    param_store_finalize(m->params);
    clip_resnet_fill(&m->visual, sd);
    clip_text_fill(&m->text, sd);
    clip_load_f32(m->logit_scale, sd, "logit_scale");
    m->work = arena_create(dev, "clip work", 0);
    m->visual.work = m->text.work = m->work;
    *out = m;
    return STATUS_OK;
}

void clip_model_free(ClipModel *m) {
    if (!m) return;
    clip_resnet_free(&m->visual);
    clip_text_free(&m->text);
    param_store_destroy(m->params);
    arena_destroy(m->work);
    free(m);
}

void clip_encode_image(const ClipModel *m, Tensor *images, Tensor **embedding, Tensor **dense) {
    clip_resnet_encode(&m->visual, images, embedding, dense);
}

Tensor *clip_encode_text(const ClipModel *m, Tensor *ids) {
    return clip_text_encode_ids(&m->text, ids);
}

Tensor *clip_encode_text_embedded(const ClipModel *m, Tensor *x, Tensor *eot) {
    return clip_text_encode_embedded(&m->text, x, eot);
}

/* ---- work scopes -------------------------------------------------------------------------- */

ClipWorkScope clip_work_begin(Arena *work, size_t out_mark) {
    ClipWorkScope s = {.out = tensor_arena(), .work = work, .out_mark = out_mark,
                       .work_mark = arena_mark(work)};
    CHECK(s.out != work, "clip_work_begin: the work arena is already current");
    CHECK(arena_device(s.out) == arena_device(work), "clip_work_begin: arenas on %s and %s",
          device_name(arena_device(s.out)), device_name(arena_device(work)));
    CHECK(out_mark <= arena_mark(s.out), "clip_work_begin: mark %zu beyond the arena's %zu",
          out_mark, arena_mark(s.out));
    tensor_set_arena(work);
    return s;
}

void clip_work_end(const ClipWorkScope *s, Tensor **t, int n) {
    CHECK(tensor_arena() == s->work, "clip_work_end: the work arena is no longer current");
    tensor_set_arena(s->out);
    /* The previous results (between out_mark and here) are dead: the unit has consumed them. */
    arena_release(s->out, s->out_mark);
    for (int i = 0; i < n; i++) {
        Tensor *src = t[i];
        CHECK(!src->node, "clip_work_end: a result with a tape node cannot be moved");
        Tensor *dst = tensor_empty(src->dtype, src->ndim, src->shape);
        device_table(dst->device)->copy_d2d(dst->data, src->data,
                                            (size_t)src->numel * dtype_size(src->dtype));
        t[i] = dst;
    }
    arena_release(s->work, s->work_mark);
}
