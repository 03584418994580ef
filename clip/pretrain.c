/* pretrain.c — contrastive pretraining of a small CLIP (issue 6; docs/pretraining.md).
 *
 * Image tower in training mode, per Bottleneck (OpenAI's ModifiedResNet, unfolded):
 *   out = ReLU(BN1(conv1 x)); out = ReLU(BN2(conv2 out)); out = avgpool_s(out); out = BN3(conv3 out)
 *   identity = BN(conv(avgpool_s(x))) for block 0 of a stage (or a width change), else x
 *   y = ReLU(out + identity)
 * stem: three conv3x3+BN+ReLU (the first with stride 2), avgpool 2; then the attention pool of
 * clip/resnet.c on the native grid. Text tower: clip/text.c's taped path over trainable weights.
 *
 * Loss (CLIP): I = normalise(image embeddings), T = normalise(caption embeddings), both (B, E);
 *   logits = exp(ls) * I T^T   (B, B), pair i on the diagonal
 *   L = (CE(logits, arange) + CE(logits^T, arange)) / 2
 * ls is clamped to ln 100 after every step, as OpenAI's training code does.
 *
 * Initialisation follows CLIP's initialize_parameters (model.py): token embedding N(0, 0.02²),
 * positional embedding N(0, 0.01²), attention-pool projections N(0, 1/C), bn3 weights of every
 * Bottleneck zero (each block starts as its identity path), transformer weights with
 * attn_std = width^-1/2, proj_std = width^-1/2 (2 layers)^-1/2, fc_std = (2 width)^-1/2, text
 * projection N(0, 1/width), logit scale ln(1/0.07); convolutions and other linear layers as
 * torch's defaults (kaiming-uniform: U(±1/sqrt(fan_in)) for weights and biases). */
#include "clip/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "clip/preprocess.h"
#include "tensor/device.h"
#include "tensor/image.h"
#include "tensor/resample.h"
#include "clip/safetensors.h"
#include "nn/schedule.h"
#include "tensor/keys.h"
#include "tensor/ops/batchnorm.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/index.h"
#include "tensor/ops/loss.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/pool.h"
#include "tensor/ops/shape.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f
#define LOGIT_SCALE_MAX 4.6051702f /* ln 100 */

/* ---- configuration ------------------------------------------------------------------------ */

ClipPretrainConfig clip_pretrain_default_config(void) {
    ClipPretrainConfig c = {0};
    c.clip.vision = (ClipResNetConfig){.layers = {1, 1, 1, 1}, .width = 32};
    c.clip.text = (ClipTextConfig){.width = 128, .layers = 4, .heads = 2, .context = 77,
                                   .vocab = 49408};
    c.clip.embed_dim = 128;
    c.input_size = 64;
    c.batch = 128;
    c.steps = 300;
    c.warmup = 100;
    c.lr = 2e-3;
    c.min_lr = 2e-5;
    c.weight_decay = 0.1;
    c.beta1 = 0.9;
    c.beta2 = 0.98;
    c.eps = 1e-6;
    c.grad_clip = 1.0;
    c.shift = 4;
    c.seed = 0;
    c.log_every = 25;
    return c;
}

