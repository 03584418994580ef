/* image.c — JPEG (libjpeg-turbo) and PNG (libpng) decoding and encoding, crop and flip.
 *
 * The decoders reproduce Pillow's `Image.open(path).convert('RGB')` (see image.h and
 * docs/images.md for each colour type). Both libraries report fatal errors by calling a handler
 * that must not return: ours record the library's message and longjmp back to the decoding
 * function, which frees everything and returns a Status. The setjmp sits in a function whose own
 * locals do not change after it; all mutable state lives in a struct owned by the caller, so
 * nothing is indeterminate after the longjmp (C11 7.13.2.1).
 *
 * Untrusted input: the whole file is in memory and every read is bounded by its length (libjpeg's
 * memory source; our libpng read callback). Declared dimensions are checked against
 * ImageDecodeOpts.max_pixels before the pixel buffer is allocated, and a progressive JPEG may have
 * at most JPEG_MAX_SCANS scans (an adversarial file can otherwise make decoding quadratic). */
#include "tensor/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

/* TurboJPEG refuses progressive files with more scans than this; we do the same. */
#define JPEG_MAX_SCANS 500

/* ---- Image basics ------------------------------------------------------------------------- */

Image image_new(int w, int h) {
    CHECK(w >= 1 && h >= 1 && w <= IMAGE_MAX_SIDE && h <= IMAGE_MAX_SIDE,
          "image size %dx%d outside 1..%d", w, h, IMAGE_MAX_SIDE);
    Image im = {w, h, xmalloc((size_t)w * (size_t)h * 3)};
    return im;
}

Image image_zeros(int w, int h) {
    Image im = image_new(w, h);
    memset(im.px, 0, (size_t)w * (size_t)h * 3);
    return im;
}

void image_free(Image *im) {
    if (!im) return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

Image image_clone(const Image *im) {
    CHECK(im && im->px, "image_clone of an empty image");
    Image out = image_new(im->w, im->h);
    memcpy(out.px, im->px, (size_t)im->w * (size_t)im->h * 3);
    return out;
}

ImageFormat image_sniff(const uint8_t *data, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return IMAGE_FORMAT_JPEG;
    if (n >= 8 && memcmp(data, png_sig, 8) == 0) return IMAGE_FORMAT_PNG;
    return IMAGE_FORMAT_UNKNOWN;
}

static int64_t max_pixels_of(const ImageDecodeOpts *opts) {
    return opts && opts->max_pixels > 0 ? opts->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
}

/* The size check every decoder makes before allocating: a Status naming the file. */
static Status check_dims(const char *name, const char *fmt, int64_t w, int64_t h,
                         const ImageDecodeOpts *opts) {
    int64_t limit = max_pixels_of(opts);
    if (w < 1 || h < 1)
        return error_set(STATUS_ERR_FORMAT, "%s: %s declares an empty image (%lldx%lld)", name,
                         fmt, (long long)w, (long long)h);
    if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || w * h > limit)
        return error_set(STATUS_ERR_FORMAT,
                         "%s: %s declares %lldx%lld pixels, above the limit (%d per side, %lld "
                         "in all)",
                         name, fmt, (long long)w, (long long)h, IMAGE_MAX_SIDE, (long long)limit);
    return STATUS_OK;
}

/* ---- JPEG decoding ------------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub; /* first member: libjpeg passes &pub as cinfo->err */
    jmp_buf jump;
    bool fail_on_warning;
    int warnings;
    char message[JMSG_LENGTH_MAX + 64];
} JpegErr;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    JpegErr err;
    const char *name;
    const uint8_t *data;
    size_t n;
    const ImageDecodeOpts *opts;
    Image out;
    Status status;
} JpegDecode;

/* libjpeg's fatal-error handler: keep the message, jump back to the decoder. */
static void jpeg_on_error(j_common_ptr c) {
    JpegErr *e = (JpegErr *)c->err;
    c->err->format_message(c, e->message);
    longjmp(e->jump, 1);
}

/* Warnings (level -1: corrupt or missing data that libjpeg works around) are fatal unless the
 * caller accepts them; trace messages (level >= 0) are ignored. */
