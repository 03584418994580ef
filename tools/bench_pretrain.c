/* bench_pretrain.c — `trmml bench pretrain`: one contrastive pretraining step of the embedded
 * default's small CLIP (scripts/embedded/clip-small.conf: vision width 32, one Bottleneck per
 * stage, 64 px; text width 128, 4 blocks; E = 128) at batch 128, against
 * scripts/bench_torch_pretrain.py (the same model in PyTorch, same threads).
 *
 * Key "pretrain small step b128": training-mode forward of both towers, the symmetric InfoNCE
 * loss, backward into every parameter, gradient clipping and one AdamW step. Captions are 20
 * tokens (SOT, 18 random ids, EOT), about the synthetic world's. Reported with images/s in the
 * log. --quick: batch 16. */
#include <stdio.h>
#include <stdlib.h>

#include "clip/pretrain.h"
#include "clip/resnet.h"
#include "clip/text.h"
#include "tools/bench.h"

typedef struct {
    ClipPretrain *p;
    Tensor *images, *ids;
} PretrainBench;

static void step(void *arg) {
    PretrainBench *b = arg;
    clip_pretrain_step(b->p, b->images, b->ids, NULL);
    tensor_step_end();
}

BENCH(pretrain, "one pretraining step of the embedded default's small CLIP (batch 128)") {
    ClipPretrainConfig cfg = clip_pretrain_default_config();
    cfg.batch = ctx->quick ? 16 : 128;
    char key[96];
    snprintf(key, sizeof key, "pretrain small step b%lld", (long long)cfg.batch);
    if (!bench_wanted(ctx, key)) return;
    cfg.steps = 1000000; /* the schedule's warm-up and decay do not matter here */
    cfg.warmup = 0;
    Status st = clip_pretrain_config_validate(&cfg);
    CHECK(st == STATUS_OK, "bench pretrain: %s", error_last());
    PretrainBench b = {.p = clip_pretrain_create(&cfg)};
    /* Inputs live in a ParamStore so that they survive tensor_step_end. */
    const int64_t B = cfg.batch, S = cfg.input_size;
    ParamStore *in = param_store_create(ctx->dev, "bench-pretrain-inputs");
    b.images = param_add(in, "images", DT_F32, 4, SHAPE(B, 3, S, S), false);
    b.ids = param_add(in, "ids", DT_I64, 2, SHAPE(B, 77), false);
    param_store_finalize(in);
    Rng r;
    rng_seed(&r, 3);
    float *h = xmalloc((size_t)b.images->numel * sizeof *h);
    rng_fill_normal(&r, h, b.images->numel, 0, 1);
    tensor_copy_from_host(b.images, h);
    free(h);
    int64_t *ids = xcalloc((size_t)(B * 77), sizeof *ids);
    for (int64_t i = 0; i < B; i++) {
        ids[i * 77] = 49406;
        for (int64_t t = 1; t <= 18; t++) ids[i * 77 + t] = 1 + (int64_t)(rng_next(&r) % 40000);
        ids[i * 77 + 19] = 49407;
    }
    tensor_copy(b.ids, tensor_wrap(DT_I64, DEVICE_CPU, 2, SHAPE(B, 77), ids));
    free(ids);
    double s = bench_time(step, &b, 3, ctx->quick ? 0.5 : 8.0);
    fprintf(stderr, "pretrain small step b%lld: %.1f ms, %.1f images/s\n", (long long)B, 1e3 * s,
            (double)B / s);
    /* Work: forward multiply-adds of both towers (the convolutions, the attention pool, 20 text
     * positions), x3 for forward + backward, x2 flops per multiply-add. */
    double conv, pool, dense;
    clip_resnet_macs(&cfg.clip.vision, S, S, &conv, &pool, &dense);
    const double macs = (double)B * (conv + pool + clip_text_macs(&cfg.clip.text, 20));
    bench_report(key, s, 3 * 2 * macs * 1e-9);
    clip_pretrain_free(b.p);
    param_store_destroy(in);
}
