/* util_clip.c — a small CLIP with random weights, for tests of the commands and the methods. */
#include "test/util_clip.h"

#include <math.h>
#include <string.h>

#include "tensor/convert.h"
#include "tensor/device.h"
#include "test/test.h"

ClipConfig test_small_clip_config(void) {
    ClipConfig c = {0};
    c.vision = (ClipResNetConfig){.layers = {1, 1, 1, 1}, .width = 8, .channels = 256, .heads = 4,
                                  .grid = 2, .embed_dim = 32};
    c.text = (ClipTextConfig){.width = 64, .layers = 1, .heads = 1, .context = 77, .vocab = 49408,
                              .embed_dim = 32};
    c.embed_dim = 32;
    return c;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

ParamStore *test_random_clip(const ClipConfig *cfg, uint64_t seed) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "random clip");
    clip_state_dict_declare(ps, cfg);
    param_store_finalize(ps);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < param_count(ps); i++) {
        Tensor *t = param_at(ps, i);
        for (int64_t k = 0; k < t->numel; k++) {
            float v = 0.1f * rng_normal(&r);
            if (ends_with(t->name, "running_var") || ends_with(t->name, "bn1.weight") ||
                ends_with(t->name, "bn2.weight") || ends_with(t->name, "bn3.weight"))
                v = 0.5f + (float)rng_uniform(&r);
            if (strcmp(t->name, "logit_scale") == 0) v = logf(100.0f);
            if (t->dtype == DT_F16) ((uint16_t *)t->data)[k] = f32_to_f16(v);
            else if (t->dtype == DT_F32) ((float *)t->data)[k] = v;
            else if (t->dtype == DT_I64) ((int64_t *)t->data)[k] = 0;
        }
    }
    return ps;
}

ParamStore *test_store_copy(const ParamStore *src, DeviceKind dev) {
    ParamStore *ps = param_store_create(dev, "copy");
    for (int i = 0; i < param_count(src); i++) {
        const Tensor *t = param_at(src, i);
        param_add(ps, t->name, t->dtype, t->ndim, t->shape, t->requires_grad);
    }
    param_store_finalize(ps);
    for (int i = 0; i < param_count(src); i++) {
        const Tensor *t = param_at(src, i);
        device_table(dev)->copy_h2d(param_at(ps, i)->data, t->data,
                                    (size_t)t->numel * dtype_size(t->dtype));
    }
    return ps;
}

ClipModel *test_fixture_clip_model(void) {
    Fixture *fx = fixture_open("clip_model");
    EXPECT(fx, "clip_model fixture: %s", error_last());
    if (!fx) return NULL;
    ParamStore *sd = param_store_create(DEVICE_CPU, "clip fixture state dict");
    for (int i = 0; i < fixture_count(fx); i++) {
        const FixtureTensor *t = fixture_at(fx, i);
        if (strncmp(t->name, "sd/", 3) == 0)
            param_add(sd, t->name + 3, t->dtype == 1 ? DT_I64 : DT_F32, t->ndim, t->shape, false);
    }
    param_store_finalize(sd);
    for (int i = 0; i < fixture_count(fx); i++) {
        const FixtureTensor *t = fixture_at(fx, i);
        if (strncmp(t->name, "sd/", 3) != 0) continue;
        Tensor *p = param_find(sd, t->name + 3);
        memcpy(p->data, t->dtype == 1 ? (void *)t->i64 : (void *)t->f32,
               (size_t)t->numel * dtype_size(p->dtype));
    }
    ClipConfig cfg;
    ClipModel *m = NULL;
    Status st = clip_config_infer(sd, &cfg);
    EXPECT(st == STATUS_OK, "clip_config_infer: %s", error_last());
    if (st == STATUS_OK) {
        cfg.text.heads = 2;
        st = clip_model_load(&m, sd, &cfg);
        EXPECT(st == STATUS_OK, "clip_model_load: %s", error_last());
    }
    param_store_destroy(sd);
    return m;
}

ClipTokenizer *test_load_vocab(void) {
    ClipTokenizer *tok = NULL;
    if (clip_tokenizer_load(clip_vocab_path(NULL), &tok) != STATUS_OK) {
        test_skip("the CLIP vocabulary (../shared/clip/) is not available");
        return NULL;
    }
    return tok;
}