static void jpeg_on_message(j_common_ptr c, int level) {
    if (level >= 0) return;
    JpegErr *e = (JpegErr *)c->err;
    c->err->num_warnings++;
    if (e->warnings++ == 0 || e->fail_on_warning) c->err->format_message(c, e->message);
    if (e->fail_on_warning) longjmp(e->jump, 2);
}

static void jpeg_on_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        JpegErr *e = (JpegErr *)c->err;
        snprintf(e->message, sizeof e->message, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(e->jump, 3);
    }
}

/* Pillow's MULDIV255: a·b/255 rounded, exact for 8-bit a, b. */
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static void jpeg_decode_run(JpegDecode *st) {
    j_decompress_ptr cinfo = &st->cinfo;
    int jumped = setjmp(st->err.jump);
    if (jumped) {
        /* Say what a user can do: no command offers to decode damaged files (a corrupt training
         * image should be noticed); ImageDecodeOpts.accept_warnings is for programs. */
        if (jumped == 2)
            st->status = error_set(STATUS_ERR_FORMAT,
                                   "%s: corrupt or truncated JPEG (%s); re-encode the file (e.g. "
                                   "open and save it again with an image editor) or replace it",
                                   st->name, st->err.message);
        else if (st->status == STATUS_OK)
            st->status =
                error_set(STATUS_ERR_FORMAT, "%s: cannot decode JPEG: %s", st->name, st->err.message);
        jpeg_destroy_decompress(cinfo);
        image_free(&st->out);
        return;
    }
    jpeg_create_decompress(cinfo);
    st->progress.progress_monitor = jpeg_on_progress;
    cinfo->progress = &st->progress;
    jpeg_mem_src(cinfo, st->data, (unsigned long)st->n);
    jpeg_read_header(cinfo, TRUE);

    int nc = cinfo->num_components;
    if (nc == 1) {
        cinfo->out_color_space = JCS_GRAYSCALE;
    } else if (nc == 3) {
        cinfo->out_color_space = JCS_RGB; /* from YCbCr, or a plain copy of Adobe RGB */
    } else if (nc == 4) {
        cinfo->out_color_space = JCS_CMYK; /* stored (inverted) CMYK, or YCCK converted to it */
    } else {
        st->status = error_set(STATUS_ERR_FORMAT, "%s: JPEG with %d colour components (expected "
                               "1, 3 or 4)", st->name, nc);
        longjmp(st->err.jump, 1);
    }
    st->status = check_dims(st->name, "JPEG", cinfo->image_width, cinfo->image_height, st->opts);
    if (st->status != STATUS_OK) longjmp(st->err.jump, 1);

    jpeg_start_decompress(cinfo);
    int w = (int)cinfo->output_width, h = (int)cinfo->output_height;
    int oc = cinfo->output_components;
    /* The row buffer lives in libjpeg's image pool: freed by jpeg_destroy on every path. */
    JSAMPARRAY row = cinfo->mem->alloc_sarray((j_common_ptr)cinfo, JPOOL_IMAGE,
                                              (JDIMENSION)w * (JDIMENSION)oc, 1);
    st->out = image_new(w, h);
    while (cinfo->output_scanline < cinfo->output_height) {
        int y = (int)cinfo->output_scanline;
        if (jpeg_read_scanlines(cinfo, row, 1) != 1) {
            /* Only a suspending data source returns 0 rows; ours never suspends. */
            snprintf(st->err.message, sizeof st->err.message, "decoder returned no row %d", y);
            longjmp(st->err.jump, 1);
        }
        const uint8_t *in = row[0];
        uint8_t *o = st->out.px + (size_t)y * (size_t)w * 3;
        if (oc == 3) {
            memcpy(o, in, (size_t)w * 3);
        } else if (oc == 1) {
            for (int x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = in[x];
        } else {
            /* Pillow reads CMYK JPEGs as Adobe-inverted ("CMYK;I": c = 255 − stored), then
             * converts with R = (255−K) − C·(255−K)/255; 255−K is the stored K byte. */
            for (int x = 0; x < w; x++) {
                int nk = in[4 * x + 3];
                for (int ch = 0; ch < 3; ch++) {
                    int v = nk - muldiv255(255 - in[4 * x + ch], nk);
                    o[3 * x + ch] = (uint8_t)(v < 0 ? 0 : v);
                }
            }
        }
    }
    jpeg_finish_decompress(cinfo);
    jpeg_destroy_decompress(cinfo);
    st->status = STATUS_OK;
}

Status image_decode_jpeg(const uint8_t *data, size_t n, const char *name, Image *out,
                         const ImageDecodeOpts *opts) {
    CHECK(out && (data || n == 0), "image_decode_jpeg: NULL argument");
    *out = (Image){0};
    if (!name) name = "<memory>";
    if (n < 3 || image_sniff(data, n) != IMAGE_FORMAT_JPEG)
        return error_set(STATUS_ERR_FORMAT, "%s: not a JPEG file (no FF D8 FF marker)", name);
    JpegDecode *st = xcalloc(1, sizeof *st);
    st->cinfo.err = jpeg_std_error(&st->err.pub);
    st->err.pub.error_exit = jpeg_on_error;
    st->err.pub.emit_message = jpeg_on_message;
    st->err.fail_on_warning = !(opts && opts->accept_warnings);
    st->name = name;
    st->data = data;
    st->n = n;
    st->opts = opts;
    jpeg_decode_run(st);
    Status s = st->status;
    *out = st->out;
    free(st);
    return s;
}

/* ---- PNG decoding ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const uint8_t *data;
    size_t n, pos;
    const ImageDecodeOpts *opts;
    png_structp png;
    png_infop info;
    uint8_t *raw; /* decoded rows at the file's depth: one row, or all of them if interlaced */
    png_bytep *rows; /* row pointers into raw (interlaced images) */
    Image out;
    Status status;
    int warnings;
    char message[256];
} PngDecode;

