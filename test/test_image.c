/* test_image.c — image decoding, encoding, resizing and CLIP's transform against Pillow.
 *
 * References come from scripts/fixtures_image.py (test/fixtures/image/cases.txt lists them):
 * Pillow's decode of every JPEG/PNG variant, Pillow's resize in three filters at up, down, mixed
 * and extreme sizes, and CLIP's transform normalised by PyTorch. All are required to match
 * exactly (0 differing bytes / bit-identical floats). The corruption tests build broken files in
 * memory from the fixtures (truncated, bad magic, empty, huge declared sizes, bad CRC, stray
 * bytes) and check for a clear error naming the file; ASan (make DEBUG=1) checks for leaks. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "clip/preprocess.h"
#include "tensor/image.h"
#include "tensor/resample.h"
#include "test/test.h"
#include "test/util_image.h"

#define IMG_DIR "test/fixtures/image/"

/* Lines of cases.txt starting with `kind`, split into at most 6 words. */
typedef struct {
    char w[6][64];
    int nw;
} CaseLine;

static int read_cases(const char *kind, CaseLine *lines, int max) {
    FILE *f = xfopen(IMG_DIR "cases.txt", "r");
    if (!f) {
        test_fail(__FILE__, __LINE__, "%s (run scripts/fixtures_image.py)", error_last());
        return 0;
    }
    char buf[512];
    int n = 0;
    while (fgets(buf, sizeof buf, f) && n < max) {
        CaseLine c = {0};
        c.nw = sscanf(buf, "%63s %63s %63s %63s %63s %63s", c.w[0], c.w[1], c.w[2], c.w[3],
                      c.w[4], c.w[5]);
        if (c.nw > 0 && strcmp(c.w[0], kind) == 0) lines[n++] = c;
    }
    fclose(f);
    return n;
}

static bool load_fixture(const char *name, Image *im) {
    char path[256];
    snprintf(path, sizeof path, IMG_DIR "%s", name);
    Status s = image_load(path, im, NULL);
    if (s != STATUS_OK) test_fail(__FILE__, __LINE__, "%s", error_last());
    return s == STATUS_OK;
}

/* ---- decoding against Pillow -------------------------------------------------------------- */

TEST(image_decode_matches_pillow) {
    CaseLine cs[64];
    int n = read_cases("decode", cs, 64);
    EXPECT(n >= 18, "expected at least 18 decode cases, found %d", n);
    for (int i = 0; i < n; i++) {
        Image got, ref;
        char path[256];
        snprintf(path, sizeof path, IMG_DIR "%s", cs[i].w[2]);
        if (!load_fixture(cs[i].w[1], &got)) continue;
        if (test_read_ppm(path, &ref)) test_expect_same_image(cs[i].w[1], &got, &ref);
        image_free(&got);
        image_free(&ref);
    }
}

TEST(image_decode_exif_orientation_not_applied) {
    /* tall_exif6.jpg is 37 wide, 71 high, tagged "rotate 90" (orientation 6). Pillow's
     * Image.open ignores the tag and so does trmml: the stored orientation comes back. */
    Image im;
    if (!load_fixture("tall_exif6.jpg", &im)) return;
    EXPECT(im.w == 37 && im.h == 71, "got %dx%d, expected the stored 37x71", im.w, im.h);
    image_free(&im);
}

/* ---- resizing against Pillow -------------------------------------------------------------- */

static ResampleFilter filter_named(const char *s) {
    if (strcmp(s, "nearest") == 0) return RESAMPLE_NEAREST;
    if (strcmp(s, "bilinear") == 0) return RESAMPLE_BILINEAR;
    CHECK(strcmp(s, "bicubic") == 0, "unknown filter '%s' in cases.txt", s);
    return RESAMPLE_BICUBIC;
}

static void resize_cases(const char *filter) {
    CaseLine cs[64];
    int n = read_cases("resize", cs, 64), ran = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(cs[i].w[2], filter) != 0) continue;
        Image src, ref;
        char path[256], what[512];
        snprintf(path, sizeof path, IMG_DIR "%s", cs[i].w[5]);
        if (!load_fixture(cs[i].w[1], &src) || !test_read_ppm(path, &ref)) {
            image_free(&src);
            continue;
        }
        Image got = image_resize(&src, atoi(cs[i].w[3]), atoi(cs[i].w[4]), filter_named(filter));
        snprintf(what, sizeof what, "%s %dx%d -> %sx%s %s", cs[i].w[1], src.w, src.h, cs[i].w[3],
                 cs[i].w[4], filter);
        test_expect_same_image(what, &got, &ref);
        image_free(&got);
        image_free(&src);
        image_free(&ref);
        ran++;
    }
    EXPECT(ran >= 5, "%s: only %d resize cases found", filter, ran);
}

