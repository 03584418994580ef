/* prompt.c — the dual prompt learner (SPEC §3): templates, prompt assembly, chunked text
 * features with two gradient schemes. Overview and API: trmml/prompt.h; walk-through:
 * docs/dualcoop.md.
 *
 * Assembly of class c's positive prompt (negative alike, with ctx_neg):
 *   x_c = template_emb[c]  with rows 1..n_ctx replaced by ctx_pos[c] (or the shared ctx_pos)
 * via tensor_write_rows, whose backward sends the overwritten rows of dL/dx to the contexts and
 * nothing to the frozen template. The positional embedding is added by the text tower
 * (clip_encode_text_embedded), as CoOp's TextEncoder does.
 *
 * A chunk of n classes is one call of the tower on 2n sequences, [positives; negatives], so
 * both prompt sets share its matrix products. */
#include "trmml/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/dist.h"
#include "tensor/ops/index.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/shape.h"

#define PLACEHOLDER "X" /* CoOp's placeholder word; its rows are overwritten by the contexts */

/* ---- configuration and parameters --------------------------------------------------------- */

PromptConfig trmml_prompt_config(int64_t n_classes, int64_t width) {
    return (PromptConfig){.n_classes = n_classes, .n_ctx = TRMML_PROMPT_N_CTX, .width = width,
                          .class_specific = true, .init_std = TRMML_PROMPT_INIT_STD};
}

int64_t trmml_prompt_num_params(const PromptConfig *cfg) {
    return (cfg->positive_only ? 1 : 2) * (cfg->class_specific ? cfg->n_classes : 1) * cfg->n_ctx *
           cfg->width;
}

void trmml_prompt_declare(PromptLearner *pl, const PromptConfig *cfg, ParamStore *ps) {
    CHECK(cfg->n_classes >= 1 && cfg->n_ctx >= 1 && cfg->width >= 1 && cfg->init_std >= 0,
          "prompt: bad config C=%lld n_ctx=%lld width=%lld std=%g", (long long)cfg->n_classes,
          (long long)cfg->n_ctx, (long long)cfg->width, cfg->init_std);
    memset(pl, 0, sizeof *pl);
    pl->cfg = *cfg;
    const int nd = cfg->class_specific ? 3 : 2;
    const int64_t *shape = cfg->class_specific ? SHAPE(cfg->n_classes, cfg->n_ctx, cfg->width)
                                               : SHAPE(cfg->n_ctx, cfg->width);
    pl->ctx_pos = param_add(ps, "prompt.ctx_pos", DT_F32, nd, shape, true);
    if (!cfg->positive_only) pl->ctx_neg = param_add(ps, "prompt.ctx_neg", DT_F32, nd, shape, true);
}

void trmml_prompt_init(PromptLearner *pl, uint64_t seed) {
    CHECK(pl->ctx_pos && pl->ctx_pos->data, "prompt_init: declare the contexts and finalize "
                                            "their ParamStore first");
    const int64_t n = pl->ctx_pos->numel;
    float *buf = xmalloc((size_t)n * sizeof(float));
    Rng rng;
    rng_seed(&rng, seed);
    rng_fill_normal(&rng, buf, n, 0.0f, pl->cfg.init_std);
    tensor_copy_from_host(pl->ctx_pos, buf);
    if (pl->ctx_neg) {
        rng_fill_normal(&rng, buf, n, 0.0f, pl->cfg.init_std);
        tensor_copy_from_host(pl->ctx_neg, buf);
    }
    free(buf);
}

void trmml_prompt_free(PromptLearner *pl) {
    if (pl->consts) param_store_destroy(pl->consts);
    free(pl->eot);
    pl->consts = NULL;
    pl->template_emb = NULL;
    pl->eot = NULL;
}

/* ---- templates ---------------------------------------------------------------------------- */

