/* method_trmml.c — TRM-ML (SPEC §4) behind the method interface (trmml/method.h): CARL's
 * forward and losses over micro-batches, MMCP's batch-level pseudo-labels and bank, the two
 * stages of DECISION 19. The order of one step is SPEC §4.9; docs/training.md walks through it. */
#include "trmml/method_trmml.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/dist.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape.h"
#include "trmml/trmml_loss.h"

const TrmmlMethodOps METHOD_TRMML;

/* ---- configuration: TRM-ML's own keys (MethodTrmmlConfig, trmml/trmml_config.h) ---- */

static const char *const KD_NAMES[] = {"softmax", "bernoulli", NULL};
static const char *const QUERY_NAMES[] = {"text", "random", NULL};
static const char *const REGION_NAMES[] = {"mean", "sum", NULL};
static const char *const STAGE_NAMES[] = {"two_stage", "single_run", NULL};
static const char *const STAGE2_NAMES[] = {"fresh", "stage1", NULL};

#define T MethodTrmmlConfig
static const KeySpec TRMML_KEYS[] = {
    /* the Table-3 components: CARL (off is --method baseline), KD, MMCP, MMCL */
    KEY_BOOL(T, "use_carl", use_carl, "Table 3; off = text-image baseline, SPEC 9.3 DECISION 22"),
    KEY_BOOL(T, "use_kd", use_kd, "Table 3; SPEC 4.4"),
    KEY_BOOL(T, "use_mmcp", use_mmcp, "Table 3; SPEC 4.5"),
    KEY_BOOL(T, "use_mmcl", use_mmcl, "Table 3; SPEC 4.6"),
    KEY_DOUBLE(T, "alpha", alpha, 0, 1e6, "weight of the region-branch L_cls, SPEC 4.3"),
    KEY_DOUBLE(T, "beta", beta, 0, 1e6, "weight of L_KD, SPEC 4.7"),
    KEY_DOUBLE(T, "gamma", gamma, 0, 1e6, "weight of L_NCE, SPEC 4.7"),
    KEY_BOOL(T, "drop_token0", drop_token0, "dense features = spatial tokens only, DECISION 7"),
    KEY_ENUM(T, "query_init", query_init, QUERY_NAMES, "DECISION 9"),
    KEY_INT(T, "mlp_hidden", mlp_hidden, 0, 1 << 20, "Eq.3 MLP d->H->d, 0 = d, DECISION 13"),
    KEY_INT(T, "head_hidden", head_hidden, 1, 1 << 20, "projection head d->H->d, DECISION 13"),
    KEY_BOOL(T, "attn_fold", attn_fold,
             "fold W_k into the queries and W_v after pooling, SPEC 4.2 Cost"),
    KEY_ENUM(T, "region_pool", region_pool, REGION_NAMES, "Eq.4 weighted mean or sum, DECISION 12"),
    KEY_DOUBLE(T, "region_eps", region_eps, 0, 1, "Eq.4 denominator guard, SPEC 4.2"),
    KEY_BOOL(T, "temp_learnable", temp_learnable, "t is trained, DECISION 14"),
    KEY_ENUM(T, "kd_form", kd_form, KD_NAMES,
             "class-wise softmax KL or per-class Bernoulli KL, DECISION 15"),
    KEY_DOUBLE(T, "kd_temperature", kd_temperature, 1e-3, 1e3, "SPEC 4.4 (T = 1)"),
    KEY_INT(T, "mmcp_k", mmcp_k, 1, 1 << 20, "pixels per positive instance, DECISION 17"),
    KEY_INT(T, "mmcp_queue_len", mmcp_queue_len, 1, 1 << 20, "bank queue length l, DECISION 17"),
    KEY_DOUBLE(T, "mmcp_eta", mmcp_eta, 0, 1, "threshold EMA momentum, DECISION 17"),
    KEY_BOOL(T, "mmcp_require_full", mmcp_require_full,
             "visual similarity only from full queues, DECISION 17"),
    KEY_BOOL(T, "mmcp_use_visual", mmcp_use_visual, "visual pseudo-label (Table 6), SPEC 4.5"),
    KEY_BOOL(T, "mmcp_use_text", mmcp_use_text, "text pseudo-label (Table 6), DECISION 28"),
    KEY_DOUBLE(T, "nce_tau", nce_tau, 1e-4, 100, "InfoNCE temperature, DECISION 18"),
    KEY_BOOL(T, "nce_use_bank", nce_use_bank,
             "bank entries as extra positives/negatives, DECISION 18"),
    KEY_INT(T, "nce_bank_per_class", nce_bank_per_class, 0, 1 << 20,
      "newest entries per queue used by MMCL, 0 = all, SPEC 4.6"),
    KEY_ENUM(T, "stage_mode", stage_mode, STAGE_NAMES, "DECISION 19"),
    KEY_ENUM(T, "stage2_init", stage2_init, STAGE2_NAMES, "DECISION 19"),
    KEY_INT(T, "single_run_stage1_epochs", single_run_stage1_epochs, 0, 1 << 20, "DECISION 19"),
};
#undef T

