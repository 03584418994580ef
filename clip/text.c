/* text.c — CLIP's text tower (SPEC §1.7).
 *
 * For embedded tokens e (B, T, C):
 *   x = e + P[:T]                                           positional embedding (T, C)
 *   L times:  x = x + out_proj(MHA_causal(LN_1(x)))         q, k, v = thirds of in_proj(LN_1(x))
 *             x = x + c_proj(QuickGELU(c_fc(LN_2(x))))      QuickGELU(u) = u * sigmoid(1.702 u)
 *   feature = LN_final(x[b, eot_b]) @ text_projection       (B, E)
 * LN_final is applied after the end-of-text gather: LayerNorm works row by row, so gathering
 * first gives the same rows and skips the other B*(T-1) normalisations.
 *
 * Truncation: position i attends to j <= i only, so rows after a sequence's end-of-text token
 * never reach its pooled row; the tower runs the first max_b(eot_b) + 1 positions only.
 *
 * Memory: with a tape (the embedded input requires a gradient) every op is recorded in the
 * current arena as usual. Without one, each block runs in the work arena and only its output is
 * kept (clip_work_begin/end), so the caller's arena holds one activation at a time. */
#include "clip/text.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "clip/model.h"
#include "tensor/device.h"
#include "tensor/ops/attention.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/index.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/shape.h"

#define LN_EPS 1e-5f

/* ---- loading ------------------------------------------------------------------------------ */

static Tensor *declare(ParamStore *ps, const char *name, int ndim, const int64_t *shape) {
    return param_add(ps, name, DT_F32, ndim, shape, false);
}

/* The float32 tensor `name` of a finalized store (CHECKed present). */
static Tensor *bind(const ParamStore *ps, const char *name) {
    Tensor *x = param_find(ps, name);
    CHECK(x && x->dtype == DT_F32, "clip_text_bind: '%s' %s", name,
          x ? "is not float32" : "is missing");
    return x;
}

/* The tensors of block i, in state-dict order, with their (name suffix, slot). */
typedef struct {
    const char *suffix;
    size_t offset;
} BlockField;

#define BLOCK_FIELD(suffix, member) {suffix, offsetof(ClipTextBlock, member)}
static const BlockField block_fields[] = {
    BLOCK_FIELD("attn.in_proj_weight", in_proj_weight),
    BLOCK_FIELD("attn.in_proj_bias", in_proj_bias),
    BLOCK_FIELD("attn.out_proj.weight", out_proj_weight),
    BLOCK_FIELD("attn.out_proj.bias", out_proj_bias),
    BLOCK_FIELD("ln_1.weight", ln_1_weight),
    BLOCK_FIELD("ln_1.bias", ln_1_bias),
    BLOCK_FIELD("mlp.c_fc.weight", c_fc_weight),
    BLOCK_FIELD("mlp.c_fc.bias", c_fc_bias),
    BLOCK_FIELD("mlp.c_proj.weight", c_proj_weight),
    BLOCK_FIELD("mlp.c_proj.bias", c_proj_bias),
    BLOCK_FIELD("ln_2.weight", ln_2_weight),
    BLOCK_FIELD("ln_2.bias", ln_2_bias),
};
#undef BLOCK_FIELD
#define N_BLOCK_FIELDS ((int)(sizeof block_fields / sizeof block_fields[0]))

static Tensor **block_slot(ClipTextBlock *b, int f) {
    return (Tensor **)((char *)b + block_fields[f].offset);
}

void clip_text_declare(ClipText *t, const ClipTextConfig *cfg, ParamStore *ps) {
    t->cfg = *cfg;
    const int64_t C = cfg->width;
    t->token_embedding = declare(ps, "token_embedding.weight", 2, SHAPE(cfg->vocab, C));
    t->positional_embedding = declare(ps, "positional_embedding", 2, SHAPE(cfg->context, C));
    t->blocks = xcalloc((size_t)cfg->layers, sizeof(ClipTextBlock));
    const int64_t shapes[N_BLOCK_FIELDS][2] = {
        {3 * C, C}, {3 * C, 0}, {C, C}, {C, 0}, {C, 0}, {C, 0},
        {4 * C, C}, {4 * C, 0}, {C, 4 * C}, {C, 0}, {C, 0}, {C, 0},
    };
    for (int64_t i = 0; i < cfg->layers; i++) {
        for (int f = 0; f < N_BLOCK_FIELDS; f++) {
            char name[160];
            snprintf(name, sizeof name, "transformer.resblocks.%lld.%s", (long long)i,
                     block_fields[f].suffix);
            *block_slot(&t->blocks[i], f) = declare(ps, name, shapes[f][1] ? 2 : 1, shapes[f]);
        }
    }
    t->ln_final_weight = declare(ps, "ln_final.weight", 1, SHAPE(C));
    t->ln_final_bias = declare(ps, "ln_final.bias", 1, SHAPE(C));
    t->text_projection = declare(ps, "text_projection", 2, SHAPE(C, cfg->embed_dim));
}

