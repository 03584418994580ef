/* augment.h — training augmentations on 8-bit RGB images, reproducing Pillow (SPEC §2.2, §2.3,
 * Appendix A; docs/augmentation.md).
 *
 * The reference pipelines are Python programs over PIL images: TaI-DPT's (used by TRM-ML) and
 * DualCoOp's. Every primitive below reproduces the Pillow 9.4 function the AutoAugment code calls,
 * down to its resampling, fill colour and rounding, and is tested byte for byte against Pillow:
 *
 *   ShearX/Y        Image.transform(AFFINE, BICUBIC, fillcolor 128): Pillow's transform bicubic
 *                   (a = −1 cubic, edge-clamped, truncated to 8 bits), sampled at pixel centres
 *   TranslateX/Y    Image.transform(AFFINE), nearest neighbour, fill 128
 *   Rotate          RGBA rotate (nearest, 16.16 fixed point) composited over grey 128
 *   AutoContrast, Equalize, Invert, Solarize, Posterize     ImageOps lookup tables
 *   Color, Contrast, Brightness, Sharpness                  ImageEnhance: Image.blend in float32
 *
 * Randomness comes from the caller's `Rng` (tensor/tensor.h, xoshiro256**): one generator per
 * thread; the same seed gives the same bytes. The order in which each function draws is part of
 * its contract (docs/augmentation.md). The pipelines do not reproduce Python's random streams
 * (they could not: torch, NumPy and `random` are all mixed there), only their distributions.
 *
 * Conventions: outputs first. `out` of a primitive is an allocated image of the size of `in`;
 * the point operations (lookup tables and blends against a constant or per-pixel image) allow
 * out == in, the geometric ones and Sharpness require distinct buffers (CHECKed). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor/image.h"
#include "tensor/resample.h"
#include "tensor/tensor.h"

/* ---- primitives ------------------------------------------------------------------------------ */

/* Output (x, y) samples input (x + k·y, y) [ShearX] or (x, k·x + y) [ShearY], coordinates of pixel
 * centres; bicubic; outside the input: (128, 128, 128). */
void aug_shear_x(Image *out, const Image *in, double k);
void aug_shear_y(Image *out, const Image *in, double k);
/* Output (x, y) takes input (x + t, y) [TranslateX] or (x, y + t) [TranslateY], t in pixels (any
 * real), nearest; outside the input: 128. */
void aug_translate_x(Image *out, const Image *in, double t);
void aug_translate_y(Image *out, const Image *in, double t);
/* PIL's rotate(degrees) (counter-clockwise, about the centre, same size, nearest) with the
 * uncovered area 128: multiples of 90 on square images are exact transposes, as in Pillow. */
void aug_rotate(Image *out, const Image *in, double degrees);
/* Per channel, [min, max] stretched onto [0, 255] (table int(v·scale + offset)); identity when
 * a channel has a single value. */
void aug_autocontrast(Image *out, const Image *in);
/* Per channel, ImageOps.equalize's table (step from the histogram without its highest bin). */
void aug_equalize(Image *out, const Image *in);
void aug_invert(Image *out, const Image *in);
/* v >= threshold becomes 255 − v. */
void aug_solarize(Image *out, const Image *in, double threshold);
/* Keep the `bits` (0..8) most significant bits. */
void aug_posterize(Image *out, const Image *in, int bits);
/* ImageEnhance.{Color, Contrast, Brightness, Sharpness}(in).enhance(factor): blend of a degenerate
 * image d with in, d + factor·(in − d) in float32, clamped and truncated. d = the luminance
 * (299R + 587G + 114B)/1000 in Pillow's fixed point; its rounded mean; black; the 3×3 smoothed
 * image (centre 5, neighbours 1, /13, borders copied). */
void aug_color(Image *out, const Image *in, double factor);
void aug_contrast(Image *out, const Image *in, double factor);
void aug_brightness(Image *out, const Image *in, double factor);
void aug_sharpness(Image *out, const Image *in, double factor);

/* ---- the operations of the policies (Appendix A.1) ------------------------------------------- */

typedef enum {
    AUG_SHEAR_X = 0,
    AUG_SHEAR_Y,
    AUG_TRANSLATE_X,
    AUG_TRANSLATE_Y,
    AUG_ROTATE,
    AUG_AUTOCONTRAST,
    AUG_EQUALIZE,
    AUG_INVERT,
    AUG_SOLARIZE,
    AUG_POSTERIZE,
    AUG_COLOR,
    AUG_CONTRAST,
    AUG_BRIGHTNESS,
    AUG_SHARPNESS,
    AUG_NUM_OPS
} AugOp;