MethodTrmmlConfig method_trmml_config_default(void) {
    return (MethodTrmmlConfig){
        .use_carl = true, .use_kd = true, .use_mmcp = true, .use_mmcl = true, /* Table 3 */
        .alpha = 1.0, .beta = 0.05, .gamma = 0.01,                            /* SPEC §4.7 */
        /* CARL (DECISIONS 7, 9-14) */
        .drop_token0 = true, .query_init = TRMML_QUERY_INIT_TEXT, .mlp_hidden = 0,
        .head_hidden = 2048, .attn_fold = true, .region_pool = TRMML_REGION_MEAN,
        .region_eps = 1e-6, .temp_learnable = true,
        .kd_form = TRMML_KD_SOFTMAX, .kd_temperature = 1.0, /* DECISION 15 */
        /* MMCP and MMCL (DECISIONS 16-18) */
        .mmcp_k = 4, .mmcp_queue_len = 256, .mmcp_eta = 0.99, .mmcp_require_full = true,
        .mmcp_use_visual = true, .mmcp_use_text = true,
        .nce_tau = 0.07, .nce_use_bank = true, .nce_bank_per_class = 0,
        /* stages (DECISION 19) */
        .stage_mode = TRMML_STAGES_TWO, .stage2_init = TRMML_STAGE2_FRESH,
        .single_run_stage1_epochs = 10,
    };
}

static void trmml_method_defaults(void *mc, TrmmlConfig *tc, const char *dataset) {
    *(MethodTrmmlConfig *)mc = method_trmml_config_default();
}

static Status trmml_method_check(const RunConfig *rc) {
    const MethodTrmmlConfig *c = method_trmml_config(rc);
    if (!c->use_carl)
        return error_set(STATUS_ERR_USAGE, "configuration: use_carl = false is the baseline method "
                                           "(--method baseline)");
    if (c->nce_bank_per_class > c->mmcp_queue_len)
        return error_set(STATUS_ERR_USAGE, "config: nce_bank_per_class %lld > mmcp_queue_len %lld",
                         (long long)c->nce_bank_per_class, (long long)c->mmcp_queue_len);
    if (c->single_run_stage1_epochs > rc->tc.epochs && c->stage_mode == TRMML_STAGES_SINGLE_RUN)
        return error_set(STATUS_ERR_USAGE, "config: single_run_stage1_epochs %lld > epochs %lld",
                         (long long)c->single_run_stage1_epochs, (long long)rc->tc.epochs);
    return STATUS_OK;
}

MethodTrmmlConfig *method_trmml_config(const RunConfig *rc) {
    return trmml_method_config_of(rc, &METHOD_TRMML);
}

