/* resnet.c — CLIP's ModifiedResNet image tower and its attention pooling (SPEC §1.5–1.6).
 *
 * Trunk (per image, channels x side, for an IH x IW input):
 *   stem     conv3x3/2 3->w/2, conv3x3 w/2->w/2, conv3x3 w/2->w, each BN+ReLU; avgpool 2  (IH/4)
 *   layer1-4 Bottleneck blocks (planes w, 2w, 4w, 8w; output 4*planes); block 0 of layers 2-4
 *            halves the side with an average pool after its 3x3 conv (anti-aliased stride), and
 *            its identity branch is avgpool + conv1x1 + BN                              (IH/32)
 * Attention pool over the H*W tokens X of layer4 (C = 32w channels):
 *   T = [mean(X); X] + P                      (B, S, C), S = H*W + 1, P resized when H,W != g
 *   embedding = c_proj(MHA(q = q_proj(T_0), k = k_proj(T), v = v_proj(T)))      (B, E)
 *   dense     = c_proj(v_proj(T))            every token, no attention           (B, S, E)
 * Every BN is folded into its convolution at load (clip_resnet_fill), so the forward pass is
 * conv (+bias), ReLU, avgpool and the pool's linear layers. Inference only: grad mode is off, so
 * each convolution's bias and ReLU are applied in one pass over its product
 * (tensor_conv2d_relu), a block's last convolution accumulates onto the residual in place
 * before its bias and ReLU (tensor_conv2d_add_relu_), and the trunk's tensors alternate between
 * the caller's arena and the model's work arena so that each is released as soon as the last op
 * reading it has run (see Stacks below; docs/clip-model.md has the measured peaks). */
#include "clip/resnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "clip/model.h"
#include "tensor/device.h"
#include "tensor/ops/attention.h"
#include "tensor/ops/batchnorm.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/pool.h"
#include "tensor/ops/resize.h"
#include "tensor/ops/shape.h"

#define BN_EPS 1e-5f

/* ---- loading ------------------------------------------------------------------------------ */

static void declare_conv(ClipConv *c, ParamStore *ps, const char *conv, int64_t cout,
                         int64_t cin, int64_t k, int64_t stride) {
    char name[192];
    snprintf(name, sizeof name, "%s.weight", conv);
    c->weight = param_add(ps, name, DT_F32, 4, SHAPE(cout, cin, k, k), false);
    snprintf(name, sizeof name, "%s.bias", conv);
    c->bias = param_add(ps, name, DT_F32, 1, SHAPE(cout), false);
    c->stride = stride;
    c->pad = k / 2;
}

/* The state-dict names of a block's convolutions and BNs. */
static void block_prefix(char *buf, size_t n, int L, int64_t b) {
    snprintf(buf, n, "visual.layer%d.%lld", L + 1, (long long)b);
}

