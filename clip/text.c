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
 * Less work, the same features: position i attends to j <= i only, so rows after a sequence's
 * end-of-text token never reach its pooled row. The tower cuts each sequence at its own end and
 * packs the rows of all of them into one matrix (the plan, below); in the last block only the end
 * rows' query, attention, out-projection and MLP are computed (keys and values are still needed
 * at every row). docs/clip-model.md, "Truncation, by length", measures the saving.
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

/* ---- the plan: sequences packed by length ---------------------------------------------------- */

/* CLIP_TEXT_BY_LENGTH packs the batch: the sequences sorted by end-of-text position (stably),
 * each cut at its own end, their rows stacked into one (R, C) matrix, R = sum of the lengths.
 * Everything but attention works row by row, so the linear layers, LayerNorms, GELUs and
 * residual additions run once on the packed matrix (products as large as the unpacked batch's,
 * without the rows after each end); attention runs per group of equal length, on that group's
 * contiguous rows. For learned prompts (ends 18-22 of 23) that drops about 9 % of the rows. */
typedef struct {
    int ngroups;
    AttentionGroup *g; /* group k: n sequences of len = end-of-text position + 1 rows, the next
                        * n of `order`; the runs tensor_attention_packed takes as they are */
    int64_t *order; /* (B) sequence indices by end-of-text position (stable) */
    int64_t rows;   /* R: packed rows */
} TextPlan;

/* The positions to host, CHECKing every one lies in [0, T). */
static int64_t *eot_to_host(const Tensor *eot, int64_t T) {
    int64_t *h = xmalloc((size_t)eot->numel * sizeof *h);
    device_table(eot->device)->copy_d2h(h, eot->data, (size_t)eot->numel * sizeof *h);
    for (int64_t i = 0; i < eot->numel; i++)
        CHECK(h[i] >= 0 && h[i] < T,
              "clip_text: end-of-text position %lld of sequence %lld outside [0, %lld)",
              (long long)h[i], (long long)i, (long long)T);
    return h;
}

/* The plan of end-of-text positions eot (host, B of them) in [0, T): a counting sort. */
static void text_plan(TextPlan *p, const int64_t *eot, int64_t B, int64_t T) {
    int64_t *start = xcalloc((size_t)T + 1, sizeof *start); /* first slot of each position */
    for (int64_t b = 0; b < B; b++) start[eot[b] + 1]++;
    *p = (TextPlan){.g = xmalloc((size_t)T * sizeof *p->g)};
    for (int64_t l = 0; l < T; l++) {
        if (start[l + 1]) {
            p->g[p->ngroups++] = (AttentionGroup){.n = start[l + 1], .len = l + 1};
            p->rows += start[l + 1] * (l + 1);
        }
        start[l + 1] += start[l];
    }
    p->order = xmalloc((size_t)B * sizeof *p->order);
    for (int64_t b = 0; b < B; b++) p->order[start[eot[b]]++] = b;
    free(start);
}

static void text_plan_free(TextPlan *p) {
    free(p->g);
    free(p->order);
}

/* An int64 index tensor on the current arena's device from host values. */
static Tensor *index_tensor(const int64_t *host, int64_t n) {
    Tensor *t = tensor_empty(DT_I64, 1, SHAPE(n));
    tensor_copy(t, tensor_wrap(DT_I64, DEVICE_CPU, 1, SHAPE(n), (void *)host));
    return t;
}

/* The index tensors of a plan for a batch of sequences T long: for each packed row its row of
 * e viewed as (B*T, C) (src) and its position (pos); for each sequence in packed order its end
 * row in the packed matrix (ends); for each sequence of the batch its place in packed order
 * (inv). */
typedef struct {
    Tensor *src, *pos, *ends, *inv;
} TextIndex;

static TextIndex text_index(const TextPlan *p, int64_t B, int64_t T) {
    int64_t *src = xmalloc((size_t)p->rows * sizeof *src);
    int64_t *pos = xmalloc((size_t)p->rows * sizeof *pos);
    int64_t *ends = xmalloc((size_t)B * sizeof *ends), *inv = xmalloc((size_t)B * sizeof *inv);
    int64_t r = 0, s = 0; /* packed row, sequence in packed order */
    for (int k = 0; k < p->ngroups; k++)
        for (int64_t i = 0; i < p->g[k].n; i++, s++) {
            const int64_t b = p->order[s];
            for (int64_t j = 0; j < p->g[k].len; j++, r++) src[r] = b * T + j, pos[r] = j;
            ends[s] = r - 1;
            inv[b] = s;
        }
    TextIndex ix = {index_tensor(src, p->rows), index_tensor(pos, p->rows),
                    index_tensor(ends, B), index_tensor(inv, B)};
    free(src);
    free(pos);
    free(ends);
    free(inv);
    return ix;
}