void clip_text_bind(ClipText *t, const ClipTextConfig *cfg, const ParamStore *ps) {
    t->cfg = *cfg;
    t->token_embedding = bind(ps, "token_embedding.weight");
    t->positional_embedding = bind(ps, "positional_embedding");
    t->blocks = xcalloc((size_t)cfg->layers, sizeof(ClipTextBlock));
    for (int64_t i = 0; i < cfg->layers; i++) {
        for (int f = 0; f < N_BLOCK_FIELDS; f++) {
            char name[160];
            snprintf(name, sizeof name, "transformer.resblocks.%lld.%s", (long long)i,
                     block_fields[f].suffix);
            *block_slot(&t->blocks[i], f) = bind(ps, name);
        }
    }
    t->ln_final_weight = bind(ps, "ln_final.weight");
    t->ln_final_bias = bind(ps, "ln_final.bias");
    t->text_projection = bind(ps, "text_projection");
}

void clip_text_fill(ClipText *t, const ParamStore *sd) {
    clip_load_f32(t->token_embedding, sd, "token_embedding.weight");
    clip_load_f32(t->positional_embedding, sd, "positional_embedding");
    for (int64_t i = 0; i < t->cfg.layers; i++) {
        for (int f = 0; f < N_BLOCK_FIELDS; f++) {
            Tensor *dst = *block_slot(&t->blocks[i], f);
            clip_load_f32(dst, sd, dst->name);
        }
    }
    clip_load_f32(t->ln_final_weight, sd, "ln_final.weight");
    clip_load_f32(t->ln_final_bias, sd, "ln_final.bias");
    clip_load_f32(t->text_projection, sd, "text_projection");
}

void clip_text_free(ClipText *t) {
    free(t->blocks);
    t->blocks = NULL;
}

/* ---- end-of-text positions ---------------------------------------------------------------- */

/* Index data is read through the device table in small host chunks (ids may live on a GPU). */
#define HOST_CHUNK 128

Tensor *clip_text_eot_positions(const Tensor *ids) {
    CHECK(ids && ids->dtype == DT_I64 && ids->ndim == 2 && ids->shape[1] >= 1,
          "clip_text_eot_positions: ids must be int64 (B, T), got %s %s",
          ids ? dtype_name(ids->dtype) : "NULL", ids ? tensor_shape_str(ids) : "");
    const int64_t B = ids->shape[0], T = ids->shape[1];
    const DeviceTable *dt = device_table(ids->device);
    Tensor *eot = tensor_empty(DT_I64, 1, SHAPE(B));
    int64_t buf[HOST_CHUNK];
    for (int64_t b = 0; b < B; b++) {
        int64_t best = 0, best_id = INT64_MIN;
        for (int64_t j0 = 0; j0 < T; j0 += HOST_CHUNK) {
            int64_t n = T - j0 < HOST_CHUNK ? T - j0 : HOST_CHUNK;
            dt->copy_d2h(buf, (const int64_t *)ids->data + b * T + j0, (size_t)n * sizeof(int64_t));
            for (int64_t j = 0; j < n; j++)
                if (buf[j] > best_id) best_id = buf[j], best = j0 + j; /* first maximum wins */
        }
        dt->copy_h2d((int64_t *)eot->data + b, &best, sizeof best);
    }
    return eot;
}

/* max_b eot[b], CHECKing every position lies in [0, T). */
static int64_t max_eot(const Tensor *eot, int64_t T) {
    const DeviceTable *dt = device_table(eot->device);
    int64_t buf[HOST_CHUNK], mx = 0;
    for (int64_t b0 = 0; b0 < eot->numel; b0 += HOST_CHUNK) {
        int64_t n = eot->numel - b0 < HOST_CHUNK ? eot->numel - b0 : HOST_CHUNK;
        dt->copy_d2h(buf, (const int64_t *)eot->data + b0, (size_t)n * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) {
            CHECK(buf[i] >= 0 && buf[i] < T,
                  "clip_text: end-of-text position %lld of sequence %lld outside [0, %lld)",
                  (long long)buf[i], (long long)(b0 + i), (long long)T);
            if (buf[i] > mx) mx = buf[i];
        }
    }
    return mx;
}

/* ---- forward ------------------------------------------------------------------------------ */

static Tensor *block_forward(const ClipText *t, const ClipTextBlock *b, Tensor *x) {
    const int64_t C = t->cfg.width, NH = t->cfg.heads, HS = C / NH;
    Tensor *h = tensor_layernorm(x, b->ln_1_weight, b->ln_1_bias, LN_EPS);
    Tensor *qkv = tensor_linear(h, b->in_proj_weight, b->in_proj_bias); /* (B, T, 3C) */
    Tensor *a = tensor_attention(tensor_attention_heads_split_cols(qkv, 0, NH, HS),
                                 tensor_attention_heads_split_cols(qkv, C, NH, HS),
                                 tensor_attention_heads_split_cols(qkv, 2 * C, NH, HS), true,
                                 1.0f / sqrtf((float)HS));
    a = tensor_linear(tensor_attention_heads_merge(a), b->out_proj_weight, b->out_proj_bias);
    x = tensor_add(x, a);
    h = tensor_layernorm(x, b->ln_2_weight, b->ln_2_bias, LN_EPS);
    h = tensor_quick_gelu(tensor_linear(h, b->c_fc_weight, b->c_fc_bias));
    h = tensor_linear(h, b->c_proj_weight, b->c_proj_bias);
    return tensor_add(x, h);
}

