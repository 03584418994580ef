/* trmml_config.c — the TRM-ML configuration: defaults, `key = value` parsing, printing.
 *
 * One key table (tensor/keys.h) lists every key: its field, its kind, its SPEC reference.
 * Parsing, printing and the key list all walk that table. */
#include "trmml/trmml_config.h"

#include "tensor/keys.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const KD_NAMES[] = {"softmax", "bernoulli", NULL};
static const char *const QUERY_NAMES[] = {"text", "random", NULL};
static const char *const REGION_NAMES[] = {"mean", "sum", NULL};
static const char *const STAGE_NAMES[] = {"two_stage", "single_run", NULL};
static const char *const STAGE2_NAMES[] = {"fresh", "stage1", NULL};
static const char *const SELECT_NAMES[] = {"last", "best", NULL};
static const char *const ASL_RED_NAMES[] = {"sum_classes_mean_images", "sum", "mean", NULL};
static const char *const PVLR_ASL_NAMES[] = {"auto", "full", "partial", "custom", NULL};

#define T TrmmlConfig
#define B(k, field, ref) KEY_BOOL(T, k, field, ref)
#define D(k, field, lo, hi, ref) KEY_DOUBLE(T, k, field, lo, hi, ref)
#define I(k, field, lo, hi, ref) KEY_INT(T, k, field, lo, hi, ref)
#define E(k, field, names, ref) KEY_ENUM(T, k, field, names, ref)
#define S(k, field, ref) KEY_STR(T, k, field, ref)

