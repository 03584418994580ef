/* feature_cache.c — extract dense features to a float16 file and memory-map them back. */
#include "trmml/feature_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/tape.h"
#include "clip/preprocess.h"
#include "datasets/augment.h"
#include "tensor/convert.h"
#include "tensor/device.h"
#include "tensor/dist.h"

#define FC_MAGIC "TRMFCACH"
#define FC_VERSION 1u
#define FC_HEADER 256

typedef struct {
    char magic[8];
    uint32_t version, header_bytes;
    int64_t n, tokens, dim, image_size;
    char model[96], dataset[32], split[32], resample[16];
    char pad[FC_HEADER - 8 - 8 - 32 - 96 - 32 - 32 - 16];
} FcHeader;
_Static_assert(sizeof(FcHeader) == FC_HEADER, "feature cache header must be 256 bytes");

/* The 256-byte header of a cache of ds at S px with `tokens` x embed_dim features. */
static Status write_header(FILE *f, const char *tmp, const ClipModel *model, const Dataset *ds,
                           const ExtractOptions *opt, int S, int64_t tokens, ResampleFilter filter) {
    FcHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, FC_MAGIC, 8);
    h.version = FC_VERSION;
    h.header_bytes = FC_HEADER;
    h.n = ds->n;
    h.tokens = tokens;
    h.dim = model->cfg.embed_dim;
    h.image_size = S;
    snprintf(h.model, sizeof h.model, "%s", opt->model_id ? opt->model_id : "");
    snprintf(h.dataset, sizeof h.dataset, "%s", ds->name);
    snprintf(h.split, sizeof h.split, "%s", ds->split);
    snprintf(h.resample, sizeof h.resample, "%s", resample_filter_name(filter));
    return xfwrite(&h, sizeof h, 1, f, tmp);
}

/* The buffers of one batch of at most B images (S px, per_image halves each). Under MPI, rank
 * 0's `half` holds a whole round: its own batch first, then every other rank's (gathered). */
typedef struct {
    int S, B;
    size_t per_image;
    uint16_t *half;
    float *pixels;
    bool *bad;
    Status *img_st;
    char (*img_err)[512];
} ExtractBatch;

static void batch_alloc(ExtractBatch *xb, int S, int B, size_t per_image, int ranks) {
    *xb = (ExtractBatch){S, B, per_image, NULL, NULL, NULL, NULL, NULL};
    xb->half = xmalloc((size_t)ranks * (size_t)B * per_image * sizeof(uint16_t));
    xb->pixels = xmalloc((size_t)B * 3 * S * S * sizeof(float));
    xb->bad = xcalloc(B, sizeof *xb->bad);
    xb->img_st = xcalloc(B, sizeof *xb->img_st);
    xb->img_err = xcalloc(B, sizeof *xb->img_err);
}

static void batch_free(ExtractBatch *xb) {
    free(xb->half);
    free(xb->pixels);
    free(xb->bad);
    free(xb->img_st);
    free(xb->img_err);
}

/* Decode and transform images [start, start+cnt) in parallel; errors are collected per image
 * (the last-error message is global, so each image keeps its own copy). */
static void decode_batch(ExtractBatch *xb, const Dataset *ds, int64_t start, int64_t cnt,
                         ResampleFilter filter) {
    const int S = xb->S;
#pragma omp parallel for schedule(dynamic)
    for (int64_t b = 0; b < cnt; b++) {
        Image im = {0}, out = {0};
        xb->img_st[b] = image_load(ds_image_path(ds, start + b), &im, NULL);
        xb->bad[b] = xb->img_st[b] != STATUS_OK;
        if (xb->bad[b]) {
            snprintf(xb->img_err[b], sizeof xb->img_err[b], "%s", error_last());
            memset(xb->pixels + (size_t)b * 3 * S * S, 0, (size_t)3 * S * S * sizeof(float));
            continue;
        }
        aug_test(&im, S, filter, &out);
        image_normalize(&out, CLIP_MEAN, CLIP_STD, xb->pixels + (size_t)b * 3 * S * S);
        image_free(&im);
        image_free(&out);
    }
}

