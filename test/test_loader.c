/* test_loader.c — the batch loader (datasets/loader.h): determinism across worker counts,
 * per-epoch shuffling, labels following their images, early stop, and the two bad-image
 * policies.
 *
 * Each test writes its own tiny image tree under /tmp (removed afterwards): n small JPEGs of
 * varying sizes whose pixels depend on the item index, so a sample can be traced back to its
 * file; broken trees add a truncated JPEG and a path that does not exist. Leaks, races on freed
 * memory and hangs at shutdown show up under `make DEBUG=1 test FILTER=loader` (ASan). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clip/preprocess.h"
#include "datasets/loader.h"
#include "tensor/resample.h"
#include "test/test.h"

#define C_LABELS 5

typedef struct {
    char root[64];
    int64_t n;
    char **paths;
    int8_t *labels; /* n×C_LABELS */
} Tree;

/* Image i: size and pixels depend on i. */
static Image item_image(int64_t i) {
    Image im = image_new(20 + (int)(i % 3) * 4, 14 + (int)(i % 2) * 6);
    for (int y = 0; y < im.h; y++)
        for (int x = 0; x < im.w; x++)
            for (int c = 0; c < 3; c++)
                im.px[(y * im.w + x) * 3 + c] = (uint8_t)((x * 7 + y * 3 + i * 29 + c * 50) & 255);
    return im;
}

/* Label row i: its bits as ±1, and 0 in the last column for odd i (labels are not all ±1). */
static void item_labels(int64_t i, int8_t *row) {
    for (int k = 0; k < C_LABELS; k++) row[k] = (int8_t)(((i >> k) & 1) ? 1 : -1);
    if (i & 1) row[C_LABELS - 1] = 0;
}

/* n images; items listed in `truncated` are written as the first half of their JPEG, items in
 * `missing` are not written at all (their paths stay in the list). */
static Tree tree_make(int64_t n, const int64_t *truncated, int ntrunc, const int64_t *missing,
                      int nmissing) {
    Tree t = {.n = n};
    snprintf(t.root, sizeof t.root, "/tmp/trmml-loader-XXXXXX");
    CHECK(mkdtemp(t.root), "mkdtemp failed");
    t.paths = xcalloc((size_t)n, sizeof *t.paths);
    t.labels = xcalloc((size_t)n * C_LABELS, 1);
    for (int64_t i = 0; i < n; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/img_%03lld.jpg", t.root, (long long)i);
        t.paths[i] = ds_strdup(path);
        item_labels(i, t.labels + i * C_LABELS);
        bool skip = false, cut = false;
        for (int k = 0; k < nmissing; k++) skip |= missing[k] == i;
        for (int k = 0; k < ntrunc; k++) cut |= truncated[k] == i;
        if (skip) continue;
        Image im = item_image(i);
        uint8_t *data;
        size_t size;
        CHECK(image_encode_jpeg(&im, 90, &data, &size) == STATUS_OK, "%s", error_last());
        image_free(&im);
        FILE *f = xfopen(path, "wb");
        CHECK(f, "%s", error_last());
        CHECK(xfwrite(data, 1, cut ? size / 2 : size, f, path) == STATUS_OK, "%s", error_last());
        fclose(f);
        free(data);
    }
    return t;
}

static void tree_free(Tree *t) {
    test_remove_tree(t->root);
    for (int64_t i = 0; i < t->n; i++) free(t->paths[i]);
    free(t->paths);
    free(t->labels);
}

/* The transforms' context at side s with CLIP's normalisation (what trmml passes). */
static DsAugmentCtx clip_ctx(int s) {
    DsAugmentCtx c = {.image_size = s, .min_area = 0.5};
    memcpy(c.mean, CLIP_MEAN, sizeof c.mean);
    memcpy(c.std, CLIP_STD, sizeof c.std);
    return c;
}

/* Options with CLIP's normalisation for the default transform. */
static DsLoaderOptions with_clip_norm(const DsLoaderOptions *opt) {
    DsLoaderOptions o = *opt;
    memcpy(o.mean, CLIP_MEAN, sizeof o.mean);
    memcpy(o.std, CLIP_STD, sizeof o.std);
    return o;
}

static DsLoader *open_loader(const Tree *t, const DsLoaderOptions *opt) {
    DsLoader *L = NULL;
    const DsLoaderOptions o = with_clip_norm(opt);
    Status st = ds_loader_open(t->paths, t->labels, t->n, C_LABELS, &o, &L);
    CHECK(st == STATUS_OK, "ds_loader_open: %s", error_last());
    return L;
}