Status clip_pretrain_config_validate(ClipPretrainConfig *c) {
    ClipResNetConfig *v = &c->clip.vision;
    ClipTextConfig *t = &c->clip.text;
#define REQUIRE(cond, ...) \
    if (!(cond)) return error_set(STATUS_ERR_USAGE, "pretrain config: " __VA_ARGS__)
    REQUIRE(v->width >= 2 && v->width % 2 == 0 && v->width <= 1024,
            "vision_width = %lld: expected an even number in [2, 1024]", (long long)v->width);
    for (int i = 0; i < 4; i++)
        REQUIRE(v->layers[i] >= 1 && v->layers[i] <= 64,
                "vision_layers[%d] = %lld: expected 1..64", i, (long long)v->layers[i]);
    REQUIRE(c->input_size >= 32 && c->input_size % 32 == 0 && c->input_size <= 1024,
            "input_size = %lld: expected a multiple of 32 in [32, 1024]", (long long)c->input_size);
    REQUIRE(t->width >= 8 && t->width <= 4096, "text_width = %lld: expected 8..4096",
            (long long)t->width);
    REQUIRE(t->heads >= 1 && t->width % t->heads == 0,
            "text_heads = %lld: expected a divisor of text_width %lld", (long long)t->heads,
            (long long)t->width);
    REQUIRE(t->layers >= 1 && t->layers <= 64, "text_layers = %lld: expected 1..64",
            (long long)t->layers);
    /* The tokenizer's vocabulary and context (tests use smaller ones; no config key sets them). */
    REQUIRE(t->vocab >= 2 && t->context >= 2 && t->context <= 77, "text vocab %lld, context %lld",
            (long long)t->vocab, (long long)t->context);
    REQUIRE(c->clip.embed_dim >= 1 && c->clip.embed_dim <= 4096,
            "embed_dim = %lld: expected 1..4096", (long long)c->clip.embed_dim);
    REQUIRE(c->batch >= 2 && c->batch <= 65536, "batch = %lld: expected 2..65536",
            (long long)c->batch);
    REQUIRE(c->steps >= 1, "steps = %lld: expected >= 1", (long long)c->steps);
    REQUIRE(c->warmup >= 0 && c->warmup < c->steps, "warmup = %lld: expected 0..steps-1",
            (long long)c->warmup);
    REQUIRE(c->lr > 0 && c->lr < 1, "lr = %g: expected (0, 1)", c->lr);
    REQUIRE(c->min_lr >= 0 && c->min_lr <= c->lr, "min_lr = %g: expected [0, lr]", c->min_lr);
    REQUIRE(c->weight_decay >= 0 && c->weight_decay < 10, "weight_decay = %g: expected [0, 10)",
            c->weight_decay);
    REQUIRE(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1,
            "beta1, beta2 = %g, %g: expected [0, 1)", c->beta1, c->beta2);
    REQUIRE(c->eps > 0, "eps = %g: expected > 0", c->eps);
    REQUIRE(c->grad_clip >= 0, "grad_clip = %g: expected >= 0", c->grad_clip);
    REQUIRE(c->shift >= 0 && c->shift < c->input_size / 2, "shift = %lld: expected [0, %lld)",
            (long long)c->shift, (long long)(c->input_size / 2));
    REQUIRE(c->log_every >= 1, "log_every = %lld: expected >= 1", (long long)c->log_every);
#undef REQUIRE
    /* The released models' rules (SPEC §1.4): C = 32 w, head size 64 in the pool (w >= 2, so at
     * least one head), the native grid is the training side / 32. */
    v->channels = 32 * v->width;
    v->heads = v->channels / 64;
    v->grid = c->input_size / 32;
    v->embed_dim = c->clip.embed_dim;
    t->embed_dim = c->clip.embed_dim;
    return STATUS_OK;
}

/* The configuration file's keys (tensor/keys.h); the ranges are wide: the checks that relate
 * fields to each other are clip_pretrain_config_validate's. */
#define T ClipPretrainConfig
#define LO -9007199254740992.0
#define HI 9007199254740992.0
static const KeySpec PRETRAIN_KEYS[] = {
    KEY_INT(T, "vision_width", clip.vision.width, LO, HI, "ResNet width w (C = 32 w), SPEC 1.4"),
    KEY_INT_LIST(T, "vision_layers", clip.vision.layers, LO, HI, "Bottlenecks per stage"),
    KEY_INT(T, "text_width", clip.text.width, LO, HI, "text transformer width"),
    KEY_INT(T, "text_layers", clip.text.layers, LO, HI, "text transformer blocks"),
    KEY_INT(T, "text_heads", clip.text.heads, LO, HI, "text attention heads"),
    KEY_INT(T, "embed_dim", clip.embed_dim, LO, HI, "joint embedding width E"),
    KEY_INT(T, "input_size", input_size, LO, HI, "square training side S, a multiple of 32"),
    KEY_INT(T, "batch", batch, LO, HI, "image-caption pairs per step (the InfoNCE batch)"),
    KEY_INT(T, "steps", steps, LO, HI, "optimizer steps"),
    KEY_INT(T, "warmup", warmup, LO, HI, "linear warm-up steps, then cosine decay"),
    KEY_INT(T, "shift", shift, LO, HI, "random translation, at most +-shift pixels"),
    KEY_DOUBLE(T, "lr", lr, -1e300, 1e300, "AdamW peak learning rate"),
    KEY_DOUBLE(T, "min_lr", min_lr, -1e300, 1e300, "end of the cosine decay"),
    KEY_DOUBLE(T, "weight_decay", weight_decay, -1e300, 1e300, "AdamW, matrices and kernels only"),
    KEY_DOUBLE(T, "beta1", beta1, -1e300, 1e300, "AdamW"),
    KEY_DOUBLE(T, "beta2", beta2, -1e300, 1e300, "AdamW"),
    KEY_DOUBLE(T, "eps", eps, -1e300, 1e300, "AdamW"),
    KEY_DOUBLE(T, "grad_clip", grad_clip, -1e300, 1e300, "global gradient-norm clip, 0 = off"),
    KEY_UINT64(T, "seed", seed, "initialisation, shuffling, augmentation"),
    KEY_INT(T, "log_every", log_every, LO, HI, "steps between progress lines"),
};
#undef LO
#undef HI
#undef T