Status trmml_prompt_template_ids(const ClipTokenizer *tok, const char *const *names, int64_t n,
                                 int64_t n_ctx, Tensor **ids) {
    CHECK(n >= 1 && n_ctx >= 1 && ids, "prompt_template_ids: n = %lld, n_ctx = %lld",
          (long long)n, (long long)n_ctx);
    *ids = NULL;
    int32_t probe[4];
    CHECK(clip_tokenize(tok, PLACEHOLDER, probe, 4) == 1,
          "prompt: the placeholder word '%s' is not a single token", PLACEHOLDER);
    char **texts = xcalloc((size_t)n, sizeof *texts);
    int32_t *scratch = xmalloc(CLIP_CONTEXT_LENGTH * sizeof *scratch);
    Status st = STATUS_OK;
    for (int64_t c = 0; c < n && st == STATUS_OK; c++) {
        CHECK(names[c], "prompt_template_ids: class %lld has no name", (long long)c);
        size_t len = strlen(names[c]);
        texts[c] = xmalloc((size_t)n_ctx * 2 + len + 2);
        char *p = texts[c];
        for (int64_t k = 0; k < n_ctx; k++) *p++ = 'X', *p++ = ' ';
        for (size_t i = 0; i < len; i++) *p++ = names[c][i] == '_' ? ' ' : names[c][i];
        *p++ = '.', *p = '\0';
        int count = clip_tokenize(tok, texts[c], scratch, CLIP_CONTEXT_LENGTH);
        if (count < 0) st = (Status)count;
        else if (count + 2 > CLIP_CONTEXT_LENGTH)
            st = error_set(STATUS_ERR_USAGE,
                           "class %lld '%s': its prompt has %d tokens with %lld contexts; at most "
                           "%d fit in CLIP's context", (long long)c, names[c], count + 2,
                           (long long)n_ctx, CLIP_CONTEXT_LENGTH);
        else
            for (int64_t k = 0; k < n_ctx; k++)
                CHECK(scratch[k] == probe[0], "prompt: class '%s' changed placeholder %lld",
                      names[c], (long long)k);
    }
    if (st == STATUS_OK)
        st = clip_tokenize_tensor(tok, (const char *const *)texts, (int)n, false, ids, NULL);
    for (int64_t c = 0; c < n; c++) free(texts[c]);
    free(texts);
    free(scratch);
    return st;
}

void trmml_prompt_set_tokens(PromptLearner *pl, const Tensor *token_embedding, Tensor *ids) {
    const PromptConfig *cfg = &pl->cfg;
    CHECK(ids && ids->dtype == DT_I64 && ids->ndim == 2 && ids->shape[0] == cfg->n_classes &&
              ids->shape[1] >= cfg->n_ctx + 2 && ids->shape[1] <= CLIP_CONTEXT_LENGTH,
          "prompt_set_tokens: ids must be int64 (%lld, T) with %lld <= T <= %d, got %s %s",
          (long long)cfg->n_classes, (long long)cfg->n_ctx + 2, CLIP_CONTEXT_LENGTH,
          ids ? dtype_name(ids->dtype) : "NULL", ids ? tensor_shape_str(ids) : "");
    tensor_check_f32("prompt_set_tokens", token_embedding, "token_embedding");
    CHECK(token_embedding->ndim == 2 && token_embedding->shape[1] == cfg->width,
          "prompt_set_tokens: token_embedding %s must be (V, %lld)",
          tensor_shape_str(token_embedding), (long long)cfg->width);
    tensor_check_same_device("prompt_set_tokens", token_embedding, ids);
    const int64_t C = cfg->n_classes, W = cfg->width;
    const DeviceKind dev = ids->device;
    const DeviceTable *dt = device_table(dev);

    Arena *arena = tensor_arena();
    const size_t mark = arena_mark(arena);
    bool grad = ag_set_grad_enabled(false);
    Tensor *eot = clip_text_eot_positions(ids);
    int64_t *host = xmalloc((size_t)C * sizeof *host), T = 0;
    dt->copy_d2h(host, eot->data, (size_t)C * sizeof *host);
    for (int64_t c = 0; c < C; c++) {
        /* SOT, the contexts, at least one name token, then EOT */
        CHECK(host[c] >= cfg->n_ctx + 2, "prompt_set_tokens: class %lld ends (EOT at %lld) "
              "before its name: need SOT, %lld placeholders and a name first", (long long)c,
              (long long)host[c], (long long)cfg->n_ctx);
        if (host[c] + 1 > T) T = host[c] + 1;
    }
    trmml_prompt_free(pl);
    pl->eot = host;
    pl->T = T;
    pl->consts = param_store_create(dev, "prompt templates");
    pl->template_emb = param_add(pl->consts, "prompt.template", DT_F32, 3, SHAPE(C, T, W), false);
    param_store_finalize(pl->consts);
    /* Embed all columns, keep the first T of each row (later ones never reach a feature). */
    Tensor *e = tensor_embedding((Tensor *)token_embedding, ids); /* (C, ids T, W) */
    const int64_t Tin = ids->shape[1];
    for (int64_t c = 0; c < C; c++)
        dt->copy_d2d((float *)pl->template_emb->data + c * T * W, (float *)e->data + c * Tin * W,
                     (size_t)(T * W) * sizeof(float));
    ag_set_grad_enabled(grad);
    arena_release(arena, mark);
}

