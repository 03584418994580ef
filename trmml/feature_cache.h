/* feature_cache.h — the frozen image tower's dense features, computed once and memory-mapped.
 *
 * Because the CLIP image tower is frozen, every method here consumes only its dense features
 * z (HW+1, E) per image (SPEC §1.6). `trmml extract` runs the tower once per image (test-time
 * transform: resize to S x S — bicubic for TRM-ML, bilinear for DualCoOp (SPEC §2.2, §2.3) —
 * then CLIP normalisation) and stores z as float16; training and
 * evaluation with `--cached` read them back instead of running the tower.
 *
 * File layout (little-endian): a 256-byte header
 *     magic "TRMFCACH", u32 version (1), u32 header bytes (256),
 *     i64 n images, i64 tokens (HW+1), i64 dim (E), i64 image side S,
 *     char model[96] (checkpoint identity: model name and SHA-256 prefix, or the path),
 *     char dataset[32], char split[32], char resample[16] ("bicubic"/"bilinear"), zero padding
 * then n x tokens x dim float16 values, image-major, in dataset order. Written to path.tmp and
 * renamed, so a cache file is complete or absent. Every field is checked on open, including that
 * the file size is exactly header + data. */
#pragma once
#include <stdint.h>

#include "clip/model.h"
#include "datasets/dataset.h"
#include "tensor/image.h"
#include "tensor/resample.h"
#include "tensor/tensor.h"

typedef struct {
    int64_t n, tokens, dim, image_size;
    char model[96], dataset[32], split[32], resample[16];
    const uint16_t *data;  /* n*tokens*dim float16 values (mapped, read-only) */
    void *map;
    size_t map_bytes;
} FeatureCache;

typedef struct {
    int image_size;        /* S (a multiple of 32) */
    int batch;             /* images per tower call (default 8) */
    ResampleFilter filter; /* the resize of the test-time transform; 0 (nearest) means bicubic */
    bool skip_bad_images;  /* skip unreadable images (their features are zeros, counted) */
    const char *model_id;  /* recorded in the header */
    bool progress;         /* progress lines on stderr */
} ExtractOptions;

/* Run the tower over every image of ds and write the cache to `path`. *skipped (may be NULL) is
 * the number of unreadable images skipped. Errors (an unreadable image without the skip policy,
 * an I/O failure) leave no file behind and name the file. Under MPI (tensor/dist.h) every rank
 * calls it: the ranks take turns at the batches of opt->batch images, rank 0 gathers and writes
 * them, and the file has the bytes one process writes with the same threads per process
 * (docs/distributed.md); an error on any rank is every rank's. */
Status feature_cache_extract(const ClipModel *model, const Dataset *ds, const ExtractOptions *opt,
                             const char *path, int64_t *skipped);

/* Map a cache; checks magic, version, sizes. Close with feature_cache_close. */
Status feature_cache_open(const char *path, FeatureCache *fc);
void feature_cache_close(FeatureCache *fc);

/* Images idx[0..count) as a (count, tokens, dim) float32 tensor from the current arena. */
Tensor *feature_cache_batch(const FeatureCache *fc, const int64_t *idx, int64_t count);