Status clip_pretrain_config_load(const char *path, ClipPretrainConfig *cfg) {
    const KeyGroup g = {PRETRAIN_KEYS, KEY_COUNT(PRETRAIN_KEYS), cfg};
    Status st = keys_parse_file(&g, 1, path);
    return st != STATUS_OK ? st : clip_pretrain_config_validate(cfg);
}

void clip_pretrain_config_print(const ClipPretrainConfig *c, FILE *f) {
    keys_print(PRETRAIN_KEYS, KEY_COUNT(PRETRAIN_KEYS), c, f);
}

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct {
    Tensor *w;                 /* conv kernel (O, C, k, k), no bias */
    Tensor *g, *b;             /* BN weight, bias (O) */
    Tensor *rm, *rv;           /* BN running mean, variance (O): buffers */
    int64_t stride, pad;
} ConvBn;

typedef struct {
    ConvBn c1, c2, c3, down;   /* down.w NULL: identity shortcut */
    int64_t stride;
} Block;

struct ClipPretrain {
    ClipPretrainConfig cfg;
    ParamStore *ps;
    ConvBn stem[3];
    Block *blocks[4];
    ClipResNet pool;           /* only the attention pool's fields are bound */
    ClipText text;
    Tensor *logit_scale;       /* [] */
    Optimizer *opt;
    Arena *work;               /* the text tower's scratch for untaped use */
};

static void declare_key(void *ctx, const char *name, DType dt, int ndim, const int64_t *shape) {
    (void)dt;
    const bool counter = strstr(name, "num_batches_tracked") != NULL;
    const bool stat = strstr(name, "running_") != NULL;
    param_add(ctx, name, counter ? DT_I64 : DT_F32, ndim, shape, !counter && !stat);
}

static Tensor *get(const ClipPretrain *p, const char *name) {
    Tensor *t = param_find(p->ps, name);
    CHECK(t, "clip_pretrain: no tensor '%s'", name);
    return t;
}

static void bind_conv_bn(ClipPretrain *p, ConvBn *c, const char *conv, const char *bn,
                         int64_t stride) {
    char name[192];
    snprintf(name, sizeof name, "%s.weight", conv);
    c->w = get(p, name);
    snprintf(name, sizeof name, "%s.weight", bn);
    c->g = get(p, name);
    snprintf(name, sizeof name, "%s.bias", bn);
    c->b = get(p, name);
    snprintf(name, sizeof name, "%s.running_mean", bn);
    c->rm = get(p, name);
    snprintf(name, sizeof name, "%s.running_var", bn);
    c->rv = get(p, name);
    c->stride = stride;
    c->pad = c->w->shape[3] / 2;
}