Status trmml_prompt_set_classes(PromptLearner *pl, const ClipModel *m, const ClipTokenizer *tok,
                                const char *const *names) {
    Arena *arena = tensor_arena();
    const size_t mark = arena_mark(arena);
    Tensor *ids = NULL;
    Status st = trmml_prompt_template_ids(tok, names, pl->cfg.n_classes, pl->cfg.n_ctx, &ids);
    if (st == STATUS_OK) trmml_prompt_set_tokens(pl, m->text.token_embedding, ids);
    arena_release(arena, mark);
    return st;
}

/* ---- assembly ----------------------------------------------------------------------------- */

/* The contexts of classes [c0, c0 + n) as (n, n_ctx, W), or the shared ones as (1, n_ctx, W). */
static Tensor *context_rows(const PromptLearner *pl, Tensor *ctx, int64_t c0, int64_t n) {
    if (!pl->cfg.class_specific) return tensor_reshape(ctx, 3, SHAPE(1, pl->cfg.n_ctx, pl->cfg.width));
    return n == pl->cfg.n_classes ? ctx : tensor_slice(ctx, 0, c0, n);
}

Tensor *trmml_prompt_embeddings(const PromptLearner *pl, int64_t c0, int64_t n, Tensor **eot) {
    CHECK(pl->template_emb, "prompt: no templates (call trmml_prompt_set_tokens first)");
    const int64_t C = pl->cfg.n_classes, T = pl->T, W = pl->cfg.width;
    CHECK(c0 >= 0 && n >= 1 && c0 + n <= C, "prompt_embeddings: classes [%lld, %lld) outside "
          "[0, %lld)", (long long)c0, (long long)(c0 + n), (long long)C);
    const DeviceKind dev = pl->template_emb->device;
    /* A header over the frozen templates of the chunk: a constant, so no gradient reaches it. */
    Tensor *base = tensor_wrap(DT_F32, dev, 3, SHAPE(n, T, W),
                               (float *)pl->template_emb->data + c0 * T * W);
    const int sides = pl->ctx_neg ? 2 : 1;
    Tensor *parts[2] = {tensor_write_rows(base, context_rows(pl, pl->ctx_pos, c0, n), 1), NULL};
    if (pl->ctx_neg) parts[1] = tensor_write_rows(base, context_rows(pl, pl->ctx_neg, c0, n), 1);
    if (eot) {
        *eot = tensor_empty(DT_I64, 1, SHAPE(sides * n));
        const size_t bytes = (size_t)n * sizeof(int64_t);
        for (int s = 0; s < sides; s++)
            device_table(dev)->copy_h2d((int64_t *)(*eot)->data + s * n, pl->eot + c0, bytes);
    }
    return sides == 1 ? parts[0] : tensor_concat(parts, 2, 0);
}

/* ---- features ----------------------------------------------------------------------------- */

/* L2-normalised features (2n, E) of classes [c0, c0 + n): positives, then negatives (only the
 * n positives when positive_only). */
static Tensor *encode_chunk(const PromptLearner *pl, const ClipModel *m, int64_t c0, int64_t n) {
    CHECK(m->cfg.text.width == pl->cfg.width, "prompt: contexts of width %lld for a text tower of "
          "width %lld", (long long)pl->cfg.width, (long long)m->cfg.text.width);
    Tensor *eot;
    Tensor *x = trmml_prompt_embeddings(pl, c0, n, &eot);
    return tensor_l2_normalize(clip_encode_text_embedded(m, x, eot), 1);
}

static int64_t chunk_size(const PromptLearner *pl, int64_t chunk) {
    return chunk <= 0 || chunk > pl->cfg.n_classes ? pl->cfg.n_classes : chunk;
}

/* The classes [lo, hi) this rank encodes in the training scheme (tensor/dist.h; [0, C) in one
 * process): under MPI the text tower's forward and backward are split over the ranks by class
 * (docs/distributed.md). */
static void class_share(const PromptLearner *pl, int64_t *lo, int64_t *hi) {
    dist_share(pl->cfg.n_classes, dist_rank(), lo, hi);
}