/* "ShearX", "ShearY", "TranslateX", ... (the names of the AutoAugment code). */
const char *aug_op_name(AugOp op);
/* True for the operations that draw a random sign (shears, translations, the four enhancers). */
bool aug_op_signed(AugOp op);
/* The magnitude of index m (0..9) as the AutoAugment code's numpy.linspace tables give it: shear
 * 0.3·m/9; translation (150/331)·m/9 (a fraction of the side); rotation 30·m/9 degrees; the
 * enhancers 0.9·m/9 (factor 1 ± it); posterize bits [8,8,7,7,6,6,5,5,4,4][m]; solarize threshold
 * 256·(1 − m/9); 0 for AutoContrast, Equalize, Invert. */
double aug_op_magnitude(AugOp op, int m);
/* Apply `op` at magnitude index m with sign ±1 (ignored by unsigned ops) exactly as a sub-policy
 * does. out: same size as in, distinct from it. */
void aug_apply_op(Image *out, const Image *in, AugOp op, int m, int sign);

/* ---- the 117-entry MLC policy (Appendix A.3) and RandAugment (DECISION 5) -------------------- */

typedef struct {
    double p1;
    AugOp op1;
    int m1;
    double p2;
    AugOp op2;
    int m2;
} AugSubPolicy;

#define AUG_MLC_POLICY_SIZE 117
/* The table in the SPEC's order (repeated entries intentional); aug_mlc_policy_len counts what
 * was transcribed and must equal AUG_MLC_POLICY_SIZE. */
extern const AugSubPolicy aug_mlc_policy[];
extern const int aug_mlc_policy_len;

/* Apply one sub-policy to *im: op 1 with probability p1, then op 2 with probability p2.
 * Draws: uniform u1 (apply op 1 if u1 < p1), then its sign (if applied and signed), then u2 and
 * its sign. *scratch is an allocated image of the same size; the two Image structs may be
 * exchanged (so *im always holds the result). */
void aug_subpolicy_apply(Image *im, Image *scratch, const AugSubPolicy *sp, Rng *rng);
/* Pick one of the 117 sub-policies uniformly (one draw) and apply it; returns its index. */
int aug_mlc_policy_apply(Image *im, Image *scratch, Rng *rng);
/* DualCoOp's RandAugment by DECISION 5: twice, draw one of the 14 operations uniformly (with
 * replacement), then apply it with probability 0.5 at magnitude index 9 (then its sign). */
void aug_randaugment(Image *im, Image *scratch, Rng *rng);

/* ---- crops and cutout ---------------------------------------------------------------------- */

typedef struct {
    int left, top, w, h;
} AugBox;

/* torchvision's RandomResizedCrop.get_params with scale (min_area, 1) and ratio (3/4, 4/3):
 * up to 10 attempts of area fraction U(min_area, 1), log-ratio U(ln 3/4, ln 4/3),
 * w = round(√(area·ratio)), h = round(√(area/ratio)) (halves to even), accepted when
 * 0 < w <= W and 0 < h <= H, then top U{0..H−h} and left U{0..W−w}; after 10 failures the
 * centre crop of the whole image with its aspect ratio clamped to [3/4, 4/3]. */
AugBox aug_random_resized_crop_box(int W, int H, double min_area, Rng *rng);

/* Cutout (TaI-DPT's CutoutPIL) in place: half-sizes hx = ⌊⌊f·W + 0.5⌋/2⌋, hy = ⌊⌊f·H + 0.5⌋/2⌋,
 * centre cy U{0..H−1} then cx U{0..W−1}, colour R, G, B each U{0..255}; the pixels with
 * |x − cx| <= hx and |y − cy| <= hy inside the image are filled. `box`, when not NULL, receives
 * the filled rectangle. (The reference swaps width and height on non-square images; both
 * pipelines cut out on S×S images, where the two agree.) */
void aug_cutout(Image *im, double factor, Rng *rng, AugBox *box);

/* ---- pipelines ------------------------------------------------------------------------------- */

#define AUG_MIN_AREA 0.5         /* random-resized-crop scale for VOC, COCO, VG-200, CUB */
#define AUG_MIN_AREA_NUSWIDE 0.6 /* ... and for NUS-WIDE */
#define AUG_TRMML_CUTOUT 0.4
#define AUG_DUALCOOP_CUTOUT 0.5

/* TRM-ML training transform (§2.2) of in to S×S: with probability ½ (one uniform) a random
 * resized crop (aug_random_resized_crop_box with min_area) resized bicubic, else a bilinear
 * resize and Cutout 0.4; then the MLC policy; then a horizontal flip with probability ½.
 * *out receives a new image (any previous pixels are freed first: initialise it to {0}).
 * Allocates the crop (branch a), the output and one S×S scratch image, all freed on return but
 * the output. */
void aug_trmml_train(const Image *in, int S, double min_area, Rng *rng, Image *out);
/* DualCoOp training transform (§2.3): bilinear resize to S×S, Cutout 0.5, RandAugment.
 * Allocates the output and one S×S scratch image. */
void aug_dualcoop_train(const Image *in, int S, Rng *rng, Image *out);
/* The test transform: resize to S×S with `filter` (BICUBIC for TRM-ML, BILINEAR for DualCoOp). */
void aug_test(const Image *in, int S, ResampleFilter filter, Image *out);