/* The unreadable images of the batch: an error unless they may be skipped (counted). */
static Status check_batch(const ExtractBatch *xb, int64_t cnt, const ExtractOptions *opt,
                          int64_t *nskip) {
    Status st = STATUS_OK;
    for (int64_t b = 0; b < cnt && st == STATUS_OK; b++) {
        if (!xb->bad[b]) continue;
        if (!opt->skip_bad_images)
            st = error_set(xb->img_st[b], "%s (use --bad-image skip to skip unreadable images)",
                           xb->img_err[b]);
        (*nskip)++;
    }
    return st;
}

/* The image tower on the batch, its dense features as float16 into xb->half (zeros for skipped
 * images). */
static void encode_batch(ExtractBatch *xb, const ClipModel *model, int64_t cnt) {
    const int S = xb->S;
    const size_t per_image = xb->per_image;
    Tensor *x = tensor_from_f32(4, SHAPE(cnt, 3, S, S), xb->pixels);
    Tensor *emb = NULL, *dense = NULL;
    clip_encode_image(model, x, &emb, &dense);
    float *d = tensor_to_host(dense);
    for (int64_t b = 0; b < cnt; b++)
        for (size_t k = 0; k < per_image; k++)
            xb->half[b * per_image + k] = xb->bad[b] ? 0 : f32_to_f16(d[b * per_image + k]);
    free(d);
    tensor_step_end();
}

/* Images in batch k of B (of n images): its start and count (0 past the last batch). */
static int64_t batch_count(int64_t k, int64_t B, int64_t n) {
    const int64_t start = k * B;
    return start >= n ? 0 : n - start < B ? n - start : B;
}

Status feature_cache_extract(const ClipModel *model, const Dataset *ds, const ExtractOptions *opt,
                             const char *path, int64_t *skipped) {
    int S = opt->image_size, B = opt->batch > 0 ? opt->batch : 8;
    if (S <= 0 || S % 32)
        return error_set(STATUS_ERR_USAGE, "feature cache: image size %d is not a multiple of 32", S);
    int64_t g = S / 32, tokens = g * g + 1, dim = model->cfg.embed_dim;
    /* Under MPI (docs/distributed.md) the batches are dealt out in rounds, batch t + r to rank
     * r; each batch holds the same images as in one process (so the same GEMM shapes and the
     * same bytes), and rank 0 gathers each round and writes it in order. */
    const int ranks = dist_size(), rank = dist_rank();
    const bool root = dist_is_root();
    AtomicFile af = {0};
    Status st = root ? xatomic_open(path, &af) : STATUS_OK;
    ResampleFilter filter = opt->filter == RESAMPLE_NEAREST ? RESAMPLE_BICUBIC : opt->filter;
    if (root && st == STATUS_OK) st = write_header(af.f, af.tmp, model, ds, opt, S, tokens, filter);
    st = dist_agree(st);
    int64_t nskip = 0;
    ExtractBatch xb;
    const size_t per_image = (size_t)(tokens * dim);
    batch_alloc(&xb, S, B, per_image, root ? ranks : 1);
    size_t *bytes_of = xmalloc((size_t)ranks * sizeof *bytes_of);
    const int64_t nbatch = (ds->n + B - 1) / B;
    bool grad = ag_set_grad_enabled(false);
    for (int64_t t = 0; st == STATUS_OK && t < nbatch; t += ranks) {
        const int64_t cnt = batch_count(t + rank, B, ds->n);
        if (cnt > 0) {
            decode_batch(&xb, ds, (t + rank) * B, cnt, filter);
            st = check_batch(&xb, cnt, opt, &nskip);
            if (st == STATUS_OK) encode_batch(&xb, model, cnt);
        }
        /* A failed rank still takes part in the gather; the agreement below discards it. */
        size_t total = 0;
        for (int r = 0; r < ranks; r++)
            total += bytes_of[r] = (size_t)batch_count(t + r, B, ds->n) * per_image * sizeof(uint16_t);
        dist_gatherv(xb.half, bytes_of[rank], xb.half, bytes_of);
        if (root && st == STATUS_OK) st = xfwrite(xb.half, 1, total, af.f, af.tmp);
        st = dist_agree(st);
        const int64_t done = (t + ranks) * B < ds->n ? (t + ranks) * B : ds->n;
        if (opt->progress && root && (t % 16 == 0 || t % 16 + ranks > 16))
            fprintf(stderr, "extract %s %s: %lld / %lld images\n", ds->name, ds->split,
                    (long long)done, (long long)ds->n);
    }
    ag_set_grad_enabled(grad);
    batch_free(&xb);
    free(bytes_of);
    /* Publishing can still fail on rank 0 (fsync, rename): shared unless a failure already is. */
    const bool ok = st == STATUS_OK;
    if (root) st = xatomic_close(&af, st);
    if (ok) st = dist_agree(st);
    if (skipped) {
        double total = (double)nskip;
        dist_allreduce_sum_f64(&total, 1);
        *skipped = (int64_t)total;
    }
    return st;
}

