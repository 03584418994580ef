/* loader.c — the multi-threaded prefetching batch loader (datasets/loader.h, docs/loader.md).
 *
 * Positions and the ring. An epoch is the sequence of positions p = 0..n−1; position p holds
 * item perm[p]. Workers claim positions in increasing order under the mutex and write sample p into
 * ring slot p mod R (R = (prefetch+1)·B samples of 3·S·S floats). The consumer walks positions in
 * the same order and builds batches from them. A worker may claim p only while
 * p < release_pos + R, where release_pos is the first position the consumer has not handed back:
 * that bounds the prefetch and guarantees the slot p mod R no longer holds a sample the consumer
 * still reads (its previous occupant p − R < release_pos was released).
 *
 * Zero copy in the common case. While a batch meets no unreadable image and does not wrap around
 * the end of the ring, its samples lie contiguously in the ring and the batch points straight at
 * them; those positions are released on the next call. Otherwise (a skipped image, a wrap) the
 * samples gathered so far are copied into an assembly buffer and every later sample is copied
 * and released at once, so a long run of unreadable images cannot stall the workers.
 *
 * Determinism. Only the consumer decides what goes into a batch, in position order, from results
 * that depend only on (item, epoch, seed): thread count and timing change when samples become
 * ready, never what they contain or where they go.
 *
 * Locking. One mutex guards the shared counters and slot headers; work_cv wakes workers (new
 * epoch, released positions, stop), done_cv wakes the consumer (a sample finished, in-flight work
 * drained). Sample data is read and written outside the mutex: ownership follows the counters. */
#include "datasets/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/augment.h"
#include "tensor/resample.h"
#include "tensor/tensor.h"

typedef struct {
    int64_t pos;  /* the position whose sample the slot holds or is being written; −1 none */
    bool done;    /* the worker finished it (sample written or status set) */
    Status status;
    char msg[512];
} Slot;

struct DsLoader {
    DsLoaderOptions opt; /* defaults applied */
    int64_t n, c, B, S, R;
    size_t per;          /* floats per sample, 3·S·S */
    char **paths;        /* n owned copies */
    int8_t *labels;      /* n×c copy (NULL when c == 0) */
    int64_t *perm;       /* the current epoch's order */
    float *ring;         /* R samples */
    Slot *slots;         /* R slot headers */
    float *assembly;     /* B samples, allocated when a batch first needs copying */
    DsAugmentCtx default_ctx; /* the default transform's ctx: S and the options' mean, std */

    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_t *threads;
    int nthreads;
    /* Guarded by mu. */
    bool stop, active;
    int64_t epoch, next_pos, release_pos, in_flight;

    /* The consumer's own state (ds_loader_next / ds_loader_start_epoch callers). */
    bool started, failed;
    Status fail_status;
    char fail_msg[1024];
    int64_t cursor, batch_count;
    DsBatch batch;
    DsLoaderStats stats;
    bool *bad;
};

/* ---- seeds ---------------------------------------------------------------------------------- */

#define GOLDEN 0x9e3779b97f4a7c15ull

/* SplitMix64's finalizer: a bijection of 64-bit words with good avalanche. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Distinct tags keep the permutation stream and the sample seeds unrelated. */
#define TAG_PERM 0x7065726d75746531ull   /* "permute1" */
#define TAG_SAMPLE 0x73616d706c655f31ull /* "sample_1" */

uint64_t ds_loader_sample_seed(uint64_t seed, int64_t epoch, int64_t item) {
    uint64_t h = mix64(seed ^ TAG_SAMPLE);
    h = mix64(h + GOLDEN * ((uint64_t)epoch + 1));
    return mix64(h + GOLDEN * ((uint64_t)item + 1));
}

/* Uniform integer in [0, bound) without modulo bias: reject the lowest (2^64 mod bound) values. */
static uint64_t rng_below(Rng *r, uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        const uint64_t x = rng_next(r);
        if (x >= threshold) return x % bound;
    }
}