void clip_resnet_declare(ClipResNet *v, const ClipResNetConfig *cfg, ParamStore *ps) {
    v->cfg = *cfg;
    const int64_t w = cfg->width, C = cfg->channels, E = cfg->embed_dim, g = cfg->grid;
    declare_conv(&v->stem[0], ps, "visual.conv1", w / 2, 3, 3, 2);
    declare_conv(&v->stem[1], ps, "visual.conv2", w / 2, w / 2, 3, 1);
    declare_conv(&v->stem[2], ps, "visual.conv3", w, w / 2, 3, 1);
    int64_t inC = w;
    for (int L = 0; L < 4; L++) {
        const int64_t planes = w << L, stride = L == 0 ? 1 : 2;
        v->blocks[L] = xcalloc((size_t)cfg->layers[L], sizeof(ClipBottleneck));
        for (int64_t b = 0; b < cfg->layers[L]; b++) {
            ClipBottleneck *blk = &v->blocks[L][b];
            char pre[96], name[160];
            block_prefix(pre, sizeof pre, L, b);
            blk->stride = b == 0 ? stride : 1;
            snprintf(name, sizeof name, "%s.conv1", pre);
            declare_conv(&blk->conv1, ps, name, planes, inC, 1, 1);
            snprintf(name, sizeof name, "%s.conv2", pre);
            declare_conv(&blk->conv2, ps, name, planes, planes, 3, 1);
            snprintf(name, sizeof name, "%s.conv3", pre);
            declare_conv(&blk->conv3, ps, name, 4 * planes, planes, 1, 1);
            if (blk->stride > 1 || inC != 4 * planes) {
                snprintf(name, sizeof name, "%s.downsample.0", pre);
                declare_conv(&blk->downsample, ps, name, 4 * planes, inC, 1, 1);
            }
            inC = 4 * planes;
        }
    }
    v->positional_embedding =
        param_add(ps, "visual.attnpool.positional_embedding", DT_F32, 2, SHAPE(g * g + 1, C), false);
    v->q_weight = param_add(ps, "visual.attnpool.q_proj.weight", DT_F32, 2, SHAPE(C, C), false);
    v->q_bias = param_add(ps, "visual.attnpool.q_proj.bias", DT_F32, 1, SHAPE(C), false);
    v->k_weight = param_add(ps, "visual.attnpool.k_proj.weight", DT_F32, 2, SHAPE(C, C), false);
    v->k_bias = param_add(ps, "visual.attnpool.k_proj.bias", DT_F32, 1, SHAPE(C), false);
    v->v_weight = param_add(ps, "visual.attnpool.v_proj.weight", DT_F32, 2, SHAPE(C, C), false);
    v->v_bias = param_add(ps, "visual.attnpool.v_proj.bias", DT_F32, 1, SHAPE(C), false);
    v->c_weight = param_add(ps, "visual.attnpool.c_proj.weight", DT_F32, 2, SHAPE(E, C), false);
    v->c_bias = param_add(ps, "visual.attnpool.c_proj.bias", DT_F32, 1, SHAPE(E), false);
}

/* c = the state dict's convolution `conv` followed by its eval-mode BatchNorm `bn`, folded:
 * weight' = weight * gamma / sqrt(var + eps), bias' = beta - mean * gamma / sqrt(var + eps). */
static void fill_conv(ClipConv *c, const ParamStore *sd, const char *conv, const char *bn) {
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    char name[192];
    snprintf(name, sizeof name, "%s.weight", conv);
    Tensor *w = clip_sd_f32(sd, name);
    Tensor *bn_t[4];
    static const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", bn, suffix[i]);
        bn_t[i] = clip_sd_f32(sd, name);
    }
    batchnorm_fold_into_conv(c->weight, c->bias, w, NULL, bn_t[0], bn_t[1], bn_t[2], bn_t[3],
                             BN_EPS);
    arena_release(a, mark);
}

void clip_resnet_fill(ClipResNet *v, const ParamStore *sd) {
    fill_conv(&v->stem[0], sd, "visual.conv1", "visual.bn1");
    fill_conv(&v->stem[1], sd, "visual.conv2", "visual.bn2");
    fill_conv(&v->stem[2], sd, "visual.conv3", "visual.bn3");
    for (int L = 0; L < 4; L++) {
        for (int64_t b = 0; b < v->cfg.layers[L]; b++) {
            ClipBottleneck *blk = &v->blocks[L][b];
            char pre[96], conv[160], bn[160];
            block_prefix(pre, sizeof pre, L, b);
            ClipConv *convs[3] = {&blk->conv1, &blk->conv2, &blk->conv3};
            for (int i = 0; i < 3; i++) {
                snprintf(conv, sizeof conv, "%s.conv%d", pre, i + 1);
                snprintf(bn, sizeof bn, "%s.bn%d", pre, i + 1);
                fill_conv(convs[i], sd, conv, bn);
            }
            if (blk->downsample.weight) {
                snprintf(conv, sizeof conv, "%s.downsample.0", pre);
                snprintf(bn, sizeof bn, "%s.downsample.1", pre);
                fill_conv(&blk->downsample, sd, conv, bn);
            }
        }
    }
    clip_load_f32(v->positional_embedding, sd, "visual.attnpool.positional_embedding");
    clip_load_f32(v->q_weight, sd, "visual.attnpool.q_proj.weight");
    clip_load_f32(v->q_bias, sd, "visual.attnpool.q_proj.bias");
    clip_load_f32(v->k_weight, sd, "visual.attnpool.k_proj.weight");
    clip_load_f32(v->k_bias, sd, "visual.attnpool.k_proj.bias");
    clip_load_f32(v->v_weight, sd, "visual.attnpool.v_proj.weight");
    clip_load_f32(v->v_bias, sd, "visual.attnpool.v_proj.bias");
    clip_load_f32(v->c_weight, sd, "visual.attnpool.c_proj.weight");
    clip_load_f32(v->c_bias, sd, "visual.attnpool.c_proj.bias");
}

