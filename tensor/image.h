/* image.h — 8-bit RGB images: JPEG and PNG decoding and encoding, crop and flip.
 *
 * Every image in trmml is an `Image`: 8-bit RGB, interleaved, row-major (HWC), the layout of a
 * PIL "RGB" image. Decoding reproduces what the Python references do, `Image.open(path)
 * .convert('RGB')` with Pillow on libjpeg-turbo (docs/images.md):
 *   - JPEG through libjpeg-turbo with its defaults (ISLOW DCT, fancy upsampling), so pixels are
 *     bit-identical to Pillow's. Grayscale is replicated into R, G and B; CMYK/YCCK is read as
 *     Adobe-inverted CMYK (Pillow assumes this for every CMYK JPEG) and converted with Pillow's
 *     formula R = (255−K) − C·(255−K)/255 (rounded the way Pillow rounds).
 *   - PNG through libpng: gray (1–16 bit), gray+alpha, RGB, RGBA (8/16 bit) and palette. Alpha and
 *     tRNS are dropped, 16-bit samples keep their high byte — except 16-bit gray without alpha,
 *     which Pillow opens as a 32-bit integer image and saturates at 255 when converting to RGB.
 *     Gamma, ICC and colour chunks are ignored, as Pillow does.
 *   - EXIF orientation is NOT applied (Pillow's Image.open does not apply it either).
 * Errors never abort: every decoder traps its library's fatal errors (setjmp) and returns a
 * Status whose message names the file and the problem. Declared dimensions are checked against
 * a pixel limit before anything is allocated. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct {
    int w, h;
    uint8_t *px; /* h*w*3 bytes, RGB interleaved, row-major; owned (image_free) */
} Image;

/* Largest image the decoders accept by default: Pillow's DecompressionBombError threshold
 * (2 x 89,478,485 pixels), about 537 MB of RGB. */
#define IMAGE_DEFAULT_MAX_PIXELS 178956970LL
/* Largest side either format may declare (JPEG's own limit is 65,500). */
#define IMAGE_MAX_SIDE 65535

typedef struct {
    /* Accept images that the library could decode only with a warning (truncated JPEG data
     * filled in by libjpeg, corrupt entropy-coded data, a bad CRC in an ancillary PNG chunk).
     * Off by default: such files are errors. */
    bool accept_warnings;
    int64_t max_pixels; /* refuse w*h above this before allocating; 0 = the default above */
} ImageDecodeOpts;

typedef enum { IMAGE_FORMAT_UNKNOWN = 0, IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG } ImageFormat;

/* An image of w x h pixels with uninitialised (image_new) or zeroed (image_zeros) pixels;
 * CHECKs 1 <= w, h <= IMAGE_MAX_SIDE. Free with image_free. */
Image image_new(int w, int h);
Image image_zeros(int w, int h);
/* Free the pixels and reset *im to {0}; accepts an already-freed or zeroed Image. */
void image_free(Image *im);
/* A deep copy. */
Image image_clone(const Image *im);

/* The format named by the first bytes (JPEG: FF D8 FF, PNG: its 8-byte signature). */
ImageFormat image_sniff(const uint8_t *data, size_t n);

/* Decode an in-memory JPEG or PNG (chosen by image_sniff) into *out, which the caller frees
 * with image_free. `name` is used only in error messages (a path, or "<memory>"). opts may be
 * NULL (defaults). On failure *out is {0} and the Status is STATUS_ERR_FORMAT. */
Status image_decode(const uint8_t *data, size_t n, const char *name, Image *out,
                    const ImageDecodeOpts *opts);
Status image_decode_jpeg(const uint8_t *data, size_t n, const char *name, Image *out,
                         const ImageDecodeOpts *opts);
Status image_decode_png(const uint8_t *data, size_t n, const char *name, Image *out,
                        const ImageDecodeOpts *opts);
/* Read the whole file at `path` and decode it; STATUS_ERR_IO when it cannot be read. */
Status image_load(const char *path, Image *out, const ImageDecodeOpts *opts);

/* Encode to a new buffer (*data, *n; release with free()): baseline JPEG with libjpeg's
 * defaults at `quality` 1..100 (4:2:0 chroma, like Pillow's default), or 8-bit RGB PNG. */
Status image_encode_jpeg(const Image *im, int quality, uint8_t **data, size_t *n);
Status image_encode_png(const Image *im, uint8_t **data, size_t *n);
/* Write a JPEG / PNG file. The bytes go to "<path>.tmp" first, renamed to `path` only when
 * complete, so a failure never leaves a partial file at `path`. */
Status image_save_jpeg(const Image *im, const char *path, int quality);
Status image_save_png(const Image *im, const char *path);

/* The w x h region with top-left corner (left, top), copied into a new Image; CHECKs that the
 * region lies inside im. */
Image image_crop(const Image *im, int left, int top, int w, int h);
/* Centre crop as torchvision's CenterCrop: top = round((H−h)/2), left = round((W−w)/2) with
 * Python's round (halves to even). CHECKs w <= W and h <= H. */
Image image_center_crop(const Image *im, int w, int h);
/* Mirror left-right in place (PIL's FLIP_LEFT_RIGHT). */
void image_flip_horizontal(Image *im);

/* Normalise without resampling: out (3,H,W) = (px/255 - mean[c]) / std[c] for the whole image,
 * in float32 exactly as torchvision's ToTensor + Normalize compute it (CLIP's constants are
 * clip/preprocess.h's CLIP_MEAN, CLIP_STD). Layout CHW, channels R, G, B. */
void image_normalize(const Image *im, const float mean[3], const float std[3], float *out);