static const KeySpec KEYS[] = {
    B("use_carl", use_carl, "Table 3; off = text-image baseline, SPEC 9.3 DECISION 22"),
    B("use_kd", use_kd, "Table 3; SPEC 4.4"),
    B("use_mmcp", use_mmcp, "Table 3; SPEC 4.5"),
    B("use_mmcl", use_mmcl, "Table 3; SPEC 4.6"),
    D("alpha", alpha, 0, 1e6, "weight of the region-branch L_cls, SPEC 4.3"),
    D("beta", beta, 0, 1e6, "weight of L_KD, SPEC 4.7"),
    D("gamma", gamma, 0, 1e6, "weight of L_NCE, SPEC 4.7"),
    D("asl_gamma_pos", asl_gamma_pos, 0, 100, "SPEC 2.1"),
    D("asl_gamma_neg", asl_gamma_neg, 0, 100, "SPEC 2.1"),
    D("asl_clip", asl_clip, 0, 0.999, "probability margin m, SPEC 2.1"),
    D("asl_eps", asl_eps, 0, 1, "log clamp, SPEC 2.1 (TaI-DPT/TRM-ML 1e-8)"),
    E("asl_reduction", asl_reduction, ASL_RED_NAMES, "DECISION 3"),
    B("drop_token0", drop_token0, "dense features = spatial tokens only, DECISION 7"),
    I("prompt_ctx_len", prompt_ctx_len, 1, 60, "SPEC 3, 4.7"),
    D("prompt_ctx_std", prompt_ctx_std, 0, 10, "context init N(0, std^2), SPEC 3"),
    B("prompt_class_specific", prompt_class_specific, "dual class-specific prompts, DECISION 8"),
    E("query_init", query_init, QUERY_NAMES, "DECISION 9"),
    S("query_template", query_template, "text that initialises the queries, DECISION 9"),
    I("ffn_hidden", ffn_hidden, 1, 1 << 20, "decoder FFN d->H->d, DECISION 10"),
    I("mlp_hidden", mlp_hidden, 0, 1 << 20, "Eq.3 MLP d->H->d, 0 = d, DECISION 13"),
    I("head_hidden", head_hidden, 1, 1 << 20, "projection head d->H->d, DECISION 13"),
    D("ln_eps", ln_eps, 1e-12, 1, "LayerNorm eps (PyTorch default)"),
    D("dropout", dropout, 0, 0.99, "decoder dropout, DECISION 23"),
    B("attn_fold", attn_fold, "fold W_k into the queries and W_v after pooling, SPEC 4.2 Cost"),
    E("region_pool", region_pool, REGION_NAMES, "Eq.4 weighted mean or sum, DECISION 12"),
    D("region_eps", region_eps, 0, 1, "Eq.4 denominator guard, SPEC 4.2"),
    KEY_DOUBLE_OR(T, "temp_init", temp_init, -20, 20, "clip",
                  "log matching scale t; clip = CLIP logit_scale, DECISION 14"),
    D("temp_max", temp_max, 1e-6, 1e6, "cap on s = exp(t), DECISION 14"),
    B("temp_learnable", temp_learnable, "t is trained, DECISION 14"),
    E("kd_form", kd_form, KD_NAMES, "class-wise softmax KL or per-class Bernoulli KL, DECISION 15"),
    D("kd_temperature", kd_temperature, 1e-3, 1e3, "SPEC 4.4 (T = 1)"),
    I("mmcp_k", mmcp_k, 1, 1 << 20, "pixels per positive instance, DECISION 17"),
    I("mmcp_queue_len", mmcp_queue_len, 1, 1 << 20, "bank queue length l, DECISION 17"),
    D("mmcp_eta", mmcp_eta, 0, 1, "threshold EMA momentum, DECISION 17"),
    B("mmcp_require_full", mmcp_require_full, "visual similarity only from full queues, DECISION 17"),
    B("mmcp_use_visual", mmcp_use_visual, "visual pseudo-label (Table 6), SPEC 4.5"),
    B("mmcp_use_text", mmcp_use_text, "text pseudo-label (Table 6), DECISION 28"),
    D("nce_tau", nce_tau, 1e-4, 100, "InfoNCE temperature, DECISION 18"),
    B("nce_use_bank", nce_use_bank, "bank entries as extra positives/negatives, DECISION 18"),
    I("nce_bank_per_class", nce_bank_per_class, 0, 1 << 20,
      "newest entries per queue used by MMCL, 0 = all, SPEC 4.6"),
    E("stage_mode", stage_mode, STAGE_NAMES, "DECISION 19"),
    E("stage2_init", stage2_init, STAGE2_NAMES, "DECISION 19"),
    I("single_run_stage1_epochs", single_run_stage1_epochs, 0, 1 << 20, "DECISION 19"),
    B("single_positive", single_positive, "assume-negative unknowns, DECISION 20"),
    I("epochs", epochs, 1, 1 << 20, "SPEC 4.7"),
    I("batch_size", batch_size, 1, 1 << 20, "SPEC 4.7"),
    I("micro_batch", micro_batch, 0, 1 << 20, "gradient accumulation chunk, 0 = batch_size"),
    I("input_size", input_size, 32, 4096, "SPEC 4.7"),
    I("eval_every", eval_every, 0, 1 << 20, "epochs between test evaluations, 0 = never"),
    I("text_chunk", text_chunk, 0, 1 << 20, "prompts per text-tower chunk, 0 = all 2C"),
    D("lr", lr, 0, 10, "OneCycle max lr, SPEC 4.7"),
    D("weight_decay", weight_decay, 0, 10, "AdamW, DECISION 6"),
    D("pct_start", pct_start, 0, 1, "OneCycle, DECISION 6"),
    D("div_factor", div_factor, 1, 1e9, "OneCycle, SPEC 2.4"),
    D("final_div_factor", final_div_factor, 1, 1e12, "OneCycle, SPEC 2.4"),
    D("beta1_max", beta1_max, 0, 1, "OneCycle momentum cycling, SPEC 2.4"),
    D("beta1_min", beta1_min, 0, 1, "OneCycle momentum cycling, SPEC 2.4"),
    D("adam_beta2", adam_beta2, 0, 1, "SPEC 2.4"),
    D("adam_eps", adam_eps, 0, 1, "SPEC 2.4"),
    B("wd_temperature", wd_temperature, "weight decay on t, DECISION 6"),
    E("checkpoint_select", checkpoint_select, SELECT_NAMES, "DECISION 21"),
    I("seed", seed, 0, 9007199254740992.0, "initialisation and sampling"),
    B("pvlr_kap", pvlr_use_kap, "PVLR knowledge-aware prompting, SPEC 5.2 (docs/pvlr.md: off)"),
    B("pvlr_cap", pvlr_use_cap, "PVLR context-aware prompting, SPEC 5.3"),
    B("pvlr_ifm", pvlr_use_ifm, "PVLR interaction and fusion, SPEC 5.4 (off: L0 = (K+Cx)/2)"),
    B("pvlr_dma_t2v", pvlr_use_t2v, "PVLR text->visual attention, SPEC 5.5 (off: V1 = Vtok)"),
    B("pvlr_dma_v2t", pvlr_use_v2t, "PVLR visual->text attention, SPEC 5.5 (off: L1 = L0)"),
    B("pvlr_global", pvlr_use_global, "PVLR global term g_c in the logit, SPEC 5.6"),
    I("pvlr_heads", pvlr_heads, 1, 4096, "PVLR attention heads (must divide d), SPEC 5"),
    D("pvlr_kap_tau", pvlr_kap_tau, 1e-6, 1e6, "PVLR relation softmax temperature, SPEC 5.2"),
    D("pvlr_spatial_temp", pvlr_spatial_temp, 0, 1e6, "PVLR spatial softmax scale, SPEC 5.6"),
    D("pvlr_temp_init", pvlr_temp_init, -20, 20, "PVLR t0 (s = exp(t)), SPEC 5.6: ln 10"),
    D("pvlr_layer_lr", pvlr_layer_lr, 0, 10, "PVLR max lr of attention/fusion layers, SPEC 5.7"),
    E("pvlr_asl", pvlr_asl, PVLR_ASL_NAMES, "PVLR ASL setting (full 0/4, partial 1/2), SPEC 5.7"),
    B("cache_any_filter", cache_any_filter,
      "accept a feature cache of another resize filter than the method's, SPEC 2.2/2.3"),
};
#define NKEYS KEY_COUNT(KEYS)
#undef T
#undef B
#undef D
#undef I
#undef E
#undef S