TEST(image_resize_bicubic_matches_pillow) { resize_cases("bicubic"); }
TEST(image_resize_bilinear_matches_pillow) { resize_cases("bilinear"); }
TEST(image_resize_nearest_matches_pillow) { resize_cases("nearest"); }

TEST(image_resize_properties) {
    /* A constant image stays constant (weights sum to 1 within fixed-point rounding); the same
     * size is a copy; the shorter-side helper keeps the aspect ratio as torchvision computes it. */
    Image c = image_new(23, 17);
    memset(c.px, 77, 23 * 17 * 3);
    static const int sizes[][2] = {{5, 4}, {23, 40}, {100, 3}, {1, 1}};
    for (int f = RESAMPLE_NEAREST; f <= RESAMPLE_BICUBIC; f++)
        for (int s = 0; s < 4; s++) {
            Image r = image_resize(&c, sizes[s][0], sizes[s][1], (ResampleFilter)f);
            size_t bad = 0;
            for (size_t i = 0; i < (size_t)r.w * r.h * 3; i++) bad += r.px[i] != 77;
            EXPECT(bad == 0, "%s to %dx%d: %zu bytes changed a constant image",
                   resample_filter_name((ResampleFilter)f), r.w, r.h, bad);
            image_free(&r);
        }
    Image same = image_resize(&c, 23, 17, RESAMPLE_BICUBIC);
    EXPECT(same.px != c.px && memcmp(same.px, c.px, 23 * 17 * 3) == 0, "same size is a copy");
    image_free(&same);
    Image sh = image_resize_shorter(&c, 224, RESAMPLE_BICUBIC); /* 224*23/17 = 303.06 */
    EXPECT(sh.w == 303 && sh.h == 224, "shorter side: got %dx%d, expected 303x224", sh.w, sh.h);
    image_free(&sh);
    image_free(&c);
}

/* ---- crop and flip ------------------------------------------------------------------------ */

TEST(image_crop_and_flip) {
    Image im = image_new(10, 6);
    for (int i = 0; i < 10 * 6 * 3; i++) im.px[i] = (uint8_t)i;
    /* torchvision rounds (W−w)/2 with Python's round: 1.5 -> 2, 2.5 -> 2, 0.5 -> 0. */
    static const int cw[] = {7, 5, 9}, want_left[] = {2, 2, 0};
    for (int k = 0; k < 3; k++) {
        Image c = image_center_crop(&im, cw[k], 6);
        EXPECT(c.px[0] == im.px[3 * want_left[k]], "centre crop width %d: left should be %d",
               cw[k], want_left[k]);
        image_free(&c);
    }
    Image c = image_crop(&im, 3, 2, 4, 3);
    EXPECT(c.w == 4 && c.h == 3 && c.px[0] == im.px[(2 * 10 + 3) * 3] &&
               c.px[4 * 3 * 3 - 1] == im.px[(4 * 10 + 6) * 3 + 2],
           "crop corners");
    image_free(&c);
    Image f = image_clone(&im);
    image_flip_horizontal(&f);
    EXPECT(memcmp(f.px, im.px + 9 * 3, 3) == 0 && memcmp(f.px + 9 * 3, im.px, 3) == 0,
           "flip swaps the first and last pixel of a row");
    image_flip_horizontal(&f);
    EXPECT(memcmp(f.px, im.px, 10 * 6 * 3) == 0, "flipping twice is the identity");
    image_free(&f);
    image_free(&im);
}

/* ---- CLIP's transform --------------------------------------------------------------------- */