void ds_loader_permutation(uint64_t seed, int64_t epoch, bool shuffle, int64_t n, int64_t *perm) {
    CHECK(n >= 0 && (perm || n == 0), "ds_loader_permutation: n = %lld", (long long)n);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    Rng r;
    rng_seed(&r, mix64(mix64(seed ^ TAG_PERM) + GOLDEN * ((uint64_t)epoch + 1)));
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        const int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ---- transform and policy ------------------------------------------------------------------- */

void ds_transform_resize_normalize(const Image *in, uint64_t sample_seed, void *ctx,
                                   float *out_chw) {
    (void)sample_seed;
    CHECK(in && in->px && ctx && out_chw, "ds_transform_resize_normalize: NULL argument");
    const DsAugmentCtx *a = ctx;
    Image r = image_resize(in, a->image_size, a->image_size, RESAMPLE_BICUBIC);
    image_normalize(&r, a->mean, a->std, out_chw);
    image_free(&r);
}

void ds_transform_trmml_train(const Image *in, uint64_t sample_seed, void *ctx, float *out_chw) {
    const DsAugmentCtx *a = ctx;
    Rng rng;
    rng_seed(&rng, sample_seed);
    Image out = {0};
    aug_trmml_train(in, a->image_size, a->min_area, &rng, &out);
    image_normalize(&out, a->mean, a->std, out_chw);
    image_free(&out);
}

void ds_transform_dualcoop_train(const Image *in, uint64_t sample_seed, void *ctx,
                                 float *out_chw) {
    const DsAugmentCtx *a = ctx;
    Rng rng;
    rng_seed(&rng, sample_seed);
    Image out = {0};
    aug_dualcoop_train(in, a->image_size, &rng, &out);
    image_normalize(&out, a->mean, a->std, out_chw);
    image_free(&out);
}

Status ds_bad_image_parse(const char *s, DsBadImagePolicy *out) {
    if (s && strcmp(s, "error") == 0) *out = DS_BAD_IMAGE_ERROR;
    else if (s && strcmp(s, "skip") == 0) *out = DS_BAD_IMAGE_SKIP;
    else return error_set(STATUS_ERR_USAGE, "--bad-image: '%s' is not one of: error, skip",
                          s ? s : "(null)");
    return STATUS_OK;
}

/* ---- workers -------------------------------------------------------------------------------- */

/* error_set keeps one process-wide message (tensor/error.c), which concurrent decoders may
 * overwrite. A worker whose image failed therefore decodes it again holding this lock and keeps
 * the message only if it names the file; otherwise it writes its own. */
static pthread_mutex_t g_message_lock = PTHREAD_MUTEX_INITIALIZER;

static void failure_message(const DsLoader *L, const char *path, Status st, char *msg,
                            size_t cap) {
    pthread_mutex_lock(&g_message_lock);
    Image again = {0};
    const Status st2 = image_load(path, &again, &L->opt.decode);
    image_free(&again);
    const char *last = error_last();
    if (st2 != STATUS_OK && strstr(last, path)) snprintf(msg, cap, "%s", last);
    else snprintf(msg, cap, "%s: cannot read or decode the image (%s error)", path,
                  status_name(st));
    pthread_mutex_unlock(&g_message_lock);
}

/* Decode item `item` and transform it into out; on failure a Status and a message. */
static Status load_sample(const DsLoader *L, int64_t item, int64_t epoch, float *out, char *msg,
                          size_t cap) {
    const char *path = L->paths[item];
    Image im = {0};
    const Status st = image_load(path, &im, &L->opt.decode);
    if (st != STATUS_OK) {
        failure_message(L, path, st, msg, cap);
        return st;
    }
    L->opt.transform(&im, ds_loader_sample_seed(L->opt.seed, epoch, item), L->opt.transform_ctx,
                     out);
    image_free(&im);
    msg[0] = '\0';
    return STATUS_OK;
}

static bool claimable(const DsLoader *L) {
    return L->active && L->next_pos < L->n && L->next_pos < L->release_pos + L->R;
}

static void *worker_main(void *arg) {
    DsLoader *L = arg;
    char msg[sizeof L->slots[0].msg];
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (!L->stop && !claimable(L)) pthread_cond_wait(&L->work_cv, &L->mu);
        if (L->stop) break;
        const int64_t p = L->next_pos++;
        Slot *s = &L->slots[p % L->R];
        s->pos = p;
        s->done = false;
        L->in_flight++;
        const int64_t item = L->perm[p], epoch = L->epoch;
        pthread_mutex_unlock(&L->mu);

        float *out = L->ring + (size_t)(p % L->R) * L->per;
        const Status st = load_sample(L, item, epoch, out, msg, sizeof msg);

        pthread_mutex_lock(&L->mu);
        s->status = st;
        memcpy(s->msg, msg, sizeof msg);
        s->done = true;
        L->in_flight--;
        pthread_cond_broadcast(&L->done_cv);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- open / close --------------------------------------------------------------------------- */

static void stop_workers(DsLoader *L, int started) {
    pthread_mutex_lock(&L->mu);
    L->stop = true;
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);
    for (int i = 0; i < started; i++) pthread_join(L->threads[i], NULL);
}

static void loader_free(DsLoader *L) {
    for (int64_t i = 0; i < L->n; i++) free(L->paths[i]);
    free(L->paths);
    free(L->labels);
    free(L->perm);
    free(L->ring);
    free(L->slots);
    free(L->assembly);
    free(L->threads);
    free(L->bad);
    free(L->batch.labels);
    free(L->batch.labels_f32);
    free(L->batch.index);
    free(L->batch.seeds);
    pthread_cond_destroy(&L->work_cv);
    pthread_cond_destroy(&L->done_cv);
    pthread_mutex_destroy(&L->mu);
    free(L);
}

Status ds_loader_open(char *const *paths, const int8_t *labels, int64_t n, int64_t c,
                      const DsLoaderOptions *opt, DsLoader **out) {
    CHECK(out && opt, "ds_loader_open: NULL argument");
    *out = NULL;
    CHECK(n >= 0 && c >= 0 && (paths || n == 0) && (labels || c == 0 || n == 0),
          "ds_loader_open: n = %lld, c = %lld, paths %p, labels %p", (long long)n, (long long)c,
          (const void *)paths, (const void *)labels);
    CHECK(opt->batch_size >= 1 && opt->image_size >= 1 && opt->workers >= 0 && opt->prefetch >= 0,
          "ds_loader_open: batch_size %d, image_size %d, workers %d, prefetch %d (need B, S >= 1)",
          opt->batch_size, opt->image_size, opt->workers, opt->prefetch);
    CHECK(opt->bad_image == DS_BAD_IMAGE_ERROR || opt->bad_image == DS_BAD_IMAGE_SKIP,
          "ds_loader_open: bad_image policy %d", (int)opt->bad_image);

    DsLoader *L = xcalloc(1, sizeof *L);
    L->opt = *opt;
    if (L->opt.workers == 0) L->opt.workers = 2;
    if (L->opt.prefetch == 0) L->opt.prefetch = 2;
    L->n = n;
    L->c = c;
    L->B = opt->batch_size;
    L->S = opt->image_size;
    L->R = (int64_t)(L->opt.prefetch + 1) * L->B;
    L->per = (size_t)3 * (size_t)L->S * (size_t)L->S;
    L->default_ctx.image_size = opt->image_size;
    for (int c = 0; c < 3; c++) {
        L->default_ctx.mean[c] = opt->mean[c];
        L->default_ctx.std[c] = opt->std[c] != 0 ? opt->std[c] : 1.0f;
    }
    if (!L->opt.transform) {
        L->opt.transform = ds_transform_resize_normalize;
        L->opt.transform_ctx = &L->default_ctx;
    }

    L->paths = xcalloc((size_t)n + 1, sizeof *L->paths);
    for (int64_t i = 0; i < n; i++) L->paths[i] = ds_strdup(paths[i]);
    if (c > 0 && n > 0) {
        L->labels = xmalloc((size_t)n * (size_t)c);
        memcpy(L->labels, labels, (size_t)n * (size_t)c);
    }
    L->perm = xcalloc((size_t)n + 1, sizeof *L->perm);
    L->bad = xcalloc((size_t)n + 1, sizeof *L->bad);
    L->ring = xmalloc((size_t)L->R * L->per * sizeof(float));
    L->slots = xcalloc((size_t)L->R, sizeof *L->slots);
    for (int64_t i = 0; i < L->R; i++) L->slots[i].pos = -1;
    L->batch.labels = xcalloc((size_t)L->B * (size_t)c + 1, 1);
    L->batch.labels_f32 = xcalloc((size_t)L->B * (size_t)c + 1, sizeof(float));
    L->batch.index = xcalloc((size_t)L->B, sizeof(int64_t));
    L->batch.seeds = xcalloc((size_t)L->B, sizeof(uint64_t));

    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->work_cv, NULL);
    pthread_cond_init(&L->done_cv, NULL);
    L->threads = xcalloc((size_t)L->opt.workers, sizeof *L->threads);
    for (int i = 0; i < L->opt.workers; i++) {
        const int rc = pthread_create(&L->threads[i], NULL, worker_main, L);
        if (rc != 0) {
            stop_workers(L, i);
            loader_free(L);
            return error_set(STATUS_ERR_OOM, "loader: cannot start worker thread %d of %d: %s",
                             i + 1, opt->workers ? opt->workers : 2, strerror(rc));
        }
        L->nthreads++;
    }
    *out = L;
    return STATUS_OK;
}

