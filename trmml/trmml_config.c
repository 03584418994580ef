/* trmml_config.c — the shared configuration (trmml/trmml_config.h): defaults, `key = value`
 * parsing, printing.
 *
 * One key table (tensor/keys.h) lists every shared key: its field, its kind, its SPEC
 * reference. Parsing, printing and the key list all walk that table. Each method's own keys
 * are a table in its method file (docs/methods.md). */
#include "trmml/trmml_config.h"

#include "tensor/keys.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const SELECT_NAMES[] = {"last", "best", NULL};
static const char *const ASL_RED_NAMES[] = {"sum_classes_mean_images", "sum", "mean", NULL};

#define T TrmmlConfig
#define B(k, field, ref) KEY_BOOL(T, k, field, ref)
#define D(k, field, lo, hi, ref) KEY_DOUBLE(T, k, field, lo, hi, ref)
#define I(k, field, lo, hi, ref) KEY_INT(T, k, field, lo, hi, ref)
#define E(k, field, names, ref) KEY_ENUM(T, k, field, names, ref)
#define S(k, field, ref) KEY_STR(T, k, field, ref)

static const KeySpec KEYS[] = {
    D("asl_gamma_pos", asl_gamma_pos, 0, 100, "SPEC 2.1"),
    D("asl_gamma_neg", asl_gamma_neg, 0, 100, "SPEC 2.1"),
    D("asl_clip", asl_clip, 0, 0.999, "probability margin m, SPEC 2.1"),
    D("asl_eps", asl_eps, 0, 1, "log clamp, SPEC 2.1 (TaI-DPT/TRM-ML 1e-8)"),
    E("asl_reduction", asl_reduction, ASL_RED_NAMES, "DECISION 3"),
    I("prompt_ctx_len", prompt_ctx_len, 1, 60, "SPEC 3, 4.7"),
    D("prompt_ctx_std", prompt_ctx_std, 0, 10, "context init N(0, std^2), SPEC 3"),
    B("prompt_class_specific", prompt_class_specific, "dual class-specific prompts, DECISION 8"),
    S("query_template", query_template, "text that initialises the queries, DECISION 9"),
    I("ffn_hidden", ffn_hidden, 1, 1 << 20, "decoder FFN d->H->d, DECISION 10"),
    D("ln_eps", ln_eps, 1e-12, 1, "LayerNorm eps (PyTorch default)"),
    D("dropout", dropout, 0, 0.99, "decoder dropout, DECISION 23"),
    KEY_DOUBLE_OR(T, "temp_init", temp_init, -20, 20, "clip",
                  "log matching scale t; clip = CLIP logit_scale, DECISION 14"),
    D("temp_max", temp_max, 1e-6, 1e6, "cap on s = exp(t), DECISION 14"),
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
    return (TrmmlConfig){
        /* ASL (SPEC §2.1, DECISION 3) */
        .asl_gamma_pos = 1.0, .asl_gamma_neg = 2.0, .asl_clip = 0.05, .asl_eps = 1e-8,
        .asl_reduction = TRMML_ASL_SUM_CLASSES_MEAN_IMAGES,
        /* prompts, query text, shared decoder sizes (DECISIONS 8-10, 23) */
        .prompt_ctx_len = 16, .prompt_ctx_std = 0.02, .prompt_class_specific = true,
        .query_template = "a photo of a {}.",
        .ffn_hidden = 2048, .ln_eps = 1e-5, .dropout = 0.1,
        /* temperature: CLIP's logit scale, capped at 100 (DECISION 14) */
        .temp_init = NAN, .temp_max = 100.0, .wd_temperature = false,
        .single_positive = false,
        /* the COCO/RN101 recipe (SPEC §4.7, §2.4, DECISIONS 6, 21) */
        .epochs = 40, .batch_size = 128, .micro_batch = 0, .input_size = 448, .eval_every = 1,
        .text_chunk = 0, .lr = 5e-4, .weight_decay = 1e-2,
        .pct_start = 0.2, .div_factor = 25.0, .final_div_factor = 1e4,
        .beta1_max = 0.95, .beta1_min = 0.85, .adam_beta2 = 0.999, .adam_eps = 1e-8,
        .checkpoint_select = TRMML_SELECT_LAST, .seed = 1,
        .cache_any_filter = false,
    };
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
    return STATUS_OK;
}

void trmml_config_print(const TrmmlConfig *cfg, FILE *out) { keys_print(KEYS, NKEYS, cfg, out); }