static void bind(ClipPretrain *p) {
    bind_conv_bn(p, &p->stem[0], "visual.conv1", "visual.bn1", 2);
    bind_conv_bn(p, &p->stem[1], "visual.conv2", "visual.bn2", 1);
    bind_conv_bn(p, &p->stem[2], "visual.conv3", "visual.bn3", 1);
    const ClipResNetConfig *v = &p->cfg.clip.vision;
    for (int L = 0; L < 4; L++) {
        p->blocks[L] = xcalloc((size_t)v->layers[L], sizeof(Block));
        for (int64_t b = 0; b < v->layers[L]; b++) {
            Block *blk = &p->blocks[L][b];
            char pre[96], conv[128], bn[128];
            snprintf(pre, sizeof pre, "visual.layer%d.%lld", L + 1, (long long)b);
            blk->stride = (L > 0 && b == 0) ? 2 : 1;
            ConvBn *cs[3] = {&blk->c1, &blk->c2, &blk->c3};
            for (int i = 0; i < 3; i++) {
                snprintf(conv, sizeof conv, "%s.conv%d", pre, i + 1);
                snprintf(bn, sizeof bn, "%s.bn%d", pre, i + 1);
                bind_conv_bn(p, cs[i], conv, bn, 1);
            }
            snprintf(conv, sizeof conv, "%s.downsample.0.weight", pre);
            if (param_find(p->ps, conv)) {
                snprintf(conv, sizeof conv, "%s.downsample.0", pre);
                snprintf(bn, sizeof bn, "%s.downsample.1", pre);
                bind_conv_bn(p, &blk->down, conv, bn, 1);
            }
        }
    }
    ClipResNet *pool = &p->pool;
    pool->cfg = *v;
    pool->positional_embedding = get(p, "visual.attnpool.positional_embedding");
    pool->q_weight = get(p, "visual.attnpool.q_proj.weight");
    pool->q_bias = get(p, "visual.attnpool.q_proj.bias");
    pool->k_weight = get(p, "visual.attnpool.k_proj.weight");
    pool->k_bias = get(p, "visual.attnpool.k_proj.bias");
    pool->v_weight = get(p, "visual.attnpool.v_proj.weight");
    pool->v_bias = get(p, "visual.attnpool.v_proj.bias");
    pool->c_weight = get(p, "visual.attnpool.c_proj.weight");
    pool->c_bias = get(p, "visual.attnpool.c_proj.bias");
    clip_text_bind(&p->text, &p->cfg.clip.text, p->ps);
    p->text.work = p->work;
    p->logit_scale = get(p, "logit_scale");
}

/* ---- initialisation ----------------------------------------------------------------------- */

static void fill_normal(Rng *r, Tensor *t, float std) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    rng_fill_normal(r, h, t->numel, 0.0f, std);
    tensor_copy_from_host(t, h);
    free(h);
}

static void fill_uniform(Rng *r, Tensor *t, float bound) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    rng_fill_uniform(r, h, t->numel, -bound, bound);
    tensor_copy_from_host(t, h);
    free(h);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* CLIP's initialisation (file header), in store order from one generator. */