TrmmlConfig trmml_config_default(void) {
    TrmmlConfig c;
    memset(&c, 0, sizeof c);
    c.use_carl = c.use_kd = c.use_mmcp = c.use_mmcl = true;
    c.alpha = 1.0;
    c.beta = 0.05;
    c.gamma = 0.01;
    c.asl_gamma_pos = 1.0;
    c.asl_gamma_neg = 2.0;
    c.asl_clip = 0.05;
    c.asl_eps = 1e-8;
    c.asl_reduction = TRMML_ASL_SUM_CLASSES_MEAN_IMAGES;
    c.drop_token0 = true;
    c.prompt_ctx_len = 16;
    c.prompt_ctx_std = 0.02;
    c.prompt_class_specific = true;
    c.query_init = TRMML_QUERY_INIT_TEXT;
    snprintf(c.query_template, sizeof c.query_template, "a photo of a {}.");
    c.ffn_hidden = 2048;
    c.mlp_hidden = 0;
    c.head_hidden = 2048;
    c.ln_eps = 1e-5;
    c.dropout = 0.1;
    c.attn_fold = true;
    c.region_pool = TRMML_REGION_MEAN;
    c.region_eps = 1e-6;
    c.temp_init = NAN;
    c.temp_max = 100.0;
    c.temp_learnable = true;
    c.kd_form = TRMML_KD_SOFTMAX;
    c.kd_temperature = 1.0;
    c.mmcp_k = 4;
    c.mmcp_queue_len = 256;
    c.mmcp_eta = 0.99;
    c.mmcp_require_full = true;
    c.mmcp_use_visual = c.mmcp_use_text = true;
    c.nce_tau = 0.07;
    c.nce_use_bank = true;
    c.nce_bank_per_class = 0;
    c.stage_mode = TRMML_STAGES_TWO;
    c.stage2_init = TRMML_STAGE2_FRESH;
    c.single_run_stage1_epochs = 10;
    c.single_positive = false;
    c.epochs = 40;
    c.batch_size = 128;
    c.micro_batch = 0;
    c.input_size = 448;
    c.eval_every = 1;
    c.text_chunk = 0;
    c.lr = 5e-4;
    c.weight_decay = 1e-2;
    c.pct_start = 0.2;
    c.div_factor = 25.0;
    c.final_div_factor = 1e4;
    c.beta1_max = 0.95;
    c.beta1_min = 0.85;
    c.adam_beta2 = 0.999;
    c.adam_eps = 1e-8;
    c.wd_temperature = false;
    c.checkpoint_select = TRMML_SELECT_LAST;
    c.seed = 1;
    c.pvlr_use_kap = c.pvlr_use_cap = c.pvlr_use_ifm = true;
    c.pvlr_use_t2v = c.pvlr_use_v2t = c.pvlr_use_global = true;
    c.pvlr_heads = 8;
    c.pvlr_kap_tau = 0.05;
    c.pvlr_spatial_temp = 20.0;
    c.pvlr_temp_init = 2.302585092994046; /* ln 10 */
    c.pvlr_layer_lr = 1e-4;
    c.pvlr_asl = PVLR_ASL_AUTO;
    return c;
}