Status ds_loader_open_dataset(const Dataset *ds, const DsLoaderOptions *opt, DsLoader **out) {
    CHECK(ds, "ds_loader_open_dataset: NULL dataset");
    return ds_loader_open(ds->image_paths, ds->labels, ds->n, ds->c, opt, out);
}

void ds_loader_close(DsLoader *L) {
    if (!L) return;
    stop_workers(L, L->nthreads);
    loader_free(L);
}

/* ---- the consumer --------------------------------------------------------------------------- */

void ds_loader_start_epoch(DsLoader *L, int64_t epoch) {
    CHECK(L && epoch >= 0, "ds_loader_start_epoch: epoch %lld", (long long)epoch);
    pthread_mutex_lock(&L->mu);
    /* No new claims, then wait for samples in progress: their slots are about to be reused. */
    L->active = false;
    while (L->in_flight > 0) pthread_cond_wait(&L->done_cv, &L->mu);
    ds_loader_permutation(L->opt.seed, epoch, L->opt.shuffle, L->n, L->perm);
    for (int64_t i = 0; i < L->R; i++) L->slots[i] = (Slot){.pos = -1};
    L->epoch = epoch;
    L->next_pos = 0;
    L->release_pos = 0;
    L->active = true;
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);

    L->started = true;
    L->failed = false;
    L->cursor = 0;
    L->batch_count = 0;
    L->stats.skipped_epoch = 0;
}

