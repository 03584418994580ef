/* trmml_config.c — the TRM-ML configuration: defaults, `key = value` parsing, printing.
 *
 * One table lists every key: its field (by offset), its kind, its SPEC reference. Parsing,
 * printing and the key list all walk that table, so a key cannot be printable but unparsable. */
#include "trmml/trmml_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_BOOL, KIND_DOUBLE, KIND_INT, KIND_ENUM, KIND_STR } Kind;

typedef struct {
    const char *key;
    Kind kind;
    size_t offset;
    const char *const *names;  /* KIND_ENUM: value i is spelled names[i]; NULL-terminated */
    double lo, hi;             /* KIND_DOUBLE / KIND_INT: accepted range (inclusive) */
    const char *ref;           /* SPEC section and DECISION, printed as a comment */
} Key;

static const char *const KD_NAMES[] = {"softmax", "bernoulli", NULL};
static const char *const QUERY_NAMES[] = {"text", "random", NULL};
static const char *const REGION_NAMES[] = {"mean", "sum", NULL};
static const char *const STAGE_NAMES[] = {"two_stage", "single_run", NULL};
static const char *const STAGE2_NAMES[] = {"fresh", "stage1", NULL};
static const char *const SELECT_NAMES[] = {"last", "best", NULL};
static const char *const ASL_RED_NAMES[] = {"sum_classes_mean_images", "sum", "mean", NULL};
static const char *const PVLR_ASL_NAMES[] = {"auto", "full", "partial", "custom", NULL};

#define F(field) offsetof(TrmmlConfig, field)
#define B(k, field, ref) {k, KIND_BOOL, F(field), NULL, 0, 0, ref}
#define D(k, field, lo, hi, ref) {k, KIND_DOUBLE, F(field), NULL, lo, hi, ref}
#define I(k, field, lo, hi, ref) {k, KIND_INT, F(field), NULL, lo, hi, ref}
#define E(k, field, names, ref) {k, KIND_ENUM, F(field), names, 0, 0, ref}
#define S(k, field, ref) {k, KIND_STR, F(field), NULL, 0, 0, ref}

static const Key KEYS[] = {
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
    D("temp_init", temp_init, -20, 20, "log matching scale t; clip = CLIP logit_scale, DECISION 14"),
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
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

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

int trmml_config_key_count(void) { return NKEYS; }
const char *trmml_config_key_name(int i) {
    CHECK(i >= 0 && i < NKEYS, "config key index %d of %d", i, NKEYS);
    return KEYS[i].key;
}

static const Key *find_key(const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

static Status parse_value(TrmmlConfig *cfg, const Key *k, const char *v) {
    char *base = (char *)cfg;
    switch (k->kind) {
    case KIND_BOOL: {
        static const char *const T[] = {"true", "1", "yes", "on"}, *const Fa[] = {"false", "0", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(v, T[i]) == 0) { *(bool *)(base + k->offset) = true; return STATUS_OK; }
            if (strcasecmp(v, Fa[i]) == 0) { *(bool *)(base + k->offset) = false; return STATUS_OK; }
        }
        return error_set(STATUS_ERR_USAGE, "config key '%s': expected true or false, got '%s'", k->key, v);
    }
    case KIND_DOUBLE: {
        /* temp_init accepts "clip": take the value from the CLIP checkpoint (stored as NAN). */
        if (strcmp(k->key, "temp_init") == 0 && strcasecmp(v, "clip") == 0) {
            *(double *)(base + k->offset) = NAN;
            return STATUS_OK;
        }
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return error_set(STATUS_ERR_USAGE, "config key '%s': expected a number, got '%s'", k->key, v);
        if (x < k->lo || x > k->hi)
            return error_set(STATUS_ERR_USAGE, "config key '%s': %s is outside [%g, %g]", k->key, v,
                             k->lo, k->hi);
        *(double *)(base + k->offset) = x;
        return STATUS_OK;
    }
    case KIND_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno)
            return error_set(STATUS_ERR_USAGE, "config key '%s': expected an integer, got '%s'", k->key, v);
        if ((double)x < k->lo || (double)x > k->hi)
            return error_set(STATUS_ERR_USAGE, "config key '%s': %s is outside [%.0f, %.0f]", k->key, v,
                             k->lo, k->hi);
        *(int64_t *)(base + k->offset) = (int64_t)x;
        return STATUS_OK;
    }
    case KIND_ENUM:
        for (int i = 0; k->names[i]; i++)
            if (strcmp(v, k->names[i]) == 0) {
                *(int *)(base + k->offset) = i;
                return STATUS_OK;
            }
        {
            char list[256] = "";
            for (int i = 0; k->names[i]; i++) {
                if (i) strncat(list, "|", sizeof list - strlen(list) - 1);
                strncat(list, k->names[i], sizeof list - strlen(list) - 1);
            }
            return error_set(STATUS_ERR_USAGE, "config key '%s': expected one of %s, got '%s'", k->key,
                             list, v);
        }
    case KIND_STR:
        if (strlen(v) >= TRMML_CONFIG_STR)
            return error_set(STATUS_ERR_USAGE, "config key '%s': value longer than %d bytes", k->key,
                             TRMML_CONFIG_STR - 1);
        /* Printed between double quotes on one line (trmml_config_print): keep it readable back. */
        if (strpbrk(v, "\"\n\r"))
            return error_set(STATUS_ERR_USAGE,
                             "config key '%s': '%s' holds a double quote or a line break, which "
                             "a configuration file cannot keep",
                             k->key, v);
        snprintf(base + k->offset, TRMML_CONFIG_STR, "%s", v);
        return STATUS_OK;
    }
    return error_set(STATUS_ERR_USAGE, "config key '%s': unknown kind", k->key);
}