Status feature_cache_open(const char *path, FeatureCache *fc) {
    memset(fc, 0, sizeof *fc);
    FILE *f;
    Status open_st = xfopen_regular(path, "feature cache", &f);
    if (open_st != STATUS_OK) return open_st;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < FC_HEADER) {
        fclose(f);
        return error_set(STATUS_ERR_FORMAT, "feature cache '%s': shorter than its %d-byte header",
                         path, FC_HEADER);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
    fclose(f);
    if (map == MAP_FAILED) return error_set(STATUS_ERR_IO, "feature cache '%s': mmap failed", path);
    FcHeader h;
    memcpy(&h, map, sizeof h);
    Status st = STATUS_OK;
    if (memcmp(h.magic, FC_MAGIC, 8) != 0 || h.version != FC_VERSION || h.header_bytes != FC_HEADER)
        st = error_set(STATUS_ERR_FORMAT, "feature cache '%s': bad magic or version (re-run trmml "
                       "extract)", path);
    else if (h.n < 0 || h.tokens <= 0 || h.dim <= 0 || h.n > (1LL << 32) || h.tokens > 65536 ||
             h.dim > 65536 ||
             (uint64_t)FC_HEADER + (uint64_t)h.n * h.tokens * h.dim * 2 != (uint64_t)sb.st_size)
        st = error_set(STATUS_ERR_FORMAT, "feature cache '%s': header says %lld x %lld x %lld but "
                       "the file has %lld bytes (truncated?)", path, (long long)h.n,
                       (long long)h.tokens, (long long)h.dim, (long long)sb.st_size);
    if (st != STATUS_OK) {
        munmap(map, (size_t)sb.st_size);
        return st;
    }
    fc->n = h.n;
    fc->tokens = h.tokens;
    fc->dim = h.dim;
    fc->image_size = h.image_size;
    memcpy(fc->model, h.model, sizeof fc->model);
    memcpy(fc->dataset, h.dataset, sizeof fc->dataset);
    memcpy(fc->split, h.split, sizeof fc->split);
    memcpy(fc->resample, h.resample, sizeof fc->resample);
    fc->model[sizeof fc->model - 1] = fc->dataset[sizeof fc->dataset - 1] =
        fc->split[sizeof fc->split - 1] = fc->resample[sizeof fc->resample - 1] = '\0';
    fc->data = (const uint16_t *)((const char *)map + FC_HEADER);
    fc->map = map;
    fc->map_bytes = (size_t)sb.st_size;
    return STATUS_OK;
}

void feature_cache_close(FeatureCache *fc) {
    if (fc->map) munmap(fc->map, fc->map_bytes);
    memset(fc, 0, sizeof *fc);
}

Tensor *feature_cache_batch(const FeatureCache *fc, const int64_t *idx, int64_t count) {
    /* The rows are gathered as stored (float16), uploaded at half the bytes of float32, and
     * widened on the device. */
    size_t per = (size_t)(fc->tokens * fc->dim);
    for (int64_t b = 0; b < count; b++)
        CHECK(idx[b] >= 0 && idx[b] < fc->n, "feature cache: index %lld outside [0, %lld)",
              (long long)idx[b], (long long)fc->n);
    Tensor *half = tensor_empty(DT_F16, 3, SHAPE(count, fc->tokens, fc->dim));
    /* On the CPU the rows go straight into the tensor; elsewhere through one host buffer and
     * one upload. */
    const bool direct = device_host_addressable(half->device);
    uint16_t *rows = direct ? half->data : xmalloc((size_t)count * per * sizeof *rows + 1);
    for (int64_t b = 0; b < count; b++)
        memcpy(rows + b * per, fc->data + (size_t)idx[b] * per, per * sizeof *rows);
    if (!direct) {
        device_table(half->device)->copy_h2d(half->data, rows, (size_t)count * per * sizeof *rows);
        free(rows);
    }
    return tensor_to_f32(half); /* the float16 tensor stays in the arena until the step ends */
}
