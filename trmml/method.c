/* method.c — pieces the method files share (trmml/method.h): micro-batches, checkpoint
 * entries, CLIP's logit scale, the query-template text features, the prompt learner. */
#include "trmml/method.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/dist.h"
#include "tensor/ops/elementwise.h"
#include "trmml/train.h"

Tensor *trmml_rows(Tensor *t, int64_t b0, int64_t nb) {
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    const int64_t per = t->numel / t->shape[0];
    shape[0] = nb;
    return tensor_wrap(t->dtype, t->device, t->ndim, shape,
                       (char *)t->data + (size_t)(b0 * per) * dtype_size(t->dtype));
}

DropoutDraws trmml_dropout_draws(const TrmmlStepInput *in, int64_t b0) {
    DropoutDraws d = {.row0 = in->row0 + b0};
    rng_seed(&d.rng, in->seed);
    return d;
}

float trmml_scalar(const Tensor *t) { return tensor_item(t); }

int64_t trmml_micro_size(const TrmmlConfig *tc, int64_t B) {
    return tc->micro_batch > 0 && tc->micro_batch < B ? tc->micro_batch : B;
}

void trmml_micro_batches(TrmmlModel *m, const TrmmlStepInput *in, Tensor *targets,
                         bool per_image_mean, TrmmlMicroLoss loss_fn, void *ctx,
                         TrmmlStepStats *st) {
    Arena *arena = tensor_arena();
    const int64_t b = in->dense->shape[0], B = in->batch, mb = trmml_micro_size(&m->cfg.tc, b);
    for (int64_t b0 = 0; b0 < b; b0 += mb) {
        const int64_t nb = b - b0 < mb ? b - b0 : mb;
        size_t mark = arena_mark(arena);
        Tensor *loss = loss_fn(m, in, targets, b0, nb, ctx);
        if (per_image_mean) {
            /* ASL summed over classes, averaged over the batch's images. */
            const float w = (float)nb / (float)B;
            st->cls += w * (double)trmml_scalar(loss);
            ag_backward(tensor_mul_scalar(loss, w));
        } else {
            /* Summed over the batch: micro-batches simply add up. */
            st->cls += trmml_scalar(loss);
            ag_backward(loss);
        }
        arena_release(arena, mark);
    }
    dist_allreduce_sum_f64(&st->cls, 1); /* the batch's loss from the ranks' shares */
    st->loss = st->cls;
}

void *trmml_method_config_of(const RunConfig *rc, const TrmmlMethodOps *ops) {
    CHECK(trmml_method_ops(rc->method) == ops, "the %s keys of a %s configuration", ops->name,
          trmml_method_name(rc->method));
    return (void *)rc->mc.bytes;
}

void *trmml_method_head_of(const TrmmlModel *m, const TrmmlMethodOps *ops) {
    CHECK(m->ops == ops, "the %s head of a %s model", ops->name, m->ops->name);
    return m->head;
}

void trmml_method_free_head(TrmmlModel *m) {
    free(m->head);
    m->head = NULL;
}

void trmml_method_add_entry(RunTensor *out, int *n, int cap, const char *name, Tensor *t) {
    CHECK(*n < cap, "checkpoint entries: more than %d", cap);
    snprintf(out[*n].name, sizeof out[*n].name, "%s", name);
    out[*n].t = t;
    (*n)++;
}

float trmml_clip_logit_scale(const TrmmlModel *m) {
    float t = logf(100.0f);
    if (m->clip) tensor_copy_to_host(&t, m->clip->logit_scale);
    return t;
}

/* The query template with "{}" replaced by the class name (DECISION 9). */
static char *query_text(const char *tmpl, const char *name) {
    const char *hole = strstr(tmpl, "{}");
    size_t n = strlen(tmpl) + strlen(name) + 1;
    char *s = xmalloc(n);
    if (!hole)
        snprintf(s, n, "%s", tmpl);
    else
        snprintf(s, n, "%.*s%s%s", (int)(hole - tmpl), tmpl, name, hole + 2);
    for (char *p = s; *p; p++)
        if (*p == '_') *p = ' ';
    return s;
}

Status trmml_query_features(const TrmmlModel *m, const ClipTokenizer *tok, char *const *names,
                            float **out) {
    const int64_t C = m->C;
    char **texts = xcalloc((size_t)C, sizeof *texts);
    for (int64_t c = 0; c < C; c++) texts[c] = query_text(m->cfg.tc.query_template, names[c]);
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    Tensor *ids = NULL;
    *out = NULL;
    Status st = clip_tokenize_tensor(tok, (const char *const *)texts, (int)C, true, &ids, NULL);
    if (st == STATUS_OK) {
        bool g = ag_set_grad_enabled(false);
        Tensor *feat = clip_encode_text(m->clip, ids);
        ag_set_grad_enabled(g);
        *out = xmalloc((size_t)(C * m->d) * sizeof(float));
        tensor_copy_to_host(*out, feat);
    }
    arena_release(arena, mark);
    for (int64_t c = 0; c < C; c++) free(texts[c]);
    free(texts);
    return st;
}

void trmml_method_declare_prompt(TrmmlModel *m, int64_t text_width, bool positive_only) {
    const TrmmlConfig *tc = &m->cfg.tc;
    PromptConfig pc = trmml_prompt_config(m->C, text_width);
    pc.n_ctx = tc->prompt_ctx_len;
    pc.class_specific = tc->prompt_class_specific;
    pc.init_std = (float)tc->prompt_ctx_std;
    pc.positive_only = positive_only;
    trmml_prompt_declare(&m->prompt, &pc, m->ps);
}
