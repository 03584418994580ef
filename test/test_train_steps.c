/* test_train_steps.c — five steps of the trainer against a PyTorch run, step by step (STYLE §6
 * integration test; scripts/fixtures_train_steps.py writes test/fixtures/train_steps.bin).
 *
 * The reduced random CLIP of test/fixtures/clip_model.bin supplies the frozen text tower
 * (test_fixture_clip_model); the dense features are fixed random tensors (no image tower). Each
 * case starts from the fixture's parameters and MMCP state and runs trmml_train_step five times
 * on the fixture's batches and labels, with the fixture's learning rate and beta1 / momentum for
 * each step, through the trainer's real path: the batch of 5 split into micro-batches of 3 and
 * 2, the text tower's forward and backward in chunks of 2 classes (3 chunks for 5 classes),
 * nn/optim's AdamW or SGD, the temperature clamp and the bank update. PyTorch computes the same
 * five steps unsplit, in float64. Compared at model tolerance (STYLE §6): the loss of every step
 * (and TRM-ML's terms), the pseudo-label counts of every step, every learnable tensor after step
 * 5 and, for TRM-ML, the bank, its pointers and the thresholds after step 5.
 *
 *   trainsteps_trmml_stage1     L^q + α L^r + β L_KD + γ L_NCE, empty bank at the start
 *   trainsteps_trmml_stage2     the same with MMCP (prototypes, pre-filled bank, pseudo-labels)
 *   trainsteps_dualcoop         DualCoOp, SGD with momentum
 *   trainsteps_baseline         the Table-3 baseline, AdamW with the temperature clamp */
#include <math.h>
#include <string.h>

#include "tensor/device.h"
#include "test/test.h"
#include "test/util_clip.h"
#include "trmml/method_trmml.h"
#include "trmml/train.h"

enum { ARG_ALPHA, ARG_BETA, ARG_GAMMA, ARG_TAU, ARG_ETA, ARG_TEMP_MAX, ARG_BETA2, ARG_EPS,
       ARG_ADAM_WD, ARG_SGD_WD, ARG_RATIO, NARGS };
enum { SZ_C, SZ_B, SZ_HW, SZ_E, SZ_W, SZ_STEPS, SZ_FFN, SZ_HEAD, SZ_QLEN, SZ_K, NSIZES };

/* The fixture tensor `name`, failing the test (NULL) when it is absent or not n values. */
static const FixtureTensor *get_n(Fixture *fx, const char *name, int64_t n) {
    const FixtureTensor *t = fixture_get(fx, name);
    if (t && t->numel != n) {
        test_fail(__FILE__, __LINE__, "%s: %lld values, expected %lld", name, (long long)t->numel,
                  (long long)n);
        return NULL;
    }
    return t;
}

/* The run configuration of the fixture: its sizes and weights, dropout off, micro-batches of 3,
 * text chunks of 2 classes. */
static RunConfig steps_config(int method, const float *args, const int64_t *sz) {
    RunConfig rc = run_config_default(method, NULL);
    TrmmlConfig *tc = &rc.tc;
    rc.ratio = args[ARG_RATIO];
    tc->dropout = 0;
    tc->batch_size = sz[SZ_B];
    tc->micro_batch = 3;
    tc->text_chunk = 2;
    tc->ffn_hidden = sz[SZ_FFN];
    if (method == TRMML_METHOD_TRMML) {
        MethodTrmmlConfig *mc = method_trmml_config(&rc);
        mc->head_hidden = sz[SZ_HEAD];
        mc->mlp_hidden = 0;
        mc->mmcp_queue_len = sz[SZ_QLEN];
        mc->mmcp_k = sz[SZ_K];
        mc->alpha = args[ARG_ALPHA];
        mc->beta = args[ARG_BETA];
        mc->gamma = args[ARG_GAMMA];
        mc->nce_tau = args[ARG_TAU];
        mc->mmcp_eta = args[ARG_ETA];
    }
    tc->temp_max = args[ARG_TEMP_MAX];
    tc->adam_beta2 = args[ARG_BETA2];
    tc->adam_eps = args[ARG_EPS];
    tc->weight_decay = method == TRMML_METHOD_DUALCOOP ? args[ARG_SGD_WD] : args[ARG_ADAM_WD];
    return rc;
}

/* Copy host floats into a tensor of the same size. */
static void fill_f32(Tensor *t, const FixtureTensor *f) {
    CHECK(f && f->numel == t->numel, "fixture tensor for %s: wrong size", t->name);
    tensor_copy_from_host(t, f->f32);
}