/* ---- forward ------------------------------------------------------------------------------ */

static Tensor *mlp(const ClipTextBlock *b, Tensor *x) {
    Tensor *h = tensor_layernorm(x, b->ln_2_weight, b->ln_2_bias, LN_EPS);
    h = tensor_quick_gelu(tensor_linear(h, b->c_fc_weight, b->c_fc_bias));
    h = tensor_linear(h, b->c_proj_weight, b->c_proj_bias);
    return tensor_add(x, h);
}

/* The padded layout: x (B, T, C), every sequence T positions under the causal mask: one run of
 * B sequences of T rows for the packed attention. */
static Tensor *block_forward(const ClipText *t, const ClipTextBlock *b, Tensor *x) {
    const int64_t B = x->shape[0], T = x->shape[1], C = t->cfg.width, NH = t->cfg.heads;
    const int64_t HS = C / NH;
    Tensor *h = tensor_layernorm(x, b->ln_1_weight, b->ln_1_bias, LN_EPS);
    Tensor *qkv = tensor_linear(tensor_reshape(h, 2, SHAPE(B * T, C)), b->in_proj_weight,
                                b->in_proj_bias); /* (B*T, 3C) */
    Tensor *a = tensor_attention_packed(qkv, 0, qkv, C, 2 * C, &(AttentionGroup){B, T}, 1, NH, HS,
                                        false, 1.0f / sqrtf((float)HS));
    a = tensor_linear(a, b->out_proj_weight, b->out_proj_bias);
    return mlp(b, tensor_add(x, tensor_reshape(a, 3, SHAPE(B, T, C))));
}

/* Attention of the packed layout: the queries are columns [0, C) of q (Rq, .), every row of each
 * group's sequences (Rq = R, causal) or their last rows only (Rq = B, which see every key: no
 * mask); the keys and values are columns [kcol, kcol + C) and [kcol + C, kcol + 2C) of kv
 * (R, .). q may be kv (in_proj's output, kcol = C). Each head is read in place and the result
 * comes back (Rq, C) with the heads merged (tensor_attention_packed: no copies). */
static Tensor *packed_attention(const ClipText *t, const TextPlan *p, Tensor *q, Tensor *kv,
                                int64_t kcol, bool last_rows) {
    const int64_t C = t->cfg.width, NH = t->cfg.heads, HS = C / NH;
    return tensor_attention_packed(q, 0, kv, kcol, kcol + C, p->g, p->ngroups, NH, HS, last_rows,
                                   1.0f / sqrtf((float)HS));
}

/* A block of the packed layout: x (R, C) -> (R, C). The queries are the first third of in_proj,
 * the keys and values the other two (sliced, so weights that learn get their gradient). */
static Tensor *block_packed(const ClipText *t, const ClipTextBlock *b, const TextPlan *p,
                            Tensor *x) {
    const int64_t C = t->cfg.width;
    Tensor *h = tensor_layernorm(x, b->ln_1_weight, b->ln_1_bias, LN_EPS);
    Tensor *qkv = tensor_linear(h, b->in_proj_weight, b->in_proj_bias); /* (R, 3C) */
    Tensor *a = packed_attention(t, p, qkv, qkv, C, false);
    a = tensor_linear(a, b->out_proj_weight, b->out_proj_bias);
    return mlp(b, tensor_add(x, a));
}

/* The last block of the packed layout: only each sequence's last row reaches the features, so
 * keys and values are computed at every row, the query, attention, out-projection and MLP at the
 * last rows only. x (R, C) -> (B, C) in packed order. */
static Tensor *block_packed_last(const ClipText *t, const ClipTextBlock *b, const TextPlan *p,
                                 Tensor *x, Tensor *ends) {
    const int64_t C = t->cfg.width;
    Tensor *h = tensor_layernorm(x, b->ln_1_weight, b->ln_1_bias, LN_EPS);
    Tensor *kv = tensor_linear(h, tensor_slice(b->in_proj_weight, 0, C, 2 * C),
                               tensor_slice(b->in_proj_bias, 0, C, 2 * C)); /* (R, 2C) */
    Tensor *q = tensor_linear(tensor_embedding(h, ends), tensor_slice(b->in_proj_weight, 0, 0, C),
                              tensor_slice(b->in_proj_bias, 0, 0, C)); /* (B, C) */
    Tensor *a = packed_attention(t, p, q, kv, 0, true);
    a = tensor_linear(a, b->out_proj_weight, b->out_proj_bias);
    return mlp(b, tensor_add(tensor_embedding(x, ends), a));
}