MethodTrmmlState *method_trmml_state(const TrmmlModel *m) {
    return trmml_method_head_of(m, &METHOD_TRMML);
}

Tensor *method_trmml_head_input(const TrmmlModel *m, Tensor *dense) {
    if (!method_trmml_config(&m->cfg)->drop_token0) return dense;
    bool g = ag_set_grad_enabled(false);
    Tensor *f = tensor_slice(dense, 1, 1, dense->shape[1] - 1); /* DECISION 7: spatial tokens */
    ag_set_grad_enabled(g);
    return f;
}

/* ---- the model ---- */

static void trmml_declare(TrmmlModel *m, int64_t text_width) {
    MethodTrmmlState *s = xcalloc(1, sizeof *s);
    m->head = s;
    trmml_method_declare_prompt(m, text_width, false);
    trmml_carl_declare(&s->carl, m->ps, "carl", m->C, m->d, &m->cfg.tc,
                       method_trmml_config(&m->cfg));
}

static Status trmml_create(TrmmlModel *m, const ClipTokenizer *tok, char *const *names) {
    MethodTrmmlState *s = m->head;
    trmml_mmcp_init(&s->mmcp, m->C, m->d, method_trmml_config(&m->cfg));
    /* Query initialisation: CLIP text features of "a photo of a {class}." (no tape). */
    return trmml_query_features(m, tok, names, &s->query_text);
}

static void trmml_init(TrmmlModel *m, uint64_t seed, bool reset_prototypes) {
    MethodTrmmlState *s = m->head;
    Rng rng;
    rng_seed(&rng, trmml_seed_mix(seed, 2, 0, 0));
    trmml_carl_init(&s->carl, &rng, s->query_text, trmml_clip_logit_scale(m));
    /* A fresh bank and thresholds; the prototypes survive a stage-2 re-initialisation. */
    const size_t bytes = (size_t)(m->C * m->d) * sizeof(float);
    float *proto = NULL;
    bool had = s->mmcp.has_proto && !reset_prototypes;
    if (had) {
        proto = xmalloc(bytes);
        memcpy(proto, s->mmcp.proto, bytes);
    }
    trmml_mmcp_free(&s->mmcp);
    trmml_mmcp_init(&s->mmcp, m->C, m->d, method_trmml_config(&m->cfg));
    if (had) {
        memcpy(s->mmcp.proto, proto, bytes);
        s->mmcp.has_proto = true;
        free(proto);
    }
}

static void trmml_free(TrmmlModel *m) {
    MethodTrmmlState *s = m->head;
    if (!s) return;
    trmml_mmcp_free(&s->mmcp);
    free(s->query_text);
    free(s);
    m->head = NULL;
}

/* ---- one step ---- */

/* Pass 0, no tape: R of this rank's rows and F^r of the whole batch, which MMCP's batch
 * statistics, the InfoNCE over all positive regions and the bank update need (the same values
 * the taped forward of each micro-batch recomputes). Under MPI each rank computes its rows of
 * F^r and they are gathered (docs/distributed.md). */
static void region_pass(const TrmmlModel *m, Tensor *f, int64_t row0, int64_t B, Tensor **r_all,
                        Tensor **fr_all) {
    const MethodTrmmlState *s = m->head;
    Arena *arena = tensor_arena();
    const int64_t b = f->shape[0], HW = f->shape[1], C = m->C, d = m->d;
    const int64_t mb = trmml_micro_size(&m->cfg.tc, b);
    *fr_all = tensor_empty(DT_F32, 3, SHAPE(B, C, d));
    *r_all = tensor_empty(DT_F32, 3, SHAPE(b, C, HW));
    bool g = ag_set_grad_enabled(false);
    for (int64_t b0 = 0; b0 < b; b0 += mb) {
        const int64_t nb = b - b0 < mb ? b - b0 : mb;
        size_t mark = arena_mark(arena);
        Tensor *fb = trmml_rows(f, b0, nb);
        Tensor *r = tensor_sigmoid(trmml_carl_energies(&s->carl, fb));
        Tensor *fr = trmml_carl_region_features(&s->carl, r, fb);
        const DeviceTable *dt = device_table(fr->device);
        dt->copy_d2d(tensor_f32(*fr_all) + (row0 + b0) * C * d, fr->data,
                     (size_t)(nb * C * d) * sizeof(float));
        dt->copy_d2d(tensor_f32(*r_all) + b0 * C * HW, r->data, (size_t)(nb * C * HW) * sizeof(float));
        arena_release(arena, mark);
    }
    ag_set_grad_enabled(g);
    dist_allgather_rows(*fr_all);
}

