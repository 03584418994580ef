/* trmml_config.h — the configuration every method shares (TrmmlConfig: recipe, prompts, ASL;
 * SPEC §2, §4.7, §11), and TRM-ML's own keys (MethodTrmmlConfig, whose table, defaults and
 * checks are in trmml/method_trmml.c; each other method's keys are in its method file,
 * docs/methods.md).
 *
 * trmml_config_default() gives the SPEC's values of the shared keys. A configuration file is
 * plain `key = value` lines (YAML-style `key: value` is accepted too), `#` starts a comment,
 * blank lines are ignored, strings may be quoted (tensor/keys.h). Every key is listed with its
 * default, its SPEC reference and its DECISION number by trmml_config_print() (and, with the run
 * keys and the method's keys, by run_config_print()), whose output parses back to the same
 * configuration (the run directory keeps it). docs/trmml.md maps each key to the code. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/error.h"
#include "tensor/keys.h"

typedef enum { TRMML_KD_SOFTMAX = 0, TRMML_KD_BERNOULLI } TrmmlKdForm;
typedef enum { TRMML_QUERY_INIT_TEXT = 0, TRMML_QUERY_INIT_RANDOM } TrmmlQueryInit;
typedef enum { TRMML_REGION_MEAN = 0, TRMML_REGION_SUM } TrmmlRegionPool;
typedef enum { TRMML_STAGES_TWO = 0, TRMML_STAGES_SINGLE_RUN } TrmmlStageMode;
typedef enum { TRMML_STAGE2_FRESH = 0, TRMML_STAGE2_FROM_STAGE1 } TrmmlStage2Init;
typedef enum { TRMML_SELECT_LAST = 0, TRMML_SELECT_BEST } TrmmlCheckpointSelect;
typedef enum { TRMML_ASL_SUM_CLASSES_MEAN_IMAGES = 0, TRMML_ASL_SUM, TRMML_ASL_MEAN } TrmmlAslReduce;

#define TRMML_CONFIG_STR 128

/* The keys every method reads: the ASL of §2.1, the prompts, the decoder sizes PVLR and TRM-ML
 * share, the temperature cap, the label protocol and the training recipe. */
typedef struct {
    /* ASL (§2.1, DECISION 3) */
    double asl_gamma_pos, asl_gamma_neg, asl_clip, asl_eps;
    int asl_reduction;            /* TrmmlAslReduce */
    /* prompts (§3, §4.1, DECISION 8) */
    int64_t prompt_ctx_len;
    double prompt_ctx_std;
    bool prompt_class_specific;
    /* text that initialises TRM-ML's queries and PVLR's KAP prompts (DECISION 9) */
    char query_template[TRMML_CONFIG_STR];
    /* decoder layers of TRM-ML and PVLR (DECISIONS 10, 23) */
    int64_t ffn_hidden;
    double ln_eps, dropout;
    /* matching temperature (§4.3, DECISION 14): temp_init NAN = CLIP's logit_scale (TRM-ML and
     * the baseline); temp_max caps s = exp(t) of every method that learns one */
    double temp_init, temp_max;
    /* single-positive mode (DECISION 20) */
    bool single_positive;
    /* recipe (§4.7, §2.4, DECISION 6, 21) */
    int64_t epochs, batch_size, micro_batch, input_size, eval_every, text_chunk;
    double lr, weight_decay, pct_start, div_factor, final_div_factor;
    double beta1_max, beta1_min, adam_beta2, adam_eps;
    bool wd_temperature;
    int checkpoint_select;        /* TrmmlCheckpointSelect */
    int64_t seed;
    /* feature caches (trmml/feature_cache.h): accept one extracted with another resize filter
     * than the method's test transform (SPEC §2.2, §2.3); off = such a cache is refused */
    bool cache_any_filter;
} TrmmlConfig;

/* TRM-ML's own keys (SPEC §4; the key table is in trmml/method_trmml.c): the Table-3
 * components, the loss weights, CARL, KD, MMCP, MMCL and the stages. */
typedef struct {
    /* components (Table 3 ablation; use_carl off is --method baseline, SPEC §9.3) */
    bool use_carl, use_kd, use_mmcp, use_mmcl;
    /* loss weights (§4.3, §4.7) */
    double alpha, beta, gamma;
    /* dense features (DECISION 7) */
    bool drop_token0;
    /* CARL decoder (§4.2, DECISIONS 9-13) */
    int query_init;               /* TrmmlQueryInit */
    int64_t mlp_hidden, head_hidden;  /* mlp_hidden 0 = d */
    bool attn_fold;               /* the algebraic folding of §4.2 "Cost" */
    int region_pool;              /* TrmmlRegionPool */
    double region_eps;
    bool temp_learnable;          /* DECISION 14 */
    /* KD (§4.4, DECISION 15) */
    int kd_form;                  /* TrmmlKdForm */
    double kd_temperature;
    /* MMCP (§4.5, DECISIONS 16, 17, 27, 28) */
    int64_t mmcp_k, mmcp_queue_len;
    double mmcp_eta;
    bool mmcp_require_full;
    bool mmcp_use_visual, mmcp_use_text;
    /* MMCL (§4.6, DECISION 18); nce_bank_per_class 0 = every filled entry */
    double nce_tau;
    bool nce_use_bank;
    int64_t nce_bank_per_class;
    /* stages (§4.7, DECISION 19) */
    int stage_mode;               /* TrmmlStageMode */
    int stage2_init;              /* TrmmlStage2Init */
    int64_t single_run_stage1_epochs;
} MethodTrmmlConfig;

/* The SPEC's values of the shared keys (COCO/RN101 recipe). */
TrmmlConfig trmml_config_default(void);

/* Set one key from its text value. STATUS_ERR_USAGE (message names the key and what was
 * expected) for an unknown key or a value of the wrong kind or out of range; cfg unchanged. */
Status trmml_config_set(TrmmlConfig *cfg, const char *key, const char *value);
/* Apply every `key = value` (or `key: value`) line of text; `origin` names it in errors
 * ("FILE:LINE: ..."). Stops at the first bad line. */
Status trmml_config_parse_string(TrmmlConfig *cfg, const char *text, const char *origin);
/* The same for a file (STATUS_ERR_IO when it cannot be read). */
Status trmml_config_parse_file(TrmmlConfig *cfg, const char *path);
/* Cross-field checks of the shared keys (e.g. beta1_min <= beta1_max); STATUS_ERR_USAGE naming
 * the key. */
Status trmml_config_validate(const TrmmlConfig *cfg);

/* Every key as `key = value  # SPEC reference`, one per line, in a fixed order; the output
 * parses back to an identical configuration. */
void trmml_config_print(const TrmmlConfig *cfg, FILE *out);
/* The key table (tensor/keys.h) of TrmmlConfig and its length. */
const KeySpec *trmml_config_keys(int *n);
/* Number of keys, and the name of key i (for --help and tests). */
int trmml_config_key_count(void);
const char *trmml_config_key_name(int i);