static void png_on_error(png_structp png, png_const_charp msg) {
    PngDecode *st = png_get_error_ptr(png);
    snprintf(st->message, sizeof st->message, "%s", msg);
    png_longjmp(png, 1);
}

/* libpng warnings are never fatal here (an unusual ICC profile is common in real files); a bad
 * CRC, which libpng only warns about in ancillary chunks, is made fatal by the CRC action. */
static void png_on_warning(png_structp png, png_const_charp msg) {
    PngDecode *st = png_get_error_ptr(png);
    st->warnings++;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep dst, size_t len) {
    PngDecode *st = png_get_io_ptr(png);
    if (len > st->n - st->pos) png_error(png, "file is truncated");
    memcpy(dst, st->data + st->pos, len);
    st->pos += len;
}

/* One decoded row (after the transforms set in png_decode_run) to RGB. `depth` is 8 or 16;
 * 16-bit samples are big-endian. */
static void png_row_to_rgb(uint8_t *o, const uint8_t *in, int w, int color_type, int depth,
                           const uint8_t *palette) {
    int bps = depth / 8; /* bytes per sample */
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        for (int x = 0; x < w; x++) {
            uint8_t v = in[x * bps];
            /* Pillow opens 16-bit gray as a 32-bit integer image ("I") and clips it to 0..255
             * when converting to RGB: values >= 256 (high byte set) become 255. */
            if (bps == 2) v = in[2 * x] ? 255 : in[2 * x + 1];
            o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = v;
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: /* Pillow's "LA" / "LA;16B": high byte of L, alpha dropped */
        for (int x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = in[2 * x * bps];
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        int nch = color_type == PNG_COLOR_TYPE_RGB ? 3 : 4;
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < 3; ch++) o[3 * x + ch] = in[(nch * x + ch) * bps];
        break;
    }
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++) memcpy(o + 3 * x, palette + 3 * in[x], 3);
        break;
    }
}