/* A random augmentation drawing only from the sample seed: a random crop to 3/4 of each side
 * at a random offset, a coin-flip mirror, then resize + normalise. */
static void augment(const Image *in, uint64_t sample_seed, void *ctx, float *out) {
    Rng r;
    rng_seed(&r, sample_seed);
    const int w = in->w * 3 / 4, h = in->h * 3 / 4;
    const int left = (int)(rng_uniform(&r) * (in->w - w + 1));
    const int top = (int)(rng_uniform(&r) * (in->h - h + 1));
    Image crop = image_crop(in, left, top, w, h);
    if (rng_uniform(&r) < 0.5) image_flip_horizontal(&crop);
    ds_transform_resize_normalize(&crop, sample_seed, ctx, out);
    image_free(&crop);
}

/* Everything `epochs` epochs produce (batch sizes, indices, seeds, labels, image bytes) appended
 * into one byte buffer, so two runs compare with memcmp. */
typedef struct {
    uint8_t *data;
    size_t n, cap;
} Bytes;

static void put_bytes(Bytes *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->n, p, n);
    b->n += n;
}

static Bytes run_epochs(const Tree *t, const DsLoaderOptions *opt, int epochs) {
    Bytes out = {0};
    DsLoader *L = open_loader(t, opt);
    for (int e = 0; e < epochs; e++) {
        ds_loader_start_epoch(L, e);
        const DsBatch *b;
        Status st;
        while ((st = ds_loader_next(L, &b)) == STATUS_OK && b) {
            put_bytes(&out, &b->b, sizeof b->b);
            put_bytes(&out, b->index, sizeof *b->index * (size_t)b->b);
            put_bytes(&out, b->seeds, sizeof *b->seeds * (size_t)b->b);
            put_bytes(&out, b->labels, (size_t)(b->b * b->c));
            put_bytes(&out, b->images, sizeof(float) * (size_t)(b->b * 3 * b->s * b->s));
        }
        EXPECT(st == STATUS_OK, "epoch %d: %s", e, error_last());
    }
    ds_loader_close(L);
    return out;
}

static void expect_same_bytes(const char *what, Bytes a, Bytes b) {
    EXPECT(a.n > 0, "%s: nothing produced", what);
    EXPECT(a.n == b.n && memcmp(a.data, b.data, a.n) == 0,
           "%s: outputs differ (%zu vs %zu bytes)", what, a.n, b.n);
    free(a.data);
    free(b.data);
}

TEST(loader_deterministic_across_worker_counts) {
    Tree t = tree_make(23, NULL, 0, NULL, 0);
    DsLoaderOptions opt = {.batch_size = 4, .image_size = 12, .shuffle = true, .seed = 42,
                           .transform = augment};
    DsAugmentCtx size = clip_ctx(12);
    opt.transform_ctx = &size;
    opt.workers = 1;
    Bytes one = run_epochs(&t, &opt, 2);
    opt.workers = 3;
    opt.prefetch = 1;
    Bytes three = run_epochs(&t, &opt, 2);
    expect_same_bytes("augment, 1 vs 3 workers", one, three);

    /* The default transform, and a different seed gives a different order. */
    DsLoaderOptions def = {.batch_size = 5, .image_size = 9, .shuffle = true, .seed = 7,
                           .workers = 1};
    Bytes a = run_epochs(&t, &def, 1);
    def.workers = 3;
    Bytes b = run_epochs(&t, &def, 1);
    def.seed = 8;
    Bytes other = run_epochs(&t, &def, 1);
    EXPECT(other.n == a.n && memcmp(other.data, a.data, a.n) != 0, "seed 7 and 8 gave the same");
    free(other.data);
    expect_same_bytes("default transform, 1 vs 3 workers", a, b);
    tree_free(&t);
}