/* §4.9 steps 5-6: pseudo-labels from the pre-batch bank (when the phase is on), then targets,
 * both of the whole batch (every rank alike: the thresholds' EMA sees the whole batch). */
static Tensor *step_targets(TrmmlModel *m, const TrmmlStepInput *in, Tensor *fr_all,
                            TrmmlStepStats *st) {
    MethodTrmmlState *s = m->head;
    const bool sp = m->cfg.tc.single_positive;
    Tensor *pseudo = NULL;
    if (in->phase_on) {
        pseudo = trmml_mmcp_pseudo_labels(&s->mmcp, fr_all, in->y_batch, sp, NULL, NULL);
        float *p = tensor_to_host(pseudo);
        for (int64_t i = 0; i < pseudo->numel; i++) {
            st->pseudo_pos += p[i] > 0;
            st->pseudo_neg += p[i] < 0;
        }
        free(p);
    }
    return trmml_mmcp_targets(in->y_batch, pseudo, sp);
}

/* L_NCE on the whole batch, with F^r as a leaf: its gradient reaches the projection head and G+
 * now, and F^r's own gradient is carried into each micro-batch. */
static void nce_pass(TrmmlModel *m, const TrmmlStepInput *in, Tensor *fr_all, TrmmlStepStats *st) {
    MethodTrmmlState *s = m->head;
    const MethodTrmmlConfig *mc = method_trmml_config(&m->cfg);
    if (!mc->use_mmcl) return;
    Arena *arena = tensor_arena();
    ag_set_requires_grad(fr_all, tensor_zeros_like(fr_all));
    size_t mark = arena_mark(arena);
    Tensor *l = trmml_loss_nce(&s->carl, mc, in->gpos, fr_all, in->y_batch, &s->mmcp);
    st->nce = trmml_scalar(l);
    if (l->requires_grad && mc->gamma != 0) ag_backward(tensor_mul_scalar(l, (float)mc->gamma));
    arena_release(arena, mark);
    if (!dist_is_root()) {
        /* Every rank computes the whole batch's InfoNCE (each needs dL/dF^r of its rows); its
         * gradients of the parameters and of G count once, on rank 0. They are the first
         * gradients of the step (trmml_train_step zeroes them, the text forward adds none),
         * so zeroing them leaves exactly F^r's. */
        param_zero_grad(m->ps);
        if (in->gpos->grad) tensor_fill(in->gpos->grad, 0.0f);
        if (in->gneg && in->gneg->grad) tensor_fill(in->gneg->grad, 0.0f);
    }
}

/* One micro-batch's L_cls (both branches) and L_KD, per-image terms weighted by nb/B, plus
 * <F^r, dL_NCE/dF^r>: a term whose gradient in F^r is exactly the InfoNCE's. b0 counts this
 * rank's rows; targets and F^r are the whole batch's. */