TEST(image_clip_preprocess_matches_torch) {
    CaseLine cs[8];
    int n = read_cases("clip", cs, 8);
    EXPECT(n >= 3, "expected 3 clip cases, found %d", n);
    for (int i = 0; i < n; i++) {
        Image src;
        uint8_t *ref;
        size_t nref;
        char path[256], what[512];
        int size = atoi(cs[i].w[2]);
        snprintf(path, sizeof path, IMG_DIR "%s", cs[i].w[3]);
        if (!load_fixture(cs[i].w[1], &src)) continue;
        if (test_read_file(path, &ref, &nref)) {
            EXPECT(nref == sizeof(float) * 3 * size * size, "%s: %zu bytes", path, nref);
            Tensor *t = clip_preprocess(&src, size);
            snprintf(what, sizeof what, "clip %s N=%d", cs[i].w[1], size);
            /* Same float32 operations as PyTorch in the same order: bit-identical. */
            if (nref == sizeof(float) * 3 * size * size)
                EXPECT_CLOSE_N(what, tensor_f32(t), (const float *)ref, 3 * size * size, 0, 0);
        }
        free(ref);
        image_free(&src);
    }
}

TEST(image_clip_preprocess_batch) {
    Image ims[3];
    const char *names[3] = {"photo.png", "tall.png", "checker.png"};
    for (int i = 0; i < 3; i++)
        if (!load_fixture(names[i], &ims[i])) return;
    Tensor *batch = clip_preprocess_batch(ims, 3, 24);
    EXPECT(batch->ndim == 4 && batch->shape[0] == 3 && batch->shape[1] == 3 &&
               batch->shape[2] == 24 && batch->shape[3] == 24,
           "batch shape %s", tensor_shape_str(batch));
    float *one = xmalloc(sizeof(float) * 3 * 24 * 24);
    for (int i = 0; i < 3; i++) {
        clip_preprocess_into(&ims[i], 24, one);
        EXPECT_CLOSE_N(names[i], tensor_f32(batch) + (size_t)i * 3 * 24 * 24, one, 3 * 24 * 24, 0,
                       0);
        image_free(&ims[i]);
    }
    free(one);
}

/* ---- encoding ----------------------------------------------------------------------------- */

static void temp_path(char *buf, size_t n, const char *ext) {
    snprintf(buf, n, "/tmp/trmml_test_image_%d.%s", (int)getpid(), ext);
}

TEST(image_encode_roundtrip) {
    Image im;
    if (!load_fixture("photo.png", &im)) return;
    char path[256], tmp[300];
    temp_path(path, sizeof path, "png");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(image_save_png(&im, path) == STATUS_OK, "%s", error_last());
    EXPECT(access(tmp, F_OK) != 0, "the temporary %s must be gone after saving", tmp);
    Image back;
    if (image_load(path, &back, NULL) == STATUS_OK) {
        test_expect_same_image("PNG round trip", &back, &im);
        image_free(&back);
    } else {
        test_fail(__FILE__, __LINE__, "%s", error_last());
    }
    remove(path);

    /* JPEG: same library and settings as Pillow's im.save(f, quality=90), hence the same
     * file, byte for byte. */
    temp_path(path, sizeof path, "jpg");
    EXPECT(image_save_jpeg(&im, path, 90) == STATUS_OK, "%s", error_last());
    uint8_t *ours = NULL, *pil = NULL;
    size_t nours = 0, npil = 0;
    if (test_read_file(path, &ours, &nours) && test_read_file(IMG_DIR "photo_q90.jpg", &pil, &npil)) {
        size_t first = 0;
        while (first < nours && first < npil && ours[first] == pil[first]) first++;
        EXPECT(nours == npil && first == nours,
               "JPEG q90: %zu bytes vs Pillow's %zu, first difference at byte %zu", nours, npil,
               first);
    }
    free(ours);
    free(pil);
    remove(path);

    /* An unwritable destination: an I/O error naming the path, nothing left behind. */
    Status s = image_save_png(&im, "/nonexistent-dir/x.png");
    EXPECT(s == STATUS_ERR_IO && strstr(error_last(), "/nonexistent-dir/x.png.tmp"),
           "status %d, message '%s'", s, error_last());
    image_free(&im);
}

/* ---- corrupt input ------------------------------------------------------------------------ */