void clip_resnet_free(ClipResNet *v) {
    for (int L = 0; L < 4; L++) {
        free(v->blocks[L]);
        v->blocks[L] = NULL;
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

static Tensor *conv(const ClipConv *c, Tensor *x) {
    return tensor_conv2d(x, c->weight, c->bias, c->stride, c->pad);
}

/* relu(conv(x)): the bias and the ReLU in one pass over the product (tensor/ops/conv.h). */
static Tensor *conv_relu(const ClipConv *c, Tensor *x) {
    return tensor_conv2d_relu(x, c->weight, c->bias, c->stride, c->pad);
}

/* acc = relu(acc + conv(x)) in place: the block's last convolution accumulates onto the
 * residual, then the bias and the ReLU in one pass (tensor/ops/conv.h). */
static Tensor *conv_add_relu_(Tensor *acc, const ClipConv *c, Tensor *x) {
    return tensor_conv2d_add_relu_(acc, x, c->weight, c->bias, c->stride, c->pad);
}

/* The trunk alternates between two stacks: the caller's arena A, which holds the current
 * activation just above the call's mark and nothing else between units, and the model's work
 * arena W. Each op's output goes to whichever stack lets the tensors it outlives be released
 * first (a bump allocator frees only from the top), the residual sum is formed in the residual
 * itself (grad mode is off), and every unit leaves its output at A's mark. */
typedef struct {
    Arena *a, *w;          /* the caller's arena and the work arena */
    size_t a_mark, w_mark; /* where the unit's input begins in A; W's level between units */
} Stacks;

/* Make `arena` the one the next ops allocate from. */
static void use(Arena *arena) { tensor_set_arena(arena); }

/* images (B, 3, IH, IW), anywhere -> (B, w, IH/4, IW/4) at A's mark. Stack contents after each
 * step in brackets (s1..s3 the three convolutions' outputs, p the pool's). */
static Tensor *stem_forward(const ClipResNet *v, const Stacks *st, Tensor *images) {
    use(st->w);
    Tensor *s1 = conv_relu(&v->stem[0], images);                  /* W [s1]       */
    use(st->a);
    Tensor *s2 = conv_relu(&v->stem[1], s1);                      /* A [s2]       */
    arena_release(st->w, st->w_mark);                             /* W []         */
    use(st->w);
    Tensor *s3 = conv_relu(&v->stem[2], s2);                      /* W [s3]       */
    arena_release(st->a, st->a_mark);                             /* A []         */
    use(st->a);
    Tensor *p = tensor_avg_pool2d(s3, 2);                         /* A [p]        */
    arena_release(st->w, st->w_mark);                             /* W []         */
    return p;
}

/* One Bottleneck, out = ReLU(conv3(pool(ReLU(conv2(ReLU(conv1(x)))))) + identity(x)).
 * x is the only tensor above A's mark; so is the result. c1, c2 are the convolutions' outputs,
 * p2 = pool(c2), px = pool(x), id = the downsample branch's output; conv3 adds onto the
 * residual (x or id) in place, so its output has no buffer of its own. */
static Tensor *bottleneck_forward(const ClipBottleneck *b, const Stacks *st, Tensor *x) {
    const size_t a_top = arena_mark(st->a);
    use(st->w);
    Tensor *c1 = conv_relu(&b->conv1, x);                         /* W [c1]       */
    const size_t w_c1 = arena_mark(st->w);
    if (!b->downsample.weight) {
        /* Identity block: x is the residual, and dead afterwards, so the sum goes into it. */
        use(st->a);
        Tensor *c2 = conv_relu(&b->conv2, c1);                    /* A [x c2]     */
        arena_release(st->w, st->w_mark);                         /* W []         */
        conv_add_relu_(x, &b->conv3, c2);                         /* x = out      */
        arena_release(st->a, a_top);                              /* A [x]        */
        return x;
    }
    if (b->stride == 1) {
        /* Width change only (layer1 block 0): x is read by conv1 and the downsample; the result
         * (4x x's size) is born at A's mark once x is dead, as a copy of id that conv3 then
         * adds onto. */
        Tensor *id = conv(&b->downsample, x);                     /* W [c1 id]    */
        arena_release(st->a, st->a_mark);                         /* A []         */
        Tensor *c2 = conv_relu(&b->conv2, c1);                    /* W [c1 id c2] */
        use(st->a);
        Tensor *out = tensor_empty(DT_F32, id->ndim, id->shape);  /* A [out]      */
        device_table(out->device)->copy_d2d(out->data, id->data,
                                            (size_t)id->numel * sizeof(float));
        conv_add_relu_(out, &b->conv3, c2);
        arena_release(st->w, st->w_mark);                         /* W []         */
        return out;
    }
    /* Stride 2 (block 0 of layers 2-4): both branches pool; the downsample's output id becomes
     * the result, with the main branch added into it. */
    Tensor *px = tensor_avg_pool2d(x, b->stride);                 /* W [c1 px]    */
    arena_release(st->a, st->a_mark);                             /* A []         */
    use(st->a);
    Tensor *id = conv(&b->downsample, px);                        /* A [id]       */
    const size_t a_id = arena_mark(st->a);
    arena_release(st->w, w_c1);                                   /* W [c1]       */
    Tensor *c2 = conv_relu(&b->conv2, c1);                        /* A [id c2]    */
    arena_release(st->w, st->w_mark);                             /* W []         */
    use(st->w);
    Tensor *p2 = tensor_avg_pool2d(c2, b->stride);                /* W [p2]       */
    arena_release(st->a, a_id);                                   /* A [id]       */
    conv_add_relu_(id, &b->conv3, p2);                            /* id = out     */
    arena_release(st->w, st->w_mark);                             /* W []         */
    return id;
}

Tensor *clip_resnet_positional_embedding(const ClipResNet *v, int64_t h, int64_t w) {
    const int64_t g = v->cfg.grid, C = v->cfg.channels;
    Tensor *pe = v->positional_embedding;
    if (h == g && w == g) return pe;
    /* rows 1..g*g are the g x g grid row-major; as an image (1, C, g, g) they resize like any
     * feature map, then go back to rows (h*w, C). Row 0 (the mean token's) is not spatial. */
    Tensor *grid = tensor_transpose(tensor_slice(pe, 0, 1, g * g), 0, 1);
    grid = tensor_reshape(grid, 4, SHAPE(1, C, g, g));
    Tensor *resized = tensor_resize_bicubic(grid, h, w);
    Tensor *rows = tensor_transpose(tensor_reshape(resized, 2, SHAPE(C, h * w)), 0, 1);
    Tensor *parts[2] = {tensor_slice(pe, 0, 0, 1), rows};
    return tensor_concat(parts, 2, 0);
}

void clip_resnet_attnpool(const ClipResNet *v, Tensor *x, Tensor **embedding, Tensor **dense) {
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t NH = v->cfg.heads;
    Tensor *mean = tensor_reshape(tensor_spatial_mean(x), 3, SHAPE(B, 1, C));
    Tensor *tokens = tensor_transpose(tensor_reshape(x, 3, SHAPE(B, C, H * W)), 1, 2);
    Tensor *parts[2] = {mean, tokens};
    Tensor *t = tensor_add(tensor_concat(parts, 2, 1), clip_resnet_positional_embedding(v, H, W));
    /* Only token 0 queries; keys and values are all S tokens. */
    Tensor *q = tensor_linear(tensor_slice(t, 1, 0, 1), v->q_weight, v->q_bias);
    Tensor *k = tensor_linear(t, v->k_weight, v->k_bias);
    Tensor *val = tensor_linear(t, v->v_weight, v->v_bias);
    Tensor *a = tensor_attention(tensor_attention_heads_split(q, NH),
                                 tensor_attention_heads_split(k, NH),
                                 tensor_attention_heads_split(val, NH), false,
                                 1.0f / sqrtf((float)(C / NH)));
    a = tensor_reshape(tensor_attention_heads_merge(a), 2, SHAPE(B, C));
    *embedding = tensor_linear(a, v->c_weight, v->c_bias);
    /* The dense path reuses v_proj(T): c_proj of every token's value, no attention. */
    if (dense) *dense = tensor_linear(val, v->c_weight, v->c_bias);
}

void clip_resnet_encode(const ClipResNet *v, Tensor *images, Tensor **embedding, Tensor **dense) {
    tensor_check_f32("clip_resnet_encode", images, "images");
    CHECK(images->ndim == 4 && images->shape[1] == 3 && images->shape[0] >= 1 &&
              images->shape[2] >= 32 && images->shape[3] >= 32 && images->shape[2] % 32 == 0 &&
              images->shape[3] % 32 == 0,
          "clip_resnet_encode: images %s must be (B, 3, IH, IW) with IH, IW positive multiples "
          "of 32", tensor_shape_str(images));
    CHECK(images->device == v->positional_embedding->device,
          "clip_resnet_encode: images on %s, model on %s", device_name(images->device),
          device_name(v->positional_embedding->device));
    CHECK(embedding, "clip_resnet_encode: embedding must not be NULL");
    CHECK(tensor_arena() != v->work, "clip_resnet_encode: called with the model's work arena current");
    bool grad = ag_set_grad_enabled(false);
    Arena *caller = tensor_arena();
    const Stacks st = {.a = caller, .w = v->work, .a_mark = arena_mark(caller),
                       .w_mark = arena_mark(v->work)};

    Tensor *x = stem_forward(v, &st, images);
    for (int L = 0; L < 4; L++)
        for (int64_t b = 0; b < v->cfg.layers[L]; b++)
            x = bottleneck_forward(&v->blocks[L][b], &st, x);
    /* The pool's intermediates are small (S x C per image); a work scope copies its outputs. */
    use(caller);
    Tensor *out[2] = {NULL, NULL};
    ClipWorkScope s = clip_work_begin(v->work, st.a_mark);
    clip_resnet_attnpool(v, x, &out[0], dense ? &out[1] : NULL);
    clip_work_end(&s, out, dense ? 2 : 1);
    *embedding = out[0];
    if (dense) *dense = out[1];
    /* Empty again; coalesce the chunks it grew into on the first call into one block. */
    arena_reset(v->work);
    ag_set_grad_enabled(grad);
}

/* ---- cost --------------------------------------------------------------------------------- */

void clip_resnet_macs(const ClipResNetConfig *cfg, int64_t ih, int64_t iw, double *conv_macs,
                      double *pool_macs, double *dense_macs) {
    const double w = (double)cfg->width;
    double h = (double)(ih / 2), wd = (double)(iw / 2); /* after the stride-2 stem conv */
    double macs = h * wd * 9 * (3 * w / 2 + (w / 2) * (w / 2) + (w / 2) * w);
    h /= 2, wd /= 2; /* stem avgpool */
    double inC = w;
    for (int L = 0; L < 4; L++) {
        const double planes = w * (double)(1 << L);
        for (int64_t b = 0; b < cfg->layers[L]; b++) {
            const int64_t stride = (L > 0 && b == 0) ? 2 : 1;
            macs += h * wd * (inC * planes + 9 * planes * planes); /* conv1, conv2 at input side */
            const double oh = h / (double)stride, ow = wd / (double)stride;
            macs += oh * ow * planes * 4 * planes;                  /* conv3 */
            if (stride > 1 || inC != 4 * planes) macs += oh * ow * inC * 4 * planes; /* downsample */
            h = oh, wd = ow, inC = 4 * planes;
        }
    }
    const double C = (double)cfg->channels, E = (double)cfg->embed_dim, S = h * wd + 1;
    *conv_macs = macs;
    /* q for token 0, k and v for all tokens, scores and weighted sum, c_proj of one token */
    *pool_macs = C * C + 2 * S * C * C + 2 * S * C + C * E;
    /* SPEC §1.6's count of the dense path on its own: v_proj and c_proj over all tokens */
    *dense_macs = S * C * (C + E);
}