static void run_case(const char *cs, int method, bool mmcp_on) {
    Fixture *fx = fixture_open("train_steps");
    EXPECT(fx, "train_steps fixture: %s", error_last());
    if (!fx) return;
    const FixtureTensor *fa = get_n(fx, "args", NARGS), *fs = get_n(fx, "sizes", NSIZES);
    if (!fa || !fs) return;
    const int64_t *sz = fs->i64;
    const int64_t C = sz[SZ_C], B = sz[SZ_B], T = sz[SZ_HW] + 1, E = sz[SZ_E], NS = sz[SZ_STEPS];
    const FixtureTensor *ids = get_n(fx, "ids", C * 77), *dense = get_n(fx, "dense", NS * B * T * E),
                        *ys = get_n(fx, "y", NS * B * C);
    char key[256];
#define KEY(...) (snprintf(key, sizeof key, __VA_ARGS__), key)
    const FixtureTensor *lr = get_n(fx, KEY("%s/lr", cs), NS);
    const FixtureTensor *beta1 = get_n(fx, KEY("%s/beta1", cs), NS);
    const FixtureTensor *loss = get_n(fx, KEY("%s/loss", cs), NS);
    if (!ids || !dense || !ys || !lr || !beta1 || !loss) return;
    /* One thread: the miniature ops take microseconds, where OpenMP barriers on a shared
     * machine would dominate; the computation is the same. */
    const int threads = device_threads();
    device_set_threads(1);
    ClipModel *clip = test_fixture_clip_model();
    if (!clip) {
        device_set_threads(threads);
        return;
    }
    const RunConfig rc = steps_config(method, fa->f32, sz);
    TrmmlModel m;
    trmml_model_declare(&m, &rc, C, E, clip->cfg.text.width);
    m.clip = clip;
    param_store_finalize(m.ps);
    Tensor *idt = tensor_empty(DT_I64, 2, ids->shape);
    memcpy(idt->data, ids->i64, (size_t)ids->numel * sizeof(int64_t));
    trmml_prompt_set_tokens(&m.prompt, clip->text.token_embedding, idt);
    /* Every trainable parameter from the fixture, under its C name. */
    int nparam = 0;
    for (int i = 0; i < param_count(m.ps); i++) {
        Tensor *p = param_at(m.ps, i);
        if (!p->requires_grad) continue;
        fill_f32(p, get_n(fx, KEY("%s/init/%s", cs, p->name), p->numel));
        nparam++;
    }
    if (method == TRMML_METHOD_TRMML) {
        TrmmlMmcp *b = &method_trmml_state(&m)->mmcp;
        trmml_mmcp_init(b, C, E, method_trmml_config(&rc));
        const int64_t Q = b->len;
        const FixtureTensor *bank = get_n(fx, KEY("%s/bank", cs), C * Q * E);
        const FixtureTensor *fill = get_n(fx, KEY("%s/fill", cs), C);
        const FixtureTensor *write = get_n(fx, KEY("%s/write", cs), C);
        const FixtureTensor *proto = get_n(fx, KEY("%s/proto", cs), C * E);
        CHECK(bank && fill && write && proto, "MMCP state of %s", cs);
        memcpy(b->bank, bank->f32, (size_t)(C * Q * E) * sizeof(float));
        memcpy(b->fill, fill->i64, (size_t)C * sizeof(int64_t));
        memcpy(b->write, write->i64, (size_t)C * sizeof(int64_t));
        memcpy(b->proto, proto->f32, (size_t)(C * E) * sizeof(float));
        b->has_proto = mmcp_on;
    }
    TrmmlOptim *o = trmml_optim_create(&m);

    const FixtureTensor *cls = NULL, *kd = NULL, *nce = NULL, *ppos = NULL, *pneg = NULL;
    if (method == TRMML_METHOD_TRMML) {
        cls = get_n(fx, KEY("%s/cls", cs), NS);
        kd = get_n(fx, KEY("%s/kd", cs), NS);
        nce = get_n(fx, KEY("%s/nce", cs), NS);
    }
    if (mmcp_on) {
        ppos = get_n(fx, KEY("%s/pseudo_pos", cs), NS);
        pneg = get_n(fx, KEY("%s/pseudo_neg", cs), NS);
    }
    int64_t pseudo_seen = 0;
    for (int64_t s = 0; s < NS; s++) {
        trmml_optim_set(o, lr->f32[s], beta1->f32[s]);
        Tensor *x = tensor_from_f32(3, SHAPE(B, T, E), dense->f32 + s * B * T * E);
        Tensor *y = tensor_from_f32(2, SHAPE(B, C), ys->f32 + s * B * C);
        TrmmlStepStats st;
        const bool ok = trmml_train_step(&m, o, x, y, mmcp_on, (uint64_t)s, &st);
        tensor_step_end();
        EXPECT(ok, "%s step %lld: not applied (loss %g)", cs, (long long)s + 1, st.loss);
        const double got[4] = {st.loss, st.cls, st.kd, st.nce};
        const FixtureTensor *ref[4] = {loss, cls, kd, nce};
        const char *names[4] = {"loss", "cls", "kd", "nce"};
        for (int k = 0; k < 4; k++) {
            if (!ref[k]) continue;
            const double r = ref[k]->f32[s];
            EXPECT(fabs(got[k] - r) <= TOL_MODEL_ATOL + TOL_MODEL_RTOL * fabs(r),
                   "%s step %lld: %s %.7g, PyTorch %.7g", cs, (long long)s + 1, names[k], got[k],
                   r);
        }
        if (ppos && pneg) {
            EXPECT(st.pseudo_pos == ppos->i64[s] && st.pseudo_neg == pneg->i64[s],
                   "%s step %lld: pseudo-labels +%lld/-%lld, PyTorch +%lld/-%lld", cs,
                   (long long)s + 1, (long long)st.pseudo_pos, (long long)st.pseudo_neg,
                   (long long)ppos->i64[s], (long long)pneg->i64[s]);
            pseudo_seen += st.pseudo_pos + st.pseudo_neg;
        }
    }
    /* Stage 2 is only a test of MMCP if pseudo-labels happened. */
    EXPECT(!mmcp_on || pseudo_seen > 0, "%s: no pseudo-labels in %lld steps", cs, (long long)NS);

    int compared = 0;
    for (int i = 0; i < param_count(m.ps); i++) {
        Tensor *p = param_at(m.ps, i);
        if (!p->requires_grad) continue;
        char what[200];
        snprintf(what, sizeof what, "%s after %lld steps: %s", cs, (long long)NS, p->name);
        const FixtureTensor *ref = get_n(fx, KEY("%s/final/%s", cs, p->name), p->numel);
        if (ref) EXPECT_CLOSE_N(what, tensor_f32(p), ref->f32, p->numel, TOL_MODEL_ATOL,
                                TOL_MODEL_RTOL);
        compared++;
    }
    EXPECT(compared == nparam && nparam >= 2, "%s: %d of %d parameters compared", cs, compared,
           nparam);
    if (method == TRMML_METHOD_TRMML) {
        const TrmmlMmcp *b = &method_trmml_state(&m)->mmcp;
        const FixtureTensor *bank = get_n(fx, KEY("%s/bank_after", cs), C * b->len * E);
        const FixtureTensor *fill = get_n(fx, KEY("%s/fill_after", cs), C);
        const FixtureTensor *write = get_n(fx, KEY("%s/write_after", cs), C);
        const FixtureTensor *theta = get_n(fx, KEY("%s/theta_after", cs), 4 * C);
        const FixtureTensor *tinit = get_n(fx, KEY("%s/theta_init_after", cs), 4 * C);
        if (bank) EXPECT_CLOSE_N("bank after step 5", b->bank, bank->f32, C * b->len * E,
                                 TOL_MODEL_ATOL, TOL_MODEL_RTOL);
        for (int64_t c = 0; fill && write && c < C; c++)
            EXPECT(b->fill[c] == fill->i64[c] && b->write[c] == write->i64[c],
                   "%s queue %lld: fill %lld write %lld, PyTorch %lld %lld", cs, (long long)c,
                   (long long)b->fill[c], (long long)b->write[c], (long long)fill->i64[c],
                   (long long)write->i64[c]);
        for (int64_t i = 0; theta && tinit && i < 4 * C; i++) {
            EXPECT(b->theta_init[i] == (tinit->f32[i] != 0), "%s threshold %lld: initialised %d",
                   cs, (long long)i, b->theta_init[i]);
            if (b->theta_init[i])
                EXPECT(fabs(b->theta[i] - theta->f32[i]) <=
                           TOL_MODEL_ATOL + TOL_MODEL_RTOL * fabs(theta->f32[i]),
                       "%s threshold %lld: %.7g, PyTorch %.7g", cs, (long long)i, b->theta[i],
                       theta->f32[i]);
        }
    }
#undef KEY
    trmml_optim_free(o);
    trmml_model_free(&m);
    clip_model_free(clip);
    device_set_threads(threads);
}

TEST(trainsteps_trmml_stage1) { run_case("trmml1", TRMML_METHOD_TRMML, false); }
TEST(trainsteps_trmml_stage2) { run_case("trmml2", TRMML_METHOD_TRMML, true); }
TEST(trainsteps_dualcoop) { run_case("dualcoop", TRMML_METHOD_DUALCOOP, false); }
TEST(trainsteps_baseline) { run_case("baseline", TRMML_METHOD_BASELINE, false); }
