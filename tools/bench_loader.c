/* bench_loader.c — `trmml bench loader`: batch loader throughput, decode + transform.
 *
 * At start it writes 64 JPEGs of 500 x 375 (the typical size of a VOC/COCO photo; quality 90)
 * into a temporary directory, then times whole epochs of the loader over them: JPEG decode,
 * Pillow-bicubic resize to S x S and CLIP normalisation, batches of 16, on `--threads` worker
 * threads (default 2); the consumer only takes the batches. Keys, matching
 * scripts/bench_loader_torch.py, with the time per image in ms (images/s = 1000 / ms; GFLOP 0):
 *     "loader 448 resize"     S = 448, the default transform
 *     "loader 224 resize"     S = 224
 * Each time is the median over epochs (one warm-up epoch). The images are a deterministic
 * integer pattern (smooth gradients, a checkerboard texture and hashed noise) that the Python
 * script reproduces exactly, so both sides decode the same bytes' worth of content. --quick: 16
 * images, S = 448 only, one timed epoch. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clip/preprocess.h"
#include "datasets/augment.h"
#include "datasets/loader.h"
#include "tools/bench.h"

#define BENCH_W 500
#define BENCH_H 375
#define BENCH_QUALITY 90
#define BENCH_BATCH 16

/* A 32-bit integer hash (wrapping multiplies), as in scripts/bench_loader_torch.py. */
static uint32_t hash3(uint32_t x, uint32_t y, uint32_t i) {
    uint32_t h = (x * 0x9E3779B1u) ^ (y * 0x85EBCA77u) ^ (i * 0xC2B2AE3Du);
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

/* Image i of the benchmark set: per-channel gradients shifted by i, a 25-pixel checkerboard and
 * noise in [−16, 15] per channel. */
static Image bench_image(int i) {
    Image im = image_new(BENCH_W, BENCH_H);
    for (int y = 0; y < BENCH_H; y++)
        for (int x = 0; x < BENCH_W; x++) {
            const uint32_t h = hash3((uint32_t)x, (uint32_t)y, (uint32_t)i);
            const int base[3] = {(x + 37 * i) % BENCH_W * 255 / (BENCH_W - 1),
                                 (y + 53 * i) % BENCH_H * 255 / (BENCH_H - 1),
                                 ((x + y) / 4 + 17 * i) % 256};
            const int block = ((x / 25 + y / 25 + i) % 2) * 40;
            for (int c = 0; c < 3; c++) {
                int v = base[c] / 2 + 48 + block + (int)((h >> (8 * c)) & 31) - 16;
                im.px[((size_t)y * BENCH_W + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    return im;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct {
    DsLoader *loader;
    int64_t epoch, images;
} LoaderRun;

static void run_epoch(void *p) {
    LoaderRun *r = p;
    ds_loader_start_epoch(r->loader, r->epoch++);
    const DsBatch *b;
    Status st;
    int64_t seen = 0;
    while ((st = ds_loader_next(r->loader, &b)) == STATUS_OK && b) seen += b->b;
    CHECK(st == STATUS_OK && seen == r->images, "bench loader: %s (%lld of %lld images)",
          error_last(), (long long)seen, (long long)r->images);
}

BENCH(loader, "batch loader images/s: JPEG 500x375 decode + bicubic resize to 448/224 + CLIP "
              "normalisation, --threads workers") {
    const int count = ctx->quick ? 16 : 64;
    char dir[] = "/tmp/trmml-bench-loader-XXXXXX";
    CHECK(mkdtemp(dir), "bench loader: mkdtemp failed");
    char **paths = xcalloc((size_t)count, sizeof *paths);
    size_t bytes = 0;
    for (int i = 0; i < count; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/img_%02d.jpg", dir, i);
        paths[i] = ds_strdup(path);
        Image im = bench_image(i);
        Status st = image_save_jpeg(&im, path, BENCH_QUALITY);
        CHECK(st == STATUS_OK, "bench loader: %s", error_last());
        image_free(&im);
        struct stat sb;
        if (stat(path, &sb) == 0) bytes += (size_t)sb.st_size;
    }
    fprintf(stderr, "  %d JPEGs %dx%d, quality %d, %.0f KB average, in %s; %d workers, batch %d\n",
            count, BENCH_W, BENCH_H, BENCH_QUALITY, bytes / 1024.0 / count, dir,
            ctx->threads > 0 ? ctx->threads : 2, BENCH_BATCH);

    static const int sizes[2] = {448, 224};
    for (int si = 0; si < (ctx->quick ? 1 : 2); si++) {
        DsLoaderOptions opt = {.batch_size = BENCH_BATCH, .image_size = sizes[si],
                               .workers = ctx->threads > 0 ? ctx->threads : 2, .shuffle = true,
                               .seed = 1};
        memcpy(opt.mean, CLIP_MEAN, sizeof opt.mean);
        memcpy(opt.std, CLIP_STD, sizeof opt.std);
        LoaderRun run = {.images = count};
        Status st = ds_loader_open(paths, NULL, count, 0, &opt, &run.loader);
        CHECK(st == STATUS_OK, "bench loader: %s", error_last());
        const double t = bench_time(run_epoch, &run, ctx->quick ? 1 : 3, ctx->quick ? 0 : 2.0);
        ds_loader_close(run.loader);
        char key[64];
        snprintf(key, sizeof key, "loader %d resize", sizes[si]);
        bench_report(key, t / count, 0.0);
        fprintf(stderr, "  %-40s %10.1f images/s\n", key, count / t);
    }
    /* The TRM-ML training pipeline (SPEC §2.2: crop or cutout, MLC policy, flip) at 448. */
    DsAugmentCtx aug = {.image_size = 448, .min_area = 0.5};
    memcpy(aug.mean, CLIP_MEAN, sizeof aug.mean);
    memcpy(aug.std, CLIP_STD, sizeof aug.std);
    DsLoaderOptions opt = {.batch_size = BENCH_BATCH, .image_size = 448,
                           .workers = ctx->threads > 0 ? ctx->threads : 2, .shuffle = true,
                           .seed = 1, .transform = ds_transform_trmml_train, .transform_ctx = &aug};
    LoaderRun run = {.images = count};
    Status st = ds_loader_open(paths, NULL, count, 0, &opt, &run.loader);
    CHECK(st == STATUS_OK, "bench loader: %s", error_last());
    const double t = bench_time(run_epoch, &run, ctx->quick ? 1 : 3, ctx->quick ? 0 : 2.0);
    ds_loader_close(run.loader);
    bench_report("loader 448 trmml-augment", t / count, 0.0);
    fprintf(stderr, "  %-40s %10.1f images/s\n", "loader 448 trmml-augment", count / t);
    for (int i = 0; i < count; i++) free(paths[i]);
    free(paths);
    nftw(dir, rm_entry, 4, FTW_DEPTH | FTW_PHYS);
}
