/* cmd_pretrain.c — `trmml pretrain-clip`: train a small CLIP contrastively on image–caption
 * pairs (clip/pretrain.h) and save it under CLIP's tensor names (docs/pretraining.md). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "clip/pretrain.h"
#include "clip/tokenizer.h"
#include "datasets/dataset.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#include "tools/command.h"
#include "tools/flags.h"

/* The pairs of `trmml synth`'s tree DIR: the images of its trainval split (a VOC layout with
 * DIR/classes.txt) and DIR/captions.txt. */
static Status load_pairs(const char *dir, const ClipTokenizer *tok, int64_t size, ClipPairs *out) {
    char *cls = ds_path_join(dir, "classes.txt"), *capf = ds_path_join(dir, "captions.txt");
    Dataset *ds = NULL;
    Status st = ds_open("voc2007", dir, "trainval", &(DsOptions){.class_list = cls}, &ds);
    if (st == STATUS_OK)
        st = clip_pairs_load((const char *const *)ds->image_paths, ds->n, capf, tok, size, out);
    ds_free(ds);
    free(cls);
    free(capf);
    return st;
}

typedef struct {
    ModelFlags model; /* --vocab only */
    const char *data, *out, *config;
    int64_t steps, batch, seed; /* -1: the configuration's */
} PretrainFlags;

static const KeySpec PRETRAIN_FLAGS[] = {
    FLAG_ARG(PretrainFlags, "data", data, "DIR",
             "a VOC-layout tree with DIR/captions.txt (trmml synth writes one); trains on "
             "ImageSets/Main/trainval.txt"),
    FLAG_ARG(PretrainFlags, "out", out, "FILE",
             "the model: safetensors with CLIP's tensor names (loads like RN50.pt)"),
    FLAG_ARG(PretrainFlags, "config", config, "FILE",
             "key = value lines overriding the defaults (docs/pretraining.md)"),
    FLAG_INT(PretrainFlags, "steps", steps, 1, 100000000, "N",
             "optimizer steps (configuration: steps)"),
    FLAG_INT(PretrainFlags, "batch", batch, 1, 100000000, "N",
             "pairs per step (configuration: batch)"),
    FLAG_INT(PretrainFlags, "seed", seed, 0, 9223372036854775807.0, "S", "configuration: seed"),
};

/* The configuration: the defaults, --config's file, then --steps, --batch, --seed; validated. */
static Status resolve_config(const PretrainFlags *o, ClipPretrainConfig *cfg) {
    *cfg = clip_pretrain_default_config();
    Status st = o->config ? clip_pretrain_config_load(o->config, cfg) : STATUS_OK;
    if (st != STATUS_OK) return st;
    if (o->steps > 0)
        cfg->steps = o->steps, cfg->warmup = cfg->warmup >= o->steps ? o->steps / 10 : cfg->warmup;
    if (o->batch > 0) cfg->batch = o->batch;
    if (o->seed >= 0) cfg->seed = (uint64_t)o->seed;
    return clip_pretrain_config_validate(cfg);
}

/* A fresh permutation of 0..n-1 for `epoch`, from (seed, epoch). */
static void shuffle_epoch(int64_t *order, int64_t n, uint64_t seed, int64_t epoch) {
    Rng shuffle;
    rng_seed(&shuffle, seed * 0xD1B54A32D192ED03ull + (uint64_t)epoch + 1);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&shuffle) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j], order[j] = t;
    }
}

/* cfg->steps steps over the pairs (the last partial batch of an epoch is dropped), a progress
 * line every log_every steps. 0, or 1 after a non-finite loss (nothing to save). */