/* Under MPI: dL/dG+ and dL/dG- of the whole batch on every rank (the ranks' shares summed, in
 * rank order) before each rank back-propagates its classes' rows. */
static void sum_feature_grads(const Tensor *gpos, const Tensor *gneg) {
    if (dist_size() == 1) return;
    CHECK(gpos->grad && (!gneg || gneg->grad),
          "prompt backward under MPI: the features' gradient buffers must exist on every rank");
    dist_allreduce_tensor(gpos->grad);
    if (gneg) dist_allreduce_tensor(gneg->grad);
}

void trmml_prompt_features(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                           Tensor **gpos, Tensor **gneg) {
    const int64_t C = pl->cfg.n_classes, K = chunk_size(pl, chunk);
    const int nch = (int)((C + K - 1) / K);
    Tensor **pos = arena_alloc_host(tensor_arena(), 2 * (size_t)nch * sizeof *pos), **neg = pos + nch;
    for (int i = 0; i < nch; i++) {
        const int64_t c0 = i * K, n = C - c0 < K ? C - c0 : K;
        Tensor *halves[2];
        if (pl->ctx_neg) {
            tensor_split(encode_chunk(pl, m, c0, n), 0, SHAPE(n, n), 2, halves);
        } else {
            halves[0] = encode_chunk(pl, m, c0, n);
            halves[1] = NULL;
        }
        pos[i] = halves[0];
        neg[i] = halves[1];
    }
    *gpos = nch == 1 ? pos[0] : tensor_concat(pos, nch, 0);
    *gneg = !pl->ctx_neg ? NULL : nch == 1 ? neg[0] : tensor_concat(neg, nch, 0);
}

void trmml_prompt_features_detached(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                                    Tensor **gpos, Tensor **gneg) {
    const int64_t C = pl->cfg.n_classes, K = chunk_size(pl, chunk), E = m->cfg.embed_dim;
    const DeviceTable *dt = device_table(pl->template_emb ? pl->template_emb->device : DEVICE_CPU);
    Tensor *gp = tensor_empty(DT_F32, 2, SHAPE(C, E));
    Tensor *gn = pl->ctx_neg ? tensor_empty(DT_F32, 2, SHAPE(C, E)) : NULL;
    Arena *arena = tensor_arena();
    int64_t lo, hi;
    class_share(pl, &lo, &hi);
    bool grad = ag_set_grad_enabled(false);
    for (int64_t c0 = lo; c0 < hi; c0 += K) {
        const int64_t n = hi - c0 < K ? hi - c0 : K;
        const size_t mark = arena_mark(arena);
        Tensor *g = encode_chunk(pl, m, c0, n);
        const size_t bytes = (size_t)(n * E) * sizeof(float);
        dt->copy_d2d((float *)gp->data + c0 * E, g->data, bytes);
        if (gn) dt->copy_d2d((float *)gn->data + c0 * E, (float *)g->data + n * E, bytes);
        arena_release(arena, mark);
    }
    ag_set_grad_enabled(grad);
    dist_allgather_rows(gp); /* every rank's classes (one process: nothing to do) */
    if (gn) dist_allgather_rows(gn);
    /* Buffers taken now, below any mark the caller sets for its micro-batches. */
    ag_set_requires_grad(gp, tensor_zeros_like(gp));
    if (gn) ag_set_requires_grad(gn, tensor_zeros_like(gn));
    *gpos = gp;
    *gneg = gn;
}

bool trmml_prompt_features_kept(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                                Tensor **gpos, Tensor **gneg, PromptGraph *graph) {
    const int64_t C = pl->cfg.n_classes, E = m->cfg.embed_dim;
    int64_t lo, hi;
    class_share(pl, &lo, &hi);
    const int64_t n = hi - lo; /* this rank's classes (all C in one process) */
    graph->out = NULL;
    if (n == 0 || chunk_size(pl, chunk) < n || !ag_grad_enabled() || ag_tape_length() != 0) {
        trmml_prompt_features_detached(pl, m, chunk, gpos, gneg);
        return false;
    }
    Tensor *g = encode_chunk(pl, m, lo, n); /* (sides*n, E), recorded */
    graph->out = g;
    graph->tape = ag_tape_stash();
    /* Leaf copies for the heads, as the detached scheme returns them. */
    const DeviceTable *dt = device_table(g->device);
    const size_t bytes = (size_t)(n * E) * sizeof(float);
    Tensor *gp = tensor_empty(DT_F32, 2, SHAPE(C, E));
    dt->copy_d2d((float *)gp->data + lo * E, g->data, bytes);
    dist_allgather_rows(gp);
    ag_set_requires_grad(gp, tensor_zeros_like(gp));
    Tensor *gn = NULL;
    if (pl->ctx_neg) {
        gn = tensor_empty(DT_F32, 2, SHAPE(C, E));
        dt->copy_d2d((float *)gn->data + lo * E, (float *)g->data + n * E, bytes);
        dist_allgather_rows(gn);
        ag_set_requires_grad(gn, tensor_zeros_like(gn));
    }
    *gpos = gp;
    *gneg = gn;
    return true;
}