/* Sample k of batch b holds item index[k]: its label row, and (default transform) its pixels. */
static void expect_sample_is_item(const Tree *t, const DsBatch *b, int64_t k) {
    const int64_t i = b->index[k];
    int8_t row[C_LABELS];
    item_labels(i, row);
    EXPECT(memcmp(b->labels + k * C_LABELS, row, C_LABELS) == 0,
           "batch %lld sample %lld: labels are not those of item %lld", (long long)b->batch_index,
           (long long)k, (long long)i);
    const size_t per = (size_t)(3 * b->s * b->s);
    float *want = xmalloc(per * sizeof(float));
    DsAugmentCtx size = clip_ctx((int)b->s);
    Image im;
    CHECK(image_load(t->paths[i], &im, NULL) == STATUS_OK, "%s", error_last());
    ds_transform_resize_normalize(&im, 0, &size, want);
    image_free(&im);
    EXPECT(memcmp(b->images + k * per, want, per * sizeof(float)) == 0,
           "batch %lld sample %lld: pixels are not those of item %lld", (long long)b->batch_index,
           (long long)k, (long long)i);
    free(want);
}

/* The item indices of one epoch, in order; *nb batches. With a tree, every sample is checked to
 * be its item (the loader must use the default transform). */
static int64_t epoch_indices(DsLoader *L, int64_t epoch, int64_t *idx, int64_t cap, int64_t *nb,
                             int64_t *last_b, const Tree *t) {
    ds_loader_start_epoch(L, epoch);
    const DsBatch *b;
    int64_t n = 0;
    *nb = 0;
    Status st;
    while ((st = ds_loader_next(L, &b)) == STATUS_OK && b) {
        EXPECT(b->batch_index == *nb && b->epoch == epoch, "batch %lld: batch_index %lld epoch "
               "%lld", (long long)*nb, (long long)b->batch_index, (long long)b->epoch);
        for (int64_t k = 0; t && k < b->b; k++) expect_sample_is_item(t, b, k);
        for (int64_t k = 0; k < b->b && n < cap; k++) idx[n++] = b->index[k];
        *last_b = b->b;
        (*nb)++;
    }
    EXPECT(st == STATUS_OK, "epoch %lld: %s", (long long)epoch, error_last());
    return n;
}

TEST(loader_shuffle_is_a_permutation_per_epoch) {
    enum { N = 13 };
    Tree t = tree_make(N, NULL, 0, NULL, 0);
    DsLoaderOptions opt = {.batch_size = 4, .image_size = 6, .shuffle = true, .seed = 3};
    DsLoader *L = open_loader(&t, &opt);
    EXPECT(ds_loader_batches_per_epoch(L) == 4, "batches per epoch %lld, want 4",
           (long long)ds_loader_batches_per_epoch(L));
    int64_t e0[N], e1[N], nb, last;
    EXPECT(epoch_indices(L, 0, e0, N, &nb, &last, &t) == N && nb == 4 && last == 1,
           "epoch 0: want 13 samples in 4 batches, the last of 1 (got %lld batches, last %lld)",
           (long long)nb, (long long)last);
    EXPECT(epoch_indices(L, 1, e1, N, &nb, &last, NULL) == N, "epoch 1: want 13 samples");
    bool seen0[N] = {0}, seen1[N] = {0}, same = true;
    for (int i = 0; i < N; i++) {
        EXPECT(e0[i] >= 0 && e0[i] < N && !seen0[e0[i]], "epoch 0: index %lld repeated or out "
               "of range", (long long)e0[i]);
        EXPECT(e1[i] >= 0 && e1[i] < N && !seen1[e1[i]], "epoch 1: index %lld repeated or out "
               "of range", (long long)e1[i]);
        if (test_failed()) break;
        seen0[e0[i]] = seen1[e1[i]] = true;
        same &= e0[i] == e1[i];
    }
    EXPECT(!same, "epochs 0 and 1 have the same order");
    int64_t want[N];
    ds_loader_permutation(3, 1, true, N, want);
    EXPECT(memcmp(want, e1, sizeof want) == 0, "epoch 1 is not ds_loader_permutation(3, 1)");
    /* Epoch 0 again gives epoch 0's order. */
    int64_t again[N];
    epoch_indices(L, 0, again, N, &nb, &last, NULL);
    EXPECT(memcmp(again, e0, sizeof again) == 0, "epoch 0 repeated gives another order");
    ds_loader_close(L);

    /* No shuffle: item order; drop_last drops the short batch. */
    opt.shuffle = false;
    opt.drop_last = true;
    L = open_loader(&t, &opt);
    EXPECT(ds_loader_batches_per_epoch(L) == 3, "drop_last: batches per epoch %lld, want 3",
           (long long)ds_loader_batches_per_epoch(L));
    EXPECT(epoch_indices(L, 5, e0, N, &nb, &last, &t) == 12 && nb == 3,
           "drop_last: want 12 samples in 3 batches, got %lld batches", (long long)nb);
    for (int i = 0; i < 12; i++) EXPECT(e0[i] == i, "no shuffle: position %d holds %lld", i,
                                        (long long)e0[i]);
    ds_loader_close(L);
    tree_free(&t);
}

