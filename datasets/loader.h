/* loader.h — a multi-threaded, prefetching, deterministic batch loader (issue 4 item 3).
 *
 *     DsLoaderOptions opt = {.batch_size = 32, .image_size = 448, .shuffle = true, .seed = 1};
 *     DsLoader *L;
 *     if (ds_loader_open_dataset(ds, &opt, &L) != STATUS_OK) return fail(error_last());
 *     for (int64_t epoch = 0; epoch < epochs; epoch++) {
 *         ds_loader_start_epoch(L, epoch);
 *         const DsBatch *b;
 *         Status st;
 *         while ((st = ds_loader_next(L, &b)) == STATUS_OK && b) train_step(b);
 *         if (st != STATUS_OK) return fail(error_last());  // names the unreadable image
 *     }
 *     ds_loader_close(L);
 *
 * Worker threads (pthreads) decode each image (tensor/image.h), hand it to a per-sample
 * transform callback that writes (3,S,S) floats, and store the result in a bounded ring of
 * prefetched samples; ds_loader_next assembles them into batches in epoch order.
 *
 * Determinism: the epoch's order is a permutation drawn from (seed, epoch) alone, each sample's
 * augmentation seed is ds_loader_sample_seed(seed, epoch, item) and batches are assembled in
 * order by the consumer, so the same seed gives the same batches, byte for byte, for any number
 * of workers and any timing. Skipped (unreadable) images shift the following samples forward,
 * which is deterministic too. docs/loader.md describes the design. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "datasets/dataset.h"
#include "tensor/image.h"
#include "tensor/error.h"

/* Per-sample transform: decoded RGB image `in` (borrowed) -> out_chw, 3*S*S floats in CHW order
 * (S the loader's image_size). Random augmentation must draw only from an Rng seeded with
 * sample_seed (rng_seed(&r, sample_seed)), never from shared state: it runs concurrently on
 * several worker threads. ctx is the options' transform_ctx. */
typedef void (*DsTransformFn)(const Image *in, uint64_t sample_seed, void *ctx, float *out_chw);

/* What the transforms below need, through their ctx: the side, the crop's area bound and the
 * normalisation the model expects (CLIP's: clip/preprocess.h's CLIP_MEAN, CLIP_STD; datasets/
 * does not depend on clip/, so the caller passes them). */
typedef struct {
    int image_size;   /* S */
    double min_area;  /* TRM-ML random-resized-crop area lower bound: 0.5, or 0.6 for NUS-WIDE */
    float mean[3], std[3]; /* out = (px/255 - mean[c]) / std[c] (image_normalize) */
} DsAugmentCtx;

/* The default transform: Pillow bicubic resize straight to S x S (no crop, aspect not kept),
 * then the normalisation (image_normalize with ctx's mean and std). ctx points at a
 * DsAugmentCtx (min_area unused). Uses no randomness. */
void ds_transform_resize_normalize(const Image *in, uint64_t sample_seed, void *ctx,
                                   float *out_chw);

/* The training transforms (datasets/augment.h) as loader callbacks: the sample's seed seeds an
 * Rng, the augmentation produces an S x S image, the normalisation follows. ctx points at a
 * DsAugmentCtx. Deterministic per sample seed. */
void ds_transform_trmml_train(const Image *in, uint64_t sample_seed, void *ctx, float *out_chw);
void ds_transform_dualcoop_train(const Image *in, uint64_t sample_seed, void *ctx,
                                 float *out_chw);

/* What happens when an image cannot be read or decoded. */
typedef enum {
    DS_BAD_IMAGE_ERROR = 0, /* ds_loader_next returns the error naming the file (default) */
    DS_BAD_IMAGE_SKIP = 1,  /* skip it, count it, fill the batch from the following items */
} DsBadImagePolicy;

/* "error" / "skip" -> policy (the `--bad-image` flag); USAGE error naming the value otherwise. */
Status ds_bad_image_parse(const char *s, DsBadImagePolicy *out);

/* Options; zero fields take the defaults given. */
typedef struct {
    int batch_size;          /* B, required (>= 1) */
    int image_size;          /* S, required (>= 1) */
    int workers;             /* worker threads; 0 = 2 */
    int prefetch;            /* batches prepared ahead of the one the consumer holds; 0 = 2 */
    bool shuffle;            /* a fresh permutation per epoch; false = item order */
    bool drop_last;          /* drop a final batch with fewer than B samples */
    uint64_t seed;           /* seeds the permutations and the per-sample seeds */
    DsBadImagePolicy bad_image;
    DsTransformFn transform; /* NULL = ds_transform_resize_normalize */
    void *transform_ctx;     /* passed to transform (ignored for the default) */
    float mean[3], std[3];   /* the default transform's normalisation (CLIP's: CLIP_MEAN,
                                CLIP_STD of clip/preprocess.h); std 0 = 1, so all zero = px/255 */
    ImageDecodeOpts decode;  /* decoder options (zero = strict defaults) */
} DsLoaderOptions;