void trmml_prompt_backward_kept(const PromptLearner *pl, PromptGraph *graph, const Tensor *gpos,
                                const Tensor *gneg) {
    CHECK(graph->out, "prompt_backward_kept: no kept graph");
    const int64_t E = graph->out->shape[1];
    int64_t lo, hi;
    class_share(pl, &lo, &hi);
    const int64_t n = hi - lo;
    ag_tape_restore(graph->tape); /* CHECKs that the heads' backward passes emptied the tape */
    sum_feature_grads(gpos, gneg);
    const Tensor *dneg = gneg ? gneg->grad : NULL;
    if (!gpos->grad && !dneg) { /* the loss did not depend on the features */
        ag_tape_reset();
        graph->out = NULL;
        return;
    }
    Tensor *dg = tensor_zeros_like(graph->out);
    const DeviceTable *dt = device_table(dg->device);
    const size_t bytes = (size_t)(n * E) * sizeof(float);
    if (gpos->grad) dt->copy_d2d(dg->data, (float *)gpos->grad->data + lo * E, bytes);
    if (dneg) dt->copy_d2d((float *)dg->data + n * E, (float *)dneg->data + lo * E, bytes);
    ag_backward_with(graph->out, dg);
    graph->out = NULL;
}

void trmml_prompt_backward(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                           const Tensor *gpos, const Tensor *gneg) {
    const int64_t C = pl->cfg.n_classes, K = chunk_size(pl, chunk), E = m->cfg.embed_dim;
    CHECK(gpos && (gneg != NULL) == (pl->ctx_neg != NULL) && gpos->ndim == 2 &&
              gpos->shape[0] == C && gpos->shape[1] == E && (!gneg || tensor_same_shape(gpos, gneg)),
          "prompt_backward: features must be (%lld, %lld), got %s and %s", (long long)C,
          (long long)E, gpos ? tensor_shape_str(gpos) : "NULL",
          gneg ? tensor_shape_str(gneg) : "NULL");
    CHECK(ag_tape_length() == 0, "prompt_backward: the tape holds %d nodes; run the head's "
          "backward first (this backward would consume them)", ag_tape_length());
    CHECK(ag_grad_enabled() && pl->ctx_pos->requires_grad &&
              (!pl->ctx_neg || pl->ctx_neg->requires_grad),
          "prompt_backward: grad mode is off or the contexts are frozen");
    sum_feature_grads(gpos, gneg);
    const Tensor *dneg = gneg ? gneg->grad : NULL;
    if (!gpos->grad && !dneg) return; /* the loss did not depend on the features */
    const int sides = gneg ? 2 : 1;
    const DeviceTable *dt = device_table(pl->template_emb->device);
    Arena *arena = tensor_arena();
    int64_t lo, hi;
    class_share(pl, &lo, &hi);
    for (int64_t c0 = lo; c0 < hi; c0 += K) {
        const int64_t n = hi - c0 < K ? hi - c0 : K;
        const size_t mark = arena_mark(arena);
        Tensor *g = encode_chunk(pl, m, c0, n);
        /* dL/dg for this chunk: rows c0..c0+n of dL/dG+ above those of dL/dG- */
        Tensor *dg = tensor_zeros(DT_F32, 2, SHAPE(sides * n, E));
        const size_t bytes = (size_t)(n * E) * sizeof(float);
        if (gpos->grad) dt->copy_d2d(dg->data, (float *)gpos->grad->data + c0 * E, bytes);
        if (dneg) dt->copy_d2d((float *)dg->data + n * E, (float *)dneg->data + c0 * E, bytes);
        ag_backward_with(g, dg);
        arena_release(arena, mark);
    }
}