TEST(loader_labels_and_pixels_follow_their_images) {
    enum { N = 11, S = 10 };
    Tree t = tree_make(N, NULL, 0, NULL, 0);
    /* Through a Dataset, as training uses it. */
    Dataset *ds = ds_alloc("test", "train", N, C_LABELS);
    for (int64_t i = 0; i < N; i++) ds->image_paths[i] = ds_strdup(t.paths[i]);
    memcpy(ds->labels, t.labels, (size_t)N * C_LABELS);
    DsLoaderOptions opt = {.batch_size = 3, .image_size = S, .shuffle = true, .seed = 11,
                           .workers = 2};
    DsLoader *L = NULL;
    const DsLoaderOptions o = with_clip_norm(&opt);
    EXPECT(ds_loader_open_dataset(ds, &o, &L) == STATUS_OK, "%s", error_last());
    ds_free(ds); /* the loader keeps its own copy */
    if (!L) {
        tree_free(&t);
        return;
    }

    const size_t per = 3 * S * S;
    float *want = xmalloc(per * sizeof(float));
    DsAugmentCtx size = clip_ctx(S);
    int64_t seen = 0;
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        ds_loader_start_epoch(L, epoch);
        const DsBatch *b;
        while (ds_loader_next(L, &b) == STATUS_OK && b) {
            EXPECT(b->c == C_LABELS && b->s == S, "batch geometry c %lld s %lld", (long long)b->c,
                   (long long)b->s);
            for (int64_t k = 0; k < b->b; k++) {
                const int64_t i = b->index[k];
                int8_t row[C_LABELS];
                item_labels(i, row);
                for (int j = 0; j < C_LABELS; j++) {
                    EXPECT(b->labels[k * C_LABELS + j] == row[j] &&
                               b->labels_f32[k * C_LABELS + j] == (float)row[j],
                           "epoch %lld sample %lld (item %lld): label %d is %d, want %d",
                           (long long)epoch, (long long)k, (long long)i, j,
                           b->labels[k * C_LABELS + j], row[j]);
                }
                EXPECT(b->seeds[k] == ds_loader_sample_seed(11, epoch, i), "item %lld: seed",
                       (long long)i);
                Image im;
                CHECK(image_load(t.paths[i], &im, NULL) == STATUS_OK, "%s", error_last());
                ds_transform_resize_normalize(&im, 0, &size, want);
                image_free(&im);
                EXPECT(memcmp(b->images + k * per, want, per * sizeof(float)) == 0,
                       "epoch %lld sample %lld: pixels are not those of item %lld",
                       (long long)epoch, (long long)k, (long long)i);
                seen++;
            }
        }
    }
    EXPECT(seen == 2 * N, "saw %lld samples, want %d", (long long)seen, 2 * N);
    free(want);
    ds_loader_close(L);
    tree_free(&t);
}

TEST(loader_early_stop_and_restart) {
    Tree t = tree_make(40, NULL, 0, NULL, 0);
    DsLoaderOptions opt = {.batch_size = 4, .image_size = 8, .shuffle = true, .seed = 5,
                           .workers = 3};
    /* Closed before any epoch, and right after the first batch (workers still busy). */
    ds_loader_close(open_loader(&t, &opt));
    DsLoader *L = open_loader(&t, &opt);
    ds_loader_start_epoch(L, 0);
    const DsBatch *b = NULL;
    EXPECT(ds_loader_next(L, &b) == STATUS_OK && b && b->b == 4, "first batch: %s", error_last());
    ds_loader_close(L);

    /* An epoch abandoned half-way, then a full one: the same batches as a fresh loader. */
    L = open_loader(&t, &opt);
    ds_loader_start_epoch(L, 1);
    for (int i = 0; i < 3; i++) ds_loader_next(L, &b);
    int64_t idx[40], fresh[40], nb, last;
    EXPECT(epoch_indices(L, 1, idx, 40, &nb, &last, &t) == 40 && nb == 10,
           "restarted epoch: want 40 samples in 10 batches");
    ds_loader_close(L);
    L = open_loader(&t, &opt);
    epoch_indices(L, 1, fresh, 40, &nb, &last, NULL);
    EXPECT(memcmp(idx, fresh, sizeof idx) == 0, "a restarted epoch differs from a fresh one");
    ds_loader_close(L);
    ds_loader_close(NULL);
    tree_free(&t);
}