/* Hand positions below `pos` back to the workers. */
static void release_to(DsLoader *L, int64_t pos) {
    pthread_mutex_lock(&L->mu);
    if (pos > L->release_pos) {
        L->release_pos = pos;
        pthread_cond_broadcast(&L->work_cv);
    }
    pthread_mutex_unlock(&L->mu);
}

/* Wait until the sample at position p is finished; its slot header is stable afterwards (only
 * the consumer's release lets a worker reuse it). */
static const Slot *wait_sample(DsLoader *L, int64_t p) {
    const Slot *s = &L->slots[p % L->R];
    pthread_mutex_lock(&L->mu);
    while (!(s->pos == p && s->done)) pthread_cond_wait(&L->done_cv, &L->mu);
    pthread_mutex_unlock(&L->mu);
    return s;
}

static const float *ring_sample(const DsLoader *L, int64_t p) {
    return L->ring + (size_t)(p % L->R) * L->per;
}

/* Switch the batch being built to the assembly buffer: copy its first b samples (positions
 * start .. start+b−1, all readable) and release them. */
static void begin_copying(DsLoader *L, int64_t start, int64_t b) {
    if (!L->assembly) L->assembly = xmalloc((size_t)L->B * L->per * sizeof(float));
    for (int64_t k = 0; k < b; k++)
        memcpy(L->assembly + (size_t)k * L->per, ring_sample(L, start + k),
               L->per * sizeof(float));
}