/* Decoding must fail with STATUS_ERR_FORMAT and a message containing the name and `needle`. */
static void expect_decode_error(const char *what, const uint8_t *d, size_t n,
                                const ImageDecodeOpts *opts, const char *needle) {
    Image im = {1, 1, NULL};
    Status s = image_decode(d, n, "bad-file.x", &im, opts);
    EXPECT(s == STATUS_ERR_FORMAT, "%s: expected a format error, got status %d", what, s);
    EXPECT(im.px == NULL && im.w == 0, "%s: output not reset on failure", what);
    EXPECT(strstr(error_last(), "bad-file.x") != NULL, "%s: message '%s' does not name the file",
           what, error_last());
    EXPECT(!needle || strstr(error_last(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
           error_last(), needle);
    image_free(&im);
}

/* The message for a damaged JPEG says what the user can do, naming no option that no command
 * has (issue 13: it suggested `accept_warnings`, a field of ImageDecodeOpts). */
TEST(image_corrupt_jpeg_message_says_what_to_do) {
    uint8_t *d;
    size_t n;
    if (!test_read_file(IMG_DIR "photo_q90.jpg", &d, &n)) return;
    Image im = {0};
    Status s = image_decode(d, n * 2 / 3, "cut.jpg", &im, NULL);
    EXPECT(s == STATUS_ERR_FORMAT && strstr(error_last(), "cut.jpg") &&
               strstr(error_last(), "re-encode the file") && !strstr(error_last(), "accept_warnings"),
           "status %d: %s", (int)s, error_last());
    image_free(&im);
    free(d);
}

static size_t find_marker(const uint8_t *d, size_t n, uint8_t m) {
    for (size_t i = 2; i + 1 < n; i++)
        if (d[i] == 0xFF && d[i + 1] == m) return i;
    return 0;
}

TEST(image_corrupt_jpeg) {
    uint8_t *d;
    size_t n;
    if (!test_read_file(IMG_DIR "photo_q90.jpg", &d, &n)) return;
    Image full;
    CHECK(image_decode(d, n, "ok.jpg", &full, NULL) == STATUS_OK, "%s", error_last());

    /* Truncated inside the entropy-coded data: an error by default ... */
    expect_decode_error("truncated JPEG", d, n * 2 / 3, NULL, "Premature end");
    /* ... decoded (with libjpeg's fill) when warnings are accepted; the rows before the cut
     * match the full decode. */
    ImageDecodeOpts lax = {.accept_warnings = true};
    Image part;
    Status s = image_decode(d, n * 2 / 3, "cut.jpg", &part, &lax);
    EXPECT(s == STATUS_OK && part.w == full.w && part.h == full.h, "lax truncated: %s",
           error_last());
    if (s == STATUS_OK)
        EXPECT(memcmp(part.px, full.px, (size_t)full.w * 8 * 3) == 0, "first 8 rows differ");
    image_free(&part);
    /* Truncated inside the headers: an error even when warnings are accepted. */
    expect_decode_error("JPEG header only", d, 40, &lax, "cannot decode JPEG");
    expect_decode_error("JPEG 3 bytes", d, 3, NULL, NULL);

    /* Stray bytes between two header segments (before DQT): libjpeg warns "extraneous bytes";
     * strict fails, lax decodes the same pixels. */
    uint8_t *x = xmalloc(n + 2);
    size_t dqt = find_marker(d, n, 0xDB);
    EXPECT(dqt > 0, "no DQT marker");
    memcpy(x, d, dqt);
    x[dqt] = 0x12;
    x[dqt + 1] = 0x34;
    memcpy(x + dqt + 2, d + dqt, n - dqt);
    expect_decode_error("extraneous bytes", x, n + 2, NULL, "extraneous");
    Image same;
    s = image_decode(x, n + 2, "extra.jpg", &same, &lax);
    EXPECT(s == STATUS_OK, "lax extraneous: %s", error_last());
    if (s == STATUS_OK) test_expect_same_image("lax extraneous", &same, &full);
    image_free(&same);

    /* Huge declared size in SOF0: refused before any allocation. */
    memcpy(x, d, n);
    size_t sof = find_marker(x, n, 0xC0);
    EXPECT(sof > 0, "no SOF0 marker");
    if (sof) {
        x[sof + 5] = x[sof + 7] = 0xFD; /* height, width = 65000 */
        x[sof + 6] = x[sof + 8] = 0xE8;
        expect_decode_error("65000x65000 JPEG", x, n, NULL, "above the limit");
        memcpy(x, d, n);
        ImageDecodeOpts small = {.max_pixels = 1000};
        expect_decode_error("max_pixels", x, n, &small, "above the limit");
        x[sof + 5] = x[sof + 6] = 0; /* height 0 */
        expect_decode_error("zero-height JPEG", x, n, NULL, NULL);
    }
    free(x);
    image_free(&full);
    free(d);
}

/* Recompute the CRC of the chunk whose 4-byte length field starts at `at`. */
static void png_fix_crc(uint8_t *d, size_t at) {
    uint32_t len = (uint32_t)d[at] << 24 | (uint32_t)d[at + 1] << 16 | (uint32_t)d[at + 2] << 8 |
                   d[at + 3];
    uint32_t crc = (uint32_t)crc32(0, d + at + 4, len + 4);
    uint8_t *p = d + at + 8 + len;
    p[0] = (uint8_t)(crc >> 24), p[1] = (uint8_t)(crc >> 16), p[2] = (uint8_t)(crc >> 8),
    p[3] = (uint8_t)crc;
}

TEST(image_corrupt_png) {
    uint8_t *d;
    size_t n;
    if (!test_read_file(IMG_DIR "photo.png", &d, &n)) return;
    Image full;
    CHECK(image_decode(d, n, "ok.png", &full, NULL) == STATUS_OK, "%s", error_last());
    ImageDecodeOpts lax = {.accept_warnings = true};

    expect_decode_error("truncated PNG", d, n / 2, NULL, "truncated");
    expect_decode_error("truncated PNG, lax", d, n / 2, &lax, "truncated");
    expect_decode_error("PNG signature only", d, 8, NULL, "cannot decode PNG");

    /* IHDR starts at byte 8: length(4) "IHDR"(4) width(4) height(4). */
    uint8_t *x = xmalloc(n + 32);
    memcpy(x, d, n);
    x[16] = 0x00, x[17] = 0x01, x[18] = 0x86, x[19] = 0xA0; /* width 100000 */
    x[20] = 0x00, x[21] = 0x01, x[22] = 0x86, x[23] = 0xA0; /* height 100000 */
    png_fix_crc(x, 8);
    expect_decode_error("100000x100000 PNG", x, n, NULL, NULL);
    memcpy(x, d, n);
    ImageDecodeOpts small = {.max_pixels = 1000};
    expect_decode_error("PNG max_pixels", x, n, &small, "above the limit");
    x[29] ^= 0x01; /* a bit of the IHDR CRC: critical chunk, always an error */
    expect_decode_error("IHDR CRC", x, n, &lax, "CRC");

    /* An ancillary tEXt chunk with a wrong CRC after IHDR: an error by default (as in Pillow),
     * skipped when warnings are accepted. */
    static const uint8_t text[] = {0, 0, 0, 4, 't', 'E', 'X', 't', 'a', 0, 'b', 'c', 1, 2, 3, 4};
    memcpy(x, d, 33);
    memcpy(x + 33, text, sizeof text);
    memcpy(x + 33 + sizeof text, d + 33, n - 33);
    expect_decode_error("tEXt CRC", x, n + sizeof text, NULL, "CRC");
    Image same;
    Status s = image_decode(x, n + sizeof text, "text.png", &same, &lax);
    EXPECT(s == STATUS_OK, "lax tEXt CRC: %s", error_last());
    if (s == STATUS_OK) test_expect_same_image("lax tEXt CRC", &same, &full);
    image_free(&same);
    free(x);
    image_free(&full);
    free(d);
}

TEST(image_corrupt_files) {
    static const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
    expect_decode_error("GIF bytes", gif, sizeof gif, NULL, "not a JPEG or PNG");
    expect_decode_error("empty buffer", gif, 0, NULL, "empty");
    char path[256];
    temp_path(path, sizeof path, "empty.jpg");
    FILE *f = xfopen(path, "wb");
    if (f) fclose(f);
    Image im;
    Status s = image_load(path, &im, NULL);
    EXPECT(s == STATUS_ERR_FORMAT && strstr(error_last(), path) && strstr(error_last(), "empty"),
           "zero-byte file: status %d, '%s'", s, error_last());
    remove(path);
    s = image_load("/nonexistent-dir/missing.jpg", &im, NULL);
    EXPECT(s == STATUS_ERR_IO && strstr(error_last(), "/nonexistent-dir/missing.jpg"),
           "missing file: status %d, '%s'", s, error_last());
    /* A JPEG asked of the PNG decoder (and vice versa) is refused by its signature. */
    uint8_t *d;
    size_t n;
    if (!test_read_file(IMG_DIR "photo_q90.jpg", &d, &n)) return;
    s = image_decode_png(d, n, "x.jpg", &im, NULL);
    EXPECT(s == STATUS_ERR_FORMAT && strstr(error_last(), "not a PNG"), "'%s'", error_last());
    free(d);
}
