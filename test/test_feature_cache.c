/* test_feature_cache.c — dense features extracted to the float16 cache equal the tower's output
 * (to float16 rounding); corrupt caches and unreadable images are refused with clear errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clip/preprocess.h"
#include "datasets/augment.h"
#include "datasets/synth.h"
#include "tensor/convert.h"
#include "test/test.h"
#include "test/util_clip.h"
#include "trmml/feature_cache.h"

TEST(feature_cache_roundtrip_and_errors) {
    char dir[64] = "/tmp/trmml-fc-XXXXXX", world[128], classes[160], cache[160];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(world, sizeof world, "%s/world", dir);
    snprintf(classes, sizeof classes, "%s/classes.txt", world);
    snprintf(cache, sizeof cache, "%s/test.feat", dir);
    SynthConfig sc = ds_synth_default_config();
    sc.n_train = 4;
    sc.n_test = 5;
    sc.size = 80;
    CHECK(ds_synth_write(world, &sc, false, NULL) == STATUS_OK, "%s", error_last());
    DsOptions opt = {.class_list = classes};
    Dataset *ds = NULL;
    CHECK(ds_open("voc2007", world, "test", &opt, &ds) == STATUS_OK, "%s", error_last());

    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 5);
    ClipModel *m = NULL;
    CHECK(clip_model_load(&m, sd, &cfg) == STATUS_OK, "%s", error_last());
    ExtractOptions eo = {.image_size = 64, .batch = 2, .model_id = "random small"};
    int64_t skipped = -1;
    EXPECT(feature_cache_extract(m, ds, &eo, cache, &skipped) == STATUS_OK && skipped == 0,
           "extract: %s", error_last());

    FeatureCache fc;
    if (feature_cache_open(cache, &fc) != STATUS_OK) {
        test_fail(__FILE__, __LINE__, "open: %s", error_last());
    } else {
        EXPECT(fc.n == 5 && fc.tokens == 5 && fc.dim == 32 && fc.image_size == 64 &&
                   strcmp(fc.split, "test") == 0 && strcmp(fc.model, "random small") == 0 &&
                   strcmp(fc.resample, "bicubic") == 0,
               "header: n %lld tokens %lld dim %lld", (long long)fc.n, (long long)fc.tokens,
               (long long)fc.dim);
        /* Image 3 through the tower directly, with the same test-time transform. */
        Image im = {0}, out = {0};
        CHECK(image_load(ds_image_path(ds, 3), &im, NULL) == STATUS_OK, "%s", error_last());
        aug_test(&im, 64, RESAMPLE_BICUBIC, &out);
        Tensor *x = tensor_empty(DT_F32, 4, SHAPE(1, 3, 64, 64));
        image_normalize(&out, CLIP_MEAN, CLIP_STD, tensor_f32(x));
        bool g = ag_set_grad_enabled(false);
        Tensor *emb = NULL, *dense = NULL;
        clip_encode_image(m, x, &emb, &dense);
        ag_set_grad_enabled(g);
        int64_t idx[2] = {3, 0};
        Tensor *got = feature_cache_batch(&fc, idx, 2);
        /* float16 keeps 11 significant bits: relative error <= 2^-11 (+ a tiny atol near 0). */
        EXPECT_CLOSE_N("cached dense", tensor_f32(got), tensor_f32(dense), 5 * 32, 1e-4, 4.9e-4);
        image_free(&im);
        image_free(&out);
        feature_cache_close(&fc);
    }

    /* A truncated cache is refused, naming the file. */
    FILE *f = fopen(cache, "r+b");
    CHECK(f && ftruncate(fileno(f), 300) == 0, "truncate");
    fclose(f);
    EXPECT(feature_cache_open(cache, &fc) == STATUS_ERR_FORMAT && strstr(error_last(), "test.feat"),
           "truncated cache: %s", error_last());

    /* An unreadable image: an error naming it and no file; with the skip policy, counted. */
    remove(cache);
    f = fopen(ds_image_path(ds, 2), "wb");
    fputs("not an image", f);
    fclose(f);
    EXPECT(feature_cache_extract(m, ds, &eo, cache, &skipped) != STATUS_OK &&
               strstr(error_last(), ds_image_path(ds, 2)) && access(cache, F_OK) != 0,
           "bad image: %s", error_last());
    eo.skip_bad_images = true;
    EXPECT(feature_cache_extract(m, ds, &eo, cache, &skipped) == STATUS_OK && skipped == 1,
           "skip policy: skipped %lld: %s", (long long)skipped, error_last());

    clip_model_free(m);
    param_store_destroy(sd);
    ds_free(ds);
    test_remove_tree(dir);
}