static int train_steps(ClipPretrain *p, const ClipPairs *pairs, const ClipPretrainConfig *cfg) {
    int64_t *order = xmalloc((size_t)pairs->n * sizeof *order);
    const int64_t per_epoch = pairs->n / cfg->batch;
    double loss_sum = 0, acc_sum = 0, t_log = time_now_s(), t_start = time_now_s();
    int64_t since = 0;
    int rc = 0;
    for (int64_t s = 0; s < cfg->steps && rc == 0; s++) {
        const int64_t epoch = s / per_epoch, k = s % per_epoch;
        if (k == 0) shuffle_epoch(order, pairs->n, cfg->seed, epoch);
        Tensor *images, *ids;
        clip_pairs_batch(pairs, order + k * cfg->batch, cfg->batch, cfg->shift,
                         cfg->seed * 0x9E3779B97F4A7C15ull + (uint64_t)s, &images, &ids);
        float acc = 0;
        float loss = clip_pretrain_step(p, images, ids, &acc);
        tensor_step_end();
        if (!isfinite(loss)) {
            fprintf(stderr, "trmml pretrain-clip: non-finite loss at step %lld; nothing saved\n",
                    (long long)s + 1);
            rc = 1;
            break;
        }
        loss_sum += loss, acc_sum += acc, since++;
        if ((s + 1) % cfg->log_every == 0 || s + 1 == cfg->steps) {
            const double t = time_now_s();
            printf("step %lld/%lld  epoch %lld  loss %.4f  batch-acc %.3f  %.1f img/s  "
                   "elapsed %.0f s\n",
                   (long long)s + 1, (long long)cfg->steps, (long long)epoch + 1,
                   loss_sum / (double)since, acc_sum / (double)since,
                   (double)(since * cfg->batch) / (t - t_log), t - t_start);
            fflush(stdout);
            loss_sum = acc_sum = 0, since = 0, t_log = t;
        }
    }
    free(order);
    return rc;
}

COMMAND_AS(pretrain_clip, "pretrain-clip",
           "train a small CLIP on image-caption pairs (CLIP's contrastive objective)",
           "trmml pretrain-clip --data DIR --out MODEL.safetensors [options]\n"
           "  --steps, --batch and --seed override the configuration's values. Prints the\n"
           "  resolved configuration, then a progress line every log_every steps.") {
    PretrainFlags o = {.steps = -1, .batch = -1, .seed = -1};
    const KeyGroup groups[] = {FLAGS_OF(PRETRAIN_FLAGS, &o), VOCAB_GROUP(&o.model)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.data || !o.out) return tool_usage_error("--data and --out are required");
    ClipPretrainConfig cfg;
    Status st = tool_device_select(NULL);
    if (st == STATUS_OK) st = resolve_config(&o, &cfg);
    if (st != STATUS_OK) return tool_fail(st);

    ClipTokenizer *tok = NULL;
    ClipPairs pairs = {0};
    st = clip_tokenizer_load(clip_vocab_path(o.model.vocab), &tok);
    double t0 = time_now_s();
    if (st == STATUS_OK) st = load_pairs(o.data, tok, cfg.input_size, &pairs);
    clip_tokenizer_free(tok);
    if (st == STATUS_OK && pairs.n < cfg.batch)
        st = error_set(STATUS_ERR_USAGE, "--data %s: %lld training pairs, fewer than batch = %lld",
                       o.data, (long long)pairs.n, (long long)cfg.batch);
    if (st != STATUS_OK) {
        clip_pairs_free(&pairs);
        return tool_fail(st);
    }
    printf("pretrain-clip: %lld image-caption pairs from %s at %lld px (%.1f s)\n",
           (long long)pairs.n, o.data, (long long)cfg.input_size, time_now_s() - t0);
    clip_pretrain_config_print(&cfg, stdout);
    fflush(stdout);

    ClipPretrain *p = clip_pretrain_create(&cfg);
    printf("pretrain-clip: %lld trainable parameters\n",
           (long long)param_numel_trainable(clip_pretrain_params(p)));
    rc = train_steps(p, &pairs, &cfg);
    if (rc == 0) {
        st = clip_pretrain_save(p, o.out);
        if (st != STATUS_OK) rc = tool_fail(st);
        else printf("pretrain-clip: wrote %s\n", o.out);
    }
    clip_pretrain_free(p);
    clip_pairs_free(&pairs);
    return rc;
}