/* Items 5 (truncated JPEG) and 9 (no file) are bad in a 14-item tree. */
static const int64_t TRUNC[1] = {5}, MISSING[1] = {9};

TEST(loader_bad_image_stops_with_the_file_named) {
    Tree t = tree_make(14, TRUNC, 1, MISSING, 1);
    DsLoaderOptions opt = {.batch_size = 4, .image_size = 8, .workers = 3};
    DsLoader *L = open_loader(&t, &opt);
    ds_loader_start_epoch(L, 0);
    const DsBatch *b = NULL;
    EXPECT(ds_loader_next(L, &b) == STATUS_OK && b && b->b == 4, "batch 0 (items 0-3) should "
           "load: %s", error_last());
    Status st = ds_loader_next(L, &b);
    EXPECT(st == STATUS_ERR_FORMAT && !b, "batch 1 holds the truncated item 5: want a FORMAT "
           "error, got %s", status_name(st));
    EXPECT(strstr(error_last(), t.paths[5]) && strstr(error_last(), "item 5"),
           "the message names the file and the item: %s", error_last());
    error_set(STATUS_OK, "%s", "");
    st = ds_loader_next(L, &b);
    EXPECT(st == STATUS_ERR_FORMAT && !b && strstr(error_last(), t.paths[5]),
           "the loader stays stopped with the same error: %s", error_last());
    const bool *bad = ds_loader_bad_items(L);
    EXPECT(bad[5] && !bad[9] && ds_loader_stats(L).bad_items == 1, "bad items: 5 only so far");

    /* A new epoch starts afresh. */
    ds_loader_start_epoch(L, 1);
    EXPECT(ds_loader_next(L, &b) == STATUS_OK && b, "after a new epoch: %s", error_last());
    ds_loader_close(L);

    /* A shuffled order where the missing item 9 comes before 5 reports it as an IO error. */
    const char *missing_path = t.paths[9];
    for (uint64_t seed = 0; seed < 64; seed++) {
        int64_t perm[14], p5 = 0, p9 = 0;
        ds_loader_permutation(seed, 0, true, 14, perm);
        for (int i = 0; i < 14; i++) {
            if (perm[i] == 5) p5 = i;
            if (perm[i] == 9) p9 = i;
        }
        if (p9 > p5) continue;
        opt.shuffle = true;
        opt.seed = seed;
        L = open_loader(&t, &opt);
        ds_loader_start_epoch(L, 0);
        while ((st = ds_loader_next(L, &b)) == STATUS_OK && b) {}
        EXPECT(st == STATUS_ERR_IO && strstr(error_last(), missing_path),
               "missing file: want an IO error naming %s, got %s: %s", missing_path,
               status_name(st), error_last());
        ds_loader_close(L);
        break;
    }
    tree_free(&t);
}

TEST(loader_bad_image_skip_fills_batches_deterministically) {
    Tree t = tree_make(14, TRUNC, 1, MISSING, 1);
    DsLoaderOptions opt = {.batch_size = 4, .image_size = 8, .workers = 1,
                           .bad_image = DS_BAD_IMAGE_SKIP};
    DsLoader *L = open_loader(&t, &opt);
    int64_t idx[14], nb, last;
    EXPECT(epoch_indices(L, 0, idx, 14, &nb, &last, &t) == 12 && nb == 3 && last == 4,
           "skip: want 12 samples in 3 full batches, got %lld batches, last %lld", (long long)nb,
           (long long)last);
    static const int64_t want[12] = {0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13};
    EXPECT(memcmp(idx, want, sizeof want) == 0, "skip: batches not filled from the next items");
    DsLoaderStats s = ds_loader_stats(L);
    EXPECT(s.skipped_epoch == 2 && s.skipped_total == 2 && s.bad_items == 2 &&
               strstr(s.first_bad, t.paths[5]),
           "stats: skipped %lld/%lld, bad %lld, first '%s'", (long long)s.skipped_epoch,
           (long long)s.skipped_total, (long long)s.bad_items, s.first_bad);
    epoch_indices(L, 1, idx, 14, &nb, &last, &t);
    s = ds_loader_stats(L);
    EXPECT(s.skipped_epoch == 2 && s.skipped_total == 4 && s.bad_items == 2,
           "stats after epoch 1: skipped %lld/%lld, bad %lld", (long long)s.skipped_epoch,
           (long long)s.skipped_total, (long long)s.bad_items);
    const bool *bad = ds_loader_bad_items(L);
    EXPECT(bad[5] && bad[9] && !bad[0], "bad items are 5 and 9");
    ds_loader_close(L);

    /* Shuffled with an augmentation: the same bytes with 1 and 3 workers. */
    DsAugmentCtx size = clip_ctx(8);
    opt.shuffle = true;
    opt.seed = 9;
    opt.transform = augment;
    opt.transform_ctx = &size;
    Bytes one = run_epochs(&t, &opt, 2);
    opt.workers = 3;
    Bytes three = run_epochs(&t, &opt, 2);
    expect_same_bytes("skip, 1 vs 3 workers", one, three);
    tree_free(&t);
}