static void init_params(ClipPretrain *p) {
    Rng r;
    rng_seed(&r, p->cfg.seed * 0x9E3779B97F4A7C15ull + 0x5EED);
    const double C = (double)p->cfg.clip.vision.channels;
    const double W = (double)p->cfg.clip.text.width, Lt = (double)p->cfg.clip.text.layers;
    const float attn_std = (float)(1 / sqrt(W)), proj_std = (float)(1 / sqrt(W) / sqrt(2 * Lt));
    const float fc_std = (float)(1 / sqrt(2 * W));
    for (int i = 0; i < param_count(p->ps); i++) {
        Tensor *t = param_at(p->ps, i);
        const char *n = t->name;
        if (t->dtype == DT_I64) {
            device_table(t->device)->memset0(t->data, sizeof(int64_t)); /* written at save time */
            continue;
        }
        if (strcmp(n, "token_embedding.weight") == 0) fill_normal(&r, t, 0.02f);
        else if (strcmp(n, "positional_embedding") == 0) fill_normal(&r, t, 0.01f);
        else if (strcmp(n, "text_projection") == 0) fill_normal(&r, t, attn_std);
        else if (strcmp(n, "logit_scale") == 0) tensor_fill(t, logf(1 / 0.07f));
        else if (strcmp(n, "visual.attnpool.positional_embedding") == 0)
            fill_normal(&r, t, (float)(1 / sqrt(C)));
        else if (strncmp(n, "visual.attnpool.", 16) == 0 && ends_with(n, ".weight"))
            fill_normal(&r, t, (float)(1 / sqrt(C)));
        else if (strncmp(n, "visual.attnpool.", 16) == 0) /* Linear bias: torch's default */
            fill_uniform(&r, t, (float)(1 / sqrt(C)));
        else if (ends_with(n, "running_mean")) tensor_fill(t, 0.0f);
        else if (ends_with(n, "running_var")) tensor_fill(t, 1.0f);
        else if (strncmp(n, "visual.", 7) == 0 && t->ndim == 4) /* conv: kaiming-uniform a=√5 */
            fill_uniform(&r, t, (float)(1 / sqrt((double)(t->numel / t->shape[0]))));
        else if (strncmp(n, "visual.", 7) == 0 && ends_with(n, ".weight"))
            tensor_fill(t, (strstr(n, ".bn3.") && strncmp(n, "visual.layer", 12) == 0) ? 0.0f
                                                                                      : 1.0f);
        else if (strncmp(n, "visual.", 7) == 0) tensor_fill(t, 0.0f); /* BN bias */
        else if (ends_with(n, "attn.in_proj_weight")) fill_normal(&r, t, attn_std);
        else if (ends_with(n, "attn.out_proj.weight")) fill_normal(&r, t, proj_std);
        else if (ends_with(n, "mlp.c_fc.weight")) fill_normal(&r, t, fc_std);
        else if (ends_with(n, "mlp.c_proj.weight")) fill_normal(&r, t, proj_std);
        else if (ends_with(n, "mlp.c_fc.bias")) fill_uniform(&r, t, (float)(1 / sqrt(W)));
        else if (ends_with(n, "mlp.c_proj.bias")) fill_uniform(&r, t, (float)(1 / sqrt(4 * W)));
        else if (ends_with(n, "ln_1.weight") || ends_with(n, "ln_2.weight") ||
                 strcmp(n, "ln_final.weight") == 0)
            tensor_fill(t, 1.0f);
        else tensor_fill(t, 0.0f); /* MHA biases (torch zeroes them), LayerNorm biases */
    }
}

ClipPretrain *clip_pretrain_create(const ClipPretrainConfig *cfg) {
    ClipPretrain *p = xcalloc(1, sizeof *p);
    p->cfg = *cfg;
    p->ps = param_store_create(tensor_default_device(), "clip-pretrain");
    clip_state_dict_foreach(&p->cfg.clip, declare_key, p->ps);
    param_store_finalize(p->ps);
    p->work = arena_create(tensor_default_device(), "clip-pretrain-work", 1 << 20);
    bind(p);
    init_params(p);
    p->opt = optim_adamw_create(p->ps, cfg->lr, cfg->beta1, cfg->beta2, cfg->eps,
                                cfg->weight_decay);
    /* Decay only matrices and kernels: not gains, biases, embeddings' scale or the temperature
     * (OpenCLIP's rule: parameters with fewer than two dimensions, plus the embeddings). */
    for (int i = 0; i < param_count(p->ps); i++) {
        Tensor *t = param_at(p->ps, i);
        if (!t->requires_grad) continue;
        if (t->ndim < 2 || strstr(t->name, "embedding")) optim_exclude_weight_decay(p->opt, t->name);
    }
    return p;
}

void clip_pretrain_free(ClipPretrain *p) {
    if (!p) return;
    optim_destroy(p->opt);
    for (int L = 0; L < 4; L++) free(p->blocks[L]);
    clip_text_free(&p->text);
    arena_destroy(p->work);
    param_store_destroy(p->ps);
    free(p);
}

ParamStore *clip_pretrain_params(ClipPretrain *p) { return p->ps; }
int64_t clip_pretrain_steps_done(const ClipPretrain *p) { return optim_step_count(p->opt); }

/* ---- forward ------------------------------------------------------------------------------ */

static Tensor *conv_bn(const ConvBn *c, Tensor *x, bool relu) {
    Tensor *y = tensor_conv2d(x, c->w, NULL, c->stride, c->pad);
    y = tensor_batchnorm2d(y, c->g, c->b, c->rm, c->rv, true, BN_MOMENTUM, BN_EPS);
    return relu ? tensor_relu(y) : y;
}