static void png_decode_run(PngDecode *st) {
    if (setjmp(png_jmpbuf(st->png))) {
        if (st->status == STATUS_OK)
            st->status =
                error_set(STATUS_ERR_FORMAT, "%s: cannot decode PNG: %s", st->name, st->message);
        free(st->raw);
        free(st->rows);
        st->raw = NULL;
        st->rows = NULL;
        image_free(&st->out);
        return;
    }
    png_structp png = st->png;
    png_infop info = st->info;
    png_set_read_fn(png, st, png_read_mem);
    if (!(st->opts && st->opts->accept_warnings))
        png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);

    png_uint_32 w32, h32;
    int depth, color_type, interlace;
    png_get_IHDR(png, info, &w32, &h32, &depth, &color_type, &interlace, NULL, NULL);
    st->status = check_dims(st->name, "PNG", w32, h32, st->opts);
    if (st->status != STATUS_OK) png_longjmp(png, 1);
    int w = (int)w32, h = (int)h32;

    /* Pillow's palette starts as a grey ramp and PLTE overwrites its first entries, so an index
     * past the palette reads as grey (i, i, i). */
    uint8_t palette[256 * 3];
    for (int i = 0; i < 256; i++) palette[3 * i] = palette[3 * i + 1] = palette[3 * i + 2] = (uint8_t)i;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte;
        int nplte = 0;
        if (png_get_PLTE(png, info, &plte, &nplte) != PNG_INFO_PLTE) {
            snprintf(st->message, sizeof st->message, "palette image without a PLTE chunk");
            png_longjmp(png, 1);
        }
        for (int i = 0; i < nplte && i < 256; i++) {
            palette[3 * i] = plte[i].red;
            palette[3 * i + 1] = plte[i].green;
            palette[3 * i + 2] = plte[i].blue;
        }
    }
    if (depth < 8) {
        if (color_type == PNG_COLOR_TYPE_GRAY)
            png_set_expand_gray_1_2_4_to_8(png); /* bit replication = Pillow's L;2/L;4/"1" scaling */
        else
            png_set_packing(png); /* palette indices, one byte each */
        depth = 8;
    }
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    size_t need = (size_t)w * (size_t)png_get_channels(png, info) * (size_t)(depth / 8);
    if (rowbytes != need) {
        snprintf(st->message, sizeof st->message, "unexpected row size %zu (expected %zu)",
                 rowbytes, need);
        png_longjmp(png, 1);
    }

    st->out = image_new(w, h);
    if (passes > 1) {
        st->raw = xmalloc(rowbytes * (size_t)h);
        st->rows = xmalloc(sizeof(png_bytep) * (size_t)h);
        for (int y = 0; y < h; y++) st->rows[y] = st->raw + (size_t)y * rowbytes;
        png_read_image(png, st->rows);
        free(st->rows);
        st->rows = NULL;
        for (int y = 0; y < h; y++)
            png_row_to_rgb(st->out.px + (size_t)y * (size_t)w * 3, st->raw + (size_t)y * rowbytes,
                           w, color_type, depth, palette);
    } else {
        st->raw = xmalloc(rowbytes);
        for (int y = 0; y < h; y++) {
            png_read_row(png, st->raw, NULL);
            png_row_to_rgb(st->out.px + (size_t)y * (size_t)w * 3, st->raw, w, color_type, depth,
                           palette);
        }
    }
    /* The chunks after the image data (and their CRCs) are checked only in strict mode: Pillow
     * itself stops reading after the last IDAT. */
    if (!(st->opts && st->opts->accept_warnings)) png_read_end(png, NULL);
    free(st->raw);
    st->raw = NULL;
    st->status = STATUS_OK;
}

Status image_decode_png(const uint8_t *data, size_t n, const char *name, Image *out,
                        const ImageDecodeOpts *opts) {
    CHECK(out && (data || n == 0), "image_decode_png: NULL argument");
    *out = (Image){0};
    if (!name) name = "<memory>";
    if (image_sniff(data, n) != IMAGE_FORMAT_PNG)
        return error_set(STATUS_ERR_FORMAT, "%s: not a PNG file (bad signature)", name);
    PngDecode *st = xcalloc(1, sizeof *st);
    st->name = name;
    st->data = data;
    st->n = n;
    st->opts = opts;
    st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, png_on_error, png_on_warning);
    st->info = st->png ? png_create_info_struct(st->png) : NULL;
    if (!st->png || !st->info) {
        png_destroy_read_struct(st->png ? &st->png : NULL, NULL, NULL);
        free(st);
        return error_set(STATUS_ERR_OOM, "%s: cannot create a PNG reader", name);
    }
    png_decode_run(st);
    png_destroy_read_struct(&st->png, &st->info, NULL);
    Status s = st->status;
    *out = st->out;
    free(st);
    return s;
}