static Tensor *micro_loss(TrmmlModel *m, const TrmmlStepInput *in, Tensor *f, Tensor *targets,
                          Tensor *fr_all, int64_t b0, int64_t nb, TrmmlStepStats *st) {
    MethodTrmmlState *s = m->head;
    const TrmmlConfig *tc = &m->cfg.tc;
    const MethodTrmmlConfig *mc = method_trmml_config(&m->cfg);
    const int64_t B = in->batch, row = in->row0 + b0;
    Tensor *tb = trmml_rows(targets, row, nb);
    TrmmlCarlOut out;
    DropoutDraws drop = trmml_dropout_draws(in, b0); /* the whole batch's masks, any split */
    trmml_carl_forward(&s->carl, trmml_rows(f, b0, nb), in->gpos, in->gneg, true, &drop, &out);
    const float w = tc->asl_reduction == TRMML_ASL_SUM ? 1.0f : (float)nb / (float)B;
    Tensor *lq = trmml_loss_cls(tc, out.uq, tb), *lr = trmml_loss_cls(tc, out.ur, tb);
    Tensor *loss = tensor_add(lq, tensor_mul_scalar(lr, (float)mc->alpha));
    st->cls += w * ((double)trmml_scalar(lq) + mc->alpha * trmml_scalar(lr));
    if (mc->use_kd) {
        Tensor *kd = trmml_loss_kd(mc, out.uq, out.ur);
        st->kd += w * (double)trmml_scalar(kd);
        loss = tensor_add(loss, tensor_mul_scalar(kd, (float)mc->beta));
    }
    loss = tensor_mul_scalar(loss, w);
    if (fr_all->grad)
        loss = tensor_add(loss,
                          tensor_sum_all(tensor_mul(out.fr, trmml_rows(fr_all->grad, row, nb))));
    return loss;
}

static void trmml_step(TrmmlModel *m, const TrmmlStepInput *in, TrmmlStepStats *st) {
    MethodTrmmlState *s = m->head;
    const TrmmlConfig *tc = &m->cfg.tc;
    Arena *arena = tensor_arena();
    Tensor *f = method_trmml_head_input(m, in->dense); /* (b,HW,d): this rank's rows */
    const int64_t b = f->shape[0], mb = trmml_micro_size(tc, b);
    Tensor *r_all, *fr_all;
    region_pass(m, f, in->row0, in->batch, &r_all, &fr_all);
    Tensor *targets = step_targets(m, in, fr_all, st);
    nce_pass(m, in, fr_all, st);
    for (int64_t b0 = 0; b0 < b; b0 += mb) {
        const int64_t nb = b - b0 < mb ? b - b0 : mb;
        size_t mark = arena_mark(arena);
        ag_backward(micro_loss(m, in, f, targets, fr_all, b0, nb, st));
        arena_release(arena, mark);
    }
    /* The per-image terms from the ranks' shares (the InfoNCE and the pseudo-label counts are
     * the whole batch's on every rank already). */
    double terms[2] = {st->cls, st->kd};
    dist_allreduce_sum_f64(terms, 2);
    st->cls = terms[0];
    st->kd = terms[1];
    const MethodTrmmlConfig *mc = method_trmml_config(&m->cfg);
    st->loss = st->cls + mc->beta * st->kd + mc->gamma * st->nce;
    /* The bank update happens after the optimizer step (DECISION 27): keep what it needs. */
    s->regions = r_all;
    s->f = f;
}

/* §4.9 step 8: this batch's top-k pixels of ground-truth positives into the bank. Under MPI
 * each rank chooses the pixels of its rows, and every rank pushes every rank's choice in rank
 * order, which is the batch's image order: the banks stay the same on every rank. */