static Tensor *block_forward(const Block *b, Tensor *x) {
    Tensor *out = conv_bn(&b->c1, x, true);
    out = conv_bn(&b->c2, out, true);
    if (b->stride > 1) out = tensor_avg_pool2d(out, b->stride);
    out = conv_bn(&b->c3, out, false);
    Tensor *id = x;
    if (b->down.w) id = conv_bn(&b->down, b->stride > 1 ? tensor_avg_pool2d(x, b->stride) : x, false);
    return tensor_relu(tensor_add(out, id));
}

Tensor *clip_pretrain_encode_image(ClipPretrain *p, Tensor *images) {
    const int64_t S = p->cfg.input_size;
    CHECK(images->ndim == 4 && images->shape[1] == 3 && images->shape[2] == S &&
              images->shape[3] == S && images->shape[0] >= 2,
          "clip_pretrain_encode_image: images %s must be (B >= 2, 3, %lld, %lld)",
          tensor_shape_str(images), (long long)S, (long long)S);
    Tensor *x = conv_bn(&p->stem[0], images, true);
    x = conv_bn(&p->stem[1], x, true);
    x = conv_bn(&p->stem[2], x, true);
    x = tensor_avg_pool2d(x, 2);
    const ClipResNetConfig *v = &p->cfg.clip.vision;
    for (int L = 0; L < 4; L++)
        for (int64_t b = 0; b < v->layers[L]; b++) x = block_forward(&p->blocks[L][b], x);
    Tensor *emb;
    clip_resnet_attnpool(&p->pool, x, &emb, NULL);
    return emb;
}

Tensor *clip_pretrain_encode_text(ClipPretrain *p, Tensor *ids) {
    Tensor *eot = clip_text_eot_positions(ids);
    Tensor *e = tensor_embedding(p->text.token_embedding, ids);
    return clip_text_encode_embedded(&p->text, e, eot);
}

Tensor *clip_pretrain_loss(ClipPretrain *p, Tensor *img, Tensor *txt) {
    const int64_t B = img->shape[0];
    CHECK(img->ndim == 2 && tensor_same_shape(img, txt),
          "clip_pretrain_loss: image %s and caption %s embeddings must both be (B, E)",
          tensor_shape_str(img), tensor_shape_str(txt));
    Tensor *I = tensor_l2_normalize(img, 1), *T = tensor_l2_normalize(txt, 1);
    Tensor *logits = tensor_mul(tensor_matmul(I, tensor_transpose(T, 0, 1)),
                                tensor_exp(p->logit_scale));
    int64_t *diag = xmalloc((size_t)B * sizeof *diag); /* image i's caption is caption i */
    for (int64_t i = 0; i < B; i++) diag[i] = i;
    Tensor *target = tensor_empty(DT_I64, 1, SHAPE(B));
    device_table(target->device)->copy_h2d(target->data, diag, (size_t)B * sizeof *diag);
    free(diag);
    Tensor *l1 = tensor_cross_entropy(logits, target);
    Tensor *l2 = tensor_cross_entropy(tensor_transpose(logits, 0, 1), target);
    return tensor_mul_scalar(tensor_add(l1, l2), 0.5f);
}

/* ---- one step ----------------------------------------------------------------------------- */

/* Fraction of images (rows of img) whose most similar caption (cosine) is their own. */
static float retrieval_accuracy(Tensor *img, Tensor *txt) {
    const int64_t B = img->shape[0], E = img->shape[1];
    float *a = tensor_to_host(img), *b = tensor_to_host(txt);
    int64_t hit = 0;
    for (int64_t i = 0; i < B; i++) {
        int64_t best = -1;
        double best_s = -INFINITY; /* the image's own norm does not change the argmax */
        for (int64_t j = 0; j < B; j++) {
            double s = 0, nb = 0;
            for (int64_t k = 0; k < E; k++) {
                s += (double)a[i * E + k] * b[j * E + k];
                nb += (double)b[j * E + k] * b[j * E + k];
            }
            s /= sqrt(nb) + 1e-12;
            if (s > best_s) best_s = s, best = j;
        }
        hit += best == i;
    }
    free(a);
    free(b);
    return (float)hit / (float)B;
}