static Tensor *project(const ClipText *t, Tensor *pooled) {
    pooled = tensor_layernorm(pooled, t->ln_final_weight, t->ln_final_bias, LN_EPS);
    return tensor_matmul(pooled, t->text_projection);
}

/* One step of a layout: block l (l < layers) or the pooling and projection (l == layers).
 * p NULL: the padded layout (x (B, T, C), pooled at eot); else the packed one (x (R, C), the
 * last block at the end rows ix->ends, the features put back in batch order by ix->inv). */
static Tensor *text_step(const ClipText *t, int64_t l, Tensor *x, Tensor *eot, const TextPlan *p,
                         const TextIndex *ix) {
    const int64_t L = t->cfg.layers;
    if (!p) return l < L ? block_forward(t, &t->blocks[l], x)
                         : project(t, tensor_gather_rows(x, eot));
    if (l < L - 1) return block_packed(t, &t->blocks[l], p, x);
    if (l == L - 1) return block_packed_last(t, &t->blocks[l], p, x, ix->ends);
    return tensor_embedding(project(t, x), ix->inv);
}

/* The tower's input: the padded layout's x (B, keep, C), or the packed rows (R, C). */
static Tensor *text_input(const ClipText *t, Tensor *e, int64_t keep, const TextIndex *ix) {
    const int64_t B = e->shape[0], T = e->shape[1], C = e->shape[2];
    if (ix) {
        Tensor *rows = tensor_embedding(tensor_reshape(e, 2, SHAPE(B * T, C)), ix->src);
        return tensor_add(rows, tensor_embedding(t->positional_embedding, ix->pos));
    }
    Tensor *x = keep < T ? tensor_slice(e, 1, 0, keep) : e;
    Tensor *pos = t->positional_embedding;
    if (keep < t->cfg.context) pos = tensor_slice(pos, 0, 0, keep);
    return tensor_add(x, pos);
}

/* e (B, T, C) embedded tokens, eot (B) in [0, T). `mark`: where the call's own allocations begin
 * in the current arena (everything after it is dropped when no tape is recorded). */
static Tensor *text_forward(const ClipText *t, Tensor *e, Tensor *eot, ClipTextLayout layout,
                            size_t mark) {
    const int64_t B = e->shape[0], T = e->shape[1];
    const bool tape = ag_grad_enabled() && e->requires_grad;
    CHECK(tape || tensor_arena() != t->work,
          "clip_text: called with the model's work arena current");
    int64_t *host = eot_to_host(eot, T), last = 0;
    for (int64_t b = 0; b < B; b++) last = host[b] > last ? host[b] : last;
    TextPlan plan, *p = NULL;
    TextIndex ix;
    if (layout == CLIP_TEXT_BY_LENGTH) {
        /* The index tensors live as long as the pass: in the caller's arena for backward, else
         * at the bottom of the work arena, below every step's scope (arena_reset frees them). */
        Arena *caller = tensor_arena();
        if (!tape) tensor_set_arena(t->work);
        text_plan(p = &plan, host, B, T);
        ix = text_index(p, B, T);
        tensor_set_arena(caller);
    }
    free(host);
    const int64_t keep = layout == CLIP_TEXT_ALL_POSITIONS ? T : last + 1;
    Tensor *x = text_input(t, e, keep, p ? &ix : NULL);
    for (int64_t l = 0; l <= t->cfg.layers; l++) {
        if (tape) {
            x = text_step(t, l, x, eot, p, &ix);
            continue;
        }
        /* Without a tape each step runs in the work arena and only its result is kept. */
        ClipWorkScope s = clip_work_begin(t->work, mark);
        x = text_step(t, l, x, eot, p, &ix);
        clip_work_end(&s, &x, 1);
    }
    if (p) text_plan_free(p);
    if (!tape) arena_reset(t->work); /* empty again; coalesces the chunks of the first call */
    return x;
}

Tensor *clip_text_encode_embedded_ex(const ClipText *t, Tensor *x, Tensor *eot,
                                     ClipTextLayout layout) {
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
    return text_forward(t, x, eot, layout, arena_mark(tensor_arena()));
}

Tensor *clip_text_encode_embedded(const ClipText *t, Tensor *x, Tensor *eot) {
    return clip_text_encode_embedded_ex(t, x, eot, CLIP_TEXT_BY_LENGTH);
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
    Tensor *out = text_forward(t, e, eot, CLIP_TEXT_BY_LENGTH, mark);
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