static Tensor *pool_project(const ClipText *t, Tensor *x, Tensor *eot) {
    Tensor *pooled = tensor_gather_rows(x, eot); /* (B, C) */
    pooled = tensor_layernorm(pooled, t->ln_final_weight, t->ln_final_bias, LN_EPS);
    return tensor_matmul(pooled, t->text_projection);
}

/* e (B, T, C) embedded tokens, eot (B) in [0, T). `mark`: where the call's own allocations begin
 * in the current arena (everything after it is dropped when no tape is recorded). */
static Tensor *text_forward(const ClipText *t, Tensor *e, Tensor *eot, bool truncate, size_t mark) {
    const int64_t T = e->shape[1];
    const int64_t last = max_eot(eot, T); /* also CHECKs every position */
    const int64_t keep = truncate ? last + 1 : T;
    Tensor *x = keep < T ? tensor_slice(e, 1, 0, keep) : e;
    Tensor *pos = t->positional_embedding;
    if (keep < t->cfg.context) pos = tensor_slice(pos, 0, 0, keep);
    x = tensor_add(x, pos);

    if (ag_grad_enabled() && x->requires_grad) {
        for (int64_t l = 0; l < t->cfg.layers; l++) x = block_forward(t, &t->blocks[l], x);
        return pool_project(t, x, eot);
    }
    CHECK(tensor_arena() != t->work, "clip_text: called with the model's work arena current");
    for (int64_t l = 0; l < t->cfg.layers; l++) {
        ClipWorkScope s = clip_work_begin(t->work, mark);
        x = block_forward(t, &t->blocks[l], x);
        clip_work_end(&s, &x, 1);
    }
    ClipWorkScope s = clip_work_begin(t->work, mark);
    x = pool_project(t, x, eot);
    clip_work_end(&s, &x, 1);
    arena_reset(t->work); /* empty again; coalesces the chunks of the first call */
    return x;
}

Tensor *clip_text_encode_embedded_ex(const ClipText *t, Tensor *x, Tensor *eot, bool truncate) {
    tensor_check_f32("clip_text_encode_embedded", x, "x");
    CHECK(x->ndim == 3 && x->shape[0] >= 1 && x->shape[1] >= 1 && x->shape[1] <= t->cfg.context &&
              x->shape[2] == t->cfg.width,
          "clip_text_encode_embedded: x %s must be (B, T, %lld) with 1 <= T <= %lld",
          tensor_shape_str(x), (long long)t->cfg.width, (long long)t->cfg.context);
    CHECK(eot && eot->dtype == DT_I64 && eot->ndim == 1 && eot->shape[0] == x->shape[0],
          "clip_text_encode_embedded: eot must be int64 (%lld), got %s %s",
          (long long)x->shape[0], eot ? dtype_name(eot->dtype) : "NULL",
          eot ? tensor_shape_str(eot) : "");
    tensor_check_same_device("clip_text_encode_embedded", x, t->token_embedding);
    return text_forward(t, x, eot, truncate, arena_mark(tensor_arena()));
}

Tensor *clip_text_encode_embedded(const ClipText *t, Tensor *x, Tensor *eot) {
    return clip_text_encode_embedded_ex(t, x, eot, true);
}

Tensor *clip_text_encode_ids(const ClipText *t, Tensor *ids) {
    CHECK(ids && ids->dtype == DT_I64 && ids->ndim == 2 && ids->shape[0] >= 1 &&
              ids->shape[1] >= 1 && ids->shape[1] <= t->cfg.context,
          "clip_text_encode_ids: ids must be int64 (B, T) with 1 <= T <= %lld, got %s %s",
          (long long)t->cfg.context, ids ? dtype_name(ids->dtype) : "NULL",
          ids ? tensor_shape_str(ids) : "");
    bool grad = ag_set_grad_enabled(false);
    /* eot stays in the caller's arena below the mark: the towers' scopes release down to it. */
    Tensor *eot = clip_text_eot_positions(ids);
    const size_t mark = arena_mark(tensor_arena());
    Tensor *e = tensor_embedding(t->token_embedding, ids); /* CHECKs every id < V */
    Tensor *out = text_forward(t, e, eot, true, mark);
    ag_set_grad_enabled(grad);
    return out;
}

/* ---- cost --------------------------------------------------------------------------------- */

double clip_text_macs(const ClipTextConfig *cfg, int64_t T) {
    const double C = (double)cfg->width, t = (double)T;
    /* per block: in_proj 3C^2, out_proj C^2, c_fc 4C^2, c_proj 4C^2 per token; scores and the
     * weighted sum T*T*C each (the kernel computes the full square; the mask only zeroes it) */
    double block = 12 * t * C * C + 2 * t * t * C;
    return (double)cfg->layers * block + C * (double)cfg->embed_dim;
}