float clip_pretrain_step(ClipPretrain *p, Tensor *images, Tensor *ids, float *acc) {
    const ClipPretrainConfig *c = &p->cfg;
    const int64_t s = optim_step_count(p->opt);
    optim_set_lr(p->opt, schedule_cosine_warmup(c->lr, c->min_lr, s, c->warmup, c->steps));
    Arena *a = tensor_arena();
    const size_t mark = arena_mark(a);
    Tensor *img = clip_pretrain_encode_image(p, images);
    Tensor *txt = clip_pretrain_encode_text(p, ids);
    Tensor *loss = clip_pretrain_loss(p, img, txt);
    float l;
    tensor_copy_to_host(&l, loss);
    if (acc) *acc = retrieval_accuracy(img, txt);
    optim_zero_grad(p->opt);
    ag_backward(loss);
    if (isfinite(l)) {
        if (c->grad_clip > 0) clip_grad_norm(p->ps, c->grad_clip);
        optim_step(p->opt);
        float ls;
        tensor_copy_to_host(&ls, p->logit_scale);
        if (ls > LOGIT_SCALE_MAX) tensor_fill(p->logit_scale, LOGIT_SCALE_MAX);
    }
    arena_release(a, mark);
    return l;
}

/* ---- saving ------------------------------------------------------------------------------- */

Status clip_pretrain_save(ClipPretrain *p, const char *path) {
    /* BN counters: one increment per training forward, as torch counts them. */
    const int64_t n = optim_step_count(p->opt);
    ParamStore *host = param_store_copy(p->ps, DEVICE_CPU, "clip-pretrain save");
    for (int i = 0; i < param_count(host); i++) {
        Tensor *t = param_at(host, i);
        if (t->dtype == DT_I64) memcpy(t->data, &n, sizeof n);
    }
    Status st = safetensors_write(path, host);
    param_store_destroy(host);
    return st;
}

/* ---- image–caption data ------------------------------------------------------------------- */

typedef struct {
    char *id, *caption;
} Caption;

static int caption_cmp(const void *a, const void *b) {
    return strcmp(((const Caption *)a)->id, ((const Caption *)b)->id);
}

/* The file name of `path` without directory and extension, into buf. */
static void stem_of(const char *path, char *buf, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, n, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = 0;
}

/* captions.txt into a sorted array; *text owns the strings. */
static Status read_captions(const char *path, Caption **out, int64_t *n, char **text) {
    FILE *f;
    Status open_st = xfopen_regular(path, "captions file", &f);
    if (open_st != STATUS_OK) return open_st;
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) buf = xrealloc(buf, cap *= 2);
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return error_set(STATUS_ERR_IO, "%s: read error", path);
    }
    buf[len] = 0;
    int64_t m = 0, mcap = 1024, line = 0;
    Caption *c = xmalloc((size_t)mcap * sizeof *c);
    for (char *s = buf, *next; *s; s = next) {
        line++;
        char *nl = strchr(s, '\n');
        next = nl ? nl + 1 : s + strlen(s);
        if (nl) *nl = 0;
        if (!*s) continue;
        char *tab = strchr(s, '\t');
        if (!tab || tab == s || !tab[1]) {
            free(buf);
            free(c);
            return error_set(STATUS_ERR_FORMAT, "%s:%lld: expected '<id>\\t<caption>'", path,
                             (long long)line);
        }
        *tab = 0;
        if (m == mcap) c = xrealloc(c, (size_t)(mcap *= 2) * sizeof *c);
        c[m++] = (Caption){s, tab + 1};
    }
    qsort(c, (size_t)m, sizeof *c, caption_cmp);
    *out = c, *n = m, *text = buf;
    return STATUS_OK;
}

