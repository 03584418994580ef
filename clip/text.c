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
 * end-of-text token never reach its pooled row. The tower groups the batch by end-of-text
 * position and runs each group cut at its own length (the plan, below); in the last block of a
 * group that ends at one position, only that row's query, attention, out-projection and MLP are
 * computed (keys and values are still needed at every position). docs/clip-model.md,
 * "Truncation", measures the saving.
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

/* ---- the plan: sequences grouped by length --------------------------------------------------- */

/* Groups of sequences the tower runs separately, each cut at its own length. Sorting a batch by
 * end-of-text position and running each length on its own saves the positions between a
 * sequence's end and the batch's longest (for learned prompts 18-22 of 23: about 9 %), and lets
 * the last block work on the end-of-text rows alone (below). More groups mean more, smaller
 * calls, so lengths are merged into at most TEXT_GROUPS_MAX groups, choosing the merge with the
 * fewest positions run. */
#define TEXT_GROUPS_MAX 8

typedef struct {
    int64_t first, n; /* the group's sequences are order[first .. first + n) */
    int64_t len;      /* positions run: the group's largest end-of-text position + 1 */
    bool uniform;     /* every sequence ends at len - 1 */
} TextGroup;

typedef struct {
    int ngroups;
    TextGroup g[TEXT_GROUPS_MAX];
    int64_t *order; /* (B) sequence indices by end-of-text position (stable); NULL: one group in
                     * the batch's own order */
    int64_t *eot;   /* (B) host copy of the positions */
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

/* Split the D distinct lengths (ascending, count[i] sequences of length len[i]) into at most
 * TEXT_GROUPS_MAX runs of consecutive lengths with the fewest positions run (a run costs its
 * sequences times its longest length). Dynamic programme over (runs, lengths), D <= T. Writes
 * each run's last index into ends[] and returns the number of runs. */
static int merge_lengths(const int64_t *len, const int64_t *count, int D, int *ends) {
    const int G = TEXT_GROUPS_MAX;
    if (D <= G) {
        for (int i = 0; i < D; i++) ends[i] = i;
        return D;
    }
    /* cost[k][j]: fewest positions for the first j lengths in k runs; from[k][j]: where the
     * last of those runs begins. */
    double *cost = xmalloc((size_t)(G + 1) * (size_t)(D + 1) * sizeof *cost);
    int *from = xmalloc((size_t)(G + 1) * (size_t)(D + 1) * sizeof *from);
#define AT(k, j) ((size_t)(k) * (size_t)(D + 1) + (size_t)(j))
    for (int k = 0; k <= G; k++)
        for (int j = 0; j <= D; j++) cost[AT(k, j)] = k == 0 && j == 0 ? 0 : INFINITY;
    for (int k = 1; k <= G; k++)
        for (int j = 1; j <= D; j++) {
            double n = 0;
            for (int i = j - 1; i >= 0; i--) { /* the last run: lengths i .. j-1 */
                n += (double)count[i];
                const double c = cost[AT(k - 1, i)] + n * (double)len[j - 1];
                if (c < cost[AT(k, j)]) cost[AT(k, j)] = c, from[AT(k, j)] = i;
            }
        }
    for (int j = D, k = G; k > 0; k--) ends[k - 1] = j - 1, j = from[AT(k, j)];
#undef AT
    free(cost);
    free(from);
    return G;
}

/* grouped = false: one group of every sequence at the batch's longest length (truncate) or all
 * T positions, in the batch's order: the tower as CLIP defines it, for checking the plan. */
static void text_plan(TextPlan *p, const Tensor *eot, int64_t T, bool grouped, bool truncate) {
    const int64_t B = eot->numel;
    *p = (TextPlan){.eot = eot_to_host(eot, T)};
    int64_t *count = xcalloc((size_t)T + 1, sizeof *count), mx = 0; /* sequences per position */
    for (int64_t b = 0; b < B; b++) count[p->eot[b]]++, mx = p->eot[b] > mx ? p->eot[b] : mx;
    if (!grouped || count[mx] == B) {
        const int64_t len = truncate ? mx + 1 : T;
        p->ngroups = 1;
        p->g[0] = (TextGroup){.n = B, .len = len, .uniform = count[mx] == B && len == mx + 1};
        free(count);
        return;
    }
    int64_t *len = xmalloc((size_t)T * sizeof *len), *cnt = xmalloc((size_t)T * sizeof *cnt);
    int D = 0, ends[TEXT_GROUPS_MAX];
    for (int64_t l = 0; l < T; l++)
        if (count[l]) len[D] = l + 1, cnt[D++] = count[l];
    p->ngroups = merge_lengths(len, cnt, D, ends);
    /* Counting sort by position: order[] lists the sequences of each length in batch order. */
    for (int64_t l = T; l > 0; l--) count[l] = count[l - 1];
    count[0] = 0;
    for (int64_t l = 0; l < T; l++) count[l + 1] += count[l]; /* count[l]: first slot of l */
    p->order = xmalloc((size_t)B * sizeof *p->order);
    for (int64_t b = 0; b < B; b++) p->order[count[p->eot[b]]++] = b;
    for (int k = 0, i = 0; k < p->ngroups; k++) {
        TextGroup *g = &p->g[k];
        const int i0 = i;
        g->first = k ? p->g[k - 1].first + p->g[k - 1].n : 0;
        for (; i <= ends[k]; i++) g->n += cnt[i];
        g->len = len[ends[k]];
        g->uniform = i - i0 == 1;
    }
    free(count);
    free(len);
    free(cnt);
}

static void text_plan_free(TextPlan *p) {
    free(p->order);
    free(p->eot);
}

/* An int64 index tensor on `dev` from host values. */
static Tensor *index_tensor(const int64_t *host, int64_t n) {
    Tensor *t = tensor_empty(DT_I64, 1, SHAPE(n)); /* on the current arena's device */
    tensor_copy(t, tensor_wrap(DT_I64, DEVICE_CPU, 1, SHAPE(n), (void *)host));
    return t;
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

/* The last block when every sequence of x (n, len, C) ends at len - 1: only that row reaches the
 * features. Keys and values are needed at every position; the query, the attention output, the
 * out-projection and the MLP at the last row only (which sees every position, so it needs no
 * mask). Returns that row of the block's output, (n, C). */
static Tensor *block_last_rows(const ClipText *t, const ClipTextBlock *b, Tensor *x) {
    const int64_t C = t->cfg.width, NH = t->cfg.heads, HS = C / NH;
    const int64_t n = x->shape[0], len = x->shape[1];
    Tensor *h = tensor_layernorm(x, b->ln_1_weight, b->ln_1_bias, LN_EPS);
    Tensor *kv = tensor_linear(h, tensor_slice(b->in_proj_weight, 0, C, 2 * C),
                               tensor_slice(b->in_proj_bias, 0, C, 2 * C)); /* (n, len, 2C) */
    Tensor *q = tensor_linear(tensor_slice(h, 1, len - 1, 1),
                              tensor_slice(b->in_proj_weight, 0, 0, C),
                              tensor_slice(b->in_proj_bias, 0, 0, C)); /* (n, 1, C) */
    Tensor *a = tensor_attention(tensor_attention_heads_split_cols(q, 0, NH, HS),
                                 tensor_attention_heads_split_cols(kv, 0, NH, HS),
                                 tensor_attention_heads_split_cols(kv, C, NH, HS), false,
                                 1.0f / sqrtf((float)HS)); /* (n, NH, 1, HS) */
    a = tensor_linear(tensor_attention_heads_merge(a), b->out_proj_weight, b->out_proj_bias);
    x = tensor_add(tensor_slice(x, 1, len - 1, 1), a); /* (n, 1, C) */
    h = tensor_layernorm(x, b->ln_2_weight, b->ln_2_bias, LN_EPS);
    h = tensor_quick_gelu(tensor_linear(h, b->c_fc_weight, b->c_fc_bias));
    h = tensor_linear(h, b->c_proj_weight, b->c_proj_bias);
    return tensor_reshape(tensor_add(x, h), 2, SHAPE(n, C));
}

/* eot NULL: x is already the pooled rows (n, C). */
static Tensor *pool_project(const ClipText *t, Tensor *x, Tensor *eot) {
    Tensor *pooled = eot ? tensor_gather_rows(x, eot) : x; /* (B, C) */
    pooled = tensor_layernorm(pooled, t->ln_final_weight, t->ln_final_bias, LN_EPS);
    return tensor_matmul(pooled, t->text_projection);
}

/* Step l of a group: block l (l < layers), or the pooling and projection (l == layers). */
static Tensor *group_step(const ClipText *t, const TextGroup *g, int64_t l, Tensor *x,
                          Tensor *eot) {
    const int64_t L = t->cfg.layers;
    if (l == L) return pool_project(t, x, g->uniform ? NULL : eot);
    if (l == L - 1 && g->uniform) return block_last_rows(t, &t->blocks[l], x);
    return block_forward(t, &t->blocks[l], x);
}

/* A group's input (n, len, C): its sequences' rows of e (B, T, C) (idx NULL: all, in order), cut
 * at len, plus the positional embedding. */
static Tensor *group_input(const ClipText *t, Tensor *e, Tensor *idx, const TextGroup *g) {
    const int64_t B = e->shape[0], T = e->shape[1], C = e->shape[2];
    Tensor *x = e;
    if (idx)
        x = tensor_reshape(tensor_embedding(tensor_reshape(e, 2, SHAPE(B, T * C)), idx), 3,
                           SHAPE(g->n, T, C));
    if (g->len < T) x = tensor_slice(x, 1, 0, g->len);
    Tensor *pos = t->positional_embedding;
    if (g->len < t->cfg.context) pos = tensor_slice(pos, 0, 0, g->len);
    return tensor_add(x, pos);
}

/* A group through the tower to its features (n, E). Without a tape each step runs in the work
 * arena and only its result is kept, at `mark` in the caller's arena. */
static Tensor *group_forward(const ClipText *t, const TextGroup *g, Tensor *x, Tensor *eot,
                             bool tape, size_t mark) {
    for (int64_t l = 0; l <= t->cfg.layers; l++) {
        if (tape) {
            x = group_step(t, g, l, x, eot);
            continue;
        }
        ClipWorkScope s = clip_work_begin(t->work, mark);
        x = group_step(t, g, l, x, eot);
        clip_work_end(&s, &x, 1);
    }
    return x;
}

/* The index tensors of a grouped plan: each group's sequences, a mixed group's
 * end-of-text positions, and where each sequence's features land in the groups' concatenation
 * (inv). Allocated before the groups run, so the work scopes never release them. */
static void plan_indices(const TextPlan *p, Tensor **idx, Tensor **eot, Tensor **inv) {
    int64_t B = 0;
    for (int k = 0; k < p->ngroups; k++) B += p->g[k].n;
    int64_t *h = xmalloc((size_t)B * sizeof *h);
    for (int k = 0; k < p->ngroups; k++) {
        const TextGroup *g = &p->g[k];
        idx[k] = index_tensor(p->order + g->first, g->n);
        eot[k] = NULL;
        if (g->uniform) continue;
        for (int64_t i = 0; i < g->n; i++) h[i] = p->eot[p->order[g->first + i]];
        eot[k] = index_tensor(h, g->n);
    }
    for (int64_t i = 0; i < B; i++) h[p->order[i]] = i;
    *inv = index_tensor(h, B);
    free(h);
}

/* e (B, T, C) embedded tokens, eot (B) in [0, T). `mark`: where the call's own allocations begin
 * in the current arena (everything after it is dropped when no tape is recorded). */
static Tensor *text_forward(const ClipText *t, Tensor *e, Tensor *eot, bool grouped,
                            bool truncate, size_t mark) {
    TextPlan p;
    text_plan(&p, eot, e->shape[1], grouped, truncate); /* also CHECKs every position */
    const bool tape = ag_grad_enabled() && e->requires_grad;
    CHECK(tape || tensor_arena() != t->work,
          "clip_text: called with the model's work arena current");
    if (p.ngroups == 1) { /* the batch's own order: the old single pass */
        Tensor *x = group_forward(t, &p.g[0], group_input(t, e, NULL, &p.g[0]), eot, tape, mark);
        text_plan_free(&p);
        if (!tape) arena_reset(t->work); /* empty again; coalesces the chunks of the first call */
        return x;
    }
    Tensor *idx[TEXT_GROUPS_MAX], *geot[TEXT_GROUPS_MAX], *inv, *ys[TEXT_GROUPS_MAX];
    plan_indices(&p, idx, geot, &inv);
    for (int k = 0; k < p.ngroups; k++) {
        const size_t mk = arena_mark(tensor_arena()); /* after the earlier groups' features */
        ys[k] = group_forward(t, &p.g[k], group_input(t, e, idx[k], &p.g[k]), geot[k], tape, mk);
    }
    text_plan_free(&p);
    /* Back to the batch's order: row b of the result is row inv[b] of the concatenation. */
    if (tape) return tensor_embedding(tensor_concat(ys, p.ngroups, 0), inv);
    ClipWorkScope s = clip_work_begin(t->work, mark);
    Tensor *y = tensor_embedding(tensor_concat(ys, p.ngroups, 0), inv);
    clip_work_end(&s, &y, 1);
    arena_reset(t->work);
    return y;
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
    return text_forward(t, x, eot, layout == CLIP_TEXT_BY_LENGTH,
                        layout != CLIP_TEXT_ALL_POSITIONS, arena_mark(tensor_arena()));
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
    Tensor *out = text_forward(t, e, eot, true, true, mark);
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