/* A run of unreadable images longer than the ring (R = 2 batches here): the batch is filled from
 * far ahead, its samples copied out of the ring, and the epoch still completes. */
TEST(loader_bad_image_skip_long_run) {
    int64_t missing[12];
    for (int i = 0; i < 12; i++) missing[i] = 3 + i; /* items 3..14 */
    Tree t = tree_make(21, NULL, 0, missing, 12);
    DsLoaderOptions opt = {.batch_size = 3, .image_size = 6, .workers = 2, .prefetch = 1,
                           .bad_image = DS_BAD_IMAGE_SKIP};
    Bytes a = run_epochs(&t, &opt, 1);
    opt.workers = 1;
    Bytes b = run_epochs(&t, &opt, 1);
    DsLoader *L = open_loader(&t, &opt);
    int64_t idx[21], nb, last;
    EXPECT(epoch_indices(L, 0, idx, 21, &nb, &last, &t) == 9 && nb == 3,
           "want 9 readable samples in 3 batches, got %lld batches", (long long)nb);
    static const int64_t want[9] = {0, 1, 2, 15, 16, 17, 18, 19, 20};
    EXPECT(memcmp(idx, want, sizeof want) == 0, "long skip run: wrong items");
    EXPECT(ds_loader_stats(L).skipped_epoch == 12, "skipped %lld, want 12",
           (long long)ds_loader_stats(L).skipped_epoch);
    ds_loader_close(L);
    expect_same_bytes("long skip run, 2 vs 1 workers", a, b);
    tree_free(&t);
}

TEST(loader_bad_image_flag) {
    DsBadImagePolicy p = DS_BAD_IMAGE_ERROR;
    EXPECT(ds_bad_image_parse("skip", &p) == STATUS_OK && p == DS_BAD_IMAGE_SKIP, "skip");
    EXPECT(ds_bad_image_parse("error", &p) == STATUS_OK && p == DS_BAD_IMAGE_ERROR, "error");
    EXPECT(ds_bad_image_parse("ignore", &p) == STATUS_ERR_USAGE &&
               strstr(error_last(), "ignore") && strstr(error_last(), "--bad-image"),
           "unknown value: %s", error_last());
}

TEST(loader_augment_transforms_are_deterministic_per_seed) {
    Image im = {.w = 50, .h = 40};
    im.px = xmalloc(50 * 40 * 3);
    for (int i = 0; i < 50 * 40 * 3; i++) im.px[i] = (uint8_t)(i * 13 + (i >> 4));
    DsAugmentCtx ctx = clip_ctx(32);
    DsTransformFn fns[2] = {ds_transform_trmml_train, ds_transform_dualcoop_train};
    for (int f = 0; f < 2; f++) {
        float *a = xmalloc(3 * 32 * 32 * sizeof(float)), *b = xmalloc(3 * 32 * 32 * sizeof(float));
        bool differs = false;
        fns[f](&im, 7, &ctx, a);
        fns[f](&im, 7, &ctx, b);
        EXPECT(memcmp(a, b, 3 * 32 * 32 * sizeof(float)) == 0, "transform %d: same seed differs", f);
        for (uint64_t seed = 8; seed < 12 && !differs; seed++) {
            fns[f](&im, seed, &ctx, b);
            differs = memcmp(a, b, 3 * 32 * 32 * sizeof(float)) != 0;
        }
        EXPECT(differs, "transform %d ignores the seed", f);
        free(a);
        free(b);
    }
    free(im.px);
}