Status clip_pairs_load(const char *const *paths, int64_t n, const char *capf,
                       const ClipTokenizer *tok, int64_t size, ClipPairs *out) {
    memset(out, 0, sizeof *out);
    Caption *caps = NULL;
    char *text = NULL;
    int64_t ncap = 0;
    Status st = read_captions(capf, &caps, &ncap, &text);
    const char **texts = NULL;
    if (st == STATUS_OK) {
        texts = xcalloc((size_t)n + 1, sizeof *texts);
        for (int64_t i = 0; i < n && st == STATUS_OK; i++) {
            char id[256];
            stem_of(paths[i], id, sizeof id);
            Caption key = {id, NULL};
            const Caption *hit = bsearch(&key, caps, (size_t)ncap, sizeof *caps, caption_cmp);
            if (!hit) st = error_set(STATUS_ERR_FORMAT, "%s: no caption for image '%s'", capf, id);
            else texts[i] = hit->caption;
        }
    }
    if (st == STATUS_OK) {
        out->n = n;
        out->size = size;
        out->ids = xmalloc((size_t)n * 77 * sizeof(int64_t));
        int64_t *eot = xmalloc((size_t)n * sizeof(int64_t));
        st = clip_tokenize_batch(tok, texts, (int)n, 77, true, out->ids, eot);
        free(eot);
    }
    if (st == STATUS_OK) {
        const size_t per = (size_t)size * (size_t)size * 3;
        out->pixels = xmalloc((size_t)n * per);
        Status first = STATUS_OK;
        char first_msg[512] = ""; /* the last error is per thread: carried to this one */
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++) {
            Image im = {0};
            Status s = image_load(paths[i], &im, NULL);
            if (s == STATUS_OK) {
                Image r = (im.w == size && im.h == size)
                              ? im
                              : image_resize(&im, (int)size, (int)size, RESAMPLE_BICUBIC);
                memcpy(out->pixels + (size_t)i * per, r.px, per);
                if (r.px != im.px) image_free(&r);
            }
            image_free(&im);
            if (s != STATUS_OK) {
#pragma omp critical
                if (first == STATUS_OK) {
                    first = s;
                    snprintf(first_msg, sizeof first_msg, "%s", error_last());
                }
            }
        }
        st = first == STATUS_OK ? STATUS_OK : error_set(first, "%s", first_msg);
    }
    free(texts);
    free(caps);
    free(text);
    if (st != STATUS_OK) clip_pairs_free(out);
    return st;
}

void clip_pairs_free(ClipPairs *p) {
    free(p->pixels);
    free(p->ids);
    memset(p, 0, sizeof *p);
}

void clip_pairs_batch(const ClipPairs *p, const int64_t *idx, int64_t count, int64_t shift,
                      uint64_t seed, Tensor **images, Tensor **ids) {
    const int64_t S = p->size;
    float *h = xmalloc((size_t)(count * 3 * S * S) * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < count; b++) {
        Rng r;
        rng_seed(&r, seed * 0x100000001B3ull + (uint64_t)idx[b]);
        const int64_t span = 2 * shift + 1;
        const int64_t dx = (int64_t)(rng_next(&r) % (uint64_t)span) - shift;
        const int64_t dy = (int64_t)(rng_next(&r) % (uint64_t)span) - shift;
        const uint8_t *src = p->pixels + (size_t)idx[b] * (size_t)(S * S * 3);
        for (int c = 0; c < 3; c++) {
            float *dst = h + ((size_t)b * 3 + (size_t)c) * (size_t)(S * S);
            for (int64_t y = 0; y < S; y++) {
                int64_t sy = y + dy < 0 ? 0 : y + dy >= S ? S - 1 : y + dy;
                for (int64_t x = 0; x < S; x++) {
                    int64_t sx = x + dx < 0 ? 0 : x + dx >= S ? S - 1 : x + dx;
                    float v = (float)src[(sy * S + sx) * 3 + c] / 255.0f;
                    dst[y * S + x] = (v - CLIP_MEAN[c]) / CLIP_STD[c];
                }
            }
        }
    }
    *images = tensor_from_f32(4, SHAPE(count, 3, S, S), h);
    free(h);
    int64_t *hid = xmalloc((size_t)count * 77 * sizeof *hid);
    for (int64_t b = 0; b < count; b++) memcpy(hid + b * 77, p->ids + idx[b] * 77, 77 * sizeof *hid);
    *ids = tensor_empty(DT_I64, 2, SHAPE(count, 77));
    device_table((*ids)->device)->copy_h2d((*ids)->data, hid, (size_t)count * 77 * sizeof *hid);
    free(hid);
}