/* One batch; borrowed from the loader, valid until the next ds_loader_next, ds_loader_start_epoch
 * or ds_loader_close. Sample k of the batch is item index[k] of the source. */
typedef struct {
    int64_t b;           /* samples in this batch: B, or fewer for the last one (no drop_last) */
    int64_t c;           /* C label columns */
    int64_t s;           /* S */
    float *images;       /* (b,3,S,S), CHW per sample; tensor_wrap(DT_F32, DEVICE_CPU, ...) */
    int8_t *labels;      /* (b,C) label rows, +1/−1/0 as in the source */
    float *labels_f32;   /* the same values as float */
    int64_t *index;      /* (b) item indices into the source */
    uint64_t *seeds;     /* (b) the sample seeds the transform received */
    int64_t epoch;       /* the epoch it belongs to */
    int64_t batch_index; /* 0, 1, ... within the epoch */
} DsBatch;

/* Counts of unreadable images (with DS_BAD_IMAGE_SKIP; the error policy stops at the first). */
typedef struct {
    int64_t skipped_epoch;  /* samples skipped so far in the current epoch */
    int64_t skipped_total;  /* samples skipped since the loader was opened */
    int64_t bad_items;      /* distinct items found unreadable so far */
    char first_bad[512];    /* the message of the first unreadable image ("" when none) */
} DsLoaderStats;

typedef struct DsLoader DsLoader;

/* A loader over n images with label rows: paths[i] and labels[i*c .. i*c+c) (labels may be
 * NULL when c == 0). Paths and labels are copied. Starts the worker threads, which wait for
 * ds_loader_start_epoch. CHECKs the options; STATUS_ERR_OOM if a thread cannot be started.
 * *out is owned by the caller (ds_loader_close). */
Status ds_loader_open(char *const *paths, const int8_t *labels, int64_t n, int64_t c,
                      const DsLoaderOptions *opt, DsLoader **out);
/* The same over a Dataset's image paths and label rows (copied; ds may be freed afterwards). */
Status ds_loader_open_dataset(const Dataset *ds, const DsLoaderOptions *opt, DsLoader **out);

/* Begin epoch `epoch` (>= 0): abandons whatever remains of the current one (work in progress is
 * waited for and discarded) and starts prefetching the new order. Invalidates the last batch. */
void ds_loader_start_epoch(DsLoader *L, int64_t epoch);

/* The next batch of the current epoch into *out (borrowed, see DsBatch), or *out = NULL at the
 * end of the epoch. With DS_BAD_IMAGE_ERROR an unreadable image returns its Status, the message
 * naming the file; the epoch is then stopped and further calls return the same error until the
 * next ds_loader_start_epoch. CHECKs that an epoch was started. */
Status ds_loader_next(DsLoader *L, const DsBatch **out);

/* Both updated by ds_loader_next: read them from the thread that calls it. */
DsLoaderStats ds_loader_stats(const DsLoader *L);
/* Items whose image was found unreadable so far (bad[i] for i in [0, n)); borrowed. */
const bool *ds_loader_bad_items(const DsLoader *L);

/* Batches per epoch when every image is readable: ceil(n/B), or floor(n/B) with drop_last. */
int64_t ds_loader_batches_per_epoch(const DsLoader *L);

/* Stop the workers (also mid-epoch, waiting only for the samples being decoded), join them and
 * free everything. NULL is allowed. */
void ds_loader_close(DsLoader *L);

/* The seed the transform receives for `item` in `epoch`: a fixed mix of the three numbers
 * (SplitMix64 finalizer), independent of order, batch and thread. */
uint64_t ds_loader_sample_seed(uint64_t seed, int64_t epoch, int64_t item);

/* The order of epoch `epoch` into perm[0..n): Fisher–Yates driven by rng_seed of a mix of
 * (seed, epoch), unbiased (rejection sampling); the identity when shuffle is false. */
void ds_loader_permutation(uint64_t seed, int64_t epoch, bool shuffle, int64_t n, int64_t *perm);