const KeySpec *trmml_config_keys(int *n) {
    *n = NKEYS;
    return KEYS;
}

int trmml_config_key_count(void) { return NKEYS; }
const char *trmml_config_key_name(int i) {
    CHECK(i >= 0 && i < NKEYS, "config key index %d of %d", i, NKEYS);
    return KEYS[i].name;
}

Status trmml_config_set(TrmmlConfig *cfg, const char *key, const char *value) {
    const KeyGroup g = {KEYS, NKEYS, cfg};
    return keys_set_in(&g, 1, key, value);
}

Status trmml_config_parse_string(TrmmlConfig *cfg, const char *text, const char *origin) {
    const KeyGroup g = {KEYS, NKEYS, cfg};
    return keys_parse_text(&g, 1, text, origin);
}

Status trmml_config_parse_file(TrmmlConfig *cfg, const char *path) {
    const KeyGroup g = {KEYS, NKEYS, cfg};
    return keys_parse_file(&g, 1, path);
}

Status trmml_config_validate(const TrmmlConfig *c) {
    if (c->beta1_min > c->beta1_max)
        return error_set(STATUS_ERR_USAGE, "config: beta1_min %g > beta1_max %g", c->beta1_min, c->beta1_max);
    if (!isnan(c->temp_init) && exp(c->temp_init) > c->temp_max * (1 + 1e-6))
        return error_set(STATUS_ERR_USAGE, "config: temp_init %g gives a scale above temp_max %g",
                         c->temp_init, c->temp_max);
    if (c->micro_batch > c->batch_size)
        return error_set(STATUS_ERR_USAGE, "config: micro_batch %lld > batch_size %lld",
                         (long long)c->micro_batch, (long long)c->batch_size);
    if (c->nce_bank_per_class > c->mmcp_queue_len)
        return error_set(STATUS_ERR_USAGE, "config: nce_bank_per_class %lld > mmcp_queue_len %lld",
                         (long long)c->nce_bank_per_class, (long long)c->mmcp_queue_len);
    if (c->single_run_stage1_epochs > c->epochs && c->stage_mode == TRMML_STAGES_SINGLE_RUN)
        return error_set(STATUS_ERR_USAGE, "config: single_run_stage1_epochs %lld > epochs %lld",
                         (long long)c->single_run_stage1_epochs, (long long)c->epochs);
    if (!c->pvlr_use_kap && !c->pvlr_use_cap)
        return error_set(STATUS_ERR_USAGE, "config: pvlr_kap and pvlr_cap are both off; PVLR needs "
                                           "at least one source of label representations");
    if (exp(c->pvlr_temp_init) > c->temp_max * (1 + 1e-6))
        return error_set(STATUS_ERR_USAGE, "config: pvlr_temp_init %g gives a scale above temp_max %g",
                         c->pvlr_temp_init, c->temp_max);
    return STATUS_OK;
}

void trmml_config_print(const TrmmlConfig *cfg, FILE *out) { keys_print(KEYS, NKEYS, cfg, out); }
