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
#include "tensor/clock.h"
#include "tensor/device.h"
#include "tools/command.h"

static int fail(const char *cmd, Status st) {
    fprintf(stderr, "trmml %s: %s\n", cmd, error_last());
    return st == STATUS_ERR_USAGE ? 2 : 1;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    if (!*s) return false;
    long long v = strtoll(s, &end, 10);
    if (*end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

COMMAND_AS(pretrain_clip, "pretrain-clip",
           "train a small CLIP on image-caption pairs (CLIP's contrastive objective)",
           "trmml pretrain-clip --data DIR --out MODEL.safetensors [--config FILE] [--steps N]\n"
           "                    [--batch N] [--seed S] [--vocab F]\n"
           "  --data DIR     a VOC-layout tree with DIR/captions.txt (trmml synth writes one);\n"
           "                 trains on ImageSets/Main/trainval.txt\n"
           "  --out FILE     the model, safetensors with CLIP's tensor names (loads like RN50.pt)\n"
           "  --config FILE  key = value lines overriding the defaults (docs/pretraining.md)\n"
           "  --steps N, --batch N, --seed S   override the configuration's values\n"
           "Prints the resolved configuration, then a progress line every log_every steps.") {
    const char *data = NULL, *out = NULL, *config = NULL, *vocab = NULL;
    long long steps = -1, batch = -1, seed = -1;
    static const char *const value_flags[] = {"--data",  "--out",   "--config", "--vocab",
                                              "--steps", "--batch", "--seed",   NULL};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v;
        int rc = tool_flag_value("pretrain-clip", argc, argv, &i, value_flags, &v);
        if (rc) return rc;
        if (strcmp(f, "--data") == 0) data = v;
        else if (strcmp(f, "--out") == 0) out = v;
        else if (strcmp(f, "--config") == 0) config = v;
        else if (strcmp(f, "--vocab") == 0) vocab = v;
        else if (strcmp(f, "--steps") == 0 || strcmp(f, "--batch") == 0 || strcmp(f, "--seed") == 0) {
            long long x;
            const bool is_seed = strcmp(f, "--seed") == 0;
            if (!parse_int(v, is_seed ? 0 : 1, is_seed ? INT64_MAX : 100000000, &x)) {
                fprintf(stderr, "trmml pretrain-clip: %s '%s': expected a %s integer\n", f, v,
                        is_seed ? "non-negative" : "positive");
                return 2;
            }
            *(strcmp(f, "--steps") == 0 ? &steps : strcmp(f, "--batch") == 0 ? &batch : &seed) = x;
        } else
            CHECK(false, "pretrain-clip: value flag %s not handled", f);
    }
    if (!data || !out) {
        fprintf(stderr, "trmml pretrain-clip: --data and --out are required (see --help)\n");
        return 2;
    }
    DeviceKind dev;
    int dev_index;
    Status st = device_parse(tool_device(), &dev, &dev_index);
    if (st == STATUS_OK && dev != DEVICE_CPU)
        st = error_set(STATUS_ERR_USAGE, "--device %s: pretraining runs on the CPU only for now "
                                         "(the CUDA kernels are issue #7)", tool_device());
    if (st != STATUS_OK) return fail("pretrain-clip", st);
    ClipPretrainConfig cfg = clip_pretrain_default_config();
    if (config) st = clip_pretrain_config_load(config, &cfg);
    if (st == STATUS_OK) {
        if (steps > 0) cfg.steps = steps, cfg.warmup = cfg.warmup > steps ? steps / 10 : cfg.warmup;
        if (batch > 0) cfg.batch = batch;
        if (seed >= 0) cfg.seed = (uint64_t)seed;
        st = clip_pretrain_config_validate(&cfg);
    }
    if (st != STATUS_OK) return fail("pretrain-clip", st);

    ClipTokenizer *tok = NULL;
    ClipPairs pairs = {0};
    st = clip_tokenizer_load(clip_vocab_path(vocab), &tok);
    double t0 = time_now_s();
    if (st == STATUS_OK) st = clip_pairs_load(data, tok, cfg.input_size, &pairs);
    clip_tokenizer_free(tok);
    if (st == STATUS_OK && pairs.n < cfg.batch)
        st = error_set(STATUS_ERR_USAGE, "--data %s: %lld training pairs, fewer than batch = %lld",
                       data, (long long)pairs.n, (long long)cfg.batch);
    if (st != STATUS_OK) {
        clip_pairs_free(&pairs);
        return fail("pretrain-clip", st);
    }
    printf("pretrain-clip: %lld image-caption pairs from %s at %lld px (%.1f s)\n",
           (long long)pairs.n, data, (long long)cfg.input_size, time_now_s() - t0);
    clip_pretrain_config_print(&cfg, stdout);
    fflush(stdout);

    ClipPretrain *p = clip_pretrain_create(&cfg);
    printf("pretrain-clip: %lld trainable parameters\n",
           (long long)param_numel_trainable(clip_pretrain_params(p)));
    int64_t *order = xmalloc((size_t)pairs.n * sizeof *order);
    const int64_t per_epoch = pairs.n / cfg.batch; /* the last partial batch is dropped */
    Rng shuffle;
    double loss_sum = 0, acc_sum = 0, t_log = time_now_s(), t_start = time_now_s();
    int64_t since = 0;
    int rc = 0;
    for (int64_t s = 0; s < cfg.steps; s++) {
        const int64_t epoch = s / per_epoch, k = s % per_epoch;
        if (k == 0) { /* a fresh permutation per epoch, from (seed, epoch) */
            rng_seed(&shuffle, cfg.seed * 0xD1B54A32D192ED03ull + (uint64_t)epoch + 1);
            for (int64_t i = 0; i < pairs.n; i++) order[i] = i;
            for (int64_t i = pairs.n - 1; i > 0; i--) {
                int64_t j = (int64_t)(rng_next(&shuffle) % (uint64_t)(i + 1));
                int64_t t = order[i];
                order[i] = order[j], order[j] = t;
            }
        }
        Tensor *images, *ids;
        clip_pairs_batch(&pairs, order + k * cfg.batch, cfg.batch, cfg.shift,
                         cfg.seed * 0x9E3779B97F4A7C15ull + (uint64_t)s, &images, &ids);
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
        if ((s + 1) % cfg.log_every == 0 || s + 1 == cfg.steps) {
            const double t = time_now_s();
            printf("step %lld/%lld  epoch %lld  loss %.4f  batch-acc %.3f  %.1f img/s  "
                   "elapsed %.0f s\n",
                   (long long)s + 1, (long long)cfg.steps, (long long)epoch + 1,
                   loss_sum / (double)since, acc_sum / (double)since,
                   (double)(since * cfg.batch) / (t - t_log), t - t_start);
            fflush(stdout);
            loss_sum = acc_sum = 0, since = 0, t_log = t;
        }
    }
    if (rc == 0) {
        st = clip_pretrain_save(p, out);
        if (st != STATUS_OK) rc = fail("pretrain-clip", st);
        else printf("pretrain-clip: wrote %s\n", out);
    }
    free(order);
    clip_pretrain_free(p);
    clip_pairs_free(&pairs);
    return rc;
}