Status trmml_config_set(TrmmlConfig *cfg, const char *key, const char *value) {
    const Key *k = find_key(key);
    if (!k) return error_set(STATUS_ERR_USAGE, "unknown config key '%s'", key);
    return parse_value(cfg, k, value);
}

/* Trim ASCII white space at both ends, in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

/* One line: "key = value" or "key: value", '#' comment outside quotes, optional quotes. */
static Status parse_line(TrmmlConfig *cfg, char *line, const char *origin, int lineno) {
    bool quoted = false;
    for (char *p = line; *p; p++) {
        if (*p == '"') quoted = !quoted;
        if (*p == '#' && !quoted) { *p = 0; break; }
    }
    char *s = trim(line);
    if (!*s || strcmp(s, "---") == 0) return STATUS_OK;
    char *sep = strchr(s, '=');
    if (!sep) sep = strchr(s, ':');
    if (!sep)
        return error_set(STATUS_ERR_USAGE, "%s:%d: expected 'key = value', got '%s'", origin, lineno, s);
    *sep = 0;
    char *key = trim(s), *val = trim(sep + 1);
    size_t n = strlen(val);
    if (n >= 2 && ((val[0] == '"' && val[n - 1] == '"') || (val[0] == '\'' && val[n - 1] == '\''))) {
        val[n - 1] = 0;
        val++;
    }
    TrmmlConfig tmp = *cfg;
    Status st = trmml_config_set(&tmp, key, val);
    if (st != STATUS_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", error_last());
        return error_set(st, "%s:%d: %s", origin, lineno, msg);
    }
    *cfg = tmp;
    return STATUS_OK;
}

Status trmml_config_parse_string(TrmmlConfig *cfg, const char *text, const char *origin) {
    size_t n = strlen(text);
    char *buf = xmalloc(n + 1);
    memcpy(buf, text, n + 1);
    Status st = STATUS_OK;
    int lineno = 0;
    for (char *line = buf; line && st == STATUS_OK;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        st = parse_line(cfg, line, origin, lineno);
        line = next;
    }
    free(buf);
    return st;
}

Status trmml_config_parse_file(TrmmlConfig *cfg, const char *path) {
    FILE *f;
    Status open_st = xfopen_regular(path, "configuration file", &f);
    if (open_st != STATUS_OK) return open_st;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1024 + 1 > cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, 1024, f);
        n += got;
        if (got < 1024) break;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        free(buf);
        return error_set(STATUS_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        free(buf);
        return error_set(STATUS_ERR_FORMAT, "%s: not a text file (NUL byte)", path);
    }
    Status st = trmml_config_parse_string(cfg, buf, path);
    free(buf);
    return st;
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

void trmml_config_print(const TrmmlConfig *cfg, FILE *out) {
    const char *base = (const char *)cfg;
    for (int i = 0; i < NKEYS; i++) {
        const Key *k = &KEYS[i];
        char val[TRMML_CONFIG_STR + 8];
        switch (k->kind) {
        case KIND_BOOL: snprintf(val, sizeof val, "%s", *(const bool *)(base + k->offset) ? "true" : "false"); break;
        case KIND_DOUBLE: {
            double x = *(const double *)(base + k->offset);
            /* The shortest of %.15g / %.17g that reads back exactly (%.17g always does). */
            if (isnan(x)) snprintf(val, sizeof val, "clip");
            else {
                snprintf(val, sizeof val, "%.15g", x);
                if (strtod(val, NULL) != x) snprintf(val, sizeof val, "%.17g", x);
            }
            break;
        }
        case KIND_INT: snprintf(val, sizeof val, "%lld", (long long)*(const int64_t *)(base + k->offset)); break;
        case KIND_ENUM: snprintf(val, sizeof val, "%s", k->names[*(const int *)(base + k->offset)]); break;
        case KIND_STR: snprintf(val, sizeof val, "\"%s\"", base + k->offset); break;
        }
        char line[256];
        snprintf(line, sizeof line, "%s = %s", k->key, val);
        fprintf(out, "%-44s # %s\n", line, k->ref);
    }
}