Status ds_loader_next(DsLoader *L, const DsBatch **out) {
    CHECK(L && out, "ds_loader_next: NULL argument");
    CHECK(L->started, "ds_loader_next: no epoch started (call ds_loader_start_epoch first)");
    *out = NULL;
    if (L->failed) return error_set(L->fail_status, "%s", L->fail_msg);
    release_to(L, L->cursor); /* the previous batch is no longer borrowed */

    DsBatch *bt = &L->batch;
    const int64_t start = L->cursor, c = L->c;
    int64_t b = 0;
    bool copying = false;
    while (b < L->B && L->cursor < L->n) {
        const int64_t p = L->cursor;
        const Slot *s = wait_sample(L, p);
        const int64_t item = L->perm[p];
        if (s->status != STATUS_OK) {
            if (!L->bad[item]) {
                if (L->stats.bad_items == 0)
                    snprintf(L->stats.first_bad, sizeof L->stats.first_bad, "%s", s->msg);
                L->bad[item] = true;
                L->stats.bad_items++;
            }
            if (L->opt.bad_image == DS_BAD_IMAGE_ERROR) {
                pthread_mutex_lock(&L->mu);
                L->active = false; /* stop prefetching the rest of the epoch */
                pthread_mutex_unlock(&L->mu);
                L->failed = true;
                L->fail_status = s->status;
                snprintf(L->fail_msg, sizeof L->fail_msg,
                         "loader: item %lld of %lld (epoch %lld): %s", (long long)item,
                         (long long)L->n, (long long)L->epoch, s->msg);
                return error_set(L->fail_status, "%s", L->fail_msg);
            }
            L->stats.skipped_epoch++;
            L->stats.skipped_total++;
            if (!copying) begin_copying(L, start, b);
            copying = true;
            L->cursor++;
            release_to(L, L->cursor);
            continue;
        }
        /* Without a skip so far, p == start + b; it lies contiguously after the batch's first
         * sample unless the ring wraps here. */
        if (!copying && (start % L->R) + b >= L->R) {
            begin_copying(L, start, b);
            copying = true;
            release_to(L, p);
        }
        if (copying)
            memcpy(L->assembly + (size_t)b * L->per, ring_sample(L, p), L->per * sizeof(float));
        bt->index[b] = item;
        bt->seeds[b] = ds_loader_sample_seed(L->opt.seed, L->epoch, item);
        for (int64_t k = 0; k < c; k++) {
            const int8_t v = L->labels[item * c + k];
            bt->labels[b * c + k] = v;
            bt->labels_f32[b * c + k] = (float)v;
        }
        b++;
        L->cursor++;
        if (copying) release_to(L, L->cursor);
    }
    if (b == 0 || (b < L->B && L->opt.drop_last)) {
        release_to(L, L->cursor);
        return STATUS_OK; /* end of the epoch */
    }
    bt->b = b;
    bt->c = c;
    bt->s = L->S;
    bt->images = copying ? L->assembly : (float *)ring_sample(L, start);
    bt->epoch = L->epoch;
    bt->batch_index = L->batch_count++;
    *out = bt;
    return STATUS_OK;
}

DsLoaderStats ds_loader_stats(const DsLoader *L) {
    CHECK(L, "ds_loader_stats: NULL loader");
    return L->stats;
}

const bool *ds_loader_bad_items(const DsLoader *L) {
    CHECK(L, "ds_loader_bad_items: NULL loader");
    return L->bad;
}

int64_t ds_loader_batches_per_epoch(const DsLoader *L) {
    CHECK(L, "ds_loader_batches_per_epoch: NULL loader");
    return L->opt.drop_last ? L->n / L->B : (L->n + L->B - 1) / L->B;
}