/* ---- Dispatch and files ------------------------------------------------------------------- */

Status image_decode(const uint8_t *data, size_t n, const char *name, Image *out,
                    const ImageDecodeOpts *opts) {
    CHECK(out && (data || n == 0), "image_decode: NULL argument");
    *out = (Image){0};
    if (!name) name = "<memory>";
    switch (image_sniff(data, n)) {
    case IMAGE_FORMAT_JPEG: return image_decode_jpeg(data, n, name, out, opts);
    case IMAGE_FORMAT_PNG: return image_decode_png(data, n, name, out, opts);
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    if (n == 0) return error_set(STATUS_ERR_FORMAT, "%s: empty file (0 bytes)", name);
    char head[3 * 4 + 1] = "";
    for (size_t i = 0; i < n && i < 4; i++) snprintf(head + 3 * i, 4, "%02x ", data[i]);
    return error_set(STATUS_ERR_FORMAT, "%s: not a JPEG or PNG file (starts with %s)", name, head);
}

Status image_load(const char *path, Image *out, const ImageDecodeOpts *opts) {
    CHECK(path && out, "image_load: NULL argument");
    *out = (Image){0};
    uint8_t *data;
    size_t n;
    Status s = xread_file(path, "image", &data, &n);
    if (s != STATUS_OK) return s;
    s = image_decode(data, n, path, out, opts);
    free(data);
    return s;
}

/* ---- Encoding ----------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_compress_struct cinfo;
    JpegErr err;
    const Image *im;
    int quality;
    unsigned char *buf;
    unsigned long size;
} JpegEncode;

static void jpeg_encode_run(JpegEncode *st) {
    j_compress_ptr cinfo = &st->cinfo;
    if (setjmp(st->err.jump)) {
        jpeg_destroy_compress(cinfo);
        free(st->buf);
        st->buf = NULL;
        st->size = 0;
        return;
    }
    jpeg_create_compress(cinfo);
    jpeg_mem_dest(cinfo, &st->buf, &st->size);
    cinfo->image_width = (JDIMENSION)st->im->w;
    cinfo->image_height = (JDIMENSION)st->im->h;
    cinfo->input_components = 3;
    cinfo->in_color_space = JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, st->quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = st->im->px + (size_t)cinfo->next_scanline * (size_t)st->im->w * 3;
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
    jpeg_destroy_compress(cinfo);
}

Status image_encode_jpeg(const Image *im, int quality, uint8_t **data, size_t *n) {
    CHECK(im && im->px && data && n, "image_encode_jpeg: NULL argument");
    CHECK(quality >= 1 && quality <= 100, "image_encode_jpeg: quality %d outside 1..100", quality);
    JpegEncode *st = xcalloc(1, sizeof *st);
    st->cinfo.err = jpeg_std_error(&st->err.pub);
    st->err.pub.error_exit = jpeg_on_error;
    st->err.pub.emit_message = jpeg_on_message;
    st->im = im;
    st->quality = quality;
    jpeg_encode_run(st);
    Status s = STATUS_OK;
    if (!st->buf) s = error_set(STATUS_ERR_FORMAT, "JPEG encoding failed: %s", st->err.message);
    *data = st->buf;
    *n = st->size;
    free(st);
    return s;
}

typedef struct {
    const Image *im;
    png_structp png;
    png_infop info;
    uint8_t *buf;
    size_t size, cap;
    char message[256];
} PngEncode;

static void png_write_mem(png_structp png, png_bytep src, size_t len) {
    PngEncode *st = png_get_io_ptr(png);
    if (len > st->cap - st->size) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap - st->size < len) cap *= 2;
        st->buf = xrealloc(st->buf, cap);
        st->cap = cap;
    }
    memcpy(st->buf + st->size, src, len);
    st->size += len;
}

static void png_flush_mem(png_structp png) { (void)png; }

static void png_on_encode_error(png_structp png, png_const_charp msg) {
    PngEncode *st = png_get_error_ptr(png);
    snprintf(st->message, sizeof st->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_encode_run(PngEncode *st) {
    if (setjmp(png_jmpbuf(st->png))) {
        free(st->buf);
        st->buf = NULL;
        st->size = 0;
        return;
    }
    png_set_write_fn(st->png, st, png_write_mem, png_flush_mem);
    png_set_IHDR(st->png, st->info, (png_uint_32)st->im->w, (png_uint_32)st->im->h, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(st->png, st->info);
    for (int y = 0; y < st->im->h; y++)
        png_write_row(st->png, st->im->px + (size_t)y * (size_t)st->im->w * 3);
    png_write_end(st->png, NULL);
}

Status image_encode_png(const Image *im, uint8_t **data, size_t *n) {
    CHECK(im && im->px && data && n, "image_encode_png: NULL argument");
    PngEncode *st = xcalloc(1, sizeof *st);
    st->im = im;
    st->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, st, png_on_encode_error, NULL);
    st->info = st->png ? png_create_info_struct(st->png) : NULL;
    Status s = STATUS_OK;
    if (!st->png || !st->info) {
        s = error_set(STATUS_ERR_OOM, "cannot create a PNG writer");
    } else {
        png_encode_run(st);
        if (!st->buf) s = error_set(STATUS_ERR_FORMAT, "PNG encoding failed: %s", st->message);
    }
    png_destroy_write_struct(st->png ? &st->png : NULL, st->info ? &st->info : NULL);
    *data = st->buf;
    *n = st->size;
    free(st);
    return s;
}

Status image_save_jpeg(const Image *im, const char *path, int quality) {
    uint8_t *data;
    size_t n;
    Status s = image_encode_jpeg(im, quality, &data, &n);
    if (s == STATUS_OK) s = xwrite_file_atomic(path, data, n);
    free(data);
    return s;
}

Status image_save_png(const Image *im, const char *path) {
    uint8_t *data;
    size_t n;
    Status s = image_encode_png(im, &data, &n);
    if (s == STATUS_OK) s = xwrite_file_atomic(path, data, n);
    free(data);
    return s;
}

/* ---- Geometry ----------------------------------------------------------------------------- */

Image image_crop(const Image *im, int left, int top, int w, int h) {
    CHECK(im && im->px, "image_crop of an empty image");
    CHECK(left >= 0 && top >= 0 && w >= 1 && h >= 1 && left + w <= im->w && top + h <= im->h,
          "crop %dx%d at (%d, %d) outside a %dx%d image", w, h, left, top, im->w, im->h);
    Image out = image_new(w, h);
    for (int y = 0; y < h; y++)
        memcpy(out.px + (size_t)y * (size_t)w * 3,
               im->px + ((size_t)(top + y) * (size_t)im->w + (size_t)left) * 3, (size_t)w * 3);
    return out;
}

/* Python's round(d / 2) for d >= 0: halves go to the even neighbour. */
static int half_round_even(int d) {
    int k = d / 2;
    return (d % 2 == 0 || k % 2 == 0) ? k : k + 1;
}

Image image_center_crop(const Image *im, int w, int h) {
    CHECK(im && im->px && w <= im->w && h <= im->h, "centre crop %dx%d of a %dx%d image", w, h,
          im ? im->w : 0, im ? im->h : 0);
    return image_crop(im, half_round_even(im->w - w), half_round_even(im->h - h), w, h);
}

void image_flip_horizontal(Image *im) {
    CHECK(im && im->px, "image_flip_horizontal of an empty image");
    for (int y = 0; y < im->h; y++) {
        uint8_t *row = im->px + (size_t)y * (size_t)im->w * 3;
        for (int a = 0, b = im->w - 1; a < b; a++, b--)
            for (int ch = 0; ch < 3; ch++) {
                uint8_t t = row[3 * a + ch];
                row[3 * a + ch] = row[3 * b + ch];
                row[3 * b + ch] = t;
            }
    }
}

void image_normalize(const Image *im, const float mean[3], const float std[3], float *out) {
    CHECK(im && im->px && out, "image_normalize: NULL argument");
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            lut[c][v] = (x - mean[c]) / std[c];
        }
    size_t hw = (size_t)im->w * (size_t)im->h;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) out[(size_t)c * hw + i] = lut[c][im->px[3 * i + c]];
}