static void bank_push(MethodTrmmlState *s, const TrmmlStepInput *in) {
    TrmmlMmcp *b = &s->mmcp;
    if (dist_size() == 1) {
        trmml_mmcp_push(b, s->regions, s->f, in->y);
        return;
    }
    const int R = dist_size();
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    const int64_t cap = trmml_mmcp_select_cap(b, in->y);
    float *vecs = arena_alloc_host(arena, (size_t)(cap * b->d) * sizeof(float));
    int64_t *cls = arena_alloc_host(arena, (size_t)cap * sizeof(int64_t));
    const int64_t n = in->y->shape[0] ? trmml_mmcp_select(b, s->regions, s->f, in->y, vecs, cls)
                                      : 0;
    int64_t *counts = arena_alloc_host(arena, (size_t)R * sizeof(int64_t));
    dist_allgather_i64(n, counts);
    int64_t total = 0;
    size_t *vec_bytes = arena_alloc_host(arena, (size_t)R * sizeof(size_t));
    size_t *cls_bytes = arena_alloc_host(arena, (size_t)R * sizeof(size_t));
    for (int r = 0; r < R; r++) {
        total += counts[r];
        vec_bytes[r] = (size_t)(counts[r] * b->d) * sizeof(float);
        cls_bytes[r] = (size_t)counts[r] * sizeof(int64_t);
    }
    float *all_vecs = arena_alloc_host(arena, (size_t)(total * b->d) * sizeof(float));
    int64_t *all_cls = arena_alloc_host(arena, (size_t)total * sizeof(int64_t));
    dist_allgatherv(vecs, vec_bytes[dist_rank()], all_vecs, vec_bytes);
    dist_allgatherv(cls, cls_bytes[dist_rank()], all_cls, cls_bytes);
    for (int64_t e = 0; e < total; e++) trmml_mmcp_push_vector(b, all_cls[e], all_vecs + e * b->d);
    arena_release(arena, mark);
}

static void trmml_after_update(TrmmlModel *m, const TrmmlStepInput *in) {
    MethodTrmmlState *s = m->head;
    trmml_carl_clamp_temperature(&s->carl);
    bank_push(s, in);
    s->regions = s->f = NULL;
}

static void trmml_step_log(const TrmmlStepStats *st, char *buf, size_t cap) {
    snprintf(buf, cap, " cls=%.5f kd=%.5f nce=%.5f pseudo+=%lld pseudo-=%lld", st->cls, st->kd,
             st->nce, (long long)st->pseudo_pos, (long long)st->pseudo_neg);
}

static void trmml_param_group(const RunConfig *rc, const char *param, bool *no_decay,
                              double *lr_scale) {
    *no_decay = strcmp(param, "carl.logit_scale") == 0 && !rc->tc.wd_temperature;
    *lr_scale = 1.0;
}

/* ---- stages (DECISION 19) ---- */

/* TRM-ML with MMCP in two stages (stage 1 without MMCP, then T frozen and MMCP on); otherwise
 * one stage (the single run switches MMCP on after single_run_stage1_epochs). */
static int trmml_stages(const RunConfig *rc) {
    const MethodTrmmlConfig *mc = method_trmml_config(rc);
    return mc->use_mmcp && mc->stage_mode == TRMML_STAGES_TWO ? 2 : 1;
}

/* Set the prototypes T = normalize(G+) from the current prompts (§4.7 stage boundary). */
static void snapshot_prototypes(TrmmlModel *m) {
    Arena *arena = tensor_arena();
    size_t mark = arena_mark(arena);
    Tensor *gp, *gn;
    trmml_model_text_features(m, &gp, &gn);
    trmml_mmcp_set_prototypes(&method_trmml_state(m)->mmcp, gp);
    arena_release(arena, mark);
}

static void trmml_begin_stage2(TrmmlModel *m, char *note, size_t cap) {
    const bool fresh = method_trmml_config(&m->cfg)->stage2_init == TRMML_STAGE2_FRESH;
    snapshot_prototypes(m);
    if (fresh) trmml_model_init(m, (uint64_t)m->cfg.tc.seed, false);
    snprintf(note, cap, "stage 2: prototypes T = normalize(G+) of stage 1; parameters %s; MMCP on",
             fresh ? "re-initialised" : "kept");
}

static bool trmml_phase(TrmmlModel *m, int64_t stage, int64_t epochs_done, char *note,
                        size_t cap) {
    const MethodTrmmlConfig *mc = method_trmml_config(&m->cfg);
    const bool single_run = mc->use_mmcp && mc->stage_mode == TRMML_STAGES_SINGLE_RUN;
    const bool on = trmml_stages(&m->cfg) == 2
                        ? stage == 2
                        : single_run && epochs_done >= mc->single_run_stage1_epochs;
    if (on && !method_trmml_state(m)->mmcp.has_proto) {
        snapshot_prototypes(m);
        snprintf(note, cap, "single run: prototypes T = normalize(G+) after %lld epochs; MMCP on",
                 (long long)epochs_done);
    }
    return on;
}

/* ---- evaluation, maps, checkpoint ---- */

/* §4.8: σ(u^r) of the region branch. */
static Tensor *trmml_probs(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    return trmml_carl_infer(&method_trmml_state(m)->carl, method_trmml_head_input(m, dense), gpos,
                            gneg);
}

/* R = σ(Φ) over the spatial tokens (Eq. 2). */
static Tensor *trmml_maps(const TrmmlModel *m, Tensor *dense, Tensor *gpos, Tensor *gneg) {
    const int64_t B = dense->shape[0], HW = dense->shape[1] - 1, C = m->C;
    Tensor *f = method_trmml_head_input(m, dense);
    float *r = tensor_to_host(tensor_sigmoid(trmml_carl_energies(&method_trmml_state(m)->carl, f)));
    float *o = xmalloc(sizeof(float) * (size_t)(B * C * HW));
    const int64_t P = f->shape[1], skip = P - HW;
    for (int64_t i = 0; i < B * C; i++)
        memcpy(o + i * HW, r + i * P + skip, (size_t)HW * sizeof(float));
    Tensor *out = tensor_from_f32(3, SHAPE(B, C, HW), o);
    free(o);
    free(r);
    return out;
}

static int trmml_state(TrmmlModel *m, RunTensor *out, int cap) {
    TrmmlMmcp *b = &method_trmml_state(m)->mmcp;
    const int64_t C = b->C, d = b->d;
    int n = 0;
#define ENTRY(name, dt, nd, shape, ptr)                                                            \
    trmml_method_add_entry(out, &n, cap, name, tensor_wrap(dt, DEVICE_CPU, nd, shape, ptr))
    ENTRY("mmcp.bank", DT_F32, 3, SHAPE(C, b->len, d), b->bank);
    ENTRY("mmcp.write", DT_I64, 1, SHAPE(C), b->write);
    ENTRY("mmcp.fill", DT_I64, 1, SHAPE(C), b->fill);
    ENTRY("mmcp.proto", DT_F32, 2, SHAPE(C, d), b->proto);
    ENTRY("mmcp.has_proto", DT_U8, 1, SHAPE(1), &b->has_proto);
    ENTRY("mmcp.theta", DT_F32, 2, SHAPE(4, C), b->theta);
    ENTRY("mmcp.theta_init", DT_U8, 2, SHAPE(4, C), b->theta_init);
#undef ENTRY
    return n;
}

const TrmmlMethodOps METHOD_TRMML = {
    .name = "trmml", .title = "TRM-ML (SPEC §4)",
    TRMML_METHOD_CONFIG(TRMML_KEYS, MethodTrmmlConfig, trmml_method_defaults, trmml_method_check),
    .declare = trmml_declare, .create = trmml_create, .init = trmml_init, .free = trmml_free,
    .step = trmml_step, .after_update = trmml_after_update, .step_log = trmml_step_log,
    .optim = TRMML_OPTIM_ADAMW, .param_group = trmml_param_group,
    .stages = trmml_stages, .begin_stage2 = trmml_begin_stage2, .phase = trmml_phase,
    .train_transform = TRMML_TRANSFORM_TRAIN_TRMML, .test_transform = TRMML_TRANSFORM_TEST_BICUBIC,
    .probs = trmml_probs, .maps = trmml_maps, .state = trmml_state,
};
